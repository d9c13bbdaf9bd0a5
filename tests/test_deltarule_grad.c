/* test_deltarule_grad.c - cmocka suite for the delta-rule backward
 * (kernels/deltarule/deltarule_grad.h, spec ref/deltarule_grad_ref.c, math in
 * docs/deltarule.md "Backward").
 *
 * Where the expected values come from:
 *   finite differences  ref's double backward against central differences of
 *                       ref's double forward (deltarule_ref_forward_f64), for
 *                       every input and every regime: proves the spec;
 *   ref                 every table entry against ref (normwise error per
 *                       gradient within its claim_tol);
 *   golden files        ../shared/golden-samples/deltarule_grad (float64 central
 *                       differences of an independent forward) and
 *                       tests/data/hf_deltarule_grad_* (torch autograd through
 *                       transformers' functions in float64, ref/hf/);
 *   training            gradient descent with the recurrent backward fits a
 *                       hidden v*: the loss (computed by the forward) falls.
 * Never against another output of the code under test.
 */
#include "common/safetensors.h"
#include "kernels/deltarule/deltarule.h"
#include "kernels/deltarule/deltarule_grad.h"
#include "kernels/cpu_features.h"
#include "ref/deltarule_grad_ref.h"
#include "harness/deltarule_inputs.h"
#include "harness/metrics.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_IMPLS 32
#define SHARED_GOLDEN_DIR "../shared/golden-samples/deltarule_grad"
#define SHARED_GOLDEN_GLOB SHARED_GOLDEN_DIR "/*.safetensors"
#define PROJECT_GOLDEN_GLOB "tests/data/hf_deltarule_grad_*.safetensors"

/* ------------------------------------------------------------------ */
/* Implementations                                                      */
/* ------------------------------------------------------------------ */

/* The table entries this CPU runs (never vacuous). */
static int list_impls(const deltarule_grad_impl **out)
{
    assert_true(deltarule_grad_n_impls <= MAX_IMPLS);
    int n = 0;
    for (int i = 0; i < deltarule_grad_n_impls; i++) {
        const deltarule_grad_impl *im = &deltarule_grad_impls[i];
        if (im->available && !im->available()) continue;
        out[n++] = im;
    }
    assert_true(n > 0);
    return n;
}

/* ------------------------------------------------------------------ */
/* Problems: a forward case plus upstream gradients                      */
/* ------------------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
    return *s;
}
static double rng_normal(uint64_t *s)
{
    const double u1 = ((rng_next(s) >> 11) + 0.5) / 9007199254740992.0, u2 = (rng_next(s) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

typedef struct {
    dr_case c;
    float *d_out, *d_final_state; /* d_final_state may be NULL */
} gcase;

static const char *shape_str(const deltarule_problem *p)
{
    static char buf[160];
    snprintf(buf, sizeof buf, "B%d T%d H%d/%d D%d/%d%s%s%s", p->B, p->T, p->Hk, p->Hv, p->Dk, p->Dv,
             p->initial_state ? " S0" : "", p->seq_len ? " padded" : "", p->use_qk_l2norm ? " l2" : " raw");
    return buf;
}

/* Shape s in regime r; l2 0 turns the in-kernel norm off (q, k then scaled by
 * 1/sqrt(Dk) so the transitions stay contractive); with_dfs adds d_final_state. */
static void gcase_make(gcase *g, dr_shape s, int regime, unsigned long seed, int l2, int with_dfs)
{
    char err[256];
    memset(g, 0, sizeof *g);
    if (dr_case_make(&g->c, &s, regime, seed, err, sizeof err)) fail_msg("dr_case_make: %s", err);
    deltarule_problem *p = &g->c.p;
    p->use_qk_l2norm = l2;
    if (!l2) {
        const float f = 1.0f / sqrtf((float)p->Dk);
        for (size_t i = 0; i < dr_qk_elems(p); i++) { g->c.q[i] *= f; g->c.k[i] *= f; }
    }
    uint64_t st = 0x9E3779B97F4A7C15ull ^ (seed * 7919 + (unsigned long)regime);
    g->d_out = malloc(sizeof(float) * dr_v_elems(p));
    assert_non_null(g->d_out);
    for (size_t i = 0; i < dr_v_elems(p); i++) g->d_out[i] = (float)rng_normal(&st);
    if (with_dfs) {
        g->d_final_state = malloc(sizeof(float) * dr_state_elems(p));
        assert_non_null(g->d_final_state);
        for (size_t i = 0; i < dr_state_elems(p); i++) g->d_final_state[i] = (float)rng_normal(&st);
    }
}

static void gcase_free(gcase *g)
{
    dr_case_free(&g->c);
    free(g->d_out);
    free(g->d_final_state);
}

/* The six gradients, float. */
enum { G_Q, G_K, G_V, G_G, G_BETA, G_S0, G_N };
static const char *const g_names[G_N] = {"dq", "dk", "dv", "dg", "dbeta", "d_initial_state"};

typedef struct {
    float *x[G_N];
    size_t n[G_N];
} grads;

static grads grads_alloc(const deltarule_problem *p)
{
    grads r;
    const size_t n[G_N] = {dr_qk_elems(p), dr_qk_elems(p), dr_v_elems(p), dr_gate_elems(p), dr_gate_elems(p),
                           p->initial_state ? dr_state_elems(p) : 0};
    for (int i = 0; i < G_N; i++) {
        r.n[i] = n[i];
        r.x[i] = n[i] ? malloc(sizeof(float) * n[i]) : NULL;
        if (n[i]) assert_non_null(r.x[i]);
    }
    return r;
}

