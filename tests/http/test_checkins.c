/*
 * The check-in record through the real `vultus serve` on loopback: POST, GET and DELETE
 * /v1/collections/{c}/checkins. The record used to live in the web page's local storage, so
 * two doors of one event kept two lists; it is now the store's, and these routes are its API:
 *
 *   - POST is search (the same input and answer, decided by the same rule: the collection's
 *     threshold or the request's) plus, per face, what its arrival did (checked_in, then
 *     same_arrival when it comes again at once, not_recognised for a stranger) and the
 *     record's counts at the top level;
 *   - GET lists the record with each subject's metadata, newest first, in pages whose cursor
 *     is the answer's next_after;
 *   - DELETE starts a new event: {"cleared": n}, then an empty record that has not begun;
 *   - the scopes: a read key may GET, and is refused the POST and the DELETE (403);
 *   - a door: ?door= on a check-in (or a JSON body's "door", a multipart field), from a
 *     checkin key too, is kept as the subject's first_door and last_door, which POST's
 *     per-face checkin and GET's records carry (null when none was sent); a name that is not a
 *     door (65 bytes, empty, a control character, not UTF-8) is 422 invalid_parameter;
 *   - an unknown collection is 404 collection_not_found on all three;
 *   - /openapi.json documents the three;
 *   - /metrics counts each face's arrival by status (vultus_checkins_total{status}), with HELP
 *     and TYPE, every status served from the start (0 until it happens), and only the faces
 *     of a check-in that was recorded: a refused POST (403, 404) counts nothing.
 *
 * Real photos: ../shared/data/fixtures (penny and leonard enrolled, obama the stranger); the
 * tests skip without them, and without the model pack. Re-arrivals after 10 s are tested in
 * tests/gallery (the clock is injectable there; a server's is the wall clock).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "client.h"
#include "http/internal.h"

#define FIXTURES "../shared/data/fixtures"
#define IDENTITIES FIXTURES "/identities"
#define PENNY5 IDENTITIES "/penny/penny5.png"
#define LEONARD4 IDENTITIES "/leonard/leonard4.png"
#define STRANGER FIXTURES "/id-obama-1.jpg"
#define PNG_CT "Content-Type: image/png\r\n"
#define JPEG_CT "Content-Type: image/jpeg\r\n"

static tc_server srv;
static char srv_dir[256];
static int port;
static char admin[200], reader[200], door_key[200]; /* "Authorization: Bearer KEY\r\n" */

static int have_data(void)
{
    return tc_exists(PENNY5) && tc_exists(LEONARD4) && tc_exists(STRANGER) &&
           tc_exists(IDENTITIES "/leonard/leonard3.png") &&
           tc_exists(IDENTITIES "/penny/penny3.png");
}

#define NEED_SERVER() TC_NEED_SERVER(srv, have_data(), FIXTURES)

static int make_key(const char *dir, const char *scope, char *header, size_t cap)
{
    const char *args[] = {"keys", "create", "--scope", scope, "--data", dir, NULL};
    return tc_key_header(args, header, cap, NULL, 0);
}

static int setup(void **state)
{
    (void)state;
    if (!tc_have_models() || !have_data()) return 0;
    if (tc_temp_dir(srv_dir) != 0) return -1;
    if (make_key(srv_dir, "admin", admin, sizeof admin) ||
        make_key(srv_dir, "read", reader, sizeof reader) ||
        make_key(srv_dir, "checkin", door_key, sizeof door_key))
        return -1;
    static const char *const args[] = {"--workers", "2", "--deadline-ms", "60000", NULL};
    if (tc_server_start(&srv, srv_dir, args, 1) != 0) return -1;
    port = srv.port;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return tc_server_stop_patient(&srv, srv_dir) != 0;
}

/* A request with the key `auth` (and a content type in `ctype`, or NULL), whose answer must
 * have `status`: its JSON (the caller's). */
static json_t *call(const char *method, const char *path, const char *auth, const char *ctype,
                    const void *body, size_t len, int status)
{
    char headers[400];
    snprintf(headers, sizeof headers, "%s%s", auth, ctype ? ctype : "");
    tc_response r;
    tc_request(port, method, path, headers, body, len, &r);
    json_t *j = tc_expect_json(&r, status);
    tc_response_free(&r);
    return j;
}

