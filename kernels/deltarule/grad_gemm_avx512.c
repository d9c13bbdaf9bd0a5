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
#include "kernels/deltarule/grad_gemm_simd.inc"
