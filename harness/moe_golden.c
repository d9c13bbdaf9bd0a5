#include "harness/moe_golden.h"

#include "common/errmsg.h"
#include "common/safetensors.h"
#include "ref/moe_ref.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void moe_golden_free(moe_golden *g)
{
    moe_case_free(&g->c);
    free(g->expect_out);
    free(g->expect_ids);
    free(g->expect_weights);
    free(g->expect_logits);
    memset(g, 0, sizeof *g);
}

/* A metadata number: absent -> dflt; present but not a finite number -> error. */
static int meta_double(const st_file *f, const char *key, double dflt, double *out, const char *path, char *err,
                       size_t errlen)
{
    const char *s = st_meta(f, key);
    if (!s) { *out = dflt; return 0; }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || v < 0) {
        q35_errmsg(err, errlen, "%s: metadata '%s' = \"%s\" is not a finite non-negative number", path, key, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* A metadata integer: absent -> *out = -1. */
static int meta_int(const st_file *f, const char *key, int *out, const char *path, char *err, size_t errlen)
{
    const char *s = st_meta(f, key);
    if (!s) { *out = -1; return 0; }
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < 1 || v > (1 << 24)) {
        q35_errmsg(err, errlen, "%s: metadata '%s' = \"%s\" is not an integer in [1, 2^24]", path, key, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* "1"/"0" or "true"/"false" (any case: Python writes True/False); absent: 1,
 * as Qwen3.5-MoE always renormalizes. */
static int meta_bool(const st_file *f, const char *key, int *out, const char *path, char *err, size_t errlen)
{
    const char *s = st_meta(f, key);
    if (!s) { *out = 1; return 0; }
    if (!strcmp(s, "1") || !strcasecmp(s, "true")) { *out = 1; return 0; }
    if (!strcmp(s, "0") || !strcasecmp(s, "false")) { *out = 0; return 0; }
    q35_errmsg(err, errlen, "%s: metadata '%s' must be \"1\"/\"0\" or \"true\"/\"false\" (got \"%s\")", path, key, s);
    return -1;
}

static int is_bf16_exact(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const float r = q35_bf16_to_f32(q35_f32_to_bf16(x[i]));
        if (!(r == x[i]) && !(isnan(r) && isnan(x[i]))) return 0;
    }
    return 1;
}

static int dim_ok(int64_t d) { return d >= 1 && d <= (1 << 24); }

/* st_load_f32 with the file's path in front of its message. */
static int load_f32(const st_file *f, const char *name, int ndim, const int64_t *expect, float **out, const char *path,
                    char *err, size_t errlen)
{
    char why[384];
    if (!st_load_f32(f, name, ndim, expect, out, why, sizeof why)) return 0;
    q35_errmsg(err, errlen, "%s: %s", path, why);
    return -1;
}

#define TRY(x) do { if (x) goto fail; } while (0)
#define BAD(...) do { q35_errmsg(err, errlen, __VA_ARGS__); goto fail; } while (0)

int moe_golden_load(const char *path, moe_golden *g, const moe_golden_opts *o, char *err, size_t errlen)
{
    static const moe_golden_opts none = {0, 0};
    if (!o) o = &none;
    memset(g, 0, sizeof *g);
    g->c.special_expert = -1;
    if (errlen) err[0] = 0;
    st_file f;
    if (st_open(path, &f, err, errlen)) return -1;
    float *x = NULL, *router = NULL, *gate = NULL, *up = NULL, *gate_up = NULL, *down = NULL;
    float *sg = NULL, *su = NULL, *sd = NULL, *seg = NULL;

    const st_tensor *tx = st_find(&f, "x"), *tr = st_find(&f, "router_weight");
    if (!tx || !tr || tx->ndim != 2 || tr->ndim != 2)
        BAD("%s: needs 2-d tensors 'x' [T,hidden] and 'router_weight' [E,hidden]", path);
    if (!dim_ok(tx->shape[0]) || !dim_ok(tx->shape[1]) || !dim_ok(tr->shape[0]))
        BAD("%s: 'x' and 'router_weight' dimensions must be in [1, 2^24]", path);
    const int T = (int)tx->shape[0], H = (int)tx->shape[1], E = (int)tr->shape[0];
    const st_tensor *tg = st_find(&f, "gate_proj"), *tgu = st_find(&f, "gate_up_proj");
    int NI;
    if (tg) {
        if (tg->ndim != 3 || !dim_ok(tg->shape[1])) BAD("%s: tensor 'gate_proj' must be [E,I,hidden]", path);
        NI = (int)tg->shape[1];
    } else if (tgu) { /* HF's fused checkpoint tensor [E, 2I, hidden] */
        if (tgu->ndim != 3 || tgu->shape[1] % 2 || !dim_ok(tgu->shape[1] / 2))
            BAD("%s: tensor 'gate_up_proj' must be [E,2I,hidden]", path);
        NI = (int)(tgu->shape[1] / 2);
    } else
        BAD("%s: needs tensor 'gate_proj' [E,I,hidden] (or 'gate_up_proj' [E,2I,hidden])", path);
    const st_tensor *ts = st_find(&f, "shared_gate_proj");
    int Is = 0;
    if (ts) {
        if (ts->ndim != 2 || !dim_ok(ts->shape[0])) BAD("%s: tensor 'shared_gate_proj' must be [Is,hidden]", path);
        Is = (int)ts->shape[0];
    } else {
        static const char *const others[] = {"shared_up_proj", "shared_down_proj", "shared_expert_gate"};
        for (int i = 0; i < 3; i++)
            if (st_find(&f, others[i])) BAD("%s: tensor '%s' without 'shared_gate_proj'", path, others[i]);
    }
    const st_tensor *tid = st_find(&f, "topk_ids");
    if (!tid || tid->ndim != 2 || tid->shape[0] != T || tid->shape[1] < 1 || tid->shape[1] > E)
        BAD("%s: needs tensor 'topk_ids' [T=%d, k] with 1 <= k <= E=%d", path, T, E);
    const int k = (int)tid->shape[1];

    /* dtypes: the weights keep BF16 when every weight tensor is BF16 */
    static const char *const wnames[] = {"router_weight", "gate_proj", "up_proj", "gate_up_proj", "down_proj",
                                         "shared_gate_proj", "shared_up_proj", "shared_down_proj",
                                         "shared_expert_gate"};
    g->file_bf16 = 1;
    for (size_t i = 0; i < sizeof wnames / sizeof *wnames; i++) {
        const st_tensor *t = st_find(&f, wnames[i]);
        if (t && t->dtype != ST_BF16) g->file_bf16 = 0;
    }

    const int64_t sx[] = {T, H}, sr[] = {E, H}, sgu[] = {E, NI, H}, sdn[] = {E, H, NI};
    TRY(load_f32(&f, "x", 2, sx, &x, path, err, errlen));
    TRY(load_f32(&f, "router_weight", 2, sr, &router, path, err, errlen));
    if (tg) {
        TRY(load_f32(&f, "gate_proj", 3, sgu, &gate, path, err, errlen));
        TRY(load_f32(&f, "up_proj", 3, sgu, &up, path, err, errlen));
    } else {
        const int64_t sf[] = {E, 2 * (int64_t)NI, H};
        TRY(load_f32(&f, "gate_up_proj", 3, sf, &gate_up, path, err, errlen));
        const size_t IH = (size_t)NI * H;
        gate = malloc(sizeof(float) * E * IH);
        up = malloc(sizeof(float) * E * IH);
        if (!gate || !up) BAD("%s: out of memory", path);
        for (size_t e = 0; e < (size_t)E; e++) {
            memcpy(gate + e * IH, gate_up + e * 2 * IH, sizeof(float) * IH);
            memcpy(up + e * IH, gate_up + e * 2 * IH + IH, sizeof(float) * IH);
        }
    }
    TRY(load_f32(&f, "down_proj", 3, sdn, &down, path, err, errlen));
    if (Is) {
        const int64_t ssg[] = {Is, H}, ssd[] = {H, Is}, sseg[] = {1, H};
        TRY(load_f32(&f, "shared_gate_proj", 2, ssg, &sg, path, err, errlen));
        TRY(load_f32(&f, "shared_up_proj", 2, ssg, &su, path, err, errlen));
        TRY(load_f32(&f, "shared_down_proj", 2, ssd, &sd, path, err, errlen));
        const st_tensor *tsg = st_find(&f, "shared_expert_gate");
        if (tsg && tsg->ndim == 1) { const int64_t s1[] = {H}; TRY(load_f32(&f, "shared_expert_gate", 1, s1, &seg, path, err, errlen)); }
        else TRY(load_f32(&f, "shared_expert_gate", 2, sseg, &seg, path, err, errlen));
    }

    /* metadata */
    int meta_k, meta_e, norm;
    TRY(meta_int(&f, "top_k", &meta_k, path, err, errlen));
    TRY(meta_int(&f, "num_experts", &meta_e, path, err, errlen));
    if (meta_k > 0 && meta_k != k) BAD("%s: metadata top_k=%d but 'topk_ids' has k=%d columns", path, meta_k, k);
    if (meta_e > 0 && meta_e != E) BAD("%s: metadata num_experts=%d but 'router_weight' has E=%d rows", path, meta_e, E);
    TRY(meta_bool(&f, "norm_topk_prob", &norm, path, err, errlen));
    TRY(meta_double(&f, "atol", MOE_GOLDEN_DEFAULT_ATOL, &g->atol, path, err, errlen));
    TRY(meta_double(&f, "rtol", MOE_GOLDEN_DEFAULT_RTOL, &g->rtol, path, err, errlen));

    /* expectations */
    const int64_t so[] = {T, H}, sk[] = {T, k}, sl[] = {T, E};
    TRY(load_f32(&f, "out", 2, so, &g->expect_out, path, err, errlen));
    TRY(load_f32(&f, "topk_weights", 2, sk, &g->expect_weights, path, err, errlen));
    if (st_find(&f, "router_logits")) TRY(load_f32(&f, "router_logits", 2, sl, &g->expect_logits, path, err, errlen));
    if (!(g->expect_ids = malloc(sizeof(int32_t) * (size_t)T * k))) BAD("%s: out of memory", path);
    {
        char why[384];
        if (st_read_i32(tid, g->expect_ids, (size_t)T * k, why, sizeof why)) BAD("%s: tensor 'topk_ids': %s", path, why);
    }
    for (int t = 0; t < T; t++)
        for (int j = 0; j < k; j++) {
            const int32_t id = g->expect_ids[(size_t)t * k + j];
            if (id < 0 || id >= E) BAD("%s: topk_ids[%d][%d]=%d outside [0, E=%d)", path, t, j, id, E);
            for (int i = 0; i < j; i++)
                if (g->expect_ids[(size_t)t * k + i] == id) BAD("%s: topk_ids[%d] names expert %d twice", path, t, id);
        }

    /* the problem */
    int rounded = 0;
    q35_wtype wt = g->file_bf16 ? WT_BF16 : WT_F32;
    if (o->as_bf16 && !g->file_bf16) {
        const size_t IH = (size_t)NI * H;
        const int exact = is_bf16_exact(router, (size_t)E * H) && is_bf16_exact(gate, E * IH) &&
                          is_bf16_exact(up, E * IH) && is_bf16_exact(down, E * IH) &&
                          (!Is || (is_bf16_exact(sg, (size_t)Is * H) && is_bf16_exact(su, (size_t)Is * H) &&
                                   is_bf16_exact(sd, (size_t)Is * H) && is_bf16_exact(seg, (size_t)H)));
        wt = WT_BF16;
        rounded = !exact;
    }
    const moe_shape shape = {T, H, E, k, NI, Is, norm, wt, o->fused_gate_up, 0.0, MOE_ROUTING_RANDOM};
    const moe_f32_tensors w = {x, router, gate, up, down, sg, su, sd, seg};
    char why[256];
    if (moe_case_from_f32(&g->c, &shape, &w, why, sizeof why)) BAD("%s: %s", path, why);
    if (moe_validate(&g->c.p, 1, why, sizeof why)) BAD("%s: %s", path, why);
    if (rounded) {
        /* The file's expectations are for the unrounded weights: use ref's on the rounded ones. */
        moe_problem q = g->c.p;
        q.out = g->expect_out;
        q.topk_ids = g->expect_ids;
        q.topk_weights = g->expect_weights;
        if (!g->expect_logits && !(g->expect_logits = malloc(sizeof(float) * (size_t)T * E))) BAD("%s: out of memory", path);
        q.router_logits = g->expect_logits;
        if (moe_run(&moe_ref_impl, &q, NULL, NULL, why, sizeof why)) BAD("%s: ref on bf16 weights: %s", path, why);
        g->expect_from_ref = 1;
    }
    free(x); free(router); free(gate); free(up); free(gate_up); free(down); free(sg); free(su); free(sd); free(seg);
    st_close(&f);
    return 0;
fail:
    if (!err[0]) q35_errmsg(err, errlen, "%s: out of memory", path);
    free(x); free(router); free(gate); free(up); free(gate_up); free(down); free(sg); free(su); free(sd); free(seg);
    st_close(&f);
    moe_golden_free(g);
    return -1;
}

int moe_golden_write(const char *path, const moe_problem *p, const float *out, const int32_t *ids,
                     const float *weights, const float *logits, double atol, double rtol, const char *note,
                     char *err, size_t errlen)
{
    static const struct { const char *file, *name; } wmap[] = {
        {"router_weight", "router"}, {"gate_proj", "gate_proj"}, {"up_proj", "up_proj"},
        {"down_proj", "down_proj"}, {"shared_gate_proj", "shared_gate_proj"}, {"shared_up_proj", "shared_up_proj"},
        {"shared_down_proj", "shared_down_proj"}, {"shared_expert_gate", "shared_expert_gate"}};
    enum { NW = sizeof wmap / sizeof *wmap };
    const int64_t H = p->hidden, E = p->E, NI = p->inter, Is = p->inter_shared, T = p->T, k = p->top_k;
    const int64_t shapes[NW][3] = {{E, H}, {E, NI, H}, {E, NI, H}, {E, H, NI}, {Is, H}, {Is, H}, {H, Is}, {1, H}};
    const int ndims[NW] = {2, 3, 3, 3, 2, 2, 2, 2};
    void *bufs[NW] = {0};
    const int nw = p->inter_shared > 0 ? NW : 4;
    const int64_t sx[] = {T, H}, sk[] = {T, k}, sl[] = {T, E};
    st_writer *w = st_writer_new();
    int rc = !w;
    rc = rc || st_writer_add(w, "x", ST_F32, 2, sx, p->x);
    for (int i = 0; i < nw && !rc; i++) {
        size_t n = 0;
        float *f = moe_weight_f32(p, wmap[i].name, &n);
        if (!f) { rc = 1; break; }
        if (p->wt == WT_BF16) { /* the values are bf16: the conversion back is exact */
            uint16_t *b = malloc(sizeof(uint16_t) * n);
            if (b) q35_f32_to_bf16_array(f, b, n);
            free(f);
            if (!(bufs[i] = b)) { rc = 1; break; }
            rc = st_writer_add(w, wmap[i].file, ST_BF16, ndims[i], shapes[i], b);
        } else {
            bufs[i] = f;
            rc = st_writer_add(w, wmap[i].file, ST_F32, ndims[i], shapes[i], f);
        }
    }
    rc = rc || st_writer_add(w, "out", ST_F32, 2, sx, out) || st_writer_add(w, "topk_ids", ST_I32, 2, sk, ids) ||
         st_writer_add(w, "topk_weights", ST_F32, 2, sk, weights);
    if (!rc && logits) rc = st_writer_add(w, "router_logits", ST_F32, 2, sl, logits);
    rc = rc || st_writer_meta(w, "kernel", "qwen3_5_moe_block") || st_writer_meta(w, "hidden_act", "silu");
    rc = rc || st_writer_meta_num(w, "num_experts", p->E, 10) || st_writer_meta_num(w, "top_k", p->top_k, 10) ||
         st_writer_meta(w, "norm_topk_prob", p->norm_topk_prob ? "1" : "0") ||
         st_writer_meta_num(w, "atol", atol, 3) || st_writer_meta_num(w, "rtol", rtol, 3);
    if (!rc && note) rc = st_writer_meta(w, "note", note);
    if (rc) {
        q35_errmsg(err, errlen, "%s: could not build the file: %s", path,
                 w && st_writer_error(w)[0] ? st_writer_error(w) : "out of memory");
        rc = -1;
    } else
        rc = st_writer_write(w, path, err, errlen);
    st_writer_free(w);
    for (int i = 0; i < NW; i++) free(bufs[i]);
    return rc;
}

size_t moe_count_id_mismatch(const int32_t *a, const int32_t *b, int T, int k, int *first)
{
    size_t bad = 0;
    if (first) *first = -1;
    for (int t = 0; t < T; t++) {
        int same = 1;
        for (int j = 0; j < k && same; j++) {
            int found = 0;
            for (int i = 0; i < k; i++) found |= a[(size_t)t * k + i] == b[(size_t)t * k + j];
            same = found;
        }
        if (!same) {
            if (!bad && first) *first = t;
            bad++;
        }
    }
    return bad;
}

void moe_compare_outputs(const moe_problem *p, const float *out, const int32_t *ids, const float *weights,
                         const float *logits, const float *e_out, const int32_t *e_ids, const float *e_weights,
                         const float *e_logits, double atol, double rtol, moe_compare *r)
{
    memset(r, 0, sizeof *r);
    r->first_bad_token = -1;
    const size_t n = (size_t)p->T * p->hidden;
    const int k = p->top_k;
    r->out = err_compare(out, e_out, n);
    r->bad_out = err_allclose_violations(out, e_out, n, atol, rtol, &r->first_bad_out);
    if (ids && e_ids) {
        int first;
        r->bad_ids = moe_count_id_mismatch(ids, e_ids, p->T, k, &first);
        r->first_bad_token = first;
        if (weights && e_weights)
            for (int t = 0; t < p->T; t++)
                for (int j = 0; j < k; j++) /* match expected pair j by id */
                    for (int i = 0; i < k; i++)
                        if (ids[(size_t)t * k + i] == e_ids[(size_t)t * k + j]) {
                            const double we = e_weights[(size_t)t * k + j], wx = weights[(size_t)t * k + i];
                            const double d = fabs(wx - we);
                            if (!(d <= atol + rtol * fabs(we))) r->bad_weights++;
                            if (d > r->max_weight_err || d != d) r->max_weight_err = d;
                        }
    }
    if (logits && e_logits) {
        const size_t nl = (size_t)p->T * p->E;
        r->bad_logits = err_allclose_violations(logits, e_logits, nl, atol, rtol, NULL);
        for (size_t i = 0; i < nl; i++) {
            const double d = fabs((double)logits[i] - e_logits[i]);
            if (d > r->max_logit_err || d != d) r->max_logit_err = d;
        }
    }
}

int moe_compare_pass(const moe_compare *r)
{
    return !r->bad_out && !r->bad_ids && !r->bad_weights && !r->bad_logits && !r->out.nonfinite;
}

int moe_golden_check(moe_golden *g, const moe_impl *impl, const moe_opts *o, moe_compare *r, char *err,
                     size_t errlen)
{
    moe_problem *p = &g->c.p;
    const size_t th = (size_t)p->T * p->hidden, tk = (size_t)p->T * p->top_k, te = (size_t)p->T * p->E;
    /* NaN / -1 first, so an output the implementation does not write fails */
    for (size_t i = 0; i < th; i++) g->c.out[i] = NAN;
    for (size_t i = 0; i < tk; i++) { g->c.topk_ids[i] = -1; g->c.topk_weights[i] = NAN; }
    for (size_t i = 0; i < te; i++) g->c.router_logits[i] = NAN;
    if (moe_run(impl, p, o, NULL, err, errlen)) return -1;
    moe_compare_outputs(p, g->c.out, g->c.topk_ids, g->c.topk_weights, g->c.router_logits, g->expect_out,
                        g->expect_ids, g->expect_weights, g->expect_logits, g->atol, g->rtol, r);
    return 0;
}
