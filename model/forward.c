/* forward.c - one forward call of the decoder (forward.h), top to bottom:
 * embed, then per layer x += mixer(norm(x)); x += mlp(norm(x)), then the
 * final norm and lm_head on the rows whose logits are wanted.
 * docs/model.md §1 has the equations. */
#include "common/errmsg.h"
#include "model/forward_internal.h"

#include <stdlib.h>
#include <string.h>

int q35_fwd_linear(const q35_fwd *f, int M, int N, int K, const float *x, const void *w, q35_wtype wt, float *y,
                   int accumulate)
{
    linear_problem p = {.M = M, .N = N, .K = K, .x = x, .w = w, .wt = wt, .y = y, .accumulate = accumulate};
    return linear_run(f->im->linear, &p, &(linear_opts){.threads = f->im->threads}, f->err, f->errlen);
}

int q35_fwd_linear_shared(const q35_fwd *f, const linear_problem *ps, int n)
{
    return linear_run_shared(f->im->linear, ps, n, &(linear_opts){.threads = f->im->threads}, f->err, f->errlen);
}

int q35_fwd_add_reduced(const q35_fwd *f, float *y, size_t n, float *x)
{
    if (q35_comm_sum(f->m->comm, y, n)) {
        q35_errmsg(f->err, f->errlen, "forward: all-reduce of %zu values failed", n);
        return -1;
    }
    for (size_t i = 0; i < n; i++) x[i] += y[i];
    return 0;
}

int q35_fwd_reduce_into(const q35_fwd *f, int M, int N, int K, const float *a, const void *w, q35_wtype wt, float *x)
{
    if (f->m->comm->size == 1) return q35_fwd_linear(f, M, N, K, a, w, wt, x, 1);
    /* the partial sums go to a buffer of their own: x must receive them only once they are summed */
    float *y = q35_state_scratch(f->s, 2, (size_t)M * N);
    if (!y) { q35_errmsg(f->err, f->errlen, "forward: out of memory"); return -1; }
    return q35_fwd_linear(f, M, N, K, a, w, wt, y, 0) || q35_fwd_add_reduced(f, y, (size_t)M * N, x) ? -1 : 0;
}

int q35_fwd_check_tokens(const char *who, const q35_model *m, const q35_state *s, int T, const int32_t *tokens,
                         const int32_t *seq_len, char *err, size_t errlen)
{
    if (T < 1) { q35_errmsg(err, errlen, "%s: T=%d must be positive", who, T); return -1; }
    for (int b = 0; b < s->B; b++) {
        const int n = seq_len ? seq_len[b] : T;
        if (n < 0 || n > T) { q35_errmsg(err, errlen, "%s: seq_len[%d]=%d outside [0, %d]", who, b, n, T); return -1; }
        if ((long long)s->pos[b] + n > s->capacity) {
            q35_errmsg(err, errlen, "%s: sequence %d would reach position %lld, beyond the state's capacity %d",
                       who, b, (long long)s->pos[b] + n, s->capacity);
            return -1;
        }
        for (int t = 0; t < n; t++) {
            const int32_t id = tokens[(size_t)b * T + t];
            if (id < 0 || id >= m->cfg.vocab_size) {
                q35_errmsg(err, errlen, "%s: token id %d (sequence %d, position %d) outside [0, vocab_size=%d)",
                           who, (int)id, b, t, m->cfg.vocab_size);
                return -1;
            }
        }
    }
    return 0;
}

int q35_forward(const q35_model *m, q35_state *s, const q35_impls *im, int T, const int32_t *tokens,
                const int32_t *seq_len, float *logits, int all_logits, char *err, size_t errlen)
{
    return q35_forward_opt(m, s, im, T, tokens, seq_len, logits, &(q35_fwd_opts){.all_logits = all_logits}, err,
                           errlen);
}

