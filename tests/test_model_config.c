/* test_model_config.c - cmocka suite for model/config.{h,c} and model/weights.{h,c}.
 *
 * Groups: the tiny golden model folder (checked against its config.json read
 * here independently with cJSON), synthetic configs (flat, nested, layer-type
 * and RoPE variants, every validation error), and synthetic weight folders
 * written with common/safetensors.h's writer (single file, two shards, ignored
 * tensors, hostile shard names, duplicates, lookup and shape errors).  Files
 * live in a mkdtemp directory that is emptied between tests. */
#include "model/config.h"
#include "model/weights.h"
#include "tests/support/json_read.h"
#include "tests/support/tmpdir.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TINY_DIR "../shared/golden-samples/model/tiny-dense-f32"

/* ------------------------------------------------------------------ */
/* Temp directory and file helpers                                     */
/* ------------------------------------------------------------------ */

static char g_dir[64];

static int group_setup(void **state)
{
    (void)state;
    return test_tmpdir_make(g_dir, "q35_model_test");
}

static int group_teardown(void **state)
{
    (void)state;
    return test_tmpdir_remove(g_dir);
}

/* Each test starts from an empty directory. */
static int test_setup(void **state)
{
    (void)state;
    if (test_tmpdir_remove(g_dir))
        return -1;
    return mkdir(g_dir, 0700);
}

static void tpath(char *buf, size_t len, const char *name) { test_tmpdir_path(buf, len, g_dir, name); }

static void write_text(const char *name, const char *text, size_t len)
{
    char p[256];
    tpath(p, sizeof p, name);
    FILE *fp = fopen(p, "wb");
    assert_non_null(fp);
    if (len)
        assert_int_equal(fwrite(text, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static void write_json(const char *name, const cJSON *j)
{
    char *s = cJSON_Print(j);
    assert_non_null(s);
    write_text(name, s, strlen(s));
    free(s);
}

static void assert_contains(const char *msg, const char *word)
{
    if (!strstr(msg, word))
        fail_msg("message \"%s\" lacks \"%s\"", msg, word);
}

/* ------------------------------------------------------------------ */
/* Synthetic configs                                                   */
/* ------------------------------------------------------------------ */

static cJSON *str_array(int n, const char *const *s)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(s[i]));
    return a;
}

/* The decoder fields of a small dense model (4 layers: L L L F). */
static cJSON *text_fields(int moe)
{
    static const char *const lt[] = {"linear_attention", "linear_attention", "linear_attention",
                                     "full_attention"};
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "model_type", moe ? "qwen3_5_moe_text" : "qwen3_5_text");
    cJSON_AddNumberToObject(t, "vocab_size", 100);
    cJSON_AddNumberToObject(t, "hidden_size", 32);
    cJSON_AddNumberToObject(t, "num_hidden_layers", 4);
    cJSON_AddItemToObject(t, "layer_types", str_array(4, lt));
    cJSON_AddNumberToObject(t, "num_attention_heads", 4);
    cJSON_AddNumberToObject(t, "num_key_value_heads", 2);
    cJSON_AddNumberToObject(t, "head_dim", 16);
    cJSON_AddNumberToObject(t, "rms_norm_eps", 1e-6);
    cJSON_AddNumberToObject(t, "linear_conv_kernel_dim", 4);
    cJSON_AddNumberToObject(t, "linear_key_head_dim", 8);
    cJSON_AddNumberToObject(t, "linear_value_head_dim", 8);
    cJSON_AddNumberToObject(t, "linear_num_key_heads", 2);
    cJSON_AddNumberToObject(t, "linear_num_value_heads", 4);
    if (moe) {
        cJSON_AddNumberToObject(t, "num_experts", 8);
        cJSON_AddNumberToObject(t, "num_experts_per_tok", 2);
        cJSON_AddNumberToObject(t, "moe_intermediate_size", 24);
        cJSON_AddNumberToObject(t, "shared_expert_intermediate_size", 40);
    } else {
        cJSON_AddNumberToObject(t, "intermediate_size", 64);
    }
    cJSON *rp = cJSON_AddObjectToObject(t, "rope_parameters");
    cJSON_AddStringToObject(rp, "rope_type", "default");
    cJSON_AddNumberToObject(rp, "rope_theta", 1e7);
    cJSON_AddNumberToObject(rp, "partial_rotary_factor", 0.25);
    cJSON_AddNumberToObject(t, "eos_token_id", 99);
    return t;
}

static cJSON *flat_config(int moe)
{
    cJSON *c = text_fields(moe);
    const char *arch[] = {moe ? "Qwen3_5MoeForCausalLM" : "Qwen3_5ForCausalLM"};
    cJSON_AddItemToObject(c, "architectures", str_array(1, arch));
    return c;
}

