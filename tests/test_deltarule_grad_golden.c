/* test_deltarule_grad_golden.c - cmocka suite for gradient golden files
 * (harness/deltarule_golden.h; format: ../shared/README.md, deltarule_grad).
 *
 * The expected gradients come from files made outside q35lab: the PyTorch
 * autograd dumps of ref/hf/dump_deltarule_grad_goldens.py
 * (tests/data/hf_deltarule_grad_*) and the independent float64
 * finite-difference samples of ../shared/golden-samples/deltarule_grad.
 * ref and every backward table entry (kernels/deltarule/deltarule_grad.h)
 * that claims every regime must pass each file element-wise with the file's
 * atol/rtol; a new table entry is covered without touching this file.  Files
 * with some but not all gradient tensors, or cut short, are refused.
 */
#include "common/safetensors.h"
#include "kernels/deltarule/deltarule_grad.h"
#include "ref/deltarule_grad_ref.h"
#include "harness/deltarule_golden.h"
#include "harness/deltarule_grad_check.h"
#include "tests/support/tmpdir.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROJECT_GLOB "tests/data/hf_deltarule_grad_*.safetensors"
#define SHARED_DIR "../shared/golden-samples/deltarule_grad"
#define SHARED_GLOB SHARED_DIR "/*.safetensors"
#define FORWARD_ONLY "tests/data/hf_deltarule_recurrent_t37_b1_h2_d16_l2.safetensors"
#define WITH_STATE "tests/data/hf_deltarule_grad_chunk_t130_b1_h1_d32_l2_state.safetensors"
#define WITHOUT_STATE "tests/data/hf_deltarule_grad_chunk_gqa_t65_b2_hk1_hv2_dk32_dv24_l2.safetensors"

static char tmpdir[128];

static int setup(void **state)
{
    (void)state;
    return test_tmpdir_make(tmpdir, "q35_grad_golden");
}

static int teardown(void **state)
{
    (void)state;
    return test_tmpdir_remove(tmpdir);
}

static void load(const char *path, dr_golden *g)
{
    char err[512];
    if (dr_golden_load(path, g, err, sizeof err)) fail_msg("dr_golden_load: %s", err);
}

/* Every gradient of impl inside the file's atol/rtol. */
static void expect_grads_pass(const dr_golden *g, const deltarule_grad_impl *im, const char *path)
{
    dr_golden_grad_result r;
    char err[512];
    if (dr_golden_grad_check(g, im, NULL, &r, err, sizeof err)) fail_msg("%s on %s: %s", im->name, path, err);
    for (int k = 0; k < DR_GRAD_COUNT; k++) {
        assert_int_equal(r.has[k], dr_grad_elems(&g->c.p, k) > 0);
        if (r.bad[k])
            fail_msg("%s on %s: %zu elements of %s outside %g + %g|e| (first at %zu; normwise %.3g, max %.3g)",
                     im->name, path, r.bad[k], dr_grad_name(k), g->atol, g->rtol, r.first_bad[k], r.e[k].normwise,
                     r.e[k].maxabs);
    }
}

/* ref and every table entry that claims every regime, on each file of pattern; returns the file count. */
static size_t check_glob(const char *pattern)
{
    glob_t gl;
    if (glob(pattern, 0, NULL, &gl)) return 0;
    size_t n = gl.gl_pathc;
    for (size_t f = 0; f < n; f++) {
        dr_golden g;
        load(gl.gl_pathv[f], &g);
        if (!g.has_grad) fail_msg("%s: no gradient tensors read", gl.gl_pathv[f]);
        int ran = 0;
        for (int i = 0; i < dr_grad_n_entries(); i++) {
            const deltarule_grad_impl *im = dr_grad_entry(i);
            if ((im->available && !im->available()) || (im->claims & DR_CLAIM_ALL) != DR_CLAIM_ALL) continue;
            expect_grads_pass(&g, im, gl.gl_pathv[f]);
            ran++;
        }
        assert_true(ran >= 2); /* ref and at least one kernel */
        dr_golden_free(&g);
    }
    globfree(&gl);
    return n;
}

static void test_project_grad_goldens(void **state)
{
    (void)state;
    assert_true(check_glob(PROJECT_GLOB) >= 4);
}

static void test_shared_grad_goldens(void **state)
{
    (void)state;
    if (access(SHARED_DIR, F_OK)) {
        print_message("note: %s not found; shared gradient samples not checked\n", SHARED_DIR);
        skip();
    }
    assert_true(check_glob(SHARED_GLOB) > 0);
}

/* A forward golden loads as before, without gradients, and the gradient check refuses it. */
static void test_forward_only_golden(void **state)
{
    (void)state;
    dr_golden g;
    load(FORWARD_ONLY, &g);
    assert_int_equal(g.has_grad, 0);
    assert_null(g.d_out);
    dr_golden_grad_result r;
    char err[256];
    assert_int_equal(dr_golden_grad_check(&g, &deltarule_grad_ref_impl, NULL, &r, err, sizeof err), -1);
    dr_golden_free(&g);
}

