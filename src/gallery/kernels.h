/*
 * Dot-product kernels of the gallery index (private to src/gallery).
 *
 * Each kernel computes out[i] = dot(q, x + i * stride) for i < n: one query against n
 * vectors laid out `stride` elements apart, `dim` elements each; with `prefetch` set the SIMD
 * kernels also prefetch the rows that follow (for the first pass over rows from memory).
 * The scalar kernels are the oracle; the AVX2 and AVX-512 twins are compiled with
 * __attribute__((target)) (the library itself is built without -march) and chosen at run
 * time from what the CPU supports.
 *
 *   dot_f32: q f32, x f32, sum in f32           (SIMD: different summation order)
 *   dot_f16: q f32, x IEEE half, sum in f32     (SIMD: different summation order)
 *   dot_i8:  q int8, x int8, sum in int32       (exact: SIMD equals scalar bit for bit)
 *
 * The int8 kernels expect codes in [-127, 127] (never -128), as gal_quantize_i8 makes them;
 * with dim <= GAL_DIM_MAX no int32 sum can overflow.
 */
#ifndef VULTUS_GALLERY_KERNELS_H
#define VULTUS_GALLERY_KERNELS_H

#include <stddef.h>
#include <stdint.h>

typedef void (*gal_dot_f32_fn)(const float *q, const float *x, size_t dim, size_t stride, size_t n,
                               float *out, int prefetch);
typedef void (*gal_dot_f16_fn)(const float *q, const uint16_t *x, size_t dim, size_t stride,
                               size_t n, float *out, int prefetch);
typedef void (*gal_dot_i8_fn)(const int8_t *q, const int8_t *x, size_t dim, size_t stride, size_t n,
                              int32_t *out, int prefetch);

/*
 * Scores and selection after a dot kernel: when `dots` is not NULL, first
 * scores[i] = (float)dots[i] * (q_scale * scales[i]) (int8 rows: both scales applied, the
 * same float operations in every variant, so the scores are bit-identical); then the
 * positions i with scores[i] > gate go to `selected` in increasing order. Returns how many.
 */
typedef size_t (*gal_select_fn)(const int32_t *dots, const float *scales, float q_scale,
                                float *scores, size_t n, float gate, uint32_t *selected);
/* Row encoders, bit-identical to gal_quantize_i8 and gal_f32_to_f16 for finite input. */
typedef float (*gal_quantize_fn)(const float *x, size_t n, int8_t *codes);
typedef void (*gal_to_f16_fn)(const float *x, size_t n, uint16_t *out);

struct gal_kernels {
    const char *name; /* "scalar", "avx2", "avx512", "avx512vnni" */
    gal_dot_f32_fn dot_f32;
    gal_dot_f16_fn dot_f16;
    gal_dot_i8_fn dot_i8;
    gal_select_fn select;
    gal_quantize_fn quantize_i8;
    gal_to_f16_fn to_f16;
};

/* The best kernels this CPU runs (chosen once, thread-safe). */
const struct gal_kernels *gal_kernels_best(void);
/* The named kernels, or NULL when unknown or when this CPU cannot run them. */
const struct gal_kernels *gal_kernels_find(const char *name);

/* The variants, for tests. The SIMD ones exist whatever the CPU: check gal_kernels_find. */
extern const struct gal_kernels gal_kernels_scalar;
extern const struct gal_kernels gal_kernels_avx2;
extern const struct gal_kernels gal_kernels_avx512;
extern const struct gal_kernels gal_kernels_avx512vnni; /* avx512 with a VNNI int8 kernel */

/* Float to IEEE half, round to nearest even (overflow gives infinity). */
uint16_t gal_f32_to_f16(float f);

/*
 * Symmetric scalar quantisation of one vector: codes[i] = round(x[i] / scale) in
 * [-127, 127] with scale = max|x| / 127 (0 when x is all zero). Returns the scale.
 */
float gal_quantize_i8(const float *x, size_t dim, int8_t *codes);

#endif
