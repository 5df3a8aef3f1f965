/*
 * Whether the API's answers are right and consistent for what clients do, beyond their shape
 * (test_api_contract) and the operations' rules (test_http_ops): the real `vultus serve` of
 * this build on loopback, real models and photos (models/samples).
 *
 *   - pagination of collections, subjects and faces while another client creates and deletes:
 *     every item that existed throughout is listed exactly once, in the documented order; the
 *     edge values of limit and after;
 *   - idempotent enrolment: a retry is replayed whatever transport carries the image, another
 *     request with the key is refused, concurrent retries store one face, a first answer that
 *     was an error is replayed (and documented so);
 *   - verify and search: the face they use (verify the most prominent; search every face in
 *     analyze's order), the threshold they decide with, their similarities agreeing with each
 *     other, edge values;
 *   - the same image through multipart, a raw body and base64 JSON gives identical numbers;
 *     GIF, BMP and TIFF are 415; a parameter a route does not list is ignored (documented);
 *   - deletes take effect at once, counts agree with the lists, a re-created collection is
 *     empty, a collection deleted under running searches answers 200 or 404, never 5xx.
 *
 * Skips when the model pack (models/) is absent. About 13 s.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "client.h"
#include "face/face.h"
#include "http/internal.h"
#include "img/img.h"

#include <math.h>
#include <pthread.h>

#define SAMPLE(n) "models/samples/sample" #n ".jpg"
#define JPEG_CT "Content-Type: image/jpeg\r\n"

static tc_server srv;
static char srv_dir[256]; /* its data folder: made here, so a collection of another embedder
                           * can be created in it before the server starts */
static int port;

#define NEED_SERVER() TC_NEED_SERVER(srv, 1, "models/")

static void call_error(const char *method, const char *path, int status, const char *code)
{
    tc_response r;
    tc_request(port, method, path, "", NULL, 0, &r);
    tc_expect_error(&r, status, code);
    tc_response_free(&r);
}

/* Enrols a photo's most prominent face for subject; its face id. */
static long long enrol(const char *collection, const char *subject, const char *photo)
{
    size_t len;
    char *jpeg = tc_load(photo, &len);
    char path[256];
    snprintf(path, sizeof path, "/v1/collections/%s/faces?subject=%s", collection, subject);
    tc_response r;
    tc_post_jpeg(port, path, NULL, jpeg, len, &r);
    json_t *j = tc_expect_json(&r, 201);
    long long id = json_integer_value(json_object_get(j, "face_id"));
    assert_true(id > 0);
    json_decref(j);
    tc_response_free(&r);
    free(jpeg);
    return id;
}

/* {"image": base64, EXTRA} */
static char *json_image(const char *data, size_t len, const char *prefix, int url_safe,
                        const char *extra)
{
    char *b64 = malloc(len / 3 * 4 + 8);
    if (url_safe) {
        http_base64url_encode((const uint8_t *)data, len, b64);
    } else {
        /* standard alphabet with padding, as most clients send it */
        static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t o = 0;
        for (size_t i = 0; i < len; i += 3) {
            uint32_t v = (uint32_t)(uint8_t)data[i] << 16;
            if (i + 1 < len) v |= (uint32_t)(uint8_t)data[i + 1] << 8;
            if (i + 2 < len) v |= (uint8_t)data[i + 2];
            b64[o++] = A[v >> 18 & 63];
            b64[o++] = A[v >> 12 & 63];
            b64[o++] = i + 1 < len ? A[v >> 6 & 63] : '=';
            b64[o++] = i + 2 < len ? A[v & 63] : '=';
        }
        b64[o] = '\0';
    }
    size_t n = strlen(b64) + 256 + (extra ? strlen(extra) : 0);
    char *body = malloc(n);
    snprintf(body, n, "{\"image\":\"%s%s\"%s%s}", prefix ? prefix : "", b64, extra ? "," : "",
             extra ? extra : "");
    free(b64);
    return body;
}