/* Rewrites a loaded gradient golden with the safetensors writer, leaving out `skip` (NULL: nothing). */
static void rewrite(const dr_golden *g, const char *path, const char *skip, int drop_initial_state)
{
    const deltarule_problem *p = &g->c.p;
    const int64_t sqk[] = {p->B, p->T, p->Hk, p->Dk}, sv[] = {p->B, p->T, p->Hv, p->Dv};
    const int64_t sg[] = {p->B, p->T, p->Hv}, ss[] = {p->B, p->Hv, p->Dk, p->Dv};
    const struct { const char *name; int nd; const int64_t *shape; const float *data; } t[] = {
        {"q", 4, sqk, p->q}, {"k", 4, sqk, p->k}, {"v", 4, sv, p->v}, {"g", 3, sg, p->g}, {"beta", 3, sg, p->beta},
        {"initial_state", 4, ss, drop_initial_state ? NULL : p->initial_state},
        {"out", 4, sv, g->expect_out}, {"final_state", 4, ss, g->expect_state},
        {"d_out", 4, sv, g->d_out}, {"d_final_state", 4, ss, g->d_final_state},
        {"dq", 4, sqk, g->expect_grad[DR_GRAD_DQ]}, {"dk", 4, sqk, g->expect_grad[DR_GRAD_DK]},
        {"dv", 4, sv, g->expect_grad[DR_GRAD_DV]}, {"dg", 3, sg, g->expect_grad[DR_GRAD_DG]},
        {"dbeta", 3, sg, g->expect_grad[DR_GRAD_DBETA]},
        {"d_initial_state", 4, ss, g->expect_grad[DR_GRAD_DH0]}};
    st_writer *w = st_writer_new();
    assert_non_null(w);
    int rc = 0;
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        if (t[i].data && !(skip && !strcmp(skip, t[i].name)))
            rc = rc || st_writer_add(w, t[i].name, ST_F32, t[i].nd, t[i].shape, t[i].data);
    rc = rc || st_writer_meta(w, "use_qk_l2norm", p->use_qk_l2norm ? "1" : "0");
    if (rc) fail_msg("st_writer: %s", st_writer_error(w));
    char err[512];
    if (st_writer_write(w, path, err, sizeof err)) fail_msg("st_writer_write: %s", err);
    st_writer_free(w);
}

static void expect_refused(const char *path, const char *word1, const char *word2)
{
    dr_golden g;
    char err[512] = "";
    if (dr_golden_load(path, &g, err, sizeof err) != -1) {
        dr_golden_free(&g);
        fail_msg("%s loaded; expected a refusal naming %s", path, word1);
    }
    if (!strstr(err, word1) || (word2 && !strstr(err, word2)))
        fail_msg("the refusal does not name %s%s%s: %s", word1, word2 ? " and " : "", word2 ? word2 : "", err);
}

/* Each required gradient tensor left out in turn: refused, naming it; the
 * intact rewrite loads and passes ref. */
static void test_incomplete_refused(void **state)
{
    (void)state;
    char path[256];
    test_tmpdir_path(path, sizeof path, tmpdir, "incomplete.safetensors");
    dr_golden g;
    load(WITH_STATE, &g);
    rewrite(&g, path, NULL, 0);
    dr_golden back;
    load(path, &back);
    assert_int_equal(back.has_grad, 1);
    expect_grads_pass(&back, &deltarule_grad_ref_impl, path);
    dr_golden_free(&back);
    static const char *const need[] = {"d_out", "dq", "dk", "dv", "dg", "dbeta"};
    for (size_t i = 0; i < sizeof need / sizeof *need; i++) {
        rewrite(&g, path, need[i], 0);
        char quoted[32];
        snprintf(quoted, sizeof quoted, "not %s", need[i]);
        expect_refused(path, "incomplete gradient golden", quoted);
    }
    rewrite(&g, path, "d_initial_state", 0); /* an initial state without its gradient */
    expect_refused(path, "incomplete gradient golden", "'d_initial_state'");
    rewrite(&g, path, NULL, 1);             /* a gradient of an initial state the file does not have */
    expect_refused(path, "'d_initial_state'", "'initial_state'");
    dr_golden_free(&g);

    /* a file with no initial state needs no d_initial_state, and d_final_state is optional */
    load(WITHOUT_STATE, &g);
    assert_null(g.expect_grad[DR_GRAD_DH0]);
    rewrite(&g, path, "d_final_state", 0);
    load(path, &back);
    assert_int_equal(back.has_grad, 1);
    assert_null(back.d_final_state);
    dr_golden_free(&back);
    dr_golden_free(&g);
}

/* The gradient golden cut short at several lengths: refused (by the header
 * or the offsets check), never read past its end. */
static void test_truncated_refused(void **state)
{
    (void)state;
    FILE *f = fopen(WITH_STATE, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)size);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    char path[256];
    test_tmpdir_path(path, sizeof path, tmpdir, "truncated.safetensors");
    const long cut[] = {4, 100, size / 2, size - 4};
    for (size_t i = 0; i < sizeof cut / sizeof *cut; i++) {
        FILE *o = fopen(path, "wb");
        assert_non_null(o);
        assert_int_equal(fwrite(buf, 1, (size_t)cut[i], o), (size_t)cut[i]);
        fclose(o);
        dr_golden g;
        char err[512] = "";
        if (dr_golden_load(path, &g, err, sizeof err) != -1) {
            dr_golden_free(&g);
            fail_msg("a gradient golden cut to %ld of %ld bytes loaded", cut[i], size);
        }
        assert_true(strlen(err) > 0);
    }
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_project_grad_goldens),
        cmocka_unit_test(test_shared_grad_goldens),
        cmocka_unit_test(test_forward_only_golden),
        cmocka_unit_test(test_incomplete_refused),
        cmocka_unit_test(test_truncated_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