static cJSON *nested_config(int moe)
{
    cJSON *c = cJSON_CreateObject();
    const char *arch[] = {moe ? "Qwen3_5MoeForConditionalGeneration"
                              : "Qwen3_5ForConditionalGeneration"};
    cJSON_AddItemToObject(c, "architectures", str_array(1, arch));
    cJSON_AddStringToObject(c, "model_type", moe ? "qwen3_5_moe" : "qwen3_5");
    cJSON_AddItemToObject(c, "text_config", text_fields(moe));
    cJSON *v = cJSON_AddObjectToObject(c, "vision_config");
    cJSON_AddNumberToObject(v, "hidden_size", 1152);
    return c;
}

static int load_json(const cJSON *j, q35_config *c, char *err, size_t errlen)
{
    write_json("config.json", j);
    return q35_config_load(g_dir, c, err, errlen);
}

static void load_ok(const cJSON *j, q35_config *c)
{
    char err[512] = "";
    if (load_json(j, c, err, sizeof err))
        fail_msg("load failed: %s", err);
}

/* Loading j must fail, the message naming word; *c must be zeroed. */
static void load_fails(const cJSON *j, const char *word)
{
    q35_config c;
    memset(&c, 0x5A, sizeof c);
    char err[512] = "";
    assert_int_equal(load_json(j, &c, err, sizeof err), -1);
    assert_contains(err, word);
    assert_int_equal(c.hidden_size, 0);
    assert_int_equal(c.num_hidden_layers, 0);
}

/* Replace (or with v == NULL delete) key in obj. */
static void set_field(cJSON *obj, const char *key, cJSON *v)
{
    cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
    if (v)
        cJSON_AddItemToObject(obj, key, v);
}

/* ------------------------------------------------------------------ */
/* Golden tiny model                                                   */
/* ------------------------------------------------------------------ */

static int have_tiny(void)
{
    struct stat sb;
    if (stat(TINY_DIR "/config.json", &sb) == 0)
        return 1;
    printf("note: %s is absent; skipping the golden model test\n", TINY_DIR);
    return 0;
}

static cJSON *read_json_file(const char *path)
{
    cJSON *j = test_read_json(path);
    assert_non_null(j);
    return j;
}

static int json_int(const cJSON *o, const char *k)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(j))
        fail_msg("golden config.json lacks integer '%s'", k);
    return (int)j->valuedouble;
}

static void test_golden_config(void **state)
{
    (void)state;
    if (!have_tiny())
        skip();
    q35_config c;
    char err[512] = "";
    if (q35_config_load(TINY_DIR, &c, err, sizeof err))
        fail_msg("%s", err);
    cJSON *j = read_json_file(TINY_DIR "/config.json");

    const struct { const char *k; int v; } ints[] = {
        {"vocab_size", c.vocab_size},
        {"hidden_size", c.hidden_size},
        {"num_hidden_layers", c.num_hidden_layers},
        {"num_attention_heads", c.num_attention_heads},
        {"num_key_value_heads", c.num_key_value_heads},
        {"head_dim", c.head_dim},
        {"linear_conv_kernel_dim", c.linear_conv_kernel_dim},
        {"linear_key_head_dim", c.linear_key_head_dim},
        {"linear_value_head_dim", c.linear_value_head_dim},
        {"linear_num_key_heads", c.linear_num_key_heads},
        {"linear_num_value_heads", c.linear_num_value_heads},
        {"intermediate_size", c.intermediate_size},
        {"eos_token_id", c.eos_token_id[0]},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (json_int(j, ints[i].k) != ints[i].v)
            fail_msg("%s: config.json has %d, parser gave %d", ints[i].k, json_int(j, ints[i].k),
                     ints[i].v);
    assert_int_equal(c.n_eos, 1);
    assert_true(c.rms_norm_eps ==
                cJSON_GetObjectItemCaseSensitive(j, "rms_norm_eps")->valuedouble);
    assert_int_equal(c.attn_output_gate,
                     cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "attn_output_gate")));
    assert_int_equal(c.tie_word_embeddings,
                     cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "tie_word_embeddings")));
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(j, "rope_parameters");
    double theta = cJSON_GetObjectItemCaseSensitive(rp, "rope_theta")->valuedouble;
    double prf = cJSON_GetObjectItemCaseSensitive(rp, "partial_rotary_factor")->valuedouble;
    assert_true(c.rope_theta == theta);
    assert_true(c.partial_rotary_factor == prf);
    assert_int_equal(c.rotary_dim, (int)(c.head_dim * prf));
    assert_false(c.is_moe);
    assert_false(c.nested);
    assert_string_equal(c.architecture,
                        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "architectures"), 0)
                            ->valuestring);

    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(j, "layer_types");
    assert_int_equal(cJSON_GetArraySize(lt), c.num_hidden_layers);
    assert_true(c.layer_types_given);
    int nfull = 0;
    for (int i = 0; i < c.num_hidden_layers; i++) {
        const char *s = cJSON_GetArrayItem(lt, i)->valuestring;
        assert_string_equal(q35_layer_type_name((q35_layer_type)c.layer_types[i]), s);
        nfull += strcmp(s, "full_attention") == 0;
    }
    assert_int_equal(c.n_full_layers, nfull);
    assert_int_equal(c.n_linear_layers, c.num_hidden_layers - nfull);
    cJSON_Delete(j);

    /* the print block mentions the architecture and the layer pattern */
    char *text = NULL;
    size_t tlen = 0;
    FILE *mf = open_memstream(&text, &tlen);
    assert_non_null(mf);
    q35_config_print(&c, mf);
    fclose(mf);
    assert_contains(text, "Qwen3_5ForCausalLM");
    assert_contains(text, "LLLFLLLF");
    free(text);
}

