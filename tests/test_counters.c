/* test_counters.c - cmocka suite for harness/counters.{h,c}.
 *
 * Written to pass both on the development VM (no PMU: every hardware event is n/a) and on a
 * machine with hardware counters (then they must count).  The q35lab software-defined events
 * must be readable through PAPI wherever the binary links libsde; if PAPI's sde component is
 * unusable the tests check that the reason is reported and print a note. */
#include "harness/counters.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SDE(n) "sde:::q35lab::" n

static volatile double sink;

/* ~10 ms of work on the calling thread. */
static void busy(void)
{
    double s = 0;
    for (int i = 0; i < 10 * 1000 * 1000; i++)
        s += (double)i * 1e-9;
    sink = s;
}

static q35_counters *open_ok(const char *spec)
{
    char err[256] = "";
    q35_counters *c = q35_counters_open(spec, err, sizeof err);
    if (!c)
        fail_msg("q35_counters_open(\"%s\") failed: %s", spec, err);
    return c;
}

/* The list of names must be exactly want[] (NULL-terminated). */
static void expect_names(const char *spec, const char *const *want)
{
    q35_counters *c = open_ok(spec);
    int n = 0;
    while (want[n])
        n++;
    if (q35_counters_n(c) != n) {
        for (int i = 0; i < q35_counters_n(c); i++)
            print_message("  got %s\n", q35_counters_event_name(c, i));
        fail_msg("spec \"%s\": %d events, want %d", spec, q35_counters_n(c), n);
    }
    for (int i = 0; i < n; i++)
        assert_string_equal(q35_counters_event_name(c, i), want[i]);
    q35_counters_close(c);
}

/* ------------------------------------------------------------------ */
/* SDE counters without PAPI                                           */
/* ------------------------------------------------------------------ */

static void test_sde_names(void **state)
{
    (void)state;
    static const char *const names[Q35_SDE_COUNT] = {
        "FLOPS", "STATE_BYTES_READ", "STATE_BYTES_WRITTEN", "WEIGHT_BYTES_READ",
        "TOKENS", "CHUNKS", "SOLVER_CALLS", "COLLECTIVES", "COMM_BYTES", "COMM_NS", "EXPERT_ROWS",
        "LINEAR_NS", "CONV_NS", "DELTARULE_NS", "ATTENTION_NS", "MOE_NS"};
    for (int i = 0; i < Q35_SDE_COUNT; i++) {
        assert_string_equal(q35_sde_name((q35_sde_id)i), names[i]);
        assert_non_null(q35_sde_description((q35_sde_id)i));
    }
    assert_null(q35_sde_name(Q35_SDE_COUNT));
    assert_null(q35_sde_name((q35_sde_id)-1));
    q35_sde_add(Q35_SDE_COUNT, 5); /* ignored, no crash */
    assert_int_equal(q35_sde_value(Q35_SDE_COUNT), 0);
    q35_sde_register();
    q35_sde_register(); /* idempotent */
}

static void test_sde_add_threads(void **state)
{
    (void)state;
    const int per_thread = 100000;
    long long f0 = q35_sde_value(Q35_SDE_FLOPS), t0 = q35_sde_value(Q35_SDE_TOKENS);
    int nthreads = 0;
#pragma omp parallel num_threads(2)
    {
#pragma omp single
        nthreads = omp_get_num_threads();
        for (int i = 0; i < per_thread; i++) {
            q35_sde_add(Q35_SDE_FLOPS, 3);
            q35_sde_add(Q35_SDE_TOKENS, 1);
        }
    }
    assert_true(nthreads >= 1);
    assert_int_equal(q35_sde_value(Q35_SDE_FLOPS) - f0, 3LL * per_thread * nthreads);
    assert_int_equal(q35_sde_value(Q35_SDE_TOKENS) - t0, 1LL * per_thread * nthreads);
}

/* ------------------------------------------------------------------ */
/* Spec parsing                                                        */
/* ------------------------------------------------------------------ */

#define ALL_SDE                                                                                \
    SDE("FLOPS"), SDE("STATE_BYTES_READ"), SDE("STATE_BYTES_WRITTEN"), SDE("WEIGHT_BYTES_READ"), \
        SDE("TOKENS"), SDE("CHUNKS"), SDE("SOLVER_CALLS"), SDE("COLLECTIVES"), SDE("COMM_BYTES"), SDE("COMM_NS"), \
        SDE("EXPERT_ROWS"), SDE("LINEAR_NS"), SDE("CONV_NS"), SDE("DELTARULE_NS"), SDE("ATTENTION_NS"), SDE("MOE_NS")

