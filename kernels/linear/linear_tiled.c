/* linear_tiled - q35_matmul_xwt (kernels/matmul: AVX-512 / AVX2 / generic, bf16 widened
 * in registers) on column panels of W spread over OpenMP threads.
 *
 * Why columns: at decode (M = 1) the work is reading W once, so the threads
 * must split W; at prefill each panel of W is packed once and streamed
 * against all M rows, which is what the PACKED strategy wants.  Panels are
 * a multiple of 16 columns (the micro-kernel width) and there are about
 * four per thread so a slow thread on a noisy host does not hold the rest.
 */
#include "kernels/linear/linear.h"

#include <omp.h>

typedef void (*mm_fn)(int M, int N, int K, const float *A, int lda, const void *W, q35_wtype wt, int ldw, float *C,
                      int ldc, int accumulate);

static int tiled(const linear_problem *p, const linear_opts *o, mm_fn mm)
{
    const int threads = o->threads > 0 ? o->threads : omp_get_max_threads();
    int panel = (p->N + 4 * threads - 1) / (4 * threads);
    panel = (panel + 15) / 16 * 16;
    if (panel < 64) panel = 64;
    const int n_panels = (p->N + panel - 1) / panel;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (n_panels > 1)
    for (int j = 0; j < n_panels; j++) {
        const int n0 = j * panel, nn = p->N - n0 < panel ? p->N - n0 : panel;
        mm(p->M, nn, p->K, p->x, p->K, (const char *)p->w + q35_wtype_bytes(p->wt, (size_t)n0 * p->K), p->wt,
                       p->K, p->y + n0, p->N, p->accumulate);
    }
    return 0;
}

int linear_tiled(const linear_problem *p, const linear_opts *o) { return tiled(p, o, q35_matmul_xwt); }

/* The same panels through the BF16-dot matmul (x rounded to bf16; docs/matmul.md). */
int linear_tiled_bf16dot(const linear_problem *p, const linear_opts *o)
{
    return tiled(p, o, q35_matmul_xwt_bf16dot);
}
