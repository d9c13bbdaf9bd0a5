#include "kernels/moe/moe_common.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

void moe_ffn_rows(const moe_problem *p, const void *wg, const void *wu, const void *wd, int I, int i0, int i1,
                  int m, const float *X, int ldx, const float *scale, float *Y, int ldy, int accumulate,
                  float *work)
{
    moe_ffn_rows_mm(p, q35_matmul_xwt, wg, wu, wd, I, i0, i1, m, X, ldx, scale, Y, ldy, accumulate, work);
}

void moe_matmul_amx(int M, int N, int K, const float *A, int lda, const void *W, q35_wtype wt, int ldw, float *C,
                    int ldc, int accumulate)
{
    if (wt != WT_BF16 || M <= 0 || K <= 0) {
        q35_matmul_xwt(M, N, K, A, lda, W, wt, ldw, C, ldc, accumulate);
        return;
    }
    const int la = q35_amx_lda(K);
    uint16_t *a = malloc((size_t)q35_amx_rows(M) * la * sizeof *a);
    if (!a) {
        q35_matmul_xwt_bf16dot(M, N, K, A, lda, W, wt, ldw, C, ldc, accumulate);
        return;
    }
    q35_bf16_round_padded(M, K, A, lda, 0, M, a);
    q35_matmul_bf16a_amx(M, N, K, a, la, (const uint16_t *)W, ldw, C, ldc, accumulate);
    free(a);
}

void moe_ffn_rows_mm(const moe_problem *p, moe_mm_fn mm, const void *wg, const void *wu, const void *wd, int I,
                     int i0, int i1, int m, const float *X, int ldx, const float *scale, float *Y, int ldy,
                     int accumulate, float *work)
{
    const int H = p->hidden, n = i1 - i0;
    float *G = work, *U = work + (size_t)m * n;
    /* rows [i0, i1) of Wg, Wu [I, H]; quantized i0 is a multiple of 32 (moe_per_token's slices) */
    mm(m, n, H, X, ldx, (const char *)wg + q35_w_offset(p->wt, H, (size_t)i0, 0), p->wt, H, G, n, 0);
    mm(m, n, H, X, ldx, (const char *)wu + q35_w_offset(p->wt, H, (size_t)i0, 0), p->wt, H, U, n, 0);
    for (int r = 0; r < m; r++) {
        const float sc = scale ? scale[r] : 1.0f;
        float *g = G + (size_t)r * n, *u = U + (size_t)r * n;
        for (int i = 0; i < n; i++) g[i] = sc * moe_silu(g[i]) * u[i];
    }
    /* down: columns [i0, i1) of Wd [hidden, I] */
    mm(m, H, n, G, n, (const char *)wd + q35_w_offset(p->wt, (size_t)I, 0, (size_t)i0), p->wt, I, Y, ldy, accumulate);
}

void moe_shared_gate(const moe_problem *p, float *gate)
{
    q35_matmul_xwt(p->T, 1, p->hidden, p->x, p->hidden, p->shared_expert_gate, moe_router_wt(p), p->hidden, gate, 1, 0);
    for (int t = 0; t < p->T; t++) gate[t] = 1.0f / (1.0f + expf(-gate[t]));
}

void moe_copy_routing(const moe_problem *p, const int32_t *ids, const float *weights)
{
    const size_t n = (size_t)p->T * p->top_k;
    if (p->topk_ids) memcpy(p->topk_ids, ids, n * sizeof *ids);
    if (p->topk_weights) memcpy(p->topk_weights, weights, n * sizeof *weights);
}

void moe_dispatch_free(moe_dispatch *d)
{
    free(d->ids); free(d->weights); free(d->start); free(d->pair); free(d->pos); free(d->order);
    memset(d, 0, sizeof *d);
}

