/*
 * The gallery at an event's scale (review of 2026-11-25): 20,000 subjects of one face each
 * through the library on a real SQLite file (the 100k figures measured through the service
 * are in docs/gallery.md, "At 100k faces"). Each case is what a team enrolling an attendee
 * list relies on: the per-request collection check costs no scan of the store, paging
 * through every subject while others are deleted neither repeats nor skips one, a deleted
 * face is gone from the next search, and an export imported into a fresh store answers every
 * search identically, and deleting the whole collection lets other writers in while it runs
 * and leaves nothing behind, even when cut short; the counts of subjects and faces, kept in
 * memory, agree with the store's rows after every kind of change, this process's and another
 * one's. About 7 s.
 */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/base.h"
#include "gallery/gallery.h"
#include "helpers.h"

#define DIM 128
#define N 20000
#define MODEL "faceapi-resnet-v1"

struct fixture {
    char *dir;
    char db[600];
    struct gal *g;
    float *emb; /* N x DIM: subject i's face */
    int64_t ids[N];
};

static void subject_name(char *out, size_t cap, int i)
{
    snprintf(out, cap, "p%06d", i);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->dir = make_tmpdir();
    path_in(f->db, sizeof f->db, f->dir, "vultus.db");
    EXPECT_OK(gal_open(f->db, &(struct gal_options){.durability = GAL_DURABLE_PROCESS}, &f->g));
    struct gal_collection_info info = collection_info("event", MODEL, DIM, GAL_DTYPE_INT8, 0.93f);
    EXPECT_OK(gal_collection_create(f->g, &info));
    f->emb = malloc((size_t)N * DIM * sizeof *f->emb);
    struct rng r = {42};
    static char names[N][16];
    static const char *ids[N];
    static struct gal_face_input in[N];
    for (int i = 0; i < N; i++) {
        subject_name(names[i], sizeof names[i], i);
        ids[i] = names[i];
        random_unit(&r, f->emb + (size_t)i * DIM, DIM);
        in[i] = face_input(names[i], MODEL, DIM, f->emb + (size_t)i * DIM);
    }
    EXPECT_OK(gal_subjects_add(f->g, "event", ids, NULL, N));
    EXPECT_OK(gal_faces_add(f->g, "event", in, N, f->ids));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    gal_close(f->g);
    free(f->emb);
    remove_tree(f->dir);
    free(f);
    return 0;
}

/* The check before every search and enrolment: the settings gal_collection_get gives, from
 * memory, kept current by writes of this handle and, when the collection is not held yet,
 * by a refresh (one another process has just created is found at once). */
