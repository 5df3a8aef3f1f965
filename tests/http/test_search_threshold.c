/*
 * POST /v1/collections/{c}/search takes the caller's threshold, as POST /v1/verify does. Search
 * used to decide every match with the collection's threshold only: a door that wanted to be
 * stricter for one entrance (or looser for a poor camera) had to change the collection for
 * everyone, or take the similarities and decide itself, where verify took `threshold` per
 * request. Each test was written against that:
 *
 *   - without `threshold` the collection's decides, and the answer says so
 *     (`threshold_source` "collection", `threshold` the collection's);
 *   - with one (query string, multipart field, JSON number) it decides every subject of every
 *     face, and the face's own answer (identity, decision), with `threshold_source` "request";
 *   - the same photo against the same subject at the same threshold gets the same similarity
 *     and decision from search as from verify, on either side of the similarity;
 *   - a threshold outside [-1, 1] or not a number is 422 invalid_parameter with verify's very
 *     words, refused by the precheck before the image is decoded: the detect stage's count in
 *     /metrics does not move for it.
 *
 * Real photos: ../shared/data/fixtures/identities (penny, leonard); the tests skip without
 * them, and without the model pack. The real `vultus serve` of this build on loopback.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "client.h"
#include "http/internal.h"

#define IDENTITIES "../shared/data/fixtures/identities"
#define PENNY5 IDENTITIES "/penny/penny5.png"

static tc_server srv;
static char srv_dir[256];
static int port;

static int have_data(void)
{
    return tc_exists(PENNY5) && tc_exists(IDENTITIES "/leonard/leonard4.png");
}

#define NEED_SERVER() TC_NEED_SERVER(srv, have_data(), IDENTITIES)

static int setup(void **state)
{
    (void)state;
    if (!tc_have_models() || !have_data()) return 0;
    if (tc_server_start_patient(&srv, srv_dir) != 0) return -1;
    port = srv.port;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return tc_server_stop_patient(&srv, srv_dir) != 0;
}

/* Collection "door" (the default threshold, as created) with penny1..4 and leonard1..4. */
static void enrol_once(void)
{
    static int done;
    if (done) return;
    tc_create_collection(port, "door");
    static const char *const who[] = {"penny", "leonard"};
    for (int s = 0; s < 2; s++)
        for (int i = 1; i <= 4; i++) {
            char path[256];
            snprintf(path, sizeof path, IDENTITIES "/%s/%s%d.png", who[s], who[s], i);
            size_t len;
            char *data = tc_load(path, &len);
            tc_form f = {0};
            tc_form_file(&f, "image", data, len);
            tc_form_field(&f, "subject", who[s]);
            tc_form_end(&f);
            tc_response r;
            tc_post_form(port, "/v1/collections/door/faces", NULL, &f, &r);
            json_decref(tc_expect_json(&r, 201));
            tc_response_free(&r);
            free(f.data);
            free(data);
        }
    done = 1;
}

/* POSTs penny5 to `path` as multipart, with fields (name, value pairs, NULL-terminated). */
static void post_form(const char *path, const char *const *fields, tc_response *r)
{
    size_t len;
    char *data = tc_load(PENNY5, &len);
    tc_form f = {0};
    tc_form_file(&f, "image", data, len);
    for (int i = 0; fields && fields[i]; i += 2)
        tc_form_field(&f, fields[i], fields[i + 1]);
    tc_form_end(&f);
    tc_post_form(port, path, NULL, &f, r);
    free(f.data);
    free(data);
}

/* penny5 searched in "door" with these fields (multipart); the answer, which must be 200. */
static json_t *search_form(const char *const *fields)
{
    tc_response r;
    post_form("/v1/collections/door/search", fields, &r);
    json_t *j = tc_expect_json(&r, 200);
    tc_response_free(&r);
    return j;
}

/* penny5 as the raw body, parameters in the query string of `path`. */
static void post_raw(const char *path, tc_response *r)
{
    size_t len;
    char *data = tc_load(PENNY5, &len);
    tc_request(port, "POST", path, "Content-Type: image/png\r\n", data, len, r);
    free(data);
}

/* penny5 as base64 in JSON, with `extra` members ("\"threshold\":0.5") beside it. */
static void post_json_image(const char *path, const char *extra, tc_response *r)
{
    size_t len;
    char *data = tc_load(PENNY5, &len);
    char *b64 = malloc(len / 3 * 4 + 8);
    http_base64url_encode((const uint8_t *)data, len, b64);
    size_t n = strlen(b64) + strlen(extra) + 32;
    char *body = malloc(n);
    snprintf(body, n, "{\"image\":\"%s\",%s}", b64, extra);
    tc_post_json(port, path, NULL, body, r);
    free(body);
    free(b64);
    free(data);
}

/* The one face of a search answer (penny5 shows one). */
static json_t *only_face(json_t *answer)
{
    json_t *faces = json_object_get(answer, "faces");
    assert_int_equal(json_array_size(faces), 1);
    return json_array_get(faces, 0);
}

