/* model.h - a Qwen3.5 text decoder in memory: its config and its weights.
 *
 * q35_model_load reads a Hugging Face folder (model/config.h, model/weights.h),
 * checks every tensor the config implies (name, rank, shape, dtype) before it
 * allocates or computes anything, then copies the weights into one allocation
 * advised for transparent huge pages.  Matrices keep the checkpoint's dtype
 * when it is BF16 (decode is bandwidth-bound; kernels widen per tile) and are
 * F32 otherwise (F16 widened exactly at load); vectors (norms, conv weights,
 * A_log, dt_bias) are always F32.  With opts.mmap the matrices whose stored
 * dtype is already the in-memory one point into the read-only file maps
 * instead (for models larger than memory).  The semantics: docs/model.md.
 */
#ifndef Q35LAB_MODEL_MODEL_H
#define Q35LAB_MODEL_MODEL_H

#include "common/comm.h"
#include "kernels/matmul/matmul.h"
#include "model/config.h"
#include "model/shard.h"
#include "model/weights.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const float *input_norm, *post_norm;   /* [H], zero-centred: x * (1 + w) */

    /* Gated DeltaNet (config layer type linear_attention) */
    const void *in_proj_qkv;   /* [2*Hk*Dk + Hv*Dv, H]: q of every key head, then k, then v */
    const void *in_proj_z;     /* [Hv*Dv, H] */
    const void *in_proj_b;     /* [Hv, H] */
    const void *in_proj_a;     /* [Hv, H] */
    const void *out_proj;      /* [H, Hv*Dv] */
    const float *conv_w;       /* [C, K] (conv1d.weight [C, 1, K]) */
    const float *dt_bias, *A_log; /* [Hv] */
    const float *gnorm;        /* [Dv], the gated norm: x * w * silu(z) */

    /* gated full attention (full_attention) */
    const void *q_proj;        /* [2*nh*hd, H]: per head hd query rows, then hd gate rows */
    const void *k_proj, *v_proj; /* [nkv*hd, H] */
    const void *o_proj;        /* [H, nh*hd] */
    const float *q_norm, *k_norm; /* [hd], zero-centred */

    /* dense SwiGLU MLP */
    const void *gate_proj, *up_proj; /* [I, H] */
    const void *down_proj;     /* [H, I] */

    /* sparse MoE (model.moe): experts held fused as [E, 2I, H] (gate rows, then up rows) */
    const void *router;        /* [E, H] */
    const void *experts_gate_up; /* [E, 2I, H] */
    const void *experts_down;  /* [E, H, I] */
    const void *shared_gate, *shared_up; /* [Is, H] */
    const void *shared_down;   /* [H, Is] */
    const void *shared_expert_gate; /* [1, H] */
} q35_layer;

/* The families of matrices `--weights q8|q4 --quant-only` names (docs/quantization.md §5).  The
 * MTP head's layer counts in its families; its fc and the embedding table are never quantized. */
typedef enum {
    Q35_WF_DELTANET = 0, /* in_proj_qkv, in_proj_z, in_proj_b, in_proj_a, out_proj */
    Q35_WF_ATTENTION,    /* q_proj, k_proj, v_proj, o_proj */
    Q35_WF_MLP,          /* dense gate_proj, up_proj, down_proj */
    Q35_WF_MOE,          /* the experts and the shared expert (never the router nor the shared-expert gate) */
    Q35_WF_LM_HEAD,      /* lm_head (a copy when tied: the embedding stays) */
    Q35_WF_COUNT
} q35_wfamily;

typedef struct {
    int mmap;        /* 1: matrices point into the file maps where the dtype allows */
    int force_f32;   /* 1: widen BF16 matrices to F32 in memory */
    /* Tensor parallelism (docs/tp.md): the run's ranks (NULL: one process);
     * each loads only its slice (model/shard.h). */
    const q35_comm *comm;
    q35_moe_shard moe_shard;
    int shard_mutant;  /* Q35_SHARD_MUTANT_*: wrong splits kept for tests/tp_test.sh; 0 */
    /* Quantize at load (docs/quantization.md): quant WT_Q8_0 or WT_Q4_0 (WT_F32 / WT_BF16: no),
     * the families of quant_families (bit 1 << q35_wfamily; 0: every family).  A family whose
     * matrices are not all rows of whole 32-weight blocks stays in the checkpoint's type.
     * WT_Q8_0_R16 / WT_Q4_0_R16: the same blocks, and the families that allow it stored with 16
     * rows interleaved (§8: every matrix's rows a multiple of 16; moe also each expert's
     * intermediate size and the hidden size, so every expert starts on a group); the others in the
     * row layout. */
    q35_wtype quant;
    unsigned quant_families;
} q35_load_opts;

