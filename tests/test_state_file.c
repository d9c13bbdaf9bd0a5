/* test_state_file.c - cmocka suite for model/state_file.h and model/fingerprint.h.
 *
 * Models: random checkpoints written by q35_init_write into a mkdtemp folder
 * (tiny-dense 4 layers bf16 with seed 1, the same with seed 2, tiny-odd-dense
 * seed 1, tiny-moe 4 layers f32).
 *
 * Where expected values come from:
 *   - the state the test computed itself (q35_forward) before saving, and the
 *     tokens it chose: a loaded state must equal it byte for byte;
 *   - a fresh run of prefix + suffix in one state: continuing a loaded state
 *     must choose the same greedy tokens, and the same logits bit for bit as
 *     continuing the state that was saved;
 *   - docs/state-file.md: the metadata keys, the tensor names and shapes and
 *     the checksums are recomputed here with xxHash from the file's bytes;
 *   - damaged files made here (truncated, a byte flipped in the header or
 *     the data, a tensor left out, a forged version) must be refused with a
 *     one-line message naming the cause. */
#include "common/safetensors.h"
#include "harness/impl_select.h"
#include "model/fingerprint.h"
#include "model/forward.h"
#include "model/generate.h"
#include "model/init.h"
#include "model/model.h"
#include "model/state.h"
#include "model/state_file.h"
#include "tests/support/tmpdir.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

static char g_dir[64];       /* everything this suite writes */
static q35_model g_a;        /* tiny-dense, 4 layers, bf16, seed 1 */
static q35_model g_a2;       /* the same checkpoint widened to f32 at load */
static q35_model g_b;        /* the same preset, seed 2: same config, other weights */
static q35_model g_odd;      /* tiny-odd-dense: another config */
static q35_model g_moe;      /* tiny-moe, 4 layers, f32 */
static char g_adir[128];

/* ------------------------------------------------------------------ */
/* Fixtures                                                            */
/* ------------------------------------------------------------------ */

