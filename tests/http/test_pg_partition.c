/*
 * A network partition between `vultus serve` and its PostgreSQL store: a TCP proxy in front
 * of a throw-away server (tools/pg-temp) that, frozen, holds every byte in both directions and
 * neither refuses nor closes a connection. Nothing on the client's side of such a partition
 * fails by itself: the bytes are acknowledged (here by the proxy's kernel; in a real partition
 * the kernel retransmits for 15 minutes), so a statement waits for its answer as long as the
 * partition lasts.
 *
 *   - with the store frozen, an enrolment and a search each answer 503 store_unavailable with
 *     Retry-After within a bound (VULTUS_STORE_TIMEOUT_MS is 2000 here; the bound asserted is
 *     generous), while /healthz and /v1/detect keep answering;
 *   - once the proxy passes bytes again, an enrolment and a search succeed (the connections
 *     that timed out are replaced by new ones). The time printed is mostly the two calls' own
 *     work (detection, embedding), printed beside it as measured with the store healthy: the
 *     store itself answers the first call after its unreachable window (100 ms here);
 *   - writes queued behind each other on the gallery's write lock while the store is frozen
 *     each get their 503 within about one limit of their start, not one limit per call ahead
 *     of them in the line, and none of them is stored once the store answers again;
 *   - idempotent enrolments queued on the API-key store's connection behind a statement that
 *     waits on a lock (another session holds the idempotency table) do the same, and the retry
 *     of one of them with the same Idempotency-Key, once the lock is free, stores its face once.
 *
 * Skips without the model pack (models/) or without PostgreSQL server binaries. About 30 s.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "client.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/un.h>

#define SAMPLE "models/samples/sample1.jpg"
#define BOUND_MS 15000 /* an answer while frozen must come before this; the timeout is 2 s */

/* ---- requests with a bounded wait -------------------------------------------------------- */

typedef struct call {
    int port;
    const char *method, *path, *type;
    const char *headers; /* more header lines, each ending in CRLF; NULL: none */
    const char *body;
    size_t len;
    tc_response r; /* status 0: no answer within BOUND_MS */
    double ms;
} call;

static void *call_main(void *arg)
{
    call *c = arg;
    memset(&c->r, 0, sizeof c->r);
    double t0 = tc_now_ms();
    int fd = tc_connect(c->port);
    if (fd < 0) return NULL;
    char head[512];
    int n = snprintf(
        head, sizeof head,
        "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s%s%sContent-Length: "
        "%zu\r\n\r\n",
        c->method, c->path, c->type ? "Content-Type: " : "", c->type ? c->type : "",
        c->type ? "\r\n" : "", c->headers ? c->headers : "", c->len);
    if (tc_send_all(fd, head, (size_t)n) == 0 && (!c->len || tc_send_all(fd, c->body, c->len) == 0))
        tc_read_response(fd, &c->r, BOUND_MS);
    close(fd);
    c->ms = tc_now_ms() - t0;
    return NULL;
}

static void call_run(call *c)
{
    call_main(c);
}

static void expect_unavailable(call *c, const char *what)
{
    char retry[32] = "";
    tc_header(&c->r, "Retry-After", retry, sizeof retry);
    char code[64];
    tc_error_code(&c->r, code, sizeof code);
    print_message("store frozen: %s %d %s after %.0f ms (Retry-After %s)\n", what, c->r.status,
                  code, c->ms, retry[0] ? retry : "none");
    if (c->r.status == 0) fail_msg("store frozen: %s got no answer in %d ms", what, BOUND_MS);
    if (c->r.status != 503 || strcmp(code, "store_unavailable") != 0 || !retry[0])
        fail_msg("store frozen: %s answered %d '%s' (Retry-After '%s'): %.300s", what, c->r.status,
                 code, retry, c->r.body ? c->r.body : "");
}

