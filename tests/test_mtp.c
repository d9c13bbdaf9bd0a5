/* test_mtp.c - cmocka suite for the MTP head: model/mtp.h (q35_mtp_forward),
 * ref/mtp_ref.h and the loading of mtp.* (model/load.c).
 *
 * Where expected values come from:
 *   - the golden files tests/data/model/hf-tiny-mtp-{dense,moe}-bf16.mtp-golden
 *     .safetensors, written by ref/hf/dump_mtp_golden.py (--moe for the
 *     second) from transformers' own Qwen3.5 / Qwen3.5-MoE decoder layer
 *     (the MoE one's mlp: transformers' Qwen3_5MoeSparseMoeBlock), RMSNorm
 *     and model forward (PyTorch fp32 on the bf16 weights); read here with
 *     st_open, not with the code under test.  The MoE golden runs through
 *     every MoE implementation (ref and the kernel table), target and head;
 *   - ref/mtp_ref.c (double, plain loops) on random-weight checkpoints that
 *     q35_init_write makes (tiny-dense, tiny-moe: the MoE path);
 *   - differently computed equivalents: all pairs in one call vs one pair per
 *     call; a right-padded batch of 2 vs each sequence alone.
 *
 * Tolerances, |d| <= abs + rel * max|expected|:
 *   - golden (fp32 PyTorch) vs q35 (fp32 kernels) or ref (double): 1e-4 +
 *     1e-4, the tolerance docs/model.md §5 uses for the model goldens, whose
 *     measured differences are 3e-5 on the same kind of bf16 checkpoint; the
 *     same for the MoE golden (its seed keeps every router top-k boundary
 *     >= 2e-3 apart in logit, so no expert choice can flip at fp32 rounding);
 *   - the MoE head with its experts stored per expert instead of fused: equal
 *     bit for bit (the loader gathers both into one layout);
 *   - q35 vs ref on the same weights: rel 1e-4 (fp32 accumulation over H = 128
 *     and 2H = 256 terms in three chained projections: ~1e-6 relative per
 *     product; a wrong position, order or norm moves logits by O(1));
 *   - one call vs one pair per call, batch vs alone: rel 2e-5 (test_model.c's
 *     EQ_REL: only the order of fp32 sums may differ). */
#include "common/safetensors.h"
#include "harness/impl_select.h"
#include "model/forward.h"
#include "model/init.h"
#include "model/model.h"
#include "model/mtp.h"
#include "model/state.h"
#include "ref/mtp_ref.h"
#include "tests/support/tmpdir.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GOLDEN_DENSE "tests/data/model/hf-tiny-mtp-dense-bf16"
#define GOLDEN_MOE "tests/data/model/hf-tiny-mtp-moe-bf16"
#define GOLDEN_SUFFIX ".mtp-golden.safetensors"
#define EQ_REL 2e-5
#define CROSS_REL 1e-4

static q35_impls impls(void)
{
    q35_impls im;
    q35_impls_default(&im);
    im.threads = 1;
    return im;
}

static void load(const char *dir, q35_model *m)
{
    char err[1024];
    if (q35_model_load(dir, NULL, m, err, sizeof err)) fail_msg("load %s: %s", dir, err);
}

static double max_abs(const float *a, size_t n)
{
    double mx = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs((double)a[i]));
    return mx;
}

/* max |a - b|, and fails if above abs + rel * max|b|. */
static double expect_close(const char *what, const float *a, const float *b, size_t n, double abs_tol, double rel)
{
    const double tol = abs_tol + rel * max_abs(b, n);
    double d = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= d)) { d = e; at = i; }
    }
    if (!(d <= tol)) fail_msg("%s: max |d| %.3g at %zu (%g vs %g), tolerance %.3g", what, d, at, a[at], b[at], tol);
    return d;
}

static int32_t argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* ||a - b|| / ||b|| */
static double normwise(const float *a, const float *b, size_t n)
{
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        const double e = (double)a[i] - (double)b[i];
        d += e * e;
        r += (double)b[i] * (double)b[i];
    }
    return r > 0 ? sqrt(d / r) : sqrt(d);
}

