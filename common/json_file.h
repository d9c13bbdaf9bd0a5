/* Writing a JSON report so that nothing half-written is ever left at its
 * path: printed, written to PATH.<pid>.tmp, flushed, then renamed. */
#ifndef Q35_JSON_FILE_H
#define Q35_JSON_FILE_H

#include <cjson/cJSON.h>
#include <stddef.h>

/* 0, or -1 with a message naming the path and the reason.  root stays the caller's. */
int q35_json_write_atomic(const cJSON *root, const char *path, char *err, size_t errlen);

#endif
