/*
 * The `checkin` key scope through the real `vultus serve` on loopback: the key a check-in
 * door's device keeps (in the web page's local storage, where anyone at the door can get at
 * it). Recording an arrival needed a write key, which also enrols faces: whoever got at the
 * door could enrol their own face under someone else's badge. A checkin key is read plus
 * POST .../checkins, nothing more:
 *
 *   - it records arrivals (200), reads the record and searches;
 *   - it is refused (403 forbidden, naming the scope needed) enrolment, subject creation,
 *     subject PATCH and DELETE, face DELETE, a new event (DELETE .../checkins) and every
 *     collection route, and none of them changed anything;
 *   - limited to one collection (--scope checkin --collection EVENT, as README recommends for
 *     a door), it is refused another collection's check-ins, record and search;
 *   - a read key is refused the POST naming checkin; a write key may still record arrivals;
 *   - /openapi.json states every route's scope as the route table has it.
 *
 * Real photos: ../shared/data/fixtures (penny and leonard); the tests skip without them, and
 * without the model pack.
 */
#include <ctype.h>
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
#define PNG_CT "Content-Type: image/png\r\n"
#define JSON_CT "Content-Type: application/json\r\n"

static tc_server srv;
static char srv_dir[256];
static int port;
/* "Authorization: Bearer KEY\r\n" for each key; door: checkin limited to collection event;
 * door_key_error: what `vultus keys create --scope checkin` said when it failed. */
static char admin[200], reader[200], writer[200], door[200];
static char door_key_error[512];

static int have_data(void)
{
    return tc_exists(PENNY5) && tc_exists(LEONARD4) && tc_exists(IDENTITIES "/penny/penny1.png") &&
           tc_exists(IDENTITIES "/leonard/leonard1.png");
}

#define NEED_SERVER() TC_NEED_SERVER(srv, have_data(), FIXTURES)

/* `vultus keys create ARGS... --data dir`: the Authorization header into header, or -1 with
 * the command's stderr in error (when not NULL). */
static int setup(void **state)
{
    (void)state;
    if (!tc_have_models() || !have_data()) return 0;
    if (tc_temp_dir(srv_dir) != 0) return -1;
    const char *a[] = {"keys", "create", "--scope", "admin", "--data", srv_dir, NULL};
    const char *r[] = {"keys", "create", "--scope", "read", "--data", srv_dir, NULL};
    const char *w[] = {"keys", "create", "--scope", "write", "--data", srv_dir, NULL};
    const char *d[] = {"keys",
                       "create",
                       "--scope",
                       "checkin",
                       "--collection",
                       "event",
                       "--allow-missing-collection",
                       "--data",
                       srv_dir,
                       NULL};
    if (tc_key_header(a, admin, sizeof admin, NULL, 0) ||
        tc_key_header(r, reader, sizeof reader, NULL, 0) ||
        tc_key_header(w, writer, sizeof writer, NULL, 0))
        return -1;
    /* Before the scope existed this failed ("scope 'checkin': expected read, write or
     * admin"): the tests say so rather than the set-up failing without a word. */
    if (tc_key_header(d, door, sizeof door, door_key_error, sizeof door_key_error) != 0)
        door[0] = '\0';
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

#define NEED_DOOR_KEY()                                                                            \
    do {                                                                                           \
        if (!door[0]) fail_msg("vultus keys create --scope checkin failed: %s", door_key_error);   \
    } while (0)

/* A request with the key `auth` (and headers `more`, or NULL), whose answer must have
 * `status`: its JSON (the caller's; NULL for a 204). */
static json_t *call(const char *method, const char *path, const char *auth, const char *more,
                    const void *body, size_t len, int status)
{
    char headers[400];
    snprintf(headers, sizeof headers, "%s%s", auth, more ? more : "");
    tc_response r;
    tc_request(port, method, path, headers, body, len, &r);
    json_t *j = NULL;
    if (status == 204) {
        if (r.status != 204)
            fail_msg("%s %s: expected 204, got %d: %.300s", method, path, r.status,
                     r.body ? r.body : "");
    } else {
        j = tc_expect_json(&r, status);
    }
    tc_response_free(&r);
    return j;
}

/* A request refused with 403 forbidden whose message has `says`. */
static void refused(const char *method, const char *path, const char *auth, const char *more,
                    const void *body, size_t len, const char *says)
{
    char headers[400], message[400];
    snprintf(headers, sizeof headers, "%s%s", auth, more ? more : "");
    tc_response r;
    tc_request(port, method, path, headers, body, len, &r);
    if (r.status != 403)
        fail_msg("%s %s: expected 403, got %d: %.300s", method, path, r.status,
                 r.body ? r.body : "");
    tc_expect_error(&r, 403, "forbidden");
    tc_error_message(&r, message, sizeof message);
    if (!strstr(message, says))
        fail_msg("%s %s: the 403 says '%s', not '%s'", method, path, message, says);
    tc_response_free(&r);
}

/* POSTs the PNG at `file` to `path` with the key `auth`: the answer (status). */
static json_t *post_photo(const char *path, const char *auth, const char *file, int status)
{
    size_t len;
    char *data = tc_load(file, &len);
    json_t *j = call("POST", path, auth, PNG_CT, data, len, status);
    free(data);
    return j;
}

static long long num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v)) fail_msg("%s is not an integer", key);
    return (long long)json_integer_value(v);
}

