/*
 * The index against a brute-force f64 reference on random unit vectors:
 *   - f32 storage: identical top-k faces and subjects, with every kernel variant;
 *   - f16 storage: recall@1 >= 0.995 and recall@10 >= 0.99 from the index alone;
 *   - int8 storage: the index alone ranks the exact top-k inside its candidate list (what
 *     the gallery re-scores), and through the gallery (with exact re-scoring) recall@1 >=
 *     0.995 and recall@10 >= 0.99 with exact similarities;
 *   - deletes, compaction, out-of-order and repeated adds, subject removal.
 * Queries are independent random unit vectors: the hardest case for ranking, since their
 * best matches are separated by small gaps (~0.01), unlike a real probe and its mate.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "base/base.h"
#include "gallery/index.h"
#include "helpers.h"

#define K 10

struct ref_hit {
    double score;
    int64_t face_id;
    int64_t subject;
};

static int ref_better(const struct ref_hit *a, const struct ref_hit *b)
{
    return a->score > b->score || (a->score == b->score && a->face_id < b->face_id);
}

/* The exact top-k faces (by_subject 0) or subjects (1) over live rows, best first. */
static size_t reference(const float *x, const int64_t *ids, const int64_t *subjects,
                        const char *live, size_t n, size_t dim, const float *q, size_t k,
                        int by_subject, struct ref_hit *out)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (live && !live[i]) continue;
        double s = 0;
        for (size_t j = 0; j < dim; j++)
            s += (double)q[j] * x[i * dim + j];
        struct ref_hit h = {s, ids[i], subjects[i]};
        if (by_subject) {
            size_t t = 0;
            while (t < m && out[t].subject != h.subject)
                t++;
            if (t < m) {
                if (!ref_better(&h, &out[t])) continue;
                memmove(out + t, out + t + 1, (m - t - 1) * sizeof *out); /* re-insert below */
                m--;
            }
        }
        size_t p = m < k ? m : k;
        while (p > 0 && ref_better(&h, &out[p - 1]))
            p--;
        if (p >= k) continue;
        size_t end = m < k ? m : k - 1;
        memmove(out + p + 1, out + p, (end - p) * sizeof *out);
        out[p] = h;
        if (m < k) m++;
    }
    return m;
}

struct dataset {
    size_t n, dim;
    float *x;
    int64_t *ids, *subjects;
};

static struct dataset make_dataset(struct rng *r, size_t n, size_t dim, size_t subjects)
{
    struct dataset d = {n, dim, malloc(sizeof(float) * n * dim), malloc(sizeof(int64_t) * n),
                        malloc(sizeof(int64_t) * n)};
    for (size_t i = 0; i < n; i++) {
        random_unit(r, d.x + i * dim, dim);
        d.ids[i] = (int64_t)(i * 3 + 1); /* gaps, like a store after deletes */
        d.subjects[i] = (int64_t)(rng_u64(r) % subjects) + 1;
    }
    return d;
}

static void free_dataset(struct dataset *d)
{
    free(d->x);
    free(d->ids);
    free(d->subjects);
}

static struct gal_index *build(const struct dataset *d, enum gal_dtype dtype,
                               const struct gal_kernels *kernels)
{
    struct gal_index *index;
    EXPECT_OK(gal_index_create((uint32_t)d->dim, dtype, kernels, &index));
    for (size_t i = 0; i < d->n; i++)
        EXPECT_OK(gal_index_add(index, d->ids[i], d->subjects[i], d->x + i * d->dim));
    return index;
}

/* Runs `nq` queries through the index (in groups of up to 16 per pass); out: nq x kc. */
static void search_all(struct gal_index *index, const float *q, size_t nq, size_t dim, size_t kc,
                       struct gal_candidate *faces, struct gal_candidate *subjects)
{
    size_t fn[16], sn[16];
    for (size_t s = 0; s < nq; s += 16) {
        size_t m = nq - s < 16 ? nq - s : 16;
        EXPECT_OK(gal_index_search(index, q + s * dim, m, kc, kc, faces + s * kc, fn,
                                   subjects + s * kc, sn));
        for (size_t i = 0; i < m; i++) {
            for (size_t j = fn[i]; j < kc; j++)
                faces[(s + i) * kc + j].face_id = -1;
            for (size_t j = sn[i]; j < kc; j++)
                subjects[(s + i) * kc + j].face_id = -1;
        }
    }
}

