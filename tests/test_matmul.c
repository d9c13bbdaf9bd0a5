/* test_matmul.c - cmocka suite for kernels/matmul/ (q35_matmul_xwt, bf16 conversions).
 *
 * Every result is compared with a double-precision loop over the same fp32 / bf16 inputs
 * (bf16 -> double is exact), never with another kernel's output.  Each shape runs through
 * every path: the generic C path (cpu_isa_force(ISA_GENERIC)), AUTO on this CPU, and each
 * strategy forced (DOT, PACKED, PACKA, BLAS), accumulate 0 and 1, with leading dimensions
 * larger than the rows, pointers off 32-byte alignment, NaN in the padding of A and W (a
 * kernel that reads past K would turn an output into NaN) and a sentinel in the padding of C
 * (must stay bit-identical).  With accumulate = 0, C starts as NaN (it must not be read).
 *
 * Error bounds (u = 2^-24, fp32 unit roundoff):
 *  - componentwise, deterministic: |c^ - c| <= gamma_{K+1} (sum_k |a_k w_k| + |c0|),
 *    gamma_n = n u / (1 - n u).  This holds for the K products and the one addition of C
 *    summed in any order, with or without FMA (Higham, Accuracy and Stability of Numerical
 *    Algorithms, 2nd ed., eq. (3.5) and section 3.1), so it holds for every path, OpenBLAS
 *    included; an indexing bug gives errors of order 1 and fails it.
 *  - normwise, statistical, K <= 2048 and M*N >= 16: ||C^ - C||_F <= 1e-5 ||C||_F.  With
 *    zero-mean random data, partial sums grow like sqrt(j) and rounding errors behave like
 *    independent zero-mean variables (Higham & Mary, SIAM J. Sci. Comput. 41(5), 2019), so a
 *    sequential sum has error ~ u K s / sqrt(6) against |c| ~ sqrt(K) s: relative
 *    u sqrt(K / 6) = 1.1e-6 at K = 2048, and less for the 8-lane sums of the SIMD paths.
 *    1e-5 leaves about 9x; the inputs are fixed, so the check is deterministic.
 *  - integer-valued inputs (|a|, |w| <= 4, |c0| <= 100, K <= 2048): every partial sum is an
 *    integer below 2^24, so every path must be exact in any order.
 *
 * ISA levels: every path runs at every level the host has (generic, avx2, avx512, avx512-bf16,
 * each forced in turn; the levels this CPU lacks are printed as skipped and recorded through
 * tests/support/isa_levels.h).  The BF16-dot entry (q35_matmul_xwt_bf16dot) runs at every level
 * too (vdpbf16ps at avx512-bf16, emulated below) against the double loop over A rounded to bf16
 * by the IEEE definition below (bf16_rne_spec), with the same bounds: bf16 x bf16 products are
 * exact in fp32, so only the sums round.  AVX-512 PACKED must equal AVX2 PACKED bit for bit
 * (same operations in the same order).
 *
 * `test_matmul bench [--cold] [--strategies ...] [M N K f32|bf16 ...]` is a benchmark mode,
 * not a test: it prints the figures of docs/matmul.md (run it with OPENBLAS_NUM_THREADS=1).
 */
#include "kernels/cpu_features.h"
#include "kernels/matmul/matmul.h"
#include "tests/support/isa_levels.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define U32 0x1p-24
#define C_SENTINEL 0x7FC0BEEFu /* a NaN with a payload: padding of C must keep these bits */

/* ------------------------------------------------------------------ */
/* Inputs                                                              */
/* ------------------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float rng_unif(uint64_t *s) { return (float)((double)(rng_next(s) >> 40) * 0x1p-23 - 1.0); } /* [-1, 1) exact */
static float rng_int(uint64_t *s, int lo, int hi) { return (float)(lo + (int)(rng_next(s) % (uint64_t)(hi - lo + 1))); }

