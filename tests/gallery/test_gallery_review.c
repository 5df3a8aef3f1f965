/*
 * An adversarial review of the gallery, as a user relying on it for identity decisions: what
 * the other gallery tests do not check. Each test pins one behaviour the documentation
 * promises (docs/gallery.md, gallery.h):
 *   - a subject is scored by its best face, exactly, whatever the storage type, even when
 *     another subject's many faces fill the face candidates (int8 / f16 re-scoring);
 *   - similarity = threshold is a match, and the same face gives the same similarity (and
 *     so the same decision) with every storage type;
 *   - k larger than the gallery, ties, deleted faces and subjects never returned (same handle
 *     and a second handle following the change log), a collection deleted and re-created
 *     under its name on a follower;
 *   - the limits on names, ids, metadata and thumbnails at and one past the limit;
 *   - export / import keeps settings, metadata, quality and created times;
 *   - the read-only mode.
 * SQLite only (a temporary file); a few seconds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <time.h>

#include <cmocka.h>

#include <jansson.h>
#include <limits.h>

#include "base/base.h"
#include "gallery/kernels.h"
#include "helpers.h"
#include "http/client.h"

#define MODEL "review-embedder@1"
#define DIM 128

struct fixture {
    char *dir;
    char db[512];
    struct gal *g;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->dir = make_tmpdir();
    path_in(f->db, sizeof f->db, f->dir, "gallery.db");
    base_log_level = BASE_LOG_WARN;
    if (gal_open(f->db, NULL, &f->g) != 0) {
        fprintf(stderr, "gal_open: %s\n", base_error_message());
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    gal_close(f->g);
    remove_tree(f->dir);
    free(f);
    return 0;
}

static void create(struct gal *g, const char *name, enum gal_dtype dtype, float threshold)
{
    struct gal_collection_info info = collection_info(name, MODEL, DIM, dtype, threshold);
    EXPECT_OK(gal_collection_create(g, &info));
}

/* x = s q + sqrt(1 - s^2) u with u a random unit vector orthogonal to q (q a unit vector):
 * cos(x, q) = s up to float rounding. */
static void at_similarity(struct rng *r, const float *q, float s, float *x)
{
    float u[DIM];
    random_unit(r, u, DIM);
    double d = 0, n = 0;
    for (int j = 0; j < DIM; j++)
        d += (double)u[j] * q[j];
    for (int j = 0; j < DIM; j++)
        u[j] -= (float)(d * q[j]);
    for (int j = 0; j < DIM; j++)
        n += (double)u[j] * u[j];
    for (int j = 0; j < DIM; j++)
        x[j] = (float)(s * q[j] + sqrt(1.0 - (double)s * s) * u[j] / sqrt(n));
}

/* The gallery stores embeddings normalised; this is its normalisation (double, then float). */
static void normalise(const float *x, float *out)
{
    double s = 0;
    for (int j = 0; j < DIM; j++)
        s += (double)x[j] * x[j];
    s = sqrt(s);
    for (int j = 0; j < DIM; j++)
        out[j] = (float)(x[j] / s);
}

static double exact_cos(const float *a, const float *b)
{
    float na[DIM], nb[DIM];
    normalise(a, na);
    normalise(b, nb);
    double s = 0;
    for (int j = 0; j < DIM; j++)
        s += (double)na[j] * nb[j];
    return s;
}

/* The index's int8 score of a stored vector for a query (kernels.c: symmetric per-vector
 * quantisation, exact int32 code products), up to float rounding. */
static double int8_score(const float *q, const float *x)
{
    float nq[DIM], nx[DIM];
    normalise(q, nq);
    normalise(x, nx);
    int8_t cq[DIM], cx[DIM];
    float sq = gal_quantize_i8(nq, DIM, cq), sx = gal_quantize_i8(nx, DIM, cx);
    int32_t dot = 0;
    for (int j = 0; j < DIM; j++)
        dot += cq[j] * cx[j];
    return (double)dot * sq * sx;
}

static struct gal_results *search(struct gal *g, const char *collection, const float *q, size_t k)
{
    struct gal_search_request req = {
        .model_id = MODEL, .dim = DIM, .embeddings = q, .query_count = 1, .k = k};
    struct gal_results *res = NULL;
    EXPECT_OK(gal_search(g, collection, &req, &res));
    return res;
}

static const struct gal_hit *find_subject(const struct gal_query_result *r, const char *id)
{
    for (size_t i = 0; i < r->subject_count; i++)
        if (strcmp(r->subjects[i].subject_id, id) == 0) return &r->subjects[i];
    return NULL;
}

/*
 * A subject is scored by its best face (docs: "a subject's score is its best face's"), and
 * with int8 or f16 storage "every similarity returned is the exact cosine similarity ... and
 * the decision at the threshold is the same one f32 storage would give". Subject "alice"
 * has two faces: f1 at exact similarity s1 to the query, f2 a little lower, s2, but with f2
 * ahead of f1 by the index's quantised score. Subject "crowd" has 60 faces closer to the
 * query than either, so alice's faces are not among the face candidates; alice reaches the
 * results only through the subject candidates. The threshold lies between s2 and s1: alice
 * must come back at s1 with f1, a match - as she does with f32 storage.
 */
static void check_subject_scored_by_its_best_face(struct gal *g)
{
    struct rng r = {11};
    float q[DIM], f1[DIM], f2[DIM], x[DIM];
    random_unit(&r, q, DIM);
    /* Draw pairs until the int8 scores order them the other way round by a clear margin. */
    double s1 = 0, s2 = 0;
    int tries = 0;
    for (;; tries++) {
        assert_true(tries < 10000);
        at_similarity(&r, q, 0.6003f, f1);
        at_similarity(&r, q, 0.6000f, f2);
        s1 = exact_cos(q, f1);
        s2 = exact_cos(q, f2);
        if (s1 > s2 + 1e-4 && int8_score(q, f2) > int8_score(q, f1) + 2e-4) break;
    }
    const float threshold = (float)((s1 + s2) / 2);
    const enum gal_dtype dtypes[] = {GAL_DTYPE_F32, GAL_DTYPE_INT8, GAL_DTYPE_F16};
    for (int d = 0; d < 3; d++) {
        char name[16];
        snprintf(name, sizeof name, "best%d", d);
        create(g, name, dtypes[d], threshold);
        EXPECT_OK(gal_subject_add(g, name, "crowd", NULL));
        EXPECT_OK(gal_subject_add(g, name, "alice", NULL));
        for (int i = 0; i < 60; i++) {
            at_similarity(&r, q, 0.9f, x);
            struct gal_face_input in = face_input("crowd", MODEL, DIM, x);
            int64_t id;
            EXPECT_OK(gal_face_add(g, name, &in, &id));
        }
        int64_t id1, id2;
        struct gal_face_input in = face_input("alice", MODEL, DIM, f2);
        EXPECT_OK(gal_face_add(g, name, &in, &id2));
        in = face_input("alice", MODEL, DIM, f1);
        EXPECT_OK(gal_face_add(g, name, &in, &id1));
        for (size_t k = 2; k <= 3; k++) {
            struct gal_results *res = search(g, name, q, k);
            const struct gal_query_result *qr = &res->queries[0];
            assert_int_equal(qr->subject_count, 2);
            assert_string_equal(qr->subjects[0].subject_id, "crowd");
            const struct gal_hit *alice = find_subject(qr, "alice");
            assert_non_null(alice);
            if (alice->face_id != id1 || alice->decision != GAL_MATCH ||
                fabs(alice->similarity - s1) > 1e-6)
                fail_msg("%s storage, k %zu: alice came back with face %lld (best: %lld) at %.7f "
                         "(best face: %.7f, the other %.7f), %s at threshold %.7f",
                         gal_dtype_name(dtypes[d]), k, (long long)alice->face_id, (long long)id1,
                         (double)alice->similarity, s1, s2,
                         alice->decision == GAL_MATCH ? "a match" : "no match", (double)threshold);
            gal_results_destroy(res);
        }
    }
}

