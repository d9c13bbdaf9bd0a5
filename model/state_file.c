/* state_file.c - see state_file.h and docs/state-file.md.
 *
 * One list of tensor descriptors, made from the config, the batch and the
 * positions, drives everything: save adds them to a streaming safetensors
 * writer and produces their bytes twice (once into the data checksum, which
 * the header carries, once into the file); load checks the file's tensors
 * against the same list and copies each back. */
#include "model/state_file.h"

#include "common/errmsg.h"
#include "common/safetensors.h"
#include "model/fingerprint.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#define MAX_BATCH 65536 /* a file claiming more sequences is refused before anything is allocated */

#define META_FORMAT "format"
#define META_VERSION "q35lab.version"
#define META_MODEL_FP "q35lab.model_fingerprint"
#define META_CONFIG_FP "q35lab.config_fingerprint"
#define META_CONFIG "q35lab.config"
#define META_PREFIX_HASH "q35lab.prefix_hash"
#define META_DATA_SUM "q35lab.data_checksum"
#define META_BATCH "q35lab.batch"
#define META_POS "q35lab.positions"
#define META_WDTYPE "q35lab.weights_dtype"
#define META_META_SUM "q35lab.metadata_checksum"

typedef enum { K_POS, K_PREFIX, K_CONV, K_DELTA, K_KEYS, K_VALUES } tkind;

typedef struct {
    char name[48];
    st_dtype dt;
    int ndim;
    int64_t shape[4];
    tkind kind;
    int layer, b;
} tdesc;

/* The tensors of a state file, in file order. */
static tdesc *describe(const q35_config *c, int B, const int32_t *pos, int *n_out)
{
    int n = 1 + B;
    for (int l = 0; l < c->num_hidden_layers; l++) n += c->layer_types[l] == Q35_LAYER_LINEAR ? 2 : 2 * B;
    tdesc *t = calloc((size_t)n, sizeof *t);
    if (!t) return NULL;
    int i = 0;
    t[i++] = (tdesc){"pos", ST_I32, 1, {B}, K_POS, -1, -1};
    for (int b = 0; b < B; b++) {
        t[i] = (tdesc){"", ST_I32, 1, {pos[b]}, K_PREFIX, -1, b};
        snprintf(t[i++].name, sizeof t->name, "prefix.%d", b);
    }
    const int64_t C = q35_conv_channels(c), K1 = c->linear_conv_kernel_dim - 1;
    const int64_t Hv = c->linear_num_value_heads, Dk = c->linear_key_head_dim, Dv = c->linear_value_head_dim;
    const int64_t nkv = c->num_key_value_heads, hd = c->head_dim;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        if (c->layer_types[l] == Q35_LAYER_LINEAR) {
            t[i] = (tdesc){"", ST_F32, 3, {B, C, K1}, K_CONV, l, -1};
            snprintf(t[i++].name, sizeof t->name, "layers.%d.conv", l);
            t[i] = (tdesc){"", ST_F32, 4, {B, Hv, Dk, Dv}, K_DELTA, l, -1};
            snprintf(t[i++].name, sizeof t->name, "layers.%d.delta", l);
        } else {
            for (int kv = 0; kv < 2; kv++)
                for (int b = 0; b < B; b++) {
                    t[i] = (tdesc){"", ST_F32, 3, {nkv, pos[b], hd}, kv ? K_VALUES : K_KEYS, l, b};
                    snprintf(t[i++].name, sizeof t->name, "layers.%d.%s.%d", l, kv ? "v" : "k", b);
                }
        }
    }
    *n_out = n;
    return t;
}

