/*
 * The gallery: collections in the store, one in-memory index per collection, and the glue
 * that keeps the two in step (see gallery.h for the model and internal.h for the locking).
 *
 * Every write goes: check the input; take write_mutex; replay changes other processes made
 * (so this process's view is current); write to the store (one transaction, durable on
 * return); apply the change to memory. When the store numbered our change applied_seq + 1
 * it is applied directly from what we already hold; otherwise another process wrote in
 * between and the change log is replayed from the store, which includes ours.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "gallery/internal.h"

/* Faces per gal_faces_add call: one transaction should stay a bounded amount of work. */
#define BATCH_MAX 100000
#define CHANGES_PER_READ 256
/* Searches of f16 / int8 collections score a candidate subject over all its faces, up to this
 * many (the lowest ids: a subject with more is scored over those and its faces among the
 * candidates), when it is among the first k or within a margin of the k-th subject: about
 * six standard deviations of the quantisation error on the difference of two similarities
 * (int8 ~5e-4 on one similarity, f16 ~4x less). */
#define SUBJECT_FACES_MAX 4096
#define SUBJECT_RESCORE_MARGIN(dtype) ((dtype) == GAL_DTYPE_INT8 ? 0.004f : 0.001f)

_Thread_local uint64_t gal_store_deadline_ns;

/*
 * pthread_mutex_timedlock, whose clock is CLOCK_REALTIME: the monotonic deadline becomes the
 * same distance from the wall clock's now. Not pthread_mutex_clocklock (glibc 2.30), which
 * takes the monotonic clock itself: ThreadSanitizer (clang 14, `make tsan`) does not intercept
 * it, so it reports every unlock of a mutex taken that way as "unlock of an unlocked mutex".
 * A wall-clock step during the wait lengthens or shortens it by the step, which at most moves
 * one 503 earlier or later.
 */
int gal_lock_until(pthread_mutex_t *m, uint64_t deadline_ns)
{
    if (!deadline_ns) return pthread_mutex_lock(m);
    uint64_t now = base_now_ns();
    uint64_t left = deadline_ns > now ? deadline_ns - now : 0;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    uint64_t ns = (uint64_t)until.tv_nsec + left % 1000000000u;
    until.tv_sec += (time_t)(left / 1000000000u + ns / 1000000000u);
    until.tv_nsec = (long)(ns % 1000000000u);
    return pthread_mutex_timedlock(m, &until);
}

int gal_store_lock(pthread_mutex_t *m, int timeout_ms, const char *what)
{
    uint64_t deadline = gal_store_deadline_ns;
    int rc = gal_lock_until(m, deadline);
    if (rc == 0) return 0;
    if (!deadline) return base_error_set(BASE_ERR_IO, "%s", what);
    return base_error_set(BASE_ERR_IO,
                          "gallery store: no answer within %d ms: waited for %s behind another "
                          "call waiting on the store (VULTUS_STORE_TIMEOUT_MS)",
                          timeout_ms, what);
}

int64_t gal_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int gal_error_context(int code, const char *fmt, ...)
{
    char saved[512], context[256];
    snprintf(saved, sizeof saved, "%s", base_error_message());
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(context, sizeof context, fmt, ap);
    va_end(ap);
    return base_error_set(code, "%s: %s", context, saved);
}

const char *gal_dtype_name(enum gal_dtype dtype)
{
    switch (dtype) {
    case GAL_DTYPE_F32: return "f32";
    case GAL_DTYPE_F16: return "f16";
    case GAL_DTYPE_INT8: return "int8";
    }
    return NULL;
}

int gal_dtype_parse(const char *text, enum gal_dtype *dtype)
{
    static const enum gal_dtype all[] = {GAL_DTYPE_F32, GAL_DTYPE_F16, GAL_DTYPE_INT8};
    for (size_t i = 0; text && i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(text, gal_dtype_name(all[i])) == 0) {
            *dtype = all[i];
            return 0;
        }
    }
    return base_error_set(BASE_ERR_INVALID, "storage type \"%s\" is not f32, f16 or int8",
                          text ? text : "(null)");
}

/* ---- checks of input ------------------------------------------------------------------ */

int gal_check_collection_name(const char *name)
{
    if (!name) return base_error_set(BASE_ERR_INVALID, "collection name is missing");
    size_t n = strnlen(name, GAL_NAME_MAX + 1);
    if (n == 0 || n > GAL_NAME_MAX)
        return base_error_set(BASE_ERR_INVALID, "collection name must have 1 to %d characters",
                              GAL_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-' || c == '.';
        if (!ok)
            return base_error_set(BASE_ERR_INVALID,
                                  "collection name \"%s\": character %zu is not one of "
                                  "A-Z a-z 0-9 _ - .",
                                  name, i + 1);
    }
    /* A name is a path segment of the API (/v1/collections/NAME/...), where HTTP clients
     * resolve "." and ".." away (RFC 3986): such a collection could not be reached. */
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return base_error_set(BASE_ERR_INVALID,
                              "collection name \"%s\" is not allowed (a URL path would drop it)",
                              name);
    return 0;
}

/* 1..max bytes of UTF-8 (ids are returned in JSON, which is UTF-8); control characters never
 * (they break logs and terminals), spaces if asked. */
static int check_text(const char *what, const char *text, size_t max, int allow_space)
{
    if (!text) return base_error_set(BASE_ERR_INVALID, "%s is missing", what);
    size_t n = strnlen(text, max + 1);
    if (n == 0 || n > max)
        return base_error_set(BASE_ERR_INVALID, "%s must have 1 to %zu bytes", what, max);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c == 0x7f || (c == ' ' && !allow_space))
            return base_error_set(BASE_ERR_INVALID, "%s has a %s at byte %zu", what,
                                  c == ' ' ? "space" : "control character", i + 1);
        size_t len = base_utf8_seq((const unsigned char *)text + i, n - i);
        if (len == 0)
            return base_error_set(BASE_ERR_INVALID, "%s is not UTF-8 at byte %zu", what, i + 1);
        /* U+0080..U+009F (C2 80..C2 9F) are control characters too: U+009B is a terminal's
         * CSI, as ESC [ is, and U+0085 a line break in some log viewers. */
        if (len == 2 && c == 0xc2 && (unsigned char)text[i + 1] <= 0x9f)
            return base_error_set(BASE_ERR_INVALID, "%s has a control character at byte %zu", what,
                                  i + 1);
        i += len;
    }
    return 0;
}

int gal_check_subject_id(const char *subject_id)
{
    int rc = check_text("subject id", subject_id, GAL_ID_MAX, 1);
    if (rc) return rc;
    /* An id is a path segment of the API (/v1/collections/C/subjects/ID), which URL clients
     * (browsers, WHATWG parsers, percent-encoded or not) resolve away, as collection names. */
    if (strcmp(subject_id, ".") == 0 || strcmp(subject_id, "..") == 0)
        return base_error_set(BASE_ERR_INVALID,
                              "subject id \"%s\" is not allowed (a URL path would drop it)",
                              subject_id);
    return 0;
}

int gal_check_door(const char *door)
{
    return check_text("door", door, GAL_DOOR_MAX, 1);
}

int gal_check_metadata(const char *metadata)
{
    if (!metadata) return 0;
    size_t n = strnlen(metadata, GAL_METADATA_MAX + 1);
    if (n > GAL_METADATA_MAX)
        return base_error_set(BASE_ERR_LIMIT, "subject metadata is longer than %d bytes",
                              GAL_METADATA_MAX);
    json_error_t error;
    json_t *value = json_loadb(metadata, n, JSON_DECODE_ANY, &error);
    if (!value)
        return base_error_set(BASE_ERR_INVALID, "subject metadata is not JSON: %s at line %d",
                              error.text, error.line);
    json_decref(value);
    return 0;
}

int gal_check_collection_info(const struct gal_collection_info *info)
{
    if (!info) return base_error_set(BASE_ERR_INVALID, "collection settings are missing");
    int rc = gal_check_collection_name(info->name);
    if (rc) return rc;
    if ((rc = check_text("embedding model id", info->model_id, GAL_MODEL_MAX, 0))) return rc;
    if (info->dim == 0 || info->dim > GAL_DIM_MAX)
        return base_error_set(BASE_ERR_INVALID, "collection \"%s\": dimension %u is not in 1..%d",
                              info->name, info->dim, GAL_DIM_MAX);
    if (!gal_dtype_name(info->dtype))
        return base_error_set(BASE_ERR_INVALID, "collection \"%s\": storage type %d is unknown",
                              info->name, (int)info->dtype);
    if (!(info->threshold >= -1.0f && info->threshold <= 1.0f))
        return base_error_set(BASE_ERR_INVALID,
                              "collection \"%s\": threshold %g is not a similarity in [-1, 1]",
                              info->name, (double)info->threshold);
    return 0;
}

/* Checks an embedding's model and dimension against a collection; writes it normalised. */
static int check_embedding(const struct gal_collection_info *info, const char *what,
                           size_t position, const char *model_id, uint32_t dim,
                           const float *embedding, float *normalised)
{
    if (!model_id || strcmp(model_id, info->model_id) != 0)
        return base_error_set(BASE_ERR_INVALID,
                              "%s %zu: embedding from model \"%s\", but collection \"%s\" is "
                              "pinned to model \"%s\"",
                              what, position, model_id ? model_id : "(none)", info->name,
                              info->model_id);
    if (dim != info->dim)
        return base_error_set(BASE_ERR_INVALID,
                              "%s %zu: embedding of dimension %u, but collection \"%s\" holds "
                              "dimension %u (model \"%s\")",
                              what, position, dim, info->name, info->dim, info->model_id);
    if (!embedding) return base_error_set(BASE_ERR_INVALID, "%s %zu: no embedding", what, position);
    double sum = 0.0;
    for (uint32_t i = 0; i < dim; i++) {
        if (!isfinite(embedding[i]))
            return base_error_set(BASE_ERR_INVALID, "%s %zu: embedding[%u] is %f", what, position,
                                  i, (double)embedding[i]);
        sum += (double)embedding[i] * embedding[i];
    }
    double norm = sqrt(sum);
    if (!(norm > 1e-20) || !isfinite(norm))
        return base_error_set(BASE_ERR_INVALID, "%s %zu: embedding has norm %g, cannot normalise",
                              what, position, norm);
    for (uint32_t i = 0; i < dim; i++)
        normalised[i] = (float)(embedding[i] / norm);
    return 0;
}

