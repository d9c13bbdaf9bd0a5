/* ab_grad_chunked - two builds of the chunked delta-rule backward, alternated call by call in
 * one process (bench/ab_grad_chunked.sh builds them and runs this).
 *
 * Why: on the VMs this project runs on, the host's speed drifts by 5-25% over minutes, and two
 * binaries timed one after the other (bench/ab.sh) compare two moments as much as two kernels.
 * Here both kernels are shared objects loaded side by side (RTLD_DEEPBIND: each resolves its own
 * symbols), run on the same inputs in alternating order, and the figure is the median of the
 * per-pair ratio new/old, with its quartiles; the largest |difference| of dq, dk, dv says whether
 * the two give the same bits.
 *
 * Inputs: the 0.8B DeltaNet shape (Hk = Hv = 16, Dk = Dv = 128), B = 1, l2 norm on, initial
 * state and d_final_state given, 2 threads, random values from a fixed seed; g in [-0.15, -0.05],
 * beta in [0.1, 0.9].  --alloc bench: q, k, v, d_out and the gradients dq, dk, dv in 2 MiB pages,
 * as `q35lab bench deltarule --grad` allocates them (since 2026-12-07; before, d_out and the
 * gradients came from malloc: --alloc mixed); --alloc aligned: every buffer 64-byte aligned in
 * 4 KiB pages.  A build that exports deltarule_grad_chunked_workspace (since 2026-12-07) gets its
 * workspace allocated once, in 2 MiB pages, as the bench does; --no-workspace: none for either
 * (each call then maps and the OS zero-fills its memory anew).
 */
#include "kernels/deltarule/deltarule_grad.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

typedef int (*grad_fn)(const deltarule_grad_problem *, const deltarule_opts *, deltarule_grad_stats *);
typedef size_t (*ws_fn)(const deltarule_grad_problem *, const deltarule_opts *);

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static unsigned long long rng = 88172645463325252ull;
static float frand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

enum { ALLOC_ALIGNED, ALLOC_HUGE, ALLOC_MALLOC };

