/*
 * The service as an operator and an attacker see it: what the other HTTP tests do not probe.
 * The real `vultus serve` of this build on loopback, driven over raw sockets.
 *
 *   - the token bucket at exactly its rate (never refused), just over it (refused), after a long
 *     idle (full, not overflowing);
 *   - the web page's paths: traversal and look-alike paths get the JSON 404, HEAD has the GET's
 *     headers and no body; security headers (nosniff; the page may not be framed);
 *   - X-Request-Id at the length limit and one over;
 *   - API keys: every scope against the routes above it, a collection-limited key against every
 *     route of another collection (percent-encoded too), malformed Authorization headers (401
 *     JSON, WWW-Authenticate, the token never echoed); the key text never in the log or /metrics;
 *   - the rate limit: per key, 429 with an integer Retry-After even at an absurdly low rate;
 *   - `vultus keys revoke` given the key text (what a leak gives an operator), not echoing it;
 *   - a body exactly at --max-body-bytes and one byte over, by Content-Length and chunked;
 *   - a client that sends its headers then stalls is closed after --read-timeout-ms;
 *   - /metrics adds up after a known sequence (requests by route and status, histogram counts,
 *     rejections), unknown paths do not create series, gauges return to idle;
 *   - --max-connections reached: further connections wait, and are served when one closes;
 *   - SIGTERM with an idle keep-alive connection and a slow upload; a drain that times out; a
 *     second signal while requests are queued (exits at once, cleanly).
 *
 * Skips when the model pack (models/) is absent (the server loads it to start). A few seconds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "client.h"
#include "http/internal.h"

#include <ctype.h>
#include <pthread.h>

#define SAMPLE "models/samples/sample1.jpg"

/* The server with API keys most tests share, and its keys. */
static tc_server keyed;
enum { K_ADMIN, K_WRITE, K_READ, K_LIMITED, K_RATE, K_COUNT };
static char keys[K_COUNT][128];
static char auth[K_COUNT][200]; /* "Authorization: Bearer KEY\r\n" */
static int rate_limited_seen;   /* 429s the rate-limit test received */

#define BODY_LIMIT 4096

static void make_key(const char *dir, const char *scope, const char *collection, char *key)
{
    /* made before its collection, which the test creates through the API */
    const char *args[] = {"keys", "create", "--scope", scope, "--data", dir,
                          collection ? "--collection" : NULL, collection,
                          "--allow-missing-collection", NULL};
    char out[128];
    assert_int_equal(tc_run_vultus(out, sizeof out, args), 0);
    out[strcspn(out, "\n")] = '\0';
    assert_true(strncmp(out, "vk_", 3) == 0);
    snprintf(key, 128, "%s", out);
}

static int start_keyed(void **state)
{
    (void)state;
    if (!tc_have_models()) return 0;
    char dir[256];
    if (tc_temp_dir(dir) != 0) return -1;
    static const char *const scope[K_COUNT] = {"admin", "write", "read", "write", "read"};
    for (int i = 0; i < K_COUNT; i++) {
        make_key(dir, scope[i], i == K_LIMITED ? "a" : NULL, keys[i]);
        snprintf(auth[i], sizeof auth[i], "Authorization: Bearer %s\r\n", keys[i]);
    }
    /* A rate so low that no token comes back during the test: each key has its burst of 60
     * requests, then 429 (what Retry-After says then is one of the probes). */
    static const char *const args[] = {"--workers",
                                       "1",
                                       "--rate-limit",
                                       "1e-12",
                                       "--rate-burst",
                                       "60",
                                       "--max-body-bytes",
                                       "4096", /* test_body_limit_exact */
                                       "--read-timeout-ms",
                                       "800",
                                       "--grace-ms",
                                       "0",
                                       NULL};
    if (tc_server_start(&keyed, dir, args, 1) != 0) return -1;
    keyed.own_dir = 1;
    return 0;
}

static int stop_keyed(void **state)
{
    (void)state;
    if (keyed.pid <= 0) return 0;
    return tc_server_stop(&keyed) != 0;
}

/* One request with a key's header plus `extra` header lines; the response into r. */
static void call(int key, const char *method, const char *path, const char *extra, const char *body,
                 tc_response *r)
{
    char h[600];
    snprintf(h, sizeof h, "%s%s%s", key >= 0 ? auth[key] : "",
             body ? "Content-Type: application/json\r\n" : "", extra ? extra : "");
    assert_int_equal(tc_request(keyed.port, method, path, h, body, body ? strlen(body) : 0, r), 0);
}

static void expect_status(int key, const char *method, const char *path, const char *body,
                          int status)
{
    tc_response r;
    call(key, method, path, NULL, body, &r);
    if (r.status != status)
        fail_msg("key %d: %s %s: expected %d, got %d: %.300s", key, method, path, status, r.status,
                 r.body ? r.body : "");
    tc_response_free(&r);
}

/* ---- the token bucket ------------------------------------------------------------------- */

