/* spec_validate.h - does speculative decoding give plain greedy decoding's
 * tokens?  (docs/speculative.md, `q35lab validate --speculative`)
 *
 * For one implementation combination, the prompts run as one right-padded
 * batch twice: plain greedy (q35_generate) and speculative with the given
 * draft source and length (q35_generate_speculative; the oracle drafts from
 * the plain run's tokens).  Every token must be equal; with a golden file
 * (its tokens dumped from PyTorch) the speculative tokens must equal those.
 */
#ifndef Q35LAB_HARNESS_SPEC_VALIDATE_H
#define Q35LAB_HARNESS_SPEC_VALIDATE_H

#include "harness/model_validate.h"
#include "model/speculative.h"

typedef struct {
    long match, total;        /* speculative tokens equal to plain greedy's */
    long golden_match, golden_total; /* equal to the golden tokens (0 total: no golden) */
    int first_bad_prompt, first_bad_step; /* against plain greedy; -1 if none */
    q35_spec_stats st;
} q35_spec_match;

/* p->steps greedy steps; golden: p->tokens used when non-NULL rows. */
int q35_validate_speculative(const q35_model *m, const q35_impls *im, const q35_prompts *p, const q35_spec_opts *o,
                             int use_golden, q35_spec_match *r, char *err, size_t errlen);

#endif
