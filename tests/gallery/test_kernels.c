/*
 * Every SIMD kernel of the gallery index against its scalar twin, over edge dimensions and
 * row counts (the 8-row main loop and the single-row tail), plus the f16 and int8
 * conversions. Kernels the CPU cannot run are skipped (and say so).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "gallery/kernels.h"

static const size_t dims[] = {1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 128, 192, 512, 1024};
static const size_t rows[] = {1, 7, 8, 9, 17, 64};
#define ROWS_MAX 64
#define DIM_MAX 1024

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t next_u64(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float uniform(void)
{
    return (float)((next_u64() >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static const struct gal_kernels *simd[] = {&gal_kernels_avx2, &gal_kernels_avx512,
                                           &gal_kernels_avx512vnni};

/* The sum of |q_i x_i|: the scale of the rounding error of any summation order. */
static double abs_dot(const float *q, const float *x, size_t dim)
{
    double s = 0;
    for (size_t i = 0; i < dim; i++)
        s += fabs((double)q[i] * x[i]);
    return s;
}

static void test_f32_and_f16(void **state)
{
    (void)state;
    float *q = malloc(DIM_MAX * sizeof *q);
    /* Rows with an odd stride (dim + 3) so that nothing is aligned by accident. */
    float *x = malloc(ROWS_MAX * (DIM_MAX + 3) * sizeof *x);
    uint16_t *h = malloc(ROWS_MAX * (DIM_MAX + 3) * sizeof *h);
    float *hx = malloc(ROWS_MAX * (DIM_MAX + 3) * sizeof *hx);
    assert_non_null(q);
    assert_non_null(x);
    assert_non_null(h);
    assert_non_null(hx);
    for (size_t k = 0; k < sizeof simd / sizeof simd[0]; k++) {
        if (!gal_kernels_find(simd[k]->name)) {
            printf("# kernels %s: this CPU cannot run them, skipped\n", simd[k]->name);
            continue;
        }
        for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
            size_t dim = dims[d], stride = dim + 3;
            for (size_t i = 0; i < dim; i++)
                q[i] = uniform();
            for (size_t i = 0; i < ROWS_MAX * stride; i++) {
                x[i] = uniform();
                h[i] = gal_f32_to_f16(x[i]);
                hx[i] = base_f16_to_f32(h[i]);
            }
            for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
                size_t n = rows[r];
                float want[ROWS_MAX], got[ROWS_MAX];
                for (int prefetch = 0; prefetch < 2; prefetch++) {
                    gal_kernels_scalar.dot_f32(q, x, dim, stride, n, want, 0);
                    simd[k]->dot_f32(q, x, dim, stride, n, got, prefetch);
                    for (size_t i = 0; i < n; i++) {
                        double tol = 1e-6 * abs_dot(q, x + i * stride, dim) + 1e-30;
                        if (fabs((double)want[i] - got[i]) > tol)
                            fail_msg("%s dot_f32 dim %zu n %zu row %zu: %.9g vs scalar %.9g",
                                     simd[k]->name, dim, n, i, (double)got[i], (double)want[i]);
                    }
                    gal_kernels_scalar.dot_f16(q, h, dim, stride, n, want, 0);
                    simd[k]->dot_f16(q, h, dim, stride, n, got, prefetch);
                    for (size_t i = 0; i < n; i++) {
                        double tol = 1e-6 * abs_dot(q, hx + i * stride, dim) + 1e-30;
                        if (fabs((double)want[i] - got[i]) > tol)
                            fail_msg("%s dot_f16 dim %zu n %zu row %zu: %.9g vs scalar %.9g",
                                     simd[k]->name, dim, n, i, (double)got[i], (double)want[i]);
                    }
                }
            }
        }
    }
    free(q);
    free(x);
    free(h);
    free(hx);
}

