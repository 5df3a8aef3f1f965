/*
 * libFuzzer target for the text an operator or a client hands the service outside a request
 * body: every `vultus serve` option as a flag and as its VULTUS_* environment variable
 * (src/http/config.c: integers, the rate limit, [HOST]:PORT, folders, the PostgreSQL URL),
 * the --allowed-hosts list and the Host header checked against it (src/http/hosts.c), the
 * URL's redaction for logs (src/gallery/store_postgres.c, gal_location_redact), and an
 * API key's text or id and a scope name (src/http/keys.c: `vultus keys revoke`).
 *
 * Input: the value (up to the first NUL). What must hold: a refused value leaves the
 * configuration as it was and comes with a message; an accepted one is what the table says
 * (integers in range, the listen address and folders verbatim); the store's value is never
 * echoed in a message (it may hold a password); the redacted URL is terminated, drops the
 * query string and shows no password libpq would read from it; a parsed key id is 12 hex
 * digits taken from the text. Build and run: make fuzz; seeds in tests/fuzz/corpus/config/.
 */
#include "base/base.h"
#include "gallery/gallery.h"
#include "http/http.h"
#include "http/internal.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The password libpq reads from a postgres:// URL (its conninfo_uri_parse_options): the
 * userinfo runs from after "://" to the first '@' before any '/', and the password from its
 * first ':' to that '@'. Copies it to out (empty when there is none).
 */
static void libpq_password(const char *url, char *out, size_t cap)
{
    out[0] = '\0';
    const char *start = strstr(url, "://") + 3;
    const char *at = start + strcspn(start, "@/");
    if (*at != '@') return;
    const char *colon = memchr(start, ':', (size_t)(at - start));
    if (!colon) return;
    snprintf(out, cap, "%.*s", (int)(at - colon - 1), colon + 1);
}

static void check_redact(const char *value)
{
    char shown[512];
    /* Small and large outputs: always terminated within cap. */
    for (size_t cap = 1; cap <= sizeof shown; cap = cap * 4 + 3) {
        memset(shown, 'x', sizeof shown);
        gal_location_redact(value, shown, cap);
        if (!memchr(shown, '\0', cap)) abort();
    }
    gal_location_redact(value, shown, sizeof shown);
    if (!gal_location_is_url(value)) {
        if (strncmp(shown, value, sizeof shown - 1) != 0) abort(); /* a path is shown as is */
        return;
    }
    /* The query string (it may carry password=...) is dropped: a '?' after the host is the
     * end, "?...". */
    const char *host = strchr(shown, '@');
    const char *query = strchr(host ? host : shown, '?');
    if (query && strcmp(query, "?...") != 0) abort();
    char password[512];
    libpq_password(value, password, sizeof password);
    if (password[0] && !strstr(shown, ":***@")) {
        fprintf(stderr, "fuzz_config: '%s' (password '%s') shown as '%s'\n", value, password,
                shown);
        abort();
    }
    /* Where libpq finds no user name (no '@' before the first '/'), what looks like a
     * password to a person (from the first ':' after "://" to the last '@') is not shown
     * either: libpq refuses such a URL, but it was most likely meant so. A text of a few
     * characters may also be part of the host or the path: only a longer one is looked for,
     * and only when neither the rest of the URL nor what the redaction writes holds it. */
    const char *start = strstr(value, "://") + 3;
    const char *colon = strchr(start, ':');
    const char *at = strrchr(start, '@');
    if (start[strcspn(start, "@/")] != '@' && colon && at > colon + 4) {
        char secret[512], rest[1024];
        snprintf(secret, sizeof secret, "%.*s", (int)(at - colon - 1), colon + 1);
        snprintf(rest, sizeof rest, "%.*s%s postgres://... postgresql://...:***@?...",
                 (int)(colon + 1 - value), value, at);
        if (strstr(shown, secret) && !strstr(rest, secret)) {
            fprintf(stderr, "fuzz_config: '%s' shows '%s' as '%s'\n", value, secret, shown);
            abort();
        }
    }
}

static void check_key_id(const char *value)
{
    char id[HTTP_KEY_ID_LEN + 1];
    memset(id, 'x', sizeof id);
    if (http_key_id_parse(value, id) != 0) {
        if (!base_error_message()[0]) abort();
        return;
    }
    if (strlen(id) != HTTP_KEY_ID_LEN || strspn(id, "0123456789abcdef") != HTTP_KEY_ID_LEN) abort();
    const char *from = strncmp(value, "vk_", 3) == 0 ? value + 3 : value;
    if (memcmp(from, id, HTTP_KEY_ID_LEN) != 0) abort();
}

/* A scope is one of four names, exactly. */
static void check_scope(const char *value)
{
    static const char *const names[] = {"read", "checkin", "write", "admin"};
    enum http_scope scope = (enum http_scope) - 1;
    base_error_clear();
    int rc = http_scope_parse(value, &scope);
    for (int i = 0; i < 4; i++)
        if (strcmp(value, names[i]) == 0) {
            if (rc != 0 || strcmp(http_scope_name(scope), names[i]) != 0) abort();
            return;
        }
    if (rc == 0 || !base_error_message()[0]) abort();
}

/* The value as a Host header (src/http/hosts.c), against no list, an accepted --allowed-hosts
 * list (or a fixed one) and "*": a list only adds names, and "*" allows what any list does. */
static void check_host(const char *list, const char *value)
{
    int open = http_host_allowed("", value), listed = http_host_allowed(list, value);
    if ((open && !listed) || (listed && !http_host_allowed("*", value))) abort();
}

