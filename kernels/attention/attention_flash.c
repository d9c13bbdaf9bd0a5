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
 * ISA.  The SIMD block kernel is one source, attention_flash_simd.inc,
 * compiled with target attributes at 16 lanes (AVX-512F, when cpu_isa() >=
 * ISA_AVX512) and 8 (AVX2 + FMA, at ISA_AVX2); a plain C path with the same
 * blocking otherwise (docs/design.md, "Run-time ISA choice").  What the width
 * changes in the numerics is said there; the tests run every level.
 */
#include "kernels/attention/attention.h"
#include "kernels/attention/attention_flash_internal.h"
#include "kernels/cpu_features.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define ROWS_TARGET 64        /* query rows (heads x tokens) per task */
#define MIN_SPLIT_KEYS 256    /* a key split gets at least this many keys */
#define SERIAL_WORK (1L << 16) /* below this many (row, key, d) products, one thread */

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
            const float *qr = p->q + (((size_t)b * T + t) * Hq + (size_t)kvh * G + g) * D;
            if (pl->block != block_generic) { /* 64-byte-aligned copy: whole cache lines per vector load */
                float *c = w->qbuf + (size_t)r * Dp;
                memcpy(c, qr, sizeof(float) * (size_t)D);
                qr = c;
            }
            w->q[r] = qr;
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
    plan pl = {.p = p, .G = p->Hq / Hkv, .Dp = (D + DP_ALIGN - 1) / DP_ALIGN * DP_ALIGN, .scale = attention_scale(p)};
    pl.QB = ROWS_TARGET / pl.G > 0 ? ROWS_TARGET / pl.G : 1;
    if (pl.QB > T) pl.QB = T;
    pl.nqb = (T + pl.QB - 1) / pl.QB;
    pl.block = cpu_isa() >= ISA_AVX512 ? attention_flash_block_avx512
               : cpu_isa() >= ISA_AVX2 ? attention_flash_block_avx2
                                       : block_generic;

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
    /* acc, qbuf, kbuf, vbuf first: Dp is a multiple of 16, so each is 64-byte aligned */
    const size_t nf = ((size_t)rows * (2 * pl.Dp + KB + 3) + (size_t)(2 * KB + 1) * pl.Dp + 15) / 16 * 16;
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
        w.qbuf = w.acc + (size_t)rows * pl.Dp;
        w.kbuf = w.qbuf + (size_t)rows * pl.Dp;
        w.vbuf = w.kbuf + (size_t)KB * pl.Dp;
        w.S = w.vbuf + (size_t)KB * pl.Dp;
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
