/* q35lab golden deltarule: writes a golden file from ref/. */
#include "ref/deltarule_ref.h"
#include "cli/cli.h"
#include "cli/cli_moe.h"
#include "kernels/deltarule/deltarule.h"
#include "harness/deltarule_golden.h"
#include "harness/deltarule_inputs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_golden(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "moe")) return cmd_golden_moe(argc, argv);
    if (argc < 2 || strcmp(argv[1], "deltarule")) {
        fprintf(stderr, "usage: q35lab golden deltarule --out FILE [--B n --T n --Hk n --Hv n --Dk n --Dv n] "
                        "[--regime NAME] [--seed n] [--initial-state] [--seq-len] [--no-l2norm]\n");
        return 2;
    }
    dr_shape s = {1, 37, 2, 4, 32, 32, 0, 0};
    int regime = DR_REGIME_RANDOM, seed = 1, l2 = 1;
    const char *out = NULL, *v;
    struct { const char *opt; int *dst; int hi; } dims[] = {
        {"--B", &s.B, 4096}, {"--T", &s.T, 1 << 20}, {"--Hk", &s.Hk, 4096},
        {"--Hv", &s.Hv, 4096}, {"--Dk", &s.Dk, 4096}, {"--Dv", &s.Dv, 4096}};
    for (int i = 2; i < argc; i++) {
        int matched = 0;
        for (size_t d = 0; d < sizeof dims / sizeof *dims; d++)
            if (!strcmp(argv[i], dims[d].opt)) {
                if (!(v = cli_value(argc, argv, &i)) || cli_int(dims[d].opt, v, 1, dims[d].hi, dims[d].dst)) return 2;
                matched = 1;
            }
        if (matched) continue;
        if (!strcmp(argv[i], "--out")) { if (!(out = cli_value(argc, argv, &i))) return 2; }
        else if (!strcmp(argv[i], "--initial-state")) s.with_initial_state = 1;
        else if (!strcmp(argv[i], "--seq-len")) s.with_seq_len = 1;
        else if (!strcmp(argv[i], "--no-l2norm")) l2 = 0;
        else if (!strcmp(argv[i], "--seed")) {
            if (!(v = cli_value(argc, argv, &i)) || cli_int("--seed", v, 0, 1 << 30, &seed)) return 2;
        } else if (!strcmp(argv[i], "--regime")) {
            if (!(v = cli_value(argc, argv, &i))) return 2;
            if ((regime = dr_regime_from_name(v)) < 0) {
                fprintf(stderr, "q35lab: unknown regime '%s'\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "q35lab: golden: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!out) { fprintf(stderr, "q35lab: golden: --out FILE is required\n"); return 2; }
    dr_case c;
    char err[512];
    if (dr_case_make(&c, &s, regime, (unsigned long)seed, err, sizeof err)) {
        fprintf(stderr, "q35lab: %s\n", err);
        return 2;
    }
    c.p.use_qk_l2norm = l2;
    int rc = deltarule_run(&deltarule_ref_impl, &c.p, NULL, err, sizeof err);
    char note[160];
    snprintf(note, sizeof note, "q35lab golden deltarule: ref/ (double), regime %s, seed %d", dr_regime_name(regime), seed);
    if (!rc) rc = dr_golden_write(out, &c, c.out, c.final_state, DR_GOLDEN_DEFAULT_ATOL, DR_GOLDEN_DEFAULT_RTOL, note, err, sizeof err);
    if (rc) fprintf(stderr, "q35lab: %s\n", err);
    else printf("wrote %s (B=%d T=%d Hk=%d Hv=%d Dk=%d Dv=%d, regime %s)\n", out, c.p.B, c.p.T, c.p.Hk, c.p.Hv, c.p.Dk, c.p.Dv, dr_regime_name(regime));
    dr_case_free(&c);
    return rc ? 1 : 0;
}