static size_t tensor_bytes(const tdesc *t)
{
    size_t n = 4;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

/* ------------------------------------------------------------------ */
/* The bytes of a tensor, from a state                                 */
/* ------------------------------------------------------------------ */

typedef int (*emit_fn)(void *ctx, const void *p, size_t len);

static int emit(const tdesc *t, const q35_config *c, const q35_state *s, const int32_t *const *prefix, emit_fn fn,
                void *ctx)
{
    const int B = s->B;
    switch (t->kind) {
    case K_POS: return fn(ctx, s->pos, (size_t)B * sizeof(int32_t));
    case K_PREFIX: return s->pos[t->b] ? fn(ctx, prefix[t->b], (size_t)s->pos[t->b] * sizeof(int32_t)) : 0;
    case K_CONV: return fn(ctx, s->conv[t->layer], s->conv_elems * sizeof(float));
    case K_DELTA: return fn(ctx, s->delta[t->layer], s->delta_elems * sizeof(float));
    case K_KEYS:
    case K_VALUES: {
        const float *cache = t->kind == K_KEYS ? s->k_cache[t->layer] : s->v_cache[t->layer];
        const size_t nkv = (size_t)c->num_key_value_heads, hd = (size_t)c->head_dim, cap = (size_t)s->capacity;
        const size_t rows = (size_t)s->pos[t->b];
        for (size_t h = 0; h < nkv && rows; h++)
            if (fn(ctx, cache + (((size_t)t->b * nkv + h) * cap) * hd, rows * hd * sizeof(float))) return -1;
        return 0;
    }
    }
    return -1;
}

/* The reverse: a tensor's bytes (src, as many as tensor_bytes) into the state. */
static void take(const tdesc *t, const q35_config *c, q35_state *s, int32_t *prefix, int maxpos, const char *src)
{
    switch (t->kind) {
    case K_POS: memcpy(s->pos, src, (size_t)s->B * sizeof(int32_t)); break;
    case K_PREFIX: memcpy(prefix + (size_t)t->b * (size_t)maxpos, src, tensor_bytes(t)); break;
    case K_CONV: memcpy(s->conv[t->layer], src, s->conv_elems * sizeof(float)); break;
    case K_DELTA: memcpy(s->delta[t->layer], src, s->delta_elems * sizeof(float)); break;
    case K_KEYS:
    case K_VALUES: {
        float *cache = t->kind == K_KEYS ? s->k_cache[t->layer] : s->v_cache[t->layer];
        const size_t nkv = (size_t)c->num_key_value_heads, hd = (size_t)c->head_dim, cap = (size_t)s->capacity;
        const size_t rows = (size_t)t->shape[1];
        for (size_t h = 0; h < nkv; h++)
            memcpy(cache + (((size_t)t->b * nkv + h) * cap) * hd, src + h * rows * hd * sizeof(float),
                   rows * hd * sizeof(float));
        break;
    }
    }
}

static int hash_emit(void *ctx, const void *p, size_t len)
{
    return XXH3_128bits_update((XXH3_state_t *)ctx, p, len) == XXH_OK ? 0 : -1;
}

/* B, then each sequence's length and tokens, as int32. */
static q35_hash128 prefix_hash(int B, const int32_t *pos, const int32_t *const *rows)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st) return (q35_hash128){0, 0};
    XXH3_128bits_reset(st);
    const int32_t b32 = B;
    XXH3_128bits_update(st, &b32, sizeof b32);
    for (int b = 0; b < B; b++) {
        XXH3_128bits_update(st, &pos[b], sizeof pos[b]);
        if (pos[b]) XXH3_128bits_update(st, rows[b], (size_t)pos[b] * sizeof(int32_t));
    }
    const XXH128_hash_t h = XXH3_128bits_digest(st);
    XXH3_freeState(st);
    return (q35_hash128){h.high64, h.low64};
}

/* ------------------------------------------------------------------ */
/* Metadata and its checksum                                           */
/* ------------------------------------------------------------------ */

typedef struct {
    const char *key, *val;
} kv;

static int cmp_kv(const void *a, const void *b) { return strcmp(((const kv *)a)->key, ((const kv *)b)->key); }

