/* test_grad_gemm.c - cmocka suite for the chunked backward's small GEMM
 * (kernels/deltarule/grad_gemm.h).
 *
 * Expected values: the same product in double by plain loops, here.  Every
 * ISA level this CPU has (skipped levels printed), every shape mode, op(A) =
 * A and A^T, alpha/beta with beta = 0 on a NaN-filled C (C must not be read),
 * m, n, k from 1 to past the register tiles, odd leading dimensions.
 */
#include "kernels/cpu_features.h"
#include "kernels/deltarule/grad_gemm.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float frand(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* C = alpha op(A) B + beta C0 with the shape's zeros in op(A), checked where the shape asks. */
static void check_one(gg_gemm_fn fn, int m, int n, int k, int trans, gg_shape shape, float alpha, float beta,
                      uint64_t *seed)
{
    const int lda = (trans ? m : k) + 3, ldb = n + 5, ldc = n + 1;
    const int arows = trans ? k : m;
    float *A = malloc(sizeof(float) * (size_t)arows * lda), *B = malloc(sizeof(float) * (size_t)k * ldb);
    float *C = malloc(sizeof(float) * (size_t)m * ldc), *C0 = malloc(sizeof(float) * (size_t)m * ldc);
    assert_non_null(A); assert_non_null(B); assert_non_null(C); assert_non_null(C0);
    for (int i = 0; i < arows * lda; i++) A[i] = frand(seed);
    for (int i = 0; i < k * ldb; i++) B[i] = frand(seed);
    for (int i = 0; i < m * ldc; i++) C0[i] = beta == 0.0f ? NAN : frand(seed);
    const ptrdiff_t rsa = trans ? 1 : lda, csa = trans ? lda : 1;
    for (int i = 0; i < m; i++) /* the zeros the shape promises */
        for (int p = 0; p < k; p++)
            if ((shape == GG_A_LOWER && p > i) || (shape == GG_A_UPPER && p < i)) A[i * rsa + p * csa] = 0.0f;
    memcpy(C, C0, sizeof(float) * (size_t)m * ldc);
    fn(m, n, k, alpha, A, rsa, csa, B, ldb, beta, C, ldc, shape);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            if (shape == GG_C_LOWER && j > i) continue;
            double s = 0.0, sa = 0.0;
            for (int p = 0; p < k; p++) {
                s += (double)A[i * rsa + p * csa] * B[p * ldb + j];
                sa += fabs((double)A[i * rsa + p * csa] * B[p * ldb + j]);
            }
            double want = alpha * s, tol = 1e-6 * (fabs(alpha) * sa + 1.0);
            if (beta != 0.0f) {
                want += (double)beta * C0[i * ldc + j];
                tol += 1e-6 * fabs((double)beta * C0[i * ldc + j]);
            }
            if (!(fabs(C[i * ldc + j] - want) <= tol))
                fail_msg("m=%d n=%d k=%d trans=%d shape=%d alpha=%g beta=%g: C[%d,%d] = %.9g, want %.9g", m, n, k,
                         trans, (int)shape, alpha, beta, i, j, C[i * ldc + j], want);
        }
    for (int i = 0; i < m; i++) /* the padding of each row is untouched */
        for (int j = n; j < ldc; j++)
            if (memcmp(&C[i * ldc + j], &C0[i * ldc + j], sizeof(float)) != 0)
                fail_msg("m=%d n=%d k=%d: padding C[%d,%d] written", m, n, k, i, j);
    free(A); free(B); free(C); free(C0);
}

static void test_every_isa_shape(void **state)
{
    (void)state;
    static const int sizes[] = {1, 2, 3, 5, 7, 13, 16, 17, 31, 33, 50, 64, 65, 100, 128};
    const int ns = (int)(sizeof sizes / sizeof *sizes);
    for (int isa = ISA_GENERIC; isa <= ISA_AVX512; isa++) {
        if (isa > (int)cpu_isa_best()) {
            printf("[  SKIPPED ] grad_gemm at ISA %s: this CPU has only %s\n", cpu_isa_name((cpu_isa_level)isa),
                   cpu_isa_name(cpu_isa_best()));
            continue;
        }
        cpu_isa_force((cpu_isa_level)isa);
        assert_int_equal(cpu_isa(), isa);
        const gg_gemm_fn fn = gg_gemm_select();
        uint64_t seed = 12345u + (uint64_t)isa;
        int runs = 0;
        for (int a = 0; a < ns; a++)
            for (int b = 0; b < ns; b++) {
                const int m = sizes[a], n = sizes[b], k = sizes[(a * 7 + b * 3) % ns];
                for (int shape = GG_FULL; shape <= GG_A_UPPER; shape++)
                    for (int trans = 0; trans < 2; trans++) {
                        const float beta = (a + b + shape) % 3 == 0 ? 0.0f : (trans ? 1.0f : -0.5f);
                        check_one(fn, m, n, k, trans, (gg_shape)shape, trans ? -1.0f : 0.75f, beta, &seed);
                        runs++;
                    }
            }
        printf("grad_gemm ISA %s: %d products checked\n", cpu_isa_name((cpu_isa_level)isa), runs);
    }
    cpu_isa_force(ISA_AUTO);
}

