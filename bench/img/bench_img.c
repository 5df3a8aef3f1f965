/*
 * Micro benchmark of img's per-request pixel stages: the affine warp (each variant this CPU
 * has, against the scalar one in the same run), resize and the float conversion. Prints JSON
 * lines; ratios taken in one run are what to compare, as the machines are shared and noisy.
 *
 *   bench_img [--runs N] [--image PATH]
 *
 * The warps are the face pipeline's crops: 112, 128, 150 and 192 pixels square from a
 * 1920x1398 photo, each a similarity (scale 1.7, 12 degrees) around a face in the image.
 * "reference" is the warp as it was before the SIMD variants (floorf per pixel), kept here to
 * measure the change.
 */
#include "base/base.h"
#include "img/img.h"
#include "img/img_private.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint8_t ref_round(float v)
{
    if (!(v > 0.0f)) return 0;
    if (v >= 255.0f) return 255;
    return (uint8_t)(v + 0.5f);
}

/* The warp's inner loop before this change (interior pixels only; the crops are inside). */
static void reference_warp(const img_image *src, const float m[6], int ow, int oh, uint8_t *d)
{
    const int c = src->channels, W = src->width, H = src->height;
    for (int v = 0; v < oh; v++) {
        const float cv = v + 0.5f;
        for (int u = 0; u < ow; u++, d += c) {
            const float cu = u + 0.5f;
            const float sx = m[0] * cu + m[1] * cv + m[2] - 0.5f;
            const float sy = m[3] * cu + m[4] * cv + m[5] - 0.5f;
            if (!(sx > -1.0f && sx < (float)W && sy > -1.0f && sy < (float)H)) {
                memset(d, 0, (size_t)c);
                continue;
            }
            const int x0 = (int)floorf(sx), y0 = (int)floorf(sy);
            const float fx = sx - x0, fy = sy - y0;
            if (x0 >= 0 && x0 + 1 < W && y0 >= 0 && y0 + 1 < H) {
                const uint8_t *p = src->data + ((size_t)y0 * W + x0) * c;
                for (int ch = 0; ch < c; ch++) {
                    float top = p[ch] + fx * (p[c + ch] - p[ch]);
                    float bot = p[W * c + ch] + fx * (p[W * c + c + ch] - p[W * c + ch]);
                    d[ch] = ref_round(top + fy * (bot - top));
                }
            } else {
                memset(d, 0, (size_t)c);
            }
        }
    }
}

/* Best of `runs` timings of `reps` warps, in ns per output pixel. */
static double time_warp(const img_image *src, const float m[6], int size, int isa, int runs,
                        uint8_t *scratch)
{
    const int reps = 20;
    double best = 1e30;
    for (int r = 0; r < runs; r++) {
        double t0 = now_s();
        for (int k = 0; k < reps; k++) {
            if (isa < 0) {
                reference_warp(src, m, size, size, scratch);
                continue;
            }
            img_image out;
            if (img_warp_affine_isa(src, m, size, size, 0, &out, (img_isa)isa)) {
                fprintf(stderr, "bench_img: %s\n", base_error_message());
                exit(1);
            }
            img_free(&out);
        }
        double t = (now_s() - t0) / reps;
        if (t < best) best = t;
    }
    return best * 1e9 / ((double)size * size);
}

/* Decoding `path` in full and at the DCT scales the pipeline asks for (min_side 540: the
 * detector's; then what the crops need). */
static int bench_decode(const char *path, int runs)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench_img: cannot open %s\n", path);
        return 1;
    }
    uint8_t *bytes = malloc(IMG_DEFAULT_MAX_BYTES);
    size_t len = bytes ? fread(bytes, 1, IMG_DEFAULT_MAX_BYTES, f) : 0;
    fclose(f);
    const int sides[] = {0, 540, 1080};
    for (size_t i = 0; bytes && i < sizeof sides / sizeof sides[0]; i++) {
        img_decode_options o = {.min_side = sides[i]};
        img_decode_info info;
        img_image out;
        double best = 1e30;
        for (int r = 0; r < (runs + 2) / 3; r++) {
            double t0 = now_s();
            if (img_decode(bytes, len, &o, &out, &info)) {
                fprintf(stderr, "bench_img: %s: %s\n", path, base_error_message());
                free(bytes);
                return 1;
            }
            double t = now_s() - t0;
            if (t < best) best = t;
            if (r + 1 < (runs + 2) / 3) img_free(&out);
        }
        printf("{\"bench\":\"img\",\"op\":\"decode\",\"min_side\":%d,\"scale_denom\":%d,"
               "\"out\":\"%dx%d\",\"ms\":%.3f}\n",
               sides[i], info.scale_denom, out.width, out.height, best * 1e3);
        img_free(&out);
    }
    free(bytes);
    return bytes ? 0 : 1;
}

