/* Memory in transparent huge pages (huge_pages.h). */
#include "common/huge_pages.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define HUGE_2M ((size_t)2 << 20)

static size_t round_2m(size_t bytes) { return (bytes + HUGE_2M - 1) & ~(HUGE_2M - 1); }

void *q35_alloc_huge(size_t bytes)
{
    if (!bytes || bytes > SIZE_MAX - 2 * HUGE_2M) return NULL;
    size_t len = round_2m(bytes);
    /* Over-allocate by 2 MiB, then unmap the unaligned head and the tail. */
    size_t span = len + HUGE_2M;
    char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    uintptr_t a = ((uintptr_t)raw + HUGE_2M - 1) & ~(uintptr_t)(HUGE_2M - 1);
    char *p = (char *)a;
    size_t head = (size_t)(p - raw), tail = span - head - len;
    if (head) munmap(raw, head);
    if (tail) munmap(p + len, tail);
#ifdef MADV_HUGEPAGE
    madvise(p, len, MADV_HUGEPAGE); /* advisory: without THP the memory is still usable */
#endif
    return p;
}

void q35_free_huge(void *p, size_t bytes)
{
    if (p && bytes) munmap(p, round_2m(bytes));
}

size_t q35_huge_backed_bytes(const void *p, size_t *mapping_bytes)
{
    if (mapping_bytes) *mapping_bytes = 0;
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return 0;
    char line[512];
    int inside = 0;
    size_t kb = 0;
    uintptr_t addr = (uintptr_t)p;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char dash;
        if (sscanf(line, "%lx%c%lx ", &lo, &dash, &hi) == 3 && dash == '-') {
            if (inside) break; /* past our mapping */
            inside = addr >= lo && addr < hi;
            if (inside && mapping_bytes) *mapping_bytes = (size_t)(hi - lo);
            continue;
        }
        unsigned long v;
        if (inside && sscanf(line, "AnonHugePages: %lu kB", &v) == 1) {
            kb = v;
            break;
        }
    }
    fclose(f);
    return kb * 1024;
}

void q35_thp_mode(char *buf, size_t len)
{
    if (!buf || !len) return;
    snprintf(buf, len, "unavailable");
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return;
    char line[256];
    if (fgets(line, sizeof line, f)) {
        char *o = strchr(line, '['), *c = o ? strchr(o, ']') : NULL;
        if (o && c) snprintf(buf, len, "%.*s", (int)(c - o - 1), o + 1);
    }
    fclose(f);
}
