/* test_linear.c - the linear family (kernels/linear/, ref/linear_ref.c).
 *
 * ref is checked against sums the test computes itself (integer-valued
 * inputs, exact in any order); every other implementation against ref at its
 * claim_tol (normwise, harness/metrics.h), for fp32 and bf16 weights, with
 * and without accumulation, at every ISA level the host has (each forced in turn; the others
 * are printed as skipped, tests/support/isa_levels.h).  The lossy entries (tiled-bf16dot,
 * tiled-amx), which round x to bf16, are also held at 1e-5 against ref run on x rounded here by
 * the IEEE definition (nearest bf16, ties to even): they differ from that exact product only by
 * fp32 sums (AMX tiles where the host has them, at avx512-bf16; vdpbf16ps or its emulation below). */
#include "kernels/cpu_features.h"
#include "kernels/linear/linear.h"
#include "kernels/quant/quant.h"
#include "ref/linear_ref.h"
#include "harness/metrics.h"
#include "tests/support/isa_levels.h"
#include "common/clock.h"
#include "harness/calibrate.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 88172645463325252ull;
static float urand(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / (1ull << 23)) - 1.0);
}

/* Weights of type wt, values exactly representable in bf16. */
static void *weights(int N, int K, q35_wtype wt, int integer)
{
    void *w = malloc(q35_wtype_bytes(wt, (size_t)N * K));
    assert_non_null(w);
    for (size_t i = 0; i < (size_t)N * K; i++) {
        const float v = q35_bf16_to_f32(q35_f32_to_bf16(integer ? (float)((int)(i % 7) - 3) : urand()));
        if (wt == WT_BF16) ((uint16_t *)w)[i] = q35_f32_to_bf16(v);
        else ((float *)w)[i] = v;
    }
    return w;
}

static void test_ref_exact(void **state)
{
    (void)state;
    const int M = 3, N = 5, K = 9;
    for (int wt = 0; wt < 2; wt++) {
        void *w = weights(N, K, (q35_wtype)wt, 1);
        float x[3 * 9], y[3 * 5];
        for (int i = 0; i < M * K; i++) x[i] = (float)(i % 5) - 2;
        for (int acc = 0; acc < 2; acc++) {
            for (int i = 0; i < M * N; i++) y[i] = 10.0f;
            linear_problem p = {.M = M, .N = N, .K = K, .x = x, .w = w, .wt = (q35_wtype)wt, .y = y, .accumulate = acc};
            char err[128];
            assert_int_equal(linear_run(&linear_ref_impl, &p, NULL, err, sizeof err), 0);
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) {
                    long s = acc ? 10 : 0;
                    for (int k = 0; k < K; k++) s += (long)x[m * K + k] * ((n * K + k) % 7 - 3);
                    assert_true(y[m * N + n] == (float)s);
                }
        }
        free(w);
    }
}

/* x rounded to the nearest bf16, ties to the even pattern, decided in double (finite x). */
static float bf16_round_spec(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    const uint32_t lo = u & 0xFFFF0000u, hi = lo + 0x10000u;
    float flo, fhi;
    memcpy(&flo, &lo, 4);
    memcpy(&fhi, &hi, 4);
    const double dlo = fabs((double)x - flo), dhi = fabs((double)fhi - x);
    return dlo < dhi ? flo : dhi < dlo ? fhi : ((lo >> 16) & 1) ? fhi : flo;
}

typedef struct { int M, N, K; double worst_bf16dot; } shape;

