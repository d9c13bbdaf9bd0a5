/* Scalar reference of the delta-rule backward: the executable spec.
 *
 * docs/deltarule.md "Backward", eqs. (B0)-(B8), in double, token by token.
 * The forward stores every state S_0..S_n of a (sequence, value head); the
 * backward sweeps t = n..1 over them.  Readable first; never optimized.
 */
#include "ref/deltarule_grad_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double f64_scale(const deltarule_f64_case *c) { return c->scale != 0.0 ? c->scale : 1.0 / sqrt((double)c->Dk); }

static int f64_len(const deltarule_f64_case *c, int b)
{
    if (!c->seq_len) return c->T;
    int n = c->seq_len[b];
    return n < 0 ? 0 : (n > c->T ? c->T : n);
}

/* eq. (1): y = x / r, r = sqrt(sum x^2 + 1e-6) (or y = x, r = 1 without l2norm). */
static double normalize(const double *x, int n, int l2, double *y)
{
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    const double r = l2 ? sqrt(ss + 1e-6) : 1.0;
    for (int i = 0; i < n; i++) y[i] = x[i] / r;
    return r;
}

/* (B8): dx = (dy - y (y . dy)) / r for y = x / r; the identity without l2norm. */
static void l2norm_backward(const double *x, const double *dy, int n, int l2, double *dx)
{
    if (!l2) { for (int i = 0; i < n; i++) dx[i] = dy[i]; return; }
    double ss = 0.0, xdy = 0.0;
    for (int i = 0; i < n; i++) { ss += x[i] * x[i]; xdy += x[i] * dy[i]; }
    const double r = sqrt(ss + 1e-6), ydy = xdy / r; /* y . dy with y = x / r */
    for (int i = 0; i < n; i++) dx[i] = (dy[i] - x[i] / r * ydy) / r;
}

/* One (b, h): eq. (2) forward storing S_0..S_n in S [(n+1), Dk, Dv], q̂ (scaled)
 * and k̂ per token in qh, kh [n, Dk].  out may be NULL. */
static void forward_head(const deltarule_f64_case *c, int b, int h, double *S, double *qh, double *kh, double *out)
{
    const int T = c->T, Hk = c->Hk, Hv = c->Hv, Dk = c->Dk, Dv = c->Dv, hk = h / (Hv / Hk);
    const size_t ss = (size_t)Dk * Dv;
    const int n = f64_len(c, b);
    const double scale = f64_scale(c);
    for (size_t i = 0; i < ss; i++) S[i] = c->initial_state ? c->initial_state[((size_t)b * Hv + h) * ss + i] : 0.0;
    for (int t = 0; t < n; t++) {
        const size_t tok = (size_t)b * T + t;
        double *q = qh + (size_t)t * Dk, *k = kh + (size_t)t * Dk;
        normalize(c->q + (tok * Hk + hk) * Dk, Dk, c->use_qk_l2norm, q);
        normalize(c->k + (tok * Hk + hk) * Dk, Dk, c->use_qk_l2norm, k);
        for (int i = 0; i < Dk; i++) q[i] *= scale;
        const double a = exp(c->g[tok * Hv + h]), beta = c->beta[tok * Hv + h];
        const double *v = c->v + (tok * Hv + h) * Dv;
        const double *Sp = S + (size_t)t * ss;
        double *Sn = S + (size_t)(t + 1) * ss;
        for (int j = 0; j < Dv; j++) {
            double u = 0.0; /* u = S'^T k, S' = a S_{t-1} */
            for (int i = 0; i < Dk; i++) u += a * Sp[(size_t)i * Dv + j] * k[i];
            const double delta = beta * (v[j] - u);
            for (int i = 0; i < Dk; i++) Sn[(size_t)i * Dv + j] = a * Sp[(size_t)i * Dv + j] + k[i] * delta;
        }
        if (out)
            for (int j = 0; j < Dv; j++) {
                double o = 0.0;
                for (int i = 0; i < Dk; i++) o += Sn[(size_t)i * Dv + j] * q[i];
                out[(tok * Hv + h) * Dv + j] = o;
            }
    }
    if (out)
        for (int t = n; t < T; t++) memset(out + (((size_t)b * T + t) * Hv + h) * Dv, 0, sizeof(double) * Dv);
}

int deltarule_ref_forward_f64(const deltarule_f64_case *c, double *out, double *final_state)
{
    const size_t ss = (size_t)c->Dk * c->Dv;
    double *S = malloc(sizeof(double) * ss * (c->T + 1));
    double *qh = malloc(sizeof(double) * (size_t)c->T * c->Dk), *kh = malloc(sizeof(double) * (size_t)c->T * c->Dk);
    if (!S || !qh || !kh) { free(S); free(qh); free(kh); return -1; }
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->Hv; h++) {
            forward_head(c, b, h, S, qh, kh, out);
            if (final_state)
                memcpy(final_state + ((size_t)b * c->Hv + h) * ss, S + (size_t)f64_len(c, b) * ss, sizeof(double) * ss);
        }
    free(S); free(qh); free(kh);
    return 0;
}

