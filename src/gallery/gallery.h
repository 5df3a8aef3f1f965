/*
 * gallery — collections of enrolled faces: a durable store (the source of truth) and an
 * in-memory vector index per collection for exact 1:N search. See docs/gallery.md.
 *
 * The gallery knows nothing of images or models: it takes embeddings as float vectors,
 * each tagged with the id of the model that produced it and its dimension. A collection is
 * pinned to one model and dimension and refuses anything else.
 *
 * Model:
 *   collection  a name, the embedding model id and dimension it is pinned to, a decision
 *               threshold (cosine similarity), and the storage type of its index.
 *   subject     a string id unique within its collection, with JSON metadata.
 *   face        an id assigned by the gallery (positive, increasing, never reused), its
 *               subject, the embedding (stored exactly, as L2-normalised f32), the hash of
 *               the source image, the face box in it, a small JPEG thumbnail, a quality.
 *
 * Every change (collection created/updated/deleted, subject added/deleted, face
 * added/deleted) gets a sequence number from a monotonically increasing change log in the
 * store. The index is rebuilt from the store at open and then kept current: by this
 * process's own writes directly, and by gal_refresh() for changes made by other processes.
 *
 * Search is exact: the index scans every vector. With f16 or int8 storage it scans the
 * compact vectors and then re-scores the best candidates with the exact stored f32 vectors,
 * so every similarity returned is the exact cosine similarity whatever the storage type.
 *
 * Errors: functions return 0 or a negative BASE_ERR_* code and describe the error with
 * base_error_set() (see base.h): BASE_ERR_INVALID for bad arguments (wrong model or
 * dimension, NaN/Inf, malformed ids), BASE_ERR_NOT_FOUND for unknown collections, subjects
 * and faces, BASE_ERR_EXISTS for duplicate ids, BASE_ERR_FORMAT / BASE_ERR_UNSUPPORTED for
 * bad or future-version export files, BASE_ERR_LIMIT for sizes beyond the limits below or a
 * full database, BASE_ERR_IO / BASE_ERR_BACKEND for the store.
 *
 * Thread-safety: one struct gal may be used by any number of threads at once. Searches run
 * concurrently with each other and with writes; writes are serialised (the store has one
 * writer); a write blocks searches of its own collection only for the moment it takes to
 * update the in-memory index. Create/delete of a collection waits for that collection's
 * searches in progress.
 */
#ifndef VULTUS_GALLERY_H
#define VULTUS_GALLERY_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Limits on everything that comes from input. */
#define GAL_NAME_MAX 64          /* collection names: 1..64 of [A-Za-z0-9_.-], not . or .. */
#define GAL_ID_MAX 128           /* subject ids: 1..128 bytes, no control characters, not . or .. */
#define GAL_MODEL_MAX 128        /* embedding model ids: 1..128 bytes, printable */
#define GAL_HASH_MAX 128         /* source image hash text, e.g. "sha256:<hex>" */
#define GAL_DIM_MAX 4096         /* embedding dimension */
#define GAL_METADATA_MAX 65536   /* subject metadata (JSON text), bytes */
#define GAL_DOOR_MAX 64          /* check-in door names: 1..64 bytes of UTF-8, no control chars */
#define GAL_THUMBNAIL_MAX 262144 /* JPEG thumbnail, bytes */
#define GAL_K_MAX 1000           /* results per query */
#define GAL_QUERIES_MAX 256      /* queries per search call */
#define GAL_FACES_MAX (1u << 30) /* faces per collection */

/* How the index stores vectors. Search results are exact cosine similarities either way. */
enum gal_dtype {
    GAL_DTYPE_F32 = 0,  /* 4 bytes per dimension */
    GAL_DTYPE_F16 = 1,  /* 2 bytes per dimension (IEEE half) */
    GAL_DTYPE_INT8 = 2, /* 1 byte per dimension + one float scale per vector */
};

/* "f32", "f16", "int8"; NULL for an unknown value. */
const char *gal_dtype_name(enum gal_dtype dtype);
/* Parses "f32", "f16" or "int8"; BASE_ERR_INVALID otherwise. */
int gal_dtype_parse(const char *text, enum gal_dtype *dtype);

