/*
 * http — the service: `vultus serve`. An HTTP/1.1 server (libmicrohttpd, one event-loop
 * thread with epoll) in front of a bounded queue of inference workers (one per core by
 * default, each with its own face_context), the gallery, API keys, metrics and a graceful
 * drain on SIGTERM. The routes, the JSON shapes and the error codes are documented in
 * src/http/openapi.json (served at /openapi.json) and in the README.
 *
 * Life of the service (from the main thread):
 *     http_config c;  http_config_defaults(&c);  http_config_from_env(&c);  ...flags...
 *     http_server *s;  http_server_create(&c, &s);   // binds, starts threads, loads models
 *     http_server_run(s);                            // until SIGTERM/SIGINT, then drains
 *     http_server_destroy(s);
 *
 * Errors: negative BASE_ERR_* codes; base_error_message() names the problem.
 */
#ifndef VULTUS_HTTP_H
#define VULTUS_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define HTTP_PATH_MAX 1024

/* The whole configuration of `vultus serve`. Every field has a flag and a VULTUS_*
 * environment variable (see http_options). */
typedef struct http_config {
    char listen[256]; /* "[HOST]:PORT"; ":7860" is every interface, port 0 any free one */
    char models_dir[HTTP_PATH_MAX];
    char data_dir[HTTP_PATH_MAX]; /* the store is DATA/vultus.db */
    char store[HTTP_PATH_MAX];    /* "" or a PostgreSQL URL: the store replicas share */
    int workers;                  /* inference threads; 0: one per online core */
    int queue;                    /* requests waiting for a worker, at most */
    int deadline_ms;              /* default time a request may wait to start */
    int max_deadline_ms;          /* the most a client may ask for with X-Request-Deadline-Ms */
    int64_t max_body_bytes;       /* request bodies */
    int64_t max_body_memory;      /* request-body bytes held at once, all requests together */
    int64_t max_pixels;           /* decoded image width x height */
    int max_faces;                /* faces analysed per image (the largest are kept) */
    int batch_max;                /* faces per embedding run */
    int batch_wait_ms;            /* how long a batch waits for more faces */
    int worker_nice;              /* niceness added to the inference threads */
    int drain_timeout_ms;         /* SIGTERM: the longest the drain may take */
    int grace_ms;                 /* SIGTERM: keep accepting this long while /readyz says 503 */
    int read_timeout_ms;          /* a request's headers and body must arrive within this */
    int max_connections;          /* open connections, at most */
    double rate_limit;            /* requests per second per API key (token bucket); 0: none */
    int rate_burst;               /* bucket size; 0: max(1, 2 x rate_limit) */
    int64_t ann_min_faces;        /* collections this large search an HNSW graph; 0: never */
    int ann_ef_search;            /* HNSW candidates explored per query */
    int ann_build_threads;        /* threads building an HNSW graph */
    char allowed_hosts[1024];     /* "" or normalised names a browser may use (hosts.c) */
} http_config;

/* One row of the configuration table: the flag (--name), the environment variable, the
 * default as text and what it means. `vultus serve --help` prints the table. */
typedef struct http_option {
    const char *name;
    const char *env;
    const char *default_text;
    const char *meaning;
} http_option;

extern const http_option http_options[];
extern const int http_option_count;

/* Fills every field with its default. */
void http_config_defaults(http_config *c);
/* Sets the option `name` (as in http_options, without dashes) from text; BASE_ERR_INVALID
 * with a message naming the option and the value when the text is not valid for it, or when
 * no option has that name. */
int http_config_set(http_config *c, const char *name, const char *value);
/* Applies every VULTUS_* variable that is set (and not empty). First error wins. */
int http_config_from_env(http_config *c);
/* The VULTUS_* variables of the environment that vultus does not read (a typo in a ConfigMap,
 * VULTUS_WORKER for VULTUS_WORKERS, is otherwise silently a default), comma-separated into
 * out[cap] (truncated to fit); returns how many. Reads the environment only. */
