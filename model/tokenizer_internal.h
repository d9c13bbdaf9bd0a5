/* tokenizer_internal.h - the tokenizer's state, shared by the files that
 * load it (tokenizer_load.c), run BPE on one word (tokenizer_bpe.c), encode
 * (tokenizer_encode.c) and decode (tokenizer_decode.c).  Not for use
 * outside model/tokenizer*.c. */
#ifndef Q35LAB_MODEL_TOKENIZER_INTERNAL_H
#define Q35LAB_MODEL_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include "model/tokenizer.h"
#include "model/tokenizer_map.h"

#include <pcre2.h>
#include <pthread.h>

/* An added token, matched in the raw text before anything else. */
typedef struct {
    char *content;
    size_t len;
    int32_t id;
} q35_added_token;

/* What one encode call works in.  The tokenizer keeps one behind a mutex;
 * a call that finds it taken makes its own (the API is const and callers
 * may share a tokenizer between threads). */
typedef struct q35_tok_scratch q35_tok_scratch;

struct q35_tokenizer {
    int32_t n_ids;
    /* BPE: the vocabulary by raw bytes (the byte-level strings of
     * tokenizer.json mapped back), merges as (left << 32 | right) ->
     * (rank << 32 | merged id), and each byte's own id (-1: none). */
    q35_bytes_map vocab;
    q35_u64_map merges;
    int32_t byte_id[256];
    int ignore_merges;
    int32_t unk_id; /* -1: none */
    int fuse_unk;
    /* Every token by its content as tokenizer.json writes it (added tokens over vocabulary entries). */
    q35_bytes_map content;
    int nfc;
    q35_added_token *added;
    int n_added;
    uint8_t added_first[256]; /* 1 if an added token begins with this byte */
    /* Decoding: each id's bytes in dec_blob (dec_len UINT32_MAX: no token has this id). */
    uint32_t *dec_off, *dec_len;
    char *dec_blob;
    uint8_t *special;
    /* The pre-tokenizer's split pattern. */
    pcre2_code *re;
    int jit;
    pthread_mutex_t lock;
    q35_tok_scratch *scratch;
};

/* Loads the parsed file's contents into t (zeroed by the caller).  0 or -1 with a message. */
int q35_tokenizer_fill(q35_tokenizer *t, const char *json, size_t len, const char *name, char *err, size_t errlen);
/* Frees what q35_tokenizer_fill allocated (also after a failure part way). */
void q35_tokenizer_release(q35_tokenizer *t);

q35_tok_scratch *q35_tok_scratch_new(const q35_tokenizer *t);
void q35_tok_scratch_free(q35_tok_scratch *s);

/* Appends the ids of one pre-tokenized word (raw bytes) to out.  0 or -1 (out of memory). */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} q35_id_buf;
int q35_id_push(q35_id_buf *b, int32_t id);
int q35_bpe_word(const q35_tokenizer *t, q35_tok_scratch *s, const char *w, size_t n, q35_id_buf *out);
/* The match data and JIT stack the regex runs with. */
pcre2_match_data *q35_tok_scratch_match_data(q35_tok_scratch *s);
pcre2_match_context *q35_tok_scratch_match_context(q35_tok_scratch *s);

#endif
