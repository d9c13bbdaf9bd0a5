/* test_model_init.c - cmocka suite for `q35lab model init` (model/init.c,
 * model/presets.c, cli/cli_model.c).
 *
 * Every init goes to a fresh mkdtemp folder, read back with the project's own
 * readers: q35_config_load must give the preset's values and q35_weights_open
 * exactly the tensor list of the release format, which this file spells out
 * on its own (expected_tensors) rather than asking the writer.  Then:
 * determinism (same seed = same bytes, other seed = other bytes), --layers,
 * the value statistics against the documented scales, bf16 = f32 rounded to
 * nearest even, fused = per-expert values, refusals and cleanup on failure,
 * and the command line (run from the built binary next to this test). */
#include "common/safetensors.h"
#include "model/config.h"
#include "model/init.h"
#include "model/presets.h"
#include "model/tokenizer.h"
#include "model/tokenizer_write.h"
#include "model/weights.h"
#include "tests/support/tmpdir.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_cli[512]; /* path of the q35lab binary, from argv[0] */

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

/* A fresh empty folder; rm_out removes it with the files init writes. */
static void new_out(char *dir)
{
    assert_int_equal(test_tmpdir_make(dir, "q35init"), 0);
}

static void rm_out(const char *dir)
{
    assert_int_equal(test_tmpdir_remove(dir), 0);
}

static void init_ok(const char *dir, const char *preset, uint64_t seed, st_dtype dt, int layers,
                    q35_expert_layout ex, q35_init_stats *st)
{
    q35_init_opts o = {.preset = preset, .seed = seed, .dtype = dt, .layers = layers,
                       .experts = ex};
    char err[1024];
    if (q35_init_write(dir, &o, st, err, sizeof err) != 0)
        fail_msg("q35_init_write(%s): %s", preset, err);
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    buf[len] = '\0';
    fclose(f);
    *n = (size_t)len;
    return buf;
}

