/*
 * The PostgreSQL store (libpq): the same tables and contract as the SQLite store, in a
 * database that several `vultus serve` replicas share.
 *
 * Connections. One writer connection, used under `writer_mutex` (recursive, so that the
 * operations of an explicit transaction - import - can nest as savepoints), and a pool of
 * up to POOL_MAX reader connections opened on demand, handed out under `pool_mutex` with a
 * condition variable when all are busy: reads run in parallel with each other and with the
 * writer. Every statement is prepared once per connection (on first use) and bound; no value
 * is ever formatted into SQL text. Results come back in binary format: embeddings and
 * thumbnails as raw bytes, no hex decoding. A connection that breaks (server restart,
 * failover, idle timeout) is reset once and the statement retried when it failed outside a
 * transaction; inside one the transaction's error is returned and the next operation resets.
 *
 * Ordering of the change log. Other processes follow the log by asking for the changes with
 * seq > the last one they applied (gallery.c). A BIGINT identity column alone would not do:
 * two writers on two replicas take numbers 7 and 8 in one order and may commit in the other,
 * and a reader that saw 8 committed (and 7 not yet) would skip 7 forever. So every write
 * transaction first takes one transaction-level advisory lock (pg_advisory_xact_lock, held
 * until COMMIT or ROLLBACK) before it numbers anything: writers are serialised across every
 * replica, a change row is numbered only by the one writer holding the lock, and that writer
 * commits (and is visible: PostgreSQL marks a transaction committed before it releases its
 * locks) before the next one can take a number. Numbering order is therefore commit order.
 * A rolled-back transaction leaves a gap in the numbers, which the replay tolerates (it asks
 * for seq > n, not for n + 1). Serialising writes is what the SQLite store does too; one
 * enrolment commit is a few milliseconds, next to tens of milliseconds of inference.
 *
 * Durability: with GAL_DURABLE_POWER the server's own synchronous_commit applies (on by
 * default: an acknowledged write is flushed to the server's WAL). GAL_DURABLE_PROCESS sets
 * synchronous_commit = off on the writer: a commit returns before the WAL flush, so a crash
 * of the database server (not of vultus) may lose the last fraction of a second of writes,
 * never corrupt anything. max_store_bytes is refused (SQLite only): PostgreSQL frees space
 * only on VACUUM, so a size cap would not behave like the SQLite one; use disk quotas there.
 *
 * Schema: vultus_schema(version) names the oldest build's version that can use the database,
 * as store_sqlite.c's user_version: migrations[i] takes version i to i + 1 for an incompatible
 * change (earlier builds then refuse the database), additions[] are additive steps (new tables
 * earlier builds never read, which their deletes cascade into; new nullable columns of them,
 * which earlier builds' statements do not name) applied on a writable open that finds them
 * missing, without changing the version, so rolling back to an earlier build stays possible:
 * it ignores, and keeps, what it does not know. The next additive change is one more entry of
 * additions[].
 * Opening creates or migrates under a transaction-level advisory lock, so replicas starting at
 * once do it one at a time and the others find it done. A database with a newer version is
 * refused, not modified; a database holding tables of these names without vultus_schema
 * belongs to something else and is refused too. Tables as in store_sqlite.c; subject ids
 * and collection names use COLLATE "C" so that listing order (and paging by "after") is by
 * bytes, as with SQLite, whatever the database's locale.
 */
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "gallery/store.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "embeddings are stored as little-endian f32: add byte swapping for this target"
#endif

#define POOL_MAX 8
#define FETCH_FACES 8192 /* rows per FETCH when loading embeddings */
#define FETCH_EXPORT 256 /* faces per FETCH when exporting (with thumbnails) */
#define FETCH_SUBJECTS 4096
#define MAX_PARAMS 16
/* Advisory lock keys: "VGAL" then what is locked. */
#define LOCK_WRITE 0x5647414c00000001ll
#define LOCK_SCHEMA 0x5647414c00000002ll

