/* The chunkwise (WY/UT) form of the gated delta rule, shared by `chunked`
 * and `neumann`: they differ only in how they apply (I + A)^{-1}.
 * Equations: docs/deltarule.md (4)-(10).
 */
#ifndef Q35_CHUNK_ENGINE_H
#define Q35_CHUNK_ENGINE_H

#include "kernels/deltarule/deltarule.h"

/* One thread's buffers for one chunk.  Matrices are row-major with leading
 * dimension C (chunk) or Dk/Dv (rows of keys/values). */
typedef struct {
    int C, L, Dk, Dv;   /* max chunk, current chunk length, head dims */
    float *KQ;          /* [2C x Dk]: rows [0,L) normalized keys, [L,2L) scaled queries */
    float *KS;          /* [2C x Dv]: K S0 and Q S0 */
    float *V;           /* [C x Dv] */
    float *R;           /* [C x Dv] right-hand side, then Delta (eq. 5, 7) */
    float *A;           /* [C x C] strictly lower A (eq. 6); zero on and above the diagonal */
    float *P;           /* [C x C] M o (Q K^T), lower incl. diagonal (eq. 8) */
    float *E;           /* [C x C] exp(gamma_i - gamma_j), valid for j <= i only */
    float *Tinv;        /* [C x C] explicit (I + A)^{-1} for the solvers that form it */
    float *work, *work2; /* [C x C] solver scratch */
    float *Kd;          /* [C x Dk] keys decayed to the chunk end (eq. 9) */
    float *S;           /* [Dk x Dv] the running state */
    float *beta;        /* [C] */
    double *gamma;      /* [C] chunk-local cumulative log-decay (eq. 4) */
} dr_chunk_ws;

/* Replaces ws->R (L x Dv) by (I + A)^{-1} R, A = ws->A. */
typedef void (*dr_chunk_solver)(dr_chunk_ws *ws, const deltarule_opts *o);

/* Runs the whole problem chunk by chunk, heads in parallel. */
int dr_chunk_run(const deltarule_problem *p, const deltarule_opts *o, dr_chunk_solver solve);

/* Shared by the blocked solvers (eq. 12): given the inverses of the diagonal
 * blocks of (I + A) already in ws->Tinv (everything else zero), fills in the
 * off-diagonal blocks: T_IJ = -T_II * sum_{J<=K<I} A_IK T_KJ. */
#define DR_SOLVER_BLOCK 16
void dr_merge_block_inverses(dr_chunk_ws *ws);

/* R <- T R with T = ws->Tinv unit lower triangular. */
void dr_apply_inverse(dr_chunk_ws *ws);

#endif
