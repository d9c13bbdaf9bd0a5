/* tokenizer_map.h - the two hash tables the tokenizer looks up per byte of
 * text: byte strings to ids (the vocabulary, the word cache's keys) and
 * 64-bit keys to 64-bit values (the merge ranks: a pair of ids to its rank
 * and the id it merges into).  Open addressing with linear probing, built
 * once at load and read many times; docs/tokenizer.md says why not a
 * library's table. */
#ifndef Q35LAB_MODEL_TOKENIZER_MAP_H
#define Q35LAB_MODEL_TOKENIZER_MAP_H

#include <stddef.h>
#include <stdint.h>

/* Byte strings (copied into the table's own blob) to int32 values. */
typedef struct {
    struct q35_bytes_slot {
        uint64_t hash;
        uint32_t off, len;
        int32_t val; /* -1: empty slot */
    } *slots;
    size_t mask, n;
    char *blob;
    size_t blob_len, blob_cap;
} q35_bytes_map;

/* Capacity for at least n entries at load factor <= 1/2.  0 or -1 (out of memory). */
int q35_bytes_map_init(q35_bytes_map *m, size_t n);
void q35_bytes_map_free(q35_bytes_map *m);
/* Inserts or overwrites.  0, or -1 when out of memory or the table is full. */
int q35_bytes_map_put(q35_bytes_map *m, const char *key, size_t len, int32_t val);
/* The value, or -1. */
int32_t q35_bytes_map_get(const q35_bytes_map *m, const char *key, size_t len);

/* uint64 keys (all-ones is reserved: ids are < 2^31) to uint64 values. */
typedef struct {
    uint64_t *keys, *vals;
    size_t mask, n;
    unsigned shift; /* 64 - log2(table size): the slot is the product's top bits */
} q35_u64_map;

int q35_u64_map_init(q35_u64_map *m, size_t n);
void q35_u64_map_free(q35_u64_map *m);
int q35_u64_map_put(q35_u64_map *m, uint64_t key, uint64_t val);
/* 1 and *val, or 0. */
static inline int q35_u64_map_get(const q35_u64_map *m, uint64_t key, uint64_t *val)
{
    /* Fibonacci hashing: the pairs of small ids spread over the whole table. */
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> m->shift);
    for (;;) {
        const uint64_t k = m->keys[i];
        if (k == key) {
            *val = m->vals[i];
            return 1;
        }
        if (k == UINT64_MAX) return 0;
        i = (i + 1) & m->mask;
    }
}

/* The hash the byte-string table uses (XXH3). */
uint64_t q35_bytes_hash(const char *key, size_t len);

#endif
