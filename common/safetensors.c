/* safetensors.c - see safetensors.h for the format and the API contract.
 *
 * The reader treats the file as hostile: every length and offset is checked
 * before it is used, and the header is parsed from a NUL-terminated private
 * copy so that a JSON parser bug cannot walk off the end of the map. */
#include "common/safetensors.h"

#include "common/errmsg.h"
#include "common/grow_array.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Tensor bytes are copied straight out of the little-endian file format. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "safetensors.c assumes a little-endian host");
_Static_assert(sizeof(float) == 4, "float must be IEEE binary32");

/* Doubles represent every integer below 2^53 exactly; JSON numbers at or
 * above that cannot be trusted to be the integer that was written. */
#define JSON_INT_LIMIT 9007199254740992.0


/* ------------------------------------------------------------------ */
/* dtypes                                                              */
/* ------------------------------------------------------------------ */

static const struct { const char *name; size_t size; } dtype_info[] = {
    [ST_F32] = {"F32", 4}, [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2},
    [ST_I32] = {"I32", 4}, [ST_I64] = {"I64", 8},
};
#define N_DTYPES ((int)(sizeof dtype_info / sizeof dtype_info[0]))

static int dtype_valid(st_dtype t) { return (int)t >= 0 && (int)t < N_DTYPES; }

size_t st_dtype_size(st_dtype t) { return dtype_valid(t) ? dtype_info[t].size : 0; }

const char *st_dtype_name(st_dtype t) { return dtype_valid(t) ? dtype_info[t].name : "?"; }

int st_dtype_parse(const char *s, st_dtype *out)
{
    for (int i = 0; i < N_DTYPES; i++) {
        if (strcmp(s, dtype_info[i].name) == 0) {
            *out = (st_dtype)i;
            return 0;
        }
    }
    return -1;
}

/* Product of dims and byte size, both overflow-checked.  0 ok, -1 overflow.
 * Dims are assumed non-negative (callers validate them first). */
static int shape_size(int ndim, const int64_t *shape, size_t itemsize,
                      int64_t *numel, size_t *nbytes)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        if (__builtin_mul_overflow(n, shape[i], &n))
            return -1;
    size_t b;
    if (__builtin_mul_overflow((uint64_t)n, itemsize, &b))
        return -1;
    *numel = n;
    *nbytes = b;
    return 0;
}

int64_t st_numel(const st_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];   /* cannot overflow: validated at open/add time */
    return n;
}

/* "[1, 80, *]" style rendering for error messages; negative means any. */
static void format_shape(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t pos = 0;
    pos += (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && pos < len; i++) {
        const char *sep = i ? ", " : "";
        if (shape && shape[i] >= 0)
            pos += (size_t)snprintf(buf + pos, len - pos, "%s%lld", sep, (long long)shape[i]);
        else
            pos += (size_t)snprintf(buf + pos, len - pos, "%s*", sep);
    }
    if (pos < len)
        snprintf(buf + pos, len - pos, "]");
}

/* ------------------------------------------------------------------ */
/* 16-bit float conversions                                            */
/* ------------------------------------------------------------------ */

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float st_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t st_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u)
        /* Truncating a NaN could clear every kept mantissa bit and turn it
         * into inf, so force the quiet bit. */
        return (uint16_t)((u >> 16) | 0x0040u);
    /* Round to nearest even: add just under half, plus the lsb that will be
     * kept, so exact ties go to the even neighbour.  A carry out of the
     * mantissa correctly bumps the exponent (up to inf). */
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float st_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t mant = h & 0x3FFu;
    if (exp == 0) {
        /* Zero or subnormal: mant * 2^-24, exact in float. */
        float v = (float)mant * 0x1p-24f;
        return (h & 0x8000u) ? -v : v;
    }
    if (exp == 31)  /* inf or NaN: keep the payload */
        return bits_f32(sign | 0x7F800000u | (mant << 13));
    /* Normal: rebias exponent from 15 to 127. */
    return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

/* Round q + rem/2^shift to nearest even (shift >= 1). */
static uint32_t round_rne(uint32_t q, uint32_t rem, unsigned shift)
{
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u)))
        q++;
    return q;
}

