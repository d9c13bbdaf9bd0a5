/* chat_template.h - one user turn of Qwen3.5's chat template, the string
 * transformers' apply_chat_template renders for [{"role": "user", "content":
 * text}] with add_generation_prompt=True (docs/text.md §2 has the template's
 * source):
 *
 *   <|im_start|>user\n{text, trimmed}<|im_end|>\n<|im_start|>assistant\n
 *
 * followed by the thinking block of the branch chosen: enable_thinking=False
 * gives an empty, closed "<think>\n\n</think>\n\n" (the model answers at
 * once), enable_thinking=True "<think>\n" (the model thinks first).  The
 * template trims the content with Jinja's trim, Python's str.strip(): the
 * white space of str.isspace() at both ends. */
#ifndef Q35LAB_MODEL_CHAT_TEMPLATE_H
#define Q35LAB_MODEL_CHAT_TEMPLATE_H

#include <stddef.h>

/* The turn around len bytes of text, malloc'ed and NUL-terminated (*out_len
 * bytes without the NUL); NULL when out of memory.  Bytes that are not
 * UTF-8 are kept as they are (the tokenizer refuses them). */
char *q35_chat_turn(const char *text, size_t len, int think, size_t *out_len);

#endif
