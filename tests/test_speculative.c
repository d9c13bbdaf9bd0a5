/* test_speculative.c - cmocka suite for checkpoints, rollback and speculative
 * decoding (model/state.h, model/forward.h, model/speculative.h).
 *
 * Where expected values come from:
 *   - rollback: the same sequence computed the plain way (the kept tokens
 *     consumed by an ordinary forward call, no checkpoints, no rollback);
 *   - speculative decoding: plain greedy decoding (q35_generate) of the same
 *     model and implementations, which the speculative path must reproduce
 *     token for token whatever the drafts are.
 * Models: tiny-dense and tiny-moe written by q35_init_write (with their MTP
 * heads) into a scratch folder; hf-tiny-dense-bf16 (tests/data/model, made by
 * transformers, no mtp.*) for the missing-head error. */
#include "harness/impl_select.h"
#include "model/forward.h"
#include "model/generate.h"
#include "model/init.h"
#include "model/model.h"
#include "model/speculative.h"
#include "model/state.h"
#include "tests/support/tmpdir.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

typedef struct {
    char dir[128];
    q35_model dense, moe;
} fixture;

static int load_preset(fixture *f, const char *preset, q35_model *m)
{
    char d[256], err[512];
    snprintf(d, sizeof d, "%s/%s", f->dir, preset);
    q35_init_opts o = {.preset = preset, .seed = 7, .dtype = ST_F32, .threads = 1};
    if (q35_init_write(d, &o, NULL, err, sizeof err) || q35_model_load(d, &(q35_load_opts){0}, m, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", preset, err);
        return -1;
    }
    return 0;
}

static int setup(void **st)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f || test_tmpdir_make(f->dir, "q35_spec")) return -1;
    if (load_preset(f, "tiny-dense", &f->dense) || load_preset(f, "tiny-moe", &f->moe)) return -1;
    *st = f;
    return 0;
}

static int teardown(void **st)
{
    fixture *f = *st;
    q35_model_free(&f->dense);
    q35_model_free(&f->moe);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir); /* the presets wrote sub-folders */
    if (system(cmd) != 0) return -1;
    free(f);
    return 0;
}

static q35_impls impls(const char *spec)
{
    q35_impls im;
    q35_impls_default(&im);
    char err[256];
    if (spec && q35_impls_parse(spec, &im, err, sizeof err)) fail_msg("%s", err);
    im.threads = 1;
    return im;
}

/* Two sequences consume a prompt, then 5 tokens with 4 checkpoints, then keep
 * 2 and 4 of those; the next decode step must see what a plain run that
 * consumed only the kept tokens sees. */
