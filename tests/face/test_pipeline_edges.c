/*
 * The face pipeline on odd but valid images: what it answers, not only that it does not crash
 * (the parsers' fuzz targets cover that). Tiny images and extreme strips, images at and one
 * pixel over the limits, faces cut by each border, the same photo in every EXIF orientation
 * (1-8) and in every format the decoder takes (grey and CMYK JPEG, palette, grey+alpha and
 * 16-bit PNG, WebP with alpha), flat and noise images, max_faces and min_face_size at their
 * edges, and determinism. Every float of every result is checked to be finite, and every box
 * to overlap the image. Real models and the model pack's sample photos (scaled to 640 px, so
 * the whole program stays fast); skips when models/ is absent.
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
#include <spng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <unistd.h>
#include <webp/encode.h>

#define GROUP "models/samples/sample5.jpg" /* 5 faces */
#define TRIO "models/samples/sample1.jpg"  /* 3 faces */
#define WIDTH 640                          /* the photos' width here */

static face_models *models;
static face_context *ctx;
static img_image group, trio; /* the photos at WIDTH */

static int load_scaled(const char *path, img_image *out)
{
    img_image full = {0};
    int rc = img_load_file(path, NULL, &full, NULL);
    if (rc) return rc;
    int h = (int)lround((double)full.height * WIDTH / full.width);
    rc = img_resize(&full, WIDTH, h, out);
    img_free(&full);
    return rc;
}

static int setup(void **state)
{
    (void)state;
    if (access("models/human/blazeface-back.json", R_OK) != 0 || access(GROUP, R_OK) != 0 ||
        access(TRIO, R_OK) != 0)
        return 0;
    /* every model, the SSD detector too */
    face_models_options o = {.detector = FACE_DETECTOR_SSD_MOBILENET};
    if (face_models_load(&o, &models) != 0) {
        fprintf(stderr, "face_models_load: %s\n", base_error_message());
        return -1;
    }
    if (load_scaled(GROUP, &group) || load_scaled(TRIO, &trio)) {
        fprintf(stderr, "samples: %s\n", base_error_message());
        return -1;
    }
    return face_context_create(models, 8, &ctx);
}

static int teardown(void **state)
{
    (void)state;
    img_free(&group);
    img_free(&trio);
    face_context_destroy(ctx);
    face_models_destroy(models);
    return 0;
}

#define NEED_MODELS() SKIP_UNLESS(models, "models/ not present (make models)")

static const face_detector detectors[] = {FACE_DETECTOR_BLAZEFACE_ADAPTIVE, FACE_DETECTOR_BLAZEFACE,
                                          FACE_DETECTOR_BLAZEFACE_TILED,
                                          FACE_DETECTOR_SSD_MOBILENET};
#define N_DETECTORS ((int)(sizeof detectors / sizeof detectors[0]))

/* --- checks every result gets ------------------------------------------------------------- */

static void expect_finite(float v, const char *what, const char *field, int face)
{
    if (!isfinite(v)) fail_msg("%s: face %d: %s is %f", what, face, field, (double)v);
}

/* Every float finite, every box overlapping the image, embeddings unit length, probabilities
 * in [0, 1], faces sorted by area (largest first). */
static void check_result(const face_result *r, const char *what)
{
    assert_true(r->n_faces >= 0);
    if (r->n_faces > 0) assert_non_null(r->faces);
    const double *t = &r->timing.decode_ms;
    for (int k = 0; k < 7; k++)
        if (!(isfinite(t[k]) && t[k] >= 0)) fail_msg("%s: timing %d is %g", what, k, t[k]);
    for (int i = 0; i < r->n_faces; i++) {
        const face_info *f = &r->faces[i];
        expect_finite(f->x, what, "x", i);
        expect_finite(f->y, what, "y", i);
        expect_finite(f->w, what, "w", i);
        expect_finite(f->h, what, "h", i);
        expect_finite(f->score, what, "score", i);
        if (!(f->w > 0 && f->h > 0)) fail_msg("%s: face %d: box %gx%g", what, i, f->w, f->h);
        if (!(f->x < (float)r->width && f->x + f->w > 0 && f->y < (float)r->height &&
              f->y + f->h > 0))
            fail_msg("%s: face %d: box (%g, %g, %g, %g) outside the %dx%d image", what, i, f->x,
                     f->y, f->w, f->h, r->width, r->height);
        if (!(f->score >= 0 && f->score <= 1)) fail_msg("%s: face %d: score %g", what, i, f->score);
        for (int k = 0; k < 6; k++) {
            expect_finite(f->keypoints[k].x, what, "keypoint x", i);
            expect_finite(f->keypoints[k].y, what, "keypoint y", i);
        }
        if (f->has_landmarks)
            for (int k = 0; k < 5; k++) {
                expect_finite(f->landmarks5[k].x, what, "landmark x", i);
                expect_finite(f->landmarks5[k].y, what, "landmark y", i);
            }
        if (f->embedding_dim > 0) {
            double norm = 0;
            for (int k = 0; k < f->embedding_dim; k++) {
                expect_finite(f->embedding[k], what, "embedding", i);
                norm += (double)f->embedding[k] * f->embedding[k];
            }
            if (fabs(norm - 1) > 1e-3) fail_msg("%s: face %d: |embedding|^2 %g", what, i, norm);
        }
        const face_attributes *a = &f->attributes;
        if (f->has_attributes) {
            expect_finite(a->age, what, "age", i);
            expect_finite(a->gender_male, what, "gender", i);
            if (!(a->age >= 0 && a->gender_male >= 0 && a->gender_male <= 1))
                fail_msg("%s: face %d: age %g gender %g", what, i, a->age, a->gender_male);
            float sum = 0;
            for (int k = 0; k < FACE_EMOTIONS; k++) {
                expect_finite(a->emotion[k], what, "emotion", i);
                assert_true(a->emotion[k] >= 0 && a->emotion[k] <= 1);
                sum += a->emotion[k];
            }
            if (fabsf(sum - 1) > 1e-3f) fail_msg("%s: face %d: emotions sum to %g", what, i, sum);
        }
        if (f->has_quality) {
            expect_finite(a->yaw, what, "yaw", i);
            expect_finite(a->pitch, what, "pitch", i);
            expect_finite(a->roll, what, "roll", i);
            expect_finite(a->quality, what, "quality", i);
            expect_finite(a->sharpness, what, "sharpness", i);
            if (!(a->quality >= 0 && a->quality <= 1))
                fail_msg("%s: face %d: quality %g", what, i, a->quality);
        }
        if (f->has_liveness) {
            expect_finite(f->liveness.score, what, "liveness", i);
            expect_finite(f->liveness.antispoof, what, "antispoof", i);
            expect_finite(f->liveness.liveness, what, "liveness model", i);
            assert_true(f->liveness.score >= 0 && f->liveness.score <= 1);
        }
        if (i > 0 && f->w * f->h > r->faces[i - 1].w * r->faces[i - 1].h * (1 + 1e-6f))
            fail_msg("%s: face %d larger than face %d", what, i, i - 1);
    }
}

