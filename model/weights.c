/* weights.c - see weights.h and docs/model-loading.md. */
#include "model/weights.h"

#include "common/errmsg.h"
#include "common/json_file.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


static int starts_with(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

void q35_weights_close(q35_weights *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n_shards; i++) {
        if (w->shards)
            st_close(&w->shards[i]);
        if (w->shard_names)
            free(w->shard_names[i]);
    }
    free(w->shards);
    free(w->shard_names);
    free(w->entries);
    free(w->dir);
    memset(w, 0, sizeof *w);
}

/* Appends a shard name (if new) and returns its index, or -1 (out of memory). */
static int add_shard_name(q35_weights *w, int *cap, const char *name)
{
    for (int i = 0; i < w->n_shards; i++)
        if (strcmp(w->shard_names[i], name) == 0)
            return i;
    if (w->n_shards == *cap) {
        int nc = *cap ? 2 * *cap : 8;
        char **p = realloc(w->shard_names, (size_t)nc * sizeof *p);
        if (!p)
            return -1;
        w->shard_names = p;
        *cap = nc;
    }
    w->shard_names[w->n_shards] = strdup(name);
    if (!w->shard_names[w->n_shards])
        return -1;
    return w->n_shards++;
}

/* A shard must be a plain file name inside the folder. */
static int shard_name_ok(const char *s)
{
    return s[0] && !strchr(s, '/') && !strchr(s, '\\') && !strstr(s, "..");
}

/* Reads the index: fills shard_names; weight_map stays in *map (caller frees). */
static int read_index(const char *dir, const char *path, q35_weights *w, cJSON **map_root,
                      char *err, size_t errlen)
{
    (void)dir;
    size_t len;
    char *buf = q35_read_file_bounded(path, Q35_INDEX_MAX_BYTES, &len, err, errlen);
    if (!buf)
        return -1;
    cJSON *root = cJSON_ParseWithLength(buf, len);
    free(buf);
    if (!root) {
        q35_errmsg(err, errlen, "%s: not valid JSON", path);
        return -1;
    }
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        q35_errmsg(err, errlen, "%s: missing or non-object field 'weight_map'", path);
        cJSON_Delete(root);
        return -1;
    }
    int cap = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e)) {
            q35_errmsg(err, errlen, "%s: weight_map entry '%s' is not a string", path, e->string);
            goto fail;
        }
        if (!shard_name_ok(e->valuestring)) {
            q35_errmsg(err, errlen, "%s: weight_map entry '%s' names shard '%s': shard names must be "
                                 "plain file names (no '/' or '..')",
                    path, e->string, e->valuestring);
            goto fail;
        }
        if (add_shard_name(w, &cap, e->valuestring) < 0) {
            q35_errmsg(err, errlen, "%s: out of memory", path);
            goto fail;
        }
    }
    if (w->n_shards == 0) {
        q35_errmsg(err, errlen, "%s: 'weight_map' is empty", path);
        goto fail;
    }
    *map_root = root;
    return 0;
fail:
    cJSON_Delete(root);
    return -1;
}

static int ignored(q35_weights *w, const char *name)
{
    if (starts_with(name, "model.visual.")) {
        w->n_ignored_visual++;
        return 1;
    }
    /* the MTP head's tensors are indexed (docs/mtp.md); counted so the loader knows whether there is one */
    if (starts_with(name, "mtp."))
        w->n_mtp++;
    return 0;
}

static int cmp_entry(const void *a, const void *b)
{
    const q35_weight_entry *x = a, *y = b;
    return strcmp(x->t->name, y->t->name);
}

/* Builds the sorted entry table; rejects a name present in two shards. */
static int build_index(q35_weights *w, char *err, size_t errlen)
{
    size_t total = 0;
    for (int s = 0; s < w->n_shards; s++)
        total += (size_t)w->shards[s].n_tensors;
    w->entries = malloc((total ? total : 1) * sizeof *w->entries);
    if (!w->entries) {
        q35_errmsg(err, errlen, "out of memory indexing %zu tensors", total);
        return -1;
    }
    for (int s = 0; s < w->n_shards; s++)
        for (int i = 0; i < w->shards[s].n_tensors; i++) {
            const st_tensor *t = &w->shards[s].tensors[i];
            if (!ignored(w, t->name))
                w->entries[w->n_entries++] = (q35_weight_entry){t, s};
        }
    qsort(w->entries, (size_t)w->n_entries, sizeof *w->entries, cmp_entry);
    for (int i = 1; i < w->n_entries; i++)
        if (strcmp(w->entries[i - 1].t->name, w->entries[i].t->name) == 0) {
            q35_errmsg(err, errlen, "tensor '%s' appears in two shards: %s and %s",
                    w->entries[i].t->name, w->shard_names[w->entries[i - 1].shard],
                    w->shard_names[w->entries[i].shard]);
            return -1;
        }
    return 0;
}

/* Every weight_map entry must be in the shard it names. */
static int check_map(const q35_weights *w, const cJSON *map_root, const char *path, char *err,
                     size_t errlen)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(map_root, "weight_map")) {
        int s = 0;
        while (strcmp(w->shard_names[s], e->valuestring) != 0)
            s++;
        if (!st_find(&w->shards[s], e->string)) {
            q35_errmsg(err, errlen, "%s: weight_map puts '%s' in %s, which does not contain it", path,
                    e->string, e->valuestring);
            return -1;
        }
    }
    return 0;
}

