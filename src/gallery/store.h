/*
 * The gallery store interface (private to src/gallery): the durable source of truth behind
 * a table of operations, so a PostgreSQL backend can sit beside the SQLite one without the
 * index or the callers changing.
 *
 * Contract of every backend:
 *   - Every operation is thread-safe. Writes may be serialised inside the backend; reads
 *     (lookups, lists, export scans) should run in parallel with each other and with writes.
 *   - Every write commits durably before it returns 0 (or is part of an explicit transaction
 *     opened with begin(), then it commits with commit()), and appends one row per change to
 *     the change log with a sequence number that increases monotonically and is never reused.
 *   - Face ids, subject rowids and collection ids are positive, increasing and never reused.
 *   - Embeddings are stored exactly as given (dim little-endian f32, already L2-normalised).
 *   - Errors are negative BASE_ERR_* codes described with base_error_set().
 */
#ifndef VULTUS_GALLERY_STORE_H
#define VULTUS_GALLERY_STORE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "gallery/gallery.h"

enum gal_change_kind {
    GAL_CHANGE_COLLECTION_CREATE = 1,
    GAL_CHANGE_COLLECTION_UPDATE = 2, /* threshold or storage type */
    GAL_CHANGE_COLLECTION_DELETE = 3,
    GAL_CHANGE_SUBJECT_ADD = 4,
    GAL_CHANGE_SUBJECT_UPDATE = 5, /* metadata */
    GAL_CHANGE_SUBJECT_DELETE = 6,
    GAL_CHANGE_FACE_ADD = 7,
    GAL_CHANGE_FACE_DELETE = 8,
};

struct gal_change {
    uint64_t seq;
    enum gal_change_kind kind;
    int64_t collection_id;
    int64_t subject_rowid; /* 0 when not about a subject or face */
    int64_t face_id;       /* 0 when not about a face */
};

/* A collection with its store id. */
struct gal_store_collection {
    int64_t id;
    struct gal_collection_info info;
};

/* Receives a consistent snapshot of collections and their faces (index building). */
struct gal_store_loader {
    void *ctx;
    /* Before a collection's faces; face_count lets the index reserve its rows. */
    int (*collection)(void *ctx, const struct gal_store_collection *collection,
                      uint64_t face_count);
    /* Faces in increasing id order; `embedding` is valid during the call only. */
    int (*face)(void *ctx, int64_t face_id, int64_t subject_rowid, const float *embedding);
};

/* Receives a collection for export, from one consistent snapshot. */
struct gal_store_exporter {
    void *ctx;
    int (*begin)(void *ctx, const struct gal_collection_info *info, uint64_t subject_count,
                 uint64_t face_count);
    /* Subjects in id order, then faces in face-id order (record fields valid during call). */
    int (*subject)(void *ctx, const struct gal_subject_info *subject);
    int (*face)(void *ctx, const struct gal_face_record *face);
};

/* The result of looking up one face for a search result. */
struct gal_store_face_ref {
    int found;
    int64_t subject_rowid;
    char subject_id[GAL_ID_MAX + 1];
};

struct gal_store;

struct gal_store_ops {
    const char *name;
    void (*close)(struct gal_store *store);
    int (*check)(struct gal_store *store);

    /* An explicit transaction around several writes (import). Writes made by other threads
     * wait until it ends. */
    int (*begin)(struct gal_store *store);
    int (*commit)(struct gal_store *store);
    void (*rollback)(struct gal_store *store);

    /* Loads every collection (only_collection 0) or one, and the last change's sequence
     * number at that snapshot. */
    int (*load)(struct gal_store *store, int64_t only_collection,
                const struct gal_store_loader *loader, uint64_t *seq);

