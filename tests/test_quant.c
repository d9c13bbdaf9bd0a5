/* test_quant.c - cmocka suite for the quantized weight types (kernels/quant/, the quantized
 * paths of kernels/matmul/; docs/quantization.md).
 *
 * Expected values come from the math, never from the code under test:
 *  - fp16: every one of the 65536 patterns decoded by the definition (ldexp of the fields);
 *    fp32 -> fp16 against the nearest fp16 found by bisection over the decoded magnitudes,
 *    ties to the even pattern, at every midpoint between neighbours and one fp32 ulp either
 *    side, plus random patterns.
 *  - quantization: the stored scale is fp16_rne(max|x|/127) (Q8_0) / fp16_rne(m/-8) (Q4_0) as
 *    the docs define it, and every element meets the bound Q8e / Q4e; the blocks' layout
 *    (ggml's nibble order) is checked by blocks built by hand.
 *  - matmul: every path (generic, AUTO, DOT, PACKED, PACKA, BLAS) at every ISA level the host
 *    has, against a double loop over the weights decoded by the test's own decoder from the
 *    block bytes, with the componentwise bound gamma_{K+1}(sum|a w| + |c0|) of docs/matmul.md
 *    (the dequantized weights are exact fp32 values, eq. Q8 / Q4), and exactness on
 *    integer-valued inputs.  K not a multiple of 32 (the last block read only up to K) included.
 */
#include "kernels/cpu_features.h"
#include "kernels/matmul/matmul.h"
#include "kernels/quant/quant.h"
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

#define U32 0x1p-24
#define C_SENTINEL 0x7FC0BEEFu

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float rng_unif(uint64_t *s) { return (float)((double)(rng_next(s) >> 40) * 0x1p-23 - 1.0); } /* [-1, 1) */

static float f32_of_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* fp16 by the definition: sign, 5-bit exponent (bias 15), 10-bit fraction. */
static double f16_spec(uint16_t h)
{
    const int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp(m, -24);
    else v = ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

/* ------------------------------------------------------------------ */
/* fp16                                                                */
/* ------------------------------------------------------------------ */

static void test_f16_decode_all(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        const double want = f16_spec((uint16_t)h);
        const float got = q35_f16_to_f32((uint16_t)h);
        if (isnan(want)) { assert_true(isnan(got)); continue; }
        if ((double)got != want || !signbit(got) != !signbit(want)) fail_msg("f16 %04x: got %a want %a", h, got, want);
    }
}

/* The nearest fp16 to x (finite), ties to the even pattern, by bisection over the magnitudes. */
static uint16_t f16_rne_spec(float x)
{
    const uint16_t sign = signbit(x) ? 0x8000 : 0;
    const double a = fabs((double)x);
    if (a >= 65520.0) return sign | 0x7C00; /* half way between 65504 and 2^16 and above */
    unsigned lo = 0, hi = 0x7BFF; /* largest h with value <= a */
    while (lo < hi) {
        const unsigned mid = (lo + hi + 1) / 2;
        if (f16_spec((uint16_t)mid) <= a) lo = mid; else hi = mid - 1;
    }
    const double v0 = f16_spec((uint16_t)lo), v1 = lo == 0x7BFF ? 65536.0 : f16_spec((uint16_t)(lo + 1));
    unsigned r;
    if (a - v0 < v1 - a) r = lo;
    else if (a - v0 > v1 - a) r = lo + 1;
    else r = (lo & 1) ? lo + 1 : lo;
    return (uint16_t)(sign | r);
}

static void check_f16(float x)
{
    const uint16_t want = f16_rne_spec(x), got = q35_f32_to_f16(x);
    if (want != got) fail_msg("f32 %a (%08x): f16 %04x, want %04x", x, 0, got, want);
}

