/* q35lab bench model: the whole decoder from a checkpoint.  Per prompt length
 * and thread count, two results side by side: `prefill` (TTFT of a prompt
 * into a fresh state, tokens = prompt length) and `decode` (one greedy step
 * after it, tokens = 1), as medians with spread over the repetitions, with
 * GFLOP/s and GB/s against the calibrated limits.  Bytes are the weights a
 * step reads (q35_model_decode_bytes: every matrix once, the tied lm_head's
 * embedding table included); flops are q35_model_flops (docs/model.md §6).
 */
#include "bench/bench_model.h"

#include "common/clock.h"
#include "model/forward.h"
#include "model/generate.h"
#include "harness/calibrate.h"
#include "harness/impl_select.h"
#include "bench/bench.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void model_bench_defaults(model_bench_config *c)
{
    *c = (model_bench_config){.lens = {128, 512}, .nlens = 2, .threads = {omp_get_num_procs()}, .nthreads = 1,
                              .gen = 32, .reps = 3, .impl = "default", .machine = "results/machine.json"};
}

/* One prompt length at one thread count: reps x (prefill, gen - 1 decode steps). */
static int run_one(const q35_model *m, const q35_impls *im, int len, int gen, int reps, double *ttft, double *step,
                   char *err, size_t errlen)
{
    q35_state s;
    if (q35_state_init(&s, &m->cfg, 1, len + gen, err, errlen)) return -1;
    int32_t *ids = malloc((size_t)len * sizeof *ids);
    float *lg = malloc((size_t)m->cfg.vocab_size * sizeof *lg);
    int rc = -1;
    if (!ids || !lg) { snprintf(err, errlen, "out of memory"); goto out; }
    for (int i = 0; i < len; i++) ids[i] = (int32_t)((7919L * i + 13) % m->cfg.vocab_size);
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        q35_state_reset(&s);
        double t0 = q35_now();
        if (q35_forward(m, &s, im, len, ids, NULL, lg, 0, err, errlen)) goto out;
        if (r >= 0) ttft[r] = q35_now() - t0;
        for (int g = 0; g < gen - 1; g++) {
            int32_t tok = q35_argmax(lg, m->cfg.vocab_size);
            t0 = q35_now();
            if (q35_forward(m, &s, im, 1, &tok, NULL, lg, 0, err, errlen)) goto out;
            if (r >= 0) step[(size_t)r * (gen - 1) + g] = q35_now() - t0;
        }
    }
    rc = 0;
out:
    q35_state_free(&s);
    free(ids);
    free(lg);
    return rc;
}

int bench_model(const model_bench_config *config)
{
    const model_bench_config cfg = *config;
    if (!cfg.dir) { fprintf(stderr, "q35lab: bench model: --model DIR is required\n"); return 2; }
    if (cfg.gen < 2) { fprintf(stderr, "q35lab: bench model: --gen must be at least 2 (a prefill and a step)\n"); return 2; }
    char err[512] = "";
    q35_impls im = {.dr_crossover = cfg.auto_crossover};
    if (q35_impls_parse(cfg.impl, &im, err, sizeof err)) { fprintf(stderr, "q35lab: %s\n", err); return 2; }
    q35_model m;
    const q35_load_opts lo = {.mmap = cfg.mmap, .force_f32 = cfg.f32};
    if (q35_model_load(cfg.dir, &lo, &m, err, sizeof err)) { fprintf(stderr, "q35lab: %s\n", err); return 2; }
    q35_machine_limits lim;
    const int have_limits = q35_limits_load(cfg.machine, &lim, err, sizeof err) == 0;
    if (!have_limits) fprintf(stderr, "bench: no machine limits (%s); run `build/q35lab calibrate`\n", err);
    bench_report rep;
    if (bench_report_open(&rep, "model", cfg.json, cfg.csv, cfg.machine)) { q35_model_free(&m); return 2; }
    rep.phases = 1;
    char spec[256];
    q35_impls_format(&im, spec, sizeof spec);
    const double bytes = (double)q35_model_decode_bytes(&m);
    printf("bench model: %s (%s, %d layers, %s weights, %.1f MiB read per decode step), %s, %d reps, %d tokens "
           "generated\n", cfg.dir, m.cfg.model_type, m.cfg.num_hidden_layers, m.wt == WT_BF16 ? "BF16" : "F32",
           bytes / 1048576.0, spec, cfg.reps, cfg.gen);
    int rc = 0;
    double *ttft = calloc((size_t)cfg.reps, sizeof *ttft);
    double *step = calloc((size_t)cfg.reps * (cfg.gen - 1), sizeof *step);
    for (int il = 0; il < cfg.nlens && !rc && ttft && step; il++)
        for (int it = 0; it < cfg.nthreads && !rc; it++) {
            const int len = cfg.lens[il], th = cfg.threads[it];
            im.threads = th;
            bench_row_begin(&rep, 1, len, th);
            snprintf(rep.variant, sizeof rep.variant, "%s", m.wt == WT_BF16 ? "bf16" : "f32");
            bench_progress("model", "prefill+decode", 1, len, th);
            q35_load_mark lm;
            q35_load_begin(&lm);
            if (run_one(&m, &im, len, cfg.gen, cfg.reps, ttft, step, err, sizeof err)) {
                fprintf(stderr, "q35lab: bench model: %s\n", err);
                rc = 2;
                break;
            }
            const double other = q35_load_end_other_fraction(&lm);
            bench_result pre = {.impl = "prefill", .stats = q35_stats_of(ttft, cfg.reps),
                                .flops = q35_model_flops(&m, 0, len), .bytes = bytes, .tokens = len,
                                .other_load = other};
            bench_result dec = {.impl = "decode", .stats = q35_stats_of(step, cfg.reps * (cfg.gen - 1)),
                                .flops = q35_model_flops(&m, len + cfg.gen / 2, 1), .bytes = bytes, .tokens = 1,
                                .other_load = other};
            if (have_limits) {
                pre.peak_gflops = dec.peak_gflops = q35_limit_fma_peak(&lim, th);
                pre.bw_gbs = dec.bw_gbs = q35_limit_mem_bw(&lim, "read", th);
            }
            snprintf(pre.note, sizeof pre.note, "TTFT; %.88s", spec);
            snprintf(dec.note, sizeof dec.note, "TPOT; bound %.1f ms at %.1f GB/s", have_limits && dec.bw_gbs > 0
                     ? 1e3 * bytes / (dec.bw_gbs * 1e9) : 0.0, dec.bw_gbs);
            bench_result_add(&rep, &pre, NULL, cfg.reps);
            bench_result_add(&rep, &dec, NULL, cfg.reps * (cfg.gen - 1));
            bench_row_end(&rep);
        }
    if (!ttft || !step) { fprintf(stderr, "q35lab: bench model: out of memory\n"); rc = 2; }
    free(ttft);
    free(step);
    if (bench_report_close(&rep, rc == 0) && !rc) rc = 2;
    q35_model_free(&m);
    return rc;
}
