/* AVX-512 VNNI body of the integer-dot matmul (matmul_int8dot.c has the definition, eqs. I8 / I4
 * of docs/quantization.md): vpdpbusd (unsigned x signed bytes, groups of four summed into int32).
 * The weights are the unsigned operand and the activations the signed one, so every correction
 * is a sum of activations (the s of kernels/quant/quant_act.h), shared by all rows of W.
 * Several rows of x (2 or 4 x 4 rows of W, `tile`): two 32-weight blocks b, b+1 per zmm, one
 * vpdpbusd per pair and row of x.
 *   Q8_0: the two blocks' 32 int8 (34-byte blocks: two 32-byte loads) as w + 128 (one XOR per
 *         pair and row of W), so the sum is sum w x + 128 s and the accumulator starts at
 *         -128 s_b in lane 0 and -128 s_{b+1} in lane 8.  Lanes 0-7 hold block b's groups, 8-15
 *         block b+1's.  (Until 2026-12-07 x + 128 was the unsigned operand and the start
 *         -128 sum(w), one more vpdpbusd and a subtraction per pair and row of W.)
 *   Q4_0: the two blocks' 16 bytes side by side, then their low nibbles (elements 0-15) and
 *         high nibbles (16-31), the unsigned operand: 128-bit lanes [b lo, b+1 lo, b hi, b+1 hi];
 *         the activations' lanes are reordered to match (one vshufi64x2 per pair, shared by the
 *         rows of W), and the accumulator starts at -8 s_b in lane 0 and -8 s_{b+1} in lane 4
 *         (eq. I4).
 *   Each pair's 16 int32 go to fp32 (exact) and meet dw d of their block (dw of the two blocks
 *   by vcvtph2ps + vpermps, d spread the same way once per pair and row of x); one fp32
 *   accumulator per (row of x, row of W).
 * One row of x (decode, `row1`): 256-bit operations only, 8 rows of W (matmul_int8dot_pairs.inc).
 * The rows of W of a tile are a segment apart (8 streams from DRAM).  An odd last block runs the
 * plain-C definition.
 * Called only when cpu_isa() >= ISA_AVX512 and cpu_has(AVX512_VNNI) and cpu_has(AVX512BW). */
#include "kernels/matmul/matmul_internal.h"

#include <immintrin.h>

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT
#define RMAX 8 /* rows of W per tile: 8 for one row of x (streams in flight), 4 for 2 or 4 rows */
#define WBLOCK_BYTES (256 * 1024) /* rows of W kept in L2 across the rows of A */
/* The one-row path's software prefetch: each row stream of W 48 blocks ahead (1632 bytes of Q8_0,
 * 864 of Q4_0: the same lead in time, the work per block being the same), into L2 (T1).  On
 * Zen 4 (2026-12-07, W from DRAM) MM_QPREFETCH_BYTES' 768 bytes into L1 left Q8_0 at 20 GB/s a
 * thread: the L1 fill buffers the prefetches hold are the ones the loads need.  Into L2, bench
 * linear --N 6144 --K 1024 --M 1 --cold 1024, Q8_0: 1 thread 333-483 -> 244-251 us, 2 threads
 * 210-308 -> 200-219 us; Q4_0 unchanged (docs/quantization.md section 7, "Zen 4").  Not measured
 * on an Intel host. */
#define ROW1_PREFETCH_BLOCKS 48

INL uint32_t ld16(const char *p)
{
    uint16_t h;
    __builtin_memcpy(&h, p, 2);
    return h;
}

/* The two blocks' fp16 scales dw_b, dw_{b+1} as fp32 in lanes 0 and 1. */
INL __m128 pair_dw(const char *blk, size_t bb)
{
    return _mm_cvtph_ps(_mm_cvtsi32_si128((int)(ld16(blk) | ld16(blk + bb) << 16)));
}

/* d_b, d_{b+1} in lanes 0 and 1. */
INL __m128 pair_d(const float *d)
{
    double dd;
    __builtin_memcpy(&dd, d, 8);
    return _mm_castpd_ps(_mm_set_sd(dd));
}

/* dw_b d_b and dw_{b+1} d_{b+1} in lanes 0 and 1 (d: the activations' scales of the pair). */
INL __m128 pair_scale(const char *blk, size_t bb, const float *d) { return _mm_mul_ps(pair_dw(blk, bb), pair_d(d)); }

/* W's two blocks in one zmm: Q8_0's int8 as stored (the caller adds 128), Q4_0's nibbles
 * [b lo, b+1 lo, b hi, b+1 hi]. */
