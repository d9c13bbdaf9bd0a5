/* per_token: each token's k experts (and the shared expert) as
 * matrix-vector products, the natural decode path (docs/moe.md §3).
 *
 * With at least as many tokens as threads, tokens go to threads.  With fewer
 * (decode: T = 1), each expert's intermediate dimension I is cut into slices
 * and the (token, expert, slice) tasks spread over the threads, each thread
 * summing into its own output rows, added up at the end: 8 experts + the
 * shared one would not split evenly over 2 threads otherwise.
 */
#include "kernels/moe/moe_common.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Token t, slot s (s == k: the shared expert), intermediate rows [i0, i1),
 * accumulated into acc (hidden floats). */
static void token_task(const moe_problem *p, const int32_t *ids, const float *w, const float *gate, int t, int s,
                       int i0, int i1, float *acc, float *work)
{
    const float *x = p->x + (size_t)t * p->hidden;
    if (s < p->top_k) {
        const int e = ids[(size_t)t * p->top_k + s];
        if (!moe_holds(p, e)) return; /* another rank's expert (expert parallelism) */
        moe_ffn_rows(p, moe_gate(p, e), moe_up(p, e), moe_down(p, e), p->inter, i0, i1, 1, x, p->hidden,
                     &w[(size_t)t * p->top_k + s], acc, p->hidden, 1, work);
    } else {
        moe_ffn_rows(p, p->shared_gate, p->shared_up, p->shared_down, p->inter_shared, i0, i1, 1, x, p->hidden, &gate[t],
                     acc, p->hidden, 1, work);
    }
}

int moe_per_token(const moe_problem *p, const moe_opts *o, moe_stats *st)
{
    const int T = p->T, k = p->top_k, H = p->hidden, slots = k + (p->inter_shared > 0);
    const int threads = o->threads > 0 ? o->threads : omp_get_max_threads();
    const int Imax = p->inter > p->inter_shared ? p->inter : p->inter_shared;
    int32_t *ids = malloc(sizeof(int32_t) * T * k);
    float *w = malloc(sizeof(float) * T * k), *gate = malloc(sizeof(float) * T);
    /* decode: slices so that there are >= 4 tasks per thread */
    const int nslice = T >= threads ? 1 : (4 * threads + slots * T - 1) / (slots * T);
    float *acc = T >= threads ? NULL : calloc((size_t)threads * T * H, sizeof(float));
    int failed = !ids || !w || !gate || (T < threads && !acc) || moe_route(p, ids, w, p->router_logits, threads);
    if (failed) { free(ids); free(w); free(gate); free(acc); return -1; }
    if (!failed) {
        openblas_set_num_threads(1); /* parallelism is ours */
        moe_copy_routing(p, ids, w);
        if (p->inter_shared) moe_shared_gate(p, gate);
#pragma omp parallel num_threads(threads)
        {
            float *work = malloc(sizeof(float) * 2 * (size_t)Imax);
            if (!work) {
#pragma omp atomic write
                failed = 1;
            }
            if (T >= threads) {
#pragma omp for schedule(dynamic)
                for (int t = 0; t < T; t++) {
                    if (!work) continue;
                    float *out = p->out + (size_t)t * H;
                    memset(out, 0, sizeof(float) * H);
                    for (int s = 0; s < slots; s++)
                        token_task(p, ids, w, gate, t, s, 0, s < k ? p->inter : p->inter_shared, out, work);
                }
            } else {
                float *mine = acc + (size_t)omp_get_thread_num() * T * H;
                /* static: the same thread sums the same parts every run */
#pragma omp for schedule(static)
                for (int task = 0; task < T * slots * nslice; task++) {
                    if (!work) continue;
                    const int sl = task % nslice, s = (task / nslice) % slots, t = task / nslice / slots;
                    /* quantized W: slices of whole blocks, the down projection's columns start on one */
                    const int g = q35_wtype_is_quant(p->wt) ? Q35_QBLOCK : 1;
                    const int n = s < k ? p->inter : p->inter_shared, i0 = (int)((long)n * sl / nslice) / g * g,
                              i1 = sl + 1 == nslice ? n : (int)((long)n * (sl + 1) / nslice) / g * g;
                    if (i1 > i0) token_task(p, ids, w, gate, t, s, i0, i1, mine + (size_t)t * H, work);
                }
                /* out = sum over threads, after the implicit barrier above */
#pragma omp for schedule(static)
                for (long i = 0; i < (long)T * H; i++) {
                    float sum = 0.0f;
                    for (int th = 0; th < threads; th++) sum += acc[(size_t)th * T * H + i];
                    p->out[i] = sum;
                }
            }
            free(work);
        }
    }
    if (!failed) moe_load_stats(p, ids, st);
    free(ids); free(w); free(gate); free(acc);
    return failed ? -1 : 0;
}
