/* cli_model_args.c - options shared by the model commands (cli_model_args.h). */
#include "cli/cli_model_args.h"
#include "cli/cli.h"

#include "common/clock.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

const char model_args_help[] =
    "  --model DIR        Hugging Face Qwen3.5 folder (config.json + model.safetensors[.index.json])\n"
    "  --impl SPEC        default | ref | FAMILY=NAME,... (families: linear conv deltarule attention moe)\n"
    "  --prompt-ids IDS   token ids, comma-separated; several prompts separated by ';'\n"
    "  --threads N        OpenMP threads (default: all)\n"
    "  --mmap             keep matrices in the file maps where possible (models larger than memory)\n"
    "  --f32              hold BF16 weights as F32 in memory\n";

int model_args_take(int argc, char **argv, int *i, model_args *a)
{
    const char *o = argv[*i];
    const char **str = !strcmp(o, "--model") ? &a->dir : !strcmp(o, "--impl") ? &a->impl
                       : !strcmp(o, "--prompt-ids") ? &a->prompts : NULL;
    if (str) return (*str = cli_value(argc, argv, i)) ? 1 : -1;
    if (!strcmp(o, "--threads")) {
        const char *v = cli_value(argc, argv, i);
        if (!v || cli_int("--threads", v, 1, 1024, &a->threads)) return -1;
        omp_set_num_threads(a->threads);
        return 1;
    }
    if (!strcmp(o, "--mmap")) { a->load.mmap = 1; return 1; }
    if (!strcmp(o, "--f32")) { a->load.force_f32 = 1; return 1; }
    return 0;
}

int model_args_open(const model_args *a, q35_model *m)
{
    char err[512];
    if (!a->dir) { fprintf(stderr, "error: --model DIR is required\n"); return -1; }
    const double t0 = q35_now();
    if (q35_model_load(a->dir, &a->load, m, err, sizeof err)) {
        fprintf(stderr, "error: %s\n", err);
        return -1;
    }
    const q35_config *c = &m->cfg;
    fprintf(stderr, "model: %s: %s, %d layers (%d linear, %d full), hidden %d, vocab %d%s; %s on disk, %s in memory "
            "(%.1f MiB%s), loaded in %.2f s\n", a->dir, c->model_type, c->num_hidden_layers, c->n_linear_layers,
            c->n_full_layers, c->hidden_size, c->vocab_size, c->tie_word_embeddings ? ", tied lm_head" : "",
            m->disk_dtype, m->wt == WT_BF16 ? "BF16" : "F32", m->weight_bytes / 1048576.0,
            m->mapped_bytes ? ", part mmapped" : "", q35_now() - t0);
    return 0;
}
