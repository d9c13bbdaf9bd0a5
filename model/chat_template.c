/* chat_template.c - Qwen3.5's user turn (chat_template.h). */
#include "model/chat_template.h"

#include <stdlib.h>
#include <string.h>

/* The code point of the UTF-8 sequence at s (n bytes left) and its length
 * in *k, or -1 if there is none. */
static long utf8_at(const unsigned char *s, size_t n, int *k)
{
    if (!n) return -1;
    if (s[0] < 0x80) { *k = 1; return s[0]; }
    const int len = s[0] >= 0xF8 ? 0 : s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC0 ? 2 : 0;
    if (!len || (size_t)len > n) return -1;
    long cp = s[0] & (0x7F >> len);
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return -1;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    *k = len;
    return cp;
}

/* Python's str.isspace(), what Jinja's trim (str.strip()) removes. */
static int py_space(long c)
{
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

char *q35_chat_turn(const char *text, size_t len, int think, size_t *out_len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t a = 0, b = len;
    int k;
    long c;
    while (a < b && (c = utf8_at(s + a, b - a, &k)) >= 0 && py_space(c)) a += (size_t)k;
    while (b > a) { /* the last character: back over continuation bytes */
        size_t j = b - 1;
        while (j > a && (s[j] & 0xC0) == 0x80 && b - j < 4) j--;
        if ((c = utf8_at(s + j, b - j, &k)) < 0 || j + (size_t)k != b || !py_space(c)) break;
        b = j;
    }
    static const char head[] = "<|im_start|>user\n", mid[] = "<|im_end|>\n<|im_start|>assistant\n";
    const char *tail = think ? "<think>\n" : "<think>\n\n</think>\n\n";
    const size_t n = strlen(head) + (b - a) + strlen(mid) + strlen(tail);
    char *out = malloc(n + 1);
    if (!out) return NULL;
    size_t at = 0;
    memcpy(out + at, head, strlen(head)), at += strlen(head);
    if (b > a) memcpy(out + at, text + a, b - a), at += b - a;
    memcpy(out + at, mid, strlen(mid)), at += strlen(mid);
    memcpy(out + at, tail, strlen(tail)), at += strlen(tail);
    out[at] = 0;
    *out_len = at;
    return out;
}

