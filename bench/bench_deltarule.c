/* q35lab bench deltarule: every implementation side by side, per (T, B,
 * threads), as medians with spread and as fractions of the limits
 * `q35lab calibrate` measured on this machine (results/machine.json).
 *
 * Flops are counted in the recurrent form, 6*Dk*Dv per valid token and value
 * head (docs/deltarule.md §5), whatever the implementation does, so GFLOP/s
 * compare implementations on the same useful work.  Bytes are the state read
 * and written plus the inputs and outputs touched once.
 */
#include "bench/bench_deltarule.h"

#include "common/clock.h"
#include "common/huge_pages.h"
#include "common/sde_counters.h"
#include "kernels/cpu_features.h"
#include "kernels/deltarule/deltarule.h"
#include "harness/calibrate.h"
#include "harness/counters.h"
#include "harness/deltarule_crossover.h"
#include "harness/deltarule_inputs.h"
#include "harness/impl_select.h"
#include "harness/timing.h"
#include "bench/bench.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* From the released configs: linear_num_key_heads, linear_num_value_heads,
 * linear_key_head_dim, linear_value_head_dim; 3 of 4 layers are DeltaNet. */
static const dr_bench_shape shapes[] = {
    {"qwen3.5-0.8b", 16, 16, 128, 128, 18},
    {"qwen3.5-35b-a3b", 16, 32, 128, 128, 30},
};

const dr_bench_shape *dr_bench_shape_named(const char *name)
{
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        if (!strcmp(name, shapes[i].name)) return &shapes[i];
    return NULL;
}

void dr_bench_defaults(dr_bench_config *c)
{
    *c = (dr_bench_config){.shape = shapes[0], .Ts = {1, 64, 512, 2048}, .nT = 4, .Bs = {1}, .nB = 1,
                           .threads = {omp_get_num_procs()}, .nthreads = 1, .reps = 10, .impl = "all",
                           .counters = "default", .machine = "results/machine.json"};
}


static int dr_named(const char *name) { return deltarule_named(name) != NULL; }

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
/* Checkpoints a timed call asks for (none: n = 0), and the chunked forms' mode. */
typedef struct {
    int n, mode;
    const int32_t *at;
    float *states;
} bench_ckpt;

static int time_impl(const deltarule_impl *im, int chunk, const deltarule_crossover *xo, dr_case *c,
                     state_ring *ring, int reps, int threads, q35_counters *ctr, double *times,
                     const bench_ckpt *ck, long long *state_bytes_written, char *err, size_t errlen)
{
    deltarule_opts o = {.threads = threads, .chunk = chunk, .crossover = xo, .checkpoint_mode = ck->mode};
    deltarule_problem p = c->p;
    p.n_checkpoints = ck->n;
    p.checkpoint_t = ck->at;
    p.checkpoint_states = ck->states;
    long long written = 0;
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
        const long long w0 = q35_sde_value(Q35_SDE_STATE_BYTES_WRITTEN);
        const double t0 = q35_now();
        const int rc = deltarule_run(im, &p, &o, err, errlen);
        const double t1 = q35_now();
        written = q35_sde_value(Q35_SDE_STATE_BYTES_WRITTEN) - w0;
        if (r >= 0 && ctr) q35_counters_stop(ctr);
        if (rc) return -1;
        if (r >= 0) times[r] = t1 - t0;
        else if (t1 < warm_until) r--; /* warm up again */
    }
    *state_bytes_written = written; /* of one call (the counter is the library's, docs/counters.md) */
    return 0;
}

/* Checkpoint positions for --checkpoints (bench_deltarule.h); returns how many. */
static int ckpt_positions(int setting, int T, int32_t *at)
{
    if (setting == DR_BENCH_CKPT_EVERY) {
        for (int t = 0; t + 1 < T; t++) at[t] = t;
        return T - 1;
    }
    int n = 0;
    for (int i = 0; i < setting && i < T; i++) { /* evenly spread: after token (i+1) T / (N+1) - 1 */
        const int t = (int)((long)(i + 1) * T / (setting + 1)) - 1;
        if (t >= 0 && (n == 0 || t > at[n - 1])) at[n++] = t;
    }
    return n;
}

/* One line of the checkpoint summary: time per token with and without, and
 * the state bytes a call writes. */
typedef struct {
    char label[48];
    q35_stats without, with;
    long long bytes_without, bytes_with;
} ckpt_line;

