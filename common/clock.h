/* Wall-clock time for timings: everything that measures (the model's generate,
 * the benches, calibrate) reads the same clock. */
#ifndef Q35_CLOCK_H
#define Q35_CLOCK_H

/* Seconds from CLOCK_MONOTONIC. */
double q35_now(void);

#endif
