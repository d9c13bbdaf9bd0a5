/* ops.c - the model's small elementwise operations (docs/model.md).  Sums and scales in
 * double; the gates' exponentials in float, 8 at a time (kernels/activation.h): one double exp
 * per element made them a measured share of a step. */
#include "kernels/activation.h"
#include "model/forward_internal.h"

#include <math.h>

/* eq. 2: Qwen3.5's zero-centred RMSNorm, y = x / sqrt(mean(x^2) + eps) * (1 + w). */
void q35_rmsnorm_centred(const float *x, const float *w, int n, double eps, float *y)
{
    const double r = 1.0 / sqrt(q35_act_sumsq(x, (size_t)n) / n + eps);
    q35_act_scale_centred(x, w, r, y, (size_t)n);
}

/* eq. 3: the DeltaNet output norm (not zero-centred), x <- x / rms(x) * w * silu(z). */
void q35_rmsnorm_gated(float *x, const float *w, const float *z, int n, double eps)
{
    const double ss = q35_act_sumsq(x, (size_t)n);
    const double r = 1.0 / sqrt(ss / n + eps);
    float silu[256];
    for (int i0 = 0; i0 < n; i0 += 256) {
        const int m = n - i0 < 256 ? n - i0 : 256;
        q35_act_silu(z + i0, silu, (size_t)m);
        for (int i = 0; i < m; i++) x[i0 + i] = (float)(x[i0 + i] * r * w[i0 + i] * silu[i]);
    }
}

/* eq. 8: rotate-half RoPE on the first rotary_dim dims; pair (i, i + rotary_dim/2)
 * turns by pos * theta^(-2i/rotary_dim).  The rest of the head passes through.  The angles
 * depend on the position only, so a token's cos and sin are computed once for all its heads. */
void q35_rope_angles(int rotary_dim, int pos, double theta, double *cs)
{
    const int h = rotary_dim / 2;
    for (int i = 0; i < h; i++) {
        const double ang = pos * pow(theta, -2.0 * i / rotary_dim);
        cs[2 * i] = cos(ang);
        cs[2 * i + 1] = sin(ang);
    }
}

void q35_rope(float *x, int rotary_dim, const double *cs)
{
    const int h = rotary_dim / 2;
    for (int i = 0; i < h; i++) {
        const double c = cs[2 * i], s = cs[2 * i + 1], a = x[i], b = x[i + h];
        x[i] = (float)(a * c - b * s);
        x[i + h] = (float)(b * c + a * s);
    }
}