typedef struct {
    q35_config cfg;        /* the checkpoint's */
    q35_config local;      /* the sizes this rank holds (== cfg in one process; model/shard.h) */
    q35_shard sh;          /* where its slices start */
    const q35_comm *comm;  /* the ranks the model is spread over (one process: size 1) */
    q35_wtype wt;          /* dtype of every matrix in memory, except the quantized families: */
    q35_wtype qwt;         /* WT_Q8_0 / WT_Q4_0 of the families in qfamilies (q35_model_wt) */
    unsigned qfamilies;    /* bit 1 << q35_wfamily: quantized at load (0: none) */
    unsigned qr16;         /* of those, the families stored interleaved (q35_wtype_r16(qwt)) */
    size_t qr16_bytes;     /* they are the first qr16_bytes of qarena */
    const char *disk_dtype;/* "BF16", "F16", "F32" or "mixed" */
    q35_layer *layers;     /* [num_hidden_layers] */
    const void *embed;     /* [V, H] */
    const void *lm_head;   /* [V, H]; == embed when tied */
    const float *final_norm; /* [H] */
    /* The MTP head (docs/mtp.md); present = 0 when the checkpoint has no mtp.* */
    struct { int present; q35_layer layer; const float *pre_fc_norm_embedding, *pre_fc_norm_hidden, *norm; const void *fc; /* [H, 2H] */ } mtp;

    /* ownership */
    void *arena;  size_t arena_bytes; /* huge-page allocation holding the copies */
    void *qarena; size_t qarena_bytes; /* the quantized matrices */
    q35_weights files;     /* kept open while anything points into the maps */
    int files_open;
    size_t weight_bytes;   /* bytes of every matrix and vector as held (this rank's slice) */
    size_t mapped_bytes;   /* of which read from the maps in place (opts.mmap) */
} q35_model;

/* 0 on success; -1 with a one-line message (naming the tensor and the
 * expected shape where a tensor is at fault).  On failure *m is zeroed.
 * With opts->comm of several ranks, each loads its slice and all agree at
 * the end: -2 on a rank that loaded when another could not. */
int q35_model_load(const char *dir, const q35_load_opts *opts, q35_model *m, char *err, size_t errlen);
void q35_model_free(q35_model *m);

/* The dtype of a family's matrices in memory. */
static inline q35_wtype q35_model_wt(const q35_model *m, q35_wfamily f)
{
    return (m->qr16 >> f) & 1u ? q35_wtype_r16(m->qwt) : (m->qfamilies >> f) & 1u ? m->qwt : m->wt;
}
/* The dtype of the matrix at ptr (a quantized copy lives in qarena). */
static inline q35_wtype q35_model_matrix_wt(const q35_model *m, const void *ptr)
{
    const char *p = ptr, *a = m->qarena;
    return !a || p < a || p >= a + m->qarena_bytes ? m->wt : p < a + m->qr16_bytes ? q35_wtype_r16(m->qwt) : m->qwt;
}
/* model/quantize.c: quantize the families of mask (0: all) to wt after loading (an interleaved wt:
 * its block type, interleaved where the family allows, as q35_load_opts.quant says); 0 or -1 with a
 * message.  Called by q35_model_load when opts->quant is a quantized type. */
int q35_model_quantize(q35_model *m, q35_wtype wt, unsigned mask, char *err, size_t errlen);
/* "deltanet,attention,mlp,moe,lm_head" (or "all") to a mask; 0 or -1 with a message. */
int q35_wfamily_parse(const char *list, unsigned *mask, char *err, size_t errlen);
const char *q35_wfamily_name(q35_wfamily f);

/* Derived sizes. */
static inline int q35_conv_channels(const q35_config *c)
{
    return 2 * c->linear_num_key_heads * c->linear_key_head_dim + c->linear_num_value_heads * c->linear_value_head_dim;
}

/* Weight bytes one decode step reads (every matrix once, the MoE experts
 * counted as top_k of E), for the bandwidth bound of docs/model.md. */
size_t q35_model_decode_bytes(const q35_model *m);
/* The same for a config and a weight dtype, with lm_head's rows given: the
 * local config and vocabulary slice of a tensor-parallel rank (model/shard.h)
 * give what one rank reads. */
double q35_config_decode_bytes(const q35_config *c, int vocab_rows, q35_wtype wt);
/* Bytes of state and cache a decode step (B = 1) reads besides the weights at `past` positions:
 * DeltaNet recurrent and conv states, attention K/V rows (docs/quantization.md §7). */
double q35_config_decode_state_bytes(const q35_config *c, int past);
/* Useful flops of T new tokens after `past` cached positions, logits for the
 * last one only (docs/model.md §6). */
double q35_model_flops(const q35_model *m, int past, int T);

#endif