int gal_check_face(const struct gal_collection_info *info, const struct gal_face_input *face,
                   size_t position, float *normalised)
{
    if (!face) return base_error_set(BASE_ERR_INVALID, "face %zu is missing", position);
    int rc = gal_check_subject_id(face->subject_id);
    if (rc) return rc;
    rc = check_embedding(info, "face", position, face->model_id, face->dim, face->embedding,
                         normalised);
    if (rc) return rc;
    for (int b = 0; b < 4; b++)
        if (!isfinite(face->box[b]))
            return base_error_set(BASE_ERR_INVALID, "face %zu: box[%d] is %f", position, b,
                                  (double)face->box[b]);
    if (!isfinite(face->quality))
        return base_error_set(BASE_ERR_INVALID, "face %zu: quality is %f", position,
                              (double)face->quality);
    if (face->image_hash && *face->image_hash &&
        (rc = check_text("image hash", face->image_hash, GAL_HASH_MAX, 0)))
        return rc;
    if (face->thumbnail_len > GAL_THUMBNAIL_MAX)
        return base_error_set(BASE_ERR_LIMIT, "face %zu: thumbnail of %zu bytes, more than %d",
                              position, face->thumbnail_len, GAL_THUMBNAIL_MAX);
    if (face->thumbnail_len) {
        const uint8_t *t = face->thumbnail;
        if (!t || face->thumbnail_len < 4 || t[0] != 0xff || t[1] != 0xd8 || t[2] != 0xff)
            return base_error_set(BASE_ERR_INVALID, "face %zu: thumbnail is not a JPEG file",
                                  position);
    }
    return 0;
}

/* ---- collections in memory ------------------------------------------------------------ */

struct collection *gal_find_collection(struct gal *g, const char *name)
{
    for (struct collection *c = g->collections; c; c = c->next)
        if (strcmp(c->info.name, name) == 0) return c;
    return NULL;
}

static struct collection *find_by_id(struct gal *g, int64_t id)
{
    for (struct collection *c = g->collections; c; c = c->next)
        if (c->id == id) return c;
    return NULL;
}

/* Subjects deleted from a collection (write_mutex held). Never below 0: that would be a change
 * counted twice, a defect, said once in the log rather than shown as 2^64 - 1 subjects. */
static void subjects_removed(struct collection *c, uint64_t n)
{
    uint64_t have = atomic_load(&c->subjects);
    if (have < n)
        LOG_WARN("collection \"%s\": %llu subjects deleted of %llu counted", c->info.name,
                 (unsigned long long)n, (unsigned long long)have);
    atomic_store(&c->subjects, have >= n ? have - n : 0);
}

static void collection_free(struct collection *c)
{
    if (!c) return;
    gal_index_destroy(c->index);
    free(c);
}

