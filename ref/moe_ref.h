/* The moe family's reference: plain loops, double accumulation, straight
 * from the equations (docs/moe.md).  Same signature and entry type as the
 * kernels in kernels/moe/, so every check and every model run can put it in
 * their place; the harness lists it first, before the kernel table. */
#ifndef Q35_REF_MOE_REF_H
#define Q35_REF_MOE_REF_H

#include "kernels/moe/moe.h"

int moe_ref(const moe_problem *p, const moe_opts *o, moe_stats *st);

/* The "ref" entry: what `q35lab list` shows and --impl ref selects. */
extern const moe_impl moe_ref_impl;

#endif
