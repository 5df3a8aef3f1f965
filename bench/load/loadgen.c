/*
 * loadgen — the load generator of `make bench-load` (bench/load/run): HTTP/1.1 over loopback,
 * one thread, epoll, keep-alive connections. It measures what wrk cannot give separately: the
 * latency of refused requests (503) apart from that of served ones.
 *
 *   loadgen run  --port P --body FILE [options]   load; one JSON line on stdout
 *   loadgen wait --port P [--timeout-ms T] [--pid PID]
 *                                                 until GET /readyz answers 200 (exit 0) or
 *                                                 the time is up or PID has ended (exit 1)
 *   loadgen ready --port P [--runs N] [--timeout-ms T] -- COMMAND [ARG...]
 *                                                 N times: start COMMAND, ms from fork() to
 *                                                 the first /readyz 200, SIGTERM, wait; one
 *                                                 JSON line with every time and the median
 *   loadgen port                                  prints a free TCP port of 127.0.0.1
 *
 * Two ways to load (run):
 *   closed loop (--connections N): N connections, each sends its next request as soon as the
 *     previous answer is in: concurrency N, the rate is what the server gives. After a 503 a
 *     connection waits its Retry-After (at most 10 s) first, as a client that is told to come
 *     back later does; otherwise the clients that a full queue refuses would retry in a
 *     tight loop and measure a storm of refusals instead of the service
 *     (--retry-after ignore does that).
 *   open loop (--rate R): a request is due every 1/R s whatever the answers do (an overload
 *     test must not slow down with the server); each goes out on an idle connection, or a new
 *     one, up to --connections (default 1000). When none is free the request waits in the
 *     client; `late_p99_ms` (due time to first byte sent) says whether the generator kept up.
 *
 * Latency is from the first byte of the request sent to the last byte of the answer. Only
 * answers that arrive in the measured window (after --warmup s, for --duration s) count;
 * requests still out at the end are dropped, not counted. Results: `ok` (2xx) with rps and
 * latency percentiles; `rejected` (503) with their own percentiles; `errors` = every other
 * status + connection failures + timeouts (--timeout-ms, default 30 s), each also counted
 * apart. With --pid, the process's VmRSS (/proc/PID/status) is sampled every 100 ms:
 * rss_start_mb when the window opens, rss_end_mb when it closes, rss_max_mb over the run;
 * and its CPU time (/proc/PID/stat) over the window: server_cpu_s and cpu_ms_per_answer.
 * --tag KEY=VALUE puts fields first in the JSON line (numbers, true, false, null as they are,
 * anything else as a string), so a driver script can label each run.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTIONS 20000
#define MAX_TAGS 32
#define MAX_HEADERS 16
#define MAX_BODY_BYTES (64u << 20)
#define MAX_RESPONSE_BYTES (16u << 20) /* a larger answer is a client error, not a crash */

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) die("out of memory (%zu bytes)", n);
    return q;
}

/* ---- samples ----------------------------------------------------------------------------- */

typedef struct samples {
    double *v;
    size_t n, cap;
} samples;

