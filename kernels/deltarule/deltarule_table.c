/* The delta-rule implementation table, problem validation and dispatch.
 *
 * A new implementation is one new file plus one line in deltarule_impls[].
 * Claims are measured facts (docs/deltarule.md, "Measured errors"): an entry
 * claims a regime only where `q35lab check deltarule` shows it holds
 * claim_tol there.
 */
#include "common/clock.h"
#include "common/sde_counters.h"
#include "common/float_checks.h"
#include "kernels/deltarule/deltarule.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Regimes the dense Neumann product holds in fp32: everything except keys
 * that are correlated or repeated, where the powers of A must cancel
 * (docs/deltarule.md eq. (14) and its measured table: 8e-1 and 2e-1 there
 * at C = 64). */
#define NEUMANN_DENSE_CLAIMS \
    (DR_CLAIM_ALL & ~(DR_CLAIM(DR_REGIME_CORRELATED_KEYS) | DR_CLAIM(DR_REGIME_REPEATED_TOKENS)))

#define FWDSUB_SOLVERS (DR_SOLVER_BIT(DR_SOLVER_FWDSUB) | DR_SOLVER_BIT(DR_SOLVER_FWDSUB_BLOCKED))
#define NEUMANN_SOLVERS (DR_SOLVER_BIT(DR_SOLVER_NEUMANN_DENSE) | DR_SOLVER_BIT(DR_SOLVER_NEUMANN_BLOCKED))

const deltarule_impl deltarule_impls[] = {
    {"recurrent", "token by token, column blocks of the state in L1, SIMD + OpenMP",
     deltarule_recurrent, {0}, DR_CLAIM_ALL, 1e-5, NULL, 0},
    {"recurrent-pairs", "recurrent, two tokens per pass over each column block (half the state stores)",
     deltarule_recurrent, {.sweep_tokens = 2}, DR_CLAIM_ALL, 1e-5, NULL, 0},
    {"chunked", "chunkwise WY form, dense forward substitution, BLAS GEMMs",
     deltarule_chunked, {.chunk = 64, .solver = DR_SOLVER_FWDSUB}, DR_CLAIM_ALL, 1e-5, NULL, FWDSUB_SOLVERS},
    {"chunked-blocked", "chunkwise WY form, 16x16 blocked forward substitution",
     deltarule_chunked, {.chunk = 64, .solver = DR_SOLVER_FWDSUB_BLOCKED}, DR_CLAIM_ALL, 1e-5, NULL, FWDSUB_SOLVERS},
    {"neumann", "chunkwise, Neumann product on 16x16 blocks merged by block GEMMs",
     deltarule_neumann, {.chunk = 64, .solver = DR_SOLVER_NEUMANN_BLOCKED}, DR_CLAIM_ALL, 1e-5, NULL, NEUMANN_SOLVERS},
    {"neumann-dense", "chunkwise, dense Neumann product (I-A)(I+A^2)(I+A^4)... over the chunk",
     deltarule_neumann, {.chunk = 64, .solver = DR_SOLVER_NEUMANN_DENSE}, NEUMANN_DENSE_CLAIMS, 1e-5, NULL, NEUMANN_SOLVERS},
    {"auto", "the fastest of recurrent / chunked for this T and thread count (measured crossover)",
     deltarule_auto, {0}, DR_CLAIM_ALL, 1e-5, NULL, 0},
};
const int deltarule_n_impls = (int)(sizeof deltarule_impls / sizeof deltarule_impls[0]);

const char *deltarule_solver_name(int solver)
{
    switch (solver) {
    case DR_SOLVER_FWDSUB: return "fwdsub";
    case DR_SOLVER_FWDSUB_BLOCKED: return "fwdsub-blocked";
    case DR_SOLVER_NEUMANN_DENSE: return "neumann-dense";
    case DR_SOLVER_NEUMANN_BLOCKED: return "neumann-blocked";
    default: return "?";
    }
}

