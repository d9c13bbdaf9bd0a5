/* mtp_ref.h - the MTP head of docs/mtp.md as an executable spec: one
 * sequence, one pair at a time, every activation and the KV cache in double,
 * plain loops written from the equations (fc of the two normalized halves,
 * gated full attention with q/k norms and partial RoPE, dense SwiGLU or the
 * softmax-router MoE with its shared expert, mtp.norm, lm_head).  It shares
 * nothing with model/mtp.c but the loaded weights.  One process only (the
 * whole vocabulary and every head). */
#ifndef Q35LAB_REF_MTP_REF_H
#define Q35LAB_REF_MTP_REF_H

#include "model/model.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const q35_model *m;
    int capacity, pos;       /* pos: pairs consumed, the RoPE position of the next one */
    double *kc, *vc;         /* [nkv * capacity * hd] */
    double *work;            /* scratch for one pair */
} q35_mtp_ref;

int q35_mtp_ref_init(q35_mtp_ref *r, const q35_model *m, int capacity, char *err, size_t errlen);
void q35_mtp_ref_free(q35_mtp_ref *r);
/* As q35_mtp_forward for B = 1: T pairs, tokens[t] = x_{p+t+1} and hidden[t, :]
 * = the target's h_{p+t} (p = r->pos), each run at position p + t.  logits:
 * all_logits ? [T, V] : [V] (the last pair's); hidden_out: NULL or [T, H], the
 * output after mtp.norm.  Rounded to float at the end. */
int q35_mtp_ref_forward(q35_mtp_ref *r, int T, const int32_t *tokens, const float *hidden, float *logits,
                        int all_logits, float *hidden_out, char *err, size_t errlen);

#endif
