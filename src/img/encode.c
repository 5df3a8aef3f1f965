/*
 * Encoders: JPEG through TurboJPEG, PNG through libspng. Both write a malloc'd buffer that
 * the caller frees with free().
 */
#include "base/base.h"
#include "img/img.h"

#include <spng.h>
#include <turbojpeg.h>

#include <stdlib.h>
#include <string.h>

static int check_source(const img_image *src, const char *who)
{
    if (!src || !src->data || src->width <= 0 || src->height <= 0)
        return base_error_set(BASE_ERR_INVALID, "%s: no image", who);
    if (src->channels != 1 && src->channels != 3)
        return base_error_set(BASE_ERR_INVALID, "%s: %d channels (1 or 3 supported)", who,
                              src->channels);
    return 0;
}

int img_encode_jpeg(const img_image *src, int quality, uint8_t **out, size_t *out_len)
{
    int rc = check_source(src, "img_encode_jpeg");
    if (rc) return rc;
    if (!out || !out_len) return base_error_set(BASE_ERR_INVALID, "img_encode_jpeg: no output");
    *out = NULL;
    *out_len = 0;
    if (quality < 1 || quality > 100)
        return base_error_set(BASE_ERR_INVALID, "img_encode_jpeg: quality %d (1..100)", quality);
    const int gray = src->channels == 1;
    const int subsamp = gray ? TJSAMP_GRAY : quality >= 90 ? TJSAMP_444 : TJSAMP_420;
    /* Our own malloc'd buffer of the worst-case size, so the caller frees with free() and
     * TurboJPEG never reallocates it. */
    unsigned long cap = tjBufSize(src->width, src->height, subsamp);
    if (cap == (unsigned long)-1)
        return base_error_set(BASE_ERR_INVALID, "img_encode_jpeg: %dx%d: %s", src->width,
                              src->height, tjGetErrorStr2(NULL));
    unsigned char *buf = malloc(cap);
    if (!buf) return base_error_set(BASE_ERR_NOMEM, "img_encode_jpeg: %lu bytes", cap);
    tjhandle tj = tjInitCompress();
    if (!tj) {
        free(buf);
        return base_error_set(BASE_ERR_NOMEM, "img_encode_jpeg: %s", tjGetErrorStr2(NULL));
    }
    unsigned long len = cap;
    if (tjCompress2(tj, src->data, src->width, 0, src->height, gray ? TJPF_GRAY : TJPF_RGB, &buf,
                    &len, subsamp, quality, TJFLAG_NOREALLOC) != 0) {
        rc = base_error_set(BASE_ERR_BACKEND, "img_encode_jpeg: %s", tjGetErrorStr2(tj));
        tjDestroy(tj);
        free(buf);
        return rc;
    }
    tjDestroy(tj);
    *out = buf;
    *out_len = len;
    return 0;
}

int img_encode_png(const img_image *src, uint8_t **out, size_t *out_len)
{
    int rc = check_source(src, "img_encode_png");
    if (rc) return rc;
    if (!out || !out_len) return base_error_set(BASE_ERR_INVALID, "img_encode_png: no output");
    *out = NULL;
    *out_len = 0;
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    if (!ctx) return base_error_set(BASE_ERR_NOMEM, "img_encode_png: spng_ctx_new");
    struct spng_ihdr ihdr = {
        .width = (uint32_t)src->width,
        .height = (uint32_t)src->height,
        .bit_depth = 8,
        .color_type = src->channels == 1 ? SPNG_COLOR_TYPE_GRAYSCALE : SPNG_COLOR_TYPE_TRUECOLOR,
    };
    size_t size = (size_t)src->width * src->height * src->channels;
    int err;
    if ((err = spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1)) ||
        (err = spng_set_ihdr(ctx, &ihdr)) ||
        (err = spng_encode_image(ctx, src->data, size, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE))) {
        rc = base_error_set(BASE_ERR_BACKEND, "img_encode_png: %dx%d: %s", src->width, src->height,
                            spng_strerror(err));
        spng_ctx_free(ctx);
        return rc;
    }
    size_t len = 0;
    void *png = spng_get_png_buffer(ctx, &len, &err);
    spng_ctx_free(ctx);
    if (!png) return base_error_set(BASE_ERR_BACKEND, "img_encode_png: %s", spng_strerror(err));
    *out = png; /* allocated by spng with the default allocator: malloc */
    *out_len = len;
    return 0;
}
