/* impl_select.h - every family's implementations as checks, benches and model
 * runs choose among them: the reference entry of ref/ first, then the kernel
 * table of kernels/<family>/ (the kernels cannot name ref/, the floor above
 * them; here both are visible).
 *
 * Spec strings (the --impl option of generate, validate and bench model):
 *   "default"  linear=tiled,conv=direct,deltarule=auto,attention=flash,moe=grouped
 *   "ref"      every family's ref entry (double accumulation end to end)
 *   "deltarule=neumann,moe=per_token"  the default with these families changed
 * deltarule names the prefill implementation; single-token decode steps run
 * `recurrent` (or `ref` when deltarule=ref), as docs/model.md explains.
 */
#ifndef Q35LAB_HARNESS_IMPL_SELECT_H
#define Q35LAB_HARNESS_IMPL_SELECT_H

#include "model/impls.h"
#include "ref/attention_ref.h"
#include "ref/conv_ref.h"
#include "ref/deltarule_ref.h"
#include "ref/linear_ref.h"
#include "ref/moe_ref.h"

#include <stddef.h>

/* Per family: how many entries (ref + table), entry i (0: ref; NULL past the
 * end), and the entry named name ("ref" or a table entry; NULL if none). */
#define Q35_FAMILY_VIEW_DECL(fam)                                                                                  \
    int fam##_n_entries(void);                                                                                     \
    const fam##_impl *fam##_entry(int i);                                                                          \
    const fam##_impl *fam##_named(const char *name);
Q35_FAMILY_VIEW_DECL(linear)
Q35_FAMILY_VIEW_DECL(conv)
Q35_FAMILY_VIEW_DECL(deltarule)
Q35_FAMILY_VIEW_DECL(attention)
Q35_FAMILY_VIEW_DECL(moe)

enum { Q35_FAM_LINEAR, Q35_FAM_CONV, Q35_FAM_DELTARULE, Q35_FAM_ATTENTION, Q35_FAM_MOE, Q35_FAM_COUNT };

/* Family name ("linear", ...), its entry count and the name of entry i.  The count is of the
 * entries `validate --impl all` combines: lossy opt-in entries (linear tiled-bf16dot) are left
 * out of it, though q35_family_entry and --impl still name them. */
const char *q35_family_name(int fam);
int q35_family_size(int fam);
const char *q35_family_entry(int fam, int i);

/* Every family to its default entry; threads and dr_crossover to 0/NULL. */
void q35_impls_default(q35_impls *im);
/* Every family to ref (threads and dr_crossover untouched). */
void q35_impls_ref(q35_impls *im);
/* Parses a spec (above) over the default, keeping im's threads and
 * dr_crossover; -1 with a message naming the bad family or implementation
 * and the valid ones. */
int q35_impls_parse(const char *spec, q35_impls *im, char *err, size_t errlen);
/* Sets family fam to its entry i (decode follows deltarule as above). */
void q35_impls_set(q35_impls *im, int fam, int i);
/* "linear=tiled,conv=direct,..." */
void q35_impls_format(const q35_impls *im, char *buf, size_t n);
int q35_impls_is_ref(const q35_impls *im);

#endif
