/* Small row-major GEMMs for the chunked backward of the gated delta rule
 * (kernels/deltarule/deltarule_grad_chunked.c, docs/deltarule-backward-chunked.md §4).
 *
 * Every product there is tiny (m = 64 or 128 rows, n = k = 64 or 128): a
 * BLAS call spends as long packing and dispatching as multiplying.  These
 * kernels do not pack: a register tile of MR rows x NV vectors of C walks k,
 * broadcasting op(A)(i, p) straight from memory and loading row p of B, which
 * is row-major; the column panel of B (k x NV vectors, <= 32 KiB) stays in L1
 * while the row tiles stream past.  op(A) is given by strides, so A and A^T
 * both cost nothing:  op(A)(i, p) = A[i rsa + p csa]  (A: rsa = lda, csa = 1;
 * A^T: rsa = 1, csa = lda).  A product with B^T needs B transposed first
 * (gg_transpose).  AVX-512, AVX2 and generic C instances of one source
 * (grad_gemm_simd.inc), picked at run time (kernels/cpu_features.h).
 */
#ifndef Q35_GRAD_GEMM_H
#define Q35_GRAD_GEMM_H

#include <stddef.h>

typedef enum {
    GG_FULL = 0,  /* op(A) and C dense */
    GG_C_LOWER,   /* only C(i, j), j <= i is wanted: columns past a row tile's last row are
                     skipped (entries above the diagonal are left or written, unspecified) */
    GG_A_LOWER,   /* op(A)(i, p) = 0 for p > i: a row tile's k range stops at its last row */
    GG_A_UPPER    /* op(A)(i, p) = 0 for p < i: a row tile's k range starts at its first row */
} gg_shape;

/* C[m x n] = alpha op(A)[m x k] B[k x n] + beta C (beta = 0: C is not read). */
typedef void (*gg_gemm_fn)(int m, int n, int k, float alpha, const float *A, ptrdiff_t rsa, ptrdiff_t csa,
                           const float *B, ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc, gg_shape shape);

void gg_gemm_generic(int m, int n, int k, float alpha, const float *A, ptrdiff_t rsa, ptrdiff_t csa, const float *B,
                     ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc, gg_shape shape);
void gg_gemm_avx2(int m, int n, int k, float alpha, const float *A, ptrdiff_t rsa, ptrdiff_t csa, const float *B,
                  ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc, gg_shape shape);
void gg_gemm_avx512(int m, int n, int k, float alpha, const float *A, ptrdiff_t rsa, ptrdiff_t csa, const float *B,
                    ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc, gg_shape shape);

/* X[L x n] <- (I + A)^{-1} X and X <- (I + A)^{-T} X for A strictly lower
 * triangular (its diagonal and upper part are not read): the unit triangular
 * solves of the WY form (docs/deltarule.md eq. (11), CB5). */
typedef void (*gg_solve_fn)(int L, int n, const float *A, ptrdiff_t lda, float *X, ptrdiff_t ldx);
void gg_solve_generic(int L, int n, const float *A, ptrdiff_t lda, float *X, ptrdiff_t ldx);
void gg_solve_avx2(int L, int n, const float *A, ptrdiff_t lda, float *X, ptrdiff_t ldx);
void gg_solve_avx512(int L, int n, const float *A, ptrdiff_t lda, float *X, ptrdiff_t ldx);
void gg_solve_t_generic(int L, int n, const float *A, ptrdiff_t lda, float *X, ptrdiff_t ldx);
void gg_solve_t_avx2(int L, int n, const float *A, ptrdiff_t lda, float *X, ptrdiff_t ldx);
void gg_solve_t_avx512(int L, int n, const float *A, ptrdiff_t lda, float *X, ptrdiff_t ldx);

/* The row operations of the chunked backward (grad_gemm_simd.inc says what
 * each computes), one instance per ISA. */
