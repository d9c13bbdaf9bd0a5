/* ref_layers.c - the reference decoder's shared pieces, in double
 * (ref/ref_layers.h).  Equation numbers: docs/model.md. */
#include "ref/ref_layers.h"

#include <math.h>
#include <string.h>

double q35_ref_sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }
double q35_ref_silu(double z) { return z / (1.0 + exp(-z)); }

/* y[n] = sum_k W[n, k] x[k] for n < N (eq. 1), W stored [N, K]. */
void q35_ref_matvec(const void *W, q35_wtype wt, int N, int K, const double *x, double *y)
{
    for (int n = 0; n < N; n++) {
        double acc = 0;
        for (int k = 0; k < K; k++) acc += q35_w_rc(W, wt, (size_t)K, (size_t)n, (size_t)k) * x[k];
        y[n] = acc;
    }
}

/* eq. 2: zero-centred RMSNorm, y = x / sqrt(mean(x^2) + eps) * (1 + w). */
void q35_ref_rmsnorm_c(const double *x, const float *w, int n, double eps, double *y)
{
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    const double r = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) y[i] = x[i] * r * (1.0 + w[i]);
}

/* eq. 8: rotate-half on the first rd dims. */
void q35_ref_rope(double *x, int rd, int pos, double theta)
{
    for (int i = 0; i < rd / 2; i++) {
        const double a = pos * pow(theta, -2.0 * i / rd), c = cos(a), s = sin(a);
        const double x1 = x[i], x2 = x[i + rd / 2];
        x[i] = x1 * c - x2 * s;
        x[i + rd / 2] = x2 * c + x1 * s;
    }
}

void q35_ref_attention(const q35_config *c, const q35_layer *L, q35_wtype wt, double *kcache, double *vcache, int cap,
                       int pos, const double *xn, double *x, double *w)
{
    const int H = c->hidden_size, nh = c->num_attention_heads, nkv = c->num_key_value_heads, hd = c->head_dim;
    double *qg = w, *kk = qg + 2 * nh * hd, *vv = kk + nkv * hd, *q = vv + nkv * hd, *o = q + nh * hd;
    double *p = o + nh * hd;
    q35_ref_matvec(L->q_proj, wt, 2 * nh * hd, H, xn, qg);
    q35_ref_matvec(L->k_proj, wt, nkv * hd, H, xn, kk);
    q35_ref_matvec(L->v_proj, wt, nkv * hd, H, xn, vv);
    for (int j = 0; j < nkv; j++) {
        double *kc = kcache + ((size_t)j * cap + pos) * hd, *vc = vcache + ((size_t)j * cap + pos) * hd;
        q35_ref_rmsnorm_c(kk + (size_t)j * hd, L->k_norm, hd, c->rms_norm_eps, kc);
        q35_ref_rope(kc, c->rotary_dim, pos, c->rope_theta);
        memcpy(vc, vv + (size_t)j * hd, (size_t)hd * sizeof *vc);
    }
    for (int h = 0; h < nh; h++) {
        const int j = h / (nh / nkv);
        double *qh = q + (size_t)h * hd, *oh = o + (size_t)h * hd;
        q35_ref_rmsnorm_c(qg + (size_t)h * 2 * hd, L->q_norm, hd, c->rms_norm_eps, qh);
        q35_ref_rope(qh, c->rotary_dim, pos, c->rope_theta);
        double mx = -INFINITY, sum = 0;
        for (int t = 0; t <= pos; t++) {
            const double *kt = kcache + ((size_t)j * cap + t) * hd;
            double s = 0;
            for (int d = 0; d < hd; d++) s += qh[d] * kt[d];
            p[t] = s / sqrt((double)hd);
            mx = fmax(mx, p[t]);
        }
        for (int t = 0; t <= pos; t++) sum += (p[t] = exp(p[t] - mx));
        for (int d = 0; d < hd; d++) {
            double acc = 0;
            for (int t = 0; t <= pos; t++) acc += p[t] * vcache[((size_t)j * cap + t) * hd + d];
            /* eq. 10: output gate, the hd rows after this head's query rows */
            oh[d] = acc / sum * q35_ref_sigmoid(qg[(size_t)h * 2 * hd + hd + d]);
        }
    }
    for (int n = 0; n < H; n++) {
        double acc = 0;
        for (int i = 0; i < nh * hd; i++) acc += q35_w_rc(L->o_proj, wt, (size_t)nh * hd, (size_t)n, (size_t)i) * o[i];
        x[n] += acc;
    }
}

