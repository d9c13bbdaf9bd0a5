#include "harness/moe_inputs.h"

#include "common/errmsg.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const routing_names[MOE_ROUTING_COUNT] = {"random", "one-expert", "empty-expert", "ties"};

const char *moe_routing_name(int r) { return r >= 0 && r < MOE_ROUTING_COUNT ? routing_names[r] : "?"; }

int moe_routing_from_name(const char *name)
{
    for (int r = 0; r < MOE_ROUTING_COUNT; r++)
        if (!strcmp(name, routing_names[r])) return r;
    return -1;
}

const char *moe_wtype_name(q35_wtype wt) { return wt == WT_BF16 ? "bf16" : wt == WT_F32 ? "f32" : "?"; }

/* Normal draws use GSL's ziggurat (fast; the same sequence on every platform). */
/* How strongly tokens lean on the special directions (docs/moe.md §6). */
#define MU_HOT 4.0     /* skew: a token's component along a hot direction is skew * U(0.5, 1.5) * MU_HOT */
#define MU_SPECIAL 8.0 /* one-expert / empty-expert: every token has MU_SPECIAL along c */
#define MAX_REDRAWS 1000

void moe_case_free(moe_case *c)
{
    free(c->x); free(c->out); free(c->topk_weights); free(c->router_logits); free(c->topk_ids);
    free(c->router); free(c->gate); free(c->up); free(c->gate_up); free(c->down);
    free(c->shared_gate); free(c->shared_up); free(c->shared_down); free(c->shared_expert_gate);
    memset(c, 0, sizeof *c);
    c->special_expert = -1;
}

int moe_alloc_outputs(const moe_problem *p, float **out, int32_t **ids, float **weights, float **logits)
{
    const size_t th = (size_t)p->T * p->hidden, tk = (size_t)p->T * p->top_k, te = (size_t)p->T * p->E;
    int ok = 1;
    if (out) ok &= (*out = malloc(sizeof(float) * th)) != NULL;
    if (ids) ok &= (*ids = malloc(sizeof(int32_t) * tk)) != NULL;
    if (weights) ok &= (*weights = malloc(sizeof(float) * tk)) != NULL;
    if (logits) ok &= (*logits = malloc(sizeof(float) * te)) != NULL;
    if (ok) return 0;
    if (out) { free(*out); *out = NULL; }
    if (ids) { free(*ids); *ids = NULL; }
    if (weights) { free(*weights); *weights = NULL; }
    if (logits) { free(*logits); *logits = NULL; }
    return -1;
}

/* A copy of n fp32 values in dtype wt (bf16: rounded to nearest even). */
static void *convert(const float *src, size_t n, q35_wtype wt)
{
    void *dst = malloc(q35_wtype_bytes(wt, n) + 1);
    if (!dst) return NULL;
    if (wt == WT_BF16) q35_f32_to_bf16_array(src, dst, n);
    else memcpy(dst, src, n * sizeof(float));
    return dst;
}

static int shape_ok(const moe_shape *s, char *err, size_t errlen)
{
    if (s->T < 1 || s->hidden < 1 || s->E < 1 || s->inter < 1 || s->inter_shared < 0 || s->top_k < 1 || s->top_k > s->E ||
        s->T > (1 << 24) || s->hidden > (1 << 24) || s->E > (1 << 24) || s->inter > (1 << 24) || s->inter_shared > (1 << 24)) {
        q35_errmsg(err, errlen, "bad MoE shape T=%d hidden=%d E=%d top_k=%d I=%d Is=%d", s->T, s->hidden, s->E,
                 s->top_k, s->inter, s->inter_shared);
        return -1;
    }
    if (s->wt != WT_F32 && s->wt != WT_BF16) {
        q35_errmsg(err, errlen, "bad weight dtype %d", (int)s->wt);
        return -1;
    }
    return 0;
}

