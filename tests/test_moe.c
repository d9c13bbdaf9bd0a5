/* test_moe.c - cmocka suite for the MoE family (kernels/moe/, spec in
 * docs/moe.md and ref/moe_ref.c).
 *
 * Every check compares an implementation against `ref` (the double-precision
 * reference with its own double router) or against facts the test derives
 * from the problem itself (which expert cannot be chosen, which ones tie);
 * never against another output of the kernel under test.  Implementations
 * come from moe_impls[] (every kernel; ref/ is the yardstick; if available on this CPU), so a new
 * table entry is tested without touching this file.  Each is held to its
 * tol_f32 / tol_bf16 (normwise error of out, harness/metrics.h); top-k ids
 * are compared as sets per token, (id, weight) pairs matched by id.
 *
 * Groups: grid (shapes x weight dtypes, generic ISA, odd sizes, a moderate
 * Qwen-like case), routing (empty expert, one expert, ties, norm_topk_prob, the router
 * itself), layout and options (fused gate_up, optional outputs, threads,
 * block sizes, determinism), golden files, invalid problems and counters.
 */
#include "common/safetensors.h"
#include "common/sde_counters.h"
#include "kernels/cpu_features.h"
#include "kernels/moe/moe.h"
#include "ref/moe_ref.h"
#include "harness/metrics.h"
#include "harness/moe_golden.h"
#include "harness/moe_inputs.h"
#include "tests/support/tmpdir.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_IMPLS 32
#define SHARED_GOLDEN_DIR "../shared/golden-samples/moe"
#define SHARED_GOLDEN_GLOB SHARED_GOLDEN_DIR "/*.safetensors"

/* ------------------------------------------------------------------ */
/* Implementations                                                      */
/* ------------------------------------------------------------------ */

static const moe_impl *ref_impl(void)
{
    const moe_impl *r = &moe_ref_impl;
    assert_non_null(r);
    return r;
}

/* The entries under test: every kernel (ref first if include_ref), if available. */
static int list_impls(const moe_impl **out, int include_ref)
{
    assert_true(moe_n_impls <= MAX_IMPLS);
    int n = 0;
    if (include_ref) out[n++] = ref_impl();
    for (int i = 0; i < moe_n_impls; i++) {
        const moe_impl *im = &moe_impls[i];
        if (im->available && !im->available()) continue;
        out[n++] = im;
    }
    assert_true(n > include_ref); /* never vacuous */
    return n;
}

static double tol_of(const moe_impl *im, q35_wtype wt) { return wt == WT_BF16 ? im->tol_bf16 : im->tol_f32; }

/* ------------------------------------------------------------------ */
/* Problems, outputs and runs                                           */
/* ------------------------------------------------------------------ */

static moe_shape shape(int T, int hidden, int E, int k, int I, int Is, q35_wtype wt)
{
    return (moe_shape){.T = T, .hidden = hidden, .E = E, .top_k = k, .inter = I, .inter_shared = Is,
                       .norm_topk_prob = 1, .wt = wt, .routing = MOE_ROUTING_RANDOM};
}

static const char *shape_str(const moe_problem *p)
{
    static char buf[160];
    snprintf(buf, sizeof buf, "T%d H%d E%d k%d I%d Is%d %s%s%s", p->T, p->hidden, p->E, p->top_k, p->inter,
             p->inter_shared, moe_wtype_name(p->wt), p->expert_stride_gu ? " fused" : "",
             p->norm_topk_prob ? "" : " no-norm");
    return buf;
}

static void make_case(moe_case *c, moe_shape s, unsigned long seed)
{
    char err[256];
    if (moe_case_make(c, &s, seed, err, sizeof err)) fail_msg("moe_case_make: %s", err);
}

/* The outputs of one run. */
typedef struct {
    float *out, *w, *logits;
    int32_t *ids;
    moe_stats st;
    size_t th, tk, te;
} outputs;

static outputs outputs_alloc(const moe_problem *p)
{
    outputs o = {.th = (size_t)p->T * p->hidden, .tk = (size_t)p->T * p->top_k, .te = (size_t)p->T * p->E};
    assert_int_equal(moe_alloc_outputs(p, &o.out, &o.ids, &o.w, &o.logits), 0);
    return o;
}

static void outputs_free(outputs *o)
{
    free(o->out); free(o->w); free(o->logits); free(o->ids);
    memset(o, 0, sizeof *o);
}

/* Runs im on p with every output redirected to o, first filled with NaN / -1
 * so that an entry left unwritten fails the comparisons. */
static void run_into(const moe_impl *im, const moe_problem *p, const moe_opts *opts, outputs *o)
{
    moe_problem q = *p;
    q.out = o->out; q.topk_ids = o->ids; q.topk_weights = o->w; q.router_logits = o->logits;
    for (size_t i = 0; i < o->th; i++) o->out[i] = NAN;
    for (size_t i = 0; i < o->tk; i++) { o->ids[i] = -1; o->w[i] = NAN; }
    for (size_t i = 0; i < o->te; i++) o->logits[i] = NAN;
    char err[256];
    if (moe_run(im, &q, opts, &o->st, err, sizeof err)) fail_msg("%s on %s: %s", im->name, shape_str(p), err);
}

static outputs ref_outputs(const moe_problem *p)
{
    outputs r = outputs_alloc(p);
    run_into(ref_impl(), p, NULL, &r);
    return r;
}

/* x against the reference r: out within tol (normwise), the same expert
 * set for every token, (id, weight) pairs within tol, logits within
 * 1e-5 + 1e-4|l|, and the same moe_stats (rows, experts touched, max load). */
static void expect_matches_ref(const moe_impl *im, const moe_problem *p, const outputs *x, const outputs *r,
                               double tol, const char *what)
{
    moe_compare c;
    moe_compare_outputs(p, x->out, x->ids, x->w, x->logits, r->out, r->ids, r->w, r->logits, 1e-5, 1e-4, &c);
    if (!(c.out.normwise <= tol))
        fail_msg("%s, %s, %s: normwise error %.3g > tolerance %.3g (%zu non-finite)", im->name, what, shape_str(p),
                 c.out.normwise, tol, c.out.nonfinite);
    if (c.bad_ids)
        fail_msg("%s, %s, %s: %zu tokens chose other experts than ref (first: token %d)", im->name, what,
                 shape_str(p), c.bad_ids, c.first_bad_token);
    if (!(c.max_weight_err <= tol))
        fail_msg("%s, %s, %s: top-k weight error %.3g > %.3g", im->name, what, shape_str(p), c.max_weight_err, tol);
    if (c.bad_logits)
        fail_msg("%s, %s, %s: %zu router logits off ref's (max error %.3g)", im->name, what, shape_str(p),
                 c.bad_logits, c.max_logit_err);
    if (x->st.rows != r->st.rows || x->st.experts_touched != r->st.experts_touched || x->st.max_load != r->st.max_load)
        fail_msg("%s, %s, %s: moe_stats rows/touched/max_load %lld/%d/%d, ref %lld/%d/%d", im->name, what,
                 shape_str(p), x->st.rows, x->st.experts_touched, x->st.max_load, r->st.rows, r->st.experts_touched,
                 r->st.max_load);
}

