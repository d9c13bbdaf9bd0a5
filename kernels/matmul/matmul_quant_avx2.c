/* AVX2 bodies for quantized W (WT_Q8_0, WT_Q4_0; docs/quantization.md, docs/matmul.md
 * "Quantized W").  Called only when cpu_isa() >= ISA_AVX2 and K % 32 == 0.
 *
 * The AVX-512 kernel (matmul_quant_avx512.c) at 8 lanes: P = 2 rows of A x R = 4 rows of W,
 * each 32-weight block widened in registers to four ymm of exact fp32 (vpmovsxbd of 8 int8 +
 * vcvtdq2ps, times the scale; Q4_0's nibbles split by AND / shift and re-centred first), W read
 * in place in L2-sized blocks with the segmented row assignment.
 */
#include "kernels/matmul/matmul_internal.h"

#include <immintrin.h>

#define TGT __attribute__((target("avx2,fma")))
#define INL static inline __attribute__((always_inline)) TGT

#define QP 2
#define QR 4
#define QDOT_BLOCK_BYTES (256 * 1024)

INL __m256 scale16(uint16_t h)
{
    const uint32_t u = ((uint32_t)(h & 0x8000u) << 16) | ((uint32_t)(h & 0x7FFFu) << 13);
    return _mm256_mul_ps(_mm256_castsi256_ps(_mm256_set1_epi32((int)u)), _mm256_set1_ps(0x1p112f));
}

INL __m256 widen8(__m128i q8, __m256 d) /* the low 8 int8 of q8, times d */
{
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8)), d);
}

INL void deq_block(q35_wtype wt, const char *p, __m256 w[4])
{
    if (wt == WT_Q8_0) {
        const q35_block_q8_0 *b = (const q35_block_q8_0 *)p;
        const __m256 d = scale16(b->d);
        _Pragma("GCC unroll 8")
        for (int i = 0; i < 4; i++) w[i] = widen8(_mm_loadl_epi64((const __m128i *)(b->q + 8 * i)), d);
    } else {
        const q35_block_q4_0 *b = (const q35_block_q4_0 *)p;
        const __m256 d = scale16(b->d);
        const __m128i x = _mm_loadu_si128((const __m128i *)b->qs), m = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
        const __m128i lo = _mm_sub_epi8(_mm_and_si128(x, m), eight);
        const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(x, 4), m), eight);
        w[0] = widen8(lo, d);
        w[1] = widen8(_mm_srli_si128(lo, 8), d);
        w[2] = widen8(hi, d);
        w[3] = widen8(_mm_srli_si128(hi, 8), d);
    }
}

INL float hsum(__m256 v)
{
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

INL void qtile(q35_wtype wt, int P, int R, int nblk, const float *A, size_t lda, const char *const *w, size_t bb,
               float *out)
{
    __m256 s[QP][QR];
    _Pragma("GCC unroll 8")
    for (int p = 0; p < P; p++)
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; r++) s[p][r] = _mm256_setzero_ps();
    for (int b = 0; b < nblk; b++) {
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; r++) {
            __m256 wv[4];
            deq_block(wt, w[r] + (size_t)b * bb, wv);
            _Pragma("GCC unroll 8")
            for (int p = 0; p < P; p++)
                _Pragma("GCC unroll 8")
                for (int i = 0; i < 4; i++)
                    s[p][r] = _mm256_fmadd_ps(wv[i], _mm256_loadu_ps(A + p * lda + 32 * b + 8 * i), s[p][r]);
        }
    }
    _Pragma("GCC unroll 8")
    for (int p = 0; p < P; p++)
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; r++) out[p * R + r] = hsum(s[p][r]);
}

INL void store(float *C, size_t ldc, int P, int R, const int *ns, const float *v, int acc)
{
    _Pragma("GCC unroll 8")
    for (int p = 0; p < P; p++)
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; r++) {
            float *c = C + p * ldc + ns[r];
            *c = acc ? *c + v[p * R + r] : v[p * R + r];
        }
}

INL void qblock(q35_wtype wt, int P, int n0, int nb, int K, const float *A, size_t lda, const char *W, size_t rowb,
                float *C, size_t ldc, int acc)
{
    const size_t bb = wt == WT_Q8_0 ? sizeof(q35_block_q8_0) : sizeof(q35_block_q4_0);
    const int nblk = K / 32, S = nb / QR;
    float v[QP * QR];
    for (int i = 0; i < S; i++) {
        const char *w[QR];
        int ns[QR];
        _Pragma("GCC unroll 8")
        for (int r = 0; r < QR; r++) {
            ns[r] = n0 + i + r * S;
            w[r] = W + (size_t)ns[r] * rowb;
        }
        qtile(wt, P, QR, nblk, A, lda, w, bb, v);
        store(C, ldc, P, QR, ns, v, acc);
    }
    for (int n = n0 + S * QR; n < n0 + nb; n++) {
        const char *w[1] = {W + (size_t)n * rowb};
        qtile(wt, P, 1, nblk, A, lda, w, bb, v);
        store(C, ldc, P, 1, &n, v, acc);
    }
}

INL void qdot(q35_wtype wt, int M, int N, int K, const float *A, size_t lda, const char *W, size_t rowb,
                     float *C, size_t ldc, int acc)
{
    int NB = (int)(QDOT_BLOCK_BYTES / rowb) / QR * QR;
    if (NB < QR) NB = QR;
    if (NB > N) NB = N;
    for (int n0 = 0; n0 < N; n0 += NB) {
        const int nb = N - n0 < NB ? N - n0 : NB;
        int m = 0;
        for (; m + QP <= M; m += QP) qblock(wt, QP, n0, nb, K, A + m * lda, lda, W, rowb, C + m * ldc, ldc, acc);
        for (; m < M; m++) qblock(wt, 1, n0, nb, K, A + m * lda, lda, W, rowb, C + m * ldc, ldc, acc);
    }
}

TGT int mm_avx2_qdot(int M, int N, int K, const float *A, size_t lda, const void *W, q35_wtype wt, size_t ldw,
                 float *C, size_t ldc, int acc)
{
    const size_t rowb = q35_wtype_bytes(wt, ldw);
    if (wt == WT_Q8_0)
        qdot(WT_Q8_0, M, N, K, A, lda, W, rowb, C, ldc, acc);
    else
        qdot(WT_Q4_0, M, N, K, A, lda, W, rowb, C, ldc, acc);
    return 0;
}

TGT void mm_avx2_dequant(q35_wtype wt, const void *W, float *y, size_t nblk)
{
    const size_t bb = wt == WT_Q8_0 ? sizeof(q35_block_q8_0) : sizeof(q35_block_q4_0);
    for (size_t b = 0; b < nblk; b++) {
        __m256 w[4];
        if (wt == WT_Q8_0)
            deq_block(WT_Q8_0, (const char *)W + b * bb, w);
        else
            deq_block(WT_Q4_0, (const char *)W + b * bb, w);
        _Pragma("GCC unroll 8")
        for (int i = 0; i < 4; i++) _mm256_storeu_ps(y + 32 * b + 8 * i, w[i]);
    }
}
