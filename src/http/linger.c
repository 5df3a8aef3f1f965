/*
 * Lingering close (RFC 9112 section 9.6).
 *
 * The server answers some requests before reading their bodies: a Content-Length over
 * --max-body-bytes (413), a missing or refused API key (401, 403), an unknown path (404), a
 * rate limit (429), the body budget or start-up (503). libmicrohttpd then closes the
 * connection with the rest of the body unread, and a socket closed with unread bytes is reset
 * (Linux sends RST, not FIN). The client was still sending: its next write fails with EPIPE or
 * ECONNRESET, and a reverse proxy that forwards the upload (nginx) reports that as 502, its
 * own HTML page, instead of the answer the server had sent. Measured with nginx in front of
 * `--max-body-bytes 1048576`: 502 for 12 of 20 uploads of 2 MiB and 11 of 20 of 19 MB; with
 * lingering, 413 for all (deploy/README.md, "Request bodies").
 *
 * So such a connection is not closed at once: on libmicrohttpd's close notice (before it
 * closes its descriptor) the server keeps a duplicate of the socket, half-closes it (FIN
 * after the answer) and reads and discards what the client still sends, until the client
 * closes its side, LINGER_MS pass or LINGER_MAX_BYTES arrive, whichever is first; then it
 * closes. A thread of its own with an epoll set does it; the event loop only hands the
 * descriptor over. At most LINGER_MAX_FDS sockets linger at once: past that, one is closed
 * at once, as before (bounded work whatever clients do).
 */
#include "http/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define LINGER_MS 5000
#define LINGER_MAX_BYTES (64 * 1024 * 1024)
#define LINGER_MAX_FDS 256

typedef struct linger_fd {
    int fd; /* -1: a free entry */
    uint64_t deadline_ns;
    size_t bytes;
} linger_fd;

struct http_linger {
    pthread_t thread;
    int epoll_fd, wake_fd;
    pthread_mutex_t lock; /* guards fds and stopping */
    linger_fd fds[LINGER_MAX_FDS];
    int stopping;
};

/* lock held */
static void linger_close(http_linger *l, linger_fd *e)
{
    epoll_ctl(l->epoll_fd, EPOLL_CTL_DEL, e->fd, NULL);
    close(e->fd);
    e->fd = -1;
}

/* Reads and discards what fd has; 1 when the connection is finished with (the client's end
 * of stream, an error, or the byte limit). Called without the lock: only this thread reads. */
static int linger_drain(int fd, size_t *bytes)
{
    static _Thread_local char sink[65536];
    for (;;) {
        ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n > 0) {
            *bytes += (size_t)n;
            if (*bytes >= LINGER_MAX_BYTES) return 1;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    }
}

static void *linger_main(void *arg)
{
    http_linger *l = arg;
    struct epoll_event ev[32];
    for (;;) {
        /* The earliest deadline bounds the wait; 1 s when nothing lingers. */
        int timeout_ms = 1000;
        uint64_t now = base_now_ns();
        pthread_mutex_lock(&l->lock);
        if (l->stopping) {
            pthread_mutex_unlock(&l->lock);
            break;
        }
        for (int i = 0; i < LINGER_MAX_FDS; i++) {
            linger_fd *e = &l->fds[i];
            if (e->fd < 0) continue;
            if (e->deadline_ns <= now) {
                linger_close(l, e);
                continue;
            }
            int left = (int)((e->deadline_ns - now) / 1000000u) + 1;
            if (left < timeout_ms) timeout_ms = left;
        }
        pthread_mutex_unlock(&l->lock);

        int n = epoll_wait(l->epoll_fd, ev, (int)(sizeof ev / sizeof ev[0]), timeout_ms);
        for (int i = 0; i < n; i++) {
            if (ev[i].data.u32 == UINT32_MAX) continue; /* the wake-up: see stopping above */
            linger_fd *e = &l->fds[ev[i].data.u32];
            /* Only this thread closes entries, so the descriptor stays the one registered
             * while it reads (without the lock: http_linger_add may wait for it). */
            pthread_mutex_lock(&l->lock);
            int fd = e->fd;
            size_t bytes = e->bytes;
            pthread_mutex_unlock(&l->lock);
            int done = fd < 0 || linger_drain(fd, &bytes);
            pthread_mutex_lock(&l->lock);
            if (e->fd == fd && fd >= 0) {
                e->bytes = bytes;
                if (done) linger_close(l, e);
            }
            pthread_mutex_unlock(&l->lock);
        }
    }
    pthread_mutex_lock(&l->lock);
    for (int i = 0; i < LINGER_MAX_FDS; i++)
        if (l->fds[i].fd >= 0) linger_close(l, &l->fds[i]);
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

int http_linger_start(http_linger **out)
{
    *out = NULL;
    http_linger *l = calloc(1, sizeof *l);
    if (!l) return base_error_set(BASE_ERR_NOMEM, "lingering close");
    for (int i = 0; i < LINGER_MAX_FDS; i++)
        l->fds[i].fd = -1;
    pthread_mutex_init(&l->lock, NULL);
    l->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event wake = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    if (l->epoll_fd < 0 || l->wake_fd < 0 ||
        epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, l->wake_fd, &wake) != 0 ||
        pthread_create(&l->thread, NULL, linger_main, l) != 0) {
        int e = errno;
        if (l->epoll_fd >= 0) close(l->epoll_fd);
        if (l->wake_fd >= 0) close(l->wake_fd);
        pthread_mutex_destroy(&l->lock);
        free(l);
        return base_error_set(BASE_ERR_BACKEND, "lingering close: %s", strerror(e));
    }
    *out = l;
    return 0;
}

void http_linger_add(http_linger *l, int fd)
{
    if (!l) {
        close(fd);
        return;
    }
    /* The answer is already in the socket's send queue: FIN goes after it, so a client that
     * reads to the end of the stream gets its answer now, not when the lingering ends. */
    shutdown(fd, SHUT_WR);
    pthread_mutex_lock(&l->lock);
    int slot = -1;
    for (int i = 0; i < LINGER_MAX_FDS && slot < 0 && !l->stopping; i++)
        if (l->fds[i].fd < 0) slot = i;
    if (slot >= 0) {
        l->fds[slot] = (linger_fd){
            .fd = fd, .deadline_ns = base_now_ns() + (uint64_t)LINGER_MS * 1000000u};
        /* Level-triggered: bytes left unread by one pass are reported again. */
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)slot};
        if (epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            l->fds[slot].fd = -1;
            slot = -1;
        }
    }
    pthread_mutex_unlock(&l->lock);
    if (slot < 0) close(fd); /* full (or stopping): closed at once, as without lingering */
}

void http_linger_stop(http_linger *l)
{
    if (!l) return;
    pthread_mutex_lock(&l->lock);
    l->stopping = 1;
    pthread_mutex_unlock(&l->lock);
    uint64_t one = 1;
    ssize_t w = write(l->wake_fd, &one, sizeof one);
    (void)w;
    pthread_join(l->thread, NULL);
    close(l->epoll_fd);
    close(l->wake_fd);
    pthread_mutex_destroy(&l->lock);
    free(l);
}