static void test_settings_without_counts(void **state)
{
    struct fixture *f = *state;
    struct gal_collection_info got, want;
    EXPECT_OK(gal_collection_get(f->g, "event", &want));
    assert_int_equal(want.face_count, N);
    assert_int_equal(want.subject_count, N);
    EXPECT_OK(gal_collection_settings(f->g, "event", &got));
    assert_string_equal(got.name, want.name);
    assert_string_equal(got.model_id, want.model_id);
    assert_int_equal(got.dim, want.dim);
    assert_int_equal(got.dtype, want.dtype);
    assert_true(got.threshold == want.threshold);
    assert_int_equal(got.created_ms, 0);
    assert_int_equal(got.face_count, 0);
    assert_int_equal(got.subject_count, 0);

    EXPECT_OK(gal_collection_set_threshold(f->g, "event", 0.5f));
    EXPECT_OK(gal_collection_settings(f->g, "event", &got));
    assert_true(got.threshold == 0.5f);
    EXPECT_RC(gal_collection_settings(f->g, "nothing", &got), BASE_ERR_NOT_FOUND);
    EXPECT_RC(gal_collection_settings(f->g, "a/b", &got), BASE_ERR_INVALID);

    /* Another handle on the file (the CLI beside the service) creates, changes, deletes. */
    struct gal *other = NULL;
    EXPECT_OK(gal_open(f->db, NULL, &other));
    struct gal_collection_info info = collection_info("late", MODEL, DIM, GAL_DTYPE_F16, 0.7f);
    EXPECT_OK(gal_collection_create(other, &info));
    EXPECT_OK(gal_collection_settings(f->g, "late", &got));
    assert_int_equal(got.dtype, GAL_DTYPE_F16);
    assert_true(got.threshold == 0.7f);
    EXPECT_OK(gal_collection_delete(other, "late"));
    EXPECT_OK(gal_refresh(f->g));
    EXPECT_RC(gal_collection_settings(f->g, "late", &got), BASE_ERR_NOT_FOUND);
    gal_close(other);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* gal_collection_get, gal_collection_list and the store's rows all say `subjects` and
 * `faces` for collection `name`. */
static void expect_counts(struct gal *g, const char *db_path, const char *name, uint64_t subjects,
                          uint64_t faces, int line)
{
    struct gal_collection_info info;
    EXPECT_OK(gal_collection_get(g, name, &info));
    uint64_t in_store_subjects = 0, in_store_faces = 0;
    assert_int_equal(store_counts(db_path, name, &in_store_subjects, &in_store_faces), 0);
    struct gal_collection_info *list = NULL;
    size_t n = 0;
    EXPECT_OK(gal_collection_list(g, &list, &n));
    uint64_t listed_subjects = UINT64_MAX, listed_faces = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(list[i - 1].name, list[i].name) >= 0)
            fail_msg("line %d: list not in name order: %s then %s", line, list[i - 1].name,
                     list[i].name);
        if (strcmp(list[i].name, name) == 0) {
            listed_subjects = list[i].subject_count;
            listed_faces = list[i].face_count;
        }
    }
    free(list);
    if (info.subject_count != subjects || info.face_count != faces || listed_subjects != subjects ||
        listed_faces != faces || in_store_subjects != subjects || in_store_faces != faces)
        fail_msg("line %d, %s: want %llu subjects / %llu faces; get %llu / %llu, list %llu / "
                 "%llu, store %llu / %llu",
                 line, name, (unsigned long long)subjects, (unsigned long long)faces,
                 (unsigned long long)info.subject_count, (unsigned long long)info.face_count,
                 (unsigned long long)listed_subjects, (unsigned long long)listed_faces,
                 (unsigned long long)in_store_subjects, (unsigned long long)in_store_faces);
}
#define EXPECT_COUNTS(g, db, name, subjects, faces)                                                \
    expect_counts(g, db, name, subjects, faces, __LINE__)

/* A second process on the same file (the CLI beside the service): opens the gallery, runs
 * `changes`, exits; 0 when every call succeeded. */
