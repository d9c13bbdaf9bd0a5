/* layer_mlp.c - the MLP sublayer (docs/model.md §4): dense SwiGLU
 * x += down(silu(gate xn) * up xn), or the MoE family's block. */
#include "kernels/activation.h"
#include "model/forward_internal.h"

#include <stdlib.h>

static int dense(const q35_fwd *f, const q35_layer *L, const float *xn, float *x)
{
    const int H = f->m->local.hidden_size, I = f->m->local.intermediate_size, BT = f->BT; /* this rank's rows */
    const int threads = f->im->threads;
    const q35_wtype wt = q35_model_wt(f->m, Q35_WF_MLP);
    float *g = q35_state_scratch_unzeroed(f->s, 1, (size_t)BT * I * 2); /* both halves written whole by gate_up */
    if (!g) { snprintf(f->err, f->errlen, "mlp: out of memory"); return -1; }
    float *u = g + (size_t)BT * I;
    int rc = -1;
    const linear_problem gate_up[2] = {{.M = BT, .N = I, .K = H, .x = xn, .w = L->gate_proj, .wt = wt, .y = g},
                                       {.M = BT, .N = I, .K = H, .x = xn, .w = L->up_proj, .wt = wt, .y = u}};
    if (q35_fwd_linear_shared(f, gate_up, 2)) goto out;
#pragma omp parallel for num_threads(threads > 0 ? threads : omp_get_max_threads()) schedule(static) if (BT > 1)
    for (int r = 0; r < BT; r++) q35_act_silu_mul(g + (size_t)r * I, u + (size_t)r * I, (size_t)I);
    rc = q35_fwd_reduce_into(f, BT, H, I, g, L->down_proj, wt, x);
out:
    return rc;
}

static int sparse(const q35_fwd *f, const q35_layer *L, const float *xn, float *x)
{
    const q35_config *c = &f->m->local; /* this rank's experts and intermediate rows (model/shard.h) */
    const int H = c->hidden_size, I = c->moe_intermediate_size, BT = f->BT;
    const q35_wtype wt = q35_model_wt(f->m, Q35_WF_MOE);
    float *y = q35_state_scratch(f->s, 1, (size_t)BT * H);
    if (!y) { snprintf(f->err, f->errlen, "moe: out of memory"); return -1; }
    moe_problem p = {.T = BT, .hidden = H, .E = c->num_experts, .top_k = c->num_experts_per_tok, .inter = I,
                     .inter_shared = c->shared_expert_intermediate_size, .norm_topk_prob = c->norm_topk_prob,
                     .x = xn, .wt = wt, .router_wt = f->m->wt, .router = L->router, .gate_proj = L->experts_gate_up,
                     .up_proj = (const char *)L->experts_gate_up + q35_wtype_bytes(wt, (size_t)I * H),
                     .expert_stride_gu = (size_t)2 * I * H, .down_proj = L->experts_down,
                     .shared_gate = L->shared_gate, .shared_up = L->shared_up, .shared_down = L->shared_down,
                     .shared_expert_gate = L->shared_expert_gate, .out = y,
                     /* expert parallelism: this rank's experts only (all of them otherwise) */
                     .expert_lo = f->m->sh.e0, .expert_hi = f->m->sh.e1};
    moe_stats st;
    int rc = moe_run(f->im->moe, &p, &(moe_opts){.threads = f->im->threads}, &st, f->err, f->errlen);
    if (!rc) rc = q35_fwd_add_reduced(f, y, (size_t)BT * H, x);
    return rc;
}

int q35_layer_mlp(const q35_fwd *f, const q35_layer *L, const float *xn, float *x)
{
    return f->m->cfg.is_moe ? sparse(f, L, xn, x) : dense(f, L, xn, x);
}
