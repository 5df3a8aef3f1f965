/*
 * The face pipeline on real photos: the model pack's sample photos (models/samples) and the
 * fixtures in ../shared/data/fixtures. Faces counted by eye on each photo; the same person's
 * photos match and different people's do not at the default threshold; an enrolled gallery
 * finds the right person; the aligned crop agrees with a plain-C warp computed here; batch
 * size and decode scale do not change the results. Skips when the models or the data are
 * absent.
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

static face_models *models;
static face_context *ctx;

static int have_models(void)
{
    return access("models/human/blazeface-back.json", R_OK) == 0 &&
           access("models/faceapi/face_recognition_model-weights_manifest.json", R_OK) == 0;
}

static int have_fixtures(void)
{
    return access(FIXTURES "/id-obama-1.jpg", R_OK) == 0;
}

static int setup(void **state)
{
    (void)state;
    if (!have_models()) return 0;
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
#define NEED_FIXTURES()                                                                            \
    do {                                                                                           \
        NEED_MODELS();                                                                             \
        SKIP_UNLESS(have_fixtures(), FIXTURES " not present");                                     \
    } while (0)

static int analyze_file(face_context *c, const char *path, const face_options *o, face_result *r)
{
    char *data = NULL;
    size_t len = 0;
    int rc = base_file_read(path, 64u << 20, &data, &len);
    if (rc) fail_msg("%s: %s", path, base_error_message());
    rc = face_analyze_bytes(c, (const uint8_t *)data, len, o, r);
    free(data);
    return rc;
}

static int count_faces(const char *path, face_detector det)
{
    face_options o = {.stages = FACE_STAGE_DETECT, .detector = det};
    face_result r;
    int rc = analyze_file(ctx, path, &o, &r);
    if (rc) fail_msg("%s: %s", path, base_error_message());
    int n = r.n_faces;
    face_result_free(&r);
    return n;
}

/* The model pack's samples: group photos of 3 to 5 people, all faces visible. */
static void test_sample_counts(void **state)
{
    (void)state;
    NEED_MODELS();
    static const int expected[6] = {3, 3, 3, 4, 5, 4};
    for (int i = 0; i < 6; i++) {
        char path[64];
        snprintf(path, sizeof path, "models/samples/sample%d.jpg", i + 1);
        int n = count_faces(path, FACE_DETECTOR_DEFAULT);
        if (n != expected[i]) fail_msg("%s: %d faces, expected %d", path, n, expected[i]);
    }
}