static void print_ckpt_summary(const ckpt_line *l, int n, int T, int B, int th, int nck)
{
    printf("\ncheckpoints: T=%d B=%d threads=%d, %d checkpoint%s; per token: median [min, max] in us, "
           "without and with checkpoints, timed side by side\n", T, B, th, nck, nck == 1 ? "" : "s");
    printf("%-34s %28s %28s %8s %14s %14s\n", "impl", "without", "with", "with/w/o", "state B w/o", "state B with");
    const double tok = (double)T * B;
    for (int i = 0; i < n; i++) {
        char a[64], b[64];
        snprintf(a, sizeof a, "%.3f [%.3f, %.3f]", l[i].without.median / tok * 1e6, l[i].without.min / tok * 1e6,
                 l[i].without.max / tok * 1e6);
        snprintf(b, sizeof b, "%.3f [%.3f, %.3f]", l[i].with.median / tok * 1e6, l[i].with.min / tok * 1e6,
                 l[i].with.max / tok * 1e6);
        printf("%-34s %28s %28s %8.3f %14lld %14lld\n", l[i].label, a, b, l[i].with.median / l[i].without.median,
               l[i].bytes_without, l[i].bytes_with);
    }
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

/* With --crossover FILE: auto's crossover points for this shape, one per
 * thread count, from both forms measured at two or more T (ascending).
 * Nothing is written otherwise: a benchmark never changes what the program
 * does next unless asked to. */
static int write_crossover(const dr_bench_config *c, const crossover_medians *x)
{
    if (!c->crossover) return 0;
    const char *why = c->nT < 2 ? "it needs at least two --T" : c->cold ? "--cold measures another regime" : NULL;
    for (int i = 1; i < c->nT && !why; i++)
        if (c->Ts[i] <= c->Ts[i - 1]) why = "--T must be ascending";
    if (c->nB != 1 || c->Bs[0] != 1) why = why ? why : "it is measured at B = 1";
    deltarule_crossover_point pts[8];
    for (int th = 0; th < c->nthreads && !why; th++) {
        double rec[16], chk[16];
        for (int i = 0; i < c->nT; i++) {
            rec[i] = x->pairs[i][th] > 0 ? x->pairs[i][th] : x->rec[i][th];
            chk[i] = x->chk[i][th];
            if (rec[i] <= 0 || chk[i] <= 0) why = "it needs recurrent(-pairs) and chunked in --impl";
        }
        pts[th] = (deltarule_crossover_point){c->shape.Hk, c->shape.Hv, c->shape.Dk, c->shape.Dv, c->threads[th],
                                              dr_crossover_from_medians(c->Ts, rec, chk, c->nT)};
    }
    if (why) {
        fprintf(stderr, "q35lab: bench deltarule: no crossover written to %s: %s\n", c->crossover, why);
        return -1;
    }
    char what[160], err[512];
    snprintf(what, sizeof what, "bench deltarule, shape %s, B=1, %d reps, ISA %s", c->shape.name, c->reps,
             cpu_isa_name(cpu_isa()));
    if (dr_crossover_merge_write(c->crossover, pts, c->nthreads, what, err, sizeof err)) {
        fprintf(stderr, "q35lab: %s\n", err);
        return -1;
    }
    printf("\nauto: crossover for Hk=%d Hv=%d Dk=%d Dv=%d written to %s:", c->shape.Hk, c->shape.Hv, c->shape.Dk,
           c->shape.Dv, c->crossover);
    for (int th = 0; th < c->nthreads; th++) {
        printf(" %d thread%s: ", pts[th].threads, pts[th].threads > 1 ? "s" : "");
        if (pts[th].chunked_from_T) printf("chunked from T=%d;", pts[th].chunked_from_T);
        else printf("recurrent always;");
    }
    printf("\n");
    return 0;
}

int bench_deltarule(const dr_bench_config *config)
{
    const dr_bench_config cfg = *config;
    if (bench_check_impl_list("deltarule", cfg.impl, dr_named)) return 2;
    if (cfg.shape.Hk < 1 || cfg.shape.Hv % cfg.shape.Hk) {
        fprintf(stderr, "q35lab: bench deltarule: Hv=%d is not a multiple of Hk=%d\n", cfg.shape.Hv, cfg.shape.Hk);
        return 2;
    }
    char err[512] = "";
    q35_machine_limits lim;
    int have_limits;
    q35_counters *ctr;
    bench_report rep;
    if (bench_open(&rep, "deltarule", cfg.json, cfg.csv, cfg.machine, cfg.counters, &lim, &have_limits, &ctr)) return 2;
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
                /* checkpoints: each implementation (mode) timed without them, then with them */
                int32_t *ck_at = cfg.checkpoints ? malloc(sizeof(int32_t) * T) : NULL;
                const int nck = ck_at ? ckpt_positions(cfg.checkpoints, T, ck_at) : 0;
                float *ck_states = nck ? malloc(sizeof(float) * dr_state_elems(&c.p) * nck) : NULL;
                if (cfg.checkpoints && (!ck_at || (nck && !ck_states))) {
                    fprintf(stderr, "q35lab: bench: out of memory\n");
                    rc = 2;
                }
                ckpt_line lines[BENCH_MAX_IMPLS];
                int nlines = 0;
                for (int i = 0; i < deltarule_n_entries() && !rc; i++) {
                    const deltarule_impl *im = deltarule_entry(i);
                    if (!bench_impl_selected(cfg.impl, im->name) || (im->available && !im->available())) continue;
                    const int chunked = im->defaults.chunk > 0;
                    const int variants = chunked && cfg.nchunks ? cfg.nchunks : 1;
                    /* with checkpoints: 0 without, then with (chunked forms: split, from-delta) */
                    const int cvars = !nck ? 1 : chunked ? 3 : 2;
                    for (int vv = 0; vv < variants * cvars && !rc && nl < BENCH_MAX_IMPLS; vv++) {
                        const int v = vv / cvars, cv = vv % cvars;
                        const int chunk = variants > 1 || cfg.nchunks ? (chunked ? cfg.chunks[v] : 0) : 0;
                        const bench_ckpt ck = {cv ? nck : 0, !cv || !chunked ? 0 : cv == 1 ? DR_CKPT_SPLIT : DR_CKPT_FROM_DELTA,
                                               ck_at, ck_states};
                        static const char *const suffix[] = {"", "+ckpt", "+ckpt-split", "+ckpt-from-delta"};
                        const char *suf = suffix[!cv ? 0 : !chunked ? 1 : cv + 1];
                        if (chunk) snprintf(labels[nl], sizeof labels[nl], "%s@%d%s", im->name, chunk, suf);
                        else snprintf(labels[nl], sizeof labels[nl], "%s%s", im->name, suf);
                        long long written = 0;
                        double *times = calloc(cfg.reps, sizeof *times);
                        if (ctr) q35_counters_reset(ctr);
                        q35_load_mark lm;
                        q35_load_begin(&lm);
                        bench_progress("deltarule", labels[nl], B, T, th);
                        if (!times || time_impl(im, chunk, cfg.auto_crossover, &c, &ring, cfg.reps, th, ctr, times, &ck,
                                                &written, err, sizeof err)) {
                            fprintf(stderr, "q35lab: bench %s: %s\n", labels[nl], times ? err : "out of memory");
                            rc = 2;
                        } else {
                            bench_result r = {.impl = labels[nl], .stats = q35_stats_of(times, cfg.reps),
                                              .flops = flops, .bytes = bytes + 4.0 * dr_state_elems(&c.p) * ck.n,
                                              .tokens = (double)B * T,
                                              .other_load = q35_load_end_other_fraction(&lm)};
                            if (have_limits) {
                                r.peak_gflops = q35_limit_fma_peak(&lim, th);
                                r.bw_gbs = q35_limit_mem_bw(&lim, "triad", th);
                            }
                            bench_result_add(&rep, &r, ctr, cfg.reps);
                            if (ib == 0 && !chunk && !cv) record_crossover(&xo, im->name, it, ith, r.stats.median);
                            if (nck && !cv) { /* the line's "without"; each "with" below copies it */
                                snprintf(lines[nlines].label, sizeof lines[nlines].label, "%s", labels[nl]);
                                lines[nlines].without = r.stats;
                                lines[nlines].bytes_without = written;
                            } else if (nck && nlines < BENCH_MAX_IMPLS) {
                                ckpt_line *l = &lines[nlines];
                                if (cv > 1) { /* a second mode: a line of its own with the same "without" */
                                    *l = lines[nlines - 1];
                                }
                                snprintf(l->label, sizeof l->label, "%s", labels[nl]);
                                l->with = r.stats;
                                l->bytes_with = written;
                                nlines++;
                            }
                        }
                        free(times);
                        nl++;
                    }
                }
                bench_row_end(&rep);
                if (nlines) print_ckpt_summary(lines, nlines, T, B, th, nck);
                free(ck_at);
                free(ck_states);
                ring_free(&ring);
                dr_case_free(&c);
            }
    if (bench_report_close(&rep, rc == 0) && !rc) rc = 2;
    q35_counters_close(ctr);
    if (!rc && write_crossover(&cfg, &xo)) rc = 2;
    return rc;
}
