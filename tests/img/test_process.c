/*
 * Pixel operations: orientation transforms, resize (area and bilinear), crop, affine warp,
 * conversion to float, the encoders, and drawing. Expected values are worked out by hand or
 * by direct formulas in the test, never from the code's earlier output.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "base/base.h"
#include "img/img.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Pixel (x, y) channel k of a pattern in which every value differs: a function of x, y, k. */
static uint8_t pattern_value(int x, int y, int k)
{
    return (uint8_t)(x * 7 + y * 31 + k * 85 + (x * y) % 13);
}

static void make_pattern(img_image *img, int w, int h, int c)
{
    assert_int_equal(img_alloc(img, w, h, c), 0);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++)
                img->data[((size_t)y * w + x) * c + k] = pattern_value(x, y, k);
}

static uint8_t px(const img_image *img, int x, int y, int k)
{
    return img->data[((size_t)y * img->width + x) * img->channels + k];
}

static void assert_same_image(const img_image *a, const img_image *b)
{
    assert_int_equal(a->width, b->width);
    assert_int_equal(a->height, b->height);
    assert_int_equal(a->channels, b->channels);
    for (int y = 0; y < a->height; y++)
        for (int x = 0; x < a->width; x++)
            for (int k = 0; k < a->channels; k++)
                if (px(a, x, y, k) != px(b, x, y, k))
                    fail_msg("(%d, %d, %d): %d != %d", x, y, k, px(a, x, y, k), px(b, x, y, k));
}

/* ---- orientation ---- */

static void test_orientation(void **state)
{
    (void)state;
    /* Corners of a 5x3 image, by EXIF's definitions: 6 turns the image 90 degrees clockwise,
     * so the stored bottom-left lands top-left; 8 turns it counter-clockwise, so the stored
     * top-right lands top-left; 5 mirrors about the main diagonal; 7 about the other one. */
    for (int c = 1; c <= 3; c += 2) {
        img_image s, d;
        make_pattern(&s, 5, 3, c);
        const int W = 5, H = 3;
        for (int o = 1; o <= 8; o++) {
            assert_int_equal(img_apply_orientation(&s, o, &d), 0);
            int swap = o >= 5;
            assert_int_equal(d.width, swap ? H : W);
            assert_int_equal(d.height, swap ? W : H);
            for (int y = 0; y < d.height; y++)
                for (int x = 0; x < d.width; x++) {
                    int sx = 0, sy = 0;
                    switch (o) {
                    case 1: sx = x, sy = y; break;
                    case 2: sx = W - 1 - x, sy = y; break;
                    case 3: sx = W - 1 - x, sy = H - 1 - y; break;
                    case 4: sx = x, sy = H - 1 - y; break;
                    case 5: sx = y, sy = x; break;
                    case 6: sx = y, sy = H - 1 - x; break;
                    case 7: sx = W - 1 - y, sy = H - 1 - x; break;
                    case 8: sx = W - 1 - y, sy = x; break;
                    }
                    for (int k = 0; k < c; k++)
                        assert_int_equal(px(&d, x, y, k), px(&s, sx, sy, k));
                }
            img_free(&d);
        }
        /* The corner checks, spelled out for the rotations. */
        assert_int_equal(img_apply_orientation(&s, 6, &d), 0);
        assert_int_equal(px(&d, 0, 0, 0), px(&s, 0, H - 1, 0)); /* bottom-left -> top-left */
        assert_int_equal(px(&d, H - 1, 0, 0), px(&s, 0, 0, 0)); /* top-left -> top-right */
        img_free(&d);
        assert_int_equal(img_apply_orientation(&s, 8, &d), 0);
        assert_int_equal(px(&d, 0, 0, 0), px(&s, W - 1, 0, 0)); /* top-right -> top-left */
        assert_int_equal(px(&d, 0, W - 1, 0), px(&s, 0, 0, 0)); /* top-left -> bottom-left */
        img_free(&d);
        /* 6 then 8 is the identity; 3 twice too. */
        img_image t;
        assert_int_equal(img_apply_orientation(&s, 6, &d), 0);
        assert_int_equal(img_apply_orientation(&d, 8, &t), 0);
        assert_same_image(&s, &t);
        img_free(&t);
        img_free(&d);
        assert_int_equal(img_apply_orientation(&s, 0, &d), BASE_ERR_INVALID);
        assert_int_equal(img_apply_orientation(&s, 9, &d), BASE_ERR_INVALID);
        img_free(&s);
    }
}

