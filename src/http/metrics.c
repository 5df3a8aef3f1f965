/*
 * Metrics: lock-free counters and histograms that any thread updates, rendered on demand in
 * the Prometheus text exposition format (version 0.0.4) by GET /metrics.
 */
#include "http/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const double seconds_bounds[HTTP_HIST_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
static const double count_bounds[HTTP_HIST_BUCKETS] = {1,  2,  3,  4,  6,  8,   12,
                                                       16, 24, 32, 48, 64, 128, 256};

void http_text_printf(http_text *t, const char *fmt, ...)
{
    if (t->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = t->cap - t->len;
        int n = vsnprintf(t->p ? t->p + t->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < room) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 4096;
        while (cap - t->len <= (size_t)n)
            cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->failed = 1;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
}

void http_text_free(http_text *t)
{
    free(t->p);
    memset(t, 0, sizeof *t);
}

static void observe(http_histogram *h, const double *bounds, double value, uint64_t sum)
{
    int i = 0;
    while (i < HTTP_HIST_BUCKETS && value > bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, sum, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

void http_histogram_observe_seconds(http_histogram *h, double seconds)
{
    if (!(seconds >= 0)) seconds = 0;
    observe(h, seconds_bounds, seconds, (uint64_t)(seconds * 1e9));
}

void http_histogram_observe_count(http_histogram *h, unsigned value)
{
    observe(h, count_bounds, value, value);
}

void http_histogram_format(http_text *t, const char *name, const char *labels,
                           const http_histogram *h, int seconds)
{
    const double *bounds = seconds ? seconds_bounds : count_bounds;
    const char *sep = labels[0] ? "," : "";
    uint64_t cumulative = 0;
    for (int i = 0; i < HTTP_HIST_BUCKETS; i++) {
        cumulative += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        http_text_printf(t, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, bounds[i],
                         (unsigned long long)cumulative);
    }
    cumulative += atomic_load_explicit(&h->bucket[HTTP_HIST_BUCKETS], memory_order_relaxed);
    /* The count is read after the buckets; reading it separately could show a count below
     * the +Inf bucket mid-update, so +Inf and count print the same sum of buckets. */
    http_text_printf(t, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                     (unsigned long long)cumulative);
    uint64_t sum = atomic_load_explicit(&h->sum, memory_order_relaxed);
    const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
    if (seconds)
        http_text_printf(t, "%s_sum%s%s%s %.9f\n", name, open, labels, close, (double)sum * 1e-9);
    else
        http_text_printf(t, "%s_sum%s%s%s %llu\n", name, open, labels, close,
                         (unsigned long long)sum);
    http_text_printf(t, "%s_count%s%s%s %llu\n", name, open, labels, close,
                     (unsigned long long)cumulative);
}

/* Label values here are route patterns, method names and collection names ([A-Za-z0-9_.-],
 * see gallery.h): none can hold a quote, backslash or newline, so they need no escaping. */
static void route_labels(char *out, size_t cap, int route)
{
    if (route < http_route_count)
        snprintf(out, cap, "method=\"%s\",route=\"%s\"", http_routes[route].method,
                 http_routes[route].pattern);
    else
        snprintf(out, cap, "method=\"\",route=\"unmatched\"");
}

static uint64_t resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long long size = 0, resident = 0;
    int n = fscanf(f, "%llu %llu", &size, &resident);
    fclose(f);
    return n == 2 ? resident * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

/* The vultus_gallery_* series into t. Rendered apart and kept (s->gallery_metrics): when the
 * store cannot list the collections (PostgreSQL restarting), the last rendering is served
 * again rather than nothing, as Prometheus would otherwise record a gap in every dashboard and
 * an alert on these series would fire or clear for the wrong reason. */
static void gallery_metrics(http_server *s, http_text *t)
{
    struct gal_collection_info *list = NULL;
    size_t count = 0;
    if (gal_collection_list(s->gal, &list, &count) != 0) {
        pthread_mutex_lock(&s->gallery_metrics_lock);
        if (s->gallery_metrics) http_text_printf(t, "%s", s->gallery_metrics);
        pthread_mutex_unlock(&s->gallery_metrics_lock);
        return;
    }
    http_text g = {0};
    http_text_printf(&g,
                     "# HELP vultus_gallery_collections Collections in the gallery (while the "
                     "store is down, vultus_store_up 0, the last figures read).\n"
                     "# TYPE vultus_gallery_collections gauge\n"
                     "vultus_gallery_collections %zu\n",
                     count);
    http_text_printf(&g, "# HELP vultus_gallery_subjects Subjects per collection.\n"
                         "# TYPE vultus_gallery_subjects gauge\n");
    for (size_t i = 0; i < count; i++)
        http_text_printf(&g, "vultus_gallery_subjects{collection=\"%s\"} %llu\n", list[i].name,
                         (unsigned long long)list[i].subject_count);
    http_text_printf(&g, "# HELP vultus_gallery_faces Faces per collection.\n"
                         "# TYPE vultus_gallery_faces gauge\n");
    for (size_t i = 0; i < count; i++)
        http_text_printf(&g, "vultus_gallery_faces{collection=\"%s\"} %llu\n", list[i].name,
                         (unsigned long long)list[i].face_count);
    http_text_printf(&g, "# HELP vultus_gallery_hnsw_faces Faces in a collection's HNSW graph "
                         "(0: its searches scan every face; see --ann-min-faces).\n"
                         "# TYPE vultus_gallery_hnsw_faces gauge\n");
    for (size_t i = 0; i < count; i++) {
        struct gal_index_stats st;
        if (gal_index_stats(s->gal, list[i].name, &st) != 0) continue; /* deleted since */
        http_text_printf(&g, "vultus_gallery_hnsw_faces{collection=\"%s\"} %llu\n", list[i].name,
                         (unsigned long long)st.ann_faces);
    }
    free(list);
    if (g.failed) {
        http_text_free(&g);
        t->failed = 1;
        return;
    }
    http_text_printf(t, "%s", g.p);
    /* keep it for the next scrape the store cannot answer (two scrapes at once: either's) */
    pthread_mutex_lock(&s->gallery_metrics_lock);
    free(s->gallery_metrics);
    s->gallery_metrics = g.p;
    pthread_mutex_unlock(&s->gallery_metrics_lock);
}

void http_metrics_render(http_server *s, http_text *t)
{
    http_metrics *m = &s->metrics;
    char labels[512];

    http_text_printf(t, "# HELP vultus_http_requests_total HTTP requests answered, by route "
                        "and status.\n# TYPE vultus_http_requests_total counter\n");
    for (int r = 0; r <= http_route_count; r++) {
        route_labels(labels, sizeof labels, r);
        for (int st = HTTP_STATUS_MIN; st <= HTTP_STATUS_MAX; st++) {
            uint64_t v =
                atomic_load_explicit(&m->requests[r][st - HTTP_STATUS_MIN], memory_order_relaxed);
            if (v)
                http_text_printf(t, "vultus_http_requests_total{%s,status=\"%d\"} %llu\n", labels,
                                 st, (unsigned long long)v);
        }
    }

    http_text_printf(t, "# HELP vultus_http_request_duration_seconds Time from the request's "
                        "headers to its response, by route.\n"
                        "# TYPE vultus_http_request_duration_seconds histogram\n");
    for (int r = 0; r <= http_route_count; r++) {
        if (atomic_load_explicit(&m->latency[r].count, memory_order_relaxed) == 0) continue;
        route_labels(labels, sizeof labels, r);
        http_histogram_format(t, "vultus_http_request_duration_seconds", labels, &m->latency[r], 1);
    }

    static const char *stage_names[HTTP_STAGE_COUNT] = {
        "queue", "decode",     "detect",   "landmarks", "align",
        "embed", "attributes", "liveness", "gallery",   "batch_wait"};
    http_text_printf(t, "# HELP vultus_stage_duration_seconds Time per request in each stage: "
                        "waiting in the queue, then the face pipeline and the gallery; "
                        "batch_wait: its faces waiting in the batch pool.\n"
                        "# TYPE vultus_stage_duration_seconds histogram\n");
    for (int i = 0; i < HTTP_STAGE_COUNT; i++) {
        snprintf(labels, sizeof labels, "stage=\"%s\"", stage_names[i]);
        http_histogram_format(t, "vultus_stage_duration_seconds", labels, &m->stage[i], 1);
    }

    http_text_printf(t, "# HELP vultus_batch_faces Faces per batch of the per-face models "
                        "(embedder, attributes, liveness), gathered across requests.\n"
                        "# TYPE vultus_batch_faces histogram\n");
    http_histogram_format(t, "vultus_batch_faces", "", &m->batch, 0);

    static const char *reject_names[HTTP_REJECT_COUNT] = {"queue_full", "deadline", "rate_limited",
                                                          "not_ready", "body_memory"};
    http_text_printf(t, "# HELP vultus_rejected_requests_total Requests refused before any "
                        "work, by reason.\n# TYPE vultus_rejected_requests_total counter\n");
    for (int i = 0; i < HTTP_REJECT_COUNT; i++)
        http_text_printf(
            t, "vultus_rejected_requests_total{reason=\"%s\"} %llu\n", reject_names[i],
            (unsigned long long)atomic_load_explicit(&m->rejected[i], memory_order_relaxed));
    /* Every status from the start (0 until it happens), so that a rate over them has a start
     * and an operator sees the series exist before the first door opens. */
    http_text_printf(t, "# HELP vultus_checkins_total Faces checked in by POST "
                        "/v1/collections/{c}/checkins, by what each arrival did (this "
                        "process's: sum the replicas').\n"
                        "# TYPE vultus_checkins_total counter\n");
    for (int i = 0; i < HTTP_CHECKIN_STATUSES; i++)
        http_text_printf(
            t, "vultus_checkins_total{status=\"%s\"} %llu\n", gal_checkin_status_name(i),
            (unsigned long long)atomic_load_explicit(&m->checkins[i], memory_order_relaxed));
    http_text_printf(
        t,
        "# HELP vultus_slow_connections_closed_total Connections closed for not "
        "sending a whole request within the read timeout.\n"
        "# TYPE vultus_slow_connections_closed_total counter\n"
        "vultus_slow_connections_closed_total %llu\n",
        (unsigned long long)atomic_load_explicit(&m->slow_closed, memory_order_relaxed));
    /* The store's health apart from readiness (which draining also turns 0), and what its
     * outages cost, for alerts: the log names an outage's cause once, not per request. */
    http_text_printf(
        t,
        "# HELP vultus_store_up 1 when the store (SQLite file or PostgreSQL) answered the "
        "last check, once a second (0 while it loads).\n"
        "# TYPE vultus_store_up gauge\nvultus_store_up %d\n"
        "# HELP vultus_store_errors_total Requests answered 503 store_unavailable: the store "
        "could not be read or written.\n"
        "# TYPE vultus_store_errors_total counter\nvultus_store_errors_total %llu\n",
        atomic_load(&s->gallery_loaded) && atomic_load(&s->store_ok),
        (unsigned long long)atomic_load_explicit(&m->store_errors, memory_order_relaxed));

    pthread_mutex_lock(&s->qlock);
    int qlen = s->qlen, pool_crops = s->pool_crops, pool_requests = s->pool_requests;
    pthread_mutex_unlock(&s->qlock);
    int busy = atomic_load(&s->busy_workers);
    http_text_printf(t,
                     "# HELP vultus_batch_pending_faces Faces waiting in the batch pool.\n"
                     "# TYPE vultus_batch_pending_faces gauge\nvultus_batch_pending_faces %d\n"
                     "# HELP vultus_batch_pending_requests Requests whose faces are in the "
                     "batch pool or in a batch.\n"
                     "# TYPE vultus_batch_pending_requests gauge\n"
                     "vultus_batch_pending_requests %d\n",
                     pool_crops, pool_requests);
    http_text_printf(
        t,
        "# HELP vultus_queue_depth Requests waiting for a worker.\n"
        "# TYPE vultus_queue_depth gauge\nvultus_queue_depth %d\n"
        "# HELP vultus_queue_capacity Requests that may wait for a worker.\n"
        "# TYPE vultus_queue_capacity gauge\nvultus_queue_capacity %d\n"
        "# HELP vultus_workers_busy Workers preparing, batching or completing requests.\n"
        "# TYPE vultus_workers_busy gauge\nvultus_workers_busy %d\n"
        "# HELP vultus_workers Worker threads.\n"
        "# TYPE vultus_workers gauge\nvultus_workers %d\n"
        "# HELP vultus_http_in_flight_requests Requests received and not yet "
        "answered, this scrape included (1 when idle).\n"
        "# TYPE vultus_http_in_flight_requests gauge\n"
        "vultus_http_in_flight_requests %lld\n"
        "# HELP vultus_ready 1 when the service is ready for traffic (as /readyz: models "
        "and gallery loaded, the store answers, not draining).\n"
        "# TYPE vultus_ready gauge\nvultus_ready %d\n"
        "# HELP vultus_draining 1 after SIGTERM.\n"
        "# TYPE vultus_draining gauge\nvultus_draining %d\n"
        "# HELP vultus_body_memory_bytes Request-body bytes held now, all requests together "
        "(declared Content-Lengths, chunked bodies' buffers).\n"
        "# TYPE vultus_body_memory_bytes gauge\nvultus_body_memory_bytes %lld\n"
        "# HELP vultus_body_memory_limit_bytes --max-body-memory: an upload past it gets 503.\n"
        "# TYPE vultus_body_memory_limit_bytes gauge\nvultus_body_memory_limit_bytes %lld\n",
        qlen, s->cfg.queue, busy, s->n_workers, (long long)atomic_load(&s->in_flight),
        atomic_load(&s->ready) && atomic_load(&s->store_ok) && !atomic_load(&s->draining),
        atomic_load(&s->draining), (long long)atomic_load(&s->body_bytes),
        (long long)s->cfg.max_body_memory);

    /* No gallery figures while it loads (server.c, load_store). */
    if (atomic_load(&s->gallery_loaded)) gallery_metrics(s, t);

    http_text_printf(t,
                     "# HELP vultus_process_resident_memory_bytes Resident set size.\n"
                     "# TYPE vultus_process_resident_memory_bytes gauge\n"
                     "vultus_process_resident_memory_bytes %llu\n",
                     (unsigned long long)resident_bytes());
}
