/*
 * One face under two subjects: POST /v1/collections/{c}/faces searches the collection for
 * other subjects the new face matches (similarity at or above the collection's threshold)
 * before storing it. Before, a face that already matched another subject was stored without a
 * word: an attendee registered twice under two badge ids, or one face under two identities,
 * went unnoticed.
 *
 *   - the 201 carries also_matches: the other subjects, best first ([] when none); the
 *     subject being enrolled is never in it (a second photo of one person is no warning);
 *   - on_match=refuse (query, multipart field or JSON field) makes such an enrolment a 409
 *     matches_other_subject naming the subject and the similarity; nothing stored, no subject
 *     created; on_match=store is the default; another value is 422 invalid_parameter;
 *   - the collection's threshold decides: above the pair's similarity, nothing is reported;
 *   - Idempotency-Key: the refusal is replayed; the same key without on_match=refuse is
 *     another request (idempotency_key_reused).
 *
 * Real photos: ../shared/data/fixtures' id-obama-1/2 (one man, two photos) and id-biden-1;
 * the real `vultus serve` of this build on loopback with the model pack. Skips without them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "client.h"
#include "http/internal.h"

#define OBAMA_1 "../shared/data/fixtures/id-obama-1.jpg"
#define OBAMA_2 "../shared/data/fixtures/id-obama-2.jpg"
#define BIDEN_1 "../shared/data/fixtures/id-biden-1.jpg"

static tc_server srv;
static char srv_dir[256];
static int port;
static char *obama1, *obama2, *biden1;
static size_t obama1_len, obama2_len, biden1_len;

static int have_fixtures(void)
{
    return tc_exists(OBAMA_1) && tc_exists(OBAMA_2) && tc_exists(BIDEN_1);
}

#define NEED_SERVER() TC_NEED_SERVER(srv, have_fixtures(), "../shared/data/fixtures")

static int setup(void **state)
{
    (void)state;
    if (!tc_have_models() || !have_fixtures()) return 0;
    obama1 = tc_load(OBAMA_1, &obama1_len);
    obama2 = tc_load(OBAMA_2, &obama2_len);
    biden1 = tc_load(BIDEN_1, &biden1_len);
    if (tc_server_start_patient(&srv, srv_dir) != 0) return -1;
    port = srv.port;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int rc = tc_server_stop_patient(&srv, srv_dir);
    free(obama1);
    free(obama2);
    free(biden1);
    return rc != 0;
}

/* Enrols a photo (raw body; `query` after subject=...) and returns its 201's also_matches (a
 * new reference), failing when the answer is not a 201 with that array. */
static json_t *enrol(const char *collection, const char *subject, const char *query,
                     const void *jpeg, size_t len)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/collections/%s/faces?subject=%s%s", collection, subject,
             query);
    tc_response r;
    tc_post_jpeg(port, path, NULL, jpeg, len, &r);
    json_t *j = tc_expect_json(&r, 201);
    json_t *also = json_object_get(j, "also_matches");
    if (!json_is_array(also)) fail_msg("%s: no also_matches array in %.400s", path, r.body);
    json_incref(also);
    json_decref(j);
    tc_response_free(&r);
    return also;
}

static double collection_threshold(const char *collection)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/collections/%s", collection);
    json_t *c = tc_call(port, "GET", path, NULL, 200);
    double t = json_number_value(json_object_get(c, "threshold"));
    json_decref(c);
    return t;
}

/* Obama's second photo enrolled as b names a (his first) in also_matches, with a similarity at
 * or above the threshold; Biden matches nobody; a second photo of a subject is no match of
 * its own. Everything is stored: the default reports, it does not refuse. */
