/* Hardware and software counters around a timed region: PAPI event sets (one per PAPI
 * component, since an event set may hold events of one component only) plus the q35lab
 * software-defined events registered through libsde.  See counters.h and docs/counters.md. */
#include "harness/counters.h"

#include "common/sde_counters.h"

#include <papi.h>
#include <sde_lib.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* PAPI library state (initialized once per process)                                          */
/* ------------------------------------------------------------------------------------------ */

#define REASON_LEN 160

static pthread_once_t papi_once = PTHREAD_ONCE_INIT;
static int papi_ok;                       /* PAPI_library_init succeeded */
static int papi_mpx_ok;                   /* PAPI_multiplex_init succeeded */
static int papi_perf_cidx = -1;           /* index of the perf_event component */
static char papi_fail_reason[REASON_LEN]; /* why PAPI is unusable */

static const char *perr(int rc)
{
    const char *s = PAPI_strerror(rc);
    return s && *s ? s : "unknown PAPI error";
}

static unsigned long q35_thread_id(void) { return (unsigned long)pthread_self(); }

static void papi_do_init(void)
{
    q35_sde_register(); /* before PAPI's sde component looks for registered libraries */
    int rc = PAPI_library_init(PAPI_VER_CURRENT);
    if (rc != PAPI_VER_CURRENT) {
        if (rc > 0)
            snprintf(papi_fail_reason, sizeof papi_fail_reason,
                     "PAPI_library_init: library version %d.%d differs from papi.h %d.%d",
                     PAPI_VERSION_MAJOR(rc), PAPI_VERSION_MINOR(rc),
                     PAPI_VERSION_MAJOR(PAPI_VER_CURRENT), PAPI_VERSION_MINOR(PAPI_VER_CURRENT));
        else
            snprintf(papi_fail_reason, sizeof papi_fail_reason, "PAPI_library_init: %s", perr(rc));
        return;
    }
    papi_ok = 1;
    (void)PAPI_thread_init(q35_thread_id); /* event sets are per thread */
    papi_mpx_ok = PAPI_multiplex_init() == PAPI_OK;
    papi_perf_cidx = PAPI_get_component_index("perf_event");
}

/* Initializes PAPI once and registers the calling thread with it: PAPI 7.0 crashes in
 * PAPI_event_name_to_code for native and SDE names on a thread it has not seen yet. */
static int papi_init(void)
{
    pthread_once(&papi_once, papi_do_init);
    if (papi_ok)
        (void)PAPI_register_thread();
    return papi_ok;
}

/* ------------------------------------------------------------------------------------------ */
/* Event sets                                                                                 */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    char *name;
    int code;
    int resolved; /* code is valid */
    int avail;
    int same_as; /* index of an earlier event with the same PAPI code, or -1 */
    int set;     /* index into sets, or -1 */
    int pos;     /* position in the set's value array, or -1 */
    long long total;
    char reason[REASON_LEN];
} q35_event;

typedef struct {
    int es;
    int cidx;
    int n;       /* events added */
    int mpx;     /* multiplexed */
    int running; /* started in the current region */
    int broken;  /* PAPI refused start/stop: its events are n/a */
    long long *vals;
} q35_set;

struct q35_counters {
    int n, cap;
    q35_event *ev;
    int nsets;
    q35_set *sets;
    int running;
    int force_mpx;
    char mpx_reason[REASON_LEN]; /* why multiplexing could not be enabled, "" if it could */
};

static void set_reason(q35_event *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->reason, sizeof e->reason, fmt, ap);
    va_end(ap);
    e->avail = 0;
}

static const char *const group_default[] = {"PAPI_TOT_CYC", "PAPI_TOT_INS", "PAPI_L1_DCM",
                                            "PAPI_L2_DCM", "@sde", NULL};
static const char *const group_cache[] = {"PAPI_L1_DCM",
                                          "PAPI_L2_DCM",
                                          "PAPI_L3_TCM",
                                          Q35_SDE_PREFIX "STATE_BYTES_READ",
                                          Q35_SDE_PREFIX "STATE_BYTES_WRITTEN",
                                          Q35_SDE_PREFIX "WEIGHT_BYTES_READ",
                                          NULL};
