/* speculative.c - draft, verify in one call, keep the accepted prefix
 * (speculative.h; docs/speculative.md has the step and its invariants). */
#include "model/speculative.h"

#include "common/clock.h"
#include "common/errmsg.h"
#include "model/generate.h"
#include "model/mtp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int q35_draft_source_parse(const char *text, q35_spec_opts *o, char *err, size_t errlen)
{
    if (!strcmp(text, "mtp")) { o->source = Q35_DRAFT_MTP; return 0; }
    if (!strcmp(text, "ngram")) { o->source = Q35_DRAFT_NGRAM; return 0; }
    if (!strncmp(text, "oracle:", 7)) {
        char *end;
        const double p = strtod(text + 7, &end);
        if (end != text + 7 && !*end && p >= 0.0 && p <= 1.0) {
            o->source = Q35_DRAFT_ORACLE;
            o->oracle_p = p;
            return 0;
        }
    }
    q35_errmsg(err, errlen, "draft source '%s': expected mtp, ngram or oracle:P with 0 <= P <= 1", text);
    return -1;
}

const char *q35_draft_source_name(q35_draft_source s)
{
    return s == Q35_DRAFT_MTP ? "mtp" : s == Q35_DRAFT_NGRAM ? "ngram" : s == Q35_DRAFT_ORACLE ? "oracle" : "?";
}

/* splitmix64: the oracle's coin for (sequence, output index), the same
 * whatever the batch or the draft length, so runs can be compared. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* The greedy token at output index j, or with probability 1 - p another one. */
static int32_t oracle_draft(const q35_spec_opts *o, int steps, int b, int j, int V)
{
    const int32_t right = o->oracle[(size_t)b * steps + j];
    const uint64_t r = mix64(o->seed ^ ((uint64_t)b << 40) ^ (uint64_t)j);
    if ((double)(r >> 11) * 0x1.0p-53 < o->oracle_p || V < 2) return right;
    return (int32_t)((right + 1 + (int64_t)(mix64(r) % (uint64_t)(V - 1))) % V);
}

/* Prompt lookup: the tokens after the latest earlier occurrence of the last
 * g tokens of hist[0..n) (g = 3, 2, 1), at most max of them. */
static int ngram_draft(const int32_t *hist, int n, int max, int32_t *out)
{
    for (int g = 3; g >= 1; g--) {
        if (n < g + 1) continue;
        for (int i = n - g - 1; i >= 0; i--) {
            if (memcmp(hist + i, hist + n - g, (size_t)g * sizeof *hist)) continue;
            int k = 0;
            while (k < max && i + g + k < n) { out[k] = hist[i + g + k]; k++; }
            return k;
        }
    }
    return 0;
}

typedef struct {
    const q35_model *m;
    const q35_impls *im;
    const q35_spec_opts *o;
    q35_spec_stats *st;
    char *err;
    size_t errlen;
    int B, steps, N, H, Vl;
    /* the MTP head's KV cache and what its next call takes */
    q35_state ms;
    int mtp_ready;
    float *mtp_logits, *mtp_hidden, *mtp_hidden2; /* [B, Vl], [B, H] x 2 */
    float *mtp_hout;                              /* [B, Tmax, H]: a catch-up call's hidden rows */
    int32_t *mtp_in, *mtp_len;                    /* [B, Tmax], [B] */
} spec_run;

/* The MTP head over the pairs (h_i, x_{i+1}) of the rows just committed:
 * in[b, 1..n_b) followed by next[b], with the target's hidden rows
 * [0, n_b) of hid (rows of T).  Leaves each sequence's first draft's logits
 * in mtp_logits and the chained hidden in mtp_hidden.  docs/mtp.md. */
static int mtp_catch_up(spec_run *r, int T, const int32_t *in, const int32_t *n, const int32_t *next,
                        const float *hid)
{
    const int B = r->B;
    for (int b = 0; b < B; b++) {
        r->mtp_len[b] = n[b];
        for (int t = 0; t + 1 < n[b]; t++) r->mtp_in[(size_t)b * T + t] = in[(size_t)b * T + t + 1];
        if (n[b] > 0) r->mtp_in[(size_t)b * T + n[b] - 1] = next[b];
    }
    float *hout = r->mtp_hout;
    const double t0 = q35_now();
    int rc = q35_mtp_forward(r->m, &r->ms, r->im, T, r->mtp_in, hid, r->mtp_len, r->mtp_logits, 0, hout, r->err,
                             r->errlen);
    r->st->mtp_s += q35_now() - t0;
    for (int b = 0; !rc && b < B; b++)
        if (n[b] > 0)
            memcpy(r->mtp_hidden + (size_t)b * r->H, hout + ((size_t)b * T + n[b] - 1) * r->H, (size_t)r->H * sizeof *hout);
    return rc;
}

