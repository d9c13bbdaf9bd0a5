/* q35_matmul_xwt: dispatch by ISA, M and N, the OpenBLAS path, bf16 conversions.
 * What each path does and why the thresholds are where they are: docs/matmul.md. */
#include "kernels/matmul/matmul.h"

#include "kernels/cpu_features.h"
#include "kernels/matmul/matmul_internal.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/* AUTO on AVX2 (docs/matmul.md, measured on the Zen 3 VM):
 *   N < 96 (few rows of W: packing A or padding W panels does not pay): DOT;
 *   fp32 W: DOT for M < 16, PACKA for M < 96, PACKED from there on;
 *   bf16 W: DOT for M < 40 (its in-register widening beats widening W into a buffer),
 *           PACKED from there on. */
#define DOT_MAX_N 95
#define F32_PACKA_MIN_M 16
#define F32_PACKED_MIN_M 96
#define BF16_PACKED_MIN_M 40
/* BLAS path with bf16 W: rows of W widened per sgemm call. */
#define BLAS_TILE_BYTES (512 * 1024)

const char *q35_mm_strategy_name(q35_mm_strategy s)
{
    switch (s) {
    case Q35_MM_AUTO: return "auto";
    case Q35_MM_GENERIC: return "generic";
    case Q35_MM_DOT: return "dot";
    case Q35_MM_PACKED: return "packed";
    case Q35_MM_PACKA: return "packa";
    case Q35_MM_BLAS: return "blas";
    }
    return "?";
}

/* AUTO on AVX-512 (docs/matmul.md "AVX-512 path", measured on a 2-vCPU Sapphire Rapids guest, 1
 * thread, interleaved): DOT for N < 96 or small M; fp32 W: the AVX2 PACKA for 16 <= M < 96
 * (it beat both AVX-512 kernels at 16-32: 96-108 against 79-99 GFLOP/s; the 12 x 32 PACKED is
 * 9% ahead at M = 64 but PACKA's M % 16 leftover rows go to DOT, so the last row of a prefill
 * equals the decode step's bit for bit, as on AVX2, which tests/test_model.c holds it to), the
 * PACKED from 96 as on AVX2; bf16 W: DOT up to 64 (its in-register widening needs no pack),
 * PACKED from there on. */
#define AVX512_F32_PACKED_MIN_M 96
#define AVX512_BF16_PACKED_MIN_M 64

/* Quantized W (docs/matmul.md "Quantized W"): DOT (blocks widened in registers) below
 * QUANT_TILE_MIN_M rows of A, else tiles of W rows dequantized once into fp32 and handed to the
 * fp32 path AUTO picks for them; K % 32 != 0 runs GENERIC (the SIMD bodies read whole blocks).
 * 16: DOT widens each block once per 2 rows of A, so from ~12-16 rows dequantizing once and
 * running the fp32 PACKA wins (1024 x 2048, 1 thread, AVX-512, busy host: q8_0 M = 16 DOT 72 /
 * tiles 80 GFLOP/s, M = 8 37 / 17; q4_0 M = 12 25 / 28, M = 8 24 / 25). */
#define QUANT_TILE_MIN_M 16
#define QUANT_TILE_BYTES (1024 * 1024)
#define QUANT_TILE_MIN_ROWS 256

static q35_mm_strategy choose(cpu_isa_level isa, int M, int N, q35_wtype wt);

static q35_mm_strategy choose_quant(cpu_isa_level isa, int M, int N, int K)
{
    if (isa < ISA_AVX2 || K % Q35_QBLOCK) return Q35_MM_GENERIC;
    if (M < QUANT_TILE_MIN_M) return Q35_MM_DOT;
    return choose(isa, M, N, WT_F32); /* the fp32 path that runs on each dequantized tile */
}