/* XXH3-128 over the pairs sorted by key, each as key NUL value NUL;
 * META_META_SUM itself is left out.  Sorts p. */
static q35_hash128 meta_hash(kv *p, int n)
{
    qsort(p, (size_t)n, sizeof *p, cmp_kv);
    XXH3_state_t *st = XXH3_createState();
    if (!st) return (q35_hash128){0, 0};
    XXH3_128bits_reset(st);
    for (int i = 0; i < n; i++) {
        if (!strcmp(p[i].key, META_META_SUM)) continue;
        XXH3_128bits_update(st, p[i].key, strlen(p[i].key) + 1);
        XXH3_128bits_update(st, p[i].val, strlen(p[i].val) + 1);
    }
    const XXH128_hash_t h = XXH3_128bits_digest(st);
    XXH3_freeState(st);
    return (q35_hash128){h.high64, h.low64};
}

/* "5,3,..." */
static char *positions_text(int B, const int32_t *pos)
{
    const size_t n = (size_t)B * 12 + 1;
    char *s = malloc(n);
    if (!s) return NULL;
    size_t at = 0;
    s[0] = 0;
    for (int b = 0; b < B; b++) at += (size_t)snprintf(s + at, n - at, "%s%d", b ? "," : "", pos[b]);
    return s;
}