/* Up to want[b] drafts of sequence b into d[b, 0..); returns their counts in
 * got[b].  hist[b]: its tokens so far (prompt and output), hn[b] of them. */
static int draft(spec_run *r, const int32_t *want, int32_t *const *hist, const int *hn, const int *produced,
                 int32_t *d, int32_t *got)
{
    const int B = r->B, N = r->N;
    switch (r->o->source) {
    case Q35_DRAFT_ORACLE:
        for (int b = 0; b < B; b++) {
            got[b] = want[b];
            for (int i = 0; i < want[b]; i++)
                d[(size_t)b * N + i] = oracle_draft(r->o, r->steps, b, produced[b] + i, r->m->cfg.vocab_size);
        }
        return 0;
    case Q35_DRAFT_NGRAM:
        for (int b = 0; b < B; b++) got[b] = want[b] > 0 ? ngram_draft(hist[b], hn[b], want[b], d + (size_t)b * N) : 0;
        return 0;
    case Q35_DRAFT_MTP: {
        /* draft 1 from the catch-up call; each next one chains the head on the last draft */
        int most = 0;
        for (int b = 0; b < B; b++) most = want[b] > most ? want[b] : most;
        for (int b = 0; b < B; b++) got[b] = 0;
        for (int i = 0; i < most; i++) {
            for (int b = 0; b < B; b++) {
                r->mtp_len[b] = 0;
                if (want[b] <= i) continue;
                const int32_t tok = q35_greedy_token(r->m, r->mtp_logits + (size_t)b * r->Vl);
                if (tok < 0) { q35_errmsg(r->err, r->errlen, "speculative: the all-reduce of a draft failed"); return -1; }
                d[(size_t)b * N + i] = tok;
                got[b] = i + 1;
                r->st->mtp_draft_tokens++;
                if (want[b] > i + 1) { r->mtp_in[b] = tok; r->mtp_len[b] = 1; }
            }
            if (i + 1 == most) break;
            int any = 0;
            for (int b = 0; b < B; b++) any |= r->mtp_len[b];
            if (!any) break;
            const double t0 = q35_now();
            int rc = q35_mtp_forward(r->m, &r->ms, r->im, 1, r->mtp_in, r->mtp_hidden, r->mtp_len, r->mtp_logits, 0,
                                     r->mtp_hidden2, r->err, r->errlen);
            r->st->mtp_s += q35_now() - t0;
            if (rc) return -1;
            for (int b = 0; b < B; b++)
                if (r->mtp_len[b]) memcpy(r->mtp_hidden + (size_t)b * r->H, r->mtp_hidden2 + (size_t)b * r->H,
                                          (size_t)r->H * sizeof(float));
        }
        return 0;
    }
    }
    q35_errmsg(r->err, r->errlen, "speculative: no draft source");
    return -1;
}

/* The hook's calls for the tokens committed since the last report; a
 * sequence it ends is not reported again. */
static void report_tokens(const q35_gen_hook *hook, int B, int steps, const int32_t *tokens, const int *produced,
                          int *reported, int *ended)
{
    for (int b = 0; hook && b < B; b++)
        for (; !ended[b] && reported[b] < produced[b]; reported[b]++)
            if (hook->fn(hook->ctx, b, reported[b], tokens[(size_t)b * steps + reported[b]])) {
                ended[b] = 1;
                if (hook->n_out) hook->n_out[b] = reported[b] + 1;
            }
}

