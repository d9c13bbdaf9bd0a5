/* chunked backward: the gradient of the gated delta rule in the chunkwise WY
 * form (docs/deltarule-backward-chunked.md, "eq. (CBn)" below; the forward's
 * equations are docs/deltarule.md (4)-(10)).
 *
 * Per (sequence, key head), its value heads one after the other (their dq, dk
 * add up in place, eq. CB14), and per value head:
 *   1. a forward pass over the chunks that keeps only the state entering each
 *      chunk, S0 (the last chunk is skipped: nothing reads its end state), CB1;
 *   2. the chunks from the last to the first: the chunk's intra-chunk
 *      quantities recomputed (K, Q, gamma, A, Delta; eqs. (4)-(8)) from its
 *      stored S0, then the gradient of O (eq. 8) and of its end state (eq. 9)
 *      pushed back to the chunk's inputs and to dS0, which becomes the
 *      previous chunk's end-state gradient, CB2-CB13.
 * Flops and memory: docs/deltarule-backward-chunked.md §4.
 * After the value heads of a key head, the l2norm Jacobian turns the
 * gradients of the normalized q, k into those of the raw inputs (CB15).
 * GEMMs, triangular solves and transposes are grad_gemm.h's unpacked small
 * kernels (AVX-512 / AVX2 / generic, chosen once per call); OpenMP runs
 * over (sequence, key head) pairs, so no two threads touch the same dq, dk
 * rows.
 */
#include "kernels/deltarule/deltarule_grad.h"
#include "kernels/deltarule/grad_gemm.h"
#include "common/huge_pages.h"
#include "kernels/fp_flush.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* One thread's buffers.  Matrices row-major; leading dimension C for the
 * L x L ones, Dk or Dv for rows of keys or values. */
typedef struct {
    int C, L, Dk, Dv, nch;
    float *KQ;     /* [2C x Dk] rows [0,L) normalized keys, [L,2L) scaled queries: the chunk's block of KQall */
    float *KQall;  /* [T x 2 x Dk] every chunk's [K; Q] block of the key head, chunk c at c 2C Dk (eq. 1) */
    float *dKQall; /* [T x 2 x Dk] their gradients summed over the key head's value heads (CB14); only
                      with more than one value head a key head */
    float *dKQ;    /* [2C x Dk] their gradients (the first of several value heads: dKQall's block) */
    float *dKQbuf; /* [2C x Dk] dKQ of the other value heads, or of the only one */
    float *V;      /* [C x Dv]: the chunk's block of Vall */
    float *Vall;   /* [T x Dv] the value head's V rows, gathered once in CB1 */
    float *KS;     /* [C x Dv] K S0: the chunk's block of KSall */
    float *D;      /* [C x Dv] R, then Delta (eq. 5, 7): the chunk's block of Dall */
    float *KSall;  /* [T x Dv] every chunk's K S0, chunk c at c C Dv (CB1) */
    float *Dall;   /* [T x Dv] every chunk's Delta (CB1) */
    float *dO;     /* [C x Dv] */
    float *dD;     /* [C x Dv] dDelta, then dR (CB3, CB5) */
    float *dKS;    /* [2C x Dv] [dR-term of K S0; exp(gamma) dO] (CB8) */
    float *E;      /* [C x C] exp(gamma_i - gamma_j), j <= i: the chunk's block of Eall */
    float *G;      /* [C x C] exp(gamma_i - gamma_j) k_i.k_j, j < i, else 0: block of Gall */
    float *A;      /* [C x C] diag(beta) G (eq. 6): block of Aall */
    float *Eall, *Gall, *Aall; /* [nch x C x C] every chunk's E, G, A (CB1), chunk c at c C C */
    float *P;      /* [C x C] M o Q K^T (eq. 8) */
    float *dP;     /* [C x C] dP, then M o dP */
    float *dA;     /* [C x C] dA, then in its lower triangle the gradient of K K^T (CB6) */
    float *Kd;     /* [C x Dk] keys decayed to the chunk end (eq. 9) */
    float *Dd;     /* [C x Dv] exp(gamma_L - gamma_j) Delta_j (CB9 folded into CB8) */
    float *KT;     /* [Dk x C] K^T */
    float *DT;     /* [Dv x C] Delta^T */
    float *S0T;    /* [Dv x Dk] S0^T */
    float *dST;    /* [Dv x Dk] dS_L^T */
    float *dS;     /* [Dk x Dv] gradient of the state at the current chunk's end */
    float *states; /* [nch x Dk x Dv] S0 of every chunk (CB1) */
    float *beta, *eg; /* [C] beta, exp(gamma): the chunk's block of betaall, egall */
    float *betaall, *egall; /* [T] */
    double *rk, *rq;  /* [T] 1/sqrt(|k_t|^2 + 1e-6), 1/sqrt(|q_t|^2 + 1e-6) of the key head (eq. 1; 1 without l2norm) */
    double *gamma, *dgam; /* [C] eq. (4) (block of gamall) and its gradient */
    double *gamall;       /* [T] */
    gg_fns f;             /* products, solves, transposes (grad_gemm.h), for this CPU */
    void *arena;          /* the one mapping the buffers above point into (gws_alloc) */
    size_t arena_bytes;
} gws;

