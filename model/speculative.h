/* speculative.h - greedy speculative decoding with exact rollback
 * (docs/speculative.md).
 *
 * Each step drafts up to N tokens per sequence, verifies them with one
 * forward call over [last token, drafts] that keeps the DeltaNet/conv state
 * after every token (q35_fwd_opts.checkpoints), accepts the drafts that equal
 * the model's own greedy tokens, and returns every sequence's state to the
 * checkpoint after its last accepted token (q35_state_rollback: a copy, no
 * recomputation; the KV caches are cut by the position).  The tokens are
 * those of plain greedy decoding (q35_generate), whatever the drafts are.
 *
 * Draft sources:
 *   mtp     the checkpoint's MTP head (model/mtp.h), chained N times;
 *   ngram   prompt lookup: the tokens that followed the latest earlier
 *           occurrence of the sequence's last g tokens (g = 3, 2, 1);
 *   oracle  the model's own greedy continuation (given), each token replaced
 *           by another with probability 1 - P: the acceptance rate is set.
 */
#ifndef Q35LAB_MODEL_SPECULATIVE_H
#define Q35LAB_MODEL_SPECULATIVE_H

#include "model/forward.h"
#include "model/generate.h"

#include <stdint.h>

#define Q35_DRAFT_MAX 16

typedef enum { Q35_DRAFT_MTP = 1, Q35_DRAFT_NGRAM, Q35_DRAFT_ORACLE } q35_draft_source;

typedef struct {
    q35_draft_source source;
    int n_draft;            /* N, 1..Q35_DRAFT_MAX */
    /* oracle */
    const int32_t *oracle;  /* [B, steps]: the greedy tokens */
    double oracle_p;        /* probability each drafted token is the right one */
    uint64_t seed;          /* which tokens are replaced */
    /* each committed token, in order, as q35_generate_on_hook calls it: tokens
     * are committed in accepted groups, so the calls for one sequence come in
     * bursts; a sequence that has ended gets no more drafts nor verify rows */
    const q35_gen_hook *hook;
} q35_spec_opts;

typedef struct {
    long verify_calls;      /* forward calls over [last token, drafts] */
    long rows;              /* sequence-steps verified (verify_calls x live sequences) */
    long drafted, accepted; /* draft tokens over the batch */
    long accept_hist[Q35_DRAFT_MAX + 1]; /* sequence-steps by accepted count */
    long mtp_draft_tokens;  /* drafts the MTP head produced (its cost per token: mtp_s / this) */
    double prefill_s, draft_s, verify_s, rollback_s, mtp_s;
} q35_spec_stats;

/* Parses "mtp", "ngram" or "oracle:P" (0 <= P <= 1) into o->source and
 * o->oracle_p; 0, or -1 with a message. */
int q35_draft_source_parse(const char *text, q35_spec_opts *o, char *err, size_t errlen);
const char *q35_draft_source_name(q35_draft_source s);

/* Like q35_generate_on (model/generate.h): s a fresh state or a loaded
 * prefix, with room for pos + lens + steps + N; tokens [B, steps]; st may be
 * NULL.  The MTP source needs the state to start empty (its own KV cache
 * holds the positions it has seen). */
int q35_generate_speculative(const q35_model *m, const q35_impls *im, q35_state *s, const int32_t *const *prompts,
                             const int *lens, int steps, const q35_spec_opts *o, int32_t *tokens, q35_spec_stats *st,
                             char *err, size_t errlen);

#endif
