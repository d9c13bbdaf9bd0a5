/* cli_text.h - text in and text out for generate and validate
 * (docs/text.md): prompts given as text (--prompt, --prompt-file), the
 * ChatML turn around them (--chat, --think), and the generated tokens
 * decoded as they come, with the end-of-sequence ids that stop a sequence. */
#ifndef Q35_CLI_TEXT_H
#define Q35_CLI_TEXT_H

#include "harness/model_validate.h"
#include "model/generation_config.h"
#include "model/tokenizer.h"
#include "cli/cli_args.h"

#include <stdio.h>

#define TEXT_MAX_PROMPTS 256
#define TEXT_MAX_FILE_BYTES (64u << 20) /* a --prompt-file larger than 64 MiB is refused */

typedef struct {
    const char *text[TEXT_MAX_PROMPTS]; /* --prompt, repeatable: one prompt each */
    int n_text;
    const char *file[TEXT_MAX_PROMPTS]; /* --prompt-file, repeatable: a file's bytes are one prompt */
    int n_file;
    int chat;                           /* --chat: each prompt as one user turn of Qwen3.5's chat template */
    int think;                          /* --think: with --chat, the turn opens the thinking block */
} text_args;

#define TEXT_ARGS_OPTS(t)                                                                                          \
    OPT_STRS("--prompt", (t)->text, &(t)->n_text, TEXT_MAX_PROMPTS),                                            \
        OPT_STRS("--prompt-file", (t)->file, &(t)->n_file, TEXT_MAX_PROMPTS), OPT_FLAG("--chat", &(t)->chat),    \
        OPT_FLAG("--think", &(t)->think)

#define TEXT_ARGS_HELP                                                                                             \
    "  --prompt TEXT      a prompt as text, encoded with DIR/tokenizer.json (repeat it for a batch)\n"              \
    "  --prompt-file F    a file's bytes as one prompt (repeatable; not mixed with --prompt)\n"                   \
    "  --chat             each prompt as a user turn of Qwen3.5's chat template, thinking off:\n"                  \
    "                     <|im_start|>user\\n{prompt}<|im_end|>\\n<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n\n" \
    "  --think            with --chat: end the turn with <think>\\n instead (the model thinks first)\n"

/* 1 if text prompts were given. */
int text_args_given(const text_args *t);
/* After parsing: one kind of prompt (ids, text or files), --chat and
 * --think only with text; -1 after a message (stderr, rank 0 only). */
int text_args_check(const text_args *t, const char *prompt_ids, int rank);

/* DIR/tokenizer.json, read before the model (a missing tokenizer fails at
 * once).  required (text prompts): a missing or broken file is an error
 * (-1 after a message on rank 0).  Otherwise the tokenizer only decodes the
 * output: missing gives *tok = NULL quietly, broken a warning and NULL. */
int text_tokenizer_open(const char *dir, int required, int rank, q35_tokenizer **tok);
/* Once the model is loaded: every id the tokenizer knows must be a row of
 * the model's vocabulary (vocab); if not, *tok is freed (NULL) after an
 * error (required: -1) or a warning. */
int text_tokenizer_fits(q35_tokenizer **tok, const char *dir, int required, int vocab, int rank);

/* The prompts of t encoded into p (q35_prompts_free frees them); -1 with a
 * message naming the prompt (invalid UTF-8, an unreadable file, no tokens).
 * With t->chat each prompt is first wrapped by q35_chat_turn
 * (model/chat_template.h). */
int text_prompts_encode(const text_args *t, const q35_tokenizer *tok, q35_prompts *p, char *err, size_t errlen);

/* Generated text: the hook each generation step calls (model/generate.h).
 * B = 1 streams the text to out as tokens come (a "text[0]: " line that
 * grows); B > 1 keeps each sequence's text for text_out_finish.  Special
 * tokens (<|im_end|>, ...) and ids the tokenizer lacks are not printed; a
 * UTF-8 character split over tokens is printed when complete.  A token in
 * eos ends its sequence unless ignore_eos. */
typedef struct {
    const q35_tokenizer *tok; /* NULL: no text, only the EOS test */
    const q35_eos *eos;       /* NULL: none */
    int ignore_eos;
    int print;                /* rank 0 prints; the others only test EOS */
    FILE *out;
    int B;
    q35_detok *d;             /* [B] */
    char **buf;               /* [B] B > 1: the text so far */
    size_t *len, *cap;
    int *n_tokens;            /* [B] tokens seen */
    int *ended_eos;           /* [B] ended by an EOS id */
    int started, oom;
} text_out;

int text_out_init(text_out *o, const q35_tokenizer *tok, const q35_eos *eos, int ignore_eos, int print, FILE *out,
                  int B);
/* The q35_gen_step_fn to give a hook with ctx = o. */
int text_out_step(void *ctx, int b, int i, int32_t token);
/* Flushes what is held and ends the text block(s): B = 1 ends its line,
 * B > 1 prints "text[b]: ..." for each sequence. */
void text_out_finish(text_out *o);
void text_out_free(text_out *o);

#endif
