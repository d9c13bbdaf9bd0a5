#include "harness/deltarule_grad_check.h"

#include "ref/deltarule_grad_ref.h"
#include "harness/deltarule_inputs.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const grad_names[DR_GRAD_COUNT] = {"dq", "dk", "dv", "dg", "dbeta", "d_initial_state"};

const char *dr_grad_name(int i) { return i >= 0 && i < DR_GRAD_COUNT ? grad_names[i] : "?"; }

size_t dr_grad_elems(const deltarule_problem *p, int i)
{
    switch (i) {
    case DR_GRAD_DQ: case DR_GRAD_DK: return dr_qk_elems(p);
    case DR_GRAD_DV: return dr_v_elems(p);
    case DR_GRAD_DG: case DR_GRAD_DBETA: return dr_gate_elems(p);
    case DR_GRAD_DH0: return p->initial_state ? dr_state_elems(p) : 0;
    default: return 0;
    }
}

int dr_grads_alloc(dr_grads *g, const deltarule_problem *p)
{
    memset(g, 0, sizeof *g);
    for (int i = 0; i < DR_GRAD_COUNT; i++) {
        const size_t n = dr_grad_elems(p, i);
        if (n && !(g->t[i] = dr_big_alloc(sizeof(float) * n, &g->huge[i]))) {
            dr_grads_free(g);
            return -1;
        }
    }
    return 0;
}

void dr_grads_free(dr_grads *g)
{
    for (int i = 0; i < DR_GRAD_COUNT; i++) dr_big_free(g->t[i], g->huge[i]);
    memset(g, 0, sizeof *g);
}

void dr_grads_fill_nan(dr_grads *g, const deltarule_problem *p)
{
    for (int i = 0; i < DR_GRAD_COUNT; i++)
        for (size_t j = 0, n = g->t[i] ? dr_grad_elems(p, i) : 0; j < n; j++) g->t[i][j] = NAN;
}

deltarule_grad_problem dr_grads_problem(const deltarule_problem *fwd, const float *d_out, const float *d_final_state,
                                        dr_grads *g)
{
    return (deltarule_grad_problem){.fwd = fwd, .d_out = d_out, .d_final_state = d_final_state,
                                    .dq = g->t[DR_GRAD_DQ], .dk = g->t[DR_GRAD_DK], .dv = g->t[DR_GRAD_DV],
                                    .dg = g->t[DR_GRAD_DG], .dbeta = g->t[DR_GRAD_DBETA],
                                    .d_initial_state = g->t[DR_GRAD_DH0]};
}

int dr_grad_n_entries(void) { return 1 + deltarule_grad_n_impls; }

const deltarule_grad_impl *dr_grad_entry(int i)
{
    if (i == 0) return &deltarule_grad_ref_impl;
    return i > 0 && i <= deltarule_grad_n_impls ? &deltarule_grad_impls[i - 1] : NULL;
}

const deltarule_grad_impl *dr_grad_named(const char *name)
{
    for (int i = 0; i < dr_grad_n_entries(); i++)
        if (!strcmp(dr_grad_entry(i)->name, name)) return dr_grad_entry(i);
    return NULL;
}

/* The grid: T = 1, the chunk boundaries 63/64/65 and two chunks (128), GQA,
 * Dv != Dk (100: vector remainders), padding, l2norm off, with and without
 * an initial state and an upstream d_final_state.  (The `long` regime
 * raises T to 2048.) */
typedef struct {
    dr_shape s;
    int no_l2norm;     /* l2norm off; q, k scaled by 1/sqrt(Dk) so the delta rule stays tame */
    int d_final_state; /* an upstream gradient of the final state (else NULL: zero) */
} grad_shape;

static const grad_shape full_shapes[] = {
    {{1, 1, 1, 1, 16, 16, 1, 0}, 0, 1},
    {{1, 63, 1, 2, 32, 48, 1, 0}, 0, 0},
    {{1, 64, 2, 2, 64, 64, 0, 0}, 1, 1},
    {{2, 65, 2, 4, 48, 100, 1, 1}, 0, 1},
    {{1, 128, 1, 1, 128, 128, 1, 0}, 0, 1},
};
static const grad_shape quick_shapes[] = {
    {{1, 1, 1, 1, 16, 16, 1, 0}, 0, 1},
    {{2, 65, 2, 4, 48, 100, 1, 1}, 0, 1},
    {{1, 64, 1, 1, 64, 64, 0, 0}, 1, 0},
};