static int setup(void **state)
{
    (void)state;
    if (!tc_have_models()) return 0;
    if (tc_temp_dir(srv_dir) != 0) return -1;
    /* A collection pinned to another embedder than the server's (search: 409 model_mismatch). */
    const char *create[] = {"gallery",    "create", "other", "--embedder",
                            "mobileface", "--data", srv_dir, NULL};
    char out[512];
    if (tc_run_vultus(out, sizeof out, create) != 0) return -1;
    /* A deadline of a minute: on a loaded machine the default 5 s estimate could refuse a
     * request with 503, which is not what these tests are about. */
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

/* ---- pagination ------------------------------------------------------------------------- */

/* What the churning client does while a list is paged: create and delete items that sort
 * between, before and after the stable ones. */
struct churn {
    volatile int stop;
    int kind; /* 0: collections, 1: subjects, 2: faces */
    int rounds;
    const char *jpeg;
    size_t jpeg_len;
};

static void *churn_main(void *arg)
{
    struct churn *c = arg;
    char path[256], body[128];
    for (int i = 0; !c->stop; i++) {
        tc_response r;
        if (c->kind == 0) {
            /* pc03_ sorts between pc03 and pc04; a0 before all, zz after all */
            const char *names[3] = {"pc%02d_churn", "a0churn%d", "zzchurn%d"};
            char name[64];
            snprintf(name, sizeof name, names[i % 3], i % 10);
            snprintf(body, sizeof body, "{\"name\":\"%s\"}", name);
            tc_post_json(port, "/v1/collections", NULL, body, &r);
            tc_response_free(&r);
            snprintf(path, sizeof path, "/v1/collections/%s", name);
            tc_request(port, "DELETE", path, "", NULL, 0, &r);
            tc_response_free(&r);
        } else if (c->kind == 1) {
            char id[64];
            snprintf(id, sizeof id, "m%02d_churn", i % 40);
            snprintf(body, sizeof body, "{\"id\":\"%s\"}", id);
            tc_post_json(port, "/v1/collections/pages/subjects", NULL, body, &r);
            tc_response_free(&r);
            snprintf(path, sizeof path, "/v1/collections/pages/subjects/m%02d_churn",
                     (i + 37) % 40);
            tc_request(port, "DELETE", path, "", NULL, 0, &r);
            tc_response_free(&r);
        } else {
            tc_post_jpeg(port, "/v1/collections/pages/faces?subject=f", NULL, c->jpeg, c->jpeg_len, &r);
            json_t *j = tc_json(&r);
            long long id = json_integer_value(json_object_get(j, "face_id"));
            json_decref(j);
            tc_response_free(&r);
            if (id > 0) {
                snprintf(path, sizeof path, "/v1/collections/pages/faces/%lld", id);
                tc_request(port, "DELETE", path, "", NULL, 0, &r);
                tc_response_free(&r);
            }
        }
        c->rounds++;
    }
    return NULL;
}

/*
 * Pages through `path` (limit `limit`) once: every item's key (name, id or face id as text)
 * appended to keys[], which must strictly increase (the documented order), and must include
 * each of stable[] exactly once.
 */
static void walk(const char *path, const char *list, const char *key, int numeric, int limit,
                 char **stable, int n_stable)
{
    char after[256] = "";
    char seen[512][64];
    int n = 0;
    for (int page = 0; page < 400; page++) {
        char url[600];
        snprintf(url, sizeof url, "%s%slimit=%d%s%s", path, strchr(path, '?') ? "&" : "?", limit,
                 after[0] ? "&after=" : "", after);
        json_t *j = tc_call(port, "GET", url, NULL, 200);
        json_t *items = json_object_get(j, list);
        assert_true((int)json_array_size(items) <= limit);
        for (size_t i = 0; i < json_array_size(items); i++) {
            json_t *v = json_object_get(json_array_get(items, i), key);
            char k[64];
            if (numeric)
                snprintf(k, sizeof k, "%lld", (long long)json_integer_value(v));
            else
                snprintf(k, sizeof k, "%s", json_string_value(v));
            if (n > 0) {
                int increasing =
                    numeric ? atoll(k) > atoll(seen[n - 1]) : strcmp(k, seen[n - 1]) > 0;
                if (!increasing) fail_msg("%s: %s listed after %s", path, k, seen[n - 1]);
            }
            assert_true(n < 512);
            snprintf(seen[n++], sizeof seen[0], "%s", k);
        }
        json_t *next = json_object_get(j, "next_after");
        if (json_is_null(next)) {
            json_decref(j);
            for (int s = 0; s < n_stable; s++) {
                int count = 0;
                for (int i = 0; i < n; i++)
                    count += strcmp(seen[i], stable[s]) == 0;
                if (count != 1) fail_msg("%s: %s listed %d times", path, stable[s], count);
            }
            return;
        }
        /* the cursor is the last item shown */
        assert_true(json_array_size(items) > 0);
        assert_string_equal(json_string_value(next), seen[n - 1]);
        snprintf(after, sizeof after, "%s", json_string_value(next));
        json_decref(j);
    }
    fail_msg("%s: no last page after 400 pages", path);
}

static void test_pagination_under_churn(void **state)
{
    (void)state;
    NEED_SERVER();
    char *stable[64];
    char names[64][64];
    for (int i = 0; i < 10; i++) {
        snprintf(names[i], sizeof names[i], "pc%02d", i);
        tc_create_collection(port, names[i]);
        stable[i] = names[i];
    }
    struct churn c = {.kind = 0};
    pthread_t t;
    pthread_create(&t, NULL, churn_main, &c);
    for (int round = 0; round < 4 || c.rounds < 6; round++) {
        /* the collections of the other tests exist throughout too; the stable ones must show */
        walk("/v1/collections", "collections", "name", 0, 3, stable, 10);
        walk("/v1/collections", "collections", "name", 0, 1, stable, 10);
    }
    c.stop = 1;
    pthread_join(t, NULL);

    tc_create_collection(port, "pages");
    for (int i = 0; i < 40; i++) {
        snprintf(names[i], sizeof names[i], "m%02d", i);
        char body[96];
        snprintf(body, sizeof body, "{\"id\":\"m%02d\"}", i);
        json_decref(tc_call(port, "POST", "/v1/collections/pages/subjects", body, 201));
        stable[i] = names[i];
    }
    c = (struct churn){.kind = 1};
    pthread_create(&t, NULL, churn_main, &c);
    for (int round = 0; round < 3 || c.rounds < 12; round++) {
        walk("/v1/collections/pages/subjects", "subjects", "id", 0, 3, stable, 40);
        walk("/v1/collections/pages/subjects", "subjects", "id", 0, 7, stable, 40);
    }
    c.stop = 1;
    pthread_join(t, NULL);

    /* a subject's faces, paged one at a time while another client enrols and deletes */
    const char *photos[3] = {SAMPLE(2), SAMPLE(3), SAMPLE(4)};
    for (int i = 0; i < 3; i++) {
        snprintf(names[i], sizeof names[i], "%lld", enrol("pages", "f", photos[i]));
        stable[i] = names[i];
    }
    size_t len;
    char *jpeg = tc_load(SAMPLE(5), &len);
    c = (struct churn){.kind = 2, .jpeg = jpeg, .jpeg_len = len};
    pthread_create(&t, NULL, churn_main, &c);
    /* under sanitizers an enrolment takes a second or two: fewer of them */
    int enrolments = getenv("VULTUS_SANITIZED") ? 2 : 4;
    for (int round = 0; round < 4 || c.rounds < enrolments; round++)
        walk("/v1/collections/pages/faces?subject=f", "faces", "face_id", 1, 1, stable, 3);
    c.stop = 1;
    pthread_join(t, NULL);
    free(jpeg);
    print_message("pagination: collections, subjects and faces paged under churn\n");
}

static void test_pagination_edges(void **state)
{
    (void)state;
    NEED_SERVER();
    tc_create_collection(port, "edges");
    tc_create_collection(port, "edges2");
    for (int i = 0; i < 4; i++) {
        char body[64];
        snprintf(body, sizeof body, "{\"id\":\"e%d\"}", i);
        json_decref(tc_call(port, "POST", "/v1/collections/edges/subjects", body, 201));
    }
    /* limit: 1..1000, anything else is 422 naming it */
    static const char *const bad[] = {"0", "1001", "-1", "abc", "1.5", "1e2", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        static const char *const lists[] = {"/v1/collections", "/v1/collections/edges/subjects",
                                            "/v1/collections/edges/faces?subject=e0"};
        for (int l = 0; l < 3; l++) {
            char url[200];
            snprintf(url, sizeof url, "%s%slimit=%s", lists[l], l == 2 ? "&" : "?", bad[i]);
            tc_response r;
            tc_get(port, url, "", &r);
            tc_expect_error(&r, 422, "invalid_parameter");
            assert_non_null(strstr(r.body, "limit"));
            tc_response_free(&r);
        }
    }
    /* a page exactly filled is the last one: next_after null, no empty page to fetch */
    json_t *j = tc_call(port, "GET", "/v1/collections/edges/subjects?limit=4", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "subjects")), 4);
    assert_true(json_is_null(json_object_get(j, "next_after")));
    json_decref(j);
    j = tc_call(port, "GET", "/v1/collections/edges/subjects?limit=1000", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "subjects")), 4);
    json_decref(j);
    j = tc_call(port, "GET", "/v1/collections/edges/subjects?limit=1", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "subjects")), 1);
    assert_string_equal(json_string_value(json_object_get(j, "next_after")), "e0");
    json_decref(j);
    /* a cursor of an id that does not exist (deleted, or garbage) continues after it */
    j = tc_call(port, "GET", "/v1/collections/edges/subjects?after=e1x", NULL, 200);
    json_t *s = json_object_get(j, "subjects");
    assert_int_equal(json_array_size(s), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(s, 0), "id")), "e2");
    json_decref(j);
    j = tc_call(port, "GET", "/v1/collections/edges/subjects?after=zzzz", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "subjects")), 0);
    assert_true(json_is_null(json_object_get(j, "next_after")));
    json_decref(j);
    /* faces are paged by face id: a cursor that is not one is 422; one from another collection
     * is an id like any other */
    long long a = enrol("edges", "e0", SAMPLE(1));
    long long b = enrol("edges2", "x", SAMPLE(2));
    long long c = enrol("edges", "e0", SAMPLE(3));
    assert_true(a < b && b < c);
    static const char *const bad_after[] = {"abc", "-1", "1.5", "%00"};
    for (size_t i = 0; i < sizeof bad_after / sizeof bad_after[0]; i++) {
        char url[200];
        snprintf(url, sizeof url, "/v1/collections/edges/faces?subject=e0&after=%s", bad_after[i]);
        tc_response r;
        tc_get(port, url, "", &r);
        tc_expect_error(&r, 422, "invalid_parameter");
        assert_non_null(strstr(r.body, "after"));
        tc_response_free(&r);
    }
    char url[200];
    snprintf(url, sizeof url, "/v1/collections/edges/faces?subject=e0&after=%lld", b);
    j = tc_call(port, "GET", url, NULL, 200);
    s = json_object_get(j, "faces");
    assert_int_equal(json_array_size(s), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(s, 0), "face_id")), c);
    json_decref(j);
    /* a face of another collection is not found through this one, for any verb */
    snprintf(url, sizeof url, "/v1/collections/edges/faces/%lld", b);
    call_error("GET", url, 404, "face_not_found");
    call_error("DELETE", url, 404, "face_not_found");
    snprintf(url, sizeof url, "/v1/collections/edges/faces/%lld/thumbnail", b);
    call_error("GET", url, 404, "face_not_found");
    snprintf(url, sizeof url, "/v1/collections/edges2/faces/%lld", b);
    json_decref(tc_call(port, "GET", url, NULL, 200)); /* still there */
}

/* ---- idempotent enrolment --------------------------------------------------------------- */

struct idem_call {
    const char *jpeg;
    size_t len;
    tc_response r;
};

static void *idem_thread(void *arg)
{
    struct idem_call *c = arg;
    tc_post_jpeg(port, "/v1/collections/idem/faces?subject=conc", "Idempotency-Key: same-time\r\n", c->jpeg,
              c->len, &c->r);
    return NULL;
}

static int face_count(const char *collection, const char *subject)
{
    char url[256];
    snprintf(url, sizeof url, "/v1/collections/%s/faces?subject=%s", collection, subject);
    json_t *j = tc_call(port, "GET", url, NULL, 200);
    int n = (int)json_array_size(json_object_get(j, "faces"));
    json_decref(j);
    return n;
}

