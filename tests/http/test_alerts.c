/*
 * The alert rules of deploy/prometheus/alerts.yaml watch series that exist, so that a renamed
 * metric or label breaks this test rather than silently the pager (an alert on a series that
 * is never scraped never fires):
 *   - every metric an alert's expression names, and every label name it selects on or
 *     aggregates by, is in the /metrics of the real server on loopback after a few requests
 *     (one of them an error), or, for kube_* series, in the short list of kube-state-metrics'
 *     series the rules are allowed to use;
 *   - the figures the rules copy from deploy/kubernetes/base are still those there: the
 *     container's memory limit and VULTUS_DEADLINE_MS;
 *   - `promtool check rules` accepts the file and `promtool test rules alerts_test.yaml` passes
 *     (each alert fires on its synthetic series and stays quiet on a rollout's, a blip's):
 *     skipped when promtool is not installed (Debian's prometheus package, tools/bootstrap).
 *
 * The server test skips when the model pack (models/) is absent. Runs in a few seconds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "client.h"

#include <ctype.h>

#define ALERTS "deploy/prometheus/alerts.yaml"
#define ALERTS_TEST "deploy/prometheus/alerts_test.yaml"

/* The kube-state-metrics series the rules may use, with the labels they may select on: they
 * are not vultus's to serve, so they are checked against this list (kube-state-metrics 2.x
 * names) instead of against /metrics. */
static const struct {
    const char *metric;
    const char *labels[4];
} kube_series[] = {
    {"kube_deployment_status_replicas_unavailable", {"namespace", "deployment", NULL}},
};

/* ---- the rules' expressions ------------------------------------------------------------- */

#define MAX_EXPRS 32
#define MAX_NAMES 256

/* A name an expression uses: a metric, or a label of `metric` (NULL: a label of an
 * aggregation or a vector match, by/without/on/ignoring, which any series of the expression
 * may carry). */
typedef struct used_name {
    char name[96];
    char metric[96]; /* for a label: the metric it selects on, "" for by/on */
    int is_label;
} used_name;

/* The `expr:` values of alerts.yaml, one string each (a block scalar `|` or `>` joined from
 * its more-indented lines). Returns how many. */
static int rule_exprs(const char *yaml, char **out, int cap)
{
    int n = 0;
    for (const char *line = yaml; *line && n < cap;) {
        const char *eol = strchr(line, '\n');
        if (!eol) eol = line + strlen(line);
        size_t indent = strspn(line, " ");
        if (strncmp(line + indent, "expr:", 5) == 0) {
            const char *v = line + indent + 5;
            v += strspn(v, " ");
            size_t vlen = (size_t)(eol - v);
            char *e;
            if (vlen > 0 && (v[0] == '|' || v[0] == '>')) {
                /* a block scalar: the following lines indented deeper than `expr:` */
                const char *start = *eol ? eol + 1 : eol, *p = start;
                while (*p) {
                    const char *next = strchr(p, '\n');
                    if (!next) next = p + strlen(p);
                    size_t in = strspn(p, " ");
                    if (p + in < next && in <= indent) break;
                    p = *next ? next + 1 : next;
                }
                e = strndup(start, (size_t)(p - start));
                eol = p > start ? p - 1 : eol;
            } else {
                e = strndup(v, vlen);
            }
            assert_non_null(e);
            out[n++] = e;
        }
        line = *eol ? eol + 1 : eol;
    }
    return n;
}

static int is_name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == ':';
}

static void add_name(used_name *names, int *count, const char *name, size_t len, const char *metric,
                     int is_label)
{
    assert_true(*count < MAX_NAMES);
    used_name *u = &names[(*count)++];
    snprintf(u->name, sizeof u->name, "%.*s", (int)len, name);
    snprintf(u->metric, sizeof u->metric, "%s", metric ? metric : "");
    u->is_label = is_label;
}

/* The label names of a parenthesised list at *p ("(le, instance)"), past it. */
static const char *label_list(const char *p, used_name *names, int *count)
{
    p += strspn(p, " \n");
    if (*p != '(') fail_msg("a by/on clause without its label list: %.40s", p);
    for (p++; *p && *p != ')';) {
        if (is_name_char(*p)) {
            const char *s = p;
            while (is_name_char(*p))
                p++;
            add_name(names, count, s, (size_t)(p - s), NULL, 1);
        } else {
            p++;
        }
    }
    return *p ? p + 1 : p;
}

