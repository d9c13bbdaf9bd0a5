/* The interleaved-rows layout's moves (quant_r16.h): bytes only, no arithmetic. */
#include "kernels/quant/quant_r16.h"

#include <string.h>

/* Row i's share of one tile <-> one row-layout block. */
static void tile_to_block(const uint8_t *t, int q8, size_t i, uint8_t *blk)
{
    memcpy(blk, t + 2 * i, 2);
    const uint8_t *qs = t + 2 * Q35_R16;
    const int chunks = q8 ? 8 : 4;
    for (int v = 0; v < chunks; v++) memcpy(blk + 2 + 4 * v, qs + 64 * v + 4 * i, 4);
}

static void block_to_tile(const uint8_t *blk, int q8, size_t i, uint8_t *t)
{
    memcpy(t + 2 * i, blk, 2);
    uint8_t *qs = t + 2 * Q35_R16;
    const int chunks = q8 ? 8 : 4;
    for (int v = 0; v < chunks; v++) memcpy(qs + 64 * v + 4 * i, blk + 2 + 4 * v, 4);
}

void q35_r16_unpack_rows(const void *W, int q8, size_t ldw, size_t n0, int nr, size_t b0, size_t nblk, void *out,
                         size_t out_rowb)
{
    const size_t bb = q35_r16_block_bytes(q8);
    for (int r = 0; r < nr; r++) {
        const size_t n = n0 + (size_t)r;
        uint8_t *o = (uint8_t *)out + (size_t)r * out_rowb;
        for (size_t b = 0; b < nblk; b++) tile_to_block(q35_r16_tile(W, q8, ldw, n, b0 + b), q8, n % Q35_R16, o + b * bb);
    }
}

void q35_r16_pack(const void *src, int q8, size_t N, size_t ldw, void *dst)
{
    const size_t bb = q35_r16_block_bytes(q8), nbw = ldw / Q35_QBLOCK;
    for (size_t n = 0; n < N; n++)
        for (size_t b = 0; b < nbw; b++)
            block_to_tile((const uint8_t *)src + (n * nbw + b) * bb, q8, n % Q35_R16,
                          (uint8_t *)q35_r16_tile(dst, q8, ldw, n, b));
}
