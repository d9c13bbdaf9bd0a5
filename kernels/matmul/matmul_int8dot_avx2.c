/* AVX2 body of the integer-dot matmul (matmul_int8dot.c has the definition, eqs. I8 / I4 of
 * docs/quantization.md).
 *   Q8_0: one 32-weight block per ymm: vpmaddubsw(|w|, sign(q, w)) multiplies unsigned by signed
 *         bytes and adds pairs into int16 (|w| <= 127 and |q| <= 127, so a pair is at most 32258:
 *         no saturation, and no room to add a second block's), vpmaddwd by ones adds pairs again
 *         into 8 int32; then i_b to fp32 (exact) times the block's fp32 dw_b d_b (`q8_rows`).
 *   Q4_0: two blocks per ymm (matmul_int8dot_pairs.inc): low and high nibbles, vpmaddubsw
 *         (n <= 15), the two int16 sums added, vpmaddwd; -8 s in the first lane of each block so
 *         i_b is the exact eq. I4 sum, as in the plain-C body.  (Until 2026-12-07 one block per
 *         ymm as Q8_0: the pairs halve the instructions a block, W in cache 234 -> 160 us at
 *         N 6144 K 1024 M 1, measured through Q35_ISA=avx2 on a Zen 4 core.)
 * One fp32 accumulator per row of W; R = 4 rows of W share each loaded activation block.
 * Called when cpu_isa() >= ISA_AVX2. */
#include "kernels/matmul/matmul_internal.h"

#include <immintrin.h>

#define TGT __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT
#define R 4
#define WBLOCK_BYTES (256 * 1024) /* rows of W kept in L2 across the rows of A */

INL float f16(const char *p)
{
    uint16_t h;
    __builtin_memcpy(&h, p, 2);
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

/* One Q8_0 block against its 32 activations: 8 int32 (the signs moved onto x, |w| unsigned). */
INL __m256i q8_block_dot(const char *blk, __m256i x)
{
    const __m256i w = _mm256_loadu_si256((const __m256i *)(blk + 2));
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w)), _mm256_set1_epi16(1));
}

INL float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Q8_0: nr (<= R) rows of W, row r at W + r * rstride, against one row of activations. */
INL void q8_rows(int nr, int nb, const int8_t *q, const float *d, const char *W, size_t rstride, size_t bb, float *out)
{
    __m256 acc[R];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const __m256i x = _mm256_loadu_si256((const __m256i *)(q + 32 * b));
        _Pragma("GCC unroll 4")
        for (int r = 0; r < R; r++) {
            if (r >= nr) break;
            const char *blk = W + r * rstride + b * bb;
            _mm_prefetch(blk + MM_QPREFETCH_BYTES, _MM_HINT_T0); /* matmul_internal.h */
            const __m256 sc = _mm256_set1_ps(f16(blk) * d[b]);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q8_block_dot(blk, x)), sc, acc[r]);
        }
    }
    for (int r = 0; r < nr; r++) out[r] = hsum8(acc[r]);
}

/* dw_b d_b and dw_{b+1} d_{b+1} in lanes 0 and 1 (d: the activations' scales of the pair). */
INL __m128 pair_scale(const char *blk, size_t bb, const float *d)
{
    uint16_t h0, h1;
    __builtin_memcpy(&h0, blk, 2);
    __builtin_memcpy(&h1, blk + bb, 2);
    double dd;
    __builtin_memcpy(&dd, d, 8);
    return _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)(h0 | (uint32_t)h1 << 16))), _mm_castpd_ps(_mm_set_sd(dd)));
}
#define PAIRS_ROWS R
#define PAIRS_PREFETCH(blk, bb) _mm_prefetch((blk) + MM_QPREFETCH_BYTES, _MM_HINT_T0) /* matmul_internal.h */
/* the two vpmaddubsw's int16 pair sums added (each at most 2 * 15 * 127 = 3810, so the sum fits),
 * then one vpmaddwd */
#define Q4_PAIR_DOT(corr, lo, hi, xlo, xhi) \
    _mm256_add_epi32(_mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo, xlo), _mm256_maddubs_epi16(hi, xhi)), \
                                       _mm256_set1_epi16(1)), corr)
#include "kernels/matmul/matmul_int8dot_pairs.inc"

INL void rows_of_w(q35_wtype wt, int nr, int nb, const int8_t *q, const float *d, const int32_t *s, const char *W,
                   size_t rstride, size_t bb, float *out)
{
    if (wt == WT_Q4_0)
        q4_pairs(nr, nb, q, d, s, W, rstride, bb, out);
    else
        q8_rows(nr, nb, q, d, W, rstride, bb, out);
}

INL void body(q35_wtype wt, int M, int N, int K, const q35_qact *A, int m0, const char *W, size_t rowb, float *C,
              size_t ldc, int accumulate)
{
    const int nb = K / Q35_QBLOCK;
    const size_t bb = q35_wtype_bytes(wt, Q35_QBLOCK), nbA = (size_t)A->K / Q35_QBLOCK;
    int NB = (int)(WBLOCK_BYTES / rowb) / R * R;
    if (NB < R) NB = R;
    for (int n0 = 0; n0 < N; n0 += NB) {
        const int n1 = N - n0 < NB ? N : n0 + NB;
        for (int m = 0; m < M; m++) {
            const size_t am = (size_t)(m0 + m);
            /* segmented rows (tile i takes rows i, i + S, ...; S = the block's rows / R): R streams
             * far apart in flight from DRAM, as the exact DOT and the AVX-512 body do */
            const int S = (n1 - n0) / R;
            float v[R];
            for (int i = 0; i < S; i++) {
                rows_of_w(wt, R, nb, A->q + am * A->K, A->d + am * nbA, A->s + am * nbA, W + (size_t)(n0 + i) * rowb,
                          (size_t)S * rowb, bb, v);
                float *c = C + (size_t)m * ldc + n0 + i;
                for (int r = 0; r < R; r++) c[r * S] = accumulate ? c[r * S] + v[r] : v[r];
            }
            for (int n = n0 + S * R; n < n1; n++) {
                rows_of_w(wt, 1, nb, A->q + am * A->K, A->d + am * nbA, A->s + am * nbA, W + (size_t)n * rowb, rowb, bb,
                          v);
                float *c = C + (size_t)m * ldc + n;
                *c = accumulate ? *c + v[0] : v[0];
            }
        }
    }
}

TGT void mm_avx2_qact(int M, int N, int K, const q35_qact *A, int m0, const char *W, q35_wtype wt, size_t rowb,
                      float *C, size_t ldc, int acc)
{
    if (wt == WT_Q8_0)
        body(WT_Q8_0, M, N, K, A, m0, W, rowb, C, ldc, acc);
    else
        body(WT_Q4_0, M, N, K, A, m0, W, rowb, C, ldc, acc);
}