static q35_mm_strategy choose(cpu_isa_level isa, int M, int N, q35_wtype wt)
{
    if (isa < ISA_AVX2) return Q35_MM_GENERIC;
    if (isa >= ISA_AVX512) {
        if (N <= DOT_MAX_N) return Q35_MM_DOT;
        if (wt == WT_BF16) return M < AVX512_BF16_PACKED_MIN_M ? Q35_MM_DOT : Q35_MM_PACKED;
        return M < F32_PACKA_MIN_M ? Q35_MM_DOT : M < AVX512_F32_PACKED_MIN_M ? Q35_MM_PACKA : Q35_MM_PACKED;
    }
    if (N <= DOT_MAX_N) return Q35_MM_DOT;
    if (wt == WT_BF16) return M < BF16_PACKED_MIN_M ? Q35_MM_DOT : Q35_MM_PACKED;
    return M < F32_PACKA_MIN_M ? Q35_MM_DOT : M < F32_PACKED_MIN_M ? Q35_MM_PACKA : Q35_MM_PACKED;
}

q35_mm_strategy q35_matmul_strategy(int M, int N, int K, q35_wtype wt)
{
    /* the measured crossovers depend on M and N only (docs/matmul.md); K matters only to quantized W */
    return q35_wtype_is_quant(wt) ? choose_quant(cpu_isa(), M, N, K) : choose(cpu_isa(), M, N, wt);
}

const char *q35_wtype_name(q35_wtype t)
{
    switch (t) {
    case WT_F32: return "f32";
    case WT_BF16: return "bf16";
    case WT_Q8_0: return "q8_0";
    case WT_Q4_0: return "q4_0";
    case WT_Q8_0_R16: return "q8_0_r16";
    case WT_Q4_0_R16: return "q4_0_r16";
    }
    return "?";
}

void q35_bf16_to_f32_array(const uint16_t *x, float *y, size_t n)
{
    const cpu_isa_level isa = cpu_isa();
    if (isa >= ISA_AVX512)
        mm_avx512_bf16_to_f32(x, y, n);
    else if (isa >= ISA_AVX2)
        mm_avx2_bf16_to_f32(x, y, n);
    else
        mm_generic_bf16_to_f32(x, y, n);
}

/* Round to nearest, ties to even, on the bit pattern: adding 0x7FFF plus the lowest kept bit
 * carries into the kept half exactly when the dropped half is above one half ulp, or equal to
 * it with the kept half odd.  Works for subnormals and overflows to infinity like IEEE.  NaN:
 * keep sign and the top payload bits, set the quiet bit (the dropped bits may have been the
 * only set payload bits: truncating alone could turn a NaN into infinity). */
static inline uint16_t f32_to_bf16_bits(uint32_t u)
{
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040u);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

uint16_t q35_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return f32_to_bf16_bits(u);
}

void q35_f32_to_bf16_array(const float *x, uint16_t *y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, x + i, 4);
        y[i] = f32_to_bf16_bits(u);
    }
}

/* OpenBLAS: fp32 W in one call; bf16 W widened exactly tile by tile (rows of W) into a
 * scratch buffer, one sgemm per tile.  -1 if the scratch cannot be allocated. */
static int mm_blas(int M, int N, int K, const float *A, size_t lda, const void *W, q35_wtype wt, size_t ldw,
                   float *C, size_t ldc, int acc)
{
    const float beta = acc ? 1.0f : 0.0f;
    if (wt == WT_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, (int)lda, (const float *)W,
                    (int)ldw, beta, C, (int)ldc);
        return 0;
    }
    int tile = (int)(BLAS_TILE_BYTES / ((size_t)K * sizeof(float)));
    /* at least QUANT_TILE_MIN_ROWS: PACKED packs all of A again for every tile, which with 64-row
     * tiles of K = 3584 cost as much as the products (docs/matmul.md "Quantized W") */
    tile = tile < QUANT_TILE_MIN_ROWS ? QUANT_TILE_MIN_ROWS : tile / 16 * 16;
    if (tile > N) tile = N;
    float *buf = malloc((size_t)tile * K * sizeof(float));
    if (!buf) return -1;
    const uint16_t *Wh = W;
    for (int n0 = 0; n0 < N; n0 += tile) {
        const int nb = N - n0 < tile ? N - n0 : tile;
        for (int n = 0; n < nb; n++) q35_bf16_to_f32_array(Wh + (size_t)(n0 + n) * ldw, buf + (size_t)n * K, K);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, nb, K, 1.0f, A, (int)lda, buf, K, beta, C + n0,
                    (int)ldc);
    }
    free(buf);
    return 0;
}

