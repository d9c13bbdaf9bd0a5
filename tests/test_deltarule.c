/* test_deltarule.c - cmocka suite for the gated delta rule family
 * (kernels/deltarule/, spec in docs/deltarule.md and ref/deltarule_ref.c).
 *
 * Every check compares an implementation against `ref` (the double-precision
 * reference, run on the same or an equivalent problem) or against values the
 * test computes from the math itself; never against another output of the
 * kernel under test.  The implementations are taken from deltarule_impls[]
 * (every kernel; ref/ is the yardstick; only those available on this CPU), so a new table entry
 * is tested without touching this file.  Each is held to its claim_tol
 * (normwise error, harness/metrics.h) on the input regimes it claims.
 *
 * Groups: shape grid (default options, generic ISA, other chunk sizes),
 * state handling (carry, in place, padding, optional pointers), gate
 * extremes, options, golden files, invalid input.
 */
#include "common/safetensors.h"
#include "common/sde_counters.h"
#include "kernels/cpu_features.h"
#include "kernels/deltarule/deltarule.h"
#include "ref/deltarule_ref.h"
#include "harness/deltarule_golden.h"
#include "harness/deltarule_inputs.h"
#include "harness/impl_select.h"
#include "harness/metrics.h"
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

#define CHUNK 64 /* the chunked forms' default chunk length C */
#define MAX_IMPLS 64
#define PROJECT_GOLDEN_GLOB "tests/data/*.safetensors"
#define SHARED_GOLDEN_DIR "../shared/golden-samples/deltarule"
#define SHARED_GOLDEN_GLOB SHARED_GOLDEN_DIR "/*.safetensors"

/* ------------------------------------------------------------------ */
/* Implementations                                                      */
/* ------------------------------------------------------------------ */

static const deltarule_impl *ref_impl(void)
{
    const deltarule_impl *r = &deltarule_ref_impl;
    assert_non_null(r);
    return r;
}

/* The table entries under test: every kernel, if available on this CPU.
 * With include_ref the reference comes first (for checks against math). */
static int list_impls(const deltarule_impl **out, int include_ref)
{
    assert_true(deltarule_n_impls <= MAX_IMPLS);
    int n = 0;
    if (include_ref) out[n++] = ref_impl();
    for (int i = 0; i < deltarule_n_impls; i++) {
        const deltarule_impl *im = &deltarule_impls[i];
        if (im->available && !im->available()) continue;
        out[n++] = im;
    }
    assert_true(n > include_ref); /* never vacuous */
    return n;
}

static int claims(const deltarule_impl *im, int regime) { return (im->claims & DR_CLAIM(regime)) != 0; }
static int claims_all(const deltarule_impl *im) { return (im->claims & DR_CLAIM_ALL) == DR_CLAIM_ALL; }
static int is_chunked(const deltarule_impl *im) { return im->defaults.chunk > 0; }
static int is_neumann(const deltarule_impl *im)
{
    return im->defaults.solver == DR_SOLVER_NEUMANN_DENSE || im->defaults.solver == DR_SOLVER_NEUMANN_BLOCKED;
}

/* ------------------------------------------------------------------ */
/* Problems, outputs and runs                                           */
/* ------------------------------------------------------------------ */

static const char *shape_str(const deltarule_problem *p)
{
    static char buf[128];
    snprintf(buf, sizeof buf, "B%d T%d H%d/%d D%d/%d%s%s", p->B, p->T, p->Hk, p->Hv, p->Dk, p->Dv,
             p->initial_state ? " S0" : "", p->seq_len ? " padded" : "");
    return buf;
}

static void make_case(dr_case *c, dr_shape s, int regime, unsigned long seed)
{
    char err[256];
    if (dr_case_make(c, &s, regime, seed, err, sizeof err)) fail_msg("dr_case_make: %s", err);
}

/* An output and final-state pair sized for a problem. */
typedef struct {
    float *out, *state;
    size_t nv, ns;
} outputs;

static outputs outputs_alloc(const deltarule_problem *p)
{
    outputs o = {malloc(sizeof(float) * dr_v_elems(p)), malloc(sizeof(float) * dr_state_elems(p)),
                 dr_v_elems(p), dr_state_elems(p)};
    assert_non_null(o.out);
    assert_non_null(o.state);
    return o;
}

static void outputs_free(outputs *o)
{
    free(o->out);
    free(o->state);
    o->out = o->state = NULL;
}

static void fill(float *x, size_t n, float v)
{
    for (size_t i = 0; i < n; i++) x[i] = v;
}

/* Runs im on p as given (p->out / p->final_state are the destinations). */
static void run_problem(const deltarule_impl *im, const deltarule_problem *p, const deltarule_opts *o)
{
    char err[256];
    if (deltarule_run(im, p, o, err, sizeof err)) fail_msg("%s on %s: %s", im->name, shape_str(p), err);
}

/* Runs im on p with the outputs redirected to o, which is first filled
 * with NaN so that an entry left unwritten fails the comparison. */
static void run_into(const deltarule_impl *im, const deltarule_problem *p, const deltarule_opts *opts, outputs *o)
{
    deltarule_problem q = *p;
    q.out = o->out;
    q.final_state = o->state;
    fill(o->out, o->nv, NAN);
    fill(o->state, o->ns, NAN);
    run_problem(im, &q, opts);
}

static outputs ref_outputs(const deltarule_problem *p)
{
    outputs r = outputs_alloc(p);
    run_into(ref_impl(), p, NULL, &r);
    return r;
}

/* Worst normwise error of out and final state (inf if any is non-finite). */
static double worst_err(const outputs *x, const outputs *expect)
{
    return err_worst(err_compare(x->out, expect->out, x->nv), err_compare(x->state, expect->state, x->ns)).normwise;
}

static void expect_close(double err, double tol, const char *impl, const char *what, const deltarule_problem *p)
{
    if (!(err <= tol))
        fail_msg("%s, %s, %s: normwise error %.3g > tolerance %.3g", impl, what, shape_str(p), err, tol);
}

/* Runs im (with opts) and ref on p; returns the worst normwise error. */
static double err_vs_ref(const deltarule_impl *im, const deltarule_problem *p, const deltarule_opts *opts)
{
    outputs r = ref_outputs(p), x = outputs_alloc(p);
    run_into(im, p, opts, &x);
    const double e = worst_err(&x, &r);
    outputs_free(&r);
    outputs_free(&x);
    return e;
}

/* Flat offsets into the layouts of deltarule.h. */
static size_t qk_off(const deltarule_problem *p, int b, int t, int hk)
{
    return (((size_t)b * p->T + t) * p->Hk + hk) * p->Dk;
}
static size_t vo_off(const deltarule_problem *p, int b, int t, int h)
{
    return (((size_t)b * p->T + t) * p->Hv + h) * p->Dv;
}
static size_t gate_off(const deltarule_problem *p, int b, int t, int h) { return ((size_t)b * p->T + t) * p->Hv + h; }
static size_t state_off(const deltarule_problem *p, int b, int h) { return ((size_t)b * p->Hv + h) * p->Dk * p->Dv; }

/* eq. (1) in double: x / sqrt(sum x^2 + 1e-6) with l2norm, else x. */
static void normalized(const float *x, int n, int l2, double *y)
{
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const double f = l2 ? 1.0 / sqrt(ss + 1e-6) : 1.0;
    for (int i = 0; i < n; i++) y[i] = x[i] * f;
}

/* ------------------------------------------------------------------ */
/* Token slices: tokens [t0, t0+n) of every sequence, in buffers of their own */
/* ------------------------------------------------------------------ */

typedef struct {
    deltarule_problem p;
    float *q, *k, *v, *g, *beta, *out;
} token_slice;

/* dst[b, 0:n) = src[b, t0:t0+n) for rows of `row` floats, src having T rows per sequence. */
static void gather_rows(float *dst, const float *src, int B, int T, int t0, int n, size_t row)
{
    for (int b = 0; b < B; b++)
        memcpy(dst + (size_t)b * n * row, src + ((size_t)b * T + t0) * row, sizeof(float) * n * row);
}

static void scatter_rows(float *dst, int T, int t0, const float *src, int B, int n, size_t row)
{
    for (int b = 0; b < B; b++)
        memcpy(dst + ((size_t)b * T + t0) * row, src + (size_t)b * n * row, sizeof(float) * n * row);
}

static void slice_make(token_slice *s, const deltarule_problem *p, int t0, int n)
{
    assert_null(p->seq_len); /* slices of a padded batch are not defined */
    const size_t qk = (size_t)p->Hk * p->Dk, vv = (size_t)p->Hv * p->Dv, gg = (size_t)p->Hv;
    const size_t bn = (size_t)p->B * n;
    s->q = malloc(sizeof(float) * bn * qk);
    s->k = malloc(sizeof(float) * bn * qk);
    s->v = malloc(sizeof(float) * bn * vv);
    s->out = malloc(sizeof(float) * bn * vv);
    s->g = malloc(sizeof(float) * bn * gg);
    s->beta = malloc(sizeof(float) * bn * gg);
    assert_true(s->q && s->k && s->v && s->out && s->g && s->beta);
    gather_rows(s->q, p->q, p->B, p->T, t0, n, qk);
    gather_rows(s->k, p->k, p->B, p->T, t0, n, qk);
    gather_rows(s->v, p->v, p->B, p->T, t0, n, vv);
    gather_rows(s->g, p->g, p->B, p->T, t0, n, gg);
    gather_rows(s->beta, p->beta, p->B, p->T, t0, n, gg);
    s->p = *p;
    s->p.T = n;
    s->p.q = s->q; s->p.k = s->k; s->p.v = s->v; s->p.g = s->g; s->p.beta = s->beta;
    s->p.out = s->out;
    s->p.initial_state = NULL;
    s->p.final_state = NULL;
}

