/*
 * Decoders: round trips through our encoders and libwebp's, every PNG colour type and bit
 * depth with known values, EXIF orientation 1..8 against the EXIF standard's own table, DCT
 * scaling, limits, and bad input of every kind (truncated, corrupt, wrong magic, 0x0, huge
 * dimensions). Finally the real photos of ../shared/data/fixtures and models/samples.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "base/base.h"
#include "img/img.h"
#include "img/img_private.h"

#include <dirent.h>
#include <spng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <unistd.h>
#include <webp/encode.h>

/* ---- helpers ---- */

/* A smooth, asymmetric RGB pattern (compresses well, survives JPEG). */
static void make_gradient(img_image *img, int w, int h)
{
    assert_int_equal(img_alloc(img, w, h, 3), 0);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = img->data + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(255 * x / (w - 1));
            p[1] = (uint8_t)(255 * y / (h - 1));
            p[2] = (uint8_t)(128 + 100 * (x - y) / (w + h));
        }
}

/* Blocks of 16x16 in distinct colours: every pixel says where it came from. */
static void make_blocks(img_image *img, int w, int h)
{
    static const uint8_t colours[][3] = {{230, 20, 20},   {20, 230, 20},  {20, 20, 230},
                                         {230, 230, 20},  {20, 230, 230}, {230, 20, 230},
                                         {128, 64, 0},    {0, 128, 64},   {64, 0, 128},
                                         {250, 250, 250}, {5, 5, 5},      {128, 128, 128}};
    assert_int_equal(img_alloc(img, w, h, 3), 0);
    int bw = (w + 15) / 16;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            memcpy(img->data + ((size_t)y * w + x) * 3, colours[((y / 16) * bw + x / 16) % 12], 3);
}

static double mean_abs_diff(const img_image *a, const img_image *b, int *max_diff)
{
    assert_int_equal(a->width, b->width);
    assert_int_equal(a->height, b->height);
    assert_int_equal(a->channels, b->channels);
    size_t n = (size_t)a->width * a->height * a->channels;
    double sum = 0;
    int mx = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a->data[i] - (int)b->data[i]);
        sum += d;
        if (d > mx) mx = d;
    }
    if (max_diff) *max_diff = mx;
    return sum / (double)n;
}

static void assert_same_image(const img_image *a, const img_image *b)
{
    int mx;
    mean_abs_diff(a, b, &mx);
    assert_int_equal(mx, 0);
}

static int decode(const uint8_t *data, size_t len, img_image *out, img_decode_info *info)
{
    return img_decode(data, len, NULL, out, info);
}

#define expect_error(data, len, opts, want) expect_error_at(data, len, opts, want, __LINE__)
static void expect_error_at(const uint8_t *data, size_t len, const img_decode_options *opts,
                            int want, int line)
{
    img_image img = {0};
    img_decode_info info;
    int rc = img_decode(data, len, opts, &img, &info);
    if (rc != want)
        fail_msg("line %d: expected %s, got %d (%s): %s", line, base_strerror(want), rc,
                 base_strerror(rc), base_error_message());
    assert_null(img.data);
    assert_true(strlen(base_error_message()) > 0);
}

static uint32_t crc32_png(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
    p[3] = (uint8_t)v;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16),
    p[3] = (uint8_t)(v >> 24);
}

/* Encodes raw PNG samples (big-endian, packed as in the file, rows byte-aligned) with spng. */
static void make_png(uint32_t w, uint32_t h, uint8_t color_type, uint8_t depth, int interlace,
                     const uint8_t *raw, size_t raw_len, const struct spng_plte *plte,
                     const struct spng_exif *exif, uint8_t **out, size_t *out_len)
{
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    assert_non_null(ctx);
    struct spng_ihdr ihdr = {.width = w,
                             .height = h,
                             .bit_depth = depth,
                             .color_type = color_type,
                             .interlace_method = (uint8_t)interlace};
    assert_int_equal(spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1), 0);
    assert_int_equal(spng_set_ihdr(ctx, &ihdr), 0);
    if (plte) assert_int_equal(spng_set_plte(ctx, (struct spng_plte *)plte), 0);
    if (exif) assert_int_equal(spng_set_exif(ctx, (struct spng_exif *)exif), 0);
    int err = spng_encode_image(ctx, raw, raw_len, SPNG_FMT_RAW, SPNG_ENCODE_FINALIZE);
    if (err) fail_msg("spng_encode_image: %s", spng_strerror(err));
    int e2 = 0;
    *out = spng_get_png_buffer(ctx, out_len, &e2);
    assert_non_null(*out);
    spng_ctx_free(ctx);
}

/* A PNG of just the signature and an IHDR claiming w x h (and an IEND). */
static size_t make_png_header_only(uint8_t *buf, uint32_t w, uint32_t h)
{
    memcpy(buf, "\x89PNG\r\n\x1a\n", 8);
    put_be32(buf + 8, 13);
    memcpy(buf + 12, "IHDR", 4);
    put_be32(buf + 16, w);
    put_be32(buf + 20, h);
    buf[24] = 8, buf[25] = 2, buf[26] = 0, buf[27] = 0, buf[28] = 0; /* 8-bit RGB */
    put_be32(buf + 29, crc32_png(buf + 12, 17));
    put_be32(buf + 33, 0);
    memcpy(buf + 37, "IEND", 4);
    put_be32(buf + 41, crc32_png(buf + 37, 4));
    return 45;
}

static void encode_jpeg(const img_image *img, int quality, uint8_t **out, size_t *len)
{
    int rc = img_encode_jpeg(img, quality, out, len);
    if (rc) fail_msg("img_encode_jpeg: %s", base_error_message());
}

/* The offset of the first SOFn marker's segment (FF Cn) in a JPEG. */
static size_t find_sof(const uint8_t *j, size_t len)
{
    for (size_t i = 2; i + 9 < len; i++)
        if (j[i] == 0xFF && (j[i + 1] == 0xC0 || j[i + 1] == 0xC1 || j[i + 1] == 0xC2)) return i;
    fail_msg("no SOF");
    return 0;
}

/* ---- format detection, arguments ---- */

static void test_detect_format(void **state)
{
    (void)state;
    assert_int_equal(img_detect_format((const uint8_t *)"\xFF\xD8\xFF\xE0", 4), IMG_FORMAT_JPEG);
    assert_int_equal(img_detect_format((const uint8_t *)"\x89PNG\r\n\x1a\n", 8), IMG_FORMAT_PNG);
    assert_int_equal(img_detect_format((const uint8_t *)"RIFF\0\0\0\0WEBPVP8 ", 16),
                     IMG_FORMAT_WEBP);
    assert_int_equal(img_detect_format((const uint8_t *)"RIFF\0\0\0\0WAVE", 12),
                     IMG_FORMAT_UNKNOWN);
    assert_int_equal(img_detect_format((const uint8_t *)"GIF89a", 6), IMG_FORMAT_UNKNOWN);
    assert_int_equal(img_detect_format(NULL, 0), IMG_FORMAT_UNKNOWN);
    assert_string_equal(img_format_name(IMG_FORMAT_PNG), "png");
    assert_string_equal(img_format_name(IMG_FORMAT_UNKNOWN), "unknown");
}

static void test_wrong_magic_and_empty(void **state)
{
    (void)state;
    expect_error((const uint8_t *)"GIF89a\x01\x00\x01\x00", 10, NULL, BASE_ERR_UNSUPPORTED);
    assert_non_null(strstr(base_error_message(), "47 49 46 38"));
    expect_error((const uint8_t *)"BM\x36\x00\x00\x00\x00\x00", 8, NULL, BASE_ERR_UNSUPPORTED);
    expect_error((const uint8_t *)"<html>", 6, NULL, BASE_ERR_UNSUPPORTED);
    expect_error((const uint8_t *)"", 0, NULL, BASE_ERR_FORMAT);
    expect_error(NULL, 0, NULL, BASE_ERR_FORMAT);
    /* A prefix of a known signature is a truncated file, not an unknown format. */
    expect_error((const uint8_t *)"\xFF\xD8", 2, NULL, BASE_ERR_FORMAT);
    expect_error((const uint8_t *)"\x89PNG\r", 5, NULL, BASE_ERR_FORMAT);
    expect_error((const uint8_t *)"RIFF\x10\0\0\0WE", 10, NULL, BASE_ERR_FORMAT);
    assert_int_equal(img_decode((const uint8_t *)"x", 1, NULL, NULL, NULL), BASE_ERR_INVALID);
}

/* ---- JPEG ---- */

static void test_jpeg_round_trip(void **state)
{
    (void)state;
    img_image src, out;
    make_gradient(&src, 64, 48);
    for (int q = 50; q <= 95; q += 45) {
        uint8_t *jpg;
        size_t len;
        encode_jpeg(&src, q, &jpg, &len);
        img_decode_info info;
        assert_int_equal(decode(jpg, len, &out, &info), 0);
        assert_int_equal(info.format, IMG_FORMAT_JPEG);
        assert_int_equal(info.orig_width, 64);
        assert_int_equal(info.orig_height, 48);
        assert_int_equal(info.orientation, 1);
        assert_int_equal(info.scale_denom, 1);
        assert_int_equal(out.channels, 3);
        int mx;
        double mad = mean_abs_diff(&src, &out, &mx);
        assert_true(mad < (q >= 90 ? 1.5 : 3.0));
        assert_true(mx < 24);
        img_free(&out);
        free(jpg);
    }
    img_free(&src);
}

