/*
 * Export and import of one collection.
 *
 * File format, version 1. Integers and floats little-endian; str = u32 byte length, then
 * the bytes (UTF-8, no terminating NUL); every length is checked against the limits in
 * gallery.h before anything is allocated.
 *
 *   magic       8 bytes   "VGALLERY"
 *   version     u32       1 (a reader refuses versions newer than its own)
 *   header      name str, model_id str, dim u32, dtype u32 (0 f32, 1 f16, 2 int8),
 *               threshold f32, created_ms i64, subject_count u64, face_count u64
 *   subjects    subject_count records:
 *                 'S' u8, subject_id str, metadata str (JSON), created_ms i64
 *   faces       face_count records, in enrolment order:
 *                 'F' u8, subject_id str, created_ms i64, image_hash str, box f32[4],
 *                 quality f32, embedding f32[dim] (L2-normalised), thumbnail str (JPEG
 *                 bytes, length 0 when none)
 *   trailer     'E' u8, crc32 u32: CRC-32 (IEEE, as zlib) of every byte before the crc
 *               field, from the magic to the 'E'; nothing may follow
 *
 * Face ids are not exported: an import assigns new ones (ids are never reused in a store).
 * An export is written to a temporary file beside the target, fsync'ed, and renamed over
 * it, so the target is complete or untouched. An import reads the file twice: first to
 * check everything (structure, limits, model and dimensions, NaN/Inf, checksum) without
 * writing, then to write it in one store transaction, rolled back on any error.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "gallery/internal.h"

#define MAGIC "VGALLERY"
#define FORMAT_VERSION 1u
#define IMPORT_BATCH 128

/* ---- CRC-32 ------------------------------------------------------------------------------ */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t gal_crc32(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&crc_once, crc_init);
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---- writing ----------------------------------------------------------------------------- */

struct writer {
    FILE *f;
    uint32_t crc;
    int failed;
    const char *path;
    uint64_t subjects, faces;           /* written */
    uint64_t subjects_want, faces_want; /* announced in the header */
    uint32_t dim;
    const volatile sig_atomic_t *stop; /* NULL, or nonzero once the caller wants no more */
};

/* A stop asked for (gal_export_stoppable): the scan ends at this record, the file is removed. */
static int stopped(const struct writer *w)
{
    if (!w->stop || !*w->stop) return 0;
    return base_error_set(BASE_ERR_IO, "%s: export interrupted; nothing written", w->path);
}

static void put(struct writer *w, const void *p, size_t n)
{
    if (w->failed || n == 0) return;
    if (fwrite(p, 1, n, w->f) != n) w->failed = errno ? errno : EIO;
    w->crc = gal_crc32(w->crc, p, n);
}

static void put_u8(struct writer *w, uint8_t v)
{
    put(w, &v, 1);
}

static void put_u32(struct writer *w, uint32_t v)
{
    put(w, &v, 4);
}

static void put_u64(struct writer *w, uint64_t v)
{
    put(w, &v, 8);
}

static void put_f32(struct writer *w, float v)
{
    put(w, &v, 4);
}

static void put_bytes(struct writer *w, const void *p, size_t n)
{
    put_u32(w, (uint32_t)n);
    put(w, p, n);
}

static void put_str(struct writer *w, const char *s)
{
    put_bytes(w, s, strlen(s));
}

static int export_begin(void *ctx, const struct gal_collection_info *info, uint64_t subjects,
                        uint64_t faces)
{
    struct writer *w = ctx;
    put(w, MAGIC, 8);
    put_u32(w, FORMAT_VERSION);
    put_str(w, info->name);
    put_str(w, info->model_id);
    put_u32(w, info->dim);
    put_u32(w, (uint32_t)info->dtype);
    put_f32(w, info->threshold);
    put_u64(w, (uint64_t)info->created_ms);
    put_u64(w, subjects);
    put_u64(w, faces);
    w->subjects_want = subjects;
    w->faces_want = faces;
    w->dim = info->dim;
    return 0;
}

