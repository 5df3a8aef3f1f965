/*
 * The gallery with its real SQLite store: round trips of collections, subjects and faces;
 * every kind of bad input with its error and nothing half-written; reopening rebuilds the
 * index; the change log lets a second handle follow; export and import, including damaged,
 * truncated and future-version files; read-only and full stores; future schema versions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <pthread.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include "base/base.h"
#include "helpers.h"

#define MODEL "test-embedder@1"
#define DIM 64

struct fixture {
    char *dir;
    char db[512];
    struct gal *g;
};

#ifdef TEST_STORE_POSTGRES
/* test_store_postgres.c runs these tests on PostgreSQL: a new database per test, its URL in
 * f->db; skips when no PostgreSQL server can be started. */
static void new_postgres_database(char *url, size_t size);
/* Makes every insert into faces fail as a full disk does (SQLSTATE 53100), or stops it. */
static void postgres_refuse_faces(const char *url, int refuse);
/* Runs SQL on the database as its owner (the tests' own changes behind the gallery's back). */
static void admin_exec(const char *url, const char *sql);
/* The first column of the first row of `sql`, run as the database's owner. */
static long admin_long(const char *url, const char *sql);
#define STORE_IS_FILE 0
#else
#define STORE_IS_FILE 1
#endif

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->dir = make_tmpdir();
#ifdef TEST_STORE_POSTGRES
    new_postgres_database(f->db, sizeof f->db);
#else
    path_in(f->db, sizeof f->db, f->dir, "gallery.db");
#endif
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

static void reopen(struct fixture *f, const struct gal_options *options)
{
    gal_close(f->g);
    f->g = NULL;
    EXPECT_OK(gal_open(f->db, options, &f->g));
}

static void create(struct gal *g, const char *name, enum gal_dtype dtype, float threshold)
{
    struct gal_collection_info info = collection_info(name, MODEL, DIM, dtype, threshold);
    EXPECT_OK(gal_collection_create(g, &info));
}

/* A small fake JPEG: the markers the gallery checks, then bytes derived from `seed`. */
static size_t fake_jpeg(uint8_t *buf, size_t n, unsigned seed)
{
    buf[0] = 0xff;
    buf[1] = 0xd8;
    buf[2] = 0xff;
    buf[3] = 0xe0;
    for (size_t i = 4; i < n; i++)
        buf[i] = (uint8_t)(seed * 31 + i * 7);
    return n;
}

static uint64_t face_count(struct gal *g, const char *collection)
{
    struct gal_collection_info info;
    EXPECT_OK(gal_collection_get(g, collection, &info));
    return info.face_count;
}

/* Top-1 face of one query. */
static int64_t top1(struct gal *g, const char *collection, const float *q, float *similarity)
{
    struct gal_search_request req = {
        .model_id = MODEL, .dim = DIM, .embeddings = q, .query_count = 1, .k = 5};
    struct gal_results *res = NULL;
    EXPECT_OK(gal_search(g, collection, &req, &res));
    int64_t id = res->queries[0].face_count ? res->queries[0].faces[0].face_id : 0;
    if (similarity)
        *similarity = res->queries[0].face_count ? res->queries[0].faces[0].similarity : 0;
    gal_results_destroy(res);
    return id;
}

static void test_collections(void **state)
{
    struct fixture *f = *state;
    struct gal *g = f->g;
    create(g, "people", GAL_DTYPE_INT8, 0.4f);
    create(g, "staff.v2", GAL_DTYPE_F16, 0.5f);

    struct gal_collection_info info = collection_info("people", MODEL, DIM, GAL_DTYPE_F32, 0.4f);
    EXPECT_RC(gal_collection_create(g, &info), BASE_ERR_EXISTS);
    const char *bad_names[] = {"", "has space", "slash/", "ü", "x\n", "semi;colon"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        info = collection_info(bad_names[i], MODEL, DIM, GAL_DTYPE_F32, 0.4f);
        EXPECT_RC(gal_collection_create(g, &info), BASE_ERR_INVALID);
    }
    memset(info.name, 'n', sizeof info.name); /* 65 bytes, no terminating NUL */
    EXPECT_RC(gal_collection_create(g, &info), BASE_ERR_INVALID);
    info = collection_info("x", MODEL, 0, GAL_DTYPE_F32, 0.4f);
    EXPECT_RC(gal_collection_create(g, &info), BASE_ERR_INVALID);
    info = collection_info("x", MODEL, GAL_DIM_MAX + 1, GAL_DTYPE_F32, 0.4f);
    EXPECT_RC(gal_collection_create(g, &info), BASE_ERR_INVALID);
    info = collection_info("x", MODEL, DIM, (enum gal_dtype)7, 0.4f);
    EXPECT_RC(gal_collection_create(g, &info), BASE_ERR_INVALID);
    info = collection_info("x", MODEL, DIM, GAL_DTYPE_F32, 1.5f);
    EXPECT_RC(gal_collection_create(g, &info), BASE_ERR_INVALID);
    info = collection_info("x", MODEL, DIM, GAL_DTYPE_F32, NAN);
    EXPECT_RC(gal_collection_create(g, &info), BASE_ERR_INVALID);
    info = collection_info("x", "", DIM, GAL_DTYPE_F32, 0.4f);
    EXPECT_RC(gal_collection_create(g, &info), BASE_ERR_INVALID);

    EXPECT_OK(gal_collection_get(g, "people", &info));
    assert_string_equal(info.model_id, MODEL);
    assert_int_equal(info.dim, DIM);
    assert_int_equal(info.dtype, GAL_DTYPE_INT8);
    assert_true(info.threshold == 0.4f);
    assert_true(info.created_ms > 1600000000000ll);
    assert_int_equal(info.face_count, 0);

    struct gal_collection_info *list = NULL;
    size_t n = 0;
    EXPECT_OK(gal_collection_list(g, &list, &n));
    assert_int_equal(n, 2);
    assert_string_equal(list[0].name, "people");
    assert_string_equal(list[1].name, "staff.v2");
    free(list);

    EXPECT_OK(gal_collection_set_threshold(g, "people", 0.55f));
    EXPECT_RC(gal_collection_set_threshold(g, "people", -3.0f), BASE_ERR_INVALID);
    EXPECT_OK(gal_collection_set_dtype(g, "people", GAL_DTYPE_F16));
    EXPECT_OK(gal_collection_get(g, "people", &info));
    assert_true(info.threshold == 0.55f);
    assert_int_equal(info.dtype, GAL_DTYPE_F16);

    EXPECT_OK(gal_collection_delete(g, "staff.v2"));
    EXPECT_RC(gal_collection_delete(g, "staff.v2"), BASE_ERR_NOT_FOUND);
    EXPECT_RC(gal_collection_get(g, "staff.v2", &info), BASE_ERR_NOT_FOUND);
    EXPECT_RC(gal_collection_set_threshold(g, "nope", 0.1f), BASE_ERR_NOT_FOUND);

    /* Settings survive a reopen. */
    reopen(f, NULL);
    EXPECT_OK(gal_collection_get(f->g, "people", &info));
    assert_true(info.threshold == 0.55f);
    assert_int_equal(info.dtype, GAL_DTYPE_F16);
    EXPECT_RC(gal_collection_get(f->g, "staff.v2", &info), BASE_ERR_NOT_FOUND);
}

static void test_subjects(void **state)
{
    struct fixture *f = *state;
    struct gal *g = f->g;
    create(g, "c", GAL_DTYPE_F32, 0.4f);
    EXPECT_OK(gal_subject_add(g, "c", "alice", "{\"name\": \"Alice\", \"tags\": [1, 2]}"));
    EXPECT_OK(gal_subject_add(g, "c", "bob smith", NULL));
    EXPECT_RC(gal_subject_add(g, "c", "alice", NULL), BASE_ERR_EXISTS);
    EXPECT_RC(gal_subject_add(g, "nope", "alice", NULL), BASE_ERR_NOT_FOUND);
    EXPECT_RC(gal_subject_add(g, "c", "", NULL), BASE_ERR_INVALID);
    EXPECT_RC(gal_subject_add(g, "c", "tab\there", NULL), BASE_ERR_INVALID);
    /* Ids come back in JSON, so they must be UTF-8: a stray continuation byte, a truncated
     * sequence, an overlong '/', a surrogate and a value past U+10FFFF are refused. */
    static const char *const not_utf8[] = {"a\x80\x62",    "caf\xc3",          "\xc0\xaf",
                                           "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff"};
    for (size_t i = 0; i < sizeof not_utf8 / sizeof not_utf8[0]; i++)
        EXPECT_RC(gal_subject_add(g, "c", not_utf8[i], NULL), BASE_ERR_INVALID);
    const char *utf8 = "J\xc3\xbcrgen \xe2\x82\xac \xf0\x9f\x99\x82";
    EXPECT_OK(gal_subject_add(g, "c", utf8, NULL));
    EXPECT_OK(gal_subject_delete(g, "c", utf8));
    EXPECT_RC(gal_subject_add(g, "c", "carol", "{not json"), BASE_ERR_INVALID);
    char *big = malloc(GAL_METADATA_MAX + 10);
    memset(big, ' ', GAL_METADATA_MAX + 9);
    big[0] = '1';
    big[GAL_METADATA_MAX + 9] = '\0';
    EXPECT_RC(gal_subject_add(g, "c", "carol", big), BASE_ERR_LIMIT);
    free(big);
    char long_id[GAL_ID_MAX + 2];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    EXPECT_RC(gal_subject_add(g, "c", long_id, NULL), BASE_ERR_INVALID);

    struct gal_subject_info s;
    EXPECT_OK(gal_subject_get(g, "c", "alice", &s));
    assert_string_equal(s.id, "alice");
    assert_string_equal(s.metadata, "{\"name\": \"Alice\", \"tags\": [1, 2]}");
    assert_int_equal(s.face_count, 0);
    gal_subject_info_deinit(&s);
    EXPECT_OK(gal_subject_get(g, "c", "bob smith", &s));
    assert_string_equal(s.metadata, "{}");
    gal_subject_info_deinit(&s);
    EXPECT_RC(gal_subject_get(g, "c", "carol", &s), BASE_ERR_NOT_FOUND);
    EXPECT_OK(gal_subject_set_metadata(g, "c", "alice", "[\"updated\"]"));
    EXPECT_RC(gal_subject_set_metadata(g, "c", "carol", "{}"), BASE_ERR_NOT_FOUND);
    EXPECT_OK(gal_subject_get(g, "c", "alice", &s));
    assert_string_equal(s.metadata, "[\"updated\"]");
    gal_subject_info_deinit(&s);

    /* Paging through 25 subjects 10 at a time. */
    for (int i = 0; i < 23; i++) {
        char id[16];
        snprintf(id, sizeof id, "s%02d", i);
        EXPECT_OK(gal_subject_add(g, "c", id, NULL));
    }
    char after[GAL_ID_MAX + 1] = "";
    size_t seen = 0;
    for (;;) {
        struct gal_subject_info *list;
        size_t n;
        EXPECT_OK(gal_subject_list(g, "c", after, 10, &list, &n));
        for (size_t i = 0; i < n; i++) {
            assert_true(strcmp(list[i].id, after) > 0);
            snprintf(after, sizeof after, "%s", list[i].id);
        }
        seen += n;
        gal_subject_list_free(list, n);
        if (n < 10) break;
    }
    assert_int_equal(seen, 25);
    EXPECT_OK(gal_subject_delete(g, "c", "bob smith"));
    EXPECT_RC(gal_subject_delete(g, "c", "bob smith"), BASE_ERR_NOT_FOUND);

    /* A batch of subjects is all or nothing: a duplicate (in the store or in the batch) or a
     * bad metadata text fails the whole batch. */
    const char *batch[] = {"b1", "b2", "alice"}, *dup_in_batch[] = {"b1", "b2", "b1"};
    const char *metas[] = {"{}", "[1]", "{oops"};
    EXPECT_RC(gal_subjects_add(g, "c", batch, NULL, 3), BASE_ERR_EXISTS);
    EXPECT_RC(gal_subjects_add(g, "c", dup_in_batch, NULL, 3), BASE_ERR_EXISTS);
    const char *fresh[] = {"b1", "b2", "b3"};
    EXPECT_RC(gal_subjects_add(g, "c", fresh, metas, 3), BASE_ERR_INVALID);
    EXPECT_RC(gal_subject_get(g, "c", "b1", &s), BASE_ERR_NOT_FOUND);
    metas[2] = NULL;
    EXPECT_OK(gal_subjects_add(g, "c", fresh, metas, 3));
    EXPECT_OK(gal_subject_get(g, "c", "b2", &s));
    assert_string_equal(s.metadata, "[1]");
    gal_subject_info_deinit(&s);
    EXPECT_OK(gal_subject_delete(g, "c", "b1"));
    EXPECT_OK(gal_subject_delete(g, "c", "b2"));
    EXPECT_OK(gal_subject_delete(g, "c", "b3"));
    struct gal_collection_info info;
    EXPECT_OK(gal_collection_get(g, "c", &info));
    assert_int_equal(info.subject_count, 24);
}

