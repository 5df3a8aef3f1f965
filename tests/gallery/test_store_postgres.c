/*
 * The gallery with its PostgreSQL store, on a real throw-away server (tools/pg-temp: its own
 * cluster in a temporary folder, on a Unix socket there; stopped and removed at the end, and
 * by a watchdog if this program dies). Skips when no PostgreSQL server binaries are installed.
 *
 *   - the contract tests of test_store.c, included and run on a new database each: round
 *     trips, bad input, search decisions, export/import, reopening, following the change log,
 *     read-only (the SQLite-only ones - file size limit, SQLite schema versions - are left out);
 *   - embeddings, boxes and qualities read back bit-identical to the SQLite store's;
 *   - schema: a newer version is refused, another application's tables are refused, several
 *     openers at once create the schema once;
 *   - URLs: a malformed one, an unreachable server, a missing database: clear errors that never
 *     show the password;
 *   - read-your-writes: a second handle (another replica) finds a face at once, no refresh;
 *   - writers on several handles at once: the change log numbers commits in commit order, so a
 *     follower that replays it incrementally ends with exactly the faces a fresh load sees;
 *   - a connection killed by the server is reconnected once, and the write goes through;
 *   - VULTUS_STORE_TIMEOUT_MS: a malformed value is refused at open, naming the variable;
 *     each session gets the server-side limits derived from it unless set elsewhere, and a
 *     write cut off behind a partition (a frozen proxy) releases its lock on the server, and a
 *     connection made again mid-call waits for its session's set-up at most to the call's
 *     deadline.
 */
#define TEST_STORE_NO_MAIN 1
#define TEST_STORE_POSTGRES 1
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h> /* before client.h: its cmocka helpers (tc_pg_proxy) */

#include "http/client.h"
#include "test_store.c"

#include <libpq-fe.h>
#include <pthread.h>

#include "gallery/store.h"

static char pg_dir[128]; /* the cluster's folder (its socket is there) */
static char pg_url[400]; /* the maintenance database */
static int pg_databases; /* databases created so far */

static void postgres_url(char *url, size_t size, const char *dbname)
{
    snprintf(url, size, "postgresql://postgres@/%s?host=%s", dbname, pg_dir);
}

/* The database name in a URL of postgres_url: "postgresql://postgres@/NAME?host=DIR". */
static void db_name(const char *url, char *out, size_t cap)
{
    const char *name = strstr(url, "@/");
    assert_non_null(name);
    name += 2;
    snprintf(out, cap, "%.*s", (int)strcspn(name, "?"), name);
}

static void admin_exec(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) fail_msg("connect %s: %s", url, PQerrorMessage(c));
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

/* The first column of the first row of `sql` as a number. */
static long admin_long(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) fail_msg("connect %s: %s", url, PQerrorMessage(c));
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    long n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    return n;
}

static void postgres_refuse_faces(const char *url, int refuse)
{
    if (refuse)
        admin_exec(url, "CREATE FUNCTION vultus_test_full() RETURNS trigger LANGUAGE plpgsql AS "
                        "$$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on "
                        "device' USING ERRCODE = 'disk_full'; END $$; "
                        "CREATE TRIGGER vultus_test_full BEFORE INSERT ON faces FOR EACH ROW "
                        "EXECUTE FUNCTION vultus_test_full()");
    else
        admin_exec(url, "DROP TRIGGER vultus_test_full ON faces; DROP FUNCTION vultus_test_full()");
}

static void new_postgres_database(char *url, size_t size)
{
    char name[32], sql[64];
    snprintf(name, sizeof name, "t%d", ++pg_databases);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    admin_exec(pg_url, sql);
    postgres_url(url, size, name);
}

/* Starts the server; leaves pg_url empty (tests skip) when PostgreSQL is not installed. */
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

/* ---- tests of PostgreSQL's own --------------------------------------------------------- */