static void slice_free(token_slice *s)
{
    free(s->q); free(s->k); free(s->v); free(s->g); free(s->beta); free(s->out);
}

/* Runs p as consecutive pieces [cuts[i], cuts[i+1]), piece i with impls[i];
 * each piece starts from the previous piece's final state.  The
 * concatenated outputs and the last final state go to o. */
static void run_pieces(const deltarule_problem *p, const int *cuts, int n_pieces,
                       const deltarule_impl *const *impls, outputs *o)
{
    assert_int_equal(cuts[0], 0);
    assert_int_equal(cuts[n_pieces], p->T);
    float *state = malloc(sizeof(float) * o->ns), *next = malloc(sizeof(float) * o->ns);
    assert_true(state && next);
    if (p->initial_state) memcpy(state, p->initial_state, sizeof(float) * o->ns);
    else fill(state, o->ns, 0.0f);
    fill(o->out, o->nv, NAN);
    for (int i = 0; i < n_pieces; i++) {
        const int t0 = cuts[i], n = cuts[i + 1] - t0;
        token_slice s;
        slice_make(&s, p, t0, n);
        s.p.initial_state = state;
        s.p.final_state = next;
        run_problem(impls[i], &s.p, NULL);
        scatter_rows(o->out, p->T, t0, s.out, p->B, n, (size_t)p->Hv * p->Dv);
        slice_free(&s);
        float *t = state; state = next; next = t;
    }
    memcpy(o->state, state, sizeof(float) * o->ns);
    free(state);
    free(next);
}

/* ------------------------------------------------------------------ */
/* Shape grid                                                           */
/* ------------------------------------------------------------------ */

/* A grid case and its ref result, built once and shared by the grid tests. */
typedef struct {
    dr_case c;
    outputs ref;
} grid_entry;

static grid_entry *g_grid;
static int g_grid_n;

/* The grid (random regime, random initial state).  The full cross product
 * is too slow, so:
 *  - every T in {1, 2, C-1, C, C+1, 3C+5, 1000} x B in {1, 3} on two small
 *    head configs: (2,4) heads with (48,100) dims (GQA, vector remainders,
 *    several column blocks) and (1,1) heads with Qwen3.5's (128,128) dims;
 *  - every (Hk,Hv) x (Dk,Dv) at T = 1 and T = C+1, B in {1, 3}, which
 *    includes (16,32) heads with (128,128) dims at T = C+1, B = 1. */
#define GRID_MAX 128

static void grid_add(dr_shape *s, int *n, int B, int T, int Hk, int Hv, int Dk, int Dv)
{
    assert_true(*n < GRID_MAX);
    s[(*n)++] = (dr_shape){B, T, Hk, Hv, Dk, Dv, 1, 0};
}

static int grid_shapes(dr_shape *s)
{
    static const int Ts[] = {1, 2, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5, 1000};
    static const int Bs[] = {1, 3};
    static const int small[][4] = {{2, 4, 48, 100}, {1, 1, 128, 128}};
    static const int heads[][2] = {{1, 1}, {2, 4}, {16, 32}};
    static const int dims[][2] = {{128, 128}, {64, 32}, {16, 16}, {48, 100}};
    static const int few_Ts[] = {1, CHUNK + 1};
    int n = 0;
    for (size_t c = 0; c < sizeof small / sizeof *small; c++)
        for (size_t t = 0; t < sizeof Ts / sizeof *Ts; t++)
            for (size_t b = 0; b < sizeof Bs / sizeof *Bs; b++)
                grid_add(s, &n, Bs[b], Ts[t], small[c][0], small[c][1], small[c][2], small[c][3]);
    for (size_t h = 0; h < sizeof heads / sizeof *heads; h++)
        for (size_t d = 0; d < sizeof dims / sizeof *dims; d++)
            for (size_t t = 0; t < sizeof few_Ts / sizeof *few_Ts; t++)
                for (size_t b = 0; b < sizeof Bs / sizeof *Bs; b++)
                    grid_add(s, &n, Bs[b], few_Ts[t], heads[h][0], heads[h][1], dims[d][0], dims[d][1]);
    return n;
}

static const grid_entry *grid_get(void)
{
    if (g_grid) return g_grid;
    dr_shape shapes[GRID_MAX];
    const int n = grid_shapes(shapes);
    grid_entry *grid = calloc((size_t)n, sizeof *grid);
    assert_non_null(grid);
    for (int i = 0; i < n; i++) {
        make_case(&grid[i].c, shapes[i], DR_REGIME_RANDOM, 100u + (unsigned long)i);
        grid[i].ref = ref_outputs(&grid[i].c.p);
    }
    g_grid = grid;
    g_grid_n = n;
    return g_grid;
}

static int grid_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < g_grid_n; i++) {
        dr_case_free(&g_grid[i].c);
        outputs_free(&g_grid[i].ref);
    }
    free(g_grid);
    g_grid = NULL;
    g_grid_n = 0;
    return 0;
}

/* Every implementation claiming the random regime (only the chunked forms
 * if chunked_only) matches ref on every grid case, with opts. */
static void check_grid(const deltarule_opts *opts, int chunked_only, const char *label)
{
    const grid_entry *grid = grid_get();
    const deltarule_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 0);
    int runs = 0;
    for (int e = 0; e < g_grid_n; e++) {
        outputs x = outputs_alloc(&grid[e].c.p);
        for (int i = 0; i < n; i++) {
            if (!claims(impls[i], DR_REGIME_RANDOM) || (chunked_only && !is_chunked(impls[i]))) continue;
            run_into(impls[i], &grid[e].c.p, opts, &x);
            expect_close(worst_err(&x, &grid[e].ref), impls[i]->claim_tol, impls[i]->name, label, &grid[e].c.p);
            runs++;
        }
        outputs_free(&x);
    }
    assert_true(runs > 0);
}

/* Each implementation with its default options matches ref over the grid. */
static void test_grid_default(void **state)
{
    (void)state;
    check_grid(NULL, 0, "default options");
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

/* The same with the generic C kernels forced instead of the SIMD ones. */
static void test_grid_generic_isa(void **state)
{
    (void)state;
    assert_int_equal(cpu_isa(), ISA_GENERIC);
    check_grid(NULL, 0, "generic ISA forced");
}

/* The chunked forms with chunks of 16 (one solver block) and 7 (a chunk
 * shorter than a solver block, chunk boundaries everywhere). */
static void test_grid_chunk16(void **state)
{
    (void)state;
    const deltarule_opts o = {.chunk = 16};
    check_grid(&o, 1, "chunk 16");
}

static void test_grid_chunk7(void **state)
{
    (void)state;
    const deltarule_opts o = {.chunk = 7};
    check_grid(&o, 1, "chunk 7");
}

/* ------------------------------------------------------------------ */
/* State handling                                                       */
/* ------------------------------------------------------------------ */

/* Running [0,T1) then [T1,T) with the carried state equals one ref run
 * over [0,T), for every implementation and split points around chunk
 * boundaries (B = 2, so sequences are sliced by copying). */
static void test_state_carry_two_pieces(void **state)
{
    (void)state;
    dr_case c;
    make_case(&c, (dr_shape){2, 150, 2, 4, 48, 100, 1, 0}, DR_REGIME_RANDOM, 21);
    outputs r = ref_outputs(&c.p), x = outputs_alloc(&c.p);
    const deltarule_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 0);
    static const int splits[] = {1, CHUNK - 1, CHUNK, CHUNK + 6, 149};
    for (int i = 0; i < n; i++) {
        if (!claims(impls[i], DR_REGIME_RANDOM)) continue;
        for (size_t s = 0; s < sizeof splits / sizeof *splits; s++) {
            const int cuts[] = {0, splits[s], c.p.T};
            const deltarule_impl *pieces[] = {impls[i], impls[i]};
            run_pieces(&c.p, cuts, 2, pieces, &x);
            char what[64];
            snprintf(what, sizeof what, "state carried at T1=%d", splits[s]);
            expect_close(worst_err(&x, &r), impls[i]->claim_tol, impls[i]->name, what, &c.p);
        }
    }
    outputs_free(&r);
    outputs_free(&x);
    dr_case_free(&c);
}

/* The model's path: prefill 130 tokens with a chunked form, then decode 20
 * tokens one at a time with each token-by-token form, equals one ref run. */
static void test_state_carry_prefill_then_decode(void **state)
{
    (void)state;
    enum { PREFILL = 2 * CHUNK + 2, DECODE = 20, T = PREFILL + DECODE };
    dr_case c;
    make_case(&c, (dr_shape){1, T, 2, 4, 128, 128, 1, 0}, DR_REGIME_RANDOM, 22);
    outputs r = ref_outputs(&c.p), x = outputs_alloc(&c.p);
    const deltarule_impl *impls[MAX_IMPLS], *pieces[DECODE + 1];
    const int n = list_impls(impls, 0);
    int cuts[DECODE + 2] = {0};
    for (int t = 0; t <= DECODE; t++) cuts[t + 1] = PREFILL + t;
    int runs = 0;
    for (int pf = 0; pf < n; pf++) {
        if (!is_chunked(impls[pf]) || !claims(impls[pf], DR_REGIME_RANDOM)) continue;
        for (int dc = 0; dc < n; dc++) {
            if (is_chunked(impls[dc])) continue;
            pieces[0] = impls[pf];
            for (int t = 1; t <= DECODE; t++) pieces[t] = impls[dc];
            run_pieces(&c.p, cuts, DECODE + 1, pieces, &x);
            char what[96];
            snprintf(what, sizeof what, "prefill with %s, decode with", impls[pf]->name);
            expect_close(worst_err(&x, &r), impls[dc]->claim_tol, impls[dc]->name, what, &c.p);
            runs++;
        }
    }
    assert_true(runs > 0);
    outputs_free(&r);
    outputs_free(&x);
    dr_case_free(&c);
}

