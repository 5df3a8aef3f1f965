/*
 * The server in this process, for ThreadSanitizer (`make tsan`): concurrent clients on
 * loopback through the event loop, the queue, the workers (suspend/resume hand-offs), the
 * gallery, the key reload, /metrics and the lingering close, then SIGTERM and a drain, all in
 * one process so TSan sees every thread. Skips when models/ is absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "client.h"
#include "http/http.h"

#include <pthread.h>

typedef struct runner {
    http_server *server;
    int rc;
} runner;

static void *run_main(void *arg)
{
    runner *r = arg;
    r->rc = http_server_run(r->server);
    return NULL;
}

typedef struct client {
    int port, index;
    const char *jpeg;
    size_t len;
    int bad; /* responses with an unexpected status */
} client;

static void *client_main(void *arg)
{
    client *c = arg;
    for (int i = 0; i < 5; i++) {
        tc_response r;
        int ok;
        switch ((c->index + i) % 5) {
        case 0:
            ok = tc_request(c->port, "POST", "/v1/detect", "Content-Type: image/jpeg\r\n", c->jpeg,
                            c->len, &r) == 0 &&
                 (r.status == 200 || r.status == 503);
            break;
        case 1: {
            char body[64];
            snprintf(body, sizeof body, "{\"name\":\"c%d_%d\"}", c->index, i);
            ok = tc_post_json(c->port, "/v1/collections", NULL, body, &r) == 0 &&
                 (r.status == 201 || r.status == 503);
            break;
        }
        case 2:
            ok = tc_get(c->port, "/v1/collections", NULL, &r) == 0 &&
                 (r.status == 200 || r.status == 503);
            break;
        case 3:
            /* Answered from its head, body unread: closed lingering (linger.c's thread). */
            ok = tc_request(c->port, "POST", "/v1/no-such-route", "Content-Type: image/jpeg\r\n",
                            c->jpeg, c->len, &r) == 0 &&
                 r.status == 404;
            break;
        default: ok = tc_get(c->port, "/metrics", NULL, &r) == 0 && r.status == 200; break;
        }
        if (!ok) {
            fprintf(stderr, "client %d request %d: status %d\n", c->index, i, r.status);
            c->bad++;
        }
        tc_response_free(&r);
    }
    return NULL;
}

static void test_inproc_concurrency(void **state)
{
    (void)state;
    if (!tc_exists("models/human/blazeface-back.json") || !tc_exists("models/samples/sample1.jpg"))
        skip();
    char dir[256];
    assert_int_equal(tc_temp_dir(dir), 0);
    http_config cfg;
    http_config_defaults(&cfg);
    assert_int_equal(http_config_set(&cfg, "listen", "127.0.0.1:0"), 0);
    assert_int_equal(http_config_set(&cfg, "data", dir), 0);
    assert_int_equal(http_config_set(&cfg, "workers", "2"), 0);
    assert_int_equal(http_config_set(&cfg, "queue", "4"), 0);
    assert_int_equal(http_config_set(&cfg, "grace-ms", "50"), 0);
    http_server *s = NULL;
    assert_int_equal(http_server_create(&cfg, &s), 0);
    runner run = {.server = s};
    pthread_t rt;
    pthread_create(&rt, NULL, run_main, &run);
    int port = http_server_port(s);

    /* Ready: models loaded (slow under sanitizers). */
    double deadline = tc_now_ms() + 120000;
    int status = 0;
    while (tc_now_ms() < deadline) {
        tc_response r;
        if (tc_get(port, "/readyz", NULL, &r) == 0) status = r.status;
        tc_response_free(&r);
        if (status == 200) break;
        tc_sleep_ms(50);
    }
    assert_int_equal(status, 200);

    size_t len;
    char *jpeg;
    assert_int_equal(tc_read_file("models/samples/sample1.jpg", &jpeg, &len), 0);
    enum { N = 6 };
    client c[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        c[i] = (client){.port = port, .index = i, .jpeg = jpeg, .len = len};
        pthread_create(&t[i], NULL, client_main, &c[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(c[i].bad, 0);
    }
    free(jpeg);

    kill(getpid(), SIGTERM);
    pthread_join(rt, NULL);
    assert_int_equal(run.rc, 0);
    http_server_destroy(s);
    tc_rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inproc_concurrency),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