/* Collection `name` with penny (three photos) and leonard (one), by the admin key: penny's
 * last face id. */
static long long enrol(const char *name)
{
    char body[128], path[256], file[256];
    snprintf(body, sizeof body, "{\"name\":\"%s\"}", name);
    json_decref(call("POST", "/v1/collections", admin, JSON_CT, body, strlen(body), 201));
    long long face = 0;
    for (int i = 1; i <= 3; i++) {
        snprintf(file, sizeof file, IDENTITIES "/penny/penny%d.png", i);
        snprintf(path, sizeof path, "/v1/collections/%s/faces?subject=penny", name);
        json_t *j = post_photo(path, admin, file, 201);
        face = num(j, "face_id");
        json_decref(j);
    }
    snprintf(path, sizeof path, "/v1/collections/%s/faces?subject=leonard", name);
    json_decref(post_photo(path, admin, IDENTITIES "/leonard/leonard1.png", 201));
    return face;
}

/* The one face of an answer's faces[]. */
static json_t *only_face(json_t *answer)
{
    json_t *faces = json_object_get(answer, "faces");
    assert_int_equal(json_array_size(faces), 1);
    return json_array_get(faces, 0);
}

static void test_checkin_key_records_arrivals_and_nothing_more(void **state)
{
    (void)state;
    NEED_SERVER();
    NEED_DOOR_KEY();
    long long face = enrol("event");
    const char *P = "/v1/collections/event/checkins";
    const char *needs_write = "needs a key with scope write; this key has checkin";
    const char *needs_admin = "needs a key with scope admin; this key has checkin";

    /* What a door does: record an arrival, read the record, search. */
    json_t *a = post_photo(P, door, PENNY5, 200);
    json_t *c = json_object_get(only_face(a), "checkin");
    assert_string_equal(tc_json_str(c, "status"), "checked_in");
    assert_string_equal(tc_json_str(c, "subject_id"), "penny");
    json_decref(a);
    json_t *l = call("GET", P, door, NULL, NULL, 0, 200);
    assert_int_equal(num(l, "checked_in"), 1);
    assert_int_equal(json_array_size(json_object_get(l, "checkins")), 1);
    json_decref(l);
    a = post_photo("/v1/collections/event/search", door, LEONARD4, 200);
    assert_string_equal(tc_json_str(only_face(a), "identity"), "leonard");
    json_decref(a);
    json_decref(call("GET", "/v1/collections/event/subjects", door, NULL, NULL, 0, 200));
    json_decref(call("GET", "/v1/collections", door, NULL, NULL, 0, 200));

    /* What it may not: enrol (the photo is a real face: refused for the key, not the image),
     * create, change or delete a subject, delete a face, start a new event. */
    size_t len;
    char *data = tc_load(LEONARD4, &len);
    refused("POST", "/v1/collections/event/faces?subject=penny", door, PNG_CT, data, len,
            needs_write);
    refused("POST", "/v1/collections/event/faces?subject=intruder", door, PNG_CT, data, len,
            needs_write);
    free(data);
    const char *subject = "{\"id\":\"intruder\"}";
    refused("POST", "/v1/collections/event/subjects", door, JSON_CT, subject, strlen(subject),
            needs_write);
    const char *meta = "{\"metadata\":{\"badge\":\"VIP\"}}";
    refused("PATCH", "/v1/collections/event/subjects/penny", door, JSON_CT, meta, strlen(meta),
            needs_write);
    refused("DELETE", "/v1/collections/event/subjects/penny", door, NULL, NULL, 0, needs_write);
    char path[128];
    snprintf(path, sizeof path, "/v1/collections/event/faces/%lld", face);
    refused("DELETE", path, door, NULL, NULL, 0, needs_write);
    refused("DELETE", P, door, NULL, NULL, 0, needs_write);
    /* Nor collections. */
    const char *collection = "{\"name\":\"mine\"}";
    refused("POST", "/v1/collections", door, JSON_CT, collection, strlen(collection), needs_admin);
    const char *threshold = "{\"threshold\":0.1}";
    refused("PATCH", "/v1/collections/event", door, JSON_CT, threshold, strlen(threshold),
            needs_admin);
    refused("DELETE", "/v1/collections/event", door, NULL, NULL, 0, needs_admin);

    /* Nothing of it happened: two subjects, penny's face, her metadata, the record. */
    json_t *s = call("GET", "/v1/collections/event/subjects/penny", admin, NULL, NULL, 0, 200);
    assert_null(json_object_get(json_object_get(s, "metadata"), "badge"));
    json_decref(s);
    json_decref(call("GET", path, admin, NULL, NULL, 0, 200));
    json_decref(call("GET", "/v1/collections/event/subjects/intruder", admin, NULL, NULL, 0, 404));
    l = call("GET", "/v1/collections/event/subjects", admin, NULL, NULL, 0, 200);
    assert_int_equal(json_array_size(json_object_get(l, "subjects")), 2);
    json_decref(l);
    json_t *col = call("GET", "/v1/collections/event", admin, NULL, NULL, 0, 200);
    assert_true(json_number_value(json_object_get(col, "threshold")) > 0.1);
    json_decref(col);
    json_decref(call("GET", "/v1/collections/mine", admin, NULL, NULL, 0, 404));
    l = call("GET", P, admin, NULL, NULL, 0, 200);
    assert_int_equal(num(l, "checked_in"), 1);
    json_decref(l);
}