static const char *const group_flops[] = {"PAPI_FP_OPS", "PAPI_SP_OPS", "PAPI_VEC_SP",
                                          Q35_SDE_PREFIX "FLOPS", NULL};

static int push_name(q35_counters *c, const char *name, size_t len)
{
    for (int i = 0; i < c->n; i++)
        if (strlen(c->ev[i].name) == len && memcmp(c->ev[i].name, name, len) == 0)
            return 0; /* named twice: keep once */
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 16;
        q35_event *ev = realloc(c->ev, (size_t)cap * sizeof *ev);
        if (!ev)
            return -1;
        c->ev = ev;
        c->cap = cap;
    }
    char *s = malloc(len + 1);
    if (!s)
        return -1;
    memcpy(s, name, len);
    s[len] = 0;
    q35_event *e = &c->ev[c->n++];
    memset(e, 0, sizeof *e);
    e->name = s;
    e->same_as = e->set = e->pos = -1;
    return 0;
}

static int push_group(q35_counters *c, const char *const *g)
{
    for (; *g; g++) {
        if (strcmp(*g, "@sde") == 0) {
            for (int i = 0; i < Q35_SDE_COUNT; i++) {
                char ev[64];
                snprintf(ev, sizeof ev, Q35_SDE_PREFIX "%s", q35_sde_name((q35_sde_id)i));
                if (push_name(c, ev, strlen(ev)))
                    return -1;
            }
        } else if (push_name(c, *g, strlen(*g))) {
            return -1;
        }
    }
    return 0;
}

static int tok_is(const char *t, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(t, word, len) == 0;
}

/* Fills c->ev from spec.  Returns 0, 1 on a syntax error (err set), -1 out of memory. */
static int parse_spec(q35_counters *c, const char *spec, char *err, size_t errlen)
{
    const char *p = spec;
    int item = 0;
    while (*p == ' ' || *p == '\t')
        p++;
    if (!*p) {
        if (err && errlen)
            snprintf(err, errlen, "empty counter spec (use \"none\" for no counters)");
        return 1;
    }
    p = spec;
    for (;;) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        item++;
        size_t len = (size_t)(b - a);
        if (len == 0) {
            if (err && errlen)
                snprintf(err, errlen, "empty event name (item %d) in counter spec \"%s\"", item,
                         spec);
            return 1;
        }
        int rc = 0;
        if (tok_is(a, len, "none"))
            ;
        else if (tok_is(a, len, "multiplex"))
            c->force_mpx = 1;
        else if (tok_is(a, len, "default"))
            rc = push_group(c, group_default);
        else if (tok_is(a, len, "cache"))
            rc = push_group(c, group_cache);
        else if (tok_is(a, len, "flops"))
            rc = push_group(c, group_flops);
        else if (tok_is(a, len, "sde")) {
            static const char *const g[] = {"@sde", NULL};
            rc = push_group(c, g);
        } else
            rc = push_name(c, a, len);
        if (rc)
            return -1;
        if (!*end)
            return 0;
        p = end + 1;
    }
}

static int component_kernel_mpx(int cidx)
{
    const PAPI_component_info_t *ci = PAPI_get_component_info(cidx);
    return ci && ci->kernel_multiplex;
}

static int set_enable_mpx(q35_counters *c, q35_set *s)
{
    if (s->mpx)
        return PAPI_OK;
    int rc = papi_mpx_ok ? PAPI_set_multiplex(s->es) : PAPI_ECMP;
    if (rc == PAPI_OK)
        s->mpx = 1;
    else
        snprintf(c->mpx_reason, sizeof c->mpx_reason, "%s%s",
                 papi_mpx_ok ? "PAPI_set_multiplex: " : "PAPI_multiplex_init failed: ", perr(rc));
    return rc;
}

/* The event set for component cidx, created on first use; NULL with *rc on failure. */
static q35_set *set_for(q35_counters *c, int cidx, int *rc)
{
    for (int i = 0; i < c->nsets; i++)
        if (c->sets[i].cidx == cidx)
            return &c->sets[i];
    q35_set *sets = realloc(c->sets, (size_t)(c->nsets + 1) * sizeof *sets);
    if (!sets) {
        *rc = PAPI_ENOMEM;
        return NULL;
    }
    c->sets = sets;
    q35_set *s = &sets[c->nsets];
    memset(s, 0, sizeof *s);
    s->es = PAPI_NULL;
    s->cidx = cidx;
    if ((*rc = PAPI_create_eventset(&s->es)) != PAPI_OK)
        return NULL;
    if ((*rc = PAPI_assign_eventset_component(s->es, cidx)) != PAPI_OK) {
        PAPI_destroy_eventset(&s->es);
        return NULL;
    }
    c->nsets++;
    if (c->force_mpx && component_kernel_mpx(cidx))
        (void)set_enable_mpx(c, s);
    return s;
}

