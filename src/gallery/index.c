/*
 * The in-memory index of one collection: an exact scan over contiguous rows.
 *
 * Layout (struct of arrays, `capacity` entries each, row i of each belongs together):
 *   rows      [capacity][padded_dim] of f32, f16 or int8; 64-byte aligned, each row padded
 *             with zeros to a multiple of 64 bytes so the kernels never run a tail loop
 *   scales    [capacity] f32, int8 only: row i stands for scales[i] * codes
 *   face_ids  [capacity] i64, strictly increasing over [0, count)
 *   subjects  [capacity] i64 subject rowid; 0 marks a deleted row (a tombstone)
 *
 * int8 storage is symmetric scalar quantisation per vector: codes = round(x * 127 / max|x|),
 * scale = max|x| / 127. For unit vectors one scale per vector costs 4 bytes and keeps the
 * full 8 bits of resolution for every vector whatever its largest component (a per-dimension
 * or global scale would waste range on vectors with small components). The query is
 * quantised the same way, the kernel sums code products exactly in int32, and the score is
 * that sum times both scales. The gallery re-scores the best candidates with the exact f32
 * vectors (see gallery.c), so the index only has to rank the true best within its candidate
 * list: quantisation noise on a similarity is ~5e-4 here, far below the gaps that matter.
 *
 * Deletes set a tombstone (O(log n) to find the row by binary search on face_ids); when a
 * quarter of the rows are tombstones, the rows are compacted into new arrays. Growth and
 * compaction copy into new arrays while searches continue (see the lock comment below).
 */
#include "gallery/index.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/base.h"
#include "gallery/ann.h"

#define ROW_ALIGN 64
/* Rows per block: the block is scanned for every query while it sits in L1. */
#define BLOCK_BYTES (24 * 1024)
#define BLOCK_ROWS_MAX 512
/* Arrays at least this large are 2 MiB aligned and asked to use transparent huge pages:
 * a scan over 1M rows walks 47k 4 KiB pages otherwise (measured: 16 queries x 1M x 192 int8
 * from ~50 ms to ~31 ms per pass). */
#define HUGE_ALLOC_MIN (4u << 20)
#define HUGE_PAGE (2u << 20)

struct arrays {
    size_t capacity;
    uint8_t *rows;
    float *scales;
    int64_t *face_ids;
    int64_t *subjects;
};

struct gal_index {
    /* Set at creation, read-only afterwards. */
    uint32_t dim;
    uint32_t padded_dim; /* elements per row */
    size_t row_bytes;
    enum gal_dtype dtype;
    const struct gal_kernels *kernels;

    /*
     * Locking. `lock` is a reader-writer lock that prefers writers (so a steady stream of
     * searches cannot starve an enrolment): searches hold it shared for their whole scan;
     * writers hold it exclusive only while they change what readers see (`count`, `live`,
     * the array pointers, rows below `count`, tombstones). `write_mutex` serialises
     * writers, which lets a writer work outside the exclusive lock: it fills the row at
     * position `count` (invisible to readers) before publishing it, and it copies the arrays
     * into bigger or compacted ones holding only the shared lock, then swaps them in under
     * the exclusive lock. Lock order: write_mutex, then lock.
     */
    pthread_rwlock_t lock;
    pthread_mutex_t write_mutex;
    size_t count; /* rows in use, tombstones included */
    size_t live;  /* rows that are not tombstones */
    struct arrays a;

    /*
     * The HNSW graph (gal_index_set_ann). `ann` and `ann_dead` are read by searches under
     * `lock` shared and changed under it exclusive (so no search runs while the graph
     * changes: hnswlib's insertions are not safe against concurrent searches); the build's
     * state is under write_mutex, except `ann_stop`, which the build thread polls.
     */
    struct gal_ann_config ann_config;
    size_t ann_entry_bytes;
    struct gal_ann *ann;
    size_t ann_dead;         /* faces removed since `ann` was built, still in it */
    atomic_int ann_building; /* a build thread runs (atomic: stats read it without the mutex) */
    int ann_thread_started;  /* ann_thread is to be joined */
    atomic_int ann_stop;     /* destroy: the build gives up */
    uint64_t in_place_adds;  /* adds that were not appends (a build's catch-up looks for them) */
    atomic_uint_least64_t ann_build_ns; /* the last build's duration */
    uint64_t ann_retry_ns;              /* after a failure: no new build before this time */
    pthread_t ann_thread;
    pthread_cond_t ann_idle; /* broadcast (write_mutex) when a build ends */
};

/* ---- memory ----------------------------------------------------------------------------- */

static void *big_alloc(size_t bytes)
{
    if (bytes < HUGE_ALLOC_MIN) return base_aligned_alloc(ROW_ALIGN, bytes);
    void *p = base_aligned_alloc(HUGE_PAGE, bytes);
    if (p) madvise(p, bytes, MADV_HUGEPAGE); /* advice only: failure is harmless */
    return p;
}

static void arrays_free(struct arrays *a)
{
    base_aligned_free(a->rows);
    base_aligned_free(a->scales);
    base_aligned_free(a->face_ids);
    base_aligned_free(a->subjects);
    memset(a, 0, sizeof *a);
}

