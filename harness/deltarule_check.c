#include "harness/deltarule_check.h"

#include "harness/deltarule_inputs.h"
#include "harness/impl_select.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The grid: T = 1, a chunk boundary straddled (67 = 64 + 3), GQA with
 * Dv = 100 (vector remainders), Qwen3.5's head size, padding. */
static const dr_shape full_shapes[] = {
    {1, 1, 1, 1, 16, 16, 1, 0},
    {2, 67, 2, 4, 48, 100, 1, 1},
    {1, 130, 2, 2, 128, 128, 1, 0},
    {3, 64, 1, 1, 64, 32, 0, 1},
};
static const dr_shape quick_shapes[] = {
    {1, 1, 1, 1, 16, 16, 1, 0},
    {2, 67, 2, 4, 48, 100, 1, 1},
    {1, 70, 1, 2, 128, 128, 1, 0},
};

static void shape_name(char *buf, size_t n, const deltarule_problem *p, int has_len, unsigned long seed)
{
    snprintf(buf, n, "B%d T%d H%d/%d D%d/%d%s s%lu", p->B, p->T, p->Hk, p->Hv, p->Dk, p->Dv,
             has_len ? " pad" : "", seed);
}

static int build_rows(const dr_check_config *cfg, dr_check_row **rows, int *n_rows, char *err, size_t errlen)
{
    int cap = deltarule_n_entries() * (1 + cfg->n_chunks), n = 0;
    dr_check_row *r = calloc(cap, sizeof *r);
    if (!r) { snprintf(err, errlen, "out of memory"); return -1; }
    for (int i = 0; i < deltarule_n_entries(); i++) {
        const deltarule_impl *im = deltarule_entry(i);
        if (!strcmp(im->name, "ref")) continue; /* the yardstick */
        if (cfg->only_impl && strcmp(cfg->only_impl, "all") && strcmp(cfg->only_impl, im->name)) continue;
        if (im->available && !im->available()) continue;
        r[n].impl = im;
        snprintf(r[n].label, sizeof r[n].label, "%s", im->name);
        n++;
        for (int c = 0; c < cfg->n_chunks && im->defaults.chunk > 0; c++) {
            if (cfg->chunks[c] == im->defaults.chunk) continue; /* that is the main row */
            r[n].impl = im;
            r[n].chunk = cfg->chunks[c];
            snprintf(r[n].label, sizeof r[n].label, "%s@%d", im->name, cfg->chunks[c]);
            n++;
        }
    }
    if (!n) {
        free(r);
        snprintf(err, errlen, "no implementation named '%s' (see `q35lab list`)", cfg->only_impl);
        return -1;
    }
    *rows = r;
    *n_rows = n;
    return 0;
}

static void fill_nan(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = NAN; /* an output left unwritten shows up */
}

/* Checkpoints every case asks for (docs/deltarule.md §"Checkpoints"): the
 * first two tokens, the middle, the last (T = 1: one); in padded shapes some
 * lie at or past a sequence's length, where they are its final state. */
static int case_checkpoints(int T, int32_t *at)
{
    const int want[] = {0, 1, T / 2, T - 1};
    int n = 0;
    for (int i = 0; i < 4; i++)
        if (want[i] < T && (n == 0 || want[i] > at[n - 1])) at[n++] = want[i];
    return n;
}

/* Runs every row on one case and folds the errors into column `regime`:
 * out, the final state and every checkpoint, each against ref's.  The
 * chunked forms run once per checkpoint mode (split, from-delta), the cell
 * holding the worse. */
