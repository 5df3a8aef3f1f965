/*
 * Dot-product kernels: a scalar oracle and AVX2 / AVX-512 twins (see kernels.h).
 *
 * The SIMD kernels take eight vectors at a time so that each query chunk is loaded once
 * for eight rows and the eight sums are reduced together into one register (a transposing
 * horizontal-add tree) instead of eight separate horizontal reductions. The index pads its
 * rows to 64 bytes, so the tails below only run for odd dimensions (tests, other callers).
 */
#include "kernels.h"

#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "base/base.h"

/* ---- conversions ------------------------------------------------------------------------ */

uint16_t gal_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t mant = x & 0x7fffffu;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0)); /* inf, nan */
    int e = (int)exp - 127 + 15;
    if (e >= 0x1f) return (uint16_t)(sign | 0x7c00u); /* overflow: infinity */
    if (e <= 0) {
        /* Subnormal half (or zero): shift the mantissa with its implicit bit into place. */
        if (e < -10) return (uint16_t)sign;
        mant |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = mant >> shift;
        uint32_t rest = mant & ((1u << shift) - 1);
        uint32_t midpoint = 1u << (shift - 1);
        if (rest > midpoint || (rest == midpoint && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fffu;
    /* Round to nearest even; a carry into the exponent is the correct result. */
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1))) half++;
    return (uint16_t)(sign | half);
}

float gal_quantize_i8(const float *x, size_t dim, int8_t *codes)
{
    float max_abs = 0.0f;
    for (size_t i = 0; i < dim; i++) {
        float a = fabsf(x[i]);
        if (a > max_abs) max_abs = a;
    }
    if (max_abs == 0.0f) {
        memset(codes, 0, dim);
        return 0.0f;
    }
    float inv = 127.0f / max_abs;
    for (size_t i = 0; i < dim; i++) {
        long c = lrintf(x[i] * inv);
        codes[i] = (int8_t)(c > 127 ? 127 : c < -127 ? -127 : c);
    }
    return max_abs / 127.0f;
}

/*
 * With `prefetch` set, the SIMD kernels ask for the rows two groups of eight ahead while
 * they work on the current eight: on the first pass over a block that comes from memory
 * this keeps more cache-line requests in flight than the hardware prefetcher alone
 * (measured: 1M x 192 int8 scan from ~9 ms to ~5.5 ms). Later passes over the same block
 * (the other queries of a search) run without it. Prefetches never fault, so running past
 * the end of the array is harmless; the address is formed as an integer for that reason.
 */
static inline void prefetch_rows(const void *rows, size_t row_bytes)
{
    uintptr_t p = (uintptr_t)rows + 16 * row_bytes;
    for (size_t o = 0; o < 8 * row_bytes; o += 64)
        __builtin_prefetch((const void *)(p + o), 0, 3);
}

/* ---- scalar: the oracle ----------------------------------------------------------------- */

static void dot_f32_scalar(const float *q, const float *x, size_t dim, size_t stride, size_t n,
                           float *out, int prefetch)
{
    (void)prefetch;
    for (size_t i = 0; i < n; i++) {
        const float *v = x + i * stride;
        float s = 0.0f;
        for (size_t j = 0; j < dim; j++)
            s += q[j] * v[j];
        out[i] = s;
    }
}

static void dot_f16_scalar(const float *q, const uint16_t *x, size_t dim, size_t stride, size_t n,
                           float *out, int prefetch)
{
    (void)prefetch;
    for (size_t i = 0; i < n; i++) {
        const uint16_t *v = x + i * stride;
        float s = 0.0f;
        for (size_t j = 0; j < dim; j++)
            s += q[j] * base_f16_to_f32(v[j]);
        out[i] = s;
    }
}

static void dot_i8_scalar(const int8_t *q, const int8_t *x, size_t dim, size_t stride, size_t n,
                          int32_t *out, int prefetch)
{
    (void)prefetch;
    for (size_t i = 0; i < n; i++) {
        const int8_t *v = x + i * stride;
        int32_t s = 0;
        for (size_t j = 0; j < dim; j++)
            s += (int32_t)q[j] * (int32_t)v[j];
        out[i] = s;
    }
}

