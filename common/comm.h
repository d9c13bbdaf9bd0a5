/* comm.h - the processes one model run is spread over (tensor parallelism,
 * docs/tp.md): this process's rank, how many there are, and the few
 * collectives the sharded model needs.  Started by mpirun, a binary built
 * with Open MPI joins MPI_COMM_WORLD; otherwise the run is one process and
 * every collective is the identity, at no cost.  Kernels never see this:
 * the model calls it between them.
 *
 * Every collective adds to the software counters (common/sde_counters.h):
 * COLLECTIVES, COMM_BYTES (bytes this rank sends) and COMM_NS (time inside
 * the collective, waiting for the slowest rank included).
 */
#ifndef Q35_COMM_H
#define Q35_COMM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int rank, size;
    int mpi;          /* 1: the ranks are MPI_COMM_WORLD's */
} q35_comm;

/* Joins the run.  Under mpirun (OMPI_COMM_WORLD_SIZE set) a binary built
 * with Open MPI calls MPI_Init; one built without it fails with a message
 * saying so (every rank would otherwise run the whole model alone).  Outside
 * mpirun: rank 0 of 1.  0, or -1 with a message. */
int q35_comm_start(q35_comm *c, int *argc, char ***argv, char *err, size_t errlen);
/* Leaves the run (MPI_Finalize); safe on a one-process comm. */
void q35_comm_end(q35_comm *c);
/* Ends every rank of the run now with this exit status (MPI_Abort), so that
 * no rank waits forever for one that failed.  One process: exit(status). */
void q35_comm_abort(const q35_comm *c, int status) __attribute__((noreturn));

/* Whether this binary can run across processes (built with Open MPI). */
int q35_comm_available(void);

/* x[0..n) = its sum over the ranks, on every rank. */
int q35_comm_sum(const q35_comm *c, float *x, size_t n);
/* The largest *value over the ranks and its *index (ties: the smallest
 * index; a NaN never wins), on every rank. */
int q35_comm_argmax(const q35_comm *c, float *value, int32_t *index);
/* The largest *v over the ranks, on every rank (to agree on a status). */
int q35_comm_max_int(const q35_comm *c, int *v);
/* Rank 0 receives every rank's n[r] floats (from x) one after the other in
 * all (sum of n[r] floats); all is not touched on other ranks.  n[] must be
 * the same on every rank. */
int q35_comm_gather(const q35_comm *c, const float *x, const int *n, float *all);
/* Rank 0's n bytes of buf to every rank. */
int q35_comm_broadcast(const q35_comm *c, void *buf, size_t n);
void q35_comm_barrier(const q35_comm *c);

#endif
