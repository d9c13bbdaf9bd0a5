/* quantize.c - `--weights q8|q4 [--quant-only FAMILY,...]`: after loading, the matrices of the
 * chosen families are quantized (kernels/quant/, docs/quantization.md §3) into one huge-page
 * arena of their own and the layer pointers moved there; q35_model_wt(m, family) then gives the
 * type the forward and ref/ read them with.  The loaded F32/BF16 copies are given back to the
 * kernel (madvise MADV_DONTNEED on the whole pages inside each one; nothing reads them again),
 * except the embedding table when lm_head is tied to it and matrices read from the file maps.
 * A family with a matrix whose rows are not whole 32-weight blocks (K % 32 != 0) stays
 * unquantized.  Asked for an interleaved type, the families whose matrices all have a multiple of 16
 * rows (moe: each expert's I and the hidden size, so every expert starts on a group) are stored with 16
 * rows interleaved (kernels/quant/quant_r16.h, docs/quantization.md
 * §8), at the front of the arena (q35_model_matrix_wt tells them by address); the rest in rows. */
#include "common/errmsg.h"
#include "common/huge_pages.h"
#include "model/model.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const char *const family_names[Q35_WF_COUNT] = {"deltanet", "attention", "mlp", "moe", "lm_head"};

const char *q35_wfamily_name(q35_wfamily f) { return f < Q35_WF_COUNT ? family_names[f] : "?"; }

int q35_wfamily_parse(const char *list, unsigned *mask, char *err, size_t errlen)
{
    *mask = 0;
    const char *s = list;
    while (*s) {
        const char *e = strchr(s, ',');
        const size_t n = e ? (size_t)(e - s) : strlen(s);
        int found = 0;
        if (n == 3 && !strncmp(s, "all", 3)) { *mask |= (1u << Q35_WF_COUNT) - 1; found = 1; }
        for (int f = 0; f < Q35_WF_COUNT && !found; f++)
            if (strlen(family_names[f]) == n && !strncmp(s, family_names[f], n)) { *mask |= 1u << f; found = 1; }
        if (!found) {
            q35_errmsg(err, errlen, "unknown weight family '%.*s' (known: deltanet, attention, mlp, moe, lm_head, all)",
                       (int)n, s);
            return -1;
        }
        s += n + (e != NULL);
    }
    if (!*mask) { q35_errmsg(err, errlen, "empty weight family list"); return -1; }
    return 0;
}

/* One matrix: where its pointer lives, its rows and row length. */
typedef struct {
    const void **ptr;
    size_t rows;
    int K;
    q35_wfamily fam;
} qmat;

#define MAX_PER_LAYER 16

/* El: the experts this rank holds (expert parallelism keeps num_experts global for the router, but each
 * rank's expert matrices hold only its own, model/shard.c's e0 .. e1). */
static int layer_mats(const q35_config *c, int El, q35_layer *L, int full, qmat *o)
{
    const int H = c->hidden_size;
    int n = 0;
#define ADD(field, r, k, f) do { if (L->field) o[n++] = (qmat){(const void **)&L->field, (size_t)(r), (k), (f)}; } while (0)
    if (!full) {
        const int Hv = c->linear_num_value_heads, vd = Hv * c->linear_value_head_dim;
        ADD(in_proj_qkv, 2 * c->linear_num_key_heads * c->linear_key_head_dim + vd, H, Q35_WF_DELTANET);
        ADD(in_proj_z, vd, H, Q35_WF_DELTANET);
        ADD(in_proj_b, Hv, H, Q35_WF_DELTANET);
        ADD(in_proj_a, Hv, H, Q35_WF_DELTANET);
        ADD(out_proj, H, vd, Q35_WF_DELTANET);
    } else {
        const int nh = c->num_attention_heads, hd = c->head_dim, nkv = c->num_key_value_heads;
        ADD(q_proj, 2 * nh * hd, H, Q35_WF_ATTENTION);
        ADD(k_proj, nkv * hd, H, Q35_WF_ATTENTION);
        ADD(v_proj, nkv * hd, H, Q35_WF_ATTENTION);
        ADD(o_proj, H, nh * hd, Q35_WF_ATTENTION);
    }
    /* The MoE router ([E, H]) and the shared-expert gate ([1, H]) are never quantized: routing is a discrete
     * top-k choice, and an error there changes which experts run, not just how much they weigh (llama.cpp's
     * llama-quantize keeps ffn_gate_inp and ffn_gate_inp_shexp unquantized for the same reason).  The forward
     * and ref/ read them in m->wt (moe_problem.router_wt, q35_ref_mlp's router_wt). */
    if (c->is_moe) {
        const int E = El, I = c->moe_intermediate_size, Is = c->shared_expert_intermediate_size;
        ADD(experts_gate_up, (size_t)E * 2 * I, H, Q35_WF_MOE);
        ADD(experts_down, (size_t)E * H, I, Q35_WF_MOE);
        if (Is > 0) {
            ADD(shared_gate, Is, H, Q35_WF_MOE);
            ADD(shared_up, Is, H, Q35_WF_MOE);
            ADD(shared_down, H, Is, Q35_WF_MOE);
        }
    } else {
        ADD(gate_proj, c->intermediate_size, H, Q35_WF_MLP);
        ADD(up_proj, c->intermediate_size, H, Q35_WF_MLP);
        ADD(down_proj, H, c->intermediate_size, Q35_WF_MLP);
    }
#undef ADD
    return n;
}

