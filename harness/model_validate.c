/* validate.c - token-match validation (validate.h). */
#include "harness/model_validate.h"

#include "common/errmsg.h"
#include "common/safetensors.h"
#include "ref/model_ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void q35_prompts_free(q35_prompts *p)
{
    if (!p) return;
    for (int i = 0; i < p->n; i++) {
        if (p->prompt) free(p->prompt[i]);
        if (p->tokens) free(p->tokens[i]);
        if (p->logits) free(p->logits[i]);
    }
    free(p->prompt);
    free(p->len);
    free(p->tokens);
    free(p->logits);
    memset(p, 0, sizeof *p);
}

static int alloc_prompts(q35_prompts *p, int n, int golden)
{
    p->n = n;
    p->prompt = calloc((size_t)n, sizeof *p->prompt);
    p->len = calloc((size_t)n, sizeof *p->len);
    if (golden) {
        p->tokens = calloc((size_t)n, sizeof *p->tokens);
        p->logits = calloc((size_t)n, sizeof *p->logits);
    }
    return p->prompt && p->len && (!golden || (p->tokens && p->logits)) ? 0 : -1;
}

int q35_prompts_parse(const char *s, int vocab, q35_prompts *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    int n = 1;
    for (const char *c = s; *c; c++) n += *c == ';';
    if (alloc_prompts(p, n, 0)) goto oom;
    const char *c = s;
    for (int i = 0; i < n; i++) {
        int cap = 16;
        p->prompt[i] = malloc((size_t)cap * sizeof(int32_t));
        if (!p->prompt[i]) goto oom;
        for (;;) {
            char *end;
            long v = strtol(c, &end, 10);
            if (end == c || v < 0 || v >= vocab) {
                q35_errmsg(err, errlen, "--prompt-ids: prompt %d: expected token ids in [0, %d) separated by ',' "
                         "(prompts by ';'), at '%.20s'", i, vocab, c);
                q35_prompts_free(p);
                return -1;
            }
            if (p->len[i] == cap) {
                int32_t *q = realloc(p->prompt[i], (size_t)(cap *= 2) * sizeof *q);
                if (!q) goto oom;
                p->prompt[i] = q;
            }
            p->prompt[i][p->len[i]++] = (int32_t)v;
            c = end;
            if (*c == ',') { c++; continue; }
            if (*c == ';' || !*c) { if (*c) c++; break; }
            q35_errmsg(err, errlen, "--prompt-ids: unexpected '%c' in prompt %d", *c, i);
            q35_prompts_free(p);
            return -1;
        }
    }
    return 0;
oom:
    q35_errmsg(err, errlen, "--prompt-ids: out of memory");
    q35_prompts_free(p);
    return -1;
}

int q35_prompts_default(int vocab, q35_prompts *p, char *err, size_t errlen)
{
    char buf[512] = "";
    const int lens[3] = {3, 8, 13};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < lens[i]; j++)
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%d", j ? "," : i ? ";" : "",
                     (int)((7L * j * j + 131L * i + 17L * j + 1) % vocab));
    return q35_prompts_parse(buf, vocab, p, err, errlen);
}

int q35_golden_model_write(const char *path, const q35_prompts *p, int V, const int32_t *tokens, const float *logits,
                           const char *note, char *err, size_t errlen)
{
    st_writer *w = st_writer_new();
    if (!w) { q35_errmsg(err, errlen, "%s: out of memory", path); return -1; }
    char name[64];
    int rc = 0;
    for (int i = 0; i < p->n && !rc; i++) {
        snprintf(name, sizeof name, "prompt_%d", i);
        rc = st_writer_add(w, name, ST_I32, 1, (int64_t[]){p->len[i]}, p->prompt[i]);
        snprintf(name, sizeof name, "tokens_%d", i);
        if (!rc) rc = st_writer_add(w, name, ST_I32, 1, (int64_t[]){p->steps}, tokens + (size_t)i * p->steps);
        snprintf(name, sizeof name, "logits_%d", i);
        if (!rc)
            rc = st_writer_add(w, name, ST_F32, 2, (int64_t[]){p->steps, V}, logits + (size_t)i * p->steps * V);
    }
    if (!rc && note) rc = st_writer_meta(w, "note", note);
    if (rc) q35_errmsg(err, errlen, "%s: %s", path, st_writer_error(w));
    else rc = st_writer_write(w, path, err, errlen);
    st_writer_free(w);
    return rc;
}

