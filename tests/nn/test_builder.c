/*
 * The builder API and weights manifests: a network defined in C runs on both backends with
 * the same results as a direct computation, and face-api manifests (uint8-quantised, no graph)
 * load with TF.js's dequantisation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "base/base.h"
#include "nn/nn.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* conv 3x3 stride 2 SAME (1->2 channels, relu) -> depthwise 3x3 -> mean over H,W -> fc 2->3 ->
 * softmax, on a 5x5 single-channel input; checked against a direct computation in double. */
static void test_builder_network(void **state)
{
    (void)state;
    float w1[9 * 2], b1[2] = {0.1f, -0.2f}, dw[9 * 2], fc[2 * 3] = {1, -1, 0.5f, 0.25f, 2, -3},
                     fb[3] = {0, 0.1f, 0};
    for (int i = 0; i < 18; i++)
        w1[i] = (float)((i * 7) % 11 - 5) / 10.0f;
    for (int i = 0; i < 18; i++)
        dw[i] = (float)((i * 5) % 7 - 3) / 6.0f;
    for (int mode = 0; mode < 2; mode++) {
        nn_builder *b = nn_builder_create();
        assert_non_null(b);
        int64_t d1[4] = {3, 3, 1, 2}, db[1] = {2}, d2[4] = {3, 3, 2, 1}, df[2] = {2, 3},
                dfb[1] = {3};
        int x = nn_builder_input(b, "x", 5, 5, 1);
        int y = nn_builder_conv2d(b, x, nn_builder_constant(b, "w1", 4, d1, w1),
                                  nn_builder_constant(b, "b1", 1, db, b1), 2, NN_PADDING_SAME,
                                  NN_ACTIVATION_RELU);
        y = nn_builder_depthwise_conv2d(b, y, nn_builder_constant(b, "dw", 4, d2, dw), -1, 1,
                                        NN_PADDING_SAME, NN_ACTIVATION_NONE);
        y = nn_builder_mean(b, y, (1 << 1) | (1 << 2), 0);
        y = nn_builder_fully_connected(b, y, nn_builder_constant(b, "fc", 2, df, fc),
                                       nn_builder_constant(b, "fb", 1, dfb, fb),
                                       NN_ACTIVATION_NONE);
        y = nn_builder_softmax(b, y);
        assert_true(nn_builder_output(b, y, "probs") >= 0);
        nn_model *m = NULL;
        int rc = nn_model_from_builder(b, NULL, &m);
        if (rc) fail_msg("%s", base_error_message());
        nn_context *ctx = NULL;
        nn_context_options co = {.max_batch = 2,
                                 .backend = mode ? NN_BACKEND_REFERENCE : NN_BACKEND_AUTO};
        assert_int_equal(nn_context_create(m, &co, &ctx), 0);
        float *in = nn_context_input(ctx, 0);
        for (int i = 0; i < 50; i++)
            in[i] = (float)((i * 13) % 17) / 17.0f - 0.3f;
        assert_int_equal(nn_context_run(ctx, 2), 0);
        nn_io_info info;
        const float *out = nn_context_output(ctx, 0, &info);
        assert_int_equal(info.rank, 2);
        assert_int_equal(info.dim[0], 2);
        assert_int_equal(info.dim[1], 3);
        for (int n = 0; n < 2; n++) {
            /* Direct computation: SAME for 5 -> 3 with stride 2 pads 1 on each side. */
            double c1[3][3][2], mean[2] = {0, 0}, logits[3], mx = -1e30, sum = 0;
            const float *xin = in + n * 25;
            for (int oy = 0; oy < 3; oy++)
                for (int ox = 0; ox < 3; ox++)
                    for (int co2 = 0; co2 < 2; co2++) {
                        double acc = b1[co2];
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++) {
                                int iy = oy * 2 + ky - 1, ix = ox * 2 + kx - 1;
                                if (iy < 0 || iy >= 5 || ix < 0 || ix >= 5) continue;
                                acc += xin[iy * 5 + ix] * w1[(ky * 3 + kx) * 2 + co2];
                            }
                        c1[oy][ox][co2] = acc > 0 ? acc : 0;
                    }
            for (int oy = 0; oy < 3; oy++)
                for (int ox = 0; ox < 3; ox++)
                    for (int c = 0; c < 2; c++) {
                        double acc = 0;
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++) {
                                int iy = oy + ky - 1, ix = ox + kx - 1;
                                if (iy < 0 || iy >= 3 || ix < 0 || ix >= 3) continue;
                                acc += c1[iy][ix][c] * dw[(ky * 3 + kx) * 2 + c];
                            }
                        mean[c] += acc / 9;
                    }
            for (int j = 0; j < 3; j++) {
                logits[j] = mean[0] * fc[j] + mean[1] * fc[3 + j] + fb[j];
                if (logits[j] > mx) mx = logits[j];
            }
            for (int j = 0; j < 3; j++)
                sum += exp(logits[j] - mx);
            for (int j = 0; j < 3; j++)
                assert_float_equal(out[n * 3 + j], exp(logits[j] - mx) / sum, 1e-5);
        }
        nn_context_destroy(ctx);
        nn_model_destroy(m);
    }
}

static void test_builder_errors_propagate(void **state)
{
    (void)state;
    nn_builder *b = nn_builder_create();
    int x = nn_builder_input(b, "x", 4, 4, 3);
    int64_t d[4] = {3, 3, 2, 8}; /* 2 input channels for a 3-channel input */
    float w[3 * 3 * 2 * 8] = {0};
    int y = nn_builder_conv2d(b, x, nn_builder_constant(b, "w", 4, d, w), -1, 1, NN_PADDING_SAME,
                              NN_ACTIVATION_NONE);
    assert_true(y < 0);
    assert_non_null(strstr(base_error_message(), "does not fit"));
    /* Later calls fail with the same code; finishing reports it and frees everything. */
    assert_int_equal(nn_builder_softmax(b, y), y);
    nn_model *m = NULL;
    assert_int_equal(nn_model_from_builder(b, NULL, &m), y);
    assert_null(m);
}

static void test_faceapi_manifest_dequantisation(void **state)
{
    (void)state;
    const char *path = "models/faceapi/face_expression_model-weights_manifest.json";
    if (access(path, R_OK) != 0) skip();
    nn_weights *w = NULL;
    int rc = nn_weights_load_tfjs(path, NULL, &w);
    if (rc) fail_msg("%s", base_error_message());
    int rank = 0;
    int64_t dims[6];
    const float *f = nn_weights_get(w, "dense0/conv0/filters", &rank, dims);
    assert_non_null(f);
    assert_int_equal(rank, 4);
    assert_int_equal(dims[0], 3);
    assert_int_equal(dims[3], 32);
    /* uint8-quantised: every value is min + q * scale for an integer q in 0..255. */
    float lo = f[0], hi = f[0];
    for (int i = 0; i < 3 * 3 * 3 * 32; i++) {
        if (f[i] < lo) lo = f[i];
        if (f[i] > hi) hi = f[i];
    }
    double scale = (hi - lo) / 255.0;
    for (int i = 0; i < 3 * 3 * 3 * 32; i++) {
        double q = (f[i] - lo) / scale;
        assert_true(fabs(q - round(q)) < 1e-3);
    }
    assert_null(nn_weights_get(w, "no/such/weight", NULL, NULL));
    nn_weights_destroy(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builder_network),
        cmocka_unit_test(test_builder_errors_propagate),
        cmocka_unit_test(test_faceapi_manifest_dequantisation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
