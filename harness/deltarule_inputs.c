#include "harness/deltarule_inputs.h"

#include "common/errmsg.h"
#include "common/huge_pages.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const regime_names[DR_REGIME_COUNT] = {
    "random", "slow-decay", "strong-decay", "correlated-keys", "repeated-tokens", "zero-gates", "long"};

const char *dr_regime_name(int r) { return r >= 0 && r < DR_REGIME_COUNT ? regime_names[r] : "?"; }

int dr_regime_from_name(const char *name)
{
    for (int r = 0; r < DR_REGIME_COUNT; r++)
        if (!strcmp(name, regime_names[r])) return r;
    return -1;
}

size_t dr_qk_elems(const deltarule_problem *p) { return (size_t)p->B * p->T * p->Hk * p->Dk; }
size_t dr_v_elems(const deltarule_problem *p) { return (size_t)p->B * p->T * p->Hv * p->Dv; }
size_t dr_gate_elems(const deltarule_problem *p) { return (size_t)p->B * p->T * p->Hv; }
size_t dr_state_elems(const deltarule_problem *p) { return (size_t)p->B * p->Hv * p->Dk * p->Dv; }

static double log_sigmoid(double x) { return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)); }
static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

static void fill_normal(gsl_rng *r, float *x, size_t n, double sd)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)gsl_ran_gaussian(r, sd);
}

/* Keys of one key head share a direction c: k = 3c + n with |c| = 1 and
 * n ~ N(0, I/Dk), so |n| ~ 1 and pairwise cosine ~ 9/10. */
static int correlated_keys(gsl_rng *r, const deltarule_problem *p, float *k)
{
    float *c = malloc(sizeof(float) * (size_t)p->Hk * p->Dk);
    if (!c) return -1;
    for (int h = 0; h < p->Hk; h++) {
        double ss = 0.0;
        float *ch = c + (size_t)h * p->Dk;
        for (int d = 0; d < p->Dk; d++) { ch[d] = (float)gsl_ran_gaussian(r, 1.0); ss += (double)ch[d] * ch[d]; }
        for (int d = 0; d < p->Dk; d++) ch[d] = (float)(ch[d] / sqrt(ss));
    }
    const double sd = 1.0 / sqrt((double)p->Dk);
    for (size_t bt = 0; bt < (size_t)p->B * p->T; bt++)
        for (int h = 0; h < p->Hk; h++)
            for (int d = 0; d < p->Dk; d++)
                k[(bt * p->Hk + h) * p->Dk + d] = 3.0f * c[(size_t)h * p->Dk + d] + (float)gsl_ran_gaussian(r, sd);
    free(c);
    return 0;
}

/* Runs of identical tokens (q, k, v, g, beta), run lengths 1..16. */
static void repeat_runs(gsl_rng *r, dr_case *c)
{
    const deltarule_problem *p = &c->p;
    const size_t qk = (size_t)p->Hk * p->Dk, vv = (size_t)p->Hv * p->Dv, gg = p->Hv;
    for (int b = 0; b < p->B; b++) {
        int t = 0;
        while (t < p->T) {
            const int run = 1 + (int)gsl_rng_uniform_int(r, 16);
            const size_t src = (size_t)b * p->T + t;
            for (int i = 1; i < run && t + i < p->T; i++) {
                const size_t dst = src + i;
                memcpy(c->q + dst * qk, c->q + src * qk, sizeof(float) * qk);
                memcpy(c->k + dst * qk, c->k + src * qk, sizeof(float) * qk);
                memcpy(c->v + dst * vv, c->v + src * vv, sizeof(float) * vv);
                memcpy(c->g + dst * gg, c->g + src * gg, sizeof(float) * gg);
                memcpy(c->beta + dst * gg, c->beta + src * gg, sizeof(float) * gg);
            }
            t += run;
        }
    }
}

static void fill_gates(gsl_rng *r, dr_case *c, int regime)
{
    const deltarule_problem *p = &c->p;
    const size_t n = dr_gate_elems(p);
    for (size_t i = 0; i < n; i++) {
        const int t = (int)((i / p->Hv) % p->T);
        double g = log_sigmoid(gsl_ran_gaussian(r, 1.0));
        switch (regime) {
        case DR_REGIME_SLOW_DECAY: g = t < p->T / 2 ? 1e-3 * g : 0.0; break;
        case DR_REGIME_STRONG_DECAY: g = -(1e-4 + gsl_rng_uniform(r) * (20.0 - 1e-4)); break;
        case DR_REGIME_CORRELATED_KEYS: g *= 0.1; break;
        case DR_REGIME_REPEATED_TOKENS: g *= 1e-3; break;
        default: break;
        }
        c->g[i] = (float)g;
        c->beta[i] = (float)sigmoid(gsl_ran_gaussian(r, 1.0));
        if (regime == DR_REGIME_ZERO_GATES && gsl_rng_uniform(r) < 0.3) c->g[i] = c->beta[i] = 0.0f;
    }
}