static void test_golden_weights(void **state)
{
    (void)state;
    if (!have_tiny())
        skip();
    q35_config c;
    q35_weights w;
    char err[512] = "";
    if (q35_config_load(TINY_DIR, &c, err, sizeof err) || q35_weights_open(TINY_DIR, &w, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(w.n_shards, 1);
    assert_false(w.sharded);

    const st_tensor *t;
    int64_t emb[2] = {c.vocab_size, c.hidden_size};
    if (q35_weights_expect(&w, "embed_tokens.weight", 2, emb, &t, err, sizeof err))
        fail_msg("%s", err);
    assert_string_equal(t->name, "model.embed_tokens.weight");

    int64_t qkv[2] = {2 * c.linear_num_key_heads * c.linear_key_head_dim +
                          c.linear_num_value_heads * c.linear_value_head_dim,
                      c.hidden_size};
    if (q35_weights_expect(&w, "layers.0.linear_attn.in_proj_qkv.weight", 2, qkv, &t, err, sizeof err))
        fail_msg("%s", err);
    int64_t norm[1] = {c.hidden_size};
    if (q35_weights_expect(&w, "norm.weight", 1, norm, NULL, err, sizeof err))
        fail_msg("%s", err);

    /* every layer has the module its layer type says */
    char name[128];
    for (int i = 0; i < c.num_hidden_layers; i++) {
        int full = c.layer_types[i] == Q35_LAYER_FULL;
        snprintf(name, sizeof name, "layers.%d.self_attn.q_proj.weight", i);
        assert_int_equal(q35_weights_find(&w, name) != NULL, full);
        snprintf(name, sizeof name, "layers.%d.linear_attn.in_proj_qkv.weight", i);
        assert_int_equal(q35_weights_find(&w, name) != NULL, !full);
    }
    q35_weights_close(&w);
    q35_weights_close(&w);
}

/* ------------------------------------------------------------------ */
/* Config variants                                                     */
/* ------------------------------------------------------------------ */

static void test_flat_dense(void **state)
{
    (void)state;
    cJSON *j = flat_config(0);
    q35_config c;
    load_ok(j, &c);
    assert_false(c.nested);
    assert_false(c.is_moe);
    assert_int_equal(c.intermediate_size, 64);
    assert_int_equal(c.rotary_dim, 4);
    assert_int_equal(c.attn_output_gate, 1);  /* default */
    assert_int_equal(c.tie_word_embeddings, 0); /* default */
    assert_string_equal(c.model_type, "qwen3_5_text");
    assert_int_equal(c.n_full_layers, 1);
    assert_int_equal(c.layer_types[3], Q35_LAYER_FULL);
    cJSON_Delete(j);
}

static void test_nested_moe(void **state)
{
    (void)state;
    cJSON *j = nested_config(1);
    cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "text_config");
    /* top-level tie wins over text_config's */
    cJSON_AddBoolToObject(j, "tie_word_embeddings", 1);
    cJSON_AddBoolToObject(t, "tie_word_embeddings", 0);
    int eos[] = {97, 98};
    set_field(t, "eos_token_id", cJSON_CreateIntArray(eos, 2));
    q35_config c;
    load_ok(j, &c);
    assert_true(c.nested);
    assert_true(c.is_moe);
    assert_string_equal(c.architecture, "Qwen3_5MoeForConditionalGeneration");
    assert_string_equal(c.model_type, "qwen3_5_moe_text");
    assert_int_equal(c.hidden_size, 32);
    assert_int_equal(c.num_experts, 8);
    assert_int_equal(c.num_experts_per_tok, 2);
    assert_int_equal(c.moe_intermediate_size, 24);
    assert_int_equal(c.shared_expert_intermediate_size, 40);
    assert_int_equal(c.norm_topk_prob, 1); /* default for Qwen3.5-MoE */
    assert_int_equal(c.intermediate_size, 0);
    assert_int_equal(c.tie_word_embeddings, 1);
    assert_int_equal(c.n_eos, 2);
    assert_int_equal(c.eos_token_id[0], 97);
    assert_int_equal(c.eos_token_id[1], 98);

    /* without a top-level value, text_config's is used */
    cJSON_DeleteItemFromObjectCaseSensitive(j, "tie_word_embeddings");
    set_field(t, "tie_word_embeddings", cJSON_CreateTrue());
    cJSON_AddFalseToObject(t, "norm_topk_prob");
    load_ok(j, &c);
    assert_int_equal(c.tie_word_embeddings, 1);
    assert_int_equal(c.norm_topk_prob, 0);

    /* the nested dense form */
    cJSON_Delete(j);
    j = nested_config(0);
    load_ok(j, &c);
    assert_true(c.nested);
    assert_false(c.is_moe);
    assert_int_equal(c.intermediate_size, 64);
    cJSON_Delete(j);
}

static void test_interval_layer_types(void **state)
{
    (void)state;
    cJSON *j = flat_config(0);
    set_field(j, "layer_types", NULL);
    set_field(j, "num_hidden_layers", cJSON_CreateNumber(6));
    set_field(j, "full_attention_interval", cJSON_CreateNumber(3));
    q35_config c;
    load_ok(j, &c);
    const unsigned char want3[6] = {0, 0, 1, 0, 0, 1};
    assert_memory_equal(c.layer_types, want3, 6);
    assert_false(c.layer_types_given);
    assert_int_equal(c.full_attention_interval, 3);
    assert_int_equal(c.n_full_layers, 2);

    /* default interval 4, as transformers */
    set_field(j, "full_attention_interval", NULL);
    set_field(j, "num_hidden_layers", cJSON_CreateNumber(8));
    load_ok(j, &c);
    const unsigned char want4[8] = {0, 0, 0, 1, 0, 0, 0, 1};
    assert_memory_equal(c.layer_types, want4, 8);

    /* layer_types wins over the interval */
    static const char *const lt[] = {"full_attention", "linear_attention"};
    set_field(j, "num_hidden_layers", cJSON_CreateNumber(2));
    set_field(j, "full_attention_interval", cJSON_CreateNumber(2));
    set_field(j, "layer_types", str_array(2, lt));
    load_ok(j, &c);
    assert_int_equal(c.layer_types[0], Q35_LAYER_FULL);
    assert_int_equal(c.layer_types[1], Q35_LAYER_LINEAR);
    cJSON_Delete(j);
}

static void test_legacy_rope(void **state)
{
    (void)state;
    cJSON *j = flat_config(0);
    set_field(j, "rope_parameters", NULL);
    set_field(j, "rope_theta", cJSON_CreateNumber(5e6));
    set_field(j, "partial_rotary_factor", cJSON_CreateNumber(0.5));
    cJSON *rs = cJSON_CreateObject();
    cJSON_AddStringToObject(rs, "type", "default");
    int sec[] = {3, 3, 2};
    cJSON_AddItemToObject(rs, "mrope_section", cJSON_CreateIntArray(sec, 3));
    set_field(j, "rope_scaling", rs);
    q35_config c;
    load_ok(j, &c);
    assert_true(c.rope_theta == 5e6);
    assert_true(c.partial_rotary_factor == 0.5);
    assert_int_equal(c.rotary_dim, 8);
    assert_string_equal(c.rope_type, "default");

    /* partial_rotary_factor absent everywhere: 0.25 */
    set_field(j, "partial_rotary_factor", NULL);
    load_ok(j, &c);
    assert_true(c.partial_rotary_factor == 0.25);
    assert_int_equal(c.rotary_dim, 4);

    /* rope_parameters wins over the legacy fields */
    cJSON *rp = cJSON_CreateObject();
    cJSON_AddNumberToObject(rp, "rope_theta", 1234.0);
    set_field(j, "rope_parameters", rp);
    load_ok(j, &c);
    assert_true(c.rope_theta == 1234.0);

    /* an unsupported rope type is refused */
    cJSON_AddStringToObject(rp, "rope_type", "yarn");
    load_fails(j, "rope_type");
    cJSON_Delete(j);
}

/* ------------------------------------------------------------------ */
/* Config validation                                                   */
/* ------------------------------------------------------------------ */

typedef struct {
    const char *key;     /* field to change in the decoder section */
    const char *json;    /* new value as JSON text; NULL deletes the field */
    const char *word;    /* expected in the message */
} mutation;

static void run_mutations(int nested, int moe, const mutation *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cJSON *j = nested ? nested_config(moe) : flat_config(moe);
        cJSON *t = nested ? cJSON_GetObjectItemCaseSensitive(j, "text_config") : j;
        cJSON *v = NULL;
        if (m[i].json) {
            v = cJSON_Parse(m[i].json);
            assert_non_null(v);
        }
        set_field(t, m[i].key, v);
        load_fails(j, m[i].word);
        cJSON_Delete(j);
    }
}

