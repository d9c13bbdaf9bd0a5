#include "harness/metrics.h"

#include <math.h>

err_stats err_compare(const float *x, const float *ref, size_t n)
{
    err_stats s = {0.0, 0.0, 0};
    double diff2 = 0.0, ref2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) { s.nonfinite++; continue; }
        const double d = (double)x[i] - (double)ref[i];
        diff2 += d * d;
        ref2 += (double)ref[i] * ref[i];
        if (fabs(d) > s.maxabs) s.maxabs = fabs(d);
    }
    if (s.nonfinite) s.normwise = INFINITY;
    else s.normwise = ref2 > 0.0 ? sqrt(diff2 / ref2) : sqrt(diff2);
    return s;
}

err_stats err_worst(err_stats a, err_stats b)
{
    err_stats w = a;
    if (b.normwise > w.normwise || isnan(b.normwise)) w.normwise = b.normwise;
    if (b.maxabs > w.maxabs) w.maxabs = b.maxabs;
    if (b.nonfinite > w.nonfinite) w.nonfinite = b.nonfinite;
    return w;
}

size_t err_allclose_violations(const float *x, const float *e, size_t n, double atol, double rtol,
                               size_t *first)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)x[i] - (double)e[i]);
        if (!(d <= atol + rtol * fabs((double)e[i]))) { /* written so NaN fails */
            if (!bad && first) *first = i;
            bad++;
        }
    }
    return bad;
}
