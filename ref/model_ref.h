/* model_ref.h - the whole Qwen3.5 decoder as an executable spec.
 *
 * One sequence, one token at a time, every activation and every state in
 * double, each sublayer written out from the equations of docs/model.md
 * (and docs/deltarule.md, docs/attention.md, docs/moe.md) with plain loops.
 * It shares nothing with model/forward.c but the loaded weights, so the glue
 * of the optimized path (head layouts, gate order, RoPE pairing, state
 * carry, padding) is checked against an independent reading of the math:
 * validate's reference tokens come from here (docs/model.md §5).
 */
#ifndef Q35LAB_REF_MODEL_REF_H
#define Q35LAB_REF_MODEL_REF_H

#include "model/model.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const q35_model *m;
    int capacity, pos;
    double **conv;           /* [layer][C * (K-1)]: previous inputs, oldest first */
    double **S;              /* [layer][Hv * Dk * Dv] */
    double **kc, **vc;       /* [layer][nkv * capacity * hd] */
    double *work;            /* scratch for one token */
} q35_model_ref;

int q35_model_ref_init(q35_model_ref *r, const q35_model *m, int capacity, char *err, size_t errlen);
void q35_model_ref_free(q35_model_ref *r);
/* Feeds one token at position r->pos; logits [V] (rounded to float at the end). */
int q35_model_ref_step(q35_model_ref *r, int32_t token, float *logits, char *err, size_t errlen);

#endif
