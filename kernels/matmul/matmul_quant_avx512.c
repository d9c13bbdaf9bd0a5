/* AVX-512 bodies for quantized W (WT_Q8_0, WT_Q4_0; docs/quantization.md, docs/matmul.md
 * "Quantized W").  Called only when cpu_isa() >= ISA_AVX512 and K % 32 == 0.  AVX512F alone.
 *
 * DOT    P = 2 rows of A x R = 8 rows of W, one zmm accumulator each.  Per 32-weight block and
 *        row of W: the block widened in registers to two zmm of fp32 - Q8_0: vpmovsxbd (16 int8
 *        -> int32) + vcvtdq2ps; Q4_0: the 16 bytes split into low / high nibbles by AND and
 *        shift (elements 0-15 and 16-31, ggml's order), re-centred by a byte subtract of 8,
 *        then the same widening - and multiplied by the block's scale.  d * q is exact in fp32
 *        (eq. Q8 / Q4: at most 19 significant bits), so the FMAs that follow see the exact
 *        weights, as with bf16 W.  W is read in place, once per group of P rows of A, in blocks
 *        of QDOT_BLOCK_BYTES that stay in L2 across the groups, with the segmented row
 *        assignment of the fp32/bf16 DOT (tile i takes rows i, i + S, i + 2S, ...; S = nb / R).
 * DEQ    Rows of blocks to fp32 (the tile path of matmul.c, for many rows of A).
 */
#include "kernels/matmul/matmul_internal.h"

#include <immintrin.h>

#define TGT __attribute__((target("avx512f,avx2,fma")))
#define INL static inline __attribute__((always_inline)) TGT

#define QP 2
#define QR 8
#define QDOT_BLOCK_BYTES (256 * 1024)

/* The block scale, fp16 -> fp32 (exact) in every lane: vcvtph2ps, which AVX512F has in its zmm form
 * (2 uops; the scalar integer conversion cost ~6 per block and row and made the M = 1 kernel
 * compute-bound). */
INL __m512 scale16(uint16_t h) { return _mm512_cvtph_ps(_mm256_set1_epi16((short)h)); }

/* Block at p to 32 exact fp32 weights (w0: elements 0-15, w1: 16-31). */
INL void deq_block(q35_wtype wt, const char *p, __m512 *w0, __m512 *w1)
{
    if (wt == WT_Q8_0) {
        const q35_block_q8_0 *b = (const q35_block_q8_0 *)p;
        const __m512 d = scale16(b->d);
        const __m128i q0 = _mm_loadu_si128((const __m128i *)b->q), q1 = _mm_loadu_si128((const __m128i *)(b->q + 16));
        *w0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)), d);
        *w1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)), d);
    } else {
        const q35_block_q4_0 *b = (const q35_block_q4_0 *)p;
        const __m512 d = scale16(b->d);
        const __m128i x = _mm_loadu_si128((const __m128i *)b->qs), m = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
        const __m128i lo = _mm_sub_epi8(_mm_and_si128(x, m), eight);
        const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(x, 4), m), eight);
        *w0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo)), d);
        *w1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi)), d);
    }
}

/* P rows of A (a[p] = A + p * lda) x R rows of W (w[r]), nblk blocks; out[p * R + r] = dots. */
INL void qtile(q35_wtype wt, int P, int R, int nblk, const float *A, size_t lda, const char *const *w, size_t bb,
               float *out)
{
    __m512 s[QP][QR];
    _Pragma("GCC unroll 8")
    for (int p = 0; p < P; p++)
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; r++) s[p][r] = _mm512_setzero_ps();
    for (int b = 0; b < nblk; b++) {
        __m512 a[QP][2];
        _Pragma("GCC unroll 8")
        for (int p = 0; p < P; p++) {
            a[p][0] = _mm512_loadu_ps(A + p * lda + 32 * b);
            a[p][1] = _mm512_loadu_ps(A + p * lda + 32 * b + 16);
        }
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; r++) {
            __m512 w0, w1;
            deq_block(wt, w[r] + (size_t)b * bb, &w0, &w1);
            _Pragma("GCC unroll 8")
            for (int p = 0; p < P; p++) {
                s[p][r] = _mm512_fmadd_ps(w0, a[p][0], s[p][r]);
                s[p][r] = _mm512_fmadd_ps(w1, a[p][1], s[p][r]);
            }
        }
    }
    _Pragma("GCC unroll 8")
    for (int p = 0; p < P; p++)
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; r++) out[p * R + r] = _mm512_reduce_add_ps(s[p][r]);
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

/* One W block (rows n0 .. n0 + nb - 1) against rows m0 .. m0 + P - 1 of A. */
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

TGT int mm_avx512_qdot(int M, int N, int K, const float *A, size_t lda, const void *W, q35_wtype wt, size_t ldw,
                   float *C, size_t ldc, int acc)
{
    const size_t rowb = q35_wtype_bytes(wt, ldw);
    if (wt == WT_Q8_0)
        qdot(WT_Q8_0, M, N, K, A, lda, W, rowb, C, ldc, acc);
    else
        qdot(WT_Q4_0, M, N, K, A, lda, W, rowb, C, ldc, acc);
    return 0;
}

TGT void mm_avx512_dequant(q35_wtype wt, const void *W, float *y, size_t nblk)
{
    const size_t bb = wt == WT_Q8_0 ? sizeof(q35_block_q8_0) : sizeof(q35_block_q4_0);
    for (size_t b = 0; b < nblk; b++) {
        __m512 w0, w1;
        if (wt == WT_Q8_0)
            deq_block(WT_Q8_0, (const char *)W + b * bb, &w0, &w1);
        else
            deq_block(WT_Q4_0, (const char *)W + b * bb, &w0, &w1);
        _mm512_storeu_ps(y + 32 * b, w0);
        _mm512_storeu_ps(y + 32 * b + 16, w1);
    }
}
