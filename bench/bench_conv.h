/* bench_conv.h - `q35lab bench conv [--grad]`: the short causal conv (+ SiLU)
 * and its backward, every implementation side by side per (T, threads). */
#ifndef Q35_BENCH_CONV_H
#define Q35_BENCH_CONV_H

typedef struct {
    int C, K, B;
    int Ts[16], nT, threads[8], nthreads, reps;
    int grad;                 /* 1: the backward family (kernels/conv/conv_grad.h) */
    const char *impl;         /* "all" (every entry but ref) or a comma-separated list */
    const char *counters;     /* PAPI spec or "none" */
    const char *json, *csv;   /* append every result here; NULL: not written */
    const char *machine;      /* the calibrated limits */
} conv_bench_config;

/* The Qwen3.5-0.8B DeltaNet conv (C = 2*16*128 + 16*128 = 6144 channels, K =
 * 4), B 1, T 1,512, all cores, 20 reps, forward, no counters. */
void conv_bench_defaults(conv_bench_config *c);
/* 0, or 2 after a message. */
int bench_conv(const conv_bench_config *c);

#endif
