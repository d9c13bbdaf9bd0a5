/* test_conv_grad.c - cmocka suite for the short conv's backward
 * (kernels/conv/conv_grad.h, docs/conv.md "Backward", ref/conv_grad_ref.c).
 *
 * 1. ref against central finite differences of the loss
 *      L = sum(dy . y) + sum(d_state_out . state_out)
 *    evaluated by a forward in double (conv_forward_ref_f64): every input
 *    (x, weight, state_in), with and without SiLU, with d_state_out, padded
 *    sequences (seq_len 0, below K-1, T < K-1).
 * 2. every implementation of conv_grad_impls[] against ref (normwise per
 *    output tensor, its claim_tol) at every ISA level this CPU has (the
 *    others are printed as skipped), outputs NaN-filled before each run, dx
 *    exactly +0 at padding, d_state_in untouched when there is no state_in;
 *    the worst errors are printed (docs/conv.md "Backward").
 * 3. bitwise the same for any thread count; refusals of bad problems.
 *
 * Speed: `q35lab bench conv --grad` (docs/conv.md "Backward").
 */
#include "kernels/conv/conv_grad.h"
#include "kernels/cpu_features.h"
#include "ref/conv_grad_ref.h"
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
#define N(a) (int)(sizeof(a) / sizeof(a)[0])

/* ------------------------------------------------------------------ */
/* Inputs                                                               */
/* ------------------------------------------------------------------ */

static test_rng rng = {0x9e3779b97f4a7c15ull}; /* this suite's stream (tests/support/arrays.h) */

/* A backward problem and the forward it owns. */
typedef struct {
    conv_problem f;
    conv_grad_problem g;
} gcase;

static size_t nx(const conv_problem *p) { return (size_t)p->B * p->T * p->C; }
static size_t nw(const conv_problem *p) { return (size_t)p->C * p->K; }
static size_t ns(const conv_problem *p) { return (size_t)p->B * p->C * (p->K - 1); }

/* Random x, weight, dy, and as asked state_in, d_state_out, seq_len (copied);
 * outputs NaN-filled.  g.fwd points into the struct: use it in place. */
static void make_case(gcase *c, int B, int T, int C, int K, int with_state, int silu, int with_dso,
                      const int32_t *lens, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    conv_problem *p = &c->f;
    p->B = B; p->T = T; p->C = C; p->K = K; p->apply_silu = silu;
    test_rng_seed(&rng, seed);
    p->x = test_frand(&rng, nx(p), 2.0f);
    p->weight = test_frand(&rng, nw(p), 1.0f);
    p->state_in = with_state ? test_frand(&rng, ns(p), 2.0f) : NULL;
    if (lens) {
        int32_t *l = malloc(sizeof(int32_t) * B);
        assert_non_null(l);
        memcpy(l, lens, sizeof(int32_t) * B);
        p->seq_len = l;
    }
    c->g.fwd = p;
    c->g.dy = test_frand(&rng, nx(p), 1.0f);
    c->g.d_state_out = with_dso ? test_frand(&rng, ns(p), 1.0f) : NULL;
    c->g.dx = test_fnan(nx(p));
    c->g.dweight = test_fnan(nw(p));
    c->g.d_state_in = test_fnan(ns(p)); /* given even without state_in: must stay untouched then */
}
static void free_case(gcase *c)
{
    free((void *)c->f.x); free((void *)c->f.weight); free((void *)c->f.state_in); free((void *)c->f.seq_len);
    free((void *)c->g.dy); free((void *)c->g.d_state_out);
    free(c->g.dx); free(c->g.dweight); free(c->g.d_state_in);
}

static const char *shape_str(const conv_problem *p)
{
    static char buf[160];
    char lens[64] = "";
    if (p->seq_len) {
        int o = snprintf(lens, sizeof lens, " len");
        for (int b = 0; b < p->B && o < (int)sizeof lens - 8; b++) o += snprintf(lens + o, sizeof lens - o, "%s%d",
                                                                                 b ? "," : "=", p->seq_len[b]);
    }
    snprintf(buf, sizeof buf, "B%d T%d C%d K%d%s%s%s (ISA %s)", p->B, p->T, p->C, p->K, p->state_in ? " S0" : "",
             lens, p->apply_silu ? "" : " no-silu", cpu_isa_name(cpu_isa()));
    return buf;
}

