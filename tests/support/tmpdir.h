/* A scratch directory for a test group: made in setup, emptied and removed
 * in teardown (whatever a failing test left in it goes too). */
#ifndef Q35_TEST_TMPDIR_H
#define Q35_TEST_TMPDIR_H

#include <stddef.h>

/* dir (>= 64 bytes) gets /tmp/<prefix>_XXXXXX made by mkdtemp.  0 or -1. */
int test_tmpdir_make(char *dir, const char *prefix);
/* Unlinks every entry of dir, then dir.  0 or -1. */
int test_tmpdir_remove(const char *dir);
/* buf = dir/name */
void test_tmpdir_path(char *buf, size_t n, const char *dir, const char *name);

#endif
