/* `direct` backward of the short causal conv (docs/conv.md, "Backward").
 *
 * Channels are cut into blocks of CW = 256 (1 KB of each token-major row:
 * with 64-channel blocks every token's rows were a new 4 KB page 24 KB away
 * and T = 512 at C = 6144 took 4x longer; 512 and 1024 were no faster); a
 * block is one task and owns its columns of dweight, so
 * threads never share an accumulator and each channel's arithmetic is the
 * same for any thread count.  Within a block, for each sequence, tokens run
 * forward once:
 *
 *   g[t]     = dy[t] * silu'(pre[t])  (dy[t] without SiLU), pre recomputed  (eq. B1)
 *   dw[j]   += g[t] * x_ext[t + j]                                          (eq. B3)
 *   dx_ext[t] = sum_j w[j] * g[t - j]      (complete once g[t] is known)    (eq. B2)
 *
 * with the last K gradients g in a ring; after the valid tokens, the K-1
 * entries x_ext[len .. len+K-2] also get d_state_out (eq. B2).  dx_ext[e]
 * lands in dx[e - (K-1)] or, for e < K-1, in d_state_in.  The weights are
 * transposed per block to [K][CW], the state columns gathered to token-major
 * rows (as in conv_direct.c).
 *
 * AVX2 + FMA through target attributes when cpu_isa() allows it (SiLU'
 * through Cephes' expf, exp_avx2.h), plain C otherwise.
 */
#include "kernels/conv/conv_grad.h"
#include "kernels/cpu_features.h"
#include "kernels/exp_avx2.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define CW 256                 /* channels per block */
#define SERIAL_WORK (1L << 16) /* below this many B*T*C*K, one thread */

/* g = dy * act'(sum_j wt[j] rows[j]); dw[j] += g * rows[j]   (wt, dw: [K][CW]) */
typedef void (*g_fn)(float *g, float *dw, const float *const *rows, const float *wt, const float *dy, int K, int n,
                     int silu);
/* out = sum_j wt[j] * grows[j] (+ extra when not NULL) */
typedef void (*dx_fn)(float *out, const float *const *grows, const float *wt, const float *extra, int K, int n);

static void g_generic(float *restrict g, float *restrict dw, const float *const *rows, const float *wt,
                      const float *restrict dy, int K, int n, int silu)
{
    if (silu) {
        float pre[CW];
        for (int i = 0; i < n; i++) pre[i] = wt[i] * rows[0][i];
        for (int j = 1; j < K; j++)
            for (int i = 0; i < n; i++) pre[i] += wt[(size_t)j * CW + i] * rows[j][i];
        for (int i = 0; i < n; i++) {
            const float s = 1.0f / (1.0f + expf(-pre[i]));
            g[i] = dy[i] * (s * (1.0f + pre[i] * (1.0f - s)));
        }
    } else {
        for (int i = 0; i < n; i++) g[i] = dy[i];
    }
    for (int j = 0; j < K; j++)
        for (int i = 0; i < n; i++) dw[(size_t)j * CW + i] += g[i] * rows[j][i];
}

static void dx_generic(float *restrict out, const float *const *grows, const float *wt, const float *extra, int K,
                       int n)
{
    for (int i = 0; i < n; i++) out[i] = extra ? extra[i] : 0.0f;
    for (int j = 0; j < K; j++)
        for (int i = 0; i < n; i++) out[i] += wt[(size_t)j * CW + i] * grows[j][i];
}

#define TGT __attribute__((target("avx2,fma")))

/* silu'(z) = s (1 + z (1 - s)), s = 1 / (1 + e^-z): a reciprocal estimate and
 * one Newton step (d >= 1 and finite by the clamp in q35_exp256). */
TGT static inline __m256 dsilu256(__m256 z)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 d = _mm256_add_ps(one, q35_exp256(_mm256_sub_ps(_mm256_setzero_ps(), z)));
    __m256 s = _mm256_rcp_ps(d);
    s = _mm256_mul_ps(s, _mm256_fnmadd_ps(d, s, _mm256_set1_ps(2.0f)));
    return _mm256_mul_ps(s, _mm256_fmadd_ps(z, _mm256_sub_ps(one, s), one));
}