static void test_i8_exact(void **state)
{
    (void)state;
    int8_t *q = malloc(DIM_MAX);
    int8_t *x = malloc(ROWS_MAX * (DIM_MAX + 3));
    assert_non_null(q);
    assert_non_null(x);
    for (size_t k = 0; k < sizeof simd / sizeof simd[0]; k++) {
        if (!gal_kernels_find(simd[k]->name)) continue;
        for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
            size_t dim = dims[d], stride = dim + 3;
            for (int pattern = 0; pattern < 3; pattern++) {
                /* Random codes, then the extremes (+-127 everywhere) that stress overflow. */
                for (size_t i = 0; i < dim; i++)
                    q[i] = pattern == 0   ? (int8_t)((int)(next_u64() % 255) - 127)
                           : pattern == 1 ? 127
                                          : -127;
                for (size_t i = 0; i < ROWS_MAX * stride; i++)
                    x[i] = pattern == 0   ? (int8_t)((int)(next_u64() % 255) - 127)
                           : pattern == 1 ? -127
                                          : -127;
                for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
                    size_t n = rows[r];
                    int32_t want[ROWS_MAX], got[ROWS_MAX];
                    gal_kernels_scalar.dot_i8(q, x, dim, stride, n, want, 0);
                    simd[k]->dot_i8(q, x, dim, stride, n, got, r & 1);
                    for (size_t i = 0; i < n; i++)
                        if (want[i] != got[i])
                            fail_msg("%s dot_i8 dim %zu n %zu row %zu pattern %d: %d vs scalar %d",
                                     simd[k]->name, dim, n, i, pattern, got[i], want[i]);
                }
            }
        }
    }
    free(q);
    free(x);
}