static int collection_new(struct gal *g, const struct gal_store_collection *stored,
                          struct collection **out)
{
    *out = NULL;
    struct collection *c = calloc(1, sizeof *c);
    if (!c) return base_error_set(BASE_ERR_NOMEM, "cannot allocate a collection");
    c->id = stored->id;
    c->info = stored->info;
    atomic_init(&c->subjects, stored->info.subject_count); /* the store's, at its snapshot */
    c->info.subject_count = c->info.face_count = 0;
    int rc = gal_index_create(c->info.dim, c->info.dtype, g->kernels, &c->index);
    if (rc) {
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* Puts `fresh` in the list in place of the collection with its id, if any. write_mutex held. */
static void install(struct gal *g, struct collection *fresh)
{
    pthread_rwlock_wrlock(&g->collections_lock);
    struct collection *old = NULL;
    for (struct collection **p = &g->collections; *p; p = &(*p)->next) {
        if ((*p)->id == fresh->id) {
            old = *p;
            *p = old->next;
            break;
        }
    }
    fresh->next = g->collections;
    g->collections = fresh;
    pthread_rwlock_unlock(&g->collections_lock);
    collection_free(old); /* no search can hold it: they hold collections_lock shared */
}

static void uninstall(struct gal *g, int64_t id)
{
    pthread_rwlock_wrlock(&g->collections_lock);
    struct collection *old = NULL;
    for (struct collection **p = &g->collections; *p; p = &(*p)->next) {
        if ((*p)->id == id) {
            old = *p;
            *p = old->next;
            break;
        }
    }
    pthread_rwlock_unlock(&g->collections_lock);
    collection_free(old);
}

/* Building collections from the store. */
struct load_ctx {
    struct gal *g;
    struct collection *loaded; /* a list, newest first */
    uint64_t faces;
};

static int load_collection_cb(void *ctx, const struct gal_store_collection *stored,
                              uint64_t face_count)
{
    struct load_ctx *l = ctx;
    struct collection *c;
    int rc = collection_new(l->g, stored, &c);
    if (rc) return rc;
    c->next = l->loaded;
    l->loaded = c;
    if (face_count > GAL_FACES_MAX)
        return base_error_set(BASE_ERR_LIMIT, "collection \"%s\" has %llu faces, more than %u",
                              stored->info.name, (unsigned long long)face_count, GAL_FACES_MAX);
    return face_count ? gal_index_reserve(c->index, (size_t)face_count) : 0;
}

static int load_face_cb(void *ctx, int64_t face_id, int64_t subject_rowid, const float *embedding)
{
    struct load_ctx *l = ctx;
    l->faces++;
    return gal_index_add(l->loaded->index, face_id, subject_rowid, embedding);
}

static void free_list(struct collection *c)
{
    while (c) {
        struct collection *next = c->next;
        collection_free(c);
        c = next;
    }
}

/* Gives loaded collections their HNSW settings: a large one starts its graph build now,
 * after its rows are all in (not while the loader is still adding them). */
static void arm_ann(struct gal *g, struct collection *list)
{
    for (struct collection *c = list; c; c = c->next)
        gal_index_set_ann(c->index, &g->ann);
}

/* Loads one collection (not installed). BASE_ERR_NOT_FOUND when it no longer exists. */
static int load_one(struct gal *g, int64_t id, struct collection **out)
{
    struct load_ctx l = {g, NULL, 0};
    struct gal_store_loader loader = {&l, load_collection_cb, load_face_cb};
    uint64_t seq;
    *out = NULL;
    int rc = g->store->ops->load(g->store, id, &loader, &seq);
    if (rc) {
        free_list(l.loaded);
        return rc;
    }
    for (struct collection *c = l.loaded; c; c = c->next)
        c->loaded_seq = seq;
    arm_ann(g, l.loaded);
    *out = l.loaded;
    return 0;
}

/* ---- the change log ------------------------------------------------------------------- */

static int apply_change(struct gal *g, const struct gal_change *ch)
{
    struct collection *c = find_by_id(g, ch->collection_id);
    struct collection *fresh = NULL;
    int rc = 0;
    /* Loaded from a snapshot that holds this change already (see struct collection). */
    if (c && ch->seq <= c->loaded_seq) return 0;
    switch (ch->kind) {
    case GAL_CHANGE_COLLECTION_CREATE:
    case GAL_CHANGE_COLLECTION_UPDATE: {
        if (c && ch->kind == GAL_CHANGE_COLLECTION_CREATE) return 0;
        struct gal_store_collection now;
        rc = g->store->ops->collection_get(g->store, NULL, ch->collection_id, &now);
        if (rc == BASE_ERR_NOT_FOUND) return 0; /* deleted since: its deletion follows */
        if (rc) return rc;
        /* gal_options.only_collection: another collection stays out of memory */
        if (g->only_collection[0] && strcmp(now.info.name, g->only_collection) != 0) return 0;
        if (c && c->info.dtype == now.info.dtype) {
            pthread_rwlock_wrlock(&g->collections_lock);
            c->info.threshold = now.info.threshold;
            pthread_rwlock_unlock(&g->collections_lock);
            return 0;
        }
        rc = load_one(g, ch->collection_id, &fresh);
        if (rc == BASE_ERR_NOT_FOUND) return 0;
        if (rc) return rc;
        install(g, fresh);
        return 0;
    }
    case GAL_CHANGE_COLLECTION_DELETE: uninstall(g, ch->collection_id); return 0;
    case GAL_CHANGE_SUBJECT_ADD:
        if (c) atomic_fetch_add(&c->subjects, 1);
        return 0;
    case GAL_CHANGE_SUBJECT_UPDATE: return 0;
    case GAL_CHANGE_SUBJECT_DELETE:
        if (c) {
            gal_index_remove_subject(c->index, ch->subject_rowid);
            subjects_removed(c, 1);
        }
        return 0;
    case GAL_CHANGE_FACE_ADD: {
        if (!c || gal_index_contains(c->index, ch->face_id)) return 0;
        float *embedding = malloc(c->info.dim * sizeof *embedding);
        if (!embedding) return base_error_set(BASE_ERR_NOMEM, "cannot apply a change");
        struct gal_store_face_ref ref;
        rc = g->store->ops->faces_lookup(g->store, c->id, &ch->face_id, 1, c->info.dim, embedding,
                                         &ref);
        if (!rc && ref.found)
            rc = gal_index_add(c->index, ch->face_id, ref.subject_rowid, embedding);
        free(embedding);
        return rc;
    }
    case GAL_CHANGE_FACE_DELETE:
        if (c) gal_index_remove(c->index, ch->face_id); /* absent already: fine */
        return 0;
    }
    LOG_WARN("gallery change %llu has unknown kind %d: ignored", (unsigned long long)ch->seq,
             (int)ch->kind);
    return 0;
}

int gal_catch_up(struct gal *g)
{
    struct gal_change changes[CHANGES_PER_READ];
    if (g->store_only) return 0; /* nothing in memory to bring up to date */
    for (;;) {
        size_t n = 0;
        int rc = g->store->ops->changes(g->store, g->applied_seq, CHANGES_PER_READ, changes, &n);
        if (rc) return rc;
        for (size_t i = 0; i < n; i++) {
            if ((rc = apply_change(g, &changes[i]))) return rc; /* retried on the next call */
            g->applied_seq = changes[i].seq;
        }
        if (n < CHANGES_PER_READ) return 0;
    }
}

/*
 * After a write numbered first_seq .. last_seq in the change log, committed: 1 when this
 * handle had applied everything before it, so the caller applies the write in memory itself
 * (and applied_seq moves past it), else the log is replayed (gal_catch_up), which applies it
 * with whatever others wrote before (0, or an error). The numbers need not be one apart (a
 * PostgreSQL sequence may skip some): no other writer numbers a change in between, as every
 * writer numbers its changes under the store's one write lock and commits before the next
 * one takes it (store.h).
 */
static int direct_or_replay_span(struct gal *g, uint64_t first_seq, uint64_t last_seq)
{
    if (g->store_only) return 0; /* written to the store, which is all there is */
    if (first_seq == g->applied_seq + 1) {
        g->applied_seq = last_seq;
        return 1;
    }
    return gal_catch_up(g);
}

/* direct_or_replay_span for `count` changes numbered one apart. */
static int direct_or_replay(struct gal *g, uint64_t first_seq, size_t count)
{
    return direct_or_replay_span(g, first_seq, first_seq + count - 1);
}

/* ---- open / close --------------------------------------------------------------------- */

int gal_refuse_store_only(const struct gal *g)
{
    if (!g->store_only) return 0;
    return base_error_set(BASE_ERR_UNSUPPORTED,
                          "the gallery was opened store-only (no collection in memory)");
}

int gal_open(const char *path, const struct gal_options *options, struct gal **out)
{
    *out = NULL;
    uint64_t start = base_now_ns();
    struct gal *g = calloc(1, sizeof *g);
    if (!g) return base_error_set(BASE_ERR_NOMEM, "cannot allocate a gallery");
    const char *kernels = options ? options->kernels : NULL;
    g->kernels = gal_kernels_find(kernels);
    if (!g->kernels) {
        free(g);
        return base_error_set(BASE_ERR_UNSUPPORTED,
                              "kernels \"%s\" are unknown or this CPU cannot run them", kernels);
    }
    pthread_mutex_init(&g->write_mutex, NULL);
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&g->collections_lock, &attr);
    pthread_rwlockattr_destroy(&attr);

    const uint64_t min_faces = options ? options->ann_min_faces : 0; /* 0: never */
    g->ann = (struct gal_ann_config){
        .min_faces = min_faces >= (uint64_t)SIZE_MAX ? SIZE_MAX : (size_t)min_faces,
        .m = options ? options->ann_m : 0,
        .ef_construction = options ? options->ann_ef_construction : 0,
        .ef_search = options ? options->ann_ef_search : 0,
        .threads = options ? options->ann_build_threads : 0,
    };
    int rc = gal_location_is_url(path) ? gal_store_postgres_open(path, options, &g->store)
                                       : gal_store_sqlite_open(path, options, &g->store);
    if (rc) goto fail;
    char shown[512];
    gal_location_redact(path, shown, sizeof shown); /* a URL may hold a password */
    if (options && options->store_only) {
        g->store_only = 1;
        LOG_DEBUG("gallery %s: store opened in %.0f ms (store only: no collection loaded)", shown,
                  (double)(base_now_ns() - start) / 1e6);
        *out = g;
        return 0;
    }
    /* only_collection: its id, for a load of it alone (0: every collection). */
    int64_t only_id = 0;
    if (options && options->only_collection) {
        const char *name = options->only_collection;
        if ((rc = gal_check_collection_name(name))) goto fail;
        snprintf(g->only_collection, sizeof g->only_collection, "%s", name);
        struct gal_store_collection stored;
        rc = g->store->ops->collection_get(g->store, name, 0, &stored);
        if (rc == BASE_ERR_NOT_FOUND)
            rc = base_error_set(rc, "collection \"%s\" does not exist", name);
        if (rc) goto fail;
        only_id = stored.id;
    }
    struct load_ctx l = {g, NULL, 0};
    struct gal_store_loader loader = {&l, load_collection_cb, load_face_cb};
    uint64_t loaded_seq = 0;
    rc = g->store->ops->load(g->store, only_id, &loader, &loaded_seq);
    if (rc == BASE_ERR_NOT_FOUND && only_id) /* deleted since the look-up */
        rc = base_error_set(rc, "collection \"%s\" does not exist", g->only_collection);
    g->collections = l.loaded;
    g->applied_seq = loaded_seq;
    if (rc) goto fail;
    for (struct collection *c = g->collections; c; c = c->next)
        c->loaded_seq = g->applied_seq;
    arm_ann(g, g->collections);
    size_t n = 0;
    for (struct collection *c = g->collections; c; c = c->next)
        n++;
    if (only_id)
        LOG_DEBUG("gallery %s: collection %s alone, %llu faces in memory in %.0f ms (kernels %s, "
                  "change %llu)",
                  shown, g->only_collection, (unsigned long long)l.faces,
                  (double)(base_now_ns() - start) / 1e6, g->kernels->name,
                  (unsigned long long)loaded_seq);
    else
        LOG_INFO("gallery %s: %zu collections, %llu faces loaded in %.0f ms (kernels %s, change "
                 "%llu)",
                 shown, n, (unsigned long long)l.faces, (double)(base_now_ns() - start) / 1e6,
                 g->kernels->name, (unsigned long long)loaded_seq);
    *out = g;
    return 0;
fail:
    gal_close(g);
    return rc;
}

void gal_close(struct gal *g)
{
    if (!g) return;
    free_list(g->collections);
    if (g->store) g->store->ops->close(g->store);
    pthread_mutex_destroy(&g->write_mutex);
    pthread_rwlock_destroy(&g->collections_lock);
    free(g);
}

int gal_refresh(struct gal *g)
{
    STORE_CALL(g);
    int rc = gal_refuse_store_only(g);
    if (!rc) rc = gal_lock_writes(g);
    if (rc) return rc;
    rc = gal_catch_up(g);
    pthread_mutex_unlock(&g->write_mutex);
    return rc;
}

uint64_t gal_sequence(struct gal *g)
{
    return atomic_load(&g->applied_seq);
}

/*
 * Read-your-writes across processes: with a store that other processes write to at the same
 * time (PostgreSQL, several service replicas), a read first asks the store for its last
 * change (one cheap query) and replays what this process has not applied yet, so a client
 * that enrolled a face through one replica finds it through any other on its next request.
 * Nothing to do for a store without last_seq (SQLite: one process serves it).
 */
static int sync_for_read(struct gal *g)
{
    int rc = gal_refuse_store_only(g);
    if (rc) return rc;
    if (!g->store->ops->last_seq) return 0;
    uint64_t last = 0;
    rc = g->store->ops->last_seq(g->store, &last);
    if (rc) return rc;
    if (last <= gal_sequence(g)) return 0;
    return gal_refresh(g);
}

int gal_check(struct gal *g)
{
    STORE_CALL(g);
    return g->store->ops->check(g->store);
}

/* ---- collections ---------------------------------------------------------------------- */

/* A store-only gallery's collection by name: its id and settings, from store_only_cache or
 * the store (internal.h says why). */
static int store_only_lookup(struct gal *g, const char *name, int64_t *id,
                             struct gal_collection_info *info)
{
    pthread_rwlock_rdlock(&g->collections_lock);
    int hit = g->store_only_cache.id && strcmp(g->store_only_cache.info.name, name) == 0;
    if (hit) {
        *id = g->store_only_cache.id;
        *info = g->store_only_cache.info;
    }
    pthread_rwlock_unlock(&g->collections_lock);
    if (hit) return 0;
    struct gal_store_collection stored;
    int rc = g->store->ops->collection_get(g->store, name, 0, &stored);
    if (rc) return rc;
    *id = stored.id;
    *info = stored.info;
    pthread_rwlock_wrlock(&g->collections_lock);
    g->store_only_cache.id = stored.id;
    g->store_only_cache.info = stored.info;
    pthread_rwlock_unlock(&g->collections_lock);
    return 0;
}

/* After this process deleted or changed a collection: look it up again next time. */
static void store_only_forget(struct gal *g)
{
    if (!g->store_only) return;
    pthread_rwlock_wrlock(&g->collections_lock);
    g->store_only_cache.id = 0;
    pthread_rwlock_unlock(&g->collections_lock);
}

/* Takes write_mutex, catches up and finds the collection; on error write_mutex is released. */
static int begin_write(struct gal *g, const char *name, struct collection **c)
{
    int rc = name ? gal_check_collection_name(name) : 0;
    if (rc) return rc;
    if ((rc = gal_lock_writes(g))) return rc;
    if (g->store_only) {
        /* No collection in memory: the write needs the collection's id and settings only,
         * which the store has (it applies nothing to an index afterwards: direct_or_replay). */
        struct collection *t = &g->store_only_target;
        if (name && (rc = store_only_lookup(g, name, &t->id, &t->info))) goto fail;
        if (name) *c = t;
        return 0;
    }
    if ((rc = gal_catch_up(g))) goto fail;
    if (name && !(*c = gal_find_collection(g, name))) {
        rc = base_error_set(BASE_ERR_NOT_FOUND, "collection \"%s\" does not exist", name);
        goto fail;
    }
    return 0;
fail:
    pthread_mutex_unlock(&g->write_mutex);
    return rc;
}

int gal_collection_create(struct gal *g, const struct gal_collection_info *info)
{
    STORE_CALL(g);
    int rc = gal_check_collection_info(info);
    if (rc) return rc;
    if ((rc = begin_write(g, NULL, NULL))) return rc;
    struct gal_store_collection stored = {0, *info};
    /* The store's clock, not the caller's field: a caller copying another collection's
     * settings would otherwise give the new one the old one's creation time (only an import
     * keeps the time from its file, through the store directly). */
    stored.info.created_ms = 0;
    stored.info.subject_count = stored.info.face_count = 0;
    uint64_t seq = 0;
    struct collection *c = NULL;
    if (gal_find_collection(g, info->name)) {
        rc = base_error_set(BASE_ERR_EXISTS, "collection \"%s\" already exists", info->name);
        goto done;
    }
    if ((rc = g->store->ops->collection_create(g->store, &stored.info, &stored.id, &seq)))
        goto done;
    rc = direct_or_replay(g, seq, 1);
    if (rc == 1) {
        /* Read back for the creation time, which the store set (its clock, not ours). */
        struct gal_store_collection now;
        rc = g->store->ops->collection_get(g->store, NULL, stored.id, &now);
        if (!rc) {
            stored.info.created_ms = now.info.created_ms;
            rc = collection_new(g, &stored, &c);
        }
        if (!rc) {
            c->loaded_seq = seq;
            arm_ann(g, c);
            install(g, c);
        } else
            g->applied_seq = seq - 1; /* durable: the next write or refresh retries */
    }
done:
    pthread_mutex_unlock(&g->write_mutex);
    return rc;
}

int gal_collection_delete(struct gal *g, const char *name)
{
    STORE_CALL(g);
    struct collection *c;
    int rc = begin_write(g, name, &c);
    if (rc) return rc;
    uint64_t seq = 0;
    int64_t id = c->id;
    if ((rc = g->store->ops->collection_delete(g->store, id, &seq))) goto done;
    store_only_forget(g);
    rc = direct_or_replay(g, seq, 1);
    if (rc == 1) {
        uninstall(g, id);
        rc = 0;
    }
done:
    pthread_mutex_unlock(&g->write_mutex);
    /* The collection is gone for every reader; its rows go now, in chunks, while other
     * writes of this process go on (write_mutex released). A failure leaves them hidden, and
     * the next open purges them. */
    if (rc == 0 && g->store->ops->purge && g->store->ops->purge(g->store) != 0)
        LOG_WARN("collection %s deleted, its rows not yet: %s", name, base_error_message());
    return rc;
}

int gal_collection_set_threshold(struct gal *g, const char *name, float threshold)
{
    STORE_CALL(g);
    if (!(threshold >= -1.0f && threshold <= 1.0f))
        return base_error_set(BASE_ERR_INVALID, "threshold %g is not a similarity in [-1, 1]",
                              (double)threshold);
    struct collection *c;
    int rc = begin_write(g, name, &c);
    if (rc) return rc;
    uint64_t seq = 0;
    if ((rc = g->store->ops->collection_update(g->store, c->id, threshold, c->info.dtype, &seq)))
        goto done;
    store_only_forget(g);
    rc = direct_or_replay(g, seq, 1);
    if (rc == 1) {
        pthread_rwlock_wrlock(&g->collections_lock);
        c->info.threshold = threshold;
        pthread_rwlock_unlock(&g->collections_lock);
        rc = 0;
    }
done:
    pthread_mutex_unlock(&g->write_mutex);
    return rc;
}

int gal_collection_set_dtype(struct gal *g, const char *name, enum gal_dtype dtype)
{
    STORE_CALL(g);
    if (!gal_dtype_name(dtype))
        return base_error_set(BASE_ERR_INVALID, "storage type %d is unknown", (int)dtype);
    struct collection *c;
    int rc = begin_write(g, name, &c);
    if (rc) return rc;
    uint64_t seq = 0;
    if (c->info.dtype == dtype) goto done;
    if ((rc = g->store->ops->collection_update(g->store, c->id, c->info.threshold, dtype, &seq)))
        goto done;
    store_only_forget(g);
    rc = direct_or_replay(g, seq, 1);
    if (rc == 1) {
        /* The new index is built from the store while searches keep using the old one. */
        struct collection *fresh = NULL;
        rc = load_one(g, c->id, &fresh);
        if (!rc)
            install(g, fresh);
        else
            g->applied_seq = seq - 1; /* durable: the next write or refresh retries */
    }
done:
    pthread_mutex_unlock(&g->write_mutex);
    return rc;
}

/* A collection's settings and, with `full`, its creation time and counts, as this process
 * holds them (no I/O); collections_lock held. */
static void collection_info_now(struct collection *c, int full, struct gal_collection_info *info)
{
    *info = c->info;
    info->created_ms = full ? c->info.created_ms : 0;
    info->subject_count = full ? atomic_load(&c->subjects) : 0;
    info->face_count = full ? gal_index_faces(c->index) : 0; /* the index's lock, briefly */
}

/*
 * A collection as held in memory: the settings, and with `full` its creation time and counts.
 * A collection not held is looked for again after gal_refresh(), so one another process has
 * just created is found.
 */
static int collection_from_memory(struct gal *g, const char *name, int full,
                                  struct gal_collection_info *info)
{
    int rc = gal_check_collection_name(name);
    if (!rc) rc = sync_for_read(g);
    if (rc) return rc;
    for (int attempt = 0; attempt < 2; attempt++) {
        pthread_rwlock_rdlock(&g->collections_lock);
        struct collection *c = gal_find_collection(g, name);
        if (c) collection_info_now(c, full, info);
        pthread_rwlock_unlock(&g->collections_lock);
        if (c) return 0;
        /* Not in memory: perhaps created by another process since the last refresh. */
        if (attempt == 0 && (rc = gal_refresh(g))) return rc;
    }
    return base_error_set(BASE_ERR_NOT_FOUND, "collection \"%s\" does not exist", name);
}

/* A store-only gallery's collection (gal_options.store_only): read from the store, counts
 * included (cheap: counted by index, never the faces read). */
static int collection_from_store(struct gal *g, const char *name, struct gal_collection_info *info)
{
    int rc = gal_check_collection_name(name);
    if (rc) return rc;
    struct gal_store_collection stored;
    if ((rc = g->store->ops->collection_get(g->store, name, 0, &stored))) return rc;
    *info = stored.info;
    return 0;
}

int gal_collection_get(struct gal *g, const char *name, struct gal_collection_info *info)
{
    STORE_CALL(g);
    if (g->store_only) return collection_from_store(g, name, info);
    return collection_from_memory(g, name, 1, info);
}

int gal_collection_settings(struct gal *g, const char *name, struct gal_collection_info *info)
{
    STORE_CALL(g);
    if (g->store_only) return collection_from_store(g, name, info);
    return collection_from_memory(g, name, 0, info);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct gal_collection_info *)a)->name,
                  ((const struct gal_collection_info *)b)->name);
}

