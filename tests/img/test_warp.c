/*
 * The affine warp's SIMD variants against a plain scalar reference written here (the warp as
 * img.h defines it, one tap at a time): many random matrices (similarity, general affine,
 * upscale, downscale, rotation, translation by whole and half pixels), sizes down to 1x1 and
 * 1xN, border values, samples outside the image, NaN and huge coordinates. Every variant this
 * CPU has must agree with the reference within 1 (they are meant to be identical) and with
 * each other exactly. The source also sits right before an inaccessible page, so a SIMD load
 * past the last pixel would crash the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "base/base.h"
#include "img/img.h"
#include "img/img_private.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

static uint8_t ref_round(float v)
{
    if (!(v > 0.0f)) return 0;
    if (v >= 255.0f) return 255;
    return (uint8_t)(v + 0.5f);
}

/* The source pixel (x, y) channel k, or the border value when outside. */
static float ref_tap(const img_image *s, int x, int y, int k, uint8_t border)
{
    if (x < 0 || y < 0 || x >= s->width || y >= s->height) return border;
    return s->data[((size_t)y * s->width + x) * s->channels + k];
}

/* out(u, v) = src(M (u + 0.5, v + 0.5, 1) - 0.5), bilinear, outside taps read `border`. */
static void ref_warp(const img_image *s, const float m[6], int ow, int oh, uint8_t border,
                     uint8_t *out)
{
    const int c = s->channels;
    for (int v = 0; v < oh; v++)
        for (int u = 0; u < ow; u++) {
            uint8_t *d = out + ((size_t)v * ow + u) * c;
            const float cu = u + 0.5f, cv = v + 0.5f;
            const float sx = m[0] * cu + m[1] * cv + m[2] - 0.5f;
            const float sy = m[3] * cu + m[4] * cv + m[5] - 0.5f;
            if (!(sx > -1.0f && sx < (float)s->width && sy > -1.0f && sy < (float)s->height)) {
                memset(d, border, (size_t)c);
                continue;
            }
            const int x0 = (int)floorf(sx), y0 = (int)floorf(sy);
            const float fx = sx - x0, fy = sy - y0;
            for (int k = 0; k < c; k++) {
                float p00 = ref_tap(s, x0, y0, k, border), p01 = ref_tap(s, x0 + 1, y0, k, border);
                float p10 = ref_tap(s, x0, y0 + 1, k, border);
                float p11 = ref_tap(s, x0 + 1, y0 + 1, k, border);
                float top = p00 + fx * (p01 - p00), bot = p10 + fx * (p11 - p10);
                d[k] = ref_round(top + fy * (bot - top));
            }
        }
}

static uint32_t rng_state = 12345;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}
static float frand(float lo, float hi)
{
    return lo + (hi - lo) * (float)(rnd() >> 8) / 16777216.0f;
}

/*
 * A source image whose last byte is the last byte before a PROT_NONE page: any read past the
 * pixels faults. The mapping is returned for guarded_free.
 */
typedef struct guarded {
    void *map;
    size_t map_len;
} guarded;

static img_image guarded_image(int w, int h, int c, guarded *g)
{
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t n = (size_t)w * h * c;
    const size_t data_pages = (n + page - 1) / page;
    g->map_len = (data_pages + 1) * page;
    g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(g->map != MAP_FAILED);
    assert_int_equal(mprotect((uint8_t *)g->map + data_pages * page, page, PROT_NONE), 0);
    img_image img = {.width = w, .height = h, .channels = c};
    img.data = (uint8_t *)g->map + data_pages * page - n;
    for (size_t i = 0; i < n; i++)
        img.data[i] = (uint8_t)rnd();
    return img;
}

static void guarded_free(guarded *g)
{
    munmap(g->map, g->map_len);
}