static void test_groups(void **state)
{
    (void)state;
    static const char *const def[] = {"PAPI_TOT_CYC", "PAPI_TOT_INS", "PAPI_L1_DCM",
                                      "PAPI_L2_DCM",  ALL_SDE,        NULL};
    expect_names("default", def);
    static const char *const none[] = {NULL};
    expect_names("none", none);
    static const char *const cache_flops[] = {"PAPI_L1_DCM",
                                              "PAPI_L2_DCM",
                                              "PAPI_L3_TCM",
                                              SDE("STATE_BYTES_READ"),
                                              SDE("STATE_BYTES_WRITTEN"),
                                              SDE("WEIGHT_BYTES_READ"),
                                              "PAPI_FP_OPS",
                                              "PAPI_SP_OPS",
                                              "PAPI_VEC_SP",
                                              SDE("FLOPS"),
                                              NULL};
    expect_names("cache,flops", cache_flops);
    static const char *const def_br[] = {"PAPI_TOT_CYC", "PAPI_TOT_INS", "PAPI_L1_DCM",
                                         "PAPI_L2_DCM",  ALL_SDE,        "PAPI_BR_MSP",
                                         NULL};
    expect_names("default,PAPI_BR_MSP", def_br);
    /* duplicates, whitespace, groups overlapping names */
    static const char *const dup[] = {"PAPI_TOT_CYC", SDE("FLOPS"), "PAPI_TOT_INS",
                                      "PAPI_L1_DCM",  "PAPI_L2_DCM", SDE("STATE_BYTES_READ"),
                                      SDE("STATE_BYTES_WRITTEN"), SDE("WEIGHT_BYTES_READ"),
                                      SDE("TOKENS"),  SDE("CHUNKS"), SDE("SOLVER_CALLS"),
                                      SDE("COLLECTIVES"), SDE("COMM_BYTES"), SDE("COMM_NS"),
                                      SDE("EXPERT_ROWS"), SDE("LINEAR_NS"), SDE("CONV_NS"), SDE("DELTARULE_NS"),
                                      SDE("ATTENTION_NS"), SDE("MOE_NS"), NULL};
    expect_names(" PAPI_TOT_CYC , " SDE("FLOPS") ",PAPI_TOT_CYC,default,default,none", dup);
    static const char *const sde_only[] = {ALL_SDE, NULL};
    expect_names("sde", sde_only);
}

static void test_spec_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {"", "   ", ",", "PAPI_TOT_CYC,", ",PAPI_TOT_CYC",
                                      "PAPI_TOT_CYC,,PAPI_TOT_INS", "default, ,none"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256] = "";
        q35_counters *c = q35_counters_open(bad[i], err, sizeof err);
        if (c)
            fail_msg("spec \"%s\" accepted", bad[i]);
        assert_true(strlen(err) > 0);
    }
    char err[256] = "";
    assert_null(q35_counters_open(NULL, err, sizeof err));
    assert_true(strlen(err) > 0);
    assert_null(q35_counters_open("", NULL, 0)); /* no err buffer: still no crash */
}

/* ------------------------------------------------------------------ */
/* Hardware events: n/a here, counting on a machine with a PMU         */
/* ------------------------------------------------------------------ */

static void test_tot_cyc(void **state)
{
    (void)state;
    q35_counters *c = open_ok("PAPI_TOT_CYC");
    assert_int_equal(q35_counters_n(c), 1);
    assert_string_equal(q35_counters_event_name(c, 0), "PAPI_TOT_CYC");
    assert_int_equal(q35_counters_start(c), 0);
    busy();
    assert_int_equal(q35_counters_stop(c), 0);
    if (q35_counters_available(c, 0)) {
        assert_string_equal(q35_counters_unavailable_reason(c, 0), "");
        assert_true(q35_counters_value(c, 0) > 0);
    } else {
        const char *why = q35_counters_unavailable_reason(c, 0);
        assert_non_null(why);
        assert_true(strlen(why) > 0);
        print_message("note: PAPI_TOT_CYC n/a here (%s)\n", why);
        assert_int_equal(q35_counters_value(c, 0), 0);
    }
    q35_counters_close(c);
}

static void test_not_an_event(void **state)
{
    (void)state;
    q35_counters *c = open_ok("NOT_AN_EVENT");
    assert_int_equal(q35_counters_n(c), 1);
    assert_false(q35_counters_available(c, 0));
    assert_true(strlen(q35_counters_unavailable_reason(c, 0)) > 0);
    assert_int_equal(q35_counters_start(c), 0);
    assert_int_equal(q35_counters_stop(c), 0);
    assert_int_equal(q35_counters_value(c, 0), 0);

    /* reported once per process */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    q35_counters_report_unavailable(c, f);
    q35_counters_report_unavailable(c, f);
    fclose(f);
    char want[256];
    snprintf(want, sizeof want, "counters: NOT_AN_EVENT n/a (%s; see docs/counters.md)\n",
             q35_counters_unavailable_reason(c, 0));
    assert_string_equal(buf, want);
    free(buf);
    q35_counters_close(c);
}

