/* The recurrent backward of the gated delta rule (docs/deltarule.md
 * "Backward", eqs. (B0)-(B8) and (B9) for the recomputation).
 *
 * One task per (sequence b, value head h), OpenMP over the tasks.  A task
 * runs the forward once in fp32, keeping the state S at the start of every
 * block of C = opts.chunk tokens (the checkpoints); then, block by block from
 * the last, recomputes the block's C states from its checkpoint into a
 * buffer and sweeps them backward, one block of NC value columns at a time
 * (everything is column-separable but the sums dq̂, dk̂, dg, dβ, which add up
 * over the column blocks).  Held per running task, eq. (B10):
 * (ceil(n/C) + C + 1) states of Dk x min(Dv, NC) floats plus C rows of q̂, k̂, v - u.
 *
 * dL/dq̂ and dL/dk̂ of a value head are written per value head (into dq / dk
 * themselves when Hv = Hk, else into a [B,T,Hv,Dk] scratch), and a last pass
 * over (b, t, key head) sums the value heads of each key head and applies the
 * scale and the l2-norm Jacobian (B8), in double.  No atomics, deterministic.
 *
 * A column block's state rows are nc floats, contiguous: every inner loop
 * runs over a row (`omp simd`, compiled for the baseline ISA: no AVX2 /
 * AVX-512 paths yet), two passes over dS per token (B1-B2, then B4-B6).
 */
#include "kernels/deltarule/deltarule_grad.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Value columns per pass (a column block's state is Dk x NC floats: 16 KiB at Dk = 128). */
#define NC 32

typedef struct {
    float *ckpt;  /* [nblk, Dk, nc]: S (one column block) before each time block's first token */
    float *buf;   /* [C, Dk, nc]: S after each token of the time block being swept */
    float *dS;    /* [Dk, nc] */
    float *qh, *kh; /* [C, Dk]: q̂ (scale included), k̂ */
    float *rr;    /* [C, nc]: v - u */
    float *dec, *beta; /* [C]: exp(g), beta */
    float *u, *ddelta, *du; /* [nc] */
} workspace;

static size_t ws_floats(int nblk, int C, int Dk, int Dv)
{
    const size_t ss = (size_t)Dk * Dv;
    return (size_t)nblk * ss + (size_t)C * ss + ss + 2 * (size_t)C * Dk + (size_t)C * Dv + 2 * (size_t)C + 3 * (size_t)Dv;
}

static int ws_alloc(workspace *w, int nblk, int C, int Dk, int Dv)
{
    const size_t ss = (size_t)Dk * Dv;
    float *m = malloc(sizeof(float) * ws_floats(nblk, C, Dk, Dv));
    if (!m) return -1;
    w->ckpt = m; m += (size_t)nblk * ss;
    w->buf = m; m += (size_t)C * ss;
    w->dS = m; m += ss;
    w->qh = m; m += (size_t)C * Dk;
    w->kh = m; m += (size_t)C * Dk;
    w->rr = m; m += (size_t)C * Dv;
    w->dec = m; m += C;
    w->beta = m; m += C;
    w->u = m; m += Dv;
    w->ddelta = m; m += Dv;
    w->du = m;
    return 0;
}

/* eq. (1) in fp32 with the sum of squares in double: y = f x, f = mul / sqrt(sum x^2 + 1e-6). */
static void normalize(const float *x, int n, int l2, float mul, float *y)
{
    double f = mul;
    if (l2) {
        double ss = 0.0;
        for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
        f = mul / sqrt(ss + 1e-6);
    }
    const float ff = (float)f;
#pragma omp simd
    for (int i = 0; i < n; i++) y[i] = x[i] * ff;
}

/* One step of eq. (2) without the output: Sn = a Sp + k̂ δᵀ, δ = β (v − a Spᵀ k̂).
 * Sn may equal Sp.  Writes v − u to rr. */