int moe_case_from_f32(moe_case *c, const moe_shape *s, const moe_f32_tensors *w, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    c->special_expert = -1;
    if (shape_ok(s, err, errlen)) return -1;
    if (!w->x || !w->router || !w->gate || !w->up || !w->down ||
        (s->inter_shared > 0 && (!w->shared_gate || !w->shared_up || !w->shared_down || !w->shared_expert_gate))) {
        q35_errmsg(err, errlen, "moe_case_from_f32: a required tensor is missing");
        return -1;
    }
    const size_t H = s->hidden, E = s->E, NI = s->inter, Is = s->inter_shared, T = s->T, IH = NI * H;
    const q35_wtype wt = s->wt;
    moe_problem *p = &c->p;
    int ok = (c->x = malloc(sizeof(float) * T * H)) != NULL;
    if (ok) memcpy(c->x, w->x, sizeof(float) * T * H);
    ok = ok && (c->router = convert(w->router, E * H, wt)) && (c->down = convert(w->down, E * H * NI, wt));
    if (ok && s->fused_gate_up) {
        /* [E, 2I, H]: expert e's gate rows, then its up rows (HF's gate_up_proj) */
        float *gu = malloc(sizeof(float) * E * 2 * IH);
        if ((ok = gu != NULL)) {
            for (size_t e = 0; e < E; e++) {
                memcpy(gu + e * 2 * IH, w->gate + e * IH, sizeof(float) * IH);
                memcpy(gu + e * 2 * IH + IH, w->up + e * IH, sizeof(float) * IH);
            }
            ok = (c->gate_up = convert(gu, E * 2 * IH, wt)) != NULL;
            free(gu);
        }
    } else if (ok) {
        ok = (c->gate = convert(w->gate, E * IH, wt)) && (c->up = convert(w->up, E * IH, wt));
    }
    if (ok && Is > 0)
        ok = (c->shared_gate = convert(w->shared_gate, Is * H, wt)) && (c->shared_up = convert(w->shared_up, Is * H, wt)) &&
             (c->shared_down = convert(w->shared_down, H * Is, wt)) &&
             (c->shared_expert_gate = convert(w->shared_expert_gate, H, wt));
    *p = (moe_problem){.T = s->T, .hidden = s->hidden, .E = s->E, .top_k = s->top_k, .inter = s->inter, .inter_shared = s->inter_shared,
                       .norm_topk_prob = s->norm_topk_prob, .wt = wt};
    ok = ok && moe_alloc_outputs(p, &c->out, &c->topk_ids, &c->topk_weights, &c->router_logits) == 0;
    if (!ok) {
        moe_case_free(c);
        q35_errmsg(err, errlen, "out of memory for a MoE problem T=%d hidden=%d E=%d I=%d", s->T, s->hidden, s->E, s->inter);
        return -1;
    }
    p->x = c->x;
    p->router = c->router;
    p->down_proj = c->down;
    if (s->fused_gate_up) {
        p->gate_proj = c->gate_up;
        p->up_proj = (const char *)c->gate_up + q35_wtype_bytes(wt, IH);
        p->expert_stride_gu = 2 * IH;
    } else {
        p->gate_proj = c->gate;
        p->up_proj = c->up;
        p->expert_stride_gu = 0;
    }
    if (Is > 0) {
        p->shared_gate = c->shared_gate;
        p->shared_up = c->shared_up;
        p->shared_down = c->shared_down;
        p->shared_expert_gate = c->shared_expert_gate;
    }
    p->out = c->out;
    p->topk_ids = c->topk_ids;
    p->topk_weights = c->topk_weights;
    p->router_logits = c->router_logits;
    return 0;
}

