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
    /* Scratch of the forward calls, kept between them: fresh pages for every
     * layer's activations cost more (page faults, zeroing) than prefill's
     * own work on small models.  Grown on demand (q35_state_scratch). */
    float *scratch[3];
    size_t scratch_bytes[3];
    size_t bytes;        /* everything above */
} q35_state;

/* capacity: positions each sequence may reach (prompt + generated). */
int q35_state_init(q35_state *s, const q35_config *c, int B, int capacity, char *err, size_t errlen);
void q35_state_reset(q35_state *s);  /* back to empty sequences (zeros) */
void q35_state_free(q35_state *s);
/* Scratch buffer `which` (0: the residual stream, 1: a layer's temporaries,
 * 2: a projection's partial sums before the ranks add them up) of at least
 * n floats, zeroed; NULL if out of memory. */
float *q35_state_scratch(q35_state *s, int which, size_t n);

#endif
