/* test_int8dot.c - cmocka suite for the integer-dot path (docs/quantization.md "Integer-dot path"):
 * activations quantized per 32-element block (kernels/quant/quant_act.c) and
 * q35_matmul_qact_xwt at every ISA level the host has, and the linear entry tiled-int8dot.
 *
 * Expected values come from the math, never from the code under test:
 *  - activation blocks: the properties eqs. A8q-A8e define: d = max|x| / 127 in fp32, every
 *    |x_j - d q_j| <= d / 2 (+ the fp32 rounding of x_j / d), the largest element at +-127,
 *    s = sum q, zero blocks all zero, a NaN or infinity giving d = NaN;
 *  - matmul: the test's own decoding of the block bytes (ggml's nibble order) and of fp16, the
 *    block sums in exact integer arithmetic, then sum_b dw_b d_b i_b in double: the kernel's
 *    fp32 outer sum must be within gamma_{nb+20} sum_b |dw_b d_b| sum_j |w_j q_j| of it (eqs. I8,
 *    I4; the SIMD bodies scale each lane's partial integer sum before the lanes are added, so
 *    the bound takes the sum of |w_j q_j|, and its depth covers a 16-lane tree);
 *  - the cost of quantizing x, against the unquantized product sum_k w_k x_k in double: at most
 *    sum_b (d_b / 2) sum_j |w_j| plus that rounding (eq. A8e carried through the dot);
 *  - tiled-int8dot through linear_run against ref's linear (double) within its table claim;
 *  - grouped-int8dot on a quantized MoE block against ref's MoE (double, the same quantized
 *    weights) within TOL_INT8DOT, with ref's routing (the router stays fp32).
 */
#include "harness/metrics.h"
#include "kernels/cpu_features.h"
#include "kernels/linear/linear.h"
#include "kernels/moe/moe.h"
#include "kernels/matmul/matmul.h"
#include "kernels/quant/quant.h"
#include "kernels/quant/quant_act.h"
#include "ref/linear_ref.h"
#include "ref/moe_ref.h"
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

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float rng_unif(uint64_t *s) { return (float)((double)(rng_next(s) >> 40) * 0x1p-23 - 1.0); } /* [-1, 1) */