float *moe_weight_f32(const moe_problem *p, const char *name, size_t *n)
{
    const size_t H = p->hidden, E = p->E, NI = p->inter, Is = p->inter_shared, IH = NI * H;
    const void *src = NULL;
    size_t cnt = 0, ld = H; /* ld: elements a row (q35_w_rc reads any layout, the interleaved ones too) */
    q35_wtype wt = p->wt;
    int per_expert_gu = 0; /* 1: gate, 2: up (strided per expert) */
    if (!strcmp(name, "router")) { src = p->router; cnt = E * H; wt = moe_router_wt(p); }
    else if (!strcmp(name, "gate_proj")) { per_expert_gu = 1; cnt = E * IH; }
    else if (!strcmp(name, "up_proj")) { per_expert_gu = 2; cnt = E * IH; }
    else if (!strcmp(name, "down_proj")) { src = p->down_proj; cnt = E * H * NI; ld = NI; }
    else if (!strcmp(name, "shared_gate_proj")) { src = p->shared_gate; cnt = Is * H; }
    else if (!strcmp(name, "shared_up_proj")) { src = p->shared_up; cnt = Is * H; }
    else if (!strcmp(name, "shared_down_proj")) { src = p->shared_down; cnt = H * Is; ld = Is; }
    else if (!strcmp(name, "shared_expert_gate")) {
        src = p->inter_shared > 0 ? p->shared_expert_gate : NULL;
        cnt = H;
        wt = moe_router_wt(p);
    }
    else return NULL;
    if ((!per_expert_gu && !src) || cnt == 0) return NULL;
    float *dst = malloc(sizeof(float) * cnt);
    if (!dst) return NULL;
    if (per_expert_gu)
        for (size_t e = 0; e < E; e++) {
            const void *W = per_expert_gu == 1 ? moe_gate(p, (int)e) : moe_up(p, (int)e);
            for (size_t i = 0; i < IH; i++) dst[e * IH + i] = q35_w_rc(W, wt, H, i / H, i % H);
        }
    else
        for (size_t i = 0; i < cnt; i++) dst[i] = q35_w_rc(src, wt, ld, i / ld, i % ld);
    if (n) *n = cnt;
    return dst;
}

/* ------------------------------------------------------------------ */
/* Clear top-k                                                          */
/* ------------------------------------------------------------------ */

static int cmp_desc(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* Router logits of token t in double from p's own weights. */
static void logits_double(const moe_problem *p, int t, double *l)
{
    const float *x = p->x + (size_t)t * p->hidden;
    for (int e = 0; e < p->E; e++) {
        double acc = 0.0;
        for (int h = 0; h < p->hidden; h++)
            acc += (double)q35_w_at(p->router, moe_router_wt(p), (size_t)e * p->hidden + h) * x[h];
        l[e] = acc;
    }
}

/* Token t's k-th largest logit v: every logit equals v exactly or is at
 * least margin away from it.  l and tmp hold E doubles. */
static int token_clear(const moe_problem *p, int t, double margin, double *l, double *tmp)
{
    if (p->top_k >= p->E) return 1;
    logits_double(p, t, l);
    memcpy(tmp, l, sizeof(double) * p->E);
    qsort(tmp, (size_t)p->E, sizeof(double), cmp_desc);
    const double v = tmp[p->top_k - 1];
    for (int e = 0; e < p->E; e++)
        if (l[e] != v && fabs(l[e] - v) < margin) return 0;
    return 1;
}

int moe_first_unclear_token(const moe_problem *p, double margin)
{
    double *l = malloc(sizeof(double) * p->E), *tmp = malloc(sizeof(double) * p->E);
    int bad = -2;
    if (l && tmp) {
        bad = -1;
        for (int t = 0; t < p->T && bad < 0; t++)
            if (!token_clear(p, t, margin, l, tmp)) bad = t;
    }
    free(l); free(tmp);
    return bad;
}

/* Rank of expert e among token t's logits l (0: first; ties to the lower index). */
static int rank_of(const double *l, int E, int e)
{
    int r = 0;
    for (int j = 0; j < E; j++) r += l[j] > l[e] || (l[j] == l[e] && j < e);
    return r;
}

/* ------------------------------------------------------------------ */
/* Drawing a problem                                                    */
/* ------------------------------------------------------------------ */

typedef struct {
    const moe_shape *s;
    double *dirs;  /* n_hot unit directions (skew) or one (c: one-/empty-expert) */
    int n_dirs;
} token_gen;

static void fill_normal(gsl_rng *r, float *x, size_t n, double sd)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)gsl_ran_gaussian_ziggurat(r, sd);
}

static void unit_vector(gsl_rng *r, double *d, int n)
{
    double ss = 0.0;
    for (int i = 0; i < n; i++) { d[i] = gsl_ran_gaussian_ziggurat(r, 1.0); ss += d[i] * d[i]; }
    const double inv = 1.0 / sqrt(ss);
    for (int i = 0; i < n; i++) d[i] *= inv;
}

