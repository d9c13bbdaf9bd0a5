/* fingerprint.c - see fingerprint.h and docs/state-file.md. */
#include "model/fingerprint.h"

#include "common/errmsg.h"
#include "kernels/matmul/matmul.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* ------------------------------------------------------------------ */
/* Config                                                              */
/* ------------------------------------------------------------------ */

typedef struct {
    char *buf;
    size_t n, len;
} text;

static void add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *at = t->len < t->n ? t->buf + t->len : NULL;
    int k = vsnprintf(at, at ? t->n - t->len : 0, fmt, ap);
    va_end(ap);
    if (k > 0) t->len += (size_t)k;
}

size_t q35_config_canonical(const q35_config *c, char *buf, size_t n)
{
    text t = {buf, n, 0};
    if (buf && n) buf[0] = 0;
    add(&t, "vocab_size=%d;hidden_size=%d;num_hidden_layers=%d;layer_types=", c->vocab_size, c->hidden_size,
        c->num_hidden_layers);
    for (int i = 0; i < c->num_hidden_layers && i < Q35_MAX_LAYERS; i++)
        add(&t, "%c", c->layer_types[i] == Q35_LAYER_FULL ? 'F' : 'L');
    add(&t, ";num_attention_heads=%d;num_key_value_heads=%d;head_dim=%d;attn_output_gate=%d;rms_norm_eps=%.17g",
        c->num_attention_heads, c->num_key_value_heads, c->head_dim, c->attn_output_gate, c->rms_norm_eps);
    add(&t,
        ";linear_conv_kernel_dim=%d;linear_key_head_dim=%d;linear_value_head_dim=%d;linear_num_key_heads=%d"
        ";linear_num_value_heads=%d",
        c->linear_conv_kernel_dim, c->linear_key_head_dim, c->linear_value_head_dim, c->linear_num_key_heads,
        c->linear_num_value_heads);
    add(&t,
        ";intermediate_size=%d;is_moe=%d;num_experts=%d;num_experts_per_tok=%d;moe_intermediate_size=%d"
        ";shared_expert_intermediate_size=%d;norm_topk_prob=%d;tie_word_embeddings=%d",
        c->intermediate_size, c->is_moe, c->num_experts, c->num_experts_per_tok, c->moe_intermediate_size,
        c->shared_expert_intermediate_size, c->norm_topk_prob, c->tie_word_embeddings);
    add(&t, ";rope_type=%s;rope_theta=%.17g;partial_rotary_factor=%.17g;rotary_dim=%d;", c->rope_type,
        c->rope_theta, c->partial_rotary_factor, c->rotary_dim);
    return t.len;
}

int q35_config_fingerprint(const q35_config *c, q35_hash128 *out, char *err, size_t errlen)
{
    const size_t n = q35_config_canonical(c, NULL, 0) + 1;
    char *s = malloc(n);
    if (!s) {
        q35_errmsg(err, errlen, "config fingerprint: out of memory");
        return -1;
    }
    q35_config_canonical(c, s, n);
    const XXH128_hash_t h = XXH3_128bits(s, n - 1);
    free(s);
    *out = (q35_hash128){h.high64, h.low64};
    return 0;
}

/* ------------------------------------------------------------------ */
/* Weights                                                             */
/* ------------------------------------------------------------------ */

typedef struct {
    XXH3_state_t *st;
    const q35_model *m;   /* the matrices' dtypes (q35_model_matrix_wt); vectors are F32 */
    float block[Q35_FP_BLOCK];
} fp_ctx;

/* Values [at, at + n) of a tensor (rows of ldw) as f32, into the hash. */
static void hash_values(fp_ctx *x, const void *data, q35_wtype wt, uint64_t ldw, uint64_t at, size_t n)
{
    if (wt == WT_F32) {
        XXH3_128bits_update(x->st, (const float *)data + at, n * sizeof(float));
        return;
    }
    if (wt != WT_BF16) { /* quantized: the exact dequantized values (a quantized model is another model; the
                          * layout, rows or interleaved, is not: the same values hash the same) */
        for (size_t i = 0; i < n; i++) x->block[i] = q35_w_rc(data, wt, ldw, (at + i) / ldw, (at + i) % ldw);
        XXH3_128bits_update(x->st, x->block, n * sizeof(float));
        return;
    }
    const uint16_t *h = (const uint16_t *)data + at;
    for (size_t i = 0; i < n; i++) x->block[i] = q35_bf16_to_f32(h[i]);
    XXH3_128bits_update(x->st, x->block, n * sizeof(float));
}

