/* cli_model_args.c - options shared by the model commands (cli_model_args.h). */
#include "cli/cli_model_args.h"

#include "common/clock.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

int model_quant_parse(const char *weights, const char *quant_only, const char *against, q35_load_opts *lo, int rank)
{
    if (against && (strcmp(against, "full") || !weights)) {
        if (rank == 0)
            fprintf(stderr, "error: --against takes 'full' and goes with --weights q8|q4, got '%s'%s\n", against,
                    weights ? "" : " without --weights");
        return -1;
    }
    if (!weights && !quant_only) return 0;
    char err[256];
    if (!weights) {
        if (rank == 0) fprintf(stderr, "error: --quant-only needs --weights q8|q4\n");
        return -1;
    }
    /* q8 / q4: interleaved rows where the family allows (docs/quantization.md §8); q8_0 / q4_0: ggml's
     * row layout everywhere (the same values: for A/B runs and byte-for-byte comparisons) */
    lo->quant = !strcmp(weights, "q8")     ? WT_Q8_0_R16
                : !strcmp(weights, "q4")   ? WT_Q4_0_R16
                : !strcmp(weights, "q8_0") ? WT_Q8_0
                : !strcmp(weights, "q4_0") ? WT_Q4_0
                                           : WT_F32;
    if (lo->quant == WT_F32) {
        if (rank == 0) fprintf(stderr, "error: --weights must be q8, q4, q8_0 or q4_0, got '%s'\n", weights);
        return -1;
    }
    if (quant_only && q35_wfamily_parse(quant_only, &lo->quant_families, err, sizeof err)) {
        if (rank == 0) fprintf(stderr, "error: --quant-only: %s\n", err);
        return -1;
    }
    return 0;
}

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
    if (model_quant_parse(a->weights, a->quant_only, a->against, &a->load, comm->rank)) return -1;
    a->load.comm = comm;
    return 0;
}

/* "q8_0: deltanet attention lm_head" or "" (the families quantized at load). */
static void quant_summary(const q35_model *m, char *buf, size_t n)
{
    buf[0] = 0;
    if (!m->qfamilies) return;
    size_t at = (size_t)snprintf(buf, n, "; %s:", q35_wtype_name(m->qwt));
    for (int f = 0; f < Q35_WF_COUNT && at < n; f++)
        if ((m->qfamilies >> f) & 1u)
            at += (size_t)snprintf(buf + at, n - at, " %s%s", q35_wfamily_name((q35_wfamily)f),
                                   (m->qr16 >> f) & 1u ? " (r16)" : "");
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
    char qs[128];
    quant_summary(m, qs, sizeof qs);
    if (a->load.quant && q35_wtype_block(a->load.quant) != m->qwt && comm->rank == 0)
        fprintf(stderr, "note: --weights %s: no selected family has rows of whole 32-weight blocks; nothing quantized\n",
                a->weights);
    if (comm->rank == 0)
        fprintf(stderr, "model: %s: %s, %d layers (%d linear, %d full), hidden %d, vocab %d%s; %s on disk, %s%s in memory "
                "(%.1f MiB%s%s), loaded in %.2f s\n", a->dir, c->model_type, c->num_hidden_layers, c->n_linear_layers,
                c->n_full_layers, c->hidden_size, c->vocab_size, c->tie_word_embeddings ? ", tied lm_head" : "",
                m->disk_dtype, m->wt == WT_BF16 ? "BF16" : "F32", qs, m->weight_bytes / 1048576.0,
                m->mapped_bytes ? ", part mmapped" : "", comm->size > 1 ? " on rank 0" : "", q35_now() - t0);
    return 0;
}
