/* What every benchmark shares: one row of results per configuration, every
 * implementation side by side with its ratio to the fastest, printed as a
 * table and, when files are named (--json, --csv), appended to them as JSON
 * lines and CSV with the machine's metadata: results/ changes only when
 * asked (the bench/run_*.sh scripts that regenerate the committed tables).
 */
#ifndef Q35_BENCH_H
#define Q35_BENCH_H

#include "common/atomic_file.h"
#include "harness/calibrate.h"
#include "harness/counters.h"
#include "harness/timing.h"

#include <stdint.h>
#include <stdio.h>

#define BENCH_MAX_IMPLS 16
#define BENCH_MAX_COUNTERS 32
/* Untimed calls before a measurement: at least one, and for at least this long. */
#define WARMUP_SECONDS 0.02

typedef struct {
    const char *impl;
    q35_stats stats;          /* seconds per run */
    double flops, bytes, tokens;
    double other_load;        /* fraction of the machine other processes used meanwhile */
    double peak_gflops, bw_gbs; /* calibrated limits at this thread count; 0 if unknown */
    char note[96];            /* family-specific facts of the run, printed and recorded */
    int n_counters;
    char counter_name[BENCH_MAX_COUNTERS][64];
    int counter_avail[BENCH_MAX_COUNTERS];
    double counter_per_run[BENCH_MAX_COUNTERS];
} bench_result;

typedef struct {
    const char *family;
    FILE *json, *csv;         /* NULL: not written */
    q35_atomic_file json_file, csv_file;
    char meta[1536];          /* JSON object text: machine and build metadata */
    char commit[64], date[32], cpu[128];
    char blas_core[64], blas_config[256]; /* openblas_get_corename(), openblas_get_config() */
    int B, T, threads;
    char variant[32];         /* e.g. the weight dtype; "" if none */
    int phases;               /* 1: a row's results are phases of one run (prefill, decode), not rival
                                 implementations, so no ratio to the fastest is given */
    bench_result res[BENCH_MAX_IMPLS];
    int n;
} bench_report;

/* What a benchmark reads before it measures: the calibrated limits of
 * `machine` (*have_limits 0, after a note on stderr, when there are none; a
 * note on stdout when they were measured on another CPU) and the counters
 * named (*ctr NULL for "none").  0, or 2 after a message (unknown counters). */
int bench_setup(const char *machine, const char *counters, q35_machine_limits *lim, int *have_limits,
                q35_counters **ctr);

/* bench_setup, then bench_report_open: what every kernel bench opens with.
 * 0, or 2 after a message (nothing left open). */
int bench_open(bench_report *r, const char *family, const char *json, const char *csv, const char *machine,
               const char *counters, q35_machine_limits *lim, int *have_limits, q35_counters **ctr);

/* Every name of the comma list `list` ("all" passes) satisfies named();
 * else -1 after "no <family> implementation 'x' (see `q35lab list`)". */
int bench_check_impl_list(const char *family, const char *list, int (*named)(const char *));

/* Appends to json / csv (NULL: that file is not written); the files change
 * only when the report is closed with keep = 1.  Prints one line naming the
 * OpenBLAS core in use (and OPENBLAS_CORETYPE), which the records carry too. */
int bench_report_open(bench_report *r, const char *family, const char *json, const char *csv, const char *machine);
void bench_row_begin(bench_report *r, int B, int T, int threads);
void bench_result_add(bench_report *r, const bench_result *res, const q35_counters *ctr, int reps);
void bench_row_end(bench_report *r); /* prints the row's table and writes the records */
/* keep: replace the files with their appended copies (0 after a failed run:
 * leave them as they were).  -1 if a file could not be written. */
int bench_report_close(bench_report *r, int keep);
/* Whether implementation `name` is in the comma-separated list ("all": every
 * entry but ref, which is the spec, not a contender). */
int bench_impl_selected(const char *list, const char *name);
void bench_progress(const char *family, const char *impl, int B, int T, int threads);
/* Bench inputs: n values uniform in [-1, 1) from the xorshift64 state *s (bench data, not a test's:
 * the same seed gives the same data in every bench). */
void bench_fill_uniform(float *a, size_t n, uint64_t *s);

/* The timed loop every bench runs: untimed calls for WARMUP_SECONDS (at
 * least one), then reps timed calls into times[], each after waking the
 * OpenMP team of `threads`, the counters (ctr may be NULL) around the timed
 * ones.  call returns 0 or nonzero after a message in err.  0, or -1 when a
 * call failed. */
int bench_time_calls(int (*call)(void *ctx, char *err, size_t errlen), void *ctx, int reps, int threads,
                     q35_counters *ctr, double *times, char *err, size_t errlen);

#endif
