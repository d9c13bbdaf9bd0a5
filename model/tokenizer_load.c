/* Reading tokenizer.json into the tokenizer (tokenizer_internal.h).
 *
 * Only what Qwen3.5's file uses is accepted, each other setting refused with
 * a message naming it, so that a file this code would tokenize differently
 * from HF never loads: normalizer NFC (or none), pre-tokenizer
 * Sequence[Split(pattern, Isolated), ByteLevel(add_prefix_space false,
 * use_regex false)], model BPE without dropout, prefixes or byte fallback,
 * decoder ByteLevel, post-processor ByteLevel (adds nothing) or none, added
 * tokens matched as written (no lstrip / rstrip / single_word, not
 * normalized). */
#include "model/bytes_unicode.h"
#include "model/tokenizer_internal.h"
#include "model/utf8.h"
#include "common/errmsg.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Ids are kept below this: the decode tables are n_ids long. */
#define MAX_IDS (1 << 22)

/* The byte-level string s as raw bytes in out (room for strlen(s) bytes).
 * 1 when every character is in the alphabet, else 0. */
static int bytelevel_to_bytes(const char *s, char *out, size_t *n)
{
    const unsigned char *u = (const unsigned char *)s;
    const size_t len = strlen(s);
    size_t i = 0, o = 0;
    while (i < len) {
        size_t l;
        if (q35_utf8_next(u + i, len - i, &l) != Q35_UTF8_VALID) return 0;
        uint32_t cp = l == 1 ? u[i] : (uint32_t)(u[i] & (0xFF >> (l + 1)));
        for (size_t k = 1; k < l; k++) cp = cp << 6 | (u[i + k] & 0x3F);
        const int b = q35_char_to_byte(cp);
        if (b < 0) return 0;
        out[o++] = (char)b;
        i += l;
    }
    *n = o;
    return 1;
}

static int get_id(const cJSON *v, int32_t *id)
{
    if (!cJSON_IsNumber(v)) return -1;
    const double d = v->valuedouble;
    if (!(d >= 0 && d < MAX_IDS) || d != floor(d)) return -1;
    *id = (int32_t)d;
    return 0;
}

/* 1 if obj has key as JSON true, 0 if false or absent, -1 if something else. */
static int get_flag(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return -1;
    return cJSON_IsTrue(v);
}

static const char *type_of(const cJSON *obj)
{
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(obj, "type");
    return cJSON_IsString(ty) ? ty->valuestring : NULL;
}

static int check_normalizer(q35_tokenizer *t, const cJSON *root, const char *name, char *err, size_t errlen)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (!n || cJSON_IsNull(n)) return 0;
    const char *ty = type_of(n);
    if (ty && !strcmp(ty, "NFC")) return t->nfc = 1, 0;
    if (ty && !strcmp(ty, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        const cJSON *e;
        int ok = cJSON_IsArray(list);
        if (ok) cJSON_ArrayForEach(e, list) ok &= type_of(e) && !strcmp(type_of(e), "NFC");
        if (ok) return t->nfc = cJSON_GetArraySize(list) > 0, 0;
    }
    q35_errmsg(err, errlen, "%s: normalizer %s is not supported (only NFC)", name, ty ? ty : "without a type");
    return -1;
}

