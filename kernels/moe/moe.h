/* The sparse MoE block of Qwen3.5-MoE: router, top-k experts, shared expert.
 * One problem struct, one implementation table.  Math: docs/moe.md; the
 * executable spec: ref/moe_ref.c (same signature, first entry of the table).
 *
 *   r = W_router x;  p = softmax(r) (fp32);  top-k of p, descending, ties to the lower index;
 *   if norm_topk_prob: w_i = p_i / sum_k p_k
 *   y_e = W_down[e] (silu(W_gate[e] x) * (W_up[e] x))
 *   s   = W_sdown (silu(W_sgate x) * (W_sup x)) * sigmoid(w_sg . x)
 *   out = sum_k w_k y_{e_k} + s
 */
#ifndef Q35_MOE_H
#define Q35_MOE_H

#include "kernels/matmul/matmul.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    /* inter: expert intermediate size I; inter_shared: the shared expert's
     * (0: none).  Not named I: <complex.h> (pulled in by cblas.h) defines I. */
    int T, hidden, E, top_k, inter, inter_shared;
    int norm_topk_prob;
    const float *x;                 /* [T, hidden] */
    q35_wtype wt;                   /* dtype of every weight below, except: */
    q35_wtype router_wt;            /* with a quantized wt only: the dtype of router and shared_expert_gate,
                                     * WT_F32 or WT_BF16 (they are never quantized: docs/quantization.md §5);
                                     * ignored otherwise (moe_router_wt) */
    const void *router;             /* [E, hidden] */
    const void *gate_proj, *up_proj;/* expert e's [I, hidden] at + e * expert_stride_gu elements */
    size_t expert_stride_gu;        /* 0: inter * hidden (separate tensors); 2*inter*hidden for a fused gate_up */
    const void *down_proj;          /* [E, hidden, I] */
    const void *shared_gate, *shared_up; /* [Is, hidden] */
    const void *shared_down;        /* [hidden, Is] */
    const void *shared_expert_gate; /* [1, hidden] */
    float *out;                     /* [T, hidden], required */
    int32_t *topk_ids;              /* [T, top_k] optional: chosen experts, descending probability */
    float *topk_weights;            /* [T, top_k] optional: their (renormalized) weights */
    float *router_logits;           /* [T, E] optional */
    /* The experts whose weights are given, [expert_lo, expert_hi): expert e's
     * are at index e - expert_lo of gate_proj / up_proj / down_proj, and a
     * token's share of any other expert is left out of out (an expert-parallel
     * rank holds a range; the ranks' outputs sum to the block's, docs/tp.md).
     * The router still ranks all E.  Both 0: every expert. */
    int expert_lo, expert_hi;
} moe_problem;

typedef struct {
    int block;    /* blockwise: rows per block (0: default 64) */
    int threads;  /* 0: OpenMP default */
} moe_opts;

/* What a run did, for counters and reports (filled by every implementation). */
typedef struct {
    long long rows;          /* token-expert pairs computed (T * top_k; fewer when not every expert is held) */
    long long padded_rows;   /* rows of padding computed (blockwise) */
    int experts_touched;     /* experts with at least one token */
    int max_load;            /* tokens of the busiest expert */
} moe_stats;

typedef int (*moe_fn)(const moe_problem *p, const moe_opts *o, moe_stats *st);

typedef struct {
    const char *name;
    const char *summary;
    moe_fn run;
    moe_opts defaults;
    double tol_f32, tol_bf16; /* normwise error against ref it promises, per weight dtype */
    int (*available)(void);
    int lossy; /* 1: rounds beyond fp32 (activations to bf16); opt-in, `validate --impl all` leaves it out */
} moe_impl;

extern const moe_impl moe_impls[];
extern const int moe_n_impls;
const moe_impl *moe_find(const char *name);

int moe_validate(const moe_problem *p, int check_values, char *err, size_t errlen);
int moe_run(const moe_impl *impl, const moe_problem *p, const moe_opts *opts, moe_stats *st, char *err,
            size_t errlen);

/* The dtype of the router and the shared-expert gate. */
static inline q35_wtype moe_router_wt(const moe_problem *p) { return q35_wtype_is_quant(p->wt) ? p->router_wt : p->wt; }

/* Whether expert e's weights are given (expert_lo / expert_hi). */
static inline int moe_holds(const moe_problem *p, int e)
{
    return p->expert_hi == 0 || (e >= p->expert_lo && e < p->expert_hi);
}
/* Expert e's gate / up / down weights (e held). */
static inline const void *moe_gate(const moe_problem *p, int e)
{
    const size_t s = p->expert_stride_gu ? p->expert_stride_gu : (size_t)p->inter * p->hidden;
    return (const char *)p->gate_proj + q35_wtype_bytes(p->wt, (size_t)(e - p->expert_lo) * s);
}
static inline const void *moe_up(const moe_problem *p, int e)
{
    const size_t s = p->expert_stride_gu ? p->expert_stride_gu : (size_t)p->inter * p->hidden;
    return (const char *)p->up_proj + q35_wtype_bytes(p->wt, (size_t)(e - p->expert_lo) * s);
}
static inline const void *moe_down(const moe_problem *p, int e)
{
    return (const char *)p->down_proj + q35_wtype_bytes(p->wt, (size_t)(e - p->expert_lo) * p->hidden * p->inter);
}

/* The router, shared by every implementation (fp32 softmax, descending
 * top-k with ties to the lower index, optional renormalization):
 * fills ids[T*k], weights[T*k] and, if logits != NULL, logits[T*E]. */
int moe_route(const moe_problem *p, int32_t *ids, float *weights, float *logits, int threads);

/* The analytic work moe_run adds to the SDE counters (docs/moe.md eqs. (10)-(11)):
 * useful flops, and bytes of weights read when experts_touched experts are used. */
long long moe_work_flops(const moe_problem *p);
long long moe_work_weight_bytes(const moe_problem *p, int experts_touched);

int moe_per_token(const moe_problem *p, const moe_opts *o, moe_stats *st);
int moe_grouped(const moe_problem *p, const moe_opts *o, moe_stats *st);
int moe_blockwise(const moe_problem *p, const moe_opts *o, moe_stats *st);
/* grouped with the expert GEMMs through the BF16-dot / AMX matmul (lossy: x and the SwiGLU
 * intermediate rounded to bf16 for bf16 weights; other weight types: grouped's exact path). */
int moe_grouped_bf16dot(const moe_problem *p, const moe_opts *o, moe_stats *st);
int moe_grouped_amx(const moe_problem *p, const moe_opts *o, moe_stats *st);
int moe_grouped_int8dot(const moe_problem *p, const moe_opts *o, moe_stats *st); /* lossy on q8_0 / q4_0 weights */

#endif
