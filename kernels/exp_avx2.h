/* exp_avx2.h - expf and the sigmoid on 8 floats for the AVX2 kernels (conv's SiLU, attention's
 * softmax, kernels/activation.h).
 *
 * Cephes' expf: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two for an
 * exact reduction), a degree-6 polynomial for e^r, 2^n through the exponent
 * bits; about 1 ulp.  The argument is clamped to [-87, 87] so 2^n stays a
 * normal float: below -87 the true value (< 1.7e-38) is negligible wherever
 * it is used here, above 87 the callers never go.  NaN propagates.
 * Include only from files that compile their AVX2 paths with target
 * attributes (kernels/cpu_features.h picks the path at run time).
 */
#ifndef Q35_EXP_AVX2_H
#define Q35_EXP_AVX2_H

#include <immintrin.h>

__attribute__((target("avx2,fma"), always_inline)) static inline __m256 q35_exp256(__m256 x)
{
    x = _mm256_min_ps(_mm256_set1_ps(87.0f), _mm256_max_ps(_mm256_set1_ps(-87.0f), x));
    const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* 1 / (1 + e^{-a}) by a reciprocal estimate and one Newton step (the denominator is >= 1 and
 * finite by the clamp above): ~1 ulp, and far cheaper than vdivps.  The SiLU is a times this. */
__attribute__((target("avx2,fma"), always_inline)) static inline __m256 q35_sigmoid256(__m256 a)
{
    const __m256 d = _mm256_add_ps(_mm256_set1_ps(1.0f), q35_exp256(_mm256_sub_ps(_mm256_setzero_ps(), a)));
    const __m256 r = _mm256_rcp_ps(d);
    return _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, _mm256_set1_ps(2.0f)));
}

#endif
