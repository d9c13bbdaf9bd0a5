/* AVX2 + FMA bodies of q35_matmul_xwt (docs/matmul.md).  Compiled with target
 * attributes, called only when cpu_isa() >= ISA_AVX2.
 *
 * DOT    matmul_dot_simd.inc at 8 lanes: P rows of A x R rows of W (3 x 4 fp32, 2 x 4 bf16),
 *        P*R accumulators of 8 lanes along K, a horizontal sum per output at the end.  W is
 *        read in place, so for small M it streams W exactly once: the decode / GEMV kernel.
 *        bf16 W is widened in registers, 16 weights per load (even/odd split), exactly.
 * PACKED BLIS-style (matmul_packed_simd.inc): a KC x NC block of W is packed transposed into
 *        16-column panels (bf16 stays bf16 there and is widened in the micro-kernel), a MC x KC
 *        block of A into 6-row panels, and a 6 x 16 outer-product micro-kernel (12
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

/* The first t (1..7) bf16 at p, zeros after; never reads past them. */
INL __m256 cvt8_tail(const uint16_t *p, int t)
{
    uint16_t tmp[8] = {0};
    memcpy(tmp, p, (size_t)t * 2);
    return cvt8(tmp);
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

/* ------------------------------------------------------------------ */
/* DOT (matmul_dot_simd.inc)                                           */
/* ------------------------------------------------------------------ */

#define DNAME(x) mm_avx2_##x
#define VW 8
typedef __m256 vf;
typedef __m256i vi;
typedef __m256i vmask;
#define V_ZERO() _mm256_setzero_ps()
#define V_LOADU(p) _mm256_loadu_ps(p)
#define V_LOADU_SI(p) _mm256_loadu_si256((const __m256i *)(p))
#define V_SET1_I32(x) _mm256_set1_epi32(x)
#define V_FMADD(a, b, c) _mm256_fmadd_ps(a, b, c)
#define V_ADD(a, b) _mm256_add_ps(a, b)
#define V_MASK(t) tail_mask(t)
#define V_MASKLOAD(p, m) _mm256_maskload_ps(p, m)
#define V_BF_EVEN(v) _mm256_castsi256_ps(_mm256_slli_epi32(v, 16))
#define V_BF_ODD(v, hi) _mm256_castsi256_ps(_mm256_and_si256(v, hi))
#define V_FOLD8(v) (v)
#define cvt_bf cvt8
#define cvt_bf_tail cvt8_tail
#define DOT_R 4
#include "kernels/matmul/matmul_dot_simd.inc"

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
#define PACK_KC PK_KC
#define PACK_MC PK_MC
#define PACK_NC PK_NC

/* bf16 W packed without widening: Bh[j / 16][k][slot(j % 16)] = W[j][k] (bf16), zero-padded like
 * pack_b_f32.  The 16 weights of one k sit in the order rows 0-3, 8-11, 4-7, 12-15, so that
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

static TGT void pack_b_bf16(const uint16_t *W, size_t ldw, int nc, int kc, uint16_t *Bh)
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
 * as packed by pack_b_bf16).  The 12 accumulators are named variables: as an array GCC
 * kept a copy of them on the stack. */
INL void ukr_body(const int bf, int kc, const float *Ap, const void *Bv, float *C, size_t ldc, int mr, int nr,
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
        if (bf) { /* rows 0-7 and 8-15, exact (see pack_b_bf16) */
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

#include "kernels/matmul/matmul_packed_simd.inc"

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