static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE collections ("
    "  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  name TEXT COLLATE \"C\" NOT NULL UNIQUE,"
    "  model_id TEXT NOT NULL,"
    "  dim INTEGER NOT NULL CHECK (dim BETWEEN 1 AND 4096),"
    "  dtype INTEGER NOT NULL CHECK (dtype IN (0, 1, 2)),"
    "  threshold DOUBLE PRECISION NOT NULL,"
    "  created_ms BIGINT NOT NULL);"
    "CREATE TABLE subjects ("
    "  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  collection_id BIGINT NOT NULL REFERENCES collections (id) ON DELETE CASCADE,"
    "  subject_id TEXT COLLATE \"C\" NOT NULL,"
    "  metadata TEXT NOT NULL,"
    "  created_ms BIGINT NOT NULL,"
    "  UNIQUE (collection_id, subject_id));"
    "CREATE TABLE faces ("
    "  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  collection_id BIGINT NOT NULL REFERENCES collections (id) ON DELETE CASCADE,"
    "  subject_rowid BIGINT NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,"
    "  embedding BYTEA NOT NULL,"
    "  image_hash TEXT NOT NULL,"
    "  box_x DOUBLE PRECISION NOT NULL, box_y DOUBLE PRECISION NOT NULL,"
    "  box_w DOUBLE PRECISION NOT NULL, box_h DOUBLE PRECISION NOT NULL,"
    "  quality DOUBLE PRECISION NOT NULL,"
    "  created_ms BIGINT NOT NULL);"
    "CREATE INDEX faces_by_collection ON faces (collection_id, id);"
    "CREATE INDEX faces_by_subject ON faces (subject_rowid);"
    "CREATE TABLE thumbnails ("
    "  face_id BIGINT PRIMARY KEY REFERENCES faces (id) ON DELETE CASCADE,"
    "  jpeg BYTEA NOT NULL);"
    "CREATE TABLE changes ("
    "  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  kind INTEGER NOT NULL,"
    "  collection_id BIGINT NOT NULL,"
    "  collection TEXT NOT NULL,"
    "  subject_rowid BIGINT,"
    "  subject_id TEXT,"
    "  face_id BIGINT,"
    "  time_ms BIGINT NOT NULL);",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

struct schema_addition {
    const char *name;    /* for the log */
    const char *present; /* constant SQL: 1 when the step's tables (columns) are there, else 0 */
    const char *sql;     /* idempotent; run when `present` said 0, under the schema lock */
};

enum { ADD_CHECKINS, ADD_CHECKIN_DOORS };
static const struct schema_addition additions[] = {
    /* The check-in record (gallery.h, store_sqlite.c). */
    [ADD_CHECKINS] =
        {"the check-in record",
         "SELECT (COUNT(*) = 2)::int FROM pg_tables WHERE schemaname = current_schema() "
         "AND tablename IN ('checkins', 'checkin_events')",
         "CREATE TABLE IF NOT EXISTS checkins ("
         "  subject_rowid BIGINT PRIMARY KEY REFERENCES subjects (id) ON DELETE CASCADE,"
         "  collection_id BIGINT NOT NULL REFERENCES collections (id) ON DELETE CASCADE,"
         "  first_seen_ms BIGINT NOT NULL,"
         "  last_arrival_ms BIGINT NOT NULL,"
         "  arrivals BIGINT NOT NULL,"
         "  similarity DOUBLE PRECISION NOT NULL);"
         "CREATE INDEX IF NOT EXISTS checkins_by_time ON checkins (collection_id, first_seen_ms);"
         "CREATE TABLE IF NOT EXISTS checkin_events ("
         "  collection_id BIGINT PRIMARY KEY REFERENCES collections (id) ON DELETE CASCADE,"
         "  since_ms BIGINT NOT NULL,"
         "  not_recognised BIGINT NOT NULL,"
         "  last_unknown_ms BIGINT NOT NULL);"},
    /* Where each subject came in (gallery.h, store_sqlite.c). */
    [ADD_CHECKIN_DOORS] =
        {"the check-in doors",
         "SELECT (COUNT(*) = 2)::int FROM information_schema.columns "
         "WHERE table_schema = current_schema() AND table_name = 'checkins' "
         "AND column_name IN ('first_door', 'last_door')",
         "ALTER TABLE checkins ADD COLUMN IF NOT EXISTS first_door TEXT,"
         "  ADD COLUMN IF NOT EXISTS last_door TEXT;"},
};
#define ADDITIONS ((int)(sizeof additions / sizeof additions[0]))

enum stmt_id {
    S_LAST_SEQ,
    S_CHANGE_ADD,
    S_CHANGES,
    S_COLL_INSERT,
    S_COLL_UPDATE,
    S_COLL_DELETE,
    S_COLL_BY_NAME,
    S_COLL_BY_ID,
    S_COLL_LIST,
    S_COLL_IDS,
    S_COUNTS,
    S_SUBJ_INSERT,
    S_SUBJ_FIND,
    S_SUBJ_SET_META,
    S_SUBJ_DELETE,
    S_SUBJ_GET,
    S_SUBJ_LIST,
    S_FACE_INSERT,
    S_FACE_FIND,
    S_FACE_DELETE,
    S_FACE_REFS,
    S_FACE_REFS_EMBEDDING,
    S_FACE_GET,
    S_FACE_LIST,
    S_FACES_LOAD,
    S_EXPORT_SUBJECTS,
    S_EXPORT_FACES,
    S_CHECK,
    S_CK_GET,
    S_CK_INSERT,
    S_CK_ARRIVE,
    S_CK_EVENT_GET,
    S_CK_EVENT_PUT,
    S_CK_COUNT,
    S_CK_LIST,
    S_CK_LIST_NO_DOORS,
    S_CK_CLEAR,
    S_CK_EVENT_CLEAR,
    S_COUNT
};

#define COLL_COLUMNS "id, name, model_id, dim, dtype, threshold, created_ms"
#define SUBJ_COLUMNS                                                                               \
    "s.subject_id, s.metadata, s.created_ms, "                                                     \
    "(SELECT COUNT(*) FROM faces f WHERE f.subject_rowid = s.id)"
#define FACE_COLUMNS                                                                               \
    "f.id, s.subject_id, f.image_hash, f.box_x, f.box_y, f.box_w, f.box_h, f.quality, "            \
    "f.created_ms, f.embedding, t.jpeg "                                                           \
    "FROM faces f JOIN subjects s ON s.id = f.subject_rowid "                                      \
    "LEFT JOIN thumbnails t ON t.face_id = f.id "

/* Every parameter is cast in the SQL so that the server knows its type for binary values. */
/* The check-in list's rows, newest first; the cursor ($2, $3) is the last row shown, $2 NULL
 * for the first page. */
#define CK_LIST_FROM                                                                               \
    "FROM checkins c JOIN subjects s ON s.id = c.subject_rowid "                                   \
    "WHERE c.collection_id = $1::bigint AND ($2::text IS NULL OR c.first_seen_ms < $3::bigint "    \
    "OR (c.first_seen_ms = $3::bigint AND s.subject_id > $2::text)) "                              \
    "ORDER BY c.first_seen_ms DESC, s.subject_id LIMIT $4::bigint"

static const char *const stmt_sql[S_COUNT] = {
    [S_LAST_SEQ] = "SELECT COALESCE(MAX(seq), 0)::bigint FROM changes",
    [S_CHANGE_ADD] =
        "INSERT INTO changes (kind, collection_id, collection, subject_rowid, subject_id, "
        "face_id, time_ms) VALUES ($1::bigint, $2::bigint, "
        "COALESCE((SELECT name FROM collections WHERE id = $2::bigint), ''), "
        "NULLIF($3::bigint, 0), $4::text, NULLIF($5::bigint, 0), $6::bigint) RETURNING seq",
    [S_CHANGES] = "SELECT seq, kind, collection_id, COALESCE(subject_rowid, 0), "
                  "COALESCE(face_id, 0) FROM changes WHERE seq > $1::bigint ORDER BY seq "
                  "LIMIT $2::bigint",
    [S_COLL_INSERT] = "INSERT INTO collections (name, model_id, dim, dtype, threshold, "
                      "created_ms) VALUES ($1::text, $2::text, $3::bigint, $4::bigint, "
                      "$5::double precision, $6::bigint) RETURNING id",
    [S_COLL_UPDATE] = "UPDATE collections SET threshold = $2::double precision, "
                      "dtype = $3::bigint WHERE id = $1::bigint",
    [S_COLL_DELETE] = "DELETE FROM collections WHERE id = $1::bigint",
    [S_COLL_BY_NAME] = "SELECT " COLL_COLUMNS " FROM collections WHERE name = $1::text",
    [S_COLL_BY_ID] = "SELECT " COLL_COLUMNS " FROM collections WHERE id = $1::bigint",
    [S_COLL_LIST] = "SELECT " COLL_COLUMNS " FROM collections ORDER BY name",
    [S_COLL_IDS] = "SELECT id FROM collections ORDER BY id",
    [S_COUNTS] = "SELECT (SELECT COUNT(*) FROM subjects WHERE collection_id = $1::bigint), "
                 "(SELECT COUNT(*) FROM faces WHERE collection_id = $1::bigint)",
    [S_SUBJ_INSERT] = "INSERT INTO subjects (collection_id, subject_id, metadata, created_ms) "
                      "VALUES ($1::bigint, $2::text, $3::text, $4::bigint) RETURNING id",
    [S_SUBJ_FIND] = "SELECT id FROM subjects WHERE collection_id = $1::bigint "
                    "AND subject_id = $2::text",
    [S_SUBJ_SET_META] = "UPDATE subjects SET metadata = $2::text WHERE id = $1::bigint",
    [S_SUBJ_DELETE] = "DELETE FROM subjects WHERE id = $1::bigint",
    [S_SUBJ_GET] = "SELECT " SUBJ_COLUMNS " FROM subjects s "
                   "WHERE s.collection_id = $1::bigint AND s.subject_id = $2::text",
    [S_SUBJ_LIST] = "SELECT " SUBJ_COLUMNS " FROM subjects s "
                    "WHERE s.collection_id = $1::bigint AND s.subject_id > $2::text "
                    "ORDER BY s.subject_id LIMIT $3::bigint",
    /* A face, its thumbnail (when $11 is not NULL) and its change in one statement: one round
     * trip per face. Returns the face id and the change's number. */
    [S_FACE_INSERT] =
        "WITH f AS (INSERT INTO faces (collection_id, subject_rowid, embedding, image_hash, "
        "box_x, box_y, box_w, box_h, quality, created_ms) "
        "VALUES ($1::bigint, $2::bigint, $3::bytea, $4::text, "
        "$5::double precision, $6::double precision, $7::double precision, "
        "$8::double precision, $9::double precision, $10::bigint) RETURNING id), "
        "t AS (INSERT INTO thumbnails (face_id, jpeg) "
        "SELECT id, $11::bytea FROM f WHERE $11::bytea IS NOT NULL), "
        "c AS (INSERT INTO changes (kind, collection_id, collection, subject_rowid, subject_id, "
        "face_id, time_ms) SELECT $14::bigint, $1::bigint, "
        "COALESCE((SELECT name FROM collections WHERE id = $1::bigint), ''), $2::bigint, "
        "$12::text, f.id, $13::bigint FROM f RETURNING seq) "
        "SELECT f.id, c.seq FROM f, c",
    [S_FACE_FIND] = "SELECT subject_rowid FROM faces WHERE id = $1::bigint "
                    "AND collection_id = $2::bigint",
    [S_FACE_DELETE] = "DELETE FROM faces WHERE id = $1::bigint",
    [S_FACE_REFS] = "SELECT f.id, f.subject_rowid, s.subject_id FROM faces f "
                    "JOIN subjects s ON s.id = f.subject_rowid "
                    "WHERE f.collection_id = $1::bigint AND f.id = ANY ($2::bigint[])",
    [S_FACE_REFS_EMBEDDING] = "SELECT f.id, f.subject_rowid, s.subject_id, f.embedding "
                              "FROM faces f JOIN subjects s ON s.id = f.subject_rowid "
                              "WHERE f.collection_id = $1::bigint AND f.id = ANY ($2::bigint[])",
    [S_FACE_GET] =
        "SELECT " FACE_COLUMNS "WHERE f.id = $1::bigint AND f.collection_id = $2::bigint",
    [S_FACE_LIST] = "SELECT id FROM faces WHERE subject_rowid = $1::bigint ORDER BY id",
    /* These three are read through a cursor (scan_cursor), not prepared. */
    [S_FACES_LOAD] = "SELECT id, subject_rowid, embedding FROM faces "
                     "WHERE collection_id = $1::bigint ORDER BY id",
    [S_EXPORT_SUBJECTS] = "SELECT " SUBJ_COLUMNS " FROM subjects s "
                          "WHERE s.collection_id = $1::bigint ORDER BY s.id",
    [S_EXPORT_FACES] = "SELECT " FACE_COLUMNS "WHERE f.collection_id = $1::bigint ORDER BY f.id",
    /* Faces whose subject is in another collection: what foreign keys alone cannot rule out. */
    [S_CHECK] = "SELECT COUNT(*) FROM faces f JOIN subjects s ON s.id = f.subject_rowid "
                "WHERE f.collection_id <> s.collection_id",
    /* A subject and its record in one round trip: rowid, then the record (NULLs: none). */
    [S_CK_GET] = "SELECT s.id, c.first_seen_ms, c.last_arrival_ms, c.arrivals, "
                 "(c.subject_rowid IS NOT NULL)::int4, c.first_door, c.last_door FROM subjects s "
                 "LEFT JOIN checkins c ON c.subject_rowid = s.id "
                 "WHERE s.collection_id = $1::bigint AND s.subject_id = $2::text",
    [S_CK_INSERT] = "INSERT INTO checkins (subject_rowid, collection_id, first_seen_ms, "
                    "last_arrival_ms, arrivals, similarity, first_door, last_door) VALUES "
                    "($1::bigint, $2::bigint, $3::bigint, $4::bigint, $5::bigint, "
                    "$6::double precision, $7::text, $8::text)",
    [S_CK_ARRIVE] = "UPDATE checkins SET last_arrival_ms = $2::bigint, arrivals = $3::bigint, "
                    "last_door = $4::text WHERE subject_rowid = $1::bigint",
    [S_CK_EVENT_GET] = "SELECT since_ms, not_recognised, last_unknown_ms FROM checkin_events "
                       "WHERE collection_id = $1::bigint",
    [S_CK_EVENT_PUT] = "INSERT INTO checkin_events (collection_id, since_ms, not_recognised, "
                       "last_unknown_ms) VALUES ($1::bigint, $2::bigint, $3::bigint, $4::bigint) "
                       "ON CONFLICT (collection_id) DO UPDATE SET since_ms = EXCLUDED.since_ms, "
                       "not_recognised = EXCLUDED.not_recognised, "
                       "last_unknown_ms = EXCLUDED.last_unknown_ms",
    [S_CK_COUNT] = "SELECT COUNT(*) FROM checkins WHERE collection_id = $1::bigint",
    [S_CK_LIST] = "SELECT s.subject_id, s.metadata, c.first_seen_ms, c.last_arrival_ms, "
                  "c.arrivals, c.similarity, c.first_door, c.last_door " CK_LIST_FROM,
    /* The same on a read-only database that no writable open of a build with doors has
     * opened yet: no door columns to name. */
    [S_CK_LIST_NO_DOORS] = "SELECT s.subject_id, s.metadata, c.first_seen_ms, "
                           "c.last_arrival_ms, c.arrivals, c.similarity, NULL::text, NULL::text "
                           CK_LIST_FROM,
    [S_CK_CLEAR] = "DELETE FROM checkins WHERE collection_id = $1::bigint",
    [S_CK_EVENT_CLEAR] = "DELETE FROM checkin_events WHERE collection_id = $1::bigint",
};

struct conn {
    PGconn *pg;
    unsigned char prepared[S_COUNT];
    struct conn *next; /* in the idle list of the reader pool */
};

struct pg_store {
    struct gal_store base;
    char *url;   /* as given: may hold a password, never printed */
    char *shown; /* the URL with any password hidden, for messages */
    struct gal_options options;

    /* The writer connection and its transaction depth, under writer_mutex (recursive). */
    pthread_mutex_t writer_mutex;
    struct conn writer;
    int depth;

    /* Idle reader connections and how many exist, under pool_mutex; pool_cond signals a
     * connection returned (or a slot freed) to a thread waiting because all POOL_MAX are busy. */
    pthread_mutex_t pool_mutex;
    pthread_cond_t pool_cond;
    struct conn *idle;
    int readers;

    /* Unreachable for a while after a statement without an answer or a failed connection
     * attempt (gallery.h, struct gal_pg_outage): calls fail at once (store_gate), and one
     * thread at a time tries to connect again (conn_open). Atomics, as any thread sets it. */
    struct gal_pg_outage outage;

    /* The longest wait for the answer to one statement, in ms (0: none); see wait_result. */
    int timeout_ms;
};

/* ---- URLs ------------------------------------------------------------------------------- */

int gal_location_is_url(const char *location)
{
    return location && (strncmp(location, "postgres://", 11) == 0 ||
                        strncmp(location, "postgresql://", 13) == 0);
}

void gal_location_redact(const char *location, char *out, size_t cap)
{
    if (!cap) return;
    out[0] = '\0';
    if (!location) return;
    if (!gal_location_is_url(location)) {
        snprintf(out, cap, "%s", location);
        return;
    }
    /* scheme://[user[:password]@]host...[?params]: hide the password and drop the query
     * string (it may carry password=..., sslpassword=...). The user name and password run to
     * the first '@' before any '/', as libpq reads them (conninfo_uri_parse_options): a '?'
     * before that '@' is part of the password, not the start of the query. */
    const char *authority = strstr(location, "://") + 3;
    const char *at = authority + strcspn(authority, "@/");
    size_t head = (size_t)(authority - location);
    if (*at == '@') {
        const char *colon = memchr(authority, ':', (size_t)(at - authority));
        const char *query = strchr(at, '?');
        size_t user = (size_t)((colon ? colon : at) - authority);
        snprintf(out, cap, "%.*s%.*s%s%.*s%s", (int)head, location, (int)user, authority,
                 colon ? ":***" : "", (int)((query ? query : at + strlen(at)) - at), at,
                 query ? "?..." : "");
    } else if (strchr(authority, '@')) {
        /* An '@' after a '/' (in the path or the query) ends no user name for libpq, which
         * refuses "u:pa/ss@host" for its port "pa"; but it most likely ends a password
         * holding a '/': show none of it. */
        snprintf(out, cap, "%.*s...", (int)head, location);
    } else {
        const char *query = strchr(location, '?');
        snprintf(out, cap, "%.*s%s",
                 (int)((query ? query : location + strlen(location)) - location), location,
                 query ? "?..." : "");
    }
}

/* ---- errors ---------------------------------------------------------------------------- */

/* Describes a failed result (or, with res NULL, the connection's error) as a BASE_ERR_*. */
/* The last statement of this thread got no answer: the ms it waited (gal_pg_wait), else 0. */
static _Thread_local int timed_out;

static int pg_error(struct pg_store *s, PGconn *pg, const PGresult *res, const char *what)
{
    char waited[96];
    if (timed_out)
        return base_error_set(BASE_ERR_IO,
                              "gallery store %s: %s: %s (the database is unreachable or "
                              "overloaded; VULTUS_STORE_TIMEOUT_MS)",
                              s->shown, what,
                              gal_pg_no_answer(waited, sizeof waited, timed_out, s->timeout_ms));
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char text[400];
    snprintf(text, sizeof text, "%s", msg ? msg : pg ? PQerrorMessage(pg) : "no connection");
    size_t n = strlen(text);
    while (n && (text[n - 1] == '\n' || text[n - 1] == ' '))
        text[--n] = '\0';
    if (!n) snprintf(text, sizeof text, "unknown error");
    if (!state || (pg && PQstatus(pg) == CONNECTION_BAD))
        return base_error_set(BASE_ERR_IO, "gallery store %s: %s: %s", s->shown, what, text);
    if (strcmp(state, "23505") == 0) return base_error_set(BASE_ERR_EXISTS, "%s: %s", what, text);
    if (strncmp(state, "23", 2) == 0 || strncmp(state, "22", 2) == 0)
        return base_error_set(BASE_ERR_INVALID, "%s: %s", what, text);
    if (strcmp(state, "53100") == 0 || strcmp(state, "54000") == 0)
        return base_error_set(BASE_ERR_FULL, "%s: the gallery store is full (%s)", what, text);
    if (strcmp(state, "53200") == 0) return base_error_set(BASE_ERR_NOMEM, "%s: %s", what, text);
    if (strcmp(state, "25006") == 0)
        return base_error_set(BASE_ERR_IO, "%s: the gallery store is read-only (%s)", what, text);
    if (strncmp(state, "08", 2) == 0 || strncmp(state, "28", 2) == 0 ||
        strncmp(state, "57", 2) == 0 || strncmp(state, "53", 2) == 0 ||
        strcmp(state, "42501") == 0 || strncmp(state, "3D", 2) == 0)
        return base_error_set(BASE_ERR_IO, "gallery store %s: %s: %s (SQLSTATE %s)", s->shown, what,
                              text, state);
    return base_error_set(BASE_ERR_BACKEND, "%s: %s (SQLSTATE %s)", what, text, state);
}

/* ---- parameters and columns --------------------------------------------------------------- */

struct params {
    int n;
    const char *values[MAX_PARAMS];
    int lengths[MAX_PARAMS];
    int formats[MAX_PARAMS];
    char buf[MAX_PARAMS][8];
};

static void put_be64(char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (char)(v & 0xff);
        v >>= 8;
    }
}

