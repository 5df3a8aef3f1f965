/*
 * The SQLite store: one database file in WAL mode.
 *
 * Durability. Every write is one transaction (BEGIN IMMEDIATE ... COMMIT) that returns only
 * after COMMIT returned, so an acknowledged write is in the WAL file. With the default
 * GAL_DURABLE_POWER the connection runs with synchronous=FULL: SQLite fsyncs the WAL at
 * every commit, so the write survives a process crash and a power loss or kernel panic.
 * With GAL_DURABLE_PROCESS it runs with synchronous=NORMAL: in WAL mode a commit is a
 * write() to the WAL (in the OS page cache, which outlives the process) and fsync happens
 * only at checkpoints, so an acknowledged write survives SIGKILL of the process but the last
 * commits may be lost if the machine loses power; commits are then several times cheaper.
 * Either way the database is never corrupted (tests/gallery/test_crash.c kills a writer at
 * random moments and checks both). The default is FULL because enrolments are what users
 * pay to keep and one fsync per enrolment is cheap next to computing the embedding; bulk
 * enrolment batches many faces into one transaction (gal_faces_add).
 *
 * Connections. One writer connection, used under `writer_mutex` (recursive, so that the
 * operations of an explicit transaction - import - can nest), and a pool of read-only
 * connections for lookups, lists and exports: WAL lets them read while the writer writes.
 * Each connection is used by one thread at a time (SQLITE_OPEN_NOMUTEX). Every statement is
 * prepared once per connection and bound; no value is ever formatted into SQL text.
 *
 * Schema: PRAGMA user_version is the oldest build's version that can use the file, and
 * every build refuses a newer one (not modifying it). Two kinds of change, as expand/contract
 * migrations go:
 *   - incompatible (a column an earlier build would misread, a table it must write to):
 *     migrations[i] takes version i to i + 1, and earlier builds refuse the file from then on;
 *   - additive (new tables that earlier builds never read, that their deletes cascade into
 *     through foreign keys, with AUTOINCREMENT ids so a row is never mistaken for another;
 *     new nullable columns of such a table, which earlier builds' statements do not name, as
 *     every statement here names its columns): one more entry of additions[], run on a
 *     writable open that finds it missing; the version stays, so rolling back to an earlier
 *     build stays possible and it simply ignores (and keeps) what the later build recorded.
 * Both run in one BEGIN IMMEDIATE transaction at open, re-read under the lock; a store that
 * needs neither is opened without taking the lock.
 *   collections  id, name (unique), model_id, dim, dtype, threshold, created_ms
 *   subjects     id (the subject rowid), collection_id, subject_id (unique per collection),
 *                metadata (JSON text), created_ms
 *   faces        id (the face id), collection_id, subject_rowid, embedding (dim f32 LE BLOB:
 *                compact, and loaded with one SELECT at start-up), image_hash, box, quality,
 *                created_ms
 *   thumbnails   face_id, jpeg: apart from faces so that loading embeddings reads no JPEG
 *   changes      seq (AUTOINCREMENT: never reused), kind, collection_id, collection,
 *                subject_rowid, subject_id, face_id, time_ms
 *   checkins     subject_rowid, collection_id, first_seen_ms, last_arrival_ms, arrivals,
 *                similarity: the check-in record (an additive step), not in the change log;
 *                first_door, last_door (NULL: none said; a second additive step)
 *   checkin_events  collection_id, since_ms, not_recognised, last_unknown_ms
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "gallery/store.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "embeddings are stored as little-endian f32: add byte swapping for this target"
#endif

/* "VGAL": marks the file as a vultus gallery (PRAGMA application_id). */
#define APPLICATION_ID 0x5647414c
#define BUSY_TIMEOUT_MS 10000
/* A WAL file larger than this (a large import) is cut back to it once checkpointed; it is
 * emptied when the last connection closes (with SQLITE_FCNTL_PERSIST_WAL, see the open). */
#define JOURNAL_SIZE_LIMIT "67108864"

static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE collections ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL UNIQUE,"
    "  model_id TEXT NOT NULL,"
    "  dim INTEGER NOT NULL CHECK (dim BETWEEN 1 AND 4096),"
    "  dtype INTEGER NOT NULL CHECK (dtype IN (0, 1, 2)),"
    "  threshold REAL NOT NULL,"
    "  created_ms INTEGER NOT NULL);"
    "CREATE TABLE subjects ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  collection_id INTEGER NOT NULL REFERENCES collections (id) ON DELETE CASCADE,"
    "  subject_id TEXT NOT NULL,"
    "  metadata TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  UNIQUE (collection_id, subject_id));"
    "CREATE TABLE faces ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  collection_id INTEGER NOT NULL REFERENCES collections (id) ON DELETE CASCADE,"
    "  subject_rowid INTEGER NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,"
    "  embedding BLOB NOT NULL,"
    "  image_hash TEXT NOT NULL,"
    "  box_x REAL NOT NULL, box_y REAL NOT NULL, box_w REAL NOT NULL, box_h REAL NOT NULL,"
    "  quality REAL NOT NULL,"
    "  created_ms INTEGER NOT NULL);"
    "CREATE INDEX faces_by_collection ON faces (collection_id, id);"
    "CREATE INDEX faces_by_subject ON faces (subject_rowid);"
    "CREATE TABLE thumbnails ("
    "  face_id INTEGER PRIMARY KEY REFERENCES faces (id) ON DELETE CASCADE,"
    "  jpeg BLOB NOT NULL);"
    "CREATE TABLE changes ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  kind INTEGER NOT NULL,"
    "  collection_id INTEGER NOT NULL,"
    "  collection TEXT NOT NULL,"
    "  subject_rowid INTEGER,"
    "  subject_id TEXT,"
    "  face_id INTEGER,"
    "  time_ms INTEGER NOT NULL);",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

struct schema_addition {
    const char *name;    /* for the log */
    const char *present; /* constant SQL: 1 when the step's tables (columns) are there, else 0 */
    const char *sql;     /* run only when `present` said 0, under the open's write lock */
};

enum { ADD_CHECKINS, ADD_CHECKIN_DOORS };
static const struct schema_addition additions[] = {
    /* The check-in record (gallery.h). A subject's record goes with its subject, an event's
     * with its collection (foreign keys, which earlier builds' writers enable too; a deleted
     * collection's subjects are purged later, their records with them). */
    [ADD_CHECKINS] =
        {"the check-in record",
         "SELECT COUNT(*) = 2 FROM sqlite_master WHERE type = 'table' "
         "AND name IN ('checkins', 'checkin_events')",
         "CREATE TABLE IF NOT EXISTS checkins ("
         "  subject_rowid INTEGER PRIMARY KEY REFERENCES subjects (id) ON DELETE CASCADE,"
         "  collection_id INTEGER NOT NULL REFERENCES collections (id) ON DELETE CASCADE,"
         "  first_seen_ms INTEGER NOT NULL,"
         "  last_arrival_ms INTEGER NOT NULL,"
         "  arrivals INTEGER NOT NULL,"
         "  similarity REAL NOT NULL);"
         "CREATE INDEX IF NOT EXISTS checkins_by_time ON checkins (collection_id, first_seen_ms);"
         "CREATE TABLE IF NOT EXISTS checkin_events ("
         "  collection_id INTEGER PRIMARY KEY REFERENCES collections (id) ON DELETE CASCADE,"
         "  since_ms INTEGER NOT NULL,"
         "  not_recognised INTEGER NOT NULL,"
         "  last_unknown_ms INTEGER NOT NULL);"},
    /* Where each subject came in: the first arrival's door and the last one's (gallery.h).
     * SQLite has no ADD COLUMN IF NOT EXISTS, so `present` looks for the columns and the
     * ALTERs run only when they are missing (both in one transaction: both or neither). */
    [ADD_CHECKIN_DOORS] =
        {"the check-in doors",
         "SELECT COUNT(*) = 2 FROM pragma_table_info('checkins') "
         "WHERE name IN ('first_door', 'last_door')",
         "ALTER TABLE checkins ADD COLUMN first_door TEXT;"
         "ALTER TABLE checkins ADD COLUMN last_door TEXT;"},
};
#define ADDITIONS ((int)(sizeof additions / sizeof additions[0]))

