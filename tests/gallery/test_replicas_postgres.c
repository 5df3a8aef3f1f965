/*
 * Two replicas of the service on one PostgreSQL database: two real `vultus serve` processes of
 * this build on free loopback ports, both with --store pointing at a throw-away server
 * (tools/pg-temp), driven over HTTP with real photos (models/samples).
 *
 *   - a collection made and a face enrolled on A are found by a search on B at once;
 *   - a face deleted on B is no longer found by a search on A;
 *   - enrolments sent to both replicas at once lose nothing: every one is in the store, and
 *     each replica's index finds every one of them;
 *   - a retry with the same Idempotency-Key on the other replica replays the first answer;
 *   - an API key created in the shared store (`vultus keys create --store`) is required by
 *     both replicas;
 *   - an Idempotency-Key claim left by a replica that died is taken over by a retry on the
 *     other within seconds, and the face the dead replica stored is not stored twice;
 *   - a replica killed (SIGKILL) in the middle of enrolments loses none it acknowledged, and
 *     the client's retry on the other replica completes the interrupted one exactly once;
 *   - the database restarted under the replicas (orderly, then as a crash): both are ready
 *     again within seconds without being restarted, find what was enrolled before the outage
 *     and what is enrolled after it through the other replica, and a write refused with 503
 *     during the outage left nothing behind;
 *   - with the database gone, gallery calls get 503 store_unavailable with Retry-After (not a
 *     500, and without the database's address), /readyz turns 503, and the replicas still
 *     answer what needs no database and drain and exit 0 on SIGTERM.
 *
 * Skips when the model pack or the PostgreSQL server binaries are absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "http/client.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

/* models/samples/sample1.jpg ..: 6, or 3 under sanitizers (an enrolment takes seconds). */
static int samples = 6;

static char pg_dir[128];
static char url[300];
static tc_server replica[2];
/* Whether `vultus serve` opened the store of --store (its log says so): every test asserts
 * it, so a replica that ignored --store and ran on a SQLite file of its own fails. */
static int wired;

static char *sample(int i, size_t *len)
{
    char path[64], *data = NULL;
    snprintf(path, sizeof path, "models/samples/sample%d.jpg", i);
    if (tc_read_file(path, &data, len) != 0) fail_msg("cannot read %s", path);
    return data;
}

/* The face_id of an enrolment answer, which must be 201. */
static long long created_face_id(const tc_response *r)
{
    json_t *j = tc_expect_json(r, 201);
    long long id = json_integer_value(json_object_get(j, "face_id"));
    json_decref(j);
    return id;
}

/* Enrols sample `i` as `subject` through replica `port`; the face id, or -1 (no assertion, so
 * that threads may call it). */
static long long enrol(int port, const char *subject, int i)
{
    size_t len;
    char path[64], *img = NULL;
    snprintf(path, sizeof path, "models/samples/sample%d.jpg", i);
    if (tc_read_file(path, &img, &len) != 0) return -1;
    tc_form f = {0};
    tc_form_field(&f, "subject", subject);
    tc_form_file(&f, "image", img, len);
    tc_form_end(&f);
    tc_response r;
    long long id = -1;
    if (tc_post_form(port, "/v1/collections/people/faces", NULL, &f, &r) == 0 && r.status == 201) {
        json_t *j = tc_json(&r);
        id = j ? json_integer_value(json_object_get(j, "face_id")) : -1;
        json_decref(j);
    } else {
        fprintf(stderr, "enrol %s on port %d: %d %.300s\n", subject, port, r.status,
                r.body ? r.body : "");
    }
    tc_response_free(&r);
    free(f.data);
    free(img);
    return id;
}

/* Searches sample `i` through `port` (k 50): how many matches, over every face of the photo,
 * have a subject starting with `prefix` and a similarity above 0.95 (the very face: the same
 * photo enrolled and searched gives 0.98 or more, another face at most 0.91 here); *best
 * gets the subject of the best match of any face. */
