/* Generic (plain C) path of q35_matmul_xwt: what runs under Q35_ISA=generic or
 * cpu_isa_force(ISA_GENERIC), and on CPUs without AVX2+FMA.
 *
 * Four rows of W against one row of A at a time, each dot product kept as 8
 * independent partial sums (lane j sums k = j, j+8, ...), added pairwise at the
 * end in the order of the AVX2 dot kernel's hadd tree: the compiler can
 * vectorize the lane loop at the baseline ISA without reassociating anything.
 * bf16 weights are widened exactly (shift left by 16) as they are read.  Quantized weights
 * (docs/quantization.md) are dequantized block by block into fp32, exactly, and then summed in
 * the same lane order; any K (the last block is read only up to K).
 */
#include "kernels/matmul/matmul_internal.h"

#define LANES 8
#define ROWS 4

static inline float lane_sum(const float *s)
{
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* ROWS x 1 block: rows n..n+nr-1 of W (nr <= ROWS) against one row a. */
static void dot_rows_f32(int K, const float *a, const float *w, size_t ldw, int nr, float *out)
{
    float s[ROWS][LANES] = {{0}};
    int k = 0;
    for (; k + LANES <= K; k += LANES)
        for (int r = 0; r < nr; r++) {
            const float *wr = w + r * ldw + k;
            for (int j = 0; j < LANES; j++) s[r][j] += a[k + j] * wr[j];
        }
    for (int j = 0; k + j < K; j++)
        for (int r = 0; r < nr; r++) s[r][j] += a[k + j] * w[r * ldw + k + j];
    for (int r = 0; r < nr; r++) out[r] = lane_sum(s[r]);
}

static void dot_rows_bf16(int K, const float *a, const uint16_t *w, size_t ldw, int nr, float *out)
{
    float s[ROWS][LANES] = {{0}};
    int k = 0;
    for (; k + LANES <= K; k += LANES)
        for (int r = 0; r < nr; r++) {
            const uint16_t *wr = w + r * ldw + k;
            for (int j = 0; j < LANES; j++) s[r][j] += a[k + j] * q35_bf16_to_f32(wr[j]);
        }
    for (int j = 0; k + j < K; j++)
        for (int r = 0; r < nr; r++) s[r][j] += a[k + j] * q35_bf16_to_f32(w[r * ldw + k + j]);
    for (int r = 0; r < nr; r++) out[r] = lane_sum(s[r]);
}

/* Quantized: rows n .. n+nr-1 (nr <= ROWS) of W, rows of blocks or interleaved, against one row a. */
static void dot_rows_quant(int K, const float *a, const void *W, q35_wtype wt, size_t ldw, size_t n, int nr, float *out)
{
    float s[ROWS][LANES] = {{0}};
    const q35_wtype bt = q35_wtype_block(wt);
    for (int k0 = 0; k0 < K; k0 += Q35_QBLOCK) {
        const int kb = K - k0 < Q35_QBLOCK ? K - k0 : Q35_QBLOCK;
        for (int r = 0; r < nr; r++) {
            const char *blk = (const char *)W + q35_wtype_bytes(wt, (n + (size_t)r) * ldw + (size_t)k0);
            q35_block_q8_0 tmp; /* the larger block */
            if (q35_wtype_is_r16(wt)) {
                q35_r16_unpack_rows(W, bt == WT_Q8_0, ldw, n + (size_t)r, 1, (size_t)k0 / Q35_QBLOCK, 1, &tmp, 0);
                blk = (const char *)&tmp;
            }
            float v[Q35_QBLOCK];
            if (bt == WT_Q8_0)
                q35_dequantize_row_q8_0((const q35_block_q8_0 *)blk, v, Q35_QBLOCK);
            else
                q35_dequantize_row_q4_0((const q35_block_q4_0 *)blk, v, Q35_QBLOCK);
            for (int j = 0; j < kb; j++) s[r][j % LANES] += a[k0 + j] * v[j];
        }
    }
    for (int r = 0; r < nr; r++) out[r] = lane_sum(s[r]);
}

void mm_generic(int M, int N, int K, const float *A, size_t lda, const void *W, q35_wtype wt, size_t ldw,
                float *C, size_t ldc, int acc)
{
    for (int n = 0; n < N; n += ROWS) {
        const int nr = N - n < ROWS ? N - n : ROWS;
        for (int m = 0; m < M; m++) {
            float out[ROWS];
            if (q35_wtype_is_quant(wt))
                dot_rows_quant(K, A + m * lda, W, wt, ldw, (size_t)n, nr, out);
            else if (wt == WT_BF16)
                dot_rows_bf16(K, A + m * lda, (const uint16_t *)W + n * ldw, ldw, nr, out);
            else
                dot_rows_f32(K, A + m * lda, (const float *)W + n * ldw, ldw, nr, out);
            float *c = C + m * ldc + n;
            for (int r = 0; r < nr; r++) c[r] = acc ? c[r] + out[r] : out[r];
        }
    }
}

void mm_generic_bf16_to_f32(const uint16_t *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = q35_bf16_to_f32(x[i]);
}
