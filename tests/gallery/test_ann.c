/*
 * The HNSW graph of large collections (src/gallery/ann.cpp, index.c, gallery.c), on clustered
 * unit vectors shaped like face embeddings: each subject a random direction, each of its faces
 * that direction plus noise (cosine ~0.65 between two faces of one subject), queries fresh
 * faces of enrolled subjects. Against a brute-force f64 reference:
 *   - the bridge alone: recall@1 and @10, scores close to the f64 dot product, with faces
 *     added one at a time and on several threads at once;
 *   - an index: the graph is built in the background once min_faces are in, while adds keep
 *     coming (appends and older ids inserted in place), and then holds every live face;
 *     searches through it find what the exact scan finds; faces added after it are found,
 *     deleted faces and subjects never come back, and a quarter deleted rebuilds it;
 *   - an index destroyed while its build runs (no hang, nothing leaked);
 *   - searches concurrent with adds and deletes on a published graph (ThreadSanitizer);
 *   - the gallery: a reopened SQLite gallery builds its graph and answers through it with
 *     the same exact similarities; by default (ann_min_faces 0) the exact scan.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>

#include <cmocka.h>

#include "base/base.h"
#include "gallery/ann.h"
#include "gallery/index.h"
#include "helpers.h"

#define DIM 128
#define FACES_PER_SUBJECT 4
#define K 10
/* per-component noise: |noise| ~ 0.075 * sqrt(128) = 0.85, cosine to the centre ~0.76 */
#define NOISE 0.075
#define BUILD_TIMEOUT_MS 120000

/* Sizes, a third under the sanitizers (ThreadSanitizer makes every distance ~20x slower). */
static size_t sized(size_t n)
{
    return getenv("VULTUS_SANITIZED") ? n / 3 : n;
}

/* A face of `centre`: centre + noise, normalised. */
static void face_of(struct rng *r, const float *centre, float *out)
{
    double s = 0;
    for (size_t i = 0; i < DIM; i++) {
        out[i] = centre[i] + (float)(NOISE * rng_gauss(r));
        s += (double)out[i] * out[i];
    }
    s = 1.0 / sqrt(s);
    for (size_t i = 0; i < DIM; i++)
        out[i] = (float)(out[i] * s);
}

struct data {
    size_t n, subjects;
    float *centres; /* [subjects][DIM] */
    float *x;       /* [n][DIM] */
    int64_t *ids, *subject_of;
    char *live;
};

/* n faces of n / FACES_PER_SUBJECT subjects; face i has id first_id + i. */
static struct data make_data(uint64_t seed, size_t n, int64_t first_id)
{
    struct rng r = {seed};
    struct data d = {n, n / FACES_PER_SUBJECT, NULL, NULL, NULL, NULL, NULL};
    d.centres = malloc(d.subjects * DIM * sizeof *d.centres);
    d.x = malloc(n * DIM * sizeof *d.x);
    d.ids = malloc(n * sizeof *d.ids);
    d.subject_of = malloc(n * sizeof *d.subject_of);
    d.live = malloc(n);
    assert_non_null(d.centres);
    assert_non_null(d.x);
    assert_non_null(d.ids);
    assert_non_null(d.subject_of);
    assert_non_null(d.live);
    for (size_t s = 0; s < d.subjects; s++)
        random_unit(&r, d.centres + s * DIM, DIM);
    for (size_t i = 0; i < n; i++) {
        size_t s = i % d.subjects;
        face_of(&r, d.centres + s * DIM, d.x + i * DIM);
        d.ids[i] = first_id + (int64_t)i;
        d.subject_of[i] = (int64_t)s + 1;
        d.live[i] = 1;
    }
    return d;
}

static void free_data(struct data *d)
{
    free(d->centres);
    free(d->x);
    free(d->ids);
    free(d->subject_of);
    free(d->live);
}

/* Fresh faces of random subjects: the probes a service sees. */
static float *make_queries(const struct data *d, uint64_t seed, size_t nq)
{
    struct rng r = {seed};
    float *q = malloc(nq * DIM * sizeof *q);
    assert_non_null(q);
    for (size_t i = 0; i < nq; i++)
        face_of(&r, d->centres + (rng_u64(&r) % d->subjects) * DIM, q + i * DIM);
    return q;
}

