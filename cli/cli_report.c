#include "cli/cli_report.h"
#include "common/json_file.h"

#include <stdio.h>
#include <unistd.h>

void cli_progress_line(const char *tag, const char *what, int done, int total)
{
    if (!isatty(2)) return;
    if (what) fprintf(stderr, "\r[%s] %4d/%d cases  (%s)          ", tag, done, total, what);
    else fprintf(stderr, "\r[%s] %4d/%d cases          ", tag, done, total);
    if (done == total) fprintf(stderr, "\r%80s\r", "");
}

void cli_json_add_err_stats(cJSON *o, const err_stats *e)
{
    if (e->nonfinite) cJSON_AddNullToObject(o, "normwise");
    else cJSON_AddNumberToObject(o, "normwise", e->normwise);
    cJSON_AddNumberToObject(o, "maxabs", e->maxabs);
    cJSON_AddNumberToObject(o, "nonfinite", (double)e->nonfinite);
}

int cli_json_write_report(cJSON *root, const char *path)
{
    char err[512];
    const int rc = q35_json_write_atomic(root, path, err, sizeof err);
    cJSON_Delete(root);
    if (rc) fprintf(stderr, "q35lab: %s\n", err);
    return rc ? -1 : 0;
}
