/*
 * face-api's SSD-MobileNetV1, built in C (src/face/ssd.c), against TF.js: the golden outputs in
 * tests/face/golden/ssd_mobilenetv1.face.gold were computed by tools/golden/make-golden-ssd.mjs
 * (face-api's layers written with TF.js ops, TF.js CPU backend) on the golden face photo.
 * Then the detector end to end on the model pack's group photos. Skips when models/ is absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "face/face_tests.h"

#include "base/base.h"
#include "face/face_internal.h"
#include "nn/golden.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MANIFEST "models/faceapi/ssd_mobilenetv1_model-weights_manifest.json"
#define GOLDEN "tests/face/golden/ssd_mobilenetv1.face.gold"

static int have_models(void)
{
    return access(MANIFEST, R_OK) == 0 && access("models/human/blazeface-back.json", R_OK) == 0;
}

#define NEED_MODELS() SKIP_UNLESS(have_models(), "models/ not present (make models)")

static const golden_output *find(const golden_file *gf, const char *name)
{
    for (int i = 0; i < gf->n; i++)
        if (strcmp(gf->out[i].name, name) == 0) return &gf->out[i];
    fail_msg("golden output %s missing", name);
    return NULL;
}

static void check_close(const char *what, const float *got, const golden_output *ref, double tol)
{
    double err, mref, cos;
    assert_int_equal(golden_compare(got, ref->data, ref->count, &err, &mref, &cos), 0);
    printf("%s: max abs err %.3g (max |ref| %.3g), cosine %.7f\n", what, err, mref, cos);
    if (!(err <= tol * (1.0 + mref)) || !(cos > 0.99999))
        fail_msg("%s: max abs err %g, cosine %.7f", what, err, cos);
}

/* The network's outputs and the box decoding against TF.js, on both backends. */
static void test_ssd_golden(void **state)
{
    (void)state;
    NEED_MODELS();
    nn_model *m = NULL;
    float(*anchors)[4] = NULL;
    assert_int_equal(face_ssd_load(MANIFEST, &m, &anchors), 0);
    golden_file gf;
    assert_int_equal(golden_read(GOLDEN, &gf), 0);
    const golden_output *g_boxes = find(&gf, "boxes"), *g_classes = find(&gf, "classes");
    const golden_output *g_decoded = find(&gf, "decoded"), *g_scores = find(&gf, "scores");
    assert_int_equal((int)g_boxes->count, FACE_SSD_ANCHORS * 4);
    assert_int_equal((int)g_classes->count, FACE_SSD_ANCHORS * 3);

    for (int backend = 0; backend < 2; backend++) {
        nn_context_options co = {.max_batch = 1,
                                 .backend = backend ? NN_BACKEND_REFERENCE : NN_BACKEND_AUTO};
        nn_context *c = NULL;
        assert_int_equal(nn_context_create(m, &co, &c), 0);
        float *x = nn_context_input(c, 0);
        const size_t n = (size_t)FACE_SSD_SIZE * FACE_SSD_SIZE * 3;
        assert_int_equal(
            golden_input("face", "tests/nn/golden/face256.rgb", FACE_SSD_SIZE, FACE_SSD_SIZE, 3, x),
            0);
        for (size_t i = 0; i < n; i++)
            x[i] = x[i] * 2.0f - 1.0f; /* as the script: [-1, 1] */
        assert_int_equal(nn_context_run(c, 1), 0);
        const float *boxes = nn_context_output(c, nn_model_output_index(m, "boxes"), NULL);
        const float *classes = nn_context_output(c, nn_model_output_index(m, "classes"), NULL);
        check_close(backend ? "boxes (reference)" : "boxes", boxes, g_boxes, 2e-3);
        check_close(backend ? "classes (reference)" : "classes", classes, g_classes, 2e-3);

        /* decoding from TF.js's own encodings, so only the decoding is tested here */
        double worst = 0;
        int best = 0;
        for (int i = 0; i < FACE_SSD_ANCHORS; i++) {
            float box[4];
            face_ssd_decode_box(anchors[i], g_boxes->data + 4 * i, box);
            for (int k = 0; k < 4; k++) {
                double d = fabs(box[k] - g_decoded->data[4 * i + k]);
                if (d > worst) worst = d;
            }
            if (classes[3 * i + 1] > classes[3 * best + 1]) best = i;
        }
        if (worst > 1e-5) fail_msg("decoded boxes differ from TF.js by %g", worst);
        /* the golden face fills the frame: one confident detection over most of it */
        float score = 1.0f / (1.0f + expf(-classes[3 * best + 1]));
        assert_true(fabsf(score - g_scores->data[best]) < 1e-3f);
        assert_true(score > 0.9f);
        float box[4];
        face_ssd_decode_box(anchors[best], boxes + 4 * best, box);
        assert_true(box[2] - box[0] > 0.6f && box[3] - box[1] > 0.6f);
        nn_context_destroy(c);
    }
    golden_free(&gf);
    free(anchors);
    nn_model_destroy(m);
}