/* The exact top-k live face ids for q (f64), best first, with their scores. */
static size_t reference(const struct data *d, const float *q, size_t k, int64_t *out, double *best)
{
    size_t m = 0;
    for (size_t i = 0; i < d->n; i++) {
        if (!d->live[i]) continue;
        double s = 0;
        for (size_t j = 0; j < DIM; j++)
            s += (double)q[j] * d->x[i * DIM + j];
        size_t p = m < k ? m : k;
        while (p > 0 && s > best[p - 1])
            p--;
        if (p >= k) continue;
        size_t last = m < k ? m : k - 1;
        memmove(best + p + 1, best + p, (last - p) * sizeof *best);
        memmove(out + p + 1, out + p, (last - p) * sizeof *out);
        best[p] = s;
        out[p] = d->ids[i];
        if (m < k) m++;
    }
    return m;
}

/*
 * Recall@1, @10, and of the clear matches: the reference's top-10 faces scoring above
 * STRONG (other faces of the probe's subject; two unrelated faces score 0 +- 0.09 here). The
 * rest of a top-10 are faces of strangers separated by gaps of ~0.005, where an approximate
 * search may swap some for near-equals: the case that matters for identification is the
 * clear matches.
 */
#define STRONG 0.4
struct recall {
    double at1, at10, strong;
};

/* Counts over the queries of one search method. */
struct tally {
    size_t queries, hit1, hit10, total10, strong, strong_found;
};

/* Scores the n faces one search found for query q against the reference. */
static void tally_query(struct tally *t, const struct data *d, const float *q, const int64_t *found,
                        size_t n)
{
    int64_t ref[K];
    double ref_score[K];
    size_t m = reference(d, q, K, ref, ref_score);
    t->queries++;
    if (m && n && found[0] == ref[0]) t->hit1++;
    for (size_t a = 0; a < m; a++) {
        int hit = 0;
        for (size_t b = 0; b < n && !hit; b++)
            hit = found[b] == ref[a];
        t->hit10 += hit;
        if (ref_score[a] > STRONG) {
            t->strong++;
            t->strong_found += hit;
        }
    }
    t->total10 += m;
}

static struct recall tally_recall(const struct tally *t)
{
    return (struct recall){(double)t->hit1 / (double)t->queries,
                           t->total10 ? (double)t->hit10 / (double)t->total10 : 1.0,
                           t->strong ? (double)t->strong_found / (double)t->strong : 1.0};
}

/* Recall@1 and @10 of `index` against the reference over nq queries. */
static struct recall index_recall(struct gal_index *index, const struct data *d, const float *q,
                                  size_t nq)
{
    struct gal_candidate faces[K], subjects[K];
    size_t fn, sn;
    struct tally t = {0};
    for (size_t i = 0; i < nq; i++) {
        assert_int_equal(gal_index_search(index, q + i * DIM, 1, K, K, faces, &fn, subjects, &sn),
                         0);
        int64_t ids[K];
        for (size_t a = 0; a < fn; a++)
            ids[a] = faces[a].face_id;
        size_t before = t.total10;
        tally_query(&t, d, q + i * DIM, ids, fn);
        assert_int_equal(fn, t.total10 - before); /* as many as the live faces allow */
        /* best first, and each subject once */
        for (size_t a = 1; a < fn; a++)
            assert_true(faces[a - 1].score >= faces[a].score);
        for (size_t a = 0; a < sn; a++)
            for (size_t b = a + 1; b < sn; b++)
                assert_true(subjects[a].subject_rowid != subjects[b].subject_rowid);
    }
    return tally_recall(&t);
}

static void add_all(struct gal_index *index, const struct data *d, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        assert_int_equal(gal_index_add(index, d->ids[i], d->subject_of[i], d->x + i * DIM), 0);
}

static void expect_search(struct gal_index *index, const char *mode)
{
    struct gal_index_stats st;
    gal_index_get_stats(index, &st);
    assert_string_equal(st.search, mode);
}

/* ---- the bridge ---------------------------------------------------------------------------- */

/* Searches `ann` (holding d) with the queries: results best first, scores the stored
 * encodings' dot product, and recall against the f64 reference. */
