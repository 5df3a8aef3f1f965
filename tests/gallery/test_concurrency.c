/*
 * Searches while enrolments, deletions and setting changes happen, from several threads,
 * plus a second handle on the same file that follows the change log. Checks:
 *   - every search returns well-formed results (sorted, within bounds, subject ids set);
 *   - read-your-writes: a face is found by the search right after its enrolment returns,
 *     and a deleted face is never found by a search that starts after the deletion;
 *   - at the end the index and the store agree and the store passes its integrity check.
 * Build it with -fsanitize=thread to check for data races (see docs/gallery.md).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>

#include "base/base.h"
#include "helpers.h"

#define MODEL "m"
#define DIM 64
#define PRELOAD 4000
#define SUBJECTS 40
#define MAX_FACES 100000

static struct gal *g;
static struct gal *follower;
static atomic_int stop;
static atomic_int failures;
static double run_seconds = 2.0;

/* Faces enrolled by the enroller thread: id and embedding, shared with the deleter. */
static pthread_mutex_t faces_mutex = PTHREAD_MUTEX_INITIALIZER;
static int64_t face_ids[MAX_FACES];
static float face_vectors[MAX_FACES][DIM];
static char face_alive[MAX_FACES];
static size_t face_count;

static atomic_long searches, enrolments, deletions, settings;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "check failed: %s: ", #cond);                                          \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            atomic_fetch_add(&failures, 1);                                                        \
        }                                                                                          \
    } while (0)

static void check_results(const struct gal_results *res, size_t nq, size_t k)
{
    CHECK(res->query_count == nq, "%zu queries answered of %zu", res->query_count, nq);
    for (size_t i = 0; i < res->query_count; i++) {
        const struct gal_query_result *r = &res->queries[i];
        CHECK(r->face_count <= k && r->subject_count <= k, "%zu/%zu results for k %zu",
              r->face_count, r->subject_count, k);
        for (size_t j = 0; j < r->face_count; j++) {
            const struct gal_hit *h = &r->faces[j];
            CHECK(h->face_id > 0 && h->similarity >= -1.0f && h->similarity <= 1.0f &&
                      h->subject_id[0] != '\0',
                  "bad hit %lld %f", (long long)h->face_id, (double)h->similarity);
            CHECK(j == 0 || h->similarity <= r->faces[j - 1].similarity, "results not sorted");
            CHECK(h->decision == (h->similarity >= res->threshold ? GAL_MATCH : GAL_NO_MATCH),
                  "decision %d for %f at threshold %f", h->decision, (double)h->similarity,
                  (double)res->threshold);
        }
        for (size_t a = 0; a < r->subject_count; a++)
            for (size_t b = a + 1; b < r->subject_count; b++)
                CHECK(strcmp(r->subjects[a].subject_id, r->subjects[b].subject_id) != 0,
                      "subject %s twice", r->subjects[a].subject_id);
    }
}

static void *searcher(void *arg)
{
    struct rng r = {(uint64_t)(uintptr_t)arg};
    float q[16 * DIM];
    while (!atomic_load(&stop)) {
        size_t nq = 1 + rng_u64(&r) % 16, k = 1 + rng_u64(&r) % 20;
        for (size_t i = 0; i < nq; i++)
            random_unit(&r, q + i * DIM, DIM);
        struct gal_search_request req = {
            .model_id = MODEL, .dim = DIM, .embeddings = q, .query_count = nq, .k = k};
        struct gal_results *res;
        int rc = gal_search(g, "c", &req, &res);
        CHECK(rc == 0, "search: %s", base_error_message());
        if (rc) continue;
        check_results(res, nq, k);
        gal_results_destroy(res);
        atomic_fetch_add(&searches, 1);
    }
    return NULL;
}

