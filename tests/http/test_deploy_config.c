/*
 * The deployment files agree with the program (they drift otherwise: a new option missing
 * from the ConfigMap, a new build dependency missing from the image):
 *   - deploy/kubernetes/base/configmap.yaml sets every `vultus serve` option's VULTUS_*
 *     variable (deploy/README.md promises the whole table there), except VULTUS_STORE, which
 *     holds a password and lives in a Secret; and sets nothing the program does not read;
 *   - deploy/Dockerfile's build stage installs every library package (-dev) of
 *     tools/bootstrap's REQUIRED list, the one list of what the build needs;
 *   - deploy/kubernetes/base/ingress.yaml routes every path of /openapi.json but /metrics,
 *     which needs no key and names every collection (Prometheus scrapes the pods directly);
 *   - every VULTUS_* variable named anywhere in deploy/ is in `vultus serve --help`, spelled
 *     the same (what an operator reads to configure the pods);
 *   - the Deployment's probes ask /readyz (startup, readiness) and /healthz (liveness), paths
 *     of /openapi.json, on the port VULTUS_LISTEN opens, as do the Prometheus annotations;
 *     terminationGracePeriodSeconds is above the preStop sleep plus VULTUS_DRAIN_TIMEOUT_MS
 *     (counted from SIGTERM), and VULTUS_GRACE_MS is within the drain;
 *   - the container asks for at least the RSS measured under load (README, "Load benchmark")
 *     and as many CPUs as VULTUS_WORKERS;
 *   - the Ingress's body limit (proxy-body-size) is VULTUS_MAX_BODY_BYTES, to the byte, in
 *     both overlays; run through nginx (Debian's package, when installed: the directive the
 *     annotation sets) in front of the real server, a body of the limit reaches vultus and one
 *     byte more gets the edge's 413 (deploy/README, "Request bodies", says why the edge's is
 *     not raised above the service's);
 *   - the scale-out overlay: two replicas at least, a rollout that never takes one away before
 *     its replacement is ready (maxUnavailable 0), a PodDisruptionBudget below the replica
 *     count, and an autoscaler whose metrics exist (CPU, or a series /metrics serves).
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
#include "client.h"
#include "http/http.h"

#include <ctype.h>
#include <ftw.h>
#include <sys/stat.h>

/* Variables the program reads that are not `serve` options. */
static const char *const not_options[] = {"VULTUS_LOG_LEVEL", "VULTUS_STORE_TIMEOUT_MS"};

/* Whether `text` has a line "  NAME: ..." (a ConfigMap data key). */
static int has_key(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; (p = strstr(p, name)) != NULL; p += n) {
        int at_line_start =
            p - text >= 2 && p[-1] == ' ' && p[-2] == ' ' && (p - text == 2 || p[-3] == '\n');
        if (at_line_start && p[n] == ':') return 1;
    }
    return 0;
}

static void test_configmap_sets_every_option(void **state)
{
    (void)state;
    char *map = tc_slurp("deploy/kubernetes/base/configmap.yaml");
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

/*
 * Every VULTUS_* variable the program reads (a getenv("VULTUS_...") anywhere under src/) is
 * set by the ConfigMap, VULTUS_STORE (a Secret) aside: the `serve` options are checked above,
 * and this catches the others, read where they are used. VULTUS_STORE_TIMEOUT_MS, the
 * scale-out's wait for a PostgreSQL answer, was read by the store but in no manifest.
 */
static char *configmap_for_scan;
static int scanned_reads;

static int scan_getenv(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    size_t n = strlen(path);
    if (flag != FTW_F || n < 3 || strcmp(path + n - 2, ".c") != 0) return 0;
    char *text = tc_slurp(path);
    static const char call[] = "getenv(\"VULTUS_";
    for (const char *p = text; (p = strstr(p, call)) != NULL; p++) {
        const char *name = p + strlen("getenv(\"");
        char var[64];
        snprintf(var, sizeof var, "%.*s", (int)strcspn(name, "\""), name);
        scanned_reads++;
        if (strcmp(var, "VULTUS_STORE") == 0) continue; /* the Secret's */
        if (!has_key(configmap_for_scan, var))
            fail_msg("%s reads %s, which deploy/kubernetes/base/configmap.yaml does not set", path,
                     var);
    }
    free(text);
    return 0;
}

static void test_configmap_sets_every_variable_read(void **state)
{
    (void)state;
    configmap_for_scan = tc_slurp("deploy/kubernetes/base/configmap.yaml");
    scanned_reads = 0;
    assert_int_equal(nftw("src", scan_getenv, 16, FTW_PHYS), 0);
    print_message("src/: %d getenv(\"VULTUS_...\") calls, all set by the ConfigMap (or the "
                  "Secret)\n",
                  scanned_reads);
    assert_true(scanned_reads >= 4);
    free(configmap_for_scan);
}

static void test_dockerfile_installs_the_build_list(void **state)
{
    (void)state;
    char *bootstrap = tc_slurp("tools/bootstrap");
    char *docker = tc_slurp("deploy/Dockerfile");
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
    char *yaml = tc_slurp("deploy/kubernetes/base/ingress.yaml");
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
        hidden ? private ++ : public ++;
    }
    print_message("ingress: %d paths routed, %d kept inside\n", public, private);
    assert_int_equal(private, (int)(sizeof private_paths / sizeof *private_paths));
    json_decref(doc);
    free(yaml);
}

