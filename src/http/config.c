/*
 * The configuration table of `vultus serve`: every option once, with its flag, environment
 * variable, default and meaning. Flags and VULTUS_* variables both go through
 * http_config_set(), so they accept the same text.
 */
#include "http/internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const http_option http_options[] = {
    {"listen", "VULTUS_LISTEN", ":7860",
     "address to listen on, [HOST]:PORT (port 0: any free one)"},
    {"models", "VULTUS_MODELS", "models", "model pack folder (tools/fetch-models)"},
    {"data", "VULTUS_DATA", "data", "data folder; the store is DATA/vultus.db"},
    {"store", "VULTUS_STORE", "",
     "PostgreSQL URL (postgres://USER:PASSWORD@HOST:5432/DB) of a store that replicas share, "
     "instead of DATA/vultus.db; pass it in the environment (a flag shows in ps)"},
    {"workers", "VULTUS_WORKERS", "0",
     "inference worker threads; 0: one per CPU this process may run on (its CPU set: in a "
     "container without one, every CPU of the node), fewer under a cgroup CPU quota "
     "(a CPU limit of 1.5: 2); counted once, at start: a changed CPU set or quota (as "
     "Kubernetes' in-place resize makes) takes a restart"},
    {"queue", "VULTUS_QUEUE", "64", "requests that may wait for a worker; more get 503"},
    {"deadline-ms", "VULTUS_DEADLINE_MS", "5000",
     "how long a request may wait to start (header X-Request-Deadline-Ms overrides)"},
    {"max-deadline-ms", "VULTUS_MAX_DEADLINE_MS", "60000",
     "the longest deadline a client may ask for"},
    {"max-body-bytes", "VULTUS_MAX_BODY_BYTES", "16777216", "largest request body (413 above)"},
    {"max-body-memory", "VULTUS_MAX_BODY_MEMORY", "536870912",
     "request-body bytes held at once, all requests together (at least --max-body-bytes); an "
     "upload past it gets 503 before its body is read"},
    {"max-pixels", "VULTUS_MAX_PIXELS", "40000000",
     "largest image, width x height (at most 40000000, the decoder's own limit)"},
    {"max-faces", "VULTUS_MAX_FACES", "50", "faces analysed per image (the largest are kept)"},
    {"batch-max", "VULTUS_BATCH_MAX", "8",
     "faces per batch of the per-face models, across requests; 1: batching off"},
    {"batch-wait-ms", "VULTUS_BATCH_WAIT_MS", "2",
     "how long a batch may wait to fill while other requests are being prepared"},
    {"worker-nice", "VULTUS_WORKER_NICE", "10",
     "added to the inference threads' niceness (0-19) so the event loop, which accepts, "
     "refuses and answers probes, runs at once even when every core computes; 0: off"},
    {"drain-timeout-ms", "VULTUS_DRAIN_TIMEOUT_MS", "25000",
     "after SIGTERM, the longest wait for requests in flight"},
    {"grace-ms", "VULTUS_GRACE_MS", "2000",
     "after SIGTERM, keep accepting connections this long while /readyz says 503"},
    {"read-timeout-ms", "VULTUS_READ_TIMEOUT_MS", "30000",
     "a request's headers and body must arrive within this (slow clients are closed)"},
    {"max-connections", "VULTUS_MAX_CONNECTIONS", "1000", "open connections, at most"},
    {"rate-limit", "VULTUS_RATE_LIMIT", "0", "requests per second per API key; 0: unlimited"},
    {"rate-burst", "VULTUS_RATE_BURST", "0", "rate-limit bucket size; 0: twice the rate"},
    {"ann-min-faces", "VULTUS_ANN_MIN_FACES", "0",
     "a collection with this many faces also gets an HNSW graph, built in the background, "
     "that answers its searches (faster for millions of faces, but approximate: see "
     "docs/gallery.md for recall); 0: never, every search is exact"},
    {"ann-ef-search", "VULTUS_ANN_EF_SEARCH", "256",
     "HNSW candidates explored per query: higher finds more of the true top-k, slower"},
    {"ann-build-threads", "VULTUS_ANN_BUILD_THREADS", "1",
     "threads building an HNSW graph, at a low CPU priority so they use only what requests "
     "leave idle (but a CPU autoscaler counts them as load)"},
    {"allowed-hosts", "VULTUS_ALLOWED_HOSTS", "",
     "host names (comma-separated) by which a browser may reach the API and the web page "
     "while no API key exists, against DNS rebinding: other names get 403 host_not_allowed. "
     "IP addresses, localhost and *.localhost always may; .example.com allows a domain and its "
     "subdomains, * any name. Set, it applies with keys too"},
};
const int http_option_count = (int)(sizeof http_options / sizeof http_options[0]);

