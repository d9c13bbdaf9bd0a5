/* test_conv.c - cmocka suite for the short causal conv family
 * (kernels/conv/, spec in docs/conv.md and ref/conv_ref.c).
 *
 * Every implementation in conv_impls[] (every kernel; ref/ is the yardstick; if available on this
 * CPU) is checked against `ref` at its claim_tol (normwise, harness/metrics.h)
 * and, with ref itself, against values the test computes from the math (a
 * one-hot weight turns the conv into a shift; states are copies of inputs).
 * Outputs are filled with NaN before each run, so a forgotten write shows.
 *
 * Speed: `q35lab bench conv` (docs/conv.md §4).
 */
#include "kernels/conv/conv.h"
#include "kernels/cpu_features.h"
#include "ref/conv_ref.h"
#include "harness/metrics.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "tests/support/arrays.h"
#include "tests/support/isa_levels.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IMPLS 16

/* ------------------------------------------------------------------ */
/* Inputs                                                               */
/* ------------------------------------------------------------------ */

static test_rng rng = {0x9e3779b97f4a7c15ull}; /* this suite's stream (tests/support/arrays.h) */

static size_t nx(const conv_problem *p) { return (size_t)p->B * p->T * p->C; }
static size_t ns(const conv_problem *p) { return (size_t)p->B * p->C * (p->K - 1); }

/* A problem with random x, weight and (if with_state) state_in; y and
 * state_out are NaN-filled and owned by the caller (free_problem). */
static conv_problem make_problem(int B, int T, int C, int K, int with_state, int silu, uint64_t seed)
{
    conv_problem p = CONV_PROBLEM_INIT;
    p.B = B; p.T = T; p.C = C; p.K = K; p.apply_silu = silu;
    test_rng_seed(&rng, seed);
    p.x = test_frand(&rng, nx(&p), 2.0f);
    p.weight = test_frand(&rng, (size_t)C * K, 1.0f);
    p.state_in = with_state ? test_frand(&rng, ns(&p), 2.0f) : NULL;
    p.state_out = test_fnan(ns(&p));
    p.y = test_fnan(nx(&p));
    return p;
}
static void free_problem(conv_problem *p)
{
    free((void *)p->x); free((void *)p->weight); free((void *)p->state_in);
    if (p->state_out != p->state_in) free(p->state_out);
    free(p->y); free((void *)p->seq_len);
}

static const char *shape_str(const conv_problem *p)
{
    static char buf[128];
    snprintf(buf, sizeof buf, "B%d T%d C%d K%d%s%s%s", p->B, p->T, p->C, p->K, p->state_in ? " S0" : "",
             p->seq_len ? " padded" : "", p->apply_silu ? "" : " no-silu");
    return buf;
}

static void run_ok(const conv_impl *im, const conv_problem *p, int threads)
{
    char err[256];
    conv_opts o = {.threads = threads};
    if (conv_run(im, p, &o, err, sizeof err)) fail_msg("%s on %s: %s", im->name, shape_str(p), err);
}

static int list_impls(const conv_impl **out)
{
    int n = 0;
    for (int i = 0; i < conv_n_impls && n < MAX_IMPLS; i++) {
        const conv_impl *im = &conv_impls[i];
        if (im->available && !im->available()) continue;
        out[n++] = im;
    }
    assert_true(n > 0);
    return n;
}

/* x_ext[b, e, c] from the problem's inputs (the test's own reading of eq. 1). */
static float xext(const conv_problem *p, int b, int e, int c)
{
    const int S = p->K - 1;
    if (e < S) return p->state_in ? p->state_in[((size_t)b * p->C + c) * S + e] : 0.0f;
    return p->x[((size_t)b * p->T + (e - S)) * p->C + c];
}
static double silu(double a) { return a / (1.0 + exp(-a)); }