/* The target's final-normed hidden states [n, H] over a prompt and its greedy next token. */
static int32_t target_hidden_im(const q35_model *m, const q35_impls *imp, const int32_t *prompt, int n, float *h)
{
    const q35_impls im = *imp;
    const int V = m->sh.vocab_n;
    q35_state s;
    char err[512];
    float *lg = malloc((size_t)n * V * sizeof *lg);
    assert_non_null(lg);
    if (q35_state_init(&s, &m->local, 1, n + 4, err, sizeof err)) fail_msg("%s", err);
    if (q35_forward_opt(m, &s, &im, n, prompt, NULL, lg, &(q35_fwd_opts){.all_logits = 1, .hidden = h}, err,
                        sizeof err))
        fail_msg("forward: %s", err);
    const int32_t next = argmax(lg + (size_t)(n - 1) * V, V);
    q35_state_free(&s);
    free(lg);
    return next;
}

static int32_t target_hidden(const q35_model *m, const int32_t *prompt, int n, float *h)
{
    const q35_impls im = impls();
    return target_hidden_im(m, &im, prompt, n, h);
}

/* The MTP inputs for a prompt: tokens[t] = x_{t+1} (the prompt shifted, then
 * the target's next token), hidden[t] = h_t. */
static void mtp_inputs(const q35_model *m, const int32_t *prompt, int n, int32_t *tokens, float *hidden)
{
    const int32_t next = target_hidden(m, prompt, n, hidden);
    for (int t = 0; t + 1 < n; t++) tokens[t] = prompt[t + 1];
    tokens[n - 1] = next;
}

/* q35_mtp_forward on one sequence, T pairs in one call (logits [T, V], out [T, H]). */
static void run_q35_im(const q35_model *m, const q35_impls *im, q35_state *ms, int T, const int32_t *tok,
                       const float *hid, float *lg, float *out)
{
    char err[512];
    if (q35_mtp_forward(m, ms, im, T, tok, hid, NULL, lg, 1, out, err, sizeof err)) fail_msg("mtp: %s", err);
}

static void run_q35(const q35_model *m, q35_state *ms, int T, const int32_t *tok, const float *hid, float *lg,
                    float *out)
{
    const q35_impls im = impls();
    run_q35_im(m, &im, ms, T, tok, hid, lg, out);
}

/* ------------------------------------------------------------------ */
/* q35 vs ref on random-weight checkpoints (dense and MoE)              */
/* ------------------------------------------------------------------ */