/* test_http_codec checks a burst and a refill; these are the edges an operator relies on. */
static void test_bucket_edges(void **state)
{
    (void)state;
    /* A client at exactly the rate (10/s, bucket of 1) is never refused. */
    http_bucket b = {0};
    uint64_t t = 1000000000ull;
    for (int i = 0; i < 10000; i++, t += 100000000ull)
        if (http_bucket_take(&b, 10, 1, t) != 0) fail_msg("refused at the rate, request %d", i);
    /* 1% faster: refused within a few hundred requests, with a wait under a tenth of a second. */
    b = (http_bucket){0};
    int refused_at = -1;
    double wait = 0;
    for (int i = 0; i < 1000 && refused_at < 0; i++, t += 99000000ull)
        if ((wait = http_bucket_take(&b, 10, 1, t)) > 0) refused_at = i;
    assert_true(refused_at > 0 && refused_at < 200);
    assert_true(wait > 0 && wait <= 0.1);
    /* A year idle: a full bucket, no more (no overflow, no burst beyond the size). */
    b = (http_bucket){0};
    assert_true(http_bucket_take(&b, 1e6, 3, t) == 0);
    t += 365ull * 86400 * 1000000000ull;
    for (int i = 0; i < 3; i++)
        assert_true(http_bucket_take(&b, 1e6, 3, t) == 0);
    assert_true(http_bucket_take(&b, 1e6, 3, t) > 0);
    /* The clock going backwards (a restored bucket) refills nothing and does not crash. */
    assert_true(http_bucket_take(&b, 1e6, 3, t - 1000000000ull) > 0);
}

/* ---- the web page's paths, and headers on every response ---------------------------------- */

static void test_static_paths(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    static const char *const bad[] = {
        "/../app.js",  "/%2e%2e/app.js", "/..%2fapp.js", "//app.js",          "/./app.js",
        "/app.js/",    "/app.js/..",     "/APP.JS",      "/app.js%00",        "/index.html",
        "/web/app.js", "/app.js;x",      "/%61pp.js",    "/../../etc/passwd", "/static/../app.js"};
    size_t page_len;
    const char *type;
    const char *page = http_web_file("/app.js", &page_len, &type);
    assert_non_null(page);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tc_response r;
        call(-1, "GET", bad[i], NULL, NULL, &r);
        tc_expect_error(&r, 404, "not_found");
        char v[128];
        assert_string_equal(tc_header(&r, "Content-Type", v, sizeof v), "application/json");
        /* nothing of the file, whatever the path */
        assert_null(memmem(r.body, r.body_len, page, page_len < 64 ? page_len : 64));
        tc_response_free(&r);
    }
    /* HEAD: the GET's status and headers, no body; a query string does not change the file. */
    static const char *const files[] = {"/", "/app.css", "/app.js", "/favicon.svg"};
    for (size_t i = 0; i < 4; i++) {
        const char *data = http_web_file(files[i], &page_len, &type);
        tc_response get, head;
        call(-1, "GET", files[i], NULL, NULL, &get);
        call(-1, "HEAD", files[i], NULL, NULL, &head);
        assert_int_equal(get.status, 200);
        assert_int_equal(head.status, 200);
        assert_int_equal(get.body_len, page_len);
        assert_memory_equal(get.body, data, page_len);
        char a[128], b[128];
        assert_string_equal(tc_header(&get, "Content-Type", a, sizeof a), type);
        assert_string_equal(tc_header(&head, "Content-Type", b, sizeof b), type);
        assert_string_equal(tc_header(&get, "ETag", a, sizeof a),
                            tc_header(&head, "ETag", b, sizeof b));
        assert_string_equal(tc_header(&head, "Content-Length", b, sizeof b),
                            (snprintf(a, sizeof a, "%zu", page_len), a));
        assert_string_equal(tc_header(&head, "Cache-Control", b, sizeof b), "no-cache");
        tc_response_free(&get);
        tc_response_free(&head);
    }
    tc_response r;
    call(-1, "GET", "/?v=2", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
    /* POST to a file: 405 JSON, not the file. */
    call(-1, "POST", "/app.js", NULL, "{}", &r);
    tc_expect_error(&r, 405, "method_not_allowed");
    tc_response_free(&r);
}

/* A 405 says which methods the path takes: in Allow, which HTTP requires on a 405 (RFC 9110,
 * 15.5.6) and clients and proxies read, and in the message, for a person who typed the URL
 * into a browser or a curl without -F (a GET) and got only "not allowed". */
