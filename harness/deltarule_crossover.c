#include "harness/deltarule_crossover.h"
#include "common/json_file.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dr_crossover_from_medians(const int *Ts, const double *rec, const double *chk, int n)
{
    int from = 0;
    for (int i = n - 1; i >= 0; i--) {
        if (!(chk[i] > 0 && rec[i] > 0 && chk[i] < rec[i])) break;
        from = Ts[i];
    }
    return from;
}

int dr_crossover_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "cannot open %s", path); return -1; }
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *root = cJSON_Parse(buf);
    const cJSON *tab = root ? cJSON_GetObjectItemCaseSensitive(root, "chunked_from_T") : NULL;
    if (!cJSON_IsObject(tab)) {
        snprintf(err, errlen, "%s: no object 'chunked_from_T'", path);
        cJSON_Delete(root);
        return -1;
    }
    deltarule_crossover x = {{0}, ""};
    int measured[DR_CROSSOVER_MAX_THREADS] = {0};
    const cJSON *it;
    cJSON_ArrayForEach(it, tab) {
        const int th = atoi(it->string);
        if (th <= 0 || th >= DR_CROSSOVER_MAX_THREADS || !cJSON_IsNumber(it) || it->valuedouble < 0) {
            snprintf(err, errlen, "%s: bad entry '%s'", path, it->string);
            cJSON_Delete(root);
            return -1;
        }
        x.chunked_from_T[th] = (int)it->valuedouble;
        measured[th] = 1;
    }
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(root, "measured");
    snprintf(x.source, sizeof x.source, "%s (%s)", path, cJSON_IsString(src) ? src->valuestring : "?");
    cJSON_Delete(root);
    /* a thread count not measured takes the nearest smaller measured one */
    for (int t = 2; t < DR_CROSSOVER_MAX_THREADS; t++)
        if (!measured[t] && measured[t - 1]) {
            x.chunked_from_T[t] = x.chunked_from_T[t - 1];
            measured[t] = 1;
        }
    deltarule_auto_configure(&x);
    return 0;
}

int dr_crossover_write(const char *path, const int *threads, const int *from, int n, const char *what,
                       char *err, size_t errlen)
{
    cJSON *root = cJSON_CreateObject(), *tab = cJSON_AddObjectToObject(root, "chunked_from_T");
    for (int i = 0; i < n; i++) {
        char k[16];
        snprintf(k, sizeof k, "%d", threads[i]);
        cJSON_AddNumberToObject(tab, k, from[i]);
    }
    cJSON_AddStringToObject(root, "measured", what);
    cJSON_AddStringToObject(root, "meaning", "per thread count: the T from which chunked beats recurrent; 0 = never");
    const int rc = q35_json_write_atomic(root, path, err, errlen);
    cJSON_Delete(root);
    return rc;
}
