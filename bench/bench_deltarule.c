/* q35lab bench deltarule: every implementation side by side, per (T, B,
 * threads), as medians with spread and as fractions of the limits
 * `q35lab calibrate` measured on this machine (results/machine.json).
 *
 * Flops are counted in the recurrent form, 6*Dk*Dv per valid token and value
 * head (docs/deltarule.md §5), whatever the implementation does, so GFLOP/s
 * compare implementations on the same useful work.  Bytes are the state read
 * and written plus the inputs and outputs touched once.
 */
#include "bench/bench.h"
#include "harness/impl_select.h"
#include "harness/calibrate.h"
#include "cli/cli.h"
#include "harness/counters.h"
#include "kernels/cpu_features.h"
#include "kernels/deltarule/deltarule.h"
#include "harness/deltarule_crossover.h"
#include "harness/deltarule_inputs.h"
#include "harness/timing.h"
#include "common/clock.h"
#include "common/huge_pages.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *name;
    int Hk, Hv, Dk, Dv, deltanet_layers; /* layers: how many states --cold rotates over */
} dr_bench_shape;

/* From the released configs: linear_num_key_heads, linear_num_value_heads,
 * linear_key_head_dim, linear_value_head_dim; 3 of 4 layers are DeltaNet. */
static const dr_bench_shape shapes[] = {
    {"qwen3.5-0.8b", 16, 16, 128, 128, 18},
    {"qwen3.5-35b-a3b", 16, 32, 128, 128, 30},
};

typedef struct {
    dr_bench_shape shape;
    int Ts[16], nT, Bs[8], nB, threads[8], nthreads, reps, cold;
    int chunks[8], nchunks; /* chunk sizes for the chunked forms; 0: their defaults */
    const char *impl, *counters, *json, *csv, *machine, *crossover;
} dr_bench_config;

static int parse_shape(const char *s, dr_bench_shape *out)
{
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        if (!strcmp(s, shapes[i].name)) { *out = shapes[i]; return 0; }
    int v[4];
    if (!strncmp(s, "custom:", 7) && cli_int_list(s + 7, v, 4, 1, 65536) == 4 && v[1] % v[0] == 0) {
        *out = (dr_bench_shape){"custom", v[0], v[1], v[2], v[3], 18};
        return 0;
    }
    fprintf(stderr, "q35lab: --shape expects qwen3.5-0.8b, qwen3.5-35b-a3b or custom:Hk,Hv,Dk,Dv "
                    "(Hv a multiple of Hk), got '%s'\n", s);
    return -1;
}

static int parse_args(int argc, char **argv, dr_bench_config *c)
{
    *c = (dr_bench_config){.shape = shapes[0], .Ts = {1, 64, 512, 2048}, .nT = 4, .Bs = {1}, .nB = 1,
                           .threads = {omp_get_num_procs()}, .nthreads = 1, .reps = 10, .impl = "all",
                           .counters = "default", .machine = "results/machine.json",
                           .crossover = DR_CROSSOVER_FILE};
    const char *v;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--cold")) { c->cold = 1; continue; }
        if (!(v = cli_value(argc, argv, &i))) return -1;
        if (!strcmp(a, "--impl")) c->impl = v;
        else if (!strcmp(a, "--counters")) c->counters = v;
        else if (!strcmp(a, "--json")) c->json = v;
        else if (!strcmp(a, "--csv")) c->csv = v;
        else if (!strcmp(a, "--machine")) c->machine = v;
        else if (!strcmp(a, "--crossover")) c->crossover = v;
        else if (!strcmp(a, "--chunk")) { if ((c->nchunks = cli_int_list(v, c->chunks, 8, 1, 1024)) < 0) goto bad; }
        else if (!strcmp(a, "--shape")) { if (parse_shape(v, &c->shape)) return -1; }
        else if (!strcmp(a, "--reps")) { if (cli_int(a, v, 1, 100000, &c->reps)) return -1; }
        else if (!strcmp(a, "--T")) { if ((c->nT = cli_int_list(v, c->Ts, 16, 1, 1 << 20)) < 0) goto bad; }
        else if (!strcmp(a, "--B")) { if ((c->nB = cli_int_list(v, c->Bs, 8, 1, 4096)) < 0) goto bad; }
        else if (!strcmp(a, "--threads")) { if ((c->nthreads = cli_int_list(v, c->threads, 8, 1, 1024)) < 0) goto bad; }
        else { fprintf(stderr, "q35lab: bench deltarule: unknown option '%s'\n", a); return -1; }
        continue;
    bad:
        fprintf(stderr, "q35lab: %s expects a comma-separated list of positive integers, got '%s'\n", a, v);
        return -1;
    }
    if (strcmp(c->impl, "all")) {
        char list[256];
        snprintf(list, sizeof list, "%s", c->impl);
        for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ","))
            if (!deltarule_named(tok)) {
                fprintf(stderr, "q35lab: no deltarule implementation '%s' (see `q35lab list`)\n", tok);
                return -1;
            }
    }
    return 0;
}

