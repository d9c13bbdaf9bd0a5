/* test_text.c - cmocka suite for the text path's model-side pieces
 * (docs/text.md): the end-of-sequence ids (model/generation_config.h), the
 * chat turn (model/chat_template.h), and the per-token hook of plain and
 * speculative generation (model/generate.h, model/speculative.h).
 *
 * Where expected values come from:
 *   - eos: the JSON texts written here and the rule of the header
 *     (generation_config.json first, then config.json's);
 *   - chat turn: the strings of Qwen3.5's chat template (docs/text.md §2),
 *     spelled out here;
 *   - the hook: generation without a hook (the tokens, which the hooked run
 *     must repeat up to each sequence's end), and ends chosen by position,
 *     so no expected token comes from the code under test. */
#include "harness/impl_select.h"
#include "model/chat_template.h"
#include "model/generate.h"
#include "model/generation_config.h"
#include "model/init.h"
#include "model/model.h"
#include "model/speculative.h"
#include "model/state.h"
#include "tests/support/tmpdir.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* ------------------------------------------------------------------ */
/* eos_token_id                                                        */
/* ------------------------------------------------------------------ */

static q35_config cfg_with_eos(int n, const int *ids)
{
    q35_config c;
    memset(&c, 0, sizeof c);
    c.vocab_size = 512;
    c.n_eos = n;
    for (int i = 0; i < n; i++) c.eos_token_id[i] = ids[i];
    return c;
}

static void parse_ok(const char *json, const q35_config *c, int n, const int *want, const char *source)
{
    q35_eos e;
    char err[512];
    if (q35_eos_parse(json, json ? strlen(json) : 0, "g.json", c, &e, err, sizeof err))
        fail_msg("'%s': %s", json ? json : "(no file)", err);
    assert_int_equal(e.n, n);
    for (int i = 0; i < n; i++) assert_int_equal(e.id[i], want[i]);
    assert_string_equal(e.source, source);
}

static void parse_bad(const char *json, const char *want)
{
    const q35_config c = cfg_with_eos(1, (int[]){7});
    q35_eos e;
    char err[512] = "";
    assert_int_equal(q35_eos_parse(json, strlen(json), "g.json", &c, &e, err, sizeof err), -1);
    if (!strstr(err, want)) fail_msg("'%s': message '%s' lacks '%s'", json, err, want);
    assert_non_null(strstr(err, "g.json"));
    assert_null(strchr(err, '\n'));
    assert_int_equal(e.n, 0);
}

static void test_eos_sources(void **s)
{
    (void)s;
    const int cfg_ids[2] = {7, 9};
    const q35_config one = cfg_with_eos(1, cfg_ids), two = cfg_with_eos(2, cfg_ids), none = cfg_with_eos(0, NULL);
    /* generation_config.json wins, as an integer or a list */
    parse_ok("{\"eos_token_id\": 42}", &two, 1, (int[]){42}, "generation_config.json");
    parse_ok("{\"eos_token_id\": [3, 2, 1]}", &one, 3, (int[]){3, 2, 1}, "generation_config.json");
    parse_ok("{\"eos_token_id\": []}", &one, 0, NULL, "generation_config.json");
    parse_ok("{\"eos_token_id\": null}", &two, 0, NULL, "generation_config.json"); /* none, said so */
    /* the field absent, or no file: config.json's */
    parse_ok("{\"bos_token_id\": 1, \"do_sample\": false}", &two, 2, cfg_ids, "config.json");
    parse_ok(NULL, &one, 1, cfg_ids, "config.json");
    parse_ok(NULL, &none, 0, NULL, "none");
    parse_ok("{}", &none, 0, NULL, "none");
    /* ids at the edges of the vocabulary */
    parse_ok("{\"eos_token_id\": [0, 511]}", &one, 2, (int[]){0, 511}, "generation_config.json");
}

static void test_eos_refusals(void **s)
{
    (void)s;
    parse_bad("{\"eos_token_id\": \"<|im_end|>\"}", "'eos_token_id' must be an integer or an array of integers, got string");
    parse_bad("{\"eos_token_id\": [1, \"x\"]}", "'eos_token_id[]' must be an integer, got string");
    parse_bad("{\"eos_token_id\": [1, [2]]}", "got array");
    parse_bad("{\"eos_token_id\": true}", "got bool");
    parse_bad("{\"eos_token_id\": {\"id\": 1}}", "got object");
    parse_bad("{\"eos_token_id\": 1.5}", "must be an integer id in [0, 512), got 1.5");
    parse_bad("{\"eos_token_id\": 512}", "in [0, 512), got 512");
    parse_bad("{\"eos_token_id\": -1}", "got -1");
    parse_bad("{\"eos_token_id\": [1e300]}", "in [0, 512)");
    parse_bad("{\"eos_token_id\": [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]}", "17 entries (at most 16)");
    parse_bad("{\"eos_token_id\": 1", "not valid JSON");
    parse_bad("[1, 2]", "expected a JSON object, got array");
    parse_bad("", "not valid JSON");
}

