/* AVX-512F instance of the backward's small GEMM (grad_gemm.h): 6 x 64 register tile. */
#include "kernels/deltarule/grad_gemm.h"

#include <immintrin.h>
#define VW 16
#define MR 6
#define FN gg_gemm_avx512
#define GG_NAME(x) x##_avx512
#define FNSOLVE gg_solve_avx512
#define FNSOLVET gg_solve_t_avx512
#define ATTR __attribute__((target("avx512f")))
#define BCAST(p) ((vf)_mm512_set1_ps(*(p)))
#define GG_STREAM(p, x) _mm512_stream_ps((p), (__m512)(x))
#include "kernels/deltarule/grad_gemm_simd.inc"

/* dst = src^T by 16 x 16 blocks transposed in registers (64 shuffles a block,
 * against 96 for four of gg_transpose_avx2's 8 x 8 blocks); the strips past
 * the last whole block by gg_transpose_avx2. */
__attribute__((target("avx512f"))) void gg_transpose_avx512(int r, int c, const float *src, ptrdiff_t lds, float *dst,
                                                           ptrdiff_t ldd)
{
    const int r16 = r & ~15, c16 = c & ~15;
    for (int i0 = 0; i0 < r16; i0 += 16)
        for (int j0 = 0; j0 < c16; j0 += 16) {
            const float *s = src + i0 * lds + j0;
            __m512 a[16], t[16], u[16];
            for (int k = 0; k < 16; k++) a[k] = _mm512_loadu_ps(s + k * lds);
            for (int k = 0; k < 16; k += 2) { /* rows 2k, 2k+1 interleaved within each 128-bit lane */
                t[k] = _mm512_unpacklo_ps(a[k], a[k + 1]);
                t[k + 1] = _mm512_unpackhi_ps(a[k], a[k + 1]);
            }
            for (int g = 0; g < 16; g += 4) { /* u[g + c]: rows g..g+3 of columns c + 4 lane */
                u[g] = _mm512_shuffle_ps(t[g], t[g + 2], 0x44);
                u[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], 0xEE);
                u[g + 2] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0x44);
                u[g + 3] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
            }
            float *d = dst + j0 * ldd + i0;
            for (int k = 0; k < 4; k++) { /* output rows k, k + 4, k + 8, k + 12: lane L of u[k], u[4+k], u[8+k], u[12+k] */
                const __m512 v0 = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x88), v1 = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xDD),
                             v2 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x88),
                             v3 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xDD);
                _mm512_storeu_ps(d + k * ldd, _mm512_shuffle_f32x4(v0, v2, 0x88));
                _mm512_storeu_ps(d + (k + 8) * ldd, _mm512_shuffle_f32x4(v0, v2, 0xDD));
                _mm512_storeu_ps(d + (k + 4) * ldd, _mm512_shuffle_f32x4(v1, v3, 0x88));
                _mm512_storeu_ps(d + (k + 12) * ldd, _mm512_shuffle_f32x4(v1, v3, 0xDD));
            }
        }
    if (c16 < c) gg_transpose_avx2(r16, c - c16, src + c16, lds, dst + (ptrdiff_t)c16 * ldd, ldd); /* right strip */
    if (r16 < r) gg_transpose_avx2(r - r16, c, src + (ptrdiff_t)r16 * lds, lds, dst + r16, ldd);   /* bottom strip */
}
