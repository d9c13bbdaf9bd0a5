/* generate.h - greedy generation for a batch of prompts: one prefill call
 * (prompts right-padded to the longest), then one decode call per new token,
 * carrying the DeltaNet states, conv states and KV caches (model/state.h).
 *
 * Greedy = argmax of the logits, ties to the lowest id (torch.argmax).
 * Under tensor parallelism every rank calls it with the same prompts and gets
 * the same tokens; logits, if wanted, are gathered on rank 0 only.
 * Teacher forcing: with forced != NULL, step i+1 is fed forced[b, i] instead
 * of the argmax; tokens[] still receives this path's argmaxes, so a caller
 * compares them with forced[] (docs/model.md §5: validate).
 */
#ifndef Q35LAB_MODEL_GENERATE_H
#define Q35LAB_MODEL_GENERATE_H

#include "model/forward.h"

/* A caller's look at each new token (docs/text.md: streaming, end of
 * sequence): called once per new token of sequence b, in order, i being the
 * token's index among b's outputs.  A nonzero return ends sequence b: no
 * more calls for it, and when every sequence has ended the generation stops
 * before the next forward call.  Under tensor parallelism every rank calls
 * it with the same tokens: it must decide from them alone (print on rank 0
 * only). */
typedef int (*q35_gen_step_fn)(void *ctx, int b, int i, int32_t token);

typedef struct {
    q35_gen_step_fn fn;
    void *ctx;
    int *n_out;           /* [B] or NULL: tokens each sequence produced, through the one that ended it */
} q35_gen_hook;

typedef struct {
    double prefill_s;     /* the prefill call, to the first logits (TTFT without argmax) */
    double decode_s;      /* all decode calls */
    double *step_s;       /* [steps - 1] each decode call's time, if not NULL (caller-owned) */
    long prompt_tokens;   /* valid prompt tokens over the batch */
    int steps_run;        /* steps whose tokens were produced (< steps when a hook ended every sequence) */
    size_t state_bytes;   /* DeltaNet + conv states and KV caches */
} q35_gen_timing;

/* prompts[b] has lens[b] >= 1 tokens; tokens [B, steps]; logits [B, steps, V]
 * or NULL; forced [B, steps] or NULL; tm may be NULL. */
int q35_generate(const q35_model *m, const q35_impls *im, int B, const int32_t *const *prompts, const int *lens,
                 int steps, const int32_t *forced, int32_t *tokens, float *logits, q35_gen_timing *tm, char *err,
                 size_t errlen);

/* The same on a state the caller owns (q35_state_init, or a saved prefix
 * loaded by q35_state_load): each prompt continues its sequence from
 * s->pos[b]; steps may be 0 (the prompts are only consumed, for saving). */
int q35_generate_on(const q35_model *m, const q35_impls *im, q35_state *s, const int32_t *const *prompts,
                    const int *lens, int steps, const int32_t *forced, int32_t *tokens, float *logits,
                    q35_gen_timing *tm, char *err, size_t errlen);

/* q35_generate_on with a hook (NULL: none).  Past a sequence's end its
 * tokens[] entries still receive the batch's later greedy tokens (or stay
 * untouched once every sequence has ended); hook->n_out says where each ends. */
int q35_generate_on_hook(const q35_model *m, const q35_impls *im, q35_state *s, const int32_t *const *prompts,
                         const int *lens, int steps, const int32_t *forced, int32_t *tokens, float *logits,
                         q35_gen_timing *tm, const q35_gen_hook *hook, char *err, size_t errlen);

/* Index of the largest of n values, the lowest on ties; NaN never wins. */
int q35_argmax(const float *x, int n);
/* The greedy token of one row of logits over this rank's vocabulary slice
 * (forward.h): the argmax over every rank's slice, from one all-reduce of
 * (largest value, its id).  -1 if the all-reduce failed. */
int32_t q35_greedy_token(const q35_model *m, const float *row);
/* rows x [vocab slice] logits of every rank into rows x [vocab] on rank 0
 * (full is not touched on the others); a copy in one process. */
int q35_logits_gather(const q35_model *m, const float *local, int rows, float *full);
/* top-1 minus top-2 value. */
float q35_top2_margin(const float *x, int n);

#endif
