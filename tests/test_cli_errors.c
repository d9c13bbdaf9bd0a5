/* test_cli_errors.c - cmocka suite: malformed inputs fed to the q35lab binary
 * the way a user meets them (validate, generate, check --golden, golden,
 * model init, bench), from the build directory this test was built into.
 *
 * For each bad input: the exit status (2 for bad input, 1 for a write that
 * the system refused), stderr is exactly one line, the expected message,
 * naming the file and the field or tensor at fault (validate --golden reads
 * the golden file after loading the model, so there the error is the one
 * line after the model's summary line); and the folders involved list the
 * same files afterwards (no output, no PATH.tmp.<pid> left over).
 *
 * Every bad fixture is made here, in a mkdtemp folder, from committed good
 * data: the tiny dense checkpoint and its golden file under tests/data/model,
 * a delta-rule golden under tests/data and the MoE golden sample of
 * ../shared, by byte surgery (a header entry rewritten, a file cut, a NaN
 * written into a tensor) or by writing a small file (config.json, an index).
 * The expected messages spell out the fixtures' own names and offsets, so a
 * regenerated fixture shows up here first (fixture_sizes checks the sizes). */
#include "model/presets.h"
#include "tests/support/tmpdir.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TINY_DIR "tests/data/model/hf-tiny-dense-bf16"
#define TINY_GOLDEN "tests/data/model/hf-tiny-dense-bf16.golden.safetensors"
#define DR_GOLDEN "tests/data/hf_deltarule_recurrent_t37_b1_h2_d16_l2.safetensors"
#define MOE_GOLDEN "../shared/golden-samples/moe/sample_moe_t5.safetensors"

/* Sizes of the committed fixtures the expected messages were written for. */
#define TINY_MODEL_BYTES 606528u   /* 8 + 5832 header + 600688 data */
#define TINY_HEADER_BYTES 5832u
#define DR_GOLDEN_BYTES 23104u     /* data area 21584 */
#define MOE_GOLDEN_BYTES 97408u    /* data area 95624 */

static char g_cli[512]; /* path of the q35lab binary, from argv[0] */

/* ------------------------------------------------------------------ */
/* Files and bytes                                                     */
/* ------------------------------------------------------------------ */

typedef struct {
    unsigned char *p;
    size_t n;
} bytes;

static bytes slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s: %s", path, strerror(errno));
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    const long len = ftell(f);
    assert_true(len >= 0);
    assert_int_equal(fseek(f, 0, SEEK_SET), 0);
    bytes b = {malloc((size_t)len + 1), (size_t)len};
    assert_non_null(b.p);
    assert_int_equal(fread(b.p, 1, b.n, f), b.n);
    fclose(f);
    return b;
}

