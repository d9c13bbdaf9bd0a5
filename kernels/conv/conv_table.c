/* The short-conv implementation table, problem validation and dispatch
 * (the pattern of kernels/deltarule/deltarule_table.c, docs/design.md).
 *
 * A new implementation is one new file plus one line in conv_impls[].
 */
#include "common/clock.h"
#include "common/sde_counters.h"
#include "common/float_checks.h"
#include "kernels/conv/conv.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

const conv_impl conv_impls[] = {
    {"direct", "token-major, K FMAs per vector of channels, AVX2 / generic C, OpenMP over token x channel blocks",
     conv_direct, {0}, 1e-6, NULL},
};
const int conv_n_impls = (int)(sizeof conv_impls / sizeof conv_impls[0]);

const conv_impl *conv_find(const char *name)
{
    for (int i = 0; i < conv_n_impls; i++)
        if (!strcmp(conv_impls[i].name, name)) return &conv_impls[i];
    return NULL;
}

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return -1; } while (0)

int conv_validate(const conv_problem *p, int check_values, char *err, size_t errlen)
{
    if (!p) FAIL("conv: no problem given");
    if (p->B < 1 || p->T < 1 || p->C < 1 || p->K < 1)
        FAIL("conv: every dimension must be positive (B=%d T=%d C=%d K=%d)", p->B, p->T, p->C, p->K);
    if (p->K > CONV_K_MAX) FAIL("conv: kernel width K=%d is larger than %d", p->K, CONV_K_MAX);
    if ((long long)p->B * p->T * p->C > (1LL << 40) / 4)
        FAIL("conv: B*T*C = %lld elements is too large", (long long)p->B * p->T * p->C);
    const struct { const char *name; const void *ptr; } need[] = {
        {"x", p->x}, {"weight", p->weight}, {"y", p->y}};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (!need[i].ptr) FAIL("conv: missing tensor '%s'", need[i].name);
    if (p->apply_silu != 0 && p->apply_silu != 1)
        FAIL("conv: apply_silu=%d must be 0 or 1", p->apply_silu);
    if (p->seq_len)
        for (int b = 0; b < p->B; b++)
            if (p->seq_len[b] < 0 || p->seq_len[b] > p->T)
                FAIL("conv: seq_len[%d]=%d outside [0, T=%d]", b, p->seq_len[b], p->T);
    const size_t nx = (size_t)p->B * p->T * p->C, nw = (size_t)p->C * p->K;
    const size_t ns = (size_t)p->B * p->C * (p->K - 1);
    const struct { const char *name; const void *ptr; size_t n; } in[] = {
        {"x", p->x, nx}, {"weight", p->weight, nw}, {"state_in", p->state_in, ns}, {"state_out", p->state_out, ns}};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
        if (q35_floats_overlap(p->y, nx, in[i].ptr, in[i].n))
            FAIL("conv: y overlaps '%s' (the output must be a separate buffer)", in[i].name);
    if (q35_floats_overlap(p->state_out, ns, p->x, nx) || q35_floats_overlap(p->state_out, ns, p->weight, nw))
        FAIL("conv: state_out overlaps x or weight");
    if (p->state_out && p->state_in && p->state_out != p->state_in && q35_floats_overlap(p->state_out, ns, p->state_in, ns))
        FAIL("conv: state_out partly overlaps state_in (it must be the same buffer or a separate one)");
    if (p->n_checkpoints < 0 || p->n_checkpoints > p->T)
        FAIL("conv: n_checkpoints=%d outside [0, T=%d]", p->n_checkpoints, p->T);
    if (p->n_checkpoints > 0) {
        if (!p->checkpoint_t) FAIL("conv: n_checkpoints=%d but no checkpoint_t", p->n_checkpoints);
        if (!p->checkpoint_states) FAIL("conv: n_checkpoints=%d but no checkpoint_states", p->n_checkpoints);
        for (int i = 0; i < p->n_checkpoints; i++) {
            if (p->checkpoint_t[i] < 0 || p->checkpoint_t[i] >= p->T)
                FAIL("conv: checkpoint_t[%d]=%d outside [0, T=%d)", i, p->checkpoint_t[i], p->T);
            if (i > 0 && p->checkpoint_t[i] <= p->checkpoint_t[i - 1])
                FAIL("conv: checkpoint_t[%d]=%d is not after checkpoint_t[%d]=%d (strictly ascending)", i,
                     p->checkpoint_t[i], i - 1, p->checkpoint_t[i - 1]);
        }
        /* written after every read of the inputs, but alongside state_out */
        const size_t nck = (size_t)p->n_checkpoints * ns;
        const struct { const char *name; const void *ptr; size_t n; } other[] = {
            {"x", p->x, nx}, {"weight", p->weight, nw}, {"y", p->y, nx},
            {"state_in", p->state_in, ns}, {"state_out", p->state_out, ns}};
        for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
            if (q35_floats_overlap(p->checkpoint_states, nck, other[i].ptr, other[i].n))
                FAIL("conv: checkpoint_states overlaps '%s' (it must be a separate buffer)", other[i].name);
    }
    if (check_values) {
        const struct { const char *name; const float *x; size_t n; } t[] = {
            {"x", p->x, nx}, {"weight", p->weight, nw}, {"state_in", p->state_in, p->state_in ? ns : 0}};
        size_t at;
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
            if (q35_first_nonfinite(t[i].x, t[i].n, &at))
                FAIL("conv: input '%s' has a non-finite value (%g) at flat index %zu", t[i].name, t[i].x[at], at);
    }
    return 0;
}

long long conv_flops(const conv_problem *p)
{
    long long tokens = 0;
    for (int b = 0; b < p->B; b++) tokens += conv_valid_len(p, b);
    return 2LL * p->K * p->C * tokens;
}

/* Software-defined counters (docs/counters.md): the useful work, the same
 * for every implementation; bytes are each datum once. */
static void count_work(const conv_problem *p)
{
    long long tokens = 0;
    for (int b = 0; b < p->B; b++) tokens += conv_valid_len(p, b);
    const long long state = 4LL * p->B * p->C * (p->K - 1);
    q35_sde_add(Q35_SDE_TOKENS, tokens);
    q35_sde_add(Q35_SDE_FLOPS, conv_flops(p));
    q35_sde_add(Q35_SDE_STATE_BYTES_READ, p->state_in ? state : 0);
    q35_sde_add(Q35_SDE_STATE_BYTES_WRITTEN, (p->state_out ? state : 0) + p->n_checkpoints * state);
    q35_sde_add(Q35_SDE_WEIGHT_BYTES_READ, 4LL * p->C * p->K + 4LL * tokens * p->C);
}

int conv_run(const conv_impl *impl, const conv_problem *p, const conv_opts *opts, char *err, size_t errlen)
{
    if (!impl) FAIL("conv: no implementation given");
    if (impl->available && !impl->available())
        FAIL("conv: implementation '%s' is not supported on this CPU", impl->name);
    if (conv_validate(p, 0, err, errlen)) return -1;
    conv_opts o = impl->defaults;
    if (opts && opts->threads) o.threads = opts->threads;
    if (o.threads < 0) FAIL("conv: thread count %d is negative", o.threads);
    const double t0 = q35_now();
    if (impl->run(p, &o)) FAIL("conv: implementation '%s' failed (out of memory?)", impl->name);
    q35_sde_add_since(Q35_SDE_CONV_NS, t0);
    count_work(p);
    return 0;
}
