/* Activations times weights, the way checkpoints store weights:
 *   C[M, N] = (accumulate ? C : 0) + A[M, K] * W[N, K]^T
 * A and C are fp32; W is fp32, bf16, Q8_0 or Q4_0 (row n = output n, as in a
 * Hugging Face Linear weight [out, in]; quantized W: docs/quantization.md).  Single-threaded: callers parallelize over
 * experts, rows or columns.  ISA paths picked at run time
 * (kernels/cpu_features.h); the generic path is plain C.
 */
#ifndef Q35_MATMUL_H
#define Q35_MATMUL_H

#include "kernels/quant/quant.h"
#include "kernels/quant/quant_act.h"
#include "kernels/quant/quant_r16.h"

#include <stddef.h>
#include <stdint.h>

/* WT_Q8_0 / WT_Q4_0: ggml's 32-weight blocks with an fp16 scale (kernels/quant/quant.h,
 * docs/quantization.md).  A quantized matrix's rows start on a block: its ldw (in elements) is a
 * multiple of 32, and row n starts q35_wtype_bytes(wt, n * ldw) bytes in.
 * WT_Q8_0_R16 / WT_Q4_0_R16: the same blocks with 16 rows interleaved (kernels/quant/quant_r16.h):
 * the same bytes per element; N % 16 == 0 and W starts on a group of 16 rows, so only row offsets
 * that are multiples of 16 exist (n * ldw as above); elements by q35_w_rc, not q35_w_at. */
typedef enum { WT_F32 = 0, WT_BF16 = 1, WT_Q8_0 = 2, WT_Q4_0 = 3, WT_Q8_0_R16 = 4, WT_Q4_0_R16 = 5 } q35_wtype;
#define Q35_WT_COUNT 6

static inline int q35_wtype_is_r16(q35_wtype t) { return t == WT_Q8_0_R16 || t == WT_Q4_0_R16; }
static inline int q35_wtype_is_quant(q35_wtype t) { return t == WT_Q8_0 || t == WT_Q4_0 || q35_wtype_is_r16(t); }
/* The block type: WT_Q8_0 for WT_Q8_0_R16, WT_Q4_0 for WT_Q4_0_R16, t otherwise. */
static inline q35_wtype q35_wtype_block(q35_wtype t)
{
    return t == WT_Q8_0_R16 ? WT_Q8_0 : t == WT_Q4_0_R16 ? WT_Q4_0 : t;
}
/* The interleaved type of a block type (WT_Q8_0 -> WT_Q8_0_R16 ...), t itself otherwise. */
static inline q35_wtype q35_wtype_r16(q35_wtype t)
{
    return t == WT_Q8_0 ? WT_Q8_0_R16 : t == WT_Q4_0 ? WT_Q4_0_R16 : t;
}
/* Bytes of n consecutive elements: n * 4 or n * 2, or whole 32-weight blocks (34 or 18 bytes;
 * n rounded up to a block).  Every pointer offset into a weight array goes through this. */
static inline size_t q35_wtype_bytes(q35_wtype t, size_t n)
{
    switch (t) {
    case WT_BF16: return n * 2;
    case WT_Q8_0: case WT_Q8_0_R16: return (n + Q35_QBLOCK - 1) / Q35_QBLOCK * sizeof(q35_block_q8_0);
    case WT_Q4_0: case WT_Q4_0_R16: return (n + Q35_QBLOCK - 1) / Q35_QBLOCK * sizeof(q35_block_q4_0);
    default: return n * 4;
    }
}
/* "f32", "bf16", "q8_0", "q4_0", "q8_0_r16", "q4_0_r16". */
const char *q35_wtype_name(q35_wtype t);

/* lda, ldw, ldc in elements.  W rows are ldw elements apart.  Quantized W (WT_Q8_0, WT_Q4_0, and
 * interleaved: N rows from a group start, docs/quantization.md §8):
 * ldw a multiple of 32; any K <= ldw (the last block's elements past K are never multiplied),
 * but the fast paths need K % 32 == 0: other K run the generic path at every ISA level. */
void q35_matmul_xwt(int M, int N, int K, const float *A, int lda, const void *W, q35_wtype wt, int ldw,
                    float *C, int ldc, int accumulate);

/* bf16 <-> f32 (bf16 = top 16 bits of the f32; round to nearest even). */
static inline float q35_bf16_to_f32(uint16_t h)
{
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}
uint16_t q35_f32_to_bf16(float f);
void q35_f32_to_bf16_array(const float *x, uint16_t *y, size_t n);

/* Reads element i of a weight array of type wt as fp32, exactly (quantized: element i % 32 of
 * block i / 32, so i = n * ldw + k with ldw a multiple of 32).  The interleaved types have no
 * flat index (an element's place depends on ldw): NaN, so a caller that forgot shows. */
