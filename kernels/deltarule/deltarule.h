/* The gated delta rule family: one problem struct, one implementation table.
 *
 * The math (and every equation number cited in the kernels) is in
 * docs/deltarule.md.  The executable spec is ref/deltarule_ref.c: same
 * signature and entry type as these kernels, defined on the floor above
 * (ref/ may use kernels/, not the reverse); the harness lists it first.
 */
#ifndef Q35_DELTARULE_H
#define Q35_DELTARULE_H

#include <stddef.h>
#include <stdint.h>

/* Layouts (row-major, innermost last):
 *   q, k          [B, T, Hk, Dk]
 *   v, out        [B, T, Hv, Dv]
 *   g, beta       [B, T, Hv]
 *   state         [B, Hv, Dk, Dv]
 * Value head h reads key head h / (Hv / Hk) ("interleaved" repeat). */
typedef struct {
    int B, T, Hk, Hv, Dk, Dv;
    const float *q, *k, *v, *g, *beta;
    const float *initial_state; /* NULL: zeros */
    const int32_t *seq_len;     /* NULL: every sequence has T valid tokens */
    float *out;                 /* required */
    float *final_state;         /* NULL: not wanted; may equal initial_state */
    int use_qk_l2norm;          /* eq. (1) */
    float scale;                /* 0: 1/sqrt(Dk) */
    /* States at chosen positions (docs/deltarule.md §"Checkpoints"): for
     * i < n_checkpoints, the state of every sequence after its token
     * checkpoint_t[i] (strictly ascending, in [0, T)); a sequence with
     * seq_len <= checkpoint_t[i] gets the state after its last valid token,
     * i.e. its final state (the initial state if seq_len = 0). */
    int n_checkpoints;            /* 0: none */
    const int32_t *checkpoint_t;  /* [n_checkpoints] */
    float *checkpoint_states;     /* [n_checkpoints, B, Hv, Dk, Dv] */
} deltarule_problem;

/* Intra-chunk solvers for (I + A)^{-1} (docs/deltarule.md §3). */
typedef enum {
    DR_SOLVER_DEFAULT = 0,
    DR_SOLVER_FWDSUB,         /* dense forward substitution on the right-hand side */
    DR_SOLVER_FWDSUB_BLOCKED, /* 16x16 diagonal blocks by forward substitution, merged */
    DR_SOLVER_NEUMANN_DENSE,  /* (I-A)(I+A^2)(I+A^4)... over the whole chunk */
    DR_SOLVER_NEUMANN_BLOCKED /* the Neumann product on 16x16 blocks, merged */
} deltarule_solver;

/* How the chunked forms write checkpoints (docs/deltarule.md §"Checkpoints").
 * The recurrent forms have one way only: they store the state as it passes. */
typedef enum {
    DR_CKPT_DEFAULT = 0,  /* the cheaper of the two as measured, by density: split when T >= 16 n (chunk_engine.c) */
    DR_CKPT_SPLIT,        /* chunks end at every checkpoint: each is a chunk-boundary state */
    DR_CKPT_FROM_DELTA    /* chunks as usual; a state inside a chunk is rebuilt from the chunk's
                             start state and its solved Delta rows, eq. (9) truncated (eq. 9c) */
} deltarule_checkpoint_mode;

/* auto's crossover: per head shape and thread count, the T from which the
 * chunked form measured faster than the recurrent one (0: never).  Measured
 * on purpose by `q35lab bench deltarule --crossover FILE`; the caller loads
 * the file and passes it in deltarule_opts (harness/deltarule_crossover.h). */
typedef struct {
    int Hk, Hv, Dk, Dv, threads;
    int chunked_from_T;
} deltarule_crossover_point;
#define DR_CROSSOVER_MAX_POINTS 64
typedef struct {
    int n;
    deltarule_crossover_point pt[DR_CROSSOVER_MAX_POINTS];
    char source[160];      /* where it was read from, for reports */
} deltarule_crossover;

