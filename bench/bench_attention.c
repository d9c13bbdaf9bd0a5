/* q35lab bench attention: every attention implementation side by side, per
 * (T, threads), as medians with spread and fractions of the calibrated
 * limits.  Prefill at long T is compute-bound (each K/V row serves every
 * query row of its group), so the FLOP/s column is the one that matters;
 * decode (T 1 with --past N) streams the cache once.  Useful work
 * (attention.h): 4*D flops per (query head, attended position); bytes: q and
 * out once, the K and V rows attended once per KV head.  Inputs: uniform in
 * [-1, 1), the new tokens' keys already in the cache (past 0: prefill).
 */
#include "bench/bench_attention.h"

#include "bench/bench.h"
#include "common/clock.h"
#include "harness/calibrate.h"
#include "harness/timing.h"
#include "kernels/attention/attention.h"
#include "ref/attention_ref.h"

#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void attention_bench_defaults(attention_bench_config *c)
{
    *c = (attention_bench_config){.B = 1, .Hq = 8, .Hkv = 2, .D = 256, .past = 0, .Ts = {512, 2048}, .nT = 2,
                                  .threads = {omp_get_num_procs()}, .nthreads = 1, .reps = 10, .impl = "all",
                                  .counters = "none", .machine = "results/machine.json"};
}

/* The contenders: the table's entries, then ref (timed only when named: it is the spec). */
static const attention_impl *entry(int i) { return i < attention_n_impls ? &attention_impls[i] : &attention_ref_impl; }
static int is_named(const char *name) { return attention_find(name) || !strcmp(name, attention_ref_impl.name); }

/* One call of implementation i. */
typedef struct {
    const attention_problem *p;
    int i;
    attention_opts o;
} attention_call;

static int call(void *ctx, char *err, size_t errlen)
{
    const attention_call *k = ctx;
    return attention_run(entry(k->i), k->p, &k->o, err, errlen);
}

int bench_attention(const attention_bench_config *cfg)
{
    if (bench_check_impl_list("attention", cfg->impl, is_named)) return 2;
    if (cfg->B < 1 || cfg->Hq < 1 || cfg->Hkv < 1 || cfg->Hq % cfg->Hkv || cfg->D < 1 || cfg->past < 0) {
        fprintf(stderr, "q35lab: bench attention: needs B, Hq, Hkv, D >= 1, Hkv dividing Hq, past >= 0; got B=%d "
                        "Hq=%d Hkv=%d D=%d past=%d\n", cfg->B, cfg->Hq, cfg->Hkv, cfg->D, cfg->past);
        return 2;
    }
    q35_machine_limits lim;
    int have_limits;
    q35_counters *ctr;
    bench_report rep;
    if (bench_open(&rep, "attention", cfg->json, cfg->csv, cfg->machine, cfg->counters, &lim, &have_limits, &ctr)) return 2;
    printf("bench attention: B=%d Hq=%d Hkv=%d D=%d past=%d, causal, %d reps; flops 4*D per (query head, "
           "attended position)\n", cfg->B, cfg->Hq, cfg->Hkv, cfg->D, cfg->past, cfg->reps);
    char err[512] = "";
    int rc = 0;
    double *times = calloc((size_t)cfg->reps, sizeof *times);
    if (!times) { fprintf(stderr, "q35lab: bench attention: out of memory\n"); rc = 2; }
    for (int it = 0; it < cfg->nT && !rc; it++) {
        const int T = cfg->Ts[it], L = cfg->past + T;
        const size_t nq = (size_t)cfg->B * T * cfg->Hq * cfg->D, nc = (size_t)cfg->B * cfg->Hkv * L * cfg->D;
        float *buf = malloc(sizeof(float) * (2 * nq + 2 * nc)); /* 16-byte aligned, as the model's calloc'd caches */
        if (!buf) {
            fprintf(stderr, "q35lab: bench attention: out of memory for T=%d\n", T);
            rc = 2;
            break;
        }
        uint64_t seed = 0x9e3779b97f4a7c15ull;
        bench_fill_uniform(buf, nq + 2 * nc, &seed);
        attention_problem p = {.B = cfg->B, .T = T, .Hq = cfg->Hq, .Hkv = cfg->Hkv, .D = cfg->D, .L = L,
                               .q = buf, .k_cache = buf + nq, .v_cache = buf + nq + nc, .out = buf + nq + 2 * nc};
        int32_t *past = NULL;
        if (cfg->past) {
            past = malloc(sizeof(int32_t) * (size_t)cfg->B);
            if (!past) { free(buf); rc = 2; break; }
            for (int b = 0; b < cfg->B; b++) past[b] = cfg->past;
            p.past = past;
        }
        const double tokens = (double)cfg->B * T;
        const double bytes = 4.0 * (2.0 * nq + 2.0 * nc);
        for (int ith = 0; ith < cfg->nthreads && !rc; ith++) {
            const int th = cfg->threads[ith];
            bench_row_begin(&rep, cfg->B, T, th);
            for (int i = 0; i < attention_n_impls + 1 && !rc; i++) {
                const attention_impl *im = entry(i);
                if (!bench_impl_selected(cfg->impl, im->name) || (im->available && !im->available())) continue;
                if (ctr) q35_counters_reset(ctr);
                q35_load_mark lm;
                q35_load_begin(&lm);
                bench_progress("attention", im->name, cfg->B, T, th);
                attention_call k = {.p = &p, .i = i, .o = {.threads = th}};
                if (bench_time_calls(call, &k, cfg->reps, th, ctr, times, err, sizeof err)) {
                    fprintf(stderr, "q35lab: bench attention %s: %s\n", im->name, err);
                    rc = 2;
                    break;
                }
                bench_result r = {.impl = im->name, .stats = q35_stats_of(times, cfg->reps),
                                  .flops = (double)attention_flops(&p), .bytes = bytes, .tokens = tokens,
                                  .other_load = q35_load_end_other_fraction(&lm)};
                if (have_limits) {
                    r.peak_gflops = q35_limit_fma_peak(&lim, th);
                    r.bw_gbs = q35_limit_mem_bw(&lim, "read", th);
                }
                bench_result_add(&rep, &r, ctr, cfg->reps);
            }
            bench_row_end(&rep);
        }
        free(past);
        free(buf);
    }
    free(times);
    if (bench_report_close(&rep, rc == 0) && !rc) rc = 2;
    q35_counters_close(ctr);
    return rc;
}