static void p_i64(struct params *p, int64_t v)
{
    put_be64(p->buf[p->n], (uint64_t)v);
    p->values[p->n] = p->buf[p->n];
    p->lengths[p->n] = 8;
    p->formats[p->n++] = 1;
}

static void p_f64(struct params *p, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_be64(p->buf[p->n], bits);
    p->values[p->n] = p->buf[p->n];
    p->lengths[p->n] = 8;
    p->formats[p->n++] = 1;
}

/* Text, or SQL NULL when `text` is NULL. Must outlive the execution. */
static void p_text(struct params *p, const char *text)
{
    p->values[p->n] = text;
    p->lengths[p->n] = 0;
    p->formats[p->n++] = 0;
}

static void p_bytes(struct params *p, const void *data, size_t n)
{
    p->values[p->n] = data ? data : "";
    p->lengths[p->n] = (int)n;
    p->formats[p->n++] = 1;
}

static uint64_t get_be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* An integer column (int2, int4 or int8 in binary); 0 when NULL. */
static int64_t col_i64(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col)) return 0;
    const unsigned char *v = (const unsigned char *)PQgetvalue(r, row, col);
    switch (PQgetlength(r, row, col)) {
    case 8: return (int64_t)get_be(v, 8);
    case 4: return (int32_t)(uint32_t)get_be(v, 4);
    case 2: return (int16_t)(uint16_t)get_be(v, 2);
    default: return 0;
    }
}

static double col_f64(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col)) return 0;
    const unsigned char *v = (const unsigned char *)PQgetvalue(r, row, col);
    if (PQgetlength(r, row, col) == 8) {
        uint64_t bits = get_be(v, 8);
        double d;
        memcpy(&d, &bits, sizeof d);
        return d;
    }
    if (PQgetlength(r, row, col) == 4) {
        uint32_t bits = (uint32_t)get_be(v, 4);
        float f;
        memcpy(&f, &bits, sizeof f);
        return f;
    }
    return 0;
}

static void col_text(const PGresult *r, int row, int col, char *dst, size_t size)
{
    int n = PQgetisnull(r, row, col) ? 0 : PQgetlength(r, row, col);
    if ((size_t)n >= size) n = (int)size - 1;
    memcpy(dst, PQgetvalue(r, row, col), (size_t)n);
    dst[n] = '\0';
}

static char *col_dup(const PGresult *r, int row, int col)
{
    int n = PQgetisnull(r, row, col) ? 0 : PQgetlength(r, row, col);
    char *t = malloc((size_t)n + 1);
    if (!t) return NULL;
    memcpy(t, PQgetvalue(r, row, col), (size_t)n);
    t[n] = '\0';
    return t;
}

/* ---- connections and statements -------------------------------------------------------- */

/* Server notices ("relation already exists, skipping", ...) go to the debug log, not to
 * stderr as libpq's default does. */
static void notice(void *arg, const char *message)
{
    (void)arg;
    LOG_DEBUG("gallery store: %s", message);
}

/* What is left of the calling thread's deadline (gal_store_deadline_ns), in ms, at least 1
 * (gal_pg_wait_ms: never a transaction left open). timeout_ms with no deadline. */
static int wait_ms(const struct pg_store *s)
{
    return gal_pg_wait_ms(s->timeout_ms, gal_store_deadline_ns);
}

/* BASE_ERR_IO at once while the server is marked unreachable and not yet due for a retry. */
static int store_gate(struct pg_store *s)
{
    return gal_pg_outage_gate(&s->outage);
}

/* Whether `r` came from the server over a connection still open: a result, or an error with
 * the server's SQLSTATE. When the connection ends (a crash, a failover, a peer that reset it)
 * libpq makes an error result of its own, without a SQLSTATE, and PQstatus may still say
 * CONNECTION_OK until the next call reads the end (see connection_lost). */
static int server_answered(PGconn *pg, const PGresult *r)
{
    return r && PQstatus(pg) == CONNECTION_OK &&
           (PQresultStatus(r) != PGRES_FATAL_ERROR || PQresultErrorField(r, PG_DIAG_SQLSTATE));
}

/* The answer to what was just sent on pg, waited for at most timeout_ms and at most until the
 * call's deadline (gal_pg_wait: past it the connection is closed and `timed_out` set). An
 * answer from the server moves the deadline on: the store is alive. A lost connection does
 * not: the reconnection and the statement's retry that follow must fit in what is left, or a
 * call that lost its connection late in its limit to a database that then accepts and never
 * answers would wait nearly two limits (test_pg_lost_connection_keeps_deadline). */
static PGresult *wait_result(struct pg_store *s, PGconn *pg, int sent)
{
    const int limit = wait_ms(s);
    PGresult *r = gal_pg_wait(pg, sent, limit, "gallery store", s->shown, &timed_out);
    /* Unreachable after the whole limit: a wait cut short by the call's deadline says less
     * about the server. */
    if (timed_out && limit == s->timeout_ms)
        gal_pg_outage_mark(&s->outage, 0);
    else if (server_answered(pg, r) && gal_store_deadline_ns && s->timeout_ms)
        gal_store_deadline_ns = base_now_ns() + (uint64_t)s->timeout_ms * 1000000u;
    return r;
}

/* PQexec with the wait bounded. */
static PGresult *q_exec(struct pg_store *s, PGconn *pg, const char *sql)
{
    return wait_result(s, pg, pg && PQsendQuery(pg, sql));
}

static int conn_connect(struct pg_store *s, struct conn *c);

/* (Re)connects `c`; while the server is marked unreachable, only as its one probe
 * (gal_pg_outage_probe). */
static int conn_open(struct pg_store *s, struct conn *c)
{
    int probe;
    int rc = gal_pg_outage_probe(&s->outage, &probe);
    if (rc) return rc;
    rc = conn_connect(s, c);
    gal_pg_outage_probed(&s->outage, probe, rc == 0);
    return rc;
}

static int conn_connect(struct pg_store *s, struct conn *c)
{
    memset(c->prepared, 0, sizeof c->prepared);
    timed_out = 0;
    /* At most 5 s per attempt unless the URL says otherwise (its connect_timeout), and at most
     * until the call's deadline. */
    if (c->pg) PQfinish(c->pg);
    int late = 0;
    uint64_t t0 = base_now_ns();
    c->pg = gal_pg_connect_until(s->url, "5", gal_store_deadline_ns, &late);
    if (!c->pg) return base_error_set(BASE_ERR_NOMEM, "cannot allocate a store connection");
    if (late) {
        PQfinish(c->pg); /* abandoned half-way: no state of it is worth keeping */
        c->pg = NULL;
        char waited[96];
        return base_error_set(BASE_ERR_IO, "gallery store %s: cannot connect: %s "
                                           "(VULTUS_STORE_TIMEOUT_MS)",
                              s->shown,
                              gal_pg_no_answer(waited, sizeof waited,
                                               (int)((base_now_ns() - t0) / 1000000u),
                                               s->timeout_ms));
    }
    if (PQstatus(c->pg) != CONNECTION_OK) return pg_error(s, c->pg, NULL, "cannot connect");
    PQsetNoticeProcessor(c->pg, notice, NULL);
    if (PQsetnonblocking(c->pg, 1) != 0) return pg_error(s, c->pg, NULL, "cannot connect");
    PGresult *limits = gal_pg_session_init(c->pg, s->timeout_ms, gal_store_deadline_ns,
                                           "gallery store", s->shown, &timed_out);
    int rc = PQresultStatus(limits) == PGRES_TUPLES_OK
                 ? 0
                 : pg_error(s, c->pg, limits, "setting the session's time limits");
    PQclear(limits);
    if (rc) return rc;
    const char *setup = s->options.read_only ? "SET default_transaction_read_only = on"
                        : s->options.durability == GAL_DURABLE_PROCESS
                            ? "SET synchronous_commit = off"
                            : NULL;
    if (setup) {
        PGresult *r = q_exec(s, c->pg, setup);
        rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : pg_error(s, c->pg, r, setup);
        PQclear(r);
        if (rc) return rc;
    }
    return 0;
}

static void conn_close(struct conn *c)
{
    if (c->pg) PQfinish(c->pg);
    c->pg = NULL;
}

/*
 * Whether a statement that failed with result `r` (NULL: none) lost its connection. PQstatus
 * alone does not tell at once: when the server went away abruptly (a crash, an immediate
 * shutdown, a failover) while the connection sat idle, the next statement fails with "server
 * closed the connection unexpectedly" and PQstatus still CONNECTION_OK (libpq's send failed;
 * it reads the end of the stream only on the call after). An error the server itself sent
 * has a SQLSTATE; one without came from the client side, the connection.
 */
static int connection_lost(PGconn *pg, const PGresult *r)
{
    return !pg || PQstatus(pg) == CONNECTION_BAD || !r || !PQresultErrorField(r, PG_DIAG_SQLSTATE);
}

/*
 * Runs statement `id` with `p` (NULL: none); on success *out (when not NULL) gets the result,
 * which the caller PQclear()s. A connection found broken when the statement started outside
 * a transaction is reset and the statement retried once.
 */
