/* bench_deltarule.h - `q35lab bench deltarule`: every delta-rule
 * implementation side by side per (B, T, threads), from a parsed
 * configuration (option parsing is the CLI's). */
#ifndef Q35_BENCH_DELTARULE_H
#define Q35_BENCH_DELTARULE_H

#include "kernels/deltarule/deltarule.h"

typedef struct {
    const char *name;
    int Hk, Hv, Dk, Dv, deltanet_layers; /* layers: how many states --cold rotates over */
} dr_bench_shape;

typedef struct {
    dr_bench_shape shape;
    int Ts[16], nT, Bs[8], nB, threads[8], nthreads, reps, cold;
    int chunks[8], nchunks;   /* chunk sizes for the chunked forms; 0: their defaults */
    const char *impl;         /* "all" (every entry but ref) or a comma-separated list */
    const char *counters;     /* PAPI spec (harness/counters.h) or "none" */
    const char *json, *csv;   /* append every result here; NULL: not written */
    const char *machine;      /* the calibrated limits (harness/calibrate.h) */
    const char *crossover;    /* measure auto's crossover for this shape into this file; NULL: not */
    const deltarule_crossover *auto_crossover; /* what `auto` follows while benched (NULL: built-in) */
    /* Checkpoints (docs/deltarule.md §"Checkpoints"): 0 none; > 0 that many,
     * evenly spread over T; DR_BENCH_CKPT_EVERY after every token but the
     * last (a verify window).  With them, each implementation is timed
     * without and with checkpoints side by side (chunked forms in both
     * modes). */
    int checkpoints;
    /* --grad only: after each row's blocks of repetitions, this many rounds of an FMA peak probe,
     * the best forward and every backward, one call each, interleaved (0: none) */
    int pairs;
} dr_bench_config;
#define DR_BENCH_CKPT_EVERY (-1)

/* The defaults of every field (shape qwen3.5-0.8b, T 1,64,512,2048, B 1,
 * all cores, 10 reps, every implementation, default counters, nothing written). */
void dr_bench_defaults(dr_bench_config *c);
/* A named shape (qwen3.5-0.8b, qwen3.5-35b-a3b) or NULL. */
const dr_bench_shape *dr_bench_shape_named(const char *name);
/* Runs it; 0, or 2 after a message (bad configuration, out of memory). */
int bench_deltarule(const dr_bench_config *c);

#endif
