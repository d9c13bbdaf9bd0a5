/* config.c - see config.h and docs/model-loading.md.
 *
 * The parser is strict about types (an integer field must be a JSON number
 * with an integral value, a flag must be a JSON bool) and names the field,
 * with its "text_config." prefix when nested, in every message. */
#include "model/config.h"

#include "common/errmsg.h"
#include "common/json_file.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Error context: messages are "<name>: <text>". */
typedef struct {
    const char *name;
    char *err;
    size_t errlen;
    const char *pfx; /* "" or "text_config." */
} ctx;

static int fail(const ctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(const ctx *x, const char *fmt, ...)
{
    if (x->err && x->errlen) {
        int n = snprintf(x->err, x->errlen, "%s: ", x->name);
        if (n < 0)
            n = 0;
        if ((size_t)n < x->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(x->err + n, x->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
        q35_errmsg_one_line(x->err); /* it quotes the file's strings */
    }
    return -1;
}

static const char *json_type(const cJSON *j)
{
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsBool(j)) return "bool";
    if (cJSON_IsNumber(j)) return "number";
    if (cJSON_IsString(j)) return "string";
    if (cJSON_IsArray(j)) return "array";
    if (cJSON_IsObject(j)) return "object";
    return "invalid";
}

static const cJSON *get(const cJSON *obj, const char *key)
{
    return obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
}

/* A number that is an integer in [lo, hi]; 0 ok. */
static int as_int(const ctx *x, const char *pfx, const char *key, const cJSON *j, long lo, long hi,
                  int *out)
{
    if (!cJSON_IsNumber(j))
        return fail(x, "field '%s%s' must be an integer, got %s", pfx, key, json_type(j));
    double v = j->valuedouble;
    if (v != floor(v) || !isfinite(v))
        return fail(x, "field '%s%s' must be an integer, got %g", pfx, key, v);
    if (v < (double)lo || v > (double)hi)
        return fail(x, "field '%s%s' must be in [%ld, %ld], got %.0f", pfx, key, lo, hi, v);
    *out = (int)v;
    return 0;
}

/* Integer field of obj: required (missing = error) or default def. */
static int get_int(const ctx *x, const cJSON *obj, const char *key, int required, int def, long lo,
                   long hi, int *out)
{
    const cJSON *j = get(obj, key);
    if (!j) {
        if (required)
            return fail(x, "missing required field '%s%s'", x->pfx, key);
        *out = def;
        return 0;
    }
    return as_int(x, x->pfx, key, j, lo, hi, out);
}

static int get_pos(const ctx *x, const cJSON *obj, const char *key, int *out)
{
    return get_int(x, obj, key, 1, 0, 1, 1L << 30, out);
}

static int get_bool(const ctx *x, const cJSON *obj, const char *pfx, const char *key, int def,
                    int *out)
{
    const cJSON *j = get(obj, key);
    if (!j) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(j))
        return fail(x, "field '%s%s' must be true or false, got %s", pfx, key, json_type(j));
    *out = cJSON_IsTrue(j) ? 1 : 0;
    return 0;
}

/* Number > 0 (and <= hi).  present = NULL makes the field required. */
static int get_real(const ctx *x, const cJSON *obj, const char *pfx, const char *key, double hi,
                    int *present, double *out)
{
    const cJSON *j = get(obj, key);
    if (!j) {
        if (!present)
            return fail(x, "missing required field '%s%s'", pfx, key);
        *present = 0;
        return 0;
    }
    if (!cJSON_IsNumber(j))
        return fail(x, "field '%s%s' must be a number, got %s", pfx, key, json_type(j));
    double v = j->valuedouble;
    if (!isfinite(v) || v <= 0 || v > hi)
        return fail(x, "field '%s%s' must be in (0, %g], got %g", pfx, key, hi, v);
    if (present)
        *present = 1;
    *out = v;
    return 0;
}

static int get_str(const ctx *x, const cJSON *obj, const char *pfx, const char *key, char *buf,
                   size_t n)
{
    const cJSON *j = get(obj, key);
    if (!j)
        return 0;
    if (!cJSON_IsString(j))
        return fail(x, "field '%s%s' must be a string, got %s", pfx, key, json_type(j));
    if (strlen(j->valuestring) >= n)
        return fail(x, "field '%s%s' is too long (\"%.40s...\")", pfx, key, j->valuestring);
    snprintf(buf, n, "%s", j->valuestring);
    return 0;
}

static const char *const known_arch[] = {
    "Qwen3_5ForCausalLM", "Qwen3_5MoeForCausalLM",
    "Qwen3_5ForConditionalGeneration", "Qwen3_5MoeForConditionalGeneration",
};
static const char *const known_text_types[] = {"qwen3_5_text", "qwen3_5_moe_text"};
static const char *const known_top_types[] = {"qwen3_5", "qwen3_5_moe"};

static int in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return 1;
    return 0;
}
#define IN(s, list) in_list((s), (list), sizeof(list) / sizeof((list)[0]))