static float f32_of_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint32_t bits_of_f32(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

typedef struct {
    int M, N, K, lda, ldw, ldc;
    q35_wtype wt;
    void *abase, *wbase, *cbase;
    float *A, *C0, *C; /* C0: the accumulate input; C: what the kernel writes (M + 1 rows: a guard row) */
    void *W;
    double *ref, *absref; /* sum_k a w, sum_k |a w|, M x N */
    double *ref_r, *absref_r; /* the same with A rounded to bf16 (the BF16-dot path's product) */
} prob;

static uint16_t bf16_rne_spec(float f);

/* A, W in [-1, 1) (integers in [-4, 4] if integer), C0 in [-1, 1) (integers in [-100, 100]).
 * Leading dimensions padded by pad elements, buffers offset by one element when misalign. */
static void prob_make(prob *p, int M, int N, int K, q35_wtype wt, uint64_t seed, int integer, int pad, int misalign)
{
    memset(p, 0, sizeof *p);
    p->M = M, p->N = N, p->K = K, p->wt = wt;
    p->lda = K + pad, p->ldw = K + (pad ? pad + 2 : 0), p->ldc = N + (pad ? pad + 1 : 0);
    const size_t ws = wt == WT_BF16 ? 2 : 4, off = misalign ? 1 : 0;
    p->abase = malloc(((size_t)M * p->lda + off) * 4);
    p->wbase = malloc(((size_t)N * p->ldw + off) * ws);
    p->cbase = malloc(((size_t)(M + 1) * p->ldc + off) * 4);
    p->C0 = malloc((size_t)(M + 1) * p->ldc * 4);
    p->ref = malloc((size_t)M * N * sizeof(double));
    p->absref = malloc((size_t)M * N * sizeof(double));
    p->ref_r = malloc((size_t)M * N * sizeof(double));
    p->absref_r = malloc((size_t)M * N * sizeof(double));
    assert_true(p->ref_r && p->absref_r);
    assert_non_null(p->abase);
    assert_non_null(p->wbase);
    assert_non_null(p->cbase);
    assert_non_null(p->C0);
    assert_non_null(p->ref);
    assert_non_null(p->absref);
    p->A = (float *)p->abase + off;
    p->W = (char *)p->wbase + off * ws;
    p->C = (float *)p->cbase + off;
    uint64_t s = seed;
    for (int m = 0; m < M; m++)
        for (int k = 0; k < p->lda; k++)
            p->A[(size_t)m * p->lda + k] = k < K ? (integer ? rng_int(&s, -4, 4) : rng_unif(&s)) : NAN;
    for (int n = 0; n < N; n++)
        for (int k = 0; k < p->ldw; k++) {
            const float v = k < K ? (integer ? rng_int(&s, -4, 4) : rng_unif(&s)) : NAN;
            const size_t i = (size_t)n * p->ldw + k;
            if (wt == WT_BF16)
                ((uint16_t *)p->W)[i] = q35_f32_to_bf16(v); /* integers and NaN convert exactly */
            else
                ((float *)p->W)[i] = v;
        }
    for (int m = 0; m <= M; m++)
        for (int n = 0; n < p->ldc; n++)
            p->C0[(size_t)m * p->ldc + n] = m < M && n < N ? (integer ? rng_int(&s, -100, 100) : rng_unif(&s))
                                                           : f32_of_bits(C_SENTINEL);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double r = 0, a = 0, rr = 0, ar = 0;
            const float *am = p->A + (size_t)m * p->lda;
            for (int k = 0; k < K; k++) {
                const double w = (double)q35_w_at(p->W, wt, (size_t)n * p->ldw + k);
                const double t = (double)am[k] * w;
                const double tr = (double)f32_of_bits((uint32_t)bf16_rne_spec(am[k]) << 16) * w;
                r += t;
                a += fabs(t);
                rr += tr;
                ar += fabs(tr);
            }
            p->ref[(size_t)m * N + n] = r;
            p->absref[(size_t)m * N + n] = a;
            p->ref_r[(size_t)m * N + n] = rr;
            p->absref_r[(size_t)m * N + n] = ar;
        }
}

static void prob_free(prob *p)
{
    free(p->abase);
    free(p->wbase);
    free(p->cbase);
    free(p->C0);
    free(p->ref);
    free(p->absref);
    free(p->ref_r);
    free(p->absref_r);
}

/* ------------------------------------------------------------------ */
/* Paths                                                               */
/* ------------------------------------------------------------------ */

typedef struct {
    char name[32];
    cpu_isa_level isa;
    q35_mm_strategy s;
    int bf16dot; /* q35_matmul_xwt_bf16dot instead of q35_matmul_xwt_with(s) */
} path;

/* Per level the host has: AUTO, and at AVX2 and up each strategy forced; the BF16-dot entry at
 * every level; OpenBLAS once.  Built by paths_init() (main). */
#define MAX_PATHS 32
static path paths[MAX_PATHS];
static int npaths;
#define NPATHS npaths

static void add_path(cpu_isa_level isa, q35_mm_strategy s, int bf16dot)
{
    path *p = &paths[npaths++];
    p->isa = isa, p->s = s, p->bf16dot = bf16dot;
    snprintf(p->name, sizeof p->name, "%s:%s", cpu_isa_name(isa), bf16dot ? "bf16dot" : q35_mm_strategy_name(s));
}

static void paths_init(void)
{
    npaths = 0;
    for (int l = ISA_GENERIC; l <= (int)cpu_isa_best(); l++) {
        const cpu_isa_level isa = (cpu_isa_level)l;
        add_path(isa, Q35_MM_AUTO, 0);
        if (isa >= ISA_AVX2) {
            add_path(isa, Q35_MM_DOT, 0);
            add_path(isa, Q35_MM_PACKED, 0);
            add_path(isa, Q35_MM_PACKA, 0);
        }
        add_path(isa, Q35_MM_AUTO, 1);
    }
    add_path(cpu_isa_best(), Q35_MM_BLAS, 0);
}