static void gws_free(gws *w)
{
    if (w->arena) q35_free_huge(w->arena, w->arena_bytes);
    w->arena = NULL;
}

/* Carves a thread's buffers out of base (NULL: only sums their sizes, each rounded up to 64
 * bytes); returns the bytes they take. */
static size_t gws_carve(gws *w, char *base, int C, int Dk, int Dv, int nch, int T, int r)
{
    const size_t tv = (size_t)nch * C * Dv, ncc = (size_t)(nch > 0 ? nch : 1) * C * C, cc = (size_t)C * C, ck = (size_t)C * Dk, cv = (size_t)C * Dv, kv = (size_t)Dk * Dv;
    const int pass = base != NULL;
    size_t bytes = 0;
#define GET(ptr, n) ((ptr) = pass ? (void *)(base + bytes) : NULL, bytes += (sizeof *(ptr) * (n) + 63) & ~(size_t)63)
    GET(w->KQall, 2 * (size_t)T * Dk); GET(w->dKQall, r > 1 ? 2 * (size_t)T * Dk : 0); GET(w->dKQbuf, 2 * ck); GET(w->Vall, tv); GET(w->KSall, tv); GET(w->Dall, tv); GET(w->dO, cv);
    GET(w->dD, cv); GET(w->dKS, 2 * cv); GET(w->Eall, ncc); GET(w->Gall, ncc); GET(w->Aall, ncc); GET(w->P, cc);
    GET(w->dP, cc); GET(w->dA, cc); GET(w->Kd, ck); GET(w->Dd, cv); GET(w->KT, ck); GET(w->DT, cv); GET(w->S0T, kv); GET(w->dST, kv); GET(w->dS, kv);
    GET(w->states, (size_t)(nch > 0 ? nch : 1) * kv); GET(w->betaall, (size_t)nch * C + 1); GET(w->egall, (size_t)nch * C + 1);
    GET(w->gamall, (size_t)nch * C + 1); GET(w->dgam, (size_t)C); GET(w->rk, (size_t)T); GET(w->rq, (size_t)T);
#undef GET
    return bytes;
}

/* A thread's buffers, bytes = gws_carve's sum: its slice of the caller's workspace (mine, when
 * given), else one mapping in 2 MiB pages (common/huge_pages.h): the states, KQall, ... are MiBs
 * each, written anew every call, and in 4 KiB pages cost a page fault every 4 KiB and TLB misses
 * on the state rows.  Returns bytes, 0 if out of memory.  Nothing read is assumed zero. */