static int exec_stmt(struct pg_store *s, struct conn *c, enum stmt_id id, const struct params *p,
                     PGresult **out, const char *what)
{
    if (out) *out = NULL;
    for (int attempt = 0;; attempt++) {
        int idle = c->pg && PQtransactionStatus(c->pg) == PQTRANS_IDLE;
        PGresult *r = NULL;
        char name[16];
        snprintf(name, sizeof name, "s%d", (int)id);
        if (c->pg && !c->prepared[id]) {
            r = wait_result(s, c->pg, PQsendPrepare(c->pg, name, stmt_sql[id], 0, NULL));
            if (PQresultStatus(r) == PGRES_COMMAND_OK) {
                c->prepared[id] = 1;
                PQclear(r);
                r = NULL;
            }
        }
        if (c->pg && c->prepared[id])
            r = wait_result(s, c->pg,
                            PQsendQueryPrepared(c->pg, name, p ? p->n : 0, p ? p->values : NULL,
                                                p ? p->lengths : NULL, p ? p->formats : NULL, 1));
        ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
            if (out)
                *out = r;
            else
                PQclear(r);
            return 0;
        }
        if (attempt == 0 && idle && !timed_out && connection_lost(c->pg, r)) {
            PQclear(r);
            LOG_WARN("gallery store %s: connection lost (%s), reconnecting", s->shown, what);
            if (conn_open(s, c) == 0) continue;
            return pg_error(s, c->pg, NULL, what);
        }
        int rc = pg_error(s, c->pg, r, what);
        PQclear(r);
        return rc;
    }
}

/* Runs constant SQL (transaction control, schema): no value ever comes from input. */
static int exec_const(struct pg_store *s, struct conn *c, const char *sql)
{
    for (int attempt = 0;; attempt++) {
        int idle = PQtransactionStatus(c->pg) == PQTRANS_IDLE;
        PGresult *r = q_exec(s, c->pg, sql);
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
            PQclear(r);
            return 0;
        }
        if (attempt == 0 && idle && !timed_out && connection_lost(c->pg, r)) {
            PQclear(r);
            LOG_WARN("gallery store %s: connection lost, reconnecting", s->shown);
            if (conn_open(s, c) == 0) continue;
            return pg_error(s, c->pg, NULL, sql);
        }
        int rc = pg_error(s, c->pg, r, sql);
        PQclear(r);
        return rc;
    }
}

/* Runs a statement returning one integer (0 when no row). */
static int exec_int(struct pg_store *s, struct conn *c, enum stmt_id id, const struct params *p,
                    const char *what, int64_t *value)
{
    PGresult *r;
    *value = 0;
    int rc = exec_stmt(s, c, id, p, &r, what);
    if (rc) return rc;
    if (PQntuples(r) > 0) *value = col_i64(r, 0, 0);
    PQclear(r);
    return 0;
}

static int reader_get(struct pg_store *s, struct conn **out)
{
    *out = NULL;
    int rc = store_gate(s);
    if (rc) return rc;
    pthread_mutex_lock(&s->pool_mutex);
    /* All busy: waited for at most until the call's deadline (their holders may be waiting
     * out their own limits on a frozen server). */
    const uint64_t deadline = gal_store_deadline_ns;
    const struct timespec until = {(time_t)(deadline / 1000000000u),
                                   (long)(deadline % 1000000000u)};
    while (!s->idle && s->readers >= POOL_MAX) {
        if (!deadline) {
            pthread_cond_wait(&s->pool_cond, &s->pool_mutex);
        } else if (pthread_cond_clockwait(&s->pool_cond, &s->pool_mutex, CLOCK_MONOTONIC, &until) !=
                       0 &&
                   !s->idle && s->readers >= POOL_MAX) {
            pthread_mutex_unlock(&s->pool_mutex);
            return base_error_set(BASE_ERR_IO,
                                  "gallery store %s: no answer within %d ms: all %d connections "
                                  "busy, waiting on the store (VULTUS_STORE_TIMEOUT_MS)",
                                  s->shown, s->timeout_ms, POOL_MAX);
        }
    }
    struct conn *c = s->idle;
    if (c)
        s->idle = c->next;
    else
        s->readers++;
    pthread_mutex_unlock(&s->pool_mutex);
    if (!c) {
        c = calloc(1, sizeof *c);
        rc = c ? conn_open(s, c) : base_error_set(BASE_ERR_NOMEM, "cannot allocate a connection");
    } else if (PQstatus(c->pg) == CONNECTION_BAD) {
        rc = conn_open(s, c);
    }
    if (rc) {
        if (c) conn_close(c);
        free(c);
        pthread_mutex_lock(&s->pool_mutex);
        s->readers--;
        pthread_cond_signal(&s->pool_cond);
        pthread_mutex_unlock(&s->pool_mutex);
        return rc;
    }
    *out = c;
    return 0;
}

static void reader_put(struct pg_store *s, struct conn *c)
{
    /* A connection left inside a transaction (an error path) is rolled back first. */
    if (PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        PGresult *r = q_exec(s, c->pg, "ROLLBACK");
        PQclear(r);
    }
    pthread_mutex_lock(&s->pool_mutex);
    c->next = s->idle;
    s->idle = c;
    pthread_cond_signal(&s->pool_cond);
    pthread_mutex_unlock(&s->pool_mutex);
}

/* A read transaction on a reader: one snapshot for several statements. */
static int read_begin(struct pg_store *s, struct conn *c)
{
    return exec_const(s, c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
}

/* ---- transactions on the writer -------------------------------------------------------- */

/* Takes the writer and opens a (nested) write transaction: the outermost one takes the
 * advisory lock that orders the change log (see the top of this file). */
static int writer_begin(struct pg_store *s)
{
    int rc = gal_store_lock(&s->writer_mutex, s->timeout_ms, "the store's writer connection");
    if (rc) return rc;
    if (s->options.read_only) {
        pthread_mutex_unlock(&s->writer_mutex);
        return base_error_set(BASE_ERR_IO, "the gallery store %s is open read-only", s->shown);
    }
    struct conn *w = &s->writer;
    if (s->depth > 0) {
        rc = exec_const(s, w, "SAVEPOINT nested");
    } else {
        rc = store_gate(s);
        if (!rc && PQstatus(w->pg) == CONNECTION_BAD) rc = conn_open(s, w);
        if (!rc) rc = exec_const(s, w, "BEGIN");
        if (!rc) {
            char sql[64];
            snprintf(sql, sizeof sql, "SELECT pg_advisory_xact_lock(%lld)", LOCK_WRITE);
            if ((rc = exec_const(s, w, sql)) && PQstatus(w->pg) == CONNECTION_OK) {
                /* Keep the lock's error (e.g. the limit waited out): the rollback's own
                 * outcome matters less, and on a closed connection there is none to run. */
                char saved[512];
                snprintf(saved, sizeof saved, "%s", base_error_message());
                exec_const(s, w, "ROLLBACK");
                base_error_set(rc, "%s", saved);
            }
        }
    }
    if (rc) {
        pthread_mutex_unlock(&s->writer_mutex);
        return rc;
    }
    s->depth++;
    return 0;
}

/* Commits (rc == 0) or rolls back the innermost transaction, releases the writer; returns rc
 * or the commit's error. */
static int writer_end(struct pg_store *s, int rc)
{
    struct conn *w = &s->writer;
    s->depth--;
    if (rc == 0) rc = exec_const(s, w, s->depth > 0 ? "RELEASE nested" : "COMMIT");
    if (rc != 0) {
        /* Keep the caller's error message: the rollback's own outcome matters less. */
        char saved[512];
        snprintf(saved, sizeof saved, "%s", base_error_message());
        if (PQstatus(w->pg) == CONNECTION_OK) {
            if (s->depth > 0) {
                exec_const(s, w, "ROLLBACK TO nested");
                exec_const(s, w, "RELEASE nested");
            } else if (PQtransactionStatus(w->pg) != PQTRANS_IDLE) {
                exec_const(s, w, "ROLLBACK");
            }
        }
        base_error_set(rc, "%s", saved);
    }
    pthread_mutex_unlock(&s->writer_mutex);
    return rc;
}

/* Appends a change; its sequence number goes to *seq. Writer held. */
static int change_add(struct pg_store *s, enum gal_change_kind kind, int64_t collection_id,
                      int64_t subject_rowid, const char *subject_id, int64_t face_id, uint64_t *seq)
{
    struct params p = {0};
    p_i64(&p, kind);
    p_i64(&p, collection_id);
    p_i64(&p, subject_rowid);
    p_text(&p, subject_id);
    p_i64(&p, face_id);
    p_i64(&p, gal_now_ms());
    int64_t v = 0;
    int rc = exec_int(s, &s->writer, S_CHANGE_ADD, &p, "append to the change log", &v);
    if (!rc) *seq = (uint64_t)v;
    return rc;
}

/* ---- open, migrate, close ------------------------------------------------------------- */

/* One integer from constant SQL (text result). */
static int const_int(struct pg_store *s, struct conn *c, const char *sql, int64_t *value)
{
    *value = 0;
    PGresult *r = q_exec(s, c->pg, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = pg_error(s, c->pg, r, sql);
        PQclear(r);
        return rc;
    }
    if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)) *value = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}

static int migrate(struct pg_store *s)
{
    struct conn *w = &s->writer;
    int64_t has_version = 0, version = 0, foreign = 0;
    int rc = exec_const(s, w, "BEGIN");
    if (rc) return rc;
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT pg_advisory_xact_lock(%lld)", LOCK_SCHEMA);
    if ((rc = exec_const(s, w, sql))) goto fail;
    if ((rc = const_int(s, w,
                        "SELECT COUNT(*) FROM pg_tables WHERE tablename = 'vultus_schema' "
                        "AND schemaname = current_schema()",
                        &has_version)))
        goto fail;
    if (has_version) {
        if ((rc = const_int(s, w, "SELECT COALESCE(MAX(version), 0) FROM vultus_schema", &version)))
            goto fail;
    } else {
        if ((rc = const_int(s, w,
                            "SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema() "
                            "AND tablename IN ('collections', 'subjects', 'faces', 'thumbnails', "
                            "'changes')",
                            &foreign)))
            goto fail;
        if (foreign) {
            rc = base_error_set(BASE_ERR_FORMAT,
                                "%s holds tables named like the gallery's (collections, faces, "
                                "...) but no vultus_schema table: it belongs to another "
                                "application",
                                s->shown);
            goto fail;
        }
    }
    if (version > SCHEMA_VERSION) {
        rc = base_error_set(BASE_ERR_UNSUPPORTED,
                            "%s: gallery schema version %lld is newer than this build's (%d)",
                            s->shown, (long long)version, SCHEMA_VERSION);
        goto fail;
    }
    if (version < SCHEMA_VERSION && s->options.read_only) {
        rc = base_error_set(BASE_ERR_IO,
                            "%s: schema version %lld needs a migration to %d, but the store is "
                            "open read-only",
                            s->shown, (long long)version, SCHEMA_VERSION);
        goto fail;
    }
    /* Read-only: additive steps missing stay missing (the check-in calls know, see there). */
    if (s->options.read_only) return exec_const(s, w, "COMMIT");
    if (version < SCHEMA_VERSION) {
        if (!has_version &&
            (rc = exec_const(s, w, "CREATE TABLE vultus_schema (version INTEGER NOT NULL)")))
            goto fail;
        for (int64_t v = version; v < SCHEMA_VERSION; v++) {
            if ((rc = exec_const(s, w, migrations[v]))) goto fail;
            LOG_INFO("gallery store %s: schema migrated to version %lld", s->shown,
                     (long long)(v + 1));
        }
    }
    if (version != SCHEMA_VERSION) {
        snprintf(sql, sizeof sql,
                 "DELETE FROM vultus_schema; INSERT INTO vultus_schema VALUES (%d)",
                 SCHEMA_VERSION);
        if ((rc = exec_const(s, w, sql))) goto fail;
    }
    /* Each step only when missing: the usual open runs no DDL (CREATE INDEX IF NOT EXISTS
     * would still lock the table against other replicas' writes). */
    for (int a = 0; a < ADDITIONS; a++) {
        int64_t present = 0;
        if ((rc = const_int(s, w, additions[a].present, &present))) goto fail;
        if (present) continue;
        if ((rc = exec_const(s, w, additions[a].sql))) goto fail;
        LOG_INFO("gallery store %s: schema extended with %s (version stays %d)", s->shown,
                 additions[a].name, SCHEMA_VERSION);
    }
    return exec_const(s, w, "COMMIT");
fail:
    if (PQstatus(w->pg) == CONNECTION_OK) {
        PGresult *r = q_exec(s, w->pg, "ROLLBACK");
        PQclear(r);
    }
    return rc;
}

