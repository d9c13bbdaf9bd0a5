/* The delta-rule backward's reference: the reverse sweep of docs/deltarule.md
 * "Backward", eqs. (B1)-(B8), in double, every state of the forward stored
 * (the spec may; the kernels recompute them from checkpoints).
 *
 * Besides the table-shaped entry (deltarule_grad_ref_impl, name "ref") it
 * exposes a double-precision forward and backward on double inputs, so tests
 * can take central finite differences of the forward in double and compare
 * them with the backward without a round trip through float.
 */
#ifndef Q35_REF_DELTARULE_GRAD_REF_H
#define Q35_REF_DELTARULE_GRAD_REF_H

#include "kernels/deltarule/deltarule_grad.h"

/* A delta-rule problem in double, same layouts as deltarule_problem
 * (deltarule.h).  scale 0 means 1/sqrt(Dk). */
typedef struct {
    int B, T, Hk, Hv, Dk, Dv;
    const double *q, *k, *v, *g, *beta;
    const double *initial_state; /* NULL: zeros */
    const int32_t *seq_len;      /* NULL: T valid tokens everywhere */
    int use_qk_l2norm;
    double scale;
} deltarule_f64_case;

/* Gradients in double, layouts of deltarule_grad_problem.  d_initial_state
 * may be NULL (not wanted); every other pointer is required. */
typedef struct {
    double *dq, *dk, *dv, *dg, *dbeta, *d_initial_state;
} deltarule_f64_grads;

/* The forward, eqs. (1)-(2), in double.  out [B,T,Hv,Dv] (padding: 0) is
 * required, final_state [B,Hv,Dk,Dv] may be NULL.  0, or -1 out of memory. */
int deltarule_ref_forward_f64(const deltarule_f64_case *c, double *out, double *final_state);

/* The backward of L = sum(d_out . out) + sum(d_final_state . final_state)
 * (d_final_state NULL: zero), eqs. (B1)-(B8).  0, or -1 out of memory. */
int deltarule_grad_ref_f64(const deltarule_f64_case *c, const double *d_out, const double *d_final_state,
                           const deltarule_f64_grads *gr);

/* The table-shaped entry: converts the float problem to double, runs
 * deltarule_grad_ref_f64, rounds the gradients to float once.  st->bytes_held
 * is the double copies and the stored states. */
int deltarule_grad_ref(const deltarule_grad_problem *p, const deltarule_opts *o, deltarule_grad_stats *st);
extern const deltarule_grad_impl deltarule_grad_ref_impl;

#endif