static size_t gws_alloc(gws *w, char *mine, size_t bytes, int C, int Dk, int Dv, int nch, int T, int r)
{
    memset(w, 0, sizeof *w);
    w->f = gg_select();
    w->C = C; w->Dk = Dk; w->Dv = Dv; w->nch = nch;
    if (!mine) {
        if (!(w->arena = q35_alloc_huge(bytes))) return 0;
        w->arena_bytes = bytes;
        mine = w->arena;
    }
    gws_carve(w, mine, C, Dk, Dv, nch, T, r);
    return bytes;
}

/* One thread's share of the workspace, a multiple of 64 bytes (gws_carve rounds each buffer) */
static size_t thread_bytes(const deltarule_problem *p, int C)
{
    gws w;
    return gws_carve(&w, NULL, C, p->Dk, p->Dv, (p->T + C - 1) / C, p->T, p->Hv / p->Hk);
}

/* The chunk length C: the option, 64 by default (the table entry's default too). */
static int chunk_of(const deltarule_opts *o) { return o && o->chunk > 0 ? o->chunk : 64; }

static int thread_count(const deltarule_opts *o)
{
    return o && o->threads > 0 ? o->threads : omp_get_max_threads();
}

size_t deltarule_grad_chunked_workspace(const deltarule_grad_problem *gp, const deltarule_opts *o)
{
    return thread_bytes(gp->fwd, chunk_of(o)) * (size_t)thread_count(o);
}

/* eq. (1): 1/sqrt(|x|^2 + 1e-6) in double (1 without the l2 norm); once per
 * token and key head, not once per value head and pass. */
static double inv_norm(const gg_fns *f, const float *x, int n, int l2)
{
    if (!l2) return 1.0;
    return 1.0 / sqrt(f->sumsq(x, n) + 1e-6);
}

/* The strided rows of one head (stride Hk Dk or Hv Dv floats) miss the
 * hardware prefetcher: fetch a row a few tokens ahead. */
#define PF_AHEAD 4
static void prefetch_row(const float *x, int n)
{
    for (int i = 0; i < n; i += 16) __builtin_prefetch(x + i, 0, 3);
}

/* Points the chunk buffers at chunk c = t0 / C's blocks (CB1 fills them, the
 * backward reads them). */
static void select_chunk(gws *w, int t0)
{
    const int C = w->C, c = t0 / C;
    w->KQ = w->KQall + 2 * (size_t)t0 * w->Dk;
    w->KS = w->KSall + (size_t)t0 * w->Dv;
    w->V = w->Vall + (size_t)t0 * w->Dv;
    w->D = w->Dall + (size_t)t0 * w->Dv;
    w->E = w->Eall + (size_t)c * C * C;
    w->G = w->Gall + (size_t)c * C * C;
    w->A = w->Aall + (size_t)c * C * C;
    w->beta = w->betaall + t0;
    w->eg = w->egall + t0;
    w->gamma = w->gamall + t0;
}

/* The chunk [t0, t0+L) of head (b, h): K, Q (eq. 1, from KQall), V, beta,
 * gamma (eq. 4), E, G and A (eq. 6, entries above the diagonal assigned 0:
 * eq. 10), as chunk_engine.c's gather, decay_matrix and build_A_and_P do. */
