/* mtp.h - the multi-token-prediction head of a Qwen3.5 checkpoint (docs/mtp.md).
 *
 * From the target's hidden state h_t (after the model's final norm, what
 * lm_head reads: q35_fwd_opts.hidden) and the next token x_{t+1}, the head
 * predicts x_{t+2}:
 *   h' = fc([pre_fc_norm_embedding(embed(x_{t+1})) ; pre_fc_norm_hidden(h_t)])
 *   h' += attn(input_layernorm(h')); h' += mlp(post_attention_layernorm(h'))
 *        (mtp.layers.0: the model's gated full attention and MLP/MoE, at RoPE
 *         position t, with a KV cache of its own)
 *   out = mtp.norm(h'),  logits = lm_head(out)
 * `out` is also the hidden a chained second step takes (with x_{t+2}).
 * Returns 0, or -1 with a one-line message.
 */
#ifndef Q35LAB_MODEL_MTP_H
#define Q35LAB_MODEL_MTP_H

#include "model/impls.h"
#include "model/model.h"
#include "model/state.h"

#include <stddef.h>
#include <stdint.h>

/* The MTP head's own KV cache: a q35_state holding one full-attention layer. */
int q35_mtp_state_init(q35_state *ms, const q35_model *m, int B, int capacity, char *err, size_t errlen);

/* T pairs per sequence (right-padded, seq_len NULL = all T): tokens[b,t] is x_{p+t+1} and hidden[b,t,:] the target's h_{p+t}
 * (p = ms->pos[b]); runs the head at positions p+t, appends to its KV cache, advances ms->pos[b] by seq_len[b].
 * logits: all_logits ? [B,T,V] : [B,V] (last valid row), V = m->sh.vocab_n (this rank's vocab slice, as q35_forward);
 * hidden_out: NULL or [B,T,H], the hidden a chained step takes (after mtp.norm; padding rows zero). */
int q35_mtp_forward(const q35_model *m, q35_state *ms, const q35_impls *im, int T, const int32_t *tokens,
                    const float *hidden, const int32_t *seq_len, float *logits, int all_logits, float *hidden_out,
                    char *err, size_t errlen);

#endif
