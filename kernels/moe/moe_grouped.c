/* grouped: route all tokens, counting-sort the (token, slot) pairs by
 * expert, and run each expert once on all its rows: a GEMM pair and the down
 * GEMM per expert (docs/moe.md §3).  Experts go to threads largest first; an
 * expert with more than GROUP_ROWS rows is split so that one hot expert
 * (a skewed router) cannot leave the other threads idle.  Nothing is
 * dropped: there is no capacity factor.
 */
#include "kernels/moe/moe_common.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>

#define GROUP_ROWS 128

static int grouped(const moe_problem *p, const moe_opts *o, moe_stats *st, moe_mm_fn mm)
{
    const int threads = o->threads > 0 ? o->threads : omp_get_max_threads();
    moe_dispatch d;
    if (moe_dispatch_make(p, &d, threads)) return -1;
    d.mm = mm;
    openblas_set_num_threads(1); /* parallelism is ours */
    const int cap = p->T * p->top_k + p->E + (p->T + GROUP_ROWS - 1) / GROUP_ROWS;
    moe_task *tasks = malloc(sizeof(moe_task) * cap);
    int n = 0, rc = -1;
    if (tasks) {
        for (int i = 0; i < p->E; i++) {
            const int e = d.order[i], load = d.start[e + 1] - d.start[e];
            for (int r0 = 0; r0 < load; r0 += GROUP_ROWS) {
                const int m = load - r0 < GROUP_ROWS ? load - r0 : GROUP_ROWS;
                tasks[n++] = (moe_task){e, r0, m, m};
            }
        }
        for (int r0 = 0; p->inter_shared && r0 < p->T; r0 += GROUP_ROWS) {
            const int m = p->T - r0 < GROUP_ROWS ? p->T - r0 : GROUP_ROWS;
            tasks[n++] = (moe_task){-1, r0, m, m};
        }
        rc = moe_run_tasks(p, &d, tasks, n, threads);
        moe_load_stats(p, d.ids, st);
    }
    free(tasks);
    moe_dispatch_free(&d);
    return rc;
}

int moe_grouped(const moe_problem *p, const moe_opts *o, moe_stats *st) { return grouped(p, o, st, q35_matmul_xwt); }

/* The same routing, tasks and combine; the expert and shared-expert GEMMs (gate, up, down) round
 * their activations to bf16 (docs/matmul.md "BF16-dot path").  fp32 / quantized weights: the
 * exact path, as linear tiled-bf16dot.  The router and the shared-expert gate stay exact, so the
 * routing is grouped's. */
int moe_grouped_bf16dot(const moe_problem *p, const moe_opts *o, moe_stats *st)
{
    return grouped(p, o, st, q35_matmul_xwt_bf16dot);
}

/* As grouped-bf16dot on AMX tiles (moe_matmul_amx); an expert with fewer than 16 rows, or a CPU
 * without AMX-BF16, runs the BF16-dot path. */
int moe_grouped_amx(const moe_problem *p, const moe_opts *o, moe_stats *st) { return grouped(p, o, st, moe_matmul_amx); }

/* The same routing, tasks and combine; the expert and shared-expert GEMMs on Q8_0 / Q4_0 weights
 * through integer dots (q35_matmul_xwt_int8dot: each task's rows of x, and the SwiGLU
 * intermediate, quantized per 32-element block; docs/quantization.md §4) where an expert has
 * fewer than Q35_INT8DOT_MAX_M rows, the exact path from there and for fp32 / bf16 weights.  The
 * router and the shared-expert gate stay exact, so the routing is grouped's. */
int moe_grouped_int8dot(const moe_problem *p, const moe_opts *o, moe_stats *st)
{
    return grouped(p, o, st, q35_matmul_xwt_int8dot);
}
