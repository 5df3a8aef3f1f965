/*
 * face-api's face recognition ResNet (src/face/faceapi_resnet.c, the default embedder) and its
 * age/gender TinyXception (src/face/faceapi_agegender.c, the default age/gender model), built in
 * C from the weights manifests, against face-api itself: tests/face/golden/faceapi_*.gold were
 * made by tools/golden/make-golden-faceapi.mjs, which runs @vladmandic/face-api 1.7.15's own
 * network code (computeFaceDescriptor, AgeGenderNet.forward) on TF.js 4.22.0's CPU backend.
 *
 * The inputs are the script's pixel images (the golden face and a random image, alone and as a
 * batch of two), rebuilt here bit for bit (checked by their FNV-1a hashes, which the script
 * prints and writes to faceapi_index.json). They reach the network through face_crop_fill(),
 * the step that turns the pipeline's 8-bit crop into the model's floats with the model's crop
 * spec, so the normalisation the pipeline applies is tested against face-api's too. Both
 * backends (XNNPACK and the reference loops). Skips when models/faceapi is absent.
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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RESNET_MANIFEST "models/faceapi/face_recognition_model-weights_manifest.json"
#define AGEGENDER_MANIFEST "models/faceapi/age_gender_model-weights_manifest.json"
#define FACE_RGB "tests/nn/golden/face256.rgb"

static int have_models(void)
{
    return access(RESNET_MANIFEST, R_OK) == 0 && access(AGEGENDER_MANIFEST, R_OK) == 0;
}

#define NEED_MODELS() SKIP_UNLESS(have_models(), "models/faceapi not present (make models)")

/* The script's "face" pixels: face256.rgb resized to size x size by golden.h's nearest rule. */
static void face_pixels(const uint8_t *rgb256, int size, uint8_t *dst)
{
    for (int y = 0; y < size; y++) {
        int sy = (2 * y + 1) * 256 / (2 * size);
        for (int x = 0; x < size; x++) {
            int sx = (2 * x + 1) * 256 / (2 * size);
            memcpy(dst + ((size_t)y * size + x) * 3, rgb256 + ((size_t)sy * 256 + sx) * 3, 3);
        }
    }
}

/* The script's "random" pixels: golden.h's generator, the top 8 bits of each state. */
static void random_pixels(int size, uint8_t *dst)
{
    uint32_t s = 937;
    for (size_t i = 0; i < (size_t)size * size * 3; i++) {
        s = s * 1103515245u + 12345u;
        dst[i] = (uint8_t)(s >> 24);
    }
}

/* FNV-1a-32 of the pixels as the float32 bytes the script fed face-api (little-endian). */
static uint32_t pixels_hash(const uint8_t *p, size_t n)
{
    uint32_t h = 0x811c9dc5u;
    for (size_t i = 0; i < n; i++) {
        float f = p[i];
        uint8_t b[4];
        memcpy(b, &f, 4);
        for (int k = 0; k < 4; k++)
            h = (h ^ b[k]) * 0x01000193u;
    }
    return h;
}

typedef struct network {
    const char *key; /* golden file prefix */
    face_model_id id;
    int size;
    uint32_t face_hash, random_hash; /* printed by make-golden-faceapi.mjs */
} network;

static const network resnet = {"faceapi_resnet", FM_FACEAPI_RESNET, 150, 0xfe4325f1u, 0x037e7152u};
static const network agegender = {"faceapi_agegender", FM_FACEAPI_AGEGENDER, 112, 0x48316f8bu,
                                  0x56a44f1cu};

/* Element k of input `which` ("face", "random", "batch2": [random, face]) as 8-bit pixels. */
static void input_pixels(const network *net, const uint8_t *rgb256, const char *which, int k,
                         img_image *im)
{
    const size_t n = (size_t)net->size * net->size * 3;
    int face = strcmp(which, "face") == 0 || (strcmp(which, "batch2") == 0 && k == 1);
    if (face)
        face_pixels(rgb256, net->size, im->data);
    else
        random_pixels(net->size, im->data);
    uint32_t h = pixels_hash(im->data, n), want = face ? net->face_hash : net->random_hash;
    if (h != want) fail_msg("%s %s input hash %08x, the script's %08x", net->key, which, h, want);
}

typedef struct worst {
    double err, cos; /* over every comparison of one output: largest error, smallest cosine */
} worst;

/* got[count] against one golden output; prints and records the figures. */
static void compare(const char *what, const float *got, const float *ref, size_t count, worst *w)
{
    double err, mref, cos;
    assert_int_equal(golden_compare(got, ref, count, &err, &mref, &cos), 0);
    printf("  %-26s max abs err %.3g (max |ref| %.3g), 1 - cosine %.3g\n", what, err, mref,
           1 - cos);
    if (err > w->err) w->err = err;
    if (cos < w->cos) w->cos = cos;
}

