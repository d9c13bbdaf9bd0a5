/* tokenizer_write.c - the tiny presets' tokenizer.json (tokenizer_write.h). */
#include "model/tokenizer_write.h"

#include "common/errmsg.h"
#include "model/bytes_unicode.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char q35_qwen35_split_regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* The text the merges are learnt from: plain English, written for this
 * file.  Changing it changes every tiny checkpoint's tokenizer. */
static const char corpus[] =
    "The capital of France is Paris. The capital of Germany is Berlin, and the capital of Italy is Rome. "
    "Paris is a large city on the river Seine, and many people visit it every year to see the museums, "
    "the old streets and the tower that stands near the water.\n"
    "A language model reads a sequence of tokens and predicts the next one. It was trained on a great deal "
    "of text, so it has learnt which words tend to follow which. When you ask it a question, it answers "
    "one token at a time, and each new token is added to the input before the next step.\n"
    "Hello, world! How are you today? I am fine, thank you. What would you like to know about the model?\n"
    "In the morning the sun rises in the east, and in the evening it sets in the west. The days are long "
    "in summer and short in winter. Children play in the park while their parents talk on the benches.\n"
    "The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore. There is nothing "
    "new under the sun, but there are many things we have not yet seen.\n"
    "Computers store numbers as bits. A byte has eight bits, and a kilobyte has one thousand and twenty "
    "four bytes. The program reads the file, checks every field, and writes the result when it is complete.\n"
    "Once upon a time there was a little house at the edge of a forest. An old man lived there with his "
    "daughter, who was kind and clever. Every day she went into the forest to gather wood and water.\n"
    "The weather will be warm and dry this week, with light wind from the south. Rain is expected again "
    "on the weekend, so remember to take an umbrella if you are going out.\n"
    "Mathematics is the study of numbers, shapes and patterns. Two plus two is four, and three times "
    "three is nine. A triangle has three sides, and a square has four sides of equal length.\n"
    "We went to the market and bought bread, cheese, apples and a bottle of milk. The shop was open until "
    "eight in the evening, and the people who worked there were friendly and helpful.\n"
    "History tells us that great cities grew along rivers, where water and trade brought people together. "
    "Their names are still known, and their stories are told in many books.\n"
    "Please write your name and address on the form, then sign it at the bottom of the page. If you have "
    "any questions, ask the person at the desk, who will be happy to help you.\n"
    "Music and art have been part of human life for thousands of years. People sing, dance and paint to "
    "share what they feel, and to remember what they have seen and heard.\n"
    "The train leaves the station at seven and arrives in the city before nine. Passengers should have "
    "their tickets ready, and keep their bags close to them during the journey.\n"
    "Good morning! Thank you for coming. Today we will talk about how machines learn from examples, why "
    "they sometimes make mistakes, and what we can do to make them better.\n"
    "The garden was full of flowers: red roses, yellow tulips and white lilies. Birds were singing in the "
    "trees, and a small cat was sleeping in the shade of the wall.\n"
    "Science begins with a question. We make an observation, form an idea that could explain it, and test "
    "that idea with an experiment. If the result agrees, we keep the idea; if not, we change it.\n"
    "The library is a quiet place where anyone can read, study and learn. It holds books, newspapers and "
    "maps, and the staff can help you find what you are looking for.\n";

/* Byte b as its character of GPT-2's byte-level alphabet (model/bytes_unicode.h), UTF-8, NUL-terminated. */
static void byte_char(int b, char *out)
{
    const uint32_t cp = q35_byte_to_char((uint8_t)b);
    if (cp < 0x80) { out[0] = (char)cp; out[1] = 0; }
    else { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); out[2] = 0; }
}

/* The vocabulary lists the bytes in the alphabet's list order: the bytes
 * that stand for themselves first, then the others (as Qwen's vocabulary). */
static int byte_is_printable(int b) { return q35_byte_to_char((uint8_t)b) == (uint32_t)b; }

typedef struct {
    char **str;    /* [n] byte-level strings of the tokens */
    int n, cap;
    int (*merge)[2]; /* [n_merges] */
    int n_merges;
} bpe;

typedef struct {
    int *sym; /* current symbols of one distinct word */
    int len, count;
} word;

static int token_exists(const bpe *t, const char *s)
{
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->str[i], s)) return 1;
    return 0;
}

/* The corpus cut into words for training: a space and letters, one digit, a
 * space and punctuation, newlines, spaces (close enough to the split
 * pattern for English; the file's pattern is what encoding uses). */
