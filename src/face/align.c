/*
 * Alignment: each model's crop is a similarity warp of the image that puts the 5 landmarks
 * on the model's template (face_crop_matrix), sampled bilinearly straight from the image, so
 * no full-size float copy of the image is ever made.
 */
#include "face/face_internal.h"

#include <math.h>
#include <stdlib.h>

int face_crop_make(const img_image *image, const face_point pts[5], const face_crop_spec *spec,
                   img_image *crop)
{
    float m[6];
    int rc = face_crop_matrix(pts, spec, m);
    if (rc) return rc;
    return img_warp_affine(image, m, spec->size, spec->size, 0, crop);
}

/*
 * The mirrored crop is read from the same warp, column size - 1 - u for u: the warp of the
 * mirrored matrix samples the same source points (up to the rounding of its coordinates), so
 * one warp serves both copies of a face. Warping was a quarter of the liveness stage's time
 * (two warps of 128x128 and two of 32x32 per face at ~25 ns a pixel, measured with perf).
 */
/* -O2's very cheap vectoriser cost model refuses loops whose trip count is not a known
 * multiple of the vector width; these four ask for the full one. Same operations in the same
 * order as the scalar code (no contraction in ISO C mode, no -ffast-math): bit-identical. */
#if defined(__clang__)
#define FILL_O3 /* clang's -O2 vectoriser takes these loops as they are */
#else
#define FILL_O3 __attribute__((optimize("O3")))
#endif

/* ITU-R BT.601 luma, as the models' training code converted to grey */
#define LUMA(p) (0.2989f * (p)[0] + 0.5870f * (p)[1] + 0.1140f * (p)[2])

FILL_O3 static void fill_rgb(const uint8_t *restrict src, size_t n, float s, const float o[3],
                             float *restrict dst)
{
    /* n values, interleaved RGB: in blocks of 12 (4 pixels, a whole number of vectors), the
     * offsets as a repeating pattern, so the loop has no per-channel structure */
    const float pat[12] = {o[0], o[1], o[2], o[0], o[1], o[2], o[0], o[1], o[2], o[0], o[1], o[2]};
    size_t i = 0;
    for (; i + 12 <= n; i += 12)
        for (int k = 0; k < 12; k++)
            dst[i + k] = (float)src[i + k] * s + pat[k];
    for (; i < n; i++)
        dst[i] = (float)src[i] * s + o[i % 3];
}

FILL_O3 static void fill_rgb_flip(const uint8_t *restrict row, int size, float s, const float o[3],
                                  float *restrict out)
{
    const float o0 = o[0], o1 = o[1], o2 = o[2];
    const float pat[12] = {o0, o1, o2, o0, o1, o2, o0, o1, o2, o0, o1, o2};
    int u = 0;
    /* 4 output pixels from 4 source pixels read forwards (floats are cheap to reorder) */
    for (; u + 4 <= size; u += 4) {
        const uint8_t *p = row + 3 * (size - 4 - u);
        float t[12], r[12];
        for (int k = 0; k < 12; k++)
            t[k] = (float)p[k];
        for (int j = 0; j < 4; j++)
            for (int c = 0; c < 3; c++)
                r[3 * j + c] = t[3 * (3 - j) + c];
        for (int k = 0; k < 12; k++)
            out[3 * u + k] = r[k] * s + pat[k];
    }
    for (; u < size; u++) {
        const uint8_t *p = row + 3 * (size - 1 - u);
        out[3 * u] = (float)p[0] * s + o0;
        out[3 * u + 1] = (float)p[1] * s + o1;
        out[3 * u + 2] = (float)p[2] * s + o2;
    }
}

/* n pixels to grey. The bytes become floats first, 4 pixels at a time: x86-64's baseline
 * (SSE2) has no byte shuffle to take every third byte, but it can deinterleave floats. */
FILL_O3 static void fill_grey(const uint8_t *restrict src, size_t n, float s, float o,
                              float *restrict dst)
{
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float t[12];
        for (int k = 0; k < 12; k++)
            t[k] = (float)src[3 * i + k];
        for (int j = 0; j < 4; j++)
            dst[i + j] = LUMA(t + 3 * j) * s + o;
    }
    for (; i < n; i++)
        dst[i] = LUMA(src + 3 * i) * s + o;
}

