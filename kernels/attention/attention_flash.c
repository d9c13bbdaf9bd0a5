/* `flash`: causal GQA attention with the online (streaming) softmax
 * (docs/attention.md §3-§4).
 *
 * One pass over the keys and values of a KV head, in blocks of KB keys, with
 * the running max m, denominator l and accumulator a of every query row kept
 * in fp32 and rescaled by exp(m_old - m_new) when the max grows (eq. 3); the
 * result a / l equals the two-pass softmax of ref (eq. 4).  Nothing of size
 * O(context) is stored, and each K and V row is read once per task.
 *
 * Rows.  A task owns the G = Hq/Hkv query heads that share one KV head, for
 * a block of QB query tokens: G*QB rows of length D, processed together so
 * that each K/V row, once loaded, serves all of them (decode: the G heads of
 * the one new token; prefill: G heads x QB tokens).  Per key block:
 *   1. S = scale * Q K^T for the block (eq. 1), tiles of 4 rows x 2 keys so a
 *      loaded key vector feeds 4 FMAs;
 *   2. per row: causal mask (key j is seen by the row at position p iff
 *      j <= p), block max, m_new, alpha = exp(m - m_new), P = exp(S - m_new),
 *      l = alpha*l + sum P (eq. 3);
 *   3. a = alpha*a + P V, tiles of 4 rows x 16 columns of D, column strip
 *      outermost so a strip of V stays in L1 for every row group; the block
 *      sum starts from zero and is added to alpha*a at the end (a blocked
 *      sum: smaller rounding error over long contexts, §6).
 * Keys past the last query of the block are never touched; keys between a
 * row's own position and the block's last position get P = 0 exactly, so
 * future keys cannot change a row even in its last bit.
 *
 * Threads.  Tasks are (sequence b, KV head, query block), the largest
 * (latest query blocks, which see the most keys) first, dynamically
 * scheduled.  When that gives fewer tasks than threads (decode with few KV
 * heads), the key range of each task is cut into nsplit pieces as well
 * ("flash-decoding"): each piece produces a partial (m, l, a) and a second
 * loop merges them with eq. (5).  The split depends on the thread count, so
 * results can differ in the last bits between thread counts when it is used;
 * without it every row is computed identically whatever the threads.
 *
 * ISA.  AVX2 + FMA through target attributes when cpu_isa() allows it, a
 * plain C path with the same blocking otherwise (docs/design.md, "Run-time
 * ISA choice"); the tests run both.
 */
#include "kernels/attention/attention.h"
#include "kernels/cpu_features.h"
#include "kernels/exp_avx2.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define KB 64                 /* keys per block: a block of K (64 x D floats) stays in L2 */
#define ROWS_TARGET 64        /* query rows (heads x tokens) per task */
#define MIN_SPLIT_KEYS 256    /* a key split gets at least this many keys */
#define SERIAL_WORK (1L << 16) /* below this many (row, key, d) products, one thread */

/* Per-thread scratch of one task: rows of the running state (eq. 3). */
typedef struct {
    float *acc;          /* [rows][Dp] accumulators a */
    float *S;            /* [rows][KB] scores, then probabilities P */
    float *m, *l, *alpha;/* [rows] running max, denominator, this block's rescale */
    float *tmp;          /* [Dp] one row's block sum (generic path) */
    const float **q;     /* [rows] query row pointers */
    int *lim;            /* [rows] last key position the row may see (its own position) */
} scratch;

/* One key block [j0, j0+nk) for nr rows: steps 1-3 above.  K and V point at
 * key j0 of the KV head. */
typedef void (*block_fn)(scratch *w, int nr, const float *K, const float *V, int j0, int nk, int D, int Dp,
                         float scale);

/* ------------------------------------------------------------------ */
/* Generic C                                                            */
/* ------------------------------------------------------------------ */