static void expect_close(const char *what, const conv_impl *im, const conv_problem *p, const float *got,
                         const float *want, size_t n, double tol)
{
    err_stats e = err_compare(got, want, n);
    if (e.nonfinite || !(e.normwise <= tol))
        fail_msg("%s: %s on %s: normwise %.3g (tol %.1g), maxabs %.3g, %zu non-finite", what, im->name,
                 shape_str(p), e.normwise, tol, e.maxabs, e.nonfinite);
}
static void expect_equal(const char *what, const conv_impl *im, const conv_problem *p, const float *got,
                         const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof(float)))
            fail_msg("%s: %s on %s: element %zu is %.9g, expected %.9g", what, im->name, shape_str(p), i,
                     got[i], want[i]);
}

/* The state eq. (2) says: the last K-1 valid entries of x_ext. */
static float *expected_state(const conv_problem *p)
{
    const int S = p->K - 1;
    float *s = malloc(sizeof(float) * (ns(p) ? ns(p) : 1));
    assert_non_null(s);
    for (int b = 0; b < p->B; b++) {
        const int len = p->seq_len ? p->seq_len[b] : p->T;
        for (int c = 0; c < p->C; c++)
            for (int i = 0; i < S; i++) s[((size_t)b * p->C + c) * S + i] = xext(p, b, len + i, c);
    }
    return s;
}

/* ------------------------------------------------------------------ */
/* Shape grid                                                           */
/* ------------------------------------------------------------------ */

static const int GRID_T[] = {1, 2, 3, 4, 5, 64, 333};
static const int GRID_B[] = {1, 3};
static const int GRID_C[] = {1, 7, 8, 64, 6144};
static const int GRID_K[] = {1, 2, 4};
#define N(a) (int)(sizeof(a) / sizeof(a)[0])

/* Each implementation against ref, and ref and each implementation against
 * the one-hot closed form, over the whole grid. */
static void grid_body(void)
{
    const conv_impl *impls[MAX_IMPLS + 1];
    int n = list_impls(impls + 1);
    impls[0] = &conv_ref_impl;
    assert_non_null(impls[0]);
    int idx = 0;
    for (int ti = 0; ti < N(GRID_T); ti++)
        for (int bi = 0; bi < N(GRID_B); bi++)
            for (int ci = 0; ci < N(GRID_C); ci++)
                for (int ki = 0; ki < N(GRID_K); ki++, idx++) {
                    const int T = GRID_T[ti], B = GRID_B[bi], C = GRID_C[ci], K = GRID_K[ki];
                    const int with_state = idx % 2 == 0, act = idx % 3 != 2;
                    conv_problem p = make_problem(B, T, C, K, with_state, act, 1000 + idx);
                    run_ok(impls[0], &p, 0);
                    float *ry = test_fdup(p.y, nx(&p)), *rs = test_fdup(p.state_out, ns(&p));
                    float *es = expected_state(&p);
                    expect_equal("ref state", impls[0], &p, rs, es, ns(&p));
                    for (int i = 1; i <= n; i++) {
                        for (size_t k = 0; k < nx(&p); k++) p.y[k] = NAN;
                        for (size_t k = 0; k < ns(&p); k++) p.state_out[k] = NAN;
                        run_ok(impls[i], &p, 0);
                        expect_close("y vs ref", impls[i], &p, p.y, ry, nx(&p), impls[i]->claim_tol);
                        expect_equal("state", impls[i], &p, p.state_out, es, ns(&p));
                    }
                    /* one-hot weight at column j(c) = c mod K: y = act(x_ext[t + j]) */
                    float *w = (float *)p.weight, *oh = malloc(sizeof(float) * nx(&p));
                    assert_non_null(oh);
                    for (int c = 0; c < C; c++)
                        for (int j = 0; j < K; j++) w[(size_t)c * K + j] = j == c % K ? 1.0f : 0.0f;
                    for (int b = 0; b < B; b++)
                        for (int t = 0; t < T; t++)
                            for (int c = 0; c < C; c++) {
                                double v = xext(&p, b, t + c % K, c);
                                oh[((size_t)b * T + t) * C + c] = (float)(act ? silu(v) : v);
                            }
                    for (int i = 0; i <= n; i++) {
                        for (size_t k = 0; k < nx(&p); k++) p.y[k] = NAN;
                        run_ok(impls[i], &p, 0);
                        expect_close("one-hot shift", impls[i], &p, p.y, oh, nx(&p), 1e-6);
                    }
                    free(oh); free(ry); free(rs); free(es);
                    free_problem(&p);
                }
}