static int search(int port, int i, const char *prefix, char *best, size_t best_cap)
{
    size_t len;
    char *img = sample(i, &len);
    tc_response r;
    assert_int_equal(tc_request(port, "POST", "/v1/collections/people/search?k=50",
                                "Content-Type: image/jpeg\r\n", img, len, &r),
                     0);
    free(img);
    json_t *j = tc_expect_json(&r, 200);
    json_t *faces = json_object_get(j, "faces");
    int n = 0;
    double top = -2;
    if (best) best[0] = '\0';
    for (size_t f = 0; f < json_array_size(faces); f++) {
        json_t *matches = json_object_get(json_array_get(faces, f), "matches");
        for (size_t k = 0; k < json_array_size(matches); k++) {
            json_t *m = json_array_get(matches, k);
            const char *subject = json_string_value(json_object_get(m, "subject"));
            double sim = json_number_value(json_object_get(m, "similarity"));
            if (sim > top && best) snprintf(best, best_cap, "%s", subject);
            if (sim > top) top = sim;
            if (sim > 0.95 && strncmp(subject, prefix, strlen(prefix)) == 0) n++;
        }
    }
    json_decref(j);
    tc_response_free(&r);
    return n;
}

static long long collection_faces(int port)
{
    tc_response r;
    assert_int_equal(tc_get(port, "/v1/collections/people", NULL, &r), 0);
    json_t *j = tc_expect_json(&r, 200);
    long long n = json_integer_value(json_object_get(j, "faces"));
    json_decref(j);
    tc_response_free(&r);
    return n;
}

/* Runs `sql` on the shared database (as the replicas' store sees it); the number of rows it
 * returned or changed. */
static long sql_exec(const char *sql)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) fail_msg("connect %s: %s", url, PQerrorMessage(c));
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) fail_msg("%s: %s", sql, PQerrorMessage(c));
    long n = st == PGRES_TUPLES_OK ? PQntuples(r) : atol(PQcmdTuples(r));
    PQclear(r);
    PQfinish(c);
    return n;
}

static long long subject_faces(int port, const char *subject)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/collections/people/subjects/%s", subject);
    tc_response r;
    assert_int_equal(tc_get(port, path, NULL, &r), 0);
    json_t *j = tc_expect_json(&r, 200);
    long long n = json_integer_value(json_object_get(j, "faces"));
    json_decref(j);
    tc_response_free(&r);
    return n;
}

static const char *const serve_args[] = {
    "--store",       url,     "--workers",         "1",     "--grace-ms", "0",
    "--deadline-ms", "60000", "--max-deadline-ms", "60000", NULL};

static int start(void **state)
{
    (void)state;
    if (!tc_have_models()) return 0;
    if (getenv("VULTUS_SANITIZED")) samples = 3;
    int rc = tc_pg_start(pg_dir, sizeof pg_dir, url, sizeof url);
    if (rc == 77) return 0; /* url empty: every test skips */
    if (rc) return -1;
    /* Both replicas start at once: the schema is created once, under its lock. */
    /* A long deadline: under sanitizers an enrolment takes seconds and concurrent ones would
     * be refused (503) by admission control, which is not what is tested here. */
    for (int i = 0; i < 2; i++)
        if (tc_server_start(&replica[i], NULL, serve_args, 1) != 0) return -1;
    char *log;
    size_t len;
    if (tc_read_file(replica[0].log, &log, &len) == 0) {
        wired = strstr(log, "gallery postgresql://") != NULL;
        free(log);
    }
    return 0;
}

static int stop(void **state)
{
    (void)state;
    int rc = 0;
    for (int i = 0; i < 2; i++)
        if (replica[i].pid > 0 && tc_server_stop(&replica[i]) != 0) rc = -1;
    if (tc_pg_stop(pg_dir) != 0) rc = -1;
    return rc;
}

#define NEED_REPLICAS()                                                                            \
    do {                                                                                           \
        TC_NEED_MODELS();                                                                          \
        if (!url[0]) {                                                                             \
            print_message("no PostgreSQL server binaries (package postgresql): skipped\n");        \
            skip();                                                                                \
        }                                                                                          \
        assert_true(replica[0].pid > 0 && replica[1].pid > 0);                                     \
        assert_true(wired); /* the replica's log says it opened the database */                    \
    } while (0)

static void test_store_is_shared(void **state)
{
    (void)state;
    NEED_REPLICAS();
    /* Each replica says it opened the database, never showing a password. */
    for (int i = 0; i < 2; i++) {
        char *log;
        size_t len;
        assert_int_equal(tc_read_file(replica[i].log, &log, &len), 0);
        if (!strstr(log, "gallery postgresql://postgres@/postgres?..."))
            fail_msg("replica %d did not open the PostgreSQL store; log:\n%s", i, log);
        free(log);
    }
}