/* The Split's pattern (*literal: a "String" pattern rather than a "Regex"). */
static int check_pre_tokenizer(const cJSON *root, const char *name, const char **pattern, int *literal, char *err,
                               size_t errlen)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
    const char *ty = p ? type_of(p) : NULL;
    if (!ty || strcmp(ty, "Sequence") || !cJSON_IsArray(list) || cJSON_GetArraySize(list) != 2) {
        q35_errmsg(err, errlen, "%s: pre_tokenizer must be a Sequence of Split and ByteLevel (got %s)", name,
                   ty ? ty : "none");
        return -1;
    }
    const cJSON *split = cJSON_GetArrayItem(list, 0), *bl = cJSON_GetArrayItem(list, 1);
    const char *st = type_of(split), *bt = type_of(bl);
    if (!st || strcmp(st, "Split") || !bt || strcmp(bt, "ByteLevel")) {
        q35_errmsg(err, errlen, "%s: pre_tokenizer must be a Sequence of Split and ByteLevel (got %s, %s)", name,
                   st ? st : "?", bt ? bt : "?");
        return -1;
    }
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(split, "pattern");
    const cJSON *rx = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
    const cJSON *lit = cJSON_GetObjectItemCaseSensitive(pat, "String");
    const cJSON *beh = cJSON_GetObjectItemCaseSensitive(split, "behavior");
    if (!cJSON_IsString(rx) && !cJSON_IsString(lit)) {
        q35_errmsg(err, errlen, "%s: the Split pre-tokenizer has no pattern (Regex or String)", name);
        return -1;
    }
    if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") || get_flag(split, "invert") != 0) {
        q35_errmsg(err, errlen, "%s: the Split pre-tokenizer must have behavior Isolated and invert false", name);
        return -1;
    }
    if (get_flag(bl, "add_prefix_space") != 0 || get_flag(bl, "use_regex") != 0) {
        q35_errmsg(err, errlen, "%s: the ByteLevel pre-tokenizer must have add_prefix_space and use_regex false",
                   name);
        return -1;
    }
    *literal = !cJSON_IsString(rx);
    *pattern = cJSON_IsString(rx) ? rx->valuestring : lit->valuestring;
    return 0;
}

static int check_steps(const cJSON *root, const char *name, char *err, size_t errlen)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    const char *dt = d ? type_of(d) : NULL;
    if (!dt || strcmp(dt, "ByteLevel")) {
        q35_errmsg(err, errlen, "%s: decoder %s is not supported (only ByteLevel)", name, dt ? dt : "missing");
        return -1;
    }
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    const char *pt = pp && !cJSON_IsNull(pp) ? type_of(pp) : "ByteLevel";
    if (!pt || strcmp(pt, "ByteLevel")) {
        q35_errmsg(err, errlen, "%s: post_processor %s is not supported (only ByteLevel or none)", name,
                   pt ? pt : "without a type");
        return -1;
    }
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(root, "truncation");
    if (tr && !cJSON_IsNull(tr)) {
        q35_errmsg(err, errlen, "%s: truncation is set; q35lab does not truncate (set it to null)", name);
        return -1;
    }
    return 0;
}

static int check_model(q35_tokenizer *t, const cJSON *model, const char *name, char *err, size_t errlen)
{
    if (!cJSON_IsObject(model)) {
        q35_errmsg(err, errlen, "%s: model is missing (or not an object)", name);
        return -1;
    }
    const char *ty = type_of(model);
    if (!ty || strcmp(ty, "BPE")) {
        q35_errmsg(err, errlen, "%s: model %s is not supported (only BPE)", name, ty ? ty : "without a type");
        return -1;
    }
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout)) {
        q35_errmsg(err, errlen, "%s: BPE dropout is not supported (set it to null)", name);
        return -1;
    }
    if (get_flag(model, "byte_fallback") != 0) {
        q35_errmsg(err, errlen, "%s: BPE byte_fallback is not supported (a byte-level BPE needs none)", name);
        return -1;
    }
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(model, affixes[i]);
        if (a && !cJSON_IsNull(a) && !(cJSON_IsString(a) && !a->valuestring[0])) {
            q35_errmsg(err, errlen, "%s: BPE %s is not supported", name, affixes[i]);
            return -1;
        }
    }
    const int im = get_flag(model, "ignore_merges"), fu = get_flag(model, "fuse_unk");
    if (im < 0 || fu < 0) {
        q35_errmsg(err, errlen, "%s: BPE ignore_merges and fuse_unk must be true or false", name);
        return -1;
    }
    t->ignore_merges = im;
    t->fuse_unk = fu;
    return 0;
}

