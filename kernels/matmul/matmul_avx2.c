/* AVX2 + FMA bodies of q35_matmul_xwt (docs/matmul.md).  Compiled with target
 * attributes, called only when cpu_isa() >= ISA_AVX2.
 *
 * DOT    P rows of A x R rows of W, P*R accumulators of 8 lanes along K, a horizontal
 *        sum per output at the end.  W is read in place, so for small M it streams W
 *        exactly once: the decode / GEMV kernel.  bf16 W is widened in registers, 16
 *        weights per load (even/odd split, see dot_tile_eo), exactly.
 * PACKED BLIS-style: a KC x NC block of W is packed transposed into 16-column panels
 *        (bf16 stays bf16 there and is widened in the micro-kernel), a MC x KC block
 *        of A into 6-row panels, and a 6 x 16 outer-product micro-kernel (12
 *        accumulators, 2 loads + 6 broadcasts per k) runs over them: the large-M kernel.
 * PACKA  the same outer product on C^T = W A^T: A is packed transposed into 16-row
 *        panels, W is broadcast straight from its rows (bf16: rows widened into a small
 *        buffer, no transposition), a 16 x 6 micro-kernel whose tile is transposed on the
 *        way out.  Not transposing W makes it the kernel for M = 16 ... 64.
 */
#include "kernels/matmul/matmul_internal.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define TGT __attribute__((target("avx2,fma")))
#define INL static inline __attribute__((always_inline)) TGT

static const int32_t tail_tab[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

/* First t lanes set, 0 <= t <= 8. */
INL __m256i tail_mask(int t) { return _mm256_loadu_si256((const __m256i *)(tail_tab + 8 - t)); }

/* 8 bf16 -> 8 fp32, exact: zero-extend each 16-bit value to 32 bits, shift it to the top. */
INL __m256 cvt8(const uint16_t *p)
{
    const __m128i h = _mm_loadu_si128((const __m128i *)p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* The first t (1..7) elements at off, zeros after; never reads past them. */
INL __m256 ldw_tail(const void *w, int bf, size_t off, int t, __m256i mask)
{
    if (bf) {
        uint16_t tmp[8] = {0};
        memcpy(tmp, (const uint16_t *)w + off, (size_t)t * 2);
        return cvt8(tmp);
    }
    return _mm256_maskload_ps((const float *)w + off, mask);
}

/* Four horizontal sums at once: lane i of the result is the sum of the 8 lanes of
 * argument i, as ((x0+x1)+(x2+x3)) + ((x4+x5)+(x6+x7)). */
INL __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d)
{
    const __m256 ab = _mm256_hadd_ps(a, b), cd = _mm256_hadd_ps(c, d);
    const __m256 abcd = _mm256_hadd_ps(ab, cd);
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

INL float hsum1(__m256 a)
{
    const __m256 z = _mm256_setzero_ps();
    return _mm_cvtss_f32(hsum4(a, z, z, z));
}

/* ------------------------------------------------------------------ */
/* DOT                                                                 */
/* ------------------------------------------------------------------ */

#define PMAX 3
#define RMAX 8

/* C[p][r * cs] = (acc ? C[p][r * cs] : 0) + (sum of the 8 lanes of s[p][r]). */
INL void dot_store(const int P, const int R, __m256 s[PMAX][RMAX], float *C, size_t ldc, size_t cs, int acc)
{
#pragma GCC unroll 4
    for (int p = 0; p < P; p++) {
        float *c = C + p * ldc;
        int r = 0;
#pragma GCC unroll 2
        for (; r + 4 <= R; r += 4) {
            __m128 v = hsum4(s[p][r], s[p][r + 1], s[p][r + 2], s[p][r + 3]);
            if (cs == 1) {
                if (acc) v = _mm_add_ps(_mm_loadu_ps(c + r), v);
                _mm_storeu_ps(c + r, v);
            } else {
                float t[4];
                _mm_storeu_ps(t, v);
                for (int i = 0; i < 4; i++) c[(r + i) * cs] = acc ? c[(r + i) * cs] + t[i] : t[i];
            }
        }
#pragma GCC unroll 4
        for (; r < R; r++) {
            const float v = hsum1(s[p][r]);
            c[r * cs] = acc ? c[r * cs] + v : v;
        }
    }
}

/* fp32 W: C[p][r] = (acc ? C[p][r] : 0) + sum_k A[p][k] W[r][k],  p < P, r < R. */
INL void dot_tile(const int P, const int R, int K, const float *A, size_t lda, const float *W, size_t ldw,
                  float *C, size_t ldc, size_t cs, int acc)
{
    __m256 s[PMAX][RMAX];
#pragma GCC unroll 4
    for (int p = 0; p < P; p++)
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) s[p][r] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 a[PMAX];
#pragma GCC unroll 4
        for (int p = 0; p < P; p++) a[p] = _mm256_loadu_ps(A + p * lda + k);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const __m256 w = _mm256_loadu_ps(W + r * ldw + k);
#pragma GCC unroll 4
            for (int p = 0; p < P; p++) s[p][r] = _mm256_fmadd_ps(a[p], w, s[p][r]);
        }
    }
    if (k < K) {
        const int t = K - k;
        const __m256i mask = tail_mask(t);
        __m256 a[PMAX];
#pragma GCC unroll 4
        for (int p = 0; p < P; p++) a[p] = _mm256_maskload_ps(A + p * lda + k, mask);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const __m256 w = _mm256_maskload_ps(W + r * ldw + k, mask);
#pragma GCC unroll 4
            for (int p = 0; p < P; p++) s[p][r] = _mm256_fmadd_ps(a[p], w, s[p][r]);
        }
    }
    dot_store(P, R, s, C, ldc, cs, acc);
}