/*
 * The metrics and label names one PromQL expression uses, appended to names[*count]. A small
 * lexer, enough for the rules' PromQL: strings, durations ([5m]) and numbers are skipped; a
 * name followed by "(" is a function; by/without/on/ignoring take a label list; a selector's
 * {...} holds `label op "value"` pairs.
 */
static void expr_names(const char *e, used_name *names, int *count)
{
    static const char *const keywords[] = {"and",    "or",         "unless",      "bool",
                                           "offset", "group_left", "group_right", NULL};
    static const char *const label_clauses[] = {"by", "without", "on", "ignoring", NULL};
    static const char *const aggregations[] = {
        "sum",  "min",     "max",      "avg",          "count", "stddev", "stdvar",
        "topk", "bottomk", "quantile", "count_values", "group", NULL};
    char metric[96] = "";
    for (const char *p = e; *p;) {
        if (*p == '"') {
            p = strchr(p + 1, '"');
            assert_non_null(p);
            p++;
        } else if (*p == '[') {
            p = strchr(p, ']');
            assert_non_null(p);
            p++;
        } else if (isdigit((unsigned char)*p) || (*p == '.' && isdigit((unsigned char)p[1]))) {
            strtod(p, (char **)&p);
        } else if (*p == '{') {
            /* a selector: label names until the closing brace */
            for (p++; *p && *p != '}';) {
                p += strspn(p, " ,\n");
                if (*p == '}') break;
                const char *s = p;
                while (is_name_char(*p))
                    p++;
                if (p == s) fail_msg("selector not understood at %.40s", s);
                add_name(names, count, s, (size_t)(p - s), metric, 1);
                p += strspn(p, " =!~");
                if (*p != '"') fail_msg("selector value not quoted at %.40s", s);
                p = strchr(p + 1, '"');
                assert_non_null(p);
                p++;
            }
            if (*p) p++;
            metric[0] = '\0';
        } else if (isalpha((unsigned char)*p) || *p == '_') {
            const char *s = p;
            while (is_name_char(*p))
                p++;
            size_t len = (size_t)(p - s);
            const char *after = p + strspn(p, " \n");
            int handled = 0;
            for (int i = 0; label_clauses[i] && !handled; i++)
                if (strlen(label_clauses[i]) == len && strncmp(s, label_clauses[i], len) == 0) {
                    p = label_list(after, names, count);
                    handled = 1;
                }
            for (int i = 0; keywords[i] && !handled; i++)
                handled = strlen(keywords[i]) == len && strncmp(s, keywords[i], len) == 0;
            if (handled) {
                /* a group_left(...)'s list is labels too */
                if (*after == '(' && strncmp(s, "group_", 6) == 0)
                    p = label_list(after, names, count);
                continue;
            }
            /* an aggregation (its by/without may come before its parenthesis) */
            for (int i = 0; aggregations[i] && !handled; i++)
                handled = strlen(aggregations[i]) == len && strncmp(s, aggregations[i], len) == 0;
            if (handled || *after == '(') continue; /* or a function: rate, histogram_quantile */
            snprintf(metric, sizeof metric, "%.*s", (int)len, s);
            add_name(names, count, s, len, NULL, 0);
            if (*after != '{') metric[0] = '\0';
        } else {
            p++;
        }
    }
}

/* Every name the rules use; the count. */
static int alert_names(used_name *names)
{
    char *yaml = tc_slurp(ALERTS);
    char *exprs[MAX_EXPRS];
    int n = rule_exprs(yaml, exprs, MAX_EXPRS), count = 0;
    for (int i = 0; i < n; i++) {
        expr_names(exprs[i], names, &count);
        free(exprs[i]);
    }
    free(yaml);
    return count;
}

/* Whether the lexer reads what the rules are made of: a check of the test itself, so that a
 * lexer that found nothing could not pass the check below vacuously. */