static void in_another_process(const char *db_path, const struct fixture *f,
                               int (*changes)(struct gal *g, const struct fixture *f))
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct gal *g = NULL;
        int rc = gal_open(db_path, NULL, &g);
        if (!rc) rc = changes(g, f);
        if (rc) fprintf(stderr, "the other process: %s\n", base_error_message());
        gal_close(g);
        _exit(rc ? 1 : 0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* Subject "z" with 3 faces, p000002 (1 face) deleted, the face of p000003 deleted, and a
 * collection "late" of 5 subjects, 4 of them with a face. */
static int other_changes(struct gal *g, const struct fixture *f)
{
    int rc = gal_subject_add(g, "event", "z", NULL);
    struct gal_face_input in[3];
    int64_t ids[3];
    for (int i = 0; i < 3; i++)
        in[i] = face_input("z", MODEL, DIM, f->emb + (size_t)(100 + i) * DIM);
    if (!rc) rc = gal_faces_add(g, "event", in, 3, ids);
    if (!rc) rc = gal_subject_delete(g, "event", "p000002");
    if (!rc) rc = gal_face_delete(g, "event", f->ids[3]);
    struct gal_collection_info info = collection_info("late", MODEL, DIM, GAL_DTYPE_INT8, 0.5f);
    if (!rc) rc = gal_collection_create(g, &info);
    static const char *const late[] = {"l1", "l2", "l3", "l4", "l5"};
    if (!rc) rc = gal_subjects_add(g, "late", late, NULL, 5);
    for (int i = 0; i < 4 && !rc; i++) {
        struct gal_face_input one = face_input(late[i], MODEL, DIM, f->emb + (size_t)i * DIM);
        rc = gal_face_add(g, "late", &one, &ids[0]);
    }
    return rc;
}

/* "late" re-typed (its index rebuilt from the store), one more subject. */
static int other_retype(struct gal *g, const struct fixture *f)
{
    (void)f;
    int rc = gal_collection_set_dtype(g, "late", GAL_DTYPE_F32);
    if (!rc) rc = gal_subject_add(g, "late", "l6", NULL);
    return rc;
}

static int other_delete(struct gal *g, const struct fixture *f)
{
    (void)f;
    return gal_collection_delete(g, "late");
}

/*
 * The counts of GET /v1/collections[/C] and /metrics come from memory (they were COUNT(*)
 * scans of the store: 23-74 ms per call at 100k faces): after every kind of change they
 * agree with the store's rows, subjects without faces included. Another process's changes
 * count once replayed (gal_refresh; the service runs it once a second); a collection that
 * process created is loaded from a snapshot that already holds the subjects added after its
 * creation, which the replay must not count a second time.
 */
static void test_counts_from_memory(void **state)
{
    struct fixture *f = *state;
    EXPECT_COUNTS(f->g, f->db, "event", N, N);
    EXPECT_OK(gal_subject_add(f->g, "event", "solo", NULL)); /* no face: a subject all the same */
    EXPECT_COUNTS(f->g, f->db, "event", N + 1, N);
    static const char *const abc[] = {"a", "b", "c"};
    EXPECT_OK(gal_subjects_add(f->g, "event", abc, NULL, 3));
    EXPECT_COUNTS(f->g, f->db, "event", N + 4, N);
    struct gal_face_input in[2] = {face_input("a", MODEL, DIM, f->emb),
                                   face_input("a", MODEL, DIM, f->emb + DIM)};
    int64_t ids[2];
    EXPECT_OK(gal_faces_add(f->g, "event", in, 2, ids));
    EXPECT_COUNTS(f->g, f->db, "event", N + 4, N + 2);
    EXPECT_OK(gal_face_delete(f->g, "event", f->ids[0])); /* p000000 stays, without a face */
    EXPECT_COUNTS(f->g, f->db, "event", N + 4, N + 1);
    EXPECT_OK(gal_subject_delete(f->g, "event", "a")); /* with its 2 faces */
    EXPECT_COUNTS(f->g, f->db, "event", N + 3, N - 1);
    EXPECT_OK(gal_subject_delete(f->g, "event", "p000001"));
    EXPECT_COUNTS(f->g, f->db, "event", N + 2, N - 2);
    EXPECT_RC(gal_subject_delete(f->g, "event", "p000001"), BASE_ERR_NOT_FOUND);
    EXPECT_RC(gal_subject_add(f->g, "event", "b", NULL), BASE_ERR_EXISTS);
    EXPECT_COUNTS(f->g, f->db, "event", N + 2, N - 2);

    in_another_process(f->db, f, other_changes);
    /* "late" is not held yet: looked for again after a refresh, which also replays the rest */
    EXPECT_COUNTS(f->g, f->db, "late", 5, 4);
    EXPECT_COUNTS(f->g, f->db, "event", N + 2, N - 1);
    in_another_process(f->db, f, other_retype);
    EXPECT_OK(gal_refresh(f->g));
    EXPECT_COUNTS(f->g, f->db, "late", 6, 4);
    struct gal_collection_info info;
    EXPECT_OK(gal_collection_get(f->g, "late", &info));
    assert_int_equal(info.dtype, GAL_DTYPE_F32);
    in_another_process(f->db, f, other_delete);
    EXPECT_OK(gal_refresh(f->g));
    EXPECT_RC(gal_collection_get(f->g, "late", &info), BASE_ERR_NOT_FOUND);

    /* A fresh handle counts from the store at open: the same figures. */
    struct gal *reopened = NULL;
    EXPECT_OK(gal_open(f->db, NULL, &reopened));
    EXPECT_COUNTS(reopened, f->db, "event", N + 2, N - 1);
    gal_close(reopened);

    /* A collection created here: created_ms is the store's, as gal_collection_get gave
     * before (read from the store), and it counts from zero. */
    int64_t before = wall_ms();
    info = collection_info("mine", MODEL, DIM, GAL_DTYPE_F16, 0.5f);
    info.subject_count = 7; /* a caller's leftovers are not counted */
    info.face_count = 9;
    EXPECT_OK(gal_collection_create(f->g, &info));
    EXPECT_COUNTS(f->g, f->db, "mine", 0, 0);
    EXPECT_OK(gal_collection_get(f->g, "mine", &info));
    assert_true(info.created_ms >= before && info.created_ms <= wall_ms());
    EXPECT_OK(gal_collection_delete(f->g, "event"));
    EXPECT_RC(gal_collection_get(f->g, "event", &info), BASE_ERR_NOT_FOUND);
    struct gal_collection_info *list = NULL;
    size_t n = 0;
    EXPECT_OK(gal_collection_list(f->g, &list, &n));
    assert_int_equal(n, 1);
    assert_string_equal(list[0].name, "mine");
    free(list);
}

/* Paging through every subject 1000 at a time while, between pages, the cursor's own subject,
 * subjects of the next page and one already seen are deleted: every subject alive at the
 * end is listed exactly once, in order, and no deleted one after its deletion. */
static void test_paging_with_deletes(void **state)
{
    struct fixture *f = *state;
    unsigned char *seen = calloc(N, 1), *deleted = calloc(N, 1);
    char after[GAL_ID_MAX + 1] = "", last[GAL_ID_MAX + 1] = "";
    size_t pages = 0, listed = 0;
    for (;;) {
        struct gal_subject_info *list = NULL;
        size_t count = 0;
        EXPECT_OK(gal_subject_list(f->g, "event", after, 1000, &list, &count));
        for (size_t i = 0; i < count; i++) {
            int n = atoi(list[i].id + 1);
            assert_true(strcmp(list[i].id, last) > 0); /* ordered, so no repeat */
            snprintf(last, sizeof last, "%s", list[i].id);
            assert_false(deleted[n]);
            assert_false(seen[n]);
            seen[n] = 1;
            listed++;
        }
        pages++;
        if (count < 1000) {
            gal_subject_list_free(list, count);
            break;
        }
        snprintf(after, sizeof after, "%s", list[count - 1].id);
        gal_subject_list_free(list, count);
        int cursor = atoi(after + 1);
        const int victims[] = {cursor, cursor + 1, cursor + 500, cursor - 10};
        for (size_t v = 0; v < sizeof victims / sizeof victims[0]; v++) {
            char id[16];
            if (victims[v] < 0 || victims[v] >= N || deleted[victims[v]]) continue;
            subject_name(id, sizeof id, victims[v]);
            EXPECT_OK(gal_subject_delete(f->g, "event", id));
            deleted[victims[v]] = 1;
        }
    }
    for (int i = 0; i < N; i++)
        if (!deleted[i] && !seen[i]) fail_msg("subject %d alive but never listed", i);
    assert_int_equal(pages, N / 1000);
    print_message("paged %zu subjects in %zu pages\n", listed, pages);
    free(seen);
    free(deleted);
}

static int64_t top1(struct gal *g, const char *collection, const float *q, char *subject)
{
    struct gal_search_request req = {
        .model_id = MODEL, .dim = DIM, .embeddings = q, .query_count = 1, .k = 1};
    struct gal_results *res = NULL;
    EXPECT_OK(gal_search(g, collection, &req, &res));
    int64_t id = res->queries[0].face_count ? res->queries[0].faces[0].face_id : 0;
    if (subject && res->queries[0].subject_count)
        snprintf(subject, GAL_ID_MAX + 1, "%s", res->queries[0].subjects[0].subject_id);
    gal_results_destroy(res);
    return id;
}

/* A deleted face is gone from the very next search, and its subject too when it was the
 * subject's only face (the subject itself stays, with no face). */
static void test_delete_face_at_once(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < N; i += N / 20) {
        const float *q = f->emb + (size_t)i * DIM;
        assert_int_equal(top1(f->g, "event", q, NULL), f->ids[i]);
        EXPECT_OK(gal_face_delete(f->g, "event", f->ids[i]));
        char subject[GAL_ID_MAX + 1] = "", want[16];
        assert_int_not_equal(top1(f->g, "event", q, subject), f->ids[i]);
        subject_name(want, sizeof want, i);
        assert_string_not_equal(subject, want);
    }
}

