/* Activations quantized per 32-element block for the integer-dot path (docs/quantization.md
 * §"Integer-dot path"): the lossy opt-in alternative to widening quantized weights to fp32.
 *
 *   block b of row m:  d = max_j |x_j| / 127 (fp32),  q_j = rne(x_j / d) in [-127, 127]   (eq. A8q)
 *                      s = sum_j q_j                                                       (eq. A8s)
 * so x_j = d q_j + e_j with |e_j| <= d / 2 (eq. A8e).  An all-zero block has d = 0, q = 0.  A block
 * with a NaN or an infinity gets d = NaN (and q = 0), so the products that use it are NaN rather
 * than a finite value that hides the bad input.
 *
 * Layout, one row after another: q (K int8, the row's natural order), d (K/32 floats), s (K/32
 * int32).  The integer kernels (kernels/matmul/matmul_int8dot*.c) read it; s is what Q4_0's
 * re-centring needs: sum_j (n_j - 8) q_j = sum_j n_j q_j - 8 s (eq. I4).
 */
#ifndef Q35_QUANT_ACT_H
#define Q35_QUANT_ACT_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int M, K;    /* K a multiple of 32 */
    int8_t *q;   /* [M][K] */
    float *d;    /* [M][K/32] */
    int32_t *s;  /* [M][K/32] */
} q35_qact;

/* Bytes q35_qact_init needs for M rows of K (K % 32 == 0). */
size_t q35_qact_bytes(int M, int K);
/* Lays the arrays out in mem (q35_qact_bytes(M, K) bytes, any alignment). */
void q35_qact_init(q35_qact *a, int M, int K, void *mem);
/* Rows m0 .. m1-1 of A (lda floats apart) into a (callers may split rows over threads). */
void q35_qact_quantize_rows(q35_qact *a, const float *A, int lda, int m0, int m1);

#endif