static void pg_close(struct gal_store *store)
{
    struct pg_store *s = (struct pg_store *)store;
    if (!s) return;
    while (s->idle) {
        struct conn *c = s->idle;
        s->idle = c->next;
        conn_close(c);
        free(c);
    }
    conn_close(&s->writer);
    pthread_mutex_destroy(&s->writer_mutex);
    pthread_mutex_destroy(&s->pool_mutex);
    pthread_cond_destroy(&s->pool_cond);
    free(s->url);
    free(s->shown);
    free(s);
}

static const struct gal_store_ops postgres_ops;

int gal_store_postgres_open(const char *url, const struct gal_options *options,
                            struct gal_store **out)
{
    *out = NULL;
    if (!gal_location_is_url(url))
        return base_error_set(BASE_ERR_INVALID,
                              "gallery store: expected a postgres:// or postgresql:// URL");
    if (options && options->max_store_bytes)
        return base_error_set(BASE_ERR_UNSUPPORTED,
                              "a size limit on the gallery store is only available with SQLite; "
                              "with PostgreSQL use the database server's disk quotas");
    struct pg_store *s = calloc(1, sizeof *s);
    if (!s) return base_error_set(BASE_ERR_NOMEM, "cannot allocate a store");
    s->base.ops = &postgres_ops;
    if (options) s->options = *options;
    s->options.kernels = NULL; /* not ours, and the caller's string may not outlive us */
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&s->writer_mutex, &attr);
    pthread_mutexattr_destroy(&attr);
    pthread_mutex_init(&s->pool_mutex, NULL);
    pthread_cond_init(&s->pool_cond, NULL);
    char shown[512];
    gal_location_redact(url, shown, sizeof shown);
    s->url = strdup(url);
    s->shown = strdup(shown);
    if (!s->url || !s->shown) {
        pg_close(&s->base);
        return base_error_set(BASE_ERR_NOMEM, "cannot allocate a store");
    }
    gal_pg_outage_init(&s->outage, "gallery store", s->shown);
    int rc = gal_pg_timeout_ms(&s->timeout_ms);
    if (rc) {
        pg_close(&s->base);
        return rc;
    }
    s->base.timeout_ms = s->timeout_ms;
    /* A URL libpq cannot parse is named here, not as a failed connection. */
    char *why = NULL;
    PQconninfoOption *parsed = PQconninfoParse(url, &why);
    if (!parsed) {
        rc = base_error_set(BASE_ERR_INVALID, "gallery store %s: %s", shown,
                            why ? why : "not a valid PostgreSQL URL");
        PQfreemem(why);
        pg_close(&s->base);
        return rc;
    }
    PQconninfoFree(parsed);
    rc = conn_open(s, &s->writer);
    if (!rc) rc = migrate(s);
    if (rc) {
        pg_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return 0;
}

static int pg_check(struct gal_store *store)
{
    struct pg_store *s = (struct pg_store *)store;
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) return rc;
    int64_t bad = 0;
    rc = exec_int(s, c, S_CHECK, NULL, "consistency check", &bad);
    if (!rc && bad)
        rc = base_error_set(BASE_ERR_FORMAT,
                            "%s: %lld faces belong to a subject of another collection", s->shown,
                            (long long)bad);
    reader_put(s, c);
    return rc;
}

/* ---- explicit transactions ------------------------------------------------------------ */

static int pg_begin(struct gal_store *store)
{
    return writer_begin((struct pg_store *)store);
}

static int pg_commit(struct gal_store *store)
{
    return writer_end((struct pg_store *)store, 0);
}

static void pg_rollback(struct gal_store *store)
{
    writer_end((struct pg_store *)store, BASE_ERR_INVALID);
}

/* ---- collections ---------------------------------------------------------------------- */

static void read_collection(const PGresult *r, int row, struct gal_store_collection *c)
{
    memset(c, 0, sizeof *c);
    c->id = col_i64(r, row, 0);
    col_text(r, row, 1, c->info.name, sizeof c->info.name);
    col_text(r, row, 2, c->info.model_id, sizeof c->info.model_id);
    c->info.dim = (uint32_t)col_i64(r, row, 3);
    c->info.dtype = (enum gal_dtype)col_i64(r, row, 4);
    c->info.threshold = (float)col_f64(r, row, 5);
    c->info.created_ms = col_i64(r, row, 6);
}

static int counts(struct pg_store *s, struct conn *c, int64_t id, uint64_t *subjects,
                  uint64_t *faces)
{
    struct params p = {0};
    p_i64(&p, id);
    PGresult *r;
    int rc = exec_stmt(s, c, S_COUNTS, &p, &r, "count subjects and faces");
    if (rc) return rc;
    *subjects = (uint64_t)col_i64(r, 0, 0);
    *faces = (uint64_t)col_i64(r, 0, 1);
    PQclear(r);
    return 0;
}

/* One collection by name (or id when name is NULL) on connection c. */
static int get_collection(struct pg_store *s, struct conn *c, const char *name, int64_t id,
                          struct gal_store_collection *out)
{
    struct params p = {0};
    if (name)
        p_text(&p, name);
    else
        p_i64(&p, id);
    PGresult *r;
    int rc = exec_stmt(s, c, name ? S_COLL_BY_NAME : S_COLL_BY_ID, &p, &r, "read a collection");
    if (rc) return rc;
    if (PQntuples(r) > 0)
        read_collection(r, 0, out);
    else
        rc = name ? base_error_set(BASE_ERR_NOT_FOUND, "collection \"%s\" does not exist", name)
                  : base_error_set(BASE_ERR_NOT_FOUND, "collection #%lld does not exist",
                                   (long long)id);
    PQclear(r);
    return rc;
}

static int pg_collection_get(struct gal_store *store, const char *name, int64_t id,
                             struct gal_store_collection *out)
{
    struct pg_store *s = (struct pg_store *)store;
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) return rc;
    if ((rc = read_begin(s, c))) goto done;
    rc = get_collection(s, c, name, id, out);
    if (!rc) rc = counts(s, c, out->id, &out->info.subject_count, &out->info.face_count);
    if (!rc) rc = exec_const(s, c, "COMMIT");
done:
    reader_put(s, c);
    return rc;
}

static int pg_collection_list(struct gal_store *store, struct gal_store_collection **list,
                              size_t *count)
{
    struct pg_store *s = (struct pg_store *)store;
    *list = NULL;
    *count = 0;
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) return rc;
    PGresult *r = NULL;
    struct gal_store_collection *items = NULL;
    /* One snapshot: the list and its counts agree with each other. */
    if ((rc = read_begin(s, c))) goto done;
    if ((rc = exec_stmt(s, c, S_COLL_LIST, NULL, &r, "list collections"))) goto done;
    int n = PQntuples(r);
    items = malloc((size_t)(n ? n : 1) * sizeof *items);
    if (!items) {
        rc = base_error_set(BASE_ERR_NOMEM, "cannot list collections");
        goto done;
    }
    for (int i = 0; i < n; i++)
        read_collection(r, i, &items[i]);
    for (int i = 0; !rc && i < n; i++)
        rc = counts(s, c, items[i].id, &items[i].info.subject_count, &items[i].info.face_count);
    if (!rc) rc = exec_const(s, c, "COMMIT");
    if (!rc) {
        *list = items;
        *count = (size_t)n;
        items = NULL;
    }
done:
    PQclear(r);
    free(items);
    reader_put(s, c);
    return rc;
}

static int pg_collection_create(struct gal_store *store, const struct gal_collection_info *info,
                                int64_t *id, uint64_t *seq)
{
    struct pg_store *s = (struct pg_store *)store;
    int rc = writer_begin(s);
    if (rc) return rc;
    struct conn *w = &s->writer;
    struct gal_store_collection existing;
    rc = get_collection(s, w, info->name, 0, &existing);
    if (rc == 0) {
        rc = base_error_set(BASE_ERR_EXISTS, "collection \"%s\" already exists", info->name);
        goto end;
    }
    if (rc != BASE_ERR_NOT_FOUND) goto end;
    struct params p = {0};
    p_text(&p, info->name);
    p_text(&p, info->model_id);
    p_i64(&p, info->dim);
    p_i64(&p, info->dtype);
    p_f64(&p, info->threshold);
    p_i64(&p, info->created_ms ? info->created_ms : gal_now_ms());
    if ((rc = exec_int(s, w, S_COLL_INSERT, &p, "create a collection", id))) goto end;
    rc = change_add(s, GAL_CHANGE_COLLECTION_CREATE, *id, 0, NULL, 0, seq);
end:
    return writer_end(s, rc);
}

