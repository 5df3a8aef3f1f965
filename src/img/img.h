/*
 * img — images in and out: decode JPEG (libjpeg-turbo), PNG (libspng) and WebP (libwebp) with
 * EXIF orientation applied, resize, crop, affine warp, and encode JPEG/PNG.
 *
 * Pixels are 8-bit interleaved RGB (3 channels) unless stated; rows are tightly packed
 * (stride = width * channels). Every size that comes from input bytes is checked against
 * img_limits before anything is allocated.
 *
 * Thread-safety: all functions are reentrant; an img_image is owned by one thread at a time.
 * Errors: negative BASE_ERR_* codes with base_error_message() naming the problem
 * (BASE_ERR_FORMAT corrupt or truncated, BASE_ERR_UNSUPPORTED unknown format,
 * BASE_ERR_LIMIT too many bytes, pixels or too large a dimension).
 */
#ifndef VULTUS_IMG_H
#define VULTUS_IMG_H

#include <stddef.h>
#include <stdint.h>

typedef struct img_image {
    int width, height;
    int channels;  /* 3 (RGB) or 1 (gray) */
    uint8_t *data; /* owned; width * height * channels bytes */
} img_image;

typedef enum img_format {
    IMG_FORMAT_UNKNOWN = 0,
    IMG_FORMAT_JPEG,
    IMG_FORMAT_PNG,
    IMG_FORMAT_WEBP,
} img_format;

/* The defaults that a zero field of img_limits stands for. */
#define IMG_DEFAULT_MAX_BYTES ((size_t)32 << 20)
#define IMG_DEFAULT_MAX_PIXELS ((int64_t)40000000)
#define IMG_DEFAULT_MAX_DIMENSION 20000

/* Checked against the stored (full-resolution) size before anything is allocated, whatever
 * DCT scale is then used: a reduced decode still parses every coefficient of the file. */
typedef struct img_limits {
    size_t max_bytes;   /* compressed input; 0: 32 MiB */
    int64_t max_pixels; /* decoded width * height; 0: 40 000 000 */
    int max_dimension;  /* width and height each; 0: 20 000 */
} img_limits;

typedef struct img_decode_options {
    img_limits limits;
    /* When > 0, the decoder may return a smaller image (JPEG: DCT scaling by 1/2, 1/4, 1/8)
     * as long as both sides stay >= min_side... see img_decode(). 0: full size. */
    int min_side;
    int no_exif; /* do not apply EXIF orientation */
} img_decode_options;

/* What img_decode() did, for callers that map coordinates back to the original image. */
typedef struct img_decode_info {
    img_format format;
    int orig_width, orig_height; /* as stored, before orientation and scaling */
    int orientation;             /* EXIF orientation 1..8 that was applied (1: none) */
    int scale_denom;             /* 1, 2, 4 or 8: the DCT scale used */
} img_decode_info;

img_format img_detect_format(const uint8_t *data, size_t len);
const char *img_format_name(img_format f);

/*
 * Decodes `data` into a new RGB image (alpha dropped, grey expanded, 16-bit reduced, palette
 * expanded), upright after EXIF orientation. With opts->min_side > 0 a JPEG is decoded at the
 * largest DCT reduction (1/2, 1/4, 1/8) whose shorter side is still >= min_side; the result's
 * size tells which (info->scale_denom too). opts and info may be NULL. On error *out is zeroed.
 *
 * Details:
 * - Wrong magic: BASE_ERR_UNSUPPORTED; empty, truncated or corrupt input: BASE_ERR_FORMAT;
 *   over a limit (bytes, either dimension, pixel count): BASE_ERR_LIMIT, before allocating.
 * - JPEG: data that ends before the image is complete is an error (BASE_ERR_FORMAT,
 *   "truncated"), although libjpeg could fill the rest with grey; a Huffman-coded file that
 *   lacks only its EOI marker (every bit of its scans there, and the scans complete the image)
 *   decodes to the complete file's image. Other recoverable
 *   corruption that libjpeg only warns about (e.g. stray bytes before a marker, a bad
 *   Huffman code) decodes as well as libjpeg can, as browsers do. Progressive files with more
 *   than 500 scans are refused. CMYK/YCCK files are converted as TensorFlow's decode_jpeg
 *   does: inverted CMYK with Adobe's APP14 marker, plain CMYK without.
 *   Arithmetic coding decodes; 12-bit samples and lossless or hierarchical frames are refused
 *   (BASE_ERR_FORMAT) with a message that names them. A file that ends in its headers (before
 *   the first scan's data) is "truncated", like one cut in its image data.
 * - PNG: 16-bit samples are reduced to their high byte; tRNS and alpha are ignored.
 * - WebP: animated files are BASE_ERR_UNSUPPORTED.
 * - EXIF orientation is read from a JPEG's APP1 Exif segment, a PNG's eXIf chunk and a
 *   WebP's EXIF chunk; a malformed EXIF block is ignored (orientation 1), not an error.
 */
