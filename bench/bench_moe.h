/* bench_moe.h - `q35lab bench moe`: every MoE implementation side by side
 * per (T, weight dtype, threads), from a parsed configuration. */
#ifndef Q35_BENCH_MOE_H
#define Q35_BENCH_MOE_H

#include "kernels/matmul/matmul.h"

typedef struct {
    const char *name;
    int hidden, E, top_k, I, Is;
} moe_bench_shape;

typedef struct {
    moe_bench_shape shape;
    int Ts[16], nT, threads[8], nthreads, reps;
    q35_wtype dtypes[2];
    int ndtypes;
    double skew;              /* 0..1: routers that send most tokens to a few experts */
    const char *impl;         /* "all" (every entry but ref) or a comma-separated list */
    const char *counters;     /* PAPI spec or "none" */
    const char *json, *csv;   /* append every result here; NULL: not written */
    const char *machine;      /* the calibrated limits */
} moe_bench_config;

/* Shape qwen3.5-35b-a3b, T 1,8,128,512, all cores, 5 reps, bf16, sde counters. */
void moe_bench_defaults(moe_bench_config *c);
/* qwen3.5-35b-a3b, qwen3.5-397b-a17b, or NULL. */
const moe_bench_shape *moe_bench_shape_named(const char *name);
/* 0, or 2 after a message. */
int bench_moe(const moe_bench_config *c);

#endif