/* Every implementation run one token at a time for 20 tokens (state
 * carried) equals one ref run over the 20 tokens. */
static void test_state_carry_token_by_token(void **state)
{
    (void)state;
    enum { T = 20 };
    dr_case c;
    make_case(&c, (dr_shape){2, T, 2, 4, 64, 32, 1, 0}, DR_REGIME_RANDOM, 23);
    outputs r = ref_outputs(&c.p), x = outputs_alloc(&c.p);
    const deltarule_impl *impls[MAX_IMPLS], *pieces[T];
    const int n = list_impls(impls, 0);
    int cuts[T + 1];
    for (int t = 0; t <= T; t++) cuts[t] = t;
    for (int i = 0; i < n; i++) {
        if (!claims(impls[i], DR_REGIME_RANDOM)) continue;
        for (int t = 0; t < T; t++) pieces[t] = impls[i];
        run_pieces(&c.p, cuts, T, pieces, &x);
        expect_close(worst_err(&x, &r), impls[i]->claim_tol, impls[i]->name, "one token at a time", &c.p);
    }
    outputs_free(&r);
    outputs_free(&x);
    dr_case_free(&c);
}

/* final_state == initial_state (one buffer, updated in place) gives the
 * ref result of separate buffers: several heads, column blocks, chunks,
 * and a padded batch. */
static void test_state_in_place(void **state)
{
    (void)state;
    static const dr_shape shapes[] = {
        {2, 150, 2, 4, 48, 100, 1, 0},
        {1, CHUNK + 1, 1, 2, 128, 128, 1, 0},
        {3, 70, 1, 1, 64, 32, 1, 1},
    };
    const deltarule_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 0);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        dr_case c;
        make_case(&c, shapes[s], DR_REGIME_RANDOM, 30u + (unsigned long)s);
        outputs r = ref_outputs(&c.p), x = outputs_alloc(&c.p);
        for (int i = 0; i < n; i++) {
            if (!claims(impls[i], DR_REGIME_RANDOM)) continue;
            memcpy(x.state, c.initial_state, sizeof(float) * x.ns);
            fill(x.out, x.nv, NAN);
            deltarule_problem p = c.p;
            p.initial_state = p.final_state = x.state;
            p.out = x.out;
            run_problem(impls[i], &p, NULL);
            expect_close(worst_err(&x, &r), impls[i]->claim_tol, impls[i]->name, "state updated in place", &c.p);
        }
        outputs_free(&r);
        outputs_free(&x);
        dr_case_free(&c);
    }
}

/* A padded batch (B = 4, seq_len = {T, 5, 0, 1}) equals each sequence run
 * alone by ref with its own length; padded outputs are exactly 0.0f, and a
 * seq_len = 0 sequence keeps its initial state bit for bit.  Dv = 100 leaves
 * a partial column block; Dv = 128 is whole blocks, where the one-token
 * sequence takes the recurrent form's fused one-token kernel (eq. 3d). */
static void padding_case(int Dv)
{
    enum { T = 2 * CHUNK + 10, NSEQ = 4 };
    dr_case c;
    make_case(&c, (dr_shape){NSEQ, T, 2, 4, 48, Dv, 1, 1}, DR_REGIME_RANDOM, 40);
    const int32_t lens[NSEQ] = {T, 5, 0, 1};
    memcpy(c.seq_len, lens, sizeof lens);
    const deltarule_problem *p = &c.p;
    const size_t tok = (size_t)p->Hv * p->Dv, st = (size_t)p->Hv * p->Dk * p->Dv;

    /* ref on each sequence alone (B = 1, T = its length) */
    outputs alone[NSEQ];
    for (int b = 0; b < NSEQ; b++) {
        if (!lens[b]) continue;
        deltarule_problem one = *p;
        one.B = 1;
        one.T = lens[b];
        one.seq_len = NULL;
        one.q = p->q + qk_off(p, b, 0, 0);
        one.k = p->k + qk_off(p, b, 0, 0);
        one.v = p->v + vo_off(p, b, 0, 0);
        one.g = p->g + gate_off(p, b, 0, 0);
        one.beta = p->beta + gate_off(p, b, 0, 0);
        one.initial_state = p->initial_state + state_off(p, b, 0);
        alone[b] = ref_outputs(&one);
    }

    const deltarule_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 0);
    outputs x = outputs_alloc(p);
    for (int i = 0; i < n; i++) {
        if (!claims(impls[i], DR_REGIME_RANDOM)) continue;
        const char *name = impls[i]->name;
        run_into(impls[i], p, NULL, &x);
        for (int b = 0; b < NSEQ; b++) {
            const float *out_b = x.out + vo_off(p, b, 0, 0), *state_b = x.state + state_off(p, b, 0);
            for (size_t j = (size_t)lens[b] * tok; j < (size_t)T * tok; j++)
                if (out_b[j] != 0.0f)
                    fail_msg("%s: sequence %d, padded output %zu is %g, not 0", name, b, j, out_b[j]);
            if (lens[b] == 0) {
                if (memcmp(state_b, p->initial_state + state_off(p, b, 0), sizeof(float) * st))
                    fail_msg("%s: the final state of a seq_len = 0 sequence differs from its initial state", name);
                continue;
            }
            const double e = err_worst(err_compare(out_b, alone[b].out, (size_t)lens[b] * tok),
                                       err_compare(state_b, alone[b].state, st)).normwise;
            char what[64];
            snprintf(what, sizeof what, "padded sequence %d (seq_len %d) vs alone", b, lens[b]);
            expect_close(e, impls[i]->claim_tol, name, what, p);
        }
    }
    for (int b = 0; b < NSEQ; b++)
        if (lens[b]) outputs_free(&alone[b]);
    outputs_free(&x);
    dr_case_free(&c);
}

static void test_padding(void **state)
{
    (void)state;
    padding_case(100);
    padding_case(128);
}

/* initial_state = NULL means zeros and final_state = NULL means "not
 * wanted": outputs still match ref (whose state starts from zeros too). */
static void test_optional_state_pointers(void **state)
{
    (void)state;
    dr_case c;
    make_case(&c, (dr_shape){2, 100, 2, 4, 48, 100, 1, 1}, DR_REGIME_RANDOM, 50);
    const deltarule_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 0);
    for (int with_s0 = 0; with_s0 < 2; with_s0++) {
        deltarule_problem p = c.p;
        if (!with_s0) p.initial_state = NULL;
        outputs r = ref_outputs(&p), x = outputs_alloc(&p);
        for (int i = 0; i < n; i++) {
            if (!claims(impls[i], DR_REGIME_RANDOM)) continue;
            /* with a final state */
            run_into(impls[i], &p, NULL, &x);
            expect_close(worst_err(&x, &r), impls[i]->claim_tol, impls[i]->name,
                         with_s0 ? "given initial state" : "initial_state NULL", &p);
            /* without one: only the outputs */
            deltarule_problem q = p;
            q.final_state = NULL;
            q.out = x.out;
            fill(x.out, x.nv, NAN);
            run_problem(impls[i], &q, NULL);
            expect_close(err_compare(x.out, r.out, x.nv).normwise, impls[i]->claim_tol, impls[i]->name,
                         "final_state NULL", &p);
        }
        outputs_free(&r);
        outputs_free(&x);
    }
    dr_case_free(&c);
}

/* ------------------------------------------------------------------ */
/* Gate extremes, checked against the math                              */
/* ------------------------------------------------------------------ */

/* Expected outputs from math for a problem in which every token sees an
 * empty state: S_t = beta_t k^_t v_t^T, o_t = scale (q^_t . k^_t) beta_t v_t. */
static outputs expected_from_empty_state(const deltarule_problem *p)
{
    outputs e = outputs_alloc(p);
    double *q = malloc(sizeof(double) * p->Dk), *k = malloc(sizeof(double) * p->Dk);
    assert_true(q && k);
    const double scale = deltarule_scale(p);
    for (int b = 0; b < p->B; b++)
        for (int t = 0; t < p->T; t++)
            for (int h = 0; h < p->Hv; h++) {
                const int hk = h / (p->Hv / p->Hk);
                normalized(p->q + qk_off(p, b, t, hk), p->Dk, p->use_qk_l2norm, q);
                normalized(p->k + qk_off(p, b, t, hk), p->Dk, p->use_qk_l2norm, k);
                double qk = 0.0;
                for (int i = 0; i < p->Dk; i++) qk += q[i] * k[i];
                const double beta = p->beta[gate_off(p, b, t, h)];
                const float *v = p->v + vo_off(p, b, t, h);
                float *o = e.out + vo_off(p, b, t, h);
                for (int j = 0; j < p->Dv; j++) o[j] = (float)(scale * qk * beta * v[j]);
                if (t == p->T - 1) {
                    float *s = e.state + state_off(p, b, h);
                    for (int i = 0; i < p->Dk; i++)
                        for (int j = 0; j < p->Dv; j++) s[(size_t)i * p->Dv + j] = (float)(k[i] * beta * v[j]);
                }
            }
    free(q);
    free(k);
    return e;
}

