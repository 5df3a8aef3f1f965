/*
 * Every model of the pack against TF.js: the golden outputs in tests/nn/golden/ were computed
 * by TF.js (tools/golden/make-golden.mjs) on a seeded random tensor and a real face photo.
 * Both backends must match: max abs error <= 1e-4 * (1 + max|ref|); embeddings cosine >= 0.99999.
 * Also checks batch > 1 gives each element the same result as batch 1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "base/base.h"
#include "golden.h"
#include "nn/nn.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Compares all outputs of the last run (batch element `elem`) with a golden file. */
static void compare_outputs(const char *model, const char *input, nn_context *ctx,
                            const nn_model *m, int elem, const char *backend)
{
    char path[512];
    snprintf(path, sizeof path, "tests/nn/golden/%s.%s.gold", model, input);
    golden_file gf;
    assert_int_equal(golden_read(path, &gf), 0);
    assert_int_equal(gf.n, nn_model_output_count(m));
    for (int i = 0; i < gf.n; i++) {
        const golden_output *ref = &gf.out[i];
        int idx = nn_model_output_index(m, ref->name);
        if (idx < 0)
            fail_msg("%s: output %s of the golden is not a model output", model, ref->name);
        nn_io_info info;
        const float *got = nn_context_output(ctx, idx, &info);
        size_t per = 1;
        for (int d = 1; d < info.rank; d++)
            per *= (size_t)info.dim[d];
        assert_int_equal(per * 1, ref->count);
        double err, mref, cos;
        assert_int_equal(
            golden_compare(got + per * (size_t)elem, ref->data, ref->count, &err, &mref, &cos), 0);
        double tol = 1e-4 * (1 + mref);
        int is_embedding = !strcmp(model, "mobilefacenet") || !strcmp(model, "mobileface") ||
                           (!strcmp(model, "faceres") && strstr(ref->name, "Mean"));
        printf("  %-24s %-7s %-6s %-22s max_err %.3g (tol %.3g) cos %.8f\n", model, backend, input,
               ref->name, err, tol, cos);
        if (err > tol)
            fail_msg("%s/%s/%s: output %s max abs error %g > %g", model, backend, input, ref->name,
                     err, tol);
        if (is_embedding && cos < 0.99999)
            fail_msg("%s/%s/%s: embedding %s cosine %.8f < 0.99999", model, backend, input,
                     ref->name, cos);
    }
    golden_free(&gf);
}

static void run_model(const char *model, nn_backend backend)
{
    char path[512];
    snprintf(path, sizeof path, "models/human/%s.json", model);
    nn_model *m = NULL;
    int rc = nn_model_load_tfjs(path, NULL, &m);
    if (rc) fail_msg("loading %s: %s", path, base_error_message());
    nn_io_info in;
    assert_int_equal(nn_model_input_info(m, 0, &in), 0);
    assert_int_equal(in.rank, 4);
    int h = (int)in.dim[1], w = (int)in.dim[2], c = (int)in.dim[3];
    size_t per = (size_t)h * w * c;
    /* Batch 3: random, face, random; each element must match its golden. */
    nn_context *ctx = NULL;
    /* Two intra-op threads on the XNNPACK path: the pooled kernels must give the same results. */
    nn_context_options co = {
        .max_batch = 3, .threads = backend == NN_BACKEND_AUTO ? 2 : 1, .backend = backend};
    rc = nn_context_create(m, &co, &ctx);
    if (rc) fail_msg("context for %s: %s", model, base_error_message());
    float *x = nn_context_input(ctx, 0);
    const char *bname = backend == NN_BACKEND_REFERENCE ? "ref" : "auto";
    for (int k = 0; k < 2; k++) {
        const char *input = k ? "face" : "random";
        assert_int_equal(golden_input(input, "tests/nn/golden/face256.rgb", h, w, c, x), 0);
        rc = nn_context_run(ctx, 1);
        if (rc) fail_msg("run %s: %s", model, base_error_message());
        compare_outputs(model, input, ctx, m, 0, bname);
    }
    /* Batch 3 with each schedule: the automatic one (the default), image by image, and as one
     * whole batch. */
    static const nn_schedule schedules[] = {NN_SCHEDULE_AUTO, NN_SCHEDULE_PER_IMAGE,
                                            NN_SCHEDULE_WHOLE_BATCH};
    for (int si = 0; si < 3; si++) {
        if (si) {
            nn_context_destroy(ctx);
            co.schedule = schedules[si];
            rc = nn_context_create(m, &co, &ctx);
            if (rc) fail_msg("context for %s: %s", model, base_error_message());
            x = nn_context_input(ctx, 0);
        }
        assert_int_equal(golden_input("random", NULL, h, w, c, x), 0);
        assert_int_equal(golden_input("face", "tests/nn/golden/face256.rgb", h, w, c, x + per), 0);
        assert_int_equal(golden_input("random", NULL, h, w, c, x + 2 * per), 0);
        rc = nn_context_run(ctx, 3);
        if (rc) fail_msg("run %s batch 3: %s", model, base_error_message());
        compare_outputs(model, "random", ctx, m, 0, bname);
        compare_outputs(model, "face", ctx, m, 1, bname);
        compare_outputs(model, "random", ctx, m, 2, bname);
    }
    nn_context_destroy(ctx);
    nn_model_destroy(m);
}

static void test_reference_backend(void **state)
{
    (void)state;
    if (!golden_models_present()) skip();
    for (size_t i = 0; i < GOLDEN_N_MODELS; i++)
        run_model(golden_models[i], NN_BACKEND_REFERENCE);
}

static void test_xnnpack_backend(void **state)
{
    (void)state;
    if (!golden_models_present()) skip();
    for (size_t i = 0; i < GOLDEN_N_MODELS; i++)
        run_model(golden_models[i], NN_BACKEND_AUTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xnnpack_backend),
        cmocka_unit_test(test_reference_backend),
    };
    if (!golden_models_present())
        printf("models/ is missing: run tools/fetch-models (make test does)\n");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
