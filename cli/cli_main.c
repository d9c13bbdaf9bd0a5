/* q35lab: list, check and golden for the kernel families. */
#include "cli/cli.h"
#include "harness/deltarule_crossover.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: q35lab <command> [options]\n"
            "  list                                  families and implementations\n"
            "  check deltarule|moe|all [--impl NAME|all] [--seeds N] [--quick] [--chunks 16,32,64] [--markdown] [--json FILE]\n"
            "  check deltarule --golden FILE [--impl NAME|all]\n"
            "  check moe [--impl NAME|all] [--quick] [--seeds N] [--json FILE] | --golden FILE [--bf16] [--fused]\n"
            "  golden moe --out FILE [--T n --hidden n --E n --k n --I n --Is n --seed n --skew x --no-norm]\n"
            "  golden deltarule --out FILE [--B n --T n --Hk n --Hv n --Dk n --Dv n]\n"
            "                   [--regime NAME] [--seed n] [--initial-state] [--seq-len] [--no-l2norm]\n"
            "  calibrate [--threads 1,2] [--quick] [--out FILE]   measure this machine's limits\n"
            "  bench deltarule [--impl all] [--shape NAME] [--T 1,64,512,2048] [--B 1] [--threads 1,2]\n"
            "                  [--reps N] [--cold] [--counters default|cache|flops|none|EVENTS] [--json F] [--csv F]\n"
            "  model init --preset NAME --out DIR [--seed S] [--dtype bf16|f32] [--layers N] [--experts fused|per-expert]\n"
            "  generate --model DIR --prompt-ids 1,2,3[;4,5] [--max-new N] [--impl SPEC] [--threads N]\n"
            "  validate --model DIR [--prompt-ids IDS] [--steps N] [--impl all|SPEC[;SPEC]] [--golden FILE]\n"
            "  bench model --model DIR [--prompt-len 128,512] [--gen 32] [--impl SPEC] [--threads 1,2] [--reps N]\n"
            "See README.md for every option.\n");
}

const char *cli_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "q35lab: option %s needs a value\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int cli_int(const char *opt, const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "q35lab: %s expects an integer in [%d, %d], got '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int cli_int_list(const char *s, int *out, int max, int lo, int hi)
{
    int n = 0;
    while (*s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < lo || v > hi || n == max || (*end && *end != ',')) return -1;
        out[n++] = (int)v;
        s = *end ? end + 1 : end;
    }
    return n ? n : -1;
}

/* Thread pools, set before the libraries read them (at load, before main):
 * when the user has not chosen, q35lab sets them and re-executes once.
 * - OpenMP threads that spin while waiting steal the core of any other
 *   process on a shared machine (llama.cpp's 2-thread figures collapsed
 *   10-20x that way here): a short spin limit (~10k spins, a few
 *   microseconds: decode steps are ~50 us apart).
 * - OpenBLAS (pthreads build) starts a worker per core at load, and those
 *   workers competed with q35lab's OpenMP team for the cores: a 2-thread
 *   decode step measured 555-575 us instead of 18 us in 3 of 6 runs, and
 *   18 us in 6 of 6 with OPENBLAS_NUM_THREADS=1.  All of q35lab's
 *   parallelism is its own OpenMP (BLAS calls run inside its tasks on one
 *   thread), so OpenBLAS starts single-threaded; `calibrate` still raises
 *   it with openblas_set_num_threads() for its multi-thread sgemm figures. */
static void set_thread_pools(char **argv)
{
    int changed = 0;
    if (!getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT")) {
        setenv("GOMP_SPINCOUNT", "10000", 1);
        changed = 1;
    }
    if (!getenv("OPENBLAS_NUM_THREADS")) {
        setenv("OPENBLAS_NUM_THREADS", "1", 1);
        changed = 1;
    }
    if (changed) execv("/proc/self/exe", argv);
    /* exec failed (no /proc): carry on with the libraries' defaults */
}

int main(int argc, char **argv)
{
    set_thread_pools(argv);
    char err[256];
    if (!access(DR_CROSSOVER_FILE, R_OK) && dr_crossover_load(DR_CROSSOVER_FILE, err, sizeof err))
        fprintf(stderr, "q35lab: ignoring %s (auto uses its built-in default)\n", err);
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "list")) return cmd_list(argc - 1, argv + 1);
    if (!strcmp(argv[1], "check")) return cmd_check(argc - 1, argv + 1);
    if (!strcmp(argv[1], "golden")) return cmd_golden(argc - 1, argv + 1);
    if (!strcmp(argv[1], "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(argv[1], "calibrate")) return cmd_calibrate(argc - 1, argv + 1);
    if (!strcmp(argv[1], "model")) return cmd_model(argc - 1, argv + 1);
    if (!strcmp(argv[1], "generate")) return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(argv[1], "validate")) return cmd_validate(argc - 1, argv + 1);
    fprintf(stderr, "q35lab: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
