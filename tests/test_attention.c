/* test_attention.c - cmocka suite for the full-attention family
 * (kernels/attention/, spec in docs/attention.md and ref/attention_ref.c).
 *
 * Every implementation in attention_impls[] (every kernel; ref/ is the yardstick; if available on
 * this CPU) is checked against `ref` at its claim_tol (normwise,
 * harness/metrics.h) over a shape grid, at the host's best level and then at
 * every ISA level it has (generic C, AVX2, AVX-512, AVX-512+BF16, each forced
 * in turn and recorded for make test's summary, tests/support/isa_levels.h;
 * the worst error per level is printed at the end), the model's shapes also
 * with 64-byte-aligned and misaligned inputs (bitwise equal); ref itself, and every implementation, against
 * values the test computes from the math (one key, identical keys, a 2-key
 * case by hand, the GQA head mapping); and properties: causality, scaling
 * and translating V, prefill = token-by-token decode, right padding, large
 * scores, thread counts, every validation error.
 *
 * Outputs are filled with NaN before each run, so a forgotten write shows;
 * cache rows past past+seq_len (which no kernel may read) are NaN too.
 */
#include "common/sde_counters.h"
#include "kernels/attention/attention.h"
#include "kernels/cpu_features.h"
#include "ref/attention_ref.h"
#include "harness/metrics.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "tests/support/arrays.h"
#include "tests/support/isa_levels.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IMPLS 16
#define N(a) (int)(sizeof(a) / sizeof(a)[0])

/* ------------------------------------------------------------------ */
/* Inputs                                                               */
/* ------------------------------------------------------------------ */

static test_rng rng = {0x9e3779b97f4a7c15ull}; /* this suite's stream (tests/support/arrays.h) */
static int32_t *idup(const int32_t *a, int n)
{
    int32_t *b = malloc(sizeof(int32_t) * (size_t)n);
    assert_non_null(b);
    memcpy(b, a, sizeof(int32_t) * (size_t)n);
    return b;
}

static size_t nq(const attention_problem *p) { return (size_t)p->B * p->T * p->Hq * p->D; }
static size_t nc(const attention_problem *p) { return (size_t)p->B * p->Hkv * p->L * p->D; }
static int past_of(const attention_problem *p, int b) { return p->past ? p->past[b] : 0; }
static int len_of(const attention_problem *p, int b) { return p->seq_len ? p->seq_len[b] : p->T; }
static float *qrow(const attention_problem *p, int b, int t, int h)
{
    return (float *)p->q + (((size_t)b * p->T + t) * p->Hq + h) * p->D;
}
static float *orow(const attention_problem *p, int b, int t, int h)
{
    return p->out + (((size_t)b * p->T + t) * p->Hq + h) * p->D;
}
static float *krow(const attention_problem *p, const float *cache, int b, int h, int pos)
{
    return (float *)cache + (((size_t)b * p->Hkv + h) * p->L + pos) * p->D;
}

/* Cache rows no call may read (pos >= past+seq_len) become NaN. */
static void poison_unused(attention_problem *p)
{
    for (int b = 0; b < p->B; b++)
        for (int h = 0; h < p->Hkv; h++) {
            const int used = past_of(p, b) + len_of(p, b);
            test_fill_nan(krow(p, p->k_cache, b, h, used), (size_t)(p->L - used) * p->D);
            test_fill_nan(krow(p, p->v_cache, b, h, used), (size_t)(p->L - used) * p->D);
        }
}

/* A problem with random q and caches.  past[b] = past0 for even b,
 * past0 + 3b for odd b (NULL when all are 0 and with_arrays is 0); padded:
 * seq_len[b] = T, T/3, 2T/3+1, ... (NULL otherwise).  L leaves `slack`
 * spare positions.  out is NaN.  Free with free_problem. */
static attention_problem make_problem(int B, int T, int Hq, int Hkv, int D, int past0, int padded, int slack,
                                      uint64_t seed)
{
    attention_problem p = {.B = B, .T = T, .Hq = Hq, .Hkv = Hkv, .D = D};
    int32_t *past = malloc(sizeof(int32_t) * (size_t)B), *lens = malloc(sizeof(int32_t) * (size_t)B);
    assert_non_null(past); assert_non_null(lens);
    int any_past = 0, maxpos = 0;
    for (int b = 0; b < B; b++) {
        past[b] = b % 2 ? past0 + 3 * b : past0;
        lens[b] = padded ? (T + b * (T / 3 + 1)) % (T + 1) : T;
        any_past |= past[b] != 0;
        if (past[b] + T > maxpos) maxpos = past[b] + T;
    }
    p.L = maxpos + slack;
    if (any_past) p.past = past; else free(past);
    if (padded) p.seq_len = lens; else free(lens);
    test_rng_seed(&rng, seed);
    p.q = test_frand(&rng, nq(&p), 1.0f);
    p.k_cache = test_frand(&rng, nc(&p), 1.0f);
    p.v_cache = test_frand(&rng, nc(&p), 1.0f);
    p.out = test_falloc(nq(&p));
    test_fill_nan(p.out, nq(&p));
    poison_unused(&p);
    return p;
}
static void free_problem(attention_problem *p)
{
    free((void *)p->q); free((void *)p->k_cache); free((void *)p->v_cache); free(p->out);
    free((void *)p->past); free((void *)p->seq_len);
}