/* An accepted --allowed-hosts list is normalised for good: parsed again it is itself. */
static void check_allowed_hosts(const char *list, const char *value)
{
    char again[sizeof(((http_config *)0)->allowed_hosts)];
    if (http_allowed_hosts_parse(list, again, sizeof again) != 0 || strcmp(again, list) != 0)
        abort();
    check_host(list, value);
}

/* What --store says when it refuses a value, with no part of the value in it: a value found
 * in a message but not in these was echoed. */
static char store_messages[1024];

static int echoes_store(const char *msg, const char *value)
{
    return strlen(value) >= 4 && strstr(msg, value) && !strstr(store_messages, value);
}

/* An accepted integer option holds the value's number. */
static long long field_of(const http_config *c, const char *name)
{
    static const struct {
        const char *name;
        size_t offset;
        size_t size;
    } fields[] = {
#define F(flag, field) {flag, offsetof(http_config, field), sizeof(((http_config *)0)->field)}
        F("workers", workers),
        F("queue", queue),
        F("deadline-ms", deadline_ms),
        F("max-deadline-ms", max_deadline_ms),
        F("max-body-bytes", max_body_bytes),
        F("max-pixels", max_pixels),
        F("max-faces", max_faces),
        F("batch-max", batch_max),
        F("batch-wait-ms", batch_wait_ms),
        F("worker-nice", worker_nice),
        F("drain-timeout-ms", drain_timeout_ms),
        F("grace-ms", grace_ms),
        F("read-timeout-ms", read_timeout_ms),
        F("max-connections", max_connections),
        F("rate-burst", rate_burst),
        F("ann-min-faces", ann_min_faces),
        F("ann-ef-search", ann_ef_search),
        F("ann-build-threads", ann_build_threads),
#undef F
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (strcmp(fields[i].name, name) != 0) continue;
        const char *p = (const char *)c + fields[i].offset;
        if (fields[i].size == sizeof(int)) {
            int v;
            memcpy(&v, p, sizeof v);
            return v;
        }
        if (fields[i].size == sizeof(long long)) {
            long long v;
            memcpy(&v, p, sizeof v);
            return v;
        }
        abort(); /* a field of a size this target does not know */
    }
    return LLONG_MIN; /* not an integer option */
}

static void check_option(const http_option *o, const char *value)
{
    http_config c, before;
    http_config_defaults(&c);
    before = c;
    base_error_clear();
    int rc = http_config_set(&c, o->name, value);
    if (rc) {
        const char *msg = base_error_message();
        if (rc > 0 || !msg[0] || memcmp(&c, &before, sizeof c) != 0) abort();
        if (strcmp(o->name, "store") == 0 && echoes_store(msg, value)) abort();
    } else {
        long long v = field_of(&c, o->name);
        if (v != LLONG_MIN) {
            errno = 0;
            char *end;
            long long want = strtoll(value, &end, 10);
            if (errno || *end || v != want) abort();
        }
        if (strcmp(o->name, "listen") == 0 && strcmp(c.listen, value) != 0) abort();
        if (strcmp(o->name, "models") == 0 && strcmp(c.models_dir, value) != 0) abort();
        if (strcmp(o->name, "data") == 0 && strcmp(c.data_dir, value) != 0) abort();
        if (strcmp(o->name, "store") == 0 && strcmp(c.store, value) != 0) abort();
        if (strcmp(o->name, "rate-limit") == 0 && !(c.rate_limit >= 0 && c.rate_limit <= 1e6))
            abort();
        if (strcmp(o->name, "allowed-hosts") == 0) check_allowed_hosts(c.allowed_hosts, value);
    }

    /* The same value through the environment: the same verdict, and a refused store URL is
     * shown as "..." only. */
    if (!*value) return; /* an empty variable is ignored */
    http_config e;
    http_config_defaults(&e);
    /* putenv, not setenv: glibc's setenv keeps every distinct value it was given for good. */
    static char assignment[64 + sizeof(((http_config *)0)->store)];
    snprintf(assignment, sizeof assignment, "%s=%s", o->env, value);
    if (putenv(assignment) != 0) abort();
    int env_rc = http_config_from_env(&e);
    unsetenv(o->env);
    if ((env_rc != 0) != (rc != 0)) abort();
    if (env_rc == 0 && memcmp(&e, &c, sizeof e) != 0) abort();
    if (env_rc && strcmp(o->name, "store") == 0 && echoes_store(base_error_message(), value))
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* Every input starts from the defaults, whatever the fuzzer's own environment holds. */
    for (int i = 0; i < http_option_count; i++)
        unsetenv(http_options[i].env);
    http_config c;
    http_config_defaults(&c);
    char longest[sizeof c.store + 16];
    memset(longest, 'a', sizeof longest - 1);
    memcpy(longest, "postgres://", 11);
    longest[sizeof longest - 1] = '\0';
    if (http_config_set(&c, "store", "-") == 0) abort();
    size_t n =
        (size_t)snprintf(store_messages, sizeof store_messages, "%s\n", base_error_message());
    if (http_config_set(&c, "store", longest) == 0) abort();
    snprintf(store_messages + n, sizeof store_messages - n, "%s", base_error_message());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    base_log_level = BASE_LOG_OFF;
    /* The value as a C string, as argv and the environment give it. */
    char value[600];
    size_t n = size < sizeof value - 1 ? size : sizeof value - 1;
    memcpy(value, data, n);
    value[n] = '\0';

    for (int i = 0; i < http_option_count; i++)
        check_option(&http_options[i], value);
    check_host("vultus.example.com,.corp.example", value);
    check_redact(value);
    check_key_id(value);
    check_scope(value);
    return 0;
}
