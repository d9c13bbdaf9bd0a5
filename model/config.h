/* config.h - the text-decoder configuration of a Hugging Face Qwen3.5 model.
 *
 * q35_config_load reads DIR/config.json in either form transformers writes:
 *   flat    Qwen3_5ForCausalLM (model_type "qwen3_5_text" / "qwen3_5_moe_text"),
 *           every field at the top level;
 *   nested  Qwen3_5ForConditionalGeneration / Qwen3_5MoeForConditionalGeneration
 *           (model_type "qwen3_5" / "qwen3_5_moe"), decoder fields inside
 *           "text_config", tie_word_embeddings at the top level.
 * docs/model-loading.md lists the fields, the defaults and what is validated.
 *
 * Functions returning int give 0 on success and -1 on failure; the message
 * (one line, naming the file and the field) goes to err (err may be NULL).
 */
#ifndef Q35LAB_MODEL_CONFIG_H
#define Q35LAB_MODEL_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#define Q35_MAX_LAYERS 512               /* num_hidden_layers above this is rejected */
#define Q35_MAX_EOS 16                   /* eos_token_id arrays longer than this are rejected */
#define Q35_CONFIG_MAX_BYTES (1u << 20)  /* config.json larger than 1 MiB is rejected */

typedef enum { Q35_LAYER_LINEAR = 0, Q35_LAYER_FULL = 1 } q35_layer_type;

typedef struct {
    /* where it came from */
    char architecture[64];     /* architectures[0], or "" if absent */
    char model_type[32];       /* of the decoder: "qwen3_5_text" / "qwen3_5_moe_text" */
    int nested;                /* 1 if the fields were read from "text_config" */

    int vocab_size;
    int hidden_size;
    int num_hidden_layers;
    unsigned char layer_types[Q35_MAX_LAYERS];  /* q35_layer_type per layer */
    int layer_types_given;     /* 1: from "layer_types"; 0: from full_attention_interval */
    int full_attention_interval; /* the interval used (0 if layer_types was given) */
    int n_full_layers, n_linear_layers;

    /* full (gated) attention */
    int num_attention_heads;
    int num_key_value_heads;
    int head_dim;
    int attn_output_gate;      /* default 1: Qwen3.5 always gates the attention output */
    double rms_norm_eps;

    /* Gated DeltaNet (linear attention) */
    int linear_conv_kernel_dim;
    int linear_key_head_dim;
    int linear_value_head_dim;
    int linear_num_key_heads;
    int linear_num_value_heads;

    /* MLP: dense, or sparse MoE with a shared expert */
    int intermediate_size;     /* required when dense; 0 if absent for MoE */
    int is_moe;
    int num_experts;
    int num_experts_per_tok;
    int moe_intermediate_size;
    int shared_expert_intermediate_size;
    int norm_topk_prob;        /* default 1 */

    int tie_word_embeddings;   /* default 0; see docs/model-loading.md for precedence */

    int mtp_num_hidden_layers; /* decoder layers of the MTP head (docs/mtp.md); 0 if absent */

    /* RoPE */
    char rope_type[32];        /* "default" (the only type accepted) */
    double rope_theta;
    double partial_rotary_factor; /* default 0.25, as transformers */
    int rotary_dim;            /* head_dim * partial_rotary_factor, even, <= head_dim */

    int n_eos;                 /* 0 if eos_token_id is absent or null */
    int eos_token_id[Q35_MAX_EOS];
} q35_config;

/* Reads and validates DIR/config.json.  On failure *c is zeroed. */
int q35_config_load(const char *dir, q35_config *c, char *err, size_t errlen);

/* Same from a JSON text of len bytes; name is used in messages. */
int q35_config_parse(const char *json, size_t len, const char *name, q35_config *c,
                     char *err, size_t errlen);

/* One readable block, several lines. */
void q35_config_print(const q35_config *c, FILE *f);

const char *q35_layer_type_name(q35_layer_type t); /* "linear_attention" / "full_attention" */

#endif /* Q35LAB_MODEL_CONFIG_H */
