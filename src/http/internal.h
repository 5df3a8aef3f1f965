/*
 * Private to src/http: the pieces of the service and the state they share.
 *
 * Threads:
 *   - the event-loop thread (libmicrohttpd, epoll): parses HTTP, reads bodies, answers the
 *     cheap routes (/healthz, /readyz, /metrics, /openapi.json, errors found before any work)
 *     inline, does admission control, and suspends a connection while its request waits for
 *     and runs on a worker;
 *   - the workers (server.c: worker_main): take requests from the bounded queue, run the
 *     route's handler (decode, face pipeline, gallery), write the response into the request
 *     and resume the connection;
 *   - the two loaders (once, at start-up, in parallel, after the port opens): the models and
 *     the workers' contexts; the store (gallery read into memory, API keys);
 *   - the main thread: waits for signals, closes slow connections, reloads API keys, drains;
 *   - the lingering-close thread (linger.c): reads and discards what clients still send on
 *     connections answered before their bodies were read, then closes them.
 */
#ifndef VULTUS_HTTP_INTERNAL_H
#define VULTUS_HTTP_INTERNAL_H

#include "base/base.h"
#include "face/face.h"
#include "gallery/gallery.h"
#include "http/http.h"

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/stat.h>

/* ---- SHA-256 (sha256.c) ---------------------------------------------------------------- */

typedef struct http_sha256 {
    uint32_t h[8];
    uint64_t bytes;
    uint8_t block[64];
    size_t used;
} http_sha256;

void http_sha256_init(http_sha256 *s);
void http_sha256_update(http_sha256 *s, const void *data, size_t len);
void http_sha256_final(http_sha256 *s, uint8_t digest[32]);
void http_sha256_digest(const void *data, size_t len, uint8_t digest[32]);
/* Lower-case hex of len bytes into out (2 * len + 1 bytes). */
void http_hex(const uint8_t *bytes, size_t len, char *out);

/* ---- text codecs (codec.c) -------------------------------------------------------------- */

/*
 * Decodes standard or URL-safe base64 (padding optional; whitespace and line breaks
 * ignored; a "data:...;base64," prefix skipped) into a new malloc'd buffer. BASE_ERR_FORMAT
 * for a character outside the alphabet or a length that cannot be base64, BASE_ERR_LIMIT
 * when the result would exceed max_out bytes.
 */
int http_base64_decode(const char *in, size_t len, size_t max_out, uint8_t **out, size_t *out_len);
/* URL-safe base64 without padding; out needs 4 * ceil(len / 3) + 1 bytes. Returns the length. */
size_t http_base64url_encode(const uint8_t *in, size_t len, char *out);

/*
 * Percent-decodes in[0..len) into out (capacity cap, NUL-terminated); '+' becomes a space
 * when plus_is_space. BASE_ERR_FORMAT for a malformed escape or a decoded NUL byte,
 * BASE_ERR_LIMIT when the result does not fit.
 */
int http_percent_decode(const char *in, size_t len, int plus_is_space, char *out, size_t cap);

/*
 * Finds parameter `name` in a raw query string ("a=1&b=x%20y") and percent-decodes its value
 * into out. Returns 1 when found, 0 when absent, a negative code when malformed or too long.
 */
int http_query_get(const char *query, const char *name, char *out, size_t cap);

/* A token bucket: `rate` tokens per second up to `burst`. Caller-owned; not thread-safe. */
typedef struct http_bucket {
    double tokens;
    uint64_t last_ns; /* 0: full */
} http_bucket;
/* Takes a token: returns 0 when one was there, otherwise the seconds until one will be. */
double http_bucket_take(http_bucket *b, double rate, double burst, uint64_t now_ns);

/* ---- multipart/form-data (multipart.c) -------------------------------------------------- */

#define HTTP_MULTIPART_MAX_PARTS 16
#define HTTP_BOUNDARY_MAX 70 /* RFC 2046 */

typedef struct http_slice {
    const char *p;
    size_t n;
} http_slice;

