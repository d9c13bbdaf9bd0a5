/* JSON files (json_file.h). */
#include "common/json_file.h"

#include "common/atomic_file.h"
#include "common/errmsg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *q35_read_file_bounded(const char *path, size_t limit, size_t *len, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        q35_errmsg(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(limit + 1);
    if (!buf) {
        fclose(fp);
        q35_errmsg(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    size_t n = fread(buf, 1, limit + 1, fp);
    int bad = ferror(fp);
    fclose(fp);
    if (bad || n > limit) {
        q35_errmsg(err, errlen, bad ? "%s: read error" : "%s: too large (more than %zu bytes)", path, limit);
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

cJSON *q35_json_read_file(const char *path, size_t limit, char *err, size_t errlen)
{
    size_t len;
    char *buf = q35_read_file_bounded(path, limit, &len, err, errlen);
    if (!buf) return NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (!root) {
        const size_t at = end && end >= buf ? (size_t)(end - buf) : 0;
        q35_errmsg(err, errlen, "%s: not valid JSON (parse error at byte %zu)", path, at);
    }
    free(buf);
    return root;
}

int q35_json_write_atomic(const cJSON *root, const char *path, char *err, size_t errlen)
{
    char *txt = cJSON_Print(root);
    if (!txt) {
        q35_errmsg(err, errlen, "%s: out of memory formatting JSON", path);
        return -1;
    }
    q35_atomic_file a;
    int rc = q35_atomic_open(&a, path, 0, err, errlen);
    if (!rc && (fputs(txt, a.f) < 0 || fputc('\n', a.f) == EOF)) {
        q35_errmsg(err, errlen, "cannot write %s: %s", path, strerror(errno));
        q35_atomic_abort(&a);
        rc = -1;
    } else if (!rc)
        rc = q35_atomic_commit(&a, err, errlen);
    free(txt);
    return rc;
}