/* fp16 by the definition: sign, 5-bit exponent (bias 15), 10-bit fraction. */
static double f16_spec(uint16_t h)
{
    const int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

/* Element j of block blk of a quantized row, as the integer the format stores (Q4_0: n - 8). */
static int w_int(q35_wtype wt, const unsigned char *row, int blk, int j)
{
    if (wt == WT_Q8_0) return (signed char)row[blk * 34 + 2 + j];
    const unsigned char byte = row[blk * 18 + 2 + (j & 15)];
    return (j < 16 ? byte & 15 : byte >> 4) - 8;
}
static double w_scale(q35_wtype wt, const unsigned char *row, int blk)
{
    const unsigned char *p = row + blk * (wt == WT_Q8_0 ? 34 : 18);
    return f16_spec((uint16_t)(p[0] | p[1] << 8));
}

/* Activations: uniform, with every 5th block scaled by 2^-20 .. 2^20 and every 7th holding one
 * outlier 100 times the rest (real activations have them), and one all-zero block. */
static void fill_x(float *x, int M, int K, uint64_t *s)
{
    for (int m = 0; m < M; m++)
        for (int b = 0; b < K / 32; b++) {
            float *xb = x + (size_t)m * K + 32 * b;
            const float scale = (b % 5 == 4) ? ldexpf(1.0f, (int)(rng_next(s) % 41) - 20) : 1.0f;
            for (int j = 0; j < 32; j++) xb[j] = scale * rng_unif(s);
            if (b % 7 == 6) xb[rng_next(s) % 32] = 100.0f * scale;
            if (m == 0 && b == 1) memset(xb, 0, 32 * sizeof *xb);
        }
}

/* The quantized rows of one ISA level, kept to compare the levels bit for bit: every level's
 * integer kernels must see the same q, d and s (kernels/quant/quant_act.c). */
typedef struct {
    int M, K, levels;
    const float *x;
    unsigned char *first; /* the first level's q35_qact bytes */
} act_levels;

static void act_quant_level(cpu_isa_level lv, void *ctx)
{
    act_levels *c = ctx;
    const int M = c->M, K = c->K;
    const float *x = c->x;
    const size_t bytes = q35_qact_bytes(M, K);
    unsigned char *mem = malloc(bytes);
    memset(mem, 0xA5, bytes); /* an unwritten byte shows as a mismatch between levels */
    q35_qact a;
    q35_qact_init(&a, M, K, mem);
    q35_qact_quantize_rows(&a, x, K, 0, 2); /* two calls, as threads split the rows */
    q35_qact_quantize_rows(&a, x, K, 2, M);
    for (int m = 0; m < M; m++)
        for (int b = 0; b < K / 32; b++) {
            const float *xb = x + (size_t)m * K + 32 * b;
            const int8_t *q = a.q + (size_t)m * K + 32 * b;
            const float d = a.d[m * (K / 32) + b];
            int bad = 0, sum = 0, at127 = 0;
            float amax = 0;
            for (int j = 0; j < 32; j++) {
                bad |= !isfinite(xb[j]);
                if (fabsf(xb[j]) > amax) amax = fabsf(xb[j]);
            }
            if (bad) {
                assert_true(isnan(d));
                continue;
            }
            assert_true(d == amax / 127.0f);
            for (int j = 0; j < 32; j++) {
                assert_true(q[j] >= -127 && q[j] <= 127);
                sum += q[j];
                at127 |= q[j] == 127 || q[j] == -127;
                /* eq. A8e: within d/2, plus the rounding of x / d (2^-24 relative of |x| <= 127 d);
                 * d itself may be rounded to a subnormal, so the bound is on amax / 127 */
                assert_true(fabs((double)xb[j] - (double)amax / 127.0 * q[j]) <= amax / 127.0 * (0.5 + 127 * 0x1p-23));
                /* the sign is x's (a scale overflowing to infinity once gave +inf -> -127) */
                assert_true(q[j] == 0 || (q[j] > 0) == (xb[j] > 0));
            }
            assert_int_equal(a.s[m * (K / 32) + b], sum);
            if (amax > 0) assert_true(at127);
            else for (int j = 0; j < 32; j++) assert_int_equal(q[j], 0);
        }
    if (!c->first) c->first = mem;
    else {
        if (memcmp(mem, c->first, bytes))
            fail_msg("activation quantization at %s differs from the first level's bits", cpu_isa_name(lv));
        free(mem);
    }
    c->levels++;
}

static void test_act_quant(void **state)
{
    (void)state;
    uint64_t s = 11;
    const int M = 5, K = 32 * 40;
    float *x = malloc(sizeof(float) * M * K);
    fill_x(x, M, K, &s);
    x[3 * K + 32 * 7 + 5] = NAN;      /* row 3 block 7 */
    x[4 * K + 32 * 9 + 0] = -INFINITY; /* row 4 block 9 */
    x[2 * K + 32 * 3 + 31] = INFINITY; /* row 2 block 3, the last lane */
    for (int j = 0; j < 32; j++) {     /* scales whose 127 / max|x| overflows fp32: subnormal and just normal */
        x[1 * K + 32 * 4 + j] = (j % 3 - 1) * 0x1p-140f * (1 + j);
        x[1 * K + 32 * 6 + j] = (j % 2 ? -1.0f : 1.0f) * 0x1p-126f * (1 + j / 4.0f);
        x[2 * K + 32 * 8 + j] = j == 17 ? -0.0f : 0.0f; /* negative zero only: d = 0 */
    }
    /* An element whose product with the block's 127 / max rounds to a tie in fp32 (10.5, to even:
     * 10) while the exact product lies above it: a path that fuses x * id + (the rounding constant)
     * into one FMA gives 11 there, so the levels' bytes differ (the compiler contracts a mul and an
     * add of vector intrinsics when FMA is enabled and -ffp-contract=fast). */
    {
        float *xb = x + 0 * K + 32 * 2;
        for (int j = 0; j < 32; j++) xb[j] = 0.25f * rng_unif(&s);
        /* a block maximum m and an element t with fl(t * fl(127 / m)) == 10.5 < t * fl(127 / m) exactly */
        float m = 100.0f, t = 0.0f;
        int found = 0;
        for (; m < 126.0f && !found; m += 1.0f) {
            const float id = 127.0f / m;
            t = 10.5f / id;
            for (int k = 0; k < 64; k++) t = nextafterf(t, 0.0f);
            for (int k = 0; k < 128; k++, t = nextafterf(t, 100.0f))
                if (t * id == 10.5f && (double)t * (double)id > 10.5) { found = 1; break; }
            if (found) break;
        }
        assert_true(found);
        xb[0] = m;
        xb[5] = t;
    }
    act_levels c = {.M = M, .K = K, .x = x};
    isa_levels_each("test_int8dot act_quant", act_quant_level, &c);
    assert_true(c.levels >= 1);
    free(c.first);
    free(x);
}

typedef struct {
    int M, N, K;
    q35_wtype wt;
    float *x;
    unsigned char *w;
    unsigned char *wrows; /* interleaved w: the row layout it was packed from (expected values' source) */
    size_t rowb;
    q35_qact a;
    void *amem;
} iprob;

static void iprob_make(iprob *p, int M, int N, int K, q35_wtype wt, uint64_t seed)
{
    uint64_t s = seed;
    p->M = M; p->N = N; p->K = K; p->wt = wt;
    p->wrows = NULL;
    const q35_wtype rw = wt;
    wt = q35_wtype_block(wt);
    p->x = malloc(sizeof(float) * M * K);
    fill_x(p->x, M, K, &s);
    p->rowb = q35_wtype_bytes(wt, (size_t)K);
    p->w = malloc(p->rowb * N);
    float *wf = malloc(sizeof(float) * K);
    for (int n = 0; n < N; n++) {
        const float sc = ldexpf(1.0f, (int)(rng_next(&s) % 9) - 4);
        for (int k = 0; k < K; k++) wf[k] = sc * rng_unif(&s);
        if (wt == WT_Q8_0)
            assert_int_equal(q35_quantize_row_q8_0(wf, (q35_block_q8_0 *)(p->w + n * p->rowb), (size_t)K), 0);
        else
            assert_int_equal(q35_quantize_row_q4_0(wf, (q35_block_q4_0 *)(p->w + n * p->rowb), (size_t)K), 0);
    }
    free(wf);
    if (q35_wtype_is_r16(rw)) {
        p->wrows = p->w;
        p->w = malloc(p->rowb * N);
        q35_r16_pack(p->wrows, wt == WT_Q8_0, (size_t)N, (size_t)K, p->w);
    }
    p->amem = malloc(q35_qact_bytes(M, K));
    q35_qact_init(&p->a, M, K, p->amem);
    q35_qact_quantize_rows(&p->a, p->x, K, 0, M);
}

static void iprob_free(iprob *p)
{
    free(p->x);
    free(p->w);
    free(p->wrows);
    free(p->amem);
}

/* C from q35_matmul_qact_xwt against eq. I8 / I4 in double, and against the unquantized x. */
static void check_matmul(const iprob *p, int acc, const char *lvl)
{
    const int M = p->M, N = p->N, K = p->K, nb = K / 32, ldc = N + 3;
    float *C = malloc(sizeof(float) * M * ldc);
    for (int i = 0; i < M * ldc; i++) C[i] = acc ? 0.25f * (float)(i % 13) : NAN;
    q35_matmul_qact_xwt(M, N, K, &p->a, 0, p->w, p->wt, K, C, ldc, acc);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < ldc; n++) {
            const float c = C[m * ldc + n], c0 = acc ? 0.25f * (float)((m * ldc + n) % 13) : 0.0f;
            if (n >= N) { /* past N: untouched */
                if (acc) assert_true(c == c0);
                else assert_true(isnan(c));
                continue;
            }
            const unsigned char *row = (p->wrows ? p->wrows : p->w) + (size_t)n * p->rowb;
            const q35_wtype bt = q35_wtype_block(p->wt);
            double e = c0, mag = fabs(c0), exact = c0, cost = 0;
            for (int b = 0; b < nb; b++) {
                const double db = p->a.d[m * nb + b], dw = w_scale(bt, row, b);
                long long i = 0;
                double wabs = 0, iabs = 0;
                for (int j = 0; j < 32; j++) {
                    const int wi = w_int(bt, row, b, j);
                    i += (long long)wi * p->a.q[(size_t)m * K + 32 * b + j];
                    iabs += fabs((double)wi * p->a.q[(size_t)m * K + 32 * b + j]);
                    exact += dw * wi * (double)p->x[(size_t)m * K + 32 * b + j];
                    wabs += fabs(dw * wi);
                }
                e += (double)(float)(dw * db) * (double)i; /* fl(dw d): dw d has 35 bits, rounded once */
                mag += fabs(dw * db) * iabs;
                cost += db / 2 * wabs;
            }
            const double g = (nb + 20) * 0x1p-24 / (1 - (nb + 20) * 0x1p-24);
            if (!(fabs(c - e) <= g * mag * 1.0000001 + 1e-30)) {
                fprintf(stderr, "[%s] %s M=%d N=%d K=%d acc=%d (%d,%d): C=%.9g expected %.9g (bound %.3g)\n", lvl,
                        q35_wtype_name(p->wt), M, N, K, acc, m, n, c, e, g * mag);
                fail();
            }
            /* the activation rounding's cost: eq. A8e through the dot, plus the fp32 sums */
            assert_true(fabs(c - exact) <= cost + g * mag * 1.0000001 + 2 * 0x1p-24 * mag + 1e-30);
        }
    free(C);
}

