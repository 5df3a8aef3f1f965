/*
 * Tests of the reference backend (src/nn/ref): every kernel on small cases whose expected
 * values are derived by hand (in the comments) or by a naive formula written here
 * independently of the kernels (convolution as a direct nested loop in double).
 * Nodes and views are filled in directly; no graph is built (the kernels do not read it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "nn/graph.h"

/* --- helpers ------------------------------------------------------------------------------ */

#define DIMS(...) ((int64_t[]){__VA_ARGS__})
#define NDIMS(...) ((int)(sizeof(DIMS(__VA_ARGS__)) / sizeof(int64_t)))
#define SHAPE(...) shape_of(DIMS(__VA_ARGS__), NDIMS(__VA_ARGS__))
#define VIEW(data, ...) ((nn_view){SHAPE(__VA_ARGS__), (data)})
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static nn_shape shape_of(const int64_t *dims, int rank)
{
    nn_shape s = {.rank = rank};
    for (int i = 0; i < rank; i++)
        s.dim[i] = dims[i];
    return s;
}

/* Compares n floats with an absolute + relative tolerance, naming the first mismatch. */
static void check_close_at(const float *got, const float *want, int64_t n, double tol,
                           const char *file, int line)
{
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= tol * (1.0 + fabs((double)want[i])))) {
            fprintf(stderr, "%s:%d: element %lld: got %.9g want %.9g\n", file, line, (long long)i,
                    got[i], want[i]);
            fail();
        }
    }
}
#define check_close(got, want, n, tol) check_close_at((got), (want), (n), (tol), __FILE__, __LINE__)

/* Same with the expected values in double (from a naive formula). */
static void check_close_d_at(const float *got, const double *want, int64_t n, double tol,
                             const char *file, int line)
{
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= tol * (1.0 + fabs(want[i])))) {
            fprintf(stderr, "%s:%d: element %lld: got %.9g want %.9g\n", file, line, (long long)i,
                    got[i], want[i]);
            fail();
        }
    }
}
#define check_close_d(got, want, n, tol)                                                           \
    check_close_d_at((got), (want), (n), (tol), __FILE__, __LINE__)

/* Runs a node and fails the test with the error message if it fails. */
static void run_ok_at(const nn_node *node, const nn_view *in, nn_view *out, const char *file,
                      int line)
{
    base_error_clear();
    int rc = nn_ref_run(NULL, node, in, out);
    if (rc != 0) {
        fprintf(stderr, "%s:%d: nn_ref_run: %d %s\n", file, line, rc, base_error_message());
        fail();
    }
}
#define run_ok(node, in, out) run_ok_at((node), (in), (out), __FILE__, __LINE__)

static uint32_t rng_state = 12345;
/* Deterministic values in [-1, 1). */
static float rnd(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) / 16777216.0 * 2.0 - 1.0);
}
static void fill_rnd(float *p, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        p[i] = rnd();
}

/* The naive convolution: one output element at a time, every tap, in double.
 * x [N,H,W,C], w [KH,KW,C,M] (regular: M = Cout; depthwise: Cout = C*M, co = c*M+m). */
typedef struct conv_case {
    int N, H, W, C, KH, KW, M, depthwise;
    int sh, sw, dh, dw, pt, pb, pl, pr;
} conv_case;

static void conv_out_dims(const conv_case *k, int *OH, int *OW, int *CO)
{
    *OH = (k->H + k->pt + k->pb - ((k->KH - 1) * k->dh + 1)) / k->sh + 1;
    *OW = (k->W + k->pl + k->pr - ((k->KW - 1) * k->dw + 1)) / k->sw + 1;
    *CO = k->depthwise ? k->C * k->M : k->M;
}

static void naive_conv(const conv_case *k, const float *x, const float *w, const float *bias,
                       double *y)
{
    int OH, OW, CO;
    conv_out_dims(k, &OH, &OW, &CO);
    for (int n = 0; n < k->N; n++)
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++)
                for (int co = 0; co < CO; co++) {
                    double s = bias ? bias[co] : 0.0;
                    for (int ky = 0; ky < k->KH; ky++)
                        for (int kx = 0; kx < k->KW; kx++) {
                            int iy = oy * k->sh - k->pt + ky * k->dh;
                            int ix = ox * k->sw - k->pl + kx * k->dw;
                            if (iy < 0 || iy >= k->H || ix < 0 || ix >= k->W) continue;
                            const float *px = x + ((n * k->H + iy) * k->W + ix) * k->C;
                            if (k->depthwise) {
                                int c = co / k->M, m = co % k->M;
                                s += (double)px[c] * w[((ky * k->KW + kx) * k->C + c) * k->M + m];
                            } else {
                                for (int ci = 0; ci < k->C; ci++)
                                    s += (double)px[ci] *
                                         w[((ky * k->KW + kx) * k->C + ci) * k->M + co];
                            }
                        }
                    y[((n * OH + oy) * OW + ox) * CO + co] = s;
                }
}

static nn_node conv_node(const conv_case *k, int with_bias)
{
    nn_node node = {.op = NN_OP_CONV2D, .name = "conv", .n_inputs = with_bias ? 3 : 2};
    node.p.conv = (nn_conv_params){.kernel_h = k->KH,
                                   .kernel_w = k->KW,
                                   .stride_h = k->sh,
                                   .stride_w = k->sw,
                                   .dilation_h = k->dh,
                                   .dilation_w = k->dw,
                                   .pad_top = k->pt,
                                   .pad_bottom = k->pb,
                                   .pad_left = k->pl,
                                   .pad_right = k->pr,
                                   .depthwise = k->depthwise};
    return node;
}

/* Random x, w, bias; runs the kernel and compares with the naive loop. */
static void conv_against_naive(const conv_case *k, int with_bias)
{
    int OH, OW, CO;
    conv_out_dims(k, &OH, &OW, &CO);
    static float x[4096], w[4096], b[256], y[8192];
    static double want[8192];
    int64_t xn = (int64_t)k->N * k->H * k->W * k->C, wn = (int64_t)k->KH * k->KW * k->C * k->M;
    int64_t yn = (int64_t)k->N * OH * OW * CO;
    assert_true(xn <= COUNT(x) && wn <= COUNT(w) && CO <= COUNT(b) && yn <= COUNT(y));
    fill_rnd(x, xn);
    fill_rnd(w, wn);
    fill_rnd(b, CO);
    nn_node node = conv_node(k, with_bias);
    nn_view in[3] = {VIEW(x, k->N, k->H, k->W, k->C), VIEW(w, k->KH, k->KW, k->C, k->M),
                     VIEW(b, CO)};
    nn_view out = VIEW(y, k->N, OH, OW, CO);
    run_ok(&node, in, &out);
    naive_conv(k, x, w, with_bias ? b : NULL, want);
    check_close_d(y, want, yn, 1e-5);
}

/* --- convolution -------------------------------------------------------------------------- */

/* A 2x2 filter with a single 1 picks one neighbour: shows which filter tap meets which input
 * pixel. x (3x3) = 1..9 row-major, VALID, stride 1 -> 2x2. */
static void test_conv_filter_orientation(void **state)
{
    (void)state;
    float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    conv_case k = {.N = 1,
                   .H = 3,
                   .W = 3,
                   .C = 1,
                   .KH = 2,
                   .KW = 2,
                   .M = 1,
                   .sh = 1,
                   .sw = 1,
                   .dh = 1,
                   .dw = 1};
    struct {
        float w[4];
        float want[4];
    } cases[] = {
        {{1, 0, 0, 0}, {1, 2, 4, 5}}, /* top-left tap: x[oy][ox] */
        {{0, 1, 0, 0}, {2, 3, 5, 6}}, /* top-right: x[oy][ox+1] */
        {{0, 0, 1, 0}, {4, 5, 7, 8}}, /* bottom-left: x[oy+1][ox] */
        {{0, 0, 0, 1}, {5, 6, 8, 9}},
    };
    for (int i = 0; i < COUNT(cases); i++) {
        float y[4];
        nn_node node = conv_node(&k, 0);
        nn_view in[2] = {VIEW(x, 1, 3, 3, 1), VIEW(cases[i].w, 2, 2, 1, 1)};
        nn_view out = VIEW(y, 1, 2, 2, 1);
        run_ok(&node, in, &out);
        check_close(y, cases[i].want, 4, 0);
    }
}