/* The same faces through both stores read back identically: exact f32, box, quality. */
static void test_pg_same_as_sqlite(void **state)
{
    struct fixture *f = *state;
    char file[600];
    path_in(file, sizeof file, f->dir, "twin.db");
    struct gal *twin;
    EXPECT_OK(gal_open(file, NULL, &twin));
    struct gal *both[2] = {f->g, twin};
    struct rng r = {11};
    enum { N = 40 };
    static float x[N * DIM];
    struct gal_face_input in[N];
    int64_t ids[2][N];
    static uint8_t jpeg[3000];
    fake_jpeg(jpeg, sizeof jpeg, 3);
    for (int i = 0; i < N; i++) {
        random_unit(&r, x + i * DIM, DIM);
        for (int d = 0; d < DIM; d++) /* tiny and huge components: not only "nice" floats */
            x[i * DIM + d] *= (d % 7 == 0) ? 1e-30f : (d % 11 == 0) ? 3e3f : 1.0f;
        in[i] = face_input(i % 2 ? "b" : "a", MODEL, DIM, x + i * DIM);
        in[i].box[0] = 0.1f * (float)i + 1e-7f;
        in[i].quality = 1.0f / (float)(i + 3);
        in[i].image_hash = "sha256:00ff";
        if (i % 3 == 0) {
            in[i].thumbnail = jpeg;
            in[i].thumbnail_len = sizeof jpeg - (size_t)i;
        }
    }
    for (int k = 0; k < 2; k++) {
        create(both[k], "c", GAL_DTYPE_F32, 0.5f);
        EXPECT_OK(gal_subject_add(both[k], "c", "a", "{\"n\":\"\\u00e9\"}"));
        EXPECT_OK(gal_subject_add(both[k], "c", "b", NULL));
        EXPECT_OK(gal_faces_add(both[k], "c", in, N, ids[k]));
    }
    for (int i = 0; i < N; i++) {
        struct gal_face_record a, b;
        EXPECT_OK(gal_face_get(f->g, "c", ids[0][i], &a));
        EXPECT_OK(gal_face_get(twin, "c", ids[1][i], &b));
        assert_memory_equal(a.embedding, b.embedding, DIM * sizeof(float));
        assert_memory_equal(a.box, b.box, sizeof a.box);
        assert_true(a.quality == b.quality);
        assert_string_equal(a.subject_id, b.subject_id);
        assert_string_equal(a.image_hash, b.image_hash);
        assert_int_equal(a.thumbnail_len, b.thumbnail_len);
        if (a.thumbnail_len) assert_memory_equal(a.thumbnail, b.thumbnail, a.thumbnail_len);
        gal_face_record_deinit(&a);
        gal_face_record_deinit(&b);
    }
    struct gal_subject_info sa, sb;
    EXPECT_OK(gal_subject_get(f->g, "c", "a", &sa));
    EXPECT_OK(gal_subject_get(twin, "c", "a", &sb));
    assert_string_equal(sa.metadata, sb.metadata);
    assert_int_equal(sa.face_count, N / 2);
    gal_subject_info_deinit(&sa);
    gal_subject_info_deinit(&sb);
    /* Same searches, same similarities to the bit. */
    struct gal_search_request req = {
        .model_id = MODEL, .dim = DIM, .embeddings = x, .query_count = 8, .k = 10};
    struct gal_results *ra, *rb;
    EXPECT_OK(gal_search(f->g, "c", &req, &ra));
    EXPECT_OK(gal_search(twin, "c", &req, &rb));
    for (int q = 0; q < 8; q++) {
        assert_int_equal(ra->queries[q].face_count, rb->queries[q].face_count);
        for (size_t j = 0; j < ra->queries[q].face_count; j++) {
            assert_true(ra->queries[q].faces[j].similarity == rb->queries[q].faces[j].similarity);
            assert_string_equal(ra->queries[q].faces[j].subject_id,
                                rb->queries[q].faces[j].subject_id);
        }
    }
    gal_results_destroy(ra);
    gal_results_destroy(rb);
    gal_close(twin);
}

static void test_pg_schema(void **state)
{
    struct fixture *f = *state;
    gal_close(f->g);
    f->g = NULL;
    struct gal *g = NULL;
    admin_exec(f->db, "UPDATE vultus_schema SET version = 99");
    EXPECT_RC(gal_open(f->db, NULL, &g), BASE_ERR_UNSUPPORTED);
    assert_non_null(strstr(base_error_message(), "99"));
    assert_null(g);
    admin_exec(f->db, "UPDATE vultus_schema SET version = 1");
    EXPECT_OK(gal_open(f->db, NULL, &f->g));

    /* Another application's database (tables of our names, no vultus_schema) is refused and
     * left alone. */
    char other[300];
    new_postgres_database(other, sizeof other);
    admin_exec(other, "CREATE TABLE faces (x integer)");
    EXPECT_RC(gal_open(other, NULL, &g), BASE_ERR_FORMAT);
    assert_non_null(strstr(base_error_message(), "another application"));

    /* A size limit is SQLite's only: refused, not ignored. */
    struct gal_options limited = {.max_store_bytes = 1 << 20};
    EXPECT_RC(gal_open(f->db, &limited, &g), BASE_ERR_UNSUPPORTED);
}

struct opener {
    const char *url;
    int rc;
};

static void *open_one(void *arg)
{
    struct opener *o = arg;
    struct gal *g = NULL;
    o->rc = gal_open(o->url, NULL, &g);
    if (!o->rc) {
        struct gal_collection_info info = collection_info("x", MODEL, DIM, GAL_DTYPE_F32, 0.5f);
        int rc = gal_collection_create(g, &info);
        if (rc != 0 && rc != BASE_ERR_EXISTS) o->rc = rc;
    }
    gal_close(g);
    return NULL;
}

