/* bench_comm.h - `q35lab bench comm`: the all-reduce between the ranks of a
 * tensor-parallel run over a sweep of sizes, and its alpha-beta model. */
#ifndef Q35_BENCH_COMM_H
#define Q35_BENCH_COMM_H

#include "common/comm.h"

#include <stddef.h>

typedef struct {
    const q35_comm *comm;
    size_t min_bytes, max_bytes;  /* sizes min, 4 min, 16 min, ... up to max */
    int reps;                     /* timed repetitions per size (a tenth from 1 MiB on) */
} comm_bench_config;

/* 4 B to 16 MiB, 200 repetitions. */
void comm_bench_defaults(comm_bench_config *c);
/* 0, or 2 after a message (not under mpirun, out of memory). */
int bench_comm(const comm_bench_config *c);

#endif
