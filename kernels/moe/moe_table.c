/* The MoE implementation table, problem validation and dispatch.
 *
 * A new implementation is one new file plus one line in moe_impls[].  The
 * tolerances are normwise errors of `out` against ref (docs/moe.md §5): the
 * weights are the same exact values in ref and in the kernels (bf16 is
 * converted exactly), so only the fp32 accumulation order separates them and
 * bf16 weights do not widen the tolerance (except for the lossy entries at the end, which
 * round activations to bf16 on bf16 weights).
 */
#include "common/clock.h"
#include "common/sde_counters.h"
#include "kernels/moe/moe.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* bf16 weights through the BF16-dot / AMX matmul: x and then the SwiGLU intermediate
 * h = silu(g) * u are rounded to bf16 (2^-9 relative each) before the expert GEMMs, so every
 * expert's output carries two roundings, the second one after g and u have already moved (the
 * linear entries round once and claim 2^-8).  Measured normwise error of out against ref: worst
 * 5.2e-3 over `q35lab check moe` (132 cells; T=1 H=64 E=64 k=2, empty-expert) and 4.1e-3 over
 * tests/test_moe.c's grids, the small-T, k=1 cases worst (few elements, no averaging); a typical
 * Qwen-like batch (T=333 H=256 I=128) is 2.9e-3.  The claim 2^-6 = 1.56e-2 is 3x the worst. */
#define TOL_BF16DOT 0x1p-6

const moe_impl moe_impls[] = {
    {"per_token", "for each token, its k experts as matrix-vector products",
     moe_per_token, {0}, 1e-5, 1e-5, NULL, 0},
    {"grouped", "tokens sorted by expert, one GEMM pair per expert, experts over threads largest first",
     moe_grouped, {0}, 1e-5, 1e-5, NULL, 0},
    {"blockwise", "each expert's rows padded to fixed blocks, one GEMM per block (MegaBlocks/Neuron layout)",
     moe_blockwise, {.block = 64}, 1e-5, 1e-5, NULL, 0},
    /* Lossy, opt-in (last in the table: `validate --impl all` leaves them out).  fp32 / quantized
     * weights run grouped's exact path (as linear tiled-bf16dot does for fp32 W: nothing to gain
     * from rounding x alone), hence tol_f32 1e-5.  bf16 weights: TOL_BF16DOT, above. */
    {"grouped-bf16dot", "grouped with the expert GEMMs on x and the SwiGLU intermediate rounded to bf16, "
     "vdpbf16ps (emulated without AVX512_BF16); lossy, opt-in", moe_grouped_bf16dot, {0}, 1e-5, TOL_BF16DOT, NULL, 1},
    {"grouped-amx", "grouped with the expert GEMMs on AMX tdpbf16ps tiles (grouped-bf16dot's path without AMX "
     "or below 16 rows); lossy, opt-in", moe_grouped_amx, {0}, 1e-5, TOL_BF16DOT, NULL, 1},
    /* Lossy on Q8_0 / Q4_0 weights only (x and the SwiGLU intermediate quantized per 32-element
     * block, integer dots; docs/quantization.md §4), which tests/test_int8dot.c holds to 2^-5
     * normwise against ref (measured up to 1.2e-2: two roundings); fp32 and bf16 weights run grouped's exact path, hence 1e-5 for both. */
    {"grouped-int8dot", "grouped with the expert GEMMs on q8_0 / q4_0 weights as integer dots (x and the SwiGLU "
     "intermediate quantized per 32-block; VNNI vpdpbusd, AVX2 vpmaddubsw, C) below 64 rows per expert; lossy, "
     "opt-in", moe_grouped_int8dot, {0}, 1e-5, 1e-5, NULL, 1},
};
const int moe_n_impls = (int)(sizeof moe_impls / sizeof moe_impls[0]);

const moe_impl *moe_find(const char *name)
{
    if (!name) return NULL;
    for (int i = 0; i < moe_n_impls; i++)
        if (!strcmp(moe_impls[i].name, name)) return &moe_impls[i];
    return NULL;
}

#define FAIL(...) do { if (err && errlen) snprintf(err, errlen, __VA_ARGS__); return -1; } while (0)

