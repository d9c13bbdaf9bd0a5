/* Large buffers (weights, states, activations, bench inputs) in 2 MiB pages:
 * a decode step streams hundreds of MB, and 4 KiB pages would cost a TLB miss
 * every 4 KiB of it. */
#ifndef Q35_HUGE_PAGES_H
#define Q35_HUGE_PAGES_H

#include <stddef.h>

/* Anonymous mmap of bytes rounded up to 2 MiB, 2 MiB aligned, madvise(MADV_HUGEPAGE) so the
 * kernel backs it with transparent huge pages when /sys/kernel/mm/transparent_hugepage/enabled
 * is "always" or "madvise".  Memory is zero-filled and not yet touched (first touch decides
 * the NUMA node).  NULL on failure (or bytes == 0).  Free with the same byte count. */
void *q35_alloc_huge(size_t bytes);
void q35_free_huge(void *p, size_t bytes);

/* Bytes of the mapping (VMA) that contains p currently backed by huge pages (AnonHugePages in
 * /proc/self/smaps); 0 if none or unknown.  *mapping_bytes (if not NULL) gets the VMA's size,
 * which may span neighbouring allocations the kernel merged.  Call after first touch. */
size_t q35_huge_backed_bytes(const void *p, size_t *mapping_bytes);

/* The THP mode in brackets in /sys/kernel/mm/transparent_hugepage/enabled ("always",
 * "madvise", "never"), or "unavailable"; writes at most len bytes including the NUL. */
void q35_thp_mode(char *buf, size_t len);

#endif
