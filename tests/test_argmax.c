/* test_argmax.c - kernels/argmax.h at every ISA level the host has, against the definition
 * written here: the lowest index among those holding the largest non-NaN value, 0 when every
 * value is NaN (generate.h's greedy pick).  Rows: random lengths around the vector widths and a
 * vocabulary-sized one, ties, the maximum in the scalar tail, NaN in front and between, +inf,
 * all -inf, all NaN, -0.0 against 0.0. */
#include "kernels/argmax.h"
#include "kernels/cpu_features.h"
#include "tests/support/isa_levels.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The definition, in two plain passes that share nothing with the kernel's single loop. */
static int expected(const float *x, int n)
{
    int any = 0;
    double m = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i]) && (!any || x[i] > m)) { m = x[i]; any = 1; }
    if (!any) return 0;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i]) && x[i] == m) return i;
    return -1;
}

static void check(const float *x, int n, const char *what)
{
    const int got = q35_argmax_f32(x, n), want = expected(x, n);
    if (got != want) fail_msg("%s at %s, n=%d: argmax %d, expected %d", what, cpu_isa_name(cpu_isa()), n, got, want);
}

static void level(cpu_isa_level lv, void *ctx)
{
    (void)lv;
    (void)ctx;
    uint64_t s = 5;
    const int big = 248320;
    float *x = malloc(sizeof(float) * big);
    const int lens[] = {1, 2, 7, 8, 31, 32, 33, 63, 64, 65, 95, 100, 257, 1000, big};
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
        const int n = lens[li];
        for (int trial = 0; trial < 12; trial++) {
            /* values from a small set, so ties are common */
            for (int i = 0; i < n; i++) x[i] = (float)((int)(rng_next(&s) % 64) - 40) * 0.25f;
            check(x, n, "small set");
            const int at = (int)(rng_next(&s) % (uint64_t)n);
            x[at] = 1000.0f; /* anywhere, the scalar tail included */
            check(x, n, "one maximum");
            x[(at + n / 2) % n] = 1000.0f; /* a tie: the lower index */
            check(x, n, "tie");
            x[0] = NAN;
            x[n - 1] = NAN;
            if (n > 4) x[n / 3] = NAN;
            check(x, n, "NaN in front and between");
            if (trial % 3 == 0) { x[(at * 7) % n] = INFINITY; check(x, n, "+inf"); }
            /* NaN in every lane of every vector after a maximum: it must not replace it */
            for (int i = 0; i < n; i++) x[i] = (i % 5 == 3) ? NAN : (float)((int)(rng_next(&s) % 64) - 40);
            x[at] = 500.0f;
            check(x, n, "dense NaN");
        }
        for (int i = 0; i < n; i++) x[i] = -INFINITY;
        check(x, n, "all -inf");
        x[n - 1] = NAN;
        x[0] = NAN;
        check(x, n, "-inf and NaN");
        for (int i = 0; i < n; i++) x[i] = NAN;
        check(x, n, "all NaN");
        x[n - 1] = -5.0f;
        check(x, n, "one value after NaNs");
        for (int i = 0; i < n; i++) x[i] = i % 2 ? 0.0f : -0.0f;
        check(x, n, "-0.0 ties 0.0");
        for (int i = 0; i < n; i++) x[i] = -1e30f - (float)i; /* the maximum at index 0 */
        check(x, n, "descending");
    }
    free(x);
}

static void every_level(void **st)
{
    (void)st;
    isa_levels_each("test_argmax", level, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(every_level)};
    return cmocka_run_group_tests_name("argmax", tests, NULL, NULL);
}
