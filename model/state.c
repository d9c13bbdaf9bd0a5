/* state.c - allocation of the recurrent states and KV caches (state.h). */
#include "model/state.h"

#include "common/errmsg.h"
#include "common/huge_pages.h"
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

typedef struct { float **arr; size_t elems; } state_part;

static int parts(const q35_state *s, const q35_config *c, int layer, state_part out[2])
{
    const size_t B = (size_t)s->B;
    if (c->layer_types[layer] == Q35_LAYER_LINEAR) {
        out[0] = (state_part){&s->conv[layer], B * q35_conv_channels(c) * (c->linear_conv_kernel_dim - 1)};
        out[1] = (state_part){&s->delta[layer], B * c->linear_num_value_heads * c->linear_key_head_dim *
                                                    (size_t)c->linear_value_head_dim};
    } else {
        const size_t kv = B * c->num_key_value_heads * (size_t)s->capacity * c->head_dim;
        out[0] = (state_part){&s->k_cache[layer], kv};
        out[1] = (state_part){&s->v_cache[layer], kv};
    }
    return 2;
}

/* A part's room in the arena: its floats (at least one), rounded up to a cache line. */
static size_t part_bytes(size_t elems) { return ((elems ? elems : 1) * sizeof(float) + 63) & ~(size_t)63; }

int q35_state_init(q35_state *s, const q35_config *c, int B, int capacity, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    if (B < 1 || capacity < 1) {
        q35_errmsg(err, errlen, "state: batch %d and capacity %d must be positive", B, capacity);
        return -1;
    }
    s->B = B;
    s->capacity = capacity;
    s->n_layers = c->num_hidden_layers;
    s->pos = calloc((size_t)B, sizeof *s->pos);
    s->conv = calloc((size_t)s->n_layers, sizeof(float *));
    s->delta = calloc((size_t)s->n_layers, sizeof(float *));
    s->k_cache = calloc((size_t)s->n_layers, sizeof(float *));
    s->v_cache = calloc((size_t)s->n_layers, sizeof(float *));
    s->last_len = calloc((size_t)B, sizeof *s->last_len);
    s->conv_ckpt = calloc((size_t)s->n_layers, sizeof(float *));
    s->delta_ckpt = calloc((size_t)s->n_layers, sizeof(float *));
    int ok = s->pos && s->conv && s->delta && s->k_cache && s->v_cache && s->last_len && s->conv_ckpt && s->delta_ckpt;
    /* One mapping in 2 MiB pages for every layer's state and cache (common/huge_pages.h): a decode
     * step reads and writes all of them, cold (the step's weights evict them), and in 4 KiB pages
     * each 4 KiB cost a TLB miss, a page walk whose entries are cold too: 18 MiB of DeltaNet state
     * and the KV caches of the 0.8B (docs/model.md, "State in memory").  Under AddressSanitizer each part is
     * its own calloc instead, so an overrun of one is caught rather than landing in the next. */
#if defined(__SANITIZE_ADDRESS__)
    const int one_mapping = 0;
#else
    const int one_mapping = 1;
#endif
    size_t total = 0; /* every part's bytes, each rounded up to 64 */
    for (int l = 0; ok && l < s->n_layers; l++) {
        state_part p[2];
        for (int i = 0, n = parts(s, c, l, p); i < n; i++) total += part_bytes(p[i].elems);
    }
    if (ok && one_mapping) {
        s->arena_bytes = total ? total : 64;
        ok = (s->arena = q35_alloc_huge(s->arena_bytes)) != NULL; /* zero-filled, as calloc */
    }
    size_t at = 0;
    for (int l = 0; ok && l < s->n_layers; l++) {
        state_part p[2];
        for (int i = 0, n = parts(s, c, l, p); ok && i < n; i++) {
            if (one_mapping) *p[i].arr = (float *)(void *)((char *)s->arena + at);
            else ok = (*p[i].arr = calloc(p[i].elems ? p[i].elems : 1, sizeof(float))) != NULL;
            at += part_bytes(p[i].elems);
            s->bytes += p[i].elems * sizeof(float);
            if (c->layer_types[l] == Q35_LAYER_LINEAR) *(i ? &s->delta_elems : &s->conv_elems) = p[i].elems;
        }
    }
    if (!ok) {
        q35_errmsg(err, errlen, "state: out of memory (batch %d, capacity %d)", B, capacity);
        q35_state_free(s);
        return -1;
    }
    return 0;
}

void q35_state_reset(q35_state *s)
{
    memset(s->pos, 0, (size_t)s->B * sizeof *s->pos);
    memset(s->last_len, 0, (size_t)s->B * sizeof *s->last_len);
    s->n_ckpt = 0;
    /* KV caches beyond pos are never read; the recurrent states restart from zero. */
    for (int l = 0; l < s->n_layers; l++) {
        if (s->conv[l]) memset(s->conv[l], 0, s->conv_elems * sizeof(float));
        if (s->delta[l]) memset(s->delta[l], 0, s->delta_elems * sizeof(float));
    }
}

