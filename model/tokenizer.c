/* Loading, freeing and looking up the tokenizer (tokenizer.h); encoding is
 * tokenizer_encode.c, decoding tokenizer_decode.c, the file tokenizer_load.c. */
#include "model/tokenizer_internal.h"
#include "common/errmsg.h"
#include "common/json_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Qwen3.5's tokenizer.json is 11-15 MB; room for much larger vocabularies. */
#define TOKENIZER_JSON_LIMIT ((size_t)512 << 20)

q35_tokenizer *q35_tokenizer_load(const char *path, char *err, size_t errlen)
{
    size_t len;
    char *json = q35_read_file_bounded(path, TOKENIZER_JSON_LIMIT, &len, err, errlen);
    if (!json) return NULL;
    q35_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        free(json);
        q35_errmsg(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    const int rc = q35_tokenizer_fill(t, json, len, path, err, errlen);
    free(json);
    if (rc) {
        q35_tokenizer_release(t);
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    return t;
}

q35_tokenizer *q35_tokenizer_load_dir(const char *dir, int *missing, char *err, size_t errlen)
{
    *missing = 0;
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/tokenizer.json", dir) >= sizeof path) {
        q35_errmsg(err, errlen, "%s: path too long", dir);
        return NULL;
    }
    struct stat st;
    if (stat(path, &st) && errno == ENOENT) {
        *missing = 1;
        if (err && errlen) err[0] = 0;
        return NULL;
    }
    return q35_tokenizer_load(path, err, errlen);
}

void q35_tokenizer_free(q35_tokenizer *t)
{
    if (!t) return;
    q35_tok_scratch_free(t->scratch);
    pthread_mutex_destroy(&t->lock);
    q35_tokenizer_release(t);
    free(t);
}

int32_t q35_tokenizer_n_ids(const q35_tokenizer *t) { return t->n_ids; }

int32_t q35_tokenizer_id(const q35_tokenizer *t, const char *content)
{
    return q35_bytes_map_get(&t->content, content, strlen(content));
}

int q35_tokenizer_is_special(const q35_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_ids && t->special[id];
}