static void test_subject_scored_by_its_best_face_whatever_the_storage(void **state)
{
    struct fixture *f = *state;
    check_subject_scored_by_its_best_face(f->g);
}

/*
 * The decision at the boundary: similarity = threshold is a match (gallery.h: "similarity >=
 * threshold is a match"), and one face gives one similarity whatever the storage type, so the
 * decision does not depend on it (docs: "the decision at the threshold is the same one f32
 * storage would give"). For each of 40 faces: search it with f32 storage, set the threshold
 * to the similarity returned, then search it again with each storage type: the same
 * similarity, bit for bit, and a match.
 */
static void test_threshold_boundary_same_with_every_storage(void **state)
{
    struct fixture *f = *state;
    struct gal *g = f->g;
    struct rng r = {12};
    enum { N = 40 };
    static float faces[N][DIM], queries[N][DIM];
    create(g, "edge", GAL_DTYPE_F32, 0.5f);
    EXPECT_OK(gal_subject_add(g, "edge", "p", NULL));
    for (int i = 0; i < N; i++) {
        random_unit(&r, queries[i], DIM);
        at_similarity(&r, queries[i], 0.93f, faces[i]); /* near the default threshold */
        struct gal_face_input in = face_input("p", MODEL, DIM, faces[i]);
        int64_t id;
        EXPECT_OK(gal_face_add(g, "edge", &in, &id));
    }
    float sim_f32[N];
    int64_t id_f32[N];
    for (int i = 0; i < N; i++) {
        struct gal_results *res = search(g, "edge", queries[i], 1);
        sim_f32[i] = res->queries[0].faces[0].similarity;
        id_f32[i] = res->queries[0].faces[0].face_id;
        gal_results_destroy(res);
    }
    int differ = 0;
    const enum gal_dtype dtypes[] = {GAL_DTYPE_F32, GAL_DTYPE_F16, GAL_DTYPE_INT8};
    for (int d = 0; d < 3; d++) {
        EXPECT_OK(gal_collection_set_dtype(g, "edge", dtypes[d]));
        for (int i = 0; i < N; i++) {
            EXPECT_OK(gal_collection_set_threshold(g, "edge", sim_f32[i]));
            struct gal_results *res = search(g, "edge", queries[i], 1);
            const struct gal_hit *hit = &res->queries[0].faces[0];
            const struct gal_hit *subject = &res->queries[0].subjects[0];
            assert_int_equal(hit->face_id, id_f32[i]);
            if (hit->similarity != sim_f32[i] || hit->decision != GAL_MATCH ||
                subject->decision != GAL_MATCH) {
                fprintf(stderr, "%s storage, face %d: similarity %.9g (f32 storage: %.9g), %s\n",
                        gal_dtype_name(dtypes[d]), i, (double)hit->similarity, (double)sim_f32[i],
                        hit->decision == GAL_MATCH ? "a match" : "no match");
                differ++;
            }
            gal_results_destroy(res);
        }
    }
    assert_int_equal(differ, 0);
}

static int64_t add_face(struct gal *g, const char *collection, const char *subject,
                        const float *embedding)
{
    struct gal_face_input in = face_input(subject, MODEL, DIM, embedding);
    int64_t id = 0;
    EXPECT_OK(gal_face_add(g, collection, &in, &id));
    return id;
}

/* Whether a search for `q` (k = 1000) returns face `id` or subject `subject` at all. */
static int returns(struct gal *g, const char *collection, const float *q, int64_t id,
                   const char *subject)
{
    struct gal_results *res = search(g, collection, q, GAL_K_MAX);
    const struct gal_query_result *r = &res->queries[0];
    int found = 0;
    for (size_t i = 0; i < r->face_count; i++)
        if (r->faces[i].face_id == id || (subject && !strcmp(r->faces[i].subject_id, subject)))
            found = 1;
    for (size_t i = 0; i < r->subject_count; i++)
        if (r->subjects[i].face_id == id ||
            (subject && !strcmp(r->subjects[i].subject_id, subject)))
            found = 1;
    gal_results_destroy(res);
    return found;
}

/*
 * k larger than the gallery returns everything once (faces: every face; subjects: every
 * subject, once each, scored by its best face); exact ties (the same photo enrolled for five
 * subjects) come back in face-id order whatever the storage type, so the same search gives
 * the same answer every time.
 */
