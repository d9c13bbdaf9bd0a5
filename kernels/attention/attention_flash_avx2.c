/* AVX2 + FMA instance of the flash attention block kernel (8 lanes). */
#include "kernels/attention/attention_flash_internal.h"
#include "kernels/exp_avx2.h"
#include "kernels/hmax_avx2.h"

#include <immintrin.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define VW 8
#define TARGET "avx2,fma"
#define FN attention_flash_block_avx2
typedef __m256 vec;

/* The first n lanes (n <= 0: none, n >= 8: all) set. */
__attribute__((target(TARGET), always_inline)) static inline __m256i lanes(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
__attribute__((target(TARGET), always_inline)) static inline float hsum(__m256 v)
{
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

#define V_ZERO() _mm256_setzero_ps()
#define V_SET1(x) _mm256_set1_ps(x)
#define V_BCAST(p) _mm256_broadcast_ss(p)
#define V_LD(p) _mm256_loadu_ps(p)
#define V_ST(p, x) _mm256_storeu_ps((p), (x))
/* lanes < n from p, the others `fill` (masked lanes are not read) */
#define V_LDN_OR(p, n, fill) _mm256_blendv_ps((fill), _mm256_maskload_ps((p), lanes(n)), _mm256_castsi256_ps(lanes(n)))
#define V_KEEPN(x, n) _mm256_and_ps((x), _mm256_castsi256_ps(lanes(n))) /* lanes >= n: 0 */
#define V_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define V_ADD(a, b) _mm256_add_ps((a), (b))
#define V_SUB(a, b) _mm256_sub_ps((a), (b))
#define V_MAX(a, b) _mm256_max_ps((a), (b))
#define V_EXP(x) q35_exp256(x)
#define V_HMAX(x) q35_hmax256(x)
#define V_HSUM(x) hsum(x)
#define V_TO8(x) (x) /* the 8-lane partial sums of a dot product */

#include "kernels/attention/attention_flash_simd.inc"
