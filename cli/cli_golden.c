/* q35lab golden deltarule|moe: golden files from ref/. */
#include "ref/deltarule_ref.h"
#include "harness/deltarule_golden.h"
#include "harness/deltarule_inputs.h"
#include "cli/cli_args.h"
#include "cli/commands.h"

#include <stdio.h>
#include <string.h>

static const char usage_golden[] =
    "usage: q35lab golden deltarule|moe --out FILE [options]   (q35lab golden deltarule --help, golden moe --help)\n"
    "Writes a golden file from ref/ (double precision): inputs and expected outputs in safetensors.\n";

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
    static const char *const names[] = {"deltarule", "moe"};
    int status;
    switch (cli_subcommand("golden", usage_golden, names, 2, argc, argv, &status)) {
    case 0: return golden_deltarule(argc, argv);
    case 1: return cmd_golden_moe(argc, argv);
    default: return status;
    }
}
