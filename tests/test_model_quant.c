/* test_model_quant.c - the model with quantized weights (--weights q8|q4 [--quant-only ...];
 * docs/quantization.md §5).
 *
 * For each test checkpoint, weight type and family subset: the families report the type asked
 * for (and the others keep the checkpoint's), every matrix pointer of a quantized family lies in
 * the quantized arena, the decode bytes shrink as the formats say (34/32 or 18/32 bytes per
 * weight), and the kernels (default and multi-threaded implementations) produce the reference
 * path's greedy tokens on the same quantized weights, 100%, teacher-forced as validate does:
 * ref/ reads the same blocks through q35_w_at in double.  Expected tokens come from ref/.
 * On the MoE checkpoints the router and the shared-expert gate must keep the checkpoint's dtype and
 * bytes whatever is quantized (test_router_unquantized).
 */
#include "harness/impl_select.h"
#include "harness/model_validate.h"
#include "model/fingerprint.h"
#include "model/model.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const ckpts[] = {"tests/data/model/hf-tiny-dense-bf16", "tests/data/model/hf-tiny-moe-f32",
                                    "tests/data/model/hf-tiny-mtp-moe-bf16"};

static void load(const char *dir, q35_wtype q, unsigned fam, q35_model *m)
{
    char err[512];
    q35_load_opts o = {.quant = q, .quant_families = fam};
    if (q35_model_load(dir, &o, m, err, sizeof err)) fail_msg("load %s: %s", dir, err);
}

static void check_one(const char *dir, q35_wtype q, unsigned fam)
{
    q35_model full, m;
    load(dir, WT_F32, 0, &full);
    load(dir, q, fam, &m);
    const unsigned want = fam ? fam : (1u << Q35_WF_COUNT) - 1;
    for (int f = 0; f < Q35_WF_COUNT; f++) {
        const int present = f == Q35_WF_MLP ? !m.cfg.is_moe : f == Q35_WF_MOE ? m.cfg.is_moe : 1;
        const q35_wtype got = q35_model_wt(&m, (q35_wfamily)f);
        if (!present || !((want >> f) & 1u)) {
            assert_int_equal(got, full.wt);
        } else if (q35_wtype_is_r16(q)) {
            /* interleaved where every matrix of the family has a multiple of 16 rows (docs/quantization.md
             * §8): in the tiny checkpoints the DeltaNet b / a projections have 4 rows; attention, mlp,
             * lm_head (256 rows) and moe (hidden 64, expert and shared intermediate sizes 32) multiples of 16 */
            const int inter = f != Q35_WF_DELTANET;
            assert_int_equal(got, inter ? q : q35_wtype_block(q));
        } else {
            assert_int_equal(got, q);
        }
    }
    /* pointers: a quantized family's matrices live in the quantized arena, the others do not */
    const q35_layer *L = &m.layers[0]; /* layer 0 is linear attention in every test checkpoint */
    assert_int_equal(q35_model_matrix_wt(&m, L->in_proj_qkv), q35_model_wt(&m, Q35_WF_DELTANET));
    assert_int_equal(q35_model_matrix_wt(&m, m.lm_head), q35_model_wt(&m, Q35_WF_LM_HEAD));
    assert_int_equal(q35_model_matrix_wt(&m, m.embed), full.wt); /* the embedding is never quantized */
    if (!fam) assert_true(q35_model_decode_bytes(&m) < q35_model_decode_bytes(&full));
    /* the reference path on the quantized weights, then the kernels teacher-forced on its tokens */
    char err[512];
    q35_prompts p;
    if (q35_prompts_default(m.cfg.vocab_size, &p, err, sizeof err)) fail_msg("%s", err);
    p.steps = 8;
    int32_t *tok = NULL;
    float *lg = NULL;
    if (q35_reference_run(&m, &p, &tok, &lg, err, sizeof err)) fail_msg("reference run: %s", err);
    static const char *const specs[] = {"default", "linear=tiled,moe=per_token", "moe=blockwise,deltarule=chunked"};
    for (size_t s = 0; s < sizeof specs / sizeof *specs; s++) {
        q35_impls im = {0};
        if (q35_impls_parse(specs[s], &im, err, sizeof err)) fail_msg("%s", err);
        for (int th = 1; th <= 2; th++) {
            im.threads = th;
            q35_match r;
            if (q35_validate_against(&m, &im, &p, tok, lg, &r, err, sizeof err)) fail_msg("validate: %s", err);
            if (r.match != r.total)
                fail_msg("%s %s families %#x impl %s threads %d: %ld/%ld tokens match the reference path", dir,
                         q35_wtype_name(q), want, specs[s], th, r.match, r.total);
            /* the kernels are exact to fp32 sums on the same weights: logits agree to fp32 accuracy */
            assert_true(r.max_dlogit <= 1e-3 * (1 + r.max_ref_logit));
        }
    }
    free(tok);
    free(lg);
    q35_prompts_free(&p);
    q35_model_free(&m);
    q35_model_free(&full);
}

