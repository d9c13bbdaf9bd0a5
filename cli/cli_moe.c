/* q35lab check moe: every MoE implementation against ref over a grid of
 * shapes, weight dtypes and routing cases; check moe --golden FILE; and
 * golden moe: a golden file from ref.  docs/moe.md §5-§7. */
#include "common/json_file.h"
#include "kernels/cpu_features.h"
#include "kernels/moe/moe.h"
#include "harness/impl_select.h"
#include "harness/metrics.h"
#include "harness/moe_golden.h"
#include "harness/moe_inputs.h"
#include "cli/cli_args.h"
#include "cli/commands.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* The grid                                                             */
/* ------------------------------------------------------------------ */

/* Case kinds: the rows of the matrix (docs/moe.md §6). */
enum {
    KIND_RANDOM,       /* skew 0, shared expert, norm_topk_prob */
    KIND_SKEW,         /* skew 0.9: most tokens on a few hot experts */
    KIND_ONE_EXPERT,   /* every token's first choice is one expert */
    KIND_EMPTY_EXPERT, /* one expert gets no token (k < E) */
    KIND_TIES,         /* duplicated router rows: exact ties to the lower index (E >= 2) */
    KIND_FUSED,        /* gate/up in one [E, 2I, hidden] array */
    KIND_NO_NORM,      /* norm_topk_prob = 0 */
    KIND_NO_SHARED,    /* Is = 0 */
    KIND_ODD,          /* hidden 37, I 13, Is 7: no dimension a multiple of a SIMD width */
    KIND_QWEN,         /* hidden 256, I 128, Is 128, E 64, k 8 */
    KIND_COUNT
};
static const char *const kind_names[KIND_COUNT] = {"random", "skew-0.9", "one-expert", "empty-expert", "ties",
                                                   "fused-gate-up", "no-norm", "no-shared", "odd-dims", "qwen-like"};

#define SMALL_HIDDEN 64
#define SMALL_I 32
#define SMALL_IS 32

/* The shape of one case of a kind, or 0 if the kind does not apply. */
static int kind_shape(int kind, int T, int E, int k, q35_wtype wt, moe_shape *s)
{
    *s = (moe_shape){.T = T, .hidden = SMALL_HIDDEN, .E = E, .top_k = k, .inter = SMALL_I,
                     .inter_shared = SMALL_IS, .norm_topk_prob = 1, .wt = wt, .routing = MOE_ROUTING_RANDOM};
    switch (kind) {
    case KIND_SKEW: s->skew = 0.9; return E > 1;
    case KIND_ONE_EXPERT: s->routing = MOE_ROUTING_ONE_EXPERT; return E > 1;
    case KIND_EMPTY_EXPERT: s->routing = MOE_ROUTING_EMPTY_EXPERT; return k < E;
    case KIND_TIES: s->routing = MOE_ROUTING_TIES; return E >= 2;
    case KIND_FUSED: s->fused_gate_up = 1; return 1;
    case KIND_NO_NORM: s->norm_topk_prob = 0; return 1;
    case KIND_NO_SHARED: s->inter_shared = 0; return 1;
    case KIND_ODD: s->hidden = 37; s->inter = 13; s->inter_shared = 7; return 1;
    case KIND_QWEN:
        s->hidden = 256; s->inter = 128; s->inter_shared = 128; s->E = 64; s->top_k = 8;
        return E == 64 && k == 8; /* once per T */
    default: return 1;
    }
}

typedef struct {
    err_stats worst;
    double worst_weight;   /* max |w - w_ref| over matched (id, weight) pairs */
    size_t id_mismatch;    /* tokens whose expert set differs from ref's */
    size_t stats_mismatch; /* runs whose moe_stats disagree with ref's */
    int cases;
    char worst_case[96];
    int status;            /* 0 pass, 1 fail, 2 error */
    char error[400];
} moe_cell;

typedef struct {
    int quick, seeds;
    const char *only;
} check_cfg;

static const moe_impl *selected(const char *only, int i)
{
    const moe_impl *im = moe_entry(i);
    if (strcmp(only, "all") && strcmp(only, im->name)) return NULL;
    if (im->available && !im->available()) return NULL;
    return im;
}