/* x [1,1,1,2] = [1,2], w [1,1,2,3] = [[1,2,3],[4,5,6]]: y = [1+8, 2+10, 3+12] = [9,12,15];
 * with bias [1,-1,0.5]: [10, 11, 15.5]. */
static void test_conv_channels_and_bias(void **state)
{
    (void)state;
    float x[2] = {1, 2}, w[6] = {1, 2, 3, 4, 5, 6}, b[3] = {1, -1, 0.5f}, y[3];
    conv_case k = {.N = 1,
                   .H = 1,
                   .W = 1,
                   .C = 2,
                   .KH = 1,
                   .KW = 1,
                   .M = 3,
                   .sh = 1,
                   .sw = 1,
                   .dh = 1,
                   .dw = 1};
    nn_node node = conv_node(&k, 0);
    nn_view in[3] = {VIEW(x, 1, 1, 1, 2), VIEW(w, 1, 1, 2, 3), VIEW(b, 3)};
    nn_view out = VIEW(y, 1, 1, 1, 3);
    run_ok(&node, in, &out);
    check_close(y, ((float[]){9, 12, 15}), 3, 0);
    /* Bias present in the views but n_inputs 2: ignored. Then with n_inputs 3. */
    node.n_inputs = 3;
    run_ok(&node, in, &out);
    check_close(y, ((float[]){10, 11, 15.5f}), 3, 0);
    /* Bias slot present but absent (data NULL). */
    in[2].data = NULL;
    run_ok(&node, in, &out);
    check_close(y, ((float[]){9, 12, 15}), 3, 0);
}

/* SAME, stride 2, 3x3 kernel on all-ones inputs and filter: each output counts the in-bounds
 * taps of its window.
 *   5x5 -> 3x3, total pad (3-1)*2+3-5 = 2: top/left 1, bottom/right 1:
 *       corners see 2x2 = 4 taps, edges 2x3 = 6, the centre 9.
 *   4x4 -> 2x2, total pad (2-1)*2+3-4 = 1: top/left 0, bottom/right 1 (TF puts the odd pixel
 *       at the end): [[9,6],[6,4]]. */
static void test_conv_same_stride2(void **state)
{
    (void)state;
    float ones[25], w[9], y[9];
    for (int i = 0; i < 25; i++)
        ones[i] = 1;
    for (int i = 0; i < 9; i++)
        w[i] = 1;

    conv_case odd = {.N = 1,
                     .H = 5,
                     .W = 5,
                     .C = 1,
                     .KH = 3,
                     .KW = 3,
                     .M = 1,
                     .sh = 2,
                     .sw = 2,
                     .dh = 1,
                     .dw = 1,
                     .pt = 1,
                     .pb = 1,
                     .pl = 1,
                     .pr = 1};
    nn_node node = conv_node(&odd, 0);
    nn_view in[2] = {VIEW(ones, 1, 5, 5, 1), VIEW(w, 3, 3, 1, 1)};
    nn_view out = VIEW(y, 1, 3, 3, 1);
    run_ok(&node, in, &out);
    check_close(y, ((float[]){4, 6, 4, 6, 9, 6, 4, 6, 4}), 9, 0);

    conv_case even = {.N = 1,
                      .H = 4,
                      .W = 4,
                      .C = 1,
                      .KH = 3,
                      .KW = 3,
                      .M = 1,
                      .sh = 2,
                      .sw = 2,
                      .dh = 1,
                      .dw = 1,
                      .pt = 0,
                      .pb = 1,
                      .pl = 0,
                      .pr = 1};
    node = conv_node(&even, 0);
    in[0] = VIEW(ones, 1, 4, 4, 1);
    out = VIEW(y, 1, 2, 2, 1);
    run_ok(&node, in, &out);
    check_close(y, ((float[]){9, 6, 6, 4}), 4, 0);

    /* Multi-channel, batch 2, odd sizes, against the naive loop. */
    conv_case multi = {.N = 2,
                       .H = 7,
                       .W = 5,
                       .C = 3,
                       .KH = 3,
                       .KW = 3,
                       .M = 5,
                       .sh = 2,
                       .sw = 2,
                       .dh = 1,
                       .dw = 1,
                       .pt = 1,
                       .pb = 1,
                       .pl = 1,
                       .pr = 1};
    conv_against_naive(&multi, 1);
    /* Asymmetric kernel and strides, no bias. */
    conv_case rect = {.N = 1,
                      .H = 6,
                      .W = 9,
                      .C = 4,
                      .KH = 2,
                      .KW = 3,
                      .M = 3,
                      .sh = 1,
                      .sw = 3,
                      .dh = 1,
                      .dw = 1,
                      .pt = 0,
                      .pb = 1,
                      .pl = 1,
                      .pr = 1};
    conv_against_naive(&rect, 0);
}

/* Depthwise, multiplier 2: output channel c*2+m = x[c] * w[c][m].
 * x = [1,2], w [1,1,2,2] = [[10,20],[30,40]]: y = [10, 20, 60, 80]. */
static void test_depthwise_multiplier2(void **state)
{
    (void)state;
    float x[2] = {1, 2}, w[4] = {10, 20, 30, 40}, b[4] = {0, 1, 2, 3}, y[4];
    conv_case k = {.N = 1,
                   .H = 1,
                   .W = 1,
                   .C = 2,
                   .KH = 1,
                   .KW = 1,
                   .M = 2,
                   .depthwise = 1,
                   .sh = 1,
                   .sw = 1,
                   .dh = 1,
                   .dw = 1};
    nn_node node = conv_node(&k, 1);
    nn_view in[3] = {VIEW(x, 1, 1, 1, 2), VIEW(w, 1, 1, 2, 2), VIEW(b, 4)};
    nn_view out = VIEW(y, 1, 1, 1, 4);
    run_ok(&node, in, &out);
    check_close(y, ((float[]){10, 21, 62, 83}), 4, 0);

    conv_case big = {.N = 2,
                     .H = 5,
                     .W = 6,
                     .C = 3,
                     .KH = 3,
                     .KW = 3,
                     .M = 2,
                     .depthwise = 1,
                     .sh = 2,
                     .sw = 2,
                     .dh = 1,
                     .dw = 1,
                     .pt = 1,
                     .pb = 1,
                     .pl = 0,
                     .pr = 1};
    conv_against_naive(&big, 1);
    conv_case m1 = {.N = 1,
                    .H = 6,
                    .W = 6,
                    .C = 8,
                    .KH = 3,
                    .KW = 3,
                    .M = 1,
                    .depthwise = 1,
                    .sh = 1,
                    .sw = 1,
                    .dh = 1,
                    .dw = 1,
                    .pt = 1,
                    .pb = 1,
                    .pl = 1,
                    .pr = 1};
    conv_against_naive(&m1, 0);
}

/* Dilation 2, 2x2 filter [[1,0],[0,1]] on x(r,c) = 5r+c (5x5), VALID: the effective kernel is
 * 3x3, so 3x3 outputs y(r,c) = x(r,c) + x(r+2,c+2) = 10r + 2c + 12. */