/* Every output of two results, bit for bit. */
static int same_bits(const face_result *a, const face_result *b)
{
    if (a->width != b->width || a->height != b->height || a->n_faces != b->n_faces) return 0;
    for (int i = 0; i < a->n_faces; i++) {
        const face_info *x = &a->faces[i], *y = &b->faces[i];
        if (memcmp(&x->x, &y->x, 5 * sizeof(float)) ||
            memcmp(x->keypoints, y->keypoints, sizeof x->keypoints) ||
            memcmp(x->landmarks5, y->landmarks5, sizeof x->landmarks5) ||
            x->embedding_dim != y->embedding_dim ||
            memcmp(x->embedding, y->embedding, (size_t)x->embedding_dim * sizeof(float)) ||
            memcmp(&x->attributes, &y->attributes, sizeof x->attributes) ||
            memcmp(&x->liveness, &y->liveness, sizeof x->liveness))
            return 0;
        if ((x->aligned.data == NULL) != (y->aligned.data == NULL)) return 0;
        if (x->aligned.data && memcmp(x->aligned.data, y->aligned.data, (size_t)112 * 112 * 3))
            return 0;
    }
    return 1;
}

static float info_iou(const face_info *a, const face_info *b)
{
    face_box x = {.x = a->x, .y = a->y, .w = a->w, .h = a->h};
    face_box y = {.x = b->x, .y = b->y, .w = b->w, .h = b->h};
    return face_iou(&x, &y);
}

/* The same faces (each of b matched to its best-overlapping face of a): boxes within IoU
 * min_iou, embeddings within min_sim. */
static void expect_same_faces(const face_result *a, const face_result *b, float min_iou,
                              float min_sim, const char *what)
{
    if (a->n_faces != b->n_faces)
        fail_msg("%s: %d faces, the reference %d", what, b->n_faces, a->n_faces);
    float worst_iou = 1, worst_sim = 1;
    for (int i = 0; i < b->n_faces; i++) {
        int best = 0;
        float iou = -1;
        for (int j = 0; j < a->n_faces; j++) {
            float v = info_iou(&b->faces[i], &a->faces[j]);
            if (v > iou) iou = v, best = j;
        }
        worst_iou = fminf(worst_iou, iou);
        if (b->faces[i].embedding_dim)
            worst_sim =
                fminf(worst_sim, face_similarity(b->faces[i].embedding, a->faces[best].embedding,
                                                 b->faces[i].embedding_dim));
    }
    printf("  %s: %d faces, worst IoU %.4f, worst embedding similarity %.5f\n", what, b->n_faces,
           (double)worst_iou, (double)worst_sim);
    if (worst_iou < min_iou) fail_msg("%s: IoU %.4f < %.4f", what, worst_iou, min_iou);
    if (worst_sim < min_sim) fail_msg("%s: similarity %.5f < %.5f", what, worst_sim, min_sim);
}

/* --- image makers ------------------------------------------------------------------------- */

static uint32_t rng_state = 12345;
static uint32_t rng(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}

static void make_image(img_image *img, int w, int h, int kind)
{
    assert_int_equal(img_alloc(img, w, h, 3), 0);
    size_t n = (size_t)w * h * 3;
    for (size_t i = 0; i < n; i++)
        img->data[i] = kind == 0 ? 0 : kind == 1 ? 255 : (uint8_t)rng(); /* black, white, noise */
}

