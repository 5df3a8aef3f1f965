/*
 * Writes the seed files of the image fuzz targets (tests/fuzz/corpus/{jpeg,png,webp}/): small
 * synthetic images (each well under 10 KB) covering the decoders' branches: JPEG baseline,
 * 4:4:4, grey, progressive, CMYK with and without Adobe's marker, without EOI (baseline and
 * progressive), with bytes before a marker that libjpeg skips with a warning (whole, cut, cut
 * and closed with an EOI, lacking only its EOI),
 * with an ICC profile, EXIF orientations in both byte orders; PNG in every colour
 * type and bit depth, interlaced, palette with tRNS, with an eXIf chunk, with a compressed XMP
 * packet; WebP lossy, lossless, with alpha, extended with EXIF. Not part of the build;
 * regenerate with
 *
 *   make build/libvultus.a && cc -std=c17 -Isrc tests/fuzz/gen_img_seeds.c build/libvultus.a \
 *       $(pkg-config --libs libturbojpeg libjpeg spng libwebp) -lm -o /tmp/gen_img_seeds \
 *       && /tmp/gen_img_seeds tests/fuzz/corpus
 */
#include "img/img.h"

#include <spng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <webp/encode.h>

static const char *root;

static void write_seed(const char *dir, const char *name, const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s/%s", root, dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len) {
        perror(path);
        exit(1);
    }
    fclose(f);
    if (len > 10000) {
        fprintf(stderr, "%s: %zu bytes, over 10 KB\n", path, len);
        exit(1);
    }
}

static void pattern(uint8_t *p, int w, int h, int c)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++)
                p[(y * w + x) * c + k] = (uint8_t)(((x / 4 + y / 4) & 1) * 128 + x * 8 + k * 60);
}

/* A TIFF block with IFD0 = {Orientation}. */
static size_t tiff(int orientation, int be, uint8_t *t)
{
    memcpy(t, be ? "MM\0*\0\0\0\x08\0\x01" : "II*\0\x08\0\0\0\x01\0", 10);
    uint8_t e[12] = {0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, (uint8_t)orientation, 0, 0};
    if (!be) {
        uint8_t l[12] = {0x12, 0x01, 3, 0, 1, 0, 0, 0, (uint8_t)orientation, 0, 0, 0};
        memcpy(e, l, 12);
    }
    memcpy(t + 10, e, 12);
    memset(t + 22, 0, 4);
    return 26;
}

/*
 * A JPEG with 32 bytes that libjpeg skips with a warning ("Corrupt JPEG data: 32 extraneous
 * bytes before marker") inserted before the first marker of `m1` or `m2` at or after `from`,
 * whole and cut halfway through what follows: a truncation after a recoverable warning, which
 * libjpeg does not report (it prints only the first warning).
 */
static void jpeg_extraneous_seeds(const char *name, const unsigned char *buf, size_t len,
                                  size_t from, uint8_t m1, uint8_t m2)
{
    size_t at = from;
    while (at + 1 < len && !(buf[at] == 0xFF && (buf[at + 1] == m1 || buf[at + 1] == m2)))
        at++;
    if (at + 1 >= len) exit(1);
    uint8_t out[10000];
    if (len + 32 > sizeof out) exit(1);
    memcpy(out, buf, at);
    for (size_t k = 0; k < 32; k++)
        out[at + k] = (uint8_t)(0x11 * (k % 15)); /* no FF */
    memcpy(out + at + 32, buf + at, len - at);
    char cut_name[128];
    snprintf(cut_name, sizeof cut_name, "%s-cut.jpg", name);
    const size_t cut = at + 32 + (len - at) / 2;
    write_seed("jpeg", cut_name, out, cut);
    /* The same cut closed with an EOI: libjpeg's second warning (premature end of data
     * segment) is what the decoder must see. */
    uint8_t closed[10000];
    memcpy(closed, out, cut);
    closed[cut] = 0xFF, closed[cut + 1] = 0xD9;
    snprintf(cut_name, sizeof cut_name, "%s-cut-closed.jpg", name);
    write_seed("jpeg", cut_name, closed, cut + 2);
    /* Whole but for its EOI: decoded, with an EOI appended, by libjpeg's own API. */
    snprintf(cut_name, sizeof cut_name, "%s-no-eoi.jpg", name);
    write_seed("jpeg", cut_name, out, len + 32 - 2);
    snprintf(cut_name, sizeof cut_name, "%s.jpg", name);
    write_seed("jpeg", cut_name, out, len + 32);
}

