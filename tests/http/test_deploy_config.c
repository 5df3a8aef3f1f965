/*
 * The deployment files agree with the program (they drift otherwise: a new option missing
 * from the ConfigMap, a new build dependency missing from the image):
 *   - deploy/kubernetes/base/configmap.yaml sets every `vultus serve` option's VULTUS_*
 *     variable (deploy/README.md promises the whole table there), except VULTUS_STORE, which
 *     holds a password and lives in a Secret; and sets nothing the program does not read;
 *   - deploy/Dockerfile's build stage installs every library package (-dev) of
 *     tools/bootstrap's REQUIRED list, the one list of what the build needs;
 *   - deploy/kubernetes/base/ingress.yaml routes every path of /openapi.json but /metrics,
 *     which needs no key and names every collection (Prometheus scrapes the pods directly).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

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

/* Paths served inside the cluster only, never through the ingress. */
static const char *const private_paths[] = {"/metrics"};

typedef struct ingress_path {
    char path[128];
    int exact; /* pathType Exact; else Prefix */
} ingress_path;

/* Whether an Ingress path routes `path` (Kubernetes' rules: Prefix matches whole elements). */
static int routes(const ingress_path *r, const char *path)
{
    if (r->exact) return strcmp(r->path, path) == 0;
    size_t n = strlen(r->path);
    while (n > 1 && r->path[n - 1] == '/')
        n--;
    if (n == 1 && r->path[0] == '/') return 1;
    return strncmp(r->path, path, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static void test_ingress_routes_public_paths_only(void **state)
{
    (void)state;
    char *yaml = slurp("deploy/kubernetes/base/ingress.yaml");
    ingress_path r[32];
    int n = 0;
    for (const char *p = yaml; (p = strstr(p, "- path: ")) != NULL; p++) {
        assert_true(n < 32);
        p += strlen("- path: ");
        snprintf(r[n].path, sizeof r[n].path, "%.*s", (int)strcspn(p, " \n"), p);
        const char *type = strstr(p, "pathType: ");
        assert_non_null(type);
        type += strlen("pathType: ");
        assert_true(strncmp(type, "Exact", 5) == 0 || strncmp(type, "Prefix", 6) == 0);
        r[n++].exact = strncmp(type, "Exact", 5) == 0;
    }
    assert_true(n > 0);
    json_error_t err;
    json_t *doc = json_load_file("src/http/openapi.json", 0, &err);
    assert_non_null(doc);
    json_t *paths = json_object_get(doc, "paths");
    assert_true(json_is_object(paths));
    const char *path;
    json_t *op;
    int public = 0, private = 0;
    json_object_foreach(paths, path, op)
    {
        int hidden = 0;
        for (size_t i = 0; i < sizeof private_paths / sizeof *private_paths; i++)
            hidden |= strcmp(path, private_paths[i]) == 0;
        int routed = 0;
        for (int i = 0; i < n; i++)
            routed |= routes(&r[i], path);
        if (hidden && routed) fail_msg("ingress.yaml routes %s to the internet", path);
        if (!hidden && !routed) fail_msg("ingress.yaml does not route %s", path);
        hidden ? private++ : public++;
    }
    print_message("ingress: %d paths routed, %d kept inside\n", public, private);
    assert_int_equal(private, (int)(sizeof private_paths / sizeof *private_paths));
    json_decref(doc);
    free(yaml);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_configmap_sets_every_option),
        cmocka_unit_test(test_dockerfile_installs_the_build_list),
        cmocka_unit_test(test_ingress_routes_public_paths_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
