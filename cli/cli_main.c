/* q35lab: the command line, the top floor.  It parses options and calls the
 * floors below (harness/, bench/, model/); nothing includes it. */
#include "cli/cli_args.h"
#include "cli/commands.h"

#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct {
    const char *name;
    int (*run)(int argc, char **argv, const q35_comm *comm);
} commands[] = {
    {"list", cmd_list},           {"check", cmd_check},       {"golden", cmd_golden},
    {"bench", cmd_bench},         {"calibrate", cmd_calibrate}, {"model", cmd_model},
    {"generate", cmd_generate},   {"validate", cmd_validate},   {"tokenize", cmd_tokenize},
};

static const char usage[] =
    "usage: q35lab <command> [options]       (q35lab <command> --help: its options)\n"
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
    "                  [--crossover FILE]\n"
    "  bench moe [--impl all] [--shape NAME] [--T 1,8,128,512] [--dtype f32,bf16] [--threads 1,2] [--reps N]\n"
    "  bench model --model DIR [--prompt-len 128,512] [--gen 32] [--impl SPEC] [--threads 1,2] [--reps N]\n"
    "  model init --preset NAME --out DIR [--seed S] [--dtype bf16|f32] [--layers N] [--experts fused|per-expert]\n"
    "  generate --model DIR --prompt-ids 1,2,3[;4,5] | --prompt TEXT [--chat] [--max-new N] [--ignore-eos]\n"
    "           [--impl SPEC] [--threads N]\n"
    "  validate --model DIR [--prompt-ids IDS | --prompt TEXT] [--steps N] [--impl all|SPEC[;SPEC]] [--golden FILE]\n"
    "  tokenize --model DIR \"text\" | --decode 1,2,3 | --jsonl FILE | --bench FILE   (tokenizer.json)\n"
    "See README.md for every option.\n";

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
/* Under OMP_PROC_BIND (or OMP_PLACES) libgomp has, at load, already bound this thread to its first
 * place, and exec keeps that narrowed mask: the new process would find one place and put every
 * thread on it (OMP_PROC_BIND=close OMP_PLACES=cores ran both threads on CPU 0 of the 2-core guest,
 * at half the speed, with nothing to say so).  The places were computed from the mask q35lab was
 * started with, so their union gives that mask back before the exec. */
static void unbind_for_exec(void)
{
    const int np = omp_get_num_places();
    if (np <= 0) return; /* no binding: the mask is the one we were started with */
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int p = 0; p < np; p++) {
        const int n = omp_get_place_num_procs(p);
        int *ids = n > 0 ? malloc((size_t)n * sizeof *ids) : NULL;
        if (!ids) continue;
        omp_get_place_proc_ids(p, ids);
        for (int i = 0; i < n; i++)
            if (ids[i] >= 0 && ids[i] < CPU_SETSIZE) CPU_SET(ids[i], &all);
        free(ids);
    }
    if (CPU_COUNT(&all) > 0) sched_setaffinity(0, sizeof all, &all); /* advisory: on failure exec as we are */
}

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
    if (changed) {
        unbind_for_exec();
        execv("/proc/self/exe", argv);
    }
    /* exec failed (no /proc): carry on with the libraries' defaults */
}

int cli_one_process(const q35_comm *comm, const char *what)
{
    if (comm->size == 1) return 0;
    if (comm->rank == 0)
        fprintf(stderr, "q35lab: %s runs in one process; under mpirun only generate, validate and bench model run "
                        "tensor-parallel (docs/tp.md)\n", what);
    return 2;
}

int main(int argc, char **argv)
{
    set_thread_pools(argv);
    q35_comm comm;
    char err[512];
    if (q35_comm_start(&comm, &argc, &argv, err, sizeof err)) {
        fprintf(stderr, "q35lab: %s\n", err);
        return 2;
    }
    /* Rank 0 speaks for the run; the others stay quiet unless they fail (stderr). */
    if (comm.rank != 0 && !freopen("/dev/null", "w", stdout))
        fprintf(stderr, "q35lab: rank %d: cannot silence its output\n", comm.rank);
    int rc = 2;
    if (argc < 2 || cli_is_help(argv[1])) {
        if (comm.rank == 0) fputs(usage, argc < 2 ? stderr : stdout);
        rc = argc < 2 ? 2 : 0;
    } else {
        size_t i = 0;
        while (i < sizeof commands / sizeof *commands && strcmp(argv[1], commands[i].name)) i++;
        if (i < sizeof commands / sizeof *commands)
            rc = commands[i].run(argc - 1, argv + 1, &comm);
        else if (comm.rank == 0) {
            fprintf(stderr, "q35lab: unknown command '%s'\n", argv[1]);
            fputs(usage, stderr);
        }
    }
    q35_comm_end(&comm);
    return rc;
}