static void test_idempotency(void **state)
{
    (void)state;
    NEED_SERVER();
    tc_create_collection(port, "idem");
    size_t len;
    char *jpeg = tc_load(SAMPLE(2), &len);
    const char *path = "/v1/collections/idem/faces?subject=al";
    tc_response r1, r2;
    tc_post_jpeg(port, path, "Idempotency-Key: k1\r\n", jpeg, len, &r1);
    json_decref(tc_expect_json(&r1, 201));
    char v[64];
    assert_null(tc_header(&r1, "Idempotency-Replayed", v, sizeof v));
    /* the same request again: the first answer, marked, and no second face */
    tc_post_jpeg(port, path, "Idempotency-Key: k1\r\n", jpeg, len, &r2);
    assert_int_equal(r2.status, 201);
    assert_non_null(tc_header(&r2, "Idempotency-Replayed", v, sizeof v));
    assert_string_equal(v, "true");
    assert_int_equal(r2.body_len, r1.body_len);
    assert_memory_equal(r2.body, r1.body, r1.body_len);
    /* with the first answer's Location: a client whose first answer was lost follows it */
    char loc1[256], loc2[256];
    assert_non_null(tc_header(&r1, "Location", loc1, sizeof loc1));
    if (!tc_header(&r2, "Location", loc2, sizeof loc2))
        fail_msg("the replayed 201 has no Location (the first had %s)", loc1);
    assert_string_equal(loc2, loc1);
    tc_response_free(&r2);
    /* The same image and subject through another transport is the same request (the README:
     * "the image's bytes, not how the body encodes them"): multipart, base64 JSON in both
     * alphabets, a data: URL. */
    tc_form f = {0};
    tc_form_field(&f, "subject", "al");
    tc_form_file(&f, "image", jpeg, len);
    tc_form_end(&f);
    tc_post_form(port, "/v1/collections/idem/faces", "Idempotency-Key: k1\r\n", &f, &r2);
    free(f.data);
    if (r2.status != 201) fail_msg("multipart retry: %d %.200s", r2.status, r2.body);
    assert_memory_equal(r2.body, r1.body, r1.body_len);
    tc_response_free(&r2);
    for (int way = 0; way < 3; way++) {
        char *body = json_image(jpeg, len, way == 2 ? "data:image/jpeg;base64," : NULL, way == 1,
                                "\"subject\":\"al\"");
        tc_post_json(port, "/v1/collections/idem/faces", "Idempotency-Key: k1\r\n", body, &r2);
        free(body);
        if (r2.status != 201)
            fail_msg("JSON retry (%s): %d %.200s",
                     way == 0   ? "standard base64"
                     : way == 1 ? "URL-safe base64"
                                : "data: URL",
                     r2.status, r2.body);
        assert_non_null(tc_header(&r2, "Idempotency-Replayed", v, sizeof v));
        assert_memory_equal(r2.body, r1.body, r1.body_len);
        tc_response_free(&r2);
    }
    assert_int_equal(face_count("idem", "al"), 1);
    /* the same key for another request: refused, nothing stored */
    tc_post_jpeg(port, "/v1/collections/idem/faces?subject=bo", "Idempotency-Key: k1\r\n", jpeg, len, &r2);
    tc_expect_error(&r2, 422, "idempotency_key_reused");
    tc_response_free(&r2);
    size_t len3;
    char *jpeg3 = tc_load(SAMPLE(3), &len3);
    tc_post_jpeg(port, path, "Idempotency-Key: k1\r\n", jpeg3, len3, &r2);
    tc_expect_error(&r2, 422, "idempotency_key_reused");
    tc_response_free(&r2);
    assert_int_equal(face_count("idem", "al"), 1);
    call_error("GET", "/v1/collections/idem/subjects/bo", 404, "subject_not_found");
    /* the key is per collection: the same key in another collection is a new request */
    tc_create_collection(port, "idem_other");
    tc_post_jpeg(port, "/v1/collections/idem_other/faces?subject=al", "Idempotency-Key: k1\r\n", jpeg, len,
              &r2);
    json_decref(tc_expect_json(&r2, 201));
    assert_null(tc_header(&r2, "Idempotency-Replayed", v, sizeof v));
    tc_response_free(&r2);
    tc_response_free(&r1);

    /* Four at once with one key: one enrols; the others are told it is in progress (409) or,
     * arriving after it finished, get its answer. One face either way. */
    struct idem_call calls[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        calls[i] = (struct idem_call){.jpeg = jpeg, .len = len};
        pthread_create(&t[i], NULL, idem_thread, &calls[i]);
    }
    int fresh = 0;
    long long face_id = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        tc_response *r = &calls[i].r;
        if (r->status == 409) {
            tc_expect_error(r, 409, "idempotency_in_progress");
            assert_non_null(tc_header(r, "Retry-After", v, sizeof v));
        } else {
            json_t *j = tc_expect_json(r, 201);
            long long id = json_integer_value(json_object_get(j, "face_id"));
            assert_true(face_id == 0 || face_id == id);
            face_id = id;
            fresh += tc_header(r, "Idempotency-Replayed", v, sizeof v) == NULL;
            json_decref(j);
        }
        tc_response_free(r);
    }
    assert_int_equal(fresh, 1);
    assert_int_equal(face_count("idem", "conc"), 1);

    /* Key length: 1..200 characters. */
    char key[260], header[300];
    memset(key, 'k', 201);
    key[201] = '\0';
    snprintf(header, sizeof header, "Idempotency-Key: %s\r\n", key);
    tc_post_jpeg(port, "/v1/collections/idem/faces?subject=long", header, jpeg, len, &r2);
    tc_expect_error(&r2, 400, "bad_request");
    tc_response_free(&r2);
    key[200] = '\0';
    snprintf(header, sizeof header, "Idempotency-Key: %s\r\n", key);
    tc_post_jpeg(port, "/v1/collections/idem/faces?subject=long", header, jpeg, len, &r2);
    json_decref(tc_expect_json(&r2, 201));
    tc_response_free(&r2);
    /* An empty key (a client's unset variable) is refused, not taken as no key: twice sent,
     * it would store the face twice. Trailing blanks are not part of the key. */
    tc_post_jpeg(port, "/v1/collections/idem/faces?subject=empty", "Idempotency-Key:\r\n", jpeg, len, &r2);
    tc_expect_error(&r2, 400, "bad_request");
    tc_response_free(&r2);
    tc_post_jpeg(port, "/v1/collections/idem/faces?subject=empty", "Idempotency-Key:  \r\n", jpeg, len, &r2);
    tc_expect_error(&r2, 400, "bad_request");
    tc_response_free(&r2);
    json_decref(tc_call(port, "GET", "/v1/collections/idem/subjects/empty", NULL, 404)); /* nothing stored */
    tc_post_jpeg(port, "/v1/collections/idem/faces?subject=blank", "Idempotency-Key: tb\r\n", jpeg, len,
              &r2);
    json_decref(tc_expect_json(&r2, 201));
    tc_response_free(&r2);
    tc_post_jpeg(port, "/v1/collections/idem/faces?subject=blank", "Idempotency-Key: tb \t\r\n", jpeg, len,
              &r2);
    json_decref(tc_expect_json(&r2, 201));
    assert_non_null(tc_header(&r2, "Idempotency-Replayed", header, sizeof header));
    tc_response_free(&r2);
    assert_int_equal(face_count("idem", "blank"), 1);
    free(jpeg3);
    free(jpeg);
}

/* A blank JPEG: a valid image with no face. */
static void blank_jpeg(uint8_t **jpeg, size_t *len)
{
    img_image im = {0};
    assert_int_equal(img_alloc(&im, 320, 240, 3), 0);
    memset(im.data, 200, (size_t)320 * 240 * 3);
    assert_int_equal(img_encode_jpeg(&im, 90, jpeg, len), 0);
    img_free(&im);
}

/* The IdempotencyKey parameter's description in the served /openapi.json. */
static char *idempotency_doc(void)
{
    json_t *doc = tc_call(port, "GET", "/openapi.json", NULL, 200);
    const char *d = json_string_value(json_object_get(
        json_object_get(json_object_get(json_object_get(doc, "components"), "parameters"),
                        "IdempotencyKey"),
        "description"));
    assert_non_null(d);
    char *copy = strdup(d);
    json_decref(doc);
    return copy;
}

/* A first enrolment that failed with a client error (no face, no such subject) is recorded:
 * its retry gets the same error replayed, even once the cause is gone; a server error is not
 * recorded. What the API documents about it. */