/* Every file of deploy/ an operator reads or applies. */
static const char *const deploy_files[] = {
    "deploy/Dockerfile",
    "deploy/README.md",
    "deploy/kubernetes/base/configmap.yaml",
    "deploy/kubernetes/base/deployment.yaml",
    "deploy/kubernetes/base/ingress.yaml",
    "deploy/kubernetes/base/kustomization.yaml",
    "deploy/kubernetes/base/namespace.yaml",
    "deploy/kubernetes/base/pdb.yaml",
    "deploy/kubernetes/base/pvc.yaml",
    "deploy/kubernetes/base/service.yaml",
    "deploy/kubernetes/scale-out/deployment-patch.yaml",
    "deploy/kubernetes/scale-out/hpa.yaml",
    "deploy/kubernetes/scale-out/ingress-patch.yaml",
    "deploy/kubernetes/scale-out/kustomization.yaml",
    "deploy/kubernetes/scale-out/pdb-patch.yaml",
    "deploy/prometheus/alerts.yaml",
    "deploy/prometheus/alerts_test.yaml",
};

/* Whether `word` occurs in `text` with no name character on either side. */
static int has_word(const char *text, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = text; (p = strstr(p, word)) != NULL; p += n) {
        int before = p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_');
        int after = isalnum((unsigned char)p[n]) || p[n] == '_';
        if (!before && !after) return 1;
    }
    return 0;
}

static void test_deploy_variables_in_serve_help(void **state)
{
    (void)state;
    static char help[32768];
    const char *args[] = {"serve", "--help", NULL};
    int rc = tc_run_vultus(help, sizeof help, args);
    if (rc != 0) fail_msg("vultus serve --help: exit %d (is vultus built beside the test?)", rc);
    int names = 0;
    for (size_t f = 0; f < sizeof deploy_files / sizeof *deploy_files; f++) {
        char *text = tc_slurp(deploy_files[f]);
        for (const char *p = text; (p = strstr(p, "VULTUS_")) != NULL;) {
            size_t n = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789");
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)n, p);
            p += n;
            if (*p == '*') continue; /* "VULTUS_*": the family, not a name */
            if (!has_word(help, name))
                fail_msg("%s names %s, which `vultus serve --help` does not", deploy_files[f],
                         name);
            names++;
        }
        free(text);
    }
    print_message("deploy/: %d VULTUS_* names, all in vultus serve --help\n", names);
    assert_true(names > 20);
}

/* The text of ConfigMap key `name` (quotes removed) into out; fails when absent. */
static void configmap_value(const char *map, const char *name, char *out, size_t cap)
{
    assert_true(has_key(map, name));
    const char *p = strstr(map, name);
    while (!(p[-1] == ' ' && p[strlen(name)] == ':'))
        p = strstr(p + 1, name);
    p += strlen(name) + 1;
    p += strspn(p, " \"");
    size_t n = strcspn(p, "\"\n");
    snprintf(out, cap, "%.*s", (int)n, p);
}