struct writer {
    int id;
    int port;
    int count;
    int ok;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    for (int i = 0; i < w->count; i++) {
        /* t<sample>-<writer>: some samples show the same person, so a search counts the
         * enrolments of its own sample by this prefix. */
        char subject[32];
        snprintf(subject, sizeof subject, "t%d-%d", 1 + i % samples, w->id);
        if (enrol(w->port, subject, 1 + i % samples) > 0) w->ok++;
    }
    return NULL;
}

static void test_enrol_search_delete_across(void **state)
{
    (void)state;
    NEED_REPLICAS();
    int a = replica[0].port, b = replica[1].port;
    tc_response r;
    assert_int_equal(tc_post_json(a, "/v1/collections", NULL, "{\"name\":\"people\"}", &r), 0);
    assert_int_equal(r.status, 201);
    tc_response_free(&r);

    /* Enrol on A, search on B: found at once (read-your-writes across replicas). */
    long long ids[7];
    for (int i = 1; i <= samples; i++) {
        char subject[16], best[64];
        snprintf(subject, sizeof subject, "s%d", i);
        ids[i] = enrol(a, subject, i);
        assert_true(ids[i] > 0);
        assert_int_equal(search(b, i, subject, best, sizeof best), 1);
        assert_string_equal(best, subject);
    }
    assert_int_equal(collection_faces(b), samples);

    /* Delete on B: A no longer finds it. */
    char path[128];
    snprintf(path, sizeof path, "/v1/collections/people/faces/%lld", ids[1]);
    assert_int_equal(tc_request(b, "DELETE", path, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 204);
    tc_response_free(&r);
    char best[64];
    assert_int_equal(search(a, 1, "s1", best, sizeof best), 0);
    assert_string_not_equal(best, "s1");
    assert_int_equal(collection_faces(a), samples - 1);

    /* Enrolments to both at once lose nothing, in the store and in both indexes: 4 writers,
     * two per replica (one per replica under sanitizers, where an enrolment takes seconds). */
    const int per_writer = samples, writers = getenv("VULTUS_SANITIZED") ? 2 : 4;
    struct writer w[4];
    pthread_t threads[4];
    for (int i = 0; i < writers; i++) {
        w[i] = (struct writer){i, replica[i % 2].port, per_writer, 0};
        pthread_create(&threads[i], NULL, writer_main, &w[i]);
    }
    for (int i = 0; i < writers; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < writers; i++)
        assert_int_equal(w[i].ok, per_writer);
    assert_int_equal(collection_faces(a), samples - 1 + writers * per_writer);
    assert_int_equal(collection_faces(b), samples - 1 + writers * per_writer);
    /* Sample s was enrolled once by each writer (per_writer == samples). */
    for (int s = 1; s <= samples; s++) {
        char prefix[16];
        snprintf(prefix, sizeof prefix, "t%d-", s);
        for (int k = 0; k < 2; k++)
            assert_int_equal(search(replica[k].port, s, prefix, NULL, 0), writers);
    }
}

/* Posts sample `i` for `subject` to `port` with an Idempotency-Key; the response in *r. */
static void enrol_keyed(int port, const char *subject, int i, const char *key, tc_response *r)
{
    size_t len;
    char *img = sample(i, &len);
    tc_form f = {0};
    tc_form_field(&f, "subject", subject);
    tc_form_file(&f, "image", img, len);
    tc_form_end(&f);
    char headers[128];
    snprintf(headers, sizeof headers, "Idempotency-Key: %s\r\n", key);
    assert_int_equal(tc_post_form(port, "/v1/collections/people/faces", headers, &f, r), 0);
    free(f.data);
    free(img);
}

/* Idempotency records are shared: a retry that lands on the other replica replays the first
 * answer instead of enrolling twice, and the key cannot be reused for another request. */
static void test_idempotency_across(void **state)
{
    (void)state;
    NEED_REPLICAS();
    int a = replica[0].port, b = replica[1].port;
    long long before = collection_faces(a);
    tc_response r;
    enrol_keyed(a, "idem", 2, "retry-across-1", &r);
    long long id = created_face_id(&r);
    tc_response_free(&r);
    enrol_keyed(b, "idem", 2, "retry-across-1", &r);
    assert_int_equal(created_face_id(&r), id);
    char v[16];
    assert_non_null(tc_header(&r, "Idempotency-Replayed", v, sizeof v));
    assert_string_equal(v, "true");
    tc_response_free(&r);
    enrol_keyed(b, "other", 3, "retry-across-1", &r);
    assert_int_equal(r.status, 422);
    assert_non_null(strstr(r.body, "idempotency_key_reused"));
    tc_response_free(&r);
    assert_int_equal(collection_faces(b), before + 1);
}

/* A key created in the shared store: both replicas require it within a second or so. */
static void test_keys_shared(void **state)
{
    (void)state;
    NEED_REPLICAS();
    char key[256];
    const char *const args[] = {"keys", "create", "--scope", "read", "--store", url, NULL};
    assert_int_equal(tc_run_vultus(key, sizeof key, args), 0);
    key[strcspn(key, "\n")] = '\0';
    assert_true(strncmp(key, "vk_", 3) == 0);
    char auth[300];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", key);
    for (int k = 0; k < 2; k++) {
        int port = replica[k].port, status = 0;
        for (int tries = 0; tries < 100; tries++) { /* refreshed once a second */
            tc_response r;
            assert_int_equal(tc_get(port, "/v1/collections", NULL, &r), 0);
            status = r.status;
            tc_response_free(&r);
            if (status == 401) break;
            tc_sleep_ms(50);
        }
        assert_int_equal(status, 401);
        tc_response r;
        assert_int_equal(tc_get(port, "/v1/collections", auth, &r), 0);
        assert_int_equal(r.status, 200);
        tc_response_free(&r);
    }
    /* Revoked: open again (no key left). */
    char id[32];
    snprintf(id, sizeof id, "%.12s", key + 3);
    const char *const revoke[] = {"keys", "revoke", id, "--store", url, NULL};
    char out[256];
    assert_int_equal(tc_run_vultus(out, sizeof out, revoke), 0);
}

/* A replica stored a face and died before recording its answer (made here by turning the
 * finished record back into a claim): a retry is told 409 while the claim is fresh, then,
 * once no process has touched it for 5 s, takes it over and answers with the face already
 * stored instead of storing it twice. */
static void test_abandoned_claim(void **state)
{
    (void)state;
    NEED_REPLICAS();
    int a = replica[0].port, b = replica[1].port;
    tc_response r;
    enrol_keyed(a, "died", 4, "died-1", &r);
    long long id = created_face_id(&r);
    tc_response_free(&r);
    assert_int_equal(sql_exec("UPDATE idempotency_keys SET status = 0, body = NULL,"
                              " created_ms = (extract(epoch from clock_timestamp()) * 1000)::bigint"
                              " WHERE scope LIKE '%died-1'"),
                     1);
    double t0 = tc_now_ms();
    int busy = 0;
    for (;;) {
        enrol_keyed(b, "died", 4, "died-1", &r);
        if (r.status != 409) break;
        busy++;
        assert_non_null(strstr(r.body, "idempotency_in_progress"));
        tc_response_free(&r);
        if (tc_now_ms() - t0 > 40000) fail_msg("the abandoned claim was not taken over in 40 s");
        tc_sleep_ms(250);
    }
    double waited = tc_now_ms() - t0;
    assert_int_equal(created_face_id(&r), id);
    tc_response_free(&r);
    print_message("abandoned claim taken over after %.1f s (%d answers 409 before)\n",
                  waited / 1000, busy);
    assert_true(busy > 0);      /* fresh: not taken over at once */
    assert_true(waited > 4000); /* ... nor before it was 5 s old */
    assert_int_equal(subject_faces(a, "died"), 1);
    /* Recorded now: a further retry is a replay. */
    enrol_keyed(a, "died", 4, "died-1", &r);
    assert_int_equal(created_face_id(&r), id);
    char v[16];
    assert_non_null(tc_header(&r, "Idempotency-Replayed", v, sizeof v));
    tc_response_free(&r);
}

struct killed_writer {
    int victim, other;  /* ports */
    atomic_int acked;   /* enrolments the victim answered 201 */
    long long ids[200]; /* their face ids */
    int interrupted;    /* the index of the enrolment the kill interrupted, or -1 */
    int retry_status;   /* the other replica's final answer to its retry */
    long long retry_id;
    double retry_ms; /* from the failure to that answer */
    int retry_busy;  /* 409 answers on the way */
};

static void *killed_writer_main(void *arg)
{
    struct killed_writer *w = arg;
    w->interrupted = -1;
    for (int i = 0; i < 200; i++) {
        char subject[32], key[32];
        snprintf(subject, sizeof subject, "k%d", i);
        snprintf(key, sizeof key, "kill-%d", i);
        size_t len;
        char *img = sample(1 + i % samples, &len);
        tc_form f = {0};
        tc_form_field(&f, "subject", subject);
        tc_form_file(&f, "image", img, len);
        tc_form_end(&f);
        char headers[128];
        snprintf(headers, sizeof headers, "Idempotency-Key: %s\r\n", key);
        tc_response r;
        int rc = tc_post_form(w->victim, "/v1/collections/people/faces", headers, &f, &r);
        if (rc == 0 && r.status == 201) {
            json_t *j = tc_json(&r);
            w->ids[i] = j ? json_integer_value(json_object_get(j, "face_id")) : -1;
            json_decref(j);
            tc_response_free(&r);
            atomic_store(&w->acked, i + 1);
        } else {
            /* The victim is gone: retry the same request on the other replica. */
            if (rc == 0) tc_response_free(&r);
            w->interrupted = i;
            double t0 = tc_now_ms();
            while (tc_now_ms() - t0 < 55000) {
                if (tc_post_form(w->other, "/v1/collections/people/faces", headers, &f, &r) != 0)
                    break;
                w->retry_status = r.status;
                if (r.status == 201) {
                    json_t *j = tc_json(&r);
                    w->retry_id = j ? json_integer_value(json_object_get(j, "face_id")) : -1;
                    json_decref(j);
                }
                tc_response_free(&r);
                if (w->retry_status != 409) break;
                w->retry_busy++;
                tc_sleep_ms(250);
            }
            w->retry_ms = tc_now_ms() - t0;
        }
        free(f.data);
        free(img);
        if (w->interrupted >= 0) break;
    }
    return NULL;
}

/* The scale-out promise (DESIGN 7): kill a replica under load and nothing is lost. A third
 * replica takes keyed enrolments until, with one of them claimed and running, it is killed
 * with SIGKILL; the client retries that one on a surviving replica. Every enrolment the dead
 * replica acknowledged is there, the interrupted one is stored exactly once, and its retry
 * completes within seconds (the claim was abandoned, not running). */
static void test_replica_killed(void **state)
{
    (void)state;
    NEED_REPLICAS();
    tc_server victim;
    assert_int_equal(tc_server_start(&victim, NULL, serve_args, 1), 0);
    struct killed_writer w = {.victim = victim.port, .other = replica[1].port};
    pthread_t t;
    pthread_create(&t, NULL, killed_writer_main, &w);
    /* Two answered, then the next one's claim appears (it is claimed when its body is in,
     * before the face pipeline runs): kill it there. */
    double t0 = tc_now_ms();
    while (atomic_load(&w.acked) < 2 && tc_now_ms() - t0 < 120000)
        tc_sleep_ms(5);
    assert_true(atomic_load(&w.acked) >= 2);
    int claimed = 0;
    while (!claimed && tc_now_ms() - t0 < 120000) {
        claimed = sql_exec("SELECT 1 FROM idempotency_keys WHERE status = 0"
                           " AND scope LIKE '%kill-%'") > 0;
        if (!claimed) tc_sleep_ms(1);
    }
    assert_true(claimed);
    kill(victim.pid, SIGKILL);
    waitpid(victim.pid, NULL, 0);
    victim.pid = 0;
    pthread_join(t, NULL);
    tc_server_stop(&victim); /* removes its data folder */

    int acked = atomic_load(&w.acked);
    print_message("killed after %d acknowledged enrolments; the retry of #%d took %.1f s "
                  "(%d answers 409 before)\n",
                  acked, w.interrupted, w.retry_ms / 1000, w.retry_busy);
    assert_int_equal(w.interrupted, acked);
    assert_int_equal(w.retry_status, 201);
    /* Taken over, not left for a minute (under sanitizers each answer 409 takes longer). */
    assert_true(w.retry_ms < (getenv("VULTUS_SANITIZED") ? 40000 : 15000));
    int b = replica[1].port;
    for (int i = 0; i < acked; i++) {
        char path[96];
        snprintf(path, sizeof path, "/v1/collections/people/faces/%lld", w.ids[i]);
        tc_response r;
        assert_int_equal(tc_get(b, path, NULL, &r), 0);
        assert_int_equal(r.status, 200);
        tc_response_free(&r);
    }
    for (int i = 0; i <= acked; i++) {
        char subject[32];
        snprintf(subject, sizeof subject, "k%d", i);
        assert_int_equal(subject_faces(b, subject), 1);
    }
}

/* Waits until `port` answers GET /v1/collections with 200: the key revoked by test_keys_shared
 * is dropped by each replica's once-a-second refresh. */
static void wait_open(int port)
{
    int status = 0;
    for (int tries = 0; tries < 100 && status != 200; tries++) {
        tc_response r;
        assert_int_equal(tc_get(port, "/v1/collections", NULL, &r), 0);
        status = r.status;
        tc_response_free(&r);
        if (status != 200) tc_sleep_ms(50);
    }
    assert_int_equal(status, 200);
}

/* GET /readyz's status once. */
static int readyz(int port)
{
    tc_response r;
    assert_int_equal(tc_get(port, "/readyz", NULL, &r), 0);
    int status = r.status;
    tc_response_free(&r);
    return status;
}

/* With the database gone: gallery calls through `port` get 503 store_unavailable with
 * Retry-After (not a 500, and without the database's address), what needs no database is still
 * served, and /readyz turns 503 (it is checked once a second). */
static void expect_store_gone(int port)
{
    size_t len;
    char *img = sample(1, &len);
    tc_response r;
    assert_int_equal(tc_request(port, "POST", "/v1/collections/people/search",
                                "Content-Type: image/jpeg\r\n", img, len, &r),
                     0);
    json_t *j = tc_expect_json(&r, 503);
    json_t *err = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(err, "code")), "store_unavailable");
    assert_null(strstr(json_string_value(json_object_get(err, "message")), "vultus-pg-"));
    char v[16];
    assert_non_null(tc_header(&r, "Retry-After", v, sizeof v));
    json_decref(j);
    tc_response_free(&r);
    assert_int_equal(tc_get(port, "/v1/collections", NULL, &r), 0);
    assert_int_equal(r.status, 503);
    tc_response_free(&r);
    /* No database needed: still served. */
    assert_int_equal(
        tc_request(port, "POST", "/v1/detect", "Content-Type: image/jpeg\r\n", img, len, &r), 0);
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
    free(img);
    int status = 0;
    for (int tries = 0; tries < 100 && status != 503; tries++) {
        status = readyz(port);
        if (status != 503) tc_sleep_ms(50);
    }
    assert_int_equal(status, 503);
}

