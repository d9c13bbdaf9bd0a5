/* activation.h - the model's elementwise gates and RMSNorm passes on float rows, vectorized (docs/model.md,
 * "Elementwise pieces"): SiLU and the sigmoid through Cephes' expf (kernels/exp_avx2.h, about
 * 1 ulp) and a reciprocal with one Newton step, 8 lanes with AVX2 + FMA where cpu_isa() allows,
 * plain C with expf otherwise; NaN propagates.  Below ~2 ulp of the double-precision definitions
 * they replace (tests/test_activation.c), and two to three orders of magnitude under any
 * kernel's tolerance; they were a measured share of a step (`bench model`'s "the rest": 14% of
 * the 0.8B's pp512) while computed one double exp at a time.
 */
#ifndef Q35_ACTIVATION_H
#define Q35_ACTIVATION_H

#include <stddef.h>

/* g[i] = silu(g[i]) * u[i]: SwiGLU's gate (docs/model.md §4). */
void q35_act_silu_mul(float *g, const float *u, size_t n);
/* a[i] *= sigmoid(gate[i]): gated attention's output gate (§3). */
void q35_act_sigmoid_mul(float *a, const float *gate, size_t n);
/* out[i] = silu(z[i]): the DeltaNet output norm's gate (§2, eq. 3); out may be z. */
void q35_act_silu(const float *z, float *out, size_t n);

/* The RMSNorms' two passes (docs/model.md eqs. 2, 3), in double as model/ops.c had them in plain
 * loops (a chained double add per element: 48 norms a 0.8B decode step, on one thread):
 * sum of x[i]^2 in double, 4 lanes x 4 partial sums (the order differs from one running sum by
 * the last bits of a double), and y[i] = (float)((x[i] * r) * (1 + w[i])) in double, the same
 * operations as the plain expression, so the same bits; y may be x. */
double q35_act_sumsq(const float *x, size_t n);
void q35_act_scale_centred(const float *x, const float *w, double r, float *y, size_t n);

#endif
