/* neumann: the chunkwise WY form with (I + A)^{-1} as a Neumann product.
 *
 * A is strictly lower triangular, so nilpotent, and
 *   (I + A)^{-1} = (I - A)(I + A^2)(I + A^4) ... (I + A^(2^(m-1)))
 * is exact with m = ceil(log2 n) factors (docs/deltarule.md eq. (13)).
 * Solvers:
 *   DR_SOLVER_NEUMANN_DENSE    the product over the whole chunk;
 *   DR_SOLVER_NEUMANN_BLOCKED  the product on 16x16 diagonal blocks, merged
 *                              into the full inverse by block GEMMs, eq. (12).
 * opts->neumann_order truncates the product to that many factors.  The dense
 * product loses accuracy in fp32 when keys are correlated or repeated: the
 * powers of A grow combinatorially and must cancel (eq. (14)); `check
 * deltarule` shows it, and the table's claims follow the measurement.
 */
#include "kernels/deltarule/chunk_engine.h"

#include <cblas.h>
#include <string.h>

static int exact_factors(int n)
{
    int m = 0;
    while ((1 << m) < n) m++;
    return m;
}

/* T (n x n, ld ldt) = product of the first `factors` Neumann factors of
 * (I + A)^{-1}.  pw and tmp: n x n scratch with leading dimension ldw. */
static void neumann_product(const float *A, int lda, float *T, int ldt, int n, int order,
                            float *pw, float *tmp, int ldw)
{
    int m = exact_factors(n);
    if (order > 0 && order < m) m = order;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            const float a = A[(size_t)i * lda + j];
            T[(size_t)i * ldt + j] = i == j ? 1.0f : (j < i ? -a : 0.0f);
            pw[(size_t)i * ldw + j] = j < i ? a : 0.0f;
        }
    for (int f = 1; f < m; f++) {
        /* pw <- pw^2 = A^(2^f) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, pw, ldw, pw, ldw, 0.0f, tmp, ldw);
        for (int i = 0; i < n; i++) memcpy(pw + (size_t)i * ldw, tmp + (size_t)i * ldw, sizeof(float) * n);
        /* T <- T (I + pw) = T + T pw */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, T, ldt, pw, ldw, 0.0f, tmp, ldw);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) T[(size_t)i * ldt + j] += tmp[(size_t)i * ldw + j];
    }
}

static void solve_neumann_dense(dr_chunk_ws *w, const deltarule_opts *o)
{
    neumann_product(w->A, w->C, w->Tinv, w->C, w->L, o->neumann_order, w->work, w->work2, w->C);
    dr_apply_inverse(w);
}

static void solve_neumann_blocked(dr_chunk_ws *w, const deltarule_opts *o)
{
    const int L = w->L, C = w->C, bs = DR_SOLVER_BLOCK;
    for (int i = 0; i < L; i++) memset(w->Tinv + (size_t)i * C, 0, sizeof(float) * L);
    for (int i0 = 0; i0 < L; i0 += bs) {
        const int n = L - i0 < bs ? L - i0 : bs;
        neumann_product(w->A + (size_t)i0 * C + i0, C, w->Tinv + (size_t)i0 * C + i0, C, n,
                        o->neumann_order, w->work, w->work2, C);
    }
    dr_merge_block_inverses(w);
    dr_apply_inverse(w);
}

int deltarule_neumann(const deltarule_problem *p, const deltarule_opts *o)
{
    dr_chunk_solver s = o->solver == DR_SOLVER_NEUMANN_DENSE ? solve_neumann_dense : solve_neumann_blocked;
    return dr_chunk_run(p, o, s);
}