static const char *shape_str(const attention_problem *p)
{
    static char buf[160];
    snprintf(buf, sizeof buf, "B%d T%d Hq%d Hkv%d D%d L%d past0=%d%s", p->B, p->T, p->Hq, p->Hkv, p->D, p->L,
             past_of(p, 0), p->seq_len ? " padded" : "");
    return buf;
}

static void run_ok(const attention_impl *im, const attention_problem *p, int threads)
{
    char err[256];
    attention_opts o = {.threads = threads};
    if (attention_run(im, p, &o, err, sizeof err)) fail_msg("%s on %s: %s", im->name, shape_str(p), err);
}

/* The implementations other than ref that run on this CPU. */
static int list_impls(const attention_impl **out)
{
    int n = 0;
    for (int i = 0; i < attention_n_impls && n < MAX_IMPLS; i++) {
        const attention_impl *im = &attention_impls[i];
        if (im->available && !im->available()) continue;
        out[n++] = im;
    }
    assert_true(n > 0);
    return n;
}
/* ref first, then the others. */
static int list_all(const attention_impl **out)
{
    out[0] = &attention_ref_impl;
    assert_non_null(out[0]);
    return 1 + list_impls(out + 1);
}

/* Worst normwise error of flash against ref at each ISA level over the checks made at its
 * claim_tol (printed at the end; some property checks use their own tolerances). */
static double worst_flash[ISA_TOP + 1];
static void expect_close(const char *what, const attention_impl *im, const attention_problem *p, const float *got,
                         const float *want, size_t n, double tol)
{
    err_stats e = err_compare(got, want, n);
    const int lv = cpu_isa();
    if (!strcmp(im->name, "flash") && tol == im->claim_tol && lv >= 0 && lv <= ISA_TOP && e.normwise > worst_flash[lv])
        worst_flash[lv] = e.normwise;
    if (e.nonfinite || !(e.normwise <= tol))
        fail_msg("%s: %s on %s: normwise %.3g (tol %.1g), maxabs %.3g, %zu non-finite", what, im->name,
                 shape_str(p), e.normwise, tol, e.maxabs, e.nonfinite);
}
static void expect_equal(const char *what, const attention_impl *im, const attention_problem *p, const float *got,
                         const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof(float)))
            fail_msg("%s: %s on %s: element %zu is %.9g, expected %.9g", what, im->name, shape_str(p), i, got[i],
                     want[i]);
}
/* Rows of padding tokens are +0 exactly. */
static void expect_padding_zero(const attention_impl *im, const attention_problem *p)
{
    for (int b = 0; b < p->B; b++)
        for (int t = len_of(p, b); t < p->T; t++)
            for (int h = 0; h < p->Hq; h++) {
                const float *o = orow(p, b, t, h);
                for (int d = 0; d < p->D; d++)
                    if (o[d] != 0.0f || signbit(o[d]))
                        fail_msg("%s on %s: padded out[%d,%d,%d,%d] = %g, expected +0", im->name, shape_str(p), b,
                                 t, h, d, o[d]);
            }
}

/* ------------------------------------------------------------------ */
/* Shape grid                                                           */
/* ------------------------------------------------------------------ */

static const int GRID_B[] = {1, 2, 3};
static const int GRID_T[] = {1, 7, 64};
static const int GRID_PAST[] = {0, 5, 100};
static const int GRID_RATIO[] = {1, 2, 4};
static const int GRID_D[] = {8, 64, 256, 5, 13};

/* Each implementation against ref over the grid; Hkv alternates 1 and 2,
 * every third shape is right-padded, and L has 0..2 spare positions. */
static void grid_body(void)
{
    const attention_impl *impls[MAX_IMPLS + 1];
    const int n = list_all(impls);
    int idx = 0;
    for (int bi = 0; bi < N(GRID_B); bi++)
        for (int ti = 0; ti < N(GRID_T); ti++)
            for (int pi = 0; pi < N(GRID_PAST); pi++)
                for (int ri = 0; ri < N(GRID_RATIO); ri++)
                    for (int di = 0; di < N(GRID_D); di++, idx++) {
                        const int Hkv = 1 + idx % 2, Hq = Hkv * GRID_RATIO[ri];
                        attention_problem p = make_problem(GRID_B[bi], GRID_T[ti], Hq, Hkv, GRID_D[di],
                                                           GRID_PAST[pi], idx % 3 == 0, idx % 3, 1000 + idx);
                        run_ok(impls[0], &p, 0);
                        expect_padding_zero(impls[0], &p);
                        float *ro = test_fdup(p.out, nq(&p));
                        for (int i = 1; i < n; i++) {
                            test_fill_nan(p.out, nq(&p));
                            run_ok(impls[i], &p, 0);
                            expect_close("out vs ref", impls[i], &p, p.out, ro, nq(&p), impls[i]->claim_tol);
                            expect_padding_zero(impls[i], &p);
                        }
                        free(ro);
                        free_problem(&p);
                    }
}

