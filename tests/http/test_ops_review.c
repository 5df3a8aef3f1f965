/*
 * What an SRE running `vultus serve` relies on and the other HTTP tests do not probe (the
 * operations review). The real server of this build on loopback, driven over raw sockets.
 *
 *   - the SQLite store's file deleted (or replaced) under a running server: /readyz turns 503
 *     (what is written now would be lost at the next start), /healthz stays 200, the log
 *     says why; vultus_ready in /metrics agrees with /readyz in every state (ready, the store
 *     gone, draining);
 *   - the request log: every line is JSON and every request line names its method, path and
 *     status, whatever bytes the method, path, query and headers hold (quotes, backslashes,
 *     control bytes, invalid UTF-8); requests that libmicrohttpd refuses itself before any
 *     route (a header block over its memory limit, a malformed header) are logged with their
 *     status and counted in /metrics too; every response our code makes has X-Request-Id;
 *   - --grace-ms above --drain-timeout-ms: warned at start, an idle drain ends as drained;
 *   - PostgreSQL that does not answer (a proxy that holds every byte, as a network partition;
 *     skips without PostgreSQL): a scrape of /metrics leaves /healthz and /v1/detect answered,
 *     /readyz turns 503 within seconds and back to 200 when the store answers, and SIGTERM
 *     still drains and exits 0 within the drain timeout.
 *
 * Skips when the model pack (models/) is absent (the server loads it to start). A few seconds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "client.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/un.h>

#define SAMPLE "models/samples/sample1.jpg"

static int get_status(int port, const char *path)
{
    tc_response r;
    if (tc_get(port, path, NULL, &r) != 0) return 0;
    tc_response_free(&r);
    return r.status;
}

/* /readyz's status and vultus_ready must agree: a dashboard or an alert on the metric sees
 * what the load balancer sees. Returns /readyz's status. */
static int ready_agrees(int port)
{
    int status = get_status(port, "/readyz");
    char *m = tc_metrics_page(port);
    double ready = tc_metric_in(m, "vultus_ready", -1);
    free(m);
    if ((status == 200) != (ready == 1))
        fail_msg("/readyz says %d but vultus_ready is %g", status, ready);
    return status;
}

/* The SQLite file deleted under a running server: SQLite goes on reading and writing the
 * unlinked file through its open descriptor, so every enrolment still answered 201 and
 * /readyz still said 200, and all of it vanished at the next start (which creates an empty
 * DATA/vultus.db). Now the once-a-second store check sees that DATA/vultus.db is no longer
 * the file the server has open: /readyz 503, /healthz 200, an error in the log. */
static void test_store_file_deleted(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    tc_server s;
    static const char *const args[] = {"--workers", "1", "--grace-ms", "0", NULL};
    assert_int_equal(tc_server_start(&s, NULL, args, 1), 0);
    assert_int_equal(ready_agrees(s.port), 200);

    char path[300];
    snprintf(path, sizeof path, "%s/vultus.db", s.dir);
    assert_int_equal(unlink(path), 0);
    double t0 = tc_now_ms();
    int status = 200;
    while (status == 200 && tc_now_ms() - t0 < 5000) {
        tc_sleep_ms(100);
        status = get_status(s.port, "/readyz");
    }
    double ms = tc_now_ms() - t0;
    if (status != 503) fail_msg("/readyz still %d 5 s after DATA/vultus.db was deleted", status);
    print_message("DATA/vultus.db deleted: /readyz 503 after %.0f ms\n", ms);
    tc_response r;
    assert_int_equal(tc_get(s.port, "/readyz", NULL, &r), 0);
    json_t *body = tc_json(&r);
    assert_non_null(body);
    assert_true(json_is_false(json_object_get(json_object_get(body, "checks"), "store")));
    json_decref(body);
    tc_response_free(&r);
    assert_int_equal(get_status(s.port, "/healthz"), 200);
    assert_int_equal(ready_agrees(s.port), 503);

    /* A new file at the same path (a restore copied in place) is not the one the server has
     * open either: still 503. */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    tc_sleep_ms(1500);
    assert_int_equal(get_status(s.port, "/readyz"), 503);

    char *log;
    size_t len;
    assert_int_equal(tc_read_file(s.log, &log, &len), 0);
    assert_non_null(strstr(log, "deleted or replaced"));
    free(log);
    assert_int_equal(tc_server_stop(&s), 0);
}

