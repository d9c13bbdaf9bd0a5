/* Chunkwise gated delta rule: the part `chunked` and `neumann` share.
 *
 * Per (sequence, value head), chunks of C tokens in order; per chunk
 * (docs/deltarule.md):
 *   gamma   chunk-local cumulative log-decay                       eq. (4)
 *   A       beta_i exp(gamma_i - gamma_j) k_i.k_j, j < i           eq. (6)
 *   R       beta (V - exp(gamma) K S0)                             eq. (5)
 *   Delta   (I + A)^{-1} R            -- the solver's job          eq. (7)
 *   O       exp(gamma) Q S0 + (M o Q K^T) Delta                    eq. (8)
 *   S       exp(gamma_L) S0 + K^T diag(exp(gamma_L - gamma_j)) Delta eq. (9)
 *   checkpoints: chunks end at them (DR_CKPT_SPLIT) or eq. (9) truncated
 *           to a checkpoint's row (DR_CKPT_FROM_DELTA)          eq. (9c)
 * Only differences gamma_i - gamma_j with i >= j are exponentiated and
 * entries above the diagonal are assigned, never multiplied by a mask
 * (eq. 10).  GEMMs go to OpenBLAS, single-threaded: parallelism is over heads.
 */
#include "kernels/deltarule/chunk_engine.h"
#include "kernels/fp_flush.h"

#include "common/sde_counters.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static void ws_free(dr_chunk_ws *w)
{
    free(w->KQ); free(w->KS); free(w->V); free(w->R); free(w->A); free(w->P);
    free(w->E); free(w->Tinv); free(w->work); free(w->work2); free(w->Kd); free(w->S);
    free(w->beta); free(w->gamma);
}

static int ws_alloc(dr_chunk_ws *w, int C, int Dk, int Dv)
{
    memset(w, 0, sizeof *w);
    w->C = C; w->Dk = Dk; w->Dv = Dv;
    const size_t cc = (size_t)C * C;
    w->KQ = malloc(sizeof(float) * 2 * C * (size_t)Dk);
    w->KS = malloc(sizeof(float) * 2 * C * (size_t)Dv);
    w->V = malloc(sizeof(float) * C * (size_t)Dv);
    w->R = malloc(sizeof(float) * C * (size_t)Dv);
    w->A = malloc(sizeof(float) * cc);
    w->P = malloc(sizeof(float) * cc);
    w->E = malloc(sizeof(float) * cc);
    w->Tinv = malloc(sizeof(float) * cc);
    w->work = malloc(sizeof(float) * cc);
    w->work2 = malloc(sizeof(float) * cc);
    w->Kd = malloc(sizeof(float) * C * (size_t)Dk);
    w->S = malloc(sizeof(float) * (size_t)Dk * Dv);
    w->beta = malloc(sizeof(float) * C);
    w->gamma = malloc(sizeof(double) * C);
    if (w->KQ && w->KS && w->V && w->R && w->A && w->P && w->E && w->Tinv && w->work && w->work2 &&
        w->Kd && w->S && w->beta && w->gamma)
        return 0;
    ws_free(w);
    return -1;
}

/* eq. (1) in double, stored in fp32. */
static void normalize_row(const float *x, float *y, int n, int l2, float scale)
{
    double ss = 0.0;
    if (l2)
        for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const float f = (float)(l2 ? scale / sqrt(ss + 1e-6) : scale);
    for (int i = 0; i < n; i++) y[i] = x[i] * f;
}

/* Gathers the chunk's tokens [t0, t0+L) of head (b, h) into the workspace. */
static void gather(dr_chunk_ws *w, const deltarule_problem *p, int b, int h, int t0)
{
    const int L = w->L, Dk = p->Dk, Dv = p->Dv, Hk = p->Hk, Hv = p->Hv, hk = h / (Hv / Hk);
    const float scale = deltarule_scale(p);
    double gam = 0.0;
    for (int i = 0; i < L; i++) {
        const size_t tok = (size_t)b * p->T + t0 + i;
        normalize_row(p->k + (tok * Hk + hk) * Dk, w->KQ + (size_t)i * Dk, Dk, p->use_qk_l2norm, 1.0f);
        normalize_row(p->q + (tok * Hk + hk) * Dk, w->KQ + (size_t)(L + i) * Dk, Dk, p->use_qk_l2norm, scale);
        memcpy(w->V + (size_t)i * Dv, p->v + (tok * Hv + h) * Dv, sizeof(float) * Dv);
        w->beta[i] = p->beta[tok * Hv + h];
        gam += p->g[tok * Hv + h]; /* eq. (4): restarts every chunk */
        w->gamma[i] = gam;
    }
}