/* Qwen3.5's own head shapes: 0.8B (Hq 8, Hkv 2) and 35B-A3B (Hq 16, Hkv 2), D = 256. */
static void model_shapes_body(void)
{
    const attention_impl *impls[MAX_IMPLS + 1];
    const int n = list_all(impls);
    const struct { int B, T, Hq, past; } s[] = {{1, 1, 8, 700}, {2, 33, 8, 40}, {1, 1, 16, 300}, {1, 20, 16, 0},
                                                {1, 200, 8, 0}};
    for (int c = 0; c < N(s); c++) {
        attention_problem p = make_problem(s[c].B, s[c].T, s[c].Hq, 2, 256, s[c].past, 0, 1, 50 + c);
        run_ok(impls[0], &p, 0);
        float *ro = test_fdup(p.out, nq(&p));
        for (int i = 1; i < n; i++) {
            test_fill_nan(p.out, nq(&p));
            run_ok(impls[i], &p, 0);
            expect_close("model shape vs ref", impls[i], &p, p.out, ro, nq(&p), impls[i]->claim_tol);
            /* The same inputs 64-byte aligned (the SIMD paths read the cache in place) and at 16
             * bytes off it (they copy each block to aligned scratch first): copies only, so the
             * outputs are bitwise the same. */
            float *got = test_fdup(p.out, nq(&p));
            for (int off = 0; off <= 4; off += 4) {
                attention_problem a = p;
                float *qa = aligned_alloc(64, sizeof(float) * (nq(&p) + 16)),
                      *ka = aligned_alloc(64, sizeof(float) * (nc(&p) + 16)),
                      *va = aligned_alloc(64, sizeof(float) * (nc(&p) + 16)),
                      *oa = aligned_alloc(64, sizeof(float) * (nq(&p) + 16));
                assert_true(qa && ka && va && oa);
                memcpy(qa + off, p.q, sizeof(float) * nq(&p));
                memcpy(ka + off, p.k_cache, sizeof(float) * nc(&p));
                memcpy(va + off, p.v_cache, sizeof(float) * nc(&p));
                a.q = qa + off, a.k_cache = ka + off, a.v_cache = va + off, a.out = oa + off;
                test_fill_nan(a.out, nq(&p));
                run_ok(impls[i], &a, 0);
                if (memcmp(a.out, got, sizeof(float) * nq(&p)))
                    fail_msg("%s on %s: the output depends on the inputs' alignment (offset %d floats)",
                             impls[i]->name, shape_str(&p), off);
                free(qa), free(ka), free(va), free(oa);
            }
            free(got);
        }
        free(ro);
        free_problem(&p);
    }
}

/* body at every ISA level the host has (generic, avx2, avx512, avx512-bf16: flash takes its
 * generic, AVX2 and AVX-512 paths), each level recorded for make test's summary
 * (tests/support/isa_levels.h); levels above the host's are printed as skipped. */
static void level_body(cpu_isa_level level, void *ctx)
{
    assert_int_equal(cpu_isa(), level);
    ((void (*)(void))ctx)();
}
static void with_every_isa(void (*body)(void))
{
    isa_levels_each("test_attention", level_body, (void *)body);
}

/* ------------------------------------------------------------------ */
/* ref (and everyone) against the math                                  */
/* ------------------------------------------------------------------ */

/* One cached position: softmax of one score is 1, so out = v_0 exactly. */
static void single_key_body(void)
{
    const attention_impl *impls[MAX_IMPLS + 1];
    const int n = list_all(impls);
    const int Ds[] = {1, 5, 64, 256};
    for (int di = 0; di < N(Ds); di++) {
        attention_problem p = make_problem(2, 1, 4, 2, Ds[di], 0, 0, 3, 70 + di);
        free((void *)p.past); /* sequence 1 got past 3: make both start at 0 */
        p.past = NULL;
        for (int i = 0; i < n; i++) {
            test_fill_nan(p.out, nq(&p));
            run_ok(impls[i], &p, 0);
            for (int b = 0; b < p.B; b++)
                for (int h = 0; h < p.Hq; h++)
                    expect_equal("single key: out = v_0", impls[i], &p, orow(&p, b, 0, h),
                                 krow(&p, p.v_cache, b, h / 2, 0), (size_t)p.D);
        }
        free_problem(&p);
    }
}

/* Identical keys: every score of a row is equal, the weights are
 * 1/(p+1), and out is the mean of v_0 .. v_p (computed here in double). */
static void identical_keys_body(void)
{
    const attention_impl *impls[MAX_IMPLS + 1];
    const int n = list_all(impls);
    attention_problem p = make_problem(2, 7, 4, 2, 13, 5, 0, 0, 80);
    float *k = (float *)p.k_cache;
    for (int b = 0; b < p.B; b++)
        for (int h = 0; h < p.Hkv; h++)
            for (int j = 1; j < p.L; j++) memcpy(krow(&p, k, b, h, j), krow(&p, k, b, h, 0), sizeof(float) * p.D);
    float *want = test_falloc(nq(&p));
    for (int b = 0; b < p.B; b++)
        for (int t = 0; t < p.T; t++)
            for (int h = 0; h < p.Hq; h++)
                for (int d = 0; d < p.D; d++) {
                    const int pos = past_of(&p, b) + t;
                    double s = 0.0;
                    for (int j = 0; j <= pos; j++) s += krow(&p, p.v_cache, b, h / 2, j)[d];
                    want[(((size_t)b * p.T + t) * p.Hq + h) * p.D + d] = (float)(s / (pos + 1));
                }
    for (int i = 0; i < n; i++) {
        test_fill_nan(p.out, nq(&p));
        run_ok(impls[i], &p, 0);
        expect_close("identical keys: mean of v", impls[i], &p, p.out, want, nq(&p), i ? impls[i]->claim_tol : 1e-7);
    }
    free(want);
    free_problem(&p);
}