static void test_face_round_trip(void **state)
{
    struct fixture *f = *state;
    struct gal *g = f->g;
    struct rng r = {1};
    create(g, "c", GAL_DTYPE_INT8, 0.5f);
    EXPECT_OK(gal_subject_add(g, "c", "alice", NULL));
    float e[DIM], scaled[DIM];
    random_unit(&r, e, DIM);
    for (int i = 0; i < DIM; i++)
        scaled[i] = e[i] * 3.0f; /* the gallery normalises */
    uint8_t jpeg[3000];
    struct gal_face_input in = face_input("alice", MODEL, DIM, scaled);
    in.image_hash = "sha256:0123abcd";
    in.box[0] = 10.5f;
    in.box[1] = 20.25f;
    in.box[2] = 100.0f;
    in.box[3] = 120.0f;
    in.quality = 0.875f;
    in.thumbnail = jpeg;
    in.thumbnail_len = fake_jpeg(jpeg, sizeof jpeg, 7);
    int64_t id = 0, id2 = 0;
    EXPECT_OK(gal_face_add(g, "c", &in, &id));
    assert_true(id > 0);
    in.thumbnail = NULL;
    in.thumbnail_len = 0;
    in.image_hash = NULL;
    EXPECT_OK(gal_face_add(g, "c", &in, &id2));
    assert_true(id2 > id);

    for (int pass = 0; pass < 2; pass++) {
        struct gal_face_record rec;
        EXPECT_OK(gal_face_get(f->g, "c", id, &rec));
        assert_int_equal(rec.face_id, id);
        assert_string_equal(rec.subject_id, "alice");
        assert_string_equal(rec.image_hash, "sha256:0123abcd");
        assert_true(rec.box[0] == 10.5f && rec.box[1] == 20.25f && rec.box[2] == 100.0f &&
                    rec.box[3] == 120.0f);
        assert_true(rec.quality == 0.875f);
        assert_true(rec.created_ms > 1600000000000ll);
        assert_int_equal(rec.dim, DIM);
        for (int i = 0; i < DIM; i++)
            assert_true(fabsf(rec.embedding[i] - e[i]) < 1e-6f);
        assert_int_equal(rec.thumbnail_len, sizeof jpeg);
        assert_memory_equal(rec.thumbnail, jpeg, sizeof jpeg);
        gal_face_record_deinit(&rec);
        EXPECT_OK(gal_face_get(f->g, "c", id2, &rec));
        assert_null(rec.thumbnail);
        assert_string_equal(rec.image_hash, "");
        gal_face_record_deinit(&rec);

        int64_t *ids;
        size_t n;
        EXPECT_OK(gal_face_list(f->g, "c", "alice", &ids, &n));
        assert_int_equal(n, 2);
        assert_true(ids[0] == id && ids[1] == id2);
        free(ids);
        float sim;
        int64_t best = top1(f->g, "c", e, &sim);
        assert_true(best == id || best == id2);
        assert_true(fabsf(sim - 1.0f) < 1e-5f);
        reopen(f, NULL); /* and once more after a reopen */
    }
    EXPECT_OK(gal_face_delete(f->g, "c", id));
    EXPECT_RC(gal_face_delete(f->g, "c", id), BASE_ERR_NOT_FOUND);
    struct gal_face_record rec;
    EXPECT_RC(gal_face_get(f->g, "c", id, &rec), BASE_ERR_NOT_FOUND);
    assert_int_equal(top1(f->g, "c", e, NULL), id2);
    EXPECT_OK(gal_face_delete(f->g, "c", id2));
    assert_int_equal(top1(f->g, "c", e, NULL), 0);
    assert_int_equal(face_count(f->g, "c"), 0);
}

static void test_bad_faces(void **state)
{
    struct fixture *f = *state;
    struct gal *g = f->g;
    struct rng r = {2};
    create(g, "c", GAL_DTYPE_F32, 0.5f);
    EXPECT_OK(gal_subject_add(g, "c", "alice", NULL));
    float e[DIM + 1], bad[DIM];
    random_unit(&r, e, DIM + 1);
    int64_t id;
    struct gal_face_input in = face_input("alice", MODEL, DIM, e);
    EXPECT_OK(gal_face_add(g, "c", &in, &id));

    in = face_input("alice", MODEL, DIM + 1, e);
    EXPECT_RC(gal_face_add(g, "c", &in, &id), BASE_ERR_INVALID);
    assert_non_null(strstr(base_error_message(), "dimension 65"));
    in = face_input("alice", "other-model", DIM, e);
    EXPECT_RC(gal_face_add(g, "c", &in, &id), BASE_ERR_INVALID);
    assert_non_null(strstr(base_error_message(), "other-model"));
    in = face_input("alice", NULL, DIM, e);
    EXPECT_RC(gal_face_add(g, "c", &in, &id), BASE_ERR_INVALID);
    const float poison[] = {NAN, INFINITY, -INFINITY};
    for (int p = 0; p < 3; p++) {
        memcpy(bad, e, sizeof bad);
        bad[DIM / 2] = poison[p];
        in = face_input("alice", MODEL, DIM, bad);
        EXPECT_RC(gal_face_add(g, "c", &in, &id), BASE_ERR_INVALID);
    }
    memset(bad, 0, sizeof bad);
    in = face_input("alice", MODEL, DIM, bad);
    EXPECT_RC(gal_face_add(g, "c", &in, &id), BASE_ERR_INVALID);
    in = face_input("alice", MODEL, DIM, NULL);
    EXPECT_RC(gal_face_add(g, "c", &in, &id), BASE_ERR_INVALID);
    in = face_input("nobody", MODEL, DIM, e);
    EXPECT_RC(gal_face_add(g, "c", &in, &id), BASE_ERR_NOT_FOUND);
    assert_non_null(strstr(base_error_message(), "nobody"));
    in = face_input("alice", MODEL, DIM, e);
    EXPECT_RC(gal_face_add(g, "nope", &in, &id), BASE_ERR_NOT_FOUND);
    in.box[1] = NAN;
    EXPECT_RC(gal_face_add(g, "c", &in, &id), BASE_ERR_INVALID);
    in = face_input("alice", MODEL, DIM, e);
    in.quality = INFINITY;
    EXPECT_RC(gal_face_add(g, "c", &in, &id), BASE_ERR_INVALID);
    in = face_input("alice", MODEL, DIM, e);
    uint8_t png[] = {0x89, 'P', 'N', 'G', 0, 0};
    in.thumbnail = png;
    in.thumbnail_len = sizeof png;
    EXPECT_RC(gal_face_add(g, "c", &in, &id), BASE_ERR_INVALID);
    uint8_t *huge = calloc(1, GAL_THUMBNAIL_MAX + 1);
    fake_jpeg(huge, GAL_THUMBNAIL_MAX + 1, 1);
    in.thumbnail = huge;
    in.thumbnail_len = GAL_THUMBNAIL_MAX + 1;
    EXPECT_RC(gal_face_add(g, "c", &in, &id), BASE_ERR_LIMIT);
    free(huge);
    EXPECT_RC(gal_face_delete(g, "c", 987654), BASE_ERR_NOT_FOUND);

    /* A batch with one bad face writes nothing, whether the input check or the store fails. */
    struct gal_face_input batch[3] = {face_input("alice", MODEL, DIM, e),
                                      face_input("alice", MODEL, DIM, e),
                                      face_input("alice", MODEL, DIM, bad)};
    int64_t ids[3];
    EXPECT_RC(gal_faces_add(g, "c", batch, 3, ids), BASE_ERR_INVALID);
    batch[2] = face_input("ghost", MODEL, DIM, e);
    EXPECT_RC(gal_faces_add(g, "c", batch, 3, ids), BASE_ERR_NOT_FOUND);
    assert_int_equal(face_count(g, "c"), 1);
    struct gal_index_stats st;
    EXPECT_OK(gal_index_stats(g, "c", &st));
    assert_int_equal(st.faces, 1);

    /* Searches check their input the same way. */
    struct gal_search_request req = {
        .model_id = MODEL, .dim = DIM, .embeddings = e, .query_count = 1, .k = 5};
    struct gal_results *res = NULL;
    req.dim = DIM + 1;
    EXPECT_RC(gal_search(g, "c", &req, &res), BASE_ERR_INVALID);
    req.dim = DIM;
    req.model_id = "other";
    EXPECT_RC(gal_search(g, "c", &req, &res), BASE_ERR_INVALID);
    req.model_id = MODEL;
    req.embeddings = bad;
    EXPECT_RC(gal_search(g, "c", &req, &res), BASE_ERR_INVALID);
    bad[0] = NAN;
    EXPECT_RC(gal_search(g, "c", &req, &res), BASE_ERR_INVALID);
    req.embeddings = e;
    req.k = 0;
    EXPECT_RC(gal_search(g, "c", &req, &res), BASE_ERR_INVALID);
    req.k = GAL_K_MAX + 1;
    EXPECT_RC(gal_search(g, "c", &req, &res), BASE_ERR_INVALID);
    req.k = 5;
    req.query_count = 0;
    EXPECT_RC(gal_search(g, "c", &req, &res), BASE_ERR_INVALID);
    req.query_count = 1;
    EXPECT_RC(gal_search(g, "nope", &req, &res), BASE_ERR_NOT_FOUND);
    assert_null(res);
}