/* E_ij = exp(gamma_i - gamma_j) for j <= i (eq. 10: a difference <= 0). */
static void decay_matrix(dr_chunk_ws *w)
{
    const int L = w->L, C = w->C;
    for (int i = 0; i < L; i++)
        for (int j = 0; j <= i; j++) w->E[(size_t)i * C + j] = expf((float)(w->gamma[i] - w->gamma[j]));
}

/* A (eq. 6) from K K^T and P (eq. 8) from Q K^T, entries above the
 * diagonal assigned zero by a select. */
static void build_A_and_P(dr_chunk_ws *w)
{
    const int L = w->L, C = w->C, Dk = w->Dk;
    const float *K = w->KQ, *Q = w->KQ + (size_t)L * Dk;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, Dk, 1.0f, K, Dk, K, Dk, 0.0f, w->A, C);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, Dk, 1.0f, Q, Dk, K, Dk, 0.0f, w->P, C);
    for (int i = 0; i < L; i++) {
        float *a = w->A + (size_t)i * C, *pp = w->P + (size_t)i * C;
        const float *e = w->E + (size_t)i * C;
        for (int j = 0; j < L; j++) {
            a[j] = j < i ? w->beta[i] * e[j] * a[j] : 0.0f;
            pp[j] = j <= i ? e[j] * pp[j] : 0.0f;
        }
    }
}

/* What DR_CKPT_DEFAULT means for the chunked forms: the cheaper mode for
 * the problem's density of checkpoints, as measured on the qwen3.5-0.8b head
 * shape (Hk = Hv = 16, Dk = Dv = 128), B = 1, 2 threads, on a quiet machine
 * (results/deltarule_checkpoints.txt, its first lines the commands;
 * docs/deltarule.md "Checkpoints").  Chunked, us per token, median:
 *   T = 3, 5, 9 with a checkpoint after every token but the last: from-delta
 *   77.6, 72.0, 75.2 against split 83.0, 76.0, 77.6 (T = 2: 76.8 and 75.7,
 *   within noise), since split makes a T-token window T one-token chunks;
 *   T = 64 and 512 with 4 checkpoints: split 19.6 and 18.8 against
 *   from-delta 24.1 and 19.9 (without checkpoints 18.8 and 18.6): a few
 *   extra chunk ends cost less than the rank-i updates inside long chunks.
 * So: split when checkpoints are 16 or more tokens apart on average. */
static int ckpt_split_by_default(const deltarule_problem *p)
{
    return p->n_checkpoints > 0 && p->T >= 16 * p->n_checkpoints;
}

/* Checkpoints inside a chunk, rows [0, L-1) (DR_CKPT_FROM_DELTA), from the
 * chunk's start state w->S and its solved rows Delta = w->R: eq. (9)
 * truncated to the first i+1 rows (docs/deltarule.md eq. (9c)),
 *   S_i = exp(gamma_i) S0 + sum_{j<=i} exp(gamma_i - gamma_j) k_j Delta_j^T,
 * each one from the one before it in the chunk (or S0), so the checkpoints
 * of a chunk cost one rank-(i+1) update in all, not a replay of the
 * recurrence.  The row L-1 is the chunk-end state (copied by the caller).
 * *ck: the next checkpoint of the problem; t0: the chunk's first token. */
