/* q35lab golden deltarule|moe: golden files from ref/. */
#include "ref/deltarule_ref.h"
#include "harness/deltarule_golden.h"
#include "harness/deltarule_inputs.h"
#include "harness/model_validate.h"
#include "cli/cli_args.h"
#include "cli/commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_golden[] =
    "usage: q35lab golden deltarule|moe|model --out FILE [options]   (q35lab golden deltarule --help, ...)\n"
    "Writes a golden file from ref/ (double precision): inputs and expected outputs in safetensors.\n";

static const char usage_model[] =
    "usage: q35lab golden model --model DIR --out FILE [--prompt-ids IDS] [--steps N]\n"
    "Writes a model golden file from the reference model (ref/model_ref.c: double, token by token): the\n"
    "prompts (prompt_<i>), its greedy tokens (tokens_<i>) and its logits (logits_<i>), the format\n"
    "ref/hf/dump_model_goldens.py writes from PyTorch and validate --golden reads.  For checkpoints no\n"
    "PyTorch golden exists for (model init's).  Default: validate's three built-in prompts, 8 steps.\n";

static int golden_model(int argc, char **argv)
{
    const char *dir = NULL, *out = NULL, *prompts = NULL;
    int steps = 8;
    const cli_opt opts[] = {OPT_STR("--model", &dir), OPT_STR("--out", &out), OPT_STR("--prompt-ids", &prompts),
                            OPT_INT("--steps", &steps, 1, 1 << 16), CLI_END};
    const int pr = cli_parse("golden model", usage_model, opts, argc, argv, 2);
    if (pr) return CLI_EXIT(pr);
    if (!dir || !out) { fprintf(stderr, "q35lab: golden model: --model DIR and --out FILE are required\n"); return 2; }
    char err[512];
    q35_model m;
    if (q35_model_load(dir, NULL, &m, err, sizeof err)) { fprintf(stderr, "q35lab: %s\n", err); return 2; }
    const int V = m.cfg.vocab_size;
    q35_prompts p;
    int rc = 2;
    int32_t *tok = NULL;
    float *lg = NULL;
    if (prompts ? q35_prompts_parse(prompts, V, &p, err, sizeof err) : q35_prompts_default(V, &p, err, sizeof err)) {
        fprintf(stderr, "q35lab: %s\n", err);
        q35_model_free(&m);
        return 2;
    }
    p.steps = steps;
    char note[600];
    snprintf(note, sizeof note, "q35lab golden model: ref/model_ref.c (double, token by token) on %.500s", dir);
    if (q35_reference_run(&m, &p, &tok, &lg, err, sizeof err) ||
        q35_golden_model_write(out, &p, V, tok, lg, note, err, sizeof err))
        fprintf(stderr, "q35lab: %s\n", err);
    else {
        printf("wrote %s: %d prompts x %d steps from the reference model\n", out, p.n, steps);
        rc = 0;
    }
    free(tok);
    free(lg);
    q35_prompts_free(&p);
    q35_model_free(&m);
    return rc;
}

static const char usage_deltarule[] =
    "usage: q35lab golden deltarule --out FILE [--B n --T n --Hk n --Hv n --Dk n --Dv n] [--regime NAME]\n"
    "                               [--seed n] [--initial-state] [--seq-len] [--no-l2norm]\n"
    "Writes a delta-rule golden file from ref/ (double): q, k, v, g, beta, optional initial_state and\n"
    "seq_len, expected out and final_state (format: README, Golden files).  Written whole or not at all.\n"
    "Defaults: B 1, T 37, Hk 2, Hv 4, Dk 32, Dv 32, regime random, seed 1, in-kernel q/k l2norm on.\n"
    "Regimes: random, slow-decay, strong-decay, correlated-keys, repeated-tokens, zero-gates, long.\n";

static int golden_deltarule(int argc, char **argv)
{
    dr_shape s = {1, 37, 2, 4, 32, 32, 0, 0};
    int seed = 1, no_l2 = 0;
    const char *out = NULL, *regime_name = NULL;
    const cli_opt opts[] = {
        OPT_INT("--B", &s.B, 1, 4096),      OPT_INT("--T", &s.T, 1, 1 << 20), OPT_INT("--Hk", &s.Hk, 1, 4096),
        OPT_INT("--Hv", &s.Hv, 1, 4096),    OPT_INT("--Dk", &s.Dk, 1, 4096),  OPT_INT("--Dv", &s.Dv, 1, 4096),
        OPT_STR("--out", &out),             OPT_FLAG("--initial-state", &s.with_initial_state),
        OPT_FLAG("--seq-len", &s.with_seq_len), OPT_FLAG("--no-l2norm", &no_l2),
        OPT_INT("--seed", &seed, 0, 1 << 30), OPT_STR("--regime", &regime_name),
        CLI_END};
    const int pr = cli_parse("golden deltarule", usage_deltarule, opts, argc, argv, 2);
    if (pr) return CLI_EXIT(pr);
    int regime = DR_REGIME_RANDOM;
    if (regime_name && (regime = dr_regime_from_name(regime_name)) < 0) {
        fprintf(stderr, "q35lab: unknown regime '%s'\n", regime_name);
        return 2;
    }
    if (!out) { fprintf(stderr, "q35lab: golden: --out FILE is required\n"); return 2; }
    dr_case c;
    char err[512];
    if (dr_case_make(&c, &s, regime, (unsigned long)seed, err, sizeof err)) {
        fprintf(stderr, "q35lab: %s\n", err);
        return 2;
    }
    c.p.use_qk_l2norm = !no_l2;
    int rc = deltarule_run(&deltarule_ref_impl, &c.p, NULL, err, sizeof err);
    char note[160];
    snprintf(note, sizeof note, "q35lab golden deltarule: ref/ (double), regime %s, seed %d", dr_regime_name(regime), seed);
    if (!rc) rc = dr_golden_write(out, &c, c.out, c.final_state, DR_GOLDEN_DEFAULT_ATOL, DR_GOLDEN_DEFAULT_RTOL, note, err, sizeof err);
    if (rc) fprintf(stderr, "q35lab: %s\n", err);
    else printf("wrote %s (B=%d T=%d Hk=%d Hv=%d Dk=%d Dv=%d, regime %s)\n", out, c.p.B, c.p.T, c.p.Hk, c.p.Hv, c.p.Dk, c.p.Dv, dr_regime_name(regime));
    dr_case_free(&c);
    return rc ? 1 : 0;
}

int cmd_golden(int argc, char **argv, const q35_comm *comm)
{
    if (cli_one_process(comm, "golden")) return 2;
    static const char *const names[] = {"deltarule", "moe", "model"};
    int status;
    switch (cli_subcommand("golden", usage_golden, names, 3, argc, argv, &status)) {
    case 0: return golden_deltarule(argc, argv);
    case 1: return cmd_golden_moe(argc, argv);
    case 2: return golden_model(argc, argv);
    default: return status;
    }
}
