/*
 * Affine warp with bilinear sampling (img_warp_affine), the crop maker of the face pipeline:
 * every face gets several aligned crops (112x112, 150x150, 128x128, 192x192...) per request.
 *
 * One scalar definition of the result (warp_pixel) and SIMD twins for RGB (AVX2, AVX-512)
 * that compute the very same float operations in the same order, eight or sixteen output
 * pixels at a time, so their output is bit-identical to the scalar path's. A block of pixels
 * whose taps are not all inside the image (edges, border, the last source pixel) goes through
 * warp_pixel. The variant is chosen per call from the CPU's features, as src/nn/fast.c does.
 */
#include "base/base.h"
#include "img/img.h"
#include "img/img_private.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define IMG_HAVE_X86 1
#endif

/* The SIMD twins are exact only if no multiply-add is fused; GCC does not fuse under -std=c17
 * but clang does by default (also in the scalar code inlined into the AVX2 functions). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

static inline uint8_t round_u8(float v)
{
    if (!(v > 0.0f)) return 0; /* also NaN */
    if (v >= 255.0f) return 255;
    return (uint8_t)(v + 0.5f);
}

/*
 * Output pixel (u, v): the definition every variant reproduces. floor is taken by truncation
 * and a correction, not floorf: baseline x86-64 has no rounding instruction, and the libm call
 * was a third of the scalar warp's time. sx is in (-1, W) there, so both agree.
 */
static inline void warp_pixel(const img_image *src, const float m[6], int u, int v, uint8_t border,
                              uint8_t *d)
{
    const int c = src->channels, W = src->width, H = src->height;
    const float cu = u + 0.5f, cv = v + 0.5f;
    const float sx = m[0] * cu + m[1] * cv + m[2] - 0.5f;
    const float sy = m[3] * cu + m[4] * cv + m[5] - 0.5f;
    /* Written so that NaN falls in the border case too. */
    if (!(sx > -1.0f && sx < (float)W && sy > -1.0f && sy < (float)H)) {
        memset(d, border, (size_t)c);
        return;
    }
    int x0 = (int)sx, y0 = (int)sy;
    x0 -= (float)x0 > sx;
    y0 -= (float)y0 > sy;
    const float fx = sx - x0, fy = sy - y0;
    const int in_x0 = x0 >= 0, in_x1 = x0 + 1 < W, in_y0 = y0 >= 0, in_y1 = y0 + 1 < H;
    if (in_x0 && in_x1 && in_y0 && in_y1) {
        const uint8_t *p = src->data + ((size_t)y0 * W + x0) * c;
        const size_t row = (size_t)W * c;
        for (int ch = 0; ch < c; ch++) {
            float top = p[ch] + fx * (p[c + ch] - p[ch]);
            float bot = p[row + ch] + fx * (p[row + c + ch] - p[row + ch]);
            d[ch] = round_u8(top + fy * (bot - top));
        }
        return;
    }
    /* Near an edge: taps outside the source read the border value. */
    const float bv = border;
    for (int ch = 0; ch < c; ch++) {
        float p00 = in_y0 && in_x0 ? src->data[((size_t)y0 * W + x0) * c + ch] : bv;
        float p01 = in_y0 && in_x1 ? src->data[((size_t)y0 * W + x0 + 1) * c + ch] : bv;
        float p10 = in_y1 && in_x0 ? src->data[((size_t)(y0 + 1) * W + x0) * c + ch] : bv;
        float p11 = in_y1 && in_x1 ? src->data[((size_t)(y0 + 1) * W + x0 + 1) * c + ch] : bv;
        float top = p00 + fx * (p01 - p00), bot = p10 + fx * (p11 - p10);
        d[ch] = round_u8(top + fy * (bot - top));
    }
}

static void warp_row_scalar(const img_image *src, const float m[6], int v, int u0, int out_w,
                            uint8_t border, uint8_t *d)
{
    const int c = src->channels;
    for (int u = u0; u < out_w; u++)
        warp_pixel(src, m, u, v, border, d + (size_t)u * c);
}

