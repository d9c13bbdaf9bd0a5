/* test_calibrate.c - cmocka suite for harness/calibrate.{h,c}.
 *
 * The group setup runs the calibration once in the tiny configuration (threads {1}, 8 MiB
 * arrays, millisecond repetitions) and writes machine.json into a mkdtemp directory; the
 * tests parse it back with cJSON and check the schema (every key, its type, finite positive
 * measured figures, the AVX-512 entry n/a on a CPU without it), then q35_limits_load.
 * No test asserts a speed. */
#include "harness/calibrate.h"
#include "kernels/cpu_features.h"
#include "tests/support/tmpdir.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[64];
static char g_json[128];
static q35_calib_result *g_res;
static cJSON *g_root;

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf) buf[n] = 0;
    fclose(f);
    return buf;
}

static int write_text(const char *path, const char *txt)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(txt, f);
    return fclose(f);
}

static int group_setup(void **state)
{
    (void)state;
    strcpy(g_dir, "/tmp/calib_test_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_json, sizeof g_json, "%s/machine.json", g_dir);
    q35_calib_config cfg;
    q35_calib_config_tiny(&cfg);
    g_res = malloc(sizeof *g_res);
    char err[256];
    if (!g_res || q35_calibrate(&cfg, g_res, err, sizeof err)) {
        fprintf(stderr, "calibrate failed: %s\n", g_res ? err : "oom");
        return -1;
    }
    if (q35_calib_write_json(g_res, g_json, err, sizeof err)) {
        fprintf(stderr, "write failed: %s\n", err);
        return -1;
    }
    char *txt = slurp(g_json);
    g_root = txt ? cJSON_Parse(txt) : NULL;
    free(txt);
    return g_root ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    cJSON_Delete(g_root);
    free(g_res);
    return test_tmpdir_remove(g_dir);
}

static const cJSON *get(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) fprintf(stderr, "missing key '%s'\n", key);
    assert_non_null(v);
    return v;
}

static void check_string(const cJSON *o, const char *key)
{
    const cJSON *v = get(o, key);
    assert_true(cJSON_IsString(v));
    assert_true(v->valuestring[0] != 0);
}

static double check_number(const cJSON *o, const char *key)
{
    const cJSON *v = get(o, key);
    assert_true(cJSON_IsNumber(v));
    assert_true(isfinite(v->valuedouble));
    return v->valuedouble;
}

/* A measured figure: {n, median, min, max, mean, stddev, ci95_lo, ci95_hi}, finite, positive. */
static double check_stats(const cJSON *s, int reps)
{
    assert_true(cJSON_IsObject(s));
    assert_int_equal((int)check_number(s, "n"), reps);
    double med = check_number(s, "median"), lo = check_number(s, "min"), hi = check_number(s, "max");
    double mean = check_number(s, "mean"), sd = check_number(s, "stddev");
    double c0 = check_number(s, "ci95_lo"), c1 = check_number(s, "ci95_hi");
    assert_true(lo > 0 && med > 0 && mean > 0);
    assert_true(lo <= med && med <= hi);
    assert_true(lo <= mean && mean <= hi);
    assert_true(sd >= 0 && c0 <= mean && mean <= c1);
    return med;
}

/* {"1": stats} for the tiny run's thread list {1}. */
static double check_per_threads(const cJSON *o, int reps)
{
    assert_true(cJSON_IsObject(o));
    assert_int_equal(cJSON_GetArraySize(o), 1);
    return check_stats(get(o, "1"), reps);
}