/* vultus_ready while draining: 0, as /readyz. */
static void test_ready_metric_while_draining(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    tc_server s;
    static const char *const args[] = {"--workers", "1", "--grace-ms", "3000", NULL};
    assert_int_equal(tc_server_start(&s, NULL, args, 1), 0);
    assert_int_equal(ready_agrees(s.port), 200);
    kill(s.pid, SIGTERM);
    tc_sleep_ms(300);
    assert_int_equal(ready_agrees(s.port), 503);
    char *m = tc_metrics_page(s.port);
    assert_true(tc_metric_in(m, "vultus_draining", -1) == 1);
    free(m);
    assert_int_equal(tc_server_wait(&s, 30000), 0);
    tc_rm_rf(s.dir);
}

/* --grace-ms above --drain-timeout-ms (an operator raising one and not the other): a warning
 * at start, and an idle server's drain ends at the timeout as drained, exit 0 (it logged
 * "requests still in flight are cut off" with none in flight, and skipped the clean
 * shutdown). */
static void test_grace_longer_than_drain(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    tc_server s;
    static const char *const args[] = {"--workers",          "1",    "--grace-ms", "3000",
                                       "--drain-timeout-ms", "1000", NULL};
    assert_int_equal(tc_server_start(&s, NULL, args, 1), 0);
    double t0 = tc_now_ms();
    kill(s.pid, SIGTERM);
    int rc = tc_server_wait(&s, 30000);
    double ms = tc_now_ms() - t0;
    char *log;
    size_t len;
    assert_int_equal(tc_read_file(s.log, &log, &len), 0);
    print_message("grace 3000 ms, drain timeout 1000 ms, idle: exit %d after %.0f ms\n", rc, ms);
    assert_int_equal(rc, 0);
    assert_true(ms < 2500);
    if (!strstr(log, "--grace-ms is not below --drain-timeout-ms"))
        fail_msg("no warning at start about --grace-ms >= --drain-timeout-ms");
    if (strstr(log, "drain timeout:") || !strstr(log, "\"msg\":\"drained\""))
        fail_msg("an idle drain did not end as drained: %s", len > 600 ? log + len - 600 : log);
    free(log);
    tc_rm_rf(s.dir);
}

/* ---- a PostgreSQL server that stops answering ------------------------------------------ */

typedef struct scrape_args {
    int port;
    tc_response r;
    atomic_int done; /* the scrape was answered */
} scrape_args;

static void *scrape_main(void *arg)
{
    scrape_args *a = arg;
    tc_get(a->port, "/metrics", NULL, &a->r);
    atomic_store(&a->done, 1);
    return NULL;
}

/* /metrics names every collection with its sizes, read from the store. It was rendered on the
 * event loop, so a scrape while PostgreSQL did not answer froze the whole server: /healthz
 * (the liveness probe) and /v1/detect, which needs no store, got no answer until the database
 * did. Now the scrape waits alone. */