/* Decide flat vs nested, the architecture and the decoder's model_type. */
static int read_identity(const ctx *x, const cJSON *root, q35_config *c, const cJSON **text)
{
    const cJSON *arch = get(root, "architectures");
    if (arch) {
        if (!cJSON_IsArray(arch) || cJSON_GetArraySize(arch) < 1)
            return fail(x, "field 'architectures' must be a non-empty array of strings");
        const cJSON *a0 = cJSON_GetArrayItem(arch, 0);
        if (!cJSON_IsString(a0))
            return fail(x, "field 'architectures[0]' must be a string, got %s", json_type(a0));
        if (!IN(a0->valuestring, known_arch))
            return fail(x, "field 'architectures' names '%.60s', not a Qwen3.5 model "
                           "(expected Qwen3_5ForCausalLM, Qwen3_5MoeForCausalLM, "
                           "Qwen3_5ForConditionalGeneration or Qwen3_5MoeForConditionalGeneration)",
                        a0->valuestring);
        snprintf(c->architecture, sizeof c->architecture, "%s", a0->valuestring);
    }
    const cJSON *tc = get(root, "text_config");
    int arch_nested = strstr(c->architecture, "ConditionalGeneration") != NULL;
    if (tc && !cJSON_IsObject(tc))
        return fail(x, "field 'text_config' must be an object, got %s", json_type(tc));
    if (arch_nested && !tc)
        return fail(x, "missing required field 'text_config' (architecture %s)", c->architecture);
    c->nested = tc != NULL;
    *text = tc ? tc : root;

    char top_type[32] = "";
    if (get_str(x, root, "", "model_type", top_type, sizeof top_type))
        return -1;
    if (c->nested) {
        if (top_type[0] && !IN(top_type, known_top_types))
            return fail(x, "field 'model_type' is '%s', expected qwen3_5 or qwen3_5_moe", top_type);
        if (get_str(x, tc, "text_config.", "model_type", c->model_type, sizeof c->model_type))
            return -1;
        if (!c->model_type[0] && top_type[0])
            snprintf(c->model_type, sizeof c->model_type, "%s",
                     strcmp(top_type, "qwen3_5_moe") == 0 ? "qwen3_5_moe_text" : "qwen3_5_text");
    } else {
        snprintf(c->model_type, sizeof c->model_type, "%s", top_type);
    }
    if (c->model_type[0] && !IN(c->model_type, known_text_types))
        return fail(x, "field '%smodel_type' is '%s', expected qwen3_5_text or qwen3_5_moe_text",
                    c->nested ? "text_config." : "", c->model_type);
    if (!c->model_type[0] && !c->architecture[0])
        return fail(x, "missing required field 'architectures' (or 'model_type'): "
                       "cannot tell which model this is");
    int moe_arch = strstr(c->architecture, "Moe") != NULL;
    int moe_type = strstr(c->model_type, "moe") != NULL;
    if (c->architecture[0] && c->model_type[0] && moe_arch != moe_type)
        return fail(x, "field 'architectures' (%s) and field 'model_type' (%s) disagree on MoE",
                    c->architecture, c->model_type);
    c->is_moe = c->architecture[0] ? moe_arch : moe_type;
    if (!c->model_type[0])
        snprintf(c->model_type, sizeof c->model_type, "%s",
                 c->is_moe ? "qwen3_5_moe_text" : "qwen3_5_text");
    return 0;
}