/* Tuning knobs; 0 means "the implementation's default". */
typedef struct {
    int chunk;          /* chunk length C for chunked forms */
    int solver;         /* deltarule_solver */
    int neumann_order;  /* number of Neumann factors; 0 = exact (ceil(log2 C)) */
    int threads;        /* 0: OpenMP default */
    int sweep_tokens;   /* recurrent form: tokens per pass over the state, 1 or 2 (eq. 3c) */
    const deltarule_crossover *crossover; /* auto: NULL or no point for the shape: recurrent at every T */
    int checkpoint_mode; /* deltarule_checkpoint_mode; chunked forms only */
} deltarule_opts;

/* Input regimes the checker generates (harness/deltarule_inputs.c). */
enum {
    DR_REGIME_RANDOM = 0,
    DR_REGIME_SLOW_DECAY,
    DR_REGIME_STRONG_DECAY,
    DR_REGIME_CORRELATED_KEYS,
    DR_REGIME_REPEATED_TOKENS,
    DR_REGIME_ZERO_GATES,
    DR_REGIME_LONG,
    DR_REGIME_COUNT
};
#define DR_CLAIM(r) (1u << (r))
#define DR_CLAIM_ALL ((1u << DR_REGIME_COUNT) - 1u)

typedef int (*deltarule_fn)(const deltarule_problem *p, const deltarule_opts *o);

typedef struct {
    const char *name;
    const char *summary;
    deltarule_fn run;
    deltarule_opts defaults;
    unsigned claims;    /* DR_CLAIM bits: regimes this implementation holds */
    double claim_tol;   /* normwise relative error it promises on them */
    int (*available)(void); /* NULL: runs on every CPU */
    unsigned solvers;   /* DR_SOLVER_BIT(s) for each solver option it accepts; 0: none */
} deltarule_impl;
#define DR_SOLVER_BIT(s) (1u << (s))
const char *deltarule_solver_name(int solver);

extern const deltarule_impl deltarule_impls[];
extern const int deltarule_n_impls;

const deltarule_impl *deltarule_find(const char *name);

/* Checks shapes, pointers and (if check_values) that inputs are finite.
 * Returns 0, or -1 with a message in err. */
int deltarule_validate(const deltarule_problem *p, int check_values, char *err, size_t errlen);

/* opts over defaults: each field of opts that is set (non-zero) wins. */
deltarule_opts deltarule_opts_merge(const deltarule_opts *defaults, const deltarule_opts *opts);

/* Validates, merges opts over impl->defaults, runs. 0 on success. */
int deltarule_run(const deltarule_impl *impl, const deltarule_problem *p,
                  const deltarule_opts *opts, char *err, size_t errlen);

/* Effective scale and key-head mapping, shared by every implementation. */
static inline float deltarule_scale(const deltarule_problem *p)
{
    return p->scale != 0.0f ? p->scale : 1.0f / __builtin_sqrtf((float)p->Dk);
}
static inline int deltarule_valid_len(const deltarule_problem *p, int b)
{
    if (!p->seq_len) return p->T;
    int n = p->seq_len[b];
    return n < 0 ? 0 : (n > p->T ? p->T : n);
}

/* Where checkpoint i of sequence b, value head h goes ([Dk, Dv], row-major). */
static inline float *deltarule_checkpoint_state(const deltarule_problem *p, int i, int b, int h)
{
    return p->checkpoint_states + (((size_t)i * p->B + b) * p->Hv + h) * (size_t)p->Dk * p->Dv;
}

/* The crossover's point for p's head shape at `threads` (0: OpenMP's
 * default; the largest measured count not above it, else the smallest):
 * its chunked_from_T (0: chunked never faster), or -1 if x has no point for
 * the shape.  Shared by the forward's and the backward's auto. */
int deltarule_crossover_chunked_from(const deltarule_crossover *x, const deltarule_problem *p, int threads);

/* What `auto` runs for a problem: `chunked` from the crossover's T on for
 * the problem's head shape and thread count, else `recurrent-pairs`. */
const deltarule_impl *deltarule_auto_choice(const deltarule_problem *p, const deltarule_opts *o);

/* The implementations (one file each). */
int deltarule_recurrent(const deltarule_problem *p, const deltarule_opts *o);
int deltarule_chunked(const deltarule_problem *p, const deltarule_opts *o);
int deltarule_neumann(const deltarule_problem *p, const deltarule_opts *o);
int deltarule_auto(const deltarule_problem *p, const deltarule_opts *o);

#endif
