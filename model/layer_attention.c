/* layer_attention.c - the gated full-attention sublayer (docs/model.md §3,
 * eqs. 8-10): per head, q and its gate from q_proj; zero-centred RMSNorm of
 * q and k per head; partial rotate-half RoPE at each token's position; new
 * keys and values into the KV cache; causal GQA softmax attention (the
 * attention family); output times sigmoid(gate); x += o_proj(.). */
#include "kernels/activation.h"
#include "model/forward_internal.h"

#include <stdlib.h>
#include <string.h>

int q35_layer_attention(const q35_fwd *f, const q35_layer *L, float *k_cache, float *v_cache, const float *xn, float *x)
{
    const q35_config *c = &f->m->local; /* this rank's heads (model/shard.h) */
    const int H = c->hidden_size, nh = c->num_attention_heads, nkv = c->num_key_value_heads, hd = c->head_dim;
    const int BT = f->BT, T = f->T, cap = f->s->capacity;
    const int threads = f->im->threads;

    const int rd = c->rotary_dim;
    /* each row's RoPE cos and sin (rd doubles, first: the scratch is page-aligned), then q|gate, k, v, q, gate, out */
    float *buf = q35_state_scratch(f->s, 1, (size_t)BT * (2 * rd + 2 * nh * hd + 2 * nkv * hd + 3 * nh * hd));
    /* positions before this call: q35_forward advances s->pos only after the last layer */
    const int32_t *past = f->s->pos;
    int rc = -1;
    if (!buf) { snprintf(f->err, f->errlen, "attention: out of memory"); goto out; }
    double *rope_cs = (double *)buf;
    float *qg = buf + (size_t)BT * 2 * rd, *kk = qg + (size_t)BT * 2 * nh * hd, *vv = kk + (size_t)BT * nkv * hd;
    float *q = vv + (size_t)BT * nkv * hd, *gate = q + (size_t)BT * nh * hd, *ao = gate + (size_t)BT * nh * hd;
    const q35_wtype wt = q35_model_wt(f->m, Q35_WF_ATTENTION);
    const linear_problem qkv[3] = {{.M = BT, .N = 2 * nh * hd, .K = H, .x = xn, .w = L->q_proj, .wt = wt, .y = qg},
                                   {.M = BT, .N = nkv * hd, .K = H, .x = xn, .w = L->k_proj, .wt = wt, .y = kk},
                                   {.M = BT, .N = nkv * hd, .K = H, .x = xn, .w = L->v_proj, .wt = wt, .y = vv}};
    if (q35_fwd_linear_shared(f, qkv, 3)) goto out;

    float *kc = k_cache, *vc = v_cache;
#pragma omp parallel for num_threads(threads > 0 ? threads : omp_get_max_threads()) schedule(static) if (BT > 1) /* one row: no fork */
    for (int r = 0; r < BT; r++) {
        const int b = r / T, t = r % T;
        if (t >= f->seq_len[b]) continue;
        const int pos = past[b] + t;
        double *cs = rope_cs + (size_t)r * rd;
        q35_rope_angles(rd, pos, c->rope_theta, cs);
        for (int h = 0; h < nh; h++) {
            float *qh = q + ((size_t)r * nh + h) * hd;
            q35_rmsnorm_centred(qg + ((size_t)r * nh + h) * 2 * hd, L->q_norm, hd, c->rms_norm_eps, qh);
            q35_rope(qh, rd, cs);
            memcpy(gate + ((size_t)r * nh + h) * hd, qg + ((size_t)r * nh + h) * 2 * hd + hd, (size_t)hd * sizeof(float));
        }
        for (int j = 0; j < nkv; j++) {
            const size_t at = (((size_t)b * nkv + j) * cap + pos) * hd;
            q35_rmsnorm_centred(kk + ((size_t)r * nkv + j) * hd, L->k_norm, hd, c->rms_norm_eps, kc + at);
            q35_rope(kc + at, rd, cs);
            memcpy(vc + at, vv + ((size_t)r * nkv + j) * hd, (size_t)hd * sizeof(float));
        }
    }

    attention_problem ap = {.B = f->B, .T = T, .Hq = nh, .Hkv = nkv, .D = hd, .L = cap, .q = q,
                            .k_cache = kc, .v_cache = vc, .past = past, .seq_len = f->seq_len, .out = ao};
    if (attention_run(f->im->attention, &ap, &(attention_opts){.threads = threads}, f->err, f->errlen)) goto out;

#pragma omp parallel for num_threads(threads > 0 ? threads : omp_get_max_threads()) schedule(static) if (BT > 1)
    for (int r = 0; r < BT; r++)
        q35_act_sigmoid_mul(ao + (size_t)r * nh * hd, gate + (size_t)r * nh * hd, (size_t)nh * hd);

    rc = q35_fwd_reduce_into(f, BT, H, nh * hd, ao, L->o_proj, wt, x);
out:
    return rc;
}