/* Each dimension at most 2^24, as the golden loader accepts; products are size_t. */
#define MOE_MAX_DIM (1 << 24)

int moe_validate(const moe_problem *p, int check_values, char *err, size_t errlen)
{
    if (!p) FAIL("moe: no problem given");
    const struct { const char *name; int v; } dims[] = {
        {"T", p->T}, {"hidden", p->hidden}, {"E", p->E}, {"inter", p->inter}};
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++) {
        if (dims[i].v < 1) FAIL("moe: %s=%d must be positive (T=%d hidden=%d E=%d inter=%d)", dims[i].name, dims[i].v,
                                p->T, p->hidden, p->E, p->inter);
        if (dims[i].v > MOE_MAX_DIM) FAIL("moe: %s=%d exceeds 2^24", dims[i].name, dims[i].v);
    }
    if (p->inter_shared < 0) FAIL("moe: inter_shared=%d (Is, the shared expert's intermediate size) must be >= 0", p->inter_shared);
    if (p->inter_shared > MOE_MAX_DIM) FAIL("moe: inter_shared=%d exceeds 2^24", p->inter_shared);
    if (p->top_k < 1) FAIL("moe: top_k=%d must be at least 1", p->top_k);
    if (p->top_k > p->E) FAIL("moe: top_k=%d exceeds E=%d", p->top_k, p->E);
    if ((unsigned)p->wt >= Q35_WT_COUNT)
        FAIL("moe: weight dtype %d is none of WT_F32, WT_BF16, WT_Q8_0, WT_Q4_0, WT_Q8_0_R16, WT_Q4_0_R16", (int)p->wt);
    if (q35_wtype_is_quant(p->wt) && p->router_wt != WT_F32 && p->router_wt != WT_BF16)
        FAIL("moe: with %s weights the router and shared-expert gate dtype (router_wt %d) must be WT_F32 or WT_BF16",
             q35_wtype_name(p->wt), (int)p->router_wt);
    /* quantized: every matrix row (hidden or inter long) and every expert offset whole 32-weight blocks */
    if (q35_wtype_is_quant(p->wt) && (p->hidden % Q35_QBLOCK || p->inter % Q35_QBLOCK || p->inter_shared % Q35_QBLOCK ||
                                      p->expert_stride_gu % Q35_QBLOCK))
        FAIL("moe: %s weights need hidden=%d, inter=%d, inter_shared=%d and the gate_up stride to be multiples of %d",
             q35_wtype_name(p->wt), p->hidden, p->inter, p->inter_shared, Q35_QBLOCK);
    /* interleaved rows (docs/quantization.md §8): every expert, its up half and every slice of rows start on a
     * group of 16 rows (moe.h's offsets, moe_per_token's slices of 32), every matrix is whole groups */
    if (q35_wtype_is_r16(p->wt) && (p->hidden % Q35_R16 || p->inter % Q35_R16 || p->inter_shared % Q35_R16 ||
                                    (p->expert_stride_gu && p->expert_stride_gu % ((size_t)Q35_R16 * p->hidden))))
        FAIL("moe: %s weights interleave 16 rows: hidden=%d, inter=%d, inter_shared=%d and the gate_up stride in rows "
             "must be multiples of 16", q35_wtype_name(p->wt), p->hidden, p->inter, p->inter_shared);
    const struct { const char *name; const void *ptr; } need[] = {
        {"x", p->x}, {"router", p->router}, {"gate_proj", p->gate_proj}, {"up_proj", p->up_proj},
        {"down_proj", p->down_proj}, {"out", p->out}};
    for (size_t i = 0; i < sizeof need / sizeof *need; i++)
        if (!need[i].ptr) FAIL("moe: missing tensor '%s'", need[i].name);
    const struct { const char *name; const void *ptr; } shared[] = {
        {"shared_gate", p->shared_gate}, {"shared_up", p->shared_up}, {"shared_down", p->shared_down},
        {"shared_expert_gate", p->shared_expert_gate}};
    for (size_t i = 0; i < sizeof shared / sizeof *shared; i++) {
        if (p->inter_shared > 0 && !shared[i].ptr) FAIL("moe: inter_shared=%d but the shared expert tensor '%s' is missing", p->inter_shared, shared[i].name);
        if (p->inter_shared == 0 && shared[i].ptr)
            FAIL("moe: shared expert tensor '%s' is given but inter_shared=0 (set it to the shared intermediate size Is)", shared[i].name);
    }
    if (p->expert_hi && (p->expert_lo < 0 || p->expert_lo >= p->expert_hi || p->expert_hi > p->E))
        FAIL("moe: experts held [%d, %d) is not a non-empty range inside [0, E=%d)", p->expert_lo, p->expert_hi, p->E);
    if (!p->expert_hi && p->expert_lo) FAIL("moe: expert_lo=%d without expert_hi", p->expert_lo);
    if (p->expert_stride_gu && p->expert_stride_gu < (size_t)p->inter * p->hidden)
        FAIL("moe: expert_stride_gu=%zu is smaller than inter*hidden=%zu (0 means separate [E,I,hidden] tensors)",
             p->expert_stride_gu, (size_t)p->inter * p->hidden);
    if (check_values) {
        const size_t n = (size_t)p->T * p->hidden;
        for (size_t i = 0; i < n; i++)
            if (!isfinite(p->x[i]))
                FAIL("moe: input 'x' has a non-finite value (%g) at token %zu, element %zu", p->x[i],
                     i / p->hidden, i % p->hidden);
    }
    return 0;
}

