/*
 * Real-world image input through the real server (`vultus serve` on loopback): what phones and
 * editors send and what the answer must be. An empty image body (Content-Type image/jpeg...) is an
 * empty image (400 invalid_image, as an empty multipart part), not "send an image"; HEIC, AVIF and
 * GIF are named in the 415; a JPEG cut in its header is "truncated"; an animated WebP is a 415 that
 * says so. A portrait stored turned, with the orientation in a WebP's EXIF chunk or in the
 * second Exif block of a JPEG (behind XMP and a broken Exif block), sent as a raw body,
 * multipart and base64 JSON, gives the face where the upright portrait has it. With
 * --max-pixels at the portrait's size, one column more is 413; a 20000x8 strip and a 1x1 image
 * have no face; grey and progressive JPEGs find the face. vultus analyze on a HEIC file and on
 * a turned WebP answers as the API does.
 * Skips when models/ (or the folder VULTUS_MODELS names) or ../shared/data/fixtures is absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "client.h"

#include "img/img.h"

#include <math.h>
#include <turbojpeg.h>
#include <webp/encode.h>

#define PORTRAIT "../shared/data/fixtures/id-obama-1.jpg"

static struct {
    tc_server server;
    int port;
    img_image upright;
    double box[4]; /* the upright portrait's face: x, y, width, height */
    char models[PATH_MAX];
} shared;

#define NEED_SERVER()                                                                              \
    do {                                                                                           \
        if (!shared.port) {                                                                        \
            printf("skip: models/ or " PORTRAIT " not present\n");                                 \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static int post_raw(const char *type, const void *data, size_t len, tc_response *r)
{
    char h[256];
    snprintf(h, sizeof h, "Content-Type: %s\r\n", type);
    return tc_request(shared.port, "POST", "/v1/analyze", h, data, len, r);
}

/* The error's message must hold `text`. */
static void expect_message(const tc_response *r, const char *text)
{
    json_t *j = tc_json(r);
    const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    if (!msg || !strstr(msg, text)) fail_msg("expected '%s' in: %.300s", text, r->body);
    json_decref(j);
}

/* The one face of a /v1/analyze answer, as x, y, width, height. */
static void one_face(const tc_response *r, double box[4], const char *what)
{
    json_t *j = tc_expect_json(r, 200);
    json_t *faces = json_object_get(j, "faces");
    if (json_array_size(faces) != 1)
        fail_msg("%s: %zu faces: %.300s", what, json_array_size(faces), r->body);
    json_t *b = json_object_get(json_array_get(faces, 0), "box");
    box[0] = json_number_value(json_object_get(b, "x"));
    box[1] = json_number_value(json_object_get(b, "y"));
    box[2] = json_number_value(json_object_get(b, "width"));
    box[3] = json_number_value(json_object_get(b, "height"));
    json_decref(j);
}

static double iou(const double a[4], const double b[4])
{
    double x0 = fmax(a[0], b[0]), y0 = fmax(a[1], b[1]);
    double x1 = fmin(a[0] + a[2], b[0] + b[2]), y1 = fmin(a[1] + a[3], b[1] + b[3]);
    double inter = x1 > x0 && y1 > y0 ? (x1 - x0) * (y1 - y0) : 0;
    return inter / (a[2] * a[3] + b[2] * b[3] - inter);
}

static char *base64(const uint8_t *p, size_t n)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc(4 * (n / 3 + 1) + 1), *q = o;
    assert_non_null(o);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        *q++ = t[v >> 18], *q++ = t[(v >> 12) & 63];
        *q++ = i + 1 < n ? t[(v >> 6) & 63] : '=';
        *q++ = i + 2 < n ? t[v & 63] : '=';
    }
    *q = '\0';
    return o;
}

/* The same image as a raw body, a multipart part and base64 JSON: the face where the upright
 * portrait has it each time. */
