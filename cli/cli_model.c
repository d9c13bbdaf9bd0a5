/* q35lab model: whole-model commands.  Subcommands are rows of model_cmds[];
 * each takes (argc, argv) with argv[0] = its own name. */
#include "cli/cli.h"
#include "model/config.h"
#include "model/init.h"
#include "model/presets.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void init_usage(FILE *f)
{
    fprintf(f,
            "usage: q35lab model init --preset NAME --out DIR [--seed S] [--dtype bf16|f32]\n"
            "                         [--layers N] [--experts fused|per-expert] [--force]\n"
            "                         [--threads N] [--embed-std X]\n"
            "Writes DIR/config.json (nested Hugging Face Qwen3.5 form) and DIR/model.safetensors\n"
            "with random weights (docs/model-init.md).  The same seed gives the same bytes.\n"
            "  --preset NAME      shape, one of the presets below (required)\n"
            "  --out DIR          output folder, made if missing (required); refused if not\n"
            "                     empty unless --force (other files in it are left alone)\n"
            "  --seed S           RNG seed, 0 .. 2^64-1 (default 1)\n"
            "  --dtype bf16|f32   stored dtype (default bf16)\n"
            "  --layers N         keep the first N layers (1 .. the preset's count)\n"
            "  --experts LAYOUT   MoE presets: fused (mlp.experts.gate_up_proj / down_proj, the\n"
            "                     release layout, default) or per-expert\n"
            "                     (mlp.experts.E.{gate,up,down}_proj.weight); same values\n"
            "  --threads N        generation threads (default: OpenMP's)\n"
            "  --embed-std X      std of embed_tokens (default 0.02; 1 makes tied presets echo\n"
            "                     their input, see docs/model-init.md)\n"
            "presets:\n");
    for (int i = 0; i < q35_n_presets; i++)
        fprintf(f, "  %-18s %s%s%s\n", q35_presets[i].name, q35_presets[i].summary,
                q35_presets[i].hf_repo ? ", shapes of " : "",
                q35_presets[i].hf_repo ? q35_presets[i].hf_repo : "");
}

static int parse_u64(const char *opt, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *s == '-' || *s == '+' || end == s || *end || errno) {
        fprintf(stderr, "q35lab: %s expects an integer in [0, 2^64-1], got '%s'\n", opt, s);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

static int model_init(int argc, char **argv)
{
    q35_init_opts o = {.seed = 1, .dtype = ST_BF16, .experts = Q35_EXPERTS_FUSED,
                       .progress = stderr};
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            init_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--force")) {
            o.force = 1;
        } else if (!strcmp(a, "--preset") || !strcmp(a, "--out") || !strcmp(a, "--seed") ||
                   !strcmp(a, "--dtype") || !strcmp(a, "--layers") || !strcmp(a, "--experts") ||
                   !strcmp(a, "--threads") || !strcmp(a, "--embed-std")) {
            if (!(v = cli_value(argc, argv, &i)))
                return 2;
            if (!strcmp(a, "--preset")) {
                o.preset = v;
            } else if (!strcmp(a, "--out")) {
                out = v;
            } else if (!strcmp(a, "--seed")) {
                if (parse_u64(a, v, &o.seed)) return 2;
            } else if (!strcmp(a, "--dtype")) {
                if (!strcmp(v, "bf16") || !strcmp(v, "bfloat16")) {
                    o.dtype = ST_BF16;
                } else if (!strcmp(v, "f32") || !strcmp(v, "float32")) {
                    o.dtype = ST_F32;
                } else {
                    fprintf(stderr, "q35lab: --dtype must be bf16 or f32, got '%s'\n", v);
                    return 2;
                }
            } else if (!strcmp(a, "--layers")) {
                if (cli_int(a, v, 1, Q35_MAX_LAYERS, &o.layers)) return 2;
            } else if (!strcmp(a, "--threads")) {
                if (cli_int(a, v, 1, 1024, &o.threads)) return 2;
            } else if (!strcmp(a, "--embed-std")) {
                char *end;
                errno = 0;
                o.embed_std = strtod(v, &end);
                if (end == v || *end || errno || !(o.embed_std > 0) || o.embed_std > 1e6) {
                    fprintf(stderr, "q35lab: --embed-std expects a number in (0, 1e6], got '%s'\n",
                            v);
                    return 2;
                }
            } else if (!strcmp(v, "fused")) {
                o.experts = Q35_EXPERTS_FUSED;
            } else if (!strcmp(v, "per-expert")) {
                o.experts = Q35_EXPERTS_PER_EXPERT;
            } else {
                fprintf(stderr, "q35lab: --experts must be fused or per-expert, got '%s'\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "q35lab: model init: unknown option '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!o.preset) {
        char names[512];
        q35_preset_names(names, sizeof names);
        fprintf(stderr, "q35lab: model init needs --preset NAME (one of: %s)\n", names);
        return 2;
    }
    if (!q35_preset_find(o.preset)) {
        char names[512];
        q35_preset_names(names, sizeof names);
        fprintf(stderr, "q35lab: unknown preset '%s'; valid presets: %s\n", o.preset, names);
        return 2;
    }
    if (!out) {
        fprintf(stderr, "q35lab: model init needs --out DIR\n");
        return 2;
    }
    char err[1024];
    q35_init_stats st;
    if (q35_init_write(out, &o, &st, err, sizeof err)) {
        fprintf(stderr, "q35lab: model init: %s\n", err);
        return 1;
    }
    fprintf(stderr, "wrote %s: %d tensors, %llu values, %.1f MiB in %.1f s (%.0f MiB/s)\n", out,
            st.n_tensors, (unsigned long long)st.n_values, (double)st.file_bytes / 1048576.0,
            st.seconds, st.seconds > 0 ? (double)st.file_bytes / 1048576.0 / st.seconds : 0.0);
    return 0;
}

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} model_cmds[] = {
    {"init", model_init, "write a random-weight checkpoint of a preset shape"},
};
#define N_MODEL_CMDS ((int)(sizeof model_cmds / sizeof model_cmds[0]))

static void usage(FILE *f)
{
    fprintf(f, "usage: q35lab model <subcommand> [options]   (--help after one for its options)\n");
    for (int i = 0; i < N_MODEL_CMDS; i++)
        fprintf(f, "  %-8s %s\n", model_cmds[i].name, model_cmds[i].summary);
}

int cmd_model(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (int i = 0; i < N_MODEL_CMDS; i++)
        if (!strcmp(argv[1], model_cmds[i].name))
            return model_cmds[i].run(argc - 1, argv + 1);
    fprintf(stderr, "q35lab: model: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
