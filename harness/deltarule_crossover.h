/* auto's crossover on disk (results/deltarule_crossover.json): points per
 * head shape and thread count, written only when asked (`q35lab bench
 * deltarule --crossover FILE`, which bench/run_deltarule.sh passes) and read
 * by the commands that run `auto`, which hand it to the kernel in
 * deltarule_opts.  File format: docs/deltarule.md §7. */
#ifndef Q35_DELTARULE_CROSSOVER_H
#define Q35_DELTARULE_CROSSOVER_H

#include "kernels/deltarule/deltarule.h"

#define DR_CROSSOVER_FILE "results/deltarule_crossover.json"
/* The file's two arrays of points: the forward's (auto, deltarule.h) and the
 * backward's (the backward's auto, deltarule_grad.h), same fields and
 * meaning: from which T the chunked form beats the recurrent one.  A file
 * without "grad_points" has no backward points. */
#define DR_CROSSOVER_KEY_FWD "points"
#define DR_CROSSOVER_KEY_GRAD "grad_points"

/* 0, or -1 with a message naming the file and the field; *x is empty
 * (n = 0) on failure. */
int dr_crossover_load(const char *path, deltarule_crossover *x, char *err, size_t errlen);
/* The points under key (DR_CROSSOVER_KEY_FWD or _GRAD); dr_crossover_load is key "points". */
int dr_crossover_load_key(const char *path, const char *key, deltarule_crossover *x, char *err, size_t errlen);

/* DR_CROSSOVER_FILE if it exists (a bad one is reported on stderr and
 * ignored: auto then keeps its built-in default); returns x, or NULL when
 * nothing was loaded. */
const deltarule_crossover *dr_crossover_load_default(deltarule_crossover *x);
/* The backward's points of DR_CROSSOVER_FILE, for deltarule_opts.crossover of
 * a backward call; NULL when the file or its "grad_points" is missing. */
const deltarule_crossover *dr_crossover_load_default_grad(deltarule_crossover *x);

/* From medians measured at n sequence lengths Ts (ascending) for one thread
 * count: the smallest T from which chunked stays faster, or 0 (never). */
int dr_crossover_from_medians(const int *Ts, const double *recurrent_s, const double *chunked_s, int n);

/* Puts the n points into the file at path (replacing the points of the same
 * shape and thread count, keeping the others), atomically.  what: how they
 * were measured, recorded with each point. */
int dr_crossover_merge_write(const char *path, const deltarule_crossover_point *pts, int n, const char *what,
                             char *err, size_t errlen);
/* The same under key, keeping the file's other key as it is. */
int dr_crossover_merge_write_key(const char *path, const char *key, const deltarule_crossover_point *pts, int n,
                                 const char *what, char *err, size_t errlen);

/* One line for reports: "results/...json: 16/16/128x128 1 thread: recurrent always; ..." */
void dr_crossover_describe(const deltarule_crossover *x, char *buf, size_t n);

#endif