static void checkpoints_from_delta(dr_chunk_ws *w, const deltarule_problem *p, int b, int h, int t0, int *ck)
{
    const int L = w->L, Dk = w->Dk, Dv = w->Dv;
    const size_t n = (size_t)Dk * Dv;
    const float *prev = w->S;
    int i1 = -1; /* the row prev is the state after (-1: the chunk's start) */
    for (; *ck < p->n_checkpoints && p->checkpoint_t[*ck] < t0 + L - 1; (*ck)++) {
        const int i2 = p->checkpoint_t[*ck] - t0;
        float *dst = deltarule_checkpoint_state(p, *ck, b, h);
        const float f = expf((float)(w->gamma[i2] - (i1 < 0 ? 0.0 : w->gamma[i1])));
        if (i2 - i1 == 1) { /* one row: S = f prev + k Delta^T, one pass (verify windows) */
            const float *k = w->KQ + (size_t)i2 * Dk, *d = w->R + (size_t)i2 * Dv;
            for (int r = 0; r < Dk; r++) {
                const float kr = k[r];
                const float *pr = prev + (size_t)r * Dv;
                float *dr = dst + (size_t)r * Dv;
                for (int j = 0; j < Dv; j++) dr[j] = f * pr[j] + kr * d[j];
            }
        } else {
            for (int i = i1 + 1; i <= i2; i++) { /* keys decayed to row i2, as eq. (9) to row L-1 */
                const float d = expf((float)(w->gamma[i2] - w->gamma[i]));
                const float *k = w->KQ + (size_t)i * Dk;
                float *kd = w->Kd + (size_t)i * Dk;
                for (int j = 0; j < Dk; j++) kd[j] = d * k[j];
            }
            for (size_t i = 0; i < n; i++) dst[i] = f * prev[i];
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Dk, Dv, i2 - i1, 1.0f, w->Kd + (size_t)(i1 + 1) * Dk,
                        Dk, w->R + (size_t)(i1 + 1) * Dv, Dv, 1.0f, dst, Dv);
        }
        prev = dst;
        i1 = i2;
    }
}

/* One chunk: eqs. (5), (7), (8), (9).  Writes L rows of out at stride ldo,
 * and the checkpoints that fall in the chunk (the chunk's first token t0;
 * *ck the next checkpoint). */
static void chunk_step(dr_chunk_ws *w, const deltarule_opts *o, dr_chunk_solver solve,
                       float *out, int ldo, const deltarule_problem *p, int b, int h, int t0, int *ck)
{
    const int L = w->L, C = w->C, Dk = w->Dk, Dv = w->Dv;
    decay_matrix(w);
    build_A_and_P(w);
    /* [K; Q] S0 in one GEMM */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2 * L, Dv, Dk, 1.0f, w->KQ, Dk, w->S, Dv,
                0.0f, w->KS, Dv);
    for (int i = 0; i < L; i++) { /* eq. (5) right-hand side */
        const float eg = expf((float)w->gamma[i]), bi = w->beta[i];
        const float *ks = w->KS + (size_t)i * Dv, *v = w->V + (size_t)i * Dv;
        float *r = w->R + (size_t)i * Dv;
        for (int j = 0; j < Dv; j++) r[j] = bi * (v[j] - eg * ks[j]);
    }
    solve(w, o); /* R <- Delta */
    for (int i = 0; i < L; i++) { /* eq. (8): inter-chunk part, then += P Delta */
        const float eg = expf((float)w->gamma[i]);
        const float *qs = w->KS + (size_t)(L + i) * Dv;
        float *oi = out + (size_t)i * ldo;
        for (int j = 0; j < Dv; j++) oi[j] = eg * qs[j];
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, Dv, L, 1.0f, w->P, C, w->R, Dv, 1.0f,
                out, ldo);
    if (*ck < p->n_checkpoints && p->checkpoint_t[*ck] < t0 + L - 1) /* only DR_CKPT_FROM_DELTA has them */
        checkpoints_from_delta(w, p, b, h, t0, ck);
    /* eq. (9): S <- exp(gamma_L) S + Kd^T Delta */
    const double gL = w->gamma[L - 1];
    for (int i = 0; i < L; i++) {
        const float d = expf((float)(gL - w->gamma[i]));
        const float *k = w->KQ + (size_t)i * Dk;
        float *kd = w->Kd + (size_t)i * Dk;
        for (int j = 0; j < Dk; j++) kd[j] = d * k[j];
    }
    const float egL = expf((float)gL);
    for (size_t i = 0; i < (size_t)Dk * Dv; i++) w->S[i] *= egL;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Dk, Dv, L, 1.0f, w->Kd, Dk, w->R, Dv, 1.0f,
                w->S, Dv);
    if (*ck < p->n_checkpoints && p->checkpoint_t[*ck] == t0 + L - 1) /* the chunk-end state */
        memcpy(deltarule_checkpoint_state(p, (*ck)++, b, h), w->S, sizeof(float) * Dk * Dv);
}