static void case_name(char *buf, size_t n, const deltarule_problem *p, const grad_shape *gs, unsigned long seed)
{
    snprintf(buf, n, "B%d T%d H%d/%d D%d/%d%s%s%s s%lu", p->B, p->T, p->Hk, p->Hv, p->Dk, p->Dv,
             gs->s.with_seq_len ? " pad" : "", gs->no_l2norm ? " nol2" : "", gs->d_final_state ? " dS" : "", seed);
}

static int build_rows(const dr_grad_check_config *cfg, dr_grad_row **rows, int *n_rows, char *err, size_t errlen)
{
    dr_grad_row *r = calloc(deltarule_grad_n_impls + 1, sizeof *r);
    int n = 0;
    if (!r) { snprintf(err, errlen, "out of memory"); return -1; }
    for (int i = 1; i < dr_grad_n_entries(); i++) { /* entry 0, ref, is the yardstick */
        const deltarule_grad_impl *im = dr_grad_entry(i);
        if (cfg->only_impl && strcmp(cfg->only_impl, "all") && strcmp(cfg->only_impl, im->name)) continue;
        if (im->available && !im->available()) continue;
        r[n++].impl = im;
    }
    if (!n) {
        free(r);
        snprintf(err, errlen, "no backward implementation named '%s' (the backward's: %s)", cfg->only_impl,
                 deltarule_grad_n_impls ? deltarule_grad_impls[0].name : "none");
        return -1;
    }
    *rows = r;
    *n_rows = n;
    return 0;
}

/* Upstream gradients for a case: d_out ~ N(0,1), d_final_state ~ N(0,1) or NULL. */
static int make_upstream(const deltarule_problem *p, int with_dfs, unsigned long seed, int regime, float **d_out,
                         float **dfs)
{
    const size_t nv = dr_v_elems(p), ns = dr_state_elems(p);
    *d_out = malloc(sizeof(float) * nv);
    *dfs = with_dfs ? malloc(sizeof(float) * ns) : NULL;
    if (!*d_out || (with_dfs && !*dfs)) {
        free(*d_out); free(*dfs);
        return -1;
    }
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, seed * 7919ul + (unsigned long)regime + 17ul);
    for (size_t i = 0; i < nv; i++) (*d_out)[i] = (float)gsl_ran_gaussian(r, 1.0);
    for (size_t i = 0; *dfs && i < ns; i++) (*dfs)[i] = (float)gsl_ran_gaussian(r, 1.0);
    gsl_rng_free(r);
    return 0;
}

static void check_case(const dr_grad_check_config *cfg, const deltarule_grad_problem *ref_gp, dr_grads *ref,
                       dr_grads *out, int regime, const char *name, dr_grad_row *rows, int n_rows)
{
    const deltarule_problem *p = ref_gp->fwd;
    for (int i = 0; i < n_rows; i++) {
        dr_grad_cell *cell = &rows[i].cell[regime];
        if (cell->status == CELL_ERROR) continue;
        dr_grads_fill_nan(out, p);
        deltarule_grad_problem gp = dr_grads_problem(p, ref_gp->d_out, ref_gp->d_final_state, out);
        const deltarule_opts o = {.crossover = cfg->crossover};
        deltarule_grad_stats st = {0};
        char err[200];
        if (deltarule_grad_run(rows[i].impl, &gp, &o, &st, err, sizeof err)) {
            cell->status = CELL_ERROR;
            snprintf(cell->error, sizeof cell->error, "%s: %s", name, err);
            continue;
        }
        err_stats e = {0};
        for (int k = 0; k < DR_GRAD_COUNT; k++) {
            const size_t n = dr_grad_elems(p, k);
            if (!n) continue;
            const err_stats ek = err_compare(out->t[k], ref->t[k], n);
            cell->grad[k] = cell->has[k] ? err_worst(cell->grad[k], ek) : ek;
            cell->has[k] = 1;
            e = err_worst(e, ek);
        }
        if (e.normwise > cell->worst.normwise || isnan(e.normwise) || !cell->worst_case[0])
            snprintf(cell->worst_case, sizeof cell->worst_case, "%s", name);
        cell->worst = err_worst(cell->worst, e);
        if (st.bytes_held > cell->bytes_held) cell->bytes_held = st.bytes_held;
    }
}

