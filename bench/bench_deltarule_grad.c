/* q35lab bench deltarule --grad: the backward of the delta rule against its
 * forward, side by side in one run, per (B, T, threads): medians with
 * spread, GFLOP/s and % of the calibrated FMA peak, the memory each backward
 * holds (deltarule_grad_stats.bytes_held), and the backward's crossover.
 *
 * Useful flops.  Forward: 6 Dk Dv per valid token and value head, the
 * recurrent form's count (bench_deltarule.c).  Backward: 18 Dk Dv, the count
 * the backward table reports to the SDE counters (deltarule_grad_table.c):
 * the forward recurrence it needs (4 Dk Dv) and the reverse sweep (14 Dk Dv),
 * i.e. 3x the forward's -- whatever an implementation recomputes (the
 * recurrent backward replays the forward from its checkpoints, the chunked
 * one re-solves each chunk) is not useful work, so GFLOP/s compare
 * implementations on the same work.  Bytes: inputs and upstream gradients
 * read once, gradients written once, the states (h0, d_final_state read,
 * d_initial_state written).
 */
#include "bench/bench_deltarule_grad.h"

#include "common/clock.h"
#include "common/huge_pages.h"
#include "kernels/cpu_features.h"
#include "kernels/deltarule/deltarule.h"
#include "kernels/deltarule/deltarule_grad.h"
#include "harness/calibrate.h"
#include "harness/counters.h"
#include "harness/deltarule_crossover.h"
#include "harness/deltarule_grad_check.h"
#include "harness/deltarule_inputs.h"
#include "harness/timing.h"
#include "bench/bench.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The forward forms auto chooses between: the best of them is "the forward". */
static const char *const fwd_names[] = {"recurrent-pairs", "chunked"};
#define N_FWD (int)(sizeof fwd_names / sizeof *fwd_names)

/* A backward table entry of that name (ref is the spec, not a contender). */
static int grad_named(const char *name) { return deltarule_grad_find(name) != NULL; }

/* One call of either direction. */
typedef struct {
    const deltarule_impl *fwd;
    const deltarule_grad_impl *bwd;
    const deltarule_problem *p;
    const deltarule_grad_problem *gp;
    deltarule_opts o;
    deltarule_grad_stats st;
} bench_call;

static int call(void *ctx, char *err, size_t errlen)
{
    bench_call *c = ctx;
    if (c->fwd) return deltarule_run(c->fwd, c->p, &c->o, err, errlen);
    c->st.bytes_held = 0;
    return deltarule_grad_run(c->bwd, c->gp, &c->o, &c->st, err, errlen);
}

typedef struct {
    char label[48];
    q35_stats st;
    double gflops;
    size_t held;
    int is_fwd;
} summary_line;

static void print_summary(const summary_line *l, int n, int B, int T, int th, double peak)
{
    int best = -1;
    for (int i = 0; i < n; i++)
        if (l[i].is_fwd && (best < 0 || l[i].st.median < l[best].st.median)) best = i;
    printf("\nbackward vs forward: B=%d T=%d threads=%d (best forward: %s)\n", B, T, th,
           best >= 0 ? l[best].label : "none measured");
    printf("%-24s %30s %10s %8s %8s %12s\n", "impl", "ms median [min, max]", "GFLOP/s", "% peak", "/fwd",
           "held MiB");
    for (int i = 0; i < n; i++) {
        char t[64], pk[16], ratio[16];
        snprintf(t, sizeof t, "%.3f [%.3f, %.3f]", l[i].st.median * 1e3, l[i].st.min * 1e3, l[i].st.max * 1e3);
        if (peak > 0) snprintf(pk, sizeof pk, "%.1f", 100.0 * l[i].gflops / peak);
        else snprintf(pk, sizeof pk, "-");
        if (best >= 0) snprintf(ratio, sizeof ratio, "%.2f", l[i].st.median / l[best].st.median);
        else snprintf(ratio, sizeof ratio, "-");
        char held[32];
        if (l[i].is_fwd) snprintf(held, sizeof held, "-");
        else snprintf(held, sizeof held, "%.2f", l[i].held / 1048576.0);
        printf("%-24s %30s %10.1f %8s %8s %12s\n", l[i].label, t, l[i].gflops, pk, ratio, held);
    }
}

/* A backward's workspace (deltarule_grad_workspace_bytes), allocated once for all its timed calls, as a
 * training loop keeps it from step to step: *gpw becomes bc's problem with it.  Returns its bytes (0:
 * none needed, or a forward), or (size_t)-1 if out of memory.  Free with q35_free_huge(gpw->workspace,
 * bytes). */