FILL_O3 static void fill_grey_flip(const uint8_t *restrict row, int size, float s, float o,
                                   float *restrict out)
{
    /* out[size - 1 - u] from pixel u: the reads stay in order */
    int u = 0;
    for (; u + 4 <= size; u += 4) {
        float t[12];
        for (int k = 0; k < 12; k++)
            t[k] = (float)row[3 * u + k];
        for (int j = 0; j < 4; j++)
            out[size - 1 - u - j] = LUMA(t + 3 * j) * s + o;
    }
    for (; u < size; u++)
        out[size - 1 - u] = LUMA(row + 3 * u) * s + o;
}

void face_crop_fill(const img_image *crop, const face_crop_spec *spec, int flip, float *dst)
{
    const int size = spec->size;
    const float s = spec->scale;
    const float o[3] = {spec->offset[0], spec->offset[1], spec->offset[2]};
    const size_t pixels = (size_t)size * size;
    if (!flip) {
        if (spec->grey)
            fill_grey(crop->data, pixels, s, o[0], dst);
        else
            fill_rgb(crop->data, 3 * pixels, s, o, dst);
        return;
    }
    const int per_row = spec->grey ? size : 3 * size;
    for (int v = 0; v < size; v++) {
        const uint8_t *row = crop->data + (size_t)v * size * 3;
        float *out = dst + (size_t)v * per_row;
        if (spec->grey)
            fill_grey_flip(row, size, s, o[0], out);
        else
            fill_rgb_flip(row, size, s, o, out);
    }
}

int face_crop_to_input(const img_image *image, const face_point pts[5], const face_crop_spec *spec,
                       float *dst, img_image *keep)
{
    return face_crop_to_input_flip(image, pts, spec, 0, dst, keep);
}

int face_crop_to_input_flip(const img_image *image, const face_point pts[5],
                            const face_crop_spec *spec, int flip, float *dst, img_image *keep)
{
    float m[6];
    int rc = face_crop_matrix(pts, spec, m);
    if (rc) return rc;
    if (flip) {
        /* mirror: output column u reads what column size - 1 - u would have */
        float size = (float)spec->size;
        m[2] += m[0] * size, m[0] = -m[0];
        m[5] += m[3] * size, m[3] = -m[3];
    }
    img_image crop = {0};
    rc = img_warp_affine(image, m, spec->size, spec->size, 0, &crop);
    if (rc) return rc;
    if (dst) {
        if (spec->grey) {
            /* ITU-R BT.601 luma, as the models' training code converted to grey */
            size_t n = (size_t)spec->size * spec->size;
            for (size_t i = 0; i < n; i++) {
                const uint8_t *p = crop.data + 3 * i;
                float g = 0.2989f * p[0] + 0.5870f * p[1] + 0.1140f * p[2];
                dst[i] = g * spec->scale + spec->offset[0];
            }
        } else {
            size_t n = (size_t)spec->size * spec->size;
            const float s = spec->scale, *o = spec->offset;
            for (size_t i = 0; i < n; i++) {
                const uint8_t *p = crop.data + 3 * i;
                dst[3 * i] = (float)p[0] * s + o[0];
                dst[3 * i + 1] = (float)p[1] * s + o[1];
                dst[3 * i + 2] = (float)p[2] * s + o[2];
            }
        }
    }
    if (keep) {
        *keep = crop;
    } else {
        img_free(&crop);
    }
    return 0;
}

/*
 * Sharpness: the variance of the 4-neighbour Laplacian of the grey image (Pech-Pacheco et
 * al.'s focus measure). On a 112x112 aligned face, below ~20 is visibly blurred and sharp
 * photos give 100 to 1000+.
 */
float face_sharpness(const img_image *img)
{
    int w = img->width, h = img->height, c = img->channels;
    if (w < 3 || h < 3) return 0;
    float *g = malloc((size_t)w * h * sizeof *g);
    if (!g) return 0;
    for (int i = 0; i < w * h; i++) {
        const uint8_t *p = img->data + (size_t)i * c;
        g[i] = c >= 3 ? 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2] : p[0];
    }
    double sum = 0, sum2 = 0;
    long n = 0;
    for (int y = 1; y < h - 1; y++) {
        for (int x = 1; x < w - 1; x++) {
            const float *q = g + (size_t)y * w + x;
            double l = (double)q[-1] + q[1] + q[-w] + q[w] - 4.0 * q[0];
            sum += l, sum2 += l * l, n++;
        }
    }
    free(g);
    double mean = sum / (double)n;
    return (float)(sum2 / (double)n - mean * mean);
}