static void test_search_decisions(void **state)
{
    struct fixture *f = *state;
    struct gal *g = f->g;
    struct rng r = {3};
    for (int dt = 0; dt < 3; dt++) {
        char name[16];
        snprintf(name, sizeof name, "c%d", dt);
        create(g, name, (enum gal_dtype)dt, 0.6f);
        /* Subject "a" has three faces near the query at similarity ~0.9, 0.7, 0.3;
         * "b" one at ~0.65; "c" one at ~0.2; plus 200 random others. */
        float q[DIM], x[DIM];
        random_unit(&r, q, DIM);
        const char *subjects[] = {"a", "a", "a", "b", "c"};
        const float sims[] = {0.9f, 0.7f, 0.3f, 0.65f, 0.2f};
        EXPECT_OK(gal_subject_add(g, name, "a", NULL));
        EXPECT_OK(gal_subject_add(g, name, "b", NULL));
        EXPECT_OK(gal_subject_add(g, name, "c", NULL));
        EXPECT_OK(gal_subject_add(g, name, "crowd", NULL));
        int64_t ids[5];
        for (int i = 0; i < 5; i++) {
            /* x = s q + sqrt(1 - s^2) u with u a unit vector orthogonal to q. */
            float u[DIM];
            random_unit(&r, u, DIM);
            double d = 0, n = 0;
            for (int j = 0; j < DIM; j++)
                d += u[j] * q[j];
            for (int j = 0; j < DIM; j++)
                u[j] -= (float)(d * q[j]);
            for (int j = 0; j < DIM; j++)
                n += u[j] * u[j];
            for (int j = 0; j < DIM; j++)
                x[j] = sims[i] * q[j] + sqrtf(1 - sims[i] * sims[i]) * (float)(u[j] / sqrt(n));
            struct gal_face_input in = face_input(subjects[i], MODEL, DIM, x);
            EXPECT_OK(gal_face_add(g, name, &in, &ids[i]));
        }
        for (int i = 0; i < 200; i++) {
            random_unit(&r, x, DIM);
            for (int j = 0; j < DIM; j++)
                x[j] -= 0.5f * q[j]; /* keep the crowd below 0.2 */
            struct gal_face_input in = face_input("crowd", MODEL, DIM, x);
            int64_t id;
            EXPECT_OK(gal_face_add(g, name, &in, &id));
        }
        float queries[2 * DIM];
        memcpy(queries, q, sizeof q);
        random_unit(&r, queries + DIM, DIM);
        struct gal_search_request req = {
            .model_id = MODEL, .dim = DIM, .embeddings = queries, .query_count = 2, .k = 3};
        struct gal_results *res = NULL;
        EXPECT_OK(gal_search(g, name, &req, &res));
        assert_int_equal(res->query_count, 2);
        assert_true(res->threshold == 0.6f);
        const struct gal_query_result *r0 = &res->queries[0];
        assert_int_equal(r0->face_count, 3);
        assert_int_equal(r0->faces[0].face_id, ids[0]);
        assert_int_equal(r0->faces[1].face_id, ids[1]);
        assert_int_equal(r0->faces[2].face_id, ids[3]);
        assert_true(fabsf(r0->faces[0].similarity - 0.9f) < 1e-5f);
        assert_true(fabsf(r0->faces[1].similarity - 0.7f) < 1e-5f);
        assert_true(fabsf(r0->faces[2].similarity - 0.65f) < 1e-5f);
        assert_int_equal(r0->faces[0].decision, GAL_MATCH);
        assert_int_equal(r0->faces[1].decision, GAL_MATCH);
        assert_int_equal(r0->faces[2].decision, GAL_MATCH);
        assert_string_equal(r0->faces[0].subject_id, "a");
        /* Subjects: a (its best face, 0.9), b (0.65), c (0.2) - not a again. */
        assert_int_equal(r0->subject_count, 3);
        assert_string_equal(r0->subjects[0].subject_id, "a");
        assert_int_equal(r0->subjects[0].face_id, ids[0]);
        assert_string_equal(r0->subjects[1].subject_id, "b");
        assert_string_equal(r0->subjects[2].subject_id, "c");
        assert_true(fabsf(r0->subjects[2].similarity - 0.2f) < 1e-5f);
        assert_int_equal(r0->subjects[2].decision, GAL_NO_MATCH);
        /* The second query is unrelated: three results, most likely no match. */
        assert_int_equal(res->queries[1].face_count, 3);
        for (size_t i = 1; i < 3; i++)
            assert_true(res->queries[1].faces[i].similarity <=
                        res->queries[1].faces[i - 1].similarity);
        gal_results_destroy(res);

        /* A higher threshold changes decisions, not similarities. */
        EXPECT_OK(gal_collection_set_threshold(g, name, 0.8f));
        req.query_count = 1;
        EXPECT_OK(gal_search(g, name, &req, &res));
        assert_int_equal(res->queries[0].faces[0].decision, GAL_MATCH);
        assert_int_equal(res->queries[0].faces[1].decision, GAL_NO_MATCH);
        gal_results_destroy(res);

        /* A caller's own threshold decides instead of the collection's, faces and subjects
         * alike, and is the one reported; outside [-1, 1] it is refused. */
        req.has_threshold = 1;
        req.threshold = 0.68f;
        EXPECT_OK(gal_search(g, name, &req, &res));
        assert_true(res->threshold == 0.68f);
        assert_int_equal(res->queries[0].faces[1].decision, GAL_MATCH);    /* 0.7 */
        assert_int_equal(res->queries[0].faces[2].decision, GAL_NO_MATCH); /* 0.65 */
        assert_int_equal(res->queries[0].subjects[0].decision, GAL_MATCH);    /* a, 0.9 */
        assert_int_equal(res->queries[0].subjects[1].decision, GAL_NO_MATCH); /* b, 0.65 */
        gal_results_destroy(res);
        req.threshold = 1.5f;
        EXPECT_RC(gal_search(g, name, &req, &res), BASE_ERR_INVALID);
        req.has_threshold = 0;

        /* Deleting subject a removes its three faces from the results. */
        EXPECT_OK(gal_subject_delete(g, name, "a"));
        EXPECT_OK(gal_search(g, name, &req, &res));
        assert_int_equal(res->queries[0].faces[0].face_id, ids[3]);
        assert_string_equal(res->queries[0].subjects[0].subject_id, "b");
        gal_results_destroy(res);
    }
}

/* Everything in a collection, as text, for comparing two collections. */
static char *describe(struct gal *g, const char *collection)
{
    size_t cap = 1 << 20, len = 0;
    char *out = malloc(cap);
    struct gal_collection_info info;
    EXPECT_OK(gal_collection_get(g, collection, &info));
    len += (size_t)snprintf(out + len, cap - len, "%s %u %d %g %llu %llu\n", info.model_id,
                            info.dim, (int)info.dtype, (double)info.threshold,
                            (unsigned long long)info.subject_count,
                            (unsigned long long)info.face_count);
    struct gal_subject_info *subjects;
    size_t ns;
    EXPECT_OK(gal_subject_list(g, collection, NULL, 10000, &subjects, &ns));
    for (size_t i = 0; i < ns; i++) {
        len += (size_t)snprintf(out + len, cap - len, "S %s %s %lld\n", subjects[i].id,
                                subjects[i].metadata, (long long)subjects[i].created_ms);
        int64_t *ids;
        size_t nf;
        EXPECT_OK(gal_face_list(g, collection, subjects[i].id, &ids, &nf));
        for (size_t j = 0; j < nf; j++) {
            struct gal_face_record rec;
            EXPECT_OK(gal_face_get(g, collection, ids[j], &rec));
            uint32_t crc = 0;
            for (size_t b = 0; b < rec.thumbnail_len; b++)
                crc = crc * 31 + rec.thumbnail[b];
            double esum = 0;
            for (uint32_t d = 0; d < rec.dim; d++)
                esum += rec.embedding[d] * (d + 1);
            len += (size_t)snprintf(out + len, cap - len,
                                    "  F %s %s %g %g %g %g %g %lld %zu %u %.9g\n", rec.subject_id,
                                    rec.image_hash, (double)rec.box[0], (double)rec.box[1],
                                    (double)rec.box[2], (double)rec.box[3], (double)rec.quality,
                                    (long long)rec.created_ms, rec.thumbnail_len, crc, esum);
            gal_face_record_deinit(&rec);
        }
        free(ids);
    }
    gal_subject_list_free(subjects, ns);
    return out;
}

/* Builds a collection of a few subjects and faces with thumbnails; returns one embedding. */
static void populate(struct gal *g, const char *name, enum gal_dtype dtype, struct rng *r,
                     float *some_embedding)
{
    create(g, name, dtype, 0.45f);
    uint8_t jpeg[700];
    for (int s = 0; s < 6; s++) {
        char id[32], meta[64];
        snprintf(id, sizeof id, "person %d", s);
        snprintf(meta, sizeof meta, "{\"n\": %d, \"name\": \"P\\u00e9rez %d\"}", s, s);
        EXPECT_OK(gal_subject_add(g, name, id, meta));
        for (int k = 0; k < 3; k++) {
            float e[DIM];
            random_unit(r, e, DIM);
            if (s == 2 && k == 1) memcpy(some_embedding, e, sizeof e);
            struct gal_face_input in = face_input(id, MODEL, DIM, e);
            char hash[32];
            snprintf(hash, sizeof hash, "sha256:%02d%02d", s, k);
            in.image_hash = hash;
            in.box[0] = (float)s;
            in.box[1] = (float)k;
            in.quality = 0.5f + 0.1f * k;
            if (k != 2) {
                in.thumbnail = jpeg;
                in.thumbnail_len = fake_jpeg(jpeg, 300 + 100 * (size_t)k, (unsigned)(s * 3 + k));
            }
            int64_t id_out;
            EXPECT_OK(gal_face_add(g, name, &in, &id_out));
        }
    }
}

static int collection_exists(struct gal *g, const char *name)
{
    struct gal_collection_info info;
    return gal_collection_get(g, name, &info) == 0;
}

static void test_export_import(void **state)
{
    struct fixture *f = *state;
    struct gal *g = f->g;
    struct rng r = {4};
    float e[DIM];
    populate(g, "src", GAL_DTYPE_INT8, &r, e);
    EXPECT_OK(gal_subject_add(g, "src", "no faces", "null"));
    char path[600], bad[600];
    path_in(path, sizeof path, f->dir, "src.vgal");
    path_in(bad, sizeof bad, f->dir, "bad.vgal");
    EXPECT_OK(gal_export(g, "src", path));
    EXPECT_RC(gal_export(g, "nope", path), BASE_ERR_NOT_FOUND);

    /* Import under another name: identical content, face ids aside; searchable at once. */
    EXPECT_OK(gal_import(g, path, "copy"));
    char *a = describe(g, "src"), *b = describe(g, "copy");
    assert_string_equal(a, b);
    int64_t id = top1(g, "copy", e, NULL);
    struct gal_face_record rec;
    EXPECT_OK(gal_face_get(g, "copy", id, &rec));
    assert_string_equal(rec.subject_id, "person 2");
    assert_string_equal(rec.image_hash, "sha256:0201");
    gal_face_record_deinit(&rec);
    EXPECT_RC(gal_import(g, path, "copy"), BASE_ERR_EXISTS);
    EXPECT_RC(gal_import(g, path, NULL), BASE_ERR_EXISTS); /* "src" exists */
    EXPECT_RC(gal_import(g, path, "bad name!"), BASE_ERR_INVALID);

    /* Reopen: the imported collection is loaded from the store like any other. */
    reopen(f, NULL);
    g = f->g;
    char *c = describe(g, "copy");
    assert_string_equal(a, c);
    free(c);
    uint64_t seq = gal_sequence(g);

    /* Damaged files: nothing is created, nothing is written. */
    char *data;
    size_t len;
    EXPECT_OK(base_file_read(path, 1 << 24, &data, &len));
    for (size_t cut = 0; cut < len; cut += (cut < 200 ? 1 : 37)) {
        FILE *out = fopen(bad, "wb");
        fwrite(data, 1, cut, out);
        fclose(out);
        int rc = gal_import(g, bad, "cut");
        if (rc != BASE_ERR_FORMAT)
            fail_msg("import of the first %zu of %zu bytes: %d (%s)", cut, len, rc,
                     base_error_message());
    }
    assert_false(collection_exists(g, "cut"));
    /* A future version. */
    memcpy(data + 8, &(uint32_t){2}, 4);
    FILE *out = fopen(bad, "wb");
    fwrite(data, 1, len, out);
    fclose(out);
    EXPECT_RC(gal_import(g, bad, "future"), BASE_ERR_UNSUPPORTED);
    assert_non_null(strstr(base_error_message(), "version 2"));
    memcpy(data + 8, &(uint32_t){1}, 4);
    /* Flipped bytes in the records: the checksum (or a field check) catches each. */
    for (size_t pos = 16; pos < len; pos += len / 23) {
        data[pos] ^= 0x40;
        out = fopen(bad, "wb");
        fwrite(data, 1, len, out);
        fclose(out);
        int rc = gal_import(g, bad, "flipped");
        if (rc == 0) fail_msg("import with byte %zu flipped succeeded", pos);
        data[pos] ^= 0x40;
    }
    /* Bad magic; bytes after the end. */
    data[0] = 'X';
    out = fopen(bad, "wb");
    fwrite(data, 1, len, out);
    fclose(out);
    EXPECT_RC(gal_import(g, bad, "magic"), BASE_ERR_FORMAT);
    data[0] = 'V';
    out = fopen(bad, "wb");
    fwrite(data, 1, len, out);
    fputc(0, out);
    fclose(out);
    EXPECT_RC(gal_import(g, bad, "trailing"), BASE_ERR_FORMAT);
    EXPECT_RC(gal_import(g, "/nonexistent/x.vgal", "x"), BASE_ERR_IO);
    free(data);
    assert_int_equal(gal_sequence(g), seq); /* no change of any kind was logged */
    struct gal_collection_info *list;
    size_t n;
    EXPECT_OK(gal_collection_list(g, &list, &n));
    assert_int_equal(n, 2);
    free(list);
    EXPECT_OK(gal_check(g));

    /* Export over an existing file replaces it whole; no temporary file is left behind. */
    EXPECT_OK(gal_export(g, "copy", path));
    EXPECT_OK(gal_import(g, path, "copy2"));
    char *d = describe(g, "copy2");
    assert_string_equal(a, d);
    free(d);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls %s | grep -c tmp > /dev/null", f->dir);
    assert_int_not_equal(system(cmd), 0);
    free(a);
    free(b);
}

