/*
 * The command line as a user or a script meets it: the real build/vultus of this test's build
 * run on real files in a temporary folder, its exit status, stdout and stderr checked apart.
 * What every command promises (src/cli/cli.h, README "Commands"): results on stdout (JSON
 * lines where documented), diagnostics on stderr; exit status 0 (done), 1 (something failed),
 * 2 (usage error: a bad option or value, named on stderr, nothing on stdout); `--help` prints
 * the usage on stdout and exits 0. Each case below that once failed names the defect it found.
 *
 * The gallery and keys cases need no models. The ones that analyse photos use models/ and
 * models/samples (skipped without them) and ../shared/data/fixtures when present.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <dirent.h>

#include "base/base.h"
#include "gallery/gallery.h"
#include "http/client.h"
#include "img/img.h"

#define MODELS "models"
#define SAMPLE1 "models/samples/sample1.jpg" /* several faces */
#define FIXTURES "../shared/data/fixtures"
/* A command still running after this long counts as a hang (and is killed). */
static double run_limit_ms = 120000;

/* ---- running vultus ------------------------------------------------------------------- */

typedef struct run_result {
    int status; /* exit status; -1 killed by a signal; -2 still running after run_limit_ms */
    char *out;  /* stdout, NUL-terminated */
    char *err;  /* stderr */
} run_result;

static char temp_root[256];
/* Where the next run's stdout goes instead of a file of ours (then run_result.out is empty). */
static const char *stdout_override;

static void run_free(run_result *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

static char *slurp(const char *path)
{
    char *data = NULL;
    size_t len = 0;
    if (tc_read_file(path, &data, &len) != 0) return strdup("");
    return data;
}

/*
 * Starts `vultus ARGS...` (NULL-terminated) from the repository root with stdin from
 * stdin_path (NULL: /dev/null) and the environment variables of env ("NAME=VALUE", NULL-ended;
 * "NAME=" unsets NAME); stdout and stderr go to files so neither can fill a pipe. Returns its
 * pid, for run_wait (run_env does both).
 */
static pid_t spawn_env(const char *const *env, const char *stdin_path, const char *const *args)
{
    char bin[PATH_MAX], out_path[300], err_path[300];
    if (tc_vultus_path(bin, sizeof bin) != 0) fail_msg("no vultus binary beside the test");
    snprintf(out_path, sizeof out_path, "%s/stdout", temp_root);
    snprintf(err_path, sizeof err_path, "%s/stderr", temp_root);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        /* As from a terminal, whatever ran the tests (a background job ignores SIGINT). */
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        int in = open(stdin_path ? stdin_path : "/dev/null", O_RDONLY);
        int o = stdout_override ? open(stdout_override, O_WRONLY)
                                : open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || o < 0 || e < 0) _exit(126);
        dup2(in, 0);
        dup2(o, 1);
        dup2(e, 2);
        /* The store and log level come from each case, never from the caller's shell; a
         * case that forgets --data gets a sandbox, never the checkout's data/. */
        char sandbox[300];
        snprintf(sandbox, sizeof sandbox, "%s/default-data", temp_root);
        setenv("VULTUS_DATA", sandbox, 1);
        unsetenv("VULTUS_STORE");
        unsetenv("VULTUS_LOG_LEVEL");
        for (int i = 0; env && env[i]; i++) {
            const char *eq = strchr(env[i], '=');
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)(eq - env[i]), env[i]);
            if (eq[1])
                setenv(name, eq + 1, 1);
            else
                unsetenv(name);
        }
        const char *argv[64] = {bin};
        int n = 1;
        for (; args[n - 1] && n < 63; n++)
            argv[n] = args[n - 1];
        argv[n] = NULL;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Waits for the run spawn_env started (killed after run_limit_ms) and reads its output. */
static run_result run_wait(pid_t pid)
{
    run_result r = {.status = -1};
    char out_path[300], err_path[300];
    snprintf(out_path, sizeof out_path, "%s/stdout", temp_root);
    snprintf(err_path, sizeof err_path, "%s/stderr", temp_root);
    double t0 = tc_now_ms();
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) break;
        if (tc_now_ms() - t0 > run_limit_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            r.status = -2;
            break;
        }
        tc_sleep_ms(5);
    }
    if (r.status != -2) r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = stdout_override ? strdup("") : slurp(out_path);
    r.err = slurp(err_path);
    return r;
}

static run_result run_env(const char *const *env, const char *stdin_path, const char *const *args)
{
    return run_wait(spawn_env(env, stdin_path, args));
}

static run_result run(const char *const *args)
{
    return run_env(NULL, NULL, args);
}

#define RUN(...) run((const char *const[]){__VA_ARGS__, NULL})
#define RUN_ENV(env, ...) run_env(env, NULL, (const char *const[]){__VA_ARGS__, NULL})

/* The arguments as one line, for failure messages. */
static const char *args_text(const char *const *args)
{
    static char buf[1024];
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; args[i] && n < sizeof buf - 1; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", i ? " " : "", args[i]);
    return buf;
}

/* A usage error: status 2, nothing on stdout, stderr names `needle` (when given). */
static void expect_usage_error(const char *const *args, const char *needle)
{
    run_result r = run(args);
    if (r.status != 2 || r.out[0] || !r.err[0] || (needle && !strstr(r.err, needle)))
        fail_msg("vultus %s: status %d (want 2), stdout '%.200s', stderr '%.300s' (want '%s')",
                 args_text(args), r.status, r.out, r.err, needle ? needle : "");
    run_free(&r);
}

#define EXPECT_USAGE(needle, ...)                                                                  \
    expect_usage_error((const char *const[]){__VA_ARGS__, NULL}, needle)

/* Every line of text is a JSON object; returns how many, or -1 with the bad line shown. */
static int json_lines(const char *text, json_t **objs, int cap)
{
    int n = 0;
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        if (!nl) {
            print_error("output does not end with a newline: '%.200s'\n", p);
            return -1;
        }
        json_error_t jerr;
        json_t *o = json_loadb(p, (size_t)(nl - p), 0, &jerr);
        if (!json_is_object(o)) {
            print_error("not a JSON object line: '%.*s'\n", (int)(nl - p > 300 ? 300 : nl - p), p);
            json_decref(o);
            return -1;
        }
        if (n < cap)
            objs[n] = o;
        else
            json_decref(o);
        n++;
        p = nl + 1;
    }
    return n;
}

static void json_free_all(json_t **objs, int n)
{
    for (int i = 0; i < n; i++)
        json_decref(objs[i]);
}

static int have_models(void)
{
    return access(MODELS "/human/blazeface-back.json", R_OK) == 0 && access(SAMPLE1, R_OK) == 0 &&
           access(MODELS "/faceapi", R_OK) == 0;
}

