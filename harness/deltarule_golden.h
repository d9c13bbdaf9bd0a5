/* Golden files for the delta rule: a problem plus its expected outputs, in
 * safetensors (format in README.md, "Golden files").  Read from PyTorch dumps
 * (ref/hf/), from ../shared/golden-samples, or written by `q35lab golden`.
 */
#ifndef Q35_DELTARULE_GOLDEN_H
#define Q35_DELTARULE_GOLDEN_H

#include "harness/deltarule_grad_check.h"
#include "harness/deltarule_inputs.h"
#include "harness/metrics.h"

#define DR_GOLDEN_DEFAULT_ATOL 1e-5
#define DR_GOLDEN_DEFAULT_RTOL 1e-4

typedef struct {
    dr_case c;                  /* inputs; c.out / c.final_state are scratch for a run */
    float *expect_out, *expect_state;
    double atol, rtol;
    /* A gradient golden (../shared/golden-samples/deltarule_grad): the
     * upstream gradients of L = sum(d_out . out) + sum(d_final_state .
     * final_state) and the expected dL/d(input) (kernels/deltarule/
     * deltarule_grad.h).  has_grad 0: a forward-only file, all NULL. */
    int has_grad;
    float *d_out, *d_final_state;          /* d_final_state NULL: zero */
    float *expect_grad[DR_GRAD_COUNT];     /* [DR_GRAD_DH0] only with an initial state */
} dr_golden;

/* Loads and validates every tensor's shape against q's; missing optional
 * tensors stay NULL.  Gradient tensors (d_out, d_final_state, dq, dk, dv,
 * dg, dbeta, d_initial_state) are all-or-nothing: a file with one needs
 * d_out, dq, dk, dv, dg, dbeta, and d_initial_state exactly when it has an
 * initial_state.  Returns 0, or -1 with a message naming the problem. */
int dr_golden_load(const char *path, dr_golden *g, char *err, size_t errlen);
void dr_golden_free(dr_golden *g);

/* Writes c's inputs with out/final_state as the expected outputs. */
int dr_golden_write(const char *path, const dr_case *c, const float *out, const float *final_state,
                    double atol, double rtol, const char *note, char *err, size_t errlen);

typedef struct {
    err_stats out, state;
    size_t bad_out, bad_state; /* element-wise atol/rtol violations */
    size_t first_bad_out, first_bad_state;
} dr_golden_result;

/* Runs impl on the golden inputs and compares.  Returns 0 when the run
 * happened (then r->bad_* says pass or fail), -1 on error. */
int dr_golden_check(dr_golden *g, const deltarule_impl *impl, const deltarule_opts *o,
                    dr_golden_result *r, char *err, size_t errlen);

/* The backward on a gradient golden (g->has_grad): runs impl into NaN-filled
 * gradients and compares each with the expected one, element-wise with the
 * file's atol/rtol.  Returns 0 when the run happened, -1 on error. */
typedef struct {
    err_stats e[DR_GRAD_COUNT];
    size_t bad[DR_GRAD_COUNT], first_bad[DR_GRAD_COUNT];
    int has[DR_GRAD_COUNT];   /* d_initial_state: only with an initial state */
} dr_golden_grad_result;
int dr_golden_grad_check(const dr_golden *g, const deltarule_grad_impl *impl, const deltarule_opts *o,
                         dr_golden_grad_result *r, char *err, size_t errlen);

#endif
