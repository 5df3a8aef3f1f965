/*
 * API keys and idempotency records, in two tables of our own in the gallery's SQLite file
 * (DATA/vultus.db), on a connection of our own:
 *
 *   api_keys(id, hash, scope, collection, name, created_ms)
 *       hash = SHA-256 of the key text; the text itself is printed once and never stored.
 *   idempotency_keys(scope, fingerprint, status, body, created_ms)
 *       one row per (API key, collection, Idempotency-Key): the request's fingerprint and,
 *       once it finished, its response; status 0 while it runs.
 *
 * The server keeps the key table in memory (checked on every /v1 request without touching
 * SQLite) and reloads it when PRAGMA data_version says another connection wrote the file, so
 * `vultus keys create` takes effect on a running server within a second.
 *
 * With a PostgreSQL store (db_path is a postgres:// URL) the same two tables live in that
 * database, shared by every replica, on one libpq connection of our own (reconnected once
 * when it breaks). PostgreSQL has no data_version: the key table (a few rows) is simply
 * reloaded at every refresh, once a second. An idempotency key is claimed with INSERT ... ON
 * CONFLICT DO NOTHING, then the existing row read FOR UPDATE, so two replicas receiving the
 * same key at once cannot both run the request.
 *
 * Each call on that connection waits at most about one VULTUS_STORE_TIMEOUT_MS from its
 * start, as a gallery call does (gallery.h, gal_lock_until): for db_lock behind other calls,
 * for a reconnection and for each answer. Calls used to queue on db_lock behind a holder
 * waiting out its limit, so with the database unreachable the k-th idempotent request waited
 * about k limits. A call that gives up answers 503 store_unavailable and has written nothing
 * since (one whose lock wait ran out sent nothing; a statement without an answer closes the
 * connection, which ends its transaction), and after a statement without an answer within
 * the whole limit, or a failed connection attempt, calls fail at once for the retry interval.
 */
#include "http/internal.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#define BUSY_TIMEOUT_MS 5000
#define IDEM_KEEP_MS (24 * 3600 * 1000LL)
/* A claim's owner touches it once a second (http_keystore_refresh) while its request runs, so
 * a claim untouched for this long belongs to a process that died (a replica killed mid-request):
 * a retry on any replica takes it over instead of waiting. */
#define IDEM_ABANDONED_MS (5 * 1000LL)
/* Claim times on PostgreSQL come from the database's clock, the one clock every replica
 * shares: a replica whose clock runs ahead must not see a live claim as abandoned. */
#define PG_NOW_MS "(extract(epoch from clock_timestamp()) * 1000)::bigint"

typedef struct key_entry {
    http_key_info info;
    uint8_t hash[32];
    http_bucket bucket;
} key_entry;

/* Three locks, so that checking a key on the event loop never waits for SQLite: db_lock guards
 * the connection (held by workers through whole idempotency transactions, which may wait for
 * the gallery's writer), keys_lock only the in-memory table, claims_lock only the claims (a
 * request forgets its claim even when its call gives up waiting for db_lock). Order: db_lock,
 * then keys_lock or claims_lock. */
struct http_keystore {
    pthread_mutex_t db_lock;     /* guards the use of db and pg, and the fields to claims_lock */
    sqlite3 *db;                 /* NULL with a PostgreSQL store; set at open, then never changed */
    PGconn *pg;                  /* NULL with a SQLite store */
    char *url;                   /* PostgreSQL: where to connect again */
    int pg_timeout_ms;           /* the longest wait for one statement's answer; 0: none */
    uint64_t deadline_ns;        /* when db_lock's holder gives up (base_now_ns() time); 0: never */
    struct gal_pg_outage outage; /* PostgreSQL: calls fail at once while it is unreachable */
    char shown[256];             /* the store for messages (a URL without its password) */
    int64_t data_version;
    int64_t last_purge_ms;
    pthread_mutex_t claims_lock;
    char **claims; /* scopes this process has claimed and not finished or released yet */
    size_t n_claims, cap_claims;
    pthread_mutex_t keys_lock; /* guards keys, n_keys, n_rows and the buckets */
    key_entry *keys;
    size_t n_keys;
    size_t n_rows; /* rows of api_keys, with those skipped as unreadable */
    uint64_t skipped_said; /* skipped_rows.hash of the rows last logged as unreadable */
};

/* The rows of one read of api_keys that this build cannot read. The keys are read again after
 * every write to the SQLite file (an enrolment too) and every second from PostgreSQL: the
 * warning is logged when the set of such rows changes, not at every read (during a rollout an
 * older replica meets a newer one's scope at each of them). */
typedef struct skipped_rows {
    size_t count;
    uint64_t hash;  /* FNV-1a over their ids; 0 when there are none */
    char ids[160];  /* the first ones, comma-separated, for the log */
} skipped_rows;

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS api_keys("
    " id TEXT PRIMARY KEY, hash BLOB NOT NULL UNIQUE, scope TEXT NOT NULL,"
    " collection TEXT NOT NULL DEFAULT '', name TEXT NOT NULL DEFAULT '',"
    " created_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS idempotency_keys("
    " scope TEXT PRIMARY KEY, fingerprint BLOB NOT NULL, status INTEGER NOT NULL DEFAULT 0,"
    " body TEXT, created_ms INTEGER NOT NULL);";

static int64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A full disk is BASE_ERR_FULL (507 store_full, as for the gallery's own writes in the same
 * file), not a backend failure (500): an enrolment with an Idempotency-Key claims its key here
 * first, so on a full disk this is the error its client gets. */
static int db_error(sqlite3 *db, const char *what)
{
    int code = (sqlite3_errcode(db) & 0xff) == SQLITE_FULL ? BASE_ERR_FULL : BASE_ERR_BACKEND;
    return base_error_set(code, "api keys store: %s: %s", what, sqlite3_errmsg(db));
}

/* Runs `sql` (no rows) with `text` as ?1 when not NULL and `number` as the parameter after it
 * when the statement has one. */
static int exec_bound(sqlite3 *db, const char *sql, const char *text, int64_t number)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return db_error(db, sql);
    int next = 1;
    if (text) sqlite3_bind_text(st, next++, text, -1, SQLITE_TRANSIENT);
    if (sqlite3_bind_parameter_count(st) >= next) sqlite3_bind_int64(st, next, number);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : db_error(db, sql);
}