static void test_f16_conversion(void **state)
{
    (void)state;
    /* Every half value converts to float and back to itself (NaNs stay NaN). */
    for (uint32_t v = 0; v < 0x10000; v++) {
        float f = base_f16_to_f32((uint16_t)v);
        uint16_t back = gal_f32_to_f16(f);
        if (isnan(f))
            assert_true(isnan(base_f16_to_f32(back)));
        else
            assert_int_equal(back, v);
    }
    /* Rounding to nearest even, overflow and underflow. */
    assert_int_equal(gal_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(gal_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);         /* tie: to even */
    assert_int_equal(gal_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);         /* tie: to even */
    assert_int_equal(gal_f32_to_f16(1.0f + 1.0f / 2048 + 1e-6f), 0x3c01); /* above the tie */
    assert_int_equal(gal_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(gal_f32_to_f16(70000.0f), 0x7c00);
    assert_int_equal(gal_f32_to_f16(-70000.0f), 0xfc00);
    assert_int_equal(gal_f32_to_f16(1e-10f), 0x0000);
    assert_int_equal(gal_f32_to_f16(5.9604645e-8f), 0x0001); /* the smallest subnormal */
    /* Random floats: the result is the nearest half. */
    for (int i = 0; i < 100000; i++) {
        float f = uniform() * 4.0f;
        uint16_t h = gal_f32_to_f16(f);
        float back = base_f16_to_f32(h);
        float up = base_f16_to_f32((uint16_t)(h + 1)), down = base_f16_to_f32((uint16_t)(h - 1));
        assert_true(fabsf(back - f) <= fabsf(up - f));
        assert_true(fabsf(back - f) <= fabsf(down - f));
    }
}

static void test_quantize(void **state)
{
    (void)state;
    float x[192];
    int8_t codes[192];
    for (int t = 0; t < 1000; t++) {
        float max = 0;
        for (int i = 0; i < 192; i++) {
            x[i] = uniform() * 0.3f;
            if (fabsf(x[i]) > max) max = fabsf(x[i]);
        }
        float scale = gal_quantize_i8(x, 192, codes);
        assert_true(fabsf(scale - max / 127) < 1e-9f);
        int saw_extreme = 0;
        for (int i = 0; i < 192; i++) {
            assert_true(codes[i] >= -127 && codes[i] <= 127);
            assert_true(fabsf(codes[i] * scale - x[i]) <= scale * 0.5f + 1e-7f);
            if (codes[i] == 127 || codes[i] == -127) saw_extreme = 1;
        }
        assert_true(saw_extreme);
    }
    memset(x, 0, sizeof x);
    assert_true(gal_quantize_i8(x, 192, codes) == 0.0f);
    for (int i = 0; i < 192; i++)
        assert_int_equal(codes[i], 0);
}

/* The encoders and the score selection: bit-identical in every variant. */
static void test_encoders_and_select(void **state)
{
    (void)state;
    const struct gal_kernels *all[] = {&gal_kernels_avx2, &gal_kernels_avx512,
                                       &gal_kernels_avx512vnni};
    float x[DIM_MAX];
    int8_t want8[DIM_MAX], got8[DIM_MAX];
    uint16_t want16[DIM_MAX], got16[DIM_MAX];
    for (size_t kv = 0; kv < sizeof all / sizeof all[0]; kv++) {
        if (!gal_kernels_find(all[kv]->name)) continue;
        for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
            size_t dim = dims[d];
            for (int t = 0; t < 20; t++) {
                float range = t % 4 == 0 ? 1e-6f : t % 4 == 1 ? 70000.0f : 1.0f;
                for (size_t i = 0; i < dim; i++)
                    x[i] = uniform() * range;
                if (t == 19) memset(x, 0, dim * sizeof *x);
                float ws = gal_quantize_i8(x, dim, want8);
                float gs = all[kv]->quantize_i8(x, dim, got8);
                if (ws != gs || memcmp(want8, got8, dim) != 0)
                    fail_msg("%s quantize_i8 dim %zu trial %d differs", all[kv]->name, dim, t);
                gal_kernels_scalar.to_f16(x, dim, want16);
                all[kv]->to_f16(x, dim, got16);
                if (memcmp(want16, got16, dim * sizeof *got16) != 0)
                    fail_msg("%s to_f16 dim %zu trial %d differs", all[kv]->name, dim, t);
            }
        }
        for (size_t n = 0; n <= 100; n++) {
            int32_t dots[100];
            float scales[100], ws[100], gs[100];
            uint32_t wsel[100], gsel[100];
            for (size_t i = 0; i < n; i++) {
                dots[i] = (int32_t)(next_u64() % 200001) - 100000;
                scales[i] = (uniform() + 1.0f) * 1e-3f;
            }
            float gate = n % 3 == 0 ? -INFINITY : uniform() * 50.0f;
            size_t wm = gal_kernels_scalar.select(dots, scales, 0.0123f, ws, n, gate, wsel);
            size_t gm = all[kv]->select(dots, scales, 0.0123f, gs, n, gate, gsel);
            assert_int_equal(wm, gm);
            assert_memory_equal(ws, gs, n * sizeof *ws);
            assert_memory_equal(wsel, gsel, wm * sizeof *wsel);
            /* Scores given (f32 and f16 rows): selection only. */
            wm = gal_kernels_scalar.select(NULL, NULL, 0.0f, ws, n, gate / 100, wsel);
            gm = all[kv]->select(NULL, NULL, 0.0f, ws, n, gate / 100, gsel);
            assert_int_equal(wm, gm);
            assert_memory_equal(wsel, gsel, wm * sizeof *wsel);
            for (size_t i = 0; i < wm; i++)
                assert_true(ws[wsel[i]] > gate / 100);
        }
    }
}

static void test_dispatch(void **state)
{
    (void)state;
    const struct gal_kernels *best = gal_kernels_best();
    assert_non_null(best);
    assert_ptr_equal(gal_kernels_find(NULL), best);
    assert_ptr_equal(gal_kernels_find("scalar"), &gal_kernels_scalar);
    assert_null(gal_kernels_find("sse9"));
    printf("# best kernels here: %s\n", best->name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch), cmocka_unit_test(test_f32_and_f16),
        cmocka_unit_test(test_i8_exact), cmocka_unit_test(test_f16_conversion),
        cmocka_unit_test(test_quantize), cmocka_unit_test(test_encoders_and_select),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