static void grid_level(cpu_isa_level lvl, void *ctx)
{
    (void)ctx;
    static const int Ms[] = {1, 2, 3, 4, 5, 7, 8, 9};
    static const int Ks[] = {32, 64, 96, 1024};
    /* ggml's rows: any N; interleaved W: whole groups of 16 rows, every count of rows of A the bodies
     * split differently */
    static const int Nrows[] = {1, 3, 4, 5, 17}, Nr16[] = {16, 32, 48};
    static const q35_wtype grid_wts[] = {WT_Q8_0, WT_Q4_0, WT_Q8_0_R16, WT_Q4_0_R16};
    int cases = 0;
    for (size_t wi = 0; wi < sizeof grid_wts / sizeof *grid_wts; wi++) {
        const q35_wtype wt = grid_wts[wi];
        const int r16 = q35_wtype_is_r16(wt);
        const int *Ns = r16 ? Nr16 : Nrows;
        const int nN = r16 ? (int)(sizeof Nr16 / sizeof *Nr16) : (int)(sizeof Nrows / sizeof *Nrows);
        for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++)
            for (int ni = 0; ni < nN; ni++)
                for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++) {
                    iprob p;
                    iprob_make(&p, Ms[mi], Ns[ni], Ks[ki], wt, (r16 ? 5000u : 1000u) + 37u * cases);
                    check_matmul(&p, 0, cpu_isa_name(lvl));
                    check_matmul(&p, 1, cpu_isa_name(lvl));
                    iprob_free(&p);
                    cases++;
                }
    }
    /* a W larger than the kernels' 256 KiB row blocks, many rows of A */
    static const q35_wtype big[] = {WT_Q8_0, WT_Q4_0, WT_Q8_0_R16, WT_Q4_0_R16};
    for (int i = 0; i < 4; i++) {
        iprob p;
        iprob_make(&p, 6, 304, 1024, big[i], 77);
        check_matmul(&p, 0, cpu_isa_name(lvl));
        iprob_free(&p);
    }
    printf("[ INFO     ] %s: %d shapes x 2, integer path %s\n", cpu_isa_name(lvl), cases, q35_matmul_int8dot_path());
}

