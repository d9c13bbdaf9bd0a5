#include "common/clock.h"
#include "common/atomic_file.h"
#include "kernels/cpu_features.h"
#include "bench/bench.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void read_line_of(const char *cmd, char *buf, size_t n)
{
    FILE *p = popen(cmd, "r");
    buf[0] = 0;
    if (p) {
        if (fgets(buf, (int)n, p)) buf[strcspn(buf, "\n")] = 0;
        pclose(p);
    }
    if (!buf[0]) snprintf(buf, n, "unknown");
}

static void cpu_model(char *buf, size_t n)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    snprintf(buf, n, "unknown");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            if (c) { snprintf(buf, n, "%s", c + 2); buf[strcspn(buf, "\n")] = 0; }
            break;
        }
    if (f) fclose(f);
}

/* Results go to a file only when one is named; they are appended to a
 * temporary copy that replaces the file when the bench completes. */
static int open_append(q35_atomic_file *a, const char *path, int *is_new)
{
    if (!path) return 0;
    struct stat st;
    *is_new = stat(path, &st) != 0 || st.st_size == 0;
    char err[512];
    if (q35_atomic_open(a, path, 1, err, sizeof err)) {
        fprintf(stderr, "q35lab: %s\n", err);
        return -1;
    }
    return 0;
}

int bench_report_open(bench_report *r, const char *family, const char *json, const char *csv, const char *machine)
{
    memset(r, 0, sizeof *r);
    r->family = family;
    int json_new = 0, csv_new = 0;
    if (open_append(&r->json_file, json, &json_new) || open_append(&r->csv_file, csv, &csv_new)) {
        bench_report_close(r, 0);
        return -1;
    }
    r->json = r->json_file.f;
    r->csv = r->csv_file.f;
    read_line_of("git rev-parse --short HEAD 2>/dev/null", r->commit, sizeof r->commit);
    time_t now = time(NULL);
    strftime(r->date, sizeof r->date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    cpu_model(r->cpu, sizeof r->cpu);
    /* The chunked delta rule's GEMMs (and anything else on cblas) run the
     * kernel OpenBLAS picked for this CPU: say which, once per bench, on
     * stdout and in every record (OPENBLAS_CORETYPE overrides its pick). */
    const char *ct = getenv("OPENBLAS_CORETYPE");
    const char *core = openblas_get_corename(), *conf = openblas_get_config();
    snprintf(r->blas_core, sizeof r->blas_core, "%s", core ? core : "unknown");
    snprintf(r->blas_config, sizeof r->blas_config, "%s", conf ? conf : "unknown");
    for (char *c = r->blas_config; *c; c++) /* kept JSON- and CSV-safe */
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 32) *c = ' ';
    printf("openblas: core %s (%s), OPENBLAS_CORETYPE%s%s\n", r->blas_core, r->blas_config, ct ? "=" : " unset",
           ct ? ct : "");
    snprintf(r->meta, sizeof r->meta,
             "{\"date\":\"%s\",\"commit\":\"%s\",\"cpu\":\"%s\",\"cores\":%ld,\"isa\":\"%s\","
             "\"openblas_core\":\"%s\",\"openblas_config\":\"%s\",\"openblas_coretype\":\"%s\","
             "\"machine_json\":\"%s\",\"papi\":\"%s\"}",
             r->date, r->commit, r->cpu, sysconf(_SC_NPROCESSORS_ONLN), cpu_isa_name(cpu_isa()), r->blas_core,
             r->blas_config, ct ? ct : "", machine ? machine : "", q35_papi_summary());
    if (r->csv && csv_new)
        fprintf(r->csv, "date,commit,cpu,family,impl,B,T,threads,median_s,min_s,max_s,ci95_lo_s,ci95_hi_s,"
                        "tokens_per_s,gflops,gbs,arith_intensity,pct_fma_peak,pct_bw,ratio_to_fastest,"
                        "other_load,busy,peak_gflops,bw_gbs,variant,note\n");
    (void)json_new;
    return 0;
}

void bench_row_begin(bench_report *r, int B, int T, int threads)
{
    r->B = B; r->T = T; r->threads = threads; r->n = 0;
    r->variant[0] = 0;
}

