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

/* A tensor, or the block of it this rank holds: the stored tensor is seen as
 * a matrix of rows (every dimension but the last) by columns (the last; a
 * vector is a column), and the part is rows [row0, row0 + rows) x columns
 * [col0, col0 + cols) of it, copied row-major to `offset` in its slot.  One
 * process takes whole tensors; a tensor-parallel rank takes row blocks of
 * the matrices it splits by output and column blocks of those it splits by
 * input (docs/tp.md). */
typedef struct {
    char name[160];
    int ndim;
    int64_t shape[3];
    int64_t row0, rows, col0, cols; /* rows == 0: all rows; cols == 0: all columns */
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

/* The stored matrix view of a tensor: rows and columns (see tensor_spec). */
static void matrix_view(int ndim, const int64_t *shape, int64_t *rows, int64_t *cols)
{
    *cols = ndim ? shape[ndim - 1] : 1;
    *rows = 1;
    for (int i = 0; i + 1 < ndim; i++) *rows *= shape[i];
    if (ndim == 1) { *rows = shape[0]; *cols = 1; }
}

static void add_block(plan *p, int slot, size_t offset, int ndim, const int64_t *shape, int64_t row0, int64_t rows,
                      int64_t col0, int64_t cols, const char *fmt, ...) __attribute__((format(printf, 10, 11)));
static void add_block(plan *p, int slot, size_t offset, int ndim, const int64_t *shape, int64_t row0, int64_t rows,
                      int64_t col0, int64_t cols, const char *fmt, ...)
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
    int64_t R, C;
    matrix_view(ndim, shape, &R, &C);
    t->row0 = row0;
    t->rows = rows ? rows : R - row0;
    t->col0 = col0;
    t->cols = cols ? cols : C - col0;
    t->slot = slot;
    t->offset = offset;
    p->s[slot].n_parts++;
}

#define add_part(p, slot, offset, ndim, shape, ...) add_block(p, slot, offset, ndim, shape, 0, 0, 0, 0, __VA_ARGS__)

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

/* Rows [r0, r0 + n) of a stored matrix (a vector: n of its elements) into a
 * slot of their own: what a rank holds of a tensor split by its output. */
static void rows_of(plan *p, const void **where, int matrix, int ndim, const int64_t *shape, int64_t r0, int64_t n,
                    const char *fmt, ...) __attribute__((format(printf, 8, 9)));
static void rows_of(plan *p, const void **where, int matrix, int ndim, const int64_t *shape, int64_t r0, int64_t n,
                    const char *fmt, ...)
{
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    int64_t R, C;
    matrix_view(ndim, shape, &R, &C);
    add_block(p, new_slot(p, where, (size_t)(n * C), matrix), 0, ndim, shape, r0, n, 0, 0, "%s", name);
}

/* Columns [c0, c0 + n) of a stored [R, C] matrix into a slot of their own
 * ([R, n]): what a rank holds of a matrix split by its input. */