static void test_idempotency_after_error(void **state)
{
    (void)state;
    NEED_SERVER();
    tc_create_collection(port, "idem_err");
    uint8_t *blank;
    size_t blank_len;
    blank_jpeg(&blank, &blank_len);
    tc_response r;
    const char *path = "/v1/collections/idem_err/faces?subject=nf";
    tc_post_jpeg(port, path, "Idempotency-Key: e1\r\n", (const char *)blank, blank_len, &r);
    tc_expect_error(&r, 422, "no_face");
    tc_response_free(&r);
    tc_post_jpeg(port, path, "Idempotency-Key: e1\r\n", (const char *)blank, blank_len, &r);
    tc_expect_error(&r, 422, "no_face");
    char v[32];
    assert_non_null(tc_header(&r, "Idempotency-Replayed", v, sizeof v));
    tc_response_free(&r);
    /* no subject was created for the failed enrolment */
    call_error("GET", "/v1/collections/idem_err/subjects/nf", 404, "subject_not_found");
    /* the key stays spent: a photo with a face under it is another request */
    size_t len;
    char *jpeg = tc_load(SAMPLE(1), &len);
    tc_post_jpeg(port, path, "Idempotency-Key: e1\r\n", jpeg, len, &r);
    tc_expect_error(&r, 422, "idempotency_key_reused");
    tc_response_free(&r);
    /* create_subject=false before the subject exists: 404, and the same 404 replayed after it
     * was created (the client needs a new key) */
    const char *p2 = "/v1/collections/idem_err/faces?subject=later&create_subject=false";
    tc_post_jpeg(port, p2, "Idempotency-Key: e2\r\n", jpeg, len, &r);
    tc_expect_error(&r, 404, "subject_not_found");
    tc_response_free(&r);
    json_decref(tc_call(port, "POST", "/v1/collections/idem_err/subjects", "{\"id\":\"later\"}", 201));
    tc_post_jpeg(port, p2, "Idempotency-Key: e2\r\n", jpeg, len, &r);
    tc_expect_error(&r, 404, "subject_not_found");
    assert_non_null(tc_header(&r, "Idempotency-Replayed", v, sizeof v));
    tc_response_free(&r);
    tc_post_jpeg(port, p2, "Idempotency-Key: e3\r\n", jpeg, len, &r);
    json_decref(tc_expect_json(&r, 201));
    tc_response_free(&r);
    /* The document says so: a client reading it must learn that an error answer is replayed
     * too, so that it uses a new key after fixing its request. */
    char *doc = idempotency_doc();
    if (!strstr(doc, "error") || !strstr(doc, "new key"))
        fail_msg("openapi.json's Idempotency-Key does not say that an error is replayed too "
                 "(and a new key is needed): %s",
                 doc);
    free(doc);
    free(jpeg);
    free(blank);
}

/* ---- verify and search ------------------------------------------------------------------ */

static double box_field(json_t *face, const char *k)
{
    return json_real_value(json_object_get(json_object_get(face, "box"), k));
}

static void expect_same_box(json_t *a, json_t *b)
{
    static const char *const k[4] = {"x", "y", "width", "height"};
    for (int i = 0; i < 4; i++)
        if (box_field(a, k[i]) != box_field(b, k[i]))
            fail_msg("box %s: %.6f != %.6f", k[i], box_field(a, k[i]), box_field(b, k[i]));
}

/* The face of analyze's answer `an` that verify compares (README, "Verify at a desk"): the
 * largest area in view (the box clipped to the image) weighed by nearness to the centre. */
static json_t *prominent_face(json_t *an)
{
    double width = (double)json_integer_value(json_object_get(an, "width"));
    double height = (double)json_integer_value(json_object_get(an, "height"));
    double cx = width / 2, cy = height / 2, half_diagonal = hypot(cx, cy);
    json_t *faces = json_object_get(an, "faces"), *best = NULL;
    double best_weight = -1;
    for (size_t i = 0; i < json_array_size(faces); i++) {
        json_t *f = json_array_get(faces, i);
        double x = box_field(f, "x"), y = box_field(f, "y");
        double w = box_field(f, "width"), h = box_field(f, "height");
        double in_w = fmin(x + w, width) - fmax(x, 0), in_h = fmin(y + h, height) - fmax(y, 0);
        double area = in_w > 0 && in_h > 0 ? in_w * in_h : 0;
        double off = hypot(x + w / 2 - cx, y + h / 2 - cy) / half_diagonal;
        double weight = area * fmax(0, 1 - off);
        if (weight > best_weight) {
            best = f;
            best_weight = weight;
        }
    }
    return best;
}

/* analyze's faces for a photo (the caller's) */
static json_t *analyze(const char *jpeg, size_t len)
{
    tc_response r;
    tc_post_jpeg(port, "/v1/analyze", NULL, jpeg, len, &r);
    json_t *j = tc_expect_json(&r, 200);
    tc_response_free(&r);
    return j;
}

static void test_verify(void **state)
{
    (void)state;
    NEED_SERVER();
    size_t len1, len2;
    char *s1 = tc_load(SAMPLE(1), &len1), *s2 = tc_load(SAMPLE(2), &len2);
    json_t *an1 = analyze(s1, len1);
    json_t *faces1 = json_object_get(an1, "faces");
    assert_true(json_array_size(faces1) >= 2);
    /* the face verify documents it compares (its boxes rounded as analyze's, so the weights
     * are those of the server's to 1e-6) */
    json_t *face1 = prominent_face(an1);
    tc_form f = {0};
    tc_form_file(&f, "image_a", s1, len1);
    tc_form_file(&f, "image_b", s1, len1);
    tc_form_end(&f);
    tc_response r;
    tc_post_form(port, "/v1/verify", NULL, &f, &r);
    free(f.data);
    json_t *v = tc_expect_json(&r, 200);
    tc_response_free(&r);
    assert_true(json_real_value(json_object_get(v, "similarity")) > 0.9999);
    assert_true(json_is_true(json_object_get(v, "match")));
    json_t *fa = json_object_get(v, "face_a");
    expect_same_box(fa, face1);
    assert_int_equal(json_integer_value(json_object_get(fa, "faces_in_image")),
                     json_array_size(faces1));
    /* two images: the default threshold, the one a new collection gets */
    double default_threshold = json_real_value(json_object_get(v, "threshold"));
    json_decref(v);
    tc_create_collection(port, "ver");
    json_t *col = tc_call(port, "GET", "/v1/collections/ver", NULL, 200);
    assert_true(json_real_value(json_object_get(col, "threshold")) == default_threshold);
    json_decref(col);

    /* against a subject: the collection's threshold, and the similarity search reports */
    enrol("ver", "one", SAMPLE(2));
    json_decref(tc_call(port, "PATCH", "/v1/collections/ver", "{\"threshold\":0.2}", 200));
    tc_post_jpeg(port, "/v1/verify?collection=ver&subject=one", NULL, s1, len1, &r);
    v = tc_expect_json(&r, 200);
    tc_response_free(&r);
    double sim = json_real_value(json_object_get(v, "similarity"));
    assert_true(json_real_value(json_object_get(v, "threshold")) == 0.2);
    assert_int_equal(json_is_true(json_object_get(v, "match")), sim >= 0.2);
    assert_string_equal(json_string_value(json_object_get(v, "decision")),
                        sim >= 0.2 ? "match" : "no_match");
    expect_same_box(json_object_get(v, "face_a"), face1);
    json_decref(v);
    tc_post_jpeg(port, "/v1/collections/ver/search", NULL, s1, len1, &r);
    json_t *sr = tc_expect_json(&r, 200);
    tc_response_free(&r);
    /* search's answer for the face verify compared: the one with its box */
    json_t *sr_faces = json_object_get(sr, "faces"), *sr_face = NULL;
    for (size_t i = 0; i < json_array_size(sr_faces); i++)
        if (box_field(json_array_get(sr_faces, i), "x") == box_field(face1, "x") &&
            box_field(json_array_get(sr_faces, i), "y") == box_field(face1, "y"))
            sr_face = json_array_get(sr_faces, i);
    assert_non_null(sr_face);
    json_t *m0 = json_array_get(json_object_get(sr_face, "matches"), 0);
    assert_string_equal(json_string_value(json_object_get(m0, "subject")), "one");
    assert_true(json_real_value(json_object_get(m0, "similarity")) == sim);
    assert_true(json_real_value(json_object_get(sr, "threshold")) == 0.2);
    json_decref(sr);

    /* the errors: a missing collection, subject, a subject without faces, half a pair */
    tc_post_jpeg(port, "/v1/verify?collection=nowhere&subject=one", NULL, s1, len1, &r);
    tc_expect_error(&r, 404, "collection_not_found");
    tc_response_free(&r);
    tc_post_jpeg(port, "/v1/verify?collection=ver&subject=nobody", NULL, s1, len1, &r);
    tc_expect_error(&r, 404, "subject_not_found");
    tc_response_free(&r);
    json_decref(tc_call(port, "POST", "/v1/collections/ver/subjects", "{\"id\":\"empty\"}", 201));
    tc_post_jpeg(port, "/v1/verify?collection=ver&subject=empty", NULL, s1, len1, &r);
    tc_expect_error(&r, 422, "no_enrolled_face");
    tc_response_free(&r);
    tc_post_jpeg(port, "/v1/verify?collection=ver", NULL, s1, len1, &r);
    tc_expect_error(&r, 422, "invalid_parameter");
    tc_response_free(&r);
    tc_post_jpeg(port, "/v1/verify", NULL, s1, len1, &r); /* one image, no subject */
    tc_expect_error(&r, 400, "missing_image");
    tc_response_free(&r);
    uint8_t *blank;
    size_t blank_len;
    blank_jpeg(&blank, &blank_len);
    tc_post_jpeg(port, "/v1/verify?collection=ver&subject=one", NULL, (const char *)blank, blank_len, &r);
    tc_expect_error(&r, 422, "no_face");
    tc_response_free(&r);
    free(blank);
    json_decref(an1);
    free(s1);
    free(s2);
}