static void samples_add(samples *s, double x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->v = xrealloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = x;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void samples_sort(samples *s)
{
    if (s->n > 1) qsort(s->v, s->n, sizeof *s->v, compare_double);
}

/* Nearest-rank percentile (p in 0..100) of sorted values; NAN when there are none. */
static double percentile(const samples *s, double p)
{
    if (s->n == 0) return NAN;
    size_t rank = (size_t)ceil(p / 100.0 * (double)s->n);
    if (rank < 1) rank = 1;
    return s->v[rank - 1];
}

/* ---- JSON output ------------------------------------------------------------------------- */

typedef struct json_line {
    char buf[8192];
    size_t len;
} json_line;

static void json_raw(json_line *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void json_raw(json_line *j, const char *fmt, ...)
{
    if (j->len >= sizeof j->buf) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(j->buf + j->len, sizeof j->buf - j->len, fmt, ap);
    va_end(ap);
    if (n > 0) j->len += (size_t)n;
    if (j->len >= sizeof j->buf) j->len = sizeof j->buf - 1;
}

static void json_sep(json_line *j)
{
    json_raw(j, "%s", j->len <= 1 ? "" : ",");
}

static void json_string(json_line *j, const char *s)
{
    json_raw(j, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            json_raw(j, "\\%c", c);
        else if (c < 0x20)
            json_raw(j, "\\u%04x", c);
        else
            json_raw(j, "%c", c);
    }
    json_raw(j, "\"");
}

static void json_int(json_line *j, const char *key, long long v)
{
    json_sep(j);
    json_raw(j, "\"%s\":%lld", key, v);
}

/* Numbers print with 3 decimals at most; NAN (no sample) prints as null. */
static void json_num(json_line *j, const char *key, double v)
{
    json_sep(j);
    if (!isfinite(v))
        json_raw(j, "\"%s\":null", key);
    else if (v == floor(v) && fabs(v) < 1e15)
        json_raw(j, "\"%s\":%.0f", key, v);
    else
        json_raw(j, "\"%s\":%.3f", key, v);
}

/* A --tag value is a JSON literal when it reads as one (a number, true, false, null). */
static int is_json_literal(const char *v)
{
    if (!strcmp(v, "true") || !strcmp(v, "false") || !strcmp(v, "null")) return 1;
    char *end = NULL;
    errno = 0;
    double d = strtod(v, &end);
    return *v && !errno && *end == '\0' && isfinite(d) && strspn(v, "-0123456789.eE+") == strlen(v);
}

static void json_tag(json_line *j, const char *tag)
{
    const char *eq = strchr(tag, '=');
    if (!eq || eq == tag) die("--tag %s: expected KEY=VALUE", tag);
    char key[128];
    snprintf(key, sizeof key, "%.*s", (int)(eq - tag), tag);
    json_sep(j);
    json_string(j, key);
    json_raw(j, ":");
    if (is_json_literal(eq + 1))
        json_raw(j, "%s", eq + 1);
    else
        json_string(j, eq + 1);
}

/* ---- sockets ----------------------------------------------------------------------------- */

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

/* A non-blocking socket with connect() started; -1 when the system refuses one. */
static int connect_start(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = loopback(port);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One blocking GET with a time limit; returns the status, or 0 when there was no answer. */
static int http_get_status(int port, const char *path, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = loopback(port);
    int status = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        char req[256];
        int n = snprintf(req, sizeof req,
                         "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
        if (send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
            char buf[64];
            size_t got = 0;
            while (got < sizeof buf - 1) {
                ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
                if (r <= 0) break;
                got += (size_t)r;
                if (got >= 12) break;
            }
            buf[got] = '\0';
            if (got >= 12 && strncmp(buf, "HTTP/1.", 7) == 0) status = atoi(buf + 9);
        }
    }
    close(fd);
    return status;
}

static int process_alive(pid_t pid)
{
    if (pid <= 0) return 1;
    return kill(pid, 0) == 0 || errno == EPERM;
}

/* VmRSS of pid in MB (1 MB = 2^20 bytes), or NAN when it cannot be read. */
static double rss_mb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return NAN;
    double mb = NAN;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            mb = strtod(line + 6, NULL) / 1024.0; /* the file says kB */
            break;
        }
    }
    fclose(f);
    return mb;
}

/* CPU seconds (user + system, every thread) pid has used, or NAN when it cannot be read. */
static double cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return NAN;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields 14 and 15 (utime, stime, clock ticks) count from the one after the command
     * name's closing parenthesis, which is field 2 and may hold spaces. */
    const char *p = strrchr(buf, ')');
    if (!p) return NAN;
    unsigned long long utime = 0, stime = 0;
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) !=
        2)
        return NAN;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* ---- the load loop ----------------------------------------------------------------------- */

typedef struct options {
    int port;
    const char *path, *body_file, *content_type;
    const char *headers[MAX_HEADERS];
    int n_headers;
    const char *tags[MAX_TAGS];
    int n_tags;
    int connections; /* closed loop: concurrency; open loop: the most connections */
    double rate;     /* requests per second; > 0: open loop */
    double duration_s, warmup_s;
    int timeout_ms;
    pid_t pid;
    int runs;               /* ready */
    int ignore_retry_after; /* closed loop: send again at once after a 503 */
} options;

enum conn_state { CONN_FREE, CONN_CONNECTING, CONN_IDLE, CONN_BUSY };

typedef struct conn {
    int fd;
    enum conn_state state;
    size_t sent; /* bytes of the request written */
    char *in;    /* the answer so far */
    size_t in_len, in_cap;
    double t_due;      /* open loop: when the request was due */
    double t_sent;     /* first byte written; 0 before */
    int has_request;   /* a request is assigned (maybe not yet written) */
    int write_blocked; /* EPOLLOUT is armed */
    int retry_after_s; /* of the last answer; 0: none */
    double resume_at;  /* closed loop: no request before this (after a 503's Retry-After) */
} conn;

typedef struct stats {
    samples ok, rejected, late;
    long long requests, errors, timeouts, conn_errors, status_other, http_4xx, http_5xx;
    int first_error_status;
    char first_error[200];
} stats;

#define BACKLOG_MAX 65536