static void grads_free(grads *r)
{
    for (int i = 0; i < G_N; i++) free(r->x[i]);
}

static deltarule_grad_problem grad_problem(const gcase *g, const grads *r)
{
    return (deltarule_grad_problem){&g->c.p, g->d_out, g->d_final_state, r->x[G_Q], r->x[G_K], r->x[G_V],
                                    r->x[G_G], r->x[G_BETA], r->x[G_S0], NULL, 0};
}

/* Runs im with every output first filled with NaN, so an entry left unwritten fails. */
static void run_grad(const deltarule_grad_impl *im, const gcase *g, const deltarule_opts *o, grads *r,
                     deltarule_grad_stats *st)
{
    for (int i = 0; i < G_N; i++)
        for (size_t j = 0; j < r->n[i]; j++) r->x[i][j] = NAN;
    const deltarule_grad_problem gp = grad_problem(g, r);
    char err[256];
    if (deltarule_grad_run(im, &gp, o, st, err, sizeof err)) fail_msg("%s on %s: %s", im->name, shape_str(&g->c.p), err);
}

/* ------------------------------------------------------------------ */
/* (a) ref against central finite differences, in double                 */
/* ------------------------------------------------------------------ */

typedef struct {
    deltarule_f64_case c;
    double *x[G_N];  /* q, k, v, g, beta, initial_state (mutable copies) */
    size_t n[G_N];
    double *d_out, *d_final_state, *out, *fs;
} f64_case;

static double *dup_f64(const float *x, size_t n)
{
    double *y = malloc(sizeof(double) * (n ? n : 1));
    assert_non_null(y);
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

static void f64_make(f64_case *d, const gcase *g)
{
    const deltarule_problem *p = &g->c.p;
    const float *src[G_N] = {p->q, p->k, p->v, p->g, p->beta, p->initial_state};
    const size_t n[G_N] = {dr_qk_elems(p), dr_qk_elems(p), dr_v_elems(p), dr_gate_elems(p), dr_gate_elems(p),
                           p->initial_state ? dr_state_elems(p) : 0};
    for (int i = 0; i < G_N; i++) {
        d->n[i] = n[i];
        d->x[i] = src[i] ? dup_f64(src[i], n[i]) : NULL;
    }
    d->d_out = dup_f64(g->d_out, dr_v_elems(p));
    d->d_final_state = g->d_final_state ? dup_f64(g->d_final_state, dr_state_elems(p)) : NULL;
    d->out = malloc(sizeof(double) * dr_v_elems(p));
    d->fs = malloc(sizeof(double) * dr_state_elems(p));
    assert_non_null(d->out);
    assert_non_null(d->fs);
    d->c = (deltarule_f64_case){p->B, p->T, p->Hk, p->Hv, p->Dk, p->Dv, d->x[G_Q], d->x[G_K], d->x[G_V],
                                d->x[G_G], d->x[G_BETA], d->x[G_S0], p->seq_len, p->use_qk_l2norm,
                                (double)deltarule_scale(p)};
}

static void f64_free(f64_case *d)
{
    for (int i = 0; i < G_N; i++) free(d->x[i]);
    free(d->d_out); free(d->d_final_state); free(d->out); free(d->fs);
}

/* L = sum(d_out . out) + sum(d_final_state . final_state), all in double. */
static double f64_loss(f64_case *d)
{
    assert_int_equal(deltarule_ref_forward_f64(&d->c, d->out, d->fs), 0);
    double L = 0.0;
    const size_t nv = (size_t)d->c.B * d->c.T * d->c.Hv * d->c.Dv, ns = (size_t)d->c.B * d->c.Hv * d->c.Dk * d->c.Dv;
    for (size_t i = 0; i < nv; i++) L += d->d_out[i] * d->out[i];
    if (d->d_final_state)
        for (size_t i = 0; i < ns; i++) L += d->d_final_state[i] * d->fs[i];
    return L;
}

/* Checks ref's double backward against central differences on the elements
 * of every input (all of them, or `sample` random ones per input plus the
 * first and last); returns the worst normwise error over the inputs. */
static double fd_check(const gcase *g, int regime, size_t sample, double tol)
{
    f64_case d;
    f64_make(&d, g);
    double *ana[G_N];
    for (int i = 0; i < G_N; i++) {
        ana[i] = malloc(sizeof(double) * (d.n[i] ? d.n[i] : 1));
        assert_non_null(ana[i]);
    }
    const deltarule_f64_grads gr = {ana[G_Q], ana[G_K], ana[G_V], ana[G_G], ana[G_BETA], d.x[G_S0] ? ana[G_S0] : NULL};
    assert_int_equal(deltarule_grad_ref_f64(&d.c, d.d_out, d.d_final_state, &gr), 0);
    uint64_t st = 12345;
    double worst = 0.0;
    for (int i = 0; i < G_N; i++) {
        if (!d.n[i]) continue;
        double num = 0.0, den = 0.0;
        const size_t m = sample && sample < d.n[i] ? sample + 2 : d.n[i];
        for (size_t s = 0; s < m; s++) {
            size_t j = s;
            if (m != d.n[i]) j = s == 0 ? 0 : s == 1 ? d.n[i] - 1 : rng_next(&st) % d.n[i];
            const double x0 = d.x[i][j], h = 1e-5 * fmax(1.0, fabs(x0));
            d.x[i][j] = x0 + h;
            const double Lp = f64_loss(&d);
            d.x[i][j] = x0 - h;
            const double Lm = f64_loss(&d);
            d.x[i][j] = x0;
            const double fd = (Lp - Lm) / (2 * h), e = ana[i][j] - fd;
            num += e * e;
            den += fd * fd;
        }
        const double err = den > 0 ? sqrt(num / den) : sqrt(num);
        if (!(err <= tol))
            fail_msg("ref %s on %s, regime %s: normwise error %.3g against finite differences > %.3g", g_names[i],
                     shape_str(&g->c.p), dr_regime_name(regime), err, tol);
        if (err > worst) worst = err;
    }
    for (int i = 0; i < G_N; i++) free(ana[i]);
    f64_free(&d);
    return worst;
}

/* Finite differences in double are good to ~1e-9 here (h = 1e-5: truncation
 * h^2 |L'''| and rounding 1e-16 |L| / h); the analytic gradient must match to 1e-7. */
#define FD_TOL 1e-7

static void test_fd_every_input_and_regime(void **state)
{
    (void)state;
    const struct { dr_shape s; int l2, dfs; } shapes[] = {
        {{1, 12, 1, 2, 8, 8, 1, 0}, 1, 1}, /* GQA Hv = 2 Hk, initial state, d_final_state */
        {{2, 9, 2, 4, 4, 6, 1, 1}, 0, 1},  /* padding, no l2 norm, Dk != Dv */
        {{2, 11, 1, 2, 6, 4, 0, 1}, 1, 0}, /* padding, no initial state, no d_final_state */
        {{1, 1, 1, 1, 5, 4, 1, 0}, 1, 1},  /* one token */
    };
    double worst = 0.0;
    for (int r = 0; r < DR_REGIME_COUNT; r++)
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            dr_shape s = shapes[k].s;
            if (r == DR_REGIME_LONG) { s.Dk = s.Dv = 4; s.Hv = s.Hk; } /* T is 2048: sample elements */
            gcase g;
            gcase_make(&g, s, r, 100 + k, shapes[k].l2, shapes[k].dfs);
            const double e = fd_check(&g, r, r == DR_REGIME_LONG ? 24 : 0, FD_TOL);
            if (e > worst) worst = e;
            gcase_free(&g);
        }
    print_message("ref vs finite differences: worst normwise error %.3g (tolerance %.1g)\n", worst, FD_TOL);
}