uint16_t st_f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7FFFFFFFu;
    uint32_t e = a >> 23, mant = a & 0x7FFFFFu;

    if (a > 0x7F800000u)   /* NaN: quiet, keep the top payload bits */
        return (uint16_t)(sign | 0x7E00u | (mant >> 13));
    if (a >= 0x477FF000u)  /* >= 65520 rounds (ties-to-even) to inf; inf too */
        return (uint16_t)(sign | 0x7C00u);
    if (a < 0x38800000u) {
        /* Below 2^-14: a half subnormal, counted in units of 2^-24.  The
         * value is m * 2^(e-150), i.e. m / 2^(126-e) units. */
        unsigned shift = 126u - e;
        if (shift > 24)    /* m < 2^24, so less than half a unit: zero */
            return sign;
        uint32_t m = mant | 0x800000u;
        uint32_t q = round_rne(m >> shift, m & ((1u << shift) - 1u), shift);
        return (uint16_t)(sign | q);  /* q == 0x400 is the smallest normal */
    }
    /* Normal: rebias 127 -> 15, drop 13 mantissa bits.  A rounding carry
     * into the exponent is correct and cannot reach inf (checked above). */
    uint32_t h = ((e - 112u) << 10) | (mant >> 13);
    return (uint16_t)(sign | round_rne(h, mant & 0x1FFFu, 13));
}

/* ------------------------------------------------------------------ */
/* Reader                                                              */
/* ------------------------------------------------------------------ */

void st_close(st_file *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_vals[i]);
    }
    free(f->meta_keys);
    free(f->meta_vals);
    if (f->map)
        munmap(f->map, f->map_len);
    memset(f, 0, sizeof *f);
}

/* Parsing context: what the validators need to produce messages and bound
 * offsets. */
typedef struct {
    const char *path;
    const unsigned char *data;  /* start of the data area */
    uint64_t data_len;
    char *err;
    size_t errlen;
} st_ctx;

/* A JSON number that is an exact non-negative integer below 2^53.
 * Returns 0 ok, -1 not a number / not integral, -2 negative. */
static int json_uint(const cJSON *j, int64_t *out)
{
    if (!cJSON_IsNumber(j))
        return -1;
    double d = j->valuedouble;
    if (d < 0)
        return -2;
    if (!(d < JSON_INT_LIMIT) || (double)(int64_t)d != d)  /* also NaN/inf */
        return -1;
    *out = (int64_t)d;
    return 0;
}

static int parse_dtype(const st_ctx *c, const char *name, const cJSON *e, st_dtype *dt)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!cJSON_IsString(j)) {
        q35_errmsg(c->err, c->errlen, "%s: tensor '%s': missing or non-string \"dtype\"",
                c->path, name);
        return -1;
    }
    if (st_dtype_parse(j->valuestring, dt) != 0) {
        q35_errmsg(c->err, c->errlen, "%s: tensor '%s': unknown dtype '%.32s'",
                c->path, name, j->valuestring);
        return -1;
    }
    return 0;
}

static int parse_shape(const st_ctx *c, const char *name, const cJSON *e, st_tensor *t)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!cJSON_IsArray(j)) {
        q35_errmsg(c->err, c->errlen, "%s: tensor '%s': missing or non-array \"shape\"",
                c->path, name);
        return -1;
    }
    int n = cJSON_GetArraySize(j);
    if (n > ST_MAX_DIMS) {
        q35_errmsg(c->err, c->errlen, "%s: tensor '%s': shape has %d dims, more than %d",
                c->path, name, n, ST_MAX_DIMS);
        return -1;
    }
    int i = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, j) {
        int rc = json_uint(d, &t->shape[i]);
        if (rc != 0) {
            q35_errmsg(c->err, c->errlen, "%s: tensor '%s': shape dim %d is %s", c->path,
                    name, i, rc == -2 ? "negative" : "not a non-negative integer");
            return -1;
        }
        i++;
    }
    t->ndim = n;
    return 0;
}

/* data_offsets: check form, order, bounds, and agreement with the shape. */
static int parse_offsets(const st_ctx *c, const char *name, const cJSON *e, st_tensor *t)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    int64_t off[2];
    if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) != 2 ||
        json_uint(cJSON_GetArrayItem(j, 0), &off[0]) != 0 ||
        json_uint(cJSON_GetArrayItem(j, 1), &off[1]) != 0) {
        q35_errmsg(c->err, c->errlen,
                "%s: tensor '%s': \"data_offsets\" must be two non-negative integers",
                c->path, name);
        return -1;
    }
    if (off[0] > off[1]) {
        q35_errmsg(c->err, c->errlen, "%s: tensor '%s': data_offsets begin %lld > end %lld",
                c->path, name, (long long)off[0], (long long)off[1]);
        return -1;
    }
    if ((uint64_t)off[1] > c->data_len) {
        q35_errmsg(c->err, c->errlen,
                "%s: tensor '%s': data_offsets end %lld is past end of data area (%llu bytes)",
                c->path, name, (long long)off[1], (unsigned long long)c->data_len);
        return -1;
    }
    int64_t numel;
    size_t need;
    /* the shape is in both messages: it is what the reader has to compare with the span */
    char dims[ST_MAX_DIMS * 22 + 8];
    if (shape_size(t->ndim, t->shape, st_dtype_size(t->dtype), &numel, &need) != 0) {
        format_shape(dims, sizeof dims, t->ndim, t->shape);
        q35_errmsg(c->err, c->errlen, "%s: tensor '%s': shape %s x %s: size overflows 64 bits",
                   c->path, name, dims, st_dtype_name(t->dtype));
        return -1;
    }
    uint64_t have = (uint64_t)(off[1] - off[0]);
    if (have != need) {
        format_shape(dims, sizeof dims, t->ndim, t->shape);
        q35_errmsg(c->err, c->errlen,
                "%s: tensor '%s': size mismatch: data_offsets span %llu bytes, "
                "shape %s x %s needs %zu",
                c->path, name, (unsigned long long)have, dims, st_dtype_name(t->dtype), need);
        return -1;
    }
    t->data = c->data + off[0];
    t->nbytes = need;
    return 0;
}