INL __m512i q8_w(const char *blk, size_t bb)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(blk + 2))),
                              _mm256_loadu_si256((const __m256i *)(blk + bb + 2)), 1);
}
INL __m512i q4_n(const char *blk, size_t bb)
{
    const __m256i b = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(blk + 2))),
                                              _mm_loadu_si128((const __m128i *)(blk + bb + 2)), 1);
    return _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(b), _mm256_srli_epi16(b, 4), 1),
                            _mm512_set1_epi8(15));
}

/* P rows of activations (q[p], d[p], s[p]) x nr (<= R) rows of W, row r at W + r * rstride:
 * out[p * RMAX + r]. */
INL void tile(q35_wtype wt, int P, int R, int nr, int nb, const int8_t *const *q, const float *const *d,
              const int32_t *const *s, const char *W, size_t rstride, size_t bb, float *out)
{
    /* Q8_0: lanes 0-7 block b, 8-15 block b+1; Q4_0: 128-bit lanes [b, b+1, b, b+1] */
    const __m512i idx = wt == WT_Q8_0 ? _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)
                                      : _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1);
    const __m512i c128 = _mm512_set1_epi8((char)0x80);
    __m512 acc[4][RMAX];
    _Pragma("GCC unroll 4")
    for (int p = 0; p < P; p++)
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; r++) acc[p][r] = _mm512_setzero_ps();
    int b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m512i x[4], corr[4];
        __m512 dx[4];
        _Pragma("GCC unroll 4")
        for (int p = 0; p < P; p++) {
            const __m512i v = _mm512_loadu_si512((const void *)(q[p] + 32 * b));
            if (wt == WT_Q8_0) {
                x[p] = v;
                corr[p] = _mm512_mask_set1_epi32(_mm512_maskz_set1_epi32(0x0001, -128 * s[p][b]), 0x0100,
                                                 -128 * s[p][b + 1]);
            } else {
                x[p] = _mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(3, 1, 2, 0)); /* [b 0-15, b+1 0-15, b 16-31, b+1 16-31] */
                corr[p] = _mm512_mask_set1_epi32(_mm512_maskz_set1_epi32(0x0001, -8 * s[p][b]), 0x0010, -8 * s[p][b + 1]);
            }
            dx[p] = _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(pair_d(d[p] + b)));
        }
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; r++) {
            if (r >= nr) break;
            const char *blk = W + r * rstride + b * bb;
            _mm_prefetch(blk + MM_QPREFETCH_BYTES, _MM_HINT_T0);
            const __m512 dw = _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(pair_dw(blk, bb)));
            if (wt == WT_Q8_0) {
                const __m512i w = _mm512_xor_si512(q8_w(blk, bb), c128);
                _Pragma("GCC unroll 4")
                for (int p = 0; p < P; p++) {
                    const __m512i i = _mm512_dpbusd_epi32(corr[p], w, x[p]);
                    acc[p][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(dw, dx[p]), acc[p][r]);
                }
            } else {
                const __m512i n = q4_n(blk, bb);
                _Pragma("GCC unroll 4")
                for (int p = 0; p < P; p++) {
                    const __m512i i = _mm512_dpbusd_epi32(corr[p], n, x[p]);
                    acc[p][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(dw, dx[p]), acc[p][r]);
                }
            }
        }
    }
    _Pragma("GCC unroll 4")
    for (int p = 0; p < P; p++)
        for (int r = 0; r < nr; r++) {
            out[p * RMAX + r] = _mm512_reduce_add_ps(acc[p][r]);
            if (b < nb) out[p * RMAX + r] += mm_qact_block(wt, W + r * rstride + b * bb, q[p] + 32 * b, d[p][b], s[p][b]);
        }
}

/* One row of x (decode): matmul_int8dot_pairs.inc in 256-bit operations, 8 rows of W.  With one row
 * of x nothing is shared between the rows of W but the activations, so the zmm tile's per-row
 * 512-bit inserts and lane spreads are pure cost; on Zen 4 (zmm as two halves) they were its
 * bottleneck: bench linear --N 6144 --K 1024 --M 1 --threads 1, W in cache, 2026-12-07: Q4_0
 * 167-168 -> 126-127 us, Q8_0 163-166 -> 144-145 us (docs/quantization.md section 7). */
INL float hsum8(__m256 v)
{
    const __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 h2 = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
}
#define PAIRS_ROWS RMAX
#define PAIRS_PREFETCH(blk, bb) _mm_prefetch((blk) + ROW1_PREFETCH_BLOCKS * (bb), _MM_HINT_T1)
#define Q4_PAIR_DOT(corr, lo, hi, xlo, xhi) _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(corr, lo, xlo), hi, xhi)
/* w + 128 (XOR) as the unsigned operand, the accumulator starting at -128 s_b (eq. I8) */
#define Q8_BLOCK_DOT(corr, w, x) _mm256_dpbusd_epi32(corr, _mm256_xor_si256(w, _mm256_set1_epi8((char)0x80)), x)
#include "kernels/matmul/matmul_int8dot_pairs.inc"