typedef struct loop {
    const options *o;
    int ep;
    conn *conns;
    int n_conns; /* slots in use (some may be FREE) */
    char *request;
    size_t request_len;
    double t0, t_window_start, t_window_end;
    stats st;
    int open_count; /* connections that exist */
    /* Open loop: requests made due so far; those due but waiting for a connection (a ring of
     * their due times, oldest at backlog_head); those dropped because the ring was full. */
    long long due_index;
    size_t backlog, backlog_head;
    double backlog_due[BACKLOG_MAX];
    long long client_dropped;
    /* --pid: VmRSS when the window opened, at its end, and the most seen. */
    double rss_start, rss_end, rss_max, next_rss;
    /* --pid: its CPU seconds when the window opened and when it closed. */
    double cpu_start, cpu_end;
} loop;

static void note_error(loop *l, int status, const char *what)
{
    if (l->st.first_error[0]) return;
    l->st.first_error_status = status;
    snprintf(l->st.first_error, sizeof l->st.first_error, "%s", what);
}

static void conn_close(loop *l, conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(l->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        l->open_count--;
    }
    c->fd = -1;
    c->state = CONN_FREE;
    c->has_request = 0;
    c->in_len = 0;
    c->write_blocked = 0;
}

static int conn_open(loop *l, conn *c)
{
    c->fd = connect_start(l->o->port);
    if (c->fd < 0) return -1;
    l->open_count++;
    c->state = CONN_CONNECTING;
    c->in_len = 0;
    c->sent = 0;
    c->has_request = 0;
    c->write_blocked = 1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(l->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        close(c->fd);
        c->fd = -1;
        l->open_count--;
        c->state = CONN_FREE;
        return -1;
    }
    return 0;
}

