/*
 * The service's tables, without a server: the route table (every route matches its own
 * pattern; 404, 405 and 400 otherwise), the embedded OpenAPI document (it documents exactly
 * the route table, both ways) and the format of the metrics page.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "http/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- routes ----------------------------------------------------------------------------- */

static void test_routes(void **state)
{
    (void)state;
    char caps[HTTP_CAPTURES][HTTP_CAPTURE_MAX];
    int n = 0;
    for (int i = 0; i < http_route_count; i++) {
        /* The pattern with its captures filled in must match this route (or, for a method
         * shared by two routes, one with the same pattern). */
        char path[512];
        size_t len = 0;
        for (const char *p = http_routes[i].pattern; *p;) {
            if (*p == '{') {
                len += (size_t)sprintf(path + len, "x%%2Fy");
                p = strchr(p, '}') + 1;
            } else {
                path[len++] = *p++;
            }
        }
        path[len] = '\0';
        int m = http_route_match(http_routes[i].method, path, len, caps, &n);
        assert_int_equal(m, i);
        for (int c = 0; c < n; c++)
            assert_string_equal(caps[c], "x/y");
    }
    const char *p = "/v1/collections/people/subjects/a%20b";
    int m = http_route_match("GET", p, strlen(p), caps, &n);
    assert_true(m >= 0);
    assert_string_equal(http_routes[m].pattern, "/v1/collections/{collection}/subjects/{subject}");
    assert_int_equal(n, 2);
    assert_string_equal(caps[0], "people");
    assert_string_equal(caps[1], "a b");
    p = "/v1/nothing";
    assert_int_equal(http_route_match("GET", p, strlen(p), caps, &n), -1);
    p = "/v1/collections/people/subjects/";
    assert_int_equal(http_route_match("GET", p, strlen(p), caps, &n), -1);
    p = "/v1/collections//subjects";
    assert_int_equal(http_route_match("GET", p, strlen(p), caps, &n), -1);
    p = "/healthz/";
    assert_int_equal(http_route_match("GET", p, strlen(p), caps, &n), -1);
    p = "/v1/detect";
    assert_int_equal(http_route_match("GET", p, strlen(p), caps, &n), -2);
    p = "/v1/collections/people";
    assert_int_equal(http_route_match("PUT", p, strlen(p), caps, &n), -2);
    p = "/v1/collections/%zz";
    assert_int_equal(http_route_match("GET", p, strlen(p), caps, &n), -3);
}

/* ---- the OpenAPI document documents exactly the route table ---------------------------- */

static void test_openapi_matches_routes(void **state)
{
    (void)state;
    size_t len = 0;
    const char *doc = http_openapi_json(&len);
    assert_true(len > 100);
    assert_int_equal(strlen(doc), len);
    json_error_t err;
    json_t *j = json_loadb(doc, len, 0, &err);
    if (!j) fail_msg("openapi.json does not parse: %s (line %d)", err.text, err.line);
    assert_string_equal(json_string_value(json_object_get(j, "openapi")), "3.0.3");
    json_t *paths = json_object_get(j, "paths");
    assert_non_null(paths);
    int documented = 0;
    const char *path;
    json_t *item;
    json_object_foreach(paths, path, item)
    {
        const char *method;
        json_t *op;
        json_object_foreach(item, method, op)
        {
            if (strcmp(method, "parameters") == 0) continue;
            char upper[16];
            size_t k = 0;
            for (; method[k] && k < 15; k++)
                upper[k] = (char)(method[k] - 32);
            upper[k] = '\0';
            int found = 0;
            for (int i = 0; i < http_route_count; i++)
                if (strcmp(http_routes[i].pattern, path) == 0 &&
                    strcmp(http_routes[i].method, upper) == 0)
                    found = 1;
            if (!found) fail_msg("documented but not served: %s %s", upper, path);
            /* Every operation documents its responses, and /v1 ones the error shape. */
            json_t *responses = json_object_get(op, "responses");
            if (!json_is_object(responses) || json_object_size(responses) == 0)
                fail_msg("%s %s: no responses", upper, path);
            documented++;
        }
    }
    for (int i = 0; i < http_route_count; i++) {
        char lower[16];
        size_t k = 0;
        for (; http_routes[i].method[k] && k < 15; k++)
            lower[k] = (char)(http_routes[i].method[k] + 32);
        lower[k] = '\0';
        if (!json_object_get(json_object_get(paths, http_routes[i].pattern), lower))
            fail_msg("served but not documented: %s %s", http_routes[i].method,
                     http_routes[i].pattern);
    }
    assert_int_equal(documented, http_route_count);
    json_decref(j);
}

/* ---- metrics page ----------------------------------------------------------------------- */

static void test_metrics_format(void **state)
{
    (void)state;
    http_server *s = calloc(1, sizeof *s);
    pthread_mutex_init(&s->qlock, NULL);
    s->n_workers = 2;
    s->cfg.queue = 8;
    http_histogram_observe_seconds(&s->metrics.latency[0], 0.003);
    http_histogram_observe_seconds(&s->metrics.latency[0], 0.2);
    http_histogram_observe_seconds(&s->metrics.latency[0], 100);
    atomic_fetch_add(&s->metrics.requests[0][200 - HTTP_STATUS_MIN], 3);
    http_histogram_observe_count(&s->metrics.batch, 3);
    http_text t = {0};
    http_metrics_render(s, &t);
    assert_false(t.failed);
    assert_non_null(strstr(t.p, "vultus_http_requests_total{method=\"GET\",route=\"/healthz\","
                                "status=\"200\"} 3\n"));
    assert_non_null(strstr(t.p, "vultus_http_request_duration_seconds_bucket{method=\"GET\","
                                "route=\"/healthz\",le=\"0.005\"} 1\n"));
    assert_non_null(strstr(t.p, "vultus_http_request_duration_seconds_bucket{method=\"GET\","
                                "route=\"/healthz\",le=\"0.25\"} 2\n"));
    assert_non_null(strstr(t.p, "vultus_http_request_duration_seconds_bucket{method=\"GET\","
                                "route=\"/healthz\",le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(t.p, "vultus_http_request_duration_seconds_count{method=\"GET\","
                                "route=\"/healthz\"} 3\n"));
    assert_non_null(strstr(t.p, "vultus_batch_faces_bucket{le=\"3\"} 1\n"));
    assert_non_null(strstr(t.p, "vultus_batch_faces_sum 3\n"));
    assert_non_null(strstr(t.p, "vultus_queue_capacity 8\n"));
    assert_non_null(strstr(t.p, "vultus_process_resident_memory_bytes "));
    /* Every sample line is NAME[{...}] VALUE, and every family has HELP and TYPE. */
    char *save = NULL;
    for (char *line = strtok_r(t.p, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') {
            assert_true(strncmp(line, "# HELP vultus_", 14) == 0 ||
                        strncmp(line, "# TYPE vultus_", 14) == 0);
            continue;
        }
        assert_true(strncmp(line, "vultus_", 7) == 0);
        char *space = strrchr(line, ' ');
        assert_non_null(space);
        char *end = NULL;
        strtod(space + 1, &end);
        assert_true(*end == '\0');
    }
    http_text_free(&t);
    pthread_mutex_destroy(&s->qlock);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_openapi_matches_routes),
        cmocka_unit_test(test_metrics_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