static void q35_vs_ref(const char *preset, st_dtype dt)
{
    char dir[64], err[1024];
    assert_int_equal(test_tmpdir_make(dir, "q35mtp"), 0);
    const q35_init_opts o = {.preset = preset, .seed = 77, .dtype = dt, .layers = 4, .threads = 1};
    if (q35_init_write(dir, &o, NULL, err, sizeof err)) fail_msg("init: %s", err);
    q35_model m;
    load(dir, &m);
    assert_int_equal(m.mtp.present, 1);
    const int n = 9, H = m.cfg.hidden_size, V = m.cfg.vocab_size;
    int32_t prompt[9], tok[10];
    for (int i = 0; i < n; i++) prompt[i] = (int32_t)((i * 37 + 11) % V);
    float *hid = malloc((size_t)(n + 1) * H * sizeof *hid), *lq = malloc((size_t)(n + 1) * V * sizeof *lq);
    float *lr = malloc((size_t)(n + 1) * V * sizeof *lr), *oq = malloc((size_t)(n + 1) * H * sizeof *oq);
    float *or_ = malloc((size_t)(n + 1) * H * sizeof *or_);
    assert_true(hid && lq && lr && oq && or_);
    mtp_inputs(&m, prompt, n, tok, hid);

    q35_state ms;
    q35_mtp_ref r;
    if (q35_mtp_state_init(&ms, &m, 1, 16, err, sizeof err)) fail_msg("%s", err);
    if (q35_mtp_ref_init(&r, &m, 16, err, sizeof err)) fail_msg("%s", err);
    run_q35(&m, &ms, n, tok, hid, lq, oq);
    if (q35_mtp_ref_forward(&r, n, tok, hid, lr, 1, or_, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(ms.pos[0], n);
    assert_int_equal(r.pos, n);
    const double dl = expect_close("logits q35 vs ref", lq, lr, (size_t)n * V, 0, CROSS_REL);
    const double dh = expect_close("hidden q35 vs ref", oq, or_, (size_t)n * H, 0, CROSS_REL);

    /* a chained second step: the head's own output (after mtp.norm) with its draft, at position n */
    const int32_t d1 = argmax(lr + (size_t)(n - 1) * V, V);
    run_q35(&m, &ms, 1, &d1, oq + (size_t)(n - 1) * H, lq + (size_t)n * V, oq + (size_t)n * H);
    if (q35_mtp_ref_forward(&r, 1, &d1, or_ + (size_t)(n - 1) * H, lr + (size_t)n * V, 1, or_ + (size_t)n * H, err,
                            sizeof err))
        fail_msg("%s", err);
    const double dc = expect_close("chained logits q35 vs ref", lq + (size_t)n * V, lr + (size_t)n * V, (size_t)V, 0,
                                   CROSS_REL);
    print_message("  %s %s: max |dlogit| %.2g (logits up to %.3g), |dhidden| %.2g, chained %.2g\n", preset,
                  dt == ST_BF16 ? "bf16" : "f32", dl, max_abs(lr, (size_t)n * V), dh, dc);

    /* one pair per call gives what one call gave */
    q35_state m2;
    if (q35_mtp_state_init(&m2, &m, 1, 16, err, sizeof err)) fail_msg("%s", err);
    float *l1 = malloc((size_t)V * sizeof *l1), *o1 = malloc((size_t)H * sizeof *o1);
    assert_true(l1 && o1);
    for (int t = 0; t < n; t++) {
        run_q35(&m, &m2, 1, tok + t, hid + (size_t)t * H, l1, o1);
        expect_close("one pair per call", l1, lq + (size_t)t * V, (size_t)V, 0, EQ_REL);
        expect_close("one pair per call (hidden)", o1, oq + (size_t)t * H, (size_t)H, 0, EQ_REL);
    }
    q35_state_free(&m2);
    free(l1);
    free(o1);

    q35_state_free(&ms);
    q35_mtp_ref_free(&r);
    q35_model_free(&m);
    free(hid), free(lq), free(lr), free(oq), free(or_);
    assert_int_equal(test_tmpdir_remove(dir), 0);
}

static void test_dense_f32_vs_ref(void **s) { (void)s; q35_vs_ref("tiny-dense", ST_F32); }
static void test_dense_bf16_vs_ref(void **s) { (void)s; q35_vs_ref("tiny-dense", ST_BF16); }
static void test_moe_vs_ref(void **s) { (void)s; q35_vs_ref("tiny-moe", ST_F32); }

/* ------------------------------------------------------------------ */
/* A right-padded batch of 2 equals each sequence alone                 */
/* ------------------------------------------------------------------ */

static void test_padded_batch(void **s)
{
    (void)s;
    char dir[64], err[1024];
    assert_int_equal(test_tmpdir_make(dir, "q35mtp"), 0);
    const q35_init_opts o = {.preset = "tiny-dense", .seed = 78, .dtype = ST_F32, .layers = 4, .threads = 1};
    if (q35_init_write(dir, &o, NULL, err, sizeof err)) fail_msg("init: %s", err);
    q35_model m;
    load(dir, &m);
    const int H = m.cfg.hidden_size, V = m.cfg.vocab_size, T = 7, n[2] = {7, 4};
    int32_t prompt[2][7], tok[2 * 7] = {0};
    float *hid = calloc((size_t)2 * T * H, sizeof *hid), *lb = malloc((size_t)2 * T * V * sizeof *lb);
    float *ob = malloc((size_t)2 * T * H * sizeof *ob), *la = malloc((size_t)T * V * sizeof *la);
    float *oa = malloc((size_t)T * H * sizeof *oa), *last = malloc((size_t)2 * V * sizeof *last);
    assert_true(hid && lb && ob && la && oa && last);
    for (int b = 0; b < 2; b++) {
        for (int i = 0; i < n[b]; i++) prompt[b][i] = (int32_t)((i * 53 + 7 + 101 * b) % V);
        mtp_inputs(&m, prompt[b], n[b], tok + b * T, hid + (size_t)b * T * H);
    }
    /* padding rows of the inputs hold garbage: they must not be read */
    for (int t = n[1]; t < T; t++) {
        tok[T + t] = 3;
        for (int h = 0; h < H; h++) hid[((size_t)T + t) * H + h] = 1e3f;
    }
    const q35_impls im = impls();
    q35_state ms;
    if (q35_mtp_state_init(&ms, &m, 2, 16, err, sizeof err)) fail_msg("%s", err);
    /* two calls, so the second continues from the positions the first left */
    const int32_t len1[2] = {4, 2}, len2[2] = {3, 2};
    int32_t tk[2 * 4];
    float *hd = malloc((size_t)2 * 4 * H * sizeof *hd), *lg = malloc((size_t)2 * 4 * V * sizeof *lg);
    float *od = malloc((size_t)2 * 4 * H * sizeof *od);
    assert_true(hd && lg && od);
    for (int call = 0; call < 2; call++) {
        const int32_t *len = call ? len2 : len1;
        for (int b = 0; b < 2; b++)
            for (int t = 0; t < 4; t++) {
                const int src = (call ? len1[b] : 0) + t; /* the pair this slot carries */
                const int ok = t < len[b];
                tk[b * 4 + t] = ok ? tok[b * T + src] : 5;
                for (int h = 0; h < H; h++) hd[((size_t)b * 4 + t) * H + h] = ok ? hid[((size_t)b * T + src) * H + h] : -7.f;
            }
        if (q35_mtp_forward(&m, &ms, &im, 4, tk, hd, len, lg, 1, od, err, sizeof err)) fail_msg("%s", err);
        for (int b = 0; b < 2; b++)
            for (int t = 0; t < 4; t++) {
                const int src = (call ? len1[b] : 0) + t;
                if (t < len[b]) {
                    memcpy(lb + ((size_t)b * T + src) * V, lg + ((size_t)b * 4 + t) * V, (size_t)V * sizeof *lb);
                    memcpy(ob + ((size_t)b * T + src) * H, od + ((size_t)b * 4 + t) * H, (size_t)H * sizeof *ob);
                } else {
                    /* padding rows: zero logits and hidden */
                    assert_true(max_abs(lg + ((size_t)b * 4 + t) * V, (size_t)V) == 0);
                    assert_true(max_abs(od + ((size_t)b * 4 + t) * H, (size_t)H) == 0);
                }
            }
    }
    assert_int_equal(ms.pos[0], 7);
    assert_int_equal(ms.pos[1], 4);
    /* last-row logits ([B, V]) of a call without all_logits: each sequence's last valid pair */
    q35_state m3;
    if (q35_mtp_state_init(&m3, &m, 2, 16, err, sizeof err)) fail_msg("%s", err);
    if (q35_mtp_forward(&m, &m3, &im, T, tok, hid, n, last, 0, NULL, err, sizeof err)) fail_msg("%s", err);

    for (int b = 0; b < 2; b++) {
        q35_state m1;
        if (q35_mtp_state_init(&m1, &m, 1, 16, err, sizeof err)) fail_msg("%s", err);
        run_q35(&m, &m1, n[b], tok + b * T, hid + (size_t)b * T * H, la, oa);
        expect_close("batch vs alone (logits)", lb + (size_t)b * T * V, la, (size_t)n[b] * V, 0, EQ_REL);
        expect_close("batch vs alone (hidden)", ob + (size_t)b * T * H, oa, (size_t)n[b] * H, 0, EQ_REL);
        expect_close("batch last row vs alone", last + (size_t)b * V, la + (size_t)(n[b] - 1) * V, (size_t)V, 0,
                     EQ_REL);
        q35_state_free(&m1);
    }
    q35_state_free(&ms);
    q35_state_free(&m3);
    q35_model_free(&m);
    free(hid), free(lb), free(ob), free(la), free(oa), free(last), free(hd), free(lg), free(od);
    assert_int_equal(test_tmpdir_remove(dir), 0);
}

/* ------------------------------------------------------------------ */
/* Against the transformers golden                                      */
/* ------------------------------------------------------------------ */

static float *golden_f32(const st_file *f, const char *file, const char *name, size_t n)
{
    const st_tensor *t = st_find(f, name);
    if (!t) fail_msg("%s: no tensor %s", file, name);
    float *v = malloc(n * sizeof *v);
    char err[256];
    assert_non_null(v);
    if (st_read_f32(t, v, n, err, sizeof err)) fail_msg("%s: %s", name, err);
    return v;
}

static int32_t *golden_i32(const st_file *f, const char *file, const char *name, int *n)
{
    const st_tensor *t = st_find(f, name);
    if (!t) fail_msg("%s: no tensor %s", file, name);
    *n = (int)t->shape[0];
    int32_t *v = malloc((size_t)*n * sizeof *v);
    char err[256];
    assert_non_null(v);
    if (st_read_i32(t, v, (size_t)*n, err, sizeof err)) fail_msg("%s: %s", name, err);
    return v;
}

/* What a golden file holds (names of ref/hf/dump_mtp_golden.py). */
typedef struct {
    int n, H, V;
    int32_t *prompt, *tok, *chain_tok;
    float *h, *logits, *out, *chain_logits, *chain_out;
} mtp_golden;

static void golden_read(const char *file, const q35_model *m, mtp_golden *g)
{
    st_file f;
    char err[1024];
    if (st_open(file, &f, err, sizeof err)) fail_msg("%s", err);
    int nt, nc;
    g->H = m->cfg.hidden_size;
    g->V = m->cfg.vocab_size;
    g->prompt = golden_i32(&f, file, "prompt", &g->n);
    g->tok = golden_i32(&f, file, "next_tokens", &nt);
    g->chain_tok = golden_i32(&f, file, "chain_token", &nc);
    assert_int_equal(nt, g->n);
    assert_int_equal(nc, 1);
    const size_t n = (size_t)g->n, H = (size_t)g->H, V = (size_t)g->V;
    g->h = golden_f32(&f, file, "hidden", n * H);
    g->logits = golden_f32(&f, file, "mtp_logits", n * V);
    g->out = golden_f32(&f, file, "mtp_hidden", n * H);
    g->chain_logits = golden_f32(&f, file, "chain_logits", V);
    g->chain_out = golden_f32(&f, file, "chain_hidden", H);
    st_close(&f);
}

static void golden_free(mtp_golden *g)
{
    free(g->prompt), free(g->tok), free(g->chain_tok), free(g->h), free(g->logits), free(g->out);
    free(g->chain_logits), free(g->chain_out);
}

/* The head (q35_mtp_forward with im) on the golden's pairs and one chained
 * step: logits [n+1, V] and outputs [n+1, H]; every row's argmax must be the
 * golden's.  Prints and returns the max-abs error of the logits. */
static double golden_head(const q35_model *m, const q35_impls *im, const mtp_golden *g, const char *label, float *lq,
                          float *oq)
{
    const int n = g->n, H = g->H, V = g->V;
    char err[512];
    q35_state ms;
    if (q35_mtp_state_init(&ms, m, 1, n + 2, err, sizeof err)) fail_msg("%s", err);
    run_q35_im(m, im, &ms, n, g->tok, g->h, lq, oq);
    const double dq = expect_close("q35 mtp logits vs golden", lq, g->logits, (size_t)n * V, 1e-4, 1e-4);
    const double dqo = expect_close("q35 mtp hidden vs golden", oq, g->out, (size_t)n * H, 1e-4, 1e-4);
    for (int t = 0; t < n; t++) assert_int_equal(argmax(lq + (size_t)t * V, V), argmax(g->logits + (size_t)t * V, V));

    /* 1d: the chained step takes the head's output after mtp.norm, at position n */
    assert_int_equal(g->chain_tok[0], argmax(g->logits + (size_t)(n - 1) * V, V));
    run_q35_im(m, im, &ms, 1, g->chain_tok, g->out + (size_t)(n - 1) * H, lq + (size_t)n * V, oq + (size_t)n * H);
    const double dc = expect_close("q35 chained logits vs golden", lq + (size_t)n * V, g->chain_logits, (size_t)V,
                                   1e-4, 1e-4);
    expect_close("q35 chained hidden vs golden", oq + (size_t)n * H, g->chain_out, (size_t)H, 1e-4, 1e-4);
    assert_int_equal(argmax(lq + (size_t)n * V, V), argmax(g->chain_logits, V));
    print_message("  %s q35 (moe=%s): mtp logits %.2g (normwise %.2g), hidden %.2g (normwise %.2g), chained logits "
                  "%.2g (normwise %.2g); argmax %d/%d + chained\n",
                  label, im->moe->name, dq, normwise(lq, g->logits, (size_t)n * V), dqo,
                  normwise(oq, g->out, (size_t)n * H), dc, normwise(lq + (size_t)n * V, g->chain_logits, (size_t)V),
                  n, n);
    assert_int_equal(ms.pos[0], n + 1);
    q35_state_free(&ms);
    return dq;
}

/* The target's hidden states (fact a) with im against the golden's. */
static void golden_target(const q35_model *m, const q35_impls *im, const mtp_golden *g, const char *label)
{
    const int n = g->n, H = g->H;
    float *h = malloc((size_t)n * H * sizeof *h);
    assert_non_null(h);
    const int32_t next = target_hidden_im(m, im, g->prompt, n, h);
    assert_int_equal(next, g->tok[n - 1]);
    for (int t = 0; t + 1 < n; t++) assert_int_equal(g->tok[t], g->prompt[t + 1]);
    const double d = expect_close("target hidden vs golden", h, g->h, (size_t)n * H, 1e-4, 1e-4);
    print_message("  %s target (moe=%s): hidden %.2g (normwise %.2g), next token %d as transformers\n", label,
                  im->moe->name, d, normwise(h, g->h, (size_t)n * H), next);
    free(h);
}

static void golden_case(const char *dir, int moe)
{
    char file[256], label[64];
    snprintf(file, sizeof file, "%s%s", dir, GOLDEN_SUFFIX);
    snprintf(label, sizeof label, "%s", moe ? "moe" : "dense");
    q35_model m;
    char err[1024];
    load(dir, &m);
    assert_int_equal(m.mtp.present, 1);
    assert_int_equal(m.cfg.is_moe, moe);
    mtp_golden g;
    golden_read(file, &m, &g);
    const int n = g.n, H = g.H, V = g.V;
    float *lq = malloc((size_t)(n + 1) * V * sizeof *lq), *oq = malloc((size_t)(n + 1) * H * sizeof *oq);
    float *lr = malloc((size_t)(n + 1) * V * sizeof *lr), *or_ = malloc((size_t)(n + 1) * H * sizeof *or_);
    assert_true(lq && oq && lr && or_);

    /* 1a and the head, q35: the default implementations; a MoE model through every exact MoE
     * implementation too (lossy ones round activations to bf16: tests/test_moe.c holds them to their own tolerance) */
    const q35_impls im = impls();
    golden_target(&m, &im, &g, label);
    golden_head(&m, &im, &g, label, lq, oq);
    if (moe) {
        int ran = 0;
        for (int i = 0; i < moe_n_entries(); i++) {
            const moe_impl *e = moe_entry(i);
            if (e == im.moe || e->lossy || (e->available && !e->available())) continue;
            q35_impls mi = im;
            mi.moe = e;
            golden_target(&m, &mi, &g, label);
            golden_head(&m, &mi, &g, label, lr, or_);
            ran++;
        }
        assert_true(ran >= 1);
    }

    /* ref/mtp_ref (double) on the golden's inputs */
    q35_mtp_ref r;
    if (q35_mtp_ref_init(&r, &m, n + 2, err, sizeof err)) fail_msg("%s", err);
    if (q35_mtp_ref_forward(&r, n, g.tok, g.h, lr, 1, or_, err, sizeof err)) fail_msg("%s", err);
    const double dr = expect_close("ref mtp logits vs golden", lr, g.logits, (size_t)n * V, 1e-4, 1e-4);
    const double dro = expect_close("ref mtp hidden vs golden", or_, g.out, (size_t)n * H, 1e-4, 1e-4);
    for (int t = 0; t < n; t++) assert_int_equal(argmax(lr + (size_t)t * V, V), argmax(g.logits + (size_t)t * V, V));
    if (q35_mtp_ref_forward(&r, 1, g.chain_tok, g.out + (size_t)(n - 1) * H, lr + (size_t)n * V, 1,
                            or_ + (size_t)n * H, err, sizeof err))
        fail_msg("%s", err);
    const double dcr = expect_close("ref chained logits vs golden", lr + (size_t)n * V, g.chain_logits, (size_t)V,
                                    1e-4, 1e-4);
    expect_close("ref chained hidden vs golden", or_ + (size_t)n * H, g.chain_out, (size_t)H, 1e-4, 1e-4);
    assert_int_equal(argmax(lr + (size_t)n * V, V), argmax(g.chain_logits, V));
    print_message("  %s ref/mtp_ref: mtp logits %.2g (normwise %.2g), hidden %.2g, chained logits %.2g; golden "
                  "logits up to %.3g\n",
                  label, dr, normwise(lr, g.logits, (size_t)n * V), dro, dcr, max_abs(g.logits, (size_t)n * V));

    q35_mtp_ref_free(&r);
    q35_model_free(&m);
    golden_free(&g);
    free(lq), free(oq), free(lr), free(or_);
}

static void test_golden(void **s) { (void)s; golden_case(GOLDEN_DENSE, 0); }
static void test_golden_moe(void **s) { (void)s; golden_case(GOLDEN_MOE, 1); }

/* The MoE golden's checkpoint with the head's experts stored per expert
 * (mtp.layers.0.mlp.experts.{e}.{gate,up,down}_proj.weight) instead of fused:
 * the same head, bit for bit. */
static void copy_file(const char *from, const char *to)
{
    FILE *fi = fopen(from, "rb"), *fo = fopen(to, "wb");
    assert_true(fi && fo);
    char buf[4096];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, fi)) > 0) assert_int_equal(fwrite(buf, 1, k, fo), k);
    fclose(fi);
    assert_int_equal(fclose(fo), 0);
}

