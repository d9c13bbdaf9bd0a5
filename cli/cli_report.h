/* cli_report.h - what the check commands print and write alike: the
 * one-line progress on a terminal, an error-statistics record in a JSON
 * report, and writing the report atomically. */
#ifndef Q35_CLI_REPORT_H
#define Q35_CLI_REPORT_H

#include "harness/metrics.h"

#include <cjson/cJSON.h>

/* "\r[tag] done/total cases  (what)" on stderr when it is a terminal,
 * erased when done == total; what may be NULL. */
void cli_progress_line(const char *tag, const char *what, int done, int total);
/* normwise (null when non-finite: JSON has no inf), maxabs, nonfinite. */
void cli_json_add_err_stats(cJSON *o, const err_stats *e);
/* Writes root to path atomically and deletes root; 0, or -1 after one line
 * on stderr. */
int cli_json_write_report(cJSON *root, const char *path);

#endif