/* Every implementation against ref on p. */
static void all_vs_ref(const moe_problem *p, const moe_opts *opts, const char *what)
{
    const moe_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 0);
    outputs r = ref_outputs(p), x = outputs_alloc(p);
    for (int i = 0; i < n; i++) {
        run_into(impls[i], p, opts, &x);
        expect_matches_ref(impls[i], p, &x, &r, tol_of(impls[i], p->wt), what);
    }
    outputs_free(&x);
    outputs_free(&r);
}

static void case_vs_ref(moe_shape s, unsigned long seed, const char *what)
{
    moe_case c;
    make_case(&c, s, seed);
    all_vs_ref(&c.p, NULL, what);
    moe_case_free(&c);
}

/* ------------------------------------------------------------------ */
/* Grid                                                                 */
/* ------------------------------------------------------------------ */

static const int grid_T[] = {1, 2, 7, 64, 333};
static const int grid_E[] = {1, 8, 64};
static const int grid_k[] = {1, 2, 8};

/* T x E x k (k <= E) x {f32, bf16}, hidden 64, I 32, Is 32 (0 on odd T
 * indices), skew 0 and 0.9 alternating: every implementation against ref. */
static void grid(const int *Ts, int nT)
{
    for (int ti = 0; ti < nT; ti++)
        for (int ei = 0; ei < 3; ei++)
            for (int ki = 0; ki < 3; ki++) {
                if (grid_k[ki] > grid_E[ei]) continue;
                for (int d = 0; d < 2; d++) {
                    moe_shape s = shape(Ts[ti], 64, grid_E[ei], grid_k[ki], 32, ti % 2 ? 0 : 32, d ? WT_BF16 : WT_F32);
                    s.skew = (ti + ei + ki) % 2 ? 0.9 : 0.0;
                    case_vs_ref(s, 1000u + (unsigned long)(ti * 9 + ei * 3 + ki), s.skew > 0 ? "grid, skew 0.9" : "grid");
                }
            }
}

static void test_grid_default(void **state)
{
    (void)state;
    grid(grid_T, 5);
}

static int force_generic_isa(void **state)
{
    (void)state;
    cpu_isa_force(ISA_GENERIC);
    return 0;
}

static int restore_isa(void **state)
{
    (void)state;
    cpu_isa_force(ISA_AUTO);
    return 0;
}

/* The same (T in 1, 7, 64) with the generic C matmul forced. */
static void test_grid_generic_isa(void **state)
{
    (void)state;
    static const int Ts[] = {1, 7, 64};
    grid(Ts, 3);
}

/* Dimensions that are multiples of no SIMD width or block: hidden 37,
 * I 13, Is 7, E 5 with k = E. */
static void test_grid_odd_sizes(void **state)
{
    (void)state;
    static const int Ts[] = {1, 7, 64};
    static const int Ek[][2] = {{8, 3}, {64, 8}, {5, 5}};
    for (int ti = 0; ti < 3; ti++)
        for (int i = 0; i < 3; i++)
            for (int d = 0; d < 2; d++)
                case_vs_ref(shape(Ts[ti], 37, Ek[i][0], Ek[i][1], 13, 7, d ? WT_BF16 : WT_F32), 5u + (unsigned long)i,
                            "odd sizes");
}

/* The one moderate case: Qwen-like proportions (hidden 256, I 128, Is 128,
 * E 64, k 8) over a prefill chunk, and decode over E = 256 experts. */
static void test_grid_qwen_like(void **state)
{
    (void)state;
    for (int d = 0; d < 2; d++) {
        const q35_wtype wt = d ? WT_BF16 : WT_F32;
        case_vs_ref(shape(64, 256, 64, 8, 128, 128, wt), 7u, "qwen-like prefill");
        case_vs_ref(shape(1, 256, 256, 8, 64, 128, wt), 8u, "qwen-like decode, E 256");
    }
}

/* ------------------------------------------------------------------ */
/* Routing                                                              */
/* ------------------------------------------------------------------ */

static int count_id(const int32_t *ids, size_t n, int e)
{
    int c = 0;
    for (size_t i = 0; i < n; i++) c += ids[i] == e;
    return c;
}

/* An expert no token can choose: no implementation routes a token to it,
 * every one reports fewer experts touched than E, and all agree with ref. */
static void test_routing_empty_expert(void **state)
{
    (void)state;
    static const int Ek[][2] = {{8, 1}, {8, 7}, {64, 8}};
    const moe_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 1);
    for (size_t i = 0; i < sizeof Ek / sizeof *Ek; i++)
        for (int d = 0; d < 2; d++) {
            moe_shape s = shape(64, 64, Ek[i][0], Ek[i][1], 32, 32, d ? WT_BF16 : WT_F32);
            s.routing = MOE_ROUTING_EMPTY_EXPERT;
            moe_case c;
            make_case(&c, s, 20u + i);
            assert_true(c.special_expert >= 0 && c.special_expert < s.E);
            outputs x = outputs_alloc(&c.p);
            for (int j = 0; j < n; j++) {
                run_into(impls[j], &c.p, NULL, &x);
                if (count_id(x.ids, x.tk, c.special_expert))
                    fail_msg("%s: expert %d has tokens on %s", impls[j]->name, c.special_expert, shape_str(&c.p));
                assert_true(x.st.experts_touched < s.E);
            }
            outputs_free(&x);
            all_vs_ref(&c.p, NULL, "empty expert");
            moe_case_free(&c);
        }
}

/* One expert is every token's first choice: it gets all T tokens. */
static void test_routing_all_tokens_one_expert(void **state)
{
    (void)state;
    static const int Ek[][2] = {{8, 1}, {8, 2}, {64, 8}};
    const moe_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 1);
    for (size_t i = 0; i < sizeof Ek / sizeof *Ek; i++)
        for (int d = 0; d < 2; d++) {
            moe_shape s = shape(333, 64, Ek[i][0], Ek[i][1], 32, 32, d ? WT_BF16 : WT_F32);
            s.routing = MOE_ROUTING_ONE_EXPERT;
            moe_case c;
            make_case(&c, s, 30u + i);
            outputs x = outputs_alloc(&c.p);
            for (int j = 0; j < n; j++) {
                run_into(impls[j], &c.p, NULL, &x);
                for (int t = 0; t < s.T; t++)
                    if (x.ids[(size_t)t * s.top_k] != c.special_expert)
                        fail_msg("%s: token %d's first expert is %d, not %d", impls[j]->name, t,
                                 x.ids[(size_t)t * s.top_k], c.special_expert);
                assert_int_equal(x.st.max_load, s.T);
                if (s.top_k == 1) assert_int_equal(x.st.experts_touched, 1);
            }
            outputs_free(&x);
            all_vs_ref(&c.p, NULL, "all tokens to one expert");
            moe_case_free(&c);
        }
}

/* The generator does what docs/moe.md §6 says: with skew 0.9 the k+1 hot
 * experts hold most of the T*k rows, with skew 0 no expert holds more than a
 * few times its share; every token's top-k is clear in both. */