/* bf16 W in registers, 16 elements per load: a 32-bit lane j of 16 loaded bf16 holds elements
 * 2j (low half) and 2j+1 (high half), so (lane << 16) is element 2j and (lane & 0xFFFF0000)
 * element 2j+1, both exact fp32: two cheap ALU ops per 16 weights instead of a lane-crossing
 * widen and a shift per 8.  A is permuted to match (perm_eo): per full block of 16,
 * a[0], a[2], ..., a[14], a[1], a[3], ..., a[15]; the tail (K % 16) stays in natural order
 * and takes an 8-wide (cvt8) and a masked step.  The S2 tiles (R = 1) keep the odd products
 * in a second set of accumulators, so that two FMA chains per output hide the latency. */
INL void dot_tile_eo(const int P, const int R, const int S2, int K, const float *A, size_t lda,
                     const uint16_t *W, size_t ldw, float *C, size_t ldc, size_t cs, int acc)
{
    __m256 s[PMAX][RMAX], s2[PMAX][RMAX];
#pragma GCC unroll 4
    for (int p = 0; p < P; p++)
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) s[p][r] = s2[p][r] = _mm256_setzero_ps();
    const __m256i hi = _mm256_set1_epi32((int)0xFFFF0000u);
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m256 ae[PMAX], ao[PMAX];
#pragma GCC unroll 4
        for (int p = 0; p < P; p++) {
            ae[p] = _mm256_loadu_ps(A + p * lda + k);
            ao[p] = _mm256_loadu_ps(A + p * lda + k + 8);
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(W + r * ldw + k));
            __asm__("" : "+x"(v)); /* one load: GCC would fold it into both the shift and the and */
            const __m256 we = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
            const __m256 wo = _mm256_castsi256_ps(_mm256_and_si256(v, hi));
#pragma GCC unroll 4
            for (int p = 0; p < P; p++) {
                s[p][r] = _mm256_fmadd_ps(ae[p], we, s[p][r]);
                if (S2)
                    s2[p][r] = _mm256_fmadd_ps(ao[p], wo, s2[p][r]);
                else
                    s[p][r] = _mm256_fmadd_ps(ao[p], wo, s[p][r]);
            }
        }
    }
    for (; k < K; k += 8) {
        const int t = K - k < 8 ? K - k : 8;
        const __m256i mask = tail_mask(t);
        __m256 a[PMAX];
#pragma GCC unroll 4
        for (int p = 0; p < P; p++) a[p] = _mm256_maskload_ps(A + p * lda + k, mask);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const __m256 w = t == 8 ? cvt8(W + r * ldw + k) : ldw_tail(W, 1, r * ldw + k, t, mask);
#pragma GCC unroll 4
            for (int p = 0; p < P; p++) s[p][r] = _mm256_fmadd_ps(a[p], w, s[p][r]);
        }
    }
    if (S2)
#pragma GCC unroll 4
        for (int p = 0; p < P; p++)
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) s[p][r] = _mm256_add_ps(s[p][r], s2[p][r]);
    dot_store(P, R, s, C, ldc, cs, acc);
}

