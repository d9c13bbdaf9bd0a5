/* q35lab bench comm: the all-reduce the tensor-parallel model makes after
 * every sublayer (docs/tp.md), timed over a sweep of message sizes, and the
 * alpha-beta model t(n) = alpha + n / beta fitted to the medians by least
 * squares of the relative error (GSL, weights 1/t^2: the sizes span seven
 * orders of magnitude, and a plain fit would let the largest decide alpha):
 * alpha the latency of one all-reduce, beta its bytes per second.  Run under mpirun; rank 0 reports. */
#include "bench/bench_comm.h"

#include "bench/bench.h"
#include "common/clock.h"
#include "harness/timing.h"

#include <gsl/gsl_fit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

void comm_bench_defaults(comm_bench_config *c)
{
    *c = (comm_bench_config){.min_bytes = 4, .max_bytes = 16 << 20, .reps = 200};
}

/* Median seconds of reps all-reduces of n floats (after as many untimed
 * ones): every rank times the same calls; rank 0's medians are reported. */
static int time_size(const q35_comm *comm, float *x, size_t n, int reps, q35_stats *st)
{
    double *t = malloc((size_t)reps * sizeof *t);
    if (!t) return -1;
    int rc = 0;
    for (int r = -reps / 4 - 1; r < reps && !rc; r++) {
        q35_comm_barrier(comm); /* every rank starts the call together: the time is the all-reduce's */
        const double t0 = q35_now();
        rc = q35_comm_sum(comm, x, n);
        if (r >= 0) t[r] = q35_now() - t0;
    }
    if (!rc) *st = q35_stats_of(t, reps);
    free(t);
    return rc;
}

int bench_comm(const comm_bench_config *cfg)
{
    const q35_comm *comm = cfg->comm;
    if (!comm || comm->size < 2) {
        fprintf(stderr, "q35lab: bench comm measures the all-reduce between ranks: run it under mpirun -np 2 or "
                        "more\n");
        return 2;
    }
    const size_t maxn = cfg->max_bytes / sizeof(float) ? cfg->max_bytes / sizeof(float) : 1;
    float *x = calloc(maxn, sizeof *x);
    if (!x) { fprintf(stderr, "q35lab: bench comm: out of memory\n"); return 2; }
    printf("bench comm: all-reduce (sum, fp32) over %d ranks, %d repetitions per size, medians; the model's own:"
           " a hidden state per token per sublayer\n", comm->size, cfg->reps);
    printf("  %12s %12s %12s %12s %10s\n", "bytes", "median us", "min us", "max us", "GB/s");
    double xs[64], ys[64], ws[64];
    int k = 0, rc = 0;
    for (size_t b = cfg->min_bytes; b <= cfg->max_bytes && k < 64 && !rc; b *= 4) {
        const size_t n = b / sizeof(float) ? b / sizeof(float) : 1;
        q35_stats st;
        /* fewer repetitions for large messages: a few seconds per size at most */
        const int reps = b >= (1 << 20) ? (cfg->reps / 10 > 5 ? cfg->reps / 10 : 5) : cfg->reps;
        if (time_size(comm, x, n, reps, &st)) {
            fprintf(stderr, "q35lab: bench comm: rank %d: the all-reduce of %zu bytes failed\n", comm->rank, b);
            q35_comm_abort(comm, 2);
        }
        printf("  %12zu %12.2f %12.2f %12.2f %10.3f\n", n * sizeof(float), st.median * 1e6, st.min * 1e6,
               st.max * 1e6, n * sizeof(float) / st.median * 1e-9);
        xs[k] = (double)(n * sizeof(float));
        ys[k] = st.median;
        ws[k] = 1.0 / (st.median * st.median);
        k++;
    }
    double alpha, inv_beta, c00, c01, c11, sumsq;
    if (k >= 2 && !gsl_fit_wlinear(xs, 1, ws, 1, ys, 1, (size_t)k, &alpha, &inv_beta, &c00, &c01, &c11, &sumsq) &&
        inv_beta > 0)
        printf("alpha-beta fit, t(n) = alpha + n / beta over %d sizes: alpha %.2f us, beta %.2f GB/s "
               "(a hidden state of 1024 floats: %.2f us)\n", k, alpha * 1e6, 1e-9 / inv_beta,
               (alpha + 4096.0 * inv_beta) * 1e6);
    else
        printf("alpha-beta fit: not enough sizes (or a non-positive slope) to fit\n");
    free(x);
    return rc;
}