static void test_golden_moe_per_expert(void **s)
{
    (void)s;
    char dir[64], pa[256], pb[128], err[1024];
    assert_int_equal(test_tmpdir_make(dir, "q35mtp"), 0);
    test_tmpdir_path(pb, sizeof pb, dir, "config.json");
    copy_file(GOLDEN_MOE "/config.json", pb);
    st_file f;
    snprintf(pa, sizeof pa, "%s/model.safetensors", GOLDEN_MOE);
    if (st_open(pa, &f, err, sizeof err)) fail_msg("%s", err);
    const st_tensor *gu = st_find(&f, "mtp.layers.0.mlp.experts.gate_up_proj");
    const st_tensor *dn = st_find(&f, "mtp.layers.0.mlp.experts.down_proj");
    assert_true(gu && dn && gu->ndim == 3 && dn->ndim == 3 && gu->dtype == ST_BF16 && dn->dtype == ST_BF16);
    const int64_t E = gu->shape[0], I2 = gu->shape[1], Hh = gu->shape[2], I = I2 / 2;
    assert_true(dn->shape[0] == E && dn->shape[1] == Hh && dn->shape[2] == I);
    st_writer *w = st_writer_new();
    assert_non_null(w);
    for (int i = 0; i < f.n_tensors; i++) {
        const st_tensor *t = &f.tensors[i];
        if (t == gu || t == dn) continue;
        assert_int_equal(st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data), 0);
    }
    char(*names)[80] = malloc((size_t)E * 3 * sizeof *names);
    assert_non_null(names);
    const int64_t sh_in[2] = {I, Hh}, sh_dn[2] = {Hh, I};
    const size_t es = st_dtype_size(ST_BF16);
    for (int64_t e = 0; e < E; e++) {
        const char *g0 = (const char *)gu->data + (size_t)(e * I2 * Hh) * es; /* gate rows, then up rows */
        snprintf(names[3 * e], sizeof names[0], "mtp.layers.0.mlp.experts.%lld.gate_proj.weight", (long long)e);
        snprintf(names[3 * e + 1], sizeof names[0], "mtp.layers.0.mlp.experts.%lld.up_proj.weight", (long long)e);
        snprintf(names[3 * e + 2], sizeof names[0], "mtp.layers.0.mlp.experts.%lld.down_proj.weight", (long long)e);
        assert_int_equal(st_writer_add(w, names[3 * e], ST_BF16, 2, sh_in, g0), 0);
        assert_int_equal(st_writer_add(w, names[3 * e + 1], ST_BF16, 2, sh_in, g0 + (size_t)(I * Hh) * es), 0);
        assert_int_equal(st_writer_add(w, names[3 * e + 2], ST_BF16, 2, sh_dn,
                                       (const char *)dn->data + (size_t)(e * Hh * I) * es), 0);
    }
    test_tmpdir_path(pb, sizeof pb, dir, "model.safetensors");
    if (st_writer_write(w, pb, err, sizeof err)) fail_msg("%s", err);
    st_writer_free(w);
    free(names);
    st_close(&f);

    q35_model mf, mp;
    load(GOLDEN_MOE, &mf);
    load(dir, &mp);
    assert_int_equal(mp.mtp.present, 1);
    mtp_golden g;
    snprintf(pa, sizeof pa, "%s%s", GOLDEN_MOE, GOLDEN_SUFFIX);
    golden_read(pa, &mf, &g);
    const int n = g.n, H = g.H, V = g.V;
    float *lf = malloc((size_t)(n + 1) * V * sizeof *lf), *of = malloc((size_t)(n + 1) * H * sizeof *of);
    float *lp = malloc((size_t)(n + 1) * V * sizeof *lp), *op = malloc((size_t)(n + 1) * H * sizeof *op);
    assert_true(lf && of && lp && op);
    const q35_impls im = impls();
    golden_head(&mf, &im, &g, "moe (fused mtp experts)", lf, of);
    golden_head(&mp, &im, &g, "moe (per-expert mtp experts)", lp, op);
    expect_close("per-expert vs fused (logits)", lp, lf, (size_t)(n + 1) * V, 0, 0);
    expect_close("per-expert vs fused (hidden)", op, of, (size_t)(n + 1) * H, 0, 0);
    q35_model_free(&mf);
    q35_model_free(&mp);
    golden_free(&g);
    free(lf), free(of), free(lp), free(op);
    assert_int_equal(test_tmpdir_remove(dir), 0);
}

