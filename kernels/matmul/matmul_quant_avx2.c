/* AVX2 + FMA instance of the quantized-W kernels (matmul_quant_simd.inc): 8 lanes, P = 2 rows
 * of A x R = 4 rows of W, each 32-weight block widened to four ymm of exact fp32 (vpmovsxbd of
 * 8 int8 + vcvtdq2ps, times the scale).  Called only when cpu_isa() >= ISA_AVX2 and K % 32 == 0. */
#include "kernels/matmul/matmul_internal.h"

#include <immintrin.h>

#define TGT __attribute__((target("avx2,fma")))
#define INL static inline __attribute__((always_inline)) TGT
#define QNAME(x) mm_avx2_##x
#define VW 8
typedef __m256 vf;
#define QR 4
#define V_ZERO() _mm256_setzero_ps()
#define V_LOADU(p) _mm256_loadu_ps(p)
#define V_STOREU(p, v) _mm256_storeu_ps(p, v)
#define V_FMADD(a, b, c) _mm256_fmadd_ps(a, b, c)
#define V_HSUM(v) hsum(v)

/* The block scale, fp16 -> fp32 (exact) in every lane: the bits moved into place, times 2^112. */
INL __m256 scale16(uint16_t h)
{
    const uint32_t u = ((uint32_t)(h & 0x8000u) << 16) | ((uint32_t)(h & 0x7FFFu) << 13);
    return _mm256_mul_ps(_mm256_castsi256_ps(_mm256_set1_epi32((int)u)), _mm256_set1_ps(0x1p112f));
}

INL __m256 widen8(__m128i q8, __m256 d) /* the low 8 int8 of q8, times d */
{
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8)), d);
}

INL void widen16(__m128i x, __m256 d, __m256 w[2])
{
    w[0] = widen8(x, d);
    w[1] = widen8(_mm_srli_si128(x, 8), d);
}

INL void widen16_at(const int8_t *q, __m256 d, __m256 w[2])
{
    w[0] = widen8(_mm_loadl_epi64((const __m128i *)q), d);
    w[1] = widen8(_mm_loadl_epi64((const __m128i *)(q + 8)), d);
}

INL float hsum(__m256 v)
{
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

#include "kernels/matmul/matmul_quant_simd.inc"
