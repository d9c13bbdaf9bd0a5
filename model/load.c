/* load.c - a Hugging Face Qwen3.5 folder into a q35_model (model/model.h).
 *
 * Three passes, so that nothing is allocated or computed for a folder that
 * cannot be run:
 *   1. plan: from the config, the list of tensors the model needs, each with
 *      its expected shape and the slot (destination array) it fills;
 *   2. check: every tensor is present with that rank, shape and a float dtype;
 *      the in-memory matrix dtype follows from the stored ones;
 *   3. copy: one huge-page arena, each slot 64-byte aligned, converted exactly
 *      (BF16/F16 -> F32 widening is exact; F32 -> BF16 never happens).
 * MoE experts stored per expert are gathered into the fused layout, so the
 * rest of the model sees one layout (model.h).
 */
#include "common/errmsg.h"
#include "common/huge_pages.h"
#include "model/model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct {
    char name[160];
    int ndim;
    int64_t shape[3];
    int slot;
    size_t offset;         /* elements into the slot */
    const st_tensor *t;    /* found in pass 2 */
} tensor_spec;

typedef struct {
    const void **where;    /* the q35_model / q35_layer field this slot sets */
    size_t elems;
    int matrix;            /* matrices keep the model dtype; vectors are F32 */
    int n_parts;           /* tensors filling it (1, or 2E+E for per-expert MoE) */
    const void *mapped;    /* pass 3: pointer into the file map, if used in place */
    size_t arena_off;
} slot_spec;

typedef struct {
    tensor_spec *t;  int nt, capt;
    slot_spec *s;    int ns, caps;
    int failed;
} plan;

static int new_slot(plan *p, const void **where, size_t elems, int matrix)
{
    if (p->ns == p->caps) {
        int cap = p->caps ? 2 * p->caps : 64;
        slot_spec *s = realloc(p->s, (size_t)cap * sizeof *s);
        if (!s) { p->failed = 1; return -1; }
        p->s = s;  p->caps = cap;
    }
    p->s[p->ns] = (slot_spec){.where = where, .elems = elems, .matrix = matrix};
    return p->ns++;
}