int img_decode(const uint8_t *data, size_t len, const img_decode_options *opts, img_image *out,
               img_decode_info *info);

/* Reads the file at `path` (refused with BASE_ERR_LIMIT when larger than the max_bytes limit)
 * and decodes it with img_decode(). */
int img_load_file(const char *path, const img_decode_options *opts, img_image *out,
                  img_decode_info *info);

/* Writes a new image: `src` transformed as EXIF orientation 1..8 prescribes for display
 * (5..8 swap width and height). */
int img_apply_orientation(const img_image *src, int orientation, img_image *out);

/* Allocates an image (contents uninitialised). */
int img_alloc(img_image *img, int width, int height, int channels);
/* Frees the pixels; accepts a zeroed or already freed image. */
void img_free(img_image *img);

/*
 * Resizes to dst_w x dst_h (any channel count), separably: along each axis, area averaging
 * when that axis shrinks by 2x or more, bilinear (pixel centres aligned, edges clamped)
 * otherwise.
 */
int img_resize(const img_image *src, int dst_w, int dst_h, img_image *out);
/* Copies the rectangle (x, y, w, h), clipped to the image; pixels outside are zero. */
int img_crop(const img_image *src, int x, int y, int w, int h, img_image *out);

/*
 * Affine warp with bilinear sampling: out(u, v) = src(M * (u + 0.5, v + 0.5, 1) - 0.5)
 * where M (2x3, row-major) maps OUTPUT pixel centres to SOURCE coordinates. Pixels that
 * sample outside the source are `border` (0..255): each of the four bilinear taps that falls
 * outside reads `border`, so edges blend into it (OpenCV's BORDER_CONSTANT). Writes into a
 * new image of out_w x out_h.
 */
int img_warp_affine(const img_image *src, const float m[6], int out_w, int out_h, uint8_t border,
                    img_image *out);

/* Converts to float NHWC: dst[i] = pixel * scale + offset (per channel order RGB). */
void img_to_float(const img_image *src, float scale, float offset, float *dst);

/* Encoders: write a new malloc'd buffer (free() it), from 1- or 3-channel images. quality
 * 1..100 for JPEG; chroma is subsampled 4:2:0 below quality 90 and kept 4:4:4 from 90. */
int img_encode_jpeg(const img_image *src, int quality, uint8_t **out, size_t *out_len);
int img_encode_png(const img_image *src, uint8_t **out, size_t *out_len);

/* Drawing for annotated images (--draw), clipped to the image; on a 1-channel image the
 * colour's luma is drawn. A rectangle outline (corners inclusive, drawn inwards `thickness`
 * pixels) and a filled disc. */
void img_draw_rect(img_image *img, int x0, int y0, int x1, int y1, int thickness,
                   const uint8_t rgb[3]);
void img_draw_dot(img_image *img, int x, int y, int radius, const uint8_t rgb[3]);
/* A small built-in 5x7 font, top-left at (x, y); each character takes 6x8 * scale pixels;
 * '\n' starts a new line; bytes outside printable ASCII draw as '?'. scale 1.. */
void img_draw_text(img_image *img, int x, int y, const char *text, int scale, const uint8_t rgb[3]);

#endif
