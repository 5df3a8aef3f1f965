#include "base.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int base_log_level = BASE_LOG_INFO;
int base_log_json = 0;

static _Thread_local char error_message[512];

const char *base_strerror(int code)
{
    switch (code) {
    case BASE_OK: return "ok";
    case BASE_ERR_NOMEM: return "out of memory";
    case BASE_ERR_IO: return "input/output error";
    case BASE_ERR_FORMAT: return "malformed input";
    case BASE_ERR_UNSUPPORTED: return "unsupported";
    case BASE_ERR_LIMIT: return "limit exceeded";
    case BASE_ERR_INVALID: return "invalid argument";
    case BASE_ERR_NOT_FOUND: return "not found";
    case BASE_ERR_BACKEND: return "backend failure";
    case BASE_ERR_EXISTS: return "already exists";
    case BASE_ERR_FULL: return "no space left";
    default: return "unknown error";
    }
}

int base_error_set(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_message, sizeof error_message, fmt, ap);
    va_end(ap);
    return code;
}

const char *base_error_message(void)
{
    return error_message;
}

const char *base_error_text(int code)
{
    static _Thread_local char text[sizeof error_message + 64];
    if (!error_message[0]) return base_strerror(code);
    if (code == BASE_ERR_IO) return error_message;
    snprintf(text, sizeof text, "%s: %s", base_strerror(code), error_message);
    return text;
}

void base_error_clear(void)
{
    error_message[0] = '\0';
}

/*
 * `text` as the inside of a JSON string into out[cap] (always terminated; cut short, at a
 * character boundary, when it does not fit): quotes, backslashes and control characters
 * escaped, valid UTF-8 kept, any other byte replaced by U+FFFD so the line stays JSON.
 */
static void json_escape(const char *text, char *out, size_t cap)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t o = 0;
    while (*s) {
        char tmp[8];
        const char *add = tmp;
        size_t n = 1, used = 1;
        if (*s == '"' || *s == '\\') {
            tmp[0] = '\\', tmp[1] = (char)*s, n = 2;
        } else if (*s < 0x20) {
            n = (size_t)snprintf(tmp, sizeof tmp, "\\u%04x", *s);
        } else if (*s < 0x80) {
            tmp[0] = (char)*s;
        } else {
            /* the length a lead byte announces, then its continuation bytes checked */
            size_t len = (*s & 0xE0) == 0xC0   ? 2
                         : (*s & 0xF0) == 0xE0 ? 3
                         : (*s & 0xF8) == 0xF0 ? 4
                                               : 0;
            size_t k = 1;
            while (len && k < len && (s[k] & 0xC0) == 0x80)
                k++;
            /* no overlong forms, no surrogates, nothing past U+10FFFF (RFC 3629) */
            int ok = len && k == len && *s >= 0xC2 && *s <= 0xF4 && !(*s == 0xE0 && s[1] < 0xA0) &&
                     !(*s == 0xED && s[1] >= 0xA0) && !(*s == 0xF0 && s[1] < 0x90) &&
                     !(*s == 0xF4 && s[1] >= 0x90);
            if (ok) {
                add = (const char *)s, n = used = len;
            } else {
                add = "\xEF\xBF\xBD", n = 3; /* U+FFFD */
            }
        }
        if (o + n >= cap) break;
        memcpy(out + o, add, n);
        o += n;
        s += used;
    }
    out[o] = '\0';
}

void base_log_write(int level, const char *file, int line, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *base = strrchr(file, '/');
    const char *name = names[level < 0 ? 0 : level > 3 ? 3 : level];
    if (base_log_json) {
        char escaped[3 * sizeof msg], src[256];
        json_escape(msg, escaped, sizeof escaped);
        snprintf(msg, sizeof msg, "%s:%d", base ? base + 1 : file, line);
        json_escape(msg, src, sizeof src);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        /* the service's line shape (src/http/server.c): level and msg first, ts last */
        fprintf(stderr,
                "{\"level\":\"%s\",\"msg\":\"%s\",\"src\":\"%s\","
                "\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\"}\n",
                name, escaped, src, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
        return;
    }
    /* One fprintf per line keeps lines from different threads whole. */
    fprintf(stderr, "vultus %s %s:%d: %s\n", name, base ? base + 1 : file, line, msg);
}

_Noreturn void base_assert_fail(const char *cond, const char *file, int line)
{
    fprintf(stderr, "vultus: assertion failed: %s (%s:%d)\n", cond, file, line);
    abort();
}

uint64_t base_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void base_path_dir(const char *path, char *dir, size_t cap)
{
    snprintf(dir, cap, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, cap, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
}

int base_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    errno = err;
    return rc;
}

int base_file_read(const char *path, size_t max_bytes, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return base_error_set(BASE_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return base_error_set(BASE_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return base_error_set(BASE_ERR_LIMIT, "%s: %lld bytes, more than the limit of %zu", path,
                              (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return base_error_set(BASE_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, n + 1);
    }
    size_t got = fread(buf, 1, n, f);
    int err = ferror(f);
    fclose(f);
    if (got != n || err) {
        free(buf);
        return base_error_set(BASE_ERR_IO, "%s: short read (%zu of %zu bytes)", path, got, n);
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}

void *base_aligned_alloc(size_t alignment, size_t size)
{
    void *p = NULL;
    if (size == 0) size = alignment;
    if (posix_memalign(&p, alignment, size) != 0) return NULL;
    return p;
}

void base_aligned_free(void *p)
{
    free(p);
}

float base_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal half: normalise */
            exp = 127 - 15 + 1;
            while (!(mant & 0x400)) {
                mant <<= 1;
                exp--;
            }
            mant &= 0x3ff;
            bits = sign | (exp << 23) | (mant << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

size_t base_utf8_seq(const unsigned char *p, size_t avail)
{
    if (avail == 0) return 0;
    unsigned c = p[0];
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || n > avail) return 0;
    if (n == 1) return 1;
    uint32_t cp = c & (0x7Fu >> n);
    for (size_t k = 1; k < n; k++) {
        if ((p[k] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (p[k] & 0x3Fu);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}
