/* Scalar reference of the Qwen3.5 sparse MoE block: the executable spec.
 *
 * Straight from docs/moe.md eqs. (1)-(7), token by token, in double.  Weights
 * are read element by element with q35_w_rc, so bf16 weights enter as their
 * exact values.  The router is its own, in double (it does not call
 * moe_route): softmax over all E experts, top-k in descending probability
 * with ties to the lower expert index, optional renormalization.  Readable
 * first; never optimized.  Same signature as every kernel in kernels/moe/.
 */
#include "ref/moe_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* sum_h W[row, h] * x[h], in double (W rows of n elements; q35_w_rc reads any layout, the interleaved
 * ones too, element by element). */
static double dot_w(const void *W, q35_wtype wt, size_t row, int n, const double *x)
{
    double acc = 0.0;
    for (int h = 0; h < n; h++) acc += (double)q35_w_rc(W, wt, (size_t)n, row, (size_t)h) * x[h];
    return acc;
}

static double silu(double z) { return z / (1.0 + exp(-z)); }
static double sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }

/* eq. (3): descending probability, equal probabilities in increasing expert index. */
static int better(const double *prob, int a, int b)
{
    return prob[a] > prob[b] || (prob[a] == prob[b] && a < b);
}

/* eqs. (5)-(6): acc += scale * Wd (silu(Wg x) * (Wu x)) for one SwiGLU MLP
 * with intermediate size n_mid; Wg, Wu are [n_mid, H], Wd is [H, n_mid]. */
static void swiglu_acc(const void *Wg, const void *Wu, const void *Wd, q35_wtype wt, int H, int n_mid,
                       const double *x, double scale, double *mid, double *acc)
{
    for (int i = 0; i < n_mid; i++) mid[i] = silu(dot_w(Wg, wt, i, H, x)) * dot_w(Wu, wt, i, H, x);
    for (int h = 0; h < H; h++) acc[h] += scale * dot_w(Wd, wt, h, n_mid, mid);
}

int moe_ref(const moe_problem *p, const moe_opts *o, moe_stats *st)
{
    (void)o; /* the reference has no knobs */
    const int H = p->hidden, E = p->E, k = p->top_k;
    const int mid_n = p->inter > p->inter_shared ? p->inter : p->inter_shared;
    double *x = malloc(sizeof(double) * H), *acc = malloc(sizeof(double) * H);
    double *logit = malloc(sizeof(double) * E), *prob = malloc(sizeof(double) * E);
    double *mid = malloc(sizeof(double) * mid_n);
    int *sel = malloc(sizeof(int) * k), *load = calloc(E, sizeof(int));
    unsigned char *taken = malloc(E);
    int rc = -1;
    if (!x || !acc || !logit || !prob || !mid || !sel || !load || !taken) goto done;

    for (int t = 0; t < p->T; t++) {
        for (int h = 0; h < H; h++) x[h] = p->x[(size_t)t * H + h];

        /* eq. (1): router logits */
        for (int e = 0; e < E; e++) logit[e] = dot_w(p->router, moe_router_wt(p), e, H, x);
        /* eq. (2): softmax over all E experts, max subtracted */
        double m = logit[0], z = 0.0;
        for (int e = 1; e < E; e++) if (logit[e] > m) m = logit[e];
        for (int e = 0; e < E; e++) { prob[e] = exp(logit[e] - m); z += prob[e]; }
        for (int e = 0; e < E; e++) prob[e] /= z;
        /* eq. (3): top-k by repeated selection of the best unchosen expert */
        memset(taken, 0, E);
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int e = 0; e < E; e++)
                if (!taken[e] && (best < 0 || better(prob, e, best))) best = e;
            sel[j] = best;
            taken[best] = 1;
        }
        /* eq. (4): renormalization over the chosen k */
        double norm = 1.0;
        if (p->norm_topk_prob) {
            double s = 0.0;
            for (int j = 0; j < k; j++) s += prob[sel[j]];
            norm = 1.0 / s;
        }

        /* eqs. (5), (7): the weighted sum of the chosen experts */
        for (int h = 0; h < H; h++) acc[h] = 0.0;
        for (int j = 0; j < k; j++) {
            const int e = sel[j];
            const double w = prob[e] * norm;
            if (moe_holds(p, e)) { /* a token's share of an expert not held is another rank's (docs/tp.md) */
                load[e]++;
                swiglu_acc(moe_gate(p, e), moe_up(p, e), moe_down(p, e), p->wt, H, p->inter, x, w, mid, acc);
            }
            if (p->topk_ids) p->topk_ids[(size_t)t * k + j] = e;
            if (p->topk_weights) p->topk_weights[(size_t)t * k + j] = (float)w;
        }
        /* eq. (6): the shared expert, gated by sigmoid(w_sg . x) */
        if (p->inter_shared > 0) {
            const double g = sigmoid(dot_w(p->shared_expert_gate, moe_router_wt(p), 0, H, x));
            swiglu_acc(p->shared_gate, p->shared_up, p->shared_down, p->wt, H, p->inter_shared, x, g, mid, acc);
        }
        for (int h = 0; h < H; h++) p->out[(size_t)t * H + h] = (float)acc[h];
        if (p->router_logits)
            for (int e = 0; e < E; e++) p->router_logits[(size_t)t * E + e] = (float)logit[e];
    }
    if (st) {
        st->rows = 0;
        for (int e = 0; e < E; e++) st->rows += load[e];
        st->padded_rows = 0;
        st->experts_touched = 0;
        st->max_load = 0;
        for (int e = 0; e < E; e++) {
            st->experts_touched += load[e] > 0;
            if (load[e] > st->max_load) st->max_load = load[e];
        }
    }
    rc = 0;
done:
    free(x); free(acc); free(logit); free(prob); free(mid); free(sel); free(load); free(taken);
    return rc;
}

const moe_impl moe_ref_impl = {"ref", "scalar reference, double accumulation, its own double-precision router (ref/moe_ref.c)",
     moe_ref, {0}, 1e-12, 1e-12, NULL, 0};
