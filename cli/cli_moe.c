/* q35lab check moe: every MoE implementation against ref over a grid of
 * shapes, weight dtypes and routing cases; check moe --golden FILE; and
 * golden moe: a golden file from ref.  docs/moe.md §5-§7. */
#include "common/json_file.h"
#include "kernels/cpu_features.h"
#include "kernels/moe/moe.h"
#include "harness/impl_select.h"
#include "harness/metrics.h"
#include "harness/moe_check.h"
#include "harness/moe_golden.h"
#include "harness/moe_inputs.h"
#include "cli/cli_args.h"
#include "cli/commands.h"
#include "cli/cli_report.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void progress(int done, int total) { cli_progress_line("check moe", NULL, done, total); }

static int write_json(const char *path, moe_cell *cells, const moe_check_config *cfg)
{
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "moe");
    cJSON_AddStringToObject(root, "isa", cpu_isa_name(cpu_isa()));
    for (int i = 0; i < moe_n_entries(); i++) {
        const moe_impl *im = moe_check_selected(cfg->only, i);
        if (!im) continue;
        for (int d = 0; d < 2; d++)
            for (int k = 0; k < MOE_KIND_COUNT; k++) {
                const moe_cell *c = moe_check_cell(cells, i, d, k);
                if (!c->cases && c->status != 2) continue;
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "impl", im->name);
                cJSON_AddStringToObject(o, "dtype", d ? "bf16" : "f32");
                cJSON_AddStringToObject(o, "case", moe_kind_name(k));
                cJSON_AddNumberToObject(o, "cases", c->cases);
                cli_json_add_err_stats(o, &c->worst);
                cJSON_AddNumberToObject(o, "weight_maxabs", c->worst_weight);
                cJSON_AddNumberToObject(o, "id_mismatch_tokens", (double)c->id_mismatch);
                cJSON_AddNumberToObject(o, "stats_mismatch_runs", (double)c->stats_mismatch);
                cJSON_AddNumberToObject(o, "tolerance", moe_cell_tol(im, d));
                cJSON_AddStringToObject(o, "worst_case", c->worst_case);
                const int s = moe_cell_status(im, d, c);
                cJSON_AddStringToObject(o, "status", s == 0 ? "PASS" : s == 1 ? "FAIL" : "ERROR");
                if (s == 2) cJSON_AddStringToObject(o, "error", c->error);
                cJSON_AddItemToArray(arr, o);
            }
    }
    return cli_json_write_report(root, path);
}

static int check_sweep(const moe_check_config *cfg, const char *json)
{
    printf("check moe: every implementation x weight dtype x case against ref/ (double), ISA path %s%s, %d seed%s\n",
           cpu_isa_name(cpu_isa()), cfg->quick ? ", quick grid" : "", cfg->seeds, cfg->seeds > 1 ? "s" : "");
    moe_cell *cells;
    char err[256];
    if (moe_check_run(cfg, &cells, err, sizeof err)) {
        fprintf(stderr, "q35lab: %s\n", err);
        return 2;
    }
    printf("%-12s %-5s %-14s %5s %10s %10s %9s %10s %8s %6s  %-44s %s\n", "impl", "dtype", "case", "cases",
           "normwise", "max|err|", "nonfinite", "w max|err|", "ids", "tol", "worst case", "status");
    int failed = 0, passed = 0;
    for (int i = 0; i < moe_n_entries(); i++) {
        const moe_impl *im = moe_check_selected(cfg->only, i);
        if (!im) continue;
        for (int d = 0; d < 2; d++)
            for (int k = 0; k < MOE_KIND_COUNT; k++) {
                const moe_cell *c = moe_check_cell(cells, i, d, k);
                if (!c->cases && c->status != 2) continue;
                const int s = moe_cell_status(im, d, c);
                if (s == 2) {
                    printf("%-12s %-5s %-14s ERROR: %s\n", im->name, d ? "bf16" : "f32", moe_kind_name(k), c->error);
                    failed++;
                    continue;
                }
                char ids[32];
                if (c->id_mismatch) snprintf(ids, sizeof ids, "%zu bad", c->id_mismatch);
                else snprintf(ids, sizeof ids, "match");
                printf("%-12s %-5s %-14s %5d %10.2e %10.2e %9zu %10.2e %8s %6.0e  %-44s %s%s\n", im->name,
                       d ? "bf16" : "f32", moe_kind_name(k), c->cases, c->worst.normwise, c->worst.maxabs,
                       c->worst.nonfinite, c->worst_weight, ids, moe_cell_tol(im, d), c->worst_case,
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
        const moe_impl *im = moe_check_selected(only, i);
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
    moe_check_config cfg = {.seeds = 1, .only = "all", .progress = progress};
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
