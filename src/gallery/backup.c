/*
 * Backing up and restoring the SQLite store (gallery.h, "backup and restore"): a consistent
 * copy of a store that a running service keeps writing, the checks a copy must pass before it
 * replaces a store, and whether another process has a store open.
 *
 * Why not `cp vultus.db`: in WAL mode the latest commits live in vultus.db-wal until a
 * checkpoint moves them into vultus.db, so a file copy misses them (or catches a checkpoint
 * half-written). And a copy put back beside an old, non-empty vultus.db-wal gets that WAL
 * replayed onto it at the next open. Here the copy is read through SQLite inside one read
 * transaction (the snapshot of one commit, WAL included), and written in rollback-journal mode
 * (DELETE): one self-contained file, with no WAL of its own to go stale.
 */
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "gallery/gallery.h"

/* Pages copied per sqlite3_backup_step: 4 MiB of 4 KiB pages, so the copy's progress is seen
 * between steps without a step's overhead mattering. */
#define BACKUP_STEP_PAGES 1024

static int sql_fail(sqlite3 *db, int rc, const char *what, const char *path)
{
    int code = (rc & 0xff) == SQLITE_FULL ? BASE_ERR_FULL : BASE_ERR_IO;
    return base_error_set(code, "%s: %s: %s", path, what,
                          db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

static int exec_sql(sqlite3 *db, const char *sql, const char *path)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : sql_fail(db, rc, sql, path);
}

/* One integer from constant SQL (no value ever comes from input). */
static int query_int(sqlite3 *db, const char *sql, const char *path, int64_t *value)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return sql_fail(db, rc, sql, path);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *value = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : sql_fail(db, rc, sql, path);
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return base_error_set(BASE_ERR_IO, "%s: %s", path, strerror(errno));
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    if (rc != 0)
        return base_error_set(err == ENOSPC ? BASE_ERR_FULL : BASE_ERR_IO, "%s: fsync: %s", path,
                              strerror(err));
    return 0;
}

/*
 * The copy: sqlite3_backup_step in chunks of BACKUP_STEP_PAGES, all inside one read
 * transaction opened on the source first. Measured against VACUUM INTO (one read transaction
 * too) on a 100k-face store (487 MB with thumbnails, 2 shared cores), both while `vultus
 * serve` enrolled: back-to-back VACUUM INTO took 0.8-2.2 s each, the page copy 0.6-1.8 s
 * (copy_ms) - about the same - and neither ever blocks a writer (WAL: a reader never does).
 * The page copy is kept because it comes in chunks: each is flushed to disk before the next
 * (below), which cut the p99 of the server's store writes during back-to-back backups from
 * <= 250 ms (either way) to <= 25-100 ms (vultus_stage_duration_seconds{stage="gallery"},
 * <= 10 ms with no backup); VACUUM INTO is one
 * statement whose output SQLite does not even fsync. The read transaction matters: without
 * it, each step would read the newest snapshot, and a backup whose source another process
 * wrote between two steps starts over from page 1, which under continuous enrolment may never
 * finish. With it, every step reads the same snapshot (the WAL grows meanwhile: a checkpoint
 * cannot pass a reader, and catches up once it ends).
 */
