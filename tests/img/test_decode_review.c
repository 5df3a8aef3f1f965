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
    if (body_len) memcpy(out + 4 + prefix_len, body, body_len);
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
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* An 8-bit PNG of img (RGB, or RGBA with `alpha` for every pixel when alpha >= 0). */
static void make_png(const img_image *img, int alpha, uint8_t **out, size_t *len)
{
    const int c = alpha >= 0 ? 4 : 3;
    const size_t n = (size_t)img->width * img->height;
    uint8_t *raw = malloc(n * c);
    assert_non_null(raw);
    for (size_t i = 0; i < n; i++) {
        memcpy(raw + i * c, img->data + 3 * i, 3);
        if (c == 4) raw[4 * i + 3] = (uint8_t)alpha;
    }
    spng_ctx *s = spng_ctx_new(SPNG_CTX_ENCODER);
    assert_non_null(s);
    struct spng_ihdr ihdr = {.width = (uint32_t)img->width,
                             .height = (uint32_t)img->height,
                             .bit_depth = 8,
                             .color_type = c == 4 ? SPNG_COLOR_TYPE_TRUECOLOR_ALPHA
                                                  : SPNG_COLOR_TYPE_TRUECOLOR};
    assert_int_equal(spng_set_option(s, SPNG_ENCODE_TO_BUFFER, 1), 0);
    assert_int_equal(spng_set_ihdr(s, &ihdr), 0);
    assert_int_equal(spng_encode_image(s, raw, n * c, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE), 0);
    int err = 0;
    *out = spng_get_png_buffer(s, len, &err);
    assert_non_null(*out);
    spng_ctx_free(s);
    free(raw);
}