static void test_routing_skew_concentrates(void **state)
{
    (void)state;
    for (int sk = 0; sk < 2; sk++) {
        moe_shape s = shape(333, 64, 64, 2, 16, 0, WT_F32);
        s.skew = sk ? 0.9 : 0.0;
        moe_case c;
        make_case(&c, s, 150u);
        assert_int_equal(moe_first_unclear_token(&c.p, MOE_ROUTE_MARGIN), -1);
        outputs r = ref_outputs(&c.p);
        int load[64] = {0};
        for (size_t i = 0; i < r.tk; i++) load[r.ids[i]]++;
        /* the n_hot largest loads */
        int top = 0;
        for (int j = 0; j < 3; j++) {
            int best = 0;
            for (int e = 1; e < 64; e++) if (load[e] > load[best]) best = e;
            top += load[best];
            load[best] = -1;
        }
        if (sk) {
            assert_int_equal(c.n_hot, 3);
            if (!(top > (int)r.tk / 2)) fail_msg("skew 0.9: the 3 busiest experts hold only %d of %zu rows", top, r.tk);
        } else if (!(r.st.max_load < 6 * (int)r.tk / 64))
            fail_msg("skew 0: an expert holds %d of %zu rows", r.st.max_load, r.tk);
        outputs_free(&r);
        moe_case_free(&c);
    }
}

/* ids/weights of every token in descending weight, equal weights in
 * increasing expert index (the order moe.h promises). */
static void expect_descending(const char *impl, const outputs *x, int T, int k)
{
    for (int t = 0; t < T; t++)
        for (int j = 1; j < k; j++) {
            const float a = x->w[(size_t)t * k + j - 1], b = x->w[(size_t)t * k + j];
            const int ia = x->ids[(size_t)t * k + j - 1], ib = x->ids[(size_t)t * k + j];
            if (a < b || (a == b && ia > ib))
                fail_msg("%s: token %d slots %d,%d: (expert %d, %.9g) before (expert %d, %.9g)", impl, t, j - 1, j,
                         ia, (double)a, ib, (double)b);
        }
}

/* Router rows of the last E/2 experts copy the first E/2, so probabilities
 * tie exactly: the lower index wins.  A chosen copy implies its original is
 * chosen too, and a tied pair is listed original first. */
static void test_routing_ties_to_lower_index(void **state)
{
    (void)state;
    static const int Ek[][2] = {{2, 1}, {8, 1}, {8, 3}, {64, 1}, {64, 5}, {8, 8}};
    const moe_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 1);
    for (size_t i = 0; i < sizeof Ek / sizeof *Ek; i++)
        for (int d = 0; d < 2; d++) {
            const int E = Ek[i][0], k = Ek[i][1], half = E / 2;
            moe_shape s = shape(64, 64, E, k, 32, 32, d ? WT_BF16 : WT_F32);
            s.routing = MOE_ROUTING_TIES;
            moe_case c;
            make_case(&c, s, 40u + i);
            outputs x = outputs_alloc(&c.p);
            for (int j = 0; j < n; j++) {
                run_into(impls[j], &c.p, NULL, &x);
                for (int t = 0; t < s.T; t++)
                    for (int a = 0; a < k; a++) {
                        const int e = x.ids[(size_t)t * k + a];
                        if (e < E - half) continue;
                        const int twin = e - (E - half);
                        int at = -1;
                        for (int b = 0; b < k; b++)
                            if (x.ids[(size_t)t * k + b] == twin) at = b;
                        if (at < 0)
                            fail_msg("%s, E=%d k=%d: token %d chose expert %d but not %d, its lower-index tie",
                                     impls[j]->name, E, k, t, e, twin);
                        if (at > a)
                            fail_msg("%s, E=%d k=%d: token %d lists expert %d before its tie %d", impls[j]->name, E, k,
                                     t, e, twin);
                    }
                expect_descending(impls[j]->name, &x, s.T, k);
            }
            outputs_free(&x);
            all_vs_ref(&c.p, NULL, "ties");
            moe_case_free(&c);
        }
}

/* norm_topk_prob on: every token's weights sum to 1; off: they are the
 * softmax probabilities (ref's) and sum to less than 1 for k < E; the two
 * give different outputs, and each agrees with ref. */
static void test_routing_norm_topk_prob(void **state)
{
    (void)state;
    const moe_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 1);
    for (int norm = 0; norm < 2; norm++)
        for (int d = 0; d < 2; d++) {
            moe_shape s = shape(33, 64, 16, 4, 32, 16, d ? WT_BF16 : WT_F32);
            s.norm_topk_prob = norm;
            moe_case c;
            make_case(&c, s, 50u);
            outputs x = outputs_alloc(&c.p);
            for (int j = 0; j < n; j++) {
                run_into(impls[j], &c.p, NULL, &x);
                for (int t = 0; t < s.T; t++) {
                    double sum = 0.0;
                    for (int a = 0; a < s.top_k; a++) sum += x.w[(size_t)t * s.top_k + a];
                    if (norm && fabs(sum - 1.0) > 1e-6)
                        fail_msg("%s: token %d's renormalized weights sum to %.9g", impls[j]->name, t, sum);
                    if (!norm && !(sum < 1.0 - 1e-6))
                        fail_msg("%s: token %d's probabilities sum to %.9g without renormalization", impls[j]->name, t, sum);
                }
            }
            outputs_free(&x);
            all_vs_ref(&c.p, NULL, norm ? "norm_topk_prob on" : "norm_topk_prob off");
            moe_case_free(&c);
        }
    /* the switch matters */
    moe_case c;
    make_case(&c, shape(9, 32, 8, 2, 16, 0, WT_F32), 51u);
    outputs on = ref_outputs(&c.p);
    c.p.norm_topk_prob = 0;
    outputs off = ref_outputs(&c.p);
    assert_true(err_compare(off.out, on.out, on.th).normwise > 1e-3);
    outputs_free(&on);
    outputs_free(&off);
    moe_case_free(&c);
}

/* moe_route itself against ref's double router: the same experts (clear
 * margins; order checked as descending, ties to the lower index), weights within 1e-6, logits within 1e-5 +
 * 1e-4|l|; k = E, E = 1, k above the insertion limit (sort path), many
 * tokens (threaded path), logits NULL, any thread count. */
static void test_routing_router(void **state)
{
    (void)state;
    static const struct { int T, E, k, threads; } cases[] = {
        {1, 1, 1, 0}, {5, 8, 8, 0}, {7, 64, 40, 0}, {100, 64, 64, 2}, {333, 64, 8, 0}, {333, 64, 8, 3},
        {40, 256, 8, 1}, {2, 3, 2, 5}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int d = 0; d < 2; d++)
            for (int norm = 0; norm < 2; norm++) {
                moe_shape s = shape(cases[i].T, 48, cases[i].E, cases[i].k, 8, 0, d ? WT_BF16 : WT_F32);
                s.norm_topk_prob = norm;
                moe_case c;
                make_case(&c, s, 60u + i);
                outputs r = ref_outputs(&c.p);
                const size_t tk = (size_t)s.T * s.top_k, te = (size_t)s.T * s.E;
                int32_t *ids = malloc(sizeof(int32_t) * tk);
                float *w = malloc(sizeof(float) * tk), *l = malloc(sizeof(float) * te);
                assert_non_null(ids); assert_non_null(w); assert_non_null(l);
                for (int with_logits = 0; with_logits < 2; with_logits++) {
                    assert_int_equal(moe_route(&c.p, ids, w, with_logits ? l : NULL, cases[i].threads), 0);
                    /* the same experts (matched by id), weights within 1e-6, in descending order */
                    moe_compare m;
                    moe_compare_outputs(&c.p, r.out, ids, w, with_logits ? l : NULL, r.out, r.ids, r.w,
                                        with_logits ? r.logits : NULL, 1e-6, 0.0, &m);
                    if (m.bad_ids || !(m.max_weight_err <= 1e-6))
                        fail_msg("moe_route T=%d E=%d k=%d %s: %zu tokens with other experts, weight error %.3g",
                                 s.T, s.E, s.top_k, moe_wtype_name(s.wt), m.bad_ids, m.max_weight_err);
                    const outputs got = {.w = w, .ids = ids};
                    expect_descending("moe_route", &got, s.T, s.top_k);
                    if (with_logits) assert_int_equal(err_allclose_violations(l, r.logits, te, 1e-5, 1e-4, NULL), 0);
                }
                free(ids); free(w); free(l);
                outputs_free(&r);
                moe_case_free(&c);
            }
}