static void cols_of(plan *p, const void **where, int64_t R, int64_t C, int64_t c0, int64_t n, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static void cols_of(plan *p, const void **where, int64_t R, int64_t C, int64_t c0, int64_t n, const char *fmt, ...)
{
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    add_block(p, new_slot(p, where, (size_t)(R * n), 1), 0, 2, (int64_t[]){R, C}, 0, 0, c0, n, "%s", name);
}

/* Experts: tp keeps every expert with rows [mi0, mi0 + Il) of its intermediate
 * dimension (gate and up rows, down columns), ep keeps experts [e0, e1) whole;
 * held fused as [E_held, 2 Il, H] and [E_held, H, Il] either way. */
static void plan_experts(plan *p, const q35_config *c, const q35_config *lc, const q35_shard *sh, q35_layer *L,
                         const char *lp, int fused)
{
    const int64_t H = c->hidden_size, E = c->num_experts, I = c->moe_intermediate_size;
    const int64_t Il = lc->moe_intermediate_size, e0 = sh->e0, El = sh->e1 - sh->e0, mi0 = sh->mi0;
    const int gu = new_slot(p, (const void **)&L->experts_gate_up, (size_t)(El * 2 * Il * H), 1);
    const int dn = new_slot(p, (const void **)&L->experts_down, (size_t)(El * H * Il), 1);
    if (fused) {
        const int64_t sgu[3] = {E, 2 * I, H}, sdn[3] = {E, H, I};
        if (Il == I) { /* whole experts [e0, e1): contiguous rows of both */
            add_block(p, gu, 0, 3, sgu, e0 * 2 * I, El * 2 * I, 0, 0, "%s.mlp.experts.gate_up_proj", lp);
            add_block(p, dn, 0, 3, sdn, e0 * H, El * H, 0, 0, "%s.mlp.experts.down_proj", lp);
            return;
        }
        for (int64_t e = 0; e < E; e++) {
            add_block(p, gu, (size_t)(e * 2 * Il * H), 3, sgu, e * 2 * I + mi0, Il, 0, 0,
                      "%s.mlp.experts.gate_up_proj", lp);
            add_block(p, gu, (size_t)((e * 2 + 1) * Il * H), 3, sgu, e * 2 * I + I + mi0, Il, 0, 0,
                      "%s.mlp.experts.gate_up_proj", lp);
        }
        add_block(p, dn, 0, 3, sdn, 0, 0, mi0, Il, "%s.mlp.experts.down_proj", lp);
        return;
    }
    for (int64_t j = 0; j < El; j++) {
        const long long e = (long long)(e0 + j);
        add_block(p, gu, (size_t)(j * 2 * Il * H), 2, (int64_t[]){I, H}, mi0, Il, 0, 0,
                  "%s.mlp.experts.%lld.gate_proj.weight", lp, e);
        add_block(p, gu, (size_t)((j * 2 + 1) * Il * H), 2, (int64_t[]){I, H}, mi0, Il, 0, 0,
                  "%s.mlp.experts.%lld.up_proj.weight", lp, e);
        add_block(p, dn, (size_t)(j * H * Il), 2, (int64_t[]){H, I}, 0, 0, mi0, Il,
                  "%s.mlp.experts.%lld.down_proj.weight", lp, e);
    }
}

static void plan_moe(plan *p, const q35_config *c, const q35_config *lc, const q35_shard *sh, q35_layer *L,
                     const char *lp, int fused)
{
    const int64_t H = c->hidden_size, E = c->num_experts;
    const int64_t Is = c->shared_expert_intermediate_size, Isl = lc->shared_expert_intermediate_size;
    MAT2(&L->router, E, H, "%s.%s", lp, "mlp.gate.weight");
    plan_experts(p, c, lc, sh, L, lp, fused);
    if (Is > 0) {
        rows_of(p, (const void **)&L->shared_gate, 1, 2, (int64_t[]){Is, H}, sh->si0, Isl, "%s.%s", lp,
                "mlp.shared_expert.gate_proj.weight");
        rows_of(p, (const void **)&L->shared_up, 1, 2, (int64_t[]){Is, H}, sh->si0, Isl, "%s.%s", lp,
                "mlp.shared_expert.up_proj.weight");
        cols_of(p, (const void **)&L->shared_down, H, Is, sh->si0, Isl, "%s.%s", lp,
                "mlp.shared_expert.down_proj.weight");
        MAT2(&L->shared_expert_gate, 1, H, "%s.%s", lp, "mlp.shared_expert_gate.weight");
    }
}

/* in_proj_qkv [C, H] and conv1d [C, 1, K] hold q of every key head, then k,
 * then v (docs/model.md eq. 4): a rank takes its key heads' rows of the q
 * section and of the k section and its value heads' rows of the v section,
 * each section on its own (a contiguous cut would mix the sections). */
static void plan_qkv(plan *p, const q35_config *c, const q35_config *lc, const q35_shard *sh, q35_layer *L, const char *lp)
{
    const int64_t H = c->hidden_size, K = c->linear_conv_kernel_dim, Dk = c->linear_key_head_dim;
    const int64_t Dv = c->linear_value_head_dim, Hk = c->linear_num_key_heads, Hv = c->linear_num_value_heads;
    const int64_t hk = lc->linear_num_key_heads, hv = lc->linear_num_value_heads;
    const int64_t C = 2 * Hk * Dk + Hv * Dv, Cl = 2 * hk * Dk + hv * Dv;
    const int64_t sw[2] = {C, H}, sc[3] = {C, 1, K};
    const int w = new_slot(p, (const void **)&L->in_proj_qkv, (size_t)(Cl * H), 1);
    const int cv = new_slot(p, (const void **)&L->conv_w, (size_t)(Cl * K), 0);
    if (sh->mutant == Q35_SHARD_MUTANT_CONTIGUOUS_QKV) { /* wrong on purpose: tests/tp_test.sh */
        add_block(p, w, 0, 2, sw, sh->rank * Cl, Cl, 0, 0, "%s.linear_attn.in_proj_qkv.weight", lp);
        add_block(p, cv, 0, 3, sc, sh->rank * Cl, Cl, 0, 0, "%s.linear_attn.conv1d.weight", lp);
        return;
    }
    if (hk == Hk && hv == Hv) { /* every head: the three sections are the whole tensor, one part (mmap-able) */
        add_block(p, w, 0, 2, sw, 0, 0, 0, 0, "%s.linear_attn.in_proj_qkv.weight", lp);
        add_block(p, cv, 0, 3, sc, 0, 0, 0, 0, "%s.linear_attn.conv1d.weight", lp);
        return;
    }
    const int64_t first[3] = {sh->k0 * Dk, Hk * Dk + sh->k0 * Dk, 2 * Hk * Dk + sh->v0 * Dv};
    const int64_t count[3] = {hk * Dk, hk * Dk, hv * Dv}, at[3] = {0, hk * Dk, 2 * hk * Dk};
    for (int s = 0; s < 3; s++) {
        add_block(p, w, (size_t)(at[s] * H), 2, sw, first[s], count[s], 0, 0, "%s.linear_attn.in_proj_qkv.weight",
                  lp);
        add_block(p, cv, (size_t)(at[s] * K), 3, sc, first[s], count[s], 0, 0, "%s.linear_attn.conv1d.weight", lp);
    }
}

/* One decoder layer's tensors, named lp + "." + the canonical suffix (lp
 * "layers.3", or "mtp.layers.0" for the MTP head's layer), each as the block
 * this rank holds: c the checkpoint's config, lc the slice's (shard.h). */
static void plan_layer(plan *p, const q35_config *c, const q35_config *lc, const q35_shard *sh, q35_layer *L,
                       const char *lp, q35_layer_type type, int moe_fused)
{
    const int64_t H = c->hidden_size;
    const int64_t Hv = c->linear_num_value_heads, Dv = c->linear_value_head_dim;
    const int64_t hv = lc->linear_num_value_heads, v0 = sh->v0;
    const int64_t nh = c->num_attention_heads, nkv = c->num_key_value_heads, hd = c->head_dim;
    const int64_t nhl = lc->num_attention_heads, nkvl = lc->num_key_value_heads;
    VEC(&L->input_norm, H, "%s.%s", lp, "input_layernorm.weight");
    VEC(&L->post_norm, H, "%s.%s", lp, "post_attention_layernorm.weight");
    if (type == Q35_LAYER_LINEAR) {
        plan_qkv(p, c, lc, sh, L, lp);
        rows_of(p, &L->in_proj_z, 1, 2, (int64_t[]){Hv * Dv, H}, v0 * Dv, hv * Dv, "%s.%s", lp,
                "linear_attn.in_proj_z.weight");
        rows_of(p, &L->in_proj_b, 1, 2, (int64_t[]){Hv, H}, v0, hv, "%s.%s", lp, "linear_attn.in_proj_b.weight");
        rows_of(p, &L->in_proj_a, 1, 2, (int64_t[]){Hv, H}, v0, hv, "%s.%s", lp, "linear_attn.in_proj_a.weight");
        cols_of(p, &L->out_proj, H, Hv * Dv, v0 * Dv, hv * Dv, "%s.%s", lp, "linear_attn.out_proj.weight");
        rows_of(p, (const void **)&L->dt_bias, 0, 1, (int64_t[]){Hv}, v0, hv, "%s.%s", lp, "linear_attn.dt_bias");
        rows_of(p, (const void **)&L->A_log, 0, 1, (int64_t[]){Hv}, v0, hv, "%s.%s", lp, "linear_attn.A_log");
        VEC(&L->gnorm, Dv, "%s.%s", lp, "linear_attn.norm.weight");
    } else {
        /* q_proj's rows are per head: hd query rows, then hd gate rows */
        rows_of(p, &L->q_proj, 1, 2, (int64_t[]){2 * nh * hd, H}, sh->h0 * 2 * hd, nhl * 2 * hd, "%s.%s", lp,
                "self_attn.q_proj.weight");
        rows_of(p, &L->k_proj, 1, 2, (int64_t[]){nkv * hd, H}, sh->kv0 * hd, nkvl * hd, "%s.%s", lp,
                "self_attn.k_proj.weight");
        rows_of(p, &L->v_proj, 1, 2, (int64_t[]){nkv * hd, H}, sh->kv0 * hd, nkvl * hd, "%s.%s", lp,
                "self_attn.v_proj.weight");
        cols_of(p, &L->o_proj, H, nh * hd, sh->h0 * hd, nhl * hd, "%s.%s", lp, "self_attn.o_proj.weight");
        VEC(&L->q_norm, hd, "%s.%s", lp, "self_attn.q_norm.weight");
        VEC(&L->k_norm, hd, "%s.%s", lp, "self_attn.k_norm.weight");
    }
    if (c->is_moe) {
        plan_moe(p, c, lc, sh, L, lp, moe_fused);
    } else {
        const int64_t I = c->intermediate_size, Il = lc->intermediate_size;
        rows_of(p, &L->gate_proj, 1, 2, (int64_t[]){I, H}, sh->i0, Il, "%s.%s", lp, "mlp.gate_proj.weight");
        rows_of(p, &L->up_proj, 1, 2, (int64_t[]){I, H}, sh->i0, Il, "%s.%s", lp, "mlp.up_proj.weight");
        cols_of(p, &L->down_proj, H, I, sh->i0, Il, "%s.%s", lp, "mlp.down_proj.weight");
    }
}

/* The tensors the config implies, each as the block this rank holds (all of
 * it in one process): c the checkpoint's config, lc the slice's (shard.h). */
static void plan_model(plan *p, const q35_config *c, const q35_config *lc, const q35_shard *sh, q35_model *m,
                       int moe_fused)
{
    const int64_t H = c->hidden_size, V = c->vocab_size;
    rows_of(p, &m->embed, 1, 2, (int64_t[]){V, H}, sh->vocab0, sh->vocab_n, "%s", "embed_tokens.weight");
    VEC(&m->final_norm, H, "%s", "norm.weight");
    if (!c->tie_word_embeddings)
        rows_of(p, &m->lm_head, 1, 2, (int64_t[]){V, H}, sh->vocab0, sh->vocab_n, "%s", "lm_head.weight");
    for (int i = 0; i < c->num_hidden_layers; i++) {
        char lp[32];
        snprintf(lp, sizeof lp, "layers.%d", i);
        plan_layer(p, c, lc, sh, &m->layers[i], lp, (q35_layer_type)c->layer_types[i], moe_fused);
    }
}

/* The MTP head (docs/mtp.md): fc [H, 2H] (replicated: every rank needs the
 * whole projection), its three norms, and one full-attention decoder layer
 * under "mtp.layers.0." sharded exactly like the model's own. */
static void plan_mtp(plan *p, const q35_config *c, const q35_config *lc, const q35_shard *sh, q35_model *m,
                     int moe_fused)
{
    const int64_t H = c->hidden_size;
    MAT2(&m->mtp.fc, H, 2 * H, "%s", "mtp.fc.weight");
    VEC(&m->mtp.pre_fc_norm_embedding, H, "%s", "mtp.pre_fc_norm_embedding.weight");
    VEC(&m->mtp.pre_fc_norm_hidden, H, "%s", "mtp.pre_fc_norm_hidden.weight");
    VEC(&m->mtp.norm, H, "%s", "mtp.norm.weight");
    plan_layer(p, c, lc, sh, &m->mtp.layer, "mtp.layers.0", Q35_LAYER_FULL, moe_fused);
}

/* n stored values from src (dtype `from`) to dst (dtype `to`: F32 or BF16),
 * exactly: a copy, or a widening of BF16 / F16 to F32. */
static void convert_run(const unsigned char *src, st_dtype from, size_t n, void *dst, q35_wtype to)
{
    if ((to == WT_BF16 && from == ST_BF16) || (to == WT_F32 && from == ST_F32)) {
        memcpy(dst, src, q35_wtype_bytes(to, n));
    } else if (from == ST_BF16) {
        /* the data may be unaligned in the map: widen through an aligned bounce buffer */
        uint16_t buf[4096];
        for (size_t i = 0; i < n; i += 4096) {
            size_t k = n - i < 4096 ? n - i : 4096;
            memcpy(buf, src + 2 * i, k * 2);
            q35_bf16_to_f32_array(buf, (float *)dst + i, k);
        }
    } else { /* F16 -> F32 */
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            ((float *)dst)[i] = st_f16_to_f32(h);
        }
    }
}

