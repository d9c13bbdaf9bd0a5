/* argmax.c - kernels/argmax.h: AVX2 through a target attribute when cpu_isa() allows, plain C
 * otherwise (docs/design.md, "Run-time ISA choice"). */
#include "kernels/argmax.h"
#include "kernels/cpu_features.h"
#include "kernels/hmax_avx2.h"

#include <immintrin.h>
#include <math.h>

static int argmax_plain(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best] || (isnan(x[best]) && !isnan(x[i]))) best = i;
    return best;
}

/* Two passes: m = the largest non-NaN value (max_ps(x, acc) returns acc when x is NaN), then the
 * first i with x[i] == m.  Both are exact, so the index is the plain loop's.  When m is -inf
 * (every value -inf or NaN) the plain loop decides, as it does for n < 32. */
__attribute__((target("avx2"))) static int argmax_avx2(const float *x, int n)
{
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 a0 = ninf, a1 = ninf, a2 = ninf, a3 = ninf;
    int i = 0;
    for (; i + 32 <= n; i += 32) { /* four accumulators: max_ps's latency, not its throughput */
        a0 = _mm256_max_ps(_mm256_loadu_ps(x + i), a0);
        a1 = _mm256_max_ps(_mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_max_ps(_mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_max_ps(_mm256_loadu_ps(x + i + 24), a3);
    }
    float m = q35_hmax256(_mm256_max_ps(_mm256_max_ps(a0, a1), _mm256_max_ps(a2, a3)));
    for (int j = i; j < n; j++)
        if (x[j] > m) m = x[j];
    if (m == -INFINITY) return argmax_plain(x, n);
    const __m256 vm = _mm256_set1_ps(m);
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + j), vm, _CMP_EQ_OQ));
        if (hit) return j + __builtin_ctz((unsigned)hit);
    }
    for (; j < n; j++)
        if (x[j] == m) return j;
    return argmax_plain(x, n); /* not reached: m is one of the values */
}

int q35_argmax_f32(const float *x, int n)
{
    if (n >= 32 && cpu_isa() >= ISA_AVX2) return argmax_avx2(x, n);
    return argmax_plain(x, n);
}