/* ------------------------------------------------------------------ */
/* Refusals                                                             */
/* ------------------------------------------------------------------ */

/* A checkpoint without mtp.*: loads (present = 0); the head refuses clearly. */
static void test_missing_head(void **s)
{
    (void)s;
    q35_model m;
    load("tests/data/model/hf-tiny-dense-bf16", &m);
    assert_int_equal(m.mtp.present, 0);
    char err[512] = "";
    q35_state ms;
    assert_int_equal(q35_mtp_state_init(&ms, &m, 1, 8, err, sizeof err), -1);
    assert_non_null(strstr(err, "the checkpoint has no MTP head (mtp.* tensors)"));
    /* q35_mtp_forward too, whatever state it is given */
    q35_state s2;
    assert_int_equal(q35_state_init(&s2, &m.local, 1, 8, err, sizeof err), 0);
    const q35_impls im = impls();
    float h[64] = {0}, lg[256];
    const int32_t tok = 1;
    err[0] = '\0';
    assert_int_equal(q35_mtp_forward(&m, &s2, &im, 1, &tok, h, NULL, lg, 0, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "the checkpoint has no MTP head (mtp.* tensors)"));
    q35_mtp_ref r;
    assert_int_equal(q35_mtp_ref_init(&r, &m, 8, err, sizeof err), -1);
    q35_state_free(&s2);
    q35_model_free(&m);
}