static void test_k_beyond_the_gallery_and_ties(void **state)
{
    struct fixture *f = *state;
    struct gal *g = f->g;
    struct rng r = {13};
    float q[DIM], same[DIM], x[DIM];
    random_unit(&r, q, DIM);
    at_similarity(&r, q, 0.8f, same);
    const enum gal_dtype dtypes[] = {GAL_DTYPE_F32, GAL_DTYPE_F16, GAL_DTYPE_INT8};
    for (int d = 0; d < 3; d++) {
        char name[16];
        snprintf(name, sizeof name, "ties%d", d);
        create(g, name, dtypes[d], 0.5f);
        int64_t tie_ids[5];
        for (int s = 0; s < 5; s++) {
            char id[16];
            snprintf(id, sizeof id, "t%d", s);
            EXPECT_OK(gal_subject_add(g, name, id, NULL));
            tie_ids[s] = add_face(g, name, id, same);
            for (int i = 0; i < 3; i++) { /* lower faces of the same subject */
                at_similarity(&r, q, 0.3f, x);
                add_face(g, name, id, x);
            }
        }
        EXPECT_OK(gal_subject_add(g, name, "empty", NULL)); /* no faces: never a hit */
        struct gal_results *res = search(g, name, q, 3);
        const struct gal_query_result *qr = &res->queries[0];
        assert_int_equal(qr->face_count, 3);
        assert_int_equal(qr->subject_count, 3);
        for (int i = 0; i < 3; i++) {
            assert_int_equal(qr->faces[i].face_id, tie_ids[i]);
            assert_int_equal(qr->subjects[i].face_id, tie_ids[i]);
            assert_true(qr->faces[i].similarity == qr->faces[0].similarity);
        }
        gal_results_destroy(res);
        res = search(g, name, q, 100);
        qr = &res->queries[0];
        assert_int_equal(qr->face_count, 20);
        assert_int_equal(qr->subject_count, 5);
        for (int i = 0; i < 5; i++) {
            assert_int_equal(qr->subjects[i].face_id, tie_ids[i]);
            assert_int_equal(qr->faces[i].face_id, tie_ids[i]);
        }
        for (size_t i = 1; i < qr->face_count; i++)
            assert_true(qr->faces[i].similarity <= qr->faces[i - 1].similarity);
        gal_results_destroy(res);
    }
}

/* Bad queries: zero, NaN, Inf, another model, another dimension, k 0 or too large. */
static void test_bad_queries_refused(void **state)
{
    struct fixture *f = *state;
    struct gal *g = f->g;
    struct rng r = {14};
    float q[DIM];
    random_unit(&r, q, DIM);
    create(g, "c", GAL_DTYPE_INT8, 0.5f);
    EXPECT_OK(gal_subject_add(g, "c", "a", NULL));
    add_face(g, "c", "a", q);
    struct gal_results *res = NULL;
    float bad[DIM];
    memset(bad, 0, sizeof bad);
    struct gal_search_request req = {
        .model_id = MODEL, .dim = DIM, .embeddings = bad, .query_count = 1, .k = 5};
    EXPECT_RC(gal_search(g, "c", &req, &res), BASE_ERR_INVALID);
    memcpy(bad, q, sizeof q);
    bad[7] = NAN;
    EXPECT_RC(gal_search(g, "c", &req, &res), BASE_ERR_INVALID);
    bad[7] = INFINITY;
    EXPECT_RC(gal_search(g, "c", &req, &res), BASE_ERR_INVALID);
    req.embeddings = q;
    req.model_id = "other-embedder@1";
    EXPECT_RC(gal_search(g, "c", &req, &res), BASE_ERR_INVALID);
    assert_non_null(strstr(base_error_message(), "pinned to model"));
    req.model_id = NULL;
    EXPECT_RC(gal_search(g, "c", &req, &res), BASE_ERR_INVALID);
    req.model_id = MODEL;
    req.dim = DIM - 1;
    EXPECT_RC(gal_search(g, "c", &req, &res), BASE_ERR_INVALID);
    req.dim = DIM;
    req.k = 0;
    EXPECT_RC(gal_search(g, "c", &req, &res), BASE_ERR_INVALID);
    req.k = GAL_K_MAX + 1;
    EXPECT_RC(gal_search(g, "c", &req, &res), BASE_ERR_INVALID);
    assert_null(res);
    /* A face id of another collection is not this collection's. */
    create(g, "d", GAL_DTYPE_INT8, 0.5f);
    EXPECT_OK(gal_subject_add(g, "d", "a", NULL));
    int64_t other = add_face(g, "d", "a", q);
    EXPECT_RC(gal_face_delete(g, "c", other), BASE_ERR_NOT_FOUND);
    struct gal_face_record rec;
    EXPECT_RC(gal_face_get(g, "c", other, &rec), BASE_ERR_NOT_FOUND);
    assert_true(returns(g, "d", q, other, NULL));
}

/*
 * Deleted faces and subjects are never returned: from the handle that deleted them, at once,
 * and from a second handle once it has followed the change log; a subject deleted and
 * re-created under its id does not bring its old faces back; a collection deleted and
 * re-created under its name holds only the new collection's faces on the follower, with the
 * new collection's model and threshold; metadata updates reach the follower.
 */