static void check_bridge_search(const struct gal_ann *ann, enum gal_ann_encoding enc,
                                const struct data *d, const float *q, size_t nq, const char *how)
{
    const struct gal_kernels *kern = gal_kernels_best();
    uint8_t *entry = malloc(gal_ann_entry_bytes(DIM, enc));
    assert_non_null(entry);
    struct tally t = {0};
    int64_t ids[K];
    float scores[K];
    for (size_t i = 0; i < nq; i++) {
        size_t n;
        gal_ann_encode(DIM, enc, kern, q + i * DIM, entry);
        assert_int_equal(gal_ann_search(ann, entry, K, ids, scores, &n), 0);
        assert_int_equal(n, K);
        tally_query(&t, d, q + i * DIM, ids, n);
        for (size_t b = 1; b < n; b++)
            assert_true(scores[b - 1] >= scores[b]);
        /* the score is the dot product of the stored encodings (int8: the scan's
         * formula), close to the f64 one */
        size_t at = (size_t)(ids[0] - 1);
        double s = 0;
        for (size_t j = 0; j < DIM; j++)
            s += (double)q[i * DIM + j] * d->x[at * DIM + j];
        assert_true(fabs(s - scores[0]) < (enc == GAL_ANN_I8 ? 0.02 : 1e-5));
    }
    print_message("bridge %s, %s (ef 64): recall@1 %.3f, @10 %.3f, clear matches %.4f of %zu\n",
                  enc == GAL_ANN_I8 ? "int8" : "f32", how, tally_recall(&t).at1,
                  tally_recall(&t).at10, tally_recall(&t).strong, t.strong);
    assert_true(t.hit1 * 100 >= nq * 98); /* int8 ties may swap a top-1 */
    assert_true(t.strong >= nq * 2 && t.strong_found * 100 >= t.strong * 99);
    assert_true(t.hit10 * 100 >= t.total10 * 80);
    free(entry);
}

/*
 * Per encoding, two graphs of the same faces: one added a face at a time (starting small:
 * full is refused with a clear error, then grown), one with gal_ann_add_many on three threads
 * (refused whole without room; an empty graph's first faces, a small call, on one thread, the
 * rest on three). Each holds every face and passes the same recall checks.
 */
static void test_bridge(void **state)
{
    (void)state;
    const struct gal_kernels *kern = gal_kernels_best();
    struct data d = make_data(11, sized(4000), 1);
    const size_t nq = sized(300);
    float *q = make_queries(&d, 12, nq);
    const struct gal_ann_params params = {16, 100, 64};
    for (int e = 0; e < 2; e++) {
        enum gal_ann_encoding enc = e == 0 ? GAL_ANN_I8 : GAL_ANN_F32;
        const size_t bytes = gal_ann_entry_bytes(DIM, enc);
        uint8_t *entries = malloc(d.n * bytes);
        assert_non_null(entries);
        for (size_t i = 0; i < d.n; i++)
            gal_ann_encode(DIM, enc, kern, d.x + i * DIM, entries + i * bytes);

        struct gal_ann *ann;
        assert_int_equal(gal_ann_create(DIM, enc, kern, &params, 100, &ann), 0);
        for (size_t i = 0; i < d.n; i++) {
            if (gal_ann_count(ann) == gal_ann_capacity(ann)) {
                assert_int_equal(gal_ann_add(ann, d.ids[i], entries + i * bytes), BASE_ERR_LIMIT);
                assert_int_equal(gal_ann_reserve(ann, gal_ann_capacity(ann) * 2), 0);
            }
            assert_int_equal(gal_ann_add(ann, d.ids[i], entries + i * bytes), 0);
        }
        assert_int_equal(gal_ann_count(ann), d.n);
        assert_true(gal_ann_contains(ann, d.ids[0]));
        assert_false(gal_ann_contains(ann, 999999));
        assert_true(gal_ann_bytes(ann) > d.n * bytes);
        check_bridge_search(ann, enc, &d, q, nq, "one at a time");
        gal_ann_destroy(ann);

        assert_int_equal(gal_ann_create(DIM, enc, kern, &params, d.n - 1, &ann), 0);
        assert_int_equal(gal_ann_add_many(ann, d.n, d.ids, entries, 3), BASE_ERR_LIMIT);
        assert_int_equal(gal_ann_count(ann), 0);
        assert_int_equal(gal_ann_reserve(ann, d.n), 0);
        const size_t head = 100;
        assert_int_equal(gal_ann_add_many(ann, head, d.ids, entries, 3), 0);
        assert_int_equal(gal_ann_count(ann), head);
        assert_int_equal(gal_ann_add_many(ann, d.n - head, d.ids + head, entries + head * bytes, 3),
                         0);
        assert_int_equal(gal_ann_count(ann), d.n);
        for (size_t i = 0; i < d.n; i++)
            assert_true(gal_ann_contains(ann, d.ids[i]));
        check_bridge_search(ann, enc, &d, q, nq, "three threads");
        gal_ann_destroy(ann);
        free(entries);
    }
    free(q);
    free_data(&d);
}

