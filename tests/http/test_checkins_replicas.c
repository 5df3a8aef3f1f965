/*
 * Two doors of one event on two `vultus serve` replicas over one PostgreSQL database (the
 * deployment of DESIGN 7, without the load balancer: each request goes to the replica the test
 * names), the check-in record being the store's:
 *
 *   - the same person at both doors at the same moment, round after round (a DELETE, at one
 *     replica or the other, between rounds): exactly one door answers checked_in, the other
 *     same_arrival, and the record holds one arrival. In every other round (the first
 *     included) the test makes the two transactions overlap for certain: it holds the
 *     checkins table in SHARE mode (reads go on, writes wait) until both replicas' check-ins
 *     wait inside their transactions, the one holding the store's write lock at its INSERT,
 *     the other at that write lock, then lets them go. Were the read-and-update not
 *     serialised across processes, both would have read "no record" and both would wait at
 *     their INSERT; let go, the second hits the table's primary key. With the store's write
 *     lock (pg_advisory_xact_lock in store_postgres.c's writer_begin) replaced by a no-op,
 *     round 0 failed so in 5 runs of 5:
 *       round 0 (gated): door A checked_in
 *       expected 200, got 409: {"error":{"code":"conflict","message":"record a check-in:
 *       duplicate key value violates unique constraint \"checkins_pkey\""}}
 *     (the rounds left to the moment may or may not overlap);
 *   - /metrics' vultus_checkins_total, per process, summed over the two: one checked_in and
 *     one same_arrival per round;
 *   - a check-in at A is in B's GET at once, a DELETE at B empties A's list, a subject deleted
 *     at A has no record at B.
 *
 * Skips without the model pack, the photos (../shared/data/fixtures) or the PostgreSQL server
 * binaries (tools/pg-temp). About 6 s.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "client.h"

#include <libpq-fe.h>
#include <pthread.h>

#define FIXTURES "../shared/data/fixtures"
#define IDENTITIES FIXTURES "/identities"
#define PENNY5 IDENTITIES "/penny/penny5.png"
#define LEONARD4 IDENTITIES "/leonard/leonard4.png"
#define ROUNDS 6
#define CHECKINS "/v1/collections/event/checkins"

static char pg_dir[128];
static char url[300];
static tc_server replica[2]; /* A and B */
static char *penny5, *leonard4;
static size_t penny5_len, leonard4_len;

static const char *const serve_args[] = {"--store",       url,     "--workers", "2",
                                         "--deadline-ms", "60000", NULL};

static int have_data(void)
{
    return tc_exists(PENNY5) && tc_exists(LEONARD4) && tc_exists(IDENTITIES "/penny/penny3.png") &&
           tc_exists(IDENTITIES "/leonard/leonard3.png");
}

static int setup(void **state)
{
    (void)state;
    if (!tc_have_models() || !have_data()) return 0;
    int rc = tc_pg_start(pg_dir, sizeof pg_dir, url, sizeof url);
    if (rc == 77) return 0; /* url empty: the tests skip */
    if (rc) return -1;
    for (int i = 0; i < 2; i++)
        if (tc_server_start(&replica[i], NULL, serve_args, 1) != 0) return -1;
    if (tc_read_file(PENNY5, &penny5, &penny5_len) ||
        tc_read_file(LEONARD4, &leonard4, &leonard4_len))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int rc = 0;
    for (int i = 0; i < 2; i++)
        if (replica[i].pid > 0 && tc_server_stop(&replica[i]) != 0) rc = -1;
    if (tc_pg_stop(pg_dir) != 0) rc = -1;
    free(penny5);
    free(leonard4);
    return rc;
}

#define NEED_REPLICAS()                                                                            \
    do {                                                                                           \
        TC_NEED_MODELS();                                                                          \
        if (!have_data()) {                                                                        \
            print_message(FIXTURES " is absent: skipped\n");                                       \
            skip();                                                                                \
        }                                                                                          \
        if (!url[0]) {                                                                             \
            print_message("no PostgreSQL server binaries (package postgresql): skipped\n");        \
            skip();                                                                                \
        }                                                                                          \
        assert_true(replica[0].pid > 0 && replica[1].pid > 0);                                     \
    } while (0)

static long long num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v)) fail_msg("%s is not an integer", key);
    return (long long)json_integer_value(v);
}

/* POST …/checkins of a PNG at replica `at`: the answer, which must be 200. */
static json_t *checkin(int at, const char *png, size_t len)
{
    tc_response r;
    tc_request(replica[at].port, "POST", CHECKINS, "Content-Type: image/png\r\n", png, len, &r);
    json_t *j = tc_expect_json(&r, 200);
    tc_response_free(&r);
    return j;
}