static void add_part(plan *p, int slot, size_t offset, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void add_part(plan *p, int slot, size_t offset, int ndim, const int64_t *shape, const char *fmt, ...)
{
    if (slot < 0) return;
    if (p->nt == p->capt) {
        int cap = p->capt ? 2 * p->capt : 256;
        tensor_spec *t = realloc(p->t, (size_t)cap * sizeof *t);
        if (!t) { p->failed = 1; return; }
        p->t = t;  p->capt = cap;
    }
    tensor_spec *t = &p->t[p->nt++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->slot = slot;
    t->offset = offset;
    p->s[slot].n_parts++;
}

/* One tensor filling one slot. */
static void add_whole(plan *p, const void **where, int matrix, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void add_whole(plan *p, const void **where, int matrix, int ndim, const int64_t *shape, const char *fmt, ...)
{
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    size_t elems = 1;
    for (int i = 0; i < ndim; i++) elems *= (size_t)shape[i];
    add_part(p, new_slot(p, where, elems, matrix), 0, ndim, shape, "%s", name);
}

#define MAT2(where, r, c, ...) add_whole(p, (const void **)(where), 1, 2, (int64_t[]){(r), (c)}, __VA_ARGS__)
#define VEC(where, n, ...) add_whole(p, (const void **)(where), 0, 1, (int64_t[]){(n)}, __VA_ARGS__)

static void plan_moe(plan *p, const q35_config *c, q35_layer *L, int i, int fused)
{
    const int64_t H = c->hidden_size, E = c->num_experts, I = c->moe_intermediate_size;
    const int64_t Is = c->shared_expert_intermediate_size;
    MAT2(&L->router, E, H, "layers.%d.%s", i, "mlp.gate.weight");
    if (fused) {
        add_whole(p, &L->experts_gate_up, 1, 3, (int64_t[]){E, 2 * I, H}, "layers.%d.%s", i,
                  "mlp.experts.gate_up_proj");
        add_whole(p, &L->experts_down, 1, 3, (int64_t[]){E, H, I}, "layers.%d.%s", i, "mlp.experts.down_proj");
    } else {
        int gu = new_slot(p, &L->experts_gate_up, (size_t)(E * 2 * I * H), 1);
        int dn = new_slot(p, &L->experts_down, (size_t)(E * H * I), 1);
        for (int64_t e = 0; e < E; e++) {
            add_part(p, gu, (size_t)(e * 2 * I * H), 2, (int64_t[]){I, H}, "layers.%d.mlp.experts.%lld.gate_proj.weight",
                     i, (long long)e);
            add_part(p, gu, (size_t)((e * 2 + 1) * I * H), 2, (int64_t[]){I, H},
                     "layers.%d.mlp.experts.%lld.up_proj.weight", i, (long long)e);
            add_part(p, dn, (size_t)(e * H * I), 2, (int64_t[]){H, I}, "layers.%d.mlp.experts.%lld.down_proj.weight",
                     i, (long long)e);
        }
    }
    if (Is > 0) {
        MAT2(&L->shared_gate, Is, H, "layers.%d.%s", i, "mlp.shared_expert.gate_proj.weight");
        MAT2(&L->shared_up, Is, H, "layers.%d.%s", i, "mlp.shared_expert.up_proj.weight");
        MAT2(&L->shared_down, H, Is, "layers.%d.%s", i, "mlp.shared_expert.down_proj.weight");
        MAT2(&L->shared_expert_gate, 1, H, "layers.%d.%s", i, "mlp.shared_expert_gate.weight");
    }
}

static void plan_model(plan *p, const q35_config *c, q35_model *m, int moe_fused)
{
    const int64_t H = c->hidden_size, V = c->vocab_size;
    const int64_t Hk = c->linear_num_key_heads, Hv = c->linear_num_value_heads;
    const int64_t Dk = c->linear_key_head_dim, Dv = c->linear_value_head_dim, K = c->linear_conv_kernel_dim;
    const int64_t nh = c->num_attention_heads, nkv = c->num_key_value_heads, hd = c->head_dim;
    MAT2(&m->embed, V, H, "%s", "embed_tokens.weight");
    VEC(&m->final_norm, H, "%s", "norm.weight");
    if (!c->tie_word_embeddings) MAT2(&m->lm_head, V, H, "%s", "lm_head.weight");
    for (int i = 0; i < c->num_hidden_layers; i++) {
        q35_layer *L = &m->layers[i];
        VEC(&L->input_norm, H, "layers.%d.%s", i, "input_layernorm.weight");
        VEC(&L->post_norm, H, "layers.%d.%s", i, "post_attention_layernorm.weight");
        if (c->layer_types[i] == Q35_LAYER_LINEAR) {
            MAT2(&L->in_proj_qkv, 2 * Hk * Dk + Hv * Dv, H, "layers.%d.%s", i, "linear_attn.in_proj_qkv.weight");
            MAT2(&L->in_proj_z, Hv * Dv, H, "layers.%d.%s", i, "linear_attn.in_proj_z.weight");
            MAT2(&L->in_proj_b, Hv, H, "layers.%d.%s", i, "linear_attn.in_proj_b.weight");
            MAT2(&L->in_proj_a, Hv, H, "layers.%d.%s", i, "linear_attn.in_proj_a.weight");
            MAT2(&L->out_proj, H, Hv * Dv, "layers.%d.%s", i, "linear_attn.out_proj.weight");
            add_whole(p, (const void **)&L->conv_w, 0, 3, (int64_t[]){2 * Hk * Dk + Hv * Dv, 1, K}, "layers.%d.%s", i,
                      "linear_attn.conv1d.weight");
            VEC(&L->dt_bias, Hv, "layers.%d.%s", i, "linear_attn.dt_bias");
            VEC(&L->A_log, Hv, "layers.%d.%s", i, "linear_attn.A_log");
            VEC(&L->gnorm, Dv, "layers.%d.%s", i, "linear_attn.norm.weight");
        } else {
            MAT2(&L->q_proj, 2 * nh * hd, H, "layers.%d.%s", i, "self_attn.q_proj.weight");
            MAT2(&L->k_proj, nkv * hd, H, "layers.%d.%s", i, "self_attn.k_proj.weight");
            MAT2(&L->v_proj, nkv * hd, H, "layers.%d.%s", i, "self_attn.v_proj.weight");
            MAT2(&L->o_proj, H, nh * hd, "layers.%d.%s", i, "self_attn.o_proj.weight");
            VEC(&L->q_norm, hd, "layers.%d.%s", i, "self_attn.q_norm.weight");
            VEC(&L->k_norm, hd, "layers.%d.%s", i, "self_attn.k_norm.weight");
        }
        if (c->is_moe) {
            plan_moe(p, c, L, i, moe_fused);
        } else {
            const int64_t I = c->intermediate_size;
            MAT2(&L->gate_proj, I, H, "layers.%d.%s", i, "mlp.gate_proj.weight");
            MAT2(&L->up_proj, I, H, "layers.%d.%s", i, "mlp.up_proj.weight");
            MAT2(&L->down_proj, H, I, "layers.%d.%s", i, "mlp.down_proj.weight");
        }
    }
}

/* Copies a stored tensor into dst (dtype `to`: F32 or BF16), exactly. */
static void convert(const st_tensor *t, void *dst, q35_wtype to)
{
    const size_t n = (size_t)st_numel(t);
    if ((to == WT_BF16 && t->dtype == ST_BF16) || (to == WT_F32 && t->dtype == ST_F32)) {
        memcpy(dst, t->data, t->nbytes);
    } else if (t->dtype == ST_BF16) {
        /* the data may be unaligned in the map: widen through an aligned bounce buffer */
        uint16_t buf[4096];
        for (size_t i = 0; i < n; i += 4096) {
            size_t k = n - i < 4096 ? n - i : 4096;
            memcpy(buf, (const uint16_t *)t->data + i, k * 2);
            q35_bf16_to_f32_array(buf, (float *)dst + i, k);
        }
    } else { /* F16 -> F32 */
        const unsigned char *s = t->data;
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            ((float *)dst)[i] = st_f16_to_f32(h);
        }
    }
}

/* The file pages of a tensor already copied are not needed again: drop them
 * from this process (they stay in the page cache), so loading does not
 * hold the file map and the copy at once (peak memory ~ the model, not 2x). */
static void release_pages(const st_tensor *t)
{
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)t->data + page - 1) & ~(page - 1), b = ((uintptr_t)t->data + t->nbytes) & ~(page - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

/* Index of the first NaN or infinity in n values of type t, or n. */
static size_t first_nonfinite(const void *p, q35_wtype t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const int bad = t == WT_BF16 ? (((const uint16_t *)p)[i] & 0x7f80) == 0x7f80
                                     : !isfinite(((const float *)p)[i]);
        if (bad) return i;
    }
    return n;
}

int q35_model_load(const char *dir, const q35_load_opts *opts, q35_model *m, char *err, size_t errlen)
{
    const q35_load_opts none = {0};
    if (!opts) opts = &none;
    memset(m, 0, sizeof *m);
    plan p = {0};
    int rc = -1;
    if (q35_config_load(dir, &m->cfg, err, errlen)) return -1;
    const q35_config *c = &m->cfg;
    if (q35_weights_open(dir, &m->files, err, errlen)) goto fail;
    m->files_open = 1;
    m->layers = calloc((size_t)c->num_hidden_layers, sizeof *m->layers);
    if (!m->layers) { q35_errmsg(err, errlen, "%s: out of memory", dir); goto fail; }

    /* MoE experts: fused if layer 0 (any MoE layer would do) has the fused tensor. */
    int fused = 0;
    if (c->is_moe) {
        char nm[96];
        snprintf(nm, sizeof nm, "layers.0.mlp.experts.gate_up_proj");
        fused = q35_weights_find(&m->files, nm) != NULL;
    }
    plan_model(&p, c, m, fused);
    if (p.failed) { q35_errmsg(err, errlen, "%s: out of memory", dir); goto fail; }

    /* pass 2: check every tensor; the matrices decide the in-memory dtype */
    int n_bf16 = 0, n_f16 = 0, n_f32 = 0;
    for (int i = 0; i < p.nt; i++) {
        tensor_spec *t = &p.t[i];
        if (q35_weights_expect(&m->files, t->name, t->ndim, t->shape, &t->t, err, errlen)) goto fail;
        if (!p.s[t->slot].matrix) continue;
        n_bf16 += t->t->dtype == ST_BF16;
        n_f16 += t->t->dtype == ST_F16;
        n_f32 += t->t->dtype == ST_F32;
    }
    m->wt = (n_bf16 && !n_f16 && !n_f32 && !opts->force_f32) ? WT_BF16 : WT_F32;
    m->disk_dtype = (n_bf16 && !n_f16 && !n_f32) ? "BF16" : (n_f16 && !n_bf16 && !n_f32) ? "F16"
                    : (n_f32 && !n_bf16 && !n_f16) ? "F32" : "mixed";

    /* pass 3: lay out the arena, then copy */
    size_t off = 0;
    for (int s = 0; s < p.ns; s++) {
        slot_spec *sl = &p.s[s];
        const size_t esz = sl->matrix ? q35_wtype_size(m->wt) : 4;
        m->weight_bytes += sl->elems * esz;
        if (opts->mmap && sl->n_parts == 1) {
            /* the slot's only tensor: usable in place if stored in the held dtype and aligned */
            for (int i = 0; i < p.nt; i++) {
                if (p.t[i].slot != s) continue;
                const st_tensor *t = p.t[i].t;
                int same = sl->matrix ? (m->wt == WT_BF16 ? t->dtype == ST_BF16 : t->dtype == ST_F32)
                                      : t->dtype == ST_F32;
                if (same && ((uintptr_t)t->data % esz) == 0) sl->mapped = t->data;
                break;
            }
        }
        if (sl->mapped) { m->mapped_bytes += sl->elems * esz; continue; }
        sl->arena_off = off;
        off += (sl->elems * esz + 63) & ~(size_t)63;
    }
    m->arena_bytes = off;
    if (off) {
        m->arena = q35_alloc_huge(off);
        if (!m->arena) {
            q35_errmsg(err, errlen, "%s: cannot allocate %.1f MiB for the weights", dir, off / 1048576.0);
            goto fail;
        }
    }
    for (int s = 0; s < p.ns; s++)
        *p.s[s].where = p.s[s].mapped ? p.s[s].mapped : (char *)m->arena + p.s[s].arena_off;
    for (int i = 0; i < p.nt; i++) {
        const tensor_spec *t = &p.t[i];
        const slot_spec *sl = &p.s[t->slot];
        const q35_wtype to = sl->matrix ? m->wt : WT_F32;
        void *dst = sl->mapped ? (void *)sl->mapped : (char *)m->arena + sl->arena_off + t->offset * q35_wtype_size(to);
        if (!sl->mapped) {
            convert(t->t, dst, to);
            release_pages(t->t);
        }
        /* a NaN or infinity in a weight would only show as NaN logits much later: refuse it here */
        const size_t n = (size_t)st_numel(t->t), at = first_nonfinite(dst, to, n);
        if (at < n) {
            char file[4096];
            q35_weights_path_of(&m->files, t->t, file, sizeof file);
            const float v = to == WT_BF16 ? q35_bf16_to_f32(((const uint16_t *)dst)[at]) : ((const float *)dst)[at];
            q35_errmsg(err, errlen, "%s: tensor '%s' (%s): element %zu is not finite (%s)", file, t->name,
                       t->t->name, at, isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
            goto fail;
        }
    }
    if (c->tie_word_embeddings) m->lm_head = m->embed;
    if (!m->mapped_bytes) { q35_weights_close(&m->files); m->files_open = 0; }
    rc = 0;
fail:
    free(p.t);
    free(p.s);
    if (rc) q35_model_free(m);
    return rc;
}

void q35_model_free(q35_model *m)
{
    if (!m) return;
    if (m->arena) q35_free_huge(m->arena, m->arena_bytes);
    if (m->files_open) q35_weights_close(&m->files);
    free(m->layers);
    memset(m, 0, sizeof *m);
}
