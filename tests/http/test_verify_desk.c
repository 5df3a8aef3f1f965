/*
 * POST /v1/verify as a service desk uses it: the clerk's software sends the photo taken at the
 * desk and the scan of an ID photo (or names an enrolled subject) and acts on the answer, and
 * files it. Each test was written against something the walk-through found missing:
 *
 *   - threshold: a request's own threshold (a stricter one for a large withdrawal) decides,
 *     and the answer says where its threshold came from (request, collection, default); a
 *     value outside [-1, 1] or not a number is 422 invalid_parameter naming it (it used to be
 *     ignored: threshold=2 answered 200 with the default's decision);
 *   - the faces compared come with their quality and liveness (image_b's, the ID scan's, only
 *     with liveness_b=true: a document's photo is a photo of a photo, and its liveness models
 *     ran for nothing, half of verify's liveness time), and the answer carries
 *     warnings in words a clerk's software can show: several faces in a photo (which one was
 *     compared), a face too small or poor for its similarity to be trusted (a small scan of an
 *     ID photo: the same man, no_match);
 *   - min_liveness: a desk that requires a live face gets decision not_live (match false)
 *     when the face at the desk scores below it; out of [0, 1], 422;
 *   - which face: the most prominent (area in view, nearness to the centre), not the largest
 *     box: a bystander cut by the border of an LFW photo had the larger box and was compared
 *     (Ian_Thorpe_0010 against _0003: 0.906, no_match; eval, nearest the centre, has it right);
 *   - enrolment takes the same face, so a photo enrolled and then verified against its subject
 *     compares the face it stored;
 *   - the audit trail: the request's log line says who was verified against what and with
 *     what result (collection, subject, decision, similarity, threshold, warnings' codes,
 *     beside the line's own time, request id and key id), and holds no pixels nor embedding.
 *
 * Real photos: ../shared/data/fixtures (id-obama-1/2, id-biden-1, identities/); the tests skip
 * without them, and without the model pack. The real `vultus serve` of this build on loopback.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "client.h"
#include "img/img.h"

#define FIXTURES "../shared/data/fixtures"

static tc_server srv;
static char srv_dir[256];
static int port;

static int have_data(void)
{
    return tc_exists(FIXTURES "/id-obama-1.jpg") && tc_exists(FIXTURES "/identities/penny");
}

#define NEED_SERVER() TC_NEED_SERVER(srv, have_data(), FIXTURES)

/* id-obama-1 reduced to a tenth (91x113) and saved at JPEG quality 40, as a poor scan of an
 * ID photo: its face is 24 px wide, quality 0.06, and the same man scores 0.91 (no_match). */
static uint8_t *small_id;
static size_t small_id_len;
static char small_id_path[300];

static int setup(void **state)
{
    (void)state;
    if (!tc_have_models() || !have_data()) return 0;
    if (tc_shrunk_jpeg(FIXTURES "/id-obama-1.jpg", 10, 40, &small_id, &small_id_len) != 0)
        return -1;
    if (tc_server_start_patient(&srv, srv_dir) != 0) return -1;
    port = srv.port;
    snprintf(small_id_path, sizeof small_id_path, "%s/small-id.jpg", srv_dir);
    FILE *f = fopen(small_id_path, "wb");
    if (!f || fwrite(small_id, 1, small_id_len, f) != small_id_len) return -1;
    return fclose(f) != 0;
}

static int teardown(void **state)
{
    (void)state;
    int rc = tc_server_stop_patient(&srv, srv_dir);
    free(small_id);
    return rc != 0;
}

/* A multipart form: image parts named by `images` (name, path pairs, NULL-terminated), then
 * fields (name, value pairs, NULL-terminated). */
