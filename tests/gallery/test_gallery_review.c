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

#include <cmocka.h>

#include "base/base.h"
#include "gallery/kernels.h"
#include "helpers.h"

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
    struct gal_search_request req = {MODEL, DIM, q, 1, k};
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
static void test_subject_scored_by_its_best_face_whatever_the_storage(void **state)
{
    struct fixture *f = *state;
    struct gal *g = f->g;
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
                        gal_dtype_name(dtypes[d]), i, (double)hit->similarity,
                        (double)sim_f32[i], hit->decision == GAL_MATCH ? "a match" : "no match");
                differ++;
            }
            gal_results_destroy(res);
        }
    }
    assert_int_equal(differ, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_subject_scored_by_its_best_face_whatever_the_storage,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_threshold_boundary_same_with_every_storage, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
