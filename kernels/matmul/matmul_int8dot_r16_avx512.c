/* AVX-512 VNNI body of the integer dot on interleaved W (matmul_int8dot_r16.c; layout in
 * kernels/quant/quant_r16.h, docs/quantization.md §8).  One tile = block b of 16 rows:
 *   the 16 fp16 scales: one vcvtph2ps;
 *   Q4_0: 4 chunks of 64 bytes, each the nibbles of elements 4v..4v+3 (low) and 16+4v..16+4v+3
 *         (high) of the 16 rows, four bytes a row: and / shift+and give two unsigned operands;
 *   Q8_0: 8 chunks, elements 4v..4v+3: w + 128 (XOR) the unsigned operand;
 * against the activations' four bytes broadcast (vpbroadcastd): one vpdpbusd multiplies and sums
 * four weights of 16 rows, lane i = row i.  The accumulator starts at -8 s_b (Q4_0, eq. I4) or
 * -128 s_b (Q8_0, the +128 taken back: eq. I8), the same in every lane; lo / hi (even / odd chunks)
 * in two accumulators so the chains are four long.  Then i_b to fp32 (exact) and one FMA with
 * dw_b d_b into 16 fp32 accumulators: no horizontal sums, no per-row scale route.  Up to 4 rows of
 * x per pass over a group (verify windows, short prefill chunks): the group's tiles (nb x 288 or
 * 544 bytes) stay in L1/L2 across the passes.
 * Called only when cpu_isa() >= ISA_AVX512 and cpu_has(AVX512_VNNI) and cpu_has(AVX512BW). */
#include "kernels/matmul/matmul_internal.h"

#include <immintrin.h>

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT
#define PMAX 4

INL __m512i bcast4(const int8_t *p)
{
    int32_t v;
    __builtin_memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* P rows of activations against one group of 16 rows of W (tiles t0, t0 + tb, ...): acc[p] lanes = rows. */
INL void group(int q8, int P, int nb, const int8_t *const *q, const float *const *d, const int32_t *const *s,
               const uint8_t *t, size_t tb, __m512 *acc)
{
    const __m512i c15 = _mm512_set1_epi8(15), c128 = _mm512_set1_epi8((char)0x80);
    const size_t pf = MM_R16_PREFETCH_BYTES / tb * tb; /* whole tiles ahead */
    _Pragma("GCC unroll 4")
    for (int p = 0; p < PMAX; p++) acc[p] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++, t += tb) {
        for (size_t o = 0; o < tb; o += 64) _mm_prefetch((const char *)t + pf + o, _MM_HINT_T0);
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)t));
        const uint8_t *qs = t + 2 * Q35_R16;
        __m512i u[8];
        if (q8) {
            _Pragma("GCC unroll 8")
            for (int v = 0; v < 8; v++) u[v] = _mm512_xor_si512(_mm512_loadu_si512((const void *)(qs + 64 * v)), c128);
        } else {
            _Pragma("GCC unroll 4")
            for (int v = 0; v < 4; v++) {
                const __m512i y = _mm512_loadu_si512((const void *)(qs + 64 * v));
                u[2 * v] = _mm512_and_si512(y, c15);                            /* elements 4v .. */
                u[2 * v + 1] = _mm512_and_si512(_mm512_srli_epi16(y, 4), c15); /* elements 16+4v .. */
            }
        }
        _Pragma("GCC unroll 4")
        for (int p = 0; p < PMAX; p++) {
            if (p >= P) break;
            const int8_t *x = q[p] + Q35_QBLOCK * b;
            __m512i a0 = _mm512_set1_epi32((q8 ? -128 : -8) * s[p][b]), a1 = _mm512_setzero_si512();
            _Pragma("GCC unroll 4")
            for (int v = 0; v < 4; v++) {
                /* Q8_0: chunks 2v, 2v+1 = elements 8v.., 8v+4..; Q4_0: u[2v], u[2v+1] = elements 4v.., 16+4v.. */
                const int e0 = q8 ? 8 * v : 4 * v, e1 = q8 ? 8 * v + 4 : 16 + 4 * v;
                a0 = _mm512_dpbusd_epi32(a0, u[2 * v], bcast4(x + e0));
                a1 = _mm512_dpbusd_epi32(a1, u[2 * v + 1], bcast4(x + e1));
            }
            const __m512 sc = _mm512_mul_ps(dw, _mm512_set1_ps(d[p][b]));
            acc[p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(a0, a1)), sc, acc[p]);
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
            __m512 acc[PMAX];
            switch (P) { /* P a constant in each copy, so the p loops unroll to straight code */
            case 1: group(q8, 1, nb, q, d, s, t, tb, acc); break;
            case 2: group(q8, 2, nb, q, d, s, t, tb, acc); break;
            case 3: group(q8, 3, nb, q, d, s, t, tb, acc); break;
            default: group(q8, 4, nb, q, d, s, t, tb, acc); break;
            }
            for (int p = 0; p < P; p++) {
                float *c = C + (size_t)(m + p) * ldc + n;
                _mm512_storeu_ps(c, accumulate ? _mm512_add_ps(_mm512_loadu_ps(c), acc[p]) : acc[p]);
            }
        }
    }
}

TGT void mm_avx512vnni_qact_r16(int M, int N, int K, const q35_qact *A, int m0, const char *W, q35_wtype wt,
                                size_t ldw, float *C, size_t ldc, int acc)
{
    if (wt == WT_Q8_0_R16)
        body(1, M, N, K, A, m0, W, ldw, C, ldc, acc);
    else
        body(0, M, N, K, A, m0, W, ldw, C, ldc, acc);
}
