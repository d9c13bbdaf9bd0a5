/* auto's crossover on disk (deltarule_crossover.h). */
#include "harness/deltarule_crossover.h"

#include "common/errmsg.h"
#include "common/json_file.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MEANING "per head shape and thread count: the T from which chunked beats recurrent; 0 = never"
#define GRAD_MEANING "grad_points: the same for the backward (deltarule_grad.h), chunked against recurrent backward"

int dr_crossover_from_medians(const int *Ts, const double *rec, const double *chk, int n)
{
    int from = 0;
    for (int i = n - 1; i >= 0; i--) {
        if (!(chk[i] > 0 && rec[i] > 0 && chk[i] < rec[i])) break;
        from = Ts[i];
    }
    return from;
}

/* An integer member in [lo, hi], or -1 with a message. */
static int int_member(const cJSON *o, const char *key, int lo, int hi, int *out, const char *path, int i, char *err,
                      size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    /* range first: converting a double outside int's range is undefined */
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi) ||
        v->valuedouble != floor(v->valuedouble)) {
        q35_errmsg(err, errlen, "%s: points[%d].%s must be an integer in [%d, %d]", path, i, key, lo, hi);
        return -1;
    }
    *out = (int)v->valuedouble;
    return 0;
}

/* Parsed points, and the "measured" string of each (owned by root). */
static int parse(const char *path, const char *key, cJSON **root_out, deltarule_crossover *x, const char **measured,
                 char *err, size_t errlen)
{
    memset(x, 0, sizeof *x);
    cJSON *root = q35_json_read_file(path, 1 << 20, err, errlen);
    if (!root) return -1;
    const cJSON *pts = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!pts && strcmp(key, DR_CROSSOVER_KEY_FWD)) { /* a file from before the backward's key: no points */
        *root_out = root;
        return 0;
    }
    if (!cJSON_IsArray(pts) && strcmp(key, DR_CROSSOVER_KEY_FWD)) {
        q35_errmsg(err, errlen, "%s: '%s' is not an array", path, key);
        cJSON_Delete(root);
        return -1;
    }
    if (!cJSON_IsArray(pts)) {
        q35_errmsg(err, errlen, "%s: no array 'points' (a crossover file from before per-shape points: "
                   "re-measure with `q35lab bench deltarule --crossover %s`)", path, path);
        cJSON_Delete(root);
        return -1;
    }
    const cJSON *p;
    cJSON_ArrayForEach(p, pts) {
        if (x->n == DR_CROSSOVER_MAX_POINTS) {
            q35_errmsg(err, errlen, "%s: more than %d %s", path, DR_CROSSOVER_MAX_POINTS, key);
            cJSON_Delete(root);
            return -1;
        }
        deltarule_crossover_point *c = &x->pt[x->n];
        if (!cJSON_IsObject(p) || int_member(p, "Hk", 1, 65536, &c->Hk, path, x->n, err, errlen) ||
            int_member(p, "Hv", 1, 65536, &c->Hv, path, x->n, err, errlen) ||
            int_member(p, "Dk", 1, 65536, &c->Dk, path, x->n, err, errlen) ||
            int_member(p, "Dv", 1, 65536, &c->Dv, path, x->n, err, errlen) ||
            int_member(p, "threads", 1, 4096, &c->threads, path, x->n, err, errlen) ||
            int_member(p, "chunked_from_T", 0, 1 << 30, &c->chunked_from_T, path, x->n, err, errlen)) {
            if (!cJSON_IsObject(p)) q35_errmsg(err, errlen, "%s: points[%d] is not an object", path, x->n);
            cJSON_Delete(root);
            memset(x, 0, sizeof *x);
            return -1;
        }
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(p, "measured");
        if (measured) measured[x->n] = cJSON_IsString(m) ? m->valuestring : "";
        x->n++;
    }
    *root_out = root;
    return 0;
}

int dr_crossover_load(const char *path, deltarule_crossover *x, char *err, size_t errlen)
{
    return dr_crossover_load_key(path, DR_CROSSOVER_KEY_FWD, x, err, errlen);
}

int dr_crossover_load_key(const char *path, const char *key, deltarule_crossover *x, char *err, size_t errlen)
{
    cJSON *root;
    if (parse(path, key, &root, x, NULL, err, errlen)) return -1;
    cJSON_Delete(root);
    snprintf(x->source, sizeof x->source, "%s", path);
    return 0;
}

static const deltarule_crossover *load_default(const char *key, deltarule_crossover *x)
{
    memset(x, 0, sizeof *x);
    if (access(DR_CROSSOVER_FILE, F_OK)) return NULL;
    char err[512];
    if (dr_crossover_load_key(DR_CROSSOVER_FILE, key, x, err, sizeof err)) {
        fprintf(stderr, "q35lab: ignoring %s (auto keeps its built-in default)\n", err);
        return NULL;
    }
    return x->n || !strcmp(key, DR_CROSSOVER_KEY_FWD) ? x : NULL;
}

const deltarule_crossover *dr_crossover_load_default(deltarule_crossover *x)
{
    return load_default(DR_CROSSOVER_KEY_FWD, x);
}

