/* Block-quantized weights: Q8_0 and Q4_0, ggml's layouts (docs/quantization.md).
 *
 *   Q8_0: 32 weights in 34 bytes, x_j = d * q_j            (eq. Q8), q_j int8 in [-127, 127]
 *   Q4_0: 32 weights in 18 bytes, x_j = d * (n_j - 8)      (eq. Q4), n_j in [0, 15];
 *         qs[j] & 15 is n_j and qs[j] >> 4 is n_{j+16}, j < 16
 * d is fp16.  Dequantization is exact in fp32 (d * q has at most 19 significant bits), which is
 * why every matmul path can widen blocks to fp32 and keep docs/matmul.md's error bound.
 * Quantization rounds to nearest against the stored fp16 scale (eqs. Q8q, Q4q), so the error of
 * each element is at most |d|/2 (eqs. Q8e, Q4e; Q4_0's clamped top level up to |d|(1 + 2^-8)).
 */
#ifndef Q35_QUANT_H
#define Q35_QUANT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define Q35_QBLOCK 32 /* weights per block, both types */

typedef struct {
    uint16_t d;             /* fp16 scale */
    int8_t q[Q35_QBLOCK];
} q35_block_q8_0;

typedef struct {
    uint16_t d;             /* fp16 scale */
    uint8_t qs[Q35_QBLOCK / 2];
} q35_block_q4_0;

_Static_assert(sizeof(q35_block_q8_0) == 34, "Q8_0 block is ggml's 34 bytes");
_Static_assert(sizeof(q35_block_q4_0) == 18, "Q4_0 block is ggml's 18 bytes");

/* fp16 -> fp32, exact for every finite value (normal and subnormal): the 15 magnitude bits moved
 * to fp32's exponent/mantissa position read as a number 2^-112 times too small (fp16's exponent
 * bias 15 against fp32's 127), then multiplied by 2^112, which is exact.  Scales are always
 * finite (the quantizer refuses others); infinities and NaN are handled too, on a slower branch. */
static inline float q35_f16_to_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    if ((h & 0x7C00u) == 0x7C00u) { /* inf / NaN: exponent all ones */
        const uint32_t u = sign | 0x7F800000u | ((uint32_t)(h & 0x3FFu) << 13);
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    const uint32_t u = sign | ((uint32_t)(h & 0x7FFFu) << 13);
    float f;
    memcpy(&f, &u, 4);
    return f * 0x1p112f;
}
/* fp32 -> fp16, round to nearest, ties to even; overflow to infinity, subnormals rounded
 * correctly, NaN stays NaN (quiet). */
uint16_t q35_f32_to_f16(float f);

/* One row of n weights (n a multiple of 32) to n/32 blocks.  0, or -1 if a value is not finite
 * or a block's scale overflows fp16 (nothing useful is written then). */
int q35_quantize_row_q8_0(const float *x, q35_block_q8_0 *y, size_t n);
int q35_quantize_row_q4_0(const float *x, q35_block_q4_0 *y, size_t n);
/* n/32 blocks to n fp32 values, exact. */
void q35_dequantize_row_q8_0(const q35_block_q8_0 *x, float *y, size_t n);
void q35_dequantize_row_q4_0(const q35_block_q4_0 *x, float *y, size_t n);

/* Element j (< 32) of a block, exact. */
static inline float q35_q8_0_at(const q35_block_q8_0 *b, int j) { return q35_f16_to_f32(b->d) * (float)b->q[j]; }
static inline float q35_q4_0_at(const q35_block_q4_0 *b, int j)
{
    const int n = j < 16 ? (b->qs[j] & 15) : (b->qs[j - 16] >> 4);
    return q35_f16_to_f32(b->d) * (float)(n - 8);
}

#endif
