/*
 * sd_notify without libsystemd (see notify.h). The protocol is systemd's sd_notify(3): a
 * datagram (AF_UNIX, SOCK_DGRAM) of newline-separated KEY=VALUE assignments to the socket
 * $NOTIFY_SOCKET names; the manager reads the sender's credentials from the socket, so nothing
 * else is needed. With Type=notify the unit is "active" on READY=1, "deactivating" on
 * STOPPING=1, and `systemctl status` shows the last STATUS= line.
 */
#include "http/notify.h"

#include "base/base.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int http_notify_address(const char *name, struct sockaddr_un *addr, socklen_t *len)
{
    memset(addr, 0, sizeof *addr);
    addr->sun_family = AF_UNIX;
    size_t n = name ? strlen(name) : 0;
    /* An abstract name is n bytes with its NUL first; a path needs room for its own NUL. */
    if (n < 2 || (name[0] != '/' && name[0] != '@') || n >= sizeof addr->sun_path)
        return BASE_ERR_INVALID;
    memcpy(addr->sun_path, name, n);
    if (name[0] == '@') {
        addr->sun_path[0] = '\0';
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    return 0;
}

/* snprintf's length, clamped to what was written: the caller sends what is in buf. */
static size_t clamp(int n, size_t cap)
{
    if (n < 0 || cap == 0) return 0;
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

size_t http_notify_ready_message(char *buf, size_t cap, uint64_t faces, uint64_t collections)
{
    int n = snprintf(buf, cap, "READY=1\nSTATUS=ready: %llu face%s in %llu collection%s",
                     (unsigned long long)faces, faces == 1 ? "" : "s",
                     (unsigned long long)collections, collections == 1 ? "" : "s");
    return clamp(n, cap);
}

size_t http_notify_stopping_message(char *buf, size_t cap, int64_t in_flight)
{
    int n = snprintf(buf, cap, "STOPPING=1\nSTATUS=draining: %lld request%s in flight",
                     (long long)in_flight, in_flight == 1 ? "" : "s");
    return clamp(n, cap);
}

int http_notify_send(const char *message)
{
    const char *name = getenv("NOTIFY_SOCKET");
    if (!name || !*name) return 0;
    struct sockaddr_un addr;
    socklen_t len;
    int rc = http_notify_address(name, &addr, &len);
    if (rc != 0) return rc;
    /* A socket per message: two or three messages in a process's life, and nothing to keep
     * open (or to leak into the children of a test). Non-blocking: a manager that does not
     * read must not stall the drain. */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return BASE_ERR_IO;
    ssize_t sent =
        sendto(fd, message, strlen(message), MSG_NOSIGNAL, (struct sockaddr *)&addr, len);
    int err = errno;
    close(fd);
    if (sent < 0) return err == EAGAIN ? BASE_ERR_FULL : BASE_ERR_IO;
    return 0;
}
