/*
 * What the files of src/gallery share beyond the public header (private to the module).
 */
#ifndef VULTUS_GALLERY_INTERNAL_H
#define VULTUS_GALLERY_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "base/base.h"

#include "gallery/gallery.h"
#include "gallery/index.h"
#include "gallery/kernels.h"
#include "gallery/store.h"

struct collection {
    int64_t id;                      /* the store's id */
    struct gal_collection_info info; /* settings and created_ms; the counts are below */
    struct gal_index *index;         /* its live rows are the collection's faces */
    /*
     * The collection's subjects (those without faces too) as of applied_seq, so that counts
     * cost no scan of the store: the store's count at load, then moved by every subject
     * added or deleted, by this process or replayed from the log. Written under write_mutex,
     * read by anyone holding collections_lock shared, hence atomic.
     */
    atomic_uint_least64_t subjects;
    /*
     * The change number of the snapshot the collection was loaded from (write_mutex). A
     * collection loaded while the log is replayed (created or re-typed by another process)
     * already holds the changes up to it, which the replay then skips: faces are idempotent
     * in the index, a subject count is not.
     */
    uint64_t loaded_seq;
    struct collection *next;
};

struct gal {
    struct gal_store *store;
    const struct gal_kernels *kernels;

    /*
     * Locking.
     * `write_mutex` serialises every write: the store commit and the in-memory update that
     * follows it, so the indexes see changes in the store's order and `applied_seq` (the
     * last change applied in memory) moves forward one change at a time. Writers also
     * replay, under it, the changes other processes made (gal_refresh).
     * `collections_lock` (reader-writer, writer-preferring) protects the list of
     * collections and each one's settings and index pointer. Searches hold it shared while
     * they use an index; only a writer changing the list or a collection's settings holds
     * it exclusive (create, delete, threshold or storage change), and only for the pointer
     * swap, never during I/O. Adding or deleting faces does not take it exclusive: each
     * index has its own lock (index.c). Lock order: write_mutex, collections_lock, index.
     */
    pthread_mutex_t write_mutex;
    pthread_rwlock_t collections_lock;
    struct collection *collections;
    /* Written under write_mutex; atomic so that a read can compare it with the store's last
     * change without waiting for the lock (sync_for_read), which a writer may hold while it
     * waits on a frozen store. */
    _Atomic uint64_t applied_seq;
    struct gal_ann_config ann; /* every collection's HNSW settings (gal_options) */
    int store_only;            /* gal_options.store_only: no collection in memory, ever */
    char only_collection[GAL_ID_MAX + 1]; /* gal_options.only_collection; "": every one */
    /*
     * store_only: the last collection looked up by name, its id and settings (not its
     * counts), so that a command's many calls on one collection (show lists each subject's
     * faces, enroll writes each face) do not have the store count its rows each time (5 ms
     * a call at 100k faces). A collection deleted and created again by another process
     * meanwhile is not seen: calls with the old id fail as "does not exist". Its own deletes
     * and updates forget it. collections_lock.
     */
    struct {
        int64_t id; /* 0: none */
        struct gal_collection_info info;
    } store_only_cache;
    /* store_only: the collection a write works on, as begin_write returns it (write_mutex). */
    struct collection store_only_target;
};

/* BASE_ERR_UNSUPPORTED for a call that needs the in-memory collections on a gallery opened
 * store-only (gal_options.store_only), which has none: not a misleading "does not exist". */
int gal_refuse_store_only(const struct gal *g);
/* The store id of a collection for a read (from memory, or from the store when store-only),
 * or BASE_ERR_NOT_FOUND. */
int gal_collection_id_for_read(struct gal *g, const char *name, int64_t *id);

/*
 * Bounds a gallery call's whole wait on the store (see gal_store_deadline_ns in store.h):
 * STORE_CALL(g) at the top of a public function that may wait on the store sets this
 * thread's deadline unless an outer call has set it, and clears it on every return (the
 * cleanup attribute: no return path can leave it behind for the thread's next call).
 */
static inline void gal_store_call_end(const int *began)
{
    if (*began) gal_store_deadline_ns = 0;
}

static inline int gal_store_call_begin(const struct gal *g)
{
    if (gal_store_deadline_ns || !g->store || !g->store->timeout_ms) return 0;
    gal_store_deadline_ns = base_now_ns() + (uint64_t)g->store->timeout_ms * 1000000u;
    return 1;
}

#define STORE_CALL(g)                                                                              \
    __attribute__((cleanup(gal_store_call_end))) const int store_call_began =                      \
        gal_store_call_begin(g);                                                                   \
    (void)store_call_began

/* The gallery's write lock, waited for at most until the call's deadline. */
static inline int gal_lock_writes(struct gal *g)
{
    return gal_store_lock(&g->write_mutex, g->store->timeout_ms, "the gallery's write lock");
}

/* The collection named `name`; caller holds collections_lock or write_mutex. */
struct collection *gal_find_collection(struct gal *g, const char *name);

/* Replays the store's change log after applied_seq; write_mutex held. */
int gal_catch_up(struct gal *g);

/* Checks of input, each with a clear error message (collection names: gallery.h). */
int gal_check_subject_id(const char *subject_id);
int gal_check_metadata(const char *metadata);
/* Checks one face input against a collection and writes its normalised embedding. */
int gal_check_face(const struct gal_collection_info *info, const struct gal_face_input *face,
                   size_t position, float *normalised);
int gal_check_collection_info(const struct gal_collection_info *info);

/*
 * Adds context in front of the error message already recorded on this thread and returns
 * `code`: "<formatted context>: <previous message>".
 */
int gal_error_context(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* CRC-32 (IEEE 802.3, as zlib's crc32): crc = gal_crc32(crc, data, n), starting from 0. */
uint32_t gal_crc32(uint32_t crc, const void *data, size_t n);

#endif
