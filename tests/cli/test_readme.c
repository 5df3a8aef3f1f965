/*
 * README.md against the binary it describes, so neither changes without the other:
 *   - every `vultus serve` default README states (in words: "5 s", "16 MiB", "50 per image")
 *     is the default `vultus serve --help` prints, and every --option and VULTUS_* variable
 *     README and deploy/README.md name exists;
 *   - README's route table holds exactly the operations of src/http/openapi.json (which
 *     test_http_routes checks against the served routes), and its error list exactly the
 *     codes of the document's ErrorDetail, each under its status;
 *   - the number of fuzz targets README states is the number in tests/fuzz, and
 *     docs/fuzzing.md's table has a row for each.
 * Runs the real BUILD/vultus beside this test from the repository root; needs no models.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <ctype.h>
#include <dirent.h>
#include <regex.h>

#include "http/client.h"

#define MAX_OPTIONS 64

typedef struct serve_option {
    char flag[40];  /* "--deadline-ms" */
    char env[40];   /* "VULTUS_DEADLINE_MS" */
    char deflt[40]; /* "5000", or "" */
} serve_option;

static serve_option options[MAX_OPTIONS];
static int n_options;
static char *readme, *deploy_readme, *fuzzing_md;
static char help_text[1 << 16];

/* The text with every run of blanks and newlines made one space (README wraps anywhere). */
static char *squeeze(const char *text)
{
    char *out = malloc(strlen(text) + 1);
    if (!out) return NULL;
    char *o = out;
    for (const char *c = text; *c; c++) {
        if (isspace((unsigned char)*c)) {
            if (o > out && o[-1] != ' ') *o++ = ' ';
        } else {
            *o++ = *c;
        }
    }
    *o = '\0';
    return out;
}

static char *read_squeezed(const char *path)
{
    char *data = NULL;
    size_t len = 0;
    if (tc_read_file(path, &data, &len) != 0) fail_msg("cannot read %s", path);
    char *s = squeeze(data);
    free(data);
    return s;
}

/* The part of text from `from` to `to` (exclusive; NULL: the end), as a new string. */
static char *section(const char *text, const char *from, const char *to)
{
    const char *a = strstr(text, from);
    if (!a) fail_msg("README has no '%s'", from);
    const char *b = to ? strstr(a, to) : NULL;
    size_t n = b ? (size_t)(b - a) : strlen(a);
    char *s = malloc(n + 1);
    memcpy(s, a, n);
    s[n] = '\0';
    return s;
}

/* The table of `vultus serve --help`: columns found from its header line. */
static int setup(void **state)
{
    (void)state;
    const char *args[] = {"serve", "--help", NULL};
    if (tc_run_vultus_fd(1, help_text, sizeof help_text, args) != 0) {
        fprintf(stderr, "vultus serve --help failed (is BUILD/vultus built?)\n");
        return -1;
    }
    const char *header = strstr(help_text, "  flag ");
    if (!header) return -1;
    const char *eol = strchr(header, '\n');
    int env_col = (int)(strstr(header, "environment") - header);
    int def_col = (int)(strstr(header, "default") - header);
    int meaning_col = (int)(strstr(header, "meaning") - header);
    if (env_col <= 0 || def_col <= env_col || meaning_col <= def_col || !eol) return -1;
    for (const char *line = eol + 1; *line == ' ' && n_options < MAX_OPTIONS;) {
        const char *end = strchr(line, '\n');
        if (!end || end - line < meaning_col || strncmp(line, "  --", 4) != 0) break;
        serve_option *o = &options[n_options++];
        sscanf(line, "%39s", o->flag);
        sscanf(line + env_col, "%39s", o->env);
        if (line[def_col] != ' ') sscanf(line + def_col, "%39s", o->deflt);
        line = end + 1;
    }
    readme = read_squeezed("README.md");
    deploy_readme = read_squeezed("deploy/README.md");
    fuzzing_md = read_squeezed("docs/fuzzing.md");
    return n_options >= 20 && readme && deploy_readme && fuzzing_md ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    free(readme);
    free(deploy_readme);
    free(fuzzing_md);
    return 0;
}

