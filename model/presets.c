/* presets.c - see presets.h.
 *
 * Where the released shapes come from.  The Hugging Face config.json files
 * themselves could not be fetched from here; every value below was taken from
 * a public text that transcribes or checks against them, two independent
 * ones where possible, and the ones no per-size source showed are marked
 * "family value".  Sources:
 *   [T]   transformers' configuration_qwen3_5.py / configuration_qwen3_5_moe.py
 *         (huggingface/transformers): the class defaults are the 9B-style dense
 *         and the 35B-A3B MoE text configs; also partial_rotary_factor 0.25.
 *   [S]   THUDM/slime scripts/models/qwen3.5-{0.8B,27B,35B-A3B,397B-A17B}.sh:
 *         Megatron arguments converted from the HF configs (heads, query
 *         groups, kv channels, layers, hidden, ffn, norm epsilon 1e-6, rotary
 *         percent 0.25, rotary base 1e7, vocab 248320, tied or untied).
 *   [C08] a test in a public repository embedding "Qwen/Qwen3.5-0.8B@2fc06364
 *         config.json" (text_config verbatim, vision trimmed).
 *   [C2]  a loader test asserting fields of the official Qwen3.5-2B
 *         config.json, and a deployment preflight listing its expected
 *         text_config fields.
 *   [C9]  two project notes tabulating Qwen/Qwen3.5-9B/config.json.
 *   [C27] an architecture note transcribing Qwen/Qwen3.5-27B/config.json.
 *   [C35] an inventory of the Qwen3.5-35B-A3B HF snapshot ec2d4ece
 *         (config.json and tensor names).
 *   [C397] two inference tools' built-in Qwen3.5-397B-A17B configs (linear
 *         attention heads and dims; the HF file itself was not seen).
 * Family values: vocab 248320, head_dim 256, linear head dims 128, conv
 * kernel 4, rope_theta 1e7, partial_rotary_factor 0.25, rms_norm_eps 1e-6 and
 * eos_token_id 248044 hold in every size where a source shows them; where a
 * size's own source does not show one, the comment says so. */
#include "model/presets.h"

#include "common/errmsg.h"

#include <stdio.h>
#include <string.h>

#define VOCAB_QWEN35 248320
#define EOS_QWEN35 248044

/* The tiny presets: a few MB, 8 layers (6 linear + 2 full attention), every
 * head count > 1 and GQA / GVA ratios > 1 so that head indexing is tested;
 * tiny-dense ties its embeddings (like 0.8B / 2B), tiny-moe does not (like
 * 35B-A3B). */
#define TINY_COMMON                                                                           \
    .vocab_size = 512, .hidden_size = 128, .num_hidden_layers = 8,                            \
    .num_attention_heads = 4, .num_key_value_heads = 2, .head_dim = 64,                       \
    .rms_norm_eps = 1e-6, .linear_conv_kernel_dim = 4, .linear_key_head_dim = 32,             \
    .linear_value_head_dim = 32, .linear_num_key_heads = 2, .linear_num_value_heads = 4,      \
    .rope_theta = 1e7, .partial_rotary_factor = 0.25, .n_eos = 1, .eos_token_id = {511}

#define TINY_ODD_COMMON                                                                       \
    .vocab_size = 500, .hidden_size = 96, .num_hidden_layers = 4,                             \
    .num_attention_heads = 6, .num_key_value_heads = 3, .head_dim = 32,                       \
    .rms_norm_eps = 1e-6, .linear_conv_kernel_dim = 4, .linear_key_head_dim = 16,             \
    .linear_value_head_dim = 16, .linear_num_key_heads = 3, .linear_num_value_heads = 6,      \
    .rope_theta = 1e7, .partial_rotary_factor = 0.25, .n_eos = 1, .eos_token_id = {499}

/* Fields every released Qwen3.5 shares (see the family values above). */
#define QWEN35_COMMON                                                                         \
    .vocab_size = VOCAB_QWEN35, .head_dim = 256, .rms_norm_eps = 1e-6,                        \
    .linear_conv_kernel_dim = 4, .linear_key_head_dim = 128, .linear_value_head_dim = 128,    \
    .rope_theta = 1e7, .partial_rotary_factor = 0.25, .n_eos = 1, .eos_token_id = {EOS_QWEN35}

