/* Activation quantization for the integer-dot path, eqs. A8q, A8s (kernels/quant/quant_act.h).
 * Every ISA's integer kernel must see the same q, d and s, so the AVX2 block (cpu_isa() >= avx2)
 * gives the plain C block's bits exactly (tests/test_int8dot.c compares them).  It is vectorized
 * because at decode (M = 1) one thread quantizes x while the other waits at the barrier: in plain
 * C this was 1.2% of a q4 decode step's samples, about 0.45 ms of 20 (docs/quantization.md §7). */
#include "kernels/quant/quant_act.h"
#include "kernels/cpu_features.h"
#include "kernels/hmax_avx2.h"

#include <float.h>
#include <immintrin.h>
#include <math.h>

/* AVX2 without FMA: this file is built with -ffp-contract=fast, and with FMA enabled GCC fuses the
 * intrinsics' x * id + magic into one vfmadd, whose single rounding is not the plain block's two */
#define TGT_AVX2 __attribute__((target("avx2")))

#define QB 32

size_t q35_qact_bytes(int M, int K)
{
    const size_t nb = (size_t)K / QB;
    /* floats and int32 first, so they are aligned whatever K is */
    return (size_t)M * nb * (sizeof(float) + sizeof(int32_t)) + (size_t)M * K;
}

void q35_qact_init(q35_qact *a, int M, int K, void *mem)
{
    const size_t nb = (size_t)K / QB;
    a->M = M;
    a->K = K;
    a->d = (float *)mem;
    a->s = (int32_t *)(a->d + (size_t)M * nb);
    a->q = (int8_t *)(a->s + (size_t)M * nb);
}

/* Round to nearest, ties to even, for |v| <= 127.5: adding and subtracting 1.5 * 2^23 leaves the
 * integer in the low mantissa bits (exact for |v| < 2^22), without a libm call in the loop. */
#define RNE_MAGIC 12582912.0f
static inline int rne(float v)
{
    return (int)((v + RNE_MAGIC) - RNE_MAGIC); /* two roundings, which -O2 keeps (no -ffast-math here) */
}

/* One block by the definition (eqs. A8q, A8s); returns s.  A block whose largest |x| is below
 * 127 / FLT_MAX (subnormal scale) would overflow 127 / amax in float, so it scales in double. */
static int block_scalar(const float *xb, int8_t *q, float *d)
{
    float amax = 0.0f;
    int bad = 0;
    for (int j = 0; j < QB; j++) {
        const float v = fabsf(xb[j]);
        bad |= !isfinite(v);
        amax = v > amax ? v : amax;
    }
    int sum = 0;
    if (bad || amax == 0.0f) {
        *d = bad ? NAN : 0.0f;
        for (int j = 0; j < QB; j++) q[j] = 0;
        return 0;
    }
    const float id = 127.0f / amax; /* |x_j id| <= 127 (+ one rounding: rne stays <= 127) */
    *d = amax / 127.0f;
    const int tiny = !isfinite(id);
    for (int j = 0; j < QB; j++) {
        int v = tiny ? (int)nearbyint((double)xb[j] * 127.0 / amax) : rne(xb[j] * id);
        v = v > 127 ? 127 : v < -127 ? -127 : v;
        q[j] = (int8_t)v;
        sum += v;
    }
    return sum;
}

/* The same block, 8 lanes at a time, bit for bit: max is exact, and the lanes run the same fp32
 * multiply and the same two roundings of rne() as block_scalar; any block it does not take (a
 * NaN or infinity, all zeros, a subnormal scale) goes to block_scalar. */
TGT_AVX2 static int block_avx2(const float *xb, int8_t *q, float *d)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8);
    const __m256 x2 = _mm256_loadu_ps(xb + 16), x3 = _mm256_loadu_ps(xb + 24);
    const __m256 a0 = _mm256_and_ps(x0, absmask), a1 = _mm256_and_ps(x1, absmask);
    const __m256 a2 = _mm256_and_ps(x2, absmask), a3 = _mm256_and_ps(x3, absmask);
    /* a NaN lane is lost by max_ps, so finiteness is checked on the lanes themselves */
    const __m256 big = _mm256_set1_ps(FLT_MAX);
    const __m256 fin = _mm256_and_ps(_mm256_and_ps(_mm256_cmp_ps(a0, big, _CMP_LE_OQ), _mm256_cmp_ps(a1, big, _CMP_LE_OQ)),
                                     _mm256_and_ps(_mm256_cmp_ps(a2, big, _CMP_LE_OQ), _mm256_cmp_ps(a3, big, _CMP_LE_OQ)));
    const float amax = q35_hmax256(_mm256_max_ps(_mm256_max_ps(a0, a1), _mm256_max_ps(a2, a3)));
    const float id = 127.0f / amax;
    if (_mm256_movemask_ps(fin) != 0xff || amax == 0.0f || !isfinite(id)) return block_scalar(xb, q, d);
    *d = amax / 127.0f;
    const __m256 vid = _mm256_set1_ps(id), magic = _mm256_set1_ps(RNE_MAGIC);
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
#define Q8(x) _mm256_min_epi32(hi, _mm256_max_epi32(lo, _mm256_cvttps_epi32(_mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(x, vid), magic), magic))))
    const __m256i i0 = Q8(x0), i1 = Q8(x1), i2 = Q8(x2), i3 = Q8(x3);
#undef Q8
    /* packs work per 128-bit lane: the bytes come out as 0-3 8-11 16-19 24-27 | 4-7 12-15 20-23 28-31
     * in groups of 4, put back in order by one dword permute */
    const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    _mm256_storeu_si256((__m256i *)q, _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
    return _mm_cvtsi128_si32(t);
}

void q35_qact_quantize_rows(q35_qact *a, const float *A, int lda, int m0, int m1)
{
    const int nb = a->K / QB;
    int (*block)(const float *, int8_t *, float *) = cpu_isa() >= ISA_AVX2 ? block_avx2 : block_scalar;
    for (int m = m0; m < m1; m++) {
        const float *x = A + (size_t)m * lda;
        int8_t *q = a->q + (size_t)m * a->K;
        float *d = a->d + (size_t)m * nb;
        int32_t *s = a->s + (size_t)m * nb;
        for (int b = 0; b < nb; b++) s[b] = block(x + QB * b, q + QB * b, d + b);
    }
}
