/* calibrate: measurements, machine metadata, machine.json writing and reading (calibrate.h).
 *
 * Timing discipline: every timed repetition is one OpenMP parallel region (or a batch of
 * sgemm calls) bracketed by barriers, timed by one thread with CLOCK_MONOTONIC; the work per
 * repetition is sized beforehand so a repetition lasts the configured time; one untimed
 * warm-up repetition precedes the timed ones.  The SIMD kernels are compiled with target
 * attributes (like the lab's kernels) and chosen at run time.
 */
#include "harness/calibrate.h"

#include "kernels/cpu_features.h"

#include "common/clock.h"
#include "common/errmsg.h"
#include "common/huge_pages.h"
#include "common/json_file.h"
#include "harness/timing.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <papi.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------- */
/* Names                                                                                   */
/* ------------------------------------------------------------------------------------- */

static const char *const fma_isa_names[Q35_FMA_NISA] = {"avx2", "avx512"};
static const char *const bw_kind_names[Q35_BW_NKIND] = {"read", "copy", "triad"};
static const char *const cache_kind_names[Q35_CACHE_NKIND] = {"read", "triad"};
static const char *const cache_size_names[Q35_CACHE_NSIZES] = {"32KiB", "512KiB", "4MiB"};
static const size_t cache_sizes[Q35_CACHE_NSIZES] = {32u << 10, 512u << 10, 4u << 20};
static const char *const phase_names[4] = {"fma", "mem", "cache", "sgemm"};

const char *const q35_cpu_flag_names[Q35_NCPU_FLAGS] = {
    "avx",         "avx2",        "fma",         "f16c",     "avx512f",
    "avx512dq",    "avx512cd",    "avx512bw",    "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "avx_vnni",    "amx_tile", "amx_bf16",
};

const char *q35_fma_isa_name(int i) { return i >= 0 && i < Q35_FMA_NISA ? fma_isa_names[i] : "?"; }
const char *q35_bw_kind_name(int k) { return k >= 0 && k < Q35_BW_NKIND ? bw_kind_names[k] : "?"; }
const char *q35_cache_kind_name(int k) { return k >= 0 && k < Q35_CACHE_NKIND ? cache_kind_names[k] : "?"; }
const char *q35_cache_size_name(int i) { return i >= 0 && i < Q35_CACHE_NSIZES ? cache_size_names[i] : "?"; }
size_t q35_cache_size_bytes(int i) { return i >= 0 && i < Q35_CACHE_NSIZES ? cache_sizes[i] : 0; }


/* ------------------------------------------------------------------------------------- */
/* Configurations                                                                          */
/* ------------------------------------------------------------------------------------- */

static const int kernel_shapes[Q35_SGEMM_NSHAPES][3] = {
    {64, 128, 128}, {128, 128, 64}, {2048, 1024, 6144},
    {16, 1024, 2048}, {16, 2048, 512}, {64, 1024, 2048}, {64, 2048, 512}};

static int online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > Q35_MAX_THREADS ? Q35_MAX_THREADS : (int)n;
}

void q35_calib_config_default(q35_calib_config *c)
{
    memset(c, 0, sizeof *c);
    int cores = online_cores();
    c->threads[0] = 1;
    c->nthreads = 1;
    if (cores > 1) c->threads[c->nthreads++] = cores;
    c->mem_bytes = (size_t)1 << 30;
    c->mem_reps = 10;
    c->fma_reps = 9;
    c->fma_seconds = 0.1;
    c->cache_reps = 11;
    c->cache_seconds = 0.025;
    c->sgemm_reps = 7;
    c->sgemm_seconds = 0.05;
    memcpy(c->sgemm_shapes, kernel_shapes, sizeof c->sgemm_shapes);
    c->progress = 1;
}

void q35_calib_config_quick(q35_calib_config *c)
{
    q35_calib_config_default(c);
    c->quick = 1;
    c->mem_bytes = (size_t)256 << 20;
    c->mem_reps = 5;
    c->fma_reps = 5;
    c->fma_seconds = 0.02;
    c->cache_reps = 5;
    c->cache_seconds = 0.005;
    c->sgemm_reps = 3;
    c->sgemm_seconds = 0.01;
    c->sgemm_shapes[2][0] = 1024;
    c->sgemm_shapes[2][1] = 512;
    c->sgemm_shapes[2][2] = 3072;
}

void q35_calib_config_tiny(q35_calib_config *c)
{
    q35_calib_config_default(c);
    c->quick = 1;
    c->nthreads = 1;
    c->threads[0] = 1;
    c->mem_bytes = (size_t)8 << 20;
    c->mem_reps = 3;
    c->fma_reps = 3;
    c->fma_seconds = 0.002;
    c->cache_reps = 3;
    c->cache_seconds = 0.001;
    c->sgemm_reps = 2;
    c->sgemm_seconds = 0.001;
    c->sgemm_shapes[2][0] = 256;
    c->sgemm_shapes[2][1] = 128;
    c->sgemm_shapes[2][2] = 768;
    c->progress = 0;
}

/* ------------------------------------------------------------------------------------- */
/* Kernels                                                                                 */
/* ------------------------------------------------------------------------------------- */

/* FMA peak: 12 independent accumulators a_i = a_i * m + c.  Zen 3 and Skylake-SP both have
 * two FMA pipes of latency 4, so 8 chains in flight saturate them; 12 leaves margin and with
 * the two constants still fits the 16 ymm registers.  Distinct start values keep the compiler
 * from merging chains; the result goes to a volatile sink. */
#define FMA_NACC 12
#define R12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

