/*
 * What a platform team runs into when it operates vultus (deploy/README.md), checked against
 * the real binary:
 *
 *   - a listen address that cannot be opened stops `vultus serve` at once, exit 1, with one
 *     error line that names the real cause: the address in use, an address no interface of
 *     the host has, a privileged port for a non-root user (the container's user 10001 with
 *     VULTUS_LISTEN=:80). Every failure used to read "(address in use?)";
 *   - a PostgreSQL store that goes away under load (a database restart) is logged once, not
 *     once per refused request and once per second by the store check: the log stays readable
 *     and the cause is in it, while every refused request still has its own request line;
 *     /metrics says it meanwhile (vultus_store_up 0, vultus_store_errors_total) and keeps
 *     the last known vultus_gallery_* series rather than dropping them;
 *   - a VULTUS_* variable vultus does not read (a misspelt ConfigMap key) is named in a warning
 *     at start, instead of silently leaving its option at the default;
 *   - --workers 0 (the default) counts the CPUs the process may run on (its CPU set, lowered
 *     to what a cgroup CPU quota allows), not the machine's;
 *   - a models folder that does not exist is one error line that names it and says what to
 *     do, not three, and its "error" field is the reason (not found, not a directory,
 *     permission denied), not "input/output error";
 *   - Kubernetes' probes and Prometheus' scrapes (/healthz, /readyz, /metrics answered 2xx) are
 *     logged at debug, so that they do not bury the requests that matter; a /readyz 503 stays
 *     at info.
 *
 * The first test needs no model pack; the others skip without it (models/), the outage also
 * without PostgreSQL server binaries. About 10 s.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "client.h"
#include "http/http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>

/* Lines of `text` that contain `needle`. */
static int count_lines(const char *text, const char *needle)
{
    int n = 0;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *hit = strstr(line, needle);
        if (hit && hit < line + len) n++;
        line += len + (end != NULL);
    }
    return n;
}

/* `vultus serve --listen LISTEN` with a fresh data folder: its exit status, stderr in out. */
static int serve_on(const char *listen, char *out, size_t cap)
{
    char dir[256];
    assert_int_equal(tc_temp_dir(dir), 0);
    const char *args[] = {"serve", "--listen", listen, "--data", dir, "--models", "models", NULL};
    int rc = tc_run_vultus_fd(2, out, cap, args);
    tc_rm_rf(dir);
    return rc;
}

static void expect_listen_failure(const char *listen, const char *cause)
{
    static char log[16384];
    int rc = serve_on(listen, log, sizeof log);
    print_message("--listen %s: exit %d, %s", listen, rc, log);
    assert_int_equal(rc, 1);
    if (count_lines(log, "\"level\":\"error\"") != 1)
        fail_msg("--listen %s: expected one error line, got:\n%s", listen, log);
    char expected[128];
    snprintf(expected, sizeof expected, "cannot listen on %s: ", listen);
    if (!strstr(log, expected) || !strstr(log, cause))
        fail_msg("--listen %s: the error does not say '%s%s':\n%s", listen, expected, cause, log);
}

static void test_listen_failures_name_their_cause(void **state)
{
    (void)state;
    /* a port another process listens on */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    char busy[64];
    snprintf(busy, sizeof busy, "127.0.0.1:%d", ntohs(a.sin_port));
    expect_listen_failure(busy, "address in use");
    close(fd);

    /* an address of no interface here (TEST-NET-1, RFC 5737): it used to say "address in use?" */
    expect_listen_failure("192.0.2.1:8080", "Cannot assign requested address");

    /* a privileged port: only testable as a user without the privilege */
    if (geteuid() != 0)
        expect_listen_failure("127.0.0.1:80", "Permission denied");
    else
        print_message("running as root: the privileged-port case is not checked\n");
}

/*
 * `vultus serve --models MODELS`: exit 1 and its one error line (into text), whose "error"
 * field must read `reason`. Needs no model pack.
 */