/* A request whose answer must be this error. */
static void call_error(const char *method, const char *path, const char *auth, const char *ctype,
                       const void *body, size_t len, int status, const char *code)
{
    char headers[400];
    snprintf(headers, sizeof headers, "%s%s", auth, ctype ? ctype : "");
    tc_response r;
    tc_request(port, method, path, headers, body, len, &r);
    tc_expect_error(&r, status, code);
    tc_response_free(&r);
}

/* POSTs the photo at `file` to `path` as the raw body, with the admin key: the answer (200). */
static json_t *post_photo(const char *path, const char *file)
{
    size_t len;
    char *data = tc_load(file, &len);
    json_t *j = call("POST", path, admin, strstr(file, ".png") ? PNG_CT : JPEG_CT, data, len, 200);
    free(data);
    return j;
}

/* The answer's one face (these photos show one). */
static json_t *only_face(json_t *answer)
{
    json_t *faces = json_object_get(answer, "faces");
    assert_int_equal(json_array_size(faces), 1);
    return json_array_get(faces, 0);
}

static long long num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v)) fail_msg("%s is not an integer", key);
    return (long long)json_integer_value(v);
}

static void expect_counts(json_t *summary, long long checked_in, long long subjects,
                          long long not_recognised)
{
    assert_int_equal(num(summary, "checked_in"), checked_in);
    assert_int_equal(num(summary, "subjects"), subjects);
    assert_int_equal(num(summary, "not_recognised"), not_recognised);
}

/* Collection `name` with penny (metadata {"name":"Penny"}) and leonard, three photos each. */
static void enrol(const char *name)
{
    char body[128], path[256];
    snprintf(body, sizeof body, "{\"name\":\"%s\"}", name);
    json_decref(call("POST", "/v1/collections", admin, "Content-Type: application/json\r\n", body,
                     strlen(body), 201));
    static const char *const who[] = {"penny", "leonard"};
    for (int s = 0; s < 2; s++)
        for (int i = 1; i <= 3; i++) {
            char file[256];
            snprintf(file, sizeof file, IDENTITIES "/%s/%s%d.png", who[s], who[s], i);
            snprintf(path, sizeof path, "/v1/collections/%s/faces?subject=%s", name, who[s]);
            size_t len;
            char *data = tc_load(file, &len);
            json_decref(call("POST", path, admin, PNG_CT, data, len, 201));
            free(data);
        }
    snprintf(path, sizeof path, "/v1/collections/%s/subjects/penny", name);
    const char *meta = "{\"metadata\":{\"name\":\"Penny\"}}";
    json_decref(
        call("PATCH", path, admin, "Content-Type: application/json\r\n", meta, strlen(meta), 200));
}

/* vultus_checkins_total per status, in gal_checkin_status order. */
static const char *const statuses[] = {"checked_in", "already_checked_in", "same_arrival",
                                       "not_recognised"};
#define STATUSES (sizeof statuses / sizeof statuses[0])

/* The counters now, each required to be served (-1 would fail the difference checks). */
static void read_checkin_counts(double *counts)
{
    char *page = tc_metrics_page(port);
    if (!strstr(page, "# TYPE vultus_checkins_total counter\n") ||
        !strstr(page, "# HELP vultus_checkins_total "))
        fail_msg("/metrics has no HELP and TYPE counter for vultus_checkins_total");
    for (size_t i = 0; i < STATUSES; i++) {
        char series[96];
        snprintf(series, sizeof series, "vultus_checkins_total{status=\"%s\"}", statuses[i]);
        counts[i] = tc_metric_in(page, series, -1);
        if (counts[i] < 0) fail_msg("/metrics has no %s", series);
    }
    free(page);
}