static void test_conv_dilation2(void **state)
{
    (void)state;
    float x[25], w[4] = {1, 0, 0, 1}, y[9], want[9];
    for (int i = 0; i < 25; i++)
        x[i] = (float)i;
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++)
            want[r * 3 + c] = (float)(10 * r + 2 * c + 12);
    conv_case k = {.N = 1,
                   .H = 5,
                   .W = 5,
                   .C = 1,
                   .KH = 2,
                   .KW = 2,
                   .M = 1,
                   .sh = 1,
                   .sw = 1,
                   .dh = 2,
                   .dw = 2};
    nn_node node = conv_node(&k, 0);
    nn_view in[2] = {VIEW(x, 1, 5, 5, 1), VIEW(w, 2, 2, 1, 1)};
    nn_view out = VIEW(y, 1, 3, 3, 1);
    run_ok(&node, in, &out);
    check_close(y, want, 9, 0);

    conv_case reg = {.N = 1,
                     .H = 9,
                     .W = 8,
                     .C = 3,
                     .KH = 3,
                     .KW = 3,
                     .M = 4,
                     .sh = 1,
                     .sw = 1,
                     .dh = 2,
                     .dw = 3,
                     .pt = 2,
                     .pb = 2,
                     .pl = 3,
                     .pr = 3};
    conv_against_naive(&reg, 1);
    conv_case dw = {.N = 1,
                    .H = 9,
                    .W = 9,
                    .C = 4,
                    .KH = 3,
                    .KW = 3,
                    .M = 2,
                    .depthwise = 1,
                    .sh = 2,
                    .sw = 2,
                    .dh = 2,
                    .dw = 2,
                    .pt = 2,
                    .pb = 2,
                    .pl = 2,
                    .pr = 2};
    conv_against_naive(&dw, 1);
}

/* Fused activations on a 1x1 identity convolution: x = two pixels [-2,4], [6,-8].
 *   PRELU slope [0.5, 0.25]: [-1, 4, 6, -2] (slope shapes [2], [1,1,2], [1,1,1,2] alike,
 *       and a single slope [1] applies to every channel);
 *   CLAMP [0,5]: [0, 4, 5, 0]; LEAKY 0.1: [-0.2, 4, 6, -0.8]. */
static void test_conv_fused_activations(void **state)
{
    (void)state;
    float x[4] = {-2, 4, 6, -8}, w[4] = {1, 0, 0, 1}, slope[2] = {0.5f, 0.25f}, y[4];
    conv_case k = {.N = 1,
                   .H = 1,
                   .W = 2,
                   .C = 2,
                   .KH = 1,
                   .KW = 1,
                   .M = 2,
                   .sh = 1,
                   .sw = 1,
                   .dh = 1,
                   .dw = 1};
    nn_node node = conv_node(&k, 0);
    node.n_inputs = 4;
    node.p.conv.act.kind = NN_ACT_PRELU;
    nn_view in[4] = {VIEW(x, 1, 1, 2, 2), VIEW(w, 1, 1, 2, 2), {{0}, NULL}, VIEW(slope, 2)};
    nn_view out = VIEW(y, 1, 1, 2, 2);
    nn_shape slope_shapes[3] = {SHAPE(2), SHAPE(1, 1, 2), SHAPE(1, 1, 1, 2)};
    for (int i = 0; i < 3; i++) {
        in[3].shape = slope_shapes[i];
        memset(y, 0, sizeof y);
        run_ok(&node, in, &out);
        check_close(y, ((float[]){-1, 4, 6, -2}), 4, 0);
    }
    float one_slope[1] = {0.5f};
    in[3] = VIEW(one_slope, 1);
    run_ok(&node, in, &out);
    check_close(y, ((float[]){-1, 4, 6, -4}), 4, 0);

    /* Depthwise with PRELU and a bias: y = x + b, b = [1, 1]: [-1, 5, 7, -7] -> slope. */
    float b[2] = {1, 1}, wd[2] = {1, 1};
    conv_case kd = k;
    kd.depthwise = 1;
    kd.M = 1;
    nn_node dnode = conv_node(&kd, 1);
    dnode.n_inputs = 4;
    dnode.p.conv.act.kind = NN_ACT_PRELU;
    nn_view din[4] = {VIEW(x, 1, 1, 2, 2), VIEW(wd, 1, 1, 2, 1), VIEW(b, 2),
                      VIEW(slope, 1, 1, 1, 2)};
    run_ok(&dnode, din, &out);
    check_close(y, ((float[]){-0.5f, 5, 7, -1.75f}), 4, 0);

    node.n_inputs = 2;
    node.p.conv.act = (nn_act){.kind = NN_ACT_CLAMP, .lo = 0, .hi = 5};
    run_ok(&node, in, &out);
    check_close(y, ((float[]){0, 4, 5, 0}), 4, 0);
    node.p.conv.act = (nn_act){.kind = NN_ACT_LEAKY, .alpha = 0.1f};
    run_ok(&node, in, &out);
    check_close(y, ((float[]){-0.2f, 4, 6, -0.8f}), 4, 1e-7);
}

/* x [2,3] = [[1,2,3],[4,5,6]], w [3,2] = [[1,0],[0,1],[1,1]]: y = [[4,5],[10,11]];
 * bias [0.5,-20]: [[4.5,-15],[10.5,-9]]; PRELU slope [1, 0.1]: [[4.5,-1.5],[10.5,-0.9]]. */
static void test_fully_connected(void **state)
{
    (void)state;
    float x[6] = {1, 2, 3, 4, 5, 6}, w[6] = {1, 0, 0, 1, 1, 1}, b[2] = {0.5f, -20};
    float slope[2] = {1, 0.1f}, y[4];
    nn_node node = {.op = NN_OP_FULLY_CONNECTED, .name = "fc", .n_inputs = 2};
    nn_view in[4] = {VIEW(x, 2, 3), VIEW(w, 3, 2), VIEW(b, 2), VIEW(slope, 2)};
    nn_view out = VIEW(y, 2, 2);
    run_ok(&node, in, &out);
    check_close(y, ((float[]){4, 5, 10, 11}), 4, 0);
    node.n_inputs = 3;
    run_ok(&node, in, &out);
    check_close(y, ((float[]){4.5f, -15, 10.5f, -9}), 4, 0);
    node.n_inputs = 4;
    node.p.fc.act.kind = NN_ACT_PRELU;
    run_ok(&node, in, &out);
    check_close(y, ((float[]){4.5f, -1.5f, 10.5f, -0.9f}), 4, 1e-7);
    node.p.fc.act = (nn_act){.kind = NN_ACT_CLAMP, .lo = 0, .hi = 6};
    run_ok(&node, in, &out);
    check_close(y, ((float[]){4.5f, 0, 6, 0}), 4, 0);
}

/* --- element-wise ------------------------------------------------------------------------- */

static nn_node binary_node(nn_binary_kind kind)
{
    nn_node node = {.op = NN_OP_BINARY, .name = "binary", .n_inputs = 2};
    node.p.binary.kind = kind;
    return node;
}

/* numpy broadcasting: [N,1,1,C] vs [C] vs a scalar vs [N,H,W,C], and a case that broadcasts
 * both ways ([2,1,3] with [4,1] -> [2,4,3]), checked against index arithmetic. */