/* Runs an UPDATE or DELETE; *rows gets the number of rows it changed. */
static int exec_rows(struct pg_store *s, struct conn *c, enum stmt_id id, const struct params *p,
                     const char *what, long *rows)
{
    PGresult *r;
    int rc = exec_stmt(s, c, id, p, &r, what);
    if (rc) return rc;
    *rows = strtol(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return 0;
}

static int pg_collection_update(struct gal_store *store, int64_t id, float threshold,
                                enum gal_dtype dtype, uint64_t *seq)
{
    struct pg_store *s = (struct pg_store *)store;
    int rc = writer_begin(s);
    if (rc) return rc;
    struct params p = {0};
    p_i64(&p, id);
    p_f64(&p, threshold);
    p_i64(&p, dtype);
    long rows = 0;
    if ((rc = exec_rows(s, &s->writer, S_COLL_UPDATE, &p, "update a collection", &rows))) goto end;
    if (rows == 0) {
        rc = base_error_set(BASE_ERR_NOT_FOUND, "collection #%lld does not exist", (long long)id);
        goto end;
    }
    rc = change_add(s, GAL_CHANGE_COLLECTION_UPDATE, id, 0, NULL, 0, seq);
end:
    return writer_end(s, rc);
}

static int pg_collection_delete(struct gal_store *store, int64_t id, uint64_t *seq)
{
    struct pg_store *s = (struct pg_store *)store;
    int rc = writer_begin(s);
    if (rc) return rc;
    /* The change first, while the collection's name can still be read for the log. */
    if ((rc = change_add(s, GAL_CHANGE_COLLECTION_DELETE, id, 0, NULL, 0, seq))) goto end;
    struct params p = {0};
    p_i64(&p, id);
    long rows = 0;
    if ((rc = exec_rows(s, &s->writer, S_COLL_DELETE, &p, "delete a collection", &rows))) goto end;
    if (rows == 0)
        rc = base_error_set(BASE_ERR_NOT_FOUND, "collection #%lld does not exist", (long long)id);
end:
    return writer_end(s, rc);
}

/* ---- subjects ------------------------------------------------------------------------- */

/* The rowid of a subject, or BASE_ERR_NOT_FOUND. */
static int find_subject(struct pg_store *s, struct conn *c, int64_t collection_id,
                        const char *subject_id, int64_t *rowid)
{
    struct params p = {0};
    p_i64(&p, collection_id);
    p_text(&p, subject_id);
    int rc = exec_int(s, c, S_SUBJ_FIND, &p, "find a subject", rowid);
    if (!rc && *rowid == 0)
        rc = base_error_set(BASE_ERR_NOT_FOUND, "subject \"%s\" does not exist", subject_id);
    return rc;
}

static int pg_subject_add(struct gal_store *store, int64_t collection_id, const char *subject_id,
                          const char *metadata, int64_t created_ms, uint64_t *seq)
{
    struct pg_store *s = (struct pg_store *)store;
    int rc = writer_begin(s);
    if (rc) return rc;
    struct conn *w = &s->writer;
    int64_t rowid = 0;
    rc = find_subject(s, w, collection_id, subject_id, &rowid);
    if (rc == 0) {
        rc = base_error_set(BASE_ERR_EXISTS, "subject \"%s\" already exists", subject_id);
        goto end;
    }
    if (rc != BASE_ERR_NOT_FOUND) goto end;
    struct params p = {0};
    p_i64(&p, collection_id);
    p_text(&p, subject_id);
    p_text(&p, metadata);
    p_i64(&p, created_ms ? created_ms : gal_now_ms());
    if ((rc = exec_int(s, w, S_SUBJ_INSERT, &p, "add a subject", &rowid))) goto end;
    rc = change_add(s, GAL_CHANGE_SUBJECT_ADD, collection_id, rowid, subject_id, 0, seq);
end:
    return writer_end(s, rc);
}

static int pg_subject_set_metadata(struct gal_store *store, int64_t collection_id,
                                   const char *subject_id, const char *metadata, uint64_t *seq)
{
    struct pg_store *s = (struct pg_store *)store;
    int rc = writer_begin(s);
    if (rc) return rc;
    int64_t rowid = 0;
    if ((rc = find_subject(s, &s->writer, collection_id, subject_id, &rowid))) goto end;
    struct params p = {0};
    p_i64(&p, rowid);
    p_text(&p, metadata);
    if ((rc = exec_stmt(s, &s->writer, S_SUBJ_SET_META, &p, NULL, "update a subject"))) goto end;
    rc = change_add(s, GAL_CHANGE_SUBJECT_UPDATE, collection_id, rowid, subject_id, 0, seq);
end:
    return writer_end(s, rc);
}

static int pg_subject_delete(struct gal_store *store, int64_t collection_id, const char *subject_id,
                             int64_t *subject_rowid, uint64_t *seq)
{
    struct pg_store *s = (struct pg_store *)store;
    int rc = writer_begin(s);
    if (rc) return rc;
    if ((rc = find_subject(s, &s->writer, collection_id, subject_id, subject_rowid))) goto end;
    struct params p = {0};
    p_i64(&p, *subject_rowid);
    /* faces and thumbnails cascade */
    if ((rc = exec_stmt(s, &s->writer, S_SUBJ_DELETE, &p, NULL, "delete a subject"))) goto end;
    rc =
        change_add(s, GAL_CHANGE_SUBJECT_DELETE, collection_id, *subject_rowid, subject_id, 0, seq);
end:
    return writer_end(s, rc);
}

static int read_subject(const PGresult *r, int row, struct gal_subject_info *info)
{
    memset(info, 0, sizeof *info);
    col_text(r, row, 0, info->id, sizeof info->id);
    info->metadata = col_dup(r, row, 1);
    info->created_ms = col_i64(r, row, 2);
    info->face_count = (uint64_t)col_i64(r, row, 3);
    return info->metadata ? 0 : base_error_set(BASE_ERR_NOMEM, "cannot read a subject");
}

static int pg_subject_get(struct gal_store *store, int64_t collection_id, const char *subject_id,
                          struct gal_subject_info *info)
{
    struct pg_store *s = (struct pg_store *)store;
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) return rc;
    struct params p = {0};
    p_i64(&p, collection_id);
    p_text(&p, subject_id);
    PGresult *r;
    if (!(rc = exec_stmt(s, c, S_SUBJ_GET, &p, &r, "read a subject"))) {
        if (PQntuples(r) > 0)
            rc = read_subject(r, 0, info);
        else
            rc = base_error_set(BASE_ERR_NOT_FOUND, "subject \"%s\" does not exist", subject_id);
        PQclear(r);
    }
    reader_put(s, c);
    return rc;
}

static int pg_subject_list(struct gal_store *store, int64_t collection_id, const char *after,
                           size_t limit, struct gal_subject_info **list, size_t *count)
{
    struct pg_store *s = (struct pg_store *)store;
    *list = NULL;
    *count = 0;
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) return rc;
    struct params p = {0};
    p_i64(&p, collection_id);
    p_text(&p, after ? after : "");
    p_i64(&p, (int64_t)limit);
    PGresult *r;
    if (!(rc = exec_stmt(s, c, S_SUBJ_LIST, &p, &r, "list subjects"))) {
        size_t n = (size_t)PQntuples(r);
        if (n > limit) n = limit;
        struct gal_subject_info *items = calloc(n ? n : 1, sizeof *items);
        if (!items) rc = base_error_set(BASE_ERR_NOMEM, "cannot list %zu subjects", n);
        size_t done = 0;
        for (; !rc && done < n; done++)
            rc = read_subject(r, (int)done, &items[done]);
        if (rc) {
            gal_subject_list_free(items, done);
        } else {
            *list = items;
            *count = n;
        }
        PQclear(r);
    }
    reader_put(s, c);
    return rc;
}

/* ---- faces ---------------------------------------------------------------------------- */

static int pg_faces_add(struct gal_store *store, int64_t collection_id,
                        const struct gal_face_input *faces, const int64_t *created_ms, size_t count,
                        int64_t *face_ids, int64_t *subject_rowids, uint64_t *first_seq)
{
    struct pg_store *s = (struct pg_store *)store;
    int rc = writer_begin(s);
    if (rc) return rc;
    struct conn *w = &s->writer;
    const char *last_subject = NULL;
    int64_t subject_rowid = 0, now = gal_now_ms();
    for (size_t i = 0; i < count && !rc; i++) {
        const struct gal_face_input *f = &faces[i];
        if (!last_subject || strcmp(last_subject, f->subject_id) != 0) {
            if ((rc = find_subject(s, w, collection_id, f->subject_id, &subject_rowid))) break;
            last_subject = f->subject_id;
        }
        struct params p = {0};
        p_i64(&p, collection_id);
        p_i64(&p, subject_rowid);
        p_bytes(&p, f->embedding, f->dim * sizeof(float));
        p_text(&p, f->image_hash ? f->image_hash : "");
        for (int b = 0; b < 4; b++)
            p_f64(&p, f->box[b]);
        p_f64(&p, f->quality);
        p_i64(&p, created_ms && created_ms[i] ? created_ms[i] : now);
        if (f->thumbnail && f->thumbnail_len)
            p_bytes(&p, f->thumbnail, f->thumbnail_len);
        else
            p_text(&p, NULL); /* SQL NULL: no thumbnail row */
        p_text(&p, f->subject_id);
        p_i64(&p, now);
        p_i64(&p, GAL_CHANGE_FACE_ADD);
        PGresult *r;
        if ((rc = exec_stmt(s, w, S_FACE_INSERT, &p, &r, "add a face"))) break;
        if (PQntuples(r) != 1) {
            PQclear(r);
            rc = base_error_set(BASE_ERR_BACKEND, "add a face: no id returned");
            break;
        }
        face_ids[i] = col_i64(r, 0, 0);
        if (i == 0) *first_seq = (uint64_t)col_i64(r, 0, 1);
        subject_rowids[i] = subject_rowid;
        PQclear(r);
    }
    return writer_end(s, rc);
}

static int pg_face_delete(struct gal_store *store, int64_t collection_id, int64_t face_id,
                          uint64_t *seq)
{
    struct pg_store *s = (struct pg_store *)store;
    int rc = writer_begin(s);
    if (rc) return rc;
    struct conn *w = &s->writer;
    int64_t subject_rowid = 0;
    struct params p = {0};
    p_i64(&p, face_id);
    p_i64(&p, collection_id);
    if ((rc = exec_int(s, w, S_FACE_FIND, &p, "find a face", &subject_rowid))) goto end;
    if (subject_rowid == 0) {
        rc = base_error_set(BASE_ERR_NOT_FOUND, "face %lld does not exist", (long long)face_id);
        goto end;
    }
    struct params d = {0};
    p_i64(&d, face_id);
    if ((rc = exec_stmt(s, w, S_FACE_DELETE, &d, NULL, "delete a face"))) goto end;
    rc = change_add(s, GAL_CHANGE_FACE_DELETE, collection_id, subject_rowid, NULL, face_id, seq);
end:
    return writer_end(s, rc);
}

/* Reads an embedding column, checking its size. */
static int read_embedding(const PGresult *r, int row, int col, int64_t face_id, uint32_t dim,
                          float *out)
{
    int bytes = PQgetisnull(r, row, col) ? -1 : PQgetlength(r, row, col);
    if (bytes < 0 || (size_t)bytes != dim * sizeof(float))
        return base_error_set(BASE_ERR_FORMAT, "face %lld: embedding of %d bytes, expected %zu",
                              (long long)face_id, bytes, dim * sizeof(float));
    memcpy(out, PQgetvalue(r, row, col), (size_t)bytes);
    return 0;
}

/* Fills a face record from a row of FACE_COLUMNS; `dim` from the collection. With copy_blobs
 * 0 the embedding and thumbnail point into the result (valid until PQclear). */
static int read_face(const PGresult *r, int row, uint32_t dim, struct gal_face_record *rec,
                     int copy_blobs)
{
    memset(rec, 0, sizeof *rec);
    rec->face_id = col_i64(r, row, 0);
    col_text(r, row, 1, rec->subject_id, sizeof rec->subject_id);
    col_text(r, row, 2, rec->image_hash, sizeof rec->image_hash);
    for (int b = 0; b < 4; b++)
        rec->box[b] = (float)col_f64(r, row, 3 + b);
    rec->quality = (float)col_f64(r, row, 7);
    rec->created_ms = col_i64(r, row, 8);
    rec->dim = dim;
    int bytes = PQgetlength(r, row, 9);
    if ((size_t)bytes != dim * sizeof(float))
        return base_error_set(BASE_ERR_FORMAT, "face %lld: embedding of %d bytes, expected %zu",
                              (long long)rec->face_id, bytes, dim * sizeof(float));
    int has_thumb = !PQgetisnull(r, row, 10);
    rec->thumbnail_len = has_thumb ? (size_t)PQgetlength(r, row, 10) : 0;
    if (!copy_blobs) {
        rec->embedding = (float *)(void *)PQgetvalue(r, row, 9);
        rec->thumbnail = has_thumb ? (uint8_t *)PQgetvalue(r, row, 10) : NULL;
        return 0;
    }
    rec->embedding = malloc((size_t)bytes);
    if (rec->thumbnail_len) rec->thumbnail = malloc(rec->thumbnail_len);
    if (!rec->embedding || (rec->thumbnail_len && !rec->thumbnail)) {
        gal_face_record_deinit(rec);
        return base_error_set(BASE_ERR_NOMEM, "cannot read a face");
    }
    memcpy(rec->embedding, PQgetvalue(r, row, 9), (size_t)bytes);
    if (rec->thumbnail_len) memcpy(rec->thumbnail, PQgetvalue(r, row, 10), rec->thumbnail_len);
    return 0;
}