static void block_generic(scratch *w, int nr, const float *K, const float *V, int j0, int nk, int D, int Dp,
                          float scale)
{
    for (int r = 0; r < nr; r++) {
        float *S = w->S + (size_t)r * KB, *a = w->acc + (size_t)r * Dp;
        const float *q = w->q[r];
        int nv = w->lim[r] - j0 + 1; /* causal: keys j0 .. lim[r] of this block */
        if (nv > nk) nv = nk;
        if (nv <= 0) continue;       /* the whole block lies in this row's future */
        /* eq. (1) */
        float bm = -INFINITY;
        for (int j = 0; j < nv; j++) {
            /* eight interleaved partial sums, as the AVX2 lanes: a shorter
             * rounding chain than one running sum, and independent adds */
            const float *k = K + (size_t)j * D;
            float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            int d = 0;
            for (; d + 8 <= D; d += 8)
                for (int u = 0; u < 8; u++) part[u] += q[d + u] * k[d + u];
            for (; d < D; d++) part[d % 8] += q[d] * k[d];
            const float dot = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
            S[j] = scale * dot;
            if (S[j] > bm) bm = S[j];
        }
        /* eq. (3): new max, rescale of the old state, new terms */
        const float m_new = w->m[r] > bm ? w->m[r] : bm;
        const float alpha = expf(w->m[r] - m_new); /* m = -inf (first block): 0 */
        float sum = 0.0f;
        for (int j = 0; j < nv; j++) {
            S[j] = expf(S[j] - m_new);
            sum += S[j];
        }
        w->l[r] = alpha * w->l[r] + sum;
        w->m[r] = m_new;
        /* the block's sum from zero, then a = alpha*a + it (blocked sum, §6) */
        float *bs = w->tmp;
        for (int d = 0; d < D; d++) bs[d] = 0.0f;
        for (int j = 0; j < nv; j++) {
            const float pj = S[j], *v = V + (size_t)j * D;
            for (int d = 0; d < D; d++) bs[d] += pj * v[d];
        }
        for (int d = 0; d < D; d++) a[d] = alpha * a[d] + bs[d];
    }
}

/* ------------------------------------------------------------------ */
/* AVX2 + FMA                                                           */
/* ------------------------------------------------------------------ */

#define TGT __attribute__((target("avx2,fma")))
#define INL static inline __attribute__((always_inline)) TGT

/* The first n lanes (1..8) set. */
INL __m256i lanes(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}


