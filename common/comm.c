/* The processes of one run (comm.h): Open MPI when built with it
 * (Q35_HAVE_MPI, set by the Makefile when libopenmpi-dev is there), else
 * one process. */
#include "common/comm.h"

#include "common/clock.h"
#include "common/errmsg.h"
#include "common/sde_counters.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef Q35_HAVE_MPI
#include <mpi.h>
#endif

int q35_comm_available(void)
{
#ifdef Q35_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

#ifdef Q35_HAVE_MPI
/* What one collective cost this rank: counted whether or not anyone reads it.
 * One process sends nothing, so only the MPI build counts. */
static void count(double t0, size_t bytes)
{
    q35_sde_add(Q35_SDE_COLLECTIVES, 1);
    q35_sde_add(Q35_SDE_COMM_BYTES, (long long)bytes);
    q35_sde_add_since(Q35_SDE_COMM_NS, t0);
}
#endif

int q35_comm_start(q35_comm *c, int *argc, char ***argv, char *err, size_t errlen)
{
    *c = (q35_comm){.rank = 0, .size = 1, .mpi = 0};
    const char *world = getenv("OMPI_COMM_WORLD_SIZE");
    if (!world || atoi(world) <= 1) {
#ifdef Q35_HAVE_MPI
        /* one rank under mpirun is still a run: join it so mpirun sees a clean end */
        if (world && MPI_Init(argc, argv) == MPI_SUCCESS) c->mpi = 1;
#else
        (void)argc; (void)argv;
#endif
        return 0;
    }
#ifdef Q35_HAVE_MPI
    if (MPI_Init(argc, argv) != MPI_SUCCESS) {
        q35_errmsg(err, errlen, "MPI_Init failed");
        return -1;
    }
    /* errors come back as return codes: a rank reports, then aborts the run */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->size);
    c->mpi = 1;
    return 0;
#else
    (void)argc; (void)argv;
    q35_errmsg(err, errlen, "started by mpirun with %s processes, but this q35lab was built without Open MPI: "
               "install libopenmpi-dev (make deps) and rebuild (make clean all)", world);
    return -1;
#endif
}

void q35_comm_end(q35_comm *c)
{
#ifdef Q35_HAVE_MPI
    if (c->mpi) MPI_Finalize();
#endif
    c->mpi = 0;
}

void q35_comm_abort(const q35_comm *c, int status)
{
    fflush(stdout);
    fflush(stderr);
#ifdef Q35_HAVE_MPI
    if (c && c->mpi && c->size > 1) MPI_Abort(MPI_COMM_WORLD, status);
#else
    (void)c;
#endif
    exit(status);
}

#ifdef Q35_HAVE_MPI
/* MPI counts are int: a long buffer goes in pieces of at most 2^30 elements,
 * one collective each, stopping at the first that fails. */
#define MPI_PIECE ((size_t)1 << 30)
static int sum_piece(void *at, int k) { return MPI_Allreduce(MPI_IN_PLACE, at, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); }
static int bcast_piece(void *at, int k) { return MPI_Bcast(at, k, MPI_BYTE, 0, MPI_COMM_WORLD); }
static int in_pieces(char *buf, size_t n, size_t elem, int (*piece)(void *at, int k))
{
    int rc = MPI_SUCCESS;
    for (size_t at = 0; at < n && rc == MPI_SUCCESS; at += MPI_PIECE)
        rc = piece(buf + at * elem, (int)(n - at < MPI_PIECE ? n - at : MPI_PIECE));
    return rc;
}
#endif

int q35_comm_sum(const q35_comm *c, float *x, size_t n)
{
    if (c->size <= 1 || !n) return 0;
#ifdef Q35_HAVE_MPI
    const double t0 = q35_now();
    const int rc = in_pieces((char *)x, n, sizeof *x, sum_piece);
    count(t0, n * sizeof(float));
    return rc == MPI_SUCCESS ? 0 : -1;
#else
    (void)x;
    return -1;
#endif
}

int q35_comm_argmax(const q35_comm *c, float *value, int32_t *index)
{
    if (c->size <= 1) return 0;
#ifdef Q35_HAVE_MPI
    const double t0 = q35_now();
    struct { float v; int i; } in = {isnan(*value) ? -INFINITY : *value, (int)*index}, out;
    const int rc = MPI_Allreduce(&in, &out, 1, MPI_FLOAT_INT, MPI_MAXLOC, MPI_COMM_WORLD);
    count(t0, sizeof in);
    *value = out.v;
    *index = out.i;
    return rc == MPI_SUCCESS ? 0 : -1;
#else
    (void)value; (void)index;
    return -1;
#endif
}

int q35_comm_max_int(const q35_comm *c, int *v)
{
    if (c->size <= 1) return 0;
#ifdef Q35_HAVE_MPI
    const double t0 = q35_now();
    const int rc = MPI_Allreduce(MPI_IN_PLACE, v, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    count(t0, sizeof *v);
    return rc == MPI_SUCCESS ? 0 : -1;
#else
    (void)v;
    return -1;
#endif
}

int q35_comm_gather(const q35_comm *c, const float *x, const int *n, float *all)
{
    if (c->size <= 1) {
        if (all != x) memmove(all, x, (size_t)n[0] * sizeof *x);
        return 0;
    }
#ifdef Q35_HAVE_MPI
    const double t0 = q35_now();
    int *displ = malloc((size_t)c->size * sizeof *displ);
    if (!displ) return -1;
    for (int r = 0, at = 0; r < c->size; at += n[r], r++) displ[r] = at;
    const int rc = MPI_Gatherv(x, n[c->rank], MPI_FLOAT, all, n, displ, MPI_FLOAT, 0, MPI_COMM_WORLD);
    free(displ);
    count(t0, (size_t)n[c->rank] * sizeof *x);
    return rc == MPI_SUCCESS ? 0 : -1;
#else
    return -1;
#endif
}

int q35_comm_broadcast(const q35_comm *c, void *buf, size_t n)
{
    if (c->size <= 1 || !n) return 0;
#ifdef Q35_HAVE_MPI
    const double t0 = q35_now();
    const int rc = in_pieces(buf, n, 1, bcast_piece);
    count(t0, c->rank == 0 ? n : 0);
    return rc == MPI_SUCCESS ? 0 : -1;
#else
    (void)buf;
    return -1;
#endif
}

void q35_comm_barrier(const q35_comm *c)
{
#ifdef Q35_HAVE_MPI
    if (c->size > 1) MPI_Barrier(MPI_COMM_WORLD);
#else
    (void)c;
#endif
}