/* ------------------------------------------------------------------ */
/* (b) every implementation against ref                                 */
/* ------------------------------------------------------------------ */

/* Padding rows must be exactly zero. */
static void expect_padding_zero(const gcase *g, const grads *r, const char *impl)
{
    const deltarule_problem *p = &g->c.p;
    if (!p->seq_len) return;
    for (int b = 0; b < p->B; b++)
        for (int t = deltarule_valid_len(p, b); t < p->T; t++) {
            const size_t tok = (size_t)b * p->T + t;
            for (size_t i = 0; i < (size_t)p->Hk * p->Dk; i++)
                if (r->x[G_Q][tok * p->Hk * p->Dk + i] != 0.0f || r->x[G_K][tok * p->Hk * p->Dk + i] != 0.0f)
                    fail_msg("%s on %s: dq/dk of padding token b=%d t=%d not zero", impl, shape_str(p), b, t);
            for (size_t i = 0; i < (size_t)p->Hv * p->Dv; i++)
                if (r->x[G_V][tok * p->Hv * p->Dv + i] != 0.0f)
                    fail_msg("%s on %s: dv of padding token b=%d t=%d not zero", impl, shape_str(p), b, t);
            for (int h = 0; h < p->Hv; h++)
                if (r->x[G_G][tok * p->Hv + h] != 0.0f || r->x[G_BETA][tok * p->Hv + h] != 0.0f)
                    fail_msg("%s on %s: dg/dbeta of padding token b=%d t=%d not zero", impl, shape_str(p), b, t);
        }
}

/* Worst normwise error over the gradients of im against ref on g; fails
 * beyond im's claim_tol where it claims the regime. */
static double grads_vs_ref(const deltarule_grad_impl *im, const gcase *g, const grads *ref, int regime,
                           const deltarule_opts *o)
{
    grads x = grads_alloc(&g->c.p);
    deltarule_grad_stats st = {0};
    run_grad(im, g, o, &x, &st);
    assert_true(st.bytes_held > 0);
    expect_padding_zero(g, &x, im->name);
    double worst = 0.0;
    for (int i = 0; i < G_N; i++) {
        if (!x.n[i]) continue;
        const double e = err_compare(x.x[i], ref->x[i], x.n[i]).normwise;
        if ((im->claims & DR_CLAIM(regime)) && !(e <= im->claim_tol))
            fail_msg("%s (chunk %d) %s on %s, regime %s: normwise error %.3g > claim %.3g", im->name,
                     o && o->chunk ? o->chunk : im->defaults.chunk, g_names[i], shape_str(&g->c.p),
                     dr_regime_name(regime), e, im->claim_tol);
        if (e > worst) worst = e;
    }
    grads_free(&x);
    return worst;
}

/* Every implementation x regime x shape (T = 1, T around multiples of the
 * checkpoint interval 64, GQA, padding, Dk = Dv = 128) and at a small
 * interval (4, T = 3, 4, 5, 8, 9) against ref; prints the worst errors (the
 * numbers claim_tol is set from). */