#define SKIP_WITHOUT_MODELS()                                                                      \
    do {                                                                                           \
        if (!have_models()) {                                                                      \
            print_message("skipped: no models/ (run tools/fetch-models)\n");                       \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* temp_root/NAME into buf[300]. */
static const char *tmp_path(char *buf, const char *name)
{
    snprintf(buf, 300, "%s/%s", temp_root, name);
    return buf;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* A white PNG without a face. */
static void write_blank_png(const char *path)
{
    img_image im = {.width = 320, .height = 240, .channels = 3};
    im.data = malloc((size_t)320 * 240 * 3);
    assert_non_null(im.data);
    memset(im.data, 255, (size_t)320 * 240 * 3);
    uint8_t *png = NULL;
    size_t len = 0;
    assert_int_equal(img_encode_png(&im, &png, &len), 0);
    write_file(path, png, len);
    free(png);
    free(im.data);
}

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xffffffffu;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A PNG whose header says 30000 x 30000 gray pixels (900 megapixels), with no pixel data. */
static void write_huge_png(const char *path)
{
    uint8_t png[8 + 25 + 12];
    memcpy(png, "\x89PNG\r\n\x1a\n", 8);
    put_be32(png + 8, 13);
    memcpy(png + 12, "IHDR", 4);
    put_be32(png + 16, 30000);
    put_be32(png + 20, 30000);
    memcpy(png + 24, "\x08\x00\x00\x00\x00", 5);
    put_be32(png + 29, crc32_of(png + 12, 17));
    put_be32(png + 33, 0);
    memcpy(png + 37, "IEND", 4);
    put_be32(png + 41, crc32_of((const uint8_t *)"IEND", 4));
    write_file(path, png, sizeof png);
}

/* A fresh data folder (removed first) at temp_root/NAME, into buf[300]. */
static const char *fresh_data(char *buf, const char *name)
{
    tmp_path(buf, name);
    tc_rm_rf(buf);
    return buf;
}

/* `vultus gallery list --data DIR` as JSON objects; returns the count. */
static int gallery_list(const char *data, json_t **objs, int cap)
{
    run_result r = RUN("gallery", "list", "--data", data);
    assert_int_equal(r.status, 0);
    int n = json_lines(r.out, objs, cap);
    assert_true(n >= 0);
    run_free(&r);
    return n;
}

/* ---- every command: --help, bad options, missing values -------------------------------- */

static void test_help_on_stdout_exit_0(void **state)
{
    (void)state;
    /* `--help` after the subcommand too: `vultus keys create --help` exited 2 with "unexpected
     * argument '--help'", and `vultus bench load --help` ran the benchmark (its arguments
     * were never parsed). */
    static const char *const cases[][4] = {
        {"--help"},
        {"analyze", "--help"},
        {"eval", "--help"},
        {"eval", "lfw", "--help"},
        {"gallery", "--help"},
        {"--help"},
        {"gallery", "create", "--help"},
        {"gallery", "list", "--help"},
        {"enroll", "--help"},
        {"search", "--help"},
        {"serve", "--help"},
        {"keys", "--help"},
        {"keys", "create", "--help"},
        {"keys", "list", "--help"},
        {"keys", "revoke", "--help"},
        {"nn", "--help"},
        {"nn", "info", "--help"},
        {"bench", "--help"},
        {"bench", "nn", "--help"},
        {"bench", "peak", "--help"},
        {"bench", "load", "--help"},
        {"bench", "pipeline", "--help"},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_result r = run(cases[i]);
        if (r.status != 0 || strncmp(r.out, "usage: vultus", 13) != 0 || r.err[0]) {
            print_error("vultus %s: status %d, stdout '%.80s', stderr '%.200s'\n",
                        args_text(cases[i]), r.status, r.out, r.err);
            bad++;
        }
        run_free(&r);
    }
    assert_int_equal(bad, 0);
}

/*
 * `vultus --help` names every gallery subcommand that `vultus gallery` dispatches, and the
 * same ones `vultus gallery --help` describes. Defect: the top-level line was a hand-written
 * "create|list|show|delete|export|import" and left out delete-face and delete-subject.
 */
static void test_help_lists_every_gallery_command(void **state)
{
    (void)state;
    run_result top = run((const char *const[]){"--help", NULL});
    assert_int_equal(top.status, 0);
    const char *line = strstr(top.out, "vultus gallery ");
    assert_non_null(line);
    line += strlen("vultus gallery ");
    char listed[512];
    size_t n = strcspn(line, " \n");
    assert_true(n < sizeof listed);
    memcpy(listed, line, n);
    listed[n] = 0;
    run_free(&top);

    /* The subcommands `vultus gallery --help` describes: lines "  NAME ..." (two spaces). */
    run_result sub = run((const char *const[]){"gallery", "--help", NULL});
    assert_int_equal(sub.status, 0);
    char described[512] = "";
    for (const char *p = sub.out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (p[0] == ' ' && p[1] == ' ' && p[2] >= 'a' && p[2] <= 'z') {
            size_t w = strcspn(p + 2, " \n");
            snprintf(described + strlen(described), sizeof described - strlen(described), "%s%.*s",
                     described[0] ? "|" : "", (int)w, p + 2);
        }
    }
    run_free(&sub);
    if (strcmp(listed, described) != 0)
        fail_msg("vultus --help lists gallery '%s', vultus gallery --help describes '%s'", listed,
                 described);
    assert_non_null(strstr(listed, "delete-face"));
    assert_non_null(strstr(listed, "delete-subject"));

    /* Each one is a command the dispatcher knows (a wrong argument count, not "unknown"). */
    char *save = NULL;
    for (char *w = strtok_r(listed, "|", &save); w; w = strtok_r(NULL, "|", &save)) {
        run_result r = run((const char *const[]){"gallery", w, "a", "b", "c", NULL});
        if (r.status != 2 || strstr(r.err, "unknown command") || !strstr(r.err, "expected"))
            fail_msg("vultus gallery %s a b c: status %d, stderr '%.200s'", w, r.status, r.err);
        run_free(&r);
    }
}

static void test_unknown_option_is_usage_error(void **state)
{
    (void)state;
    /* `vultus bench load --bogus` ran the benchmark: bench load ignored every argument but a
     * leading --models DIR. */
    static const char *const cases[][5] = {
        {"bogus"},
        {"analyze", "--bogus", "x.jpg"},
        {"eval", "lfw", "--bogus"},
        {"gallery", "list", "--bogus"},
        {"enroll", "--bogus"},
        {"search", "--bogus"},
        {"serve", "--bogus", "1"},
        {"keys", "list", "--bogus"},
        {"nn", "info", "--bogus", "m.json"},
        {"bench", "nn", "--bogus"},
        {"bench", "peak", "--bogus"},
        {"bench", "load", "--bogus"},
        {"bench", "pipeline", "--bogus", "x.jpg"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_usage_error(cases[i], "bogus");
}

static void test_no_arguments_is_usage_error(void **state)
{
    (void)state;
    static const char *const cases[][3] = {
        {NULL},
        {"analyze"},
        {"eval"},
        {"gallery"},
        {"enroll"},
        {"search"},
        {"keys"},
        {"nn"},
        {"bench"},
        {"nn", "info"},
        {"bench", "pipeline"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_usage_error(cases[i], "usage");
}

static void test_missing_value_is_usage_error(void **state)
{
    (void)state;
    EXPECT_USAGE("max-faces", "analyze", "x.jpg", "--max-faces");
    EXPECT_USAGE("top", "search", "--collection", "c", "x.jpg", "--top");
    EXPECT_USAGE("threshold", "gallery", "create", "c", "--threshold");
    EXPECT_USAGE("data", "gallery", "list", "--data");
    EXPECT_USAGE("scope", "keys", "create", "--scope");
    EXPECT_USAGE("workers", "serve", "--workers");
    /* serve takes no arguments: "--" said "-- needs a value". */
    EXPECT_USAGE("unexpected argument '--'", "serve", "--");
    EXPECT_USAGE("unexpected argument '--=5'", "serve", "--=5");
    EXPECT_USAGE("runs", "bench", "nn", "--runs");
    /* `vultus bench load --models` (no folder) loaded the default folder. */
    EXPECT_USAGE("models", "bench", "load", "--models");
}

static void test_bad_numbers_are_usage_errors(void **state)
{
    (void)state;
    EXPECT_USAGE("--top", "search", "--collection", "c", "--top", "99999999999", "x.jpg");
    EXPECT_USAGE("--top", "search", "--collection", "c", "--top", "0", "x.jpg");
    EXPECT_USAGE("--top", "search", "--collection", "c", "--top", "5x", "x.jpg");
    EXPECT_USAGE("--max-faces", "analyze", "--max-faces", "-1", "x.jpg");
    EXPECT_USAGE("--min-face", "analyze", "--min-face", "99999999999", "x.jpg");
    EXPECT_USAGE("--min-score", "analyze", "--min-score", "nan", "x.jpg");
    EXPECT_USAGE("--threshold", "gallery", "create", "c", "--threshold", "2");
    EXPECT_USAGE("--threads", "eval", "lfw", "--threads", "0");
    EXPECT_USAGE("--workers", "serve", "--workers", "99999999999");
    EXPECT_USAGE("--batch", "bench", "nn", "--batch", "1,,2");
    /* An empty value is not a number: `--threshold ""` created a collection with threshold
     * 0, where nearly every face matches, and `--min-quality ""` enrolled with 0. */
    EXPECT_USAGE("--threshold", "gallery", "create", "c", "--threshold", "");
    EXPECT_USAGE("--min-quality", "enroll", "--collection", "c", "--subject", "s", "--min-quality",
                 "", "x.jpg");
    EXPECT_USAGE("--min-score", "analyze", "--min-score", "", "x.jpg");
    /* A face id past the range of int64 was read as 9223372036854775807. */
    EXPECT_USAGE("99999999999999999999999", "gallery", "delete-face", "c",
                 "99999999999999999999999");
    EXPECT_USAGE("face id", "gallery", "delete-face", "c", "0");
    /* An empty folder (`--data "$DIR"`, DIR unset) named /vultus.db or /human/...json. */
    EXPECT_USAGE("--data", "gallery", "list", "--data", "");
    EXPECT_USAGE("--data", "search", "--collection", "c", "--data", "", "x.jpg");
    EXPECT_USAGE("--models", "enroll", "--collection", "c", "--subject", "s", "--models", "",
                 "x.jpg");
    EXPECT_USAGE("--models", "analyze", "--models", "", "x.jpg");
    EXPECT_USAGE("--data", "keys", "list", "--data", "");
    /* --draw writes PNG or JPEG by the name; out.gif got PNG bytes. */
    EXPECT_USAGE("--draw", "analyze", "--draw", "out.gif", "x.jpg");
    EXPECT_USAGE("--draw", "analyze", "--draw", "out", "x.jpg");
    /* eval's --min-face-size is analyze's --min-face: both names, both checked. */
    EXPECT_USAGE("positive integer", "analyze", "--min-face-size", "0", "x.jpg");
    /* An empty stage list ran detection alone, silently. */
    EXPECT_USAGE("--stages", "analyze", "--stages", "", "x.jpg");
    EXPECT_USAGE("--stages", "analyze", "--stages", "detect,", "x.jpg");
    EXPECT_USAGE("--stages", "analyze", "--stages", "detect,bogus", "x.jpg");
}

static void test_log_level_env(void **state)
{
    (void)state;
    /* A bad VULTUS_LOG_LEVEL is a usage error of every command; "off" silences the gallery's
     * info lines (stderr empty), "debug" adds to stderr only: stdout stays the JSON. */
    char data[300];
    fresh_data(data, "log-level");
    run_result r = RUN_ENV(((const char *[]){"VULTUS_LOG_LEVEL=bogus", NULL}), "gallery", "create",
                           "c", "--data", data);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "VULTUS_LOG_LEVEL=bogus"));
    assert_false(tc_exists(data));
    run_free(&r);
    r = RUN_ENV(((const char *[]){"VULTUS_LOG_LEVEL=off", NULL}), "gallery", "create", "c",
                "--data", data);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "");
    run_free(&r);
    r = RUN_ENV(((const char *[]){"VULTUS_LOG_LEVEL=debug", NULL}), "gallery", "list", "--data",
                data);
    assert_int_equal(r.status, 0);
    assert_true(r.err[0] != '\0');
    json_t *objs[4];
    assert_int_equal(json_lines(r.out, objs, 4), 1);
    assert_string_equal(json_string_value(json_object_get(objs[0], "name")), "c");
    json_free_all(objs, 1);
    run_free(&r);
    tc_rm_rf(data);
}

static void test_unwritable_stdout_fails(void **state)
{
    (void)state;
    /* Results that cannot be written (stdout on a full disk: /dev/full) are a failure, named
     * on stderr; every command exited 0 with its output lost. A usage error stays 2. */
    char data[300];
    fresh_data(data, "full");
    run_result r = RUN("gallery", "create", "c", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    r = RUN("keys", "create", "--scope", "read", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    const char *const cases[][5] = {
        {"gallery", "list", "--data", data},
        {"gallery", "--help"},
        {"keys", "list", "--data", data},
        {"nn", "info", "--json", MODELS "/human/blazeface-back.json"},
    };
    stdout_override = "/dev/full";
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (strcmp(cases[i][0], "nn") == 0 && access(cases[i][3], R_OK) != 0) continue;
        r = run(cases[i]);
        if (r.status != 1 || !strstr(r.err, "cannot write"))
            fail_msg("vultus %s > /dev/full: status %d, stderr '%.200s'", args_text(cases[i]),
                     r.status, r.err);
        run_free(&r);
    }
    r = RUN("gallery", "bogus");
    assert_int_equal(r.status, 2);
    run_free(&r);
    stdout_override = NULL;
    tc_rm_rf(data);
}

/* ---- gallery -------------------------------------------------------------------------- */

static void test_gallery_names_and_missing(void **state)
{
    (void)state;
    char data[300];
    fresh_data(data, "gallery-names");
    /* No store yet: list says where it looked, status 1, and creates nothing. */
    run_result r = RUN("gallery", "list", "--data", data);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "no gallery at"));
    assert_string_equal(r.out, "");
    assert_false(tc_exists(data));
    run_free(&r);

    char name64[65], name65[66];
    memset(name64, 'a', 64);
    name64[64] = '\0';
    memset(name65, 'a', 65);
    name65[65] = '\0';
    r = RUN("gallery", "create", name64, "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    static const char *const bad[] = {"", "a/b", "..", "\xc3\xa9t\xc3\xa9", NULL};
    for (int i = 0; bad[i]; i++) {
        r = RUN("gallery", "create", bad[i], "--data", data);
        if (r.status != 1 || r.out[0] || !strstr(r.err, "collection name"))
            fail_msg("create '%s': status %d, stderr '%.200s'", bad[i], r.status, r.err);
        run_free(&r);
    }
    r = RUN("gallery", "create", name65, "--data", data);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "longer than 64"));
    run_free(&r);
    r = RUN("gallery", "create", name64, "--data", data);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "already exists"));
    run_free(&r);
    /* Twice deleted: the second time "not found", status 1. */
    r = RUN("gallery", "delete", name64, "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    r = RUN("gallery", "delete", name64, "--data", data);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "does not exist"));
    assert_string_equal(r.out, "");
    run_free(&r);
    json_t *objs[4];
    assert_int_equal(gallery_list(data, objs, 4), 0);
    /* Options before the command as after it: "gallery --data D create x" was "unknown
     * command '--data'". */
    r = RUN("gallery", "--data", data, "create", "x");
    assert_int_equal(r.status, 0);
    run_free(&r);
    int n = gallery_list(data, objs, 4);
    assert_int_equal(n, 1);
    assert_string_equal(json_string_value(json_object_get(objs[0], "name")), "x");
    json_free_all(objs, n);
    EXPECT_USAGE("which command", "gallery", "--data", data);
    tc_rm_rf(data);
}

/* `gallery export C FILE` onto a FILE that exists refuses (status 1, nothing on stdout, FILE
 * as it was) unless --force. Defect: it replaced the file without a word. */
static void test_gallery_export_keeps_an_existing_file(void **state)
{
    (void)state;
    char data[300], out_dir[300], file[400];
    fresh_data(data, "gallery-export");
    tmp_path(out_dir, "export-out");
    tc_rm_rf(out_dir);
    assert_int_equal(mkdir(out_dir, 0700), 0);
    snprintf(file, sizeof file, "%s/c.vgal", out_dir);
    run_result r = RUN("gallery", "create", "c", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    write_file(file, "precious\n", 9);
    r = RUN("gallery", "export", "c", file, "--data", data);
    if (r.status != 1 || r.out[0] || !strstr(r.err, "exists") || !strstr(r.err, "--force"))
        fail_msg("export onto an existing file: status %d, stdout '%.100s', stderr '%.200s'",
                 r.status, r.out, r.err);
    run_free(&r);
    char *kept = slurp(file);
    assert_string_equal(kept, "precious\n");
    free(kept);
    /* --force belongs to export: elsewhere it is a usage error, not silently ignored */
    EXPECT_USAGE("--force", "gallery", "list", "--force", "--data", data);
    /* With --force the file is replaced by a complete export (it imports), and nothing else
     * is left in the folder (the export is written beside it and renamed). */
    r = RUN("gallery", "export", "c", file, "--force", "--data", data);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"exported\""));
    run_free(&r);
    r = RUN("gallery", "import", file, "--as", "copy", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    DIR *d = opendir(out_dir);
    assert_non_null(d);
    int entries = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') entries++;
    closedir(d);
    assert_int_equal(entries, 1);
    /* A new file needs no --force. */
    snprintf(file, sizeof file, "%s/new.vgal", out_dir);
    r = RUN("gallery", "export", "c", file, "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    tc_rm_rf(out_dir);
    tc_rm_rf(data);
}

/*
 * A collection "big" of `faces` faces (one subject, a 4 KB stand-in thumbnail each: an
 * export of ~80 MB at 20000) in the store under data, through the library: enrolling that
 * many photos through the CLI would take minutes.
 */
static void make_big_collection(const char *data, size_t faces)
{
    run_result r = RUN("gallery", "create", "big", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    char db[400];
    snprintf(db, sizeof db, "%s/vultus.db", data);
    struct gal_options opts = {.durability = GAL_DURABLE_PROCESS, .store_only = 1};
    struct gal *g = NULL;
    assert_int_equal(gal_open(db, &opts, &g), 0);
    struct gal_collection_info info;
    assert_int_equal(gal_collection_get(g, "big", &info), 0);
    assert_int_equal(gal_subject_add(g, "big", "s", NULL), 0);
    enum { BATCH = 1000, THUMB = 4096 };
    static uint8_t thumb[THUMB] = {0xff, 0xd8, 0xff};
    float *emb = malloc((size_t)BATCH * info.dim * sizeof(float));
    struct gal_face_input *in = calloc(BATCH, sizeof *in);
    int64_t *ids = calloc(BATCH, sizeof *ids);
    assert_true(emb && in && ids);
    uint32_t seed = 1;
    for (size_t done = 0; done < faces; done += BATCH) {
        size_t n = faces - done < BATCH ? faces - done : BATCH;
        for (size_t i = 0; i < n; i++) {
            for (uint32_t d = 0; d < info.dim; d++) {
                seed = seed * 1664525u + 1013904223u;
                emb[i * info.dim + d] = (float)(seed >> 8) / 16777216.0f - 0.5f;
            }
            in[i] = (struct gal_face_input){.subject_id = "s",
                                            .model_id = info.model_id,
                                            .dim = info.dim,
                                            .embedding = emb + i * info.dim,
                                            .box = {0, 0, 100, 100},
                                            .quality = 0.9f,
                                            .thumbnail = thumb,
                                            .thumbnail_len = THUMB};
        }
        assert_int_equal(gal_faces_add(g, "big", in, n, ids), 0);
    }
    free(ids);
    free(in);
    free(emb);
    gal_close(g);
}

/* The names in folder dir that start with prefix, into names (cap): returns the count. */
static int names_starting(const char *dir, const char *prefix, char names[][256], int cap)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (!strncmp(e->d_name, prefix, strlen(prefix))) {
            if (n < cap) snprintf(names[n], 256, "%s", e->d_name);
            n++;
        }
    closedir(d);
    return n;
}

/*
 * Ctrl-C or SIGTERM during `gallery export FILE`: the export stops, its temporary file is
 * removed and FILE is not written; status 130 (143). Defect: the signal's default action
 * ended the process with FILE.tmp.XXXXXX, half-written, left beside FILE. The signal is sent
 * while the temporary file exists: the export is stopped (SIGSTOP) as soon as it appears, so
 * the signal cannot come after the rename by chance; an export that finished before it was
 * caught (a slow poller) is tried again.
 */
static void test_gallery_export_interrupted_leaves_nothing(void **state)
{
    (void)state;
    char data[300], out_dir[300], file[400];
    fresh_data(data, "export-interrupted");
    tmp_path(out_dir, "export-interrupted-out");
    tc_rm_rf(out_dir);
    assert_int_equal(mkdir(out_dir, 0700), 0);
    snprintf(file, sizeof file, "%s/big.vgal", out_dir);
    make_big_collection(data, 20000);
    static const int sigs[] = {SIGINT, SIGTERM};
    for (int k = 0; k < 2; k++) {
        int caught = 0;
        for (int attempt = 0; attempt < 5 && !caught; attempt++) {
            unlink(file);
            pid_t pid = spawn_env(
                NULL, NULL,
                (const char *const[]){"gallery", "export", "big", file, "--data", data, NULL});
            char names[4][256];
            for (double t0 = tc_now_ms(); tc_now_ms() - t0 < run_limit_ms;) {
                if (names_starting(out_dir, "big.vgal.tmp.", names, 4) > 0) {
                    kill(pid, SIGSTOP);
                    /* still there once stopped: the signal comes before the rename */
                    caught = names_starting(out_dir, "big.vgal.tmp.", names, 4) > 0;
                    break;
                }
                siginfo_t info = {0}; /* ended (left for run_wait to reap) */
                if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
                    info.si_pid)
                    break;
            }
            if (caught) kill(pid, sigs[k]);
            kill(pid, SIGCONT);
            run_result r = run_wait(pid);
            if (caught) {
                int left = names_starting(out_dir, "big.vgal", names, 4);
                if (r.status != 128 + sigs[k] || left != 0 || !strstr(r.err, "interrupted"))
                    fail_msg("export after %s: status %d (want %d), %d file(s) left (first "
                             "'%s'), stderr '%.300s'",
                             strsignal(sigs[k]), r.status, 128 + sigs[k], left,
                             left ? names[0] : "", r.err);
                assert_string_equal(r.out, "");
            } else {
                assert_int_equal(r.status, 0); /* finished before it was caught */
            }
            run_free(&r);
        }
        if (!caught) fail_msg("the export's temporary file was never seen in 5 exports");
    }
    /* Uninterrupted, the same export completes (the signal handlers cost nothing). */
    unlink(file);
    run_result r = RUN("gallery", "export", "big", file, "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    r = RUN("gallery", "import", file, "--as", "copy", "--data", data);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"faces\":20000"));
    run_free(&r);
    tc_rm_rf(out_dir);
    tc_rm_rf(data);
}