int deltarule_grad_ref_f64(const deltarule_f64_case *c, const double *d_out, const double *d_final_state,
                           const deltarule_f64_grads *gr)
{
    const int B = c->B, T = c->T, Hk = c->Hk, Hv = c->Hv, Dk = c->Dk, Dv = c->Dv;
    const size_t ss = (size_t)Dk * Dv, nqk = (size_t)B * T * Hk * Dk;
    double *S = malloc(sizeof(double) * ss * (T + 1));
    double *qh = malloc(sizeof(double) * (size_t)T * Dk), *kh = malloc(sizeof(double) * (size_t)T * Dk);
    double *dS = malloc(sizeof(double) * ss), *dSp = malloc(sizeof(double) * ss);
    double *ddelta = malloc(sizeof(double) * Dv), *du = malloc(sizeof(double) * Dv), *delta = malloc(sizeof(double) * Dv);
    /* dL/dq̂, dL/dk̂ (after the norm and scale), summed over the value heads of a key head */
    double *dqh = calloc(nqk, sizeof(double)), *dkh = calloc(nqk, sizeof(double));
    int rc = (S && qh && kh && dS && dSp && ddelta && du && delta && dqh && dkh) ? 0 : -1;
    for (int b = 0; b < B && !rc; b++)
        for (int h = 0; h < Hv; h++) {
            const int hk = h / (Hv / Hk), n = f64_len(c, b);
            forward_head(c, b, h, S, qh, kh, NULL);
            /* (B0) */
            for (size_t i = 0; i < ss; i++) dS[i] = d_final_state ? d_final_state[((size_t)b * Hv + h) * ss + i] : 0.0;
            for (int t = T - 1; t >= n; t--) { /* padding: zero gradients */
                const size_t tok = (size_t)b * T + t;
                for (int j = 0; j < Dv; j++) gr->dv[(tok * Hv + h) * Dv + j] = 0.0;
                gr->dg[tok * Hv + h] = gr->dbeta[tok * Hv + h] = 0.0;
            }
            for (int t = n - 1; t >= 0; t--) {
                const size_t tok = (size_t)b * T + t;
                const double *q = qh + (size_t)t * Dk, *k = kh + (size_t)t * Dk;
                const double *Sprev = S + (size_t)t * ss, *St = S + (size_t)(t + 1) * ss;
                const double *dout = d_out + (tok * Hv + h) * Dv, *v = c->v + (tok * Hv + h) * Dv;
                const double a = exp(c->g[tok * Hv + h]), beta = c->beta[tok * Hv + h];
                double *dq = dqh + (tok * Hk + hk) * Dk, *dk = dkh + (tok * Hk + hk) * Dk;
                /* the forward's u_t = S'^T k and delta_t = beta (v - u) again */
                double dbeta = 0.0;
                for (int j = 0; j < Dv; j++) {
                    double u = 0.0;
                    for (int i = 0; i < Dk; i++) u += a * Sprev[(size_t)i * Dv + j] * k[i];
                    du[j] = u; /* u for now */
                    delta[j] = beta * (v[j] - u);
                }
                /* (B1) dq̂ = S_t do;  dS_t += q̂ do^T */
                for (int i = 0; i < Dk; i++) {
                    double acc = 0.0;
                    for (int j = 0; j < Dv; j++) acc += St[(size_t)i * Dv + j] * dout[j];
                    dq[i] += acc;
                    for (int j = 0; j < Dv; j++) dS[(size_t)i * Dv + j] += q[i] * dout[j];
                }
                /* (B2) ddelta = dS^T k̂;  dk̂ += dS delta */
                for (int j = 0; j < Dv; j++) {
                    double acc = 0.0;
                    for (int i = 0; i < Dk; i++) acc += dS[(size_t)i * Dv + j] * k[i];
                    ddelta[j] = acc;
                }
                for (int i = 0; i < Dk; i++) {
                    double acc = 0.0;
                    for (int j = 0; j < Dv; j++) acc += dS[(size_t)i * Dv + j] * delta[j];
                    dk[i] += acc;
                }
                /* (B3) dv = beta ddelta;  dbeta = ddelta . (v - u);  du = -beta ddelta */
                for (int j = 0; j < Dv; j++) {
                    gr->dv[(tok * Hv + h) * Dv + j] = beta * ddelta[j];
                    dbeta += ddelta[j] * (v[j] - du[j]);
                    du[j] = -beta * ddelta[j];
                }
                gr->dbeta[tok * Hv + h] = dbeta;
                /* (B4) dS' = dS + k̂ du^T;  dk̂ += S' du with S' = a S_{t-1} */
                for (size_t i = 0; i < (size_t)Dk; i++)
                    for (int j = 0; j < Dv; j++) dSp[i * Dv + j] = dS[i * Dv + j] + k[i] * du[j];
                for (int i = 0; i < Dk; i++) {
                    double acc = 0.0;
                    for (int j = 0; j < Dv; j++) acc += a * Sprev[(size_t)i * Dv + j] * du[j];
                    dk[i] += acc;
                }
                /* (B5) dg = <dS', S'>;  (B6) dS_{t-1} = a dS' */
                double dg = 0.0;
                for (size_t i = 0; i < ss; i++) dg += dSp[i] * a * Sprev[i];
                gr->dg[tok * Hv + h] = dg;
                for (size_t i = 0; i < ss; i++) dS[i] = a * dSp[i];
            }
            /* (B7) */
            if (gr->d_initial_state) memcpy(gr->d_initial_state + ((size_t)b * Hv + h) * ss, dS, sizeof(double) * ss);
        }
    /* (B8) through the scale and the l2 norm, once per key-head token (the Jacobian is linear) */
    const double scale = f64_scale(c);
    for (size_t r = 0; r < nqk / (size_t)Dk && !rc; r++) {
        for (int i = 0; i < Dk; i++) dqh[r * Dk + i] *= scale;
        l2norm_backward(c->q + r * Dk, dqh + r * Dk, Dk, c->use_qk_l2norm, gr->dq + r * Dk);
        l2norm_backward(c->k + r * Dk, dkh + r * Dk, Dk, c->use_qk_l2norm, gr->dk + r * Dk);
    }
    free(S); free(qh); free(kh); free(dS); free(dSp); free(ddelta); free(du); free(delta); free(dqh); free(dkh);
    return rc;
}