/* One token: z ~ N(0, I) plus the routing's components (docs/moe.md §6). */
static void draw_token(gsl_rng *r, const token_gen *g, float *row)
{
    const moe_shape *s = g->s;
    const int H = s->hidden;
    double *acc = g->dirs ? g->dirs + (size_t)g->n_dirs * H : NULL; /* scratch after the directions */
    for (int h = 0; h < H; h++) row[h] = (float)gsl_ran_gaussian_ziggurat(r, 1.0);
    if (!acc) return;
    for (int h = 0; h < H; h++) acc[h] = row[h];
    if (s->routing == MOE_ROUTING_RANDOM)
        for (int j = 0; j < g->n_dirs; j++) {
            const double a = s->skew * (0.5 + gsl_rng_uniform(r)) * MU_HOT;
            for (int h = 0; h < H; h++) acc[h] += a * g->dirs[(size_t)j * H + h];
        }
    else
        for (int h = 0; h < H; h++) acc[h] += MU_SPECIAL * g->dirs[h];
    for (int h = 0; h < H; h++) row[h] = (float)acc[h];
}

/* Token t is usable: a clear top-k, and the special expert first (one-expert)
 * or outside the top-k (empty-expert). */
static int token_ok(const moe_case *c, const moe_shape *s, int t, double *l, double *tmp)
{
    if (!token_clear(&c->p, t, MOE_ROUTE_MARGIN, l, tmp)) return 0;
    if (s->routing == MOE_ROUTING_ONE_EXPERT || s->routing == MOE_ROUTING_EMPTY_EXPERT) {
        logits_double(&c->p, t, l);
        const int r = rank_of(l, s->E, c->special_expert);
        return s->routing == MOE_ROUTING_ONE_EXPERT ? r == 0 : r >= s->top_k;
    }
    return 1;
}

