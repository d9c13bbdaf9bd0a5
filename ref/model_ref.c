/* model_ref.c - the Qwen3.5 decoder, one token at a time, in double
 * (ref/model_ref.h).  Equation numbers: docs/model.md. */
#include "ref/model_ref.h"

#include "ref/ref_layers.h"

#include "common/errmsg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- small pieces ------------------------------------------------------ */

static double softplus(double z) { return z > 20.0 ? z : log1p(exp(z)); } /* torch's threshold */

/* docs/deltarule.md eq. 1: x / sqrt(sum x^2 + 1e-6). */
static void l2norm(double *x, int n)
{
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    const double r = 1.0 / sqrt(ss + 1e-6);
    for (int i = 0; i < n; i++) x[i] *= r;
}

/* ---- state ------------------------------------------------------------- */

void q35_model_ref_free(q35_model_ref *r)
{
    if (!r || !r->m) return;
    for (int l = 0; l < r->m->cfg.num_hidden_layers; l++) {
        if (r->conv) free(r->conv[l]);
        if (r->S) free(r->S[l]);
        if (r->kc) free(r->kc[l]);
        if (r->vc) free(r->vc[l]);
    }
    free(r->conv); free(r->S); free(r->kc); free(r->vc); free(r->work);
    memset(r, 0, sizeof *r);
}

static size_t work_doubles(const q35_config *c, int capacity)
{
    const size_t H = c->hidden_size, C = q35_conv_channels(c);
    const size_t vd = (size_t)c->linear_num_value_heads * c->linear_value_head_dim;
    const size_t qd = (size_t)c->num_attention_heads * c->head_dim;
    const size_t I = c->is_moe ? (size_t)(c->moe_intermediate_size > c->shared_expert_intermediate_size
                                          ? c->moe_intermediate_size : c->shared_expert_intermediate_size)
                               : (size_t)c->intermediate_size;
    /* x, xn, acc; the mixer's largest need; the MLP's; router; logits */
    const size_t lin = 2 * C + vd + 2 * (size_t)c->linear_num_value_heads + vd;
    const size_t att = 2 * qd + 2 * (size_t)c->num_key_value_heads * c->head_dim + 2 * qd + (size_t)capacity;
    return 3 * H + (lin > att ? lin : att) + 2 * I + (size_t)(c->is_moe ? 2 * c->num_experts : 0) +
           (size_t)c->vocab_size;
}

int q35_model_ref_init(q35_model_ref *r, const q35_model *m, int capacity, char *err, size_t errlen)
{
    const q35_config *c = &m->cfg;
    const int L = c->num_hidden_layers;
    memset(r, 0, sizeof *r);
    r->m = m;
    r->capacity = capacity;
    r->conv = calloc((size_t)L, sizeof *r->conv);
    r->S = calloc((size_t)L, sizeof *r->S);
    r->kc = calloc((size_t)L, sizeof *r->kc);
    r->vc = calloc((size_t)L, sizeof *r->vc);
    r->work = malloc(work_doubles(c, capacity) * sizeof(double));
    int ok = r->conv && r->S && r->kc && r->vc && r->work && capacity > 0;
    for (int l = 0; ok && l < L; l++) {
        if (c->layer_types[l] == Q35_LAYER_LINEAR) {
            r->conv[l] = calloc((size_t)q35_conv_channels(c) * (c->linear_conv_kernel_dim - 1) + 1, sizeof(double));
            r->S[l] = calloc((size_t)c->linear_num_value_heads * c->linear_key_head_dim * c->linear_value_head_dim,
                             sizeof(double));
            ok = r->conv[l] && r->S[l];
        } else {
            const size_t n = (size_t)c->num_key_value_heads * capacity * c->head_dim;
            r->kc[l] = calloc(n, sizeof(double));
            r->vc[l] = calloc(n, sizeof(double));
            ok = r->kc[l] && r->vc[l];
        }
    }
    if (!ok) {
        q35_errmsg(err, errlen, "model_ref: out of memory (capacity %d)", capacity);
        q35_model_ref_free(r);
        r->m = NULL;
        return -1;
    }
    return 0;
}

/* ---- sublayers ----------------------------------------------------------- */

