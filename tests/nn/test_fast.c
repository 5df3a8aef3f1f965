/* The own element-wise kernels (fast.c) against the reference backend (libm). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "nn/graph.h"

#include <pthreadpool.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define COUNT 20011 /* odd, so vector tails are exercised */

static void compare(nn_unary_kind kind, float lo, float hi, double abs_tol, double rel_tol)
{
    static float x[COUNT], got[COUNT], want[COUNT];
    for (int i = 0; i < COUNT; i++)
        x[i] = lo + (hi - lo) * (float)i / (COUNT - 1);
    x[7] = 0.0f;
    x[8] = -0.0f;
    nn_node node = {.op = NN_OP_UNARY, .name = "t", .n_inputs = 1};
    node.p.unary.kind = kind;
    nn_view in = {{1, {COUNT}}, x}, a = {{1, {COUNT}}, got}, b = {{1, {COUNT}}, want};
    assert_true(nn_fast_supports(NULL, &node));
    assert_int_equal(nn_fast_run(NULL, &node, &in, &a, NULL), 0);
    assert_int_equal(nn_ref_run(NULL, &node, &in, &b), 0);
    double worst = 0;
    for (int i = 0; i < COUNT; i++) {
        double err = fabs((double)got[i] - want[i]);
        double allowed = abs_tol + rel_tol * fabs(want[i]);
        if (err / allowed > worst) worst = err / allowed;
        if (err > allowed)
            fail_msg("kind %d x=%g: fast %.9g ref %.9g", kind, x[i], got[i], want[i]);
    }
    printf("  kind %d over [%g, %g]: worst error %.2f of the allowance\n", kind, lo, hi, worst);
}

static int have_avx512(void)
{
    return __builtin_cpu_supports("avx512f");
}

static void test_tanh(void **state)
{
    (void)state;
    compare(NN_UNARY_TANH, -12, 12, 3e-7, 0);
    compare(NN_UNARY_TANH, -0.01f, 0.01f, 3e-7, 0);
}

static void test_exp(void **state)
{
    (void)state;
    compare(NN_UNARY_EXP, -80, 80, 0, 3e-7);
}

/* NaN in, NaN out (as libm), in the vector body and the tail; a NaN once reached an
 * undefined float-to-int conversion in exp's range reduction (found by fuzz_model). */
static void test_nan(void **state)
{
    (void)state;
    static const nn_unary_kind kinds[] = {NN_UNARY_EXP, NN_UNARY_TANH};
    enum { N = 37 };
    float x[N], y[N];
    for (int i = 0; i < N; i++)
        x[i] = (float)i / N - 0.5f;
    x[3] = NAN;
    x[N - 1] = -NAN;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        nn_node node = {.op = NN_OP_UNARY, .name = "t", .n_inputs = 1};
        node.p.unary.kind = kinds[k];
        nn_view in = {{1, {N}}, x}, out = {{1, {N}}, y};
        assert_int_equal(nn_fast_run(NULL, &node, &in, &out, NULL), 0);
        for (int i = 0; i < N; i++)
            if (isnan(x[i]) != isnan(y[i])) fail_msg("kind %d x=%g gave %g", kinds[k], x[i], y[i]);
    }
}

static void test_rsqrt(void **state)
{
    (void)state;
    compare(NN_UNARY_RSQRT, 1e-6f, 1e6f, 0, 2e-7);
}

/* The own depthwise kernel vs the reference over edge shapes: odd sizes, 3x3/5x5/1x1/7x7
 * (specialised and generic paths), stride 1 and 2, SAME/VALID/asymmetric padding and padding
 * wider than SAME's, dilation,
 * channel counts around the 16-lane block (1, 4, 8, 12, 24: the flat path whose vectors cross
 * pixels; 136: every channel block inside each sliding group, the last one 8 lanes; a 40-wide
 * map for C=1's 16-pixel units; rows of 8, 11, 28 interior pixels for the
 * 8-pixel groups and their shifted last group; rows of 14, 7, 21 and 28 for the 7-pixel groups;
 * odd and even row counts for the two-row passes), batch 1 and 3, every fused activation. */
