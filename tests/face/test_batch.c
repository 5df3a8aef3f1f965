/*
 * The pipeline in two halves (face_analyze_prepare*, face_analyze_finish) on real photos: a
 * face gets the same embedding, attributes and liveness whether its image is analysed alone
 * or its faces are finished in engine runs shared with other images' faces, cut into slices
 * across images, with mixed stages in one call; face_analyze_bytes is prepare + finish;
 * alignment is timed on its own; image limits are checked before decoding; the decision
 * threshold at FAR 1e-3 is the calibrated one; one face per run (batching off) equals runs of 8.
 * Skips when models/ is absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "face/face_tests.h"

#include "base/base.h"
#include "face/face.h"
#include "img/img.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIXTURES "../shared/data/fixtures"
#define MAX_IMAGES 8

static face_models *models;
static face_context *ctx8, *ctx3, *ctx1;

/* Group photos: the model pack's samples, then the shared fixtures when present. */
static const char *const photos[] = {
    "models/samples/sample5.jpg", "models/samples/sample1.jpg", FIXTURES "/group-bbt1.jpg",
    "models/samples/sample3.jpg", FIXTURES "/id-obama-1.jpg",   "models/samples/sample6.jpg",
};

static int setup(void **state)
{
    (void)state;
    if (access("models/human/blazeface-back.json", R_OK) != 0 ||
        access("models/samples/sample5.jpg", R_OK) != 0)
        return 0;
    face_models_options o = {0};
    if (face_models_load(&o, &models) != 0) {
        fprintf(stderr, "face_models_load: %s\n", base_error_message());
        return -1;
    }
    if (face_context_create(models, 8, &ctx8) != 0) return -1;
    if (face_context_create(models, 1, &ctx1) != 0) return -1;
    return face_context_create(models, 3, &ctx3);
}

static int teardown(void **state)
{
    (void)state;
    face_context_destroy(ctx8);
    face_context_destroy(ctx3);
    face_context_destroy(ctx1);
    face_models_destroy(models);
    return 0;
}

#define NEED_MODELS() SKIP_UNLESS(models, "models/ not present (make models)")

typedef struct photo {
    char *data;
    size_t len;
    const char *path;
} photo;

static int load_photos(photo *p)
{
    int n = 0;
    for (size_t i = 0; i < sizeof photos / sizeof photos[0] && n < MAX_IMAGES; i++) {
        if (access(photos[i], R_OK) != 0) continue;
        if (base_file_read(photos[i], 64u << 20, &p[n].data, &p[n].len) != 0)
            fail_msg("%s: %s", photos[i], base_error_message());
        p[n].path = photos[i];
        n++;
    }
    return n;
}

static void free_photos(photo *p, int n)
{
    for (int i = 0; i < n; i++)
        free(p[i].data);
}

/* Everything a face carries, compared: the same face must give the same numbers. */
static void expect_same_face(const face_info *a, const face_info *b, const char *what)
{
    assert_float_equal(a->x, b->x, 1e-4);
    assert_float_equal(a->y, b->y, 1e-4);
    assert_float_equal(a->w, b->w, 1e-4);
    assert_float_equal(a->score, b->score, 1e-6);
    for (int k = 0; k < 5; k++)
        assert_float_equal(a->landmarks5[k].x, b->landmarks5[k].x, 1e-4);
    assert_int_equal(a->embedding_dim, b->embedding_dim);
    double worst = 0;
    for (int k = 0; k < a->embedding_dim; k++)
        worst = fmax(worst, fabs((double)a->embedding[k] - b->embedding[k]));
    if (worst > 1e-5) fail_msg("%s: embeddings differ by %g", what, worst);
    assert_int_equal(a->has_attributes, b->has_attributes);
    if (a->has_attributes) {
        assert_float_equal(a->attributes.age, b->attributes.age, 1e-4);
        assert_float_equal(a->attributes.gender_male, b->attributes.gender_male, 1e-5);
        for (int k = 0; k < FACE_EMOTIONS; k++)
            assert_float_equal(a->attributes.emotion[k], b->attributes.emotion[k], 1e-5);
        assert_float_equal(a->attributes.quality, b->attributes.quality, 1e-5);
        assert_float_equal(a->attributes.sharpness, b->attributes.sharpness, 1e-3);
        assert_float_equal(a->attributes.yaw, b->attributes.yaw, 1e-3);
    }
    assert_int_equal(a->has_liveness, b->has_liveness);
    if (a->has_liveness) {
        assert_float_equal(a->liveness.antispoof, b->liveness.antispoof, 1e-5);
        assert_float_equal(a->liveness.liveness, b->liveness.liveness, 1e-5);
    }
}

