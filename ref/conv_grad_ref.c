/* Scalar reference of the short conv's backward: the executable spec.
 *
 * docs/conv.md "Backward": with pre[b,t,c] = sum_j w[c,j] x_ext[b,t+j,c]
 * for t < len_b,
 *   g[b,t,c]   = dy[b,t,c] * silu'(pre[b,t,c])   (dy without SiLU)      (B1)
 *   dx_ext[b,e,c] = sum_{t<len_b, j: t+j=e} w[c,j] g[b,t,c]
 *                 + [len_b <= e < len_b+K-1] d_state_out[b,c,e-len_b]   (B2)
 *   dw[c,j]    = sum_b sum_{t<len_b} g[b,t,c] x_ext[b,t+j,c]             (B3)
 *   d_state_in[b,c,i] = dx_ext[b,i,c],  dx[b,t,c] = dx_ext[b,t+K-1,c]    (B4)
 * computed as written: every term of the forward pushes its share back.
 * Double throughout, never optimized.
 */
#include "ref/conv_grad_ref.h"

#include <math.h>
#include <stdlib.h>

static double ext(const conv_problem *p, int b, int e, int c)
{
    const int S = p->K - 1;
    if (e < S) return p->state_in ? p->state_in[((size_t)b * p->C + c) * S + e] : 0.0;
    return p->x[((size_t)b * p->T + (e - S)) * p->C + c];
}

int conv_grad_ref(const conv_grad_problem *g, const conv_opts *o)
{
    (void)o; /* the reference has no knobs */
    const conv_problem *p = g->fwd;
    const int B = p->B, T = p->T, C = p->C, K = p->K, S = K - 1;
    double *dext = malloc(sizeof(double) * (size_t)(T + S)); /* dx_ext[b, :, c] */
    double *dw = calloc((size_t)K, sizeof(double));
    if (!dext || !dw) { free(dext); free(dw); return -1; }
    for (int c = 0; c < C; c++) {
        for (int j = 0; j < K; j++) dw[j] = 0.0;
        for (int b = 0; b < B; b++) {
            const int len = conv_valid_len(p, b);
            for (int e = 0; e < T + S; e++) dext[e] = 0.0;
            for (int t = 0; t < len; t++) {
                double pre = 0.0;
                for (int j = 0; j < K; j++) pre += (double)p->weight[(size_t)c * K + j] * ext(p, b, t + j, c);
                double gt = g->dy[((size_t)b * T + t) * C + c]; /* (B1) */
                if (p->apply_silu) {
                    const double s = 1.0 / (1.0 + exp(-pre));
                    gt *= s * (1.0 + pre * (1.0 - s));
                }
                for (int j = 0; j < K; j++) {
                    dext[t + j] += (double)p->weight[(size_t)c * K + j] * gt; /* (B2) */
                    dw[j] += gt * ext(p, b, t + j, c);                        /* (B3) */
                }
            }
            if (g->d_state_out) /* (B2): state_out[i] = x_ext[len + i] */
                for (int i = 0; i < S; i++) dext[len + i] += g->d_state_out[((size_t)b * C + c) * S + i];
            for (int t = 0; t < T; t++) /* (B4); padded tokens reach nothing, so 0 */
                g->dx[((size_t)b * T + t) * C + c] = (float)dext[t + S];
            if (p->state_in)
                for (int i = 0; i < S; i++) g->d_state_in[((size_t)b * C + c) * S + i] = (float)dext[i];
        }
        for (int j = 0; j < K; j++) g->dweight[(size_t)c * K + j] = (float)dw[j];
    }
    free(dext);
    free(dw);
    return 0;
}

const conv_grad_impl conv_grad_ref_impl = {"ref", "scalar reference, double, chain rule as written (ref/conv_grad_ref.c)",
                                           conv_grad_ref, 1e-6, NULL};

void conv_forward_ref_f64(const conv_problem *p, const double *x, const double *weight, const double *state_in,
                          double *y, double *state_out)
{
    const int B = p->B, T = p->T, C = p->C, K = p->K, S = K - 1;
#define EXT(b, e, c) ((e) < S ? (state_in ? state_in[((size_t)(b) * C + (c)) * S + (e)] : 0.0) \
                              : x[((size_t)(b) * T + ((e) - S)) * C + (c)])
    for (int b = 0; b < B; b++) {
        const int len = conv_valid_len(p, b);
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) {
                double a = 0.0;
                if (t < len) { /* eq. (1) */
                    for (int j = 0; j < K; j++) a += weight[(size_t)c * K + j] * EXT(b, t + j, c);
                    if (p->apply_silu) a = a / (1.0 + exp(-a));
                }
                y[((size_t)b * T + t) * C + c] = a;
            }
        if (state_out) /* eq. (2) */
            for (int c = 0; c < C; c++)
                for (int i = 0; i < S; i++) state_out[((size_t)b * C + c) * S + i] = EXT(b, len + i, c);
    }
#undef EXT
}