/* Head (b, h), all chunks; returns the number of chunks. */
static long long run_head(dr_chunk_ws *w, const deltarule_problem *p, const deltarule_opts *o,
                          dr_chunk_solver solve, int b, int h)
{
    const int T = p->T, Hv = p->Hv, Dk = p->Dk, Dv = p->Dv, C = w->C;
    const int len = deltarule_valid_len(p, b);
    const size_t soff = ((size_t)b * Hv + h) * (size_t)Dk * Dv;
    if (p->initial_state) memcpy(w->S, p->initial_state + soff, sizeof(float) * Dk * Dv);
    else memset(w->S, 0, sizeof(float) * Dk * Dv);
    const int ldo = Hv * Dv;
    float *out0 = p->out + ((size_t)b * T * Hv + h) * Dv;
    const int split = o->checkpoint_mode ? o->checkpoint_mode == DR_CKPT_SPLIT : ckpt_split_by_default(p);
    int ck = 0; /* the next checkpoint to write */
    long long chunks = 0;
    for (int t0 = 0; t0 < len; t0 += w->L, chunks++) {
        w->L = len - t0 < C ? len - t0 : C;
        if (split && ck < p->n_checkpoints && p->checkpoint_t[ck] < t0 + w->L) /* end the chunk there */
            w->L = p->checkpoint_t[ck] - t0 + 1;
        gather(w, p, b, h, t0);
        chunk_step(w, o, solve, out0 + (size_t)t0 * ldo, ldo, p, b, h, t0, &ck);
    }
    for (int t = len; t < T; t++) memset(out0 + (size_t)t * ldo, 0, sizeof(float) * Dv);
    for (; ck < p->n_checkpoints; ck++) /* at or past the last valid token: the final state */
        memcpy(deltarule_checkpoint_state(p, ck, b, h), w->S, sizeof(float) * Dk * Dv);
    if (p->final_state) memcpy(p->final_state + soff, w->S, sizeof(float) * Dk * Dv);
    return chunks;
}

int dr_chunk_run(const deltarule_problem *p, const deltarule_opts *o, dr_chunk_solver solve)
{
    const int C = o->chunk > 0 ? o->chunk : 64;
    int failed = 0;
    long long chunks = 0; /* one solve per chunk (docs/counters.md) */
    /* Our parallelism is over heads; OpenBLAS threading inside would
     * oversubscribe the cores. */
    openblas_set_num_threads(1);
#pragma omp parallel num_threads(o->threads > 0 ? o->threads : omp_get_max_threads())
    {
        const unsigned csr = q35_flush_begin(); /* subnormal decays: kernels/fp_flush.h */
        dr_chunk_ws w;
        int ok = ws_alloc(&w, C, p->Dk, p->Dv) == 0;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic) collapse(2) reduction(+ : chunks)
        for (int b = 0; b < p->B; b++)
            for (int h = 0; h < p->Hv; h++)
                if (ok) chunks += run_head(&w, p, o, solve, b, h);
        if (ok) ws_free(&w);
        q35_flush_end(csr);
    }
    q35_sde_add(Q35_SDE_CHUNKS, chunks);
    q35_sde_add(Q35_SDE_SOLVER_CALLS, chunks);
    return failed ? -1 : 0;
}

void dr_merge_block_inverses(dr_chunk_ws *w)
{
    const int L = w->L, C = w->C, bs = DR_SOLVER_BLOCK;
    for (int i0 = bs; i0 < L; i0 += bs) {
        const int m = L - i0 < bs ? L - i0 : bs;
        /* work = A[I, 0:i0] * T[0:i0, 0:i0]  (T is lower triangular, zero above) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, i0, i0, 1.0f, w->A + (size_t)i0 * C, C,
                    w->Tinv, C, 0.0f, w->work, C);
        /* T[I, 0:i0] = -T_II * work */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, i0, m, -1.0f,
                    w->Tinv + (size_t)i0 * C + i0, C, w->work, C, 0.0f, w->Tinv + (size_t)i0 * C, C);
    }
}

void dr_apply_inverse(dr_chunk_ws *w)
{
    cblas_strmm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasUnit, w->L, w->Dv, 1.0f,
                w->Tinv, w->C, w->R, w->Dv);
}