static void run_ok(const conv_grad_impl *im, const conv_grad_problem *g, int threads)
{
    char err[256];
    conv_opts o = {.threads = threads};
    if (conv_grad_run(im, g, &o, err, sizeof err)) fail_msg("%s on %s: %s", im->name, shape_str(g->fwd), err);
}

static int list_impls(const conv_grad_impl **out)
{
    int n = 0;
    for (int i = 0; i < conv_grad_n_impls && n < MAX_IMPLS; i++) {
        const conv_grad_impl *im = &conv_grad_impls[i];
        if (im->available && !im->available()) continue;
        out[n++] = im;
    }
    assert_true(n > 0);
    return n;
}

static int valid_len(const conv_problem *p, int b) { return p->seq_len ? p->seq_len[b] : p->T; }

/* dx at padded tokens is exactly +0. */
static void expect_padding_zero(const char *who, const conv_grad_problem *g)
{
    const conv_problem *p = g->fwd;
    for (int b = 0; b < p->B; b++)
        for (int t = valid_len(p, b); t < p->T; t++)
            for (int c = 0; c < p->C; c++) {
                const float v = g->dx[((size_t)b * p->T + t) * p->C + c];
                if (v != 0.0f || signbit(v))
                    fail_msg("%s on %s: padded dx[%d,%d,%d] = %g, expected +0", who, shape_str(p), b, t, c, v);
            }
}

/* ------------------------------------------------------------------ */
/* 1. ref against finite differences                                    */
/* ------------------------------------------------------------------ */

static double *to_f64(const float *a, size_t n)
{
    double *d = malloc(sizeof(double) * (n ? n : 1));
    assert_non_null(d);
    for (size_t i = 0; i < n; i++) d[i] = a ? a[i] : 0.0;
    return d;
}

typedef struct {
    const conv_grad_problem *g;
    double *x, *w, *s;   /* the inputs in double, perturbed one at a time */
    double *y, *so;      /* forward outputs */
} fd_ctx;

static double loss(fd_ctx *k)
{
    const conv_problem *p = k->g->fwd;
    conv_forward_ref_f64(p, k->x, k->w, p->state_in ? k->s : NULL, k->y, k->so);
    double L = 0.0;
    for (size_t i = 0; i < nx(p); i++) L += (double)k->g->dy[i] * k->y[i];
    if (k->g->d_state_out)
        for (size_t i = 0; i < ns(p); i++) L += (double)k->g->d_state_out[i] * k->so[i];
    return L;
}

/* Central differences of L in every entry of a[0..n), against got. */
static void fd_check(fd_ctx *k, const char *name, double *a, size_t n, const float *got)
{
    const double h = 1e-5;
    for (size_t i = 0; i < n; i++) {
        const double a0 = a[i];
        a[i] = a0 + h;
        const double lp = loss(k);
        a[i] = a0 - h;
        const double lm = loss(k);
        a[i] = a0;
        const double fd = (lp - lm) / (2 * h);
        if (!(fabs(fd - got[i]) <= 1e-6 * (1.0 + fabs(fd))))
            fail_msg("ref d%s[%zu] = %.9g, finite differences %.9g, on %s", name, i, got[i], fd,
                     shape_str(k->g->fwd));
    }
}