/* gal_collection_list of a store-only gallery: the store's list, by name. */
static int collection_list_from_store(struct gal *g, struct gal_collection_info **list,
                                      size_t *count)
{
    struct gal_store_collection *stored = NULL;
    size_t n = 0;
    int rc = g->store->ops->collection_list(g->store, &stored, &n);
    if (rc) return rc;
    struct gal_collection_info *infos = malloc((n ? n : 1) * sizeof *infos);
    if (!infos) {
        free(stored);
        return base_error_set(BASE_ERR_NOMEM, "cannot list %zu collections", n);
    }
    for (size_t i = 0; i < n; i++)
        infos[i] = stored[i].info;
    free(stored);
    qsort(infos, n, sizeof *infos, by_name);
    *list = infos;
    *count = n;
    return 0;
}

int gal_collection_list(struct gal *g, struct gal_collection_info **list, size_t *count)
{
    STORE_CALL(g);
    *list = NULL;
    *count = 0;
    if (g->store_only) return collection_list_from_store(g, list, count);
    int rc = sync_for_read(g);
    if (rc) return rc;
    pthread_rwlock_rdlock(&g->collections_lock);
    size_t n = 0;
    for (struct collection *c = g->collections; c; c = c->next)
        n++;
    struct gal_collection_info *infos = malloc((n ? n : 1) * sizeof *infos);
    if (infos) {
        size_t i = 0;
        for (struct collection *c = g->collections; c; c = c->next)
            collection_info_now(c, 1, &infos[i++]);
    }
    pthread_rwlock_unlock(&g->collections_lock);
    if (!infos) return base_error_set(BASE_ERR_NOMEM, "cannot list %zu collections", n);
    qsort(infos, n, sizeof *infos, by_name);
    *list = infos;
    *count = n;
    return 0;
}

int gal_collection_id_for_read(struct gal *g, const char *name, int64_t *id)
{
    int rc = gal_check_collection_name(name);
    if (!rc && g->store_only) {
        struct gal_collection_info info;
        return store_only_lookup(g, name, id, &info);
    }
    if (!rc) rc = sync_for_read(g);
    if (rc) return rc;
    pthread_rwlock_rdlock(&g->collections_lock);
    struct collection *c = gal_find_collection(g, name);
    *id = c ? c->id : 0;
    pthread_rwlock_unlock(&g->collections_lock);
    return c ? 0 : base_error_set(BASE_ERR_NOT_FOUND, "collection \"%s\" does not exist", name);
}

/* ---- subjects ------------------------------------------------------------------------- */

int gal_subject_add(struct gal *g, const char *collection, const char *subject_id,
                    const char *metadata_json)
{
    STORE_CALL(g);
    int rc = gal_check_subject_id(subject_id);
    if (!rc) rc = gal_check_metadata(metadata_json);
    if (rc) return rc;
    struct collection *c;
    if ((rc = begin_write(g, collection, &c))) return rc;
    uint64_t seq = 0;
    rc = g->store->ops->subject_add(g->store, c->id, subject_id,
                                    metadata_json ? metadata_json : "{}", 0, &seq);
    if (rc == BASE_ERR_EXISTS)
        rc = base_error_set(rc, "subject \"%s\" already exists in collection \"%s\"", subject_id,
                            collection);
    if (!rc && (rc = direct_or_replay(g, seq, 1)) == 1) {
        atomic_fetch_add(&c->subjects, 1);
        rc = 0;
    }
    pthread_mutex_unlock(&g->write_mutex);
    return rc;
}