static void test_metrics_with_store_frozen(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    char pg_dir[256], url[400], store[200];
    static tc_pg_proxy proxy; /* its threads outlive this function */
    TC_NEED_POSTGRES_PROXY(pg_dir, url, &proxy, NULL, store);
    const char *args[] = {"--workers", "1",       "--grace-ms", "0", "--drain-timeout-ms",
                          "2000",      "--store", store,        NULL};
    tc_server s;
    assert_int_equal(tc_server_start(&s, NULL, args, 1), 0);
    tc_response r;
    assert_int_equal(tc_post_json(s.port, "/v1/collections", NULL, "{\"name\":\"frozen\"}", &r), 0);
    assert_int_equal(r.status, 201);
    tc_response_free(&r);
    char *m = tc_metrics_page(s.port);
    assert_non_null(strstr(m, "vultus_gallery_faces{collection=\"frozen\"}"));
    free(m);

    atomic_store(&proxy.frozen, 1);
    scrape_args sa = {.port = s.port};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, scrape_main, &sa), 0);
    tc_sleep_ms(300); /* the scrape is waiting on the store */
    memset(&r, 0, sizeof r);
    double t0 = tc_now_ms();
    int hfd = tc_connect(s.port);
    assert_true(hfd >= 0);
    static const char get[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_int_equal(tc_send_all(hfd, get, strlen(get)), 0);
    /* The store stays frozen until the end of the test, so a /healthz that waited for it
     * would get no answer at all (as before the fix), however long it is given. */
    tc_read_response(hfd, &r, 10000);
    close(hfd);
    double healthz_ms = tc_now_ms() - t0;
    int healthz = r.status;
    tc_response_free(&r);
    size_t jpeg_len;
    char *jpeg = tc_load(SAMPLE, &jpeg_len);
    assert_non_null(jpeg);
    memset(&r, 0, sizeof r);
    int fd = tc_connect(s.port);
    assert_true(fd >= 0);
    char head[300];
    int n = snprintf(head, sizeof head,
                     "POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     jpeg_len);
    assert_int_equal(tc_send_all(fd, head, (size_t)n), 0);
    assert_int_equal(tc_send_all(fd, jpeg, jpeg_len), 0);
    tc_read_response(fd, &r, 5000);
    close(fd);
    int detect = r.status;
    tc_response_free(&r);
    free(jpeg);
    print_message("store frozen, a scrape waiting: /healthz %d in %.0f ms, /v1/detect %d\n",
                  healthz, healthz_ms, detect);
    if (healthz != 200 || atomic_load(&sa.done))
        fail_msg("/healthz: %d after %.0f ms while a scrape waited on the store (%s)", healthz,
                 healthz_ms, atomic_load(&sa.done) ? "which has been answered" : "still waiting");
    if (detect != 200) fail_msg("/v1/detect: %d while a scrape waited on the store", detect);

    /* /readyz: 503 once the store check has waited 5 s, 200 again when the store answers */
    double frozen_at = tc_now_ms() - 300;
    int ready = 200;
    while (ready == 200 && tc_now_ms() - frozen_at < 10000) {
        tc_sleep_ms(200);
        ready = get_status(s.port, "/readyz");
    }
    double not_ready_ms = tc_now_ms() - frozen_at;
    print_message("store frozen: /readyz %d after %.0f ms\n", ready, not_ready_ms);
    if (ready != 503) fail_msg("/readyz still %d 10 s after the store stopped answering", ready);
    atomic_store(&proxy.frozen, 0);
    pthread_join(t, NULL);
    int scraped = sa.r.status;
    tc_response_free(&sa.r);
    assert_int_equal(scraped, 200); /* answered once the store answers again */
    double thawed_at = tc_now_ms();
    while (ready != 200 && tc_now_ms() - thawed_at < 5000) {
        tc_sleep_ms(100);
        ready = get_status(s.port, "/readyz");
    }
    assert_int_equal(ready, 200);

    /* SIGTERM while the store hangs: the drain runs (the server stopped reacting to signals
     * while its store check waited) and ends within --drain-timeout-ms, exit 0 */
    atomic_store(&proxy.frozen, 1);
    tc_sleep_ms(1500); /* a store check is waiting now */
    double term_at = tc_now_ms();
    kill(s.pid, SIGTERM);
    int rc = tc_server_wait(&s, 20000);
    double exit_ms = tc_now_ms() - term_at;
    print_message("store frozen, SIGTERM: exit %d after %.0f ms (drain timeout 2000 ms)\n", rc,
                  exit_ms);
    atomic_store(&proxy.frozen, 0);
    if (rc != 0 || exit_ms > 5000)
        fail_msg("SIGTERM with the store frozen: exit %d after %.0f ms", rc, exit_ms);
    tc_rm_rf(s.dir);
    tc_pg_stop(pg_dir);
}

/* Sends raw bytes on a new connection; the response into r (status 0 when none came). */
static void raw_request(int port, const char *bytes, size_t len, tc_response *r)
{
    memset(r, 0, sizeof *r);
    int fd = tc_connect(port);
    assert_true(fd >= 0);
    assert_int_equal(tc_send_all(fd, bytes, len), 0);
    tc_read_response(fd, r, 10000);
    close(fd);
}

typedef struct probe {
    const char *what;
    const char *bytes; /* NULL: built by the test */
    int status;        /* expected */
    int request_id;    /* whether the response must carry X-Request-Id */
} probe;

/* Every line the server writes is JSON; every request line has id, method, path and a real
 * status, whatever the client sent; a response of ours has an X-Request-Id. */
static void test_request_log_lines(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    tc_server s;
    static const char *const args[] = {"--workers", "1", "--grace-ms", "0", NULL};
    assert_int_equal(tc_server_start(&s, NULL, args, 1), 0);

    /* a header block over libmicrohttpd's 64 KiB per connection: 431, answered by it */
    size_t big_len = 70000;
    char *big = malloc(big_len + 200);
    assert_non_null(big);
    int n = snprintf(big, 200, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(big + n, 'a', big_len);
    snprintf(big + n + big_len, 100, "\r\nConnection: close\r\n\r\n");

    const probe probes[] = {
        {"quotes, backslashes, control bytes and invalid UTF-8 in path, query, User-Agent",
         "GET /a\"b\\c\x01\x7f\xff\xfe?q=\"x\\\x02\xff HTTP/1.1\r\nHost: x\r\nUser-Agent: "
         "\"\\\x01\xff\r\nConnection: close\r\n\r\n",
         404, 1},
        {"percent-encoded NUL and 0xFF in a collection name",
         "GET /v1/collections/a%22b%5C%00%FF HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: "
         "close\r\n\r\n",
         400, 1},
        {"a method that is not UTF-8",
         "G\xff\xfeT /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405, 1},
        {"a method with a quote and a backslash",
         "FOO\"\\ /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405, 1},
        {"a Content-Length over the limit",
         "POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
         "99999999999\r\nConnection: "
         "close\r\n\r\n",
         413, 1},
        {"a header line without a colon (libmicrohttpd's 400)",
         "GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\nConnection: close\r\n\r\n", 400, 0},
        {"a header block over 64 KiB (libmicrohttpd's 431)", NULL, 431, 0},
        {"a malformed chunk size in the body (libmicrohttpd's 400, after our headers check)",
         "POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: "
         "close\r\n\r\nzz\r\n",
         400, 0},
    };
    int np = (int)(sizeof probes / sizeof *probes);
    for (int i = 0; i < np; i++) {
        tc_response r;
        const char *bytes = probes[i].bytes ? probes[i].bytes : big;
        raw_request(s.port, bytes, strlen(bytes), &r);
        if (r.status != probes[i].status)
            fail_msg("%s: expected %d, got %d", probes[i].what, probes[i].status, r.status);
        char id[128];
        if (probes[i].request_id && !tc_header(&r, "X-Request-Id", id, sizeof id))
            fail_msg("%s: no X-Request-Id", probes[i].what);
        tc_response_free(&r);
    }
    free(big);

    /* The two that libmicrohttpd answered count too, under the unmatched route. A request is
     * counted and logged as its connection's answer completes, just after the client has it:
     * polled, not slept for. */
    double malformed = -1, chunk = -1, t0 = tc_now_ms();
    while ((malformed != 1 || chunk != 1) && tc_now_ms() - t0 < 30000) {
        if (malformed >= 0) tc_sleep_ms(20);
        char *m = tc_metrics_page(s.port);
        malformed = tc_metric_in(
            m, "vultus_http_requests_total{method=\"\",route=\"unmatched\",status=\"431\"}", -1);
        chunk = tc_metric_in(
            m, "vultus_http_requests_total{method=\"POST\",route=\"/v1/detect\",status=\"400\"}",
            -1);
        free(m);
    }
    if (malformed != 1) fail_msg("the 431 is not counted in /metrics (%g)", malformed);
    if (chunk != 1)
        fail_msg("the 400 for a malformed chunk is not counted in /metrics (%g)", chunk);

    /* The server stopped first (it exits 0 after its drain): every line is written then. */
    kill(s.pid, SIGTERM);
    assert_int_equal(tc_server_wait(&s, 60000), 0);
    int requests = 0, seen[600] = {0};
    char *log;
    size_t len;
    assert_int_equal(tc_read_file(s.log, &log, &len), 0);
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        if (!json_is_object(o)) fail_msg("a log line is not JSON (%s): %.300s", err.text, line);
        const char *msg = json_string_value(json_object_get(o, "msg"));
        if (msg && strcmp(msg, "request") == 0) {
            static const char *const fields[] = {"id", "method", "path", "status", "remote"};
            for (size_t f = 0; f < sizeof fields / sizeof *fields; f++)
                if (!json_object_get(o, fields[f]))
                    fail_msg("a request line without \"%s\": %.300s", fields[f], line);
            int status = (int)json_integer_value(json_object_get(o, "status"));
            if (status < 100 || status > 599)
                fail_msg("a request line with status %d: %.300s", status, line);
            seen[status]++;
            requests++;
        }
        json_decref(o);
    }
    free(log);
    for (int i = 0; i < np; i++)
        if (!seen[probes[i].status])
            fail_msg("%s: no request line with status %d", probes[i].what, probes[i].status);
    print_message("%d request lines, all JSON with id, method, path, status\n", requests);
    tc_rm_rf(s.dir);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_file_deleted),
        cmocka_unit_test(test_ready_metric_while_draining),
        cmocka_unit_test(test_grace_longer_than_drain),
        cmocka_unit_test(test_metrics_with_store_frozen),
        cmocka_unit_test(test_request_log_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