static void test_checkin_key_limited_to_its_collection(void **state)
{
    (void)state;
    NEED_SERVER();
    NEED_DOOR_KEY();
    enrol("other");
    const char *limited = "this key is limited to collection event";
    size_t len;
    char *data = tc_load(PENNY5, &len);
    refused("POST", "/v1/collections/other/checkins", door, PNG_CT, data, len, limited);
    refused("POST", "/v1/collections/other/search", door, PNG_CT, data, len, limited);
    free(data);
    refused("GET", "/v1/collections/other/checkins", door, NULL, NULL, 0, limited);
    refused("GET", "/v1/collections/other/subjects", door, NULL, NULL, 0, limited);
    json_t *l = call("GET", "/v1/collections/other/checkins", admin, NULL, NULL, 0, 200);
    assert_int_equal(num(l, "checked_in"), 0);
    json_decref(l);
}

/* The scopes around it: a read key is told the POST needs checkin; write and admin keys may
 * still record arrivals (the desk's own key), and only they start a new event. */
static void test_checkin_scope_order(void **state)
{
    (void)state;
    NEED_SERVER();
    enrol("desk");
    const char *P = "/v1/collections/desk/checkins";
    size_t len;
    char *data = tc_load(PENNY5, &len);
    refused("POST", P, reader, PNG_CT, data, len,
            "needs a key with scope checkin; this key has read");
    free(data);
    json_t *a = post_photo(P, writer, PENNY5, 200);
    assert_string_equal(tc_json_str(json_object_get(only_face(a), "checkin"), "status"),
                        "checked_in");
    json_decref(a);
    a = post_photo(P, admin, LEONARD4, 200);
    assert_string_equal(tc_json_str(json_object_get(only_face(a), "checkin"), "status"),
                        "checked_in");
    json_decref(a);
    json_t *d = call("DELETE", P, writer, NULL, NULL, 0, 200);
    assert_int_equal(num(d, "cleared"), 2);
    json_decref(d);
}

/* /openapi.json says "API-key scope: NAME" for each route as the route table has it: the
 * POST .../checkins said write after the table said checkin would be a lie to every client. */
static void test_openapi_states_each_routes_scope(void **state)
{
    (void)state;
    NEED_SERVER();
    json_t *doc = call("GET", "/openapi.json", "", NULL, NULL, 0, 200);
    json_t *paths = json_object_get(doc, "paths");
    for (int i = 0; i < http_route_count; i++) {
        const http_route *route = &http_routes[i];
        if (!route->scope) continue;
        char method[16];
        size_t n = strlen(route->method);
        assert_true(n < sizeof method);
        for (size_t k = 0; k <= n; k++)
            method[k] = (char)tolower((unsigned char)route->method[k]);
        json_t *op = json_object_get(json_object_get(paths, route->pattern), method);
        if (!op) fail_msg("openapi.json has no %s %s", route->method, route->pattern);
        const char *text = tc_json_str(op, "description");
        char want[64];
        snprintf(want, sizeof want, "API-key scope: %s", http_scope_name(route->scope));
        const char *at = text ? strstr(text, want) : NULL;
        char next = at ? at[strlen(want)] : '\0';
        if (!at || (next != '.' && next != ' '))
            fail_msg("openapi.json: %s %s does not say '%s': %.200s", route->method, route->pattern,
                     want, text ? text : "(no description)");
    }
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkin_key_records_arrivals_and_nothing_more),
        cmocka_unit_test(test_checkin_key_limited_to_its_collection),
        cmocka_unit_test(test_checkin_scope_order),
        cmocka_unit_test(test_openapi_states_each_routes_scope),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