/* Image i's stages: every other image wants the embedding only, so one finish call mixes
 * results that need different models. */
static unsigned stages_of(int i)
{
    return i % 2 ? FACE_STAGE_EMBED : FACE_STAGE_ALL;
}

static void test_batched_equals_alone(void **state)
{
    (void)state;
    NEED_MODELS();
    photo p[MAX_IMAGES];
    int n = load_photos(p);
    assert_true(n >= 4);
    face_result alone[MAX_IMAGES], prep[MAX_IMAGES], prep3[MAX_IMAGES];
    int total = 0;
    for (int i = 0; i < n; i++) {
        face_options o = {.stages = stages_of(i)};
        assert_int_equal(
            face_analyze_bytes(ctx8, (const uint8_t *)p[i].data, p[i].len, &o, &alone[i]), 0);
        assert_null(alone[i].pending);
        assert_int_equal(
            face_analyze_prepare_bytes(ctx8, (const uint8_t *)p[i].data, p[i].len, &o, &prep[i]),
            0);
        assert_int_equal(
            face_analyze_prepare_bytes(ctx3, (const uint8_t *)p[i].data, p[i].len, &o, &prep3[i]),
            0);
        assert_int_equal(prep[i].n_faces, alone[i].n_faces);
        assert_int_equal(face_result_pending(&prep[i]), prep[i].n_faces);
        /* prepare alone gives boxes and landmarks but no model outputs yet */
        for (int k = 0; k < prep[i].n_faces; k++) {
            assert_int_equal(prep[i].faces[k].embedding_dim, 0);
            assert_true(prep[i].faces[k].has_landmarks);
        }
        if (prep[i].n_faces > 0) assert_true(prep[i].timing.align_ms > 0);
        total += prep[i].n_faces;
        printf("  %s: %d faces (%s)\n", p[i].path, prep[i].n_faces,
               stages_of(i) == FACE_STAGE_ALL ? "all stages" : "embedding");
    }
    assert_true(total >= 12);

    /* All faces of all images in one call: runs of 8 crops mix images. */
    face_batch_slice all[MAX_IMAGES];
    for (int i = 0; i < n; i++)
        all[i] = (face_batch_slice){.result = &prep[i], .count = prep[i].n_faces};
    assert_int_equal(face_analyze_finish(ctx8, all, n), 0);
    double charged = 0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(face_result_pending(&prep[i]), 0);
        charged += all[i].timing.embed_ms;
        if (prep[i].n_faces) assert_true(all[i].timing.embed_ms > 0);
        for (int k = 0; k < prep[i].n_faces; k++)
            expect_same_face(&alone[i].faces[k], &prep[i].faces[k], "one call over all images");
    }
    assert_true(charged > 0);

    /* Slices cut across images on a context of 3, two faces at a time, in reverse order of
     * images, and a second call on finished faces changes nothing. */
    for (int i = n - 1; i >= 0; i--) {
        for (int first = 0; first < prep3[i].n_faces; first += 2) {
            int count = prep3[i].n_faces - first < 2 ? prep3[i].n_faces - first : 2;
            face_batch_slice sl[2] = {{.result = &prep3[i], .first = first, .count = count},
                                      {.result = &prep3[(i + 1) % n]}};
            assert_int_equal(face_analyze_finish(ctx3, sl, 2), 0);
        }
        assert_int_equal(face_result_pending(&prep3[i]), 0);
        face_batch_slice again = {.result = &prep3[i], .count = prep3[i].n_faces};
        assert_int_equal(face_analyze_finish(ctx3, &again, 1), 0);
        assert_true(again.timing.embed_ms == 0);
        for (int k = 0; k < prep3[i].n_faces; k++)
            expect_same_face(&alone[i].faces[k], &prep3[i].faces[k], "slices of 2 on batch 3");
    }

    /* A slice out of range is refused. */
    face_batch_slice bad = {.result = &prep[0], .count = prep[0].n_faces + 1};
    assert_int_equal(face_analyze_finish(ctx8, &bad, 1), BASE_ERR_INVALID);

    for (int i = 0; i < n; i++) {
        face_result_free(&alone[i]);
        face_result_free(&prep[i]);
        face_result_free(&prep3[i]);
    }
    free_photos(p, n);
}

/* Batching off (one face per engine run, serve's --batch-max 1): every face is one run of its
 * copies (itself and mirrored, FACE_TTA_COPIES), and gets the same numbers as in runs of 8
 * faces (16 images) that mix it with other faces. */
