/* What attention_flash.c (driver, generic C) shares with its SIMD block
 * kernels, attention_flash_avx2.c and attention_flash_avx512.c (one source,
 * attention_flash_simd.inc, compiled at two widths). */
#ifndef Q35_ATTENTION_FLASH_INTERNAL_H
#define Q35_ATTENTION_FLASH_INTERNAL_H

#define KB 64       /* keys per block: a block of K (64 x D floats) stays in L2; a multiple of 16 */
#define DP_ALIGN 16 /* accumulator rows Dp = D rounded up to this: whole vectors at either width */

/* Per-thread scratch of one task: rows of the running state (eq. 3). */
typedef struct {
    float *acc;          /* [rows][Dp] accumulators a */
    float *qbuf;         /* [rows][Dp] the query rows, 64-byte aligned (SIMD paths) */
    float *kbuf, *vbuf;  /* [KB][Dp] a key / value block, 64-byte aligned, when the cache's rows are not */
    float *S;            /* [rows][KB] scores, then probabilities P */
    float *m, *l, *alpha;/* [rows] running max, denominator, this block's rescale */
    float *tmp;          /* [Dp] one row's block sum (generic path) */
    const float **q;     /* [rows] query row pointers */
    int *lim;            /* [rows] last key position the row may see (its own position) */
} scratch;

/* One key block [j0, j0+nk) for nr rows (attention_flash.c steps 1-3).  K and
 * V point at key j0 of the KV head. */
typedef void (*block_fn)(scratch *w, int nr, const float *K, const float *V, int j0, int nk, int D, int Dp,
                         float scale);

void attention_flash_block_avx2(scratch *w, int nr, const float *K, const float *V, int j0, int nk, int D, int Dp,
                                float scale);
void attention_flash_block_avx512(scratch *w, int nr, const float *K, const float *V, int j0, int nk, int D,
                                  int Dp, float scale);

#endif
