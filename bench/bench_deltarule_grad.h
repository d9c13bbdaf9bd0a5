/* bench_deltarule_grad.h - `q35lab bench deltarule --grad`: every backward
 * implementation (kernels/deltarule/deltarule_grad.h) next to the fastest
 * forward on the same problem, per (T, threads), and the backward's
 * crossover (from which T the chunked backward beats the recurrent one). */
#ifndef Q35_BENCH_DELTARULE_GRAD_H
#define Q35_BENCH_DELTARULE_GRAD_H

#include "bench/bench_deltarule.h"

/* Reads shape, Ts, Bs, threads, reps, impl (backward names or all), counters,
 * json, csv, machine, crossover (written under the file's "grad_points") and
 * auto_crossover (the backward's, for its auto) of c; cold, chunks and
 * checkpoints are refused.  0, or 2 after a message. */
int bench_deltarule_grad(const dr_bench_config *c);

#endif