static void test_jpeg_grey_progressive_cmyk(void **state)
{
    (void)state;
    /* A 1-channel image encodes as a greyscale JPEG and decodes to R = G = B. */
    img_image g, out;
    assert_int_equal(img_alloc(&g, 40, 30, 1), 0);
    for (int i = 0; i < 40 * 30; i++)
        g.data[i] = (uint8_t)(i % 40 * 6);
    uint8_t *jpg;
    size_t len;
    encode_jpeg(&g, 95, &jpg, &len);
    assert_int_equal(decode(jpg, len, &out, NULL), 0);
    assert_int_equal(out.channels, 3);
    for (int i = 0; i < 40 * 30; i++) {
        assert_int_equal(out.data[3 * i], out.data[3 * i + 1]);
        assert_int_equal(out.data[3 * i], out.data[3 * i + 2]);
        assert_true(abs(out.data[3 * i] - g.data[i]) <= 6);
    }
    img_free(&out);
    free(jpg);
    img_free(&g);

    /* Progressive and CMYK files, written with TurboJPEG directly. */
    img_image src;
    make_gradient(&src, 48, 32);
    tjhandle tj = tjInitCompress();
    unsigned char *buf = NULL;
    unsigned long blen = 0;
    assert_int_equal(tjCompress2(tj, src.data, 48, 0, 32, TJPF_RGB, &buf, &blen, TJSAMP_444, 95,
                                 TJFLAG_PROGRESSIVE),
                     0);
    assert_int_equal(decode(buf, blen, &out, NULL), 0);
    assert_true(mean_abs_diff(&src, &out, NULL) < 1.5);
    img_free(&out);
    tjFree(buf);

    /* CMYK as Adobe writes it (inverted): c = 255 - C... so RGB = c * k / 255. A pixel with
     * c, m, y = 255, 128, 0 and k = 255 (no black) is (255, 128, 0). */
    tjDestroy(tj);
    tj = tjInitCompress(); /* TurboJPEG 2.1 reuses the progressive scan script otherwise */
    uint8_t cmyk[16 * 16 * 4];
    for (int i = 0; i < 16 * 16; i++)
        cmyk[4 * i] = 255, cmyk[4 * i + 1] = 128, cmyk[4 * i + 2] = 0, cmyk[4 * i + 3] = 255;
    buf = NULL;
    assert_int_equal(tjCompress2(tj, cmyk, 16, 0, 16, TJPF_CMYK, &buf, &blen, TJSAMP_444, 100, 0),
                     0);
    assert_int_equal(decode(buf, blen, &out, NULL), 0);
    assert_true(abs(out.data[0] - 255) <= 3);
    assert_true(abs(out.data[1] - 128) <= 3);
    assert_true(abs(out.data[2] - 0) <= 3);
    img_free(&out);
    tjFree(buf);
    tjDestroy(tj);
    img_free(&src);
}

static void test_jpeg_dct_scaling(void **state)
{
    (void)state;
    img_image src, out;
    make_gradient(&src, 400, 300);
    uint8_t *jpg;
    size_t len;
    encode_jpeg(&src, 90, &jpg, &len);
    /* min_side -> expected denominator: the largest of 8, 4, 2 with ceil(300 / d) >= min_side. */
    static const struct {
        int min_side, denom, w, h;
    } cases[] = {{0, 1, 400, 300},   {300, 1, 400, 300}, {301, 1, 400, 300}, {151, 1, 400, 300},
                 {150, 2, 200, 150}, {76, 2, 200, 150},  {75, 4, 100, 75},   {39, 4, 100, 75},
                 {38, 8, 50, 38},    {1, 8, 50, 38}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        img_decode_options opts = {.min_side = cases[i].min_side};
        img_decode_info info;
        assert_int_equal(img_decode(jpg, len, &opts, &out, &info), 0);
        if (info.scale_denom != cases[i].denom || out.width != cases[i].w ||
            out.height != cases[i].h)
            fail_msg("min_side %d: denom %d, %dx%d; want %d, %dx%d", cases[i].min_side,
                     info.scale_denom, out.width, out.height, cases[i].denom, cases[i].w,
                     cases[i].h);
        assert_int_equal(info.orig_width, 400);
        assert_int_equal(info.orig_height, 300);
        /* The reduced image is the full one, smaller: compare with our own area resize. */
        img_image ref;
        assert_int_equal(img_resize(&src, out.width, out.height, &ref), 0);
        assert_true(mean_abs_diff(&ref, &out, NULL) < 3.0);
        img_free(&ref);
        img_free(&out);
    }
    /* PNG ignores min_side. */
    uint8_t *png;
    size_t plen;
    assert_int_equal(img_encode_png(&src, &png, &plen), 0);
    img_decode_options opts = {.min_side = 10};
    img_decode_info info;
    assert_int_equal(img_decode(png, plen, &opts, &out, &info), 0);
    assert_int_equal(info.scale_denom, 1);
    assert_int_equal(out.width, 400);
    img_free(&out);
    free(png);
    free(jpg);
    img_free(&src);
}

static void test_jpeg_truncated(void **state)
{
    (void)state;
    img_image src, out, whole;
    make_gradient(&src, 64, 48);
    uint8_t *jpg;
    size_t len;
    encode_jpeg(&src, 90, &jpg, &len);
    assert_int_equal(decode(jpg, len, &whole, NULL), 0);
    /* Every prefix. One that lacks only the final EOI marker (FF D9) or its last byte holds the
     * whole scan: it decodes, to exactly the complete file's image (browsers and TensorFlow
     * show such files). Every shorter one is truncated and says so. */
    assert_int_equal(jpg[len - 2], 0xFF);
    assert_int_equal(jpg[len - 1], 0xD9);
    for (size_t cut = 0; cut < len; cut++) {
        int rc = decode(jpg, cut, &out, NULL);
        if (cut >= len - 2) {
            if (rc != 0) fail_msg("cut at %zu of %zu: %d (%s)", cut, len, rc, base_error_message());
            assert_same_image(&whole, &out);
            img_free(&out);
            continue;
        }
        if (rc != BASE_ERR_FORMAT)
            fail_msg("cut at %zu of %zu: %d (%s)", cut, len, rc, base_error_message());
        assert_null(out.data);
        if (cut > 0 && !strstr(base_error_message(), "truncated"))
            fail_msg("cut at %zu of %zu: %s", cut, len, base_error_message());
    }
    /* The same at 1/2 scale (DCT scaling decodes every coefficient all the same). */
    img_decode_options half = {.min_side = 24};
    img_image small, small_whole;
    assert_int_equal(img_decode(jpg, len, &half, &small_whole, NULL), 0);
    assert_int_equal(img_decode(jpg, len - 2, &half, &small, NULL), 0);
    assert_int_equal(small.width, 32);
    assert_same_image(&small_whole, &small);
    img_free(&small);
    img_free(&small_whole);
    /* The bytes of the last MCUs are missing: padding them would paint grey. */
    assert_int_equal(decode(jpg, len - 3, &out, NULL), BASE_ERR_FORMAT);
    assert_non_null(strstr(base_error_message(), "cut short"));
    img_free(&whole);
    /* The message says what happened for a cut inside the scan. */
    assert_int_equal(decode(jpg, len / 2 + 100, &out, NULL), BASE_ERR_FORMAT);
    assert_non_null(strstr(base_error_message(), "truncated"));
    /* Recoverable damage that libjpeg only warns about decodes (the documented policy):
     * stray bytes before the EOI marker. */
    uint8_t *stray = malloc(len + 3);
    memcpy(stray, jpg, len - 2);
    memcpy(stray + len - 2, "\x00\x11\x22\xFF\xD9", 5);
    assert_int_equal(decode(stray, len + 3, &out, NULL), 0);
    assert_true(mean_abs_diff(&src, &out, NULL) < 1.5);
    img_free(&out);
    free(stray);
    /* Bytes after EOI are harmless. */
    uint8_t *more = malloc(len + 100);
    memcpy(more, jpg, len);
    memset(more + len, 0xAB, 100);
    assert_int_equal(decode(more, len + 100, &out, NULL), 0);
    img_free(&out);
    free(more);
    free(jpg);
    img_free(&src);
}

/* The offset of the first marker `m` (FF m) at or after `from`, or `len`. */
static size_t find_marker(const uint8_t *j, size_t len, size_t from, uint8_t m)
{
    for (size_t i = from; i + 1 < len; i++)
        if (j[i] == 0xFF && j[i + 1] == m) return i;
    return len;
}

/*
 * A file of several scans that lacks its EOI decodes only when its scans complete the image.
 * Cut between two scans of a progressive file, libjpeg decodes what it has without a warning,
 * blurred (the later scans refine it): that is truncated. Arithmetic-coded files cut anywhere
 * are refused: libjpeg's arithmetic decoder pads missing data without a warning, so a whole
 * last scan cannot be told from a cut one.
 */
