/* state_file.h - a model state (model/state.h) saved to a file and read back:
 * a prefix computed once, continued many times (`generate --save-state` /
 * `--load-state`).  The format, what is checked and the sizes are in
 * docs/state-file.md.
 *
 * The file is safetensors: pos [B] and each sequence's prefix tokens (I32),
 * every Gated DeltaNet layer's conv window [B, C, K-1] and delta-rule state
 * [B, Hv, Dk, Dv], and every full-attention layer's KV cache rows [0, pos[b])
 * of each sequence (F32), with __metadata__ naming the format and version,
 * the model and config fingerprints (model/fingerprint.h), a hash of the
 * prefix tokens, a checksum of the data area and one of the metadata.
 *
 * Functions give 0, or -1 with a one-line message in err naming the file.
 * A tensor-parallel run (m->comm->size > 1) is refused by both: each rank
 * holds a slice of every state (docs/tp.md), and the file holds one process's.
 */
#ifndef Q35LAB_MODEL_STATE_FILE_H
#define Q35LAB_MODEL_STATE_FILE_H

#include "model/model.h"
#include "model/state.h"

#include <stddef.h>
#include <stdint.h>

#define Q35_STATE_FILE_FORMAT "q35lab-state"
#define Q35_STATE_FILE_VERSION 1

/* Writes s (every sequence's state after its pos[b] tokens) and prefix[b][0 ..
 * pos[b]) (the tokens it consumed; prefix[b] may be NULL when pos[b] = 0) to
 * path, atomically: written beside it under a temporary name, synced, then
 * renamed; on failure nothing is left at path that was not there.  Refuses a
 * pos[b] outside [0, capacity], a token outside the vocabulary, a state not
 * made for m's config. */
int q35_state_save(const char *path, const q35_model *m, const q35_state *s, const int32_t *const *prefix,
                   char *err, size_t errlen);

/* Reads a file q35_state_save wrote for this model (same config fingerprint,
 * same model fingerprint) after checking its format and version, the
 * metadata checksum, every tensor's name, dtype and shape, that nothing else
 * is in it, the data checksum, the prefix hash and the tokens' range.  Then
 * *s = a new state (q35_state_init) for the file's batch with capacity
 * max(pos) + extra_capacity (at least 1), holding the saved state and pos;
 * *prefix = malloc'd [B][max(pos)] row-major tokens (row b valid up to
 * s->pos[b], zero after; at least one element; free() it).  On failure *s is
 * zeroed and *prefix NULL. */
int q35_state_load(const char *path, const q35_model *m, int extra_capacity, q35_state *s, int32_t **prefix,
                   char *err, size_t errlen);

#endif
