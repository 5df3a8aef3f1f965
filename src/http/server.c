/*
 * The server: libmicrohttpd's event loop (one thread, epoll) in front of a bounded queue of
 * workers.
 *
 * A request's life:
 *   1. on_uri (event loop): the request line arrived; a http_request is allocated and the
 *      clock starts.
 *   2. on_access, first call (headers complete): route, request id, auth, rate limit,
 *      readiness, declared body size. Anything refused here is answered at once, before the
 *      body is read.
 *   3. on_access, body chunks: appended up to max-body-bytes.
 *   4. on_access, body complete: cheap routes are answered inline; /v1 routes go through
 *      admission: refused with 503 + Retry-After when the queue is full or the request could
 *      not start before its deadline; otherwise the connection is suspended and the request
 *      queued.
 *   5. a worker runs the handler, which writes the response into the request, then resumes
 *      the connection; on_access is called again and queues the response.
 *   6. on_completed: metrics, one JSON log line, free.
 *
 * Ownership: the event loop owns a request except between enqueue and resume, when exactly
 * one worker does. The queue (qlock) is the hand-off, MHD_resume_connection the hand-back.
 */
#include "http/internal.h"
#include "http/notify.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ---- logging: one JSON object per line on stderr ---------------------------------------- */

static void log_json(json_t *obj)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[96];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    json_object_set_new(obj, "ts", json_string(when));
    char *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    if (text) {
        /* One fputs per line: stdio locks the stream, so lines from threads stay whole. */
        size_t n = strlen(text);
        text[n] = '\n';
        fwrite(text, 1, n + 1, stderr);
        free(text);
    }
    json_decref(obj);
}

/* An event of the server's life: {"level":..., "msg":..., extra fields}. Steals extra. */
static void log_event(int level, const char *msg, json_t *extra)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < base_log_level) {
        json_decref(extra);
        return;
    }
    json_t *obj = json_object();
    if (!obj) {
        json_decref(extra);
        return;
    }
    json_object_set_new(obj, "level", json_string(names[level < 0 ? 0 : level > 3 ? 3 : level]));
    json_object_set_new(obj, "msg", json_string(msg));
    if (extra) {
        json_object_update(obj, extra);
        json_decref(extra);
    }
    log_json(obj);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    if (BASE_LOG_DEBUG < base_log_level) return;
    char text[512];
    vsnprintf(text, sizeof text, fmt, ap);
    size_t n = strlen(text);
    while (n && (text[n - 1] == '\n' || text[n - 1] == '\r'))
        text[--n] = '\0';
    log_event(BASE_LOG_DEBUG, "libmicrohttpd", json_pack("{s:s}", "detail", text));
}

/* ---- responses -------------------------------------------------------------------------- */

static void set_response(http_request *r, int status, const char *type, char *body, size_t len)
{
    free(r->resp);
    r->status = status;
    r->resp_type = type;
    r->resp = body;
    r->resp_len = len;
}

void http_respond_text(http_request *r, int status, const char *type, char *text, size_t len)
{
    set_response(r, status, type, text, len);
}

void http_respond_json(http_request *r, int status, json_t *body)
{
    char *text =
        body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10))
             : NULL;
    json_decref(body);
    if (!text) {
        static const char oom[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        text = strdup(oom);
        status = 500;
        snprintf(r->error, sizeof r->error, "internal");
    }
    set_response(r, status, "application/json", text, text ? strlen(text) : 0);
}

/* Replaces every byte of s that does not belong to a well-formed UTF-8 sequence with '?', in
 * place. Error messages quote what the client sent (a path, a Content-Type, a parameter), and
 * JSON strings must be UTF-8: jansson refuses anything else, which turned a 4xx into a 500. */
static void utf8_sanitize(char *s)
{
    size_t len = strlen(s);
    unsigned char *p = (unsigned char *)s, *end = p + len;
    while (p < end) {
        size_t n = base_utf8_seq(p, (size_t)(end - p));
        if (n == 0)
            *p++ = '?';
        else
            p += n;
    }
}

void http_respond_error(http_request *r, int status, const char *code, const char *fmt, ...)
{
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    utf8_sanitize(message);
    snprintf(r->error, sizeof r->error, "%s", code);
    http_respond_json(r, status,
                      json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message));
}

/* How often a store outage's refusals are logged with their detail (one line, then a count). */
#define STORE_ERROR_LOG_INTERVAL_NS 10000000000u

void http_respond_base_error(http_request *r, int rc, const char *what)
{
    char message[600];
    snprintf(message, sizeof message, "%s", base_error_message());
    if (!message[0]) snprintf(message, sizeof message, "%s", base_strerror(rc));
    switch (rc) {
    case BASE_ERR_NOT_FOUND: {
        char code[48];
        snprintf(code, sizeof code, "%s_not_found", what ? what : "resource");
        http_respond_error(r, 404, code, "%s", message);
        break;
    }
    case BASE_ERR_EXISTS: http_respond_error(r, 409, "conflict", "%s", message); break;
    case BASE_ERR_INVALID: http_respond_error(r, 422, "invalid_parameter", "%s", message); break;
    case BASE_ERR_LIMIT: http_respond_error(r, 413, "too_large", "%s", message); break;
    case BASE_ERR_FORMAT: http_respond_error(r, 400, "bad_request", "%s", message); break;
    case BASE_ERR_UNSUPPORTED: http_respond_error(r, 422, "unsupported", "%s", message); break;
    case BASE_ERR_NOMEM:
        http_respond_error(r, 503, "overloaded", "out of memory: %s", message);
        r->retry_after_s = 1;
        break;
    case BASE_ERR_FULL:
        /* Not the request's size (413) nor a passing outage: the operator must make room. */
        log_event(BASE_LOG_ERROR, "store full",
                  json_pack("{s:s,s:s}", "request_id", r->id, "detail", message));
        http_respond_error(r, 507, "store_full",
                           "the gallery store is full: nothing was stored; ask the operator");
        break;
    case BASE_ERR_IO: {
        /* The store (the SQLite file, the PostgreSQL server) cannot be read or written: an
         * outage, not this request's fault; this replica shortly, or another, may answer. The
         * detail names paths and hosts: it goes to the log, not to the client. Logged once per
         * STORE_ERROR_LOG_INTERVAL_NS, not per request: during a database restart every
         * gallery call fails alike, and a line each (122 in a 10 s restart at 12 enrolments/s)
         * buried the cause among copies of it. The others are counted into the next line
         * (not_logged) or into "the store answers again"; each request's own line still says
         * store_unavailable. */
        http_server *s = r->srv;
        atomic_fetch_add(&s->metrics.store_errors, 1);
        uint64_t now = base_now_ns(), last = atomic_load(&s->store_error_logged_ns);
        if ((last == 0 || now - last >= STORE_ERROR_LOG_INTERVAL_NS) &&
            atomic_compare_exchange_strong(&s->store_error_logged_ns, &last, now))
            log_event(BASE_LOG_ERROR, "store unavailable",
                      json_pack("{s:s,s:s,s:I}", "request_id", r->id, "detail", message,
                                "not_logged",
                                (json_int_t)atomic_exchange(&s->store_errors_unlogged, 0)));
        else
            atomic_fetch_add(&s->store_errors_unlogged, 1);
        http_respond_error(r, 503, "store_unavailable",
                           "the gallery store cannot be reached; retry shortly");
        r->retry_after_s = 1;
        break;
    }
    default:
        log_event(BASE_LOG_ERROR, "internal error",
                  json_pack("{s:s,s:s,s:s}", "request_id", r->id, "error", base_strerror(rc),
                            "detail", message));
        http_respond_error(r, 500, "internal", "%s: %s", base_strerror(rc), message);
        break;
    }
}

static enum MHD_Result send_response(http_request *r)
{
    http_server *s = r->srv;
    if (!r->status) http_respond_error(r, 500, "internal", "no response was produced");
    struct MHD_Response *resp;
    if (r->resp) {
        resp = MHD_create_response_from_buffer(r->resp_len, r->resp, MHD_RESPMEM_MUST_FREE);
        if (resp) r->resp = NULL; /* MHD frees it now */
    } else {
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (!resp) return MHD_NO;
    if (r->resp_type) MHD_add_response_header(resp, "Content-Type", r->resp_type);
    MHD_add_response_header(resp, "X-Request-Id", r->id);
    MHD_add_response_header(resp, "Cache-Control",
                            r->cache_control ? r->cache_control : "no-store");
    if (r->etag[0]) MHD_add_response_header(resp, "ETag", r->etag);
    /* Error bodies quote the client's path and parameters: never let a browser sniff one into
     * a page. And no other site may frame the web page, which keeps an API key and has delete
     * buttons (clickjacking): its <meta> policy cannot say so, browsers ignore frame-ancestors
     * there. Harmless on the JSON answers, so every response carries them. */
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Content-Security-Policy", "frame-ancestors 'none'");
    /* Face thumbnails are photos of people: no other site may embed one (nor the page's
     * scripts) with <img> or <script>, which need no CORS (in particular while the API is
     * open); the page's address goes to no other site; the page shares no window group with
     * another site's, and only it may ask for the camera (its snapshot), nothing else. */
    MHD_add_response_header(resp, "Cross-Origin-Resource-Policy", "same-origin");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "Cross-Origin-Opener-Policy", "same-origin");
    MHD_add_response_header(resp, "Permissions-Policy",
                            "camera=(self), microphone=(), geolocation=(), payment=(), usb=()");
    if (r->retry_after_s > 0) {
        char v[24];
        snprintf(v, sizeof v, "%d", r->retry_after_s);
        MHD_add_response_header(resp, "Retry-After", v);
    }
    if (r->status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    if (r->location[0]) MHD_add_response_header(resp, "Location", r->location);
    if (r->allow[0]) MHD_add_response_header(resp, "Allow", r->allow);
    if (r->replayed) MHD_add_response_header(resp, "Idempotency-Replayed", "true");
    /* While draining, every response closes its connection, so clients reconnect to another
     * replica instead of reusing one that is going away. */
    if (atomic_load(&s->draining)) MHD_add_response_header(resp, "Connection", "close");
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ok;
}

/* ---- connections: the slow-client reaper's view ----------------------------------------- */

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    http_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        http_conn *hc = calloc(1, sizeof *hc);
        if (!hc) return;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        hc->fd = ci ? ci->connect_fd : -1;
        atomic_store(&hc->window_ns, base_now_ns());
        pthread_mutex_lock(&s->conn_lock);
        hc->next = s->conns;
        if (s->conns) s->conns->prev = hc;
        s->conns = hc;
        pthread_mutex_unlock(&s->conn_lock);
        *socket_context = hc;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        /* MHD calls this before it closes the socket, so the reaper (which shuts sockets
         * down under conn_lock) never touches a descriptor that was closed and reused. */
        http_conn *hc = *socket_context;
        if (!hc) return;
        if (hc->linger && !hc->closed_by_reaper && hc->fd >= 0) {
            /* libmicrohttpd closes its descriptor next; the socket lives on in the copy. */
            int copy = fcntl(hc->fd, F_DUPFD_CLOEXEC, 0);
            if (copy >= 0) http_linger_add(s->linger, copy);
        }
        pthread_mutex_lock(&s->conn_lock);
        if (hc->prev)
            hc->prev->next = hc->next;
        else
            s->conns = hc->next;
        if (hc->next) hc->next->prev = hc->prev;
        pthread_mutex_unlock(&s->conn_lock);
        free(hc);
        *socket_context = NULL;
    }
}

