/* AVX-512 bodies of q35_matmul_xwt, and the BF16-dot path (docs/matmul.md "AVX-512 path",
 * "BF16-dot path").  Compiled with target attributes; called only when cpu_isa() >= ISA_AVX512
 * (the BF16-dot kernel only when cpu_has(CPU_FEAT_AVX512_BF16)).  Uses AVX512F alone (plus
 * AVX512_BF16 in the BF16-dot kernel): no BW/VL/DQ instruction, so every AVX512F CPU runs it.
 *
 * DOT    The AVX2 DOT at 16 lanes (matmul_dot_simd.inc): P rows of A x R rows of W (3 x 8
 *        fp32, 2 x 8 bf16), W read in place; bf16 W widened exactly in registers by the
 *        even/odd split at 32 weights per load (lane j = elements 2j, 2j+1: << 16 and
 *        & 0xFFFF0000), A permuted to match per block of 32.  Each output is 16 lane sums
 *        folded to 8 and then the AVX2 tree.
 * PACKED BLIS-style like the AVX2 one (matmul_packed_simd.inc) with a 12 x 32 micro-kernel
 *        (24 accumulators of the 32 zmm registers; 2 loads + 12 embedded broadcasts per k).  bf16 W stays bf16 in the
 *        packed panels, 32-bit lane q holding rows q (low half) and 16 + q (high half), so
 *        the micro-kernel widens 32 weights exactly with one shift and one and.  The k-sum of
 *        every output is sequential FMAs within a KC block, C added after each block: the
 *        same operations in the same order as the AVX2 PACKED kernel (same KC), so the two
 *        give bit-identical results.
 * BF16DOT vdpbf16ps: A rounded to bf16 (round to nearest even, as q35_f32_to_bf16), W bf16
 *        read in place (pairs of consecutive k in each 32-bit lane, the instruction's
 *        layout: no permutation), fp32 accumulation, DOT tiles of 3 x 8.
 */
#include "kernels/matmul/matmul_internal.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define TGT __attribute__((target("avx512f,avx2,fma")))
#define INL static inline __attribute__((always_inline)) TGT

