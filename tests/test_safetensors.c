/* test_safetensors.c - cmocka suite for common/safetensors.{h,c}.
 *
 * Groups: 16-bit float conversions, writer/reader round trips, typed reads
 * and st_load_f32, malformed files (each crafted byte by byte), and the
 * independent golden samples.  Temporary files live in a mkdtemp directory
 * per group that the group teardown removes. */
#include "common/safetensors.h"
#include "tests/support/tmpdir.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GOLDEN_GLOB "../shared/golden-samples/deltarule/*.safetensors"

/* ------------------------------------------------------------------ */
/* Temp directory and file helpers                                     */
/* ------------------------------------------------------------------ */

static char g_dir[64];

static int group_setup(void **state)
{
    (void)state;
    return test_tmpdir_make(g_dir, "st_test");
}

/* Remove whatever a failing test left behind, then the directory. */
static int group_teardown(void **state)
{
    (void)state;
    return test_tmpdir_remove(g_dir);
}

static void tpath(char *buf, size_t len, const char *name) { test_tmpdir_path(buf, len, g_dir, name); }

static int count_dir_entries(void)
{
    DIR *d = opendir(g_dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static void write_bytes(const char *path, const void *buf, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    if (len)
        assert_int_equal(fwrite(buf, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

/* A file with the given header text (length prefix = strlen) followed by
 * datalen bytes of data (pattern 0..255). */
static void write_raw(const char *path, const char *header, size_t datalen)
{
    size_t hl = strlen(header);
    unsigned char *buf = malloc(8 + hl + datalen + 1);
    assert_non_null(buf);
    uint64_t n = hl;
    memcpy(buf, &n, 8);
    memcpy(buf + 8, header, hl);
    for (size_t i = 0; i < datalen; i++)
        buf[8 + hl + i] = (unsigned char)i;
    write_bytes(path, buf, 8 + hl + datalen);
    free(buf);
}

/* st_open must fail with a message naming the file and containing word,
 * leave *f zeroed, and st_close must then be safe (even twice). */
static void expect_open_fail(const char *path, const char *word)
{
    st_file f;
    memset(&f, 0xAB, sizeof f);   /* st_open must not trust prior contents */
    char err[512] = "";
    assert_int_equal(st_open(path, &f, err, sizeof err), -1);
    if (!strstr(err, word) || !strstr(err, path))
        fail_msg("message \"%s\" lacks \"%s\" or the path", err, word);
    assert_null(f.map);
    assert_null(f.tensors);
    assert_int_equal(f.n_tensors, 0);
    st_close(&f);
    st_close(&f);
}

static void expect_raw_fail(const char *header, size_t datalen, const char *word)
{
    char p[256];
    tpath(p, sizeof p, "bad.safetensors");
    write_raw(p, header, datalen);
    expect_open_fail(p, word);
    unlink(p);
}

/* ------------------------------------------------------------------ */
/* Conversions                                                         */
/* ------------------------------------------------------------------ */

static uint32_t fbits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bitsf(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* 2^e by repeated exact doubling/halving (no libm). */
static double pow2(int e)
{
    double r = 1.0;
    for (; e > 0; e--) r *= 2.0;
    for (; e < 0; e++) r *= 0.5;
    return r;
}

/* binary16 value straight from the IEEE 754 definition. */
static double half_ref(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 0)
        v = m * pow2(-24);
    else if (e == 31)
        v = m ? (double)NAN : (double)INFINITY;
    else
        v = pow2(e - 15) * (1.0 + m / 1024.0);
    return s ? -v : v;
}

static int half_is_nan(uint16_t h) { return (h & 0x7C00) == 0x7C00 && (h & 0x3FF); }

static void test_bf16_known(void **state)
{
    (void)state;
    assert_int_equal(st_f32_to_bf16(1.0f), 0x3F80);
    assert_true(st_bf16_to_f32(0x3F80) == 1.0f);
    assert_int_equal(st_f32_to_bf16(-2.0f), 0xC000);
    assert_int_equal(st_f32_to_bf16(0.0f), 0x0000);
    assert_int_equal(st_f32_to_bf16(-0.0f), 0x8000);
    assert_int_equal(st_f32_to_bf16(INFINITY), 0x7F80);
    assert_int_equal(st_f32_to_bf16(-INFINITY), 0xFF80);
    assert_true(st_bf16_to_f32(0x7F80) == INFINITY);
    /* RNE ties: lower half exactly 0x8000 goes to the even neighbour. */
    assert_int_equal(st_f32_to_bf16(bitsf(0x3F808000)), 0x3F80);
    assert_int_equal(st_f32_to_bf16(bitsf(0x3F818000)), 0x3F82);
    assert_int_equal(st_f32_to_bf16(bitsf(0x3F808001)), 0x3F81);
    assert_int_equal(st_f32_to_bf16(bitsf(0x3F807FFF)), 0x3F80);
    /* FLT_MAX is above the last bf16 midpoint: rounds to inf. */
    assert_int_equal(st_f32_to_bf16(bitsf(0x7F7FFFFF)), 0x7F80);
    /* NaN stays NaN, including a signalling NaN whose payload is all in the
     * dropped low bits (plain truncation would make it inf). */
    uint16_t qn = st_f32_to_bf16(NAN), sn = st_f32_to_bf16(bitsf(0x7F800001));
    assert_true((qn & 0x7F80) == 0x7F80 && (qn & 0x7F));
    assert_true((sn & 0x7F80) == 0x7F80 && (sn & 0x7F));
    assert_true(isnan(st_bf16_to_f32(0x7FC0)));
}

static void test_bf16_exhaustive(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = st_bf16_to_f32((uint16_t)h);
        assert_int_equal(fbits(f), h << 16);   /* definition: top 16 bits */
        if (isnan(f))
            continue;
        assert_int_equal(st_f32_to_bf16(f), h);
        /* The exact midpoint above each finite value rounds to even. */
        if ((h & 0x7FFF) < 0x7F80) {
            uint16_t want = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
            assert_int_equal(st_f32_to_bf16(bitsf((h << 16) | 0x8000)), want);
        }
    }
}

static void test_f16_known(void **state)
{
    (void)state;
    assert_int_equal(st_f32_to_f16(1.0f), 0x3C00);
    assert_true(st_f16_to_f32(0x3C00) == 1.0f);
    assert_int_equal(st_f32_to_f16(-2.0f), 0xC000);
    assert_int_equal(st_f32_to_f16(65504.0f), 0x7BFF);
    assert_true(st_f16_to_f32(0x7BFF) == 65504.0f);
    assert_true(st_f16_to_f32(0x0001) == 0x1p-24f);     /* smallest subnormal */
    assert_int_equal(st_f32_to_f16(0x1p-24f), 0x0001);
    assert_true(st_f16_to_f32(0x03FF) == 1023 * 0x1p-24f);
    assert_true(st_f16_to_f32(0x0400) == 0x1p-14f);     /* smallest normal */
    assert_int_equal(st_f32_to_f16(0x1p-14f), 0x0400);
    assert_true(st_f16_to_f32(0x8000) == 0.0f && signbit(st_f16_to_f32(0x8000)));
    assert_int_equal(st_f32_to_f16(-0.0f), 0x8000);
    assert_true(st_f16_to_f32(0x7C00) == INFINITY);
    assert_true(st_f16_to_f32(0xFC00) == -INFINITY);
    assert_int_equal(st_f32_to_f16(INFINITY), 0x7C00);
    assert_int_equal(st_f32_to_f16(-INFINITY), 0xFC00);
    assert_true(isnan(st_f16_to_f32(0x7E00)));
    assert_true(half_is_nan(st_f32_to_f16(NAN)));
    assert_true(half_is_nan(st_f32_to_f16(bitsf(0x7F800001))));
    /* Overflow: 65520 is the midpoint to 2^16 and ties to even (= inf). */
    assert_int_equal(st_f32_to_f16(65519.0f), 0x7BFF);
    assert_int_equal(st_f32_to_f16(65520.0f), 0x7C00);
    assert_int_equal(st_f32_to_f16(1e10f), 0x7C00);
    /* Ties to even among normals and subnormals. */
    assert_int_equal(st_f32_to_f16(1.0f + 0x1p-11f), 0x3C00);
    assert_int_equal(st_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3C02);
    assert_int_equal(st_f32_to_f16(0x1p-25f), 0x0000);
    assert_int_equal(st_f32_to_f16(3 * 0x1p-25f), 0x0002);
    assert_int_equal(st_f32_to_f16(0x1.8p-25f), 0x0001);  /* 0.75 ulp up */
    assert_int_equal(st_f32_to_f16(0x1p-26f), 0x0000);
    assert_int_equal(st_f32_to_f16(bitsf(0x00000001)), 0x0000); /* f32 denormal */
    /* Largest subnormal + half ulp ties up into the smallest normal. */
    assert_int_equal(st_f32_to_f16(1023.5f * 0x1p-24f), 0x0400);
}

static void test_f16_exhaustive(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = st_f16_to_f32((uint16_t)h);
        double ref = half_ref((uint16_t)h);
        if (half_is_nan((uint16_t)h)) {
            assert_true(isnan(f));
            assert_true(half_is_nan(st_f32_to_f16(f)));
            continue;
        }
        assert_true((double)f == ref);
        assert_int_equal(signbit(f) != 0, (h >> 15) != 0);
        assert_int_equal(st_f32_to_f16(f), h);
        /* Midpoint to the next half (exact in float) goes to the even one. */
        if ((h & 0x7FFF) < 0x7BFF) {
            float mid = (float)((ref + half_ref((uint16_t)(h + 1))) / 2);
            uint16_t want = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
            assert_int_equal(st_f32_to_f16(mid), want);
        }
    }
}

/* Reference f32 -> f16 for positive finite x: binary search the sorted
 * positive halves, pick the nearer neighbour, ties to even.  0x7C00 stands
 * for 2^16 here, which is how IEEE overflow rounding behaves. */
static uint16_t f16_nearest_ref(double x)
{
    uint32_t lo = 0, hi = 0x7C00;   /* val(lo) <= x < val(hi) */
    if (x >= 65536.0)
        return 0x7C00;
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if (half_ref((uint16_t)mid) <= x) lo = mid; else hi = mid;
    }
    double a = half_ref((uint16_t)lo), b = hi == 0x7C00 ? 65536.0 : half_ref((uint16_t)hi);
    if (x - a < b - x) return (uint16_t)lo;
    if (x - a > b - x) return (uint16_t)hi;
    return (lo & 1) ? (uint16_t)hi : (uint16_t)lo;
}

static void test_f16_random_vs_reference(void **state)
{
    (void)state;
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 300000; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        /* exponents 0..150 cover zero/denormals through beyond 65504 */
        uint32_t bits = (uint32_t)(s >> 32) & 0x807FFFFFu;
        bits |= (uint32_t)((s >> 16) % 151) << 23;
        float f = bitsf(bits);
        uint16_t want = f16_nearest_ref(fabs((double)f)) | (uint16_t)((bits >> 16) & 0x8000);
        if (st_f32_to_f16(f) != want)
            fail_msg("f32 0x%08x -> 0x%04x, reference 0x%04x", bits, st_f32_to_f16(f), want);
    }
}

/* ------------------------------------------------------------------ */
/* Round trips                                                         */
/* ------------------------------------------------------------------ */

static const float rt_f32[6] = {1.5f, -2.25f, 0.0f, 3e-38f, 1e30f, -0.0f};
static const uint16_t rt_f16[4] = {0x3C00, 0x0001, 0x7BFF, 0xFC00};
static const uint16_t rt_bf16[4] = {0x3F80, 0xC000, 0x7F80, 0x0001};
static const int32_t rt_i32[3] = {INT32_MIN, 0, INT32_MAX};
static const int64_t rt_i64[4] = {INT64_MIN, -1, 7, INT64_MAX};
static const float rt_scalar = 42.0f;
static const uint16_t rt_odd[3] = {0x3C00, 0x4000, 0x4200};   /* 1, 2, 3 in f16 */
static const float rt_after[2] = {5.0f, 6.0f};

typedef struct {
    const char *name;
    st_dtype dt;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
} rt_case;

static const rt_case rt_cases[] = {
    {"f32", ST_F32, 2, {2, 3}, rt_f32, sizeof rt_f32},
    {"f16", ST_F16, 1, {4}, rt_f16, sizeof rt_f16},
    {"bf16", ST_BF16, 2, {2, 2}, rt_bf16, sizeof rt_bf16},
    {"i32", ST_I32, 1, {3}, rt_i32, sizeof rt_i32},
    {"i64", ST_I64, 3, {2, 1, 2}, rt_i64, sizeof rt_i64},
    {"scalar", ST_F32, 0, {0}, &rt_scalar, sizeof rt_scalar},
    {"empty", ST_F32, 2, {0, 5}, NULL, 0},
    {"odd", ST_F16, 1, {3}, rt_odd, sizeof rt_odd},      /* misaligns "after" */
    {"after", ST_F32, 1, {2}, rt_after, sizeof rt_after},
    {"eight", ST_I32, 8, {1, 1, 1, 1, 1, 1, 1, 3}, rt_i32, sizeof rt_i32},
};
#define N_RT ((int)(sizeof rt_cases / sizeof rt_cases[0]))

static const char *rt_meta[][2] = {
    {"kernel", "gated_delta_rule"},
    {"tricky", "quote \" backslash \\ newline \n tab \t unicode \xc3\xa9 \xe2\x82\xac"},
    {"blank", ""},
};
#define N_META ((int)(sizeof rt_meta / sizeof rt_meta[0]))

/* Write every rt_case plus metadata to path. */
static void write_rt_file(const char *path)
{
    st_writer *w = st_writer_new();
    assert_non_null(w);
    for (int i = 0; i < N_RT; i++) {
        const rt_case *c = &rt_cases[i];
        assert_int_equal(st_writer_add(w, c->name, c->dt, c->ndim, c->shape, c->data), 0);
    }
    for (int i = 0; i < N_META; i++)
        assert_int_equal(st_writer_meta(w, rt_meta[i][0], rt_meta[i][1]), 0);
    char err[256] = "";
    if (st_writer_write(w, path, err, sizeof err) != 0)
        fail_msg("write: %s", err);
    st_writer_free(w);
}

static void test_roundtrip_all_dtypes(void **state)
{
    (void)state;
    char p[256], err[256] = "";
    tpath(p, sizeof p, "rt.safetensors");
    write_rt_file(p);
    assert_int_equal(count_dir_entries(), 1);   /* no PATH.tmp.<pid> left */

    st_file f;
    if (st_open(p, &f, err, sizeof err) != 0)
        fail_msg("open: %s", err);
    assert_int_equal(f.n_tensors, N_RT);
    for (int i = 0; i < N_RT; i++) {
        const rt_case *c = &rt_cases[i];
        const st_tensor *t = st_find(&f, c->name);
        assert_non_null(t);
        assert_ptr_equal(t, &f.tensors[i]);     /* header order preserved */
        assert_int_equal(t->dtype, c->dt);
        assert_int_equal(t->ndim, c->ndim);
        for (int d = 0; d < c->ndim; d++)
            assert_int_equal(t->shape[d], c->shape[d]);
        assert_int_equal(t->nbytes, c->nbytes);
        assert_int_equal((uint64_t)st_numel(t) * st_dtype_size(t->dtype), c->nbytes);
        if (c->nbytes)
            assert_memory_equal(t->data, c->data, c->nbytes);
    }
    assert_int_equal(f.n_meta, N_META);
    for (int i = 0; i < N_META; i++)
        assert_string_equal(st_meta(&f, rt_meta[i][0]), rt_meta[i][1]);
    assert_null(st_find(&f, "nope"));
    assert_null(st_meta(&f, "nope"));

    /* Header padded with spaces so the data area starts 8-aligned. */
    uint64_t n;
    memcpy(&n, f.map, 8);
    assert_int_equal((8 + n) % 8, 0);
    assert_ptr_equal(f.tensors[0].data, (const char *)f.map + 8 + n);
    assert_int_equal(((const char *)f.map)[8 + n - 1] == ' ' ||
                     ((const char *)f.map)[8 + n - 1] == '}', 1);
    st_close(&f);
    st_close(&f);
    unlink(p);
}

static void test_roundtrip_empty_writer(void **state)
{
    (void)state;
    char p[256], err[256] = "";
    tpath(p, sizeof p, "empty.safetensors");
    st_writer *w = st_writer_new();
    assert_int_equal(st_writer_write(w, p, err, sizeof err), 0);
    st_writer_free(w);
    st_file f;
    assert_int_equal(st_open(p, &f, err, sizeof err), 0);
    assert_int_equal(f.n_tensors, 0);
    assert_int_equal(f.n_meta, 0);
    assert_int_equal(f.map_len, 16);   /* 8 + "{}" padded to 8 */
    st_close(&f);
    unlink(p);
}

static void test_writer_replaces_atomically(void **state)
{
    (void)state;
    char p[256], err[256] = "";
    tpath(p, sizeof p, "replace.safetensors");
    write_rt_file(p);
    st_writer *w = st_writer_new();
    int64_t shp[1] = {2};
    assert_int_equal(st_writer_add(w, "only", ST_F32, 1, shp, rt_after), 0);
    assert_int_equal(st_writer_write(w, p, err, sizeof err), 0);
    st_writer_free(w);
    assert_int_equal(count_dir_entries(), 1);
    st_file f;
    assert_int_equal(st_open(p, &f, err, sizeof err), 0);
    assert_int_equal(f.n_tensors, 1);
    assert_non_null(st_find(&f, "only"));
    st_close(&f);
    unlink(p);
}

static void test_writer_rejects(void **state)
{
    (void)state;
    st_writer *w = st_writer_new();
    int64_t ok[1] = {2}, neg[2] = {2, -1}, big[3] = {1LL << 40, 1LL << 40, 1LL << 40};
    int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    assert_string_equal(st_writer_error(w), "");
    assert_int_equal(st_writer_add(w, "a", ST_F32, 1, ok, rt_after), 0);
    assert_int_equal(st_writer_add(w, "a", ST_F32, 1, ok, rt_after), -1);
    assert_non_null(strstr(st_writer_error(w), "duplicate"));
    assert_int_equal(st_writer_add(w, "__metadata__", ST_F32, 1, ok, rt_after), -1);
    assert_int_equal(st_writer_add(w, "", ST_F32, 1, ok, rt_after), -1);
    assert_int_equal(st_writer_add(w, NULL, ST_F32, 1, ok, rt_after), -1);
    assert_int_equal(st_writer_add(w, "n", ST_F32, 2, neg, rt_after), -1);
    assert_non_null(strstr(st_writer_error(w), "negative"));
    assert_int_equal(st_writer_add(w, "b", ST_F32, 3, big, rt_after), -1);
    assert_non_null(strstr(st_writer_error(w), "overflow"));
    assert_int_equal(st_writer_add(w, "c", ST_F32, 9, nine, rt_after), -1);
    assert_int_equal(st_writer_add(w, "d", (st_dtype)99, 1, ok, rt_after), -1);
    assert_int_equal(st_writer_add(w, "e", ST_F32, 1, ok, NULL), -1);
    assert_int_equal(st_writer_meta(w, "k", "v"), 0);
    assert_int_equal(st_writer_meta(w, "k", "w"), -1);
    assert_non_null(strstr(st_writer_error(w), "duplicate"));
    /* Unwritable destination: error, nothing left behind. */
    char err[256] = "";
    assert_int_equal(st_writer_write(w, "/nonexistent-dir/x.safetensors", err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent-dir/x.safetensors"));
    st_writer_free(w);
    st_writer_free(NULL);
}

static void test_many_tensors(void **state)
{
    (void)state;
    char p[256], err[256] = "", name[32];
    tpath(p, sizeof p, "many.safetensors");
    static int32_t vals[500];
    st_writer *w = st_writer_new();
    int64_t shp[1] = {1};
    for (int i = 0; i < 500; i++) {
        vals[i] = i * 3;
        snprintf(name, sizeof name, "t%03d", i);
        assert_int_equal(st_writer_add(w, name, ST_I32, 1, shp, &vals[i]), 0);
    }
    assert_int_equal(st_writer_write(w, p, err, sizeof err), 0);
    st_writer_free(w);
    st_file f;
    assert_int_equal(st_open(p, &f, err, sizeof err), 0);
    assert_int_equal(f.n_tensors, 500);
    int32_t v;
    assert_int_equal(st_read_i32(st_find(&f, "t321"), &v, 1, err, sizeof err), 0);
    assert_int_equal(v, 963);
    st_close(&f);
    unlink(p);
}

/* ------------------------------------------------------------------ */
/* Typed reads and st_load_f32                                         */
/* ------------------------------------------------------------------ */

static void open_rt(st_file *f, char *p, size_t plen)
{
    char err[256] = "";
    tpath(p, plen, "read.safetensors");
    write_rt_file(p);
    if (st_open(p, f, err, sizeof err) != 0)
        fail_msg("open: %s", err);
}

static void test_read_f32_converts(void **state)
{
    (void)state;
    char p[256], err[256];
    st_file f;
    open_rt(&f, p, sizeof p);
    float out[6];
    assert_int_equal(st_read_f32(st_find(&f, "f32"), out, 6, err, sizeof err), 0);
    assert_memory_equal(out, rt_f32, sizeof rt_f32);
    assert_int_equal(st_read_f32(st_find(&f, "f16"), out, 4, err, sizeof err), 0);
    assert_true(out[0] == 1.0f && out[1] == 0x1p-24f && out[2] == 65504.0f &&
                out[3] == -INFINITY);
    assert_int_equal(st_read_f32(st_find(&f, "bf16"), out, 4, err, sizeof err), 0);
    assert_true(out[0] == 1.0f && out[1] == -2.0f && out[2] == INFINITY &&
                out[3] == bitsf(0x00010000));
    /* "after" sits at an offset that is 2 mod 4: must still read fine. */
    const st_tensor *t = st_find(&f, "after");
    assert_int_equal(((uintptr_t)t->data) % 4, 2);
    assert_int_equal(st_read_f32(t, out, 2, err, sizeof err), 0);
    assert_true(out[0] == 5.0f && out[1] == 6.0f);
    assert_int_equal(st_read_f32(st_find(&f, "odd"), out, 3, err, sizeof err), 0);
    assert_true(out[0] == 1.0f && out[1] == 2.0f && out[2] == 3.0f);
    assert_int_equal(st_read_f32(st_find(&f, "empty"), NULL, 0, err, sizeof err), 0);
    /* Errors: integer dtype, wrong count. */
    assert_int_equal(st_read_f32(st_find(&f, "i32"), out, 3, err, sizeof err), -1);
    assert_non_null(strstr(err, "integer"));
    assert_int_equal(st_read_f32(st_find(&f, "f32"), out, 5, err, sizeof err), -1);
    assert_non_null(strstr(err, "f32"));
    assert_non_null(strstr(err, "elements"));
    st_close(&f);
    unlink(p);
}

static void test_read_i32(void **state)
{
    (void)state;
    char p[256], err[256];
    st_file f;
    open_rt(&f, p, sizeof p);
    int32_t out[4];
    assert_int_equal(st_read_i32(st_find(&f, "i32"), out, 3, err, sizeof err), 0);
    assert_memory_equal(out, rt_i32, sizeof rt_i32);
    /* rt_i64 holds INT64_MIN first: narrowing must refuse. */
    assert_int_equal(st_read_i32(st_find(&f, "i64"), out, 4, err, sizeof err), -1);
    assert_non_null(strstr(err, "range"));
    assert_int_equal(st_read_i32(st_find(&f, "f32"), out, 4, err, sizeof err), -1);
    assert_non_null(strstr(err, "not an integer"));
    st_close(&f);
    unlink(p);

    /* In-range I64 narrows exactly. */
    int64_t small[3] = {-5, 0, 2147483647};
    int64_t shp[1] = {3};
    st_writer *w = st_writer_new();
    assert_int_equal(st_writer_add(w, "s", ST_I64, 1, shp, small), 0);
    tpath(p, sizeof p, "i64.safetensors");
    assert_int_equal(st_writer_write(w, p, err, sizeof err), 0);
    st_writer_free(w);
    assert_int_equal(st_open(p, &f, err, sizeof err), 0);
    assert_int_equal(st_read_i32(st_find(&f, "s"), out, 3, err, sizeof err), 0);
    assert_true(out[0] == -5 && out[1] == 0 && out[2] == 2147483647);
    st_close(&f);
    unlink(p);
}

static void test_load_f32(void **state)
{
    (void)state;
    char p[256], err[512];
    st_file f;
    open_rt(&f, p, sizeof p);
    float *x = NULL;
    int64_t good[2] = {2, -1}, bad[2] = {3, 3};
    assert_int_equal(st_load_f32(&f, "f32", 2, good, &x, err, sizeof err), 0);
    assert_non_null(x);
    assert_memory_equal(x, rt_f32, sizeof rt_f32);
    free(x);
    assert_int_equal(st_load_f32(&f, "bf16", 2, NULL, &x, err, sizeof err), 0);
    assert_true(x[0] == 1.0f);
    free(x);
    assert_int_equal(st_load_f32(&f, "empty", 2, NULL, &x, err, sizeof err), 0);
    free(x);

    /* Shape mismatch: message names tensor, expected and actual shapes. */
    x = (float *)1;
    assert_int_equal(st_load_f32(&f, "f32", 2, bad, &x, err, sizeof err), -1);
    assert_null(x);
    assert_non_null(strstr(err, "'f32'"));
    assert_non_null(strstr(err, "[3, 3]"));
    assert_non_null(strstr(err, "[2, 3]"));
    /* Rank mismatch, wildcard rendering. */
    int64_t r3[3] = {2, -1, 1};
    assert_int_equal(st_load_f32(&f, "f32", 3, r3, &x, err, sizeof err), -1);
    assert_non_null(strstr(err, "'f32'"));
    assert_non_null(strstr(err, "[2, *, 1]"));
    /* Missing tensor and integer tensor. */
    assert_int_equal(st_load_f32(&f, "ghost", 1, NULL, &x, err, sizeof err), -1);
    assert_non_null(strstr(err, "ghost"));
    assert_non_null(strstr(err, "not found"));
    int64_t s3[1] = {3};
    assert_int_equal(st_load_f32(&f, "i32", 1, s3, &x, err, sizeof err), -1);
    assert_null(x);
    assert_non_null(strstr(err, "integer"));
    st_close(&f);
    unlink(p);
}

static void test_dtype_helpers(void **state)
{
    (void)state;
    assert_int_equal(st_dtype_size(ST_F32), 4);
    assert_int_equal(st_dtype_size(ST_F16), 2);
    assert_int_equal(st_dtype_size(ST_BF16), 2);
    assert_int_equal(st_dtype_size(ST_I32), 4);
    assert_int_equal(st_dtype_size(ST_I64), 8);
    assert_int_equal(st_dtype_size((st_dtype)42), 0);
    assert_string_equal(st_dtype_name(ST_BF16), "BF16");
    assert_string_equal(st_dtype_name((st_dtype)-1), "?");
    st_dtype d;
    assert_int_equal(st_dtype_parse("I64", &d), 0);
    assert_int_equal(d, ST_I64);
    assert_int_equal(st_dtype_parse("f32", &d), -1);   /* case-sensitive */
    st_tensor t = {.ndim = 0};
    assert_int_equal(st_numel(&t), 1);
}

/* ------------------------------------------------------------------ */
/* Valid edge cases                                                    */
/* ------------------------------------------------------------------ */

static void test_valid_unsorted_overlapping_zero(void **state)
{
    (void)state;
    char p[256], err[256] = "";
    tpath(p, sizeof p, "edge.safetensors");
    write_raw(p,
              "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              " \"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
              " \"z\":{\"dtype\":\"I64\",\"shape\":[0,3],\"data_offsets\":[8,8]},"
              " \"__metadata__\":{}}   \n",
              8);
    st_file f;
    if (st_open(p, &f, err, sizeof err) != 0)
        fail_msg("open: %s", err);
    assert_int_equal(f.n_tensors, 3);
    assert_string_equal(f.tensors[0].name, "b");
    const st_tensor *a = st_find(&f, "a"), *z = st_find(&f, "z");
    assert_ptr_equal((const char *)a->data, (const char *)st_find(&f, "b")->data + 4);
    assert_int_equal(z->nbytes, 0);
    assert_int_equal(st_numel(z), 0);
    assert_ptr_equal((const char *)z->data, (const char *)f.map + f.map_len);
    st_close(&f);

    write_raw(p, "{}", 0);
    assert_int_equal(st_open(p, &f, err, sizeof err), 0);
    assert_int_equal(f.n_tensors, 0);
    st_close(&f);
    unlink(p);
}

/* ------------------------------------------------------------------ */
/* Malformed files                                                     */
/* ------------------------------------------------------------------ */

#define T1(shape, offs) \
    "{\"a\":{\"dtype\":\"F32\",\"shape\":" shape ",\"data_offsets\":" offs "}}"

static void test_bad_empty_file(void **state)
{
    (void)state;
    char p[256];
    tpath(p, sizeof p, "zero.safetensors");
    write_bytes(p, "", 0);
    expect_open_fail(p, "too short");
    expect_open_fail(p, "empty");
    unlink(p);
}

static void test_bad_7_bytes(void **state)
{
    (void)state;
    char p[256];
    tpath(p, sizeof p, "seven.safetensors");
    write_bytes(p, "\x02\0\0\0\0\0\0", 7);
    expect_open_fail(p, "too short");
    unlink(p);
}

static void test_bad_header_len_zero(void **state)
{
    (void)state;
    char p[256];
    tpath(p, sizeof p, "hz.safetensors");
    write_bytes(p, "\0\0\0\0\0\0\0\0{}", 10);
    expect_open_fail(p, "header length is 0");
    unlink(p);
}

static void test_bad_header_len_past_end(void **state)
{
    (void)state;
    char p[256];
    tpath(p, sizeof p, "hpe.safetensors");
    write_bytes(p, "\x03\0\0\0\0\0\0\0{}", 10);          /* N=3, only 2 bytes */
    expect_open_fail(p, "past end of file");
    write_bytes(p, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10); /* N=2^64-1 */
    expect_open_fail(p, "past end of file");
    unlink(p);
}

static void test_bad_header_absurd(void **state)
{
    (void)state;
    char p[256];
    tpath(p, sizeof p, "huge.safetensors");
    /* A sparse 200 MB file whose header claims 150 MB: in bounds, absurd. */
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    uint64_t n = 150000000;
    assert_int_equal(write(fd, &n, 8), 8);
    assert_int_equal(ftruncate(fd, 200000000), 0);
    close(fd);
    expect_open_fail(p, "absurdly large");
    unlink(p);
}

static void test_bad_json(void **state)
{
    (void)state;
    expect_raw_fail("{\"a\": {\"dtype\": ", 0, "not valid JSON");
    expect_raw_fail("not json at all", 0, "not valid JSON");
}

static void test_bad_trailing_garbage(void **state)
{
    (void)state;
    expect_raw_fail("{} x", 0, "trailing garbage");
    /* An embedded NUL would make a C-string parser stop early. */
    char p[256];
    tpath(p, sizeof p, "nul.safetensors");
    write_bytes(p, "\x04\0\0\0\0\0\0\0{}\0x", 12);
    expect_open_fail(p, "trailing garbage");
    unlink(p);
}

static void test_bad_not_object(void **state)
{
    (void)state;
    expect_raw_fail("[1, 2]", 0, "not a JSON object");
    expect_raw_fail("\"str\"", 0, "not a JSON object");
}

static void test_bad_entry_not_object(void **state)
{
    (void)state;
    expect_raw_fail("{\"weird\": 5}", 0, "'weird': entry is not an object");
}

static void test_bad_missing_fields(void **state)
{
    (void)state;
    expect_raw_fail("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'a': missing or non-string \"dtype\"");
    expect_raw_fail("{\"a\":{\"dtype\":3,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "\"dtype\"");
    expect_raw_fail("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "\"shape\"");
    expect_raw_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", 4, "\"shape\"");
    expect_raw_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets");
}

static void test_bad_unknown_dtype(void **state)
{
    (void)state;
    expect_raw_fail("{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                    "unknown dtype 'Q4'");
}

static void test_bad_non_integer_dim(void **state)
{
    (void)state;
    expect_raw_fail(T1("[1.5]", "[0,4]"), 4, "not a non-negative integer");
    expect_raw_fail(T1("[\"2\"]", "[0,8]"), 8, "not a non-negative integer");
    expect_raw_fail(T1("[1e300]", "[0,4]"), 4, "not a non-negative integer");
}

static void test_bad_negative_dim(void **state)
{
    (void)state;
    expect_raw_fail(T1("[2,-1]", "[0,8]"), 8, "negative");
}

static void test_bad_too_many_dims(void **state)
{
    (void)state;
    expect_raw_fail(T1("[1,1,1,1,1,1,1,1,1]", "[0,4]"), 4, "more than 8");
}

static void test_bad_dims_overflow(void **state)
{
    (void)state;
    /* 2^32 * 2^32 overflows int64; each dim alone is a fine integer. */
    expect_raw_fail(T1("[4294967296,4294967296,4294967296]", "[0,0]"), 0, "overflow");
    /* numel = 2^61 fits int64, but numel * 8 bytes = 2^64 does not. */
    expect_raw_fail("{\"a\":{\"dtype\":\"I64\",\"shape\":[562949953421312,4096],"
                    "\"data_offsets\":[0,0]}}", 0, "overflow");
}

static void test_bad_offsets_form(void **state)
{
    (void)state;
    expect_raw_fail(T1("[1]", "[0]"), 4, "two non-negative integers");
    expect_raw_fail(T1("[1]", "[0,4,8]"), 8, "two non-negative integers");
    expect_raw_fail(T1("[1]", "[-4,0]"), 4, "two non-negative integers");
    expect_raw_fail(T1("[1]", "[0,4.5]"), 8, "two non-negative integers");
    expect_raw_fail(T1("[1]", "{}"), 4, "two non-negative integers");
    expect_raw_fail(T1("[1]", "[8,4]"), 8, "begin 8 > end 4");
}

static void test_bad_offsets_out_of_range(void **state)
{
    (void)state;
    expect_raw_fail(T1("[2]", "[4,12]"), 8, "past end of data area");
    expect_raw_fail(T1("[1]", "[9007199254740990,9007199254740994]"), 8,
                    "two non-negative integers");   /* beyond 2^53: not exact */
}

static void test_bad_truncated_data(void **state)
{
    (void)state;
    char p[256];
    tpath(p, sizeof p, "trunc.safetensors");
    write_rt_file(p);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(truncate(p, st.st_size - 4), 0);
    expect_open_fail(p, "past end of data area");
    expect_open_fail(p, "'eight'");   /* the last tensor is the one cut off */
    unlink(p);
}

static void test_bad_size_mismatch(void **state)
{
    (void)state;
    expect_raw_fail(T1("[2,2]", "[0,8]"), 16, "size mismatch");
    expect_raw_fail("{\"a\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
                    "size mismatch");
}

static void test_bad_duplicate_names(void **state)
{
    (void)state;
    expect_raw_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                    8, "duplicate tensor name 'a'");
    expect_raw_fail("{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, "duplicate __metadata__ key 'k'");
    expect_raw_fail("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate __metadata__");
}

static void test_bad_metadata(void **state)
{
    (void)state;
    expect_raw_fail("{\"__metadata__\":{\"ok\":\"x\",\"n\":1}}", 0, "key 'n' is not a string");
    expect_raw_fail("{\"__metadata__\":{\"o\":{}}}", 0, "not a string");
    expect_raw_fail("{\"__metadata__\":[\"x\"]}", 0, "__metadata__ is not an object");
}

static void test_bad_path(void **state)
{
    (void)state;
    char p[256];
    tpath(p, sizeof p, "does-not-exist.safetensors");
    expect_open_fail(p, "cannot open");
    expect_open_fail(g_dir, "not a regular file");
}

/* Every prefix of a valid file and many random corruptions of its header
 * must be rejected or accepted cleanly; accepted files must stay in bounds.
 * (Run under ASan/UBSan this is the out-of-bounds check.) */
static void check_open_is_sane(const char *p)
{
    st_file f;
    char err[256];
    if (st_open(p, &f, err, sizeof err) != 0) {
        assert_true(err[0] != '\0');
        st_close(&f);
        return;
    }
    const char *lo = f.map, *hi = lo + f.map_len;
    for (int i = 0; i < f.n_tensors; i++) {
        const st_tensor *t = &f.tensors[i];
        assert_true((const char *)t->data >= lo);
        assert_true((const char *)t->data + t->nbytes <= hi);
        assert_int_equal((uint64_t)st_numel(t) * st_dtype_size(t->dtype), t->nbytes);
    }
    st_close(&f);
}

static void test_fuzz_prefixes_and_mutations(void **state)
{
    (void)state;
    char p[256], q[256];
    tpath(p, sizeof p, "fuzz-src.safetensors");
    tpath(q, sizeof q, "fuzz.safetensors");
    write_rt_file(p);
    FILE *fp = fopen(p, "rb");
    assert_non_null(fp);
    unsigned char buf[4096], mut[4096];
    size_t len = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    assert_true(len > 16 && len < sizeof buf);
    uint64_t hn;
    memcpy(&hn, buf, 8);

    for (size_t cut = 0; cut < len; cut++) {
        write_bytes(q, buf, cut);
        check_open_is_sane(q);
    }
    static const char alphabet[] = "{}[]\":,-.0123456789eE \\\x00\xff" "F32I64";
    uint64_t s = 12345;
    for (int it = 0; it < 3000; it++) {
        memcpy(mut, buf, len);
        for (int k = 0; k < 1 + it % 4; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = 8 + (size_t)((s >> 33) % hn);
            mut[pos] = (unsigned char)alphabet[(s >> 20) % (sizeof alphabet - 1)];
        }
        write_bytes(q, mut, len);
        check_open_is_sane(q);
    }
    unlink(p);
    unlink(q);
}

/* ------------------------------------------------------------------ */
/* Golden samples                                                      */
/* ------------------------------------------------------------------ */

static void test_golden_samples(void **state)
{
    (void)state;
    glob_t g;
    if (glob(GOLDEN_GLOB, 0, NULL, &g) != 0) {
        printf("note: no golden samples at %s (cwd must be the project root); skipped\n",
               GOLDEN_GLOB);
        globfree(&g);
        skip();
    }
    static const char *need[] = {"q", "k", "v", "g", "beta", "out", "final_state"};
    for (size_t i = 0; i < g.gl_pathc; i++) {
        st_file f;
        char err[512];
        if (st_open(g.gl_pathv[i], &f, err, sizeof err) != 0) {
            globfree(&g);
            fail_msg("%s", err);
        }
        for (size_t k = 0; k < sizeof need / sizeof need[0]; k++) {
            const st_tensor *t = st_find(&f, need[k]);
            if (!t || t->dtype != ST_F32)
                fail_msg("%s: tensor %s missing or not F32", g.gl_pathv[i], need[k]);
        }
        assert_int_equal(st_find(&f, "q")->ndim, 4);
        float *q = NULL;
        int64_t any4[4] = {-1, -1, -1, -1};
        assert_int_equal(st_load_f32(&f, "q", 4, any4, &q, err, sizeof err), 0);
        free(q);
        st_close(&f);
    }
    printf("note: checked %zu golden sample(s)\n", g.gl_pathc);
    globfree(&g);
}

/* ------------------------------------------------------------------ */

int main(void)
{
    const struct CMUnitTest conversions[] = {
        cmocka_unit_test(test_bf16_known),
        cmocka_unit_test(test_bf16_exhaustive),
        cmocka_unit_test(test_f16_known),
        cmocka_unit_test(test_f16_exhaustive),
        cmocka_unit_test(test_f16_random_vs_reference),
        cmocka_unit_test(test_dtype_helpers),
    };
    const struct CMUnitTest roundtrip[] = {
        cmocka_unit_test(test_roundtrip_all_dtypes),
        cmocka_unit_test(test_roundtrip_empty_writer),
        cmocka_unit_test(test_writer_replaces_atomically),
        cmocka_unit_test(test_writer_rejects),
        cmocka_unit_test(test_many_tensors),
        cmocka_unit_test(test_read_f32_converts),
        cmocka_unit_test(test_read_i32),
        cmocka_unit_test(test_load_f32),
        cmocka_unit_test(test_valid_unsorted_overlapping_zero),
    };
    const struct CMUnitTest malformed[] = {
        cmocka_unit_test(test_bad_empty_file),
        cmocka_unit_test(test_bad_7_bytes),
        cmocka_unit_test(test_bad_header_len_zero),
        cmocka_unit_test(test_bad_header_len_past_end),
        cmocka_unit_test(test_bad_header_absurd),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_bad_trailing_garbage),
        cmocka_unit_test(test_bad_not_object),
        cmocka_unit_test(test_bad_entry_not_object),
        cmocka_unit_test(test_bad_missing_fields),
        cmocka_unit_test(test_bad_unknown_dtype),
        cmocka_unit_test(test_bad_non_integer_dim),
        cmocka_unit_test(test_bad_negative_dim),
        cmocka_unit_test(test_bad_too_many_dims),
        cmocka_unit_test(test_bad_dims_overflow),
        cmocka_unit_test(test_bad_offsets_form),
        cmocka_unit_test(test_bad_offsets_out_of_range),
        cmocka_unit_test(test_bad_truncated_data),
        cmocka_unit_test(test_bad_size_mismatch),
        cmocka_unit_test(test_bad_duplicate_names),
        cmocka_unit_test(test_bad_metadata),
        cmocka_unit_test(test_bad_path),
        cmocka_unit_test(test_fuzz_prefixes_and_mutations),
    };
    const struct CMUnitTest golden[] = {
        cmocka_unit_test(test_golden_samples),
    };
    int fails = 0;
    fails += cmocka_run_group_tests_name("conversions", conversions, NULL, NULL);
    fails += cmocka_run_group_tests_name("roundtrip", roundtrip, group_setup, group_teardown);
    fails += cmocka_run_group_tests_name("malformed", malformed, group_setup, group_teardown);
    fails += cmocka_run_group_tests_name("golden", golden, NULL, NULL);
    return fails ? 1 : 0;
}