/*
 * When an acknowledged write is durable. With a PostgreSQL store the database server's own
 * synchronous_commit decides for GAL_DURABLE_POWER, and GAL_DURABLE_PROCESS turns it off for
 * this process's writes (a crash of the server may lose the last ones, never corrupt).
 * With the SQLite store (always in WAL mode):
 *   GAL_DURABLE_POWER    (default) synchronous=FULL: the WAL is fsync'ed at every commit, so
 *                        an acknowledged write survives a process crash and a power loss.
 *   GAL_DURABLE_PROCESS  synchronous=NORMAL: a commit is written to the WAL (the OS has it)
 *                        but fsync'ed only at checkpoints: an acknowledged write survives a
 *                        process crash (SIGKILL) but the last ones may be lost on power loss.
 */
enum gal_durability { GAL_DURABLE_POWER = 0, GAL_DURABLE_PROCESS = 1 };

struct gal_options {
    int read_only;                  /* open the store read-only: writes fail */
    enum gal_durability durability; /* see above */
    uint64_t max_store_bytes;       /* refuse writes that grow the store beyond this; 0 = none
                                       (SQLite only: refused with a PostgreSQL URL) */
    const char *kernels;            /* "scalar", "avx2", "avx512" or NULL for the best here */
    int busy_timeout_ms;            /* how long a statement waits for another process's lock
                                       before failing with BASE_ERR_IO; 0 = 10 s (SQLite) */
    /*
     * Approximate search for large collections: a collection holding at least
     * ann_min_faces faces also gets an HNSW graph, built in the background (the exact scan
     * serves until it is ready), which then answers its searches; candidates are re-scored
     * exactly as always. See docs/gallery.md for recall and speed.
     */
    uint64_t ann_min_faces;       /* 0 = never (the default: the exact scan) */
    unsigned ann_ef_search;       /* candidates explored per query; 0 = the default */
    unsigned ann_m;               /* links per face (HNSW's M); 0 = the default */
    unsigned ann_ef_construction; /* candidates explored per insertion; 0 = the default */
    unsigned ann_build_threads;   /* threads inserting into a graph being built, all at a low
                                     CPU priority (they take only what the service leaves
                                     idle); 0 = 1 */
    /*
     * Opens (creates, migrates) the store and loads no collection into memory: for a tool
     * that needs the store but no search (`vultus keys`: its own tables in the same database,
     * and whether a collection exists; `vultus gallery`, `vultus enroll`), which would
     * otherwise read every face of the gallery at open (0.2-0.9 s and their memory at 100k
     * faces). Such a gallery answers the reads of collections (counts included), subjects
     * and faces from the store, and writes to the store (collections, subjects, faces,
     * export and import; other processes see them by their change log as always); it fails
     * with BASE_ERR_UNSUPPORTED what needs the index: gal_search, gal_refresh,
     * gal_index_stats. It remembers the last collection it looked up by name (see
     * internal.h), so it is meant for a short-lived tool, not a service.
     */
    int store_only;
    /*
     * Loads this one collection's faces alone (not with store_only): a full gallery whose
     * other collections are as absent, and whose changes it does not follow. For a tool that
     * searches one collection of a store that may hold many (`vultus enroll`'s check for
     * other subjects the face matches), which would otherwise read every collection's faces.
     * NULL: every collection.
     */
    const char *only_collection;
};
#define GAL_ANN_EF_SEARCH_DEFAULT 256u
#define GAL_ANN_M_DEFAULT 32u
#define GAL_ANN_EF_CONSTRUCTION_DEFAULT 200u

struct gal;

/*
 * Opens (creating if needed) the gallery stored in the SQLite file at `path`, migrating its
 * schema to the current version, and builds every collection's index from it. `path` may
 * instead be a PostgreSQL URL (postgres://user:password@host:port/dbname?params, see
 * gal_location_is_url): the store is then that database, which several processes (service
 * replicas) may share; each one's reads replay the others' changes first. `options` may be
 * NULL for the defaults. The result is closed with gal_close().
 */
int gal_open(const char *path, const struct gal_options *options, struct gal **out);

/* 1 when `location` is a PostgreSQL URL (starts with postgres:// or postgresql://). */
int gal_location_is_url(const char *location);
/* `location` for logs and messages: a URL's password is replaced by *** and its query
 * string (which may carry credentials) by "?..."; a file path is copied as is. */
void gal_location_redact(const char *location, char *out, size_t cap);
/* Closes the gallery. Accepts NULL. No other call on `g` may be in progress. */
void gal_close(struct gal *g);