/* The stored columns of t's matrix view (tensor_spec). */
static int64_t stored_cols(const tensor_spec *ts)
{
    int64_t R, C;
    matrix_view(ts->ndim, ts->shape, &R, &C);
    return C;
}

/* Copies the block of ts into dst (row-major rows x cols), converted. */
static void convert_block(const tensor_spec *ts, void *dst, q35_wtype to)
{
    const st_tensor *t = ts->t;
    const size_t esz = st_dtype_size(t->dtype), C = (size_t)stored_cols(ts), cols = (size_t)ts->cols;
    const unsigned char *src = (const unsigned char *)t->data + ((size_t)ts->row0 * C + (size_t)ts->col0) * esz;
    if (cols == C) { /* whole rows: one contiguous run */
        convert_run(src, t->dtype, (size_t)ts->rows * C, dst, to);
        return;
    }
    for (int64_t r = 0; r < ts->rows; r++)
        convert_run(src + (size_t)r * C * esz, t->dtype, cols, (char *)dst + q35_wtype_bytes(to, (size_t)r * cols), to);
}

/* The file pages of a tensor already copied are not needed again: drop them
 * from this process (they stay in the page cache), so loading does not
 * hold the file map and the copy at once (peak memory ~ the model, not 2x). */
static void release_pages(const tensor_spec *ts)
{
    const st_tensor *t = ts->t;
    const size_t rowb = (size_t)stored_cols(ts) * st_dtype_size(t->dtype);
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), from = (uintptr_t)t->data + (size_t)ts->row0 * rowb;
    uintptr_t a = (from + page - 1) & ~(page - 1), b = (from + (size_t)ts->rows * rowb) & ~(page - 1);
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

