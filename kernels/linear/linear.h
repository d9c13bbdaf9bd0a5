/* The linear-layer family: activations times a checkpoint weight matrix.
 *
 *   Y[M, N] = (accumulate ? Y : 0) + X[M, K] W[N, K]^T        (docs/model.md eq. 1)
 *
 * X and Y are fp32; W is fp32 or bf16 as stored in the checkpoint (a Hugging
 * Face Linear weight [out, in]), or quantized at load (kernels/matmul/matmul.h's q35_wtype; the
 * interleaved types need N % 16 == 0, which linear_validate checks).  Every projection of the model goes through
 * this table, so `--impl linear=ref` runs them all in double accumulation.
 * The executable spec is ref/linear_ref.c (same signature, first entry).
 */
#ifndef Q35_LINEAR_H
#define Q35_LINEAR_H

#include "kernels/matmul/matmul.h"

#include <stddef.h>

typedef struct {
    int M, N, K;
    const float *x;   /* [M, K] */
    const void *w;    /* [N, K] of type wt */
    q35_wtype wt;
    float *y;         /* [M, N]; must not overlap x or w */
    int accumulate;   /* 1: y += x w^T (the residual add of the model) */
} linear_problem;

typedef struct {
    int threads; /* 0: OpenMP default */
} linear_opts;

typedef int (*linear_fn)(const linear_problem *p, const linear_opts *o);
/* n problems that read the same x (same x pointer, M and K), each with its own W and y: the
 * projections of one input (docs/model.md: q, k, v of a layer; gate and up).  One call instead
 * of n saves n - 1 forks and tails, and the integer-dot path quantizes x once; each y comes out
 * as its own linear_run would write it (tests/test_linear.c checks this bitwise). */
typedef int (*linear_shared_fn)(const linear_problem *ps, int n, const linear_opts *o);

typedef struct {
    const char *name;
    const char *summary;
    linear_fn run;
    linear_opts defaults;
    double claim_tol;        /* normwise relative error vs ref it promises */
    int (*available)(void);
    int lossy;               /* 1: rounds beyond fp32 (x to bf16); opt-in, `validate --impl all` leaves it out */
    linear_shared_fn run_shared; /* NULL: linear_run_shared runs the problems one by one */
} linear_impl;

extern const linear_impl linear_impls[];
extern const int linear_n_impls;
const linear_impl *linear_find(const char *name);

int linear_validate(const linear_problem *p, char *err, size_t errlen);
int linear_run(const linear_impl *impl, const linear_problem *p, const linear_opts *opts, char *err,
               size_t errlen);
/* ps[0..n) read one x: each validated as linear_run does, plus the same x, M and K in all and no
 * y overlapping another.  Through impl->run_shared when it has one.  0, or -1 with a message. */
int linear_run_shared(const linear_impl *impl, const linear_problem *ps, int n, const linear_opts *opts, char *err,
                      size_t errlen);

int linear_tiled(const linear_problem *p, const linear_opts *o);
int linear_tiled_bf16dot(const linear_problem *p, const linear_opts *o); /* lossy: x rounded to bf16 */
int linear_tiled_amx(const linear_problem *p, const linear_opts *o);     /* lossy: x rounded to bf16, AMX */
int linear_tiled_int8dot(const linear_problem *p, const linear_opts *o); /* lossy: x quantized per block (q8/q4 W) */
int linear_tiled_shared(const linear_problem *ps, int n, const linear_opts *o);
int linear_tiled_int8dot_shared(const linear_problem *ps, int n, const linear_opts *o);

#endif