#ifdef IMG_HAVE_X86
/*
 * Prefetches the source pixels that output row v will read. A crop walks the source along a
 * slanted line per output row, which the hardware prefetchers do not follow, and a crop's
 * region of the photo is usually not in cache yet: without this, the SIMD rows spent most of
 * their time waiting on their gathers. Points every `step` output pixels (at most 48 source
 * bytes apart), both source rows of the bilinear taps; the coordinates need not be exact.
 */
static inline void prefetch_row(const img_image *src, const float m[6], int v, int out_w, int step)
{
    const int W = src->width, H = src->height;
    const float cv = v + 0.5f;
    const size_t row = (size_t)W * 3;
    for (int u = 0; u < out_w + step; u += step) {
        const float cu = u + 0.5f;
        const float sx = m[0] * cu + m[1] * cv + m[2], sy = m[3] * cu + m[4] * cv + m[5];
        if (!(sx >= 0.0f && sx < (float)W && sy >= 0.0f && sy < (float)H)) continue;
        const int x = (int)sx, y = (int)sy;
        const uint8_t *p = src->data + (size_t)y * row + (size_t)x * 3;
        __builtin_prefetch(p);
        if (y + 1 < H) __builtin_prefetch(p + row);
    }
}

/* The output-pixel step of prefetch_row for matrix m. */
static int prefetch_step(const float m[6])
{
    const float a = fmaxf(fabsf(m[0]), fabsf(m[3]));
    if (!(a > 1.0f)) return 16;
    const float s = 16.0f / a;
    return s < 1.0f ? 1 : (int)s;
}

/*
 * RGB, 8 output pixels per step. Each lane gathers four 32-bit words: the top-left tap's RGB
 * plus one byte, the top-right tap's RGB plus one byte, and the same one row down; the byte
 * past the bottom-right tap is why the last source pixel may not be a bottom-right tap here
 * (it would read past the buffer). Offsets are 32-bit: the caller only comes here when the
 * whole image fits in an int32 offset.
 */
