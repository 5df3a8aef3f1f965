/*
 * libFuzzer target for the JPEG decoder (TurboJPEG), our APP1/EXIF reader and the orientation
 * transforms, with DCT scaling chosen from the input's length; what is no image at all is
 * refused as unknown or truncated. Limits are lower than the service's (1 MP) to keep each run
 * fast; they are checked the same way.
 * Build and run: make fuzz (see the Makefile); seeds in tests/fuzz/corpus/jpeg/.
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
    /* The EXIF reader sees every input, whether or not the rest is a decodable JPEG. */
    int o = img_exif_orientation_jpeg(data, size);
    if (o < 1 || o > 8) abort();
    img_format format = img_detect_format(data, size);
    if (format == IMG_FORMAT_UNKNOWN) {
        /* Not an image: refused as unknown, or as truncated where it starts like a signature,
         * with a message and no pixels. */
        img_image none;
        base_error_clear();
        int rc = img_decode(data, size, NULL, &none, NULL);
        if ((rc != BASE_ERR_UNSUPPORTED && rc != BASE_ERR_FORMAT) || none.data ||
            !base_error_message()[0])
            abort();
        return 0;
    }
    if (format != IMG_FORMAT_JPEG) return 0;

    static const int min_sides[4] = {0, 1, 17, 100};
    img_decode_options opts = {
        .limits = {.max_pixels = 1 << 20, .max_dimension = 4096},
        .min_side = min_sides[size % 4],
    };
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
    /* What a decoded image promises. */
    if (img.channels != 3 || img.width <= 0 || img.height <= 0 || info.orientation != o) abort();
    const int sw = info.orientation >= 5 ? info.orig_height : info.orig_width;
    if (img.width > sw || (int64_t)info.orig_width * info.orig_height > (1 << 20)) abort();
    /* Touch every pixel (ASan checks the buffer's extent), then resample it. */
    unsigned sum = 0;
    for (size_t i = 0; i < (size_t)img.width * img.height * 3; i++)
        sum += img.data[i];
    (void)sum;
    img_image small;
    if (img_resize(&img, img.width / 3 + 1, img.height / 2 + 1, &small) == 0) img_free(&small);
    img_free(&img);
    return 0;
}
