/* The backward of the gated delta rule: one problem struct, one table.
 *
 * Given the forward problem's inputs and the upstream gradients of a loss
 *   L = sum(d_out . out) + sum(d_final_state . final_state),
 * every implementation writes dL/dq, dL/dk (with respect to q and k BEFORE
 * the in-kernel l2 norm when use_qk_l2norm is 1), dL/dv, dL/dg, dL/dbeta and
 * dL/d(initial_state).  Padding positions (t >= seq_len[b]) get zero
 * gradients.  The derivation is docs/deltarule.md, "Backward"; the
 * executable spec is ref/deltarule_grad_ref.c (deltarule_grad_ref_impl).
 */
#ifndef Q35_DELTARULE_GRAD_H
#define Q35_DELTARULE_GRAD_H

#include "kernels/deltarule/deltarule.h"

typedef struct {
    const deltarule_problem *fwd; /* the forward's inputs and shape; its out, final_state and
                                     checkpoint fields are not read */
    const float *d_out;           /* [B, T, Hv, Dv], required */
    const float *d_final_state;   /* [B, Hv, Dk, Dv]; NULL: zero */
    float *dq, *dk;               /* [B, T, Hk, Dk], required (accumulated over the value heads of a key head) */
    float *dv;                    /* [B, T, Hv, Dv], required */
    float *dg, *dbeta;            /* [B, T, Hv], required */
    float *d_initial_state;       /* [B, Hv, Dk, Dv]; required when fwd->initial_state is given, else ignored */
    void *workspace;              /* optional, 64-byte aligned: workspace_bytes the implementation may use for what
                                     it holds (at least deltarule_grad_workspace_bytes; its contents on entry do not
                                     matter).  NULL: it allocates and frees its memory in every call, and the OS
                                     zero-fills those pages anew each time (the chunked backward at T = 2048, 0.8B
                                     shape: 18 MiB per call) */
    size_t workspace_bytes;
} deltarule_grad_problem;

/* What an implementation held beyond its inputs and outputs (reported by
 * bench; the recurrent backward keeps a state every `chunk` tokens). */
typedef struct {
    size_t bytes_held;
} deltarule_grad_stats;

typedef int (*deltarule_grad_fn)(const deltarule_grad_problem *p, const deltarule_opts *o, deltarule_grad_stats *st);

typedef struct {
    const char *name;
    const char *summary;
    deltarule_grad_fn run;
    deltarule_opts defaults;  /* chunk: checkpoint interval (recurrent) or chunk length (chunked) */
    unsigned claims;          /* DR_CLAIM bits: regimes it holds claim_tol on */
    double claim_tol;         /* normwise relative error against ref it promises */
    int (*available)(void);   /* NULL: runs on every CPU */
    /* bytes of workspace it can use for this problem and these (merged) options; NULL: it uses none */
    size_t (*workspace)(const deltarule_grad_problem *p, const deltarule_opts *o);
} deltarule_grad_impl;

extern const deltarule_grad_impl deltarule_grad_impls[];
extern const int deltarule_grad_n_impls;

const deltarule_grad_impl *deltarule_grad_find(const char *name);

/* Checks the forward problem (deltarule_validate) and the gradient pointers;
 * with check_values also that d_out and d_final_state are finite.  0, or -1
 * with a message. */
int deltarule_grad_validate(const deltarule_grad_problem *p, int check_values, char *err, size_t errlen);

/* The workspace impl can use for p with opts (merged over impl->defaults, as deltarule_grad_run
 * does); 0 when it uses none.  A caller that runs the backward repeatedly allocates it once. */
size_t deltarule_grad_workspace_bytes(const deltarule_grad_impl *impl, const deltarule_grad_problem *p,
                                      const deltarule_opts *opts);

/* Validates (a workspace given must be at least deltarule_grad_workspace_bytes and 64-byte
 * aligned), merges opts over impl->defaults, runs; st may be NULL.  0 on success. */
int deltarule_grad_run(const deltarule_grad_impl *impl, const deltarule_grad_problem *p, const deltarule_opts *opts,
                       deltarule_grad_stats *st, char *err, size_t errlen);

/* The implementations (one file each). */
int deltarule_grad_recurrent(const deltarule_grad_problem *p, const deltarule_opts *o, deltarule_grad_stats *st);
int deltarule_grad_chunked(const deltarule_grad_problem *p, const deltarule_opts *o, deltarule_grad_stats *st);
int deltarule_grad_auto(const deltarule_grad_problem *p, const deltarule_opts *o, deltarule_grad_stats *st);
size_t deltarule_grad_chunked_workspace(const deltarule_grad_problem *p, const deltarule_opts *o);
size_t deltarule_grad_auto_workspace(const deltarule_grad_problem *p, const deltarule_opts *o);

#endif