static int read_layer_types(const ctx *x, const cJSON *t, q35_config *c)
{
    const cJSON *lt = get(t, "layer_types");
    int n = c->num_hidden_layers;
    if (lt && !cJSON_IsNull(lt)) {
        if (!cJSON_IsArray(lt))
            return fail(x, "field '%slayer_types' must be an array, got %s", x->pfx, json_type(lt));
        int m = cJSON_GetArraySize(lt);
        if (m != n)
            return fail(x, "field '%slayer_types' has %d entries but num_hidden_layers is %d",
                        x->pfx, m, n);
        for (int i = 0; i < n; i++) {
            const cJSON *e = cJSON_GetArrayItem(lt, i);
            if (cJSON_IsString(e) && strcmp(e->valuestring, "linear_attention") == 0)
                c->layer_types[i] = Q35_LAYER_LINEAR;
            else if (cJSON_IsString(e) && strcmp(e->valuestring, "full_attention") == 0)
                c->layer_types[i] = Q35_LAYER_FULL;
            else
                return fail(x, "field '%slayer_types[%d]' is %s%.40s%s, expected \"linear_attention\" "
                               "or \"full_attention\"",
                            x->pfx, i, cJSON_IsString(e) ? "\"" : "",
                            cJSON_IsString(e) ? e->valuestring : json_type(e),
                            cJSON_IsString(e) ? "\"" : "");
        }
        c->layer_types_given = 1;
    } else {
        /* transformers: layer i is full iff (i + 1) % interval == 0, interval default 4 */
        if (get_int(x, t, "full_attention_interval", 0, 4, 1, Q35_MAX_LAYERS,
                    &c->full_attention_interval))
            return -1;
        for (int i = 0; i < n; i++)
            c->layer_types[i] = (i + 1) % c->full_attention_interval == 0 ? Q35_LAYER_FULL
                                                                          : Q35_LAYER_LINEAR;
    }
    for (int i = 0; i < n; i++) {
        c->n_full_layers += c->layer_types[i] == Q35_LAYER_FULL;
        c->n_linear_layers += c->layer_types[i] == Q35_LAYER_LINEAR;
    }
    return 0;
}

/* rope_parameters wins over legacy rope_scaling, which wins over legacy
 * top-level rope_theta / partial_rotary_factor. */
static int read_rope(const ctx *x, const cJSON *t, q35_config *c)
{
    char pp[64], sp[64];
    snprintf(pp, sizeof pp, "%srope_parameters.", x->pfx);
    snprintf(sp, sizeof sp, "%srope_scaling.", x->pfx);
    const cJSON *rp = get(t, "rope_parameters"), *rs = get(t, "rope_scaling");
    if (rp && cJSON_IsNull(rp))
        rp = NULL;
    if (rs && cJSON_IsNull(rs))
        rs = NULL;
    if (rp && !cJSON_IsObject(rp))
        return fail(x, "field '%srope_parameters' must be an object, got %s", x->pfx, json_type(rp));
    if (rs && !cJSON_IsObject(rs))
        return fail(x, "field '%srope_scaling' must be an object, got %s", x->pfx, json_type(rs));

    const struct { const cJSON *o; const char *pfx; } src[3] = {{rp, pp}, {rs, sp}, {t, x->pfx}};
    int have_theta = 0, have_prf = 0;
    for (int s = 0; s < 3; s++) {
        if (!src[s].o)
            continue;
        int p = 0;
        double v = 0;
        if (!have_theta) {
            if (get_real(x, src[s].o, src[s].pfx, "rope_theta", 1e12, &p, &v))
                return -1;
            if (p)
                have_theta = 1, c->rope_theta = v;
        }
        if (!have_prf) {
            if (get_real(x, src[s].o, src[s].pfx, "partial_rotary_factor", 1.0, &p, &v))
                return -1;
            if (p)
                have_prf = 1, c->partial_rotary_factor = v;
        }
        if (s < 2 && !c->rope_type[0]) {
            if (get_str(x, src[s].o, src[s].pfx, "rope_type", c->rope_type, sizeof c->rope_type))
                return -1;
            if (!c->rope_type[0] &&
                get_str(x, src[s].o, src[s].pfx, "type", c->rope_type, sizeof c->rope_type))
                return -1;
        }
    }
    if (!have_theta)
        return fail(x, "missing required field '%srope_parameters.rope_theta' (or legacy '%srope_theta')",
                    x->pfx, x->pfx);
    if (!have_prf)
        c->partial_rotary_factor = 0.25;
    if (!c->rope_type[0])
        snprintf(c->rope_type, sizeof c->rope_type, "default");
    if (strcmp(c->rope_type, "default") != 0)
        return fail(x, "field '%srope_parameters.rope_type' is '%s'; only \"default\" is supported",
                    x->pfx, c->rope_type);

    double r = c->head_dim * c->partial_rotary_factor;
    if (fabs(r - nearbyint(r)) > 1e-6)
        return fail(x, "rotary_dim = head_dim %d * partial_rotary_factor %g = %g is not an integer",
                    c->head_dim, c->partial_rotary_factor, r);
    c->rotary_dim = (int)nearbyint(r);
    if (c->rotary_dim < 2 || c->rotary_dim % 2 || c->rotary_dim > c->head_dim)
        return fail(x, "rotary_dim = head_dim %d * partial_rotary_factor %g = %d must be even, "
                       ">= 2 and <= head_dim",
                    c->head_dim, c->partial_rotary_factor, c->rotary_dim);
    return 0;
}