static long configmap_long(const char *map, const char *name)
{
    char v[128];
    configmap_value(map, name, v, sizeof v);
    return atol(v);
}

/* The first "key: value" at or after `from` (and before `end`, when not NULL), value into
 * out without quotes; NULL when absent. */
static const char *yaml_value(const char *from, const char *end, const char *key, char *out,
                              size_t cap)
{
    const char *p = strstr(from, key);
    if (!p || (end && p >= end)) return NULL;
    const char *v = p + strlen(key);
    v += strspn(v, " \"");
    size_t n = strcspn(v, "\"\n");
    snprintf(out, cap, "%.*s", (int)n, v);
    return p;
}

/* A Kubernetes memory quantity (512Mi, 1Gi, 600M) in bytes. */
static double memory_bytes(const char *q)
{
    char *end;
    double v = strtod(q, &end);
    static const struct {
        const char *suffix;
        double factor;
    } units[] = {{"Ki", 1024.0}, {"Mi", 1048576.0}, {"Gi", 1073741824.0},
                 {"k", 1e3},     {"M", 1e6},        {"G", 1e9}};
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if (strcmp(end, units[i].suffix) == 0) return v * units[i].factor;
    if (*end) fail_msg("memory quantity %s: unknown unit", q);
    return v;
}

static int openapi_has_path(const char *path)
{
    json_error_t err;
    json_t *doc = json_load_file("src/http/openapi.json", 0, &err);
    assert_non_null(doc);
    int found = json_object_get(json_object_get(doc, "paths"), path) != NULL;
    json_decref(doc);
    return found;
}

static void test_probes_ports_and_shutdown(void **state)
{
    (void)state;
    char *map = tc_slurp("deploy/kubernetes/base/configmap.yaml");
    char *dep = tc_slurp("deploy/kubernetes/base/deployment.yaml");
    char v[128];

    /* the port: VULTUS_LISTEN's, the container's "http" port, the probes' and Prometheus' */
    configmap_value(map, "VULTUS_LISTEN", v, sizeof v);
    const char *colon = strrchr(v, ':');
    assert_non_null(colon);
    long port = atol(colon + 1);
    const char *ports = strstr(dep, "\n          ports:");
    assert_non_null(ports);
    assert_non_null(yaml_value(ports, NULL, "- name:", v, sizeof v));
    assert_string_equal(v, "http");
    assert_non_null(yaml_value(ports, NULL, "containerPort:", v, sizeof v));
    if (atol(v) != port) fail_msg("containerPort %s, but VULTUS_LISTEN opens %ld", v, port);
    assert_non_null(yaml_value(dep, NULL, "prometheus.io/port:", v, sizeof v));
    if (atol(v) != port) fail_msg("prometheus.io/port %s, but VULTUS_LISTEN opens %ld", v, port);
    assert_non_null(yaml_value(dep, NULL, "prometheus.io/path:", v, sizeof v));
    assert_string_equal(v, "/metrics");

    static const struct {
        const char *probe, *path;
    } probes[] = {{"startupProbe:", "/readyz"},
                  {"readinessProbe:", "/readyz"},
                  {"livenessProbe:", "/healthz"}};
    for (size_t i = 0; i < sizeof probes / sizeof *probes; i++) {
        const char *p = strstr(dep, probes[i].probe);
        if (!p) fail_msg("deployment.yaml has no %s", probes[i].probe);
        assert_non_null(yaml_value(p, NULL, "path:", v, sizeof v));
        if (strcmp(v, probes[i].path) != 0 || !openapi_has_path(v))
            fail_msg("%s asks %s (expected %s, a path of /openapi.json)", probes[i].probe, v,
                     probes[i].path);
        assert_non_null(yaml_value(p, NULL, "port:", v, sizeof v));
        if (strcmp(v, "http") != 0) fail_msg("%s on port %s, not http", probes[i].probe, v);
    }

    /* the shutdown: the kubelet's SIGKILL comes terminationGracePeriodSeconds after the pod
     * is marked terminating, which starts the preStop sleep; SIGTERM follows it, and the
     * drain ends at most VULTUS_DRAIN_TIMEOUT_MS after SIGTERM (its grace included) */
    assert_non_null(yaml_value(dep, NULL, "terminationGracePeriodSeconds:", v, sizeof v));
    long termination_ms = atol(v) * 1000;
    const char *pre = strstr(dep, "preStop:");
    assert_non_null(pre);
    const char *sleep = strstr(pre, "\"sleep\", \"");
    assert_non_null(sleep);
    long prestop_ms = (long)(atof(sleep + strlen("\"sleep\", \"")) * 1000);
    long grace_ms = configmap_long(map, "VULTUS_GRACE_MS");
    long drain_ms = configmap_long(map, "VULTUS_DRAIN_TIMEOUT_MS");
    print_message("shutdown: preStop %ld ms + drain %ld ms (grace %ld ms) < %ld ms\n", prestop_ms,
                  drain_ms, grace_ms, termination_ms);
    if (prestop_ms + drain_ms >= termination_ms)
        fail_msg("terminationGracePeriodSeconds (%ld ms) <= preStop %ld ms + drain %ld ms",
                 termination_ms, prestop_ms, drain_ms);
    if (grace_ms >= drain_ms)
        fail_msg("VULTUS_GRACE_MS %ld >= VULTUS_DRAIN_TIMEOUT_MS %ld: the drain times out "
                 "before the listener closes",
                 grace_ms, drain_ms);
    assert_true(grace_ms >= prestop_ms / 2); /* a load balancer has time to notice */
    free(map);
    free(dep);
}

