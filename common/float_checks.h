/* float_checks.h - the checks every problem validator makes on its arrays:
 * is every value finite, and do two arrays share memory.  One copy for the
 * kernel tables and the harness (they each had their own). */
#ifndef Q35_COMMON_FLOAT_CHECKS_H
#define Q35_COMMON_FLOAT_CHECKS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* 1 and *at = the first index of x[0..n) that is NaN or infinite; else 0. */
static inline int q35_first_nonfinite(const float *x, size_t n, size_t *at)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) { *at = i; return 1; }
    return 0;
}

/* Do [a, a + na) and [b, b + nb) (counts of bytes) share memory?  NULL or
 * empty ranges share nothing. */
static inline int q35_bytes_overlap(const void *a, size_t na, const void *b, size_t nb)
{
    if (!a || !b || !na || !nb) return 0;
    const uintptr_t a0 = (uintptr_t)a, b0 = (uintptr_t)b;
    return a0 < b0 + nb && b0 < a0 + na;
}

/* The same for counts of floats. */
static inline int q35_floats_overlap(const void *a, size_t na, const void *b, size_t nb)
{
    return q35_bytes_overlap(a, na * sizeof(float), b, nb * sizeof(float));
}

#endif