static void expect_finite(const outputs *x, const char *impl)
{
    size_t bad = 0;
    for (size_t i = 0; i < x->nv; i++) bad += !isfinite(x->out[i]);
    for (size_t i = 0; i < x->ns; i++) bad += !isfinite(x->state[i]);
    if (bad) fail_msg("%s: %zu non-finite values in the outputs", impl, bad);
}

/* g = -30 (and -200) at every one of 200 steps (beta random, a large initial state):
 * exp(-30) ~ 9e-14, so every token sees an effectively empty state.
 * Everything stays finite, the initial state washes out, and the final
 * state equals the last token's write from a zero state (and every output
 * that token's read), to 1e-5 relative.  Chunk-local log-decays reach
 * -1920, so this also checks eq. (10) (no exp(gamma_i) exp(-gamma_j)). */
static void test_gate_strong_decay_washes_out(void **state)
{
    (void)state;
    /* -30: exp(g) = 9e-14, so two steps take the accumulated decay below the
     * 2^-60 where the scaled-state kernels rescale (eq. 3a); -200: exp(g)
     * underflows to exactly 0 in fp32. */
    static const float gates[] = {-30.0f, -200.0f};
    for (size_t gi = 0; gi < sizeof gates / sizeof *gates; gi++) {
        dr_case c;
        make_case(&c, (dr_shape){2, 200, 2, 4, 48, 100, 1, 0}, DR_REGIME_RANDOM, 60);
        fill(c.g, dr_gate_elems(&c.p), gates[gi]);
        for (size_t i = 0; i < dr_state_elems(&c.p); i++) c.initial_state[i] *= 100.0f;
        outputs e = expected_from_empty_state(&c.p), x = outputs_alloc(&c.p);
        const deltarule_impl *impls[MAX_IMPLS];
        const int n = list_impls(impls, 1);
        for (int i = 0; i < n; i++) {
            run_into(impls[i], &c.p, NULL, &x);
            expect_finite(&x, impls[i]->name);
            expect_close(err_compare(x.state, e.state, x.ns).normwise, 1e-5, impls[i]->name,
                         "strong decay: final state vs last token alone", &c.p);
            expect_close(err_compare(x.out, e.out, x.nv).normwise, 1e-5, impls[i]->name,
                         "strong decay: outputs vs empty state", &c.p);
        }
        outputs_free(&e);
        outputs_free(&x);
        dr_case_free(&c);
    }
}

/* g = 0 and beta = 0 at every step: nothing decays and nothing is written,
 * so the final state is the initial state (to 1e-6) and every output is
 * scale S0^T q^, computed here in double. */
static void test_gate_identity_steps(void **state)
{
    (void)state;
    dr_case c;
    make_case(&c, (dr_shape){2, 150, 2, 4, 48, 100, 1, 0}, DR_REGIME_RANDOM, 61);
    const deltarule_problem *p = &c.p;
    fill(c.g, dr_gate_elems(p), 0.0f);
    fill(c.beta, dr_gate_elems(p), 0.0f);
    outputs e = outputs_alloc(p), x = outputs_alloc(p);
    memcpy(e.state, c.initial_state, sizeof(float) * e.ns);
    double *q = malloc(sizeof(double) * p->Dk);
    assert_non_null(q);
    const double scale = deltarule_scale(p);
    for (int b = 0; b < p->B; b++)
        for (int t = 0; t < p->T; t++)
            for (int h = 0; h < p->Hv; h++) {
                normalized(p->q + qk_off(p, b, t, h / (p->Hv / p->Hk)), p->Dk, 1, q);
                const float *s0 = c.initial_state + state_off(p, b, h);
                for (int j = 0; j < p->Dv; j++) {
                    double acc = 0.0;
                    for (int i = 0; i < p->Dk; i++) acc += s0[(size_t)i * p->Dv + j] * scale * q[i];
                    e.out[vo_off(p, b, t, h) + j] = (float)acc;
                }
            }
    free(q);
    const deltarule_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 1);
    for (int i = 0; i < n; i++) {
        run_into(impls[i], p, NULL, &x);
        expect_close(err_compare(x.state, e.state, x.ns).normwise, 1e-6, impls[i]->name,
                     "g = 0, beta = 0: final state vs initial state", p);
        expect_close(err_compare(x.out, e.out, x.nv).normwise, impls[i]->claim_tol, impls[i]->name,
                     "g = 0, beta = 0: outputs vs S0^T q", p);
    }
    outputs_free(&e);
    outputs_free(&x);
    dr_case_free(&c);
}

/* beta = 1, one token, zero initial state: the state becomes the outer
 * product k^ v^T (k^ the l2-normalized key) and the output
 * scale (q^ . k^) v, computed here in double.  The zero state is given both
 * as NULL and as an explicit buffer of zeros; with and without l2norm. */
static void test_gate_single_full_write(void **state)
{
    (void)state;
    dr_case c;
    make_case(&c, (dr_shape){2, 1, 2, 4, 48, 100, 0, 0}, DR_REGIME_RANDOM, 62);
    fill(c.beta, dr_gate_elems(&c.p), 1.0f);
    float *zeros = calloc(dr_state_elems(&c.p), sizeof(float));
    assert_non_null(zeros);
    const deltarule_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 1);
    for (int l2 = 0; l2 < 2; l2++)
        for (int explicit_zero = 0; explicit_zero < 2; explicit_zero++) {
            deltarule_problem p = c.p;
            p.use_qk_l2norm = l2;
            p.initial_state = explicit_zero ? zeros : NULL;
            outputs e = expected_from_empty_state(&p), x = outputs_alloc(&p);
            for (int i = 0; i < n; i++) {
                run_into(impls[i], &p, NULL, &x);
                expect_close(err_compare(x.state, e.state, x.ns).normwise, impls[i]->claim_tol, impls[i]->name,
                             l2 ? "beta = 1: state vs k^ v^T" : "beta = 1, no l2norm: state vs k v^T", &p);
                expect_close(err_compare(x.out, e.out, x.nv).normwise, impls[i]->claim_tol, impls[i]->name,
                             "beta = 1: output vs scale (q^.k^) v", &p);
            }
            outputs_free(&e);
            outputs_free(&x);
        }
    free(zeros);
    dr_case_free(&c);
}

/* ------------------------------------------------------------------ */
/* Options                                                              */
/* ------------------------------------------------------------------ */

/* The Neumann solvers honor neumann_order: with only the (I - A) factor
 * the error vs ref on the random regime is far (> 100x) above the exact
 * product's, which itself holds the claim. */
static void test_neumann_truncation_is_honored(void **state)
{
    (void)state;
    dr_case c;
    make_case(&c, (dr_shape){1, 2 * CHUNK + 3, 1, 2, 128, 128, 1, 0}, DR_REGIME_RANDOM, 70);
    const deltarule_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 0);
    int tested = 0;
    for (int i = 0; i < n; i++) {
        if (!is_neumann(impls[i]) || !claims(impls[i], DR_REGIME_RANDOM)) continue;
        const deltarule_opts exact = {0}, trunc = {.neumann_order = 1};
        const double e_exact = err_vs_ref(impls[i], &c.p, &exact), e_trunc = err_vs_ref(impls[i], &c.p, &trunc);
        expect_close(e_exact, impls[i]->claim_tol, impls[i]->name, "exact Neumann product", &c.p);
        if (!(e_trunc > 100.0 * e_exact))
            fail_msg("%s: neumann_order = 1 error %.3g is not > 100 x the exact product's %.3g: option ignored?",
                     impls[i]->name, e_trunc, e_exact);
        tested++;
    }
    assert_true(tested > 0);
    dr_case_free(&c);
}

/* Explicit scale without l2norm (keys scaled to norm < 1 so the recurrence
 * stays bounded), chunk sizes at the ends of the valid range, and explicit
 * thread counts: all match ref. */
static void test_options_vs_ref(void **state)
{
    (void)state;
    dr_case c;
    make_case(&c, (dr_shape){2, 100, 2, 4, 48, 100, 1, 0}, DR_REGIME_RANDOM, 71);
    const deltarule_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 0);

    deltarule_problem raw = c.p;
    float *k = malloc(sizeof(float) * dr_qk_elems(&c.p));
    assert_non_null(k);
    for (size_t i = 0; i < dr_qk_elems(&c.p); i++) k[i] = c.k[i] * 0.7f / sqrtf((float)c.p.Dk);
    raw.k = k;
    raw.use_qk_l2norm = 0;
    raw.scale = 0.37f;

    static const struct { const char *label; deltarule_opts o; int chunked_only; } variants[] = {
        {"chunk 1", {.chunk = 1}, 1},
        {"chunk 40", {.chunk = 40}, 1},
        {"chunk 1024", {.chunk = 1024}, 1},
        {"1 thread", {.threads = 1}, 0},
        {"3 threads", {.threads = 3}, 0},
    };
    for (int i = 0; i < n; i++) {
        if (!claims(impls[i], DR_REGIME_RANDOM)) continue;
        expect_close(err_vs_ref(impls[i], &raw, NULL), impls[i]->claim_tol, impls[i]->name,
                     "no l2norm, scale 0.37", &raw);
        for (size_t v = 0; v < sizeof variants / sizeof *variants; v++) {
            if (variants[v].chunked_only && !is_chunked(impls[i])) continue;
            expect_close(err_vs_ref(impls[i], &c.p, &variants[v].o), impls[i]->claim_tol, impls[i]->name,
                         variants[v].label, &c.p);
        }
    }
    free(k);
    dr_case_free(&c);
}

/* ------------------------------------------------------------------ */
/* Golden files                                                         */
/* ------------------------------------------------------------------ */

