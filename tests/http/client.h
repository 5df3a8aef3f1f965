/*
 * Shared by the HTTP tests: start the real `vultus serve` (the binary of the same build as the
 * test) on a free loopback port with a temporary data folder, and a small HTTP/1.1 client over
 * raw sockets, so tests control every byte (malformed requests, slow clients). Header-only
 * (static functions) so each test stays one program. All traffic goes to 127.0.0.1.
 */
#ifndef VULTUS_TESTS_HTTP_CLIENT_H
#define VULTUS_TESTS_HTTP_CLIENT_H

#include "img/img.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static inline double tc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static inline void tc_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- files ------------------------------------------------------------------------------ */

static inline int tc_read_file(const char *path, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    buf[n] = '\0';
    *data = buf;
    *len = (size_t)n;
    return 0;
}

#ifdef cmocka_unit_test /* fails the calling test */
/* A repository file's text (the caller frees), or the test fails: tests run from the
 * repository root, as make test runs them. Not inlined: GCC 12 then takes the result for a
 * pointer to its local (-Wdangling-pointer). */
__attribute__((noinline, unused)) static char *tc_slurp(const char *path)
{
    char *text;
    size_t len;
    if (tc_read_file(path, &text, &len) != 0)
        fail_msg("cannot read %s (run from the repository root, as make test does)", path);
    return text;
}
#endif

