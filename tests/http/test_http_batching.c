/*
 * Cross-request batching in the server, in this process so ThreadSanitizer sees every thread
 * (`make tsan`): concurrent /v1/embed and /v1/analyze requests on the model pack's group
 * photos give the same faces and embeddings as the same requests sent one at a time; the
 * batch histogram shows batches holding more faces than any one photo has (faces of several
 * requests in one engine run); SIGTERM while requests are parked in the batch pool completes
 * every one of them with 200 and the server exits 0. Skips when models/ is absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "client.h"
#include "http/http.h"

#include <math.h>
#include <pthread.h>

#define N_PHOTOS 6

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

static char *photo[N_PHOTOS];
static size_t photo_len[N_PHOTOS];

/* The faces of a response: [n][dim] embeddings (or ages for analyze) and boxes. */
typedef struct faces {
    int n;
    float box[16][4];
    float value[16][128]; /* embedding, or age + gender confidence + liveness score */
    int dim;
} faces;

static int parse_faces(const tc_response *r, faces *out)
{
    memset(out, 0, sizeof *out);
    json_t *j = tc_json(r);
    if (!j) return -1;
    json_t *list = json_object_get(j, "faces");
    out->n = (int)json_array_size(list);
    if (out->n > 16) out->n = 16;
    for (int i = 0; i < out->n; i++) {
        json_t *f = json_array_get(list, (size_t)i), *b = json_object_get(f, "box");
        out->box[i][0] = (float)json_number_value(json_object_get(b, "x"));
        out->box[i][1] = (float)json_number_value(json_object_get(b, "y"));
        out->box[i][2] = (float)json_number_value(json_object_get(b, "width"));
        out->box[i][3] = (float)json_number_value(json_object_get(b, "height"));
        json_t *e = json_object_get(f, "embedding");
        if (e) {
            out->dim = (int)json_array_size(e);
            for (int k = 0; k < out->dim && k < 128; k++)
                out->value[i][k] = (float)json_number_value(json_array_get(e, (size_t)k));
        } else {
            json_t *a = json_object_get(f, "attributes"), *l = json_object_get(f, "liveness");
            out->dim = 3;
            out->value[i][0] = (float)json_number_value(json_object_get(a, "age"));
            out->value[i][1] = (float)json_number_value(json_object_get(a, "gender_confidence"));
            out->value[i][2] = (float)json_number_value(json_object_get(l, "score"));
        }
    }
    json_decref(j);
    return 0;
}

static const char *route_of(int k)
{
    return k % 2 ? "/v1/analyze" : "/v1/embed";
}

static int post_photo(int port, int k, tc_response *r)
{
    return tc_request(port, "POST", route_of(k), "Content-Type: image/jpeg\r\n",
                      photo[k % N_PHOTOS], photo_len[k % N_PHOTOS], r);
}

typedef struct client {
    int port, first, count;
    int status[16];
    faces got[16];
} client;

static void *client_main(void *arg)
{
    client *c = arg;
    for (int i = 0; i < c->count; i++) {
        tc_response r;
        int k = c->first + i;
        c->status[i] = post_photo(c->port, k, &r) == 0 ? r.status : 0;
        if (c->status[i] == 200 && parse_faces(&r, &c->got[i]) != 0) c->status[i] = -1;
        tc_response_free(&r);
    }
    return NULL;
}

static void expect_same(const faces *a, const faces *b, int k)
{
    if (a->n != b->n) fail_msg("request %d: %d faces alone, %d batched", k, a->n, b->n);
    assert_int_equal(a->dim, b->dim);
    for (int i = 0; i < a->n; i++) {
        for (int c = 0; c < 4; c++)
            assert_float_equal(a->box[i][c], b->box[i][c], 1e-4);
        for (int d = 0; d < a->dim; d++)
            if (fabsf(a->value[i][d] - b->value[i][d]) > 1e-5f)
                fail_msg("request %d (%s) face %d value %d: %.7f alone, %.7f batched", k,
                         route_of(k), i, d, a->value[i][d], b->value[i][d]);
    }
}