#define LD(ptr) (masked ? _mm256_maskload_ps((ptr), m) : _mm256_loadu_ps(ptr))
#define ST(ptr, v) (masked ? _mm256_maskstore_ps((ptr), m, (v)) : _mm256_storeu_ps((ptr), (v)))

__attribute__((always_inline)) TGT static inline void g8(float *g, float *dw, const float *const *rows,
                                                         const float *wt, const float *dy, int K, int i, int silu,
                                                         __m256i m, int masked)
{
    __m256 gv = LD(dy + i);
    if (silu) {
        __m256 pre = _mm256_mul_ps(LD(wt + i), LD(rows[0] + i));
        for (int j = 1; j < K; j++) pre = _mm256_fmadd_ps(LD(wt + (size_t)j * CW + i), LD(rows[j] + i), pre);
        gv = _mm256_mul_ps(gv, dsilu256(pre));
    }
    ST(g + i, gv);
    for (int j = 0; j < K; j++) {
        float *d = dw + (size_t)j * CW + i;
        ST(d, _mm256_fmadd_ps(gv, LD(rows[j] + i), LD(d)));
    }
}

__attribute__((always_inline)) TGT static inline void g_avx2_k(float *g, float *dw, const float *const *rows,
                                                               const float *wt, const float *dy, int K, int n,
                                                               int silu)
{
    const __m256i none = _mm256_setzero_si256();
    int i = 0;
    for (; i + 8 <= n; i += 8) g8(g, dw, rows, wt, dy, K, i, silu, none, 0);
    if (i < n) {
        const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - i), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        g8(g, dw, rows, wt, dy, K, i, silu, m, 1);
    }
}

TGT static void g_avx2(float *g, float *dw, const float *const *rows, const float *wt, const float *dy, int K, int n,
                       int silu)
{
    if (K == 4) g_avx2_k(g, dw, rows, wt, dy, 4, n, silu); /* Qwen3.5's width, unrolled */
    else g_avx2_k(g, dw, rows, wt, dy, K, n, silu);
}

__attribute__((always_inline)) TGT static inline void dx8(float *out, const float *const *grows, const float *wt,
                                                          const float *extra, int K, int i, __m256i m, int masked)
{
    __m256 acc = extra ? LD(extra + i) : _mm256_setzero_ps();
    for (int j = 0; j < K; j++) acc = _mm256_fmadd_ps(LD(wt + (size_t)j * CW + i), LD(grows[j] + i), acc);
    ST(out + i, acc);
}

__attribute__((always_inline)) TGT static inline void dx_avx2_k(float *out, const float *const *grows,
                                                                const float *wt, const float *extra, int K, int n)
{
    const __m256i none = _mm256_setzero_si256();
    int i = 0;
    for (; i + 8 <= n; i += 8) dx8(out, grows, wt, extra, K, i, none, 0);
    if (i < n) {
        const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - i), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        dx8(out, grows, wt, extra, K, i, m, 1);
    }
}

TGT static void dx_avx2(float *out, const float *const *grows, const float *wt, const float *extra, int K, int n)
{
    if (K == 4) dx_avx2_k(out, grows, wt, extra, 4, n);
    else dx_avx2_k(out, grows, wt, extra, K, n);
}
#undef LD
#undef ST

/* Per-thread scratch, [rows][CW] each. */
typedef struct {
    float *wt, *dw, *ring, *st, *dsi, *dso, *zero;
} scratch;

