/*
 * DNS rebinding against a server without API keys (--allowed-hosts, src/http/hosts.c). A web
 * page on evil.example that makes its name resolve to the server's address has the browser
 * send Host: evil.example; while the API is open that request must get 403 host_not_allowed,
 * and nothing it asked for may happen. Against the real binary on loopback, over raw sockets
 * so that every Host can be sent:
 *   - open, no list: a DNS name refused on /v1 (read and write) and the web page; IP literals
 *     (v4, [v6], with or without port), localhost and *.localhost answered; /healthz, /readyz,
 *     /metrics and /openapi.json answered for any Host; HTTP/1.0 without Host answered;
 *   - a list (flag, and VULTUS_ALLOWED_HOSTS): an exact name, a ".domain" rule (the domain
 *     and its subdomains, nothing that merely ends the same), "*";
 *   - a key exists: no check (a rebinding page cannot hold the key) unless the list is set;
 *   - `serve` refuses list entries that are not host names (a port, "*.example.com").
 * Plus the parser and the matcher alone, over edge cases. Skips the server cases when the
 * model pack (models/) is absent. A few seconds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "client.h"
#include "http/internal.h"

/* One request with this Host header line ("" for none) over HTTP/1.x; the response in r. */
static void request_host(int port, const char *version, const char *method, const char *path,
                         const char *host, const char *headers, const char *body, tc_response *r)
{
    memset(r, 0, sizeof *r);
    int fd = tc_connect(port);
    assert_true(fd >= 0);
    char head[4096];
    char host_line[512] = "";
    if (host[0]) snprintf(host_line, sizeof host_line, "Host: %s\r\n", host);
    size_t body_len = body ? strlen(body) : 0;
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/%s\r\n%sConnection: close\r\n%sContent-Length: %zu\r\n\r\n",
                     method, path, version, host_line, headers ? headers : "", body_len);
    assert_int_equal(tc_send_all(fd, head, (size_t)n), 0);
    if (body_len) assert_int_equal(tc_send_all(fd, body, body_len), 0);
    tc_read_response_ex(fd, r, 20000, 0);
    close(fd);
}

static int get_status(int port, const char *path, const char *host, const char *headers)
{
    tc_response r;
    request_host(port, "1.1", "GET", path, host, headers, NULL, &r);
    int status = r.status;
    tc_response_free(&r);
    return status;
}

/* GET path with this Host must be refused as a rebinding attempt, with a message that tells
 * the operator how to allow a name that is theirs (says: a part of it, or NULL). */
static void expect_refused_saying(int port, const char *path, const char *host, const char *headers,
                                  const char *says)
{
    tc_response r;
    request_host(port, "1.1", "GET", path, host, headers, NULL, &r);
    tc_expect_error(&r, 403, "host_not_allowed");
    if (!strstr(r.body, "--allowed-hosts") || (says && !strstr(r.body, says)))
        fail_msg("message: %s", r.body);
    tc_response_free(&r);
}

static void expect_refused(int port, const char *path, const char *host, const char *headers)
{
    expect_refused_saying(port, path, host, headers, NULL);
}

static void expect_status(int port, const char *path, const char *host, const char *headers,
                          int status)
{
    int got = get_status(port, path, host, headers);
    if (got != status) fail_msg("GET %s with Host '%s': %d, expected %d", path, host, got, status);
}

/* ---- the parser and the matcher --------------------------------------------------------- */