/* By hand.  D = 4, default scale 1/sqrt(4) = 1/2, q = (2, 0, 0, 0),
 * k_0 = 0, k_1 = (ln 3, 0, 0, 0): scores (0, ln 3), weights (1/4, 3/4);
 * v_0 = (4, 0, 0, 0), v_1 = (0, 8, 0, 0).  Token 0 (position 0) sees only
 * key 0: out = v_0 = (4, 0, 0, 0).  Token 1 (position 1): out = (1, 6, 0, 0). */
static void hand_two_keys_body(void)
{
    const attention_impl *impls[MAX_IMPLS + 1];
    const int n = list_all(impls);
    float q[8] = {2, 0, 0, 0, 2, 0, 0, 0}, k[8] = {0, 0, 0, 0, (float)log(3.0), 0, 0, 0};
    float v[8] = {4, 0, 0, 0, 0, 8, 0, 0}, out[8];
    const float want[8] = {4, 0, 0, 0, 1, 6, 0, 0};
    attention_problem p = {.B = 1, .T = 2, .Hq = 1, .Hkv = 1, .D = 4, .L = 2, .q = q, .k_cache = k, .v_cache = v,
                           .out = out};
    for (int i = 0; i < n; i++) {
        test_fill_nan(out, 8);
        run_ok(impls[i], &p, 0);
        for (int e = 0; e < 8; e++)
            if (!(fabs((double)out[e] - want[e]) <= 1e-6 * 8))
                fail_msg("%s: hand case element %d is %.9g, expected %g", impls[i]->name, e, out[e], want[e]);
    }
    /* The same with an explicit scale: q = (1, 0, 0, 0), scale 1. */
    q[0] = q[4] = 1.0f;
    p.scale = 1.0f;
    for (int i = 0; i < n; i++) {
        test_fill_nan(out, 8);
        run_ok(impls[i], &p, 0);
        for (int e = 0; e < 8; e++)
            if (!(fabs((double)out[e] - want[e]) <= 1e-6 * 8))
                fail_msg("%s: hand case (scale 1) element %d is %.9g, expected %g", impls[i]->name, e, out[e],
                         want[e]);
    }
}

/* GQA head mapping: query head h reads KV head h / (Hq/Hkv).  With one key,
 * out[h] = v[h / ratio][0]; Hq = 6, Hkv = 3 and Hq = 8, Hkv = 2. */
static void gqa_mapping_body(void)
{
    const attention_impl *impls[MAX_IMPLS + 1];
    const int n = list_all(impls);
    const int cfg[][2] = {{6, 3}, {8, 2}, {3, 3}};
    for (int c = 0; c < N(cfg); c++) {
        attention_problem p = make_problem(1, 1, cfg[c][0], cfg[c][1], 9, 0, 0, 0, 90 + c);
        const int ratio = p.Hq / p.Hkv;
        for (int i = 0; i < n; i++) {
            test_fill_nan(p.out, nq(&p));
            run_ok(impls[i], &p, 0);
            for (int h = 0; h < p.Hq; h++)
                expect_equal("GQA mapping", impls[i], &p, orow(&p, 0, 0, h), krow(&p, p.v_cache, 0, h / ratio, 0),
                             (size_t)p.D);
        }
        free_problem(&p);
    }
}

/* ------------------------------------------------------------------ */
/* Properties                                                           */
/* ------------------------------------------------------------------ */

/* Causality: changing the cache rows after position p (keys and values,
 * including rows of this call's later tokens) leaves the query at p and all
 * earlier ones bit for bit the same. */
static void causality_body(void)
{
    const attention_impl *impls[MAX_IMPLS + 1];
    const int n = list_all(impls);
    for (int i = 0; i < n; i++) {
        attention_problem p = make_problem(2, 9, 4, 2, 13, 5, 0, 2, 100);
        run_ok(impls[i], &p, 0);
        float *base = test_fdup(p.out, nq(&p));
        float *k0 = test_fdup(p.k_cache, nc(&p)), *v0 = test_fdup(p.v_cache, nc(&p));
        for (int t = 0; t < p.T; t++) {
            memcpy((float *)p.k_cache, k0, sizeof(float) * nc(&p));
            memcpy((float *)p.v_cache, v0, sizeof(float) * nc(&p));
            for (int b = 0; b < p.B; b++)
                for (int h = 0; h < p.Hkv; h++)
                    for (int j = past_of(&p, b) + t + 1; j < past_of(&p, b) + p.T; j++)
                        for (int d = 0; d < p.D; d++) {
                            krow(&p, p.k_cache, b, h, j)[d] = 10.0f * test_urand(&rng);
                            krow(&p, p.v_cache, b, h, j)[d] = 10.0f * test_urand(&rng);
                        }
            test_fill_nan(p.out, nq(&p));
            run_ok(impls[i], &p, 0);
            for (int b = 0; b < p.B; b++)
                for (int u = 0; u <= t; u++)
                    expect_equal("causality", impls[i], &p, orow(&p, b, u, 0), base + ((size_t)b * p.T + u) * p.Hq * p.D,
                                 (size_t)p.Hq * p.D);
        }
        free(base); free(k0); free(v0);
        free_problem(&p);
    }
}

