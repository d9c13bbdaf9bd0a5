/* The linear family's reference: plain loops, double accumulation, straight
 * from the equations (docs/model.md).  Same signature and entry type as the
 * kernels in kernels/linear/, so every check and every model run can put it in
 * their place; the harness lists it first, before the kernel table. */
#ifndef Q35_REF_LINEAR_REF_H
#define Q35_REF_LINEAR_REF_H

#include "kernels/linear/linear.h"

int linear_ref(const linear_problem *p, const linear_opts *o);

/* The "ref" entry: what `q35lab list` shows and --impl ref selects. */
extern const linear_impl linear_ref_impl;

#endif
