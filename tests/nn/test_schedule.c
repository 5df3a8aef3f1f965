/*
 * Schedules: a batch gives the same outputs however its layers are split between image-by-image
 * and whole-batch execution. Each model of the pack runs a batch of 3 different inputs as one
 * whole batch (checked against TF.js by test_golden), then image by image, with the automatic
 * schedule, and with forced mixtures (alternating nodes, blocks, seeded random) that put tensors
 * across every kind of boundary: into and out of image-by-image segments, between two such
 * segments, graph inputs and outputs on either side. A wrong copy, a buffer planned over a live
 * one, or a stale operator setup changes some output.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "base/base.h"
#include "golden.h"
#include "nn/model.h"
#include "nn/nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BATCH 3
#define MAX_OUTPUTS 8

typedef struct outputs {
    int n;
    float *data[MAX_OUTPUTS];
    size_t len[MAX_OUTPUTS];
} outputs;

static void outputs_free(outputs *o)
{
    for (int i = 0; i < o->n; i++)
        free(o->data[i]);
    memset(o, 0, sizeof *o);
}

/* Fills the batch: random, face, random with a different seed (three different images). */
static void fill(const nn_model *m, float *x)
{
    nn_io_info in;
    assert_int_equal(nn_model_input_info(m, 0, &in), 0);
    int h = (int)in.dim[1], w = (int)in.dim[2], c = (int)in.dim[3];
    size_t per = (size_t)h * w * c;
    assert_int_equal(golden_input("random", NULL, h, w, c, x), 0);
    assert_int_equal(golden_input("face", "tests/nn/golden/face256.rgb", h, w, c, x + per), 0);
    for (size_t i = 0; i < per; i++)
        x[2 * per + i] = 1.0f - x[i] * 0.5f;
}

/* Runs the batch with the given schedule (per_image NULL: the options' own) and keeps every
 * output; `also_one` first runs batch 1 so the batch-space operators are set up again. */
static void run(const nn_model *m, const nn_context_options *co, const char *per_image,
                int also_one, outputs *o)
{
    nn_context *ctx = NULL;
    int rc = per_image ? nn_context_create_scheduled(m, co, per_image, &ctx)
                       : nn_context_create(m, co, &ctx);
    if (rc) fail_msg("context: %s", base_error_message());
    fill(m, nn_context_input(ctx, 0));
    if (also_one) assert_int_equal(nn_context_run(ctx, 1), 0);
    assert_int_equal(nn_context_run(ctx, BATCH), 0);
    o->n = nn_model_output_count(m);
    assert_true(o->n <= MAX_OUTPUTS);
    for (int k = 0; k < o->n; k++) {
        nn_io_info info;
        const float *y = nn_context_output(ctx, k, &info);
        assert_non_null(y);
        assert_int_equal(info.dim[0], BATCH);
        size_t len = 1;
        for (int d = 0; d < info.rank; d++)
            len *= (size_t)info.dim[d];
        o->len[k] = len;
        o->data[k] = malloc(len * sizeof(float));
        assert_non_null(o->data[k]);
        memcpy(o->data[k], y, len * sizeof(float));
    }
    nn_context_destroy(ctx);
}

static void compare(const char *model, const char *what, const outputs *ref, const outputs *got)
{
    assert_int_equal(ref->n, got->n);
    for (int k = 0; k < ref->n; k++) {
        assert_int_equal(ref->len[k], got->len[k]);
        double max_ref = 0, max_err = 0;
        for (size_t i = 0; i < ref->len[k]; i++) {
            double r = ref->data[k][i], e = fabs(r - got->data[k][i]);
            if (fabs(r) > max_ref) max_ref = fabs(r);
            if (!(e <= max_err)) max_err = e; /* NaN counts as an error */
        }
        /* Kernels may pick other tiles for other row counts: allow rounding, nothing more. */
        if (!(max_err <= 1e-5 * (1 + max_ref)))
            fail_msg("%s, %s schedule: output %d differs from the whole batch by %g (max |ref| %g)",
                     model, what, k, max_err, max_ref);
    }
}

