/* q35lab check: the correctness sweep and golden-file checks. */
#include "common/atomic_file.h"
#include "common/json_file.h"
#include "kernels/cpu_features.h"
#include "kernels/deltarule/deltarule.h"
#include "harness/deltarule_check.h"
#include "harness/deltarule_crossover.h"
#include "harness/deltarule_golden.h"
#include "harness/deltarule_grad_check.h"
#include "harness/deltarule_inputs.h"
#include "harness/impl_select.h"
#include "cli/cli_args.h"
#include "cli/commands.h"
#include "cli/cli_report.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *status_name(dr_cell_status s)
{
    switch (s) {
    case CELL_PASS: return "PASS";
    case CELL_FAIL: return "FAIL";
    case CELL_UNCLAIMED: return "unclaimed";
    default: return "ERROR";
    }
}

static void progress(const char *what, int done, int total) { cli_progress_line("check deltarule", what, done, total); }

static int write_json(const char *path, const dr_check_row *rows, int n)
{
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "deltarule");
    cJSON_AddStringToObject(root, "isa", cpu_isa_name(cpu_isa()));
    for (int i = 0; i < n; i++)
        for (int r = 0; r < DR_REGIME_COUNT; r++) {
            const dr_cell *c = &rows[i].cell[r];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "impl", rows[i].impl->name);
            cJSON_AddNumberToObject(o, "chunk", rows[i].chunk ? rows[i].chunk : rows[i].impl->defaults.chunk);
            cJSON_AddStringToObject(o, "regime", dr_regime_name(r));
            cli_json_add_err_stats(o, &c->worst);
            cJSON_AddStringToObject(o, "worst_case", c->worst_case);
            cJSON_AddStringToObject(o, "status", status_name(c->status));
            cJSON_AddItemToArray(arr, o);
        }
    return cli_json_write_report(root, path);
}

static void print_matrix(const dr_check_row *rows, int n)
{
    printf("%-20s %-16s %10s %10s %9s  %-34s %s\n", "implementation", "regime", "normwise", "max|err|",
           "nonfinite", "worst case", "status");
    for (int i = 0; i < n; i++)
        for (int r = 0; r < DR_REGIME_COUNT; r++) {
            const dr_cell *c = &rows[i].cell[r];
            if (c->status == CELL_ERROR) {
                printf("%-20s %-16s ERROR: %s\n", rows[i].label, dr_regime_name(r), c->error);
                continue;
            }
            printf("%-20s %-16s %10.2e %10.2e %9zu  %-34s %s\n", rows[i].label, dr_regime_name(r),
                   c->worst.normwise, c->worst.maxabs, c->worst.nonfinite, c->worst_case, status_name(c->status));
        }
}

/* Rows = implementation@chunk, columns = regimes, cells = worst normwise
 * error: the table in docs/deltarule.md. */
static void print_markdown(const dr_check_row *rows, int n)
{
    printf("\n| implementation | chunk |");
    for (int r = 0; r < DR_REGIME_COUNT; r++) printf(" %s |", dr_regime_name(r));
    printf("\n|---|---|");
    for (int r = 0; r < DR_REGIME_COUNT; r++) printf("---|");
    printf("\n");
    for (int i = 0; i < n; i++) {
        const int chunk = rows[i].chunk ? rows[i].chunk : rows[i].impl->defaults.chunk;
        if (chunk) printf("| %s | %d |", rows[i].impl->name, chunk);
        else printf("| %s | - |", rows[i].impl->name);
        for (int r = 0; r < DR_REGIME_COUNT; r++) {
            const dr_cell *c = &rows[i].cell[r];
            if (c->status == CELL_ERROR) printf(" error |");
            else printf(" %.1e%s |", c->worst.normwise, c->status == CELL_FAIL ? " FAIL" : "");
        }
        printf("\n");
    }
}