/* Rows [n0, n0 + nb) of a quantized W to fp32, ldo floats apart (ldo >= K rounded up to 32).
 * Interleaved W: each row's blocks first back to the row layout in rowbuf (q35_wtype_bytes(wt, ldo)). */
static void dequant_rows(cpu_isa_level isa, const void *W, q35_wtype wt, size_t ldw, int n0, int nb, int K, float *out,
                         size_t ldo, void *rowbuf)
{
    const size_t nblk = ((size_t)K + Q35_QBLOCK - 1) / Q35_QBLOCK;
    const q35_wtype bt = q35_wtype_block(wt);
    for (int n = 0; n < nb; n++) {
        const char *row = (const char *)W + q35_wtype_bytes(wt, (size_t)(n0 + n) * ldw);
        if (q35_wtype_is_r16(wt)) {
            q35_r16_unpack_rows(W, bt == WT_Q8_0, ldw, (size_t)(n0 + n), 1, 0, nblk, rowbuf, 0);
            row = rowbuf;
        }
        float *o = out + (size_t)n * ldo;
        if (isa >= ISA_AVX512)
            mm_avx512_dequant(bt, row, o, nblk);
        else if (isa >= ISA_AVX2)
            mm_avx2_dequant(bt, row, o, nblk);
        else if (bt == WT_Q8_0)
            q35_dequantize_row_q8_0((const q35_block_q8_0 *)row, o, nblk * Q35_QBLOCK);
        else
            q35_dequantize_row_q4_0((const q35_block_q4_0 *)row, o, nblk * Q35_QBLOCK);
    }
}

/* Quantized W, many rows of A: tiles of W rows (QUANT_TILE_BYTES of fp32) dequantized once, exactly,
 * then the fp32 strategy s (PACKED, PACKA, BLAS; AUTO: choose's) on each.  -1 without scratch. */
static int mm_quant_tiles(q35_mm_strategy s, int M, int N, int K, const float *A, int lda, const void *W,
                          q35_wtype wt, size_t ldw, float *C, int ldc, int acc)
{
    const size_t ldo = ((size_t)K + Q35_QBLOCK - 1) / Q35_QBLOCK * Q35_QBLOCK;
    int tile = (int)(QUANT_TILE_BYTES / (ldo * sizeof(float)));
    /* at least QUANT_TILE_MIN_ROWS: PACKED packs all of A again for every tile, which with 64-row
     * tiles of K = 3584 cost as much as the products (docs/matmul.md "Quantized W") */
    tile = tile < QUANT_TILE_MIN_ROWS ? QUANT_TILE_MIN_ROWS : tile / 16 * 16;
    if (tile > N) tile = N;
    float *buf = malloc((size_t)tile * ldo * sizeof(float) + q35_wtype_bytes(wt, ldo));
    if (!buf) return -1;
    const cpu_isa_level isa = cpu_isa();
    for (int n0 = 0; n0 < N; n0 += tile) {
        const int nb = N - n0 < tile ? N - n0 : tile;
        dequant_rows(isa, W, wt, ldw, n0, nb, K, buf, ldo, buf + (size_t)tile * ldo);
        q35_matmul_xwt_with(s, M, nb, K, A, lda, buf, WT_F32, (int)ldo, C + n0, ldc, acc);
    }
    free(buf);
    return 0;
}