/* An nginx size ("16m", "512k", "1g", "1048576") in bytes; -1 when malformed. */
static long long nginx_size(const char *text)
{
    char *end = NULL;
    long long v = strtoll(text, &end, 10);
    if (end == text || v < 0) return -1;
    switch (tolower((unsigned char)*end)) {
    case 'k': v <<= 10, end++; break;
    case 'm': v <<= 20, end++; break;
    case 'g': v <<= 30, end++; break;
    default: break;
    }
    return *end && !isspace((unsigned char)*end) && *end != '"' ? -1 : v;
}

/* The value of annotation `name` in a YAML text (quotes dropped) into out; NULL when absent. */
static const char *annotation(const char *yaml, const char *name, char *out, size_t cap)
{
    const char *p = strstr(yaml, name);
    if (!p || p[strlen(name)] != ':') return NULL;
    p += strlen(name) + 1;
    while (*p == ' ' || *p == '"')
        p++;
    size_t n = strcspn(p, "\"\n");
    snprintf(out, cap, "%.*s", (int)n, p);
    return out;
}

/* A free loopback port (bound then released; good enough for a test). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
                       getsockname(fd, (struct sockaddr *)&a, &len) == 0
                   ? ntohs(a.sin_port)
                   : -1;
    if (fd >= 0) close(fd);
    return port;
}

/*
 * The body limit at the edge and in the service are one number. A client over it meets the
 * Ingress's own 413 (nginx's HTML page), never the service's JSON; raising the edge's limit
 * above the service's to let the JSON through does not work: nginx then sends the body to a
 * pod that answers 413 from the Content-Length and closes, and nginx, still writing, gets a
 * broken pipe and answers 502 (measured: 4 to 16 of 20 uploads, deploy/README.md "Request
 * bodies"). Checked: the two values, and with nginx installed, that its directive puts the
 * limit at the same byte as vultus's (a body of the limit passes, one byte more does not).
 */
