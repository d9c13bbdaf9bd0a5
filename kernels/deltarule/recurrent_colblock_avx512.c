/* AVX-512F instance of the recurrent column-block kernel: 64 columns. */
#include "kernels/deltarule/recurrent_colblock.h"

#include <immintrin.h>
#include <math.h>
#define VW 16
#define FN dr_colblock_avx512
#define FNFUSED dr_colblock_token_avx512
#define TARGET "avx512f"
#define BCAST(p) ((vf)_mm512_set1_ps(*(p)))
#include "kernels/deltarule/recurrent_colblock_simd.inc"
#define FNP dr_colpair_avx512
#include "kernels/deltarule/recurrent_colpair_simd.inc"
#define FNDOTS dr_token_dots_avx512
#include "kernels/deltarule/recurrent_scalars.inc"
