/* fp_flush.h - subnormal floats flushed to zero while a kernel's threads run
 * (x86 MXCSR FTZ and DAZ; a no-op elsewhere).
 *
 * Why: the chunked delta-rule forms multiply by decays exp(gamma_i - gamma_j)
 * that, at long chunks and fast decay, fall below FLT_MIN (1.2e-38), and the
 * products of such entries stay there.  Every instruction that reads or
 * makes a subnormal then takes a microcode assist: at C = 128 on the 0.8B
 * shape the backward ran 19x and the forward 6x slower than at C = 64
 * (docs/deltarule.md, "Subnormals").  Flushed, a value below 1.2e-38 becomes
 * 0: an absolute change of at most 1.2e-38 in an entry, against tolerances
 * of 1e-5 relative to gradients and outputs of order 1.
 * MXCSR is per thread: call q35_flush_begin at the start of each OpenMP
 * thread's part of the region and q35_flush_end with its result at the end,
 * so the caller's thread and the pool's keep their own mode afterwards.
 */
#ifndef Q35_FP_FLUSH_H
#define Q35_FP_FLUSH_H

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
static inline unsigned q35_flush_begin(void)
{
    const unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
    return csr;
}
static inline void q35_flush_end(unsigned csr) { _mm_setcsr(csr); }
#else
static inline unsigned q35_flush_begin(void) { return 0; }
static inline void q35_flush_end(unsigned csr) { (void)csr; }
#endif

#endif