/* out is linear in V with weights summing to 1: V * 4 gives out * 4 exactly
 * (a power of two), V * -3 gives out * -3, V + c gives out + c. */
static void v_scaling_body(void)
{
    const attention_impl *impls[MAX_IMPLS + 1];
    const int n = list_all(impls);
    for (int i = 0; i < n; i++) {
        attention_problem p = make_problem(2, 6, 8, 2, 64, 70, 0, 0, 110);
        run_ok(impls[i], &p, 0);
        float *base = test_fdup(p.out, nq(&p)), *v0 = test_fdup(p.v_cache, nc(&p)), *want = test_falloc(nq(&p));
        float *v = (float *)p.v_cache;
        const double tol = i ? impls[i]->claim_tol : 2e-7;

        for (size_t e = 0; e < nc(&p); e++) v[e] = 4.0f * v0[e];
        for (size_t e = 0; e < nq(&p); e++) want[e] = 4.0f * base[e];
        run_ok(impls[i], &p, 0);
        expect_equal("V * 4", impls[i], &p, p.out, want, nq(&p));

        for (size_t e = 0; e < nc(&p); e++) v[e] = -3.0f * v0[e];
        for (size_t e = 0; e < nq(&p); e++) want[e] = -3.0f * base[e];
        run_ok(impls[i], &p, 0);
        expect_close("V * -3", impls[i], &p, p.out, want, nq(&p), tol);

        /* v + c[d], c the same for every position */
        float c[64];
        for (int d = 0; d < 64; d++) c[d] = 2.0f * test_urand(&rng);
        for (size_t e = 0; e < nc(&p); e++) v[e] = v0[e] + c[e % 64];
        for (size_t e = 0; e < nq(&p); e++) want[e] = base[e] + c[e % 64];
        run_ok(impls[i], &p, 0);
        expect_close("V + c", impls[i], &p, p.out, want, nq(&p), 4 * tol);

        free(base); free(v0); free(want);
        free_problem(&p);
    }
}

/* Prefill then decode: T tokens in one call equal T calls of one token with
 * past growing (the cache already holds every token), per sequence with
 * different pasts. */
static void prefill_decode_body(void)
{
    const attention_impl *impls[MAX_IMPLS + 1];
    const int n = list_all(impls);
    for (int i = 0; i < n; i++)
        for (int th = 1; th <= 3; th += 2) {
            attention_problem p = make_problem(2, 12, 8, 2, 64, 30, 0, 0, 120);
            run_ok(impls[i], &p, th);
            const size_t row = (size_t)p.Hq * p.D;
            float *q1 = test_falloc((size_t)p.B * row), *o1 = test_falloc((size_t)p.B * row), *got = test_falloc(nq(&p));
            int32_t past1[2];
            attention_problem d = p;
            d.T = 1; d.q = q1; d.out = o1; d.past = past1;
            for (int t = 0; t < p.T; t++) {
                for (int b = 0; b < p.B; b++) {
                    memcpy(q1 + b * row, qrow(&p, b, t, 0), sizeof(float) * row);
                    past1[b] = past_of(&p, b) + t;
                }
                test_fill_nan(o1, (size_t)p.B * row);
                run_ok(impls[i], &d, th);
                for (int b = 0; b < p.B; b++) memcpy(got + ((size_t)b * p.T + t) * row, o1 + b * row, sizeof(float) * row);
            }
            if (i == 0) expect_equal("prefill = decode", impls[i], &p, got, p.out, nq(&p));
            else expect_close("prefill = decode", impls[i], &p, got, p.out, nq(&p), impls[i]->claim_tol);
            free(q1); free(o1); free(got);
            free_problem(&p);
        }
}

/* Right padding: padded rows are +0, valid rows equal an unpadded run of
 * the valid prefix; seq_len 0 for every sequence reads nothing (the caches
 * are all NaN) and writes zeros. */