static void png_of(const img_image *img, int bit_depth, int color_type, uint8_t **out, size_t *len,
                   const struct spng_exif *exif)
{
    /* color_type: SPNG_COLOR_TYPE_TRUECOLOR (img RGB, 8 or 16 bits), GRAYSCALE_ALPHA (grey of
     * img, alpha varying), INDEXED (img's colours quantised to 6x7x6 levels) */
    const int w = img->width, h = img->height;
    const int channels = color_type == SPNG_COLOR_TYPE_TRUECOLOR         ? 3
                         : color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA ? 2
                                                                         : 1;
    const int bytes = bit_depth / 8;
    uint8_t *raw = malloc((size_t)w * h * channels * bytes);
    assert_non_null(raw);
    struct spng_plte plte = {.n_entries = 6 * 7 * 6};
    for (int r = 0; r < 6; r++)
        for (int g = 0; g < 7; g++)
            for (int b = 0; b < 6; b++)
                plte.entries[(r * 7 + g) * 6 + b] = (struct spng_plte_entry){
                    (uint8_t)(r * 51), (uint8_t)(g * 255 / 6), (uint8_t)(b * 51), 255};
    for (int i = 0; i < w * h; i++) {
        const uint8_t *p = img->data + 3 * i;
        if (color_type == SPNG_COLOR_TYPE_TRUECOLOR) {
            for (int c = 0; c < 3; c++) {
                if (bytes == 2) /* v * 257: the high byte is v, the low byte varies */
                    raw[6 * i + 2 * c] = p[c], raw[6 * i + 2 * c + 1] = p[c];
                else
                    raw[3 * i + c] = p[c];
            }
        } else if (color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA) {
            raw[2 * i] = (uint8_t)((77 * p[0] + 150 * p[1] + 29 * p[2] + 128) >> 8);
            raw[2 * i + 1] = (uint8_t)(i * 7); /* an alpha the decoder must ignore */
        } else {
            int r = (p[0] * 5 + 127) / 255, g = (p[1] * 6 + 127) / 255, b = (p[2] * 5 + 127) / 255;
            raw[i] = (uint8_t)((r * 7 + g) * 6 + b);
        }
    }
    spng_ctx *s = spng_ctx_new(SPNG_CTX_ENCODER);
    assert_non_null(s);
    struct spng_ihdr ihdr = {.width = (uint32_t)w,
                             .height = (uint32_t)h,
                             .bit_depth = (uint8_t)bit_depth,
                             .color_type = (uint8_t)color_type};
    assert_int_equal(spng_set_option(s, SPNG_ENCODE_TO_BUFFER, 1), 0);
    assert_int_equal(spng_set_ihdr(s, &ihdr), 0);
    if (color_type == SPNG_COLOR_TYPE_INDEXED) assert_int_equal(spng_set_plte(s, &plte), 0);
    if (exif) assert_int_equal(spng_set_exif(s, (struct spng_exif *)exif), 0);
    int err = spng_encode_image(s, raw, (size_t)w * h * channels * bytes, SPNG_FMT_PNG,
                                SPNG_ENCODE_FINALIZE);
    if (err) fail_msg("spng_encode_image: %s", spng_strerror(err));
    int e2 = 0;
    *out = spng_get_png_buffer(s, len, &e2);
    assert_int_equal(e2, 0);
    spng_ctx_free(s);
    free(raw);
}

/* The grey version of an RGB image, as an RGB image (what a grey file decodes to). */
static void grey_of(const img_image *img, img_image *out)
{
    assert_int_equal(img_alloc(out, img->width, img->height, 3), 0);
    for (int i = 0; i < img->width * img->height; i++) {
        const uint8_t *p = img->data + 3 * i;
        uint8_t y = (uint8_t)((77 * p[0] + 150 * p[1] + 29 * p[2] + 128) >> 8);
        out->data[3 * i] = out->data[3 * i + 1] = out->data[3 * i + 2] = y;
    }
}

static int analyze_bytes(const uint8_t *data, size_t len, const face_options *o, face_result *r)
{
    return face_analyze_bytes(ctx, data, len, o, r);
}

/* --- tests -------------------------------------------------------------------------------- */

/* Tiny images and extreme strips, on every detector, as pixels and as PNG bytes: no error, no
 * face (nothing there is a face), every float finite. */
static void test_tiny_and_strips(void **state)
{
    (void)state;
    NEED_MODELS();
    static const int sizes[][2] = {{1, 1},   {2, 2},     {1, 50},    {50, 1},
                                   {16, 16}, {4000, 20}, {20, 4000}, {3, 4000}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (int kind = 0; kind < 3; kind++) {
            img_image img = {0};
            make_image(&img, sizes[s][0], sizes[s][1], kind);
            uint8_t *png = NULL;
            size_t len = 0;
            png_of(&img, 8, SPNG_COLOR_TYPE_TRUECOLOR, &png, &len, NULL);
            /* the flat ones on the default detector only (test_flat_and_noise has the rest) */
            for (int d = 0; d < (kind == 2 ? N_DETECTORS : 1); d++) {
                char what[96];
                snprintf(what, sizeof what, "%dx%d kind %d detector %s", img.width, img.height,
                         kind, face_detector_name(detectors[d]));
                face_options o = {.stages = FACE_STAGE_ALL, .detector = detectors[d]};
                face_result r;
                int rc = face_analyze(ctx, &img, &o, &r);
                if (rc) fail_msg("%s: %s", what, base_error_message());
                check_result(&r, what);
                if (r.n_faces) fail_msg("%s: %d faces", what, r.n_faces);
                face_result_free(&r);
                if (d > 0) continue; /* the bytes' path on the default detector */
                rc = analyze_bytes(png, len, &o, &r);
                if (rc) fail_msg("%s (PNG): %s", what, base_error_message());
                assert_int_equal(r.width, img.width);
                assert_int_equal(r.height, img.height);
                check_result(&r, what);
                assert_int_equal(r.n_faces, 0);
                face_result_free(&r);
            }
            free(png);
            img_free(&img);
        }
    }
}