INL void row1(q35_wtype wt, int nr, int nb, const int8_t *q, const float *d, const int32_t *s, const char *W,
              size_t rstride, size_t bb, float *out)
{
    if (wt == WT_Q8_0)
        q8_pairs(nr, nb, q, d, s, W, rstride, bb, out);
    else
        q4_pairs(nr, nb, q, d, s, W, rstride, bb, out);
}

INL void rows_of_a(q35_wtype wt, int P, int m, int n0, int n1, int nb, const q35_qact *A, int m0, const char *W,
                   size_t rowb, size_t bb, float *C, size_t ldc, int accumulate)
{
    const size_t nbA = (size_t)A->K / Q35_QBLOCK;
    const int8_t *q[4];
    const float *d[4];
    const int32_t *s[4];
    for (int p = 0; p < P; p++) {
        const size_t am = (size_t)(m0 + m + p);
        q[p] = A->q + am * A->K;
        d[p] = A->d + am * nbA;
        s[p] = A->s + am * nbA;
    }
    /* Segmented rows, as the exact DOT: tile i takes rows i, i + S, i + 2S, i + 3S of the block
     * (S = its rows / R), so R streams far apart are in flight; four adjacent rows are one stream,
     * which from DRAM read half the bandwidth (lm_head, 248320 x 1024 Q4_0, 2 threads: 13.7 GB/s
     * against the exact DOT's 23.4). */
    const int R = P == 1 ? 8 : 4, S = (n1 - n0) / R;
    float v[4 * RMAX];
    for (int i = 0; i < S; i++) {
        if (P == 1)
            row1(wt, 8, nb, q[0], d[0], s[0], W + (size_t)(n0 + i) * rowb, (size_t)S * rowb, bb, v);
        else
            tile(wt, P, 4, 4, nb, q, d, s, W + (size_t)(n0 + i) * rowb, (size_t)S * rowb, bb, v);
        for (int p = 0; p < P; p++) {
            float *c = C + (size_t)(m + p) * ldc + n0 + i;
            for (int r = 0; r < R; r++) c[r * S] = accumulate ? c[r * S] + v[p * RMAX + r] : v[p * RMAX + r];
        }
    }
    for (int n = n0 + S * R; n < n1; n++) {
        if (P == 1)
            row1(wt, 1, nb, q[0], d[0], s[0], W + (size_t)n * rowb, rowb, bb, v);
        else
            tile(wt, P, R, 1, nb, q, d, s, W + (size_t)n * rowb, rowb, bb, v);
        for (int p = 0; p < P; p++) {
            float *c = C + (size_t)(m + p) * ldc + n;
            *c = accumulate ? *c + v[p * RMAX] : v[p * RMAX];
        }
    }
}

INL void body(q35_wtype wt, int M, int N, int K, const q35_qact *A, int m0, const char *W, size_t rowb, float *C,
              size_t ldc, int accumulate)
{
    const int nb = K / Q35_QBLOCK;
    const size_t bb = q35_wtype_bytes(wt, Q35_QBLOCK);
    int NB = (int)(WBLOCK_BYTES / rowb) / RMAX * RMAX;
    if (NB < RMAX) NB = RMAX;
    for (int n0 = 0; n0 < N; n0 += NB) {
        const int n1 = N - n0 < NB ? N : n0 + NB;
        int m = 0;
        for (; m + 4 <= M; m += 4) rows_of_a(wt, 4, m, n0, n1, nb, A, m0, W, rowb, bb, C, ldc, accumulate);
        if (m + 2 <= M) { rows_of_a(wt, 2, m, n0, n1, nb, A, m0, W, rowb, bb, C, ldc, accumulate); m += 2; }
        if (m < M) rows_of_a(wt, 1, m, n0, n1, nb, A, m0, W, rowb, bb, C, ldc, accumulate);
    }
}

TGT void mm_avx512vnni_qact(int M, int N, int K, const q35_qact *A, int m0, const char *W, q35_wtype wt,
                            size_t rowb, float *C, size_t ldc, int acc)
{
    if (wt == WT_Q8_0)
        body(WT_Q8_0, M, N, K, A, m0, W, rowb, C, ldc, acc);
    else
        body(WT_Q4_0, M, N, K, A, m0, W, rowb, C, ldc, acc);
}