/* §2, eqs. 4-7 and 3: x += out_proj(gated_norm(deltarule(conv(in_proj_qkv xn)))). */
static void deltanet(q35_model_ref *r, int l, const double *xn, double *x, double *w)
{
    const q35_config *c = &r->m->cfg;
    const q35_layer *L = &r->m->layers[l];
    const q35_wtype wt = q35_model_wt(r->m, Q35_WF_DELTANET);
    const int H = c->hidden_size, Hk = c->linear_num_key_heads, Hv = c->linear_num_value_heads;
    const int Dk = c->linear_key_head_dim, Dv = c->linear_value_head_dim, K = c->linear_conv_kernel_dim;
    const int kd = Hk * Dk, vd = Hv * Dv, C = 2 * kd + vd;
    double *qkv = w, *y = qkv + C, *z = y + C, *bb = z + vd, *aa = bb + Hv, *o = aa + Hv;
    q35_ref_matvec(L->in_proj_qkv, wt, C, H, xn, qkv);
    q35_ref_matvec(L->in_proj_z, wt, vd, H, xn, z);
    q35_ref_matvec(L->in_proj_b, wt, Hv, H, xn, bb);
    q35_ref_matvec(L->in_proj_a, wt, Hv, H, xn, aa);

    /* eq. 4: causal depthwise conv over [K-1 previous inputs, this one], then SiLU */
    double *st = r->conv[l];
    for (int ch = 0; ch < C; ch++) {
        double acc = 0;
        for (int j = 0; j < K - 1; j++) acc += L->conv_w[(size_t)ch * K + j] * st[(size_t)ch * (K - 1) + j];
        acc += L->conv_w[(size_t)ch * K + K - 1] * qkv[ch];
        y[ch] = q35_ref_silu(acc);
        for (int j = 0; j + 1 < K - 1; j++) st[(size_t)ch * (K - 1) + j] = st[(size_t)ch * (K - 1) + j + 1];
        if (K > 1) st[(size_t)ch * (K - 1) + K - 2] = qkv[ch];
    }
    double *q = y, *k = y + kd, *v = y + 2 * kd;
    for (int h = 0; h < Hk; h++) {
        l2norm(q + (size_t)h * Dk, Dk);
        l2norm(k + (size_t)h * Dk, Dk);
    }

    /* eqs. 5-7: per value head, the gated delta rule on its Dk x Dv state */
    for (int h = 0; h < Hv; h++) {
        const double *qh = q + (size_t)(h / (Hv / Hk)) * Dk, *kh = k + (size_t)(h / (Hv / Hk)) * Dk;
        const double *vh = v + (size_t)h * Dv;
        const double beta = q35_ref_sigmoid(bb[h]);
        const double g = -exp((double)L->A_log[h]) * softplus(aa[h] + L->dt_bias[h]);
        double *S = r->S[l] + (size_t)h * Dk * Dv, *oh = o + (size_t)h * Dv;
        for (int i = 0; i < Dk * Dv; i++) S[i] *= exp(g);
        for (int j = 0; j < Dv; j++) {
            double kv = 0;
            for (int i = 0; i < Dk; i++) kv += S[(size_t)i * Dv + j] * kh[i];
            const double delta = beta * (vh[j] - kv);
            for (int i = 0; i < Dk; i++) S[(size_t)i * Dv + j] += kh[i] * delta;
        }
        double ss = 0;
        for (int j = 0; j < Dv; j++) {
            double acc = 0;
            for (int i = 0; i < Dk; i++) acc += S[(size_t)i * Dv + j] * qh[i];
            oh[j] = acc / sqrt((double)Dk); /* scale 1/sqrt(Dk) on q */
            ss += oh[j] * oh[j];
        }
        /* eq. 3: the gated norm (not zero-centred) */
        const double rn = 1.0 / sqrt(ss / Dv + c->rms_norm_eps);
        for (int j = 0; j < Dv; j++) oh[j] = oh[j] * rn * L->gnorm[j] * q35_ref_silu(z[(size_t)h * Dv + j]);
    }
    for (int n = 0; n < H; n++) {
        double acc = 0;
        for (int i = 0; i < vd; i++) acc += q35_w_rc(L->out_proj, wt, (size_t)vd, (size_t)n, (size_t)i) * o[i];
        x[n] += acc;
    }
}

/* §3, eqs. 8-10: gated causal GQA attention over the cache. */
/* ---- the decoder, §1 ------------------------------------------------------ */

int q35_model_ref_step(q35_model_ref *r, int32_t token, float *logits, char *err, size_t errlen)
{
    const q35_model *m = r->m;
    const q35_config *c = &m->cfg;
    const int H = c->hidden_size, V = c->vocab_size;
    if (token < 0 || token >= V) {
        q35_errmsg(err, errlen, "model_ref: token id %d outside [0, %d)", (int)token, V);
        return -1;
    }
    if (r->pos >= r->capacity) {
        q35_errmsg(err, errlen, "model_ref: position %d beyond capacity %d", r->pos, r->capacity);
        return -1;
    }
    if (c->is_moe && c->num_experts_per_tok > 512) {
        q35_errmsg(err, errlen, "model_ref: top-k %d above 512", c->num_experts_per_tok);
        return -1;
    }
    double *x = r->work, *xn = x + H, *w = xn + H;
    for (int h = 0; h < H; h++) x[h] = q35_w_at(m->embed, m->wt, (size_t)token * H + h);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        q35_ref_rmsnorm_c(x, m->layers[l].input_norm, H, c->rms_norm_eps, xn);
        if (c->layer_types[l] == Q35_LAYER_LINEAR) deltanet(r, l, xn, x, w);
        else q35_ref_attention(&m->cfg, &m->layers[l], q35_model_wt(m, Q35_WF_ATTENTION), r->kc[l], r->vc[l], r->capacity, r->pos, xn, x, w);
        q35_ref_rmsnorm_c(x, m->layers[l].post_norm, H, c->rms_norm_eps, xn);
        q35_ref_mlp(&m->cfg, &m->layers[l], q35_model_wt(m, m->cfg.is_moe ? Q35_WF_MOE : Q35_WF_MLP), m->wt, xn, x, w);
    }
    q35_ref_rmsnorm_c(x, m->final_norm, H, c->rms_norm_eps, xn);
    for (int v = 0; v < V; v++) {
        double acc = 0;
        for (int h = 0; h < H; h++) acc += q35_w_rc(m->lm_head, q35_model_wt(m, Q35_WF_LM_HEAD), (size_t)H, (size_t)v, (size_t)h) * xn[h];
        logits[v] = (float)acc;
    }
    r->pos++;
    return 0;
}