static void progress(int done, int total)
{
    if (!isatty(2)) return;
    fprintf(stderr, "\r[check moe] %4d/%d cases          ", done, total);
    if (done == total) fprintf(stderr, "\r%60s\r", "");
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

static double cell_tol(const moe_impl *im, int dtype) { return dtype ? im->tol_bf16 : im->tol_f32; }

static int cell_status(const moe_impl *im, int dtype, const moe_cell *c)
{
    if (c->status == 2) return 2;
    const double tol = cell_tol(im, dtype);
    /* weights lie in [0, 1]: held to the same tolerance, absolutely */
    return c->worst.normwise <= tol && c->worst_weight <= tol && !c->id_mismatch && !c->stats_mismatch ? 0 : 1;
}

static int write_json(const char *path, const moe_cell *cells, const check_cfg *cfg)
{
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "moe");
    cJSON_AddStringToObject(root, "isa", cpu_isa_name(cpu_isa()));
    for (int i = 0; i < moe_n_entries(); i++) {
        const moe_impl *im = selected(cfg->only, i);
        if (!im) continue;
        for (int d = 0; d < 2; d++)
            for (int k = 0; k < KIND_COUNT; k++) {
                const moe_cell *c = &cells[(i * 2 + d) * KIND_COUNT + k];
                if (!c->cases && c->status != 2) continue;
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "impl", im->name);
                cJSON_AddStringToObject(o, "dtype", d ? "bf16" : "f32");
                cJSON_AddStringToObject(o, "case", kind_names[k]);
                cJSON_AddNumberToObject(o, "cases", c->cases);
                if (c->worst.nonfinite) cJSON_AddNullToObject(o, "normwise");
                else cJSON_AddNumberToObject(o, "normwise", c->worst.normwise);
                cJSON_AddNumberToObject(o, "maxabs", c->worst.maxabs);
                cJSON_AddNumberToObject(o, "nonfinite", (double)c->worst.nonfinite);
                cJSON_AddNumberToObject(o, "weight_maxabs", c->worst_weight);
                cJSON_AddNumberToObject(o, "id_mismatch_tokens", (double)c->id_mismatch);
                cJSON_AddNumberToObject(o, "stats_mismatch_runs", (double)c->stats_mismatch);
                cJSON_AddNumberToObject(o, "tolerance", cell_tol(im, d));
                cJSON_AddStringToObject(o, "worst_case", c->worst_case);
                const int s = cell_status(im, d, c);
                cJSON_AddStringToObject(o, "status", s == 0 ? "PASS" : s == 1 ? "FAIL" : "ERROR");
                if (s == 2) cJSON_AddStringToObject(o, "error", c->error);
                cJSON_AddItemToArray(arr, o);
            }
    }
    char err[512];
    const int rc = q35_json_write_atomic(root, path, err, sizeof err);
    cJSON_Delete(root);
    if (rc) fprintf(stderr, "q35lab: %s\n", err);
    return rc;
}

