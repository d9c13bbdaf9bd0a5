/* q35lab model: whole-model commands.  Subcommands are rows of model_cmds[];
 * each takes (argc, argv) with argv[0] = its own name. */
#include "model/config.h"
#include "model/init.h"
#include "model/model.h"
#include "model/presets.h"
#include "model/shard.h"
#include "cli/cli_args.h"
#include "cli/commands.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void init_usage(char *buf, size_t n)
{
    size_t len = (size_t)snprintf(buf, n,
            "usage: q35lab model init --preset NAME --out DIR [--seed S] [--dtype bf16|f32]\n"
            "                         [--layers N] [--experts fused|per-expert] [--force]\n"
            "                         [--threads N] [--embed-std X]\n"
            "Writes DIR/config.json (nested Hugging Face Qwen3.5 form) and DIR/model.safetensors\n"
            "with random weights (docs/model-init.md).  The same seed gives the same bytes.\n"
            "The synthetic (tiny) presets also get DIR/tokenizer.json, a small byte-level BPE of their\n"
            "vocabulary, so generate --prompt \"text\" works on them (docs/text.md).\n"
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
    for (int i = 0; i < q35_n_presets && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "  %-18s %s%s%s\n", q35_presets[i].name, q35_presets[i].summary,
                                q35_presets[i].hf_repo ? ", shapes of " : "",
                                q35_presets[i].hf_repo ? q35_presets[i].hf_repo : "");
}

static int model_init(int argc, char **argv)
{
    q35_init_opts o = {.seed = 1, .dtype = ST_BF16, .experts = Q35_EXPERTS_FUSED,
                       .progress = stderr};
    const char *out = NULL, *dtype = NULL, *experts = NULL;
    const cli_opt opts[] = {
        OPT_FLAG("--force", &o.force),     OPT_STR("--preset", &o.preset),  OPT_STR("--out", &out),
        OPT_U64("--seed", &o.seed),        OPT_STR("--dtype", &dtype),      OPT_STR("--experts", &experts),
        OPT_INT("--layers", &o.layers, 1, Q35_MAX_LAYERS),
        OPT_INT("--threads", &o.threads, 1, 1024),
        OPT_DOUBLE("--embed-std", &o.embed_std, 0.0, 1e6), /* 0: the default */
        CLI_END};
    char usage[4096];
    init_usage(usage, sizeof usage);
    const int pr = cli_parse("model init", usage, opts, argc, argv, 2);
    if (pr) return CLI_EXIT(pr);
    if (dtype) {
        if (!strcmp(dtype, "bf16") || !strcmp(dtype, "bfloat16")) o.dtype = ST_BF16;
        else if (!strcmp(dtype, "f32") || !strcmp(dtype, "float32")) o.dtype = ST_F32;
        else {
            fprintf(stderr, "q35lab: --dtype must be bf16 or f32, got '%s'\n", dtype);
            return 2;
        }
    }
    if (experts) {
        if (!strcmp(experts, "fused")) o.experts = Q35_EXPERTS_FUSED;
        else if (!strcmp(experts, "per-expert")) o.experts = Q35_EXPERTS_PER_EXPERT;
        else {
            fprintf(stderr, "q35lab: --experts must be fused or per-expert, got '%s'\n", experts);
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

static const char usage_cost[] =
    "usage: q35lab model cost --preset NAME | --model DIR [--dtype bf16|f32] [--ranks 1,2,4,8]\n"
    "                         [--rank-gbs R] [--link-us A] [--link-gbs B]\n"
    "What one decode token costs a tensor-parallel rank (docs/tp.md): the weight bytes it reads\n"
    "(its slice: heads, intermediate rows, vocabulary; MoE experts split tp-style), the all-reduces\n"
    "(two per layer, one for the embedding, one for the greedy token) and their bytes; and, given R, A\n"
    "and B, a projection: compute = bytes / R (decode reads its weights at the rank's bandwidth R GB/s),\n"
    "communication = all-reduces x ceil(log2 N) x (A us + bytes / B GB/s) (recursive doubling over a\n"
    "link of latency A and bandwidth B), tokens/s = 1 / (compute + communication).  A projection from\n"
    "measured inputs and that model, not a measurement.\n";

/* The decode token of a config spread over N ranks, and its projection. */
static int model_cost(int argc, char **argv)
{
    const char *preset = NULL, *dir = NULL, *dtype = "bf16";
    int ranks[8] = {1, 2, 4, 8}, nranks = 4;
    double rank_gbs = 0, link_us = 0, link_gbs = 0;
    const cli_opt opts[] = {
        OPT_STR("--preset", &preset), OPT_STR("--model", &dir), OPT_STR("--dtype", &dtype),
        OPT_INTS("--ranks", ranks, 1, 4096, &nranks, 8), OPT_DOUBLE("--rank-gbs", &rank_gbs, 0.0, 1e6),
        OPT_DOUBLE("--link-us", &link_us, 0.0, 1e9), OPT_DOUBLE("--link-gbs", &link_gbs, 0.0, 1e6), CLI_END};
    const int pr = cli_parse("model cost", usage_cost, opts, argc, argv, 2);
    if (pr) return CLI_EXIT(pr);
    q35_config c;
    char err[512];
    if (!!preset == !!dir) {
        fprintf(stderr, "q35lab: model cost needs one of --preset NAME and --model DIR\n");
        return 2;
    }
    if (preset) {
        const q35_preset *p = q35_preset_find(preset);
        if (!p || q35_preset_config(p, 0, &c, err, sizeof err)) {
            char names[512];
            q35_preset_names(names, sizeof names);
            fprintf(stderr, "q35lab: unknown preset '%s'; valid presets: %s\n", preset, names);
            return 2;
        }
    } else if (q35_config_load(dir, &c, err, sizeof err)) {
        fprintf(stderr, "q35lab: %s\n", err);
        return 2;
    }
    const q35_wtype wt = !strcmp(dtype, "f32") ? WT_F32 : WT_BF16;
    const int colls = 2 * c.num_hidden_layers + 2;
    const double coll_bytes = 4.0 * c.hidden_size;
    printf("model cost: %s, %d layers, hidden %d, %s weights: per decode token %d all-reduces of %.0f bytes\n",
           preset ? preset : dir, c.num_hidden_layers, c.hidden_size, dtype, colls, coll_bytes);
    printf("  %5s %16s %14s %18s %12s\n", "ranks", "MiB/rank/token", "compute ms", "comm ms (share)", "tokens/s");
    for (int i = 0; i < nranks; i++) {
        q35_shard sh;
        q35_config local;
        if (q35_shard_plan(&c, 0, ranks[i], Q35_MOE_SHARD_TP, 0, &sh, &local, err, sizeof err)) {
            printf("  %5d  %s\n", ranks[i], err);
            continue;
        }
        const double bytes = q35_config_decode_bytes(&local, sh.vocab_n, wt);
        int steps = 0;
        while ((1 << steps) < ranks[i]) steps++;
        const double compute = rank_gbs > 0 ? bytes / (rank_gbs * 1e9) : NAN;
        const double comm = link_gbs > 0 ? colls * steps * (link_us * 1e-6 + coll_bytes / (link_gbs * 1e9)) : 0.0;
        char cs[32] = "-", ms[32] = "-", ts[32] = "-";
        if (rank_gbs > 0) snprintf(cs, sizeof cs, "%.2f", compute * 1e3);
        if (link_gbs > 0) snprintf(ms, sizeof ms, "%.3f (%.1f%%)", comm * 1e3, 100.0 * comm / (compute + comm));
        if (rank_gbs > 0 && link_gbs > 0) snprintf(ts, sizeof ts, "%.2f", 1.0 / (compute + comm));
        printf("  %5d %16.1f %14s %18s %12s\n", ranks[i], bytes / 1048576.0, cs, ranks[i] > 1 ? ms : "0", ts);
    }
    return 0;
}

static const char usage_model[] =
    "usage: q35lab model init|cost [options]   (q35lab model init --help, model cost --help)\n"
    "  init     write a random-weight checkpoint of a preset shape\n"
    "  cost     what a decode token reads and sends per rank of a tensor-parallel run, and its projection\n";

int cmd_model(int argc, char **argv, const q35_comm *comm)
{
    if (cli_one_process(comm, "model init")) return 2;
    static const char *const names[] = {"init", "cost"};
    int status;
    switch (cli_subcommand("model", usage_model, names, 2, argc, argv, &status)) {
    case 0: return model_init(argc, argv);
    case 1: return model_cost(argc, argv);
    default: return status;
    }
}
