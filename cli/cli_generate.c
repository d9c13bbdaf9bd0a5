/* q35lab generate: greedy generation from token ids, with its timings. */
#include "harness/deltarule_crossover.h"
#include "harness/impl_select.h"
#include "harness/model_validate.h"
#include "cli/cli_model_args.h"
#include "cli/commands.h"

#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char usage[] =
    "usage: q35lab generate --model DIR --prompt-ids IDS [--max-new N] [--impl SPEC] [--threads N]\n"
    "                       [--mmap] [--f32]\n"
    "Prefills the prompts (one right-padded batch), decodes N new tokens greedily (default 16), prints the\n"
    "ids, then TTFT, time per output token (median of the decode steps), prefill and decode tokens/s, peak\n"
    "memory.\n" MODEL_ARGS_HELP;

/* Every rank's resident weights, state and peak memory, printed by rank 0. */
static int print_ranks_memory(const q35_comm *comm, const q35_model *m, double peak_mib, double state_mib)
{
    const float mine[3] = {(float)peak_mib, (float)(m->weight_bytes / 1048576.0), (float)state_mib};
    int *n = malloc((size_t)comm->size * sizeof *n);
    float *all = malloc((size_t)comm->size * 3 * sizeof *all);
    const int ok = n && all;
    for (int r = 0; ok && r < comm->size; r++) n[r] = 3;
    const int rc = !ok || q35_comm_gather(comm, mine, n, all) ? -1 : 0;
    if (rc) fprintf(stderr, "error: rank %d: gathering the ranks' memory failed\n", comm->rank);
    for (int r = 0; !rc && r < comm->size; r++)
        printf("rank %d: peak memory %.1f MiB (weights %.1f MiB, state %.1f MiB)\n", r, all[3 * r], all[3 * r + 1],
               all[3 * r + 2]);
    free(n);
    free(all);
    return rc;
}

int cmd_generate(int argc, char **argv, const q35_comm *comm)
{
    model_args a = {0};
    int max_new = 16;
    const cli_opt opts[] = {MODEL_ARGS_OPTS(&a), OPT_INT("--max-new", &max_new, 1, 1 << 20), CLI_END};
    const int pr = cli_parse("generate", usage, opts, argc, argv, 1);
    if (pr) return CLI_EXIT(pr);
    if (model_args_check(&a, comm)) return 2;
    if (!a.prompts) { fprintf(stderr, "error: --prompt-ids is required\n"); return 2; }
    char err[512];
    deltarule_crossover x;
    q35_impls im = {.threads = a.threads, .dr_crossover = dr_crossover_load_default(&x)};
    if (q35_impls_parse(a.impl, &im, err, sizeof err)) { fprintf(stderr, "error: %s\n", err); return 2; }
    q35_model m;
    if (model_args_open(&a, &m)) return 2;
    q35_prompts p;
    int rc = 2;
    int32_t *tok = NULL;
    double *step = NULL;
    if (q35_prompts_parse(a.prompts, m.cfg.vocab_size, &p, err, sizeof err)) {
        fprintf(stderr, "error: %s\n", err);
        q35_model_free(&m);
        return 2;
    }
    tok = malloc((size_t)p.n * max_new * sizeof *tok);
    step = calloc((size_t)max_new, sizeof *step);
    q35_gen_timing tm = {.step_s = step};
    if (!tok || !step) { fprintf(stderr, "error: out of memory\n"); goto out; }
    if (q35_generate(&m, &im, p.n, (const int32_t *const *)p.prompt, p.len, max_new, NULL, tok, NULL, &tm, err,
                     sizeof err)) {
        fprintf(stderr, "error: %s\n", err);
        if (comm->size > 1) q35_comm_abort(comm, 2); /* the other ranks wait in a collective */
        goto out;
    }
    for (int b = 0; b < p.n; b++) {
        printf("tokens[%d]:", b);
        for (int i = 0; i < max_new; i++) printf("%s%d", i ? "," : " ", tok[(size_t)b * max_new + i]);
        printf("\n");
    }
    char spec[256];
    q35_impls_format(&im, spec, sizeof spec);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("impl: %s\n", spec);
    printf("TTFT %.2f ms (prefill of %ld prompt tokens: %.1f tokens/s)\n", 1e3 * tm.prefill_s, tm.prompt_tokens,
           tm.prompt_tokens / tm.prefill_s);
    if (max_new > 1) {
        gsl_sort(step, 1, (size_t)max_new - 1);
        const double med = gsl_stats_median_from_sorted_data(step, 1, (size_t)max_new - 1);
        printf("TPOT %.2f ms median (min %.2f, max %.2f over %d steps); decode %.1f tokens/s (batch %d)\n", 1e3 * med,
               1e3 * step[0], 1e3 * step[max_new - 2], max_new - 1, p.n / med, p.n);
    }
    if (comm->size == 1)
        printf("peak memory %.1f MiB (weights %.1f MiB, state %.1f MiB)\n", ru.ru_maxrss / 1024.0,
               m.weight_bytes / 1048576.0, tm.state_bytes / 1048576.0);
    else if (print_ranks_memory(comm, &m, ru.ru_maxrss / 1024.0, tm.state_bytes / 1048576.0))
        goto out;
    rc = 0;
out:
    free(tok);
    free(step);
    q35_prompts_free(&p);
    q35_model_free(&m);
    return rc;
}