/* out = a with each full block of 16 permuted to evens then odds (see dot_tile_eo). */
static TGT void perm_eo(const float *a, int K, float *out)
{
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        const __m256 x0 = _mm256_loadu_ps(a + k), x1 = _mm256_loadu_ps(a + k + 8);
        /* per 128-bit half: a0 a2 a8 a10 | a4 a6 a12 a14, then the 64-bit pairs in order */
        const __m256 e = _mm256_shuffle_ps(x0, x1, 0x88), o = _mm256_shuffle_ps(x0, x1, 0xDD);
        _mm256_storeu_ps(out + k, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8)));
        _mm256_storeu_ps(out + k + 8, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xD8)));
    }
    for (; k < K; k++) out[k] = a[k];
}

/* Row r of W at W + r * ldw, its output column at C + r * cs. */
typedef void (*tile_fn)(int K, const float *A, size_t lda, const void *W, size_t ldw, float *C, size_t ldc,
                        size_t cs, int acc);

#define DEF_TILE(P, R)                                                                                   \
    static TGT void tile_##P##x##R(int K, const float *A, size_t lda, const void *W, size_t ldw, float *C, \
                                   size_t ldc, size_t cs, int acc)                                       \
    {                                                                                                    \
        dot_tile(P, R, K, A, lda, (const float *)W, ldw, C, ldc, cs, acc);                               \
    }
DEF_TILE(1, 1)
DEF_TILE(1, 8)
DEF_TILE(2, 1)
DEF_TILE(2, 4)
DEF_TILE(3, 1)
DEF_TILE(3, 4)

#define DEF_TILE_EO(P, R, S2)                                                                            \
    static TGT void tile_eo_##P##x##R(int K, const float *A, size_t lda, const void *W, size_t ldw,        \
                                      float *C, size_t ldc, size_t cs, int acc)                          \
    {                                                                                                    \
        dot_tile_eo(P, R, S2, K, A, lda, (const uint16_t *)W, ldw, C, ldc, cs, acc);                     \
    }
DEF_TILE_EO(1, 1, 1)
DEF_TILE_EO(1, 8, 0)
DEF_TILE_EO(2, 1, 1)
DEF_TILE_EO(2, 4, 0)

/* Per P (rows of A at once): R (rows of W at once), the P x R tile and the P x 1 tile for
 * the rest of a W block. */
typedef struct {
    int R;
    tile_fn main, one;
} tile_set;
static const tile_set tiles_f32[PMAX + 1] = {
    {0, 0, 0}, {8, tile_1x8, tile_1x1}, {4, tile_2x4, tile_2x1}, {4, tile_3x4, tile_3x1}};
static const tile_set tiles_eo[3] = {{0, 0, 0}, {8, tile_eo_1x8, tile_eo_1x1}, {4, tile_eo_2x4, tile_eo_2x1}};

#define DOT_PMAIN 3                  /* fp32 W: rows of A per tile (3 x 4 tiles) */
#define DOT_PMAIN_EO 2               /* bf16 W: rows of A per tile (2 x 4 tiles) */
#define DOT_KB 2048                  /* K per pass: P rows of A (3 x 8 KiB) stay in L1 */
#define DOT_BLOCK_BYTES (256 * 1024) /* W rows per block: the block stays in L2 across the rows of A */