/* Export, import into a fresh store: the same subjects answer every search, with the same
 * similarities to the bit, k = 50 (face ids are new, so subjects are compared). */
static void test_export_import_same_answers(void **state)
{
    struct fixture *f = *state;
    char file[700], db2[700];
    path_in(file, sizeof file, f->dir, "event.vg");
    path_in(db2, sizeof db2, f->dir, "fresh.db");
    EXPECT_OK(gal_export(f->g, "event", file));
    struct gal *g2 = NULL;
    EXPECT_OK(gal_open(db2, &(struct gal_options){.durability = GAL_DURABLE_PROCESS}, &g2));
    EXPECT_OK(gal_import(g2, file, NULL));
    struct gal_collection_info a, b;
    EXPECT_OK(gal_collection_get(f->g, "event", &a));
    EXPECT_OK(gal_collection_get(g2, "event", &b));
    assert_int_equal(a.face_count, b.face_count);
    assert_int_equal(a.subject_count, b.subject_count);
    struct rng r = {7};
    float q[16 * DIM];
    for (int i = 0; i < 16; i++) {
        if (i < 8)
            memcpy(q + i * DIM, f->emb + (size_t)(i * 997 + 3) * DIM, DIM * sizeof *q);
        else
            random_unit(&r, q + i * DIM, DIM);
    }
    struct gal_search_request req = {
        .model_id = MODEL, .dim = DIM, .embeddings = q, .query_count = 16, .k = 50};
    struct gal_results *ra = NULL, *rb = NULL;
    EXPECT_OK(gal_search(f->g, "event", &req, &ra));
    EXPECT_OK(gal_search(g2, "event", &req, &rb));
    for (int i = 0; i < 16; i++) {
        const struct gal_query_result *x = &ra->queries[i], *y = &rb->queries[i];
        assert_int_equal(x->subject_count, y->subject_count);
        assert_int_equal(x->face_count, y->face_count);
        for (size_t j = 0; j < x->subject_count; j++) {
            assert_string_equal(x->subjects[j].subject_id, y->subjects[j].subject_id);
            assert_true(x->subjects[j].similarity == y->subjects[j].similarity);
            assert_int_equal(x->subjects[j].decision, y->subjects[j].decision);
        }
    }
    gal_results_destroy(ra);
    gal_results_destroy(rb);
    gal_close(g2);
}

