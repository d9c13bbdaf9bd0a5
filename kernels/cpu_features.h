/* Which instruction-set path the kernels take, picked once at run time.
 *
 * One binary runs anywhere: the kernels compile their AVX2 and AVX-512 paths
 * with target attributes and ask cpu_isa() which to call.  Q35_ISA=generic|
 * avx2|avx512|avx512-bf16 in the environment, or cpu_isa_force(), lowers the
 * choice (never raises it past what the CPU has), so tests exercise every
 * lower path on every machine.  docs/isa.md says what each level enables.
 *
 * Levels are ordered: compare with >= (a kernel with an AVX-512 path takes it
 * at ISA_AVX512 and at every level above).  Individual features (cpu_has())
 * are detected separately by CPUID, with XGETBV for the OS's saving of the
 * YMM / ZMM state, and never inferred from one another (Ice Lake has
 * AVX512_VNNI without AVX512_BF16; Zen 4 has both).
 */
#ifndef Q35_CPU_FEATURES_H
#define Q35_CPU_FEATURES_H

typedef enum {
    ISA_AUTO = -1,
    ISA_GENERIC = 0,     /* plain C */
    ISA_AVX2 = 1,        /* AVX2 + FMA */
    ISA_AVX512 = 2,      /* AVX512F (with the OS saving ZMM state) */
    ISA_AVX512_BF16 = 3, /* ISA_AVX512 + AVX512_BF16 (vdpbf16ps, vcvtne2ps2bf16) */
} cpu_isa_level;
#define ISA_TOP ISA_AVX512_BF16 /* the highest level the code knows */

cpu_isa_level cpu_isa_best(void);   /* what the CPU supports */
cpu_isa_level cpu_isa(void);        /* what kernels use now (best, possibly lowered) */
void cpu_isa_force(cpu_isa_level l);/* lower the choice (clamped to cpu_isa_best()); ISA_AUTO undoes it */
const char *cpu_isa_name(cpu_isa_level l);     /* "generic", "avx2", "avx512", "avx512-bf16" */
/* The level named s (as Q35_ISA spells it; "avx512_bf16" too), or ISA_AUTO if none. */
cpu_isa_level cpu_isa_parse(const char *s);

/* Individual features. */
typedef enum {
    CPU_FEAT_AVX2_FMA = 0, /* AVX2 and FMA3, OS saves YMM */
    CPU_FEAT_AVX512F,      /* these five: OS saves ZMM and opmask state too */
    CPU_FEAT_AVX512BW,
    CPU_FEAT_AVX512VL,
    CPU_FEAT_AVX512DQ,
    CPU_FEAT_AVX512_VNNI,
    CPU_FEAT_AVX512_BF16,
    CPU_FEAT_AVX_VNNI,     /* VEX-encoded VNNI (Alder Lake, Zen 5): an AVX2-level feature */
    CPU_FEAT_AMX_BF16,     /* AMX-TILE and AMX-BF16 (Sapphire Rapids), the OS saving the tile state
                              (XCR0 bits 17-18) and granting it to this process (Linux arch_prctl
                              ARCH_REQ_XCOMP_PERM, asked once at detection); allowed at avx512-bf16 */
    CPU_FEAT_COUNT
} cpu_feature;

/* What the CPU (and OS) has, whatever is forced. */
int cpu_has_detected(cpu_feature f);
/* What kernels may use now: detected and allowed by the current cpu_isa() (generic hides
 * everything; avx2 hides every AVX-512 feature and AMX; avx512 hides AVX512_BF16 and AMX). */
int cpu_has(cpu_feature f);
/* The lowest level at which f may be used. */
cpu_isa_level cpu_feature_level(cpu_feature f);
const char *cpu_feature_name(cpu_feature f); /* as /proc/cpuinfo spells it: "avx512_bf16", ... */

#endif