static void jpeg_seeds(void)
{
    enum { W = 32, H = 24 };
    uint8_t rgb[W * H * 3], grey[W * H], cmyk[W * H * 4];
    pattern(rgb, W, H, 3);
    pattern(grey, W, H, 1);
    pattern(cmyk, W, H, 4);
    const struct {
        const char *name;
        const uint8_t *px;
        int pf, subsamp, quality, flags;
    } cases[] = {
        {"baseline-420.jpg", rgb, TJPF_RGB, TJSAMP_420, 75, 0},
        {"baseline-444.jpg", rgb, TJPF_RGB, TJSAMP_444, 95, 0},
        {"baseline-422.jpg", rgb, TJPF_RGB, TJSAMP_422, 60, 0},
        {"grey.jpg", grey, TJPF_GRAY, TJSAMP_GRAY, 80, 0},
        {"progressive.jpg", rgb, TJPF_RGB, TJSAMP_420, 80, TJFLAG_PROGRESSIVE},
        {"cmyk.jpg", cmyk, TJPF_CMYK, TJSAMP_444, 80, 0},
    };
    unsigned char *first = NULL;
    unsigned long first_len = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tjhandle tj = tjInitCompress();
        unsigned char *buf = NULL;
        unsigned long len = 0;
        if (tjCompress2(tj, cases[i].px, W, 0, H, cases[i].pf, &buf, &len, cases[i].subsamp,
                        cases[i].quality, cases[i].flags) != 0) {
            fprintf(stderr, "%s: %s\n", cases[i].name, tjGetErrorStr2(tj));
            exit(1);
        }
        write_seed("jpeg", cases[i].name, buf, len);
        /* What cameras and interrupted writes leave: no EOI marker, the scans whole. */
        if (i == 0) write_seed("jpeg", "no-eoi-baseline.jpg", buf, len - 2);
        if (cases[i].flags & TJFLAG_PROGRESSIVE)
            write_seed("jpeg", "no-eoi-progressive.jpg", buf, len - 2);
        /* Recoverable damage before the scan, and (progressive) after the first scan's data. */
        if (i == 0) jpeg_extraneous_seeds("extraneous-before-sos", buf, len, 2, 0xDA, 0xDA);
        if (cases[i].flags & TJFLAG_PROGRESSIVE) {
            size_t sos = 2;
            while (sos + 1 < len && !(buf[sos] == 0xFF && buf[sos + 1] == 0xDA))
                sos++;
            jpeg_extraneous_seeds("extraneous-after-scan", buf, len, sos + 2, 0xC4, 0xDA);
        }
        /* CMYK without Adobe's APP14 marker (libjpeg writes one): read as plain CMYK. */
        for (size_t k = 2; cases[i].pf == TJPF_CMYK && k + 4 < len; k++)
            if (buf[k] == 0xFF && buf[k + 1] == 0xEE) {
                uint8_t out[8192];
                size_t seg = 2 + ((size_t)buf[k + 2] << 8 | buf[k + 3]);
                memcpy(out, buf, k);
                memcpy(out + k, buf + k + seg, len - k - seg);
                write_seed("jpeg", "cmyk-no-adobe.jpg", out, len - seg);
                break;
            }
        if (i == 0) {
            first = buf;
            first_len = len;
        } else {
            tjFree(buf);
        }
        tjDestroy(tj);
    }
    /* EXIF orientations 6 (big-endian) and 3 (little-endian), and 8 after the JFIF APP0. */
    const struct {
        const char *name;
        int o, be, after_app0;
    } ex[] = {{"exif-6-be.jpg", 6, 1, 0}, {"exif-3-le.jpg", 3, 0, 0}, {"exif-8-app0.jpg", 8, 1, 1}};
    for (size_t i = 0; i < 3; i++) {
        uint8_t out[8192], t[32];
        size_t tl = tiff(ex[i].o, ex[i].be, t);
        size_t at = ex[i].after_app0 ? 4 + ((size_t)first[4] << 8 | first[5]) : 2;
        size_t n = 0;
        memcpy(out, first, at);
        n = at;
        size_t seg = 2 + 6 + tl;
        out[n++] = 0xFF, out[n++] = 0xE1, out[n++] = (uint8_t)(seg >> 8), out[n++] = (uint8_t)seg;
        memcpy(out + n, "Exif\0\0", 6);
        n += 6;
        memcpy(out + n, t, tl);
        n += tl;
        memcpy(out + n, first + at, first_len - at);
        n += first_len - at;
        write_seed("jpeg", ex[i].name, out, n);
    }
    /* An ICC profile in two APP2 segments (as photo editors write them), ignored as
     * TensorFlow's decoder ignores it. */
    {
        uint8_t out[8192];
        size_t n = 2;
        memcpy(out, first, 2);
        for (int k = 1; k <= 2; k++) {
            const size_t seg = 2 + 14 + 400;
            out[n++] = 0xFF, out[n++] = 0xE2, out[n++] = (uint8_t)(seg >> 8),
            out[n++] = (uint8_t)seg;
            memcpy(out + n, "ICC_PROFILE\0", 12);
            out[n + 12] = (uint8_t)k, out[n + 13] = 2;
            memset(out + n + 14, 0x40 + k, 400);
            n += seg - 2;
        }
        memcpy(out + n, first + 2, first_len - 2);
        write_seed("jpeg", "icc-profile.jpg", out, n + first_len - 2);
    }
    /* A 64x64 image, so the 1/2, 1/4 and 1/8 scales all apply. */
    uint8_t big[64 * 64 * 3];
    pattern(big, 64, 64, 3);
    img_image img = {64, 64, 3, big};
    uint8_t *buf;
    size_t len;
    if (img_encode_jpeg(&img, 50, &buf, &len) != 0) exit(1);
    write_seed("jpeg", "scalable-64.jpg", buf, len);
    free(buf);
    tjFree(first);
}

