/* AVX2 exact widening of interleaved W (matmul_quant_r16_avx512.c has the method): a tile's 16 rows
 * as two halves of 8 lanes, one row of A at a time (16 ymm registers: two accumulators per half).
 * Called when cpu_isa() >= ISA_AVX2 and K % 32 == 0. */
#include "kernels/matmul/matmul_internal.h"

#include <immintrin.h>

#define TGT __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT
#define R16_PREFETCH_TILES 6

INL __m256 q8_elem(__m256i y, int t)
{
    return _mm256_cvtepi32_ps(_mm256_srai_epi32(t == 3 ? y : _mm256_slli_epi32(y, 24 - 8 * t), 24));
}
INL __m256 q4_elem(__m256i y, int t, int h)
{
    return _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(y, 8 * t + 4 * h), _mm256_set1_epi32(15)));
}

INL void row(int q8, int nb, const float *a, const uint8_t *tl, size_t tb, __m256 out[2])
{
    __m256 acc[2][2] = {{_mm256_setzero_ps(), _mm256_setzero_ps()}, {_mm256_setzero_ps(), _mm256_setzero_ps()}};
    for (int b = 0; b < nb; b++, tl += tb) {
        _mm_prefetch((const char *)tl + R16_PREFETCH_TILES * tb, _MM_HINT_T0);
        const uint8_t *qs = tl + 2 * Q35_R16;
        _Pragma("GCC unroll 2")
        for (int h = 0; h < 2; h++) {
            const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(tl + 16 * h)));
            const __m256 m8dw = _mm256_mul_ps(dw, _mm256_set1_ps(-8.0f));
            for (int v = 0; v < (q8 ? 8 : 4); v++) {
                const __m256i y = _mm256_loadu_si256((const __m256i *)(qs + 64 * v + 32 * h));
                _Pragma("GCC unroll 4")
                for (int t = 0; t < 4; t++) {
                    if (q8) {
                        acc[h][t & 1] = _mm256_fmadd_ps(_mm256_mul_ps(q8_elem(y, t), dw),
                                                        _mm256_set1_ps(a[32 * b + 4 * v + t]), acc[h][t & 1]);
                    } else {
                        acc[h][0] = _mm256_fmadd_ps(_mm256_fmadd_ps(q4_elem(y, t, 0), dw, m8dw),
                                                    _mm256_set1_ps(a[32 * b + 4 * v + t]), acc[h][0]);
                        acc[h][1] = _mm256_fmadd_ps(_mm256_fmadd_ps(q4_elem(y, t, 1), dw, m8dw),
                                                    _mm256_set1_ps(a[32 * b + 16 + 4 * v + t]), acc[h][1]);
                    }
                }
            }
        }
    }
    out[0] = _mm256_add_ps(acc[0][0], acc[0][1]);
    out[1] = _mm256_add_ps(acc[1][0], acc[1][1]);
}

INL void body(int q8, int M, int N, int K, const float *A, size_t lda, const char *W, size_t ldw, float *C, size_t ldc,
              int accumulate)
{
    const int nb = K / Q35_QBLOCK;
    const size_t tb = q35_r16_tile_bytes(q8), gstride = ldw / Q35_QBLOCK * tb;
    for (int n = 0; n < N; n += Q35_R16) {
        const uint8_t *t = (const uint8_t *)W + (size_t)(n / Q35_R16) * gstride;
        for (int m = 0; m < M; m++) {
            __m256 out[2];
            row(q8, nb, A + (size_t)m * lda, t, tb, out);
            for (int h = 0; h < 2; h++) {
                float *c = C + (size_t)m * ldc + n + 8 * h;
                _mm256_storeu_ps(c, accumulate ? _mm256_add_ps(_mm256_loadu_ps(c), out[h]) : out[h]);
            }
        }
    }
}

TGT void mm_avx2_qdot_r16(int M, int N, int K, const float *A, size_t lda, const void *W, q35_wtype wt, size_t ldw,
                          float *C, size_t ldc, int acc)
{
    if (wt == WT_Q8_0_R16)
        body(1, M, N, K, A, lda, W, ldw, C, ldc, acc);
    else
        body(0, M, N, K, A, lda, W, ldw, C, ldc, acc);
}
