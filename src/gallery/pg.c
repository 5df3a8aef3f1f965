/*
 * PostgreSQL connections as vultus makes them, shared by the gallery's store
 * (store_postgres.c) and the API keys' store (http/keys.c): the connection defaults, the
 * limit on the wait for one statement's answer (VULTUS_STORE_TIMEOUT_MS), the bounded wait
 * itself, the limits the server applies to each session on its own side, and the window during
 * which a server that stopped answering counts as unreachable.
 */
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/base.h"
#include "gallery/gallery.h"

int gal_pg_timeout_ms(int *timeout_ms)
{
    *timeout_ms = GAL_PG_TIMEOUT_MS;
    const char *text = getenv("VULTUS_STORE_TIMEOUT_MS");
    if (!text || !*text) return 0;
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (*end || errno || v < 0 || v > 3600000)
        return base_error_set(BASE_ERR_INVALID,
                              "VULTUS_STORE_TIMEOUT_MS=%.40s: not a number of milliseconds "
                              "from 0 (no limit) to 3600000",
                              text);
    *timeout_ms = (int)v;
    return 0;
}

/* Starts (start: without blocking) or makes a connection with our defaults. */
static PGconn *connect_with_defaults(const char *url, const char *connect_timeout_s, int start)
{
    /* Our defaults first: the URL, expanded in place of dbname, overrides them. Over TCP, a
     * peer that stops acknowledging (a partition) ends the connection after 10 s, whether
     * bytes are waiting (tcp_user_timeout) or the connection is idle (keepalive probes after
     * 10 s idle, every 5 s, 3 unanswered). Ignored on a Unix socket. */
    const char *const keys[] = {"application_name",
                                "connect_timeout",
                                "keepalives",
                                "keepalives_idle",
                                "keepalives_interval",
                                "keepalives_count",
                                "tcp_user_timeout",
                                "dbname",
                                NULL};
    const char *const values[] = {"vultus", connect_timeout_s, "1", "10", "5",
                                  "3",      "10000",           url, NULL};
    return start ? PQconnectStartParams(keys, values, 1) : PQconnectdbParams(keys, values, 1);
}

struct pg_conn *gal_pg_connect(const char *url, const char *connect_timeout_s)
{
    return connect_with_defaults(url, connect_timeout_s, 0);
}

/*
 * A connection attempt whose wait ends at deadline_ns too: libpq's blocking connect waits
 * connect_timeout (whole seconds, at least 2), longer than a call's limit may allow, and
 * through a partition it waits all of it. So the attempt is driven without blocking
 * (PQconnectPoll) and abandoned at the deadline or at connect_timeout, whichever is first.
 */
struct pg_conn *gal_pg_connect_until(const char *url, const char *connect_timeout_s,
                                     uint64_t deadline_ns, int *timed_out)
{
    *timed_out = 0;
    if (!deadline_ns) return connect_with_defaults(url, connect_timeout_s, 0);
    PGconn *pg = connect_with_defaults(url, connect_timeout_s, 1);
    if (!pg || PQstatus(pg) == CONNECTION_BAD) return pg;
    uint64_t until = deadline_ns;
    PQconninfoOption *options = PQconninfo(pg); /* connect_timeout as libpq reads it */
    for (PQconninfoOption *o = options; o && o->keyword; o++) {
        if (strcmp(o->keyword, "connect_timeout") != 0 || !o->val) continue;
        long seconds = strtol(o->val, NULL, 10);
        if (seconds > 0 && seconds < 2) seconds = 2; /* libpq's least */
        uint64_t t = base_now_ns() + (uint64_t)seconds * 1000000000u;
        if (seconds > 0 && t < until) until = t;
    }
    PQconninfoFree(options);
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        uint64_t now = base_now_ns();
        if (now >= until) {
            *timed_out = 1;
            shutdown(PQsocket(pg), SHUT_RDWR);
            PQconnectPoll(pg); /* reads the end: CONNECTION_BAD */
            break;
        }
        struct pollfd p = {.fd = PQsocket(pg),
                           .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT};
        int n = poll(&p, 1, (int)((until - now + 999999) / 1000000));
        if (n < 0 && errno != EINTR) break;
        if (n > 0) st = PQconnectPoll(pg);
    }
    return pg;
}

