/* recurrent: the gated delta rule token by token (the decode path).
 *
 * Work is split into (sequence, value head, column block) tasks: the
 * recurrence is separable over the state's columns (docs/deltarule.md
 * eq. (3)), so each task carries a Dk x W slice of one head's state through
 * all of that sequence's tokens, one fused pass per token, and the tasks run
 * in parallel with OpenMP.  The column-block kernel has AVX-512, AVX2 and
 * generic C variants, picked at run time (kernels/cpu_features.h).
 */
#include "kernels/cpu_features.h"
#include "kernels/deltarule/deltarule.h"
#include "kernels/deltarule/recurrent_colblock.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

/* Up to this many tokens, tasks are spread statically (see the task loop). */
#define STATIC_MAX_TOKENS 16

void dr_colblock_generic(const dr_colblock *c)
{
    enum { MAXW = 64 };
    float u[MAXW], delta[MAXW], oa[MAXW], ua[MAXW];
    const int Dk = c->Dk, W = c->ncols;
    for (int j = 0; j < W; j++) u[j] = 0.0f;
    for (int r = 0; r < Dk; r++)
        for (int j = 0; j < W; j++) u[j] += c->k[r] * c->src[r * c->src_ld + j];

    const float *src = c->src;
    ptrdiff_t src_ld = c->src_ld;
    for (int t = 0; t < c->ntok; t++) {
        const float *qt = c->q + t * c->qk_stride, *kt = c->k + t * c->qk_stride;
        const float *kn = t + 1 < c->ntok ? kt + c->qk_stride : kt;
        const float *vt = c->v + t * c->vo_stride;
        const float eg = c->eg[t];
        const float ks = c->kscale[t], bks = c->beta[t] * ks;
        for (int j = 0; j < W; j++) {
            delta[j] = bks * (vt[j] - eg * ks * u[j]);
            oa[j] = ua[j] = 0.0f;
        }
        for (int r = 0; r < Dk; r++) {
            const float *sr = src + r * src_ld;
            float *dr = c->dst + r * c->dst_ld;
            for (int j = 0; j < W; j++) {
                float s = sr[j] * eg + kt[r] * delta[j];
                dr[j] = s;
                oa[j] += qt[r] * s;
                ua[j] += kn[r] * s;
            }
        }
        if (c->ckpt && c->ckpt[t]) /* the generic block always holds the true state */
            for (int r = 0; r < Dk; r++)
                memcpy(c->ckpt[t] + r * c->ckpt_ld, c->dst + r * c->dst_ld, sizeof(float) * W);
        float *ot = c->o + t * c->vo_stride;
        for (int j = 0; j < W; j++) { ot[j] = c->qscale[t] * oa[j]; u[j] = ua[j]; }
        src = c->dst;
        src_ld = c->dst_ld;
    }
}

typedef void (*colblock_fn)(const dr_colblock *);

/* From this many tokens on, column blocks are copied to a contiguous buffer
 * first (see run_group); copying costs about one token's pass. */
#define PACK_MIN_TOKENS 4
/* Tokens per time block: every column block of a head runs these tokens
 * before the next ones, so their q/k/v rows (~1.5 KiB a token) are read from
 * memory once and from L2 by the other column blocks.  64: the rows, the
 * head's state and the outputs stay well inside a 512 KiB L2 (at 256 they
 * did not, and two-token sweeps ran ~20% slower at T = 2048 on one thread);
 * the extra u~ pass per block is 1/32 of a block's sweeps. */
#define TIME_BLOCK 64
/* Tokens ahead whose q/k rows the scalar loop prefetches. */
#define SCALAR_AHEAD 4

/* eq. (1) folded into per-token scalars, qscale = scale/||q|| and kscale =
 * 1/||k||, and for two-token sweeps the raw dots k_t.q_t, k_t.k_{t+1},
 * k_t.q_{t+1} (eq. 3c; 0 past the sequence), plus exp(g) and beta per value
 * head.  Each task computes its head's scalars one time block at a time,
 * just before the block's sweeps: that loop brings the block's q/k rows into
 * L2, where the column blocks then find them.  (They used to come from a
 * team pass over all tokens before the tasks: it streamed q and k from
 * memory once more, cost 7.6% of T = 2048 in perf, and its barrier cost
 * ~1 us of a 20 us decode.  With recurrent_scalars.inc, T = 2048 and 8192
 * run 3-4% faster and decode 2-3%: docs/deltarule.md section 7.) */

#define FNDOTS dr_token_dots_generic
#include "kernels/deltarule/recurrent_scalars.inc"

