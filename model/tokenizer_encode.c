/* Encoding (tokenizer.h), HF tokenizers' steps for this tokenizer:
 * 1. added tokens are cut out of the raw text (AddedVocabulary: leftmost
 *    match, the longest at that position, content as written);
 * 2. each piece between them is NFC normalized (utf8proc);
 * 3. split by the pattern, matches and the gaps between them each a word
 *    (Split, behavior Isolated; PCRE2, JIT compiled when it can be);
 * 4. each word's bytes go through BPE (tokenizer_bpe.c).  ByteLevel's
 *    byte-to-character mapping is not done: the vocabulary was mapped back
 *    to raw bytes at load, which gives the same ids without the work. */
#include "model/tokenizer_internal.h"
#include "model/utf8.h"
#include "common/errmsg.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* The first added token at or after from (leftmost, then longest): its
 * index in t->added and *at, or -1. */
static int find_added(const q35_tokenizer *t, const char *text, size_t len, size_t from, size_t *at)
{
    for (size_t i = from; i < len; i++) {
        if (!t->added_first[(uint8_t)text[i]]) continue;
        for (int k = 0; k < t->n_added; k++) { /* longest first */
            const q35_added_token *a = &t->added[k];
            if (a->len <= len - i && a->content[0] == text[i] && !memcmp(a->content, text + i, a->len)) {
                *at = i;
                return k;
            }
        }
    }
    return -1;
}

/* NFC changes nothing in text whose code points are all below U+0300 (the
 * first combining mark; every character before it is NFC_Quick_Check=Yes
 * with combining class 0).  Such text has no byte >= 0xCC: a lead byte of
 * U+0300 or above is 0xCC or more, and continuation bytes are below 0xC0. */
static int may_change_under_nfc(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((uint8_t)s[i] >= 0xCC) return 1;
    return 0;
}

static int split_and_bpe(const q35_tokenizer *t, q35_tok_scratch *s, const char *p, size_t n, q35_id_buf *out,
                         char *err, size_t errlen)
{
    pcre2_match_data *md = q35_tok_scratch_match_data(s);
    pcre2_match_context *mc = q35_tok_scratch_match_context(s);
    const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    size_t gap_from = 0, search_from = 0;
    while (search_from <= n) {
        const int rc = t->jit ? pcre2_jit_match(t->re, (PCRE2_SPTR)p, n, search_from, 0, md, mc)
                              : pcre2_match(t->re, (PCRE2_SPTR)p, n, search_from, PCRE2_NO_UTF_CHECK, md, mc);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            q35_errmsg(err, errlen, "tokenizer: the split pattern failed: %s", (const char *)msg);
            return -1;
        }
        const size_t ms = ov[0], me = ov[1];
        if (me == ms) {
            /* An empty match splits nothing: go on one character later. */
            if (ms >= n) break;
            size_t l;
            q35_utf8_next((const unsigned char *)p + ms, n - ms, &l);
            search_from = ms + l;
            continue;
        }
        if (q35_bpe_word(t, s, p + gap_from, ms - gap_from, out) || q35_bpe_word(t, s, p + ms, me - ms, out))
            goto oom;
        gap_from = search_from = me;
    }
    if (q35_bpe_word(t, s, p + gap_from, n - gap_from, out)) goto oom;
    return 0;
oom:
    q35_errmsg(err, errlen, "tokenizer: out of memory");
    return -1;
}

static int encode_piece(const q35_tokenizer *t, q35_tok_scratch *s, const char *p, size_t n, q35_id_buf *out,
                        char *err, size_t errlen)
{
    if (!n) return 0;
    if (!t->nfc || !may_change_under_nfc(p, n)) return split_and_bpe(t, s, p, n, out, err, errlen);
    utf8proc_uint8_t *nfc = NULL;
    const utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)p, (utf8proc_ssize_t)n, &nfc,
                                            UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (m < 0) {
        q35_errmsg(err, errlen, "tokenizer: NFC normalization failed: %s", utf8proc_errmsg(m));
        return -1;
    }
    const int rc = split_and_bpe(t, s, (const char *)nfc, (size_t)m, out, err, errlen);
    free(nfc);
    return rc;
}

int q35_tokenizer_encode(const q35_tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n,
                         size_t *cap, char *err, size_t errlen)
{
    const size_t bad = q35_utf8_first_invalid(text, len);
    if (bad < len) {
        q35_errmsg(err, errlen, "tokenizer: the text is not valid UTF-8 at byte %zu (0x%02x)", bad,
                   (unsigned)(uint8_t)text[bad]);
        return -1;
    }
    /* The tokenizer was allocated mutable; const is the caller's promise not
     * to change what it encodes with.  The shared scratch (word cache, match
     * data) is used by one call at a time; a concurrent call makes its own. */
    q35_tokenizer *mt = (q35_tokenizer *)t;
    q35_tok_scratch *s = NULL;
    int locked = 0;
    if (!pthread_mutex_trylock(&mt->lock)) {
        locked = 1;
        if (!mt->scratch) mt->scratch = q35_tok_scratch_new(t);
        s = mt->scratch;
    }
    const int own = !s;
    if (own) s = q35_tok_scratch_new(t);
    int rc = -1;
    q35_id_buf out = {*ids, 0, *cap};
    if (!s) {
        q35_errmsg(err, errlen, "tokenizer: out of memory");
        goto done;
    }
    size_t pos = 0;
    while (pos <= len) {
        size_t at = len;
        const int k = t->n_added ? find_added(t, text, len, pos, &at) : -1;
        if (encode_piece(t, s, text + pos, at - pos, &out, err, errlen)) goto done;
        if (k < 0) break;
        if (q35_id_push(&out, t->added[k].id)) {
            q35_errmsg(err, errlen, "tokenizer: out of memory");
            goto done;
        }
        pos = at + t->added[k].len;
    }
    rc = 0;
done:
    *ids = out.ids;
    *cap = out.cap;
    *n = rc ? 0 : out.n;
    if (own) q35_tok_scratch_free(s);
    if (locked) pthread_mutex_unlock(&mt->lock);
    return rc;
}