static void expect_face_every_way(const char *type, const uint8_t *data, size_t len,
                                  const char *what)
{
    for (int way = 0; way < 3; way++) {
        tc_response r;
        if (way == 0) {
            assert_int_equal(post_raw(type, data, len, &r), 0);
        } else if (way == 1) {
            tc_form f = {0};
            tc_form_file(&f, "image", data, len);
            tc_form_end(&f);
            assert_int_equal(tc_post_form(shared.port, "/v1/analyze", NULL, &f, &r), 0);
            free(f.data);
        } else {
            char *b = base64(data, len);
            char *json = malloc(strlen(b) + 32);
            sprintf(json, "{\"image\":\"%s\"}", b);
            assert_int_equal(tc_post_json(shared.port, "/v1/analyze", NULL, json, &r), 0);
            free(json);
            free(b);
        }
        double box[4];
        char label[96];
        snprintf(label, sizeof label, "%s (%s)", what,
                 way == 0   ? "raw"
                 : way == 1 ? "multipart"
                            : "base64 JSON");
        one_face(&r, box, label);
        double v = iou(box, shared.box);
        printf("  %s: box %.0f,%.0f %.0fx%.0f, IoU %.3f\n", label, box[0], box[1], box[2], box[3],
               v);
        if (v < 0.9) fail_msg("%s: IoU %.3f with the upright portrait's face", label, v);
        tc_response_free(&r);
    }
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* A big-endian TIFF block with IFD0 holding the orientation o (26 bytes). */
static void tiff_orientation(int o, uint32_t ifd_offset, uint8_t t[26])
{
    memset(t, 0, 26);
    memcpy(t, "MM\0\x2a", 4);
    t[4] = (uint8_t)(ifd_offset >> 24), t[5] = (uint8_t)(ifd_offset >> 16);
    t[6] = (uint8_t)(ifd_offset >> 8), t[7] = (uint8_t)ifd_offset;
    t[9] = 1, t[10] = 0x01, t[11] = 0x12, t[13] = 3, t[17] = 1, t[19] = (uint8_t)o;
}

/* An extended WebP (VP8X with the EXIF flag) of img, lossy, with an EXIF chunk holding o. */
static uint8_t *webp_with_orientation(const img_image *img, int o, size_t *out_len)
{
    uint8_t *simple = NULL;
    size_t n = WebPEncodeRGB(img->data, img->width, img->height, img->width * 3, 90, &simple);
    assert_true(n > 20);
    const size_t bitstream = n - 12; /* the VP8 chunk, as it is */
    const size_t total = 12 + 18 + bitstream + 8 + 26;
    uint8_t *w = calloc(1, total);
    assert_non_null(w);
    memcpy(w, "RIFF", 4);
    put_le32(w + 4, (uint32_t)(total - 8));
    memcpy(w + 8, "WEBP", 4);
    memcpy(w + 12, "VP8X", 4);
    put_le32(w + 16, 10);
    w[20] = 0x08;                                 /* EXIF present */
    put_le32(w + 24, (uint32_t)(img->width - 1)); /* 24 bits, then the height's 24 bits */
    put_le32(w + 27, (uint32_t)(img->height - 1));
    memcpy(w + 30, simple + 12, bitstream);
    uint8_t *e = w + 30 + bitstream;
    memcpy(e, "EXIF", 4);
    put_le32(e + 4, 26);
    tiff_orientation(o, 8, e + 8);
    WebPFree(simple);
    *out_len = total;
    return w;
}

/* An animated WebP of two frames (img, then img in negative), each a lossy VP8 bitstream in
 * an ANMF chunk, written by hand (the animation encoder is in libwebpmux, which vultus does
 * not link). */
static uint8_t *animated_webp(const img_image *img, size_t *out_len)
{
    const size_t pixels = (size_t)img->width * img->height * 3;
    uint8_t *neg = malloc(pixels), *vp8[2] = {NULL, NULL};
    assert_non_null(neg);
    for (size_t i = 0; i < pixels; i++)
        neg[i] = (uint8_t)(255 - img->data[i]);
    size_t n[2], total = 12 + 18 + 14;
    for (int f = 0; f < 2; f++) {
        n[f] = WebPEncodeRGB(f ? neg : img->data, img->width, img->height, img->width * 3, 80,
                             &vp8[f]);
        assert_true(n[f] > 20);
        total += 8 + 16 + (n[f] - 12);
    }
    free(neg);
    uint8_t *w = calloc(1, total), *p = w;
    assert_non_null(w);
    memcpy(p, "RIFF", 4), put_le32(p + 4, (uint32_t)(total - 8)), memcpy(p + 8, "WEBP", 4);
    p += 12;
    memcpy(p, "VP8X", 4), put_le32(p + 4, 10);
    p[8] = 0x02; /* animation */
    put_le32(p + 12, (uint32_t)(img->width - 1));
    put_le32(p + 15, (uint32_t)(img->height - 1));
    p += 18;
    memcpy(p, "ANIM", 4), put_le32(p + 4, 6); /* background 0, loop forever */
    p += 14;
    for (int f = 0; f < 2; f++) {
        const size_t bitstream = n[f] - 12; /* the VP8 chunk of the simple file */
        memcpy(p, "ANMF", 4), put_le32(p + 4, (uint32_t)(16 + bitstream));
        /* x/2, y/2 = 0; width-1, height-1; duration 100 ms; flags 0 (all 24-bit fields) */
        put_le32(p + 14, (uint32_t)(img->width - 1));
        put_le32(p + 17, (uint32_t)(img->height - 1));
        put_le32(p + 20, 100);
        p[23] = 0;
        memcpy(p + 24, vp8[f] + 12, bitstream);
        p += 24 + bitstream;
        WebPFree(vp8[f]);
    }
    assert_true((size_t)(p - w) == total);
    *out_len = total;
    return w;
}

/* The JPEG of img with XMP, an Exif block whose IFD0 lies past its end, then one holding o. */
static uint8_t *jpeg_with_orientation(const img_image *img, int o, size_t *out_len)
{
    uint8_t *j = NULL;
    size_t n = 0;
    assert_int_equal(img_encode_jpeg(img, 95, &j, &n), 0);
    static const char xmp[] = "http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>";
    uint8_t segs[256];
    size_t k = 0;
    segs[k++] = 0xFF, segs[k++] = 0xE1, segs[k++] = 0, segs[k++] = (uint8_t)(2 + sizeof xmp);
    memcpy(segs + k, xmp, sizeof xmp), k += sizeof xmp;
    for (int b = 0; b < 2; b++) {
        segs[k++] = 0xFF, segs[k++] = 0xE1, segs[k++] = 0, segs[k++] = 2 + 6 + 26;
        memcpy(segs + k, "Exif\0\0", 6), k += 6;
        tiff_orientation(o, b == 0 ? 5000 : 8, segs + k), k += 26;
    }
    uint8_t *out = malloc(n + k);
    assert_non_null(out);
    memcpy(out, j, 2);
    memcpy(out + 2, segs, k);
    memcpy(out + 2 + k, j + 2, n - 2);
    free(j);
    *out_len = n + k;
    return out;
}

static int setup(void **state)
{
    (void)state;
    const char *models = getenv("VULTUS_MODELS");
    if (!models || !*models) models = "models";
    char probe[PATH_MAX];
    snprintf(probe, sizeof probe, "%s/human/blazeface-back.json", models);
    if (access(probe, R_OK) != 0 || access(PORTRAIT, R_OK) != 0) return 0;
    if (img_load_file(PORTRAIT, NULL, &shared.upright, NULL) != 0) return -1;
    /* --max-pixels exactly the portrait's 910x1137 (test_pixel_limit_and_shapes) */
    char max_pixels[32];
    snprintf(max_pixels, sizeof max_pixels, "%lld",
             (long long)shared.upright.width * shared.upright.height);
    snprintf(shared.models, sizeof shared.models, "%s", models);
    const char *extra[] = {"--models", models, "--workers", "1", "--max-pixels", max_pixels, NULL};
    if (tc_server_start(&shared.server, NULL, extra, 1) != 0) return -1;
    shared.port = shared.server.port;
    size_t len = 0;
    char *jpeg = tc_load(PORTRAIT, &len);
    tc_response r;
    if (post_raw("image/jpeg", jpeg, len, &r) != 0) return -1;
    free(jpeg);
    one_face(&r, shared.box, "the upright portrait");
    tc_response_free(&r);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (shared.port) tc_server_stop(&shared.server);
    img_free(&shared.upright);
    return 0;
}

/* An empty body that says it is an image: 400 invalid_image saying the body is empty, as an
 * empty multipart part or an empty base64 string (not 400 missing_image, "send ... a raw
 * image/... body", which it did). A request with no body and no type stays missing_image. */
static void test_empty_image_body(void **state)
{
    (void)state;
    NEED_SERVER();
    static const char *types[] = {"image/jpeg", "image/png", "application/octet-stream"};
    for (int i = 0; i < 3; i++) {
        tc_response r;
        assert_int_equal(post_raw(types[i], "", 0, &r), 0);
        tc_expect_error(&r, 400, "invalid_image");
        expect_message(&r, "empty");
        tc_response_free(&r);
    }
    tc_response r;
    assert_int_equal(tc_request(shared.port, "POST", "/v1/analyze", NULL, NULL, 0, &r), 0);
    tc_expect_error(&r, 400, "missing_image");
    tc_response_free(&r);
}

/* Formats we do not decode: 415 unsupported_image naming the format; an animated WebP too. */
static void test_unsupported_named(void **state)
{
    (void)state;
    NEED_SERVER();
    static const struct {
        const char *type, *bytes;
        size_t len;
        const char *name;
    } cases[] = {
        {"image/heic",
         "\0\0\0\x18"
         "ftypheic\0\0\0\0mif1heic",
         24, "HEIC"},
        {"image/avif",
         "\0\0\0\x1c"
         "ftypavif\0\0\0\0avifmif1miaf",
         28, "AVIF"},
        {"image/gif", "GIF89a\x01\0\x01\0\0\0\0;", 14, "GIF"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tc_response r;
        assert_int_equal(post_raw(cases[i].type, cases[i].bytes, cases[i].len, &r), 0);
        tc_expect_error(&r, 415, "unsupported_image");
        expect_message(&r, cases[i].name);
        /* and what to do about it, as README promises ("re-save as JPEG") */
        expect_message(&r, "re-save it as JPEG");
        tc_response_free(&r);
    }
    size_t anim_len = 0;
    uint8_t *anim = animated_webp(&shared.upright, &anim_len);
    tc_response r;
    assert_int_equal(post_raw("image/webp", anim, anim_len, &r), 0);
    tc_expect_error(&r, 415, "unsupported_image");
    expect_message(&r, "animated");
    tc_response_free(&r);
    free(anim);
}

/* The portrait cut in its header (200 bytes: inside the Exif/JFIF segments), in its data (half)
 * and by its last 3 bytes (the EOI marker and a byte of the scan): 400 invalid_image saying
 * "truncated" each time. Without only its EOI marker (2 bytes) its image is whole: the same face
 * as the complete file's, as test_decode's every-prefix case pins. */
static void test_truncated(void **state)
{
    (void)state;
    NEED_SERVER();
    size_t len = 0;
    char *jpeg = tc_load(PORTRAIT, &len);
    const size_t cuts[3] = {200, len / 2, len - 3};
    for (int i = 0; i < 3; i++) {
        tc_response r;
        assert_int_equal(post_raw("image/jpeg", jpeg, cuts[i], &r), 0);
        tc_expect_error(&r, 400, "invalid_image");
        expect_message(&r, "truncated");
        tc_response_free(&r);
    }
    tc_response r;
    double whole[4], no_eoi[4];
    assert_int_equal(post_raw("image/jpeg", jpeg, len, &r), 0);
    one_face(&r, whole, "the portrait");
    tc_response_free(&r);
    assert_int_equal(post_raw("image/jpeg", jpeg, len - 2, &r), 0);
    one_face(&r, no_eoi, "the portrait without its EOI marker");
    tc_response_free(&r);
    for (int k = 0; k < 4; k++)
        assert_true(whole[k] == no_eoi[k]);
    free(jpeg);
}

/* Orientation 6 and 8 (a phone held on its side) and 3 (upside down): stored turned, the face
 * comes back where the upright portrait has it, from a WebP's EXIF chunk and from the second
 * Exif block of a JPEG. */
static void test_orientation(void **state)
{
    (void)state;
    NEED_SERVER();
    static const int orientations[3] = {6, 8, 3};
    for (int i = 0; i < 3; i++) {
        const int o = orientations[i];
        const int inverse = o == 6 ? 8 : o == 8 ? 6 : o;
        img_image stored = {0};
        assert_int_equal(img_apply_orientation(&shared.upright, inverse, &stored), 0);
        size_t len = 0;
        char what[64];
        uint8_t *webp = webp_with_orientation(&stored, o, &len);
        snprintf(what, sizeof what, "WebP, EXIF orientation %d", o);
        expect_face_every_way("image/webp", webp, len, what);
        free(webp);
        uint8_t *jpeg = jpeg_with_orientation(&stored, o, &len);
        snprintf(what, sizeof what, "JPEG, orientation %d in the 2nd Exif", o);
        expect_face_every_way("image/jpeg", jpeg, len, what);
        free(jpeg);
        img_free(&stored);
    }
}

/* Where to write a temporary image for vultus analyze. */
static void write_temp(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* The pixel limit (the server runs with --max-pixels = the portrait's 910x1137): the portrait is
 * analysed (setup), the portrait one column wider is 413 image_too_large from its header; a
 * 20000x8 strip and a 1x1 image are analysed with no face; the portrait as grey JPEG and as
 * progressive JPEG gives the face where the colour baseline one has it. */
static void test_pixel_limit_and_shapes(void **state)
{
    (void)state;
    NEED_SERVER();
    const img_image *u = &shared.upright;
    img_image wide = {0};
    assert_int_equal(img_alloc(&wide, u->width + 1, u->height, 3), 0);
    for (int y = 0; y < u->height; y++) {
        uint8_t *row = wide.data + (size_t)y * wide.width * 3;
        memcpy(row, u->data + (size_t)y * u->width * 3, (size_t)u->width * 3);
        memset(row + (size_t)u->width * 3, 128, 3);
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(img_encode_png(&wide, &buf, &len), 0);
    tc_response r;
    assert_int_equal(post_raw("image/png", buf, len, &r), 0);
    tc_expect_error(&r, 413, "image_too_large");
    expect_message(&r, "911x1137");
    tc_response_free(&r);
    free(buf);
    img_free(&wide);

    static const int shapes[2][2] = {{20000, 8}, {1, 1}};
    for (int i = 0; i < 2; i++) {
        img_image img = {0};
        assert_int_equal(img_alloc(&img, shapes[i][0], shapes[i][1], 3), 0);
        for (size_t k = 0; k < (size_t)img.width * img.height * 3; k++)
            img.data[k] = (uint8_t)(k * 31);
        assert_int_equal(img_encode_jpeg(&img, 90, &buf, &len), 0);
        assert_int_equal(post_raw("image/jpeg", buf, len, &r), 0);
        json_t *j = tc_expect_json(&r, 200);
        assert_int_equal(json_integer_value(json_object_get(j, "width")), shapes[i][0]);
        assert_int_equal(json_array_size(json_object_get(j, "faces")), 0);
        json_decref(j);
        tc_response_free(&r);
        free(buf);
        img_free(&img);
    }

    img_image grey = {0};
    assert_int_equal(img_alloc(&grey, u->width, u->height, 1), 0);
    for (size_t k = 0; k < (size_t)u->width * u->height; k++) {
        const uint8_t *p = u->data + 3 * k;
        grey.data[k] = (uint8_t)((77 * p[0] + 150 * p[1] + 29 * p[2] + 128) >> 8);
    }
    assert_int_equal(img_encode_jpeg(&grey, 95, &buf, &len), 0);
    expect_face_every_way("image/jpeg", buf, len, "grey JPEG");
    free(buf);
    img_free(&grey);
    tjhandle tj = tjInitCompress();
    assert_non_null(tj);
    unsigned char *prog = NULL;
    unsigned long prog_len = 0;
    assert_int_equal(tjCompress2(tj, u->data, u->width, 0, u->height, TJPF_RGB, &prog, &prog_len,
                                 TJSAMP_420, 90, TJFLAG_PROGRESSIVE),
                     0);
    tjDestroy(tj);
    expect_face_every_way("image/jpeg", prog, prog_len, "progressive JPEG");
    tjFree(prog);
}

/* vultus analyze on the same kinds of file: the HEIC header exits 1 naming HEIC; the portrait
 * stored turned in a WebP with orientation 6 gives the face where the upright portrait has it. */
static void test_cli_analyze(void **state)
{
    (void)state;
    NEED_SERVER();
    char dir[256], path[300], out[16384];
    assert_int_equal(tc_temp_dir(dir), 0);
    snprintf(path, sizeof path, "%s/photo.heic", dir);
    write_temp(path,
               "\0\0\0\x18"
               "ftypheic\0\0\0\0mif1heic",
               24);
    const char *heic[] = {"analyze", "--stages", "detect", "--models", shared.models, path, NULL};
    int rc = tc_run_vultus_fd(2, out, sizeof out, heic);
    if (rc != 1 || !strstr(out, "HEIC")) fail_msg("vultus analyze: exit %d: %s", rc, out);
    unlink(path);

    img_image stored = {0};
    assert_int_equal(img_apply_orientation(&shared.upright, 8, &stored), 0);
    size_t len = 0;
    uint8_t *webp = webp_with_orientation(&stored, 6, &len);
    snprintf(path, sizeof path, "%s/turned.webp", dir);
    write_temp(path, webp, len);
    free(webp);
    img_free(&stored);
    const char *turned[] = {"analyze", "--stages", "detect", "--models", shared.models, path, NULL};
    rc = tc_run_vultus(out, sizeof out, turned);
    if (rc != 0) fail_msg("vultus analyze: exit %d: %s", rc, out);
    json_t *j = json_loads(out, JSON_DISABLE_EOF_CHECK, NULL);
    assert_non_null(j);
    json_t *faces = json_object_get(j, "faces");
    assert_int_equal(json_array_size(faces), 1);
    json_t *b = json_object_get(json_array_get(faces, 0), "box");
    double box[4];
    for (int i = 0; i < 4; i++)
        box[i] = json_number_value(json_array_get(b, (size_t)i));
    double v = iou(box, shared.box);
    printf("  vultus analyze, WebP orientation 6: box %.0f,%.0f %.0fx%.0f, IoU %.3f\n", box[0],
           box[1], box[2], box[3], v);
    assert_true(v >= 0.9);
    json_decref(j);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_image_body),
        cmocka_unit_test(test_unsupported_named),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_orientation),
        cmocka_unit_test(test_pixel_limit_and_shapes),
        cmocka_unit_test(test_cli_analyze),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
