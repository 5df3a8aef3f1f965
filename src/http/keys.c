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
 */
#include "http/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#define BUSY_TIMEOUT_MS 5000
#define IDEM_KEEP_MS (24 * 3600 * 1000LL)
#define IDEM_ABANDONED_MS (60 * 1000LL)

typedef struct key_entry {
    http_key_info info;
    uint8_t hash[32];
    http_bucket bucket;
} key_entry;

/* Two locks, so that checking a key on the event loop never waits for SQLite: db_lock guards
 * the connection (held by workers through whole idempotency transactions, which may wait for
 * the gallery's writer), keys_lock only the in-memory table. Order: db_lock, then keys_lock. */
struct http_keystore {
    pthread_mutex_t db_lock; /* guards db, data_version, last_purge_ms */
    sqlite3 *db;
    int64_t data_version;
    int64_t last_purge_ms;
    pthread_mutex_t keys_lock; /* guards keys, n_keys and their buckets */
    key_entry *keys;
    size_t n_keys;
};

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

static int db_error(sqlite3 *db, const char *what)
{
    return base_error_set(BASE_ERR_BACKEND, "api keys store: %s: %s", what, sqlite3_errmsg(db));
}

int http_scope_parse(const char *text, enum http_scope *scope)
{
    if (strcmp(text, "read") == 0)
        *scope = HTTP_SCOPE_READ;
    else if (strcmp(text, "write") == 0)
        *scope = HTTP_SCOPE_WRITE;
    else if (strcmp(text, "admin") == 0)
        *scope = HTTP_SCOPE_ADMIN;
    else
        return base_error_set(BASE_ERR_INVALID, "scope '%s': expected read, write or admin", text);
    return 0;
}

const char *http_scope_name(enum http_scope scope)
{
    switch (scope) {
    case HTTP_SCOPE_READ: return "read";
    case HTTP_SCOPE_WRITE: return "write";
    case HTTP_SCOPE_ADMIN: return "admin";
    default: return "none";
    }
}

int http_store_path(const char *data_dir, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/vultus.db", data_dir);
    if (n < 0 || (size_t)n >= cap)
        return base_error_set(BASE_ERR_LIMIT, "data folder path too long: %s", data_dir);
    return 0;
}

