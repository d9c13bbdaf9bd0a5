/* Error metrics: one definition, used by check, tests and golden files.
 *   normwise  ||x - ref||_2 / ||ref||_2   (absolute when ||ref|| = 0; inf when x has a non-finite value)
 *   maxabs    max |x - ref| over finite entries
 *   nonfinite count of NaN/inf entries in x
 */
#ifndef Q35_METRICS_H
#define Q35_METRICS_H

#include <stddef.h>

typedef struct {
    double normwise, maxabs;
    size_t nonfinite;
} err_stats;

err_stats err_compare(const float *x, const float *ref, size_t n);
/* Worst of the two, field by field. */
err_stats err_worst(err_stats a, err_stats b);

/* Element-wise |x - e| <= atol + rtol |e| (NaN never passes).  Returns the
 * number of violations; *first gets the first one's index if any. */
size_t err_allclose_violations(const float *x, const float *e, size_t n, double atol, double rtol,
                               size_t *first);

#endif