static void prepare(gws *w, const deltarule_problem *p, int b, int h, int t0)
{
    const int L = w->L, C = w->C, Dk = p->Dk, Dv = p->Dv, Hv = p->Hv;
    select_chunk(w, t0);
    double gam = 0.0;
    for (int i = 0; i < L; i++) {
        const size_t tok = (size_t)b * p->T + t0 + i;
        if (i + PF_AHEAD < L) prefetch_row(p->v + ((tok + PF_AHEAD) * Hv + h) * Dv, Dv);
        memcpy(w->V + (size_t)i * Dv, p->v + (tok * Hv + h) * Dv, sizeof(float) * Dv);
        w->beta[i] = p->beta[tok * Hv + h];
        gam += p->g[tok * Hv + h]; /* eq. (4): restarts every chunk */
        w->gamma[i] = gam;
        w->eg[i] = expf((float)gam);
    }
    for (int i = 0; i < L; i++) w->f.decay_row(w->E + (size_t)i * C, w->gamma, i);
    w->f.transpose(L, Dk, w->KQ, Dk, w->KT, C);
    w->f.gemm(L, L, Dk, 1.0f, w->KQ, Dk, 1, w->KT, C, 0.0f, w->G, C, GG_C_LOWER); /* K K^T, lower */
    for (int i = 0; i < L; i++) {
        float *gr = w->G + (size_t)i * C;
        w->f.mask_row(gr, w->E + (size_t)i * C, i, L);
        w->f.scale(gr, w->A + (size_t)i * C, L, w->beta[i]);
    }
}

/* KS = K S0, then Delta = (I + A)^{-1} beta (V - exp(gamma) K S0): eqs. (5), (7), (11). */
static void solve_delta(gws *w, const float *S0)
{
    const int L = w->L, Dk = w->Dk, Dv = w->Dv;
    w->f.gemm(L, Dv, Dk, 1.0f, w->KQ, Dk, 1, S0, Dv, 0.0f, w->KS, Dv, GG_FULL);
    for (int i = 0; i < L; i++)
        w->f.rhs(w->V + (size_t)i * Dv, w->KS + (size_t)i * Dv, w->D + (size_t)i * Dv, Dv, w->beta[i], w->eg[i]);
    w->f.solve(L, Dv, w->A, w->C, w->D, Dv);
}

/* Kd_j = exp(gamma_L - gamma_j) k_j (eq. 9), the factors from E's last row; returns exp(gamma_L). */
static float decayed_keys(gws *w)
{
    const int L = w->L, Dk = w->Dk;
    const float *eL = w->E + (size_t)(L - 1) * w->C;
    for (int i = 0; i < L; i++) w->f.scale(w->KQ + (size_t)i * Dk, w->Kd + (size_t)i * Dk, Dk, eL[i]);
    return expf((float)w->gamma[L - 1]);
}

/* The backward of one chunk (eqs. CB3-CB12), after prepare() and solve_delta()
 * on its S0.  On entry w->dS is dL/dS_L (the chunk's end state), on return
 * dL/dS0.  Writes dv, dg, dbeta of the chunk's tokens and leaves the
 * gradients of the normalized K, Q rows in w->dKQ.  Products by w->gemm
 * (grad_gemm.h): op(A) by strides, B^T by a transposed copy. */