static void test_f32_identical(void **state)
{
    (void)state;
    const struct gal_kernels *all[] = {&gal_kernels_scalar, &gal_kernels_avx2, &gal_kernels_avx512,
                                       &gal_kernels_avx512vnni};
    const size_t dims[] = {17, 128, 192};
    struct rng r = {11};
    enum { N = 6000, Q = 48 };
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        size_t dim = dims[di];
        struct dataset d = make_dataset(&r, N, dim, 700);
        float *q = malloc(sizeof(float) * Q * dim);
        for (size_t i = 0; i < Q; i++)
            random_unit(&r, q + i * dim, dim);
        struct ref_hit ref_f[K], ref_s[K];
        struct gal_candidate faces[Q * K], subjects[Q * K];
        for (size_t kv = 0; kv < sizeof all / sizeof all[0]; kv++) {
            if (!gal_kernels_find(all[kv]->name)) continue;
            struct gal_index *index = build(&d, GAL_DTYPE_F32, all[kv]);
            search_all(index, q, Q, dim, K, faces, subjects);
            for (size_t i = 0; i < Q; i++) {
                size_t nf =
                    reference(d.x, d.ids, d.subjects, NULL, N, dim, q + i * dim, K, 0, ref_f);
                size_t ns =
                    reference(d.x, d.ids, d.subjects, NULL, N, dim, q + i * dim, K, 1, ref_s);
                assert_int_equal(nf, K);
                assert_int_equal(ns, K);
                for (size_t j = 0; j < K; j++) {
                    const struct gal_candidate *f = &faces[i * K + j], *s = &subjects[i * K + j];
                    if (f->face_id != ref_f[j].face_id || fabs(f->score - ref_f[j].score) > 1e-5)
                        fail_msg("%s dim %zu query %zu rank %zu: face %lld (%.7f), reference %lld "
                                 "(%.7f)",
                                 all[kv]->name, dim, i, j, (long long)f->face_id, (double)f->score,
                                 (long long)ref_f[j].face_id, ref_f[j].score);
                    if (s->subject_rowid != ref_s[j].subject || s->face_id != ref_s[j].face_id)
                        fail_msg("%s dim %zu query %zu subject rank %zu: %lld, reference %lld",
                                 all[kv]->name, dim, i, j, (long long)s->subject_rowid,
                                 (long long)ref_s[j].subject);
                }
            }
            gal_index_destroy(index);
        }
        free(q);
        free_dataset(&d);
    }
}

struct recall {
    double at1, at10, contained; /* contained: exact top-10 within the candidate list */
};

static struct recall measure(const struct dataset *d, struct gal_index *index, const float *q,
                             size_t nq, size_t kc)
{
    struct gal_candidate *faces = malloc(sizeof *faces * nq * kc);
    struct gal_candidate *subjects = malloc(sizeof *subjects * nq * kc);
    search_all(index, q, nq, d->dim, kc, faces, subjects);
    struct recall rc = {0, 0, 0};
    for (size_t i = 0; i < nq; i++) {
        struct ref_hit ref[K];
        reference(d->x, d->ids, d->subjects, NULL, d->n, d->dim, q + i * d->dim, K, 0, ref);
        const struct gal_candidate *got = faces + i * kc;
        rc.at1 += got[0].face_id == ref[0].face_id;
        for (size_t a = 0; a < K; a++) {
            for (size_t b = 0; b < K; b++)
                rc.at10 += got[b].face_id == ref[a].face_id;
            for (size_t b = 0; b < kc; b++)
                rc.contained += got[b].face_id == ref[a].face_id;
        }
    }
    rc.at1 /= nq;
    rc.at10 /= nq * K;
    rc.contained /= nq * K;
    free(faces);
    free(subjects);
    return rc;
}

static void test_f16_and_int8_recall(void **state)
{
    (void)state;
    struct rng r = {12};
    enum { N = 20000, Q = 400, DIM = 128 };
    struct dataset d = make_dataset(&r, N, DIM, 5000);
    float *q = malloc(sizeof(float) * Q * DIM);
    for (size_t i = 0; i < Q; i++)
        random_unit(&r, q + i * DIM, DIM);

    struct gal_index *index = build(&d, GAL_DTYPE_F16, NULL);
    struct recall f16 = measure(&d, index, q, Q, K);
    gal_index_destroy(index);
    printf("# f16 index alone: recall@1 %.4f recall@10 %.4f\n", f16.at1, f16.at10);
    assert_true(f16.at1 >= 0.995);
    assert_true(f16.at10 >= 0.99);

    index = build(&d, GAL_DTYPE_INT8, NULL);
    struct recall i8 = measure(&d, index, q, Q, K);
    struct recall i8c = measure(&d, index, q, Q, 2 * K + 16);
    gal_index_destroy(index);
    printf("# int8 index alone: recall@1 %.4f recall@10 %.4f; exact top-10 within its top-36: "
           "%.5f\n",
           i8.at1, i8.at10, i8c.contained);
    /* Alone, int8 swaps near-ties (gaps ~1e-2, noise ~5e-4); the gallery re-scores 2k + 16. */
    assert_true(i8.at1 >= 0.95);
    assert_true(i8c.contained >= 0.999);
    free(q);
    free_dataset(&d);
}