static const serve_option *find_option(const char *flag)
{
    for (int i = 0; i < n_options; i++)
        if (strcmp(options[i].flag, flag) == 0) return &options[i];
    return NULL;
}

/*
 * The defaults README states, as it words them, next to the value `serve --help` prints. When
 * a default changes, this table, README and the code change together.
 */
static void test_serve_defaults_match_readme(void **state)
{
    (void)state;
    static const struct {
        const char *flag, *help_default, *readme_words;
    } defaults[] = {
        {"--listen", ":7860", "`make run` serves on port 7860"},
        {"--models", "models", "build/vultus serve --models models --data data"},
        {"--data", "data", "with the store in `./data`"},
        {"--queue", "64", "the queue of 64 is full"},
        {"--deadline-ms", "5000", "(default 5 s, `--deadline-ms`;"},
        {"--max-deadline-ms", "60000", "`--max-deadline-ms`, 60 s;"},
        {"--max-body-bytes", "16777216", "`--max-body-bytes` (16 MiB;"},
        {"--max-pixels", "40000000", "`--max-pixels` (40 MP,"},
        {"--max-faces", "50", "`--max-faces` (50 per image"},
        {"--max-connections", "1000", "`--max-connections` (1000:"},
        {"--read-timeout-ms", "30000", "`--read-timeout-ms` (30 s)"},
        {"--grace-ms", "2000", "for `--grace-ms` (2 s,"},
        {"--drain-timeout-ms", "25000", "after `--drain-timeout-ms` (25 s)"},
        {"--batch-max", "8", "up to `--batch-max` faces (8)"},
        {"--batch-wait-ms", "2", "`--batch-wait-ms` (2)"},
        {"--worker-nice", "10",
         "niceness 10 higher than the process (`--worker-nice`, 0 to turn "
         "it off)"},
        {"--ann-min-faces", "0", "`--ann-min-faces N` (default 0: off)"},
        {"--ann-build-threads", "1", "on `--ann-build-threads` threads, default 1"},
        {"--ann-ef-search", "256", "(`--ann-ef-search`, default 256,"},
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
        const serve_option *o = find_option(defaults[i].flag);
        if (!o) {
            fprintf(stderr, "%s: not an option of vultus serve --help\n", defaults[i].flag);
            failures++;
            continue;
        }
        if (strcmp(o->deflt, defaults[i].help_default) != 0) {
            fprintf(stderr, "%s: serve --help's default is '%s', README says '%s'\n", o->flag,
                    o->deflt, defaults[i].readme_words);
            failures++;
        }
        if (!strstr(readme, defaults[i].readme_words)) {
            fprintf(stderr, "%s: README no longer says '%s'\n", o->flag, defaults[i].readme_words);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

/* Every option README's HTTP API section and deploy/README.md name is an option of `vultus
 * serve` or of `vultus keys` (which that section also describes). */
static void test_readme_options_exist(void **state)
{
    (void)state;
    static char keys_help[1 << 14];
    const char *args[] = {"keys", "--help", NULL};
    assert_int_equal(tc_run_vultus_fd(1, keys_help, sizeof keys_help, args), 0);
    char *http = section(readme, "## The HTTP API", "## The web page");
    const char *texts[] = {http, deploy_readme};
    regex_t re;
    assert_int_equal(regcomp(&re, "--[a-z][a-z0-9-]*", REG_EXTENDED), 0);
    int failures = 0;
    for (int t = 0; t < 2; t++) {
        regmatch_t m;
        for (const char *p = texts[t]; regexec(&re, p, 1, &m, 0) == 0; p += m.rm_eo) {
            char flag[64];
            snprintf(flag, sizeof flag, "%.*s", (int)(m.rm_eo - m.rm_so), p + m.rm_so);
            if (p + m.rm_so > texts[t] && p[m.rm_so - 1] != ' ' && p[m.rm_so - 1] != '`' &&
                p[m.rm_so - 1] != '(')
                continue; /* part of a word ("a--b") */
            /* Another program's flags where deploy/README shows its command lines. */
            static const char *const others[] = {"--target",     "--from-file",    "--help",
                                                 "--namespace",  "--for",          "--timeout",
                                                 "--data-binary"};
            int other = 0;
            for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
                other |= strcmp(flag, others[i]) == 0;
            char word[72];
            snprintf(word, sizeof word, "%s ", flag);
            if (other || find_option(flag) || strstr(keys_help, word)) continue;
            fprintf(stderr, "%s names %s, which neither vultus serve nor vultus keys has\n",
                    t ? "deploy/README.md" : "README (The HTTP API)", flag);
            failures++;
        }
    }
    regfree(&re);
    free(http);
    assert_int_equal(failures, 0);
}

/* Every VULTUS_* variable README and deploy/README.md name is one vultus reads. */
static void test_readme_variables_exist(void **state)
{
    (void)state;
    static char top_help[1 << 14];
    const char *args[] = {"--help", NULL};
    assert_int_equal(tc_run_vultus_fd(1, top_help, sizeof top_help, args), 0);
    static char gallery_help[1 << 14];
    const char *gargs[] = {"gallery", "--help", NULL};
    assert_int_equal(tc_run_vultus_fd(1, gallery_help, sizeof gallery_help, gargs), 0);
    const char *texts[] = {readme, deploy_readme};
    int failures = 0;
    for (int t = 0; t < 2; t++) {
        for (const char *p = strstr(texts[t], "VULTUS_"); p; p = strstr(p + 1, "VULTUS_")) {
            char var[64];
            size_t n = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789");
            if (n == strlen("VULTUS_")) continue; /* "VULTUS_*" */
            snprintf(var, sizeof var, "%.*s", (int)n, p);
            int known = strstr(top_help, var) || strstr(gallery_help, var);
            for (int i = 0; i < n_options && !known; i++)
                known = strcmp(options[i].env, var) == 0;
            if (!known) {
                fprintf(stderr, "%s names %s, which no --help mentions\n",
                        t ? "deploy/README.md" : "README.md", var);
                failures++;
            }
        }
    }
    assert_int_equal(failures, 0);
}

/* ---- routes and error codes against the OpenAPI document --------------------------------- */

#define MAX_OPS 128

typedef struct op_set {
    char op[MAX_OPS][160]; /* "GET /v1/collections/{c}" */
    int n;
} op_set;

static void op_add(op_set *s, const char *method, const char *path)
{
    char op[160];
    snprintf(op, sizeof op, "%s %s", method, path);
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->op[i], op) == 0) return;
    if (s->n < MAX_OPS) snprintf(s->op[s->n++], sizeof s->op[0], "%s", op);
}

static int op_has(const op_set *s, const char *op)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->op[i], op) == 0) return 1;
    return 0;
}