/* One token's decoded bytes: its byte-level string mapped back, or (a
 * character outside the alphabet, as HF's ByteLevel decoder does) its UTF-8 as is. */
static int set_decode(q35_tokenizer *t, int32_t id, const char *content, size_t *blob_cap, size_t *blob_len)
{
    const size_t len = strlen(content);
    /* also when nothing is allocated yet: an empty first token (len 0) would leave dec_blob NULL
     * and NULL + 0 below (a fuzz finding) */
    if (*blob_len + len > *blob_cap || !t->dec_blob) {
        size_t cap = *blob_cap ? *blob_cap * 2 : 1 << 20;
        while (cap < *blob_len + len) cap *= 2;
        if (cap > UINT32_MAX) return -1;
        char *b = realloc(t->dec_blob, cap);
        if (!b) return -1;
        t->dec_blob = b;
        *blob_cap = cap;
    }
    size_t n;
    if (!bytelevel_to_bytes(content, t->dec_blob + *blob_len, &n)) {
        memcpy(t->dec_blob + *blob_len, content, len);
        n = len;
    }
    t->dec_off[id] = (uint32_t)*blob_len;
    t->dec_len[id] = (uint32_t)n;
    *blob_len += n;
    return 0;
}

static int load_added(q35_tokenizer *t, const cJSON *list, const char *name, char *err, size_t errlen)
{
    const cJSON *a;
    int i = 0;
    cJSON_ArrayForEach(a, list)
    {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(a, "content");
        int32_t id;
        if (get_id(cJSON_GetObjectItemCaseSensitive(a, "id"), &id) || !cJSON_IsString(content) ||
            !content->valuestring[0]) {
            q35_errmsg(err, errlen, "%s: added_tokens[%d] needs an id in [0, %d) and a non-empty content", name, i,
                       MAX_IDS);
            return -1;
        }
        static const char *const unsupported[] = {"single_word", "lstrip", "rstrip", "normalized"};
        for (int k = 0; k < 4; k++) {
            const int f = get_flag(a, unsupported[k]);
            if (f) {
                q35_errmsg(err, errlen, "%s: added token '%.64s': %s %s is not supported (only false)", name,
                           content->valuestring, unsupported[k], f < 0 ? "not a boolean" : "true");
                return -1;
            }
        }
        const int special = get_flag(a, "special");
        if (special < 0) {
            q35_errmsg(err, errlen, "%s: added token '%.64s': special is not a boolean", name, content->valuestring);
            return -1;
        }
        q35_added_token *tok = &t->added[t->n_added];
        tok->len = strlen(content->valuestring);
        tok->content = malloc(tok->len + 1);
        if (!tok->content) goto oom;
        memcpy(tok->content, content->valuestring, tok->len + 1);
        tok->id = id;
        t->n_added++;
        t->special[id] = (uint8_t)special;
        t->added_first[(uint8_t)tok->content[0]] = 1;
        if (q35_bytes_map_put(&t->content, tok->content, tok->len, id)) goto oom;
        i++;
    }
    return 0;
oom:
    q35_errmsg(err, errlen, "%s: out of memory", name);
    return -1;
}

static int cmp_added_longest_first(const void *a, const void *b)
{
    const q35_added_token *x = a, *y = b;
    return x->len < y->len ? 1 : x->len > y->len ? -1 : 0;
}

