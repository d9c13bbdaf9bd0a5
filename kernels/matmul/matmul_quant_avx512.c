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

#include "kernels/matmul/matmul_quant_simd.inc"
