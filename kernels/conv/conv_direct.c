/* `direct`: the short causal conv, token-major and vectorized across channels
 * (docs/conv.md §3).
 *
 * x is [B, T, C], so for one token the C channels are contiguous: each output
 * row y[b, t, :] is K multiply-adds of contiguous rows
 *     y[t, c] = sum_j wt[j][c] * x_ext[t + j][c]                 (eq. 1)
 * with wt = weightᵀ ([K][C], transposed once per call so that its rows are
 * contiguous too) and x_ext[e] a row of x for e >= K-1, or, for the first
 * K-1 tokens, a row of the state gathered from its [C, K-1] layout into a
 * small token-major buffer.  Channels are cut into tiles of CB (4096: long
 * sequential rows; 256-channel tiles measured slower, their rows sit 24 KB
 * apart on the same L1 sets); consecutive tokens reuse K-1 of their K input
 * rows from cache.
 *
 * Work is split over (sequence, block of TB tokens) and, when that gives too
 * few tasks for the threads (decode: T = 1), over channel chunks as well.
 * The new state and the checkpoints are written after a barrier, so
 * state_out may be state_in.
 *
 * AVX2 + FMA through target attributes when cpu_isa() allows it, plain C
 * otherwise (docs/design.md, "Run-time ISA choice").
 */
#include "kernels/conv/conv.h"
#include "kernels/cpu_features.h"
#include "kernels/exp_avx2.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define CB 4096                /* channels per tile (K input rows of a token stay in L2) */
#define TB 32                  /* tokens per task */
#define ST_FLOATS 12288        /* per-thread state buffer (48 KB): (K-1) rows of one tile */
#define SERIAL_WORK (1L << 17) /* below this many multiply-adds, one thread */

/* out[0..n) = act( sum_j w[j*ldw + i] * rows[j][i] ) */
typedef void (*row_fn)(float *out, const float *const *rows, const float *w, size_t ldw, int K, int n,
                       int silu);

static void row_generic(float *restrict out, const float *const *rows, const float *w, size_t ldw, int K,
                        int n, int silu)
{
    for (int i = 0; i < n; i++) out[i] = w[i] * rows[0][i];
    for (int j = 1; j < K; j++) {
        const float *restrict r = rows[j], *restrict wj = w + (size_t)j * ldw;
        for (int i = 0; i < n; i++) out[i] += wj[i] * r[i];
    }
    if (silu)
        for (int i = 0; i < n; i++) out[i] = out[i] / (1.0f + expf(-out[i]));
}

#define TGT __attribute__((target("avx2,fma")))


TGT static inline __m256 silu256(__m256 a)
{
    /* a / d by a reciprocal estimate and one Newton step (d >= 1, finite by
     * the clamp in q35_exp256): ~1 ulp, and far cheaper than vdivps. */
    const __m256 d = _mm256_add_ps(_mm256_set1_ps(1.0f), q35_exp256(_mm256_sub_ps(_mm256_setzero_ps(), a)));
    __m256 r = _mm256_rcp_ps(d);
    r = _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, _mm256_set1_ps(2.0f)));
    return _mm256_mul_ps(a, r);
}

/* One vector of 8 channels; K is a constant where the caller makes it one. */
__attribute__((always_inline)) TGT static inline __m256 conv8(const float *const *rows, const float *w,
                                                               size_t ldw, int K, int i, __m256i m,
                                                               int masked)
{
#define LD(ptr) (masked ? _mm256_maskload_ps((ptr), m) : _mm256_loadu_ps(ptr))
    __m256 acc = _mm256_mul_ps(LD(w + i), LD(rows[0] + i));
    for (int j = 1; j < K; j++) acc = _mm256_fmadd_ps(LD(w + (size_t)j * ldw + i), LD(rows[j] + i), acc);
    return acc;
#undef LD
}

__attribute__((always_inline)) TGT static inline void row_avx2_k(float *out, const float *const *rows,
                                                                  const float *w, size_t ldw, int K, int n,
                                                                  int silu)
{
    const __m256i none = _mm256_setzero_si256();
    int i = 0;
    for (; i + 16 <= n; i += 16) { /* two independent chains */
        __m256 a0 = conv8(rows, w, ldw, K, i, none, 0), a1 = conv8(rows, w, ldw, K, i + 8, none, 0);
        if (silu) { a0 = silu256(a0); a1 = silu256(a1); }
        _mm256_storeu_ps(out + i, a0);
        _mm256_storeu_ps(out + i + 8, a1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 a = conv8(rows, w, ldw, K, i, none, 0);
        if (silu) a = silu256(a);
        _mm256_storeu_ps(out + i, a);
    }
    if (i < n) { /* masked lanes neither load nor store */
        const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - i), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256 a = conv8(rows, w, ldw, K, i, m, 1);
        if (silu) a = silu256(a);
        _mm256_maskstore_ps(out + i, m, a);
    }
}

TGT static void row_avx2(float *out, const float *const *rows, const float *w, size_t ldw, int K, int n,
                         int silu)
{
    if (K == 4) row_avx2_k(out, rows, w, ldw, 4, n, silu); /* Qwen3.5's width, unrolled */
    else row_avx2_k(out, rows, w, ldw, K, n, silu);
}

