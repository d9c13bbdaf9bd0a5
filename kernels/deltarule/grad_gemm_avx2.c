/* AVX2+FMA instance of the backward's small GEMM (grad_gemm.h): 3 x 32 register tile. */
#include "kernels/deltarule/grad_gemm.h"

#include <immintrin.h>
#define VW 8
#define MR 3
#define FN gg_gemm_avx2
#define GG_NAME(x) x##_avx2
#define FNSOLVE gg_solve_avx2
#define FNSOLVET gg_solve_t_avx2
#define ATTR __attribute__((target("avx2,fma")))
#define BCAST(p) ((vf)_mm256_broadcast_ss(p))
#define GG_STREAM(p, x) _mm256_stream_ps((p), (__m256)(x))
#include "kernels/deltarule/grad_gemm_simd.inc"

/* dst = src^T by 8 x 8 blocks transposed in registers; the edges in scalar code. */
__attribute__((target("avx2,fma"))) void gg_transpose_avx2(int r, int c, const float *src, ptrdiff_t lds, float *dst,
                                                          ptrdiff_t ldd)
{
    const int r8 = r & ~7, c8 = c & ~7;
    for (int i0 = 0; i0 < r8; i0 += 8)
        for (int j0 = 0; j0 < c8; j0 += 8) {
            const float *s = src + i0 * lds + j0;
            __m256 a0 = _mm256_loadu_ps(s), a1 = _mm256_loadu_ps(s + lds), a2 = _mm256_loadu_ps(s + 2 * lds),
                   a3 = _mm256_loadu_ps(s + 3 * lds), a4 = _mm256_loadu_ps(s + 4 * lds),
                   a5 = _mm256_loadu_ps(s + 5 * lds), a6 = _mm256_loadu_ps(s + 6 * lds),
                   a7 = _mm256_loadu_ps(s + 7 * lds);
            __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpackhi_ps(a0, a1), t2 = _mm256_unpacklo_ps(a2, a3),
                   t3 = _mm256_unpackhi_ps(a2, a3), t4 = _mm256_unpacklo_ps(a4, a5), t5 = _mm256_unpackhi_ps(a4, a5),
                   t6 = _mm256_unpacklo_ps(a6, a7), t7 = _mm256_unpackhi_ps(a6, a7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
                   u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
                   u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
                   u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *d = dst + j0 * ldd + i0;
            _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(d + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(d + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(d + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(d + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(d + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(d + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(d + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
    for (int i = 0; i < r; i++)
        for (int j = i < r8 ? c8 : 0; j < c; j++) dst[j * ldd + i] = src[i * lds + j];
}