/* A face in a strip: the group photo's middle band, as wide as the photo and as tall as its
 * faces (and its transpose), is found on every detector with finite outputs. */
static void test_strip_with_faces(void **state)
{
    (void)state;
    NEED_MODELS();
    face_result ref;
    face_options o = {.stages = FACE_STAGE_ALL};
    assert_int_equal(face_analyze(ctx, &trio, &o, &ref), 0);
    assert_int_equal(ref.n_faces, 3);
    /* the band from the top of the highest face to the bottom of the lowest, plus 10 % */
    float top = 1e9f, bottom = 0;
    for (int i = 0; i < ref.n_faces; i++)
        top = fminf(top, ref.faces[i].y), bottom = fmaxf(bottom, ref.faces[i].y + ref.faces[i].h);
    int y0 = (int)(top - 0.1f * (bottom - top)), y1 = (int)(bottom + 0.1f * (bottom - top));
    if (y0 < 0) y0 = 0;
    if (y1 > trio.height) y1 = trio.height;
    img_image band = {0}, tall = {0};
    assert_int_equal(img_crop(&trio, 0, y0, trio.width, y1 - y0, &band), 0);
    assert_int_equal(img_apply_orientation(&band, 6, &tall), 0);
    for (int d = 0; d < N_DETECTORS; d++) {
        o.detector = detectors[d];
        face_result r;
        char what[96];
        snprintf(what, sizeof what, "band %dx%d, %s", band.width, band.height,
                 face_detector_name(detectors[d]));
        assert_int_equal(face_analyze(ctx, &band, &o, &r), 0);
        check_result(&r, what);
        printf("  %s: %d faces\n", what, r.n_faces);
        if (r.n_faces < 2) fail_msg("%s: %d faces", what, r.n_faces);
        face_result_free(&r);
        snprintf(what, sizeof what, "band turned, %dx%d, %s", tall.width, tall.height,
                 face_detector_name(detectors[d]));
        assert_int_equal(face_analyze(ctx, &tall, &o, &r), 0);
        check_result(&r, what);
        face_result_free(&r);
    }
    img_free(&band);
    img_free(&tall);
    face_result_free(&ref);
}

/* The pixel and dimension limits at their value and one over, for PNG and JPEG (a JPEG decoded
 * at a reduced scale is still checked at its stored size). */
static void test_limits_at_and_over(void **state)
{
    (void)state;
    NEED_MODELS();
    img_image img = {0};
    make_image(&img, 600, 400, 2);
    uint8_t *png = NULL, *jpeg = NULL;
    size_t png_len = 0, jpeg_len = 0;
    png_of(&img, 8, SPNG_COLOR_TYPE_TRUECOLOR, &png, &png_len, NULL);
    assert_int_equal(img_encode_jpeg(&img, 90, &jpeg, &jpeg_len), 0);
    const uint8_t *files[2] = {png, jpeg};
    const size_t lens[2] = {png_len, jpeg_len};
    for (int f = 0; f < 2; f++) {
        face_result r;
        face_options o = {.stages = FACE_STAGE_ALL, .limits = {.max_pixels = 600 * 400}};
        assert_int_equal(analyze_bytes(files[f], lens[f], &o, &r), 0);
        assert_int_equal(r.width, 600);
        face_result_free(&r);
        o.limits.max_pixels = 600 * 400 - 1;
        assert_int_equal(analyze_bytes(files[f], lens[f], &o, &r), BASE_ERR_LIMIT);
        assert_int_equal(r.n_faces, 0);
        assert_null(r.faces);
        o.limits = (img_limits){.max_dimension = 600};
        assert_int_equal(analyze_bytes(files[f], lens[f], &o, &r), 0);
        face_result_free(&r);
        o.limits.max_dimension = 599;
        assert_int_equal(analyze_bytes(files[f], lens[f], &o, &r), BASE_ERR_LIMIT);
        o.limits = (img_limits){.max_bytes = lens[f]};
        assert_int_equal(analyze_bytes(files[f], lens[f], &o, &r), 0);
        face_result_free(&r);
        o.limits.max_bytes = lens[f] - 1;
        assert_int_equal(analyze_bytes(files[f], lens[f], &o, &r), BASE_ERR_LIMIT);
    }
    free(png);
    free(jpeg);
    img_free(&img);

    /* the default dimension limit (20000), at and one over, on a strip */
    for (int w = 20000; w <= 20001; w++) {
        make_image(&img, w, 4, 2);
        assert_int_equal(img_encode_jpeg(&img, 90, &jpeg, &jpeg_len), 0);
        face_options o = {.stages = FACE_STAGE_ALL};
        face_result r;
        int rc = analyze_bytes(jpeg, jpeg_len, &o, &r);
        if (w == 20000) {
            if (rc) fail_msg("%dx4: %s", w, base_error_message());
            assert_int_equal(r.width, w);
            check_result(&r, "20000x4 strip");
            assert_int_equal(r.n_faces, 0);
            face_result_free(&r);
        } else {
            assert_int_equal(rc, BASE_ERR_LIMIT);
        }
        free(jpeg);
        img_free(&img);
    }
}

