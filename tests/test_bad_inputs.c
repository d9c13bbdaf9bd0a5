/* The inputs the fuzzers found (tests/fuzz/, tests/data/bad/<target>-<what>):
 * each reader now refuses each of them with a named one-line error, the
 * exact message below.  tests/fuzz/run.sh also replays them under the
 * sanitizers before every fuzzing run. */
#include "common/safetensors.h"
#include "model/config.h"
#include "model/tokenizer.h"
#include "harness/deltarule_crossover.h"
#include "harness/deltarule_golden.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define BAD "tests/data/bad/"

static int read_config(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[1 << 16];
    const size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    q35_config c;
    return q35_config_parse(buf, n, path, &c, err, errlen);
}

static int read_safetensors(const char *path, char *err, size_t errlen)
{
    st_file f;
    const int rc = st_open(path, &f, err, errlen);
    st_close(&f);
    return rc;
}

static int read_golden_deltarule(const char *path, char *err, size_t errlen)
{
    dr_golden g;
    const int rc = dr_golden_load(path, &g, err, errlen);
    if (!rc) dr_golden_free(&g);
    return rc;
}

static int read_crossover(const char *path, char *err, size_t errlen)
{
    deltarule_crossover x;
    return dr_crossover_load(path, &x, err, errlen);
}

static int read_tokenizer(const char *path, char *err, size_t errlen)
{
    q35_tokenizer *t = q35_tokenizer_load(path, err, errlen);
    q35_tokenizer_free(t);
    return t ? 0 : -1;
}

static const struct {
    const char *file;
    int (*read)(const char *path, char *err, size_t errlen);
    const char *message;
} cases[] = {
    {BAD "fuzz_config-layer-type-with-newline.json", read_config,
     BAD "fuzz_config-layer-type-with-newline.json: field 'layer_types[2]' is \"linear?attention\", expected "
         "\"linear_attention\" or \"full_attention\""},
    {BAD "fuzz_safetensors-name-with-newline.safetensors", read_safetensors,
     BAD "fuzz_safetensors-name-with-newline.safetensors: tensor 'x?y': size mismatch: data_offsets span 4 bytes, "
         "shape [2] x F32 needs 8"},
    {BAD "fuzz_golden_deltarule-metadata-key-with-newline.safetensors", read_golden_deltarule,
     BAD "fuzz_golden_deltarule-metadata-key-with-newline.safetensors: tensor '__m?adata__': missing or non-string "
         "\"dtype\""},
    {BAD "fuzz_results_json-huge-number.json", read_crossover,
     BAD "fuzz_results_json-huge-number.json: points[0].Hv must be an integer in [1, 65536]"},
    /* its first added token decodes to nothing: the decode blob was never allocated (NULL + 0) */
    {BAD "fuzz_tokenizer_json-empty-first-decoded-token.json", read_tokenizer,
     BAD "fuzz_tokenizer_json-empty-first-decoded-token.json: merges[0]: '\u0120 \u0120' + '\u0120' (a part) is not in "
         "the vocabulary"},
};

static void test_each_finding_is_refused_by_name(void **state)
{
    (void)state;
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[512] = "";
        const int rc = cases[i].read(cases[i].file, err, sizeof err);
        if (rc != -1 || strcmp(err, cases[i].message)) {
            printf("%s: returned %d\n  got      '%s'\n  expected '%s'\n", cases[i].file, rc, err, cases[i].message);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_each_finding_is_refused_by_name)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
