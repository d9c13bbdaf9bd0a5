/* auto backward: picks the recurrent or the chunked backward of the gated
 * delta rule, for now by the sequence length T alone.
 *
 * The constant comes from one quick timing (a scratch program calling
 * deltarule_grad_chunked and deltarule_grad_recurrent directly, default
 * chunk 64 for both, median of 5 runs) on the qwen3.5-0.8b DeltaNet shape
 * Hk = Hv = 16, Dk = Dv = 128, B = 1, l2norm on, 2 threads, on a 2-core
 * Xeon (AVX-512) that other jobs were loading (load average about 4, so
 * the absolute times are about 2x what a quiet machine gives; the two were
 * timed back to back under the same load).  Seconds per backward:
 *
 *   T        chunked   recurrent
 *   512      0.180     0.476
 *   2048     0.760     1.739
 *   8192     1.407     3.169
 *
 * and, spot-checked below: T = 4, 16, 64, 128: chunked 0.3, 0.9, 12.8,
 * 36.0 ms against 19.9, 7.8, 38.4, 85.3 ms; T = 1: 0.2 ms both.  The
 * chunked backward was faster at every T from 4 on, so auto runs it from
 * T = 2 and the recurrent one for a single token (where the two tie and the
 * recurrent one holds less).  That is the default for a shape the
 * crossover has no point for; a crossover measured by
 * `q35lab bench deltarule --grad --crossover FILE` (its "grad_points",
 * harness/deltarule_crossover.h) comes in opts->crossover and is followed
 * the way the forward's auto follows its own.
 */
#include "kernels/deltarule/deltarule_grad.h"

#define DRG_AUTO_CHUNKED_FROM_T 2

/* The options auto hands the entry it runs: that entry's defaults, the caller's threads and chunk. */
static deltarule_opts merged_for(const deltarule_grad_impl *im, const deltarule_opts *o)
{
    deltarule_opts merged = im ? im->defaults : (deltarule_opts){.chunk = 64};
    merged.threads = o ? o->threads : 0;
    if (o && o->chunk) merged.chunk = o->chunk;
    return merged;
}

/* What auto may run for p: the chunked backward's workspace (the recurrent one uses none, and
 * ignores one given). */
size_t deltarule_grad_auto_workspace(const deltarule_grad_problem *p, const deltarule_opts *o)
{
    const deltarule_opts merged = merged_for(deltarule_grad_find("chunked"), o);
    return deltarule_grad_chunked_workspace(p, &merged);
}

int deltarule_grad_auto(const deltarule_grad_problem *p, const deltarule_opts *o, deltarule_grad_stats *st)
{
    const int measured = deltarule_crossover_chunked_from(o ? o->crossover : NULL, p->fwd, o ? o->threads : 0);
    const int from = measured < 0 ? DRG_AUTO_CHUNKED_FROM_T : measured; /* 0: chunked never measured faster */
    const int chunked = from > 0 && p->fwd->T >= from;
    const deltarule_grad_impl *im = deltarule_grad_find(chunked ? "chunked" : "recurrent");
    const deltarule_opts merged = merged_for(im, o);
    if (im) return im->run(p, &merged, st);
    return chunked ? deltarule_grad_chunked(p, &merged, st) : deltarule_grad_recurrent(p, &merged, st);
}