static void test_jpeg_truncated_multiscan(void **state)
{
    (void)state;
    img_image src, out, whole;
    make_blocks(&src, 64, 48);
    tjhandle tj = tjInitCompress();
    unsigned char *buf = NULL;
    unsigned long blen = 0;
    assert_int_equal(tjCompress2(tj, src.data, 64, 0, 48, TJPF_RGB, &buf, &blen, TJSAMP_420, 90,
                                 TJFLAG_PROGRESSIVE),
                     0);
    tjDestroy(tj);
    const size_t len = blen, first_sos = find_marker(buf, len, 2, 0xDA);
    assert_true(first_sos < len);
    assert_int_equal(decode(buf, len, &whole, NULL), 0);
    int between = 0;
    for (size_t cut = 0; cut < len; cut++) {
        int rc = decode(buf, cut, &out, NULL);
        if (cut >= len - 2) {
            if (rc != 0) fail_msg("cut at %zu of %zu: %d (%s)", cut, len, rc, base_error_message());
            assert_same_image(&whole, &out);
            img_free(&out);
            continue;
        }
        if (rc != BASE_ERR_FORMAT || (cut > 0 && !strstr(base_error_message(), "truncated")))
            fail_msg("cut at %zu of %zu: %d (%s)", cut, len, rc, base_error_message());
        assert_null(out.data);
        /* Right after a scan's data, before the next scan's tables or header. */
        if (cut > first_sos && buf[cut] == 0xFF && (buf[cut + 1] == 0xC4 || buf[cut + 1] == 0xDA)) {
            between++;
            if (!strstr(base_error_message(), "before the scans that complete the image"))
                fail_msg("cut at %zu of %zu: %s", cut, len, base_error_message());
        }
    }
    assert_true(between >= 5); /* libjpeg's progression has 10 scans for YCbCr */
    img_free(&whole);
    tjFree(buf);
    img_free(&src);

    static const char *arith[] = {"tests/fuzz/corpus/jpeg/arithmetic-64x48.jpg",
                                  "tests/fuzz/corpus/jpeg/arithmetic-progressive-64x48.jpg"};
    for (size_t f = 0; f < sizeof arith / sizeof arith[0]; f++) {
        char *a = NULL;
        size_t n = 0;
        if (base_file_read(arith[f], 1 << 20, &a, &n) != 0) {
            printf("  %s: %s (skipped outside the repository root)\n", arith[f],
                   base_error_message());
            continue;
        }
        assert_int_equal(decode((const uint8_t *)a, n, &out, NULL), 0);
        img_free(&out);
        assert_int_equal(decode((const uint8_t *)a, n - 2, &out, NULL), BASE_ERR_FORMAT);
        assert_non_null(strstr(base_error_message(), "truncated"));
        free(a);
    }
}

/* The offset of the last marker `m` (FF m) in `j`, or `len`. */
static size_t find_last_marker(const uint8_t *j, size_t len, uint8_t m)
{
    for (size_t i = len - 1; i-- > 0;)
        if (j[i] == 0xFF && j[i + 1] == m) return i;
    return len;
}

/* `len` bytes of `j` with the `n` bytes of `extra` inserted at `at`, in a new buffer. */
static uint8_t *insert_bytes(const uint8_t *j, size_t len, size_t at, const void *extra, size_t n)
{
    uint8_t *out = malloc(len + n);
    assert_non_null(out);
    memcpy(out, j, at);
    memcpy(out + at, extra, n);
    memcpy(out + at + n, j + at, len - at);
    return out;
}

/*
 * A recoverable warning, then truncation. Bytes before a marker are skipped by libjpeg with a
 * warning ("Corrupt JPEG data: 32 extraneous bytes before marker 0xda") and the image decodes
 * all the same; but libjpeg reports only its first warning, so the same file cut later inside
 * its scan data must still be refused as truncated, not decoded with a grey lower part.
 * Baseline with the bytes before its scan header; progressive with them after its first scan's
 * data, so that the warning comes in the middle of the decode. A file with such a warning that
 * lacks only its EOI is refused too: the decode that tells a whole last scan from a cut one
 * stops at the earlier warning.
 */
static void test_jpeg_truncated_after_warning(void **state)
{
    (void)state;
    /* More bytes than libjpeg's Huffman decoder reads ahead of a scan's end (it swallows a
     * few without a warning). */
    uint8_t extraneous[32];
    for (size_t i = 0; i < sizeof extraneous; i++)
        extraneous[i] = (uint8_t)(0x11 * (i % 15)); /* no FF */
    for (int progressive = 0; progressive < 2; progressive++) {
        img_image src, whole, damaged, out;
        make_blocks(&src, 128, 96);
        tjhandle tj = tjInitCompress();
        unsigned char *buf = NULL;
        unsigned long blen = 0;
        assert_int_equal(tjCompress2(tj, src.data, 128, 0, 96, TJPF_RGB, &buf, &blen, TJSAMP_420,
                                     90, progressive ? TJFLAG_PROGRESSIVE : 0),
                         0);
        tjDestroy(tj);
        const size_t len = blen, first_sos = find_marker(buf, len, 2, 0xDA);
        assert_true(first_sos < len);
        /* Baseline: before the scan header. Progressive: before the marker (DHT or SOS) that
         * follows the first scan's data. */
        size_t at = first_sos;
        if (progressive) {
            const size_t dht = find_marker(buf, len, first_sos + 2, 0xC4),
                         sos = find_marker(buf, len, first_sos + 2, 0xDA);
            at = dht < sos ? dht : sos;
            assert_true(at < len);
        }
        uint8_t *bad = insert_bytes(buf, len, at, extraneous, sizeof extraneous);
        const size_t bad_len = len + sizeof extraneous;
        /* The damaged file decodes, to the same pixels as the undamaged one. */
        assert_int_equal(decode(buf, len, &whole, NULL), 0);
        if (decode(bad, bad_len, &damaged, NULL) != 0)
            fail_msg("damaged: %s", base_error_message());
        assert_same_image(&whole, &damaged);
        /* Every cut after the warning's marker: inside scan data (the scan that follows the
         * inserted bytes, and for progressive the later ones), inside later segments, right
         * before the EOI. */
        const size_t from = at + sizeof extraneous + 2;
        const size_t scan = find_marker(bad, bad_len, from - 2, 0xDA);
        int in_scan = 0;
        for (size_t cut = from; cut < bad_len; cut++) {
            int rc = decode(bad, cut, &out, NULL);
            if (rc == 0 && cut >= bad_len - 2) { /* lacking only the EOI, or its second byte */
                assert_same_image(&whole, &out);
                img_free(&out);
                continue;
            }
            if (rc != BASE_ERR_FORMAT || !strstr(base_error_message(), "truncated"))
                fail_msg("%s, cut at %zu of %zu: %d (%s)", progressive ? "progressive" : "baseline",
                         cut, bad_len, rc, rc ? base_error_message() : "decoded");
            assert_null(out.data);
            in_scan += cut > scan + 14 && cut < bad_len - 2;
        }
        printf("  %s: %zu bytes, %d cuts inside scan data refused\n",
               progressive ? "progressive" : "baseline", bad_len, in_scan);
        assert_true(in_scan > 200);
        /* Cut inside the image data after the warning and closed with an EOI (a writer that
         * stopped early and closed the file, a transfer that lost its middle): refused, or,
         * where the cut took only bits the decoder never needs, the whole file's pixels. */
        int closed_refused = 0;
        uint8_t *closed = malloc(bad_len);
        assert_non_null(closed);
        for (size_t cut = scan + 14; cut < bad_len - 2; cut++) {
            memcpy(closed, bad, cut);
            closed[cut] = 0xFF, closed[cut + 1] = 0xD9;
            int rc = decode(closed, cut + 2, &out, NULL);
            if (rc == 0) {
                int mx;
                mean_abs_diff(&whole, &out, &mx);
                img_free(&out);
                if (mx != 0)
                    fail_msg("%s, cut at %zu of %zu and closed with an EOI: decoded, max "
                             "|difference| %d from the whole file",
                             progressive ? "progressive" : "baseline", cut, bad_len, mx);
            } else if (rc != BASE_ERR_FORMAT) {
                fail_msg("%s, cut at %zu of %zu and closed: %d (%s)",
                         progressive ? "progressive" : "baseline", cut, bad_len, rc,
                         base_error_message());
            } else {
                closed_refused++;
            }
        }
        free(closed);
        printf("  %s: %d cuts closed with an EOI refused\n",
               progressive ? "progressive" : "baseline", closed_refused);
        assert_true(closed_refused > 200);
        /* Lacking only its EOI, after the warning: its image data is whole, and so is the
         * image (it was refused before libjpeg's own API saw every warning). */
        if (decode(bad, bad_len - 2, &out, NULL) != 0)
            fail_msg("%s, lacking only its EOI after a warning: %s",
                     progressive ? "progressive" : "baseline", base_error_message());
        assert_same_image(&whole, &out);
        img_free(&out);
        /* A fatal error after the warning (a later scan naming a component the frame does not
         * have) is refused too, though TurboJPEG reports it as a warning. */
        if (progressive) {
            const size_t last = find_last_marker(bad, bad_len, 0xDA);
            assert_true(last > at);
            bad[last + 5] = 0x77; /* the scan's first component selector */
            if (decode(bad, bad_len, &out, NULL) != BASE_ERR_FORMAT ||
                !strstr(base_error_message(), "Invalid component ID 119"))
                fail_msg("a bad component after the warning: %s",
                         out.data ? "decoded" : base_error_message());
        }
        free(bad);
        img_free(&damaged);
        img_free(&whole);
        tjFree(buf);
        img_free(&src);
    }
}