static void test_search(void **state)
{
    (void)state;
    NEED_SERVER();
    size_t len;
    char *s5 = tc_load(SAMPLE(5), &len);
    tc_create_collection(port, "srch");
    /* an empty collection: every face, unknown, no matches */
    tc_response r;
    tc_post_jpeg(port, "/v1/collections/srch/search", NULL, s5, len, &r);
    json_t *sr = tc_expect_json(&r, 200);
    tc_response_free(&r);
    json_t *an = analyze(s5, len);
    json_t *af = json_object_get(an, "faces"), *sf = json_object_get(sr, "faces");
    assert_true(json_array_size(af) >= 3);
    /* one result per face, in analyze's order */
    assert_int_equal(json_array_size(sf), json_array_size(af));
    for (size_t i = 0; i < json_array_size(af); i++) {
        json_t *q = json_array_get(sf, i);
        expect_same_box(q, json_array_get(af, i));
        assert_string_equal(json_string_value(json_object_get(q, "decision")), "unknown");
        assert_true(json_is_null(json_object_get(q, "identity")));
        assert_true(json_is_null(json_object_get(q, "identity_metadata")));
        assert_int_equal(json_array_size(json_object_get(q, "matches")), 0);
    }
    json_decref(sr);
    /* enrol 4 subjects; k limits the subjects per face, best first, decisions by threshold */
    enrol("srch", "a", SAMPLE(1));
    enrol("srch", "b", SAMPLE(2));
    enrol("srch", "c", SAMPLE(3));
    enrol("srch", "d", SAMPLE(5));
    enrol("srch", "d", SAMPLE(6)); /* a subject with two faces is still one match */
    /* what a check-in desk shows once it knows who it is */
    json_decref(tc_call(port, "PATCH", "/v1/collections/srch/subjects/d",
                     "{\"metadata\":{\"badge\":\"B-17\",\"name\":\"Dana\"}}", 200));
    for (int k = 1; k <= 100; k += 99) {
        char url[128];
        snprintf(url, sizeof url, "/v1/collections/srch/search?k=%d", k);
        tc_post_jpeg(port, url, NULL, s5, len, &r);
        sr = tc_expect_json(&r, 200);
        tc_response_free(&r);
        double threshold = json_real_value(json_object_get(sr, "threshold"));
        sf = json_object_get(sr, "faces");
        assert_int_equal(json_array_size(sf), json_array_size(af));
        for (size_t i = 0; i < json_array_size(sf); i++) {
            json_t *q = json_array_get(sf, i), *m = json_object_get(q, "matches");
            assert_int_equal(json_array_size(m), k == 1 ? 1 : 4);
            double prev = 2;
            for (size_t j = 0; j < json_array_size(m); j++) {
                json_t *h = json_array_get(m, j);
                double s = json_real_value(json_object_get(h, "similarity"));
                assert_true(s <= prev);
                prev = s;
                assert_int_equal(json_is_true(json_object_get(h, "match")), s >= threshold);
            }
            json_t *best = json_array_get(m, 0);
            int known = json_is_true(json_object_get(best, "match"));
            assert_string_equal(json_string_value(json_object_get(q, "decision")),
                                known ? "match" : "unknown");
            if (known)
                assert_string_equal(json_string_value(json_object_get(q, "identity")),
                                    json_string_value(json_object_get(best, "subject")));
            /* the identity's metadata, as GET .../subjects/{id} shows it; null when unknown */
            json_t *meta = json_object_get(q, "identity_metadata");
            if (!known) {
                assert_true(json_is_null(meta));
            } else {
                char path[128];
                snprintf(path, sizeof path, "/v1/collections/srch/subjects/%s",
                         json_string_value(json_object_get(q, "identity")));
                json_t *subject = tc_call(port, "GET", path, NULL, 200);
                if (!json_equal(meta, json_object_get(subject, "metadata")))
                    fail_msg("face %zu: identity_metadata %s", i,
                             meta ? json_dumps(meta, JSON_COMPACT) : "(absent)");
                json_decref(subject);
            }
        }
        /* d's enrolled face (sample 5's most prominent, the one enrolment took) is found as
         * itself, with d's metadata */
        json_t *self = NULL;
        for (size_t i = 0; i < json_array_size(sf); i++) {
            json_t *q = json_array_get(sf, i);
            json_t *best = json_array_get(json_object_get(q, "matches"), 0);
            if (json_real_value(json_object_get(best, "similarity")) >= 0.999) self = q;
        }
        if (!self) fail_msg("no face of sample 5 is the face enrolled from it");
        const char *identity = json_string_value(json_object_get(self, "identity"));
        const char *badge = json_string_value(
            json_object_get(json_object_get(self, "identity_metadata"), "badge"));
        if (!identity || strcmp(identity, "d") != 0 || !badge || strcmp(badge, "B-17") != 0)
            fail_msg("sample 5's enrolled face: identity %s, badge %s", identity ? identity : "-",
                     badge ? badge : "-");
        json_decref(sr);
    }
    static const char *const bad_k[] = {"0", "101", "-1", "x", "2.5"};
    for (size_t i = 0; i < sizeof bad_k / sizeof bad_k[0]; i++) {
        char url[128];
        snprintf(url, sizeof url, "/v1/collections/srch/search?k=%s", bad_k[i]);
        tc_post_jpeg(port, url, NULL, s5, len, &r);
        tc_expect_error(&r, 422, "invalid_parameter");
        assert_non_null(strstr(r.body, "k must"));
        tc_response_free(&r);
    }
    tc_post_jpeg(port, "/v1/collections/other/search", NULL, s5, len, &r);
    tc_expect_error(&r, 409, "model_mismatch");
    tc_response_free(&r);
    tc_post_jpeg(port, "/v1/collections/nowhere/search", NULL, s5, len, &r);
    tc_expect_error(&r, 404, "collection_not_found");
    tc_response_free(&r);
    json_decref(an);
    free(s5);
}

/* ---- one image, three transports -------------------------------------------------------- */

/* The response without its timing (which differs run to run), as compact text. */
static char *without_timing(const tc_response *r)
{
    json_t *j = tc_expect_json(r, 200);
    json_object_del(j, "timing_ms");
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return text;
}

static void test_same_numbers_every_transport(void **state)
{
    (void)state;
    NEED_SERVER();
    size_t len;
    char *jpeg = tc_load(SAMPLE(4), &len);
    static const char *const routes[] = {"/v1/detect", "/v1/analyze?embedding=true", "/v1/embed"};
    for (int i = 0; i < 3; i++) {
        tc_response r;
        tc_post_jpeg(port, routes[i], NULL, jpeg, len, &r);
        char *raw = without_timing(&r);
        tc_response_free(&r);
        tc_form f = {0};
        tc_form_file(&f, "image", jpeg, len);
        tc_form_end(&f);
        tc_post_form(port, routes[i], NULL, &f, &r);
        free(f.data);
        char *form = without_timing(&r);
        tc_response_free(&r);
        char *body = json_image(jpeg, len, NULL, 0, NULL);
        tc_post_json(port, routes[i], NULL, body, &r);
        free(body);
        char *b64 = without_timing(&r);
        tc_response_free(&r);
        assert_string_equal(form, raw);
        assert_string_equal(b64, raw);
        if (i == 1) assert_non_null(strstr(raw, "\"embedding\""));
        free(raw);
        free(form);
        free(b64);
    }
    /* a parameter that does not parse is 422 naming it, wherever it comes from */
    tc_response r;
    tc_post_jpeg(port, "/v1/analyze?embedding=maybe", NULL, jpeg, len, &r);
    tc_expect_error(&r, 422, "invalid_parameter");
    assert_non_null(strstr(r.body, "embedding"));
    tc_response_free(&r);
    char *body = json_image(jpeg, len, NULL, 0, "\"embedding\":[1]");
    tc_post_json(port, "/v1/analyze", NULL, body, &r);
    free(body);
    tc_expect_error(&r, 422, "invalid_parameter");
    assert_non_null(strstr(r.body, "embedding"));
    tc_response_free(&r);
    free(jpeg);

    /* GIF, BMP and TIFF: 415 unsupported_image, by every transport */
    static const uint8_t gif[] = "GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
                                 "!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01"
                                 "\x00\x00\x02\x02"
                                 "D\x01\x00;";
    static const uint8_t bmp[] = "BM:\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00"
                                 "\x00\x01\x00\x00\x00\x01\x00\x00\x00\x01\x00\x18\x00\x00\x00"
                                 "\x00\x00\x04\x00\x00\x00\x13\x0b\x00\x00\x13\x0b\x00\x00\x00"
                                 "\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\x00";
    static const uint8_t tiff[] = "II*\x00\x08\x00\x00\x00\x01\x00\x00\x01\x03\x00\x01\x00\x00"
                                  "\x00\x01\x00\x00\x00\x00\x00\x00\x00";
    const uint8_t *images[3] = {gif, bmp, tiff};
    size_t lens[3] = {sizeof gif - 1, sizeof bmp - 1, sizeof tiff - 1};
    for (int i = 0; i < 3; i++) {
        tc_post_jpeg(port, "/v1/detect", NULL, (const char *)images[i], lens[i], &r);
        tc_expect_error(&r, 415, "unsupported_image");
        tc_response_free(&r);
        tc_form f = {0};
        tc_form_file(&f, "image", images[i], lens[i]);
        tc_form_end(&f);
        tc_post_form(port, "/v1/analyze", NULL, &f, &r);
        free(f.data);
        tc_expect_error(&r, 415, "unsupported_image");
        tc_response_free(&r);
        body = json_image((const char *)images[i], lens[i], NULL, 0, NULL);
        tc_post_json(port, "/v1/embed", NULL, body, &r);
        free(body);
        tc_expect_error(&r, 415, "unsupported_image");
        tc_response_free(&r);
    }
}