static void test_validation_fields(void **state)
{
    (void)state;
    static const mutation dense[] = {
        {"hidden_size", NULL, "missing required field 'hidden_size'"},
        {"vocab_size", NULL, "vocab_size"},
        {"head_dim", NULL, "head_dim"},
        {"rms_norm_eps", NULL, "rms_norm_eps"},
        {"intermediate_size", NULL, "intermediate_size"},
        {"linear_key_head_dim", NULL, "linear_key_head_dim"},
        {"hidden_size", "\"32\"", "'hidden_size' must be an integer, got string"},
        {"hidden_size", "32.5", "hidden_size"},
        {"hidden_size", "0", "hidden_size"},
        {"vocab_size", "-5", "vocab_size"},
        {"num_hidden_layers", "100000", "num_hidden_layers"},
        {"rms_norm_eps", "\"1e-6\"", "rms_norm_eps"},
        {"rms_norm_eps", "0", "rms_norm_eps"},
        {"attn_output_gate", "1", "attn_output_gate"},
        {"layer_types", "[\"linear_attention\", \"full_attention\"]", "layer_types"},
        {"layer_types", "[\"linear_attention\", \"linear_attention\", \"sliding_attention\", "
                        "\"full_attention\"]",
         "layer_types[2]"},
        {"layer_types", "[1, 2, 3, 4]", "layer_types[0]"},
        {"layer_types", "\"full_attention\"", "layer_types"},
        {"num_attention_heads", "3", "num_attention_heads"},
        {"linear_num_value_heads", "3", "linear_num_value_heads"},
        /* rotary_dim = 16 * 0.3125 = 5: odd */
        {"rope_parameters", "{\"rope_theta\": 1e6, \"partial_rotary_factor\": 0.3125}", "rotary_dim"},
        /* rotary_dim = 16 * 0.3 = 4.8: not an integer */
        {"rope_parameters", "{\"rope_theta\": 1e6, \"partial_rotary_factor\": 0.3}", "rotary_dim"},
        /* rotary_dim > head_dim: the factor is capped at 1 */
        {"rope_parameters", "{\"rope_theta\": 1e6, \"partial_rotary_factor\": 1.5}",
         "partial_rotary_factor"},
        {"rope_parameters", "{\"partial_rotary_factor\": 0.25}", "rope_theta"},
        {"rope_parameters", "[1]", "rope_parameters"},
        {"eos_token_id", "\"</s>\"", "eos_token_id"},
        {"eos_token_id", "1000", "eos_token_id"},
        {"model_type", "\"llama\"", "model_type"},
        {"architectures", "[\"LlamaForCausalLM\"]", "architectures"},
        {"architectures", "[\"Qwen3_5MoeForCausalLM\"]", "disagree"},
    };
    run_mutations(0, 0, dense, sizeof dense / sizeof dense[0]);

    static const mutation moe[] = {
        {"num_experts_per_tok", "9", "num_experts_per_tok"},
        {"num_experts", NULL, "num_experts"},
        {"moe_intermediate_size", "\"24\"", "moe_intermediate_size"},
        {"shared_expert_intermediate_size", NULL, "shared_expert_intermediate_size"},
        {"norm_topk_prob", "\"yes\"", "norm_topk_prob"},
    };
    run_mutations(0, 1, moe, sizeof moe / sizeof moe[0]);

    /* in the nested form the message carries the text_config. prefix */
    static const mutation nested[] = {
        {"hidden_size", NULL, "'text_config.hidden_size'"},
        {"num_experts_per_tok", "9", "text_config.num_experts_per_tok"},
        {"layer_types", "[]", "text_config.layer_types"},
    };
    run_mutations(1, 1, nested, sizeof nested / sizeof nested[0]);
}

