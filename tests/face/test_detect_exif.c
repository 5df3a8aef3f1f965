/*
 * EXIF-rotated photos give upright faces. From a real group photo, JPEGs are made whose stored
 * pixels are turned as a camera stores them, with the EXIF orientation (6, 3, 8) that says how
 * to turn them back; face_analyze_bytes() must find the same faces at the same places of the
 * upright image (face.h: coordinates are the upright image's), with upright landmarks (eyes
 * above the mouth) and aligned crops and embeddings that match the upright photo's. The EXIF
 * block is written here by hand (TIFF little-endian, IFD0 with one SHORT entry 0x0112).
 * Then the adaptive detector against the single pass and the pyramid on real photos.
 * Skips when models/ (or, for the crowd, ../shared/data/fixtures) is absent.
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

#define PHOTO "models/samples/sample1.jpg"
#define CROWD "../shared/data/fixtures/crowd-largest-selfie.jpg"
#define PORTRAIT "../shared/data/fixtures/id-obama-1.jpg"

static face_models *models;
static face_context *ctx;

static int setup(void **state)
{
    (void)state;
    if (access("models/human/blazeface-back.json", R_OK) != 0 || access(PHOTO, R_OK) != 0) return 0;
    face_models_options o = {0};
    if (face_models_load(&o, &models) != 0) {
        fprintf(stderr, "face_models_load: %s\n", base_error_message());
        return -1;
    }
    return face_context_create(models, 8, &ctx);
}

static int teardown(void **state)
{
    (void)state;
    face_context_destroy(ctx);
    face_models_destroy(models);
    return 0;
}

#define NEED_MODELS() SKIP_UNLESS(models, "models/ not present (make models)")

/* A JPEG of img with an APP1 Exif segment holding `orientation` right after SOI. */
static void jpeg_with_orientation(const img_image *img, int orientation, uint8_t **out, size_t *len)
{
    uint8_t *jpeg = NULL;
    size_t n = 0;
    assert_int_equal(img_encode_jpeg(img, 95, &jpeg, &n), 0);
    assert_true(n > 2 && jpeg[0] == 0xff && jpeg[1] == 0xd8);
    static const uint8_t tiff[] = {
        'I',  'I',  42, 0, 8, 0, 0, 0,             /* little-endian TIFF, IFD0 at 8 */
        1,    0,                                   /* one entry */
        0x12, 0x01, 3,  0, 1, 0, 0, 0, 0, 0, 0, 0, /* 0x0112 SHORT x1, value patched below */
        0,    0,    0,  0,                         /* no next IFD */
    };
    const size_t seg = 2 + 6 + sizeof tiff; /* length field counts itself */
    uint8_t *o = malloc(n + 2 + seg);
    assert_non_null(o);
    size_t k = 0;
    o[k++] = 0xff, o[k++] = 0xd8, o[k++] = 0xff, o[k++] = 0xe1;
    o[k++] = (uint8_t)(seg >> 8), o[k++] = (uint8_t)seg;
    memcpy(o + k, "Exif\0\0", 6), k += 6;
    memcpy(o + k, tiff, sizeof tiff);
    o[k + 18] = (uint8_t)orientation; /* the entry's value, first byte (little-endian) */
    k += sizeof tiff;
    memcpy(o + k, jpeg + 2, n - 2), k += n - 2;
    free(jpeg);
    *out = o;
    *len = k;
}

static float box_iou(const face_info *a, const face_info *b)
{
    face_box x = {.x = a->x, .y = a->y, .w = a->w, .h = a->h};
    face_box y = {.x = b->x, .y = b->y, .w = b->w, .h = b->h};
    return face_iou(&x, &y);
}

/* Orientation o displays stored pixels turned; storing the upright photo turned the other way
 * (the inverse orientation) is what a camera held that way writes. */
static int inverse_orientation(int o)
{
    return o == 6 ? 8 : o == 8 ? 6 : o;
}