/* The face's hit for this subject (the test fails without one). */
static json_t *hit(json_t *face, const char *subject)
{
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(face, "matches"), i, m)
    {
        if (strcmp(tc_json_str(m, "subject"), subject) == 0) return m;
    }
    fail_msg("no hit for %s", subject);
    return NULL;
}

static void test_collection_threshold_by_default(void **state)
{
    (void)state;
    NEED_SERVER();
    enrol_once();
    json_t *c = tc_call(port, "GET", "/v1/collections/door", NULL, 200);
    double collection_threshold = tc_json_num(c, "threshold");
    json_decref(c);
    json_t *j = search_form(NULL);
    assert_string_equal(tc_json_str(j, "threshold_source"), "collection");
    assert_true(fabs(tc_json_num(j, "threshold") - collection_threshold) < 1e-6);
    json_t *face = only_face(j);
    assert_string_equal(tc_json_str(face, "identity"), "penny");
    assert_string_equal(tc_json_str(hit(face, "penny"), "decision"), "match");
    json_decref(j);
}

/* Every subject's decision in the face, and the face's own, follow the threshold. */
static void expect_all_decided(json_t *answer, double threshold)
{
    json_t *face = only_face(answer);
    size_t i;
    json_t *m;
    int any = 0;
    json_array_foreach(json_object_get(face, "matches"), i, m)
    {
        int match = tc_json_num(m, "similarity") >= threshold;
        assert_string_equal(tc_json_str(m, "decision"), match ? "match" : "no_match");
        assert_int_equal(json_is_true(json_object_get(m, "match")), match);
        any |= match;
    }
    assert_string_equal(tc_json_str(face, "decision"), any ? "match" : "unknown");
    if (!any) {
        assert_true(json_is_null(json_object_get(face, "identity")));
        assert_true(json_is_null(json_object_get(face, "identity_metadata")));
    }
}

static void test_request_threshold_decides(void **state)
{
    (void)state;
    NEED_SERVER();
    enrol_once();
    /* stricter than penny5 scores against anyone: nobody is recognised (multipart field) */
    static const char *const strict[] = {"threshold", "0.9999", NULL};
    json_t *j = search_form(strict);
    assert_string_equal(tc_json_str(j, "threshold_source"), "request");
    assert_true(fabs(tc_json_num(j, "threshold") - 0.9999) < 1e-6);
    expect_all_decided(j, 0.9999);
    assert_string_equal(tc_json_str(only_face(j), "decision"), "unknown");
    json_decref(j);

    /* the lowest there is: every subject listed matches, the best is the identity (query) */
    tc_response r;
    post_raw("/v1/collections/door/search?threshold=-1", &r);
    j = tc_expect_json(&r, 200);
    tc_response_free(&r);
    assert_string_equal(tc_json_str(j, "threshold_source"), "request");
    assert_true(fabs(tc_json_num(j, "threshold") + 1) < 1e-6);
    json_t *face = only_face(j);
    assert_string_equal(tc_json_str(hit(face, "leonard"), "decision"), "match");
    assert_string_equal(tc_json_str(face, "identity"), "penny");
    expect_all_decided(j, -1);
    json_decref(j);

    /* a JSON number beside a base64 image */
    post_json_image("/v1/collections/door/search", "\"threshold\":0.9999", &r);
    j = tc_expect_json(&r, 200);
    tc_response_free(&r);
    assert_string_equal(tc_json_str(j, "threshold_source"), "request");
    assert_string_equal(tc_json_str(only_face(j), "decision"), "unknown");
    json_decref(j);
}

/* verify's answer for penny5 against `subject` of "door" at `threshold`. */
static json_t *verify_subject(const char *subject, const char *threshold)
{
    const char *const fields[] = {"collection", "door",    "subject", subject,
                                  "threshold",  threshold, NULL};
    tc_response r;
    post_form("/v1/verify", fields, &r);
    json_t *j = tc_expect_json(&r, 200);
    tc_response_free(&r);
    return j;
}