static int check_sweep(const check_cfg *cfg, const char *json)
{
    static const int T_full[] = {1, 2, 7, 64, 333}, T_quick[] = {1, 7, 64};
    static const int Es[] = {1, 8, 64}, ks[] = {1, 2, 8};
    const int *Ts = cfg->quick ? T_quick : T_full;
    const int nT = cfg->quick ? 3 : 5;
    moe_cell *cells = calloc((size_t)moe_n_entries() * 2 * KIND_COUNT, sizeof *cells);
    if (!cells) { fprintf(stderr, "q35lab: out of memory\n"); return 2; }
    printf("check moe: every implementation x weight dtype x case against ref/ (double), ISA path %s%s, %d seed%s\n",
           cpu_isa_name(cpu_isa()), cfg->quick ? ", quick grid" : "", cfg->seeds, cfg->seeds > 1 ? "s" : "");

    /* count the cases first, for the progress line */
    int total = 0, done = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int ti = 0; ti < nT; ti++)
            for (int ei = 0; ei < 3; ei++)
                for (int ki = 0; ki < 3; ki++) {
                    if (ks[ki] > Es[ei]) continue;
                    for (int kind = 0; kind < KIND_COUNT; kind++)
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
                                if (!rc) {
                                    moe_problem q = c.p;
                                    q.out = r_out; q.topk_ids = r_ids; q.topk_weights = r_w; q.router_logits = NULL;
                                    rc = moe_run(&moe_ref_impl, &q, NULL, &r_st, err, sizeof err);
                                    for (int i = 0; i < moe_n_entries(); i++) {
                                        const moe_impl *im = selected(cfg->only, i);
                                        moe_cell *cell = &cells[(i * 2 + d) * KIND_COUNT + kind];
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
                                        if (selected(cfg->only, i)) {
                                            moe_cell *cell = &cells[(i * 2 + d) * KIND_COUNT + kind];
                                            cell->status = 2;
                                            snprintf(cell->error, sizeof cell->error, "%s: %s", label, err);
                                        }
                                free(r_out); free(r_w); free(r_ids);
                                progress(++done, total);
                            }
                }

    printf("%-12s %-5s %-14s %5s %10s %10s %9s %10s %8s %6s  %-44s %s\n", "impl", "dtype", "case", "cases",
           "normwise", "max|err|", "nonfinite", "w max|err|", "ids", "tol", "worst case", "status");
    int failed = 0, passed = 0;
    for (int i = 0; i < moe_n_entries(); i++) {
        const moe_impl *im = selected(cfg->only, i);
        if (!im) continue;
        for (int d = 0; d < 2; d++)
            for (int k = 0; k < KIND_COUNT; k++) {
                const moe_cell *c = &cells[(i * 2 + d) * KIND_COUNT + k];
                if (!c->cases && c->status != 2) continue;
                const int s = cell_status(im, d, c);
                if (s == 2) {
                    printf("%-12s %-5s %-14s ERROR: %s\n", im->name, d ? "bf16" : "f32", kind_names[k], c->error);
                    failed++;
                    continue;
                }
                char ids[32];
                if (c->id_mismatch) snprintf(ids, sizeof ids, "%zu bad", c->id_mismatch);
                else snprintf(ids, sizeof ids, "match");
                printf("%-12s %-5s %-14s %5d %10.2e %10.2e %9zu %10.2e %8s %6.0e  %-44s %s%s\n", im->name,
                       d ? "bf16" : "f32", kind_names[k], c->cases, c->worst.normwise, c->worst.maxabs,
                       c->worst.nonfinite, c->worst_weight, ids, cell_tol(im, d), c->worst_case,
                       s == 0 ? "PASS" : "FAIL", c->stats_mismatch ? " (moe_stats differ from ref's)" : "");
                failed += s != 0;
                passed += s == 0;
            }
    }
    printf("check moe: %d cells PASS, %d FAIL (normwise error of out and max error of the top-k weights against "
           "ref, per implementation and weight dtype; top-k ids matched by id)\n", passed, failed);
    int rc = failed ? 1 : 0;
    if (json && write_json(json, cells, cfg)) rc = 2;
    free(cells);
    return rc;
}