/*
 * CMYK JPEGs to RGB as the reference, TensorFlow's decode_jpeg, converts them, to the bit: the
 * CMYK samples libjpeg decodes, inverted (Adobe's APP14 marker present, as Photoshop and
 * libjpeg write CMYK and YCCK) R = C * K / 255, or not (no Adobe marker) R = (255 - C) *
 * (255 - K) / 255, both truncated. Print workflows send both.
 */
static void test_jpeg_cmyk_as_reference(void **state)
{
    (void)state;
    enum { W = 32, H = 16 };
    uint8_t cmyk[W * H * 4], raw[W * H * 4];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *p = cmyk + 4 * (y * W + x);
            p[0] = (uint8_t)(x * 8), p[1] = (uint8_t)(y * 16), p[2] = (uint8_t)((x + y) * 5);
            p[3] = (uint8_t)(255 - x * 3 - y);
        }
    tjhandle tj = tjInitCompress(), td = tjInitDecompress();
    unsigned char *buf = NULL;
    unsigned long blen = 0;
    assert_int_equal(tjCompress2(tj, cmyk, W, 0, H, TJPF_CMYK, &buf, &blen, TJSAMP_444, 95, 0), 0);
    for (int adobe = 1; adobe >= 0; adobe--) {
        size_t len = blen;
        size_t app14 = find_marker(buf, len, 2, 0xEE);
        assert_true(app14 < len);
        if (!adobe) { /* drop the APP14 segment: libjpeg then reads the components as CMYK */
            size_t seg = 2 + ((size_t)buf[app14 + 2] << 8 | buf[app14 + 3]);
            memmove(buf + app14, buf + app14 + seg, len - app14 - seg);
            len -= seg;
            assert_int_equal(find_marker(buf, len, 2, 0xEE), len);
        }
        assert_int_equal(tjDecompress2(td, buf, len, raw, W, 0, H, TJPF_CMYK, 0), 0);
        img_image out;
        assert_int_equal(decode(buf, len, &out, NULL), 0);
        for (int i = 0; i < W * H; i++) {
            const int c = raw[4 * i], m = raw[4 * i + 1], y = raw[4 * i + 2], k = raw[4 * i + 3];
            const int want[3] = {adobe ? c * k / 255 : (255 - c) * (255 - k) / 255,
                                 adobe ? m * k / 255 : (255 - m) * (255 - k) / 255,
                                 adobe ? y * k / 255 : (255 - y) * (255 - k) / 255};
            for (int ch = 0; ch < 3; ch++)
                if (out.data[3 * i + ch] != want[ch])
                    fail_msg("%s: pixel %d channel %d is %d, want %d (CMYK %d %d %d %d)",
                             adobe ? "Adobe" : "no Adobe marker", i, ch, out.data[3 * i + ch],
                             want[ch], c, m, y, k);
        }
        img_free(&out);
    }
    tjFree(buf);
    tjDestroy(tj);
    tjDestroy(td);
}

/* The seed file `name` of tests/fuzz/corpus/jpeg decoded, or 0 with a note when it cannot be
 * read (outside the repository root). */
static int decode_seed(const char *name, img_image *out)
{
    char path[256], *data = NULL;
    size_t n = 0;
    snprintf(path, sizeof path, "tests/fuzz/corpus/jpeg/%s", name);
    if (base_file_read(path, 1 << 20, &data, &n) != 0) {
        printf("  %s: %s (skipped outside the repository root)\n", path, base_error_message());
        return 0;
    }
    int rc = decode((const uint8_t *)data, n, out, NULL);
    if (rc) fail_msg("%s: %s", path, base_error_message());
    free(data);
    return 1;
}

/*
 * Inputs that real users send, checked against what the reference (TensorFlow's decoders)
 * gives: a JPEG with an ICC profile (ignored: the same pixels as without it); the fuzz seeds
 * without EOI (the same pixels as the complete files); PNG transparency (palette tRNS, RGB tRNS)
 * dropped, the stored colour kept; WebP lossless with alpha written exactly, the colour under
 * transparent pixels kept; broken ancillary PNG chunks (a bad CRC, a bad keyword, gAMA 0) that
 * libpng only warns about decode.
 */
static void test_inputs_users_send(void **state)
{
    (void)state;
    img_image a = {0}, b = {0};
    static const char *same[][2] = {{"baseline-420.jpg", "icc-profile.jpg"},
                                    {"baseline-420.jpg", "no-eoi-baseline.jpg"},
                                    {"progressive.jpg", "no-eoi-progressive.jpg"}};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        if (!decode_seed(same[i][0], &a) || !decode_seed(same[i][1], &b)) break;
        assert_same_image(&a, &b);
        img_free(&a);
        img_free(&b);
    }
    if (decode_seed("cmyk-no-adobe.jpg", &a)) img_free(&a);

    /* PNG: palette with tRNS (entry 0 fully transparent) and RGB with a tRNS colour. */
    struct spng_plte plte = {.n_entries = 4};
    for (int i = 0; i < 4; i++)
        plte.entries[i] = (struct spng_plte_entry){(uint8_t)(i * 60), 10, 200, 255};
    const uint8_t idx[8] = {0, 1, 2, 3, 3, 2, 1, 0};
    for (int rgb = 0; rgb <= 1; rgb++) {
        uint8_t raw[8 * 3];
        for (int p = 0; p < 8; p++)
            memcpy(raw + 3 * p, &plte.entries[idx[p]], 3);
        spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
        struct spng_ihdr ihdr = {.width = 4,
                                 .height = 2,
                                 .bit_depth = 8,
                                 .color_type =
                                     rgb ? SPNG_COLOR_TYPE_TRUECOLOR : SPNG_COLOR_TYPE_INDEXED};
        struct spng_trns trns = {.n_type3_entries = 2, .type3_alpha = {0, 128}};
        if (rgb) trns = (struct spng_trns){.red = 0, .green = 10, .blue = 200};
        assert_int_equal(spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1), 0);
        assert_int_equal(spng_set_ihdr(ctx, &ihdr), 0);
        if (!rgb) assert_int_equal(spng_set_plte(ctx, &plte), 0);
        assert_int_equal(spng_set_trns(ctx, &trns), 0);
        assert_int_equal(spng_encode_image(ctx, rgb ? (const void *)raw : (const void *)idx,
                                           rgb ? sizeof raw : sizeof idx, SPNG_FMT_RAW,
                                           SPNG_ENCODE_FINALIZE),
                         0);
        size_t len = 0;
        int err = 0;
        uint8_t *png = spng_get_png_buffer(ctx, &len, &err);
        spng_ctx_free(ctx);
        assert_non_null(png);
        assert_int_equal(decode(png, len, &a, NULL), 0);
        assert_memory_equal(a.data, raw, sizeof raw);
        img_free(&a);

        /* Ancillary chunks that libpng warns about and skips, inserted after IHDR. */
        static const struct {
            const char type[5];
            const char *data;
            uint32_t len;
            int bad_crc;
        } chunks[] = {{"tEXt", "Comment\0hello", 13, 1},
                      {"tEXt", " bad key\0x", 10, 0},
                      {"gAMA", "\0\0\0\0", 4, 0},
                      {"iCCP", "ICC\0\0garbage", 12, 0}};
        for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
            uint8_t *bad = malloc(len + 12 + chunks[c].len);
            memcpy(bad, png, 33);
            put_be32(bad + 33, chunks[c].len);
            memcpy(bad + 37, chunks[c].type, 4);
            memcpy(bad + 41, chunks[c].data, chunks[c].len);
            put_be32(bad + 41 + chunks[c].len,
                     crc32_png(bad + 37, 4 + chunks[c].len) ^ (uint32_t)chunks[c].bad_crc);
            memcpy(bad + 45 + chunks[c].len, png + 33, len - 33);
            int rc = decode(bad, len + 12 + chunks[c].len, &a, NULL);
            if (rc) fail_msg("%s chunk %zu: %s", chunks[c].type, c, base_error_message());
            assert_memory_equal(a.data, raw, sizeof raw);
            img_free(&a);
            free(bad);
        }
        free(png);
    }

    /* A small PNG with Photoshop's XMP packet in a compressed iTXt chunk: 30 KB of text in a
     * file of a few hundred bytes decodes. Metadata that inflates past 8 MB (libpng's bound)
     * is refused as over a limit, not held in memory. */
    for (int bomb = 0; bomb <= 1; bomb++) {
        const size_t text_len = bomb ? (size_t)9 << 20 : 30000;
        char *xmp = malloc(text_len + 1);
        static const char line[] = "<rdf:Description xmp:CreatorTool=\"Adobe Photoshop\"/>\n";
        for (size_t i = 0; i < text_len; i++)
            xmp[i] = line[i % (sizeof line - 1)];
        xmp[text_len] = 0;
        img_image src;
        make_gradient(&src, 40, 30);
        spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
        struct spng_ihdr ihdr = {.width = 40, .height = 30, .bit_depth = 8, .color_type = 2};
        struct spng_text text = {.keyword = "XML:com.adobe.xmp",
                                 .type = SPNG_ITXT,
                                 .compression_flag = 1,
                                 .length = text_len,
                                 .text = xmp,
                                 .language_tag = "",
                                 .translated_keyword = ""};
        assert_int_equal(spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1), 0);
        assert_int_equal(spng_set_ihdr(ctx, &ihdr), 0);
        assert_int_equal(spng_set_text(ctx, &text, 1), 0);
        assert_int_equal(
            spng_encode_image(ctx, src.data, 40 * 30 * 3, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE), 0);
        size_t len = 0;
        int err = 0;
        uint8_t *png = spng_get_png_buffer(ctx, &len, &err);
        spng_ctx_free(ctx);
        assert_non_null(png);
        int rc = decode(png, len, &a, NULL);
        if (!bomb) {
            if (rc)
                fail_msg("%zu-byte PNG with %zu bytes of XMP: %s", len, text_len,
                         base_error_message());
            assert_same_image(&src, &a);
            img_free(&a);
        } else {
            if (rc != BASE_ERR_LIMIT)
                fail_msg("%zu-byte PNG with %zu bytes of XMP: %d (%s)", len, text_len, rc,
                         base_error_message());
        }
        free(png);
        free(xmp);
        img_free(&src);
    }

    /* WebP lossless with alpha, written exactly (cwebp -exact): half the pixels transparent. */
    uint8_t rgba[16 * 16 * 4];
    for (int i = 0; i < 256; i++) {
        rgba[4 * i] = (uint8_t)i, rgba[4 * i + 1] = 50, rgba[4 * i + 2] = (uint8_t)(255 - i);
        rgba[4 * i + 3] = i < 128 ? 0 : 255;
    }
    WebPConfig config;
    WebPPicture pic;
    WebPMemoryWriter writer;
    assert_true(WebPConfigInit(&config) && WebPPictureInit(&pic));
    config.lossless = 1;
    config.exact = 1;
    pic.use_argb = 1, pic.width = 16, pic.height = 16;
    assert_true(WebPPictureImportRGBA(&pic, rgba, 16 * 4));
    WebPMemoryWriterInit(&writer);
    pic.writer = WebPMemoryWrite, pic.custom_ptr = &writer;
    assert_true(WebPEncode(&config, &pic));
    assert_int_equal(decode(writer.mem, writer.size, &a, NULL), 0);
    for (int i = 0; i < 256; i++)
        assert_memory_equal(a.data + 3 * i, rgba + 4 * i, 3);
    img_free(&a);
    WebPPictureFree(&pic);
    WebPMemoryWriterClear(&writer);
}