const deltarule_crossover *dr_crossover_load_default_grad(deltarule_crossover *x)
{
    return load_default(DR_CROSSOVER_KEY_GRAD, x);
}

static cJSON *point_json(const deltarule_crossover_point *c, const char *measured)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "Hk", c->Hk);
    cJSON_AddNumberToObject(o, "Hv", c->Hv);
    cJSON_AddNumberToObject(o, "Dk", c->Dk);
    cJSON_AddNumberToObject(o, "Dv", c->Dv);
    cJSON_AddNumberToObject(o, "threads", c->threads);
    cJSON_AddNumberToObject(o, "chunked_from_T", c->chunked_from_T);
    cJSON_AddStringToObject(o, "measured", measured);
    return o;
}

static int same_key(const deltarule_crossover_point *a, const deltarule_crossover_point *b)
{
    return a->Hk == b->Hk && a->Hv == b->Hv && a->Dk == b->Dk && a->Dv == b->Dv && a->threads == b->threads;
}

int dr_crossover_merge_write(const char *path, const deltarule_crossover_point *pts, int n, const char *what,
                             char *err, size_t errlen)
{
    return dr_crossover_merge_write_key(path, DR_CROSSOVER_KEY_FWD, pts, n, what, err, errlen);
}

/* The file keeps what it holds under the other key (and any other member);
 * a new file gets an empty forward array, so forward readers accept it. */
int dr_crossover_merge_write_key(const char *path, const char *key, const deltarule_crossover_point *pts, int n,
                                 const char *what, char *err, size_t errlen)
{
    deltarule_crossover old = {0};
    const char *old_measured[DR_CROSSOVER_MAX_POINTS];
    cJSON *old_root = NULL;
    if (!access(path, F_OK) && parse(path, key, &old_root, &old, old_measured, err, errlen)) return -1;
    if (old_root && strcmp(key, DR_CROSSOVER_KEY_FWD)) { /* the forward's points must stay readable */
        deltarule_crossover fwd;
        cJSON *r2;
        if (parse(path, DR_CROSSOVER_KEY_FWD, &r2, &fwd, NULL, err, errlen)) {
            cJSON_Delete(old_root);
            return -1;
        }
        cJSON_Delete(r2);
    }
    cJSON *root = old_root ? cJSON_Duplicate(old_root, 1) : cJSON_CreateObject();
    cJSON_DeleteItemFromObjectCaseSensitive(root, key);
    cJSON_DeleteItemFromObjectCaseSensitive(root, "meaning");
    cJSON_DeleteItemFromObjectCaseSensitive(root, "grad_meaning");
    if (!cJSON_GetObjectItemCaseSensitive(root, DR_CROSSOVER_KEY_FWD) && strcmp(key, DR_CROSSOVER_KEY_FWD))
        cJSON_AddArrayToObject(root, DR_CROSSOVER_KEY_FWD);
    cJSON *arr = cJSON_AddArrayToObject(root, key);
    cJSON_AddStringToObject(root, "meaning", MEANING);
    if (cJSON_GetObjectItemCaseSensitive(root, DR_CROSSOVER_KEY_GRAD) || !strcmp(key, DR_CROSSOVER_KEY_GRAD))
        cJSON_AddStringToObject(root, "grad_meaning", GRAD_MEANING);
    int kept = 0;
    for (int i = 0; i < old.n; i++) {
        int replaced = 0;
        for (int j = 0; j < n; j++) replaced |= same_key(&old.pt[i], &pts[j]);
        if (!replaced) { cJSON_AddItemToArray(arr, point_json(&old.pt[i], old_measured[i])); kept++; }
    }
    if (kept + n > DR_CROSSOVER_MAX_POINTS) {
        q35_errmsg(err, errlen, "%s: would hold %d points, more than %d", path, kept + n, DR_CROSSOVER_MAX_POINTS);
        cJSON_Delete(root);
        cJSON_Delete(old_root);
        return -1;
    }
    for (int j = 0; j < n; j++) cJSON_AddItemToArray(arr, point_json(&pts[j], what));
    const int rc = q35_json_write_atomic(root, path, err, errlen);
    cJSON_Delete(root);
    cJSON_Delete(old_root);
    return rc;
}

void dr_crossover_describe(const deltarule_crossover *x, char *buf, size_t n)
{
    if (!x || !x->n) {
        snprintf(buf, n, "built-in default (recurrent at every T)");
        return;
    }
    size_t len = (size_t)snprintf(buf, n, "%s:", x->source);
    for (int i = 0; i < x->n && len < n; i++) {
        const deltarule_crossover_point *c = &x->pt[i];
        char from[32];
        if (c->chunked_from_T) snprintf(from, sizeof from, "chunked from T=%d", c->chunked_from_T);
        else snprintf(from, sizeof from, "recurrent always");
        len += (size_t)snprintf(buf + len, n - len, "%s Hk=%d Hv=%d Dk=%d Dv=%d, %d thread%s: %s", i ? ";" : "",
                                c->Hk, c->Hv, c->Dk, c->Dv, c->threads, c->threads > 1 ? "s" : "", from);
    }
    if (x->n && len < n) snprintf(buf + len, n - len, " (other shapes: recurrent at every T)");
}