static int arrays_alloc(const struct gal_index *index, size_t capacity, struct arrays *a)
{
    memset(a, 0, sizeof *a);
    size_t row_total;
    if (capacity > GAL_FACES_MAX || base_mul_size(capacity, index->row_bytes, &row_total) != 0)
        return base_error_set(BASE_ERR_LIMIT, "index of %zu rows of %zu bytes is too large",
                              capacity, index->row_bytes);
    a->capacity = capacity;
    a->rows = big_alloc(row_total);
    a->face_ids = big_alloc(capacity * sizeof *a->face_ids);
    a->subjects = big_alloc(capacity * sizeof *a->subjects);
    if (index->dtype == GAL_DTYPE_INT8) a->scales = big_alloc(capacity * sizeof *a->scales);
    if (!a->rows || !a->face_ids || !a->subjects ||
        (index->dtype == GAL_DTYPE_INT8 && !a->scales)) {
        arrays_free(a);
        return base_error_set(BASE_ERR_NOMEM, "cannot allocate an index of %zu rows of %zu bytes",
                              capacity, index->row_bytes);
    }
    return 0;
}

/* ---- rows ------------------------------------------------------------------------------- */

/* Encodes a normalised vector as one padded row in the index's storage type. */
static void encode_row(const struct gal_index *index, const float *vector, uint8_t *row,
                       float *scale)
{
    switch (index->dtype) {
    case GAL_DTYPE_F32:
        memcpy(row, vector, index->dim * sizeof(float));
        memset(row + index->dim * sizeof(float), 0,
               (index->padded_dim - index->dim) * sizeof(float));
        break;
    case GAL_DTYPE_F16: {
        uint16_t *h = (uint16_t *)row;
        index->kernels->to_f16(vector, index->dim, h);
        memset(h + index->dim, 0, (index->padded_dim - index->dim) * sizeof *h);
        break;
    }
    case GAL_DTYPE_INT8:
        *scale = index->kernels->quantize_i8(vector, index->dim, (int8_t *)row);
        memset(row + index->dim, 0, index->padded_dim - index->dim);
        break;
    }
}