static void test_reopen_rebuilds_index(void **state)
{
    struct fixture *f = *state;
    struct rng r = {5};
    enum { N = 3000, Q = 20 };
    float *x = malloc(sizeof(float) * N * DIM);
    struct gal_face_input *in = malloc(sizeof *in * N);
    int64_t *ids = malloc(sizeof *ids * N);
    for (int dt = 0; dt < 3; dt++) {
        char name[16];
        snprintf(name, sizeof name, "d%d", dt);
        create(f->g, name, (enum gal_dtype)dt, 0.5f);
        for (int s = 0; s < 50; s++) {
            char id[16];
            snprintf(id, sizeof id, "s%d", s);
            EXPECT_OK(gal_subject_add(f->g, name, id, NULL));
        }
        static char subject_ids[50][16];
        for (int i = 0; i < N; i++) {
            random_unit(&r, x + (size_t)i * DIM, DIM);
            snprintf(subject_ids[i % 50], 16, "s%d", i % 50);
            in[i] = face_input(subject_ids[i % 50], MODEL, DIM, x + (size_t)i * DIM);
        }
        EXPECT_OK(gal_faces_add(f->g, name, in, N, ids));
        for (int i = 0; i < N; i += 3)
            EXPECT_OK(gal_face_delete(f->g, name, ids[i]));
    }
    float q[Q * DIM];
    for (int i = 0; i < Q; i++)
        random_unit(&r, q + i * DIM, DIM);
    struct gal_search_request req = {
        .model_id = MODEL, .dim = DIM, .embeddings = q, .query_count = Q, .k = 10};
    struct gal_results *before[3], *after;
    struct gal_index_stats st_before[3], st;
    for (int dt = 0; dt < 3; dt++) {
        char name[16];
        snprintf(name, sizeof name, "d%d", dt);
        EXPECT_OK(gal_search(f->g, name, &req, &before[dt]));
        EXPECT_OK(gal_index_stats(f->g, name, &st_before[dt]));
        assert_int_equal(st_before[dt].faces, N - (N + 2) / 3);
    }
    reopen(f, NULL);
    for (int dt = 0; dt < 3; dt++) {
        char name[16];
        snprintf(name, sizeof name, "d%d", dt);
        EXPECT_OK(gal_index_stats(f->g, name, &st));
        assert_int_equal(st.faces, st_before[dt].faces);
        assert_int_equal(st.rows, st.faces); /* rebuilt compact */
        EXPECT_OK(gal_search(f->g, name, &req, &after));
        for (int i = 0; i < Q; i++) {
            assert_int_equal(after->queries[i].face_count, 10);
            for (int j = 0; j < 10; j++) {
                assert_int_equal(after->queries[i].faces[j].face_id,
                                 before[dt]->queries[i].faces[j].face_id);
                assert_true(after->queries[i].faces[j].similarity ==
                            before[dt]->queries[i].faces[j].similarity);
                assert_string_equal(after->queries[i].subjects[j].subject_id,
                                    before[dt]->queries[i].subjects[j].subject_id);
            }
        }
        gal_results_destroy(after);
        gal_results_destroy(before[dt]);
    }
    free(x);
    free(in);
    free(ids);
}

static void test_change_log_follow(void **state)
{
    struct fixture *f = *state;
    struct rng r = {6};
    struct gal *other;
    uint64_t seq0 = gal_sequence(f->g);
    EXPECT_OK(gal_open(f->db, NULL, &other));
    create(f->g, "shared", GAL_DTYPE_INT8, 0.5f);
    EXPECT_OK(gal_subject_add(f->g, "shared", "a", NULL));
    float e[DIM];
    random_unit(&r, e, DIM);
    struct gal_face_input in = face_input("a", MODEL, DIM, e);
    int64_t id;
    EXPECT_OK(gal_face_add(f->g, "shared", &in, &id));
    assert_int_equal(gal_sequence(f->g), seq0 + 3);

    /* The other handle sees nothing in memory until it refreshes (with SQLite; a store that
     * several processes share makes every read catch up first). */
    struct gal_index_stats st;
    if (STORE_IS_FILE) EXPECT_RC(gal_index_stats(other, "shared", &st), BASE_ERR_NOT_FOUND);
    EXPECT_OK(gal_refresh(other));
    assert_int_equal(gal_sequence(other), seq0 + 3);
    assert_int_equal(top1(other, "shared", e, NULL), id);

    /* Changes interleave: each handle's writes replay the other's first. */
    float e2[DIM];
    random_unit(&r, e2, DIM);
    in = face_input("a", MODEL, DIM, e2);
    int64_t id2;
    EXPECT_OK(gal_face_add(other, "shared", &in, &id2));
    EXPECT_OK(gal_face_delete(f->g, "shared", id)); /* f->g replays id2's addition first */
    assert_int_equal(top1(f->g, "shared", e2, NULL), id2);
    assert_int_not_equal(top1(f->g, "shared", e, NULL), id);
    EXPECT_OK(gal_refresh(other));
    assert_int_not_equal(top1(other, "shared", e, NULL), id);
    EXPECT_OK(gal_collection_set_dtype(f->g, "shared", GAL_DTYPE_F16));
    EXPECT_OK(gal_refresh(other));
    struct gal_collection_info info;
    EXPECT_OK(gal_collection_get(other, "shared", &info));
    assert_int_equal(info.dtype, GAL_DTYPE_F16);
    EXPECT_OK(gal_collection_delete(other, "shared"));
    EXPECT_OK(gal_refresh(f->g));
    EXPECT_RC(gal_index_stats(f->g, "shared", &st), BASE_ERR_NOT_FOUND);
    assert_int_equal(gal_sequence(f->g), gal_sequence(other));
    gal_close(other);
}

static void test_read_only(void **state)
{
    struct fixture *f = *state;
    struct rng r = {7};
    float e[DIM];
    populate(f->g, "c", GAL_DTYPE_F32, &r, e);
    char *before = describe(f->g, "c");
    struct gal_options ro = {.read_only = 1};
    reopen(f, &ro);
    struct gal *g = f->g;
    char *after = describe(g, "c");
    assert_string_equal(before, after);
    assert_int_not_equal(top1(g, "c", e, NULL), 0);
    struct gal_collection_info info = collection_info("new", MODEL, DIM, GAL_DTYPE_F32, 0.5f);
    EXPECT_RC(gal_collection_create(g, &info), BASE_ERR_IO);
    assert_non_null(strstr(base_error_message(), "read-only"));
    EXPECT_RC(gal_subject_add(g, "c", "z", NULL), BASE_ERR_IO);
    struct gal_face_input in = face_input("person 1", MODEL, DIM, e);
    int64_t id;
    EXPECT_RC(gal_face_add(g, "c", &in, &id), BASE_ERR_IO);
    EXPECT_RC(gal_collection_delete(g, "c"), BASE_ERR_IO);
    free(after);

    /* A file the process may not write: only testable when not root. */
    reopen(f, NULL);
    if (STORE_IS_FILE && geteuid() != 0) {
        gal_close(f->g);
        f->g = NULL;
        chmod(f->db, 0444);
        EXPECT_OK(gal_open(f->db, NULL, &f->g));
        EXPECT_RC(gal_subject_add(f->g, "c", "z", NULL), BASE_ERR_IO);
        gal_close(f->g);
        f->g = NULL;
        chmod(f->db, 0644);
        EXPECT_OK(gal_open(f->db, NULL, &f->g));
    } else if (STORE_IS_FILE) {
        printf("# running as root: a read-only file cannot be tested, the read-only option was\n");
    }
    char *again = describe(f->g, "c");
    assert_string_equal(before, again);
    free(before);
    free(again);
}

static void test_full_store(void **state)
{
    struct fixture *f = *state;
    struct rng r = {8};
    struct gal_options opts = {.max_store_bytes = 2u << 20};
    reopen(f, &opts);
    create(f->g, "c", GAL_DTYPE_INT8, 0.5f);
    EXPECT_OK(gal_subject_add(f->g, "c", "a", NULL));
    enum { BATCH = 50 };
    static float x[BATCH * DIM];
    static uint8_t jpeg[8000];
    fake_jpeg(jpeg, sizeof jpeg, 1);
    struct gal_face_input in[BATCH];
    int64_t ids[BATCH];
    int rc = 0, batches = 0;
    while (batches < 1000) {
        for (int i = 0; i < BATCH; i++) {
            random_unit(&r, x + i * DIM, DIM);
            in[i] = face_input("a", MODEL, DIM, x + i * DIM);
            in[i].thumbnail = jpeg;
            in[i].thumbnail_len = sizeof jpeg;
        }
        if ((rc = gal_faces_add(f->g, "c", in, BATCH, ids)) != 0) break;
        batches++;
    }
    assert_int_equal(rc, BASE_ERR_FULL);
    assert_non_null(strstr(base_error_message(), "full"));
    assert_true(batches > 0);
    /* The failed batch left nothing: counts are whole batches, in the store and the index. */
    assert_int_equal(face_count(f->g, "c"), (uint64_t)batches * BATCH);
    struct gal_index_stats st;
    EXPECT_OK(gal_index_stats(f->g, "c", &st));
    assert_int_equal(st.faces, (uint64_t)batches * BATCH);
    EXPECT_OK(gal_check(f->g));
    /* Deleting makes room again (SQLite reuses free pages). */
    int64_t *all;
    size_t n;
    EXPECT_OK(gal_face_list(f->g, "c", "a", &all, &n));
    for (size_t i = 0; i < BATCH * 2 && i < n; i++)
        EXPECT_OK(gal_face_delete(f->g, "c", all[i]));
    free(all);
    EXPECT_OK(gal_faces_add(f->g, "c", in, BATCH, ids));
    reopen(f, NULL);
    assert_int_equal(face_count(f->g, "c"), (uint64_t)(batches - 1) * BATCH);
}

/* Another process holding the write lock past the busy timeout: the write fails with
 * BASE_ERR_IO (the service answers 503 store_unavailable), takes nothing, and works once the
 * lock is gone. */
