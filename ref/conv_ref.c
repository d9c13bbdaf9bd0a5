/* Scalar reference of the short causal conv: the executable spec.
 *
 * Straight from docs/conv.md eq. (1)-(2), channel by channel, in double.
 * Readable first; never optimized.  Same signature as every kernel in
 * kernels/conv/, so it can take any one's place.
 */
#include "ref/conv_ref.h"

#include <math.h>

/* x_ext[b, e, c]: the K-1 state columns (oldest first), then x. */
static double ext(const conv_problem *p, int b, int e, int c)
{
    const int S = p->K - 1;
    if (e < S) return p->state_in ? p->state_in[((size_t)b * p->C + c) * S + e] : 0.0;
    return p->x[((size_t)b * p->T + (e - S)) * p->C + c];
}

int conv_ref(const conv_problem *p, const conv_opts *o)
{
    (void)o; /* the reference has no knobs */
    const int K = p->K, S = K - 1, C = p->C, T = p->T;
    for (int b = 0; b < p->B; b++) {
        const int len = conv_valid_len(p, b);
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) {
                double a = 0.0;
                if (t < len) { /* eq. (1); padded positions give 0 */
                    for (int j = 0; j < K; j++) a += (double)p->weight[(size_t)c * K + j] * ext(p, b, t + j, c);
                    if (p->apply_silu) a = a / (1.0 + exp(-a));
                }
                p->y[((size_t)b * T + t) * C + c] = (float)a;
            }
        /* eq. (2): the new state is x_ext[len .. len+K-2], the last K-1 valid
         * inputs.  Reading index len+i >= i before writing i keeps this right
         * when state_out == state_in. */
        /* Checkpoints: the window after token t, x_ext[e0 .. e0+K-2] with
         * e0 = min(t+1, len) (eq. 2 at a shorter length).  Before state_out,
         * which may overwrite state_in. */
        for (int k = 0; k < p->n_checkpoints; k++) {
            const int e0 = p->checkpoint_t[k] + 1 < len ? p->checkpoint_t[k] + 1 : len;
            for (int c = 0; c < C; c++)
                for (int i = 0; i < S; i++)
                    p->checkpoint_states[(((size_t)k * p->B + b) * C + c) * S + i] = (float)ext(p, b, e0 + i, c);
        }
        if (p->state_out)
            for (int c = 0; c < C; c++)
                for (int i = 0; i < S; i++)
                    p->state_out[((size_t)b * C + c) * S + i] = (float)ext(p, b, len + i, c);
    }
    return 0;
}

const conv_impl conv_ref_impl = {"ref", "scalar reference, double accumulation (ref/conv_ref.c)",
     conv_ref, {0}, 1e-6, NULL};
