/* q35lab tokenize: text to ids and back with a model folder's tokenizer.json
 * (model/tokenizer.h, docs/tokenizer.md); --jsonl is the batch form the
 * tests use, --bench times encoding on one thread. */
#include "cli/cli_args.h"
#include "cli/commands.h"
#include "common/clock.h"
#include "common/json_file.h"
#include "model/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: q35lab tokenize --model DIR \"text\"\n"
    "       q35lab tokenize --model DIR --decode 1,2,3\n"
    "       q35lab tokenize --model DIR --jsonl FILE\n"
    "       q35lab tokenize --model DIR --bench FILE [--reps N]\n"
    "  Qwen3.5's tokenizer, read from DIR/tokenizer.json alone (no weights needed), with Hugging\n"
    "  Face tokenizers' results (docs/tokenizer.md).  Special tokens written in the text\n"
    "  (<|im_start|>, <think>, ...) become their ids.\n"
    "  \"text\"        prints its ids, comma-separated, on one line\n"
    "  --decode IDS  prints the text of comma-separated ids, then a newline (bytes that are not\n"
    "                valid UTF-8 become U+FFFD, as in HF)\n"
    "  --jsonl FILE  one JSON string per line (FILE - reads stdin): one line of ids per line\n"
    "  --bench FILE  times encoding FILE (.jsonl: each line's string; otherwise each line) on one\n"
    "                thread: MB/s median [min, max] of --reps runs (default 7)\n"
    "  Exit status 2 for bad input (invalid UTF-8, a bad id, a line that is not a JSON string).\n";

static int print_ids(const int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) printf(i ? ",%d" : "%d", ids[i]);
    return putchar('\n') == EOF;
}

static int encode_and_print(const q35_tokenizer *t, const char *text, size_t len, const char *where, int32_t **ids,
                            size_t *cap)
{
    char err[512];
    size_t n;
    if (q35_tokenizer_encode(t, text, len, ids, &n, cap, err, sizeof err)) {
        fprintf(stderr, "q35lab: tokenize: %s%s\n", where, err);
        return 2;
    }
    return print_ids(*ids, n) ? 1 : 0;
}

static int decode_and_print(const q35_tokenizer *t, const char *list)
{
    size_t count = 1;
    for (const char *p = list; *p; p++) count += *p == ',';
    int *vals = malloc(count * sizeof *vals);
    int32_t *ids = malloc(count * sizeof *ids);
    const int n = vals && ids ? cli_int_list(list, vals, (int)count, 0, q35_tokenizer_n_ids(t) - 1) : -1;
    int rc = 2;
    if (n < 0) {
        fprintf(stderr, "q35lab: tokenize: --decode '%.80s': expected comma-separated ids in [0, %d)\n", list,
                q35_tokenizer_n_ids(t));
    } else {
        for (int i = 0; i < n; i++) ids[i] = vals[i];
        char err[512];
        size_t len;
        char *text = q35_tokenizer_decode(t, ids, (size_t)n, 0, &len, err, sizeof err);
        if (!text) fprintf(stderr, "q35lab: tokenize: --decode: %s\n", err);
        else {
            rc = fwrite(text, 1, len, stdout) != len || putchar('\n') == EOF;
            free(text);
        }
    }
    free(vals);
    free(ids);
    return rc;
}

/* line without its newline as a JSON string: malloc'ed text and *len, or NULL. */
static char *json_line_string(const char *line, size_t *len)
{
    cJSON *j = cJSON_Parse(line);
    char *s = NULL;
    if (cJSON_IsString(j)) {
        *len = strlen(j->valuestring);
        s = malloc(*len + 1);
        if (s) memcpy(s, j->valuestring, *len + 1);
    }
    cJSON_Delete(j);
    return s;
}

static int jsonl(const q35_tokenizer *t, const char *path)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!f) {
        fprintf(stderr, "q35lab: tokenize: --jsonl %s: cannot open\n", path);
        return 2;
    }
    char *line = NULL, where[64];
    size_t cap = 0, id_cap = 0, lineno = 0;
    int32_t *ids = NULL;
    int rc = 0;
    while (!rc && getline(&line, &cap, f) > 0) {
        lineno++;
        size_t len;
        char *text = json_line_string(line, &len);
        if (!text) {
            fprintf(stderr, "q35lab: tokenize: %s line %zu: not a JSON string\n", path, lineno);
            rc = 2;
            break;
        }
        snprintf(where, sizeof where, "line %zu: ", lineno);
        rc = encode_and_print(t, text, len, where, &ids, &id_cap);
        free(text);
    }
    free(line);
    free(ids);
    if (f != stdin) fclose(f);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Each line of FILE (each JSON string of a .jsonl) encoded once per rep, one thread. */