/*
 * Applies to the in-memory indexes the changes other processes made to the store since the
 * last one this process applied. Cheap when there are none.
 */
int gal_refresh(struct gal *g);
/* The sequence number of the last change applied to the in-memory indexes. */
uint64_t gal_sequence(struct gal *g);

/* Runs the store's consistency check (PRAGMA integrity_check); 0 when the store is sound. */
int gal_check(struct gal *g);

/* Changes ann_ef_search (0: the default) for every collection, now and later: a graph's
 * recall and speed can be tuned without rebuilding it. */
void gal_set_ann_ef_search(struct gal *g, unsigned ef_search);

/* ---- collections ---------------------------------------------------------------------- */

struct gal_collection_info {
    char name[GAL_NAME_MAX + 1];
    char model_id[GAL_MODEL_MAX + 1];
    uint32_t dim;
    enum gal_dtype dtype;
    float threshold;    /* similarity >= threshold is a match */
    int64_t created_ms; /* Unix time, milliseconds */
    uint64_t subject_count;
    uint64_t face_count;
};

/* 0 when `name` may name a collection (GAL_NAME_MAX), else BASE_ERR_INVALID saying why: for a
 * caller that must tell a malformed name (a usage error) from one no collection has. */
int gal_check_collection_name(const char *name);
/* Creates an empty collection. Reads name, model_id, dim, dtype, threshold from `info`. */
int gal_collection_create(struct gal *g, const struct gal_collection_info *info);
/* Deletes a collection with its subjects and faces. */
int gal_collection_delete(struct gal *g, const char *name);
/*
 * Fills `info`, counts included (subjects, those without faces too, and faces). From memory,
 * no scan of the store: the counts move with every change this process applies, so they are
 * exactly as current as the index searches use: this process's writes at once, another
 * process's once replayed (gal_refresh(); with a PostgreSQL store every read replays first).
 * A collection not held in memory is looked for again after gal_refresh(), so one another
 * process has just created is found.
 */
int gal_collection_get(struct gal *g, const char *name, struct gal_collection_info *info);
/* As gal_collection_get, with created_ms, subject_count and face_count 0 (the check before
 * each search or enrolment needs only the settings). */
int gal_collection_settings(struct gal *g, const char *name, struct gal_collection_info *info);
/* All collections by name, counts included (as gal_collection_get), in a new array the caller
 * frees with free(). */
int gal_collection_list(struct gal *g, struct gal_collection_info **list, size_t *count);
/* Changes the decision threshold (in [-1, 1]). */
int gal_collection_set_threshold(struct gal *g, const char *name, float threshold);
/* Changes the index storage type; the collection's index is rebuilt from the store. */
int gal_collection_set_dtype(struct gal *g, const char *name, enum gal_dtype dtype);

/* ---- subjects ------------------------------------------------------------------------- */

/* Adds a subject; `metadata_json` is a JSON value (object, usually) or NULL for "{}". */
int gal_subject_add(struct gal *g, const char *collection, const char *subject_id,
                    const char *metadata_json);
/*
 * Adds `count` subjects in one transaction: all or none (a duplicate id fails the batch).
 * metadata_json may be NULL (all "{}") or hold NULL entries.
 */
int gal_subjects_add(struct gal *g, const char *collection, const char *const *subject_ids,
                     const char *const *metadata_json, size_t count);
/* Replaces a subject's metadata. */
int gal_subject_set_metadata(struct gal *g, const char *collection, const char *subject_id,
                             const char *metadata_json);
/* Deletes a subject and all its faces. */
int gal_subject_delete(struct gal *g, const char *collection, const char *subject_id);

struct gal_subject_info {
    char id[GAL_ID_MAX + 1];
    char *metadata; /* JSON text, malloc'd: release with gal_subject_info_deinit() */
    int64_t created_ms;
    uint64_t face_count;
};
int gal_subject_get(struct gal *g, const char *collection, const char *subject_id,
                    struct gal_subject_info *info);
void gal_subject_info_deinit(struct gal_subject_info *info);
/*
 * Up to `limit` subjects whose id sorts after `after` (NULL or "" for the first page), in
 * id order, in a new array: release with gal_subject_list_free().
 */
int gal_subject_list(struct gal *g, const char *collection, const char *after, size_t limit,
                     struct gal_subject_info **list, size_t *count);
void gal_subject_list_free(struct gal_subject_info *list, size_t count);