/* ------------------------------------------------------------------ */
/* Layout and options                                                   */
/* ------------------------------------------------------------------ */

/* gate_proj / up_proj as one [E, 2I, H] array (HF's gate_up_proj), and with
 * extra padding between experts (expert_stride_gu > 2IH): the same values
 * give bit-identical results in every implementation, ref included. */
static void test_layout_fused_gate_up(void **state)
{
    (void)state;
    const moe_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 1);
    static const int Ts[] = {1, 64};
    for (int ti = 0; ti < 2; ti++)
        for (int d = 0; d < 2; d++) {
            moe_shape s = shape(Ts[ti], 64, 8, 2, 32, 32, d ? WT_BF16 : WT_F32);
            moe_case sep, fused;
            make_case(&sep, s, 70u);
            s.fused_gate_up = 1;
            make_case(&fused, s, 70u);
            assert_int_equal(fused.p.expert_stride_gu, 2u * 32 * 64);
            /* the same draws: x identical, gate/up the same values */
            assert_memory_equal(sep.x, fused.x, sizeof(float) * 64 * s.T);
            /* a padded copy: expert e's gate at e * (2IH + 40), up IH after it */
            const size_t IH = 32 * 64, stride = 2 * IH + 40, es = q35_wtype_bytes(s.wt, 1);
            char *padded = calloc(8 * stride + 1, es);
            assert_non_null(padded);
            for (int e = 0; e < 8; e++)
                memcpy(padded + e * stride * es, (const char *)fused.gate_up + e * 2 * IH * es, 2 * IH * es);
            moe_problem pad = fused.p;
            pad.gate_proj = padded;
            pad.up_proj = padded + IH * es;
            pad.expert_stride_gu = stride;
            for (int j = 0; j < n; j++) {
                outputs a = outputs_alloc(&sep.p), b = outputs_alloc(&sep.p), c = outputs_alloc(&sep.p);
                run_into(impls[j], &sep.p, NULL, &a);
                run_into(impls[j], &fused.p, NULL, &b);
                run_into(impls[j], &pad, NULL, &c);
                if (memcmp(a.out, b.out, sizeof(float) * a.th) || memcmp(a.out, c.out, sizeof(float) * a.th))
                    fail_msg("%s, %s: fused / padded gate_up layouts change the output (normwise %.3g, %.3g)",
                             impls[j]->name, shape_str(&sep.p), err_compare(b.out, a.out, a.th).normwise,
                             err_compare(c.out, a.out, a.th).normwise);
                assert_memory_equal(a.ids, b.ids, sizeof(int32_t) * a.tk);
                outputs_free(&a); outputs_free(&b); outputs_free(&c);
            }
            all_vs_ref(&pad, NULL, "fused gate_up, padded stride");
            free(padded);
            moe_case_free(&sep);
            moe_case_free(&fused);
        }
}

/* topk_ids, topk_weights and router_logits are optional: leaving any out
 * changes no bit of out, and an implementation writes only what it is given. */
static void test_layout_optional_outputs(void **state)
{
    (void)state;
    const moe_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 1);
    moe_case c;
    make_case(&c, shape(37, 64, 16, 4, 32, 32, WT_F32), 80u);
    for (int j = 0; j < n; j++) {
        outputs full = outputs_alloc(&c.p);
        run_into(impls[j], &c.p, NULL, &full);
        for (int drop = 1; drop < 8; drop++) {
            moe_problem q = c.p;
            float *out = malloc(sizeof(float) * full.th);
            assert_non_null(out);
            q.out = out;
            q.topk_ids = drop & 1 ? NULL : c.topk_ids;
            q.topk_weights = drop & 2 ? NULL : c.topk_weights;
            q.router_logits = drop & 4 ? NULL : c.router_logits;
            char err[256];
            if (moe_run(impls[j], &q, NULL, NULL, err, sizeof err)) fail_msg("%s: %s", impls[j]->name, err);
            if (memcmp(out, full.out, sizeof(float) * full.th))
                fail_msg("%s: leaving out optional outputs (mask %d) changes out", impls[j]->name, drop);
            if (q.topk_ids) assert_memory_equal(q.topk_ids, full.ids, sizeof(int32_t) * full.tk);
            free(out);
        }
        outputs_free(&full);
    }
    moe_case_free(&c);
}

/* Thread counts (1, 2, 3, more than tokens) and blockwise block sizes
 * (1, 7, 64, larger than all rows): every result agrees with ref, and
 * blockwise reports sum_e (ceil(load_e / B) B - load_e) padded rows. */
static void test_options_threads_and_blocks(void **state)
{
    (void)state;
    static const int threads[] = {1, 2, 3, 9};
    static const int blocks[] = {1, 7, 64, 1000};
    const moe_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 0);
    static const int Ts[] = {1, 5, 70};
    for (int ti = 0; ti < 3; ti++) {
        moe_case c;
        moe_shape s = shape(Ts[ti], 64, 16, 4, 32, 32, WT_BF16);
        s.skew = 0.5;
        make_case(&c, s, 90u + ti);
        outputs r = ref_outputs(&c.p), x = outputs_alloc(&c.p);
        int *load = calloc(16, sizeof(int));
        assert_non_null(load);
        for (size_t i = 0; i < r.tk; i++) load[r.ids[i]]++;
        for (int j = 0; j < n; j++)
            for (size_t th = 0; th < sizeof threads / sizeof *threads; th++) {
                moe_opts o = {.threads = threads[th]};
                run_into(impls[j], &c.p, &o, &x);
                expect_matches_ref(impls[j], &c.p, &x, &r, tol_of(impls[j], s.wt), "threads option");
                if (impls[j]->defaults.block > 0 || !strcmp(impls[j]->name, "blockwise"))
                    for (size_t b = 0; b < sizeof blocks / sizeof *blocks; b++) {
                        o.block = blocks[b];
                        run_into(impls[j], &c.p, &o, &x);
                        expect_matches_ref(impls[j], &c.p, &x, &r, tol_of(impls[j], s.wt), "block option");
                        long long pad = 0;
                        for (int e = 0; e < 16; e++)
                            pad += load[e] ? (long long)(load[e] + blocks[b] - 1) / blocks[b] * blocks[b] - load[e] : 0;
                        if (x.st.padded_rows != pad)
                            fail_msg("%s, block %d: padded_rows %lld, expected %lld", impls[j]->name, blocks[b],
                                     x.st.padded_rows, pad);
                    }
                else
                    assert_int_equal(x.st.padded_rows, 0);
            }
        free(load);
        outputs_free(&x);
        outputs_free(&r);
        moe_case_free(&c);
    }
}

