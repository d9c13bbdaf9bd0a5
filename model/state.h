/* state.h - what a Qwen3.5 decoder carries from one forward call to the next,
 * for a batch of B sequences: per linear-attention layer the conv state
 * [B, C, K-1] and the delta-rule state [B, Hv, Dk, Dv]; per full-attention
 * layer the KV cache [B, nkv, capacity, hd]; per sequence its position. */
#ifndef Q35LAB_MODEL_STATE_H
#define Q35LAB_MODEL_STATE_H

#include "model/config.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int B, capacity, n_layers;
    int32_t *pos;        /* [B] tokens consumed so far */
    float **conv;        /* [n_layers]; NULL for full-attention layers */
    float **delta;       /* [n_layers]; NULL for full-attention layers */
    float **k_cache, **v_cache; /* [n_layers]; NULL for linear-attention layers */
    size_t conv_elems, delta_elems; /* per linear-attention layer */
    /* Checkpoints (docs/speculative.md): room for ckpt_cap states per
     * linear-attention layer, [ckpt_cap, B, ...] like conv[] and delta[];
     * the last forward call filled the first n_ckpt of them (the states
     * after its tokens 0..n_ckpt-1) and consumed last_len[b] tokens of
     * sequence b.  q35_state_rollback returns to any of them. */
    int ckpt_cap, n_ckpt;
    int32_t *last_len;   /* [B] */
    int32_t *ckpt_t;     /* [ckpt_cap]: 0, 1, 2, ... the token indices the kernels are given */
    float **conv_ckpt, **delta_ckpt; /* [n_layers]; NULL for full-attention layers or without room */
    /* Scratch of the forward calls, kept between them: fresh pages for every
     * layer's activations cost more (page faults, zeroing) than prefill's
     * own work on small models.  Grown on demand (q35_state_scratch). */
    float *scratch[3];
    size_t scratch_bytes[3];
    size_t bytes;        /* everything above but the checkpoints */
    void *arena;         /* the states and caches, one mapping in 2 MiB pages (NULL under ASan: one calloc each) */
    size_t arena_bytes;
    size_t ckpt_bytes;   /* the checkpoints' room */
} q35_state;

/* capacity: positions each sequence may reach (prompt + generated). */
int q35_state_init(q35_state *s, const q35_config *c, int B, int capacity, char *err, size_t errlen);
void q35_state_reset(q35_state *s);  /* back to empty sequences (zeros) */
void q35_state_free(q35_state *s);
/* Room for n checkpoints per layer (allocated once, grown if n is larger). */
int q35_state_checkpoints(q35_state *s, int n, char *err, size_t errlen);
/* Sequence b keeps the first keep[b] tokens of the last forward call
 * (1 <= keep[b] <= last_len[b], or anything when last_len[b] = 0): its
 * DeltaNet states and conv windows return to the checkpoint after token
 * keep[b]-1 (a copy, no recomputation) and its position to where that token
 * left it, which also cuts its KV caches (rows past pos are never read).
 * keep[b] = last_len[b] changes nothing.  -1 (state untouched) if a
 * checkpoint that is needed was not kept. */
int q35_state_rollback(q35_state *s, const int32_t *keep, char *err, size_t errlen);

/* Scratch buffer `which` (0: the residual stream, 1: a layer's temporaries,
 * 2: a projection's partial sums before the ranks add them up) of at least
 * n floats, zeroed; NULL if out of memory. */
float *q35_state_scratch(q35_state *s, int which, size_t n);
/* The same buffer, not zeroed (it holds the last call's values): for a layer that writes every
 * element of it before reading it, where zeroing 90 KB per DeltaNet layer was a decode step's
 * largest memset (0.5% of its samples, on one thread). */
float *q35_state_scratch_unzeroed(q35_state *s, int which, size_t n);

#endif