static void test_jpeg_corrupt(void **state)
{
    (void)state;
    img_image src, out;
    make_gradient(&src, 64, 48);
    uint8_t *jpg;
    size_t len;
    encode_jpeg(&src, 90, &jpg, &len);
    uint8_t *bad = malloc(len);
    size_t sof = find_sof(jpg, len);

    /* SOF with 12-bit precision (TurboJPEG decodes 8-bit only). */
    memcpy(bad, jpg, len);
    bad[sof + 4] = 12;
    expect_error(bad, len, NULL, BASE_ERR_FORMAT);
    /* SOF declaring 7 components. */
    memcpy(bad, jpg, len);
    bad[sof + 9] = 7;
    expect_error(bad, len, NULL, BASE_ERR_FORMAT);
    /* A segment length running past the end of the file. */
    memcpy(bad, jpg, len);
    bad[sof + 2] = 0xFF;
    expect_error(bad, len, NULL, BASE_ERR_FORMAT);
    /* Zero height and zero width. */
    memcpy(bad, jpg, len);
    bad[sof + 5] = 0, bad[sof + 6] = 0;
    expect_error(bad, len, NULL, BASE_ERR_FORMAT);
    memcpy(bad, jpg, len);
    bad[sof + 7] = 0, bad[sof + 8] = 0;
    expect_error(bad, len, NULL, BASE_ERR_FORMAT);
    /* No SOI marker after the magic check passes: FF D8 FF then garbage. */
    uint8_t junk[64] = {0xFF, 0xD8, 0xFF, 0x12};
    expect_error(junk, sizeof junk, NULL, BASE_ERR_FORMAT);

    /* Random damage in the entropy-coded data: an error or a best-effort image, no crash. */
    srand(1);
    for (int t = 0; t < 300; t++) {
        memcpy(bad, jpg, len);
        for (int k = 0; k < 1 + t % 8; k++)
            bad[rand() % len] = (uint8_t)rand();
        int rc = decode(bad, len, &out, NULL);
        if (rc == 0) {
            assert_int_equal(out.channels, 3);
            img_free(&out);
        } else {
            assert_true(rc == BASE_ERR_FORMAT || rc == BASE_ERR_LIMIT ||
                        rc == BASE_ERR_UNSUPPORTED);
            assert_null(out.data);
        }
    }
    free(bad);
    free(jpg);
    img_free(&src);
}

static void test_jpeg_huge_header(void **state)
{
    (void)state;
    img_image src;
    make_gradient(&src, 16, 16);
    uint8_t *jpg;
    size_t len;
    encode_jpeg(&src, 80, &jpg, &len);
    size_t sof = find_sof(jpg, len);
    /* 65000 x 65000: over the 20000 side limit, refused before any pixel is allocated. */
    jpg[sof + 5] = 65000 >> 8, jpg[sof + 6] = 65000 & 255;
    jpg[sof + 7] = 65000 >> 8, jpg[sof + 8] = 65000 & 255;
    expect_error(jpg, len, NULL, BASE_ERR_LIMIT);
    assert_non_null(strstr(base_error_message(), "65000x65000"));
    /* 10000 x 10000 is within the side limit but 100 MP is over the pixel limit. */
    jpg[sof + 5] = 10000 >> 8, jpg[sof + 6] = 10000 & 255;
    jpg[sof + 7] = 10000 >> 8, jpg[sof + 8] = 10000 & 255;
    expect_error(jpg, len, NULL, BASE_ERR_LIMIT);
    assert_non_null(strstr(base_error_message(), "pixels"));
    /* Raised limits let the header through, and the missing data is then a format error. */
    img_decode_options opts = {.limits = {.max_pixels = 200000000, .max_dimension = 65535},
                               .min_side = 1000};
    jpg[sof + 5] = 4000 >> 8, jpg[sof + 6] = 4000 & 255;
    jpg[sof + 7] = 4000 >> 8, jpg[sof + 8] = 4000 & 255;
    expect_error(jpg, len, &opts, BASE_ERR_FORMAT);
    free(jpg);
    img_free(&src);
}

static void test_limits(void **state)
{
    (void)state;
    img_image src, out;
    make_gradient(&src, 64, 48);
    uint8_t *jpg, *png;
    size_t jlen, plen;
    encode_jpeg(&src, 90, &jpg, &jlen);
    assert_int_equal(img_encode_png(&src, &png, &plen), 0);
    uint8_t *webp;
    size_t wlen = WebPEncodeLosslessRGB(src.data, 64, 48, 64 * 3, &webp);
    assert_true(wlen > 0);
    const struct {
        const uint8_t *d;
        size_t n;
    } files[] = {{jpg, jlen}, {png, plen}, {webp, wlen}};
    for (int i = 0; i < 3; i++) {
        img_decode_options o = {.limits = {.max_bytes = files[i].n - 1}};
        expect_error(files[i].d, files[i].n, &o, BASE_ERR_LIMIT);
        o = (img_decode_options){.limits = {.max_pixels = 64 * 48 - 1}};
        expect_error(files[i].d, files[i].n, &o, BASE_ERR_LIMIT);
        o = (img_decode_options){.limits = {.max_dimension = 63}};
        expect_error(files[i].d, files[i].n, &o, BASE_ERR_LIMIT);
        o = (img_decode_options){
            .limits = {.max_bytes = files[i].n, .max_pixels = 64 * 48, .max_dimension = 64}};
        assert_int_equal(img_decode(files[i].d, files[i].n, &o, &out, NULL), 0);
        img_free(&out);
    }
    WebPFree(webp);
    free(png);
    free(jpg);
    img_free(&src);
}

/* ---- PNG ---- */

static void test_png_round_trip(void **state)
{
    (void)state;
    img_image src, out;
    make_blocks(&src, 37, 21);
    uint8_t *png;
    size_t len;
    assert_int_equal(img_encode_png(&src, &png, &len), 0);
    img_decode_info info;
    assert_int_equal(decode(png, len, &out, &info), 0);
    assert_int_equal(info.format, IMG_FORMAT_PNG);
    assert_same_image(&src, &out);
    img_free(&out);
    free(png);
    img_free(&src);
}

/* Packs samples of `depth` bits, MSB first, rows byte-aligned (or 16-bit big-endian). */
static size_t pack(const uint16_t *samples, int w, int h, int spp, int depth, uint8_t *out)
{
    size_t row = ((size_t)w * spp * depth + 7) / 8;
    memset(out, 0, row * h);
    for (int y = 0; y < h; y++)
        for (int i = 0; i < w * spp; i++) {
            uint16_t v = samples[y * w * spp + i];
            uint8_t *r = out + y * row;
            if (depth == 16) {
                r[2 * i] = (uint8_t)(v >> 8), r[2 * i + 1] = (uint8_t)v;
            } else if (depth == 8) {
                r[i] = (uint8_t)v;
            } else {
                size_t bit = (size_t)i * depth;
                r[bit / 8] |= (uint8_t)(v << (8 - depth - bit % 8));
            }
        }
    return row * h;
}

