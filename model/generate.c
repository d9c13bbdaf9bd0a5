/* generate.c - prefill + decode loop (generate.h). */
#include "model/generate.h"

#include "common/clock.h"
#include "common/errmsg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int q35_argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best] || (isnan(x[best]) && !isnan(x[i]))) best = i;
    return best;
}

float q35_top2_margin(const float *x, int n)
{
    const int a = q35_argmax(x, n);
    float second = -INFINITY;
    for (int i = 0; i < n; i++)
        if (i != a && x[i] > second) second = x[i];
    return x[a] - second;
}

int q35_generate(const q35_model *m, const q35_impls *im, int B, const int32_t *const *prompts, const int *lens,
                 int steps, const int32_t *forced, int32_t *tokens, float *logits, q35_gen_timing *tm, char *err,
                 size_t errlen)
{
    const int V = m->cfg.vocab_size;
    if (B < 1 || steps < 1) { q35_errmsg(err, errlen, "generate: batch %d and steps %d must be positive", B, steps); return -1; }
    int Tp = 0;
    long total = 0;
    for (int b = 0; b < B; b++) {
        if (lens[b] < 1) { q35_errmsg(err, errlen, "generate: prompt %d is empty", b); return -1; }
        Tp = lens[b] > Tp ? lens[b] : Tp;
        total += lens[b];
    }
    q35_state s;
    if (q35_state_init(&s, &m->cfg, B, Tp + steps, err, errlen)) return -1;
    int32_t *in = calloc((size_t)B * Tp, sizeof *in), *len = malloc((size_t)B * sizeof *len);
    float *lg = malloc((size_t)B * V * sizeof *lg);
    int rc = -1;
    if (!in || !len || !lg) { q35_errmsg(err, errlen, "generate: out of memory"); goto out; }
    for (int b = 0; b < B; b++) {
        memcpy(in + (size_t)b * Tp, prompts[b], (size_t)lens[b] * sizeof *in);
        len[b] = lens[b];
    }
    double t0 = q35_now();
    if (q35_forward(m, &s, im, Tp, in, len, lg, 0, err, errlen)) goto out;
    const double t1 = q35_now();
    if (tm) { tm->prefill_s = t1 - t0; tm->decode_s = 0; tm->prompt_tokens = total; tm->state_bytes = s.bytes; }
    for (int i = 0;; i++) {
        for (int b = 0; b < B; b++) {
            const float *row = lg + (size_t)b * V;
            tokens[(size_t)b * steps + i] = q35_argmax(row, V);
            if (logits) memcpy(logits + ((size_t)b * steps + i) * V, row, (size_t)V * sizeof *row);
            in[b] = forced ? forced[(size_t)b * steps + i] : tokens[(size_t)b * steps + i];
        }
        if (i == steps - 1) break;
        t0 = q35_now();
        if (q35_forward(m, &s, im, 1, in, NULL, lg, 0, err, errlen)) goto out;
        const double dt = q35_now() - t0;
        if (tm) { tm->decode_s += dt; if (tm->step_s) tm->step_s[i] = dt; }
    }
    rc = 0;
out:
    q35_state_free(&s);
    free(in);
    free(len);
    free(lg);
    return rc;
}