/* A face cut by each border of the picture (the crop's edge through the middle of the face):
 * the pipeline still answers with finite numbers and boxes that overlap the picture; the
 * faces kept whole stay where they were. */
static void test_face_cut_by_borders(void **state)
{
    (void)state;
    NEED_MODELS();
    face_options o = {.stages = FACE_STAGE_ALL};
    face_result ref;
    assert_int_equal(face_analyze(ctx, &trio, &o, &ref), 0);
    assert_int_equal(ref.n_faces, 3);
    int outside = 0;
    for (int i = 0; i < ref.n_faces; i++) {
        const face_info *f = &ref.faces[i];
        int cx = (int)(f->x + 0.5f * f->w), cy = (int)(f->y + 0.5f * f->h);
        /* left, top, right, bottom border through the face's centre */
        const int rects[4][4] = {{cx, 0, trio.width - cx, trio.height},
                                 {0, cy, trio.width, trio.height - cy},
                                 {0, 0, cx, trio.height},
                                 {0, 0, trio.width, cy}};
        for (int side = 0; side < 4; side++) {
            img_image cut = {0};
            const int *c = rects[side];
            assert_int_equal(img_crop(&trio, c[0], c[1], c[2], c[3], &cut), 0);
            for (int d = 0; d < N_DETECTORS; d += 3) { /* adaptive and SSD */
                o.detector = detectors[d];
                char what[128];
                snprintf(what, sizeof what, "face %d cut by border %d (%dx%d), %s", i, side,
                         cut.width, cut.height, face_detector_name(detectors[d]));
                face_result r;
                if (face_analyze(ctx, &cut, &o, &r) != 0)
                    fail_msg("%s: %s", what, base_error_message());
                check_result(&r, what);
                for (int k = 0; k < r.n_faces; k++) {
                    const face_info *g = &r.faces[k];
                    assert_true(g->has_attributes && g->has_quality && g->has_liveness);
                    assert_true(g->embedding_dim > 0);
                    assert_non_null(g->aligned.data);
                    /* boxes are not clipped (face.h): a cut face's reaches past the border */
                    outside += g->x < 0 || g->y < 0 || g->x + g->w > (float)cut.width ||
                               g->y + g->h > (float)cut.height;
                }
                face_result_free(&r);
            }
            img_free(&cut);
        }
    }
    printf("  %d boxes of cut faces reach past the picture's border\n", outside);
    assert_true(outside > 0);
    face_result_free(&ref);
}

/* A TIFF block with one orientation entry, as a PNG eXIf chunk holds it. */
static void exif_block(uint8_t tiff[26], int orientation)
{
    static const uint8_t t[26] = {'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3,
                                  0,   1,   0,  0, 0, 0, 0, 0, 0, 0, 0,    0,    0};
    memcpy(tiff, t, sizeof t);
    tiff[18] = (uint8_t)orientation;
}

static int inverse_orientation(int o)
{
    return o == 6 ? 8 : o == 8 ? 6 : o;
}

/*
 * Every EXIF orientation 1-8: the photo stored turned (or mirrored) as orientation o says, with
 * o in a PNG eXIf chunk, shows the upright photo again pixel for pixel, so every output must
 * be bit-identical to the upright PNG's. test_detect_exif checks 3, 6 and 8 on JPEG; the
 * mirrored ones (2, 4, 5, 7) on JPEG here, within JPEG's noise.
 */