/* ---- resize ---- */

static void test_resize_constant(void **state)
{
    (void)state;
    /* A constant image stays exactly constant at every size, up or down, area or bilinear. */
    static const int sizes[][2] = {{1, 1},  {2, 3},   {7, 5},   {16, 16},  {33, 17},
                                   {64, 9}, {100, 1}, {1, 100}, {250, 250}};
    for (int c = 1; c <= 4; c++) {
        img_image s, d;
        assert_int_equal(img_alloc(&s, 97, 61, c), 0);
        for (int i = 0; i < 97 * 61 * c; i++)
            s.data[i] = (uint8_t)(200 + i % c * 17);
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            assert_int_equal(img_resize(&s, sizes[i][0], sizes[i][1], &d), 0);
            assert_int_equal(d.width, sizes[i][0]);
            assert_int_equal(d.height, sizes[i][1]);
            assert_int_equal(d.channels, c);
            for (int p = 0; p < d.width * d.height; p++)
                for (int k = 0; k < c; k++)
                    assert_int_equal(d.data[p * c + k], 200 + k * 17);
            img_free(&d);
        }
        img_free(&s);
    }
    /* Extremes: 255 and 0 survive without overflow or rounding down. */
    img_image s, d;
    assert_int_equal(img_alloc(&s, 9, 9, 3), 0);
    memset(s.data, 255, 9 * 9 * 3);
    assert_int_equal(img_resize(&s, 4, 4, &d), 0);
    for (int i = 0; i < 4 * 4 * 3; i++)
        assert_int_equal(d.data[i], 255);
    img_free(&d);
    assert_int_equal(img_resize(&s, 20, 13, &d), 0);
    for (int i = 0; i < 20 * 13 * 3; i++)
        assert_int_equal(d.data[i], 255);
    img_free(&d);
    img_free(&s);
}

static void test_resize_area(void **state)
{
    (void)state;
    img_image s, d;
    /* 2x: every output pixel is the rounded mean of its 2x2 block. */
    make_pattern(&s, 8, 6, 3);
    assert_int_equal(img_resize(&s, 4, 3, &d), 0);
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 4; x++)
            for (int k = 0; k < 3; k++) {
                int sum = px(&s, 2 * x, 2 * y, k) + px(&s, 2 * x + 1, 2 * y, k) +
                          px(&s, 2 * x, 2 * y + 1, k) + px(&s, 2 * x + 1, 2 * y + 1, k);
                int want = (sum + 2) / 4; /* round half up */
                if (abs(px(&d, x, y, k) - want) > (sum % 4 == 2 ? 1 : 0))
                    fail_msg("(%d, %d, %d): %d, want %d", x, y, k, px(&d, x, y, k), want);
            }
    img_free(&d);
    img_free(&s);
    /* A checkerboard of 2x2 blocks of 0 and 200 averages to 100 at 1/4 (each 4x4 block holds
     * two of each), and keeps its blocks at 1/2. */
    assert_int_equal(img_alloc(&s, 16, 16, 1), 0);
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 16; x++)
            s.data[y * 16 + x] = ((x / 2 + y / 2) & 1) ? 200 : 0;
    assert_int_equal(img_resize(&s, 4, 4, &d), 0);
    for (int i = 0; i < 16; i++)
        assert_int_equal(d.data[i], 100);
    img_free(&d);
    assert_int_equal(img_resize(&s, 8, 8, &d), 0);
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++)
            assert_int_equal(d.data[y * 8 + x], ((x + y) & 1) ? 200 : 0);
    img_free(&d);
    img_free(&s);
    /* 3x: 9 pixels 0..8 per block average to 4; a non-integer 2.5x covers fractional pixels:
     * [0, 2.5) of a 0, 10, 20, 30, 40 row = (0 + 10 + 20 / 2) / 2.5 = 8. */
    assert_int_equal(img_alloc(&s, 6, 3, 1), 0);
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 6; x++)
            s.data[y * 6 + x] = (uint8_t)((y * 3 + x % 3) + (x / 3) * 100);
    assert_int_equal(img_resize(&s, 2, 1, &d), 0);
    assert_int_equal(d.data[0], 4);
    assert_int_equal(d.data[1], 104);
    img_free(&d);
    img_free(&s);
    assert_int_equal(img_alloc(&s, 5, 1, 1), 0);
    for (int x = 0; x < 5; x++)
        s.data[x] = (uint8_t)(10 * x);
    assert_int_equal(img_resize(&s, 2, 1, &d), 0);
    assert_int_equal(d.data[0], 8);  /* (0 + 10 + 10) / 2.5 */
    assert_int_equal(d.data[1], 32); /* (10 + 30 + 40) / 2.5 */
    img_free(&d);
    img_free(&s);
}

