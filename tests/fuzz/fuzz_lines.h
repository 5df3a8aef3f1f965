/*
 * What the fuzz targets whose inputs are text lines share (fuzz_request, fuzz_api): an input
 * is read a line at a time, each line a field of the request being built.
 */
#ifndef VULTUS_TESTS_FUZZ_LINES_H
#define VULTUS_TESTS_FUZZ_LINES_H

#include <stddef.h>
#include <stdint.h>
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

#endif