static void conn_want_write(loop *l, conn *c, int want)
{
    if (c->write_blocked == want) return;
    c->write_blocked = want;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(l->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Counts a finished request by its answer (status 0: none came) when it ended in the window. */
static void record(loop *l, conn *c, int status, int timed_out)
{
    double t = now_ms();
    /* A closed-loop client is a user: told to come back later, it does (at most 10 s). */
    if (status == 503 && c->retry_after_s > 0 && l->o->rate <= 0 && !l->o->ignore_retry_after)
        c->resume_at = t + 1e3 * (c->retry_after_s < 10 ? c->retry_after_s : 10);
    if (t < l->t_window_start || t > l->t_window_end || c->t_sent <= 0) return;
    double ms = t - c->t_sent;
    stats *s = &l->st;
    s->requests++;
    if (c->t_due > 0) samples_add(&s->late, c->t_sent - c->t_due);
    if (status >= 200 && status < 300) {
        samples_add(&s->ok, ms);
    } else if (status == 503) {
        samples_add(&s->rejected, ms);
    } else {
        s->errors++;
        if (timed_out)
            s->timeouts++;
        else if (status == 0)
            s->conn_errors++;
        else {
            s->status_other++;
            if (status >= 500)
                s->http_5xx++;
            else if (status >= 400)
                s->http_4xx++;
        }
        char what[160];
        if (status) {
            const char *body = c->in ? strstr(c->in, "\r\n\r\n") : NULL;
            snprintf(what, sizeof what, "HTTP %d %.120s", status, body ? body + 4 : "");
        } else {
            snprintf(what, sizeof what, "%s",
                     timed_out ? "timeout" : "connection failed or closed");
        }
        note_error(l, status, what);
    }
}

/* Writes as much of the request as the socket takes. Returns -1 when the connection broke. */
static int conn_write(loop *l, conn *c)
{
    while (c->sent < l->request_len) {
        ssize_t n = send(c->fd, l->request + c->sent, l->request_len - c->sent, MSG_NOSIGNAL);
        if (n > 0) {
            if (c->sent == 0) c->t_sent = now_ms();
            c->sent += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            conn_want_write(l, c, 1);
            return 0;
        }
        if (n < 0 && errno == EINTR) continue;
        return -1;
    }
    conn_want_write(l, c, 0);
    return 0;
}

/* Gives connection c its next request and starts writing it. */
static void conn_send(loop *l, conn *c, double t_due)
{
    c->state = CONN_BUSY;
    c->has_request = 1;
    c->sent = 0;
    c->t_sent = 0;
    c->t_due = t_due;
    c->in_len = 0;
    if (conn_write(l, c) == 0) return;
    if (c->sent > 0) { /* broke mid-request: a failure */
        record(l, c, 0, 0);
        conn_close(l, c);
        return;
    }
    /* Nothing went out: a keep-alive connection the server closed while it was idle (a normal
     * end of an idle connection, not a failure). The request goes out on a new one. */
    conn_close(l, c);
    if (conn_open(l, c) != 0) {
        c->t_sent = now_ms();
        record(l, c, 0, 0);
        return;
    }
    c->has_request = 1;
    c->t_due = t_due;
}

/*
 * Parses an answer in c->in. Returns 1 with *status and *close_after when whole, 0 when more
 * bytes are needed, -1 when it is malformed. Handles Content-Length and chunked bodies.
 */
static int parse_response(conn *c, int *status, int *close_after)
{
    if (c->in_len < 12) return 0;
    c->retry_after_s = 0;
    char *head_end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!head_end) return c->in_len > 65536 ? -1 : 0;
    if (strncmp(c->in, "HTTP/1.", 7) != 0) return -1;
    *status = atoi(c->in + 9);
    size_t head_len = (size_t)(head_end - c->in) + 4;
    long long content_length = -1;
    int chunked = 0;
    *close_after = c->in[7] == '0'; /* HTTP/1.0 closes unless told otherwise */
    for (char *line = memchr(c->in, '\n', head_len); line && line < head_end;
         line = memchr(line + 1, '\n', (size_t)(head_end - line))) {
        char *h = line + 1;
        if (strncasecmp(h, "Content-Length:", 15) == 0)
            content_length = atoll(h + 15);
        else if (strncasecmp(h, "Retry-After:", 12) == 0)
            c->retry_after_s = atoi(h + 12);
        else if (strncasecmp(h, "Transfer-Encoding:", 18) == 0) {
            const char *end = memchr(h, '\r', (size_t)(head_end - h) + 1);
            chunked = end && memmem(h, (size_t)(end - h), "chunked", 7) != NULL;
        } else if (strncasecmp(h, "Connection:", 11) == 0) {
            const char *end = memchr(h, '\r', (size_t)(head_end - h) + 1);
            size_t n = end ? (size_t)(end - h) : 0;
            if (memmem(h, n, "close", 5)) *close_after = 1;
            if (memmem(h, n, "keep-alive", 10)) *close_after = 0;
        }
    }
    if (*status == 204 || *status == 304 || (*status >= 100 && *status < 200)) return 1;
    if (chunked) {
        size_t at = head_len;
        for (;;) {
            char *eol = memmem(c->in + at, c->in_len - at, "\r\n", 2);
            if (!eol) return 0;
            char *end = NULL;
            unsigned long long size = strtoull(c->in + at, &end, 16);
            if (end == c->in + at) return -1;
            at = (size_t)(eol - c->in) + 2;
            if (size == 0) {
                /* Trailers end with an empty line. */
                char *fin = memmem(c->in + at, c->in_len - at, "\r\n", 2);
                while (fin && fin != c->in + at) {
                    at = (size_t)(fin - c->in) + 2;
                    fin = memmem(c->in + at, c->in_len - at, "\r\n", 2);
                }
                return fin ? 1 : 0;
            }
            if (size > MAX_RESPONSE_BYTES) return -1;
            if (c->in_len - at < size + 2) return 0;
            at += size + 2;
        }
    }
    if (content_length < 0) {
        /* Without a length the body ends when the connection does. */
        *close_after = 1;
        return 0;
    }
    if (content_length > MAX_RESPONSE_BYTES) return -1;
    return c->in_len >= head_len + (size_t)content_length ? 1 : 0;
}

/* Reads what has arrived; finishes the request when its answer is whole. Returns 1 when the
 * connection is idle again, 0 when it waits for more, -1 when it was closed. */
static int conn_read(loop *l, conn *c)
{
    for (;;) {
        if (c->in_cap - c->in_len < 65536) {
            c->in_cap = c->in_cap ? c->in_cap * 2 : 131072;
            if (c->in_cap > MAX_RESPONSE_BYTES + 131072) {
                record(l, c, 0, 0);
                note_error(l, 0, "answer too large");
                conn_close(l, c);
                return -1;
            }
            c->in = xrealloc(c->in, c->in_cap + 1);
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            c->in[c->in_len] = '\0';
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        int eof = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
        int status = 0, close_after = 0;
        int whole = c->has_request ? parse_response(c, &status, &close_after) : 0;
        if (whole == 0 && eof && c->has_request && c->in_len > 0) {
            /* An answer without a length ends at EOF. */
            char *head_end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
            if (head_end && strncmp(c->in, "HTTP/1.", 7) == 0) {
                status = atoi(c->in + 9);
                whole = 1;
                close_after = 1;
            }
        }
        if (whole == 1) {
            record(l, c, status, 0);
            /* An early answer (a refusal before the body was read) leaves the request half
             * sent: the connection cannot carry another one. */
            if (close_after || eof || c->sent < l->request_len) {
                conn_close(l, c);
                return -1;
            }
            c->state = CONN_IDLE;
            c->has_request = 0;
            c->in_len = 0;
            return 1;
        }
        if (whole < 0 || eof) {
            if (c->has_request) record(l, c, whole < 0 ? -1 : 0, 0);
            if (whole < 0) note_error(l, -1, "malformed answer");
            conn_close(l, c);
            return -1;
        }
        return 0;
    }
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0 || (uint64_t)st.st_size > MAX_BODY_BYTES)
        die("%s: not a readable file of at most %u bytes", path, MAX_BODY_BYTES);
    char *buf = xrealloc(NULL, (size_t)st.st_size);
    if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) die("cannot read %s", path);
    fclose(f);
    *len = (size_t)st.st_size;
    return buf;
}