static void test_f16_encode(void **state)
{
    (void)state;
    for (unsigned h = 0; h < 0x7BFF; h++) { /* every value, every midpoint, one ulp around each */
        const float v = (float)f16_spec((uint16_t)h), mid = (float)((f16_spec((uint16_t)h) + f16_spec((uint16_t)(h + 1))) / 2);
        const float pts[] = {v, mid, nextafterf(mid, 0.0f), nextafterf(mid, INFINITY), nextafterf(v, INFINITY)};
        for (int i = 0; i < 5; i++) { check_f16(pts[i]); check_f16(-pts[i]); }
    }
    const float edge[] = {65504.0f, 65519.99f, 65520.0f, 70000.0f, 1e30f, 0x1p-25f, nextafterf(0x1p-25f, 1.0f), 0x1p-26f, 0.0f};
    for (size_t i = 0; i < sizeof edge / sizeof *edge; i++) { check_f16(edge[i]); check_f16(-edge[i]); }
    uint64_t s = 7;
    for (int i = 0; i < (1 << 20); i++) {
        const float x = f32_of_bits((uint32_t)rng_next(&s));
        if (isfinite(x)) check_f16(x);
    }
    assert_int_equal(q35_f32_to_f16(INFINITY), 0x7C00);
    assert_true((q35_f32_to_f16(NAN) & 0x7C00) == 0x7C00 && (q35_f32_to_f16(NAN) & 0x3FF));
}

/* ------------------------------------------------------------------ */
/* Quantize / dequantize                                               */
/* ------------------------------------------------------------------ */

/* Decode block b (< 32 element j) of a row by the layout of docs/quantization.md §1. */
static double deq_spec(q35_wtype wt, const void *row, size_t i)
{
    if (wt == WT_Q8_0) {
        const q35_block_q8_0 *b = (const q35_block_q8_0 *)row + i / 32;
        return f16_spec(b->d) * b->q[i % 32];
    }
    const q35_block_q4_0 *b = (const q35_block_q4_0 *)row + i / 32;
    const int j = (int)(i % 32), n = j < 16 ? b->qs[j] & 15 : b->qs[j - 16] >> 4;
    return f16_spec(b->d) * (n - 8);
}

static void check_block(q35_wtype wt, const float *x, const void *blk)
{
    float amax = 0.0f, m = 0.0f;
    for (int j = 0; j < 32; j++)
        if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); m = x[j]; }
    const uint16_t dh = *(const uint16_t *)blk;
    assert_int_equal(dh, f16_rne_spec(wt == WT_Q8_0 ? amax / 127.0f : m / -8.0f));
    const double d = f16_spec(dh);
    float deq[32];
    if (wt == WT_Q8_0) q35_dequantize_row_q8_0(blk, deq, 32); else q35_dequantize_row_q4_0(blk, deq, 32);
    for (int j = 0; j < 32; j++) {
        const double want = deq_spec(wt, blk, (size_t)j), err = fabs((double)x[j] - want);
        if ((double)deq[j] != want) fail_msg("%s dequantize: element %d %a, want %a", q35_wtype_name(wt), j, deq[j], want);
        if ((double)q35_w_at(blk, wt, (size_t)j) != want) fail_msg("q35_w_at differs at %d", j);
        /* round to nearest of t = x/d, clamped to [-127, 127] or [-8, 7]: the error is |d| times the
         * distance of t to the clamped range's rounding (eqs. Q8e, Q4e) */
        double bound = amax; /* scale flushed to zero: all zeros */
        if (d != 0.0) {
            const double t = x[j] / d, lo = wt == WT_Q8_0 ? -127 : -8, hi = wt == WT_Q8_0 ? 127 : 7;
            bound = fabs(d) * fmax(0.5, fmax(t - hi, lo - t)) * (1 + 0x1p-40); /* slack: bound's own rounding */
            if (fabs(d) >= 0x1p-14) { /* normal scale: the docs' claims on where the clamp binds */
                if (wt == WT_Q8_0) assert_true(fabs(t) < 127.5);
                else assert_true(t >= -8.5 && t <= 8 * (1 + 0x1p-11));
            }
        }
        if (err > bound) fail_msg("%s: element %d x=%a deq=%a err %g > bound %g (d=%a)", q35_wtype_name(wt), j, x[j],
                                  want, err, bound, d);
    }
}

static void round_trip(q35_wtype wt, const float *x)
{
    unsigned char blk[34];
    const int rc = wt == WT_Q8_0 ? q35_quantize_row_q8_0(x, (q35_block_q8_0 *)blk, 32)
                                 : q35_quantize_row_q4_0(x, (q35_block_q4_0 *)blk, 32);
    assert_int_equal(rc, 0);
    check_block(wt, x, blk);
}