/* Rows [from, n) of a selection that already holds m positions; returns the new count. */
static size_t select_range(const int32_t *dots, const float *scales, float q_scale, float *scores,
                           size_t from, size_t n, float gate, uint32_t *selected, size_t m)
{
    for (size_t i = from; i < n; i++) {
        if (dots) scores[i] = (float)dots[i] * (q_scale * scales[i]);
        if (scores[i] > gate) selected[m++] = (uint32_t)i;
    }
    return m;
}

static size_t select_scalar(const int32_t *dots, const float *scales, float q_scale, float *scores,
                            size_t n, float gate, uint32_t *selected)
{
    return select_range(dots, scales, q_scale, scores, 0, n, gate, selected, 0);
}

static void to_f16_scalar(const float *x, size_t n, uint16_t *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = gal_f32_to_f16(x[i]);
}

const struct gal_kernels gal_kernels_scalar = {"scalar",      dot_f32_scalar, dot_f16_scalar,
                                               dot_i8_scalar, select_scalar,  gal_quantize_i8,
                                               to_f16_scalar};

/* ---- AVX2 (+FMA, F16C) ------------------------------------------------------------------ */

#define AVX2 __attribute__((target("avx2,fma,f16c")))

/* Eight __m256 sums to one __m256 of eight totals: [sum(a0), ..., sum(a7)]. */
AVX2 static inline __m256 reduce8_ps(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4,
                                     __m256 a5, __m256 a6, __m256 a7)
{
    __m256 t0 = _mm256_hadd_ps(a0, a1);
    __m256 t1 = _mm256_hadd_ps(a2, a3);
    __m256 t2 = _mm256_hadd_ps(a4, a5);
    __m256 t3 = _mm256_hadd_ps(a6, a7);
    t0 = _mm256_hadd_ps(t0, t1); /* [s0 s1 s2 s3 | s0 s1 s2 s3] low and high halves */
    t2 = _mm256_hadd_ps(t2, t3); /* [s4 s5 s6 s7 | s4 s5 s6 s7] */
    __m256 lo = _mm256_permute2f128_ps(t0, t2, 0x20);
    __m256 hi = _mm256_permute2f128_ps(t0, t2, 0x31);
    return _mm256_add_ps(lo, hi);
}

AVX2 static inline __m256i reduce8_epi32(__m256i a0, __m256i a1, __m256i a2, __m256i a3, __m256i a4,
                                         __m256i a5, __m256i a6, __m256i a7)
{
    __m256i t0 = _mm256_hadd_epi32(a0, a1);
    __m256i t1 = _mm256_hadd_epi32(a2, a3);
    __m256i t2 = _mm256_hadd_epi32(a4, a5);
    __m256i t3 = _mm256_hadd_epi32(a6, a7);
    t0 = _mm256_hadd_epi32(t0, t1);
    t2 = _mm256_hadd_epi32(t2, t3);
    __m256i lo = _mm256_permute2x128_si256(t0, t2, 0x20);
    __m256i hi = _mm256_permute2x128_si256(t0, t2, 0x31);
    return _mm256_add_epi32(lo, hi);
}

AVX2 static inline float hsum_ps_avx2(__m256 a)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static inline int32_t hsum_epi32_avx2(__m256i a)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* A mask of the first `r` (< 8) lanes for maskload. */
AVX2 static inline __m256i lane_mask8(size_t r)
{
    static const int32_t ones_then_zeros[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                0,  0,  0,  0,  0,  0,  0,  0};
    return _mm256_loadu_si256((const __m256i *)(ones_then_zeros + 8 - r));
}