int mm_avx2_dot(int M, int N, int K, const float *A, size_t lda, const void *W, q35_wtype wt, size_t ldw,
                float *C, size_t ldc, int acc)
{
    const int bf = wt == WT_BF16;
    const size_t wsz = bf ? 2 : 4; /* fp32 or bf16 only: quantized W never reaches this body */
    const int KB = K < DOT_KB ? K : DOT_KB;
    float aperm[bf ? DOT_PMAIN_EO * DOT_KB : 1]; /* bf16: the rows of A in even/odd order (16 KiB) */
    const tile_set *ts = bf ? tiles_eo : tiles_f32;
    const int P = bf ? DOT_PMAIN_EO : DOT_PMAIN, pmain = M < P ? M : P;
    /* W rows per block: the block fills DOT_BLOCK_BYTES */
    int NB = (int)(DOT_BLOCK_BYTES / ((size_t)KB * wsz)) / RMAX * RMAX;
    if (NB < RMAX) NB = RMAX;
    if (NB > N) NB = N;
    for (int k0 = 0; k0 < K; k0 += KB) {
        const int kb = K - k0 < KB ? K - k0 : KB;
        const int a_acc = acc || k0 > 0;
        for (int n0 = 0; n0 < N; n0 += NB) {
            const int nb = N - n0 < NB ? N - n0 : NB;
            const char *Wb = (const char *)W + ((size_t)n0 * ldw + k0) * wsz;
            for (int m0 = 0; m0 < M; m0 += pmain) {
                const int p = M - m0 < pmain ? M - m0 : pmain;
                const int R = ts[p].R;
                const float *Am = A + m0 * lda + k0;
                size_t ldam = lda;
                if (bf) {
                    for (int i = 0; i < p; i++) perm_eo(Am + i * lda, kb, aperm + (size_t)i * kb);
                    Am = aperm;
                    ldam = kb;
                }
                float *Cm = C + m0 * ldc + n0;
                int n = 0;
                /* The block's rows as R segments of S rows; tile i takes row i of every segment, so
                 * each of its R row streams runs on through S consecutive rows instead of ending
                 * after one: the hardware prefetcher keeps up (docs/matmul.md: 2x on short rows). */
                const int S = nb / R;
                for (; n < S; n++) ts[p].main(kb, Am, ldam, Wb + n * ldw * wsz, (size_t)S * ldw, Cm + n, ldc, S, a_acc);
                n = S * R;
                for (; n < nb; n++) ts[p].one(kb, Am, ldam, Wb + n * ldw * wsz, ldw, Cm + n, ldc, 1, a_acc);
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* PACKED                                                              */
/* ------------------------------------------------------------------ */

#define MR 6
#define NR 16
/* KC = 512 rather than 256: a MoE expert's down projection (K = 512) then packs A once and
 * never reloads C, and test_matmul bench measured it 4-6% faster there (M = 64, W cold) and
 * no slower on 512x2048x1024 or 512x1024x3584; the whole bf16 MoE block at T = 512 and 2048
 * ran 7-15% faster in `bench moe`, interleaved runs. */
#ifndef PK_KC
#define PK_KC 512  /* B micro-panel 16 x KC fp32 = 32 KiB: L1 / L2 */
#endif
#ifndef PK_MC
#define PK_MC 96   /* A block MC x KC = 192 KiB: L2 */
#endif
#ifndef PK_NC
#define PK_NC 512  /* B block KC x NC = 1 MiB: L2 / L3 */
#endif

INL void transpose8(__m256 v[8])
{
    const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
    const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
    const __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
    const __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    v[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    v[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    v[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    v[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    v[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    v[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    v[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    v[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* Bp[j / 16][k][j % 16] = W[j][k] (fp32 W), j < nc (zero up to the next multiple of 16), k < kc.
 * W points at the block's first element.  (bf16 W: pack_b_bf16_kept.) */
static TGT void pack_b_f32(const float *W, size_t ldw, int nc, int kc, float *Bp)
{
    for (int j = 0; j < nc; j += NR) {
        float *bp = Bp + (size_t)j * kc;
        for (int h = 0; h < NR; h += 8) {
            int hr = nc - (j + h);
            hr = hr < 0 ? 0 : hr > 8 ? 8 : hr;
            const size_t r0 = (size_t)(j + h) * ldw;
            int k = 0;
            for (; k + 8 <= kc; k += 8) {
                __m256 v[8];
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++) v[i] = i < hr ? _mm256_loadu_ps(W + r0 + i * ldw + k) : _mm256_setzero_ps();
                transpose8(v);
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++) _mm256_store_ps(bp + (size_t)(k + i) * NR + h, v[i]);
            }
            for (; k < kc; k++)
                for (int i = 0; i < 8; i++) bp[(size_t)k * NR + h + i] = i < hr ? W[r0 + i * ldw + k] : 0.0f;
        }
    }
}

/* bf16 W packed without widening: Bh[j / 16][k][slot(j % 16)] = W[j][k] (bf16), zero-padded like
 * pack_b_impl.  The 16 weights of one k sit in the order rows 0-3, 8-11, 4-7, 12-15, so that
 * interleaving the 32-byte group with zeros (vpunpcklwd / vpunpckhwd, which work within each
 * 128-bit lane) yields rows 0-7 and rows 8-15 as fp32 in the micro-kernel: the widening costs
 * one shuffle per 8 weights there, and the pack moves 2 bytes per weight instead of 4. */
INL int slot16(int i) { return i < 4 || i >= 12 ? i : i < 8 ? i + 4 : i - 4; }

/* Rows 0-3 (and 4-7) of an 8-row group at each of 8 k: the first two stages of an 8 x 8
 * 16-bit transpose.  b[2q] holds k = 2q (low 64 bits) and 2q + 1 (high) for rows 0-3,
 * b[2q + 1] the same for rows 4-7. */
INL void transpose8x8_u16_half(const uint16_t *w, size_t ldw, __m128i b[8])
{
    __m128i x[8], a[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) x[i] = _mm_loadu_si128((const __m128i *)(w + i * ldw));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        a[2 * i] = _mm_unpacklo_epi16(x[2 * i], x[2 * i + 1]);     /* k 0-3, rows 2i, 2i+1 */
        a[2 * i + 1] = _mm_unpackhi_epi16(x[2 * i], x[2 * i + 1]); /* k 4-7 */
    }
    /* rows 0-3: a0 a2 (k 0-3), a1 a3 (k 4-7); rows 4-7: a4 a6, a5 a7 */
    b[0] = _mm_unpacklo_epi32(a[0], a[2]); /* k0 | k1, rows 0-3 */
    b[2] = _mm_unpackhi_epi32(a[0], a[2]); /* k2 | k3 */
    b[4] = _mm_unpacklo_epi32(a[1], a[3]); /* k4 | k5 */
    b[6] = _mm_unpackhi_epi32(a[1], a[3]); /* k6 | k7 */
    b[1] = _mm_unpacklo_epi32(a[4], a[6]);
    b[3] = _mm_unpackhi_epi32(a[4], a[6]);
    b[5] = _mm_unpacklo_epi32(a[5], a[7]);
    b[7] = _mm_unpackhi_epi32(a[5], a[7]);
}

static TGT void pack_b_bf16_kept(const uint16_t *W, size_t ldw, int nc, int kc, uint16_t *Bh)
{
    for (int j = 0; j < nc; j += NR) {
        uint16_t *bp = Bh + (size_t)j * kc;
        int k = 0;
        if (nc - j >= NR)
            for (; k + 8 <= kc; k += 8) {
                __m128i lo[8], hi[8]; /* rows 0-7 and 8-15 */
                transpose8x8_u16_half(W + (size_t)j * ldw + k, ldw, lo);
                transpose8x8_u16_half(W + (size_t)(j + 8) * ldw + k, ldw, hi);
#pragma GCC unroll 4
                for (int q = 0; q < 4; q++) {
                    /* k = k + 2q: rows 0-3, 8-11 | 4-7, 12-15; k + 2q + 1 from the high halves */
                    uint16_t *o = bp + (size_t)(k + 2 * q) * NR;
                    _mm_store_si128((__m128i *)o, _mm_unpacklo_epi64(lo[2 * q], hi[2 * q]));
                    _mm_store_si128((__m128i *)(o + 8), _mm_unpacklo_epi64(lo[2 * q + 1], hi[2 * q + 1]));
                    _mm_store_si128((__m128i *)(o + NR), _mm_unpackhi_epi64(lo[2 * q], hi[2 * q]));
                    _mm_store_si128((__m128i *)(o + NR + 8), _mm_unpackhi_epi64(lo[2 * q + 1], hi[2 * q + 1]));
                }
            }
        for (; k < kc; k++) /* a partial panel or a k tail */
            for (int i = 0; i < NR; i++)
                bp[(size_t)k * NR + slot16(i)] = j + i < nc ? W[(size_t)(j + i) * ldw + k] : 0;
    }
}

/* Ap[i / 6][k][i % 6] = A[i][k], i < mc (zero up to the next multiple of 6), k < kc. */
static void pack_a(const float *A, size_t lda, int mc, int kc, float *Ap)
{
    for (int i = 0; i < mc; i += MR) {
        float *ap = Ap + (size_t)i * kc;
        const int rows = mc - i < MR ? mc - i : MR;
        if (rows == MR) {
            const float *a0 = A + i * lda;
            for (int k = 0; k < kc; k++)
                for (int r = 0; r < MR; r++) ap[k * MR + r] = a0[r * lda + k];
        } else {
            for (int k = 0; k < kc; k++)
                for (int r = 0; r < MR; r++) ap[k * MR + r] = r < rows ? A[(i + r) * lda + k] : 0.0f;
        }
    }
}

/* Row r of a finished tile: C[r][0:nr] = (load ? C : 0) + (x0, x1). */
INL void store_row(float *cr, __m256 x0, __m256 x1, int nr, int load, __m256i m0, __m256i m1)
{
    if (nr == NR) {
        if (load) {
            x0 = _mm256_add_ps(_mm256_loadu_ps(cr), x0);
            x1 = _mm256_add_ps(_mm256_loadu_ps(cr + 8), x1);
        }
        _mm256_storeu_ps(cr, x0);
        _mm256_storeu_ps(cr + 8, x1);
    } else {
        if (load) {
            x0 = _mm256_add_ps(_mm256_maskload_ps(cr, m0), x0);
            x1 = _mm256_add_ps(_mm256_maskload_ps(cr + 8, m1), x1);
        }
        _mm256_maskstore_ps(cr, m0, x0);
        _mm256_maskstore_ps(cr + 8, m1, x1);
    }
}

/* C[0:mr, 0:nr] = (load ? C : 0) + Ap^T Bp over kc (Ap: kc x 6, Bp: kc x 16, fp32 or bf16 kept
 * as packed by pack_b_bf16_kept).  The 12 accumulators are named variables: as an array GCC
 * kept a copy of them on the stack. */
INL void ukr_6x16_body(const int bf, int kc, const float *Ap, const void *Bv, float *C, size_t ldc, int mr, int nr,
                       int load)
{
    const float *Bp = Bv;
    const uint16_t *Bh = Bv;
    const __m256i zero = _mm256_setzero_si256();
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
#define UKR_ROW(r)                                              \
    do {                                                        \
        const __m256 a = _mm256_broadcast_ss(Ap + r);           \
        c##r##0 = _mm256_fmadd_ps(a, b0, c##r##0);              \
        c##r##1 = _mm256_fmadd_ps(a, b1, c##r##1);              \
    } while (0)
#pragma GCC unroll 4
    for (int k = 0; k < kc; k++) {
        __m256 b0, b1;
        if (bf) { /* rows 0-7 and 8-15, exact (see pack_b_bf16_kept) */
            const __m256i h = _mm256_load_si256((const __m256i *)Bh);
            b0 = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, h));
            b1 = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, h));
            Bh += NR;
        } else {
            b0 = _mm256_load_ps(Bp);
            b1 = _mm256_load_ps(Bp + 8);
            Bp += NR;
        }
        UKR_ROW(0);
        UKR_ROW(1);
        UKR_ROW(2);
        UKR_ROW(3);
        UKR_ROW(4);
        UKR_ROW(5);
        Ap += MR;
    }
#undef UKR_ROW
    const __m256i m0 = tail_mask(nr < 8 ? nr : 8), m1 = tail_mask(nr > 8 ? nr - 8 : 0);
    store_row(C, c00, c01, nr, load, m0, m1);
    if (mr > 1) store_row(C + ldc, c10, c11, nr, load, m0, m1);
    if (mr > 2) store_row(C + 2 * ldc, c20, c21, nr, load, m0, m1);
    if (mr > 3) store_row(C + 3 * ldc, c30, c31, nr, load, m0, m1);
    if (mr > 4) store_row(C + 4 * ldc, c40, c41, nr, load, m0, m1);
    if (mr > 5) store_row(C + 5 * ldc, c50, c51, nr, load, m0, m1);
}
static TGT void ukr_6x16(int kc, const float *Ap, const float *Bp, float *C, size_t ldc, int mr, int nr, int load)
{
    ukr_6x16_body(0, kc, Ap, Bp, C, ldc, mr, nr, load);
}
static TGT void ukr_6x16_bf16(int kc, const float *Ap, const uint16_t *Bh, float *C, size_t ldc, int mr, int nr,
                              int load)
{
    ukr_6x16_body(1, kc, Ap, Bh, C, ldc, mr, nr, load);
}

static size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

int mm_avx2_packed(int M, int N, int K, const float *A, size_t lda, const void *W, q35_wtype wt,
                   size_t ldw, float *C, size_t ldc, int acc)
{
    const int bf = wt == WT_BF16;
    const size_t wsz = bf ? 2 : 4; /* fp32 or bf16 only: quantized W never reaches this body */
    const int KC = K < PK_KC ? K : PK_KC;
    const int MC = M < PK_MC ? M : PK_MC;
    const int NC = N < PK_NC ? N : PK_NC;
    const size_t bbytes = round_up((size_t)NC, NR) * KC * (bf ? sizeof(uint16_t) : sizeof(float));
    const size_t abytes = round_up((size_t)MC, MR) * KC * sizeof(float);
    float *Bp = aligned_alloc(64, round_up(bbytes, 64));
    float *Ap = aligned_alloc(64, round_up(abytes, 64));
    if (!Bp || !Ap) {
        free(Bp);
        free(Ap);
        return -1;
    }
    for (int jc = 0; jc < N; jc += NC) {
        const int nc = N - jc < NC ? N - jc : NC;
        for (int pc = 0; pc < K; pc += KC) {
            const int kc = K - pc < KC ? K - pc : KC;
            const int load = acc || pc > 0;
            const void *Wb = (const char *)W + ((size_t)jc * ldw + pc) * wsz;
            if (bf)
                pack_b_bf16_kept(Wb, ldw, nc, kc, (uint16_t *)Bp);
            else
                pack_b_f32((const float *)Wb, ldw, nc, kc, Bp);
            for (int ic = 0; ic < M; ic += MC) {
                const int mc = M - ic < MC ? M - ic : MC;
                pack_a(A + ic * lda + pc, lda, mc, kc, Ap);
                for (int jr = 0; jr < nc; jr += NR) {
                    const int nr = nc - jr < NR ? nc - jr : NR;
                    for (int ir = 0; ir < mc; ir += MR) {
                        const int mr = mc - ir < MR ? mc - ir : MR;
                        float *Ct = C + (ic + ir) * ldc + jc + jr;
                        if (bf)
                            ukr_6x16_bf16(kc, Ap + (size_t)ir * kc, (const uint16_t *)Bp + (size_t)jr * kc, Ct, ldc,
                                          mr, nr, load);
                        else
                            ukr_6x16(kc, Ap + (size_t)ir * kc, Bp + (size_t)jr * kc, Ct, ldc, mr, nr, load);
                    }
                }
            }
        }
    }
    free(Bp);
    free(Ap);
    return 0;
}

/* ------------------------------------------------------------------ */
/* PACKA: C^T = W A^T, W the broadcast operand (read in its own row      */
/* layout, no transposition), A packed transposed.                       */
/* ------------------------------------------------------------------ */

#ifndef PA_KC
#define PA_KC 256  /* A^T panel 16 x KC fp32 = 16 KiB: L1 */
#endif
#ifndef PA_NC
#define PA_NC 120  /* W block NC x KC = 120 KiB (fp32): L2; a multiple of 6 */
#endif
#ifndef PA_MC
#define PA_MC 256  /* A^T block MC x KC = 256 KiB */
#endif
#define PA_MR 6    /* rows of W per micro-tile */
#define PA_NR 16   /* rows of A per micro-tile */

/* A finished 6 x 8 block (v[r] lane j = C[j][r], v[6], v[7] zero), transposed into the
 * first `rows` (<= 8) rows of C, nmask selecting the valid columns. */
INL void store_t8(float *C, size_t ldc, __m256 v[8], int rows, int load, __m256i nmask)
{
    transpose8(v);
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        if (j >= rows) break;
        float *cr = C + j * ldc;
        __m256 x = v[j];
        if (load) x = _mm256_add_ps(_mm256_maskload_ps(cr, nmask), x);
        _mm256_maskstore_ps(cr, nmask, x);
    }
}

/* C[0:mr, 0:nr] = (load ? C : 0) + Ap^T (W rows)^T over kc: Ap is kc x 16 (rows of A along the
 * lanes), w points at 6 rows of W (fp32) ldw apart, of which the first nr are valid (the others
 * are read from row 0 and dropped).  The 6 x 16 result is transposed on the way out. */
static TGT void ukr_a16x6(int kc, const float *w, size_t ldw, const float *Ap, float *C, size_t ldc, int mr,
                          int nr, int load)
{
    const float *w0 = w, *w1 = nr > 1 ? w + ldw : w, *w2 = nr > 2 ? w + 2 * ldw : w;
    const float *w3 = nr > 3 ? w + 3 * ldw : w, *w4 = nr > 4 ? w + 4 * ldw : w, *w5 = nr > 5 ? w + 5 * ldw : w;
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
#define UKW_ROW(r)                                              \
    do {                                                        \
        const __m256 a = _mm256_broadcast_ss(w##r + k);         \
        c##r##0 = _mm256_fmadd_ps(a, b0, c##r##0);              \
        c##r##1 = _mm256_fmadd_ps(a, b1, c##r##1);              \
    } while (0)
#pragma GCC unroll 4
    for (int k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_load_ps(Ap), b1 = _mm256_load_ps(Ap + 8);
        UKW_ROW(0);
        UKW_ROW(1);
        UKW_ROW(2);
        UKW_ROW(3);
        UKW_ROW(4);
        UKW_ROW(5);
        Ap += PA_NR;
    }
#undef UKW_ROW
    const __m256i nmask = tail_mask(nr);
    const __m256 z = _mm256_setzero_ps();
    __m256 v[8] = {c00, c10, c20, c30, c40, c50, z, z};
    store_t8(C, ldc, v, mr, load, nmask);
    if (mr > 8) {
        __m256 u[8] = {c01, c11, c21, c31, c41, c51, z, z};
        store_t8(C + 8 * ldc, ldc, u, mr - 8, load, nmask);
    }
}

static int packa_core(int M, int N, int K, const float *A, size_t lda, const void *W, q35_wtype wt, size_t ldw,
                      float *C, size_t ldc, int acc)
{
    const int bf = wt == WT_BF16;
    const int KC = K < PA_KC ? K : PA_KC;
    const int MC = M < PA_MC ? M : PA_MC;
    const int NC = N < PA_NC ? N : PA_NC;
    const size_t abytes = round_up((size_t)MC, PA_NR) * KC * sizeof(float);
    float *Ap = aligned_alloc(64, round_up(abytes, 64));
    float *Wc = bf ? aligned_alloc(64, round_up((size_t)NC * KC * sizeof(float), 64)) : NULL;
    if (!Ap || (bf && !Wc)) {
        free(Ap);
        free(Wc);
        return -1;
    }
    for (int pc = 0; pc < K; pc += KC) {
        const int kc = K - pc < KC ? K - pc : KC;
        const int load = acc || pc > 0;
        for (int ic = 0; ic < M; ic += MC) {
            const int mc = M - ic < MC ? M - ic : MC;
            pack_b_f32(A + ic * lda + pc, lda, mc, kc, Ap); /* Ap[i / 16][k][i % 16] = A[i][k] */
            for (int jc = 0; jc < N; jc += NC) {
                const int nc = N - jc < NC ? N - jc : NC;
                const float *Wb;
                size_t ldwb;
                if (bf) {
                    const uint16_t *Wh = (const uint16_t *)W + (size_t)jc * ldw + pc;
                    for (int n = 0; n < nc; n++) mm_avx2_bf16_to_f32(Wh + n * ldw, Wc + (size_t)n * kc, kc);
                    Wb = Wc;
                    ldwb = kc;
                } else {
                    Wb = (const float *)W + (size_t)jc * ldw + pc;
                    ldwb = ldw;
                }
                for (int ir = 0; ir < mc; ir += PA_NR) {
                    const int mr = mc - ir < PA_NR ? mc - ir : PA_NR;
                    for (int jr = 0; jr < nc; jr += PA_MR) {
                        const int nr = nc - jr < PA_MR ? nc - jr : PA_MR;
                        ukr_a16x6(kc, Wb + jr * ldwb, ldwb, Ap + (size_t)ir * kc, C + (ic + ir) * ldc + jc + jr, ldc,
                                  mr, nr, load);
                    }
                }
            }
        }
    }
    free(Ap);
    free(Wc);
    return 0;
}

/* Whole panels of 16 rows of A; a remainder of M % 16 rows (when M >= 16) goes to DOT, which
 * costs less than a padded panel (docs/matmul.md): the DOT of the level in use (dot), so that
 * those rows come out bit-identical to the same rows computed alone (M = 1 is DOT too). */
int mm_avx2_packa(int M, int N, int K, const float *A, size_t lda, const void *W, q35_wtype wt, size_t ldw,
                  float *C, size_t ldc, int acc, mm_body_fn dot)
{
    const int Mp = M < PA_NR ? M : M / PA_NR * PA_NR;
    if (packa_core(Mp, N, K, A, lda, W, wt, ldw, C, ldc, acc) < 0) return -1;
    if (Mp < M) dot(M - Mp, N, K, A + Mp * lda, lda, W, wt, ldw, C + Mp * ldc, ldc, acc);
    return 0;
}

/* ------------------------------------------------------------------ */
/* bf16 -> fp32 arrays                                                 */
/* ------------------------------------------------------------------ */

TGT void mm_avx2_bf16_to_f32(const uint16_t *x, float *y, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm256_storeu_ps(y + i, cvt8(x + i));
        _mm256_storeu_ps(y + i + 8, cvt8(x + i + 8));
    }
    for (; i < n; i++) y[i] = q35_bf16_to_f32(x[i]);
}