void bench_result_add(bench_report *r, const bench_result *res, const q35_counters *ctr, int reps)
{
    if (r->n == BENCH_MAX_IMPLS) return;
    bench_result *d = &r->res[r->n++];
    *d = *res;
    d->n_counters = 0;
    for (int i = 0; ctr && i < q35_counters_n(ctr) && i < BENCH_MAX_COUNTERS; i++) {
        snprintf(d->counter_name[i], sizeof d->counter_name[i], "%s", q35_counters_event_name(ctr, i));
        d->counter_avail[i] = q35_counters_available(ctr, i);
        d->counter_per_run[i] = d->counter_avail[i] ? (double)q35_counters_value(ctr, i) / reps : 0.0;
        d->n_counters++;
    }
}

static int busy(const bench_result *x) { return x->other_load > 0.10; }

void bench_row_end(bench_report *r)
{
    if (!r->n) return;
    if (isatty(2)) fprintf(stderr, "\r%78s\r", "");
    double best = 1e300;
    for (int i = 0; i < r->n; i++)
        if (r->res[i].stats.median < best) best = r->res[i].stats.median;
    printf("\nB=%d T=%d threads=%d%s%s\n", r->B, r->T, r->threads, r->variant[0] ? " " : "", r->variant);
    printf("  %-16s %11s %23s %11s %8s %7s %6s %6s %6s %6s\n", "implementation", "median", "[min, max]",
           "tokens/s", "GFLOP/s", "GB/s", "AI", "%peak", "%bw", "x best");
    for (int i = 0; i < r->n; i++) {
        const bench_result *x = &r->res[i];
        const double t = x->stats.median, gf = x->flops / t * 1e-9, gb = x->bytes / t * 1e-9;
        /* phases of one run (prefill, decode) are not rivals: no ratio between them */
        const double ratio = r->phases ? NAN : t / best;
        char ratio_s[16] = "     -", ratio_j[24] = "null";
        if (!r->phases) {
            snprintf(ratio_s, sizeof ratio_s, "%6.2f", ratio);
            snprintf(ratio_j, sizeof ratio_j, "%.6g", ratio);
        }
        char peak[16] = "  n/a", bw[16] = "  n/a";
        if (x->peak_gflops > 0) snprintf(peak, sizeof peak, "%5.1f", 100.0 * gf / x->peak_gflops);
        if (x->bw_gbs > 0) snprintf(bw, sizeof bw, "%5.1f", 100.0 * gb / x->bw_gbs);
        printf("  %-16s %9.1f us [%9.1f, %9.1f] %11.0f %8.1f %7.1f %6.1f %6s %6s %6s%s\n", x->impl, t * 1e6,
               x->stats.min * 1e6, x->stats.max * 1e6, x->tokens / t, gf, gb, x->flops / x->bytes, peak, bw,
               ratio_s, busy(x) ? "  BUSY" : "");
        if (x->note[0]) printf("      %s\n", x->note);
        int shown = 0; /* available counters on one line, per run; n/a ones were reported once at start */
        for (int k = 0; k < x->n_counters; k++) {
            if (!x->counter_avail[k]) continue;
            const char *nm = x->counter_name[k];
            if (!strncmp(nm, "sde:::q35lab::", 14)) nm += 14;
            printf("%s %s=%.4g", shown++ ? "" : "      per run:", nm, x->counter_per_run[k]);
        }
        if (shown) printf("\n");
        if (r->csv)
            fprintf(r->csv, "%s,%s,\"%s\",%s,%s,%d,%d,%d,%.9g,%.9g,%.9g,%.9g,%.9g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.4f,%d,%.6g,%.6g,%s,\"%s\"\n",
                r->date, r->commit, r->cpu, r->family, x->impl, r->B, r->T, r->threads, t, x->stats.min,
                x->stats.max, x->stats.ci95_lo, x->stats.ci95_hi, x->tokens / t, gf, gb, x->flops / x->bytes,
                x->peak_gflops > 0 ? 100.0 * gf / x->peak_gflops : NAN, x->bw_gbs > 0 ? 100.0 * gb / x->bw_gbs : NAN,
                ratio, x->other_load, busy(x), x->peak_gflops, x->bw_gbs, r->variant, x->note);
        if (!r->json) continue;
        fprintf(r->json, "{\"meta\":%s,\"family\":\"%s\",\"impl\":\"%s\",\"B\":%d,\"T\":%d,\"threads\":%d,"
                         "\"median_s\":%.9g,\"min_s\":%.9g,\"max_s\":%.9g,\"ci95_s\":[%.9g,%.9g],\"reps\":%d,"
                         "\"flops\":%.6g,\"bytes\":%.6g,\"tokens_per_s\":%.6g,\"gflops\":%.6g,\"gbs\":%.6g,"
                         "\"peak_gflops\":%.6g,\"bw_gbs\":%.6g,\"ratio_to_fastest\":%s,\"other_load\":%.4f,"
                         "\"busy\":%s,\"variant\":\"%s\",\"note\":\"%s\",\"counters\":{",
                r->meta, r->family, x->impl, r->B, r->T, r->threads, t, x->stats.min, x->stats.max,
                x->stats.ci95_lo, x->stats.ci95_hi, x->stats.n, x->flops, x->bytes, x->tokens / t, gf, gb,
                x->peak_gflops, x->bw_gbs, ratio_j, x->other_load, busy(x) ? "true" : "false", r->variant, x->note);
        for (int k = 0; k < x->n_counters; k++) {
            if (x->counter_avail[k]) fprintf(r->json, "%s\"%s\":%.6g", k ? "," : "", x->counter_name[k], x->counter_per_run[k]);
            else fprintf(r->json, "%s\"%s\":null", k ? "," : "", x->counter_name[k]);
        }
        fprintf(r->json, "}}\n");
    }
    fflush(stdout);
}

