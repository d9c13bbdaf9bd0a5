/* AVX2+FMA instance of the recurrent column-block kernel: 32 columns. */
#include "recurrent_colblock.h"
#include <math.h>
#define VW 8
#define FN dr_colblock_avx2
#define TARGET "avx2,fma"
#include "recurrent_colblock_simd.inc"