static void build_request(loop *l)
{
    const options *o = l->o;
    size_t body_len = 0;
    char *body = read_file(o->body_file, &body_len);
    char head[4096];
    int n = snprintf(head, sizeof head,
                     "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\n",
                     o->path, o->port, o->content_type, body_len);
    for (int i = 0; i < o->n_headers && n < (int)sizeof head; i++)
        n += snprintf(head + n, sizeof head - (size_t)n, "%s\r\n", o->headers[i]);
    if (n + 3 >= (int)sizeof head) die("request headers too long");
    n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    l->request_len = (size_t)n + body_len;
    l->request = xrealloc(NULL, l->request_len);
    memcpy(l->request, head, (size_t)n);
    memcpy(l->request + n, body, body_len);
    free(body);
}

/* An idle connection for an open-loop request: an idle one, else a new one (it sends when
 * connected), else NULL when --connections are all busy. */
static conn *take_connection(loop *l)
{
    for (int i = 0; i < l->n_conns; i++)
        if (l->conns[i].state == CONN_IDLE) return &l->conns[i];
    for (int i = 0; i < l->o->connections; i++) {
        conn *c = &l->conns[i];
        if (c->state != CONN_FREE) continue;
        if (i >= l->n_conns) l->n_conns = i + 1;
        if (conn_open(l, c) != 0) return NULL;
        return c;
    }
    return NULL;
}

/* Samples the server's VmRSS every 100 ms. Returns -1 when the process has ended. */
static int sample_rss(loop *l, double t)
{
    if (l->o->pid <= 0 || t < l->next_rss) return 0;
    l->next_rss = t + 100;
    double mb = rss_mb(l->o->pid);
    if (!isfinite(mb)) return process_alive(l->o->pid) ? 0 : -1;
    if (!isfinite(l->rss_max) || mb > l->rss_max) l->rss_max = mb;
    if (!isfinite(l->rss_start) && t >= l->t_window_start) {
        l->rss_start = mb;
        l->cpu_start = cpu_s(l->o->pid);
    }
    return 0;
}

/* Open loop: makes due every request whose time has come and sends what it can. */
static void open_loop_dispatch(loop *l, double t)
{
    for (;;) {
        double due = l->t0 + (double)l->due_index * 1e3 / l->o->rate;
        if (due > t) break;
        l->due_index++;
        if (l->backlog == BACKLOG_MAX) { /* the client cannot keep up: say so, do not grow */
            l->client_dropped++;
            continue;
        }
        l->backlog_due[(l->backlog_head + l->backlog) % BACKLOG_MAX] = due;
        l->backlog++;
    }
    while (l->backlog > 0) {
        conn *c = take_connection(l);
        if (!c) break;
        double due = l->backlog_due[l->backlog_head];
        l->backlog_head = (l->backlog_head + 1) % BACKLOG_MAX;
        l->backlog--;
        if (c->state == CONN_IDLE) {
            conn_send(l, c, due);
        } else { /* connecting: the request goes out when connect() is done */
            c->has_request = 1;
            c->t_due = due;
            c->t_sent = 0;
            c->sent = 0;
        }
    }
}

/* Closed loop: every connection the server closed is opened again, and every one that has
 * waited out a Retry-After sends again. */
static void closed_loop_refill(loop *l, double t)
{
    for (int i = 0; i < l->n_conns; i++) {
        conn *c = &l->conns[i];
        if (t < c->resume_at) continue;
        if (c->state == CONN_FREE)
            conn_open(l, c);
        else if (c->state == CONN_IDLE)
            conn_send(l, c, 0);
    }
}

static void expire_timeouts(loop *l, double t)
{
    for (int i = 0; i < l->n_conns; i++) {
        conn *c = &l->conns[i];
        if (c->state == CONN_BUSY && c->t_sent > 0 && t - c->t_sent > l->o->timeout_ms) {
            record(l, c, 0, 1);
            conn_close(l, c);
        }
    }
}

