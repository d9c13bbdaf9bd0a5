/* libFuzzer target: the safetensors reader (common/safetensors.h) on any
 * bytes.  Its promise: st_open accepts a file only if every tensor's data
 * lies inside the map, its size is numel x dtype size, and its dtype, rank
 * and shape are valid; then every read helper works on every tensor.
 * Otherwise it fails with a one-line message. */
#include "common/safetensors.h"
#include "tests/fuzz/fuzz_input.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_file f;
    char err[512];
    if (st_open(fuzz_input_path(data, size), &f, err, sizeof err)) {
        fuzz_check_message(err, sizeof err);
        return 0;
    }
    const char *lo = f.map, *hi = lo + f.map_len;
    for (int i = 0; i < f.n_tensors; i++) {
        const st_tensor *t = &f.tensors[i];
        FUZZ_PROMISE(t->name && st_find(&f, t->name) == t);
        FUZZ_PROMISE(t->ndim >= 0 && t->ndim <= ST_MAX_DIMS);
        for (int d = 0; d < t->ndim; d++) FUZZ_PROMISE(t->shape[d] >= 0);
        const int64_t n = st_numel(t);
        FUZZ_PROMISE(n >= 0 && (uint64_t)n * st_dtype_size(t->dtype) == t->nbytes);
        FUZZ_PROMISE(t->nbytes == 0 || ((const char *)t->data >= lo && (const char *)t->data + t->nbytes <= hi));
        if (t->dtype == ST_I32 || t->dtype == ST_I64) {
            int32_t *v = malloc((size_t)n * sizeof *v + 1);
            if (st_read_i32(t, v, (size_t)n, err, sizeof err)) fuzz_check_message(err, sizeof err);
            free(v);
        } else {
            float *v = malloc((size_t)n * sizeof *v + 1);
            FUZZ_PROMISE(st_read_f32(t, v, (size_t)n, err, sizeof err) == 0);
            free(v);
        }
    }
    for (int i = 0; i < f.n_meta; i++) FUZZ_PROMISE(st_meta(&f, f.meta_keys[i]) == f.meta_vals[i]);
    st_close(&f);
    return 0;
}