AVX2 static void dot_f32_avx2(const float *q, const float *x, size_t dim, size_t stride, size_t n,
                              float *out, int prefetch)
{
    size_t main = dim & ~(size_t)7, rest = dim - main;
    __m256i tail = lane_mask8(rest);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float *v = x + i * stride;
        if (prefetch) prefetch_rows(v, stride * sizeof *v);
        __m256 a[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
            a[r] = _mm256_setzero_ps();
        for (size_t j = 0; j < main; j += 8) {
            __m256 qv = _mm256_loadu_ps(q + j);
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                a[r] = _mm256_fmadd_ps(_mm256_loadu_ps(v + r * stride + j), qv, a[r]);
        }
        if (rest) {
            __m256 qv = _mm256_maskload_ps(q + main, tail);
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                a[r] = _mm256_fmadd_ps(_mm256_maskload_ps(v + r * stride + main, tail), qv, a[r]);
        }
        _mm256_storeu_ps(out + i, reduce8_ps(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]));
    }
    for (; i < n; i++) {
        const float *v = x + i * stride;
        __m256 a = _mm256_setzero_ps();
        for (size_t j = 0; j < main; j += 8)
            a = _mm256_fmadd_ps(_mm256_loadu_ps(v + j), _mm256_loadu_ps(q + j), a);
        if (rest)
            a = _mm256_fmadd_ps(_mm256_maskload_ps(v + main, tail),
                                _mm256_maskload_ps(q + main, tail), a);
        out[i] = hsum_ps_avx2(a);
    }
}

/* Eight halves (fewer at a tail: zero-filled) to eight floats. */
AVX2 static inline __m256 load_f16x8(const uint16_t *p, size_t count)
{
    if (count >= 8) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    uint16_t tmp[8] = {0};
    memcpy(tmp, p, count * sizeof *p);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)tmp));
}

AVX2 static void dot_f16_avx2(const float *q, const uint16_t *x, size_t dim, size_t stride,
                              size_t n, float *out, int prefetch)
{
    size_t main = dim & ~(size_t)7, rest = dim - main;
    __m256i tail = lane_mask8(rest);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint16_t *v = x + i * stride;
        if (prefetch) prefetch_rows(v, stride * sizeof *v);
        __m256 a[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
            a[r] = _mm256_setzero_ps();
        for (size_t j = 0; j < main; j += 8) {
            __m256 qv = _mm256_loadu_ps(q + j);
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                a[r] = _mm256_fmadd_ps(load_f16x8(v + r * stride + j, 8), qv, a[r]);
        }
        if (rest) {
            __m256 qv = _mm256_maskload_ps(q + main, tail);
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                a[r] = _mm256_fmadd_ps(load_f16x8(v + r * stride + main, rest), qv, a[r]);
        }
        _mm256_storeu_ps(out + i, reduce8_ps(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]));
    }
    for (; i < n; i++) {
        const uint16_t *v = x + i * stride;
        __m256 a = _mm256_setzero_ps();
        for (size_t j = 0; j < main; j += 8)
            a = _mm256_fmadd_ps(load_f16x8(v + j, 8), _mm256_loadu_ps(q + j), a);
        if (rest)
            a = _mm256_fmadd_ps(load_f16x8(v + main, rest), _mm256_maskload_ps(q + main, tail), a);
        out[i] = hsum_ps_avx2(a);
    }
}

/* Sixteen int8 (fewer at a tail: zero-filled) sign-extended to sixteen int16. */
AVX2 static inline __m256i load_i8x16(const int8_t *p, size_t count)
{
    if (count >= 16) return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p));
    int8_t tmp[16] = {0};
    memcpy(tmp, p, count);
    return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)tmp));
}

/*
 * int8 x int8 -> int32: sign-extend to int16 and multiply-add pairs (vpmaddwd). Codes are
 * within [-127, 127], so a pair sum is at most 2 * 127 * 127 and never saturates.
 */
AVX2 static void dot_i8_avx2(const int8_t *q, const int8_t *x, size_t dim, size_t stride, size_t n,
                             int32_t *out, int prefetch)
{
    size_t main = dim & ~(size_t)15, rest = dim - main;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const int8_t *v = x + i * stride;
        if (prefetch) prefetch_rows(v, stride * sizeof *v);
        __m256i a[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
            a[r] = _mm256_setzero_si256();
        for (size_t j = 0; j < main; j += 16) {
            __m256i qv = load_i8x16(q + j, 16);
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                a[r] = _mm256_add_epi32(a[r],
                                        _mm256_madd_epi16(load_i8x16(v + r * stride + j, 16), qv));
        }
        if (rest) {
            __m256i qv = load_i8x16(q + main, rest);
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                a[r] = _mm256_add_epi32(
                    a[r], _mm256_madd_epi16(load_i8x16(v + r * stride + main, rest), qv));
        }
        _mm256_storeu_si256((__m256i *)(out + i),
                            reduce8_epi32(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]));
    }
    for (; i < n; i++) {
        const int8_t *v = x + i * stride;
        __m256i a = _mm256_setzero_si256();
        for (size_t j = 0; j < main; j += 16)
            a = _mm256_add_epi32(a,
                                 _mm256_madd_epi16(load_i8x16(v + j, 16), load_i8x16(q + j, 16)));
        if (rest)
            a = _mm256_add_epi32(
                a, _mm256_madd_epi16(load_i8x16(v + main, rest), load_i8x16(q + main, rest)));
        out[i] = hsum_epi32_avx2(a);
    }
}

