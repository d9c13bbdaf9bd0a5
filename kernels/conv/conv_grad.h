/* The backward of the short causal conv (+ SiLU): one problem struct, one table.
 *
 * Given the forward problem's inputs (kernels/conv/conv.h, docs/conv.md
 * eq. 1-2) and the upstream gradients of a loss
 *   L = sum(dy . y) + sum(d_state_out . state_out),
 * every implementation writes dL/dx, dL/dweight (summed over the batch and
 * the tokens) and dL/dstate_in.  Padding positions (t >= seq_len[b]) get zero
 * dx and their dy is not read (their y is the constant 0).  The equations are
 * docs/conv.md, "Backward"; the executable spec is ref/conv_grad_ref.c
 * (conv_grad_ref_impl).
 */
#ifndef Q35_CONV_GRAD_H
#define Q35_CONV_GRAD_H

#include "kernels/conv/conv.h"

typedef struct {
    const conv_problem *fwd;   /* inputs and shape; y, state_out, checkpoint fields not read */
    const float *dy;           /* [B, T, C], required */
    const float *d_state_out;  /* [B, C, K-1]; NULL: zero */
    float *dx;                 /* [B, T, C], required */
    float *dweight;            /* [C, K], required (summed over the batch and tokens) */
    float *d_state_in;         /* [B, C, K-1]; required when fwd->state_in, else ignored */
} conv_grad_problem;

typedef int (*conv_grad_fn)(const conv_grad_problem *p, const conv_opts *o);

typedef struct {
    const char *name;
    const char *summary;
    conv_grad_fn run;
    double claim_tol;        /* normwise relative error against ref it promises, per output tensor */
    int (*available)(void);  /* NULL: runs on every CPU */
} conv_grad_impl;

extern const conv_grad_impl conv_grad_impls[];
extern const int conv_grad_n_impls;

const conv_grad_impl *conv_grad_find(const char *name);

/* Checks the forward problem (conv_validate; its y, state_out and
 * checkpoints are not read, so not checked), the gradient pointers (dy, dx,
 * dweight, and d_state_in when fwd->state_in is given) and that no output
 * (dx, dweight, d_state_in) overlaps an input (x, weight, state_in, seq_len,
 * dy, d_state_out) or another output; with check_values also that x,
 * weight, state_in, dy and d_state_out are finite.  0, or -1 with a
 * message in err. */
int conv_grad_validate(const conv_grad_problem *p, int check_values, char *err, size_t errlen);

/* Validates, runs with opts (NULL: defaults; threads 0 = OpenMP default).
 * 0 on success. */
int conv_grad_run(const conv_grad_impl *impl, const conv_grad_problem *p, const conv_opts *opts, char *err,
                  size_t errlen);

/* The implementations (one file each). */
int conv_grad_direct(const conv_grad_problem *p, const conv_opts *o);

#endif