/* Replicas starting at once on an empty database: one creates the schema, all open. */
static void test_pg_concurrent_open(void **state)
{
    (void)state;
    char url[300];
    new_postgres_database(url, sizeof url);
    enum { T = 6 };
    pthread_t threads[T];
    struct opener o[T];
    for (int i = 0; i < T; i++) {
        o[i] = (struct opener){url, -100};
        pthread_create(&threads[i], NULL, open_one, &o[i]);
    }
    for (int i = 0; i < T; i++) /* all joined before any assertion leaves this frame */
        pthread_join(threads[i], NULL);
    for (int i = 0; i < T; i++)
        if (o[i].rc) fail_msg("opener %d: %d", i, o[i].rc);
    struct gal *g;
    EXPECT_OK(gal_open(url, NULL, &g));
    struct gal_collection_info *list;
    size_t n;
    EXPECT_OK(gal_collection_list(g, &list, &n));
    assert_int_equal(n, 1);
    free(list);
    gal_close(g);
}

static void test_pg_bad_urls(void **state)
{
    (void)state;
    struct gal *g = NULL;
    char url[400];
    /* No server at that socket folder. */
    EXPECT_RC(gal_open("postgresql://vultus:s3cret-pw@/x?host=/nonexistent-vultus", NULL, &g),
              BASE_ERR_IO);
    assert_null(strstr(base_error_message(), "s3cret-pw"));
    assert_non_null(strstr(base_error_message(), "postgresql://vultus:***@"));
    /* A database that does not exist. */
    snprintf(url, sizeof url, "postgresql://postgres:s3cret-pw@/no_such_db?host=%s", pg_dir);
    EXPECT_RC(gal_open(url, NULL, &g), BASE_ERR_IO);
    assert_null(strstr(base_error_message(), "s3cret-pw"));
    assert_non_null(strstr(base_error_message(), "no_such_db"));
    /* Not parseable. */
    EXPECT_RC(gal_open("postgresql://x:s3cret-pw@/db?nonsense_option=1", NULL, &g),
              BASE_ERR_INVALID);
    assert_null(strstr(base_error_message(), "s3cret-pw"));
    assert_null(g);

    char shown[200];
    gal_location_redact("postgres://u:p%40ss@db.example:5432/v?sslmode=require&password=x", shown,
                        sizeof shown);
    assert_string_equal(shown, "postgres://u:***@db.example:5432/v?...");
    gal_location_redact("postgresql://db.example/v", shown, sizeof shown);
    assert_string_equal(shown, "postgresql://db.example/v");
    gal_location_redact("data/vultus.db", shown, sizeof shown);
    assert_string_equal(shown, "data/vultus.db");
    assert_true(gal_location_is_url("postgres://h/d"));
    assert_false(gal_location_is_url("postgres:/h/d"));
}

/* Another replica finds an acknowledged enrolment on its very next search. */
static void test_pg_read_your_writes(void **state)
{
    struct fixture *f = *state;
    struct gal *b;
    EXPECT_OK(gal_open(f->db, NULL, &b));
    struct rng r = {12};
    create(f->g, "c", GAL_DTYPE_INT8, 0.5f);
    EXPECT_OK(gal_subject_add(f->g, "c", "a", NULL));
    /* b never wrote nor refreshed: its reads catch up by themselves. */
    struct gal_subject_info info;
    EXPECT_OK(gal_subject_get(b, "c", "a", &info));
    gal_subject_info_deinit(&info);
    for (int i = 0; i < 20; i++) {
        float e[DIM];
        random_unit(&r, e, DIM);
        struct gal_face_input in = face_input("a", MODEL, DIM, e);
        int64_t id;
        EXPECT_OK(gal_face_add(f->g, "c", &in, &id));
        float sim = 0;
        assert_int_equal(top1(b, "c", e, &sim), id);
        assert_true(sim > 0.999f);
        EXPECT_OK(gal_face_delete(b, "c", id));
        assert_int_not_equal(top1(f->g, "c", e, NULL), id);
    }
    assert_int_equal(gal_sequence(b), gal_sequence(f->g));
    gal_close(b);
}

struct writer_arg {
    const char *url;
    int id;
    int faces;
    int rc;
};

static void *writer_main(void *p)
{
    struct writer_arg *w = p;
    struct gal *g = NULL;
    struct rng r = {(uint64_t)(100 + w->id)};
    char subject[16];
    snprintf(subject, sizeof subject, "w%d", w->id);
    if ((w->rc = gal_open(w->url, NULL, &g))) return NULL;
    if ((w->rc = gal_subject_add(g, "c", subject, NULL))) goto done;
    for (int i = 0; i < w->faces && !w->rc; i++) {
        float e[2][DIM];
        struct gal_face_input in[2];
        int64_t ids[2];
        int n = 1 + i % 2;
        for (int k = 0; k < n; k++) {
            random_unit(&r, e[k], DIM);
            in[k] = face_input(subject, MODEL, DIM, e[k]);
        }
        w->rc = gal_faces_add(g, "c", in, (size_t)n, ids);
        if (!w->rc && i % 5 == 4) w->rc = gal_face_delete(g, "c", ids[0]);
    }
done:
    gal_close(g);
    return NULL;
}

/*
 * Several handles (each its own connections, like replicas) write at once while a follower
 * replays the log incrementally; at the end the follower, every writer's view and a fresh
 * load agree face for face: no change was skipped or applied out of order.
 */