static int next_word(const char *s, int at, int n)
{
    int i = at;
    const char c = s[i];
#define IS_ALPHA(x) (((x) >= 'a' && (x) <= 'z') || ((x) >= 'A' && (x) <= 'Z'))
    if (c == ' ' && i + 1 < n && s[i + 1] != ' ' && s[i + 1] != '\n') i++;
    if (IS_ALPHA(s[i])) { while (i < n && IS_ALPHA(s[i])) i++; return i; }
    if (s[i] >= '0' && s[i] <= '9') return i + 1;
    if (s[i] == '\n' || s[i] == ' ') { const char w = s[i]; while (i < n && s[i] == w) i++; return i; }
    while (i < n && !IS_ALPHA(s[i]) && s[i] != ' ' && s[i] != '\n' && !(s[i] >= '0' && s[i] <= '9')) i++;
    return i;
#undef IS_ALPHA
}

static int learn(bpe *t, int n_merges)
{
    const int n = (int)strlen(corpus);
    word *w = calloc((size_t)n, sizeof *w);
    int nw = 0, rc = -1;
    if (!w) return -1;
    for (int at = 0; at < n;) {
        const int end = next_word(corpus, at, n), len = end - at;
        int k = 0;
        for (; k < nw; k++) {
            if (w[k].count && w[k].len == len) {
                int same = 1;
                for (int j = 0; j < len && same; j++) same = w[k].sym[j] == (unsigned char)corpus[at + j];
                if (same) break;
            }
        }
        if (k == nw) {
            if (!(w[nw].sym = malloc((size_t)len * sizeof(int)))) goto out;
            for (int j = 0; j < len; j++) w[nw].sym[j] = (unsigned char)corpus[at + j];
            w[nw].len = len;
            nw++;
        }
        w[k].count++;
        at = end;
    }
    /* symbols are byte values 0..255 here; token ids after the byte block too */
    const int V0 = t->n;
    int *cnt = malloc((size_t)(V0 + n_merges) * (V0 + n_merges) * sizeof *cnt);
    if (!cnt) goto out;
    while (t->n_merges < n_merges) {
        const int nt = t->n;
        memset(cnt, 0, (size_t)nt * nt * sizeof *cnt);
        for (int k = 0; k < nw; k++)
            for (int j = 0; j + 1 < w[k].len; j++) cnt[w[k].sym[j] * nt + w[k].sym[j + 1]] += w[k].count;
        int best = -1;
        for (;;) {
            best = -1;
            for (int p = 0; p < nt * nt; p++)
                if (cnt[p] > 0 && (best < 0 || cnt[p] > cnt[best])) best = p;
            if (best < 0) break;
            const int a = best / nt, b = best % nt;
            char buf[256];
            const size_t la = strlen(t->str[a]), lb = strlen(t->str[b]);
            if (la + lb >= sizeof buf) { cnt[best] = 0; continue; }
            memcpy(buf, t->str[a], la);
            memcpy(buf + la, t->str[b], lb + 1);
            if (token_exists(t, buf)) { cnt[best] = 0; continue; }
            if (!(t->str[t->n] = strdup(buf))) { free(cnt); goto out; }
            break;
        }
        if (best < 0) break; /* the text has no pair left */
        const int a = best / nt, b = best % nt, id = t->n++;
        t->merge[t->n_merges][0] = a;
        t->merge[t->n_merges][1] = b;
        t->n_merges++;
        for (int k = 0; k < nw; k++) {
            int o = 0;
            for (int j = 0; j < w[k].len; j++) {
                if (j + 1 < w[k].len && w[k].sym[j] == a && w[k].sym[j + 1] == b) { w[k].sym[o++] = id; j++; }
                else w[k].sym[o++] = w[k].sym[j];
            }
            w[k].len = o;
        }
    }
    free(cnt);
    rc = 0;
out:
    for (int k = 0; k < nw; k++) free(w[k].sym);
    free(w);
    return rc;
}

static cJSON *level(const char *type)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "type", type);
    cJSON_AddBoolToObject(o, "add_prefix_space", 0);
    cJSON_AddBoolToObject(o, "trim_offsets", 0);
    cJSON_AddBoolToObject(o, "use_regex", 0);
    return o;
}