static void hash_tensor(fp_ctx *x, const char *name, const void *data, int matrix, int ndim, const int64_t *shape)
{
    const q35_wtype wt = matrix ? q35_model_matrix_wt(x->m, data) : WT_F32;
    uint64_t n = 1;
    int64_t dims[4] = {0};
    for (int i = 0; i < ndim; i++) {
        n *= (uint64_t)shape[i];
        dims[i] = shape[i];
    }
    const uint64_t ldw = (uint64_t)shape[ndim - 1];
    XXH3_128bits_update(x->st, name, strlen(name) + 1);
    const int32_t nd = ndim;
    XXH3_128bits_update(x->st, &nd, sizeof nd);
    XXH3_128bits_update(x->st, dims, (size_t)ndim * sizeof dims[0]);
    const uint64_t whole = (uint64_t)Q35_FP_BLOCKS * Q35_FP_BLOCK;
    if (n <= whole) {
        for (uint64_t at = 0; at < n; at += Q35_FP_BLOCK)
            hash_values(x, data, wt, ldw, at, (size_t)(n - at < Q35_FP_BLOCK ? n - at : Q35_FP_BLOCK));
        return;
    }
    /* blocks k = 0 .. B-1 start at k (n - block) / (B - 1): the first at 0, the last ending at n */
    for (uint64_t k = 0; k < Q35_FP_BLOCKS; k++) {
        const uint64_t at = k * (n - Q35_FP_BLOCK) / (Q35_FP_BLOCKS - 1);
        hash_values(x, data, wt, ldw, at, Q35_FP_BLOCK);
    }
}

#define T1(nm, ptr, mat, a) hash_tensor(x, nm, ptr, mat, 1, (int64_t[]){(a)})
#define T2(nm, ptr, mat, a, b) hash_tensor(x, nm, ptr, mat, 2, (int64_t[]){(a), (b)})
#define T3(nm, ptr, mat, a, b, d) hash_tensor(x, nm, ptr, mat, 3, (int64_t[]){(a), (b), (d)})

static void layer_name(char *buf, size_t n, int l, const char *what) { snprintf(buf, n, "layers.%d.%s", l, what); }

/* Every weight the forward pass reads, in a fixed order, with the shapes
 * model/load.c holds them in (names as in the checkpoint, without prefix). */
