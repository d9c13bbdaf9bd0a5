/* layer_deltanet.c - the Gated DeltaNet sublayer (docs/model.md §2, eqs. 4-7):
 *   [q k v] = conv_silu(in_proj_qkv xn)   (conv state carried)
 *   beta = sigmoid(in_proj_b xn),  g = -exp(A_log) softplus(in_proj_a xn + dt_bias)
 *   o = deltarule(l2norm(q), l2norm(k), v, g, beta)   (state carried)
 *   x += out_proj( rmsnorm_gated(o, w, silu(in_proj_z xn)) )
 */
#include "model/forward_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* softplus with torch's threshold (x > 20 returns x), in double. */
static float softplus(double x) { return (float)(x > 20.0 ? x : log1p(exp(x))); }

int q35_layer_deltanet(const q35_fwd *f, int l, const float *xn, float *x)
{
    const q35_config *c = &f->m->local; /* this rank's heads (model/shard.h) */
    const q35_layer *L = &f->m->layers[l];
    const int H = c->hidden_size, Hk = c->linear_num_key_heads, Hv = c->linear_num_value_heads;
    const int Dk = c->linear_key_head_dim, Dv = c->linear_value_head_dim, K = c->linear_conv_kernel_dim;
    const int kd = Hk * Dk, vd = Hv * Dv, C = 2 * kd + vd, BT = f->BT;
    const int threads = f->im->threads;

    /* not zeroed: every array below is written whole before it is read (the projections, the conv
     * and the delta rule write their padding rows too, as zeros; the copies and gates run every row) */
    float *buf = q35_state_scratch_unzeroed(f->s, 1, (size_t)BT * (2 * C + 2 * kd + 3 * vd + 4 * Hv));
    if (!buf) { snprintf(f->err, f->errlen, "layer %d: out of memory", l); return -1; }
    float *qkv = buf, *cq = qkv + (size_t)BT * C, *z = cq + (size_t)BT * C;
    float *q = z + (size_t)BT * vd, *k = q + (size_t)BT * kd, *v = k + (size_t)BT * kd;
    float *o = v + (size_t)BT * vd, *bl = o + (size_t)BT * vd, *al = bl + (size_t)BT * Hv;
    float *beta = al + (size_t)BT * Hv, *g = beta + (size_t)BT * Hv;
    (void)H;
    int rc = -1;
    const q35_wtype wt = q35_model_wt(f->m, Q35_WF_DELTANET);
    const linear_problem in_proj[4] = {
        {.M = BT, .N = C, .K = H, .x = xn, .w = L->in_proj_qkv, .wt = wt, .y = qkv},
        {.M = BT, .N = vd, .K = H, .x = xn, .w = L->in_proj_z, .wt = wt, .y = z},
        {.M = BT, .N = Hv, .K = H, .x = xn, .w = L->in_proj_b, .wt = wt, .y = bl},
        {.M = BT, .N = Hv, .K = H, .x = xn, .w = L->in_proj_a, .wt = wt, .y = al}};
    if (q35_fwd_linear_shared(f, in_proj, 4)) goto out;

    conv_problem cp = CONV_PROBLEM_INIT;
    cp.B = f->B; cp.T = f->T; cp.C = C; cp.K = K;
    cp.x = qkv; cp.weight = L->conv_w; cp.state_in = cp.state_out = f->s->conv[l];
    cp.seq_len = f->seq_len; cp.y = cq;
    if (f->checkpoints) { /* the windows a rollback may return to (state.h) */
        cp.n_checkpoints = f->checkpoints;
        cp.checkpoint_t = f->s->ckpt_t;
        cp.checkpoint_states = f->s->conv_ckpt[l];
    }
    if (conv_run(f->im->conv, &cp, &(conv_opts){.threads = threads}, f->err, f->errlen)) goto out;

#pragma omp parallel for num_threads(threads > 0 ? threads : omp_get_max_threads()) schedule(static) if (BT > 1) /* one row: no fork */
    for (int r = 0; r < BT; r++) {
        memcpy(q + (size_t)r * kd, cq + (size_t)r * C, (size_t)kd * sizeof(float));
        memcpy(k + (size_t)r * kd, cq + (size_t)r * C + kd, (size_t)kd * sizeof(float));
        memcpy(v + (size_t)r * vd, cq + (size_t)r * C + 2 * kd, (size_t)vd * sizeof(float));
        for (int h = 0; h < Hv; h++) {
            const size_t i = (size_t)r * Hv + h;
            beta[i] = q35_sigmoid(bl[i]);
            g[i] = (float)(-exp((double)L->A_log[h]) * softplus((double)al[i] + L->dt_bias[h]));
        }
    }

    deltarule_problem dp = {.B = f->B, .T = f->T, .Hk = Hk, .Hv = Hv, .Dk = Dk, .Dv = Dv,
                            .q = q, .k = k, .v = v, .g = g, .beta = beta,
                            .initial_state = f->s->delta[l], .final_state = f->s->delta[l],
                            .seq_len = f->seq_len, .out = o, .use_qk_l2norm = 1,
                            .n_checkpoints = f->checkpoints, .checkpoint_t = f->s->ckpt_t,
                            .checkpoint_states = f->checkpoints ? f->s->delta_ckpt[l] : NULL};
    const deltarule_impl *dr = f->T == 1 ? f->im->deltarule_decode : f->im->deltarule;
    if (deltarule_run(dr, &dp, &(deltarule_opts){.threads = threads, .crossover = f->im->dr_crossover}, f->err, f->errlen)) goto out;

#pragma omp parallel for num_threads(threads > 0 ? threads : omp_get_max_threads()) schedule(static)
    for (int r = 0; r < BT * Hv; r++)
        q35_rmsnorm_gated(o + (size_t)r * Dv, L->gnorm, z + (size_t)r * Dv, Dv, c->rms_norm_eps);

    rc = q35_fwd_reduce_into(f, BT, H, vd, o, L->out_proj, wt, x);
out:
    return rc;
}