static void png_seed(const char *name, uint32_t w, uint32_t h, uint8_t type, uint8_t depth,
                     int interlace, int with_trns, int with_exif, int with_xmp)
{
    uint8_t raw[4096];
    int spp = type == 0 || type == 3 ? 1 : type == 4 ? 2 : type == 2 ? 3 : 4;
    size_t row = (w * spp * depth + 7) / 8;
    for (size_t i = 0; i < row * h; i++)
        raw[i] = (uint8_t)(i * 37 + i / row * 11);
    if (type == 3 && depth == 8)
        for (size_t i = 0; i < row * h; i++)
            raw[i] %= 16;
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    struct spng_ihdr ihdr = {w, h, depth, type, 0, 0, (uint8_t)interlace};
    spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
    spng_set_ihdr(ctx, &ihdr);
    if (type == 3) {
        struct spng_plte plte = {.n_entries = depth == 8 ? 16 : 1u << depth};
        for (uint32_t i = 0; i < plte.n_entries; i++)
            plte.entries[i] = (struct spng_plte_entry){(uint8_t)(i * 16), (uint8_t)(255 - i * 9),
                                                       (uint8_t)(i * 5), 255};
        spng_set_plte(ctx, &plte);
        if (with_trns) {
            struct spng_trns trns = {.n_type3_entries = 2, .type3_alpha = {0, 128}};
            spng_set_trns(ctx, &trns);
        }
    }
    if (with_exif) {
        uint8_t t[32];
        struct spng_exif exif = {.length = tiff(6, 0, t), .data = (char *)t};
        spng_set_exif(ctx, &exif);
    }
    /* Photoshop's XMP packet in a compressed iTXt chunk: it inflates to far more than the
     * file's size. */
    char xmp[4000];
    for (size_t i = 0; i < sizeof xmp; i++)
        xmp[i] = "<rdf:Description xmp:CreatorTool=\"Adobe Photoshop\"/>\n"[i % 53];
    struct spng_text text = {.keyword = "XML:com.adobe.xmp",
                             .type = SPNG_ITXT,
                             .compression_flag = 1,
                             .length = sizeof xmp,
                             .text = xmp,
                             .language_tag = "",
                             .translated_keyword = ""};
    int err = with_xmp ? spng_set_text(ctx, &text, 1) : 0;
    if (err) {
        fprintf(stderr, "%s: %s\n", name, spng_strerror(err));
        exit(1);
    }
    err = spng_encode_image(ctx, raw, row * h, SPNG_FMT_RAW, SPNG_ENCODE_FINALIZE);
    if (err) {
        fprintf(stderr, "%s: %s\n", name, spng_strerror(err));
        exit(1);
    }
    size_t len;
    void *png = spng_get_png_buffer(ctx, &len, &err);
    write_seed("png", name, png, len);
    free(png);
    spng_ctx_free(ctx);
}