static int check_golden(const char *path, const char *only, const moe_golden_opts *o)
{
    moe_golden g;
    char err[512] = "";
    if (moe_golden_load(path, &g, o, err, sizeof err)) {
        fprintf(stderr, "q35lab: %s\n", err);
        return 2;
    }
    const moe_problem *p = &g.c.p;
    printf("golden %s: T=%d hidden=%d E=%d top_k=%d I=%d Is=%d norm_topk_prob=%d weights %s%s%s; "
           "pass when |x-e| <= %g + %g|e|\n",
           path, p->T, p->hidden, p->E, p->top_k, p->inter, p->inter_shared, p->norm_topk_prob,
           moe_wtype_name(p->wt), p->expert_stride_gu ? ", fused gate_up" : "",
           g.expect_from_ref ? " (rounded to bf16: expectations from ref, not the file)" : "", g.atol, g.rtol);
    printf("%-12s %10s %10s %8s %10s %10s  %s\n", "impl", "out norm", "out max", "ids", "w max|err|", "logit max",
           "status");
    int failed = 0, ran = 0;
    for (int i = 0; i < moe_n_entries(); i++) {
        const moe_impl *im = selected(only, i);
        if (!im) continue;
        moe_compare r;
        ran++;
        if (moe_golden_check(&g, im, NULL, &r, err, sizeof err)) {
            printf("%-12s ERROR: %s\n", im->name, err);
            failed++;
            continue;
        }
        const int ok = moe_compare_pass(&r);
        char ids[32];
        if (r.bad_ids) snprintf(ids, sizeof ids, "%zu bad", r.bad_ids);
        else snprintf(ids, sizeof ids, "match");
        printf("%-12s %10.2e %10.2e %8s %10.2e %10.2e  %s", im->name, r.out.normwise, r.out.maxabs, ids,
               r.max_weight_err, g.expect_logits ? r.max_logit_err : NAN, ok ? "PASS" : "FAIL");
        if (!ok) {
            printf("  (%zu out elements, %zu weights, %zu logits outside tolerance", r.bad_out, r.bad_weights,
                   r.bad_logits);
            if (r.bad_ids) printf("; token %d chose other experts", r.first_bad_token);
            printf(")");
        }
        printf("\n");
        failed += !ok;
    }
    moe_golden_free(&g);
    if (!ran) {
        fprintf(stderr, "q35lab: no moe implementation named '%s'\n", only);
        return 2;
    }
    return failed ? 1 : 0;
}

static const char usage_check[] =
    "usage: q35lab check moe [--impl NAME|all] [--quick] [--seeds N] [--json FILE]\n"
    "       q35lab check moe --golden FILE [--impl NAME|all] [--bf16] [--fused]\n"
    "Every MoE implementation against ref/ (double, its own router) over T in {1, 2, 7, 64, 333}, E in\n"
    "{1, 8, 64}, k in {1, 2, 8}, fp32 and bf16 weights and the special cases (skewed router, one expert,\n"
    "an empty expert, exact ties, fused gate_up, no renormalization, no shared expert, odd sizes, a\n"
    "Qwen-like size): normwise error of out, top-k ids, top-k weight error, PASS/FAIL.  Exit 1 on a failure.\n"
    "  --impl NAME|all   one implementation or every one (default all)\n"
    "  --quick           T in {1, 7, 64} only\n"
    "  --seeds N         random seeds per case (default 1)\n"
    "  --json FILE       write every cell as JSON\n"
    "  --golden FILE     check against a golden file (tensors x, router_weight, gate_proj, up_proj,\n"
    "                    down_proj, shared_*, expected out, topk_ids, topk_weights)\n"
    "  --bf16            with --golden: round the file's weights to bf16 (expectations then from ref)\n"
    "  --fused           with --golden: hold gate/up as one fused [E, 2I, hidden] array\n";

int cmd_check_moe(int argc, char **argv)
{
    check_cfg cfg = {0, 1, "all"};
    const char *json = NULL, *golden = NULL;
    moe_golden_opts go = {0, 0};
    const cli_opt opts[] = {
        OPT_FLAG("--quick", &cfg.quick),   OPT_STR("--impl", &cfg.only),     OPT_STR("--json", &json),
        OPT_STR("--golden", &golden),      OPT_FLAG("--bf16", &go.as_bf16),  OPT_FLAG("--fused", &go.fused_gate_up),
        OPT_INT("--seeds", &cfg.seeds, 1, 1000), CLI_END};
    const int pr = cli_parse("check moe", usage_check, opts, argc, argv, 2);
    if (pr) return CLI_EXIT(pr);
    if (strcmp(cfg.only, "all") && !moe_named(cfg.only)) {
        fprintf(stderr, "q35lab: no moe implementation named '%s' (see `q35lab list`)\n", cfg.only);
        return 2;
    }
    if (golden) return check_golden(golden, cfg.only, &go);
    if (go.as_bf16 || go.fused_gate_up) {
        fprintf(stderr, "q35lab: check moe: --bf16 and --fused apply to --golden (the sweep runs both already)\n");
        return 2;
    }
    return check_sweep(&cfg, json);
}