static void test_impls_vs_ref(void **state)
{
    (void)state;
    const deltarule_grad_impl *impls[MAX_IMPLS];
    const int ni = list_impls(impls);
    const struct { dr_shape s; int chunk; } shapes[] = {
        {{1, 1, 1, 1, 8, 8, 1, 0}, 0},
        {{2, 67, 2, 4, 16, 24, 1, 1}, 0},
        {{1, 63, 1, 2, 32, 16, 1, 0}, 0},
        {{1, 64, 1, 1, 32, 40, 0, 0}, 0}, /* Dv = 40: a full and a partial column block */
        {{1, 65, 2, 2, 16, 16, 1, 0}, 0},
        {{3, 129, 1, 1, 24, 8, 1, 1}, 0},
        {{1, 130, 1, 1, 128, 128, 1, 0}, 0},
        {{2, 9, 1, 2, 8, 8, 1, 1}, 4},
        {{1, 8, 1, 1, 8, 8, 1, 0}, 4},
        {{1, 5, 1, 1, 8, 8, 0, 0}, 4},
        {{1, 3, 1, 1, 8, 8, 1, 0}, 4},
    };
    double worst[MAX_IMPLS][DR_REGIME_COUNT] = {{0}};
    for (int r = 0; r < DR_REGIME_COUNT; r++)
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            dr_shape s = shapes[k].s;
            if (r == DR_REGIME_LONG && (s.Dk > 32 || s.T < 60)) continue; /* T = 2048: keep the big heads out */
            for (int l2 = 1; l2 >= (k == 2 ? 0 : 1); l2--) {
                gcase g;
                gcase_make(&g, s, r, 7 + k, l2, 1);
                grads ref = grads_alloc(&g.c.p);
                run_grad(&deltarule_grad_ref_impl, &g, NULL, &ref, NULL);
                for (int i = 0; i < ni; i++) {
                    const deltarule_opts o = {.chunk = shapes[k].chunk};
                    const double e = grads_vs_ref(impls[i], &g, &ref, r, &o);
                    if (e > worst[i][r]) worst[i][r] = e;
                }
                grads_free(&ref);
                gcase_free(&g);
            }
        }
    for (int i = 0; i < ni; i++)
        for (int r = 0; r < DR_REGIME_COUNT; r++)
            print_message("%s, %s: worst normwise error per gradient %.3g (claim %.1g)\n", impls[i]->name,
                          dr_regime_name(r), worst[i][r], impls[i]->claim_tol);
}

/* The chunked backward's products, solves and transposes have an AVX-512,
 * an AVX2 and a generic path (kernels/deltarule/grad_gemm.h): every
 * implementation against ref at every ISA level this CPU has (the levels it
 * lacks printed as skipped), every regime, shapes with partial chunks, Dv not
 * a multiple of the vector width, GQA and padding. */
static void test_impls_vs_ref_every_isa(void **state)
{
    (void)state;
    const deltarule_grad_impl *impls[MAX_IMPLS];
    const int ni = list_impls(impls);
    const struct { dr_shape s; int chunk; } shapes[] = {
        {{2, 67, 2, 4, 16, 24, 1, 1}, 0},
        {{1, 64, 1, 1, 32, 40, 0, 0}, 0},
        {{1, 130, 1, 1, 128, 100, 1, 0}, 0},
        {{2, 9, 1, 2, 8, 8, 1, 1}, 4},
        {{1, 77, 1, 1, 64, 64, 1, 0}, 16},
    };
    for (int isa = ISA_GENERIC; isa <= ISA_AVX512; isa++) {
        if (isa > (int)cpu_isa_best()) {
            printf("[  SKIPPED ] backward vs ref at ISA %s: this CPU has only %s\n", cpu_isa_name((cpu_isa_level)isa),
                   cpu_isa_name(cpu_isa_best()));
            continue;
        }
        cpu_isa_force((cpu_isa_level)isa);
        assert_int_equal(cpu_isa(), isa);
        double worst = 0.0;
        for (int r = 0; r < DR_REGIME_COUNT; r++)
            for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
                if (r == DR_REGIME_LONG && k != 3) continue;
                gcase g;
                gcase_make(&g, shapes[k].s, r, 11 + k, 1, 1);
                grads ref = grads_alloc(&g.c.p);
                run_grad(&deltarule_grad_ref_impl, &g, NULL, &ref, NULL);
                for (int i = 0; i < ni; i++) {
                    const deltarule_opts o = {.chunk = shapes[k].chunk};
                    const double e = grads_vs_ref(impls[i], &g, &ref, r, &o);
                    if (e > worst) worst = e;
                }
                grads_free(&ref);
                gcase_free(&g);
            }
        printf("backward vs ref at ISA %s: worst normwise error %.3g\n", cpu_isa_name((cpu_isa_level)isa), worst);
    }
    cpu_isa_force(ISA_AUTO);
}

/* The same problem at 1 and 3 threads gives the same bits (no atomics, the
 * value heads of a key head summed in a fixed order). */