static void test_pg_concurrent_writers(void **state)
{
    struct fixture *f = *state;
    create(f->g, "c", GAL_DTYPE_F32, 0.5f);
    enum { W = 4, FACES = 40 };
    pthread_t threads[W];
    struct writer_arg args[W];
    for (int i = 0; i < W; i++) {
        args[i] = (struct writer_arg){f->db, i, FACES, -100};
        pthread_create(&threads[i], NULL, writer_main, &args[i]);
    }
    /* f->g follows while they write (assertions only once all are joined: a failure must
     * not leave threads writing into this frame). */
    struct gal_index_stats st;
    int follow_rc = 0;
    for (int i = 0; i < 200 && !follow_rc; i++) {
        follow_rc = gal_refresh(f->g);
        usleep(1000);
    }
    for (int i = 0; i < W; i++)
        pthread_join(threads[i], NULL);
    EXPECT_OK(follow_rc);
    for (int i = 0; i < W; i++)
        if (args[i].rc) fail_msg("writer %d: %d", i, args[i].rc);
    EXPECT_OK(gal_refresh(f->g));
    EXPECT_OK(gal_index_stats(f->g, "c", &st));
    /* Each writer: FACES batches of 1 or 2 faces (60 faces), one deletion per 5 batches. */
    uint64_t expected = (uint64_t)W * ((FACES / 2) * 3 - FACES / 5);
    assert_int_equal(st.faces, expected);
    assert_int_equal(face_count(f->g, "c"), expected);
    struct gal *fresh;
    EXPECT_OK(gal_open(f->db, NULL, &fresh));
    struct gal_index_stats fst;
    EXPECT_OK(gal_index_stats(fresh, "c", &fst));
    assert_int_equal(fst.faces, expected);
    assert_int_equal(gal_sequence(fresh), gal_sequence(f->g));
    for (int w = 0; w < W; w++) {
        char subject[16];
        snprintf(subject, sizeof subject, "w%d", w);
        int64_t *ids;
        size_t n;
        EXPECT_OK(gal_face_list(fresh, "c", subject, &ids, &n));
        assert_int_equal(n, expected / W);
        for (size_t i = 0; i < n; i++) {
            struct gal_face_record rec;
            EXPECT_OK(gal_face_get(fresh, "c", ids[i], &rec));
            /* Found by both: the follower's index holds the same face. */
            assert_int_equal(top1(f->g, "c", rec.embedding, NULL), ids[i]);
            gal_face_record_deinit(&rec);
        }
        free(ids);
    }
    gal_close(fresh);
}

/* The server ends every connection of the database (a restart, a failover): the next write and
 * search reconnect once and go through. */
static void test_pg_reconnect(void **state)
{
    struct fixture *f = *state;
    struct rng r = {13};
    create(f->g, "c", GAL_DTYPE_F32, 0.5f);
    EXPECT_OK(gal_subject_add(f->g, "c", "a", NULL));
    float e[DIM];
    random_unit(&r, e, DIM);
    struct gal_face_input in = face_input("a", MODEL, DIM, e);
    int64_t id;
    EXPECT_OK(gal_face_add(f->g, "c", &in, &id));
    assert_int_equal(top1(f->g, "c", e, NULL), id);
    char dbname[64], sql[300];
    db_name(f->db, dbname, sizeof dbname);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
             "WHERE datname = '%s'",
             dbname);
    long killed = admin_long(pg_url, sql);
    print_message("connections of %s ended by the server: %ld\n", dbname, killed);
    assert_true(killed >= 1);
    usleep(100000);
    random_unit(&r, e, DIM);
    in = face_input("a", MODEL, DIM, e);
    EXPECT_OK(gal_face_add(f->g, "c", &in, &id));
    assert_int_equal(top1(f->g, "c", e, NULL), id);
    EXPECT_OK(gal_check(f->g));
}

/* VULTUS_STORE_TIMEOUT_MS bounds the wait for each statement's answer (test_pg_partition
 * checks the bound against a frozen server): a value that is not a number of milliseconds in
 * range is refused at open with a message naming the variable; 0 (no limit) is accepted. */
static void test_pg_timeout_setting(void **state)
{
    struct fixture *f = *state;
    const char *bad[] = {"abc", "-1", "10s", "3600001", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct gal *g = NULL;
        setenv("VULTUS_STORE_TIMEOUT_MS", bad[i], 1);
        EXPECT_RC(gal_open(f->db, NULL, &g), BASE_ERR_INVALID);
        assert_null(g);
        assert_non_null(strstr(base_error_message(), "VULTUS_STORE_TIMEOUT_MS"));
    }
    const char *good[] = {"0", "1500", ""};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        struct gal *g = NULL;
        setenv("VULTUS_STORE_TIMEOUT_MS", good[i], 1);
        EXPECT_OK(gal_open(f->db, NULL, &g));
        create(g, good[i][0] ? good[i] : "empty", GAL_DTYPE_F32, 0.5f);
        gal_close(g);
    }
    unsetenv("VULTUS_STORE_TIMEOUT_MS");
}

