/* Scalar reference of causal GQA softmax attention: the executable spec.
 *
 * Straight from docs/attention.md eq. (1)-(2): for each sequence b, valid
 * token t (position p = past[b] + t) and query head h,
 *
 *   s_j = scale * q[b,t,h,:] . k_cache[b, h/(Hq/Hkv), j, :]      j = 0..p   (1)
 *   m   = max_j s_j
 *   out = sum_j exp(s_j - m) v_j  /  sum_j exp(s_j - m)                      (2)
 *
 * two passes over the keys (scores, then max-subtracted exponentials), all in
 * double.  Readable first; never optimized.  Same signature as every kernel
 * in kernels/attention/, so it can take any one's place.
 */
#include "ref/attention_ref.h"

#include <math.h>
#include <stdlib.h>

int attention_ref(const attention_problem *p, const attention_opts *o)
{
    (void)o; /* the reference has no knobs */
    const int T = p->T, Hq = p->Hq, Hkv = p->Hkv, D = p->D, L = p->L;
    const int group = Hq / Hkv; /* query heads per KV head */
    const double scale = (double)attention_scale(p);
    double *s = malloc(sizeof(double) * (size_t)L);     /* scores of one query row */
    double *acc = malloc(sizeof(double) * (size_t)D);   /* sum_j w_j v_j */
    if (!s || !acc) { free(s); free(acc); return -1; }

    for (int b = 0; b < p->B; b++) {
        const int past = attention_past(p, b), len = attention_valid_len(p, b);
        for (int t = 0; t < T; t++)
            for (int h = 0; h < Hq; h++) {
                float *o_row = p->out + (((size_t)b * T + t) * Hq + h) * D;
                if (t >= len) { /* right padding: zero rows */
                    for (int d = 0; d < D; d++) o_row[d] = 0.0f;
                    continue;
                }
                const int pos = past + t, kvh = h / group;
                const float *q = p->q + (((size_t)b * T + t) * Hq + h) * D;
                const float *k = p->k_cache + ((size_t)b * Hkv + kvh) * L * D;
                const float *v = p->v_cache + ((size_t)b * Hkv + kvh) * L * D;

                /* eq. (1): scores of keys 0..pos (causal) */
                double m = -INFINITY;
                for (int j = 0; j <= pos; j++) {
                    double dot = 0.0;
                    for (int d = 0; d < D; d++) dot += (double)q[d] * (double)k[(size_t)j * D + d];
                    s[j] = scale * dot;
                    if (s[j] > m) m = s[j];
                }
                /* eq. (2): second pass, exponentials relative to the max */
                double l = 0.0;
                for (int d = 0; d < D; d++) acc[d] = 0.0;
                for (int j = 0; j <= pos; j++) {
                    const double w = exp(s[j] - m);
                    l += w;
                    for (int d = 0; d < D; d++) acc[d] += w * (double)v[(size_t)j * D + d];
                }
                for (int d = 0; d < D; d++) o_row[d] = (float)(acc[d] / l);
            }
    }
    free(s);
    free(acc);
    return 0;
}

const attention_impl attention_ref_impl = {"ref", "scalar reference: two-pass softmax, double accumulation (ref/attention_ref.c)",
     attention_ref, {0}, 1e-6, NULL};