static inline int tc_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int tc_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void tc_rm_rf(const char *dir)
{
    nftw(dir, tc_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The `vultus` binary of this test's build: BUILD/tests/http/test_x -> BUILD/vultus. */
static inline int tc_vultus_path(char *out, size_t cap)
{
    char self[PATH_MAX - 16];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return -1;
    self[n] = '\0';
    for (int i = 0; i < 3; i++) {
        char *slash = strrchr(self, '/');
        if (!slash) return -1;
        *slash = '\0';
    }
    snprintf(out, cap, "%s/vultus", self);
    return access(out, X_OK);
}

/* ---- the server ------------------------------------------------------------------------- */

typedef struct tc_server {
    pid_t pid;
    int port;
    char dir[256]; /* data folder (temporary) */
    char log[300]; /* its stderr */
    int own_dir;
} tc_server;

/* Runs `vultus ARGS...` to completion: its stdout into out[out_cap] (out NULL: to /dev/null),
 * its stderr into err[err_cap] (err NULL: this process's stderr). Output past a buffer is read
 * and dropped, so the child never blocks on a full pipe. Returns the exit status or -1. */
static inline int tc_run_vultus_io(const char *const *args, char *out, size_t out_cap, char *err,
                                   size_t err_cap)
{
    char bin[PATH_MAX], errfile[] = "/tmp/vultus-test-stderr-XXXXXX";
    if (tc_vultus_path(bin, sizeof bin) != 0) return -1;
    int efd = err ? mkstemp(errfile) : -1;
    if (err && efd < 0) return -1;
    if (err) unlink(errfile); /* the descriptor keeps it */
    int fds[2];
    if (pipe(fds) != 0) {
        if (efd >= 0) close(efd);
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        if (efd >= 0) close(efd);
        return -1;
    }
    if (pid == 0) {
        if (out) {
            dup2(fds[1], 1);
        } else {
            int null = open("/dev/null", O_WRONLY);
            if (null >= 0) dup2(null, 1);
        }
        if (efd >= 0) dup2(efd, 2);
        close(fds[0]);
        close(fds[1]);
        const char *argv[32] = {bin};
        int n = 1;
        for (; args[n - 1] && n < 31; n++)
            argv[n] = args[n - 1];
        argv[n] = NULL;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    size_t got = 0;
    char drop[4096];
    for (ssize_t k;;) {
        if (out && got + 1 < out_cap)
            k = read(fds[0], out + got, out_cap - 1 - got);
        else
            k = read(fds[0], drop, sizeof drop);
        if (k <= 0) break;
        if (out && got + 1 < out_cap) got += (size_t)k;
    }
    if (out) out[got] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (err) {
        ssize_t n = pread(efd, err, err_cap - 1, 0);
        err[n > 0 ? n : 0] = '\0';
        close(efd);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Runs `vultus ARGS...` to completion; what it writes to `fd` (1: stdout, 2: stderr; with 2 its
 * stdout goes to /dev/null) into out[cap]. Returns the exit status or -1. */
static inline int tc_run_vultus_fd(int fd, char *out, size_t cap, const char *const *args)
{
    return fd == 1 ? tc_run_vultus_io(args, out, cap, NULL, 0)
                   : tc_run_vultus_io(args, NULL, 0, out, cap);
}

/* Runs `vultus ARGS...` to completion (for `keys create`); stdout into out. Returns the exit
 * status or -1. */
static inline int tc_run_vultus(char *out, size_t cap, const char *const *args)
{
    return tc_run_vultus_fd(1, out, cap, args);
}

/* Runs `vultus keys create ARGS...` (args from "keys" on) and writes the header that sends the
 * new key, "Authorization: Bearer KEY\r\n", into header[cap]. Returns 0, or -1 when the
 * command failed (its stderr then in error[ecap] when error is not NULL). */
static inline int tc_key_header(const char *const *args, char *header, size_t cap, char *error,
                                size_t ecap)
{
    char out[128];
    if (tc_run_vultus(out, sizeof out, args) != 0) {
        if (error) tc_run_vultus_fd(2, error, ecap, args);
        return -1;
    }
    out[strcspn(out, "\n")] = '\0';
    snprintf(header, cap, "Authorization: Bearer %s\r\n", out);
    return 0;
}

/* A new temporary data folder in dir[256]. */
static inline int tc_temp_dir(char *dir)
{
    snprintf(dir, 256, "/tmp/vultus-http-test-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

/*
 * Starts `vultus serve --listen 127.0.0.1:0 --data DIR --models models EXTRA...` (DIR: data_dir
 * or a new temporary folder) with stderr in DIR/server.log, and waits until it is ready (the
 * "ready" log line) or wait_ready is 0 and it listens. Returns 0 or -1.
 */
static inline int tc_server_start(tc_server *s, const char *data_dir, const char *const *extra,
                                  int wait_ready)
{
    memset(s, 0, sizeof *s);
    if (data_dir) {
        snprintf(s->dir, sizeof s->dir, "%s", data_dir);
    } else {
        if (tc_temp_dir(s->dir) != 0) return -1;
        s->own_dir = 1;
    }
    snprintf(s->log, sizeof s->log, "%s/server.log", s->dir);
    char bin[PATH_MAX];
    if (tc_vultus_path(bin, sizeof bin) != 0) {
        fprintf(stderr, "no vultus binary beside the test\n");
        return -1;
    }
    /* A restart in the same folder: the last run's log (its port, its "ready") must not be
     * read before the child has truncated it. */
    unlink(s->log);
    s->pid = fork();
    if (s->pid == 0) {
        /* The server must not outlive a test that crashes or is killed. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
        if (fd >= 0) dup2(fd, 2);
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
        }
        const char *argv[64] = {bin,      "serve", "--listen", "127.0.0.1:0",
                                "--data", s->dir,  "--models", "models"};
        int n = 8;
        for (int i = 0; extra && extra[i] && n < 63; i++)
            argv[n++] = extra[i];
        argv[n] = NULL;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    if (s->pid < 0) return -1;
    /* Under sanitizers start-up is slower; allow a minute. */
    double deadline = tc_now_ms() + 60000;
    while (tc_now_ms() < deadline) {
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            fprintf(stderr, "vultus serve exited early (status %d); log:\n", status);
            char *log;
            size_t len;
            if (tc_read_file(s->log, &log, &len) == 0) {
                fprintf(stderr, "%s\n", log);
                free(log);
            }
            s->pid = 0;
            return -1;
        }
        char *log;
        size_t len;
        if (tc_read_file(s->log, &log, &len) == 0) {
            const char *p = strstr(log, "\"msg\":\"listening\"");
            const char *port = p ? strstr(p, "\"port\":") : NULL;
            if (port) s->port = atoi(port + 7);
            int ready = strstr(log, "\"msg\":\"ready\"") != NULL;
            free(log);
            if (s->port > 0 && (ready || !wait_ready)) return 0;
        }
        tc_sleep_ms(20);
    }
    fprintf(stderr, "vultus serve did not become ready in time\n");
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
    return -1;
}

/* Waits for the server to exit (up to timeout_ms); returns its exit status, or -1 (then it
 * is killed). */
static inline int tc_server_wait(tc_server *s, int timeout_ms)
{
    if (s->pid <= 0) return -1;
    double deadline = tc_now_ms() + timeout_ms;
    int status = 0;
    while (tc_now_ms() < deadline) {
        pid_t p = waitpid(s->pid, &status, WNOHANG);
        if (p == s->pid) {
            s->pid = 0;
            if (WIFEXITED(status)) return WEXITSTATUS(status);
            fprintf(stderr, "vultus serve ended by signal %d\n",
                    WIFSIGNALED(status) ? WTERMSIG(status) : -1);
            return -1;
        }
        tc_sleep_ms(10);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
    return -1;
}

/* SIGTERM, wait, remove the data folder when it was ours. Returns the exit status. */
static inline int tc_server_stop(tc_server *s)
{
    int rc = -1;
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        rc = tc_server_wait(s, 60000);
        if (rc != 0) {
            char *log;
            size_t len;
            if (tc_read_file(s->log, &log, &len) == 0) {
                fprintf(stderr, "server log (exit %d):\n%s\n", rc,
                        len > 20000 ? log + len - 20000 : log);
                free(log);
            }
        }
    }
    if (s->own_dir && s->dir[0]) tc_rm_rf(s->dir);
    s->dir[0] = '\0';
    return rc;
}

/* A server shared by a test program's tests: a fresh data folder (dir, 256 bytes), 2 workers
 * and a deadline of a minute (a loaded machine's 503 is not what such tests are about).
 * Returns 0 or -1. */
static inline int tc_server_start_patient(tc_server *s, char *dir)
{
    if (tc_temp_dir(dir) != 0) return -1;
    static const char *const args[] = {"--workers", "2", "--deadline-ms", "60000", NULL};
    return tc_server_start(s, dir, args, 1);
}

/* Stops it (when it was started) and removes its folder; 0 when it exited cleanly. */
static inline int tc_server_stop_patient(tc_server *s, const char *dir)
{
    int rc = s->pid > 0 ? tc_server_stop(s) : 0;
    if (dir[0]) tc_rm_rf(dir);
    return rc;
}

/* ---- a throw-away PostgreSQL server (tools/pg-temp) -------------------------------------- */

/* Starts one in a new folder `dir` under /tmp, stopped and removed when this process exits
 * however it exits; its URL into `url`. 0; 77 when the PostgreSQL server binaries are absent
 * (dir and url are left empty: the caller skips); -1 on failure. */
static inline int tc_pg_start(char *dir, size_t dir_cap, char *url, size_t url_cap)
{
    url[0] = '\0';
    snprintf(dir, dir_cap, "/tmp/vultus-pg-XXXXXX");
    if (!mkdtemp(dir)) {
        dir[0] = '\0';
        return -1;
    }
    char cmd[400], line[400] = "";
    snprintf(cmd, sizeof cmd, "tools/pg-temp start %s %d", dir, (int)getpid());
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    if (!fgets(line, sizeof line, p)) line[0] = '\0';
    int status = pclose(p);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (code == 77) {
        rmdir(dir);
        dir[0] = '\0';
        return 77;
    }
    if (code != 0) {
        fprintf(stderr, "tools/pg-temp start failed (exit %d)\n", code);
        return -1;
    }
    line[strcspn(line, "\n")] = '\0';
    snprintf(url, url_cap, "%s", line);
    return 0;
}

/* Stops the server of tc_pg_start and removes its folder; nothing when dir is empty. */
static inline int tc_pg_stop(char *dir)
{
    if (!dir[0]) return 0;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "tools/pg-temp stop %s", dir);
    dir[0] = '\0';
    return system(cmd) == 0 ? 0 : -1;
}

/* Stops the server of tc_pg_start but keeps its folder (data, socket path, URL) for
 * tc_pg_resume: a database restart under running clients. `immediate`: as a crash (the server
 * recovers from its WAL on resume); otherwise a fast, orderly shutdown. */
static inline int tc_pg_pause(const char *dir, int immediate)
{
    if (!dir[0]) return -1;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "tools/pg-temp pause %s %s", dir, immediate ? "immediate" : "fast");
    return system(cmd) == 0 ? 0 : -1;
}

/* Starts the server of a paused folder again, on the same data, socket and URL. */
static inline int tc_pg_resume(const char *dir)
{
    if (!dir[0]) return -1;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "tools/pg-temp resume %s >/dev/null", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- the client ------------------------------------------------------------------------- */

typedef struct tc_response {
    int status; /* 0: no response (connection closed or timed out) */
    int closed; /* the server closed the connection without a whole response */
    char head[16384];
    char *body;
    size_t body_len;
    double ms; /* from the first byte sent to the last byte received */
} tc_response;

static inline void tc_response_free(tc_response *r)
{
    free(r->body);
    r->body = NULL;
}

static inline int tc_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static inline int tc_send_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* A header's value from the response head (case-insensitive name), copied into out. */
static inline const char *tc_header(const tc_response *r, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    const char *p = strstr(r->head, "\r\n");
    while (p && p[2]) {
        p += 2;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t len = e ? (size_t)(e - v) : strlen(v);
            if (len >= cap) len = cap - 1;
            memcpy(out, v, len);
            out[len] = '\0';
            return out;
        }
        p = strstr(p, "\r\n");
    }
    return NULL;
}

/* Reads one response (head, then Content-Length bytes unless no_body: the answer to HEAD)
 * within timeout_ms. */
static inline int tc_read_response_ex(int fd, tc_response *r, int timeout_ms, int no_body)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    double deadline = tc_now_ms() + timeout_ms;
    size_t head_len = 0, want = (size_t)-1;
    for (;;) {
        if (head_len && len >= head_len + want) break;
        int left = (int)(deadline - tc_now_ms());
        if (left <= 0) break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, left) <= 0) break;
        if (len + 65536 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            r->closed = 1;
            break;
        }
        len += (size_t)n;
        buf[len] = '\0';
        if (!head_len) {
            char *end = strstr(buf, "\r\n\r\n");
            if (end) {
                head_len = (size_t)(end - buf) + 4;
                size_t hl = head_len < sizeof r->head ? head_len : sizeof r->head - 1;
                memcpy(r->head, buf, hl);
                r->head[hl] = '\0';
                char v[32];
                want =
                    tc_header(r, "Content-Length", v, sizeof v) && !no_body ? (size_t)atoll(v) : 0;
                int code = 0;
                if (sscanf(buf, "HTTP/1.%*d %d", &code) == 1) r->status = code;
            }
        }
    }
    if (head_len && len >= head_len + want) {
        r->body = malloc(want + 1);
        memcpy(r->body, buf + head_len, want);
        r->body[want] = '\0';
        r->body_len = want;
    } else if (head_len) {
        r->status = 0; /* a head without its whole body */
    }
    free(buf);
    return r->status ? 0 : -1;
}

static inline int tc_read_response(int fd, tc_response *r, int timeout_ms)
{
    return tc_read_response_ex(fd, r, timeout_ms, 0);
}

/* Requests the server at port is working on besides the scrape that asks (its
 * vultus_http_in_flight_requests gauge less one), or -1 when /metrics does not say (no answer,
 * or a key is needed). */
static inline int tc_others_in_flight(int port)
{
    int fd = tc_connect(port);
    if (fd < 0) return -1;
    static const char get[] =
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    tc_response m;
    memset(&m, 0, sizeof m);
    int n = -1;
    if (tc_send_all(fd, get, sizeof get - 1) == 0 && tc_read_response_ex(fd, &m, 10000, 0) == 0 &&
        m.status == 200) {
        const char *g = strstr(m.body, "\nvultus_http_in_flight_requests ");
        if (g) n = atoi(g + strlen("\nvultus_http_in_flight_requests ")) - 1;
    }
    free(m.body);
    close(fd);
    return n;
}

/*
 * Sends one request (adds Host, Content-Length and Connection: close; `headers` is "" or
 * lines ending in CRLF) and reads the response. Returns 0 when a response came.
 *
 * No answer within 60 s is a failure only when the server says it is working on nothing else
 * (the request was lost). While it is still working on requests the answer is coming, late:
 * an enrolment of a three-face photo took 62 s under AddressSanitizer on a loaded 2-core
 * machine and was answered 201 after the client had given up. A server that never answers
 * is still caught by the test runner's limit on the whole program.
 */
static inline int tc_request(int port, const char *method, const char *path, const char *headers,
                             const void *body, size_t body_len, tc_response *r)
{
    memset(r, 0, sizeof *r);
    int fd = tc_connect(port);
    if (fd < 0) return -1;
    char head[8192];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%sContent-Length: "
                     "%zu\r\n\r\n",
                     method, path, headers ? headers : "", body_len);
    double t0 = tc_now_ms();
    int rc = tc_send_all(fd, head, (size_t)n);
    if (!rc && body_len) rc = tc_send_all(fd, body, body_len);
    int no_body = strcmp(method, "HEAD") == 0;
    if (!rc) rc = tc_read_response_ex(fd, r, 60000, no_body);
    /* nothing at all came yet (a partial answer is not read again) */
    while (rc && !r->closed && !r->head[0] && tc_others_in_flight(port) > 0)
        rc = tc_read_response_ex(fd, r, 10000, no_body);
    r->ms = tc_now_ms() - t0;
    close(fd);
    return rc;
}

static inline int tc_get(int port, const char *path, const char *headers, tc_response *r)
{
    return tc_request(port, "GET", path, headers, NULL, 0, r);
}

/* POST of a JSON text. */
static inline int tc_post_json(int port, const char *path, const char *headers, const char *json,
                               tc_response *r)
{
    char h[2048];
    snprintf(h, sizeof h, "%sContent-Type: application/json\r\n", headers ? headers : "");
    return tc_request(port, "POST", path, h, json, strlen(json), r);
}

/* A multipart/form-data body: fields as name/value pairs, files as name/bytes. */
typedef struct tc_form {
    char *data;
    size_t len, cap;
} tc_form;

#define TC_BOUNDARY "vultus-test-boundary-7MA4YWxkTrZu0gW"

static inline void tc_form_append(tc_form *f, const void *p, size_t n)
{
    if (f->len + n > f->cap) {
        f->cap = (f->len + n) * 2 + 1024;
        f->data = realloc(f->data, f->cap);
    }
    memcpy(f->data + f->len, p, n);
    f->len += n;
}

static inline void tc_form_field(tc_form *f, const char *name, const char *value)
{
    char h[512];
    int n =
        snprintf(h, sizeof h,
                 "--" TC_BOUNDARY "\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n", name);
    tc_form_append(f, h, (size_t)n);
    tc_form_append(f, value, strlen(value));
    tc_form_append(f, "\r\n", 2);
}

static inline void tc_form_file(tc_form *f, const char *name, const void *data, size_t len)
{
    char h[512];
    int n = snprintf(h, sizeof h,
                     "--" TC_BOUNDARY "\r\nContent-Disposition: form-data; name=\"%s\"; "
                     "filename=\"%s.jpg\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                     name, name);
    tc_form_append(f, h, (size_t)n);
    tc_form_append(f, data, len);
    tc_form_append(f, "\r\n", 2);
}

static inline void tc_form_end(tc_form *f)
{
    tc_form_append(f, "--" TC_BOUNDARY "--\r\n", strlen("--" TC_BOUNDARY "--\r\n"));
}

static inline int tc_post_form(int port, const char *path, const char *headers, tc_form *f,
                               tc_response *r)
{
    char h[2048];
    snprintf(h, sizeof h, "%sContent-Type: multipart/form-data; boundary=" TC_BOUNDARY "\r\n",
             headers ? headers : "");
    return tc_request(port, "POST", path, h, f->data, f->len, r);
}

static inline json_t *tc_json(const tc_response *r)
{
    if (!r->body) return NULL;
    return json_loadb(r->body, r->body_len, 0, NULL);
}

#ifdef cmocka_unit_test /* these fail the calling test */
/* j's string member `key`; fails the test when it is missing or not a string. */
static inline const char *tc_json_str(json_t *j, const char *key)
{
    const char *s = json_string_value(json_object_get(j, key));
    if (!s) fail_msg("no string %s in the answer", key);
    return s;
}

/* j's number member `key`; fails the test when it is missing or not a number. */
static inline double tc_json_num(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    if (!json_is_number(v)) fail_msg("no number %s in the answer", key);
    return json_number_value(v);
}

#endif

/*
 * The value of `series` (a metric's name with its labels exactly as served:
 * "vultus_rejected_requests_total{reason=\"overloaded\"}") in a /metrics page, or `absent`
 * when no line has it: 0 suits a counter not yet incremented (a difference of two scrapes),
 * -1 a series that must be there.
 */
static inline double tc_metric_in(const char *page, const char *series, double absent)
{
    size_t n = strlen(series);
    for (const char *p = page; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
    return absent;
}

#ifdef cmocka_unit_test /* these fail the calling test */
/* A fresh GET /metrics of the server on port, which must answer 200: the page (the caller
 * frees it). */
static inline char *tc_metrics_page(int port)
{
    tc_response r;
    assert_int_equal(tc_get(port, "/metrics", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    return r.body;
}

/* How often the pipeline's detect stage ran (a count of images decoded and searched for faces):
 * a request refused before its image is decoded leaves it as it was. */
#define DETECT_RUNS "vultus_stage_duration_seconds_count{stage=\"detect\"}"

/* tc_metric_in() on a fresh /metrics page of the server on port. */
static inline double tc_metric(int port, const char *series, double absent)
{
    char *page = tc_metrics_page(port);
    double v = tc_metric_in(page, series, absent);
    free(page);
    return v;
}
#endif

/* The error code of a JSON error response, or "" when the body is not the error shape. */
static inline const char *tc_error_code(const tc_response *r, char *out, size_t cap)
{
    out[0] = '\0';
    json_t *j = tc_json(r);
    const char *code = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    if (code && msg) snprintf(out, cap, "%s", code);
    json_decref(j);
    return out;
}

/* The JSON error's message, copied into out ("(none)" when there is none). */
static inline const char *tc_error_message(const tc_response *r, char *out, size_t cap)
{
    json_t *j = tc_json(r);
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    snprintf(out, cap, "%s", m ? m : "(none)");
    json_decref(j);
    return out;
}

/* Whether models/ holds the model pack and its sample photos (tools/fetch-models puts them
 * there): the tests that start a server with the models skip without them. */
static inline int tc_have_models(void)
{
    return tc_exists("models/human/blazeface-back.json") && tc_exists("models/samples/sample1.jpg");
}

/* Assertions for cmocka tests (those that include cmocka.h before this header). */
#ifdef cmocka_unit_test

/* Skips the calling test when models/ is absent. */
#define TC_NEED_MODELS()                                                                           \
    do {                                                                                           \
        if (!tc_have_models()) {                                                                   \
            print_message("models/ is absent (run tools/fetch-models): skipped\n");                \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* Skips the calling test when models/ is absent or `have` is false (the test's photos: `what`
 * names them), then requires the program's shared server (a tc_server) to have started. */
#define TC_NEED_SERVER(server, have, what)                                                         \
    do {                                                                                           \
        TC_NEED_MODELS();                                                                          \
        if (!(have)) {                                                                             \
            print_message("%s is absent: skipped\n", what);                                        \
            skip();                                                                                \
        }                                                                                          \
        assert_true((server).pid > 0);                                                             \
    } while (0)

/* A TCP proxy in front of a throw-away PostgreSQL server's Unix socket that can freeze: every
 * byte held, no connection refused or closed, as in a network partition (a query then waits
 * for TCP to give up: minutes). It also counts the clients' round trips. Used by
 * test_ops_review, test_pg_partition, test_pg_metrics and test_store_postgres. */
typedef struct tc_pg_proxy {
    int listen_fd, port;
    char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    atomic_int frozen;
    atomic_long round_trips; /* Sync and Query messages from the clients, all connections */
    /* While set, a connection accepted meanwhile passes its start-up (authentication) and then
     * holds its first query and all after: a server that accepts and never answers. */
    atomic_int hold_queries;
    /* While set, a connection whose client's bytes are held (frozen, hold_queries) is closed
     * both ways: a server that crashes or a failover that ends its sessions mid-statement,
     * which the client reads as the end of the stream, not as a wait. Cleared before the proxy
     * thaws, connections accepted after it are left alone. */
    atomic_int drop;
} tc_pg_proxy;

typedef struct tc_pg_pump_args {
    tc_pg_proxy *proxy;
    int from, to, count; /* count: the client's direction, whose messages are counted */
    int hold;            /* the client's direction of a connection accepted with hold_queries */
} tc_pg_pump_args;

/*
 * Follows the client's side of the protocol: untyped messages (length, code) until the
 * StartupMessage (code 196608: an SSLRequest or GSSENCRequest comes before it), then typed
 * ones (type byte, length including itself).
 */
typedef struct tc_pg_parser {
    int typed;
    unsigned char head[8];
    int have;
    uint32_t left; /* bytes of the current message's body still to skip */
} tc_pg_parser;

static inline uint32_t tc_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void tc_pg_parse(tc_pg_parser *p, const unsigned char *b, size_t n,
                               atomic_long *count)
{
    while (n) {
        if (p->left) {
            size_t k = n < p->left ? n : p->left;
            b += k, n -= k, p->left -= (uint32_t)k;
            continue;
        }
        p->head[p->have++] = *b++, n--;
        if (p->have < (p->typed ? 5 : 8)) continue;
        p->have = 0;
        if (p->typed) {
            p->left = tc_be32(p->head + 1) - 4;
            if (p->head[0] == 'S' || p->head[0] == 'Q') atomic_fetch_add(count, 1);
        } else {
            p->left = tc_be32(p->head) - 8;
            if (tc_be32(p->head + 4) == 196608) p->typed = 1;
        }
    }
}

static inline void *tc_pg_pump_main(void *arg)
{
    tc_pg_pump_args a = *(tc_pg_pump_args *)arg;
    free(arg);
    tc_pg_parser state = {0};
    atomic_long queries = 0; /* this connection's round trips */
    unsigned char buf[65536];
    for (;;) {
        ssize_t n = recv(a.from, buf, sizeof buf, 0);
        if (n <= 0) break;
        if (a.count) {
            long before = atomic_load(&queries);
            tc_pg_parse(&state, buf, (size_t)n, &queries);
            atomic_fetch_add(&a.proxy->round_trips, atomic_load(&queries) - before);
        }
        int dropped = 0;
        while (!dropped &&
               (atomic_load(&a.proxy->frozen) ||
                (a.hold && atomic_load(&queries) && atomic_load(&a.proxy->hold_queries)))) {
            dropped = atomic_load(&a.proxy->drop);
            if (!dropped) tc_sleep_ms(20);
        }
        if (dropped) { /* the other direction's recv then reads the end too */
            shutdown(a.from, SHUT_RDWR);
            shutdown(a.to, SHUT_RDWR);
            return NULL;
        }
        if (tc_send_all(a.to, buf, (size_t)n) != 0) break;
    }
    shutdown(a.to, SHUT_WR);
    return NULL;
}

static inline void tc_pg_pump_start(tc_pg_proxy *p, int from, int to, int count, int hold)
{
    tc_pg_pump_args *a = malloc(sizeof *a);
    assert_non_null(a);
    *a = (tc_pg_pump_args){p, from, to, count, hold};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, tc_pg_pump_main, a), 0);
    pthread_detach(t);
}

static inline void *tc_pg_proxy_main(void *arg)
{
    tc_pg_proxy *p = arg;
    for (;;) {
        int c = accept(p->listen_fd, NULL, NULL);
        if (c < 0) return NULL;
        while (atomic_load(&p->frozen)) /* a new connection hangs too */
            tc_sleep_ms(20);
        int u = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof a.sun_path, "%s", p->socket_path);
        if (u < 0 || connect(u, (struct sockaddr *)&a, sizeof a) != 0) {
            close(c);
            if (u >= 0) close(u);
            continue;
        }
        tc_pg_pump_start(p, c, u, 1, atomic_load(&p->hold_queries));
        tc_pg_pump_start(p, u, c, 0, 0);
    }
}

static inline void tc_pg_proxy_start(tc_pg_proxy *p, const char *pg_dir)
{
    memset(p, 0, sizeof *p);
    assert_true(strlen(pg_dir) <= 90); /* a Unix socket path holds 107 bytes */
    snprintf(p->socket_path, sizeof p->socket_path, "%.90s/.s.PGSQL.5432", pg_dir);
    p->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(p->listen_fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(p->listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(p->listen_fd, 64), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(p->listen_fd, (struct sockaddr *)&a, &len), 0);
    p->port = ntohs(a.sin_port);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, tc_pg_proxy_main, p), 0);
    pthread_detach(t);
}

/* The URL of database `dbname` through the proxy, as user postgres, with `query` ("?..."; NULL:
 * none) after it. */
static inline void tc_pg_proxy_url(const tc_pg_proxy *p, const char *dbname, const char *query,
                                   char *out, size_t cap)
{
    int n = snprintf(out, cap, "postgresql://postgres@127.0.0.1:%d/%s%s", p->port, dbname,
                     query ? query : "");
    assert_true(n > 0 && (size_t)n < cap);
}

/* Starts a throw-away PostgreSQL server (tc_pg_start) in a new folder `dir`, its URL into
 * `url`; skips the calling test, saying why, when the server binaries are absent, and fails it
 * when the server does not start. Stopped at exit, or by tc_pg_stop. */
static inline void tc_pg_start_or_skip(char *dir, size_t dir_cap, char *url, size_t url_cap)
{
    int rc = tc_pg_start(dir, dir_cap, url, url_cap);
    if (rc == 77) {
        print_message("no PostgreSQL server binaries (Debian package postgresql): skipped\n");
        skip();
    }
    assert_int_equal(rc, 0);
}

/* tc_pg_start_or_skip into two arrays of the caller (not pointers: their sizes are taken). */
#define TC_NEED_POSTGRES(dir, url)                                                                 \
    do {                                                                                           \
        _Static_assert(sizeof(dir) >= 64 && sizeof(url) >= 64, "arrays, not pointers");            \
        tc_pg_start_or_skip(dir, sizeof(dir), url, sizeof(url));                                   \
    } while (0)

/* The opening of a test of a store behind a tc_pg_proxy: a throw-away server (or a clean
 * skip, TC_NEED_POSTGRES) in `dir`, its own URL in `url`, the proxy in front of it, and the
 * proxy's URL of database postgres, with `query` (NULL: none), in `store`. */
#define TC_NEED_POSTGRES_PROXY(dir, url, proxy, query, store)                                      \
    do {                                                                                           \
        TC_NEED_POSTGRES(dir, url);                                                                \
        tc_pg_proxy_start(proxy, dir);                                                             \
        tc_pg_proxy_url(proxy, "postgres", query, store, sizeof(store));                           \
    } while (0)

/* The file at path, NUL-terminated (the test fails when it cannot be read). */
static inline char *tc_load(const char *path, size_t *len)
{
    char *data = NULL;
    if (tc_read_file(path, &data, len) != 0) fail_msg("cannot read %s", path);
    return data;
}

/* Fails unless r is a JSON error response with this status and code. */
static inline void tc_expect_error(const tc_response *r, int status, const char *code)
{
    char got[64];
    tc_error_code(r, got, sizeof got);
    if (r->status != status || strcmp(got, code) != 0)
        fail_msg("expected %d %s, got %d '%s': %.300s", status, code, r->status, got,
                 r->body ? r->body : "(no body)");
}

/* r's JSON body (the caller's reference); fails unless r has this status and a JSON body. */
static inline json_t *tc_expect_json(const tc_response *r, int status)
{
    if (r->status == 0 && status != 0)
        fail_msg("expected %d, got no response: %s after %.0f ms (head: %.200s)", status,
                 r->closed   ? "the server closed the connection"
                 : r->ms > 0 ? "no answer"
                             : "no connection (connect or send failed)",
                 r->ms, r->head[0] ? r->head : "none");
    if (r->status != status)
        fail_msg("expected %d, got %d: %.400s", status, r->status, r->body ? r->body : "");
    json_t *j = tc_json(r);
    if (!j) fail_msg("not JSON: %.200s", r->body ? r->body : "");
    return j;
}

/* A request (with a JSON body when json is not NULL) whose answer must have this status: its
 * JSON (the caller's), or NULL for a 204. */
static inline json_t *tc_call(int port, const char *method, const char *path, const char *json,
                              int status)
{
    tc_response r;
    if (json)
        tc_request(port, method, path, "Content-Type: application/json\r\n", json, strlen(json),
                   &r);
    else
        tc_request(port, method, path, "", NULL, 0, &r);
    json_t *j = status == 204 ? NULL : tc_expect_json(&r, status);
    if (status == 204 && r.status != 204)
        fail_msg("expected 204, got %d: %.300s", r.status, r.body ? r.body : "");
    tc_response_free(&r);
    return j;
}

static inline void tc_create_collection(int port, const char *name)
{
    char body[256];
    if (snprintf(body, sizeof body, "{\"name\":\"%s\"}", name) >= (int)sizeof body)
        fail_msg("collection name too long: %.40s...", name);
    json_decref(tc_call(port, "POST", "/v1/collections", body, 201));
}

/* A POST of a raw JPEG body, with these headers (NULL: none) before its Content-Type. */
static inline void tc_post_jpeg(int port, const char *path, const char *headers, const void *jpeg,
                                size_t len, tc_response *r)
{
    const char *before = headers ? headers : "";
    char h[512];
    if (snprintf(h, sizeof h, "%sContent-Type: image/jpeg\r\n", before) >= (int)sizeof h)
        fail_msg("headers too long (%zu bytes)", strlen(before));
    tc_request(port, "POST", path, h, jpeg, len, r);
}


/* An image file reduced to 1/divisor of its sides and saved as a JPEG of `quality`: a small or
 * poor photo of the same face (*out: free()). Returns 0 or -1. */
static inline int tc_shrunk_jpeg(const char *path, int divisor, int quality, uint8_t **out,
                                 size_t *len)
{
    img_image photo = {0}, small = {0};
    if (img_load_file(path, NULL, &photo, NULL) != 0) return -1;
    int rc = img_resize(&photo, photo.width / divisor, photo.height / divisor, &small);
    if (!rc) rc = img_encode_jpeg(&small, quality, out, len);
    img_free(&photo);
    img_free(&small);
    return rc ? -1 : 0;
}

/* A collection's subject and face counts, as GET /v1/collections/{c} reports them. */
static inline void tc_expect_counts(int port, const char *collection, long long subjects,
                                    long long faces)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/collections/%s", collection);
    json_t *c = tc_call(port, "GET", path, NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(c, "subjects")), subjects);
    assert_int_equal(json_integer_value(json_object_get(c, "faces")), faces);
    json_decref(c);
}

/* The subject does not exist (404 subject_not_found). */
static inline void tc_expect_no_subject(int port, const char *collection, const char *subject)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/collections/%s/subjects/%s", collection, subject);
    tc_response r;
    tc_get(port, path, "", &r);
    tc_expect_error(&r, 404, "subject_not_found");
    tc_response_free(&r);
}

#endif /* cmocka_unit_test */

#endif