/* The grid at every ISA level the host has (direct: generic C, then its AVX2 path, which
 * avx512 and avx512-bf16 also take), each recorded for make test's summary
 * (tests/support/isa_levels.h); levels above the host's are printed as skipped. */
static void grid_level(cpu_isa_level level, void *ctx)
{
    (void)ctx;
    assert_int_equal(cpu_isa(), level);
    grid_body();
}
static void grid_every_isa_body(void) { isa_levels_each("test_conv", grid_level, NULL); }

/* The same numbers whatever the thread count (each output is computed the
 * same way in every decomposition), so equality is exact. */
static void thread_counts_body(void)
{
    const conv_impl *impls[MAX_IMPLS];
    int n = list_impls(impls);
    /* T = 77; and decode's one token, whose channels are split over the threads from C = 2048
     * (conv_direct's one_token), with C not a multiple of 16 too */
    static const int shapes[][2] = {{77, 6144}, {1, 6144}, {1, 4133}};
    for (int i = 0; i < n * 3; i++) {
        const int sh = i % 3;
        const conv_impl *im = impls[i / 3];
        conv_problem p = make_problem(2, shapes[sh][0], shapes[sh][1], 4, 1, 1, 7 + sh);
        run_ok(im, &p, 1);
        float *y1 = test_fdup(p.y, nx(&p)), *s1 = test_fdup(p.state_out, ns(&p));
        for (int th = 2; th <= 5; th++) {
            for (size_t k = 0; k < nx(&p); k++) p.y[k] = NAN;
            run_ok(im, &p, th);
            expect_equal("y across threads", im, &p, p.y, y1, nx(&p));
            expect_equal("state across threads", im, &p, p.state_out, s1, ns(&p));
        }
        free(y1); free(s1);
        free_problem(&p);
    }
}

/* ------------------------------------------------------------------ */
/* State handling                                                       */
/* ------------------------------------------------------------------ */

/* One call over [0, T) equals calls over [0, T1) and [T1, T) with the state
 * carried, for T1 below, at and above K-1. */