static void test_deletes_on_the_writer_and_a_follower(void **state)
{
    struct fixture *f = *state;
    struct gal *g = f->g, *follower = NULL;
    struct rng r = {15};
    EXPECT_OK(gal_open(f->db, NULL, &follower));
    float q[DIM], x[DIM];
    random_unit(&r, q, DIM);
    const enum gal_dtype dtypes[] = {GAL_DTYPE_F32, GAL_DTYPE_F16, GAL_DTYPE_INT8};
    for (int d = 0; d < 3; d++) {
        char name[16];
        snprintf(name, sizeof name, "del%d", d);
        create(g, name, dtypes[d], 0.5f);
        EXPECT_OK(gal_subject_add(g, name, "keep", "{\"v\": 1}"));
        EXPECT_OK(gal_subject_add(g, name, "gone", NULL));
        at_similarity(&r, q, 0.7f, x);
        int64_t keep = add_face(g, name, "keep", x);
        at_similarity(&r, q, 0.95f, x);
        int64_t face = add_face(g, name, "keep", x);
        int64_t gone[3];
        for (int i = 0; i < 3; i++) {
            at_similarity(&r, q, 0.9f, x);
            gone[i] = add_face(g, name, "gone", x);
        }
        EXPECT_OK(gal_refresh(follower));
        assert_true(returns(follower, name, q, face, NULL));
        assert_true(returns(follower, name, q, 0, "gone"));

        EXPECT_OK(gal_face_delete(g, name, face));
        assert_false(returns(g, name, q, face, NULL));
        EXPECT_OK(gal_subject_delete(g, name, "gone"));
        assert_false(returns(g, name, q, 0, "gone"));
        EXPECT_RC(gal_face_delete(g, name, gone[1]), BASE_ERR_NOT_FOUND);
        EXPECT_OK(gal_subject_set_metadata(g, name, "keep", "{\"v\": 2}"));
        EXPECT_OK(gal_refresh(follower));
        assert_false(returns(follower, name, q, face, NULL));
        assert_false(returns(follower, name, q, 0, "gone"));
        assert_true(returns(follower, name, q, keep, NULL));
        struct gal_subject_info si;
        EXPECT_OK(gal_subject_get(follower, name, "keep", &si));
        assert_string_equal(si.metadata, "{\"v\": 2}");
        gal_subject_info_deinit(&si);

        /* "gone" comes back as a new subject: none of its old faces with it. */
        EXPECT_OK(gal_subject_add(g, name, "gone", NULL));
        at_similarity(&r, q, 0.2f, x);
        int64_t fresh = add_face(g, name, "gone", x);
        EXPECT_OK(gal_refresh(follower));
        for (int h = 0; h < 2; h++) {
            struct gal *handle = h ? follower : g;
            struct gal_results *res = search(handle, name, q, 10);
            const struct gal_query_result *qr = &res->queries[0];
            assert_int_equal(qr->face_count, 2);
            const struct gal_hit *hit = find_subject(qr, "gone");
            assert_non_null(hit);
            assert_int_equal(hit->face_id, fresh);
            gal_results_destroy(res);
        }
    }

    /* Deleted and re-created under the same name, with another model and threshold, while
     * the follower is not looking; then the follower catches up in one refresh. */
    EXPECT_OK(gal_collection_delete(g, "del0"));
    struct gal_collection_info info =
        collection_info("del0", "other-embedder@2", DIM, GAL_DTYPE_INT8, 0.25f);
    EXPECT_OK(gal_collection_create(g, &info));
    EXPECT_OK(gal_subject_add(g, "del0", "new", NULL));
    struct gal_face_input in = face_input("new", "other-embedder@2", DIM, q);
    int64_t id;
    EXPECT_OK(gal_face_add(g, "del0", &in, &id));
    EXPECT_OK(gal_refresh(follower));
    struct gal_search_request req = {.model_id = "other-embedder@2",
                                     .dim = DIM,
                                     .embeddings = q,
                                     .query_count = 1,
                                     .k = GAL_K_MAX};
    struct gal_results *res = NULL;
    EXPECT_OK(gal_search(follower, "del0", &req, &res));
    assert_int_equal(res->queries[0].face_count, 1);
    assert_int_equal(res->queries[0].faces[0].face_id, id);
    assert_true(res->threshold == 0.25f);
    gal_results_destroy(res);
    struct gal_index_stats st;
    EXPECT_OK(gal_index_stats(follower, "del0", &st));
    assert_int_equal(st.faces, 1);
    req.model_id = MODEL;
    EXPECT_RC(gal_search(follower, "del0", &req, &res), BASE_ERR_INVALID);
    assert_int_equal(gal_sequence(follower), gal_sequence(g));
    gal_close(follower);
}

/*
 * Names, ids and sizes at and one past their limits. Subject ids are UTF-8 without control
 * characters (they are printed in logs, terminals and JSON): that includes the C1 controls
 * U+0080..U+009F, of which U+009B is a terminal's CSI (like ESC [) and U+0085 a line break.
 */
static void test_limits_and_names(void **state)
{
    struct fixture *f = *state;
    struct gal *g = f->g;
    struct rng r = {16};
    float x[DIM];
    random_unit(&r, x, DIM);
    create(g, "lim", GAL_DTYPE_INT8, 0.5f);

    /* Collection names: 64 characters of [A-Za-z0-9_.-]. */
    char name[GAL_NAME_MAX + 2];
    memset(name, 'n', GAL_NAME_MAX);
    name[GAL_NAME_MAX] = 0;
    create(g, name, GAL_DTYPE_F32, 0.5f);
    name[GAL_NAME_MAX] = 'n';
    name[GAL_NAME_MAX + 1] = 0;
    struct gal_collection_info info = collection_info("x", MODEL, DIM, GAL_DTYPE_F32, 0.5f);
    memcpy(info.name, name, GAL_NAME_MAX);
    info.name[GAL_NAME_MAX] = 0;
    EXPECT_RC(gal_collection_create(g, &info), BASE_ERR_EXISTS);
    EXPECT_RC(gal_collection_get(g, name, &info), BASE_ERR_INVALID);
    /* "." and ".." too: as a path segment (/v1/collections/NAME/...) every HTTP client
     * resolves them away (RFC 3986 dot segments), so such a collection could not be reached. */
    const char *bad_names[] = {"", " ", "a b", "caf\xc3\xa9", "a/b", "a\n", ".", ".."};
    for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++) {
        info = collection_info(bad_names[i], MODEL, DIM, GAL_DTYPE_F32, 0.5f);
        int rc = gal_collection_create(g, &info);
        if (rc != BASE_ERR_INVALID)
            fail_msg("collection name %zu: %d, expected %d (invalid)", i, rc, BASE_ERR_INVALID);
    }
    create(g, "...", GAL_DTYPE_F32, 0.5f); /* not a dot segment */
    create(g, ".hidden-ok_1", GAL_DTYPE_F32, 0.5f);

    /* Subject ids: 128 bytes (here 64 two-byte characters) and not 129; UTF-8 only. */
    char id[GAL_ID_MAX + 8];
    for (int i = 0; i < GAL_ID_MAX / 2; i++)
        memcpy(id + 2 * i, "\xc3\xa9", 2);
    id[GAL_ID_MAX] = 0;
    EXPECT_OK(gal_subject_add(g, "lim", id, NULL));
    add_face(g, "lim", id, x);
    struct gal_results *res = search(g, "lim", x, 1);
    assert_string_equal(res->queries[0].subjects[0].subject_id, id);
    gal_results_destroy(res);
    id[GAL_ID_MAX] = 'x';
    id[GAL_ID_MAX + 1] = 0;
    EXPECT_RC(gal_subject_add(g, "lim", id, NULL), BASE_ERR_INVALID);
    /* a two-byte character cut at byte 128 */
    id[GAL_ID_MAX - 1] = 0;
    EXPECT_RC(gal_subject_add(g, "lim", id, NULL), BASE_ERR_INVALID);
    const char *bad_ids[] = {"", "tab\there", "nl\n", "del\x7f", "\xff", "\xc3", "\xc0\xaf",
                             "csi\xc2\x9b", "nel\xc2\x85", "c1\xc2\x80",
                             /* dot segments, dropped from a URL path like collection names */
                             ".", ".."};
    for (size_t i = 0; i < sizeof bad_ids / sizeof *bad_ids; i++) {
        int rc = gal_subject_add(g, "lim", bad_ids[i], NULL);
        if (rc != BASE_ERR_INVALID)
            fail_msg("bad subject id %zu (not printed: it may hold a control character) "
                     "returned %d, expected %d (invalid)",
                     i, rc, BASE_ERR_INVALID);
    }
    EXPECT_OK(gal_subject_add(g, "lim", "Zo\xc3\xab \xe6\x9d\x8e \xf0\x9f\x99\x82", NULL));
    EXPECT_OK(gal_subject_add(g, "lim", "...", NULL)); /* not a dot segment */

    /* Metadata: 64 KiB of JSON and not a byte more. */
    char *meta = malloc(GAL_METADATA_MAX + 2);
    memset(meta, ' ', GAL_METADATA_MAX);
    memcpy(meta, "{\"a\": \"", 7);
    memset(meta + 7, 'm', GAL_METADATA_MAX - 9);
    memcpy(meta + GAL_METADATA_MAX - 2, "\"}", 2);
    meta[GAL_METADATA_MAX] = 0;
    EXPECT_OK(gal_subject_add(g, "lim", "big", meta));
    struct gal_subject_info si;
    EXPECT_OK(gal_subject_get(g, "lim", "big", &si));
    assert_string_equal(si.metadata, meta);
    gal_subject_info_deinit(&si);
    meta[GAL_METADATA_MAX - 1] = ' ';
    meta[GAL_METADATA_MAX] = '}';
    meta[GAL_METADATA_MAX + 1] = 0;
    meta[GAL_METADATA_MAX - 2] = '"';
    EXPECT_RC(gal_subject_add(g, "lim", "bigger", meta), BASE_ERR_LIMIT);
    EXPECT_RC(gal_subject_set_metadata(g, "lim", "big", meta), BASE_ERR_LIMIT);
    free(meta);

    /* Thumbnails: 256 KiB and not a byte more. */
    uint8_t *jpeg = calloc(1, GAL_THUMBNAIL_MAX + 1);
    jpeg[0] = 0xff;
    jpeg[1] = 0xd8;
    jpeg[2] = 0xff;
    struct gal_face_input in = face_input("big", MODEL, DIM, x);
    in.thumbnail = jpeg;
    in.thumbnail_len = GAL_THUMBNAIL_MAX;
    int64_t face;
    EXPECT_OK(gal_face_add(g, "lim", &in, &face));
    struct gal_face_record rec;
    EXPECT_OK(gal_face_get(g, "lim", face, &rec));
    assert_int_equal(rec.thumbnail_len, GAL_THUMBNAIL_MAX);
    gal_face_record_deinit(&rec);
    in.thumbnail_len = GAL_THUMBNAIL_MAX + 1;
    EXPECT_RC(gal_face_add(g, "lim", &in, &face), BASE_ERR_LIMIT);
    free(jpeg);

    /* Many collections: each its own, found by name after a reopen. */
    for (int i = 0; i < 300; i++) {
        char n[24];
        snprintf(n, sizeof n, "many-%03d", i);
        create(g, n, GAL_DTYPE_INT8, 0.5f);
    }
    gal_close(f->g);
    f->g = NULL;
    EXPECT_OK(gal_open(f->db, NULL, &f->g));
    struct gal_collection_info *list;
    size_t n;
    EXPECT_OK(gal_collection_list(f->g, &list, &n));
    assert_int_equal(n, 304);
    free(list);
    res = search(f->g, "lim", x, 2);
    assert_int_equal(res->queries[0].face_count, 2);
    gal_results_destroy(res);
}