static void test_validation_structure(void **state)
{
    (void)state;
    /* ConditionalGeneration without text_config */
    cJSON *j = nested_config(0);
    set_field(j, "text_config", NULL);
    load_fails(j, "text_config");
    set_field(j, "text_config", cJSON_CreateString("x"));
    load_fails(j, "text_config");
    cJSON_Delete(j);

    /* top-level tie must be a bool */
    j = nested_config(0);
    cJSON_AddNumberToObject(j, "tie_word_embeddings", 1);
    load_fails(j, "tie_word_embeddings");
    cJSON_Delete(j);

    /* neither architectures nor model_type */
    j = flat_config(0);
    set_field(j, "architectures", NULL);
    set_field(j, "model_type", NULL);
    load_fails(j, "architectures");
    cJSON_Delete(j);

    /* only model_type is enough */
    j = flat_config(1);
    set_field(j, "architectures", NULL);
    q35_config c;
    load_ok(j, &c);
    assert_true(c.is_moe);
    cJSON_Delete(j);

    j = cJSON_CreateArray();
    load_fails(j, "object");
    cJSON_Delete(j);
}

static void test_validation_files(void **state)
{
    (void)state;
    q35_config c;
    char err[512] = "";

    /* missing file */
    assert_int_equal(q35_config_load(g_dir, &c, err, sizeof err), -1);
    assert_contains(err, "config.json");
    assert_contains(err, "cannot open");

    /* not JSON */
    static const char bad[] = "{\"hidden_size\": 32,";
    write_text("config.json", bad, sizeof bad - 1);
    assert_int_equal(q35_config_load(g_dir, &c, err, sizeof err), -1);
    assert_contains(err, "not valid JSON");
    write_text("config.json", "", 0);
    assert_int_equal(q35_config_load(g_dir, &c, err, sizeof err), -1);
    assert_contains(err, "not valid JSON");

    /* too large: a valid config padded with spaces past 1 MiB */
    cJSON *j = flat_config(0);
    char *s = cJSON_Print(j);
    size_t n = Q35_CONFIG_MAX_BYTES + 16;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, ' ', n);
    memcpy(big, s, strlen(s));
    write_text("config.json", big, n);
    assert_int_equal(q35_config_load(g_dir, &c, err, sizeof err), -1);
    assert_contains(err, "too large");
    /* ... while the same config at exactly the limit loads */
    write_text("config.json", big, Q35_CONFIG_MAX_BYTES);
    if (q35_config_load(g_dir, &c, err, sizeof err))
        fail_msg("%s", err);
    free(big);
    free(s);
    cJSON_Delete(j);

    /* err may be NULL */
    assert_int_equal(q35_config_load("/nonexistent-q35", &c, NULL, 0), -1);
}

