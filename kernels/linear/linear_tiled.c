/* linear_tiled - q35_matmul_xwt (kernels/matmul: AVX-512 / AVX2 / generic, bf16 widened
 * in registers) on column panels of W spread over OpenMP threads.
 *
 * Why columns: at decode (M = 1) the work is reading W once, so the threads
 * must split W; at prefill each panel of W is packed once and streamed
 * against all M rows, which is what the PACKED strategy wants.  Panels are
 * a multiple of 16 columns (the micro-kernel width) and there are about
 * four per thread so a slow thread on a noisy host does not hold the rest.
 * One row of x through the integer dots is split differently: one share of
 * the bytes per thread (row_share below).
 */
#include "kernels/linear/linear.h"

#include <omp.h>
#include <stdlib.h>

/* Column panels of W per thread, each a multiple of `align` columns (the micro-kernel's width)
 * and at least 64: the split every entry of this file uses.  Returns the panel count.  Four per
 * thread (a slow thread on a noisy host does not hold the rest), two for one row of x (decode of
 * one sequence), where each panel's start is a burst of first misses on its row streams: the
 * 0.8B's q4 decode spent 16.45 ms a step in linear calls with four, 15.95 with two (`bench model`
 * per-step split, 2 alternated runs each; docs/matmul.md).  One row only: a row of x alone comes
 * out the same in any split, so decode's numbers do not move, while at M > 1 the panel width
 * can change the tile a row gets (and tests/test_model.c's batch-against-alone margin with it). */
static int panels(int N, int M, int threads, int align, int *panel)
{
    const int per = M == 1 ? 2 : 4;
    int w = (N + per * threads - 1) / (per * threads);
    w = (w + align - 1) / align * align;
    *panel = w < 64 ? 64 : w;
    return (N + *panel - 1) / *panel;
}

typedef void (*mm_fn)(int M, int N, int K, const float *A, int lda, const void *W, q35_wtype wt, int ldw, float *C,
                      int ldc, int accumulate);

/* The column panels of n problems (linear_run_shared: projections of one x; one problem for the
 * single entries), each split by panels() exactly as it would be alone, in one list: so each y is
 * bitwise the same whether its problem runs alone or with the others. */
#define SHARED_MAX 16 /* problems per shared call; more run one by one */

typedef struct {
    int total, panel[SHARED_MAX], first[SHARED_MAX + 1];
} panel_list;

static void list_panels(const linear_problem *ps, int n, int threads, panel_list *l)
{
    l->first[0] = 0;
    for (int i = 0; i < n; i++) l->first[i + 1] = l->first[i] + panels(ps[i].N, ps[i].M, threads, 16, &l->panel[i]);
    l->total = l->first[n];
}

/* Panel j of the list: its problem, first column and width. */
static const linear_problem *panel_at(const linear_problem *ps, const panel_list *l, int j, int *n0, int *nn)
{
    int i = 0;
    while (j >= l->first[i + 1]) i++;
    *n0 = (j - l->first[i]) * l->panel[i];
    *nn = ps[i].N - *n0 < l->panel[i] ? ps[i].N - *n0 : l->panel[i];
    return &ps[i];
}

/* Columns n0 .. n0+nn-1 of p through mm, or (xa non-NULL) through the integer dots for a quantized W. */
static void run_columns(const linear_problem *p, int n0, int nn, mm_fn mm, const q35_qact *xa)
{
    const char *w = (const char *)p->w + q35_wtype_bytes(p->wt, (size_t)n0 * p->K);
    if (xa && q35_wtype_is_quant(p->wt) && q35_int8dot_takes(p->wt, p->M))
        q35_matmul_qact_xwt(p->M, nn, p->K, xa, 0, w, p->wt, p->K, p->y + n0, p->N, p->accumulate);
    else
        mm(p->M, nn, p->K, p->x, p->K, w, p->wt, p->K, p->y + n0, p->N, p->accumulate);
}

static void run_panel(const linear_problem *ps, const panel_list *l, int j, mm_fn mm, const q35_qact *xa)
{
    int n0, nn;
    const linear_problem *p = panel_at(ps, l, j, &n0, &nn);
    run_columns(p, n0, nn, mm, xa);
}