static void test_misuse(void **state)
{
    (void)state;
    q35_counters *c = open_ok("none");
    assert_int_equal(q35_counters_n(c), 0);
    assert_int_equal(q35_counters_stop(c), -1); /* not started */
    assert_int_equal(q35_counters_start(c), 0);
    assert_int_equal(q35_counters_start(c), -1); /* already running */
    assert_int_equal(q35_counters_stop(c), 0);
    assert_null(q35_counters_event_name(c, 0));
    assert_false(q35_counters_available(c, 3));
    assert_int_equal(q35_counters_find(c, "PAPI_TOT_CYC"), -1);
    q35_counters_close(c);
    assert_int_equal(q35_counters_start(NULL), -1);
    assert_int_equal(q35_counters_stop(NULL), -1);
    assert_int_equal(q35_counters_n(NULL), 0);
    q35_counters_reset(NULL);
    q35_counters_close(NULL);
    /* closing a running set stops it */
    c = open_ok(SDE("TOKENS"));
    assert_int_equal(q35_counters_start(c), 0);
    q35_counters_close(c);
}

/* perf's software events (task clock, page faults) need no PMU: they work in most VMs. */
static void test_perf_software_events(void **state)
{
    (void)state;
    /* a hardware event that fails to add (here) must not spoil the set for the next ones */
    q35_counters *c = open_ok("PAPI_TOT_CYC,perf::TASK-CLOCK,perf::PAGE-FAULTS");
    assert_int_equal(q35_counters_n(c), 3);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(q35_counters_start(c), 0);
        busy();
        assert_int_equal(q35_counters_stop(c), 0);
    }
    if (q35_counters_available(c, 1)) {
        /* two regions of >= ~10 ms each: well over 2 ms of task clock, in ns */
        assert_true(q35_counters_value(c, 1) > 2 * 1000 * 1000);
        assert_true(q35_counters_value(c, 2) >= 0);
    } else {
        print_message("note: perf::TASK-CLOCK n/a here (%s)\n", q35_counters_unavailable_reason(c, 1));
    }
    if (q35_counters_available(c, 0))
        assert_true(q35_counters_value(c, 0) > 0);
    assert_false(q35_counters_multiplexed(c));
    q35_counters_close(c);

    /* forced multiplexing: still counts */
    c = open_ok("multiplex,perf::TASK-CLOCK,PAPI_TOT_CYC," SDE("TOKENS"));
    assert_int_equal(q35_counters_n(c), 3);
    assert_int_equal(q35_counters_start(c), 0);
    busy();
    q35_sde_add(Q35_SDE_TOKENS, 7);
    assert_int_equal(q35_counters_stop(c), 0);
    if (q35_counters_available(c, 0)) {
        assert_true(q35_counters_value(c, 0) > 1000 * 1000);
        if (q35_counters_multiplexed(c)) {
            assert_string_equal(q35_counters_multiplex_error(c), "");
        } else {
            /* PAPI checks multiplexing permission with a hardware event: refused without a PMU */
            assert_true(strlen(q35_counters_multiplex_error(c)) > 0);
            print_message("note: multiplexing refused (%s)\n", q35_counters_multiplex_error(c));
        }
    }
    if (q35_counters_available(c, 2))
        assert_int_equal(q35_counters_value(c, 2), 7);
    q35_counters_close(c);
}

/* ------------------------------------------------------------------ */
/* SDE events read through PAPI                                        */
/* ------------------------------------------------------------------ */

static void test_sde_through_papi(void **state)
{
    (void)state;
    q35_counters *c = open_ok(SDE("TOKENS"));
    assert_int_equal(q35_counters_n(c), 1);
    if (!q35_counters_available(c, 0)) {
        const char *why = q35_counters_unavailable_reason(c, 0);
        assert_true(strlen(why) > 0);
        print_message("note: sde:::q35lab::TOKENS n/a through PAPI (%s); is libsde linked?\n", why);
        q35_counters_close(c);
        return;
    }
    q35_sde_add(Q35_SDE_TOKENS, 1000); /* before the region: not counted */
    assert_int_equal(q35_counters_start(c), 0);
    q35_sde_add(Q35_SDE_TOKENS, 12345);
    assert_int_equal(q35_counters_stop(c), 0);
    assert_int_equal(q35_counters_value(c, 0), 12345);

    q35_sde_add(Q35_SDE_TOKENS, 999); /* between regions: not counted */
    assert_int_equal(q35_counters_start(c), 0);
    q35_sde_add(Q35_SDE_TOKENS, 55);
    assert_int_equal(q35_counters_stop(c), 0);
    assert_int_equal(q35_counters_value(c, 0), 12345 + 55); /* regions accumulate */

    q35_counters_reset(c);
    assert_int_equal(q35_counters_value(c, 0), 0);
    assert_int_equal(q35_counters_start(c), 0);
    q35_sde_add(Q35_SDE_TOKENS, 3);
    assert_int_equal(q35_counters_stop(c), 0);
    assert_int_equal(q35_counters_value(c, 0), 3);
    q35_counters_close(c);
}

