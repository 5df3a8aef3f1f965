/*
 * Small text codecs for untrusted input: base64 (images in JSON), percent-decoding (paths
 * and query strings), and the token bucket of the per-key rate limit.
 */
#include "http/internal.h"

#include <stdlib.h>
#include <string.h>

/* 0..63 for both alphabets, 64 for whitespace (skipped), 65 for '=', 255 for anything else. */
static uint8_t b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return (uint8_t)(c - 'A');
    if (c >= 'a' && c <= 'z') return (uint8_t)(c - 'a' + 26);
    if (c >= '0' && c <= '9') return (uint8_t)(c - '0' + 52);
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') return 64;
    if (c == '=') return 65;
    return 255;
}

int http_base64_decode(const char *in, size_t len, size_t max_out, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    /* A data URL: skip "data:<type>;base64,". */
    if (len >= 5 && memcmp(in, "data:", 5) == 0) {
        const char *comma = memchr(in, ',', len < 256 ? len : 256);
        if (!comma || comma - in < 12 || memcmp(comma - 7, ";base64", 7) != 0)
            return base_error_set(BASE_ERR_FORMAT, "a data URL that is not ;base64,");
        len -= (size_t)(comma + 1 - in);
        in = comma + 1;
    }
    /* Upper bound of the decoded size, checked before allocating. */
    size_t bound = len / 4 * 3 + 3;
    if (bound > max_out + 3)
        return base_error_set(BASE_ERR_LIMIT,
                              "base64 text of %zu characters decodes to more "
                              "than the limit of %zu bytes",
                              len, max_out);
    uint8_t *buf = malloc(bound ? bound : 1);
    if (!buf) return base_error_set(BASE_ERR_NOMEM, "base64: %zu bytes", bound);
    size_t n = 0, pad = 0, digits = 0;
    uint32_t acc = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t v = b64_value((unsigned char)in[i]);
        if (v == 64) continue;
        if (v == 255) {
            free(buf);
            return base_error_set(BASE_ERR_FORMAT,
                                  "base64: byte 0x%02x at offset %zu is not "
                                  "in the alphabet",
                                  (unsigned char)in[i], i);
        }
        if (v == 65) {
            pad++;
            continue;
        }
        if (pad) {
            free(buf);
            return base_error_set(BASE_ERR_FORMAT, "base64: data after padding at offset %zu", i);
        }
        acc = acc << 6 | v;
        if (++digits % 4 == 0) {
            buf[n++] = (uint8_t)(acc >> 16);
            buf[n++] = (uint8_t)(acc >> 8);
            buf[n++] = (uint8_t)acc;
            acc = 0;
        }
    }
    size_t rest = digits % 4;
    if (rest == 1 || pad > 2 || (pad && (rest + pad) % 4 != 0)) {
        free(buf);
        return base_error_set(BASE_ERR_FORMAT, "base64: %zu characters is not a valid length",
                              digits + pad);
    }
    if (rest == 2) buf[n++] = (uint8_t)(acc >> 4);
    if (rest == 3) {
        buf[n++] = (uint8_t)(acc >> 10);
        buf[n++] = (uint8_t)(acc >> 2);
    }
    if (n > max_out) {
        free(buf);
        return base_error_set(BASE_ERR_LIMIT, "base64 decodes to %zu bytes, more than %zu", n,
                              max_out);
    }
    *out = buf;
    *out_len = n;
    return 0;
}

size_t http_base64url_encode(const uint8_t *in, size_t len, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[n++] = a[v >> 18];
        out[n++] = a[(v >> 12) & 63];
        out[n++] = a[(v >> 6) & 63];
        out[n++] = a[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[n++] = a[v >> 18];
        out[n++] = a[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[n++] = a[v >> 18];
        out[n++] = a[(v >> 12) & 63];
        out[n++] = a[(v >> 6) & 63];
    }
    out[n] = '\0';
    return n;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int http_percent_decode(const char *in, size_t len, int plus_is_space, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '%') {
            int hi = i + 2 < len ? hex_digit(in[i + 1]) : -1;
            int lo = i + 2 < len ? hex_digit(in[i + 2]) : -1;
            if (hi < 0 || lo < 0) return base_error_set(BASE_ERR_FORMAT, "a malformed %% escape");
            c = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        if (c == '\0') return base_error_set(BASE_ERR_FORMAT, "an escaped NUL byte");
        if (n + 1 >= cap) return base_error_set(BASE_ERR_LIMIT, "longer than %zu bytes", cap - 1);
        out[n++] = c;
    }
    out[n] = '\0';
    return 0;
}

int http_query_get(const char *query, const char *name, char *out, size_t cap)
{
    size_t name_len = strlen(name);
    const char *p = query;
    while (p && *p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t key_len = eq ? (size_t)(eq - p) : len;
        /* Parameter names are plain ASCII words here: compare the raw key. */
        if (key_len == name_len && memcmp(p, name, name_len) == 0) {
            const char *v = eq ? eq + 1 : p + len;
            size_t v_len = eq ? len - key_len - 1 : 0;
            int rc = http_percent_decode(v, v_len, 1, out, cap);
            return rc ? rc : 1;
        }
        p = end ? end + 1 : NULL;
    }
    return 0;
}

double http_bucket_take(http_bucket *b, double rate, double burst, uint64_t now_ns)
{
    if (rate <= 0) return 0;
    if (burst < 1) burst = 1;
    if (b->last_ns == 0) {
        b->tokens = burst;
    } else if (now_ns > b->last_ns) {
        b->tokens += (double)(now_ns - b->last_ns) * 1e-9 * rate;
        if (b->tokens > burst) b->tokens = burst;
    }
    b->last_ns = now_ns;
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return 0;
    }
    return (1.0 - b->tokens) / rate;
}