/* ---- faces ---------------------------------------------------------------------------- */

struct gal_face_input {
    const char *subject_id;   /* an existing subject of the collection */
    const char *model_id;     /* must equal the collection's model */
    uint32_t dim;             /* must equal the collection's dimension */
    const float *embedding;   /* `dim` finite floats, not all zero; normalised on the way */
    const char *image_hash;   /* hash of the source image, or NULL */
    float box[4];             /* x, y, width, height of the face in the source image */
    float quality;            /* quality score of the face (finite) */
    const uint8_t *thumbnail; /* JPEG bytes (starting FF D8 FF) or NULL */
    size_t thumbnail_len;
};

/* Enrols one face; its new id goes to *face_id. Returns once the face is durable. */
int gal_face_add(struct gal *g, const char *collection, const struct gal_face_input *face,
                 int64_t *face_id);
/* Enrols `count` faces in one transaction: all or none. face_ids[i] gets each new id. */
int gal_faces_add(struct gal *g, const char *collection, const struct gal_face_input *faces,
                  size_t count, int64_t *face_ids);
/*
 * Enrols one face for face->subject_id, first creating that subject (with metadata_json,
 * NULL for "{}") when it does not exist and create_subject is set, in ONE store transaction:
 * either the face is stored, with its subject when that was missing, or nothing is. So a
 * write that fails half-way (a full disk, a lost connection, a statement timeout) leaves no
 * subject without the face it was created for, with nothing to undo afterwards (an undo could
 * fail the same way). *subject_created (may be NULL) is 1 when this call created the subject:
 * of two calls racing for one new subject, on one handle or on several sharing the store, both
 * succeed and exactly one says it created it. Without create_subject a missing subject is
 * BASE_ERR_NOT_FOUND, as with gal_face_add; an existing subject's metadata is left as it is.
 * Returns once the face is durable; *face_id is 0 when no face was stored.
 */
int gal_face_enrol(struct gal *g, const char *collection, const struct gal_face_input *face,
                   int create_subject, const char *metadata_json, int64_t *face_id,
                   int *subject_created);
int gal_face_delete(struct gal *g, const char *collection, int64_t face_id);

struct gal_face_record {
    int64_t face_id;
    char subject_id[GAL_ID_MAX + 1];
    char image_hash[GAL_HASH_MAX + 1];
    float box[4];
    float quality;
    int64_t created_ms;
    uint32_t dim;
    float *embedding;   /* malloc'd, `dim` floats, L2-normalised */
    uint8_t *thumbnail; /* malloc'd or NULL */
    size_t thumbnail_len;
};
/* Reads one face; release with gal_face_record_deinit(). */
int gal_face_get(struct gal *g, const char *collection, int64_t face_id,
                 struct gal_face_record *record);
void gal_face_record_deinit(struct gal_face_record *record);
/* The ids of a subject's faces, ascending, in a new array the caller frees with free(). */
int gal_face_list(struct gal *g, const char *collection, const char *subject_id, int64_t **face_ids,
                  size_t *count);

/* ---- search --------------------------------------------------------------------------- */

enum gal_decision { GAL_NO_MATCH = 0, GAL_MATCH = 1 };

struct gal_hit {
    int64_t face_id; /* for a subject hit: its best face */
    char subject_id[GAL_ID_MAX + 1];
    float similarity;           /* exact cosine similarity, in [-1, 1] */
    enum gal_decision decision; /* GAL_MATCH when similarity >= the threshold */
};

struct gal_query_result {
    size_t face_count;        /* <= k */
    struct gal_hit *faces;    /* best faces first */
    size_t subject_count;     /* <= k */
    struct gal_hit *subjects; /* best subjects first; a subject scores its best face */
};

struct gal_results {
    size_t query_count;
    float threshold; /* the threshold the decisions used: the request's or the collection's */
    struct gal_query_result *queries;
};

struct gal_search_request {
    const char *model_id;    /* must equal the collection's model */
    uint32_t dim;            /* must equal the collection's dimension */
    const float *embeddings; /* query_count x dim, row-major */
    size_t query_count;      /* 1..GAL_QUERIES_MAX */
    size_t k;                /* 1..GAL_K_MAX: faces and subjects returned per query */
    /* A threshold of the caller's own (an HTTP request's, `vultus search --threshold`) in
     * [-1, 1], used for every decision instead of the collection's when has_threshold is set:
     * a match is similarity >= threshold either way. */
    int has_threshold;
    float threshold;
};

