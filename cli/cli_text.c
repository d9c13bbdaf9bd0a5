/* cli_text.c - text prompts and text output (cli_text.h, docs/text.md). */
#include "cli/cli_text.h"

#include "common/errmsg.h"
#include "common/json_file.h"
#include "model/chat_template.h"

#include <stdlib.h>
#include <string.h>

int text_args_given(const text_args *t) { return t->n_text > 0 || t->n_file > 0; }

int text_args_check(const text_args *t, const char *prompt_ids, int rank)
{
    const char *bad = t->n_text && t->n_file ? "--prompt and --prompt-file: one kind of prompt at a time"
                    : prompt_ids && text_args_given(t) ? "--prompt-ids and --prompt/--prompt-file: one kind of prompt "
                                                         "at a time"
                    : t->chat && !text_args_given(t) ? "--chat wraps text prompts: give --prompt or --prompt-file"
                    : t->think && !t->chat ? "--think goes with --chat" : NULL;
    if (bad && rank == 0) fprintf(stderr, "error: %s\n", bad);
    return bad ? -1 : 0;
}

int text_tokenizer_open(const char *dir, int required, int rank, q35_tokenizer **tok)
{
    char err[512];
    int missing = 0;
    *tok = q35_tokenizer_load_dir(dir, &missing, err, sizeof err);
    if (!*tok && missing) {
        if (required && rank == 0)
            fprintf(stderr, "error: %s/tokenizer.json is missing: text prompts need the checkpoint's tokenizer "
                    "(--prompt-ids takes token ids without one)\n", dir);
        return required ? -1 : 0;
    }
    if (!*tok && rank == 0) fprintf(stderr, "%s: %s\n", required ? "error" : "warning: ids only", err);
    return *tok || !required ? 0 : -1;
}

int text_tokenizer_fits(q35_tokenizer **tok, const char *dir, int required, int vocab, int rank)
{
    if (!*tok) return 0;
    const int n = q35_tokenizer_n_ids(*tok);
    if (n <= vocab) return 0;
    if (rank == 0)
        fprintf(stderr, "%s: %s/tokenizer.json has ids up to %d, beyond the model's vocabulary of %d\n",
                required ? "error" : "warning: ids only", dir, n - 1, vocab);
    q35_tokenizer_free(*tok);
    *tok = NULL;
    return required ? -1 : 0;
}

int text_prompts_encode(const text_args *t, const q35_tokenizer *tok, q35_prompts *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    const int files = t->n_file > 0, n = files ? t->n_file : t->n_text;
    const char *what = files ? "--prompt-file" : "--prompt";
    p->prompt = calloc((size_t)n, sizeof *p->prompt);
    p->len = calloc((size_t)n, sizeof *p->len);
    if (!p->prompt || !p->len) {
        free(p->prompt);
        free(p->len);
        memset(p, 0, sizeof *p);
        q35_errmsg(err, errlen, "%s: out of memory", what);
        return -1;
    }
    p->n = n;
    for (int i = 0; i < n; i++) {
        char e[400];
        char *file = NULL, *turn = NULL;
        const char *text = files ? NULL : t->text[i];
        size_t len = text ? strlen(text) : 0;
        if (files && !(text = file = q35_read_file_bounded(t->file[i], TEXT_MAX_FILE_BYTES, &len, e, sizeof e))) {
            q35_errmsg(err, errlen, "--prompt-file: %s", e); /* e names the file */
            goto fail;
        }
        if (t->chat) {
            size_t tl;
            if (!(turn = q35_chat_turn(text, len, t->think, &tl))) {
                free(file);
                q35_errmsg(err, errlen, "%s: out of memory", what);
                goto fail;
            }
            text = turn;
            len = tl;
        }
        int32_t *ids = NULL;
        size_t n_ids = 0, cap = 0;
        const int rc = q35_tokenizer_encode(tok, text, len, &ids, &n_ids, &cap, e, sizeof e);
        free(file);
        free(turn);
        const char *name = files ? t->file[i] : NULL;
        if (rc) {
            free(ids);
            if (name) q35_errmsg(err, errlen, "--prompt-file %s: %s", name, e);
            else q35_errmsg(err, errlen, "--prompt %d: %s", i + 1, e);
            goto fail;
        }
        p->prompt[i] = ids;
        p->len[i] = (int)n_ids;
        if (n_ids == 0 || n_ids > (size_t)1 << 30) {
            if (name) q35_errmsg(err, errlen, "--prompt-file %s: %zu tokens (at least 1 needed)", name, n_ids);
            else q35_errmsg(err, errlen, "--prompt %d: %zu tokens (an empty prompt: at least 1 needed)", i + 1, n_ids);
            goto fail;
        }
    }
    return 0;
fail:
    q35_prompts_free(p);
    return -1;
}