static size_t give_workspace(bench_call *bc, deltarule_grad_problem *gpw)
{
    const size_t bytes = bc->bwd ? deltarule_grad_workspace_bytes(bc->bwd, bc->gp, &bc->o) : 0;
    if (!bytes) return 0;
    *gpw = *bc->gp;
    if (!(gpw->workspace = q35_alloc_huge(bytes))) return (size_t)-1;
    gpw->workspace_bytes = bytes;
    bc->gp = gpw;
    return bytes;
}

/* --pairs: the FMA peak probe's run (harness/calibrate.h) between the calls, in seconds */
#define PROBE_SECONDS 0.02

/* --pairs N: N rounds, each an FMA peak probe, one call of the best forward (the lowest median of
 * the blocks) and one of every backward, the order reversed every other round; per backward, the
 * per-round time / the forward's and % of that round's probe, median [q1, q3].  Why: the host's
 * speed drifts by 5-25% over minutes, and the blocks above time the forward, then each backward,
 * against a peak calibrated earlier: their ratios compare moments as much as kernels.  calls[i] is
 * line i's; a backward's workspace is allocated here once, as in its block. */
static int interleaved(const summary_line *lines, const bench_call *calls, int nl, int th, double bwd_flops, int pairs)
{
    if (pairs < 1) return 0;
    int bf = -1, nb = 0;
    for (int i = 0; i < nl; i++) {
        if (lines[i].is_fwd && (bf < 0 || lines[i].st.median < lines[bf].st.median)) bf = i;
        nb += !lines[i].is_fwd;
    }
    if (bf < 0 || !nb) {
        printf("interleaved: no forward and backward rows to pair\n");
        return 0;
    }
    q35_fma_probe probe;
    const int have_probe = q35_fma_probe_init(&probe, th, PROBE_SECONDS) == 0;
    bench_call c[BENCH_MAX_IMPLS];
    deltarule_grad_problem gpw[BENCH_MAX_IMPLS];
    size_t wsb[BENCH_MAX_IMPLS] = {0};
    double *t = calloc((size_t)pairs * (nl + 1), sizeof *t); /* round r: t[r (nl + 1) + i], the probe at i = nl */
    int rc = t ? 0 : 2;
    for (int i = 0; i < nl && !rc; i++) {
        c[i] = calls[i];
        if ((wsb[i] = give_workspace(&c[i], &gpw[i])) == (size_t)-1) {
            wsb[i] = 0;
            rc = 2;
        }
    }
    char err[256] = "";
    q35_load_mark lm;
    q35_load_begin(&lm);
    for (int r = -1; r < pairs && !rc; r++) { /* r = -1: one untimed round */
        for (int s = 0; s <= nl && !rc; s++) {
            const int k = r % 2 ? nl - s : s; /* k = 0: the probe; k = i + 1: line i */
            if (k == 0) {
                const double g = have_probe ? q35_fma_probe_run(&probe) : 0.0;
                if (r >= 0) t[(size_t)r * (nl + 1) + nl] = g;
                continue;
            }
            const int i = k - 1;
            if (lines[i].is_fwd && i != bf) continue;
            q35_wake_team(th);
            const double t0 = q35_now();
            if (call(&c[i], err, sizeof err)) {
                fprintf(stderr, "q35lab: bench %s: %s\n", lines[i].label, err);
                rc = 2;
            }
            if (r >= 0) t[(size_t)r * (nl + 1) + i] = q35_now() - t0;
        }
    }
    const double other = q35_load_end_other_fraction(&lm);
    if (!rc) {
        double *a = malloc(sizeof *a * pairs), *b = malloc(sizeof *b * pairs), *pk = malloc(sizeof *pk * pairs);
        if (a && b && pk) {
            for (int r = 0; r < pairs; r++) pk[r] = t[(size_t)r * (nl + 1) + nl];
            const q35_stats ps = q35_stats_of(pk, pairs);
            for (int r = 0; r < pairs; r++) a[r] = t[(size_t)r * (nl + 1) + bf] * 1e3;
            const q35_stats f = q35_stats_of(a, pairs);
            printf("interleaved, %d rounds (an FMA peak probe, %s, every backward: one call each, the order "
                   "reversed every other round), per round, median [q1, q3]%s\n", pairs, lines[bf].label,
                   other > Q35_BUSY_THRESHOLD ? "  BUSY: other processes used the CPUs" : "");
            printf("  %-20s %.3f ms [%.3f, %.3f]\n", lines[bf].label, f.median, f.q1, f.q3);
            if (have_probe)
                printf("  %-20s %.1f GFLOP/s [%.1f, %.1f] (calibrate's FMA loop, %d thread%s, %.0f ms a run)\n",
                       "FMA peak probe", ps.median, ps.q1, ps.q3, th, th > 1 ? "s" : "", PROBE_SECONDS * 1e3);
            for (int i = 0; i < nl; i++) {
                if (lines[i].is_fwd) continue;
                int n = 0;
                for (int r = 0; r < pairs; r++) {
                    const double tb = t[(size_t)r * (nl + 1) + i], tf = t[(size_t)r * (nl + 1) + bf];
                    a[r] = tb / tf;
                    if (pk[r] > 0) b[n++] = bwd_flops / tb * 1e-9 / pk[r] * 100.0;
                }
                const q35_stats q = q35_stats_of(a, pairs), e = q35_stats_of(b, n);
                printf("  %-20s %.2fx the forward [%.2f, %.2f]", lines[i].label, q.median, q.q1, q.q3);
                if (n) printf(", %.1f%% of the round's peak [%.1f, %.1f]\n", e.median, e.q1, e.q3);
                else printf(", %% of peak: no FMA probe on this CPU\n");
            }
        } else {
            fprintf(stderr, "q35lab: bench: out of memory\n");
            rc = 2;
        }
        free(a);
        free(b);
        free(pk);
    }
    for (int i = 0; i < nl; i++)
        if (wsb[i]) q35_free_huge(gpw[i].workspace, wsb[i]);
    free(t);
    if (rc && !err[0]) fprintf(stderr, "q35lab: bench: out of memory\n");
    return rc;
}

