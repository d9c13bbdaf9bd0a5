/* q35lab bench model: the whole decoder from a checkpoint.  Per prompt length
 * and thread count, two results side by side: `prefill` (TTFT of a prompt
 * into a fresh state, tokens = prompt length) and `decode` (one greedy step
 * after it, tokens = 1), as medians with spread over the repetitions, with
 * GFLOP/s and GB/s against the calibrated limits.  Bytes are the weights a
 * step reads (q35_model_decode_bytes: every matrix once, the tied lm_head's
 * embedding table included); flops are q35_model_flops (docs/model.md §6).
 *
 * Under mpirun the model is spread over the ranks (docs/tp.md): every rank
 * runs the same steps, rank 0 reports, and each phase's note says what the
 * collectives cost rank 0 per step (time, count, bytes, from the SDE
 * counters of common/comm.c); limits are those of ranks x threads threads.
 */
#include "bench/bench_model.h"

#include "common/clock.h"
#include "common/sde_counters.h"
#include "model/forward.h"
#include "model/generate.h"
#include "harness/calibrate.h"
#include "harness/impl_select.h"
#include "bench/bench.h"

#include <omp.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void model_bench_defaults(model_bench_config *c)
{
    *c = (model_bench_config){.lens = {128, 512}, .nlens = 2, .threads = {omp_get_num_procs()}, .nthreads = 1,
                              .gen = 32, .reps = 3, .impl = "default", .machine = "results/machine.json"};
}

/* The kernel families whose time the SDE counters keep (common/sde_counters.h), in the order
 * of the per-step breakdown. */
static const struct { const char *name; q35_sde_id id; } families[] = {
    {"linear", Q35_SDE_LINEAR_NS}, {"moe", Q35_SDE_MOE_NS},     {"deltarule", Q35_SDE_DELTARULE_NS},
    {"conv", Q35_SDE_CONV_NS},     {"attention", Q35_SDE_ATTENTION_NS}};
#define N_FAMILIES ((int)(sizeof families / sizeof families[0]))
#define N_MARK (4 + N_FAMILIES)

/* What the collectives of the timed steps of one phase cost this rank, and the time its calls
 * spent in each kernel family. */
typedef struct {
    double ns, count, bytes, expert_rows, family_ns[N_FAMILIES], wall;
    int steps;
} phase_comm;

static void comm_mark(double v[N_MARK])
{
    v[0] = (double)q35_sde_value(Q35_SDE_COMM_NS);
    v[1] = (double)q35_sde_value(Q35_SDE_COLLECTIVES);
    v[2] = (double)q35_sde_value(Q35_SDE_COMM_BYTES);
    v[3] = (double)q35_sde_value(Q35_SDE_EXPERT_ROWS);
    for (int i = 0; i < N_FAMILIES; i++) v[4 + i] = (double)q35_sde_value(families[i].id);
}

static void comm_add(phase_comm *pc, const double before[N_MARK], double wall)
{
    double now[N_MARK];
    comm_mark(now);
    pc->ns += now[0] - before[0];
    pc->count += now[1] - before[1];
    pc->bytes += now[2] - before[2];
    pc->expert_rows += now[3] - before[3];
    for (int i = 0; i < N_FAMILIES; i++) pc->family_ns[i] += now[4 + i] - before[4 + i];
    pc->wall += wall;
    pc->steps++;
}

static void phase_sum(phase_comm *to, const phase_comm *pc)
{
    to->ns += pc->ns;
    to->count += pc->count;
    to->bytes += pc->bytes;
    to->expert_rows += pc->expert_rows;
    for (int i = 0; i < N_FAMILIES; i++) to->family_ns[i] += pc->family_ns[i];
    to->wall += pc->wall;
    to->steps += pc->steps;
}

/* "      decode per step (mean 18.40 ms): linear 12.31 ms (66.9%), ..., the rest 4.62 ms (25.1%)":
 * the mean time of a timed call in each kernel family, and what is left: the model code between
 * the kernels (norms, gates, copies, the greedy pick) and their forks.  Families with no time
 * are left out. */
