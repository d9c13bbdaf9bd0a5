/* q35lab bench linear: every linear implementation side by side per (weight type, M, threads), as
 * medians with spread and fractions of the calibrated limits.  At small M the work is reading W
 * once, so GB/s against the calibrated read bandwidth is the column that matters (the bytes are
 * W's in its stored type, plus x and y); at large M it is GFLOP/s (2 M N K).  Inputs: x uniform
 * in [-1, 1), W uniform in [-1, 1) / sqrt(K) rounded to the weight type (q8, q4: quantized rows,
 * kernels/quant/).  The lossy entries (tiled-bf16dot, tiled-amx, tiled-int8dot) are timed like the
 * others: `q35lab list` and docs/quantization.md say what they round.
 * One W re-read call after call stays partly in a large L3 (480 MiB on some hosts here), which
 * is not what a model's decode step sees; --cold MIB times each call on the next of as many
 * copies of W as fill MIB, so W comes from DRAM as it does in the model.
 */
#include "bench/bench_linear.h"

#include "bench/bench.h"
#include "harness/calibrate.h"
#include "harness/timing.h"
#include "kernels/linear/linear.h"
#include "kernels/quant/quant.h"
#include "ref/linear_ref.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void linear_bench_defaults(linear_bench_config *c)
{
    *c = (linear_bench_config){.N = 6144, .K = 1024, .Ms = {1, 8, 512}, .nM = 3, .threads = {omp_get_num_procs()},
                               .nthreads = 1, .reps = 10, .weights = "bf16,q8,q4", .impl = "all",
                               .counters = "none", .machine = "results/machine.json"};
}

static const linear_impl *entry(int i) { return i < linear_n_impls ? &linear_impls[i] : &linear_ref_impl; }
static int is_named(const char *name) { return linear_find(name) || !strcmp(name, linear_ref_impl.name); }

typedef struct {
    linear_problem p;  /* W: the first copy */
    size_t copies, *next, wbytes; /* next: shared by every entry, so no copy is read twice within MIB */
    int i;
    linear_opts o;
} linear_call;

static int call(void *ctx, char *err, size_t errlen)
{
    linear_call *k = ctx;
    linear_problem p = k->p;
    p.w = (const char *)k->p.w + k->wbytes * ((*k->next)++ % k->copies);
    return linear_run(entry(k->i), &p, &k->o, err, errlen);
}

/* "q8" -> WT_Q8_0_R16 ... (as the model's --weights: q8 / q4 interleaved, q8_0 / q4_0 in rows);
 * -1 if unknown. */
static int wtype_of(const char *s, size_t n)
{
    static const struct { const char *name; q35_wtype wt; } t[] = {
        {"f32", WT_F32},        {"bf16", WT_BF16},     {"q8", WT_Q8_0_R16},
        {"q4", WT_Q4_0_R16},    {"q8_0", WT_Q8_0},     {"q4_0", WT_Q4_0}};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        if (strlen(t[i].name) == n && !strncmp(s, t[i].name, n)) return (int)t[i].wt;
    return -1;
}

/* copies x W [N, K] of type wt from the fp32 values, one after another; NULL on failure (message
 * printed). */
static void *make_w(q35_wtype wt, const float *wf, int N, int K, size_t copies)
{
    const size_t rowb = q35_wtype_bytes(wt, (size_t)K);
    char *w = malloc(rowb * N * copies);
    if (!w) {
        fprintf(stderr, "q35lab: bench linear: out of memory for %zu cop%s of W (%.0f MiB)\n", copies,
                copies > 1 ? "ies" : "y", (double)(rowb * N * copies) / (1 << 20));
        return NULL;
    }
    const q35_wtype bt = q35_wtype_block(wt);
    for (int n = 0; n < N; n++) {
        const float *src = wf + (size_t)n * K;
        int bad = 0;
        switch (bt) {
        case WT_F32: memcpy(w + n * rowb, src, rowb); break;
        case WT_BF16: q35_f32_to_bf16_array(src, (uint16_t *)(w + n * rowb), (size_t)K); break;
        case WT_Q8_0: bad = q35_quantize_row_q8_0(src, (q35_block_q8_0 *)(w + n * rowb), (size_t)K); break;
        default: bad = q35_quantize_row_q4_0(src, (q35_block_q4_0 *)(w + n * rowb), (size_t)K); break;
        }
        if (bad) { fprintf(stderr, "q35lab: bench linear: could not quantize W\n"); free(w); return NULL; }
    }
    if (q35_wtype_is_r16(wt)) { /* the rows just written, interleaved into the second copy's place, then back */
        char *tmp = copies > 1 ? w + rowb * N : malloc(rowb * N);
        if (!tmp) { fprintf(stderr, "q35lab: bench linear: out of memory\n"); free(w); return NULL; }
        q35_r16_pack(w, bt == WT_Q8_0, (size_t)N, (size_t)K, tmp);
        memcpy(w, tmp, rowb * N);
        if (copies == 1) free(tmp);
    }
    for (size_t c = 1; c < copies; c++) memcpy(w + c * rowb * N, w, rowb * N);
    return w;
}