#define BIG_BYTES ((size_t)2 << 20)

float *dr_big_alloc(size_t bytes, size_t *huge)
{
    *huge = bytes >= BIG_BYTES ? bytes : 0;
    return *huge ? q35_alloc_huge(bytes) : malloc(bytes);
}

void dr_big_free(float *p, size_t huge)
{
    if (huge) q35_free_huge(p, huge);
    else free(p);
}

void dr_case_free(dr_case *c)
{
    dr_big_free(c->q, c->qk_huge_bytes); dr_big_free(c->k, c->qk_huge_bytes); dr_big_free(c->v, c->v_huge_bytes);
    dr_big_free(c->out, c->out_huge_bytes); free(c->g); free(c->beta);
    free(c->initial_state); free(c->final_state); free(c->seq_len);
    memset(c, 0, sizeof *c);
}

int dr_case_alloc_outputs(const dr_case *c, float **out, float **final_state)
{
    *out = calloc(dr_v_elems(&c->p), sizeof(float));
    *final_state = calloc(dr_state_elems(&c->p), sizeof(float));
    if (*out && *final_state) return 0;
    free(*out); free(*final_state);
    *out = *final_state = NULL;
    return -1;
}

int dr_case_make(dr_case *c, const dr_shape *s, int regime, unsigned long seed, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    deltarule_problem *p = &c->p;
    *p = (deltarule_problem){.B = s->B, .T = s->T, .Hk = s->Hk, .Hv = s->Hv, .Dk = s->Dk, .Dv = s->Dv,
                             .use_qk_l2norm = 1};
    if (regime == DR_REGIME_LONG && p->T < 2048) p->T = 2048;
    if (regime < 0 || regime >= DR_REGIME_COUNT) {
        q35_errmsg(err, errlen, "unknown input regime %d", regime);
        return -1;
    }
    if (p->B <= 0 || p->T <= 0 || p->Hk <= 0 || p->Hv <= 0 || p->Dk <= 0 || p->Dv <= 0 || p->Hv % p->Hk) {
        q35_errmsg(err, errlen, "bad shape B=%d T=%d Hk=%d Hv=%d Dk=%d Dv=%d", p->B, p->T, p->Hk, p->Hv, p->Dk, p->Dv);
        return -1;
    }
    c->q = dr_big_alloc(sizeof(float) * dr_qk_elems(p), &c->qk_huge_bytes);
    c->k = dr_big_alloc(sizeof(float) * dr_qk_elems(p), &c->qk_huge_bytes);
    c->v = dr_big_alloc(sizeof(float) * dr_v_elems(p), &c->v_huge_bytes);
    c->out = dr_big_alloc(sizeof(float) * dr_v_elems(p), &c->out_huge_bytes);
    c->g = malloc(sizeof(float) * dr_gate_elems(p));
    c->beta = malloc(sizeof(float) * dr_gate_elems(p));
    c->final_state = calloc(dr_state_elems(p), sizeof(float));
    int ok = c->q && c->k && c->v && c->out && c->g && c->beta && c->final_state;
    if (ok) memset(c->out, 0, sizeof(float) * dr_v_elems(p));
    if (ok && s->with_initial_state) ok = (c->initial_state = malloc(sizeof(float) * dr_state_elems(p))) != NULL;
    if (ok && s->with_seq_len) ok = (c->seq_len = malloc(sizeof(int32_t) * p->B)) != NULL;
    if (!ok) {
        dr_case_free(c);
        q35_errmsg(err, errlen, "out of memory for a B=%d T=%d problem", s->B, s->T);
        return -1;
    }
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, seed * 1000003ul + (unsigned long)regime);
    fill_normal(r, c->q, dr_qk_elems(p), 1.0);
    fill_normal(r, c->k, dr_qk_elems(p), 1.0);
    fill_normal(r, c->v, dr_v_elems(p), 1.0);
    if (regime == DR_REGIME_CORRELATED_KEYS && correlated_keys(r, p, c->k)) {
        gsl_rng_free(r);
        dr_case_free(c);
        q35_errmsg(err, errlen, "out of memory for correlated keys");
        return -1;
    }
    fill_gates(r, c, regime);
    if (regime == DR_REGIME_REPEATED_TOKENS) repeat_runs(r, c);
    if (c->initial_state) fill_normal(r, c->initial_state, dr_state_elems(p), 0.5);
    if (c->seq_len) /* sequence 0 full, the others anywhere in [0, T] */
        for (int b = 0; b < p->B; b++) c->seq_len[b] = b == 0 ? p->T : (int32_t)gsl_rng_uniform_int(r, p->T + 1);
    gsl_rng_free(r);
    p->q = c->q; p->k = c->k; p->v = c->v; p->g = c->g; p->beta = c->beta;
    p->initial_state = c->initial_state; p->seq_len = c->seq_len;
    p->out = c->out; p->final_state = c->final_state;
    return 0;
}