static void test_busy_store(void **state)
{
    struct fixture *f = *state;
    struct gal_options opts = {.busy_timeout_ms = 200};
    reopen(f, &opts);
    create(f->g, "c", GAL_DTYPE_F32, 0.5f);
    sqlite3 *other;
    assert_int_equal(sqlite3_open(f->db, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    EXPECT_RC(gal_subject_add(f->g, "c", "a", NULL), BASE_ERR_IO);
    assert_non_null(strstr(base_error_message(), "busy"));
    assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    EXPECT_OK(gal_subject_add(f->g, "c", "a", NULL));
    reopen(f, NULL);
    struct gal_subject_info info;
    EXPECT_OK(gal_subject_get(f->g, "c", "a", &info));
    gal_subject_info_deinit(&info);
}

/*
 * Leaves the store with no room for a face with a thumbnail of a few pages while a subject
 * still fits (refuse), or gives it room again. SQLite: the gallery reopened with
 * max_store_bytes at the file's present size, so SQLite itself refuses to grow it
 * (SQLITE_FULL), with room left in the pages it has for a subject's row; PostgreSQL: a trigger
 * that fails inserts into faces with disk_full, what a full disk raises. BASE_ERR_FULL either
 * way, from within the store's transaction, as a full disk makes it.
 */
static void store_refuse_faces(struct fixture *f, int refuse)
{
#ifdef TEST_STORE_POSTGRES
    postgres_refuse_faces(f->db, refuse);
#else
    if (!refuse) {
        reopen(f, NULL);
        return;
    }
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT page_count * page_size FROM pragma_page_count(), "
                                        "pragma_page_size()",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    struct gal_options full = {.max_store_bytes = (uint64_t)sqlite3_column_int64(st, 0)};
    sqlite3_finalize(st);
    sqlite3_close(db);
    reopen(f, &full);
#endif
}

/* The ids of a collection's subjects, in order, one per line, in a new string. */
static char *subject_ids(struct gal *g, const char *collection)
{
    struct gal_subject_info *list;
    size_t n;
    EXPECT_OK(gal_subject_list(g, collection, NULL, 100, &list, &n));
    char *text = calloc(1, n * (GAL_ID_MAX + 24) + 1);
    for (size_t i = 0; i < n; i++)
        sprintf(text + strlen(text), "%s %llu\n", list[i].id,
                (unsigned long long)list[i].face_count);
    gal_subject_list_free(list, n);
    return text;
}

static void expect_counts(struct gal *g, const char *collection, uint64_t subjects,
                          uint64_t faces)
{
    struct gal_collection_info info;
    EXPECT_OK(gal_collection_get(g, collection, &info));
    if (info.subject_count != subjects || info.face_count != faces)
        fail_msg("collection %s: %llu subjects, %llu faces; expected %llu, %llu", collection,
                 (unsigned long long)info.subject_count, (unsigned long long)info.face_count,
                 (unsigned long long)subjects, (unsigned long long)faces);
}

/*
 * An enrolment that creates its subject stores the subject and the face together or neither:
 * a face the store has no room for leaves no subject behind (it used to: the subject was
 * committed on its own first), the counts in memory stay those of the store, and a second
 * handle that follows the change log, or loads the store afresh, finds the same.
 */
static void test_enrol_all_or_nothing(void **state)
{
    struct fixture *f = *state;
    struct rng r = {21};
    create(f->g, "c", GAL_DTYPE_INT8, 0.5f);
    struct gal *follower;
    EXPECT_OK(gal_open(f->db, NULL, &follower));
    float e[3][DIM];
    for (int i = 0; i < 3; i++)
        random_unit(&r, e[i], DIM);
    int64_t id = 0, id2 = 0;
    int created = -1;
    struct gal_face_input in = face_input("a", MODEL, DIM, e[0]);
    EXPECT_OK(gal_face_enrol(f->g, "c", &in, 1, "{\"n\": 1}", &id, &created));
    assert_int_equal(created, 1);
    in.embedding = e[1];
    EXPECT_OK(gal_face_enrol(f->g, "c", &in, 1, "{\"n\": 2}", &id2, &created));
    assert_int_equal(created, 0); /* the subject was there: a face only, metadata kept */
    struct gal_subject_info subject;
    EXPECT_OK(gal_subject_get(f->g, "c", "a", &subject));
    assert_string_equal(subject.metadata, "{\"n\": 1}");
    assert_int_equal(subject.face_count, 2);
    gal_subject_info_deinit(&subject);
    /* Without create_subject a missing subject is not found, and not created. */
    in.subject_id = "nobody";
    EXPECT_RC(gal_face_enrol(f->g, "c", &in, 0, NULL, &id, &created), BASE_ERR_NOT_FOUND);
    assert_non_null(strstr(base_error_message(), "nobody"));
    EXPECT_RC(gal_face_enrol(f->g, "nope", &in, 1, NULL, &id, &created), BASE_ERR_NOT_FOUND);
    in.subject_id = "b";
    EXPECT_RC(gal_face_enrol(f->g, "c", &in, 1, "{not json", &id, &created), BASE_ERR_INVALID);
    expect_counts(f->g, "c", 1, 2);

    /* No room for a face with a thumbnail of a few pages. */
    static uint8_t jpeg[20000];
    fake_jpeg(jpeg, sizeof jpeg, 5);
    store_refuse_faces(f, 1);
    in = face_input("b", MODEL, DIM, e[2]);
    in.thumbnail = jpeg;
    in.thumbnail_len = sizeof jpeg;
    created = -1;
    id = -1;
    EXPECT_RC(gal_face_enrol(f->g, "c", &in, 1, "{\"who\": \"b\"}", &id, &created),
              BASE_ERR_FULL);
    assert_int_equal(created, 0);
    assert_int_equal(id, 0); /* no face id for a face that was not stored */
    assert_non_null(strstr(base_error_message(), "full"));
    EXPECT_RC(gal_subject_get(f->g, "c", "b", &subject), BASE_ERR_NOT_FOUND);
    expect_counts(f->g, "c", 1, 2);
    /* A face for the existing subject is refused alike and changes nothing. */
    in.subject_id = "a";
    EXPECT_RC(gal_face_enrol(f->g, "c", &in, 1, NULL, &id, &created), BASE_ERR_FULL);
    expect_counts(f->g, "c", 1, 2);
    /* The subject alone had room: it was the face that failed, after the subject. */
    EXPECT_OK(gal_subject_add(f->g, "c", "alone", NULL));
    expect_counts(f->g, "c", 2, 2);
    EXPECT_OK(gal_check(f->g));

    /* The follower replays the change log to the same state; a fresh load agrees. */
    EXPECT_OK(gal_refresh(follower));
    expect_counts(follower, "c", 2, 2);
    char *want = subject_ids(f->g, "c");
    assert_string_equal(want, "a 2\nalone 0\n");
    char *got = subject_ids(follower, "c");
    assert_string_equal(got, want);
    free(got);
    assert_int_equal(gal_sequence(follower), gal_sequence(f->g));
    struct gal *fresh;
    EXPECT_OK(gal_open(f->db, NULL, &fresh));
    expect_counts(fresh, "c", 2, 2);
    gal_close(fresh);

    /* Room again: the same enrolment stores both, and everyone sees both. */
    store_refuse_faces(f, 0);
    in.subject_id = "b";
    EXPECT_OK(gal_face_enrol(f->g, "c", &in, 1, "{\"who\": \"b\"}", &id, &created));
    assert_int_equal(created, 1);
    expect_counts(f->g, "c", 3, 3);
    assert_int_equal(top1(f->g, "c", e[2], NULL), id);
    EXPECT_OK(gal_refresh(follower));
    expect_counts(follower, "c", 3, 3);
    assert_int_equal(top1(follower, "c", e[2], NULL), id);
    free(want);
    want = subject_ids(f->g, "c");
    got = subject_ids(follower, "c");
    assert_string_equal(got, want);
    free(got);
    free(want);
    gal_close(follower);
}

/* Threads enrolling faces for the same new subjects at once, half through a second handle on
 * the same store (another process, another replica). */
enum { RACE_THREADS = 4, RACE_SUBJECTS = 12 };
struct racer {
    struct gal *g;
    pthread_barrier_t *start;
    int index;
    int rc[RACE_SUBJECTS];
    int created[RACE_SUBJECTS];
    int64_t face_id[RACE_SUBJECTS];
};

static void *race_enrol(void *arg)
{
    struct racer *w = arg;
    struct rng r = {100u + (uint64_t)w->index};
    for (int s = 0; s < RACE_SUBJECTS; s++) {
        float e[DIM];
        random_unit(&r, e, DIM);
        char subject[32];
        snprintf(subject, sizeof subject, "new%d", s);
        struct gal_face_input in = face_input(subject, MODEL, DIM, e);
        pthread_barrier_wait(w->start);
        w->rc[s] = gal_face_enrol(w->g, "c", &in, 1, NULL, &w->face_id[s], &w->created[s]);
    }
    return NULL;
}

static void test_enrol_race_one_subject(void **state)
{
    struct fixture *f = *state;
    create(f->g, "c", GAL_DTYPE_F32, 0.5f);
    struct gal *second;
    EXPECT_OK(gal_open(f->db, NULL, &second));
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, RACE_THREADS);
    static struct racer w[RACE_THREADS];
    pthread_t threads[RACE_THREADS];
    for (int t = 0; t < RACE_THREADS; t++) {
        memset(&w[t], 0, sizeof w[t]);
        w[t].g = t % 2 ? second : f->g;
        w[t].start = &start;
        w[t].index = t;
        pthread_create(&threads[t], NULL, race_enrol, &w[t]);
    }
    for (int t = 0; t < RACE_THREADS; t++) /* all joined before any assertion leaves */
        pthread_join(threads[t], NULL);
    pthread_barrier_destroy(&start);
    for (int s = 0; s < RACE_SUBJECTS; s++) {
        int creators = 0;
        for (int t = 0; t < RACE_THREADS; t++) {
            if (w[t].rc[s]) fail_msg("subject new%d, thread %d: %d", s, t, w[t].rc[s]);
            creators += w[t].created[s];
        }
        if (creators != 1) fail_msg("subject new%d: created by %d enrolments", s, creators);
    }
    /* Both handles, and a fresh load, count each subject once and every face. */
    EXPECT_OK(gal_refresh(f->g));
    EXPECT_OK(gal_refresh(second));
    expect_counts(f->g, "c", RACE_SUBJECTS, RACE_SUBJECTS * RACE_THREADS);
    expect_counts(second, "c", RACE_SUBJECTS, RACE_SUBJECTS * RACE_THREADS);
    gal_close(second);
    struct gal *fresh;
    EXPECT_OK(gal_open(f->db, NULL, &fresh));
    expect_counts(fresh, "c", RACE_SUBJECTS, RACE_SUBJECTS * RACE_THREADS);
    char *list = subject_ids(fresh, "c");
    for (int s = 0; s < RACE_SUBJECTS; s++) {
        char line[48];
        snprintf(line, sizeof line, "new%d %d\n", s, RACE_THREADS);
        assert_non_null(strstr(list, line));
    }
    free(list);
    gal_close(fresh);
}

/* ---- the check-in record ------------------------------------------------------------------ */

/* Any fixed time will do: the gallery takes the caller's clock, so a test steps it. */
#define T0 1700000000000ll

/* One face arriving at `now` (subject NULL: not recognised); its record to *out when not NULL;
 * the status. */
static enum gal_checkin_status arrive(struct gal *g, const char *collection, const char *subject,
                                      float similarity, int64_t now, struct gal_checkin *out,
                                      struct gal_checkin_summary *summary)
{
    const struct gal_checkin_face face = {subject, similarity, NULL};
    struct gal_checkin rec, *r = out ? out : &rec;
    struct gal_checkin_summary sum, *s = summary ? summary : &sum;
    EXPECT_OK(gal_checkin(g, collection, &face, 1, now, r, s));
    return r->status;
}

static void expect_summary(const struct gal_checkin_summary *s, uint64_t checked_in,
                           uint64_t subjects, uint64_t not_recognised, int64_t since_ms)
{
    if (s->checked_in != checked_in || s->subjects != subjects ||
        s->not_recognised != not_recognised || s->since_ms != since_ms)
        fail_msg("summary {checked_in %llu, subjects %llu, not_recognised %llu, since %lld}, "
                 "expected {%llu, %llu, %llu, %lld}",
                 (unsigned long long)s->checked_in, (unsigned long long)s->subjects,
                 (unsigned long long)s->not_recognised, (long long)s->since_ms,
                 (unsigned long long)checked_in, (unsigned long long)subjects,
                 (unsigned long long)not_recognised, (long long)since_ms);
}

/* The whole record, one page of up to 100. */
static size_t list_all(struct gal *g, const char *collection, struct gal_checkin **list,
                       struct gal_checkin_summary *summary)
{
    size_t n = 0;
    char next[GAL_CHECKIN_CURSOR_MAX];
    EXPECT_OK(gal_checkin_list(g, collection, NULL, 100, list, &n, next, summary));
    assert_string_equal(next, "");
    return n;
}

static void test_checkin_record(void **state)
{
    struct fixture *f = *state;
    create(f->g, "ev", GAL_DTYPE_F32, 0.5f);
    EXPECT_OK(gal_subject_add(f->g, "ev", "ann", "{\"badge\":7}"));
    EXPECT_OK(gal_subject_add(f->g, "ev", "bob", NULL));
    EXPECT_OK(gal_subject_add(f->g, "ev", "cy", NULL));
    struct gal_checkin r;
    struct gal_checkin_summary s;

    /* Nothing yet: an empty record that has not begun. */
    struct gal_checkin *list = NULL;
    assert_int_equal(list_all(f->g, "ev", &list, &s), 0);
    gal_checkin_list_free(list, 0);
    expect_summary(&s, 0, 3, 0, 0);

    /* The first arrival records; within 10 s (its edge included) nothing is counted again. */
    assert_int_equal(arrive(f->g, "ev", "ann", 0.9f, T0, &r, &s), GAL_CHECKIN_CHECKED_IN);
    assert_string_equal(r.subject_id, "ann");
    assert_int_equal(r.first_seen_ms, T0);
    assert_int_equal(r.last_arrival_ms, T0);
    assert_int_equal(r.arrivals, 1);
    expect_summary(&s, 1, 3, 0, T0);
    assert_int_equal(arrive(f->g, "ev", "ann", 0.8f, T0 + 4000, &r, &s), GAL_CHECKIN_SAME_ARRIVAL);
    assert_int_equal(r.last_arrival_ms, T0);
    assert_int_equal(r.arrivals, 1);
    assert_int_equal(arrive(f->g, "ev", "ann", 0.8f, T0 + GAL_CHECKIN_SAME_MS, &r, &s),
                     GAL_CHECKIN_SAME_ARRIVAL);
    /* Back more than 10 s after the last arrival: counted, first_seen_ms unchanged. */
    assert_int_equal(arrive(f->g, "ev", "ann", 0.8f, T0 + GAL_CHECKIN_SAME_MS + 1, &r, &s),
                     GAL_CHECKIN_ALREADY_CHECKED_IN);
    assert_int_equal(r.first_seen_ms, T0);
    assert_int_equal(r.last_arrival_ms, T0 + GAL_CHECKIN_SAME_MS + 1);
    assert_int_equal(r.arrivals, 2);
    assert_int_equal(arrive(f->g, "ev", "ann", 0.8f, T0 + 15000, &r, &s),
                     GAL_CHECKIN_SAME_ARRIVAL); /* 10 s from the last arrival, not the first */
    assert_int_equal(arrive(f->g, "ev", "ann", 0.8f, T0 + 30000, &r, &s),
                     GAL_CHECKIN_ALREADY_CHECKED_IN);
    assert_int_equal(r.arrivals, 3);
    expect_summary(&s, 1, 3, 0, T0);

    /* Strangers: one retrying within 10 s of the unrecognised face last counted is one (the
     * window does not slide with the retries: a retry writes nothing); two in one photo are
     * two. */
    assert_int_equal(arrive(f->g, "ev", NULL, 0.3f, T0 + 40000, &r, &s),
                     GAL_CHECKIN_NOT_RECOGNISED);
    assert_string_equal(r.subject_id, "");
    expect_summary(&s, 1, 3, 1, T0);
    arrive(f->g, "ev", NULL, 0.3f, T0 + 45000, NULL, &s);
    expect_summary(&s, 1, 3, 1, T0);
    arrive(f->g, "ev", NULL, 0.3f, T0 + 52000, NULL, &s); /* 12 s after the counted one */
    expect_summary(&s, 1, 3, 2, T0);
    arrive(f->g, "ev", NULL, 0.3f, T0 + 60000, NULL, &s);
    expect_summary(&s, 1, 3, 2, T0);
    const struct gal_checkin_face photo[3] = {{NULL, 0.2f, NULL}, {"bob", 0.7f, NULL}, {NULL, 0.1f, NULL}};
    struct gal_checkin out[3];
    EXPECT_OK(gal_checkin(f->g, "ev", photo, 3, T0 + 80000, out, &s));
    assert_int_equal(out[0].status, GAL_CHECKIN_NOT_RECOGNISED);
    assert_int_equal(out[1].status, GAL_CHECKIN_CHECKED_IN);
    assert_string_equal(out[1].subject_id, "bob");
    assert_int_equal(out[2].status, GAL_CHECKIN_NOT_RECOGNISED);
    expect_summary(&s, 2, 3, 4, T0);

    /* The list: newest first, with metadata and the first arrival's similarity. */
    size_t n = list_all(f->g, "ev", &list, &s);
    assert_int_equal(n, 2);
    expect_summary(&s, 2, 3, 4, T0);
    assert_string_equal(list[0].subject_id, "bob");
    assert_string_equal(list[1].subject_id, "ann");
    assert_string_equal(list[1].metadata, "{\"badge\":7}");
    assert_string_equal(list[0].metadata, "{}");
    assert_int_equal(list[1].first_seen_ms, T0);
    assert_int_equal(list[1].last_arrival_ms, T0 + 30000);
    assert_int_equal(list[1].arrivals, 3);
    assert_true(fabsf(list[1].similarity - 0.9f) < 1e-6f);
    gal_checkin_list_free(list, n);

    /* A subject deleted since the search recognised it counts as not recognised. */
    EXPECT_OK(gal_subject_add(f->g, "ev", "gone", NULL));
    EXPECT_OK(gal_subject_delete(f->g, "ev", "gone"));
    assert_int_equal(arrive(f->g, "ev", "gone", 0.9f, T0 + 100000, &r, &s),
                     GAL_CHECKIN_NOT_RECOGNISED);
    expect_summary(&s, 2, 3, 5, T0);

    /* Deleting a subject deletes its record. */
    EXPECT_OK(gal_subject_delete(f->g, "ev", "bob"));
    n = list_all(f->g, "ev", &list, &s);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].subject_id, "ann");
    gal_checkin_list_free(list, n);
    expect_summary(&s, 1, 2, 5, T0);

    /* Clearing starts a new event: no records, no count, not begun; the subjects stay. */
    uint64_t cleared = 0;
    EXPECT_OK(gal_checkin_clear(f->g, "ev", &cleared));
    assert_int_equal(cleared, 1);
    assert_int_equal(list_all(f->g, "ev", &list, &s), 0);
    gal_checkin_list_free(list, 0);
    expect_summary(&s, 0, 2, 0, 0);
    assert_int_equal(arrive(f->g, "ev", "ann", 0.9f, T0 + 100500, &r, &s),
                     GAL_CHECKIN_CHECKED_IN); /* checked in again, a moment after: a new event */
    assert_int_equal(r.arrivals, 1);
    expect_summary(&s, 1, 2, 0, T0 + 100500);
    EXPECT_OK(gal_checkin_clear(f->g, "ev", NULL));
    arrive(f->g, "ev", NULL, 0.1f, T0 + 200000, NULL, &s); /* a stranger begins one too */
    expect_summary(&s, 0, 2, 1, T0 + 200000);

    /* The record outlives a reopen: it is in the store. */
    arrive(f->g, "ev", "cy", 0.9f, T0 + 210000, NULL, &s);
    reopen(f, NULL);
    n = list_all(f->g, "ev", &list, &s);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].subject_id, "cy");
    gal_checkin_list_free(list, n);
    expect_summary(&s, 1, 2, 1, T0 + 200000);

    /* Unknown collections, malformed input. */
    const struct gal_checkin_face one = {"ann", 0.9f, NULL};
    char next[GAL_CHECKIN_CURSOR_MAX];
    EXPECT_RC(gal_checkin(f->g, "nope", &one, 1, T0, &r, &s), BASE_ERR_NOT_FOUND);
    EXPECT_RC(gal_checkin_list(f->g, "nope", NULL, 10, &list, &n, next, &s), BASE_ERR_NOT_FOUND);
    EXPECT_RC(gal_checkin_clear(f->g, "nope", NULL), BASE_ERR_NOT_FOUND);
    EXPECT_RC(gal_checkin(f->g, "ev", &one, 0, T0, &r, &s), BASE_ERR_INVALID);
    const struct gal_checkin_face bad = {"", 0.9f, NULL};
    EXPECT_RC(gal_checkin(f->g, "ev", &bad, 1, T0, &r, &s), BASE_ERR_INVALID);
    EXPECT_RC(gal_checkin_list(f->g, "ev", "cy", 10, &list, &n, next, &s), BASE_ERR_INVALID);
    EXPECT_RC(gal_checkin_list(f->g, "ev", "-5:cy", 10, &list, &n, next, &s), BASE_ERR_INVALID);
    EXPECT_RC(gal_checkin_list(f->g, "ev", "x:cy", 10, &list, &n, next, &s), BASE_ERR_INVALID);
    EXPECT_RC(gal_checkin_list(f->g, "ev", NULL, 0, &list, &n, next, &s), BASE_ERR_INVALID);
}