static void test_quant_round_trip(void **state)
{
    (void)state;
    uint64_t s = 11;
    float x[32];
    for (int w = 0; w < 2; w++) {
        const q35_wtype wt = w ? WT_Q4_0 : WT_Q8_0;
        static const float scales[] = {1e-6f, 1e-3f, 0.02f, 1.0f, 37.0f, 1e4f};
        for (size_t si = 0; si < sizeof scales / sizeof *scales; si++)
            for (int rep = 0; rep < 2000; rep++) {
                for (int j = 0; j < 32; j++) x[j] = rng_unif(&s) * scales[si];
                if (rep % 7 == 0) x[rep % 32] *= 8.0f; /* an outlier */
                round_trip(wt, x);
            }
        memset(x, 0, sizeof x);
        round_trip(wt, x); /* all zero: d = 0 */
        x[5] = -3.0f;
        round_trip(wt, x); /* one value */
        x[20] = 3.0f;
        round_trip(wt, x); /* equal magnitudes: the first is m (Q4_0) */
        for (int j = 0; j < 32; j++) x[j] = (float)(j - 16) + 0.5f; /* ties in units of d = 1 (Q8_0: 127 levels) */
        round_trip(wt, x);
        for (int j = 0; j < 32; j++) x[j] = 1e-30f * (float)(j - 16); /* below fp16's range: d = 0 */
        round_trip(wt, x);
        for (int j = 0; j < 32; j++) x[j] = 1e-6f * (float)(j - 16); /* subnormal fp16 scale */
        round_trip(wt, x);
    }
    /* refused: non-finite input, a scale that overflows fp16 */
    unsigned char blk[34];
    memset(x, 0, sizeof x);
    x[3] = NAN;
    assert_int_equal(q35_quantize_row_q8_0(x, (q35_block_q8_0 *)blk, 32), -1);
    assert_int_equal(q35_quantize_row_q4_0(x, (q35_block_q4_0 *)blk, 32), -1);
    x[3] = 1e7f; /* 1e7 / 127 = 78740 > 65504 */
    assert_int_equal(q35_quantize_row_q8_0(x, (q35_block_q8_0 *)blk, 32), -1);
    x[3] = 6e5f; /* 6e5 / 8 = 75000 */
    assert_int_equal(q35_quantize_row_q4_0(x, (q35_block_q4_0 *)blk, 32), -1);
}

static void test_layout(void **state)
{
    (void)state;
    /* blocks written by hand: ggml's byte layout */
    q35_block_q8_0 b8 = {.d = 0x3800}; /* 0.5 */
    for (int j = 0; j < 32; j++) b8.q[j] = (int8_t)(j * 8 - 127);
    q35_block_q4_0 b4 = {.d = 0xC000}; /* -2 */
    for (int j = 0; j < 16; j++) b4.qs[j] = (uint8_t)(j | ((15 - j) << 4));
    float y[32];
    q35_dequantize_row_q8_0(&b8, y, 32);
    for (int j = 0; j < 32; j++) assert_true(y[j] == 0.5f * (float)(j * 8 - 127));
    q35_dequantize_row_q4_0(&b4, y, 32);
    for (int j = 0; j < 16; j++) {
        assert_true(y[j] == -2.0f * (float)(j - 8));
        assert_true(y[j + 16] == -2.0f * (float)(15 - j - 8));
    }
    assert_int_equal(q35_wtype_bytes(WT_Q8_0, 64), 68);
    assert_int_equal(q35_wtype_bytes(WT_Q4_0, 64), 36);
    assert_int_equal(q35_wtype_bytes(WT_Q4_0, 33), 36); /* whole blocks */
    assert_int_equal(q35_wtype_bytes(WT_BF16, 64), 128);
}

/* The interleaved layout as docs/quantization.md §8 and quant_r16.h write it, byte by byte: 32 rows
 * x 64 columns (2 groups x 2 blocks), each byte of the row layout given a value of its own, packed,
 * then every byte looked up where the layout says it goes; and every element read back through
 * q35_w_rc against the row layout's value (deq_spec). */
