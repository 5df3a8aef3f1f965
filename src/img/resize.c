/*
 * Resampling: separable resize (area averaging or bilinear per axis). Plain C over float
 * accumulators; results are rounded to nearest. The affine warp is in warp.c.
 */
#include "base/base.h"
#include "img/img.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/*
 * The taps of one axis: output index i reads source indices start[i] .. start[i]+count[i]-1
 * with weights w[i * max_taps + k], which sum to 1.
 */
typedef struct axis_taps {
    int *start, *count;
    float *w;
    int max_taps;
} axis_taps;

static void axis_taps_free(axis_taps *t)
{
    free(t->start);
    free(t->count);
    free(t->w);
}

/*
 * Area averaging: output i covers the source interval [i*s, (i+1)*s) with s = src/dst, and
 * each source pixel j weighs by its overlap with it. Bilinear: output centre i + 0.5 maps to
 * source centre (i + 0.5) * s, i.e. index x = (i + 0.5) * s - 0.5, clamped to the edges.
 */
static int axis_taps_init(axis_taps *t, int src, int dst)
{
    *t = (axis_taps){0};
    const double s = (double)src / dst;
    const int area = src >= 2 * dst;
    t->max_taps = area ? (int)ceil(s) + 1 : 2;
    t->start = malloc(sizeof(int) * (size_t)dst);
    t->count = malloc(sizeof(int) * (size_t)dst);
    t->w = malloc(sizeof(float) * (size_t)dst * (size_t)t->max_taps);
    if (!t->start || !t->count || !t->w) {
        axis_taps_free(t);
        return base_error_set(BASE_ERR_NOMEM, "img_resize: taps for %d -> %d", src, dst);
    }
    for (int i = 0; i < dst; i++) {
        float *w = t->w + (size_t)i * t->max_taps;
        if (area) {
            double lo = i * s, hi = (i + 1) * s;
            int j0 = (int)floor(lo), j1 = (int)ceil(hi);
            if (j1 > src) j1 = src;
            if (j1 - j0 > t->max_taps) j1 = j0 + t->max_taps; /* cannot happen; a guard */
            double sum = 0;
            for (int j = j0; j < j1; j++) {
                double a = j > lo ? j : lo, b = j + 1 < hi ? j + 1 : hi;
                w[j - j0] = (float)(b - a);
                sum += b - a;
            }
            for (int j = j0; j < j1; j++)
                w[j - j0] = (float)(w[j - j0] / sum);
            t->start[i] = j0;
            t->count[i] = j1 - j0;
        } else {
            double x = (i + 0.5) * s - 0.5;
            if (x < 0) x = 0;
            if (x > src - 1) x = src - 1;
            int j0 = (int)x;
            float f = (float)(x - j0);
            t->start[i] = j0;
            if (j0 + 1 < src && f > 0) {
                t->count[i] = 2;
                w[0] = 1.0f - f;
                w[1] = f;
            } else {
                t->count[i] = 1;
                w[0] = 1.0f;
            }
        }
    }
    return 0;
}

/* y += a * x over n elements, in blocks of 8 that the compiler turns into vector code. This
 * vertical pass is most of a resize's time, so it is compiled three times (AVX-512, AVX2,
 * baseline) and picked per call from the CPU's features, as src/nn/fast.c does; every variant
 * does the same multiply and add per element (never fused), so the results are identical. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#define OPT_O3 /* clang's -O2 vectoriser takes this loop as it is */
#else
#define OPT_O3 optimize("O3")
#endif
#define AXPY_LOOP                                                                                  \
    size_t i = 0;                                                                                  \
    for (; i + 8 <= n; i += 8)                                                                     \
        for (int j = 0; j < 8; j++)                                                                \
            y[i + j] += a * (float)x[i + j];                                                       \
    for (; i < n; i++)                                                                             \
        y[i] += a * (float)x[i];
