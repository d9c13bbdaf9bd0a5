/* The MoE correctness sweep (moe_check.h). */
#include "harness/moe_check.h"

#include "common/errmsg.h"
#include "harness/impl_select.h"
#include "harness/moe_golden.h"
#include "harness/moe_inputs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[MOE_KIND_COUNT] = {"random", "skew-0.9", "one-expert", "empty-expert", "ties",
                                                   "fused-gate-up", "no-norm", "no-shared", "odd-dims", "qwen-like",
                                                       "expert-range"};

#define SMALL_HIDDEN 64
#define SMALL_I 32
#define SMALL_IS 32

/* The shape of one case of a kind, or 0 if the kind does not apply. */
static int kind_shape(int kind, int T, int E, int k, q35_wtype wt, moe_shape *s)
{
    *s = (moe_shape){.T = T, .hidden = SMALL_HIDDEN, .E = E, .top_k = k, .inter = SMALL_I,
                     .inter_shared = SMALL_IS, .norm_topk_prob = 1, .wt = wt, .routing = MOE_ROUTING_RANDOM};
    switch (kind) {
    case MOE_KIND_SKEW: s->skew = 0.9; return E > 1;
    case MOE_KIND_ONE_EXPERT: s->routing = MOE_ROUTING_ONE_EXPERT; return E > 1;
    case MOE_KIND_EMPTY_EXPERT: s->routing = MOE_ROUTING_EMPTY_EXPERT; return k < E;
    case MOE_KIND_TIES: s->routing = MOE_ROUTING_TIES; return E >= 2;
    case MOE_KIND_FUSED: s->fused_gate_up = 1; return 1;
    case MOE_KIND_NO_NORM: s->norm_topk_prob = 0; return 1;
    case MOE_KIND_NO_SHARED: s->inter_shared = 0; return 1;
    case MOE_KIND_ODD: s->hidden = 37; s->inter = 13; s->inter_shared = 7; return 1;
    case MOE_KIND_EXPERT_RANGE: return E > 1;
    case MOE_KIND_QWEN:
        s->hidden = 256; s->inter = 128; s->inter_shared = 128; s->E = 64; s->top_k = 8;
        return E == 64 && k == 8; /* once per T */
    default: return 1;
    }
}

/* The problem of one expert-parallel rank: only experts [E/4, E/4 + E/2)
 * given, the weight pointers moved to the first of them (moe.h). */
static void hold_expert_range(moe_problem *p)
{
    const int lo = p->E / 4, hi = lo + (p->E / 2 > 1 ? p->E / 2 : 1);
    const void *g = moe_gate(p, lo), *u = moe_up(p, lo), *d = moe_down(p, lo);
    p->gate_proj = g;
    p->up_proj = u;
    p->down_proj = d;
    p->expert_lo = lo;
    p->expert_hi = hi;
}

const char *moe_kind_name(int kind) { return kind >= 0 && kind < MOE_KIND_COUNT ? kind_names[kind] : "?"; }

const moe_impl *moe_check_selected(const char *only, int i)
{
    const moe_impl *im = moe_entry(i);
    if (!im || (strcmp(only, "all") && strcmp(only, im->name))) return NULL;
    if (im->available && !im->available()) return NULL;
    return im;
}

/* One implementation on one case against ref's outputs. */
static void run_cell(const moe_impl *im, moe_case *c, const float *r_out, const int32_t *r_ids, const float *r_w,
                     const moe_stats *r_st, const char *label, moe_cell *cell)
{
    moe_problem *p = &c->p;
    const size_t th = (size_t)p->T * p->hidden, tk = (size_t)p->T * p->top_k;
    for (size_t i = 0; i < th; i++) c->out[i] = NAN;
    for (size_t i = 0; i < tk; i++) { c->topk_ids[i] = -1; c->topk_weights[i] = NAN; }
    moe_stats st;
    char err[256];
    if (moe_run(im, p, NULL, &st, err, sizeof err)) {
        cell->status = 2;
        snprintf(cell->error, sizeof cell->error, "%s: %s", label, err);
        return;
    }
    moe_compare cmp;
    moe_compare_outputs(p, c->out, c->topk_ids, c->topk_weights, NULL, r_out, r_ids, r_w, NULL, 0.0, 0.0, &cmp);
    cell->cases++;
    if (cell->cases == 1 || cmp.out.normwise > cell->worst.normwise)
        snprintf(cell->worst_case, sizeof cell->worst_case, "%s", label);
    cell->worst = err_worst(cell->worst, cmp.out);
    if (cmp.max_weight_err > cell->worst_weight || cmp.max_weight_err != cmp.max_weight_err)
        cell->worst_weight = cmp.max_weight_err;
    cell->id_mismatch += cmp.bad_ids;
    if (st.rows != r_st->rows || st.experts_touched != r_st->experts_touched || st.max_load != r_st->max_load)
        cell->stats_mismatch++;
}

