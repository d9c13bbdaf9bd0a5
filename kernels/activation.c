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

/* Four sums of four lanes: the add latency, not its throughput. */
TGT static double sumsq_avx2(const float *x, size_t n)
{
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256d a = _mm256_cvtps_pd(_mm_loadu_ps(x + i)), b = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
        const __m256d c = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 8)), d = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 12));
        s0 = _mm256_fmadd_pd(a, a, s0);
        s1 = _mm256_fmadd_pd(b, b, s1);
        s2 = _mm256_fmadd_pd(c, c, s2);
        s3 = _mm256_fmadd_pd(d, d, s3);
    }
    const __m256d s = _mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3));
    const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    double ss = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    for (; i < n; i++) ss += (double)x[i] * x[i];
    return ss;
}

double q35_act_sumsq(const float *x, size_t n)
{
    if (cpu_isa() >= ISA_AVX2) return sumsq_avx2(x, n);
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    return ss;
}

TGT static void scale_centred_avx2(const float *x, const float *w, double r, float *y, size_t n)
{
    const __m256d rv = _mm256_set1_pd(r), one = _mm256_set1_pd(1.0);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) { /* (x r)(1 + w), two roundings in double, one to float: the plain expression's */
        const __m256d xd = _mm256_cvtps_pd(_mm_loadu_ps(x + i)), wd = _mm256_cvtps_pd(_mm_loadu_ps(w + i));
        _mm_storeu_ps(y + i, _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_mul_pd(xd, rv), _mm256_add_pd(one, wd))));
    }
    for (; i < n; i++) y[i] = (float)(x[i] * r * (1.0 + w[i]));
}

void q35_act_scale_centred(const float *x, const float *w, double r, float *y, size_t n)
{
    if (cpu_isa() >= ISA_AVX2) scale_centred_avx2(x, w, r, y, n);
    else
        for (size_t i = 0; i < n; i++) y[i] = (float)(x[i] * r * (1.0 + w[i]));
}