static int parse_tensor(const st_ctx *c, const cJSON *e, st_tensor *t)
{
    const char *name = e->string;
    if (!cJSON_IsObject(e)) {
        q35_errmsg(c->err, c->errlen, "%s: tensor '%s': entry is not an object", c->path, name);
        return -1;
    }
    if (parse_dtype(c, name, e, &t->dtype) || parse_shape(c, name, e, t) ||
        parse_offsets(c, name, e, t))
        return -1;
    return 0;
}

static int parse_metadata(const st_ctx *c, const cJSON *m, st_file *f)
{
    if (!cJSON_IsObject(m)) {
        q35_errmsg(c->err, c->errlen, "%s: __metadata__ is not an object", c->path);
        return -1;
    }
    int n = cJSON_GetArraySize(m);
    f->meta_keys = calloc((size_t)n + 1, sizeof(char *));
    f->meta_vals = calloc((size_t)n + 1, sizeof(char *));
    if (!f->meta_keys || !f->meta_vals)
        goto oom;
    const cJSON *kv;
    cJSON_ArrayForEach(kv, m) {
        if (!cJSON_IsString(kv)) {
            q35_errmsg(c->err, c->errlen,
                    "%s: __metadata__ value for key '%s' is not a string", c->path, kv->string);
            return -1;
        }
        /* Count only complete pairs so st_close frees exactly what exists. */
        char *k = strdup(kv->string), *v = strdup(kv->valuestring);
        if (!k || !v) {
            free(k);
            free(v);
            goto oom;
        }
        f->meta_keys[f->n_meta] = k;
        f->meta_vals[f->n_meta] = v;
        f->n_meta++;
    }
    return 0;
oom:
    q35_errmsg(c->err, c->errlen, "%s: out of memory reading __metadata__", c->path);
    return -1;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reject duplicate names.  Sorting keeps this O(n log n) on hostile headers
 * with very many entries. */
static int check_unique(const st_ctx *c, char **names, int n, const char *what)
{
    if (n < 2)
        return 0;
    char **sorted = malloc((size_t)n * sizeof *sorted);
    if (!sorted) {
        q35_errmsg(c->err, c->errlen, "%s: out of memory", c->path);
        return -1;
    }
    memcpy(sorted, names, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_str_ptr);
    int rc = 0;
    for (int i = 1; i < n && rc == 0; i++) {
        if (strcmp(sorted[i - 1], sorted[i]) == 0) {
            q35_errmsg(c->err, c->errlen, "%s: duplicate %s '%s'", c->path, what, sorted[i]);
            rc = -1;
        }
    }
    free(sorted);
    return rc;
}

static int check_unique_tensors(const st_ctx *c, const st_file *f)
{
    if (f->n_tensors < 2)
        return 0;
    char **names = malloc((size_t)f->n_tensors * sizeof *names);
    if (!names) {
        q35_errmsg(c->err, c->errlen, "%s: out of memory", c->path);
        return -1;
    }
    for (int i = 0; i < f->n_tensors; i++)
        names[i] = f->tensors[i].name;
    int rc = check_unique(c, names, f->n_tensors, "tensor name");
    free(names);
    return rc;
}

/* Walk the top-level object: one __metadata__ at most, the rest tensors. */
static int parse_entries(const st_ctx *c, const cJSON *root, st_file *f)
{
    int n = cJSON_GetArraySize(root);
    f->tensors = calloc((size_t)n + 1, sizeof *f->tensors);
    if (!f->tensors) {
        q35_errmsg(c->err, c->errlen, "%s: out of memory for %d tensors", c->path, n);
        return -1;
    }
    int seen_meta = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (seen_meta++) {
                q35_errmsg(c->err, c->errlen, "%s: duplicate __metadata__ entry", c->path);
                return -1;
            }
            if (parse_metadata(c, e, f))
                return -1;
            continue;
        }
        st_tensor *t = &f->tensors[f->n_tensors];
        if (parse_tensor(c, e, t))
            return -1;
        if (!(t->name = strdup(e->string))) {
            q35_errmsg(c->err, c->errlen, "%s: out of memory", c->path);
            return -1;
        }
        f->n_tensors++;
    }
    if (check_unique_tensors(c, f) ||
        check_unique(c, f->meta_keys, f->n_meta, "__metadata__ key"))
        return -1;
    return 0;
}