static void test_binary_broadcast(void **state)
{
    (void)state;
    float a[6] = {1, 2, 3, 4, 5, 6}, c[3] = {10, 20, 30}, y[24];
    nn_node add = binary_node(NN_BINARY_ADD);

    /* [2,1,1,3] + [3] -> [2,1,1,3] */
    nn_view in[2] = {VIEW(a, 2, 1, 1, 3), VIEW(c, 3)};
    nn_view out = VIEW(y, 2, 1, 1, 3);
    run_ok(&add, in, &out);
    check_close(y, ((float[]){11, 22, 33, 14, 25, 36}), 6, 0);

    /* [3] + [2,1,1,3] (the broadcast operand first) */
    nn_view rin[2] = {VIEW(c, 3), VIEW(a, 2, 1, 1, 3)};
    run_ok(&add, rin, &out);
    check_close(y, ((float[]){11, 22, 33, 14, 25, 36}), 6, 0);

    /* [2,1,1,3] - scalar (rank 0), and - [1] */
    float s = 1;
    nn_node sub = binary_node(NN_BINARY_SUB);
    nn_view sin0[2] = {VIEW(a, 2, 1, 1, 3), {{0}, &s}};
    run_ok(&sub, sin0, &out);
    check_close(y, ((float[]){0, 1, 2, 3, 4, 5}), 6, 0);
    nn_view sin1[2] = {VIEW(a, 2, 1, 1, 3), VIEW(&s, 1)};
    run_ok(&sub, sin1, &out);
    check_close(y, ((float[]){0, 1, 2, 3, 4, 5}), 6, 0);
    /* scalar - tensor keeps the order */
    nn_view sin2[2] = {{{0}, &s}, VIEW(a, 2, 1, 1, 3)};
    run_ok(&sub, sin2, &out);
    check_close(y, ((float[]){0, -1, -2, -3, -4, -5}), 6, 0);
    /* scalar op scalar -> scalar */
    float t = 5, r = 0;
    nn_view ss[2] = {{{0}, &s}, {{0}, &t}};
    nn_view rout = {{0}, &r};
    run_ok(&sub, ss, &rout);
    assert_true(r == -4);

    /* [2,2,2,3] * [2,1,1,3]: per batch and channel scale. */
    float big[24];
    for (int i = 0; i < 24; i++)
        big[i] = (float)(i + 1);
    nn_node mul = binary_node(NN_BINARY_MUL);
    nn_view min_[2] = {VIEW(big, 2, 2, 2, 3), VIEW(a, 2, 1, 1, 3)};
    nn_view mout = VIEW(y, 2, 2, 2, 3);
    run_ok(&mul, min_, &mout);
    for (int n = 0; n < 2; n++)
        for (int p = 0; p < 4; p++)
            for (int ch = 0; ch < 3; ch++) {
                int i = (n * 4 + p) * 3 + ch;
                assert_true(y[i] == big[i] * a[n * 3 + ch]);
            }

    /* [2,1,3] + [4,1] -> [2,4,3]: out[i][j][k] = a[i][0][k] + b[j][0]. */
    float b4[4] = {100, 200, 300, 400};
    nn_view bin[2] = {VIEW(a, 2, 1, 3), VIEW(b4, 4, 1)};
    nn_view bout = VIEW(y, 2, 4, 3);
    run_ok(&add, bin, &bout);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 3; k++)
                assert_true(y[(i * 4 + j) * 3 + k] == a[i * 3 + k] + b4[j]);

    /* Rank 6 with broadcasting in the middle: [1,2,1,2,1,2] + [2,1,2,1,2,1]. */
    float p6[8], q6[8], y6[64];
    for (int i = 0; i < 8; i++)
        p6[i] = (float)i, q6[i] = (float)(10 * i);
    nn_view in6[2] = {VIEW(p6, 1, 2, 1, 2, 1, 2), VIEW(q6, 2, 1, 2, 1, 2, 1)};
    nn_view out6 = VIEW(y6, 2, 2, 2, 2, 2, 2);
    run_ok(&add, in6, &out6);
    for (int i0 = 0; i0 < 2; i0++)
        for (int i1 = 0; i1 < 2; i1++)
            for (int i2 = 0; i2 < 2; i2++)
                for (int i3 = 0; i3 < 2; i3++)
                    for (int i4 = 0; i4 < 2; i4++)
                        for (int i5 = 0; i5 < 2; i5++) {
                            int o = ((((i0 * 2 + i1) * 2 + i2) * 2 + i3) * 2 + i4) * 2 + i5;
                            float want = p6[(i1 * 2 + i3) * 2 + i5] + q6[(i0 * 2 + i2) * 2 + i4];
                            assert_true(y6[o] == want);
                        }
}

/* a = [1,-2,3,4], b = [2,2,-1,8]. */
static void test_binary_kinds(void **state)
{
    (void)state;
    float a[4] = {1, -2, 3, 4}, b[4] = {2, 2, -1, 8}, y[4];
    struct {
        nn_binary_kind kind;
        float want[4];
    } cases[] = {
        {NN_BINARY_ADD, {3, 0, 2, 12}},
        {NN_BINARY_SUB, {-1, -4, 4, -4}},
        {NN_BINARY_MUL, {2, -4, -3, 32}},
        {NN_BINARY_DIV, {0.5f, -1, -3, 0.5f}},
        {NN_BINARY_MIN, {1, -2, -1, 4}},
        {NN_BINARY_MAX, {2, 2, 3, 8}},
        {NN_BINARY_SQUARED_DIFFERENCE, {1, 16, 16, 16}},
    };
    nn_view in[2] = {VIEW(a, 4), VIEW(b, 4)};
    nn_view out = VIEW(y, 4);
    for (int i = 0; i < COUNT(cases); i++) {
        nn_node node = binary_node(cases[i].kind);
        run_ok(&node, in, &out);
        check_close(y, cases[i].want, 4, 0);
    }
    /* Add with a fused Relu6-like clamp [0, 6]: [3,0,2,6]. */
    nn_node node = binary_node(NN_BINARY_ADD);
    node.p.binary.act = (nn_act){.kind = NN_ACT_CLAMP, .lo = 0, .hi = 6};
    run_ok(&node, in, &out);
    check_close(y, ((float[]){3, 0, 2, 6}), 4, 0);
    /* In place: y = a * b written over a. */
    float ac[4];
    memcpy(ac, a, sizeof a);
    nn_node mul = binary_node(NN_BINARY_MUL);
    nn_view iin[2] = {VIEW(ac, 4), VIEW(b, 4)};
    nn_view iout = VIEW(ac, 4);
    run_ok(&mul, iin, &iout);
    check_close(ac, ((float[]){2, -4, -3, 32}), 4, 0);
}

static void test_unary_kinds(void **state)
{
    (void)state;
    float x[6] = {-3, -0.5f, 0, 0.25f, 1, 4}, y[6];
    double want[6];
    for (int kind = NN_UNARY_IDENTITY; kind <= NN_UNARY_ELU; kind++) {
        nn_node node = {.op = NN_OP_UNARY, .name = "unary", .n_inputs = 1};
        node.p.unary =
            (nn_unary_params){.kind = (nn_unary_kind)kind, .lo = -1, .hi = 2, .alpha = 0.2f};
        for (int i = 0; i < 6; i++) {
            double v = x[i];
            switch ((nn_unary_kind)kind) {
            case NN_UNARY_IDENTITY: want[i] = v; break;
            case NN_UNARY_ABS: want[i] = fabs(v); break;
            case NN_UNARY_NEG: want[i] = -v; break;
            case NN_UNARY_SQUARE: want[i] = v * v; break;
            case NN_UNARY_SQRT: want[i] = sqrt(v); break;
            case NN_UNARY_RSQRT: want[i] = 1 / sqrt(v); break;
            case NN_UNARY_EXP: want[i] = exp(v); break;
            case NN_UNARY_LOG: want[i] = log(v); break;
            case NN_UNARY_SIGMOID: want[i] = 1 / (1 + exp(-v)); break;
            case NN_UNARY_TANH: want[i] = tanh(v); break;
            case NN_UNARY_CLAMP: want[i] = v < -1 ? -1 : v > 2 ? 2 : v; break;
            case NN_UNARY_LEAKY: want[i] = v >= 0 ? v : 0.2 * v; break;
            case NN_UNARY_ELU: want[i] = v < 0 ? exp(v) - 1 : v; break;
            }
        }
        nn_view in[1] = {VIEW(x, 2, 3)};
        nn_view out = VIEW(y, 2, 3);
        run_ok(&node, in, &out);
        for (int i = 0; i < 6; i++) {
            if (isnan(want[i])) {
                assert_true(isnan(y[i]));
            } else if (isinf(want[i])) {
                assert_true(isinf(y[i]) && (y[i] > 0) == (want[i] > 0));
            } else {
                check_close_d(&y[i], &want[i], 1, 1e-6);
            }
        }
    }
    /* Spot values by hand: sigmoid(0) = 0.5, elu(-inf-ish) -> -1, rsqrt(4) = 0.5. */
    float z[3] = {0, -100, 4}, o[3];
    nn_node node = {.op = NN_OP_UNARY, .name = "u", .n_inputs = 1};
    nn_view in[1] = {VIEW(z, 3)};
    nn_view out = VIEW(o, 3);
    node.p.unary.kind = NN_UNARY_SIGMOID;
    run_ok(&node, in, &out);
    assert_true(o[0] == 0.5f && o[1] >= 0 && o[1] < 1e-40f);
    node.p.unary.kind = NN_UNARY_ELU;
    run_ok(&node, in, &out);
    assert_true(o[0] == 0 && o[1] == -1 && o[2] == 4);
    node.p.unary.kind = NN_UNARY_RSQRT;
    run_ok(&node, in, &out);
    assert_true(o[2] == 0.5f);
}