int q35_weights_open(const char *dir, q35_weights *w, char *err, size_t errlen)
{
    memset(w, 0, sizeof *w);
    char single[4096], index[4096], shard[4096];
    if (snprintf(single, sizeof single, "%s/model.safetensors", dir) >= (int)sizeof single ||
        snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir) >= (int)sizeof index) {
        q35_errmsg(err, errlen, "%s: directory name too long", dir);
        return -1;
    }
    struct stat sb;
    cJSON *map_root = NULL;
    if (!(w->dir = strdup(dir))) {
        q35_errmsg(err, errlen, "%s: out of memory", dir);
        return -1;
    }
    /* As transformers: a single model.safetensors is preferred over an index. */
    if (stat(single, &sb) == 0) {
        int cap = 0;
        if (add_shard_name(w, &cap, "model.safetensors") < 0) {
            q35_errmsg(err, errlen, "out of memory");
            goto fail;
        }
    } else if (stat(index, &sb) == 0) {
        if (read_index(dir, index, w, &map_root, err, errlen))
            goto fail;
        w->sharded = 1;
    } else {
        q35_errmsg(err, errlen, "%s: neither model.safetensors nor model.safetensors.index.json found",
                dir);
        goto fail;
    }
    w->shards = calloc((size_t)w->n_shards, sizeof *w->shards);
    if (!w->shards) {
        q35_errmsg(err, errlen, "out of memory");
        goto fail;
    }
    for (int s = 0; s < w->n_shards; s++) {
        if (snprintf(shard, sizeof shard, "%s/%s", dir, w->shard_names[s]) >= (int)sizeof shard) {
            q35_errmsg(err, errlen, "%s: shard path too long", dir);
            goto fail;
        }
        /* a shard that is not there is the index's fault: name the index and the entry */
        if (w->sharded && stat(shard, &sb) != 0) {
            q35_errmsg(err, errlen, "%s: weight_map names shard '%s', which cannot be opened: %s", index,
                       w->shard_names[s], strerror(errno));
            goto fail;
        }
        if (st_open(shard, &w->shards[s], err, errlen) ||
            st_check_no_overlap(&w->shards[s], shard, err, errlen))
            goto fail;
    }
    if (build_index(w, err, errlen))
        goto fail;
    if (map_root && check_map(w, map_root, index, err, errlen))
        goto fail;
    cJSON_Delete(map_root);
    return 0;
fail:
    cJSON_Delete(map_root);
    q35_weights_close(w);
    return -1;
}

const st_tensor *q35_weights_find_raw(const q35_weights *w, const char *full_name)
{
    int lo = 0, hi = w->n_entries - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(full_name, w->entries[mid].t->name);
        if (c == 0)
            return w->entries[mid].t;
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

static const char *const prefixes[] = {"model.language_model.", "model."};

const st_tensor *q35_weights_find(const q35_weights *w, const char *name)
{
    if (starts_with(name, "lm_head.") || starts_with(name, "mtp."))
        return q35_weights_find_raw(w, name);
    char full[512];
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        if (snprintf(full, sizeof full, "%s%s", prefixes[i], name) >= (int)sizeof full)
            return NULL;
        const st_tensor *t = q35_weights_find_raw(w, full);
        if (t)
            return t;
    }
    return NULL;
}

void q35_weights_path_of(const q35_weights *w, const st_tensor *t, char *buf, size_t n)
{
    const char *dir = w->dir ? w->dir : ".";
    /* addresses compared as integers: t may lie in any shard's array */
    const uintptr_t at = (uintptr_t)t;
    for (int s = 0; t && s < w->n_shards; s++)
        if (at >= (uintptr_t)w->shards[s].tensors &&
            at < (uintptr_t)(w->shards[s].tensors + w->shards[s].n_tensors)) {
            snprintf(buf, n, "%s/%s", dir, w->shard_names[s]);
            return;
        }
    snprintf(buf, n, "%s/%s", dir, w->sharded ? "model.safetensors.index.json" : "model.safetensors");
}

static void fmt_shape(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++) {
        if (shape && shape[i] >= 0)
            k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
        else
            k += (size_t)snprintf(buf + k, n - k, "%s*", i ? ", " : "");
    }
    if (k < n)
        snprintf(buf + k, n - k, "]");
}

int q35_weights_expect(const q35_weights *w, const char *name, int ndim, const int64_t *shape,
                       const st_tensor **out, char *err, size_t errlen)
{
    if (out)
        *out = NULL;
    const st_tensor *t = q35_weights_find(w, name);
    char file[4096];
    q35_weights_path_of(w, t, file, sizeof file);
    if (!t) {
        if (starts_with(name, "lm_head.") || starts_with(name, "mtp."))
            q35_errmsg(err, errlen, "%s: tensor '%s' not found", file, name);
        else
            q35_errmsg(err, errlen, "%s: tensor '%s' not found (tried 'model.language_model.%s' and 'model.%s')",
                    file, name, name, name);
        return -1;
    }
    char want[160], got[160];
    int ok = t->ndim == ndim;
    for (int i = 0; ok && shape && i < ndim; i++)
        ok = shape[i] < 0 || shape[i] == t->shape[i];
    if (!ok) {
        fmt_shape(want, sizeof want, ndim, shape);
        fmt_shape(got, sizeof got, t->ndim, t->shape);
        q35_errmsg(err, errlen, "%s: tensor '%s' (%s): expected shape %s, got %s", file, name, t->name, want, got);
        return -1;
    }
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16) {
        q35_errmsg(err, errlen, "%s: tensor '%s' (%s): dtype %s, expected F32, F16 or BF16", file, name, t->name,
                st_dtype_name(t->dtype));
        return -1;
    }
    if (out)
        *out = t;
    return 0;
}