static int is_json_space(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* Parse the N header bytes at hdr.  The bytes are copied and NUL-terminated
 * first; anything other than whitespace after the JSON value is an error. */
static int parse_header(const st_ctx *c, const char *hdr, uint64_t n, st_file *f)
{
    char *buf = malloc((size_t)n + 1);
    if (!buf) {
        q35_errmsg(c->err, c->errlen, "%s: out of memory for %llu-byte header", c->path,
                (unsigned long long)n);
        return -1;
    }
    memcpy(buf, hdr, (size_t)n);
    buf[n] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, (size_t)n, &end, 0);
    int rc = -1;
    if (!root) {
        q35_errmsg(c->err, c->errlen, "%s: header is not valid JSON (near byte %lld)", c->path,
                end ? (long long)(end - buf) : -1LL);
        goto out;
    }
    for (const char *p = end; p < buf + n; p++) {
        if (!is_json_space((unsigned char)*p)) {
            q35_errmsg(c->err, c->errlen, "%s: header is not valid JSON: trailing garbage at byte %lld",
                    c->path, (long long)(p - buf));
            goto out;
        }
    }
    if (!cJSON_IsObject(root)) {
        q35_errmsg(c->err, c->errlen, "%s: header is not a JSON object", c->path);
        goto out;
    }
    rc = parse_entries(c, root, f);
out:
    cJSON_Delete(root);
    free(buf);
    return rc;
}

/* Open and map the file; checks that it is a regular file of >= 8 bytes.
 * An empty file is rejected before mmap, which cannot map length 0. */
static int map_file(const char *path, st_file *f, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        q35_errmsg(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    int rc = -1;
    if (fstat(fd, &st) != 0) {
        q35_errmsg(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        q35_errmsg(err, errlen, "%s: not a regular file", path);
    } else if (st.st_size < 8) {
        q35_errmsg(err, errlen, "%s: file too short (%lld bytes%s), need at least 8", path,
                (long long)st.st_size, st.st_size == 0 ? ", empty" : "");
    } else {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            q35_errmsg(err, errlen, "%s: mmap failed: %s", path, strerror(errno));
        } else {
            f->map = m;
            f->map_len = (size_t)st.st_size;
            rc = 0;
        }
    }
    close(fd);   /* the mapping stays valid without the descriptor */
    return rc;
}

int st_open(const char *path, st_file *f, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    if (map_file(path, f, err, errlen))
        return -1;
    const unsigned char *base = f->map;
    uint64_t n;
    memcpy(&n, base, 8);
    uint64_t room = (uint64_t)f->map_len - 8;
    if (n == 0) {
        q35_errmsg(err, errlen, "%s: header length is 0", path);
        goto fail;
    }
    if (n > room) {
        q35_errmsg(err, errlen, "%s: header length %llu runs past end of file (%zu bytes)",
                path, (unsigned long long)n, f->map_len);
        goto fail;
    }
    if (n > ST_MAX_HEADER_LEN) {
        q35_errmsg(err, errlen, "%s: header length %llu is absurdly large (limit %llu)", path,
                (unsigned long long)n, ST_MAX_HEADER_LEN);
        goto fail;
    }
    st_ctx c = {path, base + 8 + n, room - n, err, errlen};
    if (parse_header(&c, (const char *)base + 8, n, f))
        goto fail;
    return 0;
fail:
    st_close(f);
    return -1;
}

const st_tensor *st_find(const st_file *f, const char *name)
{
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0)
            return &f->tensors[i];
    return NULL;
}

const char *st_meta(const st_file *f, const char *key)
{
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0)
            return f->meta_vals[i];
    return NULL;
}

/* One tensor's bytes as data_offsets, for the overlap check. */
typedef struct {
    uint64_t begin, end;
    int index;          /* header order, so that ties sort the same every time */
} st_span;