/* A parameter a route does not list (max_faces, min_face: server options, not parameters)
 * changes nothing, and the document says so, since a client cannot tell otherwise. */
static void test_unlisted_parameters(void **state)
{
    (void)state;
    NEED_SERVER();
    size_t len;
    char *jpeg = tc_load(SAMPLE(1), &len);
    tc_response r;
    tc_post_jpeg(port, "/v1/detect", NULL, jpeg, len, &r);
    char *plain = without_timing(&r);
    tc_response_free(&r);
    tc_post_jpeg(port, "/v1/detect?max_faces=1&min_face=500&foo=bar", NULL, jpeg, len, &r);
    char *with = without_timing(&r);
    tc_response_free(&r);
    assert_string_equal(with, plain);
    free(with);
    free(plain);
    free(jpeg);
    json_t *doc = tc_call(port, "GET", "/openapi.json", NULL, 200);
    const char *d = json_string_value(json_object_get(json_object_get(doc, "info"), "description"));
    if (!d || !strstr(d, "ignored") || !strstr(d, "max_faces"))
        fail_msg("openapi.json does not say that parameters a route does not list are ignored "
                 "(max_faces): %s",
                 d ? d : "(no description)");
    json_decref(doc);
}

/* ---- deletes and counts ----------------------------------------------------------------- */

struct searcher {
    volatile int stop;
    const char *jpeg;
    size_t len;
    int ok, gone, other;
};

static void *search_loop(void *arg)
{
    struct searcher *s = arg;
    while (!s->stop) {
        tc_response r;
        tc_post_jpeg(port, "/v1/collections/doomed/search", NULL, s->jpeg, s->len, &r);
        char code[64];
        tc_error_code(&r, code, sizeof code);
        if (r.status == 200)
            s->ok++;
        else if (r.status == 404 && strcmp(code, "collection_not_found") == 0)
            s->gone++;
        else
            s->other++;
        tc_response_free(&r);
    }
    return NULL;
}

/* The collection's counts against what its lists show. */
static void expect_counts(const char *collection, long long subjects, long long faces)
{
    char url[256];
    snprintf(url, sizeof url, "/v1/collections/%s", collection);
    json_t *c = tc_call(port, "GET", url, NULL, 200);
    snprintf(url, sizeof url, "/v1/collections/%s/subjects?limit=1000", collection);
    json_t *l = tc_call(port, "GET", url, NULL, 200);
    json_t *items = json_object_get(l, "subjects");
    long long listed_faces = 0;
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *s = json_array_get(items, i);
        long long n = json_integer_value(json_object_get(s, "faces"));
        assert_int_equal(n, face_count(collection, json_string_value(json_object_get(s, "id"))));
        listed_faces += n;
    }
    assert_int_equal(json_integer_value(json_object_get(c, "subjects")), subjects);
    assert_int_equal(json_array_size(items), subjects);
    assert_int_equal(json_integer_value(json_object_get(c, "faces")), faces);
    assert_int_equal(listed_faces, faces);
    json_decref(l);
    json_decref(c);
}

static void test_deletes(void **state)
{
    (void)state;
    NEED_SERVER();
    size_t len;
    char *s2 = tc_load(SAMPLE(2), &len);
    tc_create_collection(port, "dels");
    long long a1 = enrol("dels", "a", SAMPLE(2));
    long long a2 = enrol("dels", "a", SAMPLE(3));
    enrol("dels", "b", SAMPLE(4));
    json_decref(tc_call(port, "POST", "/v1/collections/dels/subjects", "{\"id\":\"c\"}", 201));
    expect_counts("dels", 3, 3);
    /* a deleted face: gone from its subject's list, the counts and search at once */
    char url[128];
    snprintf(url, sizeof url, "/v1/collections/dels/faces/%lld", a1);
    tc_call(port, "DELETE", url, NULL, 204);
    call_error("GET", url, 404, "face_not_found");
    call_error("DELETE", url, 404, "face_not_found");
    expect_counts("dels", 3, 2);
    tc_response r;
    tc_post_jpeg(port, "/v1/collections/dels/search?k=10", NULL, s2, len, &r);
    json_t *sr = tc_expect_json(&r, 200);
    tc_response_free(&r);
    json_t *m = json_object_get(json_array_get(json_object_get(sr, "faces"), 0), "matches");
    for (size_t i = 0; i < json_array_size(m); i++)
        assert_true(json_integer_value(json_object_get(json_array_get(m, i), "face_id")) != a1);
    json_decref(sr);
    /* a deleted subject: its faces leave search and verify at once */
    tc_call(port, "DELETE", "/v1/collections/dels/subjects/a", NULL, 204);
    expect_counts("dels", 2, 1);
    snprintf(url, sizeof url, "/v1/collections/dels/faces/%lld", a2);
    call_error("GET", url, 404, "face_not_found");
    tc_post_jpeg(port, "/v1/collections/dels/search?k=10", NULL, s2, len, &r);
    assert_null(strstr(r.body ? r.body : "", "\"subject\":\"a\""));
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
    tc_post_jpeg(port, "/v1/verify?collection=dels&subject=a", NULL, s2, len, &r);
    tc_expect_error(&r, 404, "subject_not_found");
    tc_response_free(&r);

    /* a collection deleted while searches on it run: each answers 200 or 404, never 5xx */
    tc_create_collection(port, "doomed");
    long long old = enrol("doomed", "x", SAMPLE(2));
    struct searcher s = {.jpeg = s2, .len = len};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, search_loop, &s);
    while (s.ok < 2)
        tc_sleep_ms(10);
    tc_call(port, "DELETE", "/v1/collections/doomed", NULL, 204);
    while (s.gone < 2)
        tc_sleep_ms(10);
    s.stop = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(s.other, 0);
    /* re-created with the same name: empty, the old faces not found through it */
    tc_create_collection(port, "doomed");
    expect_counts("doomed", 0, 0);
    snprintf(url, sizeof url, "/v1/collections/doomed/faces/%lld", old);
    call_error("GET", url, 404, "face_not_found");
    call_error("GET", "/v1/collections/doomed/subjects/x", 404, "subject_not_found");
    tc_post_jpeg(port, "/v1/collections/doomed/search", NULL, s2, len, &r);
    sr = tc_expect_json(&r, 200);
    tc_response_free(&r);
    json_t *faces = json_object_get(sr, "faces");
    for (size_t i = 0; i < json_array_size(faces); i++)
        assert_int_equal(json_array_size(json_object_get(json_array_get(faces, i), "matches")), 0);
    json_decref(sr);
    free(s2);
}

/* ---- headers ---------------------------------------------------------------------------- */

/* The message of an error answer, as a person reads it (the caller's). */
static char *error_message(const char *method, const char *path, const char *json, int status,
                           const char *code)
{
    tc_response r;
    tc_request(port, method, path, json ? "Content-Type: application/json\r\n" : "", json,
               json ? strlen(json) : 0, &r);
    tc_expect_error(&r, status, code);
    json_t *j = tc_json(&r);
    char *m = strdup(json_string_value(json_object_get(json_object_get(j, "error"), "message")));
    json_decref(j);
    tc_response_free(&r);
    return m;
}

/* Found walking through the API as a new user: conflicts and an empty subject named the
 * subject unquoted ('subject Zo\u00eb Ann already exists in names'), where a subject id may hold
 * spaces and the store's own messages quote it, and verify against a subject created before
 * its photo said only 'has no enrolled face', not what to do. */