/* ---- PostgreSQL helpers ----------------------------------------------------------------- */

static const char pg_schema[] =
    "BEGIN; SELECT pg_advisory_xact_lock(6216993364005584899);" /* "VGAL" 3: key tables */
    "CREATE TABLE IF NOT EXISTS api_keys("
    " id TEXT PRIMARY KEY, hash BYTEA NOT NULL UNIQUE, scope TEXT NOT NULL,"
    " collection TEXT NOT NULL DEFAULT '', name TEXT NOT NULL DEFAULT '',"
    " created_ms BIGINT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS idempotency_keys("
    " scope TEXT PRIMARY KEY, fingerprint BYTEA NOT NULL, status INTEGER NOT NULL DEFAULT 0,"
    " body TEXT, created_ms BIGINT NOT NULL);"
    "COMMIT";

/* Server notices ("relation already exists, skipping") go to the debug log, not stderr. */
static void pg_notice(void *arg, const char *message)
{
    (void)arg;
    LOG_DEBUG("api keys store: %s", message);
}

/* The last statement of this thread got no answer: the ms it waited (gal_pg_wait), else 0. */
static _Thread_local int pg_timed_out;

/*
 * Waits for the answer to what was just sent on ks->pg, at most ks->pg_timeout_ms and at most
 * until the call's deadline (gal_pg_wait, shared with the gallery's store): a database behind
 * a network partition (or a frozen proxy) would keep the statement waiting as long as TCP
 * keeps the connection, and with it db_lock and whatever waits for it (idempotent requests,
 * the next refresh). Past the limit the connection is closed (CONNECTION_BAD) and the next
 * statement reconnects; past the whole limit, the database is also marked unreachable (a wait
 * cut short by the call's deadline says less about the server).
 */
static PGresult *pg_wait(http_keystore *ks, int sent)
{
    const int limit = gal_pg_wait_ms(ks->pg_timeout_ms, ks->deadline_ns);
    PGresult *r = gal_pg_wait(ks->pg, sent, limit, "api keys store", ks->shown, &pg_timed_out);
    if (pg_timed_out && limit == ks->pg_timeout_ms) gal_pg_outage_mark(&ks->outage, 0);
    return r;
}

static int pg_error(http_keystore *ks, const PGresult *r, const char *what)
{
    char waited[96];
    if (pg_timed_out) /* the ms waited (gal_pg_wait) */
        return base_error_set(
            BASE_ERR_IO,
            "api keys store %s: %s: %s (the database is unreachable or overloaded; "
            "VULTUS_STORE_TIMEOUT_MS)",
            ks->shown, what,
            gal_pg_no_answer(waited, sizeof waited, pg_timed_out, ks->pg_timeout_ms));
    char msg[300];
    snprintf(msg, sizeof msg, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(ks->pg));
    msg[strcspn(msg, "\n")] = '\0';
    /* Class 57 (operator intervention) includes the server's own statement_timeout
     * (gal_pg_session_init): unavailable, as when the client's limit ends the wait. */
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    int io = !r || PQstatus(ks->pg) == CONNECTION_BAD || (state && strncmp(state, "57", 2) == 0);
    int full = !io && state && strcmp(state, "53100") == 0; /* disk_full: as db_error says */
    return base_error_set(io ? BASE_ERR_IO : full ? BASE_ERR_FULL : BASE_ERR_BACKEND,
                          "api keys store %s: %s: %s", ks->shown, what, msg);
}

/* Readies a connection just made or reset: non-blocking, server notices to the debug log, and
 * the session's limits on the server's side (gal_pg_session_init). 0 or a BASE_ERR_*. */
static int pg_session(http_keystore *ks)
{
    if (PQstatus(ks->pg) != CONNECTION_OK || PQsetnonblocking(ks->pg, 1) != 0)
        return pg_error(ks, NULL, "connect");
    PQsetNoticeProcessor(ks->pg, pg_notice, NULL);
    PGresult *r = gal_pg_session_init(ks->pg, ks->pg_timeout_ms, ks->deadline_ns, "api keys store",
                                      ks->shown, &pg_timed_out);
    int rc = PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : pg_error(ks, r, "connect");
    PQclear(r);
    return rc;
}

/* Replaces a lost connection: a new attempt that waits at most until the call's deadline
 * (PQreset would wait the whole connect_timeout, 2 s unless the URL says otherwise, through a
 * partition). While the database is marked unreachable, only as its one probe; a failed
 * attempt marks it unreachable for the retry interval (gal_pg_outage_probe). */
static int pg_reconnect(http_keystore *ks)
{
    int probe;
    int rc = gal_pg_outage_probe(&ks->outage, &probe);
    if (rc) return rc;
    int late = 0;
    uint64_t t0 = base_now_ns();
    PGconn *pg = gal_pg_connect_until(ks->url, "2", ks->deadline_ns, &late);
    if (!pg) {
        gal_pg_outage_probed(&ks->outage, probe, 0);
        return base_error_set(BASE_ERR_NOMEM, "api keys store: no connection");
    }
    PQfinish(ks->pg); /* the lost one; the new one, even failed, stands in for it */
    ks->pg = pg;
    char waited[96];
    rc = late ? base_error_set(BASE_ERR_IO,
                               "api keys store %s: cannot connect: %s (VULTUS_STORE_TIMEOUT_MS)",
                               ks->shown,
                               gal_pg_no_answer(waited, sizeof waited,
                                                (int)((base_now_ns() - t0) / 1000000u),
                                                ks->pg_timeout_ms))
              : pg_session(ks);
    gal_pg_outage_probed(&ks->outage, probe, rc == 0);
    return rc;
}