static int pg_face_get(struct gal_store *store, int64_t collection_id, int64_t face_id,
                       struct gal_face_record *record)
{
    struct pg_store *s = (struct pg_store *)store;
    memset(record, 0, sizeof *record);
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) return rc;
    struct gal_store_collection coll;
    PGresult *r = NULL;
    if ((rc = read_begin(s, c))) goto done;
    if ((rc = get_collection(s, c, NULL, collection_id, &coll))) goto done;
    struct params p = {0};
    p_i64(&p, face_id);
    p_i64(&p, collection_id);
    if ((rc = exec_stmt(s, c, S_FACE_GET, &p, &r, "read a face"))) goto done;
    if (PQntuples(r) > 0)
        rc = read_face(r, 0, coll.info.dim, record, 1);
    else
        rc = base_error_set(BASE_ERR_NOT_FOUND, "face %lld does not exist in collection \"%s\"",
                            (long long)face_id, coll.info.name);
    if (!rc) rc = exec_const(s, c, "COMMIT");
    if (rc) gal_face_record_deinit(record);
done:
    PQclear(r);
    reader_put(s, c);
    return rc;
}

static int pg_face_list(struct gal_store *store, int64_t collection_id, const char *subject_id,
                        int64_t **face_ids, size_t *count)
{
    struct pg_store *s = (struct pg_store *)store;
    *face_ids = NULL;
    *count = 0;
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) return rc;
    int64_t rowid = 0;
    PGresult *r = NULL;
    if ((rc = read_begin(s, c))) goto done;
    if ((rc = find_subject(s, c, collection_id, subject_id, &rowid))) goto done;
    struct params p = {0};
    p_i64(&p, rowid);
    if ((rc = exec_stmt(s, c, S_FACE_LIST, &p, &r, "list faces"))) goto done;
    size_t n = (size_t)PQntuples(r);
    int64_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) {
        rc = base_error_set(BASE_ERR_NOMEM, "cannot list %zu faces", n);
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        ids[i] = col_i64(r, (int)i, 0);
    if ((rc = exec_const(s, c, "COMMIT"))) {
        free(ids);
        goto done;
    }
    *face_ids = ids;
    *count = n;
done:
    PQclear(r);
    reader_put(s, c);
    return rc;
}

static int compare_i64(const void *pa, const void *pb)
{
    int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
    return a < b ? -1 : a > b;
}

/* One statement for every face of a search result: `= ANY (array)` over the distinct ids, the
 * rows matched back to every position that asked for them. */
static int pg_faces_lookup(struct gal_store *store, int64_t collection_id, const int64_t *face_ids,
                           size_t count, uint32_t dim, float *embeddings,
                           struct gal_store_face_ref *refs)
{
    struct pg_store *s = (struct pg_store *)store;
    for (size_t i = 0; i < count; i++)
        memset(&refs[i], 0, sizeof refs[i]);
    if (count == 0) return 0;
    int64_t *sorted = malloc(count * sizeof *sorted);
    char *array = malloc(count * 21 + 3);
    if (!sorted || !array) {
        free(sorted);
        free(array);
        return base_error_set(BASE_ERR_NOMEM, "cannot look up %zu faces", count);
    }
    memcpy(sorted, face_ids, count * sizeof *sorted);
    qsort(sorted, count, sizeof *sorted, compare_i64);
    size_t len = 0;
    array[len++] = '{';
    for (size_t i = 0; i < count; i++) {
        if (i && sorted[i] == sorted[i - 1]) continue;
        len += (size_t)sprintf(array + len, "%s%lld", len > 1 ? "," : "", (long long)sorted[i]);
    }
    array[len++] = '}';
    array[len] = '\0';
    free(sorted);

    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) {
        free(array);
        return rc;
    }
    struct params p = {0};
    p_i64(&p, collection_id);
    p_text(&p, array);
    PGresult *r;
    rc = exec_stmt(s, c, embeddings ? S_FACE_REFS_EMBEDDING : S_FACE_REFS, &p, &r, "look up faces");
    free(array);
    if (!rc) {
        int rows = PQntuples(r);
        /* Rows come in any order and an id may be asked for at several positions: match
         * each row through (id, position) pairs sorted by id. */
        int64_t(*pairs)[2] = malloc(count * sizeof *pairs);
        if (!pairs) rc = base_error_set(BASE_ERR_NOMEM, "cannot look up %zu faces", count);
        for (size_t i = 0; !rc && i < count; i++) {
            pairs[i][0] = face_ids[i];
            pairs[i][1] = (int64_t)i;
        }
        if (!rc) qsort(pairs, count, sizeof *pairs, compare_i64);
        for (int row = 0; !rc && row < rows; row++) {
            int64_t id = col_i64(r, row, 0);
            size_t lo = 0, hi = count;
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (pairs[mid][0] < id)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            for (size_t j = lo; !rc && j < count && pairs[j][0] == id; j++) {
                size_t i = (size_t)pairs[j][1];
                refs[i].found = 1;
                refs[i].subject_rowid = col_i64(r, row, 1);
                col_text(r, row, 2, refs[i].subject_id, sizeof refs[i].subject_id);
                if (embeddings) rc = read_embedding(r, row, 3, id, dim, embeddings + i * dim);
            }
        }
        free(pairs);
        PQclear(r);
    }
    reader_put(s, c);
    return rc;
}

/* ---- loading and the change log -------------------------------------------------------- */

/*
 * Runs statement `id` as a cursor inside the transaction open on `c` and hands every row to
 * row(ctx, result, i), `fetch` rows at a time: one scan of the table, memory bounded by one
 * batch whatever the collection's size. (Pages by "id > last LIMIT n" would be planned as a
 * scan and sort of the whole collection each, before ANALYZE has seen the table: measured
 * 1.2 s instead of 0.3-0.35 s to load 100k faces.)
 */
static int scan_cursor(struct pg_store *s, struct conn *c, enum stmt_id id, const struct params *p,
                       int fetch, int (*row)(void *ctx, const PGresult *r, int i), void *ctx,
                       const char *what)
{
    char declare[1024];
    snprintf(declare, sizeof declare, "DECLARE vultus_scan NO SCROLL CURSOR FOR %s", stmt_sql[id]);
    PGresult *r = wait_result(
        s, c->pg,
        PQsendQueryParams(c->pg, declare, p->n, NULL, p->values, p->lengths, p->formats, 1));
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : pg_error(s, c->pg, r, what);
    PQclear(r);
    char sql[64];
    snprintf(sql, sizeof sql, "FETCH %d FROM vultus_scan", fetch);
    while (!rc) {
        r = wait_result(s, c->pg, PQsendQueryParams(c->pg, sql, 0, NULL, NULL, NULL, NULL, 1));
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            rc = pg_error(s, c->pg, r, what);
            PQclear(r);
            break;
        }
        int rows = PQntuples(r);
        for (int i = 0; i < rows && !rc; i++)
            rc = row(ctx, r, i);
        PQclear(r);
        if (rows < fetch) break;
    }
    if (!rc) rc = exec_const(s, c, "CLOSE vultus_scan");
    return rc;
}

struct load_rows {
    const struct gal_store_loader *loader;
    uint32_t dim;
    float *embedding;
};

static int load_row(void *ctx, const PGresult *r, int i)
{
    struct load_rows *l = ctx;
    int64_t face_id = col_i64(r, i, 0);
    int rc = read_embedding(r, i, 2, face_id, l->dim, l->embedding);
    return rc ? rc : l->loader->face(l->loader->ctx, face_id, col_i64(r, i, 1), l->embedding);
}

static int pg_last_seq(struct gal_store *store, uint64_t *seq)
{
    struct pg_store *s = (struct pg_store *)store;
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) return rc;
    int64_t last = 0;
    rc = exec_int(s, c, S_LAST_SEQ, NULL, "read the change log", &last);
    *seq = rc ? 0 : (uint64_t)last;
    reader_put(s, c);
    return rc;
}

static int pg_load(struct gal_store *store, int64_t only_collection,
                   const struct gal_store_loader *loader, uint64_t *seq)
{
    struct pg_store *s = (struct pg_store *)store;
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) return rc;
    int64_t last = 0;
    int64_t *ids = NULL;
    size_t n = 0;
    float *embedding = NULL;
    PGresult *r = NULL;
    /* One snapshot for everything: the faces loaded are exactly those as of change `last`. */
    if ((rc = read_begin(s, c))) goto end;
    if ((rc = exec_int(s, c, S_LAST_SEQ, NULL, "read the change log", &last))) goto end;
    *seq = (uint64_t)last;
    if (only_collection) {
        ids = malloc(sizeof *ids);
        if (!ids) {
            rc = base_error_set(BASE_ERR_NOMEM, "cannot load collections");
            goto end;
        }
        ids[n++] = only_collection;
    } else {
        if ((rc = exec_stmt(s, c, S_COLL_IDS, NULL, &r, "list collections"))) goto end;
        int rows = PQntuples(r);
        ids = malloc((size_t)(rows ? rows : 1) * sizeof *ids);
        if (!ids) {
            rc = base_error_set(BASE_ERR_NOMEM, "cannot load collections");
            goto end;
        }
        for (int i = 0; i < rows; i++)
            ids[n++] = col_i64(r, i, 0);
        PQclear(r);
        r = NULL;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        struct gal_store_collection coll;
        uint64_t subjects = 0, faces = 0;
        if ((rc = get_collection(s, c, NULL, ids[i], &coll))) break;
        if ((rc = counts(s, c, coll.id, &subjects, &faces))) break;
        coll.info.subject_count = subjects;
        coll.info.face_count = faces;
        if ((rc = loader->collection(loader->ctx, &coll, faces))) break;
        free(embedding);
        embedding = malloc(coll.info.dim * sizeof *embedding);
        if (!embedding) {
            rc = base_error_set(BASE_ERR_NOMEM, "cannot load faces");
            break;
        }
        struct params p = {0};
        p_i64(&p, coll.id);
        struct load_rows l = {loader, coll.info.dim, embedding};
        rc = scan_cursor(s, c, S_FACES_LOAD, &p, FETCH_FACES, load_row, &l, "load faces");
    }
    if (!rc) rc = exec_const(s, c, "COMMIT");
end:
    PQclear(r);
    free(ids);
    free(embedding);
    reader_put(s, c);
    return rc;
}

static int pg_changes(struct gal_store *store, uint64_t after, size_t limit,
                      struct gal_change *changes, size_t *count)
{
    struct pg_store *s = (struct pg_store *)store;
    *count = 0;
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) return rc;
    struct params p = {0};
    p_i64(&p, (int64_t)after);
    p_i64(&p, (int64_t)limit);
    PGresult *r;
    if (!(rc = exec_stmt(s, c, S_CHANGES, &p, &r, "read the change log"))) {
        size_t n = (size_t)PQntuples(r);
        if (n > limit) n = limit;
        for (size_t i = 0; i < n; i++) {
            changes[i].seq = (uint64_t)col_i64(r, (int)i, 0);
            changes[i].kind = (enum gal_change_kind)col_i64(r, (int)i, 1);
            changes[i].collection_id = col_i64(r, (int)i, 2);
            changes[i].subject_rowid = col_i64(r, (int)i, 3);
            changes[i].face_id = col_i64(r, (int)i, 4);
        }
        *count = n;
        PQclear(r);
    }
    reader_put(s, c);
    return rc;
}

/* ---- export ---------------------------------------------------------------------------- */

struct export_rows {
    const struct gal_store_exporter *exporter;
    uint32_t dim;
};

static int export_subject_row(void *ctx, const PGresult *r, int i)
{
    struct export_rows *e = ctx;
    struct gal_subject_info info;
    int rc = read_subject(r, i, &info);
    if (!rc) rc = e->exporter->subject(e->exporter->ctx, &info);
    gal_subject_info_deinit(&info);
    return rc;
}

static int export_face_row(void *ctx, const PGresult *r, int i)
{
    struct export_rows *e = ctx;
    struct gal_face_record rec;
    int rc = read_face(r, i, e->dim, &rec, 0);
    return rc ? rc : e->exporter->face(e->exporter->ctx, &rec);
}