/* ---- an index -------------------------------------------------------------------------------- */

static void test_index_build_follow_delete(void **state)
{
    (void)state;
    /* ids 1001.. appended; ids 1..1000 later, inserted in place while the build runs (other
     * subjects, far from every query of d: the recall below counts d alone) */
    struct data late = make_data(29, sized(1000), 1);
    for (size_t i = 0; i < late.n; i++)
        late.subject_of[i] += 100000;
    struct data d = make_data(21, sized(8000), 1001);
    const size_t min_faces = sized(2000), nq = sized(300);
    for (enum gal_dtype dt = GAL_DTYPE_F32; dt <= GAL_DTYPE_INT8; dt++) {
        struct gal_index *index;
        assert_int_equal(gal_index_create(DIM, dt, NULL, &index), 0);
        /* int8's graph built on three threads (f32's on one) */
        const struct gal_ann_config cfg = {.min_faces = min_faces,
                                           .m = 16,
                                           .ef_construction = 100,
                                           .ef_search = 128,
                                           .threads = dt == GAL_DTYPE_INT8 ? 3 : 1};
        gal_index_set_ann(index, &cfg);
        add_all(index, &d, 0, min_faces - 1);
        expect_search(index, "exact");          /* below min_faces */
        add_all(index, &d, min_faces - 1, d.n); /* the build starts at min_faces, chases adds */
        add_all(index, &late, 0, late.n);
        assert_int_equal(gal_index_wait_ann(index, BUILD_TIMEOUT_MS), 0);
        expect_search(index, "hnsw");
        struct gal_index_stats st;
        gal_index_get_stats(index, &st);
        assert_int_equal(st.faces, d.n + late.n);
        assert_int_equal(st.ann_faces, d.n + late.n); /* the in-place ones included */
        assert_true(st.ann_bytes > 0);
        assert_true(st.ann_build_s > 0);

        /* the graph against the f64 reference */
        float *q = make_queries(&d, 22, nq);
        struct recall rc = index_recall(index, &d, q, nq);
        print_message("index %s: recall@1 %.3f, @10 %.3f, clear matches %.4f\n", gal_dtype_name(dt),
                      rc.at1, rc.at10, rc.strong);
        assert_true(rc.at1 >= 0.97);
        assert_true(rc.strong >= 0.99);
        assert_true(rc.at10 >= 0.85);

        /* each late (in-place) face is found by its own vector */
        for (size_t i = 0; i < late.n; i += 37) {
            struct gal_candidate f[K], s[K];
            size_t fn, sn;
            assert_int_equal(gal_index_search(index, late.x + i * DIM, 1, K, K, f, &fn, s, &sn), 0);
            assert_int_equal(f[0].face_id, late.ids[i]);
        }

        /* a face added after publication is found; deleted, it never comes back */
        float fresh[DIM];
        struct rng r = {23};
        random_unit(&r, fresh, DIM);
        assert_int_equal(gal_index_add(index, 50000, 9999, fresh), 0);
        struct gal_candidate f[K], s[K];
        size_t fn, sn;
        assert_int_equal(gal_index_search(index, fresh, 1, K, K, f, &fn, s, &sn), 0);
        assert_int_equal(f[0].face_id, 50000);
        assert_int_equal(s[0].subject_rowid, 9999);
        assert_int_equal(gal_index_remove(index, 50000), 0);
        assert_int_equal(gal_index_search(index, fresh, 1, K, K, f, &fn, s, &sn), 0);
        for (size_t i = 0; i < fn; i++)
            assert_true(f[i].face_id != 50000);
        for (size_t i = 0; i < sn; i++)
            assert_true(s[i].subject_rowid != 9999);

        /* a subject removed: none of its faces, even probed with its own centre */
        const int64_t gone = d.subject_of[5];
        size_t removed = gal_index_remove_subject(index, gone);
        assert_true(removed >= FACES_PER_SUBJECT);
        for (size_t i = 0; i < d.n; i++)
            if (d.subject_of[i] == gone) d.live[i] = 0;
        assert_int_equal(
            gal_index_search(index, d.centres + (size_t)(gone - 1) * DIM, 1, K, K, f, &fn, s, &sn),
            0);
        for (size_t i = 0; i < sn; i++)
            assert_true(s[i].subject_rowid != gone);

        /* the late faces and a third of d deleted: more than a quarter dead, rebuilt */
        for (size_t i = 0; i < late.n; i++)
            assert_int_equal(gal_index_remove(index, late.ids[i]), 0);
        for (size_t i = 0; i < d.n; i += 3) {
            if (!d.live[i]) continue;
            assert_int_equal(gal_index_remove(index, d.ids[i]), 0);
            d.live[i] = 0;
        }
        assert_int_equal(gal_index_wait_ann(index, BUILD_TIMEOUT_MS), 0);
        gal_index_get_stats(index, &st);
        assert_string_equal(st.search, "hnsw");
        assert_true(st.ann_faces < d.n + late.n); /* a new graph, without the dead */
        assert_true(st.ann_faces >= st.faces);
        rc = index_recall(index, &d, q, nq);
        print_message("index %s after deleting a third: recall@1 %.3f, @10 %.3f, clear matches "
                      "%.4f (graph %llu, live %llu)\n",
                      gal_dtype_name(dt), rc.at1, rc.at10, rc.strong,
                      (unsigned long long)st.ann_faces, (unsigned long long)st.faces);
        assert_true(rc.at1 >= 0.97);
        assert_true(rc.strong >= 0.99);
        assert_true(rc.at10 >= 0.85);
        for (size_t i = 0; i < d.n; i++)
            d.live[i] = 1;
        free(q);
        gal_index_destroy(index);
    }
    free_data(&d);
    free_data(&late);
}

