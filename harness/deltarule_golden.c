#include "harness/deltarule_golden.h"
#include "common/float_checks.h"

#include "common/errmsg.h"
#include "common/safetensors.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dr_golden_free(dr_golden *g)
{
    dr_case_free(&g->c);
    free(g->expect_out);
    free(g->expect_state);
    free(g->d_out);
    free(g->d_final_state);
    for (int i = 0; i < DR_GRAD_COUNT; i++) free(g->expect_grad[i]);
    memset(g, 0, sizeof *g);
}

/* A metadata number: absent -> dflt; present but not a finite number -> error. */
static int meta_double(const st_file *f, const char *key, double dflt, double *out,
                       const char *path, char *err, size_t errlen)
{
    const char *s = st_meta(f, key);
    if (!s) { *out = dflt; return 0; }
    /* Python dumpers may write numpy's repr, "np.float64(0.35)": read the number inside */
    char inner[64];
    const size_t len = strlen(s);
    if (!strncmp(s, "np.float", 8) && len < sizeof inner && s[len - 1] == ')' && strchr(s, '(')) {
        const char *open = strchr(s, '(') + 1;
        snprintf(inner, sizeof inner, "%.*s", (int)(s + len - 1 - open), open);
        s = inner;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v)) {
        q35_errmsg(err, errlen, "%s: metadata '%s' = \"%s\" is not a finite number", path, key, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* st_load_f32 with the file's path in front of its message. */
static int load_f32(const st_file *f, const char *name, int ndim, const int64_t *expect, float **out,
                    const char *path, char *err, size_t errlen)
{
    char why[384];
    if (!st_load_f32(f, name, ndim, expect, out, why, sizeof why)) return 0;
    q35_errmsg(err, errlen, "%s: %s", path, why);
    return -1;
}

#define TRY(x) do { if (x) goto fail; } while (0)

/* The gradient tensors, all or none (dr_golden_load).  0 (none is fine), or
 * -1 with a message listing what is missing. */
static int load_grads(const st_file *f, dr_golden *g, const char *path, char *err, size_t errlen)
{
    const deltarule_problem *p = &g->c.p;
    static const char *const required[] = {"d_out", "dq", "dk", "dv", "dg", "dbeta"};
    const int nreq = (int)(sizeof required / sizeof *required);
    int present = 0;
    char missing[160] = "";
    for (int i = 0; i < nreq; i++) {
        if (st_find(f, required[i])) present++;
        else snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s", missing[0] ? ", " : "",
                      required[i]);
    }
    const int has_dh0 = st_find(f, "d_initial_state") != NULL, has_dfs = st_find(f, "d_final_state") != NULL;
    if (!present && !has_dh0 && !has_dfs) return 0; /* a forward-only golden */
    if (present < nreq) {
        q35_errmsg(err, errlen, "%s: incomplete gradient golden: it has gradient tensors but not %s (a gradient "
                   "golden needs d_out, dq, dk, dv, dg, dbeta, and d_initial_state with an initial_state)", path,
                   missing);
        return -1;
    }
    if (has_dh0 != (p->initial_state != NULL)) {
        q35_errmsg(err, errlen, p->initial_state ? "%s: incomplete gradient golden: it has an initial_state but "
                                                   "no expected 'd_initial_state'"
                                                 : "%s: gradient golden has 'd_initial_state' but no "
                                                   "'initial_state' to differentiate",
                   path);
        return -1;
    }
    const int64_t sqk[] = {p->B, p->T, p->Hk, p->Dk}, sv[] = {p->B, p->T, p->Hv, p->Dv};
    const int64_t sg[] = {p->B, p->T, p->Hv}, ss[] = {p->B, p->Hv, p->Dk, p->Dv};
    const struct { int ndim; const int64_t *shape; } shape_of[DR_GRAD_COUNT] = {
        [DR_GRAD_DQ] = {4, sqk}, [DR_GRAD_DK] = {4, sqk}, [DR_GRAD_DV] = {4, sv},
        [DR_GRAD_DG] = {3, sg},  [DR_GRAD_DBETA] = {3, sg}, [DR_GRAD_DH0] = {4, ss}};
    if (load_f32(f, "d_out", 4, sv, &g->d_out, path, err, errlen)) return -1;
    if (has_dfs && load_f32(f, "d_final_state", 4, ss, &g->d_final_state, path, err, errlen)) return -1;
    for (int i = 0; i < DR_GRAD_COUNT; i++) {
        if (i == DR_GRAD_DH0 && !has_dh0) continue;
        if (load_f32(f, dr_grad_name(i), shape_of[i].ndim, shape_of[i].shape, &g->expect_grad[i], path, err, errlen))
            return -1;
    }
    size_t at;
    const char *bad = q35_first_nonfinite(g->d_out, dr_v_elems(p), &at) ? "d_out"
                      : g->d_final_state && q35_first_nonfinite(g->d_final_state, dr_state_elems(p), &at) ? "d_final_state"
                                                                                                      : NULL;
    if (bad) {
        q35_errmsg(err, errlen, "%s: upstream gradient '%s' has a non-finite value at flat index %zu", path, bad, at);
        return -1;
    }
    g->has_grad = 1;
    return 0;
}

int dr_golden_load(const char *path, dr_golden *g, char *err, size_t errlen)
{
    memset(g, 0, sizeof *g);
    if (errlen) err[0] = 0;
    st_file f;
    if (st_open(path, &f, err, errlen)) return -1;
    deltarule_problem *p = &g->c.p;
    const st_tensor *tq = st_find(&f, "q"), *tv = st_find(&f, "v");
    if (!tq || !tv || tq->ndim != 4 || tv->ndim != 4) {
        q35_errmsg(err, errlen, "%s: needs 4-d tensors 'q' [B,T,Hk,Dk] and 'v' [B,T,Hv,Dv]", path);
        goto fail;
    }
    for (int i = 0; i < 4; i++)
        if (tq->shape[i] <= 0 || tq->shape[i] > (1 << 24) || tv->shape[i] <= 0 || tv->shape[i] > (1 << 24)) {
            q35_errmsg(err, errlen, "%s: q and v dimensions must be in [1, 2^24]", path);
            goto fail;
        }
    p->B = (int)tq->shape[0]; p->T = (int)tq->shape[1]; p->Hk = (int)tq->shape[2]; p->Dk = (int)tq->shape[3];
    p->Hv = (int)tv->shape[2]; p->Dv = (int)tv->shape[3];
    const int64_t sqk[] = {p->B, p->T, p->Hk, p->Dk}, sv[] = {p->B, p->T, p->Hv, p->Dv};
    const int64_t sg[] = {p->B, p->T, p->Hv}, ss[] = {p->B, p->Hv, p->Dk, p->Dv};
    TRY(load_f32(&f, "q", 4, sqk, &g->c.q, path, err, errlen));
    TRY(load_f32(&f, "k", 4, sqk, &g->c.k, path, err, errlen));
    TRY(load_f32(&f, "v", 4, sv, &g->c.v, path, err, errlen));
    TRY(load_f32(&f, "g", 3, sg, &g->c.g, path, err, errlen));
    TRY(load_f32(&f, "beta", 3, sg, &g->c.beta, path, err, errlen));
    TRY(load_f32(&f, "out", 4, sv, &g->expect_out, path, err, errlen));
    TRY(load_f32(&f, "final_state", 4, ss, &g->expect_state, path, err, errlen));
    if (st_find(&f, "initial_state")) TRY(load_f32(&f, "initial_state", 4, ss, &g->c.initial_state, path, err, errlen));
    const st_tensor *tl = st_find(&f, "seq_len");
    if (tl) {
        if (tl->ndim != 1 || tl->shape[0] != p->B) {
            q35_errmsg(err, errlen, "%s: tensor 'seq_len': expected shape [%d]", path, p->B);
            goto fail;
        }
        TRY(!(g->c.seq_len = malloc(sizeof(int32_t) * p->B)));
        char why[384];
        if (st_read_i32(tl, g->c.seq_len, p->B, why, sizeof why)) {
            q35_errmsg(err, errlen, "%s: %s", path, why);
            goto fail;
        }
    }
    const char *l2 = st_meta(&f, "use_qk_l2norm");
    if (!l2 || (strcmp(l2, "0") && strcmp(l2, "1"))) {
        q35_errmsg(err, errlen, "%s: metadata 'use_qk_l2norm' must be \"1\" or \"0\" (got %s)", path, l2 ? l2 : "nothing");
        goto fail;
    }
    p->use_qk_l2norm = l2[0] == '1';
    const char *rep = st_meta(&f, "qk_heads_repeat");
    if (rep && strcmp(rep, "interleave")) {
        q35_errmsg(err, errlen, "%s: qk_heads_repeat \"%s\" is not supported (only \"interleave\")", path, rep);
        goto fail;
    }
    double scale;
    TRY(meta_double(&f, "scale", 0.0, &scale, path, err, errlen));
    TRY(meta_double(&f, "atol", DR_GOLDEN_DEFAULT_ATOL, &g->atol, path, err, errlen));
    TRY(meta_double(&f, "rtol", DR_GOLDEN_DEFAULT_RTOL, &g->rtol, path, err, errlen));
    if (g->atol < 0 || g->rtol < 0) { /* |got - want| <= atol + rtol |want| could then never hold */
        q35_errmsg(err, errlen, "%s: metadata atol = %g, rtol = %g: tolerances must be >= 0", path, g->atol, g->rtol);
        goto fail;
    }
    p->scale = (float)scale;
    TRY(dr_case_alloc_outputs(&g->c, &g->c.out, &g->c.final_state));
    p->q = g->c.q; p->k = g->c.k; p->v = g->c.v; p->g = g->c.g; p->beta = g->c.beta;
    p->initial_state = g->c.initial_state; p->seq_len = g->c.seq_len;
    p->out = g->c.out; p->final_state = g->c.final_state;
    char why[256];
    if (deltarule_validate(p, 1, why, sizeof why)) {
        q35_errmsg(err, errlen, "%s: %s", path, why);
        goto fail;
    }
    TRY(load_grads(&f, g, path, err, errlen));
    st_close(&f);
    return 0;
fail:
    if (!err[0]) q35_errmsg(err, errlen, "%s: out of memory", path);
    st_close(&f);
    dr_golden_free(g);
    return -1;
}

int dr_golden_write(const char *path, const dr_case *c, const float *out, const float *final_state,
                    double atol, double rtol, const char *note, char *err, size_t errlen)
{
    const deltarule_problem *p = &c->p;
    const int64_t sqk[] = {p->B, p->T, p->Hk, p->Dk}, sv[] = {p->B, p->T, p->Hv, p->Dv};
    const int64_t sg[] = {p->B, p->T, p->Hv}, ss[] = {p->B, p->Hv, p->Dk, p->Dv}, sl[] = {p->B};
    st_writer *w = st_writer_new();
    int rc = !w;
    rc = rc || st_writer_add(w, "q", ST_F32, 4, sqk, p->q) || st_writer_add(w, "k", ST_F32, 4, sqk, p->k) ||
         st_writer_add(w, "v", ST_F32, 4, sv, p->v) || st_writer_add(w, "g", ST_F32, 3, sg, p->g) ||
         st_writer_add(w, "beta", ST_F32, 3, sg, p->beta) || st_writer_add(w, "out", ST_F32, 4, sv, out) ||
         st_writer_add(w, "final_state", ST_F32, 4, ss, final_state);
    if (!rc && p->initial_state) rc = st_writer_add(w, "initial_state", ST_F32, 4, ss, p->initial_state);
    if (!rc && p->seq_len) rc = st_writer_add(w, "seq_len", ST_I32, 1, sl, p->seq_len);
    rc = rc || st_writer_meta(w, "use_qk_l2norm", p->use_qk_l2norm ? "1" : "0");
    rc = rc || st_writer_meta_num(w, "scale", (double)deltarule_scale(p), 9) ||
         st_writer_meta(w, "l2norm_eps", "1e-6") || st_writer_meta(w, "qk_heads_repeat", "interleave") ||
         st_writer_meta_num(w, "atol", atol, 3) || st_writer_meta_num(w, "rtol", rtol, 3);
    if (!rc && note) rc = st_writer_meta(w, "note", note);
    if (rc) {
        q35_errmsg(err, errlen, "%s: could not build the file: %s", path, w ? st_writer_error(w) : "out of memory");
        st_writer_free(w);
        return -1;
    }
    rc = st_writer_write(w, path, err, errlen);
    st_writer_free(w);
    return rc;
}

int dr_golden_check(dr_golden *g, const deltarule_impl *impl, const deltarule_opts *o,
                    dr_golden_result *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    const deltarule_problem *p = &g->c.p;
    if (deltarule_run(impl, p, o, err, errlen)) return -1;
    const size_t nv = dr_v_elems(p), ns = dr_state_elems(p);
    r->out = err_compare(p->out, g->expect_out, nv);
    r->state = err_compare(p->final_state, g->expect_state, ns);
    r->bad_out = err_allclose_violations(p->out, g->expect_out, nv, g->atol, g->rtol, &r->first_bad_out);
    r->bad_state = err_allclose_violations(p->final_state, g->expect_state, ns, g->atol, g->rtol, &r->first_bad_state);
    return 0;
}

int dr_golden_grad_check(const dr_golden *g, const deltarule_grad_impl *impl, const deltarule_opts *o,
                         dr_golden_grad_result *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    if (!g->has_grad) {
        q35_errmsg(err, errlen, "the golden file has no gradients");
        return -1;
    }
    const deltarule_problem *p = &g->c.p;
    dr_grads out;
    if (dr_grads_alloc(&out, p)) {
        q35_errmsg(err, errlen, "out of memory");
        return -1;
    }
    dr_grads_fill_nan(&out, p);
    const deltarule_grad_problem gp = dr_grads_problem(p, g->d_out, g->d_final_state, &out);
    if (deltarule_grad_run(impl, &gp, o, NULL, err, errlen)) {
        dr_grads_free(&out);
        return -1;
    }
    for (int i = 0; i < DR_GRAD_COUNT; i++) {
        const size_t n = dr_grad_elems(p, i);
        if (!n) continue;
        r->has[i] = 1;
        r->e[i] = err_compare(out.t[i], g->expect_grad[i], n);
        r->bad[i] = err_allclose_violations(out.t[i], g->expect_grad[i], n, g->atol, g->rtol, &r->first_bad[i]);
    }
    dr_grads_free(&out);
    return 0;
}