/* (I + A) X = B and (I + A)^T X = B for strictly lower A (garbage on and
 * above the diagonal, which must not be read): residual checked in double. */
static void test_solves_every_isa(void **state)
{
    (void)state;
    static const int Ls[] = {1, 2, 15, 16, 17, 33, 50, 64};
    static const int ns[] = {1, 7, 16, 100, 128};
    for (int isa = ISA_GENERIC; isa <= ISA_AVX512; isa++) {
        if (isa > (int)cpu_isa_best()) {
            printf("[  SKIPPED ] grad_gemm solves at ISA %s: this CPU has only %s\n",
                   cpu_isa_name((cpu_isa_level)isa), cpu_isa_name(cpu_isa_best()));
            continue;
        }
        cpu_isa_force((cpu_isa_level)isa);
        const gg_fns f = gg_select();
        uint64_t seed = 777u + (uint64_t)isa;
        for (size_t a = 0; a < sizeof Ls / sizeof *Ls; a++)
            for (size_t b = 0; b < sizeof ns / sizeof *ns; b++)
                for (int tr = 0; tr < 2; tr++) {
                    const int L = Ls[a], n = ns[b], lda = L + 3, ldx = n + 2;
                    float *A = malloc(sizeof(float) * (size_t)L * lda), *X = malloc(sizeof(float) * (size_t)L * ldx),
                          *B = malloc(sizeof(float) * (size_t)L * ldx);
                    assert_non_null(A); assert_non_null(X); assert_non_null(B);
                    for (int i = 0; i < L; i++)
                        for (int j = 0; j < lda; j++) A[i * lda + j] = j < i ? 0.3f * frand(&seed) : NAN;
                    for (int i = 0; i < L * ldx; i++) B[i] = X[i] = frand(&seed);
                    (tr ? f.solve_t : f.solve)(L, n, A, lda, X, ldx);
                    for (int i = 0; i < L; i++)
                        for (int c = 0; c < n; c++) {
                            double r = X[i * ldx + c], sa = fabs(r);
                            for (int j = 0; j < L; j++) {
                                const double aij = tr ? (i < j ? A[j * lda + i] : 0.0) : (j < i ? A[i * lda + j] : 0.0);
                                r += aij * X[j * ldx + c];
                                sa += fabs(aij * X[j * ldx + c]);
                            }
                            if (!(fabs(r - B[i * ldx + c]) <= 1e-5 * (sa + 1.0)))
                                fail_msg("ISA %s solve%s L=%d n=%d: row %d col %d residual %g",
                                         cpu_isa_name((cpu_isa_level)isa), tr ? "_t" : "", L, n, i, c, r - B[i * ldx + c]);
                        }
                    free(A); free(X); free(B);
                }
    }
    cpu_isa_force(ISA_AUTO);
}

/* decay_row: e_j = exp((float)(gamma_i - gamma_j)) for j <= i against exp in
 * double, every ISA level: within 4 ulp where the value is a normal float,
 * at most ~1.7e-38 (never negative, never subnormal garbage) below e^-87,
 * NaN propagated, and nothing written past column i. */
