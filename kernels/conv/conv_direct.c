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


TGT static inline __m256 silu256(__m256 a) { return _mm256_mul_ps(a, q35_sigmoid256(a)); }

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

/* One token per sequence (decode, T = 1, no checkpoints), channel-major
 * (docs/conv.md §3, "One token"): channel c's window is its K-1 state values
 * and x[c], all next to each other in [C, K-1] / [C, K] rows, so neither the
 * weight transpose nor the state gather of the token-major path is needed
 * (those strided copies were 9/10 of a 37 us decode call).  The products
 * are summed in the order of conv8 (j = 0 first, one fused multiply-add per
 * further j), and the SiLU is the same function over the finished row, so
 * a token gives the same bits here as through the token-major path.
 * State in place: a channel's old values are read before its new ones are
 * written. */
#define TGT512 __attribute__((target("avx2,fma,avx512f")))

/* K = 4 with AVX-512, 16 channels per step, exact in what it computes: the
 * same products in the same order as the scalar loop below.  The taps of 16
 * channels (64 floats, [c][j]) and their states (48 floats, [c][i]) are
 * turned into columns by permutes; the new state is the old one shifted by a
 * float (eq. 2: [s1, s2, x]) with x expanded into every third lane.  Returns
 * the channels done (a multiple of 16); the caller finishes the rest. */
TGT512 static int token4_avx512(const float *x, const float *w, const float *si, float *so, float *y, int C)
{
    __m512i wlo[4], slo[3], shi[3];
    for (int j = 0; j < 4; j++) {
        int a[16];
        for (int k = 0; k < 16; k++) a[k] = (k & 7) < 4 ? 4 * (k & 3) + j : 16 + 4 * (k & 3) + j;
        wlo[j] = _mm512_loadu_si512(a);
    }
    for (int j = 0; j < 3; j++) {
        int a[16], b[16];
        for (int k = 0; k < 16; k++) {
            a[k] = 3 * k + j < 32 ? 3 * k + j : 0;
            b[k] = 3 * k + j >= 32 ? 3 * k + j - 32 : 0;
        }
        slo[j] = _mm512_loadu_si512(a);
        shi[j] = _mm512_loadu_si512(b);
    }
    /* the x lanes of the shifted state: flat index 3c + 2 */
    const __mmask16 xm0 = 0x4924, xm1 = 0x2492, xm2 = 0x9249;
    int c = 0;
    for (; c + 16 <= C; c += 16) {
        const float *wc = w + (size_t)c * 4;
        const __m512 W0 = _mm512_loadu_ps(wc), W1 = _mm512_loadu_ps(wc + 16);
        const __m512 W2 = _mm512_loadu_ps(wc + 32), W3 = _mm512_loadu_ps(wc + 48);
        __m512 wj[4], sj[3];
        for (int j = 0; j < 4; j++)
            wj[j] = _mm512_shuffle_f32x4(_mm512_permutex2var_ps(W0, wlo[j], W1), _mm512_permutex2var_ps(W2, wlo[j], W3),
                                         0x44);
        const __m512 xv = _mm512_loadu_ps(x + c);
        __m512 S0 = _mm512_setzero_ps(), S1 = S0, S2 = S0;
        if (si) {
            const float *sc = si + (size_t)c * 3;
            S0 = _mm512_loadu_ps(sc);
            S1 = _mm512_loadu_ps(sc + 16);
            S2 = _mm512_loadu_ps(sc + 32);
        }
        for (int j = 0; j < 3; j++)
            sj[j] = _mm512_mask_permutexvar_ps(_mm512_permutex2var_ps(S0, slo[j], S1), (__mmask16)(0xffffu << ((32 - j + 2) / 3)),
                                               shi[j], S2);
        __m512 acc = _mm512_mul_ps(wj[0], sj[0]);
        acc = _mm512_fmadd_ps(wj[1], sj[1], acc);
        acc = _mm512_fmadd_ps(wj[2], sj[2], acc);
        acc = _mm512_fmadd_ps(wj[3], xv, acc);
        _mm512_storeu_ps(y + c, acc);
        if (so) {
            const float *sc = si + (size_t)c * 3;
            const __m512 z = _mm512_setzero_ps();
            /* every state value is read above, before these writes (so may be si) */
            const __m512 N0 = _mm512_mask_expandloadu_ps(si ? _mm512_loadu_ps(sc + 1) : z, xm0, x + c);
            const __m512 N1 = _mm512_mask_expandloadu_ps(si ? _mm512_loadu_ps(sc + 17) : z, xm1, x + c + 5);
            const __m512 N2 = _mm512_mask_expandloadu_ps(si ? _mm512_maskz_loadu_ps(0x7fff, sc + 33) : z, xm2, x + c + 10);
            float *oc = so + (size_t)c * 3;
            _mm512_storeu_ps(oc, N0);
            _mm512_storeu_ps(oc + 16, N1);
            _mm512_storeu_ps(oc + 32, N2);
        }
    }
    return c;
}