static void post_verify(const char *const *images, const char *const *fields, tc_response *r)
{
    tc_form f = {0};
    for (int i = 0; images && images[i]; i += 2) {
        size_t len;
        char *data = tc_load(images[i + 1], &len);
        tc_form_file(&f, images[i], data, len);
        free(data);
    }
    for (int i = 0; fields && fields[i]; i += 2)
        tc_form_field(&f, fields[i], fields[i + 1]);
    tc_form_end(&f);
    tc_post_form(port, "/v1/verify", NULL, &f, r);
    free(f.data);
}

/* verify's answer, which must be 200 */
static json_t *verify_ok(const char *const *images, const char *const *fields)
{
    tc_response r;
    post_verify(images, fields, &r);
    json_t *j = tc_expect_json(&r, 200);
    tc_response_free(&r);
    return j;
}

static void verify_error(const char *const *images, const char *const *fields, int status,
                         const char *code, const char *in_message)
{
    tc_response r;
    post_verify(images, fields, &r);
    tc_expect_error(&r, status, code);
    if (in_message && !strstr(r.body, in_message))
        fail_msg("the message does not say \"%s\": %s", in_message, r.body);
    tc_response_free(&r);
}

static const char *const obama_pair[] = {"image_a", FIXTURES "/id-obama-2.jpg", "image_b",
                                         FIXTURES "/id-obama-1.jpg", NULL};

/* Enrols penny1..4 once into collection "desk" (threshold as created: the default). */
static void enrol_penny(void)
{
    static int done;
    if (done) return;
    tc_create_collection(port, "desk");
    for (int i = 1; i <= 4; i++) {
        char path[256];
        snprintf(path, sizeof path, FIXTURES "/identities/penny/penny%d.png", i);
        size_t len;
        char *data = tc_load(path, &len);
        tc_form f = {0};
        tc_form_file(&f, "image", data, len);
        tc_form_field(&f, "subject", "penny");
        tc_form_end(&f);
        tc_response r;
        tc_post_form(port, "/v1/collections/desk/faces", NULL, &f, &r);
        json_decref(tc_expect_json(&r, 201));
        tc_response_free(&r);
        free(f.data);
        free(data);
    }
    done = 1;
}

static void test_threshold_source(void **state)
{
    (void)state;
    NEED_SERVER();
    /* two images: the server's default, said to be one */
    json_t *j = verify_ok(obama_pair, NULL);
    assert_string_equal(tc_json_str(j, "threshold_source"), "default");
    assert_true(tc_json_num(j, "similarity") > 0.95); /* the same man: 0.96 */
    assert_string_equal(tc_json_str(j, "decision"), "match");
    double def = tc_json_num(j, "threshold");
    json_decref(j);

    /* the request's own, stricter: the same pair is no longer enough */
    static const char *const strict[] = {"threshold", "0.99", NULL};
    j = verify_ok(obama_pair, strict);
    assert_string_equal(tc_json_str(j, "threshold_source"), "request");
    assert_true(fabs(tc_json_num(j, "threshold") - 0.99) < 1e-6);
    assert_string_equal(tc_json_str(j, "decision"), "no_match");
    assert_false(json_is_true(json_object_get(j, "match")));
    json_decref(j);

    /* against a subject: the collection's, then the request's over it */
    enrol_penny();
    json_decref(tc_call(port, "PATCH", "/v1/collections/desk", "{\"threshold\":0.5}", 200));
    static const char *const penny5[] = {"image", FIXTURES "/identities/penny/penny5.png", NULL};
    static const char *const subject[] = {"collection", "desk", "subject", "penny", NULL};
    j = verify_ok(penny5, subject);
    assert_string_equal(tc_json_str(j, "threshold_source"), "collection");
    assert_true(fabs(tc_json_num(j, "threshold") - 0.5) < 1e-6);
    assert_string_equal(tc_json_str(j, "decision"), "match");
    json_decref(j);
    static const char *const subject_strict[] = {"collection", "desk",  "subject", "penny",
                                                 "threshold",  "0.999", NULL};
    j = verify_ok(penny5, subject_strict);
    assert_string_equal(tc_json_str(j, "threshold_source"), "request");
    assert_string_equal(tc_json_str(j, "decision"), "no_match");
    json_decref(j);
    char reset[64]; /* back to the default, for the other tests */
    snprintf(reset, sizeof reset, "{\"threshold\":%.6f}", def);
    json_decref(tc_call(port, "PATCH", "/v1/collections/desk", reset, 200));
}