static void test_r16_layout(void **state)
{
    (void)state;
    enum { N = 32, K = 64, NB = K / 32 };
    for (int q8 = 0; q8 < 2; q8++) {
        const size_t bb = q8 ? 34 : 18, tb = 16 * bb, qbytes = bb - 2;
        unsigned char rows[N * NB * 34], packed[N * NB * 34];
        for (size_t i = 0; i < N * NB * bb; i++) rows[i] = (unsigned char)(i * 7 + 3);
        for (int n = 0; n < N; n++) /* finite scales: fp16 0x3C00 + small, row n block b */
            for (int b = 0; b < NB; b++) rows[(n * NB + b) * bb + 1] = 0x3C;
        q35_r16_pack(rows, q8, N, K, packed);
        for (int n = 0; n < N; n++)
            for (int b = 0; b < NB; b++) {
                const unsigned char *blk = rows + (n * NB + b) * bb;
                const unsigned char *tile = packed + ((size_t)(n / 16) * NB + b) * tb;
                const int i = n % 16;
                assert_int_equal(tile[2 * i], blk[0]);
                assert_int_equal(tile[2 * i + 1], blk[1]);
                for (size_t j = 0; j < qbytes; j++) /* quant byte j: chunk j / 4, row i's four bytes */
                    assert_int_equal(tile[32 + 64 * (j / 4) + 4 * i + j % 4], blk[2 + j]);
            }
        const q35_wtype wt = q8 ? WT_Q8_0_R16 : WT_Q4_0_R16;
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++) {
                const double want = deq_spec(q35_wtype_block(wt), rows + (size_t)n * NB * bb, (size_t)k);
                assert_true((double)q35_w_rc(packed, wt, K, (size_t)n, (size_t)k) == want);
            }
        assert_true(isnan(q35_w_at(packed, wt, 0))); /* no flat index */
        unsigned char back[N * NB * 34];
        q35_r16_unpack_rows(packed, q8, K, 0, N, 0, NB, back, NB * bb);
        assert_memory_equal(back, rows, N * NB * bb);
    }
}

/* ------------------------------------------------------------------ */
/* Matmul                                                              */
/* ------------------------------------------------------------------ */

typedef struct {
    int M, N, K, lda, ldw, ldc;
    q35_wtype wt;
    float *A, *C, *C0;
    void *W;
    void *Wrows; /* interleaved W: the row layout it was packed from (the expected values' source) */
    double *ref, *absref;
} qprob;

/* A in [-1,1) (integers in [-4,4]), W quantized from [-1,1) rows (or built with d = 1 and
 * q in [-4, 4]: integer weights), C0 in [-1, 1) (integers in [-100, 100]).  ldw a multiple of 32
 * at least K; padding of A is NaN, padding of C a sentinel. */
