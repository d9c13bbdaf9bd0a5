/* JSON files: read with a size bound (configs, indexes, reports from
 * anywhere), written atomically (common/atomic_file.h). */
#ifndef Q35_JSON_FILE_H
#define Q35_JSON_FILE_H

#include <cjson/cJSON.h>
#include <stddef.h>

/* The whole file, NUL-terminated, if it has at most limit bytes; *len (if
 * not NULL) gets its length.  NULL with a message naming the path otherwise
 * (missing, unreadable, larger than limit).  Free with free(). */
char *q35_read_file_bounded(const char *path, size_t limit, size_t *len, char *err, size_t errlen);

/* Parses a JSON file of at most limit bytes; NULL with a message naming the
 * path and the byte where parsing stopped.  Free with cJSON_Delete. */
cJSON *q35_json_read_file(const char *path, size_t limit, char *err, size_t errlen);

/* 0, or -1 with a message naming the path and the reason.  root stays the caller's. */
int q35_json_write_atomic(const cJSON *root, const char *path, char *err, size_t errlen);

#endif