static inline float q35_w_at(const void *W, q35_wtype wt, size_t i)
{
    switch (wt) {
    case WT_BF16: return q35_bf16_to_f32(((const uint16_t *)W)[i]);
    case WT_Q8_0: return q35_q8_0_at((const q35_block_q8_0 *)W + i / Q35_QBLOCK, (int)(i % Q35_QBLOCK));
    case WT_Q4_0: return q35_q4_0_at((const q35_block_q4_0 *)W + i / Q35_QBLOCK, (int)(i % Q35_QBLOCK));
    case WT_Q8_0_R16: case WT_Q4_0_R16: return __builtin_nanf("");
    default: return ((const float *)W)[i];
    }
}
/* Element k of row n of a matrix with rows ldw elements apart, any type, exactly. */
static inline float q35_w_rc(const void *W, q35_wtype wt, size_t ldw, size_t n, size_t k)
{
    if (q35_wtype_is_r16(wt)) return q35_r16_at(W, wt == WT_Q8_0_R16, ldw, n, k);
    return q35_w_at(W, wt, n * ldw + k);
}

/* Bytes from W to the start of the submatrix at row n, column k of a matrix with rows ldw elements
 * apart: the W a slice of rows and columns passes to q35_matmul_xwt with the same ldw.  Quantized
 * types need k % 32 == 0 (a block start); the interleaved ones n % 16 == 0 as well, where a column
 * offset moves to block k / 32 of every group's tiles (each 16 blocks long: kernels/quant/quant_r16.h). */
static inline size_t q35_w_offset(q35_wtype wt, size_t ldw, size_t n, size_t k)
{
    if (q35_wtype_is_r16(wt)) return q35_wtype_bytes(wt, n * ldw) + Q35_R16 * q35_wtype_bytes(wt, k);
    return q35_wtype_bytes(wt, n * ldw + k);
}

/* ---- Added: strategy choice, for tests and benchmarks (docs/matmul.md) ----
 * q35_matmul_xwt() is q35_matmul_xwt_with(Q35_MM_AUTO, ...).  AUTO picks by cpu_isa(), M and
 * N, with thresholds measured on a Zen 3 (q35_matmul_strategy(); docs/matmul.md): generic C
 * under ISA_GENERIC, else DOT for small M or N < 96, PACKA for middle M (fp32 W), PACKED for
 * large M.
 * Forcing DOT, PACKED or PACKA under ISA_GENERIC runs GENERIC; BLAS is OpenBLAS cblas_sgemm
 * (bf16 W widened exactly into fp32 tiles first) on any ISA, with whatever thread count
 * OpenBLAS is set to.  From ISA_AVX512 up DOT and PACKED run AVX-512 kernels (PACKA stays AVX2).
 * Requires lda >= K, ldw >= K, ldc >= N; pointers need no alignment; C must not overlap A
 * or W.  M <= 0 or N <= 0: nothing is touched; K = 0 gives C = 0 (or C unchanged when
 * accumulating).  PACKED (~0.6 MiB), PACKA (<= 0.4 MiB) and BLAS with bf16 W (0.5 MiB, or 16
 * widened rows of W if K > 8192) malloc their scratch and free it before returning; if malloc
 * fails they fall back to DOT (GENERIC under ISA_GENERIC), which needs no heap memory. */
typedef enum {
    Q35_MM_AUTO = 0,
    Q35_MM_GENERIC, /* plain C loops */
    Q35_MM_DOT,     /* rows of A x rows of W, dot products along K; W read in place (GEMV-like) */
    Q35_MM_PACKED,  /* W packed transposed into fp32 panels, A into 6-row panels, 6x16 outer products */
    Q35_MM_PACKA,   /* A packed transposed, W broadcast from its rows, 16x6 outer products */
    Q35_MM_BLAS,    /* OpenBLAS cblas_sgemm */
} q35_mm_strategy;

void q35_matmul_xwt_with(q35_mm_strategy s, int M, int N, int K, const float *A, int lda, const void *W,
                         q35_wtype wt, int ldw, float *C, int ldc, int accumulate);
/* What AUTO runs for this shape on the current cpu_isa(). */
q35_mm_strategy q35_matmul_strategy(int M, int N, int K, q35_wtype wt);
const char *q35_mm_strategy_name(q35_mm_strategy s);

/* BF16 dot (docs/matmul.md "BF16-dot path"): C = (acc ? C : 0) + bf16(A) W^T for bf16 W, A
 * rounded to bf16 (nearest even), products exact, fp32 sums: vdpbf16ps when
 * cpu_has(CPU_FEAT_AVX512_BF16), else the same rounding and the ordinary path.  Lossy: the
 * rounding of A costs up to 2^-9 relative per element.  fp32 W: the exact q35_matmul_xwt.
 * Same contract as q35_matmul_xwt otherwise (single-threaded; mallocs M x K bf16 scratch). */
void q35_matmul_xwt_bf16dot(int M, int N, int K, const float *A, int lda, const void *W, q35_wtype wt, int ldw,
                            float *C, int ldc, int accumulate);
