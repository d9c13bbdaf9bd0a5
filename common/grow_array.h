/* A growing array: the one helper behind the safetensors writer's tensor and metadata lists
 * and model init's tensor plan. */
#ifndef Q35_GROW_ARRAY_H
#define Q35_GROW_ARRAY_H

#include <stddef.h>
#include <stdlib.h>

/* Grows *arr (elements of size sz, capacity *cap) so that index n fits, doubling from 8.
 * 0, or -1 with *arr and *cap unchanged when realloc fails. */
static inline int q35_grow_array(void **arr, int *cap, int n, size_t sz)
{
    if (n < *cap) return 0;
    int nc = *cap ? *cap * 2 : 8;
    while (nc <= n) nc *= 2;
    void *p = realloc(*arr, (size_t)nc * sz);
    if (!p) return -1;
    *arr = p;
    *cap = nc;
    return 0;
}

#endif
