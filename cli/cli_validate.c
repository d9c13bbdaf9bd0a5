/* q35lab validate: the reference path's greedy tokens against every
 * implementation combination (teacher-forced), and optionally against a
 * golden file dumped from PyTorch (free generation).  docs/model.md §5. */
#include "harness/deltarule_crossover.h"
#include "harness/impl_select.h"
#include "harness/model_validate.h"
#include "harness/spec_validate.h"
#include "cli/cli_model_args.h"
#include "cli/cli_text.h"
#include "cli/commands.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: q35lab validate --model DIR [--prompt-ids IDS | --prompt TEXT... | --prompt-file FILE... [--chat]]\n"
    "                       [--steps N] [--impl all|SPEC[;SPEC...]] [--golden FILE] [--threads N] [--mmap] [--f32]\n"
    "       q35lab validate --model DIR --speculative mtp|ngram|oracle:P [--draft N] [--seed S] [--golden FILE]\n"
    "                       [--prompt-ids IDS] [--steps N] [--impl SPEC[;SPEC...]]\n"
    "Runs the reference model (ref/model_ref.c: one token at a time, double throughout) and each\n"
    "implementation combination (q35_forward, prompts as one padded batch) teacher-forced on its greedy\n"
    "tokens; reports token match, max |dlogit| and the smallest top-1/top-2 margin of the reference.\n"
    "--impl all (default): every combination of the tables' entries (families the model does not use stay\n"
    "at their default).  --golden FILE: prompts, tokens and logits dumped from PyTorch\n"
    "(ref/hf/dump_model_goldens.py); each path must reproduce the tokens by free generation and the logits\n"
    "within 1e-4 + 1e-4 max|logit|.  --steps N: greedy steps (default 16, or the golden file's).\n"
    "--speculative SRC: instead, speculative decoding (docs/speculative.md) with draft lengths N (--draft N,\n"
    "default 1 to 4) against plain greedy decoding of the same implementation combination (--impl, default\n"
    "'default'), prompts as one right-padded batch: every token must be equal, and with --golden equal to\n"
    "the golden tokens.\n"
    "Text prompts (--prompt, --prompt-file, --chat) are encoded with DIR/tokenizer.json (docs/text.md); the\n"
    "steps do not stop at end-of-sequence ids: every path is compared over all N.\n"
    "Exit status 0 only if everything matches.\n" TEXT_ARGS_HELP MODEL_ARGS_HELP;

/* The combinations: every entry of every family the model uses (ref entries too: the
 * reference path is ref/model_ref.c, not these tables). */
static int combos(const q35_model *m, const char *spec, q35_impls **out, int *n, int threads,
                  const deltarule_crossover *xo)
{
    char err[256];
    if (strcmp(spec, "all")) {
        int k = 1;
        for (const char *c = spec; *c; c++) k += *c == ';';
        *out = calloc((size_t)k, sizeof **out);
        char *buf = strdup(spec);
        if (!*out || !buf) { free(buf); return -1; }
        *n = 0;
        for (char *save = NULL, *t = strtok_r(buf, ";", &save); t; t = strtok_r(NULL, ";", &save)) {
            (*out)[*n].threads = threads;
            (*out)[*n].dr_crossover = xo;
            if (q35_impls_parse(t, &(*out)[*n], err, sizeof err)) {
                fprintf(stderr, "error: %s\n", err);
                free(buf);
                return -1;
            }
            (*n)++;
        }
        free(buf);
        return 0;
    }
    int size[Q35_FAM_COUNT], total = 1;
    for (int f = 0; f < Q35_FAM_COUNT; f++) {
        const int used = f != Q35_FAM_MOE || m->cfg.is_moe;
        size[f] = used ? q35_family_size(f) : 1;
        total *= size[f];
    }
    *out = calloc((size_t)total, sizeof **out);
    if (!*out) return -1;
    *n = 0;
    for (int c = 0; c < total; c++) {
        q35_impls im;
        q35_impls_default(&im);
        im.threads = threads;
        im.dr_crossover = xo;
        for (int f = 0, r = c; f < Q35_FAM_COUNT; r /= size[f], f++)
            if (size[f] > 1) q35_impls_set(&im, f, r % size[f]);
        (*out)[(*n)++] = im;
    }
    return 0;
}