typedef void axpy_u8_fn(float *restrict y, const uint8_t *restrict x, float a, size_t n);
#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx512f"), OPT_O3)) static void
axpy_u8_avx512(float *restrict y, const uint8_t *restrict x, float a, size_t n)
{
    AXPY_LOOP
}
__attribute__((target("avx2"), OPT_O3)) static void
axpy_u8_avx2(float *restrict y, const uint8_t *restrict x, float a, size_t n)
{
    AXPY_LOOP
}
#endif
static void axpy_u8_base(float *restrict y, const uint8_t *restrict x, float a, size_t n)
{
    AXPY_LOOP
}

static axpy_u8_fn *axpy_u8_pick(void)
{
#if defined(__x86_64__) || defined(__i386__)
    if (__builtin_cpu_supports("avx512f")) return axpy_u8_avx512;
    if (__builtin_cpu_supports("avx2")) return axpy_u8_avx2;
#endif
    return axpy_u8_base;
}

static inline uint8_t round_u8(float v)
{
    if (!(v > 0.0f)) return 0; /* also NaN */
    if (v >= 255.0f) return 255;
    return (uint8_t)(v + 0.5f);
}

int img_resize(const img_image *src, int dst_w, int dst_h, img_image *out)
{
    if (!src || !src->data || !out) return base_error_set(BASE_ERR_INVALID, "img_resize: no image");
    if (dst_w <= 0 || dst_h <= 0)
        return base_error_set(BASE_ERR_INVALID, "img_resize: target size %dx%d", dst_w, dst_h);
    *out = (img_image){0};
    const int c = src->channels, sw = src->width, sh = src->height;
    axis_taps tx, ty;
    float *row = NULL;
    int rc = axis_taps_init(&tx, sw, dst_w);
    if (rc) return rc;
    rc = axis_taps_init(&ty, sh, dst_h);
    if (rc) {
        axis_taps_free(&tx);
        return rc;
    }
    /* row: [sw, c] f32, one output row after the vertical pass. Vertical first: its inner
     * loop runs over whole contiguous rows (vectorised), and when shrinking it leaves the
     * horizontal taps only dst_h rows to do. */
    const size_t src_row = (size_t)sw * c;
    row = malloc(sizeof(float) * src_row);
    if (!row) {
        rc = base_error_set(BASE_ERR_NOMEM, "img_resize: %dx%d -> %dx%d", sw, sh, dst_w, dst_h);
        goto fail;
    }
    rc = img_alloc(out, dst_w, dst_h, c);
    if (rc) goto fail;
    axpy_u8_fn *const axpy_u8 = axpy_u8_pick();

    for (int y = 0; y < dst_h; y++) {
        const float *wy = ty.w + (size_t)y * ty.max_taps;
        const uint8_t *s0 = src->data + (size_t)ty.start[y] * src_row;
        memset(row, 0, sizeof(float) * src_row);
        for (int k = 0; k < ty.count[y]; k++)
            axpy_u8(row, s0 + (size_t)k * src_row, wy[k], src_row);
        uint8_t *d = out->data + (size_t)y * dst_w * c;
        for (int x = 0; x < dst_w; x++, d += c) {
            const float *w = tx.w + (size_t)x * tx.max_taps;
            const float *p = row + (size_t)tx.start[x] * c;
            const int n = tx.count[x];
            if (c == 3) { /* the common case, unrolled over channels */
                float v0 = 0, v1 = 0, v2 = 0;
                for (int k = 0; k < n; k++) {
                    v0 += w[k] * p[3 * k];
                    v1 += w[k] * p[3 * k + 1];
                    v2 += w[k] * p[3 * k + 2];
                }
                d[0] = round_u8(v0), d[1] = round_u8(v1), d[2] = round_u8(v2);
                continue;
            }
            for (int ch = 0; ch < c; ch++) {
                float v = 0;
                for (int k = 0; k < n; k++)
                    v += w[k] * p[k * c + ch];
                d[ch] = round_u8(v);
            }
        }
    }
    rc = 0;
fail:
    if (rc) img_free(out);
    free(row);
    axis_taps_free(&tx);
    axis_taps_free(&ty);
    return rc;
}
