/* forward_internal.h - what the layer files of one forward call share
 * (model/forward.c drives; layer_deltanet.c, layer_attention.c and
 * layer_mlp.c each add one sublayer's output to the residual stream). */
#ifndef Q35LAB_MODEL_FORWARD_INTERNAL_H
#define Q35LAB_MODEL_FORWARD_INTERNAL_H

#include "model/forward.h"

#include <omp.h>
#include <stdio.h>

typedef struct {
    const q35_model *m;
    q35_state *s;
    const q35_impls *im;
    int B, T, BT;
    const int32_t *seq_len;   /* [B], never NULL here */
    int checkpoints;          /* states to keep after the first n tokens (q35_fwd_opts) */
    char *err;
    size_t errlen;
} q35_fwd;

/* A call's T, seq_len (NULL: all T), positions against the state's capacity
 * and token ids, for q35_forward and the MTP head (who names the caller in
 * the message).  0, or -1 with a one-line message. */
int q35_fwd_check_tokens(const char *who, const q35_model *m, const q35_state *s, int T, const int32_t *tokens,
                         const int32_t *seq_len, char *err, size_t errlen);

/* y[M, N] (+)= x[M, K] W[N, K]^T through the chosen linear implementation. */
int q35_fwd_linear(const q35_fwd *f, int M, int N, int K, const float *x, const void *w, q35_wtype wt, float *y,
                   int accumulate);
/* The projections ps[0..n) of one input (same x, M, K), in one call of the linear family
 * (linear_run_shared: one fork for the group; each y as q35_fwd_linear would write it). */
int q35_fwd_linear_shared(const q35_fwd *f, const linear_problem *ps, int n);
/* x[M, N] += sum over the ranks of a[M, K] W[N, K]^T, W this rank's columns
 * of a projection split by its input (out_proj, o_proj, down_proj): one
 * all-reduce under tensor parallelism, a plain accumulation in one process. */
int q35_fwd_reduce_into(const q35_fwd *f, int M, int N, int K, const float *a, const void *w, q35_wtype wt, float *x);
/* x[0..n) += sum over the ranks of y (y is overwritten with the sum). */
int q35_fwd_add_reduced(const q35_fwd *f, float *y, size_t n, float *x);

/* Each adds its sublayer's output for the normalized input xn [BT, H] to x [BT, H].
 * The attention and MLP sublayers take their weights (and the attention its
 * KV cache [B, nkv, capacity, hd]) directly, so the MTP head's decoder layer
 * (model/mtp.c) runs through the same code as the model's own. */
int q35_layer_deltanet(const q35_fwd *f, int l, const float *xn, float *x);
int q35_layer_attention(const q35_fwd *f, const q35_layer *L, float *k_cache, float *v_cache, const float *xn, float *x);
int q35_layer_mlp(const q35_fwd *f, const q35_layer *L, const float *xn, float *x);

/* The embedding of token id into out[H] (model/embed.c).  Each rank holds the
 * rows of its vocabulary slice (model/shard.h): it writes the rows it holds,
 * zeros the others, and the caller sums over the ranks (one process: all
 * rows held). */
void q35_embed_row(const q35_model *m, int32_t id, float *out);

/* Elementwise pieces (model/ops.c), double accumulation, docs/model.md eqs.; the SiLU and
 * sigmoid gates of whole rows are kernels/activation.h's. */
void q35_rmsnorm_centred(const float *x, const float *w, int n, double eps, float *y); /* eq. 2 */
void q35_rmsnorm_gated(float *x, const float *w, const float *z, int n, double eps);   /* eq. 3 */
/* eq. 8: cs[2i], cs[2i+1] = cos, sin of pair i's angle at pos (rotary_dim doubles), then x
 * turned by them. */
void q35_rope_angles(int rotary_dim, int pos, double theta, double *cs);
void q35_rope(float *x, int rotary_dim, const double *cs);
static inline float q35_sigmoid(float x) { return (float)(1.0 / (1.0 + __builtin_exp(-(double)x))); }

#endif