static void test_all_families(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof ckpts / sizeof *ckpts; c++) {
        check_one(ckpts[c], WT_Q8_0, 0);
        check_one(ckpts[c], WT_Q4_0, 0);
        check_one(ckpts[c], WT_Q8_0_R16, 0);
        check_one(ckpts[c], WT_Q4_0_R16, 0);
    }
}

/* Interleaving is a layout, not another model (docs/quantization.md §8): the same checkpoint quantized
 * in rows and interleaved gives the same model fingerprint (it hashes the dequantized values) and the
 * reference path, which reads every element through q35_w_rc in double in a fixed order, the same
 * logits bit for bit.  A permuted row or element in the packing or the accessor changes both. */
static void test_r16_same_model(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof ckpts / sizeof *ckpts; c++)
        for (int w = 0; w < 2; w++) {
            const q35_wtype rows = w ? WT_Q4_0 : WT_Q8_0;
            q35_model a, b;
            load(ckpts[c], rows, 0, &a);
            load(ckpts[c], q35_wtype_r16(rows), 0, &b);
            assert_int_equal(q35_model_wt(&b, Q35_WF_LM_HEAD), q35_wtype_r16(rows));
            assert_int_equal(q35_model_wt(&a, Q35_WF_LM_HEAD), rows);
            char err[512];
            q35_hash128 ha, hb;
            if (q35_model_fingerprint(&a, &ha, err, sizeof err) || q35_model_fingerprint(&b, &hb, err, sizeof err))
                fail_msg("fingerprint: %s", err);
            assert_true(q35_hash128_equal(ha, hb));
            q35_prompts p;
            if (q35_prompts_default(a.cfg.vocab_size, &p, err, sizeof err)) fail_msg("%s", err);
            p.steps = 4;
            int32_t *ta = NULL, *tb = NULL;
            float *la = NULL, *lb = NULL;
            if (q35_reference_run(&a, &p, &ta, &la, err, sizeof err) || q35_reference_run(&b, &p, &tb, &lb, err, sizeof err))
                fail_msg("reference run: %s", err);
            const size_t nl = (size_t)p.n * (size_t)p.steps * (size_t)a.cfg.vocab_size;
            assert_memory_equal(la, lb, nl * sizeof *la);
            free(ta), free(tb), free(la), free(lb);
            q35_prompts_free(&p);
            q35_model_free(&a);
            q35_model_free(&b);
        }
}

static void test_subsets(void **state)
{
    (void)state;
    static const unsigned subsets[] = {1u << Q35_WF_DELTANET, 1u << Q35_WF_ATTENTION, 1u << Q35_WF_MOE,
                                       1u << Q35_WF_LM_HEAD, (1u << Q35_WF_MLP) | (1u << Q35_WF_ATTENTION)};
    for (size_t s = 0; s < sizeof subsets / sizeof *subsets; s++) {
        check_one(ckpts[1], WT_Q4_0, subsets[s]);
        check_one(ckpts[0], WT_Q8_0, subsets[s]);
        check_one(ckpts[0], WT_Q4_0_R16, subsets[s]);
    }
}

/* The MoE router ([E, H]) and the shared-expert gate ([1, H]) are never quantized (docs/quantization.md §5:
 * a quantization error there flips which experts run): under every family subset that quantizes the experts
 * they stay in the checkpoint's dtype, with the checkpoint's very bytes, in every layer and the MTP head's,
 * while the experts around them are quantized; and the decode bytes count them at that dtype. */