static void spit(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot create %s: %s", path, strerror(errno));
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void spit_text(const char *path, const char *text) { spit(path, text, strlen(text)); }

static void spit_bytes(const char *path, const bytes *b) { spit(path, b->p, b->n); }

/* The first u64 of a safetensors file: the header's length. */
static uint64_t header_len(const bytes *b)
{
    uint64_t n;
    assert_true(b->n >= 8);
    memcpy(&n, b->p, 8);
    assert_true(n <= b->n - 8);
    return n;
}

/* The offset of `what` inside the header of b, which must hold it exactly once. */
static size_t header_find(const bytes *b, const char *what)
{
    const size_t hl = header_len(b), wl = strlen(what);
    size_t at = 0, count = 0;
    for (size_t i = 0; i + wl <= hl; i++)
        if (!memcmp(b->p + 8 + i, what, wl)) at = i, count++;
    if (count != 1) fail_msg("'%s' is %zu times in the header, expected once", what, count);
    return at;
}

/* A copy of b with `from` replaced by `to` in its header (and the header
 * length rewritten); the data area is kept byte for byte. */
static bytes header_replace(const bytes *b, const char *from, const char *to)
{
    const size_t at = header_find(b, from), fl = strlen(from), tl = strlen(to);
    const uint64_t hl = header_len(b), nhl = hl - fl + tl;
    bytes r = {malloc(b->n - fl + tl), b->n - fl + tl};
    assert_non_null(r.p);
    memcpy(r.p, &nhl, 8);
    memcpy(r.p + 8, b->p + 8, at);
    memcpy(r.p + 8 + at, to, tl);
    memcpy(r.p + 8 + at + tl, b->p + 8 + at + fl, b->n - 8 - at - fl);
    return r;
}

/* A copy of text with `from` (there exactly once) replaced by `to`. */
static char *text_replace(const bytes *text, const char *from, const char *to)
{
    char *s = malloc(text->n + 1);
    assert_non_null(s);
    memcpy(s, text->p, text->n);
    s[text->n] = '\0';
    char *at = strstr(s, from);
    if (!at || strstr(at + 1, from)) fail_msg("'%s' is not in the text exactly once", from);
    char *r = malloc(text->n - strlen(from) + strlen(to) + 1);
    assert_non_null(r);
    sprintf(r, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
    free(s);
    return r;
}

/* The files in dir, sorted, one per line; "(no such folder)" if it is not there. */
static void listing(const char *dir, char *buf, size_t n)
{
    struct dirent **e;
    const int k = scandir(dir, &e, NULL, alphasort);
    if (k < 0) {
        snprintf(buf, n, "(no such folder)");
        return;
    }
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < k; i++) {
        if (strcmp(e[i]->d_name, ".") && strcmp(e[i]->d_name, "..") && len < n)
            len += (size_t)snprintf(buf + len, n - len, "%s\n", e[i]->d_name);
        free(e[i]);
    }
    free(e);
}

/* ------------------------------------------------------------------ */
/* Running q35lab                                                      */
/* ------------------------------------------------------------------ */

typedef struct {
    int status;      /* exit status, -1 if killed by a signal */
    pid_t pid;       /* the process id, which temporary file names carry */
    char err[8192];  /* all of stderr */
} run_result;

/* Runs q35lab with args (NULL-terminated, without argv[0]) from the project
 * root; stdout goes to /dev/null, stderr is collected. */
static void run(run_result *r, const char *const *args)
{
    const char *argv[32] = {g_cli};
    int argc = 1;
    for (; args[argc - 1]; argc++) {
        assert_true(argc < 31);
        argv[argc] = args[argc - 1];
    }
    argv[argc] = NULL;
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    fflush(NULL);
    const pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const int devnull = open("/dev/null", O_WRONLY);
        if (devnull < 0 || dup2(devnull, 1) < 0 || dup2(fd[1], 2) < 0) _exit(126);
        close(fd[0]);
        execv(g_cli, (char *const *)argv);
        _exit(127);
    }
    close(fd[1]);
    size_t len = 0;
    for (;;) {
        const ssize_t k = read(fd[0], r->err + len, sizeof r->err - 1 - len);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        len += (size_t)k;
        if (len == sizeof r->err - 1) break;
    }
    r->err[len] = '\0';
    close(fd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0) assert_int_equal(errno, EINTR);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r->pid = pid;
}