void http_config_defaults(http_config *c)
{
    memset(c, 0, sizeof *c);
    for (int i = 0; i < http_option_count; i++) {
        int rc = http_config_set(c, http_options[i].name, http_options[i].default_text);
        BASE_ASSERT(rc == 0);
    }
}

static int parse_long(const char *name, const char *text, long long min, long long max,
                      long long *out)
{
    errno = 0;
    char *end = NULL;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end != '\0' || v < min || v > max)
        return base_error_set(BASE_ERR_INVALID, "--%s %s: expected an integer in [%lld, %lld]",
                              name, text, min, max);
    *out = v;
    return 0;
}

static int parse_text(const char *name, const char *text, char *out, size_t cap)
{
    size_t n = strlen(text);
    if (n == 0 || n >= cap)
        return base_error_set(BASE_ERR_INVALID, "--%s: expected 1..%zu characters", name, cap - 1);
    memcpy(out, text, n + 1);
    return 0;
}

/* [HOST]:PORT with PORT in 0..65535. */
static int parse_listen(const char *text, char *out, size_t cap)
{
    const char *colon = strrchr(text, ':');
    long long port;
    if (!colon || parse_long("listen", colon + 1, 0, 65535, &port) != 0)
        return base_error_set(BASE_ERR_INVALID, "--listen %s: expected [HOST]:PORT", text);
    return parse_text("listen", text, out, cap);
}

int http_config_set(http_config *c, const char *name, const char *value)
{
    long long v = 0;
    int rc = 0;
#define INT_OPTION(flag, field, min, max)                                                          \
    if (strcmp(name, flag) == 0) {                                                                 \
        if ((rc = parse_long(name, value, min, max, &v))) return rc;                               \
        c->field = v;                                                                              \
        return 0;                                                                                  \
    }
    if (strcmp(name, "listen") == 0) return parse_listen(value, c->listen, sizeof c->listen);
    if (strcmp(name, "models") == 0)
        return parse_text(name, value, c->models_dir, sizeof c->models_dir);
    if (strcmp(name, "data") == 0) return parse_text(name, value, c->data_dir, sizeof c->data_dir);
    if (strcmp(name, "allowed-hosts") == 0) {
        /* Into a copy: a list refused halfway must leave the one set before. Zeroed, so that
         * equal lists are equal configurations (compared whole by the tests). */
        char list[sizeof c->allowed_hosts] = "";
        if ((rc = http_allowed_hosts_parse(value, list, sizeof list))) return rc;
        memcpy(c->allowed_hosts, list, sizeof list);
        return 0;
    }
    if (strcmp(name, "store") == 0) {
        /* Never echo the value: it may hold a password. */
        if (*value && !gal_location_is_url(value))
            return base_error_set(BASE_ERR_INVALID,
                                  "--store: expected a postgres:// or postgresql:// URL (or "
                                  "nothing for the SQLite file DATA/vultus.db)");
        if (strlen(value) >= sizeof c->store)
            return base_error_set(BASE_ERR_INVALID, "--store: longer than %zu characters",
                                  sizeof c->store - 1);
        snprintf(c->store, sizeof c->store, "%s", value);
        return 0;
    }
    INT_OPTION("workers", workers, 0, 256)
    INT_OPTION("queue", queue, 0, 100000)
    INT_OPTION("deadline-ms", deadline_ms, 1, 3600000)
    INT_OPTION("max-deadline-ms", max_deadline_ms, 1, 3600000)
    INT_OPTION("max-body-bytes", max_body_bytes, 1024, (long long)1 << 32)
    INT_OPTION("max-body-memory", max_body_memory, 1024, (long long)1 << 40)
    INT_OPTION("max-pixels", max_pixels, 1, IMG_DEFAULT_MAX_PIXELS)
    INT_OPTION("max-faces", max_faces, 1, GAL_QUERIES_MAX)
    INT_OPTION("batch-max", batch_max, 1, 256)
    INT_OPTION("batch-wait-ms", batch_wait_ms, 0, 60000)
    INT_OPTION("worker-nice", worker_nice, 0, 19)
    INT_OPTION("drain-timeout-ms", drain_timeout_ms, 0, 3600000)
    INT_OPTION("grace-ms", grace_ms, 0, 3600000)
    INT_OPTION("read-timeout-ms", read_timeout_ms, 100, 3600000)
    INT_OPTION("max-connections", max_connections, 1, 1000000)
    INT_OPTION("rate-burst", rate_burst, 0, 1000000)
    INT_OPTION("ann-min-faces", ann_min_faces, 0, GAL_FACES_MAX)
    INT_OPTION("ann-ef-search", ann_ef_search, 1, 10000)
    INT_OPTION("ann-build-threads", ann_build_threads, 1, 256)
#undef INT_OPTION
    if (strcmp(name, "rate-limit") == 0) {
        char *end = NULL;
        errno = 0;
        double d = strtod(value, &end);
        if (errno || end == value || *end != '\0' || !isfinite(d) || d < 0 || d > 1e6)
            return base_error_set(BASE_ERR_INVALID,
                                  "--rate-limit %s: expected requests per second in [0, 1e6]",
                                  value);
        c->rate_limit = d;
        return 0;
    }
    return base_error_set(BASE_ERR_INVALID, "unknown option --%s", name);
}