static void qprob_make(qprob *p, int M, int N, int K, q35_wtype wt, uint64_t seed, int integer, int pad)
{
    memset(p, 0, sizeof *p);
    p->M = M, p->N = N, p->K = K, p->wt = wt;
    const q35_wtype rw = wt; /* the interleaved types: W made in rows (wt's blocks), packed at the end */
    wt = q35_wtype_block(wt);
    const int K32 = (K + 31) / 32 * 32;
    p->lda = K + pad, p->ldw = K32 + (pad ? 32 : 0), p->ldc = N + pad;
    p->A = malloc((size_t)M * p->lda * 4);
    p->W = malloc(q35_wtype_bytes(wt, (size_t)N * p->ldw));
    p->C = malloc((size_t)(M + 1) * p->ldc * 4);
    p->C0 = malloc((size_t)(M + 1) * p->ldc * 4);
    p->ref = malloc((size_t)M * N * sizeof(double));
    p->absref = malloc((size_t)M * N * sizeof(double));
    float *row = malloc((size_t)p->ldw * 4);
    uint64_t s = seed;
    for (int m = 0; m < M; m++)
        for (int k = 0; k < p->lda; k++)
            p->A[(size_t)m * p->lda + k] = k >= K ? NAN : integer ? (float)((int)(rng_next(&s) % 9) - 4) : rng_unif(&s);
    for (int n = 0; n < N; n++) {
        char *wr = (char *)p->W + q35_wtype_bytes(wt, (size_t)n * p->ldw);
        if (integer) { /* d = 1.0 (0x3C00), small integer q: exact integer weights */
            for (int b = 0; b < p->ldw / 32; b++) {
                if (wt == WT_Q8_0) {
                    q35_block_q8_0 *blk = (q35_block_q8_0 *)wr + b;
                    blk->d = 0x3C00;
                    for (int j = 0; j < 32; j++) blk->q[j] = (int8_t)((int)(rng_next(&s) % 9) - 4);
                } else {
                    q35_block_q4_0 *blk = (q35_block_q4_0 *)wr + b;
                    blk->d = 0x3C00;
                    for (int j = 0; j < 16; j++) blk->qs[j] = (uint8_t)((4 + rng_next(&s) % 9) | ((4 + rng_next(&s) % 9) << 4));
                }
            }
        } else {
            /* elements past K are weights of the row too (the padding block's rest): they must never be multiplied,
             * which the NaN padding of A checks */
            for (int k = 0; k < p->ldw; k++) row[k] = rng_unif(&s);
            const int rc = wt == WT_Q8_0 ? q35_quantize_row_q8_0(row, (q35_block_q8_0 *)wr, (size_t)p->ldw)
                                         : q35_quantize_row_q4_0(row, (q35_block_q4_0 *)wr, (size_t)p->ldw);
            assert_int_equal(rc, 0);
        }
    }
    free(row);
    if (q35_wtype_is_r16(rw)) { /* expected values stay those of the row layout's bytes (deq_spec below) */
        void *packed = malloc(q35_wtype_bytes(wt, (size_t)N * p->ldw));
        q35_r16_pack(p->W, wt == WT_Q8_0, (size_t)N, (size_t)p->ldw, packed);
        p->Wrows = p->W, p->W = packed;
    }
    for (int m = 0; m < M + 1; m++)
        for (int n = 0; n < p->ldc; n++) {
            float v = integer ? (float)((int)(rng_next(&s) % 201) - 100) : rng_unif(&s);
            if (n >= N || m == M) { const uint32_t u = C_SENTINEL; memcpy(&v, &u, 4); }
            p->C0[(size_t)m * p->ldc + n] = v;
        }
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            const char *wr = (const char *)(p->Wrows ? p->Wrows : p->W) + q35_wtype_bytes(wt, (size_t)n * p->ldw);
            double acc = 0, abs = 0;
            for (int k = 0; k < K; k++) {
                const double t = (double)p->A[(size_t)m * p->lda + k] * deq_spec(wt, wr, (size_t)k);
                acc += t;
                abs += fabs(t);
            }
            p->ref[(size_t)m * N + n] = acc;
            p->absref[(size_t)m * N + n] = abs;
        }
}

static void qprob_free(qprob *p)
{
    free(p->A); free(p->W); free(p->Wrows); free(p->C); free(p->C0); free(p->ref); free(p->absref);
}

static const q35_mm_strategy strategies[] = {Q35_MM_AUTO, Q35_MM_GENERIC, Q35_MM_DOT, Q35_MM_PACKED, Q35_MM_PACKA,
                                              Q35_MM_BLAS};
#define NSTRAT (int)(sizeof strategies / sizeof *strategies)