int q35_forward_opt(const q35_model *m, q35_state *s, const q35_impls *im, int T, const int32_t *tokens,
                    const int32_t *seq_len, float *logits, const q35_fwd_opts *o, char *err, size_t errlen)
{
    const q35_config *c = &m->cfg;
    const int B = s->B, BT = B * T, H = c->hidden_size, V = m->sh.vocab_n; /* logits: this rank's vocabulary slice */
    const int all_logits = o->all_logits;
    if (q35_fwd_check_tokens("forward", m, s, T, tokens, seq_len, err, errlen)) return -1;
    if (o->checkpoints < 0 || o->checkpoints > T || o->checkpoints > s->ckpt_cap) {
        q35_errmsg(err, errlen, "forward: %d checkpoints asked for a call of %d tokens (the state keeps at most %d)",
                   o->checkpoints, T, s->ckpt_cap);
        return -1;
    }
    int32_t *len = malloc((size_t)B * sizeof *len);
    float *x = q35_state_scratch(s, 0, (size_t)BT * H * 2);
    int rc = -1;
    if (!len || !x) { q35_errmsg(err, errlen, "forward: out of memory"); goto out; }
    for (int b = 0; b < B; b++) len[b] = seq_len ? seq_len[b] : T;
    float *xn = x + (size_t)BT * H;
    const q35_fwd f = {.m = m, .s = s, .im = im, .B = B, .T = T, .BT = BT, .seq_len = len, .err = err, .errlen = errlen,
                       .checkpoints = o->checkpoints};
    /* the checkpoints of an earlier call are void from here on (state.h) */
    s->n_ckpt = 0;
    const int threads = im->threads > 0 ? im->threads : omp_get_max_threads();

    for (int r = 0; r < BT; r++)
        if (r % T < len[r / T]) q35_embed_row(m, tokens[r], x + (size_t)r * H);
    if (m->comm->size > 1 && q35_comm_sum(m->comm, x, (size_t)BT * H)) {
        q35_errmsg(err, errlen, "forward: all-reduce of the embeddings failed");
        goto out;
    }

    for (int l = 0; l < c->num_hidden_layers; l++) {
        const q35_layer *L = &m->layers[l];
#pragma omp parallel for num_threads(threads) schedule(static) if (BT > 1) /* one row: no fork */
        for (int r = 0; r < BT; r++) q35_rmsnorm_centred(x + (size_t)r * H, L->input_norm, H, c->rms_norm_eps, xn + (size_t)r * H);
        if (c->layer_types[l] == Q35_LAYER_LINEAR ? q35_layer_deltanet(&f, l, xn, x)
                                                  : q35_layer_attention(&f, L, s->k_cache[l], s->v_cache[l], xn, x))
            goto out;
#pragma omp parallel for num_threads(threads) schedule(static) if (BT > 1) /* one row: no fork */
        for (int r = 0; r < BT; r++) q35_rmsnorm_centred(x + (size_t)r * H, L->post_norm, H, c->rms_norm_eps, xn + (size_t)r * H);
        if (q35_layer_mlp(&f, L, xn, x)) goto out;
    }

    /* the rows whose logits are wanted, normalized, gathered into xn */
    int rows = 0;
    if (o->hidden) memset(o->hidden, 0, (size_t)BT * H * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const size_t r = (size_t)b * T + t;
            if (t < len[b] && o->hidden) q35_rmsnorm_centred(x + r * H, m->final_norm, H, c->rms_norm_eps, o->hidden + r * H);
            if (t < len[b] && (all_logits || t == len[b] - 1)) {
                if (o->hidden) memcpy(xn + (size_t)rows++ * H, o->hidden + r * H, (size_t)H * sizeof(float));
                else q35_rmsnorm_centred(x + r * H, m->final_norm, H, c->rms_norm_eps, xn + (size_t)rows++ * H);
            }
        }
    /* no padding: the rows are the logits' rows, in order (decode), and the lm_head writes them;
     * otherwise through a buffer, padded rows getting zero logits */
    const int direct = rows == (all_logits ? BT : B);
    float *lg = direct ? logits : malloc((size_t)(rows ? rows : 1) * V * sizeof(float));
    if (!lg) { q35_errmsg(err, errlen, "forward: out of memory for %d x %d logits", rows, V); goto out; }
    if (rows && q35_fwd_linear(&f, rows, V, H, xn, m->lm_head, q35_model_wt(m, Q35_WF_LM_HEAD), lg, 0)) {
        if (!direct) free(lg);
        goto out;
    }
    if (!direct) {
        memset(logits, 0, (size_t)(all_logits ? BT : B) * V * sizeof(float));
        rows = 0;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                if (t < len[b] && (all_logits || t == len[b] - 1))
                    memcpy(logits + (all_logits ? (size_t)b * T + t : (size_t)b) * V, lg + (size_t)rows++ * V,
                           (size_t)V * sizeof(float));
        free(lg);
    }
    for (int b = 0; b < B; b++) {
        s->last_len[b] = len[b];
        s->pos[b] += len[b];
    }
    s->n_ckpt = o->checkpoints;
    rc = 0;
out:
    free(len);
    return rc;
}