static void test_threads_same_bits(void **state)
{
    (void)state;
    const deltarule_grad_impl *impls[MAX_IMPLS];
    const int ni = list_impls(impls);
    gcase g;
    gcase_make(&g, (dr_shape){2, 70, 2, 4, 16, 8, 1, 1}, DR_REGIME_RANDOM, 3, 1, 1);
    for (int i = 0; i < ni; i++) {
        grads a = grads_alloc(&g.c.p), b = grads_alloc(&g.c.p);
        run_grad(impls[i], &g, &(deltarule_opts){.threads = 1}, &a, NULL);
        run_grad(impls[i], &g, &(deltarule_opts){.threads = 3}, &b, NULL);
        for (int j = 0; j < G_N; j++)
            if (a.n[j] && memcmp(a.x[j], b.x[j], sizeof(float) * a.n[j]))
                fail_msg("%s: %s differs between 1 and 3 threads", impls[i]->name, g_names[j]);
        grads_free(&a);
        grads_free(&b);
    }
    gcase_free(&g);
}

/* A caller's workspace (deltarule_grad_problem.workspace): its contents on entry do not matter
 * (filled with NaN, the gradients are the same bits as with the kernel's own zero-filled pages,
 * for every entry that uses one, GQA, padding, 1 and 3 threads, a chunk size that does not
 * divide T); one byte short of deltarule_grad_workspace_bytes, or misaligned, is refused with a
 * message; the recurrent backward asks for none. */
static void test_workspace(void **state)
{
    (void)state;
    gcase g;
    gcase_make(&g, (dr_shape){2, 70, 2, 4, 16, 8, 1, 1}, DR_REGIME_RANDOM, 5, 1, 1);
    const deltarule_grad_impl *rec = deltarule_grad_find("recurrent");
    assert_non_null(rec);
    assert_int_equal(deltarule_grad_workspace_bytes(rec, &(deltarule_grad_problem){.fwd = &g.c.p}, NULL), 0);
    const char *names[] = {"chunked", "auto"};
    const int threads[] = {1, 3}, chunks[] = {0, 24};
    int used = 0;
    for (int n = 0; n < 2; n++)
        for (int t = 0; t < 2; t++)
            for (int c = 0; c < 2; c++) {
                const deltarule_grad_impl *im = deltarule_grad_find(names[n]);
                assert_non_null(im);
                const deltarule_opts o = {.threads = threads[t], .chunk = chunks[c]};
                grads a = grads_alloc(&g.c.p), b = grads_alloc(&g.c.p);
                run_grad(im, &g, &o, &a, NULL);
                deltarule_grad_problem gp = grad_problem(&g, &b);
                const size_t need = deltarule_grad_workspace_bytes(im, &gp, &o);
                assert_true(need > 0);
                float *ws = aligned_alloc(64, (need + 64) / 64 * 64);
                assert_non_null(ws);
                for (size_t i = 0; i < need / sizeof(float); i++) ws[i] = NAN;
                for (int i = 0; i < G_N; i++)
                    for (size_t j = 0; j < b.n[i]; j++) b.x[i][j] = NAN;
                char err[256];
                gp.workspace = ws;
                gp.workspace_bytes = need - 1;
                if (!deltarule_grad_run(im, &gp, &o, NULL, err, sizeof err))
                    fail_msg("%s: a workspace one byte short was accepted", im->name);
                assert_non_null(strstr(err, "workspace"));
                gp.workspace = (char *)ws + 4;
                gp.workspace_bytes = need;
                if (!deltarule_grad_run(im, &gp, &o, NULL, err, sizeof err))
                    fail_msg("%s: a misaligned workspace was accepted", im->name);
                gp.workspace = ws;
                if (deltarule_grad_run(im, &gp, &o, NULL, err, sizeof err)) fail_msg("%s: %s", im->name, err);
                size_t written = 0; /* the kernel worked in the workspace, not in memory of its own */
                for (size_t i = 0; i < need / sizeof(float); i++) written += !isnan(ws[i]);
                if (!written) fail_msg("%s: the workspace was not used", im->name);
                for (int j = 0; j < G_N; j++)
                    if (a.n[j] && memcmp(a.x[j], b.x[j], sizeof(float) * a.n[j]))
                        fail_msg("%s threads %d chunk %d: %s differs with a NaN-filled workspace", im->name,
                                 threads[t], chunks[c], g_names[j]);
                used++;
                free(ws);
                grads_free(&a);
                grads_free(&b);
            }
    assert_int_equal(used, 8);
    gcase_free(&g);
}

/* auto follows a measured crossover (opts.crossover, the "grad_points" bench
 * writes): with chunked from T = 1000 it gives the recurrent backward's bits
 * at T = 70, with chunked from T = 2 the chunked one's; with no point for the
 * shape, its built-in default. */
/* The chunked forms flush subnormals (kernels/fp_flush.h) only while their
 * threads run: the calling thread's MXCSR control bits (FTZ, DAZ, rounding,
 * exception masks; not the sticky flags) are the same after a call as
 * before, with FTZ/DAZ off and on; and at C = 128 under strong decay, where
 * the decays reach the subnormal range, the gradients still meet the claim
 * against ref. */
