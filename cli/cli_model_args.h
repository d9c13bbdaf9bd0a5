/* cli_model_args.h - the options generate and validate share, and opening
 * the model they name. */
#ifndef Q35_CLI_MODEL_ARGS_H
#define Q35_CLI_MODEL_ARGS_H

#include "model/model.h"
#include "cli/cli_args.h"

typedef struct {
    const char *dir;       /* --model */
    int threads;           /* --threads (0: OpenMP default) */
    q35_load_opts load;    /* --mmap, --f32 */
    const char *impl;      /* --impl */
    const char *prompts;   /* --prompt-ids */
    const char *moe_shard; /* --moe-shard tp|ep (tensor-parallel runs) */
    const char *tp_mutant; /* --tp-mutant: a wrong split, for tests/tp_test.sh only */
    const char *weights;   /* --weights q8|q4|q8_0|q4_0: quantize at load (docs/quantization.md) */
    const char *quant_only;/* --quant-only FAMILY,...: only these families */
    const char *against;   /* validate --against full: the reference path on the unquantized model */
} model_args;

/* The shared options as cli_opt entries, for a command's option table. */
#define MODEL_ARGS_OPTS(a)                                                                                         \
    OPT_STR("--model", &(a)->dir), OPT_STR("--impl", &(a)->impl), OPT_STR("--prompt-ids", &(a)->prompts),    \
        OPT_INT("--threads", &(a)->threads, 1, 1024), OPT_FLAG("--mmap", &(a)->load.mmap),                     \
        OPT_FLAG("--f32", &(a)->load.force_f32), OPT_STR("--moe-shard", &(a)->moe_shard),                     \
        OPT_STR("--tp-mutant", &(a)->tp_mutant), OPT_STR("--weights", &(a)->weights),                            \
        OPT_STR("--quant-only", &(a)->quant_only), OPT_STR("--against", &(a)->against)

/* Help lines for the shared options (a string literal, to end a usage text). */
#define MODEL_ARGS_HELP                                                                                            \
    "  --model DIR        Hugging Face Qwen3.5 folder (config.json + model.safetensors[.index.json])\n"             \
    "  --impl SPEC        default | ref | FAMILY=NAME,... (families: linear conv deltarule attention moe)\n"       \
    "  --prompt-ids IDS   token ids, comma-separated; several prompts separated by ';'\n"                          \
    "  --threads N        OpenMP threads (default: all)\n"                                                          \
    "  --mmap             keep matrices in the file maps where possible (models larger than memory)\n"             \
    "  --f32              hold BF16 weights as F32 in memory\n"                                                    \
    "  --moe-shard tp|ep  under mpirun: split every expert (tp, default) or give each rank whole experts (ep)\n"   \
    "  --weights q8|q4    quantize the matrices at load to Q8_0 / Q4_0, 16 rows interleaved where the family\n"   \
    "                     allows (docs/quantization.md §8); q8_0|q4_0: the same values in ggml's row layout\n"      \
    "  --quant-only LIST  with --weights: only these families (deltanet,attention,mlp,moe,lm_head; default all)\n"   \
    "  --against full     validate with --weights: the reference path runs on the unquantized weights, so token\n"  \
    "                     match and max|dlogit| measure the quantization's cost\n"
/* --weights W [--quant-only LIST] [--against A] into lo->quant / quant_families (any may be NULL):
 * 0, or -1 after a message on rank 0.  Shared with bench model. */
int model_quant_parse(const char *weights, const char *quant_only, const char *against, q35_load_opts *lo, int rank);
/* After parsing: checks --moe-shard and --tp-mutant and sets the run's
 * ranks; -1 after a message on rank 0. */
int model_args_check(model_args *a, const q35_comm *comm);
/* Sets the OpenMP threads, loads a->dir over the run's ranks (each its
 * slice; an error printed by the rank it concerns, -1 on every rank) and
 * prints a one-line summary to stderr on rank 0. */
int model_args_open(const model_args *a, q35_model *m);

#endif