static void print_breakdown(const char *what, const phase_comm *pc)
{
    const double steps = pc->steps ? pc->steps : 1, wall = pc->wall / steps * 1e3;
    double rest = wall;
    printf("      %s (mean %.2f ms):", what, wall);
    for (int i = 0; i < N_FAMILIES; i++) {
        const double ms = pc->family_ns[i] / steps * 1e-6;
        if (ms <= 0) continue;
        rest -= ms;
        printf(" %s %.2f ms (%.1f%%),", families[i].name, ms, wall > 0 ? 100.0 * ms / wall : 0.0);
    }
    printf(" the rest %.2f ms (%.1f%%)\n", rest, wall > 0 ? 100.0 * rest / wall : 0.0);
}

/* One figure per rank, printed by rank 0 after LABEL; with SKEW, the busiest
 * rank over the mean as well (a step lasts as long as its busiest rank). */
static int print_per_rank(const q35_comm *comm, const char *label, float mine, int skew)
{
    float *all = malloc((size_t)comm->size * sizeof *all);
    int *n = malloc((size_t)comm->size * sizeof *n);
    int rc = !all || !n ? -1 : 0;
    for (int r = 0; !rc && r < comm->size; r++) n[r] = 1;
    if (!rc) rc = q35_comm_gather(comm, &mine, n, all);
    if (!rc && comm->rank == 0) {
        double sum = 0, max = 0;
        printf("%s", label);
        for (int r = 0; r < comm->size; r++) {
            printf(" %.1f", all[r]);
            sum += all[r];
            max = all[r] > max ? all[r] : max;
        }
        if (skew) printf(" (busiest / mean %.2f)", sum > 0 ? max * comm->size / sum : 1.0);
        printf("\n");
    }
    free(all);
    free(n);
    return rc;
}

/* MoE: the token-expert pairs each rank computed per step.  Expert
 * parallelism pays routing imbalance. */
static int print_expert_rows(const q35_comm *comm, const char *what, const phase_comm *pc)
{
    char label[96];
    snprintf(label, sizeof label, "      %s: expert rows per step by rank:", what);
    return print_per_rank(comm, label, (float)(pc->expert_rows / (pc->steps ? pc->steps : 1)), 1);
}

/* "TPOT; compute 56.4 + comm 1.003 ms/step (1.7%), 10 collectives, 72.0 KiB sent": compute is the
 * median step less rank 0's mean time in the collectives (waiting for the other ranks included) */
static void comm_note(char *buf, size_t n, const char *what, const phase_comm *pc, double median_s)
{
    const double steps = pc->steps ? pc->steps : 1, ms = pc->ns / steps * 1e-6;
    snprintf(buf, n, "%s; compute %.1f + comm %.3f ms/step (%.1f%%), %.0f collectives, %.1f KiB sent", what,
             median_s * 1e3 - ms, ms, median_s > 0 ? 100.0 * ms * 1e-3 / median_s : 0.0, pc->count / steps,
             pc->bytes / steps / 1024.0);
}

/* Every rank's resident weights. */
static int print_rank_weights(const q35_comm *comm, const q35_model *m)
{
    return print_per_rank(comm, "weights held per rank (MiB):", (float)(m->weight_bytes / 1048576.0), 0);
}

/* --bw-probe: calibrate's read of 1 GiB, as `calibrate` measures the bandwidth the bound divides by */
#define BW_PROBE_BYTES ((size_t)1 << 30)

/* What the probes saw just before ([0]) and just after ([1]) one repetition's decode steps: the read
 * bandwidth (GB/s) and, with 2 threads or more, the hand-off round trip between threads 0 and 1 (ns;
 * 0 at 1 thread), which says whether the threads shared a last-level cache (docs/calibrate.md
 * "Thread hand-off": on the Zen 4 guest the bandwidth doubles when they do not). */
typedef struct {
    double bw[2], handoff[2];
    phase_comm dec; /* this repetition's decode steps alone: each placement gets its own split */
} probe_mark;

static void probe_now(q35_bw_probe *probe, probe_mark *pm, int i)
{
    pm->handoff[i] = q35_handoff_probe_run(probe->threads, Q35_HANDOFF_TRIPS);
    pm->bw[i] = q35_bw_probe_run(probe);
}