static int same_file(const char *a, const char *b)
{
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static void in_dir(char *buf, size_t n, const char *dir, const char *name)
{
    test_tmpdir_path(buf, n, dir, name);
}

/* Opens the model.safetensors that q35_init_write wrote into dir. */
static void open_written(const char *dir, st_file *f)
{
    char path[128], err[512];
    in_dir(path, sizeof path, dir, "model.safetensors");
    if (st_open(path, f, err, sizeof err)) fail_msg("%s", err);
}

/* The tensors a Qwen3.5 checkpoint of config c holds, from the release
 * format (canonical names as q35_weights_find takes them). */
typedef struct {
    char name[96];
    int ndim;
    int64_t shape[3];
} exp_tensor;

static int add_exp(exp_tensor *e, int n, int ndim, int64_t a, int64_t b, int64_t c,
                   const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static int add_exp(exp_tensor *e, int n, int ndim, int64_t a, int64_t b, int64_t c,
                   const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e[n].name, sizeof e[n].name, fmt, ap);
    va_end(ap);
    e[n].ndim = ndim;
    e[n].shape[0] = a;
    e[n].shape[1] = b;
    e[n].shape[2] = c;
    return n + 1;
}

static int expected_tensors(const q35_config *c, int fused, exp_tensor *e)
{
    const int64_t H = c->hidden_size, V = c->vocab_size;
    int n = 0;
    n = add_exp(e, n, 2, V, H, 0, "embed_tokens.weight");
    n = add_exp(e, n, 1, H, 0, 0, "norm.weight");
    if (!c->tie_word_embeddings)
        n = add_exp(e, n, 2, V, H, 0, "lm_head.weight");
    for (int i = 0; i < c->num_hidden_layers; i++) {
        n = add_exp(e, n, 1, H, 0, 0, "layers.%d.input_layernorm.weight", i);
        n = add_exp(e, n, 1, H, 0, 0, "layers.%d.post_attention_layernorm.weight", i);
        if ((i + 1) % 4 != 0) { /* linear attention */
            const int64_t hk = c->linear_num_key_heads, hv = c->linear_num_value_heads;
            const int64_t dk = c->linear_key_head_dim, dv = c->linear_value_head_dim;
            const int64_t C = 2 * hk * dk + hv * dv;
            n = add_exp(e, n, 2, C, H, 0, "layers.%d.linear_attn.in_proj_qkv.weight", i);
            n = add_exp(e, n, 2, hv * dv, H, 0, "layers.%d.linear_attn.in_proj_z.weight", i);
            n = add_exp(e, n, 2, hv, H, 0, "layers.%d.linear_attn.in_proj_b.weight", i);
            n = add_exp(e, n, 2, hv, H, 0, "layers.%d.linear_attn.in_proj_a.weight", i);
            n = add_exp(e, n, 2, H, hv * dv, 0, "layers.%d.linear_attn.out_proj.weight", i);
            n = add_exp(e, n, 3, C, 1, c->linear_conv_kernel_dim,
                        "layers.%d.linear_attn.conv1d.weight", i);
            n = add_exp(e, n, 1, hv, 0, 0, "layers.%d.linear_attn.dt_bias", i);
            n = add_exp(e, n, 1, hv, 0, 0, "layers.%d.linear_attn.A_log", i);
            n = add_exp(e, n, 1, dv, 0, 0, "layers.%d.linear_attn.norm.weight", i);
        } else {
            const int64_t nh = c->num_attention_heads, kv = c->num_key_value_heads;
            const int64_t hd = c->head_dim;
            n = add_exp(e, n, 2, 2 * nh * hd, H, 0, "layers.%d.self_attn.q_proj.weight", i);
            n = add_exp(e, n, 2, kv * hd, H, 0, "layers.%d.self_attn.k_proj.weight", i);
            n = add_exp(e, n, 2, kv * hd, H, 0, "layers.%d.self_attn.v_proj.weight", i);
            n = add_exp(e, n, 2, H, nh * hd, 0, "layers.%d.self_attn.o_proj.weight", i);
            n = add_exp(e, n, 1, hd, 0, 0, "layers.%d.self_attn.q_norm.weight", i);
            n = add_exp(e, n, 1, hd, 0, 0, "layers.%d.self_attn.k_norm.weight", i);
        }
        if (!c->is_moe) {
            const int64_t I = c->intermediate_size;
            n = add_exp(e, n, 2, I, H, 0, "layers.%d.mlp.gate_proj.weight", i);
            n = add_exp(e, n, 2, I, H, 0, "layers.%d.mlp.up_proj.weight", i);
            n = add_exp(e, n, 2, H, I, 0, "layers.%d.mlp.down_proj.weight", i);
            continue;
        }
        const int64_t E = c->num_experts, I = c->moe_intermediate_size;
        const int64_t Is = c->shared_expert_intermediate_size;
        n = add_exp(e, n, 2, E, H, 0, "layers.%d.mlp.gate.weight", i);
        if (fused) {
            n = add_exp(e, n, 3, E, 2 * I, H, "layers.%d.mlp.experts.gate_up_proj", i);
            n = add_exp(e, n, 3, E, H, I, "layers.%d.mlp.experts.down_proj", i);
        } else {
            for (int x = 0; x < E; x++) {
                n = add_exp(e, n, 2, I, H, 0, "layers.%d.mlp.experts.%d.gate_proj.weight", i, x);
                n = add_exp(e, n, 2, I, H, 0, "layers.%d.mlp.experts.%d.up_proj.weight", i, x);
                n = add_exp(e, n, 2, H, I, 0, "layers.%d.mlp.experts.%d.down_proj.weight", i, x);
            }
        }
        n = add_exp(e, n, 2, Is, H, 0, "layers.%d.mlp.shared_expert.gate_proj.weight", i);
        n = add_exp(e, n, 2, Is, H, 0, "layers.%d.mlp.shared_expert.up_proj.weight", i);
        n = add_exp(e, n, 2, H, Is, 0, "layers.%d.mlp.shared_expert.down_proj.weight", i);
        n = add_exp(e, n, 2, 1, H, 0, "layers.%d.mlp.shared_expert_gate.weight", i);
    }
    if (c->mtp_num_hidden_layers < 1)
        return n;
    /* The MTP head as the releases store it (docs/mtp.md): top-level mtp.*
     * names, fc [H, 2H], three norms, one full-attention decoder layer with
     * the model's MLP or MoE in the same layout as the decoder's layers. */
    const int64_t nh = c->num_attention_heads, kv = c->num_key_value_heads, hd = c->head_dim;
    n = add_exp(e, n, 2, H, 2 * H, 0, "mtp.fc.weight");
    n = add_exp(e, n, 1, H, 0, 0, "mtp.pre_fc_norm_embedding.weight");
    n = add_exp(e, n, 1, H, 0, 0, "mtp.pre_fc_norm_hidden.weight");
    n = add_exp(e, n, 1, H, 0, 0, "mtp.norm.weight");
    n = add_exp(e, n, 1, H, 0, 0, "mtp.layers.0.input_layernorm.weight");
    n = add_exp(e, n, 1, H, 0, 0, "mtp.layers.0.post_attention_layernorm.weight");
    n = add_exp(e, n, 2, 2 * nh * hd, H, 0, "mtp.layers.0.self_attn.q_proj.weight");
    n = add_exp(e, n, 2, kv * hd, H, 0, "mtp.layers.0.self_attn.k_proj.weight");
    n = add_exp(e, n, 2, kv * hd, H, 0, "mtp.layers.0.self_attn.v_proj.weight");
    n = add_exp(e, n, 2, H, nh * hd, 0, "mtp.layers.0.self_attn.o_proj.weight");
    n = add_exp(e, n, 1, hd, 0, 0, "mtp.layers.0.self_attn.q_norm.weight");
    n = add_exp(e, n, 1, hd, 0, 0, "mtp.layers.0.self_attn.k_norm.weight");
    if (!c->is_moe) {
        const int64_t I = c->intermediate_size;
        n = add_exp(e, n, 2, I, H, 0, "mtp.layers.0.mlp.gate_proj.weight");
        n = add_exp(e, n, 2, I, H, 0, "mtp.layers.0.mlp.up_proj.weight");
        n = add_exp(e, n, 2, H, I, 0, "mtp.layers.0.mlp.down_proj.weight");
        return n;
    }
    const int64_t E = c->num_experts, I = c->moe_intermediate_size, Is = c->shared_expert_intermediate_size;
    n = add_exp(e, n, 2, E, H, 0, "mtp.layers.0.mlp.gate.weight");
    if (fused) {
        n = add_exp(e, n, 3, E, 2 * I, H, "mtp.layers.0.mlp.experts.gate_up_proj");
        n = add_exp(e, n, 3, E, H, I, "mtp.layers.0.mlp.experts.down_proj");
    } else {
        for (int x = 0; x < E; x++) {
            n = add_exp(e, n, 2, I, H, 0, "mtp.layers.0.mlp.experts.%d.gate_proj.weight", x);
            n = add_exp(e, n, 2, I, H, 0, "mtp.layers.0.mlp.experts.%d.up_proj.weight", x);
            n = add_exp(e, n, 2, H, I, 0, "mtp.layers.0.mlp.experts.%d.down_proj.weight", x);
        }
    }
    n = add_exp(e, n, 2, Is, H, 0, "mtp.layers.0.mlp.shared_expert.gate_proj.weight");
    n = add_exp(e, n, 2, Is, H, 0, "mtp.layers.0.mlp.shared_expert.up_proj.weight");
    n = add_exp(e, n, 2, H, Is, 0, "mtp.layers.0.mlp.shared_expert.down_proj.weight");
    n = add_exp(e, n, 2, 1, H, 0, "mtp.layers.0.mlp.shared_expert_gate.weight");
    return n;
}

#define MAX_EXP 2048

/* Load dir's config and weights, check them against preset/layers. */
static void check_checkpoint(const char *dir, const char *preset, int layers, st_dtype dt,
                             int fused)
{
    char err[1024];
    q35_config want, got;
    assert_int_equal(q35_preset_config(q35_preset_find(preset), layers, &want, err, sizeof err), 0);
    if (q35_config_load(dir, &got, err, sizeof err) != 0)
        fail_msg("q35_config_load: %s", err);
    assert_int_equal(got.nested, 1);
    assert_string_equal(got.architecture, want.architecture);
    assert_string_equal(got.model_type, want.model_type);
    assert_int_equal(got.vocab_size, want.vocab_size);
    assert_int_equal(got.hidden_size, want.hidden_size);
    assert_int_equal(got.num_hidden_layers, want.num_hidden_layers);
    assert_int_equal(got.layer_types_given, 1);
    assert_memory_equal(got.layer_types, want.layer_types, (size_t)want.num_hidden_layers);
    assert_int_equal(got.n_full_layers, want.n_full_layers);
    assert_int_equal(got.num_attention_heads, want.num_attention_heads);
    assert_int_equal(got.num_key_value_heads, want.num_key_value_heads);
    assert_int_equal(got.head_dim, want.head_dim);
    assert_int_equal(got.attn_output_gate, 1);
    assert_true(got.rms_norm_eps == want.rms_norm_eps);
    assert_int_equal(got.linear_conv_kernel_dim, want.linear_conv_kernel_dim);
    assert_int_equal(got.linear_key_head_dim, want.linear_key_head_dim);
    assert_int_equal(got.linear_value_head_dim, want.linear_value_head_dim);
    assert_int_equal(got.linear_num_key_heads, want.linear_num_key_heads);
    assert_int_equal(got.linear_num_value_heads, want.linear_num_value_heads);
    assert_int_equal(got.is_moe, want.is_moe);
    assert_int_equal(got.intermediate_size, want.intermediate_size);
    assert_int_equal(got.num_experts, want.num_experts);
    assert_int_equal(got.num_experts_per_tok, want.num_experts_per_tok);
    assert_int_equal(got.moe_intermediate_size, want.moe_intermediate_size);
    assert_int_equal(got.shared_expert_intermediate_size, want.shared_expert_intermediate_size);
    assert_int_equal(got.tie_word_embeddings, want.tie_word_embeddings);
    assert_string_equal(got.rope_type, "default");
    assert_true(got.rope_theta == want.rope_theta);
    assert_true(got.partial_rotary_factor == want.partial_rotary_factor);
    assert_int_equal(got.rotary_dim, want.rotary_dim);
    assert_int_equal(got.n_eos, want.n_eos);
    assert_int_equal(got.eos_token_id[0], want.eos_token_id[0]);
    assert_int_equal(want.mtp_num_hidden_layers, 1); /* every preset has an MTP head */
    assert_int_equal(got.mtp_num_hidden_layers, 1);

    static exp_tensor e[MAX_EXP];
    const int n = expected_tensors(&want, fused, e);
    assert_true(n <= MAX_EXP);
    q35_weights w;
    if (q35_weights_open(dir, &w, err, sizeof err) != 0)
        fail_msg("q35_weights_open: %s", err);
    assert_int_equal(w.sharded, 0);
    assert_int_equal(w.n_entries, n);
    for (int i = 0; i < n; i++) {
        const st_tensor *t;
        if (q35_weights_expect(&w, e[i].name, e[i].ndim, e[i].shape, &t, err, sizeof err) != 0)
            fail_msg("%s", err);
        assert_int_equal(t->dtype, dt);
    }
    /* names as stored */
    assert_non_null(q35_weights_find_raw(&w, "model.language_model.embed_tokens.weight"));
    assert_true((q35_weights_find_raw(&w, "lm_head.weight") != NULL) == !want.tie_word_embeddings);
    assert_non_null(q35_weights_find_raw(&w, "mtp.fc.weight")); /* top level, no model. prefix */
    assert_null(q35_weights_find_raw(&w, "model.language_model.mtp.fc.weight"));
    q35_weights_close(&w);
}

static void layout_case(const char *preset, st_dtype dt, q35_expert_layout ex)
{
    char dir[64];
    new_out(dir);
    q35_init_stats st;
    init_ok(dir, preset, 7, dt, 0, ex, &st);
    check_checkpoint(dir, preset, 0, dt, ex == Q35_EXPERTS_FUSED);
    /* stats agree with the file */
    char p[128];
    in_dir(p, sizeof p, dir, "model.safetensors");
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(st.file_bytes, (uint64_t)sb.st_size);
    assert_true(st.n_values * st_dtype_size(dt) < st.file_bytes);
    assert_true(st.file_bytes - st.n_values * st_dtype_size(dt) < 1u << 20); /* the header */
    rm_out(dir);
}

#define LAYOUT_TEST(fn, preset, dt, ex)                                                       \
    static void fn(void **s)                                                                   \
    {                                                                                          \
        (void)s;                                                                               \
        layout_case(preset, dt, ex);                                                           \
    }
LAYOUT_TEST(test_tiny_dense_bf16, "tiny-dense", ST_BF16, Q35_EXPERTS_FUSED)
LAYOUT_TEST(test_tiny_dense_f32, "tiny-dense", ST_F32, Q35_EXPERTS_FUSED)
LAYOUT_TEST(test_tiny_dense_per_expert, "tiny-dense", ST_BF16, Q35_EXPERTS_PER_EXPERT)
LAYOUT_TEST(test_tiny_moe_bf16_fused, "tiny-moe", ST_BF16, Q35_EXPERTS_FUSED)
LAYOUT_TEST(test_tiny_moe_f32_fused, "tiny-moe", ST_F32, Q35_EXPERTS_FUSED)
LAYOUT_TEST(test_tiny_moe_bf16_per_expert, "tiny-moe", ST_BF16, Q35_EXPERTS_PER_EXPERT)
LAYOUT_TEST(test_tiny_moe_f32_per_expert, "tiny-moe", ST_F32, Q35_EXPERTS_PER_EXPERT)

/* The tiny presets' numbers, written out (not read from the table). */
static void test_tiny_values(void **s)
{
    (void)s;
    char err[256];
    q35_config c;
    assert_int_equal(q35_preset_config(q35_preset_find("tiny-moe"), 0, &c, err, sizeof err), 0);
    assert_int_equal(c.vocab_size, 512);
    assert_int_equal(c.hidden_size, 128);
    assert_int_equal(c.num_hidden_layers, 8);
    assert_int_equal(c.n_linear_layers, 6);
    assert_int_equal(c.n_full_layers, 2);
    assert_int_equal(c.layer_types[3], Q35_LAYER_FULL);
    assert_int_equal(c.layer_types[2], Q35_LAYER_LINEAR);
    assert_int_equal(c.num_attention_heads, 4);
    assert_int_equal(c.num_key_value_heads, 2);
    assert_int_equal(c.head_dim, 64);
    assert_int_equal(c.linear_num_key_heads, 2);
    assert_int_equal(c.linear_num_value_heads, 4);
    assert_int_equal(c.linear_key_head_dim, 32);
    assert_int_equal(c.linear_value_head_dim, 32);
    assert_int_equal(c.linear_conv_kernel_dim, 4);
    assert_int_equal(c.num_experts, 16);
    assert_int_equal(c.num_experts_per_tok, 4);
    assert_int_equal(c.moe_intermediate_size, 64);
    assert_int_equal(c.shared_expert_intermediate_size, 64);
    assert_string_equal(c.architecture, "Qwen3_5MoeForConditionalGeneration");
    assert_int_equal(q35_preset_config(q35_preset_find("tiny-dense"), 0, &c, err, sizeof err), 0);
    assert_int_equal(c.intermediate_size, 256);
    assert_int_equal(c.is_moe, 0);
    assert_string_equal(c.architecture, "Qwen3_5ForConditionalGeneration");
    /* the released shapes: every row is a config the reader accepts */
    for (int i = 0; i < q35_n_presets; i++) {
        assert_int_equal(q35_preset_config(&q35_presets[i], 0, &c, err, sizeof err), 0);
        assert_int_equal(c.num_attention_heads % c.num_key_value_heads, 0);
        assert_int_equal(c.linear_num_value_heads % c.linear_num_key_heads, 0);
        assert_int_equal(c.n_full_layers * 4, c.num_hidden_layers);
    }
    const q35_preset *p = q35_preset_find("qwen3.5-0.8b");
    assert_non_null(p);
    assert_int_equal(p->c.hidden_size, 1024);
    assert_int_equal(p->c.num_hidden_layers, 24);
    assert_null(q35_preset_find("qwen3.5-0.9b"));
}

/* Same seed: byte-identical files; another seed: other weights, same config. */
static void test_determinism(void **s)
{
    (void)s;
    char a[64], b[64], c[64], pa[128], pb[128], pc[128];
    new_out(a);
    new_out(b);
    new_out(c);
    init_ok(a, "tiny-moe", 42, ST_BF16, 0, Q35_EXPERTS_FUSED, NULL);
    /* a different thread count must not change a byte */
    q35_init_opts o = {.preset = "tiny-moe", .seed = 42, .dtype = ST_BF16, .threads = 1};
    char err[512];
    assert_int_equal(q35_init_write(b, &o, NULL, err, sizeof err), 0);
    init_ok(c, "tiny-moe", 43, ST_BF16, 0, Q35_EXPERTS_FUSED, NULL);
    in_dir(pa, sizeof pa, a, "model.safetensors");
    in_dir(pb, sizeof pb, b, "model.safetensors");
    in_dir(pc, sizeof pc, c, "model.safetensors");
    assert_true(same_file(pa, pb));
    assert_false(same_file(pa, pc));
    in_dir(pa, sizeof pa, a, "config.json");
    in_dir(pb, sizeof pb, b, "config.json");
    in_dir(pc, sizeof pc, c, "config.json");
    assert_true(same_file(pa, pb));
    assert_true(same_file(pa, pc));
    /* and the other seed differs in every tensor, not just somewhere */
    st_file fa, fc;
    open_written(a, &fa);
    open_written(c, &fc);
    for (int i = 0; i < fa.n_tensors; i++) {
        const st_tensor *x = &fa.tensors[i], *y = st_find(&fc, x->name);
        assert_non_null(y);
        assert_int_equal(x->nbytes, y->nbytes);
        if (memcmp(x->data, y->data, x->nbytes) == 0)
            fail_msg("tensor %s is the same for seeds 42 and 43", x->name);
    }
    st_close(&fa);
    st_close(&fc);
    rm_out(a);
    rm_out(b);
    rm_out(c);
}

static float *load(const st_file *f, const char *name, size_t *n)
{
    const st_tensor *t = st_find(f, name);
    if (!t)
        fail_msg("no tensor %s", name);
    *n = (size_t)st_numel(t);
    float *x = malloc(*n * sizeof *x);
    assert_non_null(x);
    char err[256];
    assert_int_equal(st_read_f32(t, x, *n, err, sizeof err), 0);
    return x;
}

static void moments(const float *x, size_t n, double *mean, double *sd)
{
    double s = 0, ss = 0;
    for (size_t i = 0; i < n; i++)
        s += x[i];
    *mean = s / (double)n;
    for (size_t i = 0; i < n; i++)
        ss += (x[i] - *mean) * (x[i] - *mean);
    *sd = sqrt(ss / (double)n);
}

#define P "model.language_model."

/* --layers 3: config and tensors of 3 layers; draws shared with the full
 * model (residual projections rescaled by sqrt(2*8) / sqrt(2*3)). */
static void test_layers_truncation(void **s)
{
    (void)s;
    char full[64], part[64], err[512];
    new_out(full);
    new_out(part);
    init_ok(full, "tiny-moe", 5, ST_F32, 0, Q35_EXPERTS_FUSED, NULL);
    init_ok(part, "tiny-moe", 5, ST_F32, 3, Q35_EXPERTS_FUSED, NULL);
    check_checkpoint(part, "tiny-moe", 3, ST_F32, 1);
    q35_config c;
    assert_int_equal(q35_config_load(part, &c, err, sizeof err), 0);
    assert_int_equal(c.num_hidden_layers, 3);
    assert_int_equal(c.n_full_layers, 0);

    st_file ff, fp;
    open_written(full, &ff);
    open_written(part, &fp);
    static const char *same[] = {P "embed_tokens.weight", P "norm.weight", "lm_head.weight",
                                 P "layers.2.linear_attn.in_proj_qkv.weight",
                                 P "layers.0.mlp.experts.gate_up_proj", P "layers.1.mlp.gate.weight",
                                 P "layers.1.linear_attn.A_log"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        const st_tensor *x = st_find(&ff, same[i]), *y = st_find(&fp, same[i]);
        assert_non_null(x);
        assert_non_null(y);
        assert_int_equal(x->nbytes, y->nbytes);
        assert_memory_equal(x->data, y->data, x->nbytes);
    }
    static const char *scaled[] = {P "layers.0.linear_attn.out_proj.weight",
                                   P "layers.2.mlp.experts.down_proj",
                                   P "layers.1.mlp.shared_expert.down_proj.weight"};
    const double ratio = sqrt(16.0 / 6.0);
    for (size_t i = 0; i < sizeof scaled / sizeof scaled[0]; i++) {
        size_t n1, n2;
        float *x = load(&ff, scaled[i], &n1), *y = load(&fp, scaled[i], &n2);
        assert_int_equal(n1, n2);
        for (size_t j = 0; j < n1; j++)
            assert_true(fabs((double)y[j] - ratio * x[j]) <= 1e-6 * fabs((double)y[j]) + 1e-12);
        free(x);
        free(y);
    }
    assert_null(st_find(&fp, P "layers.3.self_attn.q_proj.weight"));
    st_close(&ff);
    st_close(&fp);

    /* out of range */
    q35_init_opts o = {.preset = "tiny-moe", .dtype = ST_BF16, .layers = 9};
    char d[64];
    new_out(d);
    assert_int_equal(q35_init_write(d, &o, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "[1, 8]"));
    o.layers = -1;
    assert_int_equal(q35_init_write(d, &o, NULL, err, sizeof err), -1);
    rm_out(d);
    rm_out(full);
    rm_out(part);
}

/* Sample mean / sd of every kind of tensor against docs/model-init.md. */
static void check_stats(const st_file *f, const char *name, double mean, double sd, double tol)
{
    size_t n;
    float *x = load(f, name, &n);
    double m, s;
    moments(x, n, &m, &s);
    free(x);
    if (fabs(s - sd) > tol * sd || fabs(m - mean) > 4.0 * sd / sqrt((double)n) + 1e-7)
        fail_msg("%s (%zu values): mean %.5f sd %.5f, want %.5f / %.5f", name, n, m, s, mean, sd);
}

static void stats_case(st_dtype dt)
{
    char dir[64];
    new_out(dir);
    init_ok(dir, "tiny-moe", 11, dt, 0, Q35_EXPERTS_FUSED, NULL);
    st_file f;
    open_written(dir, &f);
    const double H = 128, L = 8, r = 1.0 / sqrt(2 * L);
    /* large tensors: within 2% (n >= 16384, sampling error of sd ~0.5%) */
    check_stats(&f, P "embed_tokens.weight", 0, 0.02, 0.02);
    assert_string_equal(st_meta(&f, "q35lab.embed_std"), "0.02");
    assert_string_equal(st_meta(&f, "q35lab.preset"), "tiny-moe");
    assert_string_equal(st_meta(&f, "q35lab.seed"), "11");
    check_stats(&f, "lm_head.weight", 0, 1 / sqrt(H), 0.02);
    check_stats(&f, P "layers.0.linear_attn.in_proj_qkv.weight", 0, 1 / sqrt(H), 0.02);
    check_stats(&f, P "layers.0.linear_attn.in_proj_z.weight", 0, 1 / sqrt(H), 0.02);
    check_stats(&f, P "layers.0.linear_attn.out_proj.weight", 0, r / sqrt(4 * 32), 0.02);
    check_stats(&f, P "layers.3.self_attn.q_proj.weight", 0, 1 / sqrt(H), 0.02);
    check_stats(&f, P "layers.3.self_attn.o_proj.weight", 0, r / sqrt(4 * 64), 0.02);
    check_stats(&f, P "layers.1.mlp.experts.gate_up_proj", 0, 1 / sqrt(H), 0.02);
    check_stats(&f, P "layers.1.mlp.experts.down_proj", 0, r / sqrt(64), 0.02);
    check_stats(&f, P "layers.1.mlp.shared_expert.up_proj.weight", 0, 1 / sqrt(H), 0.03);
    check_stats(&f, P "layers.1.mlp.shared_expert.down_proj.weight", 0, r / sqrt(64), 0.03);
    check_stats(&f, P "layers.1.linear_attn.conv1d.weight", 0, 1 / sqrt(4), 0.08);
    /* small ones: loose */
    check_stats(&f, P "layers.1.mlp.gate.weight", 0, 1 / sqrt(H), 0.05);
    check_stats(&f, P "layers.1.input_layernorm.weight", 0, 0.1, 0.25);
    check_stats(&f, P "norm.weight", 0, 0.1, 0.25);
    check_stats(&f, P "layers.3.self_attn.q_norm.weight", 0, 0.1, 0.3);

    /* pooled over layers: dt_bias ~ N(0, 0.1); the gated norm ~ 1 + N(0, 0.1);
     * A_log = log U(1, 16): in [0, log 16), mean 16 log16 / 15 - 1 = 1.9577 */
    double s_dt = 0, ss_dt = 0, s_nw = 0, s_a = 0, lo = 1e9, hi = -1e9;
    int n_dt = 0, n_nw = 0, n_a = 0;
    for (int i = 0; i < 8; i++) {
        if ((i + 1) % 4 == 0)
            continue;
        char name[128];
        size_t n;
        snprintf(name, sizeof name, P "layers.%d.linear_attn.dt_bias", i);
        float *x = load(&f, name, &n);
        for (size_t j = 0; j < n; j++, n_dt++)
            s_dt += x[j], ss_dt += (double)x[j] * x[j];
        free(x);
        snprintf(name, sizeof name, P "layers.%d.linear_attn.norm.weight", i);
        x = load(&f, name, &n);
        for (size_t j = 0; j < n; j++, n_nw++)
            s_nw += x[j];
        free(x);
        snprintf(name, sizeof name, P "layers.%d.linear_attn.A_log", i);
        x = load(&f, name, &n);
        for (size_t j = 0; j < n; j++, n_a++) {
            s_a += x[j];
            lo = fmin(lo, x[j]);
            hi = fmax(hi, x[j]);
        }
        free(x);
    }
    assert_true(fabs(sqrt(ss_dt / n_dt) - 0.1) < 0.04);
    assert_true(fabs(s_nw / n_nw - 1.0) < 0.05);
    assert_true(lo >= 0.0 && hi <= log(16.0) + 1e-2);
    assert_true(fabs(s_a / n_a - (16 * log(16.0) / 15 - 1)) < 0.35);
    st_close(&f);
    rm_out(dir);
}

static void test_stats_f32(void **s) { (void)s; stats_case(ST_F32); }
static void test_stats_bf16(void **s) { (void)s; stats_case(ST_BF16); }

/* --embed-std overrides the embedding scale, and only it. */
static void test_embed_std_option(void **s)
{
    (void)s;
    char a[64], b[64], err[512];
    new_out(a);
    new_out(b);
    init_ok(a, "tiny-dense", 4, ST_F32, 0, Q35_EXPERTS_FUSED, NULL);
    q35_init_opts o = {.preset = "tiny-dense", .seed = 4, .dtype = ST_F32, .embed_std = 1.0};
    assert_int_equal(q35_init_write(b, &o, NULL, err, sizeof err), 0);
    st_file fa, fb;
    open_written(a, &fa);
    open_written(b, &fb);
    check_stats(&fb, P "embed_tokens.weight", 0, 1.0, 0.02);
    size_t n1, n2;
    float *x = load(&fa, P "embed_tokens.weight", &n1), *y = load(&fb, P "embed_tokens.weight", &n2);
    for (size_t j = 0; j < n1; j += 101) /* the same draws, scaled */
        assert_true(fabs((double)y[j] - 50.0 * x[j]) <= 1e-5 * fabs((double)y[j]) + 1e-9);
    free(x);
    free(y);
    const st_tensor *u = st_find(&fa, P "layers.0.mlp.up_proj.weight");
    const st_tensor *v = st_find(&fb, P "layers.0.mlp.up_proj.weight");
    assert_memory_equal(u->data, v->data, u->nbytes);
    st_close(&fa);
    st_close(&fb);
    o.embed_std = -1;
    assert_int_equal(q35_init_write(a, &o, NULL, err, sizeof err), -1);
    rm_out(a);
    rm_out(b);
}

/* The bf16 file is the f32 file rounded to nearest even, value by value. */
static void test_bf16_is_rounded_f32(void **s)
{
    (void)s;
    char a[64], b[64];
    new_out(a);
    new_out(b);
    init_ok(a, "tiny-moe", 3, ST_F32, 0, Q35_EXPERTS_PER_EXPERT, NULL);
    init_ok(b, "tiny-moe", 3, ST_BF16, 0, Q35_EXPERTS_PER_EXPERT, NULL);
    st_file fa, fb;
    open_written(a, &fa);
    open_written(b, &fb);
    assert_int_equal(fa.n_tensors, fb.n_tensors);
    size_t checked = 0;
    for (int i = 0; i < fa.n_tensors; i++) {
        const st_tensor *x = &fa.tensors[i], *y = st_find(&fb, x->name);
        assert_non_null(y);
        assert_int_equal(x->dtype, ST_F32);
        assert_int_equal(y->dtype, ST_BF16);
        const size_t n = (size_t)st_numel(x);
        assert_int_equal((size_t)st_numel(y), n);
        for (size_t j = 0; j < n; j++) {
            float v;
            uint16_t h;
            memcpy(&v, (const char *)x->data + 4 * j, 4);
            memcpy(&h, (const char *)y->data + 2 * j, 2);
            if (h != st_f32_to_bf16(v))
                fail_msg("%s[%zu]: bf16 %04x, f32 %.9g rounds to %04x", x->name, j, h, v,
                         st_f32_to_bf16(v));
        }
        checked += n;
    }
    assert_true(checked > 4000000);
    st_close(&fa);
    st_close(&fb);
    rm_out(a);
    rm_out(b);
}

/* The fused tensors hold exactly the per-expert tensors' values. */
static void test_fused_equals_per_expert(void **s)
{
    (void)s;
    char a[64], b[64], name[160];
    new_out(a);
    new_out(b);
    init_ok(a, "tiny-moe", 9, ST_BF16, 0, Q35_EXPERTS_FUSED, NULL);
    init_ok(b, "tiny-moe", 9, ST_BF16, 0, Q35_EXPERTS_PER_EXPERT, NULL);
    st_file fa, fb;
    open_written(a, &fa);
    open_written(b, &fb);
    const size_t I = 64, H = 128, el = 2;
    for (int l = 0; l < 8; l++) {
        snprintf(name, sizeof name, P "layers.%d.mlp.experts.gate_up_proj", l);
        const st_tensor *gu = st_find(&fa, name);
        snprintf(name, sizeof name, P "layers.%d.mlp.experts.down_proj", l);
        const st_tensor *dn = st_find(&fa, name);
        assert_non_null(gu);
        assert_non_null(dn);
        for (int e = 0; e < 16; e++) {
            const char *g0 = (const char *)gu->data + (size_t)e * 2 * I * H * el;
            snprintf(name, sizeof name, P "layers.%d.mlp.experts.%d.gate_proj.weight", l, e);
            assert_memory_equal(st_find(&fb, name)->data, g0, I * H * el);
            snprintf(name, sizeof name, P "layers.%d.mlp.experts.%d.up_proj.weight", l, e);
            assert_memory_equal(st_find(&fb, name)->data, g0 + I * H * el, I * H * el);
            snprintf(name, sizeof name, P "layers.%d.mlp.experts.%d.down_proj.weight", l, e);
            assert_memory_equal(st_find(&fb, name)->data,
                                (const char *)dn->data + (size_t)e * H * I * el, H * I * el);
        }
        /* and everything outside the experts is identical */
        snprintf(name, sizeof name, P "layers.%d.mlp.shared_expert.up_proj.weight", l);
        assert_memory_equal(st_find(&fa, name)->data, st_find(&fb, name)->data, 64 * H * el);
    }
    st_close(&fa);
    st_close(&fb);
    rm_out(a);
    rm_out(b);
}

static int count_files(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls -A %s | wc -l", dir);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    int n = -1;
    assert_int_equal(fscanf(f, "%d", &n), 1);
    pclose(f);
    return n;
}

static void test_refusals(void **s)
{
    (void)s;
    char dir[64], p[128], err[1024];
    new_out(dir);
    q35_init_opts o = {.preset = "tiny-dense", .seed = 1, .dtype = ST_BF16};

    o.preset = "tiny";
    assert_int_equal(q35_init_write(dir, &o, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown preset 'tiny'"));
    assert_non_null(strstr(err, "tiny-dense"));
    assert_non_null(strstr(err, "qwen3.5-397b-a17b"));
    o.preset = "tiny-dense";
    o.dtype = ST_F16;
    assert_int_equal(q35_init_write(dir, &o, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "bf16 or f32"));
    o.dtype = ST_BF16;
    assert_int_equal(count_files(dir), 0);

    /* a non-empty folder needs force; with it, init replaces its files */
    in_dir(p, sizeof p, dir, "keep.txt");
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("x", f);
    fclose(f);
    assert_int_equal(q35_init_write(dir, &o, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "not empty"));
    assert_non_null(strstr(err, "--force"));
    assert_int_equal(count_files(dir), 1);
    o.force = 1;
    assert_int_equal(q35_init_write(dir, &o, NULL, err, sizeof err), 0);
    assert_int_equal(count_files(dir), 4); /* keep.txt, config.json, model.safetensors, tokenizer.json */
    assert_int_equal(q35_init_write(dir, &o, NULL, err, sizeof err), 0); /* again */
    check_checkpoint(dir, "tiny-dense", 0, ST_BF16, 1);

    /* the target is a file */
    o.force = 0;
    assert_int_equal(q35_init_write(p, &o, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a directory"));
    rm_out(dir);
}

/* config.json cannot be written (it is a directory): the error names it,
 * the new model.safetensors is removed, no temporary file stays. */
static void test_failure_cleans_up(void **s)
{
    (void)s;
    char dir[64], p[128], err[1024];
    new_out(dir);
    in_dir(p, sizeof p, dir, "config.json");
    assert_int_equal(mkdir(p, 0755), 0);
    q35_init_opts o = {.preset = "tiny-moe", .seed = 1, .dtype = ST_BF16, .force = 1};
    assert_int_equal(q35_init_write(dir, &o, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "config.json"));
    assert_int_equal(count_files(dir), 1); /* only the config.json directory */
    assert_int_equal(rmdir(p), 0);

    /* argument errors are found before anything is made */
    char sub[128];
    snprintf(sub, sizeof sub, "%s/new/deeper", dir);
    o.dtype = ST_I32;
    assert_int_equal(q35_init_write(sub, &o, NULL, err, sizeof err), -1);
    o.dtype = ST_BF16;
    o.layers = 99;
    assert_int_equal(q35_init_write(sub, &o, NULL, err, sizeof err), -1);
    struct stat sb;
    assert_int_not_equal(stat(sub, &sb), 0);
    rm_out(dir);
}

static void test_progress_lines(void **s)
{
    (void)s;
    char dir[64], err[512];
    new_out(dir);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    q35_init_opts o = {.preset = "tiny-dense", .seed = 1, .dtype = ST_F32, .progress = f};
    assert_int_equal(q35_init_write(dir, &o, NULL, err, sizeof err), 0);
    fclose(f);
    assert_non_null(strstr(buf, "model init: tiny-dense, 8 layers, F32"));
    assert_non_null(strstr(buf, "embeddings"));
    assert_non_null(strstr(buf, "layer 4/8"));
    assert_non_null(strstr(buf, "layer 8/8"));
    assert_non_null(strstr(buf, "MiB written"));
    free(buf);
    rm_out(dir);
}

/* ------------------------------------------------------------------ */
/* tokenizer.json (docs/text.md)                                       */
/* ------------------------------------------------------------------ */

/* GPT-2's byte-to-unicode code point of byte b, spelled out here from the
 * rule (printable Latin-1 bytes map to themselves, the other 68 to U+0100,
 * U+0101, ... in byte order), not taken from the writer. */
static int gpt2_code_point(int b)
{
    const int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    if (printable) return b;
    int n = 0;
    for (int x = 0; x < b; x++)
        n += !((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF));
    return 256 + n;
}

static int utf8_one(const char *s) /* the code point of a one-character string, -1 if not one */
{
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) return u[1] ? -1 : u[0];
    if ((u[0] & 0xE0) == 0xC0 && (u[1] & 0xC0) == 0x80 && !u[2]) return (u[0] & 0x1F) << 6 | (u[1] & 0x3F);
    return -1;
}

/* The file a tiny preset gets: Qwen3.5's structure, exactly the preset's
 * vocabulary, the byte alphabet at ids 0..255, merges of existing tokens
 * into new ones, the three special tokens at the top; a released shape
 * gets none. */
static void check_tokenizer_file(const char *dir, int V)
{
    char p[128];
    in_dir(p, sizeof p, dir, "tokenizer.json");
    size_t n;
    char *text = slurp(p, &n);
    cJSON *j = cJSON_ParseWithLength(text, n);
    free(text);
    assert_non_null(j);
    const cJSON *norm = cJSON_GetObjectItem(j, "normalizer"), *pre = cJSON_GetObjectItem(j, "pre_tokenizer");
    const cJSON *dec = cJSON_GetObjectItem(j, "decoder"), *model = cJSON_GetObjectItem(j, "model");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(norm, "type")), "NFC");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(pre, "type")), "Sequence");
    const cJSON *pts = cJSON_GetObjectItem(pre, "pretokenizers");
    assert_int_equal(cJSON_GetArraySize(pts), 2);
    const cJSON *split = cJSON_GetArrayItem(pts, 0), *bl = cJSON_GetArrayItem(pts, 1);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(split, "type")), "Split");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(split, "behavior")), "Isolated");
    /* Qwen3.5's pattern, as its tokenizer.json spells it (\p{M} next to \p{L}) */
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(split, "pattern"), "Regex")),
                        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| "
                        "?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(bl, "type")), "ByteLevel");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(bl, "use_regex")));
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(dec, "type")), "ByteLevel");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(model, "type")), "BPE");
    const cJSON *vocab = cJSON_GetObjectItem(model, "vocab"), *merges = cJSON_GetObjectItem(model, "merges");
    const cJSON *added = cJSON_GetObjectItem(j, "added_tokens");
    assert_int_equal(cJSON_GetArraySize(vocab) + cJSON_GetArraySize(added), V);
    assert_int_equal(cJSON_GetArraySize(merges), V - 256 - 3);
    /* every id once, 0 .. V-4 in the vocabulary */
    char *seen = calloc((size_t)V, 1);
    assert_non_null(seen);
    const char **tok = calloc((size_t)V, sizeof *tok);
    assert_non_null(tok);
    for (const cJSON *e = vocab->child; e; e = e->next) {
        assert_true(cJSON_IsNumber(e));
        const int id = e->valueint;
        assert_true(id >= 0 && id < V - 3);
        assert_false(seen[id]);
        seen[id] = 1;
        tok[id] = e->string;
    }
    /* the bytes: each of the 256 code points once among ids 0..255 */
    char byte_seen[256] = {0};
    for (int id = 0; id < 256; id++) {
        const int cp = utf8_one(tok[id]);
        int b = 0;
        while (b < 256 && gpt2_code_point(b) != cp) b++;
        assert_true(b < 256);
        assert_false(byte_seen[b]);
        byte_seen[b] = 1;
    }
    assert_string_equal(tok[220], "\xc4\xa0"); /* U+0120: the space, at Qwen's id */
    assert_string_equal(tok[198], "\xc4\x8a"); /* U+010A: the newline */
    /* merge k joins two tokens of lower id into token 256 + k */
    int k = 0;
    for (const cJSON *m = merges->child; m; m = m->next, k++) {
        assert_int_equal(cJSON_GetArraySize(m), 2);
        const char *a = cJSON_GetStringValue(cJSON_GetArrayItem(m, 0)), *b = cJSON_GetStringValue(cJSON_GetArrayItem(m, 1));
        int ia = -1, ib = -1;
        for (int id = 0; id < 256 + k; id++) {
            if (!strcmp(tok[id], a)) ia = id;
            if (!strcmp(tok[id], b)) ib = id;
        }
        assert_true(ia >= 0 && ib >= 0);
        char joined[512];
        snprintf(joined, sizeof joined, "%s%s", a, b);
        assert_string_equal(tok[256 + k], joined);
    }
    static const char *const special[3] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    for (int i = 0; i < 3; i++) {
        const cJSON *a = cJSON_GetArrayItem(added, i);
        assert_int_equal(cJSON_GetObjectItem(a, "id")->valueint, V - 3 + i);
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(a, "content")), special[i]);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(a, "special")));
    }
    free(seen);
    free(tok);
    cJSON_Delete(j);
}