static void run_path(const path *pa, int M, int N, int K, const float *A, int lda, const void *W, q35_wtype wt,
                     int ldw, float *C, int ldc, int acc)
{
    cpu_isa_force(pa->isa);
    if (pa->bf16dot)
        q35_matmul_xwt_bf16dot(M, N, K, A, lda, W, wt, ldw, C, ldc, acc);
    else
        q35_matmul_xwt_with(pa->s, M, N, K, A, lda, W, wt, ldw, C, ldc, acc);
    cpu_isa_force(ISA_AUTO);
}

/* Runs one path and checks it; returns the normwise error ||C^ - C||_F / ||C||_F. */
static double run_check(const prob *p, const path *pa, int acc, int exact)
{
    const int M = p->M, N = p->N, K = p->K, ldc = p->ldc;
    const size_t csz = (size_t)(M + 1) * ldc;
    memcpy(p->C, p->C0, csz * 4);
    if (!acc)
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) p->C[(size_t)m * ldc + n] = NAN;
    run_path(pa, M, N, K, p->A, p->lda, p->W, p->wt, p->ldw, p->C, ldc, acc);
    const int rounded = pa->bf16dot && p->wt == WT_BF16; /* fp32 W: the exact path */
    const double *ref = rounded ? p->ref_r : p->ref, *absref = rounded ? p->absref_r : p->absref;
    const double gamma = (K + 1) * U32 / (1 - (K + 1) * U32);
    double e2 = 0, r2 = 0;
    for (int m = 0; m <= M; m++)
        for (int n = 0; n < ldc; n++) {
            const size_t i = (size_t)m * ldc + n;
            if (m == M || n >= N) {
                if (bits_of_f32(p->C[i]) != C_SENTINEL)
                    fail_msg("%s: C padding written at m=%d n=%d (M=%d N=%d K=%d %s acc=%d)", pa->name, m, n, M, N, K,
                             p->wt == WT_BF16 ? "bf16" : "f32", acc);
                continue;
            }
            const double c0 = acc ? p->C0[i] : 0.0;
            const double want = c0 + ref[(size_t)m * N + n], got = p->C[i];
            const double err = fabs(got - want), bound = gamma * (absref[(size_t)m * N + n] + fabs(c0));
            if (!(exact ? got == want : err <= bound))
                fail_msg("%s: C[%d][%d] = %.9g, want %.9g (err %.3g, bound %.3g) M=%d N=%d K=%d %s acc=%d lda=%d "
                         "ldw=%d ldc=%d",
                         pa->name, m, n, got, want, err, bound, M, N, K, p->wt == WT_BF16 ? "bf16" : "f32", acc,
                         p->lda, p->ldw, ldc);
            e2 += err * err;
            r2 += want * want;
        }
    return r2 > 0 ? sqrt(e2 / r2) : sqrt(e2);
}

/* ------------------------------------------------------------------ */
/* Shape grid                                                          */
/* ------------------------------------------------------------------ */

static const int grid_M[] = {1, 2, 3, 5, 8, 17, 64, 130};
static const int grid_N[] = {1, 7, 16, 33, 512};
/* 700: one whole KC block of the packed paths (512) and a tail */
static const int grid_K[] = {1, 3, 8, 31, 64, 512, 700, 2048};
#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define LONG_K 512        /* K above this (700, 2048) ... */
#define LONG_K_MAX_MN 2048 /* ... only where M * N is at most this */

static void grid(q35_wtype wt, int integer)
{
    double worst[MAX_PATHS] = {0};
    int cases = 0;
    for (int a = 0; a < NELEM(grid_M); a++)
        for (int b = 0; b < NELEM(grid_N); b++)
            for (int c = 0; c < NELEM(grid_K); c++) {
                const int M = grid_M[a], N = grid_N[b], K = grid_K[c];
                if (K > LONG_K && M * N > LONG_K_MAX_MN) continue;
                const int v = a + b + c; /* vary padding and alignment over the grid */
                prob p;
                prob_make(&p, M, N, K, wt, 1000003u * (uint64_t)(v + 1) + (uint64_t)K, integer, v % 3 == 2 ? 0 : 1 + v % 5,
                          v % 2);
                for (int i = 0; i < NPATHS; i++)
                    for (int acc = 0; acc < 2; acc++) {
                        const double e = run_check(&p, &paths[i], acc, integer);
                        if (M * N < 16 || integer) continue;
                        if (!(e <= 1e-5))
                            fail_msg("%s: normwise error %.3g > 1e-5 (M=%d N=%d K=%d %s acc=%d)", paths[i].name, e, M,
                                     N, K, wt == WT_BF16 ? "bf16" : "f32", acc);
                        if (e > worst[i]) worst[i] = e;
                    }
                prob_free(&p);
                cases++;
            }
    if (integer) {
        print_message("%d shapes x %d paths x acc 0/1 (%s, integer-valued): all exact\n", cases, NPATHS,
                      wt == WT_BF16 ? "bf16" : "f32");
        return;
    }
    print_message("%d shapes x %d paths x acc 0/1 (%s); worst normwise error (M*N >= 16):", cases, NPATHS,
                  wt == WT_BF16 ? "bf16" : "f32");
    for (int i = 0; i < NPATHS; i++) print_message(" %s %.2g", paths[i].name, worst[i]);
    print_message("\n");
}