static void test_decay_row_every_isa(void **state)
{
    (void)state;
    enum { N = 70 };
    double gamma[N];
    for (int i = 0; i < N; i++) /* decreasing, with jumps that put some differences below -87 */
        gamma[i] = -0.37 * i - (i > 40 ? 60.0 : 0.0) - (i > 55 ? 45.0 : 0.0);
    for (int isa = ISA_GENERIC; isa <= ISA_AVX512; isa++) {
        if (isa > (int)cpu_isa_best()) {
            printf("[  SKIPPED ] decay_row at ISA %s: this CPU has only %s\n", cpu_isa_name((cpu_isa_level)isa),
                   cpu_isa_name(cpu_isa_best()));
            continue;
        }
        cpu_isa_force((cpu_isa_level)isa);
        const gg_fns f = gg_select();
        float e[N + 8];
        for (int i = 0; i < N; i++) {
            for (int j = 0; j < N + 8; j++) e[j] = -1.0f;
            f.decay_row(e, gamma, i);
            for (int j = 0; j <= i; j++) {
                const double want = exp((double)(float)(gamma[i] - gamma[j]));
                if (want >= 1.2e-38) {
                    if (!(fabs(e[j] - want) <= 4.0 * 5.97e-8 * want))
                        fail_msg("ISA %s row %d col %d: %.9g, want %.9g", cpu_isa_name((cpu_isa_level)isa), i, j,
                                 e[j], want);
                } else if (!(e[j] >= 0.0f && e[j] <= 1.7e-38f)) {
                    fail_msg("ISA %s row %d col %d: %.9g for exp(%g)", cpu_isa_name((cpu_isa_level)isa), i, j, e[j],
                             gamma[i] - gamma[j]);
                }
            }
            for (int j = i + 1; j < N + 8; j++)
                if (e[j] != -1.0f) fail_msg("ISA %s row %d: column %d written", cpu_isa_name((cpu_isa_level)isa), i, j);
        }
        double g2[20];
        for (int j = 0; j < 20; j++) g2[j] = -0.1 * j;
        g2[5] = NAN;
        f.decay_row(e, g2, 19);
        for (int j = 0; j < 20; j++)
            if (isnan(e[j]) != (j == 5)) fail_msg("ISA %s: NaN in gamma_5, column %d = %g", cpu_isa_name((cpu_isa_level)isa), j, e[j]);
        printf("decay_row ISA %s: checked\n", cpu_isa_name((cpu_isa_level)isa));
    }
    cpu_isa_force(ISA_AUTO);
}

/* The two row ops that write an output row by non-temporal stores (gg_cb7_row's
 * dv, gg_l2back's out; grad_gemm_simd.inc's gg_peel) against the formulas in
 * double, at every ISA level, with the output row starting at every float
 * offset within a line and lengths around the vector width: the peeled
 * head, the streamed vectors and the tail must all be written, and nothing
 * past the row. */
static void test_streamed_rows_every_isa(void **state)
{
    (void)state;
    enum { NMAX = 100, PAD = 40 };
    static const int ns[] = {1, 5, 16, 17, 33, 64, 100};
    for (int isa = ISA_GENERIC; isa <= ISA_AVX512; isa++) {
        if (isa > (int)cpu_isa_best()) {
            printf("[  SKIPPED ] streamed rows at ISA %s: this CPU has only %s\n", cpu_isa_name((cpu_isa_level)isa),
                   cpu_isa_name(cpu_isa_best()));
            continue;
        }
        cpu_isa_force((cpu_isa_level)isa);
        const gg_fns f = gg_select();
        uint64_t seed = 4242u + (uint64_t)isa;
        float *in[5], *out = aligned_alloc(64, (sizeof(float) * (NMAX + PAD) + 63) / 64 * 64), dks[NMAX], doe[NMAX]; /* C11: a multiple of the alignment */
        assert_non_null(out);
        for (int a = 0; a < 5; a++) {
            in[a] = malloc(sizeof(float) * NMAX);
            assert_non_null(in[a]);
            for (int i = 0; i < NMAX; i++) in[a][i] = frand(&seed);
        }
        for (size_t k = 0; k < sizeof ns / sizeof *ns; k++)
            for (int off = 0; off < 16; off++) {
                const int n = ns[k];
                float *o = out + off;
                /* gg_cb7_row: dv = beta dr */
                for (int i = 0; i < NMAX + PAD; i++) out[i] = NAN;
                float dbr, dgr;
                const float beta = 0.75f, e = 0.5f;
                f.cb7_row(in[0], in[1], in[2], in[3], o, dks, doe, n, beta, e, &dbr, &dgr);
                for (int i = 0; i < n; i++)
                    if (!(fabs(o[i] - (double)beta * in[0][i]) <= 1e-6 * fabs((double)beta * in[0][i])))
                        fail_msg("ISA %s cb7_row n=%d offset %d: dv[%d] = %g, want %g", cpu_isa_name((cpu_isa_level)isa),
                                 n, off, i, o[i], (double)beta * in[0][i]);
                for (int i = off + n; i < NMAX + PAD; i++)
                    if (!isnan(out[i])) fail_msg("ISA %s cb7_row n=%d offset %d: wrote past the row", cpu_isa_name((cpu_isa_level)isa), n, off);
                double sb = 0.0;
                for (int i = 0; i < n; i++) sb += (double)in[0][i] * (in[1][i] - (double)e * in[2][i]);
                double sba = 0.0;
                for (int i = 0; i < n; i++) sba += fabs((double)in[0][i] * (in[1][i] - (double)e * in[2][i]));
                if (!(fabs(dbr - sb) <= 1e-6 * (sba + 1.0)))
                    fail_msg("ISA %s cb7_row n=%d offset %d: dbr %g, want %g", cpu_isa_name((cpu_isa_level)isa), n, off, dbr, sb);
                /* gg_l2back: out = s inv (dy - c y), c = (y . dy) / s^2 */
                for (int i = 0; i < NMAX + PAD; i++) out[i] = NAN;
                const double sc = 0.3, inv = 1.7;
                f.l2back(in[3], in[4], o, n, sc, inv);
                double yd = 0.0;
                for (int i = 0; i < n; i++) yd += (double)in[3][i] * in[4][i];
                for (int i = 0; i < n; i++) {
                    const double want = sc * inv * (in[4][i] - yd / (sc * sc) * in[3][i]);
                    if (!(fabs(o[i] - want) <= 1e-6 * (fabs(want) + 1e-3)))
                        fail_msg("ISA %s l2back n=%d offset %d: out[%d] = %g, want %g", cpu_isa_name((cpu_isa_level)isa), n,
                                 off, i, o[i], want);
                }
                for (int i = off + n; i < NMAX + PAD; i++)
                    if (!isnan(out[i])) fail_msg("ISA %s l2back n=%d offset %d: wrote past the row", cpu_isa_name((cpu_isa_level)isa), n, off);
            }
        gg_stream_fence();
        for (int a = 0; a < 5; a++) free(in[a]);
        free(out);
        printf("streamed rows ISA %s: checked\n", cpu_isa_name((cpu_isa_level)isa));
    }
    cpu_isa_force(ISA_AUTO);
}