static void padding_body(void)
{
    const attention_impl *impls[MAX_IMPLS + 1];
    const int n = list_all(impls);
    const int32_t lens[4] = {9, 0, 3, 1}, pasts[4] = {0, 7, 2, 40};
    for (int i = 0; i < n; i++) {
        attention_problem p = {.B = 4, .T = 9, .Hq = 4, .Hkv = 2, .D = 24, .L = 49};
        test_rng_seed(&rng, 130);
        p.q = test_frand(&rng, nq(&p), 1.0f);
        p.k_cache = test_frand(&rng, nc(&p), 1.0f);
        p.v_cache = test_frand(&rng, nc(&p), 1.0f);
        p.out = test_falloc(nq(&p));
        p.seq_len = idup(lens, 4);
        p.past = idup(pasts, 4);
        poison_unused(&p);
        test_fill_nan(p.out, nq(&p));
        run_ok(impls[i], &p, 0);
        expect_padding_zero(impls[i], &p);
        for (int b = 0; b < p.B; b++) {
            if (!lens[b]) continue;
            /* sequence b alone, unpadded, T = its valid length */
            attention_problem r = p;
            int32_t one_past = pasts[b];
            r.B = 1; r.T = lens[b]; r.seq_len = NULL; r.past = &one_past;
            r.k_cache = krow(&p, p.k_cache, b, 0, 0);
            r.v_cache = krow(&p, p.v_cache, b, 0, 0);
            float *qb = test_fdup(qrow(&p, b, 0, 0), nq(&r));
            r.q = qb;
            r.out = test_falloc(nq(&r));
            run_ok(&attention_ref_impl, &r, 1);
            expect_close("padded valid rows", impls[i], &p, orow(&p, b, 0, 0), r.out, nq(&r),
                         i ? impls[i]->claim_tol : 0.0);
            free(qb); free(r.out);
        }
        /* every sequence empty: nothing is read (the caches are all NaN) */
        int32_t zero[4] = {0, 0, 0, 0};
        attention_problem z = p;
        z.seq_len = zero;
        test_fill_nan((float *)z.k_cache, nc(&z));
        test_fill_nan((float *)z.v_cache, nc(&z));
        test_fill_nan(z.out, nq(&z));
        run_ok(impls[i], &z, 0);
        expect_padding_zero(impls[i], &z);
        free_problem(&p);
    }
}

/* Large scores: q scaled so that |s| reaches 80 (and 1000, where exp(s)
 * overflows fp32 without the max subtraction).  flash must stay finite and
 * close to ref; the fp32 scores carry an absolute error ~ u * |s|, so the
 * tolerance grows with the scores (docs/attention.md §6). */
static void large_scores_body(void)
{
    const attention_impl *impls[MAX_IMPLS + 1];
    const int n = list_all(impls);
    const double smax[] = {80.0, 1000.0};
    for (int si = 0; si < N(smax); si++)
        for (int sign = -1; sign <= 1; sign += 2) {
            attention_problem p = make_problem(1, 5, 4, 2, 64, 60, 0, 0, 140 + si);
            p.scale = 1.0f;
            if (sign > 0) /* all scores of the first query of each group near +smax */
                for (int h = 0; h < p.Hkv; h++)
                    for (int j = 0; j < past_of(&p, 0) + p.T; j++) {
                        float *k = krow(&p, p.k_cache, 0, h, j);
                        for (int d = 0; d < p.D; d++) k[d] = qrow(&p, 0, 0, 2 * h)[d] * (1.0f + 0.05f * test_urand(&rng));
                    }
            /* largest |s| over the problem, computed here; then scale q to smax */
            double mx = 0.0;
            for (int t = 0; t < p.T; t++)
                for (int h = 0; h < p.Hq; h++)
                    for (int j = 0; j <= past_of(&p, 0) + t; j++) {
                        double s = 0.0;
                        for (int d = 0; d < p.D; d++)
                            s += (double)qrow(&p, 0, t, h)[d] * krow(&p, p.k_cache, 0, h / 2, j)[d];
                        if (fabs(s) > mx) mx = fabs(s);
                    }
            for (size_t e = 0; e < nq(&p); e++) ((float *)p.q)[e] *= (float)(smax[si] / mx);
            run_ok(impls[0], &p, 0);
            float *ro = test_fdup(p.out, nq(&p));
            for (int i = 1; i < n; i++) {
                test_fill_nan(p.out, nq(&p));
                run_ok(impls[i], &p, 0);
                expect_close("large scores", impls[i], &p, p.out, ro, nq(&p), impls[i]->claim_tol * smax[si] / 4);
            }
            free(ro);
            free_problem(&p);
        }
}

/* Threads: without a key split (enough tasks) the result is the same bit
 * for bit for every thread count; with one (decode, one KV head, long
 * context) it matches ref at the claimed tolerance. */
static void thread_counts_body(void)
{
    const attention_impl *impls[MAX_IMPLS];
    const int n = list_impls(impls);
    for (int i = 0; i < n; i++) {
        attention_problem p = make_problem(1, 64, 8, 2, 64, 10, 0, 0, 150);
        run_ok(impls[i], &p, 1);
        float *o1 = test_fdup(p.out, nq(&p));
        for (int th = 2; th <= 5; th++) {
            test_fill_nan(p.out, nq(&p));
            run_ok(impls[i], &p, th);
            expect_equal("out across threads", impls[i], &p, p.out, o1, nq(&p));
        }
        free(o1);
        free_problem(&p);

        const int Ts[] = {1, 2};
        for (int ti = 0; ti < N(Ts); ti++) {
            attention_problem d = make_problem(1, Ts[ti], 4, 1, 40, 3000, 0, 5, 160 + ti);
            run_ok(&attention_ref_impl, &d, 1);
            float *ro = test_fdup(d.out, nq(&d));
            for (int th = 1; th <= 6; th++) {
                test_fill_nan(d.out, nq(&d));
                run_ok(impls[i], &d, th);
                expect_close("split decode vs ref", impls[i], &d, d.out, ro, nq(&d), impls[i]->claim_tol);
            }
            free(ro);
            free_problem(&d);
        }
    }
}