/* "default" mixes hardware (n/a here) and SDE events: the SDEs still give exact deltas, also
 * for adds from OpenMP threads inside the region. */
static void test_default_group_region(void **state)
{
    (void)state;
    q35_counters *c = open_ok("default");
    assert_int_equal(q35_counters_n(c), 4 + Q35_SDE_COUNT);
    q35_counters_report_unavailable(c, stderr);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(q35_counters_start(c), 0);
#pragma omp parallel num_threads(2)
        for (int k = 0; k < 1000; k++)
            for (int i = 0; i < Q35_SDE_COUNT; i++)
                q35_sde_add((q35_sde_id)i, i + 1);
        busy();
        assert_int_equal(q35_counters_stop(c), 0);
    }
    int threads = 0;
#pragma omp parallel num_threads(2)
#pragma omp single
    threads = omp_get_num_threads();
    for (int i = 0; i < Q35_SDE_COUNT; i++) {
        char name[64];
        snprintf(name, sizeof name, SDE("%s"), q35_sde_name((q35_sde_id)i));
        int k = q35_counters_find(c, name);
        assert_true(k >= 0);
        if (!q35_counters_available(c, k)) {
            assert_true(strlen(q35_counters_unavailable_reason(c, k)) > 0);
            print_message("note: %s n/a (%s)\n", name, q35_counters_unavailable_reason(c, k));
            continue;
        }
        assert_int_equal(q35_counters_value(c, k), 2LL * threads * 1000 * (i + 1));
    }
    for (int k = 0; k < 4; k++) /* hardware events: either n/a with a reason, or counting */
        if (q35_counters_available(c, k))
            assert_true(q35_counters_value(c, k) >= (k < 2 ? 1 : 0)); /* cycles, instructions > 0 */
        else
            assert_true(strlen(q35_counters_unavailable_reason(c, k)) > 0);
    q35_counters_close(c);
}

/* Event sets are per thread: each OpenMP thread opens its own. */
static void test_sets_in_threads(void **state)
{
    (void)state;
    int bad = 0;
#pragma omp parallel num_threads(2) reduction(+ : bad)
    {
        q35_counters *c = q35_counters_open(SDE("CHUNKS"), NULL, 0);
        if (!c) {
            bad++;
        } else {
            q35_counters_start(c);
            q35_sde_add(Q35_SDE_CHUNKS, 10);
            q35_counters_stop(c);
            /* CHUNKS is process-wide: the other thread's add may fall into this region */
            long long v = q35_counters_value(c, 0);
            if (q35_counters_available(c, 0) && (v < 10 || v > 20))
                bad++;
            q35_counters_close(c);
        }
    }
    assert_int_equal(bad, 0);
}

static void test_machine_summary(void **state)
{
    (void)state;
    const char *s = q35_papi_summary();
    assert_non_null(s);
    assert_true(strlen(s) > 0);
    assert_ptr_equal(s, q35_papi_summary());
    print_message("PAPI: %s\n", s);
    assert_true(q35_papi_hw_counters() >= 0);
    int vm = q35_papi_virtualized();
    assert_true(vm >= -1 && vm <= 1);
}

int main(void)
{
    const struct CMUnitTest sde[] = {
        cmocka_unit_test(test_sde_names),
        cmocka_unit_test(test_sde_add_threads),
    };
    const struct CMUnitTest spec[] = {
        cmocka_unit_test(test_groups),
        cmocka_unit_test(test_spec_errors),
    };
    const struct CMUnitTest regions[] = {
        cmocka_unit_test(test_tot_cyc),
        cmocka_unit_test(test_not_an_event),
        cmocka_unit_test(test_misuse),
        cmocka_unit_test(test_perf_software_events),
        cmocka_unit_test(test_sde_through_papi),
        cmocka_unit_test(test_default_group_region),
        cmocka_unit_test(test_sets_in_threads),
        cmocka_unit_test(test_machine_summary),
    };
    int fails = 0;
    fails += cmocka_run_group_tests_name("sde", sde, NULL, NULL);
    fails += cmocka_run_group_tests_name("spec", spec, NULL, NULL);
    fails += cmocka_run_group_tests_name("regions", regions, NULL, NULL);
    return fails ? 1 : 0;
}
