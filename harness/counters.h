/* Hardware and software counters around a timed region (PAPI + PAPI SDE).  The
 * software-defined events the kernels add to are common/sde_counters.h; this is the reader.
 *
 * Event sets: q35_counters_open() takes a spec of PAPI event names and groups and never fails
 * because an event is missing: such an event stays in the list as unavailable ("n/a") with
 * PAPI's reason.  Hardware events count the calling thread only (see docs/counters.md).
 */
#ifndef Q35_COUNTERS_H
#define Q35_COUNTERS_H

#include "common/sde_counters.h"

#include <stddef.h>
#include <stdio.h>

/* ---- An event set for a timed region ---- */

typedef struct q35_counters q35_counters;

/* spec: comma-separated PAPI event names (PAPI_TOT_CYC, perf::TASK-CLOCK,
 * sde:::q35lab::FLOPS, any native name) and groups:
 *   default  PAPI_TOT_CYC,PAPI_TOT_INS,PAPI_L1_DCM,PAPI_L2_DCM + every q35lab SDE event
 *   cache    PAPI_L1_DCM,PAPI_L2_DCM,PAPI_L3_TCM + the SDE byte counters
 *   flops    PAPI_FP_OPS,PAPI_SP_OPS,PAPI_VEC_SP + sde FLOPS
 *   sde      every q35lab SDE event
 *   none     nothing
 * and the option "multiplex" (force PAPI multiplexing of the hardware events).  Whitespace
 * around names is ignored; an event named twice is kept once.
 * Never fails because an event is missing: it stays in the list, unavailable, with PAPI's
 * reason (PAPI_strerror of the failing call, e.g. "Event does not exist").  Events that exist
 * but do not fit together make the set multiplexed.  If PAPI_library_init fails, the object is
 * still returned with every event unavailable for that reason.
 * Returns NULL on a syntax error in spec (empty spec or empty name; message in err) or out of
 * memory.  err may be NULL. */
q35_counters *q35_counters_open(const char *spec, char *err, size_t errlen);
/* Around exactly the timed region.  At most one q35_counters may be running per thread (PAPI
 * runs one event set per component and thread); a set PAPI refuses to start makes its events
 * unavailable with the reason.  Return 0, or -1 on misuse (NULL, start while running, stop
 * while stopped). */
int q35_counters_start(q35_counters *c);
/* Stops and adds the region's counts to each event's total (SDE events give the delta over
 * the region). */
int q35_counters_stop(q35_counters *c);
/* Zero the totals (and the running counts if started). */
void q35_counters_reset(q35_counters *c);
int q35_counters_n(const q35_counters *c);
const char *q35_counters_event_name(const q35_counters *c, int i);
int q35_counters_available(const q35_counters *c, int i); /* 0: n/a */
/* "" for an available event. */
const char *q35_counters_unavailable_reason(const q35_counters *c, int i);
/* Total over start/stop regions; only meaningful when available (0 otherwise). */
long long q35_counters_value(const q35_counters *c, int i);
/* Index of the event named name (as in the spec or a group), or -1. */
int q35_counters_find(const q35_counters *c, const char *name);
int q35_counters_multiplexed(const q35_counters *c);
/* Why PAPI refused to multiplex (requested with "multiplex" or needed because events
 * conflict), or "" if it did not.  On a VM without a PMU PAPI_set_multiplex itself fails. */
const char *q35_counters_multiplex_error(const q35_counters *c);
/* Prints each unavailable event once per process to f:
 *   counters: PAPI_TOT_CYC n/a (Event does not exist; see docs/counters.md)
 * and, once, "counters: multiplexing n/a (...)" if multiplexing was refused. */
void q35_counters_report_unavailable(const q35_counters *c, FILE *f);
void q35_counters_close(q35_counters *c);

/* ---- PAPI's view of this machine, for reports ---- */

/* Hardware counters of the perf_event component as PAPI reports them (PAPI_num_cmp_hwctrs);
 * 0 if PAPI or the component is unusable.  A VM may report counters it cannot count with. */
int q35_papi_hw_counters(void);
/* 1 in a VM, 0 on bare metal, -1 unknown (from PAPI_get_hardware_info). */
int q35_papi_virtualized(void);
/* One line, e.g. "PAPI 7.0.0.0; AMD EPYC; VM (KVMKVMKVM); perf_event: 6 counters reported,
 * PAPI_TOT_CYC n/a (Event does not exist); sde:::q35lab readable".  Static storage. */
const char *q35_papi_summary(void);

#endif
