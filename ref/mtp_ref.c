/* mtp_ref.c - the MTP head, one pair at a time, in double (ref/mtp_ref.h).
 * Equations: docs/mtp.md §1, the layer's pieces docs/model.md eqs. 2, 8-10, §4. */
#include "ref/mtp_ref.h"

#include "common/errmsg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }
static double silu(double z) { return z / (1.0 + exp(-z)); }

/* y[n] = sum_k W[n, k] x[k], W stored [N, K] with row stride ld. */
static void matvec(const void *W, q35_wtype wt, int N, int K, size_t ld, const double *x, double *y)
{
    for (int n = 0; n < N; n++) {
        double acc = 0;
        for (int k = 0; k < K; k++) acc += q35_w_at(W, wt, (size_t)n * ld + k) * x[k];
        y[n] = acc;
    }
}

/* zero-centred RMSNorm: x / sqrt(mean(x^2) + eps) * (1 + w) */
static void rmsnorm_c(const double *x, const float *w, int n, double eps, double *y)
{
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    const double s = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) y[i] = x[i] * s * (1.0 + w[i]);
}

/* rotate-half RoPE on the first rd dims: pair (i, i + rd/2) turns by pos * theta^(-2i/rd) */
static void rope(double *x, int rd, int pos, double theta)
{
    for (int i = 0; i < rd / 2; i++) {
        const double a = pos * pow(theta, -2.0 * i / rd), c = cos(a), s = sin(a);
        const double x1 = x[i], x2 = x[i + rd / 2];
        x[i] = x1 * c - x2 * s;
        x[i + rd / 2] = x2 * c + x1 * s;
    }
}

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

/* x += the gated attention of xn at position pos (docs/model.md §3). */
static void attention(q35_mtp_ref *r, const double *xn, double *x, double *w)
{
    const q35_config *c = &r->m->cfg;
    const q35_layer *L = &r->m->mtp.layer;
    const q35_wtype wt = r->m->wt;
    const int H = c->hidden_size, nh = c->num_attention_heads, nkv = c->num_key_value_heads, hd = c->head_dim;
    const int pos = r->pos, cap = r->capacity;
    double *qg = w, *k = qg + 2 * nh * hd, *v = k + nkv * hd, *q = v + nkv * hd, *o = q + nh * hd, *p = o + nh * hd;
    matvec(L->q_proj, wt, 2 * nh * hd, H, (size_t)H, xn, qg);
    matvec(L->k_proj, wt, nkv * hd, H, (size_t)H, xn, k);
    matvec(L->v_proj, wt, nkv * hd, H, (size_t)H, xn, v);
    for (int j = 0; j < nkv; j++) {
        double *kc = r->kc + ((size_t)j * cap + pos) * hd, *vc = r->vc + ((size_t)j * cap + pos) * hd;
        rmsnorm_c(k + (size_t)j * hd, L->k_norm, hd, c->rms_norm_eps, kc);
        rope(kc, c->rotary_dim, pos, c->rope_theta);
        for (int d = 0; d < hd; d++) vc[d] = v[(size_t)j * hd + d];
    }
    for (int h = 0; h < nh; h++) {
        const int j = h / (nh / nkv); /* GQA: query head h reads KV head h / (nh/nkv) */
        double *qh = q + (size_t)h * hd;
        rmsnorm_c(qg + (size_t)h * 2 * hd, L->q_norm, hd, c->rms_norm_eps, qh); /* the head's first hd rows */
        rope(qh, c->rotary_dim, pos, c->rope_theta);
        double mx = -INFINITY, sum = 0;
        for (int t = 0; t <= pos; t++) {
            double s = 0;
            for (int d = 0; d < hd; d++) s += qh[d] * r->kc[((size_t)j * cap + t) * hd + d];
            p[t] = s / sqrt((double)hd);
            if (p[t] > mx) mx = p[t];
        }
        for (int t = 0; t <= pos; t++) sum += (p[t] = exp(p[t] - mx));
        for (int d = 0; d < hd; d++) {
            double acc = 0;
            for (int t = 0; t <= pos; t++) acc += p[t] * r->vc[((size_t)j * cap + t) * hd + d];
            o[(size_t)h * hd + d] = acc / sum * sigmoid(qg[(size_t)h * 2 * hd + hd + d]); /* the next hd rows: gate */
        }
    }
    for (int n = 0; n < H; n++) {
        double acc = 0;
        for (int i = 0; i < nh * hd; i++) acc += q35_w_at(L->o_proj, wt, (size_t)n * nh * hd + i) * o[i];
        x[n] += acc;
    }
}