static void test_flush_scoped(void **state)
{
    (void)state;
#if defined(__x86_64__) || defined(__i386__)
    const deltarule_grad_impl *bwd = deltarule_grad_find("chunked");
    const deltarule_impl *fwd = deltarule_find("chunked");
    assert_non_null(bwd);
    assert_non_null(fwd);
    gcase g;
    gcase_make(&g, (dr_shape){1, 300, 1, 2, 16, 16, 1, 0}, DR_REGIME_STRONG_DECAY, 11, 1, 1);
    grads ref = grads_alloc(&g.c.p);
    run_grad(&deltarule_grad_ref_impl, &g, NULL, &ref, NULL);
    const unsigned saved = _mm_getcsr(), control = 0xFFC0u;
    for (int mode = 0; mode < 2; mode++) {
        const unsigned before = mode ? (saved | 0x8040u) : (saved & ~0x8040u);
        const deltarule_opts o = {.chunk = 128, .threads = 2};
        _mm_setcsr(before);
        grads_vs_ref(bwd, &g, &ref, DR_REGIME_STRONG_DECAY, &o);
        const unsigned after_bwd = _mm_getcsr();
        _mm_setcsr(before);
        char err[256];
        if (deltarule_run(fwd, &g.c.p, &o, err, sizeof err)) fail_msg("chunked forward: %s", err);
        const unsigned after_fwd = _mm_getcsr();
        _mm_setcsr(saved);
        if ((after_bwd & control) != (before & control) || (after_fwd & control) != (before & control))
            fail_msg("FTZ/DAZ %s before: MXCSR control 0x%x, after the backward 0x%x, after the forward 0x%x",
                     mode ? "on" : "off", before & control, after_bwd & control, after_fwd & control);
    }
    grads_free(&ref);
    gcase_free(&g);
#else
    print_message("[  SKIPPED ] MXCSR scope: not an x86 CPU\n");
#endif
}

static void test_auto_follows_crossover(void **state)
{
    (void)state;
    gcase g;
    gcase_make(&g, (dr_shape){1, 70, 2, 4, 16, 8, 1, 0}, DR_REGIME_RANDOM, 5, 1, 1);
    const deltarule_problem *p = &g.c.p;
    const deltarule_grad_impl *au = deltarule_grad_find("auto"), *rec = deltarule_grad_find("recurrent"),
                              *chk = deltarule_grad_find("chunked");
    assert_non_null(au);
    assert_non_null(rec);
    assert_non_null(chk);
    grads a = grads_alloc(p), r = grads_alloc(p), c = grads_alloc(p);
    run_grad(rec, &g, &(deltarule_opts){.threads = 1}, &r, NULL);
    run_grad(chk, &g, &(deltarule_opts){.threads = 1}, &c, NULL);
    /* the two forms round differently, so bits tell which one ran */
    assert_true(memcmp(r.x[G_K], c.x[G_K], sizeof(float) * r.n[G_K]) != 0);
    const int from[2] = {1000, 2};
    for (int k = 0; k < 2; k++) {
        deltarule_crossover x = {.n = 1};
        x.pt[0] = (deltarule_crossover_point){p->Hk, p->Hv, p->Dk, p->Dv, 1, from[k]};
        run_grad(au, &g, &(deltarule_opts){.threads = 1, .crossover = &x}, &a, NULL);
        const grads *want = k == 0 ? &r : &c;
        for (int j = 0; j < G_N; j++)
            if (a.n[j] && memcmp(a.x[j], want->x[j], sizeof(float) * a.n[j]))
                fail_msg("auto with chunked from T = %d: %s is not the %s backward's", from[k], g_names[j],
                         k == 0 ? "recurrent" : "chunked");
    }
    grads_free(&a);
    grads_free(&r);
    grads_free(&c);
    gcase_free(&g);
}

/* The recurrent backward holds checkpoints, not every state: at T = 1024,
 * C = 32 its bytes are those of the formula (docs/deltarule.md eq. (B10))
 * for one thread, far below the T states ref keeps. */
static void test_recurrent_memory(void **state)
{
    (void)state;
    const deltarule_grad_impl *im = deltarule_grad_find("recurrent");
    assert_non_null(im);
    gcase g;
    const int T = 1024, C = 32, D = 32;
    gcase_make(&g, (dr_shape){1, T, 1, 1, D, D, 1, 0}, DR_REGIME_RANDOM, 5, 1, 1);
    grads x = grads_alloc(&g.c.p);
    deltarule_grad_stats st = {0};
    run_grad(im, &g, &(deltarule_opts){.chunk = C, .threads = 1}, &x, &st);
    const size_t ss = (size_t)D * D;
    const size_t expect = sizeof(float) * ((size_t)(T / C) * ss + (size_t)C * ss + ss + 2 * (size_t)C * D +
                                           (size_t)C * D + 2 * (size_t)C + 3 * (size_t)D);
    assert_int_equal(st.bytes_held, expect);
    assert_true(st.bytes_held < sizeof(float) * (size_t)T * ss / 8);
    grads_free(&x);
    gcase_free(&g);
}

/* ------------------------------------------------------------------ */
/* Validation                                                          */
/* ------------------------------------------------------------------ */

static void expect_invalid(const deltarule_grad_problem *gp, int check_values, const char *needle)
{
    char err[256] = "";
    assert_int_equal(deltarule_grad_validate(gp, check_values, err, sizeof err), -1);
    if (!strstr(err, needle)) fail_msg("message \"%s\" does not name \"%s\"", err, needle);
}

