/* AVX-512F instance of the recurrent column-block kernel: 64 columns. */
#include "recurrent_colblock.h"
#include <math.h>
#define VW 16
#define FN dr_colblock_avx512
#define TARGET "avx512f"
#include "recurrent_colblock_simd.inc"