/* `gallery set-threshold C T` changes a collection's threshold from the command line. Defect:
 * only the HTTP API (PATCH) could; the CLI had no way after `create`. */
static void test_gallery_set_threshold(void **state)
{
    (void)state;
    char data[300];
    fresh_data(data, "gallery-threshold");
    run_result r = RUN("gallery", "create", "c", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    r = RUN("gallery", "set-threshold", "c", "0.5", "--data", data);
    if (r.status != 0) fail_msg("set-threshold: status %d, stderr '%.200s'", r.status, r.err);
    json_t *objs[4];
    int n = json_lines(r.out, objs, 4);
    assert_int_equal(n, 1);
    assert_float_equal(json_number_value(json_object_get(objs[0], "threshold")), 0.5, 1e-6);
    json_free_all(objs, n);
    run_free(&r);
    n = gallery_list(data, objs, 4);
    assert_int_equal(n, 1);
    assert_float_equal(json_number_value(json_object_get(objs[0], "threshold")), 0.5, 1e-6);
    json_free_all(objs, n);
    EXPECT_USAGE("[-1, 1]", "gallery", "set-threshold", "c", "1.5", "--data", data);
    EXPECT_USAGE("[-1, 1]", "gallery", "set-threshold", "c", "high", "--data", data);
    r = RUN("gallery", "set-threshold", "nope", "0.5", "--data", data);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "does not exist"));
    assert_string_equal(r.out, "");
    run_free(&r);
    tc_rm_rf(data);
}

/* A negative number where a number is expected is that number, not an option: cosine
 * thresholds can be negative. Defect: `gallery set-threshold c -0.5` failed with "gallery:
 * invalid option -- '0'" (status 2) and needed "--" before the number. */
static void test_negative_numbers_are_numbers(void **state)
{
    (void)state;
    char data[300];
    fresh_data(data, "negative-numbers");
    run_result r = RUN("gallery", "create", "c", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    /* the number before the options, after them, after "--", and an option's value; "D" is
     * the data folder */
    static const char *const cases[][8] = {
        {"gallery", "set-threshold", "c", "-0.5", "--data", "D"},
        {"gallery", "--data", "D", "set-threshold", "c", "-0.25"},
        {"gallery", "set-threshold", "c", "--data", "D", "--", "-1"},
        {"gallery", "set-threshold", "c", "-1e-1", "--data", "D"},
        {"gallery", "create", "d", "--threshold", "-0.75", "--data", "D"},
        {"gallery", "create", "e", "--threshold=-0.125", "--data", "D"},
    };
    static const double want[] = {-0.5, -0.25, -1, -0.1, -0.75, -0.125};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *args[9] = {0};
        for (int k = 0; k < 8 && cases[i][k]; k++)
            args[k] = strcmp(cases[i][k], "D") ? cases[i][k] : data;
        r = run(args);
        if (r.status != 0)
            fail_msg("vultus %s: status %d, stderr '%.300s'", args_text(args), r.status, r.err);
        json_t *objs[2];
        assert_int_equal(json_lines(r.out, objs, 2), 1);
        assert_float_equal(json_number_value(json_object_get(objs[0], "threshold")), want[i],
                           1e-6);
        json_free_all(objs, 1);
        run_free(&r);
    }
    /* Text that is not a whole number is still an option, unknown; "--" still ends options. */
    EXPECT_USAGE("invalid option", "gallery", "set-threshold", "c", "-0.5x", "--data", data);
    EXPECT_USAGE("unrecognized option", "gallery", "set-threshold", "c", "--bogus", "--data",
                 data);
    EXPECT_USAGE("[-1, 1]", "gallery", "set-threshold", "c", "-1.5", "--data", data);
    EXPECT_USAGE("[-1, 1]", "gallery", "--data", data, "set-threshold", "c", "--", "-2");
    EXPECT_USAGE("expected 2 argument(s), got 3", "gallery", "set-threshold", "c", "-0.5", "-1",
                 "--data", data);
    /* search's --threshold takes a negative value as before */
    EXPECT_USAGE("[-1, 1]", "search", "--collection", "c", "--threshold", "-2", "--data", data,
                 "x.jpg");
    tc_rm_rf(data);
}

