/* Internal: the per-ISA bodies behind q35_matmul_xwt_with() (kernels/matmul/matmul.c).
 * Every body computes the whole problem C = (acc ? C : 0) + A W^T for M, N, K >= 1 and
 * returns 0, or -1 if it could not allocate its scratch (C untouched in that case). */
#ifndef Q35_MATMUL_INTERNAL_H
#define Q35_MATMUL_INTERNAL_H

#include "kernels/matmul/matmul.h"

#include <stddef.h>
#include <stdint.h>

/* How far ahead of the block being read the quantized decode bodies prefetch each row stream
 * of W (bytes; software prefetch, _mm_prefetch T0).  The segmented rows keep R streams in flight
 * but the hardware prefetcher alone did not keep them fed: the lm_head shape (248320 x 1024, 2
 * threads, 600 MB of distinct matrices cycled so nothing stays in L3) read Q4_0 at 26.8 GB/s
 * through integer dots and 32.1 GB/s with 768 bytes of lead; 256 bytes was worse than none, 512
 * to 1536 all gained (docs/quantization.md §7, "Prefetch"). */
#define MM_QPREFETCH_BYTES 768

/* matmul_generic.c: plain C. */
void mm_generic(int M, int N, int K, const float *A, size_t lda, const void *W, q35_wtype wt, size_t ldw,
                float *C, size_t ldc, int acc);
void mm_generic_bf16_to_f32(const uint16_t *x, float *y, size_t n);

/* matmul_avx2.c: AVX2 + FMA (compiled with target attributes, run only when cpu_isa() >= ISA_AVX2).
 * mm_avx2_dot needs no heap memory and never fails. */
int mm_avx2_dot(int M, int N, int K, const float *A, size_t lda, const void *W, q35_wtype wt, size_t ldw,
                float *C, size_t ldc, int acc);
int mm_avx2_packed(int M, int N, int K, const float *A, size_t lda, const void *W, q35_wtype wt,
                   size_t ldw, float *C, size_t ldc, int acc);
typedef int (*mm_body_fn)(int M, int N, int K, const float *A, size_t lda, const void *W, q35_wtype wt,
                          size_t ldw, float *C, size_t ldc, int acc);
/* M % 16 leftover rows (M >= 16) go to dot: mm_avx2_dot, or mm_avx512_dot from ISA_AVX512 up. */
int mm_avx2_packa(int M, int N, int K, const float *A, size_t lda, const void *W, q35_wtype wt, size_t ldw,
                  float *C, size_t ldc, int acc, mm_body_fn dot);
void mm_avx2_bf16_to_f32(const uint16_t *x, float *y, size_t n);

/* matmul_avx512.c: AVX512F (target attributes, run only when cpu_isa() >= ISA_AVX512).
 * mm_avx512_dot needs no heap memory and never fails.  mm_avx512_bf16dot (bf16 W only) also
 * needs AVX512_BF16: run only when cpu_has(CPU_FEAT_AVX512_BF16). */
int mm_avx512_dot(int M, int N, int K, const float *A, size_t lda, const void *W, q35_wtype wt, size_t ldw,
                  float *C, size_t ldc, int acc);
int mm_avx512_packed(int M, int N, int K, const float *A, size_t lda, const void *W, q35_wtype wt, size_t ldw,
                     float *C, size_t ldc, int acc);
int mm_avx512_bf16dot(int M, int N, int K, const float *A, size_t lda, const uint16_t *W, size_t ldw, float *C,
                      size_t ldc, int acc);
void mm_avx512_bf16_to_f32(const uint16_t *x, float *y, size_t n);

/* matmul_amx.c: AMX-TILE + AMX-BF16 (run only when cpu_has(CPU_FEAT_AMX_BF16)); A padded as
 * q35_matmul_bf16a_amx requires.  -1 if its scratch cannot be allocated (C untouched). */
int mm_amx_bf16(int M, int N, int K, const uint16_t *A, size_t lda, const uint16_t *W, size_t ldw, float *C,
                size_t ldc, int accumulate);

/* matmul_quant_avx2.c / matmul_quant_avx512.c: quantized W (WT_Q8_0, WT_Q4_0), K % 32 == 0 only.
 * qdot: the DOT strategy (blocks widened in registers); never fails.  dequant: nblk consecutive
 * blocks to 32 * nblk exact fp32 (the tile path of matmul.c). */