static void test_grid_f32(void **state)
{
    (void)state;
    grid(WT_F32, 0);
}
static void test_grid_bf16(void **state)
{
    (void)state;
    grid(WT_BF16, 0);
}
static void test_exact_integers_f32(void **state)
{
    (void)state;
    grid(WT_F32, 1);
}
static void test_exact_integers_bf16(void **state)
{
    (void)state;
    grid(WT_BF16, 1);
}

/* K beyond the DOT kernel's K block (2048) and the packed kernels' KC, with a remainder:
 * several passes over K, each after the first accumulating. */
static void test_long_k(void **state)
{
    (void)state;
    const int Ms[] = {1, 2, 7, 20}, Ns[] = {5, 40};
    for (int w = 0; w < 2; w++)
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 2; b++) {
                prob p;
                prob_make(&p, Ms[a], Ns[b], 4100 + 13 * a, w ? WT_BF16 : WT_F32, 77 + a * 2 + b, 0, 3, a % 2);
                for (int i = 0; i < NPATHS; i++)
                    for (int acc = 0; acc < 2; acc++) run_check(&p, &paths[i], acc, 0);
                prob_free(&p);
            }
}

/* AVX-512 PACKED does the AVX2 PACKED's operations in the same order (sequential FMAs over
 * the same KC blocks, C added after each): equal bit for bit, fp32 and bf16, with padding. */
static void test_packed_avx512_equals_avx2(void **state)
{
    (void)state;
    if (cpu_isa_best() < ISA_AVX512) {
        printf("[  SKIPPED ] AVX-512 PACKED vs AVX2 PACKED: this CPU has only %s\n", cpu_isa_name(cpu_isa_best()));
        return;
    }
    static const int shapes[][3] = {{1, 1, 1}, {13, 33, 700}, {64, 100, 512}, {130, 512, 1100}, {7, 40, 31}};
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < NELEM(shapes); i++)
            for (int acc = 0; acc < 2; acc++) {
                prob p;
                prob_make(&p, shapes[i][0], shapes[i][1], shapes[i][2], w ? WT_BF16 : WT_F32, 99 + i, 0, i % 3, i % 2);
                const size_t n = (size_t)(p.M + 1) * p.ldc;
                float *c2 = malloc(n * 4), *c5 = malloc(n * 4);
                assert_true(c2 && c5);
                memcpy(c2, p.C0, n * 4);
                memcpy(c5, p.C0, n * 4);
                const path a2 = {"avx2:packed", ISA_AVX2, Q35_MM_PACKED, 0}, a5 = {"avx512:packed", ISA_AVX512, Q35_MM_PACKED, 0};
                run_path(&a2, p.M, p.N, p.K, p.A, p.lda, p.W, p.wt, p.ldw, c2, p.ldc, acc);
                run_path(&a5, p.M, p.N, p.K, p.A, p.lda, p.W, p.wt, p.ldw, c5, p.ldc, acc);
                if (memcmp(c2, c5, n * 4))
                    fail_msg("AVX-512 PACKED differs from AVX2 PACKED: M=%d N=%d K=%d %s acc=%d", p.M, p.N, p.K,
                             w ? "bf16" : "f32", acc);
                free(c2);
                free(c5);
                prob_free(&p);
            }
}

/* Decode and prefill must agree bit for bit on the rows AUTO gives to DOT: every row of a DOT
 * call, and the M % 16 rows PACKA leaves to DOT, equal the same row computed alone (M = 1, DOT).
 * At every level (the AVX2 PACKA hands its leftover rows to the level's own DOT). */
static void test_rows_match_m1(void **state)
{
    (void)state;
    static const struct { int M; q35_wtype wt; int from; } cases[] = {
        {5, WT_BF16, 0}, {5, WT_F32, 0}, {17, WT_F32, 16}, {35, WT_F32, 32}, {39, WT_BF16, 0}};
    for (int l = ISA_AVX2; l <= (int)cpu_isa_best(); l++)
        for (int c = 0; c < NELEM(cases); c++) {
            prob p;
            prob_make(&p, cases[c].M, 200, 300, cases[c].wt, 7 + c, 0, 1, 0);
            const path a = {"auto", (cpu_isa_level)l, Q35_MM_AUTO, 0};
            run_path(&a, p.M, p.N, p.K, p.A, p.lda, p.W, p.wt, p.ldw, p.C, p.ldc, 0);
            float row[200];
            for (int m = cases[c].from; m < p.M; m++) {
                run_path(&a, 1, p.N, p.K, p.A + (size_t)m * p.lda, p.lda, p.W, p.wt, p.ldw, row, p.N, 0);
                if (memcmp(row, p.C + (size_t)m * p.ldc, sizeof row))
                    fail_msg("level %s M=%d %s: row %d differs from the same row alone", cpu_isa_name((cpu_isa_level)l),
                             p.M, p.wt == WT_BF16 ? "bf16" : "f32", m);
            }
            prob_free(&p);
        }
}