/* Closes connections that have not delivered a whole request within read_timeout_ms of
 * starting to wait for one (slowloris), and idle keep-alive connections as old.
 *
 * Also those whose client has gone (the end of its stream, nothing left unread): libmicrohttpd
 * 0.9.75 with epoll sometimes misses that end when it arrives together with the last bytes of
 * a body (a read shorter than its buffer is taken to mean the socket is drained, and the edge
 * of the end was already consumed), so a client that closed mid-upload kept its connection,
 * and its share of --max-body-memory, until the read timeout: in 4 of about 200 runs of
 * tests/http/test_body_budget. libmicrohttpd itself ends a request whose client closes its
 * side, so shutting such a connection down changes nothing else. */
static void reap_slow_connections(http_server *s)
{
    uint64_t limit = (uint64_t)s->cfg.read_timeout_ms * 1000000u;
    pthread_mutex_lock(&s->conn_lock);
    uint64_t now = base_now_ns();
    for (http_conn *hc = s->conns; hc; hc = hc->next) {
        if (hc->closed_by_reaper || hc->fd < 0 || atomic_load(&hc->busy)) continue;
        char byte;
        if (recv(hc->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0) {
            shutdown(hc->fd, SHUT_RDWR);
            hc->closed_by_reaper = 1;
            continue;
        }
        /* A request can end (on_completed, without conn_lock) after `now` was read: such a
         * window is newer than `now`, and `now - window` would wrap to centuries. */
        uint64_t window = atomic_load(&hc->window_ns);
        if (window >= now || now - window <= limit) continue;
        shutdown(hc->fd, SHUT_RDWR);
        hc->closed_by_reaper = 1;
        atomic_fetch_add(&s->metrics.slow_closed, 1);
    }
    pthread_mutex_unlock(&s->conn_lock);
}

/* ---- the queue and the workers ---------------------------------------------------------- */

static void finish_on_worker(http_request *r)
{
    atomic_store(&r->state, HTTP_REQ_DONE);
    /* After this call the event loop owns r again: do not touch it. */
    MHD_resume_connection(r->conn);
}

/*
 * Cross-request batching: a stage scheduler run by the workers themselves, with no thread of
 * its own (like Triton's dynamic batcher, but a batch is formed by whichever worker is free).
 * A request's work has three steps:
 *   1. prepare (the worker that takes it from the queue): parse, decode, detect, landmarks,
 *      crops (http_face_prefetch). Its faces then wait in the batch pool, and the worker goes
 *      back for more work instead of waiting for them;
 *   2. batches: a free worker takes up to batch_max faces from the pool, oldest first (a
 *      request's faces stay together and in order; a request is split only where a batch is
 *      full) and runs the per-face models over them in one engine run per model;
 *   3. when its last face is done the request goes on the done list; a free worker runs its
 *      handler (which finds its images prepared), and resumes the connection.
 * A free worker picks, in this order: a done request (finishing frees memory and answers the
 * client); a batch, when the pool holds batch_max faces, or its oldest would wait past
 * batch_wait_ms if the worker prepared another request first, or no request is queued
 * (nothing else would fill it: never wait idle); the next queued request; otherwise it
 * sleeps. So no core idles while there is work, a batch grows only while its faces' wait
 * stays within batch_wait_ms, and --batch-max 1 runs every face in its own engine run
 * (batching off). Requests without images skip the pool.
 *
 * Why the workers and not a batcher thread: on a machine with as many workers as cores, a
 * dedicated thread would either idle a core or compete with the workers; here the only wait
 * is a worker with nothing at all to do.
 */
typedef struct http_batch_slot {
    http_request *r;
    http_face_job *job;
    face_batch_slice slice;
} http_batch_slot;

enum worker_action { WORK_NONE, WORK_PREPARE, WORK_BATCH, WORK_COMPLETE };

/* Takes up to batch_max faces from the pool into w->slots (qlock held); returns the slots. */
static int take_batch(http_server *s, http_worker *w, uint64_t now)
{
    int want = s->cfg.batch_max, n = 0;
    while (want > 0 && s->pool_head) {
        http_request *r = s->pool_head;
        http_face_job *job = &r->jobs[r->job_cursor];
        int avail = job->result.n_faces - r->face_cursor;
        if (!job->result.pending || avail <= 0) {
            /* nothing of this image waits: the next one */
            r->job_cursor++;
            r->face_cursor = 0;
            BASE_ASSERT(r->job_cursor < r->n_jobs);
            continue;
        }
        int take = avail < want ? avail : want;
        w->slots[n++] = (http_batch_slot){
            .r = r,
            .job = job,
            .slice = {.result = &job->result, .first = r->face_cursor, .count = take}};
        r->face_cursor += take;
        r->crops_taken += take;
        s->pool_crops -= take;
        want -= take;
        if (r->crops_taken == r->crops_total) {
            http_histogram_observe_seconds(&s->metrics.stage[HTTP_STAGE_BATCH_WAIT],
                                           (double)(now - r->t_parked_ns) * 1e-9);
            s->pool_head = r->pool_next;
            if (!s->pool_head) s->pool_tail = NULL;
            r->pool_next = NULL;
        }
    }
    return n;
}

/*
 * Whether a free worker should run a batch now rather than prepare a queued request: when the
 * pool holds a full batch, when nothing is queued, or when preparing one more request first
 * (about prepare_ms) would keep the oldest face waiting past batch_wait_ms. The last rule
 * makes --batch-wait-ms the bound on a face's wait it promises: a prepare takes tens of ms,
 * so with the default 2 ms a batch holds what other workers parked meanwhile, and a larger
 * value lets a worker prepare more requests to fill it.
 */
static int batch_due(const http_server *s, uint64_t now)
{
    if (s->pool_crops <= 0) return 0;
    if (s->pool_crops >= s->cfg.batch_max || !s->qhead) return 1;
    double waited_ms = (double)(now - s->pool_head->t_parked_ns) / 1e6;
    return waited_ms + s->prepare_ewma_ms >= (double)s->cfg.batch_wait_ms;
}

static void push_done(http_server *s, http_request *r)
{
    r->pool_next = NULL;
    if (s->done_tail)
        s->done_tail->pool_next = r;
    else
        s->done_head = r;
    s->done_tail = r;
}

/* Runs r's handler (its images are prepared and finished, or it has none), then hands the
 * request back to the event loop. */
static void complete(http_server *s, http_worker *w, http_request *r)
{
    uint64_t t0 = base_now_ns();
    if (!r->status) {
        base_error_clear();
        http_routes[r->route].handler(r, w);
    }
    http_face_prefetch_free(r);
    double ms = r->work_ms + (double)(base_now_ns() - t0) / 1e6;
    pthread_mutex_lock(&s->qlock);
    s->running--;
    double *ewma = &s->cost_ewma_ms[http_routes[r->route].image ? 1 : 0];
    *ewma = 0.8 * *ewma + 0.2 * ms;
    pthread_mutex_unlock(&s->qlock);
    finish_on_worker(r);
}

/* Step 1 for a request taken from the queue: the deadline check, then prepare. A request
 * with faces to finish is parked in the pool; any other completes here. */
static void prepare(http_server *s, http_worker *w, http_request *r)
{
    uint64_t t0 = base_now_ns();
    r->t_started_ns = t0;
    http_histogram_observe_seconds(&s->metrics.stage[HTTP_STAGE_QUEUE],
                                   (double)(t0 - r->t_enqueued_ns) * 1e-9);
    if (t0 > r->deadline_ns) {
        /* The estimate was wrong: it waited past its deadline. Refuse rather than run work
         * whose client has given up. */
        atomic_fetch_add(&s->metrics.rejected[HTTP_REJECT_DEADLINE], 1);
        http_respond_error(r, 503, "overloaded", "the request could not start within its deadline");
        r->retry_after_s = 1;
        complete(s, w, r);
        return;
    }
    base_error_clear();
    int crops = http_face_prefetch(r, w);
    uint64_t t1 = base_now_ns();
    r->work_ms += (double)(t1 - t0) / 1e6;
    if (crops <= 0) {
        complete(s, w, r);
        return;
    }
    pthread_mutex_lock(&s->qlock);
    s->prepare_ewma_ms = 0.8 * s->prepare_ewma_ms + 0.2 * (double)(t1 - t0) / 1e6;
    r->crops_total = crops;
    r->t_parked_ns = t1;
    r->pool_next = NULL;
    if (s->pool_tail)
        s->pool_tail->pool_next = r;
    else
        s->pool_head = r;
    s->pool_tail = r;
    s->pool_crops += crops;
    s->pool_requests++;
    /* an idle worker may take the batch (or this worker will, next) */
    pthread_cond_signal(&s->qcond);
    pthread_mutex_unlock(&s->qlock);
}

/* Step 2: the per-face models over the slots, then the bookkeeping of their requests. */
static void run_batch(http_server *s, http_worker *w, int n)
{
    face_batch_slice *slices = w->slices;
    int faces = 0;
    for (int i = 0; i < n; i++) {
        slices[i] = w->slots[i].slice;
        faces += slices[i].count;
    }
    uint64_t t0 = base_now_ns();
    base_error_clear();
    int rc = face_analyze_finish(w->face, slices, n);
    double ms = (double)(base_now_ns() - t0) / 1e6;
    char message[256] = "";
    if (rc) snprintf(message, sizeof message, "%s", base_error_message());
    http_histogram_observe_count(&s->metrics.batch, (unsigned)faces);
    pthread_mutex_lock(&s->qlock);
    for (int i = 0; i < n; i++) {
        http_batch_slot *slot = &w->slots[i];
        http_request *r = slot->r;
        face_timing *t = &slot->job->result.timing;
        t->embed_ms += slices[i].timing.embed_ms;
        t->attributes_ms += slices[i].timing.attributes_ms;
        t->liveness_ms += slices[i].timing.liveness_ms;
        r->work_ms += ms * slices[i].count / faces;
        if (rc && !slot->job->rc) {
            slot->job->rc = rc;
            slot->job->decoded = 1;
            snprintf(slot->job->message, sizeof slot->job->message, "%s", message);
        }
        r->crops_done += slices[i].count;
        if (r->crops_done == r->crops_total) {
            s->pool_requests--;
            push_done(s, r);
        }
    }
    if (s->done_head) pthread_cond_signal(&s->qcond);
    pthread_mutex_unlock(&s->qlock);
}

static void *worker_main(void *arg)
{
    http_worker *w = arg;
    http_server *s = w->srv;
    /* Inference threads compute flat out; the event loop mostly sleeps, and when it wakes it
     * has to accept, refuse (503 within milliseconds), answer /healthz and hand results back.
     * A lower weight for the workers lets it preempt them at once instead of waiting for a
     * time slice (refusal p99 under 4x overload: about 4-10 ms at 0, 1.6-5 ms at 10, on 2
     * busy cores). Inside a container's cgroup this only orders our own threads. */
    if (s->cfg.worker_nice > 0) {
        errno = 0;
        int base = getpriority(PRIO_PROCESS, 0); /* -1 is a valid niceness: errno tells */
        if (errno) base = 0;
        int nice = base + s->cfg.worker_nice > 19 ? 19 : base + s->cfg.worker_nice;
        if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice) != 0)
            LOG_WARN("worker-nice %d: setpriority failed: %s", s->cfg.worker_nice, strerror(errno));
    }
    for (;;) {
        enum worker_action action = WORK_NONE;
        http_request *r = NULL;
        int n_slots = 0;
        pthread_mutex_lock(&s->qlock);
        for (;;) {
            uint64_t now = base_now_ns();
            if (s->done_head) {
                r = s->done_head;
                s->done_head = r->pool_next;
                if (!s->done_head) s->done_tail = NULL;
                action = WORK_COMPLETE;
            } else if (batch_due(s, now)) {
                n_slots = take_batch(s, w, now);
                action = WORK_BATCH;
            } else if (s->qhead) {
                r = s->qhead;
                s->qhead = r->next;
                if (!s->qhead) s->qtail = NULL;
                s->qlen--;
                s->backlog_ms -= r->cost_ms;
                if (s->backlog_ms < 0 || !s->qhead) s->backlog_ms = 0;
                s->running++;
                action = WORK_PREPARE;
            } else if (s->stop && s->pool_crops == 0) {
                break;
            }
            if (action != WORK_NONE) break;
            pthread_cond_wait(&s->qcond, &s->qlock);
        }
        pthread_mutex_unlock(&s->qlock);
        if (action == WORK_NONE) return NULL;
        atomic_fetch_add(&s->busy_workers, 1);
        switch (action) {
        case WORK_COMPLETE: complete(s, w, r); break;
        case WORK_BATCH: run_batch(s, w, n_slots); break;
        default: prepare(s, w, r); break;
        }
        atomic_fetch_sub(&s->busy_workers, 1);
    }
}