static void test_method_not_allowed_says_allowed(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    static const struct {
        const char *method, *path, *allow;
    } cases[] = {
        {"GET", "/v1/detect", "POST"},
        {"PUT", "/v1/collections/staff", "GET, HEAD, PATCH, DELETE"},
        {"DELETE", "/v1/collections", "GET, HEAD, POST"},
        {"POST", "/app.js", "GET, HEAD"},
        {"DELETE", "/healthz", "GET, HEAD"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tc_response r;
        call(-1, cases[i].method, cases[i].path, NULL, NULL, &r);
        tc_expect_error(&r, 405, "method_not_allowed");
        char allow[128];
        const char *got = tc_header(&r, "Allow", allow, sizeof allow);
        if (!got || strcmp(got, cases[i].allow) != 0)
            fail_msg("%s %s: Allow '%s', want '%s'", cases[i].method, cases[i].path,
                     got ? got : "(none)", cases[i].allow);
        char want[160];
        snprintf(want, sizeof want, "use %s", cases[i].allow);
        assert_non_null(strstr((const char *)r.body, want));
        tc_response_free(&r);
    }
}

/* Error bodies quote what the client sent (a path): a browser must never sniff them into a
 * page; and the web page, which keeps an API key and has delete buttons, must not be framed by
 * another site (clickjacking). Its <meta> Content-Security-Policy cannot say frame-ancestors:
 * browsers ignore that directive in a meta tag, so it has to be a header. */
static void test_security_headers(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    static const char *const paths[] = {"/",        "/app.js",         "/healthz",
                                        "/metrics", "/v1/collections", "/%3Cscript%3E"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        tc_response r;
        call(-1, "GET", paths[i], NULL, NULL, &r);
        char v[256];
        if (!tc_header(&r, "X-Content-Type-Options", v, sizeof v) || strcmp(v, "nosniff") != 0)
            fail_msg("GET %s (%d): no X-Content-Type-Options: nosniff", paths[i], r.status);
        tc_response_free(&r);
    }
    tc_response r;
    call(-1, "GET", "/", NULL, NULL, &r);
    char v[256];
    assert_non_null(tc_header(&r, "X-Frame-Options", v, sizeof v));
    assert_string_equal(v, "DENY");
    assert_non_null(tc_header(&r, "Content-Security-Policy", v, sizeof v));
    assert_non_null(strstr(v, "frame-ancestors 'none'"));
    tc_response_free(&r);
}

/* ---- X-Request-Id ----------------------------------------------------------------------- */

static void test_request_id_limits(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    char id[80], h[120], v[128];
    memset(id, 'a', 64);
    id[64] = '\0';
    snprintf(h, sizeof h, "X-Request-Id: %s\r\n", id);
    tc_response r;
    call(-1, "GET", "/healthz", h, NULL, &r);
    assert_string_equal(tc_header(&r, "X-Request-Id", v, sizeof v), id); /* 64: echoed */
    tc_response_free(&r);
    id[64] = 'a';
    id[65] = '\0';
    snprintf(h, sizeof h, "X-Request-Id: %s\r\n", id);
    call(-1, "GET", "/healthz", h, NULL, &r);
    assert_non_null(tc_header(&r, "X-Request-Id", v, sizeof v));
    assert_string_not_equal(v, id); /* 65: replaced by the server's own */
    assert_true(strlen(v) > 0 && strlen(v) <= 64);
    tc_response_free(&r);
    /* Bytes that would break a log line or a header: replaced, never echoed. */
    call(-1, "GET", "/healthz", "X-Request-Id: a\\\"b\xc3\xa9\r\n", NULL, &r);
    assert_non_null(tc_header(&r, "X-Request-Id", v, sizeof v));
    assert_null(strpbrk(v, "\\\"\xc3"));
    tc_response_free(&r);
}

/* ---- API keys --------------------------------------------------------------------------- */

static void test_scopes_enforced(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    /* set-up: collections a and b, a subject in each */
    expect_status(K_ADMIN, "POST", "/v1/collections", "{\"name\":\"a\"}", 201);
    expect_status(K_ADMIN, "POST", "/v1/collections", "{\"name\":\"b\"}", 201);
    expect_status(K_ADMIN, "POST", "/v1/collections/a/subjects", "{\"id\":\"s\"}", 201);
    expect_status(K_ADMIN, "POST", "/v1/collections/b/subjects", "{\"id\":\"s\"}", 201);

    /* A read key reads, and is refused every write and admin route (before any work). */
    expect_status(K_READ, "GET", "/v1/collections", NULL, 200);
    expect_status(K_READ, "GET", "/v1/collections/a/subjects", NULL, 200);
    expect_status(K_READ, "HEAD", "/v1/collections/a", NULL, 200);
    static const char *const writes[][2] = {{"POST", "/v1/collections/a/subjects"},
                                            {"PATCH", "/v1/collections/a/subjects/s"},
                                            {"DELETE", "/v1/collections/a/subjects/s"},
                                            {"POST", "/v1/collections/a/faces"},
                                            {"DELETE", "/v1/collections/a/faces/1"}};
    static const char *const admins[][2] = {{"POST", "/v1/collections"},
                                            {"PATCH", "/v1/collections/a"},
                                            {"DELETE", "/v1/collections/a"}};
    for (size_t i = 0; i < 5; i++) {
        tc_response r;
        call(K_READ, writes[i][0], writes[i][1], NULL, "{\"id\":\"x\",\"name\":\"x\"}", &r);
        tc_expect_error(&r, 403, "forbidden");
        tc_response_free(&r);
    }
    for (size_t i = 0; i < 3; i++) {
        for (int k = K_WRITE; k <= K_READ; k++) {
            tc_response r;
            call(k, admins[i][0], admins[i][1], NULL, "{\"name\":\"x\"}", &r);
            tc_expect_error(&r, 403, "forbidden");
            tc_response_free(&r);
        }
    }
    expect_status(K_WRITE, "POST", "/v1/collections/a/subjects", "{\"id\":\"w\"}", 201);

    /* The key limited to collection a: every route of b refused, also spelled %62. */
    static const char *const other[][2] = {
        {"GET", "/v1/collections/b"},
        {"GET", "/v1/collections/%62"},
        {"PATCH", "/v1/collections/b"},
        {"DELETE", "/v1/collections/b"},
        {"GET", "/v1/collections/b/subjects"},
        {"POST", "/v1/collections/b/subjects"},
        {"GET", "/v1/collections/b/subjects/s"},
        {"PATCH", "/v1/collections/b/subjects/s"},
        {"DELETE", "/v1/collections/%62/subjects/s"},
        {"GET", "/v1/collections/b/faces"},
        {"POST", "/v1/collections/b/faces"},
        {"GET", "/v1/collections/b/faces/1"},
        {"GET", "/v1/collections/b/faces/1/thumbnail"},
        {"DELETE", "/v1/collections/b/faces/1"},
        {"POST", "/v1/collections/b/search"},
        {"POST", "/v1/collections"},
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        tc_response r;
        call(K_LIMITED, other[i][0], other[i][1], NULL, "{\"id\":\"x\",\"name\":\"x\"}", &r);
        if (r.status != 403)
            fail_msg("limited key: %s %s: %d %.200s", other[i][0], other[i][1], r.status,
                     r.body ? r.body : "");
        tc_expect_error(&r, 403, "forbidden");
        tc_response_free(&r);
    }
    /* ... verify against a subject of b too (the collection is in the body, not the path). */
    tc_response r;
    call(K_LIMITED, "POST", "/v1/verify", NULL,
         "{\"collection\":\"b\",\"subject\":\"s\",\"image\":\"aGVsbG8=\"}", &r);
    tc_expect_error(&r, 403, "forbidden");
    tc_response_free(&r);
    /* Its own collection works, and the listing shows only it. */
    expect_status(K_LIMITED, "GET", "/v1/collections/a/subjects/s", NULL, 200);
    call(K_LIMITED, "GET", "/v1/collections", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *j = tc_json(&r);
    json_t *list = json_object_get(j, "collections");
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "name")), "a");
    json_decref(j);
    tc_response_free(&r);
    /* b is untouched */
    expect_status(K_ADMIN, "GET", "/v1/collections/b/subjects/s", NULL, 200);
}

