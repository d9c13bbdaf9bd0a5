/* generate.c - prefill + decode loop (generate.h). */
#include "model/generate.h"

#include "common/clock.h"
#include "common/errmsg.h"
#include "kernels/argmax.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int q35_argmax(const float *x, int n) { return q35_argmax_f32(x, n); }

float q35_top2_margin(const float *x, int n)
{
    const int a = q35_argmax(x, n);
    float second = -INFINITY;
    for (int i = 0; i < n; i++)
        if (i != a && x[i] > second) second = x[i];
    return x[a] - second;
}

int32_t q35_greedy_token(const q35_model *m, const float *row)
{
    const int i = q35_argmax(row, m->sh.vocab_n);
    float value = row[i];
    int32_t id = m->sh.vocab0 + i;
    return q35_comm_argmax(m->comm, &value, &id) ? -1 : id;
}

int q35_logits_gather(const q35_model *m, const float *local, int rows, float *full)
{
    const q35_comm *c = m->comm;
    const int V = m->cfg.vocab_size;
    if (c->size == 1) {
        memcpy(full, local, (size_t)rows * V * sizeof *full);
        return 0;
    }
    /* rank r's rows x V_r block, then each row put together on rank 0 */
    int *n = malloc((size_t)c->size * sizeof *n);
    float *all = c->rank == 0 ? malloc((size_t)rows * V * sizeof *all) : NULL;
    int rc = -1;
    if (!n || (c->rank == 0 && !all)) goto out;
    for (int r = 0; r < c->size; r++)
        n[r] = rows * (q35_shard_lo(V, r + 1, c->size) - q35_shard_lo(V, r, c->size));
    if (q35_comm_gather(c, local, n, all)) goto out;
    if (c->rank == 0)
        for (int r = 0, at = 0; r < c->size; at += n[r], r++) {
            const int v0 = q35_shard_lo(V, r, c->size), vn = n[r] / (rows ? rows : 1);
            for (int i = 0; i < rows; i++)
                memcpy(full + (size_t)i * V + v0, all + at + (size_t)i * vn, (size_t)vn * sizeof *full);
        }
    rc = 0;
out:
    free(n);
    free(all);
    return rc;
}

int q35_generate(const q35_model *m, const q35_impls *im, int B, const int32_t *const *prompts, const int *lens,
                 int steps, const int32_t *forced, int32_t *tokens, float *logits, q35_gen_timing *tm, char *err,
                 size_t errlen)
{
    if (B < 1 || steps < 1) { q35_errmsg(err, errlen, "generate: batch %d and steps %d must be positive", B, steps); return -1; }
    int Tp = 0;
    for (int b = 0; b < B; b++) Tp = lens[b] > Tp ? lens[b] : Tp;
    q35_state s;
    if (q35_state_init(&s, &m->local, B, Tp + steps, err, errlen)) return -1;
    const int rc = q35_generate_on(m, im, &s, prompts, lens, steps, forced, tokens, logits, tm, err, errlen);
    q35_state_free(&s);
    return rc;
}

int q35_generate_on(const q35_model *m, const q35_impls *im, q35_state *s, const int32_t *const *prompts,
                    const int *lens, int steps, const int32_t *forced, int32_t *tokens, float *logits,
                    q35_gen_timing *tm, char *err, size_t errlen)
{
    return q35_generate_on_hook(m, im, s, prompts, lens, steps, forced, tokens, logits, tm, NULL, err, errlen);
}

int q35_generate_on_hook(const q35_model *m, const q35_impls *im, q35_state *s, const int32_t *const *prompts,
                         const int *lens, int steps, const int32_t *forced, int32_t *tokens, float *logits,
                         q35_gen_timing *tm, const q35_gen_hook *hook, char *err, size_t errlen)
{
    const int B = s->B, V = m->cfg.vocab_size, Vl = m->sh.vocab_n; /* logits: the whole vocabulary, this rank's slice */
    if (steps < 0) { q35_errmsg(err, errlen, "generate: %d steps", steps); return -1; }
    int Tp = 0;
    long total = 0;
    for (int b = 0; b < B; b++) {
        if (lens[b] < 1) { q35_errmsg(err, errlen, "generate: prompt %d is empty", b); return -1; }
        Tp = lens[b] > Tp ? lens[b] : Tp;
        total += lens[b];
        if ((long long)s->pos[b] + lens[b] + (steps ? steps - 1 : 0) > s->capacity) {
            q35_errmsg(err, errlen, "generate: sequence %d at position %d with %d prompt tokens and %d steps exceeds "
                       "the state's capacity %d", b, (int)s->pos[b], lens[b], steps, s->capacity);
            return -1;
        }
    }
    int32_t *in = calloc((size_t)B * Tp, sizeof *in), *len = malloc((size_t)B * sizeof *len);
    float *lg = malloc((size_t)B * Vl * sizeof *lg), *full = logits ? malloc((size_t)B * V * sizeof *full) : NULL;
    unsigned char *ended = hook && hook->fn ? calloc((size_t)B, 1) : NULL;
    int rc = -1, live = B;
    if (!in || !len || !lg || (logits && !full) || (hook && hook->fn && !ended)) {
        q35_errmsg(err, errlen, "generate: out of memory");
        goto out;
    }
    if (hook && hook->n_out)
        for (int b = 0; b < B; b++) hook->n_out[b] = steps;
    for (int b = 0; b < B; b++) {
        memcpy(in + (size_t)b * Tp, prompts[b], (size_t)lens[b] * sizeof *in);
        len[b] = lens[b];
    }
    double t0 = q35_now();
    if (q35_forward(m, s, im, Tp, in, len, lg, 0, err, errlen)) goto out;
    const double t1 = q35_now();
    if (tm) {
        tm->prefill_s = t1 - t0;
        tm->decode_s = 0;
        tm->prompt_tokens = total;
        tm->state_bytes = s->bytes;
        tm->steps_run = 0;
    }
    for (int i = 0; i < steps; i++) {
        if (logits && q35_logits_gather(m, lg, B, full)) {
            q35_errmsg(err, errlen, "generate: gathering the logits failed");
            goto out;
        }
        for (int b = 0; b < B; b++) {
            const int32_t tok = q35_greedy_token(m, lg + (size_t)b * Vl);
            if (tok < 0) { q35_errmsg(err, errlen, "generate: the all-reduce of the greedy token failed"); goto out; }
            tokens[(size_t)b * steps + i] = tok;
            if (logits && m->comm->rank == 0)
                memcpy(logits + ((size_t)b * steps + i) * V, full + (size_t)b * V, (size_t)V * sizeof *full);
            in[b] = forced ? forced[(size_t)b * steps + i] : tok;
        }
        if (tm) tm->steps_run = i + 1;
        for (int b = 0; ended && b < B; b++) {
            if (ended[b] || !hook->fn(hook->ctx, b, i, tokens[(size_t)b * steps + i])) continue;
            ended[b] = 1;
            live--;
            if (hook->n_out) hook->n_out[b] = i + 1;
        }
        if (i == steps - 1 || !live) break;
        t0 = q35_now();
        if (q35_forward(m, s, im, 1, in, NULL, lg, 0, err, errlen)) goto out;
        const double dt = q35_now() - t0;
        if (tm) { tm->decode_s += dt; if (tm->step_s) tm->step_s[i] = dt; }
    }
    rc = 0;
out:
    free(in);
    free(len);
    free(lg);
    free(full);
    free(ended);
    return rc;
}