/*
 * Searches a collection with one or more query embeddings (scanned together in one pass
 * over memory). The results go to a new object released with gal_results_destroy().
 */
int gal_search(struct gal *g, const char *collection, const struct gal_search_request *request,
               struct gal_results **results);
void gal_results_destroy(struct gal_results *results);

/* How many other subjects an enrolment names in also_matches (the HTTP route and the CLI): a
 * client warns about the best one or few; the full ranking is what search is for. */
#define GAL_OTHER_MATCHES_MAX 3

/*
 * The subjects other than `subject` that one embedding (request: model_id, dim, embeddings;
 * query_count and k are set here) matches in the collection as it is now, similarity at or
 * above its threshold, best first: at most `max` into out[] (*n), and the collection's
 * threshold in *threshold. For enrolment's also_matches: one search of max + 1 subjects, so
 * the enrolled subject's own place in the ranking never hides another.
 */
int gal_search_others(struct gal *g, const char *collection,
                      const struct gal_search_request *request, const char *subject,
                      struct gal_hit *out, size_t max, size_t *n, float *threshold);

/* ---- check-ins ------------------------------------------------------------------------- */

/*
 * An event's check-in record, kept in the store beside the collection so that every door,
 * device and service replica sharing the store shares it: per subject the first arrival, the
 * last one and how many (a re-arrival counts once it is more than GAL_CHECKIN_SAME_MS after
 * the last: within it the same person is still in front of the camera, or a request was
 * retried), and per collection a count of faces not recognised (one stranger retrying within
 * GAL_CHECKIN_SAME_MS of the unrecognised face last counted counts once) and when the record
 * began. The record is not part of an export; deleting a subject deletes its record,
 * deleting a collection deletes all of it, gal_checkin_clear starts a new event.
 */
#define GAL_CHECKIN_SAME_MS 10000
/* The longest list cursor: "<first_seen_ms>:<subject id>" and its terminator. */
#define GAL_CHECKIN_CURSOR_MAX (21 + 1 + GAL_ID_MAX + 1)

enum gal_checkin_status {
    GAL_CHECKIN_CHECKED_IN = 0,         /* recognised, no record before: recorded now */
    GAL_CHECKIN_ALREADY_CHECKED_IN = 1, /* recorded before, last arrival long enough ago */
    GAL_CHECKIN_SAME_ARRIVAL = 2,       /* last arrival within GAL_CHECKIN_SAME_MS: not counted */
    GAL_CHECKIN_NOT_RECOGNISED = 3,     /* no subject: counted in the collection's count */
};
/* "checked_in", "already_checked_in", "same_arrival", "not_recognised". */
const char *gal_checkin_status_name(enum gal_checkin_status status);

/* One face arriving: the subject it was recognised as (NULL: not recognised), how closely,
 * and at which door (NULL: not said; else as gal_check_door takes it). */
struct gal_checkin_face {
    const char *subject_id;
    float similarity;
    const char *door;
};

/* A subject's record (and, from gal_checkin, what this arrival did to it). The doors are the
 * first arrival's and the last counted arrival's, "" when that arrival named none (or was
 * recorded by a build before doors). A same_arrival moves neither: the person seen at a
 * second door within GAL_CHECKIN_SAME_MS is the arrival already recorded. */
struct gal_checkin {
    enum gal_checkin_status status;  /* gal_checkin only */
    char subject_id[GAL_ID_MAX + 1]; /* "" for not_recognised */
    char *metadata;                  /* gal_checkin_list only: the subject's JSON, malloc'd */
    int64_t first_seen_ms;
    int64_t last_arrival_ms;
    uint64_t arrivals;
    float similarity; /* gal_checkin: this face's; gal_checkin_list: the first arrival's */
    char first_door[GAL_DOOR_MAX + 1];
    char last_door[GAL_DOOR_MAX + 1];
};

/* 0 when `door` is a door name: 1..GAL_DOOR_MAX bytes of UTF-8 without control characters
 * (spaces allowed: "North entrance"); else BASE_ERR_INVALID with a message saying why. */
int gal_check_door(const char *door);

