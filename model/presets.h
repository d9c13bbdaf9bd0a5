/* presets.h - named Qwen3.5 text-decoder shapes for `q35lab model init`.
 *
 * One table row per preset: the tiny synthetic shapes the tests use, and the
 * released Hugging Face checkpoints' text_config values (each row names its
 * sources in presets.c; docs/model-init.md has the table).  The row is a
 * q35_config with the scalar fields set; q35_preset_config() completes it
 * (layer types, derived counts, architecture strings) for a layer count, and
 * the result is what q35_config_load reads back from the folder that
 * `model init` writes.
 */
#ifndef Q35LAB_MODEL_PRESETS_H
#define Q35LAB_MODEL_PRESETS_H

#include "model/config.h"

#include <stddef.h>

#define Q35_PRESET_FULL_ATTN_INTERVAL 4 /* every preset: L L L F, as the released configs */

typedef struct {
    const char *name;     /* "tiny-dense", "qwen3.5-0.8b", ... */
    const char *hf_repo;  /* "Qwen/Qwen3.5-0.8B", or NULL for a synthetic preset */
    const char *summary;
    q35_config c;         /* scalar fields; see q35_preset_config for the rest */
} q35_preset;

extern const q35_preset q35_presets[];
extern const int q35_n_presets;

/* NULL if no preset has this name. */
const q35_preset *q35_preset_find(const char *name);

/* "tiny-dense, tiny-moe, ..." into buf (for error messages). */
void q35_preset_names(char *buf, size_t n);

/* *c = the preset with its first `layers` layers (0 = all of them): layer
 * types by the interval of 4 (layer i is full attention iff (i+1) % 4 == 0),
 * n_full/n_linear, rotary_dim, architecture / model_type of the nested form,
 * and the fields q35_config_load sets when layer_types is given
 * (layer_types_given = 1, full_attention_interval = 0).  -1 with a message if
 * layers is outside [0, the preset's count]. */
int q35_preset_config(const q35_preset *p, int layers, q35_config *c, char *err, size_t errlen);

#endif /* Q35LAB_MODEL_PRESETS_H */