/* eos_token_id: int, array of ints, or null/absent.  Decoder section first. */
static int read_eos(const ctx *x, const cJSON *root, const cJSON *t, q35_config *c)
{
    const char *pfx = x->pfx;
    const cJSON *e = get(t, "eos_token_id");
    if (!e && t != root)
        e = get(root, "eos_token_id"), pfx = "";
    if (!e || cJSON_IsNull(e))
        return 0;
    if (cJSON_IsNumber(e)) {
        c->n_eos = 1;
        return as_int(x, pfx, "eos_token_id", e, 0, c->vocab_size - 1, &c->eos_token_id[0]);
    }
    if (!cJSON_IsArray(e))
        return fail(x, "field '%seos_token_id' must be an integer or an array of integers, got %s",
                    pfx, json_type(e));
    int n = cJSON_GetArraySize(e);
    if (n > Q35_MAX_EOS)
        return fail(x, "field '%seos_token_id' has %d entries (at most %d)", pfx, n, Q35_MAX_EOS);
    for (int i = 0; i < n; i++)
        if (as_int(x, pfx, "eos_token_id[]", cJSON_GetArrayItem(e, i), 0, c->vocab_size - 1,
                   &c->eos_token_id[i]))
            return -1;
    c->n_eos = n;
    return 0;
}

/* Each field may be up to 2^30, but the model computes the rows of its
 * projections in int (docs/model.md): products of fields that exceed
 * INT_MAX are refused here, before any of that arithmetic can overflow. */
static int check_derived_sizes(const ctx *x, const q35_config *c)
{
    const struct { const char *what; long long v; } d[] = {
        {"2 x num_attention_heads x head_dim (q_proj rows, query and gate)",
         2LL * c->num_attention_heads * c->head_dim},
        {"num_key_value_heads x head_dim (k_proj rows)", (long long)c->num_key_value_heads * c->head_dim},
        {"2 x linear_num_key_heads x linear_key_head_dim + linear_num_value_heads x linear_value_head_dim "
         "(in_proj_qkv rows)",
         2LL * c->linear_num_key_heads * c->linear_key_head_dim +
             (long long)c->linear_num_value_heads * c->linear_value_head_dim},
        {"2 x moe_intermediate_size (fused gate_up rows)", 2LL * c->moe_intermediate_size},
        {"2 x intermediate_size (gate and up rows)", 2LL * c->intermediate_size},
    };
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
        if (d[i].v > INT_MAX)
            return fail(x, "%s = %lld is more than %d%s", d[i].what, d[i].v, INT_MAX,
                        *x->pfx ? " (fields of text_config)" : "");
    return 0;
}

