/* Q8_0 and Q4_0 with 16 rows interleaved (docs/quantization.md §8, "Interleaved rows"): the same
 * blocks and bytes as ggml's row layout (kernels/quant/quant.h), reordered so that one vector load
 * holds the same four weights of 16 rows and one holds their 16 scales.
 *
 * A matrix of N rows (N % 16 == 0), nbw = ldw / 32 blocks a row:
 *   group g = rows 16g .. 16g+15; tile (g, b) = block b of the group's 16 rows, at byte
 *   (g * nbw + b) * tile bytes, tile bytes = 16 * block bytes (288 for Q4_0, 544 for Q8_0):
 *     bytes 0-31    the 16 fp16 scales, row i at 2i
 *     then chunks of 64 bytes, bytes 4i .. 4i+3 of chunk v from row i:
 *       Q8_0: 8 chunks, chunk v = q[4v .. 4v+3]                       (elements 4v .. 4v+3)
 *       Q4_0: 4 chunks, chunk v = qs[4v .. 4v+3]: low nibbles elements 4v .. 4v+3, high nibbles
 *             elements 16+4v .. 16+4v+3 (qs[j] holds elements j and j+16, as in the row layout)
 * So group g starts as many bytes in as 16g rows of the row layout take: a range of whole groups is
 * an interleaved matrix of its own; a range of whole blocks of columns is one only with the full
 * ldw, from a start moved by whole tiles (q35_w_offset in kernels/matmul/matmul.h).
 * Why: the integer dot of one row of activations against this layout broadcasts four activations
 * and multiplies them with 16 rows in one vpdpbusd, with the 16 rows' scales in one vcvtph2ps and the
 * 16 results in the lanes of one register, where the row layout needs a scalar scale route and a
 * horizontal sum per row (measured: §8).  llama.cpp repacks Q4_0 the same way for its CPU GEMV
 * (ggml-cpu's "repack" buffer type, 8 rows); 16 fills a 512-bit register. */
#ifndef Q35_QUANT_R16_H
#define Q35_QUANT_R16_H

#include "kernels/quant/quant.h"

#include <stddef.h>
#include <stdint.h>

#define Q35_R16 16 /* rows interleaved */

/* q8: 1 for Q8_0 blocks, 0 for Q4_0. */
static inline size_t q35_r16_block_bytes(int q8) { return q8 ? sizeof(q35_block_q8_0) : sizeof(q35_block_q4_0); }
static inline size_t q35_r16_tile_bytes(int q8) { return Q35_R16 * q35_r16_block_bytes(q8); }

/* The tile holding block b of row n (ldw elements a row, a multiple of 32). */
static inline const uint8_t *q35_r16_tile(const void *W, int q8, size_t ldw, size_t n, size_t b)
{
    return (const uint8_t *)W + ((n / Q35_R16) * (ldw / Q35_QBLOCK) + b) * q35_r16_tile_bytes(q8);
}

/* Element k of row n, exact (the value the row layout's q35_q8_0_at / q35_q4_0_at give). */
static inline float q35_r16_at(const void *W, int q8, size_t ldw, size_t n, size_t k)
{
    const uint8_t *t = q35_r16_tile(W, q8, ldw, n, k / Q35_QBLOCK);
    const size_t i = n % Q35_R16, j = k % Q35_QBLOCK;
    uint16_t h;
    memcpy(&h, t + 2 * i, 2);
    const uint8_t *qs = t + 2 * Q35_R16;
    if (q8) return q35_f16_to_f32(h) * (float)(int8_t)qs[64 * (j / 4) + 4 * i + j % 4];
    const size_t jj = j % 16;
    const uint8_t byte = qs[64 * (jj / 4) + 4 * i + jj % 4];
    return q35_f16_to_f32(h) * (float)((j < 16 ? byte & 15 : byte >> 4) - 8);
}

/* Blocks b0 .. b0+nblk-1 of rows n0 .. n0+nr-1 back to the row layout: row r's at out + r * out_rowb. */
void q35_r16_unpack_rows(const void *W, int q8, size_t ldw, size_t n0, int nr, size_t b0, size_t nblk, void *out,
                         size_t out_rowb);
/* N rows (N % 16 == 0) of the row layout, ldw elements apart, into the interleaved layout at dst
 * (the same size; dst must not overlap src). */
void q35_r16_pack(const void *src, int q8, size_t N, size_t ldw, void *dst);

#endif
