/* The short-conv backward's implementation table, problem validation and
 * dispatch (the pattern of kernels/conv/conv_table.c).
 *
 * A new implementation is one new file plus one line in conv_grad_impls[].
 */
#include "kernels/conv/conv_grad.h"
#include "common/float_checks.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

const conv_grad_impl conv_grad_impls[] = {
    {"direct", "channel blocks of 256 over all tokens, g = dy*silu'(pre) recomputed, AVX2 / generic C, OpenMP over "
               "channel blocks",
     conv_grad_direct, 1e-5, NULL},
};
const int conv_grad_n_impls = (int)(sizeof conv_grad_impls / sizeof conv_grad_impls[0]);

const conv_grad_impl *conv_grad_find(const char *name)
{
    for (int i = 0; i < conv_grad_n_impls; i++)
        if (!strcmp(conv_grad_impls[i].name, name)) return &conv_grad_impls[i];
    return NULL;
}

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return -1; } while (0)

int conv_grad_validate(const conv_grad_problem *p, int check_values, char *err, size_t errlen)
{
    if (!p) FAIL("conv_grad: no problem given");
    const conv_problem *f = p->fwd;
    if (!f) FAIL("conv_grad: no forward problem given");
    const struct { const char *name; const void *ptr; } need[] = {
        {"dy", p->dy}, {"dx", p->dx}, {"dweight", p->dweight}};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (!need[i].ptr) FAIL("conv_grad: missing tensor '%s'", need[i].name);
    if (f->state_in && !p->d_state_in) FAIL("conv_grad: missing tensor 'd_state_in' (the forward has a state_in)");
    /* The forward as the backward reads it: y, state_out and the checkpoints
     * are not read.  y is required by conv_validate and has dx's shape and
     * constraints (separate from x, weight, state_in); dx's overlaps are
     * checked below with their own message first. */
    conv_problem v = *f;
    v.y = p->dx;
    v.state_out = NULL;
    v.n_checkpoints = 0;
    v.checkpoint_t = NULL;
    v.checkpoint_states = NULL;
    /* dimension checks first (conv_validate's own), so sizes below are sane */
    if (f->B >= 1 && f->T >= 1 && f->C >= 1 && f->K >= 1 && f->K <= CONV_K_MAX &&
        (long long)f->B * f->T * f->C <= (1LL << 40) / 4) {
        const size_t nx = (size_t)f->B * f->T * f->C, nw = (size_t)f->C * f->K;
        const size_t ns = (size_t)f->B * f->C * (f->K - 1);
        const struct { const char *name; const void *ptr; size_t n; } in[] = {
            {"x", f->x, nx}, {"weight", f->weight, nw}, {"state_in", f->state_in, ns},
            {"seq_len", f->seq_len, (size_t)f->B}, {"dy", p->dy, nx}, {"d_state_out", p->d_state_out, ns}};
        const struct { const char *name; const void *ptr; size_t n; } out[] = {
            {"dx", p->dx, nx}, {"dweight", p->dweight, nw}, {"d_state_in", f->state_in ? p->d_state_in : NULL, ns}};
        for (size_t o = 0; o < sizeof out / sizeof out[0]; o++) {
            for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
                if (q35_floats_overlap(out[o].ptr, out[o].n, in[i].ptr, in[i].n))
                    FAIL("conv_grad: output '%s' overlaps input '%s' (outputs must be separate buffers)", out[o].name,
                         in[i].name);
            for (size_t q = 0; q < o; q++)
                if (q35_floats_overlap(out[o].ptr, out[o].n, out[q].ptr, out[q].n))
                    FAIL("conv_grad: outputs '%s' and '%s' overlap", out[q].name, out[o].name);
        }
    }
    if (conv_validate(&v, check_values, err, errlen)) return -1;
    if (check_values) {
        const size_t nx = (size_t)f->B * f->T * f->C, ns = (size_t)f->B * f->C * (f->K - 1);
        const struct { const char *name; const float *x; size_t n; } t[] = {
            {"dy", p->dy, nx}, {"d_state_out", p->d_state_out, p->d_state_out ? ns : 0}};
        size_t at;
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
            if (q35_first_nonfinite(t[i].x, t[i].n, &at))
                FAIL("conv_grad: input '%s' has a non-finite value (%g) at flat index %zu", t[i].name, t[i].x[at],
                     at);
    }
    return 0;
}

int conv_grad_run(const conv_grad_impl *impl, const conv_grad_problem *p, const conv_opts *opts, char *err,
                  size_t errlen)
{
    if (!impl) FAIL("conv_grad: no implementation given");
    if (impl->available && !impl->available())
        FAIL("conv_grad: implementation '%s' is not supported on this CPU", impl->name);
    if (conv_grad_validate(p, 0, err, errlen)) return -1;
    conv_opts o = {0};
    if (opts) o = *opts;
    if (o.threads < 0) FAIL("conv_grad: thread count %d is negative", o.threads);
    if (impl->run(p, &o)) FAIL("conv_grad: implementation '%s' failed (out of memory?)", impl->name);
    return 0;
}