static void test_same_decision_as_verify(void **state)
{
    (void)state;
    NEED_SERVER();
    enrol_once();
    static const char *const subjects[] = {"penny", "leonard"};
    for (int s = 0; s < 2; s++) {
        /* the subject's similarity, then thresholds on either side of it, and fixed ones */
        json_t *v = verify_subject(subjects[s], "0.5");
        double similarity = tc_json_num(v, "similarity");
        json_decref(v);
        char thresholds[6][32];
        snprintf(thresholds[0], 32, "%.6f", similarity - 1e-4);
        snprintf(thresholds[1], 32, "%.6f", similarity + 1e-4);
        snprintf(thresholds[2], 32, "0.3");
        snprintf(thresholds[3], 32, "0.6");
        snprintf(thresholds[4], 32, "0.93");
        snprintf(thresholds[5], 32, "0.99");
        int matches = 0;
        for (int t = 0; t < 6; t++) {
            v = verify_subject(subjects[s], thresholds[t]);
            const char *fields[] = {"threshold", thresholds[t], NULL};
            json_t *j = search_form(fields);
            json_t *h = hit(only_face(j), subjects[s]);
            if (fabs(tc_json_num(h, "similarity") - tc_json_num(v, "similarity")) > 1e-6 ||
                strcmp(tc_json_str(h, "decision"), tc_json_str(v, "decision")) != 0)
                fail_msg("%s at threshold %s: search %.6f %s, verify %.6f %s", subjects[s],
                         thresholds[t], tc_json_num(h, "similarity"), tc_json_str(h, "decision"),
                         tc_json_num(v, "similarity"), tc_json_str(v, "decision"));
            assert_true(fabs(tc_json_num(j, "threshold") - tc_json_num(v, "threshold")) < 1e-9);
            assert_string_equal(tc_json_str(j, "threshold_source"),
                                tc_json_str(v, "threshold_source"));
            matches += strcmp(tc_json_str(v, "decision"), "match") == 0;
            json_decref(j);
            json_decref(v);
        }
        /* the two thresholds around the similarity decide both ways */
        assert_true(matches >= 1 && matches <= 5);
        print_message("%s: similarity %.6f, %d of 6 thresholds match, search and verify alike\n",
                      subjects[s], similarity, matches);
    }
}

/* The error's message of a response that must be 422 invalid_parameter. */
static void expect_invalid(tc_response *r, char *message, size_t cap)
{
    tc_expect_error(r, 422, "invalid_parameter");
    tc_error_message(r, message, cap);
    if (!strstr(message, "threshold")) fail_msg("the message does not name threshold: %s", message);
}

static void test_threshold_invalid(void **state)
{
    (void)state;
    NEED_SERVER();
    enrol_once();
    static const char *const bad[] = {"2", "-1.5", "high", "0.9x", "nan", "", NULL};
    for (int i = 0; bad[i]; i++) {
        const char *fields[] = {"threshold", bad[i], NULL};
        tc_response r;
        char search_message[256], verify_message[256];
        post_form("/v1/collections/door/search", fields, &r);
        expect_invalid(&r, search_message, sizeof search_message);
        tc_response_free(&r);
        const char *verify_fields[] = {"collection", "door", "subject", "penny",
                                       "threshold",  bad[i], NULL};
        post_form("/v1/verify", verify_fields, &r);
        expect_invalid(&r, verify_message, sizeof verify_message);
        tc_response_free(&r);
        assert_string_equal(search_message, verify_message);
    }
    char message[256];
    tc_response r;
    post_raw("/v1/collections/door/search?threshold=1.01", &r);
    expect_invalid(&r, message, sizeof message);
    tc_response_free(&r);
    post_json_image("/v1/collections/door/search", "\"threshold\":2", &r);
    expect_invalid(&r, message, sizeof message);
    tc_response_free(&r);
    /* the ends of the range are taken */
    static const char *const one[] = {"threshold", "1", NULL};
    json_t *j = search_form(one);
    assert_string_equal(tc_json_str(only_face(j), "decision"), "unknown");
    json_decref(j);
}

/* A bad threshold is refused before the image is decoded: the precheck (run before the
 * pipeline) reads it as the handler does. Had the prepare step run the pipeline for these
 * requests, their detect stage would count in /metrics (an image prepared and not taken still
 * counts). */
static void test_refused_before_the_pipeline(void **state)
{
    (void)state;
    NEED_SERVER();
    enrol_once();
    double before = tc_metric(port, DETECT_RUNS, 0);
    static const char *const bad[] = {"threshold", "2", NULL};
    tc_response r;
    post_form("/v1/collections/door/search", bad, &r);
    tc_expect_error(&r, 422, "invalid_parameter");
    tc_response_free(&r);
    post_raw("/v1/collections/door/search?threshold=-3", &r);
    tc_expect_error(&r, 422, "invalid_parameter");
    tc_response_free(&r);
    /* then one that runs it: the count moves by exactly one */
    json_decref(search_form(NULL));
    double after = tc_metric(port, DETECT_RUNS, 0);
    for (int i = 0; i < 200 && after == before; i++) {
        tc_sleep_ms(10); /* the stage metrics are written when the response has gone out */
        after = tc_metric(port, DETECT_RUNS, 0);
    }
    tc_sleep_ms(200); /* and the refused requests', had they run it, long before */
    after = tc_metric(port, DETECT_RUNS, 0);
    if (after != before + 1)
        fail_msg("detect ran %.0f times for two refused searches and one answered", after - before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_collection_threshold_by_default),
        cmocka_unit_test(test_request_threshold_decides),
        cmocka_unit_test(test_same_decision_as_verify),
        cmocka_unit_test(test_threshold_invalid),
        cmocka_unit_test(test_refused_before_the_pipeline),
    };
    return cmocka_run_group_tests_name("search threshold", tests, setup, teardown);
}
