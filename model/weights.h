/* weights.h - an index over a Hugging Face Qwen3.5 model folder's tensors.
 *
 * q35_weights_open maps DIR/model.safetensors if it exists, otherwise every
 * shard named in DIR/model.safetensors.index.json's "weight_map" (each shard
 * opened once with st_open).  Tensors named "model.visual.*" (vision tower)
 * are skipped and counted; "mtp.*" (the multi-token-prediction head,
 * docs/mtp.md) are indexed and counted in n_mtp.
 *
 * Lookups take the canonical decoder name without prefix
 * ("layers.3.linear_attn.in_proj_qkv.weight", "embed_tokens.weight",
 * "norm.weight") and try "model.language_model." + name, then "model." + name;
 * "lm_head.*" and "mtp.*" names are looked up as they are.  See docs/model-loading.md.
 *
 * Functions returning int give 0 on success and -1 on failure with a one-line
 * message in err (err may be NULL).
 */
#ifndef Q35LAB_MODEL_WEIGHTS_H
#define Q35LAB_MODEL_WEIGHTS_H

#include "common/safetensors.h"

#include <stddef.h>
#include <stdint.h>

#define Q35_INDEX_MAX_BYTES (64u << 20) /* model.safetensors.index.json limit */

typedef struct {
    const st_tensor *t;
    int shard;          /* index into shards[] */
} q35_weight_entry;

typedef struct {
    int n_shards;
    st_file *shards;
    char **shard_names;     /* file names inside the folder */
    int sharded;            /* 1 if opened through model.safetensors.index.json */
    int n_entries;          /* tensors indexed (ignored ones excluded) */
    q35_weight_entry *entries; /* sorted by full name */
    int n_ignored_visual;   /* "model.visual.*" tensors skipped */
    int n_mtp;              /* "mtp.*" tensors (indexed: the MTP head) */
    int n_ignored_mtp;      /* always 0 since mtp.* is indexed (docs/mtp.md); kept so older callers compile */
    char *dir;              /* the folder, so that messages name the file at fault */
} q35_weights;

/* On failure *w is zeroed, so q35_weights_close(w) is a harmless no-op. */
int q35_weights_open(const char *dir, q35_weights *w, char *err, size_t errlen);
/* Safe on a zeroed or closed q35_weights; idempotent. */
void q35_weights_close(q35_weights *w);

/* By canonical name (see above); NULL if absent. */
const st_tensor *q35_weights_find(const q35_weights *w, const char *name);
/* By the exact name stored in the file; NULL if absent. */
const st_tensor *q35_weights_find_raw(const q35_weights *w, const char *full_name);

/* buf = the file holding t (DIR/shard); for t == NULL, the file that lists
 * every tensor (DIR/model.safetensors or DIR/model.safetensors.index.json):
 * what a message about that tensor starts with. */
void q35_weights_path_of(const q35_weights *w, const st_tensor *t, char *buf, size_t n);

/* Find NAME and check its rank, its shape (shape[i] < 0 means any; shape may
 * be NULL to check the rank only) and that its dtype is F32, F16 or BF16.
 * The message names the file, the tensor, the expected and actual shapes or
 * dtype. */
int q35_weights_expect(const q35_weights *w, const char *name, int ndim, const int64_t *shape,
                       const st_tensor **out, char *err, size_t errlen);

#endif /* Q35LAB_MODEL_WEIGHTS_H */
