/* Integer dot on interleaved W (WT_Q8_0_R16 / WT_Q4_0_R16, kernels/quant/quant_r16.h,
 * docs/quantization.md §8): the dispatch and the plain-C body, which is the row layout's definition
 * (matmul_int8dot.c, eqs. I8 / I4) on each block once unpacked: the same i_b, the same blocks in
 * order.  The SIMD bodies (matmul_int8dot_r16_avx512.c, _avx2.c) keep 16 rows of W in the lanes of
 * their registers, so their sums per row are the same terms, each fp32 term fused into its
 * accumulator (one rounding where the definition has two). */
#include "kernels/cpu_features.h"
#include "kernels/matmul/matmul_internal.h"

void mm_generic_qact_r16(int M, int N, int K, const q35_qact *A, int m0, const char *W, q35_wtype wt, size_t ldw,
                         float *C, size_t ldc, int acc)
{
    const int nb = K / Q35_QBLOCK;
    const q35_wtype bt = q35_wtype_block(wt);
    for (int m = 0; m < M; m++) {
        const int8_t *q;
        const float *d;
        const int32_t *s;
        mm_qact_row(A, (size_t)(m0 + m), &q, &d, &s);
        for (int n = 0; n < N; n++) {
            float sum = 0.0f;
            for (int b = 0; b < nb; b++) {
                q35_block_q8_0 blk; /* the larger block */
                q35_r16_unpack_rows(W, bt == WT_Q8_0, ldw, (size_t)n, 1, (size_t)b, 1, &blk, 0);
                sum += mm_qact_block(bt, (const char *)&blk, q + Q35_QBLOCK * b, d[b], s[b]);
            }
            float *c = C + (size_t)m * ldc + n;
            *c = acc ? *c + sum : sum;
        }
    }
}

void mm_qact_r16(int M, int N, int K, const q35_qact *A, int m0, const char *W, q35_wtype wt, size_t ldw, float *C,
                 size_t ldc, int acc)
{
    const cpu_isa_level isa = cpu_isa();
    /* whole groups of 16 rows through SIMD; rows past the last whole group (a matrix that is not one,
     * which the linear family refuses) through the definition */
    const int whole = isa >= ISA_AVX2 ? N / Q35_R16 * Q35_R16 : 0;
    if (whole && isa >= ISA_AVX512 && cpu_has(CPU_FEAT_AVX512_VNNI) && cpu_has(CPU_FEAT_AVX512BW))
        mm_avx512vnni_qact_r16(M, whole, K, A, m0, W, wt, ldw, C, ldc, acc);
    else if (whole)
        mm_avx2_qact_r16(M, whole, K, A, m0, W, wt, ldw, C, ldc, acc);
    if (whole < N) {
        /* rows whole .. N-1: their group starts whole rows in */
        const char *Wt = W + q35_wtype_bytes(wt, (size_t)whole * ldw);
        mm_generic_qact_r16(M, N - whole, K, A, m0, Wt, wt, ldw, C + whole, ldc, acc);
    }
}