static void matmul_quant(q35_mm_strategy s, int M, int N, int K, const float *A, int lda, const void *W, q35_wtype wt,
                         int ldw, float *C, int ldc, int acc)
{
    const cpu_isa_level isa = cpu_isa();
    if (s == Q35_MM_AUTO) {
        /* the strategy for the whole N, not each tile's: a tile of few long rows (K = 3584 gives 64
         * rows per 1 MiB) would otherwise fall under DOT_MAX_N and run fp32 DOT, 2.5x slower than
         * PACKED at M = 512 (1 thread, AVX-512: 61 against 154 GFLOP/s for bf16 W) */
        s = choose_quant(isa, M, N, K);
    }
    const int simd = isa >= ISA_AVX2 && K % Q35_QBLOCK == 0;
    /* interleaved W: DOT has its own bodies on whole groups of 16 rows; tiles dequantize it row by row;
     * GENERIC, DOT without SIMD and rows past the last whole group: mm_generic, which unpacks a block at
     * a time */
    if (q35_wtype_is_r16(wt) && s == Q35_MM_DOT && simd) {
        const int whole = N / Q35_R16 * Q35_R16;
        (isa >= ISA_AVX512 ? mm_avx512_qdot_r16 : mm_avx2_qdot_r16)(M, whole, K, A, (size_t)lda, W, wt, (size_t)ldw, C,
                                                                  (size_t)ldc, acc);
        if (whole == N) return;
        W = (const char *)W + q35_wtype_bytes(wt, (size_t)whole * ldw), N -= whole, C += whole;
        s = Q35_MM_GENERIC;
    }
    if (s == Q35_MM_GENERIC || (s == Q35_MM_DOT && !simd)) {
        mm_generic(M, N, K, A, (size_t)lda, W, wt, (size_t)ldw, C, (size_t)ldc, acc);
        return;
    }
    if (s != Q35_MM_DOT && mm_quant_tiles(s, M, N, K, A, lda, W, wt, (size_t)ldw, C, ldc, acc) == 0) return;
    /* DOT, or the tiles' scratch could not be allocated; interleaved W without scratch: mm_generic, which
     * unpacks one block at a time */
    if (!simd || q35_wtype_is_r16(wt))
        mm_generic(M, N, K, A, (size_t)lda, W, wt, (size_t)ldw, C, (size_t)ldc, acc);
    else
        (isa >= ISA_AVX512 ? mm_avx512_qdot : mm_avx2_qdot)(M, N, K, A, (size_t)lda, W, wt, (size_t)ldw, C,
                                                             (size_t)ldc, acc);
}

void q35_matmul_xwt_with(q35_mm_strategy s, int M, int N, int K, const float *A, int lda, const void *W,
                         q35_wtype wt, int ldw, float *C, int ldc, int accumulate)
{
    if (M <= 0 || N <= 0) return;
    const size_t la = (size_t)lda, lw = (size_t)ldw, lc = (size_t)ldc;
    if (K <= 0) { /* an empty sum */
        if (!accumulate)
            for (int m = 0; m < M; m++) memset(C + m * lc, 0, (size_t)N * sizeof(float));
        return;
    }
    if (q35_wtype_is_quant(wt)) {
        matmul_quant(s, M, N, K, A, lda, W, wt, ldw, C, ldc, accumulate);
        return;
    }
    const cpu_isa_level isa = cpu_isa();
    if (s == Q35_MM_AUTO) s = choose(isa, M, N, wt);
    if (isa < ISA_AVX2 && (s == Q35_MM_DOT || s == Q35_MM_PACKED || s == Q35_MM_PACKA)) s = Q35_MM_GENERIC;
    switch (s) {
    case Q35_MM_BLAS:
        if (mm_blas(M, N, K, A, la, W, wt, lw, C, lc, accumulate) == 0) return;
        break;
    case Q35_MM_PACKED:
        if ((isa >= ISA_AVX512 ? mm_avx512_packed : mm_avx2_packed)(M, N, K, A, la, W, wt, lw, C, lc, accumulate) == 0)
            return;
        break;
    case Q35_MM_PACKA: /* AVX2 on every level above it: there is no AVX-512 PACKA */
        if (mm_avx2_packa(M, N, K, A, la, W, wt, lw, C, lc, accumulate,
                          isa >= ISA_AVX512 ? mm_avx512_dot : mm_avx2_dot) == 0)
            return;
        break;
    case Q35_MM_DOT:
        (isa >= ISA_AVX512 ? mm_avx512_dot : mm_avx2_dot)(M, N, K, A, la, W, wt, lw, C, lc, accumulate);
        return;
    default:
        mm_generic(M, N, K, A, la, W, wt, lw, C, lc, accumulate);
        return;
    }
    /* out of memory: the paths that need no scratch */
    if (isa >= ISA_AVX512)
        mm_avx512_dot(M, N, K, A, la, W, wt, lw, C, lc, accumulate);
    else if (isa >= ISA_AVX2)
        mm_avx2_dot(M, N, K, A, la, W, wt, lw, C, lc, accumulate);
    else
        mm_generic(M, N, K, A, la, W, wt, lw, C, lc, accumulate);
}