static int write_model(const char *name, const char *preset, uint64_t seed, st_dtype dt, q35_model *m,
                       const q35_load_opts *lo)
{
    char dir[128], err[512];
    snprintf(dir, sizeof dir, "%s/%s", g_dir, name);
    const q35_init_opts o = {.preset = preset, .seed = seed, .dtype = dt, .layers = 4, .threads = 1};
    if (q35_init_write(dir, &o, NULL, err, sizeof err) || q35_model_load(dir, lo, m, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", name, err);
        return -1;
    }
    return 0;
}

/* Removes dir/name's files, then the folder (the model folders inside g_dir). */
static void rm_model_dir(const char *name)
{
    char dir[128];
    snprintf(dir, sizeof dir, "%s/%s", g_dir, name);
    test_tmpdir_remove(dir);
}

static int setup(void **state)
{
    (void)state;
    if (test_tmpdir_make(g_dir, "q35state")) return -1;
    snprintf(g_adir, sizeof g_adir, "%s/a", g_dir);
    const q35_load_opts f32 = {.force_f32 = 1};
    if (write_model("a", "tiny-dense", 1, ST_BF16, &g_a, NULL) || write_model("b", "tiny-dense", 2, ST_BF16, &g_b, NULL) ||
        write_model("odd", "tiny-odd-dense", 1, ST_BF16, &g_odd, NULL) ||
        write_model("moe", "tiny-moe", 1, ST_F32, &g_moe, NULL))
        return -1;
    char err[512];
    if (q35_model_load(g_adir, &f32, &g_a2, err, sizeof err)) {
        fprintf(stderr, "a as f32: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    q35_model_free(&g_a);
    q35_model_free(&g_a2);
    q35_model_free(&g_b);
    q35_model_free(&g_odd);
    q35_model_free(&g_moe);
    rm_model_dir("a");
    rm_model_dir("b");
    rm_model_dir("odd");
    rm_model_dir("moe");
    return test_tmpdir_remove(g_dir);
}

static void path_of(char *buf, const char *name) { test_tmpdir_path(buf, 256, g_dir, name); }

static q35_impls impls1(void)
{
    q35_impls im;
    q35_impls_default(&im);
    im.threads = 1;
    return im;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* A fixed pseudo-random token sequence (an LCG), ids in [0, V). */
static void some_tokens(int32_t *t, int n, uint32_t seed, int V)
{
    uint32_t x = seed;
    for (int i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        t[i] = (int32_t)((x >> 8) % (uint32_t)V);
    }
}

/* Two right-padded sequences of different lengths: tok [2, T]. */
#define LEN0 11
#define LEN1 5
static void prefixes(int32_t tok[2][LEN0], int V)
{
    memset(tok, 0, sizeof(int32_t) * 2 * LEN0);
    some_tokens(tok[0], LEN0, 11, V);
    some_tokens(tok[1], LEN1, 12, V);
}

static void state_ok(q35_state *s, const q35_model *m, int B, int cap)
{
    char err[512];
    if (q35_state_init(s, &m->cfg, B, cap, err, sizeof err)) fail_msg("q35_state_init: %s", err);
}

static void fwd_ok(const q35_model *m, q35_state *s, int T, const int32_t *tok, const int32_t *len, float *lg)
{
    char err[512] = "";
    const q35_impls im = impls1();
    if (q35_forward(m, s, &im, T, tok, len, lg, 0, err, sizeof err)) fail_msg("q35_forward(T=%d): %s", T, err);
}

/* A state after the two prefixes (capacity cap), saved to path. */
static void prefill_and_save(const q35_model *m, q35_state *s, int cap, const char *path, int32_t tok[2][LEN0])
{
    const int V = m->cfg.vocab_size;
    prefixes(tok, V);
    state_ok(s, m, 2, cap);
    const int32_t len[2] = {LEN0, LEN1};
    float *lg = xmalloc(2 * (size_t)V * sizeof(float));
    fwd_ok(m, s, LEN0, &tok[0][0], len, lg);
    free(lg);
    const int32_t *rows[2] = {tok[0], tok[1]};
    char err[512] = "";
    if (q35_state_save(path, m, s, rows, err, sizeof err)) fail_msg("q35_state_save: %s", err);
}

static void load_ok(const char *path, const q35_model *m, int extra, q35_state *s, int32_t **prefix)
{
    char err[512] = "";
    if (q35_state_load(path, m, extra, s, prefix, err, sizeof err)) fail_msg("q35_state_load(%s): %s", path, err);
}

/* The loaded state holds the saved one: pos, the recurrent states, the KV rows [0, pos[b]). */
static void expect_same_state(const q35_model *m, const q35_state *a, const q35_state *b)
{
    const q35_config *c = &m->cfg;
    assert_int_equal(a->B, b->B);
    assert_int_equal(a->n_layers, b->n_layers);
    assert_memory_equal(a->pos, b->pos, (size_t)a->B * sizeof(int32_t));
    const size_t nkv = (size_t)c->num_key_value_heads, hd = (size_t)c->head_dim;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        if (c->layer_types[l] == Q35_LAYER_LINEAR) {
            assert_int_equal(a->conv_elems, b->conv_elems);
            assert_int_equal(a->delta_elems, b->delta_elems);
            assert_memory_equal(a->conv[l], b->conv[l], a->conv_elems * sizeof(float));
            assert_memory_equal(a->delta[l], b->delta[l], a->delta_elems * sizeof(float));
            continue;
        }
        for (int s = 0; s < a->B; s++)
            for (size_t h = 0; h < nkv; h++) {
                const size_t n = (size_t)a->pos[s] * hd * sizeof(float);
                const size_t oa = ((size_t)s * nkv + h) * (size_t)a->capacity * hd;
                const size_t ob = ((size_t)s * nkv + h) * (size_t)b->capacity * hd;
                if (n) {
                    assert_memory_equal(a->k_cache[l] + oa, b->k_cache[l] + ob, n);
                    assert_memory_equal(a->v_cache[l] + oa, b->v_cache[l] + ob, n);
                }
            }
    }
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = xmalloc((size_t)len);
    assert_int_equal(fread(p, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return p;
}

static void write_all(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* Loading path into m fails with a one-line message holding want (NULL: any message). */
static void load_refused(const char *path, const q35_model *m, const char *want, const char *label)
{
    q35_state s;
    int32_t *prefix = (int32_t *)1;
    char err[1024] = "";
    if (q35_state_load(path, m, 4, &s, &prefix, err, sizeof err) == 0) fail_msg("%s: loaded", label);
    assert_null(prefix);
    assert_int_equal(s.B, 0);
    assert_null(s.pos);
    if (!err[0]) fail_msg("%s: no message", label);
    if (strchr(err, '\n')) fail_msg("%s: message of several lines: %s", label, err);
    if (want && !strstr(err, want)) fail_msg("%s: message '%s' does not say '%s'", label, err, want);
}

/* ------------------------------------------------------------------ */
/* Round trip                                                          */
/* ------------------------------------------------------------------ */

static void round_trip(const q35_model *m, const char *name)
{
    char path[256], path2[256];
    path_of(path, name);
    q35_state s, t;
    int32_t tok[2][LEN0];
    prefill_and_save(m, &s, 40, path, tok);
    int32_t *prefix = NULL;
    load_ok(path, m, 7, &t, &prefix);
    assert_int_equal(t.B, 2);
    assert_int_equal(t.pos[0], LEN0);
    assert_int_equal(t.pos[1], LEN1);
    assert_int_equal(t.capacity, LEN0 + 7);
    expect_same_state(m, &s, &t);
    /* [B][max pos]: the tokens given, zero after each sequence's end */
    assert_memory_equal(prefix, tok[0], LEN0 * sizeof(int32_t));
    assert_memory_equal(prefix + LEN0, tok[1], LEN1 * sizeof(int32_t));
    for (int i = LEN1; i < LEN0; i++) assert_int_equal(prefix[LEN0 + i], 0);

    /* the loaded state saved again: the same file, byte for byte */
    path_of(path2, "again.state");
    const int32_t *rows[2] = {prefix, prefix + LEN0};
    char err[512] = "";
    if (q35_state_save(path2, m, &t, rows, err, sizeof err)) fail_msg("save again: %s", err);
    size_t n1, n2;
    unsigned char *f1 = read_all(path, &n1), *f2 = read_all(path2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(f1, f2, n1);
    free(f1);
    free(f2);
    unlink(path2);
    unlink(path);
    free(prefix);
    q35_state_free(&s);
    q35_state_free(&t);
}

static void test_round_trip(void **state)
{
    (void)state;
    round_trip(&g_a, "dense.state");
}

static void test_round_trip_moe(void **state)
{
    (void)state;
    round_trip(&g_moe, "moe.state");
}

/* A sequence that has consumed nothing, and extra capacity 0 with every
 * sequence empty (the state still gets capacity 1). */
static void test_empty_sequences(void **state)
{
    (void)state;
    char path[256], err[512] = "";
    path_of(path, "empty.state");
    q35_state s, t;
    state_ok(&s, &g_a, 3, 8);
    const int32_t tok[3] = {5, 0, 0}, len[3] = {1, 0, 0};
    float *lg = xmalloc(3 * (size_t)g_a.cfg.vocab_size * sizeof(float));
    fwd_ok(&g_a, &s, 1, tok, len, lg);
    free(lg);
    const int32_t *rows[3] = {tok, NULL, NULL};
    if (q35_state_save(path, &g_a, &s, rows, err, sizeof err)) fail_msg("save: %s", err);
    int32_t *prefix;
    load_ok(path, &g_a, 0, &t, &prefix);
    assert_int_equal(t.capacity, 1);
    expect_same_state(&g_a, &s, &t);
    assert_int_equal(prefix[0], 5);
    free(prefix);
    q35_state_free(&t);
    q35_state_free(&s);

    state_ok(&s, &g_a, 1, 4);
    if (q35_state_save(path, &g_a, &s, NULL, err, sizeof err)) fail_msg("save empty: %s", err);
    load_ok(path, &g_a, 0, &t, &prefix);
    assert_int_equal(t.capacity, 1);
    assert_int_equal(t.pos[0], 0);
    free(prefix);
    q35_state_free(&t);
    q35_state_free(&s);
    unlink(path);
}

/* ------------------------------------------------------------------ */
/* Continuing a loaded state                                           */
/* ------------------------------------------------------------------ */

#define SUF 4
#define STEPS 6

/* Suffix (seq_len sl) then STEPS greedy decode steps from s; tokens [STEPS+1][2], logits [(STEPS+1) * 2 * V]. */
static void continue_greedy(const q35_model *m, q35_state *s, const int32_t suf[2][SUF], const int32_t sl[2],
                            int32_t *tokens, float *logits)
{
    const int V = m->cfg.vocab_size;
    fwd_ok(m, s, SUF, &suf[0][0], sl, logits);
    for (int k = 0;; k++) {
        for (int b = 0; b < 2; b++) tokens[k * 2 + b] = q35_argmax(logits + ((size_t)k * 2 + b) * V, V);
        if (k == STEPS) break;
        fwd_ok(m, s, 1, tokens + k * 2, NULL, logits + (size_t)(k + 1) * 2 * V);
    }
}

static void test_continue(void **state)
{
    (void)state;
    const q35_model *m = &g_a;
    const int V = m->cfg.vocab_size;
    char path[256];
    path_of(path, "continue.state");
    int32_t suf[2][SUF] = {{0}}, sl[2] = {3, SUF};
    some_tokens(suf[0], 3, 21, V);
    some_tokens(suf[1], SUF, 22, V);
    const size_t nl = (size_t)(STEPS + 1) * 2 * V;
    float *la = xmalloc(nl * sizeof(float)), *lb = xmalloc(nl * sizeof(float)), *lc = xmalloc(nl * sizeof(float));
    int32_t ta[(STEPS + 1) * 2], tb[(STEPS + 1) * 2], tc[(STEPS + 1) * 2];

    /* a: the state that was saved, continued */
    q35_state sa, sb, sc;
    int32_t tok[2][LEN0];
    prefill_and_save(m, &sa, 64, path, tok);
    continue_greedy(m, &sa, suf, sl, ta, la);

    /* b: the file loaded into a fresh state, continued */
    int32_t *prefix;
    load_ok(path, m, SUF + STEPS + 1, &sb, &prefix);
    continue_greedy(m, &sb, suf, sl, tb, lb);
    assert_memory_equal(ta, tb, sizeof ta);
    assert_memory_equal(la, lb, nl * sizeof(float));

    /* c: prefix + suffix from scratch, in one call */
    int32_t all[2][LEN0 + SUF] = {{0}};
    memcpy(all[0], tok[0], LEN0 * sizeof(int32_t));
    memcpy(all[0] + LEN0, suf[0], 3 * sizeof(int32_t));
    memcpy(all[1], tok[1], LEN1 * sizeof(int32_t));
    memcpy(all[1] + LEN1, suf[1], SUF * sizeof(int32_t));
    const int32_t al[2] = {LEN0 + 3, LEN1 + SUF};
    state_ok(&sc, m, 2, 64);
    fwd_ok(m, &sc, LEN0 + SUF, &all[0][0], al, lc);
    for (int k = 0;; k++) {
        for (int b = 0; b < 2; b++) tc[k * 2 + b] = q35_argmax(lc + ((size_t)k * 2 + b) * V, V);
        if (k == STEPS) break;
        fwd_ok(m, &sc, 1, tc + k * 2, NULL, lc + (size_t)(k + 1) * 2 * V);
    }
    for (int i = 0; i < (STEPS + 1) * 2; i++)
        if (tb[i] != tc[i])
            fail_msg("step %d, sequence %d: %d after loading, %d from scratch", i / 2, i % 2, tb[i], tc[i]);
    /* the greedy tokens are not all one token (the comparison has something to compare) */
    int distinct = 0;
    for (int i = 1; i < (STEPS + 1) * 2; i++) distinct |= tc[i] != tc[0];
    assert_true(distinct);
    free(prefix);
    free(la);
    free(lb);
    free(lc);
    q35_state_free(&sa);
    q35_state_free(&sb);
    q35_state_free(&sc);
    unlink(path);
}

/* ------------------------------------------------------------------ */
/* The format as documented (docs/state-file.md), recomputed here      */
/* ------------------------------------------------------------------ */

static void hex128(XXH128_hash_t h, char out[33])
{
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)h.high64, (unsigned long long)h.low64);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The metadata checksum of docs/state-file.md: the pairs sorted by key, key NUL value NUL, without its own. */
static void meta_checksum(const st_file *f, char out[33])
{
    char **keys = xmalloc((size_t)f->n_meta * sizeof *keys);
    for (int i = 0; i < f->n_meta; i++) keys[i] = f->meta_keys[i];
    qsort(keys, (size_t)f->n_meta, sizeof *keys, cmp_str);
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    for (int i = 0; i < f->n_meta; i++) {
        if (!strcmp(keys[i], "q35lab.metadata_checksum")) continue;
        const char *v = st_meta(f, keys[i]);
        const size_t lk = strlen(keys[i]) + 1, lv = strlen(v) + 1;
        assert_true(n + lk + lv <= cap);
        memcpy(buf + n, keys[i], lk);
        memcpy(buf + n + lk, v, lv);
        n += lk + lv;
    }
    hex128(XXH3_128bits(buf, n), out);
    free(buf);
    free(keys);
}

static void test_documented_format(void **state)
{
    (void)state;
    const q35_model *m = &g_a;
    const q35_config *c = &m->cfg;
    char path[256], err[512], want[33];
    path_of(path, "format.state");
    q35_state s;
    int32_t tok[2][LEN0];
    prefill_and_save(m, &s, 30, path, tok);
    st_file f;
    if (st_open(path, &f, err, sizeof err)) fail_msg("%s", err);
    assert_string_equal(st_meta(&f, "format"), "q35lab-state");
    assert_string_equal(st_meta(&f, "q35lab.version"), "1");
    assert_string_equal(st_meta(&f, "q35lab.batch"), "2");
    assert_string_equal(st_meta(&f, "q35lab.positions"), "11,5");
    assert_string_equal(st_meta(&f, "q35lab.weights_dtype"), "BF16");
    assert_non_null(strstr(st_meta(&f, "q35lab.config"), "hidden_size=128;"));
    assert_non_null(strstr(st_meta(&f, "q35lab.config"), "layer_types=LLLF;"));

    /* tensors in file order, back to back */
    const int64_t C = 2 * 2 * 32 + 4 * 32;
    struct { const char *name; int ndim; int64_t shape[4]; } want_t[] = {
        {"pos", 1, {2}}, {"prefix.0", 1, {LEN0}}, {"prefix.1", 1, {LEN1}},
        {"layers.0.conv", 3, {2, C, 3}}, {"layers.0.delta", 4, {2, 4, 32, 32}},
        {"layers.1.conv", 3, {2, C, 3}}, {"layers.1.delta", 4, {2, 4, 32, 32}},
        {"layers.2.conv", 3, {2, C, 3}}, {"layers.2.delta", 4, {2, 4, 32, 32}},
        {"layers.3.k.0", 3, {2, LEN0, 64}}, {"layers.3.k.1", 3, {2, LEN1, 64}},
        {"layers.3.v.0", 3, {2, LEN0, 64}}, {"layers.3.v.1", 3, {2, LEN1, 64}},
    };
    const int nt = (int)(sizeof want_t / sizeof want_t[0]);
    assert_int_equal(f.n_tensors, nt);
    uint64_t hlen;
    memcpy(&hlen, f.map, 8);
    const unsigned char *data = (const unsigned char *)f.map + 8 + hlen;
    size_t at = 0;
    for (int i = 0; i < nt; i++) {
        const st_tensor *t = &f.tensors[i];
        assert_string_equal(t->name, want_t[i].name);
        assert_int_equal(t->dtype, i < 3 ? ST_I32 : ST_F32);
        assert_int_equal(t->ndim, want_t[i].ndim);
        for (int d = 0; d < t->ndim; d++) assert_int_equal(t->shape[d], want_t[i].shape[d]);
        assert_ptr_equal(t->data, data + at);
        at += t->nbytes;
    }
    assert_int_equal(8 + hlen + at, f.map_len);
    /* the size formula of docs/state-file.md */
    const size_t per_linear = 2 * (size_t)C * 3 * 4 + 2 * 4 * 32 * 32 * 4;
    const size_t per_full = 2 * 2 * 64 * 4 * (size_t)(LEN0 + LEN1);
    assert_int_equal(at, 4 * (2 + LEN0 + LEN1) + 3 * per_linear + per_full);
    (void)c;

    /* values: pos, tokens, a KV row of head 1 of sequence 0 at position 10 */
    int32_t v32[LEN0];
    memcpy(v32, st_find(&f, "pos")->data, 8);
    assert_int_equal(v32[0], LEN0);
    assert_int_equal(v32[1], LEN1);
    memcpy(v32, st_find(&f, "prefix.0")->data, LEN0 * 4);
    assert_memory_equal(v32, tok[0], LEN0 * 4);
    float row[64];
    memcpy(row, (const char *)st_find(&f, "layers.3.k.0")->data + ((size_t)1 * LEN0 + 10) * 64 * 4, sizeof row);
    assert_memory_equal(row, s.k_cache[3] + ((size_t)(0 * 2 + 1) * 30 + 10) * 64, sizeof row);

    /* the checksums */
    hex128(XXH3_128bits(data, at), want);
    assert_string_equal(st_meta(&f, "q35lab.data_checksum"), want);
    meta_checksum(&f, want);
    assert_string_equal(st_meta(&f, "q35lab.metadata_checksum"), want);
    int32_t ph[1 + 2 + LEN0 + LEN1], k = 0;
    ph[k++] = 2;
    ph[k++] = LEN0;
    for (int i = 0; i < LEN0; i++) ph[k++] = tok[0][i];
    ph[k++] = LEN1;
    for (int i = 0; i < LEN1; i++) ph[k++] = tok[1][i];
    hex128(XXH3_128bits(ph, sizeof ph), want);
    assert_string_equal(st_meta(&f, "q35lab.prefix_hash"), want);
    const char *cfg = st_meta(&f, "q35lab.config");
    hex128(XXH3_128bits(cfg, strlen(cfg)), want);
    assert_string_equal(st_meta(&f, "q35lab.config_fingerprint"), want);
    assert_int_equal(strlen(st_meta(&f, "q35lab.model_fingerprint")), 32);
    st_close(&f);
    q35_state_free(&s);
    unlink(path);
}

/* ------------------------------------------------------------------ */
/* Fingerprints                                                        */
/* ------------------------------------------------------------------ */

static void test_fingerprints(void **state)
{
    (void)state;
    q35_hash128 a, a2, b, odd, ca, cb, codd;
    char err[512];
    assert_int_equal(q35_model_fingerprint(&g_a, &a, err, sizeof err), 0);
    assert_int_equal(q35_model_fingerprint(&g_a2, &a2, err, sizeof err), 0);
    assert_int_equal(q35_model_fingerprint(&g_b, &b, err, sizeof err), 0);
    assert_int_equal(q35_model_fingerprint(&g_odd, &odd, err, sizeof err), 0);
    assert_int_equal(q35_config_fingerprint(&g_a.cfg, &ca, err, sizeof err), 0);
    assert_int_equal(q35_config_fingerprint(&g_b.cfg, &cb, err, sizeof err), 0);
    assert_int_equal(q35_config_fingerprint(&g_odd.cfg, &codd, err, sizeof err), 0);
    /* values, not bytes: bf16 held as bf16 or widened to f32 */
    assert_int_equal(g_a.wt, WT_BF16);
    assert_int_equal(g_a2.wt, WT_F32);
    assert_true(q35_hash128_equal(a, a2));
    assert_true(q35_hash128_equal(ca, cb));
    assert_false(q35_hash128_equal(a, b));
    assert_false(q35_hash128_equal(ca, codd));
    assert_false(q35_hash128_equal(a, odd));
    /* every field that shapes the computation moves the config fingerprint; provenance does not */
    q35_config c = g_a.cfg;
    q35_hash128 h;
    c.rope_theta *= 2;
    assert_int_equal(q35_config_fingerprint(&c, &h, err, sizeof err), 0);
    assert_false(q35_hash128_equal(h, ca));
    c = g_a.cfg;
    c.layer_types[1] = Q35_LAYER_FULL;
    assert_int_equal(q35_config_fingerprint(&c, &h, err, sizeof err), 0);
    assert_false(q35_hash128_equal(h, ca));
    c = g_a.cfg;
    c.rms_norm_eps = 1e-5;
    assert_int_equal(q35_config_fingerprint(&c, &h, err, sizeof err), 0);
    assert_false(q35_hash128_equal(h, ca));
    c = g_a.cfg;
    c.nested = !c.nested;
    snprintf(c.architecture, sizeof c.architecture, "Other");
    c.eos_token_id[0] = 7;
    assert_int_equal(q35_config_fingerprint(&c, &h, err, sizeof err), 0);
    assert_true(q35_hash128_equal(h, ca));
    /* hex round trip */
    char hex[33];
    q35_hash128_hex(a, hex);
    assert_int_equal(q35_hash128_parse(hex, &h), 0);
    assert_true(q35_hash128_equal(h, a));
    assert_int_equal(q35_hash128_parse("12", &h), -1);
}

/* ------------------------------------------------------------------ */
/* Refusals                                                            */
/* ------------------------------------------------------------------ */

static void saved_a(char *path, const char *name, q35_state *s, int32_t tok[2][LEN0])
{
    path_of(path, name);
    prefill_and_save(&g_a, s, 30, path, tok);
}

static void test_refuse_other_checkpoint(void **state)
{
    (void)state;
    char path[256];
    q35_state s;
    int32_t tok[2][LEN0];
    saved_a(path, "a.state", &s, tok);
    load_refused(path, &g_b, "saved with other weights", "other checkpoint");
    load_refused(path, &g_odd, "saved for another model config (vocab_size=512 in the file, vocab_size=500", "odd");
    load_refused(path, &g_moe, "saved for another model config", "moe");
    /* the same checkpoint widened to f32: the same model */
    q35_state t;
    int32_t *prefix;
    load_ok(path, &g_a2, 1, &t, &prefix);
    expect_same_state(&g_a, &s, &t);
    free(prefix);
    q35_state_free(&t);
    q35_state_free(&s);
    unlink(path);
}

static void test_refuse_truncated(void **state)
{
    (void)state;
    char path[256], cut[256];
    q35_state s;
    int32_t tok[2][LEN0];
    saved_a(path, "t.state", &s, tok);
    path_of(cut, "cut.state");
    size_t n;
    unsigned char *p = read_all(path, &n);
    const size_t lens[] = {0, 4, 8, 100, n / 2, n - 4, n - 1};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        write_all(cut, p, lens[i]);
        char label[64];
        snprintf(label, sizeof label, "truncated to %zu of %zu bytes", lens[i], n);
        load_refused(cut, &g_a, NULL, label);
    }
    write_all(cut, p, n - 1);
    load_refused(cut, &g_a, "past end of data area", "one byte short");
    /* bytes appended */
    unsigned char *q = xmalloc(n + 4);
    memcpy(q, p, n);
    memset(q + n, 0, 4);
    write_all(cut, q, n + 4);
    load_refused(cut, &g_a, "bytes appended", "4 bytes appended");
    free(q);
    free(p);
    unlink(cut);
    unlink(path);
    q35_state_free(&s);
}

static void test_refuse_flipped_bytes(void **state)
{
    (void)state;
    char path[256], bad[256];
    q35_state s;
    int32_t tok[2][LEN0];
    saved_a(path, "f.state", &s, tok);
    path_of(bad, "bad.state");
    size_t n;
    unsigned char *p = read_all(path, &n);
    uint64_t hlen;
    memcpy(&hlen, p, 8);
    const size_t data0 = 8 + (size_t)hlen;
    /* every byte of the header, each bit 0 and bit 7 in turn */
    for (size_t i = 0; i < data0; i++)
        for (int bit = 0; bit < 8; bit += 7) {
            p[i] ^= (unsigned char)(1u << bit);
            write_all(bad, p, n);
            char label[64];
            snprintf(label, sizeof label, "header byte %zu bit %d", i, bit);
            load_refused(bad, &g_a, NULL, label);
            p[i] ^= (unsigned char)(1u << bit);
        }
    /* bytes of the data: the first, the last, and a stride through every tensor */
    for (size_t i = data0; i < n; i += (i + 1 == n ? 1 : (n - data0) / 97 + 1)) {
        p[i] ^= 0x10;
        write_all(bad, p, n);
        char label[64];
        snprintf(label, sizeof label, "data byte %zu", i - data0);
        load_refused(bad, &g_a, i < data0 + 8 ? NULL : "does not match the data checksum", label);
        p[i] ^= 0x10;
    }
    p[n - 1] ^= 1;
    write_all(bad, p, n);
    load_refused(bad, &g_a, "data does not match the data checksum", "last data byte");
    free(p);
    unlink(bad);
    unlink(path);
    q35_state_free(&s);
}

/* path's tensors except `drop` (NULL: all), plus `extra` if given, metadata
 * copied, with `key` set to `val` and the metadata checksum recomputed as
 * documented when key is given. */
static void rewrite(const char *path, const char *out, const char *drop, const char *extra, const char *key,
                    const char *val)
{
    st_file f;
    char err[512];
    if (st_open(path, &f, err, sizeof err)) fail_msg("%s", err);
    st_writer *w = st_writer_new();
    assert_non_null(w);
    for (int i = 0; i < f.n_tensors; i++) {
        const st_tensor *t = &f.tensors[i];
        if (drop && !strcmp(t->name, drop)) continue;
        assert_int_equal(st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data), 0);
    }
    static const float one = 1;
    if (extra) assert_int_equal(st_writer_add(w, extra, ST_F32, 1, (int64_t[]){1}, &one), 0);
    /* with key: the changed pairs hashed as docs/state-file.md says */
    if (key) {
        for (int i = 0; i < f.n_meta; i++)
            if (!strcmp(f.meta_keys[i], key)) {
                free(f.meta_vals[i]);
                f.meta_vals[i] = strdup(val);
            }
        char sum[33];
        meta_checksum(&f, sum);
        for (int i = 0; i < f.n_meta; i++)
            if (!strcmp(f.meta_keys[i], "q35lab.metadata_checksum")) {
                free(f.meta_vals[i]);
                f.meta_vals[i] = strdup(sum);
            }
    }
    for (int i = 0; i < f.n_meta; i++) assert_int_equal(st_writer_meta(w, f.meta_keys[i], f.meta_vals[i]), 0);
    if (st_writer_write(w, out, err, sizeof err)) fail_msg("%s", err);
    st_writer_free(w);
    st_close(&f);
}

static void test_refuse_missing_or_extra_tensor(void **state)
{
    (void)state;
    char path[256], bad[256];
    q35_state s;
    int32_t tok[2][LEN0];
    saved_a(path, "m.state", &s, tok);
    path_of(bad, "bad.state");
    rewrite(path, bad, NULL, NULL, NULL, NULL);
    q35_state t;
    int32_t *prefix;
    load_ok(bad, &g_a, 1, &t, &prefix); /* the rewriting itself keeps the file loadable */
    free(prefix);
    q35_state_free(&t);
    rewrite(path, bad, "layers.3.v.1", NULL, NULL, NULL);
    load_refused(bad, &g_a, "tensor 'layers.3.v.1' (F32 [2, 5, 64]) is missing", "missing KV");
    rewrite(path, bad, "layers.0.delta", NULL, NULL, NULL);
    load_refused(bad, &g_a, "tensor 'layers.0.delta' (F32 [2, 4, 32, 32]) is missing", "missing delta");
    rewrite(path, bad, "pos", NULL, NULL, NULL);
    load_refused(bad, &g_a, "tensor 'pos' is missing", "missing pos");
    rewrite(path, bad, NULL, "layers.9.conv", NULL, NULL);
    load_refused(bad, &g_a, "unexpected tensor 'layers.9.conv'", "extra tensor");
    unlink(bad);
    unlink(path);
    q35_state_free(&s);
}

static void test_refuse_forged_metadata(void **state)
{
    (void)state;
    char path[256], bad[256];
    q35_state s;
    int32_t tok[2][LEN0];
    saved_a(path, "v.state", &s, tok);
    path_of(bad, "bad.state");
    rewrite(path, bad, NULL, NULL, "q35lab.version", "2");
    load_refused(bad, &g_a, "state file version 2, this build reads version 1", "version 2");
    /* consistent checksums, but the positions of the metadata are not the tensor's */
    rewrite(path, bad, NULL, NULL, "q35lab.positions", "11,6");
    load_refused(bad, &g_a, "its metadata (q35lab.batch 2, q35lab.positions 11,6) disagrees with tensor 'pos'",
                 "positions");
    /* a changed value with the old metadata checksum */
    rewrite(path, bad, NULL, NULL, NULL, NULL);
    size_t n;
    unsigned char *p = read_all(bad, &n);
    unsigned char *at = memmem(p, n, "\"11,5\"", 6);
    assert_non_null(at);
    at[4] = '6';
    write_all(bad, p, n);
    free(p);
    load_refused(bad, &g_a, "metadata does not match the metadata checksum", "metadata changed");
    unlink(bad);
    unlink(path);
    q35_state_free(&s);
}

static void test_refuse_not_a_state_file(void **state)
{
    (void)state;
    char path[256], model[256];
    snprintf(model, sizeof model, "%s/model.safetensors", g_adir);
    load_refused(model, &g_a, "not a q35lab state file", "a checkpoint");
    path_of(path, "text.state");
    write_all(path, "hello, this is text and not safetensors\n", 40);
    load_refused(path, &g_a, NULL, "text");
    load_refused(g_dir, &g_a, NULL, "a folder");
    path_of(path, "absent.state");
    load_refused(path, &g_a, "No such file", "absent");
    path_of(path, "text.state");
    unlink(path);
}

static void test_refuse_tensor_parallel(void **state)
{
    (void)state;
    char path[256], err[512] = "";
    q35_state s;
    int32_t tok[2][LEN0];
    saved_a(path, "tp.state", &s, tok);
    const q35_comm two = {.rank = 1, .size = 2};
    q35_model tp = g_a;
    tp.comm = &two;
    load_refused(path, &tp, "not under tensor parallelism (rank 1 of 2", "load under tp");
    char out[256];
    path_of(out, "tp-out.state");
    const int32_t *rows[2] = {tok[0], tok[1]};
    assert_int_equal(q35_state_save(out, &tp, &s, rows, err, sizeof err), -1);
    assert_non_null(strstr(err, "not under tensor parallelism"));
    assert_int_equal(access(out, F_OK), -1);
    q35_hash128 h;
    assert_int_equal(q35_model_fingerprint(&tp, &h, err, sizeof err), -1);
    assert_non_null(strstr(err, "tensor parallelism"));
    unlink(path);
    q35_state_free(&s);
}

/* Nothing is written on a refused save: no file at path, no temporary beside it. */
static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_refuse_bad_save(void **state)
{
    (void)state;
    char path[256], err[512];
    q35_state s;
    int32_t tok[2][LEN0];
    const int before = entries(g_dir);
    saved_a(path, "s.state", &s, tok);
    unlink(path);
    const int32_t *rows[2] = {tok[0], tok[1]};
    tok[1][2] = 512;
    assert_int_equal(q35_state_save(path, &g_a, &s, rows, err, sizeof err), -1);
    assert_non_null(strstr(err, "prefix token 2 of sequence 1 is 512, outside the vocabulary [0, 512)"));
    tok[1][2] = 0;
    assert_int_equal(q35_state_save(path, &g_a, &s, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "no prefix tokens"));
    s.pos[0] = 31;
    assert_int_equal(q35_state_save(path, &g_a, &s, rows, err, sizeof err), -1);
    assert_non_null(strstr(err, "sequence 0 is at position 31, outside [0, 30]"));
    s.pos[0] = LEN0;
    assert_int_equal(q35_state_save(path, &g_odd, &s, rows, err, sizeof err), -1);
    assert_non_null(strstr(err, "not made for this model's config"));
    /* the same layer count and sizes, other layer types */
    q35_model swapped = g_a;
    swapped.cfg.layer_types[2] = Q35_LAYER_FULL;
    swapped.cfg.layer_types[3] = Q35_LAYER_LINEAR;
    assert_int_equal(q35_state_save(path, &swapped, &s, rows, err, sizeof err), -1);
    assert_non_null(strstr(err, "not made for this model's config"));
    char nodir[300];
    snprintf(nodir, sizeof nodir, "%s/absent/s.state", g_dir);
    assert_int_equal(q35_state_save(nodir, &g_a, &s, rows, err, sizeof err), -1);
    assert_non_null(strstr(err, "absent/s.state"));
    assert_int_equal(entries(g_dir), before);
    /* an existing file is left as it was by a refused save */
    write_all(path, "old", 3);
    tok[0][0] = -1;
    assert_int_equal(q35_state_save(path, &g_a, &s, rows, err, sizeof err), -1);
    size_t n;
    unsigned char *p = read_all(path, &n);
    assert_int_equal(n, 3);
    free(p);
    unlink(path);
    assert_int_equal(entries(g_dir), before);
    q35_state_free(&s);
    /* a negative extra capacity */
    q35_state t;
    int32_t *prefix;
    saved_a(path, "s.state", &s, tok);
    assert_int_equal(q35_state_load(path, &g_a, -1, &t, &prefix, err, sizeof err), -1);
    assert_non_null(strstr(err, "extra capacity -1 is negative"));
    unlink(path);
    q35_state_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_round_trip_moe),
        cmocka_unit_test(test_empty_sequences),
        cmocka_unit_test(test_continue),
        cmocka_unit_test(test_documented_format),
        cmocka_unit_test(test_fingerprints),
        cmocka_unit_test(test_refuse_other_checkpoint),
        cmocka_unit_test(test_refuse_truncated),
        cmocka_unit_test(test_refuse_flipped_bytes),
        cmocka_unit_test(test_refuse_missing_or_extra_tensor),
        cmocka_unit_test(test_refuse_forged_metadata),
        cmocka_unit_test(test_refuse_not_a_state_file),
        cmocka_unit_test(test_refuse_tensor_parallel),
        cmocka_unit_test(test_refuse_bad_save),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
