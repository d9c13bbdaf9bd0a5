/* Running a test body once per ISA level the host supports (kernels/cpu_features.h), and
 * recording which levels ran and which were skipped for lack of the feature.
 *
 * Each level is forced in turn (cpu_isa_force), the body runs, and the level is put back to
 * ISA_AUTO.  A level above cpu_isa_best() is skipped with a "[  SKIPPED ]" line.  When the
 * environment has Q35_ISA_LEVELS_FILE (make test sets it to $(BUILD)/isa-levels.txt), one line
 * "suite level ran|skipped" is appended per level, and make test prints the union at the end. */
#ifndef Q35_TESTS_ISA_LEVELS_H
#define Q35_TESTS_ISA_LEVELS_H

#include "kernels/cpu_features.h"

void isa_levels_note(const char *suite, cpu_isa_level level, int ran);
/* body(level, ctx) for every level from ISA_GENERIC to ISA_TOP the host has; returns how many ran. */
int isa_levels_each(const char *suite, void (*body)(cpu_isa_level level, void *ctx), void *ctx);

#endif
