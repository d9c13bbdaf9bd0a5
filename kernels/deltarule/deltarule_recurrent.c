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

/* eq. (1) folded into per-token scalars for the n tokens of one (b, key
 * head): qs = scale/||q||, ks = 1/||k||.  Each task computes its own: the
 * cost is 4*Dk flops per token against 6*Dk*W for the block, and it saves a
 * second parallel region, which matters at T = 1 (decode). */
static void token_scales(const deltarule_problem *p, const float *q, const float *k, int n,
                         float *qs, float *ks)
{
    const float scale = deltarule_scale(p);
    const ptrdiff_t stride = (ptrdiff_t)p->Hk * p->Dk;
    for (int t = 0; t < n; t++) {
        if (!p->use_qk_l2norm) { qs[t] = scale; ks[t] = 1.0f; continue; }
        const float *qt = q + t * stride, *kt = k + t * stride;
        double sq = 0.0, sk = 0.0;
        for (int d = 0; d < p->Dk; d++) { sq += (double)qt[d] * qt[d]; sk += (double)kt[d] * kt[d]; }
        qs[t] = (float)(scale / sqrt(sq + 1e-6));
        ks[t] = (float)(1.0 / sqrt(sk + 1e-6));
    }
}

typedef void (*colblock_fn)(const dr_colblock *);

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
    int failed = 0;
    const long ntask = (long)B * Hv * nblk;
#pragma omp parallel num_threads(o->threads > 0 ? o->threads : omp_get_max_threads())
    {
        /* per thread: token scales, and a state block when the caller wants no final state */
        float *scales = malloc(sizeof(float) * 2 * (size_t)T);
        float *scratch = p->final_state ? NULL : malloc(sizeof(float) * (size_t)Dk * W);
        const int ok = scales && (p->final_state || scratch);
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
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
                .qscale = scales, .kscale = scales + T,
                .dst = p->final_state ? p->final_state + soff : scratch,
                .dst_ld = p->final_state ? Dv : W,
            };
            token_scales(p, c.q, c.k, len, scales, scales + T);
            if (p->initial_state) {
                c.src = p->initial_state + soff;
                c.src_ld = Dv;
            } else { /* zero state: clear the destination and run in place */
                for (int r = 0; r < Dk; r++) memset(c.dst + r * c.dst_ld, 0, sizeof(float) * ncols);
                c.src = c.dst;
                c.src_ld = c.dst_ld;
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
            for (int t = len; t < T; t++) /* right padding gives zero output */
                memset(c.o + (ptrdiff_t)t * c.vo_stride, 0, sizeof(float) * ncols);
        }
        free(scratch);
        free(scales);
    }
    return failed ? -1 : 0;
}