double moe_cell_tol(const moe_impl *im, int bf16) { return bf16 ? im->tol_bf16 : im->tol_f32; }

int moe_cell_status(const moe_impl *im, int bf16, const moe_cell *c)
{
    if (c->status == 2) return 2;
    const double tol = moe_cell_tol(im, bf16);
    /* weights lie in [0, 1]: held to the same tolerance, absolutely */
    return c->worst.normwise <= tol && c->worst_weight <= tol && !c->id_mismatch && !c->stats_mismatch ? 0 : 1;
}

int moe_check_run(const moe_check_config *cfg, moe_cell **cells_out, char *errmsg, size_t errlen)
{
    static const int T_full[] = {1, 2, 7, 64, 333}, T_quick[] = {1, 7, 64};
    static const int Es[] = {1, 8, 64}, ks[] = {1, 2, 8};
    const int *Ts = cfg->quick ? T_quick : T_full;
    const int nT = cfg->quick ? 3 : 5;
    moe_cell *cells = calloc((size_t)moe_n_entries() * 2 * MOE_KIND_COUNT, sizeof *cells);
    if (!cells) {
        q35_errmsg(errmsg, errlen, "check moe: out of memory");
        return -1;
    }
    /* count the cases first, for the progress line */
    int total = 0, done = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int ti = 0; ti < nT; ti++)
            for (int ei = 0; ei < 3; ei++)
                for (int ki = 0; ki < 3; ki++) {
                    if (ks[ki] > Es[ei]) continue;
                    for (int kind = 0; kind < MOE_KIND_COUNT; kind++)
                        for (int d = 0; d < 2; d++)
                            for (int seed = 1; seed <= cfg->seeds; seed++) {
                                moe_shape s;
                                if (!kind_shape(kind, Ts[ti], Es[ei], ks[ki], d ? WT_BF16 : WT_F32, &s)) continue;
                                if (pass == 0) { total++; continue; }
                                moe_case c;
                                char err[256], label[96];
                                snprintf(label, sizeof label, "T=%d H=%d E=%d k=%d I=%d Is=%d seed=%d", s.T, s.hidden,
                                         s.E, s.top_k, s.inter, s.inter_shared, seed);
                                const size_t th = (size_t)s.T * s.hidden, tk = (size_t)s.T * s.top_k;
                                float *r_out = malloc(sizeof(float) * th), *r_w = malloc(sizeof(float) * tk);
                                int32_t *r_ids = malloc(sizeof(int32_t) * tk);
                                moe_stats r_st;
                                int rc = !r_out || !r_w || !r_ids;
                                if (rc) snprintf(err, sizeof err, "out of memory");
                                else rc = moe_case_make(&c, &s, (unsigned long)seed, err, sizeof err);
                                if (!rc && kind == MOE_KIND_EXPERT_RANGE) hold_expert_range(&c.p);
                                if (!rc) {
                                    moe_problem q = c.p;
                                    q.out = r_out; q.topk_ids = r_ids; q.topk_weights = r_w; q.router_logits = NULL;
                                    rc = moe_run(&moe_ref_impl, &q, NULL, &r_st, err, sizeof err);
                                    for (int i = 0; i < moe_n_entries(); i++) {
                                        const moe_impl *im = moe_check_selected(cfg->only, i);
                                        moe_cell *cell = moe_check_cell(cells, i, d, kind);
                                        if (!im) continue;
                                        if (rc) {
                                            cell->status = 2;
                                            snprintf(cell->error, sizeof cell->error, "%s: ref: %s", label, err);
                                        } else
                                            run_cell(im, &c, r_out, r_ids, r_w, &r_st, label, cell);
                                    }
                                    moe_case_free(&c);
                                } else
                                    for (int i = 0; i < moe_n_entries(); i++)
                                        if (moe_check_selected(cfg->only, i)) {
                                            moe_cell *cell = moe_check_cell(cells, i, d, kind);
                                            cell->status = 2;
                                            snprintf(cell->error, sizeof cell->error, "%s: %s", label, err);
                                        }
                                free(r_out); free(r_w); free(r_ids);
                                if (cfg->progress) cfg->progress(++done, total);
                            }
                }
    *cells_out = cells;
    return 0;
}
