/*
 * The Host check against DNS rebinding (--allowed-hosts).
 *
 * A web page on evil.example can make its own name resolve to 127.0.0.1 or a LAN address
 * after it has loaded: the browser then sends the page's requests to vultus as same-origin
 * requests and lets the page read the answers. Without an API key nothing else stops it, but
 * the browser still writes the page's name in Host. So while the API is open, a request for
 * the API or the web page whose Host is a DNS name nobody allowed is refused. What passes:
 *   - an IP literal (v4, or v6 in brackets), with or without a port: rebinding needs a name
 *     the attacker's DNS answers for, and probes and clients that use the pod IP send one;
 *   - localhost and *.localhost, which browsers resolve to loopback themselves (RFC 6761);
 *   - the names of --allowed-hosts: "name" exactly, ".example.com" that name and every
 *     subdomain, "*" anything (the check off);
 *   - no Host at all (HTTP/1.0 may omit it; libmicrohttpd 0.9.75 answers an HTTP/1.1 request
 *     without one too): every browser sends Host, so such a request is not a browser's.
 * Names compare without case, port and one trailing dot.
 */
#include "http/internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>

#define HOST_NAME_MAX_LEN 253 /* a DNS name, without the trailing dot */

/* One list entry: lower case letters, digits, '-', '_' and '.', or "*" alone. */
static int valid_entry(const char *e, size_t n)
{
    if (n == 1 && e[0] == '*') return 1;
    if (n == 0 || n > HOST_NAME_MAX_LEN + 1) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)e[i];
        if (!(isalnum(c) || c == '-' || c == '_' || c == '.')) return 0;
    }
    /* No empty label: "." alone, "a..b", "a.." (one trailing dot is already gone). */
    return e[n - 1] != '.' && !memmem(e, n, "..", 2);
}

int http_allowed_hosts_parse(const char *text, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    const char *p = text;
    while (*p) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && isspace((unsigned char)*a))
            a++;
        while (b > a && isspace((unsigned char)b[-1]))
            b--;
        if (b - a > 1 && b[-1] == '.') b--; /* "name." is the same DNS name as "name" */
        size_t n = (size_t)(b - a);
        if (n > 0) {
            char entry[HOST_NAME_MAX_LEN + 2];
            if (n >= sizeof entry)
                return base_error_set(BASE_ERR_INVALID,
                                      "--allowed-hosts: a name is longer than %d characters",
                                      HOST_NAME_MAX_LEN);
            for (size_t i = 0; i < n; i++)
                entry[i] = (char)tolower((unsigned char)a[i]);
            entry[n] = '\0';
            if (!valid_entry(entry, n))
                return base_error_set(BASE_ERR_INVALID,
                                      "--allowed-hosts: '%s' is not a host name (no port, no "
                                      "scheme; '.example.com' allows a domain and its "
                                      "subdomains, '*' any name)",
                                      entry);
            if (used + (used > 0) + n + 1 > cap)
                return base_error_set(BASE_ERR_INVALID,
                                      "--allowed-hosts: longer than %zu characters", cap - 1);
            if (used > 0) out[used++] = ',';
            memcpy(out + used, entry, n + 1);
            used += n;
        }
        p = comma ? comma + 1 : end;
    }
    return 0;
}

/* Whether name[0..n) (lower case, no port) is allowed by the list `allowed`. */
static int listed(const char *allowed, const char *name, size_t n)
{
    const char *p = allowed;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 1 && p[0] == '*') return 1;
        if (len == n && memcmp(p, name, n) == 0) return 1;
        /* ".example.com": example.com itself, and any name ending in ".example.com". */
        if (p[0] == '.' && ((len - 1 == n && memcmp(p + 1, name, n) == 0) ||
                            (n > len && memcmp(name + n - len, p, len) == 0)))
            return 1;
        if (!end) break;
        p = end + 1;
    }
    return 0;
}

int http_host_allowed(const char *allowed, const char *host)
{
    if (!host || !*host) return 1;
    size_t len = strlen(host);
    /* Browsers send none, but the header's value may have blanks around it (RFC 9110 5.5). */
    while (len > 0 && isspace((unsigned char)host[len - 1]))
        len--;
    while (len > 0 && isspace((unsigned char)*host)) {
        host++;
        len--;
    }
    if (len == 0) return 1;
    char buf[HOST_NAME_MAX_LEN + 8];
    if (len >= sizeof buf) return 0; /* longer than any name or address */

    if (host[0] == '[') {
        const char *close = memchr(host, ']', len);
        if (!close) return 0;
        size_t n = (size_t)(close - host - 1);
        const char *rest = close + 1;
        size_t rest_len = len - (size_t)(rest - host);
        if (rest_len > 0 && rest[0] != ':') return 0;
        for (size_t i = 1; i < rest_len; i++)
            if (!isdigit((unsigned char)rest[i])) return 0;
        memcpy(buf, host + 1, n);
        buf[n] = '\0';
        struct in6_addr a6;
        return inet_pton(AF_INET6, buf, &a6) == 1;
    }

    size_t n = len;
    const char *colon = memchr(host, ':', len);
    if (colon) {
        /* One colon: NAME:PORT. More: an IPv6 address without its brackets (not valid in
         * Host, but an address all the same). */
        if (memchr(colon + 1, ':', len - (size_t)(colon + 1 - host))) {
            memcpy(buf, host, len);
            buf[len] = '\0';
            struct in6_addr a6;
            return inet_pton(AF_INET6, buf, &a6) == 1;
        }
        for (const char *d = colon + 1; d < host + len; d++)
            if (!isdigit((unsigned char)*d)) return 0;
        n = (size_t)(colon - host);
    }
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)tolower((unsigned char)host[i]);
    buf[n] = '\0';
    if (n > 1 && buf[n - 1] == '.') buf[--n] = '\0';
    if (n == 0) return 0;

    struct in_addr a4;
    if (inet_pton(AF_INET, buf, &a4) == 1) return 1;
    static const char local[] = "localhost", dot_local[] = ".localhost";
    if (strcmp(buf, local) == 0) return 1;
    if (n > sizeof dot_local - 1 && strcmp(buf + n - (sizeof dot_local - 1), dot_local) == 0)
        return 1;
    return listed(allowed, buf, n);
}

int http_route_host_checked(const http_route *route, const char *allowed, int auth_required)
{
    /* The API (every /v1 route has a scope) and the web page; not the probes, /metrics (kubelet
     * uses the pod IP, Prometheus may use any name) nor the public /openapi.json. */
    if (!route->scope && route->handler != http_api_static) return 0;
    /* With keys a rebinding page cannot hold one; a list the operator set applies anyway. */
    return !auth_required || allowed[0] != '\0';
}
