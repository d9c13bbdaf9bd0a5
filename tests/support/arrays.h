/* Float arrays for tests: a seeded uniform stream (xorshift64, the same
 * numbers on every machine, so a failing case can be re-run), and the
 * allocate / NaN-fill / copy helpers the kernel suites share.  Allocation
 * failures fail the running cmocka test. */
#ifndef Q35_TEST_ARRAYS_H
#define Q35_TEST_ARRAYS_H

#include <stddef.h>
#include <stdint.h>

typedef struct { uint64_t s; } test_rng;

void test_rng_seed(test_rng *r, uint64_t seed);
/* uniform in [-1, 1), 2^-23 apart */
float test_urand(test_rng *r);

/* malloc'ed arrays of n floats (n may be 0); free with free(). */
float *test_falloc(size_t n);
float *test_frand(test_rng *r, size_t n, float scale); /* scale * test_urand each */
float *test_fnan(size_t n);                            /* NaN-filled: an unwritten output shows */
float *test_fdup(const float *a, size_t n);
void test_fill_nan(float *a, size_t n);

#endif