/*
 * Admission control, on the event loop. Estimates when r could start: the queued requests'
 * estimated service times, spread over the workers, plus half a request when every worker is
 * busy. Refuses with 503 when the queue is full or the estimate passes r's deadline;
 * otherwise suspends the connection and queues r. Returns 1 when queued.
 *
 * It runs once the body is here, not when the headers arrive: a 503 sent before the client
 * has sent its body is followed by a close with unread data, which the kernel turns into a
 * reset, and a client can lose the 503 to it (a load run at concurrency 256 with that check
 * had one connection error among 3,816 refusals, where runs without it had none).
 */
static int admit(http_server *s, http_request *r)
{
    const http_route *route = &http_routes[r->route];
    uint64_t now = base_now_ns();
    pthread_mutex_lock(&s->qlock);
    double cost = s->cost_ewma_ms[route->image ? 1 : 0];
    double wait_ms = s->backlog_ms / s->n_workers;
    if (s->running >= s->n_workers) wait_ms += 0.5 * s->cost_ewma_ms[1];
    int retry = (int)ceil((wait_ms + cost) / 1000.0);
    if (retry < 1) retry = 1;
    if (s->qlen >= s->cfg.queue && s->running + s->qlen >= s->n_workers) {
        pthread_mutex_unlock(&s->qlock);
        atomic_fetch_add(&s->metrics.rejected[HTTP_REJECT_QUEUE_FULL], 1);
        http_respond_error(r, 503, "overloaded", "the server is at capacity (queue full)");
        r->retry_after_s = retry;
        return 0;
    }
    if (now + (uint64_t)(wait_ms * 1e6) > r->deadline_ns) {
        pthread_mutex_unlock(&s->qlock);
        atomic_fetch_add(&s->metrics.rejected[HTTP_REJECT_DEADLINE], 1);
        http_respond_error(r, 503, "overloaded",
                           "the request could not start within its deadline (about %.0f ms "
                           "of work is queued per worker)",
                           wait_ms);
        r->retry_after_s = retry;
        return 0;
    }
    /* Suspend before the request becomes visible to a worker, so its resume always finds a
     * suspended connection. Lock order: qlock, then MHD's own locks; workers resume without
     * holding qlock. */
    MHD_suspend_connection(r->conn);
    r->cost_ms = cost;
    r->t_enqueued_ns = now;
    atomic_store(&r->state, HTTP_REQ_QUEUED);
    r->next = NULL;
    if (s->qtail)
        s->qtail->next = r;
    else
        s->qhead = r;
    s->qtail = r;
    s->qlen++;
    s->backlog_ms += cost;
    pthread_cond_signal(&s->qcond);
    pthread_mutex_unlock(&s->qlock);
    return 1;
}

/* ---- the access handler ----------------------------------------------------------------- */

#define RETRY_AFTER_MAX_S 86400

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    http_server *s = cls;
    (void)conn;
    http_request *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->uri = strdup(uri ? uri : "");
    if (!r->uri) {
        free(r);
        return NULL;
    }
    r->srv = s;
    r->route = -1;
    r->faces = -1;
    r->t_start_ns = base_now_ns();
    r->content_length = -1;
    atomic_fetch_add(&s->in_flight, 1);
    return r;
}

/*
 * The body budget (--max-body-memory). Bodies are held whole from upload to answer, and
 * --max-body-bytes bounds each but not their sum: 48 uploads of 15 MiB took an idle server
 * from 166 to 892 MB, about 60 pass a 1 GiB pod limit, and the kernel's OOM kill loses every
 * request in flight. So a request reserves its body's bytes before it may hold them: a
 * declared Content-Length when the headers arrive (refused at once, before a byte of the body
 * is read: a client sending Expect: 100-continue is not told to continue), a chunked body's
 * buffer as it grows. Only the event loop reserves and releases (on_headers, append_body,
 * on_completed), so one check-and-add cannot race another; the atomic is for /metrics.
 */
static int body_reserve(http_server *s, http_request *r, int64_t bytes)
{
    if (bytes <= 0) return 0;
    int64_t held = atomic_load(&s->body_bytes);
    do {
        if (held + bytes > s->cfg.max_body_memory) return -1;
    } while (!atomic_compare_exchange_weak(&s->body_bytes, &held, held + bytes));
    r->body_reserved += bytes;
    return 0;
}

static void body_release(http_server *s, http_request *r)
{
    if (r->body_reserved) atomic_fetch_sub(&s->body_bytes, r->body_reserved);
    r->body_reserved = 0;
}

static void body_refuse(http_server *s, http_request *r, int64_t bytes)
{
    atomic_fetch_add(&s->metrics.rejected[HTTP_REJECT_BODY_MEMORY], 1);
    http_respond_error(r, 503, "overloaded",
                       "the server is at capacity (request bodies: %lld of %lld bytes held; "
                       "this one needs %lld more)",
                       (long long)atomic_load(&s->body_bytes), (long long)s->cfg.max_body_memory,
                       (long long)bytes);
    r->retry_after_s = 1;
}

static int valid_request_id(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n > 64) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return 0;
    }
    return 1;
}

/* The length of header value v without trailing spaces and tabs, which are not part of a
 * field value (RFC 9110 5.5); libmicrohttpd strips the leading ones only. */
static size_t header_value_len(const char *v)
{
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    return n;
}

/* Copies header `name` into out ("" when absent); returns whether it was there. */
static int copy_header(struct MHD_Connection *conn, const char *name, char *out, size_t cap)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
    snprintf(out, cap, "%.*s", v ? (int)header_value_len(v) : 0, v ? v : "");
    return v != NULL;
}

/* The client's address, for the log. */
static void set_remote(http_request *r, struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, r->remote,
                      sizeof r->remote);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, r->remote,
                      sizeof r->remote);
    }
}

/* A new request id: this process's random prefix and a counter. */
static void new_request_id(http_server *s, http_request *r)
{
    snprintf(r->id, sizeof r->id, "%s-%llx", s->id_prefix,
             (unsigned long long)atomic_fetch_add(&s->id_counter, 1));
}