/* The file loads with the project's tokenizer (model/tokenizer.h): English
 * round-trips, takes fewer tokens than bytes, every id is below V, the
 * special tokens are where the file says and are matched in text. */
static void round_trip(const char *dir, int V)
{
    char err[512];
    int missing = 0;
    q35_tokenizer *t = q35_tokenizer_load_dir(dir, &missing, err, sizeof err);
    if (!t) fail_msg("%s/tokenizer.json: %s", dir, err);
    assert_int_equal(q35_tokenizer_n_ids(t), V);
    assert_int_equal(q35_tokenizer_id(t, "<|endoftext|>"), V - 3);
    assert_int_equal(q35_tokenizer_id(t, "<|im_start|>"), V - 2);
    assert_int_equal(q35_tokenizer_id(t, "<|im_end|>"), V - 1);
    assert_true(q35_tokenizer_is_special(t, V - 1));
    assert_false(q35_tokenizer_is_special(t, 300));
    static const char *const texts[] = {
        "The capital of France is Paris.",
        "Once upon a time there was a little house at the edge of a forest.\n\nIt's 12:30, isn't it?",
        "  indented\tand\r\nwindows lines  ",
        "caf\xc3\xa9 na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x99\x82", /* not English: bytes */
    };
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    for (size_t k = 0; k < sizeof texts / sizeof *texts; k++) {
        const size_t len = strlen(texts[k]);
        assert_int_equal(q35_tokenizer_encode(t, texts[k], len, &ids, &n, &cap, err, sizeof err), 0);
        for (size_t i = 0; i < n; i++) assert_true(ids[i] >= 0 && ids[i] < V - 3);
        if (k < 2) assert_true(3 * n < 2 * len); /* the merges work on English */
        size_t dlen;
        char *back = q35_tokenizer_decode(t, ids, n, 0, &dlen, err, sizeof err);
        assert_non_null(back);
        assert_int_equal(dlen, len);
        assert_memory_equal(back, texts[k], len);
        free(back);
    }
    /* the chat markers become their ids */
    const char chat[] = "<|im_start|>user\nhi<|im_end|>\n";
    assert_int_equal(q35_tokenizer_encode(t, chat, strlen(chat), &ids, &n, &cap, err, sizeof err), 0);
    assert_true(n >= 4);
    assert_int_equal(ids[0], V - 2);
    int has_end = 0;
    for (size_t i = 0; i < n; i++) has_end |= ids[i] == V - 1;
    assert_true(has_end);
    free(ids);
    q35_tokenizer_free(t);
}