    int (*collection_create)(struct gal_store *store, const struct gal_collection_info *info,
                             int64_t *id, uint64_t *seq);
    int (*collection_update)(struct gal_store *store, int64_t id, float threshold,
                             enum gal_dtype dtype, uint64_t *seq);
    int (*collection_delete)(struct gal_store *store, int64_t id, uint64_t *seq);
    /* Removes what collection_delete left to remove later (the rows of a deleted collection,
     * in small transactions so other writers get between them); called without the
     * gallery's write mutex. NULL in a backend whose collection_delete removes everything. */
    int (*purge)(struct gal_store *store);
    /* By name or by id (name NULL); counts included. BASE_ERR_NOT_FOUND when absent. */
    int (*collection_get)(struct gal_store *store, const char *name, int64_t id,
                          struct gal_store_collection *out);
    int (*collection_list)(struct gal_store *store, struct gal_store_collection **list,
                           size_t *count);

    int (*subject_add)(struct gal_store *store, int64_t collection_id, const char *subject_id,
                       const char *metadata, int64_t created_ms, uint64_t *seq);
    int (*subject_set_metadata)(struct gal_store *store, int64_t collection_id,
                                const char *subject_id, const char *metadata, uint64_t *seq);
    int (*subject_delete)(struct gal_store *store, int64_t collection_id, const char *subject_id,
                          int64_t *subject_rowid, uint64_t *seq);
    int (*subject_get)(struct gal_store *store, int64_t collection_id, const char *subject_id,
                       struct gal_subject_info *info);
    int (*subject_list)(struct gal_store *store, int64_t collection_id, const char *after,
                        size_t limit, struct gal_subject_info **list, size_t *count);

    /* Adds faces (embeddings normalised) in one transaction; the i-th gets face_ids[i],
     * subject_rowids[i] and change sequence number first_seq + i. created_ms 0 means now. */
    int (*faces_add)(struct gal_store *store, int64_t collection_id,
                     const struct gal_face_input *faces, const int64_t *created_ms, size_t count,
                     int64_t *face_ids, int64_t *subject_rowids, uint64_t *first_seq);
    int (*face_delete)(struct gal_store *store, int64_t collection_id, int64_t face_id,
                       uint64_t *seq);
    int (*face_get)(struct gal_store *store, int64_t collection_id, int64_t face_id,
                    struct gal_face_record *record);
    int (*face_list)(struct gal_store *store, int64_t collection_id, const char *subject_id,
                     int64_t **face_ids, size_t *count);
    /* For search results: the subject of each face and, when `embeddings` is not NULL, its
     * embedding (dim floats at embeddings + i * dim). Missing faces get found = 0. */
    int (*faces_lookup)(struct gal_store *store, int64_t collection_id, const int64_t *face_ids,
                        size_t count, uint32_t dim, float *embeddings,
                        struct gal_store_face_ref *refs);

    /* Up to `limit` changes with seq > after, in order. */
    int (*changes)(struct gal_store *store, uint64_t after, size_t limit,
                   struct gal_change *changes, size_t *count);

    int (*export_scan)(struct gal_store *store, int64_t collection_id,
                       const struct gal_store_exporter *exporter);

    /* The last committed change's sequence number, read cheaply, so that a process sharing
     * the store with others can tell before a read whether it must replay changes first
     * (read-your-writes across replicas). NULL in a backend where that is not needed. */
    int (*last_seq)(struct gal_store *store, uint64_t *seq);

    /* For search: the faces of `count` subjects (by rowid) of a collection, in one read, up
     * to max_per_subject each (the lowest ids). Subject i's faces are rows starts[i] ..
     * starts[i + 1] of *face_ids and *embeddings (dim floats each), new arrays the caller
     * frees; `starts` has count + 1 entries. NULL in a backend without it: the gallery then
     * uses face_list and faces_lookup per subject. */
    int (*subjects_faces)(struct gal_store *store, int64_t collection_id,
                          const int64_t *subject_rowids, size_t count, size_t max_per_subject,
                          uint32_t dim, int64_t **face_ids, float **embeddings, size_t *starts);

