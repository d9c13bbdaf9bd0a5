/* impls.h - which implementation of each kernel family a model run uses.
 *
 * The forward pass calls each family through the entry it is given here; it
 * never chooses one by name.  Choosing (the --impl specs "default", "ref",
 * "deltarule=neumann,...", the reference entries of ref/) is the harness's
 * job: harness/impl_select.h.  deltarule is the prefill implementation;
 * single-token decode steps run deltarule_decode (docs/model.md).
 */
#ifndef Q35LAB_MODEL_IMPLS_H
#define Q35LAB_MODEL_IMPLS_H

#include "kernels/attention/attention.h"
#include "kernels/conv/conv.h"
#include "kernels/deltarule/deltarule.h"
#include "kernels/linear/linear.h"
#include "kernels/moe/moe.h"

typedef struct {
    const linear_impl *linear;
    const conv_impl *conv;
    const deltarule_impl *deltarule;        /* T > 1 */
    const deltarule_impl *deltarule_decode; /* T == 1 */
    const attention_impl *attention;
    const moe_impl *moe;
    int threads;                            /* 0: OpenMP default */
    const deltarule_crossover *dr_crossover; /* what auto follows; NULL: its built-in default */
} q35_impls;

#endif