static void test_every_orientation(void **state)
{
    (void)state;
    NEED_MODELS();
    face_options o = {.stages = FACE_STAGE_ALL};
    uint8_t *png = NULL;
    size_t len = 0;
    png_of(&trio, 8, SPNG_COLOR_TYPE_TRUECOLOR, &png, &len, NULL);
    face_result ref;
    assert_int_equal(analyze_bytes(png, len, &o, &ref), 0);
    free(png);
    assert_int_equal(ref.n_faces, 3);
    check_result(&ref, "upright PNG");
    uint8_t *jpeg = NULL;
    assert_int_equal(img_encode_jpeg(&trio, 95, &jpeg, &len), 0);
    face_result ref_jpeg;
    assert_int_equal(analyze_bytes(jpeg, len, &o, &ref_jpeg), 0);
    free(jpeg);
    for (int orientation = 1; orientation <= 8; orientation++) {
        img_image stored = {0};
        assert_int_equal(img_apply_orientation(&trio, inverse_orientation(orientation), &stored),
                         0);
        uint8_t tiff[26];
        exif_block(tiff, orientation);
        struct spng_exif exif = {.length = sizeof tiff, .data = (char *)tiff};
        png_of(&stored, 8, SPNG_COLOR_TYPE_TRUECOLOR, &png, &len, &exif);
        face_result r;
        char what[64];
        snprintf(what, sizeof what, "PNG orientation %d", orientation);
        assert_int_equal(analyze_bytes(png, len, &o, &r), 0);
        free(png);
        check_result(&r, what);
        if (!same_bits(&ref, &r)) {
            expect_same_faces(&ref, &r, 0.99f, 0.9999f, what);
            fail_msg("%s: not bit-identical to the upright PNG", what);
        }
        face_result_free(&r);

        /* JPEG: the mirrored orientations, which test_detect_exif does not cover */
        if (orientation == 2 || orientation == 4 || orientation == 5 || orientation == 7) {
            snprintf(what, sizeof what, "JPEG orientation %d", orientation);
            assert_int_equal(img_encode_jpeg(&stored, 95, &jpeg, &len), 0);
            /* APP1 Exif right after SOI */
            const size_t seg = 2 + 6 + sizeof tiff;
            uint8_t *e = malloc(len + 2 + seg);
            assert_non_null(e);
            size_t k = 0;
            e[k++] = 0xff, e[k++] = 0xd8, e[k++] = 0xff, e[k++] = 0xe1;
            e[k++] = (uint8_t)(seg >> 8), e[k++] = (uint8_t)seg;
            memcpy(e + k, "Exif\0\0", 6), k += 6;
            memcpy(e + k, tiff, sizeof tiff), k += sizeof tiff;
            memcpy(e + k, jpeg + 2, len - 2), k += len - 2;
            free(jpeg);
            assert_int_equal(analyze_bytes(e, k, &o, &r), 0);
            free(e);
            assert_int_equal(r.width, trio.width);
            assert_int_equal(r.height, trio.height);
            check_result(&r, what);
            expect_same_faces(&ref_jpeg, &r, 0.9f, 0.97f, what);
            face_result_free(&r);
        }
        img_free(&stored);
    }
    face_result_free(&ref);
    face_result_free(&ref_jpeg);
}

/* Flat and noise images find no face at the default threshold on any detector. */
static void test_flat_and_noise(void **state)
{
    (void)state;
    NEED_MODELS();
    for (int kind = 0; kind < 3; kind++) {
        img_image img = {0};
        make_image(&img, 640, 480, kind);
        for (int d = 0; d < N_DETECTORS; d++) {
            face_options o = {.stages = FACE_STAGE_ALL, .detector = detectors[d]};
            face_result r;
            char what[64];
            snprintf(what, sizeof what, "%s image, %s",
                     kind == 0   ? "black"
                     : kind == 1 ? "white"
                                 : "noise",
                     face_detector_name(detectors[d]));
            assert_int_equal(face_analyze(ctx, &img, &o, &r), 0);
            check_result(&r, what);
            if (r.n_faces) fail_msg("%s: %d faces (score %.3f)", what, r.n_faces, r.faces[0].score);
            face_result_free(&r);
        }
        img_free(&img);
    }
}

/* The same photo in every format: lossless ones (16-bit PNG, WebP lossless with alpha) give
 * bit-identical outputs; grey ones (grey JPEG, grey+alpha PNG) the same faces as each other;
 * lossy ones (JPEG, CMYK JPEG, palette PNG, lossy WebP with alpha) the same faces within
 * tolerance. */