static void test_metadata(void **state)
{
    (void)state;
    const cJSON *r = g_root;
    const cJSON *schema = get(r, "schema");
    assert_true(cJSON_IsString(schema));
    assert_string_equal(schema->valuestring, "q35lab-machine/1");
    check_string(r, "date");
    int y, mo, d, h, mi, s;
    char z = 0;
    assert_int_equal(sscanf(get(r, "date")->valuestring, "%4d-%2d-%2dT%2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &s, &z), 7);
    assert_int_equal(z, 'Z');
    check_string(r, "git_commit");
    const cJSON *dirty = get(r, "git_dirty");
    assert_true(cJSON_IsBool(dirty) || cJSON_IsNull(dirty));
    check_string(r, "hostname");
    check_string(r, "cpu_model");
    const cJSON *flags = get(r, "cpu_flags");
    assert_true(cJSON_IsObject(flags));
    for (int i = 0; i < Q35_NCPU_FLAGS; i++) assert_true(cJSON_IsBool(get(flags, q35_cpu_flag_names[i])));
    assert_int_equal(cJSON_IsTrue(get(flags, "avx512f")), !!__builtin_cpu_supports("avx512f"));
    assert_true(check_number(r, "cores") >= 1);
    check_string(r, "kernel");
    check_string(r, "compiler");
    assert_true(check_number(r, "omp_max_threads") >= 1);

    const cJSON *ob = get(r, "openblas");
    assert_true(cJSON_IsObject(ob));
    check_string(ob, "version");
    check_string(ob, "corename");
    check_string(ob, "config");
    check_number(ob, "parallel");
    const cJSON *ct = get(r, "openblas_coretype");
    const char *env = getenv("OPENBLAS_CORETYPE");
    if (env) assert_true(cJSON_IsString(ct) && !strcmp(ct->valuestring, env));
    else assert_true(cJSON_IsNull(ct));

    check_string(r, "thp_enabled");
    assert_true(cJSON_IsBool(get(r, "huge_pages_used")));
    double hf = check_number(r, "huge_page_fraction");
    assert_true(hf >= 0 && hf <= 1);

    const cJSON *papi = get(r, "papi");
    assert_true(cJSON_IsObject(papi));
    const cJSON *avail = get(papi, "available");
    assert_true(cJSON_IsBool(avail));
    if (cJSON_IsTrue(avail)) {
        assert_true(check_number(papi, "num_components") >= 1);
        assert_true(check_number(papi, "hw_counters") >= 0);
        check_string(papi, "component0");
        assert_true(cJSON_IsBool(get(papi, "cpu_pmu")));
        assert_true(cJSON_IsBool(get(papi, "hw_counters_usable")));
        if (cJSON_IsTrue(get(papi, "hw_counters_usable"))) assert_true(cJSON_IsTrue(get(papi, "cpu_pmu")));
    } else {
        check_string(papi, "error");
    }

    const cJSON *cfg = get(r, "config");
    assert_true(cJSON_IsArray(get(cfg, "threads")));
    assert_true(cJSON_IsTrue(get(cfg, "quick")));
    check_string(cfg, "bandwidth_isa");
    assert_true(check_number(cfg, "fma_accumulators") >= 10);

    double load = check_number(r, "load_other_fraction");
    assert_true(load >= 0 && load <= 1);
    const cJSON *pl = get(r, "load_other_fraction_by_phase");
    static const char *const ph[] = {"fma", "mem", "cache", "sgemm"};
    for (int i = 0; i < 4; i++) {
        double f = check_number(pl, ph[i]);
        assert_true(f >= 0 && f <= 1);
    }
    assert_true(cJSON_IsBool(get(r, "busy")));
    assert_int_equal(cJSON_IsTrue(get(r, "busy")), load > Q35_BUSY_THRESHOLD);
    assert_true(check_number(r, "runtime_seconds") > 0);

    /* noisy_figures: names of figures whose repetitions spread by more than 25% of the median */
    const cJSON *noisy = get(r, "noisy_figures"), *e;
    assert_true(cJSON_IsArray(noisy));
    cJSON_ArrayForEach(e, noisy)
    {
        assert_true(cJSON_IsString(e));
        const char *n = e->valuestring;
        assert_true(!strncmp(n, "fma_peak_gflops.", 16) || !strncmp(n, "bf16dot_peak_gflops.", 20) ||
                    !strncmp(n, "mem_bw_gbs.", 11) ||
                    !strncmp(n, "cache_bw_gbs.", 13) || !strncmp(n, "sgemm_gflops.", 13));
        assert_true(n[strlen(n) - 2] == '.' && n[strlen(n) - 1] == '1'); /* ends in the thread count */
    }
}

static void test_noisy_rule(void **state)
{
    (void)state;
    const double steady[] = {100, 101, 99, 110}, jumpy[] = {100, 101, 60, 99};
    q35_stats a = q35_stats_of(steady, 4), b = q35_stats_of(jumpy, 4), one = q35_stats_of(steady, 1);
    assert_false(q35_stats_noisy(&a)); /* spread 11 of median 100.5 */
    assert_true(q35_stats_noisy(&b));  /* spread 41 */
    assert_false(q35_stats_noisy(&one));
}

static void test_measurements(void **state)
{
    (void)state;
    const q35_calib_config *cfg = &g_res->cfg;
    const cJSON *fma = get(g_root, "fma_peak_gflops");
    assert_true(cJSON_IsObject(fma));
    const cJSON *avx2 = get(fma, "avx2"), *avx512 = get(fma, "avx512");
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) check_per_threads(avx2, cfg->fma_reps);
    else assert_true(cJSON_IsString(avx2) && !strncmp(avx2->valuestring, "n/a", 3));
    if (__builtin_cpu_supports("avx512f")) {
        check_per_threads(avx512, cfg->fma_reps);
    } else {
        assert_true(cJSON_IsString(avx512)); /* marked n/a, not a number */
        assert_string_equal(avx512->valuestring, "n/a: CPU has no AVX-512F");
    }

    const cJSON *mem = get(g_root, "mem_bw_gbs");
    assert_int_equal(cJSON_GetArraySize(mem), 3);
    check_per_threads(get(mem, "read"), cfg->mem_reps);
    check_per_threads(get(mem, "copy"), cfg->mem_reps);
    check_per_threads(get(mem, "triad"), cfg->mem_reps);

    const cJSON *cache = get(g_root, "cache_bw_gbs");
    static const char *const sizes[] = {"32KiB", "512KiB", "4MiB"};
    assert_int_equal(cJSON_GetArraySize(cache), 3);
    for (int i = 0; i < 3; i++) {
        const cJSON *c = get(cache, sizes[i]);
        check_per_threads(get(c, "read"), cfg->cache_reps);
        check_per_threads(get(c, "triad"), cfg->cache_reps);
    }

    /* the hand-off round trip: per thread count above 1, else marked n/a (tiny: 1 thread) */
    const cJSON *ho = get(g_root, "handoff_round_trip_ns");
    int multi = 0;
    for (int i = 0; i < cfg->nthreads; i++) multi |= cfg->threads[i] > 1;
    if (multi) {
        assert_true(cJSON_IsObject(ho));
    } else {
        assert_true(cJSON_IsString(ho) && !strncmp(ho->valuestring, "n/a", 3));
    }

    const cJSON *sg = get(g_root, "sgemm_gflops");
    assert_int_equal(cJSON_GetArraySize(sg), Q35_SGEMM_NSHAPES);
    check_per_threads(get(sg, "64x128x128"), cfg->sgemm_reps);
    check_per_threads(get(sg, "128x128x64"), cfg->sgemm_reps);
    check_per_threads(get(sg, "16x1024x2048"), cfg->sgemm_reps); /* MoE experts at 16 and 64 rows */
    check_per_threads(get(sg, "64x2048x512"), cfg->sgemm_reps);
    char key[48];
    for (int s = 0; s < Q35_SGEMM_NSHAPES; s++) {
        snprintf(key, sizeof key, "%dx%dx%d", cfg->sgemm_shapes[s][0], cfg->sgemm_shapes[s][1], cfg->sgemm_shapes[s][2]);
        check_per_threads(get(sg, key), cfg->sgemm_reps);
    }
}

/* The FMA probe: refuses bad arguments; on a CPU with AVX2+FMA or AVX-512 it runs and gives a
 * positive finite rate (its size is a benchmark's business, not a test's); without them, nothing. */
static void test_fma_probe(void **state)
{
    (void)state;
    q35_fma_probe p;
    assert_int_equal(q35_fma_probe_init(&p, 0, 0.001), -1);
    assert_int_equal(q35_fma_probe_init(&p, 1, 0.0), -1);
    assert_true(q35_fma_probe_run(&p) == 0.0); /* a refused probe does not run */
    const int fma = __builtin_cpu_supports("avx512f") || (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
    if (!fma) {
        assert_int_equal(q35_fma_probe_init(&p, 1, 0.001), -1);
        print_message("fma probe: skipped, this CPU has neither AVX2+FMA nor AVX-512\n");
        return;
    }
    assert_int_equal(q35_fma_probe_init(&p, 1, 0.001), 0);
    assert_true(p.inner >= 1);
    const double g = q35_fma_probe_run(&p);
    assert_true(g > 0.0 && isfinite(g));
}

/* The bandwidth probe: refuses bad arguments, reads its array and gives a positive finite rate,
 * and can be freed twice. */
static void test_bw_probe(void **state)
{
    (void)state;
    q35_bw_probe p;
    assert_int_equal(q35_bw_probe_init(&p, 0, 1 << 20), -1);
    assert_int_equal(q35_bw_probe_init(&p, 1, 32), -1);
    assert_true(q35_bw_probe_run(&p) == 0.0); /* refused: nothing to read */
    assert_int_equal(q35_bw_probe_init(&p, 2, (size_t)16 << 20), 0);
    assert_true(p.bytes == (size_t)16 << 20);
    const double g = q35_bw_probe_run(&p);
    assert_true(g > 0.0 && isfinite(g));
    q35_bw_probe_free(&p);
    q35_bw_probe_free(&p);
}

/* The readable table of r, as a string to free. */
static char *table_of(const q35_calib_result *r)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    q35_calib_print_table(f, r);
    fclose(f);
    return buf;
}

/* calibrate's tiny run on 2 threads (q35_calibrate's return code in *rc). */
static q35_calib_result *calibrate_two_threads(int *rc)
{
    q35_calib_config cfg;
    q35_calib_config_tiny(&cfg);
    cfg.threads[0] = 2;
    q35_calib_result *r = malloc(sizeof *r);
    char err[256];
    assert_non_null(r);
    *rc = q35_calibrate(&cfg, r, err, sizeof err);
    return r;
}

/* CPUs this process may run on. */
static int cpus_allowed(void)
{
    cpu_set_t m;
    return sched_getaffinity(0, sizeof m, &m) ? 1 : CPU_COUNT(&m);
}

/* The hand-off probe: nothing below 2 threads or 1 trip; with 2 threads a positive finite time per
 * round trip (how long is the host's business: 50-400 ns on the development VMs), or, on a host
 * with one CPU, 0 (the threads cannot run at once: test_handoff_one_cpu). */
static void test_handoff_probe(void **state)
{
    (void)state;
    assert_true(q35_handoff_probe_run(1, 100) == 0.0);
    assert_true(q35_handoff_probe_run(2, 0) == 0.0);
    assert_true(q35_handoff_probe_run(Q35_MAX_THREADS + 1, 100) == 0.0);
    const double ns = q35_handoff_probe_run(2, 200);
    if (cpus_allowed() < 2) {
        print_message("  one CPU: the 2-thread hand-off is n/a here\n");
        assert_true(ns == 0.0);
        return;
    }
    assert_true(ns > 0.0 && isfinite(ns));

    /* calibrate on 2 threads: the figure under "2", one value per read repetition, in the table */
    int rc;
    q35_calib_result *r = calibrate_two_threads(&rc);
    assert_int_equal(rc, 0);
    cJSON *root = q35_calib_to_json(r);
    const cJSON *two = get(get(root, "handoff_round_trip_ns"), "2");
    assert_true(cJSON_IsObject(two));
    assert_int_equal((int)get(two, "n")->valuedouble, r->cfg.mem_reps);
    assert_true(get(two, "median")->valuedouble > 0.0);
    char *buf = table_of(r);
    assert_non_null(strstr(buf, "thread hand-off round trip (ns)          2"));
    free(buf);
    cJSON_Delete(root);
    free(r);
}

/* Both threads of a 2-thread region on one CPU, as under `taskset -c 0` or a cgroup of one CPU:
 * the two cannot run at once, each pass of the line would wait for the scheduler, and 20000 round
 * trips took minutes before the probe gave up after 0.5 s.  Now the probe returns 0 and calibrate
 * records the figure as n/a with the reason instead of a number.  The pool threads keep their
 * affinity, so each thread of a 2-thread team pins itself, and the old mask is put back after.
 * alarm(): a probe that spins again fails the test instead of hanging it. */
static void test_handoff_one_cpu(void **state)
{
    (void)state;
    cpu_set_t old, one;
    assert_int_equal(sched_getaffinity(0, sizeof old, &old), 0);
    int cpu = 0;
    while (cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &old)) cpu++;
    assert_true(cpu < CPU_SETSIZE);
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    int pinned = 0;
#pragma omp parallel num_threads(2) reduction(+ : pinned)
    pinned += sched_setaffinity(0, sizeof one, &one) == 0;
    assert_int_equal(pinned, 2);

    alarm(120);
    const double ns = q35_handoff_probe_run(2, Q35_HANDOFF_TRIPS);
    int rc;
    q35_calib_result *r = calibrate_two_threads(&rc);
    alarm(0);
    int restored = 0;
#pragma omp parallel num_threads(2) reduction(+ : restored)
    restored += sched_setaffinity(0, sizeof old, &old) == 0;
    assert_int_equal(restored, 2);

    assert_true(ns == 0.0);
    assert_int_equal(rc, 0);
    cJSON *root = q35_calib_to_json(r);
    const cJSON *two = get(get(root, "handoff_round_trip_ns"), "2");
    assert_true(cJSON_IsString(two));
    assert_non_null(strstr(two->valuestring, "n/a: threads 0 and 1 did not run at once"));
    char *buf = table_of(r);
    assert_non_null(strstr(buf, "thread hand-off round trip (ns)          2 n/a: threads 0 and 1 did not run at once"));
    free(buf);
    cJSON_Delete(root);
    free(r);
}