/* The whole detector (face_analyze with FACE_DETECTOR_SSD_MOBILENET) on group photos: at the
 * default threshold it finds the faces of the model pack's samples (counted by eye; sample 5's
 * fifth face is small and turned, so 4 or 5), and every box holds a BlazeFace face. */
static void test_ssd_samples(void **state)
{
    (void)state;
    NEED_MODELS();
    face_models_options mo = {.load = FACE_STAGE_DETECT, .detector = FACE_DETECTOR_SSD_MOBILENET};
    face_models *models = NULL;
    face_context *ctx = NULL;
    assert_int_equal(face_models_load(&mo, &models), 0);
    assert_int_equal(face_context_create(models, 1, &ctx), 0);
    static const int expected[6][2] = {{3, 3}, {3, 3}, {3, 3}, {4, 4}, {4, 5}, {4, 4}};
    for (int s = 0; s < 6; s++) {
        char path[64];
        snprintf(path, sizeof path, "models/samples/sample%d.jpg", s + 1);
        char *data = NULL;
        size_t len = 0;
        assert_int_equal(base_file_read(path, 1 << 26, &data, &len), 0);
        face_result ssd, blaze;
        face_options o = {.detector = FACE_DETECTOR_SSD_MOBILENET};
        assert_int_equal(face_analyze_bytes(ctx, (const uint8_t *)data, len, &o, &ssd), 0);
        o.detector = FACE_DETECTOR_BLAZEFACE;
        assert_int_equal(face_analyze_bytes(ctx, (const uint8_t *)data, len, &o, &blaze), 0);
        printf("%s: ssd %d faces, blazeface %d\n", path, ssd.n_faces, blaze.n_faces);
        if (ssd.n_faces < expected[s][0] || ssd.n_faces > expected[s][1])
            fail_msg("%s: %d faces, expected %d..%d", path, ssd.n_faces, expected[s][0],
                     expected[s][1]);
        /* each SSD face overlaps a BlazeFace face well: the same faces, boxes in one convention */
        for (int i = 0; i < ssd.n_faces; i++) {
            const face_info *a = &ssd.faces[i];
            float best = 0;
            for (int j = 0; j < blaze.n_faces; j++) {
                const face_info *b = &blaze.faces[j];
                face_box ba = {.x = a->x, .y = a->y, .w = a->w, .h = a->h};
                face_box bb = {.x = b->x, .y = b->y, .w = b->w, .h = b->h};
                float v = face_iou(&ba, &bb);
                if (v > best) best = v;
            }
            if (best < 0.5f)
                fail_msg("%s: SSD face %d overlaps BlazeFace's by IoU %.2f", path, i, best);
            assert_true(a->score >= 0.5f && a->score <= 1.0f);
        }
        face_result_free(&ssd);
        face_result_free(&blaze);
        free(data);
    }
    face_context_destroy(ctx);
    face_models_destroy(models);
}

/* Without the SSD loaded, asking for it is a clear error, not a crash. */
static void test_ssd_not_loaded(void **state)
{
    (void)state;
    NEED_MODELS();
    face_models_options mo = {.load = FACE_STAGE_DETECT};
    face_models *models = NULL;
    face_context *ctx = NULL;
    assert_int_equal(face_models_load(&mo, &models), 0);
    assert_int_equal(face_context_create(models, 1, &ctx), 0);
    img_image im = {0};
    assert_int_equal(img_alloc(&im, 64, 48, 3), 0);
    face_options o = {.detector = FACE_DETECTOR_SSD_MOBILENET};
    face_result r;
    assert_int_equal(face_analyze(ctx, &im, &o, &r), BASE_ERR_INVALID);
    img_free(&im);
    face_context_destroy(ctx);
    face_models_destroy(models);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ssd_golden),
        cmocka_unit_test(test_ssd_samples),
        cmocka_unit_test(test_ssd_not_loaded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