/* One case: make it, run ref, run every row.  0, or -1 with a message. */
static int run_case(const dr_grad_check_config *cfg, const grad_shape *gs, int regime, unsigned long seed,
                    dr_grad_row *rows, int n_rows, char *err, size_t errlen)
{
    dr_case c;
    if (dr_case_make(&c, &gs->s, regime, seed, err, errlen)) return -1;
    if (gs->no_l2norm) {
        c.p.use_qk_l2norm = 0;
        const float s = 1.0f / sqrtf((float)c.p.Dk);
        for (size_t i = 0; i < dr_qk_elems(&c.p); i++) { c.q[i] *= s; c.k[i] *= s; }
    }
    float *d_out = NULL, *dfs = NULL;
    dr_grads ref = {0}, out = {0};
    int rc = -1;
    if (make_upstream(&c.p, gs->d_final_state, seed, regime, &d_out, &dfs) || dr_grads_alloc(&ref, &c.p) ||
        dr_grads_alloc(&out, &c.p)) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    char name[96];
    case_name(name, sizeof name, &c.p, gs, seed);
    const deltarule_grad_problem ref_gp = dr_grads_problem(&c.p, d_out, dfs, &ref);
    char why[256];
    if (deltarule_grad_run(&deltarule_grad_ref_impl, &ref_gp, NULL, NULL, why, sizeof why)) {
        snprintf(err, errlen, "ref on %s %s: %s", name, dr_regime_name(regime), why);
        goto done;
    }
    check_case(cfg, &ref_gp, &ref, &out, regime, name, rows, n_rows);
    rc = 0;
done:
    dr_grads_free(&ref);
    dr_grads_free(&out);
    free(d_out);
    free(dfs);
    dr_case_free(&c);
    return rc;
}

int dr_grad_check_run(const dr_grad_check_config *cfg, dr_grad_row **rows_out, int *n_rows_out, char *err,
                      size_t errlen)
{
    dr_grad_row *rows;
    int n_rows;
    if (build_rows(cfg, &rows, &n_rows, err, errlen)) return -1;
    const grad_shape *shapes = cfg->quick ? quick_shapes : full_shapes;
    const int n_shapes = cfg->quick ? (int)(sizeof quick_shapes / sizeof *quick_shapes)
                                    : (int)(sizeof full_shapes / sizeof *full_shapes);
    const int seeds = cfg->seeds > 0 ? cfg->seeds : (cfg->quick ? 1 : 2);
    const int total = n_shapes * DR_REGIME_COUNT * seeds;
    int done = 0;
    for (int s = 0; s < n_shapes; s++)
        for (int r = 0; r < DR_REGIME_COUNT; r++)
            for (int seed = 1; seed <= seeds; seed++) {
                if (run_case(cfg, &shapes[s], r, (unsigned long)seed, rows, n_rows, err, errlen)) {
                    free(rows);
                    return -1;
                }
                if (cfg->progress) cfg->progress(dr_regime_name(r), ++done, total);
            }
    int failed = 0;
    for (int i = 0; i < n_rows; i++)
        for (int r = 0; r < DR_REGIME_COUNT; r++) {
            dr_grad_cell *cell = &rows[i].cell[r];
            if (cell->status == CELL_ERROR) { failed++; continue; }
            const int claimed = (rows[i].impl->claims & DR_CLAIM(r)) != 0;
            const int holds = cell->worst.nonfinite == 0 && cell->worst.normwise <= rows[i].impl->claim_tol;
            cell->status = !claimed ? CELL_UNCLAIMED : holds ? CELL_PASS : CELL_FAIL;
            failed += cell->status == CELL_FAIL;
        }
    *rows_out = rows;
    *n_rows_out = n_rows;
    return failed;
}