static void test_partition(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    char pg_dir[256], url[400], store[200];
    static tc_pg_proxy proxy; /* its threads outlive this function */
    /* connect_timeout=2: a reconnection attempt through the frozen proxy waits 2 s (libpq's
     * least), not the default 5 s */
    TC_NEED_POSTGRES_PROXY(pg_dir, url, &proxy, "?connect_timeout=2", store);
    setenv("VULTUS_STORE_TIMEOUT_MS", "2000", 1);
    /* three workers: an enrolment and a search waiting on the store leave one for /v1/detect */
    const char *args[] = {"--workers", "3", "--grace-ms", "0", "--store", store, NULL};
    tc_server s;
    assert_int_equal(tc_server_start(&s, NULL, args, 1), 0);
    size_t jpeg_len;
    char *jpeg = tc_load(SAMPLE, &jpeg_len);
    tc_response r;
    assert_int_equal(tc_post_json(s.port, "/v1/collections", NULL, "{\"name\":\"p\"}", &r), 0);
    assert_int_equal(r.status, 201);
    tc_response_free(&r);
    call enrol = {.port = s.port,
                  .method = "POST",
                  .path = "/v1/collections/p/faces?subject=alice",
                  .type = "image/jpeg",
                  .body = jpeg,
                  .len = jpeg_len};
    call search = {.port = s.port,
                   .method = "POST",
                   .path = "/v1/collections/p/search",
                   .type = "image/jpeg",
                   .body = jpeg,
                   .len = jpeg_len};
    call detect = {.port = s.port,
                   .method = "POST",
                   .path = "/v1/detect",
                   .type = "image/jpeg",
                   .body = jpeg,
                   .len = jpeg_len};
    call healthz = {.port = s.port, .method = "GET", .path = "/healthz"};
    call_run(&enrol);
    assert_int_equal(enrol.r.status, 201);
    tc_response_free(&enrol.r);
    call_run(&search);
    assert_int_equal(search.r.status, 200);
    tc_response_free(&search.r);
    const double healthy_ms = enrol.ms + search.ms; /* the same two calls, store healthy */

    atomic_store(&proxy.frozen, 1);
    pthread_t te, ts;
    assert_int_equal(pthread_create(&te, NULL, call_main, &enrol), 0);
    assert_int_equal(pthread_create(&ts, NULL, call_main, &search), 0);
    tc_sleep_ms(300); /* both wait on the store now */
    call_run(&healthz);
    call_run(&detect);
    print_message("store frozen: /healthz %d in %.0f ms, /v1/detect %d in %.0f ms\n",
                  healthz.r.status, healthz.ms, detect.r.status, detect.ms);
    pthread_join(te, NULL);
    pthread_join(ts, NULL);
    expect_unavailable(&enrol, "enrolment");
    expect_unavailable(&search, "search");
    if (healthz.r.status != 200)
        fail_msg("/healthz %d while the store was frozen", healthz.r.status);
    if (detect.r.status != 200)
        fail_msg("/v1/detect %d while the store was frozen", detect.r.status);
    tc_response_free(&enrol.r);
    tc_response_free(&search.r);
    tc_response_free(&healthz.r);
    tc_response_free(&detect.r);

    /* a later call while still frozen answers within the bound too (a reconnection attempt) */
    call_run(&search);
    expect_unavailable(&search, "a second search");
    tc_response_free(&search.r);

    atomic_store(&proxy.frozen, 0);
    double thawed = tc_now_ms();
    int enrolled = 0, found = 0, tries = 0;
    while ((!enrolled || !found) && tc_now_ms() - thawed < 20000) {
        if (!enrolled) {
            call_run(&enrol);
            enrolled = enrol.r.status == 201;
            tries += !enrolled;
            tc_response_free(&enrol.r);
        }
        if (!found) {
            call_run(&search);
            found = search.r.status == 200 && search.r.body && strstr(search.r.body, "alice");
            tries += !found;
            tc_response_free(&search.r);
        }
        if (!enrolled || !found) tc_sleep_ms(100);
    }
    print_message("store answering again: enrolment %s, search %s after %.0f ms (%d failed "
                  "tries; an enrolment and a search took %.0f ms with the store healthy)\n",
                  enrolled ? "201" : "failed", found ? "finds alice" : "failed",
                  tc_now_ms() - thawed, tries, healthy_ms);
    if (!enrolled || !found) fail_msg("no successful enrolment and search 20 s after the thaw");
    free(jpeg);
    tc_server_stop(&s);
    tc_rm_rf(s.dir);
    tc_pg_stop(pg_dir);
}

/* `vultus serve` on `store` with the limit at 1 s and a worker for each call of a queue (they
 * queue on the store, not in admission), with an empty collection `name`. */