static void test_png_colour_types(void **state)
{
    (void)state;
    enum { W = 13, H = 5 };
    uint16_t samples[W * H * 4];
    uint8_t raw[W * H * 8], want[W * H * 3];
    const struct {
        uint8_t type, depth;
        int spp, interlace;
    } cases[] = {
        {SPNG_COLOR_TYPE_GRAYSCALE, 1, 1, 0},        {SPNG_COLOR_TYPE_GRAYSCALE, 2, 1, 0},
        {SPNG_COLOR_TYPE_GRAYSCALE, 4, 1, 0},        {SPNG_COLOR_TYPE_GRAYSCALE, 8, 1, 0},
        {SPNG_COLOR_TYPE_GRAYSCALE, 16, 1, 0},       {SPNG_COLOR_TYPE_GRAYSCALE_ALPHA, 8, 2, 0},
        {SPNG_COLOR_TYPE_GRAYSCALE_ALPHA, 16, 2, 0}, {SPNG_COLOR_TYPE_TRUECOLOR, 8, 3, 0},
        {SPNG_COLOR_TYPE_TRUECOLOR, 16, 3, 0},       {SPNG_COLOR_TYPE_TRUECOLOR_ALPHA, 8, 4, 0},
        {SPNG_COLOR_TYPE_TRUECOLOR_ALPHA, 16, 4, 0}, {SPNG_COLOR_TYPE_INDEXED, 1, 1, 0},
        {SPNG_COLOR_TYPE_INDEXED, 2, 1, 0},          {SPNG_COLOR_TYPE_INDEXED, 4, 1, 0},
        {SPNG_COLOR_TYPE_INDEXED, 8, 1, 0},          {SPNG_COLOR_TYPE_TRUECOLOR, 8, 3, 1},
        {SPNG_COLOR_TYPE_INDEXED, 4, 1, 1},          {SPNG_COLOR_TYPE_GRAYSCALE_ALPHA, 16, 2, 1},
    };
    struct spng_plte plte = {.n_entries = 256};
    for (int i = 0; i < 256; i++)
        plte.entries[i] =
            (struct spng_plte_entry){(uint8_t)i, (uint8_t)(255 - i), (uint8_t)(i * 7), 255};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int depth = cases[c].depth, spp = cases[c].spp, type = cases[c].type;
        const uint32_t maxv = (1u << depth) - 1;
        for (int p = 0; p < W * H; p++) {
            for (int s = 0; s < spp; s++) {
                /* Distinct values per pixel and sample; 16-bit ones with a busy low byte. */
                uint32_t v = (uint32_t)(p * 37 + s * 101 + 11) % (maxv + 1);
                if (depth == 16) v = (v * 2654435761u) & 0xFFFF;
                samples[p * spp + s] = (uint16_t)v;
            }
            const uint16_t *sp = samples + p * spp;
            uint8_t *wp = want + 3 * p;
            /* What the decoder must give: low depths scaled to 0..255 (v * 255 / max),
             * 16-bit reduced to the high byte, alpha dropped, palette looked up. */
            if (type == SPNG_COLOR_TYPE_INDEXED) {
                wp[0] = plte.entries[sp[0]].red;
                wp[1] = plte.entries[sp[0]].green;
                wp[2] = plte.entries[sp[0]].blue;
            } else if (type == SPNG_COLOR_TYPE_GRAYSCALE ||
                       type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA) {
                uint8_t g = depth == 16 ? (uint8_t)(sp[0] >> 8) : (uint8_t)(sp[0] * 255 / maxv);
                wp[0] = wp[1] = wp[2] = g;
            } else {
                for (int k = 0; k < 3; k++)
                    wp[k] = depth == 16 ? (uint8_t)(sp[k] >> 8) : (uint8_t)sp[k];
            }
        }
        size_t raw_len = pack(samples, W, H, spp, depth, raw);
        struct spng_plte pl = plte;
        pl.n_entries = 1u << (depth < 8 ? depth : 8);
        uint8_t *png;
        size_t len;
        make_png(W, H, (uint8_t)type, (uint8_t)depth, cases[c].interlace, raw, raw_len,
                 type == SPNG_COLOR_TYPE_INDEXED ? &pl : NULL, NULL, &png, &len);
        img_image out;
        int rc = decode(png, len, &out, NULL);
        if (rc) fail_msg("type %d depth %d: %s", type, depth, base_error_message());
        assert_int_equal(out.width, W);
        assert_int_equal(out.height, H);
        assert_int_equal(out.channels, 3);
        if (memcmp(out.data, want, sizeof want) != 0) {
            for (int p = 0; p < W * H * 3; p++)
                if (out.data[p] != want[p])
                    fail_msg("type %d depth %d interlace %d: byte %d is %d, want %d", type, depth,
                             cases[c].interlace, p, out.data[p], want[p]);
        }
        img_free(&out);
        free(png);
    }
}

static void test_png_bad(void **state)
{
    (void)state;
    uint8_t hdr[64];
    /* An IHDR claiming 100000 x 100000: refused from the header, before allocating 30 GB
     * (the file has no IDAT at all: reaching the pixel data would be a format error). */
    size_t n = make_png_header_only(hdr, 100000, 100000);
    expect_error(hdr, n, NULL, BASE_ERR_LIMIT);
    /* Same with the side limit raised: the pixel limit catches it. */
    img_decode_options big = {.limits = {.max_dimension = 1000000}};
    expect_error(hdr, n, &big, BASE_ERR_LIMIT);
    /* 2^31-1 wide: spng's own bound. */
    n = make_png_header_only(hdr, 0x7FFFFFFF, 1);
    expect_error(hdr, n, &big, BASE_ERR_LIMIT);
    /* 0 x 0, 0 x 5, 5 x 0. */
    n = make_png_header_only(hdr, 0, 0);
    expect_error(hdr, n, NULL, BASE_ERR_FORMAT);
    n = make_png_header_only(hdr, 0, 5);
    expect_error(hdr, n, NULL, BASE_ERR_FORMAT);
    n = make_png_header_only(hdr, 5, 0);
    expect_error(hdr, n, NULL, BASE_ERR_FORMAT);
    /* A valid header and no image data. */
    n = make_png_header_only(hdr, 5, 5);
    expect_error(hdr, n, NULL, BASE_ERR_FORMAT);

    img_image src, out;
    make_gradient(&src, 40, 30);
    uint8_t *png;
    size_t len;
    assert_int_equal(img_encode_png(&src, &png, &len), 0);
    /* Every truncation. */
    for (size_t cut = 0; cut < len; cut++) {
        int rc = decode(png, cut, &out, NULL);
        /* Cut in the last IDAT's CRC or in IEND, all pixel data is there (zlib's own
         * checksum passed), and the image may decode. */
        if (rc == 0 && cut >= len - 16) {
            assert_same_image(&src, &out);
            img_free(&out);
            continue;
        }
        if (rc != BASE_ERR_FORMAT)
            fail_msg("cut at %zu of %zu: %d (%s)", cut, len, rc, base_error_message());
    }
    /* A damaged critical chunk fails its CRC. */
    uint8_t *bad = malloc(len);
    memcpy(bad, png, len);
    bad[19] ^= 1; /* IHDR width 40 -> 41 */
    expect_error(bad, len, NULL, BASE_ERR_FORMAT);
    memcpy(bad, png, len);
    bad[len - 20] ^= 0x55; /* inside the IDAT */
    expect_error(bad, len, NULL, BASE_ERR_FORMAT);
    /* Random damage: errors or images, no crash. */
    srand(2);
    for (int t = 0; t < 300; t++) {
        memcpy(bad, png, len);
        for (int k = 0; k < 1 + t % 4; k++)
            bad[8 + rand() % (len - 8)] = (uint8_t)rand();
        int rc = decode(bad, len, &out, NULL);
        if (rc == 0)
            img_free(&out);
        else
            assert_true(rc == BASE_ERR_FORMAT || rc == BASE_ERR_LIMIT);
    }
    free(bad);
    free(png);
    img_free(&src);
}

/* ---- WebP ---- */

static void test_webp(void **state)
{
    (void)state;
    img_image src, out;
    make_gradient(&src, 50, 34);
    /* Lossless: exact. */
    uint8_t *webp;
    size_t len = WebPEncodeLosslessRGB(src.data, 50, 34, 50 * 3, &webp);
    assert_true(len > 0);
    img_decode_info info;
    assert_int_equal(decode(webp, len, &out, &info), 0);
    assert_int_equal(info.format, IMG_FORMAT_WEBP);
    assert_same_image(&src, &out);
    img_free(&out);
    /* Truncations and damage. */
    for (size_t cut = 0; cut < len; cut++) {
        int rc = decode(webp, cut, &out, NULL);
        if (rc != BASE_ERR_FORMAT)
            fail_msg("cut at %zu of %zu: %d (%s)", cut, len, rc, base_error_message());
    }
    uint8_t *bad = malloc(len);
    srand(3);
    for (int t = 0; t < 300; t++) {
        memcpy(bad, webp, len);
        for (int k = 0; k < 1 + t % 4; k++)
            bad[12 + rand() % (len - 12)] = (uint8_t)rand();
        int rc = decode(bad, len, &out, NULL);
        if (rc == 0)
            img_free(&out);
        else
            assert_true(rc == BASE_ERR_FORMAT || rc == BASE_ERR_LIMIT ||
                        rc == BASE_ERR_UNSUPPORTED);
    }
    free(bad);
    WebPFree(webp);

    /* Lossy: close. With alpha: the colour is kept, alpha dropped. */
    len = WebPEncodeRGB(src.data, 50, 34, 50 * 3, 95, &webp);
    assert_int_equal(decode(webp, len, &out, NULL), 0);
    assert_true(mean_abs_diff(&src, &out, NULL) < 3.0);
    img_free(&out);
    WebPFree(webp);
    uint8_t rgba[50 * 34 * 4];
    for (int i = 0; i < 50 * 34; i++) {
        memcpy(rgba + 4 * i, src.data + 3 * i, 3);
        rgba[4 * i + 3] = (uint8_t)(64 + i % 128);
    }
    len = WebPEncodeLosslessRGBA(rgba, 50, 34, 50 * 4, &webp);
    assert_int_equal(decode(webp, len, &out, NULL), 0);
    assert_same_image(&src, &out);
    img_free(&out);
    WebPFree(webp);
    img_free(&src);
}

