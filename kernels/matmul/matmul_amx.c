/* AMX BF16 matmul (docs/matmul.md "AMX path"): C = (acc ? C : 0) + A W^T with A already
 * rounded to bf16 and bf16 W, on TDPBF16PS tiles (16 x 16 fp32 accumulators, 16 rows x 32 bf16
 * of A, 16 pairs of k x 16 columns of W in the VNNI layout).  Compiled with target attributes
 * only: the caller checks cpu_has(CPU_FEAT_AMX_BF16), which includes the kernel's grant of the
 * tile data state (arch_prctl, kernels/cpu_features.c).
 *
 * Blocking: W is packed 32 columns at a time (two B tiles per 32 k, zeros past N and K), and
 * every 32 rows of A (two A tiles) run the whole K against them into four accumulators, which
 * go to C through a 16 x 16 scratch (bounds and accumulate).  A is read in place by tile
 * loads, so it must be padded: rows up to M rounded up to 16 readable, lda a multiple of 32,
 * finite values in columns K .. K rounded up to 32 (they meet zeros of W).
 */
#include "kernels/matmul/matmul.h"
#include "kernels/matmul/matmul_internal.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed)) amx_tilecfg;

/* Tiles 0-3: accumulators; 4-5: A (16 rows x 64 bytes); 6-7: B (16 k pairs x 16 columns).
 * A static object: GCC 12 drops the stores to a local config before ldtilecfg (it does not see
 * the instruction read them), which then faults on an all-zero palette. */
static const amx_tilecfg amx_cfg = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

__attribute__((target("amx-tile"))) static void amx_config(void) { _tile_loadconfig(&amx_cfg); }

/* Packs columns n0 .. n0+31 of W (fewer at the edge: zeros) for every 32 k: per k step, two
 * tiles of 16 rows (k pairs) x 16 columns x 2 bf16, i.e. B[ks][t][r][c] = (W[n0+16t+c][32ks+2r],
 * W[n0+16t+c][32ks+2r+1]): a 16 x 16 transpose of 32-bit pairs, one gather per tile row for the
 * whole k steps, element by element for the last partial one. */
__attribute__((target("avx512f"))) static void pack_w32(int N, int K, const uint16_t *W, size_t ldw, int n0,
                                                         uint16_t *Bp, int ksteps)
{
    const int kfull = K / 32;
    for (int t = 0; t < 2; t++) {
        const int nb = n0 + 16 * t, cols = N - nb < 0 ? 0 : N - nb < 16 ? N - nb : 16;
        const __mmask16 live = (__mmask16)((1u << cols) - 1);
        /* byte offsets of the 16 rows; W rows may be odd elements apart (2-byte aligned) */
        const __m512i off = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                               _mm512_set1_epi32((int)(ldw * 2)));
        for (int ks = 0; ks < kfull; ks++) {
            uint16_t *b = Bp + ((size_t)ks * 2 + t) * 512;
            if (!cols) {
                memset(b, 0, 1024);
                continue;
            }
            const char *base = (const char *)(W + (size_t)nb * ldw + 32 * ks);
            for (int r = 0; r < 16; r++) {
                const __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, off, base + 4 * r, 1);
                _mm512_store_si512((void *)(b + 32 * r), v);
            }
        }
        for (int ks = kfull; ks < ksteps; ks++) { /* K % 32 tail */
            uint16_t *b = Bp + ((size_t)ks * 2 + t) * 512;
            for (int c = 0; c < 16; c++) {
                const uint16_t *w = c < cols ? W + (size_t)(nb + c) * ldw : NULL;
                for (int r = 0; r < 16; r++) {
                    const int k = 32 * ks + 2 * r;
                    b[32 * r + 2 * c] = w && k < K ? w[k] : 0;
                    b[32 * r + 2 * c + 1] = w && k + 1 < K ? w[k + 1] : 0;
                }
            }
        }
    }
}

static void store_tile(const float *acc, int rows, int cols, float *C, size_t ldc, int accumulate)
{
    for (int r = 0; r < rows; r++) {
        float *c = C + (size_t)r * ldc;
        const float *a = acc + 16 * r;
        if (accumulate)
            for (int j = 0; j < cols; j++) c[j] += a[j];
        else
            memcpy(c, a, sizeof(float) * (size_t)cols);
    }
}