/* The states one run touches: with --cold, one per DeltaNet layer, visited
 * in turn so that a layer's state has left the caches when it comes back
 * (the decode case in a real model); otherwise one, warm. */
typedef struct {
    float **state;
    int n;
    size_t elems;
    float *flush;       /* --cold: streamed between repetitions, outside the timing */
    size_t flush_elems;
} state_ring;

/* Reads the flush buffer so the next run finds neither its state nor its
 * inputs in cache: in a real model the layer's weights (hundreds of MB)
 * stream through the caches between two visits of one layer's state, and
 * 18 layers' states alone (18 MiB) would still fit this CPU's 32 MiB L3.
 * The flush runs on the same number of threads as the timed call, as a
 * model's matmuls do between two DeltaNet layers: a team left idle for the
 * milliseconds of a one-thread flush falls asleep, and waking it costs tens
 * of microseconds on a VM -- more than the call itself, and not what a
 * model pays (measured: 2-thread cold decode 171 us with a 1-thread flush,
 * slower than 1 thread's 143 us). */
static void flush_caches(const state_ring *r, int threads)
{
    volatile float sink = 0.0f;
    float acc = 0.0f;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : acc)
    for (size_t i = 0; i < r->flush_elems; i += 16) acc += r->flush[i];
    sink = acc;
    (void)sink;
}

static int ring_make(state_ring *r, const dr_case *c, int layers, int cold)
{
    r->n = layers;
    if (cold) {
        long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
        r->flush_elems = (size_t)(l3 > 0 ? 2 * l3 : 64L << 20) / sizeof(float);
        if (!(r->flush = q35_alloc_huge(r->flush_elems * sizeof(float)))) return -1;
        for (size_t i = 0; i < r->flush_elems; i++) r->flush[i] = 1.0f;
    }
    r->elems = dr_state_elems(&c->p);
    r->state = calloc(layers, sizeof *r->state);
    if (!r->state) return -1;
    for (int i = 0; i < layers; i++) {
        if (!(r->state[i] = q35_alloc_huge(r->elems * sizeof(float)))) return -1;
        memcpy(r->state[i], c->initial_state, r->elems * sizeof(float));
    }
    return 0;
}

static void ring_free(state_ring *r)
{
    for (int i = 0; i < r->n && r->state; i++)
        if (r->state[i]) q35_free_huge(r->state[i], r->elems * sizeof(float));
    free(r->state);
    if (r->flush) q35_free_huge(r->flush, r->flush_elems * sizeof(float));
}

/* Times `reps` runs of one implementation; the state is updated in place
 * (final_state == initial_state), as a model does. */