enum stmt_id {
    S_BEGIN,
    S_BEGIN_IMMEDIATE,
    S_COMMIT,
    S_ROLLBACK,
    S_SAVEPOINT,
    S_RELEASE,
    S_ROLLBACK_TO,
    S_LAST_SEQ,
    S_CHANGE_ADD,
    S_CHANGES,
    S_COLL_INSERT,
    S_COLL_UPDATE,
    S_COLL_HIDE,
    S_PURGE_FACES,
    S_PURGE_SUBJECTS,
    S_PURGE_COLLECTIONS,
    S_HIDDEN_ANY,
    S_COLL_BY_NAME,
    S_COLL_BY_ID,
    S_COLL_LIST,
    S_COLL_IDS,
    S_COUNT_SUBJECTS,
    S_COUNT_FACES,
    S_SUBJ_INSERT,
    S_SUBJ_FIND,
    S_SUBJ_SET_META,
    S_SUBJ_DELETE,
    S_SUBJ_GET,
    S_SUBJ_LIST,
    S_FACE_INSERT,
    S_THUMB_INSERT,
    S_FACE_FIND,
    S_FACE_DELETE,
    S_FACE_REF,
    S_FACE_REF_EMBEDDING,
    S_FACE_GET,
    S_FACE_LIST,
    S_SUBJECT_FACES,
    S_FACES_LOAD,
    S_EXPORT_SUBJECTS,
    S_EXPORT_FACES,
    S_INTEGRITY,
    S_FOREIGN_KEYS,
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
#define NOT_HIDDEN "substr(name, 1, 1) <> '/'"
/* Rows deleted per transaction when purging a deleted collection. */
#define PURGE_CHUNK 4096
#define SUBJ_COLUMNS                                                                               \
    "s.subject_id, s.metadata, s.created_ms, "                                                     \
    "(SELECT COUNT(*) FROM faces f WHERE f.subject_rowid = s.id)"
#define FACE_COLUMNS                                                                               \
    "f.id, s.subject_id, f.image_hash, f.box_x, f.box_y, f.box_w, f.box_h, f.quality, "            \
    "f.created_ms, f.embedding, t.jpeg "                                                           \
    "FROM faces f JOIN subjects s ON s.id = f.subject_rowid "                                      \
    "LEFT JOIN thumbnails t ON t.face_id = f.id "

/* The check-in list's rows, newest first; the cursor (?2, ?3) is the last row shown, ?2 NULL
 * for the first page. */
#define CK_LIST_FROM                                                                               \
    "FROM checkins c JOIN subjects s ON s.id = c.subject_rowid WHERE c.collection_id = ?1 AND "    \
    "(?2 IS NULL OR c.first_seen_ms < ?3 OR (c.first_seen_ms = ?3 AND s.subject_id > ?2)) "       \
    "ORDER BY c.first_seen_ms DESC, s.subject_id LIMIT ?4"

static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN",
    [S_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SAVEPOINT] = "SAVEPOINT nested",
    [S_RELEASE] = "RELEASE nested",
    [S_ROLLBACK_TO] = "ROLLBACK TO nested",
    [S_LAST_SEQ] = "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)",
    [S_CHANGE_ADD] = "INSERT INTO changes (kind, collection_id, collection, subject_rowid, "
                     "subject_id, face_id, time_ms) VALUES (?1, ?2, "
                     "(SELECT name FROM collections WHERE id = ?2), ?3, ?4, ?5, ?6)",
    [S_CHANGES] = "SELECT seq, kind, collection_id, COALESCE(subject_rowid, 0), "
                  "COALESCE(face_id, 0) FROM changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    [S_COLL_INSERT] = "INSERT INTO collections (name, model_id, dim, dtype, threshold, "
                      "created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [S_COLL_UPDATE] = "UPDATE collections SET threshold = ?2, dtype = ?3 WHERE id = ?1",
    /* A deleted collection is first hidden (one quick transaction: a name no valid one can
     * take, so its name is free again at once), then purged in chunks: see sq_purge. Every
     * read of collections skips hidden ones (NOT_HIDDEN). */
    [S_COLL_HIDE] = "UPDATE collections SET name = '/deleted/' || id "
                    "WHERE id = ?1 AND " NOT_HIDDEN,
    [S_PURGE_FACES] = "DELETE FROM faces WHERE id IN (SELECT f.id FROM collections c "
                      "JOIN faces f ON f.collection_id = c.id "
                      "WHERE substr(c.name, 1, 1) = '/' LIMIT ?1)",
    [S_PURGE_SUBJECTS] = "DELETE FROM subjects WHERE id IN (SELECT s.id FROM collections c "
                         "JOIN subjects s ON s.collection_id = c.id "
                         "WHERE substr(c.name, 1, 1) = '/' LIMIT ?1)",
    [S_PURGE_COLLECTIONS] = "DELETE FROM collections WHERE substr(name, 1, 1) = '/' AND NOT "
                            "EXISTS (SELECT 1 FROM subjects s WHERE s.collection_id = "
                            "collections.id) AND NOT EXISTS (SELECT 1 FROM faces f "
                            "WHERE f.collection_id = collections.id)",
    [S_HIDDEN_ANY] = "SELECT EXISTS (SELECT 1 FROM collections WHERE substr(name, 1, 1) = '/')",
    [S_COLL_BY_NAME] = "SELECT " COLL_COLUMNS " FROM collections WHERE name = ?1",
    [S_COLL_BY_ID] = "SELECT " COLL_COLUMNS " FROM collections WHERE id = ?1 AND " NOT_HIDDEN,
    [S_COLL_LIST] = "SELECT " COLL_COLUMNS " FROM collections WHERE " NOT_HIDDEN " ORDER BY name",
    [S_COLL_IDS] = "SELECT id FROM collections WHERE " NOT_HIDDEN " ORDER BY id",
    [S_COUNT_SUBJECTS] = "SELECT COUNT(*) FROM subjects WHERE collection_id = ?1",
    [S_COUNT_FACES] = "SELECT COUNT(*) FROM faces WHERE collection_id = ?1",
    [S_SUBJ_INSERT] = "INSERT INTO subjects (collection_id, subject_id, metadata, created_ms) "
                      "VALUES (?1, ?2, ?3, ?4)",
    [S_SUBJ_FIND] = "SELECT id FROM subjects WHERE collection_id = ?1 AND subject_id = ?2",
    [S_SUBJ_SET_META] = "UPDATE subjects SET metadata = ?2 WHERE id = ?1",
    [S_SUBJ_DELETE] = "DELETE FROM subjects WHERE id = ?1",
    [S_SUBJ_GET] = "SELECT " SUBJ_COLUMNS " FROM subjects s "
                   "WHERE s.collection_id = ?1 AND s.subject_id = ?2",
    [S_SUBJ_LIST] = "SELECT " SUBJ_COLUMNS " FROM subjects s "
                    "WHERE s.collection_id = ?1 AND s.subject_id > ?2 "
                    "ORDER BY s.subject_id LIMIT ?3",
    [S_FACE_INSERT] = "INSERT INTO faces (collection_id, subject_rowid, embedding, image_hash, "
                      "box_x, box_y, box_w, box_h, quality, created_ms) "
                      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [S_THUMB_INSERT] = "INSERT INTO thumbnails (face_id, jpeg) VALUES (?1, ?2)",
    [S_FACE_FIND] = "SELECT subject_rowid FROM faces WHERE id = ?1 AND collection_id = ?2",
    [S_FACE_DELETE] = "DELETE FROM faces WHERE id = ?1",
    [S_FACE_REF] = "SELECT f.subject_rowid, s.subject_id FROM faces f "
                   "JOIN subjects s ON s.id = f.subject_rowid "
                   "WHERE f.id = ?1 AND f.collection_id = ?2",
    [S_FACE_REF_EMBEDDING] = "SELECT f.subject_rowid, s.subject_id, f.embedding FROM faces f "
                             "JOIN subjects s ON s.id = f.subject_rowid "
                             "WHERE f.id = ?1 AND f.collection_id = ?2",
    [S_FACE_GET] = "SELECT " FACE_COLUMNS "WHERE f.id = ?1 AND f.collection_id = ?2",
    [S_FACE_LIST] = "SELECT id FROM faces WHERE subject_rowid = ?1 ORDER BY id",
    [S_SUBJECT_FACES] = "SELECT id, embedding FROM faces WHERE subject_rowid = ?1 "
                        "AND collection_id = ?2 ORDER BY id LIMIT ?3",
    [S_FACES_LOAD] = "SELECT id, subject_rowid, embedding FROM faces "
                     "WHERE collection_id = ?1 ORDER BY id",
    [S_EXPORT_SUBJECTS] = "SELECT " SUBJ_COLUMNS " FROM subjects s WHERE s.collection_id = ?1 "
                          "ORDER BY s.id",
    [S_EXPORT_FACES] = "SELECT " FACE_COLUMNS "WHERE f.collection_id = ?1 ORDER BY f.id",
    [S_INTEGRITY] = "PRAGMA integrity_check",
    [S_FOREIGN_KEYS] = "PRAGMA foreign_key_check",
    [S_CK_GET] = "SELECT first_seen_ms, last_arrival_ms, arrivals, similarity, first_door, "
                 "last_door FROM checkins WHERE subject_rowid = ?1",
    [S_CK_INSERT] = "INSERT INTO checkins (subject_rowid, collection_id, first_seen_ms, "
                    "last_arrival_ms, arrivals, similarity, first_door, last_door) "
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [S_CK_ARRIVE] = "UPDATE checkins SET last_arrival_ms = ?2, arrivals = ?3, last_door = ?4 "
                    "WHERE subject_rowid = ?1",
    [S_CK_EVENT_GET] = "SELECT since_ms, not_recognised, last_unknown_ms FROM checkin_events "
                       "WHERE collection_id = ?1",
    [S_CK_EVENT_PUT] = "INSERT INTO checkin_events (collection_id, since_ms, not_recognised, "
                       "last_unknown_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (collection_id) "
                       "DO UPDATE SET since_ms = excluded.since_ms, not_recognised = "
                       "excluded.not_recognised, last_unknown_ms = excluded.last_unknown_ms",
    [S_CK_COUNT] = "SELECT COUNT(*) FROM checkins WHERE collection_id = ?1",
    [S_CK_LIST] = "SELECT s.subject_id, s.metadata, c.first_seen_ms, c.last_arrival_ms, "
                  "c.arrivals, c.similarity, c.first_door, c.last_door " CK_LIST_FROM,
    /* The same on a read-only store that no writable open of a build with doors has opened
     * yet: no door columns to name. */
    [S_CK_LIST_NO_DOORS] = "SELECT s.subject_id, s.metadata, c.first_seen_ms, "
                           "c.last_arrival_ms, c.arrivals, c.similarity, NULL, NULL " CK_LIST_FROM,
    [S_CK_CLEAR] = "DELETE FROM checkins WHERE collection_id = ?1",
    [S_CK_EVENT_CLEAR] = "DELETE FROM checkin_events WHERE collection_id = ?1",
};

struct conn {
    sqlite3 *db;
    sqlite3_stmt *stmt[S_COUNT];
    struct conn *next; /* in the idle list of the reader pool */
};

struct sqlite_store {
    struct gal_store base;
    char *path;
    struct gal_options options;

    /* The writer connection and its transaction depth, under writer_mutex (recursive). */
    pthread_mutex_t writer_mutex;
    struct conn writer;
    int depth;

