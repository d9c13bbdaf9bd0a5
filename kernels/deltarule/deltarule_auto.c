/* auto: picks the implementation that measured fastest for the problem's
 * sequence length and thread count.
 *
 * The crossover table says, per thread count, from which T on the chunked
 * form beats the recurrent one (run as `recurrent-pairs`); `q35lab bench deltarule` measures it and
 * writes results/deltarule_crossover.json, which the CLI loads at start
 * (deltarule_auto_configure).  Without a measurement the built-in default
 * is what this repository measured on its reference machine
 * (results/deltarule_warm.txt): the recurrent form was fastest at every T.
 */
#include "kernels/deltarule/deltarule.h"

#include <omp.h>

/* never: chunked never measured faster */
#define NEVER 0

static deltarule_crossover crossover = {.chunked_from_T = {NEVER}, .source = "built-in default"};

void deltarule_auto_configure(const deltarule_crossover *x) { crossover = *x; }
const deltarule_crossover *deltarule_auto_crossover(void) { return &crossover; }

const deltarule_impl *deltarule_auto_choice(const deltarule_problem *p, const deltarule_opts *o)
{
    int threads = o && o->threads > 0 ? o->threads : omp_get_max_threads();
    if (threads >= DR_CROSSOVER_MAX_THREADS) threads = DR_CROSSOVER_MAX_THREADS - 1;
    const int from = crossover.chunked_from_T[threads];
    /* The recurrent form as two-token sweeps: at T = 1 the same kernel as
     * `recurrent`, from T = 2 on half the state stores (eq. 3c). */
    return deltarule_find(from != NEVER && p->T >= from ? "chunked" : "recurrent-pairs");
}

int deltarule_auto(const deltarule_problem *p, const deltarule_opts *o)
{
    const deltarule_impl *im = deltarule_auto_choice(p, o);
    deltarule_opts merged = im->defaults;
    merged.threads = o->threads;
    if (o->chunk) merged.chunk = o->chunk;
    return im->run(p, &merged);
}
