/* test_safetensors_stream.c - cmocka suite for the streaming writer of
 * common/safetensors.{h,c}: st_writer_add_deferred, st_sink_write and
 * st_writer_write_stream.
 *
 * Round trips mix deferred and in-memory tensors and read back through
 * st_open; the failure tests (fill error, short fill, overlong fill) check
 * that neither the target nor a temporary file is left, and that an older
 * file at the target is untouched. */
#include "common/safetensors.h"
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
#include <time.h>

static char g_dir[64];

static int group_setup(void **state)
{
    (void)state;
    return test_tmpdir_make(g_dir, "st_stream");
}

static int group_teardown(void **state)
{
    (void)state;
    return test_tmpdir_remove(g_dir);
}

static void tpath(char *buf, size_t len, const char *name) { test_tmpdir_path(buf, len, g_dir, name); }

/* Entries of the scratch directory whose name starts with prefix. */
static int count_entries(const char *prefix)
{
    DIR *d = opendir(g_dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* Deterministic byte pattern of tensor `index`. */
static unsigned char pattern(int index, size_t k) { return (unsigned char)(index * 37 + k * 11 + 3); }

typedef struct {
    int calls;
    int order[16];           /* indices in call order */
    size_t piece;            /* bytes per st_sink_write */
    int fail_at;             /* index whose fill fails, -1 none */
    int short_at;            /* index whose fill writes one byte less, -1 none */
    int long_at;             /* index whose fill writes one byte more, -1 none */
    int quiet;               /* fail_at fails without a message */
    const size_t *sizes;     /* bytes of each tensor, by index */
} fill_state;

static int fill_pattern(void *ctx, int index, const char *name, st_sink *sink, char *err,
                        size_t errlen)
{
    fill_state *fs = ctx;
    (void)name;
    if (fs->calls < 16)
        fs->order[fs->calls] = index;
    fs->calls++;
    if (index == fs->fail_at) {
        if (!fs->quiet)
            snprintf(err, errlen, "synthetic failure");
        return -1;
    }
    size_t n = fs->sizes[index];
    if (index == fs->short_at)
        n--;
    if (index == fs->long_at)
        n++;
    unsigned char buf[64];
    for (size_t off = 0; off < n;) {
        size_t k = n - off < fs->piece ? n - off : fs->piece;
        if (k > sizeof buf)
            k = sizeof buf;
        for (size_t j = 0; j < k; j++)
            buf[j] = pattern(index, off + j);
        if (st_sink_write(sink, buf, k))
            return -1;
        off += k;
    }
    return 0;
}

/* Tensors 0 (in memory), 1 (deferred F32 3x5), 2 (deferred BF16 7),
 * 3 (deferred, empty), 4 (in memory I32 scalar), 5 (deferred I64 2x2x2). */
static const float mem0[4] = {1.5f, -2.0f, 0.25f, 8.0f};
static const int32_t mem4 = -7;
static const size_t sizes[6] = {16, 60, 14, 0, 4, 64};

static st_writer *make_writer(void)
{
    st_writer *w = st_writer_new();
    assert_non_null(w);
    assert_int_equal(st_writer_add(w, "mem0", ST_F32, 1, (int64_t[]){4}, mem0), 0);
    assert_int_equal(st_writer_add_deferred(w, "def1", ST_F32, 2, (int64_t[]){3, 5}), 0);
    assert_int_equal(st_writer_add_deferred(w, "def2", ST_BF16, 1, (int64_t[]){7}), 0);
    assert_int_equal(st_writer_add_deferred(w, "def3_empty", ST_F16, 2, (int64_t[]){0, 9}), 0);
    assert_int_equal(st_writer_add(w, "mem4", ST_I32, 0, NULL, &mem4), 0);
    assert_int_equal(st_writer_add_deferred(w, "def5", ST_I64, 3, (int64_t[]){2, 2, 2}), 0);
    assert_int_equal(st_writer_meta(w, "format", "pt"), 0);
    return w;
}

static void check_pattern(const st_tensor *t, int index)
{
    assert_non_null(t);
    assert_int_equal(t->nbytes, sizes[index]);
    const unsigned char *b = t->data;
    for (size_t k = 0; k < t->nbytes; k++)
        assert_int_equal(b[k], pattern(index, k));
}

static void roundtrip(size_t piece)
{
    char p[128], err[512];
    tpath(p, sizeof p, "rt.safetensors");
    st_writer *w = make_writer();
    fill_state fs = {.piece = piece, .fail_at = -1, .short_at = -1, .long_at = -1, .sizes = sizes};
    assert_int_equal(st_writer_write_stream(w, p, fill_pattern, &fs, err, sizeof err), 0);
    /* called once per deferred tensor, in file order */
    assert_int_equal(fs.calls, 4);
    assert_int_equal(fs.order[0], 1);
    assert_int_equal(fs.order[1], 2);
    assert_int_equal(fs.order[2], 3);
    assert_int_equal(fs.order[3], 5);
    st_writer_free(w);

    st_file f;
    if (st_open(p, &f, err, sizeof err) != 0)
        fail_msg("st_open: %s", err);
    assert_int_equal(f.n_tensors, 6);
    assert_string_equal(st_meta(&f, "format"), "pt");
    const st_tensor *t = st_find(&f, "mem0");
    assert_non_null(t);
    assert_memory_equal(t->data, mem0, sizeof mem0);
    t = st_find(&f, "def1");
    check_pattern(t, 1);
    assert_int_equal(t->dtype, ST_F32);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 3);
    assert_int_equal(t->shape[1], 5);
    check_pattern(st_find(&f, "def2"), 2);
    assert_int_equal(st_find(&f, "def2")->dtype, ST_BF16);
    t = st_find(&f, "def3_empty");
    assert_non_null(t);
    assert_int_equal(t->nbytes, 0);
    t = st_find(&f, "mem4");
    assert_non_null(t);
    assert_memory_equal(t->data, &mem4, 4);
    check_pattern(st_find(&f, "def5"), 5);
    /* header order is the order of adding */
    assert_string_equal(f.tensors[0].name, "mem0");
    assert_string_equal(f.tensors[5].name, "def5");
    st_close(&f);
    assert_int_equal(count_entries("rt.safetensors.tmp"), 0);
    remove(p);
}

static void test_roundtrip_byte_pieces(void **state)
{
    (void)state;
    roundtrip(1);
}

static void test_roundtrip_odd_pieces(void **state)
{
    (void)state;
    roundtrip(7);
}

static void test_roundtrip_whole_pieces(void **state)
{
    (void)state;
    roundtrip(64);
}

/* A failing case: rc -1, the message contains want, no file and no temp file
 * is left, and an older file at the target keeps its bytes. */
static void expect_failure(fill_state *fs, const char *want)
{
    char p[128], err[512];
    tpath(p, sizeof p, "fail.safetensors");
    FILE *old = fopen(p, "w");
    assert_non_null(old);
    fputs("old contents", old);
    fclose(old);

    st_writer *w = make_writer();
    fs->piece = 5;
    fs->sizes = sizes;
    assert_int_equal(st_writer_write_stream(w, p, fill_pattern, fs, err, sizeof err), -1);
    st_writer_free(w);
    if (!strstr(err, want))
        fail_msg("message '%s' lacks '%s'", err, want);
    assert_non_null(strstr(err, p));
    assert_int_equal(count_entries("fail.safetensors.tmp"), 0);
    char buf[32] = "";
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof buf, f));
    fclose(f);
    assert_string_equal(buf, "old contents");
    remove(p);
    assert_false(exists(p));
}

