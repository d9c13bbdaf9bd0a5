/* argmax.h - the index of the largest of n floats, the lowest on ties; NaN never wins (an
 * all-NaN row gives 0).  The greedy pick of every decode step runs it over the whole
 * vocabulary (248 320 logits for Qwen3.5): in plain C, one compare chained on the last best,
 * it was 1.2% of a q4 decode step's samples while the other thread waited, so it is vectorized
 * (AVX2 where cpu_isa() allows: the largest non-NaN value by max, then its first index by
 * compare), with the same answer as the plain loop on every input (tests/test_argmax.c). */
#ifndef Q35_ARGMAX_H
#define Q35_ARGMAX_H

int q35_argmax_f32(const float *x, int n);

#endif