static int check_sweep(dr_check_config *cfg, const char *json, int markdown)
{
    dr_check_row *rows;
    int n;
    char err[256] = "";
    printf("check deltarule: every implementation x regime against ref/ (double), ISA path %s%s\n",
           cpu_isa_name(cpu_isa()), cfg->quick ? ", quick grid" : "");
    int failed = dr_check_run(cfg, &rows, &n, err, sizeof err);
    if (failed < 0) {
        fprintf(stderr, "q35lab: check deltarule: %s\n", err);
        return 2;
    }
    print_matrix(rows, n);
    if (markdown) print_markdown(rows, n);
    int pass = 0, unclaimed = 0;
    for (int i = 0; i < n; i++)
        for (int r = 0; r < DR_REGIME_COUNT; r++) {
            pass += rows[i].cell[r].status == CELL_PASS;
            unclaimed += rows[i].cell[r].status == CELL_UNCLAIMED;
        }
    printf("check deltarule: %d claims PASS, %d FAIL, %d unclaimed cells (tolerance: normwise error per "
           "implementation, `q35lab list`)\n", pass, failed, unclaimed);
    int rc = failed ? 1 : 0;
    if (json && write_json(json, rows, n)) rc = 2;
    free(rows);
    return rc;
}

/* The gradients of a gradient golden: ref and every backward implementation
 * (named impl_name, or all), each gradient element-wise against the file's
 * atol/rtol.  Returns the failures (unclaimed misses do not count). */
static int check_golden_grads(const dr_golden *g, const char *impl_name, int *ran)
{
    deltarule_crossover x;
    const deltarule_opts o = {.crossover = dr_crossover_load_default_grad(&x)};
    printf("gradients (d_out%s): normwise error / elements outside |x-e| <= %g + %g|e|\n",
           g->d_final_state ? ", d_final_state" : "; d_final_state zero", g->atol, g->rtol);
    printf("%-16s", "backward");
    for (int k = 0; k < DR_GRAD_COUNT; k++) printf(" %17s", dr_grad_name(k));
    printf("  status\n");
    int failed = 0;
    for (int i = 0; i < dr_grad_n_entries(); i++) {
        const deltarule_grad_impl *im = dr_grad_entry(i);
        if (strcmp(impl_name, "all") && strcmp(impl_name, im->name)) continue;
        if (im->available && !im->available()) continue;
        (*ran)++;
        dr_golden_grad_result r;
        char err[512];
        if (dr_golden_grad_check(g, im, &o, &r, err, sizeof err)) {
            printf("%-16s ERROR: %s\n", im->name, err);
            failed++;
            continue;
        }
        size_t bad = 0;
        printf("%-16s", im->name);
        for (int k = 0; k < DR_GRAD_COUNT; k++) {
            char cell[32];
            if (!r.has[k]) snprintf(cell, sizeof cell, "-");
            else snprintf(cell, sizeof cell, "%.2e/%zu", r.e[k].normwise, r.bad[k]);
            printf(" %17s", cell);
            bad += r.bad[k];
        }
        const int claims_all = (im->claims & DR_CLAIM_ALL) == DR_CLAIM_ALL;
        printf("  %s\n", !bad ? "PASS" : claims_all ? "FAIL" : "miss (unclaimed)");
        failed += bad && claims_all;
    }
    return failed;
}

