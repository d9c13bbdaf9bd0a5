/* Deterministic MoE problems for checks, tests and benches (docs/moe.md §6).
 *
 * Weights are drawn in fp32 with scales 1/sqrt(fan_in), so every projection
 * and the output are O(1); bf16 problems store q35_f32_to_bf16 of the same
 * draws, and the fused gate_up layout holds the same values as the separate
 * one.  The same (shape, seed) always gives the same bytes.
 *
 * Every generated token has a clear top-k: its k-th and (k+1)-th router
 * logits (computed in double from the problem's own weights) are either
 * exactly equal (duplicated router rows) or at least MOE_ROUTE_MARGIN apart,
 * so an fp32 router and the double reference choose the same experts.
 */
#ifndef Q35_MOE_INPUTS_H
#define Q35_MOE_INPUTS_H

#include "kernels/moe/moe.h"

#include <stddef.h>

#define MOE_ROUTE_MARGIN 1e-3

typedef enum {
    MOE_ROUTING_RANDOM = 0,   /* random router rows; `skew` concentrates tokens on a few hot experts */
    MOE_ROUTING_ONE_EXPERT,   /* one expert is every token's first choice: it gets all T tokens */
    MOE_ROUTING_EMPTY_EXPERT, /* one expert is never in any token's top-k (needs top_k < E) */
    MOE_ROUTING_TIES,         /* router rows of the last E/2 experts copy the first E/2: exact ties */
    MOE_ROUTING_COUNT
} moe_routing;

typedef struct {
    int T, hidden, E, top_k, inter, inter_shared; /* inter = I, inter_shared = Is (0: no shared expert) */
    int norm_topk_prob;
    q35_wtype wt;
    int fused_gate_up; /* gate_proj/up_proj point into one [E, 2I, hidden] array */
    double skew;       /* MOE_ROUTING_RANDOM only: 0 uniform .. 1 router rows aligned with hot directions */
    int routing;       /* moe_routing */
} moe_shape;

/* A problem that owns its buffers: p points into them. */
typedef struct {
    moe_problem p;
    float *x, *out, *topk_weights, *router_logits;
    int32_t *topk_ids;
    void *router, *gate, *up, *gate_up, *down; /* gate/up NULL when fused (gate_up holds both) */
    void *shared_gate, *shared_up, *shared_down, *shared_expert_gate;
    int special_expert; /* the expert ONE_EXPERT favours or EMPTY_EXPERT starves; -1 otherwise */
    int n_hot;          /* RANDOM with skew > 0: number of hot experts */
} moe_case;

/* fp32 tensors in the layouts of moe.h (separate gate/up); the shared ones
 * may be NULL when Is = 0. */
typedef struct {
    const float *x, *router, *gate, *up, *down;
    const float *shared_gate, *shared_up, *shared_down, *shared_expert_gate;
} moe_f32_tensors;

/* Draws a problem for shape s.  Returns 0, or -1 with a message (bad shape,
 * EMPTY_EXPERT with top_k = E, out of memory, no token with a clear top-k). */
int moe_case_make(moe_case *c, const moe_shape *s, unsigned long seed, char *err, size_t errlen);
/* Builds a problem from given fp32 tensors: copies them, converting the
 * weights to s->wt (bf16: rounded to nearest even) and laying gate/up out
 * fused if s->fused_gate_up.  s->skew and s->routing are ignored. */
int moe_case_from_f32(moe_case *c, const moe_shape *s, const moe_f32_tensors *w, char *err, size_t errlen);
void moe_case_free(moe_case *c);

/* Output buffers sized for p (any pointer may be NULL: not wanted).
 * 0, or -1 (out of memory; nothing is left allocated). */
int moe_alloc_outputs(const moe_problem *p, float **out, int32_t **ids, float **weights, float **logits);

/* Gathers weight tensor `name` of p ("router", "gate_proj", "up_proj",
 * "down_proj", "shared_gate_proj", "shared_up_proj", "shared_down_proj",
 * "shared_expert_gate") into a new contiguous fp32 array (bf16 converted
 * exactly); *n gets its element count.  NULL if absent or out of memory. */
float *moe_weight_f32(const moe_problem *p, const char *name, size_t *n);

const char *moe_routing_name(int routing);
int moe_routing_from_name(const char *name); /* -1 if unknown */
const char *moe_wtype_name(q35_wtype wt);     /* "f32", "bf16" */

/* Per token, whether the top-k is clear (see above), with router logits in
 * double from p's own weights.  Returns the first token without a clear
 * top-k, -1 if every token has one, -2 if out of memory. */
int moe_first_unclear_token(const moe_problem *p, double margin);

#endif