static char g_tmpdir[64];

static int tmpdir_setup(void **state)
{
    (void)state;
    return test_tmpdir_make(g_tmpdir, "dr_test");
}

static int tmpdir_teardown(void **state)
{
    (void)state;
    return test_tmpdir_remove(g_tmpdir);
}

static void tmp_path(char *buf, size_t n, const char *name) { test_tmpdir_path(buf, n, g_tmpdir, name); }

static void load_golden(const char *path, dr_golden *g)
{
    char err[512];
    if (dr_golden_load(path, g, err, sizeof err)) fail_msg("dr_golden_load: %s", err);
}

/* impl passes the golden file: zero atol/rtol violations in out and state. */
static void expect_golden_pass(dr_golden *g, const deltarule_impl *im, const char *path)
{
    dr_golden_result res;
    char err[512];
    if (dr_golden_check(g, im, NULL, &res, err, sizeof err)) fail_msg("%s on %s: %s", im->name, path, err);
    if (res.bad_out || res.bad_state)
        fail_msg("%s on %s: %zu output and %zu state entries outside atol %g + rtol %g (normwise %.3g, %.3g)",
                 im->name, path, res.bad_out, res.bad_state, g->atol, g->rtol, res.out.normwise,
                 res.state.normwise);
}

/* Every implementation claiming all regimes (ref included: the files come
 * from an independent float64 implementation) passes every file matching
 * pattern.  Returns the number of files. */
static size_t check_golden_glob(const char *pattern)
{
    glob_t gl;
    const int rc = glob(pattern, 0, NULL, &gl);
    if (rc == GLOB_NOMATCH) return 0;
    assert_int_equal(rc, 0);
    const deltarule_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 1);
    for (size_t f = 0; f < gl.gl_pathc; f++) {
        dr_golden g;
        load_golden(gl.gl_pathv[f], &g);
        for (int i = 0; i < n; i++)
            if (claims_all(impls[i])) expect_golden_pass(&g, impls[i], gl.gl_pathv[f]);
        dr_golden_free(&g);
    }
    const size_t files = gl.gl_pathc;
    globfree(&gl);
    return files;
}

/* The golden files shipped with the project (PyTorch dumps). */
static void test_golden_project_files(void **state)
{
    (void)state;
    assert_true(check_golden_glob(PROJECT_GOLDEN_GLOB) > 0);
}

/* The shared golden samples, when ../shared is present. */
static void test_golden_shared_samples(void **state)
{
    (void)state;
    struct stat sb;
    if (stat(SHARED_GOLDEN_DIR, &sb) || !S_ISDIR(sb.st_mode)) {
        print_message("note: %s not found; shared golden samples not checked\n", SHARED_GOLDEN_DIR);
        skip();
    }
    assert_true(check_golden_glob(SHARED_GOLDEN_GLOB) > 0);
}

static void expect_same_bits(const void *a, const void *b, size_t bytes, const char *what)
{
    if ((a == NULL) != (b == NULL)) fail_msg("%s: present on one side only", what);
    if (a && memcmp(a, b, bytes)) fail_msg("%s: round trip changed the bits", what);
}

/* dr_golden_write a ref result, dr_golden_load it back: every implementation
 * claiming the regime passes it, and the loaded inputs, expectations and
 * metadata equal the originals bit for bit (with and without the optional
 * initial_state and seq_len). */
static void test_golden_round_trip(void **state)
{
    (void)state;
    static const dr_shape shapes[] = {{2, 37, 2, 4, 16, 24, 1, 1}, {1, 70, 1, 2, 32, 32, 0, 0}};
    const deltarule_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 0);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        dr_case c;
        make_case(&c, shapes[s], DR_REGIME_RANDOM, 80u + (unsigned long)s);
        outputs r = ref_outputs(&c.p);
        char path[256], err[512];
        tmp_path(path, sizeof path, "roundtrip.safetensors");
        if (dr_golden_write(path, &c, r.out, r.state, DR_GOLDEN_DEFAULT_ATOL, DR_GOLDEN_DEFAULT_RTOL, "test",
                            err, sizeof err))
            fail_msg("dr_golden_write: %s", err);
        dr_golden g;
        load_golden(path, &g);

        const deltarule_problem *a = &c.p, *b = &g.c.p;
        assert_int_equal(a->B, b->B); assert_int_equal(a->T, b->T);
        assert_int_equal(a->Hk, b->Hk); assert_int_equal(a->Hv, b->Hv);
        assert_int_equal(a->Dk, b->Dk); assert_int_equal(a->Dv, b->Dv);
        assert_int_equal(a->use_qk_l2norm, b->use_qk_l2norm);
        const float sa = deltarule_scale(a), sb = deltarule_scale(b);
        expect_same_bits(&sa, &sb, sizeof sa, "scale");
        assert_true(g.atol == DR_GOLDEN_DEFAULT_ATOL && g.rtol == DR_GOLDEN_DEFAULT_RTOL);
        const size_t nqk = sizeof(float) * dr_qk_elems(a), nv = sizeof(float) * dr_v_elems(a);
        const size_t ng = sizeof(float) * dr_gate_elems(a), ns = sizeof(float) * dr_state_elems(a);
        expect_same_bits(a->q, b->q, nqk, "q");
        expect_same_bits(a->k, b->k, nqk, "k");
        expect_same_bits(a->v, b->v, nv, "v");
        expect_same_bits(a->g, b->g, ng, "g");
        expect_same_bits(a->beta, b->beta, ng, "beta");
        expect_same_bits(a->initial_state, b->initial_state, ns, "initial_state");
        expect_same_bits(a->seq_len, b->seq_len, sizeof(int32_t) * a->B, "seq_len");
        expect_same_bits(r.out, g.expect_out, nv, "out");
        expect_same_bits(r.state, g.expect_state, ns, "final_state");

        for (int i = 0; i < n; i++)
            if (claims(impls[i], DR_REGIME_RANDOM)) expect_golden_pass(&g, impls[i], path);
        dr_golden_free(&g);
        unlink(path);
        outputs_free(&r);
        dr_case_free(&c);
    }
}

typedef enum { GOLDEN_INTACT, GOLDEN_NO_FINAL_STATE, GOLDEN_BAD_V_SHAPE, GOLDEN_NO_L2NORM_META, GOLDEN_NEGATIVE_ATOL } golden_defect;

/* A golden file for c with expectations r, written tensor by tensor with
 * the safetensors writer, with one defect. */
static void write_defective_golden(const char *path, const dr_case *c, const outputs *r, golden_defect defect)
{
    const deltarule_problem *p = &c->p;
    const int64_t sqk[] = {p->B, p->T, p->Hk, p->Dk}, sv[] = {p->B, p->T, p->Hv, p->Dv};
    const int64_t sv_bad[] = {p->B, p->T + 1, p->Hv, p->Dv};
    const int64_t sg[] = {p->B, p->T, p->Hv}, ss[] = {p->B, p->Hv, p->Dk, p->Dv};
    float *v_bad = calloc((size_t)p->B * (p->T + 1) * p->Hv * p->Dv, sizeof(float));
    st_writer *w = st_writer_new();
    assert_true(v_bad && w);
    const int bad_v = defect == GOLDEN_BAD_V_SHAPE;
    int rc = st_writer_add(w, "q", ST_F32, 4, sqk, p->q) || st_writer_add(w, "k", ST_F32, 4, sqk, p->k) ||
             st_writer_add(w, "v", ST_F32, 4, bad_v ? sv_bad : sv, bad_v ? v_bad : p->v) ||
             st_writer_add(w, "g", ST_F32, 3, sg, p->g) || st_writer_add(w, "beta", ST_F32, 3, sg, p->beta) ||
             st_writer_add(w, "out", ST_F32, 4, sv, r->out);
    if (defect != GOLDEN_NO_FINAL_STATE) rc = rc || st_writer_add(w, "final_state", ST_F32, 4, ss, r->state);
    if (defect != GOLDEN_NO_L2NORM_META) rc = rc || st_writer_meta(w, "use_qk_l2norm", "1");
    if (defect == GOLDEN_NEGATIVE_ATOL) rc = rc || st_writer_meta(w, "atol", "-1e05"); /* what the fuzzer found */
    if (rc) fail_msg("st_writer: %s", st_writer_error(w));
    char err[512];
    if (st_writer_write(w, path, err, sizeof err)) fail_msg("st_writer_write: %s", err);
    st_writer_free(w);
    free(v_bad);
}

/* dr_golden_load rejects a file missing final_state, one whose v does not
 * match q's [B, T], one without use_qk_l2norm metadata and one with a negative
 * atol (no element could pass): -1 with the offending name in the message (the
 * intact file loads). */
static void test_golden_malformed(void **state)
{
    (void)state;
    static const struct { golden_defect defect; const char *word; } cases[] = {
        {GOLDEN_INTACT, NULL},
        {GOLDEN_NO_FINAL_STATE, "'final_state'"},
        {GOLDEN_BAD_V_SHAPE, "'v'"},
        {GOLDEN_NO_L2NORM_META, "'use_qk_l2norm'"},
        {GOLDEN_NEGATIVE_ATOL, "atol = -100000"},
    };
    dr_case c;
    make_case(&c, (dr_shape){1, 9, 1, 2, 8, 8, 0, 0}, DR_REGIME_RANDOM, 90);
    outputs r = ref_outputs(&c.p);
    char path[256];
    tmp_path(path, sizeof path, "defective.safetensors");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_defective_golden(path, &c, &r, cases[i].defect);
        dr_golden g;
        char err[512] = "";
        const int rc = dr_golden_load(path, &g, err, sizeof err);
        if (!cases[i].word) {
            if (rc) fail_msg("the intact file does not load: %s", err);
            dr_golden_free(&g);
        } else {
            if (rc != -1) fail_msg("a golden file with defect %s loaded", cases[i].word);
            if (!strstr(err, cases[i].word)) fail_msg("message \"%s\" does not name %s", err, cases[i].word);
            dr_golden_free(&g); /* safe after a failed load */
        }
        unlink(path);
    }
    outputs_free(&r);
    dr_case_free(&c);
}