int text_out_init(text_out *o, const q35_tokenizer *tok, const q35_eos *eos, int ignore_eos, int print, FILE *out,
                  int B)
{
    memset(o, 0, sizeof *o);
    o->tok = tok;
    o->eos = eos;
    o->ignore_eos = ignore_eos;
    o->print = print && tok;
    o->out = out;
    o->B = B;
    o->d = calloc((size_t)B, sizeof *o->d);
    o->buf = calloc((size_t)B, sizeof *o->buf);
    o->len = calloc((size_t)B, sizeof *o->len);
    o->cap = calloc((size_t)B, sizeof *o->cap);
    o->n_tokens = calloc((size_t)B, sizeof *o->n_tokens);
    o->ended_eos = calloc((size_t)B, sizeof *o->ended_eos);
    if (!o->d || !o->buf || !o->len || !o->cap || !o->n_tokens || !o->ended_eos) {
        text_out_free(o);
        return -1;
    }
    for (int b = 0; b < B; b++) q35_detok_init(&o->d[b]);
    return 0;
}

/* Text of sequence b: streamed (B = 1) or kept. */
static void emit(text_out *o, int b, const char *s, size_t n)
{
    if (!n) return;
    if (o->B == 1) {
        fwrite(s, 1, n, o->out);
        fflush(o->out);
        return;
    }
    if (o->len[b] + n + 1 > o->cap[b]) {
        size_t cap = o->cap[b] ? o->cap[b] : 256;
        while (o->len[b] + n + 1 > cap) cap *= 2;
        char *q = realloc(o->buf[b], cap);
        if (!q) { o->oom = 1; return; }
        o->buf[b] = q;
        o->cap[b] = cap;
    }
    memcpy(o->buf[b] + o->len[b], s, n);
    o->len[b] += n;
    o->buf[b][o->len[b]] = 0;
}

int text_out_step(void *ctx, int b, int i, int32_t token)
{
    text_out *o = ctx;
    (void)i;
    o->n_tokens[b]++;
    if (o->print) {
        if (o->B == 1 && !o->started) {
            fputs("text[0]: ", o->out);
            o->started = 1;
        }
        if (token >= 0 && token < q35_tokenizer_n_ids(o->tok) && !q35_tokenizer_is_special(o->tok, token)) {
            const char *s;
            size_t n;
            char err[160];
            if (!q35_detok_push(o->tok, &o->d[b], token, &s, &n, err, sizeof err)) emit(o, b, s, n);
        }
    }
    if (!o->ignore_eos && o->eos && q35_eos_has(o->eos, token)) {
        o->ended_eos[b] = 1;
        return 1;
    }
    return 0;
}

void text_out_finish(text_out *o)
{
    if (!o->print) return;
    for (int b = 0; b < o->B; b++) {
        const char *s;
        size_t n;
        if (!q35_detok_finish(&o->d[b], &s, &n)) emit(o, b, s, n);
    }
    if (o->B == 1) {
        if (!o->started) fputs("text[0]: ", o->out);
        fputc('\n', o->out);
    } else {
        for (int b = 0; b < o->B; b++) fprintf(o->out, "text[%d]: %s\n", b, o->buf[b] ? o->buf[b] : "");
        if (o->oom) fprintf(o->out, "(out of memory: some text is missing)\n");
    }
    fflush(o->out);
}

void text_out_free(text_out *o)
{
    for (int b = 0; o->d && b < o->B; b++) q35_detok_free(&o->d[b]);
    for (int b = 0; o->buf && b < o->B; b++) free(o->buf[b]);
    free(o->d);
    free(o->buf);
    free(o->len);
    free(o->cap);
    free(o->n_tokens);
    free(o->ended_eos);
    memset(o, 0, sizeof *o);
}