static void print_row(const char *name, const q35_match *r, const q35_match *g, int golden_ok, int tp)
{
    if (r)
        printf("%-74s %6.1f%% (%ld/%ld)  %9.2e  %9.3g", name, 100.0 * r->match / r->total, r->match, r->total,
               r->max_dlogit, r->min_margin);
    else
        printf("%-74s %-16s  %9s  %9s", name, "(the baseline)", "", "");
    if (g)
        printf("   golden %5.1f%% %9.2e %s", 100.0 * g->match / g->total, g->max_dlogit, golden_ok ? "ok" : "FAIL");
    if (r && tp) printf("   %9.2e", r->max_dlogit_1p);
    printf("%s\n", r && r->match < r->total ? "   MISMATCH" : "");
    fflush(stdout);
}

static int golden_ok(const q35_prompts *g, const q35_match *r)
{
    int has_logits = 0;
    for (int i = 0; i < g->n; i++) has_logits |= g->logits[i] != NULL;
    return r->match == r->total && (!has_logits || r->max_dlogit <= q35_golden_logit_tol(r->max_ref_logit));
}

/* validate --speculative: every draft length against plain greedy (and the golden tokens). */
static int validate_speculative(const q35_model *m, const q35_impls *list, int n, const q35_prompts *p,
                                q35_spec_opts so, int n_draft, int golden, const char *src)
{
    char err[512];
    printf("validate: speculative decoding (%s) against plain greedy decoding; %d prompt%s (lengths", src, p->n,
           p->n > 1 ? "s, one padded batch" : "");
    for (int i = 0; i < p->n; i++) printf(" %d", p->len[i]);
    printf(") x %d steps%s\n", p->steps, golden ? "; and against the golden file's tokens" : "");
    printf("%-60s %5s %-18s %-18s %10s %9s\n", "implementations", "draft", "tokens = greedy", golden ? "= golden" : "",
           "accepted", "per step");
    int fails = 0, rows = 0;
    for (int c = 0; c < n; c++) {
        char name[256];
        q35_impls_format(&list[c], name, sizeof name);
        for (int N = n_draft ? n_draft : 1; N <= (n_draft ? n_draft : 4); N++) {
            so.n_draft = N;
            q35_spec_match r;
            if (q35_validate_speculative(m, &list[c], p, &so, golden, &r, err, sizeof err)) {
                fprintf(stderr, "error: %s, draft %d: %s\n", name, N, err);
                return 2;
            }
            char g[40] = "";
            if (golden) snprintf(g, sizeof g, "%5.1f%% (%ld/%ld)", 100.0 * r.golden_match / r.golden_total,
                                 r.golden_match, r.golden_total);
            const int bad = r.match < r.total || r.golden_match < r.golden_total;
            printf("%-60s %5d %5.1f%% (%ld/%ld)  %-18s %9.1f%% %9.2f%s\n", name, N, 100.0 * r.match / r.total, r.match,
                   r.total, g, r.st.drafted ? 100.0 * r.st.accepted / r.st.drafted : 0.0,
                   r.st.rows ? (double)(r.st.rows + r.st.accepted) / r.st.rows : 0.0, bad ? "   MISMATCH" : "");
            if (r.first_bad_prompt >= 0)
                printf("    first difference: prompt %d, step %d\n", r.first_bad_prompt, r.first_bad_step);
            fails += bad;
            rows++;
        }
    }
    printf("validate: %d speculative run%s: %s\n", rows, rows == 1 ? "" : "s",
           fails ? "FAIL" : golden ? "PASS (100% the tokens of plain greedy decoding and of the golden file)"
                                   : "PASS (100% the tokens of plain greedy decoding)");
    return fails ? 1 : 0;
}