static void test_resize_bilinear(void **state)
{
    (void)state;
    img_image s, d;
    /* 2x up of [0, 100]: output centres map to -0.25 (clamped), 0.25, 0.75, 1.25 (clamped). */
    assert_int_equal(img_alloc(&s, 2, 1, 1), 0);
    s.data[0] = 0, s.data[1] = 100;
    assert_int_equal(img_resize(&s, 4, 1, &d), 0);
    assert_int_equal(d.data[0], 0);
    assert_int_equal(d.data[1], 25);
    assert_int_equal(d.data[2], 75);
    assert_int_equal(d.data[3], 100);
    img_free(&d);
    img_free(&s);
    /* Same size: an exact copy. A 1.5x shrink (bilinear): output i samples x = 1.5 i + 0.25. */
    make_pattern(&s, 12, 9, 3);
    assert_int_equal(img_resize(&s, 12, 9, &d), 0);
    assert_same_image(&s, &d);
    img_free(&d);
    img_free(&s);
    assert_int_equal(img_alloc(&s, 6, 1, 1), 0);
    for (int x = 0; x < 6; x++)
        s.data[x] = (uint8_t)(40 * x);
    assert_int_equal(img_resize(&s, 4, 1, &d), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(d.data[i], (int)lround(40 * (1.5 * i + 0.25)));
    img_free(&d);
    img_free(&s);
    /* A linear ramp stays linear when enlarged (away from the clamped edges). */
    assert_int_equal(img_alloc(&s, 10, 10, 1), 0);
    for (int y = 0; y < 10; y++)
        for (int x = 0; x < 10; x++)
            s.data[y * 10 + x] = (uint8_t)(10 * x + 5 * y);
    assert_int_equal(img_resize(&s, 40, 40, &d), 0);
    for (int y = 2; y < 38; y++)
        for (int x = 2; x < 38; x++) {
            double sx = (x + 0.5) / 4 - 0.5, sy = (y + 0.5) / 4 - 0.5;
            assert_true(fabs(d.data[y * 40 + x] - (10 * sx + 5 * sy)) <= 0.51);
        }
    img_free(&d);
    /* Mixed: width shrinks 5x (area), height grows 2x (bilinear). */
    assert_int_equal(img_resize(&s, 2, 20, &d), 0);
    for (int y = 2; y < 18; y++) {
        double sy = (y + 0.5) / 2 - 0.5;
        assert_true(fabs(d.data[y * 2] - (10 * 2 + 5 * sy)) <= 0.51);
        assert_true(fabs(d.data[y * 2 + 1] - (10 * 7 + 5 * sy)) <= 0.51);
    }
    img_free(&d);
    img_free(&s);
    /* Bad sizes. */
    make_pattern(&s, 4, 4, 3);
    assert_int_equal(img_resize(&s, 0, 4, &d), BASE_ERR_INVALID);
    assert_int_equal(img_resize(&s, 4, -1, &d), BASE_ERR_INVALID);
    img_free(&s);
}

/* ---- crop ---- */

static void test_crop(void **state)
{
    (void)state;
    img_image s, d;
    make_pattern(&s, 10, 8, 3);
    assert_int_equal(img_crop(&s, 2, 3, 4, 2, &d), 0);
    assert_int_equal(d.width, 4);
    assert_int_equal(d.height, 2);
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 4; x++)
            for (int k = 0; k < 3; k++)
                assert_int_equal(px(&d, x, y, k), px(&s, x + 2, y + 3, k));
    img_free(&d);
    /* Partly outside: zeros there. */
    assert_int_equal(img_crop(&s, -3, 6, 5, 4, &d), 0);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 5; x++)
            for (int k = 0; k < 3; k++) {
                int sx = x - 3, sy = y + 6;
                int want = sx >= 0 && sy < 8 ? px(&s, sx, sy, k) : 0;
                assert_int_equal(px(&d, x, y, k), want);
            }
    img_free(&d);
    /* Entirely outside, and near INT_MAX: all zero, no overflow. */
    assert_int_equal(img_crop(&s, 100, 100, 3, 3, &d), 0);
    for (int i = 0; i < 27; i++)
        assert_int_equal(d.data[i], 0);
    img_free(&d);
    assert_int_equal(img_crop(&s, 2147483600, -2147483600, 3, 3, &d), 0);
    for (int i = 0; i < 27; i++)
        assert_int_equal(d.data[i], 0);
    img_free(&d);
    assert_int_equal(img_crop(&s, 0, 0, 0, 3, &d), BASE_ERR_INVALID);
    img_free(&s);
}