/* M <= 0 or N <= 0: nothing is read or written (NULL pointers are fine); K = 0. */
static void test_empty(void **state)
{
    (void)state;
    float c[4] = {1, 2, 3, 4};
    const float a[4] = {1, 1, 1, 1}, w[4] = {1, 1, 1, 1};
    for (int i = 0; i < NPATHS; i++) {
        run_path(&paths[i], 0, 2, 2, a, 2, w, WT_F32, 2, c, 2, 0);
        run_path(&paths[i], 2, 0, 2, a, 2, w, WT_F32, 2, c, 2, 0);
        run_path(&paths[i], 0, 0, 0, NULL, 1, NULL, WT_BF16, 1, NULL, 1, 1);
        assert_true(c[0] == 1 && c[1] == 2 && c[2] == 3 && c[3] == 4);
    }
    q35_matmul_xwt(0, 5, 5, NULL, 5, NULL, WT_F32, 5, NULL, 5, 0);
    /* K = 0: an empty sum; C = 0, or C unchanged when accumulating */
    for (int i = 0; i < NPATHS; i++) {
        float d[4] = {1, 2, 3, 4};
        run_path(&paths[i], 2, 2, 0, a, 2, w, WT_F32, 2, d, 2, 1);
        assert_true(d[0] == 1 && d[1] == 2 && d[2] == 3 && d[3] == 4);
        run_path(&paths[i], 2, 1, 0, a, 2, w, WT_BF16, 2, d, 2, 0);
        assert_true(d[0] == 0 && d[1] == 2 && d[2] == 0 && d[3] == 4);
    }
}

/* IEEE propagation: a NaN in row 1 of A makes row 1 of C NaN and nothing else; an infinite
 * weight makes its column infinite (the other row's entries there are positive). */
static void test_nonfinite(void **state)
{
    (void)state;
    enum { M = 3, N = 20, K = 40 };
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < NPATHS; i++) {
            float A[M * K], Wf[N * K], C[M * N];
            uint16_t Wh[N * K];
            for (int k = 0; k < M * K; k++) A[k] = 0.5f;
            for (int k = 0; k < N * K; k++) Wf[k] = 0.25f;
            A[1 * K + 17] = NAN;
            Wf[13 * K + 39] = INFINITY;
            q35_f32_to_bf16_array(Wf, Wh, N * K);
            run_path(&paths[i], M, N, K, A, K, w ? (const void *)Wh : Wf, w ? WT_BF16 : WT_F32, K, C, N, 0);
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) {
                    const float c = C[m * N + n];
                    if (m == 1)
                        assert_true(isnan(c));
                    else if (n == 13)
                        assert_true(isinf(c) && c > 0);
                    else
                        assert_true(c == 0.5f * 0.25f * K);
                }
        }
}

static void test_strategy_choice(void **state)
{
    (void)state;
    cpu_isa_force(ISA_GENERIC);
    assert_int_equal(q35_matmul_strategy(1, 512, 2048, WT_BF16), Q35_MM_GENERIC);
    assert_int_equal(q35_matmul_strategy(512, 512, 2048, WT_F32), Q35_MM_GENERIC);
    cpu_isa_force(ISA_AUTO);
    for (int l = ISA_AVX2; l <= (int)cpu_isa_best(); l++) {
        cpu_isa_force((cpu_isa_level)l);
        assert_int_equal(q35_matmul_strategy(1, 512, 2048, WT_BF16), Q35_MM_DOT);
        assert_int_equal(q35_matmul_strategy(512, 1, 2048, WT_BF16), Q35_MM_DOT); /* few rows of W */
        /* middle M, fp32 W: AVX2 PACKA at every level (docs/matmul.md) */
        assert_int_equal(q35_matmul_strategy(32, 512, 2048, WT_F32), Q35_MM_PACKA);
        assert_int_equal(q35_matmul_strategy(48, 512, 2048, WT_BF16), l >= ISA_AVX512 ? Q35_MM_DOT : Q35_MM_PACKED);
        assert_int_equal(q35_matmul_strategy(512, 512, 2048, WT_F32), Q35_MM_PACKED);
        assert_int_equal(q35_matmul_strategy(512, 512, 2048, WT_BF16), Q35_MM_PACKED);
    }
    cpu_isa_force(ISA_AUTO);
    for (int s = Q35_MM_AUTO; s <= Q35_MM_BLAS; s++) assert_true(strcmp(q35_mm_strategy_name(s), "?") != 0);
}

