/* Decoding (tokenizer.h): HF's ByteLevel decoder joins the tokens' bytes
 * (each token's byte-level characters mapped back, tokenizer_load.c) and
 * ends with String::from_utf8_lossy (model/utf8.h).  The streaming decoder
 * gives the same text in pieces: a sequence split across tokens is held
 * until it completes or cannot. */
#include "model/tokenizer_internal.h"
#include "model/utf8.h"
#include "common/errmsg.h"

#include <stdlib.h>
#include <string.h>

static int bad_id(const q35_tokenizer *t, int32_t id, char *err, size_t errlen)
{
    if (id >= 0 && id < t->n_ids && t->dec_len[id] != UINT32_MAX) return 0;
    if (id < 0 || id >= t->n_ids) q35_errmsg(err, errlen, "token id %d is outside [0, %d)", id, t->n_ids);
    else q35_errmsg(err, errlen, "token id %d has no token in tokenizer.json", id);
    return 1;
}

char *q35_tokenizer_decode(const q35_tokenizer *t, const int32_t *ids, size_t n, int skip_special, size_t *len,
                           char *err, size_t errlen)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (bad_id(t, ids[i], err, errlen)) return NULL;
        total += t->dec_len[ids[i]];
    }
    unsigned char *raw = malloc(total + 1);
    char *text = malloc(3 * total + 1); /* one U+FFFD (3 bytes) per byte at worst */
    if (!raw || !text) {
        free(raw);
        free(text);
        q35_errmsg(err, errlen, "decode: out of memory");
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip_special && t->special[ids[i]]) continue;
        memcpy(raw + o, t->dec_blob + t->dec_off[ids[i]], t->dec_len[ids[i]]);
        o += t->dec_len[ids[i]];
    }
    size_t consumed;
    const size_t m = q35_utf8_lossy(raw, o, 1, text, &consumed);
    free(raw);
    text[m] = 0;
    if (len) *len = m;
    return text;
}

void q35_detok_init(q35_detok *d) { memset(d, 0, sizeof *d); }

void q35_detok_free(q35_detok *d)
{
    free(d->buf);
    memset(d, 0, sizeof *d);
}

static int ensure(q35_detok *d, size_t need)
{
    if (need <= d->cap) return 0;
    size_t cap = d->cap ? d->cap : 256;
    while (cap < need) cap *= 2;
    char *b = realloc(d->buf, cap);
    if (!b) return -1;
    d->buf = b;
    d->cap = cap;
    return 0;
}

int q35_detok_push(const q35_tokenizer *t, q35_detok *d, int32_t id, const char **out, size_t *out_len, char *err,
                   size_t errlen)
{
    *out = "";
    *out_len = 0;
    if (bad_id(t, id, err, errlen)) return -1;
    const size_t tl = t->dec_len[id];
    const size_t n = (size_t)d->n_held + tl;
    /* The held bytes and the token's, then the text after them: one buffer, input first. */
    if (ensure(d, n + 3 * n + 1)) {
        q35_errmsg(err, errlen, "decode: out of memory");
        return -1;
    }
    unsigned char *in = (unsigned char *)d->buf;
    memcpy(in, d->held, (size_t)d->n_held);
    memcpy(in + d->n_held, t->dec_blob + t->dec_off[id], tl);
    char *text = d->buf + n;
    size_t consumed;
    const size_t m = q35_utf8_lossy(in, n, 0, text, &consumed);
    /* What is left is a truncated sequence: at most 3 bytes. */
    d->n_held = (int)(n - consumed);
    memmove(d->held, in + consumed, (size_t)d->n_held);
    text[m] = 0;
    *out = text;
    *out_len = m;
    return 0;
}

int q35_detok_finish(q35_detok *d, const char **out, size_t *out_len)
{
    *out = "";
    *out_len = 0;
    if (!d->n_held) return 0;
    if (ensure(d, 4)) return -1;
    /* A sequence that never completed: one U+FFFD, as from_utf8_lossy gives at the end. */
    memcpy(d->buf, "\xEF\xBF\xBD", 4);
    d->n_held = 0;
    *out = d->buf;
    *out_len = 3;
    return 0;
}
