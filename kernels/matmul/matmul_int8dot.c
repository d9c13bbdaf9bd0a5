/* Integer-dot matmul, quantized activations x quantized W (docs/quantization.md "Integer-dot path"):
 * the dispatch and the plain-C body, which is the definition the SIMD bodies follow:
 *   per block b:  i_b = sum_j w_j q_j  (Q8_0, eq. I8)  or  sum_j n_j q_j - 8 s_b  (Q4_0, eq. I4), exact int32
 *   C[m, n] += sum_b fl(dw_b d_b) * i_b  in fp32, blocks in order.
 * |i_b| <= 32 * 127 * 127 < 2^19, so the float conversion of i_b is exact too. */
#include "kernels/cpu_features.h"
#include "kernels/matmul/matmul_internal.h"

#include <stdlib.h>

float mm_qact_block(q35_wtype wt, const char *blk, const int8_t *q, float d, int32_t s)
{
    int acc = 0;
    if (wt == WT_Q8_0) {
        const q35_block_q8_0 *w = (const q35_block_q8_0 *)blk;
        for (int j = 0; j < Q35_QBLOCK; j++) acc += w->q[j] * q[j];
    } else {
        const q35_block_q4_0 *w = (const q35_block_q4_0 *)blk;
        for (int j = 0; j < Q35_QBLOCK / 2; j++) acc += (w->qs[j] & 15) * q[j] + (w->qs[j] >> 4) * q[j + 16];
        acc -= 8 * s;
    }
    const uint16_t dw = *(const uint16_t *)blk; /* both block types start with their scale */
    return q35_f16_to_f32(dw) * d * (float)acc;
}

void mm_generic_qact(int M, int N, int K, const q35_qact *A, int m0, const char *W, q35_wtype wt, size_t rowb,
                     float *C, size_t ldc, int acc)
{
    const int nb = K / Q35_QBLOCK;
    const size_t bb = q35_wtype_bytes(wt, Q35_QBLOCK);
    for (int m = 0; m < M; m++) {
        const int8_t *q = A->q + (size_t)(m0 + m) * A->K;
        const float *d = A->d + (size_t)(m0 + m) * (A->K / Q35_QBLOCK);
        const int32_t *s = A->s + (size_t)(m0 + m) * (A->K / Q35_QBLOCK);
        for (int n = 0; n < N; n++) {
            const char *w = W + (size_t)n * rowb;
            float sum = 0.0f;
            for (int b = 0; b < nb; b++) sum += mm_qact_block(wt, w + b * bb, q + Q35_QBLOCK * b, d[b], s[b]);
            float *c = C + (size_t)m * ldc + n;
            *c = acc ? *c + sum : sum;
        }
    }
}

void q35_matmul_qact_xwt(int M, int N, int K, const q35_qact *A, int m0, const void *W, q35_wtype wt, int ldw,
                         float *C, int ldc, int accumulate)
{
    if (M <= 0 || N <= 0) return;
    if (q35_wtype_is_r16(wt)) {
        mm_qact_r16(M, N, K, A, m0, (const char *)W, wt, (size_t)ldw, C, (size_t)ldc, accumulate);
        return;
    }
    const size_t rowb = q35_wtype_bytes(wt, (size_t)ldw);
    const cpu_isa_level isa = cpu_isa();
    if (isa >= ISA_AVX512 && cpu_has(CPU_FEAT_AVX512_VNNI) && cpu_has(CPU_FEAT_AVX512BW))
        mm_avx512vnni_qact(M, N, K, A, m0, (const char *)W, wt, rowb, C, (size_t)ldc, accumulate);
    else if (isa >= ISA_AVX2)
        mm_avx2_qact(M, N, K, A, m0, (const char *)W, wt, rowb, C, (size_t)ldc, accumulate);
    else
        mm_generic_qact(M, N, K, A, m0, (const char *)W, wt, rowb, C, (size_t)ldc, accumulate);
}

void q35_matmul_xwt_int8dot(int M, int N, int K, const float *A, int lda, const void *W, q35_wtype wt, int ldw,
                            float *C, int ldc, int accumulate)
{
    void *mem = NULL;
    if (M > 0 && N > 0 && q35_wtype_is_quant(wt) && K > 0 && K % Q35_QBLOCK == 0 && q35_int8dot_takes(wt, M))
        mem = malloc(q35_qact_bytes(M, K));
    if (!mem) { /* not a case for integer dots, or no memory: the exact path */
        q35_matmul_xwt(M, N, K, A, lda, W, wt, ldw, C, ldc, accumulate);
        return;
    }
    q35_qact a;
    q35_qact_init(&a, M, K, mem);
    q35_qact_quantize_rows(&a, A, lda, 0, M);
    q35_matmul_qact_xwt(M, N, K, &a, 0, W, wt, ldw, C, ldc, accumulate);
    free(mem);
}

const char *q35_matmul_int8dot_path(void)
{
    if (cpu_isa() >= ISA_AVX512 && cpu_has(CPU_FEAT_AVX512_VNNI) && cpu_has(CPU_FEAT_AVX512BW))
        return "avx512-vnni vpdpbusd";
    if (cpu_isa() >= ISA_AVX2) return "avx2 vpmaddubsw+vpmaddwd";
    return "generic";
}