static void start_server_1s(tc_server *s, const char *store, const char *name)
{
    setenv("VULTUS_STORE_TIMEOUT_MS", "1000", 1);
    const char *args[] = {"--workers", "8", "--grace-ms", "0", "--store", store, NULL};
    assert_int_equal(tc_server_start(s, NULL, args, 1), 0);
    unsetenv("VULTUS_STORE_TIMEOUT_MS");
    char body[64];
    snprintf(body, sizeof body, "{\"name\":\"%s\"}", name);
    tc_response r;
    assert_int_equal(tc_post_json(s->port, "/v1/collections", NULL, body, &r), 0);
    assert_int_equal(r.status, 201);
    tc_response_free(&r);
}

/* Runs the n calls at once (`what` each, while `situation`): each must get 503
 * store_unavailable with Retry-After within bound_ms, the limit being 1 s. */
#define QUEUE_MAX 8
static void run_queue(call *calls, int n, const char *situation, const char *what, int bound_ms)
{
    pthread_t threads[QUEUE_MAX];
    assert_true(n <= QUEUE_MAX);
    for (int i = 0; i < n; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, call_main, &calls[i]), 0);
    for (int i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    double slowest = 0;
    for (int i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s %d", what, i);
        expect_unavailable(&calls[i], name);
        if (calls[i].ms > slowest) slowest = calls[i].ms;
    }
    print_message("%s: %d %ss, the slowest answered after %.0f ms\n", situation, n, what, slowest);
    for (int i = 0; i < n; i++) {
        if (calls[i].ms >= bound_ms)
            fail_msg("%s %d answered after %.0f ms, limit 1000 ms (bound %d ms)", what, i,
                     calls[i].ms, bound_ms);
        tc_response_free(&calls[i].r);
    }
}

/*
 * QUEUED writes at once against a frozen store, the limit at 1 s: each waits for the gallery's
 * write lock behind the others, and the holder waits out its statement's limit. They used to
 * get their 503 one limit after another (the k-th after about k s); each must now answer
 * within about one limit of its start (QUEUED_BOUND_MS is generous: two limits and a half;
 * before the fix the slowest took 3.0 s: one limit, then a reconnection attempt of 2 s).
 * None of them may be stored later, and writes succeed once the store answers again.
 */
#define QUEUED 6
#define QUEUED_BOUND_MS 2500

static void test_queued_writes(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    char pg_dir[256], url[400], store[200];
    static tc_pg_proxy proxy; /* its threads outlive this function */
    TC_NEED_POSTGRES_PROXY(pg_dir, url, &proxy, "?connect_timeout=2", store);
    tc_server s;
    start_server_1s(&s, store, "q");
    tc_response r;

    call writes[QUEUED];
    char bodies[QUEUED][32];
    atomic_store(&proxy.frozen, 1);
    for (int i = 0; i < QUEUED; i++) {
        snprintf(bodies[i], sizeof bodies[i], "{\"id\":\"queued%d\"}", i);
        writes[i] = (call){.port = s.port,
                           .method = "POST",
                           .path = "/v1/collections/q/subjects",
                           .type = "application/json",
                           .body = bodies[i],
                           .len = strlen(bodies[i])};
    }
    run_queue(writes, QUEUED, "store frozen", "queued write", QUEUED_BOUND_MS);

    atomic_store(&proxy.frozen, 0);
    double thawed = tc_now_ms();
    int created = 0;
    while (!created && tc_now_ms() - thawed < 20000) {
        assert_int_equal(
            tc_post_json(s.port, "/v1/collections/q/subjects", NULL, "{\"id\":\"after\"}", &r), 0);
        created = r.status == 201;
        tc_response_free(&r);
        if (!created) tc_sleep_ms(100);
    }
    print_message("store answering again: a write %s after %.0f ms\n",
                  created ? "succeeded" : "failed", tc_now_ms() - thawed);
    if (!created) fail_msg("no successful write 20 s after the thaw");
    /* a call that got its 503 wrote nothing, then or later */
    tc_sleep_ms(1500);
    assert_int_equal(tc_get(s.port, "/v1/collections/q", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *j = tc_json(&r);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "subjects")), 1);
    json_decref(j);
    tc_response_free(&r);
    tc_server_stop(&s);
    tc_rm_rf(s.dir);
    tc_pg_stop(pg_dir);
}

