/*
 * base — what every module of vultus shares: error codes with a message, logging,
 * assertions, time, files and a few helpers.
 *
 * Errors: fallible functions return 0 or a negative BASE_ERR_* code. The function that
 * detects an error describes it with base_error_set() (a thread-local message naming the
 * values that caused it), so the caller that reports it can print base_error_message().
 * Logging: base_log() is thread-safe; the level check happens before formatting.
 */
#ifndef VULTUS_BASE_H
#define VULTUS_BASE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

enum base_error {
    BASE_OK = 0,
    BASE_ERR_NOMEM = -1,       /* an allocation failed */
    BASE_ERR_IO = -2,          /* a file could not be read or written */
    BASE_ERR_FORMAT = -3,      /* input bytes are malformed */
    BASE_ERR_UNSUPPORTED = -4, /* well-formed, but uses something we do not implement */
    BASE_ERR_LIMIT = -5,       /* a size from input exceeds a configured limit */
    BASE_ERR_INVALID = -6,     /* a bad argument or state */
    BASE_ERR_NOT_FOUND = -7,   /* a named thing does not exist */
    BASE_ERR_BACKEND = -8,     /* a library we call (XNNPACK, SQLite, ...) failed */
    BASE_ERR_EXISTS = -9,      /* the thing already exists */
    BASE_ERR_FULL = -10,       /* a store has no room left (its disk, or its configured size) */
};

/* A static English description of a BASE_ERR_* code. Thread-safe. */
const char *base_strerror(int code);

/*
 * Records a formatted description of the error being returned and returns `code`, so a
 * detector can write `return base_error_set(BASE_ERR_FORMAT, "shard %s: %zu bytes", ...)`.
 * The message is thread-local and lives until the next call on the same thread.
 */
int base_error_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The last message recorded on this thread, or "" when none. */
const char *base_error_message(void);
/*
 * The error as a person reads it: "malformed input: shard x: 12 bytes", base_strerror(code)
 * then the thread's message. An input/output error is its message alone ("photo.jpg: No such
 * file or directory"): the message names the file and the system's reason, and the class
 * ("input/output error", EIO's own words) would only mislead. Thread-local, like the message.
 */
const char *base_error_text(int code);
/* Clears the thread's message. */
void base_error_clear(void);

enum base_log_level { BASE_LOG_DEBUG, BASE_LOG_INFO, BASE_LOG_WARN, BASE_LOG_ERROR, BASE_LOG_OFF };

/* Set once at start-up, before threads start; read by every thread afterwards. */
extern int base_log_level;
/* 0: "vultus LEVEL file:line: message" lines (the CLI); 1: one JSON object per line,
 * {"level","msg","src","ts"}, like the service's own log lines (vultus serve sets it, so
 * that everything it writes to stderr is JSON for a log collector). */
extern int base_log_json;
void base_log_write(int level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define BASE_LOG(level, ...)                                                                       \
    do {                                                                                           \
        if ((level) >= base_log_level) base_log_write((level), __FILE__, __LINE__, __VA_ARGS__);   \
    } while (0)
#define LOG_DEBUG(...) BASE_LOG(BASE_LOG_DEBUG, __VA_ARGS__)
#define LOG_INFO(...) BASE_LOG(BASE_LOG_INFO, __VA_ARGS__)
#define LOG_WARN(...) BASE_LOG(BASE_LOG_WARN, __VA_ARGS__)
#define LOG_ERROR(...) BASE_LOG(BASE_LOG_ERROR, __VA_ARGS__)

/* C's _Noreturn, spelled so the header also reads as C++ (src/gallery/ann.cpp includes it). */
#ifdef __cplusplus
#define BASE_NORETURN [[noreturn]]
#else
#define BASE_NORETURN _Noreturn
#endif

/* For bugs only: a broken invariant aborts with the file and line. Never for input. */
#define BASE_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) base_assert_fail(#cond, __FILE__, __LINE__);                                  \
    } while (0)
BASE_NORETURN void base_assert_fail(const char *cond, const char *file, int line);

/* Monotonic clock in nanoseconds. */
uint64_t base_now_ns(void);

/*
 * Reads a whole file into a new malloc'd buffer (NUL-terminated for text use; *len excludes
 * the NUL). Fails with BASE_ERR_LIMIT when the file is larger than max_bytes.
 */
int base_file_read(const char *path, size_t max_bytes, char **data, size_t *len);

/* The folder that holds `path` into dir[cap]: "." for a bare name, "/" for a name at the root. */
void base_path_dir(const char *path, char *dir, size_t cap);
/* fsync of the folder `dir`, so that a file created or renamed in it stays after a crash: 0, or
 * -1 with errno set. */
int base_fsync_dir(const char *dir);

/* Aligned allocation (alignment a power of two >= sizeof(void*)); free with base_aligned_free. */
void *base_aligned_alloc(size_t alignment, size_t size);
void base_aligned_free(void *p);

/* Checked size arithmetic: returns 0 and stores the result, or -1 on overflow. */
static inline int base_mul_size(size_t a, size_t b, size_t *out)
{
    return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}
static inline int base_add_size(size_t a, size_t b, size_t *out)
{
    return __builtin_add_overflow(a, b, out) ? -1 : 0;
}

/* IEEE half to float, exact. */
float base_f16_to_f32(uint16_t h);

/* The length of the well-formed UTF-8 sequence at p (1-4, at most avail bytes), or 0 when
 * none starts there (a stray continuation byte, a truncated sequence, an overlong form, a
 * surrogate, a value past U+10FFFF). Text that ends up in JSON must be UTF-8. */
size_t base_utf8_seq(const unsigned char *p, size_t avail);

#endif