/* Two runs of the same problem give the same bits. */
static void test_options_deterministic(void **state)
{
    (void)state;
    const moe_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 1);
    static const int Ts[] = {1, 3, 200};
    for (int ti = 0; ti < 3; ti++) {
        moe_case c;
        make_case(&c, shape(Ts[ti], 64, 32, 8, 32, 32, WT_F32), 95u);
        for (int j = 0; j < n; j++) {
            outputs a = outputs_alloc(&c.p), b = outputs_alloc(&c.p);
            run_into(impls[j], &c.p, NULL, &a);
            run_into(impls[j], &c.p, NULL, &b);
            if (memcmp(a.out, b.out, sizeof(float) * a.th)) fail_msg("%s: two runs differ (T=%d)", impls[j]->name, Ts[ti]);
            outputs_free(&a);
            outputs_free(&b);
        }
        moe_case_free(&c);
    }
}

/* ------------------------------------------------------------------ */
/* Golden files                                                         */
/* ------------------------------------------------------------------ */

static char g_tmpdir[64];

static int tmpdir_setup(void **state)
{
    (void)state;
    return test_tmpdir_make(g_tmpdir, "moe_test");
}

static int tmpdir_teardown(void **state)
{
    (void)state;
    return test_tmpdir_remove(g_tmpdir);
}

static void tmp_path(char *buf, size_t n, const char *name) { test_tmpdir_path(buf, n, g_tmpdir, name); }

static void load_golden(const char *path, moe_golden *g, const moe_golden_opts *o)
{
    char err[512];
    if (moe_golden_load(path, g, o, err, sizeof err)) fail_msg("moe_golden_load: %s", err);
}

static void expect_golden_pass(moe_golden *g, const moe_impl *im, const char *path)
{
    moe_compare r;
    char err[512];
    if (moe_golden_check(g, im, NULL, &r, err, sizeof err)) fail_msg("%s on %s: %s", im->name, path, err);
    /* A lossy entry on bf16 weights rounds activations to bf16: the file's element-wise atol/rtol
     * are an fp32 kernel's; it is held to its own tol_bf16 (normwise), with the routing exact. */
    if (im->lossy && g->c.p.wt == WT_BF16) {
        if (!(r.out.normwise <= im->tol_bf16) || r.bad_ids || r.bad_weights || r.bad_logits)
            fail_msg("%s on %s: normwise error %.3g (tolerance %.3g), %zu tokens with other experts, %zu weights "
                     "and %zu logits off", im->name, path, r.out.normwise, im->tol_bf16, r.bad_ids, r.bad_weights,
                     r.bad_logits);
        return;
    }
    if (!moe_compare_pass(&r))
        fail_msg("%s on %s: %zu out entries outside atol %g + rtol %g (normwise %.3g), %zu tokens with other "
                 "experts, %zu weights and %zu logits off",
                 im->name, path, r.bad_out, g->atol, g->rtol, r.out.normwise, r.bad_ids, r.bad_weights, r.bad_logits);
}

/* The shared samples (independent float64 reference), when ../shared is
 * present: every implementation, ref included, passes with the file's
 * tolerances; also with the weights rounded to bf16 (against ref) and with
 * a fused gate_up layout. */
static void test_golden_shared_samples(void **state)
{
    (void)state;
    struct stat sb;
    if (stat(SHARED_GOLDEN_DIR, &sb) || !S_ISDIR(sb.st_mode)) {
        print_message("note: %s not found; shared MoE golden samples not checked\n", SHARED_GOLDEN_DIR);
        skip();
    }
    glob_t gl;
    const int rc = glob(SHARED_GOLDEN_GLOB, 0, NULL, &gl);
    if (rc == GLOB_NOMATCH) {
        print_message("note: no %s; shared MoE golden samples not checked\n", SHARED_GOLDEN_GLOB);
        skip();
    }
    assert_int_equal(rc, 0);
    const moe_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 1);
    static const moe_golden_opts variants[] = {{0, 0}, {1, 0}, {0, 1}, {1, 1}};
    for (size_t f = 0; f < gl.gl_pathc; f++)
        for (size_t v = 0; v < sizeof variants / sizeof *variants; v++) {
            moe_golden g;
            load_golden(gl.gl_pathv[f], &g, &variants[v]);
            assert_int_equal(g.expect_from_ref, variants[v].as_bf16 && !g.file_bf16);
            /* the samples promise unambiguous selections (logits >= 1e-3 apart) */
            if (v == 0) assert_int_equal(moe_first_unclear_token(&g.c.p, 5e-4), -1);
            for (int i = 0; i < n; i++) expect_golden_pass(&g, impls[i], gl.gl_pathv[f]);
            moe_golden_free(&g);
        }
    globfree(&gl);
}

static void expect_same_weight(const moe_problem *a, const moe_problem *b, const char *name)
{
    size_t na = 0, nb = 0;
    float *wa = moe_weight_f32(a, name, &na), *wb = moe_weight_f32(b, name, &nb);
    if ((wa == NULL) != (wb == NULL)) fail_msg("%s: present on one side only", name);
    if (wa) {
        assert_int_equal(na, nb);
        if (memcmp(wa, wb, sizeof(float) * na)) fail_msg("%s: round trip changed the values", name);
    }
    free(wa);
    free(wb);
}

/* moe_golden_write a ref result, load it back: dims, metadata, inputs,
 * weights (F32 or BF16 tensors), expectations are bit-identical, and every
 * implementation passes the file.  Fused problems are written separate. */
static void test_golden_round_trip(void **state)
{
    (void)state;
    const moe_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 1);
    static const char *const wnames[] = {"router", "gate_proj", "up_proj", "down_proj", "shared_gate_proj",
                                         "shared_up_proj", "shared_down_proj", "shared_expert_gate"};
    for (int v = 0; v < 4; v++) {
        moe_shape s = shape(v < 2 ? 9 : 40, 48, 8, v == 3 ? 8 : 2, 24, v == 1 ? 0 : 16, v % 2 ? WT_BF16 : WT_F32);
        s.norm_topk_prob = v != 2;
        s.fused_gate_up = v == 2;
        moe_case c;
        make_case(&c, s, 100u + v);
        outputs r = ref_outputs(&c.p);
        char path[256], err[512];
        tmp_path(path, sizeof path, "roundtrip.safetensors");
        if (moe_golden_write(path, &c.p, r.out, r.ids, r.w, v == 3 ? NULL : r.logits, MOE_GOLDEN_DEFAULT_ATOL,
                             MOE_GOLDEN_DEFAULT_RTOL, "test", err, sizeof err))
            fail_msg("moe_golden_write: %s", err);
        moe_golden g;
        load_golden(path, &g, NULL);
        const moe_problem *a = &c.p, *b = &g.c.p;
        assert_int_equal(a->T, b->T); assert_int_equal(a->hidden, b->hidden); assert_int_equal(a->E, b->E);
        assert_int_equal(a->top_k, b->top_k); assert_int_equal(a->inter, b->inter);
        assert_int_equal(a->inter_shared, b->inter_shared); assert_int_equal(a->norm_topk_prob, b->norm_topk_prob);
        assert_int_equal(a->wt, b->wt);
        assert_int_equal(g.file_bf16, s.wt == WT_BF16);
        assert_int_equal(g.expect_from_ref, 0);
        assert_true(g.atol == MOE_GOLDEN_DEFAULT_ATOL && g.rtol == MOE_GOLDEN_DEFAULT_RTOL);
        assert_memory_equal(a->x, b->x, sizeof(float) * r.th);
        for (size_t w = 0; w < sizeof wnames / sizeof *wnames; w++) expect_same_weight(a, b, wnames[w]);
        assert_memory_equal(r.out, g.expect_out, sizeof(float) * r.th);
        assert_memory_equal(r.ids, g.expect_ids, sizeof(int32_t) * r.tk);
        assert_memory_equal(r.w, g.expect_weights, sizeof(float) * r.tk);
        if (v == 3) assert_null(g.expect_logits);
        else assert_memory_equal(r.logits, g.expect_logits, sizeof(float) * r.te);
        for (int i = 0; i < n; i++) expect_golden_pass(&g, impls[i], path);
        moe_golden_free(&g);
        unlink(path);
        outputs_free(&r);
        moe_case_free(&c);
    }
}

