/*
 * The enrolment quality gate: POST /v1/collections/{c}/faces refuses a face whose quality is
 * below min_quality (default FACE_MIN_QUALITY_DEFAULT, 0.1, as `vultus enroll
 * --min-quality`) with 422 low_quality, and stores nothing: no face, no new subject. Before it,
 * any face went into the gallery, a tiny or blurred one included, and made 1:N search wrong for
 * everyone.
 *
 * The low-quality photo is made here from models/samples/sample1.jpg with the project's own
 * image code: reduced to a sixth (320x213), its largest face is 29 px wide and scores 0.06
 * (`vultus analyze --stages quality`; the full-size photo's scores 0.61). Nothing is committed.
 *
 *   - refused at the default, with both figures and what to do in the message; nothing stored,
 *     no subject created, an existing subject keeps its faces;
 *   - stored with min_quality=0 (query, multipart field, JSON field), with its low quality;
 *   - min_quality outside [0, 1] or not a number: 422 invalid_parameter, before the image is
 *     looked at (an undecodable image with it is still invalid_parameter);
 *   - a good photo (the sample, the fixtures' ID photo when ../shared/data is there) enrols at
 *     the default; a high min_quality refuses it;
 *   - Idempotency-Key: the refusal is replayed like no_face; the same key with min_quality=0
 *     is another request (idempotency_key_reused); an explicit 0.1 is the default request.
 *
 * The real `vultus serve` of this build on loopback with the model pack; skips without it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "client.h"
#include "face/face.h"
#include "http/internal.h"
#include "img/img.h"

#define SAMPLE "models/samples/sample1.jpg"
#define ID_PHOTO "../shared/data/fixtures/id-obama-1.jpg"
#define JPEG_CT "Content-Type: image/jpeg\r\n"

static tc_server srv;
static char srv_dir[256];
static int port;
static uint8_t *small_jpeg; /* the sample reduced to a sixth: a face of quality ~0.06 */
static size_t small_len;

#define NEED_SERVER() TC_NEED_SERVER(srv, 1, "models/")

static int setup(void **state)
{
    (void)state;
    if (!tc_have_models()) return 0;
    if (tc_shrunk_jpeg(SAMPLE, 6, 90, &small_jpeg, &small_len) != 0) return -1;
    if (tc_server_start_patient(&srv, srv_dir) != 0) return -1;
    port = srv.port;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int rc = tc_server_stop_patient(&srv, srv_dir);
    free(small_jpeg);
    return rc != 0;
}

/* The quality the 201 of an enrolment reports. */
static double enrolled_quality(const tc_response *r)
{
    json_t *j = tc_expect_json(r, 201);
    json_t *q = json_object_get(j, "quality");
    if (!json_is_number(q)) fail_msg("no quality in %.300s", r->body);
    double v = json_number_value(q);
    assert_true(json_integer_value(json_object_get(j, "face_id")) > 0);
    json_decref(j);
    return v;
}

/* Refused at the default: 422 low_quality naming the face's quality and the limit and saying
 * what to do; no subject created, nothing stored; an existing subject keeps what it had. */
static void test_refused_below_default(void **state)
{
    (void)state;
    NEED_SERVER();
    tc_create_collection(port, "desk");
    tc_response r;
    tc_post_jpeg(port, "/v1/collections/desk/faces?subject=newcomer", NULL, small_jpeg, small_len, &r);
    tc_expect_error(&r, 422, "low_quality");
    char m[1024];
    tc_error_message(&r, m, sizeof m);
    tc_response_free(&r);
    /* its quality (0.06 measured: "0.0" then digits), the limit, the reason and the remedy */
    if (!strstr(m, "quality is 0.0") || !strstr(m, "below the 0.1 ") || !strstr(m, "small") ||
        !strstr(m, "sharper, frontal, well-lit") || !strstr(m, "min_quality=0"))
        fail_msg("low_quality's message does not give the figures and the way out: '%s'", m);
    tc_expect_no_subject(port, "desk", "newcomer");
    tc_expect_counts(port, "desk", 0, 0);

    /* with create_subject=false for a subject that has a face: it keeps that one alone */
    size_t len;
    char *good = tc_load(SAMPLE, &len);
    tc_post_jpeg(port, "/v1/collections/desk/faces?subject=regular", NULL, good, len, &r);
    assert_true(enrolled_quality(&r) >= FACE_MIN_QUALITY_DEFAULT);
    tc_response_free(&r);
    tc_post_jpeg(port, "/v1/collections/desk/faces?subject=regular&create_subject=false", NULL, small_jpeg,
             small_len, &r);
    tc_expect_error(&r, 422, "low_quality");
    tc_response_free(&r);
    tc_expect_counts(port, "desk", 1, 1);
    free(good);
}