/* A subject or face the collection does not have: the message names the collection too.
 * Defect: `gallery delete-subject c nobody` said only 'subject "nobody" does not exist'. */
static void test_gallery_not_found_names_the_collection(void **state)
{
    (void)state;
    char data[300];
    fresh_data(data, "gallery-not-found");
    run_result r = RUN("gallery", "create", "c", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    r = RUN("gallery", "delete-subject", "c", "nobody", "--data", data);
    if (r.status != 1 || r.out[0] || !strstr(r.err, "subject \"nobody\" does not exist") ||
        !strstr(r.err, "collection \"c\""))
        fail_msg("delete-subject c nobody: status %d, stderr '%.200s'", r.status, r.err);
    run_free(&r);
    r = RUN("gallery", "delete-face", "c", "12345", "--data", data);
    if (r.status != 1 || r.out[0] || !strstr(r.err, "12345") || !strstr(r.err, "collection \"c\""))
        fail_msg("delete-face c 12345: status %d, stderr '%.200s'", r.status, r.err);
    run_free(&r);
    /* A missing collection is named once, as before. */
    r = RUN("gallery", "delete-subject", "nope", "nobody", "--data", data);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "collection \"nope\" does not exist"));
    assert_null(strstr(r.err, "in collection"));
    run_free(&r);
    tc_rm_rf(data);
}

/* docs/gallery.md's paragraph on `--min-quality` states the default `vultus enroll --help`
 * prints, and that the HTTP enrol route refuses the same faces (422 low_quality, min_quality).
 * Defect: it described the CLI only, so an API user could not tell the two agree. */
static void test_docs_min_quality_cli_and_http(void **state)
{
    (void)state;
    run_result r = RUN("enroll", "--help");
    assert_int_equal(r.status, 0);
    const char *d = strstr(r.out, "--min-quality Q");
    assert_non_null(d);
    d = strstr(d, "(default ");
    assert_non_null(d);
    char def[32];
    size_t n = strcspn(d + 9, ")");
    assert_true(n > 0 && n < sizeof def);
    memcpy(def, d + 9, n);
    def[n] = 0;
    run_free(&r);
    char *doc = slurp("docs/gallery.md");
    const char *p = strstr(doc, "below `--min-quality`");
    if (!p) fail_msg("docs/gallery.md: no \"below `--min-quality`\"");
    /* the rest of that list item: up to the next item */
    const char *end = strstr(p, "\n- ");
    char item[2048];
    snprintf(item, sizeof item, "%.*s", (int)(end ? end - p : (long)strlen(p)), p);
    char want_default[64];
    snprintf(want_default, sizeof want_default, "default %s", def);
    if (!strstr(item, want_default) || !strstr(item, "422") || !strstr(item, "low_quality") ||
        !strstr(item, "`min_quality`"))
        fail_msg("docs/gallery.md on --min-quality (CLI default %s) lacks the HTTP route's "
                 "422 low_quality / min_quality: '%.300s'",
                 def, item);
    free(doc);
}

/* DATA/vultus.db holds face thumbnails and embeddings: a data folder `vultus gallery` creates
 * is its owner's only, as one `vultus serve` or `vultus keys create` creates (7631593; the
 * CLI's said 0755, so with SQLite's 0644 file every local user could read every face). A
 * folder that exists keeps its mode. */
static void test_gallery_data_folder_private(void **state)
{
    (void)state;
    char data[300];
    fresh_data(data, "gallery-private");
    run_result r = RUN("gallery", "create", "c", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    struct stat st;
    assert_int_equal(stat(data, &st), 0);
    if (st.st_mode & 077)
        fail_msg("gallery create made %s with mode %03o", data, (unsigned)(st.st_mode & 0777));
    tc_rm_rf(data);
    assert_int_equal(mkdir(data, 0755), 0);
    assert_int_equal(chmod(data, 0755), 0); /* whatever the umask */
    r = RUN("gallery", "create", "c", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    assert_int_equal(stat(data, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0755);
    tc_rm_rf(data);
}

static void test_gallery_import_reports_the_imported_collection(void **state)
{
    (void)state;
    /* `gallery import FILE` without --as reported the collection with the newest created_ms;
     * an import keeps the exported collection's created_ms, so it named another collection
     * (here zz, created after c1 was exported) as the one imported. */
    char data[300], file[300];
    fresh_data(data, "gallery-import");
    tmp_path(file, "c1.vgal");
    run_result r = RUN("gallery", "create", "c1", "--data", data, "--dtype", "f16");
    assert_int_equal(r.status, 0);
    run_free(&r);
    r = RUN("gallery", "export", "c1", file, "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    r = RUN("gallery", "delete", "c1", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    tc_sleep_ms(5);
    r = RUN("gallery", "create", "zz", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    r = RUN("gallery", "import", file, "--data", data);
    assert_int_equal(r.status, 0);
    json_t *objs[4];
    assert_int_equal(json_lines(r.out, objs, 4), 1);
    assert_string_equal(json_string_value(json_object_get(objs[0], "name")), "c1");
    assert_string_equal(json_string_value(json_object_get(objs[0], "dtype")), "f16");
    assert_string_equal(json_string_value(json_object_get(objs[0], "imported")), file);
    json_free_all(objs, 1);
    run_free(&r);
    /* With --as: that name. */
    r = RUN("gallery", "import", file, "--as", "c2", "--data", data);
    assert_int_equal(r.status, 0);
    assert_int_equal(json_lines(r.out, objs, 4), 1);
    assert_string_equal(json_string_value(json_object_get(objs[0], "name")), "c2");
    json_free_all(objs, 1);
    run_free(&r);
    tc_rm_rf(data);
}

static void test_gallery_import_bad_files_leave_nothing(void **state)
{
    (void)state;
    char data[300], file[300], trunc[300], garbage[300];
    fresh_data(data, "gallery-import-bad");
    tmp_path(file, "good.vgal");
    tmp_path(trunc, "trunc.vgal");
    tmp_path(garbage, "garbage.vgal");
    run_result r = RUN("gallery", "create", "c1", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    r = RUN("gallery", "export", "c1", file, "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    char *bytes = NULL;
    size_t len = 0;
    assert_int_equal(tc_read_file(file, &bytes, &len), 0);
    assert_true(len > 20);
    write_file(trunc, bytes, len - 7);
    free(bytes);
    write_file(garbage, "not a gallery export\n", 21);
    const char *const bad[] = {trunc, garbage, temp_root, "/nonexistent/x.vgal", NULL};
    for (int i = 0; bad[i]; i++) {
        r = RUN("gallery", "import", bad[i], "--as", "c9", "--data", data);
        if (r.status != 1 || r.out[0] || !r.err[0])
            fail_msg("import %s: status %d, stdout '%.100s', stderr '%.200s'", bad[i], r.status,
                     r.out, r.err);
        run_free(&r);
    }
    /* Over an existing name: refused, the original kept. */
    r = RUN("gallery", "import", file, "--data", data);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "already exists"));
    run_free(&r);
    json_t *objs[4];
    int n = gallery_list(data, objs, 4);
    assert_int_equal(n, 1);
    assert_string_equal(json_string_value(json_object_get(objs[0], "name")), "c1");
    json_free_all(objs, n);
    /* Export to a folder that does not exist, or onto a folder: status 1, nothing left. */
    r = RUN("gallery", "export", "c1", "/nonexistent/x.vgal", "--data", data);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.out, "");
    run_free(&r);
    r = RUN("gallery", "export", "c1", temp_root, "--data", data);
    assert_int_equal(r.status, 1);
    run_free(&r);
    tc_rm_rf(data);
}

/* ---- keys ----------------------------------------------------------------------------- */

static int count_key_rows(const char *data)
{
    run_result r = RUN("keys", "list", "--data", data);
    assert_int_equal(r.status, 0);
    int lines = 0;
    for (const char *p = r.out; *p; p++)
        lines += *p == '\n';
    run_free(&r);
    return lines - 1; /* the header */
}

static void test_keys(void **state)
{
    (void)state;
    char data[300], db[320];
    fresh_data(data, "keys");
    assert_int_equal(mkdir(data, 0755), 0);
    snprintf(db, sizeof db, "%s/vultus.db", data);
    /* list and revoke on a folder without a store: status 1, and no store created (list
     * created an empty DATA/vultus.db, so a mistyped --data went unnoticed). */
    run_result r = RUN("keys", "list", "--data", data);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "vultus.db"));
    assert_string_equal(r.out, "");
    assert_false(tc_exists(db));
    run_free(&r);
    r = RUN("keys", "revoke", "0123456789ab", "--data", data);
    assert_int_equal(r.status, 1);
    assert_false(tc_exists(db));
    run_free(&r);

    EXPECT_USAGE("--scope", "keys", "create", "--data", data);
    EXPECT_USAGE("root", "keys", "create", "--scope", "root", "--data", data);
    /* Given twice, --scope took the last: `--scope read --scope admin` made an admin key. */
    EXPECT_USAGE("--scope", "keys", "create", "--scope", "read", "--scope", "admin", "--data",
                 data);
    EXPECT_USAGE("which key", "keys", "revoke", "--data", data);
    EXPECT_USAGE("12 hex", "keys", "revoke", "zz", "--data", data);
    EXPECT_USAGE("unknown command", "keys", "rotate", "--data", data);
    assert_false(tc_exists(db));

    r = RUN("keys", "create", "--scope", "read", "--name", "ci", "--data", data);
    assert_int_equal(r.status, 0);
    assert_int_equal(strncmp(r.out, "vk_", 3), 0);
    assert_int_equal(strlen(r.out), strcspn(r.out, "\n") + 1); /* the key alone, one line */
    char id[13];
    snprintf(id, sizeof id, "%.12s", r.out + 3);
    run_free(&r);
    assert_int_equal(count_key_rows(data), 1);
    r = RUN("keys", "--data", data, "list"); /* options before the command too */
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, id));
    run_free(&r);
    r = RUN("keys", "revoke", "0123456789ab", "--data", data);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "0123456789ab"));
    run_free(&r);
    r = RUN("keys", "revoke", id, "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    r = RUN("keys", "revoke", id, "--data", data);
    assert_int_equal(r.status, 1);
    run_free(&r);
    assert_int_equal(count_key_rows(data), 0);
    tc_rm_rf(data);
}

/* A data folder whose gallery has collection `name` with `faces` faces (one subject each,
 * synthetic dim-8 embeddings), written through the gallery API: no models needed. */