/* The collection's record as a whole. */
struct gal_checkin_summary {
    uint64_t checked_in;     /* subjects with a record */
    uint64_t subjects;       /* the collection's subjects */
    uint64_t not_recognised; /* unrecognised faces counted since since_ms */
    int64_t since_ms;        /* when the record began (its first entry); 0: nothing recorded */
};

/*
 * Records `count` faces arriving at now_ms (Unix ms; 0: now. A test passes its own clock to
 * step time instead of sleeping): out[i] says what faces[i] did (status, the record after it,
 * similarity = faces[i].similarity), *summary the record after all of them. The reads and
 * updates are one store transaction, serialised with every other write to the store, by this
 * process or another: two doors checking in one subject at once get one checked_in. A subject
 * deleted since it was recognised counts as not recognised.
 */
int gal_checkin(struct gal *g, const char *collection, const struct gal_checkin_face *faces,
                size_t count, int64_t now_ms, struct gal_checkin *out,
                struct gal_checkin_summary *summary);
/*
 * Up to `limit` (1..10000) records, newest first by first_seen_ms and then by subject id,
 * after the cursor `after` (NULL or "" for the first page; otherwise a next_after given
 * before), into a new array released with gal_checkin_list_free(); `next_after` (at least
 * GAL_CHECKIN_CURSOR_MAX bytes) gets the cursor of the next page, "" when this one is the
 * last. A re-arrival does not move a record in this order, so paging stays correct while
 * arrivals go on; records created meanwhile are newer and so land before the first page.
 * BASE_ERR_INVALID for a malformed cursor.
 */
int gal_checkin_list(struct gal *g, const char *collection, const char *after, size_t limit,
                     struct gal_checkin **list, size_t *count, char *next_after,
                     struct gal_checkin_summary *summary);
void gal_checkin_list_free(struct gal_checkin *list, size_t count);
/* Clears the collection's record (subjects' records and the not-recognised count): a new
 * event. *cleared (may be NULL): how many subjects' records there were. */
int gal_checkin_clear(struct gal *g, const char *collection, uint64_t *cleared);

/* ---- index statistics ----------------------------------------------------------------- */

struct gal_index_stats {
    uint64_t faces;      /* live faces */
    uint64_t rows;       /* rows in use, including deleted ones awaiting compaction */
    uint64_t bytes;      /* memory held by the index (vectors, scales, ids) */
    const char *kernels; /* "scalar", "avx2" or "avx512" */
    const char *search;  /* "exact", "exact, hnsw building" or "hnsw" */
    uint64_t ann_faces;  /* faces in the HNSW graph (dead ones included until a rebuild) */
    uint64_t ann_bytes;  /* memory held by the graph (approximate; not in `bytes`) */
    double ann_build_s;  /* how long the last graph build took (0 before the first) */
};
/* A collection's index as this process holds it: no I/O, and no replay of other processes'
 * changes first (call gal_collection_list, gal_collection_get or gal_refresh before, as
 * /metrics and `vultus gallery info` do). BASE_ERR_NOT_FOUND when not held. */
int gal_index_stats(struct gal *g, const char *collection, struct gal_index_stats *stats);

/* ---- export / import ------------------------------------------------------------------ */

/*
 * Writes a collection (settings, subjects, faces with embeddings and thumbnails) to `path`
 * in the versioned gallery export format (docs/gallery.md). The file appears complete or
 * not at all (written beside, fsync'ed, then renamed).
 */
int gal_export(struct gal *g, const char *collection, const char *path);
/*
 * gal_export that gives up, removing its temporary file, once *stop is nonzero (set by a
 * signal handler: `vultus gallery export` on Ctrl-C or SIGTERM); checked at every record and
 * before the rename. Returns BASE_ERR_IO ("export interrupted") then; path is untouched.
 */
int gal_export_stoppable(struct gal *g, const char *collection, const char *path,
                         const volatile sig_atomic_t *stop);
/*
 * Creates a collection from an export file, named `as_name` or, when NULL, as in the file.
 * The whole file is verified (magic, version, limits, checksum) before anything is written,
 * and written in one transaction: a failed import leaves nothing behind. Faces get new ids.
 */
int gal_import(struct gal *g, const char *path, const char *as_name);

/* ---- PostgreSQL connections ------------------------------------------------------------- */

/* Shared by the gallery's PostgreSQL store and http/keys.c's API keys store, so that both
 * connect, wait and give up the same way. libpq's types, without its header: */
struct pg_conn;   /* PGconn */
struct pg_result; /* PGresult */

