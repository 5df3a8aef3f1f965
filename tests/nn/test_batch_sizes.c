/*
 * Batch sizes: an image gets the same outputs, bit for bit, whatever batch it runs in. For each
 * model, images 0..b-1 (all different) run as one batch for every b of 1..MAX_BATCH in one
 * context of max_batch MAX_BATCH with the automatic schedule (early layers image by image, late
 * ones as one batch), first in ascending order, then descending, so that every run changes the
 * batch and the operators are set up again; each image's outputs are compared with a run of that
 * image alone in a context of max_batch 1 (every layer in batch space, nothing copied between
 * spaces). The service relies on this: a face gets the same embedding and attributes whether it
 * is analysed alone or in a run with other faces (tests/face/test_batch.c checks the results
 * with tolerances; this checks the engine exactly). A kernel that picked other tiles or another
 * summation order for another row count, a schedule or buffer plan that depended on the batch
 * and got a copy wrong, or a stale operator setup changes some output here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "base/base.h"
#include "golden.h"
#include "nn/nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_BATCH 8
#define MAX_OUTPUTS 8

/* Image k of the set: "random" (k = 0), "face" (k = 1), then blends of the two with weights
 * that differ per image, so no two images of a batch are alike. */
static void fill_images(const nn_model *m, float *x, size_t per)
{
    nn_io_info in;
    assert_int_equal(nn_model_input_info(m, 0, &in), 0);
    int h = (int)in.dim[1], w = (int)in.dim[2], c = (int)in.dim[3];
    assert_int_equal(golden_input("random", NULL, h, w, c, x), 0);
    assert_int_equal(golden_input("face", "tests/nn/golden/face256.rgb", h, w, c, x + per), 0);
    for (int k = 2; k < MAX_BATCH; k++) {
        float t = (float)k / (MAX_BATCH + 1);
        for (size_t i = 0; i < per; i++)
            x[(size_t)k * per + i] = (1 - t) * x[per + i] + t * x[i];
    }
}

static size_t per_image(const nn_io_info *info)
{
    size_t n = 1;
    for (int d = 1; d < info->rank; d++)
        n *= (size_t)info->dim[d];
    return n;
}

static void check_model(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "models/human/%s.json", name);
    nn_model *m = NULL;
    if (nn_model_load_tfjs(path, NULL, &m)) fail_msg("%s", base_error_message());
    assert_int_equal(nn_model_input_count(m), 1);
    int n_out = nn_model_output_count(m);
    assert_true(n_out <= MAX_OUTPUTS);
    nn_io_info in;
    assert_int_equal(nn_model_input_info(m, 0, &in), 0);
    size_t per_in = per_image(&in);
    float *images = malloc((size_t)MAX_BATCH * per_in * sizeof *images);
    assert_non_null(images);
    fill_images(m, images, per_in);

    /* Each image alone. */
    float *alone[MAX_OUTPUTS] = {0};
    size_t per_out[MAX_OUTPUTS];
    nn_context *one = NULL;
    nn_context_options co = {.max_batch = 1};
    if (nn_context_create(m, &co, &one)) fail_msg("%s: context: %s", name, base_error_message());
    for (int k = 0; k < MAX_BATCH; k++) {
        memcpy(nn_context_input(one, 0), images + (size_t)k * per_in, per_in * sizeof(float));
        assert_int_equal(nn_context_run(one, 1), 0);
        for (int o = 0; o < n_out; o++) {
            nn_io_info info;
            const float *y = nn_context_output(one, o, &info);
            assert_non_null(y);
            per_out[o] = per_image(&info);
            if (!alone[o]) alone[o] = malloc((size_t)MAX_BATCH * per_out[o] * sizeof(float));
            assert_non_null(alone[o]);
            memcpy(alone[o] + (size_t)k * per_out[o], y, per_out[o] * sizeof(float));
        }
    }
    nn_context_destroy(one);

    /* Every batch size, up then down, in one context. */
    nn_context *ctx = NULL;
    co.max_batch = MAX_BATCH;
    if (nn_context_create(m, &co, &ctx)) fail_msg("%s: context: %s", name, base_error_message());
    memcpy(nn_context_input(ctx, 0), images, (size_t)MAX_BATCH * per_in * sizeof(float));
    int runs = 0;
    for (int step = 0; step < 2 * MAX_BATCH - 1; step++) {
        int b = step < MAX_BATCH ? step + 1 : 2 * MAX_BATCH - 1 - step;
        assert_int_equal(nn_context_run(ctx, b), 0);
        runs++;
        for (int o = 0; o < n_out; o++) {
            nn_io_info info;
            const float *y = nn_context_output(ctx, o, &info);
            assert_non_null(y);
            assert_int_equal(info.dim[0], b);
            assert_int_equal(per_image(&info), per_out[o]);
            for (int k = 0; k < b; k++) {
                const float *got = y + (size_t)k * per_out[o];
                const float *want = alone[o] + (size_t)k * per_out[o];
                if (!memcmp(got, want, per_out[o] * sizeof(float))) continue;
                double max_err = 0;
                for (size_t i = 0; i < per_out[o]; i++) {
                    double e = fabs((double)got[i] - want[i]);
                    if (!(e <= max_err)) max_err = e; /* NaN counts as an error */
                }
                fail_msg("%s: output %d of image %d in a batch of %d differs from the image "
                         "alone (max |difference| %g)",
                         name, o, k, b, max_err);
            }
        }
    }
    printf("  %s: %d images alone, %d batches of 1..%d, every image bit-identical\n", name,
           MAX_BATCH, runs, MAX_BATCH);
    nn_context_destroy(ctx);
    for (int o = 0; o < n_out; o++)
        free(alone[o]);
    free(images);
    nn_model_destroy(m);
}

static void test_every_batch_size_equals_alone(void **state)
{
    (void)state;
    if (!golden_models_present()) skip();
    for (size_t i = 0; i < GOLDEN_N_MODELS; i++)
        check_model(golden_models[i]);
    check_model("iris"); /* no golden, but a graph model of the pack all the same */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_batch_size_equals_alone),
    };
    if (!golden_models_present())
        printf("models/ is missing: run tools/fetch-models (make test does)\n");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
