/* Q4_0 rows: quantize (eq. Q4q of docs/quantization.md) and dequantize (eq. Q4). */
#include "kernels/quant/quant.h"
#include "kernels/quant/quant_round.h"

#include <float.h>
#include <math.h>

int q35_quantize_row_q4_0(const float *x, q35_block_q4_0 *y, size_t n)
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
        /* the signed value of largest magnitude, the first one on ties (ggml's); 0 when a = 0 */
        float m = 0.0f;
        for (int j = 0; j < Q35_QBLOCK; j++)
            if (fabsf(v[j]) == a) { m = v[j]; break; }
        if (a == 0.0f) m = 0.0f; /* as the strict > search: an all-zero block (even of -0) keeps m = +0 */
        const uint16_t dh = q35_f32_to_f16(m / -8.0f);
        if ((dh & 0x7C00u) == 0x7C00u) return -1;
        y[b].d = dh;
        const double d = q35_f16_to_f32(dh);
        if (d == 0.0) {
            memset(y[b].qs, 0x88, sizeof y[b].qs); /* every n_j = 8: value 0 */
            continue;
        }
        uint8_t nib[Q35_QBLOCK];
#pragma omp simd
        for (int j = 0; j < Q35_QBLOCK; j++) {
            double t = q35_round_half_away((double)v[j] / d);
            t = t > 7.0 ? 7.0 : t; /* the top level: t in [7.5, 8(1+2^-11)] lands here (eq. Q4e) */
            t = t < -8.0 ? -8.0 : t;
            nib[j] = (uint8_t)((int)t + 8);
        }
        for (int j = 0; j < Q35_QBLOCK / 2; j++) y[b].qs[j] = (uint8_t)(nib[j] | (nib[j + 16] << 4));
    }
    return 0;
}

void q35_dequantize_row_q4_0(const q35_block_q4_0 *x, float *y, size_t n)
{
    for (size_t b = 0; b < n / Q35_QBLOCK; b++) {
        const float d = q35_f16_to_f32(x[b].d);
        float *o = y + b * Q35_QBLOCK;
        for (int j = 0; j < Q35_QBLOCK / 2; j++) {
            o[j] = d * (float)((x[b].qs[j] & 15) - 8);      /* exact */
            o[j + 16] = d * (float)((x[b].qs[j] >> 4) - 8);
        }
    }
}