/* The same random checkpoint without one mtp.* tensor: refused, naming it. */
static void partial_case(const char *drop)
{
    char a[64], b[64], pa[128], pb[128], err[1024];
    assert_int_equal(test_tmpdir_make(a, "q35mtp"), 0);
    assert_int_equal(test_tmpdir_make(b, "q35mtp"), 0);
    const q35_init_opts o = {.preset = "tiny-dense", .seed = 79, .dtype = ST_BF16, .layers = 4, .threads = 1};
    if (q35_init_write(a, &o, NULL, err, sizeof err)) fail_msg("init: %s", err);
    /* config.json as written */
    test_tmpdir_path(pa, sizeof pa, a, "config.json");
    test_tmpdir_path(pb, sizeof pb, b, "config.json");
    FILE *fi = fopen(pa, "rb"), *fo = fopen(pb, "wb");
    assert_true(fi && fo);
    char buf[4096];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, fi)) > 0) assert_int_equal(fwrite(buf, 1, k, fo), k);
    fclose(fi);
    fclose(fo);
    /* every tensor but `drop` */
    st_file f;
    test_tmpdir_path(pa, sizeof pa, a, "model.safetensors");
    if (st_open(pa, &f, err, sizeof err)) fail_msg("%s", err);
    st_writer *w = st_writer_new();
    assert_non_null(w);
    int dropped = 0;
    for (int i = 0; i < f.n_tensors; i++) {
        const st_tensor *t = &f.tensors[i];
        if (!strcmp(t->name, drop)) { dropped = 1; continue; }
        assert_int_equal(st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data), 0);
    }
    assert_int_equal(dropped, 1);
    test_tmpdir_path(pb, sizeof pb, b, "model.safetensors");
    if (st_writer_write(w, pb, err, sizeof err)) fail_msg("%s", err);
    st_writer_free(w);
    st_close(&f);

    q35_model m;
    err[0] = '\0';
    assert_int_equal(q35_model_load(b, NULL, &m, err, sizeof err), -1);
    print_message("  without %s: %s\n", drop, err);
    assert_non_null(strstr(err, drop));
    assert_non_null(strstr(err, "incomplete MTP head"));
    assert_null(strchr(err, '\n'));
    assert_int_equal(test_tmpdir_remove(a), 0);
    assert_int_equal(test_tmpdir_remove(b), 0);
}

static void test_partial_head(void **s)
{
    (void)s;
    partial_case("mtp.norm.weight");
    partial_case("mtp.layers.0.self_attn.k_norm.weight");
    partial_case("mtp.fc.weight");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_golden_moe),
        cmocka_unit_test(test_golden_moe_per_expert),
        cmocka_unit_test(test_dense_f32_vs_ref),
        cmocka_unit_test(test_dense_bf16_vs_ref),
        cmocka_unit_test(test_moe_vs_ref),
        cmocka_unit_test(test_padded_batch),
        cmocka_unit_test(test_missing_head),
        cmocka_unit_test(test_partial_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
