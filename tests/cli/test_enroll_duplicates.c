/*
 * `vultus enroll` and one face under two subjects: each image's line carries also_matches,
 * the other subjects of the collection its face matches (at or above the collection's
 * threshold), as POST /v1/collections/{c}/faces answers; `--on-match refuse` skips such an
 * image as matches_other_subject and the summary counts it. Before, the face was stored
 * without a word.
 *
 *   - a --dir run sees the faces it stored itself: obama-2 under b names a (obama-1), stored
 *     earlier in the same run; biden under c names nobody; a's own second photo is no match;
 *   - --on-match refuse: skipped with its own status, exit 0, no subject created, counted;
 *   - --on-match with another value: usage error (2), nothing on stdout;
 *   - the search loads the enrolled collection's faces alone, not the store's others.
 *
 * The real build/vultus on ../shared/data/fixtures' id-obama-1/2 and id-biden-1 with the model
 * pack; skips without them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "http/client.h"

#define MODELS "models"
#define FIXTURES "../shared/data/fixtures"

static char root[256];

typedef struct run_result {
    int status;
    char *out, *err;
} run_result;

/* Runs `vultus ARGS...` (NULL-ended) with stdout and stderr in files of root, read back. */
static run_result run(const char *const *args)
{
    run_result r = {-1, NULL, NULL};
    char bin[PATH_MAX], out[300], err[300];
    if (tc_vultus_path(bin, sizeof bin) != 0) fail_msg("no vultus binary beside the tests");
    snprintf(out, sizeof out, "%s/stdout", root);
    snprintf(err, sizeof err, "%s/stderr", root);
    pid_t pid = fork();
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (o < 0 || e < 0) _exit(127);
        dup2(o, 1);
        dup2(e, 2);
        const char *argv[32] = {bin};
        for (int n = 1; n < 31 && (argv[n] = args[n - 1]); n++) {
        }
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    size_t len;
    if (tc_read_file(out, &r.out, &len) != 0) r.out = strdup("");
    if (tc_read_file(err, &r.err, &len) != 0) r.err = strdup("");
    return r;
}
#define RUN(...) run((const char *const[]){__VA_ARGS__, NULL})

static void run_free(run_result *r)
{
    free(r->out);
    free(r->err);
}

/* stdout's JSON lines into objs (at most max), returning how many; the last is the summary. */
static size_t json_lines(const char *text, json_t **objs, size_t max)
{
    size_t n = 0;
    for (const char *p = text; *p && n < max;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        json_error_t e;
        objs[n] = json_loadb(p, len, 0, &e);
        if (!objs[n]) fail_msg("not a JSON line: %.*s", (int)len, p);
        n++;
        p += len + (nl ? 1 : 0);
    }
    return n;
}

static void free_lines(json_t **objs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        json_decref(objs[i]);
}

static int have_inputs(void)
{
    return tc_have_models() && tc_exists(MODELS "/faceapi") &&
           tc_exists(FIXTURES "/id-obama-1.jpg") && tc_exists(FIXTURES "/id-obama-2.jpg") &&
           tc_exists(FIXTURES "/id-biden-1.jpg");
}