/* ------------------------------------------------------------------ */
/* Weights                                                             */
/* ------------------------------------------------------------------ */

static float g_zeros[4096];

/* Writes a safetensors file with the given F32 tensors (2-D shapes). */
typedef struct { const char *name; int64_t rows, cols; } tspec;

static void write_st(const char *file, const tspec *t, size_t n)
{
    st_writer *w = st_writer_new();
    assert_non_null(w);
    for (size_t i = 0; i < n; i++) {
        int64_t shape[2] = {t[i].rows, t[i].cols};
        assert_true(t[i].rows * t[i].cols <= 4096);
        if (st_writer_add(w, t[i].name, ST_F32, 2, shape, g_zeros))
            fail_msg("%s", st_writer_error(w));
    }
    char p[256], err[256];
    tpath(p, sizeof p, file);
    if (st_writer_write(w, p, err, sizeof err))
        fail_msg("%s", err);
    st_writer_free(w);
}

/* model.safetensors.index.json from "name=shard" pairs. */
static void write_index(const char *const *pairs, size_t n)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(j, "metadata");
    cJSON_AddNumberToObject(meta, "total_size", 0);
    cJSON *wm = cJSON_AddObjectToObject(j, "weight_map");
    for (size_t i = 0; i < n; i++) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", pairs[i]);
        char *eq = strchr(buf, '=');
        assert_non_null(eq);
        *eq = 0;
        cJSON_AddStringToObject(wm, buf, eq + 1);
    }
    write_json("model.safetensors.index.json", j);
    cJSON_Delete(j);
}

static void open_ok(q35_weights *w)
{
    char err[512] = "";
    if (q35_weights_open(g_dir, w, err, sizeof err))
        fail_msg("%s", err);
}

static void open_fails(const char *word1, const char *word2)
{
    q35_weights w;
    memset(&w, 0x5A, sizeof w);
    char err[512] = "";
    assert_int_equal(q35_weights_open(g_dir, &w, err, sizeof err), -1);
    assert_contains(err, word1);
    if (word2)
        assert_contains(err, word2);
    assert_null(w.shards);
    assert_null(w.entries);
    assert_int_equal(w.n_shards, 0);
    q35_weights_close(&w);
}

