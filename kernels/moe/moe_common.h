/* Pieces the MoE implementations share (docs/moe.md): the SwiGLU expert on a
 * batch of rows, and for the dispatching forms the sort of (token, slot)
 * pairs by expert and the final weighted combine.
 */
#ifndef Q35_MOE_COMMON_H
#define Q35_MOE_COMMON_H

#include "kernels/moe/moe.h"

#include <math.h>

/* Y[m, hidden] = Wd (scale_r * silu(Wg x) * (Wu x)) for the m rows of X (ldx),
 * eq. (5); scale: per-row factors (the router weight) or NULL for 1.
 * Wg, Wu: [I, hidden] (row stride hidden), Wd: [hidden, I].  Only the rows
 * [i0, i1) of Wg/Wu and the matching columns of Wd are used, and Y is
 * accumulated into (accumulate != 0) or overwritten: a caller may split one
 * expert's I across tasks and sum the parts.  work: 2 * m * (i1 - i0) floats. */
void moe_ffn_rows(const moe_problem *p, const void *wg, const void *wu, const void *wd, int I, int i0, int i1,
                  int m, const float *X, int ldx, const float *scale, float *Y, int ldy, int accumulate,
                  float *work);

/* A matmul with q35_matmul_xwt's contract (C = (acc ? C : 0) + A W^T, single-threaded). */
typedef void (*moe_mm_fn)(int M, int N, int K, const float *A, int lda, const void *W, q35_wtype wt, int ldw,
                          float *C, int ldc, int accumulate);
/* moe_ffn_rows with its three GEMMs through mm (q35_matmul_xwt for moe_ffn_rows). */
void moe_ffn_rows_mm(const moe_problem *p, moe_mm_fn mm, const void *wg, const void *wu, const void *wd, int I,
                     int i0, int i1, int m, const float *X, int ldx, const float *scale, float *Y, int ldy,
                     int accumulate, float *work);
/* q35_matmul_xwt's contract on AMX tiles for bf16 W: A rounded to bf16 into padded scratch, then
 * q35_matmul_bf16a_amx (which runs the BF16-dot path without AMX or for M < 16).  Other W: the
 * exact q35_matmul_xwt; without memory for the scratch: q35_matmul_xwt_bf16dot (same rounding). */
void moe_matmul_amx(int M, int N, int K, const float *A, int lda, const void *W, q35_wtype wt, int ldw, float *C,
                    int ldc, int accumulate);

/* sigmoid(w_sg . x_t) for every token (eq. 6); gate[T]. */
void moe_shared_gate(const moe_problem *p, float *gate);

/* Pairs (token, slot) sorted by expert with a counting sort: the pairs of
 * expert e are pair[start[e] .. start[e+1]); pos[t*k + slot] is where the
 * pair landed.  Stable: within an expert, tokens ascend. */
typedef struct {
    int32_t *ids;      /* [T*k] from moe_route */
    float *weights;    /* [T*k] */
    int *start;        /* [E+1] */
    int *pair;         /* [T*k] value t*k + slot */
    int *pos;          /* [T*k] */
    int *order;        /* [E] experts by descending load, ties by index */
    moe_mm_fn mm;      /* the expert GEMMs' matmul for moe_run_tasks: q35_matmul_xwt from
                        * moe_dispatch_make; grouped-bf16dot / grouped-amx set theirs */
} moe_dispatch;

int moe_dispatch_make(const moe_problem *p, moe_dispatch *d, int threads);
void moe_dispatch_free(moe_dispatch *d);
/* rows, experts touched and the busiest expert's load, from the routing. */
void moe_load_stats(const moe_problem *p, const int32_t *ids, moe_stats *st);

/* out[t] = sum_slot w[t,slot] * Y[pos(t,slot)] + shared[t] * gate[t]
 * (shared / gate may be NULL), in slot order: the result does not depend on
 * which thread computed which expert. */
void moe_combine(const moe_problem *p, const moe_dispatch *d, const float *Y, const float *shared,
                 const float *gate, int threads);

/* A batch of one expert's sorted rows: rows [r0, r0 + n) of expert e
 * (e == -1: the shared expert over tokens [r0, r0 + n)), computed as m >= n
 * rows, the m - n extra being zero padding (blockwise). */
typedef struct {
    int e, r0, n, m;
} moe_task;

/* Runs the tasks over the threads in the given order (dynamic schedule) and
 * then combines: Y rows land at the pairs' sorted positions, the shared
 * expert's at its tokens.  Ends with moe_combine.  0, or -1 on allocation. */
int moe_run_tasks(const moe_problem *p, const moe_dispatch *d, const moe_task *tasks, int ntask, int threads);

/* Optional outputs of the problem (topk ids/weights) from the router's. */
void moe_copy_routing(const moe_problem *p, const int32_t *ids, const float *weights);

static inline float moe_silu(float x) { return x / (1.0f + expf(-x)); }

#endif