/* Runs `sql` with text parameters (NULL entries are SQL NULL), text results, into *out (the
 * caller PQclear()s it; NULL: dropped). A connection found lost outside a transaction is made
 * again (pg_reconnect) and the statement retried once. Lost: libpq says so (not CONNECTION_OK:
 * CONNECTION_BAD, or the state where an attempt abandoned at the call's deadline stopped; left
 * by an attempt that failed while the server was down, such a connection's transaction status
 * is UNKNOWN, never IDLE, so it must count as idle or it would never be made again), or the
 * statement failed without a SQLSTATE, i.e. not by the server: after a crash or an immediate
 * shutdown libpq fails the first statement on an idle connection with CONNECTION_OK still set. */
static int pg_run(http_keystore *ks, const char *sql, int n, const char *const *values,
                  const char *what, PGresult **out)
{
    if (out) *out = NULL;
    for (int attempt = 0;; attempt++) {
        int idle = PQstatus(ks->pg) != CONNECTION_OK || PQtransactionStatus(ks->pg) == PQTRANS_IDLE;
        PGresult *r = pg_wait(ks, PQsendQueryParams(ks->pg, sql, n, NULL, values, NULL, NULL, 0));
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
            if (out)
                *out = r;
            else
                PQclear(r);
            return 0;
        }
        int lost =
            PQstatus(ks->pg) != CONNECTION_OK || !r || !PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (attempt == 0 && idle && lost && !pg_timed_out) {
            PQclear(r);
            int rc = pg_reconnect(ks);
            if (rc == 0) continue;
            return rc;
        }
        int rc = pg_error(ks, r, what);
        PQclear(r);
        return rc;
    }
}

static int pg_ok(http_keystore *ks, const char *sql, int n, const char *const *values,
                 const char *what)
{
    return pg_run(ks, sql, n, values, what, NULL);
}

static void pg_rollback(http_keystore *ks)
{
    if (PQstatus(ks->pg) == CONNECTION_OK && PQtransactionStatus(ks->pg) != PQTRANS_IDLE)
        PQclear(pg_wait(ks, PQsendQuery(ks->pg, "ROLLBACK")));
}

/*
 * Takes db_lock for one call on the store. On PostgreSQL the call's deadline is set here, one
 * limit from now: the wait for db_lock ends at it (the holder may be waiting out its own limit
 * on an unreachable database), and so do the call's reconnection and answers (pg_wait,
 * pg_reconnect); while the database is marked unreachable the call fails at once, before and
 * after the lock (the holder ahead may just have found it so). SQLite: the lock, as ever (its
 * own busy timeout bounds its waits). 0, or BASE_ERR_IO without the lock.
 */
static int db_begin(http_keystore *ks)
{
    if (ks->db) {
        pthread_mutex_lock(&ks->db_lock);
        return 0;
    }
    const uint64_t deadline =
        ks->pg_timeout_ms ? base_now_ns() + (uint64_t)ks->pg_timeout_ms * 1000000u : 0;
    int rc = gal_pg_outage_gate(&ks->outage);
    if (rc) return rc;
    if (gal_lock_until(&ks->db_lock, deadline) != 0)
        return base_error_set(BASE_ERR_IO,
                              "api keys store %s: no answer within %d ms: waited for its "
                              "connection behind another call waiting on the database "
                              "(VULTUS_STORE_TIMEOUT_MS)",
                              ks->shown, ks->pg_timeout_ms);
    if ((rc = gal_pg_outage_gate(&ks->outage))) {
        pthread_mutex_unlock(&ks->db_lock);
        return rc;
    }
    ks->deadline_ns = deadline;
    return 0;
}

static void db_end(http_keystore *ks)
{
    ks->deadline_ns = 0;
    pthread_mutex_unlock(&ks->db_lock);
}

/* 32 bytes from 64 hex digits; -1 when malformed. */
static int from_hex32(const char *hex, uint8_t out[32])
{
    if (!hex || strlen(hex) != 64) return -1;
    for (int i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) return -1;
        out[i] = (uint8_t)v;
    }
    return 0;
}

static void to_hex(const uint8_t *data, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", data[i]);
}

int http_scope_parse(const char *text, enum http_scope *scope)
{
    if (strcmp(text, "read") == 0)
        *scope = HTTP_SCOPE_READ;
    else if (strcmp(text, "checkin") == 0)
        *scope = HTTP_SCOPE_CHECKIN;
    else if (strcmp(text, "write") == 0)
        *scope = HTTP_SCOPE_WRITE;
    else if (strcmp(text, "admin") == 0)
        *scope = HTTP_SCOPE_ADMIN;
    else
        return base_error_set(BASE_ERR_INVALID,
                              "scope '%s': expected read, checkin, write or admin", text);
    return 0;
}

const char *http_scope_name(enum http_scope scope)
{
    switch (scope) {
    case HTTP_SCOPE_READ: return "read";
    case HTTP_SCOPE_CHECKIN: return "checkin";
    case HTTP_SCOPE_WRITE: return "write";
    case HTTP_SCOPE_ADMIN: return "admin";
    default: return "none";
    }
}

int http_store_path(const char *data_dir, char *out, size_t cap)
{
    int n = gal_location_is_url(data_dir) ? snprintf(out, cap, "%s", data_dir)
                                          : snprintf(out, cap, "%s/vultus.db", data_dir);
    if (n < 0 || (size_t)n >= cap)
        return gal_location_is_url(data_dir) /* a URL may hold a password: never echoed */
                   ? base_error_set(BASE_ERR_LIMIT, "the store URL is longer than %zu bytes",
                                    cap - 1)
                   : base_error_set(BASE_ERR_LIMIT, "data folder path too long: %s", data_dir);
    return 0;
}

