/* AVX2 body of the integer dot on interleaved W (matmul_int8dot_r16.c; layout in
 * kernels/quant/quant_r16.h, docs/quantization.md §8): a tile's 16 rows as two halves of 8, one
 * ymm each (lane i = row i of the half), the activations' four bytes broadcast.
 *   Q4_0: vpmaddubsw(nibbles, x) adds pairs of products into int16 (at most 2 x 15 x 127 = 3810);
 *         the 8 chunk products of a block (4 low, 4 high) are added in int16 (at most 30480: no
 *         saturation), then one vpmaddwd by ones into int32 and -8 s_b (eq. I4).
 *   Q8_0: vpmaddubsw(|x|, sign(w, x)) (at most 2 x 127 x 127 = 32258, no room for a second
 *         chunk's), vpmaddwd by ones per chunk, int32 adds.
 * Then i_b to fp32 and one FMA with dw_b d_b per half.  Up to 2 rows of x per pass (16 ymm
 * registers).  Called when cpu_isa() >= ISA_AVX2. */
#include "kernels/matmul/matmul_internal.h"

#include <immintrin.h>

#define TGT __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT
#define PMAX 2

INL __m256i bcast4(const int8_t *p)
{
    int32_t v;
    __builtin_memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* int32 sums of one half (h = 0: rows 0-7, 1: rows 8-15) of a tile's quants qs against x. */
INL __m256i half_dot(int q8, const uint8_t *qs, int h, const int8_t *x, int32_t s)
{
    const __m256i ones = _mm256_set1_epi16(1);
    if (!q8) {
        const __m256i c15 = _mm256_set1_epi8(15);
        __m256i sum16 = _mm256_setzero_si256();
        _Pragma("GCC unroll 4")
        for (int v = 0; v < 4; v++) {
            const __m256i y = _mm256_loadu_si256((const __m256i *)(qs + 64 * v + 32 * h));
            sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(_mm256_and_si256(y, c15), bcast4(x + 4 * v)));
            sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(y, 4), c15),
                                                                 bcast4(x + 16 + 4 * v)));
        }
        return _mm256_add_epi32(_mm256_madd_epi16(sum16, ones), _mm256_set1_epi32(-8 * s));
    }
    __m256i sum = _mm256_setzero_si256();
    _Pragma("GCC unroll 8")
    for (int v = 0; v < 8; v++) {
        const __m256i w = _mm256_loadu_si256((const __m256i *)(qs + 64 * v + 32 * h)), xb = bcast4(x + 4 * v);
        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(xb), _mm256_sign_epi8(w, xb)),
                                                      ones));
    }
    return sum;
}

INL void group(int q8, int P, int nb, const int8_t *const *q, const float *const *d, const int32_t *const *s,
               const uint8_t *t, size_t tb, __m256 acc[][2])
{
    const size_t pf = MM_R16_PREFETCH_BYTES / tb * tb; /* whole tiles ahead */
    for (int p = 0; p < PMAX; p++) acc[p][0] = acc[p][1] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++, t += tb) {
        for (size_t o = 0; o < tb; o += 64) _mm_prefetch((const char *)t + pf + o, _MM_HINT_T0);
        const uint8_t *qs = t + 2 * Q35_R16;
        _Pragma("GCC unroll 2")
        for (int h = 0; h < 2; h++) {
            const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(t + 16 * h)));
            _Pragma("GCC unroll 2")
            for (int p = 0; p < PMAX; p++) {
                if (p >= P) break;
                const __m256i i = half_dot(q8, qs, h, q[p] + Q35_QBLOCK * b, s[p][b]);
                acc[p][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_mul_ps(dw, _mm256_set1_ps(d[p][b])), acc[p][h]);
            }
        }
    }
}

INL void body(int q8, int M, int N, int K, const q35_qact *A, int m0, const char *W, size_t ldw, float *C, size_t ldc,
              int accumulate)
{
    const int nb = K / Q35_QBLOCK;
    const size_t tb = q35_r16_tile_bytes(q8), gstride = ldw / Q35_QBLOCK * tb;
    for (int n = 0; n < N; n += Q35_R16) {
        const uint8_t *t = (const uint8_t *)W + (size_t)(n / Q35_R16) * gstride;
        for (int m = 0; m < M; m += PMAX) {
            const int P = M - m < PMAX ? M - m : PMAX;
            const int8_t *q[PMAX];
            const float *d[PMAX];
            const int32_t *s[PMAX];
            for (int p = 0; p < P; p++) mm_qact_row(A, (size_t)(m0 + m + p), &q[p], &d[p], &s[p]);
            __m256 acc[PMAX][2];
            if (P == 1)
                group(q8, 1, nb, q, d, s, t, tb, acc);
            else
                group(q8, 2, nb, q, d, s, t, tb, acc);
            for (int p = 0; p < P; p++)
                for (int h = 0; h < 2; h++) {
                    float *c = C + (size_t)(m + p) * ldc + n + 8 * h;
                    _mm256_storeu_ps(c, accumulate ? _mm256_add_ps(_mm256_loadu_ps(c), acc[p][h]) : acc[p][h]);
                }
        }
    }
}

TGT void mm_avx2_qact_r16(int M, int N, int K, const q35_qact *A, int m0, const char *W, q35_wtype wt, size_t ldw,
                          float *C, size_t ldc, int acc)
{
    if (wt == WT_Q8_0_R16)
        body(1, M, N, K, A, m0, W, ldw, C, ldc, acc);
    else
        body(0, M, N, K, A, m0, W, ldw, C, ldc, acc);
}