struct writer {
    struct gal *g;
    const float *e;
    atomic_int deleting; /* set by the main thread for the length of its delete call */
    atomic_int stop;
    int during; /* enrolments that returned while the delete was in progress */
    int total;
};

static void *enrol_loop(void *arg)
{
    struct writer *w = arg;
    struct gal_face_input in = face_input("x", MODEL, DIM, w->e);
    while (!atomic_load(&w->stop)) {
        int64_t id;
        EXPECT_OK(gal_face_add(w->g, "other", &in, &id));
        w->total++;
        if (atomic_load(&w->deleting)) w->during++;
        /* A pause between enrolments, as clients leave: the mutexes are not fair, and a
         * writer retaking them at once would keep the delete from starting at all. */
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    return NULL;
}

/* Deleting a collection of 20k faces lets enrolments into another collection through while
 * it runs: before, the delete held the gallery's write mutex and the store's one writer for
 * the whole cascade (8.5 s at 100k through the service), so at most the enrolment already
 * under way when it started (and one more while it waited for the mutex) finished meanwhile.
 * Afterwards nothing of it is left: not listed, not found, its rows gone, its name free, the file
 * consistent. */
static void test_delete_lets_writers_in(void **state)
{
    struct fixture *f = *state;
    struct gal_collection_info info = collection_info("other", MODEL, DIM, GAL_DTYPE_INT8, 0.5f);
    EXPECT_OK(gal_collection_create(f->g, &info));
    EXPECT_OK(gal_subject_add(f->g, "other", "x", NULL));
    struct writer w = {.g = f->g, .e = f->emb};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, enrol_loop, &w), 0);
    while (w.total < 3) /* the writer is running (a racy read is fine for a start signal) */
        sched_yield();
    atomic_store(&w.deleting, 1);
    EXPECT_OK(gal_collection_delete(f->g, "event"));
    atomic_store(&w.deleting, 0);
    atomic_store(&w.stop, 1);
    pthread_join(t, NULL);
    print_message("enrolments into another collection during the delete: %d\n", w.during);
    assert_true(w.during >= 5);

    struct gal_collection_info got;
    EXPECT_RC(gal_collection_get(f->g, "event", &got), BASE_ERR_NOT_FOUND);
    struct gal_collection_info *list = NULL;
    size_t n = 0;
    EXPECT_OK(gal_collection_list(f->g, &list, &n));
    assert_int_equal(n, 1);
    assert_string_equal(list[0].name, "other");
    assert_int_equal(list[0].face_count, (uint64_t)w.total);
    free(list);
    EXPECT_OK(gal_check(f->g));
    /* The name is free again, for a new and empty collection. */
    info = collection_info("event", MODEL, DIM, GAL_DTYPE_F32, 0.5f);
    EXPECT_OK(gal_collection_create(f->g, &info));
    EXPECT_OK(gal_collection_get(f->g, "event", &got));
    assert_int_equal(got.face_count, 0);
    assert_int_equal(got.subject_count, 0);
    /* No row of the old one is left in the file. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT (SELECT COUNT(*) FROM faces), (SELECT COUNT(*) "
                                        "FROM subjects), (SELECT COUNT(*) FROM collections)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), w.total);
    assert_int_equal(sqlite3_column_int(st, 1), 1);
    assert_int_equal(sqlite3_column_int(st, 2), 2);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* A delete cut short after the collection was hidden (a crash during its purge, made here by
 * hiding it as the delete does and closing): the collection is gone for a reopened gallery
 * and another handle alike, and the next open purges its rows. */
static void test_delete_cut_short(void **state)
{
    struct fixture *f = *state;
    gal_close(f->g);
    f->g = NULL;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "UPDATE collections SET name = '/deleted/' || id "
                                  "WHERE name = 'event'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    EXPECT_OK(gal_open(f->db, NULL, &f->g));
    struct gal_collection_info got;
    EXPECT_RC(gal_collection_get(f->g, "event", &got), BASE_ERR_NOT_FOUND);
    struct gal_collection_info *list = NULL;
    size_t n = 5;
    EXPECT_OK(gal_collection_list(f->g, &list, &n));
    assert_int_equal(n, 0);
    free(list);
    EXPECT_OK(gal_check(f->g));
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT (SELECT COUNT(*) FROM faces) + (SELECT COUNT(*) "
                                        "FROM subjects) + (SELECT COUNT(*) FROM collections)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_settings_without_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paging_with_deletes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_face_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_import_same_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_lets_writers_in, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_cut_short, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counts_from_memory, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