static void test_eos_load_file(void **s)
{
    (void)s;
    char dir[64], p[128], err[512];
    assert_int_equal(test_tmpdir_make(dir, "q35_eos"), 0);
    const q35_config c = cfg_with_eos(1, (int[]){5});
    q35_eos e;
    assert_int_equal(q35_eos_load(dir, &c, &e, err, sizeof err), 0); /* no file */
    assert_int_equal(e.n, 1);
    assert_int_equal(e.id[0], 5);
    assert_int_equal(q35_eos_has(&e, 5), 1);
    assert_int_equal(q35_eos_has(&e, 6), 0);
    snprintf(p, sizeof p, "%s/generation_config.json", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("{\"eos_token_id\": [8, 6], \"pad_token_id\": 3}\n", f);
    fclose(f);
    assert_int_equal(q35_eos_load(dir, &c, &e, err, sizeof err), 0);
    assert_int_equal(e.n, 2);
    assert_int_equal(q35_eos_has(&e, 6), 1);
    assert_int_equal(q35_eos_has(&e, 5), 0);
    assert_string_equal(e.source, "generation_config.json");
    f = fopen(p, "w");
    assert_non_null(f);
    fputs("{\"eos_token_id\": \"eos\"}\n", f);
    fclose(f);
    assert_int_equal(q35_eos_load(dir, &c, &e, err, sizeof err), -1);
    assert_non_null(strstr(err, p)); /* names the file */
    assert_int_equal(test_tmpdir_remove(dir), 0);
}

/* ------------------------------------------------------------------ */
/* Chat turn                                                           */
/* ------------------------------------------------------------------ */

static void turn_is(const char *text, size_t len, int think, const char *want, size_t want_len)
{
    size_t n = 0;
    char *t = q35_chat_turn(text, len, think, &n);
    assert_non_null(t);
    assert_int_equal(n, want_len);
    assert_memory_equal(t, want, n);
    assert_int_equal(t[n], 0);
    free(t);
}

/* text and want: string literals (they may hold a NUL) */
#define TURN(text, think, want) turn_is(text, sizeof(text) - 1, think, want, sizeof(want) - 1)

static void test_chat_turn(void **s)
{
    (void)s;
    TURN("What is the capital of France?", 0,
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
            "<think>\n\n</think>\n\n");
    TURN("Hi", 1, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n");
    /* trimmed as Python's str.strip(): ASCII white space, U+00A0, U+3000, U+2028 at the ends only */
    TURN(" \t\n a  b \r\n\v\f", 0,
            "<|im_start|>user\na  b<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
    TURN("\xc2\xa0\xe3\x80\x80x\xe2\x80\xa8y\xe2\x80\xa8\xe3\x80\x80", 1,
            "<|im_start|>user\nx\xe2\x80\xa8y<|im_end|>\n<|im_start|>assistant\n<think>\n");
    /* not white space: U+200B (zero width space), U+FEFF; and a lone continuation byte is kept */
    TURN("\xe2\x80\x8bz\xef\xbb\xbf", 1,
            "<|im_start|>user\n\xe2\x80\x8bz\xef\xbb\xbf<|im_end|>\n<|im_start|>assistant\n<think>\n");
    TURN("z\x80 ", 1, "<|im_start|>user\nz\x80<|im_end|>\n<|im_start|>assistant\n<think>\n");
    /* empty, and only white space: the turn with nothing in it */
    TURN("", 0, "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
    TURN("  \n", 1, "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n<think>\n");
    /* a NUL inside the text is text */
    TURN("a\0b", 1, "<|im_start|>user\na\0b<|im_end|>\n<|im_start|>assistant\n<think>\n");
}

/* ------------------------------------------------------------------ */
/* The per-token hook                                                  */
/* ------------------------------------------------------------------ */

typedef struct {
    char dir[64];
    q35_model m;
} fixture;

static int setup(void **st)
{
    fixture *f = calloc(1, sizeof *f);
    char err[512], d[128];
    if (!f || test_tmpdir_make(f->dir, "q35_text")) return -1;
    snprintf(d, sizeof d, "%s/m", f->dir);
    q35_init_opts o = {.preset = "tiny-moe", .seed = 11, .dtype = ST_F32, .threads = 1};
    if (q35_init_write(d, &o, NULL, err, sizeof err) || q35_model_load(d, &(q35_load_opts){0}, &f->m, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    *st = f;
    return 0;
}

static int teardown(void **st)
{
    fixture *f = *st;
    q35_model_free(&f->m);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0) return -1;
    free(f);
    return 0;
}

#define STEPS 12
typedef struct {
    int end_at[2];          /* end sequence b at its token end_at[b] (index), -1: never */
    int32_t seen[2][STEPS]; /* the tokens the hook was given */
    int calls[2];
    int order_ok;
} watch;

static int on_token(void *ctx, int b, int i, int32_t token)
{
    watch *w = ctx;
    if (i != w->calls[b] || i >= STEPS) w->order_ok = 0;
    else w->seen[b][i] = token;
    w->calls[b]++;
    return i == w->end_at[b];
}

static q35_impls impls(void)
{
    q35_impls im;
    q35_impls_default(&im);
    im.threads = 1;
    return im;
}

static const int32_t p0[] = {5, 6, 7, 8, 5, 6, 7, 9, 5, 6}, p1[] = {40, 41, 42};
static const int32_t *const prompts[2] = {p0, p1};
static const int lens[2] = {10, 3};

/* One hooked run: plain greedy (source NULL) or speculative. */
static void hooked(const q35_model *m, const char *source, const int32_t *plain, int e0, int e1, int32_t *tok,
                   watch *w, int n_out[2], q35_gen_timing *tm)
{
    const q35_impls im = impls();
    char err[512];
    memset(w, 0, sizeof *w);
    w->end_at[0] = e0;
    w->end_at[1] = e1;
    w->order_ok = 1;
    const q35_gen_hook h = {.fn = on_token, .ctx = w, .n_out = n_out};
    q35_state s;
    assert_int_equal(q35_state_init(&s, &m->local, 2, 10 + STEPS + 4, err, sizeof err), 0);
    int rc;
    if (!source) {
        rc = q35_generate_on_hook(m, &im, &s, prompts, lens, STEPS, NULL, tok, NULL, tm, &h, err, sizeof err);
    } else {
        q35_spec_opts o = {.n_draft = 3, .seed = 5, .oracle = plain, .hook = &h};
        assert_int_equal(q35_draft_source_parse(source, &o, err, sizeof err), 0);
        rc = q35_generate_speculative(m, &im, &s, prompts, lens, STEPS, &o, tok, NULL, err, sizeof err);
    }
    if (rc) fail_msg("%s: %s", source ? source : "plain", err);
    q35_state_free(&s);
    assert_true(w->order_ok);
}

static void test_hook_ends_sequences(void **st)
{
    fixture *f = *st;
    const q35_impls im = impls();
    char err[512];
    int32_t plain[2 * STEPS], tok[2 * STEPS];
    assert_int_equal(q35_generate(&f->m, &im, 2, prompts, lens, STEPS, NULL, plain, NULL, NULL, err, sizeof err), 0);
    static const char *const sources[] = {NULL, "ngram", "oracle:0.5", "oracle:1", "mtp"};
    /* (end of sequence 0, end of sequence 1): never, early/late, both at the first token, the last */
    static const int ends[][2] = {{-1, -1}, {2, 7}, {6, 0}, {0, 0}, {STEPS - 1, 4}};
    for (size_t k = 0; k < sizeof sources / sizeof *sources; k++)
        for (size_t e = 0; e < sizeof ends / sizeof *ends; e++) {
            watch w;
            int n_out[2] = {-1, -1};
            q35_gen_timing tm = {0};
            hooked(&f->m, sources[k], plain, ends[e][0], ends[e][1], tok, &w, n_out, &tm);
            int last = 0;
            for (int b = 0; b < 2; b++) {
                const int want = ends[e][b] < 0 ? STEPS : ends[e][b] + 1;
                if (n_out[b] != want || w.calls[b] != want)
                    fail_msg("%s, ends (%d, %d): sequence %d: %d tokens, %d calls, want %d", sources[k] ? sources[k] : "plain",
                             ends[e][0], ends[e][1], b, n_out[b], w.calls[b], want);
                /* up to its end, the tokens (returned and given to the hook) are plain greedy's */
                for (int i = 0; i < want; i++) {
                    assert_int_equal(tok[b * STEPS + i], plain[b * STEPS + i]);
                    assert_int_equal(w.seen[b][i], plain[b * STEPS + i]);
                }
                last = want > last ? want : last;
            }
            /* plain greedy stops its decode calls when both have ended */
            if (!sources[k]) assert_int_equal(tm.steps_run, last);
        }
}

/* A hook whose fn is NULL only counts (n_out = steps), as no hook. */
static void test_hook_without_fn(void **st)
{
    fixture *f = *st;
    const q35_impls im = impls();
    char err[512];
    int32_t a[2 * STEPS], b[2 * STEPS];
    int n_out[2] = {0, 0};
    q35_state s;
    assert_int_equal(q35_generate(&f->m, &im, 2, prompts, lens, STEPS, NULL, a, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(q35_state_init(&s, &f->m.local, 2, 10 + STEPS, err, sizeof err), 0);
    const q35_gen_hook h = {.n_out = n_out};
    q35_gen_timing tm = {0};
    assert_int_equal(q35_generate_on_hook(&f->m, &im, &s, prompts, lens, STEPS, NULL, b, NULL, &tm, &h, err, sizeof err), 0);
    assert_memory_equal(a, b, sizeof a);
    assert_int_equal(n_out[0], STEPS);
    assert_int_equal(n_out[1], STEPS);
    assert_int_equal(tm.steps_run, STEPS);
    q35_state_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eos_sources),
        cmocka_unit_test(test_eos_refusals),
        cmocka_unit_test(test_eos_load_file),
        cmocka_unit_test(test_chat_turn),
        cmocka_unit_test_setup_teardown(test_hook_ends_sequences, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hook_without_fn, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