static void test_tokenizer_json(void **s)
{
    (void)s;
    char dir[64], p[128], err[512];
    static const struct { const char *preset; int V; } tiny[] = {{"tiny-dense", 512}, {"tiny-odd-moe", 500}};
    for (int i = 0; i < 2; i++) {
        new_out(dir);
        init_ok(dir, tiny[i].preset, 1, ST_BF16, 0, Q35_EXPERTS_FUSED, NULL);
        check_tokenizer_file(dir, tiny[i].V);
        round_trip(dir, tiny[i].V);
        /* config.json's eos is <|im_end|>, the end of a chat turn */
        q35_config c;
        assert_int_equal(q35_config_load(dir, &c, err, sizeof err), 0);
        assert_int_equal(c.n_eos, 1);
        assert_int_equal(c.eos_token_id[0], tiny[i].V - 1);
        assert_int_equal(q35_tiny_tok_im_end(tiny[i].V), tiny[i].V - 1);
        rm_out(dir);
    }
    /* the same bytes whatever the seed: the tokenizer depends on the vocabulary only */
    char d2[64];
    new_out(dir);
    new_out(d2);
    init_ok(dir, "tiny-moe", 1, ST_BF16, 2, Q35_EXPERTS_FUSED, NULL);
    init_ok(d2, "tiny-dense", 7, ST_F32, 0, Q35_EXPERTS_FUSED, NULL);
    char p2[128];
    in_dir(p, sizeof p, dir, "tokenizer.json");
    in_dir(p2, sizeof p2, d2, "tokenizer.json");
    size_t n1, n2;
    char *a = slurp(p, &n1), *b = slurp(p2, &n2);
    assert_true(n1 == n2 && !memcmp(a, b, n1));
    free(a);
    free(b);
    rm_out(dir);
    rm_out(d2);
    /* vocabulary sizes the built-in text cannot fill are refused */
    assert_null(q35_tiny_tokenizer_json(Q35_TINY_TOK_MIN_VOCAB - 1, err, sizeof err));
    assert_non_null(strstr(err, "vocabulary size"));
    assert_null(q35_tiny_tokenizer_json(Q35_TINY_TOK_MAX_VOCAB + 1, err, sizeof err));
    cJSON *j = q35_tiny_tokenizer_json(Q35_TINY_TOK_MAX_VOCAB, err, sizeof err);
    assert_non_null(j);
    cJSON_Delete(j);
}