int http_config_unknown_env(char *out, size_t cap);
/*
 * The CPUs this process may use, what --workers 0 starts a worker for: its CPU set
 * (sched_getaffinity: taskset, a container's cpuset), lowered to ceil(quota / period) when a
 * cgroup CPU quota of its cgroup or of an ancestor allows fewer (v2 cpu.max, v1
 * cpu.cfs_quota_us and cpu.cfs_period_us; a pod with a CPU limit of 1.5 on a 64-core node: 2).
 * root: "" for this machine's /proc/self/cgroup and /sys/fs/cgroup, or a folder that holds
 * ROOT/proc/self/cgroup and ROOT/sys/fs/cgroup/... (tests). Reads files only; at least 1.
 */
int http_available_cpus(const char *root);
/* Prints the options table (name, environment variable, default, meaning). */
void http_config_print_table(FILE *out);

typedef struct http_server http_server;

/*
 * Starts the service: opens the store (DATA/vultus.db, creating DATA when needed), binds the
 * listening socket, starts the event-loop thread and the workers, and starts loading the
 * models in the background (/readyz answers 503 until they are loaded). Call from the main
 * thread before any other thread exists: SIGTERM, SIGINT and SIGHUP are blocked in the
 * calling thread (and so in every thread it starts) for http_server_run() to wait on, and
 * SIGPIPE is ignored.
 */
int http_server_create(const http_config *config, http_server **out);
/* The bound TCP port (useful with port 0). */
int http_server_port(const http_server *s);
/*
 * Serves until SIGTERM or SIGINT, then drains: /readyz turns 503 at once; new connections
 * are still accepted for grace_ms, then refused; every request already received finishes;
 * returns 0 when all did within drain_timeout_ms, BASE_ERR_LIMIT when the timeout cut the
 * drain short. Also returns an error if the models or the store fail to load. Every error it
 * returns is already in the log, once (where it was detected): the caller does not log it.
 */
int http_server_run(http_server *s);
/* Stops everything and frees the server. Accepts NULL. */
void http_server_destroy(http_server *s);

/* ---- API keys ------------------------------------------------------------------------- */

/*
 * Ordered: a key may use a route whose scope is its own or below (server.c compares them).
 * checkin is read plus recording arrivals (POST .../checkins), for a device at an event's door:
 * such a device can be got at, and a write key there would let anyone enrol their own face
 * under someone else's subject. The store keeps scopes as text (http_scope_name), never these
 * numbers, so the order may change.
 */
enum http_scope {
    HTTP_SCOPE_READ = 1,
    HTTP_SCOPE_CHECKIN = 2,
    HTTP_SCOPE_WRITE = 3,
    HTTP_SCOPE_ADMIN = 4,
};

#define HTTP_KEY_ID_LEN 12 /* hex characters of a key's public id */
#define HTTP_KEY_MAX 96    /* characters of a key, including the NUL */

/* "read", "checkin", "write", "admin" -> enum http_scope; BASE_ERR_INVALID otherwise. */
int http_scope_parse(const char *text, enum http_scope *scope);
const char *http_scope_name(enum http_scope scope);

typedef struct http_key_info {
    char id[HTTP_KEY_ID_LEN + 1];
    enum http_scope scope;
    char collection[65]; /* "" when the key is not limited to one collection */
    char name[65];       /* a label, may be "" */
    int64_t created_ms;  /* Unix time */
} http_key_info;

/*
 * Creates an API key in the store of data_dir (created when needed): a random 32-byte
 * secret (getrandom), of which only the SHA-256 of the key text is stored. The key text
 * ("vk_" + id + "_" + secret, base64url) goes to key[HTTP_KEY_MAX] and cannot be recovered
 * later. collection and name may be NULL. A running server sees the key within a second.
 */
int http_keys_create(const char *data_dir, enum http_scope scope, const char *collection,
                     const char *name, char key[HTTP_KEY_MAX], http_key_info *info);
/* Every key (never the secrets), oldest first, in a new array the caller frees. */
int http_keys_list(const char *data_dir, http_key_info **keys, size_t *count);
/* The id in `text`: a key's text ("vk_" + id + "_" + secret: an operator revoking a leaked
 * key has that, not the id) or an id itself (HTTP_KEY_ID_LEN hex digits). BASE_ERR_INVALID
 * otherwise, with a message that does not quote the text (it may be a secret). */
int http_key_id_parse(const char *text, char id[HTTP_KEY_ID_LEN + 1]);
/* Deletes the key with this id; BASE_ERR_NOT_FOUND when there is none. */
int http_keys_revoke(const char *data_dir, const char *id);

#endif
