/* BPE on one pre-tokenized word, as HF tokenizers' models/bpe (model.rs
 * merge_word, word.rs merge_all) does it, and the word cache in front of it.
 *
 * The word starts as one symbol per byte (the byte-level alphabet maps each
 * byte to one character, so HF's characters are our bytes).  Every adjacent
 * pair with a merge goes into a min-heap ordered by (rank, position); the
 * top is merged unless it is stale; the merged symbol's new pairs with its
 * neighbours go in.  O(n log n) in the word's length.
 *
 * "Stale" is HF's exact test: the pair now at that position must merge into
 * the same id the heap entry says.  It is not the same as "the pair has not
 * changed": a vocabulary built from tiktoken ranks has several pairs that
 * merge into one token, and HF then merges the new pair with the old entry's
 * rank.  Copying the test keeps the ids equal in those cases too. */
#include "model/tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t id;
    int32_t prev, next; /* -1: none */
    int32_t alive;      /* HF's len == 0: merged into its left neighbour */
} symbol;

typedef struct {
    uint32_t rank, pos;
    int32_t new_id;
} heap_entry;

/* The word cache: words of at most CACHE_MAX_WORD bytes to their ids,
 * emptied when it holds CACHE_MAX_ENTRIES (text drifts; HF's cache stops
 * inserting instead: the ids are the same either way). */
enum { CACHE_SLOTS = 1 << 16, CACHE_MAX_ENTRIES = 1 << 15, CACHE_MAX_WORD = 64 };
typedef struct {
    uint64_t hash;
    uint32_t key_off, ids_off;
    uint16_t key_len, n_ids; /* key_len 0: empty slot (empty words are never looked up) */
} cache_slot;

struct q35_tok_scratch {
    symbol *sym;
    size_t sym_cap;
    heap_entry *heap;
    size_t heap_cap;
    cache_slot *slots;
    size_t n_entries;
    char *keys;
    size_t keys_len, keys_cap;
    int32_t *ids;
    size_t ids_len, ids_cap;
    pcre2_match_data *md;
    pcre2_jit_stack *jit_stack;
    pcre2_match_context *mctx;
};

q35_tok_scratch *q35_tok_scratch_new(const q35_tokenizer *t)
{
    q35_tok_scratch *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->slots = calloc(CACHE_SLOTS, sizeof *s->slots);
    s->md = pcre2_match_data_create_from_pattern(t->re, NULL);
    s->mctx = pcre2_match_context_create(NULL);
    if (!s->slots || !s->md || !s->mctx) {
        q35_tok_scratch_free(s);
        return NULL;
    }
    if (t->jit) {
        /* The default JIT stack (32 KiB, on the machine stack) is enough for
         * this pattern's alternatives; a larger one costs nothing until used
         * and keeps an unusual pattern from failing on long whitespace runs. */
        s->jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
        if (s->jit_stack) pcre2_jit_stack_assign(s->mctx, NULL, s->jit_stack);
    }
    return s;
}

void q35_tok_scratch_free(q35_tok_scratch *s)
{
    if (!s) return;
    free(s->sym);
    free(s->heap);
    free(s->slots);
    free(s->keys);
    free(s->ids);
    pcre2_match_data_free(s->md);
    pcre2_jit_stack_free(s->jit_stack);
    pcre2_match_context_free(s->mctx);
    free(s);
}

pcre2_match_data *q35_tok_scratch_match_data(q35_tok_scratch *s) { return s->md; }
pcre2_match_context *q35_tok_scratch_match_context(q35_tok_scratch *s) { return s->mctx; }