static void test_destroy_while_building(void **state)
{
    (void)state;
    struct data d = make_data(31, sized(20000), 1);
    struct gal_index *index;
    assert_int_equal(gal_index_create(DIM, GAL_DTYPE_INT8, NULL, &index), 0);
    add_all(index, &d, 0, d.n);
    const struct gal_ann_config cfg = {.min_faces = 100};
    gal_index_set_ann(index, &cfg); /* defaults for the rest */
    expect_search(index, "exact, hnsw building");
    /* the exact scan serves meanwhile */
    struct gal_candidate f[K], s[K];
    size_t fn, sn;
    assert_int_equal(gal_index_search(index, d.x, 1, K, K, f, &fn, s, &sn), 0);
    assert_int_equal(f[0].face_id, d.ids[0]);
    uint64_t t0 = base_now_ns();
    gal_index_destroy(index); /* stops the build: returns within a chunk's inserts */
    print_message("destroyed during the build in %.0f ms\n", (double)(base_now_ns() - t0) / 1e6);
    free_data(&d);
}

/* ---- concurrency ----------------------------------------------------------------------------- */

struct shared {
    struct gal_index *index;
    const struct data *d;
    atomic_int stop;
    atomic_size_t searches;
};

static void *searcher(void *arg)
{
    struct shared *sh = arg;
    struct gal_candidate f[K], s[K];
    size_t fn, sn, i = 0;
    while (!atomic_load(&sh->stop)) {
        const float *q = sh->d->x + (i++ % sh->d->n) * DIM;
        if (gal_index_search(sh->index, q, 1, K, K, f, &fn, s, &sn) != 0) abort();
        if (fn == 0) abort();
    }
    atomic_fetch_add(&sh->searches, i);
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    struct data d = make_data(41, sized(3000), 1);
    struct data more = make_data(42, sized(1000), 10001);
    struct gal_index *index;
    assert_int_equal(gal_index_create(DIM, GAL_DTYPE_INT8, NULL, &index), 0);
    add_all(index, &d, 0, d.n);
    const struct gal_ann_config cfg = {
        .min_faces = sized(1000), .ef_construction = 40, .threads = 2};
    gal_index_set_ann(index, &cfg);
    /* searches during the build (exact) and after (graph) while faces come and go */
    struct shared sh = {index, &d, 0, 0};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, searcher, &sh), 0);
    for (size_t i = 0; i < more.n; i++) {
        assert_int_equal(gal_index_add(index, more.ids[i], more.subject_of[i], more.x + i * DIM),
                         0);
        if (i % 3 == 0) assert_int_equal(gal_index_remove(index, d.ids[i]), 0);
    }
    assert_int_equal(gal_index_wait_ann(index, BUILD_TIMEOUT_MS), 0);
    const size_t gone = more.n / 5;
    for (size_t i = 0; i < gone; i++)
        assert_int_equal(gal_index_remove(index, more.ids[i]), 0);
    atomic_store(&sh.stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    expect_search(index, "hnsw");
    /* every live face is in the graph and found by its own vector */
    for (size_t i = gone; i < more.n; i += 7) {
        struct gal_candidate f[K], s[K];
        size_t fn, sn;
        assert_int_equal(gal_index_search(index, more.x + i * DIM, 1, K, K, f, &fn, s, &sn), 0);
        assert_int_equal(f[0].face_id, more.ids[i]);
    }
    print_message("concurrent: %zu searches meanwhile\n", atomic_load(&sh.searches));
    gal_index_destroy(index);
    free_data(&d);
    free_data(&more);
}