/* The document's path with README's short parameter names. */
static void short_path(const char *path, char *out, size_t cap)
{
    static const char *const names[][2] = {
        {"{collection}", "{c}"}, {"{subject}", "{s}"}, {"{face_id}", "{id}"}};
    size_t o = 0;
    for (const char *p = path; *p && o + 1 < cap;) {
        int done = 0;
        for (size_t i = 0; i < 3 && !done; i++) {
            size_t n = strlen(names[i][0]);
            if (strncmp(p, names[i][0], n) == 0) {
                o += (size_t)snprintf(out + o, cap - o, "%s", names[i][1]);
                p += n;
                done = 1;
            }
        }
        if (!done) out[o++] = *p++;
    }
    out[o < cap ? o : cap - 1] = '\0';
}

/* README's route table: rows "| `GET/POST /v1/collections`, `GET …/{c}` | what |"; an item
 * without methods takes the previous item's, "…/{c}" stands for "/v1/collections/{c}" and any
 * other "…/" for "/v1/collections/{c}/", and "?query" is dropped. */
static void readme_routes(const char *text, op_set *out)
{
    char *table = section(text, "| route | what |", "Images come as");
    for (char *row = strstr(table, "| `"); row; row = strstr(row + 1, "| `")) {
        char *cell_end = strstr(row + 2, " |");
        if (!cell_end) break;
        *cell_end = '\0';
        char methods[64] = "GET";
        for (char *item = strchr(row, '`'); item; item = strchr(item, '`')) {
            char *close = strchr(item + 1, '`');
            if (!close) break;
            *close = '\0';
            char *text_item = item + 1;
            char *space = strchr(text_item, ' ');
            const char *path = text_item;
            if (space && text_item[0] != '/' && strncmp(text_item, "\xe2\x80\xa6", 3) != 0) {
                snprintf(methods, sizeof methods, "%.*s", (int)(space - text_item), text_item);
                path = space + 1;
            }
            char full[160];
            if (strncmp(path, "\xe2\x80\xa6/{c}", 7) == 0)
                snprintf(full, sizeof full, "/v1/collections%s", path + 3);
            else if (strncmp(path, "\xe2\x80\xa6/", 4) == 0)
                snprintf(full, sizeof full, "/v1/collections/{c}%s", path + 3);
            else
                snprintf(full, sizeof full, "%s", path);
            full[strcspn(full, "?")] = '\0';
            char m[64];
            snprintf(m, sizeof m, "%s", methods);
            for (char *tok = strtok(m, "/"); tok; tok = strtok(NULL, "/"))
                op_add(out, tok, full);
            item = close + 1;
        }
        row = cell_end + 1;
    }
    free(table);
}

