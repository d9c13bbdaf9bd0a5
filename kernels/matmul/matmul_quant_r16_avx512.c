/* AVX-512 exact widening of interleaved W (WT_Q8_0_R16 / WT_Q4_0_R16, kernels/quant/quant_r16.h,
 * docs/quantization.md §8), the DOT strategy: a few rows of A against 16 rows of W in the lanes.
 * Each 64-byte chunk of a tile holds four elements of the 16 rows, one byte (Q8_0) or nibble pair
 * (Q4_0) per element and row: element t of the four is shifted down, widened to int32 and to fp32
 * (exact), and times the row's scale dw (exact: at most 8 bits times 11), then one FMA with A's
 * element broadcast.  Q4_0's n - 8 as fma(n, dw, -8 dw), exact as well.  Four accumulators per row
 * of A (by element t) keep the FMA chains short.  The weights enter exact, the products and sums in
 * fp32, as in the row layout's DOT (matmul_quant_simd.inc), in another order.
 * Called only when cpu_isa() >= ISA_AVX512 and K % 32 == 0. */
#include "kernels/matmul/matmul_internal.h"

#include <immintrin.h>

#define TGT __attribute__((target("avx512f,avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT
#define PMAX 4
#define R16_PREFETCH_TILES 6 /* as the integer-dot body (matmul_int8dot_r16_avx512.c) */

/* Element t (0-3) of each row's four bytes of y, sign-extended (Q8_0) or nibble h (Q4_0), as fp32. */
INL __m512 q8_elem(__m512i y, int t)
{
    return _mm512_cvtepi32_ps(_mm512_srai_epi32(t == 3 ? y : _mm512_slli_epi32(y, 24 - 8 * t), 24));
}
INL __m512 q4_elem(__m512i y, int t, int h)
{
    return _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(y, 8 * t + 4 * h), _mm512_set1_epi32(15)));
}

INL void group(int q8, int P, int nb, const float *const *a, const uint8_t *tl, size_t tb, __m512 *out)
{
    __m512 acc[PMAX][4];
    _Pragma("GCC unroll 4")
    for (int p = 0; p < PMAX; p++)
        _Pragma("GCC unroll 4")
        for (int t = 0; t < 4; t++) acc[p][t] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++, tl += tb) {
        _mm_prefetch((const char *)tl + R16_PREFETCH_TILES * tb, _MM_HINT_T0);
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)tl));
        const __m512 m8dw = _mm512_mul_ps(dw, _mm512_set1_ps(-8.0f));
        const uint8_t *qs = tl + 2 * Q35_R16;
        for (int v = 0; v < (q8 ? 8 : 4); v++) {
            const __m512i y = _mm512_loadu_si512((const void *)(qs + 64 * v));
            _Pragma("GCC unroll 4")
            for (int t = 0; t < 4; t++) {
                if (q8) {
                    const __m512 w = _mm512_mul_ps(q8_elem(y, t), dw);
                    _Pragma("GCC unroll 4")
                    for (int p = 0; p < PMAX; p++)
                        if (p < P) acc[p][t] = _mm512_fmadd_ps(w, _mm512_set1_ps(a[p][32 * b + 4 * v + t]), acc[p][t]);
                } else {
                    const __m512 wl = _mm512_fmadd_ps(q4_elem(y, t, 0), dw, m8dw); /* elements 4v + t */
                    const __m512 wh = _mm512_fmadd_ps(q4_elem(y, t, 1), dw, m8dw); /* 16 + 4v + t */
                    _Pragma("GCC unroll 4")
                    for (int p = 0; p < PMAX; p++)
                        if (p < P) {
                            acc[p][t] = _mm512_fmadd_ps(wl, _mm512_set1_ps(a[p][32 * b + 4 * v + t]), acc[p][t]);
                            acc[p][t] = _mm512_fmadd_ps(wh, _mm512_set1_ps(a[p][32 * b + 16 + 4 * v + t]), acc[p][t]);
                        }
                }
            }
        }
    }
    for (int p = 0; p < P; p++)
        out[p] = _mm512_add_ps(_mm512_add_ps(acc[p][0], acc[p][1]), _mm512_add_ps(acc[p][2], acc[p][3]));
}

INL void body(int q8, int M, int N, int K, const float *A, size_t lda, const char *W, size_t ldw, float *C, size_t ldc,
              int accumulate)
{
    const int nb = K / Q35_QBLOCK;
    const size_t tb = q35_r16_tile_bytes(q8), gstride = ldw / Q35_QBLOCK * tb;
    for (int n = 0; n < N; n += Q35_R16) {
        const uint8_t *t = (const uint8_t *)W + (size_t)(n / Q35_R16) * gstride;
        for (int m = 0; m < M; m += PMAX) {
            const int P = M - m < PMAX ? M - m : PMAX;
            const float *a[PMAX];
            for (int p = 0; p < P; p++) a[p] = A + (size_t)(m + p) * lda;
            __m512 out[PMAX];
            switch (P) {
            case 1: group(q8, 1, nb, a, t, tb, out); break;
            case 2: group(q8, 2, nb, a, t, tb, out); break;
            case 3: group(q8, 3, nb, a, t, tb, out); break;
            default: group(q8, 4, nb, a, t, tb, out); break;
            }
            for (int p = 0; p < P; p++) {
                float *c = C + (size_t)(m + p) * ldc + n;
                _mm512_storeu_ps(c, accumulate ? _mm512_add_ps(_mm512_loadu_ps(c), out[p]) : out[p]);
            }
        }
    }
}

TGT void mm_avx512_qdot_r16(int M, int N, int K, const float *A, size_t lda, const void *W, q35_wtype wt, size_t ldw,
                            float *C, size_t ldc, int acc)
{
    if (wt == WT_Q8_0_R16)
        body(1, M, N, K, A, lda, W, ldw, C, ldc, acc);
    else
        body(0, M, N, K, A, lda, W, ldw, C, ldc, acc);
}