static void test_checkin_round(void **state)
{
    (void)state;
    NEED_SERVER();
    double before[STATUSES], after[STATUSES];
    read_checkin_counts(before);
    enrol("event");
    const char *P = "/v1/collections/event/checkins";

    /* The first arrival: search's answer, and the check-in. */
    json_t *a = post_photo(P, PENNY5);
    json_t *face = only_face(a);
    assert_string_equal(tc_json_str(face, "decision"), "match");
    assert_string_equal(tc_json_str(face, "identity"), "penny");
    assert_true(json_array_size(json_object_get(face, "matches")) >= 1);
    assert_string_equal(tc_json_str(a, "threshold_source"), "collection");
    json_t *c = json_object_get(face, "checkin");
    assert_string_equal(tc_json_str(c, "status"), "checked_in");
    assert_string_equal(tc_json_str(c, "subject_id"), "penny");
    assert_int_equal(num(c, "arrivals"), 1);
    long long first = num(c, "first_seen_ms");
    assert_int_equal(num(c, "last_arrival_ms"), first);
    assert_true(json_number_value(json_object_get(c, "similarity")) >= 0.5);
    assert_true(json_is_null(json_object_get(c, "first_door"))); /* no door sent */
    assert_true(json_is_null(json_object_get(c, "last_door")));
    json_t *sum = json_object_get(a, "checkins");
    expect_counts(sum, 1, 2, 0);
    assert_int_equal(num(sum, "since_ms"), first);
    json_decref(a);

    /* Again at once: still at the door, nothing counted again. */
    a = post_photo(P, PENNY5);
    c = json_object_get(only_face(a), "checkin");
    assert_string_equal(tc_json_str(c, "status"), "same_arrival");
    assert_int_equal(num(c, "arrivals"), 1);
    assert_int_equal(num(c, "first_seen_ms"), first);
    expect_counts(json_object_get(a, "checkins"), 1, 2, 0);
    json_decref(a);

    /* A stranger: not recognised, counted, no subject fields. */
    a = post_photo(P, STRANGER);
    face = only_face(a);
    assert_string_equal(tc_json_str(face, "decision"), "unknown");
    c = json_object_get(face, "checkin");
    assert_string_equal(tc_json_str(c, "status"), "not_recognised");
    assert_null(json_object_get(c, "subject_id"));
    expect_counts(json_object_get(a, "checkins"), 1, 2, 1);
    json_decref(a);

    /* The request's threshold decides as search's does: leonard at 1.0 is nobody (and, within
     * 10 s of the stranger, the same stranger again: not counted twice). */
    a = post_photo("/v1/collections/event/checkins?threshold=1", LEONARD4);
    assert_string_equal(tc_json_str(a, "threshold_source"), "request");
    c = json_object_get(only_face(a), "checkin");
    assert_string_equal(tc_json_str(c, "status"), "not_recognised");
    expect_counts(json_object_get(a, "checkins"), 1, 2, 1);
    json_decref(a);

    /* The list, with a read key: penny with her metadata. */
    json_t *l = call("GET", P, reader, NULL, NULL, 0, 200);
    expect_counts(l, 1, 2, 1);
    assert_int_equal(num(l, "since_ms"), first);
    assert_true(json_is_null(json_object_get(l, "next_after")));
    json_t *items = json_object_get(l, "checkins");
    assert_int_equal(json_array_size(items), 1);
    json_t *it = json_array_get(items, 0);
    assert_string_equal(tc_json_str(it, "subject_id"), "penny");
    assert_string_equal(tc_json_str(json_object_get(it, "metadata"), "name"), "Penny");
    assert_int_equal(num(it, "first_seen_ms"), first);
    assert_int_equal(num(it, "last_arrival_ms"), first);
    assert_int_equal(num(it, "arrivals"), 1);
    assert_true(json_is_number(json_object_get(it, "similarity")));
    assert_true(json_is_null(json_object_get(it, "first_door")));
    assert_true(json_is_null(json_object_get(it, "last_door")));
    json_decref(l);

    /* Leonard by multipart (search's input forms): then two records, in pages of one, newest
     * first. */
    size_t len;
    char *data = tc_load(LEONARD4, &len);
    tc_form f = {0};
    tc_form_file(&f, "image", data, len);
    tc_form_field(&f, "k", "1");
    tc_form_end(&f);
    tc_response r;
    tc_post_form(port, P, admin, &f, &r);
    a = tc_expect_json(&r, 200);
    tc_response_free(&r);
    free(f.data);
    free(data);
    c = json_object_get(only_face(a), "checkin");
    assert_string_equal(tc_json_str(c, "status"), "checked_in");
    assert_string_equal(tc_json_str(c, "subject_id"), "leonard");
    expect_counts(json_object_get(a, "checkins"), 2, 2, 1);
    json_decref(a);
    l = call("GET", "/v1/collections/event/checkins?limit=1", reader, NULL, NULL, 0, 200);
    items = json_object_get(l, "checkins");
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(tc_json_str(json_array_get(items, 0), "subject_id"), "leonard");
    const char *next = tc_json_str(l, "next_after");
    char path[512];
    char escaped[256];
    size_t e = 0;
    for (const char *p = next; *p && e + 4 < sizeof escaped; p++) {
        if (*p == ':') {
            memcpy(escaped + e, "%3A", 3);
            e += 3;
        } else {
            escaped[e++] = *p;
        }
    }
    escaped[e] = '\0';
    snprintf(path, sizeof path, "/v1/collections/event/checkins?limit=1&after=%s", escaped);
    json_decref(l);
    l = call("GET", path, reader, NULL, NULL, 0, 200);
    items = json_object_get(l, "checkins");
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(tc_json_str(json_array_get(items, 0), "subject_id"), "penny");
    assert_true(json_is_null(json_object_get(l, "next_after")));
    json_decref(l);
    call_error("GET", "/v1/collections/event/checkins?after=penny", reader, NULL, NULL, 0, 422,
               "invalid_parameter");

    /* A read key may not record nor clear. */
    data = tc_load(PENNY5, &len);
    call_error("POST", P, reader, PNG_CT, data, len, 403, "forbidden");
    free(data);
    call_error("DELETE", P, reader, NULL, NULL, 0, 403, "forbidden");

    /* A new event: cleared, then an empty record that has not begun; the subjects stay. */
    json_t *d = call("DELETE", P, admin, NULL, NULL, 0, 200);
    assert_int_equal(num(d, "cleared"), 2);
    json_decref(d);
    l = call("GET", P, reader, NULL, NULL, 0, 200);
    expect_counts(l, 0, 2, 0);
    assert_true(json_is_null(json_object_get(l, "since_ms")));
    assert_int_equal(json_array_size(json_object_get(l, "checkins")), 0);
    json_decref(l);
    a = post_photo(P, PENNY5);
    c = json_object_get(only_face(a), "checkin");
    assert_string_equal(tc_json_str(c, "status"), "checked_in");
    json_decref(a);

    /* Deleting the subject deletes its record. */
    tc_request(port, "DELETE", "/v1/collections/event/subjects/penny", admin, NULL, 0, &r);
    assert_int_equal(r.status, 204);
    tc_response_free(&r);
    l = call("GET", P, reader, NULL, NULL, 0, 200);
    expect_counts(l, 0, 1, 0);
    assert_int_equal(json_array_size(json_object_get(l, "checkins")), 0);
    json_decref(l);

    /* /metrics counted each face by what its arrival did: penny, leonard and penny again
     * after the DELETE checked in; penny's second POST the same arrival; the stranger and
     * leonard at threshold 1 not recognised (the second not counted in the record, being the
     * same stranger within 10 s, but a face the door saw all the same); the read key's
     * refused POST nothing. */
    read_checkin_counts(after);
    static const double expected[STATUSES] = {3, 0, 1, 2};
    for (size_t i = 0; i < STATUSES; i++)
        if (after[i] - before[i] != expected[i])
            fail_msg("vultus_checkins_total{status=\"%s\"} went from %g to %g (expected +%g)",
                     statuses[i], before[i], after[i], expected[i]);
}