static int export_subject(void *ctx, const struct gal_subject_info *s)
{
    struct writer *w = ctx;
    int rc = stopped(w);
    if (rc) return rc;
    put_u8(w, 'S');
    put_str(w, s->id);
    put_str(w, s->metadata);
    put_u64(w, (uint64_t)s->created_ms);
    w->subjects++;
    return 0;
}

static int export_face(void *ctx, const struct gal_face_record *f)
{
    struct writer *w = ctx;
    int rc = stopped(w);
    if (rc) return rc;
    put_u8(w, 'F');
    put_str(w, f->subject_id);
    put_u64(w, (uint64_t)f->created_ms);
    put_str(w, f->image_hash);
    for (int b = 0; b < 4; b++)
        put_f32(w, f->box[b]);
    put_f32(w, f->quality);
    put(w, f->embedding, (size_t)w->dim * sizeof(float)); /* bytes: may be unaligned */
    put_bytes(w, f->thumbnail, f->thumbnail_len);
    w->faces++;
    return 0;
}

int gal_export(struct gal *g, const char *collection, const char *path)
{
    return gal_export_stoppable(g, collection, path, NULL);
}

/*
 * The temporary file is removed on every way out but success: an error, and a stop (the CLI's
 * Ctrl-C or SIGTERM) checked at every record and again after the last write, before the
 * rename: the fsync of a large file can take long, and a stop during it must not publish it.
 */
