/* blockwise: the MegaBlocks / Neuron "blockwise" layout.  Each expert's
 * sorted rows are cut into blocks of a fixed size (opts.block, default 64),
 * the last one padded with zero rows, and every block is one fixed-shape
 * GEMM: simple to schedule on hardware that wants static shapes, at the
 * price of the padding, which it reports (moe_stats.padded_rows).
 */
#include "kernels/moe/moe_common.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>

int moe_blockwise(const moe_problem *p, const moe_opts *o, moe_stats *st)
{
    const int threads = o->threads > 0 ? o->threads : omp_get_max_threads();
    const int B = o->block > 0 ? o->block : 64;
    moe_dispatch d;
    if (moe_dispatch_make(p, &d, threads)) return -1;
    openblas_set_num_threads(1); /* parallelism is ours */
    const int cap = (p->T * p->top_k) / B + p->E + (p->T + B - 1) / B + 1;
    moe_task *tasks = malloc(sizeof(moe_task) * cap);
    int n = 0, rc = -1;
    long long padded = 0;
    if (tasks) {
        for (int i = 0; i < p->E; i++) {
            const int e = d.order[i], load = d.start[e + 1] - d.start[e];
            for (int r0 = 0; r0 < load; r0 += B) {
                const int rows = load - r0 < B ? load - r0 : B;
                tasks[n++] = (moe_task){e, r0, rows, B};
                padded += B - rows;
            }
        }
        for (int r0 = 0; p->inter_shared && r0 < p->T; r0 += B) { /* the shared expert: every token, unpadded */
            const int rows = p->T - r0 < B ? p->T - r0 : B;
            tasks[n++] = (moe_task){-1, r0, rows, rows};
        }
        rc = moe_run_tasks(p, &d, tasks, n, threads);
        moe_load_stats(p, d.ids, st);
        st->padded_rows = padded;
    }
    free(tasks);
    moe_dispatch_free(&d);
    return rc;
}