static void test_error_messages_name_and_advise(void **state)
{
    (void)state;
    NEED_SERVER();
    tc_create_collection(port, "names");
    json_decref(tc_call(port, "POST", "/v1/collections/names/subjects", "{\"id\":\"Zo\u00eb Ann\"}", 201));
    char *m = error_message("POST", "/v1/collections/names/subjects", "{\"id\":\"Zo\u00eb Ann\"}",
                            409, "subject_exists");
    if (!strstr(m, "subject \"Zo\xc3\xab Ann\" already exists in collection \"names\""))
        fail_msg("subject_exists: '%s'", m);
    free(m);
    m = error_message("POST", "/v1/collections", "{\"name\":\"names\"}", 409, "collection_exists");
    if (!strstr(m, "collection \"names\" already exists"))
        fail_msg("collection_exists: '%s'", m);
    free(m);
    size_t len;
    char *jpeg = tc_load(SAMPLE(2), &len);
    tc_response r;
    tc_post_jpeg(port, "/v1/verify?collection=names&subject=Zo%C3%AB%20Ann", NULL, jpeg, len, &r);
    tc_expect_error(&r, 422, "no_enrolled_face");
    json_t *j = tc_json(&r);
    const char *said = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    if (!strstr(said, "subject \"Zo\xc3\xab Ann\" of collection \"names\"") || !strstr(said, "enrol"))
        fail_msg("no_enrolled_face: '%s'", said);
    json_decref(j);
    tc_response_free(&r);
    free(jpeg);
}

/* Found walking through the API as a new user: PATCH /v1/collections/C {"name":"new"} (a
 * rename, which the API does not do) answered 200 with the collection unchanged, as if it had
 * worked. A PATCH with nothing it can change is 422, as a subject's without metadata is. */
static void test_patch_collection_nothing_to_change(void **state)
{
    (void)state;
    NEED_SERVER();
    tc_create_collection(port, "keepname");
    static const char *const bodies[] = {"{\"name\":\"renamed\"}", "{}", "{\"treshold\":0.5}"};
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        char *m = error_message("PATCH", "/v1/collections/keepname", bodies[i], 422,
                                "invalid_parameter");
        if (!strstr(m, "threshold")) fail_msg("PATCH %s: '%s' names no field to send", bodies[i], m);
        free(m);
    }
    call_error("GET", "/v1/collections/renamed", 404, "collection_not_found");
    json_t *c = tc_call(port, "PATCH", "/v1/collections/keepname", "{\"threshold\":0.5,\"name\":\"x\"}", 200);
    assert_true(json_real_value(json_object_get(c, "threshold")) == 0.5);
    assert_string_equal(json_string_value(json_object_get(c, "name")), "keepname");
    json_decref(c);
}

/* POST of a JPEG built here to path; the JSON answer, which must have this status. */
static json_t *post_image(const char *path, const img_image *im, int status)
{
    uint8_t *jpeg;
    size_t len;
    assert_int_equal(img_encode_jpeg(im, 90, &jpeg, &len), 0);
    tc_response r;
    tc_post_jpeg(port, path, NULL, (const char *)jpeg, len, &r);
    json_t *j = tc_expect_json(&r, status);
    tc_response_free(&r);
    free(jpeg);
    return j;
}

static long long int_field(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v)) fail_msg("no integer %s in the answer", k);
    return json_integer_value(v);
}

/* Every face of a detect answer is at least the min_face_size it reports (a pixel of rounding). */
static void expect_faces_at_least_min(json_t *d)
{
    long long min = int_field(d, "min_face_size");
    json_t *faces = json_object_get(d, "faces");
    for (size_t i = 0; i < json_array_size(faces); i++) {
        json_t *b = json_object_get(json_array_get(faces, i), "box");
        double w = json_number_value(json_object_get(b, "width"));
        double h = json_number_value(json_object_get(b, "height"));
        if ((w < h ? w : h) < (double)min - 1) fail_msg("a face of %.0f px under %lld", w, min);
    }
}

/* Found walking through the API as a new user: a 6000x6000 photo of a grid of 150-px faces
 * gave 0 faces from /v1/detect and 422 no_face from search, with nothing saying that faces
 * under some size are not looked for in an image that large (the detector sees a large JPEG
 * decoded reduced, and counts its 20-px minimum in those pixels). detect and analyze report
 * min_face_size (pixels of the image), no_face names it and says to crop; a crop of the same
 * grid finds its faces. */
static void test_large_image_says_smallest_face(void **state)
{
    (void)state;
    NEED_SERVER();
    img_image photo = {0}, cell = {0}, grid = {0}, crop = {0}, blank = {0};
    assert_int_equal(img_load_file(SAMPLE(2), NULL, &photo, NULL), 0);
    /* a 300-px cell around the photo's face, scaled so that the face is 150 px */
    uint8_t *jpeg;
    size_t len;
    assert_int_equal(img_encode_jpeg(&photo, 90, &jpeg, &len), 0);
    tc_response r;
    tc_post_jpeg(port, "/v1/detect", NULL, (const char *)jpeg, len, &r);
    free(jpeg);
    json_t *d = tc_expect_json(&r, 200);
    tc_response_free(&r);
    assert_true(int_field(d, "min_face_size") >= FACE_MIN_FACE_DEFAULT);
    json_t *box = json_object_get(json_array_get(json_object_get(d, "faces"), 0), "box");
    assert_non_null(box);
    double bx = json_number_value(json_object_get(box, "x")),
           by = json_number_value(json_object_get(box, "y")),
           bw = json_number_value(json_object_get(box, "width")),
           bh = json_number_value(json_object_get(box, "height"));
    json_decref(d);
    double side = 2 * (bw > bh ? bw : bh), cx = bx + bw / 2, cy = by + bh / 2;
    int x0 = (int)(cx - side / 2), y0 = (int)(cy - side / 2), s = (int)side;
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x0 + s > photo.width) s = photo.width - x0;
    if (y0 + s > photo.height) s = photo.height - y0;
    img_image square = {0};
    assert_int_equal(img_crop(&photo, x0, y0, s, s, &square), 0);
    const int C = (int)(300.0 * s / side); /* the face 150 px */
    assert_int_equal(img_resize(&square, C, C, &cell), 0);
    img_free(&square);
    const int G = 6000;
    assert_int_equal(img_alloc(&grid, G, G, 3), 0);
    memset(grid.data, 128, (size_t)G * G * 3);
    for (int gy = 0; gy + C <= G; gy += C)
        for (int gx = 0; gx + C <= G; gx += C)
            for (int y = 0; y < C; y++)
                memcpy(grid.data + ((size_t)(gy + y) * G + (size_t)gx) * 3,
                       cell.data + (size_t)y * C * 3, (size_t)C * 3);

    /* the whole grid: decoded at 1/8 for the detector, so 20 px there are 160 here */
    d = post_image("/v1/detect", &grid, 200);
    long long min = int_field(d, "min_face_size");
    assert_int_equal(min, 8 * FACE_MIN_FACE_DEFAULT);
    expect_faces_at_least_min(d);
    json_decref(d);
    d = post_image("/v1/analyze", &grid, 200);
    assert_int_equal(int_field(d, "min_face_size"), min);
    json_decref(d);
    tc_create_collection(port, "bigimg");
    uint8_t *gj;
    size_t gl;
    assert_int_equal(img_encode_jpeg(&grid, 90, &gj, &gl), 0);
    tc_post_jpeg(port, "/v1/collections/bigimg/search", NULL, (const char *)gj, gl, &r);
    if (r.status == 422) {
        tc_expect_error(&r, 422, "no_face");
        json_t *j = tc_json(&r);
        const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
        if (!strstr(m, "6000x6000") || !strstr(m, "smaller than 160 px") || !strstr(m, "crop"))
            fail_msg("no_face: '%s' does not say which faces were looked for", m);
        json_decref(j);
    } else {
        tc_expect_json(&r, 200); /* some faces found: then none is under 160 px (above) */
    }
    tc_response_free(&r);
    free(gj);

    /* a crop of the grid under 1080 lines: its faces, down to the default size */
    assert_int_equal(img_crop(&grid, 0, 0, 3 * C + C / 2, 3 * C + C / 2, &crop), 0);
    d = post_image("/v1/detect", &crop, 200);
    assert_int_equal(int_field(d, "min_face_size"), FACE_MIN_FACE_DEFAULT);
    if (json_array_size(json_object_get(d, "faces")) < 9)
        fail_msg("the crop's 9 faces: %zu found", json_array_size(json_object_get(d, "faces")));
    json_decref(d);

    /* a small image without a face: the default, and no advice to crop */
    assert_int_equal(img_alloc(&blank, 320, 240, 3), 0);
    memset(blank.data, 200, (size_t)320 * 240 * 3);
    d = post_image("/v1/collections/bigimg/search", &blank, 422);
    const char *m = json_string_value(json_object_get(json_object_get(d, "error"), "message"));
    if (!strstr(m, "smaller than 20 px") || strstr(m, "crop")) fail_msg("no_face: '%s'", m);
    json_decref(d);
    img_free(&photo);
    img_free(&cell);
    img_free(&grid);
    img_free(&crop);
    img_free(&blank);
}