static void state_carry_body(void)
{
    const conv_impl *impls[MAX_IMPLS + 1];
    int n = list_impls(impls + 1);
    impls[0] = &conv_ref_impl;
    const int T = 40, C = 67, B = 2;
    const int Ks[] = {2, 4}, T1s[] = {1, 2, 3, 4, 17, 39};
    for (int ki = 0; ki < N(Ks); ki++)
        for (int s0 = 0; s0 < 2; s0++) {
            const int K = Ks[ki];
            conv_problem whole = make_problem(B, T, C, K, s0, 1, 50 + ki);
            run_ok(impls[0], &whole, 1);
            for (int i = 0; i <= n; i++)
                for (int ti = 0; ti < N(T1s); ti++) {
                    const int T1 = T1s[ti], T2 = T - T1;
                    float *x1 = malloc(sizeof(float) * B * T1 * C), *x2 = malloc(sizeof(float) * B * T2 * C);
                    float *y = test_fnan(nx(&whole)), *y1 = test_fnan((size_t)B * T1 * C), *y2 = test_fnan((size_t)B * T2 * C);
                    float *mid = test_fnan(ns(&whole)), *fin = test_fnan(ns(&whole));
                    assert_non_null(x1); assert_non_null(x2);
                    for (int b = 0; b < B; b++) {
                        memcpy(x1 + (size_t)b * T1 * C, whole.x + (size_t)b * T * C, sizeof(float) * T1 * C);
                        memcpy(x2 + (size_t)b * T2 * C, whole.x + ((size_t)b * T + T1) * C, sizeof(float) * T2 * C);
                    }
                    conv_problem a = whole, c2 = whole;
                    a.T = T1; a.x = x1; a.y = y1; a.state_out = mid;
                    c2.T = T2; c2.x = x2; c2.y = y2; c2.state_in = mid; c2.state_out = fin;
                    run_ok(impls[i], &a, 0);
                    run_ok(impls[i], &c2, 0);
                    for (int b = 0; b < B; b++) {
                        memcpy(y + (size_t)b * T * C, y1 + (size_t)b * T1 * C, sizeof(float) * T1 * C);
                        memcpy(y + ((size_t)b * T + T1) * C, y2 + (size_t)b * T2 * C, sizeof(float) * T2 * C);
                    }
                    expect_close("carried y", impls[i], &a, y, whole.y, nx(&whole), 1e-6);
                    expect_equal("carried state", impls[i], &a, fin, whole.state_out, ns(&whole));
                    free(x1); free(x2); free(y); free(y1); free(y2); free(mid); free(fin);
                }
            free_problem(&whole);
        }
}

/* state_out == state_in, including T < K-1 where the old state shifts. */
static void state_in_place_body(void)
{
    const conv_impl *impls[MAX_IMPLS + 1];
    int n = list_impls(impls + 1);
    impls[0] = &conv_ref_impl;
    const int Ts[] = {1, 2, 3, 9, 100};
    for (int i = 0; i <= n; i++)
        for (int ti = 0; ti < N(Ts); ti++) {
            conv_problem p = make_problem(3, Ts[ti], 6144, 4, 1, 1, 300 + ti);
            run_ok(&conv_ref_impl, &p, 1);
            float *ry = test_fdup(p.y, nx(&p)), *es = expected_state(&p);
            float *s = test_fdup(p.state_in, ns(&p));
            conv_problem q = p;
            q.state_in = q.state_out = s;
            for (size_t k = 0; k < nx(&p); k++) q.y[k] = NAN;
            run_ok(impls[i], &q, 0);
            expect_close("in-place y", impls[i], &q, q.y, ry, nx(&p), 1e-6);
            expect_equal("in-place state", impls[i], &q, s, es, ns(&p));
            free(s); free(ry); free(es);
            free_problem(&p);
        }
}

/* Right padding: outputs past seq_len are exactly 0, the state holds the
 * last valid inputs, and seq_len = 0 leaves the state as it was (zeros when
 * state_in is NULL). */