static void test_depthwise(void **state)
{
    (void)state;
    if (!have_avx512()) skip();
    pthreadpool_t pool = pthreadpool_create(2);
    static float x[3 * 19 * 17 * 136], w[7 * 7 * 136], bias[136], slope[136],
        got[3 * 19 * 17 * 136], want[3 * 19 * 17 * 136];
    unsigned seed = 12345;
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = (float)((seed = seed * 1103515245u + 12345u) >> 9) / 4194304.0f - 1.0f;
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
        w[i] = (float)((seed = seed * 1103515245u + 12345u) >> 9) / 4194304.0f - 1.0f;
    for (int i = 0; i < 136; i++)
        bias[i] = 0.01f * (float)(i % 40) - 0.2f, slope[i] = 0.05f * (float)(i % 40);
    const int ks[] = {1, 3, 5, 7}, cs[] = {1, 4, 8, 12, 16, 17, 24, 33, 40, 136},
              hs[][2] = {{19, 17},
                         {7, 9},
                         {4, 5},
                         {5, 40},
                         {6, 10},
                         {3, 13},
                         {8, 30},
                         /* rows of 14 and 7 (stride 1 and 2: groups of 7), 21 and 28 */
                         {14, 14},
                         {7, 7},
                         {5, 21},
                         {9, 28}};
    int cases = 0;
    for (int ki = 0; ki < 4; ki++)
        for (int ci = 0; ci < 10; ci++)
            for (int hi = 0; hi < 11; hi++)
                for (int stride = 1; stride <= 2; stride++)
                    for (int variant = 0; variant < 5; variant++) {
                        int K = ks[ki], C = cs[ci], H = hs[hi][0], W = hs[hi][1],
                            N = variant == 3 ? 3 : 1;
                        int dil = variant == 2 && K <= 3 ? 2 : 1;
                        nn_conv_params p = {.kernel_h = K,
                                            .kernel_w = K,
                                            .stride_h = stride,
                                            .stride_w = stride,
                                            .dilation_h = dil,
                                            .dilation_w = dil,
                                            .depthwise = 1};
                        int eff = (K - 1) * dil + 1;
                        if (variant == 4) {
                            /* Explicit padding wider than SAME's (a folded Pad op): more columns
                             * outside the image than the sliding groups' variants leave out. */
                            p.pad_top = K / 2 + 1, p.pad_bottom = K / 2, p.pad_left = K / 2 + 1,
                            p.pad_right = K / 2 + 2;
                        } else if (variant != 1) { /* SAME (asymmetric when the total is odd) */
                            int oh = (H + stride - 1) / stride, ow = (W + stride - 1) / stride;
                            int th = (oh - 1) * stride + eff - H, tw = (ow - 1) * stride + eff - W;
                            th = th < 0 ? 0 : th, tw = tw < 0 ? 0 : tw;
                            p.pad_top = th / 2, p.pad_bottom = th - th / 2, p.pad_left = tw / 2,
                            p.pad_right = tw - tw / 2;
                        } else if (eff > H || eff > W) {
                            continue;
                        }
                        p.act = variant == 0 || variant == 4 ? (nn_act){NN_ACT_CLAMP, 0.0f, 6.0f, 0}
                                : variant == 2               ? (nn_act){NN_ACT_PRELU, 0, 0, 0}
                                                             : (nn_act){NN_ACT_NONE, 0, 0, 0};
                        int OH = (H + p.pad_top + p.pad_bottom - eff) / stride + 1;
                        int OW = (W + p.pad_left + p.pad_right - eff) / stride + 1;
                        nn_node node = {.op = NN_OP_CONV2D,
                                        .name = "dw",
                                        .n_inputs = 4,
                                        .inputs = {0, 1, 2, 3}};
                        node.p.conv = p;
                        nn_view in[4] = {{{4, {N, H, W, C}}, x},
                                         {{4, {K, K, C, 1}}, w},
                                         {{1, {C}}, variant == 1 ? NULL : bias},
                                         {{1, {C}}, slope}};
                        nn_view a = {{4, {N, OH, OW, C}}, got}, b = {{4, {N, OH, OW, C}}, want};
                        assert_int_equal(
                            nn_dwconv_run(NULL, &node, in, &a, variant == 3 ? pool : NULL), 0);
                        assert_int_equal(nn_ref_run(NULL, &node, in, &b), 0);
                        for (int i = 0; i < N * OH * OW * C; i++)
                            if (fabsf(got[i] - want[i]) > 1e-5f * (1 + fabsf(want[i])))
                                fail_msg("K%d C%d %dx%d s%d v%d: [%d] %g vs %g", K, C, H, W, stride,
                                         variant, i, got[i], want[i]);
                        cases++;
                    }
    pthreadpool_destroy(pool);
    printf("  %d depthwise cases match the reference\n", cases);
}

/* The own pooling (max and average, windows up to 3x3) vs the reference: 2x2 and 3x3 windows,
 * stride 1 and 2, VALID and SAME (asymmetric) padding, odd and even sizes, channel counts
 * around the 16-lane block, batch 1 and 5, one and two threads; larger windows are XNNPACK's. */
