/* The gated full-attention family: causal GQA softmax attention over a KV cache.
 *
 * Qwen3.5's full-attention layers (one in four) compute, per query head h of
 * sequence b and new token t (position p = past[b] + t):
 *
 *   s_j   = scale * q[b,t,h,:] . k_cache[b, h/(Hq/Hkv), j, :]     j = 0..p
 *   o     = sum_j softmax(s)_j * v_cache[b, h/(Hq/Hkv), j, :]
 *
 * The model does everything around it (q/k RMSNorm, partial RoPE, writing the
 * new keys and values into the cache, the sigmoid output gate, o_proj); this
 * family is only the part that grows with the context.  The math is in
 * docs/attention.md; the executable spec is ref/attention_ref.c, with the
 * same signature as the optimized kernels and the first entry of the table.
 */
#ifndef Q35_ATTENTION_H
#define Q35_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

/* Layouts (row-major, innermost last):
 *   q, out              [B, T, Hq, D]
 *   k_cache, v_cache    [B, Hkv, L, D]    L = capacity in positions
 * Query head h reads KV head h / (Hq / Hkv): consecutive query heads share a
 * KV head, as transformers' repeat_kv.  The new tokens' keys and values must
 * already be in the cache at positions past[b] .. past[b] + seq_len[b] - 1.
 * Rows of out for padding tokens (t >= seq_len[b]) are set to zero. */
typedef struct {
    int B, T, Hq, Hkv, D, L;
    const float *q;
    const float *k_cache, *v_cache;
    const int32_t *past;     /* [B] positions already cached before this call; NULL: all 0 */
    const int32_t *seq_len;  /* [B] valid new tokens (right padding); NULL: all T */
    float *out;              /* required; must not overlap q or the caches */
    float scale;             /* 0: 1/sqrt(D) */
} attention_problem;

typedef struct {
    int threads; /* 0: OpenMP default */
} attention_opts;

typedef int (*attention_fn)(const attention_problem *p, const attention_opts *o);

typedef struct {
    const char *name;
    const char *summary;
    attention_fn run;
    attention_opts defaults;
    double claim_tol;        /* normwise relative error vs ref it promises */
    int (*available)(void);  /* NULL: runs on every CPU */
} attention_impl;

extern const attention_impl attention_impls[];
extern const int attention_n_impls;

const attention_impl *attention_find(const char *name);

/* Shapes (Hq % Hkv == 0, D >= 1, past[b] >= 0, seq_len[b] in [0, T],
 * past[b] + seq_len[b] <= L), pointers, overlap of out with the inputs; with
 * check_values also that q and the used cache rows are finite.
 * Returns 0, or -1 with a one-line message in err. */
int attention_validate(const attention_problem *p, int check_values, char *err, size_t errlen);

/* Validates, merges opts over impl->defaults, runs.  0 on success. */
int attention_run(const attention_impl *impl, const attention_problem *p, const attention_opts *opts,
                  char *err, size_t errlen);

static inline float attention_scale(const attention_problem *p)
{
    return p->scale != 0.0f ? p->scale : 1.0f / __builtin_sqrtf((float)p->D);
}
static inline int attention_past(const attention_problem *p, int b) { return p->past ? p->past[b] : 0; }
static inline int attention_valid_len(const attention_problem *p, int b)
{
    return p->seq_len ? p->seq_len[b] : p->T;
}

/* Useful flops: 4*D per (query head, attended position) pair (QK^T and PV). */
long long attention_flops(const attention_problem *p);

/* The implementations (one file each). */
int attention_flash(const attention_problem *p, const attention_opts *o);

#endif
