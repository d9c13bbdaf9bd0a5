/* AVX-512F instance of the flash attention block kernel (16 lanes).  AVX512F
 * alone (no BW/VL/DQ instruction): every AVX-512 CPU runs it.  Called only
 * when cpu_isa() >= ISA_AVX512. */
#include "kernels/attention/attention_flash_internal.h"
#include "kernels/exp_avx2.h"

#include <immintrin.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define VW 16
#define TARGET "avx512f,avx2,fma"
#define FN attention_flash_block_avx512
typedef __m512 vec;

/* The first n lanes (n <= 0: none, n >= 16: all). */
__attribute__((target(TARGET), always_inline)) static inline __mmask16 lanes(int n)
{
    return n <= 0 ? (__mmask16)0 : n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
}
/* Sum of the two 8-lane halves (AVX512F only: extractf64x4, not DQ's extractf32x8). */
__attribute__((target(TARGET), always_inline)) static inline __m256 fold8(__m512 v)
{
    return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}
/* expf as the AVX2 path, on each half: the same operations, so the same bits. */
__attribute__((target(TARGET), always_inline)) static inline __m512 exp512(__m512 x)
{
    const __m256 lo = q35_exp256(_mm512_castps512_ps256(x));
    const __m256 hi = q35_exp256(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1));
}

#define V_ZERO() _mm512_setzero_ps()
#define V_SET1(x) _mm512_set1_ps(x)
#define V_BCAST(p) _mm512_set1_ps(*(p))
#define V_LD(p) _mm512_loadu_ps(p)
#define V_ST(p, x) _mm512_storeu_ps((p), (x))
#define V_LDN_OR(p, n, fill) _mm512_mask_loadu_ps((fill), lanes(n), (p)) /* masked lanes are not read */
#define V_KEEPN(x, n) _mm512_maskz_mov_ps(lanes(n), (x))
#define V_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define V_ADD(a, b) _mm512_add_ps((a), (b))
#define V_SUB(a, b) _mm512_sub_ps((a), (b))
#define V_MAX(a, b) _mm512_max_ps((a), (b))
#define V_EXP(x) exp512(x)
#define V_HMAX(x) _mm512_reduce_max_ps(x)
#define V_HSUM(x) _mm512_reduce_add_ps(x)
#define V_TO8(x) fold8(x)

#include "kernels/attention/attention_flash_simd.inc"