static void test_threshold_invalid(void **state)
{
    (void)state;
    NEED_SERVER();
    static const char *const bad[] = {"2", "-1.5", "high", "0.9x", "nan", NULL};
    for (int i = 0; bad[i]; i++) {
        const char *fields[] = {"threshold", bad[i], NULL};
        verify_error(obama_pair, fields, 422, "invalid_parameter", "threshold");
    }
    /* in the query string too, and before the image is looked at: none sent here */
    tc_response r;
    tc_request(port, "POST", "/v1/verify?threshold=1.01", "Content-Type: image/jpeg\r\n", "x", 1,
               &r);
    tc_expect_error(&r, 422, "invalid_parameter");
    tc_response_free(&r);
    /* the ends of the range are taken */
    static const char *const one[] = {"threshold", "1", NULL};
    json_t *j = verify_ok(obama_pair, one);
    assert_string_equal(tc_json_str(j, "decision"), "no_match");
    json_decref(j);
    static const char *const minus_one[] = {"threshold", "-1", NULL};
    j = verify_ok(obama_pair, minus_one);
    assert_string_equal(tc_json_str(j, "decision"), "match");
    json_decref(j);
}

/* The warning of this code in the answer's warnings (the test fails without one) */
static json_t *warning(json_t *answer, const char *code)
{
    json_t *warnings = json_object_get(answer, "warnings");
    if (!json_is_array(warnings)) fail_msg("no warnings array in the answer");
    size_t i;
    json_t *w;
    json_array_foreach(warnings, i, w)
    {
        if (strcmp(tc_json_str(w, "code"), code) == 0) {
            tc_json_str(w, "message");
            return w;
        }
    }
    char *text = json_dumps(warnings, 0);
    fail_msg("no %s warning: %s", code, text);
    return NULL;
}

static void expect_face_figures(json_t *face)
{
    double quality = tc_json_num(face, "quality");
    assert_true(quality > 0 && quality <= 1);
    json_t *live = json_object_get(face, "liveness");
    double score = tc_json_num(live, "score");
    assert_true(score >= 0 && score <= 1);
    tc_json_num(live, "antispoof");
    tc_json_num(live, "liveness");
}

static void test_faces_quality_liveness(void **state)
{
    (void)state;
    NEED_SERVER();
    json_t *j = verify_ok(obama_pair, NULL);
    expect_face_figures(json_object_get(j, "face_a"));
    /* the ID scan (image_b): its quality, and no liveness unless asked (the models did not run
     * for it: has_liveness is set only by them) */
    json_t *face_b = json_object_get(j, "face_b");
    double quality = tc_json_num(face_b, "quality");
    assert_true(quality > 0 && quality <= 1);
    if (json_object_get(face_b, "liveness"))
        fail_msg("the ID scan's liveness was computed without liveness_b: %s",
                 json_dumps(json_object_get(face_b, "liveness"), 0));
    /* the fixtures' ID photos are good: 0.8-0.9 */
    assert_true(quality > 0.5);
    assert_int_equal(json_array_size(json_object_get(j, "warnings")), 0);
    double similarity = tc_json_num(j, "similarity");
    json_decref(j);
    /* asked for: both faces have it, and the comparison is the same */
    static const char *const both[] = {"liveness_b", "true", NULL};
    j = verify_ok(obama_pair, both);
    expect_face_figures(json_object_get(j, "face_a"));
    expect_face_figures(json_object_get(j, "face_b"));
    assert_true(fabs(tc_json_num(j, "similarity") - similarity) < 1e-6);
    json_decref(j);
    static const char *const bad[] = {"maybe", "2", NULL};
    for (int i = 0; bad[i]; i++) {
        const char *fields[] = {"liveness_b", bad[i], NULL};
        verify_error(obama_pair, fields, 422, "invalid_parameter", "liveness_b");
    }
    /* against a subject: the face at the desk has them too */
    enrol_penny();
    static const char *const penny5[] = {"image", FIXTURES "/identities/penny/penny5.png", NULL};
    static const char *const subject[] = {"collection", "desk", "subject", "penny", NULL};
    j = verify_ok(penny5, subject);
    expect_face_figures(json_object_get(j, "face_a"));
    json_decref(j);
}