AVX2 static size_t select_avx2(const int32_t *dots, const float *scales, float q_scale,
                               float *scores, size_t n, float gate, uint32_t *selected)
{
    size_t m = 0, i = 0;
    const __m256 g = _mm256_set1_ps(gate), qs = _mm256_set1_ps(q_scale);
    for (; i + 8 <= n; i += 8) {
        __m256 s;
        if (dots) {
            __m256 d = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(dots + i)));
            s = _mm256_mul_ps(d, _mm256_mul_ps(qs, _mm256_loadu_ps(scales + i)));
            _mm256_storeu_ps(scores + i, s);
        } else {
            s = _mm256_loadu_ps(scores + i);
        }
        unsigned mask = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(s, g, _CMP_GT_OQ));
        while (mask) {
            selected[m++] = (uint32_t)(i + (unsigned)__builtin_ctz(mask));
            mask &= mask - 1;
        }
    }
    return select_range(dots, scales, q_scale, scores, i, n, gate, selected, m);
}

/* Symmetric quantisation as gal_quantize_i8: the same max, the same multiply, the same
 * round-to-nearest-even conversion (cvtps2dq under the default MXCSR, like lrintf). */
AVX2 static float quantize_i8_avx2(const float *x, size_t n, int8_t *codes)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 mx = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
    float lanes[8], max_abs = 0.0f;
    _mm256_storeu_ps(lanes, mx);
    for (int l = 0; l < 8; l++)
        max_abs = lanes[l] > max_abs ? lanes[l] : max_abs;
    for (size_t j = i; j < n; j++)
        max_abs = fabsf(x[j]) > max_abs ? fabsf(x[j]) : max_abs;
    if (max_abs == 0.0f) {
        memset(codes, 0, n);
        return 0.0f;
    }
    const float inv = 127.0f / max_abs;
    const __m256 vinv = _mm256_set1_ps(inv);
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), vinv));
        c = _mm256_min_epi32(_mm256_max_epi32(c, lo), hi);
        int32_t tmp[8];
        _mm256_storeu_si256((__m256i *)tmp, c);
        for (int l = 0; l < 8; l++)
            codes[i + l] = (int8_t)tmp[l];
    }
    for (; i < n; i++) {
        long c = lrintf(x[i] * inv);
        codes[i] = (int8_t)(c > 127 ? 127 : c < -127 ? -127 : c);
    }
    return max_abs / 127.0f;
}

AVX2 static void to_f16_avx2(const float *x, size_t n, uint16_t *out)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(out + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        out[i] = gal_f32_to_f16(x[i]);
}

const struct gal_kernels gal_kernels_avx2 = {
    "avx2", dot_f32_avx2, dot_f16_avx2, dot_i8_avx2, select_avx2, quantize_i8_avx2, to_f16_avx2};

/* ---- AVX-512 (F, BW, VL, DQ) ------------------------------------------------------------ */

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))

AVX512 static inline __m256 fold512_ps(__m512 a)
{
    return _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
}

AVX512 static inline __m256i fold512_epi32(__m512i a)
{
    return _mm256_add_epi32(_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64(a, 1));
}