static int cmp_span(const void *a, const void *b)
{
    const st_span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* Sorting keeps this O(n log n) on hostile headers. */
int st_check_no_overlap(const st_file *f, const char *path, char *err, size_t errlen)
{
    if (f->n_tensors < 2)
        return 0;
    uint64_t header;
    memcpy(&header, f->map, 8);   /* st_open checked it */
    const unsigned char *data = (const unsigned char *)f->map + 8 + header;
    st_span *s = malloc((size_t)f->n_tensors * sizeof *s);
    if (!s) {
        q35_errmsg(err, errlen, "%s: out of memory", path);
        return -1;
    }
    int n = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        if (!t->nbytes)   /* an empty tensor holds no bytes to share */
            continue;
        const uint64_t begin = (uint64_t)((const unsigned char *)t->data - data);
        s[n++] = (st_span){begin, begin + t->nbytes, i};
    }
    qsort(s, (size_t)n, sizeof *s, cmp_span);
    int rc = 0, widest = 0;   /* widest: the span reaching furthest so far */
    for (int i = 1; i < n && rc == 0; i++) {
        if (s[i].begin < s[widest].end) {
            q35_errmsg(err, errlen,
                       "%s: tensor '%s': data_offsets [%llu, %llu] overlap those of tensor '%s' [%llu, %llu]",
                       path, f->tensors[s[i].index].name, (unsigned long long)s[i].begin,
                       (unsigned long long)s[i].end, f->tensors[s[widest].index].name,
                       (unsigned long long)s[widest].begin, (unsigned long long)s[widest].end);
            rc = -1;
        }
        if (s[i].end > s[widest].end)
            widest = i;
    }
    free(s);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Typed reads                                                         */
/* ------------------------------------------------------------------ */

static int check_count(const st_tensor *t, size_t n, char *err, size_t errlen)
{
    int64_t numel = st_numel(t);
    if ((uint64_t)numel != (uint64_t)n) {
        q35_errmsg(err, errlen, "tensor '%s': has %lld elements, caller buffer holds %zu",
                t->name, (long long)numel, n);
        return -1;
    }
    return 0;
}

int st_read_f32(const st_tensor *t, float *dst, size_t n, char *err, size_t errlen)
{
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16) {
        q35_errmsg(err, errlen, "tensor '%s': dtype %s is an integer type, expected F32/F16/BF16",
                t->name, st_dtype_name(t->dtype));
        return -1;
    }
    if (check_count(t, n, err, errlen))
        return -1;
    if (n == 0)   /* dst may be NULL; memcpy(NULL, .., 0) is still UB */
        return 0;
    if (t->dtype == ST_F32) {
        memcpy(dst, t->data, n * sizeof(float));
        return 0;
    }
    const unsigned char *src = t->data;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);   /* may be unaligned */
        dst[i] = t->dtype == ST_F16 ? st_f16_to_f32(h) : st_bf16_to_f32(h);
    }
    return 0;
}

int st_read_i32(const st_tensor *t, int32_t *dst, size_t n, char *err, size_t errlen)
{
    if (t->dtype != ST_I32 && t->dtype != ST_I64) {
        q35_errmsg(err, errlen, "tensor '%s': dtype %s is not an integer type (I32/I64)",
                t->name, st_dtype_name(t->dtype));
        return -1;
    }
    if (check_count(t, n, err, errlen))
        return -1;
    if (n == 0)
        return 0;
    if (t->dtype == ST_I32) {
        memcpy(dst, t->data, n * sizeof(int32_t));
        return 0;
    }
    const unsigned char *src = t->data;
    for (size_t i = 0; i < n; i++) {
        int64_t v;
        memcpy(&v, src + 8 * i, 8);
        if (v < INT32_MIN || v > INT32_MAX) {
            q35_errmsg(err, errlen, "tensor '%s': element %zu = %lld is out of int32 range",
                    t->name, i, (long long)v);
            return -1;
        }
        dst[i] = (int32_t)v;
    }
    return 0;
}

static int check_shape(const st_tensor *t, int ndim, const int64_t *expect,
                       char *err, size_t errlen)
{
    int ok = t->ndim == ndim;
    for (int i = 0; ok && expect && i < ndim; i++)
        ok = expect[i] < 0 || expect[i] == t->shape[i];
    if (ok)
        return 0;
    char want[256], got[256];
    format_shape(want, sizeof want, ndim, expect);
    format_shape(got, sizeof got, t->ndim, t->shape);
    q35_errmsg(err, errlen, "tensor '%s': expected shape %s (rank %d), got %s (rank %d)",
            t->name, want, ndim, got, t->ndim);
    return -1;
}

