/* shard.c - the slice of the model each rank holds (shard.h, docs/tp.md). */
#include "model/shard.h"

#include "common/errmsg.h"

#include <string.h>

const char *q35_moe_shard_name(q35_moe_shard m) { return m == Q35_MOE_SHARD_EP ? "ep" : "tp"; }

int q35_moe_shard_parse(const char *s)
{
    return !strcmp(s, "tp") ? Q35_MOE_SHARD_TP : !strcmp(s, "ep") ? Q35_MOE_SHARD_EP : -1;
}

/* Query (or value) heads nq of nq_all over the ranks, with the key (or KV)
 * heads they read.  Head h reads key head h / g, g = nq_all / nk_all (the
 * interleaved GQA mapping of docs/model.md).  Either the key heads split
 * too (ranks <= nk_all, dividing it), and then each rank's query heads read
 * exactly its key heads; or several ranks share one key head (ranks a
 * multiple of nk_all), and each holds a copy of it. */
static int split_heads(int nq_all, int nk_all, int rank, int ranks, int *q0, int *nq, int *k0, int *nk,
                       const char *tensor, const char *qname, const char *kname, char *err, size_t errlen)
{
    if (nq_all % ranks) {
        q35_errmsg(err, errlen, "%s: %d %s do not split over %d ranks", tensor, nq_all, qname, ranks);
        return -1;
    }
    *nq = nq_all / ranks;
    *q0 = rank * *nq;
    if (ranks <= nk_all) {
        if (nk_all % ranks) {
            q35_errmsg(err, errlen, "%s: %d %s do not split over %d ranks", tensor, nk_all, kname, ranks);
            return -1;
        }
        *nk = nk_all / ranks;
        *k0 = rank * *nk;
    } else {
        if (ranks % nk_all) {
            q35_errmsg(err, errlen, "%s: %d %s neither split over %d ranks nor go to a whole number of ranks each",
                       tensor, nk_all, kname, ranks);
            return -1;
        }
        *nk = 1;
        *k0 = *q0 / (nq_all / nk_all);
    }
    return 0;
}

int q35_shard_plan(const q35_config *c, int rank, int ranks, q35_moe_shard moe, int mutant, q35_shard *sh,
                   q35_config *local, char *err, size_t errlen)
{
    memset(sh, 0, sizeof *sh);
    *local = *c;
    if (ranks < 1 || rank < 0 || rank >= ranks) {
        q35_errmsg(err, errlen, "shard: rank %d of %d", rank, ranks);
        return -1;
    }
    sh->rank = rank;
    sh->ranks = ranks;
    sh->moe = moe;
    sh->mutant = mutant;
    int n_lin = 0, n_full = 0;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        n_lin += c->layer_types[l] == Q35_LAYER_LINEAR;
        n_full += c->layer_types[l] == Q35_LAYER_FULL;
    }
    if (n_lin && split_heads(c->linear_num_value_heads, c->linear_num_key_heads, rank, ranks, &sh->v0,
                             &local->linear_num_value_heads, &sh->k0, &local->linear_num_key_heads,
                             "layers.*.linear_attn.in_proj_qkv.weight", "value heads (linear_num_value_heads)",
                             "key heads (linear_num_key_heads)", err, errlen))
        return -1;
    if (n_full && split_heads(c->num_attention_heads, c->num_key_value_heads, rank, ranks, &sh->h0,
                              &local->num_attention_heads, &sh->kv0, &local->num_key_value_heads,
                              "layers.*.self_attn.q_proj.weight", "query heads (num_attention_heads)",
                              "KV heads (num_key_value_heads)", err, errlen))
        return -1;
    if (mutant == Q35_SHARD_MUTANT_NO_KEY_HEADS) sh->k0 = 0;

    /* The intermediate dimensions are summed after the down projection: any
     * split works, so uneven ones are allowed (each rank at least one row). */
    const struct { const char *tensor, *field; int n; } sums[] = {
        {"layers.*.mlp.gate_proj.weight", "intermediate_size", c->is_moe ? 0 : c->intermediate_size},
        {"layers.*.mlp.experts.gate_up_proj", "moe_intermediate_size",
         c->is_moe && moe == Q35_MOE_SHARD_TP ? c->moe_intermediate_size : 0},
        {"layers.*.mlp.shared_expert.gate_proj.weight", "shared_expert_intermediate_size",
         c->is_moe ? c->shared_expert_intermediate_size : 0},
        {"layers.*.mlp.experts.gate_up_proj", "num_experts", c->is_moe && moe == Q35_MOE_SHARD_EP ? c->num_experts : 0},
        {"embed_tokens.weight", "vocab_size", c->vocab_size},
    };
    for (size_t i = 0; i < sizeof sums / sizeof sums[0]; i++)
        if (sums[i].n && sums[i].n < ranks) {
            q35_errmsg(err, errlen, "%s: %s %d is less than the %d ranks (each needs a part)", sums[i].tensor,
                       sums[i].field, sums[i].n, ranks);
            return -1;
        }
    if (!c->is_moe) {
        sh->i0 = q35_shard_lo(c->intermediate_size, rank, ranks);
        local->intermediate_size = q35_shard_lo(c->intermediate_size, rank + 1, ranks) - sh->i0;
    } else {
        sh->e0 = 0;
        sh->e1 = c->num_experts;
        if (moe == Q35_MOE_SHARD_TP) {
            sh->mi0 = q35_shard_lo(c->moe_intermediate_size, rank, ranks);
            local->moe_intermediate_size = q35_shard_lo(c->moe_intermediate_size, rank + 1, ranks) - sh->mi0;
        } else {
            sh->e0 = q35_shard_lo(c->num_experts, rank, ranks);
            sh->e1 = q35_shard_lo(c->num_experts, rank + 1, ranks);
        }
        if (c->shared_expert_intermediate_size) {
            sh->si0 = q35_shard_lo(c->shared_expert_intermediate_size, rank, ranks);
            local->shared_expert_intermediate_size =
                q35_shard_lo(c->shared_expert_intermediate_size, rank + 1, ranks) - sh->si0;
        }
    }
    sh->vocab0 = q35_shard_lo(c->vocab_size, rank, ranks);
    sh->vocab_n = q35_shard_lo(c->vocab_size, rank + 1, ranks) - sh->vocab0;
    return 0;
}