static void chunk_backward(gws *w, const deltarule_grad_problem *gp, int b, int h, int t0, const float *S0)
{
    const deltarule_problem *p = gp->fwd;
    const int L = w->L, C = w->C, Dk = w->Dk, Dv = w->Dv, Hv = p->Hv;
    const float *K = w->KQ, *Q = w->KQ + (size_t)L * Dk;
    float *dK = w->dKQ, *dQ = w->dKQ + (size_t)L * Dk;
    double *dgam = w->dgam;
    for (int i = 0; i < L; i++) dgam[i] = 0.0;
    w->f.transpose(L, Dk, K, Dk, w->KT, C);
    w->f.transpose(L, Dv, w->D, Dv, w->DT, C);
    w->f.transpose(Dk, Dv, S0, Dv, w->S0T, Dk);
    w->f.transpose(Dk, Dv, w->dS, Dv, w->dST, Dk);

    /* CB2: P = M o Q K^T (eq. 8), by select (eq. 10) */
    w->f.gemm(L, L, Dk, 1.0f, Q, Dk, 1, w->KT, C, 0.0f, w->P, C, GG_C_LOWER);
    for (int i = 0; i < L; i++) w->f.mask_row(w->P + (size_t)i * C, w->E + (size_t)i * C, i + 1, L);
    for (int i = 0; i < L; i++) { /* dO rows of the chunk */
        const size_t tok = (size_t)b * p->T + t0 + i;
        if (i + PF_AHEAD < L) prefetch_row(gp->d_out + ((tok + PF_AHEAD) * Hv + h) * Dv, Dv);
        memcpy(w->dO + (size_t)i * Dv, gp->d_out + (tok * Hv + h) * Dv, sizeof(float) * Dv);
    }
    /* CB3, its second term first: dDelta = Kd dS_L ... */
    const float egL = decayed_keys(w);
    w->f.gemm(L, Dv, Dk, 1.0f, w->Kd, Dk, 1, w->dS, Dv, 0.0f, w->dD, Dv, GG_FULL);
    /* CB9: h_j = dKd_j . Kd_j = Delta_j . (Kd dS_L)_j, so dKd = Delta dS_L^T is
     * never formed: its dK term exp(gamma_L - gamma_j) dKd_j joins CB8's GEMM
     * as Dd dS_L^T, Dd_j = exp(gamma_L - gamma_j) Delta_j */
    {
        const float *eL = w->E + (size_t)(L - 1) * C; /* exp(gamma_L - gamma_j) */
        double hs = 0.0;
        for (int j = 0; j < L; j++) {
            const float *dj = w->D + (size_t)j * Dv;
            const double hj = w->f.dot(dj, w->dD + (size_t)j * Dv, Dv);
            hs += hj;
            dgam[j] -= hj;
            w->f.scale(dj, w->Dd + (size_t)j * Dv, Dv, eL[j]);
        }
        double ss = 0.0; /* <dS_L, S0>: rows in float, their sum in double */
        for (int r = 0; r < Dk; r++) ss += w->f.dot(w->dS + (size_t)r * Dv, S0 + (size_t)r * Dv, Dv);
        dgam[L - 1] += hs + (double)egL * ss;
    }
    /* ... CB3: dDelta += P^T dO (P^T upper triangular) */
    w->f.gemm(L, Dv, L, 1.0f, w->P, 1, C, w->dO, Dv, 1.0f, w->dD, Dv, GG_A_UPPER);
    /* CB4: dP = dO Delta^T on j <= i; dgamma from M; dP <- M o dP */
    w->f.gemm(L, L, Dv, 1.0f, w->dO, Dv, 1, w->DT, C, 0.0f, w->dP, C, GG_C_LOWER);
    for (int i = 0; i < L; i++) {
        const size_t o = (size_t)i * C;
        dgam[i] += w->f.cb4_row(w->dP + o, w->P + o, w->E + o, dgam, i, L);
    }
    /* CB5: dR = (I + A)^{-T} dDelta */
    w->f.solve_t(L, Dv, w->A, C, w->dD, Dv);
    /* CB6: dA = -dR Delta^T on j < i: dbeta, dgamma, and in w->dA's lower
     * triangle the gradient of K K^T (zero on and above the diagonal) */
    w->f.gemm(L, L, Dv, -1.0f, w->dD, Dv, 1, w->DT, C, 0.0f, w->dA, C, GG_C_LOWER);
    for (int i = 0; i < L; i++) {
        const size_t o = (size_t)i * C;
        double db;
        dgam[i] += w->f.cb6_row(w->dA + o, w->G + o, w->A + o, w->E + o, dgam, i, L, w->beta[i], &db);
        /* CB7 rows i: dv, dbeta, dgamma of R = beta (V - exp(gamma) K S0) */
        const size_t tok = (size_t)b * p->T + t0 + i;
        const float bi = w->beta[i], eg = w->eg[i];
        const float *dr = w->dD + (size_t)i * Dv, *v = w->V + (size_t)i * Dv, *ks = w->KS + (size_t)i * Dv,
                    *dor = w->dO + (size_t)i * Dv;
        float *dv = gp->dv + (tok * Hv + h) * Dv, *dks = w->dKS + (size_t)i * Dv,
              *doe = w->dKS + (size_t)(L + i) * Dv;
        float dbr, dgr;
        w->f.cb7_row(dr, v, ks, dor, dv, dks, doe, Dv, bi, eg, &dbr, &dgr);
        gp->dbeta[tok * Hv + h] = (float)(db + dbr);
        dgam[i] += dgr;
    }
    /* CB8: [dK; dQ] = [dKS0; exp(gamma) dO] S0^T (the S0 terms), dgamma of exp(gamma) Q S0;
     * with CB9's dK term: dK += Dd dS_L^T */
    w->f.gemm(2 * L, Dk, Dv, 1.0f, w->dKS, Dv, 1, w->S0T, Dk, 0.0f, w->dKQ, Dk, GG_FULL);
    for (int i = 0; i < L; i++) dgam[i] += w->f.dot(Q + (size_t)i * Dk, dQ + (size_t)i * Dk, Dk);
    w->f.gemm(L, Dk, Dv, 1.0f, w->Dd, Dv, 1, w->dST, Dk, 1.0f, dK, Dk, GG_FULL);
    /* CB10: dS0 = exp(gamma_L) dS_L + [K; Q]^T [dKS0; exp(gamma) dO] */
    w->f.gemm(Dk, Dv, 2 * L, 1.0f, w->KQ, 1, Dk, w->dKS, Dv, egL, w->dS, Dv, GG_FULL);
    /* CB11: dQ += (M o dP) K;  dK += (M o dP)^T Q + (dKK + dKK^T) K */
    w->f.gemm(L, Dk, L, 1.0f, w->dP, C, 1, K, Dk, 1.0f, dQ, Dk, GG_A_LOWER);
    w->f.gemm(L, Dk, L, 1.0f, w->dP, 1, C, Q, Dk, 1.0f, dK, Dk, GG_A_UPPER);
    w->f.gemm(L, Dk, L, 1.0f, w->dA, C, 1, K, Dk, 1.0f, dK, Dk, GG_A_LOWER);
    w->f.gemm(L, Dk, L, 1.0f, w->dA, 1, C, K, Dk, 1.0f, dK, Dk, GG_A_UPPER);
    /* CB12: dg = reverse cumulative sum of dgamma within the chunk */
    double acc = 0.0;
    for (int i = L - 1; i >= 0; i--) {
        acc += dgam[i];
        gp->dg[((size_t)b * p->T + t0 + i) * Hv + h] = (float)acc;
    }
}