/* x [1,2,2,3], slope per channel [0.1, 0.2, 0.3] as [3], [1,1,3], and one slope [1] = 0.5. */
static void test_prelu_op(void **state)
{
    (void)state;
    float x[12] = {-1, -1, -1, 1, 2, 3, -10, 0, -20, 5, -5, -2}, slope[3] = {0.1f, 0.2f, 0.3f};
    float y[12];
    nn_node node = {.op = NN_OP_PRELU, .name = "prelu", .n_inputs = 2};
    float want[12] = {-0.1f, -0.2f, -0.3f, 1, 2, 3, -1, 0, -6, 5, -1, -0.6f};
    nn_shape shapes[2] = {SHAPE(3), SHAPE(1, 1, 3)};
    for (int i = 0; i < 2; i++) {
        nn_view in[2] = {VIEW(x, 1, 2, 2, 3), {shapes[i], slope}};
        nn_view out = VIEW(y, 1, 2, 2, 3);
        run_ok(&node, in, &out);
        check_close(y, want, 12, 1e-7);
    }
    float half = 0.5f;
    nn_view in[2] = {VIEW(x, 1, 2, 2, 3), VIEW(&half, 1)};
    nn_view out = VIEW(y, 1, 2, 2, 3);
    run_ok(&node, in, &out);
    check_close(y, ((float[]){-0.5f, -0.5f, -0.5f, 1, 2, 3, -5, 0, -10, 5, -2.5f, -1}), 12, 0);
}

/* Softmax over the last axis; adding a constant to a row does not change it (the max is
 * subtracted, so 1000+ does not overflow). */
static void test_softmax(void **state)
{
    (void)state;
    float x[9] = {1, 2, 3, 1000, 1001, 1002, 0, 0, 0}, y[9];
    double e = exp(1.0), s = 1 + e + e * e;
    double want[9] = {1 / s, e / s, e * e / s, 1 / s, e / s, e * e / s, 1.0 / 3, 1.0 / 3, 1.0 / 3};
    nn_node node = {.op = NN_OP_SOFTMAX, .name = "softmax", .n_inputs = 1};
    nn_view in[1] = {VIEW(x, 3, 3)};
    nn_view out = VIEW(y, 3, 3);
    run_ok(&node, in, &out);
    check_close_d(y, want, 9, 1e-6);
    /* In place, rank 4. */
    nn_view iin[1] = {VIEW(x, 1, 1, 3, 3)};
    nn_view iout = VIEW(x, 1, 1, 3, 3);
    run_ok(&node, iin, &iout);
    check_close_d(x, want, 9, 1e-6);
}

/* --- pooling and reductions --------------------------------------------------------------- */

static nn_node pool_node(nn_pool_kind kind, int k, int s, int pt, int pb, int pl, int pr)
{
    nn_node node = {.op = NN_OP_POOL, .name = "pool", .n_inputs = 1};
    node.p.pool = (nn_pool_params){.kind = kind,
                                   .kernel_h = k,
                                   .kernel_w = k,
                                   .stride_h = s,
                                   .stride_w = s,
                                   .pad_top = pt,
                                   .pad_bottom = pb,
                                   .pad_left = pl,
                                   .pad_right = pr};
    return node;
}

/* 3x3 pooling, stride 1, SAME (pad 1 all round) on x = 1..9:
 *   avg divides by the in-bounds count: corners (1+2+4+5)/4 = 3, (2+3+5+6)/4 = 4, ...;
 *       edges /6: (1..6)/6 = 3.5, (1,2,4,5,7,8)/6 = 4.5; centre 45/9 = 5;
 *   max on -x ignores the padding (it never returns a padded 0). */
static void test_pool_padding(void **state)
{
    (void)state;
    float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, nx[9], y[9];
    for (int i = 0; i < 9; i++)
        nx[i] = -x[i];
    nn_node avg = pool_node(NN_POOL_AVG, 3, 1, 1, 1, 1, 1);
    nn_view in[1] = {VIEW(x, 1, 3, 3, 1)};
    nn_view out = VIEW(y, 1, 3, 3, 1);
    run_ok(&avg, in, &out);
    check_close(y, ((float[]){3, 3.5f, 4, 4.5f, 5, 5.5f, 6, 6.5f, 7}), 9, 1e-7);

    nn_node max = pool_node(NN_POOL_MAX, 3, 1, 1, 1, 1, 1);
    in[0].data = nx;
    run_ok(&max, in, &out);
    check_close(y, ((float[]){-1, -1, -2, -1, -1, -2, -4, -4, -5}), 9, 0);

    /* 2x2 stride 2 VALID on 4x4x2: channel 0 = 0..15, channel 1 = -(0..15). */
    float x2[32], y2[8];
    for (int i = 0; i < 16; i++)
        x2[2 * i] = (float)i, x2[2 * i + 1] = (float)-i;
    nn_view in2[1] = {VIEW(x2, 1, 4, 4, 2)};
    nn_view out2 = VIEW(y2, 1, 2, 2, 2);
    nn_node mp = pool_node(NN_POOL_MAX, 2, 2, 0, 0, 0, 0);
    run_ok(&mp, in2, &out2);
    check_close(y2, ((float[]){5, 0, 7, -2, 13, -8, 15, -10}), 8, 0);
    nn_node ap = pool_node(NN_POOL_AVG, 2, 2, 0, 0, 0, 0);
    run_ok(&ap, in2, &out2);
    /* (0+1+4+5)/4 = 2.5, (2+3+6+7)/4 = 4.5, (8+9+12+13)/4 = 10.5, 12.5 */
    check_close(y2, ((float[]){2.5f, -2.5f, 4.5f, -4.5f, 10.5f, -10.5f, 12.5f, -12.5f}), 8, 0);

    /* SAME 2x2 stride 2 on 3x3 (pad bottom/right 1): the last row/col windows have 2 or 1
     * elements: avg [(1+2+4+5)/4, (3+6)/2, (7+8)/2, 9] = [3, 4.5, 7.5, 9]. */
    nn_node as = pool_node(NN_POOL_AVG, 2, 2, 0, 1, 0, 1);
    nn_view in3[1] = {VIEW(x, 1, 3, 3, 1)};
    nn_view out3 = VIEW(y, 1, 2, 2, 1);
    run_ok(&as, in3, &out3);
    check_close(y, ((float[]){3, 4.5f, 7.5f, 9}), 4, 0);
}