/* The answer's one face's checkin, whose doors must be these (NULL: null); the answer freed. */
static void expect_checkin(json_t *answer, const char *status, const char *first_door,
                           const char *last_door)
{
    json_t *c = json_object_get(only_face(answer), "checkin");
    assert_string_equal(tc_json_str(c, "status"), status);
    json_t *first = json_object_get(c, "first_door"), *last = json_object_get(c, "last_door");
    if (first_door)
        assert_string_equal(json_string_value(first), first_door);
    else
        assert_true(json_is_null(first));
    if (last_door)
        assert_string_equal(json_string_value(last), last_door);
    else
        assert_true(json_is_null(last));
    json_decref(answer);
}

/* `file` as base64 in a JSON body with `extra` members beside it ("\"door\":\"South\""). */
static char *json_image(const char *file, const char *extra)
{
    size_t len;
    char *data = tc_load(file, &len);
    char *b64 = malloc(len / 3 * 4 + 8);
    http_base64url_encode((const uint8_t *)data, len, b64);
    size_t n = strlen(b64) + strlen(extra) + 32;
    char *body = malloc(n);
    snprintf(body, n, "{\"image\":\"%s\",%s}", b64, extra);
    free(b64);
    free(data);
    return body;
}

static void test_checkin_doors(void **state)
{
    (void)state;
    NEED_SERVER();
    enrol("doors");
    size_t len;
    char *penny = tc_load(PENNY5, &len);

    /* A door device's checkin key names its door in the query: penny's first arrival. */
    json_t *a = call("POST", "/v1/collections/doors/checkins?door=North%20entrance", door_key,
                     PNG_CT, penny, len, 200);
    expect_checkin(a, "checked_in", "North entrance", "North entrance");

    /* Seen at once at another door, a JSON body's "door": the same arrival, North's. */
    char *body = json_image(PENNY5, "\"door\":\"South\"");
    a = call("POST", "/v1/collections/doors/checkins", door_key, "Content-Type: application/json\r\n",
             body, strlen(body), 200);
    expect_checkin(a, "same_arrival", "North entrance", "North entrance");
    free(body);

    /* Leonard through a multipart form's door field, UTF-8 in it. */
    size_t leonard_len;
    char *leonard = tc_load(LEONARD4, &leonard_len);
    tc_form f = {0};
    tc_form_file(&f, "image", leonard, leonard_len);
    tc_form_field(&f, "door", "S\xc3\xbc" "d");
    tc_form_end(&f);
    tc_response r;
    tc_post_form(port, "/v1/collections/doors/checkins", door_key, &f, &r);
    a = tc_expect_json(&r, 200);
    tc_response_free(&r);
    free(f.data);
    expect_checkin(a, "checked_in", "S\xc3\xbc" "d", "S\xc3\xbc" "d");

    /* A stranger at a door: no subject, no doors. */
    size_t stranger_len;
    char *stranger = tc_load(STRANGER, &stranger_len);
    a = call("POST", "/v1/collections/doors/checkins?door=West", door_key, JPEG_CT, stranger,
             stranger_len, 200);
    json_t *c = json_object_get(only_face(a), "checkin");
    assert_string_equal(tc_json_str(c, "status"), "not_recognised");
    assert_null(json_object_get(c, "first_door"));
    json_decref(a);
    free(stranger);

    /* The record, with a read key: each subject's doors. */
    json_t *l = call("GET", "/v1/collections/doors/checkins", reader, NULL, NULL, 0, 200);
    json_t *items = json_object_get(l, "checkins");
    assert_int_equal(json_array_size(items), 2);
    json_t *it = json_array_get(items, 0);
    assert_string_equal(tc_json_str(it, "subject_id"), "leonard");
    assert_string_equal(tc_json_str(it, "first_door"), "S\xc3\xbc" "d");
    assert_string_equal(tc_json_str(it, "last_door"), "S\xc3\xbc" "d");
    it = json_array_get(items, 1);
    assert_string_equal(tc_json_str(it, "subject_id"), "penny");
    assert_string_equal(tc_json_str(it, "first_door"), "North entrance");
    assert_string_equal(tc_json_str(it, "last_door"), "North entrance");
    json_decref(l);

    /* Not door names: 422 invalid_parameter, nothing recorded (penny's arrival stays one). */
    char path[512], long_door[GAL_DOOR_MAX + 2];
    memset(long_door, 'd', GAL_DOOR_MAX + 1);
    long_door[GAL_DOOR_MAX + 1] = '\0';
    snprintf(path, sizeof path, "/v1/collections/doors/checkins?door=%s", long_door);
    call_error("POST", path, door_key, PNG_CT, penny, len, 422, "invalid_parameter");
    long_door[GAL_DOOR_MAX] = '\0'; /* 64 bytes: a door (penny again at once: the same arrival) */
    snprintf(path, sizeof path, "/v1/collections/doors/checkins?door=%s", long_door);
    json_decref(call("POST", path, door_key, PNG_CT, penny, len, 200));
    static const char *const bad[] = {"door=", "door=North%0Aentrance", "door=%FF", "door=%09",
                                      "door=%C2%9B", "door=%7F"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(path, sizeof path, "/v1/collections/doors/checkins?%s", bad[i]);
        call_error("POST", path, door_key, PNG_CT, penny, len, 422, "invalid_parameter");
    }
    body = json_image(PENNY5, "\"door\":\"a\\u0001b\"");
    call_error("POST", "/v1/collections/doors/checkins", door_key,
               "Content-Type: application/json\r\n", body, strlen(body), 422, "invalid_parameter");
    free(body);
    long_door[GAL_DOOR_MAX] = 'd'; /* 65 bytes again, in a multipart field */
    f = (tc_form){0};
    tc_form_file(&f, "image", leonard, leonard_len);
    tc_form_field(&f, "door", long_door);
    tc_form_end(&f);
    tc_post_form(port, "/v1/collections/doors/checkins", door_key, &f, &r);
    tc_expect_error(&r, 422, "invalid_parameter");
    tc_response_free(&r);
    free(f.data);
    l = call("GET", "/v1/collections/doors/checkins", reader, NULL, NULL, 0, 200);
    items = json_object_get(l, "checkins");
    for (size_t i = 0; i < json_array_size(items); i++)
        assert_int_equal(num(json_array_get(items, i), "arrivals"), 1);
    json_decref(l);
    free(leonard);
    free(penny);
}

