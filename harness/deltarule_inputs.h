/* Deterministic delta-rule problems for checks, tests and benches.
 * Each input regime is a named generator (docs/deltarule.md §6 says what
 * each stresses); the same (shape, regime, seed) always gives the same bytes.
 */
#ifndef Q35_DELTARULE_INPUTS_H
#define Q35_DELTARULE_INPUTS_H

#include "kernels/deltarule/deltarule.h"

typedef struct {
    int B, T, Hk, Hv, Dk, Dv;
    int with_initial_state; /* random initial state instead of zeros */
    int with_seq_len;       /* right-padded batch with random valid lengths */
} dr_shape;

/* A problem that owns its buffers: p points into them.  dr_case_make puts
 * q, k, v and out in transparent huge pages when they are 2 MiB or more (as
 * the model's activations are: 4 KiB pages put each token row of a long
 * sequence on its own page and the benches would time TLB misses a model
 * does not have); *_huge_bytes records that size, 0 meaning malloc. */
typedef struct {
    deltarule_problem p;
    float *q, *k, *v, *g, *beta, *initial_state, *out, *final_state;
    int32_t *seq_len;
    size_t qk_huge_bytes, v_huge_bytes, out_huge_bytes;
} dr_case;

/* A buffer of bytes, in transparent huge pages from 2 MiB up (*huge = bytes, zero-filled),
 * else from malloc (*huge = 0, not filled): what dr_case_make gives q, k, v and out, for every
 * other token-row tensor of the same problem (d_out, the gradients), so the benches time no
 * TLB miss on one tensor that another does not have.  Free with dr_big_free(p, *huge). */
float *dr_big_alloc(size_t bytes, size_t *huge);
void dr_big_free(float *p, size_t huge);

/* Fills c for shape s (the `long` regime raises T to 2048) and regime r.
 * Returns 0, or -1 with a message (bad shape, out of memory). */
int dr_case_make(dr_case *c, const dr_shape *s, int regime, unsigned long seed, char *err, size_t errlen);
void dr_case_free(dr_case *c);
/* A second output/state pair of the same sizes, for comparing two runs. */
int dr_case_alloc_outputs(const dr_case *c, float **out, float **final_state);

const char *dr_regime_name(int regime);
int dr_regime_from_name(const char *name); /* -1 if unknown */

size_t dr_qk_elems(const deltarule_problem *p);
size_t dr_v_elems(const deltarule_problem *p);
size_t dr_gate_elems(const deltarule_problem *p);
size_t dr_state_elems(const deltarule_problem *p);

#endif