static void expect_models_failure(const char *models, const char *reason, char *text, size_t cap)
{
    char dir[256];
    assert_int_equal(tc_temp_dir(dir), 0);
    static char log[16384];
    const char *args[] = {"serve", "--listen", "127.0.0.1:0", "--data", dir, "--models", models,
                          NULL};
    int rc = tc_run_vultus_fd(2, log, sizeof log, args);
    tc_rm_rf(dir);
    int errors = count_lines(log, "\"level\":\"error\"");
    print_message("--models %s: exit %d, %d error line(s):\n%s", models, rc, errors, log);
    assert_int_equal(rc, 1);
    if (errors != 1) fail_msg("%d error lines for one missing folder (expected 1)", errors);
    const char *line = strstr(log, "\"level\":\"error\"");
    while (line > log && line[-1] != '\n') /* from the line's start: a JSON object */
        line--;
    const char *end = strchr(line, '\n');
    snprintf(text, cap, "%.*s", end ? (int)(end - line) : (int)strlen(line), line);
    json_t *o = json_loads(text, 0, NULL);
    const char *error = json_string_value(json_object_get(o, "error"));
    if (!error || strcmp(error, reason) != 0)
        fail_msg("--models %s: \"error\" is '%s', not '%s': %s", models, error ? error : "(none)",
                 reason, text);
    json_decref(o);
}

/* A models folder that is not there (a pod without its model volume, a checkout before `make
 * models`): exit 1 with one error line naming the folder and what to do. It used to be three
 * lines of one cause (the face model loader's, the server's, serve's), none saying what to do;
 * then one whose "error" field read "input/output error" for each of these causes. Needs no
 * model pack. */
static void test_missing_models_one_line(void **state)
{
    (void)state;
    char text[2048];
    expect_models_failure("/nonexistent/vultus-models", "no such file or directory", text,
                          sizeof text);
    static const char *const says[] = {"/nonexistent/vultus-models", "No such file or directory",
                                       "make models", "tools/fetch-models", "--models"};
    for (size_t i = 0; i < sizeof says / sizeof *says; i++)
        if (!strstr(text, says[i])) fail_msg("the error line does not say '%s': %s", says[i], text);
    /* a file where the folder should be (a volume mounted as a file, a typo naming a model) */
    char dir[256], path[300];
    assert_int_equal(tc_temp_dir(dir), 0);
    snprintf(path, sizeof path, "%s/models.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    expect_models_failure(path, "not a directory", text, sizeof text);
    /* a folder this user may not read (a volume owned by another uid): root reads it anyway */
    snprintf(path, sizeof path, "%s/models", dir);
    assert_int_equal(mkdir(path, 0), 0);
    if (geteuid() != 0)
        expect_models_failure(path, "permission denied", text, sizeof text);
    else
        print_message("running as root: the unreadable-folder case is not checked\n");
    tc_rm_rf(dir);
}

/* The value of the unlabelled sample `name` in a /metrics body; -1 when absent. */
static long long sample(const char *body, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = body; (p = strstr(p, name)); p += n)
        if ((p == body || p[-1] == '\n') && p[n] == ' ') return atoll(p + n + 1);
    return -1;
}

/* POSTs collection `name`; its status, and the Retry-After header's presence into *retry. */
static int create_collection(int port, const char *name, int *retry)
{
    char body[96], h[32];
    snprintf(body, sizeof body, "{\"name\":\"%s\"}", name);
    tc_response r;
    assert_int_equal(tc_post_json(port, "/v1/collections", NULL, body, &r), 0);
    int status = r.status;
    *retry = tc_header(&r, "Retry-After", h, sizeof h) != NULL;
    if (status == 503) {
        char code[64];
        assert_string_equal(tc_error_code(&r, code, sizeof code), "store_unavailable");
    }
    tc_response_free(&r);
    return status;
}

#define REFUSED 12