static void test_weights_single_prefixed(void **state)
{
    (void)state;
    static const tspec t[] = {
        {"model.language_model.embed_tokens.weight", 10, 4},
        {"model.language_model.layers.0.linear_attn.in_proj_qkv.weight", 12, 4},
        {"model.language_model.norm.weight", 1, 4},
        {"lm_head.weight", 10, 4},
        {"model.visual.blocks.0.attn.qkv.weight", 3, 3},
        {"model.visual.merger.mlp.0.weight", 3, 3},
        {"mtp.fc.weight", 4, 8},
    };
    write_st("model.safetensors", t, sizeof t / sizeof t[0]);
    q35_weights w;
    open_ok(&w);
    assert_int_equal(w.n_entries, 5); /* mtp.* is the MTP head, indexed (docs/mtp.md) */
    assert_int_equal(w.n_ignored_visual, 2);
    assert_int_equal(w.n_mtp, 1);
    assert_non_null(q35_weights_find_raw(&w, "mtp.fc.weight"));

    const st_tensor *e = q35_weights_find(&w, "embed_tokens.weight");
    assert_non_null(e);
    assert_string_equal(e->name, "model.language_model.embed_tokens.weight");
    assert_int_equal(e->shape[0], 10);
    assert_non_null(q35_weights_find(&w, "layers.0.linear_attn.in_proj_qkv.weight"));
    assert_non_null(q35_weights_find(&w, "lm_head.weight"));
    assert_null(q35_weights_find(&w, "layers.1.linear_attn.in_proj_qkv.weight"));
    assert_non_null(q35_weights_find_raw(&w, "mtp.fc.weight")); /* the MTP head: indexed */
    assert_null(q35_weights_find_raw(&w, "model.visual.merger.mlp.0.weight"));

    /* expect: ok, any-dimension wildcard, missing, shape mismatch */
    char err[512] = "";
    const st_tensor *out = NULL;
    int64_t good[2] = {10, 4}, any[2] = {-1, 4}, wrong[2] = {4, 10};
    assert_int_equal(q35_weights_expect(&w, "embed_tokens.weight", 2, good, &out, err, sizeof err), 0);
    assert_ptr_equal(out, e);
    assert_int_equal(q35_weights_expect(&w, "embed_tokens.weight", 2, any, NULL, err, sizeof err), 0);
    assert_int_equal(q35_weights_expect(&w, "embed_tokens.weight", 2, NULL, NULL, err, sizeof err), 0);

    assert_int_equal(q35_weights_expect(&w, "layers.7.mlp.up_proj.weight", 2, good, &out, err,
                                        sizeof err), -1);
    assert_null(out);
    assert_contains(err, "'layers.7.mlp.up_proj.weight' not found");
    assert_int_equal(q35_weights_expect(&w, "lm_head.bias", 1, NULL, NULL, err, sizeof err), -1);
    assert_contains(err, "lm_head.bias");

    assert_int_equal(q35_weights_expect(&w, "embed_tokens.weight", 2, wrong, NULL, err, sizeof err), -1);
    assert_contains(err, "embed_tokens.weight");
    assert_contains(err, "expected shape [4, 10], got [10, 4]");
    assert_int_equal(q35_weights_expect(&w, "norm.weight", 1, good, NULL, err, sizeof err), -1);
    assert_contains(err, "expected shape [10], got [1, 4]");
    q35_weights_close(&w);
}

static void test_weights_dtype(void **state)
{
    (void)state;
    st_writer *sw = st_writer_new();
    int32_t ids[4] = {0};
    int64_t shape[1] = {4};
    assert_int_equal(st_writer_add(sw, "model.norm.weight", ST_I32, 1, shape, ids), 0);
    uint16_t h[4] = {0};
    assert_int_equal(st_writer_add(sw, "model.layers.0.input_layernorm.weight", ST_BF16, 1, shape, h), 0);
    char p[256], err[512];
    tpath(p, sizeof p, "model.safetensors");
    assert_int_equal(st_writer_write(sw, p, err, sizeof err), 0);
    st_writer_free(sw);

    q35_weights w;
    open_ok(&w);
    assert_int_equal(q35_weights_expect(&w, "norm.weight", 1, shape, NULL, err, sizeof err), -1);
    assert_contains(err, "norm.weight");
    assert_contains(err, "I32");
    assert_int_equal(q35_weights_expect(&w, "layers.0.input_layernorm.weight", 1, shape, NULL, err,
                                        sizeof err), 0);
    q35_weights_close(&w);
}