static void check_level(cpu_isa_level level, void *ctx)
{
    shape *sh = ctx;
    const int M = sh->M, N = sh->N, K = sh->K;
    {
        for (int wt = 0; wt < 2; wt++)
            for (int acc = 0; acc < 2; acc++) {
                void *w = weights(N, K, (q35_wtype)wt, 0);
                float *x = malloc((size_t)M * K * sizeof *x), *y0 = malloc((size_t)M * N * sizeof *y0);
                float *y1 = malloc((size_t)M * N * sizeof *y1);
                assert_true(x && y0 && y1);
                for (size_t i = 0; i < (size_t)M * K; i++) x[i] = urand();
                for (size_t i = 0; i < (size_t)M * N; i++) y0[i] = y1[i] = urand();
                linear_problem p = {.M = M, .N = N, .K = K, .x = x, .w = w, .wt = (q35_wtype)wt, .y = y0,
                                    .accumulate = acc};
                char err[128];
                assert_int_equal(linear_run(&linear_ref_impl, &p, NULL, err, sizeof err), 0);
                for (int i = 0; i < linear_n_impls; i++) /* the kernel table; ref is ref/'s */
                    for (int th = 1; th <= 3; th++) {
                        /* y1 holds the initial y; each run works on a copy */
                        float *y = malloc((size_t)M * N * sizeof *y);
                        assert_non_null(y);
                        memcpy(y, y1, (size_t)M * N * sizeof *y);
                        linear_problem q = p;
                        q.y = y;
                        assert_int_equal(linear_run(&linear_impls[i], &q, &(linear_opts){.threads = th}, err,
                                                    sizeof err), 0);
                        const double e = err_compare(y, y0, (size_t)M * N).normwise;
                        if (e > linear_impls[i].claim_tol)
                            fail_msg("%s M=%d N=%d K=%d wt=%d acc=%d threads=%d isa=%s: error %.2e > %.0e",
                                     linear_impls[i].name, M, N, K, wt, acc, th, cpu_isa_name(cpu_isa()), e,
                                     linear_impls[i].claim_tol);
                        assert_int_equal(cpu_isa(), level);
                        /* tiled-int8dot rounds x only for quantized W (tests/test_int8dot.c): on fp32 and
                         * bf16 W it is the exact tiled path, so it must meet tiled's claim */
                        const int int8dot = !strcmp(linear_impls[i].name, "tiled-int8dot");
                        if (int8dot && e > linear_find("tiled")->claim_tol)
                            fail_msg("tiled-int8dot on wt=%d M=%d N=%d K=%d: error %.2e, not the exact path", wt, M,
                                     N, K, e);
                        if (linear_impls[i].lossy && wt == WT_BF16 && !int8dot) { /* tiled-bf16dot, tiled-amx */
                            if (e > sh->worst_bf16dot) sh->worst_bf16dot = e;
                            /* against ref on the rounded x: only the fp32 sums differ */
                            float *xr = malloc((size_t)M * K * sizeof *xr), *yr = malloc((size_t)M * N * sizeof *yr);
                            assert_true(xr && yr);
                            for (size_t j = 0; j < (size_t)M * K; j++) xr[j] = bf16_round_spec(x[j]);
                            memcpy(yr, y1, (size_t)M * N * sizeof *yr);
                            linear_problem r = p;
                            r.x = xr;
                            r.y = yr;
                            assert_int_equal(linear_run(&linear_ref_impl, &r, NULL, err, sizeof err), 0);
                            const double er = err_compare(y, yr, (size_t)M * N).normwise;
                            if (er > 1e-5)
                                fail_msg("%s M=%d N=%d K=%d acc=%d threads=%d isa=%s: %.2e from ref on rounded x",
                                         linear_impls[i].name, M, N, K, acc, th, cpu_isa_name(cpu_isa()), er);
                            free(xr);
                            free(yr);
                        }
                        free(y);
                    }
                free(w); free(x); free(y0); free(y1);
            }
    }
}

static int levels_ran;
static void check_all(int M, int N, int K)
{
    shape sh = {M, N, K, 0};
    levels_ran = isa_levels_each("test_linear", check_level, &sh);
    print_message("M=%d N=%d K=%d: %d ISA levels; lossy entries (tiled-bf16dot, tiled-amx) worst normwise error vs ref (bf16 W) %.2e\n", M, N,
                  K, levels_ran, sh.worst_bf16dot);
}

static void test_decode_shapes(void **state) { (void)state; check_all(1, 1000, 128); check_all(1, 37, 13); }
static void test_prefill_shapes(void **state) { (void)state; check_all(64, 300, 96); check_all(7, 129, 33); }
/* AMX blocks: 32 x 32 with 16-row and partial-column edges, K past one 32-step with a tail */
static void test_amx_edges(void **state) { (void)state; check_all(49, 97, 70); check_all(16, 32, 64); }

static void test_validate(void **state)
{
    (void)state;
    float x[4], y[4];
    float w[4];
    char err[160];
    linear_problem p = {.M = 2, .N = 2, .K = 2, .x = x, .w = w, .wt = WT_F32, .y = y};
    assert_int_equal(linear_validate(&p, err, sizeof err), 0);
    linear_problem b = p;  b.K = 0;
    assert_int_equal(linear_validate(&b, err, sizeof err), -1);
    assert_non_null(strstr(err, "K=0"));
    b = p;  b.w = NULL;
    assert_int_equal(linear_validate(&b, err, sizeof err), -1);
    assert_non_null(strstr(err, "missing w"));
    b = p;  b.y = x;
    assert_int_equal(linear_validate(&b, err, sizeof err), -1);
    assert_non_null(strstr(err, "overlaps"));
    b = p;  b.wt = (q35_wtype)7;
    assert_int_equal(linear_validate(&b, err, sizeof err), -1);
    b = p;  b.M = 0;  b.x = NULL;  /* nothing to do is fine */
    assert_int_equal(linear_validate(&b, err, sizeof err), 0);
}