static void test_malformed_authorization(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    const char *key = keys[K_READ];
    char wrong_secret[160], longer[160], two[200], tab[200], lower[200];
    /* the right id with another secret */
    snprintf(wrong_secret, sizeof wrong_secret, "Authorization: Bearer %.*sAAAAAAAAAAAA\r\n",
             (int)(strlen(key) - 12), key);
    snprintf(longer, sizeof longer, "Authorization: Bearer %sx\r\n", key);
    snprintf(two, sizeof two, "Authorization: Bearer %s extra\r\n", key);
    snprintf(tab, sizeof tab, "Authorization: Bearer\t%s\r\n", key);
    snprintf(lower, sizeof lower, "Authorization: bearer %s\r\n", key);
    const char *const bad[] = {"Authorization: Bearer\r\n",
                               "Authorization: Bearer \r\n",
                               "Authorization: Bearer      \r\n",
                               "Authorization: Basic dXNlcjpwYXNz\r\n",
                               "Authorization: \r\n",
                               "Authorization: vk_\r\n",
                               "Authorization: Bearer vk_\r\n",
                               wrong_secret,
                               longer,
                               two,
                               tab};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tc_response r;
        assert_int_equal(tc_request(keyed.port, "GET", "/v1/collections", bad[i], NULL, 0, &r), 0);
        if (r.status != 401) fail_msg("'%.*s': %d", (int)strlen(bad[i]) - 2, bad[i], r.status);
        tc_expect_error(&r, 401, "unauthorized");
        char v[64];
        assert_string_equal(tc_header(&r, "WWW-Authenticate", v, sizeof v), "Bearer");
        /* never the key text back */
        assert_null(strstr(r.body, "vk_"));
        tc_response_free(&r);
    }
    /* The scheme is case-insensitive (RFC 9110). */
    tc_response r;
    assert_int_equal(tc_request(keyed.port, "GET", "/v1/collections", lower, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
}

static int is_integer_text(const char *v)
{
    if (!*v) return 0;
    for (; *v; v++)
        if (!isdigit((unsigned char)*v)) return 0;
    return 1;
}

/* 429 once a key's bucket is empty, for that key only, with Retry-After an integer of seconds
 * however low the rate (here 1e-12/s: the wait does not fit an int). */
static void test_rate_limit_per_key(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    int ok = 0;
    tc_response r;
    for (int i = 0; i < 80; i++) {
        call(K_RATE, "GET", "/v1/collections", NULL, NULL, &r);
        if (r.status == 200) {
            ok++;
        } else {
            tc_expect_error(&r, 429, "rate_limited");
            rate_limited_seen++; /* counted before the checks below, for test_metrics_add_up */
            char v[64];
            if (!tc_header(&r, "Retry-After", v, sizeof v))
                fail_msg("429 without Retry-After: %s", r.head);
            if (!is_integer_text(v) || atoll(v) < 1)
                fail_msg("Retry-After '%s' is not a positive integer of seconds", v);
        }
        tc_response_free(&r);
    }
    assert_int_equal(ok, 60); /* the burst, then nothing */
    assert_int_equal(rate_limited_seen, 20);
    /* another key is not affected */
    expect_status(K_READ, "GET", "/v1/collections", NULL, 200);
}

/* ---- body limits and slow clients ------------------------------------------------------- */

/* A JSON body `{"name":"NAME"}` padded with spaces to exactly len bytes. */
static char *padded_body(const char *name, size_t len)
{
    char *b = malloc(len + 1);
    int n = snprintf(b, len + 1, "{\"name\":\"%s\"", name);
    memset(b + n, ' ', len - (size_t)n - 1);
    b[len - 1] = '}';
    b[len] = '\0';
    return b;
}

static void chunked_post(const char *path, const char *body, size_t len, tc_response *r)
{
    memset(r, 0, sizeof *r);
    int fd = tc_connect(keyed.port);
    assert_true(fd >= 0);
    char head[400];
    int n = snprintf(head, sizeof head,
                     "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s"
                     "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                     path, auth[K_ADMIN]);
    tc_send_all(fd, head, (size_t)n);
    /* in chunks of 1000 bytes */
    for (size_t off = 0; off < len; off += 1000) {
        size_t k = len - off < 1000 ? len - off : 1000;
        char line[32];
        int m = snprintf(line, sizeof line, "%zx\r\n", k);
        if (tc_send_all(fd, line, (size_t)m) || tc_send_all(fd, body + off, k) ||
            tc_send_all(fd, "\r\n", 2))
            break;
    }
    tc_send_all(fd, "0\r\n\r\n", 5);
    tc_read_response(fd, r, 10000);
    close(fd);
}

static void test_body_limit_exact(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    const char *names[] = {"exact", "exact-chunked"};
    for (int chunked = 0; chunked < 2; chunked++) {
        char *at = padded_body(names[chunked], BODY_LIMIT);
        char *over = padded_body("over", BODY_LIMIT + 1);
        tc_response r;
        if (chunked)
            chunked_post("/v1/collections", at, BODY_LIMIT, &r);
        else
            call(K_ADMIN, "POST", "/v1/collections", NULL, at, &r);
        if (r.status != 201)
            fail_msg("a body of exactly --max-body-bytes (%s): %d %.200s",
                     chunked ? "chunked" : "Content-Length", r.status, r.body ? r.body : "");
        tc_response_free(&r);
        if (chunked)
            chunked_post("/v1/collections", over, BODY_LIMIT + 1, &r);
        else
            call(K_ADMIN, "POST", "/v1/collections", NULL, over, &r);
        tc_expect_error(&r, 413, "body_too_large");
        tc_response_free(&r);
        free(at);
        free(over);
    }
    expect_status(K_ADMIN, "GET", "/v1/collections/over", NULL, 404);
}

/* Headers complete, then nothing: the connection is closed after --read-timeout-ms (800 ms),
 * counted in vultus_slow_connections_closed_total, and the server serves others meanwhile. */
static void test_stalled_body_closed(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    char *before = tc_metrics_page(keyed.port);
    double closed0 = tc_metric_in(before, "vultus_slow_connections_closed_total", 0);
    free(before);
    int fd = tc_connect(keyed.port);
    assert_true(fd >= 0);
    char head[300];
    int n = snprintf(head, sizeof head,
                     "POST /v1/collections HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Type: "
                     "application/json\r\nContent-Length: 100\r\n\r\n{\"na",
                     auth[K_ADMIN]);
    tc_send_all(fd, head, (size_t)n);
    double t0 = tc_now_ms();
    expect_status(-1, "GET", "/healthz", NULL, 200);
    tc_response r;
    memset(&r, 0, sizeof r);
    tc_read_response(fd, &r, 5000);
    double ms = tc_now_ms() - t0;
    close(fd);
    assert_true(r.closed);
    /* not before --read-timeout-ms (800); closed at all within the 5 s read above */
    if (ms < 500) fail_msg("the stalled client was closed after %.0f ms", ms);
    tc_response_free(&r);
    char *after = tc_metrics_page(keyed.port);
    assert_true(tc_metric_in(after, "vultus_slow_connections_closed_total", 0) == closed0 + 1);
    free(after);
}

/* ---- metrics ---------------------------------------------------------------------------- */

static void test_metrics_add_up(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    static const char healthz[] = "vultus_http_requests_total{method=\"GET\",route=\"/healthz\","
                                  "status=\"200\"}",
                      notfound[] = "vultus_http_requests_total{method=\"\",route=\"unmatched\","
                                   "status=\"404\"}",
                      notallowed[] = "vultus_http_requests_total{method=\"\",route=\"unmatched\","
                                     "status=\"405\"}",
                      healthz_count[] = "vultus_http_request_duration_seconds_count{method=\"GET\","
                                        "route=\"/healthz\"}",
                      unauthorized[] = "vultus_http_requests_total{method=\"GET\",route=\"/v1/"
                                       "collections\",status=\"401\"}";
    char *before = tc_metrics_page(keyed.port);
    for (int i = 0; i < 5; i++)
        expect_status(-1, "GET", "/healthz", NULL, 200);
    expect_status(-1, "HEAD", "/healthz", NULL, 200);
    for (int i = 0; i < 7; i++) {
        char path[64];
        snprintf(path, sizeof path, "/nope-%d-%x", i, (unsigned)rand());
        expect_status(-1, "GET", path, NULL, 404);
    }
    expect_status(-1, "DELETE", "/healthz", NULL, 405);
    expect_status(-1, "GET", "/v1/collections", NULL, 401);
    char *after = tc_metrics_page(keyed.port);
    assert_true(tc_metric_in(after, healthz, 0) - tc_metric_in(before, healthz, 0) == 6);
    assert_true(tc_metric_in(after, healthz_count, 0) - tc_metric_in(before, healthz_count, 0) ==
                6);
    assert_true(tc_metric_in(after, notfound, 0) - tc_metric_in(before, notfound, 0) == 7);
    assert_true(tc_metric_in(after, notallowed, 0) - tc_metric_in(before, notallowed, 0) == 1);
    assert_true(tc_metric_in(after, unauthorized, 0) - tc_metric_in(before, unauthorized, 0) == 1);
    /* Unknown paths share one series: no path is ever a label value. */
    assert_null(strstr(after, "nope-"));
    int unmatched = 0;
    for (const char *p = after; (p = strstr(p, "route=\"unmatched\"")); p++)
        unmatched++;
    assert_true(unmatched <= 4 + HTTP_HIST_BUCKETS + 3); /* 404, 405, 401?, 400 + one histogram */
    /* Every rejection the rate-limit test saw is counted. */
    assert_true(tc_metric_in(after, "vultus_rejected_requests_total{reason=\"rate_limited\"}", 0) ==
                rate_limited_seen);
    /* For every route, the histogram's count is the sum of its requests by status. */
    for (int i = 0; i < http_route_count; i++) {
        char prefix[256], count_series[256];
        snprintf(prefix, sizeof prefix, "vultus_http_requests_total{method=\"%s\",route=\"%s\",",
                 http_routes[i].method, http_routes[i].pattern);
        snprintf(count_series, sizeof count_series,
                 "vultus_http_request_duration_seconds_count{method=\"%s\",route=\"%s\"}",
                 http_routes[i].method, http_routes[i].pattern);
        double sum = 0;
        for (const char *p = after; (p = strstr(p, prefix)); p++)
            sum += atof(strchr(p, ' ') + 1);
        /* /metrics itself: this scrape is counted after it was rendered */
        if (strcmp(http_routes[i].pattern, "/metrics") == 0) continue;
        if (sum != tc_metric_in(after, count_series, 0))
            fail_msg("%s %s: %g requests, histogram count %g", http_routes[i].method,
                     http_routes[i].pattern, sum, tc_metric_in(after, count_series, 0));
    }
    /* Idle: nothing queued, busy or pending; in flight is the scrape itself. */
    assert_true(tc_metric_in(after, "vultus_queue_depth", -1) == 0);
    assert_true(tc_metric_in(after, "vultus_workers_busy", -1) == 0);
    assert_true(tc_metric_in(after, "vultus_batch_pending_faces", -1) == 0);
    assert_true(tc_metric_in(after, "vultus_batch_pending_requests", -1) == 0);
    assert_true(tc_metric_in(after, "vultus_http_in_flight_requests", -1) == 1);
    free(before);
    free(after);
}

/* The key text never reaches the log, /metrics or an answer; only the key's public id does. */
static void test_keys_never_logged(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    char *log;
    size_t len;
    assert_int_equal(tc_read_file(keyed.log, &log, &len), 0);
    char *text = tc_metrics_page(keyed.port);
    for (int i = 0; i < K_COUNT; i++) {
        /* after "vk_ID_": the secret itself may hold '_' */
        const char *secret = keys[i] + 4 + HTTP_KEY_ID_LEN;
        if (strstr(log, secret)) fail_msg("key %d's secret is in the server log", i);
        if (strstr(text, secret)) fail_msg("key %d's secret is in /metrics", i);
    }
    assert_null(strstr(log, "Bearer"));
    /* the requests were logged, with the key's id */
    char id[HTTP_KEY_ID_LEN + 16];
    snprintf(id, sizeof id, "\"key\":\"%.*s\"", HTTP_KEY_ID_LEN, keys[K_ADMIN] + 3);
    assert_non_null(strstr(log, id));
    free(text);
    free(log);
}

/* An operator holding a leaked key has its text, not its id: `vultus keys revoke KEY` revokes it
 * (and never prints the secret, which would put it in a terminal's scrollback or a CI log); the
 * running server refuses the key within about a second. */
static void test_revoke_by_key_text(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    char key[128], header[200];
    make_key(keyed.dir, "read", NULL, key);
    snprintf(header, sizeof header, "Authorization: Bearer %s\r\n", key);
    double t0 = tc_now_ms();
    int status = 0;
    while (status != 200 && tc_now_ms() - t0 < 5000) { /* the server loads it within a second */
        tc_response r;
        assert_int_equal(tc_get(keyed.port, "/v1/collections", header, &r), 0);
        status = r.status;
        tc_response_free(&r);
        if (status != 200) tc_sleep_ms(100);
    }
    assert_int_equal(status, 200);
    char err[1024];
    const char *args[] = {"keys", "revoke", key, "--data", keyed.dir, NULL};
    int rc = tc_run_vultus_fd(2, err, sizeof err, args);
    const char *secret = key + 4 + HTTP_KEY_ID_LEN; /* after "vk_ID_" */
    if (strstr(err, secret)) fail_msg("keys revoke printed the secret: %s", err);
    if (rc != 0) fail_msg("keys revoke KEY: exit %d: %s", rc, err);
    t0 = tc_now_ms();
    char said[512] = "";
    while (status != 401 && tc_now_ms() - t0 < 5000) {
        tc_sleep_ms(100);
        tc_response r;
        assert_int_equal(tc_get(keyed.port, "/v1/collections", header, &r), 0);
        status = r.status;
        snprintf(said, sizeof said, "%s", r.body ? r.body : "");
        tc_response_free(&r);
    }
    assert_int_equal(status, 401);
    /* The holder of a revoked key is told that may be why (it said only "unknown API key"). */
    if (!strstr(said, "revoked")) fail_msg("a revoked key's 401 does not say revoked: %s", said);
    print_message("revoked key refused %.0f ms after vultus keys revoke\n", tc_now_ms() - t0);
    /* An id that does not exist: an error that does not echo more than an id's worth of it. */
    const char *bogus[] = {"keys",   "revoke",  "vk_000000000000_SECRETSECRETSECRET",
                           "--data", keyed.dir, NULL};
    assert_int_not_equal(tc_run_vultus_fd(2, err, sizeof err, bogus), 0);
    assert_null(strstr(err, "SECRETSECRETSECRET"));
}

/* ---- connections and the drain ---------------------------------------------------------- */

/* Waits up to timeout_ms for the peer to close fd: 1 closed, 0 not. Data is read and dropped. */
static int closed_within(int fd, int timeout_ms)
{
    double end = tc_now_ms() + timeout_ms;
    for (;;) {
        int left = (int)(end - tc_now_ms());
        if (left <= 0) return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, left) <= 0) return 0;
        char b[4096];
        ssize_t n = recv(fd, b, sizeof b, 0);
        if (n <= 0) return 1;
    }
}