static void test_also_matches(void **state)
{
    (void)state;
    NEED_SERVER();
    tc_create_collection(port, "desk");
    const double threshold = collection_threshold("desk");
    json_t *also = enrol("desk", "a", "", obama1, obama1_len);
    assert_int_equal(json_array_size(also), 0);
    json_decref(also);

    also = enrol("desk", "b", "", obama2, obama2_len);
    if (json_array_size(also) != 1)
        fail_msg("obama-2 as b: also_matches has %zu entries, want a alone", json_array_size(also));
    json_t *hit = json_array_get(also, 0);
    assert_string_equal(json_string_value(json_object_get(hit, "subject")), "a");
    const double similarity = json_number_value(json_object_get(hit, "similarity"));
    if (!(similarity >= threshold && similarity <= 1))
        fail_msg("a's similarity %g is not in [threshold %g, 1]", similarity, threshold);
    assert_true(json_integer_value(json_object_get(hit, "face_id")) > 0);
    json_decref(also);

    also = enrol("desk", "c", "", biden1, biden1_len);
    if (json_array_size(also) != 0) fail_msg("biden matched someone: %s", json_dumps(also, 0));
    json_decref(also);
    tc_expect_counts(port, "desk", 3, 3);

    /* one subject, two photos of him: not a match of another subject */
    tc_create_collection(port, "same");
    json_decref(enrol("same", "a", "", obama1, obama1_len));
    also = enrol("same", "a", "", obama2, obama2_len);
    assert_int_equal(json_array_size(also), 0);
    json_decref(also);
    /* the same photo for two subjects is the plainest case: similarity 1, best first */
    also = enrol("same", "z", "&on_match=store", obama2, obama2_len);
    assert_int_equal(json_array_size(also), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(also, 0), "subject")),
                        "a");
    assert_true(json_number_value(json_object_get(json_array_get(also, 0), "similarity")) >= 0.999);
    json_decref(also);
    tc_expect_counts(port, "same", 2, 3);
}

/* on_match=refuse: 409 matches_other_subject naming the subject, the similarity and the way
 * out; nothing stored and no subject created, however the option comes. A face that matches
 * nobody, or only its own subject, is still stored. */
static void test_refuse(void **state)
{
    (void)state;
    NEED_SERVER();
    tc_create_collection(port, "fraud");
    json_decref(enrol("fraud", "a", "&on_match=refuse", obama1, obama1_len));
    tc_response r;
    tc_post_jpeg(port, "/v1/collections/fraud/faces?subject=b&on_match=refuse", NULL, obama2,
                 obama2_len, &r);
    tc_expect_error(&r, 409, "matches_other_subject");
    char m[1024];
    tc_error_message(&r, m, sizeof m);
    tc_response_free(&r);
    if (!strstr(m, "subject a ") || !strstr(m, "similarity 0.") || !strstr(m, "on_match=refuse") ||
        !strstr(m, "nothing was stored"))
        fail_msg("matches_other_subject does not name the subject, the figure and the way out: "
                 "'%s'",
                 m);
    tc_expect_no_subject(port, "fraud", "b");
    tc_expect_counts(port, "fraud", 1, 1);

    /* as a multipart field and as a JSON field */
    tc_form f = {0};
    tc_form_field(&f, "subject", "b");
    tc_form_field(&f, "on_match", "refuse");
    tc_form_file(&f, "image", obama2, obama2_len);
    tc_form_end(&f);
    tc_post_form(port, "/v1/collections/fraud/faces", "", &f, &r);
    tc_expect_error(&r, 409, "matches_other_subject");
    tc_response_free(&r);
    free(f.data);
    char *b64 = malloc(obama2_len / 3 * 4 + 8);
    b64[http_base64url_encode((const uint8_t *)obama2, obama2_len, b64)] = '\0';
    size_t n = strlen(b64) + 128;
    char *body = malloc(n);
    snprintf(body, n, "{\"subject\":\"b\",\"on_match\":\"refuse\",\"image\":\"%s\"}", b64);
    tc_post_json(port, "/v1/collections/fraud/faces", "", body, &r);
    tc_expect_error(&r, 409, "matches_other_subject");
    tc_response_free(&r);
    free(body);
    free(b64);
    tc_expect_no_subject(port, "fraud", "b");
    tc_expect_counts(port, "fraud", 1, 1);

    /* an existing subject keeps what it had */
    json_decref(enrol("fraud", "c", "", biden1, biden1_len));
    tc_post_jpeg(port, "/v1/collections/fraud/faces?subject=c&on_match=refuse", NULL, obama2,
                 obama2_len, &r);
    tc_expect_error(&r, 409, "matches_other_subject");
    tc_response_free(&r);
    tc_expect_counts(port, "fraud", 2, 2);

    /* his own second photo is no conflict; on_match=store stores a match with its report */
    json_t *also = enrol("fraud", "a", "&on_match=refuse", obama2, obama2_len);
    assert_int_equal(json_array_size(also), 0);
    json_decref(also);
    also = enrol("fraud", "b", "&on_match=store", obama2, obama2_len);
    assert_int_equal(json_array_size(also), 1);
    json_decref(also);
    tc_expect_counts(port, "fraud", 3, 4);

    /* anything else is refused before the image is looked at */
    static const char *const bad[] = {"maybe", "", "REFUSE", "refuse%20",
                                      "refuseeeeeeeeeeeeeeeeeeeee"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[160];
        snprintf(path, sizeof path, "/v1/collections/fraud/faces?subject=d&on_match=%s", bad[i]);
        tc_post_jpeg(port, path, NULL, "not an image", 12, &r);
        tc_expect_error(&r, 422, "invalid_parameter");
        if (!strstr(tc_error_message(&r, m, sizeof m), "on_match"))
            fail_msg("'%s' does not name on_match", m);
        tc_response_free(&r);
    }
    tc_expect_no_subject(port, "fraud", "d");
}