/* linear_run_shared: each y is bitwise what linear_run writes for its problem alone, for every
 * entry (ref and the lossy ones included), weight types mixed in one group (a --quant-only model),
 * one output accumulating, 1-3 threads, M from decode to past Q35_INT8DOT_MAX_M (where the group
 * runs one by one), at every ISA level the host has.  One row of x through the integer dots is
 * split into one share of the group's bytes per thread, with boundaries inside the problems: every
 * shared call at one row must also be bitwise the same at 2 and 3 threads as at 1 (a column left
 * out or computed twice, into the accumulating y, would show). */
static void shared_level(cpu_isa_level level, void *ctx)
{
    (void)ctx;
    enum { NP = 6, K = 96 };
    static const int Ns[NP] = {300, 64, 16, 17, 48, 304};
    static const q35_wtype wts[NP] = {WT_Q8_0, WT_BF16, WT_Q4_0, WT_F32, WT_Q4_0_R16, WT_Q8_0_R16};
    static const int Ms[] = {1, 3, 8, 70};
    float *row = malloc(K * sizeof *row);
    assert_non_null(row);
    void *w[NP];
    for (int i = 0; i < NP; i++) {
        if (!q35_wtype_is_quant(wts[i])) { w[i] = weights(Ns[i], K, wts[i], 0); continue; }
        const q35_wtype bt = q35_wtype_block(wts[i]);
        w[i] = malloc(q35_wtype_bytes(wts[i], (size_t)Ns[i] * K));
        assert_non_null(w[i]);
        for (int n = 0; n < Ns[i]; n++) {
            for (int k = 0; k < K; k++) row[k] = urand();
            void *dst = (char *)w[i] + q35_wtype_bytes(wts[i], (size_t)n * K);
            assert_int_equal(bt == WT_Q8_0 ? q35_quantize_row_q8_0(row, dst, K) : q35_quantize_row_q4_0(row, dst, K), 0);
        }
        if (q35_wtype_is_r16(wts[i])) { /* the rows written, interleaved (ref reads them through q35_w_rc) */
            void *rows = w[i];
            w[i] = malloc(q35_wtype_bytes(wts[i], (size_t)Ns[i] * K));
            assert_non_null(w[i]);
            q35_r16_pack(rows, bt == WT_Q8_0, (size_t)Ns[i], K, w[i]);
            free(rows);
        }
    }
    for (int im = 0; im <= linear_n_impls; im++) {
        const linear_impl *impl = im < linear_n_impls ? &linear_impls[im] : &linear_ref_impl;
        if (impl->available && !impl->available()) continue;
        for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++) {
            const int M = Ms[mi];
            float *x = malloc((size_t)M * K * sizeof *x), *init[NP], *alone[NP], *together[NP], *one_thread[NP];
            assert_non_null(x);
            for (size_t i = 0; i < (size_t)M * K; i++) x[i] = urand();
            linear_problem ps[NP];
            for (int i = 0; i < NP; i++) {
                const size_t ny = (size_t)M * Ns[i];
                init[i] = malloc(ny * sizeof(float));
                alone[i] = malloc(ny * sizeof(float));
                together[i] = malloc(ny * sizeof(float));
                one_thread[i] = malloc(ny * sizeof(float));
                assert_true(init[i] && alone[i] && together[i] && one_thread[i]);
                for (size_t j = 0; j < ny; j++) init[i][j] = urand();
                ps[i] = (linear_problem){.M = M, .N = Ns[i], .K = K, .x = x, .w = w[i], .wt = wts[i], .y = together[i],
                                         .accumulate = i == 1};
            }
            for (int th = 1; th <= 3; th++) {
                char err[160];
                const linear_opts o = {.threads = th};
                for (int i = 0; i < NP; i++) {
                    memcpy(alone[i], init[i], (size_t)M * Ns[i] * sizeof(float));
                    memcpy(together[i], init[i], (size_t)M * Ns[i] * sizeof(float));
                    linear_problem one = ps[i];
                    one.y = alone[i];
                    assert_int_equal(linear_run(impl, &one, &o, err, sizeof err), 0);
                }
                if (linear_run_shared(impl, ps, NP, &o, err, sizeof err)) fail_msg("%s: %s", impl->name, err);
                for (int i = 0; i < NP; i++)
                    if (memcmp(alone[i], together[i], (size_t)M * Ns[i] * sizeof(float)))
                        fail_msg("%s M=%d problem %d (%s) threads=%d isa=%s: the shared call differs from linear_run",
                                 impl->name, M, i, q35_wtype_name(wts[i]), th, cpu_isa_name(cpu_isa()));
                for (int i = 0; M == 1 && i < NP; i++) {
                    if (th == 1) memcpy(one_thread[i], together[i], (size_t)Ns[i] * sizeof(float));
                    else if (memcmp(one_thread[i], together[i], (size_t)Ns[i] * sizeof(float)))
                        fail_msg("%s M=1 problem %d (%s) isa=%s: the shared call at %d threads differs from 1 thread",
                                 impl->name, i, q35_wtype_name(wts[i]), cpu_isa_name(cpu_isa()), th);
                }
                assert_int_equal(cpu_isa(), level);
            }
            for (int i = 0; i < NP; i++) { free(init[i]); free(alone[i]); free(together[i]); free(one_thread[i]); }
            free(x);
        }
    }
    for (int i = 0; i < NP; i++) free(w[i]);
    free(row);
}