static void test_matmul_levels(void **state)
{
    (void)state;
    isa_levels_each("test_int8dot", grid_level, NULL);
    if (!cpu_has_detected(CPU_FEAT_AVX512_VNNI))
        printf("[  SKIPPED ] test_int8dot: avx512-vnni vpdpbusd path (this CPU has no AVX512_VNNI)\n");
}

/* Rows m0 .. m0+M-1 of a larger quantized A, and a NaN row giving NaN in that row only. */
static void nan_level(cpu_isa_level lvl, void *ctx)
{
    (void)lvl;
    (void)ctx;
    for (int wt = WT_Q8_0; wt <= WT_Q4_0; wt++) {
        iprob p;
        iprob_make(&p, 4, 9, 128, (q35_wtype)wt, 5);
        p.x[2 * 128 + 40] = NAN;
        q35_qact_quantize_rows(&p.a, p.x, 128, 0, 4);
        float C[3 * 9];
        q35_matmul_qact_xwt(3, 9, 128, &p.a, 1, p.w, p.wt, 128, C, 9, 0);
        for (int n = 0; n < 9; n++) {
            assert_true(isfinite(C[0 * 9 + n])); /* row 1 */
            assert_true(isnan(C[1 * 9 + n]));    /* row 2 */
            assert_true(isfinite(C[2 * 9 + n])); /* row 3 */
        }
        /* row 1 alone gives the same numbers as inside the batch of three */
        float C1[9];
        q35_matmul_qact_xwt(1, 9, 128, &p.a, 1, p.w, p.wt, 128, C1, 9, 0);
        for (int n = 0; n < 9; n++) assert_true(fabsf(C1[n] - C[n]) <= 1e-5f * (1 + fabsf(C[n])));
        iprob_free(&p);
    }
}