static void test_parse_and_match(void **state)
{
    (void)state;
    char list[1024];
    assert_int_equal(
        http_allowed_hosts_parse(" Vultus.Example.com. , .Corp.Example,,", list, sizeof list), 0);
    assert_string_equal(list, "vultus.example.com,.corp.example");
    assert_int_equal(http_allowed_hosts_parse("", list, sizeof list), 0);
    assert_string_equal(list, "");
    static const char *bad[] = {"a:80",    "*.example.com", "http://a",    "a b",      ".",
                                "a,[::1]", "a..b",          "a.example..", "é.example"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (http_allowed_hosts_parse(bad[i], list, sizeof list) != BASE_ERR_INVALID)
            fail_msg("--allowed-hosts '%s' was accepted", bad[i]);
    /* Through the configuration: a refused list leaves the one set before (the parser
     * writes as it goes), as every option's refusal does. */
    http_config c;
    http_config_defaults(&c);
    assert_int_equal(http_config_set(&c, "allowed-hosts", "faces.lan"), 0);
    assert_int_equal(http_config_set(&c, "allowed-hosts", "a.example,b.example:80"),
                     BASE_ERR_INVALID);
    assert_string_equal(c.allowed_hosts, "faces.lan");
    char tiny[8];
    assert_int_equal(http_allowed_hosts_parse("abc,def,ghi", tiny, sizeof tiny), BASE_ERR_INVALID);

    static const struct {
        const char *allowed, *host;
        int ok;
    } cases[] = {
        {"", NULL, 1},                     /* HTTP/1.0 without Host */
        {"", "", 1},                       /* an empty Host: not a browser's */
        {"", "127.0.0.1", 1},              /* IP literals */
        {"", "127.0.0.1:7860", 1},         /*  */
        {"", "10.1.2.3", 1},               /*  */
        {"", "[::1]", 1},                  /*  */
        {"", "[::1]:7860", 1},             /*  */
        {"", "[2001:db8::5]:80", 1},       /*  */
        {"", "::1", 1},                    /* unbracketed: not valid Host, still an address */
        {"", "[::1", 0},                   /* malformed */
        {"", "[::1]x", 0},                 /*  */
        {"", "[::1]:8x", 0},               /*  */
        {"", "[evil.example]", 0},         /*  */
        {"", "localhost", 1},              /* browsers resolve these to loopback themselves */
        {"", "LOCALHOST:7860", 1},         /*  */
        {"", "localhost.", 1},             /*  */
        {"", "app.localhost:7860", 1},     /*  */
        {"", "localhost.evil.example", 0}, /* names that only look local */
        {"", "evillocalhost", 0},          /*  */
        {"", "127.0.0.1.evil.example", 0}, /*  */
        {"", "127.1", 0},                  /* a browser sends 127.0.0.1 for it */
        {"", "evil.example", 0},           /* rebinding */
        {"", "evil.example:7860", 0},      /*  */
        {"", "vultus", 0},                 /* a single label is a DNS name too */
        {"", "evil.example:80:80", 0},     /*  */
        {"", "evil.example:x", 0},         /*  */
        {"vultus.example.com", "vultus.example.com", 1},
        {"vultus.example.com", "VULTUS.example.com.:443", 1},
        {"vultus.example.com", "a.vultus.example.com", 0},
        {"vultus.example.com", "vultus.example.com.evil.example", 0},
        {"vultus.example.com", "xvultus.example.com", 0},
        {".corp.example", "corp.example", 1},
        {".corp.example", "a.b.corp.example:8080", 1},
        {".corp.example", "xcorp.example", 0},
        {".corp.example", "corp.example.evil.example", 0},
        {"a,.corp.example,b", "b", 1},
        {"a,.corp.example,b", "c", 0},
        {"*", "evil.example", 1},
        {"a,*", "evil.example:1", 1},
        {"*", "[evil", 0}, /* not a host at all */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int ok = http_host_allowed(cases[i].allowed, cases[i].host) != 0;
        if (ok != cases[i].ok)
            fail_msg("allowed '%s', Host '%s': %s, expected %s", cases[i].allowed,
                     cases[i].host ? cases[i].host : "(none)", ok ? "allowed" : "refused",
                     cases[i].ok ? "allowed" : "refused");
    }
}

/* ---- the real server -------------------------------------------------------------------- */

static void start(tc_server *s, const char *data_dir, const char *const *extra)
{
    if (tc_server_start(s, data_dir, extra, 1) != 0) fail_msg("the server did not start");
}

/* Open (no key, no list): rebinding refused, every other way in answered. */
static void test_open_server(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    tc_server s;
    const char *extra[] = {"--workers", "1", NULL};
    start(&s, NULL, extra);
    int port = s.port;
    char with_port[64];
    snprintf(with_port, sizeof with_port, "127.0.0.1:%d", port);

    /* Rebinding: the gallery, the web page, with or without the port, any case. */
    expect_refused(port, "/v1/collections", "evil.example", NULL);
    expect_refused_saying(port, "/v1/collections", "Evil.Example:7860", NULL,
                          "start it with --allowed-hosts Evil.Example (or");
    expect_refused(port, "/v1/collections", "vultus", NULL);
    expect_refused(port, "/", "evil.example", NULL);
    expect_refused(port, "/app.js", "evil.example", NULL);

    /* A write: refused, and nothing was created. */
    tc_response r;
    request_host(port, "1.1", "POST", "/v1/collections", "evil.example",
                 "Content-Type: application/json\r\n", "{\"name\":\"rebound\"}", &r);
    tc_expect_error(&r, 403, "host_not_allowed");
    tc_response_free(&r);
    request_host(port, "1.1", "GET", "/v1/collections/rebound", "127.0.0.1", NULL, NULL, &r);
    tc_expect_error(&r, 404, "collection_not_found");
    tc_response_free(&r);

    /* IP literals, localhost and *.localhost. */
    const char *fine[] = {"127.0.0.1", with_port,        "[::1]",        "[::1]:7860",
                          "localhost", "LocalHost:7860", "app.localhost"};
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        expect_status(port, "/v1/collections", fine[i], NULL, 200);
        expect_status(port, "/", fine[i], NULL, 200);
    }
    request_host(port, "1.1", "POST", "/v1/collections", "localhost:7860",
                 "Content-Type: application/json\r\n", "{\"name\":\"local\"}", &r);
    json_decref(tc_expect_json(&r, 201));
    tc_response_free(&r);

    /* Probes, metrics and the API document: any Host. */
    const char *open_paths[] = {"/healthz", "/readyz", "/metrics", "/openapi.json"};
    for (size_t i = 0; i < sizeof open_paths / sizeof open_paths[0]; i++)
        expect_status(port, open_paths[i], "evil.example", NULL, 200);

    /* HTTP/1.0 without Host: not a browser (every browser sends Host), answered. */
    request_host(port, "1.0", "GET", "/v1/collections", "", NULL, NULL, &r);
    json_decref(tc_expect_json(&r, 200));
    tc_response_free(&r);

    /* The refusals are counted by route and status like any answer. */
    request_host(port, "1.1", "GET", "/metrics", "127.0.0.1", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "route=\"/v1/collections\",status=\"403\""));
    tc_response_free(&r);
    assert_int_equal(tc_server_stop(&s), 0);
}