/* CB15: dx = s (dy - y~ (y~ . dy)) / n for y = s x / n, n = sqrt(|x|^2 + 1e-6),
 * y~ = x / n (eq. 1); without the l2 norm dx = s dy.  y is the stored
 * normalized row (y~ = y / s), inv = 1/n from inv_norm; dx written to out. */
static void l2norm_backward(const gg_fns *f, const float *y, const float *dy, float *out, int n, int l2, double s,
                            double inv)
{
    if (!l2) {
#pragma omp simd
        for (int i = 0; i < n; i++) out[i] = (float)(s * dy[i]);
        return;
    }
    f->l2back(y, dy, out, n, s, inv);
}

/* eq. (1) for the chunk [t0, t0 + L) of key head m: 1/|k|, 1/|q| per token
 * (rk, rq), and the normalized keys and scaled queries into the chunk's block
 * of KQall: [K; Q] rows. */
static void normalize_chunk(gws *w, const deltarule_problem *p, int b, int m, int t0, double scale)
{
    const int L = w->L, Dk = p->Dk, Hk = p->Hk;
    float *K = w->KQall + 2 * (size_t)t0 * Dk, *Q = K + (size_t)L * Dk;
    for (int i = 0; i < L; i++) {
        const int t = t0 + i;
        const size_t row = (((size_t)b * p->T + t) * Hk + m) * Dk;
        if (i + PF_AHEAD < L) {
            prefetch_row(p->k + row + (size_t)PF_AHEAD * Hk * Dk, Dk);
            prefetch_row(p->q + row + (size_t)PF_AHEAD * Hk * Dk, Dk);
        }
        w->rk[t] = inv_norm(&w->f, p->k + row, Dk, p->use_qk_l2norm);
        w->rq[t] = inv_norm(&w->f, p->q + row, Dk, p->use_qk_l2norm);
        w->f.scale(p->k + row, K + (size_t)i * Dk, Dk, (float)w->rk[t]);
        w->f.scale(p->q + row, Q + (size_t)i * Dk, Dk, (float)(scale * w->rq[t]));
    }
}