const deltarule_impl *deltarule_find(const char *name)
{
    for (int i = 0; i < deltarule_n_impls; i++)
        if (!strcmp(deltarule_impls[i].name, name)) return &deltarule_impls[i];
    return NULL;
}

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return -1; } while (0)

int deltarule_validate(const deltarule_problem *p, int check_values, char *err, size_t errlen)
{
    if (!p) FAIL("deltarule: no problem given");
    if (p->B <= 0 || p->T <= 0 || p->Hk <= 0 || p->Hv <= 0 || p->Dk <= 0 || p->Dv <= 0)
        FAIL("deltarule: every dimension must be positive (B=%d T=%d Hk=%d Hv=%d Dk=%d Dv=%d)",
             p->B, p->T, p->Hk, p->Hv, p->Dk, p->Dv);
    if (p->Hv % p->Hk)
        FAIL("deltarule: Hv=%d is not a multiple of Hk=%d (value heads repeat key heads)", p->Hv, p->Hk);
    if (p->Dv > 1 << 16 || p->Dk > 1 << 16)
        FAIL("deltarule: head dimensions Dk=%d Dv=%d are larger than 65536", p->Dk, p->Dv);
    const struct { const char *name; const void *ptr; } need[] = {
        {"q", p->q}, {"k", p->k}, {"v", p->v}, {"g", p->g}, {"beta", p->beta}, {"out", p->out}};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (!need[i].ptr) FAIL("deltarule: missing tensor '%s'", need[i].name);
    if (!isfinite(p->scale) || p->scale < 0) FAIL("deltarule: scale %g is not a finite non-negative number", p->scale);
    if (p->seq_len)
        for (int b = 0; b < p->B; b++)
            if (p->seq_len[b] < 0 || p->seq_len[b] > p->T)
                FAIL("deltarule: seq_len[%d]=%d outside [0, T=%d]", b, p->seq_len[b], p->T);
    if (p->n_checkpoints < 0 || p->n_checkpoints > p->T)
        FAIL("deltarule: n_checkpoints=%d outside [0, T=%d]", p->n_checkpoints, p->T);
    if (p->n_checkpoints > 0) {
        if (!p->checkpoint_t) FAIL("deltarule: n_checkpoints=%d but no checkpoint_t", p->n_checkpoints);
        if (!p->checkpoint_states) FAIL("deltarule: n_checkpoints=%d but no checkpoint_states", p->n_checkpoints);
        for (int i = 0; i < p->n_checkpoints; i++) {
            if (p->checkpoint_t[i] < 0 || p->checkpoint_t[i] >= p->T)
                FAIL("deltarule: checkpoint_t[%d]=%d outside [0, T=%d)", i, p->checkpoint_t[i], p->T);
            if (i > 0 && p->checkpoint_t[i] <= p->checkpoint_t[i - 1])
                FAIL("deltarule: checkpoint_t[%d]=%d is not after checkpoint_t[%d]=%d (strictly ascending)", i,
                     p->checkpoint_t[i], i - 1, p->checkpoint_t[i - 1]);
        }
    }
    if (check_values) {
        const size_t nqk = (size_t)p->B * p->T * p->Hk * p->Dk, nv = (size_t)p->B * p->T * p->Hv * p->Dv;
        const size_t ng = (size_t)p->B * p->T * p->Hv, ns = (size_t)p->B * p->Hv * p->Dk * p->Dv;
        const struct { const char *name; const float *x; size_t n; } t[] = {
            {"q", p->q, nqk}, {"k", p->k, nqk}, {"v", p->v, nv}, {"g", p->g, ng},
            {"beta", p->beta, ng}, {"initial_state", p->initial_state, p->initial_state ? ns : 0}};
        size_t at;
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
            if (q35_first_nonfinite(t[i].x, t[i].n, &at))
                FAIL("deltarule: input '%s' has a non-finite value (%g) at flat index %zu",
                     t[i].name, t[i].x[at], at);
        for (size_t i = 0; i < ng; i++)
            if (p->g[i] > 0)
                FAIL("deltarule: g[%zu]=%g is positive; g is a log-decay and must be <= 0", i, p->g[i]);
    }
    return 0;
}