/* eq. (2) for one token: channel c's new state is its old one shifted by one, x[c] last. */
static inline void shift_state(float *oc, const float *sc, float xc, int S)
{
    for (int i = 0; i + 1 < S; i++) oc[i] = sc ? sc[i + 1] : 0.0f;
    if (S) oc[S - 1] = xc;
}

TGT static void token_avx2(const float *x, const float *w, const float *si, float *so, float *y, int C, int K,
                           int silu)
{
    const int S = K - 1;
    const int c0 = K == 4 && cpu_isa() >= ISA_AVX512 ? token4_avx512(x, w, si, so, y, C) : 0;
    for (int c = c0; c < C; c++) {
        const float *wc = w + (size_t)c * K, *sc = si ? si + (size_t)c * S : NULL;
        float acc = wc[0] * (S ? (sc ? sc[0] : 0.0f) : x[c]);
        for (int j = 1; j < K; j++) acc = fmaf(wc[j], j < S ? (sc ? sc[j] : 0.0f) : x[c], acc);
        y[c] = acc;
        if (so) shift_state(so + (size_t)c * S, sc, x[c], S);
    }
    if (silu) {
        int i = 0;
        for (; i + 8 <= C; i += 8) _mm256_storeu_ps(y + i, silu256(_mm256_loadu_ps(y + i)));
        if (i < C) {
            const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(C - i), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            _mm256_maskstore_ps(y + i, m, silu256(_mm256_maskload_ps(y + i, m)));
        }
    }
}

static void token_generic(const float *x, const float *w, const float *si, float *so, float *y, int C, int K,
                          int silu)
{
    const int S = K - 1;
    for (int c = 0; c < C; c++) {
        const float *wc = w + (size_t)c * K, *sc = si ? si + (size_t)c * S : NULL;
        float acc = wc[0] * (S ? (sc ? sc[0] : 0.0f) : x[c]); /* row_generic's order */
        for (int j = 1; j < K; j++) acc += wc[j] * (j < S ? (sc ? sc[j] : 0.0f) : x[c]);
        y[c] = silu ? acc / (1.0f + expf(-acc)) : acc;
        if (so) shift_state(so + (size_t)c * S, sc, x[c], S);
    }
}

/* One token's channels go to the threads from this many: cold in a model step (the step's weights
 * evict the conv's), the 0.8B's C = 6144 took 0.40-0.44 ms a step on one thread and 0.26-0.28 on two
 * (`bench model --weights q4`, 3 alternated pairs; docs/conv.md §3); below, the fork costs more. */
#define ONE_TOKEN_SPLIT_C 2048
static void one_token(const conv_problem *p, int threads)
{
    const int C = p->C, K = p->K, S = K - 1;
    for (int b = 0; b < p->B; b++) {
        const float *si = p->state_in ? p->state_in + (size_t)b * C * S : NULL;
        float *so = p->state_out ? p->state_out + (size_t)b * C * S : NULL, *y = p->y + (size_t)b * C;
        if (conv_valid_len(p, b) == 0) { /* padding: zero output, state unchanged (eq. 2) */
            memset(y, 0, sizeof(float) * C);
            if (so && so != si) {
                if (si) memcpy(so, si, sizeof(float) * C * S);
                else memset(so, 0, sizeof(float) * C * S);
            }
            continue;
        }
        const float *x = p->x + (size_t)b * C;
        const int avx2 = cpu_isa() >= ISA_AVX2;
        /* Channels are independent (in place too): halves of C over the threads, whole cache lines
         * each, the same arithmetic per channel whatever the split. */
#pragma omp parallel num_threads(threads) if (threads > 1)
        {
            const int nt = omp_get_num_threads(), t = omp_get_thread_num();
            int c0 = (int)((long long)C * t / nt), c1 = (int)((long long)C * (t + 1) / nt);
            c0 = t == 0 ? 0 : c0 / 16 * 16;
            c1 = t == nt - 1 ? C : c1 / 16 * 16;
            if (c1 > c0) {
                const float *sic = si ? si + (size_t)c0 * S : NULL;
                float *soc = so ? so + (size_t)c0 * S : NULL;
                if (avx2) token_avx2(x + c0, p->weight + (size_t)c0 * K, sic, soc, y + c0, c1 - c0, K, p->apply_silu);
                else token_generic(x + c0, p->weight + (size_t)c0 * K, sic, soc, y + c0, c1 - c0, K, p->apply_silu);
            }
        }
    }
}

int conv_direct(const conv_problem *p, const conv_opts *o)
{
    const int B = p->B, T = p->T, C = p->C, K = p->K, S = K - 1;
    if (T == 1 && p->n_checkpoints == 0) {
        one_token(p, C >= ONE_TOKEN_SPLIT_C ? (o->threads > 0 ? o->threads : omp_get_max_threads()) : 1);
        return 0;
    }
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