static void test_database_outage_logged_once(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    char pg_dir[256], url[400];
    TC_NEED_POSTGRES(pg_dir, url);
    const char *args[] = {"--workers", "1", "--grace-ms", "0", "--store", url, NULL};
    char dir[256]; /* ours, so that the log outlives the server */
    assert_int_equal(tc_temp_dir(dir), 0);
    tc_server s;
    assert_int_equal(tc_server_start(&s, dir, args, 1), 0);
    int retry;
    assert_int_equal(create_collection(s.port, "before", &retry), 201);

    /* the database restarts: every write is refused, and the store check fails a few times */
    assert_int_equal(tc_pg_pause(pg_dir, 0), 0);
    for (int i = 0; i < REFUSED; i++) {
        char name[32];
        snprintf(name, sizeof name, "during%d", i);
        assert_int_equal(create_collection(s.port, name, &retry), 503);
        assert_true(retry);
        tc_sleep_ms(250); /* 3 s in all: three store checks */
    }
    /* what Prometheus sees meanwhile: the store down, the refusals counted (the store check
     * has run at least twice during the 3 s) */
    tc_response r;
    assert_int_equal(tc_get(s.port, "/metrics", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(sample(r.body, "vultus_store_up"), 0);
    assert_int_equal(sample(r.body, "vultus_store_errors_total"), REFUSED);
    assert_int_equal(sample(r.body, "vultus_ready"), 0);
    tc_response_free(&r);
    assert_int_equal(tc_pg_resume(pg_dir), 0);
    int ready = 0;
    for (double end = tc_now_ms() + 30000; !ready && tc_now_ms() < end; tc_sleep_ms(100)) {
        assert_int_equal(tc_get(s.port, "/readyz", NULL, &r), 0);
        ready = r.status == 200;
        tc_response_free(&r);
    }
    assert_true(ready);
    /* /readyz needs the API keys' and the gallery's reads to answer; the writer connection is
     * the gallery's own and may still be the dead one and fail once more (503 + Retry-After: 1):
     * a client retries */
    int late = 0, status;
    while ((status = create_collection(s.port, "after", &retry)) == 503 && late < 5) {
        assert_true(retry);
        late++;
        tc_sleep_ms(1000);
    }
    assert_int_equal(status, 201);
    printf("after /readyz said 200 again, a write got 201 after %d more 503s\n", late);
    /* the end of the outage is logged by the store check, once a second: wait for its line */
    char *log = NULL;
    size_t len;
    for (double end = tc_now_ms() + 10000; tc_now_ms() < end; tc_sleep_ms(100)) {
        assert_int_equal(tc_read_file(s.log, &log, &len), 0);
        if (strstr(log, "\"msg\":\"store reachable again\"")) break;
        free(log);
        log = NULL;
    }
    assert_int_equal(tc_get(s.port, "/metrics", NULL, &r), 0);
    assert_int_equal(sample(r.body, "vultus_store_up"), 1);
    assert_int_equal(sample(r.body, "vultus_store_errors_total"), REFUSED + late);
    tc_response_free(&r);
    assert_int_equal(tc_server_stop(&s), 0);
    free(log);
    assert_int_equal(tc_read_file(s.log, &log, &len), 0);
    int refused_lines = count_lines(log, "\"error\":\"store_unavailable\"");
    int error_lines = count_lines(log, "\"msg\":\"store unavailable\"");
    int keys_lines = count_lines(log, "\"msg\":\"api keys: ");
    int refresh_lines = count_lines(log, "\"msg\":\"gallery refresh: ");
    int back_lines = count_lines(log, "\"msg\":\"store reachable again\"");
    print_message("a 3 s outage, %d writes refused (%d more once ready again): %d request "
                  "lines store_unavailable, %d 'store unavailable' lines, %d 'api keys' and %d "
                  "'gallery refresh' warnings, %d 'store reachable again'\n",
                  REFUSED, late, refused_lines, error_lines, keys_lines, refresh_lines, back_lines);
    /* each refusal keeps its request line; the cause is logged, once (a late refusal after
     * the end was logged may open a new outage's line) */
    assert_int_equal(refused_lines, REFUSED + late);
    if (error_lines < 1 || error_lines > 1 + late)
        fail_msg("%d 'store unavailable' lines for one outage (expected 1)", error_lines);
    if (keys_lines > 1 || refresh_lines > 1)
        fail_msg("the store check logged its failure %d and %d times in one outage (expected "
                 "once each)",
                 keys_lines, refresh_lines);
    assert_true(keys_lines + refresh_lines >= 1);
    assert_int_equal(back_lines, 1);
    /* the refusals not logged one by one are counted where the outage ends */
    const char *back = strstr(log, "\"msg\":\"store reachable again\"");
    const char *count = strstr(back, "\"store_errors_not_logged\":");
    assert_non_null(count);
    assert_true(atoi(count + strlen("\"store_errors_not_logged\":")) >= REFUSED - 1);
    free(log);
    tc_rm_rf(dir);
    tc_pg_stop(pg_dir);
}

/* Whether `promtool check metrics` accepts body; skipped (1) without promtool. */
static int promtool_accepts(const char *dir, const tc_response *r)
{
    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        print_message("promtool is not installed: the format check is skipped\n");
        return 1;
    }
    char path[300], cmd[400];
    snprintf(path, sizeof path, "%s/metrics.txt", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fwrite(r->body, 1, r->body_len, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s", path);
    return system(cmd) == 0;
}

/* While the database is down the collections cannot be listed: /metrics used to drop every
 * vultus_gallery_* series, a gap in every dashboard. It keeps the last ones read. */
static void test_gallery_metrics_kept_in_outage(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    char pg_dir[256], url[400];
    TC_NEED_POSTGRES(pg_dir, url);
    const char *args[] = {"--workers", "1", "--grace-ms", "0", "--store", url, NULL};
    tc_server s;
    assert_int_equal(tc_server_start(&s, NULL, args, 1), 0);
    int retry;
    assert_int_equal(create_collection(s.port, "kept", &retry), 201);
    static const char *const series[] = {"vultus_gallery_collections ",
                                         "vultus_gallery_subjects{collection=\"kept\"} ",
                                         "vultus_gallery_faces{collection=\"kept\"} ",
                                         "vultus_gallery_hnsw_faces{collection=\"kept\"} "};
    tc_response r;
    assert_int_equal(tc_get(s.port, "/metrics", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    for (size_t i = 0; i < sizeof series / sizeof *series; i++)
        if (!strstr(r.body, series[i])) fail_msg("no %s before the outage", series[i]);
    long long collections = sample(r.body, "vultus_gallery_collections");
    tc_response_free(&r);

    assert_int_equal(tc_pg_pause(pg_dir, 0), 0);
    /* the store check notices within about a second: scrape once it has */
    int down = 0;
    for (double end = tc_now_ms() + 10000; !down && tc_now_ms() < end; tc_sleep_ms(100)) {
        assert_int_equal(tc_get(s.port, "/metrics", NULL, &r), 0);
        down = r.status == 200 && sample(r.body, "vultus_store_up") == 0;
        if (!down) tc_response_free(&r);
    }
    assert_true(down);
    int missing = 0;
    for (size_t i = 0; i < sizeof series / sizeof *series; i++)
        missing += strstr(r.body, series[i]) == NULL;
    print_message("store down (vultus_store_up 0): %d of %zu gallery series missing, "
                  "vultus_gallery_collections %lld (before: %lld)\n",
                  missing, sizeof series / sizeof *series,
                  sample(r.body, "vultus_gallery_collections"), collections);
    if (missing) fail_msg("%d gallery series dropped while the store is down", missing);
    assert_int_equal(sample(r.body, "vultus_gallery_collections"), collections);
    assert_true(promtool_accepts(s.dir, &r));
    tc_response_free(&r);
    assert_int_equal(tc_pg_resume(pg_dir), 0);
    assert_int_equal(tc_server_stop(&s), 0);
    tc_pg_stop(pg_dir);
}

/* A misspelt variable in a ConfigMap (VULTUS_WORKER for VULTUS_WORKERS) used to be silently a
 * default: one warning at start names it; variables vultus reads are not named. */
static void test_unknown_variable_warned(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    setenv("VULTUS_WORKER", "2", 1);
    setenv("VULTUS_STORE_TIMEOUT_MS", "5000", 1); /* read by the PostgreSQL store */
    setenv("VULTUS_LOG_LEVEL", "info", 1);        /* read by main */
    char dir[256];
    assert_int_equal(tc_temp_dir(dir), 0);
    tc_server s;
    int rc = tc_server_start(&s, dir, NULL, 0);
    unsetenv("VULTUS_WORKER");
    unsetenv("VULTUS_STORE_TIMEOUT_MS");
    unsetenv("VULTUS_LOG_LEVEL");
    assert_int_equal(rc, 0);
    assert_int_equal(tc_server_stop(&s), 0);
    char *log;
    size_t len;
    assert_int_equal(tc_read_file(s.log, &log, &len), 0);
    const char *line = strstr(log, "\"msg\":\"VULTUS_* variables that vultus does not read");
    if (!line) fail_msg("no warning about VULTUS_WORKER in the log:\n%s", log);
    const char *end = strchr(line, '\n');
    assert_non_null(end);
    char text[1024];
    snprintf(text, sizeof text, "%.*s", (int)(end - line), line);
    print_message("%s\n", text);
    assert_non_null(strstr(text, "VULTUS_WORKER"));
    assert_null(strstr(text, "VULTUS_STORE_TIMEOUT_MS"));
    assert_null(strstr(text, "VULTUS_LOG_LEVEL"));
    assert_int_equal(count_lines(log, "\"level\":\"warn\",\"msg\":\"VULTUS_*"), 1);
    free(log);
    tc_rm_rf(dir);
}

/* --workers 0 (the default): one worker per CPU the process may run on, not per CPU of the
 * machine. The test pins itself to one CPU before starting the server (which inherits it), as
 * `taskset -c 0` or a container's CPU set would; it used to start a worker per online CPU. */
static void test_default_workers_follow_cpu_set(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t mine, one;
    assert_int_equal(sched_getaffinity(0, sizeof mine, &mine), 0);
    if (online < 2 || CPU_COUNT(&mine) < 2) {
        print_message("fewer than 2 CPUs: skipped\n");
        skip();
    }
    CPU_ZERO(&one);
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &mine)) {
            CPU_SET(c, &one);
            break;
        }
    assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
    char dir[256];
    assert_int_equal(tc_temp_dir(dir), 0);
    tc_server s;
    int rc = tc_server_start(&s, dir, NULL, 0);
    assert_int_equal(sched_setaffinity(0, sizeof mine, &mine), 0);
    assert_int_equal(rc, 0);
    assert_int_equal(tc_server_stop(&s), 0);
    char *log;
    size_t len;
    assert_int_equal(tc_read_file(s.log, &log, &len), 0);
    const char *listening = strstr(log, "\"msg\":\"listening\"");
    assert_non_null(listening);
    const char *workers = strstr(listening, "\"workers\":");
    assert_non_null(workers);
    int n = atoi(workers + strlen("\"workers\":"));
    print_message("pinned to 1 of %ld online CPUs: %d worker(s)\n", online, n);
    if (n != 1) fail_msg("%d workers on a CPU set of one CPU (expected 1)", n);
    free(log);
    tc_rm_rf(dir);
}

/* Lines of the log with "msg":"request" for `route` at `level`. */
static int request_lines(const char *log, const char *level, const char *route)
{
    int n = 0;
    for (const char *line = log; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char text[2048], lv[32], rt[96];
        snprintf(text, sizeof text, "%.*s", (int)(len < sizeof text ? len : sizeof text - 1), line);
        snprintf(lv, sizeof lv, "\"level\":\"%s\"", level);
        snprintf(rt, sizeof rt, "\"route\":\"%s\"", route);
        if (strstr(text, lv) && strstr(text, "\"msg\":\"request\"") && strstr(text, rt)) n++;
        line += len + (end != NULL);
    }
    return n;
}

static int get_status(int port, const char *path)
{
    tc_response r;
    assert_int_equal(tc_get(port, path, NULL, &r), 0);
    int status = r.status;
    tc_response_free(&r);
    return status;
}

/* Probes and scrapes at the default level (info) write no request line; other routes do, and
 * so does a /readyz that says 503 (here: draining after SIGTERM, within --grace-ms). With
 * VULTUS_LOG_LEVEL=debug the probes' lines are there, at debug. */
static void test_probe_lines_at_debug(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    for (int debug = 0; debug <= 1; debug++) {
        if (debug) setenv("VULTUS_LOG_LEVEL", "debug", 1);
        const char *args[] = {"--grace-ms", "20000", NULL};
        tc_server s;
        int rc = tc_server_start(&s, NULL, args, 1);
        unsetenv("VULTUS_LOG_LEVEL");
        assert_int_equal(rc, 0);
        for (int i = 0; i < 3; i++) {
            assert_int_equal(get_status(s.port, "/healthz"), 200);
            assert_int_equal(get_status(s.port, "/readyz"), 200);
            assert_int_equal(get_status(s.port, "/metrics"), 200);
        }
        assert_int_equal(get_status(s.port, "/openapi.json"), 200);
        /* draining: /readyz 503 until --grace-ms ends (20 s; the test needs milliseconds) */
        kill(s.pid, SIGTERM);
        /* a poll before the signal is handled still gets 200, a probe line like the others */
        int status = 0, ready_before_drain = 0;
        for (double end = tc_now_ms() + 10000; tc_now_ms() < end; tc_sleep_ms(20)) {
            if ((status = get_status(s.port, "/readyz")) == 503) break;
            if (status == 200) ready_before_drain++;
        }
        assert_int_equal(status, 503);
        char *log;
        size_t len;
        assert_int_equal(tc_read_file(s.log, &log, &len), 0);
        /* the request line is written when the request completes: wait for the 503's */
        for (double end = tc_now_ms() + 10000;
             request_lines(log, "info", "/readyz") < 1 && tc_now_ms() < end; tc_sleep_ms(20)) {
            free(log);
            assert_int_equal(tc_read_file(s.log, &log, &len), 0);
        }
        int healthz = request_lines(log, "info", "/healthz"),
            readyz = request_lines(log, "info", "/readyz"),
            metrics = request_lines(log, "info", "/metrics"),
            openapi = request_lines(log, "info", "/openapi.json"),
            debug_lines = request_lines(log, "debug", "/healthz") +
                          request_lines(log, "debug", "/readyz") +
                          request_lines(log, "debug", "/metrics");
        print_message("VULTUS_LOG_LEVEL=%s, 3 x /healthz /readyz /metrics 200, 1 /openapi.json, "
                      "1 /readyz 503: request lines at info: /healthz %d, /readyz %d, /metrics "
                      "%d, /openapi.json %d; at debug: %d probes\n",
                      debug ? "debug" : "(info)", healthz, readyz, metrics, openapi, debug_lines);
        if (healthz || metrics || readyz != 1)
            fail_msg("probes that answered 200 were logged at info:\n%s", log);
        assert_int_equal(openapi, 1);
        assert_int_equal(debug_lines, debug ? 9 + ready_before_drain : 0);
        free(log);
        kill(s.pid, SIGINT); /* a second signal: exit now, not after the grace */
        assert_int_equal(tc_server_wait(&s, 60000), 0);
        tc_rm_rf(s.dir);
    }
}

/* Writes `text` to ROOT/REL, creating the folders on the way. */
static void put_file(const char *root, const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        mkdir(path, 0755);
        *p = '/';
    }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* http_available_cpus(ROOT) on a fake /proc/self/cgroup and /sys/fs/cgroup under a fresh ROOT. */
static int cpus_with(const char *self_cgroup, const char *const *files)
{
    char root[256];
    assert_int_equal(tc_temp_dir(root), 0);
    if (self_cgroup) put_file(root, "proc/self/cgroup", self_cgroup);
    for (int i = 0; files && files[i]; i += 2)
        put_file(root, files[i], files[i + 1]);
    int n = http_available_cpus(root);
    tc_rm_rf(root);
    return n;
}

/* --workers 0 under a CPU limit: a pod limited to 1.5 CPUs on a 64-core node got 64 workers
 * (its CPU set is the node's), now ceil(1.5) = 2. cgroup v2's cpu.max ("max 100000": no limit)
 * and v1's cpu.cfs_quota_us (-1: none), on the process's cgroup or an ancestor. */
static void test_default_workers_follow_cpu_quota(void **state)
{
    (void)state;
    cpu_set_t mine;
    assert_int_equal(sched_getaffinity(0, sizeof mine, &mine), 0);
    int set = CPU_COUNT(&mine), expect_15 = set < 2 ? set : 2;
    struct {
        const char *what, *self, *files[7];
        int expected;
    } cases[] = {
        {"no cgroup files", NULL, {NULL}, set},
        {"v2, cpu.max max 100000", "0::/\n", {"sys/fs/cgroup/cpu.max", "max 100000\n", NULL}, set},
        {"v2, cpu.max 150000 100000 (1.5 CPUs)",
         "0::/\n",
         {"sys/fs/cgroup/cpu.max", "150000 100000\n", NULL},
         expect_15},
        {"v2, cpu.max 50000 100000",
         "0::/\n",
         {"sys/fs/cgroup/cpu.max", "50000 100000\n", NULL},
         1},
        {"v2, a pod's limit above its container's cgroup",
         "0::/kubepods/pod1/c1\n",
         {"sys/fs/cgroup/kubepods/pod1/c1/cpu.max", "max 100000\n",
          "sys/fs/cgroup/kubepods/pod1/cpu.max", "50000 100000\n", NULL},
         1},
        {"v1, cpu,cpuacct cfs_quota_us 50000 / 100000",
         "3:memory:/docker/x\n4:cpu,cpuacct:/docker/x\n0::/\n",
         {"sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_quota_us", "50000\n",
          "sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_period_us", "100000\n", NULL},
         1},
        {"v1, cfs_quota_us -1",
         "4:cpu,cpuacct:/\n",
         {"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n",
          "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n", NULL},
         set},
    };
    int failed = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int n = cpus_with(cases[i].self, cases[i].files);
        print_message("CPU set of %d, %s: %d CPU(s) (expected %d)\n", set, cases[i].what, n,
                      cases[i].expected);
        failed += n != cases[i].expected;
    }
    if (failed) fail_msg("%d case(s) counted the wrong CPUs", failed);
    /* this machine's own: never above the CPU set, at least 1 */
    int here = http_available_cpus("");
    assert_true(here >= 1 && here <= set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listen_failures_name_their_cause),
        cmocka_unit_test(test_missing_models_one_line),
        cmocka_unit_test(test_database_outage_logged_once),
        cmocka_unit_test(test_gallery_metrics_kept_in_outage),
        cmocka_unit_test(test_unknown_variable_warned),
        cmocka_unit_test(test_default_workers_follow_cpu_set),
        cmocka_unit_test(test_probe_lines_at_debug),
        cmocka_unit_test(test_default_workers_follow_cpu_quota),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
