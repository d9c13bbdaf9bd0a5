/* bench_model.h - `q35lab bench model`: TTFT and TPOT of a checkpoint per
 * prompt length and thread count, from a parsed configuration. */
#ifndef Q35_BENCH_MODEL_H
#define Q35_BENCH_MODEL_H

#include "common/comm.h"
#include "kernels/deltarule/deltarule.h"
#include "model/shard.h"

typedef struct {
    const char *dir;          /* the checkpoint folder (required) */
    const char *impl;         /* --impl spec (harness/impl_select.h) */
    const char *json, *csv;   /* append every result here; NULL: not written */
    const char *machine;      /* the calibrated limits */
    int lens[16], nlens, threads[8], nthreads, gen, reps, f32, mmap;
    const deltarule_crossover *auto_crossover; /* what `auto` follows (NULL: built-in) */
    const q35_comm *comm;     /* the ranks the model is spread over (NULL: one process; docs/tp.md) */
    q35_moe_shard moe_shard;
    int quant;                /* --weights: q35_wtype WT_Q8_0 / WT_Q4_0 (0: as loaded; docs/quantization.md) */
    unsigned quant_families;  /* --quant-only: bit 1 << q35_wfamily (0: all) */
    int bw_probe;             /* --bw-probe: a read-bandwidth probe before and after each repetition's decode
                                 steps, and the steps against the bound at that bandwidth (one process only) */
} model_bench_config;

/* Prompt lengths 128,512, all cores, 32 generated tokens, 3 reps, impl default. */
void model_bench_defaults(model_bench_config *c);
/* 0, or 2 after a message. */
int bench_model(const model_bench_config *c);

#endif
