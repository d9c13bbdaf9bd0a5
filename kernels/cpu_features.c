#include "kernels/cpu_features.h"

#include <stdlib.h>
#include <string.h>

static int forced = -1; /* set before kernels run; not changed while they run */

cpu_isa_level cpu_isa_best(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return ISA_AVX2;
#endif
    return ISA_GENERIC;
}

static int parse_env(void)
{
    const char *s = getenv("Q35_ISA");
    if (!s || !*s) return -1;
    if (!strcmp(s, "generic")) return ISA_GENERIC;
    if (!strcmp(s, "avx2")) return ISA_AVX2;
    if (!strcmp(s, "avx512")) return ISA_AVX512;
    return -1;
}

cpu_isa_level cpu_isa(void)
{
    cpu_isa_level best = cpu_isa_best();
    int want = forced >= 0 ? forced : parse_env();
    if (want >= 0 && want < (int)best) return (cpu_isa_level)want;
    return best;
}

void cpu_isa_force(cpu_isa_level l) { forced = (int)l; }

const char *cpu_isa_name(cpu_isa_level l)
{
    switch (l) {
    case ISA_AVX512: return "avx512";
    case ISA_AVX2: return "avx2";
    default: return "generic";
    }
}
