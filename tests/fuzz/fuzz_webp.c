/*
 * libFuzzer target for the WebP decoder (libwebp) and our RIFF walk for the EXIF chunk, plus
 * the affine warp over whatever decodes. Limits: 1 MP, 4096 per side.
 * Build and run: make fuzz (see the Makefile); seeds in tests/fuzz/corpus/webp/.
 */
#include "base/base.h"
#include "img/img.h"
#include "img/img_private.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    base_log_level = BASE_LOG_OFF;
    int o = img_exif_orientation_webp(data, size);
    if (o < 1 || o > 8) abort();
    if (img_detect_format(data, size) != IMG_FORMAT_WEBP) return 0;

    img_decode_options opts = {.limits = {.max_pixels = 1 << 20, .max_dimension = 4096}};
    img_image img;
    img_decode_info info;
    base_error_clear();
    int rc = img_decode(data, size, &opts, &img, &info);
    if (rc) {
        if (img.data || !base_error_message()[0] ||
            (rc != BASE_ERR_FORMAT && rc != BASE_ERR_LIMIT && rc != BASE_ERR_UNSUPPORTED))
            abort();
        return 0;
    }
    if (img.channels != 3 || img.width <= 0 || img.height <= 0 || info.orientation != o) abort();
    /* A rotation by 30 degrees and a 1.5x zoom about the centre, into 24x24. */
    const float c = 0.866025f * 1.5f, s = 0.5f * 1.5f;
    const float cx = img.width / 2.0f, cy = img.height / 2.0f;
    const float m[6] = {c, -s, cx - c * 12 + s * 12, s, c, cy - s * 12 - c * 12};
    img_image warped;
    if (img_warp_affine(&img, m, 24, 24, 0, &warped) != 0) abort();
    img_free(&warped);
    img_free(&img);
    return 0;
}
