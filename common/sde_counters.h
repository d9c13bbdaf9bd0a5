/* Software-defined counters (SDEs) the kernels add to: analytic counts of useful flops, bytes
 * of recurrent state and of weights moved, tokens, chunks, solver calls.  They are plain
 * atomic adds whether or not anything reads them, so a kernel can count without knowing about
 * PAPI; they are registered with PAPI's libsde as the library "q35lab", so any PAPI reader in
 * the process (harness/counters.h, papi_native_avail) sees them as sde:::q35lab::FLOPS, ...
 */
#ifndef Q35_SDE_COUNTERS_H
#define Q35_SDE_COUNTERS_H

/* The PAPI event of counter NAME is Q35_SDE_PREFIX "NAME". */
#define Q35_SDE_LIB "q35lab"
#define Q35_SDE_PREFIX "sde:::" Q35_SDE_LIB "::"

typedef enum {
    Q35_SDE_FLOPS,               /* useful floating-point operations (analytic, not executed) */
    Q35_SDE_STATE_BYTES_READ,    /* bytes of recurrent state read */
    Q35_SDE_STATE_BYTES_WRITTEN, /* bytes of recurrent state written */
    Q35_SDE_WEIGHT_BYTES_READ,   /* bytes of weights / inputs (q, k, v, gates) read */
    Q35_SDE_TOKENS,              /* tokens processed (summed over sequences) */
    Q35_SDE_CHUNKS,              /* chunks processed by the chunkwise forms */
    Q35_SDE_SOLVER_CALLS,        /* (I + A) solves / inversions performed */
    Q35_SDE_COLLECTIVES,         /* collectives between the ranks of a tensor-parallel run (common/comm.h) */
    Q35_SDE_COMM_BYTES,          /* bytes this rank put into them */
    Q35_SDE_COMM_NS,             /* nanoseconds this rank spent in them, waiting included */
    Q35_SDE_EXPERT_ROWS,         /* MoE token-expert pairs computed (an expert-parallel rank: its experts' only) */
    /* Nanoseconds inside each family's implementation (the *_run dispatch's wall clock around
     * impl->run, this calling thread): what `bench model` splits a decode step into. */
    Q35_SDE_LINEAR_NS,
    Q35_SDE_CONV_NS,
    Q35_SDE_DELTARULE_NS,
    Q35_SDE_ATTENTION_NS,
    Q35_SDE_MOE_NS,
    Q35_SDE_COUNT
} q35_sde_id;

/* Atomic relaxed add: thread-safe and cheap.  Kernels call it once per call with analytic
 * counts, never in inner loops.  An out-of-range id is ignored. */
void q35_sde_add(q35_sde_id id, long long n);
/* The nanoseconds from t0 (a q35_now() reading, common/clock.h) to now, added to a *_NS counter. */
void q35_sde_add_since(q35_sde_id id, double t0);
/* Current value (process-wide, since program start). 0 for an out-of-range id. */
long long q35_sde_value(q35_sde_id id);
/* "FLOPS", "STATE_BYTES_READ", ...: the PAPI event is "sde:::q35lab::" + this name.
 * NULL for an out-of-range id. */
const char *q35_sde_name(q35_sde_id id);
/* One-line description of the counter (also registered with PAPI). */
const char *q35_sde_description(q35_sde_id id);
/* Idempotent and thread-safe: registers all counters with papi_sde_init("q35lab")
 * (PAPI_SDE_RO | PAPI_SDE_DELTA, long long).  libsde works without PAPI being initialized, so
 * this is safe in programs that never use PAPI.  Called lazily by q35_counters_open(). */
void q35_sde_register(void);

#endif
