/* generation_config.h - the end-of-sequence ids generation stops at
 * (docs/text.md §3).
 *
 * Hugging Face's order: DIR/generation_config.json's "eos_token_id" when the
 * file exists and has the field (an integer, an array of integers, or null
 * for none); else config.json's (q35_config.eos_token_id: the decoder
 * section, then the top level, model/config.c).  Every id must lie in
 * [0, vocab_size). */
#ifndef Q35LAB_MODEL_GENERATION_CONFIG_H
#define Q35LAB_MODEL_GENERATION_CONFIG_H

#include "model/config.h"

#include <stddef.h>
#include <stdint.h>

#define Q35_GENCFG_MAX_BYTES (1u << 20) /* generation_config.json larger than 1 MiB is refused */

typedef struct {
    int n;                      /* 0: nothing stops generation early */
    int32_t id[Q35_MAX_EOS];
    const char *source;         /* "generation_config.json", "config.json", or "none" */
} q35_eos;

/* 0, or -1 with one line naming the file and the field (not JSON, not an
 * object, eos_token_id of the wrong type, an id outside the vocabulary, more
 * than Q35_MAX_EOS ids). */
int q35_eos_load(const char *dir, const q35_config *c, q35_eos *e, char *err, size_t errlen);
/* The same from generation_config.json's text (len bytes; json NULL: no
 * such file); name is used in messages. */
int q35_eos_parse(const char *json, size_t len, const char *name, const q35_config *c, q35_eos *e, char *err,
                  size_t errlen);
/* 1 if id is one of e's. */
int q35_eos_has(const q35_eos *e, int32_t id);

#endif