static void test_shared(void **state)
{
    (void)state;
    isa_levels_each("test_linear", shared_level, NULL);
    /* what linear_run_shared refuses */
    float x[8], x2[8], y[8], y2[8], w[8];
    char err[200];
    const linear_problem a = {.M = 2, .N = 2, .K = 2, .x = x, .w = w, .wt = WT_F32, .y = y};
    linear_problem ps[2] = {a, a};
    ps[1].y = y2;
    assert_int_equal(linear_run_shared(linear_find("tiled"), ps, 2, NULL, err, sizeof err), 0);
    ps[1].x = x2;
    assert_int_equal(linear_run_shared(linear_find("tiled"), ps, 2, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "problem 1 reads another x"));
    ps[1].x = x;
    ps[1].K = 1;
    assert_int_equal(linear_run_shared(linear_find("tiled"), ps, 2, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "problem 1 reads another x"));
    ps[1].K = 2;
    ps[1].y = y + 2; /* rows 1 of y overlap */
    assert_int_equal(linear_run_shared(linear_find("tiled"), ps, 2, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "y of problem 1 overlaps y of problem 0"));
    assert_int_equal(linear_run_shared(linear_find("tiled"), ps, 0, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "no problems"));
}

/* ------------------------------------------------------------------ */
/* Benchmark mode (not a test):                                        */
/*   test_linear bench [--threads N] [--machine FILE] [--reps R] [M N K ...] */
/* Every (ISA level, entry, weight type) variant below timed interleaved  */
/* sample by sample; median [min, max] ms, GFLOP/s, % of the fp32 FMA and */
/* BF16-dot peaks read from FILE (q35lab calibrate --out).               */
/* ------------------------------------------------------------------ */

typedef struct { const char *label; cpu_isa_level isa; const char *impl; q35_wtype wt; } variant;

