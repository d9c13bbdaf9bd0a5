/* init.c - see init.h and docs/model-init.md.
 *
 * A plan lists the tensors of the checkpoint (stored name, shape) and, for
 * each, its segments: runs of values drawn from one distribution with one
 * RNG key.  A tensor is usually one segment; a fused expert tensor is one per
 * expert and projection, keyed like the matching per-expert tensor.  The
 * safetensors header is built from the plan, then the fill callback generates
 * each tensor batch by batch (blocks of a batch in parallel) into the sink. */
#include "model/init.h"

#include "common/errmsg.h"
#include "common/grow_array.h"
#include "common/json_file.h"
#include "model/config.h"
#include "model/presets.h"
#include "model/tokenizer_write.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PREFIX "model.language_model."
#define NORM_STD 0.1 /* zero-centred RMSNorm weights, dt_bias, the gated norm's spread */

typedef enum { D_NORMAL, D_ONE_PLUS_NORMAL, D_LOG_UNIFORM_1_16 } dist_kind;

typedef struct {
    uint64_t n;       /* values */
    uint64_t key;     /* hash of the canonical matrix name */
    dist_kind kind;
    double std;
} segment;

typedef struct {
    char name[112];   /* as stored */
    int ndim;
    int64_t shape[3];
    int seg0, nseg;
    int layer;        /* -1 before the layers, L after them */
} tensor_plan;

typedef struct {
    tensor_plan *t;
    int n, cap;
    segment *s;
    int ns, cap_s;
    int oom;
} plan;

/* ------------------------------------------------------------------ */
/* Plan                                                                */
/* ------------------------------------------------------------------ */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The seed of one block's stream (gsl's mt19937 keeps the low 32 bits). */
static unsigned long block_seed(uint64_t seed, uint64_t key, uint64_t block)
{
    uint64_t h = splitmix64(seed);
    h = splitmix64(h ^ key);
    h = splitmix64(h ^ block);
    return (unsigned long)(h & 0xffffffffu);
}

static void add_segment(plan *p, const char *key, uint64_t n, dist_kind kind, double std)
{
    if (p->oom || q35_grow_array((void **)&p->s, &p->cap_s, p->ns, sizeof *p->s)) {
        p->oom = 1;
        return;
    }
    p->s[p->ns++] = (segment){n, fnv1a(key), kind, std};
    p->t[p->n - 1].nseg++;
}

/* Start a tensor: stored name = prefix + canonical; its shape. */
static void add_tensor(plan *p, int layer, const char *prefix, const char *canon, int ndim,
                       int64_t d0, int64_t d1, int64_t d2)
{
    if (p->oom || q35_grow_array((void **)&p->t, &p->cap, p->n, sizeof *p->t)) {
        p->oom = 1;
        return;
    }
    tensor_plan *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s%s", prefix, canon);
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->shape[2] = d2;
    t->seg0 = p->ns;
    t->layer = layer;
}

/* A tensor that is one matrix (or vector), keyed by its canonical name. */
static void add_simple(plan *p, int layer, const char *canon, int ndim, int64_t d0, int64_t d1,
                       int64_t d2, dist_kind kind, double std)
{
    /* lm_head.* and mtp.* sit at the top level of the release, outside the language model */
    const int top = !strncmp(canon, "lm_head", 7) || !strncmp(canon, "mtp.", 4);
    add_tensor(p, layer, top ? "" : PREFIX, canon, ndim, d0, d1, d2);
    uint64_t n = (uint64_t)d0 * (uint64_t)(ndim > 1 ? d1 : 1) * (uint64_t)(ndim > 2 ? d2 : 1);
    add_segment(p, canon, n, kind, std);
}

#define LNAME(buf, ...) snprintf(buf, sizeof buf, __VA_ARGS__)

/* One decoder layer, stored names lp + "." + suffix (lp "layers.3", or
 * "mtp.layers.0" for the MTP head's full-attention layer); i is the layer
 * number the progress lines count. */
