/* The backward's small GEMM (grad_gemm.h): the generic instance (4-float
 * vectors in GCC's vector extension, whatever the baseline ISA makes of
 * them), the run-time choice and the transpose. */
#include "kernels/deltarule/grad_gemm.h"

#include "kernels/cpu_features.h"

#define VW 4
#define MR 2
#define FN gg_gemm_generic
#define GG_NAME(x) x##_generic
#define FNSOLVE gg_solve_generic
#define FNSOLVET gg_solve_t_generic
#define ATTR
#define BCAST(p) ((vf){0} + *(p))
#define GG_STREAM(p, x) gg_st((p), (x))
#include "kernels/deltarule/grad_gemm_simd.inc"

void gg_stream_fence(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_sfence();
#endif
}

gg_gemm_fn gg_gemm_select(void)
{
    const cpu_isa_level isa = cpu_isa(); /* >=: levels above AVX512 take its path */
    if (isa >= ISA_AVX512) return gg_gemm_avx512;
    if (isa >= ISA_AVX2) return gg_gemm_avx2;
    return gg_gemm_generic;
}

#define GG_FNS(S, T)                                                                                               \
    (gg_fns)                                                                                                       \
    {                                                                                                              \
        gg_gemm_##S, gg_gemm_c0_##S, gg_solve_##S, gg_solve_t_##S, T, gg_dot_##S, gg_sumsq_##S, gg_scale_##S, gg_l2back_##S,      \
            gg_rhs_##S, gg_cb4_row_##S, gg_cb6_row_##S, gg_cb7_row_##S, gg_mask_row_##S, gg_decay_row_##S                          \
    }

gg_fns gg_select(void)
{
    const cpu_isa_level isa = cpu_isa();
    if (isa >= ISA_AVX512) return GG_FNS(avx512, gg_transpose_avx512);
    if (isa >= ISA_AVX2) return GG_FNS(avx2, gg_transpose_avx2);
    return GG_FNS(generic, gg_transpose);
}

void gg_transpose(int r, int c, const float *src, ptrdiff_t lds, float *dst, ptrdiff_t ldd)
{
    enum { BS = 16 }; /* blocks of 16 x 16: both sides stay in a few cache lines */
    for (int i0 = 0; i0 < r; i0 += BS)
        for (int j0 = 0; j0 < c; j0 += BS) {
            const int ie = i0 + BS < r ? i0 + BS : r, je = j0 + BS < c ? j0 + BS : c;
            for (int j = j0; j < je; j++)
                for (int i = i0; i < ie; i++) dst[j * ldd + i] = src[i * lds + j];
        }
}