/* The scalars of one (sequence b, token t, key head hk); kq == NULL: no dots. */
static void token_scalars_one(dr_token_dots_fn dots_fn, const deltarule_problem *p, long b, long t, long hk,
                              float *qs, float *ks, float *kq, float *kk, float *kq1)
{
    const int T = p->T, Hk = p->Hk, Dk = p->Dk;
    const ptrdiff_t stride = (ptrdiff_t)Hk * Dk;
    const long i = (b * T + t) * Hk + hk;
    const float *q = p->q + i * Dk, *k = p->k + i * Dk;
    const int next = t + 1 < T;
    double sums[2];
    float dots[3];
    dots_fn(q, k, kq ? (next ? q + stride : q) : NULL, next ? k + stride : k, Dk, sums, dots);
    if (kq) {
        *kq = dots[0];
        *kk = next ? dots[1] : 0.0f;
        *kq1 = next ? dots[2] : 0.0f;
    }
    const float scale = deltarule_scale(p);
    if (!p->use_qk_l2norm) { *qs = scale; *ks = 1.0f; return; }
    *qs = (float)(scale / sqrt(sums[0] + 1e-6));
    *ks = (float)(1.0 / sqrt(sums[1] + 1e-6));
}

/* The column-block kernel for this CPU and problem: two tokens per sweep
 * when asked for and there are two tokens (decode keeps the one-token
 * kernel, which updates the state in place in one pass after the u~ pass). */
static void pick_kernel(int Dv, int pairs, colblock_fn *fn, int *W, dr_token_dots_fn *dots,
                        void (**token)(const dr_colblock *, int))
{
    *token = NULL;
    const cpu_isa_level isa = cpu_isa(); /* >=: the levels above AVX512 (avx512-bf16) take its path */
    if (isa >= ISA_AVX512) {
        *fn = pairs ? dr_colpair_avx512 : dr_colblock_avx512;
        *W = pairs ? DR_COLPAIR_W_AVX512 : DR_COLBLOCK_W_AVX512;
        *dots = dr_token_dots_avx512;
        *token = pairs ? NULL : dr_colblock_token_avx512; /* its blocks are the one-token width */
    } else if (isa >= ISA_AVX2) {
        *fn = pairs ? dr_colpair_avx2 : dr_colblock_avx2;
        *W = pairs ? DR_COLPAIR_W_AVX2 : DR_COLBLOCK_W_AVX2;
        *dots = dr_token_dots_avx2;
        *token = pairs ? NULL : dr_colblock_token_avx2;
    } else {
        *fn = dr_colblock_generic;
        *W = DR_COLBLOCK_W_GENERIC;
        *dots = dr_token_dots_generic;
    }
    if (Dv < *W) { *fn = dr_colblock_generic; *W = DR_COLBLOCK_W_GENERIC; *token = NULL; }
}

typedef struct {
    const deltarule_problem *p;
    colblock_fn simd;
    int W, nblk, group;       /* block width, blocks per head, blocks per task */
    int pairs;                /* two-token sweeps: the scalars include the dots (eq. 3c) */
    dr_token_dots_fn dots;    /* the per-token sums at this CPU's ISA */
    void (*token)(const dr_colblock *, int); /* one token over adjacent blocks; NULL: none */
} recurrent_plan;

static void run_block(const recurrent_plan *pl, const dr_colblock *c, int ncols)
{
    if (ncols == pl->W && pl->simd != dr_colblock_generic) pl->simd(c);
    else dr_colblock_generic(c);
}

/* Column blocks [blk0, blk0 + nb) of a head's state to dst (a [Dk, Dv]
 * head state, row stride dld).  Block i is at src + i * bstep (+ c0 if
 * bstep is 0: the blocks in place in a head state), rows sld apart. */
static void copy_blocks(float *dst, ptrdiff_t dld, const float *src, ptrdiff_t sld, size_t bstep, int blk0,
                        int nb, int W, int Dk, int Dv)
{
    for (int i = 0; i < nb; i++) {
        const int c0 = (blk0 + i) * W, ncols = Dv - c0 < W ? Dv - c0 : W;
        const float *s = bstep ? src + i * bstep : src + c0;
        for (int r = 0; r < Dk; r++) memcpy(dst + c0 + r * dld, s + r * sld, sizeof(float) * ncols);
    }
}

/* Column blocks [blk0, blk0 + group) of head (b, h), all tokens.  packed:
 * group * Dk * W floats of this thread's. */