static void test_pool(void **state)
{
    (void)state;
    if (!have_avx512()) skip();
    pthreadpool_t pool = pthreadpool_create(2);
    static const int sizes[][2] = {{2, 2}, {5, 7}, {8, 8}, {3, 2}, {31, 30}};
    static const int chans[] = {1, 8, 16, 17, 40};
    /* kernel, stride, pad top, bottom, left, right */
    static const int wins[][6] = {{2, 2, 0, 0, 0, 0}, {3, 2, 0, 1, 0, 1}, {3, 2, 1, 1, 1, 1},
                                  {3, 1, 1, 1, 1, 1}, {2, 1, 0, 1, 0, 1}, {1, 1, 0, 0, 0, 0},
                                  {3, 2, 0, 0, 0, 0}};
    static float x[5 * 31 * 30 * 40], got[5 * 31 * 30 * 40], want[5 * 31 * 30 * 40];
    int cases = 0;
    for (int kind = 0; kind < 2; kind++)
        for (size_t wi = 0; wi < sizeof wins / sizeof wins[0]; wi++)
            for (size_t s = 0; s < 5; s++)
                for (size_t ci = 0; ci < 5; ci++)
                    for (int N = 1; N <= 5; N += 4) {
                        const int *wn = wins[wi];
                        int H = sizes[s][0], W = sizes[s][1], C = chans[ci];
                        int ph = H + wn[2] + wn[3], pw = W + wn[4] + wn[5];
                        if (ph < wn[0] || pw < wn[0]) continue;
                        int OH = (ph - wn[0]) / wn[1] + 1, OW = (pw - wn[0]) / wn[1] + 1;
                        for (int i = 0; i < N * H * W * C; i++)
                            x[i] = (float)((i * 7919 + (int)s * 31 + (int)ci) % 2001) / 100 - 10;
                        nn_node node = {.op = NN_OP_POOL, .name = "p", .n_inputs = 1};
                        node.p.pool = (nn_pool_params){.kind = kind ? NN_POOL_AVG : NN_POOL_MAX,
                                                       .kernel_h = wn[0],
                                                       .kernel_w = wn[0],
                                                       .stride_h = wn[1],
                                                       .stride_w = wn[1],
                                                       .pad_top = wn[2],
                                                       .pad_bottom = wn[3],
                                                       .pad_left = wn[4],
                                                       .pad_right = wn[5]};
                        assert_true(nn_fast_supports(NULL, &node));
                        nn_view in = {{4, {N, H, W, C}}, x};
                        nn_view a = {{4, {N, OH, OW, C}}, got}, b = {{4, {N, OH, OW, C}}, want};
                        for (int i = 0; i < N * OH * OW * C; i++)
                            got[i] = NAN;
                        assert_int_equal(nn_fast_run(NULL, &node, &in, &a, N == 5 ? pool : NULL),
                                         0);
                        assert_int_equal(nn_ref_run(NULL, &node, &in, &b), 0);
                        for (int i = 0; i < N * OH * OW * C; i++)
                            if (!(fabsf(got[i] - want[i]) <= 1e-6f * (1 + fabsf(want[i]))))
                                fail_msg("%s k%d s%d %dx%dx%dx%d: [%d] %g vs %g",
                                         kind ? "avg" : "max", wn[0], wn[1], N, H, W, C, i, got[i],
                                         want[i]);
                        cases++;
                    }
    /* Not this kernel's: a 4x4 window, padding as wide as the window. */
    nn_node other = {.op = NN_OP_POOL, .name = "q", .n_inputs = 1};
    other.p.pool = (nn_pool_params){
        .kind = NN_POOL_MAX, .kernel_h = 4, .kernel_w = 4, .stride_h = 2, .stride_w = 2};
    assert_false(nn_fast_supports(NULL, &other));
    other.p.pool = (nn_pool_params){.kind = NN_POOL_AVG,
                                    .kernel_h = 2,
                                    .kernel_w = 2,
                                    .stride_h = 2,
                                    .stride_w = 2,
                                    .pad_bottom = 2};
    assert_false(nn_fast_supports(NULL, &other));
    /* Views that do not match the window are an error, not a stray write. */
    nn_node node = {.op = NN_OP_POOL, .name = "p", .n_inputs = 1};
    node.p.pool = (nn_pool_params){
        .kind = NN_POOL_MAX, .kernel_h = 2, .kernel_w = 2, .stride_h = 2, .stride_w = 2};
    nn_view in = {{4, {1, 8, 8, 4}}, x}, bad = {{4, {1, 5, 4, 4}}, got};
    assert_int_not_equal(nn_fast_run(NULL, &node, &in, &bad, NULL), 0);
    nn_view strip = {{4, {1, 1, 3, 4}}, x}, empty = {{4, {1, 0, 1, 4}}, got};
    assert_int_not_equal(nn_fast_run(NULL, &node, &strip, &empty, NULL),
                         0); /* the window does not fit */
    pthreadpool_destroy(pool);
    printf("  %d pooling cases match the reference\n", cases);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_depthwise), cmocka_unit_test(test_pool),
        cmocka_unit_test(test_tanh),      cmocka_unit_test(test_exp),
        cmocka_unit_test(test_nan),       cmocka_unit_test(test_rsqrt)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