static int refuse_tp(const char *what, const char *path, const q35_model *m, char *err, size_t errlen)
{
    if (m->comm && m->comm->size > 1) {
        q35_errmsg(err, errlen,
                   "%s %s: not under tensor parallelism (rank %d of %d holds a slice of every state; state files "
                   "hold one process's, docs/state-file.md)",
                   what, path, m->comm->rank, m->comm->size);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Save                                                                */
/* ------------------------------------------------------------------ */

typedef struct {
    const tdesc *t;
    const q35_config *c;
    const q35_state *s;
    const int32_t *const *prefix;
} fill_ctx;

static int sink_emit(void *ctx, const void *p, size_t len) { return st_sink_write((st_sink *)ctx, p, len); }

static int fill(void *ctx, int index, const char *name, st_sink *sink, char *err, size_t errlen)
{
    (void)name;
    (void)err;
    (void)errlen;
    const fill_ctx *f = ctx;
    return emit(&f->t[index], f->c, f->s, f->prefix, sink_emit, sink);
}

/* The renamed file's bytes and its folder entry to the disk. */
static int sync_file(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        q35_errmsg(err, errlen, "state file %s: sync failed: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    char *dir = strdup(path);
    if (!dir) return 0;
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = 0;
    else if (slash) *slash = 0;
    else strcpy(dir, ".");
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd); /* some file systems refuse a directory sync: the data is synced either way */
        close(fd);
    }
    free(dir);
    return 0;
}

int q35_state_save(const char *path, const q35_model *m, const q35_state *s, const int32_t *const *prefix,
                   char *err, size_t errlen)
{
    if (refuse_tp("cannot save state to", path, m, err, errlen)) return -1;
    const q35_config *c = &m->cfg;
    if (s->n_layers != c->num_hidden_layers || s->B < 1 || s->B > MAX_BATCH) {
        q35_errmsg(err, errlen, "cannot save state to %s: the state (%d layers, batch %d) is not one of this model's "
                   "(%d layers, batch 1..%d)", path, s->n_layers, s->B, c->num_hidden_layers, MAX_BATCH);
        return -1;
    }
    const size_t conv = (size_t)s->B * q35_conv_channels(c) * (size_t)(c->linear_conv_kernel_dim - 1);
    const size_t delta = (size_t)s->B * c->linear_num_value_heads * (size_t)c->linear_key_head_dim *
                         (size_t)c->linear_value_head_dim;
    int layers_agree = 1;
    for (int l = 0; l < c->num_hidden_layers; l++)
        layers_agree &= c->layer_types[l] == Q35_LAYER_LINEAR ? s->conv[l] && s->delta[l] && !s->k_cache[l]
                                                               : s->k_cache[l] && s->v_cache[l] && !s->conv[l];
    if (!layers_agree || (c->n_linear_layers && (s->conv_elems != conv || s->delta_elems != delta))) {
        q35_errmsg(err, errlen, "cannot save state to %s: the state was not made for this model's config", path);
        return -1;
    }
    for (int b = 0; b < s->B; b++) {
        if (s->pos[b] < 0 || s->pos[b] > s->capacity) {
            q35_errmsg(err, errlen, "cannot save state to %s: sequence %d is at position %d, outside [0, %d]", path,
                       b, s->pos[b], s->capacity);
            return -1;
        }
        if (s->pos[b] && (!prefix || !prefix[b])) {
            q35_errmsg(err, errlen, "cannot save state to %s: sequence %d has consumed %d tokens but no prefix "
                       "tokens were given", path, b, s->pos[b]);
            return -1;
        }
        for (int i = 0; i < s->pos[b]; i++)
            if (prefix[b][i] < 0 || prefix[b][i] >= c->vocab_size) {
                q35_errmsg(err, errlen, "cannot save state to %s: prefix token %d of sequence %d is %d, outside "
                           "the vocabulary [0, %d)", path, i, b, prefix[b][i], c->vocab_size);
                return -1;
            }
    }

    int rc = -1, nt = 0;
    tdesc *t = NULL;
    st_writer *w = NULL;
    XXH3_state_t *hs = NULL;
    char *config = NULL, *positions = NULL;
    q35_hash128 mfp, cfp;
    if (q35_model_fingerprint(m, &mfp, err, errlen) || q35_config_fingerprint(c, &cfp, err, errlen)) goto out;
    const size_t clen = q35_config_canonical(c, NULL, 0) + 1;
    config = malloc(clen);
    positions = positions_text(s->B, s->pos);
    t = describe(c, s->B, s->pos, &nt);
    w = st_writer_new();
    hs = XXH3_createState();
    if (!config || !positions || !t || !w || !hs) {
        q35_errmsg(err, errlen, "cannot save state to %s: out of memory", path);
        goto out;
    }
    q35_config_canonical(c, config, clen);

    /* the data checksum first: the header that carries it is written before the data */
    XXH3_128bits_reset(hs);
    for (int i = 0; i < nt; i++)
        if (emit(&t[i], c, s, prefix, hash_emit, hs)) {
            q35_errmsg(err, errlen, "cannot save state to %s: hashing failed", path);
            goto out;
        }
    const XXH128_hash_t dsum = XXH3_128bits_digest(hs);

    char mfp_s[33], cfp_s[33], ph_s[33], ds_s[33], ms_s[33], ver[16], batch[16];
    q35_hash128_hex(mfp, mfp_s);
    q35_hash128_hex(cfp, cfp_s);
    q35_hash128_hex(prefix_hash(s->B, s->pos, prefix), ph_s);
    q35_hash128_hex((q35_hash128){dsum.high64, dsum.low64}, ds_s);
    snprintf(ver, sizeof ver, "%d", Q35_STATE_FILE_VERSION);
    snprintf(batch, sizeof batch, "%d", s->B);
    kv meta[] = {
        {META_FORMAT, Q35_STATE_FILE_FORMAT},
        {META_VERSION, ver},
        {META_MODEL_FP, mfp_s},
        {META_CONFIG_FP, cfp_s},
        {META_CONFIG, config},
        {META_PREFIX_HASH, ph_s},
        {META_DATA_SUM, ds_s},
        {META_BATCH, batch},
        {META_POS, positions},
        {META_WDTYPE, m->wt == WT_BF16 ? "BF16" : "F32"},
    };
    const int nm = (int)(sizeof meta / sizeof meta[0]);
    q35_hash128_hex(meta_hash(meta, nm), ms_s);
    for (int i = 0; i < nm; i++)
        if (st_writer_meta(w, meta[i].key, meta[i].val)) goto writer_error;
    if (st_writer_meta(w, META_META_SUM, ms_s)) goto writer_error;
    for (int i = 0; i < nt; i++)
        if (st_writer_add_deferred(w, t[i].name, t[i].dt, t[i].ndim, t[i].shape)) goto writer_error;

    fill_ctx fc = {t, c, s, prefix};
    char why[768];
    if (st_writer_write_stream(w, path, fill, &fc, why, sizeof why)) {
        q35_errmsg(err, errlen, "cannot save state: %s", why);
        goto out;
    }
    if (sync_file(path, err, errlen)) {
        unlink(path);
        goto out;
    }
    rc = 0;
    goto out;
writer_error:
    q35_errmsg(err, errlen, "cannot save state to %s: %s", path, st_writer_error(w));
out:
    XXH3_freeState(hs);
    st_writer_free(w);
    free(t);
    free(config);
    free(positions);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Load                                                                */
/* ------------------------------------------------------------------ */

/* The first "name=value" of a that differs in b, as "name=A in the file, name=B here". */
static void config_difference(const char *file, const char *here, char *out, size_t n)
{
    const char *a = file, *b = here;
    while (*a || *b) {
        const size_t la = strcspn(a, ";"), lb = strcspn(b, ";");
        if (la != lb || memcmp(a, b, la)) {
            snprintf(out, n, "%.*s in the file, %.*s in this model", (int)(la < 200 ? la : 200), a,
                     (int)(lb < 200 ? lb : 200), b);
            return;
        }
        a += la + (a[la] == ';');
        b += lb + (b[lb] == ';');
    }
    snprintf(out, n, "the config texts agree, their fingerprints do not");
}

static int dims_equal(const st_tensor *f, const tdesc *t)
{
    if (f->ndim != t->ndim) return 0;
    for (int i = 0; i < t->ndim; i++)
        if (f->shape[i] != t->shape[i]) return 0;
    return 1;
}

static void dims_text(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t at = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (at < n) snprintf(buf + at, n - at, "]");
}

static int meta_hex(const st_file *f, const char *key, q35_hash128 *out)
{
    const char *v = st_meta(f, key);
    return v && !q35_hash128_parse(v, out) ? 0 : -1;
}

int q35_state_load(const char *path, const q35_model *m, int extra_capacity, q35_state *s, int32_t **prefix,
                   char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    *prefix = NULL;
    if (refuse_tp("cannot load state from", path, m, err, errlen)) return -1;
    if (extra_capacity < 0) {
        q35_errmsg(err, errlen, "cannot load state from %s: extra capacity %d is negative", path, extra_capacity);
        return -1;
    }
    const q35_config *c = &m->cfg;
    st_file f;
    char why[768];
    if (st_open(path, &f, why, sizeof why)) {
        q35_errmsg(err, errlen, "cannot load state: %s", why);
        return -1;
    }
    int rc = -1, nt = 0;
    tdesc *t = NULL;
    int32_t *pos = NULL, *rows = NULL;
    kv *meta = NULL;
    char *config = NULL;
#define FAIL(...)                                                                \
    do {                                                                         \
        char msg_[1024];                                                         \
        snprintf(msg_, sizeof msg_, __VA_ARGS__);                                \
        q35_errmsg(err, errlen, "cannot load state from %s: %s", path, msg_);    \
        goto out;                                                                \
    } while (0)

    /* what the file is, and for what */
    const char *fmt = st_meta(&f, META_FORMAT);
    if (!fmt || strcmp(fmt, Q35_STATE_FILE_FORMAT))
        FAIL("not a q35lab state file (its __metadata__ has no \"%s\": \"%s\")", META_FORMAT, Q35_STATE_FILE_FORMAT);
    const char *ver = st_meta(&f, META_VERSION);
    char want_ver[16];
    snprintf(want_ver, sizeof want_ver, "%d", Q35_STATE_FILE_VERSION);
    if (!ver || strcmp(ver, want_ver))
        FAIL("state file version %.20s, this build reads version %s", ver ? ver : "(none)", want_ver);
    meta = malloc((size_t)(f.n_meta ? f.n_meta : 1) * sizeof *meta);
    if (!meta) FAIL("out of memory");
    for (int i = 0; i < f.n_meta; i++) meta[i] = (kv){f.meta_keys[i], f.meta_vals[i]};
    q35_hash128 msum;
    if (meta_hex(&f, META_META_SUM, &msum)) FAIL("no valid \"%s\" in its metadata", META_META_SUM);
    if (!q35_hash128_equal(meta_hash(meta, f.n_meta), msum))
        FAIL("its metadata does not match the metadata checksum (the header is damaged)");
    q35_hash128 cfp_file, cfp, mfp_file, mfp, ph_file, dsum;
    if (meta_hex(&f, META_CONFIG_FP, &cfp_file) || meta_hex(&f, META_MODEL_FP, &mfp_file) ||
        meta_hex(&f, META_PREFIX_HASH, &ph_file) || meta_hex(&f, META_DATA_SUM, &dsum) || !st_meta(&f, META_CONFIG))
        FAIL("its metadata lacks a fingerprint, a checksum or the config");
    if (q35_config_fingerprint(c, &cfp, why, sizeof why)) FAIL("%s", why);
    if (!q35_hash128_equal(cfp, cfp_file)) {
        const size_t clen = q35_config_canonical(c, NULL, 0) + 1;
        if (!(config = malloc(clen))) FAIL("out of memory");
        q35_config_canonical(c, config, clen);
        config_difference(st_meta(&f, META_CONFIG), config, why, sizeof why);
        FAIL("saved for another model config (%s)", why);
    }
    if (q35_model_fingerprint(m, &mfp, why, sizeof why)) FAIL("%s", why);
    if (!q35_hash128_equal(mfp, mfp_file)) {
        char a[33], b[33];
        q35_hash128_hex(mfp_file, a);
        q35_hash128_hex(mfp, b);
        FAIL("saved with other weights (model fingerprint %s in the file, %s for this model; same config)", a, b);
    }

    /* the batch, then every tensor by name, dtype and shape */
    const st_tensor *tp = st_find(&f, "pos");
    if (!tp || tp->dtype != ST_I32 || tp->ndim != 1 || tp->shape[0] < 1 || tp->shape[0] > MAX_BATCH)
        FAIL("tensor 'pos' is missing or not I32 [B] with 1 <= B <= %d", MAX_BATCH);
    const int B = (int)tp->shape[0];
    if (!(pos = malloc((size_t)B * sizeof *pos))) FAIL("out of memory");
    memcpy(pos, tp->data, (size_t)B * sizeof *pos);
    int maxpos = 0;
    for (int b = 0; b < B; b++) {
        if (pos[b] < 0) FAIL("sequence %d is at position %d", b, pos[b]);
        if (pos[b] > maxpos) maxpos = pos[b];
    }
    {
        char *text = positions_text(B, pos), batch[16];
        if (!text) FAIL("out of memory");
        snprintf(batch, sizeof batch, "%d", B);
        const char *mb = st_meta(&f, META_BATCH), *mp = st_meta(&f, META_POS);
        const int agree = mb && mp && !strcmp(mb, batch) && !strcmp(mp, text);
        free(text);
        if (!agree) FAIL("its metadata (%s %.20s, %s %.60s) disagrees with tensor 'pos'", META_BATCH, mb ? mb : "-",
                         META_POS, mp ? mp : "-");
    }
    if (maxpos > INT_MAX - extra_capacity) FAIL("position %d + extra capacity %d overflows", maxpos, extra_capacity);
    if (!(t = describe(c, B, pos, &nt))) FAIL("out of memory");
    size_t total = 0;
    for (int i = 0; i < nt; i++) {
        const st_tensor *ft = st_find(&f, t[i].name);
        char want[96], have[96];
        dims_text(want, sizeof want, t[i].ndim, t[i].shape);
        if (!ft) FAIL("tensor '%s' (%s %s) is missing", t[i].name, st_dtype_name(t[i].dt), want);
        if (ft->dtype != t[i].dt || !dims_equal(ft, &t[i])) {
            dims_text(have, sizeof have, ft->ndim, ft->shape);
            FAIL("tensor '%s' is %s %s, expected %s %s", t[i].name, st_dtype_name(ft->dtype), have,
                 st_dtype_name(t[i].dt), want);
        }
        total += ft->nbytes;
    }
    if (f.n_tensors != nt) {
        for (int i = 0; i < f.n_tensors; i++) {
            int known = 0;
            for (int j = 0; j < nt && !known; j++) known = !strcmp(f.tensors[i].name, t[j].name);
            if (!known) FAIL("unexpected tensor '%.100s'", f.tensors[i].name);
        }
    }

    /* the data area: exactly the tensors, none overlapping, and its checksum */
    uint64_t hlen;
    memcpy(&hlen, f.map, sizeof hlen);
    const char *data = (const char *)f.map + 8 + hlen;
    const size_t data_len = f.map_len - 8 - (size_t)hlen;
    if (data_len != total)
        FAIL("its data area holds %zu bytes, its tensors %zu (%s)", data_len, total,
             data_len > total ? "bytes appended after them" : "damaged");
    if (st_check_no_overlap(&f, path, why, sizeof why)) FAIL("%s", why);
    const XXH128_hash_t h = XXH3_128bits(data, data_len);
    if (h.high64 != dsum.hi || h.low64 != dsum.lo) FAIL("its data does not match the data checksum (the file is damaged)");

    /* the tokens */
    if (!(rows = calloc((size_t)B * (size_t)(maxpos ? maxpos : 1), sizeof *rows))) FAIL("out of memory");
    for (int i = 0; i < nt; i++)
        if (t[i].kind == K_PREFIX) take(&t[i], c, s, rows, maxpos, st_find(&f, t[i].name)->data);
    {
        const int32_t **rp = malloc((size_t)B * sizeof *rp);
        if (!rp) FAIL("out of memory");
        for (int b = 0; b < B; b++) rp[b] = rows + (size_t)b * (size_t)maxpos;
        const q35_hash128 ph = prefix_hash(B, pos, rp);
        free(rp);
        if (!q35_hash128_equal(ph, ph_file)) FAIL("its prefix tokens do not match the prefix hash");
    }
    for (int b = 0; b < B; b++)
        for (int i = 0; i < pos[b]; i++) {
            const int32_t tok = rows[(size_t)b * (size_t)maxpos + (size_t)i];
            if (tok < 0 || tok >= c->vocab_size)
                FAIL("prefix token %d of sequence %d is %d, outside the vocabulary [0, %d)", i, b, tok, c->vocab_size);
        }

    /* the state */
    const int cap = maxpos + extra_capacity > 0 ? maxpos + extra_capacity : 1;
    if (q35_state_init(s, c, B, cap, why, sizeof why)) FAIL("%s", why);
    for (int i = 0; i < nt; i++)
        if (t[i].kind != K_PREFIX) take(&t[i], c, s, rows, maxpos, st_find(&f, t[i].name)->data);
    *prefix = rows;
    rows = NULL;
    rc = 0;
out:
#undef FAIL
    if (rc) q35_state_free(s);
    st_close(&f);
    free(t);
    free(pos);
    free(rows);
    free(meta);
    free(config);
    return rc;
}
