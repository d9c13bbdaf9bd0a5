/* The router shared by every optimized MoE implementation (docs/moe.md
 * eqs. (1)-(4)):
 *   logits = x W_router^T           q35_matmul_xwt, fp32 accumulation
 *   p      = softmax(logits)        fp32, max subtracted, over all E experts
 *   top-k  of p                     descending, equal probabilities to the lower index
 *   w      = p / sum_k p            only if norm_topk_prob
 * Tokens are independent: with many tokens, OpenMP threads take contiguous
 * ranges of tokens and run the logits GEMM and the selection on their own
 * range.  Selection is an insertion into a k-long sorted list (O(E k)) for
 * k <= ROUTE_INSERT_MAX_K and a full sort of the E experts above that.
 */
#include "kernels/moe/moe.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define ROUTE_INSERT_MAX_K 32
#define ROUTE_PARALLEL_MIN_T 32 /* fewer tokens: one thread (the GEMM is tiny) */

typedef struct { float v; int i; } scored;

/* Descending value, then ascending index; NaN sorts last, so the order is total. */
static int scored_cmp(const void *pa, const void *pb)
{
    const scored *a = pa, *b = pb;
    const int an = a->v != a->v, bn = b->v != b->v;
    if (an != bn) return an - bn;
    if (!an && a->v != b->v) return a->v > b->v ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* eq. (2) into prob[0..E), then eq. (3) into ids/vals[0..k). */
static void route_token(const float *logit, int E, int k, float *prob, scored *sorted, int32_t *ids, float *vals)
{
    float m = logit[0];
    for (int e = 1; e < E; e++) if (logit[e] > m) m = logit[e];
    float z = 0.0f;
    for (int e = 0; e < E; e++) { prob[e] = expf(logit[e] - m); z += prob[e]; }
    for (int e = 0; e < E; e++) prob[e] /= z;

    if (k <= ROUTE_INSERT_MAX_K) {
        /* Sorted insertion: a new expert moves ahead only of strictly smaller
         * probabilities, so among equals the lower index (seen first) stays first. */
        int n = 0;
        for (int e = 0; e < E; e++) {
            const float v = prob[e];
            int pos;
            if (n < k) pos = n++;
            else if (v > vals[k - 1]) pos = k - 1;
            else continue;
            while (pos > 0 && v > vals[pos - 1]) {
                vals[pos] = vals[pos - 1];
                ids[pos] = ids[pos - 1];
                pos--;
            }
            vals[pos] = v;
            ids[pos] = e;
        }
    } else {
        for (int e = 0; e < E; e++) sorted[e] = (scored){prob[e], e};
        qsort(sorted, (size_t)E, sizeof *sorted, scored_cmp);
        for (int j = 0; j < k; j++) { vals[j] = sorted[j].v; ids[j] = sorted[j].i; }
    }
}

int moe_route(const moe_problem *p, int32_t *ids, float *weights, float *logits, int threads)
{
    if (!p || !ids || !weights) return -1;
    const int T = p->T, E = p->E, H = p->hidden, k = p->top_k;
    float *L = logits ? logits : malloc(sizeof(float) * (size_t)T * E);
    if (!L) return -1;
    int nt = threads > 0 ? threads : omp_get_max_threads();
    if (T < ROUTE_PARALLEL_MIN_T || nt < 1) nt = 1;
    if (nt > T) nt = T;
    int failed = 0;

#pragma omp parallel num_threads(nt) if (nt > 1) reduction(| : failed)
    {
        const int tid = omp_get_thread_num(), n = omp_get_num_threads();
        const int t0 = (int)((long long)T * tid / n), t1 = (int)((long long)T * (tid + 1) / n);
        float *prob = malloc(sizeof(float) * E);
        scored *sorted = k > ROUTE_INSERT_MAX_K ? malloc(sizeof(scored) * E) : NULL;
        if (!prob || (k > ROUTE_INSERT_MAX_K && !sorted)) failed = 1;
        else if (t1 > t0) {
            /* eq. (1) for tokens [t0, t1) */
            q35_matmul_xwt(t1 - t0, E, H, p->x + (size_t)t0 * H, H, p->router, moe_router_wt(p), H, L + (size_t)t0 * E, E, 0);
            for (int t = t0; t < t1; t++) {
                int32_t *id = ids + (size_t)t * k;
                float *w = weights + (size_t)t * k;
                route_token(L + (size_t)t * E, E, k, prob, sorted, id, w);
                if (p->norm_topk_prob) { /* eq. (4) */
                    float s = 0.0f;
                    for (int j = 0; j < k; j++) s += w[j];
                    for (int j = 0; j < k; j++) w[j] /= s;
                }
            }
        }
        free(prob);
        free(sorted);
    }
    if (!logits) free(L);
    return failed ? -1 : 0;
}