/*
 * A write waiting behind another replica's long transaction (here a session holding the change
 * log's advisory lock) fails after VULTUS_STORE_TIMEOUT_MS with an error that names the limit,
 * and the gallery is usable again once the lock is free (after the retry interval that a
 * statement without an answer starts): whether the server's statement_timeout
 * ends the wait (set from the limit) or the client's own limit does (statement_timeout=0 in the
 * URL's options). In the second case the error used to be the rollback's ("ROLLBACK: no
 * connection to the server"), which overwrote the write's own.
 */
static void test_pg_write_behind_lock(void **state)
{
    struct fixture *f = *state;
    create(f->g, "c", GAL_DTYPE_F32, 0.5f);
    char client_limit[700];
    snprintf(client_limit, sizeof client_limit, "%s&options=-c%%20statement_timeout%%3D0", f->db);
    const char *urls[] = {f->db, client_limit};
    /* the server's timeout and the client's limit are the same: either may end the first wait */
    const char *expected[] = {"statement timeout", "no answer within 1000 ms"};
    for (int i = 0; i < 2; i++) {
        setenv("VULTUS_STORE_TIMEOUT_MS", "1000", 1);
        struct gal *g = NULL;
        EXPECT_OK(gal_open(urls[i], NULL, &g));
        unsetenv("VULTUS_STORE_TIMEOUT_MS");
        PGconn *holder = PQconnectdb(f->db);
        assert_int_equal(PQstatus(holder), CONNECTION_OK);
        /* 0x5647414c00000001: the change log's write lock (LOCK_WRITE in store_postgres.c) */
        PGresult *r = PQexec(holder, "BEGIN; SELECT pg_advisory_xact_lock(6217009605281579009)");
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        PQclear(r);
        double t0 = tc_now_ms();
        int rc = gal_subject_add(g, "c", "late", NULL);
        const char *msg = base_error_message();
        print_message("a write behind a held lock (%s): %d after %.0f ms: %s\n",
                      i ? "client's limit" : "server's statement_timeout", rc, tc_now_ms() - t0,
                      msg);
        assert_int_equal(rc, BASE_ERR_IO);
        if (!strstr(msg, expected[i]) && !strstr(msg, expected[1]))
            fail_msg("expected '%s' in: %s", expected[i], msg);
        PQclear(PQexec(holder, "ROLLBACK"));
        PQfinish(holder);
        /* A statement that got no answer within the limit marks the store unreachable for a
         * retry interval (100-500 ms): calls meanwhile fail at once, then it is tried again. */
        t0 = tc_now_ms();
        while ((rc = gal_subject_add(g, "c", i ? "late2" : "late", NULL)) == BASE_ERR_IO &&
               tc_now_ms() - t0 < 2000)
            usleep(20000);
        print_message("the lock free: the next write %d after %.0f ms\n", rc, tc_now_ms() - t0);
        EXPECT_OK(rc);
        gal_close(g);
    }
}

/* One value of the server's session settings on `pg` (blocking; fails the test otherwise). */
static void show_setting(PGconn *pg, const char *name, char *out, size_t cap)
{
    const char *values[] = {name};
    PQsetnonblocking(pg, 0);
    PGresult *r = PQexecParams(pg, "SELECT current_setting($1)", 1, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) fail_msg("%s: %s", name, PQerrorMessage(pg));
    snprintf(out, cap, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    PQsetnonblocking(pg, 1);
}

/* Connects as the stores do and sets the session's limits for a timeout of `ms`; puts the
 * server's statement_timeout and idle_in_transaction_session_timeout in `statement`, `idle`. */
static void session_limits(const char *url, int ms, char statement[32], char idle[32])
{
    PGconn *pg = gal_pg_connect(url, "2");
    assert_non_null(pg);
    if (PQstatus(pg) != CONNECTION_OK) fail_msg("connect %s: %s", url, PQerrorMessage(pg));
    assert_int_equal(PQsetnonblocking(pg, 1), 0);
    int timed_out = 1;
    PGresult *r = gal_pg_session_init(pg, ms, 0, "test store", url, &timed_out);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) fail_msg("limits: %s", PQerrorMessage(pg));
    assert_int_equal(timed_out, 0);
    PQclear(r);
    show_setting(pg, "statement_timeout", statement, 32);
    show_setting(pg, "idle_in_transaction_session_timeout", idle, 32);
    PQfinish(pg);
}

/* Every session vultus opens asks the server to end a statement and an idle transaction after
 * VULTUS_STORE_TIMEOUT_MS, as its client gives up then; a value set in the URL's options or for
 * the database wins, and with no limit (0) nothing is set. */