static void fd_case(int B, int T, int C, int K, int with_state, int silu, int with_dso, const int32_t *lens,
                    uint64_t seed)
{
    gcase c;
    make_case(&c, B, T, C, K, with_state, silu, with_dso, lens, seed);
    const conv_problem *p = &c.f;
    run_ok(&conv_grad_ref_impl, &c.g, 1);
    expect_padding_zero("ref", &c.g);
    if (!p->state_in)
        for (size_t i = 0; i < ns(p); i++)
            if (!isnan(c.g.d_state_in[i])) fail_msg("ref wrote d_state_in without a state_in on %s", shape_str(p));
    fd_ctx k = {&c.g, to_f64(p->x, nx(p)), to_f64(p->weight, nw(p)), to_f64(p->state_in, ns(p)),
                to_f64(NULL, nx(p)), to_f64(NULL, ns(p))};
    fd_check(&k, "x", k.x, nx(p), c.g.dx);
    fd_check(&k, "weight", k.w, nw(p), c.g.dweight);
    if (p->state_in) fd_check(&k, "state_in", k.s, ns(p), c.g.d_state_in);
    free(k.x); free(k.w); free(k.s); free(k.y); free(k.so);
    free_case(&c);
}

static void finite_differences_body(void)
{
    for (int silu = 0; silu <= 1; silu++) {
        fd_case(2, 6, 3, 4, 1, silu, 1, NULL, 1);      /* state in, d_state_out */
        fd_case(2, 6, 3, 4, 0, silu, 0, NULL, 2);      /* zero state, no d_state_out */
        fd_case(1, 5, 2, 4, 0, silu, 1, NULL, 3);      /* zero state, d_state_out */
        fd_case(2, 2, 3, 4, 1, silu, 1, NULL, 4);      /* T < K-1: the old state shows through to state_out */
        static const int32_t lens[4] = {7, 0, 2, 4};   /* 0, below K-1, full */
        fd_case(4, 7, 3, 4, 1, silu, 1, lens, 5);
        fd_case(4, 7, 3, 4, 0, silu, 1, lens, 6);
        static const int32_t lens2[2] = {1, 0};
        fd_case(2, 2, 2, 4, 1, silu, 1, lens2, 7);     /* T < K-1 and padded */
        fd_case(2, 5, 3, 1, 0, silu, 0, NULL, 8);      /* K = 1: no state */
        static const int32_t lens3[2] = {1, 4};
        fd_case(2, 4, 2, 6, 1, silu, 1, lens3, 9);     /* K = 6, window longer than T */
    }
}

/* ------------------------------------------------------------------ */
/* 2. implementations against ref                                       */
/* ------------------------------------------------------------------ */

typedef struct {
    double dx, dw, dsi;
} worst;
static worst worst_seen[MAX_IMPLS];

static double compare(const char *what, const conv_grad_impl *im, const conv_problem *p, const float *got,
                      const float *want, size_t n, double tol)
{
    err_stats e = err_compare(got, want, n);
    if (e.nonfinite || !(e.normwise <= tol))
        fail_msg("%s: %s on %s: normwise %.3g (tol %.1g), maxabs %.3g, %zu non-finite", what, im->name,
                 shape_str(p), e.normwise, tol, e.maxabs, e.nonfinite);
    return e.normwise;
}

