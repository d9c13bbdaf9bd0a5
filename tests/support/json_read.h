/* Reads a JSON file for a test's own inspection. */
#ifndef Q35_TEST_JSON_READ_H
#define Q35_TEST_JSON_READ_H

#include <cjson/cJSON.h>

/* The parsed file (free with cJSON_Delete), or NULL if it cannot be read or parsed. */
cJSON *test_read_json(const char *path);

#endif
