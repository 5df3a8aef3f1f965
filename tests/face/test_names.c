/*
 * The command-line names of detectors and embedders (face_detector_parse, face_embedder_parse):
 * every command (analyze, eval, bench pipeline) takes the same names, short forms included,
 * each canonical name parses back to its detector, and unknown names are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "face/face.h"

#include <string.h>

static void test_detector_names(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        face_detector d;
    } cases[] = {
        {"default", FACE_DETECTOR_DEFAULT},
        {"blazeface", FACE_DETECTOR_BLAZEFACE},
        {"blazeface-tiled", FACE_DETECTOR_BLAZEFACE_TILED},
        {"tiled", FACE_DETECTOR_BLAZEFACE_TILED},
        {"blazeface-adaptive", FACE_DETECTOR_BLAZEFACE_ADAPTIVE},
        {"adaptive", FACE_DETECTOR_BLAZEFACE_ADAPTIVE},
        {"ssd-mobilenet", FACE_DETECTOR_SSD_MOBILENET},
        {"ssd", FACE_DETECTOR_SSD_MOBILENET},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        face_detector d = (face_detector)-1;
        assert_int_equal(face_detector_parse(cases[i].name, &d), 0);
        assert_int_equal(d, cases[i].d);
        /* the canonical name parses back, and is one the help text lists */
        const char *canonical = face_detector_name(d);
        face_detector back = (face_detector)-1;
        assert_int_equal(face_detector_parse(canonical, &back), 0);
        assert_int_equal(back, d);
        assert_non_null(strstr(FACE_DETECTOR_NAMES, canonical));
    }
    face_detector d = FACE_DETECTOR_BLAZEFACE;
    assert_int_equal(face_detector_parse("blazeface-", &d), -1);
    assert_int_equal(face_detector_parse("", &d), -1);
    assert_int_equal(face_detector_parse("SSD", &d), -1);
    assert_int_equal(d, FACE_DETECTOR_BLAZEFACE); /* untouched on failure */
}

static void test_embedder_names(void **state)
{
    (void)state;
    static const char *const names[] = {"faceapi", "faceres", "mobileface", "mobilefacenet"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        face_embedder e, back;
        assert_int_equal(face_embedder_parse(names[i], &e), 0);
        /* the stored id (a gallery pins it) parses back to the same embedder */
        assert_int_equal(face_embedder_parse(face_embedder_id(e), &back), 0);
        assert_int_equal(back, e);
    }
    face_embedder e;
    assert_int_equal(face_embedder_parse("arcface", &e), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detector_names),
        cmocka_unit_test(test_embedder_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