static void test_exif_rotated_faces_upright(void **state)
{
    (void)state;
    NEED_MODELS();
    img_image upright = {0};
    assert_int_equal(img_load_file(PHOTO, NULL, &upright, NULL), 0);
    face_options opts = {.stages = FACE_STAGE_EMBED | FACE_STAGE_LANDMARKS};
    uint8_t *jpeg = NULL;
    size_t len = 0;
    face_result ref;
    jpeg_with_orientation(&upright, 1, &jpeg, &len);
    assert_int_equal(face_analyze_bytes(ctx, jpeg, len, &opts, &ref), 0);
    free(jpeg);
    assert_int_equal(ref.n_faces, 3);

    static const int orientations[3] = {6, 3, 8};
    for (int t = 0; t < 3; t++) {
        int o = orientations[t];
        img_image stored = {0};
        assert_int_equal(img_apply_orientation(&upright, inverse_orientation(o), &stored), 0);
        if (o != 3) assert_int_equal(stored.width, upright.height);
        jpeg_with_orientation(&stored, o, &jpeg, &len);
        img_image shown = {0};
        img_decode_info info;
        assert_int_equal(img_decode(jpeg, len, NULL, &shown, &info), 0);
        assert_int_equal(info.orientation, o);
        assert_int_equal(shown.width, upright.width);
        assert_int_equal(shown.height, upright.height);
        img_free(&shown);

        face_result r;
        assert_int_equal(face_analyze_bytes(ctx, jpeg, len, &opts, &r), 0);
        assert_int_equal(r.width, upright.width);
        assert_int_equal(r.height, upright.height);
        printf("orientation %d: %d faces (upright photo: %d)\n", o, r.n_faces, ref.n_faces);
        assert_int_equal(r.n_faces, ref.n_faces);
        for (int i = 0; i < r.n_faces; i++) {
            const face_info *f = &r.faces[i];
            int best = -1;
            float best_iou = 0;
            for (int j = 0; j < ref.n_faces; j++) {
                float v = box_iou(f, &ref.faces[j]);
                if (v > best_iou) best_iou = v, best = j;
            }
            const face_point *p = f->landmarks5; /* eyes 0, 1; mouth corners 3, 4 */
            float eyes = 0.5f * (p[0].y + p[1].y), mouth = 0.5f * (p[3].y + p[4].y);
            float sim = face_similarity(f->embedding, ref.faces[best].embedding, f->embedding_dim);
            printf("  face %d: IoU %.3f with upright face %d, eyes y %.0f < mouth y %.0f, "
                   "embedding similarity %.3f\n",
                   i, best_iou, best, eyes, mouth, sim);
            if (best_iou < 0.8f) fail_msg("orientation %d: face %d: IoU %.3f", o, i, best_iou);
            if (!(eyes < mouth - 0.2f * f->h))
                fail_msg("orientation %d: face %d upside down or on its side", o, i);
            /* the alignment points where the upright photo has them */
            for (int k = 0; k < 5; k++) {
                const face_point *q = &ref.faces[best].landmarks5[k];
                float d = hypotf(p[k].x - q->x, p[k].y - q->y);
                if (d > 0.05f * f->w)
                    fail_msg("orientation %d: face %d point %d %.1f px away", o, i, k, d);
            }
            if (sim < 0.95f)
                fail_msg("orientation %d: face %d: embedding similarity %.3f", o, i, sim);
        }
        face_result_free(&r);
        free(jpeg);
        img_free(&stored);
    }
    face_result_free(&ref);
    img_free(&upright);
}

static int analyze_file(const char *path, face_detector d, int min_face, face_result *r)
{
    char *data = NULL;
    size_t len = 0;
    int rc = base_file_read(path, 1 << 26, &data, &len);
    if (rc) return rc;
    face_options o = {.detector = d, .min_face_size = min_face};
    rc = face_analyze_bytes(ctx, (const uint8_t *)data, len, &o, r);
    free(data);
    return rc;
}

/* The adaptive default: on a portrait it stops after the single pass (the same faces), on a
 * crowd it runs the pyramid (the tiled detector's faces, more than twice what one pass finds). */
static void test_adaptive_detector(void **state)
{
    (void)state;
    NEED_MODELS();
    if (access(CROWD, R_OK) != 0 || access(PORTRAIT, R_OK) != 0) {
        printf("skip: ../shared/data/fixtures not present\n");
        skip();
    }
    face_result single, adaptive, tiled;
    assert_int_equal(analyze_file(PORTRAIT, FACE_DETECTOR_BLAZEFACE, 0, &single), 0);
    assert_int_equal(analyze_file(PORTRAIT, FACE_DETECTOR_DEFAULT, 0, &adaptive), 0);
    printf("portrait: single pass %d face, adaptive %d\n", single.n_faces, adaptive.n_faces);
    assert_int_equal(single.n_faces, 1);
    assert_int_equal(adaptive.n_faces, 1);
    assert_true(box_iou(&single.faces[0], &adaptive.faces[0]) > 0.99f);
    face_result_free(&single);
    face_result_free(&adaptive);

    /* faces of 10 px and more: most of this crowd's are 8 to 15 px */
    assert_int_equal(analyze_file(CROWD, FACE_DETECTOR_BLAZEFACE, 10, &single), 0);
    assert_int_equal(analyze_file(CROWD, FACE_DETECTOR_DEFAULT, 10, &adaptive), 0);
    assert_int_equal(analyze_file(CROWD, FACE_DETECTOR_BLAZEFACE_TILED, 10, &tiled), 0);
    printf("crowd: single pass %d faces, adaptive %d, tiled %d\n", single.n_faces, adaptive.n_faces,
           tiled.n_faces);
    assert_true(adaptive.n_faces >= 2 * single.n_faces && adaptive.n_faces >= 40);
    assert_true(abs(adaptive.n_faces - tiled.n_faces) <= tiled.n_faces / 10);
    face_result_free(&single);
    face_result_free(&adaptive);
    face_result_free(&tiled);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exif_rotated_faces_upright),
        cmocka_unit_test(test_adaptive_detector),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