static void test_fill_error_leaves_nothing(void **state)
{
    (void)state;
    fill_state fs = {.fail_at = 2, .short_at = -1, .long_at = -1};
    expect_failure(&fs, "tensor 'def2': synthetic failure");
    assert_int_equal(fs.calls, 2); /* stops at the failing tensor */
}

static void test_fill_error_without_message(void **state)
{
    (void)state;
    /* fails without writing a message: the writer names the tensor */
    fill_state fs = {.fail_at = 5, .short_at = -1, .long_at = -1, .quiet = 1};
    expect_failure(&fs, "tensor 'def5': fill failed");
}

static void test_short_fill_rejected(void **state)
{
    (void)state;
    fill_state fs = {.fail_at = -1, .short_at = 1, .long_at = -1};
    expect_failure(&fs, "tensor 'def1': fill wrote 59 of its 60 bytes");
}

static void test_long_fill_rejected(void **state)
{
    (void)state;
    fill_state fs = {.fail_at = -1, .short_at = -1, .long_at = 2};
    expect_failure(&fs, "tensor 'def2': fill wrote more than its 14 bytes");
}

static void test_plain_write_refuses_deferred(void **state)
{
    (void)state;
    char p[128], err[512];
    tpath(p, sizeof p, "plain.safetensors");
    st_writer *w = make_writer();
    assert_int_equal(st_writer_write(w, p, err, sizeof err), -1);
    assert_non_null(strstr(err, "deferred"));
    assert_int_equal(st_writer_write_stream(w, p, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "fill"));
    assert_false(exists(p));
    st_writer_free(w);

    /* without deferred tensors the stream writer needs no callback */
    w = st_writer_new();
    assert_int_equal(st_writer_add(w, "a", ST_F32, 1, (int64_t[]){4}, mem0), 0);
    assert_int_equal(st_writer_write_stream(w, p, NULL, NULL, err, sizeof err), 0);
    st_writer_free(w);
    st_file f;
    assert_int_equal(st_open(p, &f, err, sizeof err), 0);
    assert_memory_equal(st_find(&f, "a")->data, mem0, sizeof mem0);
    st_close(&f);
    remove(p);
}