/* One prompt length at one thread count: reps x (prefill, gen - 1 decode steps).  With a probe,
 * pm[r]: what it saw around repetition r's steps. */
static int run_one(const q35_model *m, const q35_impls *im, int len, int gen, int reps, double *ttft, double *step,
                   phase_comm *pre, phase_comm *dec, q35_bw_probe *probe, probe_mark *pm, char *err, size_t errlen)
{
    q35_state s;
    if (q35_state_init(&s, &m->local, 1, len + gen, err, errlen)) return -1;
    int32_t *ids = malloc((size_t)len * sizeof *ids);
    float *lg = malloc((size_t)m->sh.vocab_n * sizeof *lg); /* this rank's vocabulary slice */
    int rc = -1;
    if (!ids || !lg) { snprintf(err, errlen, "out of memory"); goto out; }
    for (int i = 0; i < len; i++) ids[i] = (int32_t)((7919L * i + 13) % m->cfg.vocab_size);
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        q35_state_reset(&s);
        double mark[N_MARK];
        comm_mark(mark);
        double t0 = q35_now();
        if (q35_forward(m, &s, im, len, ids, NULL, lg, 0, err, errlen)) goto out;
        if (r >= 0) ttft[r] = q35_now() - t0;
        if (r >= 0) comm_add(pre, mark, ttft[r]);
        if (r >= 0 && probe) {
            pm[r].dec = (phase_comm){0};
            probe_now(probe, &pm[r], 0);
        }
        for (int g = 0; g < gen - 1; g++) {
            comm_mark(mark);
            t0 = q35_now();
            int32_t tok = q35_greedy_token(m, lg);
            if (tok < 0) { snprintf(err, errlen, "the greedy token's all-reduce failed"); goto out; }
            if (q35_forward(m, &s, im, 1, &tok, NULL, lg, 0, err, errlen)) goto out;
            if (r >= 0) step[(size_t)r * (gen - 1) + g] = q35_now() - t0;
            if (r >= 0) {
                phase_comm one = {0};
                comm_add(&one, mark, step[(size_t)r * (gen - 1) + g]);
                phase_sum(dec, &one);
                if (probe) phase_sum(&pm[r].dec, &one);
            }
        }
        if (r >= 0 && probe) probe_now(probe, &pm[r], 1);
    }
    rc = 0;
out:
    q35_state_free(&s);
    free(ids);
    free(lg);
    return rc;
}

/* --bw-probe's report: per repetition, its median step against the bound with state at the mean of
 * the two probes around its steps; then the median of those ratios.  Why: the host's bandwidth
 * drifts by 5-25% over minutes, and the bound from results/machine.json was measured earlier.
 * A repetition whose two probes differ by more than BW_PROBE_STEADY is left out of the median:
 * the bandwidth moved while its steps ran, and the mean of the probes is then a bandwidth the
 * steps may never have had (a Zen 4 guest switches between 33-36 and 55-61 GB/s on 2 threads;
 * the probe's own spread is a few percent, docs/calibrate.md "Probes").
 * The hand-off round trip says where the threads sat.  On that guest the two bandwidths are two
 * placements: threads sharing a last-level cache (hand-off 74-98 ns, 29-38 GB/s) or apart (315-349
 * ns, 42-61 GB/s), and a step pays more for every exchange between threads when they are apart.
 * The ratios of the two placements are two different figures, so when both occur each gets its own
 * median: "apart" is a hand-off above HANDOFF_APART times the run's smallest, and a repetition whose
 * two hand-offs differ by that factor (the threads moved) is left out like a MOVED one. */
#define BW_PROBE_STEADY 0.10
#define HANDOFF_APART 2.0
enum { PLACE_ONE, PLACE_NEAR, PLACE_APART, PLACE_MOVED };

static int placement(const probe_mark *m, double hmin)
{
    const double h0 = m->handoff[0], h1 = m->handoff[1];
    if (!(h0 > 0 && h1 > 0 && hmin > 0)) return PLACE_ONE;
    if (fmax(h0, h1) > HANDOFF_APART * fmin(h0, h1)) return PLACE_MOVED;
    return 0.5 * (h0 + h1) > HANDOFF_APART * hmin ? PLACE_APART : PLACE_NEAR;
}