int gal_subjects_add(struct gal *g, const char *collection, const char *const *subject_ids,
                     const char *const *metadata_json, size_t count)
{
    STORE_CALL(g);
    if (count == 0 || count > BATCH_MAX || !subject_ids)
        return base_error_set(BASE_ERR_INVALID, "%zu subjects in one call: must be 1..%d", count,
                              BATCH_MAX);
    for (size_t i = 0; i < count; i++) {
        int rc = gal_check_subject_id(subject_ids[i]);
        if (!rc && metadata_json) rc = gal_check_metadata(metadata_json[i]);
        if (rc) return gal_error_context(rc, "subject %zu", i);
    }
    struct collection *c;
    int rc = begin_write(g, collection, &c);
    if (rc) return rc;
    struct gal_store *s = g->store;
    uint64_t first_seq = 0, seq = 0;
    if ((rc = s->ops->begin(s))) goto done;
    for (size_t i = 0; i < count && !rc; i++) {
        const char *meta = metadata_json && metadata_json[i] ? metadata_json[i] : "{}";
        rc = s->ops->subject_add(s, c->id, subject_ids[i], meta, 0, &seq);
        if (rc == BASE_ERR_EXISTS)
            rc = base_error_set(rc, "subject \"%s\" already exists in collection \"%s\"",
                                subject_ids[i], collection);
        if (i == 0) first_seq = seq;
    }
    if (rc) {
        s->ops->rollback(s);
        goto done;
    }
    if ((rc = s->ops->commit(s))) goto done;
    if ((rc = direct_or_replay(g, first_seq, count)) == 1) {
        atomic_fetch_add(&c->subjects, count);
        rc = 0;
    }
done:
    pthread_mutex_unlock(&g->write_mutex);
    return rc;
}

int gal_subject_set_metadata(struct gal *g, const char *collection, const char *subject_id,
                             const char *metadata_json)
{
    STORE_CALL(g);
    int rc = gal_check_subject_id(subject_id);
    if (!rc) rc = gal_check_metadata(metadata_json);
    if (rc) return rc;
    struct collection *c;
    if ((rc = begin_write(g, collection, &c))) return rc;
    uint64_t seq = 0;
    rc = g->store->ops->subject_set_metadata(g->store, c->id, subject_id,
                                             metadata_json ? metadata_json : "{}", &seq);
    if (!rc && (rc = direct_or_replay(g, seq, 1)) == 1) rc = 0; /* metadata: not in memory */
    pthread_mutex_unlock(&g->write_mutex);
    return rc;
}

int gal_subject_delete(struct gal *g, const char *collection, const char *subject_id)
{
    STORE_CALL(g);
    int rc = gal_check_subject_id(subject_id);
    if (rc) return rc;
    struct collection *c;
    if ((rc = begin_write(g, collection, &c))) return rc;
    uint64_t seq = 0;
    int64_t rowid = 0;
    rc = g->store->ops->subject_delete(g->store, c->id, subject_id, &rowid, &seq);
    if (!rc) rc = direct_or_replay(g, seq, 1);
    if (rc == 1) {
        gal_index_remove_subject(c->index, rowid);
        subjects_removed(c, 1);
        rc = 0;
    }
    pthread_mutex_unlock(&g->write_mutex);
    return rc;
}

int gal_subject_get(struct gal *g, const char *collection, const char *subject_id,
                    struct gal_subject_info *info)
{
    STORE_CALL(g);
    memset(info, 0, sizeof *info);
    int64_t id;
    int rc = gal_check_subject_id(subject_id);
    if (!rc) rc = gal_collection_id_for_read(g, collection, &id);
    if (rc) return rc;
    return g->store->ops->subject_get(g->store, id, subject_id, info);
}

void gal_subject_info_deinit(struct gal_subject_info *info)
{
    if (!info) return;
    free(info->metadata);
    info->metadata = NULL;
}

int gal_subject_list(struct gal *g, const char *collection, const char *after, size_t limit,
                     struct gal_subject_info **list, size_t *count)
{
    STORE_CALL(g);
    *list = NULL;
    *count = 0;
    if (limit == 0 || limit > 10000)
        return base_error_set(BASE_ERR_INVALID, "subject list limit %zu is not in 1..10000", limit);
    int64_t id;
    int rc = gal_collection_id_for_read(g, collection, &id);
    if (rc) return rc;
    return g->store->ops->subject_list(g->store, id, after, limit, list, count);
}

void gal_subject_list_free(struct gal_subject_info *list, size_t count)
{
    if (!list) return;
    for (size_t i = 0; i < count; i++)
        gal_subject_info_deinit(&list[i]);
    free(list);
}

/* ---- faces ---------------------------------------------------------------------------- */

int gal_faces_add(struct gal *g, const char *collection, const struct gal_face_input *faces,
                  size_t count, int64_t *face_ids)
{
    STORE_CALL(g);
    if (count == 0 || count > BATCH_MAX)
        return base_error_set(BASE_ERR_INVALID, "%zu faces in one call: must be 1..%d", count,
                              BATCH_MAX);
    if (!faces || !face_ids) return base_error_set(BASE_ERR_INVALID, "faces or face_ids missing");
    struct collection *c;
    int rc = begin_write(g, collection, &c);
    if (rc) return rc;
    uint32_t dim = c->info.dim;
    float *normalised = malloc(count * dim * sizeof *normalised);
    struct gal_face_input *inputs = malloc(count * sizeof *inputs);
    int64_t *subject_rowids = malloc(count * sizeof *subject_rowids);
    if (!normalised || !inputs || !subject_rowids) {
        rc = base_error_set(BASE_ERR_NOMEM, "cannot allocate %zu faces", count);
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        if ((rc = gal_check_face(&c->info, &faces[i], i, normalised + i * dim))) goto done;
        inputs[i] = faces[i];
        inputs[i].embedding = normalised + i * dim;
    }
    uint64_t first_seq = 0;
    rc = g->store->ops->faces_add(g->store, c->id, inputs, NULL, count, face_ids, subject_rowids,
                                  &first_seq);
    if (rc == BASE_ERR_NOT_FOUND) rc = gal_error_context(rc, "collection \"%s\"", collection);
    if (!rc) rc = direct_or_replay(g, first_seq, count);
    if (rc == 1) {
        rc = 0;
        for (size_t i = 0; i < count && !rc; i++)
            rc = gal_index_add(c->index, face_ids[i], subject_rowids[i], normalised + i * dim);
        if (rc) {
            /* Durable but not in memory (out of memory): the next write or refresh replays. */
            LOG_ERROR("faces enrolled in \"%s\" but not yet searchable: %s", collection,
                      base_error_message());
            g->applied_seq = first_seq - 1;
        }
    }
done:
    pthread_mutex_unlock(&g->write_mutex);
    free(normalised);
    free(inputs);
    free(subject_rowids);
    return rc;
}

int gal_face_add(struct gal *g, const char *collection, const struct gal_face_input *face,
                 int64_t *face_id)
{
    return gal_faces_add(g, collection, face, 1, face_id);
}

/*
 * The subject and the face go into one explicit store transaction (each operation nests in it
 * as a savepoint), not two commits: between two commits the first stays when the second
 * fails, which left a subject with no face on every enrolment refused for a full disk. The
 * subject is looked for and created under the store's write lock, so of two enrolments
 * racing for one new subject the second finds it (BASE_ERR_EXISTS) and adds its face only.
 */
int gal_face_enrol(struct gal *g, const char *collection, const struct gal_face_input *face,
                   int create_subject, const char *metadata_json, int64_t *face_id,
                   int *subject_created)
{
    STORE_CALL(g);
    if (subject_created) *subject_created = 0;
    if (!face || !face_id) return base_error_set(BASE_ERR_INVALID, "face or face_id missing");
    *face_id = 0;
    int rc = gal_check_subject_id(face->subject_id);
    if (!rc && create_subject) rc = gal_check_metadata(metadata_json);
    if (rc) return rc;
    struct collection *c;
    if ((rc = begin_write(g, collection, &c))) return rc;
    struct gal_store *s = g->store;
    int committed = 0;
    float *normalised = malloc(c->info.dim * sizeof *normalised);
    if (!normalised) {
        rc = base_error_set(BASE_ERR_NOMEM, "cannot allocate a face");
        goto done;
    }
    if ((rc = gal_check_face(&c->info, face, 0, normalised))) goto done;
    struct gal_face_input input = *face;
    input.embedding = normalised;
    uint64_t subject_seq = 0, face_seq = 0;
    int64_t subject_rowid = 0;
    int created = 0;
    if ((rc = s->ops->begin(s))) goto done;
    if (create_subject) {
        rc = s->ops->subject_add(s, c->id, face->subject_id, metadata_json ? metadata_json : "{}",
                                 0, &subject_seq);
        if (rc == 0)
            created = 1;
        else if (rc == BASE_ERR_EXISTS)
            rc = 0; /* enrolled before, or just now by a racing call: only the face is new */
    }
    if (!rc) rc = s->ops->faces_add(s, c->id, &input, NULL, 1, face_id, &subject_rowid, &face_seq);
    if (rc) {
        s->ops->rollback(s);
        if (rc == BASE_ERR_NOT_FOUND) rc = gal_error_context(rc, "collection \"%s\"", collection);
        goto done;
    }
    if ((rc = s->ops->commit(s))) goto done;
    committed = 1;
    rc = direct_or_replay_span(g, created ? subject_seq : face_seq, face_seq);
    if (rc == 1) {
        if (created) atomic_fetch_add(&c->subjects, 1);
        rc = gal_index_add(c->index, *face_id, subject_rowid, normalised);
        if (rc) {
            /* Durable but not in memory (out of memory): the next write or refresh replays the
             * face (the subject, counted already, is not replayed again). */
            LOG_ERROR("a face enrolled in \"%s\" but not yet searchable: %s", collection,
                      base_error_message());
            g->applied_seq = face_seq - 1;
        }
    }
    if (rc == 0 && subject_created) *subject_created = created;
done:
    pthread_mutex_unlock(&g->write_mutex);
    free(normalised);
    /* The store numbered the face before its commit failed: no such face exists. */
    if (!committed) *face_id = 0;
    return rc;
}