static void test_ingress_body_limit_is_the_service_limit(void **state)
{
    (void)state;
    char *ingress = tc_slurp("deploy/kubernetes/base/ingress.yaml");
    char *patch = tc_slurp("deploy/kubernetes/scale-out/ingress-patch.yaml");
    char *cm = tc_slurp("deploy/kubernetes/base/configmap.yaml");
    char value[64], patched[64];
    const char *key = "nginx.ingress.kubernetes.io/proxy-body-size";
    assert_non_null(annotation(ingress, key, value, sizeof value));
    long long edge = nginx_size(value);
    if (annotation(patch, key, patched, sizeof patched) && nginx_size(patched) != edge)
        fail_msg("scale-out's ingress-patch.yaml sets proxy-body-size %s, the base %s", patched,
                 value);
    const char *v = strstr(cm, "VULTUS_MAX_BODY_BYTES:");
    assert_non_null(v);
    v += strlen("VULTUS_MAX_BODY_BYTES:");
    while (*v == ' ' || *v == '"')
        v++;
    long long service = atoll(v);
    print_message("body limit: ingress %s (%lld bytes), VULTUS_MAX_BODY_BYTES %lld\n", value, edge,
                  service);
    if (edge != service)
        fail_msg("ingress.yaml's proxy-body-size %s is %lld bytes, VULTUS_MAX_BODY_BYTES %lld",
                 value, edge, service);
    free(ingress);
    free(patch);
    free(cm);

    if (access("/usr/sbin/nginx", X_OK) != 0 || !tc_have_models()) {
        print_message("no /usr/sbin/nginx (package nginx) or no models/: the limit through nginx "
                      "is not checked\n");
        return;
    }
    char limit[32];
    snprintf(limit, sizeof limit, "%lld", service);
    tc_server srv;
    const char *extra[] = {"--max-body-bytes", limit, NULL};
    assert_int_equal(tc_server_start(&srv, NULL, extra, 1), 0);
    char work[256], conf[300], err[300];
    assert_int_equal(tc_temp_dir(work), 0);
    snprintf(conf, sizeof conf, "%s/nginx.conf", work);
    snprintf(err, sizeof err, "%s/error.log", work);
    int port = free_port();
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f,
            "%sworker_processes 1;\npid %s/nginx.pid;\nerror_log %s info;\n"
            "events { worker_connections 64; }\n"
            "http {\n  access_log off;\n"
            "  client_body_temp_path %s/body; proxy_temp_path %s/proxy;\n"
            "  fastcgi_temp_path %s/fastcgi; uwsgi_temp_path %s/uwsgi; scgi_temp_path %s/scgi;\n"
            "  client_max_body_size %s;\n" /* what the annotation sets */
            "  server {\n    listen 127.0.0.1:%d;\n    location / {\n"
            "      proxy_pass http://127.0.0.1:%d;\n      proxy_set_header Host $host;\n"
            "    }\n  }\n}\n",
            geteuid() == 0 ? "user root;\n" : "", work, err, work, work, work, work, work, value,
            port, srv.port);
    assert_int_equal(fclose(f), 0);
    pid_t nginx = fork();
    if (nginx == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) dup2(null, 0), dup2(null, 1), dup2(null, 2);
        execl("/usr/sbin/nginx", "nginx", "-p", work, "-e", err, "-c", conf, "-g", "daemon off;",
              (char *)NULL);
        _exit(127);
    }
    int up = 0;
    for (int tries = 0; tries < 500 && !up; tries++) { /* up to 5 s */
        int fd = tc_connect(port);
        if (fd >= 0) close(fd);
        up = fd >= 0;
        if (!up) tc_sleep_ms(10);
    }
    if (!up) fail_msg("nginx did not start; see %s", err);
    char *body = calloc(1, (size_t)service + 1);
    assert_non_null(body);
    tc_response at, over;
    int rc_at = tc_request(port, "POST", "/v1/detect", "Content-Type: image/jpeg\r\n", body,
                           (size_t)service, &at);
    int rc_over = tc_request(port, "POST", "/v1/detect", "Content-Type: image/jpeg\r\n", body,
                             (size_t)service + 1, &over);
    char at_type[64] = "", over_type[64] = "";
    tc_header(&at, "Content-Type", at_type, sizeof at_type);
    tc_header(&over, "Content-Type", over_type, sizeof over_type);
    print_message("through nginx: %lld bytes -> %d %s (%.80s), %lld bytes -> %d %s\n", service,
                  at.status, at_type, at.body ? at.body : "", service + 1, over.status,
                  over_type);
    kill(nginx, SIGQUIT);
    waitpid(nginx, NULL, 0);
    tc_server_stop(&srv);
    tc_rm_rf(work);
    free(body);
    /* the service's own answer (zeros are no image it can decode): JSON, not 413 */
    assert_int_equal(rc_at, 0);
    assert_true(at.status != 413 && at.status != 502);
    assert_non_null(strstr(at_type, "application/json"));
    /* one byte more: the edge's 413 */
    assert_int_equal(rc_over, 0);
    assert_int_equal(over.status, 413);
    tc_response_free(&at);
    tc_response_free(&over);
}