/* Matching is by id: the k pairs of a token in any order pass; a pair with
 * another expert, or a weight off by more than the tolerance, fails. */
static void test_golden_compare_by_id(void **state)
{
    (void)state;
    moe_case c;
    make_case(&c, shape(12, 32, 16, 4, 16, 0, WT_F32), 110u);
    outputs r = ref_outputs(&c.p);
    int32_t *ids = malloc(sizeof(int32_t) * r.tk);
    float *w = malloc(sizeof(float) * r.tk);
    assert_non_null(ids); assert_non_null(w);
    for (int t = 0; t < 12; t++) /* reversed order */
        for (int j = 0; j < 4; j++) {
            ids[t * 4 + j] = r.ids[t * 4 + 3 - j];
            w[t * 4 + j] = r.w[t * 4 + 3 - j];
        }
    moe_compare m;
    moe_compare_outputs(&c.p, r.out, ids, w, NULL, r.out, r.ids, r.w, NULL, 1e-5, 1e-4, &m);
    assert_true(moe_compare_pass(&m));
    /* another expert for token 5 */
    int other = 0;
    while (count_id(r.ids + 20, 4, other)) other++;
    ids[5 * 4 + 2] = other;
    moe_compare_outputs(&c.p, r.out, ids, w, NULL, r.out, r.ids, r.w, NULL, 1e-5, 1e-4, &m);
    assert_false(moe_compare_pass(&m));
    assert_int_equal(m.bad_ids, 1);
    assert_int_equal(m.first_bad_token, 5);
    ids[5 * 4 + 2] = r.ids[5 * 4 + 1];
    w[7 * 4 + 1] += 1e-3f;
    moe_compare_outputs(&c.p, r.out, ids, w, NULL, r.out, r.ids, r.w, NULL, 1e-5, 1e-4, &m);
    assert_int_equal(m.bad_ids, 0);
    assert_int_equal(m.bad_weights, 1);
    free(ids); free(w);
    outputs_free(&r);
    moe_case_free(&c);
}

/* Golden files with one defect each.  Writes c's problem and r's results,
 * with tensor `skip` left out, tensor `bad_shape` given one row too many,
 * metadata key `meta_key` set to `meta_val`, or an expert id out of range. */
typedef struct {
    const char *skip, *bad_shape, *meta_key, *meta_val;
    int bad_id;
    const char *word; /* expected in the message; NULL: the file must load */
} golden_defect;

static void write_defective(const char *path, const moe_case *c, const outputs *r, const golden_defect *d)
{
    const moe_problem *p = &c->p;
    const int64_t T = p->T, H = p->hidden, E = p->E, I = p->inter, Is = p->inter_shared, k = p->top_k;
    struct { const char *name; st_dtype dt; int nd; int64_t s[3]; const void *data; } t[] = {
        {"x", ST_F32, 2, {T, H}, p->x}, {"router_weight", ST_F32, 2, {E, H}, p->router},
        {"gate_proj", ST_F32, 3, {E, I, H}, p->gate_proj}, {"up_proj", ST_F32, 3, {E, I, H}, p->up_proj},
        {"down_proj", ST_F32, 3, {E, H, I}, p->down_proj}, {"shared_gate_proj", ST_F32, 2, {Is, H}, p->shared_gate},
        {"shared_up_proj", ST_F32, 2, {Is, H}, p->shared_up}, {"shared_down_proj", ST_F32, 2, {H, Is}, p->shared_down},
        {"shared_expert_gate", ST_F32, 2, {1, H}, p->shared_expert_gate}, {"out", ST_F32, 2, {T, H}, r->out},
        {"topk_ids", ST_I32, 2, {T, k}, r->ids}, {"topk_weights", ST_F32, 2, {T, k}, r->w},
        {"router_logits", ST_F32, 2, {T, E}, r->logits}};
    /* room for one extra row of any tensor */
    static float big[1 << 16];
    int32_t *ids = malloc(sizeof(int32_t) * r->tk);
    assert_non_null(ids);
    memcpy(ids, r->ids, sizeof(int32_t) * r->tk);
    if (d->bad_id) ids[3] = (int32_t)E;
    st_writer *w = st_writer_new();
    assert_non_null(w);
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        if (d->skip && !strcmp(d->skip, t[i].name)) continue;
        int64_t s[3] = {t[i].s[0], t[i].s[1], t[i].s[2]};
        const void *data = !strcmp(t[i].name, "topk_ids") ? ids : t[i].data;
        if (d->bad_shape && !strcmp(d->bad_shape, t[i].name)) { s[0]++; data = big; }
        assert_int_equal(st_writer_add(w, t[i].name, t[i].dt, t[i].nd, s, data), 0);
    }
    static const char *const keys[] = {"top_k", "num_experts", "norm_topk_prob", "atol", "rtol"};
    char kv[16], ev[16];
    snprintf(kv, sizeof kv, "%d", p->top_k);
    snprintf(ev, sizeof ev, "%d", p->E);
    const char *vals[] = {kv, ev, "1", "1e-5", "1e-4"};
    for (int i = 0; i < 5; i++) {
        const char *v = d->meta_key && !strcmp(d->meta_key, keys[i]) ? d->meta_val : vals[i];
        if (v) assert_int_equal(st_writer_meta(w, keys[i], v), 0);
    }
    char err[512];
    if (st_writer_write(w, path, err, sizeof err)) fail_msg("%s", err);
    st_writer_free(w);
    free(ids);
}