/* A connect() finished (or failed). */
static void on_connected(loop *l, conn *c, uint32_t ev, double t)
{
    int open_loop = l->o->rate > 0;
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err || (ev & (EPOLLERR | EPOLLHUP))) {
        if (c->has_request) {
            c->t_sent = now_ms();
            record(l, c, 0, 0);
        } else {
            note_error(l, 0, "connect failed");
            if (t >= l->t_window_start && t <= l->t_window_end) {
                l->st.requests++;
                l->st.errors++;
                l->st.conn_errors++;
            }
        }
        conn_close(l, c);
        if (!open_loop) usleep(1000); /* do not spin on a refusing server */
        return;
    }
    if (!(ev & EPOLLOUT)) return;
    if (c->has_request) {
        conn_send(l, c, c->t_due);
    } else if (open_loop) {
        c->state = CONN_IDLE;
        conn_want_write(l, c, 0);
    } else {
        conn_send(l, c, 0);
    }
}

static void on_event(loop *l, conn *c, uint32_t ev, double t)
{
    if (c->state == CONN_CONNECTING) {
        on_connected(l, c, ev, t);
        return;
    }
    if ((ev & EPOLLOUT) && c->state == CONN_BUSY && c->sent < l->request_len) {
        if (conn_write(l, c) != 0) {
            /* The server may have answered early and closed: read what came. */
            if (conn_read(l, c) == 0) {
                record(l, c, 0, 0);
                conn_close(l, c);
            }
            return;
        }
    }
    if (!(ev & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))) return;
    if (c->state == CONN_IDLE) {
        /* An idle keep-alive connection that the server closed (or told something unasked,
         * such as a 408 before closing): not reused. */
        conn_close(l, c);
        return;
    }
    if (conn_read(l, c) == 1 && l->o->rate <= 0 && now_ms() >= c->resume_at) conn_send(l, c, 0);
}

static void print_results(loop *l)
{
    const options *o = l->o;
    stats *s = &l->st;
    int open_loop = o->rate > 0;
    samples_sort(&s->ok);
    samples_sort(&s->rejected);
    samples_sort(&s->late);
    json_line j = {.len = 0};
    json_raw(&j, "{");
    for (int i = 0; i < o->n_tags; i++)
        json_tag(&j, o->tags[i]);
    json_sep(&j);
    json_raw(&j, "\"mode\":\"%s\"", open_loop ? "open" : "closed");
    json_int(&j, "connections", o->connections);
    if (open_loop) json_num(&j, "offered_rps", o->rate);
    json_num(&j, "duration_s", o->duration_s);
    json_int(&j, "requests", s->requests);
    json_int(&j, "ok", (long long)s->ok.n);
    json_num(&j, "rps", (double)s->ok.n / o->duration_s);
    json_num(&j, "p50_ms", percentile(&s->ok, 50));
    json_num(&j, "p90_ms", percentile(&s->ok, 90));
    json_num(&j, "p99_ms", percentile(&s->ok, 99));
    json_num(&j, "max_ms", s->ok.n ? s->ok.v[s->ok.n - 1] : NAN);
    json_int(&j, "errors", s->errors);
    json_int(&j, "rejected", (long long)s->rejected.n);
    json_num(&j, "reject_p50_ms", percentile(&s->rejected, 50));
    json_num(&j, "reject_p99_ms", percentile(&s->rejected, 99));
    json_int(&j, "timeouts", s->timeouts);
    json_int(&j, "conn_errors", s->conn_errors);
    json_int(&j, "http_4xx", s->http_4xx);
    json_int(&j, "http_5xx_not_503", s->http_5xx);
    if (open_loop) {
        json_num(&j, "late_p99_ms", percentile(&s->late, 99));
        json_int(&j, "client_backlog_end", (long long)l->backlog);
        json_int(&j, "client_dropped", l->client_dropped);
    }
    if (o->pid > 0) {
        json_num(&j, "rss_start_mb", l->rss_start);
        json_num(&j, "rss_end_mb", l->rss_end);
        json_num(&j, "rss_max_mb", l->rss_max);
        /* The server's CPU time per answer in the window: what a request costs, whatever
         * else the machine's cores were doing meanwhile (rps moves with that). */
        double answered = (double)(s->ok.n + s->rejected.n);
        json_num(&j, "server_cpu_s", l->cpu_end - l->cpu_start);
        json_num(&j, "cpu_ms_per_answer",
                 answered > 0 ? (l->cpu_end - l->cpu_start) * 1e3 / answered : NAN);
    }
    if (s->first_error[0]) {
        json_sep(&j);
        json_raw(&j, "\"first_error\":");
        json_string(&j, s->first_error);
    }
    json_raw(&j, "}");
    printf("%.*s\n", (int)j.len, j.buf);
    fflush(stdout);
}