/* Medians read back equal the JSON's; unmeasured thread counts and unknown names give 0. */
static void test_limits_load(void **state)
{
    (void)state;
    q35_machine_limits lim;
    char err[256] = "";
    assert_int_equal(q35_limits_load(g_json, &lim, err, sizeof err), 0);
    int want = Q35_HAVE_MEM | Q35_HAVE_CACHE | Q35_HAVE_SGEMM;
    if (g_res->fma_ran[Q35_FMA_AVX2] || g_res->fma_ran[Q35_FMA_AVX512]) want |= Q35_HAVE_FMA;
    assert_int_equal(lim.have, want);

    double best = 0;
    for (int isa = 0; isa < Q35_FMA_NISA; isa++)
        if (g_res->fma_ran[isa] && g_res->fma[isa][0].median > best) best = g_res->fma[isa][0].median;
    assert_true(fabs(q35_limit_fma_peak(&lim, 1) - best) <= 1e-9 * best);
    assert_true(lim.fma_peak[Q35_FMA_AVX512][1] == 0 || __builtin_cpu_supports("avx512f"));
    /* the BF16 dot peak: an object of medians with AVX512_BF16 (read back), "n/a: ..." without */
    const cJSON *dp = get(g_root, "bf16dot_peak_gflops");
    if (cpu_has_detected(CPU_FEAT_AVX512_BF16)) {
        assert_true(g_res->bf16dot_ran && cJSON_IsObject(dp));
        const double d = g_res->bf16dot[0].median;
        assert_true(d > 0 && fabs(q35_limit_bf16dot_peak(&lim, 1) - d) <= 1e-9 * d);
    } else {
        assert_true(!g_res->bf16dot_ran && cJSON_IsString(dp) && !strncmp(dp->valuestring, "n/a", 3));
        assert_true(q35_limit_bf16dot_peak(&lim, 1) == 0);
    }

    const cJSON *tri = get(get(get(g_root, "mem_bw_gbs"), "triad"), "1");
    double m = get(tri, "median")->valuedouble;
    assert_true(m > 0 && fabs(q35_limit_mem_bw(&lim, "triad", 1) - m) <= 1e-9 * m);
    assert_true(q35_limit_mem_bw(&lim, "read", 1) > 0);
    assert_true(q35_limit_mem_bw(&lim, "copy", 1) > 0);
    assert_true(q35_limit_mem_bw(&lim, "triad", 2) == 0); /* not measured in the tiny run */
    assert_true(q35_limit_mem_bw(&lim, "write", 1) == 0);
    assert_true(q35_limit_mem_bw(&lim, "triad", 0) == 0);
    assert_true(q35_limit_mem_bw(&lim, "triad", 100000) == 0);
    assert_true(q35_limit_cache_bw(&lim, "32KiB", "read", 1) > 0);
    assert_true(q35_limit_cache_bw(&lim, "4MiB", "triad", 1) > 0);
    assert_true(q35_limit_cache_bw(&lim, "1GiB", "read", 1) == 0);
    assert_true(q35_limit_sgemm(&lim, 64, 128, 128, 1) > 0);
    assert_true(q35_limit_sgemm(&lim, 128, 128, 64, 1) > 0);
    assert_true(q35_limit_sgemm(&lim, 2048, 1024, 6144, 1) == 0); /* the tiny run used a smaller shape */
    assert_true(q35_limit_sgemm(&lim, 64, 1024, 2048, 1) > 0);
    assert_int_equal(lim.nshapes, Q35_SGEMM_NSHAPES);
    assert_int_equal(lim.busy, g_res->busy);
    assert_int_equal(lim.huge_pages_used, g_res->huge_pages_used);
    assert_int_equal(lim.noisy_figures, cJSON_GetArraySize(get(g_root, "noisy_figures")));
    assert_true(lim.date[0] && lim.cpu_model[0]);
}

