/*
 * Start-up: the port opens first, the models and the store load in the background, in
 * parallel, and nothing under /v1 is answered until both are in (server.c, load_models and
 * load_store). The store's load is held up on purpose, with no hook in the server: the test
 * holds an exclusive lock on the SQLite file (locking_mode EXCLUSIVE, a write transaction
 * open), so the gallery's open waits on SQLite's busy handler (10 s) until the test lets go,
 * as a large gallery (docs/gallery.md, "At 100k faces") or a slow disk would keep it busy.
 *
 *   - while the store is held: /healthz 200, /readyz 503 "loading the gallery" with
 *     checks.gallery false (and checks.models true once the models are in), /metrics 200;
 *     a search for a face that is enrolled answers 503 not_ready with Retry-After, never a
 *     200 without the match (a half-loaded gallery) nor a 404 for its collection;
 *   - once let go: /readyz 200 and the same search finds the subject;
 *   - SIGTERM while the store is held: the server drains and exits 0 once the load ends (no
 *     "drain timeout"); SIGTERM with a load that outlasts --drain-timeout-ms: exit 0 at the
 *     timeout, the warning naming the loader still running;
 *   - a store file that is not a database: exit 1, "cannot open the store" in the log.
 *
 * Skips without the model pack (models/). About 10 s.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "client.h"

#include <sqlite3.h>

#define SAMPLE "models/samples/sample1.jpg"

/* A data folder whose store has collection p with alice's face (sample1.jpg) enrolled. */
static void make_store(char *dir, char **jpeg, size_t *jpeg_len)
{
    assert_int_equal(tc_temp_dir(dir), 0);
    *jpeg = tc_load(SAMPLE, jpeg_len);
    tc_server s;
    assert_int_equal(tc_server_start(&s, dir, NULL, 1), 0);
    tc_response r;
    assert_int_equal(tc_post_json(s.port, "/v1/collections", NULL, "{\"name\":\"p\"}", &r), 0);
    assert_int_equal(r.status, 201);
    tc_response_free(&r);
    assert_int_equal(tc_request(s.port, "POST", "/v1/collections/p/faces?subject=alice",
                                "Content-Type: image/jpeg\r\n", *jpeg, *jpeg_len, &r),
                     0);
    assert_int_equal(r.status, 201);
    tc_response_free(&r);
    assert_int_equal(tc_server_stop(&s), 0);
}

