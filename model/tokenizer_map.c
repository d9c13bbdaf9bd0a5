/* The tokenizer's hash tables (tokenizer_map.h). */
#include "model/tokenizer_map.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static size_t table_size(size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    return cap;
}

uint64_t q35_bytes_hash(const char *key, size_t len) { return XXH3_64bits(key, len); }

int q35_bytes_map_init(q35_bytes_map *m, size_t n)
{
    memset(m, 0, sizeof *m);
    const size_t cap = table_size(n);
    m->slots = malloc(cap * sizeof *m->slots);
    if (!m->slots) return -1;
    for (size_t i = 0; i < cap; i++) m->slots[i].val = -1;
    m->mask = cap - 1;
    return 0;
}

void q35_bytes_map_free(q35_bytes_map *m)
{
    free(m->slots);
    free(m->blob);
    memset(m, 0, sizeof *m);
}

int q35_bytes_map_put(q35_bytes_map *m, const char *key, size_t len, int32_t val)
{
    if (len > UINT32_MAX || m->n + 1 > (m->mask + 1) / 2) return -1;
    const uint64_t h = q35_bytes_hash(key, len);
    size_t i = h & m->mask;
    for (;; i = (i + 1) & m->mask) {
        struct q35_bytes_slot *s = &m->slots[i];
        if (s->val < 0) break;
        if (s->hash == h && s->len == len && !memcmp(m->blob + s->off, key, len)) {
            s->val = val;
            return 0;
        }
    }
    if (m->blob_len + len > m->blob_cap) {
        size_t cap = m->blob_cap ? m->blob_cap * 2 : 4096;
        while (cap < m->blob_len + len) cap *= 2;
        if (cap > UINT32_MAX) return -1;
        char *b = realloc(m->blob, cap);
        if (!b) return -1;
        m->blob = b;
        m->blob_cap = cap;
    }
    if (len) memcpy(m->blob + m->blob_len, key, len);
    m->slots[i] = (struct q35_bytes_slot){.hash = h, .off = (uint32_t)m->blob_len, .len = (uint32_t)len, .val = val};
    m->blob_len += len;
    m->n++;
    return 0;
}

int32_t q35_bytes_map_get(const q35_bytes_map *m, const char *key, size_t len)
{
    const uint64_t h = q35_bytes_hash(key, len);
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        const struct q35_bytes_slot *s = &m->slots[i];
        if (s->val < 0) return -1;
        if (s->hash == h && s->len == len && !memcmp(m->blob + s->off, key, len)) return s->val;
    }
}

int q35_u64_map_init(q35_u64_map *m, size_t n)
{
    const size_t cap = table_size(n);
    m->keys = malloc(cap * sizeof *m->keys);
    m->vals = malloc(cap * sizeof *m->vals);
    m->mask = cap - 1;
    m->n = 0;
    m->shift = 64;
    for (size_t c = cap; c > 1; c >>= 1) m->shift--;
    if (!m->keys || !m->vals) {
        q35_u64_map_free(m);
        return -1;
    }
    memset(m->keys, 0xff, cap * sizeof *m->keys);
    return 0;
}

void q35_u64_map_free(q35_u64_map *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

int q35_u64_map_put(q35_u64_map *m, uint64_t key, uint64_t val)
{
    if (key == UINT64_MAX || m->n + 1 > (m->mask + 1) / 2) return -1;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> m->shift);
    while (m->keys[i] != UINT64_MAX && m->keys[i] != key) i = (i + 1) & m->mask;
    if (m->keys[i] == UINT64_MAX) m->n++;
    m->keys[i] = key;
    m->vals[i] = val;
    return 0;
}