static void check_case(const dr_check_config *cfg, dr_case *c, const float *ref_out, const float *ref_state,
                       const float *ref_ck, float *ck, int regime, const char *name, dr_check_row *rows, int n_rows)
{
    const size_t nv = dr_v_elems(&c->p), ns = dr_state_elems(&c->p), nck = ns * c->p.n_checkpoints;
    for (int i = 0; i < n_rows; i++) {
        dr_cell *cell = &rows[i].cell[regime];
        const int modes = rows[i].impl->defaults.chunk > 0 ? 2 : 1;
        for (int m = 0; m < modes && cell->status != CELL_ERROR; m++) {
            fill_nan(c->out, nv);
            fill_nan(c->final_state, ns);
            fill_nan(ck, nck);
            deltarule_opts o = {.chunk = rows[i].chunk, .crossover = cfg->crossover,
                                .checkpoint_mode = modes > 1 ? (m ? DR_CKPT_FROM_DELTA : DR_CKPT_SPLIT) : 0};
            char err[160];
            if (deltarule_run(rows[i].impl, &c->p, &o, err, sizeof err)) {
                cell->status = CELL_ERROR;
                snprintf(cell->error, sizeof cell->error, "%s: %s", name, err);
                break;
            }
            err_stats e = err_worst(err_compare(c->out, ref_out, nv), err_compare(c->final_state, ref_state, ns));
            e = err_worst(e, err_compare(ck, ref_ck, nck));
            if (e.normwise > cell->worst.normwise || isnan(e.normwise) || !cell->worst_case[0])
                snprintf(cell->worst_case, sizeof cell->worst_case, "%.80s%s", name,
                         modes > 1 ? (m ? " from-delta" : " split") : "");
            cell->worst = err_worst(cell->worst, e);
        }
    }
}

int dr_check_run(const dr_check_config *cfg, dr_check_row **rows_out, int *n_rows_out, char *err, size_t errlen)
{
    dr_check_row *rows;
    int n_rows;
    if (build_rows(cfg, &rows, &n_rows, err, errlen)) return -1;
    const dr_shape *shapes = cfg->quick ? quick_shapes : full_shapes;
    const int n_shapes = cfg->quick ? (int)(sizeof quick_shapes / sizeof *quick_shapes)
                                    : (int)(sizeof full_shapes / sizeof *full_shapes);
    const int seeds = cfg->seeds > 0 ? cfg->seeds : (cfg->quick ? 1 : 2);
    const int total = n_shapes * DR_REGIME_COUNT * seeds;
    int done = 0;
    const deltarule_impl *ref = &deltarule_ref_impl;
    for (int s = 0; s < n_shapes; s++)
        for (int r = 0; r < DR_REGIME_COUNT; r++)
            for (int seed = 1; seed <= seeds; seed++) {
                dr_case c;
                float *ref_out, *ref_state;
                char name[96];
                int32_t at[4];
                if (dr_case_make(&c, &shapes[s], r, (unsigned long)seed, err, errlen)) goto fail;
                c.p.n_checkpoints = case_checkpoints(c.p.T, at);
                c.p.checkpoint_t = at;
                const size_t nck = dr_state_elems(&c.p) * c.p.n_checkpoints;
                float *ref_ck = malloc(sizeof(float) * nck), *ck = malloc(sizeof(float) * nck);
                if (!ref_ck || !ck || dr_case_alloc_outputs(&c, &ref_out, &ref_state)) {
                    free(ref_ck); free(ck);
                    dr_case_free(&c);
                    snprintf(err, errlen, "out of memory");
                    goto fail;
                }
                c.p.checkpoint_states = ck;
                shape_name(name, sizeof name, &c.p, shapes[s].with_seq_len, (unsigned long)seed);
                deltarule_problem pr = c.p;
                pr.out = ref_out;
                pr.final_state = ref_state;
                pr.checkpoint_states = ref_ck;
                if (deltarule_run(ref, &pr, NULL, err, errlen)) {
                    free(ref_out); free(ref_state); free(ref_ck); free(ck); dr_case_free(&c);
                    goto fail;
                }
                check_case(cfg, &c, ref_out, ref_state, ref_ck, ck, r, name, rows, n_rows);
                free(ref_out); free(ref_state); free(ref_ck); free(ck); dr_case_free(&c);
                if (cfg->progress) cfg->progress(dr_regime_name(r), ++done, total);
            }
    int failed = 0;
    for (int i = 0; i < n_rows; i++)
        for (int r = 0; r < DR_REGIME_COUNT; r++) {
            dr_cell *cell = &rows[i].cell[r];
            const int claimed = rows[i].chunk == 0 && (rows[i].impl->claims & DR_CLAIM(r));
            if (cell->status == CELL_ERROR) { failed++; continue; }
            const int holds = cell->worst.nonfinite == 0 && cell->worst.normwise <= rows[i].impl->claim_tol;
            cell->status = !claimed ? CELL_UNCLAIMED : holds ? CELL_PASS : CELL_FAIL;
            failed += cell->status == CELL_FAIL;
        }
    *rows_out = rows;
    *n_rows_out = n_rows;
    return failed;
fail:
    free(rows);
    return -1;
}