    /* Idle read-only connections, under pool_mutex. */
    pthread_mutex_t pool_mutex;
    struct conn *idle;
};

/* ---- errors and statements ---------------------------------------------------------------- */

static int sql_error(sqlite3 *db, int rc, const char *what)
{
    const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    switch (rc & 0xff) {
    case SQLITE_FULL:
        return base_error_set(BASE_ERR_FULL, "%s: the gallery store is full (%s)", what, msg);
    case SQLITE_READONLY:
        return base_error_set(BASE_ERR_IO, "%s: the gallery store is read-only (%s)", what, msg);
    case SQLITE_CONSTRAINT:
        if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
            return base_error_set(BASE_ERR_EXISTS, "%s: %s", what, msg);
        return base_error_set(BASE_ERR_INVALID, "%s: %s", what, msg);
    case SQLITE_NOMEM: return base_error_set(BASE_ERR_NOMEM, "%s: %s", what, msg);
    /* Another process (a `vultus gallery import`, a second server on the file) held the lock
     * past the busy timeout: the store is unavailable for now, not broken. */
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return base_error_set(BASE_ERR_IO,
                              "%s: the gallery store is busy: another process holds its lock (%s)",
                              what, msg);
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM: return base_error_set(BASE_ERR_IO, "%s: %s", what, msg);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return base_error_set(BASE_ERR_FORMAT, "%s: %s", what, msg);
    default: return base_error_set(BASE_ERR_BACKEND, "%s: %s", what, msg);
    }
}

/* The prepared statement `id` of connection `c` (prepared on first use), or NULL. */
static sqlite3_stmt *stmt(struct conn *c, enum stmt_id id)
{
    if (!c->stmt[id]) {
        int rc = sqlite3_prepare_v3(c->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &c->stmt[id], NULL);
        if (rc != SQLITE_OK) {
            sql_error(c->db, rc, stmt_sql[id]);
            c->stmt[id] = NULL;
        }
    }
    return c->stmt[id];
}

static void finish(sqlite3_stmt *st)
{
    if (!st) return;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Runs a statement that returns no rows. */
static int run(struct conn *c, sqlite3_stmt *st, const char *what)
{
    if (!st) return BASE_ERR_BACKEND; /* stmt() described the error */
    int rc = sqlite3_step(st);
    int err = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : sql_error(c->db, rc, what);
    finish(st);
    return err;
}

/* Runs a statement returning one integer (0 when no row). */
static int run_int(struct conn *c, sqlite3_stmt *st, const char *what, int64_t *value)
{
    *value = 0;
    if (!st) return BASE_ERR_BACKEND; /* stmt() described the error */
    int rc = sqlite3_step(st);
    int err = 0;
    if (rc == SQLITE_ROW)
        *value = sqlite3_column_int64(st, 0);
    else if (rc != SQLITE_DONE)
        err = sql_error(c->db, rc, what);
    finish(st);
    return err;
}

static void copy_text(char *dst, size_t size, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(dst, size, "%s", t ? (const char *)t : "");
}

static char *dup_text(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return strdup(t ? (const char *)t : "");
}

/* ---- connections ---------------------------------------------------------------------- */

static void conn_close(struct conn *c)
{
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(c->stmt[i]);
    memset(c->stmt, 0, sizeof c->stmt);
    if (c->db) sqlite3_close(c->db);
    c->db = NULL;
}

static int conn_open(struct conn *c, const char *path, int flags, int busy_timeout_ms)
{
    memset(c, 0, sizeof *c);
    int rc = sqlite3_open_v2(path, &c->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        int err = sql_error(c->db, rc, path);
        conn_close(c);
        return err;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, busy_timeout_ms > 0 ? busy_timeout_ms : BUSY_TIMEOUT_MS);
    return 0;
}

static int reader_get(struct sqlite_store *s, struct conn **out)
{
    pthread_mutex_lock(&s->pool_mutex);
    struct conn *c = s->idle;
    if (c) s->idle = c->next;
    pthread_mutex_unlock(&s->pool_mutex);
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c) return base_error_set(BASE_ERR_NOMEM, "cannot allocate a store connection");
        int rc = conn_open(c, s->path, SQLITE_OPEN_READONLY, s->options.busy_timeout_ms);
        if (rc) {
            free(c);
            return rc;
        }
    }
    *out = c;
    return 0;
}

static void reader_put(struct sqlite_store *s, struct conn *c)
{
    pthread_mutex_lock(&s->pool_mutex);
    c->next = s->idle;
    s->idle = c;
    pthread_mutex_unlock(&s->pool_mutex);
}

/* ---- transactions on the writer -------------------------------------------------------- */

/* Takes the writer and opens a (nested) transaction. */
static int writer_begin(struct sqlite_store *s, int write)
{
    pthread_mutex_lock(&s->writer_mutex);
    if (s->options.read_only && write) {
        pthread_mutex_unlock(&s->writer_mutex);
        return base_error_set(BASE_ERR_IO, "the gallery store %s is open read-only", s->path);
    }
    enum stmt_id id = s->depth > 0 ? S_SAVEPOINT : write ? S_BEGIN_IMMEDIATE : S_BEGIN;
    int rc = run(&s->writer, stmt(&s->writer, id), stmt_sql[id]);
    if (rc) {
        pthread_mutex_unlock(&s->writer_mutex);
        return rc;
    }
    s->depth++;
    return 0;
}

/* Commits (rc == 0) or rolls back the innermost transaction, releases the writer; returns rc
 * or the commit's error. */
static int writer_end(struct sqlite_store *s, int rc)
{
    struct conn *w = &s->writer;
    s->depth--;
    if (rc == 0) {
        enum stmt_id id = s->depth > 0 ? S_RELEASE : S_COMMIT;
        rc = run(w, stmt(w, id), stmt_sql[id]);
    }
    if (rc != 0) {
        /* Keep the caller's error message: the rollback's own outcome matters less. */
        char saved[512];
        snprintf(saved, sizeof saved, "%s", base_error_message());
        if (s->depth > 0) {
            run(w, stmt(w, S_ROLLBACK_TO), "rollback to savepoint");
            run(w, stmt(w, S_RELEASE), "release savepoint");
        } else if (!sqlite3_get_autocommit(w->db)) {
            run(w, stmt(w, S_ROLLBACK), "rollback");
        }
        base_error_set(rc, "%s", saved);
    }
    pthread_mutex_unlock(&s->writer_mutex);
    return rc;
}

/* Appends a change; its sequence number goes to *seq. Writer held. */
static int change_add(struct sqlite_store *s, enum gal_change_kind kind, int64_t collection_id,
                      int64_t subject_rowid, const char *subject_id, int64_t face_id, uint64_t *seq)
{
    struct conn *w = &s->writer;
    sqlite3_stmt *st = stmt(w, S_CHANGE_ADD);
    if (!st) return BASE_ERR_BACKEND;
    sqlite3_bind_int(st, 1, (int)kind);
    sqlite3_bind_int64(st, 2, collection_id);
    if (subject_rowid) sqlite3_bind_int64(st, 3, subject_rowid);
    if (subject_id) sqlite3_bind_text(st, 4, subject_id, -1, SQLITE_STATIC);
    if (face_id) sqlite3_bind_int64(st, 5, face_id);
    sqlite3_bind_int64(st, 6, gal_now_ms());
    int rc = run(w, st, "append to the change log");
    if (rc == 0) *seq = (uint64_t)sqlite3_last_insert_rowid(w->db);
    return rc;
}

/* ---- open, migrate, close ------------------------------------------------------------- */

static int pragma_int(struct conn *c, const char *sql, int64_t *value)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return sql_error(c->db, rc, sql);
    rc = run_int(c, st, sql, value);
    sqlite3_finalize(st);
    return rc;
}

/* Runs constant SQL (pragmas, schema): no value ever comes from input. */
static int exec_const(struct conn *c, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
    if (rc == SQLITE_OK) return 0;
    int err = sql_error(c->db, rc, sql);
    sqlite3_free(msg);
    return err;
}

/* Whether additions[step]'s tables (columns) are all there; on any connection. */
static int addition_present(struct conn *c, int step, int *present)
{
    int64_t v = 0;
    int rc = pragma_int(c, additions[step].present, &v);
    *present = v != 0;
    return rc;
}

static int migrate(struct sqlite_store *s)
{
    struct conn *w = &s->writer;
    int64_t version = 0, app = 0;
    int rc = pragma_int(w, "PRAGMA user_version", &version);
    if (!rc) rc = pragma_int(w, "PRAGMA application_id", &app);
    if (rc) return rc;
    if (app != 0 && app != APPLICATION_ID)
        return base_error_set(BASE_ERR_FORMAT,
                              "%s is a SQLite file of another application (id %lld)", s->path,
                              (long long)app);
    if (version > SCHEMA_VERSION)
        return base_error_set(BASE_ERR_UNSUPPORTED,
                              "%s: gallery schema version %lld is newer than this build's (%d)",
                              s->path, (long long)version, SCHEMA_VERSION);
    if (version < SCHEMA_VERSION && s->options.read_only)
        return base_error_set(BASE_ERR_IO,
                              "%s: schema version %lld needs a migration to %d, "
                              "but the store is open read-only",
                              s->path, (long long)version, SCHEMA_VERSION);
    /* Read-only: additive steps missing stay missing (the check-in calls know, see there). */
    if (s->options.read_only) return 0;
    int todo = version != SCHEMA_VERSION;
    for (int a = 0; a < ADDITIONS && !todo; a++) {
        int present = 0;
        if ((rc = addition_present(w, a, &present))) return rc;
        todo = !present;
    }
    if (!todo) return 0; /* the usual open: no write lock taken */
    if ((rc = exec_const(w, "BEGIN IMMEDIATE"))) return rc;
    /* Another process may have migrated between our read and the lock: read again. */
    if ((rc = pragma_int(w, "PRAGMA user_version", &version))) goto fail;
    if (version > SCHEMA_VERSION) {
        rc = base_error_set(BASE_ERR_UNSUPPORTED,
                            "%s: gallery schema version %lld is newer than this build's (%d)",
                            s->path, (long long)version, SCHEMA_VERSION);
        goto fail;
    }
    char sql[64];
    for (int64_t v = version; v < SCHEMA_VERSION; v++) {
        if ((rc = exec_const(w, migrations[v]))) goto fail;
        snprintf(sql, sizeof sql, "PRAGMA user_version = %lld", (long long)(v + 1));
        if ((rc = exec_const(w, sql))) goto fail;
        LOG_INFO("gallery store %s: schema migrated to version %lld", s->path, (long long)(v + 1));
    }
    /* Each step only when missing, as read again under the lock (another process may have
     * made it meanwhile): a step need not be idempotent (ALTER TABLE ... ADD COLUMN is not),
     * and the PostgreSQL store does the same. */
    for (int a = 0; a < ADDITIONS; a++) {
        int present = 0;
        if ((rc = addition_present(w, a, &present))) goto fail;
        if (present) continue;
        if ((rc = exec_const(w, additions[a].sql))) goto fail;
        LOG_INFO("gallery store %s: schema extended with %s (version stays %d)", s->path,
                 additions[a].name, SCHEMA_VERSION);
    }
    snprintf(sql, sizeof sql, "PRAGMA application_id = %d", APPLICATION_ID);
    if ((rc = exec_const(w, sql))) goto fail;
    return exec_const(w, "COMMIT");
fail:
    exec_const(w, "ROLLBACK");
    return rc;
}