/* Everything about one collection that export / import promises to keep, as text. */
static char *describe(struct gal *g, const char *collection)
{
    size_t cap = 1 << 20, len = 0;
    char *out = malloc(cap);
    struct gal_collection_info info;
    EXPECT_OK(gal_collection_get(g, collection, &info));
    len += (size_t)snprintf(out + len, cap - len, "%s %u %s %.9g %lld %llu %llu\n", info.model_id,
                            info.dim, gal_dtype_name(info.dtype), (double)info.threshold,
                            (long long)info.created_ms, (unsigned long long)info.subject_count,
                            (unsigned long long)info.face_count);
    struct gal_subject_info *subjects;
    size_t ns;
    EXPECT_OK(gal_subject_list(g, collection, NULL, 10000, &subjects, &ns));
    for (size_t i = 0; i < ns; i++) {
        len += (size_t)snprintf(out + len, cap - len, "S [%s] %s %lld %llu\n", subjects[i].id,
                                subjects[i].metadata, (long long)subjects[i].created_ms,
                                (unsigned long long)subjects[i].face_count);
        int64_t *ids;
        size_t nf;
        EXPECT_OK(gal_face_list(g, collection, subjects[i].id, &ids, &nf));
        for (size_t j = 0; j < nf; j++) {
            struct gal_face_record rec;
            EXPECT_OK(gal_face_get(g, collection, ids[j], &rec));
            uint64_t h = 1469598103934665603ull;
            for (size_t b = 0; b < rec.thumbnail_len; b++)
                h = (h ^ rec.thumbnail[b]) * 1099511628211ull;
            for (uint32_t d = 0; d < rec.dim; d++) {
                uint32_t bits;
                memcpy(&bits, &rec.embedding[d], 4);
                h = (h ^ bits) * 1099511628211ull;
            }
            len += (size_t)snprintf(
                out + len, cap - len, "  F %s %s %.9g %.9g %.9g %.9g %.9g %lld %zu %016llx\n",
                rec.subject_id, rec.image_hash, (double)rec.box[0], (double)rec.box[1],
                (double)rec.box[2], (double)rec.box[3], (double)rec.quality,
                (long long)rec.created_ms, rec.thumbnail_len, (unsigned long long)h);
            gal_face_record_deinit(&rec);
        }
        free(ids);
    }
    gal_subject_list_free(subjects, ns);
    return out;
}

/*
 * Export then import keeps what docs/gallery.md lists: the model and dimension, storage type,
 * threshold, created times (collection, subjects, faces), metadata byte for byte, subjects
 * without faces, every face's hash, box, quality, thumbnail and exact embedding (face ids
 * are new). An import never merges: into an existing name it is refused and changes nothing,
 * whatever the file's model. The imported collection answers searches exactly as the source.
 */