int gal_face_delete(struct gal *g, const char *collection, int64_t face_id)
{
    STORE_CALL(g);
    struct collection *c;
    int rc = begin_write(g, collection, &c);
    if (rc) return rc;
    uint64_t seq = 0;
    rc = g->store->ops->face_delete(g->store, c->id, face_id, &seq);
    if (rc == BASE_ERR_NOT_FOUND)
        rc = base_error_set(rc, "face %lld does not exist in collection \"%s\"", (long long)face_id,
                            collection);
    if (!rc) rc = direct_or_replay(g, seq, 1);
    if (rc == 1) {
        gal_index_remove(c->index, face_id);
        rc = 0;
    }
    pthread_mutex_unlock(&g->write_mutex);
    return rc;
}

int gal_face_get(struct gal *g, const char *collection, int64_t face_id,
                 struct gal_face_record *record)
{
    STORE_CALL(g);
    memset(record, 0, sizeof *record);
    int64_t id;
    int rc = gal_collection_id_for_read(g, collection, &id);
    if (rc) return rc;
    return g->store->ops->face_get(g->store, id, face_id, record);
}

void gal_face_record_deinit(struct gal_face_record *record)
{
    if (!record) return;
    free(record->embedding);
    free(record->thumbnail);
    record->embedding = NULL;
    record->thumbnail = NULL;
}

int gal_face_list(struct gal *g, const char *collection, const char *subject_id, int64_t **face_ids,
                  size_t *count)
{
    STORE_CALL(g);
    *face_ids = NULL;
    *count = 0;
    int64_t id;
    int rc = gal_check_subject_id(subject_id);
    if (!rc) rc = gal_collection_id_for_read(g, collection, &id);
    if (rc) return rc;
    return g->store->ops->face_list(g->store, id, subject_id, face_ids, count);
}

void gal_set_ann_ef_search(struct gal *g, unsigned ef_search)
{
    pthread_mutex_lock(&g->write_mutex);
    g->ann.ef_search = ef_search;
    pthread_rwlock_rdlock(&g->collections_lock);
    for (struct collection *c = g->collections; c; c = c->next)
        gal_index_set_ann_ef_search(c->index, ef_search);
    pthread_rwlock_unlock(&g->collections_lock);
    pthread_mutex_unlock(&g->write_mutex);
}

/*
 * No replay first (see gallery.h): /metrics calls this once per collection right after
 * gal_collection_list, which has replayed; asking the store again each time cost one round
 * trip per collection per scrape (found by test_pg_metrics: 26 for 25 collections).
 */
int gal_index_stats(struct gal *g, const char *collection, struct gal_index_stats *stats)
{
    int rc = gal_check_collection_name(collection);
    if (!rc) rc = gal_refuse_store_only(g);
    if (rc) return rc;
    pthread_rwlock_rdlock(&g->collections_lock);
    struct collection *c = gal_find_collection(g, collection);
    if (c)
        gal_index_get_stats(c->index, stats);
    else
        rc = base_error_set(BASE_ERR_NOT_FOUND, "collection \"%s\" does not exist", collection);
    pthread_rwlock_unlock(&g->collections_lock);
    return rc;
}

/* ---- search --------------------------------------------------------------------------- */

/* A candidate after the store lookup: its final score and where its subject id is. */
struct scored {
    float score;
    int64_t face_id;
    int64_t subject_rowid;
    size_t ref; /* index into the lookup results */
};

static int scored_better(const struct scored *a, const struct scored *b)
{
    return a->score > b->score || (a->score == b->score && a->face_id < b->face_id);
}

static int compare_scored(const void *pa, const void *pb)
{
    const struct scored *a = pa, *b = pb;
    return scored_better(a, b) ? -1 : scored_better(b, a) ? 1 : 0;
}

static int compare_by_subject(const void *pa, const void *pb)
{
    const struct scored *a = pa, *b = pb;
    if (a->subject_rowid != b->subject_rowid) return a->subject_rowid < b->subject_rowid ? -1 : 1;
    return compare_scored(pa, pb);
}

static int compare_i64(const void *pa, const void *pb)
{
    int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
    return a < b ? -1 : a > b;
}

static float exact_similarity(const float *q, const float *x, uint32_t dim)
{
    double s = 0.0;
    for (uint32_t i = 0; i < dim; i++)
        s += (double)q[i] * x[i];
    return (float)(s > 1.0 ? 1.0 : s < -1.0 ? -1.0 : s);
}

static void fill_hit(struct gal_hit *hit, const struct scored *s,
                     const struct gal_store_face_ref *refs, float threshold)
{
    hit->face_id = s->face_id;
    memcpy(hit->subject_id, refs[s->ref].subject_id, sizeof hit->subject_id);
    hit->similarity = s->score;
    hit->decision = s->score >= threshold ? GAL_MATCH : GAL_NO_MATCH;
}

/*
 * Every face of some subjects, read from the store in one go per search call and shared by
 * its queries: subject rowids[i] (sorted) has faces starts[i] .. starts[i + 1] of face_ids
 * and embeddings (dim floats each).
 */
struct subject_faces {
    size_t count;
    int64_t *rowids;
    size_t *starts; /* count + 1 */
    int64_t *face_ids;
    float *embeddings;
};

static void subject_faces_free(struct subject_faces *sf)
{
    free(sf->rowids);
    free(sf->starts);
    free(sf->face_ids);
    free(sf->embeddings);
    memset(sf, 0, sizeof *sf);
}

/* A store without subjects_faces (PostgreSQL): each subject's face ids by its id text, then
 * their embeddings; faces that changed subject or vanished since are dropped. */
static int subject_faces_one_by_one(struct gal *g, int64_t collection_id, uint32_t dim,
                                    const char *const *subject_ids, struct subject_faces *sf)
{
    size_t n = 0, cap = 0;
    int rc = 0;
    sf->starts[0] = 0;
    for (size_t i = 0; i < sf->count && !rc; i++) {
        int64_t *ids = NULL;
        size_t m = 0;
        struct gal_store_face_ref *refs = NULL;
        rc = g->store->ops->face_list(g->store, collection_id, subject_ids[i], &ids, &m);
        if (rc == BASE_ERR_NOT_FOUND) rc = 0, m = 0; /* deleted since the scan */
        if (m > SUBJECT_FACES_MAX) m = SUBJECT_FACES_MAX;
        if (!rc && n + m > cap) {
            size_t more = cap ? 2 * cap : 64;
            while (more < n + m)
                more *= 2;
            int64_t *grown_ids = realloc(sf->face_ids, more * sizeof *grown_ids);
            if (grown_ids) sf->face_ids = grown_ids;
            float *grown = realloc(sf->embeddings, more * dim * sizeof *grown);
            if (grown) sf->embeddings = grown;
            if (!grown_ids || !grown)
                rc = base_error_set(BASE_ERR_NOMEM, "cannot allocate search results");
            else
                cap = more;
        }
        if (!rc && m && !(refs = malloc(m * sizeof *refs)))
            rc = base_error_set(BASE_ERR_NOMEM, "cannot allocate search results");
        float *out = rc ? NULL : sf->embeddings + n * dim;
        if (!rc && m)
            rc = g->store->ops->faces_lookup(g->store, collection_id, ids, m, dim, out, refs);
        for (size_t j = 0; !rc && j < m; j++) {
            if (!refs[j].found || refs[j].subject_rowid != sf->rowids[i]) continue;
            if (out + j * dim != sf->embeddings + n * dim)
                memmove(sf->embeddings + n * dim, out + j * dim, dim * sizeof *out);
            sf->face_ids[n++] = ids[j];
        }
        sf->starts[i + 1] = n;
        free(ids);
        free(refs);
    }
    return rc;
}

static int compare_rowid_ref(const void *pa, const void *pb)
{
    const int64_t *a = pa, *b = pb;
    return a[0] < b[0] ? -1 : a[0] > b[0];
}

/*
 * Reads every face (up to SUBJECT_FACES_MAX) of the subjects in `wanted` (pairs: subject
 * rowid, index into refs for its id text), duplicates allowed, into `sf`.
 */
static int subject_faces_read(struct gal *g, int64_t collection_id, uint32_t dim, int64_t *wanted,
                              size_t n_wanted, const struct gal_store_face_ref *refs,
                              struct subject_faces *sf)
{
    qsort(wanted, n_wanted, 2 * sizeof *wanted, compare_rowid_ref);
    sf->rowids = malloc((n_wanted ? n_wanted : 1) * sizeof *sf->rowids);
    sf->starts = malloc((n_wanted + 1) * sizeof *sf->starts);
    const char **subject_ids = malloc((n_wanted ? n_wanted : 1) * sizeof *subject_ids);
    int rc = 0;
    if (!sf->rowids || !sf->starts || !subject_ids) {
        rc = base_error_set(BASE_ERR_NOMEM, "cannot allocate search results");
        goto done;
    }
    for (size_t i = 0; i < n_wanted; i++) {
        if (sf->count && sf->rowids[sf->count - 1] == wanted[2 * i]) continue;
        subject_ids[sf->count] = refs[wanted[2 * i + 1]].subject_id;
        sf->rowids[sf->count++] = wanted[2 * i];
    }
    if (g->store->ops->subjects_faces)
        rc = g->store->ops->subjects_faces(g->store, collection_id, sf->rowids, sf->count,
                                           SUBJECT_FACES_MAX, dim, &sf->face_ids, &sf->embeddings,
                                           sf->starts);
    else
        rc = subject_faces_one_by_one(g, collection_id, dim, subject_ids, sf);
done:
    free(subject_ids);
    return rc;
}