/* Replaces the in-memory table with the store's, keeping the buckets of keys still there. */
static int load_keys(http_keystore *ks)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ks->db,
                           "SELECT id, hash, scope, collection, name, created_ms FROM api_keys"
                           " ORDER BY created_ms, id",
                           -1, &st, NULL) != SQLITE_OK)
        return db_error(ks->db, "select keys");
    key_entry *keys = NULL;
    size_t n = 0, cap = 0;
    int rc, err = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            key_entry *grown = realloc(keys, cap * sizeof *keys);
            if (!grown) {
                err = base_error_set(BASE_ERR_NOMEM, "api keys: %zu entries", cap);
                break;
            }
            keys = grown;
        }
        key_entry *e = &keys[n];
        memset(e, 0, sizeof *e);
        const char *id = (const char *)sqlite3_column_text(st, 0);
        const void *hash = sqlite3_column_blob(st, 1);
        const char *scope = (const char *)sqlite3_column_text(st, 2);
        const char *collection = (const char *)sqlite3_column_text(st, 3);
        const char *name = (const char *)sqlite3_column_text(st, 4);
        enum http_scope sc;
        if (!id || !hash || sqlite3_column_bytes(st, 1) != 32 || !scope ||
            http_scope_parse(scope, &sc) != 0) {
            LOG_WARN("api keys: skipping a malformed row (id %s)", id ? id : "?");
            continue;
        }
        snprintf(e->info.id, sizeof e->info.id, "%s", id);
        e->info.scope = sc;
        snprintf(e->info.collection, sizeof e->info.collection, "%s", collection ? collection : "");
        snprintf(e->info.name, sizeof e->info.name, "%s", name ? name : "");
        e->info.created_ms = sqlite3_column_int64(st, 5);
        memcpy(e->hash, hash, 32);
        n++;
    }
    if (!err && rc != SQLITE_DONE) err = db_error(ks->db, "read keys");
    sqlite3_finalize(st);
    if (err) {
        free(keys);
        return err;
    }
    pthread_mutex_lock(&ks->keys_lock);
    for (size_t k = 0; k < n; k++)
        for (size_t i = 0; i < ks->n_keys; i++)
            if (strcmp(ks->keys[i].info.id, keys[k].info.id) == 0)
                keys[k].bucket = ks->keys[i].bucket;
    free(ks->keys);
    ks->keys = keys;
    ks->n_keys = n;
    pthread_mutex_unlock(&ks->keys_lock);
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
    pthread_mutex_init(&ks->keys_lock, NULL);
    int rc = sqlite3_open_v2(
        db_path, &ks->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rc = base_error_set(BASE_ERR_IO, "%s: %s", db_path,
                            ks->db ? sqlite3_errmsg(ks->db) : "cannot open");
        http_keystore_close(ks);
        return rc;
    }
    sqlite3_busy_timeout(ks->db, BUSY_TIMEOUT_MS);
    char *msg = NULL;
    if (sqlite3_exec(ks->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
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
    free(ks->keys);
    pthread_mutex_destroy(&ks->db_lock);
    pthread_mutex_destroy(&ks->keys_lock);
    free(ks);
}

int http_keystore_refresh(http_keystore *ks)
{
    pthread_mutex_lock(&ks->db_lock);
    int64_t v = 0;
    int rc = data_version(ks, &v);
    if (!rc && v != ks->data_version) {
        rc = load_keys(ks);
        if (!rc) ks->data_version = v;
    }
    pthread_mutex_unlock(&ks->db_lock);
    return rc;
}

size_t http_keystore_count(http_keystore *ks)
{
    pthread_mutex_lock(&ks->keys_lock);
    size_t n = ks->n_keys;
    pthread_mutex_unlock(&ks->keys_lock);
    return n;
}

int http_keystore_ping(http_keystore *ks)
{
    pthread_mutex_lock(&ks->db_lock);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(ks->db, "SELECT count(*) FROM api_keys", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    int err = rc == SQLITE_ROW ? 0 : db_error(ks->db, "ping");
    sqlite3_finalize(st);
    pthread_mutex_unlock(&ks->db_lock);
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

static int exec_bound(sqlite3 *db, const char *sql, const char *text, int64_t number)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return db_error(db, sql);
    if (text)
        sqlite3_bind_text(st, 1, text, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_int64(st, 1, number);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : db_error(db, sql);
}

int http_idem_begin(http_keystore *ks, const char *scope, const uint8_t fingerprint[32],
                    enum http_idem_state *state, int *status, char **body)
{
    *state = HTTP_IDEM_NEW;
    *status = 0;
    *body = NULL;
    int64_t now = unix_ms();
    pthread_mutex_lock(&ks->db_lock);
    sqlite3 *db = ks->db;
    sqlite3_stmt *st = NULL;
    int err = 0;
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
    goto out;
rollback:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    free(*body);
    *body = NULL;
out:
    pthread_mutex_unlock(&ks->db_lock);
    return err;
}

int http_idem_finish(http_keystore *ks, const char *scope, int status, const char *body)
{
    pthread_mutex_lock(&ks->db_lock);
    sqlite3_stmt *st = NULL;
    int err = 0;
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
    pthread_mutex_unlock(&ks->db_lock);
    return err;
}

void http_idem_release(http_keystore *ks, const char *scope)
{
    pthread_mutex_lock(&ks->db_lock);
    if (exec_bound(ks->db, "DELETE FROM idempotency_keys WHERE scope = ? AND status = 0", scope,
                   0) != 0)
        LOG_WARN("idempotency: %s", base_error_message());
    pthread_mutex_unlock(&ks->db_lock);
}

/* ---- the `vultus keys` side ------------------------------------------------------------- */

/* Opens the store of a data folder the way the server does: the gallery first (it creates
 * or migrates the file and refuses a foreign one), then our tables. */
static int open_for_cli(const char *data_dir, http_keystore **ks)
{
    char path[HTTP_PATH_MAX + 16];
    int rc = http_store_path(data_dir, path, sizeof path);
    if (rc) return rc;
    if (mkdir(data_dir, 0755) != 0 && errno != EEXIST)
        return base_error_set(BASE_ERR_IO, "%s: %s", data_dir, strerror(errno));
    struct gal *g = NULL;
    if ((rc = gal_open(path, NULL, &g))) return rc;
    gal_close(g);
    return http_keystore_open(path, ks);
}

int http_keys_create(const char *data_dir, enum http_scope scope, const char *collection,
                     const char *name, char key[HTTP_KEY_MAX], http_key_info *info)
{
    memset(info, 0, sizeof *info);
    key[0] = '\0';
    if (scope < HTTP_SCOPE_READ || scope > HTTP_SCOPE_ADMIN)
        return base_error_set(BASE_ERR_INVALID, "scope %d", (int)scope);
    if (collection && strlen(collection) >= sizeof info->collection)
        return base_error_set(BASE_ERR_INVALID, "collection name longer than %zu bytes",
                              sizeof info->collection - 1);
    if (name && strlen(name) >= sizeof info->name)
        return base_error_set(BASE_ERR_INVALID, "key name longer than %zu bytes",
                              sizeof info->name - 1);
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

int http_keys_revoke(const char *data_dir, const char *id)
{
    http_keystore *ks = NULL;
    int rc = open_for_cli(data_dir, &ks);
    if (rc) return rc;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ks->db, "DELETE FROM api_keys WHERE id = ?", -1, &st, NULL) !=
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