__attribute__((target("avx2"))) static void
warp_row_avx2(const img_image *src, const float m[6], int v, int out_w, uint8_t border, uint8_t *d)
{
    const int W = src->width, H = src->height;
    const float cv = v + 0.5f;
    const __m256 m0 = _mm256_set1_ps(m[0]), m3 = _mm256_set1_ps(m[3]);
    const __m256 b1 = _mm256_set1_ps(m[1] * cv), b4 = _mm256_set1_ps(m[4] * cv);
    const __m256 m2 = _mm256_set1_ps(m[2]), m5 = _mm256_set1_ps(m[5]);
    const __m256 half = _mm256_set1_ps(0.5f);
    const __m256 lane = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i minus1 = _mm256_set1_epi32(-1), xmax = _mm256_set1_epi32(W - 1),
                  ymax = _mm256_set1_epi32(H - 1), width = _mm256_set1_epi32(W);
    /* The top-left tap index of the one block whose bottom-right tap is the last pixel. */
    const __m256i last = _mm256_set1_epi32(W * H - W - 2);
    const __m256i row3 = _mm256_set1_epi32(3 * W), three = _mm256_set1_epi32(3);
    const __m256i byte = _mm256_set1_epi32(0xFF), zero = _mm256_setzero_si256();
    const __m256i pack = _mm256_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1, 0,
                                          1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
    const int *base = (const int *)(const void *)src->data;
    const size_t out_bytes = (size_t)out_w * 3;
    int u = 0;
    for (; u + 8 <= out_w; u += 8) {
        const __m256 cu = _mm256_add_ps(_mm256_add_ps(_mm256_set1_ps((float)u), lane), half);
        /* ((m0 * cu + m1 * cv) + m2) - 0.5, as warp_pixel evaluates it */
        const __m256 sx =
            _mm256_sub_ps(_mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(m0, cu), b1), m2), half);
        const __m256 sy =
            _mm256_sub_ps(_mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(m3, cu), b4), m5), half);
        const __m256 fx0 = _mm256_floor_ps(sx), fy0 = _mm256_floor_ps(sy);
        /* Out of int range and NaN convert to INT_MIN, which fails the x0 > -1 test. */
        const __m256i x0 = _mm256_cvttps_epi32(fx0), y0 = _mm256_cvttps_epi32(fy0);
        __m256i ok = _mm256_and_si256(_mm256_cmpgt_epi32(x0, minus1), _mm256_cmpgt_epi32(xmax, x0));
        ok = _mm256_and_si256(ok, _mm256_cmpgt_epi32(y0, minus1));
        ok = _mm256_and_si256(ok, _mm256_cmpgt_epi32(ymax, y0));
        if (_mm256_movemask_epi8(ok) != -1) {
            for (int k = 0; k < 8; k++)
                warp_pixel(src, m, u + k, v, border, d + (size_t)(u + k) * 3);
            continue;
        }
        const __m256i idx = _mm256_add_epi32(_mm256_mullo_epi32(y0, width), x0);
        if (!_mm256_testz_si256(_mm256_cmpeq_epi32(idx, last), _mm256_cmpeq_epi32(idx, last))) {
            for (int k = 0; k < 8; k++)
                warp_pixel(src, m, u + k, v, border, d + (size_t)(u + k) * 3);
            continue;
        }
        const __m256i off = _mm256_mullo_epi32(idx, three);
        const __m256i off1 = _mm256_add_epi32(off, three);
        const __m256i t0 = _mm256_i32gather_epi32(base, off, 1);
        const __m256i t1 = _mm256_i32gather_epi32(base, off1, 1);
        const __m256i u0 = _mm256_i32gather_epi32(base, _mm256_add_epi32(off, row3), 1);
        const __m256i u1 = _mm256_i32gather_epi32(base, _mm256_add_epi32(off1, row3), 1);
        const __m256 fx = _mm256_sub_ps(sx, fx0), fy = _mm256_sub_ps(sy, fy0);
        __m256i outv = zero;
        for (int ch = 0; ch < 3; ch++) {
            const __m128i sh = _mm_cvtsi32_si128(8 * ch);
            const __m256 p00 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(t0, sh), byte));
            const __m256 p01 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(t1, sh), byte));
            const __m256 p10 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(u0, sh), byte));
            const __m256 p11 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(u1, sh), byte));
            const __m256 top = _mm256_add_ps(p00, _mm256_mul_ps(fx, _mm256_sub_ps(p01, p00)));
            const __m256 bot = _mm256_add_ps(p10, _mm256_mul_ps(fx, _mm256_sub_ps(p11, p10)));
            const __m256 val = _mm256_add_ps(top, _mm256_mul_ps(fy, _mm256_sub_ps(bot, top)));
            /* round_u8: v + 0.5 truncated, clamped to 0..255 (v is never NaN here) */
            __m256i q = _mm256_cvttps_epi32(_mm256_add_ps(val, half));
            q = _mm256_min_epi32(_mm256_max_epi32(q, zero), byte);
            outv = _mm256_or_si256(outv, _mm256_sll_epi32(q, sh));
        }
        /* [R G B 0] x 8 -> 24 packed bytes: 12 per 128-bit half */
        outv = _mm256_shuffle_epi8(outv, pack);
        uint8_t *o = d + (size_t)u * 3;
        if ((size_t)u * 3 + 28 <= out_bytes) {
            /* The 4 bytes written past the block belong to the next block, not yet written. */
            _mm_storeu_si128((__m128i *)(void *)o, _mm256_castsi256_si128(outv));
            _mm_storeu_si128((__m128i *)(void *)(o + 12), _mm256_extracti128_si256(outv, 1));
        } else {
            uint8_t tmp[32];
            _mm256_storeu_si256((__m256i *)(void *)tmp, outv);
            memcpy(o, tmp, 12);
            memcpy(o + 12, tmp + 16, 12);
        }
    }
    warp_row_scalar(src, m, v, u, out_w, border, d);
}

