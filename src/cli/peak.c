/*
 * The FP32 peak of one core, measured: a loop of independent fused multiply-adds on as many
 * accumulators as it takes to cover the FMA latency on every FMA port (latency 4 x 2 ports
 * = 8 in flight on current x86 cores; we keep 16 AVX-512 or 12 AVX2 accumulators in
 * registers). `vultus bench nn` figures are compared against it as "% of peak".
 */
#include "base/base.h"
#include "cli/cli.h"

#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* 16 zmm accumulators x 16 lanes x 2 flops per iteration. */
__attribute__((target("avx512f,fma"))) static float fma_loop_avx512(int64_t iterations)
{
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-6f);
    __m512 x0 = _mm512_set1_ps(0.0f), x1 = _mm512_set1_ps(0.1f), x2 = _mm512_set1_ps(0.2f),
           x3 = _mm512_set1_ps(0.3f), x4 = _mm512_set1_ps(0.4f), x5 = _mm512_set1_ps(0.5f),
           x6 = _mm512_set1_ps(0.6f), x7 = _mm512_set1_ps(0.7f), x8 = _mm512_set1_ps(0.8f),
           x9 = _mm512_set1_ps(0.9f), x10 = _mm512_set1_ps(1.0f), x11 = _mm512_set1_ps(1.1f),
           x12 = _mm512_set1_ps(1.2f), x13 = _mm512_set1_ps(1.3f), x14 = _mm512_set1_ps(1.4f),
           x15 = _mm512_set1_ps(1.5f);
    for (int64_t i = 0; i < iterations; i++) {
        x0 = _mm512_fmadd_ps(x0, a, b);
        x1 = _mm512_fmadd_ps(x1, a, b);
        x2 = _mm512_fmadd_ps(x2, a, b);
        x3 = _mm512_fmadd_ps(x3, a, b);
        x4 = _mm512_fmadd_ps(x4, a, b);
        x5 = _mm512_fmadd_ps(x5, a, b);
        x6 = _mm512_fmadd_ps(x6, a, b);
        x7 = _mm512_fmadd_ps(x7, a, b);
        x8 = _mm512_fmadd_ps(x8, a, b);
        x9 = _mm512_fmadd_ps(x9, a, b);
        x10 = _mm512_fmadd_ps(x10, a, b);
        x11 = _mm512_fmadd_ps(x11, a, b);
        x12 = _mm512_fmadd_ps(x12, a, b);
        x13 = _mm512_fmadd_ps(x13, a, b);
        x14 = _mm512_fmadd_ps(x14, a, b);
        x15 = _mm512_fmadd_ps(x15, a, b);
    }
    /* Combine everything so no accumulator's work can be dropped. */
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(x0, x1), _mm512_add_ps(x2, x3)),
                             _mm512_add_ps(_mm512_add_ps(x4, x5), _mm512_add_ps(x6, x7)));
    s = _mm512_add_ps(
        s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(x8, x9), _mm512_add_ps(x10, x11)),
                         _mm512_add_ps(_mm512_add_ps(x12, x13), _mm512_add_ps(x14, x15))));
    return _mm512_reduce_add_ps(s);
}

/* 12 ymm accumulators (of 16 registers; two hold the constants) x 8 lanes x 2 flops. */
__attribute__((target("avx2,fma"))) static float fma_loop_avx2(int64_t iterations)
{
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-6f);
    __m256 x0 = _mm256_set1_ps(0.0f), x1 = _mm256_set1_ps(0.1f), x2 = _mm256_set1_ps(0.2f),
           x3 = _mm256_set1_ps(0.3f), x4 = _mm256_set1_ps(0.4f), x5 = _mm256_set1_ps(0.5f),
           x6 = _mm256_set1_ps(0.6f), x7 = _mm256_set1_ps(0.7f), x8 = _mm256_set1_ps(0.8f),
           x9 = _mm256_set1_ps(0.9f), x10 = _mm256_set1_ps(1.0f), x11 = _mm256_set1_ps(1.1f);
    for (int64_t i = 0; i < iterations; i++) {
        x0 = _mm256_fmadd_ps(x0, a, b);
        x1 = _mm256_fmadd_ps(x1, a, b);
        x2 = _mm256_fmadd_ps(x2, a, b);
        x3 = _mm256_fmadd_ps(x3, a, b);
        x4 = _mm256_fmadd_ps(x4, a, b);
        x5 = _mm256_fmadd_ps(x5, a, b);
        x6 = _mm256_fmadd_ps(x6, a, b);
        x7 = _mm256_fmadd_ps(x7, a, b);
        x8 = _mm256_fmadd_ps(x8, a, b);
        x9 = _mm256_fmadd_ps(x9, a, b);
        x10 = _mm256_fmadd_ps(x10, a, b);
        x11 = _mm256_fmadd_ps(x11, a, b);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3)),
                             _mm256_add_ps(_mm256_add_ps(x4, x5), _mm256_add_ps(x6, x7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(x8, x9), _mm256_add_ps(x10, x11)));
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
}
#endif

/* Portable fallback: 8 scalar chains (what the compiler makes of it is what this CPU gets). */
static float fma_loop_scalar(int64_t iterations)
{
    float x[8] = {0.0f, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f};
    for (int64_t i = 0; i < iterations; i++)
        for (int k = 0; k < 8; k++)
            x[k] = x[k] * 0.999999f + 1e-6f;
    return x[0] + x[1] + x[2] + x[3] + x[4] + x[5] + x[6] + x[7];
}

/* Keeps the loops' results observable, so they are not optimised away. */
static volatile float peak_sink;

double cli_peak_gflops(const char **isa)
{
    float (*loop)(int64_t) = fma_loop_scalar;
    double flops_per_iteration = 8 * 2;
    *isa = "scalar";
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) {
        loop = fma_loop_avx512;
        flops_per_iteration = 16 * 16 * 2;
        *isa = "avx512f";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        loop = fma_loop_avx2;
        flops_per_iteration = 12 * 8 * 2;
        *isa = "avx2+fma";
    }
#endif
    /* Calibrate to ~100 ms per trial (which also warms the clock up), then keep the best of
     * five trials: the peak is what the core can do, noise only ever slows it. */
    int64_t iterations = 1 << 16;
    for (;;) {
        uint64_t t0 = base_now_ns();
        peak_sink = loop(iterations);
        uint64_t ns = base_now_ns() - t0;
        if (ns >= 20000000u || iterations >= ((int64_t)1 << 40)) {
            iterations = (int64_t)((double)iterations * 1e8 / (double)(ns ? ns : 1)) + 1;
            break;
        }
        iterations *= 4;
    }
    double best = 0.0;
    for (int trial = 0; trial < 5; trial++) {
        uint64_t t0 = base_now_ns();
        peak_sink = loop(iterations);
        double seconds = (double)(base_now_ns() - t0) / 1e9;
        double gflops = flops_per_iteration * (double)iterations / seconds / 1e9;
        if (gflops > best) best = gflops;
    }
    return best;
}
