/* hmax_avx2.h - the largest of 8 floats, for the AVX2 paths that reduce a vector of maxima
 * (attention's softmax, the greedy pick, the activation blocks' scale).  Target "avx2" alone, so
 * it inlines into "avx2" and "avx2,fma" functions alike.  max is exact: the order of the lanes
 * changes nothing but which NaN comes out (vmaxps returns its second operand when either is NaN),
 * and every caller checks NaN on its own.  Include only from files that compile their AVX2 paths
 * with target attributes (kernels/cpu_features.h picks the path at run time). */
#ifndef Q35_HMAX_AVX2_H
#define Q35_HMAX_AVX2_H

#include <immintrin.h>

__attribute__((target("avx2"), always_inline)) static inline float q35_hmax256(__m256 v)
{
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

#endif