int cmd_validate(int argc, char **argv, const q35_comm *comm)
{
    model_args a = {0};
    text_args ta = {0};
    const char *golden = NULL, *spec = NULL;
    int steps = 0, n_draft = 0;
    uint64_t seed = 1;
    const cli_opt opts[] = {MODEL_ARGS_OPTS(&a), OPT_STR("--golden", &golden),
                            OPT_INT("--steps", &steps, 1, 1 << 20), OPT_STR("--speculative", &spec),
                            OPT_INT("--draft", &n_draft, 1, Q35_DRAFT_MAX), OPT_U64("--seed", &seed),
                            TEXT_ARGS_OPTS(&ta), CLI_END};
    const int pr = cli_parse("validate", usage, opts, argc, argv, 1);
    if (pr) return CLI_EXIT(pr);
    if (model_args_check(&a, comm) || text_args_check(&ta, a.prompts, comm->rank)) return 2;
    const int text_in = text_args_given(&ta);
    q35_spec_opts so = {.seed = seed};
    {
        char e[256];
        if ((n_draft || seed != 1) && !spec) { fprintf(stderr, "error: --draft and --seed go with --speculative\n"); return 2; }
        if (spec && q35_draft_source_parse(spec, &so, e, sizeof e)) { fprintf(stderr, "error: %s\n", e); return 2; }
    }
    deltarule_crossover x;
    const deltarule_crossover *xo = dr_crossover_load_default(&x);
    /* text prompts: the tokenizer and the ids before the (long) model load */
    q35_prompts p = {0}, g = {0};
    q35_tokenizer *tz = NULL;
    char err[512];
    if (text_in) {
        if (!a.dir) { if (comm->rank == 0) fprintf(stderr, "error: --model DIR is required\n"); return 2; }
        if (text_tokenizer_open(a.dir, 1, comm->rank, &tz)) return 2;
        if (text_prompts_encode(&ta, tz, &p, err, sizeof err)) {
            if (comm->rank == 0) fprintf(stderr, "error: %s\n", err);
            q35_tokenizer_free(tz);
            return 2;
        }
    }
    q35_model m, whole = {0};
    if (model_args_open(&a, &m)) {
        q35_prompts_free(&p);
        if (tz) q35_tokenizer_free(tz);
        return 2;
    }
    const int V = m.cfg.vocab_size;
    int rc = 2;
    /* The reference path needs every weight: under tensor parallelism rank 0
     * also loads the model whole for it (docs/tp.md); the combinations run
     * on the ranks' slices. */
    const q35_model *ref_model = &m;
    if ((comm->size > 1 || a.against) && comm->rank == 0) {
        q35_load_opts one = a.load;
        one.comm = NULL;
        one.quant = a.against ? WT_F32 : one.quant; /* --against full: the reference on unquantized weights */
        if (q35_model_load(a.dir, &one, &whole, err, sizeof err)) {
            fprintf(stderr, "error: rank 0: the whole model for the reference path: %s\n", err);
            q35_comm_abort(comm, 2);
        }
        ref_model = &whole;
    }
    q35_impls *list = NULL;
    int n = 0;
    int32_t *ref_tok = NULL;
    float *ref_lg = NULL;
    if (text_tokenizer_fits(&tz, a.dir, text_in, V, comm->rank)) goto out;
    if (golden && q35_prompts_load_golden(golden, V, &g, err, sizeof err)) { fprintf(stderr, "error: %s\n", err); goto out; }
    if (text_in ? 0
        : a.prompts ? q35_prompts_parse(a.prompts, V, &p, err, sizeof err)
        : golden    ? q35_prompts_load_golden(golden, V, &p, err, sizeof err)
                    : q35_prompts_default(V, &p, err, sizeof err)) {
        fprintf(stderr, "error: %s\n", err);
        goto out;
    }
    p.steps = steps ? steps : golden && !a.prompts && !text_in ? g.steps : 16;
    if (combos(&m, a.impl ? a.impl : spec ? "default" : "all", &list, &n, a.threads, xo)) goto out;
    if (spec) {
        if (golden && (a.prompts || text_in || p.steps > g.steps)) {
            fprintf(stderr, "error: --speculative with --golden runs the golden file's prompts and at most its %d steps\n",
                    g.steps);
            goto out;
        }
        if (golden) g.steps = p.steps;
        rc = validate_speculative(&m, list, n, golden ? &g : &p, so, n_draft, golden != NULL, spec);
        goto out;
    }

    if (comm->rank == 0 && q35_reference_run(ref_model, &p, &ref_tok, &ref_lg, err, sizeof err)) {
        fprintf(stderr, "error: reference path: %s\n", err);
        if (comm->size > 1) q35_comm_abort(comm, 2);
        goto out;
    }
    if (comm->size > 1) { /* every rank is teacher-forced on the reference's tokens */
        if (comm->rank && !(ref_tok = malloc((size_t)p.n * p.steps * sizeof *ref_tok))) q35_comm_abort(comm, 2);
        if (q35_comm_broadcast(comm, ref_tok, (size_t)p.n * p.steps * sizeof *ref_tok)) q35_comm_abort(comm, 2);
    }
    char tp_note[96] = "";
    if (comm->size > 1)
        snprintf(tp_note, sizeof tp_note, " tensor-parallel over %d ranks (moe %s)", comm->size,
                 q35_moe_shard_name(a.load.moe_shard));
    double min_margin = INFINITY;
    for (int i = 0; ref_lg && i < p.n * p.steps; i++)
        min_margin = fmin(min_margin, q35_top2_margin(ref_lg + (size_t)i * V, V));
    printf("validate: reference model (ref/model_ref.c, double, token by token) vs q35_forward%s; %d prompt%s "
           "(lengths", tp_note, p.n, p.n > 1 ? "s, one padded batch" : "");
    for (int i = 0; i < p.n; i++) printf(" %d", p.len[i]);
    printf(") x %d greedy steps; reference path min top-1/top-2 margin %.3g\n", p.steps, min_margin);
    int fails = 0;
    q35_match gr;
    if (golden) {
        if (comm->rank == 0 && q35_validate_golden(ref_model, NULL, &g, &gr, err, sizeof err)) {
            fprintf(stderr, "error: %s\n", err);
            if (comm->size > 1) q35_comm_abort(comm, 2);
            goto out;
        }
        if (q35_comm_broadcast(comm, &gr, sizeof gr)) q35_comm_abort(comm, 2);
        fails += !golden_ok(&g, &gr);
        printf("golden %s: %d prompts x %d steps, logit tolerance 1e-4 + 1e-4 max|logit|\n", golden, g.n, g.steps);
    }
    printf("%-74s %-16s %9s  %9s%s%s\n", "implementations", "token match", "max|dlogit|", "margin",
           golden ? "   golden (free generation)" : "", comm->size > 1 ? "   vs 1 process" : "");
    /* A combination that matches the reference's argmax at every teacher-forced step generates the
     * reference's tokens freely too (same inputs at every step, by induction); so when the reference
     * reproduces the golden tokens, every fully matching combination does. */
    if (golden) print_row("reference model (ref/model_ref.c) itself", NULL, &gr, golden_ok(&g, &gr), 0);
    double worst = 0, worst_1p = 0;
    for (int c = 0; c < n; c++) {
        char name[256];
        q35_impls_format(&list[c], name, sizeof name);
        q35_match r;
        /* tensor-parallel: also against this combination in one process, on rank 0's whole model */
        float *one = NULL;
        if (comm->size > 1 && comm->rank == 0 && q35_forced_logits(&whole, &list[c], &p, ref_tok, &one, err, sizeof err)) {
            fprintf(stderr, "error: %s in one process: %s\n", name, err);
            q35_comm_abort(comm, 2);
        }
        const int vrc = q35_validate_against_one_process(&m, &list[c], &p, ref_tok, ref_lg, one, &r, err, sizeof err);
        free(one);
        worst_1p = fmax(worst_1p, r.max_dlogit_1p);
        /* the split changes only the fp32 summation order: held to the tolerance PyTorch's logits are */
        fails += comm->size > 1 && !(r.max_dlogit_1p <= q35_golden_logit_tol(r.max_ref_logit));
        if (vrc) {
            fprintf(stderr, "error: %s: %s\n", name, err);
            if (comm->size > 1) q35_comm_abort(comm, 2);
            goto out;
        }
        fails += r.match < r.total;
        worst = fmax(worst, r.max_dlogit);
        print_row(name, &r, NULL, 1, comm->size > 1);
    }
    char tp_worst[160] = "";
    if (comm->size > 1)
        snprintf(tp_worst, sizeof tp_worst, " (against the same combinations in one process: %.2e, allowed "
                 "1e-4 + 1e-4 max|logit|)", worst_1p);
    printf("validate: %d combination%s against the reference path, worst max|dlogit| %.2e%s%s: %s\n", n,
           n == 1 ? "" : "s", worst, tp_worst, golden ? "; the reference path against the golden file (so every "
           "matching combination too)" : "", fails ? "FAIL" : "PASS (100% token match)");
    rc = fails ? 1 : 0;
out:
    if (tz) q35_tokenizer_free(tz);
    free(ref_tok);
    free(ref_lg);
    free(list);
    q35_prompts_free(&p);
    q35_prompts_free(&g);
    q35_model_free(&m);
    q35_model_free(&whole);
    return rc;
}