/* The AVX-512 twin of warp_row_avx2, 16 pixels per step (byte shuffles need AVX512BW). */
__attribute__((target("avx512f,avx512bw"))) static void warp_row_avx512(const img_image *src,
                                                                        const float m[6], int v,
                                                                        int out_w, uint8_t border,
                                                                        uint8_t *d)
{
    const int W = src->width, H = src->height;
    const float cv = v + 0.5f;
    const __m512 m0 = _mm512_set1_ps(m[0]), m3 = _mm512_set1_ps(m[3]);
    const __m512 b1 = _mm512_set1_ps(m[1] * cv), b4 = _mm512_set1_ps(m[4] * cv);
    const __m512 m2 = _mm512_set1_ps(m[2]), m5 = _mm512_set1_ps(m[5]);
    const __m512 half = _mm512_set1_ps(0.5f);
    const __m512 lane = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i minus1 = _mm512_set1_epi32(-1), xmax = _mm512_set1_epi32(W - 1),
                  ymax = _mm512_set1_epi32(H - 1), width = _mm512_set1_epi32(W);
    const __m512i last = _mm512_set1_epi32(W * H - W - 2);
    const __m512i row3 = _mm512_set1_epi32(3 * W), three = _mm512_set1_epi32(3);
    const __m512i byte = _mm512_set1_epi32(0xFF), zero = _mm512_setzero_si512();
    const __m512i pack = _mm512_broadcast_i32x4(
        _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1));
    const void *base = src->data;
    const size_t out_bytes = (size_t)out_w * 3;
    int u = 0;
    for (; u + 16 <= out_w; u += 16) {
        const __m512 cu = _mm512_add_ps(_mm512_add_ps(_mm512_set1_ps((float)u), lane), half);
        const __m512 sx =
            _mm512_sub_ps(_mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(m0, cu), b1), m2), half);
        const __m512 sy =
            _mm512_sub_ps(_mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(m3, cu), b4), m5), half);
        const __m512 fx0 = _mm512_roundscale_ps(sx, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
        const __m512 fy0 = _mm512_roundscale_ps(sy, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
        /* Out of range and NaN convert to INT_MIN (AVX-512's integer indefinite) too. */
        const __m512i x0 = _mm512_cvttps_epi32(fx0), y0 = _mm512_cvttps_epi32(fy0);
        __mmask16 ok = _mm512_cmpgt_epi32_mask(x0, minus1) & _mm512_cmpgt_epi32_mask(xmax, x0) &
                       _mm512_cmpgt_epi32_mask(y0, minus1) & _mm512_cmpgt_epi32_mask(ymax, y0);
        __m512i idx = zero;
        if (ok == 0xFFFF) {
            idx = _mm512_add_epi32(_mm512_mullo_epi32(y0, width), x0);
            ok = (__mmask16)~_mm512_cmpeq_epi32_mask(idx, last);
        }
        if (ok != 0xFFFF) {
            for (int k = 0; k < 16; k++)
                warp_pixel(src, m, u + k, v, border, d + (size_t)(u + k) * 3);
            continue;
        }
        const __m512i off = _mm512_mullo_epi32(idx, three);
        const __m512i off1 = _mm512_add_epi32(off, three);
        const __m512i t0 = _mm512_i32gather_epi32(off, base, 1);
        const __m512i t1 = _mm512_i32gather_epi32(off1, base, 1);
        const __m512i u0 = _mm512_i32gather_epi32(_mm512_add_epi32(off, row3), base, 1);
        const __m512i u1 = _mm512_i32gather_epi32(_mm512_add_epi32(off1, row3), base, 1);
        const __m512 fx = _mm512_sub_ps(sx, fx0), fy = _mm512_sub_ps(sy, fy0);
        __m512i outv = zero;
        for (int ch = 0; ch < 3; ch++) {
            const __m128i sh = _mm_cvtsi32_si128(8 * ch);
            const __m512 p00 = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srl_epi32(t0, sh), byte));
            const __m512 p01 = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srl_epi32(t1, sh), byte));
            const __m512 p10 = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srl_epi32(u0, sh), byte));
            const __m512 p11 = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srl_epi32(u1, sh), byte));
            const __m512 top = _mm512_add_ps(p00, _mm512_mul_ps(fx, _mm512_sub_ps(p01, p00)));
            const __m512 bot = _mm512_add_ps(p10, _mm512_mul_ps(fx, _mm512_sub_ps(p11, p10)));
            const __m512 val = _mm512_add_ps(top, _mm512_mul_ps(fy, _mm512_sub_ps(bot, top)));
            __m512i q = _mm512_cvttps_epi32(_mm512_add_ps(val, half));
            q = _mm512_min_epi32(_mm512_max_epi32(q, zero), byte);
            outv = _mm512_or_si512(outv, _mm512_sll_epi32(q, sh));
        }
        outv = _mm512_shuffle_epi8(outv, pack);
        uint8_t *o = d + (size_t)u * 3;
        if ((size_t)u * 3 + 52 <= out_bytes) {
            _mm_storeu_si128((__m128i *)(void *)o, _mm512_castsi512_si128(outv));
            _mm_storeu_si128((__m128i *)(void *)(o + 12), _mm512_extracti32x4_epi32(outv, 1));
            _mm_storeu_si128((__m128i *)(void *)(o + 24), _mm512_extracti32x4_epi32(outv, 2));
            _mm_storeu_si128((__m128i *)(void *)(o + 36), _mm512_extracti32x4_epi32(outv, 3));
        } else {
            uint8_t tmp[64];
            _mm512_storeu_si512(tmp, outv);
            for (int k = 0; k < 4; k++)
                memcpy(o + 12 * k, tmp + 16 * k, 12);
        }
    }
    warp_row_scalar(src, m, v, u, out_w, border, d);
}
/*
 * The same with half the gathered elements, as gathers are most of the time: each lane reads
 * one 64-bit word per source row (both taps' RGB and two more bytes), and VBMI's two-source
 * byte permute spreads each tap's byte into a 32-bit lane. The bytes past the bottom-right tap
 * are two, so again the last source pixel may not be one.
 */