int http_config_from_env(http_config *c)
{
    for (int i = 0; i < http_option_count; i++) {
        const char *v = getenv(http_options[i].env);
        if (!v || !*v) continue;
        int rc = http_config_set(c, http_options[i].name, v);
        if (rc) {
            char why[512];
            snprintf(why, sizeof why, "%s", base_error_message());
            int secret = strcmp(http_options[i].name, "store") == 0; /* may hold a password */
            return base_error_set(rc, "%s=%s: %s", http_options[i].env, secret ? "..." : v, why);
        }
    }
    return 0;
}

/* Variables read elsewhere than the options table: main.c (the log level), gallery/pg.c (the
 * PostgreSQL wait). tests/http/test_deploy_config.c lists every getenv of src/. */
static const char *const other_variables[] = {"VULTUS_LOG_LEVEL", "VULTUS_STORE_TIMEOUT_MS"};

int http_config_unknown_env(char *out, size_t cap)
{
    extern char **environ;
    int n = 0;
    size_t used = 0;
    if (cap) out[0] = '\0';
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, "VULTUS_", 7) != 0) continue;
        size_t len = strcspn(*e, "=");
        int known = 0;
        for (int i = 0; i < http_option_count && !known; i++)
            known =
                strlen(http_options[i].env) == len && strncmp(http_options[i].env, *e, len) == 0;
        for (size_t i = 0; i < sizeof other_variables / sizeof *other_variables && !known; i++)
            known = strlen(other_variables[i]) == len && strncmp(other_variables[i], *e, len) == 0;
        if (known) continue;
        n++;
        int w = snprintf(out + used, cap - used, "%s%.*s", used ? "," : "", (int)len, *e);
        if (w > 0 && used + (size_t)w < cap)
            used += (size_t)w;
        else if (used < cap)
            out[used] = '\0'; /* the name does not fit: left out, counted */
    }
    return n;
}

void http_config_print_table(FILE *out)
{
    fprintf(out, "  %-20s %-24s %-10s %s\n", "flag", "environment", "default", "meaning");
    for (int i = 0; i < http_option_count; i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--%s", http_options[i].name);
        fprintf(out, "  %-20s %-24s %-10s %s\n", flag, http_options[i].env,
                http_options[i].default_text, http_options[i].meaning);
    }
}

/* DIR/NAME for reading; NULL when absent (or the path is too long to be a cgroup's). */
static FILE *open_in(const char *dir, const char *name)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%s", dir, name);
    return n > 0 && (size_t)n < sizeof path ? fopen(path, "r") : NULL;
}