int bench_report_close(bench_report *r, int keep)
{
    char err[512];
    int rc = 0;
    q35_atomic_file *files[2] = {&r->json_file, &r->csv_file};
    for (int i = 0; i < 2; i++) {
        if (!files[i]->f) continue;
        if (!keep) q35_atomic_abort(files[i]);
        else if (q35_atomic_commit(files[i], err, sizeof err)) {
            fprintf(stderr, "q35lab: %s\n", err);
            rc = -1;
        }
    }
    r->json = r->csv = NULL;
    return rc;
}

void bench_progress(const char *family, const char *impl, int B, int T, int threads)
{
    if (isatty(2)) fprintf(stderr, "\r[bench %s] %-16s B=%d T=%d threads=%d ...", family, impl, B, T, threads);
}

int bench_impl_selected(const char *list, const char *name)
{
    if (!strcmp(list, "all")) return strcmp(name, "ref") != 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        if (!strcmp(tok, name)) return 1;
    return 0;
}

int bench_setup(const char *machine, const char *counters, q35_machine_limits *lim, int *have_limits,
                q35_counters **ctr)
{
    char err[512] = "";
    *have_limits = q35_limits_load(machine, lim, err, sizeof err) == 0;
    if (!*have_limits)
        fprintf(stderr, "bench: no machine limits (%s); run `build/q35lab calibrate` for %% of peak\n", err);
    else
        q35_limits_note_other_host(lim, machine, stdout);
    *ctr = NULL;
    if (strcmp(counters, "none")) {
        if (!(*ctr = q35_counters_open(counters, err, sizeof err))) {
            fprintf(stderr, "q35lab: --counters: %s\n", err);
            return 2;
        }
        q35_counters_report_unavailable(*ctr, stderr);
    }
    return 0;
}

int bench_check_impl_list(const char *family, const char *list, int (*named)(const char *))
{
    if (!strcmp(list, "all")) return 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        if (!named(tok)) {
            fprintf(stderr, "q35lab: no %s implementation '%s' (see `q35lab list`)\n", family, tok);
            return -1;
        }
    return 0;
}

int bench_time_calls(int (*call)(void *ctx, char *err, size_t errlen), void *ctx, int reps, int threads,
                     q35_counters *ctr, double *times, char *err, size_t errlen)
{
    const double warm_until = q35_now() + WARMUP_SECONDS;
    for (int r = -1; r < reps; r++) { /* r = -1: the warm-up, repeated until WARMUP_SECONDS */
        if (r >= 0 && ctr) q35_counters_start(ctr);
        q35_wake_team(threads);
        const double t0 = q35_now();
        const int rc = call(ctx, err, errlen);
        const double t1 = q35_now();
        if (r >= 0 && ctr) q35_counters_stop(ctr);
        if (rc) return -1;
        if (r >= 0) times[r] = t1 - t0;
        else if (t1 < warm_until) r--;
    }
    return 0;
}

int bench_open(bench_report *r, const char *family, const char *json, const char *csv, const char *machine,
               const char *counters, q35_machine_limits *lim, int *have_limits, q35_counters **ctr)
{
    if (bench_setup(machine, counters, lim, have_limits, ctr)) return 2;
    if (bench_report_open(r, family, json, csv, machine)) {
        q35_counters_close(*ctr);
        *ctr = NULL;
        return 2;
    }
    return 0;
}

void bench_fill_uniform(float *a, size_t n, uint64_t *s)
{
    for (size_t i = 0; i < n; i++) { /* xorshift64 */
        *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
        a[i] = (float)((*s >> 40) * (1.0 / (1ull << 23)) - 1.0);
    }
}
