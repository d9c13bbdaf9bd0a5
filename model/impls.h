/* impls.h - which implementation of each kernel family a model run uses.
 *
 * Spec strings (the --impl option of generate, validate and bench model):
 *   "default"  linear=tiled,conv=direct,deltarule=auto,attention=flash,moe=grouped
 *   "ref"      every family's ref entry (double accumulation end to end)
 *   "deltarule=neumann,moe=per_token"  the default with these families changed
 * deltarule names the prefill implementation; single-token decode steps run
 * `recurrent` (or `ref` when deltarule=ref), as docs/model.md explains.
 */
#ifndef Q35LAB_MODEL_IMPLS_H
#define Q35LAB_MODEL_IMPLS_H

#include "kernels/attention/attention.h"
#include "kernels/conv/conv.h"
#include "kernels/deltarule/deltarule.h"
#include "kernels/linear/linear.h"
#include "kernels/moe/moe.h"

#include <stddef.h>

typedef struct {
    const linear_impl *linear;
    const conv_impl *conv;
    const deltarule_impl *deltarule;        /* T > 1 */
    const deltarule_impl *deltarule_decode; /* T == 1 */
    const attention_impl *attention;
    const moe_impl *moe;
    int threads;                            /* 0: OpenMP default */
} q35_impls;

enum { Q35_FAM_LINEAR, Q35_FAM_CONV, Q35_FAM_DELTARULE, Q35_FAM_ATTENTION, Q35_FAM_MOE, Q35_FAM_COUNT };

/* Family name ("linear", ...), its table size and the name of entry i. */
const char *q35_family_name(int fam);
int q35_family_size(int fam);
const char *q35_family_entry(int fam, int i);

void q35_impls_default(q35_impls *im);
void q35_impls_ref(q35_impls *im);
/* Parses a spec (above) over the default; -1 with a message naming the bad
 * family or implementation and the valid ones. */
int q35_impls_parse(const char *spec, q35_impls *im, char *err, size_t errlen);
/* Sets family fam to its entry i (decode follows deltarule as above). */
void q35_impls_set(q35_impls *im, int fam, int i);
/* "linear=tiled,conv=direct,..." */
void q35_impls_format(const q35_impls *im, char *buf, size_t n);
int q35_impls_is_ref(const q35_impls *im);

#endif