static int check_golden(const char *path, const char *impl_name, const deltarule_crossover *xo)
{
    dr_golden g;
    char err[512] = "";
    if (dr_golden_load(path, &g, err, sizeof err)) {
        fprintf(stderr, "q35lab: %s\n", err);
        return 2;
    }
    const deltarule_problem *p = &g.c.p;
    printf("golden %s: B=%d T=%d Hk=%d Hv=%d Dk=%d Dv=%d l2norm=%d scale=%g%s%s; pass when |x-e| <= %g + %g|e|\n",
           path, p->B, p->T, p->Hk, p->Hv, p->Dk, p->Dv, p->use_qk_l2norm, (double)deltarule_scale(p),
           p->initial_state ? " initial_state" : "", p->seq_len ? " seq_len" : "", g.atol, g.rtol);
    printf("%-16s %10s %10s %10s %10s  %s\n", "implementation", "out norm", "out max", "state norm", "state max",
           "status");
    int failed = 0, ran = 0;
    for (int i = 0; i < deltarule_n_entries(); i++) {
        const deltarule_impl *im = deltarule_entry(i);
        if (strcmp(impl_name, "all") && strcmp(impl_name, im->name)) continue;
        if (im->available && !im->available()) continue;
        dr_golden_result r;
        ran++;
        const deltarule_opts o = {.crossover = xo};
        if (dr_golden_check(&g, im, &o, &r, err, sizeof err)) {
            printf("%-16s ERROR: %s\n", im->name, err);
            failed++;
            continue;
        }
        const int ok = !r.bad_out && !r.bad_state;
        /* An implementation that does not claim every regime may miss a
         * golden case outside its claims: report it, do not fail on it. */
        const int claims_all = (im->claims & DR_CLAIM_ALL) == DR_CLAIM_ALL;
        printf("%-16s %10.2e %10.2e %10.2e %10.2e  %s", im->name, r.out.normwise, r.out.maxabs,
               r.state.normwise, r.state.maxabs, ok ? "PASS" : claims_all ? "FAIL" : "miss (unclaimed)");
        if (!ok)
            printf("  (%zu out, %zu state elements outside tolerance)", r.bad_out, r.bad_state);
        printf("\n");
        failed += !ok && claims_all;
    }
    if (g.has_grad) failed += check_golden_grads(&g, impl_name, &ran);
    dr_golden_free(&g);
    if (!ran) {
        fprintf(stderr, "q35lab: no implementation named '%s'\n", impl_name);
        return 2;
    }
    return failed ? 1 : 0;
}

/* Error against T (random regime, Qwen3.5 head size): the data behind the
 * error plot in results/.  One CSV row per implementation and T, to
 * csv_path (written whole or not at all) or, without one, to stdout. */
static int error_sweep(const int *Ts, int nT, const char *csv_path, const deltarule_crossover *xo)
{
    char err[512];
    q35_atomic_file out = {0};
    if (csv_path && q35_atomic_open(&out, csv_path, 0, err, sizeof err)) {
        fprintf(stderr, "q35lab: %s\n", err);
        return 2;
    }
    FILE *f = csv_path ? out.f : stdout;
    fprintf(f, "impl,T,regime,normwise,maxabs\n");
    int rc = 0;
    for (int i = 0; i < nT && !rc; i++)
        for (int r = 0; r < DR_REGIME_COUNT && !rc; r++) {
            if (r == DR_REGIME_LONG) continue; /* T is the variable here */
            dr_shape s = {1, Ts[i], 2, 2, 128, 128, 1, 0};
            dr_case c;
            float *ro, *rs;
            if (dr_case_make(&c, &s, r, 1, err, sizeof err)) {
                rc = 2;
                break;
            }
            if (dr_case_alloc_outputs(&c, &ro, &rs)) {
                snprintf(err, sizeof err, "error sweep: out of memory");
                dr_case_free(&c);
                rc = 2;
                break;
            }
            deltarule_problem pr = c.p;
            pr.out = ro;
            pr.final_state = rs;
            rc = deltarule_run(&deltarule_ref_impl, &pr, NULL, err, sizeof err);
            for (int k = 1; k < deltarule_n_entries() && !rc; k++) { /* entry 0 is ref */
                const deltarule_impl *im = deltarule_entry(k);
                if (im->available && !im->available()) continue;
                if ((rc = deltarule_run(im, &c.p, &(deltarule_opts){.crossover = xo}, err, sizeof err))) break;
                err_stats e = err_worst(err_compare(c.out, ro, dr_v_elems(&c.p)),
                                        err_compare(c.final_state, rs, dr_state_elems(&c.p)));
                fprintf(f, "%s,%d,%s,%.4g,%.4g\n", im->name, Ts[i], dr_regime_name(r), e.normwise, e.maxabs);
            }
            free(ro); free(rs); dr_case_free(&c);
            if (rc) rc = 2;
            if (isatty(2)) fprintf(stderr, "\r[error sweep] T=%d %s        ", Ts[i], dr_regime_name(r));
        }
    if (isatty(2)) fprintf(stderr, "\n");
    if (rc) {
        fprintf(stderr, "q35lab: %s\n", err);
        q35_atomic_abort(&out);
        return 2;
    }
    if (csv_path) {
        if (q35_atomic_commit(&out, err, sizeof err)) {
            fprintf(stderr, "q35lab: %s\n", err);
            return 2;
        }
        printf("wrote %s\n", csv_path);
    }
    return 0;
}