/* ------------------------------------------------------------------ */
/* Invalid problems                                                     */
/* ------------------------------------------------------------------ */

#define SENTINEL 12345.0f

/* deltarule_validate and deltarule_run (every implementation, ref
 * included) reject p: -1, a message containing word, nothing written. */
static void expect_rejected(const deltarule_problem *p, const deltarule_opts *o, const char *word, const char *what)
{
    char err[512] = "";
    if (!o) {
        if (deltarule_validate(p, 0, err, sizeof err) != -1) fail_msg("validate accepted %s", what);
        if (!strstr(err, word)) fail_msg("%s: validate message \"%s\" lacks \"%s\"", what, err, word);
    }
    const deltarule_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 1);
    for (int i = 0; i < n; i++) {
        err[0] = 0;
        if (deltarule_run(impls[i], p, o, err, sizeof err) != -1) fail_msg("%s ran %s", impls[i]->name, what);
        if (!strstr(err, word)) fail_msg("%s, %s: message \"%s\" lacks \"%s\"", impls[i]->name, what, err, word);
    }
}

/* A small valid problem whose outputs hold SENTINEL; it owns *c. */
static void make_valid(dr_case *c)
{
    make_case(c, (dr_shape){2, 8, 2, 4, 16, 16, 1, 1}, DR_REGIME_RANDOM, 99);
    fill(c->out, dr_v_elems(&c->p), SENTINEL);
    fill(c->final_state, dr_state_elems(&c->p), SENTINEL);
    char err[256];
    if (deltarule_validate(&c->p, 1, err, sizeof err)) fail_msg("the base problem is invalid: %s", err);
}

static void expect_untouched(const dr_case *c)
{
    for (size_t i = 0; i < dr_v_elems(&c->p); i++)
        if (c->out[i] != SENTINEL) fail_msg("a rejected run wrote out[%zu]", i);
    for (size_t i = 0; i < dr_state_elems(&c->p); i++)
        if (c->final_state[i] != SENTINEL) fail_msg("a rejected run wrote final_state[%zu]", i);
}

/* Hv not a multiple of Hk, and zero or negative dimensions. */
static void test_invalid_shapes(void **state)
{
    (void)state;
    dr_case c;
    make_valid(&c);
    deltarule_problem p = c.p;
    p.Hk = 3; /* Hv = 4 */
    expect_rejected(&p, NULL, "multiple", "Hv = 4, Hk = 3");

    static const char *const names[] = {"B", "T", "Hk", "Hv", "Dk", "Dv"};
    static const int bad[] = {0, -1, -64};
    for (int f = 0; f < 6; f++)
        for (size_t v = 0; v < sizeof bad / sizeof *bad; v++) {
            p = c.p;
            int *dims[] = {&p.B, &p.T, &p.Hk, &p.Hv, &p.Dk, &p.Dv};
            *dims[f] = bad[v];
            char what[32];
            snprintf(what, sizeof what, "%s = %d", names[f], bad[v]);
            expect_rejected(&p, NULL, "positive", what);
        }
    expect_untouched(&c);
    dr_case_free(&c);
}

/* A NULL q, k, v, g, beta or out: rejected, naming the tensor. */
static void test_invalid_null_tensors(void **state)
{
    (void)state;
    dr_case c;
    make_valid(&c);
    static const char *const names[] = {"'q'", "'k'", "'v'", "'g'", "'beta'", "'out'"};
    for (int t = 0; t < 6; t++) {
        deltarule_problem p = c.p;
        const float **inputs[] = {&p.q, &p.k, &p.v, &p.g, &p.beta};
        if (t < 5) *inputs[t] = NULL;
        else p.out = NULL;
        expect_rejected(&p, NULL, names[t], names[t]);
    }
    expect_untouched(&c);
    dr_case_free(&c);
}

/* seq_len[b] > T or < 0, and a scale that is NaN or negative. */
static void test_invalid_seq_len_and_scale(void **state)
{
    (void)state;
    dr_case c;
    make_valid(&c);
    const int32_t good[2] = {c.p.T, 3};
    const int32_t bad[][2] = {{c.p.T + 1, 3}, {c.p.T, -1}, {c.p.T, 1 << 30}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        memcpy(c.seq_len, bad[i], sizeof bad[i]);
        expect_rejected(&c.p, NULL, "seq_len", "seq_len out of [0, T]");
    }
    memcpy(c.seq_len, good, sizeof good);
    static const float bad_scale[] = {NAN, -0.5f, INFINITY};
    for (size_t i = 0; i < sizeof bad_scale / sizeof *bad_scale; i++) {
        deltarule_problem p = c.p;
        p.scale = bad_scale[i];
        expect_rejected(&p, NULL, "scale", "a bad scale");
    }
    expect_untouched(&c);
    dr_case_free(&c);
}

/* deltarule_validate(p, 1, ...) rejects a non-finite value in any input,
 * naming the tensor, and a positive g; without check_values the same
 * problems pass validation (values are the caller's business there). */
static void test_invalid_values(void **state)
{
    (void)state;
    dr_case c;
    make_valid(&c);
    const deltarule_problem *p = &c.p;
    struct { const char *word; float *x; size_t at; } t[] = {
        {"'q'", c.q, dr_qk_elems(p) / 2}, {"'k'", c.k, 1}, {"'v'", c.v, dr_v_elems(p) - 1},
        {"'g'", c.g, 3}, {"'beta'", c.beta, 0}, {"'initial_state'", c.initial_state, 7},
    };
    char err[512];
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        for (int inf = 0; inf < 2; inf++) {
            const float old = t[i].x[t[i].at];
            t[i].x[t[i].at] = inf ? -INFINITY : NAN;
            err[0] = 0;
            assert_int_equal(deltarule_validate(p, 1, err, sizeof err), -1);
            if (!strstr(err, t[i].word)) fail_msg("message \"%s\" does not name %s", err, t[i].word);
            assert_int_equal(deltarule_validate(p, 0, err, sizeof err), 0);
            t[i].x[t[i].at] = old;
        }
    }
    c.g[5] = 0.25f;
    err[0] = 0;
    assert_int_equal(deltarule_validate(p, 1, err, sizeof err), -1);
    if (!strstr(err, "g[5]") || !strstr(err, "positive")) fail_msg("message \"%s\" does not name g[5] as positive", err);
    dr_case_free(&c);
}

/* Unknown implementation names give NULL, and every table entry is found
 * by its (unique) name; a NULL implementation is rejected by deltarule_run. */
static void test_invalid_impl_names(void **state)
{
    (void)state;
    assert_null(deltarule_find("no-such-implementation"));
    assert_null(deltarule_find(""));
    assert_null(deltarule_find("Recurrent"));
    for (int i = 0; i < deltarule_n_impls; i++) {
        assert_ptr_equal(deltarule_find(deltarule_impls[i].name), &deltarule_impls[i]);
        assert_non_null(deltarule_impls[i].run);
    }
    dr_case c;
    make_valid(&c);
    char err[256] = "";
    assert_int_equal(deltarule_run(NULL, &c.p, NULL, err, sizeof err), -1);
    assert_true(err[0] != 0);
    expect_untouched(&c);
    dr_case_free(&c);
}

/* Options out of range: chunk 5000 or negative, negative neumann_order. */
static void test_invalid_options(void **state)
{
    (void)state;
    dr_case c;
    make_valid(&c);
    static const struct { deltarule_opts o; const char *word; } bad[] = {
        {{.chunk = 5000}, "chunk"}, {{.chunk = 1025}, "chunk"}, {{.chunk = -1}, "chunk"},
        {{.neumann_order = -1}, "Neumann"}, {{.solver = 99}, "solver"}, {{.threads = -1}, "thread"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) expect_rejected(&c.p, &bad[i].o, bad[i].word, bad[i].word);
    expect_untouched(&c);
    dr_case_free(&c);
}

/* A solver an implementation does not have is refused, not silently replaced. */
static void test_invalid_solver_for_impl(void **state)
{
    (void)state;
    dr_case c;
    make_valid(&c);
    static const struct { const char *impl; int solver; } bad[] = {
        {"chunked", DR_SOLVER_NEUMANN_DENSE}, {"chunked-blocked", DR_SOLVER_NEUMANN_BLOCKED},
        {"neumann", DR_SOLVER_FWDSUB}, {"recurrent", DR_SOLVER_FWDSUB}, {"ref", DR_SOLVER_NEUMANN_DENSE},
    };
    char err[256];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        deltarule_opts o = {.solver = bad[i].solver};
        err[0] = 0;
        assert_int_equal(deltarule_run(deltarule_named(bad[i].impl), &c.p, &o, err, sizeof err), -1);
        assert_non_null(strstr(err, "solver"));
    }
    expect_untouched(&c);
    /* and the other solver of the same family is accepted */
    deltarule_opts ok = {.solver = DR_SOLVER_FWDSUB_BLOCKED};
    assert_int_equal(deltarule_run(deltarule_find("chunked"), &c.p, &ok, err, sizeof err), 0);
    dr_case_free(&c);
}