static void test_one_face_per_run(void **state)
{
    (void)state;
    NEED_MODELS();
    photo p[MAX_IMAGES];
    int n = load_photos(p);
    int faces = 0;
    for (int i = 0; i < n && i < 3; i++) {
        face_options o = {.stages = FACE_STAGE_ALL};
        face_result a, b;
        assert_int_equal(face_analyze_bytes(ctx1, (const uint8_t *)p[i].data, p[i].len, &o, &a), 0);
        assert_int_equal(face_analyze_bytes(ctx8, (const uint8_t *)p[i].data, p[i].len, &o, &b), 0);
        assert_int_equal(a.n_faces, b.n_faces);
        for (int k = 0; k < a.n_faces; k++) {
            assert_true(a.faces[k].embedding_dim > 0 && a.faces[k].has_attributes);
            expect_same_face(&a.faces[k], &b.faces[k], "one face per run");
        }
        faces += a.n_faces;
        face_result_free(&a);
        face_result_free(&b);
    }
    printf("  %d faces: one per run as in runs of 8\n", faces);
    assert_true(faces >= 4);
    free_photos(p, n);
}

/* A prepared result freed before it is finished releases its crops (ASan checks the leak). */
static void test_free_unfinished(void **state)
{
    (void)state;
    NEED_MODELS();
    photo p[MAX_IMAGES];
    int n = load_photos(p);
    face_options o = {.stages = FACE_STAGE_ALL};
    face_result r;
    assert_int_equal(face_analyze_prepare_bytes(ctx8, (const uint8_t *)p[0].data, p[0].len, &o, &r),
                     0);
    assert_true(face_result_pending(&r) > 0);
    face_result_free(&r);
    assert_int_equal(face_result_pending(&r), 0);
    /* detection only leaves nothing pending */
    o.stages = FACE_STAGE_DETECT;
    assert_int_equal(face_analyze_prepare_bytes(ctx8, (const uint8_t *)p[0].data, p[0].len, &o, &r),
                     0);
    assert_true(r.n_faces > 0);
    assert_null(r.pending);
    assert_int_equal(face_result_pending(&r), 0);
    face_result_free(&r);
    free_photos(p, n);
}

/* Limits in face_options: a photo over max_pixels or max_bytes is refused before decoding
 * (no size in the result), one within them analyses as before. */
static void test_limits_before_decode(void **state)
{
    (void)state;
    NEED_MODELS();
    photo p[MAX_IMAGES];
    int n = load_photos(p);
    face_options o = {.stages = FACE_STAGE_DETECT, .limits = {.max_pixels = 1000000}};
    face_result r;
    assert_int_equal(face_analyze_bytes(ctx8, (const uint8_t *)p[0].data, p[0].len, &o, &r),
                     BASE_ERR_LIMIT);
    assert_int_equal(r.width, 0);
    assert_non_null(strstr(base_error_message(), "1000000"));
    o.limits = (img_limits){.max_bytes = p[0].len - 1};
    assert_int_equal(face_analyze_bytes(ctx8, (const uint8_t *)p[0].data, p[0].len, &o, &r),
                     BASE_ERR_LIMIT);
    o.limits = (img_limits){.max_pixels = 40000000, .max_bytes = p[0].len};
    assert_int_equal(face_analyze_bytes(ctx8, (const uint8_t *)p[0].data, p[0].len, &o, &r), 0);
    assert_true(r.n_faces > 0);
    face_result_free(&r);
    free_photos(p, n);
}

/* One decision threshold for the CLI and the service: the calibrated FAR 1e-3 one. */
static void test_threshold_at_far(void **state)
{
    (void)state;
    assert_float_equal(face_threshold_at_far(FACE_EMBEDDER_DEFAULT, FACE_DECISION_FAR), 0.930f,
                       1e-6);
    assert_float_equal(face_threshold_at_far(FACE_EMBEDDER_FACEAPI_RESNET, 1e-4), 0.944f, 1e-6);
    /* between calibrated rates: the stricter threshold; looser: the loosest calibrated */
    assert_float_equal(face_threshold_at_far(FACE_EMBEDDER_FACEAPI_RESNET, 5e-4), 0.944f, 1e-6);
    assert_float_equal(face_threshold_at_far(FACE_EMBEDDER_FACEAPI_RESNET, 1e-2), 0.930f, 1e-6);
    /* uncalibrated embedders: the accuracy-maximising threshold */
    assert_float_equal(face_threshold_at_far(FACE_EMBEDDER_MOBILEFACE, 1e-3),
                       face_default_threshold(FACE_EMBEDDER_MOBILEFACE), 1e-6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batched_equals_alone),
        cmocka_unit_test(test_one_face_per_run),
        cmocka_unit_test(test_free_unfinished),
        cmocka_unit_test(test_limits_before_decode),
        cmocka_unit_test(test_threshold_at_far),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