/* A query value percent-encoded (what a client does with next_after). */
static void query_encode(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < cap; p++) {
        if ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
            out[o++] = (char)*p;
        else
            o += (size_t)snprintf(out + o, 4, "%%%02X", *p);
    }
    out[o] = '\0';
}

/* The faces of a list page, as "SUBJECT/FACE_ID" strings into seen[*n]; its next_after. */
static json_t *faces_page(const char *url, char seen[][160], int *n)
{
    json_t *j = tc_call(port, "GET", url, NULL, 200);
    json_t *items = json_object_get(j, "faces");
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *f = json_array_get(items, i);
        assert_true(*n < 64);
        snprintf(seen[(*n)++], 160, "%s/%lld", json_string_value(json_object_get(f, "subject")),
                 (long long)json_integer_value(json_object_get(f, "face_id")));
    }
    return j;
}

/* Found walking through the API as a new user: GET .../faces answered 422 "subject is
 * required", so there was no way to list a collection's faces. Without subject it lists
 * them all, subject by subject (in id order) and each one's faces by id, paginated as the
 * other lists; a cursor whose face was deleted meanwhile still resumes where it was. */
static void test_faces_of_collection(void **state)
{
    (void)state;
    NEED_SERVER();
    tc_create_collection(port, "allfaces");
    /* subjects in an order unlike their enrolment's; one without faces */
    long long ids[5];
    ids[0] = enrol("allfaces", "carol", SAMPLE(3));
    ids[1] = enrol("allfaces", "alice", SAMPLE(1));
    ids[2] = enrol("allfaces", "carol", SAMPLE(4));
    ids[3] = enrol("allfaces", "bob", SAMPLE(2));
    ids[4] = enrol("allfaces", "alice", SAMPLE(6));
    json_decref(tc_call(port, "POST", "/v1/collections/allfaces/subjects", "{\"id\":\"alfred\"}", 201));
    char want[5][160];
    snprintf(want[0], 160, "alice/%lld", ids[1]);
    snprintf(want[1], 160, "alice/%lld", ids[4]);
    snprintf(want[2], 160, "bob/%lld", ids[3]);
    snprintf(want[3], 160, "carol/%lld", ids[0]);
    snprintf(want[4], 160, "carol/%lld", ids[2]);
    for (int limit = 1; limit <= 6; limit++) {
        char seen[64][160];
        int n = 0, pages = 0;
        char url[400];
        snprintf(url, sizeof url, "/v1/collections/allfaces/faces?limit=%d", limit);
        for (;;) {
            json_t *j = faces_page(url, seen, &n);
            pages++;
            json_t *next = json_object_get(j, "next_after");
            if (json_is_null(next)) {
                json_decref(j);
                break;
            }
            assert_true(pages < 10);
            char esc[200];
            query_encode(json_string_value(next), esc, sizeof esc);
            snprintf(url, sizeof url, "/v1/collections/allfaces/faces?limit=%d&after=%s", limit,
                     esc);
            json_decref(j);
        }
        assert_int_equal(n, 5);
        for (int i = 0; i < 5; i++)
            if (strcmp(seen[i], want[i]) != 0)
                fail_msg("limit %d: item %d is %s, not %s", limit, i, seen[i], want[i]);
        assert_int_equal(pages, (5 + limit - 1) / limit);
    }
    /* the cursor's face deleted: the next page starts after it all the same */
    char seen[64][160];
    int n = 0;
    json_t *j = faces_page("/v1/collections/allfaces/faces?limit=1", seen, &n);
    char esc[200], url[400];
    query_encode(json_string_value(json_object_get(j, "next_after")), esc, sizeof esc);
    json_decref(j);
    snprintf(url, sizeof url, "/v1/collections/allfaces/faces/%lld", ids[1]);
    json_decref(tc_call(port, "DELETE", url, NULL, 204));
    snprintf(url, sizeof url, "/v1/collections/allfaces/faces?limit=2&after=%s", esc);
    j = faces_page(url, seen, &n);
    json_decref(j);
    assert_int_equal(n, 3);
    assert_string_equal(seen[1], want[1]);
    assert_string_equal(seen[2], want[2]);
    /* the subject list's filter is as it was; a cursor of the other form is refused */
    j = faces_page("/v1/collections/allfaces/faces?subject=carol", seen, &n);
    json_decref(j);
    assert_int_equal(n, 5);
    call_error("GET", "/v1/collections/allfaces/faces?after=5", 422, "invalid_parameter");
    call_error("GET", "/v1/collections/nosuch/faces", 404, "collection_not_found");
    json_t *empty = tc_call(port, "GET", "/v1/collections/allfaces/faces?after=1%3Azzz", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(empty, "faces")), 0);
    assert_true(json_is_null(json_object_get(empty, "next_after")));
    json_decref(empty);
}

/* Found walking through the API as a new user: DELETE .../faces/abc answered 404 "no face
 * abc", as if a face could have that id. Face ids are positive integers: a path segment that
 * is not one is a malformed parameter, 422 invalid_parameter (as a malformed collection name
 * in the path is), on every face route; a well-formed id no face has stays 404. */
static void test_face_id_not_a_number(void **state)
{
    (void)state;
    NEED_SERVER();
    tc_create_collection(port, "ids");
    char *m = error_message("GET", "/v1/collections/bad%20name", NULL, 422, "invalid_parameter");
    free(m);
    static const char *const bad[] = {"abc", "0", "-3", "1.5", "%2B7", "12abc",
                                      "99999999999999999999"};
    static const char *const methods[] = {"GET", "DELETE", "GET"};
    static const char *const suffixes[] = {"", "", "/thumbnail"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        for (size_t k = 0; k < 3; k++) {
            char path[160];
            snprintf(path, sizeof path, "/v1/collections/ids/faces/%s%s", bad[i], suffixes[k]);
            m = error_message(methods[k], path, NULL, 422, "invalid_parameter");
            if (!strstr(m, "face ids are positive integers"))
                fail_msg("%s %s: '%s' does not say what a face id is", methods[k], path, m);
            free(m);
        }
    call_error("DELETE", "/v1/collections/ids/faces/999999", 404, "face_not_found");
    call_error("GET", "/v1/collections/ids/faces/999999", 404, "face_not_found");
}

static void test_deadline_and_etag(void **state)
{
    (void)state;
    NEED_SERVER();
    /* X-Request-Deadline-Ms: an integer in 1..--max-deadline-ms (60000), else 400 */
    static const char *const bad[] = {"0", "-5", "abc", "1.5", "60001", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char h[128];
        snprintf(h, sizeof h, "X-Request-Deadline-Ms: %s\r\n", bad[i]);
        tc_response r;
        tc_get(port, "/v1/collections", h, &r);
        tc_expect_error(&r, 400, "bad_request");
        tc_response_free(&r);
    }
    tc_response r;
    /* blanks after the value are not part of it (RFC 9110 5.5) */
    tc_get(port, "/v1/collections", "X-Request-Deadline-Ms: 100 \t\r\n", &r);
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
    tc_get(port, "/v1/collections", "X-Request-Deadline-Ms: 60000\r\n", &r);
    assert_int_equal(r.status, 200);
    /* the API's answers are not cached (no ETag: openapi.json offers If-None-Match only for
     * the web page's files) */
    char v[128];
    assert_null(tc_header(&r, "ETag", v, sizeof v));
    assert_non_null(tc_header(&r, "Cache-Control", v, sizeof v));
    assert_string_equal(v, "no-store");
    tc_response_free(&r);
    tc_get(port, "/app.js", "", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(tc_header(&r, "ETag", v, sizeof v));
    tc_response_free(&r);
    char h[200];
    snprintf(h, sizeof h, "If-None-Match: %s\r\n", v);
    tc_get(port, "/app.js", h, &r);
    assert_int_equal(r.status, 304);
    tc_response_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pagination_edges),
        cmocka_unit_test(test_pagination_under_churn),
        cmocka_unit_test(test_idempotency),
        cmocka_unit_test(test_idempotency_after_error),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_search),
        cmocka_unit_test(test_same_numbers_every_transport),
        cmocka_unit_test(test_unlisted_parameters),
        cmocka_unit_test(test_deletes),
        cmocka_unit_test(test_deadline_and_etag),
        cmocka_unit_test(test_error_messages_name_and_advise),
        cmocka_unit_test(test_patch_collection_nothing_to_change),
        cmocka_unit_test(test_face_id_not_a_number),
        cmocka_unit_test(test_large_image_says_smallest_face),
        cmocka_unit_test(test_faces_of_collection),
    };
    return cmocka_run_group_tests_name("api semantics", tests, setup, teardown);
}