static void gallery_with_faces(const char *data, const char *name, int faces)
{
    char db[320];
    assert_int_equal(mkdir(data, 0700), 0);
    snprintf(db, sizeof db, "%s/vultus.db", data);
    int level = base_log_level;
    base_log_level = BASE_LOG_WARN; /* this test's own open is not what it looks at */
    struct gal *g = NULL;
    assert_int_equal(gal_open(db, NULL, &g), 0);
    struct gal_collection_info info = {.dim = 8, .dtype = GAL_DTYPE_F32, .threshold = 0.5f};
    snprintf(info.name, sizeof info.name, "%s", name);
    snprintf(info.model_id, sizeof info.model_id, "synthetic");
    assert_int_equal(gal_collection_create(g, &info), 0);
    for (int i = 0; i < faces; i++) {
        char subject[16];
        snprintf(subject, sizeof subject, "s%d", i);
        float embedding[8] = {1.0f + (float)i, 1, 2, 3, 4, 5, 6, (float)(i % 3)};
        struct gal_face_input face = {.subject_id = subject,
                                      .model_id = "synthetic",
                                      .dim = 8,
                                      .embedding = embedding,
                                      .box = {0, 0, 20, 20},
                                      .quality = 1};
        int64_t id;
        assert_int_equal(gal_subject_add(g, name, subject, NULL), 0);
        assert_int_equal(gal_face_add(g, name, &face, &id), 0);
    }
    gal_close(g);
    base_log_level = level;
}

static void test_keys_do_not_load_the_faces(void **state)
{
    (void)state;
    /* `vultus keys` loaded every face of the gallery into memory to manage keys ("1
     * collections, 15 faces loaded" in its log): 90-160 ms and 90 MB per call at 100k faces,
     * growing with the gallery. It needs the store only. */
    char data[300];
    fresh_data(data, "keys-store-only");
    gallery_with_faces(data, "people", 15);
    const char *env[] = {"VULTUS_LOG_LEVEL=debug", NULL};
    run_result r = RUN_ENV(env, "keys", "create", "--scope", "write", "--collection", "people",
                           "--data", data);
    assert_int_equal(r.status, 0);
    assert_int_equal(strncmp(r.out, "vk_", 3), 0);
    char id[13];
    snprintf(id, sizeof id, "%.12s", r.out + 3);
    if (strstr(r.err, "faces loaded")) fail_msg("keys create loaded the gallery: %s", r.err);
    run_free(&r);
    r = RUN_ENV(env, "keys", "list", "--data", data);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, id));
    assert_non_null(strstr(r.out, "people"));
    if (strstr(r.err, "faces loaded")) fail_msg("keys list loaded the gallery: %s", r.err);
    run_free(&r);
    r = RUN_ENV(env, "keys", "revoke", id, "--data", data);
    assert_int_equal(r.status, 0);
    if (strstr(r.err, "faces loaded")) fail_msg("keys revoke loaded the gallery: %s", r.err);
    run_free(&r);
    /* The gallery is untouched: its faces are all there. */
    json_t *objs[4];
    assert_int_equal(gallery_list(data, objs, 4), 1);
    assert_int_equal(json_integer_value(json_object_get(objs[0], "faces")), 15);
    json_free_all(objs, 1);
    tc_rm_rf(data);
}

static void test_gallery_list_does_not_load_the_faces(void **state)
{
    (void)state;
    /* `vultus gallery list` loaded every face of the gallery to print each collection's row
     * and counts, which the store has: the time and memory of the whole gallery per call. */
    char data[300];
    fresh_data(data, "list-store-only");
    gallery_with_faces(data, "people", 15);
    run_result r = RUN("gallery", "create", "staff", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    const char *env[] = {"VULTUS_LOG_LEVEL=debug", NULL};
    r = RUN_ENV(env, "gallery", "list", "--data", data);
    assert_int_equal(r.status, 0);
    if (strstr(r.err, "faces loaded")) fail_msg("gallery list loaded the gallery: %s", r.err);
    run_free(&r);
    /* The same rows and counts as before: 15 faces in people, none in staff. */
    json_t *objs[4];
    assert_int_equal(gallery_list(data, objs, 4), 2);
    for (int i = 0; i < 2; i++) {
        const char *name = json_string_value(json_object_get(objs[i], "name"));
        assert_non_null(name);
        assert_int_equal(json_integer_value(json_object_get(objs[i], "faces")),
                         strcmp(name, "people") == 0 ? 15 : 0);
    }
    json_free_all(objs, 2);
    tc_rm_rf(data);
}

/* Runs `vultus ARGS...` at the debug log level; fails when it loaded the gallery's faces or
 * did not exit with `status`. Returns the run for more checks. */
static run_result run_store_only(int status, const char *const *args)
{
    const char *env[] = {"VULTUS_LOG_LEVEL=debug", NULL};
    run_result r = run_env(env, NULL, args);
    if (r.status != status || strstr(r.err, "faces loaded"))
        fail_msg("%s: status %d (want %d), stderr: %.600s", args_text(args), r.status, status,
                 r.err);
    return r;
}
#define RUN_STORE_ONLY(status, ...) run_store_only(status, (const char *const[]){__VA_ARGS__, NULL})

static void test_gallery_commands_do_not_load_the_faces(void **state)
{
    (void)state;
    /* Every `vultus gallery` subcommand but list, and `vultus enroll`, loaded every face of
     * every collection into memory first (at 100k faces 0.1-0.2 s and about 90 MB more per
     * call). The gallery subcommands do not search: they read and write what the store has.
     * enroll searches its own collection (also_matches), so it loads that one alone, which
     * "faces loaded" (the line of a whole store's load) does not count. */
    char data[300], file[300];
    fresh_data(data, "gallery-store-only");
    tmp_path(file, "store-only.vgal");
    gallery_with_faces(data, "people", 15);
    run_result r = RUN_STORE_ONLY(0, "gallery", "show", "people", "--data", data);
    json_t *objs[4];
    assert_int_equal(json_lines(r.out, objs, 4), 1);
    assert_int_equal(json_integer_value(json_object_get(objs[0], "faces")), 15);
    json_t *subjects = json_object_get(objs[0], "subject_list");
    assert_int_equal(json_array_size(subjects), 15);
    json_int_t face0 = json_integer_value(
        json_array_get(json_object_get(json_array_get(subjects, 0), "face_ids"), 0));
    assert_true(face0 > 0);
    json_free_all(objs, 1);
    run_free(&r);
    r = RUN_STORE_ONLY(0, "gallery", "export", "people", file, "--data", data);
    run_free(&r);
    r = RUN_STORE_ONLY(0, "gallery", "import", file, "--as", "copy", "--data", data);
    assert_non_null(strstr(r.out, "\"faces\":15"));
    run_free(&r);
    r = RUN_STORE_ONLY(1, "gallery", "import", file, "--as", "copy", "--data", data);
    assert_non_null(strstr(r.err, "already exists"));
    run_free(&r);
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long)face0);
    r = RUN_STORE_ONLY(0, "gallery", "delete-face", "people", id, "--data", data);
    run_free(&r);
    r = RUN_STORE_ONLY(1, "gallery", "delete-face", "people", id, "--data", data);
    assert_non_null(strstr(r.err, "does not exist"));
    run_free(&r);
    r = RUN_STORE_ONLY(0, "gallery", "delete-subject", "people", "s1", "--data", data);
    run_free(&r);
    r = RUN_STORE_ONLY(0, "gallery", "create", "staff", "--data", data);
    run_free(&r);
    r = RUN_STORE_ONLY(1, "gallery", "create", "staff", "--data", data);
    assert_non_null(strstr(r.err, "already exists"));
    run_free(&r);
    r = RUN_STORE_ONLY(0, "gallery", "delete", "copy", "--data", data);
    run_free(&r);
    r = RUN_STORE_ONLY(1, "gallery", "show", "copy", "--data", data);
    assert_non_null(strstr(r.err, "does not exist"));
    run_free(&r);
    if (have_models()) {
        r = RUN_STORE_ONLY(0, "enroll", "--collection", "staff", "--subject", "s", "--data", data,
                           "--models", MODELS, SAMPLE1);
        run_free(&r);
    }
    /* What they wrote is there for a full open: people lost face0 and s1's face, staff has
     * the enrolled face, copy is gone. */
    r = RUN("gallery", "list", "--data", data);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"name\":\"people\",\"model\":\"synthetic\",\"dim\":8"));
    assert_non_null(strstr(r.out, "\"subjects\":14,\"faces\":13"));
    assert_null(strstr(r.out, "\"copy\""));
    run_free(&r);
    if (have_models()) {
        r = RUN("search", "--collection", "staff", "--top", "1", "--data", data, "--models",
                MODELS, SAMPLE1);
        assert_int_equal(r.status, 0);
        assert_non_null(strstr(r.out, "\"result\":\"match\""));
        run_free(&r);
    }
    tc_rm_rf(data);
}

/* A check-in door's key (README: `--scope checkin --collection EVENT`): the scope was refused
 * ("scope 'checkin': expected read, write or admin"), so a door could only be given a write
 * key, which also enrols faces. Made, listed under its scope in the column's width, named in
 * --help and in the refusal of an unknown scope. */
static void test_keys_checkin_scope(void **state)
{
    (void)state;
    char data[300];
    fresh_data(data, "keys-checkin");
    run_result r = RUN("gallery", "create", "event", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    r = RUN("keys", "create", "--scope", "checkin", "--collection", "event", "--name", "door A",
            "--data", data);
    if (r.status != 0 || strncmp(r.out, "vk_", 3) != 0 ||
        !strstr(r.err, "(scope checkin, collection event)"))
        fail_msg("keys create --scope checkin: status %d, stdout '%.100s', stderr '%.300s'",
                 r.status, r.out, r.err);
    char id[13];
    snprintf(id, sizeof id, "%.12s", r.out + 3);
    run_free(&r);
    r = RUN("keys", "create", "--scope", "read", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    /* `list`: the scope column is as wide as "checkin", so the collection column of every row
     * is the header's ("checkin" pushed it one place right of the others'). */
    r = RUN("keys", "list", "--data", data);
    assert_int_equal(r.status, 0);
    const char *header = strstr(r.out, "collection"), *row = strstr(r.out, id);
    const char *read_row = strstr(r.out, " read ");
    if (!header || !row || !read_row || !strstr(row, " checkin ")) fail_msg("keys list: %s", r.out);
    while (read_row > r.out && read_row[-1] != '\n')
        read_row--;
    size_t column = (size_t)(header - r.out);
    if ((size_t)(strstr(row, "event") - row) != column ||
        (size_t)(strchr(read_row, '*') - read_row) != column)
        fail_msg("keys list: the collections are not under \"collection\":\n%s", r.out);
    run_free(&r);
    r = RUN("keys", "create", "--help");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "read|checkin|write|admin"));
    assert_non_null(strstr(r.out, "--scope checkin --collection EVENT"));
    run_free(&r);
    EXPECT_USAGE("expected read, checkin, write or admin", "keys", "create", "--scope", "door",
                 "--data", data);
    EXPECT_USAGE("read|checkin|write|admin", "keys", "create", "--data", data);
    assert_int_equal(count_key_rows(data), 2);
    tc_rm_rf(data);
}

