/* Run-time ISA choice (kernels/cpu_features.h, docs/isa.md). */
#include "kernels/cpu_features.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

static int forced = -1; /* set before kernels run; not changed while they run */

/* Bit f set: feature f detected.  Bit 31: detection done.  Computed once (CPUID traps to the
 * hypervisor in a VM, and cpu_isa() is asked on every matmul call); threads racing on the
 * first call compute the same value, stored and read atomically. */
static unsigned detected_cache;

#if defined(__x86_64__) || defined(__i386__)
static unsigned long long xgetbv0(void)
{
    unsigned eax, edx;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(eax), "=d"(edx) : "c"(0)); /* xgetbv */
    return ((unsigned long long)edx << 32) | eax;
}
#endif

#if defined(__x86_64__) || defined(__i386__)
static int amx_granted(void)
{
#if defined(__linux__) && defined(__x86_64__)
    enum { ARCH_GET_XCOMP_PERM = 0x1022, ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    unsigned long perm = 0;
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)) return 0;
    return syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &perm) == 0 && ((perm >> XFEATURE_XTILEDATA) & 1);
#else
    return 0;
#endif
}
#endif

static unsigned detect(void)
{
    unsigned m = 0;
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx) return 0;
    const unsigned long long xcr0 = xgetbv0();
    const int ymm_os = (xcr0 & 0x6) == 0x6;          /* XMM and YMM state */
    const int zmm_os = ymm_os && (xcr0 & 0xE0) == 0xE0; /* opmask, ZMM_Hi256, Hi16_ZMM */
    if (!ymm_os) return 0;
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf < 7) return 0;
    unsigned b7 = 0, c7 = 0, d7 = 0, a71 = 0;
    __cpuid_count(7, 0, a, b7, c7, d7);
    const unsigned sub_max = a;
    if (sub_max >= 1) {
        unsigned x, y, z;
        __cpuid_count(7, 1, a71, x, y, z);
        (void)x, (void)y, (void)z;
    }
    if (((b7 >> 5) & 1) && fma) m |= 1u << CPU_FEAT_AVX2_FMA;
    if ((a71 >> 4) & 1) m |= 1u << CPU_FEAT_AVX_VNNI;
    if (zmm_os && ((b7 >> 16) & 1)) {
        m |= 1u << CPU_FEAT_AVX512F;
        if ((b7 >> 17) & 1) m |= 1u << CPU_FEAT_AVX512DQ;
        if ((b7 >> 30) & 1) m |= 1u << CPU_FEAT_AVX512BW;
        if ((b7 >> 31) & 1) m |= 1u << CPU_FEAT_AVX512VL;
        if ((c7 >> 11) & 1) m |= 1u << CPU_FEAT_AVX512_VNNI;
        if ((a71 >> 5) & 1) m |= 1u << CPU_FEAT_AVX512_BF16;
    }
    /* AMX: AMX-BF16 (EDX 22) and AMX-TILE (24), XTILECFG and XTILEDATA in XCR0 (17, 18), and
     * the kernel's permission to use the 8 KiB tile data (Linux >= 5.16 hands it out on request
     * per process; without it the first tile instruction faults). */
    if (((d7 >> 22) & 1) && ((d7 >> 24) & 1) && (xcr0 & 0x60000) == 0x60000 && amx_granted())
        m |= 1u << CPU_FEAT_AMX_BF16;
#endif
    return m;
}

static unsigned detected(void)
{
    unsigned v = __atomic_load_n(&detected_cache, __ATOMIC_RELAXED);
    if (!(v >> 31)) {
        v = detect() | 1u << 31;
        __atomic_store_n(&detected_cache, v, __ATOMIC_RELAXED);
    }
    return v;
}

int cpu_has_detected(cpu_feature f)
{
    return f >= 0 && f < CPU_FEAT_COUNT && ((detected() >> f) & 1);
}

cpu_isa_level cpu_feature_level(cpu_feature f)
{
    switch (f) {
    case CPU_FEAT_AVX2_FMA:
    case CPU_FEAT_AVX_VNNI: return ISA_AVX2;
    case CPU_FEAT_AVX512_BF16:
    case CPU_FEAT_AMX_BF16: return ISA_AVX512_BF16;
    default: return ISA_AVX512;
    }
}

int cpu_has(cpu_feature f) { return cpu_has_detected(f) && cpu_isa() >= cpu_feature_level(f); }

const char *cpu_feature_name(cpu_feature f)
{
    static const char *names[CPU_FEAT_COUNT] = {"avx2+fma",    "avx512f",     "avx512bw", "avx512vl",
                                                "avx512dq",    "avx512_vnni", "avx512_bf16", "avx_vnni",
                                                "amx_bf16"};
    return f >= 0 && f < CPU_FEAT_COUNT ? names[f] : "?";
}

cpu_isa_level cpu_isa_best(void)
{
    const unsigned m = detected();
    if (!((m >> CPU_FEAT_AVX2_FMA) & 1)) return ISA_GENERIC;
    if (!((m >> CPU_FEAT_AVX512F) & 1)) return ISA_AVX2;
    if ((m >> CPU_FEAT_AVX512_BF16) & 1) return ISA_AVX512_BF16;
    return ISA_AVX512;
}

cpu_isa_level cpu_isa_parse(const char *s)
{
    if (!s) return ISA_AUTO;
    if (!strcmp(s, "generic")) return ISA_GENERIC;
    if (!strcmp(s, "avx2")) return ISA_AVX2;
    if (!strcmp(s, "avx512")) return ISA_AVX512;
    if (!strcmp(s, "avx512-bf16") || !strcmp(s, "avx512_bf16")) return ISA_AVX512_BF16;
    return ISA_AUTO;
}

static int parse_env(void)
{
    const char *s = getenv("Q35_ISA");
    if (!s || !*s) return -1;
    return (int)cpu_isa_parse(s);
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
    case ISA_AVX512_BF16: return "avx512-bf16";
    case ISA_AVX512: return "avx512";
    case ISA_AVX2: return "avx2";
    default: return "generic";
    }
}