int bench_linear(const linear_bench_config *cfg)
{
    if (bench_check_impl_list("linear", cfg->impl, is_named)) return 2;
    q35_wtype wts[Q35_WT_COUNT];
    int nw = 0;
    for (const char *s = cfg->weights; *s;) {
        const size_t n = strcspn(s, ",");
        const int wt = wtype_of(s, n);
        if (wt < 0 || nw == Q35_WT_COUNT) {
            fprintf(stderr, "q35lab: bench linear: --weights takes f32,bf16,q8,q4,q8_0,q4_0; got '%.*s'\n", (int)n, s);
            return 2;
        }
        wts[nw++] = (q35_wtype)wt;
        s += n + (s[n] == ',');
    }
    int need_blocks = 0, need_r16 = 0;
    for (int i = 0; i < nw; i++) need_blocks |= q35_wtype_is_quant(wts[i]), need_r16 |= q35_wtype_is_r16(wts[i]);
    if (need_r16 && cfg->N % Q35_R16) {
        fprintf(stderr, "q35lab: bench linear: q8 and q4 interleave 16 rows, N=%d is not a multiple of 16 (q8_0 and "
                "q4_0 keep ggml's rows)\n", cfg->N);
        return 2;
    }
    if (cfg->N < 1 || cfg->K < 1 || (need_blocks && cfg->K % Q35_QBLOCK)) {
        fprintf(stderr, "q35lab: bench linear: needs N, K >= 1 (K a multiple of %d for q8, q4); got N=%d K=%d\n",
                Q35_QBLOCK, cfg->N, cfg->K);
        return 2;
    }
    int maxM = 0;
    for (int i = 0; i < cfg->nM; i++) maxM = cfg->Ms[i] > maxM ? cfg->Ms[i] : maxM;
    q35_machine_limits lim;
    int have_limits;
    q35_counters *ctr;
    bench_report rep;
    if (bench_open(&rep, "linear", cfg->json, cfg->csv, cfg->machine, cfg->counters, &lim, &have_limits, &ctr)) return 2;
    printf("bench linear: N=%d K=%d, y = x W^T, %d reps; flops 2 M N K, bytes W (stored type) + x + y", cfg->N,
           cfg->K, cfg->reps);
    if (cfg->cold_mib > 0) printf("; W cold: each call reads the next of the copies filling %d MiB", cfg->cold_mib);
    printf("\n");
    char err[512] = "";
    int rc = 0;
    double *times = calloc((size_t)cfg->reps, sizeof *times);
    float *wf = malloc(sizeof(float) * cfg->N * cfg->K), *x = malloc(sizeof(float) * maxM * cfg->K),
          *y = malloc(sizeof(float) * maxM * cfg->N);
    if (!times || !wf || !x || !y) { fprintf(stderr, "q35lab: bench linear: out of memory\n"); rc = 2; }
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    if (!rc) {
        bench_fill_uniform(wf, (size_t)cfg->N * cfg->K, &seed);
        const float sc = 1.0f / sqrtf((float)cfg->K); /* W's rows of unit-ish norm */
        for (size_t i = 0; i < (size_t)cfg->N * cfg->K; i++) wf[i] *= sc;
        bench_fill_uniform(x, (size_t)maxM * cfg->K, &seed);
    }
    for (int iw = 0; iw < nw && !rc; iw++) {
        const size_t wsz = q35_wtype_bytes(wts[iw], (size_t)cfg->N * cfg->K);
        const size_t copies = cfg->cold_mib > 0 ? ((size_t)cfg->cold_mib << 20) / wsz + 1 : 1;
        void *w = make_w(wts[iw], wf, cfg->N, cfg->K, copies);
        if (!w) { rc = 2; break; }
        const double wbytes = (double)wsz;
        size_t next_copy = 0;
        for (int im_ = 0; im_ < cfg->nM && !rc; im_++) {
            const int M = cfg->Ms[im_];
            linear_problem p = {.M = M, .N = cfg->N, .K = cfg->K, .x = x, .w = w, .wt = wts[iw], .y = y};
            for (int ith = 0; ith < cfg->nthreads && !rc; ith++) {
                const int th = cfg->threads[ith];
                bench_row_begin(&rep, 1, M, th);
                snprintf(rep.variant, sizeof rep.variant, "%s", q35_wtype_name(wts[iw]));
                for (int i = 0; i < linear_n_impls + 1 && !rc; i++) {
                    const linear_impl *im = entry(i);
                    if (!bench_impl_selected(cfg->impl, im->name) || (im->available && !im->available())) continue;
                    if (ctr) q35_counters_reset(ctr);
                    q35_load_mark lm;
                    q35_load_begin(&lm);
                    bench_progress("linear", im->name, 1, M, th);
                    linear_call k = {.p = p, .copies = copies, .next = &next_copy, .wbytes = wsz, .i = i, .o = {.threads = th}};
                    if (bench_time_calls(call, &k, cfg->reps, th, ctr, times, err, sizeof err)) {
                        fprintf(stderr, "q35lab: bench linear %s: %s\n", im->name, err);
                        rc = 2;
                        break;
                    }
                    bench_result r = {.impl = im->name, .stats = q35_stats_of(times, cfg->reps),
                                      .flops = 2.0 * M * cfg->N * cfg->K,
                                      .bytes = wbytes + 4.0 * M * (cfg->K + cfg->N), .tokens = M,
                                      .other_load = q35_load_end_other_fraction(&lm)};
                    if (im->lossy) snprintf(r.note, sizeof r.note, "lossy");
                    if (have_limits) {
                        r.peak_gflops = q35_limit_fma_peak(&lim, th);
                        r.bw_gbs = q35_limit_mem_bw(&lim, "read", th);
                    }
                    bench_result_add(&rep, &r, ctr, cfg->reps);
                }
                bench_row_end(&rep);
            }
        }
        free(w);
    }
    free(times);
    free(wf);
    free(x);
    free(y);
    if (bench_report_close(&rep, rc == 0) && !rc) rc = 2;
    q35_counters_close(ctr);
    return rc;
}