/* An extended WebP: VP8X (flags), the image chunk of `simple` (a plain RIFF WebP), then
 * extra chunks. */
static size_t make_webp_extended(const uint8_t *simple, size_t simple_len, uint8_t flags, int w,
                                 int h, const uint8_t *extra, size_t extra_len, uint8_t *out)
{
    size_t n = 12;
    memcpy(out + n, "VP8X", 4);
    put_le32(out + n + 4, 10);
    memset(out + n + 8, 0, 10);
    out[n + 8] = flags;
    out[n + 12] = (uint8_t)(w - 1), out[n + 13] = (uint8_t)((w - 1) >> 8), out[n + 14] = 0;
    out[n + 15] = (uint8_t)(h - 1), out[n + 16] = (uint8_t)((h - 1) >> 8), out[n + 17] = 0;
    n += 18;
    memcpy(out + n, simple + 12, simple_len - 12);
    n += simple_len - 12;
    if (extra_len) memcpy(out + n, extra, extra_len);
    n += extra_len;
    memcpy(out, "RIFF", 4);
    put_le32(out + 4, (uint32_t)(n - 8));
    memcpy(out + 8, "WEBP", 4);
    return n;
}

/* ---- EXIF ---- */

/* A TIFF structure with IFD0 = {Make (ASCII, out of line), Orientation, XResolution}. */
static size_t make_tiff(int orientation, int big_endian, uint8_t *t)
{
    int be = big_endian;
#define PUT16(p, v)                                                                                \
    (be ? ((p)[0] = (uint8_t)((v) >> 8), (p)[1] = (uint8_t)(v))                                    \
        : ((p)[0] = (uint8_t)(v), (p)[1] = (uint8_t)((v) >> 8)))
#define PUT32(p, v) (be ? put_be32((p), (v)) : put_le32((p), (v)))
    memcpy(t, be ? "MM\0*" : "II*\0", 4);
    PUT32(t + 4, 8);
    PUT16(t + 8, 3);
    uint8_t *e = t + 10;
    PUT16(e, 0x010F), PUT16(e + 2, 2), PUT32(e + 4, 6), PUT32(e + 8, 10 + 3 * 12 + 4);
    e += 12;
    PUT16(e, 0x0112), PUT16(e + 2, 3), PUT32(e + 4, 1), PUT32(e + 8, 0);
    PUT16(e + 8, orientation);
    e += 12;
    PUT16(e, 0x011A), PUT16(e + 2, 5), PUT32(e + 4, 1), PUT32(e + 8, 0);
    e += 12;
    PUT32(e, 0); /* no IFD1 */
    memcpy(e + 4, "Vultu", 6);
#undef PUT16
#undef PUT32
    return (size_t)(e + 4 + 6 - t);
}

/* Inserts an APP1 Exif segment after the SOI (and after APP0 when `after_app0`). */
static size_t insert_exif(const uint8_t *jpg, size_t len, int orientation, int big_endian,
                          int after_app0, uint8_t *out)
{
    uint8_t tiff[128];
    size_t tlen = make_tiff(orientation, big_endian, tiff);
    size_t at = 2;
    if (after_app0 && jpg[2] == 0xFF && jpg[3] == 0xE0) at = 4 + ((size_t)jpg[4] << 8 | jpg[5]);
    memcpy(out, jpg, at);
    size_t n = at;
    out[n++] = 0xFF, out[n++] = 0xE1;
    size_t seg = 2 + 6 + tlen;
    out[n++] = (uint8_t)(seg >> 8), out[n++] = (uint8_t)seg;
    memcpy(out + n, "Exif\0\0", 6);
    n += 6;
    memcpy(out + n, tiff, tlen);
    n += tlen;
    memcpy(out + n, jpg + at, len - at);
    return n + len - at;
}

/*
 * The EXIF standard describes orientation by where the stored image's 0th row and 0th column
 * appear when displayed (1: top, left; 2: top, right; 3: bottom, right; 4: bottom, left;
 * 5: left, top; 6: right, top; 7: right, bottom; 8: left, bottom). Built from that table,
 * independently of the decoder's transform code.
 */
enum side { TOP, BOTTOM, LEFT, RIGHT };
static void expected_upright(const img_image *s, int o, img_image *d)
{
    static const enum side row0[9] = {0, TOP, TOP, BOTTOM, BOTTOM, LEFT, RIGHT, RIGHT, LEFT};
    static const enum side col0[9] = {0, LEFT, RIGHT, RIGHT, LEFT, TOP, TOP, BOTTOM, BOTTOM};
    int swap = row0[o] == LEFT || row0[o] == RIGHT;
    int W = swap ? s->height : s->width, H = swap ? s->width : s->height;
    assert_int_equal(img_alloc(d, W, H, s->channels), 0);
    for (int sy = 0; sy < s->height; sy++)
        for (int sx = 0; sx < s->width; sx++) {
            int x = 0, y = 0;
            switch (row0[o]) {
            case TOP: y = sy; break;
            case BOTTOM: y = H - 1 - sy; break;
            case LEFT: x = sy; break;
            case RIGHT: x = W - 1 - sy; break;
            }
            switch (col0[o]) {
            case LEFT: x = sx; break;
            case RIGHT: x = W - 1 - sx; break;
            case TOP: y = sx; break;
            case BOTTOM: y = H - 1 - sx; break;
            }
            memcpy(d->data + ((size_t)y * W + x) * s->channels,
                   s->data + ((size_t)sy * s->width + sx) * s->channels, (size_t)s->channels);
        }
}

static void test_exif_orientation_jpeg(void **state)
{
    (void)state;
    img_image pattern;
    make_blocks(&pattern, 48, 32);
    uint8_t *jpg;
    size_t len;
    encode_jpeg(&pattern, 95, &jpg, &len);
    uint8_t *buf = malloc(len + 256);
    for (int o = 1; o <= 8; o++)
        for (int variant = 0; variant < 4; variant++) {
            size_t n = insert_exif(jpg, len, o, variant & 1, variant >> 1, buf);
            assert_int_equal(img_exif_orientation_jpeg(buf, n), o);
            /* As stored (no_exif), then upright. */
            img_image stored, upright, want;
            img_decode_options raw = {.no_exif = 1};
            img_decode_info info;
            assert_int_equal(img_decode(buf, n, &raw, &stored, &info), 0);
            assert_int_equal(info.orientation, 1);
            assert_true(mean_abs_diff(&stored, &pattern, NULL) < 2.0);
            assert_int_equal(decode(buf, n, &upright, &info), 0);
            assert_int_equal(info.orientation, o);
            assert_int_equal(info.orig_width, 48);
            assert_int_equal(info.orig_height, 32);
            expected_upright(&stored, o, &want);
            if (upright.width != want.width || upright.height != want.height)
                fail_msg("orientation %d: %dx%d, want %dx%d", o, upright.width, upright.height,
                         want.width, want.height);
            assert_same_image(&upright, &want);
            img_free(&want);
            img_free(&upright);
            img_free(&stored);
        }
    /* With DCT scaling: scaled, then turned. */
    size_t n = insert_exif(jpg, len, 6, 0, 1, buf);
    img_decode_options half = {.min_side = 16};
    img_image out;
    img_decode_info info;
    assert_int_equal(img_decode(buf, n, &half, &out, &info), 0);
    assert_int_equal(info.scale_denom, 2);
    assert_int_equal(out.width, 16);
    assert_int_equal(out.height, 24);
    img_free(&out);
    free(buf);
    free(jpg);
    img_free(&pattern);
}

