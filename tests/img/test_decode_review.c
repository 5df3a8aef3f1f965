/*
 * Real-world image input, as phones, cameras and editors write it: JPEGs cut before their
 * frame header, valid JPEG variants libjpeg-turbo cannot decode (12-bit, lossless) and those it
 * can (arithmetic coding: seeds in tests/fuzz/corpus/jpeg), several APP1 segments (XMP, a
 * broken Exif block, then the real one), a PNG eXIf chunk that keeps the JPEG "Exif\0\0"
 * prefix, formats we do not decode (HEIC, AVIF, GIF, BMP, TIFF) named in the error, and a
 * transparent PNG (alpha is ignored: README). Then the same on a real photo: the faces of each
 * variant where the upright photo has them. The photo part skips when models/ (or the folder
 * VULTUS_MODELS names) or ../shared/data/fixtures is absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "base/base.h"
#include "face/face.h"
#include "img/img.h"
#include "img/img_private.h"

#include <spng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <webp/encode.h>

#define PORTRAIT "../shared/data/fixtures/id-obama-1.jpg"
#define SEEDS "tests/fuzz/corpus/jpeg/"

/* ---- helpers ---- */

/* Blocks of 8x8 in distinct colours: every pixel says where it came from. */
static void make_blocks(img_image *img, int w, int h)
{
    assert_int_equal(img_alloc(img, w, h, 3), 0);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = img->data + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(40 * (x / 8) + 20), p[1] = (uint8_t)(40 * (y / 8) + 20);
            p[2] = (uint8_t)((x / 8 + y / 8) % 2 ? 220 : 30);
        }
}

static double mean_abs_diff(const img_image *a, const img_image *b)
{
    assert_int_equal(a->width, b->width);
    assert_int_equal(a->height, b->height);
    size_t n = (size_t)a->width * a->height * a->channels;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += abs((int)a->data[i] - (int)b->data[i]);
    return sum / (double)n;
}

/* img_decode must fail with `want` and a message holding `text`, and leave no pixels. */
#define expect_error(data, len, want, text) expect_error_at(data, len, want, text, __LINE__)
static void expect_error_at(const uint8_t *data, size_t len, int want, const char *text, int line)
{
    img_image img = {0};
    int rc = img_decode(data, len, NULL, &img, NULL);
    if (rc != want || !strstr(base_error_message(), text))
        fail_msg("line %d: %zu bytes: expected %s with '%s', got %d (%s): %s", line, len,
                 base_strerror(want), text, rc, base_strerror(rc), base_error_message());
    assert_null(img.data);
}

/* A copy of the JPEG `j` with `seg` (a whole marker segment: FF En, length, payload) inserted
 * right after SOI. */
static uint8_t *jpeg_insert(const uint8_t *j, size_t len, const uint8_t *seg, size_t seg_len,
                            size_t *out_len)
{
    uint8_t *o = malloc(len + seg_len);
    assert_non_null(o);
    memcpy(o, j, 2);
    memcpy(o + 2, seg, seg_len);
    memcpy(o + 2 + seg_len, j + 2, len - 2);
    *out_len = len + seg_len;
    return o;
}

/* An APP1 segment of `prefix` (with its NUL bytes: prefix_len) then `body`; returns its size. */
static size_t app1(const void *prefix, size_t prefix_len, const uint8_t *body, size_t body_len,
                   uint8_t *out)
{
    size_t n = 2 + prefix_len + body_len;
    out[0] = 0xFF, out[1] = 0xE1, out[2] = (uint8_t)(n >> 8), out[3] = (uint8_t)n;
    memcpy(out + 4, prefix, prefix_len);
    memcpy(out + 4 + prefix_len, body, body_len);
    return 2 + n;
}

/* A TIFF header and IFD0 with one entry: the orientation (tag 0x0112, SHORT) `o`, in either
 * byte order; ifd_offset 8 is the right one. 26 bytes. */