static void padding_body(void)
{
    const conv_impl *impls[MAX_IMPLS + 1];
    int n = list_impls(impls + 1);
    impls[0] = &conv_ref_impl;
    const int T = 37, C = 70, B = 5, K = 4;
    const int32_t lens[5] = {37, 0, 2, 3, 20};
    for (int i = 0; i <= n; i++)
        for (int s0 = 0; s0 < 2; s0++)
            for (int th = 1; th <= 2; th++) {
                conv_problem p = make_problem(B, T, C, K, s0, 1, 400 + s0);
                int32_t *sl = malloc(sizeof lens);
                assert_non_null(sl);
                memcpy(sl, lens, sizeof lens);
                p.seq_len = sl;
                run_ok(impls[i], &p, th);
                float *es = expected_state(&p);
                expect_equal("padded state", impls[i], &p, p.state_out, es, ns(&p));
                for (int b = 0; b < B; b++) {
                    for (int t = lens[b]; t < T; t++)
                        for (int c = 0; c < C; c++)
                            if (p.y[((size_t)b * T + t) * C + c] != 0.0f || signbit(p.y[((size_t)b * T + t) * C + c]))
                                fail_msg("%s: padded y[%d,%d,%d] = %g, expected +0", impls[i]->name, b, t, c,
                                         p.y[((size_t)b * T + t) * C + c]);
                    if (lens[b] == 0)
                        for (size_t k = 0; k < (size_t)C * (K - 1); k++) {
                            const size_t at = (size_t)b * C * (K - 1) + k;
                            const float want = p.state_in ? p.state_in[at] : 0.0f;
                            if (memcmp(&p.state_out[at], &want, sizeof want))
                                fail_msg("%s: seq_len 0 changed the state", impls[i]->name);
                        }
                }
                /* valid outputs: the same as an unpadded run on the valid prefix */
                if (i > 0) {
                    conv_problem r = p;
                    r.seq_len = NULL;
                    r.y = test_fnan(nx(&p));
                    r.state_out = NULL;
                    run_ok(&conv_ref_impl, &r, 1);
                    for (int b = 0; b < B; b++)
                        expect_close("padded valid y", impls[i], &p, p.y + (size_t)b * T * C,
                                     r.y + (size_t)b * T * C, (size_t)lens[b] * C, 1e-6);
                    free(r.y);
                }
                free(es);
                free_problem(&p);
            }
}

/* state_out NULL: y is unchanged and nothing else is written. */
static void no_state_out_body(void)
{
    const conv_impl *impls[MAX_IMPLS];
    int n = list_impls(impls);
    for (int i = 0; i < n; i++) {
        conv_problem p = make_problem(2, 9, 40, 4, 1, 1, 11);
        run_ok(&conv_ref_impl, &p, 1);
        float *ry = test_fdup(p.y, nx(&p));
        free(p.state_out);
        p.state_out = NULL;
        for (size_t k = 0; k < nx(&p); k++) p.y[k] = NAN;
        run_ok(impls[i], &p, 0);
        expect_close("y without state_out", impls[i], &p, p.y, ry, nx(&p), 1e-6);
        free(ry);
        free_problem(&p);
    }
}

/* Large |pre-activation|: silu saturates to 0 and to the identity, no NaN. */
static void silu_extremes_body(void)
{
    const conv_impl *impls[MAX_IMPLS];
    int n = list_impls(impls);
    for (int i = 0; i < n; i++) {
        conv_problem p = make_problem(1, 16, 33, 1, 0, 1, 12);
        float *x = (float *)p.x, *w = (float *)p.weight;
        for (int c = 0; c < 33; c++) w[c] = 1.0f;
        const float v[8] = {-200.0f, -90.0f, -87.5f, -20.0f, 0.0f, 20.0f, 90.0f, 1e30f};
        for (size_t k = 0; k < nx(&p); k++) x[k] = v[k % 8];
        conv_problem r = p;
        r.y = test_fnan(nx(&p));
        run_ok(&conv_ref_impl, &r, 1);
        run_ok(impls[i], &p, 0);
        for (size_t k = 0; k < nx(&p); k++)
            if (!isfinite(p.y[k]) || fabs((double)p.y[k] - r.y[k]) > 1e-6 * fabs((double)r.y[k]) + 1e-30)
                fail_msg("%s: silu(%g) = %g, ref %g", impls[i]->name, x[k], p.y[k], r.y[k]);
        free(r.y);
        free_problem(&p);
    }
}

/* ------------------------------------------------------------------ */
/* Invalid problems                                                     */
/* ------------------------------------------------------------------ */

static void expect_reject(const conv_problem *p, const conv_opts *o, const char *needle)
{
    char err[256] = "";
    for (int i = 0; i < conv_n_impls; i++) {
        err[0] = 0;
        if (!conv_run(&conv_impls[i], p, o, err, sizeof err))
            fail_msg("%s accepted a problem that should fail with '%s'", conv_impls[i].name, needle);
        if (!strstr(err, needle)) fail_msg("message '%s' does not mention '%s'", err, needle);
    }
}