static void progress_grad(const char *what, int done, int total)
{
    cli_progress_line("check deltarule --grad", what, done, total);
}

static int write_grad_json(const char *path, const dr_grad_row *rows, int n)
{
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "deltarule_grad");
    cJSON_AddStringToObject(root, "isa", cpu_isa_name(cpu_isa()));
    for (int i = 0; i < n; i++)
        for (int r = 0; r < DR_REGIME_COUNT; r++) {
            const dr_grad_cell *c = &rows[i].cell[r];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "impl", rows[i].impl->name);
            cJSON_AddNumberToObject(o, "chunk", rows[i].impl->defaults.chunk);
            cJSON_AddStringToObject(o, "regime", dr_regime_name(r));
            for (int k = 0; k < DR_GRAD_COUNT; k++) {
                if (!c->has[k]) continue;
                char key[40];
                snprintf(key, sizeof key, "normwise_%s", dr_grad_name(k));
                /* JSON has no inf: a non-finite result is null plus the count */
                if (c->grad[k].nonfinite) cJSON_AddNullToObject(o, key);
                else cJSON_AddNumberToObject(o, key, c->grad[k].normwise);
            }
            cli_json_add_err_stats(o, &c->worst);
            cJSON_AddNumberToObject(o, "bytes_held", (double)c->bytes_held);
            cJSON_AddStringToObject(o, "worst_case", c->worst_case);
            cJSON_AddStringToObject(o, "status", status_name(c->status));
            if (c->status == CELL_ERROR) cJSON_AddStringToObject(o, "error", c->error);
            cJSON_AddItemToArray(arr, o);
        }
    return cli_json_write_report(root, path);
}

/* check deltarule --grad: every backward implementation x regime against
 * ref's backward, per gradient. */
static int check_grad_sweep(int quick, int seeds, const char *impl, const char *json)
{
    deltarule_crossover x;
    const dr_grad_check_config cfg = {.quick = quick, .seeds = seeds, .only_impl = impl,
                                      .crossover = dr_crossover_load_default_grad(&x), .progress = progress_grad};
    printf("check deltarule --grad: every backward implementation x regime against ref/'s backward (double), "
           "ISA path %s%s\n", cpu_isa_name(cpu_isa()), quick ? ", quick grid" : "");
    printf("normwise error ||x - ref|| / ||ref|| per gradient (worst over the regime's cases; gradients NaN-filled "
           "before each run)\n");
    dr_grad_row *rows;
    int n;
    char err[512] = "";
    const int failed = dr_grad_check_run(&cfg, &rows, &n, err, sizeof err);
    if (failed < 0) {
        fprintf(stderr, "q35lab: check deltarule --grad: %s\n", err);
        return 2;
    }
    printf("%-12s %-16s", "backward", "regime");
    for (int k = 0; k < DR_GRAD_COUNT; k++) printf(" %9s", k == DR_GRAD_DH0 ? "dh0" : dr_grad_name(k));
    printf(" %10s %9s  %-36s %s\n", "max|err|", "nonfinite", "worst case", "status");
    int pass = 0, unclaimed = 0;
    for (int i = 0; i < n; i++)
        for (int r = 0; r < DR_REGIME_COUNT; r++) {
            const dr_grad_cell *c = &rows[i].cell[r];
            pass += c->status == CELL_PASS;
            unclaimed += c->status == CELL_UNCLAIMED;
            if (c->status == CELL_ERROR) {
                printf("%-12s %-16s ERROR: %s\n", rows[i].impl->name, dr_regime_name(r), c->error);
                continue;
            }
            printf("%-12s %-16s", rows[i].impl->name, dr_regime_name(r));
            for (int k = 0; k < DR_GRAD_COUNT; k++) {
                if (c->has[k]) printf(" %9.2e", c->grad[k].normwise);
                else printf(" %9s", "-");
            }
            printf(" %10.2e %9zu  %-36s %s\n", c->worst.maxabs, c->worst.nonfinite, c->worst_case,
                   status_name(c->status));
        }
    printf("check deltarule --grad: %d claims PASS, %d FAIL, %d unclaimed cells (tolerance: normwise error per "
           "gradient, the backward table's claim_tol:", pass, failed, unclaimed);
    for (int i = 0; i < n; i++) printf(" %s %.0e", rows[i].impl->name, rows[i].impl->claim_tol);
    printf(")\n");
    int rc = failed ? 1 : 0;
    if (json && write_grad_json(json, rows, n)) rc = 2;
    free(rows);
    return rc;
}

