/* q35lab generate: greedy generation from token ids or text (docs/text.md),
 * with its timings; speculative decoding (docs/speculative.md) and saved
 * prefixes (docs/state-file.md). */
#include "harness/deltarule_crossover.h"
#include "harness/impl_select.h"
#include "harness/model_validate.h"
#include "model/speculative.h"
#include "model/state_file.h"
#include "cli/cli_model_args.h"
#include "cli/cli_text.h"
#include "cli/commands.h"
#include "common/clock.h"

#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char usage[] =
    "usage: q35lab generate --model DIR (--prompt-ids IDS | --prompt TEXT... | --prompt-file FILE...)\n"
    "                       [--chat [--think]] [--max-new N] [--ignore-eos] [--impl SPEC] [--threads N]\n"
    "                       [--speculative mtp|ngram|oracle:P [--draft N] [--seed S] [--baseline]]\n"
    "                       [--save-state FILE | --load-state FILE] [--mmap] [--f32]\n"
    "Prefills the prompts (one right-padded batch), decodes up to N new tokens greedily (default 16), prints\n"
    "the ids, then TTFT, time per output token (median of the decode steps), prefill and decode tokens/s,\n"
    "peak memory.  With DIR/tokenizer.json the new tokens are also printed as text (docs/text.md): one\n"
    "prompt streams them on a 'text[0]: ' line as they are produced, a batch prints 'text[b]: ' lines at the\n"
    "end; special tokens are not printed.  A sequence ends at an end-of-sequence id (eos_token_id of\n"
    "DIR/generation_config.json, else of config.json), printed as its last token.\n"
    "  --ignore-eos       decode N tokens whatever they are (benchmarks)\n" TEXT_ARGS_HELP
    "  --speculative SRC  draft up to --draft N tokens per step (1..16, default 1) and verify them in one\n"
    "                     forward call, returning the recurrent states to the last accepted token\n"
    "                     (docs/speculative.md); the tokens are plain greedy's.  mtp: the checkpoint's MTP\n"
    "                     head; ngram: prompt lookup; oracle:P: plain greedy's own tokens, each replaced with\n"
    "                     probability 1-P (--seed S picks which), which runs plain greedy first\n"
    "  --baseline         also run plain greedy (oracle does anyway): speed-up side by side, tokens compared\n"
    "  --save-state FILE  after the prompt, write every layer's state, the positions and the prefix (with\n"
    "                     --max-new 0); --load-state FILE continues from such a file, --prompt-ids giving the\n"
    "                     suffix (docs/state-file.md)\n" MODEL_ARGS_HELP;

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

/* A state for the run: a saved prefix read back, or empty sequences. */
static int open_state(const q35_model *m, const char *load, int B, int room, q35_state *s, int32_t **prefix,
                      int *pos0, double *load_s, char *err, size_t errlen)
{
    *prefix = NULL;
    if (!load) return q35_state_init(s, &m->local, B, room, err, errlen);
    const double t0 = q35_now();
    if (q35_state_load(load, m, room, s, prefix, err, errlen)) return -1;
    *load_s = q35_now() - t0;
    *pos0 = s->pos[0];
    if (s->B != B) {
        snprintf(err, errlen, "%s holds %d sequence%s but --prompt-ids gives %d suffix%s", load, s->B,
                 s->B == 1 ? "" : "s", B, B == 1 ? "" : "es");
        q35_state_free(s);
        free(*prefix);
        *prefix = NULL;
        return -1;
    }
    return 0;
}

static void print_tokens(const int32_t *tok, int B, int steps, const int *n_out)
{
    for (int b = 0; b < B; b++) {
        printf("tokens[%d]:", b);
        for (int i = 0; i < n_out[b]; i++) printf("%s%d", i ? "," : " ", tok[(size_t)b * steps + i]);
        printf("\n");
    }
}

/* "eos: ids 511 (config.json); sequence 0 ended after 3 tokens, ..." */
static void print_eos(const q35_eos *eos, int ignore, const int *n_out, const int *ended, int B)
{
    if (ignore) { printf("eos: ignored (--ignore-eos)\n"); return; }
    if (!eos->n) { printf("eos: none (no eos_token_id in generation_config.json or config.json)\n"); return; }
    printf("eos: id%s", eos->n > 1 ? "s" : "");
    for (int i = 0; i < eos->n; i++) printf("%s%d", i ? "," : " ", (int)eos->id[i]);
    printf(" (%s)", eos->source);
    int any = 0;
    for (int b = 0; b < B; b++)
        if (ended[b]) {
            printf("%s sequence %d after %d token%s", any ? "," : "; ended:", b, n_out[b], n_out[b] == 1 ? "" : "s");
            any = 1;
        }
    printf("\n");
}