typedef struct http_part {
    http_slice name;         /* from Content-Disposition: form-data; name="..." */
    http_slice filename;     /* may be empty */
    http_slice content_type; /* may be empty */
    const uint8_t *data;     /* into the body */
    size_t len;
} http_part;

/* The boundary parameter of a multipart/form-data Content-Type (quotes removed) into
 * boundary[HTTP_BOUNDARY_MAX + 1]; BASE_ERR_FORMAT when absent or invalid. */
int http_multipart_boundary(const char *content_type, char *boundary);
/*
 * Splits a whole multipart body into parts (pointers into `body`). BASE_ERR_FORMAT for a
 * missing delimiter, a part without a Content-Disposition name, headers over 8 KiB or a body
 * that ends before the closing delimiter; BASE_ERR_LIMIT for more than max_parts parts.
 */
int http_multipart_parse(const uint8_t *body, size_t len, const char *boundary, http_part *parts,
                         int max_parts, int *n_parts);

/* ---- metrics (metrics.c) ---------------------------------------------------------------- */

#define HTTP_HIST_BUCKETS 14
#define HTTP_STATUS_MIN 100
#define HTTP_STATUS_MAX 599

typedef struct http_histogram {
    _Atomic uint64_t bucket[HTTP_HIST_BUCKETS + 1]; /* last: +Inf */
    _Atomic uint64_t count;
    _Atomic uint64_t sum; /* nanoseconds (seconds histograms) or the values (counts) */
} http_histogram;

enum http_stage {
    HTTP_STAGE_QUEUE,
    HTTP_STAGE_DECODE,
    HTTP_STAGE_DETECT,
    HTTP_STAGE_LANDMARKS,
    HTTP_STAGE_ALIGN,
    HTTP_STAGE_EMBED,
    HTTP_STAGE_ATTRIBUTES,
    HTTP_STAGE_LIVENESS,
    HTTP_STAGE_GALLERY,
    HTTP_STAGE_BATCH_WAIT, /* a request's faces waiting in the batch pool */
    HTTP_STAGE_COUNT
};

enum http_reject {
    HTTP_REJECT_QUEUE_FULL,
    HTTP_REJECT_DEADLINE,
    HTTP_REJECT_RATE_LIMITED,
    HTTP_REJECT_NOT_READY,
    HTTP_REJECT_BODY_MEMORY, /* the body would pass --max-body-memory */
    HTTP_REJECT_COUNT
};

#define HTTP_MAX_ROUTES 32
#define HTTP_CHECKIN_STATUSES (GAL_CHECKIN_NOT_RECOGNISED + 1)

/* Lock-free counters: any thread adds, /metrics reads. */
typedef struct http_metrics {
    _Atomic uint64_t requests[HTTP_MAX_ROUTES + 1][HTTP_STATUS_MAX - HTTP_STATUS_MIN + 1];
    http_histogram latency[HTTP_MAX_ROUTES + 1]; /* seconds, per route; last: unmatched */
    http_histogram stage[HTTP_STAGE_COUNT];      /* seconds, per pipeline stage */
    http_histogram batch; /* faces per batch of the per-face models (across requests) */
    _Atomic uint64_t rejected[HTTP_REJECT_COUNT];
    _Atomic uint64_t slow_closed; /* connections closed for not sending a request in time */
    _Atomic uint64_t store_errors; /* requests answered 503 store_unavailable */
    /* Faces of recorded check-ins, by what each arrival did (enum gal_checkin_status): this
     * process's, so a dashboard of replicas sums them. */
    _Atomic uint64_t checkins[HTTP_CHECKIN_STATUSES];
} http_metrics;

