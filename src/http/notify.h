/*
 * The service manager's readiness protocol (systemd's sd_notify, Type=notify), spoken without
 * libsystemd: one datagram of "KEY=VALUE" lines to the socket named by $NOTIFY_SOCKET. Private
 * to src/http (server.c sends READY=1 when /readyz would answer 200, STOPPING=1 when SIGTERM
 * starts the drain); tests/http/test_systemd.c checks the messages and the protocol.
 *
 * Nothing here blocks or fails the service: with NOTIFY_SOCKET unset nothing is sent at all,
 * and a socket that is gone, full or refusing only makes http_notify_send return an error the
 * caller may ignore. Thread-safety: every function may be called from any thread.
 */
#ifndef VULTUS_HTTP_NOTIFY_H
#define VULTUS_HTTP_NOTIFY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

/* The address $NOTIFY_SOCKET names: a path ("/run/systemd/notify") or an abstract name
 * ("@name": the '@' becomes the leading NUL). Fills *addr and *len; returns 0, or
 * BASE_ERR_INVALID for an empty, relative or too long name. */
int http_notify_address(const char *name, struct sockaddr_un *addr, socklen_t *len);

/* The message that the service is ready: "READY=1\nSTATUS=ready: 3 faces in 1 collection".
 * Writes at most cap bytes, NUL-terminated; returns its length (truncated past cap). */
size_t http_notify_ready_message(char *buf, size_t cap, uint64_t faces, uint64_t collections);

/* The message that the drain has begun: "STOPPING=1\nSTATUS=draining: 2 requests in flight". */
size_t http_notify_stopping_message(char *buf, size_t cap, int64_t in_flight);

/* Sends `message` to $NOTIFY_SOCKET, without blocking. Returns 0 when sent or when the
 * variable is unset or empty (nothing to do), else a negative BASE_ERR_* code (an invalid
 * name, a socket that is gone or full). */
int http_notify_send(const char *message);

#endif
