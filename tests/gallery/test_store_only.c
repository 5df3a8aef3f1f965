/*
 * gal_options.store_only (gallery.h): the store opened, created and migrated, with no
 * collection in memory, for `vultus keys`. What it answers comes from the store, counts
 * included; what needs the in-memory index is refused (BASE_ERR_UNSUPPORTED), never answered
 * as if the gallery were empty.
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

    /* No index: searches, reads through it and writes are refused, not answered empty. */
    struct gal_search_request req = {
        .model_id = "m", .dim = DIM, .embeddings = e, .query_count = 1, .k = 1};
    struct gal_results *res = NULL;
    assert_int_equal(gal_search(g, "people", &req, &res), BASE_ERR_UNSUPPORTED);
    assert_null(res);
    assert_int_equal(gal_subject_add(g, "people", "new", NULL), BASE_ERR_UNSUPPORTED);
    assert_int_equal(gal_collection_delete(g, "people"), BASE_ERR_UNSUPPORTED);
    assert_int_equal(gal_refresh(g), BASE_ERR_UNSUPPORTED);
    struct gal_index_stats stats;
    assert_int_equal(gal_index_stats(g, "people", &stats), BASE_ERR_UNSUPPORTED);
    char out[300];
    snprintf(out, sizeof out, "%s/people.vgal", dir);
    assert_int_equal(gal_export(g, "people", out), BASE_ERR_UNSUPPORTED);
    gal_close(g);

    /* Nothing was changed: a full open finds the five faces. */
    assert_int_equal(gal_open(db, NULL, &g), 0);
    assert_int_equal(gal_collection_get(g, "people", &got), 0);
    assert_int_equal(got.face_count, 5);
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
