/* cli_model_args.c - options shared by the model commands (cli_model_args.h). */
#include "cli/cli_model_args.h"

#include "common/clock.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

int model_args_open(const model_args *a, q35_model *m)
{
    char err[512];
    if (!a->dir) { fprintf(stderr, "error: --model DIR is required\n"); return -1; }
    if (a->threads) omp_set_num_threads(a->threads);
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