int main(int argc, char **argv)
{
    int runs = 30;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--image") == 0 && i + 1 < argc)
            path = argv[++i];
        else {
            fprintf(stderr, "usage: bench_img [--runs N] [--image PATH]\n");
            return 2;
        }
    }
    if (runs < 1) runs = 1;
    img_image src;
    if (path && bench_decode(path, runs)) return 1;
    if (path) {
        if (img_load_file(path, NULL, &src, NULL)) {
            fprintf(stderr, "bench_img: %s: %s\n", path, base_error_message());
            return 1;
        }
    } else {
        if (img_alloc(&src, 1920, 1398, 3)) return 1;
        uint32_t s = 1;
        for (size_t i = 0; i < (size_t)1920 * 1398 * 3; i++) {
            s = s * 1664525u + 1013904223u;
            src.data[i] = (uint8_t)(s >> 24);
        }
    }

    /* ---- warp ---- */
    const int sizes[] = {112, 128, 150, 192};
    uint8_t *scratch = malloc((size_t)192 * 192 * 3);
    if (!scratch) return 1;
    const float scale = 1.7f, angle = 0.21f;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const int size = sizes[i];
        /* Output centre -> the image centre, rotated and scaled. */
        float m[6] = {scale * cosf(angle), -scale * sinf(angle), 0,
                      scale * sinf(angle), scale * cosf(angle),  0};
        m[2] = src.width * 0.5f - (m[0] + m[1]) * size * 0.5f;
        m[5] = src.height * 0.5f - (m[3] + m[4]) * size * 0.5f;
        const double ref = time_warp(&src, m, size, -1, runs, scratch);
        const double scalar = time_warp(&src, m, size, IMG_ISA_SCALAR, runs, scratch);
        printf("{\"bench\":\"img\",\"op\":\"warp\",\"size\":%d,\"variant\":\"reference\","
               "\"ns_per_pixel\":%.3f}\n",
               size, ref);
        const img_isa isas[] = {IMG_ISA_SCALAR, IMG_ISA_AVX2, IMG_ISA_AVX512, IMG_ISA_AVX512VBMI,
                                IMG_ISA_AUTO};
        for (size_t k = 0; k < sizeof isas / sizeof isas[0]; k++) {
            if (!img_isa_supported(isas[k])) continue;
            double t = isas[k] == IMG_ISA_SCALAR ? scalar
                                                 : time_warp(&src, m, size, isas[k], runs, scratch);
            printf("{\"bench\":\"img\",\"op\":\"warp\",\"size\":%d,\"variant\":\"%s\","
                   "\"ns_per_pixel\":%.3f,\"speedup_vs_scalar\":%.2f,"
                   "\"speedup_vs_reference\":%.2f}\n",
                   size, img_isa_name(isas[k]), t, scalar / t, ref / t);
        }
    }
    free(scratch);

    /* ---- resize (the detector's levels) and float conversion ---- */
    const int targets[][2] = {{640, 466}, {1280, 932}, {256, 186}};
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        double best = 1e30;
        for (int r = 0; r < (runs + 4) / 5; r++) {
            img_image out;
            double t0 = now_s();
            if (img_resize(&src, targets[i][0], targets[i][1], &out)) return 1;
            double t = now_s() - t0;
            img_free(&out);
            if (t < best) best = t;
        }
        printf("{\"bench\":\"img\",\"op\":\"resize\",\"from\":\"%dx%d\",\"to\":\"%dx%d\","
               "\"ms\":%.3f,\"ns_per_output_pixel\":%.3f}\n",
               src.width, src.height, targets[i][0], targets[i][1], best * 1e3,
               best * 1e9 / ((double)targets[i][0] * targets[i][1]));
    }
    img_image crop;
    if (img_crop(&src, 0, 0, 192, 192, &crop)) return 1;
    float *f = malloc(sizeof(float) * 192 * 192 * 3);
    if (!f) return 1;
    double best = 1e30;
    for (int r = 0; r < runs; r++) {
        double t0 = now_s();
        for (int k = 0; k < 20; k++)
            img_to_float(&crop, 1.0f / 255, 0, f);
        double t = (now_s() - t0) / 20;
        if (t < best) best = t;
    }
    printf("{\"bench\":\"img\",\"op\":\"to_float\",\"size\":192,\"ns_per_pixel\":%.3f,"
           "\"checksum\":%.1f}\n",
           best * 1e9 / (192.0 * 192), (double)f[1000]);
    free(f);
    img_free(&crop);
    img_free(&src);
    return 0;
}