static size_t tiff_orientation(int o, int big_endian, uint32_t ifd_offset, uint8_t *t)
{
    memset(t, 0, 26);
    if (big_endian) {
        memcpy(t, "MM\0\x2a", 4);
        t[4] = (uint8_t)(ifd_offset >> 24), t[5] = (uint8_t)(ifd_offset >> 16);
        t[6] = (uint8_t)(ifd_offset >> 8), t[7] = (uint8_t)ifd_offset;
        t[9] = 1;                              /* one entry */
        t[10] = 0x01, t[11] = 0x12, t[13] = 3; /* tag, type SHORT */
        t[17] = 1, t[19] = (uint8_t)o;         /* count 1, value */
    } else {
        memcpy(t, "II\x2a\0", 4);
        t[4] = (uint8_t)ifd_offset, t[5] = (uint8_t)(ifd_offset >> 8);
        t[6] = (uint8_t)(ifd_offset >> 16), t[7] = (uint8_t)(ifd_offset >> 24);
        t[8] = 1;
        t[10] = 0x12, t[11] = 0x01, t[12] = 3;
        t[14] = 1, t[18] = (uint8_t)o;
    }
    return 26;
}

/* The offset of the first SOF marker (FF C0..CF but C4, C8, CC) in a JPEG. */
static size_t find_sof(const uint8_t *j, size_t len)
{
    for (size_t i = 2; i + 9 < len; i++)
        if (j[i] == 0xFF && j[i + 1] >= 0xC0 && j[i + 1] <= 0xCF && j[i + 1] != 0xC4 &&
            j[i + 1] != 0xC8 && j[i + 1] != 0xCC)
            return i;
    fail_msg("no SOF");
    return 0;
}

static uint8_t *read_file(const char *path, size_t *len)
{
    char *data = NULL;
    if (base_file_read(path, (size_t)1 << 26, &data, len) != 0) return NULL;
    return (uint8_t *)data;
}

/* ---- JPEG ---- */

/* A JPEG cut anywhere before its frame header (SOF) is complete has no size yet: that is a
 * truncated file (400 invalid_image, "truncated"), not an empty 0x0 image. */
static void test_jpeg_cut_before_frame_header(void **state)
{
    (void)state;
    img_image img;
    make_blocks(&img, 64, 48);
    uint8_t *j = NULL;
    size_t len = 0;
    assert_int_equal(img_encode_jpeg(&img, 90, &j, &len), 0);
    const size_t sof = find_sof(j, len);
    for (size_t cut = 1; cut < sof + 10; cut++)
        expect_error(j, cut, BASE_ERR_FORMAT, "truncated");
    free(j);
    img_free(&img);
}

/* Valid JPEGs that libjpeg-turbo 2.x does not decode (12-bit samples; lossless, SOF3) are
 * refused saying which (400 invalid_image, as every header libjpeg refuses), not as a "bad
 * header"; arithmetic-coded ones (SOF9, SOF10) decode like the pixels they were made of. */
static void test_jpeg_processes(void **state)
{
    (void)state;
    img_image img;
    make_blocks(&img, 64, 48);
    uint8_t *j = NULL;
    size_t len = 0;
    assert_int_equal(img_encode_jpeg(&img, 90, &j, &len), 0);
    const size_t sof = find_sof(j, len);
    uint8_t *p = malloc(len);
    memcpy(p, j, len);
    p[sof + 4] = 12; /* sample precision */
    expect_error(p, len, BASE_ERR_FORMAT, "12-bit samples are not supported");
    memcpy(p, j, len);
    p[sof + 1] = 0xC3; /* lossless */
    expect_error(p, len, BASE_ERR_FORMAT, "lossless JPEG (SOF3) is not supported");
    free(p);
    free(j);

    /* The seeds: the 64x48 blocks written by libjpeg with arith_code (quality 90, 4:4:4),
     * sequential and progressive. */
    static const char *arith[] = {SEEDS "arithmetic-64x48.jpg",
                                  SEEDS "arithmetic-progressive-64x48.jpg"};
    for (int i = 0; i < 2; i++) {
        size_t n = 0;
        uint8_t *a = read_file(arith[i], &n);
        if (!a) fail_msg("%s: %s", arith[i], base_error_message());
        const size_t s = find_sof(a, n);
        assert_int_equal(a[s + 1], i ? 0xCA : 0xC9);
        img_image out;
        img_decode_info info;
        if (img_decode(a, n, NULL, &out, &info) != 0)
            fail_msg("%s: %s", arith[i], base_error_message());
        double d = mean_abs_diff(&out, &img);
        printf("  %s: mean difference %.2f\n", arith[i], d);
        assert_true(d < 3.0);
        img_free(&out);
        free(a);
    }
    img_free(&img);
}

