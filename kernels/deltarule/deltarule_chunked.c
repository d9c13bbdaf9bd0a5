/* chunked: the chunkwise WY form solved by forward substitution.
 *
 * Solvers (docs/deltarule.md §3):
 *   DR_SOLVER_FWDSUB          (I + A) Delta = R row by row, eq. (11), never
 *                             forming the inverse (BLAS strsm, unit lower);
 *   DR_SOLVER_FWDSUB_BLOCKED  the 16x16 diagonal blocks of (I + A) inverted by
 *                             forward substitution and merged by block GEMMs,
 *                             eq. (12), then Delta = T R.
 * The rest of the chunk is kernels/deltarule/chunk_engine.c.
 */
#include "kernels/deltarule/chunk_engine.h"

#include <cblas.h>
#include <string.h>

static void solve_fwdsub(dr_chunk_ws *w, const deltarule_opts *o)
{
    (void)o;
    cblas_strsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasUnit, w->L, w->Dv, 1.0f,
                w->A, w->C, w->R, w->Dv);
}

/* T_II = (I + A_II)^{-1} column by column: x_j = e_j, x_i = -sum A_im x_m. */
static void invert_unit_lower_fwdsub(const float *A, int lda, float *T, int ldt, int n)
{
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < j; i++) T[(size_t)i * ldt + j] = 0.0f;
        T[(size_t)j * ldt + j] = 1.0f;
        for (int i = j + 1; i < n; i++) {
            float acc = 0.0f;
            for (int m = j; m < i; m++) acc += A[(size_t)i * lda + m] * T[(size_t)m * ldt + j];
            T[(size_t)i * ldt + j] = -acc;
        }
    }
}

static void solve_fwdsub_blocked(dr_chunk_ws *w, const deltarule_opts *o)
{
    (void)o;
    const int L = w->L, C = w->C, bs = DR_SOLVER_BLOCK;
    for (int i = 0; i < L; i++) memset(w->Tinv + (size_t)i * C, 0, sizeof(float) * L);
    for (int i0 = 0; i0 < L; i0 += bs) {
        const int n = L - i0 < bs ? L - i0 : bs;
        invert_unit_lower_fwdsub(w->A + (size_t)i0 * C + i0, C, w->Tinv + (size_t)i0 * C + i0, C, n);
    }
    dr_merge_block_inverses(w);
    dr_apply_inverse(w);
}

int deltarule_chunked(const deltarule_problem *p, const deltarule_opts *o)
{
    dr_chunk_solver s = o->solver == DR_SOLVER_FWDSUB_BLOCKED ? solve_fwdsub_blocked : solve_fwdsub;
    return dr_chunk_run(p, o, s);
}