static void skipped_add(skipped_rows *sk, const char *id)
{
    if (!id) id = "?";
    uint64_t h = sk->count ? sk->hash : 14695981039346656037ull;
    for (const char *c = id; ; c++) { /* the terminating NUL too: ids stay apart */
        h = (h ^ (unsigned char)*c) * 1099511628211ull;
        if (!*c) break;
    }
    sk->hash = h ? h : 1;
    size_t used = strlen(sk->ids);
    if (used + strlen(id) + 3 < sizeof sk->ids)
        snprintf(sk->ids + used, sizeof sk->ids - used, "%s%s", used ? ", " : "", id);
    else if (used + 5 < sizeof sk->ids && !strstr(sk->ids, "..."))
        snprintf(sk->ids + used, sizeof sk->ids - used, ", ...");
    sk->count++;
}

/* Fills `e` from one row's values; 0, or -1 when the row is malformed (added to `sk`). */
static int key_from_row(key_entry *e, skipped_rows *sk, const char *id, const uint8_t *hash,
                        const char *scope, const char *collection, const char *name,
                        int64_t created_ms)
{
    memset(e, 0, sizeof *e);
    enum http_scope sc;
    if (!id || !hash || !scope || http_scope_parse(scope, &sc) != 0) {
        skipped_add(sk, id);
        return -1;
    }
    snprintf(e->info.id, sizeof e->info.id, "%s", id);
    e->info.scope = sc;
    snprintf(e->info.collection, sizeof e->info.collection, "%s", collection ? collection : "");
    snprintf(e->info.name, sizeof e->info.name, "%s", name ? name : "");
    e->info.created_ms = created_ms;
    memcpy(e->hash, hash, 32);
    return 0;
}

/* Installs a freshly read table of `rows` rows (n of them readable, `sk` the others), keeping
 * the buckets of keys still there; takes `keys`. */
static void install_keys(http_keystore *ks, key_entry *keys, size_t n, size_t rows,
                         const skipped_rows *sk)
{
    if (sk->hash != ks->skipped_said) { /* only the loading thread writes it (under db_lock) */
        if (sk->count)
            LOG_WARN("api keys: %zu key row(s) this build cannot read are not accepted (a scope "
                     "it does not know, as a newer vultus writes, or a damaged hash): %s",
                     sk->count, sk->ids);
        else
            LOG_INFO("api keys: every key row is readable again");
        ks->skipped_said = sk->hash;
    }
    pthread_mutex_lock(&ks->keys_lock);
    ks->n_rows = rows;
    for (size_t k = 0; k < n; k++)
        for (size_t i = 0; i < ks->n_keys; i++)
            if (strcmp(ks->keys[i].info.id, keys[k].info.id) == 0)
                keys[k].bucket = ks->keys[i].bucket;
    free(ks->keys);
    ks->keys = keys;
    ks->n_keys = n;
    pthread_mutex_unlock(&ks->keys_lock);
}

static int pg_load_keys(http_keystore *ks)
{
    PGresult *r;
    int rc = pg_run(ks,
                    "SELECT id, encode(hash, 'hex'), scope, collection, name, created_ms"
                    " FROM api_keys ORDER BY created_ms, id",
                    0, NULL, "read keys", &r);
    if (rc) return rc;
    int rows = PQntuples(r);
    key_entry *keys = calloc((size_t)(rows ? rows : 1), sizeof *keys);
    if (!keys) {
        PQclear(r);
        return base_error_set(BASE_ERR_NOMEM, "api keys: %d entries", rows);
    }
    size_t n = 0;
    skipped_rows sk = {0};
    for (int i = 0; i < rows; i++) {
        uint8_t hash[32];
        int ok = from_hex32(PQgetvalue(r, i, 1), hash) == 0;
        if (key_from_row(&keys[n], &sk, PQgetvalue(r, i, 0), ok ? hash : NULL, PQgetvalue(r, i, 2),
                         PQgetvalue(r, i, 3), PQgetvalue(r, i, 4),
                         strtoll(PQgetvalue(r, i, 5), NULL, 10)) == 0)
            n++;
    }
    PQclear(r);
    install_keys(ks, keys, n, (size_t)rows, &sk);
    return 0;
}

/* Replaces the in-memory table with the store's, keeping the buckets of keys still there. */
static int load_keys(http_keystore *ks)
{
    if (ks->pg) return pg_load_keys(ks);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ks->db,
                           "SELECT id, hash, scope, collection, name, created_ms FROM api_keys"
                           " ORDER BY created_ms, id",
                           -1, &st, NULL) != SQLITE_OK)
        return db_error(ks->db, "select keys");
    key_entry *keys = NULL;
    size_t n = 0, cap = 0, rows = 0;
    skipped_rows sk = {0};
    int rc, err = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        rows++;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            key_entry *grown = realloc(keys, cap * sizeof *keys);
            if (!grown) {
                err = base_error_set(BASE_ERR_NOMEM, "api keys: %zu entries", cap);
                break;
            }
            keys = grown;
        }
        const void *hash = sqlite3_column_blob(st, 1);
        if (sqlite3_column_bytes(st, 1) != 32) hash = NULL;
        if (key_from_row(
                &keys[n], &sk, (const char *)sqlite3_column_text(st, 0), hash,
                (const char *)sqlite3_column_text(st, 2), (const char *)sqlite3_column_text(st, 3),
                (const char *)sqlite3_column_text(st, 4), sqlite3_column_int64(st, 5)) == 0)
            n++;
    }
    if (!err && rc != SQLITE_DONE) err = db_error(ks->db, "read keys");
    sqlite3_finalize(st);
    if (err) {
        free(keys);
        return err;
    }
    install_keys(ks, keys, n, rows, &sk);
    return 0;
}

static int data_version(http_keystore *ks, int64_t *v)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ks->db, "PRAGMA data_version", -1, &st, NULL) != SQLITE_OK)
        return db_error(ks->db, "data_version");
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : db_error(ks->db, "data_version");
}