/* ---- warp ---- */

static void test_warp(void **state)
{
    (void)state;
    img_image s, d;
    make_pattern(&s, 11, 7, 3);
    /* Identity reproduces the image exactly. */
    const float id[6] = {1, 0, 0, 0, 1, 0};
    assert_int_equal(img_warp_affine(&s, id, 11, 7, 0, &d), 0);
    assert_same_image(&s, &d);
    img_free(&d);
    /* Translation: source x = u + 3, y = v - 2; outside is the border value. */
    const float tr[6] = {1, 0, 3, 0, 1, -2};
    assert_int_equal(img_warp_affine(&s, tr, 11, 7, 9, &d), 0);
    for (int v = 0; v < 7; v++)
        for (int u = 0; u < 11; u++)
            for (int k = 0; k < 3; k++) {
                int sx = u + 3, sy = v - 2;
                int want = sx < 11 && sy >= 0 ? px(&s, sx, sy, k) : 9;
                assert_int_equal(px(&d, u, v, k), want);
            }
    img_free(&d);
    /* A half-pixel shift averages neighbours. */
    const float half[6] = {1, 0, 0.5f, 0, 1, 0};
    assert_int_equal(img_warp_affine(&s, half, 10, 7, 0, &d), 0);
    for (int v = 0; v < 7; v++)
        for (int u = 0; u < 10; u++)
            for (int k = 0; k < 3; k++) {
                double want = (px(&s, u, v, k) + px(&s, u + 1, v, k)) / 2.0;
                assert_true(fabs(px(&d, u, v, k) - want) <= 0.5);
            }
    img_free(&d);
    /* 90 degrees clockwise (out is H x W): out(u, v) = src(v, H-1-u), i.e. source centre
     * x + 0.5 = v + 0.5, y + 0.5 = H - (u + 0.5). The same as EXIF orientation 6. */
    const float rot[6] = {0, 1, 0, -1, 0, 7};
    assert_int_equal(img_warp_affine(&s, rot, 7, 11, 0, &d), 0);
    img_image r;
    assert_int_equal(img_apply_orientation(&s, 6, &r), 0);
    assert_same_image(&r, &d);
    img_free(&r);
    img_free(&d);
    /* 2x downscale about centres: out(u, v) samples src at 2u + 0.5, the mean of 4 pixels. */
    const float down[6] = {2, 0, 0, 0, 2, 0};
    assert_int_equal(img_warp_affine(&s, down, 5, 3, 0, &d), 0);
    for (int v = 0; v < 3; v++)
        for (int u = 0; u < 5; u++) {
            double want = (px(&s, 2 * u, 2 * v, 1) + px(&s, 2 * u + 1, 2 * v, 1) +
                           px(&s, 2 * u, 2 * v + 1, 1) + px(&s, 2 * u + 1, 2 * v + 1, 1)) /
                          4.0;
            assert_true(fabs(px(&d, u, v, 1) - want) <= 0.5);
        }
    img_free(&d);
    /* Far outside, NaN and infinite matrices: all border, no crash. */
    const float far[6] = {1, 0, 1e9f, 0, 1, 0};
    const float nan_m[6] = {NAN, 0, 0, 0, 1, 0};
    const float inf_m[6] = {INFINITY, 0, 0, 0, -INFINITY, 0};
    const float *bad[3] = {far, nan_m, inf_m};
    for (int b = 0; b < 3; b++) {
        assert_int_equal(img_warp_affine(&s, bad[b], 6, 6, 77, &d), 0);
        for (int i = 0; i < 6 * 6 * 3; i++)
            assert_int_equal(d.data[i], 77);
        img_free(&d);
    }
    /* Edge blending: sampling half a pixel left of the image mixes with the border. */
    const float left[6] = {1, 0, -0.5f, 0, 1, 0};
    assert_int_equal(img_warp_affine(&s, left, 1, 1, 100, &d), 0);
    assert_true(abs(d.data[0] - (100 + px(&s, 0, 0, 0) + 1) / 2) <= 1);
    img_free(&d);
    assert_int_equal(img_warp_affine(&s, id, 0, 5, 0, &d), BASE_ERR_INVALID);
    img_free(&s);
}