/* Several APP1 segments, as editors leave them: XMP first, then an Exif block whose IFD offset
 * points outside it, then the real Exif block. The orientation is the first one that parses;
 * when the first Exif block has one, a later one does not override it. */
static void test_jpeg_several_app1(void **state)
{
    (void)state;
    img_image img;
    make_blocks(&img, 64, 48);
    uint8_t *j = NULL;
    size_t len = 0;
    assert_int_equal(img_encode_jpeg(&img, 90, &j, &len), 0);
    static const char xmp[] = "http://ns.adobe.com/xap/1.0/\0<x:xmpmeta xmlns:x='adobe:ns:meta/'/>";
    for (int be = 0; be < 2; be++) {
        uint8_t segs[512], tiff[26];
        size_t n = app1(xmp, sizeof xmp, NULL, 0, segs);
        tiff_orientation(3, be, 4000, tiff); /* IFD0 past the end */
        n += app1("Exif\0\0", 6, tiff, 26, segs + n);
        tiff_orientation(6, be, 8, tiff);
        n += app1("Exif\0\0", 6, tiff, 26, segs + n);
        size_t flen = 0;
        uint8_t *f = jpeg_insert(j, len, segs, n, &flen);
        assert_int_equal(img_exif_orientation_jpeg(f, flen), 6);
        img_image out;
        img_decode_info info;
        assert_int_equal(img_decode(f, flen, NULL, &out, &info), 0);
        assert_int_equal(info.orientation, 6);
        assert_int_equal(out.width, 48);
        assert_int_equal(out.height, 64);
        img_free(&out);
        free(f);

        /* a good first Exif block (orientation 8) wins over a later one (6) */
        tiff_orientation(8, be, 8, tiff);
        n = app1("Exif\0\0", 6, tiff, 26, segs);
        tiff_orientation(6, be, 8, tiff);
        n += app1("Exif\0\0", 6, tiff, 26, segs + n);
        f = jpeg_insert(j, len, segs, n, &flen);
        assert_int_equal(img_exif_orientation_jpeg(f, flen), 8);
        free(f);
    }
    free(j);
    img_free(&img);
}

/* ---- PNG ---- */

/* ---- other formats ---- */

/* ---- on a real photo ---- */

static face_models *models;
static face_context *ctx;

/* The model folder: models/, or VULTUS_MODELS as for vultus serve. */
static int setup(void **state)
{
    (void)state;
    const char *dir = getenv("VULTUS_MODELS");
    if (!dir || !*dir) dir = "models";
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/human/blazeface-back.json", dir);
    if (access(probe, R_OK) != 0 || access(PORTRAIT, R_OK) != 0) return 0;
    face_models_options o = {.models_dir = dir, .load = FACE_STAGE_DETECT};
    if (face_models_load(&o, &models) != 0) {
        fprintf(stderr, "face_models_load: %s\n", base_error_message());
        return -1;
    }
    return face_context_create(models, 8, &ctx);
}

static int teardown(void **state)
{
    (void)state;
    face_context_destroy(ctx);
    face_models_destroy(models);
    return 0;
}

int main(void)
{
    base_log_level = BASE_LOG_WARN;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jpeg_cut_before_frame_header),
        cmocka_unit_test(test_jpeg_processes),
        cmocka_unit_test(test_jpeg_several_app1),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
