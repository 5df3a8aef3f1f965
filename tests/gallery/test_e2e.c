/*
 * End to end: the face pipeline and the gallery through the `vultus` program (run as a
 * subprocess, so the CLI is tested too). Eight people of ../shared/data/fixtures/identities
 * are enrolled from <name>1..4.png (seven with `enroll --dir`, one with `enroll --subject`)
 * into a collection of a temporary data folder; <name>5.png must find its own subject first
 * for at least 7 of the 8, and noface-white.png must give "no face". Then the collection
 * commands: show, export, import --as, delete-subject, delete-face, delete.
 *
 * Skipped when models/, ../shared/data/fixtures or the vultus program beside the tests'
 * build folder is absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define FIXTURES "../shared/data/fixtures"
#define COLLECTION "people"

static const char *const people[8] = {"amy",   "bernadette", "howard",  "leonard",
                                      "penny", "raj",        "sheldon", "stuart"};

static struct {
    int ready;
    char vultus[PATH_MAX];
    char tmp[64];
    char fixtures[PATH_MAX];
} e2e;

/* Runs `vultus ARGS` (stdout captured, stderr to the test log); returns the exit status. */
static int run(json_t **lines, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int run(json_t **lines, const char *fmt, ...)
{
    char args[16384], cmd[20000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    int n = snprintf(cmd, sizeof cmd, "VULTUS_LOG_LEVEL=warn '%s' %s --data '%s'", e2e.vultus, args,
                     e2e.tmp);
    assert_true(n > 0 && (size_t)n < sizeof cmd);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    json_t *arr = json_array();
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, p) > 0) {
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        if (!o) fail_msg("vultus %s: not JSON: %s", args, line);
        json_array_append_new(arr, o);
    }
    free(line);
    int status = pclose(p);
    if (lines)
        *lines = arr;
    else
        json_decref(arr);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int setup(void **state)
{
    (void)state;
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 0;
    self[n] = 0;
    /* BUILD/tests/gallery/test_e2e -> BUILD/vultus */
    for (int i = 0; i < 3; i++) {
        char *slash = strrchr(self, '/');
        if (!slash) return 0;
        *slash = 0;
    }
    int len = snprintf(e2e.vultus, sizeof e2e.vultus, "%s/vultus", self);
    if (len < 0 || (size_t)len >= sizeof e2e.vultus) return 0;
    if (access(e2e.vultus, X_OK) != 0 || access("models/human", R_OK) != 0 ||
        access(FIXTURES "/identities", R_OK) != 0 || !realpath(FIXTURES, e2e.fixtures)) {
        print_message("skipping: needs %s, models/ and %s\n", e2e.vultus, FIXTURES);
        return 0;
    }
    snprintf(e2e.tmp, sizeof e2e.tmp, "/tmp/vultus-e2e-XXXXXX");
    if (!mkdtemp(e2e.tmp)) return -1;
    e2e.ready = 1;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    (void)state;
    if (e2e.ready) nftw(e2e.tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

#define NEED_E2E()                                                                                 \
    do {                                                                                           \
        if (!e2e.ready) skip();                                                                    \
    } while (0)

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* Creates the collection and enrols people[1..7] by --dir and people[0] by --subject. */
static void test_enrol(void **state)
{
    (void)state;
    NEED_E2E();
    json_t *out = NULL;
    assert_int_equal(run(&out, "gallery create " COLLECTION), 0);
    assert_int_equal(json_array_size(out), 1);
    json_t *c = json_array_get(out, 0);
    print_message("collection: model %s, dim %d, dtype %s, threshold %.4f\n", str(c, "model"),
                  (int)json_integer_value(json_object_get(c, "dim")), str(c, "dtype"),
                  json_real_value(json_object_get(c, "threshold")));
    json_decref(out);
    /* A second create of the same name is an error. */
    assert_int_equal(run(NULL, "gallery create " COLLECTION " 2>/dev/null"), 1);

    char dir[PATH_MAX], sub[PATH_MAX], src[PATH_MAX], dst[PATH_MAX];
    assert_true(snprintf(dir, sizeof dir, "%s/enrol", e2e.tmp) < (int)sizeof dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    for (int p = 1; p < 8; p++) {
        assert_true(snprintf(sub, sizeof sub, "%s/%s", dir, people[p]) < (int)sizeof sub);
        assert_int_equal(mkdir(sub, 0755), 0);
        for (int i = 1; i <= 4; i++) {
            assert_true(snprintf(src, sizeof src, "%s/identities/%s/%s%d.png", e2e.fixtures,
                                 people[p], people[p], i) < (int)sizeof src);
            assert_true(snprintf(dst, sizeof dst, "%s/%s%d.png", sub, people[p], i) <
                        (int)sizeof dst);
            assert_int_equal(symlink(src, dst), 0);
        }
    }
    assert_int_equal(run(&out, "enroll --collection " COLLECTION " --dir '%s'", dir), 0);
    json_t *summary = json_object_get(json_array_get(out, json_array_size(out) - 1), "summary");
    assert_non_null(summary);
    json_int_t enrolled = json_integer_value(json_object_get(summary, "enrolled"));
    print_message("enroll --dir: %lld enrolled, %lld no face, %lld low quality, %lld failed\n",
                  (long long)enrolled,
                  (long long)json_integer_value(json_object_get(summary, "skipped_no_face")),
                  (long long)json_integer_value(json_object_get(summary, "skipped_low_quality")),
                  (long long)json_integer_value(json_object_get(summary, "failed")));
    assert_true(enrolled >= 26);
    assert_int_equal(json_array_size(out), 7 * 4 + 1);
    json_decref(out);

    const char *a = people[0];
    const char *f = e2e.fixtures;
    assert_int_equal(
        run(&out,
            "enroll --collection " COLLECTION " --subject %s '%s/identities/%s/%s1.png' "
            "'%s/identities/%s/%s2.png' '%s/identities/%s/%s3.png' '%s/identities/%s/%s4.png'",
            a, f, a, a, f, a, a, f, a, a, f, a, a),
        0);
    summary = json_object_get(json_array_get(out, json_array_size(out) - 1), "summary");
    assert_true(json_integer_value(json_object_get(summary, "enrolled")) >= 3);
    json_decref(out);
}

static void test_identities(void **state)
{
    (void)state;
    NEED_E2E();
    char args[8192];
    size_t len = (size_t)snprintf(args, sizeof args, "search --collection " COLLECTION " --top 3");
    for (int p = 0; p < 8; p++)
        len += (size_t)snprintf(args + len, sizeof args - len, " '%s/identities/%s/%s5.png'",
                                e2e.fixtures, people[p], people[p]);
    json_t *out = NULL;
    assert_int_equal(run(&out, "%s", args), 0);
    assert_int_equal(json_array_size(out), 8);
    int correct = 0;
    for (int p = 0; p < 8; p++) {
        json_t *o = json_array_get(out, (size_t)p);
        json_t *faces = json_object_get(o, "faces");
        json_t *subs = json_object_get(json_array_get(faces, 0), "subjects");
        json_t *top = json_array_get(subs, 0), *second = json_array_get(subs, 1);
        int ok = top && strcmp(str(top, "subject"), people[p]) == 0;
        correct += ok;
        print_message("%-10s -> %-10s %.4f %-8s (next %s %.4f; %zu faces) %s\n", people[p],
                      top ? str(top, "subject") : "-",
                      top ? json_real_value(json_object_get(top, "similarity")) : 0,
                      top ? str(top, "decision") : "-", second ? str(second, "subject") : "-",
                      second ? json_real_value(json_object_get(second, "similarity")) : 0,
                      json_array_size(faces), ok ? "ok" : "WRONG");
    }
    print_message("top-1 correct: %d of 8\n", correct);
    assert_true(correct >= 7);
    json_decref(out);
}

static void test_no_face(void **state)
{
    (void)state;
    NEED_E2E();
    if (getenv("VULTUS_SANITIZED")) {
        /* Same as tests/http/test_http_server.c: qsort(NULL, 0) in face_detect on an image
         * without any detection aborts under UBSan. */
        print_message("skipped under sanitizers: qsort(NULL, 0) in face_detect\n");
        skip();
    }
    json_t *out = NULL;
    assert_int_equal(
        run(&out, "search --collection " COLLECTION " '%s/noface-white.png'", e2e.fixtures), 0);
    assert_int_equal(json_array_size(out), 1);
    json_t *o = json_array_get(out, 0);
    print_message("noface-white.png -> result \"%s\", %zu faces\n", str(o, "result"),
                  json_array_size(json_object_get(o, "faces")));
    assert_string_equal(str(o, "result"), "no face");
    assert_int_equal(json_array_size(json_object_get(o, "faces")), 0);
    json_decref(out);
}

static json_int_t show_count(const char *name, const char *what)
{
    json_t *out = NULL;
    if (run(&out, "gallery show %s", name) != 0) {
        json_decref(out);
        return -1;
    }
    json_int_t v = json_integer_value(json_object_get(json_array_get(out, 0), what));
    json_decref(out);
    return v;
}

static void test_collection_commands(void **state)
{
    (void)state;
    NEED_E2E();
    json_int_t faces = show_count(COLLECTION, "faces");
    assert_true(faces >= 29);
    assert_int_equal(show_count(COLLECTION, "subjects"), 8);

    char file[PATH_MAX];
    snprintf(file, sizeof file, "%s/people.vgx", e2e.tmp);
    assert_int_equal(run(NULL, "gallery export " COLLECTION " '%s'", file), 0);
    assert_int_equal(run(NULL, "gallery import '%s' --as copy", file), 0);
    assert_int_equal(show_count("copy", "faces"), faces);

    json_t *out = NULL;
    assert_int_equal(run(&out, "gallery list"), 0);
    assert_int_equal(json_array_size(out), 2);
    json_decref(out);

    /* Delete a subject: its own photo no longer finds it. */
    assert_int_equal(run(NULL, "gallery delete-subject copy sheldon"), 0);
    assert_int_equal(show_count("copy", "subjects"), 7);
    assert_int_equal(run(&out,
                         "search --collection copy --top 1 '%s/identities/sheldon/sheldon5.png'",
                         e2e.fixtures),
                     0);
    json_t *top = json_array_get(
        json_object_get(json_array_get(json_object_get(json_array_get(out, 0), "faces"), 0),
                        "subjects"),
        0);
    assert_non_null(top);
    assert_string_not_equal(str(top, "subject"), "sheldon");
    json_int_t face_id = json_integer_value(json_object_get(top, "face_id"));
    json_decref(out);

    /* Delete a face: one fewer; deleting it again is an error. */
    json_int_t before = show_count("copy", "faces");
    assert_int_equal(run(NULL, "gallery delete-face copy %lld", (long long)face_id), 0);
    assert_int_equal(show_count("copy", "faces"), before - 1);
    assert_int_equal(run(NULL, "gallery delete-face copy %lld 2>/dev/null", (long long)face_id), 1);

    assert_int_equal(run(NULL, "gallery delete copy"), 0);
    assert_int_equal(run(NULL, "gallery show copy 2>/dev/null"), 1);
    assert_int_equal(
        run(NULL, "search --collection nosuch '%s/noface-white.png' 2>/dev/null", e2e.fixtures), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enrol),
        cmocka_unit_test(test_identities),
        cmocka_unit_test(test_no_face),
        cmocka_unit_test(test_collection_commands),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