static void test_keys_collection_must_exist(void **state)
{
    (void)state;
    /* `keys create --collection nope` made a key for a collection the store does not have,
     * status 0: a typo gave a key every call of which is refused, found out by its user. */
    char data[300], db[320];
    fresh_data(data, "keys-collection");
    snprintf(db, sizeof db, "%s/vultus.db", data);
    /* No store yet: no collection either, and no store made for a refused key. */
    run_result r = RUN("keys", "create", "--scope", "read", "--collection", "nope", "--data", data);
    if (r.status != 1 || r.out[0] || !strstr(r.err, "\"nope\"") ||
        !strstr(r.err, "--allow-missing-collection"))
        fail_msg("keys create --collection nope without a store: status %d, stdout '%.100s', "
                 "stderr '%.300s'",
                 r.status, r.out, r.err);
    assert_false(tc_exists(db));
    run_free(&r);

    r = RUN("gallery", "create", "people", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    r = RUN("gallery", "create", "staff", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    r = RUN("keys", "create", "--scope", "read", "--collection", "peopel", "--data", data);
    if (r.status != 1 || r.out[0] || !strstr(r.err, "\"peopel\" does not exist") ||
        !strstr(r.err, "people, staff") || !strstr(r.err, "vultus gallery list") ||
        !strstr(r.err, "--allow-missing-collection"))
        fail_msg("keys create --collection peopel: status %d, stdout '%.100s', stderr '%.400s'",
                 r.status, r.out, r.err);
    run_free(&r);
    assert_int_equal(count_key_rows(data), 0);

    /* An existing one; a malformed name is still a usage error, said as before. */
    r = RUN("keys", "create", "--scope", "read", "--collection", "people", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    EXPECT_USAGE("collection name", "keys", "create", "--scope", "read", "--collection", "a b",
                 "--data", data);

    /* Said to be created later: made, and listed with its collection. */
    r = RUN("keys", "create", "--scope", "write", "--collection", "later",
            "--allow-missing-collection", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    r = RUN("keys", "list", "--data", data);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "later"));
    run_free(&r);
    assert_int_equal(count_key_rows(data), 2);
    EXPECT_USAGE("--collection", "keys", "create", "--scope", "read", "--allow-missing-collection",
                 "--data", data);
    EXPECT_USAGE("create only", "keys", "list", "--allow-missing-collection", "--data", data);

    /* A collection deleted after its key was made: the key stays (the server's business). */
    r = RUN("gallery", "delete", "staff", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    assert_int_equal(count_key_rows(data), 2);
    r = RUN("keys", "create", "--scope", "read", "--collection", "staff", "--data", data);
    assert_int_equal(r.status, 1);
    run_free(&r);
    tc_rm_rf(data);
}

/* ---- analyze, enroll, search on photos ------------------------------------------------ */

static void test_analyze_bad_files_among_good(void **state)
{
    (void)state;
    SKIP_WITHOUT_MODELS();
    /* One JSON line per image in order, an "error" line for each bad one (also named on
     * stderr), the good ones analysed, status 1. */
    char empty[300], text[300], spaced[300], dir[300], huge[300];
    tmp_path(huge, "huge.png");
    write_huge_png(huge);
    tmp_path(empty, "empty.jpg");
    tmp_path(text, "text.jpg");
    tmp_path(spaced, "a photo \xc3\xa9t\xc3\xa9.jpg");
    tmp_path(dir, "a-folder.jpg");
    write_file(empty, "", 0);
    write_file(text, "hello\n", 6);
    char *bytes = NULL;
    size_t len = 0;
    assert_int_equal(tc_read_file(SAMPLE1, &bytes, &len), 0);
    write_file(spaced, bytes, len);
    free(bytes);
    mkdir(dir, 0755);
    const char *const images[] = {SAMPLE1, empty, "/nonexistent.jpg", dir, text, spaced, huge};
    run_result r = RUN("analyze", "--stages", "detect", "--models", MODELS, images[0], images[1],
                       images[2], images[3], images[4], images[5], images[6]);
    assert_int_equal(r.status, 1);
    json_t *objs[8];
    int n = json_lines(r.out, objs, 8);
    assert_int_equal(n, 7);
    /* Over the pixel limit: refused from the header, before any pixel is allocated. */
    assert_non_null(strstr(json_string_value(json_object_get(objs[6], "error")), "limit"));
    for (int i = 0; i < 7; i++) {
        int good = i == 0 || i == 5;
        assert_string_equal(json_string_value(json_object_get(objs[i], "image")), images[i]);
        if (good) {
            assert_true(json_array_size(json_object_get(objs[i], "faces")) >= 2);
            assert_null(json_object_get(objs[i], "error"));
        } else {
            assert_non_null(json_string_value(json_object_get(objs[i], "error")));
            if (i == 2 && strcmp(json_string_value(json_object_get(objs[i], "error")),
                                 "cannot read the file: /nonexistent.jpg: No such file or "
                                 "directory") != 0) /* not "input/output error", EIO's words */
                fail_msg("a missing file: %s", json_string_value(json_object_get(objs[i], "error")));
            if (!strstr(r.err, images[i]))
                fail_msg("stderr does not name %s: '%.400s'", images[i], r.err);
        }
    }
    json_free_all(objs, n);
    run_free(&r);
}

/* A child that writes the file at src into the FIFO at fifo (its open waits for the reader). */
static pid_t fifo_writer(const char *fifo, const char *src)
{
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char *bytes = NULL;
        size_t len = 0;
        if (tc_read_file(src, &bytes, &len) != 0) _exit(1);
        int fd = open(fifo, O_WRONLY);
        if (fd < 0) _exit(1);
        for (size_t done = 0; done < len;) {
            ssize_t k = write(fd, bytes + done, len - done);
            if (k <= 0) _exit(1);
            done += (size_t)k;
        }
        _exit(0);
    }
    return pid;
}

static void test_analyze_pipes_and_fifos(void **state)
{
    (void)state;
    SKIP_WITHOUT_MODELS();
    /* `vultus analyze /dev/stdin` fed by a pipe (or `<(curl ...)`) was refused, "not a
     * regular file", and a FIFO without a writer hung in fopen for ever. */
    char fifo[300];
    tmp_path(fifo, "image.fifo");
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    pid_t writer = fifo_writer(fifo, SAMPLE1);
    run_result r = run_env(NULL, fifo,
                           (const char *const[]){"analyze", "--stages", "detect", "--models",
                                                 MODELS, "/dev/stdin", NULL});
    int ws = 0;
    waitpid(writer, &ws, 0);
    if (r.status != 0) fail_msg("analyze /dev/stdin (a FIFO): status %d: %.300s", r.status, r.out);
    json_t *objs[2];
    assert_int_equal(json_lines(r.out, objs, 2), 1);
    assert_true(json_array_size(json_object_get(objs[0], "faces")) >= 2);
    json_free_all(objs, 1);
    run_free(&r);

    /* Nobody writes: an error line, status 1, at once. */
    run_limit_ms = 20000;
    r = RUN("analyze", "--stages", "detect", "--models", MODELS, fifo, SAMPLE1);
    run_limit_ms = 120000;
    if (r.status != 1) fail_msg("analyze FIFO without a writer: status %d (-2: hung)", r.status);
    int n = json_lines(r.out, objs, 2);
    assert_int_equal(n, 2);
    assert_non_null(json_object_get(objs[0], "error"));
    assert_true(json_array_size(json_object_get(objs[1], "faces")) >= 2);
    json_free_all(objs, n);
    run_free(&r);

    /* A folder: named as one. */
    r = RUN("analyze", "--stages", "detect", "--models", MODELS, temp_root);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.out, "is a directory"));
    run_free(&r);
    unlink(fifo);
}

static void test_eval_stdout_is_json(void **state)
{
    (void)state;
    SKIP_WITHOUT_MODELS();
    /* stdout is the JSON summary alone: eval printed its configuration block ("eval pairs",
     * "  images: ...") on stdout before it, so `vultus eval ... | jq` failed. */
    char list[300];
    tmp_path(list, "pairs.txt");
    const char *text = "models/samples/sample1.jpg models/samples/sample2.jpg 0\n"
                       "models/samples/sample3.jpg models/samples/sample3.jpg 1\n";
    write_file(list, text, strlen(text));
    run_result r = RUN("eval", "pairs", "--list", list, "--models", MODELS, "--threads", "1");
    assert_int_equal(r.status, 0);
    json_t *objs[4];
    int n = json_lines(r.out, objs, 4);
    if (n != 1) fail_msg("eval pairs: %d JSON lines on stdout (want 1): '%.300s'", n, r.out);
    assert_string_equal(json_string_value(json_object_get(objs[0], "eval")), "pairs");
    json_free_all(objs, n);
    assert_non_null(strstr(r.err, "eval pairs"));
    run_free(&r);
}