static void print_group(const double *ratio, const double *hand, int n, int counted, int moved, const char *label,
                        const phase_comm *split)
{
    const q35_stats q = q35_stats_of(ratio, n);
    printf("        step / bound over the repetitions: median %.3fx [min %.3f, max %.3f] (%d of %d repetitions; "
           "%d MOVED", q.median, q.min, q.max, n, counted + moved, moved);
    if (label) {
        const q35_stats h = q35_stats_of(hand, n);
        printf("; threads %s: hand-off %.0f-%.0f ns", label, h.min, h.max);
    }
    printf(")\n");
    /* where these repetitions' steps went: what a placement costs shows per family */
    print_breakdown("  their decode per step", split);
}

static void print_probed(const double *step, int reps, int gen, const probe_mark *pm, double bytes, double sb,
                         int threads)
{
    printf("      decode against a read-bandwidth probe (calibrate's read of %zu MiB) just before and after each "
           "repetition's steps:\n", BW_PROBE_BYTES >> 20);
    double *ratio = malloc(sizeof *ratio * 2 * (size_t)reps), *hand = malloc(sizeof *hand * 2 * (size_t)reps);
    if (!ratio || !hand) { free(ratio); free(hand); return; }
    double hmin = 0;
    for (int r = 0; r < reps; r++)
        for (int i = 0; i < 2; i++)
            if (pm[r].handoff[i] > 0 && (hmin == 0 || pm[r].handoff[i] < hmin)) hmin = pm[r].handoff[i];
    int n[2] = {0, 0}, moved = 0; /* [0]: near or one placement, [1]: apart */
    phase_comm split[2];
    memset(split, 0, sizeof split);
    for (int r = 0; r < reps; r++) {
        const q35_stats st = q35_stats_of(step + (size_t)r * (gen - 1), gen - 1);
        const double b0 = pm[r].bw[0], b1 = pm[r].bw[1];
        if (!(b0 > 0 && b1 > 0)) {
            printf("        rep %d: the probe failed\n", r + 1);
            continue;
        }
        const double bound = (bytes + sb) / (0.5 * (b0 + b1) * 1e9);
        const double diff = fabs(b0 - b1) / fmax(b0, b1);
        const int place = placement(&pm[r], hmin);
        printf("        rep %d: step median %.2f ms; probe %.1f / %.1f GB/s", r + 1, st.median * 1e3, b0, b1);
        if (place != PLACE_ONE) printf(", hand-off %.0f / %.0f ns", pm[r].handoff[0], pm[r].handoff[1]);
        else if (threads >= 2) printf(", hand-off n/a (" Q35_HANDOFF_NA_WHY ": one CPU for both?)");
        printf("; bound (weights + state) %.2f ms; %.3fx", bound * 1e3, st.median / bound);
        if (diff > BW_PROBE_STEADY) {
            moved++;
            printf("  MOVED: the probes differ by %.0f%%, left out of the median\n", 100 * diff);
        } else if (place == PLACE_MOVED) {
            moved++;
            printf("  MOVED: the threads moved (hand-offs differ by more than %.0fx), left out of the median\n",
                   HANDOFF_APART);
        } else {
            const int g = place == PLACE_APART;
            phase_sum(&split[g], &pm[r].dec);
            ratio[g * reps + n[g]] = st.median / bound;
            hand[g * reps + n[g]++] = 0.5 * (pm[r].handoff[0] + pm[r].handoff[1]);
            printf("\n");
        }
    }
    const int counted = n[0] + n[1], labelled = hmin > 0;
    if (n[0] && n[1]) { /* two placements: two figures, never their mixture */
        print_group(ratio, hand, n[0], counted, moved, "sharing a cache", &split[0]);
        print_group(ratio + reps, hand + reps, n[1], counted, moved, "apart", &split[1]);
    } else if (counted) {
        print_group(n[0] ? ratio : ratio + reps, n[0] ? hand : hand + reps, counted, counted, moved,
                    labelled ? "in one placement" : NULL, n[0] ? &split[0] : &split[1]);
    } else if (moved) {
        printf("        step / bound over the repetitions: none: the bandwidth moved during every repetition's "
               "steps (%d MOVED); run again\n", moved);
    }
    free(ratio);
    free(hand);
}