static void test_weights_sharded(void **state)
{
    (void)state;
    static const tspec s1[] = {
        {"model.language_model.embed_tokens.weight", 10, 4},
        {"model.language_model.layers.0.linear_attn.in_proj_qkv.weight", 12, 4},
        {"model.visual.patch_embed.proj.weight", 2, 2},
    };
    static const tspec s2[] = {
        {"model.language_model.norm.weight", 1, 4},
        {"lm_head.weight", 10, 4},
        {"mtp.layers.0.mlp.up_proj.weight", 2, 2},
    };
    write_st("model-00001-of-00002.safetensors", s1, 3);
    write_st("model-00002-of-00002.safetensors", s2, 3);
    static const char *const map[] = {
        "model.language_model.embed_tokens.weight=model-00001-of-00002.safetensors",
        "model.language_model.layers.0.linear_attn.in_proj_qkv.weight=model-00001-of-00002.safetensors",
        "model.visual.patch_embed.proj.weight=model-00001-of-00002.safetensors",
        "model.language_model.norm.weight=model-00002-of-00002.safetensors",
        "lm_head.weight=model-00002-of-00002.safetensors",
        "mtp.layers.0.mlp.up_proj.weight=model-00002-of-00002.safetensors",
    };
    write_index(map, 6);
    q35_weights w;
    open_ok(&w);
    assert_true(w.sharded);
    assert_int_equal(w.n_shards, 2); /* each shard opened once */
    assert_int_equal(w.n_entries, 5); /* mtp.* is the MTP head, indexed (docs/mtp.md) */
    assert_int_equal(w.n_ignored_visual, 1);
    assert_int_equal(w.n_mtp, 1);
    assert_non_null(q35_weights_find_raw(&w, "mtp.layers.0.mlp.up_proj.weight"));
    assert_non_null(q35_weights_find(&w, "embed_tokens.weight"));
    assert_non_null(q35_weights_find(&w, "layers.0.linear_attn.in_proj_qkv.weight"));
    assert_non_null(q35_weights_find(&w, "norm.weight"));
    assert_non_null(q35_weights_find(&w, "lm_head.weight"));
    q35_weights_close(&w);

    /* the single file, when present, is preferred over the index */
    static const tspec one[] = {{"model.norm.weight", 1, 4}};
    write_st("model.safetensors", one, 1);
    open_ok(&w);
    assert_false(w.sharded);
    assert_int_equal(w.n_entries, 1);
    q35_weights_close(&w);
}

static void test_weights_errors(void **state)
{
    (void)state;
    /* neither file */
    open_fails("model.safetensors", NULL);

    static const tspec a[] = {{"model.norm.weight", 1, 4}, {"model.embed_tokens.weight", 2, 4}};
    static const tspec b[] = {{"model.norm.weight", 1, 4}};
    write_st("a.safetensors", a, 2);
    write_st("b.safetensors", b, 1);

    /* a shard name escaping the folder */
    static const char *const esc[] = {"model.norm.weight=../a.safetensors"};
    write_index(esc, 1);
    open_fails("../a.safetensors", "model.norm.weight");
    static const char *const sub[] = {"model.norm.weight=sub/a.safetensors"};
    write_index(sub, 1);
    open_fails("sub/a.safetensors", NULL);

    /* the same tensor in two shards */
    static const char *const dup[] = {"model.norm.weight=a.safetensors",
                                      "model.embed_tokens.weight=b.safetensors"};
    write_index(dup, 2);
    open_fails("model.norm.weight", "two shards");

    /* weight_map puts a tensor in a shard that lacks it */
    static const tspec c[] = {{"model.layers.0.input_layernorm.weight", 1, 4}};
    write_st("b.safetensors", c, 1);
    static const char *const lie[] = {"model.norm.weight=b.safetensors",
                                      "model.layers.0.input_layernorm.weight=b.safetensors",
                                      "model.embed_tokens.weight=a.safetensors"};
    write_index(lie, 3);
    open_fails("model.norm.weight", "b.safetensors");

    /* a shard that does not exist, an empty map, a broken index */
    static const char *const gone[] = {"model.norm.weight=missing.safetensors"};
    write_index(gone, 1);
    open_fails("missing.safetensors", NULL);
    write_index(NULL, 0);
    open_fails("weight_map", NULL);
    write_text("model.safetensors.index.json", "{", 1);
    open_fails("not valid JSON", NULL);
}

int main(void)
{
    const struct CMUnitTest golden[] = {
        cmocka_unit_test(test_golden_config),
        cmocka_unit_test(test_golden_weights),
    };
    const struct CMUnitTest configs[] = {
        cmocka_unit_test_setup(test_flat_dense, test_setup),
        cmocka_unit_test_setup(test_nested_moe, test_setup),
        cmocka_unit_test_setup(test_interval_layer_types, test_setup),
        cmocka_unit_test_setup(test_legacy_rope, test_setup),
        cmocka_unit_test_setup(test_validation_fields, test_setup),
        cmocka_unit_test_setup(test_validation_structure, test_setup),
        cmocka_unit_test_setup(test_validation_files, test_setup),
    };
    const struct CMUnitTest weights[] = {
        cmocka_unit_test_setup(test_weights_single_prefixed, test_setup),
        cmocka_unit_test_setup(test_weights_dtype, test_setup),
        cmocka_unit_test_setup(test_weights_sharded, test_setup),
        cmocka_unit_test_setup(test_weights_errors, test_setup),
    };
    int fails = 0;
    fails += cmocka_run_group_tests_name("model golden", golden, NULL, NULL);
    fails += cmocka_run_group_tests_name("model config", configs, group_setup, group_teardown);
    fails += cmocka_run_group_tests_name("model weights", weights, group_setup, group_teardown);
    return fails ? 1 : 0;
}