static void test_schedules_agree(void **state)
{
    (void)state;
    if (!golden_models_present()) skip();
    for (size_t mi = 0; mi < GOLDEN_N_MODELS; mi++) {
        char path[256];
        snprintf(path, sizeof path, "models/human/%s.json", golden_models[mi]);
        nn_model *m = NULL;
        if (nn_model_load_tfjs(path, NULL, &m)) fail_msg("%s", base_error_message());
        int n = nn_model_graph(m)->n_nodes;
        char *mode = malloc((size_t)n + 1);
        assert_non_null(mode);

        nn_context_options co = {.max_batch = 4, .schedule = NN_SCHEDULE_WHOLE_BATCH};
        outputs ref = {0}, got = {0};
        run(m, &co, NULL, 0, &ref);

        co.schedule = NN_SCHEDULE_PER_IMAGE;
        run(m, &co, NULL, 0, &got);
        compare(golden_models[mi], "per-image", &ref, &got);
        outputs_free(&got);

        co.schedule = NN_SCHEDULE_AUTO;
        run(m, &co, NULL, 1, &got);
        compare(golden_models[mi], "automatic", &ref, &got);
        outputs_free(&got);

        /* Forced mixtures. */
        struct {
            const char *name;
            int period, phase;
        } patterns[] = {{"alternating", 2, 0},
                        {"alternating from batch", 2, 1},
                        {"blocks of 3", 6, 0},
                        {"blocks of 5", 10, 5}};
        for (size_t p = 0; p < sizeof patterns / sizeof patterns[0]; p++) {
            for (int i = 0; i < n; i++)
                mode[i] =
                    (char)(((i + patterns[p].phase) % patterns[p].period) < patterns[p].period / 2);
            co.schedule = NN_SCHEDULE_AUTO;
            run(m, &co, mode, p & 1, &got);
            compare(golden_models[mi], patterns[p].name, &ref, &got);
            outputs_free(&got);
        }
        uint32_t s = 12345u + (uint32_t)mi;
        for (int r = 0; r < 2; r++) {
            for (int i = 0; i < n; i++) {
                s = s * 1103515245u + 12345u;
                mode[i] = (char)((s >> 16) & 1);
            }
            run(m, &co, mode, r, &got);
            compare(golden_models[mi], "random", &ref, &got);
            outputs_free(&got);
        }
        outputs_free(&ref);
        free(mode);
        nn_model_destroy(m);
    }
}

/* The automatic schedule splits mobilefacenet: the 112x112 stem image by image (8 images of its
 * activations outgrow any L2), the 1x1x512x512 layer on the 1x1 map (1 MiB of weights for 4 KiB
 * of activations) as one batch; with max_batch 1 there is nothing to split. */
static void test_automatic_schedule_splits(void **state)
{
    (void)state;
    if (!golden_models_present()) skip();
    nn_model *m = NULL;
    if (nn_model_load_tfjs("models/human/mobilefacenet.json", NULL, &m))
        fail_msg("%s", base_error_message());
    const nn_graph *g = nn_model_graph(m);
    int last_conv = -1;
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == NN_OP_CONV2D) last_conv = i;
    assert_true(last_conv > 0);
    nn_context *ctx = NULL;
    nn_context_options co = {.max_batch = 8};
    assert_int_equal(nn_context_create(m, &co, &ctx), 0);
    assert_int_equal(nn_context_node_per_image(ctx, 0), 1);
    assert_int_equal(nn_context_node_per_image(ctx, last_conv), 0);
    nn_context_destroy(ctx);
    co.max_batch = 1;
    assert_int_equal(nn_context_create(m, &co, &ctx), 0);
    for (int i = 0; i < g->n_nodes; i++)
        assert_int_equal(nn_context_node_per_image(ctx, i), 0);
    nn_context_destroy(ctx);
    nn_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_automatic_schedule_splits),
        cmocka_unit_test(test_schedules_agree),
    };
    if (!golden_models_present())
        printf("models/ is missing: run tools/fetch-models (make test does)\n");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
