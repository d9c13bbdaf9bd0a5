/* forward.h - one forward call of the Qwen3.5 decoder over a batch.
 *
 * tokens [B, T] row-major, right-padded: sequence b has seq_len[b] valid
 * tokens (NULL: all T) that continue it from position state->pos[b]; the
 * call advances pos[b] by seq_len[b].  Padding changes nothing: its tokens
 * are never read, it does not touch any state and its outputs are dropped.
 * A prefill is a call with the prompt, a decode step a call with T = 1.
 *
 * logits: all_logits ? [B, T, V] (padding rows zero) : [B, V], the logits
 * after each sequence's last valid token (zero if seq_len[b] = 0), where V
 * is this rank's vocabulary slice, m->sh.vocab_n ids from m->sh.vocab0: the
 * whole vocabulary in one process; under tensor parallelism (docs/tp.md)
 * q35_greedy_token and q35_logits_gather (model/generate.h) combine them.
 * Returns 0, or -1 with a one-line message (bad token id, capacity exceeded,
 * a kernel's refusal); the state is then unspecified (reset it).
 * The layer semantics are in docs/model.md.
 */
#ifndef Q35LAB_MODEL_FORWARD_H
#define Q35LAB_MODEL_FORWARD_H

#include "model/impls.h"
#include "model/model.h"
#include "model/state.h"

int q35_forward(const q35_model *m, q35_state *s, const q35_impls *im, int T, const int32_t *tokens,
                const int32_t *seq_len, float *logits, int all_logits, char *err, size_t errlen);

/* What else a call may produce (q35_forward_opt; zero: nothing more).
 * hidden: [B, T, H], every valid token's hidden state after the final norm
 *   (what lm_head reads, and what the MTP head takes: docs/mtp.md); padding
 *   rows zero.
 * checkpoints: n > 0 keeps, in s (q35_state_checkpoints), every linear-
 *   attention layer's DeltaNet state and conv window after each of the call's
 *   first n tokens, so q35_state_rollback can return any sequence to after
 *   its token i < n of this call without recomputing (docs/speculative.md). */
typedef struct {
    int all_logits;
    float *hidden;
    int checkpoints;
} q35_fwd_opts;

int q35_forward_opt(const q35_model *m, q35_state *s, const q35_impls *im, int T, const int32_t *tokens,
                    const int32_t *seq_len, float *logits, const q35_fwd_opts *o, char *err, size_t errlen);

#endif
