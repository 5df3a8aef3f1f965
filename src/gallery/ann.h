/*
 * An approximate nearest-neighbour graph over one collection's vectors (private to
 * src/gallery): hnswlib's HNSW (Debian libhnswlib-dev, header-only C++) behind this C
 * interface (ann.cpp). The distance is 1 - the dot product the index's own kernels compute,
 * on the same encoding: int8 codes with a scale for int8 collections, f32 otherwise (an f16
 * row would need converting at every distance, and the graph is an accelerator for large
 * collections, not their storage). So a graph's scores are the scan's up to one rounding, and
 * the gallery re-scores the candidates exactly as it does for the scan.
 *
 * Thread-safety: none of its own beyond gal_ann_add_many's threads. The index (index.c) calls
 * gal_ann_add, gal_ann_add_many and gal_ann_reserve only while no search runs on the same graph
 * (holding its lock exclusive, or before the graph is published), and gal_ann_search from any
 * number of threads at once.
 */
#ifndef VULTUS_GALLERY_ANN_H
#define VULTUS_GALLERY_ANN_H

#include <stddef.h>
#include <stdint.h>

#include "gallery/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

struct gal_ann;

/* How the graph stores vectors: int8 codes with a scale (int8 collections), or f32. */
enum gal_ann_encoding { GAL_ANN_I8, GAL_ANN_F32 };

struct gal_ann_params {
    unsigned m;               /* links per node (hnswlib M); level 0 has 2 M */
    unsigned ef_construction; /* candidates explored per insertion */
    unsigned ef_search;       /* candidates explored per query (at least k) */
};

/* Bytes of one encoded vector (gal_ann_encode's output). */
size_t gal_ann_entry_bytes(uint32_t dim, enum gal_ann_encoding encoding);
/* Encodes a unit vector the way the graph stores it (and queries it). */
void gal_ann_encode(uint32_t dim, enum gal_ann_encoding encoding, const struct gal_kernels *kernels,
                    const float *vector, void *entry);
/* The GAL_ANN_I8 entry of codes already quantised with their scale (an index's stored row). */
void gal_ann_entry_i8(uint32_t dim, float scale, const int8_t *codes, void *entry);

/* A graph with room for `capacity` vectors (grown by gal_ann_reserve). */
int gal_ann_create(uint32_t dim, enum gal_ann_encoding encoding, const struct gal_kernels *kernels,
                   const struct gal_ann_params *params, size_t capacity, struct gal_ann **out);
void gal_ann_destroy(struct gal_ann *ann);

/* Changes the candidates explored per query (not concurrently with a search). */
void gal_ann_set_ef_search(struct gal_ann *ann, unsigned ef_search);
/* Makes room for `capacity` vectors in total (no-op when there is room). */
int gal_ann_reserve(struct gal_ann *ann, size_t capacity);
/* Adds an encoded vector under `face_id`; full: BASE_ERR_LIMIT (reserve first). */
int gal_ann_add(struct gal_ann *ann, int64_t face_id, const void *entry);
/*
 * Adds n encoded vectors (`entries`: n entries of gal_ann_entry_bytes each) under face_ids,
 * which must be distinct and not yet in the graph, on up to `threads` threads (hnswlib's
 * concurrent insertion; small calls use one). The graph must have room for all of them
 * (BASE_ERR_LIMIT otherwise, nothing added). On an error some of them may have been added.
 * With more than one thread the graph depends on the threads' timing, so it is not the same
 * from one build to the next (its quality is).
 */
int gal_ann_add_many(struct gal_ann *ann, size_t n, const int64_t *face_ids, const void *entries,
                     unsigned threads);
/* Whether face_id was added. */
int gal_ann_contains(const struct gal_ann *ann, int64_t face_id);
size_t gal_ann_count(const struct gal_ann *ann);
size_t gal_ann_capacity(const struct gal_ann *ann);
/* Approximate bytes held (vectors, links, locks, the label table). */
size_t gal_ann_bytes(const struct gal_ann *ann);

/*
 * The (approximately) k nearest faces to an encoded query, best first: *found <= k face ids
 * with their scores, 1 - the graph's distance (the scan's dot product up to one rounding;
 * equal scores in no particular order: the index ranks and breaks ties itself).
 */
int gal_ann_search(const struct gal_ann *ann, const void *query, size_t k, int64_t *face_ids,
                   float *scores, size_t *found);

#ifdef __cplusplus
}
#endif

#endif