#define NEED_INPUTS()                                                                              \
    do {                                                                                           \
        if (!have_inputs()) {                                                                      \
            print_message("models/ or ../shared/data/fixtures is absent: skipped\n");              \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* ROOT/in/SUBJECT/NAME, a symbolic link to the fixture (an absolute path: the link lives
 * elsewhere). */
static void place(const char *subject, const char *fixture)
{
    char dir[400], link[600], target[PATH_MAX], rel[300];
    snprintf(dir, sizeof dir, "%s/in/%s", root, subject);
    mkdir(dir, 0700);
    snprintf(rel, sizeof rel, FIXTURES "/%s", fixture);
    if (!realpath(rel, target)) fail_msg("%s: %s", rel, strerror(errno));
    snprintf(link, sizeof link, "%s/%s", dir, fixture);
    if (symlink(target, link) != 0) fail_msg("symlink %s: %s", link, strerror(errno));
}

static const char *status_of(json_t *line)
{
    return json_string_value(json_object_get(line, "status"));
}

static json_int_t summary_count(json_t *line, const char *name)
{
    json_t *v = json_object_get(json_object_get(line, "summary"), name);
    if (!json_is_integer(v)) fail_msg("the summary has no %s", name);
    return json_integer_value(v);
}

static void test_also_matches_and_refuse(void **state)
{
    (void)state;
    NEED_INPUTS();
    char data[300], in[300];
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(in, sizeof in, "%s/in", root);
    mkdir(in, 0700);
    place("a", "id-obama-1.jpg");
    place("b", "id-obama-2.jpg");
    place("c", "id-biden-1.jpg");
    run_result r = RUN("gallery", "create", "desk", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);

    /* one run: b's photo names a, whom the same run stored a moment before */
    r = RUN("enroll", "--collection", "desk", "--dir", in, "--data", data, "--models", MODELS);
    if (r.status != 0) fail_msg("enroll --dir: status %d: %s", r.status, r.err);
    json_t *lines[8];
    size_t n = json_lines(r.out, lines, 8);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(status_of(lines[i]), "enrolled");
        if (!json_is_array(json_object_get(lines[i], "also_matches")))
            fail_msg("line %zu has no also_matches array", i);
    }
    assert_int_equal(json_array_size(json_object_get(lines[0], "also_matches")), 0);
    json_t *also = json_object_get(lines[1], "also_matches");
    assert_int_equal(json_array_size(also), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(also, 0), "subject")),
                        "a");
    double similarity = json_number_value(json_object_get(json_array_get(also, 0), "similarity"));
    assert_true(similarity > 0.5 && similarity <= 1);
    assert_int_equal(json_array_size(json_object_get(lines[2], "also_matches")), 0);
    assert_int_equal(summary_count(lines[3], "enrolled"), 3);
    assert_int_equal(summary_count(lines[3], "enrolled_also_matching"), 1);
    assert_int_equal(summary_count(lines[3], "skipped_matches_other_subject"), 0);
    if (!strstr(r.err, "also matches subject a, similarity 0."))
        fail_msg("stderr does not say b also matches a: %s", r.err);
    free_lines(lines, n);
    run_free(&r);

    /* --on-match refuse: obama-2 for a new subject d is skipped (it is b's very photo, and
     * a's man), exit 0, d not created */
    char obama2[PATH_MAX];
    if (!realpath(FIXTURES "/id-obama-2.jpg", obama2)) fail_msg("fixtures: %s", strerror(errno));
    r = RUN("enroll", "--collection", "desk", "--subject", "d", "--on-match", "refuse", "--data",
            data, "--models", MODELS, obama2);
    if (r.status != 0) fail_msg("a skip is no failure: status %d: %s", r.status, r.err);
    n = json_lines(r.out, lines, 8);
    assert_int_equal(n, 2);
    assert_string_equal(status_of(lines[0]), "matches_other_subject");
    const char *reason = json_string_value(json_object_get(lines[0], "reason"));
    if (!reason || !strstr(reason, "matches subject b, similarity 1.000"))
        fail_msg("the reason does not name b (the same photo): %s", reason ? reason : "(none)");
    assert_int_equal(json_array_size(json_object_get(lines[0], "also_matches")), 2);
    assert_null(json_object_get(lines[0], "face_id"));
    assert_int_equal(summary_count(lines[1], "enrolled"), 0);
    assert_int_equal(summary_count(lines[1], "skipped_matches_other_subject"), 1);
    assert_int_equal(
        json_array_size(json_object_get(json_object_get(lines[1], "summary"), "not_enrolled")), 1);
    if (!strstr(r.err, "matches another subject 1"))
        fail_msg("stderr's summary does not count the skip: %s", r.err);
    free_lines(lines, n);
    run_free(&r);
    r = RUN("gallery", "show", "desk", "--data", data);
    assert_int_equal(r.status, 0);
    if (strstr(r.out, "\"subject\":\"d\"")) fail_msg("d was created: %s", r.out);
    assert_non_null(strstr(r.out, "\"faces\":3"));
    run_free(&r);

    /* a's second photo for a: stored, and it names b (the same photo) alone, never a */
    r = RUN("enroll", "--collection", "desk", "--subject", "a", "--data", data, "--models", MODELS,
            obama2);
    assert_int_equal(r.status, 0);
    n = json_lines(r.out, lines, 8);
    assert_string_equal(status_of(lines[0]), "enrolled");
    also = json_object_get(lines[0], "also_matches");
    assert_int_equal(json_array_size(also), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(also, 0), "subject")),
                        "b");
    free_lines(lines, n);
    run_free(&r);
}

static void test_on_match_value(void **state)
{
    (void)state;
    char data[300];
    snprintf(data, sizeof data, "%s/usage", root);
    run_result r = RUN("enroll", "--collection", "desk", "--subject", "s", "--on-match", "maybe",
                       "--data", data, "x.jpg");
    assert_int_equal(r.status, 2);
    assert_string_equal(r.out, "");
    assert_non_null(strstr(r.err, "--on-match maybe: expected store or refuse"));
    run_free(&r);
    r = RUN("enroll", "--help");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "--on-match M"));
    assert_non_null(strstr(r.out, "not a\nuniqueness rule"));
    run_free(&r);
}

/* The search needs the collection's faces in memory: those of the collection enrolled into
 * alone, not every collection's (a large store's other collections cost nothing). */
static void test_loads_its_collection_alone(void **state)
{
    (void)state;
    NEED_INPUTS();
    char data[300], obama1[PATH_MAX];
    snprintf(data, sizeof data, "%s/alone", root);
    if (!realpath(FIXTURES "/id-obama-1.jpg", obama1)) fail_msg("%s", strerror(errno));
    run_result r = RUN("gallery", "create", "big", "--data", data);
    run_free(&r);
    r = RUN("gallery", "create", "small", "--data", data);
    run_free(&r);
    r = RUN("enroll", "--collection", "big", "--subject", "x", "--data", data, "--models", MODELS,
            obama1);
    assert_int_equal(r.status, 0);
    run_free(&r);
    setenv("VULTUS_LOG_LEVEL", "debug", 1);
    r = RUN("enroll", "--collection", "small", "--subject", "y", "--data", data, "--models", MODELS,
            obama1);
    unsetenv("VULTUS_LOG_LEVEL");
    assert_int_equal(r.status, 0);
    if (!strstr(r.err, "collection small alone, 0 faces in memory") ||
        strstr(r.err, "faces loaded"))
        fail_msg("enroll did not load its collection alone: %s", r.err);
    /* and big's face is not small's: no match across collections */
    assert_non_null(strstr(r.out, "\"also_matches\":[]"));
    run_free(&r);
}

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "/tmp/vultus-enroll-dup-XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tc_rm_rf(root);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_also_matches_and_refuse),
        cmocka_unit_test(test_on_match_value),
        cmocka_unit_test(test_loads_its_collection_alone),
    };
    return cmocka_run_group_tests_name("enroll duplicates", tests, setup, teardown);
}