#define GAL_PG_TIMEOUT_MS 10000 /* the default longest wait for one statement's answer */

/* The longest wait for one statement's answer, in ms (0: none), from VULTUS_STORE_TIMEOUT_MS
 * (GAL_PG_TIMEOUT_MS when unset or empty); BASE_ERR_INVALID, naming the variable, when it is
 * not a number from 0 to 3600000. Reads the environment: call it at open, not per statement. */
int gal_pg_timeout_ms(int *timeout_ms);
/* Connects (blocking, at most connect_timeout_s seconds, a decimal string, unless the URL
 * says otherwise) to the database at `url` with vultus's defaults (application_name, TCP
 * keepalives, tcp_user_timeout), which parameters in the URL override. The caller checks
 * PQstatus and PQfinish()es the result; NULL only when out of memory. PQreset keeps the
 * parameters. Thread-safe (libpq's own rules: one connection, one thread at a time). */
struct pg_conn *gal_pg_connect(const char *url, const char *connect_timeout_s);
/* As gal_pg_connect, waiting at most until deadline_ns too (base_now_ns() time; 0: none),
 * past which the attempt is abandoned (CONNECTION_BAD) and *timed_out set. */
struct pg_conn *gal_pg_connect_until(const char *url, const char *connect_timeout_s,
                                     uint64_t deadline_ns, int *timed_out);
/*
 * A store call's whole wait - for a lock behind other calls, a connection, each answer - ends
 * at one deadline, base_now_ns() time (CLOCK_MONOTONIC), about one limit after the call
 * started, so that calls queued behind one that waits out its limit on an unreachable server
 * do not each wait their turn and then their own limit. The gallery's calls keep theirs in a
 * thread-local (store.h); http/keys.c's in its store, under the lock of its one connection.
 */
/* Locks `m`, waiting at most until deadline_ns (0: no limit): 0, or ETIMEDOUT past it (or
 * pthread_mutex_lock's error). */
int gal_lock_until(pthread_mutex_t *m, uint64_t deadline_ns);
/* How long the next answer may be waited for, in ms: timeout_ms, or what is left until
 * deadline_ns when that is less, at least 1 (a statement sent past it still gets its answer
 * waited for briefly; on none, gal_pg_wait closes the connection, which ends any transaction
 * it was in). timeout_ms when either is 0 (no deadline, no limit). */
int gal_pg_wait_ms(int timeout_ms, uint64_t deadline_ns);
/* Waits for the answer to what was just sent on `pg` (sent: the PQsend* call's return), at
 * most timeout_ms (0: no limit); past it the connection is closed (CONNECTION_BAD) and
 * *timed_out set to timeout_ms (else 0), with a warning naming `kind` and `shown` (the store's
 * kind and its redacted location). Returns what PQexec would: the last result or the first error (the caller
 * PQclear()s it); NULL when nothing could be sent or no answer came. */
struct pg_result *gal_pg_wait(struct pg_conn *pg, int sent, int timeout_ms, const char *kind,
                              const char *shown, int *timed_out);
/* "no answer within W ms" into buf (cap bytes), returned: W = waited_ms, the wait that ended
 * without an answer, and when that was less than the store's limit_ms (VULTUS_STORE_TIMEOUT_MS:
 * cut short by the call's deadline) ", what was left of the call's L ms limit". */
const char *gal_pg_no_answer(char *buf, size_t cap, int waited_ms, int limit_ms);
/* On a connection just made or reset (non-blocking): the server's own limits for the session,
 * derived from timeout_ms (statement_timeout and idle_in_transaction_session_timeout, unless
 * the URL, the role, the database or the server's configuration set them), so that a session
 * whose client was cut off ends on the server and releases its locks. The answer is waited
 * for at most timeout_ms and at most until deadline_ns (the calling operation's, base_now_ns()
 * time; 0: none), as gal_pg_wait_ms says. The result as for gal_pg_wait: PGRES_TUPLES_OK on
 * success (also with timeout_ms 0: nothing to set). */
struct pg_result *gal_pg_session_init(struct pg_conn *pg, int timeout_ms, uint64_t deadline_ns,
                                      const char *kind, const char *shown, int *timed_out);

