/* test_activation.c - kernels/activation.h against the double-precision definitions (the RMSNorm
 * passes: see norm_level)
 * silu(x) = x / (1 + e^-x) and sigmoid(x) = 1 / (1 + e^-x), at every ISA level the host has:
 * inputs across [-90, 90] and the edges (0, -0, tiny, huge, NaN), every tail length of the
 * 8-lane loop, in place and not.  Tolerance: 2^-20 relative where the exact value is a normal
 * float above 1e-30, 1e-30 absolute below (the expf clamp at -87 makes e^-x at most e^87; the
 * true values there are under 1e-36, nothing a model can tell from 0). */
#include "kernels/activation.h"
#include "kernels/cpu_features.h"
#include "tests/support/isa_levels.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static double silu_d(double x) { return x / (1.0 + exp(-x)); }
static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }

static void expect_near(const char *what, float got, double want, float x, size_t n, size_t i)
{
    if (isnan(want)) {
        if (!isnan(got)) fail_msg("%s(%g) n=%zu i=%zu isa=%s: %g, expected NaN", what, x, n, i, cpu_isa_name(cpu_isa()), got);
        return;
    }
    const double err = fabs((double)got - want), tol = fabs(want) > 1e-30 ? ldexp(fabs(want), -20) : 1e-30;
    if (!(err <= tol))
        fail_msg("%s(%.9g) n=%zu i=%zu isa=%s: %.9g, expected %.9g (error %.3g > %.3g)", what, x, n, i,
                 cpu_isa_name(cpu_isa()), got, want, err, tol);
}

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float urand(float lo, float hi)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return lo + (hi - lo) * (float)((rng >> 40) * (1.0 / (1ull << 24)));
}

static void level(cpu_isa_level lv, void *ctx)
{
    (void)ctx;
    enum { N = 300 };
    static const float edge[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 1.0f, -1.0f, 20.0f, -20.0f, 87.0f, -87.0f,
                                 88.5f, -88.5f, 90.0f, -90.0f, 1e-7f, -1e-7f, 0.5f, -0.5f};
    float x[N], u[N], a[N];
    for (int i = 0; i < N; i++) {
        x[i] = i < (int)(sizeof edge / sizeof *edge) ? edge[i] : urand(-90.0f, 90.0f);
        u[i] = urand(-2.0f, 2.0f);
        a[i] = urand(-2.0f, 2.0f);
    }
    x[N - 1] = NAN;
    for (size_t n = 0; n <= N; n += n < 24 ? 1 : 69) { /* every tail up to 3 vectors, then long rows */
        float g[N], s[N], o[N], inplace[N];
        memcpy(g, x, sizeof g);
        memcpy(s, a, sizeof s);
        memcpy(inplace, x, sizeof inplace);
        for (int i = 0; i < N; i++) o[i] = -7.0f;
        q35_act_silu_mul(g, u, n);
        q35_act_sigmoid_mul(s, x, n);
        q35_act_silu(x, o, n);
        q35_act_silu(inplace, inplace, n);
        for (size_t i = 0; i < n; i++) {
            expect_near("silu_mul", g[i], silu_d(x[i]) * u[i], x[i], n, i);
            expect_near("sigmoid_mul", s[i], a[i] * sigmoid_d(x[i]), x[i], n, i);
            expect_near("silu", o[i], silu_d(x[i]), x[i], n, i);
            expect_near("silu in place", inplace[i], silu_d(x[i]), x[i], n, i);
        }
        for (size_t i = n; i < N; i++) /* nothing past n is written */
            if (g[i] != x[i] && !(isnan(g[i]) && isnan(x[i])) ) fail_msg("silu_mul wrote past n=%zu (i=%zu)", n, i);
            else if (o[i] != -7.0f) fail_msg("silu wrote past n=%zu (i=%zu)", n, i);
    }
    assert_int_equal(cpu_isa(), lv);
}

/* The RMSNorm passes: the sum of squares against a long-double sum (within n 2^-52 of the
 * sum: each of the double partial sums rounds at most n times), and the centred scaling
 * against the expression eq. 2 writes, (float)((x r)(1 + w)) in double, bit for bit, in place
 * and not, nothing past n written. */
static void norm_level(cpu_isa_level lv, void *ctx)
{
    (void)ctx;
    enum { N = 1100 };
    float x[N], w[N], y[N], yi[N];
    for (int i = 0; i < N; i++) {
        x[i] = urand(-3.0f, 3.0f) * (i % 97 == 5 ? 1e3f : 1.0f); /* a few outliers, as activations have */
        w[i] = urand(-0.5f, 0.5f);
    }
    const double r = 0.8137264120923;
    for (size_t n = 0; n <= N; n += n < 40 ? 1 : 153) {
        long double want = 0;
        for (size_t i = 0; i < n; i++) want += (long double)x[i] * x[i];
        const double got = q35_act_sumsq(x, n);
        if (!(fabsl((long double)got - want) <= (long double)n * 0x1p-52 * want))
            fail_msg("sumsq n=%zu isa=%s: %.17g, expected %.17Lg", n, cpu_isa_name(cpu_isa()), got, want);
        for (int i = 0; i < N; i++) y[i] = -7.0f;
        memcpy(yi, x, sizeof yi);
        q35_act_scale_centred(x, w, r, y, n);
        q35_act_scale_centred(yi, w, r, yi, n);
        for (size_t i = 0; i < n; i++) {
            const float want_i = (float)((double)x[i] * r * (1.0 + (double)w[i]));
            if (memcmp(&y[i], &want_i, sizeof want_i) || memcmp(&yi[i], &want_i, sizeof want_i))
                fail_msg("scale_centred n=%zu i=%zu isa=%s: %.9g (in place %.9g), expected %.9g", n, i,
                         cpu_isa_name(cpu_isa()), y[i], yi[i], want_i);
        }
        for (size_t i = n; i < N; i++)
            if (y[i] != -7.0f) fail_msg("scale_centred wrote past n=%zu (i=%zu)", n, i);
    }
    assert_int_equal(cpu_isa(), lv);
}

static void norms_every_level(void **st)
{
    (void)st;
    isa_levels_each("test_activation norms", norm_level, NULL);
}

static void every_level(void **st)
{
    (void)st;
    isa_levels_each("test_activation", level, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(every_level), cmocka_unit_test(norms_every_level)};
    return cmocka_run_group_tests_name("activation", tests, NULL, NULL);
}