/* min_quality=0 stores the same face, however the parameter comes; what it stores is the low
 * quality the refusal spoke of. */
static void test_stored_with_zero(void **state)
{
    (void)state;
    NEED_SERVER();
    tc_create_collection(port, "anyway");
    tc_response r;
    tc_post_jpeg(port, "/v1/collections/anyway/faces?subject=a&min_quality=0", NULL, small_jpeg, small_len,
             &r);
    double q = enrolled_quality(&r);
    tc_response_free(&r);
    if (!(q > 0 && q < FACE_MIN_QUALITY_DEFAULT))
        fail_msg("the reduced sample stored with quality %g: not a low-quality face", q);

    tc_form f = {0};
    tc_form_field(&f, "subject", "b");
    tc_form_field(&f, "min_quality", "0");
    tc_form_file(&f, "image", small_jpeg, small_len);
    tc_form_end(&f);
    tc_post_form(port, "/v1/collections/anyway/faces", "", &f, &r);
    assert_true(enrolled_quality(&r) == q);
    tc_response_free(&r);
    free(f.data);

    char *b64 = malloc(small_len / 3 * 4 + 8);
    b64[http_base64url_encode(small_jpeg, small_len, b64)] = '\0';
    size_t n = strlen(b64) + 128;
    char *body = malloc(n);
    snprintf(body, n, "{\"subject\":\"c\",\"min_quality\":0,\"image\":\"%s\"}", b64);
    tc_post_json(port, "/v1/collections/anyway/faces", "", body, &r);
    assert_true(enrolled_quality(&r) == q);
    tc_response_free(&r);
    /* and a limit just above it, as a JSON number, refuses it */
    snprintf(body, n, "{\"subject\":\"d\",\"min_quality\":%.6f,\"image\":\"%s\"}", q + 0.001, b64);
    tc_post_json(port, "/v1/collections/anyway/faces", "", body, &r);
    tc_expect_error(&r, 422, "low_quality");
    tc_response_free(&r);
    free(body);
    free(b64);
    tc_expect_counts(port, "anyway", 3, 3);
}

/* A min_quality that is not a number in [0, 1]: 422 invalid_parameter, before the image is
 * looked at (bytes that are no image still get invalid_parameter, not invalid_image), and
 * nothing created. */
static void test_invalid_min_quality(void **state)
{
    (void)state;
    NEED_SERVER();
    tc_create_collection(port, "strict");
    static const char *const bad[] = {"-0.1", "1.01", "abc", "nan", "inf", "", "0.5x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[160];
        snprintf(path, sizeof path, "/v1/collections/strict/faces?subject=x&min_quality=%s",
                 bad[i]);
        tc_response r;
        tc_post_jpeg(port, path, NULL, small_jpeg, small_len, &r);
        tc_expect_error(&r, 422, "invalid_parameter");
        char m[512];
        if (!strstr(tc_error_message(&r, m, sizeof m), "min_quality"))
            fail_msg("'%s' does not name min_quality", m);
        tc_response_free(&r);
        tc_post_jpeg(port, path, NULL, "not an image", 12, &r);
        tc_expect_error(&r, 422, "invalid_parameter");
        tc_response_free(&r);
    }
    tc_form f = {0};
    tc_form_field(&f, "subject", "x");
    tc_form_field(&f, "min_quality", "2");
    tc_form_file(&f, "image", small_jpeg, small_len);
    tc_form_end(&f);
    tc_response r;
    tc_post_form(port, "/v1/collections/strict/faces", "", &f, &r);
    tc_expect_error(&r, 422, "invalid_parameter");
    tc_response_free(&r);
    free(f.data);
    tc_post_json(port, "/v1/collections/strict/faces", "",
                 "{\"subject\":\"x\",\"min_quality\":true,\"image\":\"AAAA\"}", &r);
    tc_expect_error(&r, 422, "invalid_parameter");
    tc_response_free(&r);
    tc_expect_no_subject(port, "strict", "x");
    /* the bounds themselves are valid: 1 refuses even a good face, 0 takes any */
    tc_post_jpeg(port, "/v1/collections/strict/faces?subject=x&min_quality=1", NULL, small_jpeg, small_len,
             &r);
    tc_expect_error(&r, 422, "low_quality");
    tc_response_free(&r);
    tc_expect_counts(port, "strict", 0, 0);
}

