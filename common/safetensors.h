/* safetensors.h - read and write the safetensors tensor container format.
 *
 * Layout: u64 little-endian N, N bytes of UTF-8 JSON header, data area.
 * The header maps tensor name -> {"dtype","shape","data_offsets"} and may
 * hold "__metadata__": {string: string}.  Offsets are relative to the data
 * area, which starts at byte 8+N.
 *
 * Reading mmaps the file read-only and validates the whole header up front,
 * so every st_tensor handed out afterwards is known to lie inside the map.
 * Tensor data in the map may be unaligned; the st_read_* helpers copy with
 * memcpy.  The host is assumed little-endian (checked at compile time).
 *
 * All functions returning int give 0 on success and -1 on failure; those
 * taking (err, errlen) then write a one-line message there (err may be NULL).
 */
#ifndef Q35LAB_SAFETENSORS_H
#define Q35LAB_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef enum { ST_F32, ST_F16, ST_BF16, ST_I32, ST_I64 } st_dtype;
#define ST_MAX_DIMS 8

/* Header length above this is rejected as absurd (same limit as the
 * reference Rust implementation). */
#define ST_MAX_HEADER_LEN 100000000ull

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;   /* points into the map; valid until st_close */
    size_t nbytes;
} st_tensor;

typedef struct {
    int n_tensors;
    st_tensor *tensors;  /* in header order */
    int n_meta;
    char **meta_keys;
    char **meta_vals;
    void *map;
    size_t map_len;
} st_file;

/* mmap read-only + validate everything; 0 ok, -1 with message.
 * On failure *f is left zeroed, so st_close(f) is a harmless no-op. */
int st_open(const char *path, st_file *f, char *err, size_t errlen);
/* Safe on a zeroed or failed st_file, and idempotent (re-zeroes *f). */
void st_close(st_file *f);
const st_tensor *st_find(const st_file *f, const char *name); /* NULL if absent */
const char *st_meta(const st_file *f, const char *key);       /* NULL if absent */
/* 0, or -1 with a message naming path, both tensors and their data_offsets
 * if two tensors share bytes (empty tensors share none).  st_open accepts
 * such a file (one tensor may alias part of another's bytes); a reader whose
 * tensors are independent parameters, as a model checkpoint's are (Hugging
 * Face's safetensors refuses overlaps), checks with this. */
int st_check_no_overlap(const st_file *f, const char *path, char *err, size_t errlen);

size_t st_dtype_size(st_dtype t);       /* 0 for an invalid value */
const char *st_dtype_name(st_dtype t);  /* "?" for an invalid value */
/* Parse "F32".."I64"; 0 ok, -1 if unknown. */
int st_dtype_parse(const char *s, st_dtype *out);
int64_t st_numel(const st_tensor *t);   /* 1 for a scalar (ndim 0) */

/* Copy a tensor into a caller buffer of n floats, converting F32/F16/BF16
 * exactly.  Error if dtype is an integer type or numel != n. */
int st_read_f32(const st_tensor *t, float *dst, size_t n, char *err, size_t errlen);
/* I32, or I64 narrowed with a range check. */
int st_read_i32(const st_tensor *t, int32_t *dst, size_t n, char *err, size_t errlen);

/* Load a tensor by name into a freshly malloc'd float array (free() it),
 * checking its rank and shape; expect[i] < 0 means any, and expect == NULL
 * checks the rank only.  On failure *out is NULL and the message names the
 * tensor and the expected and actual shapes. */
int st_load_f32(const st_file *f, const char *name, int ndim, const int64_t *expect,
                float **out, char *err, size_t errlen);

/* bf16 is the top 16 bits of an f32; f16 is IEEE binary16 (subnormals,
 * inf, nan).  f32 -> 16-bit conversions round to nearest even; NaN stays
 * NaN (quiet), overflow becomes inf. */
float st_bf16_to_f32(uint16_t h);
uint16_t st_f32_to_bf16(float f);
float st_f16_to_f32(uint16_t h);
uint16_t st_f32_to_f16(float f);

/* Writer: tensors keep pointing at caller data until st_writer_write.
 * Tensors are laid out in the order added, back to back. */
typedef struct st_writer st_writer;
st_writer *st_writer_new(void);                 /* NULL if out of memory */
/* Rejects a NULL/empty/"__metadata__"/duplicate name, a bad dtype, ndim
 * outside [0, ST_MAX_DIMS], negative dims, size overflow, and NULL data for
 * a non-empty tensor.  The reason is available from st_writer_error. */
int st_writer_add(st_writer *w, const char *name, st_dtype dt, int ndim,
                  const int64_t *shape, const void *data);
/* Rejects NULL key/value and duplicate keys. */
int st_writer_meta(st_writer *w, const char *key, const char *val);
/* A number as metadata text, printed with %.*g at `digits` significant digits. */
int st_writer_meta_num(st_writer *w, const char *key, double v, int digits);
/* Writes PATH.tmp.<pid> (no fsync), then rename(): nothing half-written is
 * ever left at PATH.  The header is padded with spaces to a multiple of 8 so
 * the data area is 8-aligned.  The writer stays usable afterwards. */
int st_writer_write(st_writer *w, const char *path, char *err, size_t errlen);
/* Message for the last failed st_writer_add/st_writer_meta ("" if none). */
const char *st_writer_error(const st_writer *w);
void st_writer_free(st_writer *w);              /* NULL is fine */

/* Streaming writer, for files larger than memory.  A deferred tensor has a
 * name, dtype and shape but no data yet: the header (offsets included) is
 * computed from names and shapes alone, and the bytes are produced while the
 * file is written, one tensor at a time, by a fill callback.  Same checks as
 * st_writer_add except the data pointer.  st_writer_write refuses a writer
 * holding deferred tensors; st_writer_write_stream accepts a mix (tensors
 * added with data are copied from it as usual). */
int st_writer_add_deferred(st_writer *w, const char *name, st_dtype dt, int ndim,
                           const int64_t *shape);

/* Where a fill callback puts the bytes of the tensor it is asked for. */
typedef struct st_sink st_sink;
/* Append len bytes (any amount per call, in order).  -1 if the write failed
 * (errno kept) or would go past the tensor's size; the fill should then
 * return -1 (its message may stay empty: the writer names the cause). */
int st_sink_write(st_sink *s, const void *buf, size_t len);

/* Called once per deferred tensor, in file order, with the tensor's index in
 * the writer (0-based, order of adding) and name.  It must write exactly the
 * tensor's byte size through the sink and return 0, or return -1 with a
 * message in err. */
typedef int (*st_fill_fn)(void *ctx, int index, const char *name, st_sink *sink, char *err,
                          size_t errlen);

/* Like st_writer_write (PATH.tmp.<pid>, then rename), with fill producing the
 * deferred tensors.  Memory is what fill uses: the writer buffers nothing.
 * On any failure (a fill error, a short or long fill, an I/O error) the
 * temporary file is removed, PATH is untouched, and the message names the
 * path, the tensor and the reason. */
int st_writer_write_stream(st_writer *w, const char *path, st_fill_fn fill, void *ctx, char *err,
                           size_t errlen);

#endif /* Q35LAB_SAFETENSORS_H */
