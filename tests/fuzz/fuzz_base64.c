/*
 * libFuzzer target for the service's base64 decoder (images in JSON bodies) and its
 * percent-decoder (paths, query strings): no crash, no read past the input, and base64
 * output round-trips through the encoder. Build and run: make fuzz; seeds in
 * tests/fuzz/corpus/base64/.
 */
#include "base/base.h"
#include "http/internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1);
    memcpy(text, data, size);
    uint8_t *out = NULL;
    size_t n = 0;
    if (http_base64_decode(text, size, 1 << 20, &out, &n) == 0) {
        /* Decoding the encoder's output gives the same bytes back. */
        char *again = malloc(n / 3 * 4 + 8);
        size_t m = http_base64url_encode(out, n, again);
        uint8_t *back = NULL;
        size_t back_n = 0;
        if (http_base64_decode(again, m, 1 << 20, &back, &back_n) != 0 || back_n != n ||
            (n && memcmp(back, out, n) != 0))
            abort();
        free(back);
        free(again);
        free(out);
    }
    char decoded[256];
    http_percent_decode(text, size, 1, decoded, sizeof decoded);
    char value[64];
    char *query = malloc(size + 1);
    memcpy(query, data, size);
    query[size] = '\0';
    http_query_get(query, "k", value, sizeof value);
    free(query);
    free(text);
    return 0;
}