int q35_prompts_load_golden(const char *path, int vocab, q35_prompts *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    st_file f;
    if (st_open(path, &f, err, errlen)) return -1;
    char name[64];
    int n = 0;
    for (;; n++) {
        snprintf(name, sizeof name, "prompt_%d", n);
        if (!st_find(&f, name)) break;
    }
    if (n == 0) { q35_errmsg(err, errlen, "%s: no 'prompt_0' tensor: not a golden file", path); goto fail; }
    if (alloc_prompts(p, n, 1)) { q35_errmsg(err, errlen, "%s: out of memory", path); goto fail; }
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "prompt_%d", i);
        const st_tensor *tp = st_find(&f, name);
        snprintf(name, sizeof name, "tokens_%d", i);
        const st_tensor *tt = st_find(&f, name);
        if (!tt) { q35_errmsg(err, errlen, "%s: 'prompt_%d' has no 'tokens_%d'", path, i, i); goto fail; }
        if (tp->ndim != 1 || tt->ndim != 1 || tp->shape[0] < 1 || tt->shape[0] < 1) {
            q35_errmsg(err, errlen, "%s: prompt_%d and tokens_%d must be non-empty 1-D I32 tensors", path, i, i);
            goto fail;
        }
        const int len = (int)tp->shape[0], steps = (int)tt->shape[0];
        if (i == 0) p->steps = steps;
        if (steps != p->steps) {
            q35_errmsg(err, errlen, "%s: tokens_%d has %d steps, tokens_0 has %d (all prompts need the same count)",
                     path, i, steps, p->steps);
            goto fail;
        }
        p->len[i] = len;
        p->prompt[i] = malloc((size_t)len * sizeof(int32_t));
        p->tokens[i] = malloc((size_t)steps * sizeof(int32_t));
        if (!p->prompt[i] || !p->tokens[i]) { q35_errmsg(err, errlen, "%s: out of memory", path); goto fail; }
        char why[384];
        if (st_read_i32(tp, p->prompt[i], (size_t)len, why, sizeof why) ||
            st_read_i32(tt, p->tokens[i], (size_t)steps, why, sizeof why)) {
            q35_errmsg(err, errlen, "%s: %s", path, why);
            goto fail;
        }
        for (int j = 0; j < len + steps; j++) {
            const int32_t id = j < len ? p->prompt[i][j] : p->tokens[i][j - len];
            if (id < 0 || id >= vocab) {
                q35_errmsg(err, errlen, "%s: tensor '%s_%d': element %d is token id %d, outside the model's "
                         "vocabulary [0, %d)", path, j < len ? "prompt" : "tokens", i, j < len ? j : j - len,
                         (int)id, vocab);
                goto fail;
            }
        }
        snprintf(name, sizeof name, "logits_%d", i);
        const st_tensor *tl = st_find(&f, name);
        if (tl) {
            if (tl->ndim != 2 || tl->shape[0] != steps || tl->shape[1] != vocab) {
                q35_errmsg(err, errlen, "%s: logits_%d must be [%d, %d] (steps, vocab)", path, i, steps, vocab);
                goto fail;
            }
            p->logits[i] = malloc((size_t)steps * vocab * sizeof(float));
            if (!p->logits[i]) { q35_errmsg(err, errlen, "%s: out of memory", path); goto fail; }
            if (st_read_f32(tl, p->logits[i], (size_t)steps * vocab, why, sizeof why)) {
                q35_errmsg(err, errlen, "%s: %s", path, why);
                goto fail;
            }
        }
    }
    st_close(&f);
    return 0;
fail:
    st_close(&f);
    q35_prompts_free(p);
    return -1;
}