/* ------------------------------------------------------------------ */
/* bf16 conversions                                                    */
/* ------------------------------------------------------------------ */

/* The IEEE definition, in double: the two bf16 neighbours of |f| (truncation and the next
 * magnitude up; beyond the largest finite bf16 the next is 2^128, which is infinity), the
 * nearer wins, a tie goes to the even bit pattern.  f must not be NaN. */
static uint16_t bf16_rne_spec(float f)
{
    const uint32_t u = bits_of_f32(f), sign = u & 0x80000000u, mag = u & 0x7FFFFFFFu;
    if (mag == 0x7F800000u) return (uint16_t)((sign | mag) >> 16);
    const uint16_t lo = (uint16_t)(mag >> 16), hi = (uint16_t)(lo + 1);
    const double x = fabs((double)f), vlo = (double)f32_of_bits((uint32_t)lo << 16);
    const double vhi = hi == 0x7F80 ? 0x1p128 : (double)f32_of_bits((uint32_t)hi << 16);
    const double dlo = x - vlo, dhi = vhi - x; /* exact: all three are fp32 values or 2^128 */
    const uint16_t r = dlo < dhi ? lo : dhi < dlo ? hi : (lo & 1) ? hi : lo;
    return (uint16_t)(r | (sign >> 16));
}

static void check_one(uint32_t u)
{
    const float f = f32_of_bits(u);
    const uint16_t got = q35_f32_to_bf16(f);
    if (isnan(f)) {
        /* NaN stays NaN, sign and top payload kept, quiet bit set */
        if (got != (uint16_t)((u >> 16) | 0x0040)) fail_msg("NaN %08x -> %04x", u, got);
        return;
    }
    const uint16_t want = bf16_rne_spec(f);
    if (got != want) fail_msg("f32 %08x (%.9g) -> bf16 %04x, want %04x", u, (double)f, got, want);
}

/* Every upper half with lower halves around the tie (0x7FFF, 0x8000, 0x8001), 0 and 0xFFFF,
 * every upper half with the tie for both parities, plus random patterns: all exponents,
 * subnormals, the overflow edge (0x7F7F8000 is a tie with an odd kept half: infinity),
 * infinities and NaNs (signalling ones included). */
static void test_bf16_rne(void **state)
{
    (void)state;
    static const uint16_t lows[] = {0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF};
    for (uint32_t h = 0; h < 0x10000; h++)
        for (int j = 0; j < NELEM(lows); j++) check_one(h << 16 | lows[j]);
    uint64_t s = 42;
    for (int i = 0; i < 1 << 20; i++) check_one((uint32_t)rng_next(&s));
    assert_int_equal(q35_f32_to_bf16(f32_of_bits(0x7F7F8000u)), 0x7F80);
    assert_int_equal(q35_f32_to_bf16(f32_of_bits(0x7F7F7FFFu)), 0x7F7F);
    assert_int_equal(q35_f32_to_bf16(f32_of_bits(0x3F808000u)), 0x3F80); /* 1 + 2^-8: tie, even stays */
    assert_int_equal(q35_f32_to_bf16(f32_of_bits(0x3F818000u)), 0x3F82); /* tie, odd rounds up */
    assert_int_equal(q35_f32_to_bf16(f32_of_bits(0x00008000u)), 0x0000); /* subnormal tie to even 0 */
    assert_int_equal(q35_f32_to_bf16(f32_of_bits(0x80018000u)), 0x8002); /* negative subnormal tie, odd up */
    assert_int_equal(q35_f32_to_bf16(-INFINITY), 0xFF80);
    assert_int_equal(q35_f32_to_bf16(f32_of_bits(0x7F800001u)), 0x7FC0); /* signalling NaN: payload only low */
    assert_true(isnan(q35_bf16_to_f32(q35_f32_to_bf16(NAN))));
    /* the array form agrees with the scalar one */
    enum { N = 4099 };
    static float x[N];
    static uint16_t y[N];
    for (int i = 0; i < N; i++) x[i] = f32_of_bits((uint32_t)rng_next(&s) | (i % 7 == 0 ? 0x8000u : 0u));
    q35_f32_to_bf16_array(x, y, N);
    for (int i = 0; i < N; i++) assert_int_equal(y[i], q35_f32_to_bf16(x[i]));
}

/* bf16 -> f32 -> bf16 is the identity on every non-NaN pattern (bf16 -> f32 is exact, and an
 * exact value rounds to itself); NaNs stay NaN (quieted).  The array conversion, generic and
 * SIMD, matches the scalar shift bit for bit (odd length and offset: every tail). */
