/* The full-attention implementation table, problem validation and dispatch
 * (the pattern of kernels/conv/conv_table.c, docs/design.md).
 *
 * A new implementation is one new file plus one line in attention_impls[].
 */
#include "common/clock.h"
#include "common/sde_counters.h"
#include "common/float_checks.h"
#include "kernels/attention/attention.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

const attention_impl attention_impls[] = {
    {"flash", "online softmax over 64-key blocks in fp32, query heads of a KV group together, "
              "AVX-512 / AVX2 (one source at 16 and 8 lanes) / generic C, "
              "OpenMP over (b, kv head, query block[, key split])",
     attention_flash, {0}, 2e-6, NULL},
};
const int attention_n_impls = (int)(sizeof attention_impls / sizeof attention_impls[0]);

const attention_impl *attention_find(const char *name)
{
    if (!name) return NULL;
    for (int i = 0; i < attention_n_impls; i++)
        if (!strcmp(attention_impls[i].name, name)) return &attention_impls[i];
    return NULL;
}

#define FAIL(...) do { if (err && errlen) snprintf(err, errlen, __VA_ARGS__); return -1; } while (0)

/* First non-finite entry of n floats, or -1. */
static long long first_nonfinite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return (long long)i;
    return -1;
}

int attention_validate(const attention_problem *p, int check_values, char *err, size_t errlen)
{
    if (!p) FAIL("attention: no problem given");
    if (p->B < 1 || p->T < 1 || p->Hq < 1 || p->Hkv < 1 || p->D < 1 || p->L < 1)
        FAIL("attention: every dimension must be positive (B=%d T=%d Hq=%d Hkv=%d D=%d L=%d)", p->B, p->T,
             p->Hq, p->Hkv, p->D, p->L);
    if (p->Hq % p->Hkv)
        FAIL("attention: Hq=%d is not a multiple of Hkv=%d (each KV head serves Hq/Hkv query heads)", p->Hq,
             p->Hkv);
    const long long nq = (long long)p->B * p->T * p->Hq * p->D;
    const long long nc = (long long)p->B * p->Hkv * p->L * p->D;
    if (nq > (1LL << 40) / 4 || nc > (1LL << 40) / 4)
        FAIL("attention: tensors too large (B*T*Hq*D = %lld, B*Hkv*L*D = %lld elements)", nq, nc);
    const struct { const char *name; const void *ptr; } need[] = {
        {"q", p->q}, {"k_cache", p->k_cache}, {"v_cache", p->v_cache}, {"out", p->out}};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (!need[i].ptr) FAIL("attention: missing tensor '%s'", need[i].name);
    if (!isfinite(p->scale)) FAIL("attention: scale=%g is not finite (0 means 1/sqrt(D))", p->scale);
    for (int b = 0; b < p->B; b++) {
        const int past = attention_past(p, b), len = attention_valid_len(p, b);
        if (past < 0) FAIL("attention: past[%d]=%d is negative", b, past);
        if (len < 0 || len > p->T) FAIL("attention: seq_len[%d]=%d outside [0, T=%d]", b, len, p->T);
        if ((long long)past + len > p->L)
            FAIL("attention: past[%d] + seq_len[%d] = %d + %d = %lld exceeds the cache capacity L=%d", b, b, past,
                 len, (long long)past + len, p->L);
    }
    const struct { const char *name; const void *ptr; size_t n; } in[] = {
        {"q", p->q, (size_t)nq}, {"k_cache", p->k_cache, (size_t)nc}, {"v_cache", p->v_cache, (size_t)nc}};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
        if (q35_floats_overlap(p->out, (size_t)nq, in[i].ptr, in[i].n))
            FAIL("attention: out overlaps '%s' (the output must be a separate buffer)", in[i].name);
    if (check_values) {
        /* Only what the kernels read: q of valid tokens, cache rows 0 .. past+len-1. */
        const int T = p->T, Hq = p->Hq, Hkv = p->Hkv, D = p->D, L = p->L;
        for (int b = 0; b < p->B; b++) {
            const int past = attention_past(p, b), len = attention_valid_len(p, b);
            for (int t = 0; t < len; t++) {
                const float *row = p->q + ((size_t)b * T + t) * Hq * D;
                const long long at = first_nonfinite(row, (size_t)Hq * D);
                if (at >= 0)
                    FAIL("attention: q has a non-finite value (%g) at [b=%d, t=%d, h=%d, d=%d]", row[at], b, t,
                         (int)(at / D), (int)(at % D));
            }
            if (!len) continue; /* nothing of the cache is read */
            const struct { const char *name; const float *x; } c[] = {{"k_cache", p->k_cache}, {"v_cache", p->v_cache}};
            for (size_t i = 0; i < 2; i++)
                for (int h = 0; h < Hkv; h++) {
                    const float *rows = c[i].x + ((size_t)b * Hkv + h) * L * D;
                    const long long at = first_nonfinite(rows, (size_t)(past + len) * D);
                    if (at >= 0)
                        FAIL("attention: %s has a non-finite value (%g) at [b=%d, h=%d, pos=%d, d=%d] "
                             "(a used row: pos < past+seq_len = %d)",
                             c[i].name, rows[at], b, h, (int)(at / D), (int)(at % D), past + len);
                }
        }
    }
    return 0;
}

long long attention_flops(const attention_problem *p)
{
    /* Token t of sequence b attends positions 0 .. past+t: past+t+1 keys. */
    long long pairs = 0;
    for (int b = 0; b < p->B; b++) {
        const long long past = attention_past(p, b), len = attention_valid_len(p, b);
        pairs += len * past + len * (len + 1) / 2;
    }
    return 4LL * p->D * p->Hq * pairs;
}

/* Software-defined counters (docs/counters.md): the useful work, the same
 * for every implementation; bytes are each datum once.  The KV cache is the
 * attention's state: its used rows count as state read. */
static void count_work(const attention_problem *p)
{
    long long tokens = 0, cached = 0;
    for (int b = 0; b < p->B; b++) {
        const int len = attention_valid_len(p, b);
        tokens += len;
        if (len) cached += attention_past(p, b) + len;
    }
    q35_sde_add(Q35_SDE_TOKENS, tokens);
    q35_sde_add(Q35_SDE_FLOPS, attention_flops(p));
    q35_sde_add(Q35_SDE_STATE_BYTES_READ, 2LL * 4 * p->Hkv * p->D * cached);
    q35_sde_add(Q35_SDE_WEIGHT_BYTES_READ, 4LL * p->Hq * p->D * tokens);
}

int attention_run(const attention_impl *impl, const attention_problem *p, const attention_opts *opts, char *err,
                  size_t errlen)
{
    if (!impl) FAIL("attention: no implementation given");
    if (impl->available && !impl->available())
        FAIL("attention: implementation '%s' is not supported on this CPU", impl->name);
    if (attention_validate(p, 0, err, errlen)) return -1;
    attention_opts o = impl->defaults;
    if (opts && opts->threads) o.threads = opts->threads;
    if (o.threads < 0) FAIL("attention: thread count %d is negative", o.threads);
    const double t0 = q35_now();
    if (impl->run(p, &o)) FAIL("attention: implementation '%s' failed (out of memory?)", impl->name);
    q35_sde_add_since(Q35_SDE_ATTENTION_NS, t0);
    count_work(p);
    return 0;
}