static void test_lexer_reads_promql(void **state)
{
    (void)state;
    used_name names[MAX_NAMES];
    int count = 0;
    expr_names("histogram_quantile(0.99, sum by (le) (rate(m_bucket{route=~\"/v1/.*\", "
               "status!=\"5\"}[5m]))) > 0.5 * 5.000 and on(instance) up == 1",
               names, &count);
    static const struct {
        const char *name, *metric;
        int is_label;
    } want[] = {{"le", "", 1},
                {"m_bucket", "", 0},
                {"route", "m_bucket", 1},
                {"status", "m_bucket", 1},
                {"instance", "", 1},
                {"up", "", 0}};
    assert_int_equal(count, (int)(sizeof want / sizeof *want));
    for (int i = 0; i < count; i++) {
        assert_string_equal(names[i].name, want[i].name);
        assert_string_equal(names[i].metric, want[i].metric);
        assert_int_equal(names[i].is_label, want[i].is_label);
    }
    /* and the file has a rule per alert, each with its expression */
    char *yaml = tc_slurp(ALERTS);
    char *exprs[MAX_EXPRS];
    int n = rule_exprs(yaml, exprs, MAX_EXPRS), alerts = 0;
    for (const char *p = yaml; (p = strstr(p, "- alert: ")) != NULL; p++)
        alerts++;
    print_message("%s: %d alerts, %d expressions\n", ALERTS, alerts, n);
    assert_true(alerts >= 7);
    assert_int_equal(n, alerts);
    for (int i = 0; i < n; i++)
        free(exprs[i]);
    free(yaml);
}

/* ---- against the real server ------------------------------------------------------------ */

/* Whether /metrics (text) has a sample line of `metric` (with `label`, when not NULL). */
static int scraped(const char *text, const char *metric, const char *label)
{
    size_t n = strlen(metric);
    for (const char *line = text; *line;) {
        const char *eol = strchr(line, '\n');
        if (!eol) eol = line + strlen(line);
        if (strncmp(line, metric, n) == 0 && (line[n] == '{' || line[n] == ' ')) {
            if (!label) return 1;
            char want[128];
            snprintf(want, sizeof want, "%s=\"", label);
            const char *close = memchr(line, '}', (size_t)(eol - line));
            for (const char *l = line + n + 1; close && l < close; l++) {
                if ((l[-1] == '{' || l[-1] == ',') && strncmp(l, want, strlen(want)) == 0) return 1;
            }
        }
        line = *eol ? eol + 1 : eol;
    }
    return 0;
}

static int kube_series_index(const char *metric)
{
    for (size_t i = 0; i < sizeof kube_series / sizeof *kube_series; i++)
        if (strcmp(kube_series[i].metric, metric) == 0) return (int)i;
    return -1;
}

