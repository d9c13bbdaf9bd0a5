/* tokenizer.h - Qwen3.5's byte-level BPE tokenizer, read from the
 * tokenizer.json every checkpoint ships (docs/tokenizer.md).
 *
 * Encoding follows Hugging Face `tokenizers` for this tokenizer, step by
 * step: added/special tokens are split out of the text first (matched as HF
 * does: exact content, no normalization); each remaining piece is NFC
 * normalized (utf8proc), split by the pre-tokenizer's regular expression
 * (PCRE2, UTF mode with Unicode properties), mapped byte by byte to the
 * byte-to-unicode alphabet, and merged by BPE ranks.  Decoding maps ids back
 * to bytes; a streaming decoder holds a UTF-8 sequence split across tokens
 * until it completes.
 *
 * Errors follow common/errmsg.h: functions that fail return a negative value
 * or NULL and write one line into (err, errlen).
 */
#ifndef Q35LAB_MODEL_TOKENIZER_H
#define Q35LAB_MODEL_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct q35_tokenizer q35_tokenizer;

/* Reads a tokenizer.json (the file's path).  NULL with a message when the
 * file is missing, is not JSON, or is not a byte-level BPE tokenizer this
 * code understands (the message names what is wrong). */
q35_tokenizer *q35_tokenizer_load(const char *path, char *err, size_t errlen);
/* dir/tokenizer.json, or NULL without a message (*missing = 1) when the file
 * does not exist: a model directory without one still works with ids. */
q35_tokenizer *q35_tokenizer_load_dir(const char *dir, int *missing, char *err, size_t errlen);
void q35_tokenizer_free(q35_tokenizer *t);

/* One more than the largest id (vocabulary and added tokens). */
int32_t q35_tokenizer_n_ids(const q35_tokenizer *t);
/* The id of a token given by its content ("<|im_end|>", or a vocabulary
 * entry in the byte-level alphabet), -1 if there is none. */
int32_t q35_tokenizer_id(const q35_tokenizer *t, const char *content);
/* 1 if id is an added token marked special in tokenizer.json. */
int q35_tokenizer_is_special(const q35_tokenizer *t, int32_t id);

/* Encodes len bytes of UTF-8 text.  *ids is grown with realloc (it may be
 * NULL with *cap 0); *n receives the count.  Returns 0, or -1 with a message
 * for invalid UTF-8 (naming the byte offset) or out of memory. */
int q35_tokenizer_encode(const q35_tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n,
                         size_t *cap, char *err, size_t errlen);

/* Streaming decode: q35_detok_init, then q35_detok_push per id; each push
 * returns the bytes now complete (a valid UTF-8 prefix; an incomplete
 * trailing sequence is held back) in *out, *out_len, valid until the next
 * call; q35_detok_finish flushes what is held (as U+FFFD replacement, HF's
 * behaviour for a byte sequence that never completes). */
typedef struct {
    unsigned char held[8];
    int n_held;
    char *buf;
    size_t cap;
} q35_detok;
void q35_detok_init(q35_detok *d);
/* -1 with a message for an id outside [0, n_ids). */
int q35_detok_push(const q35_tokenizer *t, q35_detok *d, int32_t id, const char **out, size_t *out_len, char *err,
                   size_t errlen);
int q35_detok_finish(q35_detok *d, const char **out, size_t *out_len);
void q35_detok_free(q35_detok *d);

/* Whole-sequence decode into a malloc'ed, NUL-terminated string (*len
 * without the NUL); skip_special drops special added tokens.  NULL with a
 * message for a bad id. */
char *q35_tokenizer_decode(const q35_tokenizer *t, const int32_t *ids, size_t n, int skip_special, size_t *len,
                           char *err, size_t errlen);

#endif