/* out: the tokens after the prefill's, over the batch */
static void print_speculative(const q35_spec_opts *so, const q35_spec_stats *st, long out, double p)
{
    char src[48];
    if (so->source == Q35_DRAFT_ORACLE) snprintf(src, sizeof src, "oracle:%g", p);
    else snprintf(src, sizeof src, "%s", q35_draft_source_name(so->source));
    const double dec = st->draft_s + st->verify_s + st->rollback_s;
    printf("speculative %s, draft %d: %ld verify calls, %ld sequence-steps; drafted %ld, accepted %ld (%.1f%%); "
           "%.2f tokens per sequence-step\n", src, so->n_draft, st->verify_calls, st->rows, st->drafted, st->accepted,
           st->drafted ? 100.0 * st->accepted / st->drafted : 0.0, st->rows ? (double)(st->rows + st->accepted) / st->rows : 0.0);
    printf("accepted per sequence-step:");
    for (int a = 0; a <= so->n_draft; a++) printf(" %d:%ld", a, st->accept_hist[a]);
    printf("\n");
    printf("decode %.2f ms for %ld tokens (%.1f tokens/s): draft %.2f ms, verify %.2f ms, rollback %.3f ms "
           "(%.1f%% / %.1f%% / %.2f%%)\n", 1e3 * dec, out, dec > 0 ? out / dec : 0.0, 1e3 * st->draft_s,
           1e3 * st->verify_s, 1e3 * st->rollback_s, dec > 0 ? 100 * st->draft_s / dec : 0.0,
           dec > 0 ? 100 * st->verify_s / dec : 0.0, dec > 0 ? 100 * st->rollback_s / dec : 0.0);
    if (so->source == Q35_DRAFT_MTP)
        printf("MTP head: %.2f ms over %ld draft tokens (%.3f ms per draft token, catch-up included)\n", 1e3 * st->mtp_s,
               st->mtp_draft_tokens, st->mtp_draft_tokens ? 1e3 * st->mtp_s / st->mtp_draft_tokens : 0.0);
}