static void test_pg_session_limits(void **state)
{
    struct fixture *f = *state;
    char statement[32], idle[32], url[700];
    session_limits(f->db, 1500, statement, idle);
    print_message("limit 1500 ms: statement_timeout %s, idle_in_transaction_session_timeout %s\n",
                  statement, idle);
    assert_string_equal(statement, "1500ms");
    assert_string_equal(idle, "1500ms");
    session_limits(f->db, 0, statement, idle);
    assert_string_equal(statement, "0");
    assert_string_equal(idle, "0");
    snprintf(url, sizeof url, "%s&options=-c%%20statement_timeout%%3D7000", f->db);
    session_limits(url, 1500, statement, idle);
    assert_string_equal(statement, "7s");
    assert_string_equal(idle, "1500ms");
    char dbname[64], sql[200];
    db_name(f->db, dbname, sizeof dbname);
    snprintf(sql, sizeof sql, "ALTER DATABASE %s SET idle_in_transaction_session_timeout = '1min'",
             dbname);
    admin_exec(pg_url, sql);
    session_limits(f->db, 1500, statement, idle);
    assert_string_equal(statement, "1500ms");
    assert_string_equal(idle, "1min");
}

/* How many advisory locks are granted in the cluster (the change log's write lock). */
static long advisory_locks(void)
{
    return admin_long(pg_url,
                      "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted");
}

/*
 * A write cut off by VULTUS_STORE_TIMEOUT_MS behind a partition: a proxy that holds every byte,
 * so the server never sees the client's end of the connection. The cut-off session sat idle
 * in its transaction holding the change log's advisory lock, and another replica's write
 * waited for it until its own limit ("no answer within 1000 ms") for as long as the partition
 * lasted (after a real one, until the server's TCP keepalive: 2 h by default). Now the server
 * ends that session itself (idle_in_transaction_session_timeout = the limit): the other write
 * goes through, and nothing of the cut-off transaction is stored.
 */
static void test_pg_cut_write_releases_lock(void **state)
{
    struct fixture *f = *state;
    create(f->g, "c", GAL_DTYPE_F32, 0.5f);
    static tc_pg_proxy proxy; /* its threads outlive this test */
    tc_pg_proxy_start(&proxy, pg_dir);
    char dbname[64], via_proxy[300];
    db_name(f->db, dbname, sizeof dbname);
    tc_pg_proxy_url(&proxy, dbname, "?connect_timeout=2", via_proxy, sizeof via_proxy);
    setenv("VULTUS_STORE_TIMEOUT_MS", "1000", 1);
    struct gal_store *cut = NULL, *other = NULL;
    EXPECT_OK(gal_store_postgres_open(via_proxy, NULL, &cut));
    EXPECT_OK(gal_store_postgres_open(f->db, NULL, &other));
    unsetenv("VULTUS_STORE_TIMEOUT_MS");
    struct gal_store_collection coll;
    EXPECT_OK(other->ops->collection_get(other, "c", 0, &coll));
    uint64_t seq;

    EXPECT_OK(cut->ops->begin(cut));
    EXPECT_OK(cut->ops->subject_add(cut, coll.id, "cut", "{}", 0, &seq));
    atomic_store(&proxy.frozen, 1);
    long held = advisory_locks();
    double t0 = tc_now_ms();
    int rc = cut->ops->subject_add(cut, coll.id, "cut2", "{}", 0, &seq);
    print_message("partition: the write in a transaction got %d after %.0f ms (%s); advisory "
                  "locks held meanwhile: %ld\n",
                  rc, tc_now_ms() - t0, base_error_message(), held);
    assert_int_equal(rc, BASE_ERR_IO);
    assert_int_equal(held, 1);
    cut->ops->rollback(cut);

    t0 = tc_now_ms();
    rc = other->ops->subject_add(other, coll.id, "other", "{}", 0, &seq);
    print_message("another store's write: %d after %.0f ms%s%s; advisory locks now: %ld\n", rc,
                  tc_now_ms() - t0, rc ? ": " : "", rc ? base_error_message() : "",
                  advisory_locks());
    EXPECT_OK(rc);
    struct gal_subject_info info;
    EXPECT_RC(other->ops->subject_get(other, coll.id, "cut", &info), BASE_ERR_NOT_FOUND);

    atomic_store(&proxy.frozen, 0);
    cut->ops->close(cut);
    other->ops->close(other);
}

/* Collection "c" in f's database, and a store opened on it through `proxy` (started here)
 * with a limit of limit_ms: what the tests of lost and frozen connections start from. */
static void open_via_proxy(struct fixture *f, tc_pg_proxy *proxy, int limit_ms,
                           struct gal_store **st, struct gal_store_collection *coll)
{
    create(f->g, "c", GAL_DTYPE_F32, 0.5f);
    tc_pg_proxy_start(proxy, pg_dir);
    char dbname[64], via_proxy[300], limit[16];
    db_name(f->db, dbname, sizeof dbname);
    tc_pg_proxy_url(proxy, dbname, "?connect_timeout=2", via_proxy, sizeof via_proxy);
    snprintf(limit, sizeof limit, "%d", limit_ms);
    setenv("VULTUS_STORE_TIMEOUT_MS", limit, 1);
    EXPECT_OK(gal_store_postgres_open(via_proxy, NULL, st));
    unsetenv("VULTUS_STORE_TIMEOUT_MS");
    EXPECT_OK((*st)->ops->collection_get(*st, "c", 0, coll));
}