static void test_resources_cover_measured_use(void **state)
{
    (void)state;
    char *map = tc_slurp("deploy/kubernetes/base/configmap.yaml");
    char *dep = tc_slurp("deploy/kubernetes/base/deployment.yaml");
    char *readme = tc_slurp("README.md");
    char v[128];
    const char *containers = strstr(dep, "\n      containers:");
    assert_non_null(containers);
    const char *requests = yaml_value(containers, NULL, "requests:", v, sizeof v);
    assert_non_null(requests);
    const char *limits = strstr(requests, "limits:");
    assert_non_null(limits);
    assert_non_null(yaml_value(requests, limits, "cpu:", v, sizeof v));
    double cpu = v[strlen(v) - 1] == 'm' ? atof(v) / 1000 : atof(v);
    long workers = configmap_long(map, "VULTUS_WORKERS");
    if (workers < 1 || (double)workers != cpu)
        fail_msg("VULTUS_WORKERS %ld, but the container asks for %g CPUs", workers, cpu);
    assert_non_null(yaml_value(requests, limits, "memory:", v, sizeof v));
    double request = memory_bytes(v);
    assert_non_null(yaml_value(limits, NULL, "memory:", v, sizeof v));
    double limit = memory_bytes(v);

    const char *row = strstr(readme, "| RSS under load (max) | ");
    if (!row) fail_msg("README's load table has no 'RSS under load (max)' row");
    double rss_mb = atof(row + strlen("| RSS under load (max) | "));
    assert_true(rss_mb > 0);
    print_message("memory: request %.0f MB, limit %.0f MB, measured under load %.1f MB\n",
                  request / 1e6, limit / 1e6, rss_mb);
    if (request < rss_mb * 1e6)
        fail_msg("the memory request (%.0f MB) is below the RSS measured under load (%.1f MB)",
                 request / 1e6, rss_mb);
    assert_true(limit >= request);
    /* deploy/README's Memory section sizes the body budget against the same figure: it must
     * quote the table's, not the one of an older run (it said 254.5 MB when the table said
     * 284.5). */
    char *deploy_readme = tc_slurp("deploy/README.md");
    static const char quote[] = "(README, \"Load benchmark\": ";
    const char *q = strstr(deploy_readme, quote);
    if (!q) fail_msg("deploy/README.md does not quote README's \"Load benchmark\" RSS");
    double quoted_mb = atof(q + strlen(quote));
    if (quoted_mb != rss_mb)
        fail_msg("deploy/README.md quotes %.1f MB under load, README's load table says %.1f MB",
                 quoted_mb, rss_mb);
    free(deploy_readme);
    free(map);
    free(dep);
    free(readme);
}