static int cmd_run(const options *o)
{
    if (!o->body_file) die("run: --body FILE is needed");
    if (o->port <= 0) die("run: --port is needed");
    if (o->connections < 1 || o->connections > MAX_CONNECTIONS)
        die("--connections: 1..%d", MAX_CONNECTIONS);
    loop *l = calloc(1, sizeof *l); /* the backlog ring makes it large for the stack */
    if (!l) die("out of memory");
    l->o = o;
    l->rss_start = l->rss_end = l->rss_max = NAN;
    l->cpu_start = l->cpu_end = NAN;
    build_request(l);
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    if (l->ep < 0) die("epoll_create1: %s", strerror(errno));
    l->conns = calloc((size_t)o->connections, sizeof *l->conns);
    if (!l->conns) die("out of memory");
    for (int i = 0; i < o->connections; i++)
        l->conns[i].fd = -1;

    int open_loop = o->rate > 0;
    l->t0 = now_ms();
    l->next_rss = l->t0;
    l->t_window_start = l->t0 + o->warmup_s * 1e3;
    l->t_window_end = l->t_window_start + o->duration_s * 1e3;
    /* Open loop: some connections ready before the first request is due, so that connecting
     * is not what the first second measures. */
    l->n_conns = open_loop ? (o->connections < 16 ? o->connections : 16) : o->connections;
    for (int i = 0; i < l->n_conns; i++)
        if (conn_open(l, &l->conns[i]) != 0) die("cannot open connection %d", i);

    struct epoll_event events[256];
    for (;;) {
        double t = now_ms();
        if (t >= l->t_window_end) break;
        if (sample_rss(l, t) != 0) {
            note_error(l, 0, "the server process ended");
            break;
        }
        if (open_loop)
            open_loop_dispatch(l, t);
        else
            closed_loop_refill(l, t);
        expire_timeouts(l, t);
        int wait_ms = 10;
        if (open_loop) {
            double next_due = l->t0 + (double)l->due_index * 1e3 / o->rate - t;
            if (next_due < wait_ms) wait_ms = next_due < 0 ? 0 : (int)next_due;
        }
        int n = epoll_wait(l->ep, events, 256, wait_ms);
        if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
        for (int k = 0; k < n; k++) {
            conn *c = events[k].data.ptr;
            if (c->fd >= 0) on_event(l, c, events[k].events, t);
        }
    }
    if (o->pid > 0) {
        l->cpu_end = cpu_s(o->pid);
        l->rss_end = rss_mb(o->pid);
        if (isfinite(l->rss_end) && (!isfinite(l->rss_max) || l->rss_end > l->rss_max))
            l->rss_max = l->rss_end;
    }
    print_results(l);

    for (int i = 0; i < l->n_conns; i++) {
        if (l->conns[i].fd >= 0) conn_close(l, &l->conns[i]);
        free(l->conns[i].in);
    }
    free(l->conns);
    free(l->request);
    free(l->st.ok.v);
    free(l->st.rejected.v);
    free(l->st.late.v);
    close(l->ep);
    free(l);
    return 0;
}

/* ---- wait, ready, port ------------------------------------------------------------------- */

/* Polls /readyz every 2 ms from `start` on; returns the ms it took, or -1 (time up or pid
 * ended). */
static double wait_ready(int port, pid_t pid, double start, int timeout_ms)
{
    while (now_ms() - start < timeout_ms) {
        if (http_get_status(port, "/readyz", 1000) == 200) return now_ms() - start;
        if (pid > 0) {
            int status;
            pid_t r = waitpid(pid, &status, WNOHANG);
            if (r == pid || (r < 0 && errno == ECHILD && !process_alive(pid))) return -1;
        }
        usleep(2000);
    }
    return -1;
}

static int cmd_wait(const options *o)
{
    if (o->port <= 0) die("wait: --port is needed");
    double ms = wait_ready(o->port, o->pid, now_ms(), o->timeout_ms);
    if (ms < 0) {
        fprintf(stderr, "loadgen: port %d not ready within %d ms%s\n", o->port, o->timeout_ms,
                o->pid > 0 && !process_alive(o->pid) ? " (the process ended)" : "");
        return 1;
    }
    return 0;
}