/* What libmicrohttpd does not check in a request's headers: how many Content-Length and
 * Transfer-Encoding lines came. */
typedef struct header_scan {
    int content_length, transfer_encoding;
} header_scan;

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    header_scan *h = cls;
    (void)kind;
    (void)key_size;
    (void)value;
    (void)value_size;
    if (strcasecmp(key, "Content-Length") == 0) h->content_length++;
    if (strcasecmp(key, "Transfer-Encoding") == 0) h->transfer_encoding++;
    return MHD_YES;
}

/* A request whose body a front proxy could delimit otherwise than libmicrohttpd does (RFC
 * 9112 6.1, 6.3): Content-Length with Transfer-Encoding (we read chunks, a proxy may read
 * the length: what follows is a request smuggled past it), Content-Length twice, a coding
 * other than chunked (libmicrohttpd then reads a body of unknown length until the client
 * closes: no answer, and any request after it becomes its body), Transfer-Encoding twice.
 * Answered 400 before the body is read; libmicrohttpd then closes the connection, so nothing
 * after it on that connection is read as a request. Returns 1 when refused. */
static int refuse_framing(http_request *r, struct MHD_Connection *conn)
{
    header_scan h = {0};
    MHD_get_connection_values_n(conn, MHD_HEADER_KIND, scan_header, &h);
    const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding");
    if (h.content_length > 1) {
        http_respond_error(r, 400, "bad_request", "Content-Length is given more than once");
    } else if (h.transfer_encoding && h.content_length) {
        http_respond_error(r, 400, "bad_request",
                           "Content-Length and Transfer-Encoding together: send one of them");
    } else if (h.transfer_encoding > 1 ||
               (te && !(header_value_len(te) == 7 && strncasecmp(te, "chunked", 7) == 0))) {
        http_respond_error(r, 400, "bad_request",
                           "the only Transfer-Encoding accepted is chunked, alone");
    } else {
        return 0;
    }
    return 1;
}

/* Whether the request has a body to come: a Content-Length other than 0, or chunked. */
static int announces_body(struct MHD_Connection *conn)
{
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding");
    if (te) return 1;
    if (!cl) return 0;
    while (*cl == ' ' || *cl == '\t' || *cl == '0')
        cl++;
    return *cl >= '1' && *cl <= '9';
}

/* The 503 of a /v1 request before the server is ready: what is still loading. */
static void respond_loading(http_server *s, http_request *r)
{
    int models = atomic_load(&s->models_loaded), gallery = atomic_load(&s->gallery_loaded);
    atomic_fetch_add(&s->metrics.rejected[HTTP_REJECT_NOT_READY], 1);
    http_respond_error(r, 503, "not_ready", "the service is starting (loading %s)",
                       !models && !gallery ? "the models and the gallery"
                       : !models           ? "the models"
                                           : "the gallery");
    r->retry_after_s = 1;
}

/* DNS rebinding (hosts.c): while the API is open, a browser may reach it only by IP address,
 * localhost or a name in --allowed-hosts. Returns 1 when refused. */
static int refuse_host(http_server *s, http_request *r, struct MHD_Connection *conn,
                       const http_route *route)
{
    /* Until the store is loaded (load_store) whether keys exist is not known: counted as keys,
     * so that a keyed server's clients get the 503 of loading, not a 403, and only a list set
     * is checked meanwhile (nothing under /v1 is answered before then anyway). */
    int keys = !atomic_load(&s->gallery_loaded) || atomic_load(&s->auth_required);
    if (!http_route_host_checked(route, s->cfg.allowed_hosts, keys)) return 0;
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
    if (http_host_allowed(s->cfg.allowed_hosts, host)) return 0;
    int n = (int)header_value_len(host);
    if (n > 100) n = 100;
    int name = (int)strcspn(host, ":"); /* the suggestion without the port */
    if (name > n) name = n;
    if (s->cfg.allowed_hosts[0])
        http_respond_error(r, 403, "host_not_allowed",
                           "Host %.*s is not in --allowed-hosts: a web page on another site "
                           "could be using DNS rebinding. If this is your name for the server, "
                           "add %.*s to --allowed-hosts (or VULTUS_ALLOWED_HOSTS)",
                           n, host, name, host);
    else
        http_respond_error(r, 403, "host_not_allowed",
                           "Host %.*s is not allowed while the server has no API key: a web page "
                           "on another site could be using DNS rebinding. If this is your name "
                           "for the server, start it with --allowed-hosts %.*s (or "
                           "VULTUS_ALLOWED_HOSTS; '*' allows any name), use its IP address, or "
                           "create an API key",
                           n, host, name, host);
    return 1;
}

/* The checks done when the headers are complete. Returns 0 to go on reading the body, or 1
 * when r already has its (error) response. */
static int on_headers(http_server *s, http_request *r, struct MHD_Connection *conn,
                      const char *method)
{
    r->conn = conn;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    r->hc = ci ? ci->socket_context : NULL;
    snprintf(r->method, sizeof r->method, "%s", method);

    const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (rid && valid_request_id(rid)) {
        snprintf(r->id, sizeof r->id, "%s", rid);
    } else {
        new_request_id(s, r);
    }
    set_remote(r, conn);
    if (refuse_framing(r, conn)) return 1;
    copy_header(conn, "Content-Type", r->content_type, sizeof r->content_type);
    r->idempotency_key_sent =
        copy_header(conn, "Idempotency-Key", r->idempotency_key, sizeof r->idempotency_key);

    /* Route. The path is matched raw (percent-encoded) so an encoded '/' stays inside its
     * segment; captures are decoded by the matcher. */
    char *q = strchr(r->uri, '?');
    r->path_len = q ? (size_t)(q - r->uri) : strlen(r->uri);
    r->query = q ? q + 1 : "";
    const char *match_method = strcmp(method, "HEAD") == 0 ? "GET" : method;
    r->route = http_route_match(match_method, r->uri, r->path_len, r->caps, &r->n_caps);
    if (r->route == -1) {
        int n = (int)(r->path_len > 200 ? 200 : r->path_len);
        http_respond_error(r, 404, "not_found", "no route %.*s", n, r->uri);
        return 1;
    }
    if (r->route == -2) {
        /* Say what the path does take, in the message for a person and in Allow (which HTTP
         * requires on a 405) for a program. */
        if (http_route_methods(r->uri, r->path_len, r->allow, sizeof r->allow) <= 0)
            r->allow[0] = '\0';
        http_respond_error(r, 405, "method_not_allowed", "%s is not allowed on this path; use %s",
                           method, r->allow[0] ? r->allow : "another method");
        return 1;
    }
    if (r->route < 0) {
        http_respond_error(r, 400, "bad_request", "a malformed path segment");
        return 1;
    }
    const http_route *route = &http_routes[r->route];
    if (refuse_host(s, r, conn, route)) return 1;

    /* Declared body size: refuse before reading a byte of it. */
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (cl) {
        char *end = NULL;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (!errno && end != cl && (uint64_t)n > (uint64_t)s->cfg.max_body_bytes) {
            http_respond_error(r, 413, "body_too_large",
                               "the body is %llu bytes; the limit is %lld", n,
                               (long long)s->cfg.max_body_bytes);
            return 1;
        }
        /* libmicrohttpd refused a malformed one before this call; this is the length it
         * reads. */
        if (!errno && end != cl) r->content_length = (int64_t)n;
    }

    if (route->scope) {
        /* The keys are read with the gallery, in the background (load_store): until then no
         * key can be checked, and nothing under /v1 answered. */
        if (!atomic_load(&s->gallery_loaded)) {
            respond_loading(s, r);
            return 1;
        }
        /* Authentication, then authorisation, then the key's rate limit. */
        if (atomic_load(&s->auth_required)) {
            const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
            if (!auth || strncasecmp(auth, "Bearer ", 7) != 0 || !auth[7]) {
                http_respond_error(r, 401, "unauthorized",
                                   "this server needs an API key: Authorization: Bearer KEY");
                return 1;
            }
            const char *start = auth + 7;
            while (*start == ' ')
                start++;
            /* Trailing spaces and tabs are not part of the value (RFC 9110 5.5): "Bearer KEY "
             * is KEY. Nothing longer than a key can be one. */
            char token[HTTP_KEY_MAX];
            size_t token_len = header_value_len(start);
            if (token_len < sizeof token) {
                memcpy(token, start, token_len);
                token[token_len] = '\0';
            }
            double retry = 0;
            double burst = s->cfg.rate_burst ? s->cfg.rate_burst : 2 * s->cfg.rate_limit;
            if (burst < 1) burst = 1;
            if (token_len >= sizeof token || http_keystore_check(s->keys, token, s->cfg.rate_limit,
                                                                 burst, &r->key, &retry) != 0) {
                /* Revoked keys are deleted, so this cannot tell them from mistyped ones; a
                 * person whose key was revoked should still recognise the case. */
                http_respond_error(r, 401, "unauthorized",
                                   "unknown API key (mistyped, or revoked): check it, or ask "
                                   "for a new one (vultus keys create)");
                return 1;
            }
            r->authenticated = 1;
            if (r->key.scope < route->scope) {
                http_respond_error(r, 403, "forbidden",
                                   "this route needs a key with scope %s; "
                                   "this key has %s",
                                   http_scope_name(route->scope), http_scope_name(r->key.scope));
                return 1;
            }
            if (r->key.collection[0] && r->n_caps > 0 &&
                strncmp(route->pattern, "/v1/collections/", 16) == 0 &&
                strcmp(r->caps[0], r->key.collection) != 0) {
                http_respond_error(r, 403, "forbidden", "this key is limited to collection %s",
                                   r->key.collection);
                return 1;
            }
            if (r->key.collection[0] && strcmp(route->pattern, "/v1/collections") == 0 &&
                strcmp(route->method, "POST") == 0) {
                http_respond_error(r, 403, "forbidden", "this key is limited to collection %s",
                                   r->key.collection);
                return 1;
            }
            if (retry > 0) {
                atomic_fetch_add(&s->metrics.rejected[HTTP_REJECT_RATE_LIMITED], 1);
                http_respond_error(r, 429, "rate_limited", "this key is over its rate limit");
                /* The wait is 1 / rate: with a very low --rate-limit (1e-12 is accepted) it
                 * does not fit an int, and the conversion (undefined) gave INT_MIN, so the 429
                 * went without Retry-After. A day at most: the client asks again then. */
                r->retry_after_s =
                    retry >= RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : (int)ceil(retry);
                return 1;
            }
        }
        if (!atomic_load(&s->ready)) {
            respond_loading(s, r);
            return 1;
        }
    }

    /* The deadline: how long the request may wait before it starts. */
    int deadline_ms = s->cfg.deadline_ms;
    const char *dl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Deadline-Ms");
    if (dl) {
        char *end = NULL;
        errno = 0;
        long v = strtol(dl, &end, 10);
        if (errno || end == dl || end != dl + header_value_len(dl) || v < 1 ||
            v > s->cfg.max_deadline_ms) {
            http_respond_error(r, 400, "bad_request",
                               "X-Request-Deadline-Ms must be an integer in [1, %d]",
                               s->cfg.max_deadline_ms);
            return 1;
        }
        deadline_ms = (int)v;
    }
    r->deadline_ns = r->t_start_ns + (uint64_t)deadline_ms * 1000000u;

    /* Last, so that only a request otherwise accepted holds a part of the budget. */
    if (r->content_length > 0 && body_reserve(s, r, r->content_length) != 0) {
        body_refuse(s, r, r->content_length);
        return 1;
    }
    return 0;
}

