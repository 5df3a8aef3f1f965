/*
 * The counts of GET /v1/collections[/C] and /metrics through the real service, with two
 * servers on one SQLite file and a third process (this test, writing through the library as
 * `vultus gallery` does) changing it: the counts come from memory (they were COUNT(*) scans
 * of the store, 23-74 ms per call at 100k faces) and must still be exact. A server shows its
 * own writes in its answer to the next request, another process's within its once-a-second
 * refresh (the test waits up to 5 s and prints how long each took). Every figure is compared
 * with the store's own rows.
 *
 * Skips without the model pack (models/): the servers load it to start. A few seconds.
 */
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "gallery/gallery.h"
#include "gallery/helpers.h"
#include "http/client.h"

#define WAIT_MS 5000

/* A gauge's value for collection c in a /metrics text; -1 when absent. */
static long long gauge(const char *text, const char *metric, const char *c)
{
    char key[200];
    snprintf(key, sizeof key, "\n%s{collection=\"%s\"} ", metric, c);
    const char *p = strstr(text, key);
    return p ? atoll(p + strlen(key)) : -1;
}

/* The counts one server gives for collection c: GET /v1/collections/c, its entry in GET
 * /v1/collections and /metrics, all three the same, else -2 each; -1 each when it has none. */
static void server_counts(int port, const char *c, long long *subjects, long long *faces)
{
    char path[200];
    tc_response r;
    *subjects = *faces = -1;
    snprintf(path, sizeof path, "/v1/collections/%s", c);
    assert_int_equal(tc_get(port, path, NULL, &r), 0);
    if (r.status == 404) {
        tc_response_free(&r);
        return;
    }
    json_t *j = tc_expect_json(&r, 200);
    long long s = json_integer_value(json_object_get(j, "subjects"));
    long long f = json_integer_value(json_object_get(j, "faces"));
    json_decref(j);
    tc_response_free(&r);

    assert_int_equal(tc_get(port, "/v1/collections", NULL, &r), 0);
    j = tc_expect_json(&r, 200);
    long long ls = -1, lf = -1;
    json_t *item;
    size_t i;
    json_array_foreach(json_object_get(j, "collections"), i, item)
    {
        if (strcmp(json_string_value(json_object_get(item, "name")), c) != 0) continue;
        ls = json_integer_value(json_object_get(item, "subjects"));
        lf = json_integer_value(json_object_get(item, "faces"));
    }
    json_decref(j);
    tc_response_free(&r);

    assert_int_equal(tc_get(port, "/metrics", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    long long ms = gauge(r.body, "vultus_gallery_subjects", c);
    long long mf = gauge(r.body, "vultus_gallery_faces", c);
    tc_response_free(&r);
    if (ls != s || lf != f || ms != s || mf != f) {
        print_message("port %d, %s: get %lld/%lld, list %lld/%lld, metrics %lld/%lld\n", port, c, s,
                      f, ls, lf, ms, mf);
        s = f = -2;
    }
    *subjects = s;
    *faces = f;
}

/* Waits until the server at `port` counts `subjects` and `faces` in c (-1, -1: c gone) and
 * the store agrees; fails after WAIT_MS, or at once with `at_once` (the server's own write:
 * its answer shows it). */
static void expect_counts(int port, const char *dir, const char *c, long long subjects,
                          long long faces, int at_once, const char *after)
{
    double t0 = tc_now_ms();
    long long s, f;
    for (;;) {
        server_counts(port, c, &s, &f);
        if (s == subjects && f == faces) break;
        if (at_once || tc_now_ms() - t0 > WAIT_MS)
            fail_msg("%s: the server on port %d counts %lld subjects / %lld faces in %s after %.0f "
                     "ms, want %lld / %lld",
                     after, port, s, f, c, tc_now_ms() - t0, subjects, faces);
        tc_sleep_ms(20);
    }
    double ms = tc_now_ms() - t0;
    if (subjects >= 0) {
        char db_path[400];
        snprintf(db_path, sizeof db_path, "%s/vultus.db", dir);
        uint64_t ss = 0, sf = 0;
        assert_int_equal(store_counts(db_path, c, &ss, &sf), 0);
        if ((long long)ss != subjects || (long long)sf != faces)
            fail_msg("%s: the store has %llu subjects / %llu faces in %s, the server %lld / %lld",
                     after, (unsigned long long)ss, (unsigned long long)sf, c, subjects, faces);
    }
    print_message("%s: port %d counts %lld / %lld after %.0f ms\n", after, port, subjects, faces,
                  ms);
}

static void expect_status(int port, const char *method, const char *path, const char *json,
                          int status)
{
    tc_response r;
    if (json)
        assert_int_equal(tc_post_json(port, path, NULL, json, &r), 0);
    else
        assert_int_equal(tc_request(port, method, path, NULL, NULL, 0, &r), 0);
    if (r.status != status)
        fail_msg("%s %s: %d, want %d: %.300s", method, path, r.status, status,
                 r.body ? r.body : "");
    tc_response_free(&r);
}

static void test_counts_two_servers_and_a_writer(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    char dir[256];
    assert_int_equal(tc_temp_dir(dir), 0);
    tc_server a, b;
    static const char *const args[] = {"--workers", "1", "--grace-ms", "0", NULL};
    assert_int_equal(tc_server_start(&a, dir, args, 1), 0);
    assert_int_equal(tc_server_start(&b, dir, args, 1), 0);

    /* Through server a: a collection and two subjects without faces, which count. */
    tc_response r;
    assert_int_equal(tc_post_json(a.port, "/v1/collections", NULL, "{\"name\":\"c\"}", &r), 0);
    json_t *j = tc_expect_json(&r, 201);
    char model[GAL_MODEL_MAX + 1];
    snprintf(model, sizeof model, "%s", json_string_value(json_object_get(j, "model")));
    uint32_t dim = (uint32_t)json_integer_value(json_object_get(j, "dim"));
    assert_int_equal(json_integer_value(json_object_get(j, "subjects")), 0);
    json_decref(j);
    tc_response_free(&r);
    expect_status(a.port, "POST", "/v1/collections/c/subjects", "{\"id\":\"s1\"}", 201);
    expect_status(a.port, "POST", "/v1/collections/c/subjects", "{\"id\":\"s2\"}", 201);
    expect_counts(a.port, dir, "c", 2, 0, 1, "2 subjects added through a");
    expect_counts(b.port, dir, "c", 2, 0, 0, "2 subjects added through a");

    /* Another process on the file: 3 subjects, faces for two of them, one for s1. */
    char db[400];
    snprintf(db, sizeof db, "%s/vultus.db", dir);
    struct gal *g = NULL;
    assert_int_equal(gal_open(db, NULL, &g), 0);
    static const char *const ids[] = {"t1", "t2", "t3"};
    assert_int_equal(gal_subjects_add(g, "c", ids, NULL, 3), 0);
    float *e = calloc(4 * dim, sizeof *e);
    struct gal_face_input in[4];
    static const char *const owners[] = {"t1", "t1", "t2", "s1"};
    for (int i = 0; i < 4; i++) {
        e[i * dim + (uint32_t)i % dim] = 1.0f;
        in[i] = (struct gal_face_input){.subject_id = owners[i],
                                        .model_id = model,
                                        .dim = dim,
                                        .embedding = e + i * dim,
                                        .box = {0, 0, 10, 10}};
    }
    int64_t face_ids[4];
    assert_int_equal(gal_faces_add(g, "c", in, 4, face_ids), 0);
    gal_close(g);
    free(e);
    expect_counts(a.port, dir, "c", 5, 4, 0, "another process added 3 subjects, 4 faces");
    expect_counts(b.port, dir, "c", 5, 4, 0, "another process added 3 subjects, 4 faces");

    /* Through b: t1 deleted with its 2 faces; through a: s1's face, s1 staying. */
    expect_status(b.port, "DELETE", "/v1/collections/c/subjects/t1", NULL, 204);
    expect_counts(b.port, dir, "c", 4, 2, 1, "t1 deleted through b");
    expect_counts(a.port, dir, "c", 4, 2, 0, "t1 deleted through b");
    char path[200];
    snprintf(path, sizeof path, "/v1/collections/c/faces/%lld", (long long)face_ids[3]);
    expect_status(a.port, "DELETE", path, NULL, 204);
    expect_counts(a.port, dir, "c", 4, 1, 1, "s1's face deleted through a");
    expect_counts(b.port, dir, "c", 4, 1, 0, "s1's face deleted through a");

    /* The collection deleted through a: gone from both, /metrics included. */
    expect_status(a.port, "DELETE", "/v1/collections/c", NULL, 204);
    expect_counts(a.port, dir, "c", -1, -1, 1, "c deleted through a");
    expect_counts(b.port, dir, "c", -1, -1, 0, "c deleted through a");
    assert_int_equal(tc_get(b.port, "/metrics", NULL, &r), 0);
    assert_int_equal(gauge(r.body, "vultus_gallery_subjects", "c"), -1);
    assert_non_null(strstr(r.body, "\nvultus_gallery_collections 0\n"));
    tc_response_free(&r);

    assert_int_equal(tc_server_stop(&a), 0);
    assert_int_equal(tc_server_stop(&b), 0);
    tc_rm_rf(dir);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_two_servers_and_a_writer),
    };
    return cmocka_run_group_tests_name("gallery counts", tests, NULL, NULL);
}