/* Outputs of sequence b, tokens [t0, t1), channels [c0, c1). */
static void tile(const conv_problem *p, const float *wt, row_fn row, int b, int t0, int t1, int c0, int c1,
                 float *st, int cbw)
{
    const int T = p->T, C = p->C, K = p->K, S = K - 1;
    const int len = conv_valid_len(p, b), tv = t1 < len ? t1 : len;
    const float *rows[CONV_K_MAX];
    for (int cb = c0; cb < c1; cb += cbw) {
        const int n = c1 - cb < cbw ? c1 - cb : cbw;
        if (t0 < tv && t0 < S) /* the state's columns as token-major rows */
            for (int u = 0; u < S; u++)
                for (int i = 0; i < n; i++)
                    st[(size_t)u * cbw + i] = p->state_in ? p->state_in[((size_t)b * C + cb + i) * S + u] : 0.0f;
        for (int t = t0; t < tv; t++) {
            for (int j = 0; j < K; j++) {
                const int e = t + j;
                rows[j] = e < S ? st + (size_t)e * cbw : p->x + ((size_t)b * T + (e - S)) * C + cb;
            }
            row(p->y + ((size_t)b * T + t) * C + cb, rows, wt + cb, (size_t)C, K, n, p->apply_silu);
        }
        for (int t = tv > t0 ? tv : t0; t < t1; t++) /* right padding */
            memset(p->y + ((size_t)b * T + t) * C + cb, 0, sizeof(float) * n);
    }
}

int conv_direct(const conv_problem *p, const conv_opts *o)
{
    const int B = p->B, T = p->T, C = p->C, K = p->K, S = K - 1;
    float *wt = malloc(sizeof(float) * (size_t)C * K);
    if (!wt) return -1;
    int threads = o->threads > 0 ? o->threads : omp_get_max_threads();
    if ((long)B * T * C * K < SERIAL_WORK) threads = 1; /* a fork costs more than the work */

    /* Tasks: (sequence, token block) x channel chunks, enough for 2 per thread. */
    const int n_tb = (T + TB - 1) / TB;
    const long seq_tasks = (long)B * n_tb;
    int n_cc = 1;
    if (seq_tasks < 2L * threads) n_cc = (int)((2L * threads + seq_tasks - 1) / seq_tasks);
    int cc = (C + n_cc - 1) / n_cc;
    cc = (cc + 15) / 16 * 16; /* whole cache lines */
    n_cc = (C + cc - 1) / cc;
    const long n_tasks = seq_tasks * n_cc;

    int cbw = S ? ST_FLOATS / S : CB;
    if (cbw > CB) cbw = CB;
    cbw = cbw / 8 * 8; /* >= 64 since K <= CONV_K_MAX */
    const row_fn row = cpu_isa() >= ISA_AVX2 ? row_avx2 : row_generic;

#pragma omp parallel num_threads(threads)
    {
        float st[ST_FLOATS];
#pragma omp for schedule(static)
        for (int c = 0; c < C; c++)
            for (int j = 0; j < K; j++) wt[(size_t)j * C + c] = p->weight[(size_t)c * K + j];
        /* implicit barrier: wt complete */
#pragma omp for schedule(static)
        for (long task = 0; task < n_tasks; task++) {
            const int ci = (int)(task % n_cc);
            const long bt = task / n_cc;
            const int b = (int)(bt / n_tb), t0 = (int)(bt % n_tb) * TB;
            const int t1 = t0 + TB < T ? t0 + TB : T, c0 = ci * cc, c1 = c0 + cc < C ? c0 + cc : C;
            tile(p, wt, row, b, t0, t1, c0, c1, st, cbw);
        }
        /* implicit barrier: every read of state_in is done, so state_out may
         * overwrite it.  eq. (2): the new state is x_ext[len .. len+K-2];
         * index len+i >= i is read before i is written. */
        if ((p->state_out || p->n_checkpoints) && S > 0) {
#pragma omp for schedule(static)
            for (long bc = 0; bc < (long)B * C; bc++) {
                const int b = (int)(bc / C), c = (int)(bc % C), len = conv_valid_len(p, b);
                const float *si = p->state_in ? p->state_in + (size_t)bc * S : NULL;
                /* Checkpoints (docs/conv.md §"Checkpoints"): the window after
                 * token t is x_ext[e0 .. e0+K-2], e0 = min(t+1, len); written
                 * before state_out, which may overwrite state_in. */
                for (int k = 0; k < p->n_checkpoints; k++) {
                    const int e0 = p->checkpoint_t[k] + 1 < len ? p->checkpoint_t[k] + 1 : len;
                    float *ck = p->checkpoint_states + ((size_t)k * B * C + bc) * S;
                    for (int i = 0; i < S; i++) {
                        const int e = e0 + i;
                        ck[i] = e < S ? (si ? si[e] : 0.0f) : p->x[((size_t)b * T + (e - S)) * C + c];
                    }
                }
                if (!p->state_out) continue;
                float *so = p->state_out + (size_t)bc * S;
                for (int i = 0; i < S; i++) {
                    const int e = len + i;
                    so[i] = e < S ? (si ? si[e] : 0.0f) : p->x[((size_t)b * T + (e - S)) * C + c];
                }
            }
        }
    }
    free(wt);
    return 0;
}
