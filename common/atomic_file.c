/* Write-to-temporary-then-rename (atomic_file.h). */
#include "common/atomic_file.h"

#include "common/errmsg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void release(q35_atomic_file *a)
{
    free(a->path);
    free(a->tmp);
    memset(a, 0, sizeof *a);
}

int q35_atomic_open(q35_atomic_file *a, const char *path, int append, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    const size_t n = strlen(path) + 32;
    a->path = strdup(path);
    a->tmp = malloc(n);
    if (!a->path || !a->tmp) {
        release(a);
        q35_errmsg(err, errlen, "%s: out of memory", path);
        return -1;
    }
    snprintf(a->tmp, n, "%s.%ld.tmp", path, (long)getpid());
    if (!(a->f = fopen(a->tmp, "wb"))) {
        q35_errmsg(err, errlen, "cannot write %s: %s", path, strerror(errno));
        release(a);
        return -1;
    }
    if (append) {
        FILE *old = fopen(path, "rb");
        if (old) {
            char buf[1 << 16];
            size_t k;
            int bad = 0;
            while (!bad && (k = fread(buf, 1, sizeof buf, old)) > 0) bad = fwrite(buf, 1, k, a->f) != k;
            bad |= ferror(old);
            fclose(old);
            if (bad) {
                q35_errmsg(err, errlen, "cannot append to %s: copying its content failed", path);
                q35_atomic_abort(a);
                return -1;
            }
        }
    }
    return 0;
}

int q35_atomic_commit(q35_atomic_file *a, char *err, size_t errlen)
{
    if (!a->f) {
        q35_errmsg(err, errlen, "%s: not open", a->path ? a->path : "(file)");
        return -1;
    }
    int ok = fflush(a->f) == 0 && fsync(fileno(a->f)) == 0 && !ferror(a->f);
    int e = errno;
    if (fclose(a->f)) ok = 0, e = errno;
    a->f = NULL;
    if (ok && rename(a->tmp, a->path)) ok = 0, e = errno;
    if (!ok) {
        q35_errmsg(err, errlen, "cannot write %s: %s", a->path, strerror(e));
        remove(a->tmp);
        release(a);
        return -1;
    }
    release(a);
    return 0;
}

void q35_atomic_abort(q35_atomic_file *a)
{
    if (!a) return;
    if (a->f) fclose(a->f);
    if (a->tmp) remove(a->tmp);
    release(a);
}
