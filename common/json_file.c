#include "common/json_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int q35_json_write_atomic(const cJSON *root, const char *path, char *err, size_t errlen)
{
    char *txt = cJSON_Print(root);
    if (!txt) {
        snprintf(err, errlen, "%s: out of memory formatting JSON", path);
        return -1;
    }
    const size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) {
        free(txt);
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    snprintf(tmp, n, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    int ok = f && fputs(txt, f) >= 0 && fputc('\n', f) != EOF && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int e = errno;
    if (f && fclose(f)) ok = 0, e = errno;
    free(txt);
    if (!ok || rename(tmp, path)) {
        if (ok) e = errno;
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(e));
        remove(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}