/* CB15 for the chunk [t0, t0 + L) of key head m, once dK (its [dK; dQ] rows)
 * holds the sum over the key head's value heads: dq, dk of the raw inputs. */
static void l2back_chunk(gws *w, const deltarule_grad_problem *gp, int b, int m, int t0, const float *dK, double scale)
{
    const deltarule_problem *p = gp->fwd;
    const int L = w->L, Dk = p->Dk, Hk = p->Hk;
    const float *K = w->KQall + 2 * (size_t)t0 * Dk;
    for (int i = 0; i < L; i++) {
        const int t = t0 + i;
        const size_t row = (((size_t)b * p->T + t) * Hk + m) * Dk, ki = (size_t)i * Dk, qi = (size_t)(L + i) * Dk;
        l2norm_backward(&w->f, K + qi, dK + qi, gp->dq + row, Dk, p->use_qk_l2norm, scale, w->rq[t]);
        l2norm_backward(&w->f, K + ki, dK + ki, gp->dk + row, Dk, p->use_qk_l2norm, 1.0, w->rk[t]);
    }
}

/* Value head h (of key head m) of sequence b: CB1 then the chunks backward;
 * adds the gradients of the normalized K, Q rows into dKQall (eq. CB14).
 * The key head's first value head normalizes each chunk's k, q rows as CB1
 * reaches it (eq. 1), its last turns each chunk's summed gradients into dq,
 * dk as the backward leaves it (CB15): the rows are read and written while
 * the chunk is in cache. */
