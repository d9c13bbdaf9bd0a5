/* generation_config.c - eos_token_id from generation_config.json or
 * config.json (generation_config.h). */
#include "model/generation_config.h"

#include "common/errmsg.h"
#include "common/json_file.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *json_type(const cJSON *j)
{
    return cJSON_IsNull(j) ? "null" : cJSON_IsBool(j) ? "bool" : cJSON_IsNumber(j) ? "number"
         : cJSON_IsString(j) ? "string" : cJSON_IsArray(j) ? "array" : cJSON_IsObject(j) ? "object" : "invalid";
}

static int eos_id(const cJSON *j, const char *name, const char *what, int vocab, int32_t *out, char *err,
                  size_t errlen)
{
    if (!cJSON_IsNumber(j)) {
        q35_errmsg(err, errlen, "%s: field '%s' must be an integer%s, got %s", name, what,
                   strchr(what, '[') ? "" : " or an array of integers", json_type(j));
        return -1;
    }
    const double v = j->valuedouble;
    if (!isfinite(v) || v != floor(v) || v < 0 || v >= vocab) {
        q35_errmsg(err, errlen, "%s: field '%s' must be an integer id in [0, %d), got %g", name, what, vocab, v);
        return -1;
    }
    *out = (int32_t)v;
    return 0;
}

int q35_eos_parse(const char *json, size_t len, const char *name, const q35_config *c, q35_eos *e, char *err,
                  size_t errlen)
{
    e->n = 0;
    e->source = "none";
    const cJSON *f = NULL;
    cJSON *root = NULL;
    if (json) {
        root = cJSON_ParseWithLength(json, len);
        if (!root) { q35_errmsg(err, errlen, "%s: not valid JSON", name); return -1; }
        if (!cJSON_IsObject(root)) {
            q35_errmsg(err, errlen, "%s: expected a JSON object, got %s", name, json_type(root));
            cJSON_Delete(root);
            return -1;
        }
        f = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    }
    int rc = 0;
    if (f) {
        e->source = "generation_config.json";
        if (cJSON_IsArray(f)) {
            const int n = cJSON_GetArraySize(f);
            if (n > Q35_MAX_EOS) {
                q35_errmsg(err, errlen, "%s: field 'eos_token_id' has %d entries (at most %d)", name, n, Q35_MAX_EOS);
                rc = -1;
            }
            for (int i = 0; !rc && i < n; i++)
                rc = eos_id(cJSON_GetArrayItem(f, i), name, "eos_token_id[]", c->vocab_size, &e->id[i], err, errlen);
            if (!rc) e->n = n;
        } else if (!cJSON_IsNull(f)) {
            rc = eos_id(f, name, "eos_token_id", c->vocab_size, &e->id[0], err, errlen);
            if (!rc) e->n = 1;
        }
    } else if (c->n_eos > 0) {
        e->source = "config.json";
        e->n = c->n_eos;
        for (int i = 0; i < c->n_eos; i++) e->id[i] = c->eos_token_id[i];
    }
    cJSON_Delete(root);
    if (rc) e->n = 0;
    return rc;
}

int q35_eos_load(const char *dir, const q35_config *c, q35_eos *e, char *err, size_t errlen)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno != ENOENT) {
            q35_errmsg(err, errlen, "%s: %s", path, strerror(errno));
            e->n = 0;
            return -1;
        }
        return q35_eos_parse(NULL, 0, path, c, e, err, errlen);
    }
    size_t len = 0;
    char *text = q35_read_file_bounded(path, Q35_GENCFG_MAX_BYTES, &len, err, errlen);
    if (!text) { e->n = 0; return -1; }
    const int rc = q35_eos_parse(text, len, path, c, e, err, errlen);
    free(text);
    return rc;
}

int q35_eos_has(const q35_eos *e, int32_t id)
{
    for (int i = 0; i < e->n; i++)
        if (e->id[i] == id) return 1;
    return 0;
}