/* One face arriving at `door` (NULL: none said) at `now`; the status, its record to *out. */
static enum gal_checkin_status arrive_at(struct gal *g, const char *subject, const char *door,
                                         int64_t now, struct gal_checkin *out)
{
    const struct gal_checkin_face face = {subject, 0.9f, door};
    struct gal_checkin_summary s;
    EXPECT_OK(gal_checkin(g, "ev", &face, 1, now, out, &s));
    return out->status;
}

static void expect_doors(const struct gal_checkin *r, const char *first, const char *last)
{
    if (strcmp(r->first_door, first) != 0 || strcmp(r->last_door, last) != 0)
        fail_msg("%s: doors \"%s\", \"%s\", expected \"%s\", \"%s\"", r->subject_id,
                 r->first_door, r->last_door, first, last);
}

/* The door of the first arrival stays, the last arrival's moves with each counted return (to
 * none when a return names none), a same_arrival moves neither; none said is "" (NULL in the
 * store), also in the list. */
static void test_checkin_doors(void **state)
{
    struct fixture *f = *state;
    create(f->g, "ev", GAL_DTYPE_F32, 0.5f);
    EXPECT_OK(gal_subject_add(f->g, "ev", "ann", NULL));
    EXPECT_OK(gal_subject_add(f->g, "ev", "bob", NULL));
    EXPECT_OK(gal_subject_add(f->g, "ev", "cy", NULL));
    struct gal_checkin r;
    assert_int_equal(arrive_at(f->g, "ann", "North entrance", T0, &r), GAL_CHECKIN_CHECKED_IN);
    expect_doors(&r, "North entrance", "North entrance");
    /* Seen at a second door within 10 s: the same arrival, still North's. */
    assert_int_equal(arrive_at(f->g, "ann", "South", T0 + 4000, &r), GAL_CHECKIN_SAME_ARRIVAL);
    expect_doors(&r, "North entrance", "North entrance");
    assert_int_equal(arrive_at(f->g, "ann", "South", T0 + 20000, &r),
                     GAL_CHECKIN_ALREADY_CHECKED_IN);
    expect_doors(&r, "North entrance", "South");
    /* A return from a page that names no door: the last door is not South any more. */
    assert_int_equal(arrive_at(f->g, "ann", NULL, T0 + 40000, &r),
                     GAL_CHECKIN_ALREADY_CHECKED_IN);
    expect_doors(&r, "North entrance", "");
    assert_int_equal(arrive_at(f->g, "ann", "Süd-Tor 2", T0 + 60000, &r),
                     GAL_CHECKIN_ALREADY_CHECKED_IN);
    expect_doors(&r, "North entrance", "Süd-Tor 2");
    assert_int_equal(arrive_at(f->g, "bob", NULL, T0 + 1000, &r), GAL_CHECKIN_CHECKED_IN);
    expect_doors(&r, "", "");
    assert_int_equal(arrive_at(f->g, "bob", "West", T0 + 30000, &r),
                     GAL_CHECKIN_ALREADY_CHECKED_IN);
    expect_doors(&r, "", "West");
    char longest[GAL_DOOR_MAX + 1];
    memset(longest, 'd', GAL_DOOR_MAX);
    longest[GAL_DOOR_MAX] = '\0';
    assert_int_equal(arrive_at(f->g, "cy", longest, T0 + 2000, &r), GAL_CHECKIN_CHECKED_IN);
    expect_doors(&r, longest, longest);
    /* A stranger at a door: counted, no door kept anywhere. */
    assert_int_equal(arrive_at(f->g, NULL, "North entrance", T0 + 3000, &r),
                     GAL_CHECKIN_NOT_RECOGNISED);
    expect_doors(&r, "", "");

    /* The list says the same, after a reopen too: it is in the store. */
    reopen(f, NULL);
    struct gal_checkin *list = NULL;
    struct gal_checkin_summary s;
    size_t n = list_all(f->g, "ev", &list, &s);
    assert_int_equal(n, 3);
    assert_string_equal(list[0].subject_id, "cy");
    expect_doors(&list[0], longest, longest);
    assert_string_equal(list[1].subject_id, "bob");
    expect_doors(&list[1], "", "West");
    assert_string_equal(list[2].subject_id, "ann");
    expect_doors(&list[2], "North entrance", "Süd-Tor 2");
    gal_checkin_list_free(list, n);

    /* Not door names: refused whole, nothing recorded. */
    char too_long[GAL_DOOR_MAX + 2];
    memset(too_long, 'd', GAL_DOOR_MAX + 1);
    too_long[GAL_DOOR_MAX + 1] = '\0';
    const char *bad[] = {"", too_long, "North\nentrance", "tab\there", "\x7f", "bad \xff utf-8",
                         "\xc3", "csi \xc2\x9b", "overlong \xc0\xae"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const struct gal_checkin_face face = {"cy", 0.9f, bad[i]};
        EXPECT_RC(gal_checkin(f->g, "ev", &face, 1, T0 + 100000, &r, &s), BASE_ERR_INVALID);
        assert_non_null(strstr(base_error_message(), "door"));
        EXPECT_RC(gal_check_door(bad[i]), BASE_ERR_INVALID);
    }
    EXPECT_RC(gal_check_door(NULL), BASE_ERR_INVALID);
    EXPECT_OK(gal_check_door("North entrance"));
    n = list_all(f->g, "ev", &list, &s);
    assert_int_equal(list[0].arrivals, 1); /* cy: the refused arrivals counted nothing */
    gal_checkin_list_free(list, n);
}

/* Deleting a collection deletes its record: a collection of the same name starts empty, and
 * (SQLite: the store's own rows) nothing of the old one is left once it is purged. */
