/* The correctness sweep behind `q35lab check moe`: every MoE implementation
 * x weight dtype x case kind over a grid of T, E and k, against ref/ (double,
 * its own router).  docs/moe.md §6.  A cell fails when its normwise output
 * error or its top-k weight error exceeds the implementation's tolerance, or
 * its top-k ids or its moe_stats differ from ref's.
 */
#ifndef Q35_MOE_CHECK_H
#define Q35_MOE_CHECK_H

#include "kernels/moe/moe.h"
#include "harness/metrics.h"

#include <stddef.h>

/* Case kinds: the rows of the matrix (docs/moe.md §6). */
enum {
    MOE_KIND_RANDOM,       /* skew 0, shared expert, norm_topk_prob */
    MOE_KIND_SKEW,         /* skew 0.9: most tokens on a few hot experts */
    MOE_KIND_ONE_EXPERT,   /* every token's first choice is one expert */
    MOE_KIND_EMPTY_EXPERT, /* one expert gets no token (k < E) */
    MOE_KIND_TIES,         /* duplicated router rows: exact ties to the lower index (E >= 2) */
    MOE_KIND_FUSED,        /* gate/up in one [E, 2I, hidden] array */
    MOE_KIND_NO_NORM,      /* norm_topk_prob = 0 */
    MOE_KIND_NO_SHARED,    /* Is = 0 */
    MOE_KIND_ODD,          /* hidden 37, I 13, Is 7: no dimension a multiple of a SIMD width */
    MOE_KIND_QWEN,         /* hidden 256, I 128, Is 128, E 64, k 8 */
    MOE_KIND_EXPERT_RANGE, /* only experts [E/4, E/4 + E/2) held, as one expert-parallel rank (E >= 2) */
    MOE_KIND_COUNT
};
const char *moe_kind_name(int kind);

typedef struct {
    err_stats worst;
    double worst_weight;   /* max |w - w_ref| over matched (id, weight) pairs */
    size_t id_mismatch;    /* tokens whose expert set differs from ref's */
    size_t stats_mismatch; /* runs whose moe_stats disagree with ref's */
    int cases;
    char worst_case[96];
    int status;            /* 0 ran, 2 error (then error[] says why) */
    char error[400];
} moe_cell;

typedef struct {
    int quick, seeds;
    const char *only;                        /* an implementation name or "all" */
    void (*progress)(int done, int total);   /* NULL: silent */
} moe_check_config;

/* The entry i of the family view (harness/impl_select.h) if the sweep runs it
 * (only, and available on this CPU), else NULL. */
const moe_impl *moe_check_selected(const char *only, int i);
/* The cell of entry i, dtype d (0 fp32, 1 bf16), kind k in cells. */
static inline moe_cell *moe_check_cell(moe_cell *cells, int i, int d, int kind)
{
    return &cells[((size_t)i * 2 + d) * MOE_KIND_COUNT + kind];
}

/* Runs the sweep into *cells (allocated: [moe_n_entries()][2][MOE_KIND_COUNT],
 * free it); 0, or -1 with a message (out of memory). */
int moe_check_run(const moe_check_config *cfg, moe_cell **cells, char *err, size_t errlen);

double moe_cell_tol(const moe_impl *im, int bf16);
/* 0 pass, 1 fail, 2 error. */
int moe_cell_status(const moe_impl *im, int bf16, const moe_cell *c);

#endif
