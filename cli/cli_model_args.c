/* cli_model_args.c - options shared by the model commands (cli_model_args.h). */
#include "cli/cli_model_args.h"

#include "common/clock.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

int model_args_check(model_args *a, const q35_comm *comm)
{
    if (a->moe_shard && (a->load.moe_shard = q35_moe_shard_parse(a->moe_shard)) < 0) {
        if (comm->rank == 0) fprintf(stderr, "error: --moe-shard must be tp or ep, got '%s'\n", a->moe_shard);
        return -1;
    }
    if (a->tp_mutant) {
        a->load.shard_mutant = !strcmp(a->tp_mutant, "contiguous-qkv") ? Q35_SHARD_MUTANT_CONTIGUOUS_QKV
                               : !strcmp(a->tp_mutant, "no-key-heads") ? Q35_SHARD_MUTANT_NO_KEY_HEADS : -1;
        if (a->load.shard_mutant < 0) {
            if (comm->rank == 0)
                fprintf(stderr, "error: --tp-mutant must be contiguous-qkv or no-key-heads, got '%s'\n", a->tp_mutant);
            return -1;
        }
    }
    a->load.comm = comm;
    return 0;
}

int model_args_open(const model_args *a, q35_model *m)
{
    char err[512];
    const q35_comm *comm = a->load.comm;
    if (!a->dir) {
        if (comm->rank == 0) fprintf(stderr, "error: --model DIR is required\n");
        return -1;
    }
    if (a->threads) omp_set_num_threads(a->threads);
    const double t0 = q35_now();
    const int rc = q35_model_load(a->dir, &a->load, m, err, sizeof err);
    if (rc == -1 || (rc && comm->rank == 0)) { /* a rank that failed says why; rank 0 says that one did */
        if (comm->size > 1) fprintf(stderr, "error: rank %d of %d: %s\n", comm->rank, comm->size, err);
        else fprintf(stderr, "error: %s\n", err);
    }
    if (rc) return -1;
    const q35_config *c = &m->cfg;
    if (comm->rank == 0)
        fprintf(stderr, "model: %s: %s, %d layers (%d linear, %d full), hidden %d, vocab %d%s; %s on disk, %s in memory "
                "(%.1f MiB%s%s), loaded in %.2f s\n", a->dir, c->model_type, c->num_hidden_layers, c->n_linear_layers,
                c->n_full_layers, c->hidden_size, c->vocab_size, c->tie_word_embeddings ? ", tied lm_head" : "",
                m->disk_dtype, m->wt == WT_BF16 ? "BF16" : "F32", m->weight_bytes / 1048576.0,
                m->mapped_bytes ? ", part mmapped" : "", comm->size > 1 ? " on rank 0" : "", q35_now() - t0);
    return 0;
}