/* attention_flops by hand and the FLOPS counter it feeds. */
static void flops_body(void)
{
    attention_problem p = make_problem(1, 3, 2, 1, 4, 2, 0, 0, 170);
    /* positions 2, 3, 4: 3 + 4 + 5 = 12 (query, key) pairs per head */
    assert_int_equal(attention_flops(&p), 4LL * 4 * 2 * 12);
    const long long before = q35_sde_value(Q35_SDE_FLOPS);
    run_ok(&attention_ref_impl, &p, 1);
    assert_int_equal(q35_sde_value(Q35_SDE_FLOPS) - before, attention_flops(&p));
    free_problem(&p);
}

/* ------------------------------------------------------------------ */
/* Invalid problems                                                     */
/* ------------------------------------------------------------------ */

static void expect_reject(const attention_problem *p, const attention_opts *o, const char *needle)
{
    char err[256] = "";
    for (int i = 0; i < attention_n_impls; i++) {
        err[0] = 0;
        if (!attention_run(&attention_impls[i], p, o, err, sizeof err))
            fail_msg("%s accepted a problem that should fail with '%s'", attention_impls[i].name, needle);
        if (!strstr(err, needle)) fail_msg("message '%s' does not mention '%s'", err, needle);
        if (strchr(err, '\n')) fail_msg("message '%s' is not one line", err);
    }
}

static void expect_value_reject(const attention_problem *p, const char *needle)
{
    char err[256] = "";
    if (!attention_validate(p, 1, err, sizeof err)) fail_msg("value check accepted a problem with %s", needle);
    if (!strstr(err, needle)) fail_msg("message '%s' does not mention '%s'", err, needle);
    assert_int_equal(attention_validate(p, 0, err, sizeof err), 0); /* shapes alone are fine */
}

static void invalid_body(void)
{
    attention_problem good = make_problem(2, 5, 4, 2, 8, 3, 1, 2, 180);
    char err[256];
    assert_int_equal(attention_validate(&good, 1, err, sizeof err), 0); /* NaN only in unused rows */
    attention_problem p;
    p = good; p.B = 0; expect_reject(&p, NULL, "every dimension must be positive");
    p = good; p.T = 0; expect_reject(&p, NULL, "T=0");
    p = good; p.Hq = -1; expect_reject(&p, NULL, "Hq=-1");
    p = good; p.Hkv = 0; expect_reject(&p, NULL, "Hkv=0");
    p = good; p.D = 0; expect_reject(&p, NULL, "D=0");
    p = good; p.L = 0; expect_reject(&p, NULL, "L=0");
    p = good; p.Hq = 6; p.Hkv = 4; expect_reject(&p, NULL, "Hq=6 is not a multiple of Hkv=4");
    p = good; p.B = 1 << 16; p.T = 1 << 16; p.D = 128; expect_reject(&p, NULL, "too large");
    p = good; p.q = NULL; expect_reject(&p, NULL, "missing tensor 'q'");
    p = good; p.k_cache = NULL; expect_reject(&p, NULL, "missing tensor 'k_cache'");
    p = good; p.v_cache = NULL; expect_reject(&p, NULL, "missing tensor 'v_cache'");
    p = good; p.out = NULL; expect_reject(&p, NULL, "missing tensor 'out'");
    p = good; p.scale = NAN; expect_reject(&p, NULL, "scale=nan is not finite");
    p = good; p.scale = INFINITY; expect_reject(&p, NULL, "scale=inf");
    int32_t neg[2] = {0, -1}, sl_hi[2] = {6, 5}, sl_lo[2] = {-1, 5}, big[2] = {3, 7}, huge[2] = {0, 100};
    int32_t sl0[2] = {0, 0};
    p = good; p.past = neg; expect_reject(&p, NULL, "past[1]=-1 is negative");
    p = good; p.seq_len = sl_hi; expect_reject(&p, NULL, "seq_len[0]=6 outside [0, T=5]");
    p = good; p.seq_len = sl_lo; expect_reject(&p, NULL, "seq_len[0]=-1 outside");
    p = good; p.seq_len = NULL; p.past = big; p.L = 11; expect_reject(&p, NULL, "past[1] + seq_len[1] = 7 + 5 = 12 exceeds the cache capacity L=11");
    p = good; p.past = huge; p.seq_len = sl0; expect_reject(&p, NULL, "exceeds the cache capacity"); /* empty, still out of range */
    p = good; p.out = (float *)p.q; expect_reject(&p, NULL, "out overlaps 'q'");
    p = good; p.out = (float *)p.k_cache + 3; expect_reject(&p, NULL, "out overlaps 'k_cache'");
    p = good; p.out = (float *)p.v_cache + nc(&good) - 1; expect_reject(&p, NULL, "out overlaps 'v_cache'");
    p = good; p.k_cache = p.v_cache; assert_int_equal(attention_validate(&p, 0, err, sizeof err), 0); /* inputs may alias */
    attention_opts o = {.threads = -1};
    expect_reject(&good, &o, "thread count -1");
    assert_int_not_equal(attention_run(NULL, &good, NULL, err, sizeof err), 0);
    assert_non_null(strstr(err, "no implementation"));
    assert_int_not_equal(attention_validate(NULL, 0, err, sizeof err), 0);
    assert_non_null(strstr(err, "no problem"));
    assert_null(attention_find("nope"));
    assert_null(attention_find(NULL));
    assert_non_null(attention_find("flash"));

    /* Non-finite values: only the value check (CLI, golden loaders) scans,
     * and only what the kernels read. */
    float *k = (float *)good.k_cache, *v = (float *)good.v_cache;
    /* good: past {3, 6}, seq_len {5, 1} */
    assert_int_equal(good.past[1], 6);
    assert_int_equal(good.seq_len[1], 1);
    float keep = qrow(&good, 1, 0, 3)[4];
    qrow(&good, 1, 0, 3)[4] = NAN;
    expect_value_reject(&good, "q has a non-finite value (nan) at [b=1, t=0, h=3, d=4]");
    qrow(&good, 1, 0, 3)[4] = keep;
    keep = qrow(&good, 1, 3, 0)[0]; /* t = 3 >= seq_len[1] = 1: a padding row */
    qrow(&good, 1, 3, 0)[0] = NAN;
    assert_int_equal(attention_validate(&good, 1, err, sizeof err), 0);
    qrow(&good, 1, 3, 0)[0] = keep;
    keep = krow(&good, k, 0, 1, 7)[2];
    krow(&good, k, 0, 1, 7)[2] = INFINITY;
    expect_value_reject(&good, "k_cache has a non-finite value (inf) at [b=0, h=1, pos=7, d=2]");
    krow(&good, k, 0, 1, 7)[2] = keep;
    keep = krow(&good, v, 1, 0, 0)[5];
    krow(&good, v, 1, 0, 0)[5] = -INFINITY;
    expect_value_reject(&good, "v_cache has a non-finite value (-inf) at [b=1, h=0, pos=0, d=5]");
    krow(&good, v, 1, 0, 0)[5] = keep;
    assert_int_equal(attention_validate(&good, 1, err, sizeof err), 0);
    free_problem(&good);
}

