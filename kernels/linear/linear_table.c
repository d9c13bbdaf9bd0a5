/* The linear family's table, validation and dispatch (docs/design.md). */
#include "common/float_checks.h"
#include "common/clock.h"
#include "common/sde_counters.h"
#include "kernels/linear/linear.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

const linear_impl linear_impls[] = {
    {"tiled", "q35_matmul_xwt (AVX-512 / AVX2 / generic C) on column panels of W over OpenMP threads",
     linear_tiled, {0}, 1e-5, NULL, 0, linear_tiled_shared},
    /* Lossy, opt-in: x rounded to bf16 (2^-9 relative each) for bf16 W.  The tolerance is 2^-8,
     * twice the per-element rounding; random data measures ~1.1e-3 (docs/matmul.md
     * "BF16-dot path").  fp32 W runs the exact tiled path. */
    {"tiled-bf16dot", "x rounded to bf16, vdpbf16ps on bf16 W (emulated without AVX512_BF16), column panels "
     "as tiled; lossy, opt-in", linear_tiled_bf16dot, {0}, 0x1p-8, NULL, 1, NULL},
    /* Lossy, opt-in, the same rounding of x as tiled-bf16dot: AMX TDPBF16PS tiles where the CPU
     * has AMX-BF16 and the kernel grants the tile state; the BF16-dot path elsewhere. */
    {"tiled-amx", "x rounded to bf16 once, AMX tdpbf16ps 32x32 blocks on bf16 W (tiled-bf16dot's path without "
     "AMX), column panels over threads; lossy, opt-in", linear_tiled_amx, {0}, 0x1p-8, NULL, 1, NULL},
    /* Lossy, opt-in, quantized W only: x quantized per 32-element block (eq. A8q: up to d/2 =
     * max|x_block|/254 per element), integer dots (VNNI vpdpbusd / AVX2 vpmaddubsw / C).  The
     * tolerance TOL_INT8DOT is docs/quantization.md's "Integer-dot path" bound.  fp32, bf16 W:
     * the exact tiled path. */
    {"tiled-int8dot", "x quantized to int8 per 32-block, integer dots on q8_0/q4_0 W (avx512-vnni vpdpbusd, avx2 "
     "vpmaddubsw, C), column panels as tiled; lossy, opt-in", linear_tiled_int8dot, {0}, 0x1p-6, NULL, 1,
     linear_tiled_int8dot_shared},
};
const int linear_n_impls = (int)(sizeof linear_impls / sizeof linear_impls[0]);

const linear_impl *linear_find(const char *name)
{
    for (int i = 0; i < linear_n_impls; i++)
        if (!strcmp(linear_impls[i].name, name)) return &linear_impls[i];
    return NULL;
}

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return -1; } while (0)

int linear_validate(const linear_problem *p, char *err, size_t errlen)
{
    if (!p) FAIL("linear: no problem given");
    if (p->M < 0 || p->N < 1 || p->K < 1)
        FAIL("linear: bad shape M=%d N=%d K=%d (N, K must be positive)", p->M, p->N, p->K);
    if (p->wt != WT_F32 && p->wt != WT_BF16 && !q35_wtype_is_quant(p->wt)) FAIL("linear: unknown weight type %d", (int)p->wt);
    /* the problem's rows of W are K elements apart, so a quantized row must be whole blocks
     * (docs/quantization.md §3: such a matrix stays in its checkpoint type) */
    if (q35_wtype_is_quant(p->wt) && p->K % Q35_QBLOCK)
        FAIL("linear: %s weights need K=%d to be a multiple of %d (rows of whole blocks)", q35_wtype_name(p->wt), p->K,
             Q35_QBLOCK);
    if (q35_wtype_is_r16(p->wt) && p->N % Q35_R16)
        FAIL("linear: %s weights interleave %d rows, N=%d is not a multiple", q35_wtype_name(p->wt), Q35_R16, p->N);
    if (p->M == 0) return 0;
    if (!p->x || !p->w || !p->y) FAIL("linear: missing %s", !p->x ? "x" : !p->w ? "w" : "y");
    const size_t ny = (size_t)p->M * p->N * 4;
    if (q35_bytes_overlap(p->y, ny, p->x, (size_t)p->M * p->K * 4) ||
        q35_bytes_overlap(p->y, ny, p->w, q35_wtype_bytes(p->wt, (size_t)p->N * p->K)))
        FAIL("linear: y overlaps x or w");
    return 0;
}

int linear_run(const linear_impl *impl, const linear_problem *p, const linear_opts *opts, char *err,
               size_t errlen)
{
    if (!impl) FAIL("linear: no implementation given");
    if (linear_validate(p, err, errlen)) return -1;
    if (p->M == 0) return 0;
    linear_opts o = impl->defaults;
    if (opts && opts->threads) o.threads = opts->threads;
    const double t0 = q35_now();
    if (impl->run(p, &o)) FAIL("linear: implementation '%s' failed", impl->name);
    q35_sde_add_since(Q35_SDE_LINEAR_NS, t0);
    q35_sde_add(Q35_SDE_FLOPS, 2LL * p->M * p->N * p->K);
    q35_sde_add(Q35_SDE_WEIGHT_BYTES_READ, (long long)q35_wtype_bytes(p->wt, (size_t)p->N * p->K));
    return 0;
}

int linear_run_shared(const linear_impl *impl, const linear_problem *ps, int n, const linear_opts *opts, char *err,
                      size_t errlen)
{
    if (!impl) FAIL("linear: no implementation given");
    if (!ps || n < 1) FAIL("linear: no problems given");
    for (int i = 0; i < n; i++) {
        if (linear_validate(&ps[i], err, errlen)) return -1;
        if (ps[i].x != ps[0].x || ps[i].M != ps[0].M || ps[i].K != ps[0].K)
            FAIL("linear: shared call: problem %d reads another x (M=%d K=%d) than problem 0 (M=%d K=%d)", i, ps[i].M,
                 ps[i].K, ps[0].M, ps[0].K);
        for (int j = 0; j < i && ps[i].M; j++)
            if (q35_bytes_overlap(ps[i].y, (size_t)ps[i].M * ps[i].N * 4, ps[j].y, (size_t)ps[j].M * ps[j].N * 4))
                FAIL("linear: shared call: y of problem %d overlaps y of problem %d", i, j);
    }
    if (ps[0].M == 0) return 0;
    linear_opts o = impl->defaults;
    if (opts && opts->threads) o.threads = opts->threads;
    const double t0 = q35_now();
    if (impl->run_shared) {
        if (impl->run_shared(ps, n, &o)) FAIL("linear: implementation '%s' failed", impl->name);
    } else {
        for (int i = 0; i < n; i++)
            if (impl->run(&ps[i], &o)) FAIL("linear: implementation '%s' failed", impl->name);
    }
    q35_sde_add_since(Q35_SDE_LINEAR_NS, t0);
    for (int i = 0; i < n; i++) {
        q35_sde_add(Q35_SDE_FLOPS, 2LL * ps[i].M * ps[i].N * ps[i].K);
        q35_sde_add(Q35_SDE_WEIGHT_BYTES_READ, (long long)q35_wtype_bytes(ps[i].wt, (size_t)ps[i].N * ps[i].K));
    }
    return 0;
}