/* This rank's slice (all of it in one process). */
static int load_slice(const char *dir, const q35_load_opts *opts, q35_model *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    plan p = {0};
    int rc = -1;
    if (q35_config_load(dir, &m->cfg, err, errlen)) return -1;
    const q35_config *c = &m->cfg;
    static const q35_comm alone = {.rank = 0, .size = 1};
    m->comm = opts->comm ? opts->comm : &alone;
    char why[400];
    if (q35_shard_plan(c, m->comm->rank, m->comm->size, opts->moe_shard, opts->shard_mutant, &m->sh, &m->local, why,
                       sizeof why)) {
        q35_errmsg(err, errlen, "%s: %s", dir, why);
        memset(m, 0, sizeof *m);
        return -1;
    }
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
    plan_model(&p, c, &m->local, &m->sh, m, fused);
    /* The MTP head: planned whenever the checkpoint has mtp.* tensors (then
     * every one of them must be there); none at all: mtp.present = 0. */
    if (m->files.n_mtp > 0) {
        if (c->mtp_num_hidden_layers > 1) {
            q35_errmsg(err, errlen, "%s: config.json has mtp_num_hidden_layers = %d; q35lab runs an MTP head of one "
                       "layer (mtp.layers.0, as the Qwen3.5 releases) only", dir, c->mtp_num_hidden_layers);
            goto fail;
        }
        const int mtp_fused = c->is_moe && q35_weights_find(&m->files, "mtp.layers.0.mlp.experts.gate_up_proj");
        m->mtp.present = 1;
        plan_mtp(&p, c, &m->local, &m->sh, m, mtp_fused);
    }
    if (p.failed) { q35_errmsg(err, errlen, "%s: out of memory", dir); goto fail; }

    /* pass 2: check every tensor; the matrices decide the in-memory dtype */
    int n_bf16 = 0, n_f16 = 0, n_f32 = 0;
    for (int i = 0; i < p.nt; i++) {
        tensor_spec *t = &p.t[i];
        if (q35_weights_expect(&m->files, t->name, t->ndim, t->shape, &t->t, err, errlen)) {
            if (!strncmp(t->name, "mtp.", 4) && !q35_weights_find(&m->files, t->name)) {
                /* a partial head: say so, it is not a decoder tensor the user could have mistyped */
                const size_t n = err ? strlen(err) : 0;
                if (err && n + 1 < errlen)
                    snprintf(err + n, errlen - n, "; the checkpoint has %d other mtp.* tensors, an incomplete MTP "
                             "head (docs/mtp.md)", m->files.n_mtp);
            }
            goto fail;
        }
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
        const size_t esz = sl->matrix ? q35_wtype_bytes(m->wt, 1) : 4; /* F32 or BF16 here: quantizing comes after */
        m->weight_bytes += sl->elems * esz;
        if (opts->mmap && sl->n_parts == 1) {
            /* the slot's only part: usable in place if it is whole rows, stored in the held dtype and aligned */
            for (int i = 0; i < p.nt; i++) {
                if (p.t[i].slot != s) continue;
                const tensor_spec *ts = &p.t[i];
                const st_tensor *t = ts->t;
                const int64_t C = stored_cols(ts);
                const char *at = (const char *)t->data + (size_t)ts->row0 * (size_t)C * st_dtype_size(t->dtype);
                int same = sl->matrix ? (m->wt == WT_BF16 ? t->dtype == ST_BF16 : t->dtype == ST_F32)
                                      : t->dtype == ST_F32;
                if (same && ts->cols == C && ((uintptr_t)at % esz) == 0) sl->mapped = at;
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
        void *dst = sl->mapped ? (void *)sl->mapped : (char *)m->arena + sl->arena_off + q35_wtype_bytes(to, t->offset);
        if (!sl->mapped) {
            convert_block(t, dst, to);
            release_pages(t);
        }
        /* a NaN or infinity in a weight would only show as NaN logits much later: refuse it here */
        const size_t n = (size_t)(t->rows * t->cols), at = first_nonfinite(dst, to, n);
        if (at < n) {
            char file[4096];
            q35_weights_path_of(&m->files, t->t, file, sizeof file);
            const float v = to == WT_BF16 ? q35_bf16_to_f32(((const uint16_t *)dst)[at]) : ((const float *)dst)[at];
            /* the element's index in the stored tensor, not in this rank's block of it */
            const size_t flat = (size_t)(t->row0 + (int64_t)(at / (size_t)t->cols)) * (size_t)stored_cols(t) +
                                (size_t)t->col0 + at % (size_t)t->cols;
            q35_errmsg(err, errlen, "%s: tensor '%s' (%s): element %zu is not finite (%s)", file, t->name,
                       t->t->name, flat, isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
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

/* Under tensor parallelism each rank quantizes its own slices (docs/tp.md, docs/quantization.md §5).
 * A matrix split along its input dimension (out_proj, o_proj, down_proj, the experts' and the shared
 * expert's down_proj) then has rows that are pieces of the full rows, and its blocks are the blocks
 * one process would make only when the piece starts and ends on a 32-weight boundary; otherwise
 * the ranks would multiply different weights than `--weights` gives one process (and than the
 * reference path checks), so the load is refused, naming the matrix.  Matrices split by rows
 * (everything else, lm_head by vocabulary) always quantize as in one process. */
static int tp_blocks_ok(const q35_model *m, q35_wtype wt, unsigned mask, char *err, size_t errlen)
{
    const q35_config *c = &m->local;
    const q35_shard *sh = &m->sh;
    if (!mask) mask = (1u << Q35_WF_COUNT) - 1;
    const struct { int family, applies; const char *what; int off, len; } cut[] = {
        {Q35_WF_DELTANET, 1, "out_proj (value heads x value head dim)", sh->v0 * c->linear_value_head_dim,
         c->linear_num_value_heads * c->linear_value_head_dim},
        {Q35_WF_ATTENTION, 1, "o_proj (heads x head_dim)", sh->h0 * c->head_dim, c->num_attention_heads * c->head_dim},
        {Q35_WF_MLP, !c->is_moe, "mlp.down_proj (intermediate)", sh->i0, c->intermediate_size},
        {Q35_WF_MOE, c->is_moe, "the experts' down_proj (moe intermediate)", sh->mi0, c->moe_intermediate_size},
        {Q35_WF_MOE, c->is_moe && c->shared_expert_intermediate_size > 0, "shared_expert.down_proj (intermediate)",
         sh->si0, c->shared_expert_intermediate_size},
    };
    for (size_t i = 0; i < sizeof cut / sizeof *cut; i++)
        if (cut[i].applies && (mask >> cut[i].family & 1u) && (cut[i].off % Q35_QBLOCK || cut[i].len % Q35_QBLOCK)) {
            q35_errmsg(err, errlen, "--weights %s under %d ranks: rank %d holds input columns [%d, %d) of %s, not on "
                       "%d-weight block boundaries, so its blocks would differ from one process's; use a rank count "
                       "that splits it on block boundaries, or --quant-only without that family",
                       q35_wtype_name(q35_wtype_block(wt)), sh->ranks, sh->rank, cut[i].off, cut[i].off + cut[i].len,
                       cut[i].what, Q35_QBLOCK);
            return -1;
        }
    return 0;
}

int q35_model_load(const char *dir, const q35_load_opts *opts, q35_model *m, char *err, size_t errlen)
{
    const q35_load_opts none = {0};
    if (!opts) opts = &none;
    int rc = load_slice(dir, opts, m, err, errlen);
    const q35_comm *comm = opts->comm;
    if (!rc && q35_wtype_is_quant(opts->quant)) {
        if ((comm && comm->size > 1 && tp_blocks_ok(m, opts->quant, opts->quant_families, err, errlen)) ||
            q35_model_quantize(m, opts->quant, opts->quant_families, err, errlen)) {
            q35_model_free(m);
            rc = -1;
        }
    }
    if (comm && comm->size > 1) {
        /* every rank learns whether all could load: none may wait in a
         * collective for a rank that has given up */
        int failed = rc != 0;
        if (q35_comm_max_int(comm, &failed)) failed = 1;
        if (failed && !rc) {
            q35_model_free(m);
            q35_errmsg(err, errlen, "%s: another rank could not load its slice (its message says why)", dir);
            rc = -2;
        }
    }
    return rc;
}

void q35_model_free(q35_model *m)
{
    if (!m) return;
    if (m->arena) q35_free_huge(m->arena, m->arena_bytes);
    if (m->qarena) q35_free_huge(m->qarena, m->qarena_bytes);
    if (m->files_open) q35_weights_close(&m->files);
    free(m->layers);
    memset(m, 0, sizeof *m);
}