/*
 * A connection made again in the middle of a call waits for the session's set-up (the server's
 * own limits, gal_pg_session_init) at most until the call's deadline, as it waits for the
 * connection itself and for every answer. It waited a whole VULTUS_STORE_TIMEOUT_MS whatever
 * was left of the call's: a call that had waited most of its limit (for the writer behind
 * another call, for a busy reader pool) and then found its connection lost, against a database
 * that accepts the connection and then never answers, got its 503 after up to two limits. Here
 * the writer's connection is lost to a statement without an answer, then the proxy lets new
 * connections authenticate and holds their queries; a call with RECONNECT_LEFT_MS of its limit
 * left must fail well before the limit (the bound: half of it), and the store works again once
 * the database answers. Its message says what was waited, of which limit: it said "no answer
 * within 2000 ms" after a wait of 300.
 */
#define RECONNECT_LIMIT_MS 2000
#define RECONNECT_LEFT_MS 300

static void test_pg_reconnect_within_deadline(void **state)
{
    struct fixture *f = *state;
    static tc_pg_proxy proxy; /* its threads outlive this test */
    struct gal_store *st = NULL;
    struct gal_store_collection coll;
    open_via_proxy(f, &proxy, RECONNECT_LIMIT_MS, &st, &coll);
    uint64_t seq;

    /* the writer's connection closed by its limit: the next write connects again */
    atomic_store(&proxy.frozen, 1);
    EXPECT_RC(st->ops->subject_add(st, coll.id, "lost", "{}", 0, &seq), BASE_ERR_IO);
    atomic_store(&proxy.frozen, 0);
    atomic_store(&proxy.hold_queries, 1);
    usleep(600000); /* past the unreachable window that the statement started (at most 500 ms) */

    gal_store_deadline_ns = base_now_ns() + (uint64_t)RECONNECT_LEFT_MS * 1000000u;
    double t0 = tc_now_ms();
    int rc = st->ops->subject_add(st, coll.id, "late", "{}", 0, &seq);
    double ms = tc_now_ms() - t0;
    gal_store_deadline_ns = 0;
    print_message("a reconnection whose session set-up gets no answer, %d ms of the call's "
                  "limit (%d ms) left: %d after %.0f ms (%s)\n",
                  RECONNECT_LEFT_MS, RECONNECT_LIMIT_MS, rc, ms, base_error_message());
    atomic_store(&proxy.hold_queries, 0);
    assert_int_equal(rc, BASE_ERR_IO);
    if (ms >= RECONNECT_LIMIT_MS / 2)
        fail_msg("the call waited %.0f ms for the session's set-up with %d ms of its limit left",
                 ms, RECONNECT_LEFT_MS);
    /* "no answer within W ms, what was left of the call's 2000 ms limit", W at most what the
     * call had left */
    const char *msg = base_error_message();
    char limit_text[64];
    snprintf(limit_text, sizeof limit_text, "of the call's %d ms limit", RECONNECT_LIMIT_MS);
    const char *within = strstr(msg, "no answer within ");
    int waited = within ? atoi(within + strlen("no answer within ")) : -1;
    if (!strstr(msg, limit_text) || waited < 1 || waited > RECONNECT_LEFT_MS)
        fail_msg("the message does not say the %d ms waited of the call's %d ms: %s",
                 RECONNECT_LEFT_MS, RECONNECT_LIMIT_MS, msg);

    t0 = tc_now_ms();
    while ((rc = st->ops->subject_add(st, coll.id, "after", "{}", 0, &seq)) == BASE_ERR_IO &&
           tc_now_ms() - t0 < 3000)
        usleep(20000);
    print_message("the database answering: the next write %d after %.0f ms\n", rc,
                  tc_now_ms() - t0);
    EXPECT_OK(rc);
    st->ops->close(st);
}

/*
 * A connection lost mid-call is not an answer: it leaves the call's deadline where it was. The
 * end of the stream makes libpq build an error result of its own (no SQLSTATE), and that result
 * used to move the deadline on by a whole limit as the server's answers do, so a call whose
 * statement waited most of its limit, then lost its connection (a crash, a failover) and
 * reconnected to a database that accepts connections and never answers, got its 503 after
 * nearly two limits. Here the proxy holds the writer's BEGIN for DROP_AFTER_MS of a
 * DROP_LIMIT_MS limit, then closes that connection and holds the queries of new ones: the call
 * must fail about one limit after it began (the bound: a limit and a half).
 */
#define DROP_LIMIT_MS 2000
#define DROP_AFTER_MS 1700

static void *drop_later(void *arg)
{
    tc_pg_proxy *proxy = arg;
    usleep(DROP_AFTER_MS * 1000);
    atomic_store(&proxy->hold_queries, 1); /* the reconnection: accepted, never answered */
    atomic_store(&proxy->drop, 1);
    usleep(100000); /* the held connection sees it within 20 ms */
    atomic_store(&proxy->drop, 0);
    atomic_store(&proxy->frozen, 0);
    return NULL;
}

