/*
 * libFuzzer target for the service's base64 decoder (images in JSON bodies) and its
 * percent-decoder (paths, query strings): no crash, no read past the input, a refusal is a
 * negative code with a message, and both round-trip: the input encoded (base64url; %XX) then
 * decoded is the input again, and base64 output encoded again decodes to itself. Build and
 * run: make fuzz; seeds in tests/fuzz/corpus/base64/.
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
    base_error_clear();
    int rc = http_base64_decode(text, size, 1 << 20, &out, &n);
    if (rc != 0 && (rc > 0 || !base_error_message()[0] || out)) abort();
    if (rc == 0) {
        /* A tighter limit (the input's length picks it): the same bytes when they fit, else
         * a refusal for the limit. The decoder may also refuse, before allocating, text
         * whose length alone (whitespace and a data URL's prefix included) could decode past
         * the limit: len / 4 * 3 bytes. */
        size_t limit = n - n % 5 + size % 3;
        uint8_t *cut = NULL;
        size_t cut_n = 0;
        int cut_rc = http_base64_decode(text, size, limit, &cut, &cut_n);
        if (cut_rc == 0 ? n > limit || cut_n != n || (n && memcmp(cut, out, n) != 0)
                        : cut_rc != BASE_ERR_LIMIT || cut || !base_error_message()[0] ||
                              (n <= limit && size / 4 * 3 <= limit))
            abort();
        free(cut);
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

    /* The input as base64url, decoded: the input again. */
    char *encoded = malloc(size / 3 * 4 + 8);
    size_t m = http_base64url_encode(data, size, encoded);
    if (m != strlen(encoded) || m != (size * 4 + 2) / 3) abort();
    uint8_t *round = NULL;
    size_t round_n = 0;
    if (http_base64_decode(encoded, m, 1 << 20, &round, &round_n) != 0 || round_n != size ||
        (size && memcmp(round, data, size) != 0))
        abort();
    free(round);
    free(encoded);

    char decoded[256];
    base_error_clear();
    rc = http_percent_decode(text, size, 1, decoded, sizeof decoded);
    if (rc == 0 ? strlen(decoded) > size : rc > 0 || !base_error_message()[0]) abort();
    /* Every byte as %XX, decoded: the input again (a NUL is refused, never decoded). */
    char *escaped = malloc(3 * size + 1);
    char *back_text = malloc(size + 1);
    for (size_t i = 0; i < size; i++)
        snprintf(escaped + 3 * i, 4, "%%%02X", data[i]);
    rc = http_percent_decode(escaped, 3 * size, 0, back_text, size + 1);
    if (memchr(data, '\0', size)
            ? rc != BASE_ERR_FORMAT
            : rc != 0 || memcmp(back_text, data, size) != 0 || back_text[size] != '\0')
        abort();
    free(back_text);
    free(escaped);
    char value[64];
    char *query = malloc(size + 1);
    memcpy(query, data, size);
    query[size] = '\0';
    rc = http_query_get(query, "k", value, sizeof value);
    if (rc < 0 ? !base_error_message()[0] : rc > 1 || !memchr(value, '\0', sizeof value)) abort();
    free(query);
    free(text);
    return 0;
}
