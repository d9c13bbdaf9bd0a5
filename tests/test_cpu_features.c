/* test_cpu_features.c - kernels/cpu_features: each feature detected separately, the levels,
 * forcing (only ever lowers), Q35_ISA, and what cpu_has() hides at each forced level.
 *
 * The expected features come from /proc/cpuinfo's flags (the kernel's own CPUID reading, which
 * also drops what the OS does not save the state of), not from the code under test. */
#include "kernels/cpu_features.h"
#include "tests/support/isa_levels.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 1 if /proc/cpuinfo's first "flags" line has the word w, 0 if not, -1 without /proc. */
static int cpuinfo_flag(const char *w)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return -1;
    static char line[8192];
    int found = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "flags", 5)) {
            found = 0;
            for (char *t = strtok(strchr(line, ':') + 1, " \t\n"); t; t = strtok(NULL, " \t\n"))
                if (!strcmp(t, w)) found = 1;
            break;
        }
    fclose(f);
    return found;
}

static void test_detection_matches_cpuinfo(void **state)
{
    (void)state;
    if (cpuinfo_flag("fpu") < 0) skip();
    static const struct { cpu_feature f; const char *a, *b; } map[] = {
        {CPU_FEAT_AVX2_FMA, "avx2", "fma"},      {CPU_FEAT_AVX512F, "avx512f", NULL},
        {CPU_FEAT_AVX512BW, "avx512bw", NULL},   {CPU_FEAT_AVX512VL, "avx512vl", NULL},
        {CPU_FEAT_AVX512DQ, "avx512dq", NULL},   {CPU_FEAT_AVX512_VNNI, "avx512_vnni", NULL},
        {CPU_FEAT_AVX512_BF16, "avx512_bf16", NULL}, {CPU_FEAT_AVX_VNNI, "avx_vnni", NULL},
        /* Linux lists amx_tile only when it manages the tile state; the grant is asked for too */
        {CPU_FEAT_AMX_BF16, "amx_bf16", "amx_tile"},
    };
    printf("features:");
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        const int want = cpuinfo_flag(map[i].a) == 1 && (!map[i].b || cpuinfo_flag(map[i].b) == 1);
        printf(" %s=%d", cpu_feature_name(map[i].f), cpu_has_detected(map[i].f));
        if (cpu_has_detected(map[i].f) != want)
            fail_msg("%s: detected %d, /proc/cpuinfo says %d", cpu_feature_name(map[i].f),
                     cpu_has_detected(map[i].f), want);
    }
    printf("\nbest level %s\n", cpu_isa_name(cpu_isa_best()));
    /* the best level from the flags */
    int want = ISA_GENERIC;
    if (cpuinfo_flag("avx2") == 1 && cpuinfo_flag("fma") == 1) {
        want = ISA_AVX2;
        if (cpuinfo_flag("avx512f") == 1) want = cpuinfo_flag("avx512_bf16") == 1 ? ISA_AVX512_BF16 : ISA_AVX512;
    }
    assert_int_equal(cpu_isa_best(), want);
}

static void body_levels(cpu_isa_level l, void *ctx)
{
    (void)ctx;
    assert_int_equal(cpu_isa(), l);
    for (int f = 0; f < CPU_FEAT_COUNT; f++) {
        const int want = cpu_has_detected((cpu_feature)f) && l >= cpu_feature_level((cpu_feature)f);
        assert_int_equal(cpu_has((cpu_feature)f), want);
    }
    /* generic hides everything, avx2 every AVX-512 feature, avx512 the BF16 dot and AMX */
    if (l == ISA_GENERIC)
        for (int f = 0; f < CPU_FEAT_COUNT; f++) assert_false(cpu_has((cpu_feature)f));
    if (l <= ISA_AVX2) {
        assert_false(cpu_has(CPU_FEAT_AVX512F));
        assert_false(cpu_has(CPU_FEAT_AVX512_VNNI));
        assert_false(cpu_has(CPU_FEAT_AVX512_BF16));
    }
    if (l <= ISA_AVX512) assert_false(cpu_has(CPU_FEAT_AMX_BF16)); /* AMX comes with avx512-bf16 */
    if (l == ISA_AVX512) {
        assert_false(cpu_has(CPU_FEAT_AVX512_BF16));
        /* VNNI is not ordered with BF16: it stays whatever the CPU has */
        assert_int_equal(cpu_has(CPU_FEAT_AVX512_VNNI), cpu_has_detected(CPU_FEAT_AVX512_VNNI));
    }
}

static void test_forced_levels(void **state)
{
    (void)state;
    const int n = isa_levels_each("cpu_features", body_levels, NULL);
    assert_int_equal(n, (int)cpu_isa_best() + 1);
    /* forcing never raises */
    cpu_isa_force(ISA_TOP);
    assert_int_equal(cpu_isa(), cpu_isa_best());
    /* undoing the force gives the environment's choice back: Q35_ISA lowers, never raises */
    cpu_isa_force(ISA_AUTO);
    const cpu_isa_level env = cpu_isa_parse(getenv("Q35_ISA"));
    assert_int_equal(cpu_isa(), env != ISA_AUTO && env < cpu_isa_best() ? env : cpu_isa_best());
}

static void test_names_and_env(void **state)
{
    (void)state;
    for (int l = ISA_GENERIC; l <= ISA_TOP; l++)
        assert_int_equal(cpu_isa_parse(cpu_isa_name((cpu_isa_level)l)), l);
    assert_int_equal(cpu_isa_parse("avx512_bf16"), ISA_AVX512_BF16);
    assert_int_equal(cpu_isa_parse("avx9"), ISA_AUTO);
    assert_int_equal(cpu_isa_parse(NULL), ISA_AUTO);
    assert_string_equal(cpu_isa_name(ISA_AVX512_BF16), "avx512-bf16");
    assert_string_equal(cpu_feature_name(CPU_FEAT_AVX512_BF16), "avx512_bf16");
    /* Q35_ISA lowers like cpu_isa_force; a forced level wins over it; unknown names are ignored */
    setenv("Q35_ISA", "generic", 1);
    assert_int_equal(cpu_isa(), ISA_GENERIC);
    assert_false(cpu_has(CPU_FEAT_AVX2_FMA));
    setenv("Q35_ISA", "avx512-bf16", 1);
    assert_int_equal(cpu_isa(), cpu_isa_best());
    setenv("Q35_ISA", "nonsense", 1);
    assert_int_equal(cpu_isa(), cpu_isa_best());
    if (cpu_isa_best() >= ISA_AVX2) {
        setenv("Q35_ISA", "avx2", 1);
        assert_int_equal(cpu_isa(), ISA_AVX2);
        cpu_isa_force(ISA_GENERIC);
        assert_int_equal(cpu_isa(), ISA_GENERIC);
        cpu_isa_force(ISA_AUTO);
    }
    unsetenv("Q35_ISA");
    assert_int_equal(cpu_isa(), cpu_isa_best());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detection_matches_cpuinfo),
        cmocka_unit_test(test_forced_levels),
        cmocka_unit_test(test_names_and_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