int gal_pg_wait_ms(int timeout_ms, uint64_t deadline_ns)
{
    uint64_t now = base_now_ns();
    if (!deadline_ns || !timeout_ms) return timeout_ms;
    if (deadline_ns <= now) return 1;
    uint64_t left = (deadline_ns - now + 999999) / 1000000;
    return left < (uint64_t)timeout_ms ? (int)left : timeout_ms;
}

/*
 * Bounded waits. A statement on a connection whose peer stopped answering (a network
 * partition, a frozen host or proxy) waits in libpq for as long as TCP keeps the connection:
 * keepalives and tcp_user_timeout (gal_pg_connect) end it when nothing is acknowledged, but a
 * middlebox that acknowledges and forwards nothing, or a server that accepts and never
 * answers, keeps it open for good. So every statement is sent without blocking and its answer
 * waited for at most timeout_ms; then the connection's socket is shut down, which libpq takes
 * for the end of the connection (CONNECTION_BAD): the statement fails with an I/O error (503
 * store_unavailable for a request) and the next use reconnects. The server ends the session
 * once the FIN reaches it, or, behind a partition that the FIN cannot cross, by the session's
 * own limits (gal_pg_session_init). Not PQcancel: it opens a new connection, which would wait
 * just the same.
 */
struct pg_result *gal_pg_wait(struct pg_conn *pg, int sent, int timeout_ms, const char *kind,
                              const char *shown, int *timed_out)
{
    /* *timed_out: the limit that ended the wait, for the caller's message (gal_pg_no_answer) */
    *timed_out = 0;
    if (!sent) return NULL;
    uint64_t deadline = timeout_ms ? base_now_ns() + (uint64_t)timeout_ms * 1000000u : 0;
    for (;;) {
        int unsent = PQflush(pg); /* 1: more to send, -1: failed */
        if (unsent < 0 || (!unsent && !PQisBusy(pg))) break;
        int wait_ms = -1;
        if (deadline) {
            uint64_t now = base_now_ns();
            if (now >= deadline) {
                *timed_out = timeout_ms;
                LOG_WARN("%s %s: no answer within %d ms, closing the connection", kind, shown,
                         timeout_ms);
                shutdown(PQsocket(pg), SHUT_RDWR);
                PQconsumeInput(pg); /* reads the end: CONNECTION_BAD */
                break;
            }
            wait_ms = (int)((deadline - now + 999999) / 1000000);
        }
        struct pollfd p = {.fd = PQsocket(pg), .events = POLLIN | (unsent ? POLLOUT : 0)};
        int n = poll(&p, 1, wait_ms);
        if (n < 0 && errno != EINTR) break;
        if (n > 0 && (p.revents & (POLLIN | POLLERR | POLLHUP)) && !PQconsumeInput(pg)) break;
    }
    PGresult *last = NULL;
    for (PGresult *r; (r = PQgetResult(pg));) {
        if (last && PQresultStatus(last) == PGRES_FATAL_ERROR) {
            PQclear(r);
        } else {
            PQclear(last);
            last = r;
        }
    }
    return last;
}

/*
 * A wait cut short by the call's deadline is not the limit: a reconnection's session set-up
 * that got 300 ms, all that was left of a call's 2000 ms, was reported as "no answer within
 * 2000 ms", which sent whoever read it looking for a 2-second stall that never happened. So
 * the message says what was waited and, when that was less, of which limit.
 */
const char *gal_pg_no_answer(char *buf, size_t cap, int waited_ms, int limit_ms)
{
    if (limit_ms <= 0 || waited_ms >= limit_ms)
        snprintf(buf, cap, "no answer within %d ms", limit_ms > 0 ? limit_ms : waited_ms);
    else
        snprintf(buf, cap, "no answer within %d ms, what was left of the call's %d ms limit",
                 waited_ms > 0 ? waited_ms : 1, limit_ms);
    return buf;
}