static void test_multiple_faces_said(void **state)
{
    (void)state;
    NEED_SERVER();
    static const char *const two[] = {"image_a", FIXTURES "/group-two-people.jpg", "image_b",
                                      FIXTURES "/id-obama-2.jpg", NULL};
    json_t *j = verify_ok(two, NULL);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "face_a"), "faces_in_image")), 2);
    const char *message = tc_json_str(warning(j, "multiple_faces"), "message");
    if (!strstr(message, "image_a") || !strstr(message, "most prominent"))
        fail_msg("the message does not say which image and which face: %s", message);
    json_decref(j);
}

static void test_small_id_photo_said(void **state)
{
    (void)state;
    NEED_SERVER();
    const char *const pair[] = {"image_a", FIXTURES "/id-obama-2.jpg", "image_b", small_id_path,
                                NULL};
    json_t *j = verify_ok(pair, NULL);
    assert_true(tc_json_num(json_object_get(j, "face_b"), "quality") < 0.1);
    const char *message = tc_json_str(warning(j, "low_quality"), "message");
    if (!strstr(message, "image_b") || !strstr(message, "small"))
        fail_msg("the message does not say which image and why: %s", message);
    json_decref(j);
}

static void test_min_liveness(void **state)
{
    (void)state;
    NEED_SERVER();
    /* no live face scores 1: asked for it, the answer is not_live whatever the similarity */
    static const char *const all[] = {"min_liveness", "1", NULL};
    json_t *j = verify_ok(obama_pair, all);
    assert_string_equal(tc_json_str(j, "decision"), "not_live");
    assert_false(json_is_true(json_object_get(j, "match")));
    assert_true(tc_json_num(j, "similarity") > 0.95); /* still reported */
    assert_true(fabs(tc_json_num(j, "min_liveness") - 1) < 1e-9);
    const char *message = tc_json_str(warning(j, "not_live"), "message");
    if (!strstr(message, "image_a")) fail_msg("the message does not say which image: %s", message);
    json_decref(j);
    /* 0 lets any face through */
    static const char *const none[] = {"min_liveness", "0", NULL};
    j = verify_ok(obama_pair, none);
    assert_string_equal(tc_json_str(j, "decision"), "match");
    json_decref(j);
    /* against a subject too */
    enrol_penny();
    static const char *const penny5[] = {"image", FIXTURES "/identities/penny/penny5.png", NULL};
    static const char *const subject[] = {"collection",   "desk", "subject", "penny",
                                          "min_liveness", "1",    NULL};
    j = verify_ok(penny5, subject);
    assert_string_equal(tc_json_str(j, "decision"), "not_live");
    json_decref(j);
    static const char *const bad[] = {"-0.1", "1.5", "live", NULL};
    for (int i = 0; bad[i]; i++) {
        const char *fields[] = {"min_liveness", bad[i], NULL};
        verify_error(obama_pair, fields, 422, "invalid_parameter", "min_liveness");
    }
}