/*
 * With f16 or int8 storage the index knows each subject by its best face *by the quantised
 * score*; another face of the subject may be better exactly (quantisation moves a score by
 * ~5e-4), and when a subject with many faces fills the face candidates, the better face was
 * never re-scored: the subject came back with its second-best similarity and could miss the
 * threshold its best face meets (found by test_gallery_review). So the subjects that can be
 * returned - the first k after re-scoring, and any within `margin` of the k-th,
 * which their other faces could lift into the first k - are scored over all their faces
 * (read from the store once per call: `sf`). `scored` holds a query's u subjects, best
 * first; their scores and best faces are updated in place (the caller sorts again).
 */
static void subjects_best_faces(const struct subject_faces *sf, const float *query, uint32_t dim,
                                size_t k, float margin, struct scored *scored, size_t u)
{
    if (u == 0) return;
    const float last = scored[(k < u ? k : u) - 1].score - margin;
    for (size_t i = 0; i < u && (i < k || scored[i].score >= last); i++) {
        size_t lo = 0, hi = sf->count; /* binary search of the sorted rowids */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (sf->rowids[mid] < scored[i].subject_rowid)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == sf->count || sf->rowids[lo] != scored[i].subject_rowid) continue;
        for (size_t f = sf->starts[lo]; f < sf->starts[lo + 1]; f++) {
            const struct scored s = {exact_similarity(query, sf->embeddings + f * dim, dim),
                                     sf->face_ids[f], scored[i].subject_rowid, scored[i].ref};
            if (scored_better(&s, &scored[i])) scored[i] = s; /* ref: the same subject id */
        }
    }
}

/*
 * Search: the index scan gives each query's best faces and best subjects by the index's
 * score. With f16 or int8 storage it returns 2k + 16 of each instead of k; the margin absorbs
 * the quantisation noise (~5e-4 on a similarity with int8, a few ranks at most). Every
 * candidate, f32 storage included, is re-scored with the exact f32 vector from the store in
 * double precision: the f32 kernels' float sums differ from it in the last bit or two, so
 * without this one face gave one similarity with f32 storage and another with f16 / int8, and
 * the decision at a threshold equal to it depended on the storage type (found by
 * test_gallery_review). A subject's similarity is its best face's: see subjects_best_faces.
 */
int gal_search(struct gal *g, const char *collection, const struct gal_search_request *req,
               struct gal_results **results)
{
    STORE_CALL(g);
    *results = NULL;
    if (!req || !req->embeddings)
        return base_error_set(BASE_ERR_INVALID, "search request has no embeddings");
    if (req->query_count == 0 || req->query_count > GAL_QUERIES_MAX)
        return base_error_set(BASE_ERR_INVALID, "%zu queries in one search: must be 1..%d",
                              req->query_count, GAL_QUERIES_MAX);
    if (req->k == 0 || req->k > GAL_K_MAX)
        return base_error_set(BASE_ERR_INVALID, "k = %zu: must be 1..%d", req->k, GAL_K_MAX);
    if (req->dim == 0 || req->dim > GAL_DIM_MAX)
        return base_error_set(BASE_ERR_INVALID, "query dimension %u is not in 1..%d", req->dim,
                              GAL_DIM_MAX);
    if (req->has_threshold && !(req->threshold >= -1.0f && req->threshold <= 1.0f))
        return base_error_set(BASE_ERR_INVALID, "threshold %g is not a similarity in [-1, 1]",
                              (double)req->threshold);
    int rc = gal_check_collection_name(collection);
    if (!rc) rc = sync_for_read(g);
    if (rc) return rc;

    const size_t nq = req->query_count, k = req->k, dim = req->dim;
    float *queries = malloc(nq * dim * sizeof *queries);
    struct gal_candidate *fc = NULL, *sc = NULL;
    size_t *fn = NULL, *sn = NULL, *starts = NULL;
    int64_t *ids = NULL;
    struct gal_store_face_ref *refs = NULL;
    float *embeddings = NULL;
    struct scored *scored = NULL;
    struct gal_results *out = NULL;
    struct subject_faces fetched = {0};
    struct scored *subjects = NULL;
    size_t *subject_counts = NULL, n_wanted = 0;
    int64_t *wanted = NULL;
    if (!queries) return base_error_set(BASE_ERR_NOMEM, "cannot allocate %zu queries", nq);

    pthread_rwlock_rdlock(&g->collections_lock);
    struct collection *c = gal_find_collection(g, collection);
    if (!c) {
        pthread_rwlock_unlock(&g->collections_lock);
        rc = base_error_set(BASE_ERR_NOT_FOUND, "collection \"%s\" does not exist", collection);
        goto done;
    }
    const struct gal_collection_info info = c->info;
    const int64_t collection_id = c->id;
    const float threshold = req->has_threshold ? req->threshold : info.threshold;
    for (size_t q = 0; q < nq && !rc; q++)
        rc = check_embedding(&info, "query", q, req->model_id, req->dim, req->embeddings + q * dim,
                             queries + q * dim);
    const int quantised = info.dtype != GAL_DTYPE_F32;
    const size_t kc = quantised ? 2 * k + 16 : k;
    const float margin = SUBJECT_RESCORE_MARGIN(info.dtype);
    if (!rc) {
        fc = malloc(nq * kc * sizeof *fc);
        sc = malloc(nq * kc * sizeof *sc);
        fn = malloc(nq * sizeof *fn);
        sn = malloc(nq * sizeof *sn);
        if (!fc || !sc || !fn || !sn)
            rc = base_error_set(BASE_ERR_NOMEM, "cannot allocate search results");
    }
    if (!rc) rc = gal_index_search(c->index, queries, nq, kc, kc, fc, fn, sc, sn);
    pthread_rwlock_unlock(&g->collections_lock);
    if (rc) goto done;

    /* Each query's distinct candidate faces, sorted, for one store lookup of them all. */
    starts = malloc((nq + 1) * sizeof *starts);
    ids = malloc(nq * 2 * kc * sizeof *ids);
    if (!starts || !ids) {
        rc = base_error_set(BASE_ERR_NOMEM, "cannot allocate search results");
        goto done;
    }
    size_t total = 0;
    for (size_t q = 0; q < nq; q++) {
        starts[q] = total;
        int64_t *mine = ids + total;
        size_t m = 0;
        for (size_t i = 0; i < fn[q]; i++)
            mine[m++] = fc[q * kc + i].face_id;
        for (size_t i = 0; i < sn[q]; i++)
            mine[m++] = sc[q * kc + i].face_id;
        qsort(mine, m, sizeof *mine, compare_i64);
        size_t u = 0;
        for (size_t i = 0; i < m; i++)
            if (u == 0 || mine[i] != mine[u - 1]) mine[u++] = mine[i];
        total += u;
    }
    starts[nq] = total;
    refs = malloc((total ? total : 1) * sizeof *refs);
    embeddings = malloc((total ? total : 1) * dim * sizeof *embeddings);
    scored = malloc((2 * kc + 1) * sizeof *scored);
    subjects = malloc(nq * 2 * kc * sizeof *subjects);
    subject_counts = malloc(nq * sizeof *subject_counts);
    wanted = malloc(nq * 2 * 2 * kc * sizeof *wanted); /* pairs: rowid, ref */
    if (!refs || !embeddings || !scored || !subjects || !subject_counts || !wanted) {
        rc = base_error_set(BASE_ERR_NOMEM, "cannot allocate search results");
        goto done;
    }
    if (total && (rc = g->store->ops->faces_lookup(g->store, collection_id, ids, total,
                                                   (uint32_t)dim, embeddings, refs)))
        goto done;

    size_t bytes = sizeof *out + nq * sizeof *out->queries + 2 * nq * k * sizeof(struct gal_hit);
    out = calloc(1, bytes);
    if (!out) {
        rc = base_error_set(BASE_ERR_NOMEM, "cannot allocate search results");
        goto done;
    }
    out->query_count = nq;
    out->threshold = threshold;
    out->queries = (struct gal_query_result *)(out + 1);
    struct gal_hit *hits = (struct gal_hit *)(out->queries + nq);
    for (size_t q = 0; q < nq; q++) {
        struct gal_query_result *r = &out->queries[q];
        r->faces = hits + 2 * q * k;
        r->subjects = r->faces + k;
        const int64_t *mine = ids + starts[q];
        size_t m = starts[q + 1] - starts[q], n = 0;
        for (size_t j = 0; j < m; j++) {
            size_t ref = starts[q] + j;
            if (!refs[ref].found) continue; /* deleted since the scan */
            float score = exact_similarity(queries + q * dim, embeddings + ref * dim, info.dim);
            struct scored s = {score, mine[j], refs[ref].subject_rowid, ref};
            scored[n++] = s;
        }
        qsort(scored, n, sizeof *scored, compare_scored);
        for (size_t i = 0; i < n && r->face_count < k; i++)
            fill_hit(&r->faces[r->face_count++], &scored[i], refs, threshold);
        /* Subjects: the best face of each, then the best subjects. */
        qsort(scored, n, sizeof *scored, compare_by_subject);
        size_t u = 0;
        for (size_t i = 0; i < n; i++)
            if (u == 0 || scored[i].subject_rowid != scored[u - 1].subject_rowid)
                scored[u++] = scored[i];
        qsort(scored, u, sizeof *scored, compare_scored);
        memcpy(subjects + q * 2 * kc, scored, u * sizeof *scored);
        subject_counts[q] = u;
        /* See subjects_best_faces: the subjects that can be returned, when a face of theirs
         * outside the face candidates could beat what they have. Such a face has an index
         * score at most the lowest face candidate's, `floor`, so an exact similarity at most
         * floor + margin. When the index returned fewer face candidates than asked, every
         * face was one. */
        float floor = INFINITY;
        for (size_t i = 0; fn[q] == kc && i < fn[q]; i++)
            if (fc[q * kc + i].score < floor) floor = fc[q * kc + i].score;
        for (size_t i = 0; quantised && fn[q] == kc && i < u; i++) {
            if (i >= k && scored[i].score < scored[k - 1].score - margin) break;
            if (scored[i].score >= floor + margin) continue;
            wanted[2 * n_wanted] = scored[i].subject_rowid;
            wanted[2 * n_wanted++ + 1] = (int64_t)scored[i].ref;
        }
    }
    if (n_wanted &&
        (rc = subject_faces_read(g, collection_id, info.dim, wanted, n_wanted, refs, &fetched)))
        goto done;
    for (size_t q = 0; q < nq; q++) {
        struct gal_query_result *r = &out->queries[q];
        struct scored *mine = subjects + q * 2 * kc;
        size_t u = subject_counts[q];
        if (quantised) {
            subjects_best_faces(&fetched, queries + q * dim, info.dim, k, margin, mine, u);
            qsort(mine, u, sizeof *mine, compare_scored);
        }
        for (size_t i = 0; i < u && r->subject_count < k; i++)
            fill_hit(&r->subjects[r->subject_count++], &mine[i], refs, threshold);
    }
    *results = out;
    out = NULL;
done:
    free(queries);
    free(fc);
    free(sc);
    free(fn);
    free(sn);
    free(starts);
    free(ids);
    free(refs);
    free(embeddings);
    free(scored);
    free(out);
    subject_faces_free(&fetched);
    free(subjects);
    free(subject_counts);
    free(wanted);
    return rc;
}

