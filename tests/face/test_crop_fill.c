/*
 * face_crop_fill, the loop that turns a model's warped crop into its float input: the split
 * per case (RGB or grey, mirrored or not) that lets the compiler vectorise it gives exactly
 * the bits of the plain per-pixel loop it replaced (kept here as the reference), for every
 * model's crop spec and for sizes that leave a remainder after the vector blocks. Prints the
 * time per crop of both, for information only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "base/base.h"
#include "face/face_internal.h"
#include "img/img.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The loop face_crop_fill had before the split: one pass, the cases decided per pixel. */
static void reference_fill(const img_image *crop, const face_crop_spec *spec, int flip, float *dst)
{
    const int size = spec->size;
    const float s = spec->scale, *o = spec->offset;
    for (int v = 0; v < size; v++) {
        const uint8_t *row = crop->data + (size_t)v * size * 3;
        float *out = dst + (size_t)v * size * (spec->grey ? 1 : 3);
        for (int u = 0; u < size; u++) {
            const uint8_t *p = row + 3 * (flip ? size - 1 - u : u);
            if (spec->grey) {
                float g = 0.2989f * p[0] + 0.5870f * p[1] + 0.1140f * p[2];
                out[u] = g * s + o[0];
            } else {
                out[3 * u] = (float)p[0] * s + o[0];
                out[3 * u + 1] = (float)p[1] * s + o[1];
                out[3 * u + 2] = (float)p[2] * s + o[2];
            }
        }
    }
}

static uint32_t rng = 12345;
static uint8_t next_byte(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (uint8_t)(rng >> 24);
}

/* Fills a random size x size crop both ways and compares the bits; 0 when equal. */
static int compare(const face_crop_spec *spec, int flip)
{
    img_image crop;
    assert_int_equal(img_alloc(&crop, spec->size, spec->size, 3), 0);
    size_t bytes = (size_t)spec->size * spec->size * 3;
    for (size_t i = 0; i < bytes; i++)
        crop.data[i] = next_byte();
    /* the extremes too */
    crop.data[0] = 0;
    crop.data[bytes - 1] = 255;
    size_t n = (size_t)spec->size * spec->size * (spec->grey ? 1 : 3);
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    assert_non_null(a);
    assert_non_null(b);
    memset(a, 0xAB, n * sizeof *a);
    memset(b, 0xCD, n * sizeof *b);
    reference_fill(&crop, spec, flip, a);
    face_crop_fill(&crop, spec, flip, b);
    int diff = memcmp(a, b, n * sizeof *a);
    if (diff)
        for (size_t i = 0; i < n; i++)
            if (memcmp(&a[i], &b[i], sizeof *a)) {
                print_error("size %d grey %d flip %d: value %zu is %.9g, was %.9g\n", spec->size,
                            spec->grey, flip, i, (double)b[i], (double)a[i]);
                break;
            }
    free(a);
    free(b);
    img_free(&crop);
    return diff;
}

static void test_models_specs(void **state)
{
    (void)state;
    int specs = 0;
    for (int id = 0; id < FM_COUNT; id++) {
        const face_crop_spec *spec = face_crop_spec_for((face_model_id)id);
        if (!spec) continue;
        specs++;
        for (int flip = 0; flip < 2; flip++)
            assert_int_equal(compare(spec, flip), 0);
    }
    assert_true(specs >= 4); /* embedders, age/gender, emotion, antispoof, liveness */
    for (int flip = 0; flip < 2; flip++)
        assert_int_equal(compare(&face_arcface_crop, flip), 0);
}

/* Every size from 1 to 40 and a few larger, grey and RGB, with scales and offsets that round
 * differently per channel. */
static void test_sizes_and_tails(void **state)
{
    (void)state;
    const int extra[] = {63, 64, 65, 111, 112, 113, 127, 128, 129, 160};
    for (int k = 0; k < 40 + (int)(sizeof extra / sizeof extra[0]); k++) {
        int size = k < 40 ? k + 1 : extra[k - 40];
        for (int grey = 0; grey < 2; grey++) {
            face_crop_spec spec = {.size = size,
                                   .zoom = 1,
                                   .scale = grey ? 0.00392157f : 1.0f / 127.5f,
                                   .offset = {-0.485f / 0.229f, -1.0f, 0.3333333f},
                                   .grey = grey};
            for (int flip = 0; flip < 2; flip++)
                assert_int_equal(compare(&spec, flip), 0);
        }
    }
}

/* Time per 128x128 crop, the reference loop against face_crop_fill (information only: the
 * machine is shared, so no assertion). */
static void test_timing(void **state)
{
    (void)state;
    const int reps = 2000;
    for (int grey = 0; grey < 2; grey++) {
        face_crop_spec spec = {.size = 128, .zoom = 1, .scale = 1.0f / 255, .grey = grey};
        img_image crop;
        assert_int_equal(img_alloc(&crop, 128, 128, 3), 0);
        for (size_t i = 0; i < (size_t)128 * 128 * 3; i++)
            crop.data[i] = next_byte();
        float *out = malloc((size_t)128 * 128 * 3 * sizeof *out);
        assert_non_null(out);
        for (int flip = 0; flip < 2; flip++) {
            double best[2] = {1e30, 1e30};
            for (int round = 0; round < 5; round++)
                for (int which = 0; which < 2; which++) {
                    uint64_t t0 = base_now_ns();
                    for (int r = 0; r < reps; r++) {
                        if (which)
                            face_crop_fill(&crop, &spec, flip, out);
                        else
                            reference_fill(&crop, &spec, flip, out);
                        __asm__ volatile("" : : "r"(out) : "memory");
                    }
                    double us = (double)(base_now_ns() - t0) / 1e3 / reps;
                    if (us < best[which]) best[which] = us;
                }
            printf("  128x128 %s%s: per-pixel loop %.2f us, split loops %.2f us (%.2fx)\n",
                   grey ? "grey" : "RGB", flip ? " mirrored" : "", best[0], best[1],
                   best[0] / best[1]);
        }
        free(out);
        img_free(&crop);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_models_specs),
        cmocka_unit_test(test_sizes_and_tails),
        cmocka_unit_test(test_timing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