/* One problem: ref once, then every implementation at every ISA level. */
static void vs_ref_case(gcase *c)
{
    const conv_grad_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls);
    const conv_problem *p = &c->f;
    conv_grad_problem *g = &c->g;
    run_ok(&conv_grad_ref_impl, g, 1);
    float *rdx = malloc(sizeof(float) * nx(p)), *rdw = malloc(sizeof(float) * nw(p)),
          *rds = malloc(sizeof(float) * (ns(p) ? ns(p) : 1));
    assert_non_null(rdx); assert_non_null(rdw); assert_non_null(rds);
    memcpy(rdx, g->dx, sizeof(float) * nx(p));
    memcpy(rdw, g->dweight, sizeof(float) * nw(p));
    memcpy(rds, g->d_state_in, sizeof(float) * ns(p));
    for (int isa = ISA_GENERIC; isa <= (int)cpu_isa_best(); isa++) {
        cpu_isa_force((cpu_isa_level)isa);
        for (int i = 0; i < n; i++) {
            test_fill_nan(g->dx, nx(p));
            test_fill_nan(g->dweight, nw(p));
            test_fill_nan(g->d_state_in, ns(p));
            run_ok(impls[i], g, 0);
            const double tol = impls[i]->claim_tol;
            double e = compare("dx", impls[i], p, g->dx, rdx, nx(p), tol);
            if (e > worst_seen[i].dx) worst_seen[i].dx = e;
            e = compare("dweight", impls[i], p, g->dweight, rdw, nw(p), tol);
            if (e > worst_seen[i].dw) worst_seen[i].dw = e;
            if (p->state_in) {
                e = compare("d_state_in", impls[i], p, g->d_state_in, rds, ns(p), tol);
                if (e > worst_seen[i].dsi) worst_seen[i].dsi = e;
            } else {
                for (size_t k = 0; k < ns(p); k++)
                    if (!isnan(g->d_state_in[k]))
                        fail_msg("%s wrote d_state_in without a state_in on %s", impls[i]->name, shape_str(p));
            }
            expect_padding_zero(impls[i]->name, g);
        }
    }
    cpu_isa_force(ISA_AUTO);
    free(rdx); free(rdw); free(rds);
}

static const int GRID_T[] = {1, 2, 3, 5, 64, 333};
static const int GRID_B[] = {1, 3};
static const int GRID_C[] = {1, 7, 8, 64, 65, 300, 6144};
static const int GRID_K[] = {1, 2, 4, 6};

static void vs_ref_grid_body(void)
{
    /* vs_ref_case runs every level up to cpu_isa_best(); make test's summary gets each level
     * (tests/support/isa_levels.h), those above the host's printed as skipped. */
    for (int isa = ISA_GENERIC; isa <= ISA_TOP; isa++)
        isa_levels_note("test_conv_grad", (cpu_isa_level)isa, isa <= (int)cpu_isa_best());
    int idx = 0;
    for (int ti = 0; ti < N(GRID_T); ti++)
        for (int bi = 0; bi < N(GRID_B); bi++)
            for (int ci = 0; ci < N(GRID_C); ci++)
                for (int ki = 0; ki < N(GRID_K); ki++, idx++) {
                    const int T = GRID_T[ti], B = GRID_B[bi], C = GRID_C[ci], K = GRID_K[ki];
                    if (C == 6144 && T > 64) continue; /* the long rows are covered at T = 64 */
                    const int with_state = idx % 2 == 0, silu = idx % 3 != 2, dso = idx % 4 != 3;
                    int32_t lens[3];
                    const int padded = B == 3 && idx % 5 < 3;
                    if (padded) { lens[0] = T; lens[1] = 0; lens[2] = T / 2; }
                    gcase c;
                    make_case(&c, B, T, C, K, with_state, silu, dso, padded ? lens : NULL, 2000 + idx);
                    vs_ref_case(&c);
                    free_case(&c);
                }
}

/* Long sequences: dweight sums B*T terms per channel in fp32. */
static void vs_ref_long_body(void)
{
    static const int32_t lens[2] = {4096, 3001};
    gcase c;
    make_case(&c, 2, 4096, 72, 4, 1, 1, 1, lens, 77);
    vs_ref_case(&c);
    free_case(&c);
    make_case(&c, 1, 512, 6144, 4, 1, 1, 1, NULL, 78); /* Qwen3.5-0.8B's C, prefill */
    vs_ref_case(&c);
    free_case(&c);
}

static void report_worst_body(void)
{
    const conv_grad_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls);
    for (int i = 0; i < n; i++)
        printf("[   INFO   ] conv_grad %s vs ref, worst normwise over the grid and every ISA level: dx %.3g, "
               "dweight %.3g, d_state_in %.3g (claim %.1g)\n",
               impls[i]->name, worst_seen[i].dx, worst_seen[i].dw, worst_seen[i].dsi, impls[i]->claim_tol);
}