AVX512 static void dot_f32_avx512(const float *q, const float *x, size_t dim, size_t stride,
                                  size_t n, float *out, int prefetch)
{
    size_t main = dim & ~(size_t)15, rest = dim - main;
    __mmask16 tail = (__mmask16)((1u << rest) - 1);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float *v = x + i * stride;
        if (prefetch) prefetch_rows(v, stride * sizeof *v);
        __m512 a[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
            a[r] = _mm512_setzero_ps();
        for (size_t j = 0; j < main; j += 16) {
            __m512 qv = _mm512_loadu_ps(q + j);
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                a[r] = _mm512_fmadd_ps(_mm512_loadu_ps(v + r * stride + j), qv, a[r]);
        }
        if (rest) {
            __m512 qv = _mm512_maskz_loadu_ps(tail, q + main);
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                a[r] =
                    _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, v + r * stride + main), qv, a[r]);
        }
        _mm256_storeu_ps(out + i, reduce8_ps(fold512_ps(a[0]), fold512_ps(a[1]), fold512_ps(a[2]),
                                             fold512_ps(a[3]), fold512_ps(a[4]), fold512_ps(a[5]),
                                             fold512_ps(a[6]), fold512_ps(a[7])));
    }
    for (; i < n; i++) {
        const float *v = x + i * stride;
        __m512 a = _mm512_setzero_ps();
        for (size_t j = 0; j < main; j += 16)
            a = _mm512_fmadd_ps(_mm512_loadu_ps(v + j), _mm512_loadu_ps(q + j), a);
        if (rest)
            a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, v + main),
                                _mm512_maskz_loadu_ps(tail, q + main), a);
        out[i] = _mm512_reduce_add_ps(a);
    }
}

AVX512 static inline __m512 load_f16x16(const uint16_t *p, __mmask16 m)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

AVX512 static void dot_f16_avx512(const float *q, const uint16_t *x, size_t dim, size_t stride,
                                  size_t n, float *out, int prefetch)
{
    size_t main = dim & ~(size_t)15, rest = dim - main;
    __mmask16 all = 0xffff, tail = (__mmask16)((1u << rest) - 1);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint16_t *v = x + i * stride;
        if (prefetch) prefetch_rows(v, stride * sizeof *v);
        __m512 a[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
            a[r] = _mm512_setzero_ps();
        for (size_t j = 0; j < main; j += 16) {
            __m512 qv = _mm512_loadu_ps(q + j);
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                a[r] = _mm512_fmadd_ps(load_f16x16(v + r * stride + j, all), qv, a[r]);
        }
        if (rest) {
            __m512 qv = _mm512_maskz_loadu_ps(tail, q + main);
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                a[r] = _mm512_fmadd_ps(load_f16x16(v + r * stride + main, tail), qv, a[r]);
        }
        _mm256_storeu_ps(out + i, reduce8_ps(fold512_ps(a[0]), fold512_ps(a[1]), fold512_ps(a[2]),
                                             fold512_ps(a[3]), fold512_ps(a[4]), fold512_ps(a[5]),
                                             fold512_ps(a[6]), fold512_ps(a[7])));
    }
    for (; i < n; i++) {
        const uint16_t *v = x + i * stride;
        __m512 a = _mm512_setzero_ps();
        for (size_t j = 0; j < main; j += 16)
            a = _mm512_fmadd_ps(load_f16x16(v + j, all), _mm512_loadu_ps(q + j), a);
        if (rest)
            a = _mm512_fmadd_ps(load_f16x16(v + main, tail), _mm512_maskz_loadu_ps(tail, q + main),
                                a);
        out[i] = _mm512_reduce_add_ps(a);
    }
}

AVX512 static inline __m512i load_i8x32(const int8_t *p, __mmask32 m)
{
    return _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(m, p));
}