int st_load_f32(const st_file *f, const char *name, int ndim, const int64_t *expect,
                float **out, char *err, size_t errlen)
{
    *out = NULL;
    const st_tensor *t = st_find(f, name);
    if (!t) {
        q35_errmsg(err, errlen, "tensor '%s': not found", name);
        return -1;
    }
    if (check_shape(t, ndim, expect, err, errlen))
        return -1;
    size_t n = (size_t)st_numel(t);
    float *buf = malloc(n ? n * sizeof(float) : 1);   /* n*4 <= nbytes*2: no overflow */
    if (!buf) {
        q35_errmsg(err, errlen, "tensor '%s': out of memory for %zu floats", name, n);
        return -1;
    }
    if (st_read_f32(t, buf, n, err, errlen)) {
        free(buf);
        return -1;
    }
    *out = buf;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Writer                                                              */
/* ------------------------------------------------------------------ */

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
    int deferred;       /* bytes come from a fill callback (st_writer_write_stream) */
} st_wtensor;

struct st_writer {
    st_wtensor *t;
    int n, cap;
    /* open-addressing set of tensor indices + 1 (0 = empty slot), keyed by
     * name, so that duplicate checks stay O(1) with 10^5 tensors */
    int *slots;
    size_t n_slots;     /* a power of two, > 2n, or 0 before the first add */
    char **keys, **vals;
    int n_meta, cap_meta;
    int n_deferred;
    char error[256];
};

st_writer *st_writer_new(void) { return calloc(1, sizeof(st_writer)); }

void st_writer_free(st_writer *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n; i++)
        free(w->t[i].name);
    for (int i = 0; i < w->n_meta; i++) {
        free(w->keys[i]);
        free(w->vals[i]);
    }
    free(w->t);
    free(w->slots);
    free(w->keys);
    free(w->vals);
    free(w);
}

const char *st_writer_error(const st_writer *w) { return w->error; }

/* FNV-1a: the name set only needs a well-spread hash. */
static size_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)h;
}

/* Index of the tensor called name, or -1. */
static int name_find(const st_writer *w, const char *name)
{
    if (!w->n_slots)
        return -1;
    for (size_t k = name_hash(name) & (w->n_slots - 1);; k = (k + 1) & (w->n_slots - 1)) {
        int v = w->slots[k];
        if (!v)
            return -1;
        if (strcmp(w->t[v - 1].name, name) == 0)
            return v - 1;
    }
}

static void name_insert(st_writer *w, int idx)
{
    size_t k = name_hash(w->t[idx].name) & (w->n_slots - 1);
    while (w->slots[k])
        k = (k + 1) & (w->n_slots - 1);
    w->slots[k] = idx + 1;
}

/* Make room for one more name (load factor <= 1/2). */
static int name_reserve(st_writer *w)
{
    if ((size_t)(w->n + 1) * 2 <= w->n_slots)
        return 0;
    size_t ns = w->n_slots ? w->n_slots * 2 : 64;
    int *slots = calloc(ns, sizeof *slots);
    if (!slots)
        return -1;
    free(w->slots);
    w->slots = slots;
    w->n_slots = ns;
    for (int i = 0; i < w->n; i++)
        name_insert(w, i);
    return 0;
}

static int writer_validate(st_writer *w, const char *name, st_dtype dt, int ndim,
                           const int64_t *shape, const void *data, int deferred, size_t *nbytes)
{
    char *e = w->error;
    size_t el = sizeof w->error;
    if (!name || !*name || strcmp(name, "__metadata__") == 0) {
        q35_errmsg(e, el, "invalid tensor name '%s'", name ? name : "(null)");
        return -1;
    }
    if (name_find(w, name) >= 0) {
        q35_errmsg(e, el, "duplicate tensor name '%s'", name);
        return -1;
    }
    if (!dtype_valid(dt) || ndim < 0 || ndim > ST_MAX_DIMS || (ndim > 0 && !shape)) {
        q35_errmsg(e, el, "tensor '%s': bad dtype or rank %d", name, ndim);
        return -1;
    }
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            q35_errmsg(e, el, "tensor '%s': dim %d is negative", name, i);
            return -1;
        }
    }
    int64_t numel;
    if (shape_size(ndim, shape, st_dtype_size(dt), &numel, nbytes) != 0 ||
        (double)*nbytes >= JSON_INT_LIMIT) {
        q35_errmsg(e, el, "tensor '%s': size overflows", name);
        return -1;
    }
    if (*nbytes && !data && !deferred) {
        q35_errmsg(e, el, "tensor '%s': NULL data", name);
        return -1;
    }
    return 0;
}