static void sq_close(struct gal_store *store)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
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
    free(s->path);
    free(s);
}

static const struct gal_store_ops sqlite_ops;
static int sq_purge(struct gal_store *store);

int gal_store_sqlite_open(const char *path, const struct gal_options *options,
                          struct gal_store **out)
{
    *out = NULL;
    if (!path || !*path) return base_error_set(BASE_ERR_INVALID, "gallery store path is empty");
    struct sqlite_store *s = calloc(1, sizeof *s);
    if (!s) return base_error_set(BASE_ERR_NOMEM, "cannot allocate a store");
    s->base.ops = &sqlite_ops;
    if (options) s->options = *options;
    s->options.kernels = NULL; /* not ours, and the caller's string may not outlive us */
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&s->writer_mutex, &attr);
    pthread_mutexattr_destroy(&attr);
    pthread_mutex_init(&s->pool_mutex, NULL);
    s->path = strdup(path);
    if (!s->path) {
        sq_close(&s->base);
        return base_error_set(BASE_ERR_NOMEM, "cannot allocate a store");
    }

    int flags =
        s->options.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    int rc = conn_open(&s->writer, path, flags, s->options.busy_timeout_ms);
    if (rc) goto fail;
    struct conn *w = &s->writer;
    if (!s->options.read_only) {
        /* WAL: readers never block the writer nor the writer them; one file plus its WAL. */
        sqlite3_stmt *st = NULL;
        int src = sqlite3_prepare_v2(w->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
        if (src != SQLITE_OK) {
            rc = sql_error(w->db, src, path);
            goto fail;
        }
        src = sqlite3_step(st);
        const unsigned char *mode = src == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
        int wal = mode && strcmp((const char *)mode, "wal") == 0;
        if (src != SQLITE_ROW) rc = sql_error(w->db, src, path);
        sqlite3_finalize(st);
        if (rc) goto fail;
        if (!wal) {
            rc = base_error_set(BASE_ERR_BACKEND, "%s: cannot switch the store to WAL mode", path);
            goto fail;
        }
    }
    if (!s->options.read_only) {
        /*
         * The -wal and -shm files stay when the last connection closes (the WAL emptied to 0
         * bytes once checkpointed, so nothing stale is left in it to replay onto a restored
         * copy of vultus.db). Opening a WAL database needs its 32 KiB -shm file: removed at
         * every clean stop, it had to be made again at the next start, which a disk that
         * filled up meanwhile refused ("disk I/O error"), so the service could not even start
         * to serve reads; kept, it is there.
         */
        int persist = 1;
        sqlite3_file_control(w->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
        rc = exec_const(w, "PRAGMA journal_size_limit = " JOURNAL_SIZE_LIMIT);
        if (rc) goto fail;
    }
    rc = exec_const(w, s->options.durability == GAL_DURABLE_PROCESS ? "PRAGMA synchronous = NORMAL"
                                                                    : "PRAGMA synchronous = FULL");
    if (!rc) rc = exec_const(w, "PRAGMA foreign_keys = ON");
    if (!rc && s->options.max_store_bytes) {
        int64_t page_size = 4096;
        rc = pragma_int(w, "PRAGMA page_size", &page_size);
        if (!rc) {
            char sql[80];
            uint64_t pages =
                s->options.max_store_bytes / (uint64_t)(page_size > 0 ? page_size : 4096);
            snprintf(sql, sizeof sql, "PRAGMA max_page_count = %llu",
                     (unsigned long long)(pages ? pages : 1));
            rc = exec_const(w, sql);
        }
    }
    if (!rc) rc = migrate(s);
    if (rc) goto fail;
    /* A collection whose deletion was cut short (a crash during its purge): finish it. Its
     * rows are invisible meanwhile, so a failure here (another process holding the lock)
     * fails nothing: the next delete or open tries again. */
    if (sq_purge(&s->base) != 0)
        LOG_WARN("gallery store %s: rows of a deleted collection not purged yet: %s", path,
                 base_error_message());
    *out = &s->base;
    return 0;
fail:
    sq_close(&s->base);
    return rc;
}

/*
 * Deletes the rows of hidden (deleted) collections, PURGE_CHUNK at a time, each chunk its own
 * transaction, pausing 1 ms between them so that other writers (enrolments of other
 * collections, other processes) get the writer. Nothing of a hidden collection is visible,
 * so a purge cut short (a crash) is only finished later: by the next open.
 */
static int sq_purge(struct gal_store *store)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    if (s->options.read_only) return 0;
    /* Mostly nothing to do (every open asks): a read, without taking the write lock. */
    int64_t any = 0;
    pthread_mutex_lock(&s->writer_mutex);
    int rc = run_int(&s->writer, stmt(&s->writer, S_HIDDEN_ANY), "find deleted collections", &any);
    pthread_mutex_unlock(&s->writer_mutex);
    if (rc || !any) return rc;
    const enum stmt_id steps[] = {S_PURGE_FACES, S_PURGE_SUBJECTS, S_PURGE_COLLECTIONS};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        for (;;) {
            if ((rc = writer_begin(s, 1))) return rc;
            struct conn *w = &s->writer;
            sqlite3_stmt *st = stmt(w, steps[i]);
            if (st && steps[i] != S_PURGE_COLLECTIONS) sqlite3_bind_int64(st, 1, PURGE_CHUNK);
            rc = run(w, st, "purge a deleted collection");
            int deleted = rc ? 0 : sqlite3_changes(w->db);
            if ((rc = writer_end(s, rc))) return rc;
            /* Let a waiting writer take the mutex: it is not fair, and unlocking then locking
             * again at once would keep it (and the enrolments behind it) out till the end. */
            nanosleep(&(struct timespec){0, 1000000}, NULL);
            if (steps[i] == S_PURGE_COLLECTIONS || deleted < PURGE_CHUNK) break;
        }
    }
    return 0;
}

static int sq_check(struct gal_store *store)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    pthread_mutex_lock(&s->writer_mutex);
    struct conn *w = &s->writer;
    int rc = 0;
    sqlite3_stmt *st = stmt(w, S_INTEGRITY);
    if (!st) {
        rc = BASE_ERR_BACKEND;
        goto done;
    }
    int src, rows = 0;
    char first[256] = "";
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (rows++ == 0) copy_text(first, sizeof first, st, 0);
    }
    if (src != SQLITE_DONE)
        rc = sql_error(w->db, src, "integrity check");
    else if (rows != 1 || strcmp(first, "ok") != 0)
        rc = base_error_set(BASE_ERR_FORMAT, "%s: integrity check failed: %s (%d problems)",
                            s->path, first, rows);
    finish(st);
    if (rc) goto done;
    st = stmt(w, S_FOREIGN_KEYS);
    if (!st) {
        rc = BASE_ERR_BACKEND;
        goto done;
    }
    src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        rc = base_error_set(BASE_ERR_FORMAT, "%s: foreign key check failed in table %s", s->path,
                            (const char *)sqlite3_column_text(st, 0));
    else if (src != SQLITE_DONE)
        rc = sql_error(w->db, src, "foreign key check");
    finish(st);
done:
    pthread_mutex_unlock(&s->writer_mutex);
    return rc;
}

/* ---- explicit transactions ------------------------------------------------------------ */

static int sq_begin(struct gal_store *store)
{
    return writer_begin((struct sqlite_store *)store, 1);
}

static int sq_commit(struct gal_store *store)
{
    return writer_end((struct sqlite_store *)store, 0);
}

static void sq_rollback(struct gal_store *store)
{
    writer_end((struct sqlite_store *)store, BASE_ERR_INVALID);
}

/* ---- collections ---------------------------------------------------------------------- */

static void read_collection(sqlite3_stmt *st, struct gal_store_collection *c)
{
    memset(c, 0, sizeof *c);
    c->id = sqlite3_column_int64(st, 0);
    copy_text(c->info.name, sizeof c->info.name, st, 1);
    copy_text(c->info.model_id, sizeof c->info.model_id, st, 2);
    c->info.dim = (uint32_t)sqlite3_column_int(st, 3);
    c->info.dtype = (enum gal_dtype)sqlite3_column_int(st, 4);
    c->info.threshold = (float)sqlite3_column_double(st, 5);
    c->info.created_ms = sqlite3_column_int64(st, 6);
}

static int counts(struct conn *c, int64_t id, uint64_t *subjects, uint64_t *faces)
{
    int64_t ns = 0, nf = 0;
    sqlite3_stmt *st = stmt(c, S_COUNT_SUBJECTS);
    if (st) sqlite3_bind_int64(st, 1, id);
    int rc = run_int(c, st, "count subjects", &ns);
    st = stmt(c, S_COUNT_FACES);
    if (!rc && st) sqlite3_bind_int64(st, 1, id);
    if (!rc) rc = run_int(c, st, "count faces", &nf);
    *subjects = (uint64_t)ns;
    *faces = (uint64_t)nf;
    return rc;
}

/* One collection by name (or id when name is NULL) on connection c. */
static int get_collection(struct conn *c, const char *name, int64_t id,
                          struct gal_store_collection *out)
{
    sqlite3_stmt *st = stmt(c, name ? S_COLL_BY_NAME : S_COLL_BY_ID);
    if (!st) return BASE_ERR_BACKEND;
    if (name)
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(st, 1, id);
    int src = sqlite3_step(st), rc = 0;
    if (src == SQLITE_ROW)
        read_collection(st, out);
    else if (src == SQLITE_DONE)
        rc = name ? base_error_set(BASE_ERR_NOT_FOUND, "collection \"%s\" does not exist", name)
                  : base_error_set(BASE_ERR_NOT_FOUND, "collection #%lld does not exist",
                                   (long long)id);
    else
        rc = sql_error(c->db, src, "read a collection");
    finish(st);
    return rc;
}