/* ---- One row of x through the integer dots: one share of the bytes per thread ----
 * At decode a call is nothing but reading W.  Thread t of nt takes the 16-column units of the
 * problems (in order, as if their W were one matrix) whose first byte lies in [tot·t/nt,
 * tot·(t+1)/nt): one stream per thread, no scheduling, and no barrier, since each thread quantizes
 * x for itself.  With the two vCPUs on two dies of a Zen 4 host this took the 0.8B's q4 decode
 * from about 1.52x to 1.45x of its probed bound; on one die it changed nothing (docs/quantization.md
 * §8, "One share a thread").  The exact path has no barrier to save, and its bf16 decode measured
 * the same or slower with the shares, so it keeps the panels.  Any split gives a row the same bits:
 * each column's sum does not depend on which thread computes it. */
static size_t unit_bytes(const linear_problem *p) { return q35_wtype_bytes(p->wt, (size_t)16 * p->K); }
static int units(const linear_problem *p) { return (p->N + 15) / 16; }

/* The first unit of a problem starting at byte `at` whose own first byte is at or past b. */
static int first_unit_from(size_t b, size_t at, size_t ub, int n_units)
{
    if (b <= at) return 0;
    const size_t u = (b - at + ub - 1) / ub;
    return u > (size_t)n_units ? n_units : (int)u;
}

static void row_share(const linear_problem *ps, int n, int t, int nt, mm_fn mm, const q35_qact *xa)
{
    size_t tot = 0;
    for (int i = 0; i < n; i++) tot += unit_bytes(&ps[i]) * units(&ps[i]);
    const size_t b0 = tot / nt * t + tot % nt * t / nt, b1 = tot / nt * (t + 1) + tot % nt * (t + 1) / nt;
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        const size_t ub = unit_bytes(&ps[i]);
        const int u0 = first_unit_from(b0, at, ub, units(&ps[i])), u1 = first_unit_from(b1, at, ub, units(&ps[i]));
        at += ub * units(&ps[i]);
        if (u1 > u0) run_columns(&ps[i], u0 * 16, (u1 * 16 < ps[i].N ? u1 * 16 : ps[i].N) - u0 * 16, mm, xa);
    }
}

/* ps[0..n) (n <= SHARED_MAX) in one parallel region, panels dynamically scheduled. */
static int tiled_group(const linear_problem *ps, int n, const linear_opts *o, mm_fn mm)
{
    const int threads = o->threads > 0 ? o->threads : omp_get_max_threads();
    panel_list l;
    list_panels(ps, n, threads, &l);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (l.total > 1)
    for (int j = 0; j < l.total; j++) run_panel(ps, &l, j, mm, NULL);
    return 0;
}

static int tiled(const linear_problem *p, const linear_opts *o, mm_fn mm) { return tiled_group(p, 1, o, mm); }

int linear_tiled(const linear_problem *p, const linear_opts *o) { return tiled(p, o, q35_matmul_xwt); }

/* The same panels through the BF16-dot matmul (x rounded to bf16; docs/matmul.md). */
int linear_tiled_bf16dot(const linear_problem *p, const linear_opts *o)
{
    return tiled(p, o, q35_matmul_xwt_bf16dot);
}

/* AMX (docs/matmul.md "AMX path"): x rounded to bf16 once, into the padded rows the tile loads
 * need, then panels of W of 32 columns' multiples (the kernel's block) over the threads.  fp32 W:
 * the exact tiled path.  Without memory for the rounded x: tiled-bf16dot (the same rounding). */
int linear_tiled_amx(const linear_problem *p, const linear_opts *o)
{
    if (p->wt != WT_BF16) return linear_tiled(p, o);
    const int threads = o->threads > 0 ? o->threads : omp_get_max_threads();
    const int lda = q35_amx_lda(p->K), rows = q35_amx_rows(p->M);
    uint16_t *xa = malloc((size_t)rows * lda * sizeof *xa);
    if (!xa) return linear_tiled_bf16dot(p, o);
    int panel;
    const int n_panels = panels(p->N, p->M, threads, 32, &panel);
#pragma omp parallel num_threads(threads) if (n_panels > 1 || p->M > 64)
    {
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        const int m0 = (int)((long long)p->M * t / nt), m1 = (int)((long long)p->M * (t + 1) / nt);
        q35_bf16_round_padded(p->M, p->K, p->x, p->K, m0, m1, xa);
#pragma omp barrier
#pragma omp for schedule(dynamic, 1)
        for (int j = 0; j < n_panels; j++) {
            const int n0 = j * panel, nn = p->N - n0 < panel ? p->N - n0 : panel;
            q35_matmul_bf16a_amx(p->M, nn, p->K, xa, lda, (const uint16_t *)p->w + (size_t)n0 * p->K, p->K,
                                 p->y + n0, p->N, p->accumulate);
        }
    }
    free(xa);
    return 0;
}