/* --max-connections reached: a further connection is neither refused nor answered; it waits in
 * the listen backlog and is served as soon as another closes. */
static void test_max_connections(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    tc_server s;
    static const char *const args[] = {"--max-connections", "2", "--workers", "1",
                                       "--grace-ms",        "0", NULL};
    assert_int_equal(tc_server_start(&s, NULL, args, 1), 0);
    int a = tc_connect(s.port), b = tc_connect(s.port);
    assert_true(a >= 0 && b >= 0);
    tc_sleep_ms(100); /* accepted */
    int c = tc_connect(s.port);
    assert_true(c >= 0);
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    tc_send_all(c, req, sizeof req - 1);
    tc_response r;
    memset(&r, 0, sizeof r);
    tc_read_response(c, &r, 400);
    assert_int_equal(r.status, 0); /* waiting */
    assert_int_equal(r.closed, 0);
    close(a);
    tc_read_response(c, &r, 5000);
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
    close(c);
    close(b);
    assert_int_equal(tc_server_stop(&s), 0);
}

/*
 * SIGTERM with an idle keep-alive connection and an upload in progress: the upload finishes
 * after the grace period and is answered (with Connection: close); the idle connection does
 * not hold the drain up: it is closed when the drain is done, and the process exits 0.
 */
static void test_drain_keepalive_and_upload(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    tc_server s;
    static const char *const args[] = {
        "--grace-ms", "200", "--drain-timeout-ms", "20000", "--workers", "1", NULL};
    assert_int_equal(tc_server_start(&s, NULL, args, 1), 0);
    int idle = tc_connect(s.port);
    static const char ka[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    tc_send_all(idle, ka, sizeof ka - 1);
    tc_response r;
    memset(&r, 0, sizeof r);
    assert_int_equal(tc_read_response(idle, &r, 5000), 0);
    assert_int_equal(r.status, 200);
    tc_response_free(&r);

    static const char body[] = "{\"name\":\"late\"}";
    int up = tc_connect(s.port);
    char head[256];
    int n = snprintf(head, sizeof head,
                     "POST /v1/collections HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                     "application/json\r\nContent-Length: %zu\r\n\r\n",
                     sizeof body - 1);
    tc_send_all(up, head, (size_t)n);
    tc_send_all(up, body, 5);
    tc_sleep_ms(100);
    double t0 = tc_now_ms();
    kill(s.pid, SIGTERM);
    /* Past the grace period no new connection is accepted. Polled rather than slept past
     * (when the grace period ends depends on when the loaded machine delivers the signal);
     * one accepted meanwhile is closed at once. */
    for (int fd; (fd = tc_connect(s.port)) >= 0; tc_sleep_ms(20)) {
        close(fd);
        if (tc_now_ms() - t0 > 30000)
            fail_msg("new connections still accepted 30 s after SIGTERM");
    }
    tc_send_all(up, body + 5, sizeof body - 1 - 5);
    memset(&r, 0, sizeof r);
    assert_int_equal(tc_read_response(up, &r, 5000), 0);
    assert_int_equal(r.status, 201);
    char v[32];
    assert_non_null(tc_header(&r, "Connection", v, sizeof v));
    assert_string_equal(v, "close");
    tc_response_free(&r);
    close(up);
    assert_true(closed_within(idle, 5000));
    close(idle);
    int rc = tc_server_wait(&s, 10000); /* exited (0) once nothing was left in flight */
    print_message("drained and exited %.0f ms after SIGTERM\n", tc_now_ms() - t0);
    assert_int_equal(rc, 0);
    tc_rm_rf(s.dir);
}

/* A request that never completes: the drain gives up after --drain-timeout-ms, says so in the
 * log, closes the connection, and the process exits (0, as documented). */
static void test_drain_timeout(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    tc_server s;
    static const char *const args[] = {"--grace-ms", "0", "--drain-timeout-ms", "500", NULL};
    assert_int_equal(tc_server_start(&s, NULL, args, 1), 0);
    int fd = tc_connect(s.port);
    static const char head[] = "POST /v1/collections HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                               "application/json\r\nContent-Length: 50\r\n\r\n{";
    tc_send_all(fd, head, sizeof head - 1);
    tc_sleep_ms(100);
    double t0 = tc_now_ms();
    kill(s.pid, SIGTERM);
    int rc = tc_server_wait(&s, 10000);
    double ms = tc_now_ms() - t0;
    assert_int_equal(rc, 0);
    /* Not before --drain-timeout-ms: it waited for the request; tc_server_wait's 10 s bound
     * is what shows it did not wait for ever (a bound of ours would time a loaded machine). */
    if (ms < 450) fail_msg("exited %.0f ms after SIGTERM, before the drain timeout", ms);
    assert_true(closed_within(fd, 1000));
    close(fd);
    char *log;
    size_t len;
    assert_int_equal(tc_read_file(s.log, &log, &len), 0);
    assert_non_null(strstr(log, "\"msg\":\"drain timeout"));
    free(log);
    tc_rm_rf(s.dir);
}

typedef struct analyze_client {
    int port;
    const char *jpeg;
    size_t len;
    int status; /* 0: no answer (the connection was closed) */
} analyze_client;

static void *analyze_main(void *arg)
{
    analyze_client *c = arg;
    tc_response r;
    if (tc_request(c->port, "POST", "/v1/analyze", "Content-Type: image/jpeg\r\n", c->jpeg, c->len,
                   &r) == 0)
        c->status = r.status;
    tc_response_free(&r);
    return NULL;
}

/* A second SIGTERM while requests are queued and running exits at once and cleanly: no abort
 * (libmicrohttpd panics when stopped with suspended connections), every log line JSON, and the
 * clients get an answer or a closed connection, not a hang. */
static void test_second_signal(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    tc_server s;
    static const char *const args[] = {"--workers",     "1",     "--grace-ms", "5000",
                                       "--deadline-ms", "60000", NULL};
    assert_int_equal(tc_server_start(&s, NULL, args, 1), 0);
    char *jpeg;
    size_t len;
    assert_int_equal(tc_read_file(SAMPLE, &jpeg, &len), 0);
    enum { N = 10 };
    analyze_client c[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        c[i] = (analyze_client){.port = s.port, .jpeg = jpeg, .len = len};
        pthread_create(&t[i], NULL, analyze_main, &c[i]);
    }
    /* Wait until several are queued behind the one worker. */
    double t0 = tc_now_ms();
    for (;;) {
        tc_response r;
        assert_int_equal(tc_get(s.port, "/metrics", NULL, &r), 0);
        double depth = tc_metric_in(r.body, "vultus_queue_depth", -1);
        tc_response_free(&r);
        if (depth >= 3) break;
        if (tc_now_ms() - t0 > 10000) fail_msg("the requests were not queued");
        tc_sleep_ms(5);
    }
    kill(s.pid, SIGTERM);
    /* The second SIGTERM only once the first is taken: two sent while the first is still
     * pending are one signal (standard signals do not queue), and the server then drains
     * through its 5 s grace: "a second signal took 5038 ms to exit" on a loaded machine. */
    for (double w0 = tc_now_ms();;) {
        char *text;
        size_t text_len;
        int taken = tc_read_file(s.log, &text, &text_len) == 0 && strstr(text, "\"draining\"");
        free(text);
        if (taken) break;
        if (tc_now_ms() - w0 > 10000) fail_msg("no \"draining\" log line 10 s after SIGTERM");
        tc_sleep_ms(5);
    }
    kill(s.pid, SIGTERM);
    t0 = tc_now_ms();
    int rc = tc_server_wait(&s, 10000);
    double ms = tc_now_ms() - t0;
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    char *log;
    size_t log_len;
    assert_int_equal(tc_read_file(s.log, &log, &log_len), 0);
    if (rc != 0)
        fail_msg("exit %d after a second signal; log tail: %s", rc,
                 log_len > 600 ? log + log_len - 600 : log);
    /* Cut off: exited before the 5 s grace period, which a drain waits out, could end (a
     * bound the configuration sets, not the machine's speed; it took ~100 ms here). */
    print_message("a second signal: exit after %.0f ms\n", ms);
    if (ms >= 5000) fail_msg("a second signal took %.0f ms to exit: not cut off", ms);
    assert_non_null(strstr(log, "second signal"));
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *o = json_loads(line, 0, NULL);
        if (!json_is_object(o)) fail_msg("a log line is not JSON: %.200s", line);
        json_decref(o);
    }
    int answered = 0;
    for (int i = 0; i < N; i++) {
        if (c[i].status) assert_int_equal(c[i].status, 200);
        answered += c[i].status != 0;
    }
    print_message("second signal: exit after %.0f ms, %d of %d requests answered\n", ms, answered,
                  N);
    assert_true(answered < N); /* it did not wait for the queue */
    free(log);
    free(jpeg);
    tc_rm_rf(s.dir);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest keyed_tests[] = {
        cmocka_unit_test(test_bucket_edges),        cmocka_unit_test(test_static_paths),
        cmocka_unit_test(test_method_not_allowed_says_allowed),
        cmocka_unit_test(test_security_headers),    cmocka_unit_test(test_request_id_limits),
        cmocka_unit_test(test_scopes_enforced),     cmocka_unit_test(test_malformed_authorization),
        cmocka_unit_test(test_rate_limit_per_key),  cmocka_unit_test(test_body_limit_exact),
        cmocka_unit_test(test_stalled_body_closed), cmocka_unit_test(test_metrics_add_up),
        cmocka_unit_test(test_keys_never_logged),   cmocka_unit_test(test_revoke_by_key_text),
    };
    const struct CMUnitTest own_server_tests[] = {
        cmocka_unit_test(test_max_connections),
        cmocka_unit_test(test_drain_keepalive_and_upload),
        cmocka_unit_test(test_drain_timeout),
        cmocka_unit_test(test_second_signal),
    };
    int failed = cmocka_run_group_tests_name("keyed server", keyed_tests, start_keyed, stop_keyed);
    failed += cmocka_run_group_tests_name("own servers", own_server_tests, NULL, NULL);
    return failed;
}