static void test_exif_orientation_png_webp(void **state)
{
    (void)state;
    img_image pattern, out, want;
    make_blocks(&pattern, 40, 24);
    uint8_t tiff[128];
    /* PNG eXIf chunk. */
    size_t tlen = make_tiff(8, 1, tiff);
    struct spng_exif exif = {.length = tlen, .data = (char *)tiff};
    uint8_t *png;
    size_t len;
    make_png(40, 24, SPNG_COLOR_TYPE_TRUECOLOR, 8, 0, pattern.data, 40 * 24 * 3, NULL, &exif, &png,
             &len);
    img_decode_info info;
    assert_int_equal(decode(png, len, &out, &info), 0);
    assert_int_equal(info.orientation, 8);
    expected_upright(&pattern, 8, &want);
    assert_same_image(&out, &want);
    img_free(&out);
    img_free(&want);
    img_decode_options raw = {.no_exif = 1};
    assert_int_equal(img_decode(png, len, &raw, &out, &info), 0);
    assert_int_equal(info.orientation, 1);
    assert_same_image(&out, &pattern);
    img_free(&out);
    free(png);

    /* WebP EXIF chunk in an extended container. */
    uint8_t *simple;
    size_t slen = WebPEncodeLosslessRGB(pattern.data, 40, 24, 40 * 3, &simple);
    uint8_t chunk[160], file[4096];
    tlen = make_tiff(3, 0, tiff);
    memcpy(chunk, "EXIF", 4);
    put_le32(chunk + 4, (uint32_t)tlen);
    memcpy(chunk + 8, tiff, tlen);
    size_t clen = 8 + tlen;
    if (tlen & 1) chunk[clen++] = 0;
    assert_true(slen + clen + 40 < sizeof file);
    size_t n = make_webp_extended(simple, slen, 0x08, 40, 24, chunk, clen, file);
    assert_int_equal(img_exif_orientation_webp(file, n), 3);
    assert_int_equal(decode(file, n, &out, &info), 0);
    assert_int_equal(info.orientation, 3);
    expected_upright(&pattern, 3, &want);
    assert_same_image(&out, &want);
    img_free(&out);
    img_free(&want);
    /* Animated WebP: refused as unsupported. */
    n = make_webp_extended(simple, slen, 0x02, 40, 24, NULL, 0, file);
    expect_error(file, n, NULL, BASE_ERR_UNSUPPORTED);
    WebPFree(simple);
    img_free(&pattern);
}

static void test_exif_parser_malformed(void **state)
{
    (void)state;
    uint8_t t[128];
    size_t n = make_tiff(6, 0, t);
    assert_int_equal(img_exif_orientation_tiff(t, n), 6);
    /* Every truncation: orientation 6 while the entry is complete, else 1. */
    for (size_t cut = 0; cut < n; cut++) {
        int o = img_exif_orientation_tiff(t, cut);
        assert_true(o == 1 || (o == 6 && cut >= 10 + 2 * 12));
    }
    /* With the APP1 prefix. */
    uint8_t p[134];
    memcpy(p, "Exif\0\0", 6);
    memcpy(p + 6, t, n);
    assert_int_equal(img_exif_orientation_tiff(p, n + 6), 6);
    /* Bad byte order, magic, IFD offsets past the end, huge entry counts, bad values. */
    uint8_t b[128];
    memcpy(b, t, n), b[0] = 'X';
    assert_int_equal(img_exif_orientation_tiff(b, n), 1);
    memcpy(b, t, n), b[2] = 43;
    assert_int_equal(img_exif_orientation_tiff(b, n), 1);
    memcpy(b, t, n), put_le32(b + 4, 0xFFFFFFF0u);
    assert_int_equal(img_exif_orientation_tiff(b, n), 1);
    memcpy(b, t, n), put_le32(b + 4, (uint32_t)n - 1);
    assert_int_equal(img_exif_orientation_tiff(b, n), 1);
    memcpy(b, t, n), put_le32(b + 4, 4);
    assert_int_equal(img_exif_orientation_tiff(b, n), 1);
    memcpy(b, t, n), b[8] = 0xFF, b[9] = 0xFF; /* 65535 entries in a short buffer */
    assert_int_equal(img_exif_orientation_tiff(b, n), 6);
    memcpy(b, t, n), b[10 + 12 + 8] = 9; /* orientation 9 */
    assert_int_equal(img_exif_orientation_tiff(b, n), 1);
    memcpy(b, t, n), b[10 + 12 + 8] = 0;
    assert_int_equal(img_exif_orientation_tiff(b, n), 1);
    memcpy(b, t, n), b[10 + 12 + 2] = 7; /* type UNDEFINED */
    assert_int_equal(img_exif_orientation_tiff(b, n), 1);
    memcpy(b, t, n), b[10 + 12 + 2] = 4, put_le32(b + 10 + 12 + 8, 5); /* as a LONG */
    assert_int_equal(img_exif_orientation_tiff(b, n), 5);
    assert_int_equal(img_exif_orientation_tiff(NULL, 0), 1);

    /* JPEG segment walks: a length running past the end, a missing marker, an Exif segment
     * after SOS (not metadata), fill bytes before a marker. */
    uint8_t j[256] = {0xFF, 0xD8, 0xFF, 0xE1, 0x00, (uint8_t)(8 + n)};
    memcpy(j + 6, "Exif\0\0", 6);
    memcpy(j + 12, t, n);
    size_t jn = 12 + n;
    assert_int_equal(img_exif_orientation_jpeg(j, jn), 6);
    for (size_t cut = 0; cut < jn; cut++)
        assert_int_equal(img_exif_orientation_jpeg(j, cut), 1);
    j[4] = 0x7F;
    assert_int_equal(img_exif_orientation_jpeg(j, jn), 1);
    j[4] = 0;
    uint8_t k[300] = {0xFF, 0xD8, 0xFF, 0xFF, 0xFF};
    memcpy(k + 5, j + 3, jn - 3); /* FF D8 FF FF FF E1 ... */
    assert_int_equal(img_exif_orientation_jpeg(k, jn + 2), 6);
    uint8_t s[300] = {0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02};
    memcpy(s + 6, j + 2, jn - 2);
    assert_int_equal(img_exif_orientation_jpeg(s, jn + 4), 1);
    assert_int_equal(img_exif_orientation_jpeg(NULL, 0), 1);
    /* WebP walks: a chunk size past the end. */
    uint8_t w[64] = "RIFF\x30\0\0\0WEBPVP8X\x0a\0\0\0";
    memcpy(w + 30, "EXIF\xff\xff\xff\x7f", 8);
    assert_int_equal(img_exif_orientation_webp(w, 64), 1);
    assert_int_equal(img_exif_orientation_webp(w, 20), 1);
    /* A RIFF size smaller than the header itself (found by fuzz_webp: it read past the end). */
    static const uint8_t riff0[46] = "RIFF\0\0\0\0WEBPVP8X\x0a\0\0RIFF\0\x08\0\0\0\0\0\0\0\0&\x01";
    assert_int_equal(img_exif_orientation_webp(riff0, sizeof riff0), 1);
    expect_error(riff0, sizeof riff0, NULL, BASE_ERR_FORMAT);
}

/* ---- real photos ---- */

static int decode_dir(const char *dir, const char *suffix, int min_side)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name), m = strlen(suffix);
        if (n < m || strcmp(e->d_name + n - m, suffix) != 0) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        img_image img;
        img_decode_info info;
        img_decode_options opts = {.min_side = min_side};
        int rc = img_load_file(path, &opts, &img, &info);
        if (rc) fail_msg("%s: %s", path, base_error_message());
        assert_true(img.width > 0 && img.height > 0);
        int sw = info.orientation >= 5 ? info.orig_height : info.orig_width;
        assert_true(img.width * info.scale_denom >= sw && img.width * info.scale_denom < sw + 8);
        if (min_side > 0 && info.scale_denom > 1)
            assert_true((img.width < img.height ? img.width : img.height) >= min_side);
        print_message("%s: %dx%d stored, orientation %d, 1/%d -> %dx%d\n", e->d_name,
                      info.orig_width, info.orig_height, info.orientation, info.scale_denom,
                      img.width, img.height);
        img_free(&img);
        count++;
    }
    closedir(d);
    return count;
}

static void test_real_photos(void **state)
{
    (void)state;
    int n = decode_dir("models/samples", ".jpg", 0) + decode_dir("models/samples", ".jpg", 200) +
            decode_dir("../shared/data/fixtures", ".jpg", 0) +
            decode_dir("../shared/data/fixtures", ".png", 0) +
            decode_dir("../shared/data/fixtures", ".jpg", 256) +
            decode_dir("../shared/data/fixtures/identities/amy", ".png", 0);
    if (n == 0) skip();
}

static void test_load_file_errors(void **state)
{
    (void)state;
    img_image img;
    assert_int_equal(img_load_file("/nonexistent/x.jpg", NULL, &img, NULL), BASE_ERR_IO);
    assert_null(img.data);
    if (access("models/samples/sample1.jpg", R_OK) == 0) {
        img_decode_options o = {.limits = {.max_bytes = 1000}};
        assert_int_equal(img_load_file("models/samples/sample1.jpg", &o, &img, NULL),
                         BASE_ERR_LIMIT);
    }
}

int main(void)
{
    base_log_level = BASE_LOG_OFF;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect_format),
        cmocka_unit_test(test_wrong_magic_and_empty),
        cmocka_unit_test(test_jpeg_round_trip),
        cmocka_unit_test(test_jpeg_grey_progressive_cmyk),
        cmocka_unit_test(test_jpeg_dct_scaling),
        cmocka_unit_test(test_jpeg_truncated),
        cmocka_unit_test(test_jpeg_truncated_multiscan),
        cmocka_unit_test(test_jpeg_truncated_after_warning),
        cmocka_unit_test(test_jpeg_cmyk_as_reference),
        cmocka_unit_test(test_inputs_users_send),
        cmocka_unit_test(test_jpeg_corrupt),
        cmocka_unit_test(test_jpeg_huge_header),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_png_round_trip),
        cmocka_unit_test(test_png_colour_types),
        cmocka_unit_test(test_png_bad),
        cmocka_unit_test(test_webp),
        cmocka_unit_test(test_exif_orientation_jpeg),
        cmocka_unit_test(test_exif_orientation_png_webp),
        cmocka_unit_test(test_exif_parser_malformed),
        cmocka_unit_test(test_real_photos),
        cmocka_unit_test(test_load_file_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