int mm_avx2_qdot(int M, int N, int K, const float *A, size_t lda, const void *W, q35_wtype wt, size_t ldw,
                 float *C, size_t ldc, int acc);
void mm_avx2_dequant(q35_wtype wt, const void *W, float *y, size_t nblk);
int mm_avx512_qdot(int M, int N, int K, const float *A, size_t lda, const void *W, q35_wtype wt, size_t ldw,
                   float *C, size_t ldc, int acc);
void mm_avx512_dequant(q35_wtype wt, const void *W, float *y, size_t nblk);

/* The integer-dot bodies on interleaved W read one sequential stream a thread: every line of the
 * tile about this many bytes ahead is prefetched into L1 (12 Q4_0 tiles, 6 Q8_0 ones).  Measured in
 * the model's decode on Zen 4 (docs/quantization.md §8): one line 6 tiles ahead left the 0.8B's q4
 * step at 1.50x its bound at 55-63 GB/s; every line 12 tiles ahead 1.39x; Q8_0 12 tiles ahead (6.4
 * KiB) 1.38x, 24 tiles into L2 1.60x, 6 tiles 1.31x, as the row layout's 1.30x. */
#define MM_R16_PREFETCH_BYTES 3456

/* matmul_quant_r16_avx512.c / _avx2.c: DOT on interleaved W (WT_Q8_0_R16 / WT_Q4_0_R16), whole
 * groups of 16 rows (N % 16 == 0), K % 32 == 0; ldw in elements.  Never fail. */
void mm_avx512_qdot_r16(int M, int N, int K, const float *A, size_t lda, const void *W, q35_wtype wt, size_t ldw,
                        float *C, size_t ldc, int acc);
void mm_avx2_qdot_r16(int M, int N, int K, const float *A, size_t lda, const void *W, q35_wtype wt, size_t ldw,
                      float *C, size_t ldc, int acc);

/* matmul_int8dot*.c: the integer-dot bodies of q35_matmul_qact_xwt (K % 32 == 0, M, N >= 1).
 * rowb: bytes per row of W. */
/* One block's term fl(dw d) * i_b of the definition (eqs. I8 / I4), plain C: the generic body's
 * step and the SIMD bodies' odd last block. */
float mm_qact_block(q35_wtype wt, const char *blk, const int8_t *q, float d, int32_t s);
void mm_generic_qact(int M, int N, int K, const q35_qact *A, int m0, const char *W, q35_wtype wt, size_t rowb,
                     float *C, size_t ldc, int acc);
void mm_avx2_qact(int M, int N, int K, const q35_qact *A, int m0, const char *W, q35_wtype wt, size_t rowb,
                  float *C, size_t ldc, int acc);
void mm_avx512vnni_qact(int M, int N, int K, const q35_qact *A, int m0, const char *W, q35_wtype wt, size_t rowb,
                        float *C, size_t ldc, int acc);

/* Row `row` of quantized activations: its int8 values, block scales and block sums. */
static inline void mm_qact_row(const q35_qact *A, size_t row, const int8_t **q, const float **d, const int32_t **s)
{
    const size_t nb = (size_t)A->K / Q35_QBLOCK;
    *q = A->q + row * (size_t)A->K, *d = A->d + row * nb, *s = A->s + row * nb;
}

/* matmul_int8dot_r16*.c: the same on interleaved W (WT_Q8_0_R16 / WT_Q4_0_R16; ldw: elements a row).
 * mm_qact_r16 dispatches: whole groups of 16 rows to the SIMD bodies (N a multiple of 16 there), the
 * rest to the plain-C one, which unpacks each block and runs mm_qact_block. */
void mm_qact_r16(int M, int N, int K, const q35_qact *A, int m0, const char *W, q35_wtype wt, size_t ldw, float *C,
                 size_t ldc, int acc);
void mm_generic_qact_r16(int M, int N, int K, const q35_qact *A, int m0, const char *W, q35_wtype wt, size_t ldw,
                         float *C, size_t ldc, int acc);
void mm_avx2_qact_r16(int M, int N, int K, const q35_qact *A, int m0, const char *W, q35_wtype wt, size_t ldw,
                      float *C, size_t ldc, int acc);
void mm_avx512vnni_qact_r16(int M, int N, int K, const q35_qact *A, int m0, const char *W, q35_wtype wt, size_t ldw,
                            float *C, size_t ldc, int acc);

#endif
