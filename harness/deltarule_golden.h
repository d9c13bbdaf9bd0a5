/* Golden files for the delta rule: a problem plus its expected outputs, in
 * safetensors (format in README.md, "Golden files").  Read from PyTorch dumps
 * (ref/hf/), from ../shared/golden-samples, or written by `q35lab golden`.
 */
#ifndef Q35_DELTARULE_GOLDEN_H
#define Q35_DELTARULE_GOLDEN_H

#include "harness/deltarule_inputs.h"
#include "harness/metrics.h"

#define DR_GOLDEN_DEFAULT_ATOL 1e-5
#define DR_GOLDEN_DEFAULT_RTOL 1e-4

typedef struct {
    dr_case c;                  /* inputs; c.out / c.final_state are scratch for a run */
    float *expect_out, *expect_state;
    double atol, rtol;
} dr_golden;

/* Loads and validates every tensor's shape against q's; missing optional
 * tensors stay NULL.  Returns 0, or -1 with a message naming the problem. */
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

#endif