static void router_stays(const char *dir, q35_wtype q, unsigned fam)
{
    q35_model full, m;
    load(dir, WT_F32, 0, &full);
    load(dir, q, fam, &m);
    assert_true(m.cfg.is_moe && m.cfg.shared_expert_intermediate_size > 0);
    assert_int_equal(q35_model_wt(&m, Q35_WF_MOE), q); /* the experts are quantized... */
    const q35_config *c = &m.cfg;
    const int H = c->hidden_size, E = c->num_experts;
    const size_t esz = full.wt == WT_BF16 ? 2 : 4; /* the checkpoint's element size (F32 or BF16 here) */
    const int nl = c->num_hidden_layers + (m.mtp.present ? 1 : 0);
    for (int l = 0; l < nl; l++) {
        const q35_layer *L = l < c->num_hidden_layers ? &m.layers[l] : &m.mtp.layer;
        const q35_layer *F = l < c->num_hidden_layers ? &full.layers[l] : &full.mtp.layer;
        assert_int_equal(q35_model_matrix_wt(&m, L->experts_gate_up), q);
        assert_int_equal(q35_model_matrix_wt(&m, L->shared_up), q);
        /* ...the router and the shared-expert gate are not: same dtype, same bytes as the checkpoint's */
        if (q35_model_matrix_wt(&m, L->router) != full.wt)
            fail_msg("%s %s families %#x layer %d: the MoE router was quantized (%s)", dir, q35_wtype_name(q), fam, l,
                     q35_wtype_name(q35_model_matrix_wt(&m, L->router)));
        if (q35_model_matrix_wt(&m, L->shared_expert_gate) != full.wt)
            fail_msg("%s %s families %#x layer %d: the shared-expert gate was quantized", dir, q35_wtype_name(q), fam, l);
        assert_memory_equal(L->router, F->router, (size_t)E * H * esz);
        assert_memory_equal(L->shared_expert_gate, F->shared_expert_gate, (size_t)H * esz);
    }
    if (fam == 1u << Q35_WF_MOE) {
        /* only the experts and the shared expert change dtype: per layer 3 k I + 3 Is rows of H weights read,
         * at 34 (Q8_0) or 18 (Q4_0) bytes per 32 instead of esz bytes each */
        const double w = (3.0 * c->num_experts_per_tok * c->moe_intermediate_size + 3.0 * c->shared_expert_intermediate_size) *
                         H * c->num_hidden_layers;
        const double per = (q == WT_Q8_0 ? 34.0 : 18.0) / 32.0;
        const double want = (double)q35_model_decode_bytes(&full) - w * ((double)esz - per);
        assert_true(fabs((double)q35_model_decode_bytes(&m) - want) <= 1.0);
    }
    q35_model_free(&m);
    q35_model_free(&full);
}

static void test_router_unquantized(void **state)
{
    (void)state;
    static const unsigned subsets[] = {0, 1u << Q35_WF_MOE, (1u << Q35_WF_MOE) | (1u << Q35_WF_LM_HEAD)};
    for (size_t c = 1; c < sizeof ckpts / sizeof *ckpts; c++) /* the MoE checkpoints */
        for (size_t s = 0; s < sizeof subsets / sizeof *subsets; s++) {
            router_stays(ckpts[c], WT_Q8_0, subsets[s]);
            router_stays(ckpts[c], WT_Q4_0, subsets[s]);
        }
}

static void test_family_parse(void **state)
{
    (void)state;
    unsigned m;
    char err[256];
    assert_int_equal(q35_wfamily_parse("moe,lm_head", &m, err, sizeof err), 0);
    assert_int_equal(m, (1u << Q35_WF_MOE) | (1u << Q35_WF_LM_HEAD));
    assert_int_equal(q35_wfamily_parse("all", &m, err, sizeof err), 0);
    assert_int_equal(m, (1u << Q35_WF_COUNT) - 1);
    assert_int_equal(q35_wfamily_parse("moe,experts", &m, err, sizeof err), -1);
    assert_non_null(strstr(err, "experts"));
    assert_int_equal(q35_wfamily_parse("", &m, err, sizeof err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_family_parse),
        cmocka_unit_test(test_router_unquantized),
        cmocka_unit_test(test_all_families),
        cmocka_unit_test(test_subsets),
        cmocka_unit_test(test_r16_same_model),
    };
    return cmocka_run_group_tests_name("model_quant", tests, NULL, NULL);
}
