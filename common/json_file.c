/* JSON files (json_file.h). */
#include "common/json_file.h"

#include "common/atomic_file.h"
#include "common/errmsg.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

char *q35_read_file_bounded(const char *path, size_t limit, size_t *len, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        q35_errmsg(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    /* A regular file's size is known: allocate what it holds, not the limit
     * (a 1 KiB config must not cost a 64 MiB allocation).  Anything else
     * (a pipe) is read up to the limit in growing steps. */
    struct stat st;
    const int regular = !fstat(fileno(fp), &st) && S_ISREG(st.st_mode);
    if (regular && (uint64_t)st.st_size > limit) {
        fclose(fp);
        q35_errmsg(err, errlen, "%s: too large (more than %zu bytes)", path, limit);
        return NULL;
    }
    size_t cap = regular ? (size_t)st.st_size + 1 : limit < 65536 ? limit + 1 : 65536;
    char *buf = malloc(cap + 1);
    size_t n = 0;
    int bad = !buf;
    while (!bad) {
        n += fread(buf + n, 1, cap - n, fp);
        if (ferror(fp) || n < cap || n > limit) break; /* error, end of file, or past the limit */
        const size_t grown = cap * 2 > limit + 1 ? limit + 1 : cap * 2;
        char *b = realloc(buf, grown + 1);
        if (!b) bad = 1;
        else buf = b, cap = grown;
    }
    const int rd_err = !bad && ferror(fp);
    fclose(fp);
    if (bad || rd_err || n > limit) {
        if (bad) q35_errmsg(err, errlen, "%s: out of memory", path);
        else if (rd_err) q35_errmsg(err, errlen, "%s: read error", path);
        else q35_errmsg(err, errlen, "%s: too large (more than %zu bytes)", path, limit);
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