const q35_preset q35_presets[] = {
    {"tiny-dense", NULL,
     "synthetic dense, 8 layers, hidden 128, tied embeddings (1.5 M values, ~3 MB bf16)",
     {TINY_COMMON, .intermediate_size = 256, .tie_word_embeddings = 1}},
    {"tiny-moe", NULL,
     "synthetic MoE, 8 layers, 16 experts top-4 + shared expert (4.2 M values, ~8 MB bf16)",
     {TINY_COMMON, .is_moe = 1, .num_experts = 16, .num_experts_per_tok = 4,
      .moe_intermediate_size = 64, .shared_expert_intermediate_size = 64, .norm_topk_prob = 1}},
    /* Odd sizes, for tensor parallelism over 3 ranks (tests/tp_test.sh):
     * every head count divides by 3, and the vocabulary, the intermediate
     * sizes and the experts do not, so the uneven splits are run. */
    {"tiny-odd-dense", NULL, "synthetic dense, 4 layers, hidden 96, heads of 3s, vocab 500, I 100 (0.1 M values)",
     {TINY_ODD_COMMON, .intermediate_size = 100, .tie_word_embeddings = 1}},
    {"tiny-odd-moe", NULL,
     "synthetic MoE, 4 layers, hidden 96, heads of 3s, vocab 500, 10 experts top-4, I 50, shared 31 (0.3 M values)",
     {TINY_ODD_COMMON, .is_moe = 1, .num_experts = 10, .num_experts_per_tok = 4, .moe_intermediate_size = 50,
      .shared_expert_intermediate_size = 31, .norm_topk_prob = 1}},
    /* [C08] all fields; [S] agrees (heads 8, groups 2, kv 256, 24 layers,
     * hidden 1024, ffn 3584, eps 1e-6, tied).  eos: family value (the copy
     * trims token ids). */
    {"qwen3.5-0.8b", "Qwen/Qwen3.5-0.8B", "dense, 24 layers, hidden 1024, tied (~0.75 G values)",
     {QWEN35_COMMON, .hidden_size = 1024, .num_hidden_layers = 24, .intermediate_size = 3584,
      .num_attention_heads = 8, .num_key_value_heads = 2, .linear_num_key_heads = 16,
      .linear_num_value_heads = 16, .tie_word_embeddings = 1}},
    /* [C2] hidden, ffn, layers, heads, kv heads, head_dim, linear heads/dims,
     * conv, vocab, eos, rope_theta (rotary_dim 64 = 0.25 * 256); tied per
     * [C27]'s note on the small sizes.  rms_norm_eps: family value. */
    {"qwen3.5-2b", "Qwen/Qwen3.5-2B", "dense, 24 layers, hidden 2048, tied (~1.9 G values)",
     {QWEN35_COMMON, .hidden_size = 2048, .num_hidden_layers = 24, .intermediate_size = 6144,
      .num_attention_heads = 8, .num_key_value_heads = 2, .linear_num_key_heads = 16,
      .linear_num_value_heads = 16, .tie_word_embeddings = 1}},
    /* [C9] hidden, layers, ffn, heads, kv heads, head_dim, linear heads/dims,
     * conv, vocab, untied; [T] defaults agree.  rope_theta, rms_norm_eps and
     * eos: family values (not shown by the 9B sources). */
    {"qwen3.5-9b", "Qwen/Qwen3.5-9B", "dense, 32 layers, hidden 4096, untied (~9.0 G values)",
     {QWEN35_COMMON, .hidden_size = 4096, .num_hidden_layers = 32, .intermediate_size = 12288,
      .num_attention_heads = 16, .num_key_value_heads = 4, .linear_num_key_heads = 16,
      .linear_num_value_heads = 32, .tie_word_embeddings = 0}},
    /* [C27] all but eps/eos; [S] agrees (heads 24, groups 4, 64 layers,
     * hidden 5120, ffn 17408, eps 1e-6, untied).  eos: family value. */
    {"qwen3.5-27b", "Qwen/Qwen3.5-27B", "dense, 64 layers, hidden 5120, untied (~26.9 G values)",
     {QWEN35_COMMON, .hidden_size = 5120, .num_hidden_layers = 64, .intermediate_size = 17408,
      .num_attention_heads = 24, .num_key_value_heads = 4, .linear_num_key_heads = 16,
      .linear_num_value_heads = 48, .tie_word_embeddings = 0}},
    /* [C35] hidden, layers, linear heads/dims, conv, experts, top-k, expert
     * and shared sizes, vocab, rope, eos, no intermediate_size, no
     * norm_topk_prob (so the default, true); [S] heads 16, groups 2, eps
     * 1e-6, untied; [T] MoE defaults agree on everything. */
    {"qwen3.5-35b-a3b", "Qwen/Qwen3.5-35B-A3B",
     "MoE, 40 layers, hidden 2048, 256 experts top-8 (~34.7 G values)",
     {QWEN35_COMMON, .hidden_size = 2048, .num_hidden_layers = 40, .num_attention_heads = 16,
      .num_key_value_heads = 2, .linear_num_key_heads = 16, .linear_num_value_heads = 32,
      .is_moe = 1, .num_experts = 256, .num_experts_per_tok = 8, .moe_intermediate_size = 512,
      .shared_expert_intermediate_size = 512, .norm_topk_prob = 1, .tie_word_embeddings = 0}},
    /* [S] heads 32, groups 2, kv 256, 60 layers, hidden 4096, experts 512
     * top-10, expert/shared 1024, eps 1e-6, untied, vocab, rope; [C397]
     * agrees and gives linear heads 16 key / 64 value of dim 128, conv 4.
     * eos: family value. */
    {"qwen3.5-397b-a17b", "Qwen/Qwen3.5-397B-A17B",
     "MoE, 60 layers, hidden 4096, 512 experts top-10 (~396 G values)",
     {QWEN35_COMMON, .hidden_size = 4096, .num_hidden_layers = 60, .num_attention_heads = 32,
      .num_key_value_heads = 2, .linear_num_key_heads = 16, .linear_num_value_heads = 64,
      .is_moe = 1, .num_experts = 512, .num_experts_per_tok = 10, .moe_intermediate_size = 1024,
      .shared_expert_intermediate_size = 1024, .norm_topk_prob = 1, .tie_word_embeddings = 0}},
};
const int q35_n_presets = (int)(sizeof q35_presets / sizeof q35_presets[0]);