static int parse_root(const ctx *x0, const cJSON *root, q35_config *c)
{
    ctx xv = *x0;
    ctx *x = &xv;
    if (!cJSON_IsObject(root))
        return fail(x, "top level must be a JSON object, got %s", json_type(root));
    const cJSON *t = root;
    if (read_identity(x, root, c, &t))
        return -1;
    x->pfx = c->nested ? "text_config." : "";

    if (get_pos(x, t, "vocab_size", &c->vocab_size) || get_pos(x, t, "hidden_size", &c->hidden_size) ||
        get_int(x, t, "num_hidden_layers", 1, 0, 1, Q35_MAX_LAYERS, &c->num_hidden_layers) ||
        read_layer_types(x, t, c) ||
        get_pos(x, t, "num_attention_heads", &c->num_attention_heads) ||
        get_pos(x, t, "num_key_value_heads", &c->num_key_value_heads) ||
        get_pos(x, t, "head_dim", &c->head_dim) ||
        get_bool(x, t, x->pfx, "attn_output_gate", 1, &c->attn_output_gate) ||
        get_real(x, t, x->pfx, "rms_norm_eps", 1.0, NULL, &c->rms_norm_eps) ||
        get_pos(x, t, "linear_conv_kernel_dim", &c->linear_conv_kernel_dim) ||
        get_pos(x, t, "linear_key_head_dim", &c->linear_key_head_dim) ||
        get_pos(x, t, "linear_value_head_dim", &c->linear_value_head_dim) ||
        get_pos(x, t, "linear_num_key_heads", &c->linear_num_key_heads) ||
        get_pos(x, t, "linear_num_value_heads", &c->linear_num_value_heads))
        return -1;

    if (c->is_moe) {
        if (get_int(x, t, "intermediate_size", 0, 0, 1, 1L << 30, &c->intermediate_size) ||
            get_pos(x, t, "num_experts", &c->num_experts) ||
            get_pos(x, t, "num_experts_per_tok", &c->num_experts_per_tok) ||
            get_pos(x, t, "moe_intermediate_size", &c->moe_intermediate_size) ||
            get_pos(x, t, "shared_expert_intermediate_size", &c->shared_expert_intermediate_size) ||
            get_bool(x, t, x->pfx, "norm_topk_prob", 1, &c->norm_topk_prob))
            return -1;
        if (c->num_experts_per_tok > c->num_experts)
            return fail(x, "field '%snum_experts_per_tok' (%d) exceeds '%snum_experts' (%d)", x->pfx,
                        c->num_experts_per_tok, x->pfx, c->num_experts);
    } else {
        if (get_pos(x, t, "intermediate_size", &c->intermediate_size))
            return -1;
    }

    /* tie_word_embeddings: the top level wins (it is what transformers'
     * Qwen3_5Config reads for the nested form); text_config's is the fallback. */
    int tie_top = -1, tie_text = -1;
    if (get_bool(x, root, "", "tie_word_embeddings", -1, &tie_top))
        return -1;
    if (t != root && get_bool(x, t, "text_config.", "tie_word_embeddings", -1, &tie_text))
        return -1;
    c->tie_word_embeddings = tie_top >= 0 ? tie_top : tie_text >= 0 ? tie_text : 0;

    /* the multi-token-prediction head (docs/mtp.md): the released configs say 1 */
    if (get_int(x, t, "mtp_num_hidden_layers", 0, 0, 0, Q35_MAX_LAYERS, &c->mtp_num_hidden_layers))
        return -1;

    if (c->num_attention_heads % c->num_key_value_heads)
        return fail(x, "field '%snum_attention_heads' (%d) is not a multiple of "
                       "'%snum_key_value_heads' (%d)",
                    x->pfx, c->num_attention_heads, x->pfx, c->num_key_value_heads);
    if (c->linear_num_value_heads % c->linear_num_key_heads)
        return fail(x, "field '%slinear_num_value_heads' (%d) is not a multiple of "
                       "'%slinear_num_key_heads' (%d)",
                    x->pfx, c->linear_num_value_heads, x->pfx, c->linear_num_key_heads);
    if (read_rope(x, t, c) || read_eos(x, root, t, c))
        return -1;
    return check_derived_sizes(x, c);
}

