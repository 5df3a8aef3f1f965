/*
 * libFuzzer target for the service's multipart/form-data parser (src/http/multipart.c): the
 * input is a Content-Type value, a newline, then the body. The boundary is parsed from the
 * Content-Type (or a fixed one when that fails), the body split into parts: every part lies
 * inside the body, after the one before it, and holds no delimiter (CRLF "--" boundary); a
 * boundary is 1-70 of RFC 2046's characters; every refusal is a negative code with a message.
 * Build and run: make fuzz; seeds in tests/fuzz/corpus/multipart/.
 */
#include "base/base.h"
#include "http/internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size < 512 ? size : 512);
    char content_type[513] = "multipart/form-data; boundary=b";
    size_t head = 0;
    if (nl) {
        head = (size_t)(nl - data);
        memcpy(content_type, data, head);
        content_type[head] = '\0';
        head++;
    }
    char boundary[HTTP_BOUNDARY_MAX + 1];
    base_error_clear();
    int rc = http_multipart_boundary(content_type, boundary);
    if (rc != 0) {
        if (rc > 0 || !base_error_message()[0]) abort();
        strcpy(boundary, "b");
    } else {
        size_t bn = strlen(boundary);
        if (bn < 1 || bn > 70 ||
            bn != strspn(boundary, "0123456789abcdefghijklmnopqrstuvwxyz"
                                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? "))
            abort();
    }
    char delim[HTTP_BOUNDARY_MAX + 5];
    size_t dlen = (size_t)snprintf(delim, sizeof delim, "\r\n--%s", boundary);
    /* The body in its own allocation, so a read past its end is caught. */
    size_t len = size - head;
    uint8_t *body = malloc(len ? len : 1);
    memcpy(body, data + head, len);
    http_part parts[HTTP_MULTIPART_MAX_PARTS];
    int n = 0;
    base_error_clear();
    rc = http_multipart_parse(body, len, boundary, parts, HTTP_MULTIPART_MAX_PARTS, &n);
    if (rc != 0 && (rc > 0 || !base_error_message()[0])) abort();
    if (rc == 0) {
        if (n < 0 || n > HTTP_MULTIPART_MAX_PARTS) abort();
        const uint8_t *after = body;
        for (int i = 0; i < n; i++) {
            const http_part *p = &parts[i];
            if (p->data < after || p->data + p->len > body + len) abort();
            if (memmem(p->data, p->len, delim, dlen)) abort();
            after = p->data + p->len;
            if (!p->name.p || (const uint8_t *)p->name.p < body ||
                (const uint8_t *)p->name.p + p->name.n > body + len)
                abort();
        }
    }
    free(body);
    return 0;
}