static void test_rows_and_nan(void **state)
{
    (void)state;
    isa_levels_each("test_int8dot", nan_level, NULL);
}

/* tiled-int8dot through the linear table against ref's linear (double), within its claim. */
static void linear_level(cpu_isa_level lvl, void *ctx)
{
    (void)ctx;
    const linear_impl *impl = linear_find("tiled-int8dot");
    assert_non_null(impl);
    assert_true(impl->lossy);
    static const int Ms[] = {1, 3, 64, 70};
    for (int wt = WT_Q8_0; wt <= WT_Q4_0_R16; wt++)
        for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++) {
            const int M = Ms[mi], N = 208, K = 256;
            iprob p;
            iprob_make(&p, M, N, K, (q35_wtype)wt, 900 + mi);
            float *y = malloc(sizeof(float) * M * N), *yr = malloc(sizeof(float) * M * N);
            linear_problem lp = {M, N, K, p.x, p.w, p.wt, y, 0};
            linear_problem lr = lp;
            lr.y = yr;
            char err[256];
            linear_opts o = {2};
            assert_int_equal(linear_run(impl, &lp, &o, err, sizeof err), 0);
            assert_int_equal(linear_run(&linear_ref_impl, &lr, &o, err, sizeof err), 0);
            const double rel = err_compare(y, yr, (size_t)M * N).normwise;
            if (!(rel <= impl->claim_tol)) {
                fprintf(stderr, "[%s] tiled-int8dot %s M=%d: normwise %.3g > claim %.3g\n", cpu_isa_name(lvl),
                        q35_wtype_name(p.wt), M, rel, impl->claim_tol);
                fail();
            }
            free(y);
            free(yr);
            iprob_free(&p);
        }
}