AVX512 static void dot_i8_avx512(const int8_t *q, const int8_t *x, size_t dim, size_t stride,
                                 size_t n, int32_t *out, int prefetch)
{
    size_t main = dim & ~(size_t)31, rest = dim - main;
    __mmask32 all = 0xffffffffu, tail = (__mmask32)((1ull << rest) - 1);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const int8_t *v = x + i * stride;
        if (prefetch) prefetch_rows(v, stride * sizeof *v);
        __m512i a[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
            a[r] = _mm512_setzero_si512();
        for (size_t j = 0; j < main; j += 32) {
            __m512i qv = load_i8x32(q + j, all);
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                a[r] = _mm512_add_epi32(a[r],
                                        _mm512_madd_epi16(load_i8x32(v + r * stride + j, all), qv));
        }
        if (rest) {
            __m512i qv = load_i8x32(q + main, tail);
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                a[r] = _mm512_add_epi32(
                    a[r], _mm512_madd_epi16(load_i8x32(v + r * stride + main, tail), qv));
        }
        _mm256_storeu_si256((__m256i *)(out + i),
                            reduce8_epi32(fold512_epi32(a[0]), fold512_epi32(a[1]),
                                          fold512_epi32(a[2]), fold512_epi32(a[3]),
                                          fold512_epi32(a[4]), fold512_epi32(a[5]),
                                          fold512_epi32(a[6]), fold512_epi32(a[7])));
    }
    for (; i < n; i++) {
        const int8_t *v = x + i * stride;
        __m512i a = _mm512_setzero_si512();
        for (size_t j = 0; j < main; j += 32)
            a = _mm512_add_epi32(a,
                                 _mm512_madd_epi16(load_i8x32(v + j, all), load_i8x32(q + j, all)));
        if (rest)
            a = _mm512_add_epi32(
                a, _mm512_madd_epi16(load_i8x32(v + main, tail), load_i8x32(q + main, tail)));
        out[i] = _mm512_reduce_add_epi32(a);
    }
}

AVX512 static size_t select_avx512(const int32_t *dots, const float *scales, float q_scale,
                                   float *scores, size_t n, float gate, uint32_t *selected)
{
    size_t m = 0, i = 0;
    const __m512 g = _mm512_set1_ps(gate), qs = _mm512_set1_ps(q_scale);
    const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    for (; i + 16 <= n; i += 16) {
        __m512 s;
        if (dots) {
            __m512 d = _mm512_cvtepi32_ps(_mm512_loadu_si512(dots + i));
            s = _mm512_mul_ps(d, _mm512_mul_ps(qs, _mm512_loadu_ps(scales + i)));
            _mm512_storeu_ps(scores + i, s);
        } else {
            s = _mm512_loadu_ps(scores + i);
        }
        __mmask16 mask = _mm512_cmp_ps_mask(s, g, _CMP_GT_OQ);
        if (mask) {
            _mm512_mask_compressstoreu_epi32(selected + m, mask,
                                             _mm512_add_epi32(iota, _mm512_set1_epi32((int)i)));
            m += (size_t)__builtin_popcount(mask);
        }
    }
    return select_range(dots, scales, q_scale, scores, i, n, gate, selected, m);
}

AVX512 static float quantize_i8_avx512(const float *x, size_t n, int8_t *codes)
{
    __m512 mx = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 tail = (__mmask16)((1u << (n - i)) - 1);
        mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_maskz_loadu_ps(tail, x + i)));
    }
    float max_abs = _mm512_reduce_max_ps(mx);
    if (max_abs == 0.0f) {
        memset(codes, 0, n);
        return 0.0f;
    }
    const __m512 vinv = _mm512_set1_ps(127.0f / max_abs);
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    for (i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512i c = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vinv));
        c = _mm512_min_epi32(_mm512_max_epi32(c, lo), hi);
        _mm512_mask_cvtepi32_storeu_epi8(codes + i, m, c);
    }
    return max_abs / 127.0f;
}

AVX512 static void to_f16_avx512(const float *x, size_t n, uint16_t *out)
{
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i), _MM_FROUND_TO_NEAREST_INT);
        _mm256_mask_storeu_epi16(out + i, m, h);
    }
}

const struct gal_kernels gal_kernels_avx512 = {"avx512",      dot_f32_avx512, dot_f16_avx512,
                                               dot_i8_avx512, select_avx512,  quantize_i8_avx512,
                                               to_f16_avx512};

/* ---- AVX-512 VNNI: int8 with vpdpbusd ---------------------------------------------------- */

#define AVX512VNNI                                                                                 \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))

/*
 * vpdpbusd multiplies unsigned by signed bytes and adds four products into each int32 lane
 * (no saturation). Flipping the sign bit of a stored code x gives the unsigned byte x + 128,
 * so the sum is dot(q, x) + 128 * sum(q), and the second term is subtracted once per row.
 * One instruction per 64 dimensions instead of six (widen, multiply-add, add, twice).
 */