/* ---- the gallery ------------------------------------------------------------------------------
 */

static int wait_gallery_ann(struct gal *g, const char *collection)
{
    for (int i = 0; i < BUILD_TIMEOUT_MS / 20; i++) {
        struct gal_index_stats st;
        if (gal_index_stats(g, collection, &st) != 0) return -1;
        if (strcmp(st.search, "hnsw") == 0) return 0;
        usleep(20000);
    }
    return -1;
}

static void test_gallery(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/gallery.db", dir);
    struct data d = make_data(51, 1200, 1);
    struct gal *g;
    assert_int_equal(gal_open(path, NULL, &g), 0);
    struct gal_collection_info info = {.name = "big",
                                       .model_id = "test-128",
                                       .dim = DIM,
                                       .dtype = GAL_DTYPE_INT8,
                                       .threshold = 0.5f};
    assert_int_equal(gal_collection_create(g, &info), 0);
    char subject[32];
    for (size_t s = 0; s < d.subjects; s++) {
        snprintf(subject, sizeof subject, "person-%zu", s + 1);
        assert_int_equal(gal_subject_add(g, "big", subject, NULL), 0);
    }
    for (size_t i = 0; i < d.n; i++) {
        snprintf(subject, sizeof subject, "person-%lld", (long long)d.subject_of[i]);
        struct gal_face_input in = {
            .subject_id = subject, .model_id = "test-128", .dim = DIM, .embedding = d.x + i * DIM};
        int64_t id;
        assert_int_equal(gal_face_add(g, "big", &in, &id), 0);
    }
    struct gal_index_stats st;
    assert_int_equal(gal_index_stats(g, "big", &st), 0);
    assert_string_equal(st.search, "exact"); /* the default: no graph */
    float *q = make_queries(&d, 52, 50);
    struct gal_search_request req = {
        .model_id = "test-128", .dim = DIM, .embeddings = q, .query_count = 50, .k = 5};
    struct gal_results *exact_res, *ann_res;
    assert_int_equal(gal_search(g, "big", &req, &exact_res), 0);
    gal_close(g);

    struct gal_options opt = {.ann_min_faces = 1000};
    assert_int_equal(gal_open(path, &opt, &g), 0);
    assert_int_equal(wait_gallery_ann(g, "big"), 0);
    assert_int_equal(gal_index_stats(g, "big", &st), 0);
    assert_int_equal(st.ann_faces, d.n);
    assert_int_equal(gal_search(g, "big", &req, &ann_res), 0);
    /* the same subjects with the same (exactly re-scored) similarities */
    size_t same = 0;
    for (size_t i = 0; i < 50; i++) {
        const struct gal_query_result *a = &exact_res->queries[i], *b = &ann_res->queries[i];
        assert_true(a->subject_count > 0 && b->subject_count > 0);
        if (strcmp(a->subjects[0].subject_id, b->subjects[0].subject_id) == 0) {
            assert_true(a->subjects[0].similarity == b->subjects[0].similarity);
            same++;
        }
    }
    print_message("gallery: top subject the same for %zu of 50 queries\n", same);
    assert_true(same >= 49);
    /* ef tuned on the live graph (no rebuild): the widest search finds every top subject */
    gal_set_ann_ef_search(g, 1000);
    struct gal_results *wide;
    assert_int_equal(gal_search(g, "big", &req, &wide), 0);
    for (size_t i = 0; i < 50; i++)
        assert_string_equal(wide->queries[i].subjects[0].subject_id,
                            exact_res->queries[i].subjects[0].subject_id);
    gal_results_destroy(wide);
    assert_int_equal(gal_index_stats(g, "big", &st), 0);
    assert_string_equal(st.search, "hnsw");
    gal_results_destroy(exact_res);
    gal_results_destroy(ann_res);
    gal_close(g);

    assert_int_equal(gal_open(path, NULL, &g), 0); /* the default: never */
    assert_int_equal(gal_index_stats(g, "big", &st), 0);
    assert_string_equal(st.search, "exact");
    gal_close(g);
    free(q);
    free_data(&d);
    remove_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bridge),
        cmocka_unit_test(test_index_build_follow_delete),
        cmocka_unit_test(test_destroy_while_building),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_gallery),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