cJSON *q35_tiny_tokenizer_json(int V, char *err, size_t errlen)
{
    if (V < Q35_TINY_TOK_MIN_VOCAB || V > Q35_TINY_TOK_MAX_VOCAB) {
        q35_errmsg(err, errlen, "tokenizer.json: vocabulary size %d outside [%d, %d] for the built-in tokenizer", V,
                   Q35_TINY_TOK_MIN_VOCAB, Q35_TINY_TOK_MAX_VOCAB);
        return NULL;
    }
    const int n_merges = V - 256 - 3;
    bpe t = {0};
    cJSON *root = NULL;
    t.str = calloc((size_t)V, sizeof *t.str);
    t.merge = calloc((size_t)n_merges, sizeof *t.merge);
    if (!t.str || !t.merge) goto oom;
    /* learning works on byte values (symbol b < 256 is byte b); the
     * vocabulary lists the bytes in the mapping's order (printable first) */
    int list_id[256];
    for (int pass = 0, id = 0; pass < 2; pass++)
        for (int b = 0; b < 256; b++)
            if (byte_is_printable(b) == !pass) list_id[b] = id++;
    for (int b = 0; b < 256; b++) {
        char c[4];
        byte_char(b, c);
        if (!(t.str[t.n++] = strdup(c))) goto oom;
    }
    if (learn(&t, n_merges)) goto oom;
    {
        char *by_value[256];
        memcpy(by_value, t.str, sizeof by_value);
        for (int b = 0; b < 256; b++) t.str[list_id[b]] = by_value[b];
        for (int k = 0; k < t.n_merges; k++)
            for (int s = 0; s < 2; s++)
                if (t.merge[k][s] < 256) t.merge[k][s] = list_id[t.merge[k][s]];
    }
    if (t.n_merges < n_merges) {
        q35_errmsg(err, errlen, "tokenizer.json: the built-in text gives %d merges, %d needed for vocabulary %d",
                   t.n_merges, n_merges, V);
        goto fail;
    }

    root = cJSON_CreateObject();
    if (!root) goto oom;
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    static const char *const special[3] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    for (int i = 0; added && i < 3; i++) {
        cJSON *a = cJSON_CreateObject();
        if (!a) goto oom;
        cJSON_AddItemToArray(added, a);
        cJSON_AddNumberToObject(a, "id", V - 3 + i);
        cJSON_AddStringToObject(a, "content", special[i]);
        cJSON_AddBoolToObject(a, "single_word", 0);
        cJSON_AddBoolToObject(a, "lstrip", 0);
        cJSON_AddBoolToObject(a, "rstrip", 0);
        cJSON_AddBoolToObject(a, "normalized", 0);
        cJSON_AddBoolToObject(a, "special", 1);
    }
    cJSON *norm = cJSON_AddObjectToObject(root, "normalizer");
    if (norm) cJSON_AddStringToObject(norm, "type", "NFC");
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    if (pre) {
        cJSON_AddStringToObject(pre, "type", "Sequence");
        cJSON *list = cJSON_AddArrayToObject(pre, "pretokenizers");
        cJSON *split = cJSON_CreateObject();
        if (list && split) {
            cJSON_AddItemToArray(list, split);
            cJSON_AddStringToObject(split, "type", "Split");
            cJSON *pat = cJSON_AddObjectToObject(split, "pattern");
            if (pat) cJSON_AddStringToObject(pat, "Regex", q35_qwen35_split_regex);
            cJSON_AddStringToObject(split, "behavior", "Isolated");
            cJSON_AddBoolToObject(split, "invert", 0);
            cJSON *bl = level("ByteLevel");
            if (bl) cJSON_AddItemToArray(list, bl);
        } else {
            cJSON_Delete(split);
        }
    }
    cJSON *post = level("ByteLevel"), *dec = level("ByteLevel");
    if (post) cJSON_AddItemToObject(root, "post_processor", post);
    if (dec) cJSON_AddItemToObject(root, "decoder", dec);
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    if (!model) goto oom;
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddStringToObject(model, "continuing_subword_prefix", "");
    cJSON_AddStringToObject(model, "end_of_word_suffix", "");
    cJSON_AddBoolToObject(model, "fuse_unk", 0);
    cJSON_AddBoolToObject(model, "byte_fallback", 0);
    cJSON_AddBoolToObject(model, "ignore_merges", 0);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    if (!vocab || !merges) goto oom;
    for (int i = 0; i < t.n; i++) cJSON_AddNumberToObject(vocab, t.str[i], i);
    for (int k = 0; k < t.n_merges; k++) {
        const char *pair[2] = {t.str[t.merge[k][0]], t.str[t.merge[k][1]]};
        cJSON *m = cJSON_CreateStringArray(pair, 2);
        if (!m) goto oom;
        cJSON_AddItemToArray(merges, m);
    }
    /* any allocation cJSON_Add* failed above shows as a short document */
    if (cJSON_GetArraySize(vocab) != t.n || cJSON_GetArraySize(added) != 3 || !norm || !pre || !post || !dec)
        goto oom;
    for (int i = 0; i < t.n; i++) free(t.str[i]);
    free(t.str);
    free(t.merge);
    return root;
oom:
    q35_errmsg(err, errlen, "tokenizer.json: out of memory");
fail:
    cJSON_Delete(root);
    for (int i = 0; t.str && i < t.n; i++) free(t.str[i]);
    free(t.str);
    free(t.merge);
    return NULL;
}