static void test_formats(void **state)
{
    (void)state;
    NEED_MODELS();
    face_options o = {.stages = FACE_STAGE_ALL};
    const img_image *p = &group;
    const int w = p->width, h = p->height;
    face_result ref, r;
    uint8_t *buf = NULL;
    size_t len = 0;
    png_of(p, 8, SPNG_COLOR_TYPE_TRUECOLOR, &buf, &len, NULL);
    assert_int_equal(analyze_bytes(buf, len, &o, &ref), 0);
    free(buf);
    check_result(&ref, "RGB PNG");
    assert_int_equal(ref.n_faces, 5);

    png_of(p, 16, SPNG_COLOR_TYPE_TRUECOLOR, &buf, &len, NULL);
    assert_int_equal(analyze_bytes(buf, len, &o, &r), 0);
    free(buf);
    check_result(&r, "16-bit PNG");
    assert_true(same_bits(&ref, &r));
    face_result_free(&r);

    uint8_t *rgba = malloc((size_t)w * h * 4);
    assert_non_null(rgba);
    for (int i = 0; i < w * h; i++) {
        memcpy(rgba + 4 * i, p->data + 3 * i, 3);
        rgba[4 * i + 3] = (uint8_t)(255 - (i % 200)); /* a varying alpha, which is dropped */
    }
    len = WebPEncodeLosslessRGBA(rgba, w, h, w * 4, &buf);
    assert_true(len > 0);
    assert_int_equal(analyze_bytes(buf, len, &o, &r), 0);
    WebPFree(buf);
    check_result(&r, "lossless WebP with alpha");
    assert_true(same_bits(&ref, &r));
    face_result_free(&r);

    len = WebPEncodeRGBA(rgba, w, h, w * 4, 95, &buf);
    assert_true(len > 0);
    assert_int_equal(analyze_bytes(buf, len, &o, &r), 0);
    WebPFree(buf);
    check_result(&r, "lossy WebP with alpha");
    expect_same_faces(&ref, &r, 0.9f, 0.95f, "lossy WebP with alpha");
    face_result_free(&r);
    free(rgba);

    assert_int_equal(img_encode_jpeg(p, 95, &buf, &len), 0);
    assert_int_equal(analyze_bytes(buf, len, &o, &r), 0);
    free(buf);
    check_result(&r, "JPEG");
    expect_same_faces(&ref, &r, 0.9f, 0.95f, "JPEG");
    face_result_free(&r);

    /* CMYK as Adobe writes it (inverted: C' = R, M' = G, Y' = B, K' = 255 is no black ink) */
    uint8_t *cmyk = malloc((size_t)w * h * 4);
    assert_non_null(cmyk);
    for (int i = 0; i < w * h; i++) {
        memcpy(cmyk + 4 * i, p->data + 3 * i, 3);
        cmyk[4 * i + 3] = 255;
    }
    tjhandle tj = tjInitCompress();
    assert_non_null(tj);
    unsigned char *cbuf = NULL;
    unsigned long clen = 0;
    assert_int_equal(tjCompress2(tj, cmyk, w, 0, h, TJPF_CMYK, &cbuf, &clen, TJSAMP_444, 95, 0), 0);
    tjDestroy(tj);
    free(cmyk);
    assert_int_equal(analyze_bytes(cbuf, clen, &o, &r), 0);
    tjFree(cbuf);
    check_result(&r, "CMYK JPEG");
    expect_same_faces(&ref, &r, 0.9f, 0.95f, "CMYK JPEG");
    face_result_free(&r);

    png_of(p, 8, SPNG_COLOR_TYPE_INDEXED, &buf, &len, NULL);
    assert_int_equal(analyze_bytes(buf, len, &o, &r), 0);
    free(buf);
    check_result(&r, "palette PNG");
    /* 252 colours: coarse, so the faces but not the embeddings closely */
    expect_same_faces(&ref, &r, 0.7f, 0.9f, "palette PNG");
    face_result_free(&r);

    /* grey: the grey+alpha PNG decodes to exactly the grey image; a grey JPEG close to it */
    img_image grey = {0}, grey1 = {0};
    grey_of(p, &grey);
    face_result ref_grey;
    assert_int_equal(face_analyze(ctx, &grey, &o, &ref_grey), 0);
    check_result(&ref_grey, "grey image");
    expect_same_faces(&ref, &ref_grey, 0.8f, 0.8f, "grey image");
    png_of(p, 8, SPNG_COLOR_TYPE_GRAYSCALE_ALPHA, &buf, &len, NULL);
    assert_int_equal(analyze_bytes(buf, len, &o, &r), 0);
    free(buf);
    check_result(&r, "grey+alpha PNG");
    assert_true(same_bits(&ref_grey, &r));
    face_result_free(&r);
    assert_int_equal(img_alloc(&grey1, w, h, 1), 0);
    for (int i = 0; i < w * h; i++)
        grey1.data[i] = grey.data[3 * i];
    assert_int_equal(img_encode_jpeg(&grey1, 95, &buf, &len), 0);
    assert_int_equal(analyze_bytes(buf, len, &o, &r), 0);
    free(buf);
    check_result(&r, "grey JPEG");
    expect_same_faces(&ref_grey, &r, 0.9f, 0.95f, "grey JPEG");
    face_result_free(&r);
    face_result_free(&ref_grey);
    img_free(&grey);
    img_free(&grey1);
    face_result_free(&ref);
}

/* max_faces keeps the largest faces in the same order as the full result, on pixels and on
 * bytes (a JPEG decoded reduced); min_face_size larger than the image finds nothing; a face
 * exactly at min_face_size is kept, one pixel more drops it. */
