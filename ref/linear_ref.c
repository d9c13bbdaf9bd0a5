/* linear_ref - the linear family's executable spec (kernels/linear/linear.h):
 * y[m, n] (+)= sum_k x[m, k] w[n, k], accumulated in double.
 * Row n of W is widened to double once and reused for every m: the same
 * products in the same order, just not re-converted M times. */
#include "ref/linear_ref.h"

#include <stdlib.h>

int linear_ref(const linear_problem *p, const linear_opts *o)
{
    (void)o;
    double *w = malloc((size_t)p->K * sizeof *w);
    if (!w) return -1;
    for (int n = 0; n < p->N; n++) {
        for (int k = 0; k < p->K; k++) w[k] = q35_w_rc(p->w, p->wt, (size_t)p->K, (size_t)n, (size_t)k);
        for (int m = 0; m < p->M; m++) {
            const float *x = p->x + (size_t)m * p->K;
            double acc = 0.0;
            for (int k = 0; k < p->K; k++) acc += (double)x[k] * w[k];
            float *y = &p->y[(size_t)m * p->N + n];
            *y = (float)(p->accumulate ? *y + acc : acc);
        }
    }
    free(w);
    return 0;
}

const linear_impl linear_ref_impl = {"ref", "scalar reference, double accumulation (ref/linear_ref.c)", linear_ref, {0}, 1e-6, NULL, 0, NULL};