/* First position whose face id is >= face_id. Caller holds the lock or write_mutex. */
static size_t lower_bound(const struct gal_index *index, int64_t face_id)
{
    size_t lo = 0, hi = index->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (index->a.face_ids[mid] < face_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/*
 * Replaces the arrays by new ones of `capacity` rows, dropping tombstones when `compact`.
 * Called with write_mutex held: nothing else changes the index meanwhile, so the copy is
 * made under the shared lock (searches continue) and only the swap is exclusive.
 */
static int rebuild(struct gal_index *index, size_t capacity, int compact)
{
    struct arrays fresh;
    int rc = arrays_alloc(index, capacity, &fresh);
    if (rc) return rc;
    pthread_rwlock_rdlock(&index->lock);
    size_t n = 0;
    const struct arrays *old = &index->a;
    if (!compact && index->count > 0) {
        memcpy(fresh.rows, old->rows, index->count * index->row_bytes);
        memcpy(fresh.face_ids, old->face_ids, index->count * sizeof *old->face_ids);
        memcpy(fresh.subjects, old->subjects, index->count * sizeof *old->subjects);
        if (old->scales) memcpy(fresh.scales, old->scales, index->count * sizeof *old->scales);
        n = index->count;
    } else if (compact) {
        for (size_t i = 0; i < index->count; i++) {
            if (old->subjects[i] == 0) continue;
            memcpy(fresh.rows + n * index->row_bytes, old->rows + i * index->row_bytes,
                   index->row_bytes);
            fresh.face_ids[n] = old->face_ids[i];
            fresh.subjects[n] = old->subjects[i];
            if (old->scales) fresh.scales[n] = old->scales[i];
            n++;
        }
    }
    pthread_rwlock_unlock(&index->lock);

    pthread_rwlock_wrlock(&index->lock);
    struct arrays previous = index->a;
    index->a = fresh;
    index->count = n;
    pthread_rwlock_unlock(&index->lock);
    arrays_free(&previous);
    return 0;
}

/* Makes room for one more row. write_mutex held. */
static int ensure_room(struct gal_index *index)
{
    if (index->count < index->a.capacity) return 0;
    if (index->count >= GAL_FACES_MAX)
        return base_error_set(BASE_ERR_LIMIT, "collection index is full (%u faces)", GAL_FACES_MAX);
    size_t capacity = index->a.capacity < 64 ? 64 : index->a.capacity + index->a.capacity / 2;
    if (capacity > GAL_FACES_MAX) capacity = GAL_FACES_MAX;
    return rebuild(index, capacity, 0);
}

/* Compacts when tombstones are a quarter of the rows. write_mutex held. */
static void maybe_compact(struct gal_index *index)
{
    size_t dead = index->count - index->live;
    if (dead == 0 || (dead < 64 && index->live > 0) || dead * 4 < index->count) return;
    size_t capacity = index->live + index->live / 4 + 64;
    if (rebuild(index, capacity, 1) != 0) {
        /* Out of memory: keep the tombstones; searches skip them and a later delete retries. */
        LOG_WARN("index compaction of %zu rows failed: %s", index->count, base_error_message());
    }
}

/* ---- the HNSW graph ------------------------------------------------------------------------ */

/* Rows a build copies per visit under the shared lock (short, so writers wait little). */
#define ANN_CHUNK 4096

static enum gal_ann_encoding ann_encoding(const struct gal_index *index)
{
    return index->dtype == GAL_DTYPE_INT8 ? GAL_ANN_I8 : GAL_ANN_F32;
}

/*
 * The graph entry of row `pos`, from the row as stored: int8 codes and scale as they are (so
 * the graph's scores are the scan's), f16 widened to f32. Caller holds lock or write_mutex.
 */
static void row_entry(const struct gal_index *index, size_t pos, uint8_t *entry)
{
    const uint8_t *row = index->a.rows + pos * index->row_bytes;
    switch (index->dtype) {
    case GAL_DTYPE_INT8:
        gal_ann_entry_i8(index->dim, index->a.scales[pos], (const int8_t *)row, entry);
        break;
    case GAL_DTYPE_F32: memcpy(entry, row, index->dim * sizeof(float)); break;
    case GAL_DTYPE_F16: {
        const uint16_t *h = (const uint16_t *)row;
        float f;
        for (uint32_t i = 0; i < index->dim; i++) {
            f = base_f16_to_f32(h[i]);
            memcpy(entry + i * sizeof f, &f, sizeof f);
        }
        break;
    }
    }
}

/* Makes room in `ann` for `more` faces (growing by half at least). */
static int ann_make_room(struct gal_ann *ann, size_t more)
{
    size_t cap = gal_ann_capacity(ann), need = gal_ann_count(ann) + more;
    if (need <= cap) return 0;
    size_t grown = cap + cap / 2 + 1024;
    return gal_ann_reserve(ann, grown > need ? grown : need);
}

/* Adds to `ann` with room made first. */
static int ann_add_grow(struct gal_ann *ann, int64_t face_id, const uint8_t *entry)
{
    int rc = ann_make_room(ann, 1);
    return rc ? rc : gal_ann_add(ann, face_id, entry);
}

/* A failed graph (out of memory, most likely) is not built again for a minute. */
#define ANN_RETRY_NS (60ull * 1000000000ull)

/* Drops the published graph after a failure: the exact scan serves. write_mutex held. */
static void ann_drop(struct gal_index *index, const char *why)
{
    index->ann_retry_ns = base_now_ns() + ANN_RETRY_NS;
    LOG_WARN("index: the hnsw graph is dropped (%s: %s); searches scan every face", why,
             base_error_message());
    pthread_rwlock_wrlock(&index->lock);
    struct gal_ann *old = index->ann;
    index->ann = NULL;
    index->ann_dead = 0;
    pthread_rwlock_unlock(&index->lock);
    gal_ann_destroy(old);
}

/* After an add at row `pos`: the same face into the published graph. write_mutex held. */
static void ann_follow_add(struct gal_index *index, size_t pos)
{
    if (!index->ann) return;
    uint8_t *entry = malloc(index->ann_entry_bytes);
    if (!entry) {
        base_error_set(BASE_ERR_NOMEM, "an entry of %zu bytes", index->ann_entry_bytes);
        ann_drop(index, "adding a face");
        return;
    }
    row_entry(index, pos, entry);
    pthread_rwlock_wrlock(&index->lock);
    /* a revived face is still in the graph, with the same vector (and stays counted dead
     * until the next build: harmless) */
    int rc = gal_ann_contains(index->ann, index->a.face_ids[pos])
                 ? 0
                 : ann_add_grow(index->ann, index->a.face_ids[pos], entry);
    pthread_rwlock_unlock(&index->lock);
    free(entry);
    if (rc) ann_drop(index, "adding a face");
}

struct ann_build {
    struct gal_index *index;
    struct gal_ann *graph;
    uint8_t *entries; /* ANN_CHUNK entries */
    int64_t ids[ANN_CHUNK];
};

/*
 * Copies up to ANN_CHUNK live rows with face ids above `after` into b, starting the search
 * at *pos_io (where the previous copy ended, unless rows moved since). Caller holds lock
 * shared or write_mutex.
 */
static size_t copy_rows(struct ann_build *b, int64_t after, size_t *pos_io)
{
    struct gal_index *index = b->index;
    size_t pos = *pos_io, n = 0;
    if (pos > index->count || (pos > 0 && index->a.face_ids[pos - 1] != after))
        pos = lower_bound(index, after + 1); /* rows moved (growth, compaction, an insert) */
    for (; pos < index->count && n < ANN_CHUNK; pos++) {
        if (index->a.subjects[pos] == 0) continue;
        b->ids[n] = index->a.face_ids[pos];
        row_entry(index, pos, b->entries + n * index->ann_entry_bytes);
        n++;
    }
    *pos_io = pos;
    return n;
}

/*
 * Copies live rows past `after` in chunks and inserts them until a chunk comes back short:
 * the graph has (nearly) caught up with the writers. `shared_lock`: each copy under the
 * index's shared lock (the caller holds neither lock), else the caller holds write_mutex.
 */
static int catch_up(struct ann_build *b, int64_t *after, size_t *pos, int shared_lock)
{
    struct gal_index *index = b->index;
    while (!atomic_load(&index->ann_stop)) {
        if (shared_lock) pthread_rwlock_rdlock(&index->lock);
        size_t n = copy_rows(b, *after, pos);
        if (shared_lock) pthread_rwlock_unlock(&index->lock);
        if (n) *after = b->ids[n - 1];
        int rc = ann_make_room(b->graph, n);
        if (!rc) rc = gal_ann_add_many(b->graph, n, b->ids, b->entries, index->ann_config.threads);
        if (rc) return rc;
        if (n < ANN_CHUNK) break;
    }
    return 0;
}

/*
 * The build thread: a fresh graph over the live rows, made without blocking searches or
 * writes (it copies rows in chunks under the shared lock and inserts them with no lock),
 * then caught up and published under write_mutex (writers wait for the last few rows).
 */
static void *ann_build_main(void *arg)
{
    struct gal_index *index = arg;
    /* below the service's inference workers: a build may take minutes of one core */
    setpriority(PRIO_PROCESS, (id_t)gettid(), 10);
    const uint64_t t0 = base_now_ns();
    struct ann_build b = {.index = index};
    const struct gal_ann_params params = {index->ann_config.m, index->ann_config.ef_construction,
                                          index->ann_config.ef_search};
    pthread_mutex_lock(&index->write_mutex);
    const size_t capacity = index->live + index->live / 8 + 1024;
    const uint64_t in_place_before = index->in_place_adds;
    pthread_mutex_unlock(&index->write_mutex);

    int rc = gal_ann_create(index->dim, ann_encoding(index), index->kernels, &params, capacity,
                            &b.graph);
    b.entries = malloc((size_t)ANN_CHUNK * index->ann_entry_bytes);
    if (!rc && !b.entries) rc = base_error_set(BASE_ERR_NOMEM, "hnsw build buffers");
    int64_t after = 0;
    size_t pos = 0;
    if (!rc) rc = catch_up(&b, &after, &pos, 1);

    pthread_mutex_lock(&index->write_mutex);
    /* Writers wait from here: the rows appended since the last chunk, then (only if some
     * add landed before the end) any live row the graph lacks. */
    if (!rc) rc = catch_up(&b, &after, &pos, 0);
    if (!rc && !atomic_load(&index->ann_stop) && index->in_place_adds != in_place_before) {
        for (size_t i = 0; i < index->count && !rc; i++) {
            if (index->a.subjects[i] == 0 || gal_ann_contains(b.graph, index->a.face_ids[i]))
                continue;
            row_entry(index, i, b.entries);
            rc = ann_add_grow(b.graph, index->a.face_ids[i], b.entries);
        }
    }
    struct gal_ann *old = NULL;
    if (!rc && !atomic_load(&index->ann_stop)) {
        pthread_rwlock_wrlock(&index->lock);
        old = index->ann;
        index->ann = b.graph;
        /* faces deleted while the build copied them are in it (searches skip them) */
        size_t in_graph = gal_ann_count(b.graph);
        index->ann_dead = in_graph > index->live ? in_graph - index->live : 0;
        pthread_rwlock_unlock(&index->lock);
        b.graph = NULL;
        atomic_store(&index->ann_build_ns, base_now_ns() - t0);
        LOG_INFO("index: hnsw graph over %zu faces built in %.1f s", index->live,
                 (double)atomic_load(&index->ann_build_ns) / 1e9);
    } else if (rc) {
        index->ann_retry_ns = base_now_ns() + ANN_RETRY_NS;
        LOG_WARN("index: hnsw graph build failed (%s); searches scan every face",
                 base_error_message());
    }
    atomic_store(&index->ann_building, 0);
    pthread_cond_broadcast(&index->ann_idle);
    pthread_mutex_unlock(&index->write_mutex);
    gal_ann_destroy(old);
    gal_ann_destroy(b.graph);
    free(b.entries);
    return NULL;
}

/* Starts a build when one is due: no graph and enough faces, or a quarter of it dead.
 * write_mutex held. */
static void ann_maybe_build(struct gal_index *index)
{
    const struct gal_ann_config *c = &index->ann_config;
    if (c->min_faces == 0 || atomic_load(&index->ann_building) || atomic_load(&index->ann_stop))
        return;
    int due = index->ann ? index->ann_dead > 1024 && index->ann_dead * 4 > gal_ann_count(index->ann)
                         : index->live >= c->min_faces;
    if (!due || base_now_ns() < index->ann_retry_ns) return;
    if (index->ann_thread_started) {
        pthread_join(index->ann_thread, NULL); /* finished: ann_building is 0 */
        index->ann_thread_started = 0;
    }
    if (pthread_create(&index->ann_thread, NULL, ann_build_main, index) != 0) {
        LOG_WARN("index: cannot start an hnsw build thread; searches scan every face");
        return;
    }
    index->ann_thread_started = 1;
    atomic_store(&index->ann_building, 1);
}

void gal_index_set_ann(struct gal_index *index, const struct gal_ann_config *config)
{
    pthread_mutex_lock(&index->write_mutex);
    index->ann_config = *config;
    if (index->ann_config.m < 2) index->ann_config.m = GAL_ANN_M_DEFAULT;
    if (index->ann_config.ef_construction == 0)
        index->ann_config.ef_construction = GAL_ANN_EF_CONSTRUCTION_DEFAULT;
    if (index->ann_config.ef_search == 0) index->ann_config.ef_search = GAL_ANN_EF_SEARCH_DEFAULT;
    if (index->ann_config.threads == 0) index->ann_config.threads = 1;
    ann_maybe_build(index);
    pthread_mutex_unlock(&index->write_mutex);
}

void gal_index_set_ann_ef_search(struct gal_index *index, unsigned ef_search)
{
    if (ef_search == 0) ef_search = GAL_ANN_EF_SEARCH_DEFAULT;
    pthread_mutex_lock(&index->write_mutex);
    index->ann_config.ef_search = ef_search;
    pthread_rwlock_wrlock(&index->lock);
    if (index->ann) gal_ann_set_ef_search(index->ann, ef_search);
    pthread_rwlock_unlock(&index->lock);
    pthread_mutex_unlock(&index->write_mutex);
}

int gal_index_wait_ann(struct gal_index *index, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    int rc = 0;
    pthread_mutex_lock(&index->write_mutex);
    while (atomic_load(&index->ann_building) && !rc)
        if (pthread_cond_timedwait(&index->ann_idle, &index->write_mutex, &until) != 0 &&
            atomic_load(&index->ann_building))
            rc = base_error_set(BASE_ERR_LIMIT, "hnsw build still running after %d ms", timeout_ms);
    pthread_mutex_unlock(&index->write_mutex);
    return rc;
}

/* ---- create / destroy -------------------------------------------------------------------- */

int gal_index_create(uint32_t dim, enum gal_dtype dtype, const struct gal_kernels *kernels,
                     struct gal_index **out)
{
    *out = NULL;
    if (dim == 0 || dim > GAL_DIM_MAX)
        return base_error_set(BASE_ERR_INVALID, "index dimension %u is not in 1..%d", dim,
                              GAL_DIM_MAX);
    if (!gal_dtype_name(dtype))
        return base_error_set(BASE_ERR_INVALID, "index storage type %d is unknown", (int)dtype);
    struct gal_index *index = calloc(1, sizeof *index);
    if (!index) return base_error_set(BASE_ERR_NOMEM, "cannot allocate an index");
    size_t elem = dtype == GAL_DTYPE_F32 ? 4 : dtype == GAL_DTYPE_F16 ? 2 : 1;
    size_t per_row = ROW_ALIGN / elem;
    index->dim = dim;
    index->padded_dim = (uint32_t)((dim + per_row - 1) / per_row * per_row);
    index->row_bytes = index->padded_dim * elem;
    index->dtype = dtype;
    index->kernels = kernels ? kernels : gal_kernels_best();

    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&index->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    pthread_mutex_init(&index->write_mutex, NULL);
    pthread_cond_init(&index->ann_idle, NULL);
    atomic_init(&index->ann_stop, 0);
    atomic_init(&index->ann_building, 0);
    atomic_init(&index->ann_build_ns, 0);
    index->ann_entry_bytes = gal_ann_entry_bytes(dim, ann_encoding(index));
    *out = index;
    return 0;
}

void gal_index_destroy(struct gal_index *index)
{
    if (!index) return;
    atomic_store(&index->ann_stop, 1);
    if (index->ann_thread_started) pthread_join(index->ann_thread, NULL);
    gal_ann_destroy(index->ann);
    pthread_cond_destroy(&index->ann_idle);
    arrays_free(&index->a);
    pthread_rwlock_destroy(&index->lock);
    pthread_mutex_destroy(&index->write_mutex);
    free(index);
}

enum gal_dtype gal_index_dtype(const struct gal_index *index)
{
    return index->dtype;
}

uint32_t gal_index_dim(const struct gal_index *index)
{
    return index->dim;
}

int gal_index_reserve(struct gal_index *index, size_t rows)
{
    pthread_mutex_lock(&index->write_mutex);
    int rc = 0;
    if (rows > index->a.capacity) rc = rebuild(index, rows, 0);
    pthread_mutex_unlock(&index->write_mutex);
    return rc;
}

/* ---- changes ---------------------------------------------------------------------------- */

int gal_index_add(struct gal_index *index, int64_t face_id, int64_t subject_rowid,
                  const float *vector)
{
    if (face_id <= 0 || subject_rowid <= 0)
        return base_error_set(BASE_ERR_INVALID,
                              "face id %lld / subject rowid %lld must be positive",
                              (long long)face_id, (long long)subject_rowid);
    int rc = 0;
    uint8_t *tmp = NULL;
    pthread_mutex_lock(&index->write_mutex);
    size_t n = index->count;
    if (n == 0 || face_id > index->a.face_ids[n - 1]) {
        /* Append: fill the row past `count` (readers never look there), then publish it. */
        if ((rc = ensure_room(index))) goto done;
        float scale = 0.0f;
        encode_row(index, vector, index->a.rows + n * index->row_bytes, &scale);
        if (index->a.scales) index->a.scales[n] = scale;
        index->a.face_ids[n] = face_id;
        index->a.subjects[n] = subject_rowid;
        pthread_rwlock_wrlock(&index->lock);
        index->count = n + 1;
        index->live++;
        pthread_rwlock_unlock(&index->lock);
        ann_follow_add(index, n);
        ann_maybe_build(index);
        goto done;
    }

    /* An older id: already here (a replayed change), a tombstone to revive, or an insert. */
    size_t pos = lower_bound(index, face_id);
    int present = pos < n && index->a.face_ids[pos] == face_id;
    if (present && index->a.subjects[pos] != 0) goto done;
    if (!present && (rc = ensure_room(index))) goto done;
    tmp = base_aligned_alloc(ROW_ALIGN, index->row_bytes);
    if (!tmp) {
        rc = base_error_set(BASE_ERR_NOMEM, "cannot allocate a row of %zu bytes", index->row_bytes);
        goto done;
    }
    float scale = 0.0f;
    encode_row(index, vector, tmp, &scale);
    pthread_rwlock_wrlock(&index->lock);
    struct arrays *a = &index->a;
    if (!present) {
        size_t tail = n - pos;
        memmove(a->rows + (pos + 1) * index->row_bytes, a->rows + pos * index->row_bytes,
                tail * index->row_bytes);
        memmove(a->face_ids + pos + 1, a->face_ids + pos, tail * sizeof *a->face_ids);
        memmove(a->subjects + pos + 1, a->subjects + pos, tail * sizeof *a->subjects);
        if (a->scales) memmove(a->scales + pos + 1, a->scales + pos, tail * sizeof *a->scales);
        index->count = n + 1;
    }
    memcpy(a->rows + pos * index->row_bytes, tmp, index->row_bytes);
    if (a->scales) a->scales[pos] = scale;
    a->face_ids[pos] = face_id;
    a->subjects[pos] = subject_rowid;
    index->live++;
    pthread_rwlock_unlock(&index->lock);
    index->in_place_adds++;
    ann_follow_add(index, pos);
    ann_maybe_build(index);
done:
    pthread_mutex_unlock(&index->write_mutex);
    base_aligned_free(tmp);
    return rc;
}

int gal_index_contains(struct gal_index *index, int64_t face_id)
{
    pthread_rwlock_rdlock(&index->lock);
    size_t pos = lower_bound(index, face_id);
    int found =
        pos < index->count && index->a.face_ids[pos] == face_id && index->a.subjects[pos] != 0;
    pthread_rwlock_unlock(&index->lock);
    return found;
}

int gal_index_remove(struct gal_index *index, int64_t face_id)
{
    int rc = 0;
    pthread_mutex_lock(&index->write_mutex);
    size_t pos = lower_bound(index, face_id);
    if (pos >= index->count || index->a.face_ids[pos] != face_id || index->a.subjects[pos] == 0) {
        rc =
            base_error_set(BASE_ERR_NOT_FOUND, "face %lld is not in the index", (long long)face_id);
    } else {
        pthread_rwlock_wrlock(&index->lock);
        index->a.subjects[pos] = 0;
        index->live--;
        if (index->ann) index->ann_dead++;
        pthread_rwlock_unlock(&index->lock);
        maybe_compact(index);
        ann_maybe_build(index);
    }
    pthread_mutex_unlock(&index->write_mutex);
    return rc;
}

size_t gal_index_remove_subject(struct gal_index *index, int64_t subject_rowid)
{
    size_t removed = 0;
    if (subject_rowid <= 0) return 0;
    pthread_mutex_lock(&index->write_mutex);
    pthread_rwlock_wrlock(&index->lock);
    for (size_t i = 0; i < index->count; i++) {
        if (index->a.subjects[i] == subject_rowid) {
            index->a.subjects[i] = 0;
            removed++;
        }
    }
    index->live -= removed;
    if (index->ann) index->ann_dead += removed;
    pthread_rwlock_unlock(&index->lock);
    if (removed) maybe_compact(index);
    if (removed) ann_maybe_build(index);
    pthread_mutex_unlock(&index->write_mutex);
    return removed;
}

void gal_index_get_stats(struct gal_index *index, struct gal_index_stats *stats)
{
    pthread_rwlock_rdlock(&index->lock);
    size_t per_row = index->row_bytes + sizeof(int64_t) * 2 +
                     (index->dtype == GAL_DTYPE_INT8 ? sizeof(float) : 0);
    stats->faces = index->live;
    stats->rows = index->count;
    stats->bytes = (uint64_t)index->a.capacity * per_row + sizeof *index;
    stats->kernels = index->kernels->name;
    stats->ann_faces = index->ann ? gal_ann_count(index->ann) : 0;
    stats->ann_bytes = index->ann ? gal_ann_bytes(index->ann) : 0;
    /* not write_mutex: a build holds it while it catches up, and /metrics reads these */
    stats->search = index->ann                          ? "hnsw"
                    : atomic_load(&index->ann_building) ? "exact, hnsw building"
                                                        : "exact";
    pthread_rwlock_unlock(&index->lock);
    stats->ann_build_s = (double)atomic_load(&index->ann_build_ns) / 1e9;
}

uint64_t gal_index_faces(struct gal_index *index)
{
    pthread_rwlock_rdlock(&index->lock);
    uint64_t faces = index->live;
    pthread_rwlock_unlock(&index->lock);
    return faces;
}

/* ---- search ----------------------------------------------------------------------------- */

/* Candidate order: higher score first, then lower face id (deterministic ties). */
static inline int better(const struct gal_candidate *a, const struct gal_candidate *b)
{
    return a->score > b->score || (a->score == b->score && a->face_id < b->face_id);
}

/* Min-heaps with the worst candidate at the root. */
static void sift_down(struct gal_candidate *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(&h[w], &h[l])) w = l;
        if (r < n && better(&h[w], &h[r])) w = r;
        if (w == i) return;
        struct gal_candidate t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static void sift_up(struct gal_candidate *h, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!better(&h[p], &h[i])) return;
        struct gal_candidate t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

static void heap_offer(struct gal_candidate *h, size_t *n, size_t cap,
                       const struct gal_candidate *c)
{
    if (*n < cap) {
        h[*n] = *c;
        sift_up(h, (*n)++);
    } else if (better(c, &h[0])) {
        h[0] = *c;
        sift_down(h, *n, 0);
    }
}

/*
 * The subject heap holds one entry per subject (its best face so far). A subject already
 * present is found by a linear search: candidates reach this point rarely once the heap is
 * full (only when they beat its worst entry), and the heap holds at most k entries.
 */
static void subject_offer(struct gal_candidate *h, size_t *n, size_t cap,
                          const struct gal_candidate *c)
{
    for (size_t i = 0; i < *n; i++) {
        if (h[i].subject_rowid != c->subject_rowid) continue;
        if (better(c, &h[i])) {
            h[i] = *c;
            sift_down(h, *n, i); /* the entry got better: it moves away from the root */
        }
        return;
    }
    heap_offer(h, n, cap, c);
}

static int compare_better_first(const void *pa, const void *pb)
{
    const struct gal_candidate *a = pa, *b = pb;
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

/*
 * The search through the graph, query by query (lock held shared). The graph is asked for
 * more faces than wanted: enough to fill k_subjects distinct subjects in most galleries, plus
 * a margin for faces deleted since it was built (at most about a quarter: then it is rebuilt).
 */
static int search_ann(struct gal_index *index, const float *queries, size_t query_count,
                      size_t k_faces, size_t k_subjects, struct gal_candidate *faces,
                      size_t *face_counts, struct gal_candidate *subjects, size_t *subject_counts)
{
    size_t want = k_faces > 2 * k_subjects ? k_faces : 2 * k_subjects;
    const size_t ask = want + want / 2 + 8;
    uint8_t *entry = malloc(index->ann_entry_bytes);
    int64_t *ids = malloc(ask * sizeof *ids);
    float *scores = malloc(ask * sizeof *scores);
    int rc = 0;
    if (!entry || !ids || !scores) rc = base_error_set(BASE_ERR_NOMEM, "search buffers");
    for (size_t q = 0; q < query_count && !rc; q++) {
        face_counts[q] = subject_counts[q] = 0;
        gal_ann_encode(index->dim, ann_encoding(index), index->kernels, queries + q * index->dim,
                       entry);
        size_t n = 0;
        if ((rc = gal_ann_search(index->ann, entry, ask, ids, scores, &n))) break;
        struct gal_candidate *fh = faces + q * k_faces, *sh = subjects + q * k_subjects;
        for (size_t i = 0; i < n; i++) {
            size_t pos = lower_bound(index, ids[i]);
            if (pos >= index->count || index->a.face_ids[pos] != ids[i] ||
                index->a.subjects[pos] == 0)
                continue; /* deleted since the graph was built */
            struct gal_candidate c = {scores[i], ids[i], index->a.subjects[pos]};
            heap_offer(fh, &face_counts[q], k_faces, &c);
            subject_offer(sh, &subject_counts[q], k_subjects, &c);
        }
    }
    free(entry);
    free(ids);
    free(scores);
    return rc;
}

int gal_index_search(struct gal_index *index, const float *queries, size_t query_count,
                     size_t k_faces, size_t k_subjects, struct gal_candidate *faces,
                     size_t *face_counts, struct gal_candidate *subjects, size_t *subject_counts)
{
    if (query_count == 0 || k_faces == 0 || k_subjects == 0)
        return base_error_set(BASE_ERR_INVALID, "index search with %zu queries, k %zu/%zu",
                              query_count, k_faces, k_subjects);
    pthread_rwlock_rdlock(&index->lock);
    if (index->ann) {
        int rc = search_ann(index, queries, query_count, k_faces, k_subjects, faces, face_counts,
                            subjects, subject_counts);
        pthread_rwlock_unlock(&index->lock);
        for (size_t q = 0; q < query_count && !rc; q++) {
            qsort(faces + q * k_faces, face_counts[q], sizeof *faces, compare_better_first);
            qsort(subjects + q * k_subjects, subject_counts[q], sizeof *subjects,
                  compare_better_first);
        }
        return rc;
    }
    pthread_rwlock_unlock(&index->lock);
    const size_t pd = index->padded_dim, dim = index->dim;
    size_t block_rows = BLOCK_BYTES / index->row_bytes;
    block_rows = block_rows < 8 ? 8 : block_rows > BLOCK_ROWS_MAX ? BLOCK_ROWS_MAX : block_rows;
    block_rows &= ~(size_t)7;

    /* The queries in the index's own format, padded like the rows. */
    size_t q_bytes = query_count * pd * (index->dtype == GAL_DTYPE_INT8 ? 1 : sizeof(float));
    uint8_t *prepared = base_aligned_alloc(ROW_ALIGN, q_bytes);
    float *q_scales = malloc(query_count * sizeof *q_scales);
    float *gates = malloc(query_count * sizeof *gates);
    if (!prepared || !q_scales || !gates) {
        base_aligned_free(prepared);
        free(q_scales);
        free(gates);
        return base_error_set(BASE_ERR_NOMEM, "cannot allocate search buffers");
    }
    memset(prepared, 0, q_bytes);
    for (size_t q = 0; q < query_count; q++) {
        const float *src = queries + q * dim;
        if (index->dtype == GAL_DTYPE_INT8)
            q_scales[q] = index->kernels->quantize_i8(src, dim, (int8_t *)prepared + q * pd);
        else
            memcpy((float *)prepared + q * pd, src, dim * sizeof(float));
        gates[q] = -INFINITY;
        face_counts[q] = 0;
        subject_counts[q] = 0;
    }

    float scores[BLOCK_ROWS_MAX];
    int32_t dots[BLOCK_ROWS_MAX];
    uint32_t selected[BLOCK_ROWS_MAX];
    const struct gal_kernels *k = index->kernels;

    pthread_rwlock_rdlock(&index->lock);
    const struct arrays *a = &index->a;
    for (size_t start = 0; start < index->count; start += block_rows) {
        size_t nb = index->count - start < block_rows ? index->count - start : block_rows;
        const uint8_t *block = a->rows + start * index->row_bytes;
        /* Every query against this block while it is in cache: one pass over memory. */
        for (size_t q = 0; q < query_count; q++) {
            int first = q == 0;
            float gate = gates[q];
            size_t m = 0;
            switch (index->dtype) {
            case GAL_DTYPE_F32:
                k->dot_f32((const float *)prepared + q * pd, (const float *)block, pd, pd, nb,
                           scores, first);
                m = k->select(NULL, NULL, 0.0f, scores, nb, gate, selected);
                break;
            case GAL_DTYPE_F16:
                k->dot_f16((const float *)prepared + q * pd, (const uint16_t *)block, pd, pd, nb,
                           scores, first);
                m = k->select(NULL, NULL, 0.0f, scores, nb, gate, selected);
                break;
            case GAL_DTYPE_INT8:
                k->dot_i8((const int8_t *)prepared + q * pd, (const int8_t *)block, pd, pd, nb,
                          dots, first);
                m = k->select(dots, a->scales + start, q_scales[q], scores, nb, gate, selected);
                break;
            }
            /* Few rows pass the gate once the heaps are full: ~k log(n / k) per query. */
            struct gal_candidate *fh = faces + q * k_faces, *sh = subjects + q * k_subjects;
            for (size_t s = 0; s < m; s++) {
                size_t i = selected[s];
                if (!(scores[i] > gate)) continue; /* the gate rose meanwhile */
                size_t row = start + i;
                if (a->subjects[row] == 0) continue; /* tombstone */
                struct gal_candidate c = {scores[i], a->face_ids[row], a->subjects[row]};
                heap_offer(fh, &face_counts[q], k_faces, &c);
                subject_offer(sh, &subject_counts[q], k_subjects, &c);
                float fg = face_counts[q] == k_faces ? fh[0].score : -INFINITY;
                float sg = subject_counts[q] == k_subjects ? sh[0].score : -INFINITY;
                gate = fg < sg ? fg : sg;
            }
            gates[q] = gate;
        }
    }
    pthread_rwlock_unlock(&index->lock);

    for (size_t q = 0; q < query_count; q++) {
        qsort(faces + q * k_faces, face_counts[q], sizeof *faces, compare_better_first);
        qsort(subjects + q * k_subjects, subject_counts[q], sizeof *subjects, compare_better_first);
    }
    base_aligned_free(prepared);
    free(q_scales);
    free(gates);
    return 0;
}