/* ------------------------------------------------------------------ */
/* golden moe                                                           */
/* ------------------------------------------------------------------ */

static const char usage_golden[] =
    "usage: q35lab golden moe --out FILE [--T n --hidden n --E n --k n --I n --Is n] [--seed n] [--skew x]\n"
    "                         [--routing random|one-expert|empty-expert|ties] [--no-norm] [--bf16]\n"
    "Writes a MoE golden file from ref/ (double precision, its own router): the inputs, the weights and\n"
    "the expected out, topk_ids, topk_weights and router_logits.  The file is written whole or not at all.\n"
    "Defaults: T 7, hidden 64, E 8, k 2, I 32, Is 32 (0: no shared expert), seed 1, skew 0.\n";

int cmd_golden_moe(int argc, char **argv)
{
    moe_shape s = {.T = 7, .hidden = 64, .E = 8, .top_k = 2, .inter = 32, .inter_shared = 32, .norm_topk_prob = 1,
                   .wt = WT_F32, .routing = MOE_ROUTING_RANDOM};
    int seed = 1, no_norm = 0, bf16 = 0;
    const char *out = NULL, *routing = NULL;
    const cli_opt opts[] = {
        OPT_INT("--T", &s.T, 1, 1 << 20),          OPT_INT("--hidden", &s.hidden, 1, 1 << 16),
        OPT_INT("--E", &s.E, 1, 4096),             OPT_INT("--k", &s.top_k, 1, 4096),
        OPT_INT("--I", &s.inter, 1, 1 << 16),      OPT_INT("--Is", &s.inter_shared, 0, 1 << 16),
        OPT_STR("--out", &out),                    OPT_FLAG("--no-norm", &no_norm),
        OPT_FLAG("--bf16", &bf16),                 OPT_INT("--seed", &seed, 0, 1 << 30),
        OPT_DOUBLE("--skew", &s.skew, 0.0, 1.0),   OPT_STR("--routing", &routing),
        CLI_END};
    const int pr = cli_parse("golden moe", usage_golden, opts, argc, argv, 2);
    if (pr) return CLI_EXIT(pr);
    if (no_norm) s.norm_topk_prob = 0;
    if (bf16) s.wt = WT_BF16;
    if (routing && (s.routing = moe_routing_from_name(routing)) < 0) {
        fprintf(stderr, "q35lab: unknown routing '%s' (random, one-expert, empty-expert, ties)\n", routing);
        return 2;
    }
    if (!out) { fprintf(stderr, "q35lab: golden moe: --out FILE is required\n"); return 2; }
    if (s.top_k > s.E) { fprintf(stderr, "q35lab: golden moe: --k %d exceeds --E %d\n", s.top_k, s.E); return 2; }
    moe_case c;
    char err[512];
    if (moe_case_make(&c, &s, (unsigned long)seed, err, sizeof err)) {
        fprintf(stderr, "q35lab: %s\n", err);
        return 2;
    }
    int rc = moe_run(&moe_ref_impl, &c.p, NULL, NULL, err, sizeof err);
    char note[256];
    snprintf(note, sizeof note, "q35lab golden moe: ref/ (double, own double router), routing %s, skew %g, seed %d, "
                                "weights %s", moe_routing_name(s.routing), s.skew, seed, moe_wtype_name(s.wt));
    if (!rc)
        rc = moe_golden_write(out, &c.p, c.out, c.topk_ids, c.topk_weights, c.router_logits, MOE_GOLDEN_DEFAULT_ATOL,
                              MOE_GOLDEN_DEFAULT_RTOL, note, err, sizeof err);
    if (rc) fprintf(stderr, "q35lab: %s\n", err);
    else
        printf("wrote %s (T=%d hidden=%d E=%d k=%d I=%d Is=%d, %s weights, routing %s, skew %g, norm_topk_prob %d)\n",
               out, s.T, s.hidden, s.E, s.top_k, s.inter, s.inter_shared, moe_wtype_name(s.wt),
               moe_routing_name(s.routing), s.skew, s.norm_topk_prob);
    moe_case_free(&c);
    return rc ? 1 : 0;
}