static int time_impl(const deltarule_impl *im, int chunk, dr_case *c, state_ring *ring, int reps, int threads,
                     q35_counters *ctr, double *times, char *err, size_t errlen)
{
    deltarule_opts o = {.threads = threads, .chunk = chunk};
    deltarule_problem p = c->p;
    /* r = -1: untimed warm-up, repeated for WARMUP_SECONDS (bench.h).  One
     * call was not enough: the first few dozen 20 us decode calls of a run
     * took ~31 us, so a 10-repetition sweep measured a cold start, not the
     * steady state a model's decode runs in. */
    const double warm_until = q35_now() + WARMUP_SECONDS;
    for (int r = -1; r < reps; r++) {
        float *s = ring->state[(r + 1) % ring->n];
        p.initial_state = p.final_state = s;
        if (ring->flush) flush_caches(ring, threads);
        if (r >= 0 && ctr) q35_counters_start(ctr);
        q35_wake_team(threads);
        const double t0 = q35_now();
        const int rc = deltarule_run(im, &p, &o, err, errlen);
        const double t1 = q35_now();
        if (r >= 0 && ctr) q35_counters_stop(ctr);
        if (rc) return -1;
        if (r >= 0) times[r] = t1 - t0;
        else if (t1 < warm_until) r--; /* warm up again */
    }
    return 0;
}

/* Medians of the recurrent form and chunked per (T index, thread index),
 * for auto.  The recurrent form is what auto runs, `recurrent-pairs`; a run
 * that measured only `recurrent` uses that. */
typedef struct {
    double rec[16][8], pairs[16][8], chk[16][8];
} crossover_medians;

static void record_crossover(crossover_medians *x, const char *impl, int it, int ith, double median)
{
    if (!strcmp(impl, "recurrent")) x->rec[it][ith] = median;
    if (!strcmp(impl, "recurrent-pairs")) x->pairs[it][ith] = median;
    if (!strcmp(impl, "chunked")) x->chk[it][ith] = median;
}

/* Writes auto's crossover when both forms were measured at two or more T
 * (ascending) for every thread count; otherwise leaves the file alone. */
static void write_crossover(const dr_bench_config *c, const crossover_medians *x)
{
    if (c->nT < 2 || c->cold || !strcmp(c->crossover, "none")) return;
    for (int i = 1; i < c->nT; i++)
        if (c->Ts[i] <= c->Ts[i - 1]) return;
    int from[8];
    for (int th = 0; th < c->nthreads; th++) {
        double rec[16], chk[16];
        for (int i = 0; i < c->nT; i++) {
            rec[i] = x->pairs[i][th] > 0 ? x->pairs[i][th] : x->rec[i][th];
            chk[i] = x->chk[i][th];
            if (rec[i] <= 0 || chk[i] <= 0) return;
        }
        from[th] = dr_crossover_from_medians(c->Ts, rec, chk, c->nT);
    }
    char what[160], err[256];
    snprintf(what, sizeof what, "bench deltarule, shape %s, B=%d, %d reps", c->shape.name, c->Bs[0], c->reps);
    if (dr_crossover_write(c->crossover, c->threads, from, c->nthreads, what, err, sizeof err))
        fprintf(stderr, "q35lab: %s\n", err);
    else {
        printf("\nauto: crossover written to %s:", c->crossover);
        for (int th = 0; th < c->nthreads; th++) {
            printf(" %d thread%s: ", c->threads[th], c->threads[th] > 1 ? "s" : "");
            if (from[th]) printf("chunked from T=%d;", from[th]);
            else printf("recurrent always;");
        }
        printf("\n");
    }
}