/* x [2,2,3,2] = 0..23; reductions checked against sums written out per case. */
static void test_reduce(void **state)
{
    (void)state;
    float x[24], y[24];
    for (int i = 0; i < 24; i++)
        x[i] = (float)i;
    /* element (n,h,w,c) = 12n + 6h + 2w + c */
    double want[4];
    for (int n = 0; n < 2; n++)
        for (int c = 0; c < 2; c++) {
            double s = 0;
            for (int h = 0; h < 2; h++)
                for (int w = 0; w < 3; w++)
                    s += 12 * n + 6 * h + 2 * w + c;
            want[n * 2 + c] = s / 6;
        }
    /* mean over {1,2}: keep_dims [2,1,1,2] and dropped [2,2]; same numbers. */
    nn_node node = {.op = NN_OP_REDUCE, .name = "mean", .n_inputs = 1};
    node.p.reduce =
        (nn_reduce_params){.kind = NN_REDUCE_MEAN, .axes = (1u << 1) | (1u << 2), .keep_dims = 1};
    nn_view in[1] = {VIEW(x, 2, 2, 3, 2)};
    nn_view out = VIEW(y, 2, 1, 1, 2);
    run_ok(&node, in, &out);
    check_close_d(y, want, 4, 1e-7);
    node.p.reduce.keep_dims = 0;
    out = VIEW(y, 2, 2);
    memset(y, 0, sizeof y);
    run_ok(&node, in, &out);
    check_close_d(y, want, 4, 1e-7);
    /* Hand check: n=0,c=0: (0+2+4+6+8+10)/6 = 5; n=1,c=1: 5+12+1 = 18. */
    assert_true(y[0] == 5 && y[3] == 18);

    /* sum over {3} -> [2,2,3]: x[2k] + x[2k+1] = 4k + 1 */
    node.p.reduce = (nn_reduce_params){.kind = NN_REDUCE_SUM, .axes = 1u << 3};
    out = VIEW(y, 2, 2, 3);
    run_ok(&node, in, &out);
    for (int k = 0; k < 12; k++)
        assert_true(y[k] == 4 * k + 1);

    /* max over {1,3} keep -> [2,1,3,1]: max at h=1,c=1: 12n + 6 + 2w + 1 */
    node.p.reduce =
        (nn_reduce_params){.kind = NN_REDUCE_MAX, .axes = (1u << 1) | (1u << 3), .keep_dims = 1};
    out = VIEW(y, 2, 1, 3, 1);
    run_ok(&node, in, &out);
    for (int n = 0; n < 2; n++)
        for (int w = 0; w < 3; w++)
            assert_true(y[n * 3 + w] == 12 * n + 7 + 2 * w);

    /* min over {2} -> [2,2,2]: w = 0: 12n + 6h + c */
    node.p.reduce = (nn_reduce_params){.kind = NN_REDUCE_MIN, .axes = 1u << 2};
    out = VIEW(y, 2, 2, 2);
    run_ok(&node, in, &out);
    for (int n = 0; n < 2; n++)
        for (int h = 0; h < 2; h++)
            for (int c = 0; c < 2; c++)
                assert_true(y[(n * 2 + h) * 2 + c] == 12 * n + 6 * h + c);

    /* mean over {1,2,3} not kept -> [2]: (0..11)/12 = 5.5, (12..23)/12 = 17.5 */
    node.p.reduce = (nn_reduce_params){.kind = NN_REDUCE_MEAN, .axes = 0xE};
    out = VIEW(y, 2);
    run_ok(&node, in, &out);
    check_close(y, ((float[]){5.5f, 17.5f}), 2, 0);
}

/* --- data movement ------------------------------------------------------------------------ */

/* x [1,2,2,1] = [[1,2],[3,4]], one row before, two columns after, value -1:
 *   [[-1,-1,-1,-1],[1,2,-1,-1],[3,4,-1,-1]]. */
static void test_pad(void **state)
{
    (void)state;
    float x[4] = {1, 2, 3, 4}, y[12];
    nn_node node = {.op = NN_OP_PAD, .name = "pad", .n_inputs = 1};
    node.p.pad.before[1] = 1;
    node.p.pad.after[2] = 2;
    node.p.pad.value = -1;
    nn_view in[1] = {VIEW(x, 1, 2, 2, 1)};
    nn_view out = VIEW(y, 1, 3, 4, 1);
    run_ok(&node, in, &out);
    check_close(y, ((float[]){-1, -1, -1, -1, 1, 2, -1, -1, 3, 4, -1, -1}), 12, 0);

    /* Channel padding: [1,1,2,2] -> [1,1,2,4] with one zero each side. */
    float z[8];
    nn_node cp = {.op = NN_OP_PAD, .name = "padc", .n_inputs = 1};
    cp.p.pad.before[3] = 1;
    cp.p.pad.after[3] = 1;
    nn_view cin[1] = {VIEW(x, 1, 1, 2, 2)};
    nn_view cout = VIEW(z, 1, 1, 2, 4);
    run_ok(&cp, cin, &cout);
    check_close(z, ((float[]){0, 1, 2, 0, 0, 3, 4, 0}), 8, 0);
}

static void test_reshape(void **state)
{
    (void)state;
    float x[6] = {1, 2, 3, 4, 5, 6}, y[6] = {0};
    nn_node node = {.op = NN_OP_RESHAPE, .name = "reshape", .n_inputs = 1};
    nn_view in[1] = {VIEW(x, 1, 2, 3)};
    nn_view out = VIEW(y, 1, 6);
    run_ok(&node, in, &out);
    check_close(y, x, 6, 0);
    nn_view same = VIEW(x, 6, 1);
    run_ok(&node, in, &same);
    check_close(x, ((float[]){1, 2, 3, 4, 5, 6}), 6, 0);
}

/* Channels: [1,1,2,1] [1], [2] ++ [1,1,2,2] [3,4], [5,6] ++ [1,1,2,1] [7], [8]
 *   -> [1,1,2,4] = [1,3,4,7], [2,5,6,8]. */
static void test_concat(void **state)
{
    (void)state;
    float a[2] = {1, 2}, b[4] = {3, 4, 5, 6}, c[2] = {7, 8}, y[8];
    nn_node node = {.op = NN_OP_CONCAT, .name = "concat", .n_inputs = 3};
    node.p.concat.axis = 3;
    nn_view in[3] = {VIEW(a, 1, 1, 2, 1), VIEW(b, 1, 1, 2, 2), VIEW(c, 1, 1, 2, 1)};
    nn_view out = VIEW(y, 1, 1, 2, 4);
    run_ok(&node, in, &out);
    check_close(y, ((float[]){1, 3, 4, 7, 2, 5, 6, 8}), 8, 0);

    /* Along H with batch 2: [2,1,1,1] ++ [2,2,1,1] -> [2,3,1,1]: [a0,b0,b1, a1,b2,b3]. */
    node.n_inputs = 2;
    node.p.concat.axis = 1;
    nn_view hin[2] = {VIEW(a, 2, 1, 1, 1), VIEW(b, 2, 2, 1, 1)};
    nn_view hout = VIEW(y, 2, 3, 1, 1);
    run_ok(&node, hin, &hout);
    check_close(y, ((float[]){1, 3, 4, 2, 5, 6}), 6, 0);
}

/* x [1,4,5,2], x(h,w,c) = 100h + 10w + c; begin [0,1,0,1], stride [1,2,2,1], size [1,2,3,1],
 * the last dim shrunk: out [1,2,3] = x(1+2i, 2j, 1) = 100 + 200i + 20j + 1. */
static void test_slice(void **state)
{
    (void)state;
    float x[40], y[40];
    for (int h = 0; h < 4; h++)
        for (int w = 0; w < 5; w++)
            for (int c = 0; c < 2; c++)
                x[(h * 5 + w) * 2 + c] = (float)(100 * h + 10 * w + c);
    nn_node node = {.op = NN_OP_SLICE, .name = "slice", .n_inputs = 1};
    node.p.slice = (nn_slice_params){
        .rank = 4, .begin = {0, 1, 0, 1}, .stride = {1, 2, 2, 1}, .size = {1, 2, 3, 1}};
    nn_view in[1] = {VIEW(x, 1, 4, 5, 2)};
    nn_view out = VIEW(y, 1, 2, 3);
    run_ok(&node, in, &out);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            assert_true(y[i * 3 + j] == 101 + 200 * i + 20 * j);

    /* Reversed W (stride -1 from 4), channel 0 only, with size[0] = -1 (the whole batch). */
    node.p.slice = (nn_slice_params){
        .rank = 4, .begin = {0, 0, 4, 0}, .stride = {1, 1, -1, 1}, .size = {NN_BATCH, 4, 5, 1}};
    out = VIEW(y, 1, 4, 5, 1);
    run_ok(&node, in, &out);
    for (int h = 0; h < 4; h++)
        for (int w = 0; w < 5; w++)
            assert_true(y[h * 5 + w] == 100 * h + 10 * (4 - w));

    /* Out of bounds: begin 3 with stride 2 and 2 elements along H reaches row 5 of 4. */
    node.p.slice = (nn_slice_params){
        .rank = 4, .begin = {0, 3, 0, 0}, .stride = {1, 2, 1, 1}, .size = {1, 2, 5, 2}};
    out = VIEW(y, 1, 2, 5, 2);
    assert_int_equal(nn_ref_run(NULL, &node, in, &out), BASE_ERR_INVALID);
}