int cmd_generate(int argc, char **argv, const q35_comm *comm)
{
    model_args a = {0};
    text_args ta = {0};
    int max_new = 16, n_draft = 0, baseline = 0, ignore_eos = 0;
    const char *spec = NULL, *save = NULL, *load = NULL;
    uint64_t seed = 1;
    const cli_opt opts[] = {MODEL_ARGS_OPTS(&a), OPT_INT("--max-new", &max_new, 0, 1 << 20),
                            OPT_STR("--speculative", &spec), OPT_INT("--draft", &n_draft, 1, Q35_DRAFT_MAX),
                            OPT_U64("--seed", &seed), OPT_FLAG("--baseline", &baseline),
                            OPT_STR("--save-state", &save), OPT_STR("--load-state", &load), TEXT_ARGS_OPTS(&ta),
                            OPT_FLAG("--ignore-eos", &ignore_eos), CLI_END};
    const int pr = cli_parse("generate", usage, opts, argc, argv, 1);
    if (pr) return CLI_EXIT(pr);
    if (model_args_check(&a, comm) || text_args_check(&ta, a.prompts, comm->rank)) return 2;
    const int text_in = text_args_given(&ta);
    if (!a.prompts && !text_in) {
        fprintf(stderr, "error: give the prompt: --prompt-ids IDS, --prompt TEXT or --prompt-file FILE\n");
        return 2;
    }
    const char *bad = save && load ? "--save-state and --load-state: one at a time (save a longer prefix instead)"
                    : save && max_new ? "--save-state writes the state after the prompt: give --max-new 0"
                    : save && spec ? "--save-state with --speculative: nothing is decoded when saving"
                    : !save && !max_new ? "--max-new 0 decodes nothing: only with --save-state"
                    : n_draft && !spec ? "--draft needs --speculative"
                    : (baseline || seed != 1) && !spec ? "--baseline and --seed go with --speculative" : NULL;
    if (bad) { fprintf(stderr, "error: %s\n", bad); return 2; }
    char err[512];
    q35_spec_opts so = {.n_draft = n_draft ? n_draft : 1, .seed = seed};
    if (spec && q35_draft_source_parse(spec, &so, err, sizeof err)) { fprintf(stderr, "error: %s\n", err); return 2; }
    deltarule_crossover x;
    q35_impls im = {.threads = a.threads, .dr_crossover = dr_crossover_load_default(&x)};
    if (q35_impls_parse(a.impl, &im, err, sizeof err)) { fprintf(stderr, "error: %s\n", err); return 2; }
    /* the tokenizer, and text prompts' ids, before the (long) model load: a
     * missing tokenizer or a bad prompt fails at once.  Without text prompts
     * the tokenizer, if there is one, only prints the output as text. */
    q35_prompts p = {0};
    q35_tokenizer *tz = NULL;
    if (!a.dir) { if (comm->rank == 0) fprintf(stderr, "error: --model DIR is required\n"); return 2; }
    if (text_tokenizer_open(a.dir, text_in, comm->rank, &tz)) return 2;
    if (text_in && text_prompts_encode(&ta, tz, &p, err, sizeof err)) {
        if (comm->rank == 0) fprintf(stderr, "error: %s\n", err);
        q35_tokenizer_free(tz);
        return 2;
    }
    q35_model m;
    if (model_args_open(&a, &m)) {
        q35_prompts_free(&p);
        if (tz) q35_tokenizer_free(tz);
        return 2;
    }
    q35_eos eos = {.source = "none"};
    text_out to = {0}, quiet = {0};
    int rc = 2;
    int32_t *tok = NULL, *plain = NULL, *prefix = NULL;
    int *n_out = NULL, *n_plain = NULL;
    double *step = NULL;
    q35_state s = {0};
    int loaded_pos0 = 0;
    double load_s = 0;   /* reading the state file (the last time it was read) */
    size_t state_bytes = 0; /* the largest state of the run, checkpoints included */
    if (text_tokenizer_fits(&tz, a.dir, text_in, m.cfg.vocab_size, comm->rank)) goto out;
    if (!ignore_eos && q35_eos_load(a.dir, &m.cfg, &eos, err, sizeof err)) {
        if (comm->rank == 0) fprintf(stderr, "error: %s\n", err);
        goto out;
    }
    if (!text_in && q35_prompts_parse(a.prompts, m.cfg.vocab_size, &p, err, sizeof err)) {
        if (comm->rank == 0) fprintf(stderr, "error: %s\n", err);
        goto out;
    }
    int Tp = 0;
    for (int b = 0; b < p.n; b++) Tp = p.len[b] > Tp ? p.len[b] : Tp;
    const int room = Tp + max_new + (spec ? so.n_draft : 0) + 1;
    const int steps = max_new ? max_new : 1;
    tok = calloc((size_t)p.n * steps, sizeof *tok);
    plain = calloc((size_t)p.n * steps, sizeof *plain); /* zeros past an end: the oracle may read there */
    n_out = calloc((size_t)p.n, sizeof *n_out);
    n_plain = calloc((size_t)p.n, sizeof *n_plain);
    step = calloc((size_t)steps, sizeof *step);
    q35_gen_timing tm = {.step_s = step};
    if (!tok || !plain || !n_out || !n_plain || !step) { fprintf(stderr, "error: out of memory\n"); goto out; }

    if (save) {
        if (open_state(&m, NULL, p.n, room, &s, &prefix, &loaded_pos0, &load_s, err, sizeof err) ||
            q35_generate_on(&m, &im, &s, (const int32_t *const *)p.prompt, p.len, 0, NULL, NULL, NULL, &tm, err,
                            sizeof err))
            goto fail;
        const double t0 = q35_now();
        if (q35_state_save(save, &m, &s, (const int32_t *const *)p.prompt, err, sizeof err)) goto fail;
        const double save_s = q35_now() - t0;
        printf("saved the state after %ld prompt tokens (batch %d) to %s; prefill %.2f ms, saving %.2f ms\n",
               tm.prompt_tokens, p.n, save, 1e3 * tm.prefill_s, 1e3 * save_s);
        rc = 0;
        goto out;
    }
    /* plain greedy: the run itself, or the baseline and the oracle's tokens.
     * The run printed is the one asked for: plain greedy, or the speculative
     * one (the plain run then only ends its sequences at the same ids). */
    const int run_plain = !spec || baseline || so.source == Q35_DRAFT_ORACLE;
    if (text_out_init(&to, tz, &eos, ignore_eos, comm->rank == 0, stdout, p.n) ||
        text_out_init(&quiet, NULL, &eos, ignore_eos, 0, stdout, p.n)) {
        fprintf(stderr, "error: out of memory\n");
        goto out;
    }
    const q35_gen_hook shown = {.fn = text_out_step, .ctx = &to, .n_out = n_out};
    const q35_gen_hook hidden = {.fn = text_out_step, .ctx = &quiet, .n_out = n_plain};
    if (run_plain) {
        if (open_state(&m, load, p.n, room, &s, &prefix, &loaded_pos0, &load_s, err, sizeof err) ||
            q35_generate_on_hook(&m, &im, &s, (const int32_t *const *)p.prompt, p.len, max_new, NULL, plain, NULL, &tm,
                                 spec ? &hidden : &shown, err, sizeof err))
            goto fail;
        state_bytes = s.bytes;
        q35_state_free(&s);
        free(prefix);
        prefix = NULL;
    }
    q35_spec_stats st;
    if (spec) {
        so.oracle = plain;
        so.hook = &shown;
        if (open_state(&m, load, p.n, room, &s, &prefix, &loaded_pos0, &load_s, err, sizeof err) ||
            q35_generate_speculative(&m, &im, &s, (const int32_t *const *)p.prompt, p.len, max_new, &so, tok, &st, err,
                                     sizeof err))
            goto fail;
        if (s.bytes + s.ckpt_bytes > state_bytes) state_bytes = s.bytes + s.ckpt_bytes;
    } else {
        memcpy(tok, plain, (size_t)p.n * max_new * sizeof *tok);
    }
    text_out_finish(&to);
    print_tokens(tok, p.n, max_new, n_out);
    char impl[256];
    q35_impls_format(&im, impl, sizeof impl);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("impl: %s\n", impl);
    if (load)
        printf("continued from %s (a prefix of %d tokens in sequence 0), read and checked in %.2f ms\n", load,
               loaded_pos0, 1e3 * load_s);
    if (run_plain) {
        printf("%sTTFT %.2f ms (prefill of %ld prompt tokens: %.1f tokens/s)\n", spec ? "plain greedy: " : "",
               1e3 * tm.prefill_s, tm.prompt_tokens, tm.prompt_tokens / tm.prefill_s);
        const int ran = tm.steps_run; /* fewer than max_new when every sequence ended early */
        if (ran > 1) {
            gsl_sort(step, 1, (size_t)ran - 1);
            const double med = gsl_stats_median_from_sorted_data(step, 1, (size_t)ran - 1);
            printf("%sTPOT %.2f ms median (min %.2f, max %.2f over %d steps); decode %.1f tokens/s (batch %d), "
                   "%.2f ms in all\n", spec ? "plain greedy: " : "", 1e3 * med, 1e3 * step[0], 1e3 * step[ran - 2],
                   ran - 1, p.n / med, p.n, 1e3 * tm.decode_s);
        }
    }
    if (spec) {
        long after_first = 0;
        for (int b = 0; b < p.n; b++) after_first += n_out[b] - 1;
        print_speculative(&so, &st, after_first, so.oracle_p);
        if (run_plain) {
            int same = 1; /* up to each sequence's end, which must be the same */
            for (int b = 0; b < p.n; b++)
                same &= n_out[b] == n_plain[b] && !memcmp(tok + (size_t)b * max_new, plain + (size_t)b * max_new,
                                                          (size_t)n_out[b] * sizeof *tok);
            const double dec = st.draft_s + st.verify_s + st.rollback_s;
            printf("against plain greedy in this run: tokens %s; decode speed-up %.3fx\n", same ? "identical" : "DIFFER",
                   dec > 0 ? tm.decode_s / dec : 0.0);
            if (!same) {
                fprintf(stderr, "error: speculative decoding changed the tokens (a bug: please report it)\n");
                rc = 1;
                goto out;
            }
        }
    }
    print_eos(&eos, ignore_eos, n_out, to.ended_eos, p.n);
    if (comm->size == 1)
        printf("peak memory %.1f MiB (weights %.1f MiB, state %.1f MiB)\n", ru.ru_maxrss / 1024.0,
               m.weight_bytes / 1048576.0, state_bytes / 1048576.0);
    else if (print_ranks_memory(comm, &m, ru.ru_maxrss / 1024.0, state_bytes / 1048576.0))
        goto out;
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "error: %s\n", err);
    if (comm->size > 1) q35_comm_abort(comm, 2); /* the other ranks wait in a collective */
out:
    q35_state_free(&s);
    free(prefix);
    free(tok);
    free(plain);
    free(n_out);
    free(n_plain);
    free(step);
    text_out_free(&to);
    text_out_free(&quiet);
    if (tz) q35_tokenizer_free(tz);
    q35_prompts_free(&p);
    q35_model_free(&m);
    return rc;
}
