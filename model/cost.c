/* cost.c - the work a forward call does, for benchmarks (docs/model.md §6). */
#include "model/model.h"

/* Matrix elements one token multiplies in layer i (every matrix once; of the
 * MoE experts the top_k used). */
static double layer_matrix_elems(const q35_config *c, int i)
{
    const double H = c->hidden_size;
    double e;
    if (c->layer_types[i] == Q35_LAYER_LINEAR) {
        const double kd = (double)c->linear_num_key_heads * c->linear_key_head_dim;
        const double vd = (double)c->linear_num_value_heads * c->linear_value_head_dim;
        e = (2 * kd + vd + vd + 2.0 * c->linear_num_value_heads) * H + H * vd;
    } else {
        const double qd = (double)c->num_attention_heads * c->head_dim;
        const double kvd = (double)c->num_key_value_heads * c->head_dim;
        e = (2 * qd + 2 * kvd) * H + H * qd;
    }
    if (c->is_moe)
        e += ((double)c->num_experts + 3.0 * c->num_experts_per_tok * c->moe_intermediate_size +
              3.0 * c->shared_expert_intermediate_size + 1) * H;
    else
        e += 3.0 * c->intermediate_size * H;
    return e;
}

double q35_config_decode_bytes(const q35_config *c, int vocab_rows, q35_wtype wt)
{
    double e = (double)vocab_rows * c->hidden_size; /* lm_head (the embedding table when tied) */
    for (int i = 0; i < c->num_hidden_layers; i++) e += layer_matrix_elems(c, i);
    return (double)q35_wtype_bytes(wt, (size_t)e);
}

/* Bytes of e elements of dtype wt, whole blocks counted fractionally (e is a sum over matrices
 * whose rows are whole blocks when quantized). */
static double bytes_of(q35_wtype wt, double e)
{
    return q35_wtype_is_quant(wt) ? e / Q35_QBLOCK * (double)q35_wtype_bytes(wt, Q35_QBLOCK) : e * (double)q35_wtype_bytes(wt, 1);
}

/* Bytes a decode step (B = 1) reads besides the weights at `past` positions of context: each
 * DeltaNet layer's recurrent state (Hv x Dk x Dv floats) and conv state ((kernel - 1) x the conv's
 * channels), each attention layer's K and V cache rows (2 x kv heads x head_dim floats per
 * position).  The DeltaNet and conv states are written back as well; that traffic is not counted.
 * At 0.8B and 500 positions this is ~32 MiB, 8% of a Q4_0 step's weights (docs/quantization.md §7). */
double q35_config_decode_state_bytes(const q35_config *c, int past)
{
    double e = 0;
    for (int i = 0; i < c->num_hidden_layers; i++) {
        if (c->layer_types[i] == Q35_LAYER_LINEAR) {
            const double kd = (double)c->linear_num_key_heads * c->linear_key_head_dim;
            const double vd = (double)c->linear_num_value_heads * c->linear_value_head_dim;
            e += (double)c->linear_num_value_heads * c->linear_key_head_dim * c->linear_value_head_dim +
                 (c->linear_conv_kernel_dim - 1.0) * (2 * kd + vd);
        } else {
            e += 2.0 * c->num_key_value_heads * c->head_dim * past;
        }
    }
    return e * sizeof(float);
}

size_t q35_model_decode_bytes(const q35_model *m)
{
    if (!m->qfamilies) return (size_t)q35_config_decode_bytes(&m->cfg, m->cfg.vocab_size, m->wt);
    /* quantized families (docs/quantization.md): each part of layer_matrix_elems at its own dtype */
    const q35_config *c = &m->cfg;
    const double H = c->hidden_size;
    double b = bytes_of(q35_model_wt(m, Q35_WF_LM_HEAD), (double)c->vocab_size * H);
    for (int i = 0; i < c->num_hidden_layers; i++) {
        if (c->layer_types[i] == Q35_LAYER_LINEAR) {
            const double kd = (double)c->linear_num_key_heads * c->linear_key_head_dim;
            const double vd = (double)c->linear_num_value_heads * c->linear_value_head_dim;
            b += bytes_of(q35_model_wt(m, Q35_WF_DELTANET), (2 * kd + vd + vd + 2.0 * c->linear_num_value_heads) * H + H * vd);
        } else {
            const double qd = (double)c->num_attention_heads * c->head_dim;
            const double kvd = (double)c->num_key_value_heads * c->head_dim;
            b += bytes_of(q35_model_wt(m, Q35_WF_ATTENTION), (2 * qd + 2 * kvd) * H + H * qd);
        }
        if (c->is_moe) /* the router and the shared-expert gate stay in the checkpoint's dtype (model/quantize.c) */
            b += bytes_of(q35_model_wt(m, Q35_WF_MOE), (3.0 * c->num_experts_per_tok * c->moe_intermediate_size +
                                                        3.0 * c->shared_expert_intermediate_size) * H) +
                 bytes_of(m->wt, ((double)c->num_experts + 1) * H);
        else
            b += bytes_of(q35_model_wt(m, Q35_WF_MLP), 3.0 * c->intermediate_size * H);
    }
    return (size_t)b;
}

double q35_model_flops(const q35_model *m, int past, int T)
{
    const q35_config *c = &m->cfg;
    double f = 2.0 * c->vocab_size * c->hidden_size; /* lm_head, last token */
    for (int i = 0; i < c->num_hidden_layers; i++) {
        f += 2.0 * layer_matrix_elems(c, i) * T;
        if (c->layer_types[i] == Q35_LAYER_LINEAR) {
            /* conv (2K per channel) and the recurrent-form delta rule (6 Dk Dv per head) */
            const double C = 2.0 * c->linear_num_key_heads * c->linear_key_head_dim +
                             (double)c->linear_num_value_heads * c->linear_value_head_dim;
            f += T * (2.0 * c->linear_conv_kernel_dim * C +
                      6.0 * c->linear_num_value_heads * c->linear_key_head_dim * c->linear_value_head_dim);
        } else {
            /* 4 hd per (head, attended position); token t attends past + t + 1 positions */
            const double ctx = (double)T * past + (double)T * (T + 1) / 2;
            f += 4.0 * c->head_dim * c->num_attention_heads * ctx;
        }
    }
    return f;
}
