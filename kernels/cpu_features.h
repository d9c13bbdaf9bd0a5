/* Which instruction-set path the kernels take, picked once at run time.
 *
 * One binary runs anywhere: the kernels compile their AVX2 and AVX-512 paths
 * with target attributes and ask cpu_isa() which to call.  Q35_ISA=generic|
 * avx2|avx512 in the environment, or cpu_isa_force(), lowers the choice (never
 * raises it past what the CPU has), so tests exercise the generic path on
 * every machine.
 */
#ifndef Q35_CPU_FEATURES_H
#define Q35_CPU_FEATURES_H

typedef enum { ISA_AUTO = -1, ISA_GENERIC = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 } cpu_isa_level;

cpu_isa_level cpu_isa_best(void);   /* what the CPU supports */
cpu_isa_level cpu_isa(void);        /* what kernels use now (best, possibly lowered) */
void cpu_isa_force(cpu_isa_level l);/* lower the choice (clamped to cpu_isa_best()); ISA_AUTO undoes it */
const char *cpu_isa_name(cpu_isa_level l);

#endif