/* Drops what r holds of its body and gives the bytes back to the budget. */
static void body_drop(http_server *s, http_request *r)
{
    free(r->body);
    r->body = NULL;
    r->body_len = r->body_cap = 0;
    body_release(s, r);
}

static int append_body(http_server *s, http_request *r, const char *data, size_t len)
{
    if (r->body_overflow || r->body_over_budget) return 0;
    if ((uint64_t)r->body_len + len > (uint64_t)s->cfg.max_body_bytes) {
        r->body_overflow = 1;
        body_drop(s, r);
        return 0;
    }
    if (r->body_len + len + 1 > r->body_cap) {
        size_t cap;
        if (r->content_length >= 0) {
            /* Declared (and reserved): one allocation of that size (libmicrohttpd delivers
             * no more than Content-Length). */
            cap = (size_t)r->content_length + 1;
        } else {
            cap = r->body_cap ? r->body_cap : 16384;
            while (cap < r->body_len + len + 1)
                cap *= 2;
            if (cap > (size_t)s->cfg.max_body_bytes + 1) cap = (size_t)s->cfg.max_body_bytes + 1;
            /* Chunked: the buffer's bytes count as it grows (the terminating NUL aside, so a
             * body of exactly --max-body-bytes fits a budget of that size). */
            int64_t more = (int64_t)cap - 1 - r->body_reserved;
            if (body_reserve(s, r, more) != 0) {
                r->body_over_budget = 1;
                body_refuse(s, r, more);
                body_drop(s, r);
                return 0;
            }
        }
        if (r->body_len + len + 1 > cap) return -1; /* more than declared: cannot happen */
        uint8_t *p = realloc(r->body, cap);
        if (!p) return -1;
        r->body = p;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
    r->body[r->body_len] = '\0'; /* JSON parsers may read it as text */
    return 0;
}

static void *metrics_main(void *arg)
{
    http_request *r = arg;
    http_api_metrics(r, NULL);
    finish_on_worker(r); /* the event loop owns r again */
    return NULL;
}

/*
 * /metrics reads every collection's sizes from the store, and a store can block: a PostgreSQL
 * server that stops answering (a network partition) holds a query until TCP gives up, minutes.
 * On the event loop that froze every connection, /healthz and /v1/detect included, for as long
 * as the scrape waited. So a scrape runs on a thread of its own while its connection is
 * suspended, as a queued request does on a worker (not on a worker: a scrape must not wait
 * behind the queue, which is when its figures matter most). Scrapes come every few seconds;
 * while the store is stuck, each holds its thread and connection until it answers.
 */
static enum MHD_Result metrics_off_loop(http_request *r)
{
    MHD_suspend_connection(r->conn);
    atomic_store(&r->state, HTTP_REQ_QUEUED);
    pthread_attr_t attr;
    pthread_t thread;
    int started = pthread_attr_init(&attr) == 0;
    if (started) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        started = pthread_create(&thread, &attr, metrics_main, r) == 0;
        pthread_attr_destroy(&attr);
    }
    if (!started) metrics_main(r); /* no thread to be had: render here, as before */
    return MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    http_server *s = cls;
    http_request *r = *con_cls;
    (void)url;
    (void)version;
    if (!r) return MHD_NO; /* on_uri could not allocate: close */

    if (atomic_load(&r->state) == HTTP_REQ_DONE) return send_response(r);

    if (!r->conn) {
        if (on_headers(s, r, conn, method)) {
            if (r->hc) atomic_store(&r->hc->busy, 1);
            /* Answered from the headers: libmicrohttpd closes the connection with the body
             * unread, so it closes lingering (linger.c). */
            if (r->hc && announces_body(conn)) r->hc->linger = 1;
            atomic_store(&r->state, HTTP_REQ_DONE);
            return send_response(r);
        }
        return MHD_YES;
    }

    if (*upload_data_size) {
        if (append_body(s, r, upload_data, *upload_data_size) != 0) return MHD_NO;
        *upload_data_size = 0;
        return MHD_YES;
    }

    /* The whole request is here. */
    if (r->hc) atomic_store(&r->hc->busy, 1);
    if (r->body_overflow) {
        http_respond_error(r, 413, "body_too_large", "the body is larger than %lld bytes",
                           (long long)s->cfg.max_body_bytes);
        atomic_store(&r->state, HTTP_REQ_DONE);
        return send_response(r);
    }
    if (r->body_over_budget) { /* the 503 was set when the budget ran out (append_body) */
        atomic_store(&r->state, HTTP_REQ_DONE);
        return send_response(r);
    }
    const http_route *route = &http_routes[r->route];
    if (route->handler == http_api_metrics) return metrics_off_loop(r);
    if (!route->queued) {
        route->handler(r, NULL);
        atomic_store(&r->state, HTTP_REQ_DONE);
        return send_response(r);
    }
    if (admit(s, r)) return MHD_YES;
    atomic_store(&r->state, HTTP_REQ_DONE);
    return send_response(r);
}

/* Whether a request is a probe or a scrape that answered as expected: Kubernetes' probes and
 * Prometheus call /healthz, /readyz and /metrics every few seconds on every replica (about 114
 * lines per 10 s), which buried the requests that matter. Those are logged at debug; a
 * /readyz 503 (the pod leaves the Service) or a failed scrape is news and stays at info. */
static int routine_request(const http_request *r, enum MHD_RequestTerminationCode toe)
{
    if (r->route < 0 || r->status < 200 || r->status > 299) return 0;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) return 0;
    http_handler h = http_routes[r->route].handler;
    return h == http_api_healthz || h == http_api_readyz || h == http_api_metrics;
}

static void log_request(http_server *s, http_request *r, enum MHD_RequestTerminationCode toe,
                        double ms)
{
    int level = routine_request(r, toe) ? BASE_LOG_DEBUG : BASE_LOG_INFO;
    if (level < base_log_level) return;
    json_t *o = json_object();
    if (!o) return;
    char path[256];
    size_t n = r->path_len ? r->path_len : strlen(r->uri);
    snprintf(path, sizeof path, "%.*s", (int)(n < 255 ? n : 255), r->uri);
    utf8_sanitize(path); /* raw bytes of the request line: JSON needs UTF-8 */
    json_object_set_new(o, "level", json_string(level == BASE_LOG_DEBUG ? "debug" : "info"));
    json_object_set_new(o, "msg", json_string("request"));
    json_object_set_new(o, "id", json_string(r->id[0] ? r->id : "-"));
    char method[sizeof r->method];
    snprintf(method, sizeof method, "%s", r->method[0] ? r->method : "-");
    utf8_sanitize(method); /* any bytes but space; jansson refused the field if not UTF-8 */
    json_object_set_new(o, "method", json_string(method));
    json_object_set_new(o, "path", json_stringn(path, strlen(path)));
    if (r->route >= 0) json_object_set_new(o, "route", json_string(http_routes[r->route].pattern));
    json_object_set_new(o, "status", json_integer(r->status));
    json_object_set_new(o, "ms", json_real(ms));
    if (r->t_started_ns)
        json_object_set_new(o, "queue_ms",
                            json_real((double)(r->t_started_ns - r->t_enqueued_ns) / 1e6));
    json_object_set_new(o, "bytes_in", json_integer((json_int_t)r->body_len));
    json_object_set_new(o, "remote", json_string(r->remote));
    if (r->authenticated) json_object_set_new(o, "key", json_string(r->key.id));
    if (r->faces >= 0) json_object_set_new(o, "faces", json_integer(r->faces));
    if (r->error[0]) json_object_set_new(o, "error", json_string(r->error));
    if (r->log_fields) json_object_update_missing(o, r->log_fields); /* never over ours */
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        json_object_set_new(o, "aborted", json_integer((json_int_t)toe));
    (void)s;
    log_json(o);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    http_server *s = cls;
    http_request *r = *con_cls;
    *con_cls = NULL;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    http_conn *hc = ci ? ci->socket_context : NULL;
    if (hc) {
        atomic_store(&hc->window_ns, base_now_ns());
        atomic_store(&hc->busy, 0);
    }
    if (!r) return;
    if (!r->status) {
        /* libmicrohttpd refused the request itself (a header block over the connection's
         * memory limit: 431; a malformed header line or Content-Length: 400, before our
         * handler saw the headers; a malformed chunk of the body: 400, after) and sent its
         * own short answer, which cannot carry our headers. It is still a request: logged
         * with its status and counted. (No status: the client went away first.) */
        const union MHD_ConnectionInfo *st =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS);
        if (st && st->http_status >= 400) {
            r->status = (int)st->http_status;
            snprintf(r->error, sizeof r->error, "malformed_request");
        }
        if (!r->id[0]) new_request_id(s, r);
        if (!r->remote[0]) set_remote(r, conn);
    }
    double seconds = (double)(base_now_ns() - r->t_start_ns) * 1e-9;
    int route = r->route >= 0 ? r->route : http_route_count;
    if (r->status >= HTTP_STATUS_MIN && r->status <= HTTP_STATUS_MAX) {
        atomic_fetch_add_explicit(&s->metrics.requests[route][r->status - HTTP_STATUS_MIN], 1,
                                  memory_order_relaxed);
        http_histogram_observe_seconds(&s->metrics.latency[route], seconds);
    }
    if (r->has_timing) {
        const face_timing *t = &r->timing;
        double ms[] = {t->decode_ms, t->detect_ms,     t->landmarks_ms, t->align_ms,
                       t->embed_ms,  t->attributes_ms, t->liveness_ms};
        for (int i = 0; i < 7; i++)
            if (ms[i] > 0)
                http_histogram_observe_seconds(&s->metrics.stage[HTTP_STAGE_DECODE + i],
                                               ms[i] * 1e-3);
    }
    log_request(s, r, toe, seconds * 1e3);
    body_release(s, r); /* every end: answered, refused, client gone, timed out, drained */
    free(r->uri);
    free(r->body);
    free(r->resp);
    json_decref(r->log_fields);
    free(r);
    atomic_fetch_sub(&s->in_flight, 1);
}