/*
 * Runs `net` (built by load) on the three golden inputs on both backends and compares every
 * output named in names[] with the golden of the same name. Each row of a batched output is
 * compared on its own, so w[i] holds output i's worst figures.
 */
static void run_goldens(const network *net, int (*load)(const char *, nn_model **),
                        const char *manifest, const char *const *names, int n_names, worst *w)
{
    nn_model *m = NULL;
    assert_int_equal(load(manifest, &m), 0);
    char *rgb = NULL;
    size_t rgb_len = 0;
    assert_int_equal(base_file_read(FACE_RGB, 1 << 20, &rgb, &rgb_len), 0);
    assert_int_equal((int)rgb_len, 256 * 256 * 3);
    const face_crop_spec *spec = face_crop_spec_for(net->id);
    assert_non_null(spec);
    assert_int_equal(spec->size, net->size);
    img_image im = {0};
    assert_int_equal(img_alloc(&im, net->size, net->size, 3), 0);
    const size_t per = (size_t)net->size * net->size * 3;
    static const char *const inputs[3] = {"face", "random", "batch2"};

    for (int backend = 0; backend < 2; backend++) {
        nn_context_options co = {.max_batch = 2,
                                 .backend = backend ? NN_BACKEND_REFERENCE : NN_BACKEND_AUTO};
        nn_context *c = NULL;
        assert_int_equal(nn_context_create(m, &co, &c), 0);
        for (int in = 0; in < 3; in++) {
            const int batch = in == 2 ? 2 : 1;
            float *x = nn_context_input(c, 0);
            for (int k = 0; k < batch; k++) {
                input_pixels(net, (const uint8_t *)rgb, inputs[in], k, &im);
                face_crop_fill(&im, spec, 0, x + per * (size_t)k);
            }
            assert_int_equal(nn_context_run(c, batch), 0);

            char path[128];
            snprintf(path, sizeof path, "tests/face/golden/%s.%s.gold", net->key, inputs[in]);
            golden_file gf;
            assert_int_equal(golden_read(path, &gf), 0);
            for (int o = 0; o < n_names; o++) {
                const golden_output *g = golden_find(&gf, names[o]);
                if (!g) fail_msg("%s: no output %s", path, names[o]);
                assert_int_equal((int)g->dim[0], batch);
                const int idx = nn_model_output_index(m, names[o]);
                assert_true(idx >= 0);
                const float *got = nn_context_output(c, idx, NULL);
                const size_t row = g->count / (size_t)batch;
                for (int k = 0; k < batch; k++) {
                    char what[96];
                    snprintf(what, sizeof what, "%s %s[%d]%s", names[o], inputs[in], k,
                             backend ? " (ref)" : "");
                    compare(what, got + row * (size_t)k, g->data + row * (size_t)k, row, &w[o]);
                }
            }
            golden_free(&gf);
        }
        nn_context_destroy(c);
    }
    img_free(&im);
    free(rgb);
    nn_model_destroy(m);
}

/*
 * The 128-d descriptor. Observed (both backends, gcc -O2): max abs err 4.6e-7 with max |ref|
 * 0.39, 1 - cosine below 1e-9: float rounding. The bounds leave ~20x that and fail on any
 * real difference: feeding (p - mean) / 256 (dlib's normalisation, which the pipeline used
 * before) instead of face-api's / 255 gives 3.0e-4 and 1 - cosine 4.8e-7. Cosine alone would
 * not show much: the descriptors of the face and of random noise have a cosine of 0.885.
 */
static void test_resnet_golden(void **state)
{
    (void)state;
    NEED_MODELS();
    static const char *const names[] = {"descriptor"};
    worst w[1] = {{0, 1}};
    run_goldens(&resnet, face_faceapi_resnet_load, RESNET_MANIFEST, names, 1, w);
    printf("resnet: worst max abs err %.3g, worst 1 - cosine %.3g\n", w[0].err, 1 - w[0].cos);
    if (w[0].err > 1e-5 || 1 - w[0].cos > 1e-8)
        fail_msg("descriptor differs from face-api: max abs err %g, 1 - cosine %g", w[0].err,
                 1 - w[0].cos);
}

/*
 * Age in years and softmax(gender) = [male, female]. Observed: age 2.1e-5 years, gender 2.0e-7;
 * with / 256 instead of / 255: 0.045 years and 9.1e-4.
 */
static void test_agegender_golden(void **state)
{
    (void)state;
    NEED_MODELS();
    static const char *const names[] = {"age", "gender"};
    worst w[2] = {{0, 1}, {0, 1}};
    run_goldens(&agegender, face_faceapi_agegender_load, AGEGENDER_MANIFEST, names, 2, w);
    printf("age/gender: worst max abs err age %.3g years, gender %.3g\n", w[0].err, w[1].err);
    if (w[0].err > 5e-4 || w[1].err > 5e-6)
        fail_msg("age/gender differ from face-api: age %g years, gender %g", w[0].err, w[1].err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resnet_golden),
        cmocka_unit_test(test_agegender_golden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
