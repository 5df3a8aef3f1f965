/*
 * The in-memory vector index of one collection (private to src/gallery).
 *
 * Rows hold L2-normalised vectors in the collection's storage type, contiguous and 64-byte
 * aligned (each row padded with zeros to a multiple of 64 bytes), ordered by face id. A
 * search scans every row: exact, with top-k heaps for faces and for subjects.
 *
 * A large collection may also have an HNSW graph (gal_index_set_ann): approximate, much faster.
 *
 * Thread-safety: every function may be called from any thread at any time; searches run in
 * parallel with each other, and a writer blocks them only while it changes the arrays (see
 * the comment at the lock in index.c).
 */
#ifndef VULTUS_GALLERY_INDEX_H
#define VULTUS_GALLERY_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "gallery/gallery.h"
#include "gallery/kernels.h"

struct gal_index;

/* One search result: a face with its subject and its score in the index's storage type. */
struct gal_candidate {
    float score;
    int64_t face_id;
    int64_t subject_rowid;
};

int gal_index_create(uint32_t dim, enum gal_dtype dtype, const struct gal_kernels *kernels,
                     struct gal_index **out);
/* Stops a graph build in progress (waits for it) and frees everything. */
void gal_index_destroy(struct gal_index *index);

/*
 * The HNSW graph (ann.h) of a large collection. Once the index holds min_faces live faces a
 * background thread (at a lower CPU priority than the service's workers, with threads - 1
 * helpers at the same priority) builds a graph over them while the exact scan keeps serving; when it has caught up with the writes made
 * meanwhile it is published and serves the searches from then on. Later adds go into both;
 * deletes only mark the rows (a search skips faces whose row is gone or dead), and once a
 * quarter of the graph is dead faces it is rebuilt the same way. A graph that fails (out of
 * memory) is dropped and the exact scan serves again. min_faces == 0: never (the default).
 */
struct gal_ann_config {
    size_t min_faces;
    unsigned m, ef_construction, ef_search;
    unsigned threads; /* a build's insertion threads, all at the build's low priority; 0: 1 */
};
void gal_index_set_ann(struct gal_index *index, const struct gal_ann_config *config);
/* Changes ef_search of the graph (now and of later builds); searches wait for the change. */
void gal_index_set_ann_ef_search(struct gal_index *index, unsigned ef_search);
/* Waits until no graph build runs (tests, benchmarks); 0, or BASE_ERR_LIMIT after timeout_ms. */
int gal_index_wait_ann(struct gal_index *index, int timeout_ms);

/* Makes room for `rows` rows in total (an optimisation before a bulk load). */
int gal_index_reserve(struct gal_index *index, size_t rows);

/*
 * Adds a face (`vector`: dim floats, L2-normalised by the caller). Face ids normally come in
 * increasing order and are appended; an older id is inserted in place. Adding an id that is
 * already present changes nothing and returns 0 (so replaying a change log is harmless).
 */
int gal_index_add(struct gal_index *index, int64_t face_id, int64_t subject_rowid,
                  const float *vector);
/* Whether a face is in the index (and not deleted). */
int gal_index_contains(struct gal_index *index, int64_t face_id);
/* Removes a face: BASE_ERR_NOT_FOUND when absent. Rows are compacted now and then. */
int gal_index_remove(struct gal_index *index, int64_t face_id);
/* Removes every face of a subject; returns how many. */
size_t gal_index_remove_subject(struct gal_index *index, int64_t subject_rowid);

/*
 * Scans the index once for `query_count` queries (query_count x dim floats, normalised).
 * For query q, faces[q * k_faces ...] receives face_counts[q] <= k_faces best faces and
 * subjects[q * k_subjects ...] subject_counts[q] <= k_subjects best subjects (each with its
 * best face), best first; ties go to the lower face id.
 */
int gal_index_search(struct gal_index *index, const float *queries, size_t query_count,
                     size_t k_faces, size_t k_subjects, struct gal_candidate *faces,
                     size_t *face_counts, struct gal_candidate *subjects, size_t *subject_counts);

void gal_index_get_stats(struct gal_index *index, struct gal_index_stats *stats);
/* The live faces (rows that are not tombstones): a collection's face count. */
uint64_t gal_index_faces(struct gal_index *index);
enum gal_dtype gal_index_dtype(const struct gal_index *index);
uint32_t gal_index_dim(const struct gal_index *index);

#endif