/* Holds the SQLite file: no other connection can read it until store_release. */
static sqlite3 *store_hold(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/vultus.db", dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA locking_mode = EXCLUSIVE", NULL, NULL, NULL),
                     SQLITE_OK);
    /* a write: the exclusive lock is taken now and kept while the transaction is open */
    assert_int_equal(sqlite3_exec(db,
                                  "BEGIN EXCLUSIVE; CREATE TABLE test_startup_hold(x); "
                                  "DROP TABLE test_startup_hold",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    return db;
}

static void store_release(sqlite3 *db)
{
    assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* /readyz's JSON (the caller's reference), with its status in *status. */
static json_t *readyz(int port, int *status)
{
    tc_response r;
    assert_int_equal(tc_get(port, "/readyz", NULL, &r), 0);
    *status = r.status;
    json_t *j = tc_json(&r);
    if (!j) fail_msg("/readyz %d without JSON: %.200s", r.status, r.body ? r.body : "");
    tc_response_free(&r);
    return j;
}

static int check(json_t *ready, const char *name)
{
    return json_is_true(json_object_get(json_object_get(ready, "checks"), name));
}

static void search(int port, const char *jpeg, size_t len, tc_response *r)
{
    assert_int_equal(tc_request(port, "POST", "/v1/collections/p/search",
                                "Content-Type: image/jpeg\r\n", jpeg, len, r),
                     0);
}

/* Fails unless r is the 503 of a request that came before the server was ready. */
static void expect_loading(const tc_response *r, const char *what)
{
    char retry[32] = "";
    tc_header(r, "Retry-After", retry, sizeof retry);
    if (r->status != 503 || !retry[0])
        fail_msg("%s while the store loads: %d (Retry-After '%s'), not 503 not_ready: %.300s", what,
                 r->status, retry, r->body ? r->body : "");
    tc_expect_error(r, 503, "not_ready");
    if (!strstr(r->body, "loading")) fail_msg("%s: the 503 does not say what loads: %s", what, r->body);
}

static void test_ready_after_store_loads(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    char dir[256];
    char *jpeg;
    size_t len;
    make_store(dir, &jpeg, &len);

    sqlite3 *hold = store_hold(dir);
    tc_server s;
    assert_int_equal(tc_server_start(&s, dir, NULL, 0), 0); /* listening, not ready */
    tc_response r;
    assert_int_equal(tc_get(s.port, "/healthz", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    tc_response_free(&r);

    /* The models load meanwhile (slow under sanitizers): wait for them, the store still held. */
    int status = 0;
    json_t *j = NULL;
    double t0 = tc_now_ms();
    for (;;) {
        json_decref(j);
        j = readyz(s.port, &status);
        if (status != 503) fail_msg("/readyz %d while the store is held", status);
        if (check(j, "gallery")) fail_msg("checks.gallery true while the store is held");
        if (check(j, "models") || tc_now_ms() - t0 > 6000) break; /* the busy timeout is 10 s */
        tc_sleep_ms(20);
    }
    json_t *error = json_object_get(j, "error");
    const char *message = json_string_value(json_object_get(error, "message"));
    print_message("store held: /readyz 503 '%s' after %.0f ms\n", message ? message : "",
                  tc_now_ms() - t0);
    assert_string_equal(json_string_value(json_object_get(error, "code")), "not_ready");
    assert_non_null(message);
    assert_non_null(strstr(message, "gallery"));
    json_decref(j);

    search(s.port, jpeg, len, &r);
    expect_loading(&r, "a search");
    assert_non_null(strstr(r.body, "gallery"));
    tc_response_free(&r);
    assert_int_equal(tc_get(s.port, "/v1/collections/p", NULL, &r), 0);
    expect_loading(&r, "GET /v1/collections/p");
    tc_response_free(&r);
    assert_int_equal(tc_get(s.port, "/metrics", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\nvultus_ready 0\n"));
    tc_response_free(&r);

    store_release(hold);
    t0 = tc_now_ms();
    while (status != 200 && tc_now_ms() - t0 < 30000) {
        tc_sleep_ms(20);
        json_decref(readyz(s.port, &status));
    }
    print_message("store let go: /readyz %d after %.0f ms\n", status, tc_now_ms() - t0);
    assert_int_equal(status, 200);
    search(s.port, jpeg, len, &r);
    json_t *found = tc_expect_json(&r, 200);
    if (!strstr(r.body, "\"alice\"")) fail_msg("alice not found once ready: %.300s", r.body);
    json_decref(found);
    tc_response_free(&r);
    assert_int_equal(tc_server_stop(&s), 0);
    free(jpeg);
    tc_rm_rf(dir);
}

/* Whether the server's log has `text`. */
static int log_has(const tc_server *s, const char *text)
{
    char *log;
    size_t len;
    if (tc_read_file(s->log, &log, &len) != 0) return 0;
    int has = strstr(log, text) != NULL;
    free(log);
    return has;
}

static void test_sigterm_while_loading(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    char dir[256];
    char *jpeg;
    size_t len;
    make_store(dir, &jpeg, &len);
    free(jpeg);

    /* The load ends while the drain waits for it: a clean drain. */
    sqlite3 *hold = store_hold(dir);
    const char *args[] = {"--grace-ms", "2000", NULL};
    double t0;
    tc_server s;
    assert_int_equal(tc_server_start(&s, dir, args, 0), 0);
    assert_int_equal(kill(s.pid, SIGTERM), 0);
    t0 = tc_now_ms();
    while (!log_has(&s, "\"msg\":\"draining\"") && tc_now_ms() - t0 < 5000)
        tc_sleep_ms(10);
    int status;
    json_t *j = readyz(s.port, &status); /* still listening: within the grace */
    assert_int_equal(status, 503);
    assert_true(check(j, "draining"));
    assert_false(check(j, "gallery"));
    json_decref(j);
    store_release(hold);
    int rc = tc_server_wait(&s, 60000);
    print_message("SIGTERM while loading: exit %d\n", rc);
    assert_int_equal(rc, 0);
    assert_true(log_has(&s, "\"msg\":\"drained\""));
    assert_false(log_has(&s, "drain timeout"));

    /* A load that outlasts the drain timeout: cut off, exit 0 all the same. */
    hold = store_hold(dir);
    const char *args2[] = {"--grace-ms", "0", "--drain-timeout-ms", "500", NULL};
    assert_int_equal(tc_server_start(&s, dir, args2, 0), 0);
    assert_int_equal(kill(s.pid, SIGTERM), 0);
    rc = tc_server_wait(&s, 60000);
    print_message("SIGTERM, load longer than the drain timeout: exit %d\n", rc);
    store_release(hold);
    assert_int_equal(rc, 0);
    assert_true(log_has(&s, "drain timeout"));
    assert_true(log_has(&s, "\"loaders_running\":"));
    assert_false(log_has(&s, "\"loaders_running\":0"));
    assert_false(log_has(&s, "\"msg\":\"ready\""));
    tc_rm_rf(dir);
}

/* The store opens after the port now: one that cannot be opened still ends `serve` with exit 1
 * and says why, as when it was opened first. */
static void test_store_that_cannot_open(void **state)
{
    (void)state;
    char dir[256], path[300];
    assert_int_equal(tc_temp_dir(dir), 0);
    snprintf(path, sizeof path, "%s/vultus.db", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("not a database, but long enough to be read as one and refused as one: "
          "0123456789012345678901234567890123456789012345678901234567890123456789\n",
          f);
    fclose(f);
    const char *args[] = {"serve", "--listen", "127.0.0.1:0", "--data", dir, "--models", "models",
                          NULL};
    char out[16384];
    int rc = tc_run_vultus_fd(2, out, sizeof out, args);
    print_message("a foreign store file: exit %d\n", rc);
    if (rc != 1 || !strstr(out, "cannot open the store"))
        fail_msg("exit %d (not 1) or no 'cannot open the store' in the log:\n%s", rc, out);
    assert_null(strstr(out, "\"msg\":\"ready\""));
    tc_rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ready_after_store_loads),
        cmocka_unit_test(test_sigterm_while_loading),
        cmocka_unit_test(test_store_that_cannot_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