int bench_deltarule(int argc, char **argv)
{
    dr_bench_config cfg;
    if (parse_args(argc, argv, &cfg)) return 2;
    char err[512] = "";
    q35_machine_limits lim;
    const int have_limits = q35_limits_load(cfg.machine, &lim, err, sizeof err) == 0;
    if (!have_limits)
        fprintf(stderr, "bench: no machine limits (%s); run `build/q35lab calibrate` for %% of peak\n", err);
    q35_counters *ctr = NULL;
    if (strcmp(cfg.counters, "none")) {
        if (!(ctr = q35_counters_open(cfg.counters, err, sizeof err))) {
            fprintf(stderr, "q35lab: --counters: %s\n", err);
            return 2;
        }
        q35_counters_report_unavailable(ctr, stderr);
    }
    bench_report rep;
    if (bench_report_open(&rep, "deltarule", cfg.json, cfg.csv, cfg.machine)) return 2;
    const dr_bench_shape *sh = &cfg.shape;
    printf("bench deltarule: shape %s (Hk=%d Hv=%d Dk=%d Dv=%d), %s state, %d reps, ISA %s\n", sh->name, sh->Hk,
           sh->Hv, sh->Dk, sh->Dv, cfg.cold ? "cold (rotating over layers)" : "warm", cfg.reps,
           cpu_isa_name(cpu_isa()));
    int rc = 0;
    crossover_medians xo = {0};
    for (int ib = 0; ib < cfg.nB && !rc; ib++)
        for (int it = 0; it < cfg.nT && !rc; it++)
            for (int ith = 0; ith < cfg.nthreads && !rc; ith++) {
                const int B = cfg.Bs[ib], T = cfg.Ts[it], th = cfg.threads[ith];
                dr_shape s = {B, T, sh->Hk, sh->Hv, sh->Dk, sh->Dv, 1, 0};
                dr_case c;
                state_ring ring = {0};
                if (dr_case_make(&c, &s, DR_REGIME_RANDOM, 1, err, sizeof err) ||
                    ring_make(&ring, &c, cfg.cold ? sh->deltanet_layers : 1, cfg.cold)) {
                    fprintf(stderr, "q35lab: bench: %s\n", err[0] ? err : "out of memory");
                    ring_free(&ring);
                    rc = 2;
                    break;
                }
                const double flops = 6.0 * sh->Dk * sh->Dv * (double)B * T * sh->Hv;
                const double bytes = 4.0 * ((double)dr_state_elems(&c.p) * 2 + 2.0 * dr_qk_elems(&c.p) +
                                            2.0 * dr_v_elems(&c.p) + 2.0 * dr_gate_elems(&c.p));
                bench_row_begin(&rep, B, T, th);
                char labels[BENCH_MAX_IMPLS][48];
                int nl = 0;
                for (int i = 0; i < deltarule_n_entries() && !rc; i++) {
                    const deltarule_impl *im = deltarule_entry(i);
                    if (!bench_impl_selected(cfg.impl, im->name) || (im->available && !im->available())) continue;
                    const int variants = im->defaults.chunk > 0 && cfg.nchunks ? cfg.nchunks : 1;
                    for (int v = 0; v < variants && !rc && nl < BENCH_MAX_IMPLS; v++) {
                        const int chunk = variants > 1 || cfg.nchunks ? (im->defaults.chunk > 0 ? cfg.chunks[v] : 0) : 0;
                        if (chunk) snprintf(labels[nl], sizeof labels[nl], "%s@%d", im->name, chunk);
                        else snprintf(labels[nl], sizeof labels[nl], "%s", im->name);
                        double *times = calloc(cfg.reps, sizeof *times);
                        if (ctr) q35_counters_reset(ctr);
                        q35_load_mark lm;
                        q35_load_begin(&lm);
                        bench_progress("deltarule", labels[nl], B, T, th);
                        if (!times || time_impl(im, chunk, &c, &ring, cfg.reps, th, ctr, times, err, sizeof err)) {
                            fprintf(stderr, "q35lab: bench %s: %s\n", labels[nl], times ? err : "out of memory");
                            rc = 2;
                        } else {
                            bench_result r = {.impl = labels[nl], .stats = q35_stats_of(times, cfg.reps),
                                              .flops = flops, .bytes = bytes, .tokens = (double)B * T,
                                              .other_load = q35_load_end_other_fraction(&lm)};
                            if (have_limits) {
                                r.peak_gflops = q35_limit_fma_peak(&lim, th);
                                r.bw_gbs = q35_limit_mem_bw(&lim, "triad", th);
                            }
                            bench_result_add(&rep, &r, ctr, cfg.reps);
                            if (ib == 0 && !chunk) record_crossover(&xo, im->name, it, ith, r.stats.median);
                        }
                        free(times);
                        nl++;
                    }
                }
                bench_row_end(&rep);
                ring_free(&ring);
                dr_case_free(&c);
            }
    bench_report_close(&rep);
    q35_counters_close(ctr);
    if (!rc) write_crossover(&cfg, &xo);
    return rc;
}