/* n floats, off + sc * uniform[-1, 1) */
static float *buffer(size_t n, float sc, float off, int how)
{
    float *p;
    if (how == ALLOC_HUGE) {
        const size_t bytes = (n * sizeof(float) + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
        p = aligned_alloc(2u << 20, bytes);
        if (p) madvise(p, bytes, MADV_HUGEPAGE);
    } else if (how == ALLOC_ALIGNED) {
        p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    } else {
        p = malloc(n * sizeof(float));
    }
    if (!p) {
        fprintf(stderr, "ab_grad_chunked: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = off + sc * frand();
    return p;
}

static int cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: ab_grad_chunked OLD.so NEW.so [--T N] [--pairs N] [--alloc bench|mixed|aligned]\n"
               "                       [--no-workspace]\n"
               "  alternates deltarule_grad_chunked from the two shared objects on the 0.8B shape, 2 threads;\n"
               "  prints each one's min and median (ms), the median new/old ratio per pair with its quartiles,\n"
               "  and the largest |difference| of dq, dk, dv (defaults: --T 2048 --pairs 20 --alloc bench)\n");
}

int main(int argc, char **argv)
{
    int T = 2048, pairs = 20, in_how = ALLOC_HUGE, out_how = ALLOC_HUGE;
    const char *alloc = "bench";
    int use_ws = 1;
    const char *so[2] = {NULL, NULL};
    for (int i = 1, n = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        else if (!strcmp(argv[i], "--T") && i + 1 < argc) T = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--pairs") && i + 1 < argc) pairs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-workspace")) use_ws = 0;
        else if (!strcmp(argv[i], "--alloc") && i + 1 < argc) {
            const char *a = alloc = argv[++i];
            if (!strcmp(a, "bench")) in_how = out_how = ALLOC_HUGE;
            else if (!strcmp(a, "mixed")) in_how = ALLOC_HUGE, out_how = ALLOC_MALLOC;
            else if (!strcmp(a, "aligned")) in_how = out_how = ALLOC_ALIGNED;
            else { usage(stderr); return 2; }
        } else if (argv[i][0] != '-' && n < 2) so[n++] = argv[i];
        else { usage(stderr); return 2; }
    }
    if (!so[1] || T < 1 || pairs < 2) { usage(stderr); return 2; }
    grad_fn f[2];
    ws_fn wsf[2];
    for (int i = 0; i < 2; i++) {
        void *h = dlopen(so[i], RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
        if (!h || !(f[i] = (grad_fn)(void (*)(void))dlsym(h, "deltarule_grad_chunked"))) {
            fprintf(stderr, "ab_grad_chunked: %s: %s\n", so[i], dlerror());
            return 1;
        }
        wsf[i] = use_ws ? (ws_fn)(void (*)(void))dlsym(h, "deltarule_grad_chunked_workspace") : NULL;
    }
    const int H = 16, D = 128;
    const size_t nk = (size_t)T * H * D, ns = (size_t)H * D * D, nh = (size_t)T * H;
    deltarule_problem p;
    memset(&p, 0, sizeof p);
    p.B = 1; p.T = T; p.Hk = H; p.Hv = H; p.Dk = D; p.Dv = D; p.use_qk_l2norm = 1;
    p.q = buffer(nk, 1, 0, in_how);
    p.k = buffer(nk, 1, 0, in_how);
    p.v = buffer(nk, 1, 0, in_how);
    p.g = buffer(nh, 0.05f, -0.1f, ALLOC_MALLOC);
    p.beta = buffer(nh, 0.4f, 0.5f, ALLOC_MALLOC);
    p.initial_state = buffer(ns, 0.1f, 0, ALLOC_MALLOC);
    p.out = buffer(nk, 0, 0, in_how);
    const float *d_out = buffer(nk, 1, 0, out_how), *d_fs = buffer(ns, 0.1f, 0, ALLOC_MALLOC);
    deltarule_grad_problem gp[2];
    for (int i = 0; i < 2; i++)
        gp[i] = (deltarule_grad_problem){&p, d_out, d_fs, buffer(nk, 0, 0, out_how), buffer(nk, 0, 0, out_how),
                                         buffer(nk, 0, 0, out_how), buffer(nh, 0, 0, ALLOC_MALLOC),
                                         buffer(nh, 0, 0, ALLOC_MALLOC), buffer(ns, 0, 0, ALLOC_MALLOC), NULL, 0};
    deltarule_opts o;
    memset(&o, 0, sizeof o);
    o.threads = 2;
    for (int i = 0; i < 2; i++)
        if (wsf[i]) {
            const size_t bytes = wsf[i](&gp[i], &o);
            gp[i].workspace = buffer((bytes + 3) / 4, 0, 0, ALLOC_HUGE);
            gp[i].workspace_bytes = bytes;
        }
    double *t[2] = {malloc(sizeof(double) * pairs), malloc(sizeof(double) * pairs)}, *ratio = malloc(sizeof(double) * pairs);
    if (!t[0] || !t[1] || !ratio) return 1;
    for (int i = 0; i < 2; i++) /* warm-up */
        if (f[i](&gp[i], &o, NULL)) { fprintf(stderr, "ab_grad_chunked: %s failed\n", so[i]); return 1; }
    for (int k = 0; k < pairs; k++) {
        for (int j = 0; j < 2; j++) { /* old first on even pairs, new first on odd ones */
            const int i = (k & 1) ? 1 - j : j;
            const double t0 = now();
            f[i](&gp[i], &o, NULL);
            t[i][k] = now() - t0;
        }
        ratio[k] = t[1][k] / t[0][k];
    }
    double md = 0.0;
    const float *a[3] = {gp[0].dq, gp[0].dk, gp[0].dv}, *b[3] = {gp[1].dq, gp[1].dk, gp[1].dv};
    for (int g = 0; g < 3; g++)
        for (size_t i = 0; i < nk; i++) {
            const double d = a[g][i] > b[g][i] ? a[g][i] - b[g][i] : b[g][i] - a[g][i];
            if (!(d <= md)) md = d; /* NaN counts as a difference */
        }
    qsort(t[0], pairs, sizeof(double), cmp);
    qsort(t[1], pairs, sizeof(double), cmp);
    qsort(ratio, pairs, sizeof(double), cmp);
    printf("T=%d alloc=%s workspace old %s new %s pairs=%d | old min %.2f med %.2f ms | new min %.2f med %.2f ms | new/old per pair: median %.3f "
           "[q1 %.3f, q3 %.3f] | max |d(dq, dk, dv)| %.2g\n",
           T, alloc, wsf[0] ? "yes" : "no", wsf[1] ? "yes" : "no", pairs, t[0][0] * 1e3, t[0][pairs / 2] * 1e3, t[1][0] * 1e3,
           t[1][pairs / 2] * 1e3, ratio[pairs / 2], ratio[pairs / 4], ratio[3 * pairs / 4], md);
    return 0;
}