static double *to_f64(const float *x, size_t n)
{
    if (!x) return NULL;
    double *y = malloc(sizeof(double) * (n ? n : 1));
    if (y)
        for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

static void to_f32(const double *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = (float)x[i];
}

int deltarule_grad_ref(const deltarule_grad_problem *p, const deltarule_opts *o, deltarule_grad_stats *st)
{
    (void)o; /* the reference has no knobs */
    const deltarule_problem *f = p->fwd;
    const size_t nqk = (size_t)f->B * f->T * f->Hk * f->Dk, nv = (size_t)f->B * f->T * f->Hv * f->Dv;
    const size_t ng = (size_t)f->B * f->T * f->Hv, ns = (size_t)f->B * f->Hv * f->Dk * f->Dv;
    double *q = to_f64(f->q, nqk), *k = to_f64(f->k, nqk), *v = to_f64(f->v, nv), *g = to_f64(f->g, ng);
    double *beta = to_f64(f->beta, ng), *s0 = to_f64(f->initial_state, ns);
    double *dout = to_f64(p->d_out, nv), *dfs = to_f64(p->d_final_state, ns);
    double *dq = malloc(sizeof(double) * nqk), *dk = malloc(sizeof(double) * nqk), *dv = malloc(sizeof(double) * nv);
    double *dg = malloc(sizeof(double) * ng), *dbeta = malloc(sizeof(double) * ng), *ds0 = malloc(sizeof(double) * ns);
    int rc = -1;
    if (q && k && v && g && beta && (s0 || !f->initial_state) && dout && (dfs || !p->d_final_state) && dq && dk &&
        dv && dg && dbeta && ds0) {
        const deltarule_f64_case c = {f->B, f->T, f->Hk, f->Hv, f->Dk, f->Dv, q, k, v, g, beta, s0, f->seq_len,
                                      f->use_qk_l2norm, (double)deltarule_scale(f)};
        const deltarule_f64_grads gr = {dq, dk, dv, dg, dbeta, ds0};
        rc = deltarule_grad_ref_f64(&c, dout, dfs, &gr);
        if (!rc) {
            to_f32(dq, p->dq, nqk); to_f32(dk, p->dk, nqk); to_f32(dv, p->dv, nv);
            to_f32(dg, p->dg, ng); to_f32(dbeta, p->dbeta, ng);
            if (f->initial_state && p->d_initial_state) to_f32(ds0, p->d_initial_state, ns);
        }
    }
    if (st) /* the double copies, the summed dq̂/dk̂, and per head its T+1 stored states and q̂, k̂ */
        st->bytes_held = sizeof(double) * (6 * nqk + 3 * nv + 4 * ng + 3 * ns +
                                           (size_t)(f->T + 1) * f->Dk * f->Dv + 2 * (size_t)f->T * f->Dk);
    free(q); free(k); free(v); free(g); free(beta); free(s0); free(dout); free(dfs);
    free(dq); free(dk); free(dv); free(dg); free(dbeta); free(ds0);
    return rc;
}

const deltarule_grad_impl deltarule_grad_ref_impl = {
    "ref", "scalar reference backward, double, every state stored (ref/deltarule_grad_ref.c)",
    deltarule_grad_ref, {0}, DR_CLAIM_ALL, 1e-6, NULL, NULL};
