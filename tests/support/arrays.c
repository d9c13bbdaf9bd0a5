#include "tests/support/arrays.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

void test_rng_seed(test_rng *r, uint64_t seed) { r->s = seed * 0x9e3779b97f4a7c15ull + 1; }

float test_urand(test_rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return (float)((r->s >> 40) * (1.0 / (1ull << 23)) - 1.0);
}

float *test_falloc(size_t n)
{
    float *a = malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(a);
    return a;
}

float *test_frand(test_rng *r, size_t n, float scale)
{
    float *a = test_falloc(n);
    for (size_t i = 0; i < n; i++) a[i] = scale * test_urand(r);
    return a;
}

void test_fill_nan(float *a, size_t n)
{
    for (size_t i = 0; i < n; i++) a[i] = NAN;
}

float *test_fnan(size_t n)
{
    float *a = test_falloc(n);
    test_fill_nan(a, n);
    return a;
}

float *test_fdup(const float *a, size_t n)
{
    float *b = test_falloc(n);
    if (n) memcpy(b, a, sizeof(float) * n);
    return b;
}