/* A random source -> output matrix of one of several kinds, mapping output pixel centres. */
static void random_matrix(int sw, int sh, int ow, int oh, float m[6])
{
    const int kind = (int)(rnd() % 7);
    float scale = kind == 0   ? frand(0.05f, 0.9f)
                  : kind == 1 ? frand(1.1f, 8.0f)
                              : frand(0.3f, 3.0f);
    float angle = kind <= 1 ? 0.0f : frand(-3.2f, 3.2f);
    float a = scale * cosf(angle), b = scale * sinf(angle);
    /* output centre -> a point near (sometimes well outside) the source */
    float tx = frand(-0.3f, 1.3f) * sw, ty = frand(-0.3f, 1.3f) * sh;
    m[0] = a, m[1] = -b, m[3] = b, m[4] = a;
    if (kind == 3) { /* general affine: shear and unequal scales */
        m[1] = frand(-2, 2), m[3] = frand(-2, 2), m[0] = frand(-3, 3), m[4] = frand(-3, 3);
    }
    if (kind == 4) { /* translation by whole or half pixels */
        m[0] = 1, m[1] = 0, m[3] = 0, m[4] = 1;
        m[2] = (float)((int)(rnd() % (2 * sw + 3)) - sw - 1) * (rnd() % 2 ? 0.5f : 1.0f);
        m[5] = (float)((int)(rnd() % (2 * sh + 3)) - sh - 1) * (rnd() % 2 ? 0.5f : 1.0f);
        return;
    }
    if (kind == 5) { /* the output covers exactly the source, both ends: the last pixel */
        m[0] = (float)sw / ow, m[1] = 0, m[3] = 0, m[4] = (float)sh / oh;
        m[2] = frand(-0.6f, 0.6f), m[5] = frand(-0.6f, 0.6f);
        return;
    }
    m[2] = tx - (m[0] * ow + m[1] * oh) * 0.5f;
    m[5] = ty - (m[3] * ow + m[4] * oh) * 0.5f;
}

static int random_size(void)
{
    switch (rnd() % 4) {
    case 0: return 1 + (int)(rnd() % 3);
    case 1: return 1 + (int)(rnd() % 40);
    case 2: return 16 + (int)(rnd() % 3) - 1; /* around one AVX-512 block */
    default: return 1 + (int)(rnd() % 200);
    }
}

/* Warps with every variant this CPU has; returns how many values differ from the reference. */
static long check_case(const img_image *s, const float m[6], int ow, int oh, uint8_t border)
{
    const size_t n = (size_t)ow * oh * s->channels;
    uint8_t *want = malloc(n);
    assert_non_null(want);
    ref_warp(s, m, ow, oh, border, want);
    img_image first = {0};
    long inexact = 0;
    const img_isa isas[] = {IMG_ISA_SCALAR, IMG_ISA_AVX2, IMG_ISA_AVX512, IMG_ISA_AVX512VBMI,
                            IMG_ISA_AUTO};
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (!img_isa_supported(isas[i])) continue;
        img_image got;
        assert_int_equal(img_warp_affine_isa(s, m, ow, oh, border, &got, isas[i]), 0);
        assert_int_equal(got.width, ow);
        assert_int_equal(got.height, oh);
        assert_int_equal(got.channels, s->channels);
        for (size_t k = 0; k < n; k++) {
            int diff = abs((int)got.data[k] - (int)want[k]);
            if (diff > 1)
                fail_msg("%s: %dx%dx%d -> %dx%d, m = [%g %g %g; %g %g %g], border %d: value %zu "
                         "is %d, reference %d",
                         img_isa_name(isas[i]), s->width, s->height, s->channels, ow, oh,
                         (double)m[0], (double)m[1], (double)m[2], (double)m[3], (double)m[4],
                         (double)m[5], border, k, got.data[k], want[k]);
            inexact += diff != 0;
        }
        if (first.data) {
            if (memcmp(first.data, got.data, n) != 0)
                fail_msg("%s differs from scalar: %dx%d -> %dx%d", img_isa_name(isas[i]), s->width,
                         s->height, ow, oh);
            img_free(&got);
        } else {
            first = got;
        }
    }
    img_free(&first);
    free(want);
    return inexact;
}

