/* q35lab bench conv [--grad]: every conv (or conv backward) implementation
 * side by side, per (T, threads), as medians with spread and fractions of the
 * calibrated limits.  The conv streams its activations once, so the
 * bandwidth column is the one that matters.  Useful work (docs/conv.md):
 * forward 2*K*C flops per token, reading x and writing y; backward 6*K*C
 * (the pre-activation again, dweight and dx; SiLU and its derivative not
 * counted), reading x and dy and writing dx.  Inputs: uniform in [-1, 1),
 * state in and d_state_out given, SiLU on (the model's case).
 */
#include "bench/bench_conv.h"

#include "bench/bench.h"
#include "common/clock.h"
#include "harness/calibrate.h"
#include "harness/timing.h"
#include "kernels/conv/conv.h"
#include "kernels/conv/conv_grad.h"
#include "ref/conv_grad_ref.h"
#include "ref/conv_ref.h"

#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void conv_bench_defaults(conv_bench_config *c)
{
    *c = (conv_bench_config){.C = 2 * 16 * 128 + 16 * 128, .K = 4, .B = 1, .Ts = {1, 512}, .nT = 2,
                             .threads = {omp_get_num_procs()}, .nthreads = 1, .reps = 20, .impl = "all",
                             .counters = "none", .machine = "results/machine.json"};
}

/* The arrays of one (B, T) problem, forward and backward. */
typedef struct {
    conv_problem p;
    conv_grad_problem g;
    float *buf;
} conv_case;

static int case_make(conv_case *c, int B, int T, int C, int K)
{
    const size_t nx = (size_t)B * T * C, nw = (size_t)C * K, ns = (size_t)B * C * (K - 1);
    /* x y dy dx | weight dweight | state_in state_out d_state_out d_state_in */
    c->buf = malloc((4 * nx + 2 * nw + 4 * ns + 1) * sizeof(float));
    if (!c->buf) return -1;
    float *x = c->buf, *y = x + nx, *dy = y + nx, *dx = dy + nx, *w = dx + nx, *dw = w + nw, *s0 = dw + nw,
          *s1 = s0 + ns, *dso = s1 + ns, *dsi = dso + ns;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    bench_fill_uniform(x, nx, &seed);
    bench_fill_uniform(dy, nx, &seed);
    bench_fill_uniform(w, nw, &seed);
    bench_fill_uniform(s0, ns, &seed);
    bench_fill_uniform(dso, ns, &seed);
    c->p = (conv_problem)CONV_PROBLEM_INIT;
    c->p.B = B; c->p.T = T; c->p.C = C; c->p.K = K;
    c->p.x = x; c->p.weight = w; c->p.state_in = s0; c->p.state_out = s1; c->p.y = y;
    c->g = (conv_grad_problem){.fwd = &c->p, .dy = dy, .d_state_out = dso, .dx = dx, .dweight = dw,
                               .d_state_in = dsi};
    return 0;
}

/* The contenders: the table's entries, then ref (timed only when named: it is the spec). */
static const conv_impl *fwd_entry(int i) { return i < conv_n_impls ? &conv_impls[i] : &conv_ref_impl; }
static const conv_grad_impl *grad_entry(int i)
{
    return i < conv_grad_n_impls ? &conv_grad_impls[i] : &conv_grad_ref_impl;
}
static int conv_is_named(const char *name) { return conv_find(name) || !strcmp(name, conv_ref_impl.name); }
static int conv_grad_is_named(const char *name)
{
    return conv_grad_find(name) || !strcmp(name, conv_grad_ref_impl.name);
}

/* One call of implementation i, forward or backward. */
typedef struct {
    const conv_bench_config *cfg;
    const conv_case *c;
    int i;
    conv_opts o;
} conv_call;

static int call(void *ctx, char *err, size_t errlen)
{
    const conv_call *k = ctx;
    return k->cfg->grad ? conv_grad_run(grad_entry(k->i), &k->c->g, &k->o, err, errlen)
                        : conv_run(fwd_entry(k->i), &k->c->p, &k->o, err, errlen);
}

