/* The conv family's reference: plain loops, double accumulation, straight
 * from the equations (docs/conv.md).  Same signature and entry type as the
 * kernels in kernels/conv/, so every check and every model run can put it in
 * their place; the harness lists it first, before the kernel table. */
#ifndef Q35_REF_CONV_REF_H
#define Q35_REF_CONV_REF_H

#include "kernels/conv/conv.h"

int conv_ref(const conv_problem *p, const conv_opts *o);

/* The "ref" entry: what `q35lab list` shows and --impl ref selects. */
extern const conv_impl conv_ref_impl;

#endif