static void plan_layer(plan *p, const q35_config *c, int i, const char *lp, q35_layer_type type,
                       q35_expert_layout experts, double r)
{
    const int64_t H = c->hidden_size;
    const double s_in = 1.0 / sqrt((double)H);
    char k[112];
    LNAME(k, "%s.input_layernorm.weight", lp);
    add_simple(p, i, k, 1, H, 0, 0, D_NORMAL, NORM_STD);
    if (type == Q35_LAYER_LINEAR) {
        const int64_t hk = c->linear_num_key_heads, hv = c->linear_num_value_heads;
        const int64_t dk = c->linear_key_head_dim, dv = c->linear_value_head_dim;
        const int64_t C = 2 * hk * dk + hv * dv, K = c->linear_conv_kernel_dim;
        LNAME(k, "%s.linear_attn.in_proj_qkv.weight", lp);
        add_simple(p, i, k, 2, C, H, 0, D_NORMAL, s_in);
        LNAME(k, "%s.linear_attn.in_proj_z.weight", lp);
        add_simple(p, i, k, 2, hv * dv, H, 0, D_NORMAL, s_in);
        LNAME(k, "%s.linear_attn.in_proj_b.weight", lp);
        add_simple(p, i, k, 2, hv, H, 0, D_NORMAL, s_in);
        LNAME(k, "%s.linear_attn.in_proj_a.weight", lp);
        add_simple(p, i, k, 2, hv, H, 0, D_NORMAL, s_in);
        LNAME(k, "%s.linear_attn.conv1d.weight", lp);
        add_simple(p, i, k, 3, C, 1, K, D_NORMAL, 1.0 / sqrt((double)K));
        LNAME(k, "%s.linear_attn.dt_bias", lp);
        add_simple(p, i, k, 1, hv, 0, 0, D_NORMAL, NORM_STD);
        LNAME(k, "%s.linear_attn.A_log", lp);
        add_simple(p, i, k, 1, hv, 0, 0, D_LOG_UNIFORM_1_16, 0);
        LNAME(k, "%s.linear_attn.norm.weight", lp);
        add_simple(p, i, k, 1, dv, 0, 0, D_ONE_PLUS_NORMAL, NORM_STD);
        LNAME(k, "%s.linear_attn.out_proj.weight", lp);
        add_simple(p, i, k, 2, H, hv * dv, 0, D_NORMAL, r / sqrt((double)(hv * dv)));
    } else {
        const int64_t nh = c->num_attention_heads, kv = c->num_key_value_heads, hd = c->head_dim;
        LNAME(k, "%s.self_attn.q_proj.weight", lp);
        add_simple(p, i, k, 2, 2 * nh * hd, H, 0, D_NORMAL, s_in);
        LNAME(k, "%s.self_attn.k_proj.weight", lp);
        add_simple(p, i, k, 2, kv * hd, H, 0, D_NORMAL, s_in);
        LNAME(k, "%s.self_attn.v_proj.weight", lp);
        add_simple(p, i, k, 2, kv * hd, H, 0, D_NORMAL, s_in);
        LNAME(k, "%s.self_attn.o_proj.weight", lp);
        add_simple(p, i, k, 2, H, nh * hd, 0, D_NORMAL, r / sqrt((double)(nh * hd)));
        LNAME(k, "%s.self_attn.q_norm.weight", lp);
        add_simple(p, i, k, 1, hd, 0, 0, D_NORMAL, NORM_STD);
        LNAME(k, "%s.self_attn.k_norm.weight", lp);
        add_simple(p, i, k, 1, hd, 0, 0, D_NORMAL, NORM_STD);
    }
    LNAME(k, "%s.post_attention_layernorm.weight", lp);
    add_simple(p, i, k, 1, H, 0, 0, D_NORMAL, NORM_STD);
    if (!c->is_moe) {
        const int64_t I = c->intermediate_size;
        LNAME(k, "%s.mlp.gate_proj.weight", lp);
        add_simple(p, i, k, 2, I, H, 0, D_NORMAL, s_in);
        LNAME(k, "%s.mlp.up_proj.weight", lp);
        add_simple(p, i, k, 2, I, H, 0, D_NORMAL, s_in);
        LNAME(k, "%s.mlp.down_proj.weight", lp);
        add_simple(p, i, k, 2, H, I, 0, D_NORMAL, r / sqrt((double)I));
        return;
    }
    const int64_t E = c->num_experts, I = c->moe_intermediate_size;
    const int64_t Is = c->shared_expert_intermediate_size;
    const double s_down = r / sqrt((double)I);
    LNAME(k, "%s.mlp.gate.weight", lp);
    add_simple(p, i, k, 2, E, H, 0, D_NORMAL, s_in);
    if (experts == Q35_EXPERTS_FUSED) {
        /* gate_up_proj [E, 2I, H]: per expert I gate rows, then I up rows;
         * down_proj [E, H, I].  No ".weight" suffix, as the release. */
        char t[112];
        LNAME(t, "%s.mlp.experts.gate_up_proj", lp);
        add_tensor(p, i, strncmp(t, "mtp.", 4) ? PREFIX : "", t, 3, E, 2 * I, H);
        for (int e = 0; e < E; e++) {
            LNAME(k, "%s.mlp.experts.%d.gate_proj.weight", lp, e);
            add_segment(p, k, (uint64_t)(I * H), D_NORMAL, s_in);
            LNAME(k, "%s.mlp.experts.%d.up_proj.weight", lp, e);
            add_segment(p, k, (uint64_t)(I * H), D_NORMAL, s_in);
        }
        LNAME(t, "%s.mlp.experts.down_proj", lp);
        add_tensor(p, i, strncmp(t, "mtp.", 4) ? PREFIX : "", t, 3, E, H, I);
        for (int e = 0; e < E; e++) {
            LNAME(k, "%s.mlp.experts.%d.down_proj.weight", lp, e);
            add_segment(p, k, (uint64_t)(H * I), D_NORMAL, s_down);
        }
    } else {
        for (int e = 0; e < E; e++) {
            LNAME(k, "%s.mlp.experts.%d.gate_proj.weight", lp, e);
            add_simple(p, i, k, 2, I, H, 0, D_NORMAL, s_in);
            LNAME(k, "%s.mlp.experts.%d.up_proj.weight", lp, e);
            add_simple(p, i, k, 2, I, H, 0, D_NORMAL, s_in);
            LNAME(k, "%s.mlp.experts.%d.down_proj.weight", lp, e);
            add_simple(p, i, k, 2, H, I, 0, D_NORMAL, s_down);
        }
    }
    LNAME(k, "%s.mlp.shared_expert.gate_proj.weight", lp);
    add_simple(p, i, k, 2, Is, H, 0, D_NORMAL, s_in);
    LNAME(k, "%s.mlp.shared_expert.up_proj.weight", lp);
    add_simple(p, i, k, 2, Is, H, 0, D_NORMAL, s_in);
    LNAME(k, "%s.mlp.shared_expert.down_proj.weight", lp);
    add_simple(p, i, k, 2, H, Is, 0, D_NORMAL, r / sqrt((double)Is));
    LNAME(k, "%s.mlp.shared_expert_gate.weight", lp);
    add_simple(p, i, k, 2, 1, H, 0, D_NORMAL, s_in);
}