/* The server's log line of request `id` (parsed; the caller's), waiting up to 5 s for it. */
static json_t *log_line(const char *id)
{
    for (int tries = 0; tries < 50; tries++) {
        size_t len;
        char *text = NULL;
        if (tc_read_file(srv.log, &text, &len) == 0) {
            for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
                json_t *j = json_loads(line, 0, NULL);
                const char *msg = json_string_value(json_object_get(j, "msg"));
                const char *rid = json_string_value(json_object_get(j, "id"));
                if (msg && rid && strcmp(msg, "request") == 0 && strcmp(rid, id) == 0) {
                    free(text);
                    return j;
                }
                json_decref(j);
            }
        }
        free(text);
        tc_sleep_ms(100);
    }
    fail_msg("no log line for request %s in %s", id, srv.log);
    return NULL;
}

static void post_verify_id(const char *id, const char *const *images, const char *const *fields,
                           tc_response *r)
{
    tc_form f = {0};
    for (int i = 0; images[i]; i += 2) {
        size_t len;
        char *data = tc_load(images[i + 1], &len);
        tc_form_file(&f, images[i], data, len);
        free(data);
    }
    for (int i = 0; fields && fields[i]; i += 2)
        tc_form_field(&f, fields[i], fields[i + 1]);
    tc_form_end(&f);
    char headers[128];
    snprintf(headers, sizeof headers, "X-Request-Id: %s\r\n", id);
    tc_post_form(port, "/v1/verify", headers, &f, r);
    free(f.data);
}

static void test_audit_log_line(void **state)
{
    (void)state;
    NEED_SERVER();
    enrol_penny();
    static const char *const penny5[] = {"image", FIXTURES "/identities/penny/penny5.png", NULL};
    static const char *const subject[] = {"collection", "desk", "subject", "penny", NULL};
    tc_response r;
    post_verify_id("desk-audit-1", penny5, subject, &r);
    json_t *answer = tc_expect_json(&r, 200);
    tc_response_free(&r);
    json_t *line = log_line("desk-audit-1");
    assert_string_equal(tc_json_str(line, "collection"), "desk");
    assert_string_equal(tc_json_str(line, "subject"), "penny");
    assert_string_equal(tc_json_str(line, "decision"), tc_json_str(answer, "decision"));
    assert_true(fabs(tc_json_num(line, "similarity") - tc_json_num(answer, "similarity")) < 1e-6);
    assert_true(fabs(tc_json_num(line, "threshold") - tc_json_num(answer, "threshold")) < 1e-6);
    assert_int_equal(json_integer_value(json_object_get(line, "status")), 200);
    tc_json_str(line, "ts");
    /* no pixels, no embedding: the line stays short and has no array of numbers */
    char *text = json_dumps(line, 0);
    assert_true(strlen(text) < 600);
    assert_null(json_object_get(line, "embedding"));
    free(text);
    json_decref(line);
    json_decref(answer);

    /* two images: the decision and the warnings' codes; no subject */
    static const char *const two[] = {"image_a", FIXTURES "/group-two-people.jpg", "image_b",
                                      FIXTURES "/id-obama-2.jpg", NULL};
    post_verify_id("desk-audit-2", two, NULL, &r);
    answer = tc_expect_json(&r, 200);
    tc_response_free(&r);
    line = log_line("desk-audit-2");
    assert_string_equal(tc_json_str(line, "decision"), tc_json_str(answer, "decision"));
    json_decref(answer);
    assert_null(json_object_get(line, "subject"));
    assert_string_equal(json_string_value(json_array_get(json_object_get(line, "warnings"), 0)),
                        "multiple_faces");
    json_decref(line);

    /* a refusal names whom it was for */
    static const char *const blank[] = {"image", FIXTURES "/noface-white.png", NULL};
    post_verify_id("desk-audit-3", blank, subject, &r);
    tc_expect_error(&r, 422, "no_face");
    tc_response_free(&r);
    line = log_line("desk-audit-3");
    assert_string_equal(tc_json_str(line, "subject"), "penny");
    assert_string_equal(tc_json_str(line, "error"), "no_face");
    assert_null(json_object_get(line, "decision"));
    json_decref(line);
}