int gal_backup_copy(const char *store_path, const char *out_path, uint64_t *bytes)
{
    sqlite3 *src = NULL, *dst = NULL;
    sqlite3_backup *b = NULL;
    int err = 0, rc;
    struct stat st;
    if (stat(store_path, &st) != 0)
        return base_error_set(BASE_ERR_NOT_FOUND, "no store at %s: %s", store_path,
                              strerror(errno));
    /* Read-only: a backup never creates, migrates or checkpoints the store it copies. */
    rc = sqlite3_open_v2(store_path, &src, SQLITE_OPEN_READONLY, NULL);
    if (rc != SQLITE_OK) {
        err = sql_fail(src, rc, "open", store_path);
        goto out;
    }
    sqlite3_busy_timeout(src, 10000);
    /* BEGIN is deferred: the SELECT takes the snapshot that every step then reads. */
    int64_t tables = 0;
    if ((err = exec_sql(src, "BEGIN", store_path))) goto out;
    if ((err = query_int(src, "SELECT COUNT(*) FROM sqlite_master", store_path, &tables))) goto out;
    /* O_EXCL semantics: the caller's temporary name is new; a file there is not ours. */
    int fd = open(out_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        err = base_error_set(errno == ENOSPC ? BASE_ERR_FULL : BASE_ERR_IO, "%s: %s", out_path,
                             strerror(errno));
        goto out;
    }
    rc = sqlite3_open_v2(out_path, &dst, SQLITE_OPEN_READWRITE, NULL);
    if (rc != SQLITE_OK) {
        err = sql_fail(dst, rc, "open", out_path);
        goto out;
    }
    b = sqlite3_backup_init(dst, "main", src, "main");
    if (!b) {
        err = sql_fail(dst, sqlite3_errcode(dst), "backup", out_path);
        goto out;
    }
    /* Each chunk is flushed before the next: left to the end, hundreds of MB of dirty pages
     * are written back at once and the server's own commits (an fsync of the WAL each) queue
     * behind them; the kernel also throttles every process that dirties pages (the server's
     * WAL writes included) once the dirty pages pass its limit. */
    do {
        rc = sqlite3_backup_step(b, BACKUP_STEP_PAGES);
        if (rc == SQLITE_OK && fdatasync(fd) != 0) {
            err = base_error_set(errno == ENOSPC ? BASE_ERR_FULL : BASE_ERR_IO, "%s: fsync: %s",
                                 out_path, strerror(errno));
            break;
        }
    } while (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED);
    close(fd);
    int frc = sqlite3_backup_finish(b);
    b = NULL;
    if (err) goto out;
    if (rc != SQLITE_DONE || frc != SQLITE_OK) {
        err = sql_fail(dst, rc != SQLITE_DONE ? rc : frc, "copy", out_path);
        goto out;
    }
    exec_sql(src, "COMMIT", store_path); /* ends the read: the service may checkpoint again */
    /* The pages carry the source's "WAL mode" header bytes; rollback mode makes the copy one
     * file that needs no -wal or -shm beside it, wherever it is copied to. */
    if ((err = exec_sql(dst, "PRAGMA journal_mode = DELETE", out_path))) goto out;
    rc = sqlite3_close(dst);
    dst = NULL;
    if (rc != SQLITE_OK) {
        err = sql_fail(NULL, rc, "close", out_path);
        goto out;
    }
    if ((err = fsync_path(out_path))) goto out;
    if (bytes) *bytes = stat(out_path, &st) == 0 ? (uint64_t)st.st_size : 0;
out:
    if (b) sqlite3_backup_finish(b);
    if (dst) sqlite3_close(dst);
    if (src) sqlite3_close(src); /* read-only: ends the read transaction, never checkpoints */
    return err;
}

/*
 * The checks and counts on a plain SQLite file. Opened read-only: the file is a backup in
 * rollback mode (gal_backup_copy) or one we just copied; nothing here writes to it.
 */
