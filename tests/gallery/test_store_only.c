/*
 * gal_options.store_only (gallery.h): the store opened, created and migrated, with no
 * collection in memory, for `vultus keys` and the command line's gallery subcommands and
 * enroll. What it answers comes from the store, counts included, and its writes go to the
 * store; what needs the in-memory index is refused (BASE_ERR_UNSUPPORTED), never answered as
 * if the gallery were empty.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "base/base.h"
#include "helpers.h"

#define DIM 16

static void test_store_only_reads_the_store(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    char db[256];
    snprintf(db, sizeof db, "%s/vultus.db", dir);
    struct gal *g = NULL;
    assert_int_equal(gal_open(db, NULL, &g), 0);
    struct gal_collection_info info = {
        .name = "people", .model_id = "m", .dim = DIM, .threshold = 0.5f};
    assert_int_equal(gal_collection_create(g, &info), 0);
    snprintf(info.name, sizeof info.name, "empty");
    assert_int_equal(gal_collection_create(g, &info), 0);
    struct rng r = {7};
    float e[DIM];
    for (int i = 0; i < 5; i++) {
        char subject[16];
        snprintf(subject, sizeof subject, "s%d", i);
        assert_int_equal(gal_subject_add(g, "people", subject, NULL), 0);
        random_unit(&r, e, DIM);
        struct gal_face_input face = {
            .subject_id = subject, .model_id = "m", .dim = DIM, .embedding = e, .quality = 1};
        int64_t id;
        assert_int_equal(gal_face_add(g, "people", &face, &id), 0);
    }
    gal_close(g);

    assert_int_equal(gal_open(db, &(struct gal_options){.store_only = 1}, &g), 0);
    struct gal_collection_info got;
    assert_int_equal(gal_collection_get(g, "people", &got), 0);
    assert_int_equal(got.dim, DIM);
    assert_int_equal(got.subject_count, 5);
    assert_int_equal(got.face_count, 5);
    assert_int_equal(gal_collection_settings(g, "empty", &got), 0);
    assert_string_equal(got.model_id, "m");
    assert_int_equal(gal_collection_get(g, "nope", &got), BASE_ERR_NOT_FOUND);
    assert_int_equal(gal_collection_get(g, "a b", &got), BASE_ERR_INVALID);
    struct gal_collection_info *list = NULL;
    size_t n = 0;
    assert_int_equal(gal_collection_list(g, &list, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].name, "empty"); /* by name */
    assert_string_equal(list[1].name, "people");
    assert_int_equal(list[1].face_count, 5);
    free(list);
    assert_int_equal(gal_check(g), 0);

    /* Subjects and faces are read from the store. */
    struct gal_subject_info *subjects = NULL;
    assert_int_equal(gal_subject_list(g, "people", "", 10, &subjects, &n), 0);
    assert_int_equal(n, 5);
    assert_string_equal(subjects[0].id, "s0");
    gal_subject_list_free(subjects, n);
    int64_t *ids = NULL;
    assert_int_equal(gal_face_list(g, "people", "s1", &ids, &n), 0);
    assert_int_equal(n, 1);
    struct gal_face_record rec;
    assert_int_equal(gal_face_get(g, "people", ids[0], &rec), 0);
    assert_string_equal(rec.subject_id, "s1");
    gal_face_record_deinit(&rec);
    free(ids);
    assert_int_equal(gal_face_list(g, "nope", "s1", &ids, &n), BASE_ERR_NOT_FOUND);

    /* No index: searches, refreshes and index figures are refused, not answered empty. */
    struct gal_search_request req = {
        .model_id = "m", .dim = DIM, .embeddings = e, .query_count = 1, .k = 1};
    struct gal_results *res = NULL;
    assert_int_equal(gal_search(g, "people", &req, &res), BASE_ERR_UNSUPPORTED);
    assert_null(res);
    assert_int_equal(gal_refresh(g), BASE_ERR_UNSUPPORTED);
    struct gal_index_stats stats;
    assert_int_equal(gal_index_stats(g, "people", &stats), BASE_ERR_UNSUPPORTED);

    /* Writes go to the store (the command line's gallery subcommands and enroll): a subject
     * and its face, a face and a subject deleted, a collection created and deleted, an
     * export and its import; a collection that is not there is still "does not exist". */
    assert_int_equal(gal_subject_add(g, "people", "new", NULL), 0);
    assert_int_equal(gal_subject_add(g, "people", "new", NULL), BASE_ERR_EXISTS);
    random_unit(&r, e, DIM);
    float added[DIM];
    memcpy(added, e, sizeof added);
    struct gal_face_input face = {
        .subject_id = "new", .model_id = "m", .dim = DIM, .embedding = e, .quality = 1};
    int64_t new_face = 0;
    assert_int_equal(gal_face_add(g, "people", &face, &new_face), 0);
    assert_true(new_face > 5);
    face.model_id = "other";
    assert_int_equal(gal_face_add(g, "people", &face, &new_face), BASE_ERR_INVALID);
    assert_int_equal(gal_subject_add(g, "nope", "x", NULL), BASE_ERR_NOT_FOUND);
    assert_int_equal(gal_subject_delete(g, "people", "s0"), 0);
    assert_int_equal(gal_face_delete(g, "people", 2), 0);
    assert_int_equal(gal_face_delete(g, "people", 2), BASE_ERR_NOT_FOUND);
    assert_int_equal(gal_collection_get(g, "people", &got), 0);
    assert_int_equal(got.subject_count, 5); /* s0..s4 + new - s0 */
    assert_int_equal(got.face_count, 4);    /* 5 + 1 - s0's - face 2 */
    assert_int_equal(gal_collection_delete(g, "empty"), 0);
    assert_int_equal(gal_collection_get(g, "empty", &got), BASE_ERR_NOT_FOUND);
    snprintf(info.name, sizeof info.name, "people");
    assert_int_equal(gal_collection_create(g, &info), BASE_ERR_EXISTS);
    char out[300];
    snprintf(out, sizeof out, "%s/people.vgal", dir);
    assert_int_equal(gal_export(g, "people", out), 0);
    assert_int_equal(gal_import(g, out, "copy"), 0);
    assert_int_equal(gal_import(g, out, "copy"), BASE_ERR_EXISTS);
    assert_int_equal(gal_collection_get(g, "copy", &got), 0);
    assert_int_equal(got.face_count, 4);
    gal_close(g);

    /* A full open finds what the store-only one wrote, and searches it. */
    assert_int_equal(gal_open(db, NULL, &g), 0);
    assert_int_equal(gal_collection_get(g, "people", &got), 0);
    assert_int_equal(got.face_count, 4);
    assert_int_equal(got.subject_count, 5);
    assert_int_equal(gal_collection_get(g, "copy", &got), 0);
    assert_int_equal(got.face_count, 4);
    assert_int_equal(gal_collection_get(g, "empty", &got), BASE_ERR_NOT_FOUND);
    struct gal_index_stats full;
    assert_int_equal(gal_index_stats(g, "people", &full), 0);
    assert_int_equal(full.faces, 4);
    req.embeddings = added; /* the face the store-only gallery enrolled is found */
    assert_int_equal(gal_search(g, "people", &req, &res), 0);
    assert_int_equal(res->queries[0].subject_count, 1);
    assert_string_equal(res->queries[0].subjects[0].subject_id, "new");
    gal_results_destroy(res);
    gal_close(g);
    remove_tree(dir);
}

static void test_store_only_creates_the_store(void **state)
{
    (void)state;
    /* As a full open: a missing store is created with the current schema, which a full open
     * then takes as it is. */
    char *dir = make_tmpdir();
    char db[256];
    snprintf(db, sizeof db, "%s/vultus.db", dir);
    struct gal *g = NULL;
    assert_int_equal(gal_open(db, &(struct gal_options){.store_only = 1}, &g), 0);
    struct gal_collection_info *list = NULL;
    size_t n = 1;
    assert_int_equal(gal_collection_list(g, &list, &n), 0);
    assert_int_equal(n, 0);
    free(list);
    gal_close(g);
    assert_int_equal(access(db, F_OK), 0);
    assert_int_equal(gal_open(db, NULL, &g), 0);
    gal_close(g);
    remove_tree(dir);
}

int main(void)
{
    base_log_level = BASE_LOG_WARN;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_only_reads_the_store),
        cmocka_unit_test(test_store_only_creates_the_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