static const char usage_check[] =
    "usage: q35lab check deltarule|moe|all [options]      (q35lab check deltarule --help, check moe --help)\n"
    "Every implementation of a family against ref/ (the double-precision spec) over a grid of shapes and\n"
    "input regimes, or against a golden file; exit 1 if one misses a tolerance it claims.\n"
    "  check all [--quick] [--seeds N]   every family\n";

static const char usage_deltarule[] =
    "usage: q35lab check deltarule [--impl NAME|all] [--seeds N] [--quick] [--chunks 16,32,64] [--markdown]\n"
    "                              [--json FILE]\n"
    "       q35lab check deltarule --golden FILE [--impl NAME|all]\n"
    "       q35lab check deltarule --grad [--impl NAME|all] [--seeds N] [--quick] [--json FILE]\n"
    "       q35lab check deltarule --error-vs-T 1,16,64,... [--csv FILE]\n"
    "Every implementation x input regime (random, slow-decay, strong-decay, correlated-keys,\n"
    "repeated-tokens, zero-gates, long) over shapes with T = 1, chunk boundaries, GQA, Dv != Dk and padding,\n"
    "against ref/ in double: worst normwise and max-abs error, non-finite count, worst case, PASS / FAIL /\n"
    "unclaimed.  Outputs are NaN-filled before each run.  Exit 1 if an implementation misses its tolerance\n"
    "on a regime it claims, 2 on bad input.\n"
    "  --impl NAME|all     one implementation or every one (default all)\n"
    "  --seeds N           random seeds per case (default 2; --quick 1)\n"
    "  --quick             a smaller grid of shapes\n"
    "  --chunks LIST       also run the chunked forms at these chunk sizes (rows impl@C, never claimed)\n"
    "  --markdown          also print the implementation x regime table in markdown\n"
    "  --json FILE         write every cell as JSON\n"
    "  --golden FILE       check against a golden file instead (README: Golden files); a file with\n"
    "                      gradients (d_out, dq, dk, dv, dg, dbeta[, d_initial_state]) also checks ref's and\n"
    "                      every backward implementation's gradients, element-wise with its atol/rtol\n"
    "  --grad              the backward instead: every backward implementation (kernels/deltarule/\n"
    "                      deltarule_grad.h) x regime against ref's backward over T = 1, 63, 64, 65, 128,\n"
    "                      GQA, Dv != Dk, padding, l2norm off: normwise error per gradient (dq dk dv dg dbeta\n"
    "                      d_initial_state), PASS / FAIL against its claim_tol; --impl, --seeds, --quick,\n"
    "                      --json apply\n"
    "  --error-vs-T LIST   error of every implementation against T (random regime) as CSV, to --csv FILE\n"
    "                      or to stdout\n";