static void invalid_body(void)
{
    conv_problem good = make_problem(2, 5, 8, 4, 1, 1, 13);
    char err[256];
    assert_int_equal(conv_validate(&good, 1, err, sizeof err), 0);
    conv_problem p;
    p = good; p.K = 0; expect_reject(&p, NULL, "every dimension must be positive");
    p = good; p.C = 0; expect_reject(&p, NULL, "C=0");
    p = good; p.B = -1; expect_reject(&p, NULL, "B=-1");
    p = good; p.T = 0; expect_reject(&p, NULL, "T=0");
    p = good; p.K = CONV_K_MAX + 1; expect_reject(&p, NULL, "kernel width");
    p = good; p.x = NULL; expect_reject(&p, NULL, "missing tensor 'x'");
    p = good; p.weight = NULL; expect_reject(&p, NULL, "missing tensor 'weight'");
    p = good; p.y = NULL; expect_reject(&p, NULL, "missing tensor 'y'");
    p = good; p.apply_silu = 2; expect_reject(&p, NULL, "apply_silu=2");
    int32_t bad1[2] = {5, 6}, bad2[2] = {-1, 0};
    p = good; p.seq_len = bad1; expect_reject(&p, NULL, "seq_len[1]=6 outside [0, T=5]");
    p = good; p.seq_len = bad2; expect_reject(&p, NULL, "seq_len[0]=-1");
    p = good; p.y = (float *)p.x; expect_reject(&p, NULL, "y overlaps 'x'");
    p = good; p.state_out = (float *)p.state_in + 1; expect_reject(&p, NULL, "partly overlaps");
    p = good; p.state_out = (float *)p.x; expect_reject(&p, NULL, "state_out overlaps");
    conv_opts o = {.threads = -1};
    p = good; expect_reject(&p, &o, "thread count -1");
    assert_int_not_equal(conv_run(NULL, &good, NULL, err, sizeof err), 0);
    assert_int_not_equal(conv_validate(NULL, 0, err, sizeof err), 0);
    /* non-finite inputs: only the value check (CLI, golden loaders) scans for them */
    ((float *)good.x)[3] = INFINITY;
    assert_int_not_equal(conv_validate(&good, 1, err, sizeof err), 0);
    assert_non_null(strstr(err, "input 'x' has a non-finite value (inf) at flat index 3"));
    assert_int_equal(conv_validate(&good, 0, err, sizeof err), 0);
    assert_null(conv_find("nope"));
    free_problem(&good);
}

/* ------------------------------------------------------------------ */
/* Checkpoints (conv.h, docs/conv.md §"Checkpoints")                    */
/* ------------------------------------------------------------------ */

/* One checkpoint problem: every implementation (ref too) at every ISA level
 * this CPU has; the windows against the math (copies of x_ext, so exact),
 * y and state_out bitwise those of the same call without checkpoints, and a
 * checkpoint at or past a sequence's length equal to its state_out. */