/* The reference model (ref/model_ref.c): each prompt alone, token by token. */
static int run_reference(const q35_model *m, const q35_prompts *p, const int32_t *forced, int32_t *tokens,
                         float *logits, char *err, size_t errlen)
{
    const int V = m->cfg.vocab_size;
    for (int i = 0; i < p->n; i++) {
        q35_model_ref r;
        if (q35_model_ref_init(&r, m, p->len[i] + p->steps, err, errlen)) return -1;
        /* the prompt's own logits are not wanted: they land in this prompt's first row, overwritten next */
        int rc = 0;
        for (int t = 0; t < p->len[i] - 1 && !rc; t++)
            rc = q35_model_ref_step(&r, p->prompt[i][t], logits + (size_t)i * p->steps * V, err, errlen);
        int32_t next = p->prompt[i][p->len[i] - 1];
        for (int s = 0; s < p->steps && !rc; s++) {
            float *lg = logits + ((size_t)i * p->steps + s) * V;
            rc = q35_model_ref_step(&r, next, lg, err, errlen);
            tokens[(size_t)i * p->steps + s] = q35_argmax(lg, V);
            next = forced ? forced[(size_t)i * p->steps + s] : tokens[(size_t)i * p->steps + s];
        }
        q35_model_ref_free(&r);
        if (rc) return -1;
    }
    return 0;
}

/* Runs the prompts (im: one right-padded batch through q35_forward; NULL: the
 * reference model); tokens [n, steps], logits [n, steps, V]. */
static int run(const q35_model *m, const q35_impls *im, const q35_prompts *p, const int32_t *forced,
               int32_t *tokens, float *logits, char *err, size_t errlen)
{
    if (!im) return run_reference(m, p, forced, tokens, logits, err, errlen);
    return q35_generate(m, im, p->n, (const int32_t *const *)p->prompt, p->len, p->steps, forced, tokens, logits,
                        NULL, err, errlen);
}

int q35_reference_run(const q35_model *m, const q35_prompts *p, int32_t **tokens, float **logits, char *err,
                      size_t errlen)
{
    const size_t V = (size_t)m->cfg.vocab_size;
    *tokens = malloc((size_t)p->n * p->steps * sizeof **tokens);
    *logits = malloc((size_t)p->n * p->steps * V * sizeof **logits);
    if (!*tokens || !*logits || run(m, NULL, p, NULL, *tokens, *logits, err, errlen)) {
        if (!*tokens || !*logits) q35_errmsg(err, errlen, "validate: out of memory");
        free(*tokens);
        free(*logits);
        *tokens = NULL;
        *logits = NULL;
        return -1;
    }
    return 0;
}

/* Compares this path's tokens/logits with expected ones (one prompt at a time
 * for golden files, whose logits are per prompt). */
static void compare(const q35_model *m, int n, int steps, const int32_t *got_tok, const float *got_lg,
                    const int32_t *const *want_tok, const float *const *want_lg, const float *one_lg, q35_match *r)
{
    const size_t all = (size_t)n * steps * m->cfg.vocab_size;
    for (size_t i = 0; one_lg && i < all; i++) {
        const double d = fabs((double)got_lg[i] - one_lg[i]);
        r->max_dlogit_1p = isnan(d) ? INFINITY : fmax(r->max_dlogit_1p, d);
    }
    const int V = m->cfg.vocab_size;
    double min_all = INFINITY, min_bad = INFINITY;
    for (int i = 0; i < n; i++)
        for (int s = 0; s < steps; s++) {
            const float *g = got_lg + ((size_t)i * steps + s) * V;
            const float *w = want_lg[i] ? want_lg[i] + (size_t)s * V : NULL;
            const int ok = got_tok[(size_t)i * steps + s] == want_tok[i][s];
            r->total++;
            r->match += ok;
            if (!ok && r->first_bad_prompt < 0) { r->first_bad_prompt = i; r->first_bad_step = s; }
            if (!w) continue;
            const double margin = q35_top2_margin(w, V);
            min_all = fmin(min_all, margin);
            if (!ok) min_bad = fmin(min_bad, margin);
            for (int v = 0; v < V; v++) {
                const double d = fabs((double)g[v] - w[v]);
                r->max_dlogit = isnan(d) ? INFINITY : fmax(r->max_dlogit, d);
                r->max_ref_logit = fmax(r->max_ref_logit, fabs((double)w[v]));
            }
        }
    r->min_margin = r->match < r->total && isfinite(min_bad) ? min_bad : min_all;
}

