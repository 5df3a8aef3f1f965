/*
 * The operations routes, open to everyone and answered without touching a worker: /healthz,
 * /readyz, /openapi.json on the event loop, where nothing may block (/readyz reads the store's
 * health from the main loop's last check instead of querying it here), and /metrics, which
 * reads the gallery's sizes from the store, on a thread of its own (server.c,
 * metrics_off_loop). All of them answer from the moment the port opens, while the models and
 * the gallery are still loading.
 */
#include "http/internal.h"

#include <stdlib.h>
#include <string.h>

void http_api_healthz(http_request *r, http_worker *w)
{
    (void)w;
    http_respond_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

void http_api_readyz(http_request *r, http_worker *w)
{
    (void)w;
    http_server *s = r->srv;
    struct http_readiness c;
    int ready = http_server_ready(s, &c);
    json_t *checks = json_pack("{s:b,s:b,s:b,s:b}", "models", c.models, "gallery", c.gallery,
                               "store", c.store, "draining", c.draining);
    if (ready) {
        http_respond_json(r, 200, json_pack("{s:s,s:o}", "status", "ready", "checks", checks));
        return;
    }
    /* Start-up loads both in parallel (server.c, load_models and load_store). */
    const char *why = c.draining                ? "draining (SIGTERM)"
                      : !c.models && !c.gallery ? "loading the models and the gallery"
                      : !c.models               ? "loading the models"
                      : !c.gallery              ? "loading the gallery"
                                                : "the store does not answer";
    snprintf(r->error, sizeof r->error, "not_ready");
    http_respond_json(r, 503,
                      json_pack("{s:{s:s,s:s},s:s,s:o}", "error", "code", "not_ready", "message",
                                why, "status", "not_ready", "checks", checks));
}

void http_api_metrics(http_request *r, http_worker *w)
{
    (void)w;
    http_text t = {0};
    http_metrics_render(r->srv, &t);
    if (t.failed) {
        http_text_free(&t);
        http_respond_error(r, 500, "internal", "out of memory rendering the metrics");
        return;
    }
    http_respond_text(r, 200, "text/plain; version=0.0.4; charset=utf-8", t.p, t.len);
}

void http_api_openapi(http_request *r, http_worker *w)
{
    (void)w;
    size_t len = 0;
    const char *doc = http_openapi_json(&len);
    char *copy = malloc(len + 1);
    if (!copy) {
        http_respond_error(r, 503, "overloaded", "out of memory");
        return;
    }
    memcpy(copy, doc, len + 1);
    http_respond_text(r, 200, "application/json", copy, len);
}