static void test_invalid(void **state)
{
    (void)state;
    gcase g;
    gcase_make(&g, (dr_shape){1, 4, 1, 1, 4, 4, 1, 0}, DR_REGIME_RANDOM, 1, 1, 1);
    grads r = grads_alloc(&g.c.p);
    deltarule_grad_problem gp = grad_problem(&g, &r);
    char err[256];
    assert_int_equal(deltarule_grad_validate(&gp, 1, err, sizeof err), 0);
    deltarule_grad_problem bad = gp;
    bad.d_out = NULL; expect_invalid(&bad, 0, "d_out");
    bad = gp; bad.dq = NULL; expect_invalid(&bad, 0, "dq");
    bad = gp; bad.dbeta = NULL; expect_invalid(&bad, 0, "dbeta");
    bad = gp; bad.d_initial_state = NULL; expect_invalid(&bad, 0, "d_initial_state");
    bad = gp; bad.fwd = NULL; expect_invalid(&bad, 0, "forward");
    g.d_out[3] = NAN; expect_invalid(&gp, 1, "d_out");
    assert_int_equal(deltarule_grad_validate(&gp, 0, err, sizeof err), 0);
    g.d_out[3] = 0.0f;
    g.d_final_state[5] = INFINITY; expect_invalid(&gp, 1, "d_final_state");
    g.d_final_state[5] = 0.0f;
    g.c.g[0] = 0.5f; expect_invalid(&gp, 1, "positive"); /* the forward's checks apply */
    g.c.g[0] = -0.5f;
    assert_int_equal(deltarule_grad_run(deltarule_grad_find("recurrent"), &gp, &(deltarule_opts){.chunk = 5000},
                                        NULL, err, sizeof err), -1);
    assert_null(deltarule_grad_find("no-such"));
    grads_free(&r);
    gcase_free(&g);
}

/* ------------------------------------------------------------------ */
/* (c) golden files                                                      */
/* ------------------------------------------------------------------ */

/* A metadata number; the files' writer may wrap it as "np.float64(x)". */
static double meta_number(const st_file *f, const char *key, double dflt, const char *path)
{
    const char *s = st_meta(f, key);
    if (!s) return dflt;
    const char *wrap = "np.float64(";
    if (!strncmp(s, wrap, strlen(wrap))) s += strlen(wrap);
    char *end;
    const double v = strtod(s, &end);
    if (end == s || !isfinite(v) || (*end && strcmp(end, ")")))
        fail_msg("%s: metadata %s = \"%s\" is not a number", path, key, st_meta(f, key));
    return v;
}

static float *load(const st_file *f, const char *name, size_t n, int optional, const char *path)
{
    const st_tensor *t = st_find(f, name);
    if (!t) {
        if (!optional) fail_msg("%s: no tensor '%s'", path, name);
        return NULL;
    }
    float *x = malloc(sizeof(float) * n);
    assert_non_null(x);
    char err[256];
    if (st_read_f32(t, x, n, err, sizeof err)) fail_msg("%s: %s: %s", path, name, err);
    return x;
}

static void check_golden(const char *path)
{
    st_file f;
    char err[256];
    if (st_open(path, &f, err, sizeof err)) fail_msg("%s", err);
    const st_tensor *tq = st_find(&f, "q"), *tv = st_find(&f, "v");
    if (!tq || !tv || tq->ndim != 4 || tv->ndim != 4) fail_msg("%s: q or v missing or not 4-d", path);
    deltarule_problem p = {.B = (int)tq->shape[0], .T = (int)tq->shape[1], .Hk = (int)tq->shape[2],
                           .Dk = (int)tq->shape[3], .Hv = (int)tv->shape[2], .Dv = (int)tv->shape[3]};
    const char *l2 = st_meta(&f, "use_qk_l2norm");
    p.use_qk_l2norm = l2 && !strcmp(l2, "1");
    p.scale = (float)meta_number(&f, "scale", 0.0, path);
    const double atol = meta_number(&f, "atol", 1e-5, path), rtol = meta_number(&f, "rtol", 1e-4, path);
    const size_t nqk = dr_qk_elems(&p), nv = dr_v_elems(&p), ng = dr_gate_elems(&p), ns = dr_state_elems(&p);
    float *q = load(&f, "q", nqk, 0, path), *k = load(&f, "k", nqk, 0, path), *v = load(&f, "v", nv, 0, path);
    float *gg = load(&f, "g", ng, 0, path), *beta = load(&f, "beta", ng, 0, path);
    float *s0 = load(&f, "initial_state", ns, 1, path);
    int32_t *seq_len = NULL;
    if (st_find(&f, "seq_len")) {
        seq_len = malloc(sizeof(int32_t) * p.B);
        assert_non_null(seq_len);
        if (st_read_i32(st_find(&f, "seq_len"), seq_len, p.B, err, sizeof err)) fail_msg("%s: %s", path, err);
    }
    p.q = q; p.k = k; p.v = v; p.g = gg; p.beta = beta; p.initial_state = s0; p.seq_len = seq_len;
    gcase g = {.c = {.p = p}};
    g.d_out = load(&f, "d_out", nv, 0, path);
    g.d_final_state = load(&f, "d_final_state", ns, 1, path);
    float *expect[G_N] = {load(&f, "dq", nqk, 0, path), load(&f, "dk", nqk, 0, path), load(&f, "dv", nv, 0, path),
                          load(&f, "dg", ng, 0, path), load(&f, "dbeta", ng, 0, path),
                          s0 ? load(&f, "d_initial_state", ns, 0, path) : NULL};
    const deltarule_grad_impl *impls[MAX_IMPLS + 1];
    int ni = list_impls(impls + 1) + 1;
    impls[0] = &deltarule_grad_ref_impl;
    for (int i = 0; i < ni; i++) {
        grads x = grads_alloc(&g.c.p);
        run_grad(impls[i], &g, NULL, &x, NULL);
        double worst = 0.0;
        for (int j = 0; j < G_N; j++) {
            if (!x.n[j]) continue;
            size_t first;
            const size_t bad = err_allclose_violations(x.x[j], expect[j], x.n[j], atol, rtol, &first);
            if (bad)
                fail_msg("%s on %s: %s has %zu elements outside atol %g + rtol %g (first at %zu: %g, expected %g)",
                         impls[i]->name, path, g_names[j], bad, atol, rtol, first, x.x[j][first], expect[j][first]);
            worst = fmax(worst, err_compare(x.x[j], expect[j], x.n[j]).normwise);
        }
        print_message("%s: %s passes (worst normwise error over the gradients %.3g)\n", path, impls[i]->name, worst);
        grads_free(&x);
    }
    for (int j = 0; j < G_N; j++) free(expect[j]);
    free(q); free(k); free(v); free(gg); free(beta); free(s0); free(seq_len); free(g.d_out); free(g.d_final_state);
    st_close(&f);
}