__attribute__((target("avx512f,avx512bw,avx512vbmi"))) static void
warp_row_avx512vbmi(const img_image *src, const float m[6], int v, int out_w, uint8_t border,
                    uint8_t *d)
{
    const int W = src->width, H = src->height;
    const float cv = v + 0.5f;
    const __m512 m0 = _mm512_set1_ps(m[0]), m3 = _mm512_set1_ps(m[3]);
    const __m512 b1 = _mm512_set1_ps(m[1] * cv), b4 = _mm512_set1_ps(m[4] * cv);
    const __m512 m2 = _mm512_set1_ps(m[2]), m5 = _mm512_set1_ps(m[5]);
    const __m512 half = _mm512_set1_ps(0.5f);
    const __m512 lane = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i minus1 = _mm512_set1_epi32(-1), xmax = _mm512_set1_epi32(W - 1),
                  ymax = _mm512_set1_epi32(H - 1), width = _mm512_set1_epi32(W);
    const __m512i last = _mm512_set1_epi32(W * H - W - 2);
    const __m256i row3h = _mm256_set1_epi32(3 * W);
    const __m512i three = _mm512_set1_epi32(3);
    const __m512i spread =
        _mm512_setr_epi32(0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120);
    const __mmask64 low = 0x1111111111111111ull;
    const __m512i byte = _mm512_set1_epi32(0xFF), zero = _mm512_setzero_si512();
    const __m512i pack = _mm512_broadcast_i32x4(
        _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1));
    const void *base = src->data;
    const size_t out_bytes = (size_t)out_w * 3;
    int u = 0;
    for (; u + 16 <= out_w; u += 16) {
        const __m512 cu = _mm512_add_ps(_mm512_add_ps(_mm512_set1_ps((float)u), lane), half);
        const __m512 sx =
            _mm512_sub_ps(_mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(m0, cu), b1), m2), half);
        const __m512 sy =
            _mm512_sub_ps(_mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(m3, cu), b4), m5), half);
        const __m512 fx0 = _mm512_roundscale_ps(sx, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
        const __m512 fy0 = _mm512_roundscale_ps(sy, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
        /* Out of range and NaN convert to INT_MIN (AVX-512's integer indefinite) too. */
        const __m512i x0 = _mm512_cvttps_epi32(fx0), y0 = _mm512_cvttps_epi32(fy0);
        __mmask16 ok = _mm512_cmpgt_epi32_mask(x0, minus1) & _mm512_cmpgt_epi32_mask(xmax, x0) &
                       _mm512_cmpgt_epi32_mask(y0, minus1) & _mm512_cmpgt_epi32_mask(ymax, y0);
        __m512i idx = zero;
        if (ok == 0xFFFF) {
            idx = _mm512_add_epi32(_mm512_mullo_epi32(y0, width), x0);
            ok = (__mmask16)~_mm512_cmpeq_epi32_mask(idx, last);
        }
        if (ok != 0xFFFF) {
            for (int k = 0; k < 16; k++)
                warp_pixel(src, m, u + k, v, border, d + (size_t)(u + k) * 3);
            continue;
        }
        const __m512i off = _mm512_mullo_epi32(idx, three);
        const __m256i lo = _mm512_castsi512_si256(off), hi = _mm512_extracti64x4_epi64(off, 1);
        const __m512i t0 = _mm512_i32gather_epi64(lo, base, 1);
        const __m512i t1 = _mm512_i32gather_epi64(hi, base, 1);
        const __m512i u0 = _mm512_i32gather_epi64(_mm256_add_epi32(lo, row3h), base, 1);
        const __m512i u1 = _mm512_i32gather_epi64(_mm256_add_epi32(hi, row3h), base, 1);
        const __m512 fx = _mm512_sub_ps(sx, fx0), fy = _mm512_sub_ps(sy, fy0);
        __m512i outv = zero;
        for (int ch = 0; ch < 3; ch++) {
            const __m128i sh = _mm_cvtsi32_si128(8 * ch);
            /* lane i's low byte: byte ch (left tap) or ch + 3 (right tap) of word i */
            const __m512i sl = _mm512_add_epi32(spread, _mm512_set1_epi32(ch));
            const __m512i sr = _mm512_add_epi32(spread, _mm512_set1_epi32(ch + 3));
            const __m512 p00 = _mm512_cvtepi32_ps(_mm512_maskz_permutex2var_epi8(low, t0, sl, t1));
            const __m512 p01 = _mm512_cvtepi32_ps(_mm512_maskz_permutex2var_epi8(low, t0, sr, t1));
            const __m512 p10 = _mm512_cvtepi32_ps(_mm512_maskz_permutex2var_epi8(low, u0, sl, u1));
            const __m512 p11 = _mm512_cvtepi32_ps(_mm512_maskz_permutex2var_epi8(low, u0, sr, u1));
            const __m512 top = _mm512_add_ps(p00, _mm512_mul_ps(fx, _mm512_sub_ps(p01, p00)));
            const __m512 bot = _mm512_add_ps(p10, _mm512_mul_ps(fx, _mm512_sub_ps(p11, p10)));
            const __m512 val = _mm512_add_ps(top, _mm512_mul_ps(fy, _mm512_sub_ps(bot, top)));
            __m512i q = _mm512_cvttps_epi32(_mm512_add_ps(val, half));
            q = _mm512_min_epi32(_mm512_max_epi32(q, zero), byte);
            outv = _mm512_or_si512(outv, _mm512_sll_epi32(q, sh));
        }
        outv = _mm512_shuffle_epi8(outv, pack);
        uint8_t *o = d + (size_t)u * 3;
        if ((size_t)u * 3 + 52 <= out_bytes) {
            _mm_storeu_si128((__m128i *)(void *)o, _mm512_castsi512_si128(outv));
            _mm_storeu_si128((__m128i *)(void *)(o + 12), _mm512_extracti32x4_epi32(outv, 1));
            _mm_storeu_si128((__m128i *)(void *)(o + 24), _mm512_extracti32x4_epi32(outv, 2));
            _mm_storeu_si128((__m128i *)(void *)(o + 36), _mm512_extracti32x4_epi32(outv, 3));
        } else {
            uint8_t tmp[64];
            _mm512_storeu_si512(tmp, outv);
            for (int k = 0; k < 4; k++)
                memcpy(o + 12 * k, tmp + 16 * k, 12);
        }
    }
    warp_row_scalar(src, m, v, u, out_w, border, d);
}
#endif