static void test_scale_out_rollout_and_autoscaler(void **state)
{
    (void)state;
    char *dep = tc_slurp("deploy/kubernetes/scale-out/deployment-patch.yaml");
    char *pdb = tc_slurp("deploy/kubernetes/scale-out/pdb-patch.yaml");
    char *hpa = tc_slurp("deploy/kubernetes/scale-out/hpa.yaml");
    char *metrics = tc_slurp("src/http/metrics.c");
    char v[128];

    assert_non_null(yaml_value(dep, NULL, "replicas:", v, sizeof v));
    long replicas = atol(v);
    assert_non_null(yaml_value(dep, NULL, "type:", v, sizeof v));
    assert_string_equal(v, "RollingUpdate");
    assert_non_null(yaml_value(dep, NULL, "maxUnavailable:", v, sizeof v));
    if (strcmp(v, "0") != 0)
        fail_msg("maxUnavailable %s: a rollout would stop a pod before its replacement is ready",
                 v);
    assert_non_null(yaml_value(dep, NULL, "maxSurge:", v, sizeof v));
    assert_true(atol(v) >= 1);

    assert_non_null(yaml_value(hpa, NULL, "minReplicas:", v, sizeof v));
    long min_replicas = atol(v);
    assert_non_null(yaml_value(pdb, NULL, "minAvailable:", v, sizeof v));
    long min_available = atol(v);
    if (replicas < 2 || min_replicas < 2 || min_available >= replicas ||
        min_available >= min_replicas || min_available < 1)
        fail_msg("replicas %ld, HPA minReplicas %ld, PDB minAvailable %ld: a node drain must be "
                 "able to take one pod while one serves",
                 replicas, min_replicas, min_available);

    /* the autoscaler's metrics: a resource, or a series /metrics serves (commented examples
     * included: they are what an operator copies) */
    int resources = 0, series = 0;
    for (const char *p = hpa; (p = strstr(p, "name: ")) != NULL; p++) {
        char name[96];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(p + 6, " \n"), p + 6);
        if (strcmp(name, "cpu") == 0 || strcmp(name, "memory") == 0) resources++;
    }
    for (const char *p = hpa; (p = strstr(p, "vultus_")) != NULL;) {
        size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyz_");
        char name[96];
        snprintf(name, sizeof name, "%.*s", (int)n, p);
        p += n;
        size_t len = strlen(name);
        static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
        for (size_t i = 0; i < 3; i++) {
            size_t sl = strlen(suffixes[i]);
            if (len > sl && strcmp(name + len - sl, suffixes[i]) == 0) name[len - sl] = '\0';
        }
        char help[128];
        snprintf(help, sizeof help, "# HELP %s ", name);
        if (!strstr(metrics, help))
            fail_msg("hpa.yaml names %s, which /metrics does not serve", name);
        series++;
    }
    print_message("scale-out: %ld replicas, maxUnavailable 0, PDB minAvailable %ld, HPA on %d "
                  "resource(s), %d /metrics series named\n",
                  replicas, min_available, resources, series);
    assert_true(resources >= 1);
    free(dep);
    free(pdb);
    free(hpa);
    free(metrics);
}

/* The Secret with the database URL is created without the password on a command line: a
 * `--from-literal=VULTUS_STORE=postgresql://...:PASSWORD@...` stays in the shell's history
 * file and shows in `ps` while kubectl runs. deploy/ reads it with `read -s` into a file only
 * its owner can read (umask 077) and passes that with --from-file. */
static void test_secret_not_on_a_command_line(void **state)
{
    (void)state;
    int literals = 0;
    for (size_t f = 0; f < sizeof deploy_files / sizeof *deploy_files; f++) {
        char *text = tc_slurp(deploy_files[f]);
        for (const char *p = text; (p = strstr(p, "--from-literal")) != NULL; p++) {
            const char *eol = strchr(p, '\n');
            print_message("%s: %.*s\n", deploy_files[f], eol ? (int)(eol - p) : (int)strlen(p), p);
            literals++;
        }
        free(text);
    }
    if (literals)
        fail_msg("%d kubectl --from-literal in deploy/: the password goes into the "
                 "shell's history",
                 literals);
    char *readme = tc_slurp("deploy/README.md");
    const char *create = strstr(readme, "create secret generic vultus-secret");
    assert_non_null(create);
    const char *eol = strchr(create, '\n');
    assert_non_null(eol);
    char line[256];
    snprintf(line, sizeof line, "%.*s", (int)(eol - create), create);
    assert_non_null(strstr(line, "--from-file=VULTUS_STORE="));
    /* the file is written by the shell from a silent read, by its owner only, then removed */
    const char *block = create - (create - readme > 400 ? 400 : create - readme);
    char before[512];
    snprintf(before, sizeof before, "%.*s", (int)(create - block), block);
    assert_non_null(strstr(before, "read -rsp"));
    assert_non_null(strstr(before, "umask 077"));
    assert_non_null(strstr(eol, "shred -u"));
    free(readme);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_configmap_sets_every_option),
        cmocka_unit_test(test_configmap_sets_every_variable_read),
        cmocka_unit_test(test_dockerfile_installs_the_build_list),
        cmocka_unit_test(test_ingress_routes_public_paths_only),
        cmocka_unit_test(test_ingress_body_limit_is_the_service_limit),
        cmocka_unit_test(test_deploy_variables_in_serve_help),
        cmocka_unit_test(test_probes_ports_and_shutdown),
        cmocka_unit_test(test_resources_cover_measured_use),
        cmocka_unit_test(test_scale_out_rollout_and_autoscaler),
        cmocka_unit_test(test_secret_not_on_a_command_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