/* ---- start-up: models and store in the background, in parallel ------------------------- */

/*
 * The port opens first (/healthz 200, /readyz 503 with what is still loading), then two
 * threads load what the /v1 routes need, side by side on the cores: the models, and the store
 * (the gallery reads every face into its index: 0.2-0.9 s at 100k faces, docs/gallery.md).
 * Serially, store then port then models, start to /readyz 200 was their sum (1.3-1.7 s at
 * 100k on a busy machine) and /healthz did not answer meanwhile.
 */

/* A loader failed: logged, and the first failure's message is what `serve` exits with (the
 * main loop watches load_failed). */
static void load_fail(http_server *s, int rc, const char *what, const char *where,
                      const char *reason)
{
    log_event(BASE_LOG_ERROR, what,
              json_pack("{s:s,s:s,s:s}", "from", where, "error", reason ? reason : base_strerror(rc),
                        "detail", base_error_message()));
    if (atomic_exchange(&s->load_error_taken, 1)) return;
    const char *detail = base_error_message();
    if (strstr(detail, where)) /* the detail names the store or the folder already */
        snprintf(s->load_error, sizeof s->load_error, "%s: %s", what, detail);
    else
        snprintf(s->load_error, sizeof s->load_error, "%s (%s): %s", what, where, detail);
    atomic_store(&s->load_failed, 1);
}

/* A loader is done: the last of the two makes the server ready. */
static void load_done(http_server *s)
{
    if (atomic_fetch_add(&s->loads_done, 1) != 1) return;
    atomic_store(&s->ready, 1);
    log_event(BASE_LOG_INFO, "ready",
              json_pack("{s:f,s:i,s:s}", "start_ms", (double)(base_now_ns() - s->start_ns) / 1e6,
                        "workers", s->n_workers, "embedder", s->embedder_id));
}

/*
 * The "error" of a models folder that cannot be used: what the system says of it (no such
 * file or directory, not a directory, permission denied) into buf, or NULL when the folder is
 * fine and a model in it is at fault. face_models_load reports the folder as BASE_ERR_IO, so
 * the field read "input/output error", which sent people looking at disks rather than at the
 * missing volume or its mode; the detail field had the reason, the field that alerts match on
 * did not.
 */
static const char *models_folder_reason(const char *dir, char *buf, size_t cap)
{
    struct stat st;
    int e = stat(dir, &st) != 0              ? errno
            : !S_ISDIR(st.st_mode)           ? ENOTDIR
            : access(dir, R_OK | X_OK) != 0 ? errno
                                             : 0;
    if (!e) return NULL;
    snprintf(buf, cap, "%s", strerror(e));
    buf[0] = (char)tolower((unsigned char)buf[0]); /* as base_strerror's texts */
    return buf;
}

static void *load_models(void *arg)
{
    http_server *s = arg;
    uint64_t t0 = base_now_ns();
    face_models_options o = {.models_dir = s->cfg.models_dir};
    int rc = face_models_load(&o, &s->models);
    for (int i = 0; !rc && i < s->n_workers; i++)
        rc = face_context_create(s->models, s->cfg.batch_max, &s->workers[i].face);
    if (rc) {
        char reason[128];
        load_fail(s, rc, "cannot load the models", s->cfg.models_dir,
                  models_folder_reason(s->cfg.models_dir, reason, sizeof reason));
    } else {
        atomic_store(&s->models_loaded, 1);
        log_event(BASE_LOG_INFO, "models loaded",
                  json_pack("{s:f,s:i}", "load_ms", (double)(base_now_ns() - t0) / 1e6,
                            "workers", s->n_workers));
        load_done(s);
    }
    atomic_fetch_sub(&s->loaders_running, 1);
    return NULL;
}

/* The service manager's READY=1 with what `systemctl status` shows (notify.h): the gallery's
 * counts, read here, on the loader's thread, because the main loop must never wait on the store
 * (a PostgreSQL store replays its change log on every read). */
static void ready_message(http_server *s)
{
    uint64_t faces = 0;
    struct gal_collection_info *list = NULL;
    size_t count = 0;
    if (getenv("NOTIFY_SOCKET") && gal_collection_list(s->gal, &list, &count) == 0) {
        for (size_t i = 0; i < count; i++)
            faces += list[i].face_count;
        free(list);
    }
    http_notify_ready_message(s->notify_ready, sizeof s->notify_ready, faces, count);
}

/* The gallery first: it creates or migrates the file and refuses a foreign one, then the key
 * tables go into it (keys.c, open_for_cli, does the same). */
static void *load_store(void *arg)
{
    http_server *s = arg;
    uint64_t t0 = base_now_ns();
    const struct gal_options gallery_options = {
        .ann_min_faces = (uint64_t)s->cfg.ann_min_faces, /* 0: never */
        .ann_ef_search = (unsigned)s->cfg.ann_ef_search,
        .ann_build_threads = (unsigned)s->cfg.ann_build_threads,
    };
    char shown[512];
    gal_location_redact(s->db_path, shown, sizeof shown); /* a URL may hold a password */
    int rc = gal_open(s->db_path, &gallery_options, &s->gal);
    if (!rc) rc = http_keystore_open(s->db_path, &s->keys);
    if (rc) {
        load_fail(s, rc, "cannot open the store", shown, NULL);
        atomic_fetch_sub(&s->loaders_running, 1);
        return NULL;
    }
    s->db_watched = !s->cfg.store[0] && stat(s->db_path, &s->db_file) == 0;
    int keys = http_keystore_count(s->keys) > 0;
    atomic_store(&s->auth_required, keys);
    ready_message(s); /* before gallery_loaded: the main loop sends it once ready */
    atomic_store(&s->gallery_loaded, 1);
    log_event(BASE_LOG_INFO, "store loaded",
              json_pack("{s:f,s:s}", "load_ms", (double)(base_now_ns() - t0) / 1e6, "store",
                        shown));
    if (!keys)
        log_event(BASE_LOG_WARN,
                  "no API keys exist: the API is open to anyone who can reach it "
                  "(create one with: vultus keys create --scope admin); browsers only by IP "
                  "address, localhost or a name in --allowed-hosts",
                  json_pack("{s:s}", "allowed_hosts", s->cfg.allowed_hosts));
    load_done(s);
    atomic_fetch_sub(&s->loaders_running, 1);
    return NULL;
}

/* ---- create / run / destroy ------------------------------------------------------------- */

static int parse_listen(const char *listen, struct sockaddr_storage *addr, socklen_t *len)
{
    const char *colon = strrchr(listen, ':');
    char host[256];
    size_t hl = (size_t)(colon - listen);
    if (hl >= sizeof host) return base_error_set(BASE_ERR_INVALID, "--listen %s", listen);
    memcpy(host, listen, hl);
    host[hl] = '\0';
    char *h = host;
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h[hl - 1] = '\0';
        h++;
    }
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    if (!h[0]) hints.ai_family = AF_INET;
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(h[0] ? h : NULL, colon + 1, &hints, &res);
    if (rc != 0 || !res)
        return base_error_set(BASE_ERR_INVALID, "--listen %s: %s", listen, gai_strerror(rc));
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/*
 * The listening socket, opened here rather than by libmicrohttpd so that a failure names its
 * cause: libmicrohttpd only returns NULL, and "address in use?" was the guess for every
 * failure, a port below 1024 without the privilege included (a container's non-root user with
 * VULTUS_LISTEN=:80). The options are libmicrohttpd's own for a socket it opens: address reuse
 * (a restart is not refused while the old connections sit in TIME_WAIT; a port another process
 * listens on is still refused), IPv6 only on an IPv6 address, non-blocking, the backlog.
 */
static int open_listener(const char *listen_text, const struct sockaddr_storage *addr,
                         socklen_t len, int *out)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return base_error_set(BASE_ERR_IO, "cannot listen on %s: %s", listen_text, strerror(errno));
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (addr->ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
    if (bind(fd, (const struct sockaddr *)addr, len) != 0 || listen(fd, 1024) != 0) {
        int e = errno;
        close(fd);
        if (e == EADDRINUSE)
            return base_error_set(BASE_ERR_IO,
                                  "cannot listen on %s: address in use (another process listens "
                                  "there)",
                                  listen_text);
        const char *hint = e == EACCES          ? " (a port below 1024 needs root or "
                                                  "CAP_NET_BIND_SERVICE: use a higher one)"
                           : e == EADDRNOTAVAIL ? " (no interface of this host has that address)"
                                                : "";
        return base_error_set(BASE_ERR_IO, "cannot listen on %s: %s%s", listen_text, strerror(e),
                              hint);
    }
    *out = fd;
    return 0;
}

