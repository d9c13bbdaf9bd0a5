/* mtp.c - the MTP head's forward call (mtp.h; docs/mtp.md has the equations
 * and where each convention comes from).  The decoder layer runs through the
 * model's own sublayer code (layer_attention.c, layer_mlp.c) on the head's
 * weights and its own KV cache; embedding and lm_head are the model's. */
#include "model/mtp.h"

#include "common/errmsg.h"
#include "model/forward_internal.h"

#include <stdlib.h>
#include <string.h>

static int no_head(const q35_model *m, char *err, size_t errlen)
{
    if (m->mtp.present) return 0;
    q35_errmsg(err, errlen, "mtp: the checkpoint has no MTP head (mtp.* tensors)");
    return -1;
}

int q35_mtp_state_init(q35_state *ms, const q35_model *m, int B, int capacity, char *err, size_t errlen)
{
    memset(ms, 0, sizeof *ms);
    if (no_head(m, err, errlen)) return -1;
    /* one full-attention layer with this rank's KV heads */
    q35_config c = m->local;
    c.num_hidden_layers = 1;
    c.layer_types[0] = Q35_LAYER_FULL;
    c.n_full_layers = 1;
    c.n_linear_layers = 0;
    return q35_state_init(ms, &c, B, capacity, err, errlen);
}

static int check_call(const q35_model *m, const q35_state *ms, int T, const int32_t *tokens, const float *hidden,
                      const int32_t *seq_len, char *err, size_t errlen)
{
    if (no_head(m, err, errlen)) return -1;
    if (ms->n_layers != 1 || !ms->k_cache || !ms->k_cache[0]) {
        q35_errmsg(err, errlen, "mtp: the state is not an MTP state (q35_mtp_state_init)");
        return -1;
    }
    if (!tokens || !hidden) { q35_errmsg(err, errlen, "mtp: tokens and hidden [B, T, H] are required"); return -1; }
    return q35_fwd_check_tokens("mtp", m, ms, T, tokens, seq_len, err, errlen);
}

int q35_mtp_forward(const q35_model *m, q35_state *ms, const q35_impls *im, int T, const int32_t *tokens,
                    const float *hidden, const int32_t *seq_len, float *logits, int all_logits, float *hidden_out,
                    char *err, size_t errlen)
{
    if (check_call(m, ms, T, tokens, hidden, seq_len, err, errlen)) return -1;
    const q35_config *c = &m->cfg;
    const int B = ms->B, BT = B * T, H = c->hidden_size, V = m->sh.vocab_n;
    const double eps = c->rms_norm_eps;
    const int threads = im->threads > 0 ? im->threads : omp_get_max_threads();
    int32_t *len = malloc((size_t)B * sizeof *len);
    /* x [BT, H] residual stream, xn [BT, H] normalized, cat [BT, 2H] the fc input */
    float *x = q35_state_scratch(ms, 0, (size_t)BT * H * 4), *lg = NULL;
    int rc = -1;
    if (!len || !x) { q35_errmsg(err, errlen, "mtp: out of memory"); goto out; }
    for (int b = 0; b < B; b++) len[b] = seq_len ? seq_len[b] : T;
    float *xn = x + (size_t)BT * H, *cat = xn + (size_t)BT * H;
    const q35_fwd f = {.m = m, .s = ms, .im = im, .B = B, .T = T, .BT = BT, .seq_len = len, .err = err,
                       .errlen = errlen};

    /* the embeddings of x_{t+1} (each rank its vocabulary rows, summed) */
    for (int r = 0; r < BT; r++)
        if (r % T < len[r / T]) q35_embed_row(m, tokens[r], xn + (size_t)r * H);
    if (m->comm->size > 1 && q35_comm_sum(m->comm, xn, (size_t)BT * H)) {
        q35_errmsg(err, errlen, "mtp: all-reduce of the embeddings failed");
        goto out;
    }
    /* cat = [pre_fc_norm_embedding(e) ; pre_fc_norm_hidden(h)], embedding first (docs/mtp.md 1b) */
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int r = 0; r < BT; r++) {
        if (r % T >= len[r / T]) continue; /* padding: zero rows, never read */
        q35_rmsnorm_centred(xn + (size_t)r * H, m->mtp.pre_fc_norm_embedding, H, eps, cat + (size_t)r * 2 * H);
        q35_rmsnorm_centred(hidden + (size_t)r * H, m->mtp.pre_fc_norm_hidden, H, eps, cat + (size_t)r * 2 * H + H);
    }
    /* fc is replicated: every rank computes the whole [BT, H] */
    if (q35_fwd_linear(&f, BT, H, 2 * H, cat, m->mtp.fc, m->wt, x, 0)) goto out;

    /* the decoder layer mtp.layers.0, full attention at positions ms->pos[b] + t */
    const q35_layer *L = &m->mtp.layer;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int r = 0; r < BT; r++) q35_rmsnorm_centred(x + (size_t)r * H, L->input_norm, H, eps, xn + (size_t)r * H);
    if (q35_layer_attention(&f, L, ms->k_cache[0], ms->v_cache[0], xn, x)) goto out;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int r = 0; r < BT; r++) q35_rmsnorm_centred(x + (size_t)r * H, L->post_norm, H, eps, xn + (size_t)r * H);
    if (q35_layer_mlp(&f, L, xn, x)) goto out;

    /* out = mtp.norm(x) for the valid rows; padding rows zero */
    memset(xn, 0, (size_t)BT * H * sizeof *xn);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int r = 0; r < BT; r++)
        if (r % T < len[r / T]) q35_rmsnorm_centred(x + (size_t)r * H, m->mtp.norm, H, eps, xn + (size_t)r * H);
    if (hidden_out) memcpy(hidden_out, xn, (size_t)BT * H * sizeof *hidden_out);

    /* the model's lm_head on the rows whose logits are wanted, gathered into cat */
    int rows = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < len[b]; t++)
            if (all_logits || t == len[b] - 1)
                memcpy(cat + (size_t)rows++ * H, xn + ((size_t)b * T + t) * H, (size_t)H * sizeof *cat);
    lg = malloc((size_t)(rows ? rows : 1) * V * sizeof *lg);
    if (!lg) { q35_errmsg(err, errlen, "mtp: out of memory for %d x %d logits", rows, V); goto out; }
    if (rows && q35_fwd_linear(&f, rows, V, H, cat, m->lm_head, q35_model_wt(m, Q35_WF_LM_HEAD), lg, 0)) goto out;
    memset(logits, 0, (size_t)(all_logits ? BT : B) * V * sizeof *logits);
    rows = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < len[b]; t++)
            if (all_logits || t == len[b] - 1)
                memcpy(logits + (all_logits ? (size_t)b * T + t : (size_t)b) * V, lg + (size_t)rows++ * V,
                       (size_t)V * sizeof *logits);
    for (int b = 0; b < B; b++) ms->pos[b] += len[b];
    rc = 0;
out:
    free(lg);
    free(len);
    return rc;
}
