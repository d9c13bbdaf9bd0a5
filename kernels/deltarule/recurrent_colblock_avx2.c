/* AVX2+FMA instance of the recurrent column-block kernel: 32 columns. */
#include "kernels/deltarule/recurrent_colblock.h"

#include <immintrin.h>
#include <math.h>
#define VW 8
#define FN dr_colblock_avx2
#define FNFUSED dr_colblock_token_avx2
#define TARGET "avx2,fma"
#define BCAST(p) ((vf)_mm256_broadcast_ss(p))
#include "kernels/deltarule/recurrent_colblock_simd.inc"
#define FNP dr_colpair_avx2
#include "kernels/deltarule/recurrent_colpair_simd.inc"
#define FNDOTS dr_token_dots_avx2
#include "kernels/deltarule/recurrent_scalars.inc"
