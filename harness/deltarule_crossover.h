/* auto's crossover table on disk (results/deltarule_crossover.json):
 * written by `q35lab bench deltarule` from its measurements, read by the CLI
 * at start so `auto` follows this machine's numbers. */
#ifndef Q35_DELTARULE_CROSSOVER_H
#define Q35_DELTARULE_CROSSOVER_H

#include "kernels/deltarule/deltarule.h"

#define DR_CROSSOVER_FILE "results/deltarule_crossover.json"

/* 0 and deltarule_auto_configure() on success; -1 with a message (a
 * missing file is not an error for callers that treat it as optional). */
int dr_crossover_load(const char *path, char *err, size_t errlen);

/* From medians measured at n sequence lengths Ts (ascending) for one thread
 * count: the smallest T from which chunked stays faster, or 0 (never). */
int dr_crossover_from_medians(const int *Ts, const double *recurrent_s, const double *chunked_s, int n);

int dr_crossover_write(const char *path, const int *threads, const int *from, int n, const char *what,
                       char *err, size_t errlen);

#endif
