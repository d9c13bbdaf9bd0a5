/* validate.h - does an implementation combination produce the reference
 * path's tokens?  (docs/model.md §5)
 *
 * The reference path is the reference model (ref/model_ref.c: each prompt
 * alone, token by token, double everywhere).  It generates greedy tokens;
 * each combination then runs the prompts as one right-padded batch through
 * q35_forward, teacher-forced on those tokens, so one early mismatch does not
 * hide the rest, and is compared step by step: argmax equal to the reference
 * token, max |logit - reference logit|.  A golden file dumped from PyTorch
 * (format in docs/model.md) is compared by free generation: tokens exactly,
 * logits within q35_golden_logit_tol().
 */
#ifndef Q35LAB_MODEL_VALIDATE_H
#define Q35LAB_MODEL_VALIDATE_H

#include "model/generate.h"

typedef struct {
    int n;                /* prompts */
    int32_t **prompt;     /* [n][len[i]] */
    int *len;
    int steps;
    /* golden, if loaded: [n][steps] tokens, [n][steps * V] logits (or NULL) */
    int32_t **tokens;
    float **logits;
} q35_prompts;

typedef struct {
    long match, total;       /* greedy steps equal to the reference */
    double max_dlogit;       /* max |logit - reference logit| */
    double max_dlogit_1p;    /* tensor parallelism: max |logit - the same combination's logit in one process| */
    double max_ref_logit;    /* max |reference logit|, the scale of the above */
    double min_margin;       /* smallest top-1/top-2 margin of the reference: over mismatches if any, else all */
    int first_bad_prompt, first_bad_step; /* -1 if none */
} q35_match;

/* The reference run: tokens [n, steps], logits [n, steps, V] (caller frees
 * with free()).  It needs every weight: under tensor parallelism rank 0 runs
 * it on a model loaded whole (docs/tp.md) and broadcasts the tokens. */
int q35_reference_run(const q35_model *m, const q35_prompts *p, int32_t **tokens, float **logits, char *err,
                      size_t errlen);

/* Teacher-forced on ref_tokens; fills r.  On a model spread over ranks,
 * every rank calls it with the reference tokens; ref_logits are read on
 * rank 0 only, which compares and broadcasts r. */
int q35_validate_against(const q35_model *m, const q35_impls *im, const q35_prompts *p, const int32_t *ref_tokens,
                         const float *ref_logits, q35_match *r, char *err, size_t errlen);

/* Under tensor parallelism: q35_validate_against, and also the largest
 * |logit - one_logits| (r->max_dlogit_1p), one_logits [n, steps, V] being the
 * same combination's logits in one process, teacher-forced alike (read on
 * rank 0; q35_forced_logits makes them): what the split and the all-reduces
 * change, the fp32 reduction order alone. */
int q35_validate_against_one_process(const q35_model *m, const q35_impls *im, const q35_prompts *p,
                                     const int32_t *ref_tokens, const float *ref_logits, const float *one_logits,
                                     q35_match *r, char *err, size_t errlen);
/* The logits [n, steps, V] of im on m teacher-forced on tokens [n, steps]
 * (allocated; free()).  For one process: on a model spread over ranks the
 * logits land on rank 0 only. */
int q35_forced_logits(const q35_model *m, const q35_impls *im, const q35_prompts *p, const int32_t *tokens,
                      float **logits, char *err, size_t errlen);

/* Free generation against a golden file's tokens and logits (p->tokens,
 * p->logits); im NULL: the reference model. */
int q35_validate_golden(const q35_model *m, const q35_impls *im, const q35_prompts *p, q35_match *r, char *err,
                        size_t errlen);
/* Allowed max |Δlogit| against a golden file, given the largest |golden logit|. */
double q35_golden_logit_tol(double max_abs_logit);

/* Reads prompt_<i>, tokens_<i> and optional logits_<i> for i = 0, 1, ... until
 * prompt_<i> is absent; checks shapes, dtypes and ids against vocab. */
int q35_prompts_load_golden(const char *path, int vocab, q35_prompts *p, char *err, size_t errlen);
/* The built-in prompts: three, of 3, 8 and 13 ids spread over the vocabulary
 * (steps set by the caller). */
int q35_prompts_default(int vocab, q35_prompts *p, char *err, size_t errlen);
/* A golden file of p's prompts with tokens [n, steps] and logits [n, steps,
 * V] (prompt_<i>, tokens_<i>, logits_<i>: the format ref/hf/dump_model_goldens.py
 * writes and q35_prompts_load_golden reads), written whole or not at all. */
int q35_golden_model_write(const char *path, const q35_prompts *p, int V, const int32_t *tokens, const float *logits,
                           const char *note, char *err, size_t errlen);
/* "1,2,3;4,5" -> prompts (steps set by the caller). */
int q35_prompts_parse(const char *s, int vocab, q35_prompts *p, char *err, size_t errlen);
void q35_prompts_free(q35_prompts *p);

#endif
