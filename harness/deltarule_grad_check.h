/* The correctness sweep behind `q35lab check deltarule --grad`: every
 * backward implementation (kernels/deltarule/deltarule_grad.h) x every input
 * regime over a grid of shapes and seeds, against the double-precision
 * backward of ref/ (deltarule_grad_ref_impl), gradient by gradient.  Mirrors
 * deltarule_check.h: a cell fails only where the implementation claims the
 * regime and misses its tolerance on some gradient.
 *
 * Also the gradient buffers and names golden files and benches share.
 */
#ifndef Q35_DELTARULE_GRAD_CHECK_H
#define Q35_DELTARULE_GRAD_CHECK_H

#include "kernels/deltarule/deltarule_grad.h"
#include "harness/deltarule_check.h"
#include "harness/metrics.h"

/* The gradients, in the order reports print them. */
enum { DR_GRAD_DQ, DR_GRAD_DK, DR_GRAD_DV, DR_GRAD_DG, DR_GRAD_DBETA, DR_GRAD_DH0, DR_GRAD_COUNT };
/* Tensor name in golden files: dq, dk, dv, dg, dbeta, d_initial_state. */
const char *dr_grad_name(int i);
/* Elements of gradient i for problem p (d_initial_state: 0 without an initial state). */
size_t dr_grad_elems(const deltarule_problem *p, int i);

/* Owned output buffers; t[DR_GRAD_DH0] is NULL when p has no initial state.  From 2 MiB up in
 * huge pages, like the forward's tensors (dr_big_alloc); huge[i] the size to free, 0: malloc. */
typedef struct {
    float *t[DR_GRAD_COUNT];
    size_t huge[DR_GRAD_COUNT];
} dr_grads;
int dr_grads_alloc(dr_grads *g, const deltarule_problem *p); /* 0, or -1 (out of memory) */
void dr_grads_free(dr_grads *g);
/* NaN everywhere, so a gradient an implementation leaves unwritten shows up. */
void dr_grads_fill_nan(dr_grads *g, const deltarule_problem *p);
/* The backward problem of fwd with these upstream gradients writing into g. */
deltarule_grad_problem dr_grads_problem(const deltarule_problem *fwd, const float *d_out, const float *d_final_state,
                                        dr_grads *g);

/* The backward family as checks list it: entry 0 is ref, then the table. */
int dr_grad_n_entries(void);
const deltarule_grad_impl *dr_grad_entry(int i);
const deltarule_grad_impl *dr_grad_named(const char *name); /* NULL if none */

typedef struct {
    err_stats grad[DR_GRAD_COUNT]; /* worst per gradient over the regime's cases */
    int has[DR_GRAD_COUNT];        /* the gradient existed in some case (d_initial_state) */
    err_stats worst;               /* worst over every gradient */
    char worst_case[96];           /* shape/seed of the case with the worst normwise error */
    size_t bytes_held;             /* largest deltarule_grad_stats.bytes_held seen */
    dr_cell_status status;
    char error[320];               /* when status == CELL_ERROR */
} dr_grad_cell;

typedef struct {
    const deltarule_grad_impl *impl;
    dr_grad_cell cell[DR_REGIME_COUNT];
} dr_grad_row;

typedef struct {
    int quick, seeds;
    const char *only_impl;                /* NULL or "all": every one */
    const deltarule_crossover *crossover; /* what the backward's auto follows (NULL: its built-in default) */
    void (*progress)(const char *what, int done, int total); /* NULL: silent */
} dr_grad_check_config;

/* Runs the sweep; rows is allocated (free it).  Returns the number of
 * failed claims, or -1 with a message. */
int dr_grad_check_run(const dr_grad_check_config *cfg, dr_grad_row **rows, int *n_rows, char *err, size_t errlen);

#endif
