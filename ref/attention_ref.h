/* The attention family's reference: plain loops, double accumulation, straight
 * from the equations (docs/attention.md).  Same signature and entry type as the
 * kernels in kernels/attention/, so every check and every model run can put it in
 * their place; the harness lists it first, before the kernel table. */
#ifndef Q35_REF_ATTENTION_REF_H
#define Q35_REF_ATTENTION_REF_H

#include "kernels/attention/attention.h"

int attention_ref(const attention_problem *p, const attention_opts *o);

/* The "ref" entry: what `q35lab list` shows and --impl ref selects. */
extern const attention_impl attention_ref_impl;

#endif
