/*
 * Shared by the gallery tests: a seeded random generator, random unit vectors, temporary
 * directories, face inputs. Header-only (static functions) so each test stays one program.
 */
#ifndef VULTUS_TESTS_GALLERY_HELPERS_H
#define VULTUS_TESTS_GALLERY_HELPERS_H

#include <ftw.h>
#include <math.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gallery/gallery.h"

struct rng {
    uint64_t state;
};

static inline uint64_t rng_u64(struct rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline double rng_uniform(struct rng *r)
{
    return ((rng_u64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static inline double rng_gauss(struct rng *r)
{
    double u = rng_uniform(r), v = rng_uniform(r);
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

/* A random direction, uniformly distributed on the unit sphere. */
static inline void random_unit(struct rng *r, float *x, size_t dim)
{
    double s = 0;
    for (size_t i = 0; i < dim; i++) {
        x[i] = (float)rng_gauss(r);
        s += (double)x[i] * x[i];
    }
    s = 1.0 / sqrt(s);
    for (size_t i = 0; i < dim; i++)
        x[i] = (float)(x[i] * s);
}

/* A new directory under /tmp; remove it with remove_tree(). */
static inline char *make_tmpdir(void)
{
    char *dir = strdup("/tmp/vultus-gallery-XXXXXX");
    if (!dir || !mkdtemp(dir)) {
        perror("mkdtemp");
        abort();
    }
    return dir;
}

static inline int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void remove_tree(char *dir)
{
    if (!dir) return;
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

/* dir + "/" + name in a static buffer of the caller. */
static inline const char *path_in(char *buf, size_t size, const char *dir, const char *name)
{
    snprintf(buf, size, "%s/%s", dir, name);
    return buf;
}

/* A face input with no thumbnail; callers set the rest. */
static inline struct gal_face_input face_input(const char *subject, const char *model, uint32_t dim,
                                               const float *embedding)
{
    struct gal_face_input f;
    memset(&f, 0, sizeof f);
    f.subject_id = subject;
    f.model_id = model;
    f.dim = dim;
    f.embedding = embedding;
    f.box[2] = f.box[3] = 112.0f;
    f.quality = 0.9f;
    return f;
}

static inline struct gal_collection_info collection_info(const char *name, const char *model,
                                                         uint32_t dim, enum gal_dtype dtype,
                                                         float threshold)
{
    struct gal_collection_info info;
    memset(&info, 0, sizeof info);
    snprintf(info.name, sizeof info.name, "%s", name);
    snprintf(info.model_id, sizeof info.model_id, "%s", model);
    info.dim = dim;
    info.dtype = dtype;
    info.threshold = threshold;
    return info;
}

/* Asserts that a call returned `want`, printing the error message when it did not. */
#define EXPECT_RC(call, want)                                                                      \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != (want))                                                                         \
            fail_msg("%s returned %d (%s), expected %d", #call, rc_, base_error_message(),         \
                     (int)(want));                                                                 \
    } while (0)

#define EXPECT_OK(call) EXPECT_RC(call, 0)

/* What COUNT(*) says in the SQLite store `db_path` about collection `name`: its subjects (with
 * or without faces) and its faces. Returns 0, or -1 when the file cannot be read. */
static inline int store_counts(const char *db_path, const char *name, uint64_t *subjects,
                               uint64_t *faces)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db,
                           "SELECT (SELECT COUNT(*) FROM subjects s JOIN collections c "
                           "ON s.collection_id = c.id WHERE c.name = ?1), (SELECT "
                           "COUNT(*) FROM faces f JOIN collections c ON "
                           "f.collection_id = c.id WHERE c.name = ?1)",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        *subjects = (uint64_t)sqlite3_column_int64(st, 0);
        *faces = (uint64_t)sqlite3_column_int64(st, 1);
        rc = 0;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

#endif
