/* recurrent: the gated delta rule token by token (the decode path).
 *
 * Work is split into (sequence, value head, column block) tasks: the
 * recurrence is separable over the state's columns (docs/deltarule.md
 * eq. (3)), so each task carries a Dk x W slice of one head's state through
 * all of that sequence's tokens, one fused pass per token, and the tasks run
 * in parallel with OpenMP.  The column-block kernel has AVX-512, AVX2 and
 * generic C variants, picked at run time (kernels/cpu_features.h).
 */
#include "deltarule.h"
#include "recurrent_colblock.h"
#include "cpu_features.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

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
        const float eg = expf(c->g[t * c->gb_stride]);
        const float ks = c->kscale[t], bks = c->beta[t * c->gb_stride] * ks;
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
        float *ot = c->o + t * c->vo_stride;
        for (int j = 0; j < W; j++) { ot[j] = c->qscale[t] * oa[j]; u[j] = ua[j]; }
        src = c->dst;
        src_ld = c->dst_ld;
    }
}

/* eq. (1) folded into per-token scalars, qscale = scale/||q|| and kscale =
 * 1/||k||, laid out [B, Hk, T] so a task reads its tokens contiguously.
 * Computed once per (sequence, token, key head) by the team that then runs
 * the tasks (no second parallel region: that costs ~10 us at T = 1). */
static void token_scales(const deltarule_problem *p, float *qs, float *ks)
{
    const float scale = deltarule_scale(p);
    const int T = p->T, Hk = p->Hk, Dk = p->Dk;
#pragma omp for schedule(static)
    for (long i = 0; i < (long)p->B * T * Hk; i++) {
        const long b = i / ((long)T * Hk), t = (i / Hk) % T, hk = i % Hk;
        const size_t o = ((size_t)b * Hk + hk) * T + t;
        if (!p->use_qk_l2norm) { qs[o] = scale; ks[o] = 1.0f; continue; }
        const float *q = p->q + i * Dk, *k = p->k + i * Dk;
        double sq = 0.0, sk = 0.0;
#pragma omp simd reduction(+ : sq, sk)
        for (int d = 0; d < Dk; d++) { sq += (double)q[d] * q[d]; sk += (double)k[d] * k[d]; }
        qs[o] = (float)(scale / sqrt(sq + 1e-6));
        ks[o] = (float)(1.0 / sqrt(sk + 1e-6));
    }
}

typedef void (*colblock_fn)(const dr_colblock *);

/* From this many tokens on, a column block is copied to a contiguous buffer
 * first (see the task loop); copying costs about one token's pass. */
#define PACK_MIN_TOKENS 4

static void pick_kernel(int Dv, colblock_fn *fn, int *W)
{
    switch (cpu_isa()) {
    case ISA_AVX512: *fn = dr_colblock_avx512; *W = DR_COLBLOCK_W_AVX512; break;
    case ISA_AVX2: *fn = dr_colblock_avx2; *W = DR_COLBLOCK_W_AVX2; break;
    default: *fn = dr_colblock_generic; *W = DR_COLBLOCK_W_GENERIC; break;
    }
    if (Dv < *W) { *fn = dr_colblock_generic; *W = DR_COLBLOCK_W_GENERIC; }
}

