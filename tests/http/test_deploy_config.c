/*
 * The deployment files agree with the program (they drift otherwise: a new option missing
 * from the ConfigMap, a new build dependency missing from the image):
 *   - deploy/kubernetes/base/configmap.yaml sets every `vultus serve` option's VULTUS_*
 *     variable (deploy/README.md promises the whole table there), except VULTUS_STORE, which
 *     holds a password and lives in a Secret; and sets nothing the program does not read;
 *   - deploy/Dockerfile's build stage installs every library package (-dev) of
 *     tools/bootstrap's REQUIRED list, the one list of what the build needs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "http/http.h"

/* Variables the program reads that are not `serve` options. */
static const char *const not_options[] = {"VULTUS_LOG_LEVEL"};

/* not inlined: GCC 12 then takes the results for pointers to its local (-Wdangling-pointer) */
__attribute__((noinline)) static char *slurp(const char *path)
{
    char *text;
    size_t len;
    int rc = base_file_read(path, 1 << 20, &text, &len);
    assert_int_equal(rc, 0); /* run from the repository root, as make test does */
    return text;
}

/* Whether `text` has a line "  NAME: ..." (a ConfigMap data key). */
static int has_key(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; (p = strstr(p, name)) != NULL; p += n) {
        int at_line_start = p - text >= 2 && p[-1] == ' ' && p[-2] == ' ' &&
                            (p - text == 2 || p[-3] == '\n');
        if (at_line_start && p[n] == ':') return 1;
    }
    return 0;
}

static void test_configmap_sets_every_option(void **state)
{
    (void)state;
    char *map = slurp("deploy/kubernetes/base/configmap.yaml");
    for (int i = 0; i < http_option_count; i++) {
        if (strcmp(http_options[i].env, "VULTUS_STORE") == 0) {
            assert_false(has_key(map, "VULTUS_STORE")); /* a secret: never in a ConfigMap */
            continue;
        }
        if (!has_key(map, http_options[i].env))
            fail_msg("configmap.yaml does not set %s (--%s)", http_options[i].env,
                     http_options[i].name);
    }
    /* and every VULTUS_ key it sets is read by the program */
    int keys = 0;
    for (const char *p = map; (p = strstr(p, "\n  VULTUS_")) != NULL; p++) {
        const char *name = p + 3, *end = strchr(name, ':');
        assert_non_null(end);
        char key[64];
        snprintf(key, sizeof key, "%.*s", (int)(end - name), name);
        int known = 0;
        for (int i = 0; i < http_option_count && !known; i++)
            known = strcmp(http_options[i].env, key) == 0;
        for (size_t i = 0; i < sizeof not_options / sizeof *not_options && !known; i++)
            known = strcmp(not_options[i], key) == 0;
        if (!known) fail_msg("configmap.yaml sets %s, which vultus does not read", key);
        keys++;
    }
    print_message("configmap: %d VULTUS_* keys for %d options\n", keys, http_option_count);
    assert_true(keys >= http_option_count - 1);
    free(map);
}

static void test_dockerfile_installs_the_build_list(void **state)
{
    (void)state;
    char *bootstrap = slurp("tools/bootstrap");
    char *docker = slurp("deploy/Dockerfile");
    const char *list = strstr(bootstrap, "\nREQUIRED=(");
    assert_non_null(list);
    const char *end = strstr(list, "\n)");
    assert_non_null(end);
    /* the build stage: from its FROM to the next FROM */
    const char *stage = strstr(docker, " AS build");
    assert_non_null(stage);
    const char *stage_end = strstr(stage, "\nFROM ");
    assert_non_null(stage_end);
    int checked = 0;
    for (const char *p = list; p < end;) {
        while (p < end && (*p == ' ' || *p == '\n' || *p == '\t'))
            p++;
        size_t n = strcspn(p, " \n\t");
        if (*p == '#') { /* a comment line */
            p += strcspn(p, "\n");
            continue;
        }
        char pkg[96];
        snprintf(pkg, sizeof pkg, "%.*s", (int)n, p);
        p += n;
        size_t len = strlen(pkg);
        if (len < 5 || strcmp(pkg + len - 4, "-dev") != 0) continue;
        /* the package name as a whole word inside the build stage */
        int found = 0;
        for (const char *q = stage; !found && (q = strstr(q, pkg)) != NULL && q < stage_end;
             q += len)
            found = (q[-1] == ' ' || q[-1] == '\n') && strchr(" \\\n", q[len]) != NULL;
        if (!found) fail_msg("deploy/Dockerfile's build stage does not install %s", pkg);
        checked++;
    }
    print_message("Dockerfile: %d library packages of tools/bootstrap installed\n", checked);
    assert_true(checked >= 10);
    free(bootstrap);
    free(docker);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_configmap_sets_every_option),
        cmocka_unit_test(test_dockerfile_installs_the_build_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