static void add_event(q35_counters *c, int i)
{
    q35_event *e = &c->ev[i];
    int code = 0, rc = PAPI_event_name_to_code(e->name, &code);
    if (rc != PAPI_OK) {
        set_reason(e, "%s", perr(rc));
        return;
    }
    e->code = code;
    e->resolved = 1;
    for (int j = 0; j < i; j++)
        if (c->ev[j].resolved && c->ev[j].same_as < 0 && c->ev[j].code == code) {
            e->same_as = j; /* an alias of an event already in the list */
            return;
        }
    int cidx = PAPI_get_event_component(code);
    if (cidx < 0) {
        set_reason(e, "%s", perr(cidx));
        return;
    }
    q35_set *s = set_for(c, cidx, &rc);
    if (!s) {
        set_reason(e, "PAPI_create_eventset: %s", perr(rc));
        return;
    }
    rc = PAPI_add_event(s->es, code);
    if ((rc == PAPI_ECNFLCT || rc == PAPI_EMULPASS) && !s->mpx && set_enable_mpx(c, s) == PAPI_OK)
        rc = PAPI_add_event(s->es, code);
    if (rc != PAPI_OK) {
        set_reason(e, "%s", perr(rc));
        return;
    }
    e->set = (int)(s - c->sets);
    e->avail = 1;
    s->n++;
}

/* Positions of the added events in each set's value array, as PAPI lists them. */
static int map_positions(q35_counters *c)
{
    for (int si = 0; si < c->nsets; si++) {
        q35_set *s = &c->sets[si];
        if (s->n == 0)
            continue;
        int num = s->n;
        int *codes = calloc((size_t)num, sizeof *codes);
        s->vals = calloc((size_t)num, sizeof *s->vals);
        if (!codes || !s->vals) {
            free(codes);
            return -1;
        }
        int rc = PAPI_list_events(s->es, codes, &num);
        for (int i = 0; i < c->n; i++) {
            q35_event *e = &c->ev[i];
            if (e->set != si)
                continue;
            for (int k = 0; rc == PAPI_OK && k < num && k < s->n; k++)
                if (codes[k] == e->code)
                    e->pos = k;
            if (e->pos < 0)
                set_reason(e, "PAPI_list_events: %s", rc == PAPI_OK ? "event not in its set" : perr(rc));
        }
        free(codes);
    }
    return 0;
}

q35_counters *q35_counters_open(const char *spec, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = 0;
    if (!spec) {
        if (err && errlen)
            snprintf(err, errlen, "no counter spec");
        return NULL;
    }
    q35_counters *c = calloc(1, sizeof *c);
    if (!c)
        goto oom;
    int rc = parse_spec(c, spec, err, errlen);
    if (rc) {
        q35_counters_close(c);
        if (rc < 0)
            goto oom;
        return NULL;
    }
    if (!papi_init()) {
        for (int i = 0; i < c->n; i++)
            set_reason(&c->ev[i], "%s", papi_fail_reason);
        return c;
    }
    for (int i = 0; i < c->n; i++)
        add_event(c, i);
    if (map_positions(c)) {
        q35_counters_close(c);
        goto oom;
    }
    return c;
oom:
    if (err && errlen)
        snprintf(err, errlen, "out of memory");
    return NULL;
}

/* PAPI refused to start or stop set si: its events become n/a. */
static void set_fail(q35_counters *c, int si, const char *what, int rc)
{
    q35_set *s = &c->sets[si];
    s->broken = 1;
    s->running = 0;
    for (int i = 0; i < c->n; i++)
        if (c->ev[i].set == si && c->ev[i].avail)
            set_reason(&c->ev[i], "%s: %s", what, perr(rc));
}

/* Software components (sde, ...) start first and stop last, so that the hardware counters
 * bracket the region as tightly as possible. */