static void test_export_import_round_trip(void **state)
{
    struct fixture *f = *state;
    struct gal *g = f->g;
    struct rng r = {17};
    struct gal_collection_info info =
        collection_info("src", "model-a@3", DIM, GAL_DTYPE_F16, 0.8765432f);
    EXPECT_OK(gal_collection_create(g, &info));
    EXPECT_OK(gal_subject_add(g, "src", "nobody", "null"));
    EXPECT_OK(gal_subject_add(g, "src", " spaced  id ", "{\"b\":1,  \"a\": [true, 2.50]}"));
    EXPECT_OK(gal_subject_add(g, "src", "\xe5\xbc\xa0\xe4\xbc\x9f", "\"just a string\""));
    float x[DIM], q[DIM];
    random_unit(&r, q, DIM);
    uint8_t jpeg[100] = {0xff, 0xd8, 0xff, 0xe1};
    for (int i = 0; i < 7; i++) {
        at_similarity(&r, q, 0.5f + 0.05f * (float)i, x);
        struct gal_face_input in =
            face_input(i % 2 ? " spaced  id " : "\xe5\xbc\xa0\xe4\xbc\x9f", "model-a@3", DIM, x);
        in.quality = 0.123456789f * (float)i;
        in.box[0] = -3.25f;
        in.box[1] = 1e-7f * (float)i;
        in.image_hash = i == 3 ? NULL : "sha256:abcdef";
        jpeg[5] = (uint8_t)i;
        in.thumbnail = i == 4 ? NULL : jpeg;
        in.thumbnail_len = i == 4 ? 0 : sizeof jpeg;
        int64_t id;
        EXPECT_OK(gal_face_add(g, "src", &in, &id));
    }
    char path[600];
    path_in(path, sizeof path, f->dir, "src.vgal");
    EXPECT_OK(gal_export(g, "src", path));
    EXPECT_OK(gal_import(g, path, "copy"));
    char *a = describe(g, "src"), *b = describe(g, "copy");
    assert_string_equal(a, b);
    struct gal_search_request req = {
        .model_id = "model-a@3", .dim = DIM, .embeddings = q, .query_count = 1, .k = 10};
    struct gal_results *ra, *rb;
    EXPECT_OK(gal_search(g, "src", &req, &ra));
    EXPECT_OK(gal_search(g, "copy", &req, &rb));
    assert_int_equal(ra->queries[0].face_count, 7);
    assert_int_equal(rb->queries[0].face_count, 7);
    assert_true(ra->threshold == rb->threshold);
    for (size_t i = 0; i < 7; i++) {
        assert_true(ra->queries[0].faces[i].similarity == rb->queries[0].faces[i].similarity);
        assert_int_equal(ra->queries[0].faces[i].decision, rb->queries[0].faces[i].decision);
        assert_string_equal(ra->queries[0].faces[i].subject_id, rb->queries[0].faces[i].subject_id);
    }
    gal_results_destroy(ra);
    gal_results_destroy(rb);

    /* Into an existing collection: refused, nothing changes, whatever its model. */
    create(g, "mine", GAL_DTYPE_INT8, 0.5f);
    uint64_t seq = gal_sequence(g);
    EXPECT_RC(gal_import(g, path, "mine"), BASE_ERR_EXISTS);
    EXPECT_RC(gal_import(g, path, NULL), BASE_ERR_EXISTS);
    assert_int_equal(gal_sequence(g), seq);
    EXPECT_OK(gal_collection_get(g, "mine", &info));
    assert_string_equal(info.model_id, MODEL);
    assert_int_equal(info.subject_count, 0);
    /* Under its own name once the source is gone. */
    EXPECT_OK(gal_collection_delete(g, "src"));
    EXPECT_OK(gal_import(g, path, NULL));
    char *c = describe(g, "src");
    assert_string_equal(a, c);
    free(a);
    free(b);
    free(c);

    /* An empty collection round-trips too. */
    create(g, "empty", GAL_DTYPE_F32, -1.0f);
    EXPECT_OK(gal_export(g, "empty", path));
    EXPECT_OK(gal_import(g, path, "empty2"));
    EXPECT_OK(gal_collection_get(g, "empty2", &info));
    assert_true(info.threshold == -1.0f);
    assert_int_equal(info.face_count, 0);
}

/*
 * Read-only mode: a missing file is not created; an existing one (its WAL checkpointed away
 * by the writer's close) opens and answers; a read-only handle beside a live writer follows
 * it through the WAL; every write is refused and leaves nothing behind.
 */
static void test_read_only_mode(void **state)
{
    struct fixture *f = *state;
    struct rng r = {18};
    struct gal_options ro = {.read_only = 1};
    struct gal *reader = NULL;
    char missing[600];
    path_in(missing, sizeof missing, f->dir, "missing.db");
    assert_int_not_equal(gal_open(missing, &ro, &reader), 0);
    assert_null(reader);
    assert_int_not_equal(access(missing, F_OK), 0);

    float x[DIM];
    random_unit(&r, x, DIM);
    create(f->g, "c", GAL_DTYPE_INT8, 0.5f);
    EXPECT_OK(gal_subject_add(f->g, "c", "a", NULL));
    int64_t id = add_face(f->g, "c", "a", x);
    gal_close(f->g);
    f->g = NULL;
    EXPECT_OK(gal_open(f->db, &ro, &reader));
    assert_true(returns(reader, "c", x, id, NULL));
    EXPECT_OK(gal_open(f->db, NULL, &f->g));
    float y[DIM];
    random_unit(&r, y, DIM);
    int64_t id2 = add_face(f->g, "c", "a", y);
    EXPECT_OK(gal_refresh(reader));
    assert_true(returns(reader, "c", y, id2, NULL));
    uint64_t seq = gal_sequence(f->g);
    struct gal_face_input in = face_input("a", MODEL, DIM, y);
    int64_t id3;
    assert_int_not_equal(gal_face_add(reader, "c", &in, &id3), 0);
    assert_int_not_equal(gal_subject_add(reader, "c", "b", NULL), 0);
    assert_int_not_equal(gal_face_delete(reader, "c", id), 0);
    struct gal_collection_info info = collection_info("d", MODEL, DIM, GAL_DTYPE_F32, 0.5f);
    assert_int_not_equal(gal_collection_create(reader, &info), 0);
    EXPECT_OK(gal_refresh(f->g));
    assert_int_equal(gal_sequence(f->g), seq);
    assert_true(returns(f->g, "c", x, id, NULL));
    assert_true(returns(reader, "c", x, id, NULL));
    gal_close(reader);
}

/*
 * gal_collection_create reads name, model, dimension, storage type and threshold from its
 * argument (gallery.h); the creation time is the store's clock. A caller that copies another
 * collection's settings (gal_collection_get, a new name) must not get that collection's
 * creation time, nor a negative one.
 */
static void test_created_time_is_now(void **state)
{
    struct fixture *f = *state;
    struct gal *g = f->g;
    struct gal_collection_info info = collection_info("old", MODEL, DIM, GAL_DTYPE_INT8, 0.5f);
    info.created_ms = 86400000; /* 1970-01-02 */
    const int64_t start = (int64_t)time(NULL) * 1000 - 1000;
    EXPECT_OK(gal_collection_create(g, &info));
    EXPECT_OK(gal_collection_get(g, "old", &info));
    assert_true(info.created_ms >= start);
    snprintf(info.name, sizeof info.name, "copy");
    info.created_ms = -5;
    EXPECT_OK(gal_collection_create(g, &info));
    EXPECT_OK(gal_collection_get(g, "copy", &info));
    assert_true(info.created_ms >= start);
}