/* The one face's "checkin" of a check-in answer (borrowed from `answer`). */
static json_t *arrival(json_t *answer)
{
    json_t *faces = json_object_get(answer, "faces");
    assert_int_equal(json_array_size(faces), 1);
    json_t *c = json_object_get(json_array_get(faces, 0), "checkin");
    assert_non_null(c);
    return c;
}

/* Collection "event" with penny and leonard, three photos each, all through A. */
static void enrol(void)
{
    int a = replica[0].port;
    tc_create_collection(a, "event");
    static const char *const who[] = {"penny", "leonard"};
    for (int s = 0; s < 2; s++)
        for (int i = 1; i <= 3; i++) {
            char file[256], path[128];
            snprintf(file, sizeof file, IDENTITIES "/%s/%s%d.png", who[s], who[s], i);
            snprintf(path, sizeof path, "/v1/collections/event/faces?subject=%s", who[s]);
            size_t len;
            char *png = tc_load(file, &len);
            tc_response r;
            tc_request(a, "POST", path, "Content-Type: image/png\r\n", png, len, &r);
            json_decref(tc_expect_json(&r, 201));
            tc_response_free(&r);
            free(png);
        }
}

/* One door: a check-in of penny at its replica once the barrier lets both doors go. */
struct door {
    int at;
    pthread_barrier_t *go;
    tc_response r;
};

static void *door_main(void *arg)
{
    struct door *d = arg;
    pthread_barrier_wait(d->go);
    tc_request(replica[d->at].port, "POST", CHECKINS, "Content-Type: image/png\r\n", penny5,
               penny5_len, &d->r);
    return NULL;
}

/* A session on the test's database holding the checkins table in SHARE mode: a check-in
 * transaction reads its record, then waits at its INSERT (or, behind one that does, at the
 * store's write lock). */
static PGconn *gate_close(void)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) fail_msg("cannot connect to %s: %s", url, PQerrorMessage(c));
    PGresult *res = PQexec(c, "BEGIN; LOCK TABLE checkins IN SHARE MODE");
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        fail_msg("cannot lock the checkins table: %s", PQerrorMessage(c));
    PQclear(res);
    return c;
}

/* Waits until `n` sessions wait for a lock (both doors are inside their transactions), then
 * lets them go. */
static void gate_open(PGconn *c, int n)
{
    double deadline = tc_now_ms() + 60000;
    long long waiting = 0;
    while (tc_now_ms() < deadline) {
        PGresult *res = PQexec(c, "SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted");
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            fail_msg("cannot read pg_locks: %s", PQerrorMessage(c));
        waiting = atoll(PQgetvalue(res, 0, 0));
        PQclear(res);
        if (waiting >= n) break;
        tc_sleep_ms(5);
    }
    PGresult *res = PQexec(c, "COMMIT");
    PQclear(res);
    PQfinish(c);
    if (waiting < n) fail_msg("after 60 s, %lld of the %d check-ins wait at the gate", waiting, n);
}

/* vultus_checkins_total{status} summed over both replicas, as a dashboard sums them. */
static double counted(const char *status)
{
    char series[96];
    snprintf(series, sizeof series, "vultus_checkins_total{status=\"%s\"}", status);
    double sum = 0;
    for (int i = 0; i < 2; i++) {
        double v = tc_metric(replica[i].port, series, -1);
        if (v < 0) fail_msg("replica %c serves no %s", "AB"[i], series);
        sum += v;
    }
    return sum;
}

static void test_two_doors_at_once(void **state)
{
    (void)state;
    NEED_REPLICAS();
    enrol();
    double checked_in_before = counted("checked_in"), same_before = counted("same_arrival");
    for (int round = 0; round < ROUNDS; round++) {
        int gated = round % 2 == 0;
        PGconn *gate = gated ? gate_close() : NULL;
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        struct door doors[2] = {{.at = 0, .go = &go}, {.at = 1, .go = &go}};
        pthread_t t[2];
        for (int i = 0; i < 2; i++)
            pthread_create(&t[i], NULL, door_main, &doors[i]);
        if (gate) gate_open(gate, 2);
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&go);

        int checked_in = 0, same = 0;
        long long first[2];
        for (int i = 0; i < 2; i++) {
            json_t *a = tc_expect_json(&doors[i].r, 200);
            tc_response_free(&doors[i].r);
            json_t *c = arrival(a);
            const char *status = json_string_value(json_object_get(c, "status"));
            if (!status) {
                fail_msg("round %d: door %c's answer has no checkin status", round, "AB"[i]);
                return;
            }
            print_message("round %d%s: door %c %s\n", round, gated ? " (gated)" : "", "AB"[i],
                          status);
            checked_in += strcmp(status, "checked_in") == 0;
            same += strcmp(status, "same_arrival") == 0;
            assert_string_equal(tc_json_str(c, "subject_id"), "penny");
            assert_int_equal(num(c, "arrivals"), 1);
            first[i] = num(c, "first_seen_ms");
            assert_int_equal(num(json_object_get(a, "checkins"), "checked_in"), 1);
            json_decref(a);
        }
        if (checked_in != 1 || same != 1)
            fail_msg("round %d: %d checked_in and %d same_arrival (expected one each)", round,
                     checked_in, same);
        /* Both doors describe the one record. */
        assert_int_equal(first[0], first[1]);

        /* One record with one arrival, seen alike from both replicas; then a new event, from
         * A and B in turn. */
        for (int i = 0; i < 2; i++) {
            json_t *l = tc_call(replica[i].port, "GET", CHECKINS, NULL, 200);
            json_t *items = json_object_get(l, "checkins");
            assert_int_equal(json_array_size(items), 1);
            assert_int_equal(num(json_array_get(items, 0), "arrivals"), 1);
            assert_int_equal(num(json_array_get(items, 0), "first_seen_ms"), first[0]);
            json_decref(l);
        }
        json_t *d = tc_call(replica[round % 2].port, "DELETE", CHECKINS, NULL, 200);
        assert_int_equal(num(d, "cleared"), 1);
        json_decref(d);
    }
    /* Each replica counts its own doors' faces: summed, one of each per round. */
    assert_int_equal(counted("checked_in") - checked_in_before, ROUNDS);
    assert_int_equal(counted("same_arrival") - same_before, ROUNDS);
}