/* The software-defined counters a run adds are the problem's analytic work
 * (docs/counters.md): recurrent-form flops 6*Dk*Dv per valid token and value
 * head, state read and written once, every input datum once, and for the
 * chunked forms one chunk and one solve per ceil(len/C) per head. */
static void test_sde_counts_match_analytic(void **state)
{
    (void)state;
    const dr_shape s = {3, 70, 2, 4, 48, 100, 1, 1};
    dr_case c;
    char err[256];
    assert_int_equal(dr_case_make(&c, &s, DR_REGIME_RANDOM, 5, err, sizeof err), 0);
    long long tokens = 0, chunks = 0;
    for (int b = 0; b < s.B; b++) {
        tokens += c.seq_len[b];
        chunks += 4LL * ((c.seq_len[b] + 15) / 16);
    }
    const char *impls[] = {"chunked", "recurrent"};
    for (int i = 0; i < 2; i++) {
        long long before[Q35_SDE_COUNT];
        for (int k = 0; k < Q35_SDE_COUNT; k++) before[k] = q35_sde_value((q35_sde_id)k);
        deltarule_opts o = {.chunk = i == 0 ? 16 : 0};
        assert_int_equal(deltarule_run(deltarule_named(impls[i]), &c.p, &o, err, sizeof err), 0);
        long long d[Q35_SDE_COUNT];
        for (int k = 0; k < Q35_SDE_COUNT; k++) d[k] = q35_sde_value((q35_sde_id)k) - before[k];
        assert_int_equal(d[Q35_SDE_TOKENS], tokens);
        assert_int_equal(d[Q35_SDE_FLOPS], 6LL * 48 * 100 * 4 * tokens);
        assert_int_equal(d[Q35_SDE_STATE_BYTES_READ], 4LL * 3 * 4 * 48 * 100);
        assert_int_equal(d[Q35_SDE_STATE_BYTES_WRITTEN], 4LL * 3 * 4 * 48 * 100);
        assert_int_equal(d[Q35_SDE_WEIGHT_BYTES_READ], 4LL * tokens * (2 * 2 * 48 + 4 * 100 + 2 * 4));
        assert_int_equal(d[Q35_SDE_CHUNKS], i == 0 ? chunks : 0);
        assert_int_equal(d[Q35_SDE_SOLVER_CALLS], i == 0 ? chunks : 0);
    }
    dr_case_free(&c);
}

/* ------------------------------------------------------------------ */
/* Checkpoints (deltarule.h, docs/deltarule.md §"Checkpoints")          */
/* ------------------------------------------------------------------ */

/* The expected checkpoint at token t: ref's final state on the problem cut
 * to its first t+1 tokens (seq_len clipped to t+1), so the expectation does
 * not come from anyone's checkpoint code, ref's included. */
static void state_after_prefix(const deltarule_problem *p, int t, float *state)
{
    const int n = t + 1, B = p->B;
    const size_t qk = (size_t)p->Hk * p->Dk, vv = (size_t)p->Hv * p->Dv, gg = (size_t)p->Hv;
    float *q = malloc(sizeof(float) * B * n * qk), *k = malloc(sizeof(float) * B * n * qk);
    float *v = malloc(sizeof(float) * B * n * vv), *out = malloc(sizeof(float) * B * n * vv);
    float *g = malloc(sizeof(float) * B * n * gg), *beta = malloc(sizeof(float) * B * n * gg);
    int32_t *len = malloc(sizeof(int32_t) * B);
    assert_true(q && k && v && out && g && beta && len);
    gather_rows(q, p->q, B, p->T, 0, n, qk);
    gather_rows(k, p->k, B, p->T, 0, n, qk);
    gather_rows(v, p->v, B, p->T, 0, n, vv);
    gather_rows(g, p->g, B, p->T, 0, n, gg);
    gather_rows(beta, p->beta, B, p->T, 0, n, gg);
    for (int b = 0; b < B; b++) len[b] = deltarule_valid_len(p, b) < n ? deltarule_valid_len(p, b) : n;
    deltarule_problem c = *p;
    c.T = n;
    c.q = q; c.k = k; c.v = v; c.g = g; c.beta = beta; c.out = out;
    c.seq_len = p->seq_len ? len : NULL;
    c.final_state = state;
    c.n_checkpoints = 0; c.checkpoint_t = NULL; c.checkpoint_states = NULL;
    run_problem(ref_impl(), &c, NULL);
    free(q); free(k); free(v); free(out); free(g); free(beta); free(len);
}

/* One checkpoint problem: the case, its positions, ref's outputs without
 * checkpoints and the expected checkpoint states. */
typedef struct {
    dr_case c;
    int regime, n;
    int32_t at[16];
    outputs ref;
    float *expect; /* [n, B, Hv, Dk, Dv] */
} ckpt_case;

static void ckpt_case_make(ckpt_case *k, dr_shape s, int regime, unsigned long seed, const int32_t *lens,
                           const int32_t *at, int n)
{
    make_case(&k->c, s, regime, seed);
    k->regime = regime;
    if (lens) memcpy(k->c.seq_len, lens, sizeof(int32_t) * s.B);
    assert_true(n <= 16);
    k->n = n;
    memcpy(k->at, at, sizeof(int32_t) * n);
    k->ref = ref_outputs(&k->c.p);
    const size_t ns = dr_state_elems(&k->c.p);
    k->expect = malloc(sizeof(float) * ns * (n ? n : 1));
    assert_non_null(k->expect);
    for (int i = 0; i < n; i++) state_after_prefix(&k->c.p, at[i], k->expect + i * ns);
}

static void ckpt_case_free(ckpt_case *k)
{
    outputs_free(&k->ref);
    free(k->expect);
    dr_case_free(&k->c);
}

/* im (with opts) on k with its checkpoints: out, final state and every
 * checkpoint within im's tolerance of ref; out and the final state bitwise
 * what the same call gives without checkpoints (for every form but
 * DR_CKPT_SPLIT, whose chunks differ: to tolerance there); a checkpoint at
 * or past a sequence's length bitwise its final state. */
static void ckpt_check(const deltarule_impl *im, const ckpt_case *k, const deltarule_opts *opts, int split,
                       const char *label)
{
    const deltarule_problem *p = &k->c.p;
    const size_t ns = dr_state_elems(p), head = (size_t)p->Hv * p->Dk * p->Dv;
    outputs plain = outputs_alloc(p), x = outputs_alloc(p);
    run_into(im, p, opts, &plain);
    float *ck = malloc(sizeof(float) * ns * k->n);
    assert_non_null(ck);
    fill(ck, ns * k->n, NAN);
    deltarule_problem q = *p;
    q.n_checkpoints = k->n;
    q.checkpoint_t = k->at;
    q.checkpoint_states = ck;
    run_into(im, &q, opts, &x);
    char what[160];
    snprintf(what, sizeof what, "%s, checkpoints", label);
    expect_close(worst_err(&x, &k->ref), im->claim_tol, im->name, what, p);
    for (int i = 0; i < k->n; i++) {
        const double e = err_compare(ck + i * ns, k->expect + i * ns, ns).normwise;
        snprintf(what, sizeof what, "%s, checkpoint %d (t = %d)", label, i, k->at[i]);
        expect_close(e, im->claim_tol, im->name, what, p);
        for (int b = 0; b < p->B; b++)
            if (deltarule_valid_len(p, b) <= k->at[i] &&
                memcmp(ck + i * ns + b * head, x.state + b * head, sizeof(float) * head))
                fail_msg("%s, %s: checkpoint t = %d of sequence %d (length %d) is not its final state", im->name,
                         label, k->at[i], b, deltarule_valid_len(p, b));
    }
    if (!split) {
        if (memcmp(x.out, plain.out, sizeof(float) * x.nv) || memcmp(x.state, plain.state, sizeof(float) * x.ns))
            fail_msg("%s, %s, %s: out or final state changed when checkpoints were asked for", im->name, label,
                     shape_str(p));
    } else {
        snprintf(what, sizeof what, "%s, split chunks vs none", label);
        expect_close(worst_err(&x, &plain), im->claim_tol, im->name, what, p);
    }
    free(ck);
    outputs_free(&plain);
    outputs_free(&x);
}

/* The checkpoint cases: a verify window (a checkpoint after every token but
 * the last) at T = 2, 3, 5, 9 (odd windows end the two-token sweeps on one
 * token; 2 and 3 run in place, 5 and 9 packed), Qwen3.5's head dims; a
 * right-padded batch with checkpoints past some lengths (0, 1, 5 tokens);
 * chunk boundaries (C = 64) on both sides of checkpoints; T = 1 decode with
 * one checkpoint; strong decay (the scaled-state kernels rescale inside a
 * window, eq. 3a). */
#define N_CKPT_CASES 8
static ckpt_case *g_ckpt;

