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

static q35_mm_strategy choose(cpu_isa_level isa, int M, int N, q35_wtype wt)
{
    if (isa < ISA_AVX2) return Q35_MM_GENERIC;
    if (N <= DOT_MAX_N) return Q35_MM_DOT;
    if (wt == WT_BF16) return M < BF16_PACKED_MIN_M ? Q35_MM_DOT : Q35_MM_PACKED;
    return M < F32_PACKA_MIN_M ? Q35_MM_DOT : M < F32_PACKED_MIN_M ? Q35_MM_PACKA : Q35_MM_PACKED;
}

q35_mm_strategy q35_matmul_strategy(int M, int N, int K, q35_wtype wt)
{
    (void)K; /* the measured crossovers depend on M and N only (docs/matmul.md) */
    return choose(cpu_isa(), M, N, wt);
}

void q35_bf16_to_f32_array(const uint16_t *x, float *y, size_t n)
{
    if (cpu_isa() >= ISA_AVX2)
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
    tile = tile < 16 ? 16 : tile / 16 * 16;
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
    const cpu_isa_level isa = cpu_isa();
    if (s == Q35_MM_AUTO) s = choose(isa, M, N, wt);
    if (isa < ISA_AVX2 && (s == Q35_MM_DOT || s == Q35_MM_PACKED || s == Q35_MM_PACKA)) s = Q35_MM_GENERIC;
    switch (s) {
    case Q35_MM_BLAS:
        if (mm_blas(M, N, K, A, la, W, wt, lw, C, lc, accumulate) == 0) return;
        break;
    case Q35_MM_PACKED:
        if (mm_avx2_packed(M, N, K, A, la, W, wt, lw, C, lc, accumulate) == 0) return;
        break;
    case Q35_MM_PACKA:
        if (mm_avx2_packa(M, N, K, A, la, W, wt, lw, C, lc, accumulate) == 0) return;
        break;
    case Q35_MM_DOT:
        mm_avx2_dot(M, N, K, A, la, W, wt, lw, C, lc, accumulate);
        return;
    default:
        mm_generic(M, N, K, A, la, W, wt, lw, C, lc, accumulate);
        return;
    }
    /* out of memory: the paths that need no scratch */
    if (isa >= ISA_AVX2)
        mm_avx2_dot(M, N, K, A, la, W, wt, lw, C, lc, accumulate);
    else
        mm_generic(M, N, K, A, la, W, wt, lw, C, lc, accumulate);
}

void q35_matmul_xwt(int M, int N, int K, const float *A, int lda, const void *W, q35_wtype wt, int ldw,
                    float *C, int ldc, int accumulate)
{
    q35_matmul_xwt_with(Q35_MM_AUTO, M, N, K, A, lda, W, wt, ldw, C, ldc, accumulate);
}