static void test_golden_malformed(void **state)
{
    (void)state;
    static const golden_defect cases[] = {
        {NULL, NULL, NULL, NULL, 0, NULL},
        {NULL, NULL, "norm_topk_prob", "true", 0, NULL},
        {NULL, NULL, "norm_topk_prob", "True", 0, NULL},
        {NULL, NULL, "norm_topk_prob", NULL, 0, NULL},
        {NULL, NULL, "top_k", NULL, 0, NULL},
        {NULL, NULL, "norm_topk_prob", "yes", 0, "norm_topk_prob"},
        {NULL, NULL, "top_k", "3", 0, "top_k"},
        {NULL, NULL, "num_experts", "9", 0, "num_experts"},
        {NULL, NULL, "atol", "-1", 0, "atol"},
        {NULL, NULL, "rtol", "abc", 0, "rtol"},
        {"x", NULL, NULL, NULL, 0, "'x'"},
        {"gate_proj", NULL, NULL, NULL, 0, "gate_proj"},
        {"up_proj", NULL, NULL, NULL, 0, "up_proj"},
        {"down_proj", NULL, NULL, NULL, 0, "down_proj"},
        {"shared_gate_proj", NULL, NULL, NULL, 0, "shared_gate_proj"},
        {"shared_down_proj", NULL, NULL, NULL, 0, "shared_down_proj"},
        {"out", NULL, NULL, NULL, 0, "out"},
        {"topk_ids", NULL, NULL, NULL, 0, "topk_ids"},
        {"topk_weights", NULL, NULL, NULL, 0, "topk_weights"},
        {NULL, "up_proj", NULL, NULL, 0, "up_proj"},
        {NULL, "down_proj", NULL, NULL, 0, "down_proj"},
        {NULL, "router_logits", NULL, NULL, 0, "router_logits"},
        {NULL, "topk_weights", NULL, NULL, 0, "topk_weights"},
        {NULL, NULL, NULL, NULL, 1, "topk_ids"},
    };
    moe_case c;
    make_case(&c, shape(6, 16, 8, 2, 8, 8, WT_F32), 120u);
    outputs r = ref_outputs(&c.p);
    char path[256];
    tmp_path(path, sizeof path, "defective.safetensors");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_defective(path, &c, &r, &cases[i]);
        moe_golden g;
        char err[512] = "";
        const int rc = moe_golden_load(path, &g, NULL, err, sizeof err);
        if (!cases[i].word) {
            if (rc) fail_msg("defect %zu: the file does not load: %s", i, err);
            assert_int_equal(g.c.p.norm_topk_prob, 1);
            assert_int_equal(g.c.p.top_k, 2);
            moe_golden_free(&g);
        } else {
            if (rc != -1) fail_msg("a golden file with defect %zu (%s) loaded", i, cases[i].word);
            if (!strstr(err, cases[i].word)) fail_msg("message \"%s\" does not name %s", err, cases[i].word);
            moe_golden_free(&g);
        }
        unlink(path);
    }
    /* norm_topk_prob "false" / "0" load as 0 */
    static const char *const off[] = {"false", "0", "False"};
    for (int i = 0; i < 3; i++) {
        const golden_defect d = {NULL, NULL, "norm_topk_prob", off[i], 0, NULL};
        write_defective(path, &c, &r, &d);
        moe_golden g;
        load_golden(path, &g, NULL);
        assert_int_equal(g.c.p.norm_topk_prob, 0);
        moe_golden_free(&g);
        unlink(path);
    }
    outputs_free(&r);
    moe_case_free(&c);
}

/* ------------------------------------------------------------------ */
/* Invalid problems                                                     */
/* ------------------------------------------------------------------ */

#define SENTINEL 12345.0f

/* moe_validate and moe_run (every implementation, ref included) reject p:
 * -1, a message containing word, nothing written. */
static void expect_rejected(const moe_problem *p, const moe_opts *o, const char *word, const char *what)
{
    char err[512] = "";
    if (!o) {
        if (moe_validate(p, 0, err, sizeof err) != -1) fail_msg("validate accepted %s", what);
        if (!strstr(err, word)) fail_msg("%s: validate message \"%s\" lacks \"%s\"", what, err, word);
    }
    const moe_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 1);
    for (int i = 0; i < n; i++) {
        err[0] = 0;
        if (moe_run(impls[i], p, o, NULL, err, sizeof err) != -1) fail_msg("%s ran %s", impls[i]->name, what);
        if (!strstr(err, word)) fail_msg("%s, %s: message \"%s\" lacks \"%s\"", impls[i]->name, what, err, word);
    }
}

static void make_valid(moe_case *c)
{
    make_case(c, shape(5, 16, 8, 2, 8, 8, WT_F32), 130u);
    for (size_t i = 0; i < (size_t)c->p.T * c->p.hidden; i++) c->out[i] = SENTINEL;
    char err[256];
    if (moe_validate(&c->p, 1, err, sizeof err)) fail_msg("the base problem is invalid: %s", err);
}

static void expect_untouched(const moe_case *c)
{
    for (size_t i = 0; i < (size_t)c->p.T * c->p.hidden; i++)
        if (c->out[i] != SENTINEL) fail_msg("a rejected run wrote out[%zu]", i);
}

/* Zero or negative dimensions, top_k 0 or above E, negative Is. */
static void test_invalid_dims(void **state)
{
    (void)state;
    moe_case c;
    make_valid(&c);
    static const char *const names[] = {"T", "hidden", "E", "inter"};
    static const int bad[] = {0, -1, -64};
    for (int f = 0; f < 4; f++)
        for (size_t v = 0; v < sizeof bad / sizeof *bad; v++) {
            moe_problem p = c.p;
            int *dims[] = {&p.T, &p.hidden, &p.E, &p.inter};
            *dims[f] = bad[v];
            char what[32];
            snprintf(what, sizeof what, "%s=%d", names[f], bad[v]);
            expect_rejected(&p, NULL, what, what);
        }
    moe_problem p = c.p;
    p.top_k = 0;
    expect_rejected(&p, NULL, "top_k=0", "top_k = 0");
    p.top_k = -2;
    expect_rejected(&p, NULL, "top_k=-2", "top_k = -2");
    p.top_k = 9;
    expect_rejected(&p, NULL, "moe: top_k=9 exceeds E=8", "top_k > E");
    p = c.p;
    p.E = 0;
    expect_rejected(&p, NULL, "E=0", "E = 0");
    p = c.p;
    p.inter_shared = -1;
    expect_rejected(&p, NULL, "inter_shared=-1", "Is < 0");
    p = c.p;
    p.wt = (q35_wtype)7;
    expect_rejected(&p, NULL, "dtype", "a bad weight dtype");
    expect_untouched(&c);
    moe_case_free(&c);
}

/* Missing required tensors, a partial shared expert, shared tensors with
 * Is = 0, and expert_stride_gu below I * hidden. */
static void test_invalid_pointers(void **state)
{
    (void)state;
    moe_case c;
    make_valid(&c);
    static const char *const names[] = {"'x'", "'router'", "'gate_proj'", "'up_proj'", "'down_proj'", "'out'"};
    for (int t = 0; t < 6; t++) {
        moe_problem p = c.p;
        switch (t) {
        case 0: p.x = NULL; break;
        case 1: p.router = NULL; break;
        case 2: p.gate_proj = NULL; break;
        case 3: p.up_proj = NULL; break;
        case 4: p.down_proj = NULL; break;
        default: p.out = NULL; break;
        }
        expect_rejected(&p, NULL, names[t], names[t]);
    }
    static const char *const shared[] = {"'shared_gate'", "'shared_up'", "'shared_down'", "'shared_expert_gate'"};
    for (int t = 0; t < 4; t++) {
        moe_problem p = c.p, q = c.p;
        q.inter_shared = 0;
        q.shared_gate = q.shared_up = q.shared_down = q.shared_expert_gate = NULL;
        switch (t) { /* p: one shared tensor missing; q: Is = 0 with one left behind */
        case 0: p.shared_gate = NULL; q.shared_gate = c.shared_gate; break;
        case 1: p.shared_up = NULL; q.shared_up = c.shared_up; break;
        case 2: p.shared_down = NULL; q.shared_down = c.shared_down; break;
        default: p.shared_expert_gate = NULL; q.shared_expert_gate = c.shared_expert_gate; break;
        }
        expect_rejected(&p, NULL, shared[t], "a partial shared expert");
        expect_rejected(&q, NULL, "inter_shared=0", "a shared tensor with Is = 0");
    }
    moe_problem p = c.p;
    p.expert_stride_gu = (size_t)p.inter * p.hidden - 1;
    expect_rejected(&p, NULL, "expert_stride_gu", "a short expert stride");
    /* Is = 0 without shared tensors is fine */
    p = c.p;
    p.inter_shared = 0;
    p.shared_gate = p.shared_up = p.shared_down = p.shared_expert_gate = NULL;
    char err[256];
    assert_int_equal(moe_validate(&p, 1, err, sizeof err), 0);
    expect_untouched(&c);
    moe_case_free(&c);
}