static json_t *openapi(void)
{
    json_error_t err;
    json_t *doc = json_load_file("src/http/openapi.json", 0, &err);
    if (!doc) fail_msg("src/http/openapi.json: %s", err.text);
    return doc;
}

static void test_routes_match_openapi(void **state)
{
    (void)state;
    json_t *doc = openapi();
    op_set api = {0}, documented = {0};
    const char *path;
    json_t *ops;
    json_object_foreach(json_object_get(doc, "paths"), path, ops)
    {
        char p[160];
        short_path(path, p, sizeof p);
        const char *method;
        json_t *op;
        json_object_foreach(ops, method, op)
        {
            char upper[16];
            size_t i = 0;
            for (; method[i] && i < sizeof upper - 1; i++)
                upper[i] = (char)toupper((unsigned char)method[i]);
            upper[i] = '\0';
            if (strcmp(upper, "PARAMETERS") != 0) op_add(&api, upper, p);
        }
    }
    readme_routes(readme, &documented);
    int failures = 0;
    for (int i = 0; i < api.n; i++)
        if (!op_has(&documented, api.op[i])) {
            fprintf(stderr, "%s is in openapi.json, not in README's route table\n", api.op[i]);
            failures++;
        }
    for (int i = 0; i < documented.n; i++)
        if (!op_has(&api, documented.op[i])) {
            fprintf(stderr, "%s is in README's route table, not in openapi.json\n",
                    documented.op[i]);
            failures++;
        }
    json_decref(doc);
    assert_true(api.n >= 20 && documented.n >= 20);
    assert_int_equal(failures, 0);
}

/* README's "**Errors**" paragraph lists the codes after their status ("400 `bad_request`,
 * ..."); the document's ErrorDetail.code describes each as "- code: status: ...". */