/* The backward's crossover per thread count, from recurrent and chunked
 * medians at ascending T; printed, and written under "grad_points" with
 * --crossover.  Returns -1 only when writing was asked for and failed. */
static int crossover(const dr_bench_config *c, double rec[16][8], double chk[16][8])
{
    const char *why = c->nT < 2 ? "it needs at least two --T" : NULL;
    for (int i = 1; i < c->nT && !why; i++)
        if (c->Ts[i] <= c->Ts[i - 1]) why = "--T must be ascending";
    if (!why && (c->nB != 1 || c->Bs[0] != 1)) why = "it is measured at B = 1";
    deltarule_crossover_point pts[8];
    for (int th = 0; th < c->nthreads && !why; th++) {
        double r[16], k[16];
        for (int i = 0; i < c->nT; i++) {
            r[i] = rec[i][th];
            k[i] = chk[i][th];
            if (r[i] <= 0 || k[i] <= 0) why = "it needs the recurrent and chunked backward measured";
        }
        pts[th] = (deltarule_crossover_point){c->shape.Hk, c->shape.Hv, c->shape.Dk, c->shape.Dv, c->threads[th],
                                              dr_crossover_from_medians(c->Ts, r, k, c->nT)};
    }
    if (why) {
        printf("\nbackward crossover: not measured (%s)\n", why);
        if (c->crossover) fprintf(stderr, "q35lab: bench deltarule --grad: no crossover written to %s: %s\n",
                                  c->crossover, why);
        return c->crossover ? -1 : 0;
    }
    printf("\nbackward crossover, Hk=%d Hv=%d Dk=%d Dv=%d:", c->shape.Hk, c->shape.Hv, c->shape.Dk, c->shape.Dv);
    for (int th = 0; th < c->nthreads; th++) {
        printf(" %d thread%s: ", pts[th].threads, pts[th].threads > 1 ? "s" : "");
        if (pts[th].chunked_from_T) printf("chunked from T=%d;", pts[th].chunked_from_T);
        else printf("recurrent at every T measured;");
    }
    printf("\n");
    if (!c->crossover) return 0;
    char what[160], err[512];
    snprintf(what, sizeof what, "bench deltarule --grad, shape %s, B=1, %d reps, ISA %s", c->shape.name, c->reps,
             cpu_isa_name(cpu_isa()));
    if (dr_crossover_merge_write_key(c->crossover, DR_CROSSOVER_KEY_GRAD, pts, c->nthreads, what, err, sizeof err)) {
        fprintf(stderr, "q35lab: %s\n", err);
        return -1;
    }
    printf("backward crossover written to %s (key %s)\n", c->crossover, DR_CROSSOVER_KEY_GRAD);
    return 0;
}

