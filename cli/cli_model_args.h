/* cli_model_args.h - the options generate, validate and bench model share,
 * and opening the model they name. */
#ifndef Q35_CLI_MODEL_ARGS_H
#define Q35_CLI_MODEL_ARGS_H

#include "model/model.h"

typedef struct {
    const char *dir;       /* --model */
    int threads;           /* --threads (0: OpenMP default) */
    q35_load_opts load;    /* --mmap, --f32 */
    const char *impl;      /* --impl */
    const char *prompts;   /* --prompt-ids */
} model_args;

/* If argv[*i] is one of the shared options, consumes it (and its value):
 * returns 1; 0 if it is not one; -1 after printing an error. */
int model_args_take(int argc, char **argv, int *i, model_args *a);
/* Help lines for the shared options. */
extern const char model_args_help[];
/* Loads a->dir (error printed, -1) and prints a one-line summary to stderr. */
int model_args_open(const model_args *a, q35_model *m);

#endif
