/* Files that are either complete or absent: every file q35lab writes
 * (checkpoints, goldens, reports, results, state files) is written to
 * PATH.<pid>.tmp beside its destination, flushed and synced, and renamed over
 * PATH only when complete, so a crash, a full disk or a bad input half-way
 * leaves the old file (or none) at PATH, never a truncated one.  A rename
 * within one folder is atomic on POSIX file systems. */
#ifndef Q35_ATOMIC_FILE_H
#define Q35_ATOMIC_FILE_H

#include <stddef.h>
#include <stdio.h>

typedef struct {
    FILE *f;      /* write here */
    char *path;   /* destination */
    char *tmp;    /* PATH.<pid>.tmp */
} q35_atomic_file;

/* Opens the temporary file; with append, it starts as a copy of PATH's
 * current content (if PATH exists).  0, or -1 with a message naming PATH. */
int q35_atomic_open(q35_atomic_file *a, const char *path, int append, char *err, size_t errlen);
/* Flushes, syncs, closes and renames onto PATH.  0, or -1 with a message
 * (the temporary file is removed and PATH left as it was). */
int q35_atomic_commit(q35_atomic_file *a, char *err, size_t errlen);
/* Closes and removes the temporary file; PATH is left as it was.  Safe on a
 * zeroed or already finished q35_atomic_file. */
void q35_atomic_abort(q35_atomic_file *a);

#endif