static void test_error_codes_match_openapi(void **state)
{
    (void)state;
    json_t *doc = openapi();
    json_t *code = json_object_get(
        json_object_get(
            json_object_get(json_object_get(json_object_get(doc, "components"), "schemas"),
                            "ErrorDetail"),
            "properties"),
        "code");
    const char *desc = json_string_value(json_object_get(code, "description"));
    json_t *codes = json_object_get(code, "enum");
    assert_non_null(desc);
    assert_true(json_array_size(codes) >= 30);
    char *errors = section(readme, "**Errors**", "**Admission control.**");
    int failures = 0;
    size_t i;
    json_t *c;
    json_array_foreach(codes, i, c)
    {
        const char *name = json_string_value(c);
        char key[80];
        snprintf(key, sizeof key, "- %s: ", name);
        const char *d = strstr(desc, key);
        int status = d ? atoi(d + strlen(key)) : 0;
        snprintf(key, sizeof key, "`%s`", name);
        const char *r = strstr(errors, key);
        /* The last status number in README before the code. */
        int readme_status = 0;
        for (const char *p = errors; r && p < r; p++)
            if (isdigit((unsigned char)p[0]) && isdigit((unsigned char)p[1]) &&
                isdigit((unsigned char)p[2]) && !isdigit((unsigned char)p[3]) &&
                (p == errors || !isalnum((unsigned char)p[-1])) && (p[0] >= '1' && p[0] <= '5'))
                readme_status = atoi(p);
        if (!r || status != readme_status) {
            fprintf(stderr, "%s: openapi.json says %d, README %s %d\n", name, status,
                    r ? "lists it under" : "does not list it;", readme_status);
            failures++;
        }
    }
    /* And README names no code the document lacks. */
    for (const char *p = strchr(errors, '`'); p; p = strchr(p, '`')) {
        const char *close = strchr(p + 1, '`');
        if (!close) break;
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(close - p - 1), p + 1);
        /* Not codes: a header, a path, the error's shape. */
        int known = strcmp(name, "Retry-After") == 0 || name[0] == '/' || name[0] == '{';
        json_array_foreach(codes, i, c) known |= strcmp(json_string_value(c), name) == 0;
        if (!known) {
            fprintf(stderr, "README's error list names `%s`, not a code of openapi.json\n", name);
            failures++;
        }
        p = close + 1;
    }
    free(errors);
    json_decref(doc);
    assert_int_equal(failures, 0);
}

/* "has a libFuzzer target (11, `make fuzz`)": the count is the number of tests/fuzz/fuzz_*.c,
 * and docs/fuzzing.md's table of targets has a row for each. */
/* --workers 0 counts the CPUs once, at start (the workers and their contexts are made then):
 * `serve --help` and README say so, and that a changed quota (Kubernetes' in-place resize)
 * takes a restart. Neither did; an operator who resized a pod in place saw no change. */
static void test_workers_counted_at_start(void **state)
{
    (void)state;
    char *help = squeeze(help_text);
    assert_non_null(help);
    const char *workers = strstr(help, "--workers");
    if (!workers || !strstr(workers, "counted once, at start") ||
        strstr(workers, "counted once, at start") > strstr(workers, "--queue") ||
        !strstr(workers, "takes a restart"))
        fail_msg("serve --help's --workers does not say the CPUs are counted once, at start: "
                 "%.400s",
                 workers ? workers : help);
    if (!strstr(readme, "count is made once, at start") || !strstr(readme, "in-place pod resize"))
        fail_msg("README does not say --workers 0 counts the CPUs once, at start");
    free(help);
}

static void test_fuzz_target_count(void **state)
{
    (void)state;
    DIR *dir = opendir("tests/fuzz");
    assert_non_null(dir);
    int n = 0, failures = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "fuzz_", 5) != 0 || len < 3 || strcmp(e->d_name + len - 2, ".c"))
            continue;
        n++;
        char name[300];
        snprintf(name, sizeof name, "`%.*s`", (int)(len - 7), e->d_name + 5);
        if (!strstr(fuzzing_md, name)) {
            fprintf(stderr, "docs/fuzzing.md's table has no row for %s\n", name);
            failures++;
        }
    }
    closedir(dir);
    char words[80];
    snprintf(words, sizeof words, "has a libFuzzer target (%d, `make fuzz`)", n);
    if (!strstr(readme, words)) {
        fprintf(stderr, "README does not say '%s'\n", words);
        failures++;
    }
    assert_int_equal(failures, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_serve_defaults_match_readme),
        cmocka_unit_test(test_readme_options_exist),
        cmocka_unit_test(test_readme_variables_exist),
        cmocka_unit_test(test_routes_match_openapi),
        cmocka_unit_test(test_error_codes_match_openapi),
        cmocka_unit_test(test_workers_counted_at_start),
        cmocka_unit_test(test_fuzz_target_count),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