static void test_to_float(void **state)
{
    (void)state;
    img_image s;
    make_pattern(&s, 3, 2, 3);
    float f[18];
    img_to_float(&s, 1.0f / 127.5f, -1.0f, f);
    for (int i = 0; i < 18; i++)
        assert_float_equal(f[i], s.data[i] / 127.5f - 1.0f, 1e-6);
    img_free(&s);
}

/* ---- encoders ---- */

static void test_encoders(void **state)
{
    (void)state;
    img_image s, d;
    for (int c = 1; c <= 3; c += 2) {
        make_pattern(&s, 23, 17, c);
        uint8_t *buf;
        size_t len;
        assert_int_equal(img_encode_png(&s, &buf, &len), 0);
        assert_int_equal(img_detect_format(buf, len), IMG_FORMAT_PNG);
        assert_int_equal(img_decode(buf, len, NULL, &d, NULL), 0);
        for (int p = 0; p < 23 * 17; p++)
            for (int k = 0; k < 3; k++)
                assert_int_equal(d.data[3 * p + k], s.data[p * c + (c == 3 ? k : 0)]);
        img_free(&d);
        free(buf);
        assert_int_equal(img_encode_jpeg(&s, 85, &buf, &len), 0);
        assert_int_equal(img_detect_format(buf, len), IMG_FORMAT_JPEG);
        assert_int_equal(img_decode(buf, len, NULL, &d, NULL), 0);
        assert_int_equal(d.width, 23);
        assert_int_equal(d.height, 17);
        free(buf);
        img_free(&d);
        img_free(&s);
    }
    make_pattern(&s, 4, 4, 3);
    uint8_t *buf = (uint8_t *)1;
    size_t len = 1;
    assert_int_equal(img_encode_jpeg(&s, 0, &buf, &len), BASE_ERR_INVALID);
    assert_null(buf);
    assert_int_equal(img_encode_jpeg(&s, 101, &buf, &len), BASE_ERR_INVALID);
    img_free(&s);
    make_pattern(&s, 4, 4, 2);
    assert_int_equal(img_encode_png(&s, &buf, &len), BASE_ERR_INVALID);
    assert_int_equal(img_encode_jpeg(&s, 90, &buf, &len), BASE_ERR_INVALID);
    img_free(&s);
}

/* ---- drawing ---- */

static int count_colour(const img_image *img, const uint8_t rgb[3])
{
    int n = 0;
    for (int p = 0; p < img->width * img->height; p++)
        n += memcmp(img->data + 3 * p, rgb, 3) == 0;
    return n;
}