AVX512VNNI static void dot_i8_avx512vnni(const int8_t *q, const int8_t *x, size_t dim,
                                         size_t stride, size_t n, int32_t *out, int prefetch)
{
    /* Fewer than 8 rows (the HNSW graph's one distance at a time, a scan's last rows): the
     * AVX-512BW kernel, without the query sum VNNI's unsigned operand needs (a scalar pass
     * over the query that costs more than one row's dot product). */
    if (n < 8) {
        dot_i8_avx512(q, x, dim, stride, n, out, prefetch);
        return;
    }
    size_t main = dim & ~(size_t)63, rest = dim - main;
    __mmask64 tail = rest ? (__mmask64)((1ull << rest) - 1) : 0;
    __m512i flip = _mm512_set1_epi8((char)0x80);
    int32_t q_sum = 0;
    for (size_t j = 0; j < dim; j++)
        q_sum += q[j];
    __m256i correction = _mm256_set1_epi32(128 * q_sum);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const int8_t *v = x + i * stride;
        if (prefetch) prefetch_rows(v, stride);
        __m512i a[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
            a[r] = _mm512_setzero_si512();
        for (size_t j = 0; j < main; j += 64) {
            __m512i qv = _mm512_loadu_si512(q + j);
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                a[r] = _mm512_dpbusd_epi32(
                    a[r], _mm512_xor_si512(_mm512_loadu_si512(v + r * stride + j), flip), qv);
        }
        if (rest) {
            /* Masked-off bytes load as zero in both: they add 0 * q = 0 after the flip. */
            __m512i qv = _mm512_maskz_loadu_epi8(tail, q + main);
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                a[r] = _mm512_dpbusd_epi32(
                    a[r],
                    _mm512_xor_si512(_mm512_maskz_loadu_epi8(tail, v + r * stride + main), flip),
                    qv);
        }
        __m256i sums = reduce8_epi32(fold512_epi32(a[0]), fold512_epi32(a[1]), fold512_epi32(a[2]),
                                     fold512_epi32(a[3]), fold512_epi32(a[4]), fold512_epi32(a[5]),
                                     fold512_epi32(a[6]), fold512_epi32(a[7]));
        _mm256_storeu_si256((__m256i *)(out + i), _mm256_sub_epi32(sums, correction));
    }
    if (i < n) dot_i8_avx512(q, x + i * stride, dim, stride, n - i, out + i, 0);
}

const struct gal_kernels gal_kernels_avx512vnni = {
    "avx512vnni",  dot_f32_avx512,     dot_f16_avx512, dot_i8_avx512vnni,
    select_avx512, quantize_i8_avx512, to_f16_avx512};

/* ---- dispatch --------------------------------------------------------------------------- */

static int cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c & bit_F16C) != 0;
}

static int cpu_runs(const struct gal_kernels *k)
{
    __builtin_cpu_init();
    if (k == &gal_kernels_scalar) return 1;
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    if (k == &gal_kernels_avx2) return avx2;
    int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    if (k == &gal_kernels_avx512) return avx512;
    if (k == &gal_kernels_avx512vnni) return avx512 && __builtin_cpu_supports("avx512vnni");
    return 0;
}

/* The CPU-feature dispatch choice: set once, then only read. */
static const struct gal_kernels *best_kernels;
static pthread_once_t best_once = PTHREAD_ONCE_INIT;

static void choose_best(void)
{
    if (cpu_runs(&gal_kernels_avx512vnni))
        best_kernels = &gal_kernels_avx512vnni;
    else if (cpu_runs(&gal_kernels_avx512))
        best_kernels = &gal_kernels_avx512;
    else if (cpu_runs(&gal_kernels_avx2))
        best_kernels = &gal_kernels_avx2;
    else
        best_kernels = &gal_kernels_scalar;
}

const struct gal_kernels *gal_kernels_best(void)
{
    pthread_once(&best_once, choose_best);
    return best_kernels;
}

const struct gal_kernels *gal_kernels_find(const char *name)
{
    static const struct gal_kernels *all[] = {&gal_kernels_scalar, &gal_kernels_avx2,
                                              &gal_kernels_avx512, &gal_kernels_avx512vnni};
    if (!name) return gal_kernels_best();
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(all[i]->name, name) == 0) return cpu_runs(all[i]) ? all[i] : NULL;
    return NULL;
}