static int writer_append(st_writer *w, const char *name, st_dtype dt, int ndim,
                         const int64_t *shape, const void *data, int deferred)
{
    size_t nbytes;
    if (writer_validate(w, name, dt, ndim, shape, data, deferred, &nbytes))
        return -1;
    if (q35_grow_array((void **)&w->t, &w->cap, w->n, sizeof *w->t) || name_reserve(w)) {
        q35_errmsg(w->error, sizeof w->error, "out of memory");
        return -1;
    }
    st_wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) {
        q35_errmsg(w->error, sizeof w->error, "out of memory");
        return -1;
    }
    t->dtype = dt;
    t->ndim = ndim;
    if (ndim)
        memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->data = deferred ? NULL : data;
    t->nbytes = nbytes;
    t->deferred = deferred;
    name_insert(w, w->n);
    w->n++;
    w->n_deferred += deferred;
    return 0;
}

int st_writer_add(st_writer *w, const char *name, st_dtype dt, int ndim,
                  const int64_t *shape, const void *data)
{
    return writer_append(w, name, dt, ndim, shape, data, 0);
}

int st_writer_add_deferred(st_writer *w, const char *name, st_dtype dt, int ndim,
                           const int64_t *shape)
{
    return writer_append(w, name, dt, ndim, shape, NULL, 1);
}

int st_writer_meta(st_writer *w, const char *key, const char *val)
{
    if (!key || !val) {
        q35_errmsg(w->error, sizeof w->error, "NULL metadata key or value");
        return -1;
    }
    for (int i = 0; i < w->n_meta; i++) {
        if (strcmp(w->keys[i], key) == 0) {
            q35_errmsg(w->error, sizeof w->error, "duplicate metadata key '%s'", key);
            return -1;
        }
    }
    /* keys and vals share cap_meta: grow keys against a copy so that
     * cap_meta only advances once both arrays have grown. */
    int cap = w->cap_meta;
    if (q35_grow_array((void **)&w->keys, &cap, w->n_meta, sizeof(char *)) ||
        q35_grow_array((void **)&w->vals, &w->cap_meta, w->n_meta, sizeof(char *))) {
        q35_errmsg(w->error, sizeof w->error, "out of memory");
        return -1;
    }
    char *k = strdup(key), *v = strdup(val);
    if (!k || !v) {
        free(k);
        free(v);
        q35_errmsg(w->error, sizeof w->error, "out of memory");
        return -1;
    }
    w->keys[w->n_meta] = k;
    w->vals[w->n_meta] = v;
    w->n_meta++;
    return 0;
}

/* An exact integer JSON value (cJSON numbers go through double). */
static cJSON *json_int(int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return cJSON_CreateRaw(buf);
}

static cJSON *tensor_json(const st_wtensor *t, uint64_t begin)
{
    cJSON *o = cJSON_CreateObject(), *shape = cJSON_CreateArray();
    cJSON *offs = cJSON_CreateArray();
    if (!o || !shape || !offs)
        goto fail;
    for (int i = 0; i < t->ndim; i++)
        if (!cJSON_AddItemToArray(shape, json_int(t->shape[i])))
            goto fail;
    if (!cJSON_AddItemToArray(offs, json_int((int64_t)begin)) ||
        !cJSON_AddItemToArray(offs, json_int((int64_t)(begin + t->nbytes))))
        goto fail;
    if (!cJSON_AddStringToObject(o, "dtype", st_dtype_name(t->dtype)))
        goto fail;
    /* On success o owns the child; clear our pointer so fail: won't free it twice. */
    if (!cJSON_AddItemToObject(o, "shape", shape))
        goto fail;
    shape = NULL;
    if (!cJSON_AddItemToObject(o, "data_offsets", offs))
        goto fail;
    return o;
fail:
    cJSON_Delete(o);
    cJSON_Delete(shape);
    cJSON_Delete(offs);
    return NULL;
}

/* Build the unpadded header text (malloc'd), or NULL on out of memory. */
static char *build_header(const st_writer *w)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    char *text = NULL;
    if (w->n_meta) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        if (!m)
            goto out;
        for (int i = 0; i < w->n_meta; i++)
            if (!cJSON_AddStringToObject(m, w->keys[i], w->vals[i]))
                goto out;
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        cJSON *t = tensor_json(&w->t[i], off);
        if (!t)
            goto out;
        if (!cJSON_AddItemToObject(root, w->t[i].name, t)) {
            cJSON_Delete(t);
            goto out;
        }
        off += w->t[i].nbytes;   /* each < 2^53; total bounded by memory */
    }
    text = cJSON_PrintUnformatted(root);
out:
    cJSON_Delete(root);
    return text;
}