static void step(const float *Sp, float *Sn, const float *k, const float *v, float a, float beta, float *u, float *rr,
                 int Dk, int Dv)
{
    for (int c = 0; c < Dv; c++) u[c] = 0.0f;
    for (int i = 0; i < Dk; i++) {
        const float ki = k[i];
        const float *s = Sp + (size_t)i * Dv;
#pragma omp simd
        for (int c = 0; c < Dv; c++) u[c] += ki * s[c];
    }
#pragma omp simd
    for (int c = 0; c < Dv; c++) {
        rr[c] = v[c] - a * u[c];
        u[c] = beta * rr[c]; /* δ from here on */
    }
    for (int i = 0; i < Dk; i++) {
        const float ki = k[i];
        const float *s = Sp + (size_t)i * Dv;
        float *d = Sn + (size_t)i * Dv;
#pragma omp simd
        for (int c = 0; c < Dv; c++) d[c] = a * s[c] + ki * u[c];
    }
}

typedef struct {
    const deltarule_grad_problem *p;
    int C;
    float scale;
    float *xq, *xk; /* [B,T,Hv,Dk]: dL/dN(q) (scale applied) and dL/dN(k) per value head */
} task_ctx;

static void task(const task_ctx *x, workspace *w, int b, int h)
{
    const deltarule_problem *f = x->p->fwd;
    const int T = f->T, Hk = f->Hk, Hv = f->Hv, Dk = f->Dk, Dv = f->Dv, hk = h / (Hv / Hk), C = x->C;
    const int n = deltarule_valid_len(f, b), nblk = (n + C - 1) / C;
    const int l2 = f->use_qk_l2norm;
    const size_t soff = ((size_t)b * Hv + h) * Dk * Dv; /* this head's state in [B, Hv, Dk, Dv] */
    float *dS = w->dS;

    /* padding: zero gradients; valid tokens: zero the sums the column blocks add to */
    for (int t = 0; t < T; t++) {
        const size_t tok = (size_t)b * T + t;
        if (t >= n) memset(x->p->dv + (tok * Hv + h) * Dv, 0, sizeof(float) * Dv);
        memset(x->xq + (tok * Hv + h) * Dk, 0, sizeof(float) * Dk);
        memset(x->xk + (tok * Hv + h) * Dk, 0, sizeof(float) * Dk);
        x->p->dg[tok * Hv + h] = x->p->dbeta[tok * Hv + h] = 0.0f;
    }

    /* Column blocks of NC value columns, one after the other: every quantity
     * of (2) and (B1)-(B7) is column-separable but the sums dq̂, dk̂, dg, dβ,
     * which add up over the blocks.  A block's states are Dk x nc floats. */
    for (int c0 = 0; c0 < Dv; c0 += NC) {
        const int nc = Dv - c0 < NC ? Dv - c0 : NC;
        const size_t ss = (size_t)Dk * nc;
        /* forward once, keeping S before every block: ckpt[j+1] = block j applied to ckpt[j] */
        for (int i = 0; i < Dk; i++)
            if (f->initial_state) memcpy(w->ckpt + (size_t)i * nc, f->initial_state + soff + (size_t)i * Dv + c0, sizeof(float) * nc);
            else memset(w->ckpt + (size_t)i * nc, 0, sizeof(float) * nc);
        for (int j = 0; j + 1 < nblk; j++) {
            float *S = w->ckpt + (size_t)(j + 1) * ss;
            memcpy(S, w->ckpt + (size_t)j * ss, sizeof(float) * ss);
            for (int t = j * C; t < (j + 1) * C; t++) {
                const size_t tok = (size_t)b * T + t;
                normalize(f->k + (tok * Hk + hk) * Dk, Dk, l2, 1.0f, w->kh);
                step(S, S, w->kh, f->v + (tok * Hv + h) * Dv + c0, expf(f->g[tok * Hv + h]), f->beta[tok * Hv + h],
                     w->u, w->rr, Dk, nc);
            }
        }

        /* (B0) */
        for (int i = 0; i < Dk; i++)
            if (x->p->d_final_state) memcpy(dS + (size_t)i * nc, x->p->d_final_state + soff + (size_t)i * Dv + c0, sizeof(float) * nc);
            else memset(dS + (size_t)i * nc, 0, sizeof(float) * nc);

        for (int j = nblk - 1; j >= 0; j--) {
            const int t0 = j * C, L = n - t0 < C ? n - t0 : C;
            const float *S0 = w->ckpt + (size_t)j * ss;
            /* (B9) recompute the block's states from its checkpoint */
            for (int i = 0; i < L; i++) {
                const size_t tok = (size_t)b * T + t0 + i;
                normalize(f->q + (tok * Hk + hk) * Dk, Dk, l2, x->scale, w->qh + (size_t)i * Dk);
                normalize(f->k + (tok * Hk + hk) * Dk, Dk, l2, 1.0f, w->kh + (size_t)i * Dk);
                w->dec[i] = expf(f->g[tok * Hv + h]);
                w->beta[i] = f->beta[tok * Hv + h];
                step(i ? w->buf + (size_t)(i - 1) * ss : S0, w->buf + (size_t)i * ss, w->kh + (size_t)i * Dk,
                     f->v + (tok * Hv + h) * Dv + c0, w->dec[i], w->beta[i], w->u, w->rr + (size_t)i * nc, Dk, nc);
            }
            /* sweep it backward */
            for (int i = L - 1; i >= 0; i--) {
                const size_t tok = (size_t)b * T + t0 + i;
                const float *St = w->buf + (size_t)i * ss, *Sp = i ? w->buf + (size_t)(i - 1) * ss : S0;
                const float *q = w->qh + (size_t)i * Dk, *k = w->kh + (size_t)i * Dk, *rr = w->rr + (size_t)i * nc;
                const float *dout = x->p->d_out + (tok * Hv + h) * Dv + c0;
                const float a = w->dec[i], beta = w->beta[i];
                float *xq = x->xq + (tok * Hv + h) * Dk, *xk = x->xk + (tok * Hv + h) * Dk;
                float *ddelta = w->ddelta, *du = w->du;
                for (int c = 0; c < nc; c++) ddelta[c] = 0.0f;
                /* (B1) dq̂ = S_t do, dS += q̂ doᵀ;  (B2) dδ = dSᵀ k̂, dk̂ = dS δ */
                for (int r = 0; r < Dk; r++) {
                    float *d = dS + (size_t)r * nc;
                    const float *s = St + (size_t)r * nc;
                    const float qr = q[r], kr = k[r];
                    float aq = 0.0f, ak = 0.0f;
#pragma omp simd reduction(+ : aq, ak)
                    for (int c = 0; c < nc; c++) {
                        aq += s[c] * dout[c];
                        const float e = d[c] + qr * dout[c];
                        d[c] = e;
                        ddelta[c] += kr * e;
                        ak += e * (beta * rr[c]);
                    }
                    xq[r] += x->scale * aq;
                    xk[r] += ak;
                }
                /* (B3) dv = β dδ, dβ = dδ·(v − u), du = −β dδ */
                float *dv = x->p->dv + (tok * Hv + h) * Dv + c0;
                double dbeta = 0.0;
                for (int c = 0; c < nc; c++) {
                    dv[c] = beta * ddelta[c];
                    dbeta += (double)ddelta[c] * rr[c];
                    du[c] = -beta * ddelta[c];
                }
                x->p->dbeta[tok * Hv + h] += (float)dbeta;
                /* (B4) dS' = dS + k̂ duᵀ, dk̂ += a S_{t-1} du;  (B5) dg = a <dS', S_{t-1}>;  (B6) dS = a dS' */
                double dg = 0.0;
                for (int r = 0; r < Dk; r++) {
                    float *d = dS + (size_t)r * nc;
                    const float *s = Sp + (size_t)r * nc;
                    const float kr = k[r];
                    float ak = 0.0f, ag = 0.0f;
#pragma omp simd reduction(+ : ak, ag)
                    for (int c = 0; c < nc; c++) {
                        const float e = d[c] + kr * du[c];
                        ak += s[c] * du[c];
                        ag += e * s[c];
                        d[c] = a * e;
                    }
                    xk[r] += a * ak;
                    dg += ag;
                }
                x->p->dg[tok * Hv + h] += (float)(a * dg);
            }
        }
        /* (B7) */
        if (f->initial_state)
            for (int i = 0; i < Dk; i++)
                memcpy(x->p->d_initial_state + soff + (size_t)i * Dv + c0, dS + (size_t)i * nc, sizeof(float) * nc);
    }
}