#define LFW "../shared/data/lfw-dev/images"

static void test_bystander_at_the_edge(void **state)
{
    (void)state;
    NEED_SERVER();
    if (!tc_exists(LFW "/Ian_Thorpe/Ian_Thorpe_0010.jpg")) {
        print_message(LFW " is absent: skipped\n");
        skip();
    }
    /* Ian_Thorpe_0010 (250x250): a bystander at the left edge, box 109 px wide from x -6,
     * and Ian Thorpe in the centre, 99 px */
    static const char *const pair[] = {"image_a", LFW "/Ian_Thorpe/Ian_Thorpe_0010.jpg", "image_b",
                                       LFW "/Ian_Thorpe/Ian_Thorpe_0003.jpg", NULL};
    json_t *j = verify_ok(pair, NULL);
    json_t *box = json_object_get(json_object_get(j, "face_a"), "box");
    double centre = tc_json_num(box, "x") + tc_json_num(box, "width") / 2;
    if (centre < 100 || centre > 150)
        fail_msg("the bystander was compared: box centre x %.0f", centre);
    assert_string_equal(tc_json_str(j, "decision"), "match");
    warning(j, "multiple_faces");
    json_decref(j);
}

/* Enrolment takes the face verify compares: a photo enrolled and then verified against its
 * subject compares the very face it stored. With the largest box, enrolment stored
 * Ian_Thorpe_0010's bystander and verify compared Ian Thorpe against him. */
static void test_enrolled_photo_verifies_itself(void **state)
{
    (void)state;
    NEED_SERVER();
    if (!tc_exists(LFW "/Ian_Thorpe/Ian_Thorpe_0010.jpg")) {
        print_message(LFW " is absent: skipped\n");
        skip();
    }
    const char *photo = LFW "/Ian_Thorpe/Ian_Thorpe_0010.jpg";
    tc_create_collection(port, "edge");
    size_t len;
    char *data = tc_load(photo, &len);
    tc_form f = {0};
    tc_form_file(&f, "image", data, len);
    tc_form_field(&f, "subject", "thorpe");
    tc_form_end(&f);
    tc_response r;
    tc_post_form(port, "/v1/collections/edge/faces", NULL, &f, &r);
    json_t *enrolled = tc_expect_json(&r, 201);
    tc_response_free(&r);
    free(f.data);
    free(data);
    json_t *box = json_object_get(enrolled, "box");
    double centre = tc_json_num(box, "x") + tc_json_num(box, "width") / 2;
    if (centre < 100 || centre > 150)
        fail_msg("enrolment stored the bystander: box centre x %.0f", centre);
    json_decref(enrolled);

    static const char *const fields[] = {"collection", "edge", "subject", "thorpe", NULL};
    const char *const image[] = {"image", photo, NULL};
    json_t *j = verify_ok(image, fields);
    double similarity = tc_json_num(j, "similarity");
    if (similarity < 0.999)
        fail_msg("the enrolled photo against its own subject: similarity %.3f, decision %s",
                 similarity, tc_json_str(j, "decision"));
    print_message("Ian_Thorpe_0010 enrolled, then verified against its subject: %.4f\n",
                  similarity);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threshold_source),       cmocka_unit_test(test_threshold_invalid),
        cmocka_unit_test(test_faces_quality_liveness), cmocka_unit_test(test_multiple_faces_said),
        cmocka_unit_test(test_small_id_photo_said),    cmocka_unit_test(test_min_liveness),
        cmocka_unit_test(test_audit_log_line),         cmocka_unit_test(test_bystander_at_the_edge),
        cmocka_unit_test(test_enrolled_photo_verifies_itself),
    };
    return cmocka_run_group_tests_name("verify at a desk", tests, setup, teardown);
}