/* Channels [c0, c0+n) of every sequence. */
static void block(const conv_grad_problem *p, g_fn gf, dx_fn df, int c0, int n, const scratch *s)
{
    const conv_problem *f = p->fwd;
    const int T = f->T, C = f->C, K = f->K, S = K - 1;
    for (int j = 0; j < K; j++)
        for (int i = 0; i < n; i++) {
            s->wt[(size_t)j * CW + i] = f->weight[(size_t)(c0 + i) * K + j];
            s->dw[(size_t)j * CW + i] = 0.0f;
        }
    const float *rows[CONV_K_MAX], *grows[CONV_K_MAX];
    for (int b = 0; b < f->B; b++) {
        const int len = conv_valid_len(f, b);
        for (int e = 0; e < S; e++) /* the state's columns (and d_state_out's) as token-major rows */
            for (int i = 0; i < n; i++) {
                const size_t at = ((size_t)b * C + c0 + i) * S + e;
                s->st[(size_t)e * CW + i] = f->state_in ? f->state_in[at] : 0.0f;
                if (p->d_state_out) s->dso[(size_t)e * CW + i] = p->d_state_out[at];
            }
        /* dx_ext[e] goes to d_state_in's rows or to x's */
#define DX_OUT(e) ((e) < S ? s->dsi + (size_t)(e) * CW : p->dx + ((size_t)b * T + ((e) - S)) * C + c0)
#define GROW(u) ((u) >= 0 && (u) < len ? s->ring + (size_t)((u) % K) * CW : s->zero)
        for (int t = 0; t < len; t++) {
            for (int j = 0; j < K; j++) {
                const int e = t + j;
                rows[j] = e < S ? s->st + (size_t)e * CW : f->x + ((size_t)b * T + (e - S)) * C + c0;
            }
            gf(s->ring + (size_t)(t % K) * CW, s->dw, rows, s->wt, p->dy + ((size_t)b * T + t) * C + c0, K, n,
               f->apply_silu);
            for (int j = 0; j < K; j++) grows[j] = GROW(t - j);
            df(DX_OUT(t), grows, s->wt, NULL, K, n);
        }
        for (int e = len; e < len + S; e++) { /* entries of state_out, whose gradients are all known now */
            for (int j = 0; j < K; j++) grows[j] = GROW(e - j);
            df(DX_OUT(e), grows, s->wt, p->d_state_out ? s->dso + (size_t)(e - len) * CW : NULL, K, n);
        }
#undef DX_OUT
#undef GROW
        for (int t = len; t < T; t++) /* right padding */
            memset(p->dx + ((size_t)b * T + t) * C + c0, 0, sizeof(float) * n);
        if (f->state_in)
            for (int i = 0; i < n; i++)
                for (int e = 0; e < S; e++)
                    p->d_state_in[((size_t)b * C + c0 + i) * S + e] = s->dsi[(size_t)e * CW + i];
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < K; j++) p->dweight[(size_t)(c0 + i) * K + j] = s->dw[(size_t)j * CW + i];
}

int conv_grad_direct(const conv_grad_problem *p, const conv_opts *o)
{
    const conv_problem *f = p->fwd;
    const int C = f->C, K = f->K;
    const int n_blocks = (C + CW - 1) / CW;
    int threads = o->threads > 0 ? o->threads : omp_get_max_threads();
    if ((long)f->B * f->T * C * K < SERIAL_WORK) threads = 1; /* a fork costs more than the work */
    if (threads > n_blocks) threads = n_blocks;
    const g_fn gf = cpu_isa() >= ISA_AVX2 ? g_avx2 : g_generic;
    const dx_fn df = cpu_isa() >= ISA_AVX2 ? dx_avx2 : dx_generic;
    /* rows of CW floats: wt K, dw K, ring K, st K-1, dsi K-1, dso K-1, zero 1 */
    const size_t rows = 3 * (size_t)K + 3 * (size_t)(K - 1) + 1;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *buf = malloc(sizeof(float) * CW * rows);
        if (!buf) failed = 1;
        scratch s = {0};
        if (buf) {
            s.wt = buf;
            s.dw = s.wt + (size_t)K * CW;
            s.ring = s.dw + (size_t)K * CW;
            s.st = s.ring + (size_t)K * CW;
            s.dsi = s.st + (size_t)(K - 1) * CW;
            s.dso = s.dsi + (size_t)(K - 1) * CW;
            s.zero = s.dso + (size_t)(K - 1) * CW;
            memset(s.zero, 0, sizeof(float) * CW);
        }
#pragma omp for schedule(static)
        for (int blk = 0; blk < n_blocks; blk++) {
            if (!buf) continue;
            const int c0 = blk * CW, n = C - c0 < CW ? C - c0 : CW;
            block(p, gf, df, c0, n, &s);
        }
        free(buf);
    }
    return failed ? -1 : 0;
}