void q35_matmul_xwt(int M, int N, int K, const float *A, int lda, const void *W, q35_wtype wt, int ldw,
                    float *C, int ldc, int accumulate)
{
    q35_matmul_xwt_with(Q35_MM_AUTO, M, N, K, A, lda, W, wt, ldw, C, ldc, accumulate);
}

/* BF16 dot (docs/matmul.md "BF16-dot path"): bf16 W with A rounded to bf16.  With
 * AVX512_BF16 (cpu_has), vdpbf16ps; otherwise the same rounding of A done here, the rounded
 * rows widened back (exactly) and the ordinary path run on them: bf16 x bf16 products are
 * exact in fp32, so the two differ only in the order of the fp32 sums (and in vdpbf16ps
 * treating subnormal inputs and results as zero). */
static void bf16dot_emulated(int M, int N, int K, const float *A, int lda, const void *W, int ldw, float *C,
                             int ldc, int accumulate)
{
    enum { ROWS = 64 };
    float *ar = malloc((size_t)ROWS * K * sizeof *ar);
    uint16_t *h = malloc((size_t)K * sizeof *h);
    if (!ar || !h) { /* no scratch: one row at a time on the stack would be too large for big K */
        free(ar);
        free(h);
        for (int m = 0; m < M; m++) {
            for (int n = 0; n < N; n++) {
                const uint16_t *w = (const uint16_t *)W + (size_t)n * ldw;
                float s = 0.0f;
                for (int k = 0; k < K; k++)
                    s += q35_bf16_to_f32(q35_f32_to_bf16(A[(size_t)m * lda + k])) * q35_bf16_to_f32(w[k]);
                C[(size_t)m * ldc + n] = accumulate ? C[(size_t)m * ldc + n] + s : s;
            }
        }
        return;
    }
    for (int m0 = 0; m0 < M; m0 += ROWS) {
        const int mb = M - m0 < ROWS ? M - m0 : ROWS;
        for (int i = 0; i < mb; i++) {
            q35_f32_to_bf16_array(A + (size_t)(m0 + i) * lda, h, (size_t)K);
            q35_bf16_to_f32_array(h, ar + (size_t)i * K, (size_t)K);
        }
        q35_matmul_xwt(mb, N, K, ar, K, W, WT_BF16, ldw, C + (size_t)m0 * ldc, ldc, accumulate);
    }
    free(ar);
    free(h);
}

void q35_matmul_xwt_bf16dot(int M, int N, int K, const float *A, int lda, const void *W, q35_wtype wt, int ldw,
                            float *C, int ldc, int accumulate)
{
    if (M <= 0 || N <= 0) return;
    if (wt != WT_BF16 || K <= 0) { /* fp32 W: the exact path (nothing to gain from rounding A alone) */
        q35_matmul_xwt(M, N, K, A, lda, W, wt, ldw, C, ldc, accumulate);
        return;
    }
    if (cpu_has(CPU_FEAT_AVX512_BF16) &&
        mm_avx512_bf16dot(M, N, K, A, (size_t)lda, W, (size_t)ldw, C, (size_t)ldc, accumulate) == 0)
        return;
    bf16dot_emulated(M, N, K, A, lda, W, ldw, C, ldc, accumulate);
}