int moe_case_make(moe_case *c, const moe_shape *s, unsigned long seed, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    c->special_expert = -1;
    if (shape_ok(s, err, errlen)) return -1;
    if (s->routing < 0 || s->routing >= MOE_ROUTING_COUNT) {
        q35_errmsg(err, errlen, "unknown MoE routing %d", s->routing);
        return -1;
    }
    if (!(s->skew >= 0.0 && s->skew <= 1.0)) {
        q35_errmsg(err, errlen, "router skew %g outside [0, 1]", s->skew);
        return -1;
    }
    if (s->routing == MOE_ROUTING_EMPTY_EXPERT && s->top_k >= s->E) {
        q35_errmsg(err, errlen, "routing empty-expert needs top_k < E (top_k=%d, E=%d)", s->top_k, s->E);
        return -1;
    }
    const int T = s->T, H = s->hidden, E = s->E, NI = s->inter, Is = s->inter_shared;
    const size_t IH = (size_t)NI * H;
    float *x = malloc(sizeof(float) * T * H), *router = malloc(sizeof(float) * E * H);
    float *gate = malloc(sizeof(float) * E * IH), *up = malloc(sizeof(float) * E * IH);
    float *down = malloc(sizeof(float) * E * IH);
    float *sg = malloc(sizeof(float) * ((size_t)Is * H + 1)), *su = malloc(sizeof(float) * ((size_t)Is * H + 1));
    float *sd = malloc(sizeof(float) * ((size_t)Is * H + 1)), *seg = malloc(sizeof(float) * H);
    int n_hot = s->routing == MOE_ROUTING_RANDOM && s->skew > 0 ? (s->top_k + 1 < E ? s->top_k + 1 : E) : 0;
    const int n_dirs = s->routing == MOE_ROUTING_RANDOM ? n_hot
                       : (s->routing == MOE_ROUTING_ONE_EXPERT || s->routing == MOE_ROUTING_EMPTY_EXPERT) ? 1 : 0;
    double *dirs = n_dirs ? malloc(sizeof(double) * (size_t)(n_dirs + 1) * H) : NULL;
    size_t *experts = malloc(sizeof(size_t) * E), *hot = malloc(sizeof(size_t) * (n_hot + 1));
    double *l = malloc(sizeof(double) * E), *tmp = malloc(sizeof(double) * E);
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937), *retry = gsl_rng_alloc(gsl_rng_mt19937);
    int rc = -1;
    if (!x || !router || !gate || !up || !down || !sg || !su || !sd || !seg || (n_dirs && !dirs) || !experts ||
        !hot || !l || !tmp || !r || !retry) {
        q35_errmsg(err, errlen, "out of memory for a MoE problem T=%d hidden=%d E=%d I=%d", T, H, E, NI);
        goto done;
    }
    gsl_rng_set(r, seed * 1000003ul + (unsigned long)s->routing * 7919ul + 11ul);

    /* Weights, scale 1/sqrt(fan_in): the same draws for every dtype and layout. */
    const double sh = 1.0 / sqrt((double)H);
    fill_normal(r, router, (size_t)E * H, sh);
    fill_normal(r, gate, (size_t)E * IH, sh);
    fill_normal(r, up, (size_t)E * IH, sh);
    fill_normal(r, down, (size_t)E * IH, 1.0 / sqrt((double)NI));
    if (Is > 0) {
        fill_normal(r, sg, (size_t)Is * H, sh);
        fill_normal(r, su, (size_t)Is * H, sh);
        fill_normal(r, sd, (size_t)Is * H, 1.0 / sqrt((double)Is));
        fill_normal(r, seg, (size_t)H, sh);
    }

    /* Routing structure on the router rows (each row has norm ~1). */
    for (int j = 0; j < n_dirs; j++) unit_vector(r, dirs + (size_t)j * H, H);
    switch (s->routing) {
    case MOE_ROUTING_RANDOM:
        if (n_hot) { /* hot expert j: sqrt(1-s^2) r + s d_j */
            for (int e = 0; e < E; e++) experts[e] = (size_t)e;
            gsl_ran_choose(r, hot, (size_t)n_hot, experts, (size_t)E, sizeof(size_t));
            const double a = sqrt(1.0 - s->skew * s->skew);
            for (int j = 0; j < n_hot; j++) {
                float *row = router + hot[j] * H;
                for (int h = 0; h < H; h++) row[h] = (float)(a * row[h] + s->skew * dirs[(size_t)j * H + h]);
            }
        }
        break;
    case MOE_ROUTING_ONE_EXPERT:
    case MOE_ROUTING_EMPTY_EXPERT: { /* 0.1 r +- c */
        c->special_expert = (int)gsl_rng_uniform_int(r, (unsigned long)E);
        const double sign = s->routing == MOE_ROUTING_ONE_EXPERT ? 1.0 : -1.0;
        float *row = router + (size_t)c->special_expert * H;
        for (int h = 0; h < H; h++) row[h] = (float)(0.1 * row[h] + sign * dirs[h]);
        break;
    }
    case MOE_ROUTING_TIES: { /* the last E/2 rows copy the first E/2 */
        const int half = E / 2;
        for (int e = E - half; e < E; e++)
            memcpy(router + (size_t)e * H, router + (size_t)(e - (E - half)) * H, sizeof(float) * H);
        break;
    }
    default: break;
    }

    const token_gen g = {s, dirs, n_dirs};
    for (int t = 0; t < T; t++) draw_token(r, &g, x + (size_t)t * H);

    const moe_f32_tensors w = {x, router, gate, up, down, Is ? sg : NULL, Is ? su : NULL, Is ? sd : NULL,
                               Is ? seg : NULL};
    const int special = c->special_expert;
    if (moe_case_from_f32(c, s, &w, err, errlen)) goto done;
    c->special_expert = special;
    c->n_hot = n_hot;

    /* Redraw (from a stream of their own, so other tokens keep their values)
     * the tokens without a clear top-k or not routed as the routing says. */
    for (int t = 0; t < T; t++) {
        int tries = 0;
        gsl_rng_set(retry, seed * 7919ul + (unsigned long)t * 104729ul + 3ul);
        while (!token_ok(c, s, t, l, tmp)) {
            if (++tries > MAX_REDRAWS) {
                q35_errmsg(err, errlen, "could not draw token %d with a clear top-%d (routing %s, skew %g) in %d tries",
                         t, s->top_k, moe_routing_name(s->routing), s->skew, MAX_REDRAWS);
                moe_case_free(c);
                goto done;
            }
            draw_token(retry, &g, c->x + (size_t)t * H);
        }
    }
    rc = 0;
done:
    free(x); free(router); free(gate); free(up); free(down); free(sg); free(su); free(sd); free(seg);
    free(dirs); free(experts); free(hot); free(l); free(tmp);
    if (r) gsl_rng_free(r);
    if (retry) gsl_rng_free(retry);
    return rc;
}