void q35_state_free(q35_state *s)
{
    if (!s) return;
    for (int l = 0; l < s->n_layers; l++) {
        if (!s->arena) { /* one calloc each (under ASan); else they are in the arena */
            if (s->conv) free(s->conv[l]);
            if (s->delta) free(s->delta[l]);
            if (s->k_cache) free(s->k_cache[l]);
            if (s->v_cache) free(s->v_cache[l]);
        }
        if (s->conv_ckpt) free(s->conv_ckpt[l]);
        if (s->delta_ckpt) free(s->delta_ckpt[l]);
    }
    for (int i = 0; i < 3; i++)
        if (s->scratch[i]) q35_free_huge(s->scratch[i], s->scratch_bytes[i]);
    if (s->arena) q35_free_huge(s->arena, s->arena_bytes);
    free(s->pos); free(s->conv); free(s->delta); free(s->k_cache); free(s->v_cache);
    free(s->last_len); free(s->conv_ckpt); free(s->delta_ckpt); free(s->ckpt_t);
    memset(s, 0, sizeof *s);
}

int q35_state_checkpoints(q35_state *s, int n, char *err, size_t errlen)
{
    if (n <= s->ckpt_cap) return 0;
    size_t bytes = 0;
    for (int l = 0; l < s->n_layers; l++) {
        if (!s->delta[l]) continue;
        free(s->conv_ckpt[l]);
        free(s->delta_ckpt[l]);
        s->conv_ckpt[l] = malloc((size_t)n * s->conv_elems * sizeof(float));
        s->delta_ckpt[l] = malloc((size_t)n * s->delta_elems * sizeof(float));
        if (!s->conv_ckpt[l] || !s->delta_ckpt[l]) {
            q35_errmsg(err, errlen, "state: out of memory for %d checkpoints of layer %d", n, l);
            s->ckpt_cap = 0; /* the other layers' rooms are kept but unused: a later call frees them */
            return -1;
        }
        bytes += (size_t)n * (s->conv_elems + s->delta_elems) * sizeof(float);
    }
    int32_t *t = realloc(s->ckpt_t, (size_t)n * sizeof *t);
    if (!t) { q35_errmsg(err, errlen, "state: out of memory for %d checkpoints", n); s->ckpt_cap = 0; return -1; }
    for (int i = 0; i < n; i++) t[i] = i;
    s->ckpt_t = t;
    s->ckpt_cap = n;
    s->n_ckpt = 0;
    s->ckpt_bytes = bytes;
    return 0;
}

int q35_state_rollback(q35_state *s, const int32_t *keep, char *err, size_t errlen)
{
    for (int b = 0; b < s->B; b++) {
        const int n = s->last_len[b];
        if (n == 0 || keep[b] == n) continue;
        if (keep[b] < 1 || keep[b] > n || keep[b] > s->n_ckpt) {
            q35_errmsg(err, errlen, "state: sequence %d cannot keep %d of its last %d tokens (%d checkpoints kept)", b,
                       (int)keep[b], n, s->n_ckpt);
            return -1;
        }
    }
    const size_t cb = s->conv_elems / s->B, db = s->delta_elems / s->B; /* one sequence's slice */
    for (int b = 0; b < s->B; b++) {
        const int n = s->last_len[b];
        if (n == 0 || keep[b] == n) continue;
        const size_t i = (size_t)keep[b] - 1; /* the state after token keep-1 */
        for (int l = 0; l < s->n_layers; l++) {
            if (!s->delta[l]) continue;
            memcpy(s->conv[l] + b * cb, s->conv_ckpt[l] + i * s->conv_elems + b * cb, cb * sizeof(float));
            memcpy(s->delta[l] + b * db, s->delta_ckpt[l] + i * s->delta_elems + b * db, db * sizeof(float));
        }
        s->pos[b] -= n - keep[b];
        s->last_len[b] = keep[b];
    }
    return 0;
}

float *q35_state_scratch_unzeroed(q35_state *s, int which, size_t n)
{
    const size_t bytes = (n ? n : 1) * sizeof(float);
    if (bytes > s->scratch_bytes[which]) {
        if (s->scratch[which]) q35_free_huge(s->scratch[which], s->scratch_bytes[which]);
        s->scratch[which] = q35_alloc_huge(bytes);
        s->scratch_bytes[which] = s->scratch[which] ? bytes : 0;
        if (!s->scratch[which]) return NULL;
    }
    return s->scratch[which];
}

float *q35_state_scratch(q35_state *s, int which, size_t n)
{
    float *p = q35_state_scratch_unzeroed(s, which, n);
    if (p) memset(p, 0, (n ? n : 1) * sizeof(float));
    return p;
}