/* merges[i]: "a b" (HF's older form: exactly one space) or ["a", "b"]. */
static int load_merges(q35_tokenizer *t, const cJSON *merges, const char *name, char *err, size_t errlen)
{
    if (q35_u64_map_init(&t->merges, (size_t)cJSON_GetArraySize(merges))) goto oom;
    char *buf = NULL;
    size_t buf_cap = 0;
    uint32_t rank = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, merges)
    {
        const char *l = NULL, *r = NULL;
        size_t ll = 0, rl = 0;
        if (cJSON_IsString(m)) {
            const char *sp = strchr(m->valuestring, ' ');
            if (sp && !strchr(sp + 1, ' ')) l = m->valuestring, ll = (size_t)(sp - l), r = sp + 1, rl = strlen(r);
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
            l = cJSON_GetArrayItem(m, 0)->valuestring, ll = strlen(l);
            r = cJSON_GetArrayItem(m, 1)->valuestring, rl = strlen(r);
        }
        if (!l) {
            free(buf);
            q35_errmsg(err, errlen, "%s: merges[%u] is neither \"a b\" nor [\"a\", \"b\"]", name, rank);
            return -1;
        }
        if (ll + rl > buf_cap) {
            buf_cap = 2 * (ll + rl) + 64;
            char *b = realloc(buf, buf_cap);
            if (!b) {
                free(buf);
                goto oom;
            }
            buf = b;
        }
        memcpy(buf, l, ll);
        memcpy(buf + ll, r, rl);
        const int32_t a = q35_bytes_map_get(&t->content, l, ll), b = q35_bytes_map_get(&t->content, r, rl);
        const int32_t ab = q35_bytes_map_get(&t->content, buf, ll + rl);
        if (a < 0 || b < 0 || ab < 0) {
            free(buf);
            q35_errmsg(err, errlen, "%s: merges[%u]: '%.40s' + '%.40s' %s is not in the vocabulary", name, rank,
                       l, r, a < 0 || b < 0 ? "(a part)" : "(the merged token)");
            return -1;
        }
        /* A pair listed twice keeps its last rank, as HF's map of merges does. */
        if (q35_u64_map_put(&t->merges, (uint64_t)(uint32_t)a << 32 | (uint32_t)b, (uint64_t)rank << 32 | (uint32_t)ab)) {
            free(buf);
            goto oom;
        }
        rank++;
    }
    free(buf);
    return 0;
oom:
    q35_errmsg(err, errlen, "%s: out of memory", name);
    return -1;
}

static int compile_pattern(q35_tokenizer *t, const char *pattern, int literal, const char *name, char *err,
                           size_t errlen)
{
    int code;
    PCRE2_SIZE at;
    /* UTF with Unicode properties for \p{L} and friends, and UCP so that \s
     * and \S mean Unicode white space, as in HF's Oniguruma. */
    const uint32_t opts = literal ? PCRE2_UTF | PCRE2_LITERAL : PCRE2_UTF | PCRE2_UCP;
    t->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opts, &code, &at, NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        q35_errmsg(err, errlen, "%s: the Split pattern does not compile (at offset %zu): %s", name, (size_t)at,
                   (const char *)msg);
        return -1;
    }
    t->jit = pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE) == 0;
    return 0;
}