int gal_export_stoppable(struct gal *g, const char *collection, const char *path,
                         const volatile sig_atomic_t *stop)
{
    int rc = gal_check_collection_name(collection);
    if (rc) return rc;
    if (!path || !*path) return base_error_set(BASE_ERR_INVALID, "export path is empty");
    STORE_CALL(g);
    int64_t id = 0;
    if ((rc = gal_collection_id_for_read(g, collection, &id))) return rc;

    size_t n = strlen(path) + 16;
    char *tmp = malloc(n);
    if (!tmp) return base_error_set(BASE_ERR_NOMEM, "cannot allocate a path");
    snprintf(tmp, n, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        rc = base_error_set(BASE_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    struct writer w = {.f = fdopen(fd, "wb"), .path = path, .stop = stop};
    if (!w.f) {
        rc = base_error_set(BASE_ERR_IO, "%s: %s", tmp, strerror(errno));
        close(fd);
        goto fail;
    }
    struct gal_store_exporter exporter = {&w, export_begin, export_subject, export_face};
    if ((rc = g->store->ops->export_scan(g->store, id, &exporter))) goto fail;
    if (w.subjects != w.subjects_want || w.faces != w.faces_want) {
        rc = base_error_set(BASE_ERR_BACKEND,
                            "export of \"%s\": %llu subjects and %llu faces "
                            "read, %llu and %llu counted",
                            collection, (unsigned long long)w.subjects, (unsigned long long)w.faces,
                            (unsigned long long)w.subjects_want, (unsigned long long)w.faces_want);
        goto fail;
    }
    put_u8(&w, 'E');
    uint32_t crc = w.crc;
    put_u32(&w, crc);
    if (!w.failed && fflush(w.f) != 0) w.failed = errno;
    if (!w.failed && fsync(fileno(w.f)) != 0) w.failed = errno;
    if (w.failed) {
        rc = base_error_set(BASE_ERR_IO, "%s: cannot write: %s", tmp, strerror(w.failed));
        goto fail;
    }
    int closed = fclose(w.f);
    w.f = NULL;
    if (closed != 0) {
        rc = base_error_set(BASE_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
        goto fail;
    }
    if ((rc = stopped(&w))) goto fail;
    if (rename(tmp, path) != 0) {
        rc = base_error_set(BASE_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto fail;
    }
    char dir[4096]; /* the rename is durable once the folder is on disk */
    base_path_dir(path, dir, sizeof dir);
    base_fsync_dir(dir);
    free(tmp);
    return 0;
fail:
    if (w.f) fclose(w.f);
    unlink(tmp);
    free(tmp);
    return rc;
}

/* ---- reading ----------------------------------------------------------------------------- */

struct reader {
    FILE *f;
    const char *path;
    uint32_t crc;
    uint64_t offset;
};

static int get(struct reader *r, void *p, size_t n)
{
    if (n == 0) return 0;
    size_t got = fread(p, 1, n, r->f);
    if (got != n) {
        if (ferror(r->f))
            return base_error_set(BASE_ERR_IO, "%s: read error at byte %llu", r->path,
                                  (unsigned long long)(r->offset + got));
        return base_error_set(BASE_ERR_FORMAT,
                              "%s: truncated export file: ends at byte %llu, inside a field of "
                              "%zu bytes",
                              r->path, (unsigned long long)(r->offset + got), n);
    }
    r->crc = gal_crc32(r->crc, p, n);
    r->offset += n;
    return 0;
}

static int get_u32(struct reader *r, uint32_t *v)
{
    return get(r, v, 4);
}

static int get_u64(struct reader *r, uint64_t *v)
{
    return get(r, v, 8);
}

/* A string of at most `max` bytes into buf[max + 1]; `what` names the field. */
static int get_str(struct reader *r, char *buf, size_t max, const char *what)
{
    uint32_t len;
    int rc = get_u32(r, &len);
    if (rc) return rc;
    if (len > max)
        return base_error_set(BASE_ERR_FORMAT, "%s: %s of %u bytes at byte %llu, more than %zu",
                              r->path, what, len, (unsigned long long)r->offset, max);
    if ((rc = get(r, buf, len))) return rc;
    buf[len] = '\0';
    if (strlen(buf) != len)
        return base_error_set(BASE_ERR_FORMAT, "%s: %s at byte %llu contains a NUL byte", r->path,
                              what, (unsigned long long)r->offset);
    return 0;
}

static int expect_tag(struct reader *r, uint8_t want, const char *what)
{
    uint8_t tag;
    int rc = get(r, &tag, 1);
    if (rc) return rc;
    if (tag != want)
        return base_error_set(BASE_ERR_FORMAT, "%s: byte %llu: expected %s ('%c'), found 0x%02x",
                              r->path, (unsigned long long)(r->offset - 1), what, want, tag);
    return 0;
}

/* One face record's fields, kept until its batch is written. */
struct face_slot {
    char subject_id[GAL_ID_MAX + 1];
    char image_hash[GAL_HASH_MAX + 1];
    int64_t created_ms;
    float *embedding;  /* dim, as read */
    float *normalised; /* dim */
    uint8_t *thumbnail;
    size_t thumbnail_len;
};

struct import {
    struct gal *g; /* NULL on the checking pass */
    const char *as_name;
    struct gal_collection_info info;
    int64_t collection_id;
    struct face_slot slots[IMPORT_BATCH];
    struct gal_face_input inputs[IMPORT_BATCH];
    int64_t created[IMPORT_BATCH];
    int64_t ids[IMPORT_BATCH], rowids[IMPORT_BATCH];
    size_t pending;
};

static int flush_faces(struct import *im)
{
    if (!im->g || im->pending == 0) {
        im->pending = 0;
        return 0;
    }
    uint64_t seq;
    struct gal_store *s = im->g->store;
    int rc = s->ops->faces_add(s, im->collection_id, im->inputs, im->created, im->pending, im->ids,
                               im->rowids, &seq);
    im->pending = 0;
    return rc;
}

static int read_face(struct reader *r, struct import *im, uint64_t index)
{
    struct face_slot *slot = &im->slots[im->pending];
    struct gal_face_input *in = &im->inputs[im->pending];
    uint64_t created;
    int rc = expect_tag(r, 'F', "a face record");
    if (!rc) rc = get_str(r, slot->subject_id, GAL_ID_MAX, "subject id");
    if (!rc) rc = get_u64(r, &created);
    if (!rc) rc = get_str(r, slot->image_hash, GAL_HASH_MAX, "image hash");
    memset(in, 0, sizeof *in);
    for (int b = 0; b < 4 && !rc; b++)
        rc = get(r, &in->box[b], 4);
    if (!rc) rc = get(r, &in->quality, 4);
    if (!rc) rc = get(r, slot->embedding, im->info.dim * sizeof(float));
    uint32_t len = 0;
    if (!rc) rc = get_u32(r, &len);
    if (rc) return rc;
    if (len > GAL_THUMBNAIL_MAX)
        return base_error_set(BASE_ERR_FORMAT, "%s: face %llu: thumbnail of %u bytes, more than %d",
                              r->path, (unsigned long long)index, len, GAL_THUMBNAIL_MAX);
    free(slot->thumbnail);
    slot->thumbnail = len ? malloc(len) : NULL;
    if (len && !slot->thumbnail) return base_error_set(BASE_ERR_NOMEM, "cannot read a thumbnail");
    if ((rc = get(r, slot->thumbnail, len))) return rc;
    slot->thumbnail_len = len;
    slot->created_ms = (int64_t)created;

    in->subject_id = slot->subject_id;
    in->model_id = im->info.model_id;
    in->dim = im->info.dim;
    in->embedding = slot->embedding;
    in->image_hash = slot->image_hash;
    in->thumbnail = slot->thumbnail;
    in->thumbnail_len = slot->thumbnail_len;
    if ((rc = gal_check_face(&im->info, in, (size_t)index, slot->normalised)))
        return gal_error_context(rc, "%s", r->path);
    in->embedding = slot->normalised;
    im->created[im->pending] = slot->created_ms;
    if (++im->pending == IMPORT_BATCH) return flush_faces(im);
    return 0;
}

/* Reads the whole file; with im->g set, writes it to the store (in the caller's transaction). */
static int parse(const char *path, struct import *im)
{
    struct reader r = {fopen(path, "rb"), path, 0, 0};
    if (!r.f) return base_error_set(BASE_ERR_IO, "%s: %s", path, strerror(errno));
    int rc = 0;
    char magic[8];
    uint32_t version = 0, dtype = 0;
    uint64_t created = 0, subjects = 0, faces = 0;
    char *metadata = malloc(GAL_METADATA_MAX + 1);
    if (!metadata) {
        rc = base_error_set(BASE_ERR_NOMEM, "cannot allocate import buffers");
        goto done;
    }
    if ((rc = get(&r, magic, 8))) goto done;
    if (memcmp(magic, MAGIC, 8) != 0) {
        rc = base_error_set(BASE_ERR_FORMAT, "%s is not a vultus gallery export (bad magic)", path);
        goto done;
    }
    if ((rc = get_u32(&r, &version))) goto done;
    if (version > FORMAT_VERSION) {
        rc = base_error_set(BASE_ERR_UNSUPPORTED,
                            "%s: export format version %u is newer than this build reads (%u)",
                            path, version, FORMAT_VERSION);
        goto done;
    }
    if (version == 0) {
        rc = base_error_set(BASE_ERR_FORMAT, "%s: export format version 0 does not exist", path);
        goto done;
    }
    struct gal_collection_info *info = &im->info;
    memset(info, 0, sizeof *info);
    if ((rc = get_str(&r, info->name, GAL_NAME_MAX, "collection name"))) goto done;
    if ((rc = get_str(&r, info->model_id, GAL_MODEL_MAX, "model id"))) goto done;
    if ((rc = get_u32(&r, &info->dim)) || (rc = get_u32(&r, &dtype)) ||
        (rc = get(&r, &info->threshold, 4)) || (rc = get_u64(&r, &created)) ||
        (rc = get_u64(&r, &subjects)) || (rc = get_u64(&r, &faces)))
        goto done;
    info->dtype = (enum gal_dtype)dtype;
    info->created_ms = (int64_t)created;
    if (im->as_name) snprintf(info->name, sizeof info->name, "%s", im->as_name);
    if ((rc = gal_check_collection_info(info))) {
        rc = gal_error_context(rc, "%s", path);
        goto done;
    }
    if (subjects > GAL_FACES_MAX || faces > GAL_FACES_MAX) {
        rc = base_error_set(BASE_ERR_FORMAT, "%s: %llu subjects / %llu faces, more than %u", path,
                            (unsigned long long)subjects, (unsigned long long)faces, GAL_FACES_MAX);
        goto done;
    }
    for (size_t i = 0; i < IMPORT_BATCH; i++) {
        im->slots[i].embedding = malloc(info->dim * sizeof(float));
        im->slots[i].normalised = malloc(info->dim * sizeof(float));
        if (!im->slots[i].embedding || !im->slots[i].normalised) {
            rc = base_error_set(BASE_ERR_NOMEM, "cannot allocate import buffers");
            goto done;
        }
    }
    if (im->g) {
        uint64_t seq;
        rc = im->g->store->ops->collection_create(im->g->store, info, &im->collection_id, &seq);
        if (rc) goto done;
    }

    for (uint64_t i = 0; i < subjects; i++) {
        char subject_id[GAL_ID_MAX + 1];
        uint64_t subject_created;
        if ((rc = expect_tag(&r, 'S', "a subject record")) ||
            (rc = get_str(&r, subject_id, GAL_ID_MAX, "subject id")) ||
            (rc = get_str(&r, metadata, GAL_METADATA_MAX, "subject metadata")) ||
            (rc = get_u64(&r, &subject_created)))
            goto done;
        if ((rc = gal_check_subject_id(subject_id)) || (rc = gal_check_metadata(metadata))) {
            rc = gal_error_context(rc, "%s: subject %llu", path, (unsigned long long)i);
            goto done;
        }
        if (im->g) {
            uint64_t seq;
            rc = im->g->store->ops->subject_add(im->g->store, im->collection_id, subject_id,
                                                metadata, (int64_t)subject_created, &seq);
            if (rc) goto done;
        }
    }
    for (uint64_t i = 0; i < faces; i++)
        if ((rc = read_face(&r, im, i))) goto done;
    if ((rc = flush_faces(im))) goto done;

    if ((rc = expect_tag(&r, 'E', "the end record"))) goto done;
    uint32_t computed = r.crc, stored;
    if ((rc = get_u32(&r, &stored))) goto done;
    if (stored != computed) {
        rc = base_error_set(BASE_ERR_FORMAT,
                            "%s: checksum mismatch (file says %08x, content is "
                            "%08x): the file is damaged",
                            path, stored, computed);
        goto done;
    }
    if (fgetc(r.f) != EOF) {
        rc = base_error_set(BASE_ERR_FORMAT, "%s: bytes after the end record", path);
        goto done;
    }
done:
    for (size_t i = 0; i < IMPORT_BATCH; i++) {
        free(im->slots[i].embedding);
        free(im->slots[i].normalised);
        free(im->slots[i].thumbnail);
        memset(&im->slots[i], 0, sizeof im->slots[i]);
    }
    im->pending = 0;
    free(metadata);
    fclose(r.f);
    return rc;
}

/* The import's second pass, into the store, under the write lock; its wait on the store is
 * bounded from here (STORE_CALL), the file having been read once already. */
static int import_into_store(struct gal *g, const char *path, struct import *im)
{
    STORE_CALL(g);
    int rc = gal_lock_writes(g);
    if (rc) return rc;
    if ((rc = gal_catch_up(g))) goto unlock;
    if (gal_find_collection(g, im->info.name)) {
        rc = base_error_set(BASE_ERR_EXISTS, "collection \"%s\" already exists", im->info.name);
        goto unlock;
    }
    if ((rc = g->store->ops->begin(g->store))) goto unlock;
    im->g = g;
    rc = parse(path, im);
    if (rc) {
        g->store->ops->rollback(g->store);
        goto unlock;
    }
    if ((rc = g->store->ops->commit(g->store))) goto unlock;
    /* The changes are in the log: replaying them builds the collection's index. */
    rc = gal_catch_up(g);
unlock:
    pthread_mutex_unlock(&g->write_mutex);
    return rc;
}

int gal_import(struct gal *g, const char *path, const char *as_name)
{
    if (!path || !*path) return base_error_set(BASE_ERR_INVALID, "import path is empty");
    int rc = as_name ? gal_check_collection_name(as_name) : 0;
    if (rc) return rc;
    struct import *im = calloc(1, sizeof *im);
    if (!im) return base_error_set(BASE_ERR_NOMEM, "cannot allocate an import");
    im->as_name = as_name;
    /* First pass: check everything, write nothing. */
    if (!(rc = parse(path, im))) rc = import_into_store(g, path, im);
    free(im);
    return rc;
}
