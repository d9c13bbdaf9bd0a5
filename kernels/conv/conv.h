/* The short causal conv family: Gated DeltaNet's depthwise conv1d + SiLU.
 *
 * The math, the state orientation (checked against transformers) and the
 * measured speed are in docs/conv.md.  The executable spec is ref/conv_ref.c;
 * same signature and entry type as these kernels, on the floor above
 * (docs/architecture.md).
 *
 *   x_ext[b] = [state_in[b, :, 0..K-2] (oldest first), x[b, 0..T-1, :]]
 *   y[b,t,c] = silu( sum_{j=0}^{K-1} w[c,j] * x_ext[b, t+j, c] )     (eq. 1)
 *
 * so w[c, K-1] multiplies the current token and w[c, 0] the oldest one.
 */
#ifndef Q35_CONV_H
#define Q35_CONV_H

#include <stddef.h>
#include <stdint.h>

/* The largest kernel width the family accepts (Qwen3.5 uses K = 4). */
#define CONV_K_MAX 64

/* Layouts (row-major, innermost last):
 *   x, y       [B, T, C]     token-major, as in_proj_qkv produces it
 *   weight     [C, K]        conv1d.weight [C, 1, K] with the 1 dropped
 *   state      [B, C, K-1]   the previous K-1 inputs of each channel, oldest first
 * y must not overlap x, weight or the states. */
typedef struct {
    int B, T, C, K;
    const float *x, *weight;
    const float *state_in;   /* NULL: zeros (start of a sequence) */
    float *state_out;        /* NULL: not wanted; may equal state_in (in place) */
    const int32_t *seq_len;  /* NULL: every sequence has T valid tokens (right padding) */
    float *y;                /* required */
    int apply_silu;          /* 1: y = silu(conv) (the model), 0: y = conv; see CONV_PROBLEM_INIT */
    /* Windows at chosen positions (docs/conv.md "Checkpoints"): for i <
     * n_checkpoints, every sequence's window after its token checkpoint_t[i]
     * (strictly ascending, in [0, T)); a sequence with seq_len <=
     * checkpoint_t[i] gets its final window. */
    int n_checkpoints;            /* 0: none */
    const int32_t *checkpoint_t;  /* [n_checkpoints] */
    float *checkpoint_states;     /* [n_checkpoints, B, C, K-1], oldest first */
} conv_problem;

/* The model's default: SiLU on.  `conv_problem p = CONV_PROBLEM_INIT;` then
 * fill in shapes and pointers. */
#define CONV_PROBLEM_INIT {.apply_silu = 1}

/* Tuning knobs; 0 means "the implementation's default". */
typedef struct {
    int threads; /* 0: OpenMP default */
} conv_opts;

typedef int (*conv_fn)(const conv_problem *p, const conv_opts *o);

typedef struct {
    const char *name;
    const char *summary;
    conv_fn run;
    conv_opts defaults;
    double claim_tol;        /* normwise relative error vs ref it promises */
    int (*available)(void);  /* NULL: runs on every CPU */
} conv_impl;

extern const conv_impl conv_impls[];
extern const int conv_n_impls;

const conv_impl *conv_find(const char *name);

/* Checks shapes, pointers, seq_len range, the silu flag and overlaps of y
 * with the inputs; with check_values also that x, weight and state_in are
 * finite.  Returns 0, or -1 with a message in err. */
int conv_validate(const conv_problem *p, int check_values, char *err, size_t errlen);
/* (It also checks the checkpoints: n_checkpoints in [0, T], positions
 * strictly ascending in [0, T), both pointers given when n > 0, and
 * checkpoint_states a buffer of its own.) */

/* Validates, merges opts over impl->defaults, runs.  0 on success. */
int conv_run(const conv_impl *impl, const conv_problem *p, const conv_opts *opts,
             char *err, size_t errlen);

/* Valid tokens of sequence b (seq_len already validated to [0, T]). */
static inline int conv_valid_len(const conv_problem *p, int b)
{
    return p->seq_len ? p->seq_len[b] : p->T;
}

/* Useful flops of a problem: 2*K*C per valid token (the SiLU not counted). */
long long conv_flops(const conv_problem *p);

/* The implementations (one file each). */
int conv_direct(const conv_problem *p, const conv_opts *o);

#endif