static void resize_run(const float *x, int h, int w, int oh, int ow, int align, int half, float *y)
{
    nn_node node = {.op = NN_OP_RESIZE_BILINEAR, .name = "resize", .n_inputs = 1};
    node.p.resize = (nn_resize_params){
        .out_h = oh, .out_w = ow, .align_corners = align, .half_pixel_centers = half};
    nn_view in[1] = {VIEW((float *)x, 1, h, w, 1)};
    nn_view out = VIEW(y, 1, oh, ow, 1);
    run_ok(&node, in, &out);
}

/* TensorFlow's ResizeBilinear on x = [[1,2],[3,4]] to 3x3:
 *   align_corners: scale (2-1)/(3-1) = 1/2, sources 0, 0.5, 1:
 *       [[1,1.5,2],[2,2.5,3],[3,3.5,4]];
 *   half_pixel_centers: scale 2/3, sources (o+0.5)*2/3-0.5 = -1/6, 1/2, 7/6: the first clamps
 *       to row 0 (floor -1 -> 0, ceil 0), the last to row 1 (ceil 2 -> 1): the same values;
 *   neither (legacy): scale 2/3, sources 0, 2/3, 4/3 (-> row 1):
 *       [[1,5/3,2],[7/3,3,10/3],[3,11/3,4]].
 * On a row [0,1] resized to 4, where they differ (TF's documented examples):
 *   half_pixel [0, 0.25, 0.75, 1]; align_corners [0, 1/3, 2/3, 1]; legacy [0, 0.5, 1, 1];
 * and [0,1,2,3] down to 2 with half_pixel: sources 0.5 and 2.5 -> [0.5, 2.5]. */
static void test_resize_bilinear(void **state)
{
    (void)state;
    const float x[4] = {1, 2, 3, 4};
    float y[16];
    resize_run(x, 2, 2, 3, 3, 1, 0, y);
    check_close(y, ((float[]){1, 1.5f, 2, 2, 2.5f, 3, 3, 3.5f, 4}), 9, 1e-7);
    resize_run(x, 2, 2, 3, 3, 0, 1, y);
    check_close(y, ((float[]){1, 1.5f, 2, 2, 2.5f, 3, 3, 3.5f, 4}), 9, 1e-7);
    resize_run(x, 2, 2, 3, 3, 0, 0, y);
    check_close(y, ((float[]){1, 5.f / 3, 2, 7.f / 3, 3, 10.f / 3, 3, 11.f / 3, 4}), 9, 1e-6);

    const float row[2] = {0, 1};
    resize_run(row, 1, 2, 1, 4, 0, 1, y);
    check_close(y, ((float[]){0, 0.25f, 0.75f, 1}), 4, 1e-7);
    resize_run(row, 1, 2, 1, 4, 1, 0, y);
    check_close(y, ((float[]){0, 1.f / 3, 2.f / 3, 1}), 4, 1e-6);
    resize_run(row, 1, 2, 1, 4, 0, 0, y);
    check_close(y, ((float[]){0, 0.5f, 1, 1}), 4, 0);
    /* The same along H (a column). */
    resize_run(row, 2, 1, 4, 1, 0, 1, y);
    check_close(y, ((float[]){0, 0.25f, 0.75f, 1}), 4, 1e-7);

    const float four[4] = {0, 1, 2, 3};
    resize_run(four, 1, 4, 1, 2, 0, 1, y);
    check_close(y, ((float[]){0.5f, 2.5f}), 2, 1e-7);
    /* Legacy downsampling takes every other pixel: sources 0, 2. */
    resize_run(four, 1, 4, 1, 2, 0, 0, y);
    check_close(y, ((float[]){0, 2}), 2, 0);
    /* align_corners with one output pixel uses in/out (= 4): source 0. */
    resize_run(four, 1, 4, 1, 1, 1, 0, y);
    check_close(y, ((float[]){0}), 1, 0);

    /* Multi-channel, batch 2: each channel resized alone. */
    float xc[16], yc[72];
    for (int i = 0; i < 16; i++)
        xc[i] = (float)i;
    nn_node node = {.op = NN_OP_RESIZE_BILINEAR, .name = "resize", .n_inputs = 1};
    node.p.resize = (nn_resize_params){.out_h = 3, .out_w = 3, .half_pixel_centers = 1};
    nn_view in[1] = {VIEW(xc, 2, 2, 2, 2)};
    nn_view out = VIEW(yc, 2, 3, 3, 2);
    run_ok(&node, in, &out);
    for (int n = 0; n < 2; n++)
        for (int c = 0; c < 2; c++) {
            float plane[4], want[9];
            for (int i = 0; i < 4; i++)
                plane[i] = xc[(n * 4 + i) * 2 + c];
            resize_run(plane, 2, 2, 3, 3, 0, 1, want);
            for (int i = 0; i < 9; i++)
                assert_true(yc[(n * 9 + i) * 2 + c] == want[i]);
        }
}

/* TensorFlow's documented examples for DepthToSpace (block 2, DCR):
 *   [1,1,1,4] [1,2,3,4] -> [1,2,2,1] [[1,2],[3,4]];
 *   [1,1,1,12] 1..12 -> [1,2,2,3] [[[1,2,3],[4,5,6]],[[7,8,9],[10,11,12]]];
 *   [1,2,2,4] [[[1,2,3,4],[5,6,7,8]],[[9,10,11,12],[13,14,15,16]]] -> [1,4,4,1]
 *       [[1,2,5,6],[3,4,7,8],[9,10,13,14],[11,12,15,16]]. */
static void test_depth_to_space(void **state)
{
    (void)state;
    float x[16], y[16];
    for (int i = 0; i < 16; i++)
        x[i] = (float)(i + 1);
    nn_node node = {.op = NN_OP_DEPTH_TO_SPACE, .name = "d2s", .n_inputs = 1};
    node.p.d2s.block = 2;

    nn_view in[1] = {VIEW(x, 1, 1, 1, 4)};
    nn_view out = VIEW(y, 1, 2, 2, 1);
    run_ok(&node, in, &out);
    check_close(y, ((float[]){1, 2, 3, 4}), 4, 0);

    in[0] = VIEW(x, 1, 1, 1, 12);
    out = VIEW(y, 1, 2, 2, 3);
    run_ok(&node, in, &out);
    check_close(y, ((float[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}), 12, 0);

    in[0] = VIEW(x, 1, 2, 2, 4);
    out = VIEW(y, 1, 4, 4, 1);
    run_ok(&node, in, &out);
    check_close(y, ((float[]){1, 2, 5, 6, 3, 4, 7, 8, 9, 10, 13, 14, 11, 12, 15, 16}), 16, 0);

    /* Block 3, batch 2, checked against the defining formula. */
    float bx[2 * 2 * 1 * 18], by[2 * 6 * 3 * 2];
    for (int i = 0; i < COUNT(bx); i++)
        bx[i] = (float)i;
    node.p.d2s.block = 3;
    in[0] = VIEW(bx, 2, 2, 1, 18);
    out = VIEW(by, 2, 6, 3, 2);
    run_ok(&node, in, &out);
    for (int n = 0; n < 2; n++)
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++)
                    for (int c = 0; c < 2; c++) {
                        float got = by[((n * 6 + h * 3 + i) * 3 + j) * 2 + c];
                        assert_true(got == bx[(n * 2 + h) * 18 + (i * 3 + j) * 2 + c]);
                    }
}

