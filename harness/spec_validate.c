/* spec_validate.c - speculative against plain greedy (spec_validate.h). */
#include "harness/spec_validate.h"

#include "common/errmsg.h"

#include <stdlib.h>
#include <string.h>

int q35_validate_speculative(const q35_model *m, const q35_impls *im, const q35_prompts *p, const q35_spec_opts *o,
                             int use_golden, q35_spec_match *r, char *err, size_t errlen)
{
    const int B = p->n, steps = p->steps;
    memset(r, 0, sizeof *r);
    r->first_bad_prompt = r->first_bad_step = -1;
    int Tp = 0;
    for (int b = 0; b < B; b++) Tp = p->len[b] > Tp ? p->len[b] : Tp;
    int32_t *plain = malloc((size_t)B * steps * sizeof *plain), *spec = malloc((size_t)B * steps * sizeof *spec);
    q35_state s = {0};
    int rc = -1;
    if (!plain || !spec) { q35_errmsg(err, errlen, "validate: out of memory"); goto out; }
    if (q35_generate(m, im, B, (const int32_t *const *)p->prompt, p->len, steps, NULL, plain, NULL, NULL, err, errlen))
        goto out;
    q35_spec_opts so = *o;
    if (so.source == Q35_DRAFT_ORACLE) so.oracle = plain;
    if (q35_state_init(&s, &m->local, B, Tp + steps + so.n_draft, err, errlen) ||
        q35_generate_speculative(m, im, &s, (const int32_t *const *)p->prompt, p->len, steps, &so, spec, &r->st, err,
                                 errlen))
        goto out;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < steps; i++) {
            const int32_t t = spec[(size_t)b * steps + i];
            r->total++;
            if (t == plain[(size_t)b * steps + i]) r->match++;
            else if (r->first_bad_prompt < 0) { r->first_bad_prompt = b; r->first_bad_step = i; }
            if (use_golden && p->tokens && p->tokens[b]) {
                r->golden_total++;
                r->golden_match += t == p->tokens[b][i];
            }
        }
    rc = 0;
out:
    q35_state_free(&s);
    free(plain);
    free(spec);
    return rc;
}
