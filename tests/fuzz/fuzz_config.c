/* libFuzzer target: config.json (model/config.h) on any bytes.  Its promise:
 * a config it accepts describes a decoder the model can be built for (sizes
 * positive, head counts that divide, layer types that add up, a rotary
 * dimension inside the head) and whose sizes the model's int arithmetic can
 * hold; otherwise a one-line message. */
#include "model/config.h"
#include "model/model.h"
#include "tests/fuzz/fuzz_input.h"

#include <limits.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    q35_config c;
    char err[512];
    if (q35_config_parse((const char *)data, size, "config.json", &c, err, sizeof err)) {
        fuzz_check_message(err, sizeof err);
        return 0;
    }
    FUZZ_PROMISE(c.vocab_size > 0 && c.hidden_size > 0 && c.num_hidden_layers > 0);
    FUZZ_PROMISE(c.num_hidden_layers <= Q35_MAX_LAYERS);
    int full = 0;
    for (int l = 0; l < c.num_hidden_layers; l++) {
        FUZZ_PROMISE(c.layer_types[l] == Q35_LAYER_LINEAR || c.layer_types[l] == Q35_LAYER_FULL);
        full += c.layer_types[l] == Q35_LAYER_FULL;
    }
    FUZZ_PROMISE(full == c.n_full_layers && c.n_full_layers + c.n_linear_layers == c.num_hidden_layers);
    FUZZ_PROMISE(c.num_attention_heads > 0 && c.num_key_value_heads > 0 && c.head_dim > 0);
    FUZZ_PROMISE(c.num_attention_heads % c.num_key_value_heads == 0);
    FUZZ_PROMISE(c.linear_num_key_heads > 0 && c.linear_num_value_heads % c.linear_num_key_heads == 0);
    FUZZ_PROMISE(c.rotary_dim >= 0 && c.rotary_dim % 2 == 0 && c.rotary_dim <= c.head_dim);
    FUZZ_PROMISE(c.linear_conv_kernel_dim > 0 && c.linear_key_head_dim > 0 && c.linear_value_head_dim > 0);
    FUZZ_PROMISE(c.rms_norm_eps > 0 && c.rope_theta > 0);
    if (c.is_moe)
        FUZZ_PROMISE(c.num_experts > 0 && c.num_experts_per_tok > 0 && c.num_experts_per_tok <= c.num_experts &&
                     c.moe_intermediate_size > 0 && c.shared_expert_intermediate_size > 0);
    else
        FUZZ_PROMISE(c.intermediate_size > 0);
    /* The rows of every projection are computed in int (docs/model.md):
     * the q projection with its gate, the conv channels, the value width. */
    const long long qrows = 2LL * c.num_attention_heads * c.head_dim;
    const long long conv = 2LL * c.linear_num_key_heads * c.linear_key_head_dim +
                           (long long)c.linear_num_value_heads * c.linear_value_head_dim;
    FUZZ_PROMISE(qrows <= INT_MAX && conv <= INT_MAX && conv == q35_conv_channels(&c));
    FUZZ_PROMISE((long long)c.num_key_value_heads * c.head_dim <= INT_MAX);
    if (c.is_moe) FUZZ_PROMISE(2LL * c.moe_intermediate_size <= INT_MAX);
    return 0;
}