static void test_limits_load_errors(void **state)
{
    (void)state;
    q35_machine_limits lim;
    char err[256], p[160];
    err[0] = 0;
    snprintf(p, sizeof p, "%s/absent.json", g_dir);
    assert_int_equal(q35_limits_load(p, &lim, err, sizeof err), -1);
    assert_non_null(strstr(err, "absent.json"));

    snprintf(p, sizeof p, "%s/bad.json", g_dir);
    assert_int_equal(write_text(p, "{\"schema\": "), 0);
    err[0] = 0;
    assert_int_equal(q35_limits_load(p, &lim, err, sizeof err), -1);
    assert_true(err[0] != 0);

    assert_int_equal(write_text(p, "{\"schema\": \"q35lab-machine/2\"}"), 0);
    err[0] = 0;
    assert_int_equal(q35_limits_load(p, &lim, err, sizeof err), -1);
    assert_non_null(strstr(err, "schema"));

    /* the right schema with missing or malformed sections: loads, everything 0 */
    assert_int_equal(write_text(p, "{\"schema\": \"q35lab-machine/1\", \"mem_bw_gbs\": {\"triad\": {\"1\": 5, "
                                   "\"x\": {\"median\": 3}, \"2\": {\"median\": \"fast\"}}}, \"sgemm_gflops\": "
                                   "{\"64x128\": {\"1\": {\"median\": 9}}}, \"fma_peak_gflops\": {\"avx512\": \"n/a\"}}"),
                     0);
    assert_int_equal(q35_limits_load(p, &lim, err, sizeof err), 0);
    assert_int_equal(lim.have, 0);
    assert_true(q35_limit_mem_bw(&lim, "triad", 1) == 0 && q35_limit_mem_bw(&lim, "triad", 2) == 0);
    assert_true(q35_limit_fma_peak(&lim, 1) == 0);
    assert_true(q35_limit_bf16dot_peak(&lim, 1) == 0); /* absent (files before issue 17) */
    assert_int_equal(lim.nshapes, 0);
}