/* tokenizer.json cannot be written (it is a directory): the error names
 * it, and neither model.safetensors nor config.json stays. */
static void test_tokenizer_failure_cleans_up(void **s)
{
    (void)s;
    char dir[64], p[128], err[1024];
    new_out(dir);
    in_dir(p, sizeof p, dir, "tokenizer.json");
    assert_int_equal(mkdir(p, 0755), 0);
    q35_init_opts o = {.preset = "tiny-dense", .seed = 1, .dtype = ST_BF16, .force = 1};
    assert_int_equal(q35_init_write(dir, &o, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "tokenizer.json"));
    assert_int_equal(count_files(dir), 1);
    assert_int_equal(rmdir(p), 0);
    rm_out(dir);
}

/* ------------------------------------------------------------------ */
/* Command line                                                        */
/* ------------------------------------------------------------------ */

/* Run q35lab with args; returns the exit code, stderr+stdout in out. */
static int run_cli(const char *args, char *out, size_t n)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", g_cli, args);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t k = fread(out, 1, n - 1, f);
    out[k] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void **s)
{
    (void)s;
    if (access(g_cli, X_OK) != 0) {
        /* the Makefile builds q35lab before running the suites */
        fail_msg("%s not found", g_cli);
    }
    static char out[16384];
    char dir[64], args[512];
    new_out(dir);
    assert_int_equal(run_cli("model --help", out, sizeof out), 0);
    assert_non_null(strstr(out, "init"));
    assert_int_equal(run_cli("model init --help", out, sizeof out), 0);
    assert_non_null(strstr(out, "qwen3.5-35b-a3b"));
    assert_non_null(strstr(out, "Qwen/Qwen3.5-0.8B"));
    assert_int_equal(run_cli("model frobnicate", out, sizeof out), 2);
    assert_non_null(strstr(out, "unknown subcommand"));
    snprintf(args, sizeof args, "model init --preset qwen4 --out %s", dir);
    assert_int_equal(run_cli(args, out, sizeof out), 2);
    assert_non_null(strstr(out, "unknown preset 'qwen4'"));
    assert_non_null(strstr(out, "tiny-moe"));
    assert_int_equal(run_cli("model init --preset tiny-dense", out, sizeof out), 2);
    assert_non_null(strstr(out, "--out"));
    snprintf(args, sizeof args, "model init --preset tiny-dense --dtype fp8 --out %s", dir);
    assert_int_equal(run_cli(args, out, sizeof out), 2);
    assert_non_null(strstr(out, "bf16 or f32"));
    snprintf(args, sizeof args, "model init --preset tiny-dense --layers 0 --out %s", dir);
    assert_int_equal(run_cli(args, out, sizeof out), 2);
    snprintf(args, sizeof args, "model init --preset tiny-dense --seed -3 --out %s", dir);
    assert_int_equal(run_cli(args, out, sizeof out), 2);
    snprintf(args, sizeof args, "model init --preset tiny-moe --experts split --out %s", dir);
    assert_int_equal(run_cli(args, out, sizeof out), 2);
    snprintf(args, sizeof args, "model init --preset tiny-moe --embed-std -1 --out %s", dir);
    assert_int_equal(run_cli(args, out, sizeof out), 2);
    snprintf(args, sizeof args, "model init --preset tiny-moe --bogus --out %s", dir);
    assert_int_equal(run_cli(args, out, sizeof out), 2);
    assert_non_null(strstr(out, "unknown option"));
    assert_int_equal(count_files(dir), 0);

    snprintf(args, sizeof args,
             "model init --preset tiny-moe --seed 18446744073709551615 --dtype f32 --layers 4 "
             "--experts per-expert --out %s", dir);
    assert_int_equal(run_cli(args, out, sizeof out), 0);
    assert_non_null(strstr(out, "layer 4/4"));
    assert_non_null(strstr(out, "wrote"));
    check_checkpoint(dir, "tiny-moe", 4, ST_F32, 0);
    /* exists now: refused without --force, exit 1 */
    assert_int_equal(run_cli(args, out, sizeof out), 1);
    assert_non_null(strstr(out, "not empty"));
    rm_out(dir);
}

