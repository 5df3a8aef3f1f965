/*
 * Crash safety: a child process opens the gallery and enrols faces in a loop, writing each
 * face id to a pipe only after gal_face_add returned (the acknowledgement). The parent
 * SIGKILLs it at a random moment - while it opens and loads the gallery, between
 * enrolments, in the middle of a commit - and then, with the child dead, reopens the
 * gallery and checks that every acknowledged face is present with its embedding, is found
 * first by a search with that embedding, and that PRAGMA integrity_check is ok. 100 kills
 * in a row (VULTUS_CRASH_KILLS overrides), in about 15 s.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "base/base.h"
#include "helpers.h"

#define MODEL "m"
#define DIM 128

struct ack {
    int64_t face_id;
    uint64_t seed; /* the embedding is random_unit() from this seed */
};

static void embedding_for(uint64_t seed, float *e)
{
    struct rng r = {seed * 0x9e3779b97f4a7c15ull + 17};
    random_unit(&r, e, DIM);
}

/* The child: enrol until killed. Never returns. */
static _Noreturn void child(const char *db, int fd, uint64_t first_seed)
{
    struct gal *g;
    if (gal_open(db, NULL, &g) != 0) {
        fprintf(stderr, "child: open: %s\n", base_error_message());
        _exit(2);
    }
    for (uint64_t i = 0; i < 1000000; i++) {
        float e[DIM];
        uint64_t seed = first_seed + i;
        embedding_for(seed, e);
        struct gal_face_input in = face_input(i % 2 ? "alice" : "bob", MODEL, DIM, e);
        struct ack a = {0, seed};
        if (gal_face_add(g, "c", &in, &a.face_id) != 0) {
            fprintf(stderr, "child: enrol: %s\n", base_error_message());
            _exit(3);
        }
        /* Acknowledged: tell the parent (16 bytes, atomic on a pipe). */
        if (write(fd, &a, sizeof a) != (ssize_t)sizeof a) _exit(4);
    }
    _exit(0);
}

static uint64_t now_ms(void)
{
    return base_now_ns() / 1000000;
}

/* Reads whole records from the pipe until `deadline_ms` (0: until end of file). */
static void drain(int fd, uint64_t deadline_ms, struct ack **acks, size_t *n, size_t *cap,
                  char *partial, size_t *partial_len)
{
    for (;;) {
        int timeout = -1;
        if (deadline_ms) {
            uint64_t t = now_ms();
            if (t >= deadline_ms) return;
            timeout = (int)(deadline_ms - t);
        }
        struct pollfd p = {fd, POLLIN, 0};
        int ready = poll(&p, 1, timeout);
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) return;
        char buf[4096];
        ssize_t got = read(fd, buf, sizeof buf);
        if (got <= 0) return; /* end of file: the child is gone */
        for (ssize_t i = 0; i < got; i++) {
            partial[(*partial_len)++] = buf[i];
            if (*partial_len == sizeof(struct ack)) {
                if (*n == *cap) {
                    *cap = *cap ? *cap * 2 : 1024;
                    *acks = realloc(*acks, *cap * sizeof **acks);
                }
                memcpy(&(*acks)[(*n)++], partial, sizeof(struct ack));
                *partial_len = 0;
            }
        }
    }
}

/* Every acknowledged face in acks[from, n) is present, intact and found first. */
static void verify(struct gal *g, const struct ack *acks, size_t from, size_t n)
{
    for (size_t i = from; i < n; i++) {
        float e[DIM];
        embedding_for(acks[i].seed, e);
        struct gal_face_record rec;
        int rc = gal_face_get(g, "c", acks[i].face_id, &rec);
        if (rc != 0)
            fail_msg("acknowledged face %lld (ack %zu) is missing: %s", (long long)acks[i].face_id,
                     i, base_error_message());
        for (int d = 0; d < DIM; d++)
            assert_true(fabsf(rec.embedding[d] - e[d]) < 1e-6f);
        gal_face_record_deinit(&rec);
        struct gal_search_request req = {
            .model_id = MODEL, .dim = DIM, .embeddings = e, .query_count = 1, .k = 1};
        struct gal_results *res;
        EXPECT_OK(gal_search(g, "c", &req, &res));
        assert_int_equal(res->queries[0].face_count, 1);
        if (res->queries[0].faces[0].face_id != acks[i].face_id)
            fail_msg("acknowledged face %lld is not found by its own embedding (got %lld)",
                     (long long)acks[i].face_id, (long long)res->queries[0].faces[0].face_id);
        assert_true(res->queries[0].faces[0].similarity > 0.9999f);
        gal_results_destroy(res);
    }
}

static void test_sigkill_while_enrolling(void **state)
{
    (void)state;
    base_log_level = BASE_LOG_WARN;
    int kills = 100;
    const char *env = getenv("VULTUS_CRASH_KILLS");
    if (env) kills = atoi(env);
    char *dir = make_tmpdir(), db[512];
    path_in(db, sizeof db, dir, "crash.db");
    struct gal *g;
    EXPECT_OK(gal_open(db, NULL, &g));
    struct gal_collection_info info = collection_info("c", MODEL, DIM, GAL_DTYPE_INT8, 0.5f);
    EXPECT_OK(gal_collection_create(g, &info));
    EXPECT_OK(gal_subject_add(g, "c", "alice", NULL));
    EXPECT_OK(gal_subject_add(g, "c", "bob", NULL));
    gal_close(g);

    struct rng r = {(uint64_t)time(NULL)};
    printf("# seed %llu\n", (unsigned long long)r.state);
    struct ack *acks = NULL;
    size_t n = 0, cap = 0, early_kills = 0;
    uint64_t start = now_ms();
    for (int round = 0; round < kills; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child(db, fds[1], (uint64_t)(round + 1) * 1000000);
        }
        close(fds[1]);
        /* Mostly mid-enrolment, sometimes while the child is still opening the gallery. */
        uint64_t delay = rng_u64(&r) % 4 == 0 ? rng_u64(&r) % 8 : 5 + rng_u64(&r) % 120;
        if (delay < 8) early_kills++;
        char partial[sizeof(struct ack)];
        size_t partial_len = 0, before = n;
        drain(fds[0], now_ms() + delay, &acks, &n, &cap, partial, &partial_len);
        kill(pid, SIGKILL);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
            fail_msg("round %d: the child ended by itself (status %d)", round, status);
        drain(fds[0], 0, &acks, &n, &cap, partial, &partial_len);
        close(fds[0]);

        EXPECT_OK(gal_open(db, NULL, &g));
        EXPECT_OK(gal_check(g));
        verify(g, acks, before, n);
        EXPECT_OK(gal_collection_get(g, "c", &info));
        assert_true(info.face_count >= n); /* committed but not yet acknowledged: allowed */
        gal_close(g);
    }
    /* Finally every acknowledgement of every round, once more. */
    EXPECT_OK(gal_open(db, NULL, &g));
    verify(g, acks, 0, n);
    EXPECT_OK(gal_collection_get(g, "c", &info));
    EXPECT_OK(gal_check(g));
    printf("# %d kills (%zu during start-up) in %.1f s: %zu acknowledged faces, %llu in the "
           "store, all present and found\n",
           kills, early_kills, (double)(now_ms() - start) / 1000.0, n,
           (unsigned long long)info.face_count);
    assert_true(n > 0);
    gal_close(g);
    free(acks);
    remove_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigkill_while_enrolling),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