static void test_draw(void **state)
{
    (void)state;
    const uint8_t red[3] = {255, 0, 0};
    img_image img;
    assert_int_equal(img_alloc(&img, 20, 12, 3), 0);
    memset(img.data, 0, 20 * 12 * 3);
    /* A 1-pixel outline of (2, 3)-(9, 8), corners inclusive: 8x6 box, 2*8 + 2*4 pixels. */
    img_draw_rect(&img, 9, 8, 2, 3, 1, red);
    assert_int_equal(count_colour(&img, red), 24);
    assert_int_equal(px(&img, 2, 3, 0), 255);
    assert_int_equal(px(&img, 9, 8, 0), 255);
    assert_int_equal(px(&img, 5, 5, 0), 0); /* inside untouched */
    assert_int_equal(px(&img, 10, 8, 0), 0);
    /* Thickness 2 of the same box: 8*6 - 4*2 inner. */
    memset(img.data, 0, 20 * 12 * 3);
    img_draw_rect(&img, 2, 3, 9, 8, 2, red);
    assert_int_equal(count_colour(&img, red), 48 - 8);
    /* Clipped anywhere, including absurd coordinates. */
    img_draw_rect(&img, -100, -100, 1000, 1000, 3, red);
    img_draw_rect(&img, -2147483647, 5, 2147483647, 6, 1000000, red);
    img_draw_dot(&img, -5, -5, 2, red);
    img_draw_dot(&img, 10, 6, 2000000000, red);
    assert_int_equal(count_colour(&img, red), 20 * 12);
    /* A dot of radius 2: a 5x5 disc without its corners (r^2 + r/2 = 5 admits (1, 2)). */
    memset(img.data, 0, 20 * 12 * 3);
    img_draw_dot(&img, 10, 6, 2, red);
    assert_int_equal(count_colour(&img, red), 21);
    assert_int_equal(px(&img, 8, 4, 0), 0);
    assert_int_equal(px(&img, 8, 5, 0), 255);
    img_draw_dot(&img, 3, 3, 0, red);
    assert_int_equal(count_colour(&img, red), 22);
    /* Text: 'I' is a 3-wide bar with serifs: column 2 fully set, columns 1 and 3 at the top
     * and bottom rows only. '-' is row 3. At scale 2 each dot is 2x2. */
    memset(img.data, 0, 20 * 12 * 3);
    img_draw_text(&img, 0, 0, "I-", 1, red);
    for (int y = 0; y < 7; y++) {
        assert_int_equal(px(&img, 2, y, 0), 255);
        assert_int_equal(px(&img, 1, y, 0), (y == 0 || y == 6) ? 255 : 0);
        assert_int_equal(px(&img, 0, y, 0), 0);
        for (int x = 6; x < 11; x++)
            assert_int_equal(px(&img, x, y, 0), y == 3 ? 255 : 0);
    }
    assert_int_equal(count_colour(&img, red), 7 + 4 + 5);
    memset(img.data, 0, 20 * 12 * 3);
    img_draw_text(&img, 1, 0, "-", 2, red);
    assert_int_equal(count_colour(&img, red), 5 * 4);
    assert_int_equal(px(&img, 1, 6, 0), 255);
    assert_int_equal(px(&img, 10, 7, 0), 255);
    /* Off-image, multi-line, non-ASCII, empty: no crash. */
    img_draw_text(&img, -30, -30, "clipped\ntext\x01\xff", 3, red);
    img_draw_text(&img, 15, 10, "0123456789 ABC xyz %.:", 1, red);
    img_draw_text(&img, 0, 0, "", 1, red);
    img_draw_text(&img, 0, 0, NULL, 1, red);
    img_free(&img);
    /* Grey images get the luma. */
    assert_int_equal(img_alloc(&img, 4, 4, 1), 0);
    memset(img.data, 0, 16);
    img_draw_rect(&img, 0, 0, 3, 3, 1, red);
    assert_int_equal(img.data[0], 76); /* 0.299 * 255 */
    assert_int_equal(img.data[5], 0);
    img_free(&img);
}

static void test_alloc(void **state)
{
    (void)state;
    img_image img;
    assert_int_equal(img_alloc(&img, 0, 5, 3), BASE_ERR_INVALID);
    assert_null(img.data);
    assert_int_equal(img_alloc(&img, 5, 5, 5), BASE_ERR_INVALID);
    assert_int_equal(img_alloc(&img, 2, 2, 3), 0);
    img_free(&img);
    img_free(&img); /* twice is fine */
    img_free(NULL);
}

int main(void)
{
    base_log_level = BASE_LOG_OFF;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_orientation), cmocka_unit_test(test_resize_constant),
        cmocka_unit_test(test_resize_area), cmocka_unit_test(test_resize_bilinear),
        cmocka_unit_test(test_crop),        cmocka_unit_test(test_warp),
        cmocka_unit_test(test_to_float),    cmocka_unit_test(test_encoders),
        cmocka_unit_test(test_draw),        cmocka_unit_test(test_alloc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
