/* calibrate: this machine's own limits, measured, and the machine.json that records them.
 *
 * Four figures, each per thread count (docs/calibrate.md):
 *   fp32 FMA peak          GFLOP/s of an independent-accumulator FMA loop, AVX2 and AVX-512;
 *   memory bandwidth       STREAM-like read / copy / triad over huge-page arrays, GB/s;
 *   cache bandwidth        read / triad on per-thread working sets of 32 KiB, 512 KiB, 4 MiB;
 *   OpenBLAS sgemm         GFLOP/s at the shapes the kernels use.
 * Every figure is a q35_stats over repetitions (median, min, max, ...).  Benches read the
 * medians back with q35_limits_load() and report their speed as a fraction of them.
 */
#ifndef Q35_CALIBRATE_H
#define Q35_CALIBRATE_H

#include "harness/timing.h"

#include <stddef.h>
#include <stdio.h>

#define Q35_MACHINE_SCHEMA "q35lab-machine/1"
#define Q35_MACHINE_JSON "results/machine.json"

#define Q35_MAX_THREADS 64  /* largest thread count calibrate measures or limits hold */
#define Q35_CAL_MAX_TLIST 8 /* thread counts per run */

enum { Q35_FMA_AVX2, Q35_FMA_AVX512, Q35_FMA_NISA };
enum { Q35_BW_READ, Q35_BW_COPY, Q35_BW_TRIAD, Q35_BW_NKIND };
enum { Q35_CACHE_READ, Q35_CACHE_TRIAD, Q35_CACHE_NKIND };
#define Q35_CACHE_NSIZES 3  /* 32 KiB, 512 KiB, 4 MiB per thread */
/* 64x128x128, 128x128x64 (delta-rule chunks), 2048x1024x6144 (a dense layer; reduced by
 * --quick), and one MoE expert's gate/up and down GEMMs at 16 and 64 rows (35B-A3B at
 * T = 512 and 2048: T*8/256 rows per expert). */
#define Q35_SGEMM_NSHAPES 7

const char *q35_fma_isa_name(int isa);        /* "avx2", "avx512" */
const char *q35_bw_kind_name(int kind);       /* "read", "copy", "triad" */
const char *q35_cache_kind_name(int kind);    /* "read", "triad" */
const char *q35_cache_size_name(int i);       /* "32KiB", "512KiB", "4MiB" */
size_t q35_cache_size_bytes(int i);

/* What to measure and for how long.  Times are per repetition; each figure is measured
 * reps times after one untimed warm-up repetition. */
typedef struct {
    int threads[Q35_CAL_MAX_TLIST];
    int nthreads;
    size_t mem_bytes;       /* per STREAM array (three arrays) */
    int mem_reps;
    int fma_reps;
    double fma_seconds;
    int cache_reps;
    double cache_seconds;
    int sgemm_reps;
    double sgemm_seconds;   /* small shapes are batched up to this; a large call may exceed it */
    int sgemm_shapes[Q35_SGEMM_NSHAPES][3]; /* M, N, K */
    int quick;              /* recorded in the JSON */
    int progress;           /* progress line on stderr */
} q35_calib_config;

/* Full run (~20-30 s on a 2-core VM): threads {1, all cores}, 1 GiB arrays. */
void q35_calib_config_default(q35_calib_config *c);
/* --quick (a few seconds): 256 MiB arrays, fewer and shorter repetitions, sgemm 1024x512x3072. */
void q35_calib_config_quick(q35_calib_config *c);
/* For tests: threads {1}, 8 MiB arrays (cache-resident: not a DRAM figure), tiny timings. */
void q35_calib_config_tiny(q35_calib_config *c);

#define Q35_NCPU_FLAGS 15
extern const char *const q35_cpu_flag_names[Q35_NCPU_FLAGS];

/* Where the numbers were taken: everything machine.json says besides the measurements. */
typedef struct {
    char date[32];          /* ISO 8601 UTC */
    char git_commit[64];    /* "unknown" outside a git checkout */
    int git_dirty;          /* 1 / 0, -1 unknown */
    char hostname[256];
    char cpu_model[256];
    int cpu_flags[Q35_NCPU_FLAGS]; /* 1 if /proc/cpuinfo lists q35_cpu_flag_names[i] */
    int cores;              /* sysconf(_SC_NPROCESSORS_ONLN) */
    char kernel[512];       /* uname */
    char compiler[128];
    int omp_max_threads;
    char openblas_version[64], openblas_corename[64], openblas_config[256];
    int openblas_parallel;  /* openblas_get_parallel(): 0 sequential, 1 pthreads, 2 OpenMP */
    int openblas_threads;   /* openblas_get_num_threads() at start */
    char openblas_coretype[64]; /* OPENBLAS_CORETYPE, "" if unset */
    int openblas_coretype_set;
    char thp_enabled[32];   /* bracketed mode of /sys/kernel/mm/transparent_hugepage/enabled */
    int papi_ok;
    char papi_error[160];
    char papi_version[32];
    int papi_components, papi_hw_counters; /* PAPI_num_components, PAPI_num_cmp_hwctrs(0) */
    int cpu_pmu;            /* the kernel exposes a CPU PMU (/sys/bus/event_source/devices/cpu*):
                             * without one (many VMs) PAPI still reports the model's counter
                             * count, but no hardware event can be read */
    char papi_component0[64];
    int papi_component0_disabled;
    char papi_component0_reason[256];
    char papi_cpu_model[128];
    int papi_virtualized;
} q35_machine_info;