static void test_warp_random(void **state)
{
    (void)state;
    long inexact = 0, values = 0, cases = 0;
    for (int it = 0; it < 3000; it++) {
        const int c = rnd() % 5 == 0 ? 1 : 3;
        int sw = random_size(), sh = random_size(), ow = random_size(), oh = random_size();
        if (rnd() % 10 == 0) sh = 1; /* 1xN sources and outputs */
        if (rnd() % 10 == 0) ow = 1;
        guarded g;
        img_image s = guarded_image(sw, sh, c, &g);
        float m[6];
        random_matrix(sw, sh, ow, oh, m);
        const uint8_t border = rnd() % 3 == 0 ? 0 : (uint8_t)rnd();
        inexact += check_case(&s, m, ow, oh, border);
        values += (long)ow * oh * c;
        cases++;
        guarded_free(&g);
    }
    /* Meant to be bit-identical; a 1-LSB difference would be allowed but should not occur
     * with the same float operations in the same order. */
    print_message("warp: %ld cases, %ld values, %ld differ by 1 from the reference\n", cases,
                  values, inexact);
    assert_int_equal(inexact, 0);
}

/* Coordinates that are NaN, infinite or beyond int range read the border everywhere. */
static void test_warp_degenerate(void **state)
{
    (void)state;
    guarded g;
    img_image s = guarded_image(37, 23, 3, &g);
    const float big = 3e9f, inf = INFINITY, nan = NAN;
    const float mats[][6] = {
        {1, 0, big, 0, 1, 0},   {1, 0, 0, 0, 1, -big},      {big, 0, 0, 0, big, 0},
        {1, 0, inf, 0, 1, 0},   {1, 0, 0, 0, 1, nan},       {nan, 0, 0, 0, 1, 0},
        {0, 0, 0, 0, 0, 0},     {0, 0, 36.5f, 0, 0, 22.5f}, /* every pixel from the last one */
        {-1, 0, 37, 0, -1, 23}, /* rotation by 180 degrees, exactly onto the pixels */
    };
    for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) {
        assert_int_equal(check_case(&s, mats[i], 40, 9, 201), 0);
        assert_int_equal(check_case(&s, mats[i], 17, 2, 0), 0);
    }
    /* The constant matrices above must give the value they name, not just agree. */
    img_image d;
    assert_int_equal(img_warp_affine(&s, mats[0], 20, 3, 201, &d), 0);
    for (size_t k = 0; k < (size_t)20 * 3 * 3; k++)
        assert_int_equal(d.data[k], 201);
    img_free(&d);
    assert_int_equal(img_warp_affine(&s, mats[7], 33, 2, 0, &d), 0);
    const uint8_t *last = s.data + ((size_t)23 * 37 - 1) * 3;
    for (int k = 0; k < 33 * 2; k++)
        assert_memory_equal(d.data + 3 * k, last, 3);
    img_free(&d);
    guarded_free(&g);
}

/* Unsupported variants are refused with an error, not run. */
static void test_warp_isa_refused(void **state)
{
    (void)state;
    img_image s, d;
    assert_int_equal(img_alloc(&s, 4, 4, 3), 0);
    memset(s.data, 9, 48);
    const float id[6] = {1, 0, 0, 0, 1, 0};
    const img_isa isas[] = {IMG_ISA_AVX2, IMG_ISA_AVX512};
    for (size_t i = 0; i < 2; i++) {
        int rc = img_warp_affine_isa(&s, id, 4, 4, 0, &d, isas[i]);
        if (img_isa_supported(isas[i])) {
            assert_int_equal(rc, 0);
            img_free(&d);
        } else {
            assert_int_equal(rc, BASE_ERR_UNSUPPORTED);
        }
    }
    assert_int_equal(img_warp_affine_isa(NULL, id, 4, 4, 0, &d, IMG_ISA_AUTO), BASE_ERR_INVALID);
    img_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_warp_random),
        cmocka_unit_test(test_warp_degenerate),
        cmocka_unit_test(test_warp_isa_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