static void test_rules_use_served_series(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    used_name names[MAX_NAMES];
    int count = alert_names(names);
    assert_true(count > 0);

    tc_server srv;
    static const char *const args[] = {"--workers", "1", NULL};
    assert_int_equal(tc_server_start(&srv, NULL, args, 1), 0);
    /* a few requests, one of them an error, so that the per-route series exist */
    tc_response r;
    assert_int_equal(tc_get(srv.port, "/healthz", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
    assert_int_equal(
        tc_post_json(srv.port, "/v1/analyze", NULL, "{\"image\":\"bm90IGFuIGltYWdl\"}", &r), 0);
    assert_true(r.status >= 400 && r.status < 500);
    tc_response_free(&r);
    char *text = tc_metrics_page(srv.port);

    int metrics = 0, labels = 0;
    for (int i = 0; i < count; i++) {
        const used_name *u = &names[i];
        if (!u->is_label) {
            metrics++;
            if (strncmp(u->name, "kube_", 5) == 0) {
                if (kube_series_index(u->name) < 0)
                    fail_msg("%s uses %s, not in this test's list of kube-state-metrics series",
                             ALERTS, u->name);
            } else if (!scraped(text, u->name, NULL)) {
                fail_msg("%s uses %s, which the server's /metrics does not serve", ALERTS, u->name);
            }
            continue;
        }
        labels++;
        if (u->metric[0] && strncmp(u->metric, "kube_", 5) == 0) {
            int k = kube_series_index(u->metric), found = 0;
            assert_true(k >= 0);
            for (int j = 0; kube_series[k].labels[j] && !found; j++)
                found = strcmp(kube_series[k].labels[j], u->name) == 0;
            if (!found)
                fail_msg("%s selects %s on %s: not one of its labels", ALERTS, u->name, u->metric);
        } else if (u->metric[0]) {
            if (!scraped(text, u->metric, u->name))
                fail_msg("%s selects %s{%s=...}: /metrics serves %s without that label", ALERTS,
                         u->metric, u->name, u->metric);
        } else {
            /* by/on: some series the rules use carries it (no target label such as instance:
             * the rules aggregate across the pods so as not to depend on the scrape config) */
            int found = 0;
            for (int j = 0; j < count && !found; j++)
                if (!names[j].is_label && strncmp(names[j].name, "kube_", 5) != 0)
                    found = scraped(text, names[j].name, u->name);
            if (!found)
                fail_msg("%s aggregates by %s, a label no vultus series has", ALERTS, u->name);
        }
    }
    print_message("%d metric names and %d label names of %s all served\n", metrics, labels, ALERTS);
    free(text);
    assert_int_equal(tc_server_stop(&srv), 0);
}

/* ---- figures copied from the manifests ---------------------------------------------------- */

static void test_thresholds_follow_the_manifests(void **state)
{
    (void)state;
    char *rules = tc_slurp(ALERTS);
    char *dep = tc_slurp("deploy/kubernetes/base/deployment.yaml");
    char *map = tc_slurp("deploy/kubernetes/base/configmap.yaml");

    /* the vultus container's memory limit (initContainers come first: skip them) */
    const char *containers = strstr(dep, "\n      containers:");
    assert_non_null(containers);
    const char *limits = strstr(containers, "limits:");
    assert_non_null(limits);
    const char *mem = strstr(limits, "memory:");
    assert_non_null(mem);
    char *end;
    double limit = strtod(mem + strlen("memory:"), &end);
    if (strncmp(end, "Gi", 2) == 0)
        limit *= 1073741824.0;
    else if (strncmp(end, "Mi", 2) == 0)
        limit *= 1048576.0;
    else
        fail_msg("memory limit %.20s: unit not Gi or Mi", mem);
    char want[96];
    snprintf(want, sizeof want, "vultus_process_resident_memory_bytes > 0.9 * %.0f", limit);
    if (!strstr(rules, want))
        fail_msg("%s has no \"%s\": the memory alert must follow the container's limit", ALERTS,
                 want);

    const char *deadline = strstr(map, "VULTUS_DEADLINE_MS:");
    assert_non_null(deadline);
    deadline += strlen("VULTUS_DEADLINE_MS:");
    deadline += strspn(deadline, " \"");
    double ms = atof(deadline);
    assert_true(ms > 0);
    snprintf(want, sizeof want, "> 0.5 * %.3f", ms / 1000);
    if (!strstr(rules, want))
        fail_msg("%s has no \"%s\": the latency alert must follow VULTUS_DEADLINE_MS (%.0f)",
                 ALERTS, want, ms);
    print_message("memory limit %.0f bytes, deadline %.0f ms: both in the rules\n", limit, ms);
    free(rules);
    free(dep);
    free(map);
}

/* ---- promtool ------------------------------------------------------------------------------ */

static void need_promtool(void)
{
    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        print_message("promtool is not installed (Debian: prometheus): skipped\n");
        skip();
    }
}

static void test_promtool_check_rules(void **state)
{
    (void)state;
    need_promtool();
    assert_int_equal(system("promtool check rules " ALERTS), 0);
}

static void test_promtool_test_rules(void **state)
{
    (void)state;
    need_promtool();
    assert_int_equal(system("promtool test rules " ALERTS_TEST), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lexer_reads_promql),
        cmocka_unit_test(test_thresholds_follow_the_manifests),
        cmocka_unit_test(test_promtool_check_rules),
        cmocka_unit_test(test_promtool_test_rules),
        cmocka_unit_test(test_rules_use_served_series),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