static int cmp_d(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void bench_shape(int M, int N, int K, int threads, int reps, double fma_peak, double dot_peak)
{
    static const variant V[] = {
        {"fp32 W  avx2 tiled", ISA_AVX2, "tiled", WT_F32},
        {"fp32 W  avx512 tiled", ISA_AVX512, "tiled", WT_F32},
        {"bf16 W  avx2 tiled", ISA_AVX2, "tiled", WT_BF16},
        {"bf16 W  avx512 tiled", ISA_AVX512, "tiled", WT_BF16},
        {"bf16 W  avx512-bf16 tiled-bf16dot", ISA_AVX512_BF16, "tiled-bf16dot", WT_BF16},
        {"bf16 W  avx512-bf16 tiled-amx", ISA_AVX512_BF16, "tiled-amx", WT_BF16},
    };
    enum { NV = sizeof V / sizeof V[0], MAXR = 64 };
    if (reps > MAXR) reps = MAXR;
    float *x = malloc((size_t)M * K * 4), *y = malloc((size_t)M * N * 4), *wf = malloc((size_t)N * K * 4);
    uint16_t *wh = malloc((size_t)N * K * 2);
    if (!x || !y || !wf || !wh) return;
    for (size_t i = 0; i < (size_t)M * K; i++) x[i] = urand();
    for (size_t i = 0; i < (size_t)N * K; i++) wh[i] = q35_f32_to_bf16(wf[i] = urand());
    double t[NV][MAXR];
    int calls[NV];
    char err[128];
    for (int r = -1; r < reps; r++) /* r = -1: warm-up, sizes the calls per sample (>= 20 ms) */
        for (int v = 0; v < (int)NV; v++) {
            if (V[v].isa > cpu_isa_best()) continue;
            const linear_impl *im = linear_find(V[v].impl);
            linear_problem p = {.M = M, .N = N, .K = K, .x = x, .w = V[v].wt == WT_BF16 ? (void *)wh : (void *)wf,
                                .wt = V[v].wt, .y = y};
            cpu_isa_force(V[v].isa);
            const int n = r < 0 ? 1 : calls[v];
            int done = 0;
            const double t0 = q35_now();
            do {
                linear_run(im, &p, &(linear_opts){.threads = threads}, err, sizeof err);
                done++;
            } while (r < 0 ? q35_now() - t0 < 0.02 : done < n);
            const double dt = (q35_now() - t0) / done;
            cpu_isa_force(ISA_AUTO);
            if (r < 0) calls[v] = done;
            else t[v][r] = dt;
        }
    const double flop = 2.0 * M * N * K;
    for (int v = 0; v < (int)NV; v++) {
        if (V[v].isa > cpu_isa_best()) {
            printf("  %-36s M=%4d N=%5d K=%5d  skipped: this CPU has only %s\n", V[v].label, M, N, K,
                   cpu_isa_name(cpu_isa_best()));
            continue;
        }
        qsort(t[v], (size_t)reps, sizeof(double), cmp_d);
        const double med = t[v][reps / 2], g = flop / med * 1e-9;
        printf("  %-36s M=%4d N=%5d K=%5d %8.3f ms [%.3f, %.3f] %7.1f GFLOP/s [%.1f, %.1f]", V[v].label, M, N, K,
               med * 1e3, t[v][0] * 1e3, t[v][reps - 1] * 1e3, g, flop / t[v][reps - 1] * 1e-9, flop / t[v][0] * 1e-9);
        if (fma_peak > 0) printf("  %5.1f%% of fp32 FMA peak", 100 * g / fma_peak);
        if (dot_peak > 0 && V[v].wt == WT_BF16 && strcmp(V[v].impl, "tiled"))
            printf(", %5.1f%% of BF16-dot peak", 100 * g / dot_peak);
        printf("\n");
    }
    free(x); free(y); free(wf); free(wh);
}

static int bench_main(int argc, char **argv)
{
    int threads = 2, reps = 7, a = 2;
    const char *machine = NULL;
    for (; a + 1 < argc && argv[a][0] == '-'; a += 2) {
        if (!strcmp(argv[a], "--threads")) threads = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--reps")) reps = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--machine")) machine = argv[a + 1];
        else {
            fprintf(stderr, "usage: %s bench [--threads N] [--reps R] [--machine FILE] [M N K ...]\n", argv[0]);
            return 2;
        }
    }
    double fma = 0, dot = 0;
    if (machine) {
        q35_machine_limits lim;
        char err[256];
        if (q35_limits_load(machine, &lim, err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            return 2;
        }
        fma = q35_limit_fma_peak(&lim, threads);
        dot = q35_limit_bf16dot_peak(&lim, threads);
        printf("peaks at %d threads from %s (%s): fp32 FMA %.1f GFLOP/s, BF16 dot %.1f GFLOP/s%s\n", threads, machine,
               lim.date, fma, dot, lim.busy ? " (calibrated on a BUSY machine)" : "");
    }
    printf("linear family, %d threads, median of %d interleaved samples [min, max]; best ISA %s\n", threads, reps,
           cpu_isa_name(cpu_isa_best()));
    if (a < argc) {
        for (; a + 2 < argc; a += 3) bench_shape(atoi(argv[a]), atoi(argv[a + 1]), atoi(argv[a + 2]), threads, reps, fma, dot);
        return 0;
    }
    /* Qwen3.5-0.8B projections at a 512-token prefill (hidden 1024: MLP gate/up and down, the
     * DeltaNet qkv and out projections) and 35B-A3B expert GEMMs (gate/up 512 x 2048, down 2048 x 512)
     * at 64 and 256 tokens per expert */
    static const int shapes[][3] = {{512, 3584, 1024}, {512, 1024, 3584}, {512, 6144, 1024}, {512, 1024, 2048},
                                    {64, 512, 2048},   {64, 2048, 512},   {256, 512, 2048},  {256, 2048, 512}};
    for (int i = 0; i < (int)(sizeof shapes / sizeof shapes[0]); i++)
        bench_shape(shapes[i][0], shapes[i][1], shapes[i][2], threads, reps, fma, dot);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "bench")) return bench_main(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_exact),
        cmocka_unit_test(test_decode_shapes),
        cmocka_unit_test(test_prefill_shapes),
        cmocka_unit_test(test_amx_edges),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_shared),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
