/* The delta-rule backward's implementation table, validation and dispatch.
 *
 * A new implementation is one new file plus one line in
 * deltarule_grad_impls[].  claim_tol is measured against ref/deltarule_grad_ref.c
 * (tests/test_deltarule_grad.c holds every entry to it, per gradient).
 */
#include "common/sde_counters.h"
#include "common/float_checks.h"
#include "kernels/deltarule/deltarule_grad.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

const deltarule_grad_impl deltarule_grad_impls[] = {
    /* claim_tol: worst normwise error per gradient against ref measured by
     * tests/test_deltarule_grad.c over every regime and its shape grid
     * (docs/deltarule.md "Backward"), with margin. */
    {"recurrent", "reverse sweep token by token, states recomputed from a checkpoint every `chunk` tokens",
     deltarule_grad_recurrent, {.chunk = 64}, DR_CLAIM_ALL, 1e-5, NULL, NULL},
    {"chunked", "chunkwise WY form: chunk-boundary states kept, chunks recomputed and backpropagated with BLAS",
     deltarule_grad_chunked, {.chunk = 64}, DR_CLAIM_ALL, 1e-5, NULL, deltarule_grad_chunked_workspace},
    {"auto", "the faster of recurrent / chunked for this T (measured crossover; without one, chunked from T = 2)",
     deltarule_grad_auto, {0}, DR_CLAIM_ALL, 1e-5, NULL, deltarule_grad_auto_workspace},
};
const int deltarule_grad_n_impls = (int)(sizeof deltarule_grad_impls / sizeof deltarule_grad_impls[0]);

const deltarule_grad_impl *deltarule_grad_find(const char *name)
{
    if (!name) return NULL;
    for (int i = 0; i < deltarule_grad_n_impls; i++)
        if (!strcmp(deltarule_grad_impls[i].name, name)) return &deltarule_grad_impls[i];
    return NULL;
}

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return -1; } while (0)

int deltarule_grad_validate(const deltarule_grad_problem *p, int check_values, char *err, size_t errlen)
{
    if (!p) FAIL("deltarule_grad: no problem given");
    if (!p->fwd) FAIL("deltarule_grad: no forward problem given");
    /* The forward's out is not read by the backward; validate a copy that has one. */
    deltarule_problem f = *p->fwd;
    float dummy;
    if (!f.out) f.out = &dummy;
    f.n_checkpoints = 0; /* checkpoint fields are not read either */
    if (deltarule_validate(&f, check_values, err, errlen)) return -1;
    const struct { const char *name; const void *ptr; } need[] = {
        {"d_out", p->d_out}, {"dq", p->dq}, {"dk", p->dk}, {"dv", p->dv}, {"dg", p->dg}, {"dbeta", p->dbeta}};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (!need[i].ptr) FAIL("deltarule_grad: missing tensor '%s'", need[i].name);
    if (f.initial_state && !p->d_initial_state)
        FAIL("deltarule_grad: the forward has an initial_state, so d_initial_state is required");
    if (check_values) {
        const size_t nv = (size_t)f.B * f.T * f.Hv * f.Dv, ns = (size_t)f.B * f.Hv * f.Dk * f.Dv;
        size_t at;
        if (q35_first_nonfinite(p->d_out, nv, &at))
            FAIL("deltarule_grad: input 'd_out' has a non-finite value (%g) at flat index %zu", p->d_out[at], at);
        if (p->d_final_state && q35_first_nonfinite(p->d_final_state, ns, &at))
            FAIL("deltarule_grad: input 'd_final_state' has a non-finite value (%g) at flat index %zu",
                 p->d_final_state[at], at);
    }
    return 0;
}

/* Software-defined counters (docs/counters.md): the useful work of the
 * backward, the same for every implementation.  Flops per valid token and
 * value head: the forward recurrence it needs (u and the write, 4 Dk Dv) and
 * the reverse sweep (B1)-(B6) of docs/deltarule.md (dq̂, dS += q̂ doᵀ, dδ, dk̂
 * twice, dS', dg: 2 Dk Dv each, the decay of dS: Dk Dv), 18 Dk Dv in all.
 * State bytes: initial state and d_final_state read, d_initial_state
 * written; input bytes: q, k, v, g, beta, d_out read once and dq, dk, dv,
 * dg, dbeta written once, counted like the forward's weight bytes. */
static void count_work(const deltarule_grad_problem *p)
{
    const deltarule_problem *f = p->fwd;
    long long tokens = 0;
    for (int b = 0; b < f->B; b++) tokens += deltarule_valid_len(f, b);
    const long long state = 4LL * f->B * f->Hv * f->Dk * f->Dv;
    q35_sde_add(Q35_SDE_TOKENS, tokens);
    q35_sde_add(Q35_SDE_FLOPS, 18LL * f->Dk * f->Dv * f->Hv * tokens);
    q35_sde_add(Q35_SDE_STATE_BYTES_READ, (f->initial_state ? state : 0) + (p->d_final_state ? state : 0));
    q35_sde_add(Q35_SDE_STATE_BYTES_WRITTEN, f->initial_state ? state : 0);
    q35_sde_add(Q35_SDE_WEIGHT_BYTES_READ,
                2 * 4LL * tokens * (2LL * f->Hk * f->Dk + 2LL * f->Hv * f->Dv + 2LL * f->Hv));
}

size_t deltarule_grad_workspace_bytes(const deltarule_grad_impl *impl, const deltarule_grad_problem *p,
                                      const deltarule_opts *opts)
{
    if (!impl || !impl->workspace || !p || !p->fwd) return 0;
    const deltarule_opts o = deltarule_opts_merge(&impl->defaults, opts);
    return impl->workspace(p, &o);
}

int deltarule_grad_run(const deltarule_grad_impl *impl, const deltarule_grad_problem *p, const deltarule_opts *opts,
                       deltarule_grad_stats *st, char *err, size_t errlen)
{
    if (!impl) FAIL("deltarule_grad: no implementation given");
    if (impl->available && !impl->available())
        FAIL("deltarule_grad: implementation '%s' is not supported on this CPU", impl->name);
    if (deltarule_grad_validate(p, 0, err, errlen)) return -1;
    const deltarule_opts o = deltarule_opts_merge(&impl->defaults, opts);
    if (o.chunk < 0 || o.chunk > 1024) FAIL("deltarule_grad: chunk size %d outside [1, 1024]", o.chunk);
    if (o.neumann_order < 0) FAIL("deltarule_grad: Neumann order %d is negative", o.neumann_order);
    if (o.threads < 0) FAIL("deltarule_grad: thread count %d is negative", o.threads);
    if (p->workspace) {
        const size_t need = impl->workspace ? impl->workspace(p, &o) : 0;
        if ((uintptr_t)p->workspace % 64)
            FAIL("deltarule_grad: the workspace is not 64-byte aligned");
        if (p->workspace_bytes < need)
            FAIL("deltarule_grad: a workspace of %zu bytes is given, '%s' needs %zu for this problem "
                 "(deltarule_grad_workspace_bytes)", p->workspace_bytes, impl->name, need);
    }
    deltarule_grad_stats local = {0};
    if (impl->run(p, &o, st ? st : &local))
        FAIL("deltarule_grad: implementation '%s' failed (out of memory?)", impl->name);
    count_work(p);
    return 0;
}