void q35_machine_info_collect(q35_machine_info *mi);

/* A finished run.  Figures are indexed like cfg.threads; fma_ran[isa] = 0 means that ISA
 * was skipped and fma_na[isa] says why ("n/a: CPU has no AVX-512F"). */
typedef struct {
    q35_calib_config cfg;
    q35_machine_info info;
    int fma_ran[Q35_FMA_NISA];
    char fma_na[Q35_FMA_NISA][64];
    int fma_accumulators[Q35_FMA_NISA];
    q35_stats fma[Q35_FMA_NISA][Q35_CAL_MAX_TLIST];                      /* GFLOP/s */
    int bf16dot_ran;                       /* vdpbf16ps peak measured (AVX512_BF16) */
    char bf16dot_na[64];                   /* why not */
    q35_stats bf16dot[Q35_CAL_MAX_TLIST];  /* GFLOP/s, 64 flops per vdpbf16ps zmm */
    q35_stats mem[Q35_BW_NKIND][Q35_CAL_MAX_TLIST];                      /* GB/s */
    q35_stats cache[Q35_CACHE_NSIZES][Q35_CACHE_NKIND][Q35_CAL_MAX_TLIST]; /* GB/s, all threads */
    q35_stats sgemm[Q35_SGEMM_NSHAPES][Q35_CAL_MAX_TLIST];               /* GFLOP/s */
    q35_stats handoff[Q35_CAL_MAX_TLIST];  /* ns per round trip, threads 0 and 1; n = 0 at 1 thread */
    int handoff_given_up[Q35_CAL_MAX_TLIST]; /* 1: the threads did not run at once (one CPU for both) */
    const char *bw_isa;            /* vector ISA of the bandwidth kernels */
    int huge_pages_used;           /* STREAM arrays got transparent huge pages */
    double huge_page_fraction;     /* AnonHugePages / size of the array mapping */
    double phase_load[4];          /* other-process load during fma, mem, cache, sgemm */
    double load_other_fraction;    /* over the whole run */
    int busy;                      /* load_other_fraction > Q35_BUSY_THRESHOLD */
    double seconds;                /* wall time of the run */
} q35_calib_result;

/* A figure is "noisy" when its repetitions spread (max - min) by more than this fraction of the
 * median: on a VM that is usually the host taking a vCPU or sharing its core, which the guest's
 * own load figures cannot see.  machine.json lists the noisy figures; the table marks them. */
#define Q35_NOISY_SPREAD 0.25
int q35_stats_noisy(const q35_stats *s);

/* Runs the measurements.  0 on success; -1 with err filled (allocation failure, OpenMP
 * giving fewer threads than asked, ...). */
int q35_calibrate(const q35_calib_config *cfg, q35_calib_result *r, char *err, size_t errlen);

struct cJSON;
struct cJSON *q35_calib_to_json(const q35_calib_result *r);
/* Writes machine.json atomically (PATH.<pid>.tmp, then rename); 0 or -1 with err. */
int q35_calib_write_json(const q35_calib_result *r, const char *path, char *err, size_t errlen);
/* The readable table: figure, threads, median, min-max. */
void q35_calib_print_table(FILE *f, const q35_calib_result *r);

/* ---- Reading the limits back (for the benches) ---------------------------------------- */

#define Q35_LIMITS_MAX_SHAPES 8
enum { Q35_HAVE_FMA = 1, Q35_HAVE_MEM = 2, Q35_HAVE_CACHE = 4, Q35_HAVE_SGEMM = 8 };

/* Medians from machine.json; a figure not measured is 0.  Arrays are indexed by thread
 * count (index 0 unused). */