static void run_check(const qprob *p, q35_mm_strategy s, int acc, int exact, const char *lvl)
{
    const size_t nc = (size_t)(p->M + 1) * p->ldc;
    memcpy(p->C, p->C0, nc * 4);
    if (!acc)
        for (int m = 0; m < p->M; m++)
            for (int n = 0; n < p->N; n++) p->C[(size_t)m * p->ldc + n] = NAN;
    q35_matmul_xwt_with(s, p->M, p->N, p->K, p->A, p->lda, p->W, p->wt, p->ldw, p->C, p->ldc, acc);
    const double g = (p->K + 1) * U32 / (1 - (p->K + 1) * U32);
    for (int m = 0; m < p->M + 1; m++)
        for (int n = 0; n < p->ldc; n++) {
            const size_t i = (size_t)m * p->ldc + n;
            uint32_t u;
            memcpy(&u, p->C + i, 4);
            if (m == p->M || n >= p->N) {
                if (u != C_SENTINEL) fail_msg("%s %s %s M=%d N=%d K=%d: padding of C written at (%d,%d)", lvl,
                                              q35_mm_strategy_name(s), q35_wtype_name(p->wt), p->M, p->N, p->K, m, n);
                continue;
            }
            const double c0 = acc ? p->C0[i] : 0.0, want = p->ref[(size_t)m * p->N + n] + c0;
            const double bound = exact ? 0.0 : g * (p->absref[(size_t)m * p->N + n] + fabs(c0));
            const double err = fabs((double)p->C[i] - want);
            if (!(err <= bound))
                fail_msg("%s %s %s M=%d N=%d K=%d acc=%d: C[%d,%d]=%.9g want %.9g err %g > %g", lvl,
                         q35_mm_strategy_name(s), q35_wtype_name(p->wt), p->M, p->N, p->K, acc, m, n, p->C[i], want, err,
                         bound);
        }
}

static const int grid_M[] = {1, 2, 3, 17, 64, 130};
static const int grid_N[] = {1, 7, 33, 200};
static const int grid_K[] = {32, 96, 512, 2048, 31, 100};

typedef struct { int integer; } grid_ctx;

static void grid_level(cpu_isa_level lvl, void *ctx)
{
    const int integer = ((const grid_ctx *)ctx)->integer;
    uint64_t seed = 1;
    static const q35_wtype wts[] = {WT_Q8_0, WT_Q4_0, WT_Q8_0_R16, WT_Q4_0_R16};
    for (int w = 0; w < 4; w++)
        for (size_t mi = 0; mi < sizeof grid_M / sizeof *grid_M; mi++)
            for (size_t ni = 0; ni < sizeof grid_N / sizeof *grid_N; ni++)
                for (size_t ki = 0; ki < sizeof grid_K / sizeof *grid_K; ki++) {
                    const int M = grid_M[mi], K = grid_K[ki];
                    /* interleaved: whole groups of 16 rows (16, 48, 208 for 1 / 7 / 33 / 200) */
                    const int N = q35_wtype_is_r16(wts[w]) ? (grid_N[ni] + 15) / 16 * 16 : grid_N[ni];
                    if (K >= 512 && M * N > 2048) continue;
                    qprob p;
                    qprob_make(&p, M, N, K, wts[w], seed++, integer, (int)((mi + ni + ki) % 2) * 3);
                    for (int s = 0; s < NSTRAT; s++)
                        for (int acc = 0; acc < 2; acc++) run_check(&p, strategies[s], acc, integer, cpu_isa_name(lvl));
                    qprob_free(&p);
                }
}

static void test_matmul_grid(void **state)
{
    (void)state;
    grid_ctx c = {0};
    isa_levels_each("test_quant", grid_level, &c);
}

static void test_matmul_exact_integers(void **state)
{
    (void)state;
    grid_ctx c = {1};
    isa_levels_each("test_quant", grid_level, &c);
}

static void choice_level(cpu_isa_level lvl, void *ctx)
{
    (void)ctx;
    /* AUTO's documented choice: generic below AVX2 or with K % 32 != 0, DOT for few rows */
    const q35_mm_strategy s1 = q35_matmul_strategy(1, 1024, 1024, WT_Q8_0), s2 = q35_matmul_strategy(1, 1024, 1000, WT_Q4_0);
    assert_int_equal(s2, Q35_MM_GENERIC);
    assert_int_equal(s1, lvl == ISA_GENERIC ? Q35_MM_GENERIC : Q35_MM_DOT);
}

static void test_strategy_choice(void **state)
{
    (void)state;
    isa_levels_each("test_quant", choice_level, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_decode_all),
        cmocka_unit_test(test_f16_encode),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_r16_layout),
        cmocka_unit_test(test_quant_round_trip),
        cmocka_unit_test(test_strategy_choice),
        cmocka_unit_test(test_matmul_exact_integers),
        cmocka_unit_test(test_matmul_grid),
    };
    return cmocka_run_group_tests_name("quant", tests, NULL, NULL);
}