/*
 * An unreachable window. After a statement got no answer within the whole limit (a partition,
 * a frozen host) or a connection attempt failed, the server counts as unreachable for a while,
 * and every call that needs it fails at once (BASE_ERR_IO: 503 store_unavailable) instead of
 * waiting out its own limit through the same partition: the calls queued behind the one that
 * found it so, and the next call of a request whose last one just failed. Then connections
 * are tried again one thread at a time (the probe), and the others keep failing at once
 * instead of each waiting out a connection attempt (up to connect_timeout against an address
 * that drops packets) or hammering a server that is starting. The window is the current
 * backoff: GAL_PG_RETRY_MIN_MS, doubled after each failed connection attempt up to
 * GAL_PG_RETRY_MAX_MS (which bounds the delay to notice the server is back), and back to the
 * minimum once a connection is made. Shared by the gallery's store and the API keys' store.
 * Thread-safe (atomics): any thread may mark it, pass its gate or probe.
 */
#define GAL_PG_RETRY_MIN_MS 100
#define GAL_PG_RETRY_MAX_MS 500
struct gal_pg_outage {
    const char *kind, *shown;  /* for messages: the store's kind and its redacted location */
    atomic_int down;           /* the last statement or connection attempt failed */
    atomic_int probing;        /* a thread is trying to connect while `down` */
    _Atomic uint64_t retry_ns; /* while `down`, calls fail at once until then (base_now_ns()) */
    atomic_int backoff_ms;     /* the next window */
};
/* Ready to use, nothing marked; `kind` and `shown` must outlive it. */
void gal_pg_outage_init(struct gal_pg_outage *o, const char *kind, const char *shown);
/* Marks the server unreachable for the current backoff from now; `grow` (a failed connection
 * attempt) doubles the next window. */
void gal_pg_outage_mark(struct gal_pg_outage *o, int grow);
/* 0, or BASE_ERR_IO at once while the server is marked unreachable and not yet due for a
 * retry. */
int gal_pg_outage_gate(struct gal_pg_outage *o);
/* Before a connection attempt: 0 when the caller may make it (*probe set when it is the one
 * probe of a server marked unreachable, to be ended by gal_pg_outage_probed), or BASE_ERR_IO
 * at once while the window lasts or another thread probes. */
int gal_pg_outage_probe(struct gal_pg_outage *o, int *probe);
/* After that attempt (ok: connected): a success clears the mark and the backoff, a failure
 * marks the server unreachable and grows the backoff; ends the probe. */
void gal_pg_outage_probed(struct gal_pg_outage *o, int probe, int ok);

/* ---- backup and restore (SQLite store; src/gallery/backup.c) ------------------------------ */

/*
 * Copies the SQLite store at store_path (a running service may keep writing it) into a new
 * file out_path (refused when it exists), consistent as of one commit, in rollback-journal
 * mode: one self-contained file, no -wal or -shm needed beside it. The copy is fsynced; its
 * size goes to *bytes (may be NULL). A writer of the store is never blocked (WAL): the copy
 * reads one snapshot. On failure out_path may be left partly written: the caller removes it.
 * Opens its own connections; any thread.
 */
int gal_backup_copy(const char *store_path, const char *out_path, uint64_t *bytes);

struct gal_backup_counts {
    uint64_t collections, subjects, faces; /* as a server would count them */
    uint64_t extra_rows;                   /* rows of gal_backup_inspect's extra_table */
    uint64_t bytes;                        /* size of the file */
};
/*
 * Checks that the SQLite file at `path` is a sound vultus store this build can open: a SQLite
 * database (BASE_ERR_FORMAT otherwise), with the gallery's schema (BASE_ERR_FORMAT: "not a
 * vultus store"), PRAGMA integrity_check "ok" (BASE_ERR_FORMAT), not of a newer schema
 * (BASE_ERR_UNSUPPORTED); and counts what it holds, and the rows of extra_table (NULL: none;
 * 0 when the file has no such table). An empty file is a SQLite database without the schema.
 * A file in rollback mode (a backup) is only read; one in WAL mode (a copy of a stopped
 * store's vultus.db) is first switched to rollback mode, in place.
 */
int gal_backup_inspect(const char *path, const char *extra_table, struct gal_backup_counts *counts);

/*
 * *in_use = 1 when another process has the SQLite store at `path` (in WAL mode, as every
 * store a service opened is) open, 0 when none has: an exclusive lock attempt that does not
 * wait and changes nothing. A process that opens it just after may still do so.
 */
int gal_store_in_use(const char *path, int *in_use);

#endif