/* 8 lanes of the sum of the two halves of v. */
INL __m256 fold(__m512 v)
{
    return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

/* First t lanes set, 0 <= t <= 16. */
INL __mmask16 mask16(int t) { return (__mmask16)(t >= 16 ? 0xFFFFu : (1u << t) - 1u); }

/* 16 bf16 -> 16 fp32, exact. */
INL __m512 cvt16(const uint16_t *p)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
/* The first t (< 16) bf16 at p, zeros after; reads nothing past them. */
INL __m512 cvt16_tail(const uint16_t *p, int t)
{
    uint16_t tmp[16] = {0};
    memcpy(tmp, p, (size_t)t * 2);
    return cvt16(tmp);
}

/* out = a with each full block of 32 as its 16 even elements then its 16 odd ones. */
static TGT void perm_eo(const float *a, int K, float *out)
{
    const __m512i ie = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i io = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    int k = 0;
    for (; k + 32 <= K; k += 32) {
        const __m512 x0 = _mm512_loadu_ps(a + k), x1 = _mm512_loadu_ps(a + k + 16);
        _mm512_storeu_ps(out + k, _mm512_permutex2var_ps(x0, ie, x1));
        _mm512_storeu_ps(out + k + 16, _mm512_permutex2var_ps(x0, io, x1));
    }
    for (; k < K; k++) out[k] = a[k];
}

/* ------------------------------------------------------------------ */
/* DOT (matmul_dot_simd.inc)                                           */
/* ------------------------------------------------------------------ */

#define DNAME(x) mm_avx512_##x
#define VW 16
typedef __m512 vf;
typedef __m512i vi;
typedef __mmask16 vmask;
#define V_ZERO() _mm512_setzero_ps()
#define V_LOADU(p) _mm512_loadu_ps(p)
#define V_LOADU_SI(p) _mm512_loadu_si512((const void *)(p))
#define V_SET1_I32(x) _mm512_set1_epi32(x)
#define V_FMADD(a, b, c) _mm512_fmadd_ps(a, b, c)
#define V_ADD(a, b) _mm512_add_ps(a, b)
#define V_MASK(t) mask16(t)
#define V_MASKLOAD(p, m) _mm512_maskz_loadu_ps(m, p)
#define V_BF_EVEN(v) _mm512_castsi512_ps(_mm512_slli_epi32(v, 16))
#define V_BF_ODD(v, hi) _mm512_castsi512_ps(_mm512_and_si512(v, hi))
#define V_FOLD8(v) fold(v)
#define cvt_bf cvt16
#define cvt_bf_tail cvt16_tail
#define DOT_R 8
#include "kernels/matmul/matmul_dot_simd.inc"

/* ------------------------------------------------------------------ */
/* PACKED: 12 x 32 micro-kernel                                        */
/* ------------------------------------------------------------------ */

#define MR 12
#define NR 32
#ifndef PK5_KC
#define PK5_KC 512 /* the AVX2 PACKED's KC: same k blocks, bit-identical results */
#endif
#ifndef PK5_MC
#define PK5_MC 144 /* A block MC x KC = 288 KiB: L2 */
#endif
#ifndef PK5_NC
#define PK5_NC 512 /* B block KC x NC = 1 MiB (fp32): L2 */
#endif

#define PACK_KC PK5_KC
#define PACK_MC PK5_MC
#define PACK_NC PK5_NC

/* bf16 kept: Bh[j / 32][k][2q] = W[j + q][k], Bh[j / 32][k][2q + 1] = W[j + 16 + q][k] (q < 16),
 * so that 32-bit lane q of a k's 64 bytes is rows q (low) and 16 + q (high).  Rows 0-15 and
 * 16-31 of 8 k at a time are read as 16-bit lanes and interleaved with vpunpck{l,h}wd. */
static TGT void pack_b_bf16(const uint16_t *W, size_t ldw, int nc, int kc, uint16_t *Bh)
{
    for (int j = 0; j < nc; j += NR) {
        uint16_t *bp = Bh + (size_t)j * kc;
        int k = 0;
        if (nc - j >= NR)
            for (; k + 8 <= kc; k += 8) {
                /* x[q] = row q, 8 k; y[q] = row 16 + q */
                uint16_t t[8][NR]; /* t[kk][slot] */
                for (int q = 0; q < 16; q++) {
                    const __m128i x = _mm_loadu_si128((const __m128i *)(W + (size_t)(j + q) * ldw + k));
                    const __m128i y = _mm_loadu_si128((const __m128i *)(W + (size_t)(j + 16 + q) * ldw + k));
                    uint32_t lo[4], hi[4];
                    _mm_storeu_si128((__m128i *)lo, _mm_unpacklo_epi16(x, y)); /* k0..3: (row q, row 16+q) */
                    _mm_storeu_si128((__m128i *)hi, _mm_unpackhi_epi16(x, y)); /* k4..7 */
                    for (int kk = 0; kk < 4; kk++) {
                        memcpy(&t[kk][2 * q], &lo[kk], 4);
                        memcpy(&t[kk + 4][2 * q], &hi[kk], 4);
                    }
                }
                memcpy(bp + (size_t)k * NR, t, sizeof t);
            }
        for (; k < kc; k++)
            for (int q = 0; q < 16; q++) {
                bp[(size_t)k * NR + 2 * q] = j + q < nc ? W[(size_t)(j + q) * ldw + k] : 0;
                bp[(size_t)k * NR + 2 * q + 1] = j + 16 + q < nc ? W[(size_t)(j + 16 + q) * ldw + k] : 0;
            }
    }
}

INL void store_row(float *cr, __m512 x0, __m512 x1, int load, __mmask16 m0, __mmask16 m1)
{
    if (load) {
        x0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cr), x0);
        x1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cr + 16), x1);
    }
    _mm512_mask_storeu_ps(cr, m0, x0);
    _mm512_mask_storeu_ps(cr + 16, m1, x1);
}