static void test_deferred_validation(void **state)
{
    (void)state;
    st_writer *w = st_writer_new();
    assert_int_equal(st_writer_add_deferred(w, "x", ST_BF16, 2, (int64_t[]){2, 3}), 0);
    assert_int_equal(st_writer_add_deferred(w, "x", ST_BF16, 1, (int64_t[]){2}), -1);
    assert_non_null(strstr(st_writer_error(w), "duplicate"));
    assert_int_equal(st_writer_add(w, "x", ST_F32, 1, (int64_t[]){4}, mem0), -1);
    assert_int_equal(st_writer_add_deferred(w, "__metadata__", ST_F32, 1, (int64_t[]){1}), -1);
    assert_int_equal(st_writer_add_deferred(w, "", ST_F32, 1, (int64_t[]){1}), -1);
    assert_int_equal(st_writer_add_deferred(w, NULL, ST_F32, 1, (int64_t[]){1}), -1);
    assert_int_equal(st_writer_add_deferred(w, "neg", ST_F32, 2, (int64_t[]){2, -1}), -1);
    assert_non_null(strstr(st_writer_error(w), "negative"));
    assert_int_equal(st_writer_add_deferred(w, "big", ST_F32, 3,
                                            (int64_t[]){1ll << 40, 1ll << 40, 1ll << 40}), -1);
    assert_non_null(strstr(st_writer_error(w), "overflow"));
    assert_int_equal(st_writer_add_deferred(w, "rank", ST_F32, 9, (int64_t[9]){1}), -1);
    assert_int_equal(st_writer_add_deferred(w, "dt", (st_dtype)42, 1, (int64_t[]){1}), -1);
    st_writer_free(w);
}

/* 30000 tensors: the name set grows many times and still finds duplicates;
 * the header and every offset come out right. */
static int fill_index(void *ctx, int index, const char *name, st_sink *sink, char *err,
                      size_t errlen)
{
    (void)ctx; (void)name; (void)err; (void)errlen;
    int32_t v[2] = {index, -index};
    return st_sink_write(sink, v, sizeof v);
}

static void test_many_tensors(void **state)
{
    (void)state;
    enum { N = 30000 };
    char p[128], err[512], name[64];
    tpath(p, sizeof p, "many.safetensors");
    st_writer *w = st_writer_new();
    const clock_t t0 = clock();
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.w", i / 256, i % 256);
        assert_int_equal(st_writer_add_deferred(w, name, ST_I32, 1, (int64_t[]){2}), 0);
    }
    /* quadratic duplicate checks would take seconds here */
    assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < 2.0);
    assert_int_equal(st_writer_add_deferred(w, "model.layers.7.mlp.experts.3.w", ST_I32, 1,
                                            (int64_t[]){2}), -1);
    assert_int_equal(st_writer_write_stream(w, p, fill_index, NULL, err, sizeof err), 0);
    st_writer_free(w);
    st_file f;
    if (st_open(p, &f, err, sizeof err))
        fail_msg("st_open: %s", err);
    assert_int_equal(f.n_tensors, N);
    for (int i = 0; i < N; i += 997) {
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.w", i / 256, i % 256);
        const st_tensor *t = st_find(&f, name);
        assert_non_null(t);
        int32_t v[2];
        assert_int_equal(st_read_i32(t, v, 2, err, sizeof err), 0);
        assert_int_equal(v[0], i);
        assert_int_equal(v[1], -i);
    }
    st_close(&f);
    remove(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_byte_pieces),
        cmocka_unit_test(test_roundtrip_odd_pieces),
        cmocka_unit_test(test_roundtrip_whole_pieces),
        cmocka_unit_test(test_fill_error_leaves_nothing),
        cmocka_unit_test(test_fill_error_without_message),
        cmocka_unit_test(test_short_fill_rejected),
        cmocka_unit_test(test_long_fill_rejected),
        cmocka_unit_test(test_plain_write_refuses_deferred),
        cmocka_unit_test(test_deferred_validation),
        cmocka_unit_test(test_many_tensors),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