static void test_fixture_counts(void **state)
{
    (void)state;
    NEED_FIXTURES();
    static const struct {
        const char *file;
        int min, max;
        face_detector det;
    } cases[] = {
        {"noface-white.png", 0, 0, FACE_DETECTOR_DEFAULT},
        {"id-obama-1.jpg", 1, 1, FACE_DETECTOR_DEFAULT},
        {"id-obama-2.jpg", 1, 1, FACE_DETECTOR_DEFAULT},
        {"id-biden-1.jpg", 1, 1, FACE_DETECTOR_DEFAULT},
        {"group-bbt1.jpg", 4, 4, FACE_DETECTOR_DEFAULT},
        {"group-couple.jpg", 2, 2, FACE_DETECTOR_DEFAULT},
        {"group-two-people.jpg", 2, 2, FACE_DETECTOR_DEFAULT},
        /* two in front, one or two half-hidden in the background */
        {"group-bbt2.jpg", 2, 4, FACE_DETECTOR_DEFAULT},
        /* six people; one turned away scores below the default threshold in one pass */
        {"group-t1.jpg", 5, 6, FACE_DETECTOR_DEFAULT},
        {"group-t1.jpg", 6, 6, FACE_DETECTOR_BLAZEFACE_TILED},
        /* seven faces, three of them cut by the frame or half hidden */
        {"group-selfie-many.jpg", 4, 7, FACE_DETECTOR_DEFAULT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", FIXTURES, cases[i].file);
        int n = count_faces(path, cases[i].det);
        printf("  %-24s %s %d faces\n", cases[i].file,
               cases[i].det == FACE_DETECTOR_BLAZEFACE_TILED ? "tiled " : "single", n);
        if (n < cases[i].min || n > cases[i].max)
            fail_msg("%s: %d faces, expected %d..%d", cases[i].file, n, cases[i].min, cases[i].max);
    }
    /* every aligned 150x150 crop of the gallery is one face */
    static const char *people[8] = {"amy",   "bernadette", "howard",  "leonard",
                                    "penny", "raj",        "sheldon", "stuart"};
    for (int p = 0; p < 8; p++) {
        for (int k = 1; k <= 5; k++) {
            char path[256];
            snprintf(path, sizeof path, "%s/identities/%s/%s%d.png", FIXTURES, people[p], people[p],
                     k);
            int n = count_faces(path, FACE_DETECTOR_DEFAULT);
            if (n != 1) fail_msg("%s: %d faces", path, n);
        }
    }
}

static void embed_one(const char *path, float *out, int *dim)
{
    face_options o = {.stages = FACE_STAGE_EMBED};
    face_result r;
    if (analyze_file(ctx, path, &o, &r) != 0) fail_msg("%s: %s", path, base_error_message());
    if (r.n_faces < 1) fail_msg("%s: no face", path);
    assert_true(r.faces[0].embedding_dim > 0);
    assert_string_equal(r.faces[0].embedding_model, face_embedder_id(FACE_EMBEDDER_DEFAULT));
    memcpy(out, r.faces[0].embedding, sizeof(float) * (size_t)r.faces[0].embedding_dim);
    *dim = r.faces[0].embedding_dim;
    double norm = 0;
    for (int i = 0; i < *dim; i++)
        norm += (double)out[i] * out[i];
    assert_float_equal(norm, 1.0, 1e-4);
    face_result_free(&r);
}

static void test_verification(void **state)
{
    (void)state;
    NEED_FIXTURES();
    static float a[FACE_MAX_EMBEDDING], b[FACE_MAX_EMBEDDING], c[FACE_MAX_EMBEDDING];
    int dim = 0;
    embed_one(FIXTURES "/id-obama-1.jpg", a, &dim);
    embed_one(FIXTURES "/id-obama-2.jpg", b, &dim);
    embed_one(FIXTURES "/id-biden-1.jpg", c, &dim);
    float thr = face_default_threshold(FACE_EMBEDDER_DEFAULT);
    float same = face_similarity(a, b, dim), diff1 = face_similarity(a, c, dim),
          diff2 = face_similarity(b, c, dim);
    printf("  obama/obama %.3f, obama/biden %.3f %.3f, threshold %.3f\n", same, diff1, diff2, thr);
    assert_true(same > thr);
    assert_true(diff1 < thr);
    assert_true(diff2 < thr);
}

/* Enrol photos 1-4 of each of 8 people (mean embedding), search with photo 5. */
static void test_gallery_search(void **state)
{
    (void)state;
    NEED_FIXTURES();
    static const char *people[8] = {"amy",   "bernadette", "howard",  "leonard",
                                    "penny", "raj",        "sheldon", "stuart"};
    static float gallery[8][FACE_MAX_EMBEDDING], probe[8][FACE_MAX_EMBEDDING];
    int dim = 0;
    for (int p = 0; p < 8; p++) {
        memset(gallery[p], 0, sizeof gallery[p]);
        for (int k = 1; k <= 5; k++) {
            char path[256];
            float e[FACE_MAX_EMBEDDING];
            snprintf(path, sizeof path, "%s/identities/%s/%s%d.png", FIXTURES, people[p], people[p],
                     k);
            embed_one(path, k == 5 ? probe[p] : e, &dim);
            if (k < 5)
                for (int i = 0; i < dim; i++)
                    gallery[p][i] += e[i] / 4;
        }
        double n = 0;
        for (int i = 0; i < dim; i++)
            n += (double)gallery[p][i] * gallery[p][i];
        for (int i = 0; i < dim; i++)
            gallery[p][i] /= (float)sqrt(n);
    }
    int correct = 0;
    for (int p = 0; p < 8; p++) {
        int best = -1;
        float bs = -2;
        for (int g = 0; g < 8; g++) {
            float s = face_similarity(probe[p], gallery[g], dim);
            if (s > bs) bs = s, best = g;
        }
        printf("  %-10s -> %-10s %.3f\n", people[p], people[best], bs);
        correct += best == p;
    }
    assert_int_equal(correct, 8);
}

/*
 * The 112x112 ArcFace crop kept in face_info.aligned against a warp computed here: the
 * least-squares similarity from the 5 landmarks to the template by the normal equations,
 * inverted, and bilinear sampling at pixel centres with black outside.
 */
static const double arcface[5][2] = {
    {38.2946, 51.6963}, {73.5318, 51.5014}, {56.0252, 71.7366},
    {41.5493, 92.3655}, {70.7299, 92.2041},
};

static void reference_similarity(const face_point *p, double m[6])
{
    double A[4][5] = {{0}};
    for (int i = 0; i < 5; i++) {
        double rows[2][5] = {{p[i].x, -p[i].y, 1, 0, arcface[i][0]},
                             {p[i].y, p[i].x, 0, 1, arcface[i][1]}};
        for (int r = 0; r < 2; r++)
            for (int j = 0; j < 4; j++)
                for (int k = 0; k < 5; k++)
                    A[j][k] += rows[r][j] * rows[r][k];
    }
    for (int c = 0; c < 4; c++) {
        for (int r = 0; r < 4; r++) {
            if (r == c) continue;
            double f = A[r][c] / A[c][c];
            for (int k = c; k < 5; k++)
                A[r][k] -= f * A[c][k];
        }
    }
    m[0] = A[0][4] / A[0][0], m[1] = -A[1][4] / A[1][1], m[2] = A[2][4] / A[2][2];
    m[3] = A[1][4] / A[1][1], m[4] = A[0][4] / A[0][0], m[5] = A[3][4] / A[3][3];
}

static double sample(const img_image *im, double x, double y, int c)
{
    int x0 = (int)floor(x), y0 = (int)floor(y);
    double fx = x - x0, fy = y - y0, v = 0;
    for (int dy = 0; dy < 2; dy++)
        for (int dx = 0; dx < 2; dx++) {
            int xx = x0 + dx, yy = y0 + dy;
            double w = (dx ? fx : 1 - fx) * (dy ? fy : 1 - fy);
            if (xx >= 0 && yy >= 0 && xx < im->width && yy < im->height)
                v += w * im->data[((size_t)yy * im->width + xx) * 3 + c];
        }
    return v;
}

static void test_alignment_reference(void **state)
{
    (void)state;
    NEED_FIXTURES();
    char *data;
    size_t len;
    assert_int_equal(base_file_read(FIXTURES "/group-bbt1.jpg", 64u << 20, &data, &len), 0);
    img_image im;
    assert_int_equal(img_decode((const uint8_t *)data, len, NULL, &im, NULL), 0);
    free(data);
    face_options o = {.stages = FACE_STAGE_ATTRIBUTES};
    face_result r;
    assert_int_equal(face_analyze(ctx, &im, &o, &r), 0);
    assert_int_equal(r.n_faces, 4);
    for (int f = 0; f < r.n_faces; f++) {
        const face_info *fi = &r.faces[f];
        assert_true(fi->has_landmarks);
        assert_int_equal(fi->aligned.width, 112);
        double m[6];
        reference_similarity(fi->landmarks5, m);
        /* invert: source = M^-1 (crop) */
        double det = m[0] * m[4] - m[1] * m[3];
        double ia = m[4] / det, ib = -m[1] / det, ic = -m[3] / det, id = m[0] / det;
        double sum = 0, worst = 0;
        for (int v = 0; v < 112; v++)
            for (int u = 0; u < 112; u++) {
                double cx = u + 0.5 - m[2], cy = v + 0.5 - m[5];
                double sx = ia * cx + ib * cy - 0.5, sy = ic * cx + id * cy - 0.5;
                for (int c = 0; c < 3; c++) {
                    double d = fabs(sample(&im, sx, sy, c) -
                                    fi->aligned.data[((size_t)v * 112 + u) * 3 + c]);
                    sum += d;
                    if (d > worst) worst = d;
                }
            }
        double mean = sum / (112.0 * 112 * 3);
        printf("  face %d: aligned crop vs reference: mean |diff| %.3f, max %.1f\n", f, mean,
               worst);
        assert_true(mean < 0.5);
        assert_true(worst <= 4);
        /* landmarks: eyes above the nose above the mouth, left eye left of the right one */
        const face_point *p = fi->landmarks5;
        assert_true(p[0].x < p[1].x && p[3].x < p[4].x);
        assert_true(p[0].y < p[2].y && p[1].y < p[2].y && p[2].y < p[3].y && p[2].y < p[4].y);
        assert_true(fi->attributes.quality > 0 && fi->attributes.quality <= 1);
        /* the factors a refusal names (http_quality_why) are the ones the quality is made of */
        const face_quality_factors *q = &fi->attributes.quality_factors;
        assert_float_equal(q->size * q->sharpness * q->pose * q->detector,
                           fi->attributes.quality, 1e-6);
        assert_float_equal(q->detector, fi->score, 0);
        assert_true(q->size > 0 && q->size <= 1 && q->sharpness > 0 && q->sharpness < 1);
        assert_true(fabsf(fi->attributes.roll) < 20);
    }
    face_result_free(&r);
    img_free(&im);
}

/* One face per batch and all faces in one batch give the same embeddings; a full decode
 * and face_analyze_bytes' reduced one find the same faces. */
static void test_batch_and_scale_invariance(void **state)
{
    (void)state;
    NEED_FIXTURES();
    face_context *one = NULL;
    assert_int_equal(face_context_create(models, 1, &one), 0);
    face_options o = {.stages = FACE_STAGE_EMBED | FACE_STAGE_ATTRIBUTES};
    face_result a, b;
    assert_int_equal(analyze_file(ctx, FIXTURES "/group-bbt1.jpg", &o, &a), 0);
    assert_int_equal(analyze_file(one, FIXTURES "/group-bbt1.jpg", &o, &b), 0);
    assert_int_equal(a.n_faces, b.n_faces);
    for (int i = 0; i < a.n_faces; i++) {
        float s =
            face_similarity(a.faces[i].embedding, b.faces[i].embedding, a.faces[i].embedding_dim);
        assert_true(s > 0.9999f);
        assert_float_equal(a.faces[i].attributes.age, b.faces[i].attributes.age, 0.01);
    }
    face_result_free(&b);

    char *data;
    size_t len;
    assert_int_equal(base_file_read(FIXTURES "/group-bbt1.jpg", 64u << 20, &data, &len), 0);
    img_image im;
    assert_int_equal(img_decode((const uint8_t *)data, len, NULL, &im, NULL), 0);
    free(data);
    assert_int_equal(face_analyze(ctx, &im, &o, &b), 0);
    assert_int_equal(a.width, b.width);
    assert_int_equal(a.n_faces, b.n_faces);
    for (int i = 0; i < a.n_faces; i++) {
        const face_info *x = &a.faces[i], *y = &b.faces[i];
        float tol = 0.05f * y->w;
        assert_float_equal(x->x + x->w / 2, y->x + y->w / 2, tol);
        assert_float_equal(x->y + x->h / 2, y->y + y->h / 2, tol);
        float s = face_similarity(x->embedding, y->embedding, x->embedding_dim);
        printf("  face %d: reduced vs full decode: embedding similarity %.4f\n", i, s);
        assert_true(s > 0.97f);
    }
    face_result_free(&a);
    face_result_free(&b);
    img_free(&im);
    face_context_destroy(one);
}

/* Faces of r whose detector box has its shorter side >= min_side: min_face_size is compared
 * with BlazeFace's square box, which face_info reports 0.9x as wide (analyze.c). */
static int faces_at_least(const face_result *r, float min_side)
{
    int n = 0;
    for (int i = 0; i < r->n_faces; i++)
        n += r->faces[i].w >= 0.9f * min_side - 0.01f;
    return n;
}

/*
 * min_face_size counts pixels of the full-size image on both paths: face_analyze_bytes, whose
 * detector sees group-selfie-many (600x604; detector boxes of about 77, 105, 115 and 148 px)
 * decoded at 1/2 for detection only, and face_analyze on the image decoded in full. The
 * one-pass detector sees the same 256x256 input either way, so the boxes agree. A threshold
 * between two faces' sizes keeps exactly the faces at least that big, on both paths. (Before
 * min_face_size was scaled, the reduced path searched for faces twice as large.)
 */
static void test_min_face_size_full_pixels(void **state)
{
    (void)state;
    NEED_FIXTURES();
    const char *path = FIXTURES "/group-selfie-many.jpg";
    char *data;
    size_t len;
    assert_int_equal(base_file_read(path, 64u << 20, &data, &len), 0);
    img_image im;
    assert_int_equal(img_decode((const uint8_t *)data, len, NULL, &im, NULL), 0);
    face_options o = {.stages = FACE_STAGE_DETECT, .detector = FACE_DETECTOR_BLAZEFACE};
    face_result all_bytes, all_full;
    assert_int_equal(face_analyze_bytes(ctx, (const uint8_t *)data, len, &o, &all_bytes), 0);
    assert_int_equal(face_analyze(ctx, &im, &o, &all_full), 0);
    assert_int_equal(all_bytes.n_faces, 4);
    assert_int_equal(all_full.n_faces, 4);
    static const struct {
        int min_face, expect;
    } cases[] = {{90, 3}, {130, 1}};
    for (int k = 0; k < 2; k++) {
        int m = cases[k].min_face;
        o.min_face_size = m;
        face_result big_bytes, big_full;
        assert_int_equal(face_analyze_bytes(ctx, (const uint8_t *)data, len, &o, &big_bytes), 0);
        assert_int_equal(face_analyze(ctx, &im, &o, &big_full), 0);
        printf("  min_face_size %d: %d from bytes, %d from the image (of %d / %d at least that "
               "big unfiltered)\n",
               m, big_bytes.n_faces, big_full.n_faces, faces_at_least(&all_bytes, (float)m),
               faces_at_least(&all_full, (float)m));
        assert_int_equal(faces_at_least(&all_bytes, (float)m), cases[k].expect);
        assert_int_equal(faces_at_least(&all_full, (float)m), cases[k].expect);
        assert_int_equal(big_bytes.n_faces, cases[k].expect);
        assert_int_equal(big_full.n_faces, cases[k].expect);
        /* the same faces: the largest of the unfiltered runs (both sorted by size) */
        for (int i = 0; i < cases[k].expect; i++) {
            const face_info *x = &big_bytes.faces[i], *y = &all_bytes.faces[i];
            assert_float_equal(x->x + x->w / 2, y->x + y->w / 2, 0.05f * y->w);
            assert_float_equal(x->w, y->w, 0.05f * y->w);
            x = &big_full.faces[i], y = &all_full.faces[i];
            assert_float_equal(x->x + x->w / 2, y->x + y->w / 2, 0.05f * y->w);
            assert_float_equal(x->w, y->w, 0.05f * y->w);
        }
        face_result_free(&big_bytes);
        face_result_free(&big_full);
    }
    face_result_free(&all_bytes);
    face_result_free(&all_full);
    img_free(&im);
    free(data);
}

static void test_attributes(void **state)
{
    (void)state;
    NEED_FIXTURES();
    face_options o = {.stages = FACE_STAGE_ALL};
    face_result r;
    assert_int_equal(analyze_file(ctx, FIXTURES "/id-obama-1.jpg", &o, &r), 0);
    assert_int_equal(r.n_faces, 1);
    const face_info *f = &r.faces[0];
    printf("  obama: age %.1f male %.2f yaw %.1f pitch %.1f roll %.1f quality %.2f live %.2f\n",
           f->attributes.age, f->attributes.gender_male, f->attributes.yaw, f->attributes.pitch,
           f->attributes.roll, f->attributes.quality, f->liveness.score);
    assert_true(f->has_attributes && f->has_liveness);
    assert_true(f->attributes.gender_male > 0.5f);
    assert_true(f->attributes.age > 30 && f->attributes.age < 70);
    assert_true(fabsf(f->attributes.yaw) < 20 && fabsf(f->attributes.pitch) < 20);
    float sum = 0;
    for (int i = 0; i < FACE_EMOTIONS; i++)
        sum += f->attributes.emotion[i];
    assert_float_equal(sum, 1.0f, 0.01f);
    assert_true(f->liveness.score >= 0 && f->liveness.score <= 1);
    face_result_free(&r);
}

static void test_bad_input(void **state)
{
    (void)state;
    NEED_MODELS();
    face_options o = {.stages = FACE_STAGE_ALL};
    face_result r;
    static const uint8_t junk[] = "this is not an image";
    assert_true(face_analyze_bytes(ctx, junk, sizeof junk, &o, &r) < 0);
    assert_int_equal(r.n_faces, 0);
    static const uint8_t truncated[] = {0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 'J', 'F', 'I', 'F'};
    assert_true(face_analyze_bytes(ctx, truncated, sizeof truncated, &o, &r) < 0);
    img_image grey = {4, 4, 1, NULL};
    assert_true(face_analyze(ctx, &grey, &o, &r) < 0);
    face_result_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample_counts),
        cmocka_unit_test(test_fixture_counts),
        cmocka_unit_test(test_verification),
        cmocka_unit_test(test_gallery_search),
        cmocka_unit_test(test_alignment_reference),
        cmocka_unit_test(test_batch_and_scale_invariance),
        cmocka_unit_test(test_attributes),
        cmocka_unit_test(test_min_face_size_full_pixels),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
