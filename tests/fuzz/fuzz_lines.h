/*
 * What the fuzz targets whose inputs are text lines share (fuzz_request, fuzz_api): an input
 * is read a line at a time, each line a field of the request being built, and the rest is
 * its body.
 */
#ifndef VULTUS_TESTS_FUZZ_LINES_H
#define VULTUS_TESTS_FUZZ_LINES_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The next line of [*p, end) (without its newline) as a NUL-terminated copy of at most cap-1
 * bytes; *p moves past it. */
static inline void take_line(const uint8_t **p, const uint8_t *end, char *out, size_t cap)
{
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    const uint8_t *stop = nl ? nl : end;
    size_t n = (size_t)(stop - *p);
    if (n > cap - 1) n = cap - 1;
    memcpy(out, *p, n);
    out[n] = '\0';
    *p = nl ? nl + 1 : end;
}

/* The rest of the input [p, end) as a request body: in its own allocation, so a read past its
 * end is caught, plus the NUL the server appends; NULL when out of memory. */
static inline uint8_t *take_body(const uint8_t *p, const uint8_t *end, size_t *len)
{
    *len = (size_t)(end - p);
    uint8_t *body = malloc(*len + 1);
    if (!body) return NULL;
    memcpy(body, p, *len);
    body[*len] = '\0';
    return body;
}

#endif
