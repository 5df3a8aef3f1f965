/*
 * POST /v1/verify as a service desk uses it: the clerk's software sends the photo taken at the
 * desk and the scan of an ID photo (or names an enrolled subject) and acts on the answer, and
 * files it. Each test was written against something the walk-through found missing:
 *
 *   - threshold: a request's own threshold (a stricter one for a large withdrawal) decides,
 *     and the answer says where its threshold came from (request, collection, default); a
 *     value outside [-1, 1] or not a number is 422 invalid_parameter naming it (it used to be
 *     ignored: threshold=2 answered 200 with the default's decision).
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

#define FIXTURES "../shared/data/fixtures"

static tc_server srv;
static char srv_dir[256];
static int port;

static int have_data(void)
{
    return tc_exists(FIXTURES "/id-obama-1.jpg") && tc_exists(FIXTURES "/identities/penny");
}

#define NEED_SERVER()                                                                              \
    do {                                                                                           \
        TC_NEED_MODELS();                                                                          \
        if (!have_data()) {                                                                        \
            print_message(FIXTURES " is absent: skipped\n");                                       \
            skip();                                                                                \
        }                                                                                          \
        assert_true(srv.pid > 0);                                                                  \
    } while (0)

static int setup(void **state)
{
    (void)state;
    if (!tc_have_models() || !have_data()) return 0;
    if (tc_temp_dir(srv_dir) != 0) return -1;
    /* a deadline of a minute: a loaded machine's 503 is not what these tests are about */
    static const char *const args[] = {"--workers", "2", "--deadline-ms", "60000", NULL};
    if (tc_server_start(&srv, srv_dir, args, 1) != 0) return -1;
    port = srv.port;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int rc = srv.pid > 0 ? tc_server_stop(&srv) : 0;
    if (srv_dir[0]) tc_rm_rf(srv_dir);
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

static const char *str(json_t *j, const char *key)
{
    const char *s = json_string_value(json_object_get(j, key));
    if (!s) fail_msg("no string %s in the answer", key);
    return s;
}

static double real(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    if (!json_is_number(v)) fail_msg("no number %s in the answer", key);
    return json_number_value(v);
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
    assert_string_equal(str(j, "threshold_source"), "default");
    assert_true(real(j, "similarity") > 0.95); /* the same man: 0.96 */
    assert_string_equal(str(j, "decision"), "match");
    double def = real(j, "threshold");
    json_decref(j);

    /* the request's own, stricter: the same pair is no longer enough */
    static const char *const strict[] = {"threshold", "0.99", NULL};
    j = verify_ok(obama_pair, strict);
    assert_string_equal(str(j, "threshold_source"), "request");
    assert_true(fabs(real(j, "threshold") - 0.99) < 1e-6);
    assert_string_equal(str(j, "decision"), "no_match");
    assert_false(json_is_true(json_object_get(j, "match")));
    json_decref(j);

    /* against a subject: the collection's, then the request's over it */
    enrol_penny();
    json_decref(tc_call(port, "PATCH", "/v1/collections/desk", "{\"threshold\":0.5}", 200));
    static const char *const penny5[] = {"image", FIXTURES "/identities/penny/penny5.png", NULL};
    static const char *const subject[] = {"collection", "desk", "subject", "penny", NULL};
    j = verify_ok(penny5, subject);
    assert_string_equal(str(j, "threshold_source"), "collection");
    assert_true(fabs(real(j, "threshold") - 0.5) < 1e-6);
    assert_string_equal(str(j, "decision"), "match");
    json_decref(j);
    static const char *const subject_strict[] = {"collection", "desk",      "subject", "penny",
                                                 "threshold",  "0.999", NULL};
    j = verify_ok(penny5, subject_strict);
    assert_string_equal(str(j, "threshold_source"), "request");
    assert_string_equal(str(j, "decision"), "no_match");
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
    assert_string_equal(str(j, "decision"), "no_match");
    json_decref(j);
    static const char *const minus_one[] = {"threshold", "-1", NULL};
    j = verify_ok(obama_pair, minus_one);
    assert_string_equal(str(j, "decision"), "match");
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threshold_source),
        cmocka_unit_test(test_threshold_invalid),
    };
    return cmocka_run_group_tests_name("verify at a desk", tests, setup, teardown);
}