/*
 * A statement cut off by the client's limit leaves its session on the server, and with it any
 * open transaction and its locks (the change log's advisory lock, rows locked FOR UPDATE),
 * until the server notices the connection gone: at once when the FIN reaches it, but behind a
 * partition only after its own TCP keepalive (2 h by the OS default), meanwhile every other
 * replica's write waits for that lock. So each session asks the server to give up on its own
 * side as soon as the client has: a statement after timeout_ms (statement_timeout; the client
 * stopped waiting for it then) and a transaction left idle for timeout_ms
 * (idle_in_transaction_session_timeout: vultus never pauses inside a transaction for longer
 * than it waits for an answer, so such a transaction's client is gone; the server ends the
 * session and releases its locks). A setting already made elsewhere wins: in the URL
 * (options=-c...), for the role or the database (ALTER ROLE ... SET), in the server's
 * configuration; pg_settings says where each comes from, and a setting the server does not
 * know (an old version) is simply absent from it. One round trip; the values are parameters.
 * Its answer is waited for as any other: at most timeout_ms and at most until the calling
 * operation's deadline, since a connection made again mid-call (a database that accepts it and
 * then freezes) must not add a whole limit to what the call has already waited.
 */
struct pg_result *gal_pg_session_init(struct pg_conn *pg, int timeout_ms, uint64_t deadline_ns,
                                      const char *kind, const char *shown, int *timed_out)
{
    *timed_out = 0;
    if (!timeout_ms) return PQmakeEmptyPGresult(pg, PGRES_TUPLES_OK);
    char ms[16];
    snprintf(ms, sizeof ms, "%d", timeout_ms);
    const char *values[] = {ms};
    return gal_pg_wait(
        pg,
        PQsendQueryParams(pg,
                          "SELECT set_config(name, $1, false) FROM pg_settings WHERE name IN "
                          "('statement_timeout', 'idle_in_transaction_session_timeout') AND "
                          "source = 'default'",
                          1, NULL, values, NULL, NULL, 0),
        gal_pg_wait_ms(timeout_ms, deadline_ns), kind, shown, timed_out);
}

/* ---- the unreachable window (gallery.h, struct gal_pg_outage) ---------------------------- */

void gal_pg_outage_init(struct gal_pg_outage *o, const char *kind, const char *shown)
{
    o->kind = kind;
    o->shown = shown;
    atomic_init(&o->down, 0);
    atomic_init(&o->probing, 0);
    atomic_init(&o->retry_ns, 0);
    atomic_init(&o->backoff_ms, GAL_PG_RETRY_MIN_MS);
}

void gal_pg_outage_mark(struct gal_pg_outage *o, int grow)
{
    int wait = atomic_load(&o->backoff_ms);
    if (wait < GAL_PG_RETRY_MIN_MS) wait = GAL_PG_RETRY_MIN_MS;
    atomic_store(&o->retry_ns, base_now_ns() + (uint64_t)wait * 1000000u);
    if (grow)
        atomic_store(&o->backoff_ms,
                     wait * 2 > GAL_PG_RETRY_MAX_MS ? GAL_PG_RETRY_MAX_MS : wait * 2);
    atomic_store(&o->down, 1);
}

int gal_pg_outage_gate(struct gal_pg_outage *o)
{
    if (!atomic_load(&o->down) || base_now_ns() >= atomic_load(&o->retry_ns)) return 0;
    return base_error_set(BASE_ERR_IO,
                          "%s %s: unreachable (the last statement or connection attempt "
                          "failed; retrying every %d ms at most)",
                          o->kind, o->shown, atomic_load(&o->backoff_ms));
}

int gal_pg_outage_probe(struct gal_pg_outage *o, int *probe)
{
    *probe = atomic_load(&o->down);
    if (*probe && (base_now_ns() < atomic_load(&o->retry_ns) || atomic_exchange(&o->probing, 1))) {
        *probe = 0;
        return base_error_set(BASE_ERR_IO,
                              "%s %s: cannot connect (the last attempt failed; retrying every "
                              "%d ms at most)",
                              o->kind, o->shown, atomic_load(&o->backoff_ms));
    }
    return 0;
}

void gal_pg_outage_probed(struct gal_pg_outage *o, int probe, int ok)
{
    if (ok) {
        if (probe) LOG_INFO("%s %s: connected again", o->kind, o->shown);
        atomic_store(&o->backoff_ms, GAL_PG_RETRY_MIN_MS);
        atomic_store(&o->down, 0);
    } else {
        gal_pg_outage_mark(o, 1);
    }
    if (probe) atomic_store(&o->probing, 0);
}