static const ckpt_case *ckpt_cases(void)
{
    if (g_ckpt) return g_ckpt;
    ckpt_case *k = calloc(N_CKPT_CASES, sizeof *k);
    assert_non_null(k);
    int i = 0;
    static const int32_t every[] = {0, 1, 2, 3, 4, 5, 6, 7};
    ckpt_case_make(&k[i++], (dr_shape){1, 2, 2, 4, 128, 128, 1, 0}, DR_REGIME_RANDOM, 301, NULL, every, 1);
    ckpt_case_make(&k[i++], (dr_shape){2, 3, 2, 4, 128, 128, 1, 0}, DR_REGIME_RANDOM, 302, NULL, every, 2);
    ckpt_case_make(&k[i++], (dr_shape){1, 5, 2, 2, 128, 128, 1, 0}, DR_REGIME_RANDOM, 303, NULL, every, 4);
    ckpt_case_make(&k[i++], (dr_shape){3, 9, 2, 4, 48, 100, 1, 0}, DR_REGIME_STRONG_DECAY, 304, NULL, every, 8);
    {
        static const int32_t lens[] = {9, 0, 1, 5}, at[] = {0, 2, 5, 8};
        ckpt_case_make(&k[i++], (dr_shape){4, 9, 2, 4, 48, 100, 1, 1}, DR_REGIME_RANDOM, 305, lens, at, 4);
    }
    {
        static const int32_t lens[] = {150, 70}, at[] = {0, 5, 62, 63, 64, 100, 127, 149};
        ckpt_case_make(&k[i++], (dr_shape){2, 150, 1, 2, 128, 128, 1, 1}, DR_REGIME_RANDOM, 306, lens, at, 8);
    }
    {
        static const int32_t at[] = {0};
        ckpt_case_make(&k[i++], (dr_shape){2, 1, 2, 4, 128, 128, 1, 0}, DR_REGIME_RANDOM, 307, NULL, at, 1);
    }
    {
        static const int32_t at[] = {3, 40, 64, 65, 129};
        ckpt_case_make(&k[i++], (dr_shape){1, 130, 2, 2, 64, 32, 1, 0}, DR_REGIME_SLOW_DECAY, 308, NULL, at, 5);
    }
    assert_int_equal(i, N_CKPT_CASES);
    g_ckpt = k;
    return k;
}

static int ckpt_teardown(void **state)
{
    (void)state;
    for (int i = 0; g_ckpt && i < N_CKPT_CASES; i++) ckpt_case_free(&g_ckpt[i]);
    free(g_ckpt);
    g_ckpt = NULL;
    cpu_isa_force(ISA_AUTO);
    return 0;
}

/* Every implementation (ref too) x every ISA level this CPU has x (for the
 * chunked forms) both checkpoint modes, on every checkpoint case. */
static void test_ckpt_every_impl_and_isa(void **state)
{
    (void)state;
    const ckpt_case *k = ckpt_cases();
    const deltarule_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls, 1);
    for (int isa = ISA_GENERIC; isa <= ISA_AVX512; isa++) {
        if (isa > (int)cpu_isa_best()) {
            printf("[  SKIPPED ] checkpoints at ISA %s: this CPU has only %s\n", cpu_isa_name((cpu_isa_level)isa),
                   cpu_isa_name(cpu_isa_best()));
            continue;
        }
        cpu_isa_force((cpu_isa_level)isa);
        assert_int_equal(cpu_isa(), isa);
        for (int c = 0; c < N_CKPT_CASES; c++)
            for (int i = 0; i < n; i++) {
                if (!claims(impls[i], k[c].regime)) continue;
                const int modes = is_chunked(impls[i]) || !strcmp(impls[i]->name, "auto") ? 3 : 1;
                for (int m = 0; m < modes; m++) {
                    deltarule_opts o = {.checkpoint_mode = m};
                    char label[96];
                    snprintf(label, sizeof label, "ISA %s, mode %d", cpu_isa_name((cpu_isa_level)isa), m);
                    /* the default splits when checkpoints are 16+ tokens apart (chunk_engine.c) */
                    const int split = is_chunked(impls[i]) &&
                                      (m == DR_CKPT_SPLIT || (m == DR_CKPT_DEFAULT && k[c].c.p.T >= 16 * k[c].n));
                    ckpt_check(impls[i], &k[c], &o, split, label);
                }
            }
    }
    cpu_isa_force(ISA_AUTO);
}

/* Checkpoint fields that are refused: nothing written, the message names
 * the field. */
static void test_ckpt_invalid(void **state)
{
    (void)state;
    dr_case c;
    make_valid(&c); /* T = 8 */
    float *ck = malloc(sizeof(float) * dr_state_elems(&c.p) * 9);
    assert_non_null(ck);
    fill(ck, dr_state_elems(&c.p) * 9, SENTINEL);
    static const int32_t unsorted[] = {3, 1}, repeated[] = {2, 2}, negative[] = {-1}, past[] = {8},
                         nine[] = {0, 1, 2, 3, 4, 5, 6, 7, 7};
    const struct { const int32_t *at; int n; float *buf; const char *word, *what; } bad[] = {
        {unsorted, 2, ck, "ascending", "checkpoints 3, 1"},
        {repeated, 2, ck, "ascending", "checkpoints 2, 2"},
        {negative, 1, ck, "outside", "checkpoint -1"},
        {past, 1, ck, "outside", "checkpoint T"},
        {nine, 9, ck, "n_checkpoints", "9 checkpoints at T = 8"},
        {unsorted, -1, ck, "n_checkpoints", "n_checkpoints = -1"},
        {NULL, 1, ck, "checkpoint_t", "checkpoint_t NULL"},
        {past, 1, NULL, "checkpoint_states", "checkpoint_states NULL"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        deltarule_problem p = c.p;
        p.n_checkpoints = bad[i].n;
        p.checkpoint_t = bad[i].at;
        p.checkpoint_states = bad[i].buf;
        expect_rejected(&p, NULL, bad[i].word, bad[i].what);
    }
    expect_untouched(&c);
    for (size_t i = 0; i < dr_state_elems(&c.p) * 9; i++)
        if (ck[i] != SENTINEL) fail_msg("a rejected run wrote checkpoint_states[%zu]", i);
    /* an unknown checkpoint mode */
    deltarule_problem p = c.p;
    deltarule_opts o = {.checkpoint_mode = 7};
    expect_rejected(&p, &o, "checkpoint mode", "checkpoint_mode = 7");
    free(ck);
    dr_case_free(&c);
}

/* Q35_SDE_STATE_BYTES_WRITTEN counts each checkpoint as one state. */
static void test_ckpt_counted(void **state)
{
    (void)state;
    dr_case c;
    make_case(&c, (dr_shape){2, 10, 2, 4, 16, 16, 1, 0}, DR_REGIME_RANDOM, 311);
    float *ck = malloc(sizeof(float) * dr_state_elems(&c.p) * 3);
    assert_non_null(ck);
    static const int32_t at[] = {1, 4, 9};
    deltarule_problem p = c.p;
    p.n_checkpoints = 3;
    p.checkpoint_t = at;
    p.checkpoint_states = ck;
    const long long before = q35_sde_value(Q35_SDE_STATE_BYTES_WRITTEN);
    run_problem(&deltarule_impls[0], &p, NULL); /* final state and 3 checkpoints: 4 states of B Hv Dk Dv floats */
    assert_int_equal(q35_sde_value(Q35_SDE_STATE_BYTES_WRITTEN) - before, 4LL * (4LL * 2 * 4 * 16 * 16));
    free(ck);
    dr_case_free(&c);
}

int main(void)
{
    const struct CMUnitTest grid[] = {
        cmocka_unit_test(test_grid_default),
        cmocka_unit_test_setup_teardown(test_grid_generic_isa, force_generic_isa, restore_isa),
        cmocka_unit_test(test_grid_chunk16),
        cmocka_unit_test(test_grid_chunk7),
    };
    const struct CMUnitTest state_tests[] = {
        cmocka_unit_test(test_state_carry_two_pieces),
        cmocka_unit_test(test_state_carry_prefill_then_decode),
        cmocka_unit_test(test_state_carry_token_by_token),
        cmocka_unit_test(test_state_in_place),
        cmocka_unit_test(test_padding),
        cmocka_unit_test(test_optional_state_pointers),
    };
    const struct CMUnitTest gates_and_options[] = {
        cmocka_unit_test(test_gate_strong_decay_washes_out),
        cmocka_unit_test(test_gate_identity_steps),
        cmocka_unit_test(test_gate_single_full_write),
        cmocka_unit_test(test_neumann_truncation_is_honored),
        cmocka_unit_test(test_options_vs_ref),
    };
    const struct CMUnitTest golden[] = {
        cmocka_unit_test(test_golden_project_files),
        cmocka_unit_test(test_golden_shared_samples),
        cmocka_unit_test(test_golden_round_trip),
        cmocka_unit_test(test_golden_malformed),
    };
    const struct CMUnitTest invalid[] = {
        cmocka_unit_test(test_invalid_shapes),
        cmocka_unit_test(test_invalid_null_tensors),
        cmocka_unit_test(test_invalid_seq_len_and_scale),
        cmocka_unit_test(test_invalid_values),
        cmocka_unit_test(test_invalid_impl_names),
        cmocka_unit_test(test_invalid_options),
        cmocka_unit_test(test_invalid_solver_for_impl),
        cmocka_unit_test(test_sde_counts_match_analytic),
    };
    const struct CMUnitTest checkpoints[] = {
        cmocka_unit_test(test_ckpt_every_impl_and_isa),
        cmocka_unit_test(test_ckpt_invalid),
        cmocka_unit_test(test_ckpt_counted),
    };
    int fails = 0;
    fails += cmocka_run_group_tests_name("grid", grid, NULL, grid_teardown);
    fails += cmocka_run_group_tests_name("checkpoints", checkpoints, NULL, ckpt_teardown);
    fails += cmocka_run_group_tests_name("state", state_tests, NULL, NULL);
    fails += cmocka_run_group_tests_name("gates and options", gates_and_options, NULL, NULL);
    fails += cmocka_run_group_tests_name("golden", golden, tmpdir_setup, tmpdir_teardown);
    fails += cmocka_run_group_tests_name("invalid", invalid, NULL, NULL);
    return fails ? 1 : 0;
}