static void test_bf16_round_trip(void **state)
{
    (void)state;
    static uint16_t h[0x10001];
    static float f[0x10001];
    for (uint32_t i = 0; i < 0x10000; i++) {
        const uint16_t b = (uint16_t)i;
        const float x = q35_bf16_to_f32(b);
        assert_int_equal(bits_of_f32(x), (uint32_t)b << 16);
        const uint16_t back = q35_f32_to_bf16(x);
        if (isnan(x))
            assert_int_equal(back, b | 0x0040);
        else
            assert_int_equal(back, b);
        h[i + 1] = b;
    }
    for (int isa = ISA_GENERIC; isa <= (int)cpu_isa_best(); isa++) {
        cpu_isa_force((cpu_isa_level)isa);
        for (size_t n = 0; n < 40; n++) {
            memset(f, 0, sizeof f);
            q35_bf16_to_f32_array(h + 1 + n, f + 1, n);
            for (size_t i = 0; i < n; i++) assert_int_equal(bits_of_f32(f[1 + i]), (uint32_t)h[1 + n + i] << 16);
            assert_true(f[0] == 0 && f[n + 1] == 0);
        }
        q35_bf16_to_f32_array(h + 1, f, 0x10000);
        for (uint32_t i = 0; i < 0x10000; i++) assert_int_equal(bits_of_f32(f[i]), i << 16);
    }
    cpu_isa_force(ISA_AUTO);
}

/* ------------------------------------------------------------------ */
/* Benchmark mode (not a test): test_matmul bench [...]                 */
/* ------------------------------------------------------------------ */

/* Median time of q35_matmul_xwt_with over 21 samples of >= 10 ms each, the strategies timed
 * interleaved sample by sample (a busy machine slows them alike).  cold: the weights rotate
 * over 256 MiB of distinct matrices (on transparent huge pages), so every call reads W from
 * memory, as decode does; otherwise the same W every call (in cache if it fits). */
#define BENCH_SAMPLES 21
static double bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void bench_one(const path *S, int ns, int cold, int M, int N, int K, q35_wtype wt)
{
    const size_t mat = q35_wtype_bytes(wt, (size_t)N * K);
    const int nm = cold && mat < ((size_t)256 << 20) ? (int)(((size_t)256 << 20) / mat) : 1;
    const size_t total = (size_t)nm * mat;
    void *W = NULL;
    if (posix_memalign(&W, (size_t)2 << 20, total)) return;
    madvise(W, total, MADV_HUGEPAGE);
    uint64_t seed = 1;
    if (q35_wtype_is_quant(wt)) { /* random rows quantized (docs/quantization.md), K % 32 == 0 */
        float *row = malloc((size_t)K * 4);
        for (size_t r = 0; row && r < (size_t)nm * N; r++) {
            for (int k = 0; k < K; k++) row[k] = rng_unif(&seed);
            void *dst = (char *)W + q35_wtype_bytes(wt, r * K);
            if (wt == WT_Q8_0) q35_quantize_row_q8_0(row, dst, (size_t)K); else q35_quantize_row_q4_0(row, dst, (size_t)K);
        }
        free(row);
    } else
        for (size_t i = 0; i < total / (wt == WT_BF16 ? 2 : 4); i++) {
            const float v = rng_unif(&seed);
            if (wt == WT_BF16)
                ((uint16_t *)W)[i] = q35_f32_to_bf16(v);
            else
                ((float *)W)[i] = v;
        }
    float *A = malloc((size_t)M * K * 4), *C = malloc((size_t)M * N * 4);
    if (!A || !C) goto out;
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = rng_unif(&seed);
    int per[8];
    double t[8][BENCH_SAMPLES];
    long j = 0;
    for (int s = 0; s < ns; s++) { /* calls per sample: >= 10 ms */
        int it = 0;
        const double t0 = bench_now();
        do {
            run_path(&S[s], M, N, K, A, K, (const char *)W + (size_t)(j++ % nm) * mat, wt, K, C, N, 0);
            it++;
        } while (bench_now() - t0 < 0.01);
        per[s] = it;
    }
    for (int r = 0; r < BENCH_SAMPLES; r++)
        for (int s = 0; s < ns; s++) {
            const double t0 = bench_now();
            for (int i = 0; i < per[s]; i++)
                run_path(&S[s], M, N, K, A, K, (const char *)W + (size_t)(j++ % nm) * mat, wt, K, C, N, 0);
            t[s][r] = (bench_now() - t0) / per[s];
        }
    for (int s = 0; s < ns; s++) {
        qsort(t[s], BENCH_SAMPLES, sizeof(double), cmp_double);
        const double med = t[s][BENCH_SAMPLES / 2], best = t[s][0], flop = 2.0 * M * N * K;
        char name[64];
        if (S[s].s == Q35_MM_AUTO && !S[s].bf16dot) {
            cpu_isa_force(S[s].isa);
            snprintf(name, sizeof name, "%s=%s", S[s].name, q35_mm_strategy_name(q35_matmul_strategy(M, N, K, wt)));
            cpu_isa_force(ISA_AUTO);
        } else
            snprintf(name, sizeof name, "%s", S[s].name);
        printf("%-11s %-4s %-4s M=%4d N=%5d K=%5d %10.1f us %6.1f GFLOP/s (best %5.1f)  W %6.2f GB/s (best %6.2f)\n", name,
               q35_wtype_name(wt),
               cold ? "cold" : "warm", M, N, K, med * 1e6, flop / med * 1e-9, flop / best * 1e-9, mat / med * 1e-9,
               mat / best * 1e-9);
        fflush(stdout);
    }
out:
    free(W);
    free(A);
    free(C);
}

