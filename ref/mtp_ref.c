/* mtp_ref.c - the MTP head, one pair at a time, in double (ref/mtp_ref.h).
 * Equations: docs/mtp.md §1, the layer's pieces docs/model.md eqs. 2, 8-10, §4. */
#include "ref/mtp_ref.h"

#include "ref/ref_layers.h"

#include "common/errmsg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void q35_mtp_ref_free(q35_mtp_ref *r)
{
    if (!r) return;
    free(r->kc);
    free(r->vc);
    free(r->work);
    memset(r, 0, sizeof *r);
}

static size_t work_doubles(const q35_config *c, int capacity)
{
    const size_t H = (size_t)c->hidden_size, qd = (size_t)c->num_attention_heads * c->head_dim;
    const size_t kvd = (size_t)c->num_key_value_heads * c->head_dim;
    size_t mid = (size_t)c->intermediate_size;
    if (c->is_moe) {
        mid = (size_t)c->moe_intermediate_size;
        if ((size_t)c->shared_expert_intermediate_size > mid) mid = (size_t)c->shared_expert_intermediate_size;
        mid += 2 * (size_t)c->num_experts; /* router probabilities, top-k marks */
    }
    return 5 * H + 4 * qd + 2 * kvd + (size_t)capacity + mid;
}

int q35_mtp_ref_init(q35_mtp_ref *r, const q35_model *m, int capacity, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    if (!m->mtp.present) {
        q35_errmsg(err, errlen, "mtp_ref: the checkpoint has no MTP head (mtp.* tensors)");
        return -1;
    }
    if (m->comm && m->comm->size > 1) {
        q35_errmsg(err, errlen, "mtp_ref: runs in one process only (this model is spread over %d ranks)", m->comm->size);
        return -1;
    }
    if (capacity < 1) { q35_errmsg(err, errlen, "mtp_ref: capacity %d must be positive", capacity); return -1; }
    const q35_config *c = &m->cfg;
    const size_t kv = (size_t)c->num_key_value_heads * capacity * c->head_dim;
    r->m = m;
    r->capacity = capacity;
    r->kc = calloc(kv, sizeof *r->kc);
    r->vc = calloc(kv, sizeof *r->vc);
    r->work = calloc(work_doubles(c, capacity), sizeof *r->work);
    if (!r->kc || !r->vc || !r->work) {
        q35_mtp_ref_free(r);
        q35_errmsg(err, errlen, "mtp_ref: out of memory (capacity %d)", capacity);
        return -1;
    }
    return 0;
}

int q35_mtp_ref_forward(q35_mtp_ref *r, int T, const int32_t *tokens, const float *hidden, float *logits,
                        int all_logits, float *hidden_out, char *err, size_t errlen)
{
    const q35_model *m = r->m;
    const q35_config *c = &m->cfg;
    const int H = c->hidden_size, V = c->vocab_size;
    const double eps = c->rms_norm_eps;
    if (T < 1 || r->pos + T > r->capacity) {
        q35_errmsg(err, errlen, "mtp_ref: %d pairs from position %d do not fit capacity %d", T, r->pos, r->capacity);
        return -1;
    }
    for (int t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= V) {
            q35_errmsg(err, errlen, "mtp_ref: token id %d outside [0, %d)", (int)tokens[t], V);
            return -1;
        }
    double *cat = r->work, *x = cat + 2 * H, *xn = x + H, *w = xn + H;
    for (int t = 0; t < T; t++) {
        /* cat = [pre_fc_norm_embedding(embed[x_{t+1}]) ; pre_fc_norm_hidden(h_t)] */
        for (int h = 0; h < H; h++) x[h] = q35_w_at(m->embed, m->wt, (size_t)tokens[t] * H + h);
        q35_ref_rmsnorm_c(x, m->mtp.pre_fc_norm_embedding, H, eps, cat);
        for (int h = 0; h < H; h++) x[h] = hidden[(size_t)t * H + h];
        q35_ref_rmsnorm_c(x, m->mtp.pre_fc_norm_hidden, H, eps, cat + H);
        q35_ref_matvec(m->mtp.fc, m->wt, H, 2 * H, cat, x); /* fc: [H, 2H] */
        /* one decoder layer, full attention at position r->pos */
        q35_ref_rmsnorm_c(x, m->mtp.layer.input_norm, H, eps, xn);
        q35_ref_attention(c, &m->mtp.layer, q35_model_wt(m, Q35_WF_ATTENTION), r->kc, r->vc, r->capacity, r->pos, xn, x, w);
        q35_ref_rmsnorm_c(x, m->mtp.layer.post_norm, H, eps, xn);
        q35_ref_mlp(c, &m->mtp.layer, q35_model_wt(m, c->is_moe ? Q35_WF_MOE : Q35_WF_MLP), m->wt, xn, x, w);
        /* mtp.norm, then the model's lm_head */
        q35_ref_rmsnorm_c(x, m->mtp.norm, H, eps, xn);
        if (hidden_out)
            for (int h = 0; h < H; h++) hidden_out[(size_t)t * H + h] = (float)xn[h];
        if (all_logits || t == T - 1) {
            float *lg = logits + (all_logits ? (size_t)t * V : 0);
            for (int v = 0; v < V; v++) {
                double acc = 0;
                for (int h = 0; h < H; h++) acc += q35_w_rc(m->lm_head, q35_model_wt(m, Q35_WF_LM_HEAD), (size_t)H, (size_t)v, (size_t)h) * xn[h];
                lg[v] = (float)acc;
            }
        }
        r->pos++;
    }
    return 0;
}