/* moe_validate(p, 1, ...) rejects a non-finite x, naming it; with 0 the
 * same problem passes. */
static void test_invalid_values(void **state)
{
    (void)state;
    moe_case c;
    make_valid(&c);
    char err[512];
    static const float bad[] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        c.x[17] = bad[i];
        err[0] = 0;
        assert_int_equal(moe_validate(&c.p, 1, err, sizeof err), -1);
        if (!strstr(err, "'x'") || !strstr(err, "token 1")) fail_msg("message \"%s\" does not name x at token 1", err);
        assert_int_equal(moe_validate(&c.p, 0, err, sizeof err), 0);
    }
    moe_case_free(&c);
}

/* Unknown names, a NULL implementation, negative options. */
static void test_invalid_impls_and_options(void **state)
{
    (void)state;
    assert_null(moe_find("no-such-implementation"));
    assert_null(moe_find(""));
    assert_null(moe_find(NULL));
    assert_null(moe_find("Grouped"));
    for (int i = 0; i < moe_n_impls; i++) {
        assert_ptr_equal(moe_find(moe_impls[i].name), &moe_impls[i]);
        assert_non_null(moe_impls[i].run);
        assert_true(moe_impls[i].tol_f32 > 0 && moe_impls[i].tol_bf16 > 0);
    }
    /* "ref" is ref/'s entry, not the kernel table's (the kernels cannot name ref/) */
    assert_string_equal(moe_ref_impl.name, "ref");
    assert_null(moe_find("ref"));
    moe_case c;
    make_valid(&c);
    char err[256] = "";
    assert_int_equal(moe_run(NULL, &c.p, NULL, NULL, err, sizeof err), -1);
    assert_true(err[0] != 0);
    const moe_opts bad[] = {{.block = -1}, {.threads = -1}, {.block = 1 << 20}};
    const char *words[] = {"block", "thread", "block"};
    for (int i = 0; i < 3; i++) expect_rejected(&c.p, &bad[i], words[i], words[i]);
    expect_untouched(&c);
    moe_case_free(&c);
}

/* The SDE counters a run adds are the analytic formula of docs/moe.md
 * eqs. (10)-(11), with the experts ref finds touched. */
static void test_sde_counts_match_analytic(void **state)
{
    (void)state;
    const moe_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 1);
    for (int v = 0; v < 3; v++) {
        moe_shape s = shape(v == 2 ? 1 : 21, 32, 16, v == 2 ? 8 : 3, 16, v == 1 ? 0 : 24, v ? WT_BF16 : WT_F32);
        if (v == 0) s.routing = MOE_ROUTING_EMPTY_EXPERT;
        moe_case c;
        make_case(&c, s, 140u + v);
        outputs r = ref_outputs(&c.p);
        const long long T = s.T, H = s.hidden, E = s.E, k = s.top_k, I = s.inter, Is = s.inter_shared;
        const long long ws = v ? 2 : 4, touched = r.st.experts_touched;
        const long long flops = T * (2 * E * H + k * 3 * 2 * I * H + (Is ? 3 * 2 * Is * H + 2 * H : 0));
        const long long bytes = ws * (E * H + touched * 3 * I * H + (Is ? 3 * Is * H + H : 0));
        if (v == 0) assert_true(touched < E); /* an empty expert is not counted */
        assert_int_equal(moe_work_flops(&c.p), flops);
        assert_int_equal(moe_work_weight_bytes(&c.p, (int)touched), bytes);
        for (int i = 0; i < n; i++) {
            long long before[Q35_SDE_COUNT];
            for (int j = 0; j < Q35_SDE_COUNT; j++) before[j] = q35_sde_value((q35_sde_id)j);
            char err[256];
            assert_int_equal(moe_run(impls[i], &c.p, NULL, NULL, err, sizeof err), 0);
            long long d[Q35_SDE_COUNT];
            for (int j = 0; j < Q35_SDE_COUNT; j++) d[j] = q35_sde_value((q35_sde_id)j) - before[j];
            assert_int_equal(d[Q35_SDE_TOKENS], T);
            assert_int_equal(d[Q35_SDE_FLOPS], flops);
            assert_int_equal(d[Q35_SDE_WEIGHT_BYTES_READ], bytes);
            assert_int_equal(d[Q35_SDE_STATE_BYTES_READ], 0);
            assert_int_equal(d[Q35_SDE_STATE_BYTES_WRITTEN], 0);
        }
        outputs_free(&r);
        moe_case_free(&c);
    }
}

int main(void)
{
    const struct CMUnitTest grid_tests[] = {
        cmocka_unit_test(test_grid_default),
        cmocka_unit_test_setup_teardown(test_grid_generic_isa, force_generic_isa, restore_isa),
        cmocka_unit_test(test_grid_odd_sizes),
        cmocka_unit_test(test_grid_qwen_like),
    };
    const struct CMUnitTest routing[] = {
        cmocka_unit_test(test_routing_skew_concentrates),
        cmocka_unit_test(test_routing_empty_expert),
        cmocka_unit_test(test_routing_all_tokens_one_expert),
        cmocka_unit_test(test_routing_ties_to_lower_index),
        cmocka_unit_test(test_routing_norm_topk_prob),
        cmocka_unit_test(test_routing_router),
    };
    const struct CMUnitTest layout_options[] = {
        cmocka_unit_test(test_layout_fused_gate_up),
        cmocka_unit_test(test_layout_optional_outputs),
        cmocka_unit_test(test_options_threads_and_blocks),
        cmocka_unit_test(test_options_deterministic),
    };
    const struct CMUnitTest golden[] = {
        cmocka_unit_test(test_golden_shared_samples),
        cmocka_unit_test(test_golden_round_trip),
        cmocka_unit_test(test_golden_compare_by_id),
        cmocka_unit_test(test_golden_malformed),
    };
    const struct CMUnitTest invalid[] = {
        cmocka_unit_test(test_invalid_dims),
        cmocka_unit_test(test_invalid_pointers),
        cmocka_unit_test(test_invalid_values),
        cmocka_unit_test(test_invalid_impls_and_options),
        cmocka_unit_test(test_sde_counts_match_analytic),
    };
    int fails = 0;
    fails += cmocka_run_group_tests_name("moe grid", grid_tests, NULL, NULL);
    fails += cmocka_run_group_tests_name("moe routing", routing, NULL, NULL);
    fails += cmocka_run_group_tests_name("moe layout and options", layout_options, NULL, NULL);
    fails += cmocka_run_group_tests_name("moe golden", golden, tmpdir_setup, tmpdir_teardown);
    fails += cmocka_run_group_tests_name("moe invalid", invalid, NULL, NULL);
    return fails ? 1 : 0;
}
