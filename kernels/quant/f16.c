/* fp32 -> fp16 with round to nearest, ties to even (docs/quantization.md §2: the block scales). */
#include "kernels/quant/quant.h"

uint16_t q35_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return (uint16_t)(sign | 0x7E00u | ((a >> 13) & 0x3FFu)); /* NaN, quiet */
    if (a >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u); /* >= 65520: rounds to infinity */
    if (a < 0x38800000u) { /* below 2^-14: fp16 subnormal (or zero), spacing 2^-24 */
        if (a < 0x33000000u) return sign; /* below 2^-25: rounds to zero (2^-25 itself is a tie to 0) */
        /* the value's significand with its implicit bit, shifted to units of 2^-24, rounded RNE */
        const uint32_t e = a >> 23, m = (a & 0x7FFFFFu) | 0x800000u;
        const int shift = (int)(126 - e); /* value = m * 2^(e-150); units of 2^-24: m >> (126 - e) */
        const uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
        const uint32_t r = q + (rem > half || (rem == half && (q & 1u)));
        return (uint16_t)(sign | r); /* r may reach 0x400: the smallest normal, correctly */
    }
    /* normal: re-bias the exponent (127 -> 15) and round the 13 dropped bits to nearest even;
     * a carry out of the mantissa increments the exponent, which is the right result */
    const uint32_t r = a - 0x38000000u; /* exponent - 112 */
    return (uint16_t)(sign | ((r + 0xFFFu + ((r >> 13) & 1u)) >> 13));
}