static int set_order(const q35_counters *c, int k, int hw_last)
{
    /* k-th set in start order (hw_last) or stop order (!hw_last) */
    int idx = -1, seen = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int si = 0; si < c->nsets; si++) {
            int hw = c->sets[si].cidx == papi_perf_cidx;
            if (hw != (hw_last ? pass : !pass))
                continue;
            if (seen++ == k)
                idx = si;
        }
    return idx;
}

int q35_counters_start(q35_counters *c)
{
    if (!c || c->running)
        return -1;
    for (int k = 0; k < c->nsets; k++) {
        int si = set_order(c, k, 1);
        q35_set *s = &c->sets[si];
        if (s->n == 0 || s->broken)
            continue;
        int rc = PAPI_start(s->es);
        if (rc != PAPI_OK)
            set_fail(c, si, "PAPI_start", rc);
        else
            s->running = 1;
    }
    c->running = 1;
    return 0;
}

int q35_counters_stop(q35_counters *c)
{
    if (!c || !c->running)
        return -1;
    for (int k = 0; k < c->nsets; k++) {
        int si = set_order(c, k, 0);
        q35_set *s = &c->sets[si];
        if (!s->running)
            continue;
        int rc = PAPI_stop(s->es, s->vals);
        s->running = 0;
        if (rc != PAPI_OK) {
            set_fail(c, si, "PAPI_stop", rc);
            continue;
        }
        for (int i = 0; i < c->n; i++)
            if (c->ev[i].set == si && c->ev[i].avail && c->ev[i].pos >= 0)
                c->ev[i].total += s->vals[c->ev[i].pos];
    }
    c->running = 0;
    return 0;
}

void q35_counters_reset(q35_counters *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n; i++)
        c->ev[i].total = 0;
    for (int si = 0; si < c->nsets; si++)
        if (c->sets[si].running)
            (void)PAPI_reset(c->sets[si].es);
}

int q35_counters_n(const q35_counters *c) { return c ? c->n : 0; }

static const q35_event *ev_at(const q35_counters *c, int i)
{
    if (!c || i < 0 || i >= c->n)
        return NULL;
    return &c->ev[i];
}

/* The event that carries the value (itself, or the earlier event it is an alias of). */
static const q35_event *ev_src(const q35_counters *c, int i)
{
    const q35_event *e = ev_at(c, i);
    return e && e->same_as >= 0 ? &c->ev[e->same_as] : e;
}

const char *q35_counters_event_name(const q35_counters *c, int i)
{
    const q35_event *e = ev_at(c, i);
    return e ? e->name : NULL;
}

int q35_counters_available(const q35_counters *c, int i)
{
    const q35_event *e = ev_src(c, i);
    return e ? e->avail : 0;
}

const char *q35_counters_unavailable_reason(const q35_counters *c, int i)
{
    const q35_event *e = ev_src(c, i);
    if (!e)
        return "no such event index";
    return e->avail ? "" : e->reason;
}

long long q35_counters_value(const q35_counters *c, int i)
{
    const q35_event *e = ev_src(c, i);
    return e && e->avail ? e->total : 0;
}

int q35_counters_find(const q35_counters *c, const char *name)
{
    for (int i = 0; c && name && i < c->n; i++)
        if (strcmp(c->ev[i].name, name) == 0)
            return i;
    return -1;
}

int q35_counters_multiplexed(const q35_counters *c)
{
    for (int si = 0; c && si < c->nsets; si++)
        if (c->sets[si].mpx && c->sets[si].n > 0)
            return 1;
    return 0;
}

/* Names already reported, by 64-bit FNV-1a hash (a table; full means "report again"). */
static pthread_mutex_t reported_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t reported[256];
static int nreported;

static int first_report(const char *name)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    int first = 1;
    pthread_mutex_lock(&reported_mu);
    for (int i = 0; i < nreported; i++)
        if (reported[i] == h)
            first = 0;
    if (first && nreported < (int)(sizeof reported / sizeof reported[0]))
        reported[nreported++] = h;
    pthread_mutex_unlock(&reported_mu);
    return first;
}

const char *q35_counters_multiplex_error(const q35_counters *c)
{
    return c ? c->mpx_reason : "";
}