/* Integer dot (docs/quantization.md "Integer-dot path"), quantized W only: x quantized per 32-element
 * block once (eq. A8q; rows split over the threads), then the same column panels as tiled through
 * q35_matmul_qact_xwt; in a group, the fp32 / bf16 W (a --quant-only model) take the exact path
 * in the same region, and so do quantized W that q35_int8dot_takes() refuses (ggml's rows from
 * Q35_INT8DOT_MAX_M rows of x; kernels/matmul/matmul.h).  No quantized W that takes them, or K not
 * whole blocks: the exact tiled path.  Without memory for the quantized x: the
 * exact tiled path too (more accurate, never wrong). */
static int int8dot_group(const linear_problem *ps, int n, const linear_opts *o)
{
    int quant = 0;
    for (int i = 0; i < n; i++) quant |= q35_wtype_is_quant(ps[i].wt) && q35_int8dot_takes(ps[i].wt, ps[i].M);
    if (!quant || ps[0].K % Q35_QBLOCK) return tiled_group(ps, n, o, q35_matmul_xwt);
    const int threads = o->threads > 0 ? o->threads : omp_get_max_threads();
    panel_list l;
    list_panels(ps, n, threads, &l);
    /* One row of x: a copy of its quantized blocks per thread, a cache line apart. */
    const int M = ps[0].M, K = ps[0].K, one_row = M == 1 && l.total > 1;
    const size_t xa_bytes = (q35_qact_bytes(M, K) + 63) / 64 * 64;
    void *mem = malloc(xa_bytes * (one_row ? threads : 1));
    if (!mem) return tiled_group(ps, n, o, q35_matmul_xwt);
    q35_qact xa;
    q35_qact_init(&xa, M, K, mem);
#pragma omp parallel num_threads(threads) if (l.total > 1)
    {
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        if (one_row) {
            q35_qact mine;
            q35_qact_init(&mine, 1, K, (char *)mem + xa_bytes * t);
            q35_qact_quantize_rows(&mine, ps[0].x, K, 0, 1);
            row_share(ps, n, t, nt, q35_matmul_xwt, &mine);
        } else {
            q35_qact_quantize_rows(&xa, ps[0].x, K, (int)((long long)M * t / nt), (int)((long long)M * (t + 1) / nt));
#pragma omp barrier
#pragma omp for schedule(dynamic, 1)
            for (int j = 0; j < l.total; j++) run_panel(ps, &l, j, q35_matmul_xwt, &xa);
        }
    }
    free(mem);
    return 0;
}

int linear_tiled_int8dot(const linear_problem *p, const linear_opts *o) { return int8dot_group(p, 1, o); }

/* ---- Several projections of one x (linear_run_shared) ----
 * One list of their panels, one parallel region: one fork and one tail for the group instead of
 * one per matrix.  Decode and short verify windows only: from Q35_INT8DOT_MAX_M rows of x a call
 * is long enough that its fork does not show, and the problems run one by one, as do more than
 * SHARED_MAX of them. */
static int one_by_one(const linear_problem *ps, int n, const linear_opts *o, int (*run)(const linear_problem *, const linear_opts *))
{
    for (int i = 0; i < n; i++)
        if (run(&ps[i], o)) return -1;
    return 0;
}

int linear_tiled_shared(const linear_problem *ps, int n, const linear_opts *o)
{
    if (n > SHARED_MAX || ps[0].M >= Q35_INT8DOT_MAX_M) return one_by_one(ps, n, o, linear_tiled);
    return tiled_group(ps, n, o, q35_matmul_xwt);
}

int linear_tiled_int8dot_shared(const linear_problem *ps, int n, const linear_opts *o)
{
    if (n > SHARED_MAX || ps[0].M >= Q35_INT8DOT_MAX_M) return one_by_one(ps, n, o, linear_tiled_int8dot);
    return int8dot_group(ps, n, o);
}
