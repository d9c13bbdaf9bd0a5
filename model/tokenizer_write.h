/* tokenizer_write.h - a small tokenizer.json for the tiny presets
 * (`q35lab model init`, docs/text.md §4).
 *
 * The file has the structure of Qwen3.5's own tokenizer.json (NFC
 * normalizer; pre-tokenizer Sequence[Split(Qwen3.5's pattern, Isolated),
 * ByteLevel(use_regex false)]; BPE model; ByteLevel decoder and
 * post-processor), so the one loader (model/tokenizer.h) and Hugging Face
 * `tokenizers` read it, with a vocabulary of exactly vocab_size ids:
 *   ids 0..255             the 256 bytes in GPT-2's byte-to-unicode alphabet,
 *                          in that mapping's order (as Qwen's vocabulary);
 *   ids 256..vocab_size-4  BPE merges learnt here from a short built-in
 *                          English text (most frequent pair first, ties to
 *                          the lowest pair of ids; a pair whose result is
 *                          already a token is passed over), so English words
 *                          take few tokens;
 *   the top three ids      <|endoftext|>, <|im_start|>, <|im_end|>, special
 *                          added tokens, in Qwen's order.
 * The result does not depend on anything but vocab_size. */
#ifndef Q35LAB_MODEL_TOKENIZER_WRITE_H
#define Q35LAB_MODEL_TOKENIZER_WRITE_H

#include <cjson/cJSON.h>
#include <stddef.h>

#define Q35_TINY_TOK_MIN_VOCAB 300 /* 256 bytes + 3 special tokens + a few merges */
#define Q35_TINY_TOK_MAX_VOCAB 1024 /* the built-in text holds merges for this many */

/* Qwen3.5's pre-tokenizer pattern (its tokenizer.json's Split regex). */
extern const char q35_qwen35_split_regex[];

/* The tokenizer.json document for vocab_size ids; NULL with a message if
 * vocab_size is outside [Q35_TINY_TOK_MIN_VOCAB, Q35_TINY_TOK_MAX_VOCAB] or
 * memory runs out.  Free with cJSON_Delete. */
cJSON *q35_tiny_tokenizer_json(int vocab_size, char *err, size_t errlen);

/* The ids of the three special tokens for vocab_size. */
static inline int q35_tiny_tok_endoftext(int vocab_size) { return vocab_size - 3; }
static inline int q35_tiny_tok_im_start(int vocab_size) { return vocab_size - 2; }
static inline int q35_tiny_tok_im_end(int vocab_size) { return vocab_size - 1; }

#endif