/* write() all of buf, retrying short writes and EINTR. */
static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t k = write(fd, p, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

struct st_sink {
    int fd;
    size_t left;        /* bytes of the current tensor still expected */
    int overflow;       /* a write went past the tensor's size */
    int io_errno;       /* errno of a failed write, 0 if none */
};

int st_sink_write(st_sink *s, const void *buf, size_t len)
{
    if (s->overflow || s->io_errno)
        return -1;
    if (len > s->left) {
        s->overflow = 1;
        return -1;
    }
    if (len && write_all(s->fd, buf, len)) {
        s->io_errno = errno ? errno : EIO;
        return -1;
    }
    s->left -= len;
    return 0;
}

/* Length prefix, padded header, then every tensor's bytes in order (from
 * its data, or from fill for a deferred one).  On failure the message says
 * what failed, without the path prefix. */
static int write_body(int fd, const st_writer *w, const char *hdr, const char *tmp,
                      st_fill_fn fill, void *ctx, char *err, size_t errlen)
{
    size_t len = strlen(hdr);
    uint64_t padded = ((uint64_t)len + 7) & ~(uint64_t)7;
    char pad[8];
    memset(pad, ' ', sizeof pad);
    if (write_all(fd, &padded, 8) || write_all(fd, hdr, len) ||
        write_all(fd, pad, (size_t)(padded - len))) {
        q35_errmsg(err, errlen, "write to %s failed: %s", tmp, strerror(errno));
        return -1;
    }
    for (int i = 0; i < w->n; i++) {
        const st_wtensor *t = &w->t[i];
        if (!t->deferred) {
            if (t->nbytes && write_all(fd, t->data, t->nbytes)) {
                q35_errmsg(err, errlen, "write to %s failed: %s", tmp, strerror(errno));
                return -1;
            }
            continue;
        }
        st_sink sink = {.fd = fd, .left = t->nbytes};
        char msg[256] = "";
        int rc = fill(ctx, i, t->name, &sink, msg, sizeof msg);
        if (sink.io_errno) {
            q35_errmsg(err, errlen, "tensor '%s': write to %s failed: %s", t->name, tmp,
                       strerror(sink.io_errno));
            return -1;
        }
        if (sink.overflow) {
            q35_errmsg(err, errlen, "tensor '%s': fill wrote more than its %zu bytes", t->name,
                       t->nbytes);
            return -1;
        }
        if (rc != 0) {
            q35_errmsg(err, errlen, "tensor '%s': %s", t->name, msg[0] ? msg : "fill failed");
            return -1;
        }
        if (sink.left) {
            q35_errmsg(err, errlen, "tensor '%s': fill wrote %zu of its %zu bytes", t->name,
                       t->nbytes - sink.left, t->nbytes);
            return -1;
        }
    }
    return 0;
}

static int write_file(st_writer *w, const char *path, st_fill_fn fill, void *ctx, char *err,
                      size_t errlen)
{
    char *hdr = build_header(w);
    if (!hdr) {
        q35_errmsg(err, errlen, "%s: out of memory building header", path);
        return -1;
    }
    size_t tlen = strlen(path) + 32;
    char *tmp = malloc(tlen);
    int rc = -1, fd = -1, created = 0;
    if (!tmp) {
        q35_errmsg(err, errlen, "%s: out of memory", path);
        goto out;
    }
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        q35_errmsg(err, errlen, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        goto out;
    }
    created = 1;
    char why[512];
    if (write_body(fd, w, hdr, tmp, fill, ctx, why, sizeof why)) {
        q35_errmsg(err, errlen, "%s: %s", path, why);
        goto out;
    }
    int cfd = fd;
    fd = -1;
    if (close(cfd) != 0) {   /* close can report deferred write errors */
        q35_errmsg(err, errlen, "%s: closing %s failed: %s", path, tmp, strerror(errno));
        goto out;
    }
    if (rename(tmp, path) != 0) {
        q35_errmsg(err, errlen, "%s: rename from %s failed: %s", path, tmp, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (rc != 0 && created)
        unlink(tmp);   /* never leave a partial file behind */
    free(tmp);
    free(hdr);
    return rc;
}

int st_writer_write(st_writer *w, const char *path, char *err, size_t errlen)
{
    if (w->n_deferred) {
        q35_errmsg(err, errlen, "%s: %d deferred tensor(s) need st_writer_write_stream", path,
                   w->n_deferred);
        return -1;
    }
    return write_file(w, path, NULL, NULL, err, errlen);
}

int st_writer_write_stream(st_writer *w, const char *path, st_fill_fn fill, void *ctx, char *err,
                           size_t errlen)
{
    if (w->n_deferred && !fill) {
        q35_errmsg(err, errlen, "%s: deferred tensors but no fill callback", path);
        return -1;
    }
    return write_file(w, path, fill, ctx, err, errlen);
}

int st_writer_meta_num(st_writer *w, const char *key, double v, int digits)
{
    char num[64];
    snprintf(num, sizeof num, "%.*g", digits, v);
    return st_writer_meta(w, key, num);
}
