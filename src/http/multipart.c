/*
 * multipart/form-data (RFC 7578 over RFC 2046), parsed from a whole body held in memory: the
 * service reads every body (bounded by max-body-bytes) before it looks at it, so a parser over
 * one buffer is simpler and easier to fuzz than a streaming one. Parts point into the body.
 */
#include "http/internal.h"

#include <string.h>
#include <strings.h>

#define PART_HEADERS_MAX 8192

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

static http_slice trim(const char *p, size_t n)
{
    while (n && is_space(*p))
        p++, n--;
    while (n && is_space(p[n - 1]))
        n--;
    return (http_slice){p, n};
}

/* Boundary characters allowed by RFC 2046 (bchars). */
static int is_bchar(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           strchr("'()+_,-./:=? ", c) != NULL;
}

/*
 * Finds parameter `key` in a header value of `;`-separated parameters ("form-data; name=x")
 * and returns its value with surrounding quotes removed (no escapes inside: browsers send
 * none for names). Returns 1 found, 0 absent.
 */
static int header_param(const char *p, size_t n, const char *key, http_slice *out)
{
    size_t key_len = strlen(key);
    size_t i = 0;
    while (i < n) {
        /* One parameter: up to the next ';' outside quotes. */
        size_t start = i;
        int quoted = 0;
        while (i < n && (quoted || p[i] != ';')) {
            if (p[i] == '"') quoted = !quoted;
            i++;
        }
        http_slice param = trim(p + start, i - start);
        i++; /* skip ';' */
        const char *eq = memchr(param.p, '=', param.n);
        if (!eq) continue;
        http_slice k = trim(param.p, (size_t)(eq - param.p));
        http_slice v = trim(eq + 1, param.n - (size_t)(eq + 1 - param.p));
        if (k.n != key_len || strncasecmp(k.p, key, key_len) != 0) continue;
        if (v.n >= 2 && v.p[0] == '"' && v.p[v.n - 1] == '"') {
            v.p++;
            v.n -= 2;
        }
        *out = v;
        return 1;
    }
    return 0;
}

int http_multipart_boundary(const char *content_type, char *boundary)
{
    http_slice v;
    if (!header_param(content_type, strlen(content_type), "boundary", &v))
        return base_error_set(BASE_ERR_FORMAT, "multipart Content-Type without a boundary");
    if (v.n == 0 || v.n > HTTP_BOUNDARY_MAX || v.p[v.n - 1] == ' ')
        return base_error_set(BASE_ERR_FORMAT, "a multipart boundary of %zu characters", v.n);
    for (size_t i = 0; i < v.n; i++)
        if (!is_bchar(v.p[i]))
            return base_error_set(BASE_ERR_FORMAT, "a multipart boundary with byte 0x%02x",
                                  (unsigned char)v.p[i]);
    memcpy(boundary, v.p, v.n);
    boundary[v.n] = '\0';
    return 0;
}

/* Parses the header block of one part (lines separated by CRLF). */
static int parse_part_headers(const char *p, size_t n, http_part *part)
{
    int have_disposition = 0;
    size_t i = 0;
    while (i < n) {
        const char *eol = memmem(p + i, n - i, "\r\n", 2);
        size_t line_len = eol ? (size_t)(eol - (p + i)) : n - i;
        const char *line = p + i;
        i += line_len + 2;
        const char *colon = memchr(line, ':', line_len);
        if (!colon) return base_error_set(BASE_ERR_FORMAT, "a multipart header line without ':'");
        http_slice name = trim(line, (size_t)(colon - line));
        http_slice value = trim(colon + 1, line_len - (size_t)(colon + 1 - line));
        if (name.n == 19 && strncasecmp(name.p, "Content-Disposition", 19) == 0) {
            if (value.n < 9 || strncasecmp(value.p, "form-data", 9) != 0)
                return base_error_set(BASE_ERR_FORMAT, "a part that is not form-data");
            if (!header_param(value.p, value.n, "name", &part->name))
                return base_error_set(BASE_ERR_FORMAT, "a form-data part without a name");
            header_param(value.p, value.n, "filename", &part->filename);
            have_disposition = 1;
        } else if (name.n == 12 && strncasecmp(name.p, "Content-Type", 12) == 0) {
            part->content_type = value;
        }
    }
    if (!have_disposition)
        return base_error_set(BASE_ERR_FORMAT, "a multipart part without Content-Disposition");
    return 0;
}

int http_multipart_parse(const uint8_t *body, size_t len, const char *boundary, http_part *parts,
                         int max_parts, int *n_parts)
{
    *n_parts = 0;
    const char *b = (const char *)body;
    size_t blen = strlen(boundary);
    /* The delimiter is CRLF "--" boundary; the first one may start the body without CRLF. */
    char delim[HTTP_BOUNDARY_MAX + 5];
    if (blen == 0 || blen > HTTP_BOUNDARY_MAX)
        return base_error_set(BASE_ERR_FORMAT, "a multipart boundary of %zu characters", blen);
    delim[0] = '\r';
    delim[1] = '\n';
    delim[2] = delim[3] = '-';
    memcpy(delim + 4, boundary, blen);
    size_t dlen = blen + 4;

    size_t pos;
    if (len >= dlen - 2 && memcmp(b, delim + 2, dlen - 2) == 0) {
        pos = dlen - 2;
    } else {
        const char *first = memmem(b, len, delim, dlen);
        if (!first) return base_error_set(BASE_ERR_FORMAT, "no multipart boundary in the body");
        pos = (size_t)(first - b) + dlen;
    }
    for (;;) {
        /* After a delimiter: "--" closes; otherwise optional padding then CRLF. */
        if (len - pos >= 2 && b[pos] == '-' && b[pos + 1] == '-') return 0;
        while (pos < len && is_space(b[pos]))
            pos++;
        if (len - pos < 2 || b[pos] != '\r' || b[pos + 1] != '\n')
            return base_error_set(BASE_ERR_FORMAT, "the multipart body ends after a boundary");
        pos += 2;
        if (*n_parts == max_parts)
            return base_error_set(BASE_ERR_LIMIT, "more than %d multipart parts", max_parts);
        http_part *part = &parts[*n_parts];
        memset(part, 0, sizeof *part);
        /* Headers end with an empty line; form-data parts must have Content-Disposition. */
        size_t window = len - pos < PART_HEADERS_MAX + 4 ? len - pos : PART_HEADERS_MAX + 4;
        const char *end = memmem(b + pos, window, "\r\n\r\n", 4);
        if (window >= 2 && b[pos] == '\r' && b[pos + 1] == '\n')
            return base_error_set(BASE_ERR_FORMAT, "a multipart part without headers");
        if (!end)
            return base_error_set(BASE_ERR_FORMAT, len - pos > PART_HEADERS_MAX
                                                       ? "multipart part headers over 8 KiB"
                                                       : "the multipart body ends in headers");
        size_t hdr_len = (size_t)(end - (b + pos));
        int rc = parse_part_headers(b + pos, hdr_len, part);
        if (rc) return rc;
        pos += hdr_len + 4;
        const char *next = memmem(b + pos, len - pos, delim, dlen);
        if (!next)
            return base_error_set(BASE_ERR_FORMAT, "the multipart body ends inside part %d",
                                  *n_parts + 1);
        part->data = body + pos;
        part->len = (size_t)(next - (b + pos));
        (*n_parts)++;
        pos = (size_t)(next - b) + dlen;
    }
}