/* A list, from the flag: exact names and a domain rule; from the environment: "*". */
static void test_allowed_hosts(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    tc_server s;
    const char *extra[] = {"--workers", "1", "--allowed-hosts", "vultus.example.com,.corp.example",
                           NULL};
    start(&s, NULL, extra);
    int port = s.port;
    expect_status(port, "/v1/collections", "vultus.example.com", NULL, 200);
    expect_status(port, "/v1/collections", "VULTUS.example.com.:443", NULL, 200);
    expect_status(port, "/", "vultus.example.com", NULL, 200);
    expect_status(port, "/v1/collections", "corp.example", NULL, 200);
    expect_status(port, "/v1/collections", "faces.eu.corp.example:8443", NULL, 200);
    expect_status(port, "/v1/collections", "127.0.0.1", NULL, 200);
    expect_status(port, "/v1/collections", "localhost", NULL, 200);
    expect_refused(port, "/v1/collections", "evil.example", NULL);
    expect_refused(port, "/v1/collections", "xcorp.example", NULL);
    expect_refused(port, "/v1/collections", "corp.example.evil.example", NULL);
    expect_refused(port, "/v1/collections", "a.vultus.example.com", NULL);
    assert_int_equal(tc_server_stop(&s), 0);

    setenv("VULTUS_ALLOWED_HOSTS", "*", 1);
    const char *plain[] = {"--workers", "1", NULL};
    int rc = tc_server_start(&s, NULL, plain, 1);
    unsetenv("VULTUS_ALLOWED_HOSTS");
    assert_int_equal(rc, 0);
    expect_status(s.port, "/v1/collections", "evil.example", NULL, 200);
    expect_status(s.port, "/", "anything.at.all:1", NULL, 200);
    assert_int_equal(tc_server_stop(&s), 0);
}

/* Once a key exists the key is the protection: no Host check, unless a list is set. */
static void test_keys_turn_the_check_off(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    char dir[256];
    assert_int_equal(tc_temp_dir(dir), 0);
    char key[256];
    const char *create[] = {"keys", "create", "--scope", "admin", "--data", dir, NULL};
    assert_int_equal(tc_run_vultus(key, sizeof key, create), 0);
    key[strcspn(key, "\n")] = '\0';
    char auth[300];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", key);

    tc_server s;
    const char *extra[] = {"--workers", "1", NULL};
    start(&s, dir, extra);
    expect_status(s.port, "/v1/collections", "faces.example.org", auth, 200);
    /* Without the key: the usual 401, not a Host error. */
    tc_response r;
    request_host(s.port, "1.1", "GET", "/v1/collections", "faces.example.org", NULL, NULL, &r);
    tc_expect_error(&r, 401, "unauthorized");
    tc_response_free(&r);
    expect_status(s.port, "/", "faces.example.org", NULL, 200);
    assert_int_equal(tc_server_stop(&s), 0);

    /* A list set: checked with the key too (before the key). */
    const char *listed[] = {"--workers", "1", "--allowed-hosts", "faces.example.org", NULL};
    start(&s, dir, listed);
    expect_status(s.port, "/v1/collections", "faces.example.org", auth, 200);
    expect_status(s.port, "/v1/collections", "10.0.0.7:7860", auth, 200);
    expect_refused_saying(s.port, "/v1/collections", "other.example.org:7860", auth,
                          "add other.example.org to --allowed-hosts");
    expect_refused(s.port, "/", "other.example.org", NULL);
    assert_int_equal(tc_server_stop(&s), 0);
    tc_rm_rf(dir);
}

/* Entries that are not host names stop `serve` with a usage error naming them. */
static void test_bad_lists_refused(void **state)
{
    (void)state;
    static const char *bad[] = {"vultus.example.com:443", "*.example.com", "https://a.example"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char out[4096];
        const char *args[] = {"serve", "--allowed-hosts", bad[i], NULL};
        int rc = tc_run_vultus_fd(2, out, sizeof out, args);
        if (rc != 2 || !strstr(out, "--allowed-hosts") || !strstr(out, "not a host name"))
            fail_msg("serve --allowed-hosts '%s': exit %d, %.300s", bad[i], rc, out);
    }
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_match),   cmocka_unit_test(test_open_server),
        cmocka_unit_test(test_allowed_hosts),     cmocka_unit_test(test_keys_turn_the_check_off),
        cmocka_unit_test(test_bad_lists_refused),
    };
    return cmocka_run_group_tests_name("host check", tests, NULL, NULL);
}