/* Good photos still enrol at the default: the sample (quality 0.61) and, when the fixtures
 * are there, an ID photo (0.91); a min_quality above the sample's refuses it, naming the
 * limit. */
static void test_good_photo_enrols(void **state)
{
    (void)state;
    NEED_SERVER();
    tc_create_collection(port, "good");
    size_t len;
    char *jpeg = tc_load(SAMPLE, &len);
    tc_response r;
    tc_post_jpeg(port, "/v1/collections/good/faces?subject=s", NULL, jpeg, len, &r);
    double q = enrolled_quality(&r);
    tc_response_free(&r);
    if (!(q >= 0.3)) fail_msg("the full-size sample's face has quality %g", q);
    tc_post_jpeg(port, "/v1/collections/good/faces?subject=s&min_quality=0.95", NULL, jpeg, len, &r);
    tc_expect_error(&r, 422, "low_quality");
    char m[1024];
    if (!strstr(tc_error_message(&r, m, sizeof m), "below the 0.95 "))
        fail_msg("low_quality does not name the limit 0.95: '%s'", m);
    tc_response_free(&r);
    free(jpeg);
    if (tc_exists(ID_PHOTO)) {
        jpeg = tc_load(ID_PHOTO, &len);
        tc_post_jpeg(port, "/v1/collections/good/faces?subject=id", NULL, jpeg, len, &r);
        assert_true(enrolled_quality(&r) >= 0.5);
        tc_response_free(&r);
        free(jpeg);
        tc_expect_counts(port, "good", 2, 2);
    } else {
        tc_expect_counts(port, "good", 1, 1);
    }
}

/* Idempotency-Key: the refusal is final and replayed, as no_face is; lowering min_quality
 * with the same key is another request; min_quality=0.1 spelled out is the default request. */
static void test_idempotency(void **state)
{
    (void)state;
    NEED_SERVER();
    tc_create_collection(port, "idem");
    const char *path = "/v1/collections/idem/faces?subject=p";
    tc_response r;
    tc_post_jpeg(port, path, "Idempotency-Key: lq-1\r\n", small_jpeg, small_len, &r);
    tc_expect_error(&r, 422, "low_quality");
    tc_response_free(&r);
    tc_post_jpeg(port, path, "Idempotency-Key: lq-1\r\n", small_jpeg, small_len, &r);
    tc_expect_error(&r, 422, "low_quality");
    char v[16];
    if (!tc_header(&r, "Idempotency-Replayed", v, sizeof v) || strcmp(v, "true") != 0)
        fail_msg("the retry of a refused enrolment was not the replayed answer");
    tc_response_free(&r);
    tc_post_jpeg(port, "/v1/collections/idem/faces?subject=p&min_quality=0.1", "Idempotency-Key: lq-1\r\n",
             small_jpeg, small_len, &r);
    tc_expect_error(&r, 422, "low_quality");
    assert_non_null(tc_header(&r, "Idempotency-Replayed", v, sizeof v));
    tc_response_free(&r);
    tc_post_jpeg(port, "/v1/collections/idem/faces?subject=p&min_quality=0", "Idempotency-Key: lq-1\r\n",
             small_jpeg, small_len, &r);
    tc_expect_error(&r, 422, "idempotency_key_reused");
    tc_response_free(&r);
    tc_expect_counts(port, "idem", 0, 0);
    /* with a new key it is stored, once, however often it is retried */
    tc_post_jpeg(port, "/v1/collections/idem/faces?subject=p&min_quality=0", "Idempotency-Key: lq-2\r\n",
             small_jpeg, small_len, &r);
    json_t *first = tc_expect_json(&r, 201);
    tc_response_free(&r);
    tc_post_jpeg(port, "/v1/collections/idem/faces?subject=p&min_quality=0", "Idempotency-Key: lq-2\r\n",
             small_jpeg, small_len, &r);
    json_t *again = tc_expect_json(&r, 201);
    tc_response_free(&r);
    assert_int_equal(json_integer_value(json_object_get(first, "face_id")),
                     json_integer_value(json_object_get(again, "face_id")));
    json_decref(first);
    json_decref(again);
    tc_expect_counts(port, "idem", 1, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_below_default), cmocka_unit_test(test_stored_with_zero),
        cmocka_unit_test(test_invalid_min_quality),   cmocka_unit_test(test_good_photo_enrols),
        cmocka_unit_test(test_idempotency),
    };
    return cmocka_run_group_tests_name("enrol quality", tests, setup, teardown);
}