INL void ukr_body(const int bf, int kc, const float *Ap, const void *Bv, float *C, size_t ldc, int mr, int nr,
                  int load)
{
    const float *Bp = Bv;
    const uint16_t *Bh = Bv;
    const __m512i hi = _mm512_set1_epi32((int)0xFFFF0000u);
    __m512 c0_0 = _mm512_setzero_ps(), c0_1 = c0_0, c1_0 = c0_0, c1_1 = c0_0, c2_0 = c0_0, c2_1 = c0_0;
    __m512 c3_0 = c0_0, c3_1 = c0_0, c4_0 = c0_0, c4_1 = c0_0, c5_0 = c0_0, c5_1 = c0_0;
    __m512 c6_0 = c0_0, c6_1 = c0_0, c7_0 = c0_0, c7_1 = c0_0, c8_0 = c0_0, c8_1 = c0_0;
    __m512 c9_0 = c0_0, c9_1 = c0_0, c10_0 = c0_0, c10_1 = c0_0, c11_0 = c0_0, c11_1 = c0_0;
#define UROW(r)                                           \
    do {                                                  \
        const __m512 a = _mm512_set1_ps(Ap[r]);           \
        c##r##_0 = _mm512_fmadd_ps(a, b0, c##r##_0);      \
        c##r##_1 = _mm512_fmadd_ps(a, b1, c##r##_1);      \
    } while (0)
#pragma GCC unroll 2
    for (int k = 0; k < kc; k++) {
        __m512 b0, b1;
        if (bf) {
            const __m512i v = _mm512_load_si512((const void *)Bh);
            b0 = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
            b1 = _mm512_castsi512_ps(_mm512_and_si512(v, hi));
            Bh += NR;
        } else {
            b0 = _mm512_load_ps(Bp);
            b1 = _mm512_load_ps(Bp + 16);
            Bp += NR;
        }
        UROW(0); UROW(1); UROW(2); UROW(3); UROW(4); UROW(5);
        UROW(6); UROW(7); UROW(8); UROW(9); UROW(10); UROW(11);
        Ap += MR;
    }
#undef UROW
    const __mmask16 m0 = mask16(nr), m1 = mask16(nr > 16 ? nr - 16 : 0);
    store_row(C, c0_0, c0_1, load, m0, m1);
#define SROW(r) if (mr > r) store_row(C + r * ldc, c##r##_0, c##r##_1, load, m0, m1)
    SROW(1); SROW(2); SROW(3); SROW(4); SROW(5); SROW(6);
    SROW(7); SROW(8); SROW(9); SROW(10); SROW(11);
#undef SROW
}

#include "kernels/matmul/matmul_packed_simd.inc"

/* ------------------------------------------------------------------ */
/* BF16DOT: vdpbf16ps                                                  */
/* ------------------------------------------------------------------ */

#define TGTBF __attribute__((target("avx512f,avx512bf16,avx2,fma")))
#define INLBF static inline __attribute__((always_inline)) TGTBF

/* out[0:K] = bf16(a[0:K]) rounded to nearest even (q35_f32_to_bf16's rule, NaN quieted),
 * out[K:Kp] = 0. */
static TGT void round_row_bf16(const float *a, int K, int Kp, uint16_t *out)
{
    const __m512i bias = _mm512_set1_epi32(0x7FFF), one = _mm512_set1_epi32(1);
    const __m512i absm = _mm512_set1_epi32(0x7FFFFFFF), inf = _mm512_set1_epi32(0x7F800000);
    const __m512i quiet = _mm512_set1_epi32(0x0040);
    int k = 0;
    for (; k < K; k += 16) {
        const __mmask16 m = mask16(K - k);
        const __m512i u = _mm512_castps_si512(_mm512_maskz_loadu_ps(m, a + k));
        const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, absm), inf);
        const __m512i top = _mm512_srli_epi32(u, 16);
        __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, bias), _mm512_and_si512(top, one)), 16);
        r = _mm512_mask_or_epi32(r, nan, top, quiet);
        const __m256i h = _mm512_cvtepi32_epi16(r);
        if (K - k >= 16)
            _mm256_storeu_si256((__m256i *)(out + k), h);
        else {
            uint16_t tmp[16];
            _mm256_storeu_si256((__m256i *)tmp, h);
            memcpy(out + k, tmp, (size_t)(K - k) * 2);
        }
    }
    for (k = K; k < Kp; k++) out[k] = 0;
}

#define BP 3
#define BR 8

/* s[p][r] += sum over kb (a multiple of 2, zero-padded A) of Ab[p][k] W[r][k] by vdpbf16ps.
 * Ab rows are ldab apart and padded with zeros up to a multiple of 32; W's last partial
 * group of 32 is copied into a zeroed buffer (nothing past K is read). */
