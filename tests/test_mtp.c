/* test_mtp.c - cmocka suite for the MTP head: model/mtp.h (q35_mtp_forward),
 * ref/mtp_ref.h and the loading of mtp.* (model/load.c).
 *
 * Where expected values come from:
 *   - the golden file tests/data/model/hf-tiny-mtp-dense-bf16.mtp-golden
 *     .safetensors, written by ref/hf/dump_mtp_golden.py from transformers'
 *     own Qwen3.5 decoder layer, RMSNorm and model forward (PyTorch fp32 on
 *     the bf16 weights); read here with st_open, not with the code under test;
 *   - ref/mtp_ref.c (double, plain loops) on random-weight checkpoints that
 *     q35_init_write makes (tiny-dense, tiny-moe: the MoE path);
 *   - differently computed equivalents: all pairs in one call vs one pair per
 *     call; a right-padded batch of 2 vs each sequence alone.
 *
 * Tolerances, |d| <= abs + rel * max|expected|:
 *   - golden (fp32 PyTorch) vs q35 (fp32 kernels) or ref (double): 1e-4 +
 *     1e-4, the tolerance docs/model.md §5 uses for the model goldens, whose
 *     measured differences are 3e-5 on the same kind of bf16 checkpoint;
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

#define GOLDEN_DIR "tests/data/model/hf-tiny-mtp-dense-bf16"
#define GOLDEN_FILE "tests/data/model/hf-tiny-mtp-dense-bf16.mtp-golden.safetensors"
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

/* The target's final-normed hidden states [n, H] over a prompt and its greedy next token. */
static int32_t target_hidden(const q35_model *m, const int32_t *prompt, int n, float *h)
{
    const q35_impls im = impls();
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

/* The MTP inputs for a prompt: tokens[t] = x_{t+1} (the prompt shifted, then
 * the target's next token), hidden[t] = h_t. */
static void mtp_inputs(const q35_model *m, const int32_t *prompt, int n, int32_t *tokens, float *hidden)
{
    const int32_t next = target_hidden(m, prompt, n, hidden);
    for (int t = 0; t + 1 < n; t++) tokens[t] = prompt[t + 1];
    tokens[n - 1] = next;
}

/* q35_mtp_forward on one sequence, T pairs in one call (logits [T, V], out [T, H]). */
static void run_q35(const q35_model *m, q35_state *ms, int T, const int32_t *tok, const float *hid, float *lg,
                    float *out)
{
    const q35_impls im = impls();
    char err[512];
    if (q35_mtp_forward(m, ms, &im, T, tok, hid, NULL, lg, 1, out, err, sizeof err)) fail_msg("mtp: %s", err);
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

static float *golden_f32(const st_file *f, const char *name, size_t n)
{
    const st_tensor *t = st_find(f, name);
    if (!t) fail_msg("%s: no tensor %s", GOLDEN_FILE, name);
    float *v = malloc(n * sizeof *v);
    char err[256];
    assert_non_null(v);
    if (st_read_f32(t, v, n, err, sizeof err)) fail_msg("%s: %s", name, err);
    return v;
}

static int32_t *golden_i32(const st_file *f, const char *name, int *n)
{
    const st_tensor *t = st_find(f, name);
    if (!t) fail_msg("%s: no tensor %s", GOLDEN_FILE, name);
    *n = (int)t->shape[0];
    int32_t *v = malloc((size_t)*n * sizeof *v);
    char err[256];
    assert_non_null(v);
    if (st_read_i32(t, v, (size_t)*n, err, sizeof err)) fail_msg("%s: %s", name, err);
    return v;
}

static void test_golden(void **s)
{
    (void)s;
    st_file g;
    char err[1024];
    if (st_open(GOLDEN_FILE, &g, err, sizeof err)) fail_msg("%s", err);
    q35_model m;
    load(GOLDEN_DIR, &m);
    assert_int_equal(m.mtp.present, 1);
    const int H = m.cfg.hidden_size, V = m.cfg.vocab_size;
    int n, nt, nc;
    int32_t *prompt = golden_i32(&g, "prompt", &n), *tok = golden_i32(&g, "next_tokens", &nt);
    int32_t *chain_tok = golden_i32(&g, "chain_token", &nc);
    assert_int_equal(nt, n);
    assert_int_equal(nc, 1);
    float *gh = golden_f32(&g, "hidden", (size_t)n * H), *gl = golden_f32(&g, "mtp_logits", (size_t)n * V);
    float *go = golden_f32(&g, "mtp_hidden", (size_t)n * H), *gcl = golden_f32(&g, "chain_logits", (size_t)V);
    float *gco = golden_f32(&g, "chain_hidden", (size_t)H);
    float *h = malloc((size_t)n * H * sizeof *h), *lq = malloc((size_t)(n + 1) * V * sizeof *lq);
    float *oq = malloc((size_t)(n + 1) * H * sizeof *oq), *lr = malloc((size_t)(n + 1) * V * sizeof *lr);
    float *or_ = malloc((size_t)(n + 1) * H * sizeof *or_);
    assert_true(h && lq && oq && lr && or_);

    /* 1a: q35's final-normed hidden states are what transformers passed */
    const int32_t next = target_hidden(&m, prompt, n, h);
    assert_int_equal(next, tok[n - 1]);
    for (int t = 0; t + 1 < n; t++) assert_int_equal(tok[t], prompt[t + 1]);
    const double d_h = expect_close("target hidden vs golden", h, gh, (size_t)n * H, 1e-4, 1e-4);

    /* the head on the golden's inputs: q35 and ref */
    q35_state ms;
    q35_mtp_ref r;
    if (q35_mtp_state_init(&ms, &m, 1, n + 2, err, sizeof err)) fail_msg("%s", err);
    if (q35_mtp_ref_init(&r, &m, n + 2, err, sizeof err)) fail_msg("%s", err);
    run_q35(&m, &ms, n, tok, gh, lq, oq);
    if (q35_mtp_ref_forward(&r, n, tok, gh, lr, 1, or_, err, sizeof err)) fail_msg("%s", err);
    const double dq = expect_close("q35 mtp logits vs golden", lq, gl, (size_t)n * V, 1e-4, 1e-4);
    const double dr = expect_close("ref mtp logits vs golden", lr, gl, (size_t)n * V, 1e-4, 1e-4);
    const double dqo = expect_close("q35 mtp hidden vs golden", oq, go, (size_t)n * H, 1e-4, 1e-4);
    expect_close("ref mtp hidden vs golden", or_, go, (size_t)n * H, 1e-4, 1e-4);
    for (int t = 0; t < n; t++) assert_int_equal(argmax(lq + (size_t)t * V, V), argmax(gl + (size_t)t * V, V));

    /* 1d: the chained step takes the head's output after mtp.norm, at position n */
    assert_int_equal(chain_tok[0], argmax(gl + (size_t)(n - 1) * V, V));
    run_q35(&m, &ms, 1, chain_tok, go + (size_t)(n - 1) * H, lq + (size_t)n * V, oq + (size_t)n * H);
    if (q35_mtp_ref_forward(&r, 1, chain_tok, go + (size_t)(n - 1) * H, lr + (size_t)n * V, 1, or_ + (size_t)n * H,
                            err, sizeof err))
        fail_msg("%s", err);
    const double dcq = expect_close("q35 chained logits vs golden", lq + (size_t)n * V, gcl, (size_t)V, 1e-4, 1e-4);
    const double dcr = expect_close("ref chained logits vs golden", lr + (size_t)n * V, gcl, (size_t)V, 1e-4, 1e-4);
    expect_close("q35 chained hidden vs golden", oq + (size_t)n * H, gco, (size_t)H, 1e-4, 1e-4);
    print_message("  golden (logits up to %.3g): target hidden %.2g; mtp logits q35 %.2g ref %.2g; mtp hidden q35 "
                  "%.2g; chained q35 %.2g ref %.2g\n",
                  max_abs(gl, (size_t)n * V), d_h, dq, dr, dqo, dcq, dcr);

    q35_state_free(&ms);
    q35_mtp_ref_free(&r);
    q35_model_free(&m);
    st_close(&g);
    free(prompt), free(tok), free(chain_tok), free(gh), free(gl), free(go), free(gcl), free(gco);
    free(h), free(lq), free(oq), free(lr), free(or_);
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
        cmocka_unit_test(test_dense_f32_vs_ref),
        cmocka_unit_test(test_dense_bf16_vs_ref),
        cmocka_unit_test(test_moe_vs_ref),
        cmocka_unit_test(test_padded_batch),
        cmocka_unit_test(test_missing_head),
        cmocka_unit_test(test_partial_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