/* Bitwise the same for any thread count (a channel block is one task). */
static void thread_counts_body(void)
{
    const conv_grad_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls);
    static const int32_t lens[2] = {77, 30};
    for (int i = 0; i < n; i++) {
        gcase c;
        make_case(&c, 2, 77, 6144 + 24, 4, 1, 1, 1, lens, 91);
        conv_grad_problem *g = &c.g;
        const conv_problem *p = &c.f;
        run_ok(impls[i], g, 1);
        float *dx1 = malloc(sizeof(float) * nx(p)), *dw1 = malloc(sizeof(float) * nw(p)),
              *ds1 = malloc(sizeof(float) * ns(p));
        assert_non_null(dx1); assert_non_null(dw1); assert_non_null(ds1);
        memcpy(dx1, g->dx, sizeof(float) * nx(p));
        memcpy(dw1, g->dweight, sizeof(float) * nw(p));
        memcpy(ds1, g->d_state_in, sizeof(float) * ns(p));
        for (int th = 2; th <= 5; th++) {
            test_fill_nan(g->dx, nx(p)); test_fill_nan(g->dweight, nw(p)); test_fill_nan(g->d_state_in, ns(p));
            run_ok(impls[i], g, th);
            if (memcmp(g->dx, dx1, sizeof(float) * nx(p)) || memcmp(g->dweight, dw1, sizeof(float) * nw(p)) ||
                memcmp(g->d_state_in, ds1, sizeof(float) * ns(p)))
                fail_msg("%s: %d threads differ from 1 on %s", impls[i]->name, th, shape_str(p));
        }
        free(dx1); free(dw1); free(ds1);
        free_case(&c);
    }
}

/* ------------------------------------------------------------------ */
/* 3. refusals                                                          */
/* ------------------------------------------------------------------ */

static void expect_reject(const conv_grad_problem *g, const conv_opts *o, const char *needle)
{
    char err[256];
    const conv_grad_impl *all[MAX_IMPLS + 1];
    int n = 0;
    all[n++] = &conv_grad_ref_impl;
    for (int i = 0; i < conv_grad_n_impls && n <= MAX_IMPLS; i++) all[n++] = &conv_grad_impls[i];
    for (int i = 0; i < n; i++) {
        err[0] = 0;
        if (!conv_grad_run(all[i], g, o, err, sizeof err))
            fail_msg("%s accepted a problem that should fail with '%s'", all[i]->name, needle);
        if (!strstr(err, needle)) fail_msg("message '%s' does not mention '%s'", err, needle);
    }
}