/* ---- real embeddings (skipped without BUILD/vultus, models/ or ../shared/data) ---------- */

#define FIXTURES "../shared/data/fixtures"
#define REAL_MAX 128

struct real_face {
    char subject[64];
    int query; /* <name>5.png: searched, not enrolled */
    float e[GAL_DIM_MAX];
};

/* Embeds every face of the fixtures' identities and group photos with `vultus analyze`
 * (BUILD/vultus beside BUILD/tests/gallery/this program). Returns the number of faces and the
 * dimension and model through the pointers; 0 when something is missing (the test skips). */
static size_t real_embeddings(struct real_face *faces, uint32_t *dim, char *model, size_t cap)
{
    char self[PATH_MAX], cmd[8192];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 0;
    self[n] = 0;
    for (int i = 0; i < 3; i++) { /* BUILD/tests/gallery/x -> BUILD */
        char *slash = strrchr(self, '/');
        if (!slash) return 0;
        *slash = 0;
    }
    if (strlen(self) > PATH_MAX - 16) return 0;
    char vultus[PATH_MAX + 16];
    snprintf(vultus, sizeof vultus, "%s/vultus", self);
    if (access(vultus, X_OK) != 0 || access("models/human", R_OK) != 0 ||
        access(FIXTURES "/identities", R_OK) != 0)
        return 0;
    int len = snprintf(cmd, sizeof cmd,
                       "VULTUS_LOG_LEVEL=warn '%s' analyze --stages embed --embedding " FIXTURES
                       "/identities/*/*.png " FIXTURES "/group-*.jpg 2>/dev/null",
                       vultus);
    assert_true(len > 0 && (size_t)len < sizeof cmd);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char *line = NULL;
    size_t line_cap = 0, count = 0;
    while (getline(&line, &line_cap, p) > 0) {
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        if (!o) fail_msg("vultus analyze: not JSON: %s", line);
        const char *image = json_string_value(json_object_get(o, "image"));
        json_t *list = json_object_get(o, "faces");
        assert_non_null(image);
        const char *base = strrchr(image, '/') ? strrchr(image, '/') + 1 : image;
        int identity = strstr(image, "/identities/") != NULL;
        for (size_t i = 0; i < json_array_size(list) && count < cap; i++) {
            json_t *face = json_array_get(list, i);
            json_t *e = json_object_get(face, "embedding");
            if (identity && i > 0) break; /* one person per portrait */
            if (!json_is_array(e) || json_array_size(e) == 0 || json_array_size(e) > GAL_DIM_MAX)
                continue;
            struct real_face *f = &faces[count++];
            *dim = (uint32_t)json_array_size(e);
            snprintf(model, GAL_MODEL_MAX + 1, "%s",
                     json_string_value(json_object_get(face, "embedding_model")));
            for (size_t d = 0; d < *dim; d++)
                f->e[d] = (float)json_number_value(json_array_get(e, d));
            if (identity) {
                /* amy5.png -> subject amy, a query */
                snprintf(f->subject, sizeof f->subject, "%.*s", (int)strcspn(base, "0123456789"),
                         base);
                f->query = strstr(base, "5.") != NULL;
            } else {
                snprintf(f->subject, sizeof f->subject, "%.40s-%zu", base, i);
            }
        }
        json_decref(o);
    }
    free(line);
    pclose(p);
    return count;
}

/*
 * Real embeddings (faceapi-resnet-v1 on the fixtures: eight people with four enrolled photos
 * and a fifth searched, plus every face of the group photos): the three storage types give
 * the same answers - the same faces and subjects in the same order, the same similarities bit
 * for bit, the same decisions at the default threshold - and a threshold set to any returned
 * similarity matches that face with every storage type.
 */
static void test_real_embeddings_same_answers_with_every_storage(void **state)
{
    struct fixture *f = *state;
    struct real_face *faces = calloc(REAL_MAX, sizeof *faces);
    uint32_t dim = 0;
    char model[GAL_MODEL_MAX + 1] = "";
    size_t n = real_embeddings(faces, &dim, model, REAL_MAX);
    if (n < 40) {
        free(faces);
        print_message("skipping: needs BUILD/vultus, models/ and " FIXTURES "\n");
        skip();
    }
    const enum gal_dtype dtypes[] = {GAL_DTYPE_F32, GAL_DTYPE_F16, GAL_DTYPE_INT8};
    static int64_t ids[3][REAL_MAX];
    for (int d = 0; d < 3; d++) {
        struct gal_collection_info info =
            collection_info(gal_dtype_name(dtypes[d]), model, dim, dtypes[d], 0.93f);
        EXPECT_OK(gal_collection_create(f->g, &info));
        for (size_t i = 0; i < n; i++) {
            if (faces[i].query) continue;
            struct gal_subject_info si;
            if (gal_subject_get(f->g, info.name, faces[i].subject, &si) == 0)
                gal_subject_info_deinit(&si);
            else
                EXPECT_OK(gal_subject_add(f->g, info.name, faces[i].subject, NULL));
            struct gal_face_input in = face_input(faces[i].subject, model, dim, faces[i].e);
            EXPECT_OK(gal_face_add(f->g, info.name, &in, &ids[d][i]));
        }
    }
    int correct = 0, queries = 0;
    for (size_t i = 0; i < n; i++) {
        struct gal_results *res[3];
        struct gal_search_request req = {
            .model_id = model, .dim = dim, .embeddings = faces[i].e, .query_count = 1, .k = 10};
        for (int d = 0; d < 3; d++)
            EXPECT_OK(gal_search(f->g, gal_dtype_name(dtypes[d]), &req, &res[d]));
        const struct gal_query_result *a = &res[0]->queries[0];
        for (int d = 1; d < 3; d++) {
            const struct gal_query_result *b = &res[d]->queries[0];
            assert_int_equal(a->face_count, b->face_count);
            assert_int_equal(a->subject_count, b->subject_count);
            for (size_t j = 0; j < a->face_count; j++) {
                size_t ia = 0, ib = 0; /* enrolment positions of the two faces */
                while (ids[0][ia] != a->faces[j].face_id)
                    ia++;
                while (ids[d][ib] != b->faces[j].face_id)
                    ib++;
                if (ia != ib || a->faces[j].similarity != b->faces[j].similarity ||
                    a->faces[j].decision != b->faces[j].decision)
                    fail_msg("face %zu, hit %zu: f32 storage gives face #%zu at %.9g (%d), %s "
                             "face #%zu at %.9g (%d)",
                             i, j, ia, (double)a->faces[j].similarity, (int)a->faces[j].decision,
                             gal_dtype_name(dtypes[d]), ib, (double)b->faces[j].similarity,
                             (int)b->faces[j].decision);
            }
            for (size_t j = 0; j < a->subject_count; j++) {
                assert_string_equal(a->subjects[j].subject_id, b->subjects[j].subject_id);
                assert_true(a->subjects[j].similarity == b->subjects[j].similarity);
                assert_int_equal(a->subjects[j].decision, b->subjects[j].decision);
            }
        }
        if (faces[i].query) {
            queries++;
            correct += strcmp(a->subjects[0].subject_id, faces[i].subject) == 0;
        }
        /* The boundary: threshold = the best similarity is a match everywhere. */
        float best = a->faces[0].similarity;
        for (int d = 0; d < 3; d++) {
            gal_results_destroy(res[d]);
            EXPECT_OK(gal_collection_set_threshold(f->g, gal_dtype_name(dtypes[d]), best));
            struct gal_results *again;
            EXPECT_OK(gal_search(f->g, gal_dtype_name(dtypes[d]), &req, &again));
            assert_int_equal(again->queries[0].faces[0].decision, GAL_MATCH);
            assert_int_equal(again->queries[0].subjects[0].decision, GAL_MATCH);
            gal_results_destroy(again);
            EXPECT_OK(gal_collection_set_threshold(f->g, gal_dtype_name(dtypes[d]), 0.93f));
        }
    }
    print_message("real embeddings: %zu faces (%s, %u-d), %d of %d fifth photos find their "
                  "person first\n",
                  n, model, dim, correct, queries);
    assert_int_equal(queries, 8);
    assert_true(correct >= 7);
    free(faces);
}