/*
 * IDEM enrolments with an Idempotency-Key each, at once, while another session holds the
 * idempotency table locked (a replica's long transaction, an overloaded server: the statements
 * of the API-key store wait, the gallery's do not), the limit at 1 s. The key store's calls
 * share one connection (its db_lock): each used to wait its turn, then its own statement's
 * limit, so the k-th got its 503 after about k limits, and the handler then asked the store
 * again after its precheck had failed (a second limit, and a second place in line). Each must
 * now answer 503 store_unavailable within about one limit of its start (IDEM_BOUND_MS: the
 * limit, the answer's way back and room for a loaded machine, less than two limits). None of
 * the claims may be written; once the lock is free, the retry of one with its key stores the
 * face once, and a second retry replays that answer.
 */
#define IDEM 5
#define IDEM_BOUND_MS 1800

static void test_queued_idempotent_enrolments(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    char pg_dir[256], url[400];
    TC_NEED_POSTGRES(pg_dir, url);
    tc_server s;
    start_server_1s(&s, url, "i");
    tc_response r;
    size_t jpeg_len;
    char *jpeg = tc_load(SAMPLE, &jpeg_len);

    PGconn *holder = PQconnectdb(url);
    assert_int_equal(PQstatus(holder), CONNECTION_OK);
    PGresult *locked =
        PQexec(holder, "BEGIN; LOCK TABLE idempotency_keys IN ACCESS EXCLUSIVE MODE");
    assert_int_equal(PQresultStatus(locked), PGRES_COMMAND_OK);
    PQclear(locked);

    call enrols[IDEM];
    char paths[IDEM][64], keys[IDEM][48];
    for (int i = 0; i < IDEM; i++) {
        snprintf(paths[i], sizeof paths[i], "/v1/collections/i/faces?subject=idem%d", i);
        snprintf(keys[i], sizeof keys[i], "Idempotency-Key: queued-%d\r\n", i);
        enrols[i] = (call){.port = s.port,
                           .method = "POST",
                           .path = paths[i],
                           .type = "image/jpeg",
                           .headers = keys[i],
                           .body = jpeg,
                           .len = jpeg_len};
    }
    run_queue(enrols, IDEM, "key store waiting on a lock", "idempotent enrolment", IDEM_BOUND_MS);

    PQclear(PQexec(holder, "ROLLBACK"));
    double freed = tc_now_ms();
    int created = 0;
    while (!created && tc_now_ms() - freed < 20000) {
        call_run(&enrols[0]);
        created = enrols[0].r.status == 201;
        if (!created && tc_now_ms() - freed < 20000) {
            tc_response_free(&enrols[0].r);
            tc_sleep_ms(100);
        }
    }
    print_message("lock free: the retry with the same key %s after %.0f ms\n",
                  created ? "enrolled" : "failed", tc_now_ms() - freed);
    if (!created)
        fail_msg("no successful idempotent enrolment 20 s after the lock was freed: %d %.300s",
                 enrols[0].r.status, enrols[0].r.body ? enrols[0].r.body : "");
    json_t *first = tc_json(&enrols[0].r);
    json_int_t face_id = json_integer_value(json_object_get(first, "face_id"));
    json_decref(first);
    tc_response_free(&enrols[0].r);
    call_run(&enrols[0]);
    char replayed[16] = "";
    tc_header(&enrols[0].r, "Idempotency-Replayed", replayed, sizeof replayed);
    json_t *again = tc_json(&enrols[0].r);
    assert_int_equal(enrols[0].r.status, 201);
    assert_string_equal(replayed, "true");
    assert_int_equal(json_integer_value(json_object_get(again, "face_id")), face_id);
    json_decref(again);
    tc_response_free(&enrols[0].r);
    /* one face stored, and no claim left by the enrolments that got their 503 */
    tc_sleep_ms(1500);
    assert_int_equal(tc_get(s.port, "/v1/collections/i", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *j = tc_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "faces")), 1);
    json_decref(j);
    tc_response_free(&r);
    PGresult *claims = PQexec(holder, "SELECT count(*) FROM idempotency_keys");
    assert_int_equal(PQresultStatus(claims), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(claims, 0, 0), "1");
    PQclear(claims);
    PQfinish(holder);
    free(jpeg);
    tc_server_stop(&s);
    tc_rm_rf(s.dir);
    tc_pg_stop(pg_dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partition),
        cmocka_unit_test(test_queued_writes),
        cmocka_unit_test(test_queued_idempotent_enrolments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