static void test_gallery_enroll_search(void **state)
{
    (void)state;
    SKIP_WITHOUT_MODELS();
    char data[300], blank[300];
    fresh_data(data, "enroll");
    tmp_path(blank, "blank.png");
    write_blank_png(blank);
    run_result r = RUN("gallery", "create", "c", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);

    /* Search an empty collection: each face, no subjects, "no match", status 0. */
    r = RUN("search", "--collection", "c", "--data", data, "--models", MODELS, SAMPLE1);
    assert_int_equal(r.status, 0);
    json_t *objs[8];
    int n = json_lines(r.out, objs, 8);
    assert_int_equal(n, 1);
    assert_string_equal(json_string_value(json_object_get(objs[0], "result")), "no match");
    json_t *faces = json_object_get(objs[0], "faces");
    assert_true(json_array_size(faces) >= 2);
    assert_int_equal(json_array_size(json_object_get(json_array_get(faces, 0), "subjects")), 0);
    json_free_all(objs, n);
    run_free(&r);

    /* Into a missing collection: status 1, the collection named. */
    r = RUN("enroll", "--collection", "nope", "--subject", "s", "--data", data, "--models", MODELS,
            SAMPLE1);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "nope"));
    assert_string_equal(r.out, "");
    run_free(&r);

    /* A photo with several faces enrols its largest; one without a face is skipped (status
     * 0: a skip is not a failure); a missing file fails (status 1). Lines in order, then
     * the summary. */
    r = RUN("enroll", "--collection", "c", "--subject", "s", "--data", data, "--models", MODELS,
            SAMPLE1, blank);
    assert_int_equal(r.status, 0);
    n = json_lines(r.out, objs, 8);
    assert_int_equal(n, 3);
    assert_string_equal(json_string_value(json_object_get(objs[0], "status")), "enrolled");
    assert_true(json_integer_value(json_object_get(objs[0], "faces_in_image")) >= 2);
    assert_string_equal(json_string_value(json_object_get(objs[1], "status")), "no_face");
    json_t *summary = json_object_get(objs[2], "summary");
    assert_int_equal(json_integer_value(json_object_get(summary, "enrolled")), 1);
    assert_int_equal(json_integer_value(json_object_get(summary, "skipped_no_face")), 1);
    /* Which face of a group photo became s is said, not left to faces_in_image alone: its
     * stderr line was "enrolled" as for a portrait. */
    assert_int_equal(json_integer_value(json_object_get(summary, "enrolled_one_of_several")),
                     1);
    if (!strstr(r.err, ": enrolled (the most prominent of "))
        fail_msg("a photo with several faces enrolled without saying so: %s", r.err);
    json_free_all(objs, n);
    run_free(&r);
    r = RUN("enroll", "--collection", "c", "--subject", "s", "--data", data, "--models", MODELS,
            "/nonexistent.jpg");
    assert_int_equal(r.status, 1);
    n = json_lines(r.out, objs, 8);
    assert_int_equal(n, 2);
    assert_string_equal(json_string_value(json_object_get(objs[0], "status")), "failed");
    assert_string_equal(json_string_value(json_object_get(objs[0], "reason")),
                        "cannot read: /nonexistent.jpg: No such file or directory");
    json_free_all(objs, n);
    run_free(&r);

    /* The enrolled face is found again: the same photo matches s. */
    r = RUN("search", "--collection", "c", "--top", "1", "--data", data, "--models", MODELS,
            SAMPLE1, blank);
    assert_int_equal(r.status, 0);
    n = json_lines(r.out, objs, 8);
    assert_int_equal(n, 2);
    assert_string_equal(json_string_value(json_object_get(objs[0], "result")), "match");
    json_t *hit = json_array_get(
        json_object_get(json_array_get(json_object_get(objs[0], "faces"), 0), "subjects"), 0);
    assert_string_equal(json_string_value(json_object_get(hit, "subject")), "s");
    assert_string_equal(json_string_value(json_object_get(objs[1], "result")), "no face");
    json_free_all(objs, n);
    run_free(&r);

    /* A bad image among good ones: an "error" line (named on stderr too), status 1. */
    r = RUN("search", "--collection", "c", "--data", data, "--models", MODELS, "/nonexistent.jpg",
            SAMPLE1);
    assert_int_equal(r.status, 1);
    n = json_lines(r.out, objs, 8);
    assert_int_equal(n, 2);
    assert_string_equal(json_string_value(json_object_get(objs[0], "error")),
                        "cannot read: /nonexistent.jpg: No such file or directory");
    assert_string_equal(json_string_value(json_object_get(objs[1], "result")), "match");
    assert_non_null(strstr(r.err, "/nonexistent.jpg"));
    json_free_all(objs, n);
    run_free(&r);

    /* Subject ids at the limit: 128 bytes is taken, 129 fails that image. */
    char id128[129], id129[130];
    memset(id128, 's', 128);
    id128[128] = '\0';
    memset(id129, 's', 129);
    id129[129] = '\0';
    r = RUN("enroll", "--collection", "c", "--subject", id128, "--data", data, "--models", MODELS,
            SAMPLE1);
    assert_int_equal(r.status, 0);
    run_free(&r);
    r = RUN("enroll", "--collection", "c", "--subject", id129, "--data", data, "--models", MODELS,
            SAMPLE1);
    assert_int_equal(r.status, 1);
    n = json_lines(r.out, objs, 8);
    assert_int_equal(n, 2);
    assert_string_equal(json_string_value(json_object_get(objs[0], "status")), "failed");
    assert_non_null(strstr(json_string_value(json_object_get(objs[0], "reason")),
                           "subject id must have 1 to 128 bytes"));
    json_free_all(objs, n);
    run_free(&r);
    tc_rm_rf(data);
}

/* Copies models/samples/NAME to DIR/NAME. */
static void copy_sample(const char *dir, const char *name)
{
    char src[300], dst[600];
    snprintf(src, sizeof src, "models/samples/%s", name);
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    char *bytes = NULL;
    size_t len = 0;
    assert_int_equal(tc_read_file(src, &bytes, &len), 0);
    write_file(dst, bytes, len);
    free(bytes);
}

/* The "faces" count of `gallery list`'s only collection. */
static long long gallery_faces(const char *data)
{
    json_t *objs[4];
    int n = gallery_list(data, objs, 4);
    assert_int_equal(n, 1);
    long long faces = json_integer_value(json_object_get(objs[0], "faces"));
    json_free_all(objs, n);
    return faces;
}