/* docs/moe.md eq. (10): useful flops, a multiply-add counted as 2; softmax,
 * SiLU, the gating products and the weighted sum are not counted. */
long long moe_work_flops(const moe_problem *p)
{
    const long long H = p->hidden;
    long long per_token = 2LL * p->E * H + (long long)p->top_k * 3 * 2 * (long long)p->inter * H;
    if (p->inter_shared > 0) per_token += 3LL * 2 * p->inter_shared * H + 2 * H;
    return (long long)p->T * per_token;
}

/* docs/moe.md eq. (11): each weight read once: the router, the gate, up and
 * down matrices of every touched expert, and the whole shared expert. */
long long moe_work_weight_bytes(const moe_problem *p, int experts_touched)
{
    const long long H = p->hidden;
    long long elems = (long long)experts_touched * 3 * p->inter * H, gates = (long long)p->E * H;
    if (p->inter_shared > 0) elems += 3LL * p->inter_shared * H, gates += H;
    /* every matrix is whole rows of blocks; the router and shared-expert gate in their own dtype */
    return (long long)q35_wtype_bytes(p->wt, (size_t)elems) + (long long)q35_wtype_bytes(moe_router_wt(p), (size_t)gates);
}

int moe_run(const moe_impl *impl, const moe_problem *p, const moe_opts *opts, moe_stats *st, char *err,
            size_t errlen)
{
    if (!impl) FAIL("moe: no implementation given");
    if (impl->available && !impl->available())
        FAIL("moe: implementation '%s' is not supported on this CPU", impl->name);
    if (moe_validate(p, 0, err, errlen)) return -1;
    moe_opts o = impl->defaults;
    if (opts) {
        if (opts->block) o.block = opts->block;
        if (opts->threads) o.threads = opts->threads;
    }
    if (o.block < 0 || o.block > 65536) FAIL("moe: block size %d outside [1, 65536] (0: default)", o.block);
    if (o.threads < 0) FAIL("moe: thread count %d is negative", o.threads);
    moe_stats local;
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    const double t0 = q35_now();
    if (impl->run(p, &o, st)) FAIL("moe: implementation '%s' failed (out of memory?)", impl->name);
    q35_sde_add_since(Q35_SDE_MOE_NS, t0);
    q35_sde_add(Q35_SDE_FLOPS, moe_work_flops(p));
    q35_sde_add(Q35_SDE_WEIGHT_BYTES_READ, moe_work_weight_bytes(p, st->experts_touched));
    q35_sde_add(Q35_SDE_TOKENS, p->T);
    q35_sde_add(Q35_SDE_EXPERT_ROWS, st->rows);
    return 0;
}