static int pg_export_scan(struct gal_store *store, int64_t collection_id,
                          const struct gal_store_exporter *exporter)
{
    struct pg_store *s = (struct pg_store *)store;
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) return rc;
    if ((rc = read_begin(s, c))) goto done;
    struct gal_store_collection coll;
    uint64_t subjects = 0, faces = 0;
    if ((rc = get_collection(s, c, NULL, collection_id, &coll))) goto done;
    if ((rc = counts(s, c, collection_id, &subjects, &faces))) goto done;
    coll.info.subject_count = subjects;
    coll.info.face_count = faces;
    if ((rc = exporter->begin(exporter->ctx, &coll.info, subjects, faces))) goto done;

    struct params p = {0};
    p_i64(&p, collection_id);
    struct export_rows e = {exporter, coll.info.dim};
    rc = scan_cursor(s, c, S_EXPORT_SUBJECTS, &p, FETCH_SUBJECTS, export_subject_row, &e,
                     "export subjects");
    if (!rc)
        rc = scan_cursor(s, c, S_EXPORT_FACES, &p, FETCH_EXPORT, export_face_row, &e,
                         "export faces");
    if (!rc) rc = exec_const(s, c, "COMMIT");
done:
    reader_put(s, c);
    return rc;
}

/* ---- check-ins ------------------------------------------------------------------------- */

static int read_event(struct pg_store *s, struct conn *c, int64_t collection_id,
                      struct gal_checkin_event *ev)
{
    memset(ev, 0, sizeof *ev);
    struct params p = {0};
    p_i64(&p, collection_id);
    PGresult *r;
    int rc = exec_stmt(s, c, S_CK_EVENT_GET, &p, &r, "read the check-in record");
    if (rc) return rc;
    if (PQntuples(r) > 0) {
        ev->since_ms = col_i64(r, 0, 0);
        ev->not_recognised = (uint64_t)col_i64(r, 0, 1);
        ev->last_unknown_ms = col_i64(r, 0, 2);
    }
    PQclear(r);
    return 0;
}

static int count_checkins(struct pg_store *s, struct conn *c, int64_t collection_id, uint64_t *n)
{
    struct params p = {0};
    p_i64(&p, collection_id);
    int64_t v = 0;
    int rc = exec_int(s, c, S_CK_COUNT, &p, "count check-ins", &v);
    *n = (uint64_t)v;
    return rc;
}

/* One recognised face: its subject's record read, the rule applied, the record written. */
static int checkin_subject(struct pg_store *s, int64_t collection_id,
                           const struct gal_checkin_face *face, int64_t now_ms,
                           int64_t unknown_before_ms, struct gal_checkin_event *ev,
                           struct gal_checkin *out)
{
    struct conn *w = &s->writer;
    struct params p = {0};
    p_i64(&p, collection_id);
    p_text(&p, face->subject_id);
    PGresult *r;
    int rc = exec_stmt(s, w, S_CK_GET, &p, &r, "read a check-in");
    if (rc) return rc;
    int64_t rowid = 0;
    int found = 0;
    if (PQntuples(r) > 0) {
        rowid = col_i64(r, 0, 0);
        found = col_i64(r, 0, 4) != 0;
        out->first_seen_ms = col_i64(r, 0, 1);
        out->last_arrival_ms = col_i64(r, 0, 2);
        out->arrivals = (uint64_t)col_i64(r, 0, 3);
        col_text(r, 0, 5, out->first_door, sizeof out->first_door);
        col_text(r, 0, 6, out->last_door, sizeof out->last_door);
    }
    PQclear(r);
    if (!rowid) {
        /* Deleted since the search recognised it: as a face nobody is enrolled for. */
        const struct gal_checkin_face nobody = {NULL, face->similarity, NULL};
        out->status = gal_checkin_rule(out, 0, &nobody, now_ms, unknown_before_ms, ev);
        return 0;
    }
    out->status = gal_checkin_rule(out, found, face, now_ms, unknown_before_ms, ev);
    struct params q = {0};
    p_i64(&q, rowid);
    if (out->status == GAL_CHECKIN_CHECKED_IN) {
        p_i64(&q, collection_id);
        p_i64(&q, out->first_seen_ms);
        p_i64(&q, out->last_arrival_ms);
        p_i64(&q, (int64_t)out->arrivals);
        p_f64(&q, face->similarity);
        /* A door as stored: NULL when none was said. */
        p_text(&q, out->first_door[0] ? out->first_door : NULL);
        p_text(&q, out->last_door[0] ? out->last_door : NULL);
        return exec_stmt(s, w, S_CK_INSERT, &q, NULL, "record a check-in");
    }
    if (out->status == GAL_CHECKIN_ALREADY_CHECKED_IN) {
        p_i64(&q, out->last_arrival_ms);
        p_i64(&q, (int64_t)out->arrivals);
        p_text(&q, out->last_door[0] ? out->last_door : NULL);
        return exec_stmt(s, w, S_CK_ARRIVE, &q, NULL, "record an arrival");
    }
    return 0;
}

static int pg_checkin(struct gal_store *store, int64_t collection_id,
                      const struct gal_checkin_face *faces, size_t count, int64_t now_ms,
                      struct gal_checkin *out, struct gal_checkin_summary *summary)
{
    struct pg_store *s = (struct pg_store *)store;
    memset(summary, 0, sizeof *summary);
    /* A write transaction under the advisory lock every write takes: the read and the update
     * are serialised with every other replica's, so two doors get one checked_in. */
    int rc = writer_begin(s);
    if (rc) return rc;
    struct conn *w = &s->writer;
    struct gal_checkin_event ev, before;
    if ((rc = read_event(s, w, collection_id, &ev))) goto end;
    before = ev;
    for (size_t i = 0; i < count && !rc; i++) {
        memset(&out[i], 0, sizeof out[i]);
        if (faces[i].subject_id)
            rc = checkin_subject(s, collection_id, &faces[i], now_ms, before.last_unknown_ms, &ev,
                                 &out[i]);
        else
            out[i].status =
                gal_checkin_rule(&out[i], 0, &faces[i], now_ms, before.last_unknown_ms, &ev);
    }
    if (rc) goto end;
    if (memcmp(&ev, &before, sizeof ev) != 0) {
        struct params p = {0};
        p_i64(&p, collection_id);
        p_i64(&p, ev.since_ms);
        p_i64(&p, (int64_t)ev.not_recognised);
        p_i64(&p, ev.last_unknown_ms);
        if ((rc = exec_stmt(s, w, S_CK_EVENT_PUT, &p, NULL, "record the check-in event"))) goto end;
    }
    summary->not_recognised = ev.not_recognised;
    summary->since_ms = ev.since_ms;
    rc = count_checkins(s, w, collection_id, &summary->checked_in);
end:
    return writer_end(s, rc);
}

static int pg_checkin_list(struct gal_store *store, int64_t collection_id, int64_t after_ms,
                           const char *after_id, size_t limit, struct gal_checkin **list,
                           size_t *count, struct gal_checkin_summary *summary)
{
    struct pg_store *s = (struct pg_store *)store;
    *list = NULL;
    *count = 0;
    memset(summary, 0, sizeof *summary);
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) return rc;
    PGresult *r = NULL;
    struct gal_checkin *items = NULL;
    size_t n = 0;
    /* One snapshot: the page and the counts agree with each other. */
    if ((rc = read_begin(s, c))) goto done;
    enum stmt_id list_stmt = S_CK_LIST;
    if (s->options.read_only) {
        /* A database no writable open of a check-in-aware build has opened yet has no
         * record: an empty one, as for an event nobody has arrived at (the writes are
         * refused anyway, read-only). Nor, from a build before doors, door columns: the
         * record without its doors. */
        int64_t present = 0;
        if ((rc = const_int(s, c, additions[ADD_CHECKINS].present, &present))) goto done;
        if (!present) {
            items = calloc(1, sizeof *items);
            rc = items ? exec_const(s, c, "COMMIT")
                       : base_error_set(BASE_ERR_NOMEM, "cannot list check-ins");
            goto done;
        }
        if ((rc = const_int(s, c, additions[ADD_CHECKIN_DOORS].present, &present))) goto done;
        if (!present) list_stmt = S_CK_LIST_NO_DOORS;
    }
    struct gal_checkin_event ev;
    if ((rc = read_event(s, c, collection_id, &ev))) goto done;
    if ((rc = count_checkins(s, c, collection_id, &summary->checked_in))) goto done;
    summary->not_recognised = ev.not_recognised;
    summary->since_ms = ev.since_ms;
    struct params p = {0};
    p_i64(&p, collection_id);
    p_text(&p, after_id);
    p_i64(&p, after_ms);
    p_i64(&p, (int64_t)limit);
    if ((rc = exec_stmt(s, c, list_stmt, &p, &r, "list check-ins"))) goto done;
    size_t rows = (size_t)PQntuples(r);
    if (rows > limit) rows = limit;
    items = calloc(rows ? rows : 1, sizeof *items);
    if (!items) {
        rc = base_error_set(BASE_ERR_NOMEM, "cannot list %zu check-ins", rows);
        goto done;
    }
    for (; n < rows; n++) {
        struct gal_checkin *it = &items[n];
        col_text(r, (int)n, 0, it->subject_id, sizeof it->subject_id);
        it->metadata = col_dup(r, (int)n, 1);
        it->first_seen_ms = col_i64(r, (int)n, 2);
        it->last_arrival_ms = col_i64(r, (int)n, 3);
        it->arrivals = (uint64_t)col_i64(r, (int)n, 4);
        it->similarity = (float)col_f64(r, (int)n, 5);
        col_text(r, (int)n, 6, it->first_door, sizeof it->first_door);
        col_text(r, (int)n, 7, it->last_door, sizeof it->last_door);
        if (!it->metadata) {
            rc = base_error_set(BASE_ERR_NOMEM, "cannot list check-ins");
            n++;
            goto done;
        }
    }
    rc = exec_const(s, c, "COMMIT");
done:
    PQclear(r);
    reader_put(s, c);
    if (rc) {
        gal_checkin_list_free(items, n);
        return rc;
    }
    *list = items;
    *count = n;
    return 0;
}

static int pg_checkin_clear(struct gal_store *store, int64_t collection_id, uint64_t *cleared)
{
    struct pg_store *s = (struct pg_store *)store;
    int rc = writer_begin(s);
    if (rc) return rc;
    struct params p = {0};
    p_i64(&p, collection_id);
    long rows = 0;
    if ((rc = exec_rows(s, &s->writer, S_CK_CLEAR, &p, "clear the check-ins", &rows))) goto end;
    *cleared = (uint64_t)rows;
    rc = exec_stmt(s, &s->writer, S_CK_EVENT_CLEAR, &p, NULL, "clear the check-in event");
end:
    return writer_end(s, rc);
}

static const struct gal_store_ops postgres_ops = {
    .name = "postgresql",
    .close = pg_close,
    .check = pg_check,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .load = pg_load,
    .collection_create = pg_collection_create,
    .collection_update = pg_collection_update,
    .collection_delete = pg_collection_delete,
    .collection_get = pg_collection_get,
    .collection_list = pg_collection_list,
    .subject_add = pg_subject_add,
    .subject_set_metadata = pg_subject_set_metadata,
    .subject_delete = pg_subject_delete,
    .subject_get = pg_subject_get,
    .subject_list = pg_subject_list,
    .faces_add = pg_faces_add,
    .face_delete = pg_face_delete,
    .face_get = pg_face_get,
    .face_list = pg_face_list,
    .faces_lookup = pg_faces_lookup,
    .changes = pg_changes,
    .export_scan = pg_export_scan,
    .checkin = pg_checkin,
    .checkin_list = pg_checkin_list,
    .checkin_clear = pg_checkin_clear,
    .last_seq = pg_last_seq,
};