static void test_pg_lost_connection_keeps_deadline(void **state)
{
    struct fixture *f = *state;
    static tc_pg_proxy proxy; /* its threads outlive this test */
    struct gal_store *st = NULL;
    struct gal_store_collection coll;
    open_via_proxy(f, &proxy, DROP_LIMIT_MS, &st, &coll);
    uint64_t seq;
    EXPECT_OK(st->ops->subject_add(st, coll.id, "before", "{}", 0, &seq)); /* writer connected */

    atomic_store(&proxy.frozen, 1);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, drop_later, &proxy), 0);
    gal_store_deadline_ns = base_now_ns() + (uint64_t)DROP_LIMIT_MS * 1000000u;
    double t0 = tc_now_ms();
    int rc = st->ops->subject_add(st, coll.id, "dropped", "{}", 0, &seq);
    double ms = tc_now_ms() - t0;
    gal_store_deadline_ns = 0;
    pthread_join(t, NULL);
    print_message("the connection lost after %d ms of a %d ms limit, the reconnection never "
                  "answered: %d after %.0f ms (%s)\n",
                  DROP_AFTER_MS, DROP_LIMIT_MS, rc, ms, base_error_message());
    atomic_store(&proxy.hold_queries, 0);
    assert_int_equal(rc, BASE_ERR_IO);
    if (ms >= DROP_LIMIT_MS * 3 / 2)
        fail_msg("the call waited %.0f ms with a limit of %d ms: the lost connection moved its "
                 "deadline on",
                 ms, DROP_LIMIT_MS);

    t0 = tc_now_ms();
    while ((rc = st->ops->subject_add(st, coll.id, "after", "{}", 0, &seq)) == BASE_ERR_IO &&
           tc_now_ms() - t0 < 3000)
        usleep(20000);
    print_message("the database answering: the next write %d after %.0f ms\n", rc,
                  tc_now_ms() - t0);
    EXPECT_OK(rc);
    struct gal_subject_info info;
    EXPECT_RC(st->ops->subject_get(st, coll.id, "dropped", &info), BASE_ERR_NOT_FOUND);
    st->ops->close(st);
}

/* A password libpq reads is never shown, whatever it holds. Found by tests/fuzz/fuzz_config:
 * the query string was cut at the first '?', so "u:pass?word@host" (user u, password
 * "pass?word" to libpq) was shown as "u:pass?...". Needs no server. */
static void test_url_redaction(void **state)
{
    (void)state;
    char shown[200];
    gal_location_redact("postgres://vultus:pass?word1@db:5432/vultus?sslmode=require", shown,
                        sizeof shown);
    assert_string_equal(shown, "postgres://vultus:***@db:5432/vultus?...");
    gal_location_redact("postgres://vultus:pass#word1@db/v", shown, sizeof shown);
    assert_string_equal(shown, "postgres://vultus:***@db/v");
    /* libpq refuses this one (host "vultus", port "pass"), but the text after ':' is most
     * likely a password: nothing of it is shown. */
    gal_location_redact("postgres://vultus:pass/word1@db:5432/vultus", shown, sizeof shown);
    assert_string_equal(shown, "postgres://...");
    gal_location_redact("postgres://us?er@db/v", shown, sizeof shown);
    assert_string_equal(shown, "postgres://us?er@db/v");
    gal_location_redact("postgres://db:5432/v?sslmode=require", shown, sizeof shown);
    assert_string_equal(shown, "postgres://db:5432/v?...");
    /* Cut short at any size, always terminated. */
    gal_location_redact("postgres://vultus:s3cret@db/v", shown, 12);
    assert_string_equal(shown, "postgres://");
}

static void test_pg_unavailable(void **state)
{
    (void)state;
    print_message("no PostgreSQL server binaries (Debian package postgresql): skipped\n");
    skip();
}

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
        cmocka_unit_test_setup_teardown(test_enrol_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enrol_race_one_subject, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkin_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkin_doors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkin_collection_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkin_two_doors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkin_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkin_schema_additive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkin_migration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkin_door_migration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_same_as_sqlite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_concurrent_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_bad_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_read_your_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_concurrent_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_timeout_setting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_session_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_cut_write_releases_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_write_behind_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_reconnect_within_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_lost_connection_keeps_deadline, setup, teardown),
        cmocka_unit_test(test_url_redaction),
    };
    /* test_full_store, test_busy_store and test_schema_versions are SQLite's own (a
     * page-count limit, a file lock, PRAGMA user_version, foreign files); test_pg_schema and
     * test_pg_concurrent_writers are their counterparts here. */
    (void)test_full_store;
    (void)test_busy_store;
    (void)test_schema_versions;
    if (start_postgres(NULL) != 0) return 1;
    if (!pg_url[0]) {
        const struct CMUnitTest skipped[] = {cmocka_unit_test(test_url_redaction),
                                             cmocka_unit_test(test_pg_unavailable)};
        return cmocka_run_group_tests(skipped, NULL, NULL);
    }
    return cmocka_run_group_tests(tests, NULL, stop_postgres);
}