int gal_backup_inspect(const char *path, const char *extra_table, struct gal_backup_counts *counts)
{
    memset(counts, 0, sizeof *counts);
    sqlite3 *db = NULL;
    int err = 0;
    struct stat st;
    if (stat(path, &st) != 0)
        return base_error_set(BASE_ERR_NOT_FOUND, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return base_error_set(BASE_ERR_INVALID, "%s: not a file", path);
    int rc;
    /* A file in WAL mode (header bytes 18-19 = 2: a copy of a stopped store's vultus.db
     * rather than a backup) would need a -wal and -shm beside it even to be read: switched to
     * rollback mode first, which its caller's own copy may be. */
    unsigned char header[20] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? pread(fd, header, sizeof header, 0) : -1;
    if (fd >= 0) close(fd);
    if (got == (ssize_t)sizeof header && memcmp(header, "SQLite format 3", 16) == 0 &&
        header[18] == 2) {
        rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(db, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            err = base_error_set(BASE_ERR_FORMAT, "%s is not a sound SQLite database: %s", path,
                                 sqlite3_errmsg(db));
            goto out;
        }
        sqlite3_close(db);
        db = NULL;
    }
    rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
    if (rc != SQLITE_OK) {
        err = sql_fail(db, rc, "open", path);
        goto out;
    }
    int64_t version = 0, has_faces = 0;
    /* The first read parses the header: "file is not a database" for anything else. */
    rc = sqlite3_exec(db, "SELECT COUNT(*) FROM sqlite_master", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        err = base_error_set(BASE_ERR_FORMAT, "%s is not a sound SQLite database: %s", path,
                             sqlite3_errmsg(db));
        goto out;
    }
    if ((err = query_int(db, "PRAGMA user_version", path, &version))) goto out;
    if ((err = query_int(db,
                         "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                         "('collections', 'subjects', 'faces', 'thumbnails', 'changes')",
                         path, &has_faces)))
        goto out;
    if (version < 1 || has_faces != 5) {
        err = base_error_set(BASE_ERR_FORMAT,
                             "%s is a SQLite database but not a vultus store (no gallery schema)",
                             path);
        goto out;
    }
    /* Every page and index, not only the header: a truncated copy fails here. */
    sqlite3_stmt *ic = NULL;
    rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check(1)", -1, &ic, NULL);
    if (rc != SQLITE_OK) {
        err = base_error_set(BASE_ERR_FORMAT, "%s: integrity_check: %s", path, sqlite3_errmsg(db));
        goto out;
    }
    rc = sqlite3_step(ic);
    const unsigned char *verdict = rc == SQLITE_ROW ? sqlite3_column_text(ic, 0) : NULL;
    if (!verdict || strcmp((const char *)verdict, "ok") != 0) {
        /* Its report has several lines; the message is one. */
        char text[400];
        snprintf(text, sizeof text, "%s", verdict ? (const char *)verdict : sqlite3_errmsg(db));
        for (char *p = text; *p; p++)
            if (*p == '\n') *p = ' ';
        err = base_error_set(BASE_ERR_FORMAT, "%s: integrity_check failed: %s", path, text);
    }
    sqlite3_finalize(ic);
    if (err) goto out;
    if (extra_table) {
        /* The table's rows when it is there (another module's table in the same file). */
        sqlite3_stmt *q = NULL;
        int64_t exists = 0;
        rc = sqlite3_prepare_v2(db,
                                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' "
                                "AND name = ?1",
                                -1, &q, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_text(q, 1, extra_table, -1, SQLITE_STATIC);
            if (sqlite3_step(q) == SQLITE_ROW) exists = sqlite3_column_int64(q, 0);
        }
        sqlite3_finalize(q);
        if (exists) {
            char sql[200];
            int64_t rows = 0;
            snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM \"%s\"", extra_table);
            if (strchr(extra_table, '"') == NULL && (err = query_int(db, sql, path, &rows)) == 0)
                counts->extra_rows = (uint64_t)rows;
            if (err) goto out;
        }
    }
    counts->bytes = (uint64_t)st.st_size;
out:
    sqlite3_close(db);
    if (err) return err;
    /* Last, whether this build opens it as a store: it refuses a newer schema or another
     * application's file, with its own words. Read-only and store-only: nothing is written,
     * no face is loaded. The counts are the store's own, as `vultus gallery list` gives them
     * (a collection deleted but not yet purged is not counted). */
    struct gal *g = NULL;
    err = gal_open(path, &(struct gal_options){.read_only = 1, .store_only = 1}, &g);
    struct gal_collection_info *list = NULL;
    size_t count = 0;
    if (!err) err = gal_collection_list(g, &list, &count);
    if (!err) {
        counts->collections = count;
        for (size_t i = 0; i < count; i++) {
            counts->subjects += list[i].subject_count;
            counts->faces += list[i].face_count;
        }
    }
    free(list);
    gal_close(g);
    return err;
}

/*
 * Every connection to a WAL database holds a shared lock on the database file for as long as
 * it is open, idle or not (that is how SQLite keeps anyone from switching the journal mode
 * under it). A connection in exclusive locking mode asks for an exclusive lock on that file
 * when it first opens the WAL, which fails at once (busy timeout 0) while any other process
 * has the store open: a running `vultus serve`, `vultus keys`, a `sqlite3` shell. No change
 * is made: the connection only reads, and does not checkpoint when it closes
 * (SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE), so a store in use or not is left as it was.
 */
int gal_store_in_use(const char *path, int *in_use)
{
    *in_use = 0;
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc != SQLITE_OK) {
        int err = sql_fail(db, rc, "open", path);
        sqlite3_close(db);
        return err;
    }
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
    int persist = 1; /* and keeps the -wal file (see store_sqlite.c) */
    sqlite3_file_control(db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
    sqlite3_busy_timeout(db, 0);
    int err = exec_sql(db, "PRAGMA locking_mode = EXCLUSIVE", path);
    if (!err) {
        rc = sqlite3_exec(db, "BEGIN IMMEDIATE; SELECT COUNT(*) FROM sqlite_master; ROLLBACK", NULL,
                          NULL, NULL);
        if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
            *in_use = 1;
        else if (rc != SQLITE_OK)
            err = sql_fail(db, rc, "lock", path);
    }
    sqlite3_close(db);
    return err;
}