int main(int argc, char **argv)
{
    (void)argc;
    /* build/tests/test_model_init -> build/q35lab (build-san likewise) */
    char self[512];
    snprintf(self, sizeof self, "%s", argv[0]);
    snprintf(g_cli, sizeof g_cli, "%s/../q35lab", dirname(self));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_values),
        cmocka_unit_test(test_tiny_dense_bf16),
        cmocka_unit_test(test_tiny_dense_f32),
        cmocka_unit_test(test_tiny_dense_per_expert),
        cmocka_unit_test(test_tiny_moe_bf16_fused),
        cmocka_unit_test(test_tiny_moe_f32_fused),
        cmocka_unit_test(test_tiny_moe_bf16_per_expert),
        cmocka_unit_test(test_tiny_moe_f32_per_expert),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_layers_truncation),
        cmocka_unit_test(test_stats_f32),
        cmocka_unit_test(test_stats_bf16),
        cmocka_unit_test(test_embed_std_option),
        cmocka_unit_test(test_bf16_is_rounded_f32),
        cmocka_unit_test(test_fused_equals_per_expert),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_failure_cleans_up),
        cmocka_unit_test(test_progress_lines),
        cmocka_unit_test(test_tokenizer_json),
        cmocka_unit_test(test_tokenizer_failure_cleans_up),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