static void rollback_case(const q35_model *m, const char *spec, int T, const int32_t keep[2])
{
    const q35_impls im = impls(spec);
    const int V = m->cfg.vocab_size, B = 2;
    const int32_t prompt[2][6] = {{3, 1, 4, 1, 5, 9}, {2, 7, 1, 8, 0, 0}}, plen[2] = {6, 4};
    const int32_t more[2][5] = {{11, 12, 13, 14, 15}, {21, 22, 23, 24, 25}};
    char err[512];
    q35_state a, b;
    float *la = malloc(sizeof(float) * B * T * V), *lb = malloc(sizeof(float) * B * T * V);
    assert_non_null(la);
    assert_non_null(lb);
    assert_int_equal(q35_state_init(&a, &m->local, B, 32, err, sizeof err), 0);
    assert_int_equal(q35_state_init(&b, &m->local, B, 32, err, sizeof err), 0);
    assert_int_equal(q35_state_checkpoints(&a, T - 1, err, sizeof err), 0);
    assert_int_equal(q35_forward(m, &a, &im, 6, &prompt[0][0], plen, la, 0, err, sizeof err), 0);
    int32_t in[2 * 5];
    for (int s = 0; s < B; s++) memcpy(in + s * T, more[s], sizeof(int32_t) * T);
    assert_int_equal(q35_forward_opt(m, &a, &im, T, in, NULL, la,
                                     &(q35_fwd_opts){.all_logits = 1, .checkpoints = T - 1}, err, sizeof err), 0);
    assert_int_equal(q35_state_rollback(&a, keep, err, sizeof err), 0);
    /* plain: prompt, then the kept tokens in one call */
    int32_t kept[2][5] = {{0}};
    for (int s = 0; s < B; s++) memcpy(kept[s], more[s], sizeof(int32_t) * keep[s]);
    assert_int_equal(q35_forward(m, &b, &im, 6, &prompt[0][0], plen, lb, 0, err, sizeof err), 0);
    assert_int_equal(q35_forward(m, &b, &im, 5, &kept[0][0], keep, lb, 0, err, sizeof err), 0);
    for (int s = 0; s < B; s++) assert_int_equal(a.pos[s], b.pos[s]);
    /* the states themselves, normwise: the two ways differ in fp32 summation order only (the
     * GEMMs' and chunked kernels' results change in the last bits with the rows of a call, and
     * that reaches later layers' inputs) */
    for (int l = 0; l < a.n_layers; l++) {
        if (!a.delta[l]) continue;
        const struct { const float *x, *y; size_t n; const char *what; } part[2] = {
            {a.delta[l], b.delta[l], a.delta_elems, "delta state"}, {a.conv[l], b.conv[l], a.conv_elems, "conv window"}};
        for (int k = 0; k < 2; k++) {
            double d2 = 0, n2 = 0;
            for (size_t i = 0; i < part[k].n; i++) {
                d2 += (double)(part[k].x[i] - part[k].y[i]) * (part[k].x[i] - part[k].y[i]);
                n2 += (double)part[k].y[i] * part[k].y[i];
            }
            if (sqrt(d2) > 1e-4 * sqrt(n2)) fail_msg("%s: layer %d: %s differs by %g normwise", spec, l, part[k].what, sqrt(d2 / n2));
        }
    }
    /* the next step */
    const int32_t next[2] = {30, 31};
    assert_int_equal(q35_forward(m, &a, &im, 1, next, NULL, la, 0, err, sizeof err), 0);
    assert_int_equal(q35_forward(m, &b, &im, 1, next, NULL, lb, 0, err, sizeof err), 0);
    for (int s = 0; s < B; s++) {
        double worst = 0, scale = 0;
        for (int v = 0; v < V; v++) {
            worst = fmax(worst, fabs(la[s * V + v] - lb[s * V + v]));
            scale = fmax(scale, fabs(lb[s * V + v]));
        }
        if (worst > 1e-4 * (1 + scale)) fail_msg("%s: sequence %d: logits after the rollback differ by %g", spec, s, worst);
        assert_int_equal(q35_argmax(la + s * V, V), q35_argmax(lb + s * V, V));
    }
    /* keeping more than the call consumed is refused, and changes nothing */
    const int32_t too_many[2] = {6, 1};
    q35_forward_opt(m, &a, &im, 2, &more[0][0], NULL, la, &(q35_fwd_opts){.checkpoints = 1}, err, sizeof err);
    const int32_t pos0 = a.pos[0];
    assert_int_equal(q35_state_rollback(&a, too_many, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot keep"));
    assert_int_equal(a.pos[0], pos0);
    q35_state_free(&a);
    q35_state_free(&b);
    free(la);
    free(lb);
}

static void test_rollback(void **st)
{
    fixture *f = *st;
    const char *specs[] = {"default", "deltarule=recurrent", "deltarule=chunked", "deltarule=chunked-blocked",
                           "deltarule=neumann", "deltarule=ref", "conv=ref"};
    q35_model hf;
    char err[512];
    assert_int_equal(q35_model_load("tests/data/model/hf-tiny-dense-bf16", &(q35_load_opts){0}, &hf, err, sizeof err), 0);
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        /* a verify window of 2 (N = 1) and of 5 (N = 4) */
        const int32_t k1[2] = {1, 1}, k5[2] = {2, 4};
        const q35_model *ms[3] = {&hf, &f->dense, &f->moe}; /* hf: GQA in the DeltaNet layers, Hv = 2 Hk */
        for (int j = 0; j < 3; j++) {
            rollback_case(ms[j], specs[i], 2, k1);
            rollback_case(ms[j], specs[i], 5, k5);
        }
    }
    q35_model_free(&hf);
}

/* Right-padded batch of two prompts; every source and N = 1..4 must give
 * plain greedy's tokens. */
static void spec_case(const q35_model *m, const char *impl, const char *source, int N)
{
    const q35_impls im = impls(impl);
    const int steps = 13, B = 2;
    const int32_t p0[] = {5, 6, 7, 8, 5, 6, 7, 9, 5, 6}, p1[] = {40, 41, 42};
    const int32_t *prompts[2] = {p0, p1};
    const int lens[2] = {10, 3};
    char err[512];
    int32_t plain[2 * 13], spec[2 * 13];
    assert_int_equal(q35_generate(m, &im, B, prompts, lens, steps, NULL, plain, NULL, NULL, err, sizeof err), 0);
    q35_spec_opts o = {.n_draft = N, .seed = 3, .oracle = plain};
    assert_int_equal(q35_draft_source_parse(source, &o, err, sizeof err), 0);
    q35_state s;
    assert_int_equal(q35_state_init(&s, &m->local, B, 10 + steps + N, err, sizeof err), 0);
    q35_spec_stats stt;
    if (q35_generate_speculative(m, &im, &s, prompts, lens, steps, &o, spec, &stt, err, sizeof err))
        fail_msg("%s %s N=%d: %s", impl, source, N, err);
    for (int i = 0; i < B * steps; i++)
        if (spec[i] != plain[i])
            fail_msg("%s, %s, draft %d: sequence %d step %d: %d instead of greedy's %d", impl, source, N, i / steps,
                     i % steps, spec[i], plain[i]);
    /* the counts add up: every output token after the first is a draft accepted or a verified one */
    assert_int_equal(stt.rows + stt.accepted, (long)B * (steps - 1));
    if (!strcmp(source, "oracle:1")) assert_int_equal(stt.accepted, stt.drafted);
    if (!strcmp(source, "oracle:0")) assert_int_equal(stt.accepted, 0);
    q35_state_free(&s);
}

static void test_speculative_equals_greedy(void **st)
{
    fixture *f = *st;
    const char *sources[] = {"oracle:0", "oracle:0.5", "oracle:0.9", "oracle:1", "ngram", "mtp"};
    for (int N = 1; N <= 4; N++)
        for (size_t s = 0; s < sizeof sources / sizeof sources[0]; s++) {
            spec_case(&f->dense, "default", sources[s], N);
            spec_case(&f->moe, "default", sources[s], N);
        }
    {
        q35_model hf;
        char err[512];
        assert_int_equal(q35_model_load("tests/data/model/hf-tiny-dense-bf16", &(q35_load_opts){0}, &hf, err, sizeof err), 0);
        for (int N = 1; N <= 4; N++) spec_case(&hf, "default", "oracle:0", N);
        q35_model_free(&hf);
    }
    const char *impl[] = {"deltarule=recurrent", "deltarule=chunked", "deltarule=neumann-dense", "deltarule=ref,conv=ref"};
    for (size_t i = 0; i < sizeof impl / sizeof impl[0]; i++) spec_case(&f->dense, impl[i], "oracle:0.6", 3);
}

static void test_mtp_missing(void **st)
{
    (void)st;
    q35_model m;
    char err[512];
    assert_int_equal(q35_model_load("tests/data/model/hf-tiny-dense-bf16", &(q35_load_opts){0}, &m, err, sizeof err), 0);
    assert_false(m.mtp.present);
    const q35_impls im = impls(NULL);
    const int32_t p[] = {1, 2, 3}, *prompts[1] = {p};
    const int lens[1] = {3};
    int32_t tok[4];
    q35_spec_opts o = {.source = Q35_DRAFT_MTP, .n_draft = 2};
    q35_state s;
    assert_int_equal(q35_state_init(&s, &m.local, 1, 16, err, sizeof err), 0);
    assert_int_equal(q35_generate_speculative(&m, &im, &s, prompts, lens, 4, &o, tok, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "no MTP head"));
    assert_int_equal(q35_draft_source_parse("oracle:1.5", &o, err, sizeof err), -1);
    assert_int_equal(q35_draft_source_parse("medusa", &o, err, sizeof err), -1);
    q35_state_free(&s);
    q35_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_speculative_equals_greedy),
        cmocka_unit_test(test_rollback),
        cmocka_unit_test(test_mtp_missing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