typedef struct {
    double fma_peak[Q35_FMA_NISA][Q35_MAX_THREADS + 1];     /* GFLOP/s */
    double bf16dot_peak[Q35_MAX_THREADS + 1];               /* GFLOP/s; 0: not in the file */
    double mem_bw[Q35_BW_NKIND][Q35_MAX_THREADS + 1];       /* GB/s */
    double cache_bw[Q35_CACHE_NSIZES][Q35_CACHE_NKIND][Q35_MAX_THREADS + 1]; /* GB/s */
    int nshapes;
    int sgemm_shape[Q35_LIMITS_MAX_SHAPES][3];
    double sgemm[Q35_LIMITS_MAX_SHAPES][Q35_MAX_THREADS + 1]; /* GFLOP/s */
    int have;                      /* Q35_HAVE_* of the sections that held a figure */
    int busy, huge_pages_used;
    int noisy_figures;             /* length of machine.json's noisy_figures */
    double load_other_fraction;
    char date[32], cpu_model[128];
} q35_machine_limits;

/* Parses machine.json.  0 on success; -1 with err if the file is unreadable, not JSON or of
 * another schema.  Missing or malformed figures are left 0. */
int q35_limits_load(const char *path, q35_machine_limits *lim, char *err, size_t errlen);
/* 1 (after a note on out) when lim was measured on another CPU model than
 * this host's: a benchmark's % of peak would then be against that
 * machine's limits (an AVX2 host's FMA peak read on an AVX-512 one gives
 * more than 100%). */
int q35_limits_note_other_host(const q35_machine_limits *lim, const char *path, FILE *out);

/* The fp32 FMA peak now: calibrate's FMA loop (the widest of AVX-512 and AVX2 the CPU has) on
 * `threads` threads, one timed run of about `seconds` per q35_fma_probe_run, in GFLOP/s.  For a
 * benchmark that interleaves it with the calls it measures, so that a percentage of peak is taken
 * at the same moments rather than minutes apart (the host's speed drifts).  init sizes the loop
 * (a few short runs) and returns -1 if the CPU has neither ISA or the arguments are out of range;
 * run returns 0 if OpenMP gave another thread count. */
typedef struct {
    int isa, threads;
    long inner; /* loop iterations per thread and run */
} q35_fma_probe;
int q35_fma_probe_init(q35_fma_probe *p, int threads, double seconds);
double q35_fma_probe_run(const q35_fma_probe *p);
/* The read bandwidth now: calibrate's "read" (passes over an array of `bytes`, split over
 * `threads`, the widest vector loads the CPU has) per q35_bw_probe_run, in GB/s, for a benchmark
 * that interleaves it with what it measures; measured as calibrate does, an untimed pass and then
 * the median of 3 timed ones (4 passes: ~0.15 s for 1 GiB at 30 GB/s).  init allocates the array (2 MiB pages) and touches
 * it on the threads; -1 if out of memory or the arguments are out of range.  run returns 0 if
 * OpenMP gave another thread count. */
typedef struct {
    void *ctx; /* the array and the kernel */
    int threads;
    size_t bytes;
} q35_bw_probe;
int q35_bw_probe_init(q35_bw_probe *p, int threads, size_t bytes);
double q35_bw_probe_run(q35_bw_probe *p);
void q35_bw_probe_free(q35_bw_probe *p);
/* How far apart threads 0 and 1 of a `threads` region sit: one cache line passed between them
 * `trips` times each way, ns per round trip, the median of 3 runs (20000 trips: 1-8 ms).  About
 * 50-80 ns when they share a last-level cache, several times that when they do not (on the Zen 4
 * guest, 320-380 ns, and then its 2-thread read bandwidth is about twice as high: docs/calibrate.md
 * "Thread hand-off").  0 with fewer than 2 threads, if OpenMP gave fewer, or if the threads did not
 * run at once (sharing one CPU, a run is given up after 0.5 s instead of taking minutes). */
#define Q35_HANDOFF_TRIPS 20000 /* calibrate's figure and bench model's probes */
/* Why there is no hand-off figure when the run was given up: calibrate's table and JSON and
 * bench model's probe lines say it in these words. */
#define Q35_HANDOFF_NA_WHY "threads 0 and 1 did not run at once"
double q35_handoff_probe_run(int threads, int trips);

/* The best measured ISA's FMA peak at this thread count, GFLOP/s (0 if none). */
double q35_limit_fma_peak(const q35_machine_limits *lim, int threads);
/* The BF16 dot (vdpbf16ps) peak, GFLOP/s (0 if not measured: older file or no AVX512_BF16). */
double q35_limit_bf16dot_peak(const q35_machine_limits *lim, int threads);
/* kind "read", "copy" or "triad", GB/s (0 if not measured or unknown kind). */
double q35_limit_mem_bw(const q35_machine_limits *lim, const char *kind, int threads);
/* size "32KiB" / "512KiB" / "4MiB", kind "read" / "triad", GB/s over all threads. */
double q35_limit_cache_bw(const q35_machine_limits *lim, const char *size, const char *kind, int threads);
/* sgemm GFLOP/s at exactly M x N x K (0 if that shape was not measured). */
double q35_limit_sgemm(const q35_machine_limits *lim, int M, int N, int K, int threads);

#endif
