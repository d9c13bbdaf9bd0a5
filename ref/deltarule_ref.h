/* The deltarule family's reference: plain loops, double accumulation, straight
 * from the equations (docs/deltarule.md).  Same signature and entry type as the
 * kernels in kernels/deltarule/, so every check and every model run can put it in
 * their place; the harness lists it first, before the kernel table. */
#ifndef Q35_REF_DELTARULE_REF_H
#define Q35_REF_DELTARULE_REF_H

#include "kernels/deltarule/deltarule.h"

int deltarule_ref(const deltarule_problem *p, const deltarule_opts *o);

/* The "ref" entry: what `q35lab list` shows and --impl ref selects. */
extern const deltarule_impl deltarule_ref_impl;

#endif
