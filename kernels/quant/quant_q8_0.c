/* Q8_0 rows: quantize (eq. Q8q of docs/quantization.md) and dequantize (eq. Q8). */
#include "kernels/quant/quant.h"
#include "kernels/quant/quant_round.h"

#include <float.h>
#include <math.h>

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
            double q = q35_round_half_away((double)v[j] / d);
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