static int cmd_ready(const options *o, char **command)
{
    if (o->port <= 0) die("ready: --port is needed");
    if (!command || !command[0]) die("ready: the command to start follows --");
    samples s = {0};
    for (int i = 0; i < o->runs; i++) {
        double start = now_ms();
        pid_t pid = fork();
        if (pid < 0) die("fork: %s", strerror(errno));
        if (pid == 0) {
            execvp(command[0], command);
            fprintf(stderr, "loadgen: cannot run %s: %s\n", command[0], strerror(errno));
            _exit(127);
        }
        double ms = wait_ready(o->port, pid, start, o->timeout_ms);
        kill(pid, SIGTERM);
        int status = 0;
        waitpid(pid, &status, 0);
        if (ms < 0)
            die("ready: %s did not answer /readyz 200 within %d ms", command[0], o->timeout_ms);
        samples_add(&s, ms);
        /* The port must be free again before the next start. */
        double until = now_ms() + 5000;
        while (http_get_status(o->port, "/healthz", 200) != 0 && now_ms() < until)
            usleep(10000);
    }
    json_line j = {.len = 0};
    json_raw(&j, "{");
    for (int i = 0; i < o->n_tags; i++)
        json_tag(&j, o->tags[i]);
    double sorted[256];
    size_t n = s.n < 256 ? s.n : 256;
    memcpy(sorted, s.v, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, compare_double);
    json_num(&j, "ms", sorted[n / 2]);
    json_sep(&j);
    json_raw(&j, "\"runs_ms\":[");
    for (size_t i = 0; i < s.n; i++)
        json_raw(&j, "%s%.1f", i ? "," : "", s.v[i]);
    json_raw(&j, "]}");
    printf("%.*s\n", (int)j.len, j.buf);
    free(s.v);
    return 0;
}

static int cmd_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = loopback(0);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        die("cannot find a free port: %s", strerror(errno));
    printf("%d\n", ntohs(a.sin_port));
    close(fd);
    return 0;
}

static void usage(FILE *out)
{
    fputs("usage: loadgen run --port P --body FILE [--path /v1/analyze] [--type image/jpeg]\n"
          "                   [--connections N] [--rate R] [--duration S] [--warmup S]\n"
          "                   [--timeout-ms T] [--header 'K: V']... [--pid PID] [--tag K=V]...\n"
          "                   [--retry-after honour|ignore]\n"
          "       loadgen wait --port P [--timeout-ms T] [--pid PID]\n"
          "       loadgen ready --port P [--runs N] [--timeout-ms T] [--tag K=V]... -- CMD...\n"
          "       loadgen port\n"
          "See the comment at the top of bench/load/loadgen.c for what each measures.\n",
          out);
}

static double parse_number(const char *flag, const char *v, double min, double max)
{
    char *end = NULL;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(d) || d < min || d > max)
        die("%s %s: expected a number in [%g, %g]", flag, v, min, max);
    return d;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    options o = {.path = "/v1/analyze",
                 .content_type = "image/jpeg",
                 .connections = 0,
                 .duration_s = 10,
                 .warmup_s = 2,
                 .timeout_ms = 30000,
                 .runs = 5};
    char **command = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            command = argv + i + 1;
            break;
        }
        if (i + 1 >= argc) die("%s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--port"))
            o.port = (int)parse_number(a, v, 1, 65535);
        else if (!strcmp(a, "--path"))
            o.path = v;
        else if (!strcmp(a, "--body"))
            o.body_file = v;
        else if (!strcmp(a, "--type"))
            o.content_type = v;
        else if (!strcmp(a, "--connections"))
            o.connections = (int)parse_number(a, v, 1, MAX_CONNECTIONS);
        else if (!strcmp(a, "--rate"))
            o.rate = parse_number(a, v, 0.001, 1e6);
        else if (!strcmp(a, "--duration"))
            o.duration_s = parse_number(a, v, 0.1, 86400);
        else if (!strcmp(a, "--warmup"))
            o.warmup_s = parse_number(a, v, 0, 86400);
        else if (!strcmp(a, "--timeout-ms"))
            o.timeout_ms = (int)parse_number(a, v, 1, 3600000);
        else if (!strcmp(a, "--pid"))
            o.pid = (pid_t)parse_number(a, v, 1, 1 << 30);
        else if (!strcmp(a, "--runs"))
            o.runs = (int)parse_number(a, v, 1, 256);
        else if (!strcmp(a, "--retry-after")) {
            if (strcmp(v, "honour") && strcmp(v, "ignore")) die("--retry-after honour|ignore");
            o.ignore_retry_after = !strcmp(v, "ignore");
        } else if (!strcmp(a, "--header")) {
            if (o.n_headers == MAX_HEADERS) die("at most %d --header", MAX_HEADERS);
            if (strpbrk(v, "\r\n") || !strchr(v, ':'))
                die("--header %s: expected 'Name: value'", v);
            o.headers[o.n_headers++] = v;
        } else if (!strcmp(a, "--tag")) {
            if (o.n_tags == MAX_TAGS) die("at most %d --tag", MAX_TAGS);
            o.tags[o.n_tags++] = v;
        } else
            die("unknown option %s (loadgen --help)", a);
    }
    if (o.connections == 0) o.connections = o.rate > 0 ? 1000 : 1;
    if (!strcmp(cmd, "run")) return cmd_run(&o);
    if (!strcmp(cmd, "wait")) return cmd_wait(&o);
    if (!strcmp(cmd, "ready")) return cmd_ready(&o, command);
    if (!strcmp(cmd, "port")) return cmd_port();
    usage(stderr);
    return 2;
}
