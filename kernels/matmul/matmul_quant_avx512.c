/* AVX-512 instance of the quantized-W kernels (matmul_quant_simd.inc): 16 lanes, AVX512F alone,
 * P = 2 rows of A x R = 8 rows of W, each 32-weight block widened to two zmm of exact fp32
 * (vpmovsxbd of 16 int8 + vcvtdq2ps, times the scale).  Called only when cpu_isa() >= ISA_AVX512
 * and K % 32 == 0. */
#include "kernels/matmul/matmul_internal.h"

#include <immintrin.h>

#define TGT __attribute__((target("avx512f,avx2,fma")))
#define INL static inline __attribute__((always_inline)) TGT
#define QNAME(x) mm_avx512_##x
#define VW 16
typedef __m512 vf;
#define QR 8
#define V_ZERO() _mm512_setzero_ps()
#define V_LOADU(p) _mm512_loadu_ps(p)
#define V_STOREU(p, v) _mm512_storeu_ps(p, v)
#define V_FMADD(a, b, c) _mm512_fmadd_ps(a, b, c)
#define V_HSUM(v) _mm512_reduce_add_ps(v)

/* The block scale, fp16 -> fp32 (exact) in every lane: vcvtph2ps, which AVX512F has in its zmm form
 * (2 uops; the scalar integer conversion cost ~6 per block and row and made the M = 1 kernel
 * compute-bound). */
INL __m512 scale16(uint16_t h) { return _mm512_cvtph_ps(_mm256_set1_epi16((short)h)); }

INL void widen16(__m128i x, __m512 d, __m512 w[1])
{
    w[0] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(x)), d);
}

INL void widen16_at(const int8_t *q, __m512 d, __m512 w[1]) { widen16(_mm_loadu_si128((const __m128i *)q), d, w); }

/* Q4_0 by table: the 16 levels d (n - 8) formed once per block (exact: an 11-bit scale times a
 * 4-bit integer), then each weight picked by vpermps, which reads only bits 0-3 of each index:
 * the zero-extended bytes select the low nibbles (elements 0-15) as they are, shifted right by 4
 * the high ones (16-31).  About 8 uops per block against 13 for the AND / shift / subtract /
 * sign-extend / convert / multiply chain, which made q4 decode compute-bound (docs/quantization.md
 * "Exact path"). */
INL void q4_widen_table(const uint8_t *qs, __m512 d, __m512 w[2])
{
    const __m512 levels = _mm512_mul_ps(d, _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7));
    const __m512i n = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)qs));
    w[0] = _mm512_permutexvar_ps(n, levels);
    w[1] = _mm512_permutexvar_ps(_mm512_srli_epi32(n, 4), levels);
}
#define Q4_WIDEN q4_widen_table

#include "kernels/matmul/matmul_quant_simd.inc"