int http_keystore_open(const char *db_path, http_keystore **out)
{
    *out = NULL;
    http_keystore *ks = calloc(1, sizeof *ks);
    if (!ks) return base_error_set(BASE_ERR_NOMEM, "keystore");
    pthread_mutex_init(&ks->db_lock, NULL);
    pthread_mutex_init(&ks->claims_lock, NULL);
    pthread_mutex_init(&ks->keys_lock, NULL);
    gal_location_redact(db_path, ks->shown, sizeof ks->shown);
    gal_pg_outage_init(&ks->outage, "api keys store", ks->shown);
    int rc;
    if (gal_location_is_url(db_path)) {
        /* A short connect timeout (2 s unless the URL says otherwise): a check of the keys
         * that waits on an unreachable database delays the next one. */
        if ((rc = gal_pg_timeout_ms(&ks->pg_timeout_ms)) || !(ks->url = strdup(db_path)) ||
            !(ks->pg = gal_pg_connect(db_path, "2")) || (rc = pg_session(ks))) {
            if (!rc) rc = base_error_set(BASE_ERR_NOMEM, "api keys store: no connection");
            http_keystore_close(ks);
            return rc;
        }
        PGresult *r = pg_wait(ks, PQsendQuery(ks->pg, pg_schema));
        rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : pg_error(ks, r, "creating the key tables");
        PQclear(r);
        if (!rc) rc = load_keys(ks);
        if (rc) {
            http_keystore_close(ks);
            return rc;
        }
        *out = ks;
        return 0;
    }
    rc = sqlite3_open_v2(db_path, &ks->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rc = base_error_set(BASE_ERR_IO, "%s: %s", db_path,
                            ks->db ? sqlite3_errmsg(ks->db) : "cannot open");
        http_keystore_close(ks);
        return rc;
    }
    sqlite3_busy_timeout(ks->db, BUSY_TIMEOUT_MS);
    /* As the gallery's connections to this file do (store_sqlite.c says why): its -wal and
     * -shm stay when the last connection closes - `vultus keys` is often that one - emptied,
     * so that a service started on a disk full by then can open the store. */
    int persist = 1;
    sqlite3_file_control(ks->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
    char *msg = NULL;
    if (sqlite3_exec(ks->db, "PRAGMA journal_size_limit = 67108864", NULL, NULL, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(ks->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
        rc = base_error_set(BASE_ERR_BACKEND, "%s: creating the key tables: %s", db_path,
                            msg ? msg : "?");
        sqlite3_free(msg);
        http_keystore_close(ks);
        return rc;
    }
    if ((rc = data_version(ks, &ks->data_version)) || (rc = load_keys(ks))) {
        http_keystore_close(ks);
        return rc;
    }
    *out = ks;
    return 0;
}

void http_keystore_close(http_keystore *ks)
{
    if (!ks) return;
    sqlite3_close(ks->db);
    if (ks->pg) PQfinish(ks->pg);
    free(ks->url);
    free(ks->keys);
    for (size_t i = 0; i < ks->n_claims; i++)
        free(ks->claims[i]);
    free(ks->claims);
    pthread_mutex_destroy(&ks->db_lock);
    pthread_mutex_destroy(&ks->claims_lock);
    pthread_mutex_destroy(&ks->keys_lock);
    free(ks);
}

/* Marks this process's running claims as alive (see IDEM_ABANDONED_MS). db_lock held. The
 * scopes are copied under claims_lock first, so that a request forgets its claim without
 * waiting for these statements; a claim forgotten meanwhile is touched once more, harmlessly
 * (the row is finished, gone, or abandoned a little later). */
static int touch_claims(http_keystore *ks)
{
    pthread_mutex_lock(&ks->claims_lock);
    const size_t n = ks->n_claims;
    char **scopes = calloc(n ? n : 1, sizeof *scopes);
    for (size_t i = 0; scopes && i < n; i++)
        scopes[i] = strdup(ks->claims[i]); /* NULL (no memory): touched at the next refresh */
    pthread_mutex_unlock(&ks->claims_lock);
    if (!scopes) return base_error_set(BASE_ERR_NOMEM, "idempotency claims: %zu", n);
    int64_t now = unix_ms();
    int err = 0;
    for (size_t i = 0; i < n && !err; i++) {
        const char *v[] = {scopes[i]};
        if (!scopes[i]) continue;
        err = ks->pg ? pg_ok(ks,
                             "UPDATE idempotency_keys SET created_ms = " PG_NOW_MS
                             " WHERE scope = $1 AND status = 0",
                             1, v, "touch idempotency claim")
                     : exec_bound(ks->db,
                                  "UPDATE idempotency_keys SET created_ms = ?2"
                                  " WHERE scope = ?1 AND status = 0",
                                  scopes[i], now);
    }
    for (size_t i = 0; i < n; i++)
        free(scopes[i]);
    free(scopes);
    return err;
}

int http_keystore_refresh(http_keystore *ks)
{
    int rc = db_begin(ks);
    if (rc) return rc;
    if ((rc = touch_claims(ks))) {
        db_end(ks);
        return rc;
    }
    if (ks->pg) { /* no data_version: a few rows, read again */
        rc = load_keys(ks);
        db_end(ks);
        return rc;
    }
    int64_t v = 0;
    rc = data_version(ks, &v);
    if (!rc && v != ks->data_version) {
        rc = load_keys(ks);
        if (!rc) ks->data_version = v;
    }
    db_end(ks);
    return rc;
}

/* Rows, not readable keys: a row this version cannot read (a scope a newer one wrote, a damaged
 * hash) is still a key someone created, and must not open the API as "no key exists" would. */
size_t http_keystore_count(http_keystore *ks)
{
    pthread_mutex_lock(&ks->keys_lock);
    size_t n = ks->n_rows;
    pthread_mutex_unlock(&ks->keys_lock);
    return n;
}

int http_keystore_ping(http_keystore *ks)
{
    int err = db_begin(ks);
    if (err) return err;
    if (ks->pg) {
        err = pg_ok(ks, "SELECT count(*) FROM api_keys", 0, NULL, "ping");
        db_end(ks);
        return err;
    }
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(ks->db, "SELECT count(*) FROM api_keys", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    err = rc == SQLITE_ROW ? 0 : db_error(ks->db, "ping");
    sqlite3_finalize(st);
    db_end(ks);
    return err;
}

int http_keystore_check(http_keystore *ks, const char *token, double rate, double burst,
                        http_key_info *info, double *retry_after_s)
{
    uint8_t hash[32];
    http_sha256_digest(token, strlen(token), hash);
    *retry_after_s = 0;
    pthread_mutex_lock(&ks->keys_lock);
    int rc = BASE_ERR_NOT_FOUND;
    for (size_t i = 0; i < ks->n_keys; i++) {
        key_entry *e = &ks->keys[i];
        if (memcmp(e->hash, hash, 32) != 0) continue;
        *info = e->info;
        *retry_after_s = http_bucket_take(&e->bucket, rate, burst, base_now_ns());
        rc = 0;
        break;
    }
    pthread_mutex_unlock(&ks->keys_lock);
    return rc;
}

/* ---- idempotency ------------------------------------------------------------------------ */

/* The scopes this process claimed: touched by http_keystore_refresh while they run. Failing
 * to remember one (no memory) only makes its claim look abandoned sooner. */
static void claims_add(http_keystore *ks, const char *scope)
{
    char *copy = strdup(scope);
    if (!copy) return;
    pthread_mutex_lock(&ks->claims_lock);
    if (ks->n_claims == ks->cap_claims) {
        size_t cap = ks->cap_claims ? 2 * ks->cap_claims : 16;
        char **grown = realloc(ks->claims, cap * sizeof *grown);
        if (grown) {
            ks->claims = grown;
            ks->cap_claims = cap;
        }
    }
    if (ks->n_claims < ks->cap_claims) {
        ks->claims[ks->n_claims++] = copy;
        copy = NULL;
    }
    pthread_mutex_unlock(&ks->claims_lock);
    free(copy);
}

/* Forgets a claim whether or not the call that finishes or releases it reaches the store: one
 * left in the list would be touched for good, and its key answer 409 until a restart. */
static void claims_remove(http_keystore *ks, const char *scope)
{
    pthread_mutex_lock(&ks->claims_lock);
    for (size_t i = 0; i < ks->n_claims; i++) {
        if (strcmp(ks->claims[i], scope) != 0) continue;
        free(ks->claims[i]);
        ks->claims[i] = ks->claims[--ks->n_claims];
        break;
    }
    pthread_mutex_unlock(&ks->claims_lock);
}

static int pg_idem_begin(http_keystore *ks, const char *scope, const uint8_t fingerprint[32],
                         int64_t now, enum http_idem_state *state, int *status, char **body,
                         int *taken_over)
{
    char fp[65], old_text[24];
    to_hex(fingerprint, 32, fp);
    snprintf(old_text, sizeof old_text, "%lld", (long long)(now - IDEM_KEEP_MS));
    int err = pg_ok(ks, "BEGIN", 0, NULL, "begin");
    if (err) return err;
    if (now - ks->last_purge_ms > 60000) {
        const char *v[] = {old_text};
        if ((err = pg_ok(ks, "DELETE FROM idempotency_keys WHERE created_ms < $1::bigint", 1, v,
                         "purge idempotency keys")))
            goto rollback;
        ks->last_purge_ms = now;
    }
    const char *claim[] = {scope, fp};
    PGresult *r;
    if ((err = pg_run(ks,
                      "INSERT INTO idempotency_keys(scope, fingerprint, status, created_ms)"
                      " VALUES ($1, decode($2, 'hex'), 0, " PG_NOW_MS ")"
                      " ON CONFLICT (scope) DO NOTHING",
                      2, claim, "claim idempotency key", &r)))
        goto rollback;
    int inserted = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (!inserted) {
        const char *v[] = {scope};
        if ((err = pg_run(ks,
                          "SELECT encode(fingerprint, 'hex'), status, body,"
                          " " PG_NOW_MS " - created_ms"
                          " FROM idempotency_keys WHERE scope = $1 FOR UPDATE",
                          1, v, "select idempotency", &r)))
            goto rollback;
        if (PQntuples(r) == 0) {
            *state = HTTP_IDEM_BUSY; /* released or purged between: the client retries */
        } else if (strcmp(PQgetvalue(r, 0, 0), fp) != 0) {
            *state = HTTP_IDEM_MISMATCH;
        } else if (atoi(PQgetvalue(r, 0, 1)) != 0) {
            *status = atoi(PQgetvalue(r, 0, 1));
            *body = strdup(PQgetvalue(r, 0, 2));
            if (!*body) err = base_error_set(BASE_ERR_NOMEM, "idempotent response");
            *state = HTTP_IDEM_REPLAY;
        } else if (strtoll(PQgetvalue(r, 0, 3), NULL, 10) < IDEM_ABANDONED_MS) {
            *state = HTTP_IDEM_BUSY;
        } else {
            err =
                pg_ok(ks, "UPDATE idempotency_keys SET created_ms = " PG_NOW_MS " WHERE scope = $1",
                      1, claim, "take over idempotency key");
            *taken_over = 1;
        }
        PQclear(r);
        if (err) goto rollback;
    }
    if ((err = pg_ok(ks, "COMMIT", 0, NULL, "commit"))) goto rollback;
    return 0;
rollback:
    pg_rollback(ks);
    free(*body);
    *body = NULL;
    *state = HTTP_IDEM_NEW;
    return err;
}

int http_idem_begin(http_keystore *ks, const char *scope, const uint8_t fingerprint[32],
                    enum http_idem_state *state, int *status, char **body, int *taken_over)
{
    *state = HTTP_IDEM_NEW;
    *status = 0;
    *body = NULL;
    *taken_over = 0;
    int64_t now = unix_ms();
    int err = db_begin(ks);
    if (err) return err;
    if (ks->pg) {
        int rc = pg_idem_begin(ks, scope, fingerprint, now, state, status, body, taken_over);
        if (!rc && *state == HTTP_IDEM_NEW) claims_add(ks, scope);
        db_end(ks);
        return rc;
    }
    sqlite3 *db = ks->db;
    sqlite3_stmt *st = NULL;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        err = db_error(db, "begin");
        goto out;
    }
    if (now - ks->last_purge_ms > 60000) {
        err = exec_bound(db, "DELETE FROM idempotency_keys WHERE created_ms < ?", NULL,
                         now - IDEM_KEEP_MS);
        if (err) goto rollback;
        ks->last_purge_ms = now;
    }
    if (sqlite3_prepare_v2(db,
                           "SELECT fingerprint, status, body, created_ms FROM idempotency_keys"
                           " WHERE scope = ?",
                           -1, &st, NULL) != SQLITE_OK) {
        err = db_error(db, "select idempotency");
        goto rollback;
    }
    sqlite3_bind_text(st, 1, scope, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    const char *sql = NULL;
    if (rc == SQLITE_ROW) {
        const void *fp = sqlite3_column_blob(st, 0);
        int done = sqlite3_column_int(st, 1);
        int64_t created = sqlite3_column_int64(st, 3);
        if (!fp || sqlite3_column_bytes(st, 0) != 32 || memcmp(fp, fingerprint, 32) != 0) {
            *state = HTTP_IDEM_MISMATCH;
        } else if (done) {
            const char *text = (const char *)sqlite3_column_text(st, 2);
            *body = strdup(text ? text : "");
            if (!*body) err = base_error_set(BASE_ERR_NOMEM, "idempotent response");
            *status = done;
            *state = HTTP_IDEM_REPLAY;
        } else if (now - created < IDEM_ABANDONED_MS) {
            *state = HTTP_IDEM_BUSY;
        } else {
            sql = "UPDATE idempotency_keys SET created_ms = ?2 WHERE scope = ?1";
            *taken_over = 1;
        }
    } else if (rc == SQLITE_DONE) {
        sql = "INSERT INTO idempotency_keys(scope, fingerprint, status, created_ms)"
              " VALUES (?1, ?3, 0, ?2)";
    } else {
        err = db_error(db, "select idempotency");
    }
    sqlite3_finalize(st);
    st = NULL;
    if (!err && sql) {
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
            err = db_error(db, "claim idempotency key");
            goto rollback;
        }
        sqlite3_bind_text(st, 1, scope, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, now);
        if (sqlite3_bind_parameter_count(st) >= 3)
            sqlite3_bind_blob(st, 3, fingerprint, 32, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE) err = db_error(db, "claim idempotency key");
        sqlite3_finalize(st);
        st = NULL;
    }
    if (err) goto rollback;
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        err = db_error(db, "commit");
        goto rollback;
    }
    if (*state == HTTP_IDEM_NEW) claims_add(ks, scope);
    goto out;
rollback:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    free(*body);
    *body = NULL;
    *taken_over = 0;
out:
    db_end(ks);
    return err;
}

int http_idem_finish(http_keystore *ks, const char *scope, int status, const char *body)
{
    claims_remove(ks, scope);
    int err = db_begin(ks);
    if (err) return err;
    if (ks->pg) {
        char status_text[16];
        snprintf(status_text, sizeof status_text, "%d", status);
        const char *v[] = {scope, status_text, body};
        err = pg_ok(ks,
                    "UPDATE idempotency_keys SET status = $2::integer, body = $3"
                    " WHERE scope = $1",
                    3, v, "finish idempotency");
        db_end(ks);
        return err;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ks->db,
                           "UPDATE idempotency_keys SET status = ?2, body = ?3 WHERE scope = ?1",
                           -1, &st, NULL) != SQLITE_OK) {
        err = db_error(ks->db, "finish idempotency");
    } else {
        sqlite3_bind_text(st, 1, scope, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(st, 2, status);
        sqlite3_bind_text(st, 3, body, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE) err = db_error(ks->db, "finish idempotency");
    }
    sqlite3_finalize(st);
    db_end(ks);
    return err;
}

void http_idem_release(http_keystore *ks, const char *scope)
{
    claims_remove(ks, scope);
    if (db_begin(ks) != 0) {
        /* left to be taken over once it looks abandoned (IDEM_ABANDONED_MS) */
        LOG_WARN("idempotency: %s", base_error_message());
        return;
    }
    if (ks->pg) {
        const char *v[] = {scope};
        if (pg_ok(ks, "DELETE FROM idempotency_keys WHERE scope = $1 AND status = 0", 1, v,
                  "release idempotency") != 0)
            LOG_WARN("idempotency: %s", base_error_message());
    } else if (exec_bound(ks->db, "DELETE FROM idempotency_keys WHERE scope = ? AND status = 0",
                          scope, 0) != 0)
        LOG_WARN("idempotency: %s", base_error_message());
    db_end(ks);
}

/* ---- the `vultus keys` side ------------------------------------------------------------- */

/* Opens the store of a data folder the way the server does: the gallery first (it creates
 * or migrates the file and refuses a foreign one), then our tables. */
static int open_for_cli(const char *data_dir, http_keystore **ks)
{
    char path[HTTP_PATH_MAX + 16];
    int rc = http_store_path(data_dir, path, sizeof path);
    if (rc) return rc;
    /* The folder holds faces (thumbnails, embeddings) and the key hashes: its owner's only. */
    if (!gal_location_is_url(data_dir) && mkdir(data_dir, 0700) != 0 && errno != EEXIST)
        return base_error_set(BASE_ERR_IO, "%s: %s", data_dir, strerror(errno));
    struct gal *g = NULL; /* store only: the faces are not ours to load (gallery.h) */
    if ((rc = gal_open(path, &(struct gal_options){.store_only = 1}, &g))) return rc;
    gal_close(g);
    return http_keystore_open(path, ks);
}

/* The gallery's rule for collection names (gallery.h: GAL_NAME_MAX), which a key's collection
 * must follow to ever match one. */
static int valid_collection_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > GAL_NAME_MAX || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return 0;
    return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.") == n;
}

int http_keys_create(const char *data_dir, enum http_scope scope, const char *collection,
                     const char *name, char key[HTTP_KEY_MAX], http_key_info *info)
{
    memset(info, 0, sizeof *info);
    key[0] = '\0';
    if (scope < HTTP_SCOPE_READ || scope > HTTP_SCOPE_ADMIN)
        return base_error_set(BASE_ERR_INVALID, "scope %d", (int)scope);
    /* An empty collection would make a key for every collection (the opposite of what was
     * asked: `--collection "$C"` with C unset), and a name no collection can have a key that
     * can never be used: both refused. */
    if (collection && !valid_collection_name(collection))
        return base_error_set(BASE_ERR_INVALID,
                              "collection name \"%.80s\": expected 1 to %d of A-Z a-z 0-9 _ - ."
                              " (not . or ..), as collections are named",
                              collection, GAL_NAME_MAX);
    if (name && strlen(name) >= sizeof info->name)
        return base_error_set(BASE_ERR_INVALID, "key name longer than %zu bytes",
                              sizeof info->name - 1);
    /* The name is a label `vultus keys list` prints to a terminal: no escape sequences. */
    for (const char *c = name; c && *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return base_error_set(BASE_ERR_INVALID,
                                  "key name: character %zu is a control character",
                                  (size_t)(c - name) + 1);
    uint8_t random[6 + 32];
    if (getrandom(random, sizeof random, 0) != (ssize_t)sizeof random)
        return base_error_set(BASE_ERR_IO, "getrandom: %s", strerror(errno));
    http_hex(random, 6, info->id);
    char secret[48];
    http_base64url_encode(random + 6, 32, secret);
    snprintf(key, HTTP_KEY_MAX, "vk_%s_%s", info->id, secret);
    info->scope = scope;
    snprintf(info->collection, sizeof info->collection, "%s", collection ? collection : "");
    snprintf(info->name, sizeof info->name, "%s", name ? name : "");
    info->created_ms = unix_ms();
    uint8_t hash[32];
    http_sha256_digest(key, strlen(key), hash);

    http_keystore *ks = NULL;
    int rc = open_for_cli(data_dir, &ks);
    if (rc) goto fail;
    if (ks->pg) {
        char hash_hex[65], created[24];
        to_hex(hash, 32, hash_hex);
        snprintf(created, sizeof created, "%lld", (long long)info->created_ms);
        const char *v[] = {info->id,         hash_hex,   http_scope_name(scope),
                           info->collection, info->name, created};
        rc = pg_ok(ks,
                   "INSERT INTO api_keys(id, hash, scope, collection, name, created_ms)"
                   " VALUES ($1, decode($2, 'hex'), $3, $4, $5, $6::bigint)",
                   6, v, "insert key");
        if (rc) goto fail;
        http_keystore_close(ks);
        return 0;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ks->db,
                           "INSERT INTO api_keys(id, hash, scope, collection, name, created_ms)"
                           " VALUES (?, ?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = db_error(ks->db, "insert key");
        goto fail;
    }
    sqlite3_bind_text(st, 1, info->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 2, hash, 32, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, http_scope_name(scope), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, info->collection, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 5, info->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 6, info->created_ms);
    if (sqlite3_step(st) != SQLITE_DONE) rc = db_error(ks->db, "insert key");
    sqlite3_finalize(st);
    if (rc) goto fail;
    http_keystore_close(ks);
    return 0;
fail:
    http_keystore_close(ks);
    memset(key, 0, HTTP_KEY_MAX);
    return rc;
}

int http_keys_list(const char *data_dir, http_key_info **keys, size_t *count)
{
    *keys = NULL;
    *count = 0;
    http_keystore *ks = NULL;
    int rc = open_for_cli(data_dir, &ks);
    if (rc) return rc;
    if (ks->n_keys) {
        *keys = malloc(ks->n_keys * sizeof **keys);
        if (!*keys) {
            http_keystore_close(ks);
            return base_error_set(BASE_ERR_NOMEM, "keys");
        }
        for (size_t i = 0; i < ks->n_keys; i++)
            (*keys)[i] = ks->keys[i].info;
        *count = ks->n_keys;
    }
    http_keystore_close(ks);
    return 0;
}

int http_key_id_parse(const char *text, char id[HTTP_KEY_ID_LEN + 1])
{
    size_t len = strlen(text);
    if (strncmp(text, "vk_", 3) == 0 && len > 3 + HTTP_KEY_ID_LEN &&
        text[3 + HTTP_KEY_ID_LEN] == '_')
        text += 3; /* the id between "vk_" and "_" */
    else if (len != HTTP_KEY_ID_LEN)
        text = NULL;
    if (!text || strspn(text, "0123456789abcdef") < HTTP_KEY_ID_LEN)
        return base_error_set(BASE_ERR_INVALID,
                              "expected a key id (%d hex digits, from `vultus "
                              "keys list`) or the key itself",
                              HTTP_KEY_ID_LEN);
    memcpy(id, text, HTTP_KEY_ID_LEN);
    id[HTTP_KEY_ID_LEN] = '\0';
    return 0;
}

int http_keys_revoke(const char *data_dir, const char *id)
{
    http_keystore *ks = NULL;
    int rc = open_for_cli(data_dir, &ks);
    if (rc) return rc;
    sqlite3_stmt *st = NULL;
    if (ks->pg) {
        const char *v[] = {id};
        PGresult *r;
        rc = pg_run(ks, "DELETE FROM api_keys WHERE id = $1", 1, v, "delete key", &r);
        if (!rc && strcmp(PQcmdTuples(r), "0") == 0)
            rc = base_error_set(BASE_ERR_NOT_FOUND, "no API key with id %s", id);
        PQclear(r);
    } else if (sqlite3_prepare_v2(ks->db, "DELETE FROM api_keys WHERE id = ?", -1, &st, NULL) !=
               SQLITE_OK) {
        rc = db_error(ks->db, "delete key");
    } else {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = db_error(ks->db, "delete key");
        else if (sqlite3_changes(ks->db) == 0)
            rc = base_error_set(BASE_ERR_NOT_FOUND, "no API key with id %s", id);
    }
    sqlite3_finalize(st);
    http_keystore_close(ks);
    return rc;
}