static void run_group(const recurrent_plan *pl, int b, int h, int blk0, float *packed)
{
    const deltarule_problem *p = pl->p;
    const int T = p->T, Hk = p->Hk, Hv = p->Hv, Dk = p->Dk, Dv = p->Dv, W = pl->W;
    const int hk = h / (Hv / Hk), len = deltarule_valid_len(p, b);
    const int nb = blk0 + pl->group <= pl->nblk ? pl->group : pl->nblk - blk0;
    const size_t head = ((size_t)b * Hv + h) * (size_t)Dk * Dv;
    const float *init = p->initial_state ? p->initial_state + head : NULL;
    float *fin = p->final_state ? p->final_state + head : NULL;
    const ptrdiff_t qk_stride = (ptrdiff_t)Hk * Dk, vo_stride = (ptrdiff_t)Hv * Dv;
    const float *q0 = p->q + ((size_t)b * T * Hk + hk) * Dk, *k0 = p->k + ((size_t)b * T * Hk + hk) * Dk;
    const float *v0 = p->v + ((size_t)b * T * Hv + h) * Dv;
    float *o0 = p->out + ((size_t)b * T * Hv + h) * Dv;
    /* This time block's scalars, computed by the task (see deltarule_recurrent) */
    float lqs[TIME_BLOCK], lks[TIME_BLOCK], lkq[TIME_BLOCK], lkk[TIME_BLOCK];
    float lkq1[TIME_BLOCK], leg[TIME_BLOCK], lbeta[TIME_BLOCK];
    const int pairs = pl->pairs;
    /* Rows of a block in the state are Dv floats apart: with Dv = 128 they
     * fall in a quarter of L1's sets and evict each other every token.  Over
     * many tokens blocks are worked on packed (rows W floats apart); a short
     * run (decode) works in place on the caller's state. */
    const int use_packed = !fin || len >= PACK_MIN_TOKENS;
    for (int i = 0; i < nb; i++) {
        const int c0 = (blk0 + i) * W, ncols = Dv - c0 < W ? Dv - c0 : W;
        float *dst = use_packed ? packed + (size_t)i * Dk * W : fin + c0;
        const ptrdiff_t ld = use_packed ? W : Dv;
        if (init && (use_packed || init != fin))
            for (int r = 0; r < Dk; r++) memmove(dst + r * ld, init + c0 + (size_t)r * Dv, sizeof(float) * ncols);
        else if (!init)
            for (int r = 0; r < Dk; r++) memset(dst + r * ld, 0, sizeof(float) * ncols);
        /* else: decode in place, the state is already where it is updated */
        for (int t = len; t < T; t++) /* right padding gives zero output */
            memset(o0 + (ptrdiff_t)t * vo_stride + c0, 0, sizeof(float) * ncols);
    }
    /* Checkpoints (deltarule.h): those at valid tokens are stored by the
     * kernels as the state passes (dr_colblock.ckpt), the rest, at or past
     * len, are the final state and copied after the last time block. */
    int ck_next = 0;
    const int nck = p->n_checkpoints;
    float *lck[TIME_BLOCK]; /* per token of the time block: the checkpoint's head state, or NULL */
    float *bck[TIME_BLOCK]; /* the same at one column block's first column */
    for (int t0 = 0; t0 < len; t0 += TIME_BLOCK) {
        const int n = len - t0 < TIME_BLOCK ? len - t0 : TIME_BLOCK;
        int has_ck = 0;
        for (int j = 0; j < n; j++) {
            lck[j] = NULL;
            if (ck_next < nck && p->checkpoint_t[ck_next] == t0 + j) {
                lck[j] = deltarule_checkpoint_state(p, ck_next++, b, h);
                has_ck = 1;
            }
        }
        for (int j = 0; j < n; j++) {
            const int t = t0 + j;
            if (t + SCALAR_AHEAD < len) { /* rows Hk*Dk floats apart: fetched ahead by hand */
                const float *qa = q0 + (t + SCALAR_AHEAD) * qk_stride, *ka = k0 + (t + SCALAR_AHEAD) * qk_stride;
                for (int r = 0; r < Dk; r += 16) { __builtin_prefetch(qa + r); __builtin_prefetch(ka + r); }
            }
            const size_t in = ((size_t)b * T + t) * Hv + h;
            leg[j] = expf(p->g[in]);
            lbeta[j] = p->beta[in];
            token_scalars_one(pl->dots, p, b, t, hk, lqs + j, lks + j, pairs ? lkq + j : NULL, lkk + j, lkq1 + j);
        }
        /* one token in place over whole blocks: the fused kernel runs them all */
        const int fused = n == 1 && !use_packed && pl->token && (blk0 + nb) * W <= Dv;
        for (int i = 0; i < (fused ? 1 : nb); i++) {
            const int c0 = (blk0 + i) * W, ncols = Dv - c0 < W ? Dv - c0 : W;
            /* built whole, not copied from a template and patched: the
             * patching's narrow stores fed wide loads of the copy, and each
             * such store-forwarding stall cost more than the copy (perf) */
            float *dst = use_packed ? packed + (size_t)i * Dk * W : fin + c0;
            const ptrdiff_t ld = use_packed ? W : Dv;
            const dr_colblock c = {
                .Dk = Dk, .ncols = ncols, .ntok = n,
                .q = q0 + t0 * qk_stride, .k = k0 + t0 * qk_stride, .qk_stride = qk_stride,
                .v = v0 + t0 * vo_stride + c0, .o = o0 + t0 * vo_stride + c0, .vo_stride = vo_stride,
                .eg = leg, .beta = lbeta, .qscale = lqs, .kscale = lks,
                .kq = pairs ? lkq : NULL, .kk = pairs ? lkk : NULL, .kq1 = pairs ? lkq1 : NULL,
                .src = dst, .dst = dst, .src_ld = ld, .dst_ld = ld, /* the state was put in place above */
                .rows_cold = i == 0,
                .ckpt = has_ck && !fused ? bck : NULL, .ckpt_ld = Dv,
            };
            if (has_ck && !fused)
                for (int j = 0; j < n; j++) bck[j] = lck[j] ? lck[j] + c0 : NULL;
            if (fused)
                pl->token(&c, nb);
            else
                run_block(pl, &c, ncols);
        }
        if (fused && has_ck) /* one token in place: the state in fin is true, copied whole */
            copy_blocks(lck[0], Dv, fin, Dv, 0, blk0, nb, W, Dk, Dv);
    }
    /* checkpoints at or past the last valid token: the final state (len = 0: the initial one) */
    for (; ck_next < nck; ck_next++)
        copy_blocks(deltarule_checkpoint_state(p, ck_next, b, h), Dv, use_packed ? packed : fin,
                    use_packed ? W : Dv, use_packed ? (size_t)Dk * W : 0, blk0, nb, W, Dk, Dv);
    if (use_packed && fin)
        for (int i = 0; i < nb; i++) {
            const int c0 = (blk0 + i) * W, ncols = Dv - c0 < W ? Dv - c0 : W;
            for (int r = 0; r < Dk; r++)
                memcpy(fin + c0 + (size_t)r * Dv, packed + (size_t)i * Dk * W + (size_t)r * W, sizeof(float) * ncols);
        }
}