/* (B8): dx = (y − x̂ (x̂·y)) / r for x̂ = x / r, in double; y is the sum over
 * the r value heads' rows of X (rows hk·r .. hk·r + r − 1). */
static void finish_row(const float *x, const float *X, int rep, int Dk, int l2, float *dx)
{
    double y[64], *yy = Dk <= 64 ? y : malloc(sizeof(double) * Dk);
    if (!yy) { for (int i = 0; i < Dk; i++) dx[i] = NAN; return; }
    for (int i = 0; i < Dk; i++) {
        double s = 0.0;
        for (int j = 0; j < rep; j++) s += X[(size_t)j * Dk + i];
        yy[i] = s;
    }
    if (l2) {
        double ss = 0.0, xy = 0.0;
        for (int i = 0; i < Dk; i++) { ss += (double)x[i] * x[i]; xy += (double)x[i] * yy[i]; }
        const double r = sqrt(ss + 1e-6), c = xy / (r * r);
        for (int i = 0; i < Dk; i++) dx[i] = (float)((yy[i] - x[i] * c) / r);
    } else {
        for (int i = 0; i < Dk; i++) dx[i] = (float)yy[i];
    }
    if (yy != y) free(yy);
}

int deltarule_grad_recurrent(const deltarule_grad_problem *p, const deltarule_opts *o, deltarule_grad_stats *st)
{
    const deltarule_problem *f = p->fwd;
    const int B = f->B, T = f->T, Hk = f->Hk, Hv = f->Hv, Dk = f->Dk, Dv = f->Dv, rep = Hv / Hk;
    const int C = o->chunk > 0 ? o->chunk : 64;
    int nblk = 1; /* the most blocks any sequence has (at least one checkpoint slot) */
    for (int b = 0; b < B; b++) {
        const int n = deltarule_valid_len(f, b), nb = (n + C - 1) / C;
        if (nb > nblk) nblk = nb;
    }
    const size_t nx = (size_t)B * T * Hv * Dk;
    task_ctx x = {p, C, deltarule_scale(f), p->dq, p->dk};
    float *scratch = NULL;
    if (rep > 1) { /* a key head's value heads write rows of their own */
        scratch = malloc(sizeof(float) * 2 * nx);
        if (!scratch) return -1;
        x.xq = scratch;
        x.xk = scratch + nx;
    }
    const int ntask = B * Hv;
    int failed = 0, nthreads = 1;
#pragma omp parallel num_threads(o->threads > 0 ? o->threads : omp_get_max_threads())
    {
#pragma omp single
        nthreads = omp_get_num_threads() < ntask ? omp_get_num_threads() : ntask;
        workspace w = {0};
        const int ok = ws_alloc(&w, nblk, C, Dk, Dv < NC ? Dv : NC) == 0;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < ntask; t++)
            if (ok) task(&x, &w, t / Hv, t % Hv);
        if (ok) free(w.ckpt);
    }
    if (!failed) {
        /* (B8) per (b, t, key head); in place when rep = 1 (the row is read before it is written) */
#pragma omp parallel for num_threads(o->threads > 0 ? o->threads : omp_get_max_threads())
        for (size_t row = 0; row < (size_t)B * T * Hk; row++) {
            const size_t xrow = row * rep; /* (b, t, hk) -> (b, t, hk·rep) */
            finish_row(f->q + row * Dk, x.xq + xrow * Dk, rep, Dk, f->use_qk_l2norm, p->dq + row * Dk);
            finish_row(f->k + row * Dk, x.xk + xrow * Dk, rep, Dk, f->use_qk_l2norm, p->dk + row * Dk);
        }
    }
    if (st)
        st->bytes_held = sizeof(float) * ((size_t)nthreads * ws_floats(nblk, C, Dk, Dv < NC ? Dv : NC) + (scratch ? 2 * nx : 0));
    free(scratch);
    return failed ? -1 : 0;
}