int bench_conv(const conv_bench_config *cfg)
{
    const char *family = cfg->grad ? "conv_grad" : "conv";
    if (bench_check_impl_list(family, cfg->impl, cfg->grad ? conv_grad_is_named : conv_is_named)) return 2;
    if (cfg->C < 1 || cfg->K < 2 || cfg->K > CONV_K_MAX || cfg->B < 1) {
        fprintf(stderr, "q35lab: bench conv: needs C >= 1, 2 <= K <= %d, B >= 1; got C=%d K=%d B=%d\n", CONV_K_MAX,
                cfg->C, cfg->K, cfg->B);
        return 2;
    }
    q35_machine_limits lim;
    int have_limits;
    q35_counters *ctr;
    bench_report rep;
    if (bench_open(&rep, family, cfg->json, cfg->csv, cfg->machine, cfg->counters, &lim, &have_limits, &ctr)) return 2;
    const int n_impls = (cfg->grad ? conv_grad_n_impls : conv_n_impls) + 1; /* + ref */
    printf("bench conv%s: C=%d K=%d B=%d, SiLU on, state in%s, %d reps; flops %d*K*C per token%s\n",
           cfg->grad ? " --grad" : "", cfg->C, cfg->K, cfg->B, cfg->grad ? " and d_state_out" : " and out", cfg->reps,
           cfg->grad ? 6 : 2, cfg->grad ? " (pre-activation, dweight, dx)" : "");
    char err[512] = "";
    int rc = 0;
    double *times = calloc((size_t)cfg->reps, sizeof *times);
    if (!times) { fprintf(stderr, "q35lab: bench conv: out of memory\n"); rc = 2; }
    for (int it = 0; it < cfg->nT && !rc; it++) {
        const int T = cfg->Ts[it];
        conv_case c;
        if (case_make(&c, cfg->B, T, cfg->C, cfg->K)) {
            fprintf(stderr, "q35lab: bench conv: out of memory for T=%d\n", T);
            rc = 2;
            break;
        }
        const double tokens = (double)cfg->B * T, C = cfg->C, K = cfg->K;
        /* activations streamed: x and y forward; x, dy and dx backward (+ weights and states, small) */
        const double bytes = 4.0 * (tokens * C * (cfg->grad ? 3 : 2) + C * K * (cfg->grad ? 2 : 1) +
                                    cfg->B * C * (K - 1) * (cfg->grad ? 3 : 2));
        for (int ith = 0; ith < cfg->nthreads && !rc; ith++) {
            const int th = cfg->threads[ith];
            bench_row_begin(&rep, cfg->B, T, th);
            for (int i = 0; i < n_impls && !rc; i++) {
                const char *name = cfg->grad ? grad_entry(i)->name : fwd_entry(i)->name;
                int (*avail)(void) = cfg->grad ? grad_entry(i)->available : fwd_entry(i)->available;
                if (!bench_impl_selected(cfg->impl, name) || (avail && !avail())) continue;
                if (ctr) q35_counters_reset(ctr);
                q35_load_mark lm;
                q35_load_begin(&lm);
                bench_progress(family, name, cfg->B, T, th);
                conv_call k = {.cfg = cfg, .c = &c, .i = i, .o = {.threads = th}};
                if (bench_time_calls(call, &k, cfg->reps, th, ctr, times, err, sizeof err)) {
                    fprintf(stderr, "q35lab: bench %s %s: %s\n", family, name, err);
                    rc = 2;
                    break;
                }
                bench_result r = {.impl = name, .stats = q35_stats_of(times, cfg->reps),
                                  .flops = (cfg->grad ? 6.0 : 2.0) * K * C * tokens, .bytes = bytes,
                                  .tokens = tokens, .other_load = q35_load_end_other_fraction(&lm)};
                if (have_limits) {
                    r.peak_gflops = q35_limit_fma_peak(&lim, th);
                    r.bw_gbs = q35_limit_mem_bw(&lim, "read", th);
                }
                bench_result_add(&rep, &r, ctr, cfg->reps);
            }
            bench_row_end(&rep);
        }
        free(c.buf);
    }
    free(times);
    if (bench_report_close(&rep, rc == 0) && !rc) rc = 2;
    q35_counters_close(ctr);
    return rc;
}
