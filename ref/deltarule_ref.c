/* Scalar reference of the gated delta rule: the executable spec.
 *
 * Straight from docs/deltarule.md eqs. (1)-(2), token by token, in double.
 * Readable first; never optimized.  Same signature as every kernel in
 * kernels/deltarule/, so it can take any one's place (BLIS style).
 */
#include "ref/deltarule_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* eq. (1): x <- x / sqrt(sum x^2 + 1e-6), in double. */
static void l2normalize(double *x, int n)
{
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double inv = 1.0 / sqrt(ss + 1e-6);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

/* The state after token t, if t is the next checkpoint (deltarule.h). */
static void write_checkpoint(const deltarule_problem *p, int b, int h, int t, const double *S, int *next)
{
    if (*next >= p->n_checkpoints || p->checkpoint_t[*next] != t) return;
    float *dst = deltarule_checkpoint_state(p, (*next)++, b, h);
    for (size_t i = 0; i < (size_t)p->Dk * p->Dv; i++) dst[i] = (float)S[i];
}

static int ref_one_head(const deltarule_problem *p, int b, int h,
                        double *S, double *q, double *k, double *u)
{
    const int T = p->T, Hk = p->Hk, Hv = p->Hv, Dk = p->Dk, Dv = p->Dv;
    const int hk = h / (Hv / Hk); /* interleaved repeat, eq. (1) */
    const double scale = deltarule_scale(p);
    const int len = deltarule_valid_len(p, b);
    const size_t state_off = ((size_t)b * Hv + h) * (size_t)Dk * Dv;

    for (size_t i = 0; i < (size_t)Dk * Dv; i++)
        S[i] = p->initial_state ? p->initial_state[state_off + i] : 0.0;

    int next_ck = 0; /* the next checkpoint to write (checkpoint_t ascending) */
    for (int t = 0; t < T; t++) {
        const size_t tok = (size_t)b * T + t;
        float *o = p->out + (tok * Hv + h) * Dv;
        if (t >= len) { /* right padding: zero output, state untouched */
            memset(o, 0, sizeof(float) * Dv);
            write_checkpoint(p, b, h, t, S, &next_ck); /* the final state, as the spec says */
            continue;
        }
        const float *qt = p->q + (tok * Hk + hk) * Dk;
        const float *kt = p->k + (tok * Hk + hk) * Dk;
        const float *vt = p->v + (tok * Hv + h) * Dv;
        const double g = p->g[tok * Hv + h], beta = p->beta[tok * Hv + h];

        for (int i = 0; i < Dk; i++) { q[i] = qt[i]; k[i] = kt[i]; }
        if (p->use_qk_l2norm) { l2normalize(q, Dk); l2normalize(k, Dk); }
        for (int i = 0; i < Dk; i++) q[i] *= scale;

        /* eq. (2): S' = exp(g) S */
        const double decay = exp(g);
        for (size_t i = 0; i < (size_t)Dk * Dv; i++) S[i] *= decay;
        /* u = S'^T k */
        for (int j = 0; j < Dv; j++) {
            double acc = 0.0;
            for (int i = 0; i < Dk; i++) acc += S[(size_t)i * Dv + j] * k[i];
            u[j] = acc;
        }
        /* delta = beta (v - u);  S = S' + k delta^T */
        for (int j = 0; j < Dv; j++) {
            double delta = beta * ((double)vt[j] - u[j]);
            for (int i = 0; i < Dk; i++) S[(size_t)i * Dv + j] += k[i] * delta;
        }
        /* o = S^T q */
        for (int j = 0; j < Dv; j++) {
            double acc = 0.0;
            for (int i = 0; i < Dk; i++) acc += S[(size_t)i * Dv + j] * q[i];
            o[j] = (float)acc;
        }
        write_checkpoint(p, b, h, t, S, &next_ck);
    }
    if (p->final_state)
        for (size_t i = 0; i < (size_t)Dk * Dv; i++)
            p->final_state[state_off + i] = (float)S[i];
    return 0;
}

int deltarule_ref(const deltarule_problem *p, const deltarule_opts *o)
{
    (void)o; /* the reference has no knobs */
    double *S = malloc(sizeof(double) * (size_t)p->Dk * p->Dv);
    double *q = malloc(sizeof(double) * (size_t)p->Dk);
    double *k = malloc(sizeof(double) * (size_t)p->Dk);
    double *u = malloc(sizeof(double) * (size_t)p->Dv);
    int rc = (S && q && k && u) ? 0 : -1;
    for (int b = 0; b < p->B && rc == 0; b++)
        for (int h = 0; h < p->Hv && rc == 0; h++)
            rc = ref_one_head(p, b, h, S, q, k, u);
    free(S); free(q); free(k); free(u);
    return rc;
}

const deltarule_impl deltarule_ref_impl = {"ref", "scalar reference, double accumulation (ref/deltarule_ref.c)",
     deltarule_ref, {0}, DR_CLAIM_ALL, 1e-6, NULL, 0};