#define FMA_LOOP(SFX, TGT, V, W, SET1, FMADD, ADD, STOREU, ZERO)                                   \
    __attribute__((target(TGT), noinline)) static float fma_loop_##SFX(long iters, float seed)      \
    {                                                                                               \
        const V m = SET1(0.9999f), c = SET1(1e-4f);                                                 \
        R12(FMA_DECL_##SFX)                                                                         \
        for (long it = 0; it < iters; it++) {                                                       \
            R12(FMA_STEP_##SFX)                                                                     \
        }                                                                                           \
        V s = ZERO();                                                                               \
        R12(FMA_SUM_##SFX)                                                                          \
        float t[W], r = 0;                                                                          \
        STOREU(t, s);                                                                               \
        for (int k = 0; k < W; k++) r += t[k];                                                      \
        return r;                                                                                   \
    }

#define FMA_DECL_avx2(i) __m256 a##i = _mm256_set1_ps(seed + 0.001f * (float)(i));
#define FMA_STEP_avx2(i) a##i = _mm256_fmadd_ps(a##i, m, c);
#define FMA_SUM_avx2(i) s = _mm256_add_ps(s, a##i);
#define FMA_DECL_avx512(i) __m512 a##i = _mm512_set1_ps(seed + 0.001f * (float)(i));
#define FMA_STEP_avx512(i) a##i = _mm512_fmadd_ps(a##i, m, c);
#define FMA_SUM_avx512(i) s = _mm512_add_ps(s, a##i);

FMA_LOOP(avx2, "avx2,fma", __m256, 8, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_storeu_ps,
         _mm256_setzero_ps)
FMA_LOOP(avx512, "avx512f", __m512, 16, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_storeu_ps,
         _mm512_setzero_ps)

static const int fma_lanes[Q35_FMA_NISA] = {8, 16};

/* BF16 dot peak: the same 12 chains of vdpbf16ps (AVX512_BF16), a_i += x.y over 16 lanes of 2
 * bf16 pairs: 64 flops per instruction (2 multiplies and 2 adds per lane).  x = 1, y = 2^-8:
 * the sums grow by 2^-7 per step and stay normal and finite. */
#define DP_DECL(i) __m512 a##i = _mm512_set1_ps(seed + 0.001f * (float)(i));
#define DP_STEP(i) a##i = _mm512_dpbf16_ps(a##i, x, y);
#define DP_SUM(i) s = _mm512_add_ps(s, a##i);
__attribute__((target("avx512f,avx512bf16"), noinline)) static float bf16dot_loop(long iters, float seed)
{
    const __m512bh x = (__m512bh)_mm512_set1_epi32(0x3F803F80), y = (__m512bh)_mm512_set1_epi32(0x3B803B80);
    R12(DP_DECL)
    for (long it = 0; it < iters; it++) {
        R12(DP_STEP)
    }
    __m512 s = _mm512_setzero_ps();
    R12(DP_SUM)
    return _mm512_reduce_add_ps(s);
}

/* Bandwidth kernels, one source at two vector widths: read = sum reduction with 8
 * accumulators (hides add latency at two loads per cycle), copy c = a, triad a = b + s*c. */
#define BW_KERNELS(SFX, TGT, V, W, LOADU, STOREU, ADD, FMADD, SET1, ZERO)                           \
    __attribute__((target(TGT), noinline)) static float bw_read_##SFX(const float *a, size_t n)     \
    {                                                                                               \
        V s0 = ZERO(), s1 = ZERO(), s2 = ZERO(), s3 = ZERO();                                       \
        V s4 = ZERO(), s5 = ZERO(), s6 = ZERO(), s7 = ZERO();                                       \
        size_t i = 0;                                                                               \
        for (; i + 8 * W <= n; i += 8 * W) {                                                        \
            s0 = ADD(s0, LOADU(a + i));                                                             \
            s1 = ADD(s1, LOADU(a + i + W));                                                         \
            s2 = ADD(s2, LOADU(a + i + 2 * W));                                                     \
            s3 = ADD(s3, LOADU(a + i + 3 * W));                                                     \
            s4 = ADD(s4, LOADU(a + i + 4 * W));                                                     \
            s5 = ADD(s5, LOADU(a + i + 5 * W));                                                     \
            s6 = ADD(s6, LOADU(a + i + 6 * W));                                                     \
            s7 = ADD(s7, LOADU(a + i + 7 * W));                                                     \
        }                                                                                           \
        s0 = ADD(ADD(ADD(s0, s1), ADD(s2, s3)), ADD(ADD(s4, s5), ADD(s6, s7)));                     \
        float t[W], r = 0;                                                                          \
        STOREU(t, s0);                                                                              \
        for (int k = 0; k < W; k++) r += t[k];                                                      \
        for (; i < n; i++) r += a[i];                                                               \
        return r;                                                                                   \
    }                                                                                               \
    __attribute__((target(TGT), noinline)) static void bw_copy_##SFX(float *c, const float *a, size_t n) \
    {                                                                                               \
        size_t i = 0;                                                                               \
        for (; i + 4 * W <= n; i += 4 * W) {                                                        \
            V x0 = LOADU(a + i), x1 = LOADU(a + i + W), x2 = LOADU(a + i + 2 * W), x3 = LOADU(a + i + 3 * W); \
            STOREU(c + i, x0);                                                                      \
            STOREU(c + i + W, x1);                                                                  \
            STOREU(c + i + 2 * W, x2);                                                              \
            STOREU(c + i + 3 * W, x3);                                                              \
        }                                                                                           \
        for (; i < n; i++) c[i] = a[i];                                                             \
    }                                                                                               \
    __attribute__((target(TGT), noinline)) static void bw_triad_##SFX(float *a, const float *b, const float *c, \
                                                                      float s, size_t n)            \
    {                                                                                               \
        const V vs = SET1(s);                                                                       \
        size_t i = 0;                                                                               \
        for (; i + 4 * W <= n; i += 4 * W) {                                                        \
            V x0 = FMADD(vs, LOADU(c + i), LOADU(b + i));                                           \
            V x1 = FMADD(vs, LOADU(c + i + W), LOADU(b + i + W));                                   \
            V x2 = FMADD(vs, LOADU(c + i + 2 * W), LOADU(b + i + 2 * W));                           \
            V x3 = FMADD(vs, LOADU(c + i + 3 * W), LOADU(b + i + 3 * W));                           \
            STOREU(a + i, x0);                                                                      \
            STOREU(a + i + W, x1);                                                                  \
            STOREU(a + i + 2 * W, x2);                                                              \
            STOREU(a + i + 3 * W, x3);                                                              \
        }                                                                                           \
        for (; i < n; i++) a[i] = b[i] + s * c[i];                                                  \
    }

BW_KERNELS(avx2, "avx2,fma", __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_add_ps, _mm256_fmadd_ps,
           _mm256_set1_ps, _mm256_setzero_ps)
BW_KERNELS(avx512, "avx512f", __m512, 16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_add_ps, _mm512_fmadd_ps,
           _mm512_set1_ps, _mm512_setzero_ps)

__attribute__((noinline)) static float bw_read_generic(const float *a, size_t n)
{
    float s[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) s[k] += a[i + k];
    for (; i < n; i++) s[0] += a[i];
    return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}
__attribute__((noinline)) static void bw_copy_generic(float *c, const float *a, size_t n)
{
    for (size_t i = 0; i < n; i++) c[i] = a[i];
}
__attribute__((noinline)) static void bw_triad_generic(float *a, const float *b, const float *c, float s, size_t n)
{
    for (size_t i = 0; i < n; i++) a[i] = b[i] + s * c[i];
}

typedef struct {
    const char *name;
    float (*read)(const float *, size_t);
    void (*copy)(float *, const float *, size_t);
    void (*triad)(float *, const float *, const float *, float, size_t);
} bw_impl;

static const bw_impl bw_impls[] = {
    {"avx512", bw_read_avx512, bw_copy_avx512, bw_triad_avx512},
    {"avx2", bw_read_avx2, bw_copy_avx2, bw_triad_avx2},
    {"generic", bw_read_generic, bw_copy_generic, bw_triad_generic},
};

static int have_avx2(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
static int have_avx512(void) { return __builtin_cpu_supports("avx512f"); }

static const bw_impl *bw_pick(void)
{
    return have_avx512() ? &bw_impls[0] : have_avx2() ? &bw_impls[1] : &bw_impls[2];
}

static volatile double g_sink; /* results of the timed loops end here */

/* ------------------------------------------------------------------------------------- */
/* Parallel timing                                                                         */
/* ------------------------------------------------------------------------------------- */

/* Work of one thread in one repetition; inner = how many times to repeat it. */
typedef void (*work_fn)(void *ctx, int tid, int nt, long inner);

/* One timed repetition on t threads: barrier, clock, work, barrier, clock.  *got gets the
 * thread count OpenMP actually gave. */
static double par_time(int t, work_fn fn, void *ctx, long inner, int *got)
{
    double t0 = 0, t1 = 0;
    int nt = 0;
#pragma omp parallel num_threads(t)
    {
        int tid = omp_get_thread_num(), n = omp_get_num_threads();
#pragma omp barrier
#pragma omp single
        t0 = q35_now();
        fn(ctx, tid, n, inner);
#pragma omp barrier
#pragma omp single
        {
            t1 = q35_now();
            nt = n;
        }
    }
    *got = nt;
    return t1 - t0;
}

/* inner such that one repetition takes about target seconds (at least 1).  Sized on one
 * thread (the per-thread work is the same at every thread count) with the faster of two
 * trials per step, so a descheduled thread or a slow barrier cannot shrink it to nothing. */
static long size_inner(work_fn fn, void *ctx, double target)
{
    long inner = 1;
    int got;
    for (;;) {
        double a = par_time(1, fn, ctx, inner, &got), b = par_time(1, fn, ctx, inner, &got);
        double dt = a < b ? a : b;
        if (dt >= 0.2 * target || inner >= (1L << 40)) {
            double v = (double)inner * target / (dt > 1e-9 ? dt : 1e-9);
            return v < 1 ? 1 : v > (double)(1L << 42) ? (1L << 42) : (long)v;
        }
        double k = dt > 1e-7 ? 0.5 * target / dt : 100;
        k = k < 2 ? 2 : k > 100 ? 100 : k;
        inner = (long)((double)inner * k);
    }
}

typedef struct {
    char *err;
    size_t errlen;
    int failed;
} run_ctx;

/* Warm-up plus reps timed repetitions; value_i = work / time_i / 1e9. */
static int measure(run_ctx *rc, int t, work_fn fn, void *ctx, long inner, double work, int reps, q35_stats *out)
{
    double v[256];
    int got;
    if (reps > 256) reps = 256;
    par_time(t, fn, ctx, inner, &got);
    for (int r = 0; r < reps; r++) {
        double dt = par_time(t, fn, ctx, inner, &got);
        if (got != t) {
            q35_errmsg(rc->err, rc->errlen, "OpenMP gave %d threads instead of %d (OMP_DYNAMIC / OMP_THREAD_LIMIT?)",
                    got, t);
            rc->failed = 1;
            return -1;
        }
        v[r] = work / (dt > 1e-12 ? dt : 1e-12) / 1e9;
    }
    *out = q35_stats_of(v, reps);
    return 0;
}

/* ------------------------------------------------------------------------------------- */
/* Progress                                                                                */
/* ------------------------------------------------------------------------------------- */

typedef struct {
    int on, tty, step, total;
    double t0;
} progress_t;

static void progress(progress_t *p, const char *fmt, ...)
{
    if (!p->on) return;
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->step++;
    if (p->tty)
        fprintf(stderr, "\r\033[K[calibrate %2d/%d %5.1fs] %s", p->step, p->total, q35_now() - p->t0, msg);
    else
        fprintf(stderr, "[calibrate %2d/%d %5.1fs] %s\n", p->step, p->total, q35_now() - p->t0, msg);
    fflush(stderr);
}

static void progress_done(progress_t *p)
{
    if (p->on && p->tty) fprintf(stderr, "\r\033[K");
}

/* ------------------------------------------------------------------------------------- */
/* 1. FMA peak                                                                             */
/* ------------------------------------------------------------------------------------- */

typedef struct {
    int isa;
    double sink[Q35_MAX_THREADS * 8];
} fma_ctx;

static void fma_work(void *vctx, int tid, int nt, long inner)
{
    (void)nt;
    fma_ctx *c = vctx;
    float seed = 0.5f + 0.01f * (float)tid + (float)(g_sink > 1e300);
    c->sink[tid * 8] += c->isa == Q35_FMA_AVX512 ? fma_loop_avx512(inner, seed) : fma_loop_avx2(inner, seed);
}

static void bf16dot_work(void *vctx, int tid, int nt, long inner)
{
    (void)nt;
    fma_ctx *c = vctx;
    float seed = 0.5f + 0.01f * (float)tid + (float)(g_sink > 1e300);
    c->sink[tid * 8] += bf16dot_loop(inner, seed);
}

/* The BF16 dot peak (vdpbf16ps), after the fp32 FMA ones; n/a without AVX512_BF16. */
static int run_bf16dot(run_ctx *rc, const q35_calib_config *cfg, q35_calib_result *r, progress_t *pg)
{
    if (!cpu_has_detected(CPU_FEAT_AVX512_BF16)) {
        snprintf(r->bf16dot_na, sizeof r->bf16dot_na, "n/a: CPU has no AVX512_BF16");
        pg->step += cfg->nthreads;
        return 0;
    }
    fma_ctx *c = calloc(1, sizeof *c);
    if (!c) return q35_errmsg(rc->err, rc->errlen, "out of memory"), -1;
    long iters = size_inner(bf16dot_work, c, cfg->fma_seconds);
    for (int ti = 0; ti < cfg->nthreads; ti++) {
        int t = cfg->threads[ti];
        progress(pg, "BF16 dot peak (vdpbf16ps), %d thread%s", t, t > 1 ? "s" : "");
        double flops = (double)t * (double)iters * FMA_NACC * 64.0;
        if (measure(rc, t, bf16dot_work, c, iters, flops, cfg->fma_reps, &r->bf16dot[ti])) {
            free(c);
            return -1;
        }
    }
    for (int k = 0; k < Q35_MAX_THREADS; k++) g_sink += c->sink[k * 8];
    free(c);
    r->bf16dot_ran = 1;
    return 0;
}

static int run_fma(run_ctx *rc, const q35_calib_config *cfg, q35_calib_result *r, progress_t *pg)
{
    for (int isa = 0; isa < Q35_FMA_NISA; isa++) {
        r->fma_accumulators[isa] = FMA_NACC;
        int ok = isa == Q35_FMA_AVX512 ? have_avx512() : have_avx2();
        if (!ok) {
            snprintf(r->fma_na[isa], sizeof r->fma_na[isa], "%s",
                     isa == Q35_FMA_AVX512 ? "n/a: CPU has no AVX-512F" : "n/a: CPU has no AVX2+FMA");
            pg->step += cfg->nthreads;
            continue;
        }
        fma_ctx *c = calloc(1, sizeof *c);
        if (!c) return q35_errmsg(rc->err, rc->errlen, "out of memory"), -1;
        c->isa = isa;
        long iters = size_inner(fma_work, c, cfg->fma_seconds);
        for (int ti = 0; ti < cfg->nthreads; ti++) {
            int t = cfg->threads[ti];
            progress(pg, "fp32 FMA peak, %s, %d thread%s", fma_isa_names[isa], t, t > 1 ? "s" : "");
            double flops = (double)t * (double)iters * FMA_NACC * fma_lanes[isa] * 2.0;
            if (measure(rc, t, fma_work, c, iters, flops, cfg->fma_reps, &r->fma[isa][ti])) {
                free(c);
                return -1;
            }
        }
        for (int k = 0; k < Q35_MAX_THREADS; k++) g_sink += c->sink[k * 8];
        free(c);
        r->fma_ran[isa] = 1;
    }
    return run_bf16dot(rc, cfg, r, pg);
}

int q35_fma_probe_init(q35_fma_probe *p, int threads, double seconds)
{
    p->isa = have_avx512() ? Q35_FMA_AVX512 : have_avx2() ? Q35_FMA_AVX2 : -1;
    p->threads = threads;
    p->inner = 0;
    if (p->isa < 0 || threads < 1 || threads > Q35_MAX_THREADS || !(seconds > 0)) return -1;
    fma_ctx *c = calloc(1, sizeof *c);
    if (!c) return -1;
    c->isa = p->isa;
    p->inner = size_inner(fma_work, c, seconds);
    free(c);
    return 0;
}

double q35_fma_probe_run(const q35_fma_probe *p)
{
    if (p->inner < 1) return 0;
    fma_ctx *c = calloc(1, sizeof *c);
    if (!c) return 0;
    c->isa = p->isa;
    int got;
    const double dt = par_time(p->threads, fma_work, c, p->inner, &got);
    for (int k = 0; k < Q35_MAX_THREADS; k++) g_sink += c->sink[k * 8];
    free(c);
    if (got != p->threads || !(dt > 0)) return 0;
    return (double)p->threads * (double)p->inner * FMA_NACC * fma_lanes[p->isa] * 2.0 / dt / 1e9;
}

/* ------------------------------------------------------------------------------------- */
/* 2. Memory bandwidth (STREAM-like)                                                       */
/* ------------------------------------------------------------------------------------- */

typedef struct {
    const bw_impl *k;
    int kind;
    float *a, *b, *c;
    size_t n;
    double sink[Q35_MAX_THREADS * 8];
} mem_ctx;

/* Thread tid's part of [0, n): 16-float (64-byte) aligned starts, the last takes the rest. */
static void part(size_t n, int tid, int nt, size_t *lo, size_t *hi)
{
    size_t per = (n / (size_t)nt) & ~(size_t)15;
    *lo = (size_t)tid * per;
    *hi = tid == nt - 1 ? n : *lo + per;
}

static void mem_work(void *vctx, int tid, int nt, long inner)
{
    mem_ctx *c = vctx;
    size_t lo, hi;
    part(c->n, tid, nt, &lo, &hi);
    for (long r = 0; r < inner; r++) {
        switch (c->kind) {
        case Q35_BW_READ: c->sink[tid * 8] += c->k->read(c->a + lo, hi - lo); break;
        case Q35_BW_COPY: c->k->copy(c->c + lo, c->a + lo, hi - lo); break;
        default: c->k->triad(c->a + lo, c->b + lo, c->c + lo, 3.0f, hi - lo); break;
        }
    }
}

static void mem_first_touch(void *vctx, int tid, int nt, long inner)
{
    (void)inner;
    mem_ctx *c = vctx;
    size_t lo, hi;
    part(c->n, tid, nt, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        c->a[i] = 1.0f;
        c->b[i] = 2.0f;
        c->c[i] = 0.0f;
    }
}

/* Right after each read figure, so the two describe the same placement of the threads. */
static int handoff_stats(int threads, int trips, int reps, q35_stats *out);

static int run_mem(run_ctx *rc, const q35_calib_config *cfg, q35_calib_result *r, progress_t *pg)
{
    mem_ctx *c = calloc(1, sizeof *c);
    if (!c) return q35_errmsg(rc->err, rc->errlen, "out of memory"), -1;
    size_t bytes = cfg->mem_bytes & ~(size_t)63;
    c->k = bw_pick();
    c->n = bytes / sizeof(float);
    c->a = q35_alloc_huge(bytes);
    c->b = q35_alloc_huge(bytes);
    c->c = q35_alloc_huge(bytes);
    int rv = -1;
    if (!c->a || !c->b || !c->c || !c->n) {
        q35_errmsg(rc->err, rc->errlen, "cannot allocate 3 x %zu MiB for the bandwidth arrays (try --mem-mib)",
                bytes >> 20);
        goto out;
    }
    int tmax = 1, got;
    for (int ti = 0; ti < cfg->nthreads; ti++)
        if (cfg->threads[ti] > tmax) tmax = cfg->threads[ti];
    par_time(tmax, mem_first_touch, c, 1, &got); /* pages land where the threads run */
    size_t map = 0, huge = q35_huge_backed_bytes(c->a, &map);
    r->huge_pages_used = huge > 0;
    r->huge_page_fraction = map ? (double)huge / (double)map : 0.0;
    static const double arrays[Q35_BW_NKIND] = {1, 2, 3}; /* STREAM's byte count */
    for (int kind = 0; kind < Q35_BW_NKIND; kind++) {
        c->kind = kind;
        for (int ti = 0; ti < cfg->nthreads; ti++) {
            int t = cfg->threads[ti];
            progress(pg, "memory %s, 3 x %zu MiB, %d thread%s", bw_kind_names[kind], bytes >> 20, t, t > 1 ? "s" : "");
            double work = arrays[kind] * (double)c->n * sizeof(float);
            if (measure(rc, t, mem_work, c, 1, work, cfg->mem_reps, &r->mem[kind][ti])) goto out;
            const int ho = kind == Q35_BW_READ && t >= 2 ? handoff_stats(t, Q35_HANDOFF_TRIPS, cfg->mem_reps, &r->handoff[ti]) : 0;
            if (ho == -1) {
                q35_errmsg(rc->err, rc->errlen, "OpenMP gave fewer than 2 threads for the hand-off probe");
                goto out;
            }
            if (ho == -2) r->handoff_given_up[ti] = 1; /* no figure: n/a with the reason */
        }
    }
    for (int k = 0; k < Q35_MAX_THREADS; k++) g_sink += c->sink[k * 8];
    rv = 0;
out:
    q35_free_huge(c->a, bytes);
    q35_free_huge(c->b, bytes);
    q35_free_huge(c->c, bytes);
    free(c);
    return rv;
}

int q35_bw_probe_init(q35_bw_probe *p, int threads, size_t bytes)
{
    memset(p, 0, sizeof *p);
    bytes &= ~(size_t)63;
    if (threads < 1 || threads > Q35_MAX_THREADS || bytes < 64) return -1;
    mem_ctx *c = calloc(1, sizeof *c);
    if (!c) return -1;
    c->k = bw_pick();
    c->kind = Q35_BW_READ;
    c->n = bytes / sizeof(float);
    /* run_mem's first touch writes all three arrays: here a alone, b and c pointing at it */
    if (!(c->a = q35_alloc_huge(bytes))) {
        free(c);
        return -1;
    }
    c->b = c->c = c->a;
    int got;
    par_time(threads, mem_first_touch, c, 1, &got); /* pages land where the threads run */
    p->ctx = c;
    p->threads = threads;
    p->bytes = bytes;
    return 0;
}

/* As calibrate measures it (measure(): an untimed pass, then the median of timed ones), with
 * BW_PROBE_REPS timed passes instead of mem_reps: one pass alone, right after other work, read
 * 28-29 GB/s where the passes after it and calibrate's median read 30-31 (a scratch run on the
 * 2-vCPU development VM), which would have flattered the ratios to it by 3-5%. */
#define BW_PROBE_REPS 3
double q35_bw_probe_run(q35_bw_probe *p)
{
    mem_ctx *c = p->ctx;
    if (!c) return 0;
    double v[BW_PROBE_REPS];
    for (int r = -1; r < BW_PROBE_REPS; r++) {
        int got;
        const double dt = par_time(p->threads, mem_work, c, 1, &got);
        if (got != p->threads || !(dt > 0)) return 0;
        if (r >= 0) v[r] = (double)p->bytes / dt / 1e9;
    }
    for (int k = 0; k < Q35_MAX_THREADS; k++) g_sink += c->sink[k * 8];
    return q35_stats_of(v, BW_PROBE_REPS).median;
}

void q35_bw_probe_free(q35_bw_probe *p)
{
    mem_ctx *c = p->ctx;
    if (c) {
        q35_free_huge(c->a, p->bytes);
        free(c);
    }
    p->ctx = NULL;
}

/* ---- Thread hand-off ----
 * One cache line passed back and forth between threads 0 and 1: each waits (spinning on an acquire
 * load) for the other's value, then stores the next.  A round trip is two transfers of the line
 * between the two cores' caches, so it says how far apart the threads sit: about 50-80 ns when
 * they share a last-level cache, several times that when the line crosses between two (another
 * CCD of an EPYC, another socket).  On the 2-vCPU Zen 4 guest the placement moves, and with it
 * both this figure and the 2-thread read bandwidth (docs/calibrate.md "Thread hand-off"). */
#define HANDOFF_REPS 3
/* A run is given up after this long: 20000 round trips take 1-8 ms when the two threads run at
 * once, but when they share one CPU (taskset -c 0, a cgroup of one CPU, an OpenMP binding that
 * puts both on one place) every pass of the line waits for the scheduler to switch threads, and
 * the run would take minutes. */
#define HANDOFF_GIVE_UP_S 0.5
#define HANDOFF_CHECK_SPINS 4096 /* spins between two looks at the clock */
#define HANDOFF_NA_SHARED "n/a: " Q35_HANDOFF_NA_WHY " (given up after 0.5 s: one CPU for both?)"
typedef struct {
    _Alignas(64) atomic_int turn;
    char pad[64 - sizeof(atomic_int)];
    _Alignas(64) atomic_int given_up; /* its own line: read in the spins, written at most once */
    char pad2[64 - sizeof(atomic_int)];
} handoff_line;

/* Spins until the line holds `want`: 0, or -1 if either thread gave up (past `deadline`). */
static int handoff_wait(handoff_line *l, int want, double deadline)
{
    for (long spins = 1; atomic_load_explicit(&l->turn, memory_order_acquire) != want; spins++) {
        if (spins % HANDOFF_CHECK_SPINS) continue;
        if (atomic_load_explicit(&l->given_up, memory_order_relaxed)) return -1;
        if (q35_now() > deadline) {
            atomic_store_explicit(&l->given_up, 1, memory_order_relaxed);
            return -1;
        }
    }
    return 0;
}

/* Seconds for `trips` round trips; 0 if OpenMP gave fewer than 2 threads, -1 if the run was given
 * up (the threads did not run at once). */
static double handoff_once(int threads, int trips)
{
    handoff_line *l = aligned_alloc(64, sizeof *l);
    if (!l) return 0;
    atomic_init(&l->turn, 0);
    atomic_init(&l->given_up, 0);
    double t0 = 0, t1 = 0;
    int nt = 0;
    const double deadline = q35_now() + HANDOFF_GIVE_UP_S;
#pragma omp parallel num_threads(threads)
    {
        const int tid = omp_get_thread_num();
#pragma omp single
        nt = omp_get_num_threads();
        /* implicit barrier: every thread has nt */
        if (nt >= 2 && tid < 2) {
            if (tid == 0) t0 = q35_now();
            int ok = 1;
            for (int i = 0; i < trips && ok; i++) {
                const int want = 2 * i + tid, next = want + 1;
                ok = !handoff_wait(l, want, deadline);
                if (ok) atomic_store_explicit(&l->turn, next, memory_order_release);
            }
            if (tid == 0 && ok && !handoff_wait(l, 2 * trips, deadline)) t1 = q35_now();
        }
    }
    const int given_up = atomic_load(&l->given_up);
    free(l);
    if (nt < 2) return 0;
    return given_up ? -1 : t1 - t0;
}

/* reps timed runs of `trips` round trips after an untimed one (both threads awake, the line in play):
 * ns per round trip.  -1 if OpenMP gave fewer than 2 threads, -2 if a run was given up. */
static int handoff_stats(int threads, int trips, int reps, q35_stats *out)
{
    double v[256];
    if (reps > 256) reps = 256;
    if (handoff_once(threads, trips / 10 + 1) < 0) return -2;
    for (int r = 0; r < reps; r++) {
        const double dt = handoff_once(threads, trips);
        if (dt < 0) return -2;
        if (!(dt > 0)) return -1;
        v[r] = dt / trips * 1e9;
    }
    *out = q35_stats_of(v, reps);
    return 0;
}

double q35_handoff_probe_run(int threads, int trips)
{
    q35_stats st;
    if (threads < 2 || threads > Q35_MAX_THREADS || trips < 1 || handoff_stats(threads, trips, HANDOFF_REPS, &st)) return 0;
    return st.median;
}

/* ------------------------------------------------------------------------------------- */
/* 3. Cache-resident bandwidth                                                             */
/* ------------------------------------------------------------------------------------- */

typedef struct {
    const bw_impl *k;
    int kind;
    size_t ws;              /* bytes per thread */
    size_t n_read, n_triad; /* floats: read one array of ws, triad three arrays of ws/3 */
    float *buf[Q35_MAX_THREADS];
    int failed;
    double sink[Q35_MAX_THREADS * 8];
} cache_ctx;

static void cache_alloc(void *vctx, int tid, int nt, long inner)
{
    (void)nt;
    (void)inner;
    cache_ctx *c = vctx;
    float *p = q35_alloc_huge(c->ws); /* each thread its own buffer, first-touched by it */
    c->buf[tid] = p;
    if (!p) {
#pragma omp atomic write
        c->failed = 1;
        return;
    }
    for (size_t i = 0; i < c->n_read; i++) p[i] = 1.0f + (float)(i & 7);
}

static void cache_work(void *vctx, int tid, int nt, long inner)
{
    (void)nt;
    cache_ctx *c = vctx;
    float *p = c->buf[tid];
    size_t n3 = c->n_triad;
    double s = 0;
    for (long r = 0; r < inner; r++) {
        if (c->kind == Q35_CACHE_READ) s += c->k->read(p, c->n_read);
        else c->k->triad(p, p + n3, p + 2 * n3, 0.5f, n3);
    }
    c->sink[tid * 8] += s;
}

static int run_cache(run_ctx *rc, const q35_calib_config *cfg, q35_calib_result *r, progress_t *pg)
{
    cache_ctx *c = calloc(1, sizeof *c);
    if (!c) return q35_errmsg(rc->err, rc->errlen, "out of memory"), -1;
    c->k = bw_pick();
    int rv = -1;
    for (int si = 0; si < Q35_CACHE_NSIZES; si++) {
        c->ws = cache_sizes[si];
        c->n_read = c->ws / sizeof(float);
        c->n_triad = (c->ws / 3 / sizeof(float)) & ~(size_t)15;
        for (int ti = 0; ti < cfg->nthreads; ti++) {
            int t = cfg->threads[ti], got;
            memset(c->buf, 0, sizeof c->buf);
            c->failed = 0;
            par_time(t, cache_alloc, c, 1, &got);
            if (c->failed || got != t) {
                if (got != t) q35_errmsg(rc->err, rc->errlen, "OpenMP gave %d threads instead of %d", got, t);
                else q35_errmsg(rc->err, rc->errlen, "cannot allocate cache buffers of %zu bytes", c->ws);
                goto free_bufs;
            }
            for (int kind = 0; kind < Q35_CACHE_NKIND; kind++) {
                c->kind = kind;
                progress(pg, "cache %s, %s per thread, %d thread%s", cache_kind_names[kind], cache_size_names[si], t,
                         t > 1 ? "s" : "");
                long inner = size_inner(cache_work, c, cfg->cache_seconds);
                double per = kind == Q35_CACHE_READ ? (double)c->n_read : 3.0 * (double)c->n_triad;
                double work = (double)t * (double)inner * per * sizeof(float);
                if (measure(rc, t, cache_work, c, inner, work, cfg->cache_reps, &r->cache[si][kind][ti])) goto free_bufs;
            }
            for (int k = 0; k < Q35_MAX_THREADS; k++) {
                q35_free_huge(c->buf[k], c->ws);
                c->buf[k] = NULL;
            }
        }
    }
    for (int k = 0; k < Q35_MAX_THREADS; k++) g_sink += c->sink[k * 8];
    rv = 0;
free_bufs:
    for (int k = 0; k < Q35_MAX_THREADS; k++) q35_free_huge(c->buf[k], c->ws);
    free(c);
    return rv;
}

/* ------------------------------------------------------------------------------------- */
/* 4. OpenBLAS sgemm                                                                       */
/* ------------------------------------------------------------------------------------- */

static double sgemm_batch(int M, int N, int K, const float *A, const float *B, float *C, long calls)
{
    double t0 = q35_now();
    for (long i = 0; i < calls; i++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
    return q35_now() - t0;
}

static int run_sgemm(run_ctx *rc, const q35_calib_config *cfg, q35_calib_result *r, progress_t *pg)
{
    int saved = openblas_get_num_threads();
    for (int si = 0; si < Q35_SGEMM_NSHAPES; si++) {
        int M = cfg->sgemm_shapes[si][0], N = cfg->sgemm_shapes[si][1], K = cfg->sgemm_shapes[si][2];
        size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
        float *A = NULL, *B = NULL, *C = NULL;
        if (posix_memalign((void **)&A, 64, na * sizeof *A) || posix_memalign((void **)&B, 64, nb * sizeof *B) ||
            posix_memalign((void **)&C, 64, nc * sizeof *C)) {
            free(A);
            free(B);
            q35_errmsg(rc->err, rc->errlen, "cannot allocate sgemm %dx%dx%d", M, N, K);
            openblas_set_num_threads(saved);
            return -1;
        }
        for (size_t i = 0; i < na; i++) A[i] = (float)((int)(i % 13) - 6) * 0.01f;
        for (size_t i = 0; i < nb; i++) B[i] = (float)((int)(i % 7) - 3) * 0.02f;
        double flops = 2.0 * M * N * K;
        for (int ti = 0; ti < cfg->nthreads; ti++) {
            int t = cfg->threads[ti];
            progress(pg, "sgemm %dx%dx%d, %d thread%s", M, N, K, t, t > 1 ? "s" : "");
            openblas_set_num_threads(t);
            double dt = sgemm_batch(M, N, K, A, B, C, 1); /* warm-up: thread start, packing buffers */
            dt = sgemm_batch(M, N, K, A, B, C, 1);
            long calls = dt >= cfg->sgemm_seconds ? 1 : (long)(cfg->sgemm_seconds / (dt > 1e-7 ? dt : 1e-7));
            if (calls < 1) calls = 1;
            double v[256];
            int reps = cfg->sgemm_reps > 256 ? 256 : cfg->sgemm_reps;
            for (int k = 0; k < reps; k++) v[k] = flops * (double)calls / sgemm_batch(M, N, K, A, B, C, calls) / 1e9;
            r->sgemm[si][ti] = q35_stats_of(v, reps);
        }
        g_sink += C[nc - 1];
        free(A);
        free(B);
        free(C);
    }
    openblas_set_num_threads(saved);
    return 0;
}

/* ------------------------------------------------------------------------------------- */
/* Machine metadata                                                                        */
/* ------------------------------------------------------------------------------------- */

static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
}

/* First line of a command's output, "" on failure. */
static int run_line(const char *cmd, char *out, size_t len)
{
    out[0] = 0;
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    int got = fgets(out, (int)len, p) != NULL;
    while (fgetc(p) != EOF) {
    }
    int st = pclose(p);
    if (!got) out[0] = 0;
    chomp(out);
    return st == 0 ? (got ? 1 : 0) : -1;
}

static void read_cpuinfo(q35_machine_info *mi)
{
    snprintf(mi->cpu_model, sizeof mi->cpu_model, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    size_t cap = 0;
    char *line = NULL;
    int have_model = 0, have_flags = 0;
    while (getline(&line, &cap, f) > 0 && !(have_model && have_flags)) {
        char *colon = strchr(line, ':');
        if (!colon) continue;
        char *val = colon + 1;
        while (*val == ' ') val++;
        chomp(val);
        if (!have_model && !strncmp(line, "model name", 10)) {
            snprintf(mi->cpu_model, sizeof mi->cpu_model, "%s", val);
            have_model = 1;
        } else if (!have_flags && !strncmp(line, "flags", 5)) {
            have_flags = 1;
            char *save = NULL;
            for (char *tok = strtok_r(val, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
                for (int i = 0; i < Q35_NCPU_FLAGS; i++)
                    if (!strcmp(tok, q35_cpu_flag_names[i])) mi->cpu_flags[i] = 1;
        }
    }
    free(line);
    fclose(f);
}

static void papi_info(q35_machine_info *mi)
{
    static const char *const pmus[] = {"/sys/bus/event_source/devices/cpu", "/sys/bus/event_source/devices/cpu_core",
                                       "/sys/bus/event_source/devices/cpu_atom"};
    for (int i = 0; i < 3; i++) mi->cpu_pmu |= access(pmus[i], F_OK) == 0;
    int v = PAPI_is_initialized() ? (int)PAPI_VER_CURRENT : PAPI_library_init(PAPI_VER_CURRENT);
    snprintf(mi->papi_version, sizeof mi->papi_version, "%d.%d.%d.%d", PAPI_VERSION_MAJOR(PAPI_VERSION),
             PAPI_VERSION_MINOR(PAPI_VERSION), PAPI_VERSION_REVISION(PAPI_VERSION),
             PAPI_VERSION_INCREMENT(PAPI_VERSION));
    if (v != (int)PAPI_VER_CURRENT) {
        snprintf(mi->papi_error, sizeof mi->papi_error, "PAPI_library_init: %s",
                 v > 0 ? "library/header version mismatch" : PAPI_strerror(v));
        return;
    }
    mi->papi_ok = 1;
    mi->papi_components = PAPI_num_components();
    int hw = PAPI_num_cmp_hwctrs(0);
    mi->papi_hw_counters = hw > 0 ? hw : 0;
    const PAPI_component_info_t *ci = PAPI_get_component_info(0);
    if (ci) {
        snprintf(mi->papi_component0, sizeof mi->papi_component0, "%.63s", ci->name);
        mi->papi_component0_disabled = ci->disabled != 0;
        snprintf(mi->papi_component0_reason, sizeof mi->papi_component0_reason, "%.255s", ci->disabled_reason);
    }
    const PAPI_hw_info_t *hi = PAPI_get_hardware_info();
    if (hi) {
        snprintf(mi->papi_cpu_model, sizeof mi->papi_cpu_model, "%s", hi->model_string);
        mi->papi_virtualized = hi->virtualized;
    }
}

void q35_machine_info_collect(q35_machine_info *mi)
{
    memset(mi, 0, sizeof *mi);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(mi->date, sizeof mi->date, "%Y-%m-%dT%H:%M:%SZ", &tm);

    if (run_line("git rev-parse HEAD 2>/dev/null", mi->git_commit, sizeof mi->git_commit) != 1)
        snprintf(mi->git_commit, sizeof mi->git_commit, "unknown");
    char dirty[256];
    int st = strcmp(mi->git_commit, "unknown")
                 ? run_line("git status --porcelain --untracked-files=no 2>/dev/null", dirty, sizeof dirty)
                 : -1;
    mi->git_dirty = st < 0 ? -1 : st == 1;

    if (gethostname(mi->hostname, sizeof mi->hostname - 1)) snprintf(mi->hostname, sizeof mi->hostname, "unknown");
    read_cpuinfo(mi);
    mi->cores = online_cores();
    struct utsname u;
    if (!uname(&u)) snprintf(mi->kernel, sizeof mi->kernel, "%s %s %s %s", u.sysname, u.release, u.version, u.machine);
#if defined(__clang__)
    snprintf(mi->compiler, sizeof mi->compiler, "%s", __VERSION__);
#elif defined(__GNUC__)
    snprintf(mi->compiler, sizeof mi->compiler, "GCC %s", __VERSION__);
#else
    snprintf(mi->compiler, sizeof mi->compiler, "unknown");
#endif
    mi->omp_max_threads = omp_get_max_threads();

    const char *cfgs = openblas_get_config(), *core = openblas_get_corename();
    snprintf(mi->openblas_config, sizeof mi->openblas_config, "%s", cfgs ? cfgs : "");
    snprintf(mi->openblas_corename, sizeof mi->openblas_corename, "%s", core ? core : "");
    /* version from the loaded library's config string ("OpenBLAS 0.3.21 DYNAMIC_ARCH ..."),
     * else from the header we compiled against */
    if (sscanf(mi->openblas_config, "OpenBLAS %63s", mi->openblas_version) != 1 &&
        sscanf(OPENBLAS_VERSION, " OpenBLAS %63s", mi->openblas_version) != 1)
        snprintf(mi->openblas_version, sizeof mi->openblas_version, "unknown");
    mi->openblas_parallel = openblas_get_parallel();
    mi->openblas_threads = openblas_get_num_threads();
    const char *ct = getenv("OPENBLAS_CORETYPE");
    mi->openblas_coretype_set = ct != NULL;
    snprintf(mi->openblas_coretype, sizeof mi->openblas_coretype, "%s", ct ? ct : "");

    q35_thp_mode(mi->thp_enabled, sizeof mi->thp_enabled);
    papi_info(mi);
}

/* ------------------------------------------------------------------------------------- */
/* The run                                                                                 */
/* ------------------------------------------------------------------------------------- */

int q35_calibrate(const q35_calib_config *cfg, q35_calib_result *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->cfg = *cfg;
    if (cfg->nthreads < 1 || cfg->nthreads > Q35_CAL_MAX_TLIST) {
        q35_errmsg(err, errlen, "between 1 and %d thread counts, got %d", Q35_CAL_MAX_TLIST, cfg->nthreads);
        return -1;
    }
    for (int i = 0; i < cfg->nthreads; i++)
        if (cfg->threads[i] < 1 || cfg->threads[i] > Q35_MAX_THREADS) {
            q35_errmsg(err, errlen, "thread count %d outside [1, %d]", cfg->threads[i], Q35_MAX_THREADS);
            return -1;
        }
    if (cfg->mem_reps < 1 || cfg->fma_reps < 1 || cfg->cache_reps < 1 || cfg->sgemm_reps < 1 || cfg->mem_bytes < 4096) {
        q35_errmsg(err, errlen, "repetitions must be >= 1 and arrays >= 4 KiB");
        return -1;
    }
    for (int s = 0; s < Q35_SGEMM_NSHAPES; s++)
        for (int d = 0; d < 3; d++)
            if (cfg->sgemm_shapes[s][d] < 1) {
                q35_errmsg(err, errlen, "sgemm shape %d has a non-positive dimension", s);
                return -1;
            }

    q35_machine_info_collect(&r->info);
    r->bw_isa = bw_pick()->name;

    progress_t pg = {cfg->progress, isatty(2), 0, 0, q35_now()};
    pg.total = cfg->nthreads * (Q35_FMA_NISA + 1 + Q35_BW_NKIND + Q35_CACHE_NSIZES * Q35_CACHE_NKIND + Q35_SGEMM_NSHAPES);
    run_ctx rc = {err, errlen, 0};
    typedef int (*phase_fn)(run_ctx *, const q35_calib_config *, q35_calib_result *, progress_t *);
    static const phase_fn phases[4] = {run_fma, run_mem, run_cache, run_sgemm};

    q35_load_mark whole;
    q35_load_begin(&whole);
    double t0 = q35_now();
    for (int ph = 0; ph < 4; ph++) {
        q35_load_mark m;
        q35_load_begin(&m);
        if (phases[ph](&rc, cfg, r, &pg)) {
            progress_done(&pg);
            return -1;
        }
        r->phase_load[ph] = q35_load_end_other_fraction(&m);
    }
    r->seconds = q35_now() - t0;
    r->load_other_fraction = q35_load_end_other_fraction(&whole);
    r->busy = r->load_other_fraction > Q35_BUSY_THRESHOLD;
    progress_done(&pg);
    return 0;
}

/* ------------------------------------------------------------------------------------- */
/* JSON                                                                                    */
/* ------------------------------------------------------------------------------------- */

static cJSON *stats_json(const q35_stats *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "n", s->n);
    cJSON_AddNumberToObject(o, "median", s->median);
    cJSON_AddNumberToObject(o, "min", s->min);
    cJSON_AddNumberToObject(o, "max", s->max);
    cJSON_AddNumberToObject(o, "mean", s->mean);
    cJSON_AddNumberToObject(o, "stddev", s->stddev);
    cJSON_AddNumberToObject(o, "ci95_lo", s->ci95_lo);
    cJSON_AddNumberToObject(o, "ci95_hi", s->ci95_hi);
    return o;
}

int q35_stats_noisy(const q35_stats *s)
{
    return s->n > 1 && s->median > 0 && s->max - s->min > Q35_NOISY_SPREAD * s->median;
}

/* {"1": stats, "2": stats, ...}; the noisy ones are named "prefix.t" in the noisy array. */
static cJSON *per_threads(const q35_calib_config *cfg, const q35_stats *s, cJSON *noisy, const char *prefix)
{
    cJSON *o = cJSON_CreateObject();
    for (int ti = 0; ti < cfg->nthreads; ti++) {
        char key[16], name[128];
        snprintf(key, sizeof key, "%d", cfg->threads[ti]);
        cJSON_AddItemToObject(o, key, stats_json(&s[ti]));
        if (q35_stats_noisy(&s[ti])) {
            snprintf(name, sizeof name, "%s.%s", prefix, key);
            cJSON_AddItemToArray(noisy, cJSON_CreateString(name));
        }
    }
    return o;
}

static void add_str_or_null(cJSON *o, const char *key, int present, const char *v)
{
    if (present) cJSON_AddStringToObject(o, key, v);
    else cJSON_AddNullToObject(o, key);
}

struct cJSON *q35_calib_to_json(const q35_calib_result *r)
{
    const q35_machine_info *mi = &r->info;
    const q35_calib_config *cfg = &r->cfg;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "schema", Q35_MACHINE_SCHEMA);
    cJSON_AddStringToObject(root, "date", mi->date);
    cJSON_AddStringToObject(root, "git_commit", mi->git_commit);
    if (mi->git_dirty < 0) cJSON_AddNullToObject(root, "git_dirty");
    else cJSON_AddBoolToObject(root, "git_dirty", mi->git_dirty);
    cJSON_AddStringToObject(root, "hostname", mi->hostname);
    cJSON_AddStringToObject(root, "cpu_model", mi->cpu_model);
    cJSON *flags = cJSON_AddObjectToObject(root, "cpu_flags");
    for (int i = 0; i < Q35_NCPU_FLAGS; i++) cJSON_AddBoolToObject(flags, q35_cpu_flag_names[i], mi->cpu_flags[i]);
    cJSON_AddNumberToObject(root, "cores", mi->cores);
    cJSON_AddStringToObject(root, "kernel", mi->kernel);
    cJSON_AddStringToObject(root, "compiler", mi->compiler);
    cJSON_AddNumberToObject(root, "omp_max_threads", mi->omp_max_threads);

    cJSON *ob = cJSON_AddObjectToObject(root, "openblas");
    cJSON_AddStringToObject(ob, "version", mi->openblas_version);
    cJSON_AddStringToObject(ob, "corename", mi->openblas_corename);
    cJSON_AddStringToObject(ob, "config", mi->openblas_config);
    cJSON_AddNumberToObject(ob, "parallel", mi->openblas_parallel);
    cJSON_AddNumberToObject(ob, "default_threads", mi->openblas_threads);
    add_str_or_null(root, "openblas_coretype", mi->openblas_coretype_set, mi->openblas_coretype);

    cJSON_AddStringToObject(root, "thp_enabled", mi->thp_enabled);
    cJSON_AddBoolToObject(root, "huge_pages_used", r->huge_pages_used);
    cJSON_AddNumberToObject(root, "huge_page_fraction", r->huge_page_fraction);

    cJSON *pp = cJSON_AddObjectToObject(root, "papi");
    cJSON_AddBoolToObject(pp, "available", mi->papi_ok);
    cJSON_AddStringToObject(pp, "version", mi->papi_version);
    if (mi->papi_ok) {
        cJSON_AddNumberToObject(pp, "num_components", mi->papi_components);
        cJSON_AddNumberToObject(pp, "hw_counters", mi->papi_hw_counters);
        cJSON_AddBoolToObject(pp, "cpu_pmu", mi->cpu_pmu);
        cJSON_AddBoolToObject(pp, "hw_counters_usable", mi->cpu_pmu && mi->papi_hw_counters > 0 &&
                                                            !mi->papi_component0_disabled);
        cJSON_AddStringToObject(pp, "component0", mi->papi_component0);
        cJSON_AddBoolToObject(pp, "component0_disabled", mi->papi_component0_disabled);
        if (mi->papi_component0_disabled) cJSON_AddStringToObject(pp, "component0_reason", mi->papi_component0_reason);
        cJSON_AddStringToObject(pp, "cpu_model", mi->papi_cpu_model);
        cJSON_AddBoolToObject(pp, "virtualized", mi->papi_virtualized);
    } else {
        cJSON_AddStringToObject(pp, "error", mi->papi_error);
    }

    cJSON *c = cJSON_AddObjectToObject(root, "config");
    cJSON *ta = cJSON_AddArrayToObject(c, "threads");
    for (int i = 0; i < cfg->nthreads; i++) cJSON_AddItemToArray(ta, cJSON_CreateNumber(cfg->threads[i]));
    cJSON_AddBoolToObject(c, "quick", cfg->quick);
    cJSON_AddNumberToObject(c, "mem_array_mib", (double)cfg->mem_bytes / (1 << 20));
    cJSON_AddNumberToObject(c, "mem_reps", cfg->mem_reps);
    cJSON_AddNumberToObject(c, "fma_reps", cfg->fma_reps);
    cJSON_AddNumberToObject(c, "fma_seconds", cfg->fma_seconds);
    cJSON_AddNumberToObject(c, "cache_reps", cfg->cache_reps);
    cJSON_AddNumberToObject(c, "cache_seconds", cfg->cache_seconds);
    cJSON_AddNumberToObject(c, "sgemm_reps", cfg->sgemm_reps);
    cJSON_AddNumberToObject(c, "sgemm_seconds", cfg->sgemm_seconds);
    cJSON_AddStringToObject(c, "bandwidth_isa", r->bw_isa ? r->bw_isa : "?");
    cJSON_AddNumberToObject(c, "fma_accumulators", FMA_NACC);

    cJSON *noisy = cJSON_CreateArray();
    char path[96];
    cJSON *fm = cJSON_AddObjectToObject(root, "fma_peak_gflops");
    for (int isa = 0; isa < Q35_FMA_NISA; isa++) {
        snprintf(path, sizeof path, "fma_peak_gflops.%s", fma_isa_names[isa]);
        if (r->fma_ran[isa]) cJSON_AddItemToObject(fm, fma_isa_names[isa], per_threads(cfg, r->fma[isa], noisy, path));
        else cJSON_AddStringToObject(fm, fma_isa_names[isa], r->fma_na[isa][0] ? r->fma_na[isa] : "n/a");
    }
    /* added with issue 17: readers must tolerate its absence (older files) */
    if (r->bf16dot_ran)
        cJSON_AddItemToObject(root, "bf16dot_peak_gflops", per_threads(cfg, r->bf16dot, noisy, "bf16dot_peak_gflops"));
    else
        cJSON_AddStringToObject(root, "bf16dot_peak_gflops", r->bf16dot_na[0] ? r->bf16dot_na : "n/a");
    cJSON *mb = cJSON_AddObjectToObject(root, "mem_bw_gbs");
    for (int k = 0; k < Q35_BW_NKIND; k++) {
        snprintf(path, sizeof path, "mem_bw_gbs.%s", bw_kind_names[k]);
        cJSON_AddItemToObject(mb, bw_kind_names[k], per_threads(cfg, r->mem[k], noisy, path));
    }
    cJSON *cb = cJSON_AddObjectToObject(root, "cache_bw_gbs");
    for (int s = 0; s < Q35_CACHE_NSIZES; s++) {
        cJSON *so = cJSON_AddObjectToObject(cb, cache_size_names[s]);
        for (int k = 0; k < Q35_CACHE_NKIND; k++) {
            snprintf(path, sizeof path, "cache_bw_gbs.%s.%s", cache_size_names[s], cache_kind_names[k]);
            cJSON_AddItemToObject(so, cache_kind_names[k], per_threads(cfg, r->cache[s][k], noisy, path));
        }
    }
    cJSON *sg = cJSON_AddObjectToObject(root, "sgemm_gflops");
    for (int s = 0; s < Q35_SGEMM_NSHAPES; s++) {
        char key[48];
        snprintf(key, sizeof key, "%dx%dx%d", cfg->sgemm_shapes[s][0], cfg->sgemm_shapes[s][1], cfg->sgemm_shapes[s][2]);
        snprintf(path, sizeof path, "sgemm_gflops.%s", key);
        cJSON_AddItemToObject(sg, key, per_threads(cfg, r->sgemm[s], noisy, path));
    }
    /* added with the hand-off probe: readers must tolerate its absence (older files) */
    cJSON *ho = NULL;
    for (int ti = 0; ti < cfg->nthreads; ti++) {
        if (r->handoff[ti].n < 1 && !r->handoff_given_up[ti]) continue;
        char key[16];
        snprintf(key, sizeof key, "%d", cfg->threads[ti]);
        if (!ho) ho = cJSON_AddObjectToObject(root, "handoff_round_trip_ns");
        if (r->handoff_given_up[ti]) cJSON_AddStringToObject(ho, key, HANDOFF_NA_SHARED);
        else cJSON_AddItemToObject(ho, key, stats_json(&r->handoff[ti]));
    }
    if (!ho) cJSON_AddStringToObject(root, "handoff_round_trip_ns", "n/a: no thread count above 1");
    cJSON_AddItemToObject(root, "noisy_figures", noisy);

    cJSON_AddNumberToObject(root, "load_other_fraction", r->load_other_fraction);
    cJSON *pl = cJSON_AddObjectToObject(root, "load_other_fraction_by_phase");
    for (int ph = 0; ph < 4; ph++) cJSON_AddNumberToObject(pl, phase_names[ph], r->phase_load[ph]);
    cJSON_AddBoolToObject(root, "busy", r->busy);
    cJSON_AddNumberToObject(root, "runtime_seconds", r->seconds);
    return root;
}

int q35_calib_write_json(const q35_calib_result *r, const char *path, char *err, size_t errlen)
{
    cJSON *root = q35_calib_to_json(r);
    if (!root) return q35_errmsg(err, errlen, "out of memory formatting JSON"), -1;
    const int rc = q35_json_write_atomic(root, path, err, errlen);
    cJSON_Delete(root);
    return rc;
}

static int table_row(FILE *f, const char *fig, int t, const q35_stats *s)
{
    int noisy = q35_stats_noisy(s);
    fprintf(f, "  %-34s %7d %10.1f   %9.1f - %-9.1f%s\n", fig, t, s->median, s->min, s->max, noisy ? " noisy" : "");
    return noisy;
}

void q35_calib_print_table(FILE *f, const q35_calib_result *r)
{
    const q35_calib_config *cfg = &r->cfg;
    const q35_machine_info *mi = &r->info;
    char fig[64];
    int noisy = 0;
    fprintf(f, "machine: %s, %d cores, %s; OpenBLAS %s (core %s%s%s)\n", mi->cpu_model, mi->cores, mi->compiler,
            mi->openblas_version, mi->openblas_corename, mi->openblas_coretype_set ? ", OPENBLAS_CORETYPE=" : "",
            mi->openblas_coretype);
    fprintf(f, "THP: %s, huge pages %s (%.0f%% of the array mapping); bandwidth kernels: %s\n", mi->thp_enabled,
            r->huge_pages_used ? "used" : "NOT used", 100.0 * r->huge_page_fraction, r->bw_isa);
    fprintf(f, "\n  %-34s %7s %10s   %-21s\n", "figure", "threads", "median", "min - max");
    for (int isa = 0; isa < Q35_FMA_NISA; isa++) {
        snprintf(fig, sizeof fig, "fp32 FMA peak %s (GFLOP/s)", fma_isa_names[isa]);
        if (!r->fma_ran[isa]) {
            fprintf(f, "  %-34s %7s %10s   %s\n", fig, "-", "-", r->fma_na[isa]);
            continue;
        }
        for (int ti = 0; ti < cfg->nthreads; ti++) noisy += table_row(f, fig, cfg->threads[ti], &r->fma[isa][ti]);
    }
    snprintf(fig, sizeof fig, "BF16 dot peak vdpbf16ps (GFLOP/s)");
    if (!r->bf16dot_ran)
        fprintf(f, "  %-34s %7s %10s   %s\n", fig, "-", "-", r->bf16dot_na);
    else
        for (int ti = 0; ti < cfg->nthreads; ti++) noisy += table_row(f, fig, cfg->threads[ti], &r->bf16dot[ti]);
    for (int k = 0; k < Q35_BW_NKIND; k++)
        for (int ti = 0; ti < cfg->nthreads; ti++) {
            snprintf(fig, sizeof fig, "memory %s (GB/s)", bw_kind_names[k]);
            noisy += table_row(f, fig, cfg->threads[ti], &r->mem[k][ti]);
        }
    for (int ti = 0; ti < cfg->nthreads; ti++) /* not a limit: where the threads sit (not marked noisy) */
        if (r->handoff_given_up[ti])
            fprintf(f, "  %-34s %7d %s\n", "thread hand-off round trip (ns)", cfg->threads[ti], HANDOFF_NA_SHARED);
        else if (r->handoff[ti].n > 0)
            fprintf(f, "  %-34s %7d %10.1f   %9.1f - %-9.1f\n", "thread hand-off round trip (ns)", cfg->threads[ti],
                    r->handoff[ti].median, r->handoff[ti].min, r->handoff[ti].max);
    for (int s = 0; s < Q35_CACHE_NSIZES; s++)
        for (int k = 0; k < Q35_CACHE_NKIND; k++)
            for (int ti = 0; ti < cfg->nthreads; ti++) {
                snprintf(fig, sizeof fig, "cache %s/thread %s (GB/s)", cache_size_names[s], cache_kind_names[k]);
                noisy += table_row(f, fig, cfg->threads[ti], &r->cache[s][k][ti]);
            }
    for (int s = 0; s < Q35_SGEMM_NSHAPES; s++)
        for (int ti = 0; ti < cfg->nthreads; ti++) {
            snprintf(fig, sizeof fig, "sgemm %dx%dx%d (GFLOP/s)", cfg->sgemm_shapes[s][0], cfg->sgemm_shapes[s][1],
                     cfg->sgemm_shapes[s][2]);
            noisy += table_row(f, fig, cfg->threads[ti], &r->sgemm[s][ti]);
        }
    if (noisy)
        fprintf(f, "\n%d figure%s marked noisy: repetitions spread by more than %.0f%% of the median (on a VM the host\n"
                   "may be taking or sharing a vCPU, which this guest cannot see); rerun and compare before trusting them.\n",
                noisy, noisy > 1 ? "s" : "", 100 * Q35_NOISY_SPREAD);
    fprintf(f, "\nother processes used %.1f%% of the CPUs during the run%s; %.1f s\n", 100.0 * r->load_other_fraction,
            r->busy ? " -- BUSY: figures are likely low, rerun on a quiet machine" : "", r->seconds);
}

/* ------------------------------------------------------------------------------------- */
/* Reading limits                                                                          */
/* ------------------------------------------------------------------------------------- */

/* Fills dst[threads] from {"1": {"median": x}, ...}; returns how many were set. */
static int load_per_threads(const cJSON *o, double *dst)
{
    int got = 0;
    const cJSON *e;
    if (!cJSON_IsObject(o)) return 0;
    cJSON_ArrayForEach(e, o)
    {
        char *end;
        long t = strtol(e->string, &end, 10);
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "median");
        if (*end || end == e->string || t < 1 || t > Q35_MAX_THREADS || !cJSON_IsNumber(m)) continue;
        if (!isfinite(m->valuedouble) || m->valuedouble < 0) continue;
        dst[t] = m->valuedouble;
        got++;
    }
    return got;
}

int q35_limits_load(const char *path, q35_machine_limits *lim, char *err, size_t errlen)
{
    memset(lim, 0, sizeof *lim);
    cJSON *root = q35_json_read_file(path, (size_t)64 << 20, err, errlen);
    if (!root) return -1;
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(root, "schema");
    if (!cJSON_IsString(schema) || strcmp(schema->valuestring, Q35_MACHINE_SCHEMA)) {
        q35_errmsg(err, errlen, "%s: schema is not \"%s\"", path, Q35_MACHINE_SCHEMA);
        cJSON_Delete(root);
        return -1;
    }
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "fma_peak_gflops");
    for (int isa = 0; isa < Q35_FMA_NISA; isa++)
        if (load_per_threads(cJSON_GetObjectItemCaseSensitive(o, fma_isa_names[isa]), lim->fma_peak[isa]))
            lim->have |= Q35_HAVE_FMA;
    /* absent in files written before issue 17, a string where the CPU had no AVX512_BF16 */
    load_per_threads(cJSON_GetObjectItemCaseSensitive(root, "bf16dot_peak_gflops"), lim->bf16dot_peak);
    o = cJSON_GetObjectItemCaseSensitive(root, "mem_bw_gbs");
    for (int k = 0; k < Q35_BW_NKIND; k++)
        if (load_per_threads(cJSON_GetObjectItemCaseSensitive(o, bw_kind_names[k]), lim->mem_bw[k]))
            lim->have |= Q35_HAVE_MEM;
    o = cJSON_GetObjectItemCaseSensitive(root, "cache_bw_gbs");
    for (int s = 0; s < Q35_CACHE_NSIZES; s++) {
        const cJSON *so = cJSON_GetObjectItemCaseSensitive(o, cache_size_names[s]);
        for (int k = 0; k < Q35_CACHE_NKIND; k++)
            if (load_per_threads(cJSON_GetObjectItemCaseSensitive(so, cache_kind_names[k]), lim->cache_bw[s][k]))
                lim->have |= Q35_HAVE_CACHE;
    }
    o = cJSON_GetObjectItemCaseSensitive(root, "sgemm_gflops");
    const cJSON *e;
    if (cJSON_IsObject(o)) cJSON_ArrayForEach(e, o)
        {
            int M, N, K, used;
            if (lim->nshapes == Q35_LIMITS_MAX_SHAPES) break;
            if (sscanf(e->string, "%dx%dx%d%n", &M, &N, &K, &used) != 3 || e->string[used]) continue;
            int s = lim->nshapes;
            if (!load_per_threads(e, lim->sgemm[s])) continue;
            lim->sgemm_shape[s][0] = M;
            lim->sgemm_shape[s][1] = N;
            lim->sgemm_shape[s][2] = K;
            lim->nshapes++;
            lim->have |= Q35_HAVE_SGEMM;
        }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "busy");
    lim->busy = cJSON_IsTrue(v);
    v = cJSON_GetObjectItemCaseSensitive(root, "huge_pages_used");
    lim->huge_pages_used = cJSON_IsTrue(v);
    v = cJSON_GetObjectItemCaseSensitive(root, "noisy_figures");
    if (cJSON_IsArray(v)) lim->noisy_figures = cJSON_GetArraySize(v);
    v = cJSON_GetObjectItemCaseSensitive(root, "load_other_fraction");
    if (cJSON_IsNumber(v)) lim->load_other_fraction = v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(root, "date");
    if (cJSON_IsString(v)) snprintf(lim->date, sizeof lim->date, "%s", v->valuestring);
    v = cJSON_GetObjectItemCaseSensitive(root, "cpu_model");
    if (cJSON_IsString(v)) snprintf(lim->cpu_model, sizeof lim->cpu_model, "%s", v->valuestring);
    cJSON_Delete(root);
    return 0;
}

int q35_limits_note_other_host(const q35_machine_limits *lim, const char *path, FILE *out)
{
    q35_machine_info *mi = calloc(1, sizeof *mi);
    if (!mi) return 0;
    read_cpuinfo(mi);
    const int other = lim->cpu_model[0] && strcmp(mi->cpu_model, lim->cpu_model) != 0;
    if (other)
        fprintf(out, "note: %% of peak and of bandwidth are against %s, measured on \"%s\"; this host is \"%s\": "
                     "run `build/q35lab calibrate` here for its own limits\n", path, lim->cpu_model, mi->cpu_model);
    free(mi);
    return other;
}

static int tidx(int threads) { return threads >= 1 && threads <= Q35_MAX_THREADS ? threads : 0; }

double q35_limit_fma_peak(const q35_machine_limits *lim, int threads)
{
    int t = tidx(threads);
    if (!lim || !t) return 0;
    double best = 0;
    for (int isa = 0; isa < Q35_FMA_NISA; isa++)
        if (lim->fma_peak[isa][t] > best) best = lim->fma_peak[isa][t];
    return best;
}

double q35_limit_bf16dot_peak(const q35_machine_limits *lim, int threads)
{
    int t = tidx(threads);
    return lim && t ? lim->bf16dot_peak[t] : 0;
}

double q35_limit_mem_bw(const q35_machine_limits *lim, const char *kind, int threads)
{
    int t = tidx(threads);
    if (!lim || !t || !kind) return 0;
    for (int k = 0; k < Q35_BW_NKIND; k++)
        if (!strcmp(kind, bw_kind_names[k])) return lim->mem_bw[k][t];
    return 0;
}

double q35_limit_cache_bw(const q35_machine_limits *lim, const char *size, const char *kind, int threads)
{
    int t = tidx(threads);
    if (!lim || !t || !size || !kind) return 0;
    for (int s = 0; s < Q35_CACHE_NSIZES; s++)
        for (int k = 0; k < Q35_CACHE_NKIND; k++)
            if (!strcmp(size, cache_size_names[s]) && !strcmp(kind, cache_kind_names[k])) return lim->cache_bw[s][k][t];
    return 0;
}

double q35_limit_sgemm(const q35_machine_limits *lim, int M, int N, int K, int threads)
{
    int t = tidx(threads);
    if (!lim || !t) return 0;
    for (int s = 0; s < lim->nshapes; s++)
        if (lim->sgemm_shape[s][0] == M && lim->sgemm_shape[s][1] == N && lim->sgemm_shape[s][2] == K)
            return lim->sgemm[s][t];
    return 0;
}