/* GET of subject `subject` through `port`: its status (404: no such subject). */
static int subject_status(int port, const char *subject)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/collections/people/subjects/%s", subject);
    tc_response r;
    assert_int_equal(tc_get(port, path, NULL, &r), 0);
    int status = r.status;
    tc_response_free(&r);
    return status;
}

/*
 * The database restarts under running replicas (an upgrade, a failover, a node move), once as
 * an orderly shutdown and once as a crash: the replicas are not restarted, yet within seconds
 * both are ready again, a face enrolled through A before the outage is found through B, one
 * enrolled through A after it too (B follows A's writes again), an enrolment refused with 503
 * during the outage left nothing behind, and every acknowledged face is still there. A replica
 * that stayed 503 would never be restarted by Kubernetes: its /healthz says 200 throughout.
 */
static void test_database_restart(void **state)
{
    (void)state;
    NEED_REPLICAS();
    int a = replica[0].port, b = replica[1].port;
    wait_open(a);
    wait_open(b);
    for (int round = 0; round < 2; round++) {
        const int crash = round == 1;
        /* Samples 2 and 3 (present under sanitizers too); "rs" subjects are this test's. */
        const int before_sample = 2 + round, after_sample = 3 - round;
        char before[32], during[32], after[32];
        snprintf(before, sizeof before, "rs%d-before", round);
        snprintf(during, sizeof during, "rs%d-during", round);
        snprintf(after, sizeof after, "rs%d-after", round);
        long long before_id = enrol(a, before, before_sample);
        assert_true(before_id > 0);
        assert_int_equal(search(b, before_sample, before, NULL, 0), 1);
        long long faces = collection_faces(b);

        assert_int_equal(tc_pg_pause(pg_dir, crash), 0);
        for (int k = 0; k < 2; k++)
            expect_store_gone(replica[k].port);
        /* A write during the outage: a clear 503 (its face pipeline ran, the store refused). */
        {
            size_t len;
            char *img = sample(after_sample, &len);
            tc_form f = {0};
            tc_form_field(&f, "subject", during);
            tc_form_file(&f, "image", img, len);
            tc_form_end(&f);
            tc_response r;
            assert_int_equal(tc_post_form(a, "/v1/collections/people/faces", NULL, &f, &r), 0);
            json_t *j = tc_expect_json(&r, 503);
            assert_string_equal(
                json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                "store_unavailable");
            json_decref(j);
            tc_response_free(&r);
            free(f.data);
            free(img);
        }

        assert_int_equal(tc_pg_resume(pg_dir), 0);
        /* Ready again on both, by themselves, within 10 s: the gallery store and the API
         * keys store (src/http/keys.c) each reconnect. */
        double t0 = tc_now_ms(), ready_ms[2] = {-1, -1};
        while (tc_now_ms() - t0 < 10000 && (ready_ms[0] < 0 || ready_ms[1] < 0)) {
            for (int k = 0; k < 2; k++)
                if (ready_ms[k] < 0 && readyz(replica[k].port) == 200)
                    ready_ms[k] = tc_now_ms() - t0;
            tc_sleep_ms(20);
        }
        if (ready_ms[0] < 0 || ready_ms[1] < 0)
            fail_msg("database %s: /readyz still 503 after 10 s on %s",
                     crash ? "crashed and restarted" : "restarted",
                     ready_ms[0] < 0 ? (ready_ms[1] < 0 ? "A and B" : "A") : "B");
        print_message("database %s: /readyz 200 again after %.2f s (A), %.2f s (B)\n",
                      crash ? "crashed and restarted" : "restarted", ready_ms[0] / 1000,
                      ready_ms[1] / 1000);

        /* What was acknowledged before the outage is found through the other replica. */
        assert_int_equal(search(b, before_sample, before, NULL, 0), 1);
        assert_int_equal(search(a, before_sample, before, NULL, 0), 1);
        /* The write refused during the outage is not half-stored. */
        assert_int_equal(subject_status(a, during), 404);
        assert_int_equal(subject_status(b, during), 404);
        char sql[160];
        snprintf(sql, sizeof sql, "SELECT 1 FROM subjects WHERE subject_id = '%s'", during);
        assert_int_equal(sql_exec(sql), 0);
        assert_int_equal(collection_faces(b), faces);
        /* B follows A's writes again: a new enrolment through A is found through B at once. */
        long long after_id = enrol(a, after, after_sample);
        assert_true(after_id > 0);
        assert_int_equal(search(b, after_sample, after, NULL, 0), 1);
        assert_int_equal(collection_faces(b), faces + 1);
        assert_int_equal(collection_faces(a), faces + 1);
        assert_int_equal(subject_faces(b, before), 1);
        assert_int_equal(subject_faces(b, after), 1);
    }
}

static void test_database_gone(void **state)
{
    (void)state;
    NEED_REPLICAS();
    /* The key revoked by test_keys_shared: open again once each replica has refreshed. */
    for (int k = 0; k < 2; k++)
        wait_open(replica[k].port);
    assert_int_equal(tc_pg_stop(pg_dir), 0);
    for (int k = 0; k < 2; k++)
        expect_store_gone(replica[k].port);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_is_shared),
        cmocka_unit_test(test_enrol_search_delete_across),
        cmocka_unit_test(test_idempotency_across),
        cmocka_unit_test(test_abandoned_claim),
        cmocka_unit_test(test_replica_killed),
        cmocka_unit_test(test_keys_shared),      /* replicas may need a second to drop the key */
        cmocka_unit_test(test_database_restart), /* stops and starts the database, twice */
        cmocka_unit_test(test_database_gone),    /* last: stops the database for good */
    };
    return cmocka_run_group_tests(tests, start, stop);
}