/* A growable text buffer for the metrics page. */
typedef struct http_text {
    char *p;
    size_t len, cap;
    int failed; /* an allocation failed: the text is incomplete */
} http_text;
void http_text_printf(http_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void http_text_free(http_text *t);

/* Histograms: latency in seconds (1 ms .. 10 s), or counts (batch sizes 1 .. 256). */
void http_histogram_observe_seconds(http_histogram *h, double seconds);
void http_histogram_observe_count(http_histogram *h, unsigned value);
/* Appends the _bucket, _sum and _count lines; `labels` is "" or `key="value",...`. */
void http_histogram_format(http_text *t, const char *name, const char *labels,
                           const http_histogram *h, int seconds);

/* ---- API keys and idempotency records (keys.c) ----------------------------------------- */

typedef struct http_keystore http_keystore;

/* Opens (creating the tables if needed) the keys of the SQLite file at db_path, on a
 * connection of its own. Thread-safe: one mutex guards the connection and the key table. */
int http_keystore_open(const char *db_path, http_keystore **out);
void http_keystore_close(http_keystore *ks);
/* Reloads the key table when another connection changed the file (PRAGMA data_version), and
 * touches this process's running idempotency claims. Called once a second. */
int http_keystore_refresh(http_keystore *ks);
/* How many keys exist (as of the last refresh). */
size_t http_keystore_count(http_keystore *ks);
/* Reads from the store: 0 when it answers. */
int http_keystore_ping(http_keystore *ks);
/*
 * Checks a bearer token. 0 and *info when a key has that hash; then takes a token from the
 * key's bucket (rate per second, burst): *retry_after_s > 0 when the key is rate-limited.
 * BASE_ERR_NOT_FOUND when no key matches.
 */
int http_keystore_check(http_keystore *ks, const char *token, double rate, double burst,
                        http_key_info *info, double *retry_after_s);

enum http_idem_state { HTTP_IDEM_NEW, HTTP_IDEM_REPLAY, HTTP_IDEM_BUSY, HTTP_IDEM_MISMATCH };
/*
 * Claims an idempotency key (scope: who and where, e.g. key id + collection + client key) for
 * a request whose method, path and body hash to `fingerprint`. HTTP_IDEM_NEW: claimed, run
 * the request then http_idem_finish (or http_idem_release on failure). HTTP_IDEM_REPLAY: it
 * ran before; *status and *body (malloc'd) are its response. HTTP_IDEM_BUSY: another request
 * with this key is running. HTTP_IDEM_MISMATCH: the key was used for a different request.
 * Records are kept 24 hours. A running claim is touched once a second by its process
 * (http_keystore_refresh); one left untouched for 5 s was abandoned by a process that died,
 * and is taken over: HTTP_IDEM_NEW with *taken_over = 1 (the dead process may have stored
 * its result without recording its response; the caller checks).
 */
int http_idem_begin(http_keystore *ks, const char *scope, const uint8_t fingerprint[32],
                    enum http_idem_state *state, int *status, char **body, int *taken_over);
int http_idem_finish(http_keystore *ks, const char *scope, int status, const char *body);
void http_idem_release(http_keystore *ks, const char *scope);

/* The store of a data folder: DATA/vultus.db. */
int http_store_path(const char *data_dir, char *out, size_t cap);

/* ---- requests, routes and the server (server.c, routes.c, api_*.c) ---------------------- */

typedef struct http_server http_server;
typedef struct http_request http_request;
typedef struct http_worker http_worker;
typedef void (*http_handler)(http_request *r, http_worker *w);

typedef struct http_route {
    const char *method;
    const char *pattern;   /* segments; "{name}" captures one */
    enum http_scope scope; /* 0: open to everyone (operations routes) */
    int queued;            /* runs on a worker (everything under /v1) */
    int image;             /* decodes an image and runs the face pipeline */
    http_handler handler;
} http_route;

extern const http_route http_routes[];
extern const int http_route_count;

#define HTTP_CAPTURES 3
#define HTTP_CAPTURE_MAX 512

/* Matches method and raw (still percent-encoded) path, query removed. Returns the route
 * index, -1 when no route has this path (404), -2 when one has but not this method (405),
 * -3 when a segment is malformed (400). Captures are percent-decoded into caps. */
int http_route_match(const char *method, const char *path, size_t path_len,
                     char caps[HTTP_CAPTURES][HTTP_CAPTURE_MAX], int *n_caps);

/* Writes the methods the routes of this raw path take ("GET, HEAD, PATCH, DELETE": a 405's
 * Allow header and message) into out. Returns how many routes matched, or -1 when out is too
 * small. */
int http_route_methods(const char *path, size_t path_len, char *out, size_t cap);

enum http_request_state { HTTP_REQ_RECEIVING, HTTP_REQ_QUEUED, HTTP_REQ_DONE };

/* Images per request prepared before its handler runs (verify has two). */
#define HTTP_FACE_JOBS 2

/*
 * One image of a request, prepared (decode, detect, landmarks, crops) by the worker that took
 * the request from the queue, its faces then finished in batches with other requests' faces
 * (server.c), and handed to the handler when it asks for the same bytes and stages
 * (http_run_face_keep). A failure is kept and reported when the handler asks, so a request's
 * errors come in the handler's order.
 */
typedef struct http_face_job {
    const uint8_t *data; /* the image bytes: into the request's body or its prefetch input */
    size_t len;
    unsigned stages;
    int keep;          /* decoded here at full size and kept for the handler (enrolment) */
    int rc;            /* 0, or the failure of prepare or finish */
    int decoded;       /* the image decoded: a failure is the pipeline's, not the image's */
    char message[256]; /* base_error_message() of the failure */
    face_result result;
    img_image image; /* keep: the decoded image */
    int taken;       /* handed to the handler */
} http_face_job;

/* A connection as the slow-client reaper sees it (server.c). Guarded by the server's
 * conn_lock, except the atomics. */
typedef struct http_conn {
    struct http_conn *prev, *next;
    int fd;
    _Atomic uint64_t window_ns; /* when the connection started waiting for a request */
    _Atomic int busy;           /* a whole request was received: not the reaper's business */
    int closed_by_reaper;
    int linger; /* answered before its request's body was read: close it lingering (linger.c) */
} http_conn;

struct http_request {
    http_server *srv;
    struct MHD_Connection *conn;
    http_conn *hc;
    char *uri; /* raw, as received (path and query, percent-encoded) */
    size_t path_len;
    const char *query; /* into uri, "" when none */
    char method[16];
    int route; /* index into http_routes, or < 0 */
    char caps[HTTP_CAPTURES][HTTP_CAPTURE_MAX];
    int n_caps;
    char content_type[256];
    char idempotency_key[256];
    int idempotency_key_sent; /* the header was there, even empty */
    char id[72];              /* X-Request-Id */
    char remote[64];

    uint8_t *body;
    size_t body_len, body_cap;
    int body_overflow;      /* a chunked body went past the limit */
    int body_over_budget;   /* a chunked body went past --max-body-memory: 503 at its end */
    int64_t content_length; /* declared; -1 when none (chunked or no body) */
    int64_t body_reserved;  /* bytes of the server's body_bytes this request holds */

    uint64_t t_start_ns, deadline_ns, t_enqueued_ns, t_started_ns;
    double cost_ms; /* estimated service time, counted into the queue's backlog */

    int authenticated;
    http_key_info key;

    /* The response, written by whoever handles the request. */
    int status;
    char *resp;
    size_t resp_len;
    const char *resp_type;
    int retry_after_s;         /* > 0: a Retry-After header */
    const char *cache_control; /* NULL: "no-store" (API answers must not be cached) */
    char etag[24];             /* "" or a quoted entity tag (the web page's files) */
    char error[48];            /* the error code, for the log */
    char location[HTTP_PATH_MAX];
    char allow[48]; /* "" or the methods of a 405's path: header Allow */
    face_timing timing;
    int has_timing;
    int faces;           /* faces in the response, for the log; -1 when not applicable */
    json_t *log_fields;  /* fields the handler adds to the log line (verify's audit: collection,
                            subject, decision, similarity; never pixels nor embeddings); owned,
                            NULL when none */
    int replayed;        /* an idempotent replay: header Idempotency-Replayed: true */
    int idem_claimed;    /* the prepare step claimed r's Idempotency-Key (enrolment) */
    int idem_taken_over; /* ... from a process that died while running it */

    _Atomic int state;
    http_request *next; /* in the queue */

    /* Cross-request batching (server.c). Written by the preparing worker before the request
     * is parked; from then on the counters and job timings are guarded by the server's qlock
     * until the request is on the done list. */
    struct http_input *prefetch; /* the body as parsed for the prepare step (owned) */
    http_face_job jobs[HTTP_FACE_JOBS];
    int n_jobs;
    int crops_total, crops_taken, crops_done; /* faces waiting for the per-face models */
    int job_cursor, face_cursor;              /* the next face to hand to a batch */
    uint64_t t_parked_ns;
    double work_ms;          /* worker time spent on it, for the cost estimate */
    http_request *pool_next; /* in the batch pool or the done list */
};

struct http_worker {
    http_server *srv;
    int index;
    pthread_t thread;
    int thread_started;
    face_context *face;
    struct http_batch_slot *slots; /* batch_max entries: the batch being run (server.c) */
    face_batch_slice *slices;      /* batch_max entries: the same, for face_analyze_finish */
};

/* ---- lingering close (linger.c) -------------------------------------------------------- */

/* A connection answered before its request's body was read is closed only after the client
 * has stopped sending (bounded in time and bytes), so the answer is not lost to a reset. */
typedef struct http_linger http_linger;
int http_linger_start(http_linger **out);
/* Takes over fd (a duplicate of the connection's socket): half-closes it, discards what comes,
 * closes it. */
void http_linger_add(http_linger *l, int fd);
void http_linger_stop(http_linger *l);

struct http_server {
    http_config cfg;
    char db_path[HTTP_PATH_MAX + 16];
    struct MHD_Daemon *daemon;
    http_linger *linger;
    int port;
    int listen_fd;

    /* Start-up. Each loader sets what it loads, then its flag (so a thread that sees the flag
     * sees what it guards), then counts itself done; the last one sets ready. Until
     * gallery_loaded, gal and keys are NULL and only the operations routes are answered. */
    _Atomic int models_loaded;  /* models, workers' face contexts */
    _Atomic int gallery_loaded; /* gal (the whole store read), keys, auth_required, db_file */
    _Atomic int ready;          /* both: the /v1 routes may run */
    _Atomic int loads_done;     /* loaders that succeeded */
    _Atomic int loaders_running;
    _Atomic int load_failed;      /* a loader failed: load_error says why, serve exits 1 */
    _Atomic int load_error_taken; /* the first failure writes load_error */
    char load_error[512];
    uint64_t start_ns; /* http_server_create called */
    _Atomic int draining; /* SIGTERM received */
    char notify_ready[128]; /* READY=1 and its STATUS= (notify.h), written before gallery_loaded */
    _Atomic int64_t in_flight; /* requests begun and not completed */
    /* Request-body bytes reserved, all requests together, at most cfg.max_body_memory: a
     * declared Content-Length when the headers arrive, a chunked body's buffer as it grows;
     * given back when the request ends however it ends. The event loop reserves and releases;
     * /metrics reads. */
    _Atomic int64_t body_bytes;
    pthread_t model_loader, store_loader;
    int model_loader_started, store_loader_started;
    /* The SQLite file the gallery opened (the store loader; read once gallery_loaded): the store
     * check notices it deleted or replaced. db_watched 0 for PostgreSQL. */
    struct stat db_file;
    int db_watched;

    face_models *models;
    struct gal *gal;
    http_keystore *keys;
    _Atomic int auth_required; /* any key exists (refreshed by the main loop) */
    _Atomic int store_ok;      /* the store answered the main loop's last read */
    /* The "store unavailable" log line (http_respond_base_error): when it was last written
     * (base_now_ns; 0: not in this outage) and the refusals since that were not logged. Any
     * thread; the store check resets both when the store answers again. */
    _Atomic uint64_t store_error_logged_ns;
    _Atomic uint64_t store_errors_unlogged;
    const char *embedder_id;
    int embedding_dim;
    float default_threshold;

    int n_workers;
    http_worker *workers;
    _Atomic int busy_workers; /* workers preparing, batching or completing a request now */
    /* The queue. qlock guards everything below it up to running. */
    pthread_mutex_t qlock;
    pthread_cond_t qcond;
    http_request *qhead, *qtail;
    int qlen;
    int running;            /* requests on workers now */
    double backlog_ms;      /* sum of the queued requests' cost_ms */
    double cost_ewma_ms[2]; /* measured service time: [0] light routes, [1] image routes */
    int stop;               /* workers exit when the queue is empty */
    /* The batch pool: prepared requests whose faces wait for the per-face models, oldest
     * first, and the requests whose faces are all done (their handlers run next). */
    http_request *pool_head, *pool_tail;
    int pool_crops;    /* faces in the pool not yet handed to a batch */
    int pool_requests; /* requests with faces in the pool or in a batch (running counts them) */
    double prepare_ewma_ms; /* measured time of a request's prepare step (image routes) */
    http_request *done_head, *done_tail;
    int abandoned; /* the drain timed out with requests running (main thread only) */

    pthread_mutex_t conn_lock; /* guards conns */
    http_conn *conns;

    http_metrics metrics;
    /* /metrics' vultus_gallery_* series as last rendered, served again while the store cannot
     * list the collections (an outage), so that dashboards keep the last known figures instead
     * of a gap; vultus_store_up 0 says they may be stale. gallery_metrics_lock guards it and
     * is held for a copy only, never across a store call. */
    pthread_mutex_t gallery_metrics_lock;
    char *gallery_metrics;
    char id_prefix[12];
    _Atomic uint64_t id_counter;
};

/* Whether /readyz answers 200: models loaded, gallery loaded, store answering, not draining
 * (each check, as read once, into *c when c is not NULL). Also when the service manager is
 * told READY=1 (notify.h). */
struct http_readiness {
    int models, gallery, store, draining;
};
static inline int http_server_ready(http_server *s, struct http_readiness *c)
{
    struct http_readiness r = {atomic_load(&s->models_loaded), atomic_load(&s->gallery_loaded),
                               atomic_load(&s->store_ok), atomic_load(&s->draining)};
    if (c) *c = r;
    return r.models && r.gallery && r.store && !r.draining;
}

/* Response helpers: set r's response (replacing any). */
void http_respond_json(http_request *r, int status, json_t *body); /* steals body */
void http_respond_text(http_request *r, int status, const char *type, char *text, size_t len);
void http_respond_error(http_request *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Maps a BASE_ERR_* code from the gallery or the face pipeline to a status and error code,
 * with base_error_message() as the message. `what` names the thing for NOT_FOUND. */
void http_respond_base_error(http_request *r, int rc, const char *what);

/* Handlers (api_ops.c, api_face.c, api_gallery.c). */
void http_api_healthz(http_request *r, http_worker *w);
void http_api_readyz(http_request *r, http_worker *w);
void http_api_metrics(http_request *r, http_worker *w);
void http_api_openapi(http_request *r, http_worker *w);
void http_api_detect(http_request *r, http_worker *w);
void http_api_analyze(http_request *r, http_worker *w);
void http_api_embed(http_request *r, http_worker *w);
void http_api_verify(http_request *r, http_worker *w);
void http_api_collections_list(http_request *r, http_worker *w);
void http_api_collection_create(http_request *r, http_worker *w);
void http_api_collection_get(http_request *r, http_worker *w);
void http_api_collection_update(http_request *r, http_worker *w);
void http_api_collection_delete(http_request *r, http_worker *w);
void http_api_subjects_list(http_request *r, http_worker *w);
void http_api_subject_create(http_request *r, http_worker *w);
void http_api_subject_get(http_request *r, http_worker *w);
void http_api_subject_update(http_request *r, http_worker *w);
void http_api_subject_delete(http_request *r, http_worker *w);
void http_api_faces_list(http_request *r, http_worker *w);
void http_api_face_enrol(http_request *r, http_worker *w);
void http_api_face_get(http_request *r, http_worker *w);
void http_api_face_thumbnail(http_request *r, http_worker *w);
void http_api_face_delete(http_request *r, http_worker *w);
void http_api_search(http_request *r, http_worker *w);
void http_api_checkin(http_request *r, http_worker *w);
void http_api_checkins_list(http_request *r, http_worker *w);
void http_api_checkins_clear(http_request *r, http_worker *w);

/* ---- request input (input.c) ------------------------------------------------------------ */

/* The body of a request, parsed once: JSON, multipart, or raw image bytes. */
typedef struct http_input {
    enum { HTTP_INPUT_NONE, HTTP_INPUT_JSON, HTTP_INPUT_MULTIPART, HTTP_INPUT_RAW } kind;
    json_t *json; /* object, for HTTP_INPUT_JSON */
    http_part parts[HTTP_MULTIPART_MAX_PARTS];
    int n_parts;
    uint8_t *decoded[4]; /* base64-decoded images, owned */
    int n_decoded;
} http_input;

/*
 * Parses r's body by its Content-Type. images: the route takes images (raw image bodies
 * and multipart are accepted); otherwise only JSON (or no body). On failure the error
 * response is set and a negative code returned.
 */
int http_input_parse(http_request *r, int images, http_input *in);
void http_input_free(http_input *in);
/* The image named `name` ("image", "image_a", ...): 1 found, 0 absent, < 0 error (response
 * set). A raw body is the image of any name. */
int http_input_image(http_request *r, http_input *in, const char *name, const uint8_t **data,
                     size_t *len);
/* Whether the body holds an image named `name` (without decoding it). */
int http_input_has_image(const http_input *in, const char *name);
/* The bytes of image `name`, never failing and not checked as an image: the raw body, the
 * part, or what a JSON body's base64 decodes to (into *owned, for the caller to free; the
 * text itself when it does not decode); empty when absent. What an Idempotency-Key's
 * fingerprint hashes: the image sent any way gives the same bytes. */
void http_input_image_bytes(const http_request *r, const http_input *in, const char *name,
                            const uint8_t **data, size_t *len, uint8_t **owned);
/* A scalar parameter from the query string, then the JSON body, then a multipart field, as
 * text: 1 found, 0 absent, < 0 error (response set). */
int http_input_param(http_request *r, http_input *in, const char *name, char *out, size_t cap);
/* Typed parameters with a default and a range: 0 or < 0 with a 422 response set. */
int http_input_int(http_request *r, http_input *in, const char *name, long def, long min, long max,
                   long *out);
int http_input_float(http_request *r, http_input *in, const char *name, double def, double min,
                     double max, double *out);
int http_input_bool(http_request *r, http_input *in, const char *name, int def, int *out);
/* A JSON value parameter (e.g. metadata): from the JSON body, or a multipart field holding
 * JSON text. Returns a new reference or NULL when absent; < 0 in *rc when malformed. */
json_t *http_input_json_value(http_request *r, http_input *in, const char *name, int *rc);

/*
 * The prepare step of a request before its handler (api_face.c): parses the body and prepares
 * the images the route's handler will ask for (with the stages it will ask for) on w's
 * context into r->jobs. Sets no response: whatever fails is left to the handler, except a
 * check that found the store unavailable (503 store_unavailable), answered at once instead of
 * asking the store again. Returns the faces that wait for the per-face models (r->crops_total).
 */
int http_face_prefetch(http_request *r, http_worker *w);
/*
 * Cheap checks of an image route, run by the prepare step before the pipeline: 1 when the
 * handler will answer without the pipeline (a missing collection or subject, a bad
 * parameter, an Idempotency-Key replay, ...), so the image is not prepared and the handler
 * answers at once; 0 otherwise. They are the handler's own checks in the handler's order, so
 * the answer is the handler's either way. A response they set is cleared by the caller, but
 * for a 503 store_unavailable, which is the request's answer (the handler is not run).
 * The enrolment check claims the request's Idempotency-Key (r->idem_claimed) for the handler.
 */
int http_enrol_precheck(http_request *r, http_input *in);
/* What an enrolment runs: the embedding, and the quality it records (the same figure as
 * `vultus gallery enroll`'s, which --min-quality filters on). */
#define HTTP_ENROL_STAGES (FACE_STAGE_EMBED | FACE_STAGE_QUALITY)
/* What a search runs: the embedding, and each face's quality as enrolment computes it (no
 * model runs for it), so a client can tell a poor photo from a stranger. */
#define HTTP_SEARCH_STAGES (FACE_STAGE_EMBED | FACE_STAGE_QUALITY)
int http_search_precheck(http_request *r, http_input *in);
/* Search's, and the door a check-in names (?door=, or a body field as k and threshold). */
int http_checkin_precheck(http_request *r, http_input *in);
int http_verify_precheck(http_request *r, http_input *in);
/* The precheck of an image route's handler (above), NULL for a route without one: the one
 * table the prepare step and fuzz_api both use. */
typedef int (*http_precheck)(http_request *r, http_input *in);
http_precheck http_precheck_of(http_handler handler);
/* Releases what the prepare step kept (jobs the handler did not take, the parsed body). The
 * stage timings of images prepared and not taken still go to the request's metrics: the work
 * was done. */
void http_face_prefetch_free(http_request *r);

/* The face pipeline for handlers (api_face.c): the image's prepared job when there is one
 * (same bytes and stages), otherwise decodes `data` within the configured limits and runs
 * face_analyze with `stages` on w's context; adds the timing to r. On failure the error
 * response is set (400/413/415 for images, 500 otherwise) and a negative code returned. */
int http_run_face(http_request *r, http_worker *w, const uint8_t *data, size_t len, unsigned stages,
                  face_result *out);
/* The same, handing the decoded image to the caller in *image (img_free it). */
int http_run_face_keep(http_request *r, http_worker *w, const uint8_t *data, size_t len,
                       unsigned stages, face_result *out, img_image *image);
/* One face as JSON: box, score, keypoints, and whatever the result has of landmarks,
 * attributes, liveness; the embedding when with_embedding. */
json_t *http_face_json(const face_info *f, int with_embedding);
json_t *http_box_json(const face_info *f);
/* 422 no_face for the image named `what` ("the image", "image_b"): says the smallest face
 * that was looked for in it, and, when that is more than the detector's default because the
 * image is large, that a crop around the faces finds smaller ones (the API has no parameter
 * for it: a 6000x6000 photo of 150-px faces gave 0 faces and no reason). */
void http_respond_no_face(http_request *r, const char *what, const face_result *res);
/* What pulled a face's quality down, in words ("small (24 px wide), blurred"), into why[cap];
 * "" when nothing stands out (api_face.c). Enrolment's refusal and verify's warning say it. */
void http_quality_why(const face_info *f, char *why, size_t cap);
/* Loads the image named `name` and analyses it; returns 1 when done, 0 when the request has
 * no such image (nothing set), < 0 on failure (response set). */
int http_face_from_input(http_request *r, http_worker *w, http_input *in, const char *name,
                         unsigned stages, face_result *out);

/* The Prometheus page (metrics.c). */
void http_metrics_render(http_server *s, http_text *out);
/* The OpenAPI document, embedded at build time (openapi.c). */
const char *http_openapi_json(size_t *len);
/* The web page's files (web/), embedded at build time (static.c): the file served at route
 * pattern `path` ("/", "/app.js", ...) with its Content-Type, or NULL. */
const char *http_web_file(const char *path, size_t *len, const char **type);
void http_api_static(http_request *r, http_worker *w);

/* ---- the Host check against DNS rebinding (hosts.c) ------------------------------------- */

/* Normalises the text of --allowed-hosts (comma-separated names, ".example.com" for a domain
 * and its subdomains, "*" for any) into out[cap]: lower case, blanks, empty entries and a
 * trailing dot removed. BASE_ERR_INVALID, naming the entry, for one that is not a host name
 * (out then holds part of the list). */
int http_allowed_hosts_parse(const char *text, char *out, size_t cap);
/* Whether a request with this Host header (NULL: none) may be answered, given the normalised
 * list: IP literals, localhost and *.localhost always, other names when listed. Pure: any
 * thread. */
int http_host_allowed(const char *allowed, const char *host);
/* Whether requests for this route have their Host checked: the API and the web page, while no
 * API key exists (auth_required 0) or whenever the list is set. */
int http_route_host_checked(const http_route *route, const char *allowed, int auth_required);

#endif