static int bench(const q35_tokenizer *t, const char *path, int reps)
{
    char err[512];
    size_t size;
    char *all = q35_read_file_bounded(path, (size_t)1 << 31, &size, err, sizeof err);
    if (!all) {
        fprintf(stderr, "q35lab: tokenize: --bench: %s\n", err);
        return 2;
    }
    const size_t plen = strlen(path);
    const int is_jsonl = plen > 6 && !strcmp(path + plen - 6, ".jsonl");
    char **texts = NULL;
    size_t *lens = NULL, n_texts = 0, bytes = 0;
    for (char *p = all, *nl; p < all + size; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(all + size - p));
        if (!nl) nl = all + size;
        *nl = 0;
        texts = realloc(texts, (n_texts + 1) * sizeof *texts);
        lens = realloc(lens, (n_texts + 1) * sizeof *lens);
        if (is_jsonl) texts[n_texts] = json_line_string(p, &lens[n_texts]);
        else lens[n_texts] = (size_t)(nl - p), texts[n_texts] = p;
        if (!texts[n_texts]) {
            fprintf(stderr, "q35lab: tokenize: --bench %s line %zu: not a JSON string\n", path, n_texts + 1);
            return 2;
        }
        bytes += lens[n_texts++];
    }
    int32_t *ids = NULL;
    size_t cap = 0, n, tokens = 0;
    double *secs = malloc((size_t)reps * sizeof *secs);
    for (int r = -1; r < reps; r++) { /* rep -1 warms the caches (and the word cache, as HF's is warm too) */
        tokens = 0;
        const double t0 = q35_now();
        for (size_t i = 0; i < n_texts; i++) {
            if (q35_tokenizer_encode(t, texts[i], lens[i], &ids, &n, &cap, err, sizeof err)) {
                fprintf(stderr, "q35lab: tokenize: --bench line %zu: %s\n", i + 1, err);
                return 2;
            }
            tokens += n;
        }
        if (r >= 0) secs[r] = q35_now() - t0;
    }
    qsort(secs, (size_t)reps, sizeof *secs, cmp_double);
    const double mb = (double)bytes / 1e6;
    printf("q35lab encode, 1 thread: %.2f MB/s median [%.2f, %.2f] over %d reps; %zu lines, %zu bytes, %zu tokens\n",
           mb / secs[reps / 2], mb / secs[reps - 1], mb / secs[0], reps, n_texts, bytes, tokens);
    if (is_jsonl)
        for (size_t i = 0; i < n_texts; i++) free(texts[i]);
    free(texts);
    free(lens);
    free(ids);
    free(secs);
    free(all);
    return 0;
}

/* The one argument that is neither an option nor an option's value: the text. */
static const char *take_text(int *argc, char **argv)
{
    static const char *const with_value[] = {"--model", "--decode", "--jsonl", "--bench", "--reps"};
    for (int i = 1; i < *argc; i++) {
        int takes = 0;
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++) takes |= !strcmp(argv[i], with_value[k]);
        if (takes) {
            i++;
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1]) continue;
        const char *text = argv[i];
        for (int j = i; j + 1 < *argc; j++) argv[j] = argv[j + 1];
        (*argc)--;
        return text;
    }
    return NULL;
}

int cmd_tokenize(int argc, char **argv, const q35_comm *comm)
{
    if (cli_one_process(comm, "tokenize")) return 2;
    const char *text = take_text(&argc, argv);
    const char *dir = NULL, *decode = NULL, *jsonl_path = NULL, *bench_path = NULL;
    int reps = 7;
    const cli_opt opts[] = {OPT_STR("--model", &dir),       OPT_STR("--decode", &decode),
                            OPT_STR("--jsonl", &jsonl_path), OPT_STR("--bench", &bench_path),
                            OPT_INT("--reps", &reps, 1, 1000), CLI_END};
    const int pr = cli_parse("tokenize", usage, opts, argc, argv, 1);
    if (pr) return CLI_EXIT(pr);
    if (!dir || (!!text + !!decode + !!jsonl_path + !!bench_path) != 1) {
        fprintf(stderr, "q35lab: tokenize: needs --model DIR and one of \"text\", --decode, --jsonl, --bench "
                        "(q35lab tokenize --help)\n");
        return 2;
    }
    char err[512];
    int missing;
    q35_tokenizer *t = q35_tokenizer_load_dir(dir, &missing, err, sizeof err);
    if (!t) {
        if (missing) fprintf(stderr, "q35lab: tokenize: %s has no tokenizer.json\n", dir);
        else fprintf(stderr, "q35lab: tokenize: %s\n", err);
        return 2;
    }
    int rc;
    int32_t *ids = NULL;
    size_t cap = 0;
    if (text) rc = encode_and_print(t, text, strlen(text), "", &ids, &cap);
    else if (decode) rc = decode_and_print(t, decode);
    else if (jsonl_path) rc = jsonl(t, jsonl_path);
    else rc = bench(t, bench_path, reps);
    free(ids);
    q35_tokenizer_free(t);
    return rc;
}