/* N(0, 1) floats; from 2 MiB up in huge pages like the forward's q, k, v (*huge: dr_big_alloc) */
static float *normal_buffer(size_t n, unsigned long seed, size_t *huge)
{
    float *x = dr_big_alloc(sizeof(float) * n, huge);
    if (!x) return NULL;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, seed);
    for (size_t i = 0; i < n; i++) x[i] = (float)gsl_ran_gaussian(r, 1.0);
    gsl_rng_free(r);
    return x;
}

int bench_deltarule_grad(const dr_bench_config *config)
{
    const dr_bench_config cfg = *config;
    if (cfg.cold || cfg.checkpoints) {
        fprintf(stderr, "q35lab: bench deltarule --grad does not take --cold or --checkpoints\n");
        return 2;
    }
    if (bench_check_impl_list("backward deltarule", cfg.impl, grad_named)) return 2;
    if (cfg.shape.Hk < 1 || cfg.shape.Hv % cfg.shape.Hk) {
        fprintf(stderr, "q35lab: bench deltarule: Hv=%d is not a multiple of Hk=%d\n", cfg.shape.Hv, cfg.shape.Hk);
        return 2;
    }
    char err[512] = "";
    q35_machine_limits lim;
    int have_limits;
    q35_counters *ctr;
    bench_report rep;
    if (bench_open(&rep, "deltarule_grad", cfg.json, cfg.csv, cfg.machine, cfg.counters, &lim, &have_limits, &ctr))
        return 2;
    const dr_bench_shape *sh = &cfg.shape;
    printf("bench deltarule --grad: shape %s (Hk=%d Hv=%d Dk=%d Dv=%d), initial state and d_final_state given, "
           "%d reps, ISA %s; fwd: rows are the forward (6 Dk Dv flops per token and head), bwd: the backward "
           "(18 Dk Dv)\n", sh->name, sh->Hk, sh->Hv, sh->Dk, sh->Dv, cfg.reps, cpu_isa_name(cpu_isa()));
    int rc = 0;
    double rec[16][8] = {{0}}, chk[16][8] = {{0}};
    for (int ib = 0; ib < cfg.nB && !rc; ib++)
        for (int it = 0; it < cfg.nT && !rc; it++)
            for (int ith = 0; ith < cfg.nthreads && !rc; ith++) {
                const int B = cfg.Bs[ib], T = cfg.Ts[it], th = cfg.threads[ith];
                dr_shape s = {B, T, sh->Hk, sh->Hv, sh->Dk, sh->Dv, 1, 0};
                dr_case c;
                if (dr_case_make(&c, &s, DR_REGIME_RANDOM, 1, err, sizeof err)) {
                    fprintf(stderr, "q35lab: bench: %s\n", err);
                    rc = 2;
                    break;
                }
                size_t d_out_huge, dfs_huge;
                float *d_out = normal_buffer(dr_v_elems(&c.p), 11, &d_out_huge),
                      *dfs = normal_buffer(dr_state_elems(&c.p), 12, &dfs_huge);
                dr_grads gr;
                const int grads_ok = dr_grads_alloc(&gr, &c.p) == 0;
                if (!d_out || !dfs || !grads_ok) {
                    fprintf(stderr, "q35lab: bench: out of memory\n");
                    dr_big_free(d_out, d_out_huge); dr_big_free(dfs, dfs_huge);
                    if (grads_ok) dr_grads_free(&gr);
                    dr_case_free(&c);
                    rc = 2;
                    break;
                }
                const deltarule_grad_problem gp = dr_grads_problem(&c.p, d_out, dfs, &gr);
                const double work = (double)B * T * sh->Hv * sh->Dk * sh->Dv;
                /* the tables' useful-work counters: 6 Dk Dv a token and value head forward, 18 backward */
                const double fwd_flops = 6.0 * work, bwd_flops = 18.0 * work;
                const double st_bytes = 4.0 * dr_state_elems(&c.p);
                const double fwd_bytes = 4.0 * (2.0 * dr_qk_elems(&c.p) + 2.0 * dr_v_elems(&c.p) +
                                                2.0 * dr_gate_elems(&c.p)) + 2 * st_bytes;
                const double bwd_bytes = 4.0 * (4.0 * dr_qk_elems(&c.p) + 3.0 * dr_v_elems(&c.p) +
                                                4.0 * dr_gate_elems(&c.p)) + 3 * st_bytes;
                bench_row_begin(&rep, B, T, th);
                summary_line lines[BENCH_MAX_IMPLS];
                bench_call calls[BENCH_MAX_IMPLS]; /* line i's call, without its workspace (--pairs) */
                int nl = 0;
                /* with --chunk the chunked backward runs once per chunk size (row "bwd:chunked@C") */
                const int nchk = cfg.nchunks ? cfg.nchunks : 1;
                for (int iv = 0; iv < (N_FWD + deltarule_grad_n_impls) * nchk && !rc && nl < BENCH_MAX_IMPLS; iv++) {
                    const int i = iv / nchk, v = iv % nchk;
                    bench_call bc = {.p = &c.p, .gp = &gp, .o = {.threads = th}};
                    const int is_fwd = i < N_FWD;
                    if (is_fwd) {
                        if (v || !(bc.fwd = deltarule_find(fwd_names[i]))) continue;
                        snprintf(lines[nl].label, sizeof lines[nl].label, "fwd:%s", fwd_names[i]);
                    } else {
                        bc.bwd = &deltarule_grad_impls[i - N_FWD];
                        if (!bench_impl_selected(cfg.impl, bc.bwd->name) || (bc.bwd->available && !bc.bwd->available()))
                            continue;
                        const int chunked = !strcmp(bc.bwd->name, "chunked");
                        if (v && !chunked) continue;
                        bc.o.crossover = cfg.auto_crossover;
                        if (chunked && cfg.nchunks) {
                            bc.o.chunk = cfg.chunks[v];
                            snprintf(lines[nl].label, sizeof lines[nl].label, "bwd:%s@%d", bc.bwd->name, bc.o.chunk);
                        } else
                            snprintf(lines[nl].label, sizeof lines[nl].label, "bwd:%s", bc.bwd->name);
                    }
                    /* a backward's workspace once per row; the warm-up call faults its pages in */
                    deltarule_grad_problem gpw;
                    const size_t wsb = give_workspace(&bc, &gpw);
                    if (wsb == (size_t)-1) {
                        fprintf(stderr, "q35lab: bench %s: out of memory\n", lines[nl].label);
                        rc = 2;
                        break;
                    }
                    double *times = calloc(cfg.reps, sizeof *times);
                    if (ctr) q35_counters_reset(ctr);
                    q35_load_mark lm;
                    q35_load_begin(&lm);
                    bench_progress("deltarule --grad", lines[nl].label, B, T, th);
                    if (!times || bench_time_calls(call, &bc, cfg.reps, th, ctr, times, err, sizeof err)) {
                        fprintf(stderr, "q35lab: bench %s: %s\n", lines[nl].label, times ? err : "out of memory");
                        free(times);
                        if (wsb) q35_free_huge(gpw.workspace, wsb);
                        rc = 2;
                        break;
                    }
                    bench_result r = {.impl = lines[nl].label, .stats = q35_stats_of(times, cfg.reps),
                                      .flops = is_fwd ? fwd_flops : bwd_flops, .bytes = is_fwd ? fwd_bytes : bwd_bytes,
                                      .tokens = (double)B * T, .other_load = q35_load_end_other_fraction(&lm)};
                    if (!is_fwd) snprintf(r.note, sizeof r.note, "held %.2f MiB", bc.st.bytes_held / 1048576.0);
                    if (have_limits) {
                        r.peak_gflops = q35_limit_fma_peak(&lim, th);
                        r.bw_gbs = q35_limit_mem_bw(&lim, "triad", th);
                    }
                    bench_result_add(&rep, &r, ctr, cfg.reps);
                    lines[nl].st = r.stats;
                    lines[nl].gflops = r.flops / r.stats.median * 1e-9;
                    lines[nl].held = bc.st.bytes_held;
                    lines[nl].is_fwd = is_fwd;
                    calls[nl] = bc;
                    calls[nl].gp = &gp;
                    if (ib == 0 && !is_fwd && !strcmp(bc.bwd->name, "recurrent")) rec[it][ith] = r.stats.median;
                    if (ib == 0 && !is_fwd && !strcmp(bc.bwd->name, "chunked") && !cfg.nchunks) chk[it][ith] = r.stats.median;
                    free(times);
                    if (wsb) q35_free_huge(gpw.workspace, wsb);
                    nl++;
                }
                bench_row_end(&rep);
                if (!rc) print_summary(lines, nl, B, T, th, have_limits ? q35_limit_fma_peak(&lim, th) : 0.0);
                if (!rc && cfg.pairs) rc = interleaved(lines, calls, nl, th, bwd_flops, cfg.pairs);
                dr_big_free(d_out, d_out_huge);
                dr_big_free(dfs, dfs_huge);
                dr_grads_free(&gr);
                dr_case_free(&c);
            }
    if (bench_report_close(&rep, rc == 0) && !rc) rc = 2;
    q35_counters_close(ctr);
    if (!rc && crossover(&cfg, rec, chk)) rc = 2;
    return rc;
}
