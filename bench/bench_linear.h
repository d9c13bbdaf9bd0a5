/* bench_linear.h - `q35lab bench linear`: the linear family (kernels/linear/linear.h), every
 * implementation side by side per (weight type, M rows of x, threads): decode is M = 1, a
 * speculative verify window M = 2..8, prefill M = 512. */
#ifndef Q35_BENCH_LINEAR_H
#define Q35_BENCH_LINEAR_H

typedef struct {
    int N, K;
    int Ms[16], nM, threads[8], nthreads, reps;
    const char *weights;      /* comma list of f32, bf16, q8, q4 */
    const char *impl;         /* "all" (every entry but ref) or a comma-separated list */
    const char *counters;     /* PAPI spec or "none" */
    const char *json, *csv;   /* append every result here; NULL: not written */
    const char *machine;      /* the calibrated limits */
    int cold_mib;             /* > 0: copies of W filling this many MiB, a new one per call (0: one W, re-read) */
} linear_bench_config;

/* Qwen3.5-0.8B's DeltaNet in_proj_qkv (N 6144, K 1024), M 1,8,512, weights bf16,q8,q4, all cores,
 * 10 reps, no counters. */
void linear_bench_defaults(linear_bench_config *c);
/* 0, or 2 after a message. */
int bench_linear(const linear_bench_config *c);

#endif