static void test_checkin_collection_delete(void **state)
{
    struct fixture *f = *state;
    create(f->g, "ev", GAL_DTYPE_F32, 0.5f);
    EXPECT_OK(gal_subject_add(f->g, "ev", "ann", NULL));
    struct gal_checkin_summary s;
    arrive(f->g, "ev", "ann", 0.9f, T0, NULL, &s);
    arrive(f->g, "ev", NULL, 0.1f, T0, NULL, &s);
    expect_summary(&s, 1, 1, 1, T0);
    EXPECT_OK(gal_collection_delete(f->g, "ev"));
    struct gal_checkin *list = NULL;
    size_t n = 0;
    char next[GAL_CHECKIN_CURSOR_MAX];
    EXPECT_RC(gal_checkin_list(f->g, "ev", NULL, 10, &list, &n, next, &s), BASE_ERR_NOT_FOUND);
    create(f->g, "ev", GAL_DTYPE_F32, 0.5f);
    EXPECT_OK(gal_subject_add(f->g, "ev", "ann", NULL));
    assert_int_equal(list_all(f->g, "ev", &list, &s), 0);
    gal_checkin_list_free(list, 0);
    expect_summary(&s, 0, 1, 0, 0);
    struct gal_checkin r;
    assert_int_equal(arrive(f->g, "ev", "ann", 0.9f, T0 + 1000, &r, &s), GAL_CHECKIN_CHECKED_IN);
#if STORE_IS_FILE
    gal_close(f->g);
    f->g = NULL;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT (SELECT COUNT(*) FROM checkins), "
                                        "(SELECT COUNT(*) FROM checkin_events)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(st, 0), 1); /* the new collection's ann only */
    assert_int_equal(sqlite3_column_int64(st, 1), 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
    reopen(f, NULL);
#endif
}

enum { CHECKIN_THREADS = 8, CHECKIN_ROUNDS = 6 };
struct checkin_racer {
    struct gal *g;
    pthread_barrier_t *start;
    int64_t now;
    enum gal_checkin_status status[CHECKIN_ROUNDS];
    int rc[CHECKIN_ROUNDS];
};

/* Every round: all threads check the same subject in at the same moment (two doors). */
static void *race_checkin(void *arg)
{
    struct checkin_racer *w = arg;
    for (int round = 0; round < CHECKIN_ROUNDS; round++) {
        char subject[16];
        snprintf(subject, sizeof subject, "s%d", round);
        const struct gal_checkin_face face = {subject, 0.9f, NULL};
        struct gal_checkin r;
        struct gal_checkin_summary s;
        pthread_barrier_wait(w->start);
        w->rc[round] = gal_checkin(w->g, "ev", &face, 1, w->now, &r, &s);
        w->status[round] = r.status;
    }
    return NULL;
}

static void test_checkin_two_doors(void **state)
{
    struct fixture *f = *state;
    create(f->g, "ev", GAL_DTYPE_F32, 0.5f);
    for (int i = 0; i < CHECKIN_ROUNDS; i++) {
        char subject[16];
        snprintf(subject, sizeof subject, "s%d", i);
        EXPECT_OK(gal_subject_add(f->g, "ev", subject, NULL));
    }
    struct gal *second;
    EXPECT_OK(gal_open(f->db, NULL, &second));
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, CHECKIN_THREADS);
    static struct checkin_racer w[CHECKIN_THREADS];
    pthread_t threads[CHECKIN_THREADS];
    for (int t = 0; t < CHECKIN_THREADS; t++) {
        memset(&w[t], 0, sizeof w[t]);
        w[t].g = t % 2 ? second : f->g;
        w[t].start = &start;
        w[t].now = T0 + t; /* the doors' clocks differ by milliseconds */
        pthread_create(&threads[t], NULL, race_checkin, &w[t]);
    }
    for (int t = 0; t < CHECKIN_THREADS; t++) /* all joined before any assertion leaves */
        pthread_join(threads[t], NULL);
    pthread_barrier_destroy(&start);
    for (int round = 0; round < CHECKIN_ROUNDS; round++) {
        int checked_in = 0;
        for (int t = 0; t < CHECKIN_THREADS; t++) {
            if (w[t].rc[round]) fail_msg("round %d, thread %d: %d", round, t, w[t].rc[round]);
            if (w[t].status[round] == GAL_CHECKIN_CHECKED_IN)
                checked_in++;
            else if (w[t].status[round] != GAL_CHECKIN_SAME_ARRIVAL)
                fail_msg("round %d, thread %d: %s", round, t,
                         gal_checkin_status_name(w[t].status[round]));
        }
        if (checked_in != 1) fail_msg("subject s%d: %d checked_in answers", round, checked_in);
    }
    struct gal_checkin *list = NULL;
    struct gal_checkin_summary s;
    size_t n = list_all(second, "ev", &list, &s);
    assert_int_equal(n, CHECKIN_ROUNDS);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(list[i].arrivals, 1);
    gal_checkin_list_free(list, n);
    gal_close(second);
}

/* Pages of the record stay correct while arrivals go on: every subject checked in before the
 * first page is on exactly one page, in order, whatever re-arrivals and new check-ins happen
 * between the pages. */
static void test_checkin_pages(void **state)
{
    struct fixture *f = *state;
    enum { N = 40, PAGE = 7 };
    create(f->g, "ev", GAL_DTYPE_F32, 0.5f);
    for (int i = 0; i < N + 10; i++) {
        char subject[16];
        snprintf(subject, sizeof subject, "p%02d", i);
        EXPECT_OK(gal_subject_add(f->g, "ev", subject, NULL));
    }
    /* Ties on first_seen_ms (four subjects a millisecond), ordered by subject id. */
    for (int i = 0; i < N; i++) {
        char subject[16];
        snprintf(subject, sizeof subject, "p%02d", i);
        arrive(f->g, "ev", subject, 0.9f, T0 + i / 4, NULL, NULL);
    }
    int seen[N] = {0};
    char after[GAL_CHECKIN_CURSOR_MAX] = "";
    int64_t prev_ms = INT64_MAX, now = T0 + 60000;
    char prev_id[GAL_ID_MAX + 1] = "";
    int pages = 0, extra = N;
    for (;;) {
        struct gal_checkin *list = NULL;
        struct gal_checkin_summary s;
        size_t n = 0;
        char next[GAL_CHECKIN_CURSOR_MAX];
        EXPECT_OK(gal_checkin_list(f->g, "ev", after, PAGE, &list, &n, next, &s));
        pages++;
        for (size_t i = 0; i < n; i++) {
            int k = atoi(list[i].subject_id + 1);
            assert_true(k >= 0 && k < N);
            seen[k]++;
            /* newest first, ties by subject id */
            assert_true(
                list[i].first_seen_ms < prev_ms ||
                (list[i].first_seen_ms == prev_ms && strcmp(list[i].subject_id, prev_id) > 0));
            prev_ms = list[i].first_seen_ms;
            snprintf(prev_id, sizeof prev_id, "%s", list[i].subject_id);
        }
        gal_checkin_list_free(list, n);
        if (!next[0]) break;
        snprintf(after, sizeof after, "%s", next);
        /* Between pages: everyone arrives again (one shown, one not yet), and a new subject
         * checks in (newer than all: before the first page, not on a later one). */
        now += GAL_CHECKIN_SAME_MS + 1;
        for (int i = 0; i < N; i += 3) {
            char subject[16];
            snprintf(subject, sizeof subject, "p%02d", i);
            assert_int_equal(arrive(f->g, "ev", subject, 0.8f, now, NULL, NULL),
                             GAL_CHECKIN_ALREADY_CHECKED_IN);
        }
        if (extra < N + 10) {
            char subject[16];
            snprintf(subject, sizeof subject, "p%02d", extra++);
            assert_int_equal(arrive(f->g, "ev", subject, 0.8f, now, NULL, NULL),
                             GAL_CHECKIN_CHECKED_IN);
        }
    }
    for (int k = 0; k < N; k++)
        if (seen[k] != 1) fail_msg("p%02d listed %d times", k, seen[k]);
    assert_int_equal(pages, (N + PAGE - 1) / PAGE);
}

/* ---- the schema as earlier builds see it ----------------------------------------------- */

