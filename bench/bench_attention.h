/* bench_attention.h - `q35lab bench attention`: the causal GQA attention
 * (kernels/attention/attention.h), every implementation side by side per
 * (T, threads). */
#ifndef Q35_BENCH_ATTENTION_H
#define Q35_BENCH_ATTENTION_H

typedef struct {
    int B, Hq, Hkv, D, past;
    int Ts[16], nT, threads[8], nthreads, reps;
    const char *impl;         /* "all" (every entry but ref) or a comma-separated list */
    const char *counters;     /* PAPI spec or "none" */
    const char *json, *csv;   /* append every result here; NULL: not written */
    const char *machine;      /* the calibrated limits */
} attention_bench_config;

/* Qwen3.5-0.8B's full attention (Hq 8, Hkv 2, D 256), B 1, past 0 (prefill),
 * T 512,2048, all cores, 10 reps, no counters. */
void attention_bench_defaults(attention_bench_config *c);
/* 0, or 2 after a message. */
int bench_attention(const attention_bench_config *c);

#endif
