/* Statistics and measurement hygiene shared by calibrate and the benches
 * (the clock is common/clock.h, huge-page memory common/huge_pages.h).
 *
 * q35_wake_team()    wake the OpenMP team before a timed call.
 * q35_stats_of()     median / min / max / mean / sd and a 95% t-interval of the mean.
 * q35_load_*()       how much of the machine other processes used during a region, so a
 *                    measurement taken on a busy machine can be flagged instead of trusted.
 */
#ifndef Q35_TIMING_H
#define Q35_TIMING_H

#include <stddef.h>

/* Runs an empty OpenMP region on `threads` threads just before a timed call, so the team is
 * awake and spinning (GOMP_SPINCOUNT) when the call forks it, as in a model where the previous
 * operation ran on the same team.  Without it, a team idle for the bench's bookkeeping between
 * repetitions falls asleep, and waking a halted vCPU costs from tens of microseconds to a
 * millisecond on a VM: a 2-thread decode step measured 1.09 ms instead of 32 us. */
void q35_wake_team(int threads);

/* Summary of n samples.  ci95 is the two-sided 95% confidence interval of the mean from the
 * t-distribution with n-1 degrees of freedom (gsl_cdf_tdist_Pinv); stddev is the sample
 * standard deviation (n-1).  n = 1: stddev 0 and ci = [x, x].  n <= 0 or x NULL: n = 0 and
 * every other field NaN. */
typedef struct {
    int n;
    double median, min, max, mean, stddev, ci95_lo, ci95_hi;
    double q1, q3; /* the quartiles (GSL's quantile of the sorted values, interpolated) */
} q35_stats;

q35_stats q35_stats_of(const double *x, int n);  /* works on a copy; x is not reordered */

/* CPU time other processes used during a region, from /proc/stat (busy jiffies of all CPUs:
 * user+nice+system+irq+softirq+steal) minus this process's utime+stime (/proc/self/stat),
 * as a fraction of wall time x online CPUs.  Steal counts as "other": the hypervisor took it.
 * Resolution is one clock tick (usually 10 ms) per CPU, so regions shorter than ~0.5 s give a
 * coarse figure. */
typedef struct {
    double busy_total, busy_self, wall;
} q35_load_mark;

#define Q35_BUSY_THRESHOLD 0.10 /* a run is "busy" when others used more than this fraction */

void q35_load_begin(q35_load_mark *m);
/* Fraction (0..1) of the machine's CPU capacity used by others since q35_load_begin(m);
 * 0 if /proc is unreadable. */
double q35_load_end_other_fraction(const q35_load_mark *m);
/* The same when the run is several processes (the ranks of a tensor-parallel
 * run): this process's CPU ticks since q35_load_begin(m), for the caller to
 * sum over the ranks, and the fraction used by processes outside the run,
 * given that sum. */
double q35_load_self_ticks(const q35_load_mark *m);
double q35_load_end_other_fraction_of_run(const q35_load_mark *m, double run_ticks);

#endif