int gal_search_others(struct gal *g, const char *collection,
                      const struct gal_search_request *request, const char *subject,
                      struct gal_hit *out, size_t max, size_t *n, float *threshold)
{
    *n = 0;
    struct gal_search_request one = *request;
    one.query_count = 1;
    one.k = max + 1;
    struct gal_results *results = NULL;
    int rc = gal_search(g, collection, &one, &results);
    if (rc) return rc;
    *threshold = results->threshold;
    const struct gal_query_result *q = &results->queries[0];
    for (size_t i = 0; i < q->subject_count && *n < max; i++) {
        const struct gal_hit *h = &q->subjects[i];
        if (h->decision != GAL_MATCH) break; /* best first: the rest are below it too */
        if (strcmp(h->subject_id, subject) != 0) out[(*n)++] = *h;
    }
    gal_results_destroy(results);
    return 0;
}

void gal_results_destroy(struct gal_results *results)
{
    free(results);
}

/* ---- check-ins ------------------------------------------------------------------------- */

const char *gal_checkin_status_name(enum gal_checkin_status status)
{
    switch (status) {
    case GAL_CHECKIN_CHECKED_IN: return "checked_in";
    case GAL_CHECKIN_ALREADY_CHECKED_IN: return "already_checked_in";
    case GAL_CHECKIN_SAME_ARRIVAL: return "same_arrival";
    case GAL_CHECKIN_NOT_RECOGNISED: return "not_recognised";
    }
    return "not_recognised";
}

enum gal_checkin_status gal_checkin_rule(struct gal_checkin *record, int found,
                                         const struct gal_checkin_face *face, int64_t now_ms,
                                         int64_t unknown_before_ms, struct gal_checkin_event *event)
{
    if (!face->subject_id) {
        memset(record, 0, sizeof *record);
        record->similarity = face->similarity;
        /* A stranger trying again within GAL_CHECKIN_SAME_MS of the try that was counted is
         * one stranger. The window starts at that try and does not slide, as a subject's
         * starts at its last counted arrival: a retry writes nothing, so it is answered on a
         * full store too (writing its time again used to refuse it with 507). */
        if (!unknown_before_ms || now_ms - unknown_before_ms > GAL_CHECKIN_SAME_MS) {
            event->not_recognised++;
            event->last_unknown_ms = now_ms;
            if (!event->since_ms) event->since_ms = now_ms;
        }
        return GAL_CHECKIN_NOT_RECOGNISED;
    }
    snprintf(record->subject_id, sizeof record->subject_id, "%s", face->subject_id);
    const char *door = face->door ? face->door : "";
    if (!found) {
        record->first_seen_ms = record->last_arrival_ms = now_ms;
        record->arrivals = 1;
        record->similarity = face->similarity;
        snprintf(record->first_door, sizeof record->first_door, "%s", door);
        snprintf(record->last_door, sizeof record->last_door, "%s", door);
        if (!event->since_ms) event->since_ms = now_ms;
        return GAL_CHECKIN_CHECKED_IN;
    }
    /* The stored similarity is the first arrival's; the answer shows this face's. */
    record->similarity = face->similarity;
    /* Within the window (or a clock behind the last arrival's: another replica's) the person
     * is still at the door, or the request was retried: nothing is counted again. */
    if (now_ms - record->last_arrival_ms <= GAL_CHECKIN_SAME_MS) return GAL_CHECKIN_SAME_ARRIVAL;
    record->last_arrival_ms = now_ms;
    record->arrivals++;
    /* The last arrival's door, none when it named none: never an earlier arrival's. */
    snprintf(record->last_door, sizeof record->last_door, "%s", door);
    if (!event->since_ms) event->since_ms = now_ms;
    return GAL_CHECKIN_ALREADY_CHECKED_IN;
}

/* The collection's subject count for a check-in summary: from memory, as gal_collection_get
 * gives it, or from the store for a store-only gallery. */
static int checkin_subjects(struct gal *g, const char *collection, uint64_t *subjects)
{
    struct gal_collection_info info;
    int rc = gal_collection_get(g, collection, &info);
    *subjects = rc ? 0 : info.subject_count;
    return rc;
}

int gal_checkin(struct gal *g, const char *collection, const struct gal_checkin_face *faces,
                size_t count, int64_t now_ms, struct gal_checkin *out,
                struct gal_checkin_summary *summary)
{
    STORE_CALL(g);
    memset(summary, 0, sizeof *summary);
    if (count == 0 || count > GAL_QUERIES_MAX)
        return base_error_set(BASE_ERR_INVALID, "check-in of %zu faces is not in 1..%d", count,
                              GAL_QUERIES_MAX);
    if (now_ms < 0)
        return base_error_set(BASE_ERR_INVALID, "check-in time %lld is negative",
                              (long long)now_ms);
    if (now_ms == 0) now_ms = gal_now_ms();
    for (size_t i = 0; i < count; i++) {
        int rc = faces[i].subject_id ? gal_check_subject_id(faces[i].subject_id) : 0;
        if (rc) return rc;
        if (!isfinite(faces[i].similarity))
            return base_error_set(BASE_ERR_INVALID, "check-in face %zu: similarity is not finite",
                                  i);
        if (faces[i].door && (rc = gal_check_door(faces[i].door))) return rc;
    }
    if (!g->store->ops->checkin)
        return base_error_set(BASE_ERR_UNSUPPORTED, "this store keeps no check-in record");
    struct collection *c;
    int rc = begin_write(g, collection, &c);
    if (rc) return rc;
    rc = g->store->ops->checkin(g->store, c->id, faces, count, now_ms, out, summary);
    pthread_mutex_unlock(&g->write_mutex);
    if (!rc) rc = checkin_subjects(g, collection, &summary->subjects);
    return rc;
}

/* "<first_seen_ms>:<subject id>": the list's order is by both, so its cursor holds both. */
static int parse_checkin_cursor(const char *after, int64_t *ms, const char **subject_id)
{
    const char *colon = strchr(after, ':');
    char *end = NULL;
    errno = 0;
    long long v = colon ? strtoll(after, &end, 10) : 0;
    if (!colon || end != colon || errno || v < 0 || after[0] == '-' || after[0] == '+' ||
        gal_check_subject_id(colon + 1))
        return base_error_set(BASE_ERR_INVALID,
                              "check-in cursor \"%.40s\" is not a next_after from this list",
                              after);
    *ms = v;
    *subject_id = colon + 1;
    return 0;
}

int gal_checkin_list(struct gal *g, const char *collection, const char *after, size_t limit,
                     struct gal_checkin **list, size_t *count, char *next_after,
                     struct gal_checkin_summary *summary)
{
    STORE_CALL(g);
    *list = NULL;
    *count = 0;
    next_after[0] = '\0';
    memset(summary, 0, sizeof *summary);
    if (limit == 0 || limit > 10000)
        return base_error_set(BASE_ERR_INVALID, "check-in list limit %zu is not in 1..10000",
                              limit);
    int64_t after_ms = 0, id;
    const char *after_id = NULL;
    int rc = after && after[0] ? parse_checkin_cursor(after, &after_ms, &after_id) : 0;
    if (rc) return rc;
    if (!g->store->ops->checkin_list)
        return base_error_set(BASE_ERR_UNSUPPORTED, "this store keeps no check-in record");
    if ((rc = gal_collection_id_for_read(g, collection, &id))) return rc;
    /* One more than asked: whether there is a next page. */
    struct gal_checkin *items = NULL;
    size_t n = 0;
    rc = g->store->ops->checkin_list(g->store, id, after_ms, after_id, limit + 1, &items, &n,
                                     summary);
    if (!rc) rc = checkin_subjects(g, collection, &summary->subjects);
    if (rc) {
        gal_checkin_list_free(items, n);
        return rc;
    }
    if (n > limit) {
        const struct gal_checkin *last = &items[limit - 1];
        snprintf(next_after, GAL_CHECKIN_CURSOR_MAX, "%lld:%s", (long long)last->first_seen_ms,
                 last->subject_id);
        for (size_t i = limit; i < n; i++)
            free(items[i].metadata);
        n = limit;
    }
    *list = items;
    *count = n;
    return 0;
}

void gal_checkin_list_free(struct gal_checkin *list, size_t count)
{
    if (!list) return;
    for (size_t i = 0; i < count; i++)
        free(list[i].metadata);
    free(list);
}

int gal_checkin_clear(struct gal *g, const char *collection, uint64_t *cleared)
{
    STORE_CALL(g);
    uint64_t n = 0;
    if (!g->store->ops->checkin_clear)
        return base_error_set(BASE_ERR_UNSUPPORTED, "this store keeps no check-in record");
    struct collection *c;
    int rc = begin_write(g, collection, &c);
    if (rc) return rc;
    rc = g->store->ops->checkin_clear(g->store, c->id, &n);
    pthread_mutex_unlock(&g->write_mutex);
    if (cleared) *cleared = rc ? 0 : n;
    return rc;
}