static void invalid_body(void)
{
    gcase c;
    make_case(&c, 2, 5, 8, 4, 1, 1, 1, NULL, 13);
    char err[256];
    const conv_grad_problem good = c.g;
    assert_int_equal(conv_grad_validate(&good, 1, err, sizeof err), 0);
    /* the forward's y, state_out and checkpoints are not read, so not needed */
    conv_problem f = c.f, fb;
    f.y = NULL; f.state_out = NULL; f.n_checkpoints = 3;
    conv_grad_problem g = good;
    g.fwd = &f;
    assert_int_equal(conv_grad_validate(&g, 1, err, sizeof err), 0);
    g = good; g.fwd = NULL;
    expect_reject(&g, NULL, "no forward problem");
    g = good; g.dy = NULL; expect_reject(&g, NULL, "missing tensor 'dy'");
    g = good; g.dx = NULL; expect_reject(&g, NULL, "missing tensor 'dx'");
    g = good; g.dweight = NULL; expect_reject(&g, NULL, "missing tensor 'dweight'");
    g = good; g.d_state_in = NULL; expect_reject(&g, NULL, "missing tensor 'd_state_in'");
    /* the forward's own checks */
    fb = c.f; fb.K = 0; g = good; g.fwd = &fb; expect_reject(&g, NULL, "every dimension must be positive");
    fb = c.f; fb.x = NULL; expect_reject(&g, NULL, "missing tensor 'x'");
    fb = c.f; fb.apply_silu = 2; expect_reject(&g, NULL, "apply_silu=2");
    int32_t bad[2] = {5, 6};
    fb = c.f; fb.seq_len = bad; expect_reject(&g, NULL, "seq_len[1]=6 outside [0, T=5]");
    /* overlaps */
    g = good; g.dx = (float *)c.f.x; expect_reject(&g, NULL, "output 'dx' overlaps input 'x'");
    g = good; g.dx = (float *)good.dy; expect_reject(&g, NULL, "output 'dx' overlaps input 'dy'");
    g = good; g.dweight = (float *)c.f.weight; expect_reject(&g, NULL, "output 'dweight' overlaps input 'weight'");
    g = good; g.d_state_in = (float *)c.f.state_in + 1;
    expect_reject(&g, NULL, "output 'd_state_in' overlaps input 'state_in'");
    g = good; g.d_state_in = (float *)good.d_state_out; expect_reject(&g, NULL, "overlaps input 'd_state_out'");
    g = good; g.d_state_in = good.dx + 3; expect_reject(&g, NULL, "outputs 'dx' and 'd_state_in' overlap");
    g = good; g.dweight = good.dx; expect_reject(&g, NULL, "outputs 'dx' and 'dweight' overlap");
    conv_opts o = {.threads = -1};
    g = good; expect_reject(&g, &o, "thread count -1");
    /* without state_in, d_state_in is ignored: NULL or anything */
    fb = c.f; fb.state_in = NULL; g = good; g.fwd = &fb; g.d_state_in = NULL;
    assert_int_equal(conv_grad_validate(&g, 1, err, sizeof err), 0);
    g.d_state_in = good.dx; /* would overlap, but is not an output here */
    assert_int_equal(conv_grad_validate(&g, 1, err, sizeof err), 0);
    assert_int_not_equal(conv_grad_run(NULL, &good, NULL, err, sizeof err), 0);
    assert_int_not_equal(conv_grad_validate(NULL, 0, err, sizeof err), 0);
    /* non-finite values: only the value check scans for them */
    ((float *)good.dy)[4] = INFINITY;
    assert_int_not_equal(conv_grad_validate(&good, 1, err, sizeof err), 0);
    assert_non_null(strstr(err, "input 'dy' has a non-finite value (inf) at flat index 4"));
    assert_int_equal(conv_grad_validate(&good, 0, err, sizeof err), 0);
    ((float *)good.dy)[4] = 0.0f;
    ((float *)good.d_state_out)[2] = NAN;
    assert_int_not_equal(conv_grad_validate(&good, 1, err, sizeof err), 0);
    assert_non_null(strstr(err, "input 'd_state_out' has a non-finite value"));
    ((float *)good.d_state_out)[2] = 0.0f;
    ((float *)c.f.weight)[1] = NAN;
    assert_int_not_equal(conv_grad_validate(&good, 1, err, sizeof err), 0);
    assert_non_null(strstr(err, "input 'weight' has a non-finite value"));
    assert_null(conv_grad_find("nope"));
    for (int i = 0; i < conv_grad_n_impls; i++)
        assert_ptr_equal(conv_grad_find(conv_grad_impls[i].name), &conv_grad_impls[i]);
    free_case(&c);
}

/* cmocka entry points */
static void finite_differences(void **st) { (void)st; finite_differences_body(); }
static void vs_ref_grid(void **st) { (void)st; vs_ref_grid_body(); }
static void vs_ref_long(void **st) { (void)st; vs_ref_long_body(); }
static void report_worst(void **st) { (void)st; report_worst_body(); }
static void thread_counts(void **st) { (void)st; thread_counts_body(); }
static void invalid(void **st) { (void)st; invalid_body(); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(finite_differences),
        cmocka_unit_test(vs_ref_grid),
        cmocka_unit_test(vs_ref_long),
        cmocka_unit_test(report_worst),
        cmocka_unit_test(thread_counts),
        cmocka_unit_test(invalid),
    };
    return cmocka_run_group_tests_name("conv backward", tests, NULL, NULL) ? 1 : 0;
}