static int cmp_ll(const void *a, const void *b)
{
    const long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* Experts by descending load, ties by index: sort keys (T*k - load, e). */
static int order_by_load(const moe_problem *p, moe_dispatch *d)
{
    const int E = p->E;
    const long long n = (long long)p->T * p->top_k;
    long long *key = malloc(sizeof(long long) * E);
    if (!key) return -1;
    for (int e = 0; e < E; e++) key[e] = (n - (d->start[e + 1] - d->start[e])) * E + e;
    qsort(key, E, sizeof *key, cmp_ll);
    for (int e = 0; e < E; e++) d->order[e] = (int)(key[e] % E);
    free(key);
    return 0;
}

int moe_dispatch_make(const moe_problem *p, moe_dispatch *d, int threads)
{
    const int T = p->T, k = p->top_k, E = p->E;
    const size_t n = (size_t)T * k;
    memset(d, 0, sizeof *d);
    d->ids = malloc(sizeof(int32_t) * n);
    d->weights = malloc(sizeof(float) * n);
    d->start = calloc((size_t)E + 1, sizeof(int));
    d->pair = malloc(sizeof(int) * n);
    d->pos = malloc(sizeof(int) * n);
    d->order = malloc(sizeof(int) * E);
    if (!d->ids || !d->weights || !d->start || !d->pair || !d->pos || !d->order ||
        moe_route(p, d->ids, d->weights, p->router_logits, threads)) {
        moe_dispatch_free(d);
        return -1;
    }
    /* pairs routed to experts not held (expert parallelism) get no row: pos -1 */
    for (size_t i = 0; i < n; i++)
        if (moe_holds(p, d->ids[i])) d->start[d->ids[i] + 1]++;
    for (int e = 0; e < E; e++) d->start[e + 1] += d->start[e];
    int *fill = malloc(sizeof(int) * E);
    if (!fill) { moe_dispatch_free(d); return -1; }
    memcpy(fill, d->start, sizeof(int) * E);
    for (size_t i = 0; i < n; i++) { /* i = t*k + slot ascending: stable by token */
        if (!moe_holds(p, d->ids[i])) { d->pos[i] = -1; continue; }
        const int at = fill[d->ids[i]]++;
        d->pair[at] = (int)i;
        d->pos[i] = at;
    }
    free(fill);
    d->mm = q35_matmul_xwt;
    if (order_by_load(p, d)) { moe_dispatch_free(d); return -1; }
    moe_copy_routing(p, d->ids, d->weights);
    return 0;
}

void moe_load_stats(const moe_problem *p, const int32_t *ids, moe_stats *st)
{
    const long long n = (long long)p->T * p->top_k;
    int *load = calloc(p->E, sizeof(int));
    st->rows = 0;
    st->experts_touched = st->max_load = 0;
    if (!load) return;
    for (long long i = 0; i < n; i++)
        if (moe_holds(p, ids[i])) load[ids[i]]++, st->rows++;
    for (int e = 0; e < p->E; e++) {
        st->experts_touched += load[e] > 0;
        if (load[e] > st->max_load) st->max_load = load[e];
    }
    free(load);
}

void moe_combine(const moe_problem *p, const moe_dispatch *d, const float *Y, const float *shared,
                 const float *gate, int threads)
{
    const int H = p->hidden, k = p->top_k;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int t = 0; t < p->T; t++) {
        float *o = p->out + (size_t)t * H;
        if (shared) {
            for (int j = 0; j < H; j++) o[j] = gate[t] * shared[(size_t)t * H + j];
        } else {
            memset(o, 0, sizeof(float) * H);
        }
        for (int s = 0; s < k; s++) {
            const int at = d->pos[(size_t)t * k + s];
            if (at < 0) continue; /* another rank's expert */
            const float w = d->weights[(size_t)t * k + s];
            const float *y = Y + (size_t)at * H;
            for (int j = 0; j < H; j++) o[j] += w * y[j];
        }
    }
}

/* Gathers the task's rows (zero rows for padding) and runs the expert. */
static void run_task(const moe_problem *p, const moe_dispatch *d, const moe_task *tk, float *Y, float *Sh,
                     float *X, float *Ytmp, float *work)
{
    const int H = p->hidden, k = p->top_k;
    for (int r = 0; r < tk->m; r++) {
        float *xr = X + (size_t)r * H;
        if (r >= tk->n) { memset(xr, 0, sizeof(float) * H); continue; }
        const int t = tk->e < 0 ? tk->r0 + r : d->pair[d->start[tk->e] + tk->r0 + r] / k;
        memcpy(xr, p->x + (size_t)t * H, sizeof(float) * H);
    }
    if (tk->e < 0) {
        moe_ffn_rows_mm(p, d->mm, p->shared_gate, p->shared_up, p->shared_down, p->inter_shared, 0, p->inter_shared,
                        tk->m, X, H, NULL, Sh + (size_t)tk->r0 * H, H, 0, work);
        return;
    }
    const int e = tk->e;
    float *dst = Y + (size_t)(d->start[e] + tk->r0) * H;
    /* padded rows need room of their own; valid rows go straight to Y */
    float *y = tk->m > tk->n ? Ytmp : dst;
    moe_ffn_rows_mm(p, d->mm, moe_gate(p, e), moe_up(p, e), moe_down(p, e), p->inter, 0, p->inter, tk->m, X, H, NULL,
                    y, H, 0, work);
    if (y != dst) memcpy(dst, y, sizeof(float) * H * tk->n);
}

int moe_run_tasks(const moe_problem *p, const moe_dispatch *d, const moe_task *tasks, int ntask, int threads)
{
    const int H = p->hidden, Imax = p->inter > p->inter_shared ? p->inter : p->inter_shared;
    int maxm = 1, failed = 0;
    for (int i = 0; i < ntask; i++)
        if (tasks[i].m > maxm) maxm = tasks[i].m;
    float *Y = malloc(sizeof(float) * ((size_t)p->T * p->top_k * H + 1));
    float *Sh = p->inter_shared ? malloc(sizeof(float) * (size_t)p->T * H) : NULL;
    float *gate = p->inter_shared ? malloc(sizeof(float) * p->T) : NULL;
    if (!Y || (p->inter_shared && (!Sh || !gate))) failed = 1;
    if (!failed) {
        if (p->inter_shared) moe_shared_gate(p, gate);
#pragma omp parallel num_threads(threads)
        {
            float *X = malloc(sizeof(float) * (size_t)maxm * H), *Ytmp = malloc(sizeof(float) * (size_t)maxm * H);
            float *work = malloc(sizeof(float) * 2 * (size_t)maxm * Imax);
            const int ok = X && Ytmp && work;
            if (!ok) {
#pragma omp atomic write
                failed = 1;
            }
#pragma omp for schedule(dynamic)
            for (int i = 0; i < ntask; i++)
                if (ok) run_task(p, d, &tasks[i], Y, Sh, X, Ytmp, work);
            free(X); free(Ytmp); free(work);
        }
    }
    if (!failed) moe_combine(p, d, Y, Sh, gate, threads);
    free(Y); free(Sh); free(gate);
    return failed ? -1 : 0;
}
