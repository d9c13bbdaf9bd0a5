/* activation.c - kernels/activation.h: AVX2 + FMA through target attributes when cpu_isa()
 * allows, plain C otherwise (docs/design.md, "Run-time ISA choice"). */
#include "kernels/activation.h"
#include "kernels/cpu_features.h"
#include "kernels/exp_avx2.h"

#include <immintrin.h>
#include <math.h>

#define TGT __attribute__((target("avx2,fma")))

static float sigmoid1(float a) { return 1.0f / (1.0f + expf(-a)); }

/* The masked tail: lanes past n neither load nor store. */
TGT static inline __m256i tail_mask(size_t left)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

TGT static void silu_mul_avx2(float *g, const float *u, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 a = _mm256_loadu_ps(g + i);
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_mul_ps(a, q35_sigmoid256(a)), _mm256_loadu_ps(u + i)));
    }
    if (i < n) {
        const __m256i m = tail_mask(n - i);
        const __m256 a = _mm256_maskload_ps(g + i, m);
        _mm256_maskstore_ps(g + i, m, _mm256_mul_ps(_mm256_mul_ps(a, q35_sigmoid256(a)), _mm256_maskload_ps(u + i, m)));
    }
}

TGT static void sigmoid_mul_avx2(float *a, const float *gate, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(a + i, _mm256_mul_ps(_mm256_loadu_ps(a + i), q35_sigmoid256(_mm256_loadu_ps(gate + i))));
    if (i < n) {
        const __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(a + i, m, _mm256_mul_ps(_mm256_maskload_ps(a + i, m), q35_sigmoid256(_mm256_maskload_ps(gate + i, m))));
    }
}

TGT static void silu_avx2(const float *z, float *out, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 a = _mm256_loadu_ps(z + i);
        _mm256_storeu_ps(out + i, _mm256_mul_ps(a, q35_sigmoid256(a)));
    }
    if (i < n) {
        const __m256i m = tail_mask(n - i);
        const __m256 a = _mm256_maskload_ps(z + i, m);
        _mm256_maskstore_ps(out + i, m, _mm256_mul_ps(a, q35_sigmoid256(a)));
    }
}

void q35_act_silu_mul(float *g, const float *u, size_t n)
{
    if (cpu_isa() >= ISA_AVX2) silu_mul_avx2(g, u, n);
    else
        for (size_t i = 0; i < n; i++) g[i] = g[i] * sigmoid1(g[i]) * u[i];
}

void q35_act_sigmoid_mul(float *a, const float *gate, size_t n)
{
    if (cpu_isa() >= ISA_AVX2) sigmoid_mul_avx2(a, gate, n);
    else
        for (size_t i = 0; i < n; i++) a[i] *= sigmoid1(gate[i]);
}

void q35_act_silu(const float *z, float *out, size_t n)
{
    if (cpu_isa() >= ISA_AVX2) silu_avx2(z, out, n);
    else
        for (size_t i = 0; i < n; i++) out[i] = z[i] * sigmoid1(z[i]);
}