/* The run exited with `status` and wrote exactly the line `want` to stderr. */
static void expect_stderr(const run_result *r, int status, const char *want)
{
    char line[4096];
    snprintf(line, sizeof line, "%s\n", want);
    if (strcmp(r->err, line))
        fail_msg("stderr is not the one expected line\n  expected: %s\n  got:      %s", want, r->err);
    if (r->status != status) fail_msg("exit status %d, expected %d (stderr: %s)", r->status, status, r->err);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Runs args, expects `status` and the one stderr line fmt..., and that the
 * folder `watch` lists the same files before and after. */
static void expect_failure(const char *watch, const char *const *args, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void expect_failure(const char *watch, const char *const *args, int status, const char *fmt, ...)
{
    char want[4096], before[4096], after[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want, sizeof want, fmt, ap);
    va_end(ap);
    listing(watch, before, sizeof before);
    run_result r;
    run(&r, args);
    expect_stderr(&r, status, want);
    listing(watch, after, sizeof after);
    if (strcmp(before, after)) fail_msg("%s changed:\n--- before\n%s--- after\n%s", watch, before, after);
}

/* ------------------------------------------------------------------ */
/* Model folders                                                       */
/* ------------------------------------------------------------------ */

typedef struct {
    char dir[64];
    char config[128], model[128];
} scratch;

static void scratch_new(scratch *s)
{
    assert_int_equal(test_tmpdir_make(s->dir, "q35cli"), 0);
    test_tmpdir_path(s->config, sizeof s->config, s->dir, "config.json");
    test_tmpdir_path(s->model, sizeof s->model, s->dir, "model.safetensors");
}

static void scratch_remove(scratch *s) { assert_int_equal(test_tmpdir_remove(s->dir), 0); }

/* A folder holding the committed config.json and the given model bytes. */
static void model_folder(scratch *s, const bytes *model)
{
    scratch_new(s);
    bytes cfg = slurp(TINY_DIR "/config.json");
    spit_bytes(s->config, &cfg);
    free(cfg.p);
    spit_bytes(s->model, model);
}

/* validate and generate both refuse the model folder with exactly the line
 * "error: " + fmt..., exit 2, and write nothing into it. */
static void expect_model_rejected(const char *dir, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void expect_model_rejected(const char *dir, const char *fmt, ...)
{
    char want[4096] = "error: ";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want + strlen(want), sizeof want - strlen(want), fmt, ap);
    va_end(ap);
    expect_failure(dir, ARGS("validate", "--model", dir, "--steps", "1", "--impl", "default"), 2, "%s", want);
    expect_failure(dir, ARGS("generate", "--model", dir, "--prompt-ids", "1,2", "--max-new", "1"), 2, "%s",
                   want);
}

/* The committed model with one header entry rewritten, in a fresh folder. */
static void model_with_header_edit(scratch *s, const char *from, const char *to)
{
    bytes good = slurp(TINY_DIR "/model.safetensors");
    bytes bad = header_replace(&good, from, to);
    model_folder(s, &bad);
    free(good.p);
    free(bad.p);
}

/* The committed model with config.json edited, in a fresh folder. */
static void config_with_edit(scratch *s, const char *from, const char *to)
{
    scratch_new(s);
    bytes cfg = slurp(TINY_DIR "/config.json"), model = slurp(TINY_DIR "/model.safetensors");
    char *edited = text_replace(&cfg, from, to);
    spit_text(s->config, edited);
    spit_bytes(s->model, &model);
    free(edited);
    free(cfg.p);
    free(model.p);
}

/* ------------------------------------------------------------------ */
/* The fixtures are the ones the messages below were written for       */
/* ------------------------------------------------------------------ */

static void test_fixture_sizes(void **state)
{
    (void)state;
    if (access(g_cli, X_OK) != 0) fail_msg("%s not found (the Makefile builds it before the suites)", g_cli);
    bytes m = slurp(TINY_DIR "/model.safetensors"), d = slurp(DR_GOLDEN), e = slurp(MOE_GOLDEN);
    assert_int_equal(m.n, TINY_MODEL_BYTES);
    assert_int_equal(header_len(&m), TINY_HEADER_BYTES);
    assert_int_equal(d.n, DR_GOLDEN_BYTES);
    assert_int_equal(e.n, MOE_GOLDEN_BYTES);
    free(m.p);
    free(d.p);
    free(e.p);
}

/* ------------------------------------------------------------------ */
/* model.safetensors                                                   */
/* ------------------------------------------------------------------ */

/* Cut 1000 bytes before the end: the last tensors' bytes are gone; the first
 * one in header order whose bytes are missing is named. */
static void test_model_truncated_in_data_area(void **state)
{
    (void)state;
    bytes good = slurp(TINY_DIR "/model.safetensors");
    bytes cut = {good.p, good.n - 1000};
    scratch s;
    model_folder(&s, &cut);
    expect_model_rejected(s.dir,
                          "%s: tensor 'model.layers.3.self_attn.v_proj.weight': data_offsets end 600560 is past end "
                          "of data area (599688 bytes)", s.model);
    scratch_remove(&s);
    free(good.p);
}

static void test_model_truncated_in_header(void **state)
{
    (void)state;
    bytes good = slurp(TINY_DIR "/model.safetensors");
    bytes cut = {good.p, 8 + TINY_HEADER_BYTES / 2};
    scratch s;
    model_folder(&s, &cut);
    expect_model_rejected(s.dir, "%s: header length 5832 runs past end of file (2924 bytes)", s.model);
    scratch_remove(&s);
    free(good.p);
}

static void test_model_header_length_past_end(void **state)
{
    (void)state;
    bytes b = slurp(TINY_DIR "/model.safetensors");
    const uint64_t huge = 1ull << 40;
    memcpy(b.p, &huge, 8);
    scratch s;
    model_folder(&s, &b);
    expect_model_rejected(s.dir, "%s: header length 1099511627776 runs past end of file (606528 bytes)", s.model);
    scratch_remove(&s);
    free(b.p);
}

static void test_model_header_not_json(void **state)
{
    (void)state;
    bytes b = slurp(TINY_DIR "/model.safetensors");
    memset(b.p + 8, '#', 16); /* the header's first 16 bytes */
    scratch s;
    model_folder(&s, &b);
    expect_model_rejected(s.dir, "%s: header is not valid JSON (near byte 0)", s.model);
    scratch_remove(&s);
    free(b.p);
}

/* embed_tokens moved half-way onto lm_head's bytes (same span, so the size still agrees). */
static void test_model_overlapping_offsets(void **state)
{
    (void)state;
    scratch s;
    model_with_header_edit(&s, "\"model.embed_tokens.weight\":{\"dtype\":\"BF16\",\"shape\":[256,64],"
                               "\"data_offsets\":[32768,65536]}",
                           "\"model.embed_tokens.weight\":{\"dtype\":\"BF16\",\"shape\":[256,64],"
                           "\"data_offsets\":[16384,49152]}");
    expect_model_rejected(s.dir,
                          "%s: tensor 'model.embed_tokens.weight': data_offsets [16384, 49152] overlap those of "
                          "tensor 'lm_head.weight' [0, 32768]", s.model);
    scratch_remove(&s);
}

/* The last tensor moved one span further: it ends 128 bytes past the data area. */
static void test_model_offsets_past_data_area(void **state)
{
    (void)state;
    scratch s;
    model_with_header_edit(&s, "\"model.norm.weight\":{\"dtype\":\"BF16\",\"shape\":[64],\"data_offsets\":[600560,600688]}",
                           "\"model.norm.weight\":{\"dtype\":\"BF16\",\"shape\":[64],\"data_offsets\":[600688,600816]}");
    expect_model_rejected(s.dir,
                          "%s: tensor 'model.norm.weight': data_offsets end 600816 is past end of data area "
                          "(600688 bytes)", s.model);
    scratch_remove(&s);
}

/* [2^40, 2^40]: 2^80 elements, more than 64 bits count. */
static void test_model_shape_count_overflows(void **state)
{
    (void)state;
    scratch s;
    model_with_header_edit(&s, "\"model.norm.weight\":{\"dtype\":\"BF16\",\"shape\":[64]",
                           "\"model.norm.weight\":{\"dtype\":\"BF16\",\"shape\":[1099511627776,1099511627776]");
    expect_model_rejected(s.dir,
                          "%s: tensor 'model.norm.weight': shape [1099511627776, 1099511627776] x BF16: size "
                          "overflows 64 bits", s.model);
    scratch_remove(&s);
}

/* [65] x BF16 is 130 bytes; the offsets span 128. */
static void test_model_shape_size_mismatch(void **state)
{
    (void)state;
    scratch s;
    model_with_header_edit(&s, "\"model.norm.weight\":{\"dtype\":\"BF16\",\"shape\":[64]",
                           "\"model.norm.weight\":{\"dtype\":\"BF16\",\"shape\":[65]");
    expect_model_rejected(s.dir,
                          "%s: tensor 'model.norm.weight': size mismatch: data_offsets span 128 bytes, shape [65] x "
                          "BF16 needs 130", s.model);
    scratch_remove(&s);
}

/* A dtype safetensors knows but q35lab does not read. */
static void test_model_unknown_dtype(void **state)
{
    (void)state;
    scratch s;
    model_with_header_edit(&s, "\"model.norm.weight\":{\"dtype\":\"BF16\"",
                           "\"model.norm.weight\":{\"dtype\":\"F8_E4M3\"");
    expect_model_rejected(s.dir, "%s: tensor 'model.norm.weight': unknown dtype 'F8_E4M3'", s.model);
    scratch_remove(&s);
}

/* A valid file that lacks a tensor the config implies. */
static void test_model_missing_tensor(void **state)
{
    (void)state;
    scratch s;
    model_with_header_edit(&s, "\"model.norm.weight\":", "\"model.final_norm.weight\":");
    expect_model_rejected(s.dir,
                          "%s: tensor 'norm.weight' not found (tried 'model.language_model.norm.weight' and "
                          "'model.norm.weight')", s.model);
    scratch_remove(&s);
}

/* A valid file whose tensor has the config's element count in the wrong shape. */
static void test_model_misshaped_tensor(void **state)
{
    (void)state;
    scratch s;
    model_with_header_edit(&s, "\"model.layers.0.linear_attn.in_proj_qkv.weight\":{\"dtype\":\"BF16\",\"shape\":[256,64]",
                           "\"model.layers.0.linear_attn.in_proj_qkv.weight\":{\"dtype\":\"BF16\",\"shape\":[64,256]");
    expect_model_rejected(s.dir,
                          "%s: tensor 'layers.0.linear_attn.in_proj_qkv.weight' "
                          "(model.layers.0.linear_attn.in_proj_qkv.weight): expected shape [256, 64], got [64, 256]",
                          s.model);
    scratch_remove(&s);
}

/* A bf16 quiet NaN as element 77 of a layer-2 matrix (byte offset 370544 in the data area). */
static void test_model_nan_weight(void **state)
{
    (void)state;
    bytes b = slurp(TINY_DIR "/model.safetensors");
    const size_t at = 8 + TINY_HEADER_BYTES + 370544 + 2 * 77;
    header_find(&b, "\"model.layers.2.mlp.down_proj.weight\":{\"dtype\":\"BF16\",\"shape\":[64,128],"
                    "\"data_offsets\":[370544,386928]}");
    const uint16_t nan_bf16 = 0x7fc0;
    memcpy(b.p + at, &nan_bf16, 2);
    scratch s;
    model_folder(&s, &b);
    expect_model_rejected(s.dir,
                          "%s: tensor 'layers.2.mlp.down_proj.weight' (model.layers.2.mlp.down_proj.weight): "
                          "element 77 is not finite (nan)", s.model);
    scratch_remove(&s);
    free(b.p);
}

/* ------------------------------------------------------------------ */
/* config.json                                                         */
/* ------------------------------------------------------------------ */

static void test_config_zero_size(void **state)
{
    (void)state;
    scratch s;
    config_with_edit(&s, "\"hidden_size\": 64,", "\"hidden_size\": 0,");
    expect_model_rejected(s.dir, "%s: field 'hidden_size' must be in [1, 1073741824], got 0", s.config);
    scratch_remove(&s);
}

static void test_config_negative_size(void **state)
{
    (void)state;
    scratch s;
    config_with_edit(&s, "\"num_attention_heads\": 4,", "\"num_attention_heads\": -1,");
    expect_model_rejected(s.dir, "%s: field 'num_attention_heads' must be in [1, 1073741824], got -1", s.config);
    scratch_remove(&s);
}

static void test_config_huge_size(void **state)
{
    (void)state;
    scratch s;
    config_with_edit(&s, "\"vocab_size\": 256", "\"vocab_size\": 1000000000000");
    expect_model_rejected(s.dir, "%s: field 'vocab_size' must be in [1, 1073741824], got 1000000000000", s.config);
    scratch_remove(&s);
}

/* Three layer types for four layers. */
static void test_config_layer_types_wrong_length(void **state)
{
    (void)state;
    scratch s;
    config_with_edit(&s, "\"linear_attention\",\n    \"full_attention\"", "\"full_attention\"");
    expect_model_rejected(s.dir, "%s: field 'layer_types' has 3 entries but num_hidden_layers is 4", s.config);
    scratch_remove(&s);
}

/* ------------------------------------------------------------------ */
/* Folders and shards                                                  */
/* ------------------------------------------------------------------ */

/* The index puts model.norm.weight in a second shard that is not there. */
static void test_index_names_missing_shard(void **state)
{
    (void)state;
    scratch s;
    scratch_new(&s);
    bytes cfg = slurp(TINY_DIR "/config.json"), model = slurp(TINY_DIR "/model.safetensors");
    char shard1[128], index[128];
    test_tmpdir_path(shard1, sizeof shard1, s.dir, "model-00001-of-00002.safetensors");
    test_tmpdir_path(index, sizeof index, s.dir, "model.safetensors.index.json");
    spit_bytes(s.config, &cfg);
    spit_bytes(shard1, &model);
    spit_text(index, "{\"metadata\": {\"total_size\": 600688}, \"weight_map\": {"
                     "\"lm_head.weight\": \"model-00001-of-00002.safetensors\", "
                     "\"model.norm.weight\": \"model-00002-of-00002.safetensors\"}}\n");
    expect_model_rejected(s.dir,
                          "%s: weight_map names shard 'model-00002-of-00002.safetensors', which cannot be opened: "
                          "No such file or directory", index);
    scratch_remove(&s);
    free(cfg.p);
    free(model.p);
}

static void test_model_folder_empty(void **state)
{
    (void)state;
    scratch s;
    scratch_new(&s);
    expect_model_rejected(s.dir, "%s: cannot open: No such file or directory", s.config);
    scratch_remove(&s);
}

/* A folder that does not exist is said to be missing (and is not made). */
static void test_model_folder_missing(void **state)
{
    (void)state;
    scratch s;
    scratch_new(&s);
    char absent[128];
    test_tmpdir_path(absent, sizeof absent, s.dir, "absent");
    expect_failure(s.dir, ARGS("validate", "--model", absent, "--steps", "1", "--impl", "default"), 2,
                   "error: %s: cannot open model folder: No such file or directory", absent);
    expect_failure(s.dir, ARGS("generate", "--model", absent, "--prompt-ids", "1,2", "--max-new", "1"), 2,
                   "error: %s: cannot open model folder: No such file or directory", absent);
    scratch_remove(&s);
}

/* ------------------------------------------------------------------ */
/* Golden files                                                        */
/* ------------------------------------------------------------------ */

/* A copy of the golden file at `path` with its last 100 bytes cut off,
 * written into the scratch folder as name. */
static void golden_truncated(const scratch *s, const char *golden, const char *name, char *path, size_t n)
{
    bytes b = slurp(golden);
    test_tmpdir_path(path, n, s->dir, name);
    spit(path, b.p, b.n - 100);
    free(b.p);
}

/* A copy with 8 bytes of 0xff written over the header where `at` is (the
 * start of a tensor's name).  cJSON stops one byte into a name that does not
 * open with '"', so the message's "near byte" is *where + 1. */
static void golden_garbled(const scratch *s, const char *golden, const char *at, const char *name, char *path,
                           size_t n, size_t *where)
{
    bytes b = slurp(golden);
    *where = header_find(&b, at);
    memset(b.p + 8 + *where, 0xff, 8);
    test_tmpdir_path(path, n, s->dir, name);
    spit_bytes(path, &b);
    free(b.p);
}

static void test_deltarule_golden_truncated(void **state)
{
    (void)state;
    scratch s;
    scratch_new(&s);
    char path[128];
    golden_truncated(&s, DR_GOLDEN, "dr.safetensors", path, sizeof path);
    expect_failure(s.dir, ARGS("check", "deltarule", "--golden", path), 2,
                   "q35lab: %s: tensor 'v': data_offsets end 21584 is past end of data area (21484 bytes)", path);
    scratch_remove(&s);
}

static void test_deltarule_golden_garbled(void **state)
{
    (void)state;
    scratch s;
    scratch_new(&s);
    char path[128];
    size_t where;
    golden_garbled(&s, DR_GOLDEN, "\"k\":{\"dtype\"", "dr.safetensors", path, sizeof path, &where);
    expect_failure(s.dir, ARGS("check", "deltarule", "--golden", path), 2,
                   "q35lab: %s: header is not valid JSON (near byte %zu)", path, where + 1);
    scratch_remove(&s);
}

/* A well-formed file that lacks one of the problem's tensors. */
static void test_deltarule_golden_missing_tensor(void **state)
{
    (void)state;
    scratch s;
    scratch_new(&s);
    bytes good = slurp(DR_GOLDEN);
    bytes bad = header_replace(&good, "\"k\":{", "\"key\":{");
    char path[128];
    test_tmpdir_path(path, sizeof path, s.dir, "dr.safetensors");
    spit_bytes(path, &bad);
    expect_failure(s.dir, ARGS("check", "deltarule", "--golden", path), 2, "q35lab: %s: tensor 'k': not found",
                   path);
    scratch_remove(&s);
    free(good.p);
    free(bad.p);
}

static void test_moe_golden_truncated(void **state)
{
    (void)state;
    scratch s;
    scratch_new(&s);
    char path[128];
    golden_truncated(&s, MOE_GOLDEN, "moe.safetensors", path, sizeof path);
    expect_failure(s.dir, ARGS("check", "moe", "--golden", path), 2,
                   "q35lab: %s: tensor 'out': data_offsets end 95624 is past end of data area (95524 bytes)", path);
    scratch_remove(&s);
}

static void test_moe_golden_garbled(void **state)
{
    (void)state;
    scratch s;
    scratch_new(&s);
    char path[128];
    size_t where;
    golden_garbled(&s, MOE_GOLDEN, "\"down_proj\":{", "moe.safetensors", path, sizeof path, &where);
    expect_failure(s.dir, ARGS("check", "moe", "--golden", path), 2,
                   "q35lab: %s: header is not valid JSON (near byte %zu)", path, where + 1);
    scratch_remove(&s);
}

/* topk_ids [5, 2] I32 at data offset 94584: token 0's second expert becomes 99 of E = 6. */
static void test_moe_golden_expert_out_of_range(void **state)
{
    (void)state;
    scratch s;
    scratch_new(&s);
    bytes b = slurp(MOE_GOLDEN);
    header_find(&b, "\"topk_ids\":{\"dtype\":\"I32\",\"shape\":[5,2],\"data_offsets\":[94584,94624]}");
    const int32_t bad_id = 99;
    memcpy(b.p + 8 + header_len(&b) + 94584 + 4, &bad_id, 4);
    char path[128];
    test_tmpdir_path(path, sizeof path, s.dir, "moe.safetensors");
    spit_bytes(path, &b);
    expect_failure(s.dir, ARGS("check", "moe", "--golden", path), 2, "q35lab: %s: topk_ids[0][1]=99 outside [0, E=6)",
                   path);
    scratch_remove(&s);
    free(b.p);
}

/* tokens_1 [16] I32 at data offset 49540: its element 3 becomes 256, one past
 * the vocabulary.  The model loads first and says so on stderr (one summary
 * line, "model: DIR: ..."): the error is the one line after it. */
static void test_validate_golden_token_out_of_vocabulary(void **state)
{
    (void)state;
    scratch s;
    scratch_new(&s);
    bytes b = slurp(TINY_GOLDEN);
    header_find(&b, "\"tokens_1\":{\"dtype\":\"I32\",\"shape\":[16],\"data_offsets\":[49540,49604]}");
    const int32_t bad_id = 256;
    memcpy(b.p + 8 + header_len(&b) + 49540 + 4 * 3, &bad_id, 4);
    char path[128], before[4096], after[4096], want[1024];
    test_tmpdir_path(path, sizeof path, s.dir, "golden.safetensors");
    spit_bytes(path, &b);
    listing(s.dir, before, sizeof before);
    run_result r;
    run(&r, ARGS("validate", "--model", TINY_DIR, "--golden", path, "--impl", "default"));
    const char *summary = "model: " TINY_DIR ": ";
    if (strncmp(r.err, summary, strlen(summary))) fail_msg("stderr does not start with the model summary: %s", r.err);
    const char *error = strchr(r.err, '\n');
    assert_non_null(error);
    run_result tail = {.status = r.status, .pid = r.pid};
    snprintf(tail.err, sizeof tail.err, "%s", error + 1);
    snprintf(want, sizeof want,
             "error: %s: tensor 'tokens_1': element 3 is token id 256, outside the model's vocabulary [0, 256)", path);
    expect_stderr(&tail, 2, want);
    listing(s.dir, after, sizeof after);
    assert_string_equal(before, after);
    scratch_remove(&s);
    free(b.p);
}

/* ------------------------------------------------------------------ */
/* Writers leave nothing behind                                        */
/* ------------------------------------------------------------------ */

/* A bad option value after --out: refused before anything is written. */
static void test_golden_bad_option_after_out(void **state)
{
    (void)state;
    scratch s;
    scratch_new(&s);
    char out[128];
    test_tmpdir_path(out, sizeof out, s.dir, "x.safetensors");
    expect_failure(s.dir, ARGS("golden", "deltarule", "--out", out, "--T", "abc"), 2,
                   "q35lab golden deltarule: --T expects an integer in [1, 1048576], got 'abc'");
    expect_failure(s.dir, ARGS("golden", "deltarule", "--out", out, "--regime", "sideways"), 2,
                   "q35lab: unknown regime 'sideways'");
    assert_int_equal(access(out, F_OK), -1);
    scratch_remove(&s);
}

/* The temporary file cannot even be made: the message names the target, the
 * temporary name (PATH.tmp.<pid>) and the reason. */
static void test_golden_out_in_missing_folder(void **state)
{
    (void)state;
    assert_int_equal(access("/nonexistent-dir", F_OK), -1);
    run_result r;
    run(&r, ARGS("golden", "deltarule", "--out", "/nonexistent-dir/x", "--T", "4"));
    char want[512];
    snprintf(want, sizeof want,
             "q35lab: /nonexistent-dir/x: cannot create /nonexistent-dir/x.tmp.%ld: No such file or directory",
             (long)r.pid);
    expect_stderr(&r, 1, want);
    assert_int_equal(access("/nonexistent-dir", F_OK), -1);
}

/* The whole file is written, then the rename onto PATH fails (PATH is a
 * folder): the temporary file is removed, the folder left as it was. */
static void test_golden_out_is_a_folder(void **state)
{
    (void)state;
    scratch s;
    scratch_new(&s);
    char out[128], before[4096], after[4096], inside[4096];
    test_tmpdir_path(out, sizeof out, s.dir, "x.safetensors");
    assert_int_equal(mkdir(out, 0755), 0);
    listing(s.dir, before, sizeof before);
    run_result r;
    run(&r, ARGS("golden", "deltarule", "--out", out, "--T", "4"));
    char want[512];
    snprintf(want, sizeof want, "q35lab: %s: rename from %s.tmp.%ld failed: Is a directory", out, out, (long)r.pid);
    expect_stderr(&r, 1, want);
    listing(s.dir, after, sizeof after);
    assert_string_equal(before, after);
    listing(out, inside, sizeof inside);
    assert_string_equal(inside, "");
    assert_int_equal(rmdir(out), 0);
    scratch_remove(&s);
}

/* A bad preset: neither the folder nor any file in it is made. */
static void test_model_init_bad_preset(void **state)
{
    (void)state;
    scratch s;
    scratch_new(&s);
    char names[512], sub[128];
    q35_preset_names(names, sizeof names);
    test_tmpdir_path(sub, sizeof sub, s.dir, "model");
    expect_failure(s.dir, ARGS("model", "init", "--preset", "qwen4", "--out", s.dir), 2,
                   "q35lab: unknown preset 'qwen4'; valid presets: %s", names);
    expect_failure(s.dir, ARGS("model", "init", "--preset", "qwen4", "--out", sub), 2,
                   "q35lab: unknown preset 'qwen4'; valid presets: %s", names);
    assert_int_equal(access(sub, F_OK), -1);
    scratch_remove(&s);
}

/* An unknown implementation: neither the JSON nor the CSV results file appears. */
static void test_bench_bad_impl_writes_no_results(void **state)
{
    (void)state;
    scratch s;
    scratch_new(&s);
    char json[128], csv[128];
    test_tmpdir_path(json, sizeof json, s.dir, "F.jsonl");
    test_tmpdir_path(csv, sizeof csv, s.dir, "G.csv");
    expect_failure(s.dir,
                   ARGS("bench", "deltarule", "--T", "1", "--reps", "1", "--impl", "recurrent,sideways", "--counters",
                        "none", "--json", json, "--csv", csv),
                   2, "q35lab: no deltarule implementation 'sideways' (see `q35lab list`)");
    assert_int_equal(access(json, F_OK), -1);
    assert_int_equal(access(csv, F_OK), -1);
    expect_failure(s.dir,
                   ARGS("bench", "conv", "--grad", "--C", "16", "--T", "3", "--reps", "1", "--impl", "direct,sideways",
                        "--json", json, "--csv", csv),
                   2, "q35lab: no conv_grad implementation 'sideways' (see `q35lab list`)");
    assert_int_equal(access(json, F_OK), -1);
    assert_int_equal(access(csv, F_OK), -1);
    scratch_remove(&s);
}

/* --weights / --quant-only / --against (docs/quantization.md §5-6): one line, exit 2, before loading. */
static void test_quant_options(void **state)
{
    (void)state;
    expect_failure(TINY_DIR, ARGS("validate", "--model", TINY_DIR, "--weights", "q5"), 2,
                   "error: --weights must be q8, q4, q8_0 or q4_0, got 'q5'");
    expect_failure(TINY_DIR, ARGS("validate", "--model", TINY_DIR, "--quant-only", "moe"), 2,
                   "error: --quant-only needs --weights q8|q4");
    expect_failure(TINY_DIR, ARGS("generate", "--model", TINY_DIR, "--weights", "q8", "--quant-only", "moe,experts"), 2,
                   "error: --quant-only: unknown weight family 'experts' (known: deltanet, attention, mlp, moe, lm_head, all)");
    expect_failure(TINY_DIR, ARGS("validate", "--model", TINY_DIR, "--against", "full"), 2,
                   "error: --against takes 'full' and goes with --weights q8|q4, got 'full' without --weights");
    expect_failure(TINY_DIR, ARGS("bench", "model", "--model", TINY_DIR, "--weights", "int8"), 2,
                   "error: --weights must be q8, q4, q8_0 or q4_0, got 'int8'");
    expect_failure(TINY_DIR, ARGS("bench", "linear", "--N", "100", "--weights", "q4"), 2,
                   "q35lab: bench linear: q8 and q4 interleave 16 rows, N=100 is not a multiple of 16 (q8_0 and q4_0 "
                   "keep ggml's rows)");
    expect_failure(TINY_DIR, ARGS("bench", "linear", "--cold", "0"), 2,
                   "q35lab bench linear: --cold expects an integer in [1, 1048576], got '0'");
}

int main(int argc, char **argv)
{
    (void)argc;
    /* build/tests/test_cli_errors -> build/q35lab (build-san likewise) */
    char self[512];
    snprintf(self, sizeof self, "%s", argv[0]);
    snprintf(g_cli, sizeof g_cli, "%s/../q35lab", dirname(self));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_sizes),
        cmocka_unit_test(test_model_truncated_in_data_area),
        cmocka_unit_test(test_model_truncated_in_header),
        cmocka_unit_test(test_model_header_length_past_end),
        cmocka_unit_test(test_model_header_not_json),
        cmocka_unit_test(test_model_overlapping_offsets),
        cmocka_unit_test(test_model_offsets_past_data_area),
        cmocka_unit_test(test_model_shape_count_overflows),
        cmocka_unit_test(test_model_shape_size_mismatch),
        cmocka_unit_test(test_model_unknown_dtype),
        cmocka_unit_test(test_model_missing_tensor),
        cmocka_unit_test(test_model_misshaped_tensor),
        cmocka_unit_test(test_model_nan_weight),
        cmocka_unit_test(test_config_zero_size),
        cmocka_unit_test(test_config_negative_size),
        cmocka_unit_test(test_config_huge_size),
        cmocka_unit_test(test_config_layer_types_wrong_length),
        cmocka_unit_test(test_index_names_missing_shard),
        cmocka_unit_test(test_model_folder_empty),
        cmocka_unit_test(test_model_folder_missing),
        cmocka_unit_test(test_deltarule_golden_truncated),
        cmocka_unit_test(test_deltarule_golden_garbled),
        cmocka_unit_test(test_deltarule_golden_missing_tensor),
        cmocka_unit_test(test_moe_golden_truncated),
        cmocka_unit_test(test_moe_golden_garbled),
        cmocka_unit_test(test_moe_golden_expert_out_of_range),
        cmocka_unit_test(test_validate_golden_token_out_of_vocabulary),
        cmocka_unit_test(test_golden_bad_option_after_out),
        cmocka_unit_test(test_golden_out_in_missing_folder),
        cmocka_unit_test(test_golden_out_is_a_folder),
        cmocka_unit_test(test_model_init_bad_preset),
        cmocka_unit_test(test_bench_bad_impl_writes_no_results),
        cmocka_unit_test(test_quant_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