static void test_linear_entry(void **state)
{
    (void)state;
    isa_levels_each("test_int8dot", linear_level, NULL);
}

/* grouped-int8dot on Q8_0 / Q4_0 experts against ref/moe_ref.c on the same weights.  Two roundings
 * per expert (x, then the SwiGLU intermediate h = silu(g) u, whose blocks have a larger max / rms
 * than x's: products of two roughly normal values), each up to max|block| / 254 per element
 * (eq. A8e): measured 8e-3 .. 1.2e-2 normwise (printed), so the claim is 2^-5, twice the linear
 * entry's (docs/quantization.md §4). */
#define TOL_INT8DOT 0x1p-5

/* rows x K random weights quantized to wt's blocks; an interleaved wt: packed from those rows
 * (rows a multiple of 16), so row and interleaved W of one seed hold the same values. */
static void *quantized_rows(q35_wtype wt, int rows, int K, uint64_t *s)
{
    const q35_wtype bt = q35_wtype_block(wt);
    const size_t rowb = q35_wtype_bytes(bt, (size_t)K);
    char *w = malloc(rowb * rows);
    float *f = malloc(sizeof(float) * K);
    for (int r = 0; r < rows; r++) {
        for (int k = 0; k < K; k++) f[k] = rng_unif(s) / sqrtf((float)K);
        if (bt == WT_Q8_0) assert_int_equal(q35_quantize_row_q8_0(f, (q35_block_q8_0 *)(w + r * rowb), (size_t)K), 0);
        else assert_int_equal(q35_quantize_row_q4_0(f, (q35_block_q4_0 *)(w + r * rowb), (size_t)K), 0);
    }
    free(f);
    if (!q35_wtype_is_r16(wt)) return w;
    assert_int_equal(rows % Q35_R16, 0);
    char *packed = malloc(rowb * rows);
    q35_r16_pack(w, bt == WT_Q8_0, (size_t)rows, (size_t)K, packed);
    free(w);
    return packed;
}

