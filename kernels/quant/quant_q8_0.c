/* Q8_0 rows: quantize (eq. Q8q of docs/quantization.md) and dequantize (eq. Q8). */
#include "kernels/quant/quant.h"

#include <float.h>
#include <math.h>

/* Round to nearest, ties away from zero (C's round) of a double |t| < 2^51, without libm, in a form the
 * compiler vectorizes: (t + 1.5*2^52) - 1.5*2^52 rounds to nearest, ties to even (the sum's ulp is 1); the
 * difference t - r is then exact (|t - r| <= 1/2), and exactly +-1/2 only on a tie, which goes away from 0. */
static inline double round_half_away(double t)
{
    const double magic = 0x1.8p52; /* (never built with -ffast-math, which would fold (t + m) - m to t) */
    const double r = (t + magic) - magic;
    const double diff = t - r;
    const double up = diff == 0.5 && t > 0 ? 1.0 : 0.0, down = diff == -0.5 && t < 0 ? 1.0 : 0.0;
    return r + up - down;
}

int q35_quantize_row_q8_0(const float *x, q35_block_q8_0 *y, size_t n)
{
    for (size_t b = 0; b < n / Q35_QBLOCK; b++) {
        const float *v = x + b * Q35_QBLOCK;
        float a = 0.0f;
        int bad = 0;
#pragma omp simd reduction(max : a) reduction(| : bad)
        for (int j = 0; j < Q35_QBLOCK; j++) {
            const float f = fabsf(v[j]);
            bad |= !(f <= FLT_MAX); /* inf or NaN */
            a = f > a ? f : a;
        }
        if (bad) return -1;
        const uint16_t dh = q35_f32_to_f16(a / 127.0f);
        if ((dh & 0x7C00u) == 0x7C00u) return -1; /* the scale overflows fp16 */
        y[b].d = dh;
        const double d = q35_f16_to_f32(dh);
        if (d == 0.0) {
            memset(y[b].q, 0, sizeof y[b].q);
            continue;
        }
#pragma omp simd
        for (int j = 0; j < Q35_QBLOCK; j++) {
            /* the quotient in double is a tie only when it is one exactly (docs §3); |t| < 2^31 */
            double q = round_half_away((double)v[j] / d);
            q = q > 127.0 ? 127.0 : q;
            q = q < -127.0 ? -127.0 : q;
            y[b].q[j] = (int8_t)(int)q;
        }
    }
    return 0;
}

void q35_dequantize_row_q8_0(const q35_block_q8_0 *x, float *y, size_t n)
{
    for (size_t b = 0; b < n / Q35_QBLOCK; b++) {
        const float d = q35_f16_to_f32(x[b].d);
        for (int j = 0; j < Q35_QBLOCK; j++) y[b * Q35_QBLOCK + j] = d * (float)x[b].q[j]; /* exact */
    }
}
