/* Q4_0 rows: quantize (eq. Q4q of docs/quantization.md) and dequantize (eq. Q4). */
#include "kernels/quant/quant.h"

#include <math.h>

int q35_quantize_row_q4_0(const float *x, q35_block_q4_0 *y, size_t n)
{
    for (size_t b = 0; b < n / Q35_QBLOCK; b++) {
        const float *v = x + b * Q35_QBLOCK;
        float a = 0.0f, m = 0.0f; /* the signed value of largest magnitude, first on ties (ggml's) */
        for (int j = 0; j < Q35_QBLOCK; j++) {
            if (!isfinite(v[j])) return -1;
            if (fabsf(v[j]) > a) { a = fabsf(v[j]); m = v[j]; }
        }
        const uint16_t dh = q35_f32_to_f16(m / -8.0f);
        if ((dh & 0x7C00u) == 0x7C00u) return -1;
        y[b].d = dh;
        const double d = q35_f16_to_f32(dh);
        uint8_t nib[Q35_QBLOCK];
        for (int j = 0; j < Q35_QBLOCK; j++) {
            double t = d == 0.0 ? 0.0 : round((double)v[j] / d);
            if (t > 7.0) t = 7.0;   /* the top level: t in [7.5, 8(1+2^-11)] lands here (eq. Q4e) */
            if (t < -8.0) t = -8.0;
            nib[j] = (uint8_t)(t + 8.0);
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