/* The write is atomic: no temporary left behind, and a failed write names the path. */
static void test_write_atomic(void **state)
{
    (void)state;
    DIR *d = opendir(g_dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) assert_null(strstr(e->d_name, ".tmp"));
    closedir(d);

    char err[256] = "";
    assert_int_equal(q35_calib_write_json(g_res, "/nonexistent-dir-q35/machine.json", err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent-dir-q35/machine.json"));
}

static void test_table_and_config(void **state)
{
    (void)state;
    char *buf = table_of(g_res);
    assert_non_null(strstr(buf, "memory triad"));
    assert_non_null(strstr(buf, "sgemm 64x128x128"));
    if (!__builtin_cpu_supports("avx512f")) assert_non_null(strstr(buf, "n/a: CPU has no AVX-512F"));
    free(buf);

    /* invalid configurations are refused before anything runs */
    q35_calib_config cfg;
    q35_calib_result *r = malloc(sizeof *r);
    char err[256];
    assert_non_null(r);
    q35_calib_config_tiny(&cfg);
    cfg.nthreads = 0;
    assert_int_equal(q35_calibrate(&cfg, r, err, sizeof err), -1);
    q35_calib_config_tiny(&cfg);
    cfg.threads[0] = Q35_MAX_THREADS + 1;
    assert_int_equal(q35_calibrate(&cfg, r, err, sizeof err), -1);
    q35_calib_config_tiny(&cfg);
    cfg.sgemm_shapes[1][2] = 0;
    assert_int_equal(q35_calibrate(&cfg, r, err, sizeof err), -1);
    free(r);

    /* the default configuration measures 1 and all cores, the kernels' sgemm shapes */
    q35_calib_config_default(&cfg);
    assert_int_equal(cfg.threads[0], 1);
    assert_true(cfg.nthreads == 1 || cfg.nthreads == 2);
    assert_true(cfg.mem_bytes == (size_t)1 << 30);
    assert_int_equal(cfg.sgemm_shapes[2][0], 2048);
    assert_int_equal(cfg.sgemm_shapes[2][1], 1024);
    assert_int_equal(cfg.sgemm_shapes[2][2], 6144);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metadata),          cmocka_unit_test(test_noisy_rule),
        cmocka_unit_test(test_measurements),
        cmocka_unit_test(test_limits_load),       cmocka_unit_test(test_limits_load_errors),
        cmocka_unit_test(test_write_atomic),      cmocka_unit_test(test_fma_probe), cmocka_unit_test(test_bw_probe), cmocka_unit_test(test_handoff_probe), cmocka_unit_test(test_handoff_one_cpu),      cmocka_unit_test(test_table_and_config),
    };
    return cmocka_run_group_tests_name("calibrate", tests, group_setup, group_teardown);
}