static int plan_build(plan *p, const q35_config *c, q35_expert_layout experts, double embed_std)
{
    const int L = c->num_hidden_layers;
    const int64_t V = c->vocab_size, H = c->hidden_size;
    const double r = 1.0 / sqrt(2.0 * L); /* residual factor of out_proj / o_proj / down_proj */
    memset(p, 0, sizeof *p);
    add_simple(p, -1, "embed_tokens.weight", 2, V, H, 0, D_NORMAL, embed_std);
    for (int i = 0; i < L && !p->oom; i++) {
        char lp[32];
        snprintf(lp, sizeof lp, "layers.%d", i);
        plan_layer(p, c, i, lp, (q35_layer_type)c->layer_types[i], experts, r);
    }
    add_simple(p, L, "norm.weight", 1, H, 0, 0, D_NORMAL, NORM_STD);
    if (!c->tie_word_embeddings)
        add_simple(p, L, "lm_head.weight", 2, V, H, 0, D_NORMAL, 1.0 / sqrt((double)H));
    if (c->mtp_num_hidden_layers > 0) {
        /* the MTP head (docs/mtp.md), released names: fc [H, 2H] maps the two
         * normalized H-vectors back to H; one full-attention layer; its norm */
        add_simple(p, L, "mtp.fc.weight", 2, H, 2 * H, 0, D_NORMAL, 1.0 / sqrt((double)(2 * H)));
        add_simple(p, L, "mtp.pre_fc_norm_embedding.weight", 1, H, 0, 0, D_NORMAL, NORM_STD);
        add_simple(p, L, "mtp.pre_fc_norm_hidden.weight", 1, H, 0, 0, D_NORMAL, NORM_STD);
        plan_layer(p, c, L, "mtp.layers.0", Q35_LAYER_FULL, experts, r);
        add_simple(p, L, "mtp.norm.weight", 1, H, 0, 0, D_NORMAL, NORM_STD);
    }
    return p->oom ? -1 : 0;
}