static int sq_collection_get(struct gal_store *store, const char *name, int64_t id,
                             struct gal_store_collection *out)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) return rc;
    rc = get_collection(c, name, id, out);
    if (!rc) rc = counts(c, out->id, &out->info.subject_count, &out->info.face_count);
    reader_put(s, c);
    return rc;
}

static int sq_collection_list(struct gal_store *store, struct gal_store_collection **list,
                              size_t *count)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    *list = NULL;
    *count = 0;
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) return rc;
    /* One read transaction: the list and its counts agree with each other. */
    if ((rc = run(c, stmt(c, S_BEGIN), "begin"))) goto done;
    sqlite3_stmt *st = stmt(c, S_COLL_LIST);
    if (!st) {
        rc = BASE_ERR_BACKEND;
        goto end;
    }
    size_t n = 0, cap = 0;
    struct gal_store_collection *items = NULL;
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            struct gal_store_collection *grown = realloc(items, cap * sizeof *items);
            if (!grown) {
                rc = base_error_set(BASE_ERR_NOMEM, "cannot list collections");
                break;
            }
            items = grown;
        }
        read_collection(st, &items[n++]);
    }
    if (!rc && src != SQLITE_DONE) rc = sql_error(c->db, src, "list collections");
    finish(st);
    for (size_t i = 0; !rc && i < n; i++)
        rc = counts(c, items[i].id, &items[i].info.subject_count, &items[i].info.face_count);
    if (rc) {
        free(items);
    } else {
        *list = items;
        *count = n;
    }
end:
    run(c, stmt(c, S_COMMIT), "end read");
done:
    reader_put(s, c);
    return rc;
}

static int sq_collection_create(struct gal_store *store, const struct gal_collection_info *info,
                                int64_t *id, uint64_t *seq)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    int rc = writer_begin(s, 1);
    if (rc) return rc;
    struct conn *w = &s->writer;
    struct gal_store_collection existing;
    rc = get_collection(w, info->name, 0, &existing);
    if (rc == 0) {
        rc = base_error_set(BASE_ERR_EXISTS, "collection \"%s\" already exists", info->name);
        goto end;
    }
    if (rc != BASE_ERR_NOT_FOUND) goto end;
    sqlite3_stmt *st = stmt(w, S_COLL_INSERT);
    if (!st) {
        rc = BASE_ERR_BACKEND;
        goto end;
    }
    sqlite3_bind_text(st, 1, info->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, info->model_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, (int)info->dim);
    sqlite3_bind_int(st, 4, (int)info->dtype);
    sqlite3_bind_double(st, 5, info->threshold);
    sqlite3_bind_int64(st, 6, info->created_ms ? info->created_ms : gal_now_ms());
    if ((rc = run(w, st, "create a collection"))) goto end;
    *id = sqlite3_last_insert_rowid(w->db);
    rc = change_add(s, GAL_CHANGE_COLLECTION_CREATE, *id, 0, NULL, 0, seq);
end:
    return writer_end(s, rc);
}

static int sq_collection_update(struct gal_store *store, int64_t id, float threshold,
                                enum gal_dtype dtype, uint64_t *seq)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    int rc = writer_begin(s, 1);
    if (rc) return rc;
    struct conn *w = &s->writer;
    sqlite3_stmt *st = stmt(w, S_COLL_UPDATE);
    if (!st) {
        rc = BASE_ERR_BACKEND;
        goto end;
    }
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_double(st, 2, threshold);
    sqlite3_bind_int(st, 3, (int)dtype);
    if ((rc = run(w, st, "update a collection"))) goto end;
    if (sqlite3_changes(w->db) == 0) {
        rc = base_error_set(BASE_ERR_NOT_FOUND, "collection #%lld does not exist", (long long)id);
        goto end;
    }
    rc = change_add(s, GAL_CHANGE_COLLECTION_UPDATE, id, 0, NULL, 0, seq);
end:
    return writer_end(s, rc);
}

static int sq_collection_delete(struct gal_store *store, int64_t id, uint64_t *seq)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    int rc = writer_begin(s, 1);
    if (rc) return rc;
    struct conn *w = &s->writer;
    /* The change first, while the collection's name can still be read for the log. Then the
     * collection is hidden, not deleted: its rows go in sq_purge's small transactions, so
     * that deleting 100k faces does not hold the one writer for seconds (1.8-8 s measured). */
    if ((rc = change_add(s, GAL_CHANGE_COLLECTION_DELETE, id, 0, NULL, 0, seq))) goto end;
    sqlite3_stmt *st = stmt(w, S_COLL_HIDE);
    if (!st) {
        rc = BASE_ERR_BACKEND;
        goto end;
    }
    sqlite3_bind_int64(st, 1, id);
    if ((rc = run(w, st, "delete a collection"))) goto end;
    if (sqlite3_changes(w->db) == 0)
        rc = base_error_set(BASE_ERR_NOT_FOUND, "collection #%lld does not exist", (long long)id);
end:
    return writer_end(s, rc);
}

/* ---- subjects ------------------------------------------------------------------------- */

/* The rowid of a subject, or BASE_ERR_NOT_FOUND. */
static int find_subject(struct conn *c, int64_t collection_id, const char *subject_id,
                        int64_t *rowid)
{
    sqlite3_stmt *st = stmt(c, S_SUBJ_FIND);
    if (!st) return BASE_ERR_BACKEND;
    sqlite3_bind_int64(st, 1, collection_id);
    sqlite3_bind_text(st, 2, subject_id, -1, SQLITE_STATIC);
    int rc = run_int(c, st, "find a subject", rowid);
    if (!rc && *rowid == 0)
        rc = base_error_set(BASE_ERR_NOT_FOUND, "subject \"%s\" does not exist", subject_id);
    return rc;
}

static int sq_subject_add(struct gal_store *store, int64_t collection_id, const char *subject_id,
                          const char *metadata, int64_t created_ms, uint64_t *seq)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    int rc = writer_begin(s, 1);
    if (rc) return rc;
    struct conn *w = &s->writer;
    int64_t rowid = 0;
    rc = find_subject(w, collection_id, subject_id, &rowid);
    if (rc == 0) {
        rc = base_error_set(BASE_ERR_EXISTS, "subject \"%s\" already exists", subject_id);
        goto end;
    }
    if (rc != BASE_ERR_NOT_FOUND) goto end;
    sqlite3_stmt *st = stmt(w, S_SUBJ_INSERT);
    if (!st) {
        rc = BASE_ERR_BACKEND;
        goto end;
    }
    sqlite3_bind_int64(st, 1, collection_id);
    sqlite3_bind_text(st, 2, subject_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, metadata, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, created_ms ? created_ms : gal_now_ms());
    if ((rc = run(w, st, "add a subject"))) goto end;
    rowid = sqlite3_last_insert_rowid(w->db);
    rc = change_add(s, GAL_CHANGE_SUBJECT_ADD, collection_id, rowid, subject_id, 0, seq);
end:
    return writer_end(s, rc);
}

static int sq_subject_set_metadata(struct gal_store *store, int64_t collection_id,
                                   const char *subject_id, const char *metadata, uint64_t *seq)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    int rc = writer_begin(s, 1);
    if (rc) return rc;
    struct conn *w = &s->writer;
    int64_t rowid = 0;
    if ((rc = find_subject(w, collection_id, subject_id, &rowid))) goto end;
    sqlite3_stmt *st = stmt(w, S_SUBJ_SET_META);
    if (!st) {
        rc = BASE_ERR_BACKEND;
        goto end;
    }
    sqlite3_bind_int64(st, 1, rowid);
    sqlite3_bind_text(st, 2, metadata, -1, SQLITE_STATIC);
    if ((rc = run(w, st, "update a subject"))) goto end;
    rc = change_add(s, GAL_CHANGE_SUBJECT_UPDATE, collection_id, rowid, subject_id, 0, seq);
end:
    return writer_end(s, rc);
}

static int sq_subject_delete(struct gal_store *store, int64_t collection_id, const char *subject_id,
                             int64_t *subject_rowid, uint64_t *seq)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    int rc = writer_begin(s, 1);
    if (rc) return rc;
    struct conn *w = &s->writer;
    if ((rc = find_subject(w, collection_id, subject_id, subject_rowid))) goto end;
    sqlite3_stmt *st = stmt(w, S_SUBJ_DELETE);
    if (!st) {
        rc = BASE_ERR_BACKEND;
        goto end;
    }
    sqlite3_bind_int64(st, 1, *subject_rowid);
    if ((rc = run(w, st, "delete a subject"))) goto end; /* faces and thumbnails cascade */
    rc =
        change_add(s, GAL_CHANGE_SUBJECT_DELETE, collection_id, *subject_rowid, subject_id, 0, seq);
end:
    return writer_end(s, rc);
}

static void read_subject(sqlite3_stmt *st, struct gal_subject_info *info)
{
    memset(info, 0, sizeof *info);
    copy_text(info->id, sizeof info->id, st, 0);
    info->metadata = dup_text(st, 1);
    info->created_ms = sqlite3_column_int64(st, 2);
    info->face_count = (uint64_t)sqlite3_column_int64(st, 3);
}

static int sq_subject_get(struct gal_store *store, int64_t collection_id, const char *subject_id,
                          struct gal_subject_info *info)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) return rc;
    sqlite3_stmt *st = stmt(c, S_SUBJ_GET);
    if (!st) {
        rc = BASE_ERR_BACKEND;
        goto done;
    }
    sqlite3_bind_int64(st, 1, collection_id);
    sqlite3_bind_text(st, 2, subject_id, -1, SQLITE_STATIC);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        read_subject(st, info);
        if (!info->metadata) rc = base_error_set(BASE_ERR_NOMEM, "cannot read a subject");
    } else if (src == SQLITE_DONE) {
        rc = base_error_set(BASE_ERR_NOT_FOUND, "subject \"%s\" does not exist", subject_id);
    } else {
        rc = sql_error(c->db, src, "read a subject");
    }
    finish(st);
done:
    reader_put(s, c);
    return rc;
}