/* --- errors ------------------------------------------------------------------------------- */

static void test_errors(void **state)
{
    (void)state;
    float x[9] = {0}, w[9] = {0}, y[16];
    nn_node node = {.op = NN_OP_CONV2D, .name = "bad_conv", .n_inputs = 2};
    node.p.conv = (nn_conv_params){.kernel_h = 3,
                                   .kernel_w = 3,
                                   .stride_h = 1,
                                   .stride_w = 1,
                                   .dilation_h = 1,
                                   .dilation_w = 1};
    nn_view in[4] = {VIEW(x, 1, 3, 3, 1), VIEW(w, 3, 3, 1, 1)};
    nn_view out = VIEW(y, 1, 3, 3, 1); /* VALID 3x3 on 3x3 gives 1x1 */
    assert_int_equal(nn_ref_run(NULL, &node, in, &out), BASE_ERR_INVALID);
    assert_non_null(strstr(base_error_message(), "bad_conv"));
    assert_non_null(strstr(base_error_message(), "[1,3,3,1]"));

    /* Fused PReLU without its slope input. */
    out = VIEW(y, 1, 1, 1, 1);
    node.p.conv.act.kind = NN_ACT_PRELU;
    assert_int_equal(nn_ref_run(NULL, &node, in, &out), BASE_ERR_INVALID);
    /* Slope of the wrong size. */
    float slope[2] = {0};
    node.n_inputs = 4;
    in[2] = (nn_view){{0}, NULL};
    in[3] = VIEW(slope, 2);
    assert_int_equal(nn_ref_run(NULL, &node, in, &out), BASE_ERR_INVALID);

    /* Shapes that do not broadcast. */
    nn_node add = binary_node(NN_BINARY_ADD);
    nn_view bin[2] = {VIEW(x, 1, 3), VIEW(w, 1, 2)};
    nn_view bout = VIEW(y, 1, 3);
    assert_int_equal(nn_ref_run(NULL, &add, bin, &bout), BASE_ERR_INVALID);
    assert_non_null(strstr(base_error_message(), "[1,2]"));
    /* PReLU fused into a binary op is not a thing. */
    add.p.binary.act.kind = NN_ACT_PRELU;
    nn_view ok_in[2] = {VIEW(x, 1, 3), VIEW(w, 1, 3)};
    assert_int_equal(nn_ref_run(NULL, &add, ok_in, &bout), BASE_ERR_UNSUPPORTED);

    /* Reduce whose output matches neither layout. */
    nn_node red = {.op = NN_OP_REDUCE, .name = "bad_reduce", .n_inputs = 1};
    red.p.reduce = (nn_reduce_params){.kind = NN_REDUCE_SUM, .axes = 1u << 1};
    nn_view rin[1] = {VIEW(x, 1, 3, 3)};
    nn_view rout = VIEW(y, 1, 1, 1);
    assert_int_equal(nn_ref_run(NULL, &red, rin, &rout), BASE_ERR_INVALID);
    /* An axis beyond the rank. */
    red.p.reduce.axes = 1u << 3;
    rout = VIEW(y, 1, 3, 3);
    assert_int_equal(nn_ref_run(NULL, &red, rin, &rout), BASE_ERR_INVALID);

    /* Unknown op. */
    nn_node unknown = {.op = NN_OP_COUNT, .name = "what", .n_inputs = 1};
    assert_int_equal(nn_ref_run(NULL, &unknown, rin, &rout), BASE_ERR_UNSUPPORTED);
    /* A missing input. */
    nn_node fc = {.op = NN_OP_FULLY_CONNECTED, .name = "fc", .n_inputs = 1};
    nn_view fout = VIEW(y, 1, 1);
    assert_int_equal(nn_ref_run(NULL, &fc, rin, &fout), BASE_ERR_INVALID);
    /* Depth to space with channels not divisible by block^2. */
    nn_node d2s = {.op = NN_OP_DEPTH_TO_SPACE, .name = "d2s", .n_inputs = 1};
    d2s.p.d2s.block = 2;
    nn_view din[1] = {VIEW(x, 1, 1, 1, 3)};
    nn_view dout = VIEW(y, 1, 2, 2, 1);
    assert_int_equal(nn_ref_run(NULL, &d2s, din, &dout), BASE_ERR_INVALID);
}

/* A MobileNet-sized layer pair must run in well under a second (this backend is the oracle
 * for whole 224x224 models). */
static void test_conv_speed(void **state)
{
    (void)state;
    static float x[112 * 112 * 32], w3[3 * 3 * 32], w1[32 * 64], t[112 * 112 * 32],
        y[112 * 112 * 64];
    fill_rnd(x, COUNT(x));
    fill_rnd(w3, COUNT(w3));
    fill_rnd(w1, COUNT(w1));
    conv_case dk = {.N = 1,
                    .H = 112,
                    .W = 112,
                    .C = 32,
                    .KH = 3,
                    .KW = 3,
                    .M = 1,
                    .depthwise = 1,
                    .sh = 1,
                    .sw = 1,
                    .dh = 1,
                    .dw = 1,
                    .pt = 1,
                    .pb = 1,
                    .pl = 1,
                    .pr = 1};
    conv_case pk = {.N = 1,
                    .H = 112,
                    .W = 112,
                    .C = 32,
                    .KH = 1,
                    .KW = 1,
                    .M = 64,
                    .sh = 1,
                    .sw = 1,
                    .dh = 1,
                    .dw = 1};
    nn_node dnode = conv_node(&dk, 0), pnode = conv_node(&pk, 0);
    nn_view din[2] = {VIEW(x, 1, 112, 112, 32), VIEW(w3, 3, 3, 32, 1)};
    nn_view dout = VIEW(t, 1, 112, 112, 32);
    nn_view pin[2] = {VIEW(t, 1, 112, 112, 32), VIEW(w1, 1, 1, 32, 64)};
    nn_view pout = VIEW(y, 1, 112, 112, 64);
    uint64_t t0 = base_now_ns();
    run_ok(&dnode, din, &dout);
    run_ok(&pnode, pin, &pout);
    double ms = (double)(base_now_ns() - t0) / 1e6;
    fprintf(stderr, "dw3x3 + pw 32->64 at 112x112: %.1f ms\n", ms);
    /* Generous for sanitizer builds; the point is to catch an accidentally quadratic loop. */
    assert_true(ms < 5000);
    /* Spot-check one output of the pointwise conv. */
    double s = 0;
    for (int c = 0; c < 32; c++)
        s += (double)t[(50 * 112 + 60) * 32 + c] * w1[c * 64 + 7];
    check_close_d(&y[(50 * 112 + 60) * 64 + 7], &s, 1, 1e-5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_filter_orientation),
        cmocka_unit_test(test_conv_channels_and_bias),
        cmocka_unit_test(test_conv_same_stride2),
        cmocka_unit_test(test_depthwise_multiplier2),
        cmocka_unit_test(test_conv_dilation2),
        cmocka_unit_test(test_conv_fused_activations),
        cmocka_unit_test(test_fully_connected),
        cmocka_unit_test(test_binary_broadcast),
        cmocka_unit_test(test_binary_kinds),
        cmocka_unit_test(test_unary_kinds),
        cmocka_unit_test(test_prelu_op),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_pool_padding),
        cmocka_unit_test(test_reduce),
        cmocka_unit_test(test_pad),
        cmocka_unit_test(test_reshape),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_slice),
        cmocka_unit_test(test_resize_bilinear),
        cmocka_unit_test(test_depth_to_space),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_conv_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
