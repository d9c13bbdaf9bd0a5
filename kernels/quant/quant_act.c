/* Activation quantization for the integer-dot path, eqs. A8q, A8s (kernels/quant/quant_act.h).
 * Plain C on purpose: every ISA's integer kernel must see the same q, d and s, and this pass
 * reads M x K floats once against the matmul's N x K weights, so it is never the cost. */
#include "kernels/quant/quant_act.h"

#include <math.h>

#define QB 32

size_t q35_qact_bytes(int M, int K)
{
    const size_t nb = (size_t)K / QB;
    /* floats and int32 first, so they are aligned whatever K is */
    return (size_t)M * nb * (sizeof(float) + sizeof(int32_t)) + (size_t)M * K;
}

void q35_qact_init(q35_qact *a, int M, int K, void *mem)
{
    const size_t nb = (size_t)K / QB;
    a->M = M;
    a->K = K;
    a->d = (float *)mem;
    a->s = (int32_t *)(a->d + (size_t)M * nb);
    a->q = (int8_t *)(a->s + (size_t)M * nb);
}

/* Round to nearest, ties to even, for |v| <= 127.5: adding and subtracting 1.5 * 2^23 leaves the
 * integer in the low mantissa bits (exact for |v| < 2^22), without a libm call in the loop. */
static inline int rne(float v)
{
    const float magic = 12582912.0f;
    return (int)((v + magic) - magic); /* two roundings, which -O2 keeps (no -ffast-math here) */
}

void q35_qact_quantize_rows(q35_qact *a, const float *A, int lda, int m0, int m1)
{
    const int nb = a->K / QB;
    for (int m = m0; m < m1; m++) {
        const float *x = A + (size_t)m * lda;
        int8_t *q = a->q + (size_t)m * a->K;
        float *d = a->d + (size_t)m * nb;
        int32_t *s = a->s + (size_t)m * nb;
        for (int b = 0; b < nb; b++) {
            const float *xb = x + QB * b;
            float amax = 0.0f;
            int bad = 0;
            for (int j = 0; j < QB; j++) {
                const float v = fabsf(xb[j]);
                bad |= !isfinite(v);
                amax = v > amax ? v : amax;
            }
            int sum = 0;
            if (bad || amax == 0.0f) {
                d[b] = bad ? NAN : 0.0f;
                for (int j = 0; j < QB; j++) q[QB * b + j] = 0;
            } else {
                const float id = 127.0f / amax; /* |x_j id| <= 127 (+ one rounding: rne stays <= 127) */
                d[b] = amax / 127.0f;
                for (int j = 0; j < QB; j++) {
                    int v = rne(xb[j] * id);
                    v = v > 127 ? 127 : v < -127 ? -127 : v;
                    q[QB * b + j] = (int8_t)v;
                    sum += v;
                }
            }
            s[b] = sum;
        }
    }
}