static void ckpt_case(int B, int T, int C, int K, const int32_t *lens, const int32_t *at, int n, int in_place,
                      uint64_t seed)
{
    const conv_impl *impls[MAX_IMPLS + 1];
    impls[0] = &conv_ref_impl;
    const int ni = 1 + list_impls(impls + 1);
    conv_problem base = make_problem(B, T, C, K, 1, 1, seed);
    if (lens) {
        int32_t *l = malloc(sizeof(int32_t) * B);
        assert_non_null(l);
        memcpy(l, lens, sizeof(int32_t) * B);
        base.seq_len = l;
    }
    const int S = K - 1;
    const size_t nsz = ns(&base);
    float *want = test_fnan(nsz * n);
    for (int k = 0; k < n; k++)
        for (int b = 0; b < B; b++) {
            const int len = base.seq_len ? base.seq_len[b] : T, e0 = at[k] + 1 < len ? at[k] + 1 : len;
            for (int c = 0; c < C; c++)
                for (int i = 0; i < S; i++) want[(((size_t)k * B + b) * C + c) * S + i] = xext(&base, b, e0 + i, c);
        }
    float *s0 = test_fdup(base.state_in, nsz);
    float *y0 = test_fnan(nx(&base)), *so0 = test_fnan(nsz), *ck = test_fnan(nsz * n);
    for (int isa = ISA_GENERIC; isa <= ISA_TOP; isa++) {
        if (isa > (int)cpu_isa_best()) {
            isa_levels_note("test_conv", (cpu_isa_level)isa, 0);
            continue;
        }
        cpu_isa_force((cpu_isa_level)isa);
        isa_levels_note("test_conv", (cpu_isa_level)isa, 1);
        for (int i = 0; i < ni; i++) {
            conv_problem p = base; /* without checkpoints */
            p.y = y0;
            p.state_out = so0;
            for (size_t j = 0; j < nx(&p); j++) y0[j] = NAN;
            memcpy((float *)p.state_in, s0, sizeof(float) * nsz);
            if (in_place) p.state_out = (float *)p.state_in;
            run_ok(impls[i], &p, 0);
            if (in_place) memcpy(so0, p.state_in, sizeof(float) * nsz);
            conv_problem q = base; /* with them */
            memcpy((float *)q.state_in, s0, sizeof(float) * nsz);
            if (in_place) q.state_out = (float *)q.state_in;
            for (size_t j = 0; j < nx(&q); j++) q.y[j] = NAN;
            for (size_t j = 0; j < nsz * n; j++) ck[j] = NAN;
            q.n_checkpoints = n;
            q.checkpoint_t = at;
            q.checkpoint_states = ck;
            run_ok(impls[i], &q, 0);
            expect_equal("checkpoint windows", impls[i], &q, ck, want, nsz * n);
            expect_equal("y with checkpoints", impls[i], &q, q.y, y0, nx(&q));
            expect_equal("state_out with checkpoints", impls[i], &q, q.state_out, so0, nsz);
            for (int k = 0; k < n; k++)
                for (int b = 0; b < B; b++)
                    if ((base.seq_len ? base.seq_len[b] : T) <= at[k])
                        expect_equal("checkpoint past seq_len", impls[i], &q, ck + ((size_t)k * B + b) * C * S,
                                     q.state_out + (size_t)b * C * S, (size_t)C * S);
        }
    }
    cpu_isa_force(ISA_AUTO);
    memcpy((float *)base.state_in, s0, sizeof(float) * nsz);
    free(want); free(s0); free(y0); free(so0); free(ck);
    free_problem(&base);
}

static void checkpoints_body(void)
{
    static const int32_t every[] = {0, 1, 2, 3, 4, 5, 6, 7};
    ckpt_case(1, 2, 6144, 4, NULL, every, 1, 0, 31);  /* verify windows, Qwen3.5-0.8B's C */
    ckpt_case(1, 9, 6144, 4, NULL, every, 8, 1, 32);  /* in place */
    static const int32_t lens[] = {9, 0, 2, 5}, at[] = {0, 1, 4, 8};
    ckpt_case(4, 9, 37, 4, lens, at, 4, 0, 33);       /* padded: checkpoints past 0, 2 and 5 tokens */
    ckpt_case(3, 3, 20, 6, NULL, every, 3, 1, 34);    /* window (5) longer than T: the state shows through */
    static const int32_t one[] = {0};
    ckpt_case(2, 1, 6144, 4, NULL, one, 1, 1, 35);    /* T = 1 decode, one checkpoint */
    static const int32_t lens1[] = {1, 0};
    ckpt_case(2, 1, 40, 4, lens1, one, 1, 0, 36);
    ckpt_case(2, 1, 53, 4, lens1, one, 1, 1, 38);   /* T = 1 in place, padded, 53 = 3 x 16 + 5 channels */
}