static void test_enroll_again_skips_enrolled_images(void **state)
{
    (void)state;
    SKIP_WITHOUT_MODELS();
    /* Running `vultus enroll --dir` again (a re-run, or one resumed after Ctrl-C) stored
     * every image a second time: 40 faces became 80 with fixtures/identities, and a run
     * interrupted after 102 of 248 LFW images and run again left 350. An image the subject
     * already has (same bytes) is now skipped as already_enrolled. */
    char data[300], dir[300], sub[400];
    fresh_data(data, "enroll-again");
    tmp_path(dir, "enroll-again-photos");
    tc_rm_rf(dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    const char *people[] = {"ann", "bob"};
    for (int i = 0; i < 2; i++) {
        snprintf(sub, sizeof sub, "%s/%s", dir, people[i]);
        assert_int_equal(mkdir(sub, 0700), 0);
        copy_sample(sub, i == 0 ? "sample1.jpg" : "sample2.jpg");
    }
    snprintf(sub, sizeof sub, "%s/ann", dir);
    copy_sample(sub, "sample3.jpg");
    run_result r = RUN("gallery", "create", "c", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    /* As if the first run had stopped after ann: the second one enrols bob's image only. */
    char ann1[600];
    snprintf(ann1, sizeof ann1, "%s/ann/sample1.jpg", dir);
    r = RUN("enroll", "--collection", "c", "--subject", "ann", "--data", data, "--models", MODELS,
            ann1);
    assert_int_equal(r.status, 0);
    run_free(&r);
    long long first = gallery_faces(data);
    assert_int_equal(first, 1);
    r = RUN("enroll", "--collection", "c", "--dir", dir, "--data", data, "--models", MODELS);
    assert_int_equal(r.status, 0);
    json_t *objs[8];
    int n = json_lines(r.out, objs, 8);
    assert_int_equal(n, 4);
    assert_string_equal(json_string_value(json_object_get(objs[0], "status")), "already_enrolled");
    json_t *summary = json_object_get(objs[3], "summary");
    assert_int_equal(json_integer_value(json_object_get(summary, "already_enrolled")), 1);
    long long enrolled = json_integer_value(json_object_get(summary, "enrolled"));
    json_free_all(objs, n);
    run_free(&r);
    long long all = gallery_faces(data);
    assert_int_equal(all, first + enrolled);
    /* Once more: nothing new, status 0, every image already_enrolled. */
    r = RUN("enroll", "--collection", "c", "--dir", dir, "--data", data, "--models", MODELS);
    assert_int_equal(r.status, 0);
    n = json_lines(r.out, objs, 8);
    assert_int_equal(n, 4);
    summary = json_object_get(objs[3], "summary");
    assert_int_equal(json_integer_value(json_object_get(summary, "enrolled")), 0);
    assert_int_equal(json_integer_value(json_object_get(summary, "already_enrolled")), all);
    json_free_all(objs, n);
    run_free(&r);
    if (gallery_faces(data) != all)
        fail_msg("enroll run again: %lld faces, were %lld", gallery_faces(data), all);
    tc_rm_rf(dir);
    tc_rm_rf(data);
}

/* Whether process pid holds `path` open. */
/* `enroll --dir D` enrols D/SUBJECT/IMAGE; an image directly in D has no subject. Defect: such
 * images were dropped without a word when D had sub-folders too, and with none the error said
 * only "no images in sub-folders". Now stderr names them and why, in both cases. */
static void test_enroll_dir_names_images_outside_subfolders(void **state)
{
    (void)state;
    SKIP_WITHOUT_MODELS();
    char data[300], dir[300], sub[400];
    fresh_data(data, "enroll-loose");
    tmp_path(dir, "enroll-loose-photos");
    tc_rm_rf(dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    copy_sample(dir, "sample2.jpg"); /* directly in D: no subject */
    /* Only loose images: nothing to enrol, status 1, and stderr says why. */
    run_result r = RUN("gallery", "create", "c", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    r = RUN("enroll", "--collection", "c", "--dir", dir, "--data", data, "--models", MODELS);
    if (r.status != 1 || !strstr(r.err, "1 image directly in") || !strstr(r.err, "sample2.jpg") ||
        !strstr(r.err, "sub-folder"))
        fail_msg("enroll --dir with loose images only: status %d, stderr '%.300s'", r.status,
                 r.err);
    run_free(&r);
    /* With a sub-folder beside them: the sub-folder's image is enrolled, the loose one named. */
    snprintf(sub, sizeof sub, "%s/ann", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    copy_sample(sub, "sample1.jpg");
    r = RUN("enroll", "--collection", "c", "--dir", dir, "--data", data, "--models", MODELS);
    if (r.status != 0 || !strstr(r.err, "1 image directly in") || !strstr(r.err, "sample2.jpg"))
        fail_msg("enroll --dir with a sub-folder and a loose image: status %d, stderr '%.300s'",
                 r.status, r.err);
    json_t *objs[4];
    int n = json_lines(r.out, objs, 4);
    assert_int_equal(n, 2);
    assert_string_equal(json_string_value(json_object_get(objs[0], "subject")), "ann");
    json_free_all(objs, n);
    run_free(&r);
    tc_rm_rf(dir);
    tc_rm_rf(data);
}

/* `search --threshold T` decides at T for one run (the collection keeps its own). Defect: no
 * such option ("unrecognized option", status 2). */
static void test_search_threshold_for_one_run(void **state)
{
    (void)state;
    SKIP_WITHOUT_MODELS();
    char data[300];
    fresh_data(data, "search-threshold");
    run_result r = RUN("gallery", "create", "c", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    r = RUN("enroll", "--collection", "c", "--subject", "s", "--data", data, "--models", MODELS,
            SAMPLE1);
    assert_int_equal(r.status, 0);
    run_free(&r);
    /* At -1 every subject is a match, at 1 (a photo's own face scores slightly below 1, a
     * different person far below) none is; the line says which threshold decided. */
    static const char *const at[] = {"-1", "1"};
    for (int i = 0; i < 2; i++) {
        r = RUN("search", "--collection", "c", "--threshold", at[i], "--data", data, "--models",
                MODELS, "models/samples/sample2.jpg");
        if (r.status != 0)
            fail_msg("search --threshold %s: status %d, stderr '%.200s'", at[i], r.status, r.err);
        json_t *objs[2];
        int n = json_lines(r.out, objs, 2);
        assert_int_equal(n, 1);
        assert_float_equal(json_number_value(json_object_get(objs[0], "threshold")), atof(at[i]),
                           1e-6);
        assert_string_equal(json_string_value(json_object_get(objs[0], "result")),
                            i == 0 ? "match" : "no match");
        json_t *hit = json_array_get(
            json_object_get(json_array_get(json_object_get(objs[0], "faces"), 0), "subjects"), 0);
        assert_string_equal(json_string_value(json_object_get(hit, "decision")),
                            i == 0 ? "match" : "no_match");
        json_free_all(objs, n);
        run_free(&r);
    }
    /* The collection's own threshold is unchanged. */
    json_t *objs[2];
    int n = gallery_list(data, objs, 2);
    assert_int_equal(n, 1);
    assert_true(json_number_value(json_object_get(objs[0], "threshold")) > 0.9);
    json_free_all(objs, n);
    EXPECT_USAGE("[-1, 1]", "search", "--collection", "c", "--threshold", "2", "--data", data,
                 SAMPLE1);
    tc_rm_rf(data);
}

/* `search --dir D`: every image under D, sub-folders included, in name order, one line each.
 * Defect: no such option, so a folder needed a glob or xargs. */
static void test_search_dir(void **state)
{
    (void)state;
    SKIP_WITHOUT_MODELS();
    char data[300], dir[300], sub[400], path[500];
    fresh_data(data, "search-dir");
    tmp_path(dir, "search-dir-photos");
    tc_rm_rf(dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    /* An empty folder: status 1 before any model loads. */
    run_result r = RUN("gallery", "create", "c", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    r = RUN("search", "--collection", "c", "--dir", dir, "--data", data, "--models", MODELS);
    if (r.status != 1 || r.out[0] || !strstr(r.err, "no images under"))
        fail_msg("search --dir of an empty folder: status %d, stderr '%.200s'", r.status, r.err);
    run_free(&r);
    copy_sample(dir, "sample2.jpg");
    snprintf(sub, sizeof sub, "%s/inner", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    copy_sample(sub, "sample1.jpg");
    snprintf(path, sizeof path, "%s/notes.txt", sub);
    write_file(path, "not an image\n", 13);
    r = RUN("enroll", "--collection", "c", "--subject", "s", "--data", data, "--models", MODELS,
            SAMPLE1);
    assert_int_equal(r.status, 0);
    run_free(&r);
    r = RUN("search", "--collection", "c", "--top", "1", "--dir", dir, "--data", data, "--models",
            MODELS);
    if (r.status != 0) fail_msg("search --dir: status %d, stderr '%.300s'", r.status, r.err);
    json_t *objs[4];
    int n = json_lines(r.out, objs, 4);
    assert_int_equal(n, 2);
    snprintf(path, sizeof path, "%s/sample2.jpg", dir);
    assert_string_equal(json_string_value(json_object_get(objs[0], "image")), path);
    snprintf(path, sizeof path, "%s/sample1.jpg", sub);
    assert_string_equal(json_string_value(json_object_get(objs[1], "image")), path);
    assert_string_equal(json_string_value(json_object_get(objs[1], "result")), "match");
    json_free_all(objs, n);
    run_free(&r);
    /* Images or --dir, not both; a folder that is not there fails (status 1). */
    EXPECT_USAGE("either images or --dir", "search", "--collection", "c", "--dir", dir, "--data",
                 data, SAMPLE1);
    r = RUN("search", "--collection", "c", "--dir", "/nonexistent-folder", "--data", data);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "/nonexistent-folder"));
    run_free(&r);
    tc_rm_rf(dir);
    tc_rm_rf(data);
}

static int has_open(pid_t pid, const char *path)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        char link[400], target[PATH_MAX];
        snprintf(link, sizeof link, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n <= 0) continue;
        target[n] = '\0';
        found = strcmp(target, path) == 0;
    }
    closedir(d);
    return found;
}

static void test_enroll_interrupted_ends_with_its_summary(void **state)
{
    (void)state;
    SKIP_WITHOUT_MODELS();
    /* Ctrl-C during `vultus enroll` killed it where it stood: no summary of what was done,
     * the images not started unknown. Now the image in hand is finished, the run stops with
     * its summary ("interrupted") and status 130. The first image is a FIFO, so the signal
     * comes while enroll waits for that image's bytes, never between two images by chance. */
    char data[300], fifo[300];
    fresh_data(data, "enroll-sigint");
    tmp_path(fifo, "enroll.fifo");
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    run_result r = RUN("gallery", "create", "c", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    pid_t pid = spawn_env(NULL, NULL,
                          (const char *const[]){"enroll", "--collection", "c", "--subject", "s",
                                                "--data", data, "--models", MODELS, fifo,
                                                SAMPLE1, NULL});
    /* Held open read-write (which does not wait for a reader) so that enroll's read of the
     * FIFO waits for bytes rather than reading an end; the signal goes once enroll holds the
     * FIFO open, i.e. is reading its first image. */
    int fd = open(fifo, O_RDWR);
    assert_true(fd >= 0);
    int reading = 0;
    for (double t0 = tc_now_ms(); !reading && tc_now_ms() - t0 < run_limit_ms;) {
        if (!(reading = has_open(pid, fifo))) tc_sleep_ms(10);
        siginfo_t info = {0}; /* ended early (left for run_wait to reap and report)? */
        if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid)
            break;
    }
    if (!reading) {
        close(fd);
        r = run_wait(pid);
        fail_msg("enroll never read its first image: status %d, %s", r.status, r.err);
    }
    /* Writes through a write-only end, the read-write one closed: a reader gone (an enroll
     * that died of the signal) makes the write fail rather than fill the pipe for ever. */
    int wfd = open(fifo, O_WRONLY);
    assert_true(wfd >= 0);
    close(fd);
    fd = wfd;
    assert_int_equal(kill(pid, SIGINT), 0);
    char *bytes = NULL;
    size_t len = 0;
    assert_int_equal(tc_read_file("models/samples/sample2.jpg", &bytes, &len), 0);
    signal(SIGPIPE, SIG_IGN);
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, bytes + off, len - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    close(fd);
    free(bytes);
    r = run_wait(pid);
    if (r.status != 130) fail_msg("enroll after SIGINT: status %d, stderr %s", r.status, r.err);
    json_t *objs[4];
    int n = json_lines(r.out, objs, 4);
    assert_int_equal(n, 2);
    assert_string_equal(json_string_value(json_object_get(objs[0], "status")), "enrolled");
    json_t *summary = json_object_get(objs[1], "summary");
    assert_true(json_is_true(json_object_get(summary, "interrupted")));
    assert_int_equal(json_integer_value(json_object_get(summary, "not_started")), 1);
    assert_int_equal(json_integer_value(json_object_get(summary, "enrolled")), 1);
    json_free_all(objs, n);
    assert_non_null(strstr(r.err, "interrupted (SIGINT) after 1 of 2 images"));
    run_free(&r);
    assert_int_equal(gallery_faces(data), 1);
    unlink(fifo);
    tc_rm_rf(data);
}

static void test_fixtures_two_people(void **state)
{
    (void)state;
    SKIP_WITHOUT_MODELS();
    if (access(FIXTURES "/group-two-people.jpg", R_OK) != 0 ||
        access(FIXTURES "/id-obama-1.jpg", R_OK) != 0) {
        print_message("skipped: no ../shared/data/fixtures\n");
        skip();
    }
    /* group-two-people.jpg: two faces of about the same size, Obama's slightly the smaller
     * (134 vs 139 px wide) but nearer the centre. Enrolment takes the most prominent face (as
     * verify compares it), so subject "group" enrolled from it is Obama: his portrait matches
     * it, and in a search of the group photo (faces largest first) the other person matches
     * nobody while Obama, the second face, matches "group". With the largest box, "group"
     * was the other person and the portrait gave "no match". */
    char data[300];
    fresh_data(data, "fixtures");
    run_result r = RUN("gallery", "create", "c", "--data", data);
    assert_int_equal(r.status, 0);
    run_free(&r);
    r = RUN("enroll", "--collection", "c", "--subject", "group", "--data", data, "--models",
            MODELS, FIXTURES "/group-two-people.jpg");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.err, "enrolled (the most prominent of 2 faces)"));
    run_free(&r);
    r = RUN("search", "--collection", "c", "--top", "1", "--data", data, "--models", MODELS,
            FIXTURES "/id-obama-2.jpg");
    assert_int_equal(r.status, 0);
    json_t *objs[4];
    int n = json_lines(r.out, objs, 4);
    assert_int_equal(n, 1);
    assert_string_equal(json_string_value(json_object_get(objs[0], "result")), "match");
    json_free_all(objs, n);
    run_free(&r);
    r = RUN("search", "--collection", "c", "--top", "1", "--data", data, "--models", MODELS,
            FIXTURES "/group-two-people.jpg");
    assert_int_equal(r.status, 0);
    n = json_lines(r.out, objs, 4);
    assert_int_equal(n, 1);
    json_t *faces = json_object_get(objs[0], "faces");
    assert_int_equal(json_array_size(faces), 2);
    static const char *const want[] = {"no_match", "match"};
    for (int i = 0; i < 2; i++) {
        json_t *hit =
            json_array_get(json_object_get(json_array_get(faces, (size_t)i), "subjects"), 0);
        assert_string_equal(json_string_value(json_object_get(hit, "subject")), "group");
        const char *decision = json_string_value(json_object_get(hit, "decision"));
        if (!decision || strcmp(decision, want[i]) != 0)
            fail_msg("group photo, face %d: decision %s, expected %s", i,
                     decision ? decision : "(none)", want[i]);
    }
    json_free_all(objs, n);
    run_free(&r);
    tc_rm_rf(data);
}

static int setup_all(void **state)
{
    (void)state;
    snprintf(temp_root, sizeof temp_root, "/tmp/vultus-cli-review-XXXXXX");
    return mkdtemp(temp_root) ? 0 : -1;
}

static int teardown_all(void **state)
{
    (void)state;
    tc_rm_rf(temp_root);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_on_stdout_exit_0),
        cmocka_unit_test(test_help_lists_every_gallery_command),
        cmocka_unit_test(test_unknown_option_is_usage_error),
        cmocka_unit_test(test_no_arguments_is_usage_error),
        cmocka_unit_test(test_missing_value_is_usage_error),
        cmocka_unit_test(test_bad_numbers_are_usage_errors),
        cmocka_unit_test(test_log_level_env),
        cmocka_unit_test(test_unwritable_stdout_fails),
        cmocka_unit_test(test_gallery_names_and_missing),
        cmocka_unit_test(test_gallery_export_keeps_an_existing_file),
        cmocka_unit_test(test_gallery_export_interrupted_leaves_nothing),
        cmocka_unit_test(test_gallery_set_threshold),
        cmocka_unit_test(test_negative_numbers_are_numbers),
        cmocka_unit_test(test_gallery_not_found_names_the_collection),
        cmocka_unit_test(test_docs_min_quality_cli_and_http),
        cmocka_unit_test(test_gallery_data_folder_private),
        cmocka_unit_test(test_gallery_import_reports_the_imported_collection),
        cmocka_unit_test(test_gallery_import_bad_files_leave_nothing),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_keys_do_not_load_the_faces),
        cmocka_unit_test(test_keys_collection_must_exist),
        cmocka_unit_test(test_keys_checkin_scope),
        cmocka_unit_test(test_gallery_list_does_not_load_the_faces),
        cmocka_unit_test(test_gallery_commands_do_not_load_the_faces),
        cmocka_unit_test(test_analyze_bad_files_among_good),
        cmocka_unit_test(test_analyze_pipes_and_fifos),
        cmocka_unit_test(test_eval_stdout_is_json),
        cmocka_unit_test(test_gallery_enroll_search),
        cmocka_unit_test(test_enroll_again_skips_enrolled_images),
        cmocka_unit_test(test_enroll_dir_names_images_outside_subfolders),
        cmocka_unit_test(test_search_threshold_for_one_run),
        cmocka_unit_test(test_search_dir),
        cmocka_unit_test(test_enroll_interrupted_ends_with_its_summary),
        cmocka_unit_test(test_fixtures_two_people),
    };
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