    /* Check-ins (gallery.h): the record's read-and-update for `count` faces at now_ms in one
     * write transaction; out[i] and *summary as gal_checkin says, summary->subjects left 0. */
    int (*checkin)(struct gal_store *store, int64_t collection_id,
                   const struct gal_checkin_face *faces, size_t count, int64_t now_ms,
                   struct gal_checkin *out, struct gal_checkin_summary *summary);
    /* Up to `limit` records after (after_ms, after_id) in the list order (after_id NULL: the
     * first page), metadata included, and the summary (subjects left 0), from one snapshot. */
    int (*checkin_list)(struct gal_store *store, int64_t collection_id, int64_t after_ms,
                        const char *after_id, size_t limit, struct gal_checkin **list,
                        size_t *count, struct gal_checkin_summary *summary);
    int (*checkin_clear)(struct gal_store *store, int64_t collection_id, uint64_t *cleared);
};

struct gal_store {
    const struct gal_store_ops *ops;
    /* The longest wait on the store without an answer, in ms (0: no limit; SQLite): the
     * PostgreSQL store's VULTUS_STORE_TIMEOUT_MS. Set at open. */
    int timeout_ms;
};

/*
 * A gallery call's wait on the store is bounded as a whole, not only statement by statement:
 * a call queued on a lock (the gallery's write lock, the store's writer connection, a busy
 * reader pool) behind a holder that waits out its own limit used to wait its turn, then its
 * own limit, so with the store frozen the k-th call in line got its 503 after k limits. So
 * each call sets this thread's deadline, base_now_ns() + timeout_ms, when it starts (gallery.c,
 * STORE_CALL), every wait on the store - a lock, a pooled connection, a connection attempt,
 * an answer - ends at it, and each answer received moves it on by timeout_ms (the store is
 * alive: a long export or import of many statements goes on). 0: no deadline (no limit, or
 * the store used outside a gallery call). Thread-local: each call runs on one thread.
 */
extern _Thread_local uint64_t gal_store_deadline_ns;

/* Locks `m` (a normal or recursive mutex), waiting at most until gal_store_deadline_ns;
 * past it, BASE_ERR_IO (503 store_unavailable for a request) with a message naming `what`
 * and the limit. Without a deadline, pthread_mutex_lock. */
int gal_store_lock(pthread_mutex_t *m, int timeout_ms, const char *what);

/* Opens (creating and migrating) a SQLite store. `options` may be NULL. */
int gal_store_sqlite_open(const char *path, const struct gal_options *options,
                          struct gal_store **out);

/* Opens (creating and migrating) a PostgreSQL store from a postgres:// or postgresql://
 * URL (libpq's syntax). `options` may be NULL; max_store_bytes is refused (SQLite only). */
int gal_store_postgres_open(const char *url, const struct gal_options *options,
                            struct gal_store **out);

/*
 * The check-in rule (gallery.c), one place for both stores, which do the reads and writes
 * around it in one transaction. `event` is the collection's row: since_ms (0: nothing
 * recorded yet), the not-recognised count and the time of the last unrecognised face.
 */
struct gal_checkin_event {
    int64_t since_ms;
    uint64_t not_recognised;
    int64_t last_unknown_ms;
};
/*
 * One face arriving at now_ms. For a recognised face, `record` holds the subject's record when
 * `found` (else it is filled); it is updated and the status says what the store writes:
 * checked_in inserts it, already_checked_in updates it, same_arrival nothing. An unrecognised
 * face (face->subject_id NULL) is counted unless the event's last counted one, as it was
 * before this request (unknown_before_ms), is within GAL_CHECKIN_SAME_MS: the same stranger
 * again, while two strangers in one photo are two. `event` changes only when a face is counted
 * (last_unknown_ms is the last counted one's time), so a retry writes nothing.
 */
enum gal_checkin_status gal_checkin_rule(struct gal_checkin *record, int found,
                                         const struct gal_checkin_face *face, int64_t now_ms,
                                         int64_t unknown_before_ms,
                                         struct gal_checkin_event *event);

/* Milliseconds since the Unix epoch. */
int64_t gal_now_ms(void);

#endif