/* Sends request k on a new connection without reading the response; returns the socket. */
static int send_photo(int port, int k)
{
    int fd = tc_connect(port);
    if (fd < 0) return -1;
    char head[512];
    int n = snprintf(head, sizeof head,
                     "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "Content-Type: image/jpeg\r\nContent-Length: %zu\r\n\r\n",
                     route_of(k), photo_len[k % N_PHOTOS]);
    if (tc_send_all(fd, head, (size_t)n) != 0 ||
        tc_send_all(fd, photo[k % N_PHOTOS], photo_len[k % N_PHOTOS]) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void test_batching(void **state)
{
    (void)state;
    if (!tc_exists("models/human/blazeface-back.json") || !tc_exists("models/samples/sample6.jpg"))
        skip();
    int max_faces = 0;
    for (int i = 0; i < N_PHOTOS; i++) {
        char path[64];
        snprintf(path, sizeof path, "models/samples/sample%d.jpg", i + 1);
        assert_int_equal(tc_read_file(path, &photo[i], &photo_len[i]), 0);
    }
    char dir[256];
    assert_int_equal(tc_temp_dir(dir), 0);
    http_config cfg;
    http_config_defaults(&cfg);
    assert_int_equal(http_config_set(&cfg, "listen", "127.0.0.1:0"), 0);
    assert_int_equal(http_config_set(&cfg, "data", dir), 0);
    assert_int_equal(http_config_set(&cfg, "workers", "2"), 0);
    assert_int_equal(http_config_set(&cfg, "queue", "64"), 0);
    assert_int_equal(http_config_set(&cfg, "batch-max", "8"), 0);
    /* A wait far longer than any prepare (a sample photo takes over a second in sanitizer
     * builds): the pool fills to 8 faces before a batch runs, whatever the machine's speed.
     * Nothing stalls: a batch also runs whenever no request is queued. */
    assert_int_equal(http_config_set(&cfg, "batch-wait-ms", "60000"), 0);
    assert_int_equal(http_config_set(&cfg, "deadline-ms", "600000"), 0);
    assert_int_equal(http_config_set(&cfg, "max-deadline-ms", "600000"), 0);
    assert_int_equal(http_config_set(&cfg, "grace-ms", "50"), 0);
    http_server *s = NULL;
    assert_int_equal(http_server_create(&cfg, &s), 0);
    runner run = {.server = s};
    pthread_t rt;
    pthread_create(&rt, NULL, run_main, &run);
    int port = http_server_port(s);
    double deadline = tc_now_ms() + 120000;
    int status = 0;
    while (tc_now_ms() < deadline && status != 200) {
        tc_response r;
        if (tc_get(port, "/readyz", NULL, &r) == 0) status = r.status;
        tc_response_free(&r);
        if (status != 200) tc_sleep_ms(50);
    }
    assert_int_equal(status, 200);

    /* One at a time: each request's faces are a batch of their own. */
    enum { N = 2 * N_PHOTOS };
    faces alone[N];
    for (int k = 0; k < N; k++) {
        tc_response r;
        assert_int_equal(post_photo(port, k, &r), 0);
        assert_int_equal(r.status, 200);
        assert_int_equal(parse_faces(&r, &alone[k]), 0);
        tc_response_free(&r);
        assert_true(alone[k].n >= 1);
        if (alone[k].n > max_faces) max_faces = alone[k].n;
    }
    assert_true(max_faces <= 6);
    double batches_before = tc_metric(port, "vultus_batch_faces_count", -1);
    double small_before = tc_metric(port, "vultus_batch_faces_bucket{le=\"6\"}", -1);
    assert_true(batches_before >= N);

    /* All at once, twice over, from 6 clients: the same numbers. */
    enum { CLIENTS = 6 };
    client c[CLIENTS];
    pthread_t t[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        c[i] = (client){.port = port, .first = i, .count = 2};
        pthread_create(&t[i], NULL, client_main, &c[i]);
    }
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(t[i], NULL);
        for (int k = 0; k < c[i].count; k++) {
            assert_int_equal(c[i].status[k], 200);
            expect_same(&alone[(c[i].first + k) % N], &c[i].got[k], c[i].first + k);
        }
    }
    /* Batches of 7 or 8 faces hold faces of more than one request (no photo has over 6). */
    double batches = tc_metric(port, "vultus_batch_faces_count", -1) - batches_before;
    double big =
        batches - (tc_metric(port, "vultus_batch_faces_bucket{le=\"6\"}", -1) - small_before);
    print_message("batching: %.0f batches for %d concurrent requests, %.0f of 7-8 faces\n", batches,
                  CLIENTS * 2, big);
    assert_true(big >= 1);
    assert_true(batches < CLIENTS * 2 * max_faces);
    assert_true(
        tc_metric(port, "vultus_stage_duration_seconds_count{stage=\"batch_wait\"}", -1) > 0);
    assert_true(tc_metric(port, "vultus_stage_duration_seconds_count{stage=\"align\"}", -1) > 0);

    /* SIGTERM while faces wait in the pool: every request completes with 200. All requests
     * are received (in flight) and some are parked when the signal comes. */
    int fds[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        fds[i] = send_photo(port, i);
        assert_true(fds[i] >= 0);
    }
    int parked = 0;
    deadline = tc_now_ms() + 60000;
    while (!parked && tc_now_ms() < deadline) {
        tc_response r;
        if (tc_get(port, "/metrics", NULL, &r) == 0 && r.body)
            parked = tc_metric_in(r.body, "vultus_http_in_flight_requests", -1) >= CLIENTS + 1 &&
                     tc_metric_in(r.body, "vultus_batch_pending_requests", -1) > 0;
        tc_response_free(&r);
        if (!parked) tc_sleep_ms(1);
    }
    assert_true(parked);
    kill(getpid(), SIGTERM);
    for (int i = 0; i < CLIENTS; i++) {
        tc_response r;
        assert_int_equal(tc_read_response(fds[i], &r, 120000), 0);
        close(fds[i]);
        assert_int_equal(r.status, 200);
        faces got;
        assert_int_equal(parse_faces(&r, &got), 0);
        tc_response_free(&r);
        expect_same(&alone[i], &got, i);
    }
    pthread_join(rt, NULL);
    assert_int_equal(run.rc, 0);
    http_server_destroy(s);
    tc_rm_rf(dir);
    for (int i = 0; i < N_PHOTOS; i++)
        free(photo[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batching),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