INLBF void bfdot_tile(const int P, const int R, int K, const uint16_t *Ab, size_t ldab, const uint16_t *W,
                      size_t ldw, float *C, size_t ldc, size_t cs, int acc)
{
    __m512 s[PMAX][RMAX];
    acc_zero(P, R, s);
    int k = 0;
    for (; k + 32 <= K; k += 32) {
        __m512bh a[PMAX];
#pragma GCC unroll 4
        for (int p = 0; p < P; p++) a[p] = (__m512bh)_mm512_loadu_si512((const void *)(Ab + p * ldab + k));
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const __m512bh w = (__m512bh)_mm512_loadu_si512((const void *)(W + r * ldw + k));
#pragma GCC unroll 4
            for (int p = 0; p < P; p++) s[p][r] = _mm512_dpbf16_ps(s[p][r], a[p], w);
        }
    }
    if (k < K) {
        __m512bh a[PMAX];
#pragma GCC unroll 4
        for (int p = 0; p < P; p++) a[p] = (__m512bh)_mm512_loadu_si512((const void *)(Ab + p * ldab + k));
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            uint16_t tmp[32] = {0};
            memcpy(tmp, W + r * ldw + k, (size_t)(K - k) * 2);
            const __m512bh w = (__m512bh)_mm512_loadu_si512((const void *)tmp);
#pragma GCC unroll 4
            for (int p = 0; p < P; p++) s[p][r] = _mm512_dpbf16_ps(s[p][r], a[p], w);
        }
    }
    dot_store(P, R, s, C, ldc, cs, acc);
}

typedef void (*bftile_fn)(int K, const uint16_t *Ab, size_t ldab, const uint16_t *W, size_t ldw, float *C,
                          size_t ldc, size_t cs, int acc);
#define DEF_BFTILE(P, R)                                                                                  \
    static TGTBF void bftile_##P##x##R(int K, const uint16_t *Ab, size_t ldab, const uint16_t *W, size_t ldw, \
                                       float *C, size_t ldc, size_t cs, int acc)                           \
    {                                                                                                     \
        bfdot_tile(P, R, K, Ab, ldab, W, ldw, C, ldc, cs, acc);                                           \
    }
DEF_BFTILE(1, 1)
DEF_BFTILE(1, 8)
DEF_BFTILE(2, 1)
DEF_BFTILE(2, 8)
DEF_BFTILE(3, 1)
DEF_BFTILE(3, 8)
static const struct {
    bftile_fn main, one;
} bftiles[BP + 1] = {{0, 0}, {bftile_1x8, bftile_1x1}, {bftile_2x8, bftile_2x1}, {bftile_3x8, bftile_3x1}};

#define BF_KB 4096                   /* K per pass (3 rows of A: 24 KiB of bf16) */
#define BF_BLOCK_BYTES (256 * 1024)  /* W rows per block, kept in L2 across the rows of A */

/* bf16 W only.  A rounded to bf16 once, into a heap buffer of M rows of K rounded up to 32
 * (-1 if it cannot be allocated; C untouched). */
int mm_avx512_bf16dot(int M, int N, int K, const float *A, size_t lda, const uint16_t *W, size_t ldw, float *C,
                      size_t ldc, int acc)
{
    const size_t Kp = round_up((size_t)K, 32);
    uint16_t *Ab = aligned_alloc(64, round_up((size_t)M * Kp * 2, 64));
    if (!Ab) return -1;
    for (int m = 0; m < M; m++) round_row_bf16(A + m * lda, K, (int)Kp, Ab + m * Kp);
    const int KB = K < BF_KB ? K : BF_KB;
    int NB = (int)(BF_BLOCK_BYTES / ((size_t)KB * 2)) / BR * BR;
    if (NB < BR) NB = BR;
    if (NB > N) NB = N;
    const int pmain = M < BP ? M : BP;
    for (int k0 = 0; k0 < K; k0 += KB) {
        const int kb = K - k0 < KB ? K - k0 : KB;
        const int a_acc = acc || k0 > 0;
        for (int n0 = 0; n0 < N; n0 += NB) {
            const int nb = N - n0 < NB ? N - n0 : NB;
            const uint16_t *Wb = W + (size_t)n0 * ldw + k0;
            for (int m0 = 0; m0 < M; m0 += pmain) {
                const int p = M - m0 < pmain ? M - m0 : pmain;
                const uint16_t *Am = Ab + (size_t)m0 * Kp + k0;
                float *Cm = C + m0 * ldc + n0;
                const int S = nb / BR;
                int n = 0;
                for (; n < S; n++) bftiles[p].main(kb, Am, Kp, Wb + n * ldw, (size_t)S * ldw, Cm + n, ldc, S, a_acc);
                n = S * BR;
                for (; n < nb; n++) bftiles[p].one(kb, Am, Kp, Wb + n * ldw, ldw, Cm + n, ldc, 1, a_acc);
            }
        }
    }
    free(Ab);
    return 0;
}

TGT void mm_avx512_bf16_to_f32(const uint16_t *x, float *y, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, cvt16(x + i));
    for (; i < n; i++) y[i] = q35_bf16_to_f32(x[i]);
}