int bench_model(const model_bench_config *config)
{
    const model_bench_config cfg = *config;
    if (!cfg.dir) { fprintf(stderr, "q35lab: bench model: --model DIR is required\n"); return 2; }
    if (cfg.gen < 2) { fprintf(stderr, "q35lab: bench model: --gen must be at least 2 (a prefill and a step)\n"); return 2; }
    char err[512] = "";
    q35_impls im = {.dr_crossover = cfg.auto_crossover};
    if (q35_impls_parse(cfg.impl, &im, err, sizeof err)) { fprintf(stderr, "q35lab: %s\n", err); return 2; }
    q35_model m;
    const q35_load_opts lo = {.mmap = cfg.mmap, .force_f32 = cfg.f32, .comm = cfg.comm, .moe_shard = cfg.moe_shard,
                              .quant = (q35_wtype)cfg.quant, .quant_families = cfg.quant_families};
    const int lrc = q35_model_load(cfg.dir, &lo, &m, err, sizeof err);
    if (lrc) {
        if (lrc == -1 || !cfg.comm || cfg.comm->rank == 0) fprintf(stderr, "q35lab: %s\n", err);
        return 2;
    }
    const q35_comm *comm = m.comm;
    q35_machine_limits lim;
    const int have_limits = q35_limits_load(cfg.machine, &lim, err, sizeof err) == 0;
    if (!have_limits) fprintf(stderr, "bench: no machine limits (%s); run `build/q35lab calibrate`\n", err);
    else if (comm->rank == 0) q35_limits_note_other_host(&lim, cfg.machine, stdout);
    bench_report rep; /* rank 0 writes the results */
    if (bench_report_open(&rep, "model", comm->rank ? NULL : cfg.json, comm->rank ? NULL : cfg.csv, cfg.machine)) {
        q35_model_free(&m);
        return 2;
    }
    rep.phases = 1;
    char spec[256];
    q35_impls_format(&im, spec, sizeof spec);
    const double bytes = (double)q35_model_decode_bytes(&m);
    char variant[24];
    snprintf(variant, sizeof variant, "%s%s%s", m.wt == WT_BF16 ? "bf16" : "f32", m.qfamilies ? "+" : "",
             m.qfamilies ? q35_wtype_name(m.qwt) : "");
    printf("bench model: %s (%s, %d layers, %s weights, %.1f MiB read per decode step), %s, %d reps, %d tokens "
           "generated\n", cfg.dir, m.cfg.model_type, m.cfg.num_hidden_layers, variant, bytes / 1048576.0, spec,
           cfg.reps, cfg.gen);
    if (comm->size > 1) {
        printf("tensor-parallel over %d ranks (moe %s); threads below are per rank; ", comm->size,
               q35_moe_shard_name(m.sh.moe));
        if (print_rank_weights(comm, &m)) q35_comm_abort(comm, 2);
    }
    int rc = 0;
    q35_bw_probe probe = {0};
    probe_mark *pm = NULL;
    if (cfg.bw_probe && comm->size > 1) {
        fprintf(stderr, "q35lab: bench model: --bw-probe is for one process (the ranks would probe at once)\n");
        rc = 2;
    }
    double *ttft = calloc((size_t)cfg.reps, sizeof *ttft);
    double *step = calloc((size_t)cfg.reps * (cfg.gen - 1), sizeof *step);
    for (int il = 0; il < cfg.nlens && !rc && ttft && step; il++)
        for (int it = 0; it < cfg.nthreads && !rc; it++) {
            const int len = cfg.lens[il], th = cfg.threads[it];
            im.threads = th;
            if (cfg.bw_probe && probe.threads != th) { /* the probe's array, touched by this row's threads */
                q35_bw_probe_free(&probe);
                if (!pm) pm = calloc((size_t)cfg.reps, sizeof *pm);
                if (!pm || q35_bw_probe_init(&probe, th, BW_PROBE_BYTES)) {
                    fprintf(stderr, "q35lab: bench model: no memory for the bandwidth probe (%zu MiB)\n",
                            BW_PROBE_BYTES >> 20);
                    rc = 2;
                    break;
                }
            }
            bench_row_begin(&rep, 1, len, th);
            snprintf(rep.variant, sizeof rep.variant, "%s", variant);
            bench_progress("model", "prefill+decode", 1, len, th);
            q35_load_mark lm;
            q35_load_begin(&lm);
            phase_comm pc_pre = {0}, pc_dec = {0};
            if (run_one(&m, &im, len, cfg.gen, cfg.reps, ttft, step, &pc_pre, &pc_dec, cfg.bw_probe ? &probe : NULL, pm,
                        err, sizeof err)) {
                fprintf(stderr, "q35lab: bench model: %s\n", err);
                if (comm->size > 1) q35_comm_abort(comm, 2); /* the other ranks wait in a collective */
                rc = 2;
                break;
            }
            /* the other ranks are part of the run, not other load */
            float ticks = (float)q35_load_self_ticks(&lm);
            if (q35_comm_sum(comm, &ticks, 1)) q35_comm_abort(comm, 2);
            const double other = q35_load_end_other_fraction_of_run(&lm, ticks);
            bench_result pre = {.impl = "prefill", .stats = q35_stats_of(ttft, cfg.reps),
                                .flops = q35_model_flops(&m, 0, len), .bytes = bytes, .tokens = len,
                                .other_load = other};
            bench_result dec = {.impl = "decode", .stats = q35_stats_of(step, cfg.reps * (cfg.gen - 1)),
                                .flops = q35_model_flops(&m, len + cfg.gen / 2, 1), .bytes = bytes, .tokens = 1,
                                .other_load = other};
            if (have_limits) { /* the machine's limits at every thread of every rank */
                pre.peak_gflops = dec.peak_gflops = q35_limit_fma_peak(&lim, th * comm->size);
                pre.bw_gbs = dec.bw_gbs = q35_limit_mem_bw(&lim, "read", th * comm->size);
            }
            if (comm->size == 1) {
                snprintf(pre.note, sizeof pre.note, "TTFT; %.88s", spec);
                /* two bounds: the weights alone, and with the state and cache the step reads too */
                const double sb = q35_config_decode_state_bytes(&m.cfg, len + cfg.gen / 2), bw = dec.bw_gbs * 1e9;
                snprintf(dec.note, sizeof dec.note, "TPOT; bound %.1f ms (weights), %.1f ms (+%.1f MiB state, cache) at %.1f GB/s",
                         have_limits && bw > 0 ? 1e3 * bytes / bw : 0.0, have_limits && bw > 0 ? 1e3 * (bytes + sb) / bw : 0.0,
                         sb / 1048576.0, dec.bw_gbs);
            } else {
                comm_note(pre.note, sizeof pre.note, "TTFT", &pc_pre, pre.stats.median);
                comm_note(dec.note, sizeof dec.note, "TPOT", &pc_dec, dec.stats.median);
            }
            bench_result_add(&rep, &pre, NULL, cfg.reps);
            bench_result_add(&rep, &dec, NULL, cfg.reps * (cfg.gen - 1));
            bench_row_end(&rep);
            if (comm->rank == 0) { /* this rank's own split (under mpirun the others' are alike) */
                print_breakdown("prefill per call", &pc_pre);
                print_breakdown("decode per step", &pc_dec);
                if (cfg.bw_probe)
                    print_probed(step, cfg.reps, cfg.gen, pm, bytes, q35_config_decode_state_bytes(&m.cfg, len + cfg.gen / 2),
                                 th);
            }
            if (comm->size > 1 && m.cfg.is_moe &&
                (print_expert_rows(comm, "prefill", &pc_pre) || print_expert_rows(comm, "decode", &pc_dec)))
                q35_comm_abort(comm, 2);
        }
    if (!ttft || !step) { fprintf(stderr, "q35lab: bench model: out of memory\n"); rc = 2; }
    free(ttft);
    free(step);
    free(pm);
    q35_bw_probe_free(&probe);
    if (bench_report_close(&rep, rc == 0) && !rc) rc = 2;
    q35_model_free(&m);
    return rc;
}
