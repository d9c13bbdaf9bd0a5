/* ref_layers.h - the pieces of the reference decoder (ref/model_ref.c) that
 * the MTP head's reference (ref/mtp_ref.c) runs too: its decoder layer is a
 * full-attention layer of the model (docs/mtp.md).  Double throughout, plain
 * loops, straight from docs/model.md.  Weights come as the model holds them
 * (q35_w_at widens BF16 exactly). */
#ifndef Q35LAB_REF_REF_LAYERS_H
#define Q35LAB_REF_REF_LAYERS_H

#include "model/model.h"

double q35_ref_sigmoid(double z);
double q35_ref_silu(double z);
/* y[n] = sum_k W[n, k] x[k] for n < N (eq. 1), W stored [N, K]. */
void q35_ref_matvec(const void *W, q35_wtype wt, int N, int K, const double *x, double *y);
/* eq. 2: y = x / sqrt(mean(x^2) + eps) * (1 + w). */
void q35_ref_rmsnorm_c(const double *x, const float *w, int n, double eps, double *y);
/* eq. 8: rotate-half RoPE on the first rd dims at position pos. */
void q35_ref_rope(double *x, int rd, int pos, double theta);
/* §3, eqs. 8-10: x += the gated attention of layer L for one token at
 * position pos, whose key and value it first writes into kcache/vcache
 * [nkv, cap, hd]; w: scratch of 2*nh*hd + 2*nkv*hd + 2*nh*hd + pos + 1. */
void q35_ref_attention(const q35_config *c, const q35_layer *L, q35_wtype wt, double *kcache, double *vcache, int cap,
                       int pos, const double *xn, double *x, double *w);
/* §4: x += dense SwiGLU, or the MoE block (softmax router, top-k with ties to
 * the lower index, experts, sigmoid-gated shared expert); w: scratch of
 * E + max(I, Is) (dense: I).  wt: the MLP's / experts' matrices; router_wt: the router's and the
 * shared-expert gate's (never quantized, docs/quantization.md §5). */
void q35_ref_mlp(const q35_config *c, const q35_layer *L, q35_wtype wt, q35_wtype router_wt, const double *xn, double *x,
                 double *w);

#endif
