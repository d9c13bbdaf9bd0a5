/* The conv backward's reference: plain loops in double, straight from the
 * chain rule on docs/conv.md eq. (1)-(2) ("Backward", eq. B1-B4).  Same
 * signature and entry type as the kernels in kernels/conv/conv_grad.h.
 * Also a forward in double on double inputs, for finite differences. */
#ifndef Q35_REF_CONV_GRAD_REF_H
#define Q35_REF_CONV_GRAD_REF_H

#include "kernels/conv/conv_grad.h"

int conv_grad_ref(const conv_grad_problem *p, const conv_opts *o);

/* The "ref" entry of the backward. */
extern const conv_grad_impl conv_grad_ref_impl;

/* eq. (1)-(2) in double: shape, seq_len and apply_silu from p (its float
 * pointers are not read), inputs x [B,T,C], weight [C,K], state_in
 * [B,C,K-1] (NULL: zeros); outputs y [B,T,C] (0 at padding) and, when not
 * NULL, state_out [B,C,K-1] (must not be state_in). */
void conv_forward_ref_f64(const conv_problem *p, const double *x, const double *weight, const double *state_in,
                          double *y, double *state_out);

#endif