int q35_generate_speculative(const q35_model *m, const q35_impls *im, q35_state *s, const int32_t *const *prompts,
                             const int *lens, int steps, const q35_spec_opts *o, int32_t *tokens, q35_spec_stats *st,
                             char *err, size_t errlen)
{
    const int B = s->B, N = o->n_draft, H = m->cfg.hidden_size, Vl = m->sh.vocab_n;
    q35_spec_stats local;
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    if (steps < 1 || N < 1 || N > Q35_DRAFT_MAX) {
        q35_errmsg(err, errlen, "speculative: %d steps with %d drafts (1..%d)", steps, N, Q35_DRAFT_MAX);
        return -1;
    }
    if (o->source == Q35_DRAFT_ORACLE && !o->oracle) {
        q35_errmsg(err, errlen, "speculative: the oracle needs the greedy tokens");
        return -1;
    }
    const int mtp = o->source == Q35_DRAFT_MTP;
    if (mtp && !m->mtp.present) {
        q35_errmsg(err, errlen, "speculative: the checkpoint has no MTP head (mtp.* tensors); use --speculative ngram "
                   "or oracle:P");
        return -1;
    }
    int Tp = 0;
    for (int b = 0; b < B; b++) {
        if (lens[b] < 1) { q35_errmsg(err, errlen, "speculative: prompt %d is empty", b); return -1; }
        Tp = lens[b] > Tp ? lens[b] : Tp;
        if (mtp && s->pos[b]) {
            q35_errmsg(err, errlen, "speculative: the MTP head needs the whole prefix (its KV cache is not in a saved "
                       "state); use ngram or oracle:P after --load-state");
            return -1;
        }
        if ((long long)s->pos[b] + lens[b] + steps + N > s->capacity) {
            q35_errmsg(err, errlen, "speculative: sequence %d needs %lld positions, beyond the state's capacity %d", b,
                       (long long)s->pos[b] + lens[b] + steps + N, s->capacity);
            return -1;
        }
    }
    if (q35_state_checkpoints(s, N, err, errlen)) return -1;
    const int T1 = N + 1, Tmax = Tp > T1 ? Tp : T1;
    spec_run r = {.m = m, .im = im, .o = o, .st = st, .err = err, .errlen = errlen, .B = B, .steps = steps, .N = N,
                  .H = H, .Vl = Vl};
    int32_t *in = calloc((size_t)B * Tmax, sizeof *in), *len = calloc((size_t)B, sizeof *len);
    int32_t *d = calloc((size_t)B * N, sizeof *d), *want = calloc((size_t)B, sizeof *want);
    int32_t *got = calloc((size_t)B, sizeof *got), *keep = calloc((size_t)B, sizeof *keep);
    int32_t *next = calloc((size_t)B, sizeof *next), **hist = calloc((size_t)B, sizeof *hist);
    int *hn = calloc((size_t)B, sizeof *hn), *produced = calloc((size_t)B, sizeof *produced);
    /* ended[b]: the hook ended sequence b; reported[b]: tokens it has seen */
    int *ended = calloc((size_t)B, sizeof *ended), *reported = calloc((size_t)B, sizeof *reported);
    const q35_gen_hook *hook = o->hook && o->hook->fn ? o->hook : NULL;
    if (o->hook && o->hook->n_out)
        for (int b = 0; b < B; b++) o->hook->n_out[b] = steps;
    float *lg = malloc((size_t)B * Tmax * Vl * sizeof *lg);
    float *hid = mtp ? malloc((size_t)B * Tmax * H * sizeof *hid) : NULL;
    int rc = -1, ok = in && len && d && want && got && keep && next && hist && hn && produced && ended && reported &&
                      lg && (!mtp || hid);
    for (int b = 0; ok && b < B; b++) ok = (hist[b] = malloc((size_t)(lens[b] + steps + N) * sizeof **hist)) != NULL;
    if (mtp && ok) {
        r.mtp_logits = malloc((size_t)B * Vl * sizeof(float));
        r.mtp_hidden = malloc((size_t)B * H * sizeof(float));
        r.mtp_hidden2 = malloc((size_t)B * H * sizeof(float));
        r.mtp_in = calloc((size_t)B * Tmax, sizeof(int32_t));
        r.mtp_len = calloc((size_t)B, sizeof(int32_t));
        r.mtp_hout = malloc((size_t)B * Tmax * H * sizeof(float));
        ok = r.mtp_logits && r.mtp_hidden && r.mtp_hidden2 && r.mtp_in && r.mtp_len && r.mtp_hout;
        if (ok && q35_mtp_state_init(&r.ms, m, B, s->capacity, err, errlen)) goto out;
        r.mtp_ready = ok;
    }
    if (!ok) { q35_errmsg(err, errlen, "speculative: out of memory"); goto out; }

    /* prefill: the prompts, then the first greedy token of each sequence */
    for (int b = 0; b < B; b++) {
        memcpy(in + (size_t)b * Tp, prompts[b], (size_t)lens[b] * sizeof *in);
        memcpy(hist[b], prompts[b], (size_t)lens[b] * sizeof *in);
        hn[b] = len[b] = lens[b];
    }
    double t0 = q35_now();
    if (q35_forward_opt(m, s, im, Tp, in, len, lg, &(q35_fwd_opts){.hidden = hid}, err, errlen)) goto out;
    for (int b = 0; b < B; b++) {
        const int32_t tok = q35_greedy_token(m, lg + (size_t)b * Vl);
        if (tok < 0) { q35_errmsg(err, errlen, "speculative: the all-reduce of the greedy token failed"); goto out; }
        tokens[(size_t)b * steps] = next[b] = hist[b][hn[b]++] = tok;
        produced[b] = 1;
    }
    st->prefill_s = q35_now() - t0;
    report_tokens(hook, B, steps, tokens, produced, reported, ended);
    if (mtp && mtp_catch_up(&r, Tp, in, len, next, hid)) goto out;

    for (;;) {
        /* drafts: no more than the tokens still wanted after the verified one */
        int live = 0;
        for (int b = 0; b < B; b++) {
            const int left = ended[b] ? 0 : steps - produced[b];
            want[b] = left - 1 < N ? left - 1 : N;
            if (want[b] < 0) want[b] = 0;
            live += left > 0;
        }
        if (!live) break;
        t0 = q35_now();
        if (draft(&r, want, hist, hn, produced, d, got)) goto out;
        st->draft_s += q35_now() - t0;

        /* verify [last token, drafts] in one call, keeping the state after each */
        int T = 1;
        for (int b = 0; b < B; b++) {
            const int n = !ended[b] && produced[b] < steps ? 1 + got[b] : 0;
            len[b] = n;
            T = n > T ? n : T;
        }
        for (int b = 0; b < B; b++) {
            in[(size_t)b * T] = next[b];
            memcpy(in + (size_t)b * T + 1, d + (size_t)b * N, (size_t)got[b] * sizeof *in);
        }
        t0 = q35_now();
        if (q35_forward_opt(m, s, im, T, in, len, lg, &(q35_fwd_opts){.all_logits = 1, .hidden = hid, .checkpoints = T - 1},
                            err, errlen))
            goto out;
        st->verify_calls++;
        /* accept the drafts the model would have produced itself */
        for (int b = 0; b < B; b++) {
            keep[b] = len[b];
            if (!len[b]) continue;
            int a = 0;
            int32_t y = -1;
            for (;;) {
                y = q35_greedy_token(m, lg + ((size_t)b * T + a) * Vl);
                if (y < 0) { q35_errmsg(err, errlen, "speculative: the all-reduce of the greedy token failed"); goto out; }
                if (a < got[b] && d[(size_t)b * N + a] == y) {
                    tokens[(size_t)b * steps + produced[b]++] = hist[b][hn[b]++] = y;
                    a++;
                    continue;
                }
                break;
            }
            tokens[(size_t)b * steps + produced[b]++] = hist[b][hn[b]++] = next[b] = y;
            keep[b] = a + 1;
            st->rows++;
            st->drafted += got[b];
            st->accepted += a;
            st->accept_hist[a]++;
        }
        st->verify_s += q35_now() - t0;
        report_tokens(hook, B, steps, tokens, produced, reported, ended);
        t0 = q35_now();
        if (q35_state_rollback(s, keep, err, errlen)) goto out;
        st->rollback_s += q35_now() - t0;
        if (mtp) {
            /* the head's cache back to the committed positions, then the new pairs */
            for (int b = 0; b < B; b++) {
                r.ms.pos[b] = s->pos[b] - keep[b];
                len[b] = len[b] ? keep[b] : 0;
            }
            t0 = q35_now();
            if (mtp_catch_up(&r, T, in, len, next, hid)) goto out;
            st->draft_s += q35_now() - t0;
        }
    }
    rc = 0;
out:
    if (r.mtp_ready) q35_state_free(&r.ms);
    free(r.mtp_logits); free(r.mtp_hidden); free(r.mtp_hidden2); free(r.mtp_in); free(r.mtp_len); free(r.mtp_hout);
    for (int b = 0; hist && b < B; b++) free(hist[b]);
    free(in); free(len); free(d); free(want); free(got); free(keep); free(next); free(hist); free(hn);
    free(produced); free(ended); free(reported); free(lg); free(hid);
    return rc;
}