/* x += scale * down(silu(gate xn) * up xn) for one SwiGLU MLP (§4). */
static void swiglu(const void *Wg, const void *Wu, const void *Wd, q35_wtype wt, int H, int I, size_t ld_gu,
                   const double *xn, double scale, double *mid, double *x)
{
    for (int i = 0; i < I; i++) {
        double g = 0, u = 0;
        for (int k = 0; k < H; k++) {
            g += q35_w_rc(Wg, wt, ld_gu, (size_t)i, (size_t)k) * xn[k];
            u += q35_w_rc(Wu, wt, ld_gu, (size_t)i, (size_t)k) * xn[k];
        }
        mid[i] = q35_ref_silu(g) * u;
    }
    for (int n = 0; n < H; n++) {
        double acc = 0;
        for (int i = 0; i < I; i++) acc += q35_w_rc(Wd, wt, (size_t)I, (size_t)n, (size_t)i) * mid[i];
        x[n] += scale * acc;
    }
}

/* §4: dense SwiGLU, or softmax router, top-k (ties to the lower index), experts, shared expert. */
void q35_ref_mlp(const q35_config *c, const q35_layer *L, q35_wtype wt, q35_wtype router_wt, const double *xn, double *x,
                 double *w)
{
    const int H = c->hidden_size;
    if (!c->is_moe) {
        swiglu(L->gate_proj, L->up_proj, L->down_proj, wt, H, c->intermediate_size, (size_t)H, xn, 1.0, w, x);
        return;
    }
    const int E = c->num_experts, k = c->num_experts_per_tok, I = c->moe_intermediate_size;
    double *prob = w, *taken = prob + E, *mid = taken + E;
    q35_ref_matvec(L->router, router_wt, E, H, xn, prob);
    double mx = -INFINITY, sum = 0;
    for (int e = 0; e < E; e++) mx = fmax(mx, prob[e]);
    for (int e = 0; e < E; e++) sum += (prob[e] = exp(prob[e] - mx));
    for (int e = 0; e < E; e++) prob[e] /= sum;
    /* top-k: k times the largest not yet taken, ties to the lower index */
    double wsum = 0;
    for (int e = 0; e < E; e++) taken[e] = 0;
    for (int i = 0; i < k; i++) {
        int best = -1;
        for (int e = 0; e < E; e++)
            if (!taken[e] && (best < 0 || prob[e] > prob[best])) best = e;
        taken[best] = 1;
        wsum += prob[best];
    }
    for (int e = 0; e < E; e++) {
        if (!taken[e]) continue;
        const char *gu = (const char *)L->experts_gate_up + q35_wtype_bytes(wt, (size_t)e * 2 * I * H);
        const char *dn = (const char *)L->experts_down + q35_wtype_bytes(wt, (size_t)e * H * I);
        const double wgt = c->norm_topk_prob ? prob[e] / wsum : prob[e];
        swiglu(gu, gu + q35_wtype_bytes(wt, (size_t)I * H), dn, wt, H, I, (size_t)H, xn, wgt, mid, x); /* gate rows, then up rows */
    }
    if (c->shared_expert_intermediate_size > 0) {
        double sg = 0;
        for (int h = 0; h < H; h++) sg += q35_w_at(L->shared_expert_gate, router_wt, h) * xn[h];
        swiglu(L->shared_gate, L->shared_up, L->shared_down, wt, H, c->shared_expert_intermediate_size, (size_t)H,
               xn, q35_ref_sigmoid(sg), mid, x);
    }
}

