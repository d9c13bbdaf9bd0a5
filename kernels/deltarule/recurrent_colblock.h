/* One column block of one head's state, carried across a run of tokens.
 *
 * The recurrence is separable over the Dv columns of the state (docs/
 * deltarule.md eq. (3)): a block of W columns (Dk x W floats, 16 KiB for
 * Dk = 128, W = 32) stays in L1 while the keys stream past, and each token
 * costs one pass over it.  The l2 norms of q and k are folded into per-token
 * scalars (qscale, kscale) so the inner loop reads raw q and k rows.
 */
#ifndef Q35_RECURRENT_COLBLOCK_H
#define Q35_RECURRENT_COLBLOCK_H

#include <stddef.h>

typedef struct {
    int Dk, ncols, ntok;          /* rows of state, columns in this block, tokens */
    const float *q, *k;           /* raw rows of token 0; next token at +qk_stride */
    ptrdiff_t qk_stride;
    const float *v;               /* value row of token 0 at this block's first column */
    float *o;                     /* output row of token 0, same column offset */
    ptrdiff_t vo_stride;          /* v and out: floats between tokens */
    const float *eg, *beta;       /* per token, contiguous: exp(g_t), beta_t */
    const float *qscale, *kscale; /* per token, contiguous: scale/||q||, 1/||k|| (eq. 1) */
    const float *kq, *kk, *kq1;   /* per token, raw dots k_t.q_t, k_t.k_{t+1}, k_t.q_{t+1}:
                                     two-token sweeps only (eq. 3c) */
    const float *src;             /* state before token 0 (row stride src_ld) */
    float *dst;                   /* state after each token (row stride dst_ld); may be src */
    ptrdiff_t src_ld, dst_ld;
    int rows_cold;                /* first block over these tokens: prefetch their q/k rows */
    /* Checkpoints (deltarule.h): NULL, or per token where the true state
     * after it goes (NULL: nowhere), already at this block's first column,
     * rows ckpt_ld floats apart.  Written as a side store, so the sweep's own
     * arithmetic (scaled state, token pairs) is the same as without them and
     * out and the final state stay bitwise equal (docs/deltarule.md §"Checkpoints"). */
    float *const *ckpt;
    ptrdiff_t ckpt_ld;
} dr_colblock;

/* Any ncols; plain C (the compiler may auto-vectorize at the baseline ISA). */
void dr_colblock_generic(const dr_colblock *c);
/* ncols must equal the variant's block width (DR_COLBLOCK_W_AVX2 / _AVX512). */
void dr_colblock_avx2(const dr_colblock *c);
void dr_colblock_avx512(const dr_colblock *c);

/* One token (ntok = 1), nblk adjacent blocks of the variant's width from c's
 * columns on, the next block's u~ pass fused into this one's update pass. */
void dr_colblock_token_avx2(const dr_colblock *c, int nblk);
void dr_colblock_token_avx512(const dr_colblock *c, int nblk);

/* Two tokens per sweep (eq. 3c), any ntok >= 1; ncols must equal
 * DR_COLPAIR_W_AVX2 / _AVX512; kq, kk, kq1 must be set. */
void dr_colpair_avx2(const dr_colblock *c);
void dr_colpair_avx512(const dr_colblock *c);

/* Per-token sums for eq. (1) and (3c): sq_sk = (q.q, k.k) in double; with
 * qn != NULL, dots = (k.q, k.kn, k.qn) in fp32.  qn, kn: the next token's
 * rows (any rows when there is none: the caller drops those dots). */
typedef void (*dr_token_dots_fn)(const float *q, const float *k, const float *qn, const float *kn, int Dk,
                                 double *sq_sk, float *dots);
void dr_token_dots_generic(const float *q, const float *k, const float *qn, const float *kn, int Dk, double *sq_sk,
                           float *dots);
void dr_token_dots_avx2(const float *q, const float *k, const float *qn, const float *kn, int Dk, double *sq_sk,
                        float *dots);
void dr_token_dots_avx512(const float *q, const float *k, const float *qn, const float *kn, int Dk, double *sq_sk,
                          float *dots);

#define DR_COLBLOCK_W_GENERIC 32
#define DR_COLBLOCK_W_AVX2 32
#define DR_COLBLOCK_W_AVX512 64
#define DR_COLPAIR_W_AVX2 16
#define DR_COLPAIR_W_AVX512 32

#endif