INL float hmax(__m256 v)
{
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}
INL float hsum(__m256 v)
{
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

/* Lane i of the result = the sum of the 8 lanes of v[i]. */
INL __m256 hsum8x8(const __m256 v[8])
{
    const __m256 s01 = _mm256_hadd_ps(v[0], v[1]), s23 = _mm256_hadd_ps(v[2], v[3]);
    const __m256 s45 = _mm256_hadd_ps(v[4], v[5]), s67 = _mm256_hadd_ps(v[6], v[7]);
    const __m256 a = _mm256_hadd_ps(s01, s23), b = _mm256_hadd_ps(s45, s67);
    return _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
}

/* eq. (1) for NR <= 4 rows x NK <= 2 keys: S[r*KB + k] = scale * q_r . k_k.
 * NR and NK are constants at every call; the eight accumulators are named
 * variables (GCC keeps those in registers, arrays indexed in loops it
 * spilled), and the rows and keys a call does not have are dead code. */
INL void qk_tile(const float *const *q, const float *K, int D, int NR, int NK, float scale, float *S)
{
    const __m256 z = _mm256_setzero_ps();
    __m256 a00 = z, a01 = z, a10 = z, a11 = z, a20 = z, a21 = z, a30 = z, a31 = z;
    const float *q0 = q[0], *q1 = NR > 1 ? q[1] : q0, *q2 = NR > 2 ? q[2] : q0, *q3 = NR > 3 ? q[3] : q0;
    const float *k0 = K, *k1 = K + (NK > 1 ? D : 0);
#define QK_STEP(LD)                                                          \
    do {                                                                     \
        const __m256 x0 = LD(k0 + d), x1 = NK > 1 ? LD(k1 + d) : z;          \
        __m256 y = LD(q0 + d);                                               \
        a00 = _mm256_fmadd_ps(y, x0, a00);                                   \
        if (NK > 1) a01 = _mm256_fmadd_ps(y, x1, a01);                       \
        if (NR > 1) {                                                        \
            y = LD(q1 + d);                                                  \
            a10 = _mm256_fmadd_ps(y, x0, a10);                               \
            if (NK > 1) a11 = _mm256_fmadd_ps(y, x1, a11);                   \
        }                                                                    \
        if (NR > 2) {                                                        \
            y = LD(q2 + d);                                                  \
            a20 = _mm256_fmadd_ps(y, x0, a20);                               \
            if (NK > 1) a21 = _mm256_fmadd_ps(y, x1, a21);                   \
        }                                                                    \
        if (NR > 3) {                                                        \
            y = LD(q3 + d);                                                  \
            a30 = _mm256_fmadd_ps(y, x0, a30);                               \
            if (NK > 1) a31 = _mm256_fmadd_ps(y, x1, a31);                   \
        }                                                                    \
    } while (0)
    int d = 0;
#define LDU(ptr) _mm256_loadu_ps(ptr)
    for (; d + 8 <= D; d += 8) QK_STEP(LDU);
    if (d < D) { /* odd D: masked lanes load 0 */
        const __m256i mk = lanes(D - d);
#define LDM(ptr) _mm256_maskload_ps((ptr), mk)
        QK_STEP(LDM);
#undef LDM
    }
#undef LDU
#undef QK_STEP
    const __m256 v[8] = {a00, a01, a10, a11, a20, a21, a30, a31};
    float dots[8];
    _mm256_storeu_ps(dots, _mm256_mul_ps(hsum8x8(v), _mm256_set1_ps(scale)));
    for (int r = 0; r < NR; r++)
        for (int k = 0; k < NK; k++) S[(size_t)r * KB + k] = dots[r * 2 + k];
}

/* eq. (1) for NR rows and keys [0, nk) of the block. */
INL void qk_rows(const float *const *q, const float *K, int D, int NR, int nk, float scale, float *S)
{
    int j = 0;
    for (; j + 2 <= nk; j += 2) qk_tile(q, K + (size_t)j * D, D, NR, 2, scale, S + j);
    if (j < nk) qk_tile(q, K + (size_t)j * D, D, NR, 1, scale, S + j);
}

/* eq. (3) for NR <= 4 rows, columns [d, d + 8*NC) of D (NC <= 2):
 * a_r = alpha_r a_r + sum_{j < nj} P[r][j] v_j.  MASK: the last chunk is
 * partial (odd D); the accumulators are Dp = D rounded up to 8 wide, so only
 * V needs the mask.  Named accumulators, as in qk_tile. */
INL void pv_tile(scratch *w, int r0, int NR, const float *V, int D, int Dp, int d, int NC, int nj, int MASK)
{
    const __m256i mk = MASK ? lanes(D - d - 8 * (NC - 1)) : _mm256_set1_epi32(-1);
    /* The block's sum starts from zero and is added to alpha * a at the end:
     * a two-level (blocked) sum, so rounding grows like sqrt(KB) +
     * sqrt(n / KB) rather than sqrt(n) over n keys (docs/attention.md §6). */
    const __m256 z = _mm256_setzero_ps();
    __m256 a00 = z, a01 = z, a10 = z, a11 = z, a20 = z, a21 = z, a30 = z, a31 = z;
    const float *P = w->S + (size_t)r0 * KB;
    const float *v0 = V + d, *v1 = V + d + 8;
    for (int j = 0; j < nj; j++, v0 += D, v1 += D) {
        __m256 x0, x1 = z;
        if (NC > 1) {
            x0 = _mm256_loadu_ps(v0);
            x1 = MASK ? _mm256_maskload_ps(v1, mk) : _mm256_loadu_ps(v1);
        } else {
            x0 = MASK ? _mm256_maskload_ps(v0, mk) : _mm256_loadu_ps(v0);
        }
        __m256 p = _mm256_broadcast_ss(P + j);
        a00 = _mm256_fmadd_ps(p, x0, a00);
        if (NC > 1) a01 = _mm256_fmadd_ps(p, x1, a01);
        if (NR > 1) {
            p = _mm256_broadcast_ss(P + KB + j);
            a10 = _mm256_fmadd_ps(p, x0, a10);
            if (NC > 1) a11 = _mm256_fmadd_ps(p, x1, a11);
        }
        if (NR > 2) {
            p = _mm256_broadcast_ss(P + 2 * KB + j);
            a20 = _mm256_fmadd_ps(p, x0, a20);
            if (NC > 1) a21 = _mm256_fmadd_ps(p, x1, a21);
        }
        if (NR > 3) {
            p = _mm256_broadcast_ss(P + 3 * KB + j);
            a30 = _mm256_fmadd_ps(p, x0, a30);
            if (NC > 1) a31 = _mm256_fmadd_ps(p, x1, a31);
        }
    }
    const __m256 sums[8] = {a00, a01, a10, a11, a20, a21, a30, a31};
    for (int r = 0; r < NR; r++) {
        const __m256 al = _mm256_set1_ps(w->alpha[r0 + r]);
        for (int c = 0; c < NC; c++) {
            float *dst = w->acc + (size_t)(r0 + r) * Dp + d + 8 * c;
            _mm256_storeu_ps(dst, _mm256_fmadd_ps(al, _mm256_loadu_ps(dst), sums[2 * r + c]));
        }
    }
}

/* Step 2 for row r: causal mask, online-softmax update (eq. 3); S[r] becomes
 * P (zero past the row's last visible key).  Returns the row's number of
 * visible keys in the block. */
TGT static int softmax_row(scratch *w, int r, int j0, int nk)
{
    float *S = w->S + (size_t)r * KB;
    int nv = w->lim[r] - j0 + 1;
    if (nv > nk) nv = nk;
    if (nv <= 0) { /* the block is in this row's future: P = 0, state unchanged */
        w->alpha[r] = 1.0f;
        memset(S, 0, sizeof(float) * (size_t)nk);
        return 0;
    }
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 mx = ninf;
    int j = 0;
    for (; j + 8 <= nv; j += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(S + j));
    if (j < nv) mx = _mm256_max_ps(mx, _mm256_blendv_ps(ninf, _mm256_loadu_ps(S + j), _mm256_castsi256_ps(lanes(nv - j))));
    const float bm = hmax(mx), m_old = w->m[r];
    const float m_new = m_old > bm ? m_old : bm;
    const float alpha = expf(m_old - m_new); /* first block: exp(-inf) = 0 */
    const __m256 mv = _mm256_set1_ps(m_new);
    __m256 sum = _mm256_setzero_ps();
    for (j = 0; j < nk; j += 8) { /* S has KB >= round8(nk) slots */
        __m256 pv = q35_exp256(_mm256_sub_ps(_mm256_loadu_ps(S + j), mv));
        if (j + 8 > nv) pv = _mm256_and_ps(pv, _mm256_castsi256_ps(lanes(nv - j))); /* masked keys: 0 */
        sum = _mm256_add_ps(sum, pv);
        _mm256_storeu_ps(S + j, pv);
    }
    w->l[r] = alpha * w->l[r] + hsum(sum);
    w->m[r] = m_new;
    w->alpha[r] = alpha;
    return nv;
}

/* Keys of the block that rows [r0, r0+NR) need: up to the largest visible
 * key among them (0: the block is in all their futures). */
static inline int group_need(const scratch *w, int r0, int NR, int j0, int nk)
{
    int need = 0;
    for (int r = r0; r < r0 + NR; r++)
        if (w->lim[r] - j0 + 1 > need) need = w->lim[r] - j0 + 1;
    return need < nk ? need : nk;
}

/* Step 3 for every row group, columns [d, d + 8*NC). */
INL void pv_cols(scratch *w, int nr, const float *V, int j0, int nk, int D, int Dp, int d, int NC, int MASK)
{
    for (int r0 = 0; r0 < nr; r0 += 4) {
        const int NR = nr - r0 < 4 ? nr - r0 : 4, need = group_need(w, r0, NR, j0, nk);
        if (need <= 0) continue;
        switch (NR) { /* constant row counts: tiles in registers */
        case 4: pv_tile(w, r0, 4, V, D, Dp, d, NC, need, MASK); break;
        case 3: pv_tile(w, r0, 3, V, D, Dp, d, NC, need, MASK); break;
        case 2: pv_tile(w, r0, 2, V, D, Dp, d, NC, need, MASK); break;
        default: pv_tile(w, r0, 1, V, D, Dp, d, NC, need, MASK); break;
        }
    }
}

TGT static void block_avx2(scratch *w, int nr, const float *K, const float *V, int j0, int nk, int D, int Dp,
                           float scale)
{
    /* Steps 1-2, one group of up to 4 rows at a time. */
    for (int r0 = 0; r0 < nr; r0 += 4) {
        const int NR = nr - r0 < 4 ? nr - r0 : 4, need = group_need(w, r0, NR, j0, nk);
        if (need <= 0) { /* whole group in the future of this block */
            for (int r = r0; r < r0 + NR; r++) w->alpha[r] = 1.0f;
            continue;
        }
        float *S = w->S + (size_t)r0 * KB;
        const float *const *q = w->q + r0;
        switch (NR) {
        case 4: qk_rows(q, K, D, 4, need, scale, S); break;
        case 3: qk_rows(q, K, D, 3, need, scale, S); break;
        case 2: qk_rows(q, K, D, 2, need, scale, S); break;
        default: qk_rows(q, K, D, 1, need, scale, S); break;
        }
        for (int r = r0; r < r0 + NR; r++) {
            /* Scores past `need` (up to the next multiple of 8) are read by
             * the vector loops of softmax_row and then masked: give them a
             * value. */
            float *Sr = w->S + (size_t)r * KB;
            for (int j = need; j < (need + 7) / 8 * 8; j++) Sr[j] = 0.0f;
            softmax_row(w, r, j0, need);
        }
    }
    /* Step 3 column strip by column strip: a strip of V (KB keys x 16
     * floats, 4 KB) stays in L1 while every row group uses it. */
    const int full = D / 8 * 8; /* columns covered by unmasked chunks */
    int d = 0;
    for (; d + 16 <= full; d += 16) pv_cols(w, nr, V, j0, nk, D, Dp, d, 2, 0);
    if (d + 8 <= full) { pv_cols(w, nr, V, j0, nk, D, Dp, d, 1, 0); d += 8; }
    if (d < D) pv_cols(w, nr, V, j0, nk, D, Dp, d, 1, 1);
}

/* ------------------------------------------------------------------ */
/* Driver                                                               */
/* ------------------------------------------------------------------ */

typedef struct {
    const attention_problem *p;
    int G, QB, nqb, nsplit, Dp;
    float scale;
    block_fn block;
    float *part; /* nsplit > 1: [B][Hkv][T][G][nsplit] x (m, l, a[Dp]) */
} plan;

static size_t part_at(const plan *pl, int b, int kvh, int t, int g, int s)
{
    const attention_problem *p = pl->p;
    const size_t row = (((size_t)b * p->Hkv + kvh) * p->T + t) * pl->G + g;
    return (row * pl->nsplit + s) * (size_t)(pl->Dp + 2);
}

/* One task: sequence b, KV head kvh, query tokens [t0, t1), key piece s. */
static void run_task(const plan *pl, scratch *w, int b, int kvh, int qb, int s)
{
    const attention_problem *p = pl->p;
    const int T = p->T, Hq = p->Hq, D = p->D, Dp = pl->Dp, G = pl->G;
    const int past = attention_past(p, b), len = attention_valid_len(p, b);
    const int t0 = qb * pl->QB, t1 = t0 + pl->QB < T ? t0 + pl->QB : T, tv = t1 < len ? t1 : len;

    if (s == 0) /* right padding: zero rows (once, by piece 0) */
        for (int t = tv > t0 ? tv : t0; t < t1; t++)
            memset(p->out + (((size_t)b * T + t) * Hq + (size_t)kvh * G) * D, 0, sizeof(float) * (size_t)G * D);
    if (tv <= t0) return;

    const int nr = (tv - t0) * G;
    for (int t = t0; t < tv; t++)
        for (int g = 0; g < G; g++) {
            const int r = (t - t0) * G + g;
            w->q[r] = p->q + (((size_t)b * T + t) * Hq + (size_t)kvh * G + g) * D;
            w->lim[r] = past + t; /* causal: position p sees keys 0..p (eq. 1) */
            w->m[r] = -INFINITY;
            w->l[r] = 0.0f;
        }
    memset(w->acc, 0, sizeof(float) * (size_t)nr * Dp);

    /* Keys this task reads: 0 .. past+tv-1 (the last row's position), cut
     * into nsplit pieces of whole blocks. */
    const int nkeys = past + tv;
    int chunk = (nkeys + pl->nsplit - 1) / pl->nsplit;
    chunk = (chunk + KB - 1) / KB * KB;
    const long long k0 = (long long)s * chunk;
    const int ks0 = k0 < nkeys ? (int)k0 : nkeys;
    const int ks1 = (long long)ks0 + chunk < nkeys ? ks0 + chunk : nkeys;
    const size_t head = ((size_t)b * p->Hkv + kvh) * p->L * D;
    for (int j0 = ks0; j0 < ks1; j0 += KB) {
        const int nk = ks1 - j0 < KB ? ks1 - j0 : KB;
        pl->block(w, nr, p->k_cache + head + (size_t)j0 * D, p->v_cache + head + (size_t)j0 * D, j0, nk, D, Dp,
                  pl->scale);
    }

    for (int t = t0; t < tv; t++)
        for (int g = 0; g < G; g++) {
            const int r = (t - t0) * G + g;
            const float *a = w->acc + (size_t)r * Dp;
            if (pl->nsplit == 1) { /* eq. (4): out = a / l; l >= 1 (the max term is exp(0)) */
                float *o = p->out + (((size_t)b * T + t) * Hq + (size_t)kvh * G + g) * D;
                const float l = w->l[r];
                for (int d = 0; d < D; d++) o[d] = a[d] / l;
            } else { /* partial state of this piece, merged by eq. (5) */
                float *dst = pl->part + part_at(pl, b, kvh, t, g, s);
                dst[0] = w->m[r];
                dst[1] = w->l[r];
                memcpy(dst + 2, a, sizeof(float) * (size_t)D);
            }
        }
}

/* eq. (5): merge the nsplit partial states of one row into out. */
static void merge_row(const plan *pl, int b, int kvh, int t, int g)
{
    const attention_problem *p = pl->p;
    const int D = p->D;
    float M = -INFINITY;
    for (int s = 0; s < pl->nsplit; s++) {
        const float m = pl->part[part_at(pl, b, kvh, t, g, s)];
        if (m > M) M = m;
    }
    float *o = p->out + (((size_t)b * p->T + t) * p->Hq + (size_t)kvh * pl->G + g) * D;
    float l = 0.0f;
    for (int d = 0; d < D; d++) o[d] = 0.0f;
    for (int s = 0; s < pl->nsplit; s++) {
        const float *src = pl->part + part_at(pl, b, kvh, t, g, s);
        if (src[0] == -INFINITY) continue; /* an empty piece (no keys) */
        const float c = expf(src[0] - M);
        l += c * src[1];
        for (int d = 0; d < D; d++) o[d] += c * src[2 + d];
    }
    for (int d = 0; d < D; d++) o[d] /= l;
}

int attention_flash(const attention_problem *p, const attention_opts *o)
{
    const int B = p->B, T = p->T, Hkv = p->Hkv, D = p->D;
    plan pl = {.p = p, .G = p->Hq / Hkv, .Dp = (D + 7) / 8 * 8, .scale = attention_scale(p)};
    pl.QB = ROWS_TARGET / pl.G > 0 ? ROWS_TARGET / pl.G : 1;
    if (pl.QB > T) pl.QB = T;
    pl.nqb = (T + pl.QB - 1) / pl.QB;
    pl.block = cpu_isa() >= ISA_AVX2 ? block_avx2 : block_generic;

    int threads = o->threads > 0 ? o->threads : omp_get_max_threads();
    long long work = 0; /* (row, key, d) products, as attention_flops / 4 */
    int max_keys = 0;
    for (int b = 0; b < B; b++) {
        const long long past = attention_past(p, b), len = attention_valid_len(p, b);
        work += (len * past + len * (len + 1) / 2) * p->Hq * D;
        if (len && past + len > max_keys) max_keys = (int)(past + len);
    }
    if (work < SERIAL_WORK) threads = 1; /* a fork costs more than the work */

    /* Key split when (b, KV head, query block) tasks cannot fill the threads. */
    const long long base = (long long)B * Hkv * pl.nqb;
    pl.nsplit = 1;
    if (base < threads) {
        int ns = (int)((threads + base - 1) / base);
        const int most = max_keys / MIN_SPLIT_KEYS;
        if (ns > most) ns = most;
        if (ns > 1) pl.nsplit = ns;
    }
    if (pl.nsplit > 1) {
        pl.part = malloc(sizeof(float) * (size_t)B * Hkv * T * pl.G * pl.nsplit * (pl.Dp + 2));
        if (!pl.part) return -1;
    }

    /* Scratch per thread, one allocation: acc, S, m, l, alpha, tmp (floats),
     * then the q pointers and limits. */
    const int rows = pl.QB * pl.G;
    const size_t nf = ((size_t)rows * (pl.Dp + KB + 3) + pl.Dp + 15) / 16 * 16; /* keeps the pointers aligned */
    size_t per = sizeof(float) * nf + sizeof(const float *) * rows + sizeof(int) * rows;
    per = (per + 63) / 64 * 64;
    char *mem = aligned_alloc(64, per * (size_t)threads);
    if (!mem) { free(pl.part); return -1; }

    const long long ntasks = base * pl.nsplit;
#pragma omp parallel num_threads(threads)
    {
        char *mine = mem + per * (size_t)omp_get_thread_num();
        scratch w;
        w.acc = (float *)mine;
        w.S = w.acc + (size_t)rows * pl.Dp;
        w.m = w.S + (size_t)rows * KB;
        w.l = w.m + rows;
        w.alpha = w.l + rows;
        w.tmp = w.alpha + rows;
        w.q = (const float **)(void *)(mine + sizeof(float) * nf);
        w.lim = (int *)(void *)(w.q + rows);
#pragma omp for schedule(dynamic, 1)
        for (long long i = 0; i < ntasks; i++) {
            /* Latest query blocks first: under the causal mask they see the
             * most keys, so the long tasks start early. */
            const int s = (int)(i % pl.nsplit);
            long long r = i / pl.nsplit;
            const int kvh = (int)(r % Hkv);
            r /= Hkv;
            const int b = (int)(r % B), qb = pl.nqb - 1 - (int)(r / B);
            run_task(&pl, &w, b, kvh, qb, s);
        }
        if (pl.nsplit > 1) { /* implicit barrier above: every piece is written */
#pragma omp for schedule(static)
            for (long long i = 0; i < (long long)B * Hkv * T * pl.G; i++) {
                const int g = (int)(i % pl.G);
                long long r = i / pl.G;
                const int t = (int)(r % T);
                r /= T;
                const int kvh = (int)(r % Hkv), b = (int)(r / Hkv);
                if (t < attention_valid_len(p, b)) merge_row(&pl, b, kvh, t, g);
            }
        }
    }
    free(mem);
    free(pl.part);
    return 0;
}