/* bench [--cold] [--strategies auto,dot,packa,packed,blas,generic] [M N K f32|bf16|q8_0|q4_0 ...]
 * Without shapes: the report set of docs/matmul.md.  "auto" prints what AUTO picked. */
static int bench_main(int argc, char **argv)
{
    path S[8];
    int ns = 0, cold = 0, a = 2;
    const char *strategies = "auto,dot,packa,packed,blas";
    for (; a < argc && argv[a][0] == '-'; a++) {
        if (!strcmp(argv[a], "--cold"))
            cold = 1;
        else if (!strcmp(argv[a], "--strategies") && a + 1 < argc)
            strategies = argv[++a];
        else {
            fprintf(stderr, "usage: %s bench [--cold] [--strategies [ISA:]S,...] [M N K f32|bf16 ...]\n"
                            "  S: auto dot packed packa blas bf16dot; ISA: generic avx2 avx512 avx512-bf16\n", argv[0]);
            return 2;
        }
    }
    char buf[256];
    snprintf(buf, sizeof buf, "%s", strategies);
    for (char *sv = NULL, *tok = strtok_r(buf, ",", &sv); tok && ns < 8; tok = strtok_r(NULL, ",", &sv)) {
        /* [isa:]strategy or [isa:]bf16dot; without isa: the level in use (Q35_ISA lowers it) */
        int found = 0;
        cpu_isa_level isa = cpu_isa();
        char *colon = strchr(tok, ':');
        if (colon) {
            *colon = 0;
            isa = cpu_isa_parse(tok);
            if (isa == ISA_AUTO || isa > cpu_isa_best()) {
                fprintf(stderr, "ISA level %s unknown or not on this CPU (best %s)\n", tok, cpu_isa_name(cpu_isa_best()));
                return 2;
            }
            tok = colon + 1;
        }
        if (!strcmp(tok, "bf16dot")) {
            npaths = 0;
            add_path(isa, Q35_MM_AUTO, 1);
            S[ns++] = paths[0], found = 1;
        }
        for (int s = Q35_MM_AUTO; s <= Q35_MM_BLAS && !found; s++)
            if (!strcmp(tok, q35_mm_strategy_name((q35_mm_strategy)s))) {
                npaths = 0;
                add_path(isa, (q35_mm_strategy)s, 0);
                S[ns++] = paths[0], found = 1;
            }
        if (!found) {
            fprintf(stderr, "unknown strategy %s\n", tok);
            return 2;
        }
    }
    printf("isa %s, %s weights; median of %d samples\n", cpu_isa_name(cpu_isa()), cold ? "cold (256 MiB rotation)" : "warm",
           BENCH_SAMPLES);
    if (a < argc) {
        for (; a + 3 < argc; a += 4)
            bench_one(S, ns, cold, atoi(argv[a]), atoi(argv[a + 1]), atoi(argv[a + 2]),
                      !strcmp(argv[a + 3], "bf16") ? WT_BF16 : !strcmp(argv[a + 3], "q8_0") ? WT_Q8_0
                                                         : !strcmp(argv[a + 3], "q4_0") ? WT_Q4_0 : WT_F32);
        return 0;
    }
    static const int shapes[][3] = {{1, 1024, 2048}, {16, 1024, 2048}, {64, 1024, 2048}, {512, 1024, 2048}, {512, 2048, 512}};
    for (int i = 0; i < 5; i++)
        for (int w = 0; w < 2; w++) bench_one(S, ns, cold, shapes[i][0], shapes[i][1], shapes[i][2], w ? WT_F32 : WT_BF16);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "bench")) return bench_main(argc, argv);
    paths_init();
    printf("paths:");
    for (int i = 0; i < npaths; i++) printf(" %s", paths[i].name);
    printf("\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_packed_avx512_equals_avx2),
        cmocka_unit_test(test_rows_match_m1),
        cmocka_unit_test(test_bf16_round_trip),
        cmocka_unit_test(test_bf16_rne),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_strategy_choice),
        cmocka_unit_test(test_nonfinite),
        cmocka_unit_test(test_exact_integers_f32),
        cmocka_unit_test(test_exact_integers_bf16),
        cmocka_unit_test(test_grid_f32),
        cmocka_unit_test(test_grid_bf16),
        cmocka_unit_test(test_long_k),
    };
    const int rc = cmocka_run_group_tests_name("matmul", tests, NULL, NULL);
    if (rc == 0)
        for (int l = ISA_GENERIC; l <= ISA_TOP; l++) isa_levels_note("test_matmul", (cpu_isa_level)l, l <= (int)cpu_isa_best());
    return rc;
}
