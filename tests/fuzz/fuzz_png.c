/*
 * libFuzzer target for the PNG decoder (libspng) and the PNG encoder: chunk CRCs are repaired
 * before decoding so that mutations reach past the CRC check; a decoded image is encoded
 * again, decoded again and must come back identical. Limits: 1 MP, 4096 per side.
 * Build and run: make fuzz (see the Makefile); seeds in tests/fuzz/corpus/png/.
 */
#include "base/base.h"
#include "img/img.h"
#include "img/img_private.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint32_t crc32_png(const uint8_t *p, size_t n)
{
    static uint32_t table[256];
    if (!table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        c = table[(c ^ p[i]) & 255] ^ (c >> 8);
    return ~c;
}

/* Rewrites the CRC of every complete chunk after the signature. */
static void fix_crcs(uint8_t *d, size_t n)
{
    size_t i = 8;
    while (n - i >= 12) {
        size_t len = (size_t)d[i] << 24 | (size_t)d[i + 1] << 16 | (size_t)d[i + 2] << 8 | d[i + 3];
        if (len > n - i - 12) break;
        uint32_t crc = crc32_png(d + i + 4, len + 4);
        uint8_t *c = d + i + 8 + len;
        c[0] = (uint8_t)(crc >> 24), c[1] = (uint8_t)(crc >> 16), c[2] = (uint8_t)(crc >> 8),
        c[3] = (uint8_t)crc;
        i += 12 + len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    base_log_level = BASE_LOG_OFF;
    if (img_detect_format(data, size) != IMG_FORMAT_PNG) return 0;
    uint8_t *copy = malloc(size);
    if (!copy) return 0;
    memcpy(copy, data, size);
    /* Odd lengths keep the CRCs as they are, so the CRC checks are fuzzed too. */
    if (size % 2 == 0) fix_crcs(copy, size);

    img_decode_options opts = {.limits = {.max_pixels = 1 << 20, .max_dimension = 4096}};
    img_image img;
    img_decode_info info;
    base_error_clear();
    int rc = img_decode(copy, size, &opts, &img, &info);
    free(copy);
    if (rc) {
        if (img.data || !base_error_message()[0] || (rc != BASE_ERR_FORMAT && rc != BASE_ERR_LIMIT))
            abort();
        return 0;
    }
    if (img.channels != 3 || img.width <= 0 || img.height <= 0) abort();
    if ((int64_t)img.width * img.height > (1 << 20)) abort();
    /* Round trip through our encoder for small images: must be exact. */
    if ((int64_t)img.width * img.height <= 1 << 16) {
        uint8_t *png;
        size_t len;
        if (img_encode_png(&img, &png, &len) != 0) abort();
        img_image again;
        img_decode_options raw = {.no_exif = 1};
        if (img_decode(png, len, &raw, &again, NULL) != 0) abort();
        if (again.width != img.width || again.height != img.height ||
            memcmp(again.data, img.data, (size_t)img.width * img.height * 3) != 0)
            abort();
        img_free(&again);
        free(png);
    }
    img_free(&img);
    return 0;
}
