/* Statistics of repeated measurements, waking the thread team, machine-load marks (timing.h). */
#include "harness/timing.h"

#include "common/clock.h"

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

q35_stats q35_stats_of(const double *x, int n)
{
    q35_stats s = {0, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
    if (!x || n <= 0) return s;
    double *c = malloc((size_t)n * sizeof *c);
    if (!c) return s;
    memcpy(c, x, (size_t)n * sizeof *c);
    gsl_sort(c, 1, (size_t)n);
    s.n = n;
    s.min = c[0];
    s.max = c[n - 1];
    s.median = gsl_stats_median_from_sorted_data(c, 1, (size_t)n);
    s.q1 = gsl_stats_quantile_from_sorted_data(c, 1, (size_t)n, 0.25);
    s.q3 = gsl_stats_quantile_from_sorted_data(c, 1, (size_t)n, 0.75);
    s.mean = gsl_stats_mean(c, 1, (size_t)n);
    if (n == 1) {
        s.stddev = 0.0;
        s.ci95_lo = s.ci95_hi = c[0];
    } else {
        s.stddev = gsl_stats_sd(c, 1, (size_t)n);
        double half = gsl_cdf_tdist_Pinv(0.975, (double)(n - 1)) * s.stddev / sqrt((double)n);
        s.ci95_lo = s.mean - half;
        s.ci95_hi = s.mean + half;
    }
    free(c);
    return s;
}

void q35_wake_team(int threads)
{
    if (threads < 2) return;
    volatile int sink = 0;
#pragma omp parallel num_threads(threads)
    {
        sink = 1;
    }
    (void)sink;
}

/* Busy jiffies of all CPUs (first line of /proc/stat); -1 if unreadable. */
static double stat_busy(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    unsigned long long u = 0, ni = 0, sy = 0, id = 0, io = 0, irq = 0, sirq = 0, st = 0;
    int k = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &u, &ni, &sy, &id, &io, &irq, &sirq, &st);
    fclose(f);
    if (k < 4) return -1;
    return (double)(u + ni + sy + irq + sirq + st);
}

/* utime + stime of this process, in clock ticks; -1 if unreadable. */
static double self_busy(void)
{
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f) return -1;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may contain spaces and parentheses */
    unsigned long ut, stt;
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stt) != 2) return -1;
    return (double)ut + (double)stt;
}

void q35_load_begin(q35_load_mark *m)
{
    m->busy_total = stat_busy();
    m->busy_self = self_busy();
    m->wall = q35_now();
}

double q35_load_self_ticks(const q35_load_mark *m)
{
    const double self = self_busy();
    return self < 0 || m->busy_self < 0 ? 0.0 : self - m->busy_self;
}

double q35_load_end_other_fraction_of_run(const q35_load_mark *m, double run_ticks)
{
    double total = stat_busy(), wall = q35_now() - m->wall;
    long hz = sysconf(_SC_CLK_TCK), ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (total < 0 || m->busy_total < 0 || hz <= 0 || ncpu <= 0 || wall <= 0) return 0.0;
    double frac = ((total - m->busy_total) - run_ticks) / (wall * (double)hz * (double)ncpu);
    if (!(frac > 0)) return 0.0;
    return frac > 1 ? 1.0 : frac;
}

double q35_load_end_other_fraction(const q35_load_mark *m)
{
    double total = stat_busy(), self = self_busy(), wall = q35_now() - m->wall;
    long hz = sysconf(_SC_CLK_TCK), ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (total < 0 || self < 0 || m->busy_total < 0 || m->busy_self < 0 || hz <= 0 || ncpu <= 0 || wall <= 0)
        return 0.0;
    double other = (total - m->busy_total) - (self - m->busy_self);
    double frac = other / (wall * (double)hz * (double)ncpu);
    if (!(frac > 0)) return 0.0;
    return frac > 1 ? 1.0 : frac;
}
