/* fingerprint.h - what identifies a loaded model, for files that are only
 * meaningful with the weights and shapes they were made with (state files,
 * model/state_file.h).  docs/state-file.md says what is covered and why.
 *
 * Config fingerprint: XXH3-128 of a canonical text of every q35_config field
 * that shapes the computation (q35_config_canonical): sizes, layer types,
 * eps, RoPE, MoE routing, tying.  Not the provenance fields (architecture,
 * model_type, nested, how layer types were given) nor eos_token_id: two
 * folders that compute the same function have the same config fingerprint.
 *
 * Model fingerprint: XXH3-128 over the config fingerprint, then every weight
 * the model holds, in a fixed order: its name, its shape, and a sample of its
 * values widened to f32 (Q35_FP_BLOCKS blocks of Q35_FP_BLOCK consecutive
 * values, evenly spaced from the first value to the last; a tensor of at most
 * Q35_FP_BLOCKS * Q35_FP_BLOCK values is hashed whole).  Values, not bytes:
 * a BF16 checkpoint held as BF16, widened to F32 (force_f32) or read from the
 * file maps has one fingerprint.  Contiguous blocks rather than single values
 * at a stride: a model read through file maps (opts.mmap) faults in a few
 * pages per tensor, not one per sampled value.
 *
 * Functions returning int give 0, or -1 with a one-line message in err.
 */
#ifndef Q35LAB_MODEL_FINGERPRINT_H
#define Q35LAB_MODEL_FINGERPRINT_H

#include "model/config.h"
#include "model/model.h"

#include <stddef.h>
#include <stdint.h>

#define Q35_FP_BLOCK 1024  /* consecutive values per sampled block (4 KiB as f32) */
#define Q35_FP_BLOCKS 32   /* sampled blocks per tensor */

typedef struct {
    uint64_t hi, lo;
} q35_hash128;

/* The canonical text of the fields that shape the computation, one
 * "name=value;" after another (doubles at 17 significant digits, layer types
 * as a string of 'L' / 'F').  Returns the length it needs (like snprintf);
 * buf may be NULL with n = 0. */
size_t q35_config_canonical(const q35_config *c, char *buf, size_t n);
/* XXH3-128 of q35_config_canonical.  -1 only when out of memory. */
int q35_config_fingerprint(const q35_config *c, q35_hash128 *out, char *err, size_t errlen);

/* See above.  Refuses a tensor-parallel rank (m->comm->size > 1): a rank
 * holds a slice, and the slices' fingerprints would not name the model. */
int q35_model_fingerprint(const q35_model *m, q35_hash128 *out, char *err, size_t errlen);

/* 32 lowercase hex digits, hi then lo, and a terminating NUL. */
void q35_hash128_hex(q35_hash128 h, char out[33]);
/* Parses exactly 32 hex digits; 0 or -1. */
int q35_hash128_parse(const char *s, q35_hash128 *out);
static inline int q35_hash128_equal(q35_hash128 a, q35_hash128 b) { return a.hi == b.hi && a.lo == b.lo; }

#endif