static void checkpoints_invalid_body(void)
{
    conv_problem good = make_problem(2, 5, 8, 4, 1, 1, 37);
    float *ck = test_fnan(ns(&good) * 6);
    static const int32_t unsorted[] = {3, 1}, repeated[] = {2, 2}, negative[] = {-1}, past[] = {5},
                         six[] = {0, 1, 2, 3, 4, 4};
    conv_problem p;
    p = good; p.n_checkpoints = 2; p.checkpoint_t = unsorted; p.checkpoint_states = ck;
    expect_reject(&p, NULL, "checkpoint_t[1]=1 is not after checkpoint_t[0]=3");
    p.checkpoint_t = repeated; expect_reject(&p, NULL, "strictly ascending");
    p.n_checkpoints = 1; p.checkpoint_t = negative; expect_reject(&p, NULL, "checkpoint_t[0]=-1 outside [0, T=5)");
    p.checkpoint_t = past; expect_reject(&p, NULL, "checkpoint_t[0]=5 outside");
    p.n_checkpoints = 6; p.checkpoint_t = six; expect_reject(&p, NULL, "n_checkpoints=6 outside [0, T=5]");
    p.n_checkpoints = -1; expect_reject(&p, NULL, "n_checkpoints=-1");
    p.n_checkpoints = 1; p.checkpoint_t = NULL; expect_reject(&p, NULL, "no checkpoint_t");
    p.checkpoint_t = unsorted + 1; p.checkpoint_states = NULL; expect_reject(&p, NULL, "no checkpoint_states");
    p.checkpoint_states = good.state_out; /* a valid position, a buffer that is not separate */
    expect_reject(&p, NULL, "checkpoint_states overlaps 'state_out'");
    p.checkpoint_states = good.y; expect_reject(&p, NULL, "checkpoint_states overlaps 'y'");
    free(ck);
    free_problem(&good);
}

/* cmocka entry points */
static void grid(void **st) { (void)st; grid_body(); }
static void grid_every_isa(void **st) { (void)st; grid_every_isa_body(); }
static void thread_counts(void **st) { (void)st; thread_counts_body(); }
static void state_carry(void **st) { (void)st; state_carry_body(); }
static void state_in_place(void **st) { (void)st; state_in_place_body(); }
static void padding(void **st) { (void)st; padding_body(); }
static void no_state_out(void **st) { (void)st; no_state_out_body(); }
static void silu_extremes(void **st) { (void)st; silu_extremes_body(); }
static void invalid(void **st) { (void)st; invalid_body(); }
static void checkpoints(void **st) { (void)st; checkpoints_body(); }
static void checkpoints_invalid(void **st) { (void)st; checkpoints_invalid_body(); }

int main(void)
{
    const struct CMUnitTest grid_tests[] = {
        cmocka_unit_test(grid),
        cmocka_unit_test(grid_every_isa),
        cmocka_unit_test(thread_counts),
    };
    const struct CMUnitTest state_tests[] = {
        cmocka_unit_test(state_carry),
        cmocka_unit_test(state_in_place),
        cmocka_unit_test(padding),
        cmocka_unit_test(no_state_out),
        cmocka_unit_test(silu_extremes),
        cmocka_unit_test(checkpoints),
    };
    const struct CMUnitTest invalid_tests[] = {
        cmocka_unit_test(invalid),
        cmocka_unit_test(checkpoints_invalid),
    };
    int fails = 0;
    fails += cmocka_run_group_tests_name("conv grid", grid_tests, NULL, NULL);
    fails += cmocka_run_group_tests_name("conv state, padding, silu", state_tests, NULL, NULL);
    fails += cmocka_run_group_tests_name("conv invalid", invalid_tests, NULL, NULL);
    return fails ? 1 : 0;
}