static void test_gallery_recall(void **state)
{
    (void)state;
    struct rng r = {13};
    enum { N = 10000, Q = 400, DIM = 128 };
    char *dir = make_tmpdir(), db[512];
    struct gal *g;
    base_log_level = BASE_LOG_WARN;
    /* Durable against process crashes only: 30000 single-subject transactions, no fsyncs. */
    struct gal_options opts = {.durability = GAL_DURABLE_PROCESS};
    EXPECT_OK(gal_open(path_in(db, sizeof db, dir, "g.db"), &opts, &g));
    struct dataset d = make_dataset(&r, N, DIM, 1);
    float *q = malloc(sizeof(float) * Q * DIM);
    for (size_t i = 0; i < Q; i++)
        random_unit(&r, q + i * DIM, DIM);
    struct gal_face_input *in = malloc(sizeof *in * N);
    int64_t *ids = malloc(sizeof *ids * N);
    for (int dt = 0; dt < 3; dt++) {
        char name[16];
        snprintf(name, sizeof name, "%s", gal_dtype_name((enum gal_dtype)dt));
        struct gal_collection_info info = collection_info(name, "m", DIM, (enum gal_dtype)dt, 0.3f);
        EXPECT_OK(gal_collection_create(g, &info));
        /* One subject per face, so subject results can be checked against faces too. */
        static char subject_ids[N][12];
        for (size_t i = 0; i < N; i++) {
            snprintf(subject_ids[i], sizeof subject_ids[i], "s%zu", i);
            EXPECT_OK(gal_subject_add(g, name, subject_ids[i], NULL));
            in[i] = face_input(subject_ids[i], "m", DIM, d.x + i * DIM);
        }
        EXPECT_OK(gal_faces_add(g, name, in, N, ids));
        for (size_t i = 0; i < N; i++)
            d.ids[i] = ids[i];

        double at1 = 0, at10 = 0, max_error = 0;
        for (size_t s = 0; s < Q; s += 16) {
            struct gal_search_request req = {
                .model_id = "m", .dim = DIM, .embeddings = q + s * DIM, .query_count = 16, .k = K};
            struct gal_results *res;
            EXPECT_OK(gal_search(g, name, &req, &res));
            for (size_t i = 0; i < 16; i++) {
                struct ref_hit ref[K];
                reference(d.x, d.ids, d.subjects, NULL, N, DIM, q + (s + i) * DIM, K, 0, ref);
                const struct gal_query_result *qr = &res->queries[i];
                assert_int_equal(qr->face_count, K);
                assert_int_equal(qr->subject_count, K);
                at1 += qr->faces[0].face_id == ref[0].face_id;
                for (size_t a = 0; a < K; a++) {
                    for (size_t b = 0; b < K; b++) {
                        if (qr->faces[b].face_id != ref[a].face_id) continue;
                        at10 += 1;
                        double e = fabs(qr->faces[b].similarity - ref[a].score);
                        if (e > max_error) max_error = e;
                    }
                    /* One face per subject: subject results are the face results. */
                    assert_int_equal(qr->subjects[a].face_id, qr->faces[a].face_id);
                }
            }
            gal_results_destroy(res);
        }
        at1 /= Q;
        at10 /= Q * K;
        printf("# gallery %s: recall@1 %.4f recall@10 %.4f, similarity error <= %.2g\n", name, at1,
               at10, max_error);
        assert_true(at1 >= 0.995);
        assert_true(at10 >= 0.99);
        assert_true(max_error < 1e-6);
    }
    free(in);
    free(ids);
    free(q);
    free_dataset(&d);
    gal_close(g);
    remove_tree(dir);
}