static int64_t top1(struct gal *h, const float *q)
{
    struct gal_search_request req = {
        .model_id = MODEL, .dim = DIM, .embeddings = q, .query_count = 1, .k = 3};
    struct gal_results *res;
    int rc = gal_search(h, "c", &req, &res);
    CHECK(rc == 0, "search: %s", base_error_message());
    if (rc) return -1;
    int64_t id = res->queries[0].face_count ? res->queries[0].faces[0].face_id : 0;
    gal_results_destroy(res);
    return id;
}

static void *enroller(void *arg)
{
    struct rng r = {(uint64_t)(uintptr_t)arg};
    while (!atomic_load(&stop) && face_count < MAX_FACES) {
        float e[DIM];
        random_unit(&r, e, DIM);
        char subject[16];
        snprintf(subject, sizeof subject, "s%d", (int)(rng_u64(&r) % SUBJECTS));
        struct gal_face_input in = face_input(subject, MODEL, DIM, e);
        int64_t id;
        int rc = gal_face_add(g, "c", &in, &id);
        CHECK(rc == 0, "enrol: %s", base_error_message());
        if (rc) continue;
        /* Read-your-writes: the face is searchable as soon as the call returns. */
        int64_t best = top1(g, e);
        CHECK(best == id, "enrolled face %lld not found first (got %lld)", (long long)id,
              (long long)best);
        pthread_mutex_lock(&faces_mutex);
        face_ids[face_count] = id;
        memcpy(face_vectors[face_count], e, sizeof e);
        face_alive[face_count] = 1;
        face_count++;
        pthread_mutex_unlock(&faces_mutex);
        atomic_fetch_add(&enrolments, 1);
    }
    return NULL;
}

static void *deleter(void *arg)
{
    struct rng r = {(uint64_t)(uintptr_t)arg};
    while (!atomic_load(&stop)) {
        pthread_mutex_lock(&faces_mutex);
        size_t n = face_count, pick = n ? (size_t)(rng_u64(&r) % n) : 0;
        int alive = n && face_alive[pick];
        int64_t id = alive ? face_ids[pick] : 0;
        float e[DIM];
        if (alive) {
            memcpy(e, face_vectors[pick], sizeof e);
            face_alive[pick] = 0;
        }
        pthread_mutex_unlock(&faces_mutex);
        if (!alive) {
            usleep(200);
            continue;
        }
        int rc = gal_face_delete(g, "c", id);
        CHECK(rc == 0, "delete %lld: %s", (long long)id, base_error_message());
        int64_t best = top1(g, e);
        CHECK(best != id, "deleted face %lld still found", (long long)id);
        atomic_fetch_add(&deletions, 1);
        usleep(500);
    }
    return NULL;
}

/* Threshold and storage-type changes (the latter rebuilds the index under load). */
static void *tuner(void *arg)
{
    struct rng r = {(uint64_t)(uintptr_t)arg};
    int round = 0;
    while (!atomic_load(&stop)) {
        int rc = gal_collection_set_threshold(g, "c", (float)(rng_uniform(&r) * 0.8));
        CHECK(rc == 0, "threshold: %s", base_error_message());
        if (++round % 4 == 0) {
            rc = gal_collection_set_dtype(g, "c", (enum gal_dtype)(round / 4 % 3));
            CHECK(rc == 0, "dtype: %s", base_error_message());
        }
        /* A subject comes and goes, with a face. */
        char subject[24];
        snprintf(subject, sizeof subject, "temp%d", round);
        rc = gal_subject_add(g, "c", subject, "{\"temporary\": true}");
        CHECK(rc == 0, "subject: %s", base_error_message());
        float e[DIM];
        random_unit(&r, e, DIM);
        struct gal_face_input in = face_input(subject, MODEL, DIM, e);
        int64_t id;
        rc = gal_face_add(g, "c", &in, &id);
        CHECK(rc == 0, "enrol: %s", base_error_message());
        rc = gal_subject_delete(g, "c", subject);
        CHECK(rc == 0, "subject delete: %s", base_error_message());
        CHECK(top1(g, e) != id, "face of a deleted subject found");
        atomic_fetch_add(&settings, 1);
        usleep(20000);
    }
    return NULL;
}