/* The record's subjects at replica `at`: their ids, in the list's order, joined by ','. */
static void listed(int at, char *out, size_t cap, long long *checked_in)
{
    json_t *l = tc_call(replica[at].port, "GET", CHECKINS, NULL, 200);
    json_t *items = json_object_get(l, "checkins");
    out[0] = '\0';
    for (size_t i = 0; i < json_array_size(items); i++) {
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s%s", i ? "," : "",
                 tc_json_str(json_array_get(items, i), "subject_id"));
    }
    *checked_in = num(l, "checked_in");
    json_decref(l);
}

/*
 * Read-your-writes across replicas, with no wait in between: it holds because GET …/checkins
 * reads the record from the store itself (PostgreSQL, one snapshot per list), not from a copy
 * in the replica's memory that follows the change log, and a check-in's 200 comes after its
 * transaction committed: the next read on any replica sees it.
 */
static void test_read_your_writes(void **state)
{
    (void)state;
    NEED_REPLICAS();
    /* test_two_doors_at_once's collection, its record cleared whatever that test left */
    json_decref(tc_call(replica[0].port, "DELETE", CHECKINS, NULL, 200));
    json_t *l;
    char ids[256];
    long long n;

    /* A check-in at A, listed by B at once. */
    json_t *a = checkin(0, penny5, penny5_len);
    assert_string_equal(tc_json_str(arrival(a), "status"), "checked_in");
    long long first = num(arrival(a), "first_seen_ms");
    json_decref(a);
    listed(1, ids, sizeof ids, &n);
    assert_string_equal(ids, "penny");
    assert_int_equal(n, 1);
    l = tc_call(replica[1].port, "GET", CHECKINS, NULL, 200);
    assert_int_equal(num(json_array_get(json_object_get(l, "checkins"), 0), "first_seen_ms"),
                     first);
    json_decref(l);

    /* A DELETE at B empties A's list. */
    json_t *d = tc_call(replica[1].port, "DELETE", CHECKINS, NULL, 200);
    assert_int_equal(num(d, "cleared"), 1);
    json_decref(d);
    l = tc_call(replica[0].port, "GET", CHECKINS, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(l, "checkins")), 0);
    assert_int_equal(num(l, "checked_in"), 0);
    assert_true(json_is_null(json_object_get(l, "since_ms")));
    json_decref(l);

    /* Leonard at B and penny at A; leonard deleted at A: B lists penny alone, and counts one
     * subject. */
    a = checkin(1, leonard4, leonard4_len);
    assert_string_equal(tc_json_str(arrival(a), "subject_id"), "leonard");
    assert_string_equal(tc_json_str(arrival(a), "status"), "checked_in");
    json_decref(a);
    a = checkin(0, penny5, penny5_len);
    assert_string_equal(tc_json_str(arrival(a), "status"), "checked_in");
    json_decref(a);
    listed(1, ids, sizeof ids, &n);
    assert_int_equal(n, 2);
    assert_non_null(strstr(ids, "leonard"));
    assert_null(
        tc_call(replica[0].port, "DELETE", "/v1/collections/event/subjects/leonard", NULL, 204));
    listed(1, ids, sizeof ids, &n);
    assert_string_equal(ids, "penny");
    assert_int_equal(n, 1);
    l = tc_call(replica[1].port, "GET", CHECKINS, NULL, 200);
    assert_int_equal(num(l, "subjects"), 1);
    json_decref(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_doors_at_once),
        cmocka_unit_test(test_read_your_writes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
