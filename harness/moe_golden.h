/* Golden files for the MoE block: a problem plus its expected outputs, in
 * safetensors (format in docs/moe.md §7).  Read from ../shared/golden-samples/moe,
 * or written by `q35lab golden moe`.
 */
#ifndef Q35_MOE_GOLDEN_H
#define Q35_MOE_GOLDEN_H

#include "harness/metrics.h"
#include "harness/moe_inputs.h"

#define MOE_GOLDEN_DEFAULT_ATOL 1e-5
#define MOE_GOLDEN_DEFAULT_RTOL 1e-4

typedef struct {
    int as_bf16;       /* run with the weights rounded to bf16; expectations then come from ref */
    int fused_gate_up; /* lay gate/up out as one [E, 2I, hidden] array */
} moe_golden_opts;

typedef struct {
    moe_case c;               /* inputs; c.out, c.topk_* and c.router_logits are scratch for a run */
    float *expect_out;        /* [T, hidden] */
    int32_t *expect_ids;      /* [T, k], descending probability */
    float *expect_weights;    /* [T, k] */
    float *expect_logits;     /* [T, E] or NULL */
    double atol, rtol;
    int file_bf16;            /* every weight tensor in the file is BF16 */
    int expect_from_ref;      /* 1: the weights were rounded to bf16 and the expectations are ref's */
} moe_golden;

/* Loads a golden file and validates every tensor's shape against x's and
 * router_weight's, the metadata (top_k, num_experts, norm_topk_prob "1"/"0"/
 * "true"/"false", atol, rtol), the expected ids (in [0, E), distinct per
 * token) and that x is finite.  o may be NULL.  The weights keep the file's
 * dtype (BF16 if all are BF16, else F32; F16 is converted to F32).  With
 * o->as_bf16 and weights that are not all bf16 values, the weights are
 * rounded to bf16 and the expectations are recomputed by ref on them (the
 * file's are for the unrounded weights).  Returns 0, or -1 with a message
 * naming the file and the tensor or field. */
int moe_golden_load(const char *path, moe_golden *g, const moe_golden_opts *o, char *err, size_t errlen);
void moe_golden_free(moe_golden *g);

/* Writes p's inputs (weights as F32 or, if p->wt is bf16, BF16 tensors;
 * gate/up always separate) with the given expected outputs; logits may be
 * NULL.  Written to a temporary name and renamed. */
int moe_golden_write(const char *path, const moe_problem *p, const float *out, const int32_t *ids,
                     const float *weights, const float *logits, double atol, double rtol, const char *note,
                     char *err, size_t errlen);

typedef struct {
    err_stats out;             /* normwise / max-abs error of out against the expectation */
    size_t bad_out, first_bad_out;   /* element-wise atol/rtol violations */
    size_t bad_ids;            /* tokens whose chosen expert set differs */
    int first_bad_token;       /* -1 if none */
    size_t bad_weights;        /* (id, weight) pairs matched by id outside atol/rtol */
    double max_weight_err;
    size_t bad_logits;         /* router_logits outside atol/rtol (when expected) */
    double max_logit_err;
} moe_compare;

/* Compares a run's outputs with expectations: out element-wise, and per
 * token the (id, weight) pairs matched by id, so any order of the k experts
 * passes.  ids/weights/logits may be NULL (not compared). */
void moe_compare_outputs(const moe_problem *p, const float *out, const int32_t *ids, const float *weights,
                         const float *logits, const float *e_out, const int32_t *e_ids, const float *e_weights,
                         const float *e_logits, double atol, double rtol, moe_compare *r);

/* Number of tokens whose sets of k chosen experts differ (order ignored). */
size_t moe_count_id_mismatch(const int32_t *a, const int32_t *b, int T, int k, int *first);

/* Runs impl on the golden inputs and compares.  0 when the run happened
 * (r says pass or fail), -1 on error. */
int moe_golden_check(moe_golden *g, const moe_impl *impl, const moe_opts *o, moe_compare *r, char *err,
                     size_t errlen);
/* Whether r passes: no out, id, weight or logit violation. */
int moe_compare_pass(const moe_compare *r);

#endif