/* The CPUs a cgroup CPU quota allows at `dir`: ceil(quota / period) from cgroup v2's cpu.max
 * ("max 100000": none; "150000 100000": 2) or v1's cpu.cfs_quota_us (-1: none) and
 * cpu.cfs_period_us. 0 when the folder sets no quota (or has no such file). */
static long quota_cpus_at(const char *dir)
{
    long long quota = -1, period = 0;
    char text[128];
    FILE *f = open_in(dir, "cpu.max");
    if (f) {
        if (fgets(text, sizeof text, f) && strncmp(text, "max", 3) != 0 &&
            sscanf(text, "%lld %lld", &quota, &period) != 2)
            quota = -1;
        fclose(f);
    } else {
        if ((f = open_in(dir, "cpu.cfs_quota_us"))) {
            if (fscanf(f, "%lld", &quota) != 1) quota = -1;
            fclose(f);
        }
        if (quota > 0 && (f = open_in(dir, "cpu.cfs_period_us"))) {
            if (fscanf(f, "%lld", &period) != 1) period = 0;
            fclose(f);
        }
    }
    if (quota <= 0 || period <= 0) return 0;
    long long cpus = (quota + period - 1) / period;
    return cpus > INT_MAX ? INT_MAX : (long)cpus;
}

/* The lowest quota of the cgroup `rel` ("/kubepods/pod1/abc") under the hierarchy mounted at
 * `mount`, of its ancestors and of the mount itself: a pod's limit may be set on the pod's
 * cgroup and not on its container's, and in a container with its own cgroup namespace the
 * process's cgroup is "/" and the mount is that cgroup. Folders that do not exist (a path of
 * another namespace) are skipped. 0: no quota. */
static long quota_cpus_under(const char *mount, const char *rel)
{
    char dir[PATH_MAX];
    int n = snprintf(dir, sizeof dir, "%s%s", mount, strcmp(rel, "/") == 0 ? "" : rel);
    if (n < 0 || (size_t)n >= sizeof dir) return 0;
    size_t root_len = strlen(mount);
    long best = 0;
    for (;;) {
        long q = quota_cpus_at(dir);
        if (q > 0 && (best == 0 || q < best)) best = q;
        char *slash = strrchr(dir, '/');
        if (strlen(dir) <= root_len || !slash || (size_t)(slash - dir) < root_len) break;
        *slash = '\0';
    }
    return best;
}

int http_available_cpus(const char *root)
{
    cpu_set_t set;
    long cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set)
                                                            : sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1) cpus = 1;
    char path[PATH_MAX], line[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/proc/self/cgroup", root);
    FILE *f = fopen(path, "r");
    if (!f) return (int)cpus;
    /* "0::/path" (v2, unified) or "4:cpu,cpuacct:/path" (v1): the hierarchy with the cpu
     * controller holds the quota. */
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2 || c2[1] != '/') continue;
        *c2 = '\0';
        const char *controllers = c1 + 1, *rel = c2 + 1;
        char mount[PATH_MAX];
        long q = 0;
        if (!*controllers) {
            snprintf(mount, sizeof mount, "%s/sys/fs/cgroup", root);
            q = quota_cpus_under(mount, rel);
            if (!q) { /* a hybrid host: v2 mounted beside v1 */
                snprintf(mount, sizeof mount, "%s/sys/fs/cgroup/unified", root);
                q = quota_cpus_under(mount, rel);
            }
        } else {
            int has_cpu = 0;
            for (const char *p = controllers; *p; p += strcspn(p, ","), p += *p == ',')
                has_cpu |= strcspn(p, ",") == 3 && strncmp(p, "cpu", 3) == 0;
            if (!has_cpu) continue;
            /* mounted as "cpu", "cpu,cpuacct" (a symlink "cpu" beside it on most systems) */
            snprintf(mount, sizeof mount, "%s/sys/fs/cgroup/%s", root, controllers);
            q = quota_cpus_under(mount, rel);
            if (!q) {
                snprintf(mount, sizeof mount, "%s/sys/fs/cgroup/cpu", root);
                q = quota_cpus_under(mount, rel);
            }
        }
        if (q > 0 && q < cpus) cpus = q;
    }
    fclose(f);
    return (int)cpus;
}