/* Rows [r0, r1) of a matrix (K a row) quantized to wt's blocks at dst (row layout). */
static int quantize_rows(const void *src, q35_wtype from, q35_wtype wt, int K, size_t r0, size_t r1, float *row, char *dst)
{
    for (size_t r = r0; r < r1; r++) {
        const size_t at = r * (size_t)K;
        if (from == WT_BF16)
            q35_bf16_to_f32_array((const uint16_t *)src + at, row, (size_t)K);
        else
            memcpy(row, (const float *)src + at, (size_t)K * sizeof(float));
        void *o = dst + q35_wtype_bytes(wt, (r - r0) * (size_t)K);
        if ((wt == WT_Q8_0 ? q35_quantize_row_q8_0(row, o, (size_t)K) : q35_quantize_row_q4_0(row, o, (size_t)K)))
            return -1;
    }
    return 0;
}

int q35_model_quantize(q35_model *m, q35_wtype wt, unsigned mask, char *err, size_t errlen)
{
    if (!q35_wtype_is_quant(wt)) { q35_errmsg(err, errlen, "quantize: %s is not a quantized type", q35_wtype_name(wt)); return -1; }
    const int want_r16 = q35_wtype_is_r16(wt);
    wt = q35_wtype_block(wt);
    if (m->qarena) { q35_errmsg(err, errlen, "quantize: the model is already quantized"); return -1; }
    if (!mask) mask = (1u << Q35_WF_COUNT) - 1;
    const q35_config *c = &m->local;
    const int nl = c->num_hidden_layers + (m->mtp.present ? 1 : 0);
    qmat *all = malloc(sizeof *all * ((size_t)nl * MAX_PER_LAYER + 1));
    if (!all) { q35_errmsg(err, errlen, "quantize: out of memory"); return -1; }
    int n = 0;
    for (int l = 0; l < nl; l++) {
        const int mtp = l == c->num_hidden_layers;
        q35_layer *L = mtp ? &m->mtp.layer : &m->layers[l];
        n += layer_mats(c, m->sh.e1 - m->sh.e0, L, mtp || c->layer_types[l] == Q35_LAYER_FULL, all + n);
    }
    qmat lm = {&m->lm_head, (size_t)m->sh.vocab_n, c->hidden_size, Q35_WF_LM_HEAD};
    all[n++] = lm;
    /* a family is quantized only if every one of its matrices is rows of whole blocks */
    unsigned present = 0;
    for (int i = 0; i < n; i++) present |= 1u << all[i].fam;
    unsigned ok = mask & present;
    for (int i = 0; i < n; i++)
        if (all[i].K % Q35_QBLOCK) ok &= ~(1u << all[i].fam);
    unsigned r16 = want_r16 ? ok : 0;
    for (int i = 0; i < n; i++)
        if (all[i].rows % Q35_R16) r16 &= ~(1u << all[i].fam);
    /* the experts' matrices are stacked: each expert, and the up half of its gate_up, must start on a group */
    if (c->is_moe && (c->moe_intermediate_size % Q35_R16 || c->shared_expert_intermediate_size % Q35_R16 ||
                      c->hidden_size % Q35_R16))
        r16 &= ~(1u << Q35_WF_MOE);
    /* the interleaved families first: q35_model_matrix_wt tells them by address */
    for (int i = 0, j = 0; i < n; i++)
        if ((r16 >> all[i].fam) & 1u) {
            const qmat t = all[i];
            memmove(all + j + 1, all + j, (size_t)(i - j) * sizeof *all);
            all[j++] = t;
        }
    size_t bytes = 0, r16_bytes = 0;
    for (int i = 0; i < n; i++)
        if ((ok >> all[i].fam) & 1u) {
            bytes += q35_wtype_bytes(wt, all[i].rows * (size_t)all[i].K);
            if ((r16 >> all[i].fam) & 1u) r16_bytes = bytes;
        }
    if (!bytes) { /* nothing to do (no selected family fits): the model stays as loaded */
        free(all);
        return 0;
    }
    char *arena = q35_alloc_huge(bytes);
    if (!arena) { free(all); q35_errmsg(err, errlen, "quantize: out of memory for %zu bytes", bytes); return -1; }
    size_t off = 0;
    int bad = -1;
    for (int i = 0; i < n && bad < 0; i++) {
        const qmat *q = &all[i];
        if (!((ok >> q->fam) & 1u)) continue;
        const void *src = *q->ptr;
        char *dst = arena + off;
        const q35_wtype from = m->wt;
        int failed = 0;
        const int inter = (r16 >> q->fam) & 1u;
        /* interleaved: each thread quantizes a group of 16 rows into its scratch, then packs it */
        const size_t step = inter ? Q35_R16 : 1;
#pragma omp parallel reduction(| : failed)
        {
            float *row = malloc((size_t)q->K * sizeof(float));
            char *grp = inter ? malloc(q35_wtype_bytes(wt, Q35_R16 * (size_t)q->K)) : NULL;
            if (!row || (inter && !grp)) failed = 1;
#pragma omp for schedule(static)
            for (size_t r = 0; r < q->rows; r += step) {
                if (failed) continue;
                char *o = dst + q35_wtype_bytes(wt, r * (size_t)q->K);
                if (quantize_rows(src, from, wt, q->K, r, r + step, row, inter ? grp : o))
                    failed = 1;
                else if (inter)
                    q35_r16_pack(grp, wt == WT_Q8_0, Q35_R16, (size_t)q->K, o);
            }
            free(row);
            free(grp);
        }
        if (failed) bad = i;
        *q->ptr = dst;
        /* the loaded copy: its whole pages back to the kernel, if it lies in the load arena and is not the
         * embedding table (tied lm_head), which the forward still reads rows of */
        const char *a0 = m->arena, *s0 = src, *s1 = s0 + q35_wtype_bytes(from, q->rows * (size_t)q->K);
        const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
        if (!failed && a0 && s0 >= a0 && s1 <= a0 + m->arena_bytes && src != m->embed) {
            const uintptr_t lo = ((uintptr_t)s0 + pg - 1) & ~(pg - 1), hi = (uintptr_t)s1 & ~(pg - 1);
            if (hi > lo && madvise((void *)lo, hi - lo, MADV_DONTNEED) == 0) m->weight_bytes -= hi - lo;
        }
        off += q35_wtype_bytes(wt, q->rows * (size_t)q->K);
    }
    if (bad >= 0) {
        q35_errmsg(err, errlen, "quantize: a block of a %s matrix cannot be quantized to %s (a non-finite value, or a "
                   "scale beyond fp16's range) or out of memory", family_names[all[bad].fam], q35_wtype_name(wt));
        free(all);
        /* the pointers moved so far point into the arena: the caller frees the model */
        m->qarena = arena, m->qarena_bytes = bytes;
        return -1;
    }
    free(all);
    m->qarena = arena, m->qarena_bytes = bytes;
    m->qwt = wt, m->qfamilies = ok, m->qr16 = r16, m->qr16_bytes = r16_bytes;
    m->weight_bytes += bytes; /* the quantized copies; the loaded ones stay allocated (see the top) */
    return 0;
}
