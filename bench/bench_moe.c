/* q35lab bench moe: every MoE implementation side by side, per (T, weight
 * dtype, threads), as medians with spread and fractions of the calibrated
 * limits.  Useful flops: the router, k experts and the shared expert per
 * token (docs/moe.md); bytes: the weights of the experts the batch touches,
 * read once, plus the router and the shared expert.
 */
#include "bench/bench_moe.h"

#include "common/clock.h"
#include "kernels/moe/moe.h"
#include "harness/calibrate.h"
#include "harness/counters.h"
#include "harness/impl_select.h"
#include "harness/moe_inputs.h"
#include "harness/timing.h"
#include "bench/bench.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* qwen3.5-35b-a3b from the released config (hidden 2048, 256 experts, 8
 * used, expert and shared intermediate 512).  For 397B-A17B the issue gives
 * 512 experts; hidden 4096, 10 used and intermediate 1024 are this file's
 * assumption, not checked against the release: use custom: to be sure. */
static const moe_bench_shape shapes[] = {
    {"qwen3.5-35b-a3b", 2048, 256, 8, 512, 512},
    {"qwen3.5-397b-a17b", 4096, 512, 10, 1024, 1024},
};

const moe_bench_shape *moe_bench_shape_named(const char *name)
{
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        if (!strcmp(name, shapes[i].name)) return &shapes[i];
    return NULL;
}

void moe_bench_defaults(moe_bench_config *c)
{
    *c = (moe_bench_config){.shape = shapes[0], .Ts = {1, 8, 128, 512}, .nT = 4,
                            .threads = {omp_get_num_procs()}, .nthreads = 1, .reps = 5,
                            .dtypes = {WT_BF16}, .ndtypes = 1, .impl = "all", .counters = "sde",
                            .machine = "results/machine.json"};
}


static int moe_is_named(const char *name) { return moe_named(name) != NULL; }

int bench_moe(const moe_bench_config *config)
{
    const moe_bench_config cfg = *config;
    if (bench_check_impl_list("moe", cfg.impl, moe_is_named)) return 2;
    const moe_bench_shape *sh = &cfg.shape;
    if (sh->hidden < 1 || sh->E < 1 || sh->top_k < 1 || sh->top_k > sh->E || sh->I < 1 || sh->Is < 0) {
        fprintf(stderr, "q35lab: bench moe: shape hidden=%d E=%d k=%d I=%d Is=%d needs 1 <= k <= E, I >= 1, "
                        "Is >= 0\n", sh->hidden, sh->E, sh->top_k, sh->I, sh->Is);
        return 2;
    }
    char err[512] = "";
    q35_machine_limits lim;
    int have_limits;
    q35_counters *ctr;
    bench_report rep;
    if (bench_open(&rep, "moe", cfg.json, cfg.csv, cfg.machine, cfg.counters, &lim, &have_limits, &ctr)) return 2;
    printf("bench moe: shape %s (hidden %d, %d experts, top-%d, I %d, shared %d), skew %.2f, %d reps\n", sh->name,
           sh->hidden, sh->E, sh->top_k, sh->I, sh->Is, cfg.skew, cfg.reps);
    int rc = 0;
    for (int id = 0; id < cfg.ndtypes && !rc; id++)
        for (int it = 0; it < cfg.nT && !rc; it++) {
            moe_shape s = {.T = cfg.Ts[it], .hidden = sh->hidden, .E = sh->E, .top_k = sh->top_k, .inter = sh->I,
                           .inter_shared = sh->Is, .norm_topk_prob = 1, .wt = cfg.dtypes[id], .skew = cfg.skew};
            moe_case c;
            fprintf(stderr, "[bench moe] drawing a %s problem, T=%d ...\r", moe_wtype_name(s.wt), s.T);
            if (moe_case_make(&c, &s, 1, err, sizeof err)) {
                fprintf(stderr, "q35lab: bench moe: %s\n", err);
                rc = 2;
                break;
            }
            for (int ith = 0; ith < cfg.nthreads && !rc; ith++) {
                const int th = cfg.threads[ith];
                bench_row_begin(&rep, 1, s.T, th);
                snprintf(rep.variant, sizeof rep.variant, "%s", moe_wtype_name(s.wt));
                for (int i = 0; i < moe_n_entries() && !rc; i++) {
                    const moe_impl *im = moe_entry(i);
                    if (!bench_impl_selected(cfg.impl, im->name) || (im->available && !im->available())) continue;
                    double *times = calloc(cfg.reps, sizeof *times);
                    moe_opts o = {.threads = th};
                    moe_stats st = {0};
                    if (ctr) q35_counters_reset(ctr);
                    q35_load_mark lm;
                    q35_load_begin(&lm);
                    bench_progress("moe", im->name, 1, s.T, th);
                    const double warm_until = q35_now() + WARMUP_SECONDS;
                    /* r = -1: untimed warm-up, repeated for WARMUP_SECONDS (bench.h) */
                    for (int r = -1; r < cfg.reps && times && !rc; r++) {
                        if (r >= 0 && ctr) q35_counters_start(ctr);
                        q35_wake_team(th);
                        const double t0 = q35_now();
                        rc = moe_run(im, &c.p, &o, &st, err, sizeof err) ? 2 : 0;
                        const double t1 = q35_now();
                        if (r >= 0 && ctr) q35_counters_stop(ctr);
                        if (r >= 0) times[r] = t1 - t0;
                        else if (t1 < warm_until) r--; /* warm up again */
                    }
                    if (!times || rc) {
                        fprintf(stderr, "q35lab: bench moe %s: %s\n", im->name, times ? err : "out of memory");
                        rc = 2;
                    } else {
                        bench_result r = {.impl = im->name, .stats = q35_stats_of(times, cfg.reps),
                                          .flops = (double)moe_work_flops(&c.p),
                                          .bytes = (double)moe_work_weight_bytes(&c.p, st.experts_touched),
                                          .tokens = s.T, .other_load = q35_load_end_other_fraction(&lm)};
                        if (have_limits) {
                            r.peak_gflops = q35_limit_fma_peak(&lim, th);
                            r.bw_gbs = q35_limit_mem_bw(&lim, "read", th);
                        }
                        snprintf(r.note, sizeof r.note, "experts %d, max load %d, padded rows %lld",
                                 st.experts_touched, st.max_load, st.padded_rows);
                        bench_result_add(&rep, &r, ctr, cfg.reps);
                    }
                    free(times);
                }
                bench_row_end(&rep);
            }
            moe_case_free(&c);
        }
    if (bench_report_close(&rep, rc == 0) && !rc) rc = 2;
    q35_counters_close(ctr);
    return rc;
}