/* ---- PostgreSQL (skipped when its server binaries are absent) ------------------------- */

static char pg_dir[256], pg_url[400];

/* Starts a throw-away server (tools/pg-temp); leaves pg_url empty when PostgreSQL is not
 * installed, and the test skips. */
static int start_postgres(void **state)
{
    (void)state;
    int rc = tc_pg_start(pg_dir, sizeof pg_dir, pg_url, sizeof pg_url);
    return rc == 77 ? 0 : rc; /* 77: not installed, pg_url stays empty */
}

static int stop_postgres(void **state)
{
    (void)state;
    return tc_pg_stop(pg_dir);
}

/*
 * Two replicas on one PostgreSQL store. Failed writes leave gaps in the change numbers (an
 * identity value taken inside a rolled-back transaction is not given back): a batch of
 * subjects with a duplicate last, and faces for a subject that does not exist. Neither
 * replica stalls on the gap or skips what follows it: each read of the follower replays the
 * writer's changes (read-your-writes), including a subject deleted with its faces and a
 * collection deleted and re-created under its name with another model.
 */
static void test_postgres_replicas_across_sequence_gaps(void **state)
{
    (void)state;
    if (!pg_url[0]) skip();
    base_log_level = BASE_LOG_WARN;
    struct gal *writer = NULL, *follower = NULL;
    EXPECT_OK(gal_open(pg_url, NULL, &writer));
    EXPECT_OK(gal_open(pg_url, NULL, &follower));
    struct rng r = {19};
    float q[DIM], x[DIM];
    random_unit(&r, q, DIM);
    create(writer, "pg", GAL_DTYPE_INT8, 0.5f);
    EXPECT_OK(gal_subject_add(writer, "pg", "a", NULL));
    at_similarity(&r, q, 0.9f, x);
    int64_t first = add_face(writer, "pg", "a", x);
    assert_true(returns(follower, "pg", q, first, NULL));
    uint64_t before = gal_sequence(writer);

    const char *ids[] = {"b", "c", "a"};
    EXPECT_RC(gal_subjects_add(writer, "pg", ids, NULL, 3), BASE_ERR_EXISTS);
    struct gal_face_input in[2] = {face_input("a", MODEL, DIM, x), face_input("zz", MODEL, DIM, x)};
    int64_t out[2];
    assert_int_not_equal(gal_faces_add(writer, "pg", in, 2, out), 0);
    EXPECT_OK(gal_subject_add(writer, "pg", "b", NULL));
    at_similarity(&r, q, 0.95f, x);
    int64_t after_gap = add_face(writer, "pg", "b", x);
    assert_true(gal_sequence(writer) > before + 2); /* there is a gap */
    assert_true(returns(writer, "pg", q, after_gap, NULL));
    assert_true(returns(follower, "pg", q, after_gap, NULL));
    struct gal_subject_info si;
    EXPECT_RC(gal_subject_get(follower, "pg", "c", &si), BASE_ERR_NOT_FOUND);

    EXPECT_OK(gal_subject_delete(writer, "pg", "a"));
    assert_false(returns(follower, "pg", q, 0, "a"));
    EXPECT_OK(gal_collection_delete(writer, "pg"));
    struct gal_collection_info info = collection_info("pg", "other@1", DIM, GAL_DTYPE_F32, 0.3f);
    EXPECT_OK(gal_collection_create(writer, &info));
    EXPECT_OK(gal_subject_add(writer, "pg", "n", NULL));
    struct gal_face_input one = face_input("n", "other@1", DIM, q);
    int64_t id;
    EXPECT_OK(gal_face_add(writer, "pg", &one, &id));
    struct gal_search_request req = {
        .model_id = "other@1", .dim = DIM, .embeddings = q, .query_count = 1, .k = 10};
    struct gal_results *res = NULL;
    EXPECT_OK(gal_search(follower, "pg", &req, &res));
    assert_int_equal(res->queries[0].face_count, 1);
    assert_int_equal(res->queries[0].faces[0].face_id, id);
    assert_true(res->threshold == 0.3f);
    gal_results_destroy(res);
    assert_int_equal(gal_sequence(follower), gal_sequence(writer));

    /* A subject is scored by its best face on this store too (it reads the subjects' faces
     * its own way). */
    check_subject_scored_by_its_best_face(writer);
    gal_close(follower);
    gal_close(writer);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_subject_scored_by_its_best_face_whatever_the_storage,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_threshold_boundary_same_with_every_storage, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_k_beyond_the_gallery_and_ties, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_queries_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deletes_on_the_writer_and_a_follower, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits_and_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_import_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_created_time_is_now, setup, teardown),
        cmocka_unit_test_setup_teardown(test_real_embeddings_same_answers_with_every_storage, setup,
                                        teardown),
    };
    const struct CMUnitTest postgres[] = {
        cmocka_unit_test(test_postgres_replicas_across_sequence_gaps),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return failed + cmocka_run_group_tests(postgres, start_postgres, stop_postgres);
}