int http_server_create(const http_config *config, http_server **out)
{
    *out = NULL;
    /* A budget below one largest body would refuse that body with a 503 for ever: retrying
     * cannot help, so it is a configuration error, not a load to shed. */
    if (config->max_body_memory < config->max_body_bytes)
        return base_error_set(BASE_ERR_INVALID,
                              "--max-body-memory %lld is below --max-body-bytes %lld: a body of "
                              "the largest size could never be accepted",
                              (long long)config->max_body_memory,
                              (long long)config->max_body_bytes);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    http_server *s = calloc(1, sizeof *s);
    if (!s) return base_error_set(BASE_ERR_NOMEM, "server");
    s->start_ns = base_now_ns();
    s->cfg = *config;
    s->listen_fd = -1;
    pthread_mutex_init(&s->qlock, NULL);
    pthread_cond_init(&s->qcond, NULL);
    pthread_mutex_init(&s->conn_lock, NULL);
    pthread_mutex_init(&s->gallery_metrics_lock, NULL);
    s->cost_ewma_ms[0] = 2;
    s->cost_ewma_ms[1] = 100;
    s->prepare_ewma_ms = 20;
    s->embedder_id = face_embedder_id(FACE_EMBEDDER_DEFAULT);
    s->embedding_dim = face_embedding_dim(FACE_EMBEDDER_DEFAULT);
    s->default_threshold = face_threshold_at_far(FACE_EMBEDDER_DEFAULT, FACE_DECISION_FAR);
    uint8_t rnd[4];
    if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        memcpy(rnd, &(uint32_t){(uint32_t)base_now_ns()}, 4);
    http_hex(rnd, 4, s->id_prefix);

    int rc;
    /* The store: the PostgreSQL database replicas share (--store URL), else DATA/vultus.db. */
    const char *store = s->cfg.store[0] ? s->cfg.store : NULL;
    /* The folder holds faces (thumbnails, embeddings) and the key hashes: its owner's only. */
    if (!store && mkdir(s->cfg.data_dir, 0700) != 0 && errno != EEXIST) {
        rc = base_error_set(BASE_ERR_IO, "data folder %s: %s", s->cfg.data_dir, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (!store && stat(s->cfg.data_dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
        /* else SQLite's "unable to open database file" about DATA/vultus.db */
        rc = base_error_set(BASE_ERR_IO, "data folder %s: %s", s->cfg.data_dir, strerror(ENOTDIR));
        goto fail;
    }
    if ((rc = http_store_path(store ? store : s->cfg.data_dir, s->db_path, sizeof s->db_path)))
        goto fail;
    s->n_workers = s->cfg.workers;
    if (s->n_workers <= 0) {
        /* The CPUs this process may run on, not the machine's: a container given a CPU set
         * (docker --cpuset-cpus, Kubernetes' static CPU manager) or `taskset`, or a CPU
         * limit (a cgroup quota), would otherwise get a worker per CPU of the node, all
         * competing for the few it has (and each with its own model contexts in memory). */
        s->n_workers = http_available_cpus("");
    }
    /* The store's checks (store_check) begin once it is loaded; until then /readyz says the
     * gallery is loading. */
    atomic_store(&s->store_ok, 1);

    s->workers = calloc((size_t)s->n_workers, sizeof *s->workers);
    if (!s->workers) {
        rc = base_error_set(BASE_ERR_NOMEM, "workers");
        goto fail;
    }
    for (int i = 0; i < s->n_workers; i++) {
        s->workers[i].srv = s;
        s->workers[i].index = i;
        s->workers[i].slots = calloc((size_t)s->cfg.batch_max, sizeof *s->workers[i].slots);
        s->workers[i].slices = calloc((size_t)s->cfg.batch_max, sizeof *s->workers[i].slices);
        if (!s->workers[i].slots || !s->workers[i].slices) {
            rc = base_error_set(BASE_ERR_NOMEM, "workers");
            goto fail;
        }
        if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0) {
            rc = base_error_set(BASE_ERR_BACKEND, "cannot start worker %d", i);
            goto fail;
        }
        s->workers[i].thread_started = 1;
    }

    if ((rc = http_linger_start(&s->linger))) goto fail;

    struct sockaddr_storage addr;
    socklen_t addr_len = 0;
    if ((rc = parse_listen(s->cfg.listen, &addr, &addr_len))) goto fail;
    int listener = -1;
    if ((rc = open_listener(s->cfg.listen, &addr, addr_len, &listener))) goto fail;
    unsigned flags =
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (addr.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    unsigned timeout_s = (unsigned)((s->cfg.read_timeout_ms + 999) / 1000) + 30;
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, s, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)listener,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)s->cfg.max_connections, MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_logger, NULL, MHD_OPTION_END);
    if (!s->daemon) {
        /* The socket is not closed here: libmicrohttpd may have closed it on its way out, and
         * a second close could hit a descriptor opened since; the process exits anyway. */
        rc = base_error_set(BASE_ERR_IO, "cannot start the HTTP server on %s", s->cfg.listen);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : 0;

    /* The store first: at scale it is the longer of the two. */
    atomic_store(&s->loaders_running, 2);
    if (pthread_create(&s->store_loader, NULL, load_store, s) != 0) {
        atomic_store(&s->loaders_running, 0);
        rc = base_error_set(BASE_ERR_BACKEND, "cannot start the store loader");
        goto fail;
    }
    s->store_loader_started = 1;
    if (pthread_create(&s->model_loader, NULL, load_models, s) != 0) {
        atomic_fetch_sub(&s->loaders_running, 1);
        rc = base_error_set(BASE_ERR_BACKEND, "cannot start the model loader");
        goto fail;
    }
    s->model_loader_started = 1;

    log_event(BASE_LOG_INFO, "listening",
              json_pack("{s:s,s:i,s:i,s:i,s:s,s:s}", "listen", s->cfg.listen, "port", s->port,
                        "workers", s->n_workers, "queue", s->cfg.queue, "data", s->cfg.data_dir,
                        "models", s->cfg.models_dir));
    char unknown[512];
    int n_unknown = http_config_unknown_env(unknown, sizeof unknown);
    if (n_unknown)
        log_event(BASE_LOG_WARN,
                  "VULTUS_* variables that vultus does not read were ignored (a misspelt "
                  "option keeps its default: see vultus serve --help)",
                  json_pack("{s:s,s:i}", "variables", unknown, "count", n_unknown));
    if (s->cfg.grace_ms > 0 && s->cfg.grace_ms >= s->cfg.drain_timeout_ms)
        log_event(BASE_LOG_WARN,
                  "--grace-ms is not below --drain-timeout-ms: after SIGTERM new connections "
                  "are accepted until the drain timeout, and requests still running then are "
                  "cut off",
                  json_pack("{s:i,s:i}", "grace_ms", s->cfg.grace_ms, "drain_timeout_ms",
                            s->cfg.drain_timeout_ms));
    *out = s;
    return 0;
fail:
    http_server_destroy(s);
    return rc;
}

int http_server_port(const http_server *s)
{
    return s->port;
}

static uint64_t ms_to_ns(int ms)
{
    return (uint64_t)ms * 1000000u;
}

/*
 * The store check, once a second on a thread of its own: the API keys reloaded (one query:
 * the store answers), the SQLite file still the one opened, other processes' gallery changes
 * replayed. It ran on the main loop, and a store that hangs (a PostgreSQL server behind a
 * network partition: a query waits until TCP gives up, minutes) held the main loop with it:
 * /readyz went on saying 200 from the last check, and SIGTERM was not acted on, so the drain
 * never started and the kubelet's SIGKILL cut off whatever was in flight. Now the main loop
 * only watches the checks: none finished for STORE_CHECK_TIMEOUT_NS counts as a store that
 * does not answer.
 */
#define STORE_CHECK_TIMEOUT_NS 5000000000u

typedef struct store_checker {
    http_server *srv;
    pthread_t thread;
    pthread_mutex_t lock; /* guards stop; cond wakes the thread to stop */
    pthread_cond_t cond;
    int stop;
    _Atomic uint64_t done_ns; /* when the last check finished */
    atomic_int result;        /* whether the store answered it */
    atomic_int busy;          /* a check is running */
    int db_lost; /* the SQLite file (s->db_file) was deleted or replaced; checker thread only */
    /* The last check's failures and when the store began failing (0: it answers); checker
     * thread only: the warnings are logged when an outage begins and ends, not every second. */
    int keys_failing, refresh_failing;
    uint64_t failing_since_ns;
} store_checker;

/* Whether `path` is still the file `opened` describes. SQLite keeps reading and writing a
 * database file deleted (or replaced) under it through its open descriptor, and nothing fails:
 * every enrolment is acknowledged, and lost at the next start, which opens (or creates) what
 * the path names now. */
static int same_file(const char *path, const struct stat *opened)
{
    struct stat now;
    return stat(path, &now) == 0 && now.st_dev == opened->st_dev && now.st_ino == opened->st_ino;
}

static void store_check(store_checker *c)
{
    http_server *s = c->srv;
    if (!atomic_load(&s->gallery_loaded)) return; /* still loading: nothing to check yet */
    int ok = http_keystore_refresh(s->keys) == 0;
    if (ok && s->db_watched && !c->db_lost && !same_file(s->db_path, &s->db_file)) {
        /* Not ready for good: a restart opens whatever the path names then, without what was
         * written here. Logged once; the operator puts the file back (from a backup) and
         * restarts. */
        c->db_lost = 1;
        log_event(BASE_LOG_ERROR,
                  "the store file was deleted or replaced while open: what is written now would "
                  "be lost at the next start; not ready until restarted",
                  json_pack("{s:s}", "file", s->db_path));
    }
    if (ok) {
        int required = http_keystore_count(s->keys) > 0;
        /* the API turning open is as worth a warning as starting open */
        if (required != atomic_exchange(&s->auth_required, required))
            log_event(required ? BASE_LOG_INFO : BASE_LOG_WARN,
                      required ? "API keys exist: auth is on"
                               : "no API keys left: the API is open to anyone who can reach it",
                      NULL);
    } else if (!c->keys_failing) {
        LOG_WARN("api keys: %s (not logged again until the store answers)", base_error_message());
    }
    /* Changes other processes made (replicas on a shared PostgreSQL store, or the CLI on the
     * same SQLite file): replayed now, so an idle replica's first request after a busy hour
     * elsewhere does not pay for the whole backlog. Reads catch up before they run anyway;
     * this only keeps the backlog short. */
    int refreshed = gal_refresh(s->gal) == 0;
    /* Ready when both stores answer: the API keys' and the gallery's (its connections, and its
     * unreachable window after an outage, are its own; with the keys' alone, /readyz said 200
     * after a database outage while the next gallery write still got 503). */
    atomic_store(&c->result, ok && refreshed && !c->db_lost);
    if (!refreshed && !c->refresh_failing)
        LOG_WARN("gallery refresh: %s (not logged again until the store answers)",
                 base_error_message());
    /* An outage is logged when it begins and when it ends, not once a second in between (a
     * 10 s database restart wrote 20 such lines per replica). */
    uint64_t now = base_now_ns();
    if ((!ok || !refreshed) && !c->failing_since_ns) c->failing_since_ns = now;
    if (ok && refreshed && c->failing_since_ns) {
        log_event(BASE_LOG_INFO, "store reachable again",
                  json_pack("{s:f,s:I}", "outage_ms", (double)(now - c->failing_since_ns) / 1e6,
                            "store_errors_not_logged",
                            (json_int_t)atomic_exchange(&s->store_errors_unlogged, 0)));
        atomic_store(&s->store_error_logged_ns, 0); /* the next outage's first refusal logs */
        c->failing_since_ns = 0;
    }
    c->keys_failing = !ok;
    c->refresh_failing = !refreshed;
}

static void *store_checker_main(void *arg)
{
    store_checker *c = arg;
    pthread_mutex_lock(&c->lock);
    while (!c->stop) {
        pthread_mutex_unlock(&c->lock);
        atomic_store(&c->busy, 1);
        store_check(c);
        atomic_store(&c->done_ns, base_now_ns());
        atomic_store(&c->busy, 0);
        pthread_mutex_lock(&c->lock);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        while (!c->stop && pthread_cond_timedwait(&c->cond, &c->lock, &until) == 0) {
        }
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* /readyz's view of the store: the last check's result while checks keep finishing; not
 * answering once none has for STORE_CHECK_TIMEOUT_NS. */
static void store_watch(http_server *s, store_checker *c, uint64_t now, int *stuck_logged)
{
    uint64_t done = atomic_load(&c->done_ns);
    int stuck = now > done && now - done > STORE_CHECK_TIMEOUT_NS;
    atomic_store(&s->store_ok, !stuck && atomic_load(&c->result));
    if (stuck != *stuck_logged) {
        *stuck_logged = stuck;
        log_event(stuck ? BASE_LOG_ERROR : BASE_LOG_INFO,
                  stuck ? "the store does not answer: its check has waited over 5 s"
                        : "the store answers again",
                  NULL);
    }
}

/* Stops the checker and frees it. Returns 0, or -1 when a check still waits on the store
 * after wait_ms: then the thread is left to the exit, with the store it uses. */
static int store_checker_stop(store_checker *c, int wait_ms)
{
    pthread_mutex_lock(&c->lock);
    c->stop = 1;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    uint64_t deadline = base_now_ns() + ms_to_ns(wait_ms);
    while (atomic_load(&c->busy) && base_now_ns() < deadline) {
        struct timespec pause = {0, 10 * 1000000};
        nanosleep(&pause, NULL);
    }
    if (atomic_load(&c->busy)) return -1;
    pthread_join(c->thread, NULL);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c);
    return 0;
}

/* Signals, the store's health, slow connections and the drain, every 50 ms; never blocks on
 * the store. */
static int run_loop(http_server *s, store_checker *c)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    uint64_t drain_start = 0;
    int quiesced = 0, stuck_logged = 0, ready_sent = 0;
    for (;;) {
        struct timespec tick = {0, 50 * 1000000};
        int sig = sigtimedwait(&set, NULL, &tick);
        uint64_t now = base_now_ns();
        if (sig == SIGTERM || sig == SIGINT) {
            if (drain_start) {
                log_event(BASE_LOG_WARN, "second signal: stopping without draining",
                          json_pack("{s:I}", "in_flight", (json_int_t)atomic_load(&s->in_flight)));
                /* As a cut-off drain: destroy must leave everything to the exit. Stopping the
                 * daemon with suspended connections (requests queued or on a worker) makes
                 * libmicrohttpd abort, and joining the workers would wait for the whole queue:
                 * "exits at once" was a SIGABRT or a full drain. */
                s->abandoned = 1;
                return BASE_ERR_LIMIT;
            }
            drain_start = now;
            atomic_store(&s->draining, 1);
            char stopping[128];
            http_notify_stopping_message(stopping, sizeof stopping, atomic_load(&s->in_flight));
            http_notify_send(stopping); /* a manager gone or not listening changes nothing */
            log_event(BASE_LOG_INFO, "draining",
                      json_pack("{s:s,s:i,s:i,s:I}", "signal",
                                sig == SIGTERM ? "SIGTERM" : "SIGINT", "grace_ms", s->cfg.grace_ms,
                                "drain_timeout_ms", s->cfg.drain_timeout_ms, "in_flight",
                                (json_int_t)atomic_load(&s->in_flight)));
        }
        if (atomic_load(&s->load_failed)) return base_error_set(BASE_ERR_IO, "%s", s->load_error);
        reap_slow_connections(s);
        store_watch(s, c, now, &stuck_logged);
        /* READY=1 once, when /readyz would first answer 200. */
        if (!ready_sent && !drain_start && http_server_ready(s, NULL)) {
            ready_sent = 1;
            http_notify_send(s->notify_ready);
        }
        if (!drain_start) continue;
        /* The grace ends at the drain timeout at the latest: the drain below then ends as
         * any other (drained when idle, else cut off), never with the listener still open. */
        int grace_ms =
            s->cfg.grace_ms < s->cfg.drain_timeout_ms ? s->cfg.grace_ms : s->cfg.drain_timeout_ms;
        if (!quiesced && now - drain_start >= ms_to_ns(grace_ms)) {
            /* Stop accepting: take the listening socket out of the loop, then shut it down
             * so connection attempts are refused at once rather than left in the backlog. */
            MHD_socket fd = MHD_quiesce_daemon(s->daemon);
            if (fd != MHD_INVALID_SOCKET) {
                s->listen_fd = fd;
                shutdown(fd, SHUT_RDWR);
            }
            quiesced = 1;
            log_event(BASE_LOG_INFO, "stopped accepting connections",
                      json_pack("{s:I}", "in_flight", (json_int_t)atomic_load(&s->in_flight)));
        }
        pthread_mutex_lock(&s->qlock);
        int busy = s->qlen + s->running;
        pthread_mutex_unlock(&s->qlock);
        /* A loader still running (SIGTERM during start-up) is waited for as a request is:
         * destroy joins it. */
        if (quiesced && busy == 0 && atomic_load(&s->in_flight) == 0 &&
            atomic_load(&s->loaders_running) == 0) {
            log_event(BASE_LOG_INFO, "drained",
                      json_pack("{s:f}", "ms", (double)(now - drain_start) / 1e6));
            return 0;
        }
        if (now - drain_start >= ms_to_ns(s->cfg.drain_timeout_ms)) {
            log_event(BASE_LOG_WARN, "drain timeout: requests still in flight are cut off",
                      json_pack("{s:I,s:i}", "in_flight", (json_int_t)atomic_load(&s->in_flight),
                                "loaders_running", atomic_load(&s->loaders_running)));
            s->abandoned = 1; /* workers may still run: destroy must not free what they use */
            return BASE_ERR_LIMIT;
        }
    }
}

/* Every error returned here has been logged, once: a loader's where it failed (load_fail), so
 * the caller does not log it again (a missing models folder made three lines of one cause). */
int http_server_run(http_server *s)
{
    store_checker *c = calloc(1, sizeof *c);
    if (!c) {
        log_event(BASE_LOG_ERROR, "out of memory for the store check", NULL);
        return base_error_set(BASE_ERR_NOMEM, "store check");
    }
    c->srv = s;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    atomic_store(&c->result, 1);
    atomic_store(&c->done_ns, base_now_ns());
    if (pthread_create(&c->thread, NULL, store_checker_main, c) != 0) {
        free(c);
        log_event(BASE_LOG_ERROR, "cannot start the store check", NULL);
        return base_error_set(BASE_ERR_BACKEND, "cannot start the store check");
    }
    int rc = run_loop(s, c);
    /* A cut-off drain or a second signal leaves everything to the exit at once: no wait. */
    if (store_checker_stop(c, s->abandoned ? 0 : 1000) != 0) {
        log_event(BASE_LOG_WARN, "the store check still waits on the store: left to the exit",
                  NULL);
        s->abandoned = 1; /* destroy must not close the store under it */
    }
    return rc;
}

void http_server_destroy(http_server *s)
{
    if (!s) return;
    if (s->abandoned) return; /* a cut-off drain: the process is exiting; leave it all */
    /* A drain that ended with a loader still running was cut off (abandoned, above). */
    if (s->store_loader_started) pthread_join(s->store_loader, NULL);
    if (s->model_loader_started) pthread_join(s->model_loader, NULL);
    if (s->daemon) MHD_stop_daemon(s->daemon);
    http_linger_stop(s->linger); /* after the daemon: nothing hands it a socket any more */
    if (s->listen_fd >= 0) close(s->listen_fd);
    pthread_mutex_lock(&s->qlock);
    s->stop = 1;
    pthread_cond_broadcast(&s->qcond);
    pthread_mutex_unlock(&s->qlock);
    for (int i = 0; s->workers && i < s->n_workers; i++) {
        if (s->workers[i].thread_started) pthread_join(s->workers[i].thread, NULL);
        face_context_destroy(s->workers[i].face);
        free(s->workers[i].slots);
        free(s->workers[i].slices);
    }
    free(s->workers);
    face_models_destroy(s->models);
    http_keystore_close(s->keys);
    gal_close(s->gal);
    pthread_mutex_destroy(&s->qlock);
    pthread_cond_destroy(&s->qcond);
    pthread_mutex_destroy(&s->conn_lock);
    pthread_mutex_destroy(&s->gallery_metrics_lock);
    free(s->gallery_metrics);
    free(s);
}