#if STORE_IS_FILE
/* Behind the gallery's back, on the file. */
static void store_exec(const char *db_path, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

static long store_long(const char *db_path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long v = (long)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}
#define STORE_VERSION "PRAGMA user_version"
#define CHECKIN_RELATIONS                                                                          \
    "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('checkins', 'checkin_events', "             \
    "'checkins_by_time')"
/* The schema the release before the check-in record (store_sqlite.c at 6f364a4^) left in a
 * file, written out here as it was: what a rollback opens, and what an upgrade starts from. */
#define EARLIER_SCHEMA                                                                             \
    "PRAGMA journal_mode = WAL;"                                                                   \
    "CREATE TABLE collections (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,"   \
    "  model_id TEXT NOT NULL, dim INTEGER NOT NULL CHECK (dim BETWEEN 1 AND 4096),"               \
    "  dtype INTEGER NOT NULL CHECK (dtype IN (0, 1, 2)), threshold REAL NOT NULL,"                \
    "  created_ms INTEGER NOT NULL);"                                                              \
    "CREATE TABLE subjects (id INTEGER PRIMARY KEY AUTOINCREMENT,"                                 \
    "  collection_id INTEGER NOT NULL REFERENCES collections (id) ON DELETE CASCADE,"              \
    "  subject_id TEXT NOT NULL, metadata TEXT NOT NULL, created_ms INTEGER NOT NULL,"             \
    "  UNIQUE (collection_id, subject_id));"                                                       \
    "CREATE TABLE faces (id INTEGER PRIMARY KEY AUTOINCREMENT,"                                    \
    "  collection_id INTEGER NOT NULL REFERENCES collections (id) ON DELETE CASCADE,"              \
    "  subject_rowid INTEGER NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,"                 \
    "  embedding BLOB NOT NULL, image_hash TEXT NOT NULL, box_x REAL NOT NULL,"                    \
    "  box_y REAL NOT NULL, box_w REAL NOT NULL, box_h REAL NOT NULL, quality REAL NOT NULL,"      \
    "  created_ms INTEGER NOT NULL);"                                                              \
    "CREATE INDEX faces_by_collection ON faces (collection_id, id);"                               \
    "CREATE INDEX faces_by_subject ON faces (subject_rowid);"                                      \
    "CREATE TABLE thumbnails ("                                                                    \
    "  face_id INTEGER PRIMARY KEY REFERENCES faces (id) ON DELETE CASCADE, jpeg BLOB NOT NULL);"  \
    "CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind INTEGER NOT NULL,"          \
    "  collection_id INTEGER NOT NULL, collection TEXT NOT NULL, subject_rowid INTEGER,"           \
    "  subject_id TEXT, face_id INTEGER, time_ms INTEGER NOT NULL);"                               \
    "PRAGMA user_version = 1; PRAGMA application_id = 1447510348;"
#else
#define store_exec admin_exec
#define store_long admin_long
#define STORE_VERSION "SELECT MAX(version) FROM vultus_schema"
#define CHECKIN_RELATIONS                                                                          \
    "SELECT COUNT(*) FROM pg_class WHERE relname IN ('checkins', 'checkin_events', "               \
    "'checkins_by_time')"
/* The schema the release before the check-in record (store_postgres.c at 6f364a4^) left in a
 * database, written out here as it was. */
#define EARLIER_SCHEMA                                                                             \
    "CREATE TABLE vultus_schema (version INTEGER NOT NULL);"                                       \
    "CREATE TABLE collections (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"                \
    "  name TEXT COLLATE \"C\" NOT NULL UNIQUE, model_id TEXT NOT NULL,"                           \
    "  dim INTEGER NOT NULL CHECK (dim BETWEEN 1 AND 4096),"                                       \
    "  dtype INTEGER NOT NULL CHECK (dtype IN (0, 1, 2)), threshold DOUBLE PRECISION NOT NULL,"    \
    "  created_ms BIGINT NOT NULL);"                                                               \
    "CREATE TABLE subjects (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"                   \
    "  collection_id BIGINT NOT NULL REFERENCES collections (id) ON DELETE CASCADE,"               \
    "  subject_id TEXT COLLATE \"C\" NOT NULL, metadata TEXT NOT NULL,"                            \
    "  created_ms BIGINT NOT NULL, UNIQUE (collection_id, subject_id));"                           \
    "CREATE TABLE faces (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"                      \
    "  collection_id BIGINT NOT NULL REFERENCES collections (id) ON DELETE CASCADE,"               \
    "  subject_rowid BIGINT NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,"                  \
    "  embedding BYTEA NOT NULL, image_hash TEXT NOT NULL,"                                        \
    "  box_x DOUBLE PRECISION NOT NULL, box_y DOUBLE PRECISION NOT NULL,"                          \
    "  box_w DOUBLE PRECISION NOT NULL, box_h DOUBLE PRECISION NOT NULL,"                          \
    "  quality DOUBLE PRECISION NOT NULL, created_ms BIGINT NOT NULL);"                            \
    "CREATE INDEX faces_by_collection ON faces (collection_id, id);"                               \
    "CREATE INDEX faces_by_subject ON faces (subject_rowid);"                                      \
    "CREATE TABLE thumbnails ("                                                                    \
    "  face_id BIGINT PRIMARY KEY REFERENCES faces (id) ON DELETE CASCADE, jpeg BYTEA NOT NULL);"  \
    "CREATE TABLE changes (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"                   \
    "  kind INTEGER NOT NULL, collection_id BIGINT NOT NULL, collection TEXT NOT NULL,"            \
    "  subject_rowid BIGINT, subject_id TEXT, face_id BIGINT, time_ms BIGINT NOT NULL);"           \
    "INSERT INTO vultus_schema VALUES (1);"
#endif

#if STORE_IS_FILE
#define CHECKIN_DOOR_COLUMNS                                                                       \
    "SELECT COUNT(*) FROM pragma_table_info('checkins') "                                          \
    "WHERE name IN ('first_door', 'last_door')"
/* The check-in tables as the release before doors (store_sqlite.c at 406f3b2) made them. */
#define EARLIER_CHECKINS                                                                           \
    "CREATE TABLE checkins ("                                                                      \
    "  subject_rowid INTEGER PRIMARY KEY REFERENCES subjects (id) ON DELETE CASCADE,"              \
    "  collection_id INTEGER NOT NULL REFERENCES collections (id) ON DELETE CASCADE,"              \
    "  first_seen_ms INTEGER NOT NULL, last_arrival_ms INTEGER NOT NULL,"                          \
    "  arrivals INTEGER NOT NULL, similarity REAL NOT NULL);"                                      \
    "CREATE INDEX checkins_by_time ON checkins (collection_id, first_seen_ms);"                    \
    "CREATE TABLE checkin_events ("                                                                \
    "  collection_id INTEGER PRIMARY KEY REFERENCES collections (id) ON DELETE CASCADE,"           \
    "  since_ms INTEGER NOT NULL, not_recognised INTEGER NOT NULL,"                                \
    "  last_unknown_ms INTEGER NOT NULL);"
#else
#define CHECKIN_DOOR_COLUMNS                                                                       \
    "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() "       \
    "AND table_name = 'checkins' AND column_name IN ('first_door', 'last_door')"
/* The check-in tables as the release before doors (store_postgres.c at 406f3b2) made them. */
#define EARLIER_CHECKINS                                                                           \
    "CREATE TABLE checkins ("                                                                      \
    "  subject_rowid BIGINT PRIMARY KEY REFERENCES subjects (id) ON DELETE CASCADE,"               \
    "  collection_id BIGINT NOT NULL REFERENCES collections (id) ON DELETE CASCADE,"               \
    "  first_seen_ms BIGINT NOT NULL, last_arrival_ms BIGINT NOT NULL,"                            \
    "  arrivals BIGINT NOT NULL, similarity DOUBLE PRECISION NOT NULL);"                           \
    "CREATE INDEX checkins_by_time ON checkins (collection_id, first_seen_ms);"                    \
    "CREATE TABLE checkin_events ("                                                                \
    "  collection_id BIGINT PRIMARY KEY REFERENCES collections (id) ON DELETE CASCADE,"            \
    "  since_ms BIGINT NOT NULL, not_recognised BIGINT NOT NULL,"                                  \
    "  last_unknown_ms BIGINT NOT NULL);"
#endif

/* A new store: version 1 (what every earlier build accepts: rolling back stays possible),
 * with the check-in tables; opening it again changes nothing and keeps the record. */
static void test_checkin_schema_additive(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(store_long(f->db, STORE_VERSION), 1);
    assert_int_equal(store_long(f->db, CHECKIN_RELATIONS), 3);
    create(f->g, "ev", GAL_DTYPE_F32, 0.5f);
    EXPECT_OK(gal_subject_add(f->g, "ev", "ann", NULL));
    assert_int_equal(arrive(f->g, "ev", "ann", 0.9f, T0, NULL, NULL), GAL_CHECKIN_CHECKED_IN);
    gal_close(f->g);
    f->g = NULL;
#if STORE_IS_FILE
    /* Bumped by SQLite at every change of the schema: none from here on. */
    long schema_cookie = store_long(f->db, "PRAGMA schema_version");
#endif
    for (int i = 0; i < 2; i++) {
        EXPECT_OK(gal_open(f->db, NULL, &f->g));
        assert_int_equal(store_long(f->db, STORE_VERSION), 1);
        assert_int_equal(store_long(f->db, CHECKIN_RELATIONS), 3);
#if STORE_IS_FILE
        assert_int_equal(store_long(f->db, "PRAGMA schema_version"), schema_cookie);
#endif
        struct gal_checkin *list = NULL;
        struct gal_checkin_summary s;
        assert_int_equal(list_all(f->g, "ev", &list, &s), 1);
        assert_string_equal(list[0].subject_id, "ann");
        gal_checkin_list_free(list, 1);
        expect_summary(&s, 1, 1, 0, T0);
        gal_close(f->g);
        f->g = NULL;
    }
    EXPECT_OK(gal_open(f->db, NULL, &f->g));
}

/* Closes the fixture's gallery and names a new, empty store for a test to build an earlier
 * release's schema in: a file beside the fixture's, or a new PostgreSQL database. */
static void earlier_store(struct fixture *f, char *earlier, size_t cap)
{
    gal_close(f->g);
    f->g = NULL;
#if STORE_IS_FILE
    path_in(earlier, cap, f->dir, "earlier.db");
#else
    new_postgres_database(earlier, cap);
#endif
}

/* A version-1 store as the release before the check-in record made it (its schema only, with
 * a collection and a subject): read-only, the record is empty and writing it a clear error;
 * the first writable open adds the tables, its data kept, the version still 1. */
static void test_checkin_migration(void **state)
{
    struct fixture *f = *state;
    char earlier[600];
    earlier_store(f, earlier, sizeof earlier);
    store_exec(earlier, EARLIER_SCHEMA
               "INSERT INTO collections (name, model_id, dim, dtype, threshold, created_ms) "
               "VALUES ('ev', '" MODEL "', 64, 0, 0.5, 1);"
               "INSERT INTO subjects (collection_id, subject_id, metadata, created_ms) "
               "VALUES (1, 'ann', '{\"seat\": 7}', 1);");
    assert_int_equal(store_long(earlier, CHECKIN_RELATIONS), 0);

    struct gal_options ro = {.read_only = 1};
    EXPECT_OK(gal_open(earlier, &ro, &f->g));
    struct gal_checkin *list = NULL;
    struct gal_checkin_summary s;
    assert_int_equal(list_all(f->g, "ev", &list, &s), 0);
    gal_checkin_list_free(list, 0);
    expect_summary(&s, 0, 1, 0, 0);
    const struct gal_checkin_face ann = {"ann", 0.9f, NULL};
    struct gal_checkin r;
    EXPECT_RC(gal_checkin(f->g, "ev", &ann, 1, T0, &r, &s), BASE_ERR_IO);
    assert_non_null(strstr(base_error_message(), "read-only"));
    EXPECT_RC(gal_checkin_clear(f->g, "ev", NULL), BASE_ERR_IO);
    assert_non_null(strstr(base_error_message(), "read-only"));
    gal_close(f->g);
    f->g = NULL;
    assert_int_equal(store_long(earlier, CHECKIN_RELATIONS), 0); /* read-only: untouched */

    EXPECT_OK(gal_open(earlier, NULL, &f->g));
    assert_int_equal(store_long(earlier, STORE_VERSION), 1);
    assert_int_equal(store_long(earlier, CHECKIN_RELATIONS), 3);
    assert_int_equal(store_long(earlier, CHECKIN_DOOR_COLUMNS), 2);
    assert_int_equal(arrive(f->g, "ev", "ann", 0.9f, T0, NULL, &s), GAL_CHECKIN_CHECKED_IN);
    expect_summary(&s, 1, 1, 0, T0);
    struct gal_subject_info info;
    EXPECT_OK(gal_subject_get(f->g, "ev", "ann", &info));
    assert_string_equal(info.metadata, "{\"seat\": 7}");
    gal_subject_info_deinit(&info);
    gal_close(f->g);
    f->g = NULL;
    /* Read-only again, now with the record. */
    EXPECT_OK(gal_open(earlier, &ro, &f->g));
    assert_int_equal(list_all(f->g, "ev", &list, &s), 1);
    gal_checkin_list_free(list, 1);
    expect_summary(&s, 1, 1, 0, T0);
    gal_close(f->g);
    f->g = NULL;
    EXPECT_OK(gal_open(f->db, NULL, &f->g));
}

/* A store as the release before doors made it (the check-in tables without the door columns,
 * a record in them): read-only, the record is listed without doors and the store untouched;
 * the first writable open adds the columns (only they: the check-in tables, present, are not
 * made again), the record kept, the version still 1; the next arrival has its door, and a
 * second open changes the schema no more. */
static void test_checkin_door_migration(void **state)
{
    struct fixture *f = *state;
    char earlier[600];
    earlier_store(f, earlier, sizeof earlier);
    store_exec(earlier, EARLIER_SCHEMA EARLIER_CHECKINS
               "INSERT INTO collections (name, model_id, dim, dtype, threshold, created_ms) "
               "VALUES ('ev', '" MODEL "', 64, 0, 0.5, 1);"
               "INSERT INTO subjects (collection_id, subject_id, metadata, created_ms) "
               "VALUES (1, 'ann', '{}', 1);"
               "INSERT INTO checkins (subject_rowid, collection_id, first_seen_ms, "
               "last_arrival_ms, arrivals, similarity) VALUES (1, 1, 1700000000000, "
               "1700000000000, 1, 0.75);"
               "INSERT INTO checkin_events VALUES (1, 1700000000000, 0, 0);");
    assert_int_equal(store_long(earlier, CHECKIN_RELATIONS), 3);
    assert_int_equal(store_long(earlier, CHECKIN_DOOR_COLUMNS), 0);

    struct gal_options ro = {.read_only = 1};
    EXPECT_OK(gal_open(earlier, &ro, &f->g));
    struct gal_checkin *list = NULL;
    struct gal_checkin_summary s;
    assert_int_equal(list_all(f->g, "ev", &list, &s), 1);
    assert_string_equal(list[0].subject_id, "ann");
    expect_doors(&list[0], "", "");
    gal_checkin_list_free(list, 1);
    gal_close(f->g);
    f->g = NULL;
    assert_int_equal(store_long(earlier, CHECKIN_DOOR_COLUMNS), 0); /* read-only: untouched */

    EXPECT_OK(gal_open(earlier, NULL, &f->g));
    assert_int_equal(store_long(earlier, STORE_VERSION), 1);
    assert_int_equal(store_long(earlier, CHECKIN_DOOR_COLUMNS), 2);
    struct gal_checkin r;
    assert_int_equal(arrive_at(f->g, "ann", "B", T0 + 60000, &r), GAL_CHECKIN_ALREADY_CHECKED_IN);
    assert_int_equal(r.arrivals, 2);
    expect_doors(&r, "", "B");
    gal_close(f->g);
    f->g = NULL;
#if STORE_IS_FILE
    long schema_cookie = store_long(earlier, "PRAGMA schema_version");
#endif
    EXPECT_OK(gal_open(earlier, NULL, &f->g));
#if STORE_IS_FILE
    assert_int_equal(store_long(earlier, "PRAGMA schema_version"), schema_cookie);
#endif
    assert_int_equal(list_all(f->g, "ev", &list, &s), 1);
    expect_doors(&list[0], "", "B");
    assert_int_equal(list[0].first_seen_ms, 1700000000000ll);
    gal_checkin_list_free(list, 1);
    expect_summary(&s, 1, 1, 0, 1700000000000ll);
    gal_close(f->g);
    f->g = NULL;
    EXPECT_OK(gal_open(f->db, NULL, &f->g));
}

static void test_schema_versions(void **state)
{
    struct fixture *f = *state;
    gal_close(f->g);
    f->g = NULL;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    int64_t version = 0;
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    version = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    assert_int_equal(version, 1);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    struct gal *g = NULL;
    EXPECT_RC(gal_open(f->db, NULL, &g), BASE_ERR_UNSUPPORTED);
    assert_non_null(strstr(base_error_message(), "99"));
    assert_null(g);

    /* Another application's SQLite file is refused, and not a database at all too. */
    char other[600];
    path_in(other, sizeof other, f->dir, "other.db");
    assert_int_equal(sqlite3_open(other, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db, "PRAGMA application_id = 42; CREATE TABLE t (x)", NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    EXPECT_RC(gal_open(other, NULL, &g), BASE_ERR_FORMAT);
    path_in(other, sizeof other, f->dir, "junk.db");
    FILE *out = fopen(other, "wb");
    for (int i = 0; i < 5000; i++)
        fputc(i * 7, out);
    fclose(out);
    EXPECT_RC(gal_open(other, NULL, &g), BASE_ERR_FORMAT);
    EXPECT_RC(gal_open("/nonexistent-dir/x.db", NULL, &g), BASE_ERR_IO);
    struct gal_options bad_kernels = {.kernels = "sse9"};
    EXPECT_RC(gal_open(f->db, &bad_kernels, &g), BASE_ERR_UNSUPPORTED);

    /* Back to version 1 so the teardown's close works on a sane gallery. */
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_exec(db, "PRAGMA user_version = 1", NULL, NULL, NULL);
    sqlite3_close(db);
    EXPECT_OK(gal_open(f->db, NULL, &f->g));
}

#ifndef TEST_STORE_NO_MAIN
int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_collections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subjects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_face_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_faces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_search_decisions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_import, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_rebuilds_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_log_follow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enrol_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enrol_race_one_subject, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkin_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkin_doors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkin_collection_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkin_two_doors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkin_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkin_schema_additive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkin_migration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkin_door_migration, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