int deltarule_recurrent(const deltarule_problem *p, const deltarule_opts *o)
{
    const int B = p->B, T = p->T, Hk = p->Hk, Hv = p->Hv, Dk = p->Dk, Dv = p->Dv;
    colblock_fn simd;
    int W;
    pick_kernel(Dv, &simd, &W);
    const int nblk = (Dv + W - 1) / W;
    const long ntask = (long)B * Hv * nblk;
    float *scales = malloc(sizeof(float) * 2 * (size_t)B * Hk * T);
    if (!scales) return -1;
    float *qs = scales, *ks = scales + (size_t)B * Hk * T;
    int failed = 0;
#pragma omp parallel num_threads(o->threads > 0 ? o->threads : omp_get_max_threads())
    {
        /* per thread: a packed copy of the state block */
        float *packed = malloc(sizeof(float) * (size_t)Dk * W);
        const int ok = packed != NULL;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
        token_scales(p, qs, ks); /* ends with the team's barrier */
#pragma omp for schedule(dynamic)
        for (long task = 0; task < ntask; task++) {
            if (!ok) continue;
            /* Column block slowest: tasks running at the same time are other
             * heads, so no two threads write neighbouring bytes of one output
             * row every token (false sharing). */
            const int h = (int)(task % Hv), b = (int)((task / Hv) % B), blk = (int)(task / Hv / B);
            const int hk = h / (Hv / Hk), c0 = blk * W, ncols = Dv - c0 < W ? Dv - c0 : W;
            const int len = deltarule_valid_len(p, b);
            const size_t soff = ((size_t)b * Hv + h) * (size_t)Dk * Dv + c0;
            const float *init = p->initial_state ? p->initial_state + soff : NULL;
            float *fin = p->final_state ? p->final_state + soff : NULL;
            dr_colblock c = {
                .Dk = Dk, .ncols = ncols, .ntok = len,
                .q = p->q + ((size_t)b * T * Hk + hk) * Dk,
                .k = p->k + ((size_t)b * T * Hk + hk) * Dk,
                .qk_stride = (ptrdiff_t)Hk * Dk,
                .v = p->v + ((size_t)b * T * Hv + h) * Dv + c0,
                .o = p->out + ((size_t)b * T * Hv + h) * Dv + c0,
                .vo_stride = (ptrdiff_t)Hv * Dv,
                .g = p->g + (size_t)b * T * Hv + h, .beta = p->beta + (size_t)b * T * Hv + h,
                .gb_stride = Hv,
                .qscale = qs + ((size_t)b * Hk + hk) * T, .kscale = ks + ((size_t)b * Hk + hk) * T,
            };
            /* Rows of a block in the state are Dv floats apart: with Dv = 128
             * they fall in a quarter of L1's sets and evict each other every
             * token.  Over many tokens the block is worked on packed (rows W
             * floats apart, contiguous); a short run works in place. */
            const int use_packed = !fin || len >= PACK_MIN_TOKENS;
            if (use_packed) {
                for (int r = 0; r < Dk; r++)
                    if (init) memcpy(packed + r * W, init + r * Dv, sizeof(float) * ncols);
                    else memset(packed + r * W, 0, sizeof(float) * ncols);
                c.src = c.dst = packed;
                c.src_ld = c.dst_ld = W;
            } else {
                c.dst = fin;
                c.dst_ld = Dv;
                if (init) {
                    c.src = init;
                    c.src_ld = Dv;
                } else { /* zero state: clear the destination and run in place */
                    for (int r = 0; r < Dk; r++) memset(fin + r * Dv, 0, sizeof(float) * ncols);
                    c.src = fin;
                    c.src_ld = Dv;
                }
            }
            if (len == 0) { /* nothing valid: the state passes through */
                if (c.src != c.dst)
                    for (int r = 0; r < Dk; r++)
                        memmove(c.dst + r * c.dst_ld, c.src + r * c.src_ld, sizeof(float) * ncols);
            } else if (ncols == W && simd != dr_colblock_generic) {
                simd(&c);
            } else {
                dr_colblock_generic(&c);
            }
            if (use_packed && fin)
                for (int r = 0; r < Dk; r++) memcpy(fin + r * Dv, packed + r * W, sizeof(float) * ncols);
            for (int t = len; t < T; t++) /* right padding gives zero output */
                memset(c.o + (ptrdiff_t)t * c.vo_stride, 0, sizeof(float) * ncols);
        }
        free(packed);
    }
    free(scales);
    return failed ? -1 : 0;
}