const q35_preset *q35_preset_find(const char *name)
{
    for (int i = 0; name && i < q35_n_presets; i++)
        if (strcmp(q35_presets[i].name, name) == 0)
            return &q35_presets[i];
    return NULL;
}

void q35_preset_names(char *buf, size_t n)
{
    size_t used = 0;
    if (!n)
        return;
    buf[0] = '\0';
    for (int i = 0; i < q35_n_presets && used < n; i++) {
        int k = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", q35_presets[i].name);
        if (k < 0)
            break;
        used += (size_t)k;
    }
}

int q35_preset_config(const q35_preset *p, int layers, q35_config *c, char *err, size_t errlen)
{
    const int all = p->c.num_hidden_layers;
    if (layers < 0 || layers > all) {
        q35_errmsg(err, errlen, "preset %s has %d layers; --layers must be in [1, %d], got %d",
                   p->name, all, all, layers);
        return -1;
    }
    *c = p->c;
    c->num_hidden_layers = layers ? layers : all;
    snprintf(c->architecture, sizeof c->architecture, "%s",
             c->is_moe ? "Qwen3_5MoeForConditionalGeneration" : "Qwen3_5ForConditionalGeneration");
    snprintf(c->model_type, sizeof c->model_type, "%s",
             c->is_moe ? "qwen3_5_moe_text" : "qwen3_5_text");
    c->nested = 1;
    c->layer_types_given = 1;
    c->full_attention_interval = 0;
    c->n_full_layers = c->n_linear_layers = 0;
    memset(c->layer_types, 0, sizeof c->layer_types);
    for (int i = 0; i < c->num_hidden_layers; i++) {
        const int full = (i + 1) % Q35_PRESET_FULL_ATTN_INTERVAL == 0;
        c->layer_types[i] = full ? Q35_LAYER_FULL : Q35_LAYER_LINEAR;
        c->n_full_layers += full;
        c->n_linear_layers += !full;
    }
    c->attn_output_gate = 1;
    c->norm_topk_prob = 1;
    c->mtp_num_hidden_layers = 1; /* every preset has an MTP head, as the releases (docs/mtp.md) */
    snprintf(c->rope_type, sizeof c->rope_type, "default");
    c->rotary_dim = (int)(c->head_dim * c->partial_rotary_factor + 0.5);
    return 0;
}