__attribute__((target("amx-tile,amx-bf16"))) static void block_2x2(const uint16_t *A, size_t lda, const uint16_t *Bp,
                                                                   int ksteps, float acc[4][256])
{
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    const size_t sa = lda * 2;
    for (int ks = 0; ks < ksteps; ks++) {
        const uint16_t *a = A + (size_t)ks * 32, *b = Bp + (size_t)ks * 1024;
        _tile_loadd(4, a, sa);
        _tile_loadd(5, a + 16 * lda, sa);
        _tile_loadd(6, b, 64);
        _tile_loadd(7, b + 512, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, acc[0], 64);
    _tile_stored(1, acc[1], 64);
    _tile_stored(2, acc[2], 64);
    _tile_stored(3, acc[3], 64);
}

__attribute__((target("amx-tile,amx-bf16"))) static void block_1x2(const uint16_t *A, size_t lda, const uint16_t *Bp,
                                                                   int ksteps, float acc[4][256])
{
    _tile_zero(0);
    _tile_zero(1);
    for (int ks = 0; ks < ksteps; ks++) {
        const uint16_t *b = Bp + (size_t)ks * 1024;
        _tile_loadd(4, A + (size_t)ks * 32, lda * 2);
        _tile_loadd(6, b, 64);
        _tile_loadd(7, b + 512, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
    }
    _tile_stored(0, acc[0], 64);
    _tile_stored(1, acc[1], 64);
}

__attribute__((target("amx-tile"))) static void amx_release(void) { _tile_release(); }

int mm_amx_bf16(int M, int N, int K, const uint16_t *A, size_t lda, const uint16_t *W, size_t ldw, float *C,
                size_t ldc, int accumulate)
{
    const int ksteps = (K + 31) / 32;
    uint16_t *Bp = aligned_alloc(64, (size_t)ksteps * 2048);
    if (!Bp) return -1;
    float (*acc)[256] = aligned_alloc(64, 4 * 256 * sizeof(float));
    if (!acc) {
        free(Bp);
        return -1;
    }
    amx_config();
    for (int n0 = 0; n0 < N; n0 += 32) {
        pack_w32(N, K, W, ldw, n0, Bp, ksteps);
        const int nc0 = N - n0 < 16 ? N - n0 : 16, nc1 = N - n0 - 16 < 16 ? N - n0 - 16 : 16;
        int m0 = 0;
        for (; m0 + 16 < M; m0 += 32) {
            block_2x2(A + (size_t)m0 * lda, lda, Bp, ksteps, acc);
            const int r0 = 16, r1 = M - m0 - 16 < 16 ? M - m0 - 16 : 16;
            float *c = C + (size_t)m0 * ldc + n0;
            store_tile(acc[0], r0, nc0, c, ldc, accumulate);
            if (nc1 > 0) store_tile(acc[1], r0, nc1, c + 16, ldc, accumulate);
            store_tile(acc[2], r1, nc0, c + 16 * ldc, ldc, accumulate);
            if (nc1 > 0) store_tile(acc[3], r1, nc1, c + 16 * ldc + 16, ldc, accumulate);
        }
        if (m0 < M) { /* 1 .. 16 rows left */
            block_1x2(A + (size_t)m0 * lda, lda, Bp, ksteps, acc);
            const int r0 = M - m0;
            float *c = C + (size_t)m0 * ldc + n0;
            store_tile(acc[0], r0, nc0, c, ldc, accumulate);
            if (nc1 > 0) store_tile(acc[1], r0, nc1, c + 16, ldc, accumulate);
        }
    }
    amx_release();
    free(acc);
    free(Bp);
    return 0;
}

#else
int mm_amx_bf16(int M, int N, int K, const uint16_t *A, size_t lda, const uint16_t *W, size_t ldw, float *C,
                size_t ldc, int accumulate)
{
    (void)M, (void)N, (void)K, (void)A, (void)lda, (void)W, (void)ldw, (void)C, (void)ldc, (void)accumulate;
    return -1;
}
#endif
