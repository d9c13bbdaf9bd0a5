/* auto: picks the implementation that measured fastest for the problem's
 * head shape, sequence length and thread count.
 *
 * The crossover (deltarule.h) says, per head shape and thread count, from
 * which T on the chunked form beats the recurrent one (run as
 * `recurrent-pairs`).  It comes in the options; a shape it has no point for,
 * or no crossover at all, gets what this repository measured on its
 * reference machines (results/deltarule_warm.txt): the recurrent form was
 * fastest at every T.
 */
#include "kernels/deltarule/deltarule.h"

#include <omp.h>

/* The point measured for p's head shape at the largest thread count not
 * above `threads` (else the smallest measured); NULL if the shape has none. */
static const deltarule_crossover_point *point_for(const deltarule_crossover *x, const deltarule_problem *p,
                                                  int threads)
{
    const deltarule_crossover_point *below = NULL, *above = NULL;
    for (int i = 0; x && i < x->n; i++) {
        const deltarule_crossover_point *c = &x->pt[i];
        if (c->Hk != p->Hk || c->Hv != p->Hv || c->Dk != p->Dk || c->Dv != p->Dv) continue;
        if (c->threads <= threads && (!below || c->threads > below->threads)) below = c;
        if (c->threads > threads && (!above || c->threads < above->threads)) above = c;
    }
    return below ? below : above;
}

int deltarule_crossover_chunked_from(const deltarule_crossover *x, const deltarule_problem *p, int threads)
{
    const deltarule_crossover_point *c = point_for(x, p, threads > 0 ? threads : omp_get_max_threads());
    return c ? c->chunked_from_T : -1;
}

const deltarule_impl *deltarule_auto_choice(const deltarule_problem *p, const deltarule_opts *o)
{
    const int from = deltarule_crossover_chunked_from(o ? o->crossover : NULL, p, o ? o->threads : 0);
    /* no point (-1) or 0: chunked never measured faster */
    /* The recurrent form as two-token sweeps: at T = 1 the same kernel as
     * `recurrent`, from T = 2 on half the state stores (eq. 3c). */
    return deltarule_find(from > 0 && p->T >= from ? "chunked" : "recurrent-pairs");
}

int deltarule_auto(const deltarule_problem *p, const deltarule_opts *o)
{
    const deltarule_impl *im = deltarule_auto_choice(p, o);
    deltarule_opts merged = im->defaults;
    merged.threads = o->threads;
    if (o->chunk) merged.chunk = o->chunk;
    merged.checkpoint_mode = o->checkpoint_mode; /* the chunked form's; the recurrent one ignores it */
    return im->run(p, &merged);
}
