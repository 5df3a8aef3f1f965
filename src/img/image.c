/*
 * The image type and the simple whole-image operations: allocation, format sniffing, crop,
 * conversion to float, EXIF orientation.
 */
#include "base/base.h"
#include "img/img.h"
#include "img/img_private.h"

#include <stdlib.h>
#include <string.h>

img_limits img_limits_resolve(const img_limits *limits)
{
    img_limits l = limits ? *limits : (img_limits){0};
    if (l.max_bytes == 0) l.max_bytes = IMG_DEFAULT_MAX_BYTES;
    if (l.max_pixels <= 0) l.max_pixels = IMG_DEFAULT_MAX_PIXELS;
    if (l.max_dimension <= 0) l.max_dimension = IMG_DEFAULT_MAX_DIMENSION;
    return l;
}

int img_alloc(img_image *img, int width, int height, int channels)
{
    if (!img) return base_error_set(BASE_ERR_INVALID, "img_alloc: no image");
    *img = (img_image){0};
    if (width <= 0 || height <= 0 || channels < 1 || channels > 4)
        return base_error_set(BASE_ERR_INVALID, "img_alloc: bad shape %dx%dx%d", width, height,
                              channels);
    size_t n;
    if (base_mul_size((size_t)width, (size_t)height, &n) || base_mul_size(n, (size_t)channels, &n))
        return base_error_set(BASE_ERR_LIMIT, "img_alloc: %dx%dx%d overflows", width, height,
                              channels);
    img->data = malloc(n);
    if (!img->data)
        return base_error_set(BASE_ERR_NOMEM, "img_alloc: %zu bytes for %dx%dx%d", n, width, height,
                              channels);
    img->width = width;
    img->height = height;
    img->channels = channels;
    return 0;
}

void img_free(img_image *img)
{
    if (!img) return;
    free(img->data);
    *img = (img_image){0};
}

img_format img_detect_format(const uint8_t *data, size_t len)
{
    if (!data) return IMG_FORMAT_UNKNOWN;
    if (len >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return IMG_FORMAT_JPEG;
    if (len >= 8 && memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0) return IMG_FORMAT_PNG;
    if (len >= 12 && memcmp(data, "RIFF", 4) == 0 && memcmp(data + 8, "WEBP", 4) == 0)
        return IMG_FORMAT_WEBP;
    return IMG_FORMAT_UNKNOWN;
}

const char *img_format_name(img_format f)
{
    switch (f) {
    case IMG_FORMAT_JPEG: return "jpeg";
    case IMG_FORMAT_PNG: return "png";
    case IMG_FORMAT_WEBP: return "webp";
    case IMG_FORMAT_UNKNOWN: break;
    }
    return "unknown";
}

int img_crop(const img_image *src, int x, int y, int w, int h, img_image *out)
{
    if (!src || !src->data || !out) return base_error_set(BASE_ERR_INVALID, "img_crop: no image");
    int rc = img_alloc(out, w, h, src->channels);
    if (rc) return rc;
    const int c = src->channels;
    memset(out->data, 0, (size_t)w * h * c);
    /* The part of the rectangle inside the source, in 64 bits: x + w may overflow int. */
    int64_t x0 = x < 0 ? 0 : x, y0 = y < 0 ? 0 : y;
    int64_t x1 = (int64_t)x + w, y1 = (int64_t)y + h;
    if (x1 > src->width) x1 = src->width;
    if (y1 > src->height) y1 = src->height;
    if (x0 >= x1 || y0 >= y1) return 0;
    size_t row_bytes = (size_t)(x1 - x0) * c;
    for (int64_t sy = y0; sy < y1; sy++) {
        const uint8_t *s = src->data + ((size_t)sy * src->width + (size_t)x0) * c;
        uint8_t *d = out->data + ((size_t)(sy - y) * w + (size_t)(x0 - x)) * c;
        memcpy(d, s, row_bytes);
    }
    return 0;
}

void img_to_float(const img_image *src, float scale, float offset, float *dst)
{
    size_t n = (size_t)src->width * src->height * src->channels;
    const uint8_t *s = src->data;
    for (size_t i = 0; i < n; i++)
        dst[i] = (float)s[i] * scale + offset;
}

/*
 * EXIF orientation o says how the stored image must be transformed to be displayed upright.
 * Each display pixel (x, y) reads the stored pixel (sx, sy) = (ax*x + bx*y + cx,
 * ay*x + by*y + cy) with W, H the stored size:
 *   1 identity             (x, y)                5 transpose           (y, x)
 *   2 mirror horizontally  (W-1-x, y)            6 rotate 90 cw        (y, H-1-x)
 *   3 rotate 180           (W-1-x, H-1-y)        7 transverse          (W-1-y, H-1-x)
 *   4 mirror vertically    (x, H-1-y)            8 rotate 90 ccw       (W-1-y, x)
 * so the copy walks the source with a constant step per display pixel and per display row.
 */
int img_apply_orientation(const img_image *src, int orientation, img_image *out)
{
    if (!src || !src->data || !out)
        return base_error_set(BASE_ERR_INVALID, "img_apply_orientation: no image");
    if (orientation < 1 || orientation > 8)
        return base_error_set(BASE_ERR_INVALID, "img_apply_orientation: orientation %d",
                              orientation);
    const int64_t W = src->width, H = src->height;
    const int transposed = orientation >= 5;
    int rc = img_alloc(out, (int)(transposed ? H : W), (int)(transposed ? W : H), src->channels);
    if (rc) return rc;
    /* sx = ax*x + bx*y + cx, sy = ay*x + by*y + cy */
    int64_t ax = 0, bx = 0, cx = 0, ay = 0, by = 0, cy = 0;
    switch (orientation) {
    case 1: ax = 1, by = 1; break;
    case 2: ax = -1, cx = W - 1, by = 1; break;
    case 3: ax = -1, cx = W - 1, by = -1, cy = H - 1; break;
    case 4: ax = 1, by = -1, cy = H - 1; break;
    case 5: bx = 1, ay = 1; break;
    case 6: bx = 1, ay = -1, cy = H - 1; break;
    case 7: bx = -1, cx = W - 1, ay = -1, cy = H - 1; break;
    case 8: bx = -1, cx = W - 1, ay = 1; break;
    }
    const int c = src->channels;
    const int64_t step = (ay * W + ax) * c; /* source bytes per display pixel */
    /* In tiles, so that a rotation's column walk through the source stays in cache. */
    enum { TILE = 64 };
    const int64_t ow = out->width, oh = out->height;
    for (int64_t ty = 0; ty < oh; ty += TILE)
        for (int64_t tx = 0; tx < ow; tx += TILE) {
            const int64_t ye = ty + TILE < oh ? ty + TILE : oh,
                          xe = tx + TILE < ow ? tx + TILE : ow;
            for (int64_t y = ty; y < ye; y++) {
                /* An offset, not a pointer: stepping a pointer past the last pixel would be
                 * undefined behaviour. */
                int64_t off = ((by * y + cy) * W + (bx * y + cx)) * c + tx * step;
                uint8_t *d = out->data + (y * ow + tx) * c;
                if (c == 3) {
                    for (int64_t x = tx; x < xe; x++, off += step, d += 3) {
                        const uint8_t *sp = src->data + off;
                        d[0] = sp[0];
                        d[1] = sp[1];
                        d[2] = sp[2];
                    }
                } else {
                    for (int64_t x = tx; x < xe; x++, off += step, d += c)
                        memcpy(d, src->data + off, (size_t)c);
                }
            }
        }
    return 0;
}