/* The collection's threshold decides what is a match: above the pair's similarity, the same
 * enrolment reports nothing and on_match=refuse stores it. */
static void test_threshold_decides(void **state)
{
    (void)state;
    NEED_SERVER();
    json_decref(
        tc_call(port, "POST", "/v1/collections", "{\"name\":\"strict\",\"threshold\":0.999}", 201));
    json_decref(enrol("strict", "a", "", obama1, obama1_len));
    json_t *also = enrol("strict", "b", "&on_match=refuse", obama2, obama2_len);
    assert_int_equal(json_array_size(also), 0);
    json_decref(also);
    tc_expect_counts(port, "strict", 2, 2);
}

/* Idempotency-Key: the refusal is final and replayed; the same key without on_match=refuse is
 * another request; a new key stores it, once. */
static void test_idempotency(void **state)
{
    (void)state;
    NEED_SERVER();
    tc_create_collection(port, "idem");
    json_decref(enrol("idem", "a", "", obama1, obama1_len));
    const char *refuse = "/v1/collections/idem/faces?subject=b&on_match=refuse";
    tc_response r;
    tc_post_jpeg(port, refuse, "Idempotency-Key: dup-1\r\n", obama2, obama2_len, &r);
    tc_expect_error(&r, 409, "matches_other_subject");
    tc_response_free(&r);
    tc_post_jpeg(port, refuse, "Idempotency-Key: dup-1\r\n", obama2, obama2_len, &r);
    tc_expect_error(&r, 409, "matches_other_subject");
    char v[16];
    if (!tc_header(&r, "Idempotency-Replayed", v, sizeof v) || strcmp(v, "true") != 0)
        fail_msg("the retry of a refused enrolment was not the replayed answer");
    tc_response_free(&r);
    tc_post_jpeg(port, "/v1/collections/idem/faces?subject=b", "Idempotency-Key: dup-1\r\n", obama2,
                 obama2_len, &r);
    tc_expect_error(&r, 422, "idempotency_key_reused");
    tc_response_free(&r);
    tc_expect_no_subject(port, "idem", "b");
    tc_expect_counts(port, "idem", 1, 1);
    /* a new key stores it, once, and the replay carries the same also_matches */
    json_t *first = NULL;
    for (int i = 0; i < 2; i++) {
        tc_post_jpeg(port, "/v1/collections/idem/faces?subject=b", "Idempotency-Key: dup-2\r\n",
                     obama2, obama2_len, &r);
        json_t *j = tc_expect_json(&r, 201);
        tc_response_free(&r);
        assert_int_equal(json_array_size(json_object_get(j, "also_matches")), 1);
        if (first) {
            assert_true(json_equal(first, j));
            json_decref(j);
        } else {
            first = j;
        }
    }
    json_decref(first);
    tc_expect_counts(port, "idem", 2, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_also_matches),
        cmocka_unit_test(test_refuse),
        cmocka_unit_test(test_threshold_decides),
        cmocka_unit_test(test_idempotency),
    };
    return cmocka_run_group_tests_name("enrol duplicates", tests, setup, teardown);
}