/* x += scale * down(silu(gate xn) * up xn) */
static void swiglu(const void *Wg, const void *Wu, const void *Wd, q35_wtype wt, int H, int I, const double *xn,
                   double scale, double *mid, double *x)
{
    for (int i = 0; i < I; i++) {
        double g = 0, u = 0;
        for (int k = 0; k < H; k++) {
            g += q35_w_at(Wg, wt, (size_t)i * H + k) * xn[k];
            u += q35_w_at(Wu, wt, (size_t)i * H + k) * xn[k];
        }
        mid[i] = silu(g) * u;
    }
    for (int n = 0; n < H; n++) {
        double acc = 0;
        for (int i = 0; i < I; i++) acc += q35_w_at(Wd, wt, (size_t)n * I + i) * mid[i];
        x[n] += scale * acc;
    }
}

/* dense SwiGLU, or: softmax over all experts, top-k (ties to the lower
 * index), optional renormalization, the chosen experts, the sigmoid-gated
 * shared expert (docs/model.md §4, docs/moe.md). */
static void mlp(q35_mtp_ref *r, const double *xn, double *x, double *w)
{
    const q35_config *c = &r->m->cfg;
    const q35_layer *L = &r->m->mtp.layer;
    const q35_wtype wt = r->m->wt;
    const int H = c->hidden_size;
    if (!c->is_moe) {
        swiglu(L->gate_proj, L->up_proj, L->down_proj, wt, H, c->intermediate_size, xn, 1.0, w, x);
        return;
    }
    const int E = c->num_experts, K = c->num_experts_per_tok, I = c->moe_intermediate_size;
    double *prob = w, *taken = prob + E, *mid = taken + E;
    matvec(L->router, wt, E, H, (size_t)H, xn, prob);
    double mx = -INFINITY, sum = 0;
    for (int e = 0; e < E; e++) if (prob[e] > mx) mx = prob[e];
    for (int e = 0; e < E; e++) sum += (prob[e] = exp(prob[e] - mx));
    for (int e = 0; e < E; e++) prob[e] /= sum;
    /* top-k: K times the largest not yet taken (ties to the lower index) */
    double wsum = 0;
    for (int e = 0; e < E; e++) taken[e] = 0;
    for (int i = 0; i < K; i++) {
        int best = -1;
        for (int e = 0; e < E; e++)
            if (!taken[e] && (best < 0 || prob[e] > prob[best])) best = e;
        taken[best] = 1;
        wsum += prob[best];
    }
    const size_t esz = q35_wtype_size(wt);
    for (int e = 0; e < E; e++) {
        if (!taken[e]) continue;
        const char *gu = (const char *)L->experts_gate_up + (size_t)e * 2 * I * H * esz;
        const char *dn = (const char *)L->experts_down + (size_t)e * H * I * esz;
        const double g = c->norm_topk_prob ? prob[e] / wsum : prob[e];
        swiglu(gu, gu + (size_t)I * H * esz, dn, wt, H, I, xn, g, mid, x); /* gate rows, then up rows */
    }
    if (c->shared_expert_intermediate_size > 0) {
        double sg = 0;
        for (int h = 0; h < H; h++) sg += q35_w_at(L->shared_expert_gate, wt, h) * xn[h];
        swiglu(L->shared_gate, L->shared_up, L->shared_down, wt, H, c->shared_expert_intermediate_size, xn,
               sigmoid(sg), mid, x);
    }
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
        rmsnorm_c(x, m->mtp.pre_fc_norm_embedding, H, eps, cat);
        for (int h = 0; h < H; h++) x[h] = hidden[(size_t)t * H + h];
        rmsnorm_c(x, m->mtp.pre_fc_norm_hidden, H, eps, cat + H);
        matvec(m->mtp.fc, m->wt, H, 2 * H, (size_t)(2 * H), cat, x); /* fc: [H, 2H] */
        /* one decoder layer, full attention at position r->pos */
        rmsnorm_c(x, m->mtp.layer.input_norm, H, eps, xn);
        attention(r, xn, x, w);
        rmsnorm_c(x, m->mtp.layer.post_norm, H, eps, xn);
        mlp(r, xn, x, w);
        /* mtp.norm, then the model's lm_head */
        rmsnorm_c(x, m->mtp.norm, H, eps, xn);
        if (hidden_out)
            for (int h = 0; h < H; h++) hidden_out[(size_t)t * H + h] = (float)xn[h];
        if (all_logits || t == T - 1) {
            float *lg = logits + (all_logits ? (size_t)t * V : 0);
            for (int v = 0; v < V; v++) {
                double acc = 0;
                for (int h = 0; h < H; h++) acc += q35_w_at(m->lm_head, m->wt, (size_t)v * H + h) * xn[h];
                lg[v] = (float)acc;
            }
        }
        r->pos++;
    }
    return 0;
}