static int sq_subject_list(struct gal_store *store, int64_t collection_id, const char *after,
                           size_t limit, struct gal_subject_info **list, size_t *count)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    *list = NULL;
    *count = 0;
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) return rc;
    sqlite3_stmt *st = stmt(c, S_SUBJ_LIST);
    if (!st) {
        rc = BASE_ERR_BACKEND;
        goto done;
    }
    sqlite3_bind_int64(st, 1, collection_id);
    sqlite3_bind_text(st, 2, after ? after : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (int64_t)limit);
    struct gal_subject_info *items = calloc(limit ? limit : 1, sizeof *items);
    if (!items) {
        finish(st);
        rc = base_error_set(BASE_ERR_NOMEM, "cannot list %zu subjects", limit);
        goto done;
    }
    size_t n = 0;
    int src = SQLITE_DONE;
    while (n < limit && (src = sqlite3_step(st)) == SQLITE_ROW) {
        read_subject(st, &items[n]);
        if (!items[n++].metadata) {
            rc = base_error_set(BASE_ERR_NOMEM, "cannot list subjects");
            break;
        }
    }
    if (!rc && n < limit && src != SQLITE_DONE) rc = sql_error(c->db, src, "list subjects");
    finish(st);
    if (rc) {
        gal_subject_list_free(items, n);
    } else {
        *list = items;
        *count = n;
    }
done:
    reader_put(s, c);
    return rc;
}

/* ---- faces ---------------------------------------------------------------------------- */

static int sq_faces_add(struct gal_store *store, int64_t collection_id,
                        const struct gal_face_input *faces, const int64_t *created_ms, size_t count,
                        int64_t *face_ids, int64_t *subject_rowids, uint64_t *first_seq)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    int rc = writer_begin(s, 1);
    if (rc) return rc;
    struct conn *w = &s->writer;
    const char *last_subject = NULL;
    int64_t subject_rowid = 0, now = gal_now_ms();
    for (size_t i = 0; i < count && !rc; i++) {
        const struct gal_face_input *f = &faces[i];
        if (!last_subject || strcmp(last_subject, f->subject_id) != 0) {
            if ((rc = find_subject(w, collection_id, f->subject_id, &subject_rowid))) break;
            last_subject = f->subject_id;
        }
        sqlite3_stmt *st = stmt(w, S_FACE_INSERT);
        if (!st) {
            rc = BASE_ERR_BACKEND;
            break;
        }
        sqlite3_bind_int64(st, 1, collection_id);
        sqlite3_bind_int64(st, 2, subject_rowid);
        sqlite3_bind_blob(st, 3, f->embedding, (int)(f->dim * sizeof(float)), SQLITE_STATIC);
        sqlite3_bind_text(st, 4, f->image_hash ? f->image_hash : "", -1, SQLITE_STATIC);
        for (int b = 0; b < 4; b++)
            sqlite3_bind_double(st, 5 + b, f->box[b]);
        sqlite3_bind_double(st, 9, f->quality);
        sqlite3_bind_int64(st, 10, created_ms && created_ms[i] ? created_ms[i] : now);
        if ((rc = run(w, st, "add a face"))) break;
        int64_t face_id = sqlite3_last_insert_rowid(w->db);
        if (f->thumbnail && f->thumbnail_len) {
            st = stmt(w, S_THUMB_INSERT);
            if (!st) {
                rc = BASE_ERR_BACKEND;
                break;
            }
            sqlite3_bind_int64(st, 1, face_id);
            sqlite3_bind_blob(st, 2, f->thumbnail, (int)f->thumbnail_len, SQLITE_STATIC);
            if ((rc = run(w, st, "add a thumbnail"))) break;
        }
        uint64_t seq = 0;
        rc = change_add(s, GAL_CHANGE_FACE_ADD, collection_id, subject_rowid, f->subject_id,
                        face_id, &seq);
        if (i == 0) *first_seq = seq;
        face_ids[i] = face_id;
        subject_rowids[i] = subject_rowid;
    }
    return writer_end(s, rc);
}

static int sq_face_delete(struct gal_store *store, int64_t collection_id, int64_t face_id,
                          uint64_t *seq)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    int rc = writer_begin(s, 1);
    if (rc) return rc;
    struct conn *w = &s->writer;
    int64_t subject_rowid = 0;
    sqlite3_stmt *st = stmt(w, S_FACE_FIND);
    if (!st) {
        rc = BASE_ERR_BACKEND;
        goto end;
    }
    sqlite3_bind_int64(st, 1, face_id);
    sqlite3_bind_int64(st, 2, collection_id);
    if ((rc = run_int(w, st, "find a face", &subject_rowid))) goto end;
    if (subject_rowid == 0) {
        rc = base_error_set(BASE_ERR_NOT_FOUND, "face %lld does not exist", (long long)face_id);
        goto end;
    }
    st = stmt(w, S_FACE_DELETE);
    if (!st) {
        rc = BASE_ERR_BACKEND;
        goto end;
    }
    sqlite3_bind_int64(st, 1, face_id);
    if ((rc = run(w, st, "delete a face"))) goto end;
    rc = change_add(s, GAL_CHANGE_FACE_DELETE, collection_id, subject_rowid, NULL, face_id, seq);
end:
    return writer_end(s, rc);
}

/* Reads an embedding column, checking its size. */
static int read_embedding(sqlite3_stmt *st, int col, int64_t face_id, uint32_t dim, float *out)
{
    const void *blob = sqlite3_column_blob(st, col);
    int bytes = sqlite3_column_bytes(st, col);
    if (!blob || (size_t)bytes != dim * sizeof(float))
        return base_error_set(BASE_ERR_FORMAT, "face %lld: embedding of %d bytes, expected %zu",
                              (long long)face_id, bytes, dim * sizeof(float));
    memcpy(out, blob, (size_t)bytes);
    return 0;
}

/* Fills a face record from a row of FACE_COLUMNS; `dim` from the collection. */
static int read_face(sqlite3_stmt *st, uint32_t dim, struct gal_face_record *r, int copy_blobs)
{
    memset(r, 0, sizeof *r);
    r->face_id = sqlite3_column_int64(st, 0);
    copy_text(r->subject_id, sizeof r->subject_id, st, 1);
    copy_text(r->image_hash, sizeof r->image_hash, st, 2);
    for (int b = 0; b < 4; b++)
        r->box[b] = (float)sqlite3_column_double(st, 3 + b);
    r->quality = (float)sqlite3_column_double(st, 7);
    r->created_ms = sqlite3_column_int64(st, 8);
    r->dim = dim;
    int bytes = sqlite3_column_bytes(st, 9);
    if ((size_t)bytes != dim * sizeof(float))
        return base_error_set(BASE_ERR_FORMAT, "face %lld: embedding of %d bytes, expected %zu",
                              (long long)r->face_id, bytes, dim * sizeof(float));
    const void *thumb = sqlite3_column_blob(st, 10);
    r->thumbnail_len = thumb ? (size_t)sqlite3_column_bytes(st, 10) : 0;
    if (!copy_blobs) {
        /* Views into the statement's row, valid until the next step. */
        r->embedding = (float *)sqlite3_column_blob(st, 9);
        r->thumbnail = (uint8_t *)thumb;
        return 0;
    }
    r->embedding = malloc((size_t)bytes);
    if (r->thumbnail_len) r->thumbnail = malloc(r->thumbnail_len);
    if (!r->embedding || (r->thumbnail_len && !r->thumbnail)) {
        gal_face_record_deinit(r);
        return base_error_set(BASE_ERR_NOMEM, "cannot read a face");
    }
    memcpy(r->embedding, sqlite3_column_blob(st, 9), (size_t)bytes);
    if (r->thumbnail_len) memcpy(r->thumbnail, thumb, r->thumbnail_len);
    return 0;
}

static int sq_face_get(struct gal_store *store, int64_t collection_id, int64_t face_id,
                       struct gal_face_record *record)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    memset(record, 0, sizeof *record);
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) return rc;
    struct gal_store_collection coll;
    if ((rc = get_collection(c, NULL, collection_id, &coll))) goto done;
    sqlite3_stmt *st = stmt(c, S_FACE_GET);
    if (!st) {
        rc = BASE_ERR_BACKEND;
        goto done;
    }
    sqlite3_bind_int64(st, 1, face_id);
    sqlite3_bind_int64(st, 2, collection_id);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        rc = read_face(st, coll.info.dim, record, 1);
    else if (src == SQLITE_DONE)
        rc = base_error_set(BASE_ERR_NOT_FOUND, "face %lld does not exist in collection \"%s\"",
                            (long long)face_id, coll.info.name);
    else
        rc = sql_error(c->db, src, "read a face");
    finish(st);
done:
    reader_put(s, c);
    return rc;
}

/* Steps `st` to the end, collecting column 0 of every row into a new array (*ids, *n);
 * finishes the statement. On error *ids is NULL. */
static int collect_ids(sqlite3 *db, sqlite3_stmt *st, const char *what, int64_t **ids, size_t *n)
{
    size_t count = 0, cap = 0;
    int64_t *v = NULL;
    int rc = 0, src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (count == cap) {
            cap = cap ? cap * 2 : 16;
            int64_t *grown = realloc(v, cap * sizeof *v);
            if (!grown) {
                rc = base_error_set(BASE_ERR_NOMEM, "cannot %s", what);
                break;
            }
            v = grown;
        }
        v[count++] = sqlite3_column_int64(st, 0);
    }
    if (!rc && src != SQLITE_DONE) rc = sql_error(db, src, what);
    finish(st);
    if (rc) {
        free(v);
        v = NULL;
        count = 0;
    }
    *ids = v;
    *n = count;
    return rc;
}

static int sq_face_list(struct gal_store *store, int64_t collection_id, const char *subject_id,
                        int64_t **face_ids, size_t *count)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    *face_ids = NULL;
    *count = 0;
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) return rc;
    int64_t rowid = 0;
    if ((rc = find_subject(c, collection_id, subject_id, &rowid))) goto done;
    sqlite3_stmt *st = stmt(c, S_FACE_LIST);
    if (!st) {
        rc = BASE_ERR_BACKEND;
        goto done;
    }
    sqlite3_bind_int64(st, 1, rowid);
    rc = collect_ids(c->db, st, "list faces", face_ids, count);