static void moe_level(cpu_isa_level lvl, void *ctx)
{
    (void)ctx;
    const moe_impl *impl = moe_find("grouped-int8dot"), *exact = moe_find("grouped"), *per_token = moe_find("per_token");
    assert_non_null(impl);
    assert_non_null(per_token);
    assert_true(impl->lossy);
    static const int Ts[] = {1, 7, 90}; /* 90 x 2 / 8 rows per expert: some experts above 16, none above 64 */
    enum { NT = sizeof Ts / sizeof *Ts };
    float *ref_rows[2][NT] = {{NULL}}; /* ref's output on the row layout, by block type and T */
    /* the row types first, then the interleaved ones on the same values (the seed follows the block type) */
    for (int wt = WT_Q8_0; wt <= WT_Q4_0_R16; wt++)
        for (size_t ti = 0; ti < NT; ti++) {
            const int T = Ts[ti], H = 128, E = 8, k = 2, I = 64, Is = 96;
            const int bt = (int)q35_wtype_block((q35_wtype)wt);
            uint64_t s = 4242 + 7 * ti + (uint64_t)bt;
            float *x = malloc(sizeof(float) * T * H), *router = malloc(sizeof(float) * E * H);
            float *sg = malloc(sizeof(float) * H);
            for (int i = 0; i < T * H; i++) x[i] = rng_unif(&s);
            for (int i = 0; i < E * H; i++) router[i] = rng_unif(&s);
            for (int i = 0; i < H; i++) sg[i] = rng_unif(&s) / 8;
            void *gate = quantized_rows((q35_wtype)wt, E * I, H, &s), *up = quantized_rows((q35_wtype)wt, E * I, H, &s);
            void *down = quantized_rows((q35_wtype)wt, E * H, I, &s);
            void *shg = quantized_rows((q35_wtype)wt, Is, H, &s), *shu = quantized_rows((q35_wtype)wt, Is, H, &s);
            void *shd = quantized_rows((q35_wtype)wt, H, Is, &s);
            float *o_ref = malloc(sizeof(float) * T * H), *o = malloc(sizeof(float) * T * H);
            float *o_ex = malloc(sizeof(float) * T * H);
            int32_t *id_ref = malloc(sizeof(int32_t) * T * k), *id = malloc(sizeof(int32_t) * T * k);
            moe_problem p = {.T = T, .hidden = H, .E = E, .top_k = k, .inter = I, .inter_shared = Is,
                             .norm_topk_prob = 1, .x = x, .wt = (q35_wtype)wt, .router_wt = WT_F32, .router = router,
                             .gate_proj = gate, .up_proj = up, .down_proj = down, .shared_gate = shg,
                             .shared_up = shu, .shared_down = shd, .shared_expert_gate = sg};
            char err[256];
            moe_stats st;
            moe_opts o2 = {.threads = 2};
            p.out = o_ref, p.topk_ids = id_ref;
            assert_int_equal(moe_run(&moe_ref_impl, &p, &o2, &st, err, sizeof err), 0);
            /* interleaving is a layout: ref reads the same values through q35_w_rc, in the same order */
            if (q35_wtype_is_r16((q35_wtype)wt)) assert_memory_equal(o_ref, ref_rows[bt - WT_Q8_0][ti], sizeof(float) * T * H);
            /* per_token at T = 1 cuts each expert into slices of whole blocks: rows of gate / up and
             * columns of down start inside the matrices (q35_w_offset); exact, to its fp32 claim */
            p.out = o_ex;
            for (int i = 0; i < T * H; i++) o_ex[i] = NAN;
            assert_int_equal(moe_run(per_token, &p, &o2, &st, err, sizeof err), 0);
            const double rel_pt = err_compare(o_ex, o_ref, (size_t)T * H).normwise;
            if (!(rel_pt <= per_token->tol_f32))
                fail_msg("%s per_token %s T=%d: normwise %.2e vs ref", cpu_isa_name(lvl), q35_wtype_name((q35_wtype)wt), T,
                         rel_pt);
            p.out = o, p.topk_ids = id;
            for (int i = 0; i < T * H; i++) o[i] = NAN; /* an unwritten output shows */
            assert_int_equal(moe_run(impl, &p, &o2, &st, err, sizeof err), 0);
            assert_memory_equal(id, id_ref, sizeof(int32_t) * T * k); /* the router is exact */
            p.out = o_ex;
            assert_int_equal(moe_run(exact, &p, &o2, &st, err, sizeof err), 0);
            const double rel = err_compare(o, o_ref, (size_t)T * H).normwise;
            const double rel_ex = err_compare(o_ex, o_ref, (size_t)T * H).normwise;
            printf("[ INFO     ] %s grouped-int8dot %s T=%d: normwise %.2e vs ref (grouped %.1e)\n", cpu_isa_name(lvl),
                   q35_wtype_name((q35_wtype)wt), T, rel, rel_ex);
            assert_true(rel <= TOL_INT8DOT);
            assert_true(rel_ex <= exact->tol_f32);
            assert_true(rel > rel_ex); /* the activations really were quantized */
            free(x); free(router); free(sg); free(gate); free(up); free(down); free(shg); free(shu); free(shd);
            if (q35_wtype_is_r16((q35_wtype)wt)) free(o_ref);
            else ref_rows[bt - WT_Q8_0][ti] = o_ref;
            free(o); free(o_ex); free(id_ref); free(id);
        }
    for (int b = 0; b < 2; b++)
        for (size_t ti = 0; ti < NT; ti++) free(ref_rows[b][ti]);
}

static void test_moe_entry(void **state)
{
    (void)state;
    isa_levels_each("test_int8dot", moe_level, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_act_quant),
        cmocka_unit_test(test_matmul_levels),
        cmocka_unit_test(test_rows_and_nan),
        cmocka_unit_test(test_linear_entry),
        cmocka_unit_test(test_moe_entry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