static void test_deletes_and_order(void **state)
{
    (void)state;
    struct rng r = {14};
    enum { N = 5000, Q = 32, DIM = 96 };
    for (int dt = 0; dt < 3; dt++) {
        struct dataset d = make_dataset(&r, N, DIM, 400);
        char *live = calloc(N, 1);
        struct gal_index *index;
        EXPECT_OK(gal_index_create(DIM, (enum gal_dtype)dt, NULL, &index));
        /* Add in a shuffled order: most appends, many inserts in the middle. */
        size_t *order = malloc(sizeof *order * N);
        for (size_t i = 0; i < N; i++)
            order[i] = i;
        for (size_t i = N - 1; i > 0; i--) {
            size_t j = rng_u64(&r) % (i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        for (size_t t = 0; t < N; t++) {
            size_t i = order[t];
            EXPECT_OK(gal_index_add(index, d.ids[i], d.subjects[i], d.x + i * DIM));
            live[i] = 1;
            /* Now and then delete something already there. */
            if (rng_u64(&r) % 3 == 0) {
                size_t victim = order[rng_u64(&r) % (t + 1)];
                if (live[victim]) {
                    EXPECT_OK(gal_index_remove(index, d.ids[victim]));
                    live[victim] = 0;
                } else {
                    EXPECT_RC(gal_index_remove(index, d.ids[victim]), BASE_ERR_NOT_FOUND);
                }
            }
        }
        /* Re-adding present faces changes nothing; re-adding a deleted one revives it. */
        for (size_t i = 0; i < N; i += 7) {
            EXPECT_OK(gal_index_add(index, d.ids[i], d.subjects[i], d.x + i * DIM));
            live[i] = 1;
        }
        /* A subject goes. */
        int64_t gone = d.subjects[0];
        size_t removed = gal_index_remove_subject(index, gone), expect = 0;
        for (size_t i = 0; i < N; i++)
            if (live[i] && d.subjects[i] == gone) {
                live[i] = 0;
                expect++;
            }
        assert_int_equal(removed, expect);
        size_t n_live = 0;
        for (size_t i = 0; i < N; i++)
            n_live += live[i];
        struct gal_index_stats st;
        gal_index_get_stats(index, &st);
        assert_int_equal(st.faces, n_live);
        assert_true(st.rows < N); /* compaction ran */

        float q[Q * DIM];
        for (size_t i = 0; i < Q; i++)
            random_unit(&r, q + i * DIM, DIM);
        size_t kc = dt == GAL_DTYPE_F32 ? K : 2 * K + 16;
        struct gal_candidate faces[Q * (2 * K + 16)], subjects[Q * (2 * K + 16)];
        search_all(index, q, Q, DIM, kc, faces, subjects);
        for (size_t i = 0; i < Q; i++) {
            struct ref_hit ref[K];
            reference(d.x, d.ids, d.subjects, live, N, DIM, q + i * DIM, K, 0, ref);
            for (size_t a = 0; a < K; a++) {
                int found = 0;
                for (size_t b = 0; b < kc; b++)
                    found |= faces[i * kc + b].face_id == ref[a].face_id;
                if (dt == GAL_DTYPE_F32) found = faces[i * kc + a].face_id == ref[a].face_id;
                if (!found)
                    fail_msg("dtype %d query %zu: reference rank %zu (face %lld) missing", dt, i, a,
                             (long long)ref[a].face_id);
            }
            for (size_t b = 0; b < kc; b++) {
                int64_t id = faces[i * kc + b].face_id;
                if (id < 0) continue;
                size_t pos = (size_t)(id - 1) / 3; /* ids are 3i + 1 */
                if (!live[pos]) fail_msg("dtype %d: deleted face %lld returned", dt, (long long)id);
            }
        }
        gal_index_destroy(index);
        free(order);
        free(live);
        free_dataset(&d);
    }
}

static void test_empty_and_small(void **state)
{
    (void)state;
    struct gal_index *index;
    EXPECT_OK(gal_index_create(5, GAL_DTYPE_INT8, NULL, &index));
    float q[5] = {1, 0, 0, 0, 0};
    struct gal_candidate f[3], s[3];
    size_t fn, sn;
    EXPECT_OK(gal_index_search(index, q, 1, 3, 3, f, &fn, s, &sn));
    assert_int_equal(fn, 0);
    assert_int_equal(sn, 0);
    float x[5] = {0.6f, 0.8f, 0, 0, 0};
    EXPECT_OK(gal_index_add(index, 10, 1, x));
    EXPECT_OK(gal_index_add(index, 11, 1, q));
    EXPECT_OK(gal_index_search(index, q, 1, 3, 3, f, &fn, s, &sn));
    assert_int_equal(fn, 2);
    assert_int_equal(f[0].face_id, 11);
    assert_int_equal(f[1].face_id, 10);
    assert_int_equal(sn, 1);
    assert_int_equal(s[0].face_id, 11);
    EXPECT_RC(gal_index_add(index, 0, 1, x), BASE_ERR_INVALID);
    EXPECT_RC(gal_index_search(index, q, 0, 3, 3, f, &fn, s, &sn), BASE_ERR_INVALID);
    gal_index_destroy(index);
    EXPECT_RC(gal_index_create(0, GAL_DTYPE_F32, NULL, &index), BASE_ERR_INVALID);
    EXPECT_RC(gal_index_create(GAL_DIM_MAX + 1, GAL_DTYPE_F32, NULL, &index), BASE_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_and_small),     cmocka_unit_test(test_f32_identical),
        cmocka_unit_test(test_f16_and_int8_recall), cmocka_unit_test(test_deletes_and_order),
        cmocka_unit_test(test_gallery_recall),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