static void png_seeds(void)
{
    png_seed("grey-1.png", 13, 7, 0, 1, 0, 0, 0, 0);
    png_seed("grey-2.png", 9, 5, 0, 2, 0, 0, 0, 0);
    png_seed("grey-4.png", 9, 5, 0, 4, 0, 0, 0, 0);
    png_seed("grey-8.png", 9, 5, 0, 8, 0, 0, 0, 0);
    png_seed("grey-16.png", 9, 5, 0, 16, 0, 0, 0, 0);
    png_seed("grey-alpha-8.png", 9, 5, 4, 8, 0, 0, 0, 0);
    png_seed("grey-alpha-16.png", 9, 5, 4, 16, 0, 0, 0, 0);
    png_seed("rgb-8.png", 9, 5, 2, 8, 0, 0, 0, 0);
    png_seed("rgb-16.png", 9, 5, 2, 16, 0, 0, 0, 0);
    png_seed("rgba-8.png", 9, 5, 6, 8, 0, 0, 0, 0);
    png_seed("rgba-16.png", 9, 5, 6, 16, 0, 0, 0, 0);
    png_seed("palette-1.png", 17, 3, 3, 1, 0, 0, 0, 0);
    png_seed("palette-2.png", 9, 5, 3, 2, 0, 0, 0, 0);
    png_seed("palette-4-trns.png", 9, 5, 3, 4, 0, 1, 0, 0);
    png_seed("rgb-8-xmp.png", 9, 5, 2, 8, 0, 0, 0, 1);
    png_seed("palette-8.png", 9, 5, 3, 8, 0, 0, 0, 0);
    png_seed("rgb-8-interlaced.png", 19, 11, 2, 8, 1, 0, 0, 0);
    png_seed("rgb-8-exif.png", 8, 6, 2, 8, 0, 0, 1, 0);
    uint8_t px[16 * 12 * 3];
    pattern(px, 16, 12, 3);
    img_image img = {16, 12, 3, px};
    uint8_t *buf;
    size_t len;
    if (img_encode_png(&img, &buf, &len) != 0) exit(1);
    write_seed("png", "ours-16x12.png", buf, len);
    free(buf);
}

static void webp_seeds(void)
{
    enum { W = 24, H = 16 };
    uint8_t rgb[W * H * 3], rgba[W * H * 4];
    pattern(rgb, W, H, 3);
    pattern(rgba, W, H, 4);
    uint8_t *out;
    size_t len = WebPEncodeRGB(rgb, W, H, W * 3, 70, &out);
    write_seed("webp", "lossy.webp", out, len);
    WebPFree(out);
    len = WebPEncodeRGBA(rgba, W, H, W * 4, 70, &out);
    write_seed("webp", "lossy-alpha.webp", out, len);
    WebPFree(out);
    len = WebPEncodeLosslessRGBA(rgba, W, H, W * 4, &out);
    write_seed("webp", "lossless-alpha.webp", out, len);
    WebPFree(out);
    len = WebPEncodeLosslessRGB(rgb, W, H, W * 3, &out);
    write_seed("webp", "lossless.webp", out, len);
    /* Extended: VP8X with the EXIF flag, the VP8L chunk, an EXIF chunk (orientation 6). */
    uint8_t file[8192], t[32];
    size_t n = 12;
    memcpy(file + n, "VP8X\x0a\0\0\0\x08\0\0\0", 12);
    file[n + 12] = W - 1, file[n + 13] = 0, file[n + 14] = 0;
    file[n + 15] = H - 1, file[n + 16] = 0, file[n + 17] = 0;
    n += 18;
    memcpy(file + n, out + 12, len - 12);
    n += len - 12;
    size_t tl = tiff(6, 1, t);
    memcpy(file + n, "EXIF", 4);
    file[n + 4] = (uint8_t)tl, file[n + 5] = 0, file[n + 6] = 0, file[n + 7] = 0;
    memcpy(file + n + 8, t, tl);
    n += 8 + tl + (tl & 1);
    memcpy(file, "RIFF", 4);
    uint32_t riff = (uint32_t)(n - 8);
    file[4] = (uint8_t)riff, file[5] = (uint8_t)(riff >> 8), file[6] = (uint8_t)(riff >> 16),
    file[7] = (uint8_t)(riff >> 24);
    memcpy(file + 8, "WEBP", 4);
    write_seed("webp", "extended-exif.webp", file, n);
    WebPFree(out);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR (with jpeg/, png/, webp/ inside)\n", argv[0]);
        return 2;
    }
    root = argv[1];
    jpeg_seeds();
    png_seeds();
    webp_seeds();
    return 0;
}
