/* shard.h - which slice of the model one rank of a tensor-parallel run holds
 * (docs/tp.md has the table tensor -> split axis -> rank slice).
 *
 * The slice is described two ways: the first global index of each split
 * dimension (q35_shard), and a config whose head counts and intermediate
 * sizes are the slice's (the "local" config): the forward pass and the
 * states read their sizes from the local config and so run unchanged on a
 * slice; the kernels only ever see the slice's head counts.  In one process
 * the slice is the whole model and the local config equals the checkpoint's.
 */
#ifndef Q35LAB_MODEL_SHARD_H
#define Q35LAB_MODEL_SHARD_H

#include "model/config.h"

#include <stddef.h>

/* How the MoE experts are split (--moe-shard). */
typedef enum {
    Q35_MOE_SHARD_TP = 0, /* every expert's intermediate dimension, and the shared expert's, over the ranks */
    Q35_MOE_SHARD_EP = 1, /* whole experts per rank; the shared expert's intermediate dimension over the ranks */
} q35_moe_shard;

typedef struct {
    int rank, ranks;
    q35_moe_shard moe;
    int k0, v0;           /* DeltaNet: first key head and first value head held */
    int h0, kv0;          /* full attention: first query head and first KV head held */
    int i0;               /* dense MLP: first intermediate row held */
    int mi0;              /* MoE tp: first row of every expert's intermediate dimension held */
    int e0, e1;           /* MoE: experts held [e0, e1) (tp: all) */
    int si0;              /* MoE: first row of the shared expert's intermediate dimension held */
    int vocab0, vocab_n;  /* embedding / lm_head rows held */
    /* Deliberately wrong splits, kept to prove the right ones necessary
     * (tests/tp_test.sh): 0 in every real run. */
    int mutant;
} q35_shard;

enum {
    Q35_SHARD_MUTANT_NONE = 0,
    Q35_SHARD_MUTANT_CONTIGUOUS_QKV,   /* in_proj_qkv / conv1d cut into N contiguous row blocks */
    Q35_SHARD_MUTANT_NO_KEY_HEADS,     /* value heads split, key heads taken as if Hk = Hv */
};

/* Rank `rank` of `ranks`: fills *sh and *local (a copy of c with the slice's
 * linear_num_key_heads, linear_num_value_heads, num_attention_heads,
 * num_key_value_heads, intermediate_size, moe_intermediate_size and
 * shared_expert_intermediate_size).  Heads must split evenly, or each rank's
 * heads must share one key / KV head, which is then held by every rank that
 * reads it; intermediate sizes, experts and the vocabulary may split
 * unevenly (their slices are summed or gathered).  -1 with a message naming
 * the tensor and the counts otherwise. */
int q35_shard_plan(const q35_config *c, int rank, int ranks, q35_moe_shard moe, int mutant, q35_shard *sh,
                   q35_config *local, char *err, size_t errlen);

/* The part [lo, hi) of n items rank r of R holds: lo = r n / R. */
static inline int q35_shard_lo(int n, int r, int R) { return (int)((long long)n * r / R); }

/* "tp" / "ep" and back (-1 if neither). */
const char *q35_moe_shard_name(q35_moe_shard m);
int q35_moe_shard_parse(const char *s);

#endif