/* cmocka entry points */
static void grid(void **st) { (void)st; grid_body(); }
static void grid_every_isa(void **st) { (void)st; with_every_isa(grid_body); }
static void model_shapes(void **st) { (void)st; model_shapes_body(); }
static void model_shapes_every_isa(void **st) { (void)st; with_every_isa(model_shapes_body); }
static void single_key(void **st) { (void)st; single_key_body(); }
static void identical_keys(void **st) { (void)st; identical_keys_body(); }
static void hand_two_keys(void **st) { (void)st; hand_two_keys_body(); }
static void gqa_mapping(void **st) { (void)st; gqa_mapping_body(); }
static void math_every_isa(void **st)
{
    (void)st;
    with_every_isa(single_key_body);
    with_every_isa(identical_keys_body);
    with_every_isa(hand_two_keys_body);
    with_every_isa(gqa_mapping_body);
}
static void causality(void **st) { (void)st; causality_body(); }
static void v_scaling(void **st) { (void)st; v_scaling_body(); }
static void prefill_decode(void **st) { (void)st; prefill_decode_body(); }
static void padding(void **st) { (void)st; padding_body(); }
static void large_scores(void **st) { (void)st; large_scores_body(); }
static void thread_counts(void **st) { (void)st; thread_counts_body(); }
static void properties_every_isa(void **st)
{
    (void)st;
    with_every_isa(causality_body);
    with_every_isa(prefill_decode_body);
    with_every_isa(padding_body);
    with_every_isa(large_scores_body);
    with_every_isa(thread_counts_body);
}
static void flops(void **st) { (void)st; flops_body(); }
static void invalid(void **st) { (void)st; invalid_body(); }

int main(void)
{
    const struct CMUnitTest grid_tests[] = {
        cmocka_unit_test(grid),
        cmocka_unit_test(grid_every_isa),
        cmocka_unit_test(model_shapes),
        cmocka_unit_test(model_shapes_every_isa),
    };
    const struct CMUnitTest math_tests[] = {
        cmocka_unit_test(single_key),
        cmocka_unit_test(identical_keys),
        cmocka_unit_test(hand_two_keys),
        cmocka_unit_test(gqa_mapping),
        cmocka_unit_test(math_every_isa),
    };
    const struct CMUnitTest property_tests[] = {
        cmocka_unit_test(causality),
        cmocka_unit_test(v_scaling),
        cmocka_unit_test(prefill_decode),
        cmocka_unit_test(padding),
        cmocka_unit_test(large_scores),
        cmocka_unit_test(thread_counts),
        cmocka_unit_test(properties_every_isa),
        cmocka_unit_test(flops),
    };
    const struct CMUnitTest invalid_tests[] = {
        cmocka_unit_test(invalid),
    };
    int fails = 0;
    fails += cmocka_run_group_tests_name("attention grid", grid_tests, NULL, NULL);
    fails += cmocka_run_group_tests_name("attention vs the math", math_tests, NULL, NULL);
    fails += cmocka_run_group_tests_name("attention properties", property_tests, NULL, NULL);
    fails += cmocka_run_group_tests_name("attention invalid", invalid_tests, NULL, NULL);
    printf("[   INFO   ] flash vs ref, worst normwise per ISA level (claim %.1g):", attention_impls[0].claim_tol);
    for (int l = ISA_GENERIC; l <= ISA_TOP && l <= (int)cpu_isa_best(); l++)
        printf(" %s %.3g", cpu_isa_name((cpu_isa_level)l), worst_flash[l]);
    printf("\n");
    return fails ? 1 : 0;
}
