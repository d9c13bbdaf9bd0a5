/* The correctness sweep behind `q35lab check deltarule`: every
 * implementation x every input regime over a grid of shapes and seeds,
 * against the double-precision reference.  A cell fails only where the
 * implementation claims the regime and misses its tolerance.
 */
#ifndef Q35_DELTARULE_CHECK_H
#define Q35_DELTARULE_CHECK_H

#include "kernels/deltarule/deltarule.h"
#include "harness/metrics.h"

typedef enum { CELL_PASS, CELL_FAIL, CELL_UNCLAIMED, CELL_ERROR } dr_cell_status;

typedef struct {
    err_stats worst;       /* over out, final state and checkpoints, all cases of the regime
                              (chunked forms: both checkpoint modes) */
    char worst_case[96];   /* shape/seed of the case with the worst normwise error */
    dr_cell_status status;
    char error[320];       /* when status == CELL_ERROR */
} dr_cell;

typedef struct {
    const deltarule_impl *impl;
    int chunk;             /* chunk override (0: the entry's default) */
    char label[48];        /* impl name, "@C" appended when chunk is overridden */
    dr_cell cell[DR_REGIME_COUNT];
} dr_check_row;

typedef struct {
    int quick, seeds;
    const int *chunks; int n_chunks;     /* extra chunk sizes for chunked forms */
    const char *only_impl;               /* NULL: all */
    const deltarule_crossover *crossover; /* what auto follows (NULL: its built-in default) */
    void (*progress)(const char *what, int done, int total); /* NULL: silent */
} dr_check_config;

/* Runs the sweep; rows is allocated (free it).  Returns the number of
 * failed claims, or -1 with a message. */
int dr_check_run(const dr_check_config *cfg, dr_check_row **rows, int *n_rows, char *err, size_t errlen);

#endif