static void test_checkin_unknown_collection(void **state)
{
    (void)state;
    NEED_SERVER();
    const char *P = "/v1/collections/nope/checkins";
    size_t len;
    char *data = tc_load(PENNY5, &len);
    call_error("POST", P, admin, PNG_CT, data, len, 404, "collection_not_found");
    free(data);
    call_error("GET", P, reader, NULL, NULL, 0, 404, "collection_not_found");
    call_error("DELETE", P, admin, NULL, NULL, 0, 404, "collection_not_found");
}

static void test_checkin_documented(void **state)
{
    (void)state;
    NEED_SERVER();
    json_t *doc = call("GET", "/openapi.json", "", NULL, NULL, 0, 200);
    json_t *item =
        json_object_get(json_object_get(doc, "paths"), "/v1/collections/{collection}/checkins");
    assert_non_null(item);
    static const char *const methods[] = {"get", "post", "delete"};
    for (int i = 0; i < 3; i++)
        if (!json_object_get(item, methods[i]))
            fail_msg("openapi.json does not document %s .../checkins", methods[i]);
    json_t *params = json_object_get(json_object_get(item, "post"), "parameters");
    int door = 0;
    for (size_t i = 0; i < json_array_size(params); i++) {
        const char *name = json_string_value(json_object_get(json_array_get(params, i), "name"));
        door |= name && strcmp(name, "door") == 0;
    }
    if (!door) fail_msg("openapi.json does not document POST .../checkins?door=");
    json_t *entry = json_object_get(
        json_object_get(json_object_get(json_object_get(doc, "components"), "schemas"),
                        "CheckinEntry"),
        "properties");
    assert_non_null(json_object_get(entry, "first_door"));
    assert_non_null(json_object_get(entry, "last_door"));
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkin_round),
        cmocka_unit_test(test_checkin_doors),
        cmocka_unit_test(test_checkin_unknown_collection),
        cmocka_unit_test(test_checkin_documented),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