/* Software-defined counters (docs/counters.md): the useful work of the
 * problem, the same for every implementation.  Flops in the recurrent form,
 * 6*Dk*Dv per valid token and value head (docs/deltarule.md §5); bytes are
 * each datum once. */
static void count_work(const deltarule_problem *p)
{
    long long tokens = 0;
    for (int b = 0; b < p->B; b++) tokens += deltarule_valid_len(p, b);
    const long long state = 4LL * p->B * p->Hv * p->Dk * p->Dv;
    q35_sde_add(Q35_SDE_TOKENS, tokens);
    q35_sde_add(Q35_SDE_FLOPS, 6LL * p->Dk * p->Dv * p->Hv * tokens);
    q35_sde_add(Q35_SDE_STATE_BYTES_READ, p->initial_state ? state : 0);
    q35_sde_add(Q35_SDE_STATE_BYTES_WRITTEN, (p->final_state ? state : 0) + p->n_checkpoints * state);
    q35_sde_add(Q35_SDE_WEIGHT_BYTES_READ, 4LL * tokens * (2LL * p->Hk * p->Dk + (long long)p->Hv * p->Dv + 2LL * p->Hv));
}

deltarule_opts deltarule_opts_merge(const deltarule_opts *defaults, const deltarule_opts *opts)
{
    deltarule_opts o = *defaults;
    if (opts) {
        if (opts->chunk) o.chunk = opts->chunk;
        if (opts->solver) o.solver = opts->solver;
        if (opts->neumann_order) o.neumann_order = opts->neumann_order;
        if (opts->threads) o.threads = opts->threads;
        if (opts->sweep_tokens) o.sweep_tokens = opts->sweep_tokens;
        if (opts->crossover) o.crossover = opts->crossover;
        if (opts->checkpoint_mode) o.checkpoint_mode = opts->checkpoint_mode;
    }
    return o;
}

int deltarule_run(const deltarule_impl *impl, const deltarule_problem *p,
                  const deltarule_opts *opts, char *err, size_t errlen)
{
    if (!impl) FAIL("deltarule: no implementation given");
    if (impl->available && !impl->available())
        FAIL("deltarule: implementation '%s' is not supported on this CPU", impl->name);
    if (deltarule_validate(p, 0, err, errlen)) return -1;
    const deltarule_opts o = deltarule_opts_merge(&impl->defaults, opts);
    if (o.chunk < 0 || o.chunk > 1024) FAIL("deltarule: chunk size %d outside [1, 1024]", o.chunk);
    if (o.neumann_order < 0) FAIL("deltarule: Neumann order %d is negative", o.neumann_order);
    if (o.threads < 0) FAIL("deltarule: thread count %d is negative", o.threads);
    if (o.sweep_tokens < 0 || o.sweep_tokens > 2) FAIL("deltarule: %d tokens per sweep (1 or 2)", o.sweep_tokens);
    if (o.checkpoint_mode < DR_CKPT_DEFAULT || o.checkpoint_mode > DR_CKPT_FROM_DELTA)
        FAIL("deltarule: checkpoint mode %d (0 default, 1 split, 2 from-delta)", o.checkpoint_mode);
    if (o.solver && !(o.solver < 32 && (impl->solvers & DR_SOLVER_BIT(o.solver))))
        FAIL("deltarule: implementation '%s' has no solver '%s' (%d)", impl->name, deltarule_solver_name(o.solver), o.solver);
    const double t0 = q35_now();
    if (impl->run(p, &o)) FAIL("deltarule: implementation '%s' failed (out of memory?)", impl->name);
    q35_sde_add_since(Q35_SDE_DELTARULE_NS, t0);
    count_work(p);
    return 0;
}