static void hash_weights(fp_ctx *x, const q35_model *m)
{
    const q35_config *c = &m->cfg;
    const int64_t H = c->hidden_size, V = c->vocab_size;
    const int64_t Hv = c->linear_num_value_heads, Dv = c->linear_value_head_dim, K = c->linear_conv_kernel_dim;
    const int64_t C = q35_conv_channels(c);
    const int64_t nh = c->num_attention_heads, nkv = c->num_key_value_heads, hd = c->head_dim;
    T2("embed_tokens.weight", m->embed, 1, V, H);
    T1("norm.weight", m->final_norm, 0, H);
    if (!c->tie_word_embeddings) T2("lm_head.weight", m->lm_head, 1, V, H);
    char nm[128];
#define N(what) (layer_name(nm, sizeof nm, l, what), nm)
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const q35_layer *L = &m->layers[l];
        T1(N("input_layernorm.weight"), L->input_norm, 0, H);
        T1(N("post_attention_layernorm.weight"), L->post_norm, 0, H);
        if (c->layer_types[l] == Q35_LAYER_LINEAR) {
            T2(N("linear_attn.in_proj_qkv.weight"), L->in_proj_qkv, 1, C, H);
            T2(N("linear_attn.in_proj_z.weight"), L->in_proj_z, 1, Hv * Dv, H);
            T2(N("linear_attn.in_proj_b.weight"), L->in_proj_b, 1, Hv, H);
            T2(N("linear_attn.in_proj_a.weight"), L->in_proj_a, 1, Hv, H);
            T2(N("linear_attn.out_proj.weight"), L->out_proj, 1, H, Hv * Dv);
            T2(N("linear_attn.conv1d.weight"), L->conv_w, 0, C, K);
            T1(N("linear_attn.dt_bias"), L->dt_bias, 0, Hv);
            T1(N("linear_attn.A_log"), L->A_log, 0, Hv);
            T1(N("linear_attn.norm.weight"), L->gnorm, 0, Dv);
        } else {
            T2(N("self_attn.q_proj.weight"), L->q_proj, 1, 2 * nh * hd, H);
            T2(N("self_attn.k_proj.weight"), L->k_proj, 1, nkv * hd, H);
            T2(N("self_attn.v_proj.weight"), L->v_proj, 1, nkv * hd, H);
            T2(N("self_attn.o_proj.weight"), L->o_proj, 1, H, nh * hd);
            T1(N("self_attn.q_norm.weight"), L->q_norm, 0, hd);
            T1(N("self_attn.k_norm.weight"), L->k_norm, 0, hd);
        }
        if (c->is_moe) {
            const int64_t E = c->num_experts, I = c->moe_intermediate_size, Is = c->shared_expert_intermediate_size;
            T2(N("mlp.gate.weight"), L->router, 1, E, H);
            T3(N("mlp.experts.gate_up_proj"), L->experts_gate_up, 1, E, 2 * I, H);
            T3(N("mlp.experts.down_proj"), L->experts_down, 1, E, H, I);
            if (Is > 0) {
                T2(N("mlp.shared_expert.gate_proj.weight"), L->shared_gate, 1, Is, H);
                T2(N("mlp.shared_expert.up_proj.weight"), L->shared_up, 1, Is, H);
                T2(N("mlp.shared_expert.down_proj.weight"), L->shared_down, 1, H, Is);
                T2(N("mlp.shared_expert_gate.weight"), L->shared_expert_gate, 1, 1, H);
            }
        } else {
            const int64_t I = c->intermediate_size;
            T2(N("mlp.gate_proj.weight"), L->gate_proj, 1, I, H);
            T2(N("mlp.up_proj.weight"), L->up_proj, 1, I, H);
            T2(N("mlp.down_proj.weight"), L->down_proj, 1, H, I);
        }
    }
#undef N
}

int q35_model_fingerprint(const q35_model *m, q35_hash128 *out, char *err, size_t errlen)
{
    if (m->comm && m->comm->size > 1) {
        q35_errmsg(err, errlen, "model fingerprint: rank %d of %d holds a slice of the model (tensor parallelism); "
                   "only a one-process model has a fingerprint", m->comm->rank, m->comm->size);
        return -1;
    }
    if (!m->layers || !m->embed) {
        q35_errmsg(err, errlen, "model fingerprint: the model is not loaded");
        return -1;
    }
    q35_hash128 cfp;
    if (q35_config_fingerprint(&m->cfg, &cfp, err, errlen)) return -1;
    fp_ctx *x = malloc(sizeof *x);
    XXH3_state_t *st = XXH3_createState();
    if (!x || !st) {
        free(x);
        XXH3_freeState(st);
        q35_errmsg(err, errlen, "model fingerprint: out of memory");
        return -1;
    }
    x->st = st;
    x->m = m;
    XXH3_128bits_reset(st);
    static const char tag[] = "q35lab model fingerprint v1";
    XXH3_128bits_update(st, tag, sizeof tag);
    const uint64_t words[4] = {cfp.hi, cfp.lo, Q35_FP_BLOCK, Q35_FP_BLOCKS};
    XXH3_128bits_update(st, words, sizeof words);
    hash_weights(x, m);
    const XXH128_hash_t h = XXH3_128bits_digest(st);
    XXH3_freeState(st);
    free(x);
    *out = (q35_hash128){h.high64, h.low64};
    return 0;
}

/* ------------------------------------------------------------------ */
/* Text                                                                */
/* ------------------------------------------------------------------ */

void q35_hash128_hex(q35_hash128 h, char out[33])
{
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)h.hi, (unsigned long long)h.lo);
}

int q35_hash128_parse(const char *s, q35_hash128 *out)
{
    uint64_t w[2] = {0, 0};
    for (int i = 0; i < 32; i++) {
        const char ch = s[i];
        int v;
        if (ch >= '0' && ch <= '9') v = ch - '0';
        else if (ch >= 'a' && ch <= 'f') v = ch - 'a' + 10;
        else return -1;
        w[i / 16] = w[i / 16] << 4 | (uint64_t)v;
    }
    if (s[32]) return -1;
    *out = (q35_hash128){w[0], w[1]};
    return 0;
}