int q35_config_parse(const char *json, size_t len, const char *name, q35_config *c, char *err,
                     size_t errlen)
{
    ctx x = {name ? name : "config", err, errlen, ""};
    memset(c, 0, sizeof *c);
    if (len > Q35_CONFIG_MAX_BYTES)
        return fail(&x, "%zu bytes is too large for a config (limit %u)", len, Q35_CONFIG_MAX_BYTES);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        size_t off = end && end >= json ? (size_t)(end - json) : 0;
        return fail(&x, "not valid JSON (parse error at byte %zu)", off);
    }
    int rc = parse_root(&x, root, c);
    cJSON_Delete(root);
    if (rc)
        memset(c, 0, sizeof *c);
    return rc;
}

int q35_config_load(const char *dir, q35_config *c, char *err, size_t errlen)
{
    char path[4096];
    memset(c, 0, sizeof *c);
    ctx x = {dir, err, errlen, ""};
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return fail(&x, "directory name too long");
    /* a wrong folder is said as such, not as a missing DIR/config.json */
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return fail(&x, "cannot open model folder: %s", strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return fail(&x, "not a folder (a model is a folder holding config.json and model.safetensors)");
    size_t n;
    char *buf = q35_read_file_bounded(path, Q35_CONFIG_MAX_BYTES, &n, err, errlen);
    if (!buf)
        return -1;
    const int rc = q35_config_parse(buf, n, path, c, err, errlen);
    free(buf);
    return rc;
}

const char *q35_layer_type_name(q35_layer_type t)
{
    return t == Q35_LAYER_FULL ? "full_attention" : "linear_attention";
}

void q35_config_print(const q35_config *c, FILE *f)
{
    fprintf(f, "model        %s (%s%s)\n", c->architecture[0] ? c->architecture : "-", c->model_type,
            c->nested ? ", fields from text_config" : "");
    fprintf(f, "vocab        %d, hidden %d, layers %d (%d linear, %d full)%s\n", c->vocab_size,
            c->hidden_size, c->num_hidden_layers, c->n_linear_layers, c->n_full_layers,
            c->tie_word_embeddings ? ", tied embeddings" : "");
    fprintf(f, "layer types  ");
    for (int i = 0; i < c->num_hidden_layers; i++)
        fputc(c->layer_types[i] == Q35_LAYER_FULL ? 'F' : 'L', f);
    if (c->layer_types_given)
        fprintf(f, "  (from layer_types)\n");
    else
        fprintf(f, "  (every %d-th full)\n", c->full_attention_interval);
    fprintf(f, "attention    %d heads, %d kv heads, head_dim %d, output gate %s, rope %s theta %g, "
               "rotary_dim %d (factor %g)\n",
            c->num_attention_heads, c->num_key_value_heads, c->head_dim,
            c->attn_output_gate ? "on" : "off", c->rope_type, c->rope_theta, c->rotary_dim,
            c->partial_rotary_factor);
    fprintf(f, "deltanet     %d key heads x %d, %d value heads x %d, conv kernel %d\n",
            c->linear_num_key_heads, c->linear_key_head_dim, c->linear_num_value_heads,
            c->linear_value_head_dim, c->linear_conv_kernel_dim);
    if (c->is_moe)
        fprintf(f, "mlp          MoE: %d experts, top-%d%s, expert %d, shared expert %d\n",
                c->num_experts, c->num_experts_per_tok, c->norm_topk_prob ? " (renormalized)" : "",
                c->moe_intermediate_size, c->shared_expert_intermediate_size);
    else
        fprintf(f, "mlp          dense, intermediate %d\n", c->intermediate_size);
    fprintf(f, "norm eps     %g; eos", c->rms_norm_eps);
    if (!c->n_eos)
        fprintf(f, " none");
    for (int i = 0; i < c->n_eos; i++)
        fprintf(f, " %d", c->eos_token_id[i]);
    fputc('\n', f);
}