static void test_max_faces_and_min_size(void **state)
{
    (void)state;
    NEED_MODELS();
    uint8_t *jpeg = NULL;
    size_t len = 0;
    assert_int_equal(img_encode_jpeg(&group, 95, &jpeg, &len), 0);
    for (int d = 0; d < N_DETECTORS; d++) {
        for (int bytes = 0; bytes < (d == 0 ? 2 : 1); bytes++) {
            /* the embedding on two detectors (the crops' path), detection alone on the others */
            face_options o = {.stages = d % 3 ? FACE_STAGE_DETECT : FACE_STAGE_EMBED,
                              .detector = detectors[d]};
            face_result all;
            assert_int_equal(bytes ? analyze_bytes(jpeg, len, &o, &all)
                                   : face_analyze(ctx, &group, &o, &all),
                             0);
            check_result(&all, "all faces");
            assert_true(all.n_faces >= 4);
            for (int k = 1; k <= all.n_faces; k++) {
                o.max_faces = k;
                face_result r;
                assert_int_equal(bytes ? analyze_bytes(jpeg, len, &o, &r)
                                       : face_analyze(ctx, &group, &o, &r),
                                 0);
                if (r.n_faces != k)
                    fail_msg("%s max_faces %d: %d faces", face_detector_name(detectors[d]), k,
                             r.n_faces);
                for (int i = 0; i < k; i++)
                    if (memcmp(&r.faces[i].x, &all.faces[i].x, 5 * sizeof(float)) ||
                        memcmp(r.faces[i].embedding, all.faces[i].embedding,
                               (size_t)r.faces[i].embedding_dim * sizeof(float)))
                        fail_msg("%s max_faces %d: face %d is not the full result's",
                                 face_detector_name(detectors[d]), k, i);
                face_result_free(&r);
            }
            o.max_faces = 0;
            o.min_face_size = group.width + 1;
            face_result r;
            assert_int_equal(
                bytes ? analyze_bytes(jpeg, len, &o, &r) : face_analyze(ctx, &group, &o, &r), 0);
            assert_int_equal(r.n_faces, 0);
            face_result_free(&r);
            face_result_free(&all);
        }
    }

    free(jpeg);

    /* A face exactly at min_face_size is kept, one pixel more drops it, on every detector: as
     * pixels (the 640-px photo) and as a JPEG decoded at 1/2 whose min_face_size counts
     * full-size pixels (face.h), where the adaptive and tiled detectors run their pyramid. Its
     * size is the shorter side of its detector box in the unfiltered run (face.h). A larger
     * min_face_size once pruned the pyramid, and the single pass alone measures faces smaller:
     * at 219 the adaptive detector found none of sample5.jpg's faces of 234 and 220 px. */
    char *file = NULL;
    size_t file_len = 0;
    assert_int_equal(base_file_read(GROUP, 64u << 20, &file, &file_len), 0);
    for (int bytes = 0; bytes < 2; bytes++) {
        for (int d = 0; d < N_DETECTORS; d++) {
            /* the bytes' path on the adaptive detector (a pyramid) and the single pass */
            if (bytes && d > 1) continue;
            face_options o = {.stages = FACE_STAGE_DETECT, .detector = detectors[d]};
            face_result all, r;
            assert_int_equal(bytes ? analyze_bytes((const uint8_t *)file, file_len, &o, &all)
                                   : face_analyze(ctx, &group, &o, &all),
                             0);
            assert_int_equal(all.n_faces, 5);
            for (int i = 0; i < all.n_faces; i++) {
                float side = fminf(all.faces[i].w / 0.9f, all.faces[i].h / 1.2f);
                for (int over = 0; over < 2; over++) {
                    o.min_face_size = (int)floorf(side) + over;
                    assert_int_equal(bytes ? analyze_bytes((const uint8_t *)file, file_len, &o, &r)
                                           : face_analyze(ctx, &group, &o, &r),
                                     0);
                    int found = 0;
                    for (int k = 0; k < r.n_faces; k++)
                        found += info_iou(&r.faces[k], &all.faces[i]) > 0.99f;
                    if (found != !over)
                        fail_msg("%s, %s: face %d (side %.2f): min_face_size %d: %s",
                                 bytes ? "JPEG" : "pixels", face_detector_name(detectors[d]), i,
                                 (double)side, o.min_face_size, over ? "kept" : "dropped");
                    face_result_free(&r);
                }
            }
            face_result_free(&all);
        }
    }
    free(file);
}

/* The same image twice gives bit-identical outputs, on every detector, as pixels and as JPEG
 * bytes, and prepare + finish over two images at once gives each what it gets alone. */
static void test_determinism(void **state)
{
    (void)state;
    NEED_MODELS();
    uint8_t *jpeg = NULL;
    size_t len = 0;
    assert_int_equal(img_encode_jpeg(&group, 90, &jpeg, &len), 0);
    for (int d = 0; d < N_DETECTORS; d++) {
        face_options o = {.stages = FACE_STAGE_ALL, .detector = detectors[d]};
        face_result a, b;
        assert_int_equal(face_analyze(ctx, &group, &o, &a), 0);
        assert_int_equal(face_analyze(ctx, &group, &o, &b), 0);
        if (!same_bits(&a, &b))
            fail_msg("%s: two runs on the same pixels differ", face_detector_name(detectors[d]));
        face_result_free(&b);
        assert_int_equal(analyze_bytes(jpeg, len, &o, &b), 0);
        face_result c;
        assert_int_equal(analyze_bytes(jpeg, len, &o, &c), 0);
        if (!same_bits(&b, &c))
            fail_msg("%s: two runs on the same JPEG differ", face_detector_name(detectors[d]));
        face_result_free(&c);

        /* both images' faces finished in shared engine runs */
        face_result pa, pb;
        assert_int_equal(face_analyze_prepare(ctx, &group, &o, &pa), 0);
        assert_int_equal(face_analyze_prepare_bytes(ctx, jpeg, len, &o, &pb), 0);
        face_batch_slice sl[2] = {{.result = &pb, .count = pb.n_faces},
                                  {.result = &pa, .count = pa.n_faces}};
        assert_int_equal(face_analyze_finish(ctx, sl, 2), 0);
        if (!same_bits(&a, &pa) || !same_bits(&b, &pb))
            fail_msg("%s: batched with another image, a face's outputs change",
                     face_detector_name(detectors[d]));
        face_result_free(&pa);
        face_result_free(&pb);
        face_result_free(&a);
        face_result_free(&b);
    }
    free(jpeg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_and_strips),
        cmocka_unit_test(test_strip_with_faces),
        cmocka_unit_test(test_limits_at_and_over),
        cmocka_unit_test(test_face_cut_by_borders),
        cmocka_unit_test(test_every_orientation),
        cmocka_unit_test(test_flat_and_noise),
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_max_faces_and_min_size),
        cmocka_unit_test(test_determinism),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