int img_isa_supported(img_isa isa)
{
    switch (isa) {
    case IMG_ISA_AUTO:
    case IMG_ISA_SCALAR: return 1;
#ifdef IMG_HAVE_X86
    case IMG_ISA_AVX2: return __builtin_cpu_supports("avx2");
    case IMG_ISA_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    case IMG_ISA_AVX512VBMI:
        return img_isa_supported(IMG_ISA_AVX512) && __builtin_cpu_supports("avx512vbmi");
#else
    case IMG_ISA_AVX2:
    case IMG_ISA_AVX512:
    case IMG_ISA_AVX512VBMI: return 0;
#endif
    }
    return 0;
}

const char *img_isa_name(img_isa isa)
{
    switch (isa) {
    case IMG_ISA_AUTO: return "auto";
    case IMG_ISA_SCALAR: return "scalar";
    case IMG_ISA_AVX2: return "avx2";
    case IMG_ISA_AVX512: return "avx512";
    case IMG_ISA_AVX512VBMI: return "avx512vbmi";
    }
    return "?";
}

int img_warp_affine_isa(const img_image *src, const float m[6], int out_w, int out_h,
                        uint8_t border, img_image *out, img_isa isa)
{
    if (!src || !src->data || !out || !m)
        return base_error_set(BASE_ERR_INVALID, "img_warp_affine: no image or matrix");
    if (!img_isa_supported(isa))
        return base_error_set(BASE_ERR_UNSUPPORTED, "img_warp_affine: this CPU lacks %s",
                              img_isa_name(isa));
    int rc = img_alloc(out, out_w, out_h, src->channels);
    if (rc) return rc;
    /* The SIMD rows take RGB whose byte offsets (plus a 4-byte read) fit an int32. */
    const int64_t src_bytes = (int64_t)src->width * src->height * src->channels;
    if (src->channels != 3 || src_bytes > INT32_MAX - 64) isa = IMG_ISA_SCALAR;
    if (isa == IMG_ISA_AUTO)
        isa = img_isa_supported(IMG_ISA_AVX512VBMI) ? IMG_ISA_AVX512VBMI
              : img_isa_supported(IMG_ISA_AVX512)   ? IMG_ISA_AVX512
              : img_isa_supported(IMG_ISA_AVX2)     ? IMG_ISA_AVX2
                                                    : IMG_ISA_SCALAR;
    const size_t row = (size_t)out_w * out->channels;
#ifdef IMG_HAVE_X86
    /* Rows are prefetched this many rows ahead (about half a microsecond at 112 pixels). */
    enum { PREFETCH_ROWS = 2 };
    const int step = prefetch_step(m);
    if (isa != IMG_ISA_SCALAR)
        for (int v = 0; v < PREFETCH_ROWS && v < out_h; v++)
            prefetch_row(src, m, v, out_w, step);
#endif
    for (int v = 0; v < out_h; v++) {
        uint8_t *d = out->data + (size_t)v * row;
#ifdef IMG_HAVE_X86
        if (isa != IMG_ISA_SCALAR && v + PREFETCH_ROWS < out_h)
            prefetch_row(src, m, v + PREFETCH_ROWS, out_w, step);
#endif
        switch (isa) {
#ifdef IMG_HAVE_X86
        case IMG_ISA_AVX512VBMI: warp_row_avx512vbmi(src, m, v, out_w, border, d); break;
        case IMG_ISA_AVX512: warp_row_avx512(src, m, v, out_w, border, d); break;
        case IMG_ISA_AVX2: warp_row_avx2(src, m, v, out_w, border, d); break;
#endif
        default: warp_row_scalar(src, m, v, 0, out_w, border, d); break;
        }
    }
    return 0;
}

int img_warp_affine(const img_image *src, const float m[6], int out_w, int out_h, uint8_t border,
                    img_image *out)
{
    return img_warp_affine_isa(src, m, out_w, out_h, border, out, IMG_ISA_AUTO);
}