int deltarule_recurrent(const deltarule_problem *p, const deltarule_opts *o)
{
    const int B = p->B, T = p->T, Hv = p->Hv, Dk = p->Dk, Dv = p->Dv;
    const int threads = o->threads > 0 ? o->threads : omp_get_max_threads();
    recurrent_plan pl = {.p = p};
    const int pairs = o->sweep_tokens == 2 && T >= 2;
    pick_kernel(Dv, pairs, &pl.simd, &pl.W, &pl.dots, &pl.token);
    pl.nblk = (Dv + pl.W - 1) / pl.W;
    /* Whole heads per task when there are enough heads to keep every thread
     * busy (time blocking then shares the token rows between blocks); single
     * column blocks otherwise. */
    pl.group = (long)B * Hv >= 2L * threads ? pl.nblk : 1;
    const int groups = (pl.nblk + pl.group - 1) / pl.group;
    const long ntask = (long)B * Hv * groups;
    pl.pairs = pairs;
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        /* decode updates the caller's state in place and needs no packed copy */
        const int need_packed = !p->final_state || T >= PACK_MIN_TOKENS;
        float *packed = need_packed ? malloc(sizeof(float) * (size_t)pl.group * Dk * pl.W) : NULL;
        const int ok = packed != NULL || !need_packed;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
        /* Head fastest: tasks running at the same time are other heads, so
         * no two threads write neighbouring bytes of one output row.
         * Short runs (decode) are scheduled statically: the same heads go to
         * the same thread at every step, so each thread finds its states in
         * its own L2 instead of pulling them from the other core's (dynamic
         * scheduling hands heads out in a different order each call). */
        /* nowait: the region's end is the barrier; each thread frees its own buffer */
        if (T <= STATIC_MAX_TOKENS) {
#pragma omp for schedule(static) nowait
            for (long task = 0; task < ntask; task++)
                if (ok) run_group(&pl, (int)((task / Hv) % B), (int)(task % Hv), (int)(task / Hv / B) * pl.group, packed);
        } else {
#pragma omp for schedule(dynamic) nowait
            for (long task = 0; task < ntask; task++)
                if (ok) run_group(&pl, (int)((task / Hv) % B), (int)(task % Hv), (int)(task / Hv / B) * pl.group, packed);
        }
        free(packed);
    }
    return failed ? -1 : 0;
}