/* AMX BF16 (docs/matmul.md "AMX path"): C = (acc ? C : 0) + A W^T for A already rounded to
 * bf16 and bf16 W, on TDPBF16PS tiles when cpu_has(CPU_FEAT_AMX_BF16); otherwise A is widened
 * (exactly) and q35_matmul_xwt_bf16dot runs: the same products, fp32 sums in another order;
 * so does M < 16 (decode: a tile would be mostly padding and repacking W costs more than it saves).
 * Lossy as bf16dot (the rounding of A is the caller's, q35_bf16_round_padded).  A must be padded
 * for the tile loads: lda a multiple of 32 (>= K), rows up to M rounded up to 16 readable, and
 * finite values in columns K .. lda-1 (q35_bf16_round_padded writes zeros there and in the extra
 * rows).  Single-threaded; mallocs K/32 x 2 KiB of packed W (falls back as above without it). */
void q35_matmul_bf16a_amx(int M, int N, int K, const uint16_t *A, int lda, const uint16_t *W, int ldw, float *C,
                          int ldc, int accumulate);
/* The padded A for q35_matmul_bf16a_amx: row stride q35_amx_lda(K) (K rounded up to 32) and
 * q35_amx_rows(M) (M rounded up to 16) rows; q35_bf16_round_padded writes rows m0 .. m1-1 of
 * it from fp32 A (nearest even), zeros past K, and zero rows past M when m1 == M (callers may
 * split the rows over threads). */
static inline int q35_amx_lda(int K) { return (K + 31) / 32 * 32; }
static inline int q35_amx_rows(int M) { return (M + 15) / 16 * 16; }
void q35_bf16_round_padded(int M, int K, const float *A, int lda, int m0, int m1, uint16_t *out);
const char *q35_matmul_amx_path(void);

/* Integer dot (docs/quantization.md "Integer-dot path"), quantized W only (WT_Q8_0, WT_Q4_0 and
 * their interleaved forms, §8: 16 rows in the lanes of one register; K % 32 == 0, ldw a multiple of 32): rows m0 .. m0+M-1 of activations already quantized per
 * block (kernels/quant/quant_act.h) against W's blocks with integer products:
 *   C[m, n] = (acc ? C : 0) + sum_b (dw_b d_b) * sum_j w_j q_j          (eq. I8; Q4_0: eq. I4)
 * the inner sums exact in int32, the outer in fp32.  AVX-512 VNNI (vpdpbusd, two blocks per
 * zmm) when cpu_has(CPU_FEAT_AVX512_VNNI) and cpu_isa() >= ISA_AVX512; AVX2 vpmaddubsw +
 * vpmaddwd from ISA_AVX2; plain C otherwise.  Lossy against q35_matmul_xwt by the rounding of
 * the activations (eq. A8e: up to d/2 per element).  Single-threaded, no heap memory. */
void q35_matmul_qact_xwt(int M, int N, int K, const q35_qact *A, int m0, const void *W, q35_wtype wt, int ldw,
                         float *C, int ldc, int accumulate);
const char *q35_matmul_int8dot_path(void);
/* From this many rows of A the exact path (W dequantized once per tile, then the fp32 PACKED
 * kernel) is faster than integer dots, whose per-block scaling costs as much as the products:
 * measured 1 thread on an AVX-512 VNNI host, N = 2048, K = 1024 (docs/quantization.md
 * "Integer-dot path"): integer / exact time 0.63 (q8) 0.51 (q4) at M = 8, 0.88 / 1.00 at 64,
 * 1.22 / 1.43 at 512. */
#define Q35_INT8DOT_MAX_M 64
/* Whether M rows of A against quantized W take the integer dots (else the exact path): fewer than
 * Q35_INT8DOT_MAX_M rows in ggml's row layout; any number for interleaved W, where one tile's
 * unpacked nibbles serve 4 rows of A and the integer dots beat the exact tiles at every M (N 6144,
 * K 1024, M 512, 2 threads, Zen 4: q4 11.2 against 36.4 ms, q8 12.2 against 34.6; docs/quantization.md
 * §8). */
static inline int q35_int8dot_takes(q35_wtype wt, int M) { return q35_wtype_is_r16(wt) || M < Q35_INT8DOT_MAX_M; }
/* q35_matmul_xwt's contract with the integer dot: quantized W, K % 32 == 0 and q35_int8dot_takes(wt, M)
 * quantize A (malloc'd scratch) and run q35_matmul_qact_xwt; everything else, or no memory, runs
 * the exact q35_matmul_xwt.  Lossy as q35_matmul_qact_xwt. */
void q35_matmul_xwt_int8dot(int M, int N, int K, const float *A, int lda, const void *W, q35_wtype wt, int ldw,
                            float *C, int ldc, int accumulate);

/* Which path q35_matmul_xwt_bf16dot runs now / a one-line summary of the matmul paths (list). */
const char *q35_matmul_bf16dot_path(void);
const char *q35_matmul_path_summary(void);

/* Exact bf16 -> f32 of n elements (SIMD when cpu_isa() allows). */
void q35_bf16_to_f32_array(const uint16_t *x, float *y, size_t n);

#endif