done:
    reader_put(s, c);
    return rc;
}

static int sq_faces_lookup(struct gal_store *store, int64_t collection_id, const int64_t *face_ids,
                           size_t count, uint32_t dim, float *embeddings,
                           struct gal_store_face_ref *refs)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) return rc;
    /* One read transaction for all lookups: one snapshot, one lock acquisition. */
    if ((rc = run(c, stmt(c, S_BEGIN), "begin"))) goto done;
    sqlite3_stmt *st = stmt(c, embeddings ? S_FACE_REF_EMBEDDING : S_FACE_REF);
    if (!st) {
        rc = BASE_ERR_BACKEND;
        goto end;
    }
    for (size_t i = 0; i < count && !rc; i++) {
        memset(&refs[i], 0, sizeof refs[i]);
        sqlite3_bind_int64(st, 1, face_ids[i]);
        sqlite3_bind_int64(st, 2, collection_id);
        int src = sqlite3_step(st);
        if (src == SQLITE_ROW) {
            refs[i].found = 1;
            refs[i].subject_rowid = sqlite3_column_int64(st, 0);
            copy_text(refs[i].subject_id, sizeof refs[i].subject_id, st, 1);
            if (embeddings) rc = read_embedding(st, 2, face_ids[i], dim, embeddings + i * dim);
        } else if (src != SQLITE_DONE) {
            rc = sql_error(c->db, src, "look up a face");
        }
        sqlite3_reset(st);
    }
    finish(st);
end:
    run(c, stmt(c, S_COMMIT), "end read");
done:
    reader_put(s, c);
    return rc;
}

static int sq_subjects_faces(struct gal_store *store, int64_t collection_id,
                             const int64_t *subject_rowids, size_t count, size_t max_per_subject,
                             uint32_t dim, int64_t **face_ids, float **embeddings, size_t *starts)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    *face_ids = NULL;
    *embeddings = NULL;
    size_t n = 0, cap = 0;
    int64_t *ids = NULL;
    float *vectors = NULL;
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) return rc;
    /* One read transaction for all subjects: one snapshot, one lock acquisition. */
    if ((rc = run(c, stmt(c, S_BEGIN), "begin"))) goto done;
    sqlite3_stmt *st = stmt(c, S_SUBJECT_FACES);
    if (!st) {
        rc = BASE_ERR_BACKEND;
        goto end;
    }
    starts[0] = 0;
    for (size_t i = 0; i < count && !rc; i++) {
        sqlite3_bind_int64(st, 1, subject_rowids[i]);
        sqlite3_bind_int64(st, 2, collection_id);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)max_per_subject);
        int src = SQLITE_DONE;
        while (!rc && (src = sqlite3_step(st)) == SQLITE_ROW) {
            if (n == cap) {
                size_t more = cap ? 2 * cap : 64;
                int64_t *grown_ids = realloc(ids, more * sizeof *ids);
                if (grown_ids) ids = grown_ids;
                float *grown = realloc(vectors, more * dim * sizeof *vectors);
                if (grown) vectors = grown;
                if (!grown_ids || !grown) {
                    rc = base_error_set(BASE_ERR_NOMEM, "cannot read %zu faces", more);
                    break;
                }
                cap = more;
            }
            ids[n] = sqlite3_column_int64(st, 0);
            rc = read_embedding(st, 1, ids[n], dim, vectors + n * dim);
            n++;
        }
        if (!rc && src != SQLITE_DONE) rc = sql_error(c->db, src, "read a subject's faces");
        sqlite3_reset(st);
        starts[i + 1] = n;
    }
    finish(st);
end:
    run(c, stmt(c, S_COMMIT), "end read");
done:
    reader_put(s, c);
    if (rc) {
        free(ids);
        free(vectors);
        return rc;
    }
    *face_ids = ids;
    *embeddings = vectors;
    return 0;
}

/* ---- loading and the change log -------------------------------------------------------- */

static int sq_load(struct gal_store *store, int64_t only_collection,
                   const struct gal_store_loader *loader, uint64_t *seq)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    struct conn *w = &s->writer;
    int rc = writer_begin(s, 0); /* a read transaction: one snapshot for everything */
    if (rc) return rc;
    int64_t last = 0;
    int64_t *ids = NULL;
    size_t n = 0;
    float *embedding = NULL;
    if ((rc = run_int(w, stmt(w, S_LAST_SEQ), "read the change log", &last))) goto end;
    *seq = (uint64_t)last;
    if (only_collection) {
        ids = malloc(sizeof *ids);
        if (!ids) {
            rc = base_error_set(BASE_ERR_NOMEM, "cannot load collections");
            goto end;
        }
        ids[n++] = only_collection;
    } else {
        sqlite3_stmt *st = stmt(w, S_COLL_IDS);
        if (!st) {
            rc = BASE_ERR_BACKEND;
            goto end;
        }
        if ((rc = collect_ids(w->db, st, "list collections", &ids, &n))) goto end;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        struct gal_store_collection coll;
        uint64_t subjects = 0, faces = 0;
        if ((rc = get_collection(w, NULL, ids[i], &coll))) break;
        if ((rc = counts(w, coll.id, &subjects, &faces))) break;
        coll.info.subject_count = subjects;
        coll.info.face_count = faces;
        if ((rc = loader->collection(loader->ctx, &coll, faces))) break;
        free(embedding);
        embedding = malloc(coll.info.dim * sizeof *embedding);
        if (!embedding) {
            rc = base_error_set(BASE_ERR_NOMEM, "cannot load faces");
            break;
        }
        sqlite3_stmt *st = stmt(w, S_FACES_LOAD);
        if (!st) {
            rc = BASE_ERR_BACKEND;
            break;
        }
        sqlite3_bind_int64(st, 1, coll.id);
        int src;
        while ((src = sqlite3_step(st)) == SQLITE_ROW) {
            int64_t face_id = sqlite3_column_int64(st, 0);
            if ((rc = read_embedding(st, 2, face_id, coll.info.dim, embedding))) break;
            if ((rc = loader->face(loader->ctx, face_id, sqlite3_column_int64(st, 1), embedding)))
                break;
        }
        if (!rc && src != SQLITE_DONE) rc = sql_error(w->db, src, "load faces");
        finish(st);
    }
end:
    free(ids);
    free(embedding);
    return writer_end(s, rc);
}

static int sq_changes(struct gal_store *store, uint64_t after, size_t limit,
                      struct gal_change *changes, size_t *count)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    *count = 0;
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) return rc;
    sqlite3_stmt *st = stmt(c, S_CHANGES);
    if (!st) {
        rc = BASE_ERR_BACKEND;
        goto done;
    }
    sqlite3_bind_int64(st, 1, (int64_t)after);
    sqlite3_bind_int64(st, 2, (int64_t)limit);
    int src = SQLITE_DONE;
    size_t n = 0;
    while (n < limit && (src = sqlite3_step(st)) == SQLITE_ROW) {
        changes[n].seq = (uint64_t)sqlite3_column_int64(st, 0);
        changes[n].kind = (enum gal_change_kind)sqlite3_column_int(st, 1);
        changes[n].collection_id = sqlite3_column_int64(st, 2);
        changes[n].subject_rowid = sqlite3_column_int64(st, 3);
        changes[n].face_id = sqlite3_column_int64(st, 4);
        n++;
    }
    if (n < limit && src != SQLITE_DONE) rc = sql_error(c->db, src, "read the change log");
    finish(st);
    *count = n;
done:
    reader_put(s, c);
    return rc;
}

/* ---- export ---------------------------------------------------------------------------- */

static int sq_export_scan(struct gal_store *store, int64_t collection_id,
                          const struct gal_store_exporter *exporter)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) return rc;
    if ((rc = run(c, stmt(c, S_BEGIN), "begin"))) goto done;
    struct gal_store_collection coll;
    uint64_t subjects = 0, faces = 0;
    if ((rc = get_collection(c, NULL, collection_id, &coll))) goto end;
    if ((rc = counts(c, collection_id, &subjects, &faces))) goto end;
    coll.info.subject_count = subjects;
    coll.info.face_count = faces;
    if ((rc = exporter->begin(exporter->ctx, &coll.info, subjects, faces))) goto end;

    sqlite3_stmt *st = stmt(c, S_EXPORT_SUBJECTS);
    if (!st) {
        rc = BASE_ERR_BACKEND;
        goto end;
    }
    sqlite3_bind_int64(st, 1, collection_id);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        struct gal_subject_info info;
        read_subject(st, &info);
        rc = info.metadata ? exporter->subject(exporter->ctx, &info)
                           : base_error_set(BASE_ERR_NOMEM, "cannot export a subject");
        gal_subject_info_deinit(&info);
        if (rc) break;
    }
    if (!rc && src != SQLITE_DONE) rc = sql_error(c->db, src, "export subjects");
    finish(st);
    if (rc) goto end;

    st = stmt(c, S_EXPORT_FACES);
    if (!st) {
        rc = BASE_ERR_BACKEND;
        goto end;
    }
    sqlite3_bind_int64(st, 1, collection_id);
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        struct gal_face_record r;
        if ((rc = read_face(st, coll.info.dim, &r, 0))) break;
        if ((rc = exporter->face(exporter->ctx, &r))) break;
    }
    if (!rc && src != SQLITE_DONE) rc = sql_error(c->db, src, "export faces");
    finish(st);
end:
    run(c, stmt(c, S_COMMIT), "end read");
done:
    reader_put(s, c);
    return rc;
}

/* ---- check-ins ------------------------------------------------------------------------- */

static int read_event(struct conn *c, int64_t collection_id, struct gal_checkin_event *ev)
{
    memset(ev, 0, sizeof *ev);
    sqlite3_stmt *st = stmt(c, S_CK_EVENT_GET);
    if (!st) return BASE_ERR_BACKEND;
    sqlite3_bind_int64(st, 1, collection_id);
    int src = sqlite3_step(st), rc = 0;
    if (src == SQLITE_ROW) {
        ev->since_ms = sqlite3_column_int64(st, 0);
        ev->not_recognised = (uint64_t)sqlite3_column_int64(st, 1);
        ev->last_unknown_ms = sqlite3_column_int64(st, 2);
    } else if (src != SQLITE_DONE) {
        rc = sql_error(c->db, src, "read the check-in record");
    }
    finish(st);
    return rc;
}