int q35_id_push(q35_id_buf *b, int32_t id)
{
    if (b->n == b->cap) {
        const size_t cap = b->cap ? b->cap * 2 : 256;
        int32_t *p = realloc(b->ids, cap * sizeof *p);
        if (!p) return -1;
        b->ids = p;
        b->cap = cap;
    }
    b->ids[b->n++] = id;
    return 0;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static int heap_less(const heap_entry *a, const heap_entry *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(heap_entry *h, size_t *n, heap_entry e)
{
    size_t i = (*n)++;
    while (i > 0) {
        const size_t parent = (i - 1) / 2;
        if (!heap_less(&e, &h[parent])) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = e;
}

static heap_entry heap_pop(heap_entry *h, size_t *n)
{
    const heap_entry top = h[0];
    const heap_entry last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static int merge_of(const q35_tokenizer *t, int32_t left, int32_t right, uint32_t *rank, int32_t *new_id)
{
    uint64_t v;
    if (!q35_u64_map_get(&t->merges, (uint64_t)(uint32_t)left << 32 | (uint32_t)right, &v)) return 0;
    *rank = (uint32_t)(v >> 32);
    *new_id = (int32_t)(uint32_t)v;
    return 1;
}

/* HF's merge_word and merge_all; the ids appended to out. */
static int merge_word(const q35_tokenizer *t, q35_tok_scratch *s, const char *w, size_t n, q35_id_buf *out)
{
    if (grow((void **)&s->sym, &s->sym_cap, n, sizeof *s->sym) ||
        grow((void **)&s->heap, &s->heap_cap, 2 * n + 1, sizeof *s->heap))
        return -1;
    symbol *sym = s->sym;
    size_t ns = 0;
    int32_t unk_pending = -1; /* an unknown run waiting to be added (HF's `unk`) */
    for (size_t i = 0; i < n; i++) {
        const int32_t id = t->byte_id[(uint8_t)w[i]];
        if (id >= 0) {
            if (unk_pending >= 0) sym[ns++].id = unk_pending, unk_pending = -1;
            sym[ns++].id = id;
        } else if (t->unk_id >= 0) {
            /* Unknown bytes become the unk token, consecutive ones fused when fuse_unk. */
            if (unk_pending >= 0 && !t->fuse_unk) sym[ns++].id = unk_pending;
            unk_pending = t->unk_id;
        }
        /* else: HF drops a character with no id when there is no unk token */
    }
    if (unk_pending >= 0) sym[ns++].id = unk_pending;
    for (size_t i = 0; i < ns; i++) {
        sym[i].prev = (int32_t)i - 1;
        sym[i].next = i + 1 < ns ? (int32_t)i + 1 : -1;
        sym[i].alive = 1;
    }
    heap_entry *heap = s->heap;
    size_t nh = 0;
    for (size_t i = 0; i + 1 < ns; i++) {
        uint32_t rank;
        int32_t new_id;
        if (merge_of(t, sym[i].id, sym[i + 1].id, &rank, &new_id))
            heap_push(heap, &nh, (heap_entry){rank, (uint32_t)i, new_id});
    }
    while (nh) {
        const heap_entry top = heap_pop(heap, &nh);
        symbol *cur = &sym[top.pos];
        if (!cur->alive || cur->next < 0) continue;
        symbol *right = &sym[cur->next];
        uint32_t rank;
        int32_t new_id;
        if (!merge_of(t, cur->id, right->id, &rank, &new_id) || new_id != top.new_id) continue; /* stale */
        cur->id = top.new_id;
        right->alive = 0;
        cur->next = right->next;
        if (right->next >= 0) sym[right->next].prev = (int32_t)top.pos;
        /* Each merge adds at most two entries and removes one symbol: 2n + 1 bounds the heap. */
        if (cur->prev >= 0 && merge_of(t, sym[cur->prev].id, cur->id, &rank, &new_id))
            heap_push(heap, &nh, (heap_entry){rank, (uint32_t)cur->prev, new_id});
        if (cur->next >= 0 && merge_of(t, cur->id, sym[cur->next].id, &rank, &new_id))
            heap_push(heap, &nh, (heap_entry){rank, top.pos, new_id});
    }
    for (size_t i = 0; i < ns; i++)
        if (sym[i].alive && q35_id_push(out, sym[i].id)) return -1;
    return 0;
}

static void cache_clear(q35_tok_scratch *s)
{
    memset(s->slots, 0, CACHE_SLOTS * sizeof *s->slots);
    s->n_entries = s->keys_len = s->ids_len = 0;
}

static void cache_put(q35_tok_scratch *s, uint64_t h, const char *w, size_t n, const int32_t *ids, size_t n_ids)
{
    if (n_ids > UINT16_MAX) return;
    if (s->n_entries >= CACHE_MAX_ENTRIES) cache_clear(s);
    if (grow((void **)&s->keys, &s->keys_cap, s->keys_len + n, 1) ||
        grow((void **)&s->ids, &s->ids_cap, s->ids_len + n_ids, sizeof *s->ids))
        return; /* no room: the word is simply not cached */
    size_t i = h & (CACHE_SLOTS - 1);
    while (s->slots[i].key_len) i = (i + 1) & (CACHE_SLOTS - 1);
    memcpy(s->keys + s->keys_len, w, n);
    memcpy(s->ids + s->ids_len, ids, n_ids * sizeof *ids);
    s->slots[i] = (cache_slot){h, (uint32_t)s->keys_len, (uint32_t)s->ids_len, (uint16_t)n, (uint16_t)n_ids};
    s->keys_len += n;
    s->ids_len += n_ids;
    s->n_entries++;
}

int q35_bpe_word(const q35_tokenizer *t, q35_tok_scratch *s, const char *w, size_t n, q35_id_buf *out)
{
    if (!n) return 0;
    if (n == 1 && t->byte_id[(uint8_t)w[0]] >= 0) return q35_id_push(out, t->byte_id[(uint8_t)w[0]]);
    /* The cache first: it is small and hot, the vocabulary's table is 12 MB
     * of cache misses.  Words found whole in the vocabulary are cached too. */
    const int cacheable = n <= CACHE_MAX_WORD;
    const uint64_t h = cacheable ? q35_bytes_hash(w, n) : 0;
    if (cacheable)
        for (size_t i = h & (CACHE_SLOTS - 1); s->slots[i].key_len; i = (i + 1) & (CACHE_SLOTS - 1)) {
            const cache_slot *c = &s->slots[i];
            if (c->hash == h && c->key_len == n && !memcmp(s->keys + c->key_off, w, n)) {
                for (size_t k = 0; k < c->n_ids; k++)
                    if (q35_id_push(out, s->ids[c->ids_off + k])) return -1;
                return 0;
            }
        }
    const size_t first = out->n;
    const int32_t whole = t->ignore_merges ? q35_bytes_map_get(&t->vocab, w, n) : -1;
    /* HF's ignore_merges: a word that is itself in the vocabulary is that token, whatever the merges say. */
    if (whole >= 0 ? q35_id_push(out, whole) : merge_word(t, s, w, n, out)) return -1;
    if (cacheable) cache_put(s, h, w, n, out->ids + first, out->n - first);
    return 0;
}