static int check_deltarule(int argc, char **argv)
{
    dr_check_config cfg = {0};
    int chunks[8], sweepT[16], nsweep = 0, markdown = 0, grad = 0;
    const char *json = NULL, *golden = NULL, *impl = "all", *csv = NULL;
    const cli_opt opts[] = {
        OPT_FLAG("--quick", &cfg.quick),
        OPT_FLAG("--markdown", &markdown),
        OPT_FLAG("--grad", &grad),
        OPT_STR("--csv", &csv),
        OPT_INTS("--error-vs-T", sweepT, 1, 1 << 20, &nsweep, 16),
        OPT_STR("--impl", &impl),
        OPT_STR("--json", &json),
        OPT_STR("--golden", &golden),
        OPT_INT("--seeds", &cfg.seeds, 1, 1000),
        OPT_INTS("--chunks", chunks, 1, 1024, &cfg.n_chunks, 8),
        CLI_END};
    const int pr = cli_parse("check deltarule", usage_deltarule, opts, argc, argv, 2);
    if (pr) return CLI_EXIT(pr);
    if (cfg.n_chunks) cfg.chunks = chunks;
    if (grad && (golden || nsweep || markdown || cfg.n_chunks)) {
        fprintf(stderr, "q35lab: check deltarule: --grad does not combine with --golden, --error-vs-T, --markdown "
                        "or --chunks\n");
        return 2;
    }
    if (grad) {
        if (strcmp(impl, "all") && (!dr_grad_named(impl) || !strcmp(impl, "ref"))) {
            fprintf(stderr, "q35lab: no backward implementation named '%s' (the backward's:", impl);
            for (int i = 1; i < dr_grad_n_entries(); i++) fprintf(stderr, " %s", dr_grad_entry(i)->name);
            fprintf(stderr, ")\n");
            return 2;
        }
        return check_grad_sweep(cfg.quick, cfg.seeds, impl, json);
    }
    if (strcmp(impl, "all") && !deltarule_named(impl) && !(golden && dr_grad_named(impl))) {
        fprintf(stderr, "q35lab: no deltarule implementation named '%s' (see `q35lab list`)\n", impl);
        return 2;
    }
    deltarule_crossover x;
    cfg.crossover = dr_crossover_load_default(&x);
    if (golden) return check_golden(golden, impl, cfg.crossover);
    if (nsweep) return error_sweep(sweepT, nsweep, csv, cfg.crossover);
    cfg.only_impl = impl;
    cfg.progress = progress;
    return check_sweep(&cfg, json, markdown);
}

/* check all: every family, with the options they share. */
static int check_all(int argc, char **argv)
{
    int quick = 0, seeds = 0;
    const cli_opt opts[] = {OPT_FLAG("--quick", &quick), OPT_INT("--seeds", &seeds, 1, 1000), CLI_END};
    const int pr = cli_parse("check all", "usage: q35lab check all [--quick] [--seeds N]\n"
                                          "Every family's check (check deltarule, check deltarule --grad, check moe)\n"
                                          "with these options.\n",
                             opts, argc, argv, 2);
    if (pr) return CLI_EXIT(pr);
    argv[1] = "deltarule";
    const int dr = check_deltarule(argc, argv);
    /* the backward: the same options and --grad */
    char **gv = malloc(sizeof *gv * ((size_t)argc + 2));
    if (!gv) { fprintf(stderr, "error: out of memory\n"); return 2; }
    for (int i = 0; i < argc; i++) gv[i] = argv[i];
    gv[argc] = "--grad";
    gv[argc + 1] = NULL;
    const int grad = check_deltarule(argc + 1, gv);
    free(gv);
    argv[1] = "moe";
    const int moe = cmd_check_moe(argc, argv);
    const int worst = dr > grad ? dr : grad;
    return worst > moe ? worst : moe;
}

int cmd_check(int argc, char **argv, const q35_comm *comm)
{
    if (cli_one_process(comm, "check")) return 2;
    static const char *const names[] = {"deltarule", "moe", "all"};
    int status;
    switch (cli_subcommand("check", usage_check, names, 3, argc, argv, &status)) {
    case 0: return check_deltarule(argc, argv);
    case 1: return cmd_check_moe(argc, argv);
    case 2: return check_all(argc, argv);
    default: return status;
    }
}