static int count_checkins(struct conn *c, int64_t collection_id, uint64_t *n)
{
    int64_t v = 0;
    sqlite3_stmt *st = stmt(c, S_CK_COUNT);
    if (st) sqlite3_bind_int64(st, 1, collection_id);
    int rc = run_int(c, st, "count check-ins", &v);
    *n = (uint64_t)v;
    return rc;
}

/* A door as stored: NULL when none was said. */
static void bind_door(sqlite3_stmt *st, int index, const char *door)
{
    if (door[0])
        sqlite3_bind_text(st, index, door, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, index);
}

/* One recognised face: its subject's record read, the rule applied, the record written. */
static int checkin_subject(struct sqlite_store *s, int64_t collection_id,
                           const struct gal_checkin_face *face, int64_t now_ms,
                           int64_t unknown_before_ms, struct gal_checkin_event *ev,
                           struct gal_checkin *out)
{
    struct conn *w = &s->writer;
    int64_t rowid = 0;
    int rc = find_subject(w, collection_id, face->subject_id, &rowid);
    if (rc == BASE_ERR_NOT_FOUND) {
        /* Deleted since the search recognised it: as a face nobody is enrolled for. */
        const struct gal_checkin_face nobody = {NULL, face->similarity, NULL};
        out->status = gal_checkin_rule(out, 0, &nobody, now_ms, unknown_before_ms, ev);
        return 0;
    }
    if (rc) return rc;
    sqlite3_stmt *st = stmt(w, S_CK_GET);
    if (!st) return BASE_ERR_BACKEND;
    sqlite3_bind_int64(st, 1, rowid);
    int src = sqlite3_step(st), found = src == SQLITE_ROW;
    if (found) {
        out->first_seen_ms = sqlite3_column_int64(st, 0);
        out->last_arrival_ms = sqlite3_column_int64(st, 1);
        out->arrivals = (uint64_t)sqlite3_column_int64(st, 2);
        copy_text(out->first_door, sizeof out->first_door, st, 4);
        copy_text(out->last_door, sizeof out->last_door, st, 5);
    } else if (src != SQLITE_DONE) {
        rc = sql_error(w->db, src, "read a check-in");
    }
    finish(st);
    if (rc) return rc;
    out->status = gal_checkin_rule(out, found, face, now_ms, unknown_before_ms, ev);
    if (out->status == GAL_CHECKIN_CHECKED_IN) {
        if (!(st = stmt(w, S_CK_INSERT))) return BASE_ERR_BACKEND;
        sqlite3_bind_int64(st, 1, rowid);
        sqlite3_bind_int64(st, 2, collection_id);
        sqlite3_bind_int64(st, 3, out->first_seen_ms);
        sqlite3_bind_int64(st, 4, out->last_arrival_ms);
        sqlite3_bind_int64(st, 5, (int64_t)out->arrivals);
        sqlite3_bind_double(st, 6, face->similarity);
        bind_door(st, 7, out->first_door);
        bind_door(st, 8, out->last_door);
        return run(w, st, "record a check-in");
    }
    if (out->status == GAL_CHECKIN_ALREADY_CHECKED_IN) {
        if (!(st = stmt(w, S_CK_ARRIVE))) return BASE_ERR_BACKEND;
        sqlite3_bind_int64(st, 1, rowid);
        sqlite3_bind_int64(st, 2, out->last_arrival_ms);
        sqlite3_bind_int64(st, 3, (int64_t)out->arrivals);
        bind_door(st, 4, out->last_door);
        return run(w, st, "record an arrival");
    }
    return 0;
}

static int sq_checkin(struct gal_store *store, int64_t collection_id,
                      const struct gal_checkin_face *faces, size_t count, int64_t now_ms,
                      struct gal_checkin *out, struct gal_checkin_summary *summary)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    memset(summary, 0, sizeof *summary);
    /* BEGIN IMMEDIATE: the read and the update are one write transaction, so two doors (two
     * processes on the file) checking in one subject are serialised and one gets checked_in. */
    int rc = writer_begin(s, 1);
    if (rc) return rc;
    struct conn *w = &s->writer;
    struct gal_checkin_event ev, before;
    if ((rc = read_event(w, collection_id, &ev))) goto end;
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
        sqlite3_stmt *st = stmt(w, S_CK_EVENT_PUT);
        if (!st) {
            rc = BASE_ERR_BACKEND;
            goto end;
        }
        sqlite3_bind_int64(st, 1, collection_id);
        sqlite3_bind_int64(st, 2, ev.since_ms);
        sqlite3_bind_int64(st, 3, (int64_t)ev.not_recognised);
        sqlite3_bind_int64(st, 4, ev.last_unknown_ms);
        if ((rc = run(w, st, "record the check-in event"))) goto end;
    }
    summary->not_recognised = ev.not_recognised;
    summary->since_ms = ev.since_ms;
    rc = count_checkins(w, collection_id, &summary->checked_in);
end:
    return writer_end(s, rc);
}

static int sq_checkin_list(struct gal_store *store, int64_t collection_id, int64_t after_ms,
                           const char *after_id, size_t limit, struct gal_checkin **list,
                           size_t *count, struct gal_checkin_summary *summary)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    *list = NULL;
    *count = 0;
    memset(summary, 0, sizeof *summary);
    struct gal_checkin *items = calloc(limit ? limit : 1, sizeof *items);
    if (!items) return base_error_set(BASE_ERR_NOMEM, "cannot list %zu check-ins", limit);
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc) {
        free(items);
        return rc;
    }
    size_t n = 0;
    /* One read transaction: the page and the counts agree with each other. */
    if ((rc = run(c, stmt(c, S_BEGIN), "begin"))) goto done;
    enum stmt_id list_stmt = S_CK_LIST;
    if (s->options.read_only) {
        /* A store no writable open of a check-in-aware build has opened yet has no record:
         * an empty one, as for an event nobody has arrived at. (A writable open makes the
         * tables; the writes here are refused anyway, read-only.) Nor, from a build before
         * doors, door columns: the record without its doors. */
        int present = 0;
        if ((rc = addition_present(c, ADD_CHECKINS, &present)) || !present) goto end;
        if ((rc = addition_present(c, ADD_CHECKIN_DOORS, &present))) goto end;
        if (!present) list_stmt = S_CK_LIST_NO_DOORS;
    }
    struct gal_checkin_event ev;
    if ((rc = read_event(c, collection_id, &ev))) goto end;
    if ((rc = count_checkins(c, collection_id, &summary->checked_in))) goto end;
    summary->not_recognised = ev.not_recognised;
    summary->since_ms = ev.since_ms;
    sqlite3_stmt *st = stmt(c, list_stmt);
    if (!st) {
        rc = BASE_ERR_BACKEND;
        goto end;
    }
    sqlite3_bind_int64(st, 1, collection_id);
    if (after_id) sqlite3_bind_text(st, 2, after_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, after_ms);
    sqlite3_bind_int64(st, 4, (int64_t)limit);
    int src = SQLITE_DONE;
    while (n < limit && (src = sqlite3_step(st)) == SQLITE_ROW) {
        struct gal_checkin *it = &items[n++];
        copy_text(it->subject_id, sizeof it->subject_id, st, 0);
        it->metadata = dup_text(st, 1);
        it->first_seen_ms = sqlite3_column_int64(st, 2);
        it->last_arrival_ms = sqlite3_column_int64(st, 3);
        it->arrivals = (uint64_t)sqlite3_column_int64(st, 4);
        it->similarity = (float)sqlite3_column_double(st, 5);
        copy_text(it->first_door, sizeof it->first_door, st, 6);
        copy_text(it->last_door, sizeof it->last_door, st, 7);
        if (!it->metadata) {
            rc = base_error_set(BASE_ERR_NOMEM, "cannot list check-ins");
            break;
        }
    }
    if (!rc && n < limit && src != SQLITE_DONE) rc = sql_error(c->db, src, "list check-ins");
    finish(st);
end:
    run(c, stmt(c, S_COMMIT), "end read");
done:
    reader_put(s, c);
    if (rc) {
        gal_checkin_list_free(items, n);
        return rc;
    }
    *list = items;
    *count = n;
    return 0;
}

static int sq_checkin_clear(struct gal_store *store, int64_t collection_id, uint64_t *cleared)
{
    struct sqlite_store *s = (struct sqlite_store *)store;
    int rc = writer_begin(s, 1);
    if (rc) return rc;
    struct conn *w = &s->writer;
    sqlite3_stmt *st = stmt(w, S_CK_CLEAR);
    if (st) sqlite3_bind_int64(st, 1, collection_id);
    if ((rc = run(w, st, "clear the check-ins"))) goto end;
    *cleared = (uint64_t)sqlite3_changes(w->db);
    st = stmt(w, S_CK_EVENT_CLEAR);
    if (st) sqlite3_bind_int64(st, 1, collection_id);
    rc = run(w, st, "clear the check-in event");
end:
    return writer_end(s, rc);
}

static const struct gal_store_ops sqlite_ops = {
    .name = "sqlite",
    .close = sq_close,
    .check = sq_check,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .load = sq_load,
    .collection_create = sq_collection_create,
    .collection_update = sq_collection_update,
    .collection_delete = sq_collection_delete,
    .purge = sq_purge,
    .collection_get = sq_collection_get,
    .collection_list = sq_collection_list,
    .subject_add = sq_subject_add,
    .subject_set_metadata = sq_subject_set_metadata,
    .subject_delete = sq_subject_delete,
    .subject_get = sq_subject_get,
    .subject_list = sq_subject_list,
    .faces_add = sq_faces_add,
    .face_delete = sq_face_delete,
    .face_get = sq_face_get,
    .face_list = sq_face_list,
    .faces_lookup = sq_faces_lookup,
    .subjects_faces = sq_subjects_faces,
    .changes = sq_changes,
    .export_scan = sq_export_scan,
    .checkin = sq_checkin,
    .checkin_list = sq_checkin_list,
    .checkin_clear = sq_checkin_clear,
};