static void test_transpose(void **state)
{
    (void)state;
    static const int dims[][2] = {{1, 1}, {3, 17}, {64, 128}, {128, 64}, {33, 50}, {8, 8}, {9, 16}, {16, 16}, {17, 33}, {128, 128}, {48, 31}};
    for (size_t d = 0; d < sizeof dims / sizeof *dims; d++) {
        const int r = dims[d][0], c = dims[d][1], lds = c + 2, ldd = r + 3;
        float *s = malloc(sizeof(float) * (size_t)r * lds), *t = malloc(sizeof(float) * (size_t)c * ldd);
        assert_non_null(s); assert_non_null(t);
        for (int i = 0; i < r * lds; i++) s[i] = (float)i;
        gg_transpose(r, c, s, lds, t, ldd);
        for (int i = 0; i < r; i++)
            for (int j = 0; j < c; j++) assert_true(t[j * ldd + i] == s[i * lds + j]);
        if (cpu_isa_best() >= ISA_AVX2) {
            memset(t, 0, sizeof(float) * (size_t)c * ldd);
            gg_transpose_avx2(r, c, s, lds, t, ldd);
            for (int i = 0; i < r; i++)
                for (int j = 0; j < c; j++) assert_true(t[j * ldd + i] == s[i * lds + j]);
        } else {
            printf("[  SKIPPED ] gg_transpose_avx2: this CPU has only %s\n", cpu_isa_name(cpu_isa_best()));
        }
        if (cpu_isa_best() >= ISA_AVX512) {
            memset(t, 0, sizeof(float) * (size_t)c * ldd);
            gg_transpose_avx512(r, c, s, lds, t, ldd);
            for (int i = 0; i < r; i++)
                for (int j = 0; j < c; j++)
                    if (t[j * ldd + i] != s[i * lds + j])
                        fail_msg("gg_transpose_avx512 %d x %d: dst[%d][%d] = %g, want %g", r, c, j, i, t[j * ldd + i], s[i * lds + j]);
        } else {
            printf("[  SKIPPED ] gg_transpose_avx512: this CPU has only %s\n", cpu_isa_name(cpu_isa_best()));
        }
        free(s); free(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_isa_shape),
        cmocka_unit_test(test_solves_every_isa),
        cmocka_unit_test(test_transpose),
        cmocka_unit_test(test_decay_row_every_isa),
        cmocka_unit_test(test_streamed_rows_every_isa),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