/* A second handle on the same file, as another process would be: refreshes and searches. */
static void *follow(void *arg)
{
    struct rng r = {(uint64_t)(uintptr_t)arg};
    float q[DIM];
    while (!atomic_load(&stop)) {
        int rc = gal_refresh(follower);
        CHECK(rc == 0, "refresh: %s", base_error_message());
        random_unit(&r, q, DIM);
        struct gal_search_request req = {
            .model_id = MODEL, .dim = DIM, .embeddings = q, .query_count = 1, .k = 5};
        struct gal_results *res;
        rc = gal_search(follower, "c", &req, &res);
        CHECK(rc == 0, "follower search: %s", base_error_message());
        if (!rc) {
            check_results(res, 1, 5);
            gal_results_destroy(res);
        }
        usleep(2000);
    }
    return NULL;
}

static void test_concurrent_search_and_enrol(void **state)
{
    (void)state;
    base_log_level = BASE_LOG_WARN;
    const char *env = getenv("VULTUS_TEST_SECONDS");
    if (env) run_seconds = atof(env);
    char *dir = make_tmpdir(), db[512];
    path_in(db, sizeof db, dir, "g.db");
    struct gal_options opts = {.durability = GAL_DURABLE_PROCESS};
    EXPECT_OK(gal_open(db, &opts, &g));
    struct gal_collection_info info = collection_info("c", MODEL, DIM, GAL_DTYPE_INT8, 0.5f);
    EXPECT_OK(gal_collection_create(g, &info));
    static char subjects[SUBJECTS][16];
    for (int s = 0; s < SUBJECTS; s++) {
        snprintf(subjects[s], sizeof subjects[s], "s%d", s);
        EXPECT_OK(gal_subject_add(g, "c", subjects[s], NULL));
    }
    struct rng r = {99};
    static float x[PRELOAD * DIM];
    static struct gal_face_input in[PRELOAD];
    static int64_t ids[PRELOAD];
    for (int i = 0; i < PRELOAD; i++) {
        random_unit(&r, x + i * DIM, DIM);
        in[i] = face_input(subjects[i % SUBJECTS], MODEL, DIM, x + i * DIM);
    }
    EXPECT_OK(gal_faces_add(g, "c", in, PRELOAD, ids));
    EXPECT_OK(gal_open(db, &opts, &follower));

    pthread_t threads[7];
    void *(*fns[7])(void *) = {searcher, searcher, searcher, enroller, deleter, tuner, follow};
    for (int i = 0; i < 7; i++)
        pthread_create(&threads[i], NULL, fns[i], (void *)(uintptr_t)(i + 1));
    usleep((useconds_t)(run_seconds * 1e6));
    atomic_store(&stop, 1);
    for (int i = 0; i < 7; i++)
        pthread_join(threads[i], NULL);
    printf("# %.1f s: %ld searches, %ld enrolments, %ld deletions, %ld setting rounds\n",
           run_seconds, atomic_load(&searches), atomic_load(&enrolments), atomic_load(&deletions),
           atomic_load(&settings));
    assert_int_equal(atomic_load(&failures), 0);
    assert_true(atomic_load(&searches) > 0 && atomic_load(&enrolments) > 0);

    /* Memory and store agree, in both handles. */
    EXPECT_OK(gal_refresh(follower));
    struct gal_index_stats st, st2;
    EXPECT_OK(gal_collection_get(g, "c", &info));
    EXPECT_OK(gal_index_stats(g, "c", &st));
    EXPECT_OK(gal_index_stats(follower, "c", &st2));
    assert_int_equal(st.faces, info.face_count);
    assert_int_equal(st2.faces, info.face_count);
    assert_int_equal(gal_sequence(g), gal_sequence(follower));
    EXPECT_OK(gal_check(g));
    gal_close(follower);
    gal_close(g);
    remove_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_search_and_enrol),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