static void head_backward(gws *w, const deltarule_grad_problem *gp, int b, int h, int m, int len, int first, int last,
                          double scale)
{
    const deltarule_problem *p = gp->fwd;
    const int C = w->C, Dk = p->Dk, Dv = p->Dv, Hv = p->Hv;
    const size_t kv = (size_t)Dk * Dv, soff = ((size_t)b * Hv + h) * kv;
    const int nch = (len + C - 1) / C;
    /* CB1: the state entering each chunk and every chunk's K S0, Delta, E, G,
     * A, kept for the backward; the last chunk's end state is not needed */
    if (p->initial_state) memcpy(w->states, p->initial_state + soff, sizeof(float) * kv);
    else memset(w->states, 0, sizeof(float) * kv);
    for (int c = 0; c < nch; c++) {
        w->L = len - c * C < C ? len - c * C : C;
        if (first) normalize_chunk(w, p, b, m, c * C, scale);
        prepare(w, p, b, h, c * C);
        const float *S0 = w->states + (size_t)c * kv;
        solve_delta(w, S0);
        if (c + 1 == nch) break;
        float *S1 = w->states + (size_t)(c + 1) * kv;
        const float egL = decayed_keys(w); /* eq. (9) */
        w->f.gemm_c0(Dk, Dv, C, 1.0f, w->Kd, 1, Dk, w->D, Dv, egL, S0, Dv, S1, Dv, GG_FULL); /* egL S0 + Kd^T Delta */
    }
    /* CB13: the last chunk's end-state gradient, then each chunk's dS0 for the one before */
    if (gp->d_final_state) memcpy(w->dS, gp->d_final_state + soff, sizeof(float) * kv);
    else memset(w->dS, 0, sizeof(float) * kv);
    for (int c = nch - 1; c >= 0; c--) {
        const int t0 = c * C;
        w->L = len - t0 < C ? len - t0 : C;
        const float *S0 = w->states + (size_t)c * kv;
        select_chunk(w, t0); /* CB2: the chunk as CB1 left it */
        /* CB14: the first value head writes the sum's first term in place, but a
         * key head with one value head has no sum (and no dKQall): its rows stay
         * in the chunk's own (cache-warm) buffer until CB15 reads them */
        float *acc = first && last ? NULL : w->dKQall + 2 * (size_t)t0 * Dk;
        w->dKQ = first && !last ? acc : w->dKQbuf;
        chunk_backward(w, gp, b, h, t0, S0);
        if (!first) {
            const float *d = w->dKQ;
            const size_t n2 = 2 * (size_t)w->L * Dk;
#pragma omp simd
            for (size_t i = 0; i < n2; i++) acc[i] += d[i];
        }
        if (last) l2back_chunk(w, gp, b, m, t0, acc ? acc : w->dKQbuf, scale);
    }
    if (p->initial_state) memcpy(gp->d_initial_state + soff, w->dS, sizeof(float) * kv);
    for (int t = len; t < p->T; t++) { /* padding: zero gradients */
        const size_t tok = (size_t)b * p->T + t;
        memset(gp->dv + (tok * Hv + h) * Dv, 0, sizeof(float) * Dv);
        gp->dg[tok * Hv + h] = 0.0f;
        gp->dbeta[tok * Hv + h] = 0.0f;
    }
}

int deltarule_grad_chunked(const deltarule_grad_problem *gp, const deltarule_opts *o, deltarule_grad_stats *st)
{
    const deltarule_problem *p = gp->fwd;
    const int C = chunk_of(o);
    const int Hk = p->Hk, Hv = p->Hv, Dk = p->Dk, r = Hv / Hk;
    const int nch = (p->T + C - 1) / C;
    const double scale = deltarule_scale(p);
    int failed = 0;
    size_t held = 0;
    const int threads = thread_count(o);
    const size_t per = thread_bytes(p, C);
    /* the caller's workspace when it holds every thread's share (deltarule_grad_run checks the size) */
    char *ws = gp->workspace && gp->workspace_bytes >= per * (size_t)threads ? gp->workspace : NULL;
#pragma omp parallel num_threads(threads) reduction(+ : held)
    {
        const unsigned csr = q35_flush_begin(); /* subnormal decays: kernels/fp_flush.h */
        gws w;
        const size_t bytes = gws_alloc(&w, ws ? ws + per * (size_t)omp_get_thread_num() : NULL, per, C, Dk, p->Dv, nch, p->T, r);
        if (!bytes) {
#pragma omp atomic write
            failed = 1;
        }
        held += bytes;
#pragma omp for schedule(dynamic) collapse(2)
        for (int b = 0; b < p->B; b++)
            for (int m = 0; m < Hk; m++) {
                if (!bytes) continue;
                const int len = deltarule_valid_len(p, b);
                for (int h = m * r; h < (m + 1) * r; h++)
                    head_backward(&w, gp, b, h, m, len, h == m * r, h == (m + 1) * r - 1, scale);
                for (int t = len; t < p->T; t++) { /* padding rows: zero gradients */
                    const size_t row = (((size_t)b * p->T + t) * Hk + m) * Dk;
                    memset(gp->dq + row, 0, sizeof(float) * Dk);
                    memset(gp->dk + row, 0, sizeof(float) * Dk);
                }
                gg_stream_fence(); /* dv, dq, dk rows went out by non-temporal stores */
            }
        if (bytes) gws_free(&w);
        q35_flush_end(csr);
    }
    if (st) st->bytes_held = held;
    return failed ? -1 : 0;
}
