/* tests/support/isa_levels.h */
#include "tests/support/isa_levels.h"

#include <stdio.h>
#include <stdlib.h>

void isa_levels_note(const char *suite, cpu_isa_level level, int ran)
{
    if (!ran)
        printf("[  SKIPPED ] %s at ISA %s: this CPU has only %s\n", suite, cpu_isa_name(level),
               cpu_isa_name(cpu_isa_best()));
    const char *path = getenv("Q35_ISA_LEVELS_FILE");
    if (!path || !*path) return;
    FILE *f = fopen(path, "a");
    if (!f) return;
    fprintf(f, "%s %s %s\n", suite, cpu_isa_name(level), ran ? "ran" : "skipped");
    fclose(f);
}

int isa_levels_each(const char *suite, void (*body)(cpu_isa_level level, void *ctx), void *ctx)
{
    int n = 0;
    for (int l = ISA_GENERIC; l <= ISA_TOP; l++) {
        const cpu_isa_level level = (cpu_isa_level)l;
        if (level > cpu_isa_best()) {
            isa_levels_note(suite, level, 0);
            continue;
        }
        cpu_isa_force(level);
        body(level, ctx);
        cpu_isa_force(ISA_AUTO);
        isa_levels_note(suite, level, 1);
        n++;
    }
    return n;
}