static size_t check_golden_glob(const char *pattern)
{
    glob_t gl;
    const int rc = glob(pattern, 0, NULL, &gl);
    if (rc == GLOB_NOMATCH) return 0;
    assert_int_equal(rc, 0);
    for (size_t i = 0; i < gl.gl_pathc; i++) check_golden(gl.gl_pathv[i]);
    const size_t n = gl.gl_pathc;
    globfree(&gl);
    return n;
}

/* The shared sample: float64 central differences of an independent forward. */
static void test_golden_shared(void **state)
{
    (void)state;
    struct stat sb;
    if (stat(SHARED_GOLDEN_DIR, &sb) || !S_ISDIR(sb.st_mode)) {
        print_message("note: %s not found; gradient golden samples not checked\n", SHARED_GOLDEN_DIR);
        skip();
    }
    assert_true(check_golden_glob(SHARED_GOLDEN_GLOB) > 0);
}

/* The project's: torch autograd through transformers' own functions in float64 (ref/hf/). */
static void test_golden_project(void **state)
{
    (void)state;
    assert_true(check_golden_glob(PROJECT_GOLDEN_GLOB) > 0);
}

/* ------------------------------------------------------------------ */
/* (d) training trains                                                   */
/* ------------------------------------------------------------------ */

/* One head, T = 48, Dk = Dv = 8: a hidden v* makes the targets out* = f(v*);
 * plain gradient descent on v from 0 with the recurrent backward on
 * L = 1/2 ||f(v) - out*||^2 (d_out = f(v) - out*), the loss measured by the
 * forward `recurrent` kernel.  400 steps must cut the loss by TRAIN_FACTOR. */
#define TRAIN_STEPS 400
#define TRAIN_FACTOR 100.0 /* measured 966x at lr 2 (slow decay: small directions converge slowly); 10x margin */

static void test_training_trains(void **state)
{
    (void)state;
    const deltarule_grad_impl *gim = deltarule_grad_find("recurrent");
    const deltarule_impl *fim = deltarule_find("recurrent");
    assert_non_null(gim);
    assert_non_null(fim);
    gcase g;
    gcase_make(&g, (dr_shape){1, 48, 1, 1, 8, 8, 0, 0}, DR_REGIME_SLOW_DECAY, 11, 1, 0);
    deltarule_problem *p = &g.c.p;
    const size_t nv = dr_v_elems(p);
    float *target = malloc(sizeof(float) * nv); /* out* = f(v*), v* the regime's v */
    assert_non_null(target);
    char err[256];
    p->out = target;
    if (deltarule_run(fim, p, NULL, err, sizeof err)) fail_msg("%s", err);
    p->out = g.c.out;
    for (size_t i = 0; i < nv; i++) g.c.v[i] = 0.0f;
    grads x = grads_alloc(p);
    double L0 = 0.0, L = 0.0;
    const float lr = 2.0f; /* lr 4 cuts the loss 3e3x in 400 steps, lr 8 diverges: half the largest stable step measured */
    for (int step = 0; step <= TRAIN_STEPS; step++) {
        if (deltarule_run(fim, p, NULL, err, sizeof err)) fail_msg("%s", err);
        L = 0.0;
        for (size_t i = 0; i < nv; i++) {
            g.d_out[i] = g.c.out[i] - target[i];
            L += 0.5 * (double)g.d_out[i] * g.d_out[i];
        }
        if (step == 0) L0 = L;
        if (step == TRAIN_STEPS) break;
        run_grad(gim, &g, NULL, &x, NULL);
        for (size_t i = 0; i < nv; i++) g.c.v[i] -= lr * x.x[G_V][i];
    }
    print_message("training: loss %.4g -> %.4g after %d steps (factor %.3g, required %.0g)\n", L0, L, TRAIN_STEPS,
                  L0 / L, TRAIN_FACTOR);
    assert_true(L0 > 0);
    if (!(L * TRAIN_FACTOR <= L0)) fail_msg("loss fell only from %.4g to %.4g", L0, L);
    grads_free(&x);
    free(target);
    gcase_free(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fd_every_input_and_regime),
        cmocka_unit_test(test_impls_vs_ref),
        cmocka_unit_test(test_impls_vs_ref_every_isa),
        cmocka_unit_test(test_threads_same_bits),
        cmocka_unit_test(test_workspace),
        cmocka_unit_test(test_auto_follows_crossover),
        cmocka_unit_test(test_flush_scoped),
        cmocka_unit_test(test_recurrent_memory),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_golden_shared),
        cmocka_unit_test(test_golden_project),
        cmocka_unit_test(test_training_trains),
    };
    return cmocka_run_group_tests_name("deltarule_grad", tests, NULL, NULL) ? 1 : 0;
}