/* A copy of the PNG with the chunk `type` holding `data` inserted after IHDR. */
static uint8_t *png_insert(const uint8_t *png, size_t len, const char *type, const uint8_t *data,
                           size_t n, size_t *out_len)
{
    const size_t at = 8 + 25; /* signature, IHDR */
    uint8_t *o = malloc(len + 12 + n);
    assert_non_null(o);
    memcpy(o, png, at);
    uint8_t *c = o + at;
    put_be32(c, (uint32_t)n);
    memcpy(c + 4, type, 4);
    memcpy(c + 8, data, n);
    put_be32(c + 8 + n, crc32_png(c + 4, 4 + n));
    memcpy(c + 12 + n, png + at, len - at);
    *out_len = len + 12 + n;
    return o;
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

/* A JPEG cut anywhere in its headers (before its frame header, SOF, is complete: no size yet;
 * or after it, in the Huffman tables, before the first scan) is a truncated file (400
 * invalid_image, "truncated"), not an empty 0x0 image nor "Bogus Huffman table definition". */
static void test_jpeg_cut_before_frame_header(void **state)
{
    (void)state;
    img_image img;
    make_blocks(&img, 64, 48);
    uint8_t *j = NULL;
    size_t len = 0;
    assert_int_equal(img_encode_jpeg(&img, 90, &j, &len), 0);
    size_t sos = find_sof(j, len);
    while (sos + 1 < len && !(j[sos] == 0xFF && j[sos + 1] == 0xDA))
        sos++;
    assert_true(sos + 14 < len);
    for (size_t cut = 1; cut < sos + 14; cut++)
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

/* An eXIf chunk that keeps the JPEG APP1 prefix "Exif\0\0" (some converters write it so; spng
 * refuses the chunk): the orientation still applies, as with a plain eXIf chunk. */
static void test_png_exif_with_app1_prefix(void **state)
{
    (void)state;
    img_image img;
    make_blocks(&img, 40, 24);
    uint8_t *png = NULL;
    size_t len = 0;
    make_png(&img, -1, &png, &len);
    for (int prefixed = 0; prefixed < 2; prefixed++)
        for (int be = 0; be < 2; be++) {
            uint8_t chunk[6 + 26];
            memcpy(chunk, "Exif\0\0", 6);
            tiff_orientation(6, be, 8, chunk + 6);
            size_t n = 0;
            uint8_t *p = png_insert(png, len, "eXIf", prefixed ? chunk : chunk + 6,
                                    prefixed ? sizeof chunk : 26, &n);
            img_image out;
            img_decode_info info;
            assert_int_equal(img_decode(p, n, NULL, &out, &info), 0);
            if (info.orientation != 6)
                fail_msg("eXIf %s, %s-endian: orientation %d, want 6",
                         prefixed ? "with Exif prefix" : "plain", be ? "big" : "little",
                         info.orientation);
            assert_int_equal(out.width, 24);
            assert_int_equal(out.height, 40);
            img_free(&out);
            free(p);
        }
    free(png);
    img_free(&img);
}

/* Alpha is dropped, not composited (README, "Image input"): a fully transparent pixel decodes
 * to the colour stored under it. Pinned so that a change is deliberate. */
static void test_png_alpha_dropped(void **state)
{
    (void)state;
    img_image img, out;
    make_blocks(&img, 16, 16);
    uint8_t *png = NULL;
    size_t len = 0;
    make_png(&img, 0, &png, &len);
    assert_int_equal(img_decode(png, len, NULL, &out, NULL), 0);
    assert_memory_equal(out.data, img.data, (size_t)16 * 16 * 3);
    img_free(&out);
    free(png);
    img_free(&img);
}

/* ---- other formats ---- */

/* What phones and editors send that we do not decode is named in the error (415), with what
 * is decoded, instead of "unknown format (starts 00 00 00 18 66 74 79 70)". */
static void test_other_formats_named(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
        const char *name;
    } cases[] = {
        {"\0\0\0\x18"
         "ftypheic\0\0\0\0mif1heic",
         24, "HEIC"},
        {"\0\0\0\x18"
         "ftypmif1\0\0\0\0mif1heic",
         24, "HEIC"},
        {"\0\0\0\x1c"
         "ftypavif\0\0\0\0avifmif1miaf",
         28, "AVIF"},
        {"GIF89a\x01\0\x01\0\0\0\0;", 14, "GIF"},
        {"GIF87a\x01\0\x01\0\0\0\0;", 14, "GIF"},
        {"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0", 14, "BMP"},
        {"II*\0\x08\0\0\0\0\0", 10, "TIFF"},
        {"MM\0*\0\0\0\x08\0\0", 10, "TIFF"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect_error((const uint8_t *)cases[i].bytes, cases[i].len, BASE_ERR_UNSUPPORTED,
                     cases[i].name);
        expect_error((const uint8_t *)cases[i].bytes, cases[i].len, BASE_ERR_UNSUPPORTED,
                     "JPEG, PNG and WebP are");
    }
    /* and anything else keeps the bytes it starts with */
    expect_error((const uint8_t *)"%PDF-1.7\n", 9, BASE_ERR_UNSUPPORTED, "starts 25 50 44 46");
}

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

/* The one face of `r` where the upright photo's face `ref` is (IoU >= 0.9). */
static void expect_face_at(const face_result *r, const face_result *ref, const char *what)
{
    if (r->n_faces != 1) fail_msg("%s: %d faces, want 1", what, r->n_faces);
    assert_int_equal(r->width, ref->width);
    assert_int_equal(r->height, ref->height);
    face_box a = {.x = r->faces[0].x, .y = r->faces[0].y, .w = r->faces[0].w, .h = r->faces[0].h};
    face_box b = {
        .x = ref->faces[0].x, .y = ref->faces[0].y, .w = ref->faces[0].w, .h = ref->faces[0].h};
    float iou = face_iou(&a, &b);
    printf("  %s: box %.0f,%.0f %.0fx%.0f, IoU %.3f with the upright photo's\n", what, a.x, a.y,
           a.w, a.h, iou);
    if (iou < 0.9f) fail_msg("%s: IoU %.3f", what, iou);
}

/* Orientation o displays stored pixels turned; a camera held that way stores the upright
 * scene turned by the inverse. */
static int inverse_orientation(int o)
{
    return o == 6 ? 8 : o == 8 ? 6 : o;
}

/* The portrait stored turned, with the orientation that turns it back written as a JPEG behind
 * XMP and a broken Exif block, and as a PNG eXIf chunk with the "Exif\0\0" prefix: the face
 * is where the upright photo has it. Then the portrait truncated in its header. */
static void test_photo_variants(void **state)
{
    (void)state;
    if (!models) {
        printf("skip: models/ or %s not present\n", PORTRAIT);
        skip();
    }
    img_image upright = {0};
    assert_int_equal(img_load_file(PORTRAIT, NULL, &upright, NULL), 0);
    face_options opts = {.stages = FACE_STAGE_DETECT};
    face_result ref;
    assert_int_equal(face_analyze(ctx, &upright, &opts, &ref), 0);
    assert_int_equal(ref.n_faces, 1);
    ref.width = upright.width, ref.height = upright.height;

    static const char xmp[] = "http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>";
    for (int o = 2; o <= 8; o++) {
        img_image stored = {0};
        assert_int_equal(img_apply_orientation(&upright, inverse_orientation(o), &stored), 0);
        uint8_t *j = NULL, *png = NULL;
        size_t jlen = 0, plen = 0;
        assert_int_equal(img_encode_jpeg(&stored, 95, &j, &jlen), 0);
        uint8_t segs[256], tiff[26];
        size_t n = app1(xmp, sizeof xmp, NULL, 0, segs);
        tiff_orientation(o, 1, 65535, tiff);
        n += app1("Exif\0\0", 6, tiff, 26, segs + n);
        tiff_orientation(o, o % 2, 8, tiff);
        n += app1("Exif\0\0", 6, tiff, 26, segs + n);
        size_t flen = 0;
        uint8_t *f = jpeg_insert(j, jlen, segs, n, &flen);
        char what[64];
        face_result r;
        snprintf(what, sizeof what, "JPEG, orientation %d in the 2nd Exif", o);
        if (face_analyze_bytes(ctx, f, flen, &opts, &r) != 0) fail_msg("%s", base_error_message());
        expect_face_at(&r, &ref, what);
        face_result_free(&r);
        free(f);

        make_png(&stored, -1, &png, &plen);
        uint8_t chunk[6 + 26];
        memcpy(chunk, "Exif\0\0", 6);
        tiff_orientation(o, o % 2, 8, chunk + 6);
        f = png_insert(png, plen, "eXIf", chunk, sizeof chunk, &flen);
        snprintf(what, sizeof what, "PNG, orientation %d, eXIf with prefix", o);
        if (face_analyze_bytes(ctx, f, flen, &opts, &r) != 0) fail_msg("%s", base_error_message());
        expect_face_at(&r, &ref, what);
        face_result_free(&r);
        free(f);
        free(png);
        free(j);
        img_free(&stored);
    }

    size_t len = 0;
    uint8_t *photo = read_file(PORTRAIT, &len);
    assert_non_null(photo);
    face_result r;
    assert_int_equal(face_analyze_bytes(ctx, photo, 200, &opts, &r), BASE_ERR_FORMAT);
    assert_non_null(strstr(base_error_message(), "truncated"));
    free(photo);
    face_result_free(&ref);
    img_free(&upright);
}

int main(void)
{
    base_log_level = BASE_LOG_WARN;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jpeg_cut_before_frame_header),
        cmocka_unit_test(test_jpeg_processes),
        cmocka_unit_test(test_jpeg_several_app1),
        cmocka_unit_test(test_png_exif_with_app1_prefix),
        cmocka_unit_test(test_png_alpha_dropped),
        cmocka_unit_test(test_other_formats_named),
        cmocka_unit_test(test_photo_variants),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