static void plan_free(plan *p)
{
    free(p->t);
    free(p->s);
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------------ */
/* Generation                                                          */
/* ------------------------------------------------------------------ */

typedef struct {
    const segment *seg;
    uint64_t block;     /* block number inside the segment */
    uint64_t n;         /* values in this block */
    size_t off;         /* where in the batch buffer */
} work_item;

typedef struct {
    const plan *p;
    const q35_config *c;
    uint64_t seed;
    st_dtype dtype;
    int threads;
    float *fbuf;        /* Q35_INIT_BATCH floats */
    uint16_t *hbuf;     /* Q35_INIT_BATCH bf16 values (bf16 output only) */
    work_item *items;   /* the blocks of the current batch */
    gsl_rng *rng;       /* for batches generated on the calling thread */
    /* progress */
    FILE *progress;
    int step;           /* a line every `step` layers */
    uint64_t written, total;
    struct timespec t0;
    uint64_t n_values;
} gen_ctx;

static double elapsed(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

static void gen_block(gsl_rng *r, const gen_ctx *g, const work_item *it)
{
    const segment *s = it->seg;
    gsl_rng_set(r, block_seed(g->seed, s->key, it->block));
    float *x = g->fbuf + it->off;
    switch (s->kind) {
    case D_NORMAL:
        for (uint64_t j = 0; j < it->n; j++)
            x[j] = (float)(s->std * gsl_ran_gaussian_ziggurat(r, 1.0));
        break;
    case D_ONE_PLUS_NORMAL:
        for (uint64_t j = 0; j < it->n; j++)
            x[j] = (float)(1.0 + s->std * gsl_ran_gaussian_ziggurat(r, 1.0));
        break;
    case D_LOG_UNIFORM_1_16:
        for (uint64_t j = 0; j < it->n; j++)
            x[j] = (float)log(1.0 + 15.0 * gsl_rng_uniform(r));
        break;
    }
    if (g->dtype == ST_BF16) {
        uint16_t *h = g->hbuf + it->off;
        for (uint64_t j = 0; j < it->n; j++)
            h[j] = st_f32_to_bf16(x[j]);
    }
}

/* Generate n_items blocks (in parallel) and write the batch in order. */
static int flush(gen_ctx *g, int n_items, size_t used, st_sink *sink, char *err, size_t errlen)
{
    int rng_fail = 0;
    /* small batches (norms, tiny models) are not worth waking threads for */
    const int nt = used >= 2 * (size_t)Q35_INIT_BLOCK ? g->threads : 1;
    if (nt == 1 && g->rng) {
        for (int i = 0; i < n_items; i++)
            gen_block(g->rng, g, &g->items[i]);
        goto write;
    }
#pragma omp parallel num_threads(nt) reduction(| : rng_fail)
    {
        gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
        if (!r)
            rng_fail = 1;
#pragma omp for schedule(dynamic, 1)
        for (int i = 0; i < n_items; i++)
            if (r)
                gen_block(r, g, &g->items[i]);
        if (r)
            gsl_rng_free(r);
    }
    if (rng_fail) {
        q35_errmsg(err, errlen, "out of memory allocating an RNG");
        return -1;
    }
write:;
    const void *src = g->dtype == ST_BF16 ? (const void *)g->hbuf : (const void *)g->fbuf;
    return st_sink_write(sink, src, used * st_dtype_size(g->dtype));
}

static void report(gen_ctx *g, const char *what)
{
    if (!g->progress)
        return;
    const double t = elapsed(&g->t0);
    fprintf(g->progress, "  %-22s %8.1f of %.1f MiB written, %6.1f s (%.0f MiB/s)\n", what,
            (double)g->written / 1048576.0, (double)g->total / 1048576.0, t,
            t > 0 ? (double)g->written / 1048576.0 / t : 0.0);
    fflush(g->progress);
}

static int fill_tensor(void *ctx, int index, const char *name, st_sink *sink, char *err,
                       size_t errlen)
{
    gen_ctx *g = ctx;
    const tensor_plan *t = &g->p->t[index];
    (void)name;
    int n_items = 0;
    size_t used = 0;
    for (int si = t->seg0; si < t->seg0 + t->nseg; si++) {
        const segment *s = &g->p->s[si];
        for (uint64_t b = 0; b * Q35_INIT_BLOCK < s->n; b++) {
            const uint64_t n = s->n - b * Q35_INIT_BLOCK < Q35_INIT_BLOCK
                                   ? s->n - b * Q35_INIT_BLOCK
                                   : Q35_INIT_BLOCK;
            if (used + n > Q35_INIT_BATCH) {
                if (flush(g, n_items, used, sink, err, errlen))
                    return -1;
                n_items = 0;
                used = 0;
            }
            g->items[n_items++] = (work_item){s, b, n, used};
            used += n;
            g->n_values += n;
        }
    }
    if (n_items && flush(g, n_items, used, sink, err, errlen))
        return -1;
    /* progress: after the embeddings, every `step` layers, at the end */
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++)
        numel *= (uint64_t)t->shape[d];
    g->written += numel * st_dtype_size(g->dtype);
    const int last_of_layer = index + 1 == g->p->n || g->p->t[index + 1].layer != t->layer;
    if (last_of_layer) {
        char what[64];
        const int L = g->c->num_hidden_layers;
        if (t->layer < 0) {
            report(g, "embeddings");
        } else if (t->layer < L && ((t->layer + 1) % g->step == 0 || t->layer + 1 == L)) {
            snprintf(what, sizeof what, "layer %d/%d", t->layer + 1, L);
            report(g, what);
        } else if (t->layer == L) {
            report(g, "final norm / lm_head");
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* config.json                                                         */
/* ------------------------------------------------------------------ */

static cJSON *config_json(const q35_config *c, st_dtype dt)
{
    const char *dtype = dt == ST_BF16 ? "bfloat16" : "float32";
    cJSON *root = cJSON_CreateObject(), *t = cJSON_CreateObject();
    if (!root || !t) {
        cJSON_Delete(root);
        cJSON_Delete(t);
        return NULL;
    }
    cJSON_AddItemToObject(root, "architectures", cJSON_CreateStringArray(
                                                     (const char *const[]){c->architecture}, 1));
    cJSON_AddStringToObject(root, "model_type", c->is_moe ? "qwen3_5_moe" : "qwen3_5");
    cJSON_AddBoolToObject(root, "tie_word_embeddings", c->tie_word_embeddings);
    cJSON_AddStringToObject(root, "dtype", dtype);
    cJSON_AddStringToObject(root, "torch_dtype", dtype);
    cJSON_AddItemToObject(root, "text_config", t);

    cJSON_AddStringToObject(t, "model_type", c->model_type);
    cJSON_AddStringToObject(t, "dtype", dtype);
    cJSON_AddNumberToObject(t, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(t, "hidden_size", c->hidden_size);
    if (!c->is_moe)
        cJSON_AddNumberToObject(t, "intermediate_size", c->intermediate_size);
    cJSON_AddNumberToObject(t, "num_hidden_layers", c->num_hidden_layers);
    cJSON *lt = cJSON_AddArrayToObject(t, "layer_types");
    for (int i = 0; lt && i < c->num_hidden_layers; i++)
        cJSON_AddItemToArray(lt, cJSON_CreateString(q35_layer_type_name(c->layer_types[i])));
    cJSON_AddNumberToObject(t, "full_attention_interval", Q35_PRESET_FULL_ATTN_INTERVAL);
    cJSON_AddNumberToObject(t, "num_attention_heads", c->num_attention_heads);
    cJSON_AddNumberToObject(t, "num_key_value_heads", c->num_key_value_heads);
    cJSON_AddNumberToObject(t, "head_dim", c->head_dim);
    cJSON_AddBoolToObject(t, "attn_output_gate", 1);
    cJSON_AddBoolToObject(t, "attention_bias", 0);
    cJSON_AddStringToObject(t, "hidden_act", "silu");
    cJSON_AddNumberToObject(t, "max_position_embeddings", 262144);
    cJSON_AddNumberToObject(t, "rms_norm_eps", c->rms_norm_eps);
    cJSON_AddNumberToObject(t, "initializer_range", 0.02);
    cJSON_AddNumberToObject(t, "linear_conv_kernel_dim", c->linear_conv_kernel_dim);
    cJSON_AddNumberToObject(t, "linear_key_head_dim", c->linear_key_head_dim);
    cJSON_AddNumberToObject(t, "linear_value_head_dim", c->linear_value_head_dim);
    cJSON_AddNumberToObject(t, "linear_num_key_heads", c->linear_num_key_heads);
    cJSON_AddNumberToObject(t, "linear_num_value_heads", c->linear_num_value_heads);
    if (c->is_moe) {
        cJSON_AddNumberToObject(t, "num_experts", c->num_experts);
        cJSON_AddNumberToObject(t, "num_experts_per_tok", c->num_experts_per_tok);
        cJSON_AddNumberToObject(t, "moe_intermediate_size", c->moe_intermediate_size);
        cJSON_AddNumberToObject(t, "shared_expert_intermediate_size",
                                c->shared_expert_intermediate_size);
    }
    cJSON *rp = cJSON_AddObjectToObject(t, "rope_parameters");
    if (rp) {
        cJSON_AddStringToObject(rp, "rope_type", "default");
        cJSON_AddNumberToObject(rp, "rope_theta", c->rope_theta);
        cJSON_AddNumberToObject(rp, "partial_rotary_factor", c->partial_rotary_factor);
    }
    if (c->n_eos == 1)
        cJSON_AddNumberToObject(t, "eos_token_id", c->eos_token_id[0]);
    cJSON_AddBoolToObject(t, "tie_word_embeddings", c->tie_word_embeddings);
    if (c->mtp_num_hidden_layers > 0)
        cJSON_AddNumberToObject(t, "mtp_num_hidden_layers", c->mtp_num_hidden_layers);
    return root;
}

/* ------------------------------------------------------------------ */
/* The folder                                                          */
/* ------------------------------------------------------------------ */

/* 1 if dir has an entry besides . and .., 0 if not, -1 if unreadable. */
static int dir_nonempty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *e;
    int n = 0;
    while (!n && (e = readdir(d)))
        n = strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

/* mkdir -p; *created = 1 if the last component was made here. */
static int make_dir(const char *dir, int *created, char *err, size_t errlen)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) {
        q35_errmsg(err, errlen, "%s: path too long", dir);
        return -1;
    }
    for (char *q = buf + 1; *q; q++) {
        if (*q != '/')
            continue;
        *q = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
            q35_errmsg(err, errlen, "cannot create directory %s: %s", buf, strerror(errno));
            return -1;
        }
        *q = '/';
    }
    if (mkdir(buf, 0755) != 0) {
        q35_errmsg(err, errlen, "cannot create directory %s: %s", buf, strerror(errno));
        return -1;
    }
    *created = 1;
    return 0;
}

static int prepare_dir(const char *dir, int force, int *created, char *err, size_t errlen)
{
    struct stat st;
    *created = 0;
    if (stat(dir, &st) != 0) {
        if (errno != ENOENT) {
            q35_errmsg(err, errlen, "cannot access %s: %s", dir, strerror(errno));
            return -1;
        }
        return make_dir(dir, created, err, errlen);
    }
    if (!S_ISDIR(st.st_mode)) {
        q35_errmsg(err, errlen, "%s exists and is not a directory", dir);
        return -1;
    }
    int ne = dir_nonempty(dir);
    if (ne < 0) {
        q35_errmsg(err, errlen, "cannot read directory %s: %s", dir, strerror(errno));
        return -1;
    }
    if (ne && !force) {
        q35_errmsg(err, errlen, "%s is not empty (use --force to write model.safetensors and "
                   "config.json into it)", dir);
        return -1;
    }
    return 0;
}

int q35_init_write(const char *dir, const q35_init_opts *o, q35_init_stats *stats, char *err,
                   size_t errlen)
{
    const q35_preset *pr = q35_preset_find(o->preset);
    if (!pr) {
        char names[512];
        q35_preset_names(names, sizeof names);
        q35_errmsg(err, errlen, "unknown preset '%s' (valid: %s)", o->preset ? o->preset : "",
                   names);
        return -1;
    }
    if (o->dtype != ST_BF16 && o->dtype != ST_F32) {
        q35_errmsg(err, errlen, "dtype must be bf16 or f32, got %s", st_dtype_name(o->dtype));
        return -1;
    }
    if (o->experts != Q35_EXPERTS_FUSED && o->experts != Q35_EXPERTS_PER_EXPERT) {
        q35_errmsg(err, errlen, "bad expert layout %d", (int)o->experts);
        return -1;
    }
    q35_config c;
    if (q35_preset_config(pr, o->layers, &c, err, errlen))
        return -1;
    if (!dir || !*dir) {
        q35_errmsg(err, errlen, "no output directory");
        return -1;
    }

    plan p;
    const double embed_std = o->embed_std > 0 ? o->embed_std : Q35_INIT_EMBED_STD;
    if (!(o->embed_std >= 0) || !isfinite(o->embed_std)) {
        q35_errmsg(err, errlen, "embedding std must be a positive number, got %g", o->embed_std);
        return -1;
    }
    if (plan_build(&p, &c, o->experts, embed_std)) {
        plan_free(&p);
        q35_errmsg(err, errlen, "out of memory planning %s", pr->name);
        return -1;
    }
    int created = 0, rc = -1, wrote_st = 0, wrote_cfg = 0;
    st_writer *w = NULL;
    cJSON *cfg = NULL, *tok = NULL;
    gen_ctx g = {.p = &p, .c = &c, .seed = o->seed, .dtype = o->dtype,
                 .threads = o->threads > 0 ? o->threads : omp_get_max_threads(),
                 .progress = o->progress};
    char st_path[4200], cfg_path[4200], tok_path[4200];
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", dir);
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", dir);

    if (prepare_dir(dir, o->force, &created, err, errlen))
        goto out;
    if (!(w = st_writer_new())) {
        q35_errmsg(err, errlen, "out of memory");
        goto out;
    }
    char seed_s[32];
    snprintf(seed_s, sizeof seed_s, "%llu", (unsigned long long)o->seed);
    if (st_writer_meta(w, "format", "pt") || st_writer_meta(w, "q35lab.preset", pr->name) ||
        st_writer_meta(w, "q35lab.seed", seed_s) ||
        st_writer_meta_num(w, "q35lab.embed_std", embed_std, 17) ||
        st_writer_meta(w, "q35lab.init", "random weights, docs/model-init.md")) {
        q35_errmsg(err, errlen, "%s: %s", st_path, st_writer_error(w));
        goto out;
    }
    uint64_t data_bytes = 0;
    for (int i = 0; i < p.n; i++) {
        const tensor_plan *t = &p.t[i];
        if (st_writer_add_deferred(w, t->name, o->dtype, t->ndim, t->shape)) {
            q35_errmsg(err, errlen, "%s: %s", st_path, st_writer_error(w));
            goto out;
        }
        uint64_t n = 1;
        for (int d = 0; d < t->ndim; d++)
            n *= (uint64_t)t->shape[d];
        data_bytes += n * st_dtype_size(o->dtype);
    }
    g.fbuf = malloc((size_t)Q35_INIT_BATCH * sizeof *g.fbuf);
    g.hbuf = o->dtype == ST_BF16 ? malloc((size_t)Q35_INIT_BATCH * sizeof *g.hbuf) : NULL;
    /* items of one batch <= blocks of one tensor */
    size_t max_items = 0;
    for (int i = 0; i < p.n; i++) {
        size_t k = 0;
        for (int si = p.t[i].seg0; si < p.t[i].seg0 + p.t[i].nseg; si++)
            k += (size_t)((p.s[si].n + Q35_INIT_BLOCK - 1) / Q35_INIT_BLOCK);
        if (k > max_items)
            max_items = k;
    }
    g.items = malloc((max_items ? max_items : 1) * sizeof *g.items);
    g.rng = gsl_rng_alloc(gsl_rng_mt19937);
    if (!g.fbuf || (o->dtype == ST_BF16 && !g.hbuf) || !g.items || !g.rng) {
        q35_errmsg(err, errlen, "out of memory for the generation buffers");
        goto out;
    }
    g.step = c.num_hidden_layers <= 8 ? 1 : (c.num_hidden_layers + 7) / 8;
    g.total = data_bytes;
    clock_gettime(CLOCK_MONOTONIC, &g.t0);
    if (o->progress)
        fprintf(o->progress, "model init: %s%s, %d layers, %s, %d tensors, %.1f MiB -> %s\n",
                pr->name, c.is_moe ? (o->experts == Q35_EXPERTS_FUSED ? " (fused experts)"
                                                                       : " (per-expert)")
                                   : "",
                c.num_hidden_layers, st_dtype_name(o->dtype), p.n,
                (double)data_bytes / 1048576.0, st_path);
    if (st_writer_write_stream(w, st_path, fill_tensor, &g, err, errlen))
        goto out;
    wrote_st = 1;
    if (!(cfg = config_json(&c, o->dtype))) {
        q35_errmsg(err, errlen, "%s: out of memory building JSON", cfg_path);
        goto out;
    }
    if (q35_json_write_atomic(cfg, cfg_path, err, errlen))
        goto out;
    wrote_cfg = 1;
    /* the synthetic presets get a small tokenizer (docs/text.md); the
     * released shapes' vocabulary is the real tokenizer's, not written here */
    if (!pr->hf_repo) {
        if (!(tok = q35_tiny_tokenizer_json(c.vocab_size, err, errlen)) ||
            q35_json_write_atomic(tok, tok_path, err, errlen))
            goto out;
    }
    struct stat sb;
    if (stats) {
        stats->n_tensors = p.n;
        stats->n_values = g.n_values;
        stats->file_bytes = stat(st_path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
        stats->seconds = elapsed(&g.t0);
    }
    rc = 0;
out:
    if (rc != 0 && wrote_st)
        unlink(st_path);   /* no weights without their config */
    if (rc != 0 && wrote_cfg)
        unlink(cfg_path);  /* nor a config without its tokenizer */
    if (rc != 0 && created)
        rmdir(dir);
    cJSON_Delete(cfg);
    cJSON_Delete(tok);
    st_writer_free(w);
    free(g.fbuf);
    free(g.hbuf);
    free(g.items);
    if (g.rng)
        gsl_rng_free(g.rng);
    plan_free(&p);
    return rc;
}
