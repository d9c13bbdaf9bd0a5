/* test_timing.c - cmocka suite for harness/timing.{h,c}: statistics against hand-computed
 * values, the monotonic clock, huge-page allocation and the machine-load mark. */
#include "common/clock.h"
#include "common/huge_pages.h"
#include "harness/timing.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define assert_close(a, b, tol) assert_true(fabs((a) - (b)) <= (tol))

/* {1, 2, 3, 4, 100}: deviations from the mean 22 are -21 -20 -19 -18 78, squares sum to
 * 7610, sample variance 7610 / 4 = 1902.5.  t(0.975, 4 dof) = 2.7764 from the t-table. */
static void test_stats_outlier(void **state)
{
    (void)state;
    const double x[] = {4, 100, 1, 3, 2};
    q35_stats s = q35_stats_of(x, 5);
    assert_int_equal(s.n, 5);
    assert_close(s.median, 3.0, 1e-12);
    assert_close(s.min, 1.0, 1e-12);
    assert_close(s.max, 100.0, 1e-12);
    assert_close(s.mean, 22.0, 1e-12);
    double sd = sqrt(7610.0 / 4.0); /* 43.6176...*/
    assert_close(s.stddev, sd, 1e-9);
    double half = 2.7764 * sd / sqrt(5.0);
    assert_close(s.ci95_lo, 22.0 - half, 1e-3 * half);
    assert_close(s.ci95_hi, 22.0 + half, 1e-3 * half);
    /* the input is left in its order */
    assert_true(x[0] == 4 && x[1] == 100 && x[4] == 2);
}

/* {2, 4, 4, 4, 5, 5, 7, 9}: mean 5, squared deviations 9 1 1 1 0 0 4 16 = 32, sd = sqrt(32/7);
 * the half-width is t(0.975, 7 dof) = 2.3646 times sd / sqrt(8) = 1.78747. */
static void test_stats_ci_t_table(void **state)
{
    (void)state;
    const double x[] = {2, 4, 4, 4, 5, 5, 7, 9};
    q35_stats s = q35_stats_of(x, 8);
    assert_int_equal(s.n, 8);
    assert_close(s.mean, 5.0, 1e-12);
    assert_close(s.median, 4.5, 1e-12); /* even n: mean of the middle two */
    assert_close(s.stddev, sqrt(32.0 / 7.0), 1e-12);
    double half = 2.3646 * sqrt(32.0 / 7.0) / sqrt(8.0);
    assert_close(half, 1.78747, 1e-4);
    assert_close(s.ci95_lo, 5.0 - half, 1e-4);
    assert_close(s.ci95_hi, 5.0 + half, 1e-4);
}

/* The quartiles interpolate between the sorted values at (n - 1) q: {1..9} has q1 = x[2] = 3 and
 * q3 = x[6] = 7; {2, 4, 4, 4, 5, 5, 7, 9} q1 at 1.75 between 4 and 4, q3 at 5.25: 5 + 0.25 (7 - 5). */
static void test_stats_quartiles(void **state)
{
    (void)state;
    const double nine[] = {9, 1, 8, 2, 7, 3, 6, 4, 5}, eight[] = {9, 4, 2, 5, 4, 7, 4, 5};
    q35_stats s = q35_stats_of(nine, 9);
    assert_close(s.q1, 3.0, 1e-12);
    assert_close(s.q3, 7.0, 1e-12);
    s = q35_stats_of(eight, 8);
    assert_close(s.q1, 4.0, 1e-12);
    assert_close(s.q3, 5.5, 1e-12);
    s = q35_stats_of(nine, 1);
    assert_true(s.q1 == 9.0 && s.q3 == 9.0);
    s = q35_stats_of(nine, 0);
    assert_true(isnan(s.q1) && isnan(s.q3));
}

static void test_stats_single_and_empty(void **state)
{
    (void)state;
    const double one = 7.25;
    q35_stats s = q35_stats_of(&one, 1);
    assert_int_equal(s.n, 1);
    assert_true(s.median == 7.25 && s.min == 7.25 && s.max == 7.25 && s.mean == 7.25);
    assert_true(s.stddev == 0.0);
    assert_true(s.ci95_lo == 7.25 && s.ci95_hi == 7.25);

    s = q35_stats_of(&one, 0);
    assert_int_equal(s.n, 0);
    assert_true(isnan(s.median) && isnan(s.mean) && isnan(s.ci95_lo));
    s = q35_stats_of(NULL, 3);
    assert_int_equal(s.n, 0);
}

static void test_now_monotonic(void **state)
{
    (void)state;
    double a = q35_now();
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    double b = q35_now();
    assert_true(b - a >= 0.019);
    assert_true(b - a < 5.0);
}

static void test_alloc_huge(void **state)
{
    (void)state;
    const size_t sizes[] = {1, 4096, (3u << 20) + 1, 8u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        unsigned char *p = q35_alloc_huge(sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % (2u << 20), 0);
        assert_int_equal(p[0], 0); /* anonymous memory is zero-filled */
        memset(p, 0xA5, sizes[i]);
        assert_int_equal(p[sizes[i] - 1], 0xA5);
        size_t map = 0, huge = q35_huge_backed_bytes(p, &map);
        assert_true(map >= sizes[i]); /* the VMA holding p covers the allocation */
        assert_true(huge <= map);
        q35_free_huge(p, sizes[i]);
    }
    assert_null(q35_alloc_huge(0));
    q35_free_huge(NULL, 10); /* no-op */
}

static void test_thp_mode(void **state)
{
    (void)state;
    char m[32];
    q35_thp_mode(m, sizeof m);
    assert_true(!strcmp(m, "always") || !strcmp(m, "madvise") || !strcmp(m, "never") || !strcmp(m, "unavailable"));
}

static void test_load_fraction(void **state)
{
    (void)state;
    q35_load_mark m;
    q35_load_begin(&m);
    volatile double x = 0;
    double t0 = q35_now();
    while (q35_now() - t0 < 0.05) x += 1.0; /* some work of our own, which must not count */
    double f = q35_load_end_other_fraction(&m);
    assert_true(f >= 0.0 && f <= 1.0);
    q35_load_begin(&m);
    assert_true(q35_load_end_other_fraction(&m) >= 0.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_outlier),      cmocka_unit_test(test_stats_ci_t_table),
        cmocka_unit_test(test_stats_single_and_empty), cmocka_unit_test(test_stats_quartiles), cmocka_unit_test(test_now_monotonic),
        cmocka_unit_test(test_alloc_huge),         cmocka_unit_test(test_thp_mode),
        cmocka_unit_test(test_load_fraction),
    };
    return cmocka_run_group_tests_name("timing", tests, NULL, NULL);
}