void q35_bf16_round_padded(int M, int K, const float *A, int lda, int m0, int m1, uint16_t *out)
{
    const int ldo = q35_amx_lda(K);
    for (int m = m0; m < m1; m++) {
        q35_f32_to_bf16_array(A + (size_t)m * lda, out + (size_t)m * ldo, (size_t)K);
        memset(out + (size_t)m * ldo + K, 0, sizeof *out * (size_t)(ldo - K));
    }
    if (m1 == M && q35_amx_rows(M) > M) memset(out + (size_t)M * ldo, 0, sizeof *out * (size_t)ldo * (q35_amx_rows(M) - M));
}

void q35_matmul_bf16a_amx(int M, int N, int K, const uint16_t *A, int lda, const uint16_t *W, int ldw, float *C,
                          int ldc, int accumulate)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        q35_matmul_xwt(M, N, 0, NULL, 0, W, WT_BF16, ldw, C, ldc, accumulate);
        return;
    }
    /* Below 16 rows a tile is mostly padding and the repacking of W costs more than the products
     * (decode, M = 1: 2x slower than vdpbf16ps reading W in place), so those take the fallback. */
    if (M >= 16 && cpu_has(CPU_FEAT_AMX_BF16) &&
        mm_amx_bf16(M, N, K, A, (size_t)lda, W, (size_t)ldw, C, (size_t)ldc, accumulate) == 0)
        return;
    /* A is bf16 already: widen it (exact) and run the BF16-dot path, whose rounding is then a no-op */
    enum { ROWS = 64 };
    float *a = malloc((size_t)(M < ROWS ? M : ROWS) * K * sizeof *a);
    for (int m0 = 0; m0 < M;) {
        const int mb = !a ? 1 : M - m0 < ROWS ? M - m0 : ROWS;
        float row[64];
        if (!a && K > 64) { /* no scratch: one element at a time */
            for (int n = 0; n < N; n++) {
                float s = 0.0f;
                for (int k = 0; k < K; k++)
                    s += q35_bf16_to_f32(A[(size_t)m0 * lda + k]) * q35_bf16_to_f32(W[(size_t)n * ldw + k]);
                C[(size_t)m0 * ldc + n] = accumulate ? C[(size_t)m0 * ldc + n] + s : s;
            }
            m0++;
            continue;
        }
        float *dst = a ? a : row;
        for (int i = 0; i < mb; i++) q35_bf16_to_f32_array(A + (size_t)(m0 + i) * lda, dst + (size_t)i * K, (size_t)K);
        q35_matmul_xwt_bf16dot(mb, N, K, dst, K, W, WT_BF16, ldw, C + (size_t)m0 * ldc, ldc, accumulate);
        m0 += mb;
    }
    free(a);
}

const char *q35_matmul_amx_path(void)
{
    if (cpu_has(CPU_FEAT_AMX_BF16)) return "AMX tdpbf16ps";
    return cpu_has(CPU_FEAT_AVX512_BF16) ? "vdpbf16ps (no AMX at this level)" : "emulated (no AMX at this level)";
}

const char *q35_matmul_bf16dot_path(void)
{
    return cpu_has(CPU_FEAT_AVX512_BF16) ? "vdpbf16ps (avx512-bf16)" : "emulated (A rounded, ordinary path)";
}

const char *q35_matmul_path_summary(void)
{
    const cpu_isa_level isa = cpu_isa();
    if (isa >= ISA_AVX512)
        return cpu_has(CPU_FEAT_AMX_BF16)
                   ? "matmul (linear tiled, moe) avx512 dot/packed 12x32; linear tiled-bf16dot vdpbf16ps; linear tiled-amx AMX"
               : cpu_has(CPU_FEAT_AVX512_BF16)
                   ? "matmul (linear tiled, moe) avx512 dot/packed 12x32; linear tiled-bf16dot vdpbf16ps, tiled-amx the same"
                   : "matmul (linear tiled, moe) avx512 dot/packed 12x32; linear tiled-bf16dot, tiled-amx emulated";
    if (isa >= ISA_AVX2) return "matmul (linear tiled, moe) avx2 dot/packa/packed; linear tiled-bf16dot, tiled-amx emulated";
    return "matmul (linear tiled, moe) generic; linear tiled-bf16dot, tiled-amx emulated";
}