static int validate_run(const q35_model *m, const q35_impls *im, const q35_prompts *p, const int32_t *forced,
                        const int32_t *const *want_tok, const float *const *want_lg, const float *one_lg, q35_match *r,
                        char *err, size_t errlen)
{
    const size_t V = (size_t)m->cfg.vocab_size;
    memset(r, 0, sizeof *r);
    r->first_bad_prompt = r->first_bad_step = -1;
    r->min_margin = NAN;
    int32_t *tok = malloc((size_t)p->n * p->steps * sizeof *tok);
    float *lg = malloc((size_t)p->n * p->steps * V * sizeof *lg);
    int rc = -1;
    if (!tok || !lg) q35_errmsg(err, errlen, "validate: out of memory");
    else if (!run(m, im, p, forced, tok, lg, err, errlen)) {
        /* the logits are gathered on rank 0 (tensor parallelism): it compares and tells the others */
        if (m->comm->rank == 0) compare(m, p->n, p->steps, tok, lg, want_tok, want_lg, one_lg, r);
        rc = q35_comm_broadcast(m->comm, r, sizeof *r);
        if (rc) q35_errmsg(err, errlen, "validate: broadcasting the comparison failed");
    }
    free(tok);
    free(lg);
    return rc;
}

int q35_validate_against_one_process(const q35_model *m, const q35_impls *im, const q35_prompts *p,
                                     const int32_t *ref_tokens, const float *ref_logits, const float *one_logits,
                                     q35_match *r, char *err, size_t errlen)
{
    const size_t V = (size_t)m->cfg.vocab_size;
    const int32_t **wt = malloc((size_t)p->n * sizeof *wt);
    const float **wl = malloc((size_t)p->n * sizeof *wl);
    int rc = -1;
    if (!wt || !wl) q35_errmsg(err, errlen, "validate: out of memory");
    else {
        for (int i = 0; i < p->n; i++) {
            wt[i] = ref_tokens + (size_t)i * p->steps;
            wl[i] = ref_logits ? ref_logits + (size_t)i * p->steps * V : NULL; /* NULL off rank 0 */
        }
        rc = validate_run(m, im, p, ref_tokens, wt, wl, one_logits, r, err, errlen);
    }
    free(wt);
    free(wl);
    return rc;
}

int q35_validate_against(const q35_model *m, const q35_impls *im, const q35_prompts *p, const int32_t *ref_tokens,
                         const float *ref_logits, q35_match *r, char *err, size_t errlen)
{
    return q35_validate_against_one_process(m, im, p, ref_tokens, ref_logits, NULL, r, err, errlen);
}

int q35_forced_logits(const q35_model *m, const q35_impls *im, const q35_prompts *p, const int32_t *tokens,
                      float **logits, char *err, size_t errlen)
{
    int32_t *tok = malloc((size_t)p->n * p->steps * sizeof *tok);
    *logits = malloc((size_t)p->n * p->steps * m->cfg.vocab_size * sizeof **logits);
    int rc = -1;
    if (!tok || !*logits) q35_errmsg(err, errlen, "validate: out of memory");
    else rc = run(m, im, p, tokens, tok, *logits, err, errlen);
    free(tok);
    if (rc) { free(*logits); *logits = NULL; }
    return rc;
}

int q35_validate_golden(const q35_model *m, const q35_impls *im, const q35_prompts *p, q35_match *r, char *err,
                        size_t errlen)
{
    return validate_run(m, im, p, NULL, (const int32_t *const *)p->tokens, (const float *const *)p->logits, NULL, r,
                        err, errlen);
}

/* A golden's logits come from another implementation (PyTorch, fp32 or
 * float64), so they differ by rounding: tolerate 1e-4 of the logit scale
 * plus 1e-4 absolute (docs/model.md §5 gives the measured margins). */
double q35_golden_logit_tol(double max_abs_logit) { return 1e-4 + 1e-4 * max_abs_logit; }