void q35_counters_report_unavailable(const q35_counters *c, FILE *f)
{
    if (!c || !f)
        return;
    if (c->mpx_reason[0] && first_report("(multiplexing)"))
        fprintf(f, "counters: multiplexing n/a (%s; see docs/counters.md)\n", c->mpx_reason);
    for (int i = 0; i < c->n; i++)
        if (!q35_counters_available(c, i) && first_report(c->ev[i].name))
            fprintf(f, "counters: %s n/a (%s; see docs/counters.md)\n", c->ev[i].name,
                    q35_counters_unavailable_reason(c, i));
}

void q35_counters_close(q35_counters *c)
{
    if (!c)
        return;
    if (c->running)
        (void)q35_counters_stop(c);
    for (int si = 0; si < c->nsets; si++) {
        (void)PAPI_cleanup_eventset(c->sets[si].es);
        (void)PAPI_destroy_eventset(&c->sets[si].es);
        free(c->sets[si].vals);
    }
    for (int i = 0; i < c->n; i++)
        free(c->ev[i].name);
    free(c->sets);
    free(c->ev);
    free(c);
}

/* ------------------------------------------------------------------------------------------ */
/* PAPI's view of the machine                                                                 */
/* ------------------------------------------------------------------------------------------ */

int q35_papi_hw_counters(void)
{
    if (!papi_init() || papi_perf_cidx < 0)
        return 0;
    const PAPI_component_info_t *ci = PAPI_get_component_info(papi_perf_cidx);
    if (!ci || ci->disabled)
        return 0;
    int n = PAPI_num_cmp_hwctrs(papi_perf_cidx);
    return n > 0 ? n : 0;
}

int q35_papi_virtualized(void)
{
    if (!papi_init())
        return -1;
    const PAPI_hw_info_t *hw = PAPI_get_hardware_info();
    return hw ? (hw->virtualized ? 1 : 0) : -1;
}

static pthread_once_t summary_once = PTHREAD_ONCE_INIT;
static char summary[640];

static void summary_build(void)
{
    if (!papi_init()) {
        snprintf(summary, sizeof summary, "PAPI unusable (%s)", papi_fail_reason);
        return;
    }
    size_t len = 0;
#define APPEND(...)                                                                            \
    do {                                                                                       \
        if (len < sizeof summary)                                                              \
            len += (size_t)snprintf(summary + len, sizeof summary - len, __VA_ARGS__);         \
    } while (0)
    int v = PAPI_get_opt(PAPI_LIB_VERSION, NULL);
    APPEND("PAPI %d.%d.%d.%d", PAPI_VERSION_MAJOR(v), PAPI_VERSION_MINOR(v),
           PAPI_VERSION_REVISION(v), PAPI_VERSION_INCREMENT(v));
    const PAPI_hw_info_t *hw = PAPI_get_hardware_info();
    if (hw) {
        APPEND("; %s", hw->model_string);
        if (hw->virtualized)
            APPEND("; VM (%s)", hw->virtual_vendor_string[0] ? hw->virtual_vendor_string : "unknown");
        else
            APPEND("; bare metal");
    }
    const PAPI_component_info_t *ci =
        papi_perf_cidx >= 0 ? PAPI_get_component_info(papi_perf_cidx) : NULL;
    if (!ci)
        APPEND("; perf_event: absent");
    else if (ci->disabled)
        APPEND("; perf_event: disabled (%s)", ci->disabled_reason);
    else
        APPEND("; perf_event: %d counters reported", q35_papi_hw_counters());
    q35_counters *probe = q35_counters_open("PAPI_TOT_CYC," Q35_SDE_PREFIX "FLOPS", NULL, 0);
    if (probe) {
        if (q35_counters_available(probe, 0))
            APPEND(", PAPI_TOT_CYC countable");
        else
            APPEND(", PAPI_TOT_CYC n/a (%s)", q35_counters_unavailable_reason(probe, 0));
        if (q35_counters_available(probe, 1))
            APPEND("; sde:::%s readable", Q35_SDE_LIB);
        else
            APPEND("; sde:::%s n/a (%s)", Q35_SDE_LIB, q35_counters_unavailable_reason(probe, 1));
        q35_counters_close(probe);
    }
#undef APPEND
}

const char *q35_papi_summary(void)
{
    pthread_once(&summary_once, summary_build);
    return summary;
}