#define GG_ROW_OPS(S)                                                                                              \
    void gg_gemm_c0_##S(int m, int n, int k, float alpha, const float *A, ptrdiff_t rsa, ptrdiff_t csa,           \
                        const float *B, ptrdiff_t ldb, float beta, const float *C0, ptrdiff_t ldc0, float *C,     \
                        ptrdiff_t ldc, gg_shape shape);                                                           \
    float gg_dot_##S(const float *a, const float *b, int n);                                                      \
    double gg_sumsq_##S(const float *x, int n);                                                                   \
    void gg_scale_##S(const float *x, float *y, int n, float f);                                                  \
    void gg_l2back_##S(const float *y, const float *dy, float *out, int n, double s, double inv);                 \
    void gg_rhs_##S(const float *v, const float *ks, float *r, int n, float beta, float e);                       \
    double gg_cb4_row_##S(float *dp, const float *pr, const float *e, double *dgam, int i, int L);                \
    double gg_cb6_row_##S(float *da, const float *gr, const float *ar, const float *e, double *dgam, int i, int L, \
                          float beta, double *db);                                                                \
    void gg_cb7_row_##S(const float *dr, const float *v, const float *ks, const float *dor, float *dv, float *dks, \
                        float *doe, int n, float beta, float e, float *dbr, float *dgr);                          \
    void gg_mask_row_##S(float *x, const float *m, int jmax, int n);                                              \
    void gg_decay_row_##S(float *e, const double *gamma, int i);
GG_ROW_OPS(generic)
GG_ROW_OPS(avx2)
GG_ROW_OPS(avx512)

typedef struct {
    gg_gemm_fn gemm;
    /* C = alpha op(A) B + beta C0 (C0 may be C; beta = 0: C0 not read) */
    void (*gemm_c0)(int m, int n, int k, float alpha, const float *A, ptrdiff_t rsa, ptrdiff_t csa, const float *B,
                    ptrdiff_t ldb, float beta, const float *C0, ptrdiff_t ldc0, float *C, ptrdiff_t ldc,
                    gg_shape shape);
    gg_solve_fn solve, solve_t;
    void (*transpose)(int r, int c, const float *src, ptrdiff_t lds, float *dst, ptrdiff_t ldd);
    float (*dot)(const float *a, const float *b, int n);
    double (*sumsq)(const float *x, int n);
    void (*scale)(const float *x, float *y, int n, float f);
    void (*l2back)(const float *y, const float *dy, float *out, int n, double s, double inv);
    void (*rhs)(const float *v, const float *ks, float *r, int n, float beta, float e);
    double (*cb4_row)(float *dp, const float *pr, const float *e, double *dgam, int i, int L);
    double (*cb6_row)(float *da, const float *gr, const float *ar, const float *e, double *dgam, int i, int L,
                      float beta, double *db);
    void (*cb7_row)(const float *dr, const float *v, const float *ks, const float *dor, float *dv, float *dks,
                    float *doe, int n, float beta, float e, float *dbr, float *dgr);
    void (*mask_row)(float *x, const float *m, int jmax, int n);
    void (*decay_row)(float *e, const double *gamma, int i);
} gg_fns;

/* The instances for cpu_isa() now (ask once per call of a kernel, not per product). */
gg_gemm_fn gg_gemm_select(void);
gg_fns gg_select(void);

/* Orders the non-temporal stores of gg_cb7_row's dv and gg_l2back's out
 * before what follows (x86 sfence): call it before the outputs are handed on. */
void gg_stream_fence(void);

/* dst[c x r] = src[r x c]^T (dst row j = column j of src). */
void gg_transpose(int r, int c, const float *src, ptrdiff_t lds, float *dst, ptrdiff_t ldd);
void gg_transpose_avx2(int r, int c, const float *src, ptrdiff_t lds, float *dst, ptrdiff_t ldd); /* 8 x 8 blocks in registers */
void gg_transpose_avx512(int r, int c, const float *src, ptrdiff_t lds, float *dst, ptrdiff_t ldd); /* 16 x 16 blocks */

#endif