static int fill(q35_tokenizer *t, const cJSON *root, const char *name, char *err, size_t errlen)
{
    if (!cJSON_IsObject(root)) {
        q35_errmsg(err, errlen, "%s: not a JSON object", name);
        return -1;
    }
    const char *pattern;
    int literal;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (check_normalizer(t, root, name, err, errlen) ||
        check_pre_tokenizer(root, name, &pattern, &literal, err, errlen) || check_steps(root, name, err, errlen) ||
        check_model(t, model, name, err, errlen))
        return -1;
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges) || (added && !cJSON_IsArray(added) && !cJSON_IsNull(added))) {
        q35_errmsg(err, errlen, "%s: model.vocab must be an object, model.merges and added_tokens arrays", name);
        return -1;
    }
    /* First pass: the ids' range. */
    int32_t max_id = -1;
    const cJSON *e;
    size_t n_vocab = 0;
    cJSON_ArrayForEach(e, vocab)
    {
        int32_t id;
        if (get_id(e, &id)) {
            q35_errmsg(err, errlen, "%s: vocab entry '%.64s' has no id in [0, %d)", name, e->string, MAX_IDS);
            return -1;
        }
        max_id = id > max_id ? id : max_id;
        n_vocab++;
    }
    const int n_added = added ? cJSON_GetArraySize(added) : 0;
    cJSON_ArrayForEach(e, added)
    {
        int32_t id;
        if (!get_id(cJSON_GetObjectItemCaseSensitive(e, "id"), &id)) max_id = id > max_id ? id : max_id;
    }
    if (max_id < 0) {
        q35_errmsg(err, errlen, "%s: the vocabulary is empty", name);
        return -1;
    }
    t->n_ids = max_id + 1;
    t->dec_off = malloc((size_t)t->n_ids * sizeof *t->dec_off);
    t->dec_len = malloc((size_t)t->n_ids * sizeof *t->dec_len);
    t->special = calloc((size_t)t->n_ids, 1);
    t->added = calloc((size_t)n_added + 1, sizeof *t->added);
    if (!t->dec_off || !t->dec_len || !t->special || !t->added || q35_bytes_map_init(&t->vocab, n_vocab) ||
        q35_bytes_map_init(&t->content, n_vocab + (size_t)n_added))
        goto oom;
    memset(t->dec_len, 0xff, (size_t)t->n_ids * sizeof *t->dec_len);
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    char *bytes = NULL;
    size_t blob_cap = 0, blob_len = 0;
    cJSON_ArrayForEach(e, vocab)
    {
        int32_t id = 0;
        get_id(e, &id); /* checked in the first pass */
        if (t->dec_len[id] != UINT32_MAX) {
            free(bytes);
            q35_errmsg(err, errlen, "%s: vocab id %d is given to two tokens (the second: '%.64s')", name, id,
                       e->string);
            return -1;
        }
        const size_t len = strlen(e->string);
        char *nb = realloc(bytes, len + 1);
        if (!nb) goto oom_bytes;
        bytes = nb;
        size_t n;
        if (bytelevel_to_bytes(e->string, bytes, &n) && n > 0) {
            if (q35_bytes_map_put(&t->vocab, bytes, n, id)) goto oom_bytes;
            if (n == 1) t->byte_id[(uint8_t)bytes[0]] = id;
        }
        if (q35_bytes_map_put(&t->content, e->string, len, id) || set_decode(t, id, e->string, &blob_cap, &blob_len))
            goto oom_bytes;
    }
    free(bytes);
    if (load_added(t, added, name, err, errlen)) return -1;
    for (int i = 0; i < t->n_added; i++)
        if (set_decode(t, t->added[i].id, t->added[i].content, &blob_cap, &blob_len)) goto oom;
    qsort(t->added, (size_t)t->n_added, sizeof *t->added, cmp_added_longest_first);
    t->unk_id = -1;
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (cJSON_IsString(unk)) {
        t->unk_id = q35_bytes_map_get(&t->content, unk->valuestring, strlen(unk->valuestring));
        if (t->unk_id < 0) {
            q35_errmsg(err, errlen, "%s: unk_token '%.64s' is not in the vocabulary", name, unk->valuestring);
            return -1;
        }
    }
    if (load_merges(t, merges, name, err, errlen)) return -1;
    return compile_pattern(t, pattern, literal, name, err, errlen);
oom_bytes:
    free(bytes);
oom:
    q35_errmsg(err, errlen, "%s: out of memory", name);
    return -1;
}

int q35_tokenizer_fill(q35_tokenizer *t, const char *json, size_t len, const char *name, char *err, size_t errlen)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        const size_t at = end && end >= json ? (size_t)(end - json) : 0;
        q35_errmsg(err, errlen, "%s: not valid JSON (parse error at byte %zu)", name, at);
        return -1;
    }
    const int rc = fill(t, root, name, err, errlen);
    cJSON_Delete(root);
    return rc;
}

void q35_tokenizer_release(q35_tokenizer *t)
{
    q35_bytes_map_free(&t->vocab);
    q35_bytes_map_free(&t->content);
    q35_u64_map_free(&t->merges);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    free(t->dec_off);
    free(t->dec_len);
    free(t->dec_blob);
    free(t->special);
    pcre2_code_free(t->re);
}
