/*
 * Decoders: JPEG (TurboJPEG API of libjpeg-turbo, with DCT scaling; libjpeg's own API for a
 * file that warns), PNG (libspng), WebP (libwebp), then EXIF orientation. Each decoder reads the header, checks the stored size
 * against the limits, and only then allocates the pixels.
 */
#include "base/base.h"
#include "img/img.h"
#include "img/img_private.h"

#include <spng.h>
#include <turbojpeg.h>
#include <webp/decode.h>

#include <setjmp.h>
#include <stdio.h>
/* jpeglib.h needs FILE and size_t declared first. */
#include <jerror.h>
#include <jpeglib.h>
#include <stdlib.h>
#include <string.h>

/* Zero or negative sizes are malformed input; sizes over a limit are refused. */
static int check_size(img_format f, int64_t w, int64_t h, const img_limits *lim)
{
    const char *name = img_format_name(f);
    if (w <= 0 || h <= 0)
        return base_error_set(BASE_ERR_FORMAT, "%s: empty image (%lldx%lld)", name, (long long)w,
                              (long long)h);
    if (w > lim->max_dimension || h > lim->max_dimension)
        return base_error_set(BASE_ERR_LIMIT, "%s: %lldx%lld exceeds the %d pixel side limit", name,
                              (long long)w, (long long)h, lim->max_dimension);
    if (w * h > lim->max_pixels)
        return base_error_set(
            BASE_ERR_LIMIT, "%s: %lldx%lld = %lld pixels exceeds the limit of %lld", name,
            (long long)w, (long long)h, (long long)(w * h), (long long)lim->max_pixels);
    return 0;
}

/* ---- JPEG ---- */

/*
 * Whether a libjpeg warning means the image data stopped early: JWRN_JPEG_EOF ("Premature end
 * of JPEG file": the bytes ran out) or JWRN_HIT_MARKER ("Corrupt JPEG data: premature end of
 * data segment": a marker, e.g. EOI, came before the scan was complete). TurboJPEG gives only
 * the text; these messages have been stable in libjpeg for decades.
 */
static int jpeg_is_truncation(const char *msg)
{
    return msg && strcasestr(msg, "premature end") != NULL;
}

/* JWRN_JPEG_EOF alone: the bytes ran out, which a file that lacks only its EOI marker does too
 * (libjpeg's Huffman decoder reads ahead of the bits it needs, and its memory source inserts
 * an EOI where the data ends). */
static int jpeg_ran_out(const char *msg)
{
    return msg && strstr(msg, "Premature end of JPEG file") != NULL;
}

/*
 * What a walk of a JPEG's marker segments and scans found. libjpeg reports neither where the
 * data ended nor which scans it saw, and both decide whether a file without EOI is whole.
 */
typedef struct jpeg_layout {
    int adobe;           /* an APP14 "Adobe" segment that libjpeg recognises (saw_Adobe_marker) */
    int huffman;         /* the frame is Huffman-coded (SOF0, SOF1, SOF2) */
    int ran_out;         /* the data ends before an EOI marker: in a marker segment, between
                          * segments or in a scan's entropy-coded data */
    int ends_in_headers; /* ran out inside a marker segment or before the first scan's header
                          * (SOS) is whole: libjpeg then knows no image (0x0) or reports the
                          * cut segment as bogus ("Bogus DQT index") */
    int ends_in_scan;    /* the data ends inside a scan's entropy-coded data, before any EOI */
    int scans_complete;  /* the scans hold every coefficient of every component at full
                          * precision (sequential: each component in a scan; progressive: each
                          * coefficient 0..63 in a scan with Al = 0) */
} jpeg_layout;

/* libjpeg's MAX_COMPONENTS: a frame with more is refused by it anyway. */
enum { JPEG_MAX_COMPONENTS = 10 };

/*
 * Walks SOI, the marker segments and, unless headers_only, each scan's entropy-coded data
 * (skipping stuffed FF 00 and RSTn) to the first EOI or the end of the data. Bytes before a
 * marker are skipped as libjpeg skips them (with its warning "N extraneous bytes before
 * marker"), so that the walk goes on wherever libjpeg's decode does. Any malformed structure
 * ends the walk with what was found so far: the result only ever makes the decoder refuse more
 * (ran_out, ends_in_scan and scans_complete stay 0 unless everything up to the end parsed;
 * ends_in_headers stays 0 when the segment chain breaks some other way, which is not truncation:
 * libjpeg's own message then says what is wrong).
 */
static void jpeg_walk(const uint8_t *data, size_t len, int headers_only, jpeg_layout *out)
{
    *out = (jpeg_layout){0};
    int n_comp = 0, progressive = 0, ids[JPEG_MAX_COMPONENTS];
    uint64_t final[JPEG_MAX_COMPONENTS] = {0}; /* bit k: coefficient k complete */
    size_t i = 2;
    int scans = 0; /* scan headers (SOS) read whole */
    for (;;) {
        if (i + 2 > len) { /* no room for the next marker */
            out->ran_out = 1;
            out->ends_in_headers = !scans;
            return;
        }
        if (data[i] != 0xFF || data[i + 1] == 0x00) { /* extraneous: a byte, or FF 00 */
            i += data[i] == 0xFF ? 2 : 1;
            continue;
        }
        const uint8_t marker = data[i + 1];
        if (marker == 0xFF) { /* fill byte */
            i++;
            continue;
        }
        i += 2;
        if (marker == 0xD9) return;                                         /* EOI */
        if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) continue; /* no length */
        if (marker == 0xD8) return;
        if (i + 2 > len) { /* inside a segment's length */
            out->ran_out = 1;
            out->ends_in_headers = !scans;
            return;
        }
        const size_t seg = (size_t)data[i] << 8 | data[i + 1];
        if (seg < 2) return;
        if (seg > len - i) { /* inside a segment */
            out->ran_out = 1;
            out->ends_in_headers = !scans;
            return;
        }
        const uint8_t *p = data + i + 2;
        const size_t plen = seg - 2;
        i += seg;
        if (marker == 0xEE && plen >= 12 && memcmp(p, "Adobe", 5) == 0) out->adobe = 1;
        if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 &&
            marker != 0xCC) { /* SOFn: P, Y, X, Nf, then Nf * (id, sampling, table) */
            if (plen < 6 || n_comp) return;
            n_comp = p[5];
            if (n_comp < 1 || n_comp > JPEG_MAX_COMPONENTS || plen < 6 + 3 * (size_t)n_comp) return;
            for (int c = 0; c < n_comp; c++)
                ids[c] = p[6 + 3 * c];
            progressive = marker == 0xC2 || marker == 0xC6 || marker == 0xCA || marker == 0xCE;
            out->huffman = marker == 0xC0 || marker == 0xC1 || marker == 0xC2;
            continue;
        }
        if (marker != 0xDA) continue;
        /* SOS: Ns, Ns * (id, tables), Ss, Se, Ah << 4 | Al */
        scans++;
        if (headers_only || !n_comp || plen < 1 || plen < 4 + 2 * (size_t)p[0]) return;
        const int ns = p[0], ss = p[1 + 2 * ns], se = p[2 + 2 * ns], al = p[3 + 2 * ns] & 15;
        /* A sequential scan holds every coefficient whatever its Ss, Se, Ah and Al say: libjpeg
         * warns ("Invalid SOS parameters for sequential JPEG"; some baseline files have zeroes
         * there) and decodes it as sequential. */
        if (progressive && (ss > se || se > 63)) return;
        const uint64_t coefs = !progressive ? ~0ull : al ? 0 : (~0ull >> (63 - se)) & (~0ull << ss);
        for (int s = 0; s < ns; s++)
            for (int c = 0; c < n_comp; c++)
                if (ids[c] == p[1 + 2 * s]) final[c] |= coefs;
        int complete = 1;
        for (int c = 0; c < n_comp; c++)
            complete &= final[c] == ~0ull;
        out->scans_complete = complete;
        /* The entropy-coded data: up to a byte FF that is neither stuffing (FF 00), a restart
         * marker nor a fill byte before a marker. */
        for (;;) {
            const uint8_t *ff = memchr(data + i, 0xFF, len - i);
            if (!ff) {
                out->ran_out = out->ends_in_scan = 1;
                return;
            }
            i = (size_t)(ff - data);
            if (i + 1 >= len) { /* a marker's first byte, or stuffing cut in two */
                out->ran_out = out->ends_in_scan = 1;
                return;
            }
            const uint8_t next = data[i + 1];
            if (next == 0x00 || (next >= 0xD0 && next <= 0xD7))
                i += 2;
            else if (next == 0xFF)
                i++;
            else
                break; /* the next marker */
        }
    }
}

/*
 * A header libjpeg refuses. Valid JPEG processes that libjpeg-turbo 2.x does not decode (samples
 * of more than 8 bits; lossless and hierarchical frames, SOF3, SOF5-7, SOF11, SOF13-15) say
 * which, so that the sender knows to re-save the file as 8-bit baseline or progressive JPEG;
 * they stay BASE_ERR_FORMAT, as every header libjpeg refuses (test_decode's 12-bit case).
 * libjpeg's messages ("Unsupported JPEG data precision %d", "Unsupported JPEG process: SOF type
 * 0x%02x") are the only place TurboJPEG says so.
 */
static int jpeg_header_error(const char *msg)
{
    const char *p;
    if (msg && (p = strstr(msg, "Unsupported JPEG data precision ")) != NULL)
        return base_error_set(BASE_ERR_FORMAT,
                              "jpeg: %d-bit samples are not supported (only 8-bit JPEG): %s",
                              atoi(p + strlen("Unsupported JPEG data precision ")), msg);
    if (msg && (p = strstr(msg, "SOF type 0x")) != NULL) {
        long sof = strtol(p + strlen("SOF type 0x"), NULL, 16);
        const char *what = sof == 0xC3 || sof == 0xCB   ? "lossless JPEG"
                           : sof == 0xC7 || sof == 0xCF ? "lossless hierarchical JPEG"
                                                        : "hierarchical JPEG";
        return base_error_set(BASE_ERR_FORMAT,
                              "jpeg: %s (SOF%ld) is not supported (baseline, extended and "
                              "progressive JPEG are): %s",
                              what, sof - 0xC0, msg);
    }
    return base_error_set(BASE_ERR_FORMAT, "jpeg: bad header: %s", msg ? msg : "unknown error");
}

/* The largest reduction 1/8, 1/4, 1/2 that keeps the shorter side >= min_side and that this
 * libjpeg-turbo offers; 1 when none does. */
static int jpeg_scale_denom(int w, int h, int min_side)
{
    if (min_side <= 0) return 1;
    int n = 0;
    const tjscalingfactor *sf = tjGetScalingFactors(&n);
    for (int denom = 8; denom >= 2; denom /= 2) {
        int offered = 0;
        for (int i = 0; sf && i < n; i++)
            offered |= sf[i].num == 1 && sf[i].denom == denom;
        if (!offered) continue;
        tjscalingfactor f = {1, denom};
        int sw = TJSCALED(w, f), sh = TJSCALED(h, f);
        if ((sw < sh ? sw : sh) >= min_side) return denom;
    }
    return 1;
}

/*
 * CMYK to RGB as TensorFlow's decode_jpeg does it (the reference that tfjs-node's decodeImage
 * runs), to the bit: Adobe's CMYK (a file with Adobe's APP14 marker, as Photoshop writes it) is
 * stored inverted (255 = no ink), so R = C * K / 255; plain CMYK without that marker is not, so
 * R = (255 - C) * (255 - K) / 255. Both truncate, as the reference does.
 */
static void cmyk_to_rgb(const uint8_t *cmyk, uint8_t *rgb, size_t pixels, int adobe)
{
    for (size_t i = 0; i < pixels; i++) {
        unsigned c = cmyk[4 * i], m = cmyk[4 * i + 1], y = cmyk[4 * i + 2], k = cmyk[4 * i + 3];
        if (!adobe) c = 255 - c, m = 255 - m, y = 255 - y, k = 255 - k;
        rgb[3 * i] = (uint8_t)(c * k / 255);
        rgb[3 * i + 1] = (uint8_t)(m * k / 255);
        rgb[3 * i + 2] = (uint8_t)(y * k / 255);
    }
}

/* A copy of the data with an EOI marker appended (what libjpeg's memory source reads where the
 * data ends), or NULL with the error set. */
static uint8_t *jpeg_append_eoi(const uint8_t *data, size_t len)
{
    uint8_t *whole = malloc(len + 2);
    if (!whole) {
        base_error_set(BASE_ERR_NOMEM, "jpeg: %zu bytes", len + 2);
        return NULL;
    }
    memcpy(whole, data, len);
    whole[len] = 0xFF, whole[len + 1] = 0xD9;
    return whole;
}

/*
 * The bytes ran out before an EOI marker. A file that lacks only its EOI (cameras and
 * interrupted writes leave such files; browsers and TensorFlow show them) holds every bit of
 * its last scan: decoded with an EOI appended, libjpeg needs no bit that is not there and warns
 * of nothing, so the image is the complete file's. Cut inside the scan data, the same decode
 * warns (JWRN_HIT_MARKER; JWRN_MUST_RESYNC where a restart marker is missing) and would paint
 * the rest grey: that is truncated, and so are a file whose scans so far do not complete the
 * image (a progressive file cut between scans decodes without a warning, blurred) and an
 * arithmetic-coded one (libjpeg's arithmetic decoder pads missing data without a warning).
 */
static int jpeg_decode_without_eoi(tjhandle tj, const uint8_t *data, size_t len, uint8_t *dst,
                                   int width, int height, int pixel_format)
{
    jpeg_layout layout;
    jpeg_walk(data, len, 0, &layout);
    if (!layout.scans_complete)
        return base_error_set(BASE_ERR_FORMAT,
                              "jpeg: truncated data (%zu bytes): it ends before the scans that "
                              "complete the image",
                              len);
    if (!layout.ends_in_scan || !layout.huffman)
        return base_error_set(BASE_ERR_FORMAT,
                              "jpeg: truncated data (%zu bytes): Premature end of JPEG file", len);
    uint8_t *whole = jpeg_append_eoi(data, len);
    if (!whole) return BASE_ERR_NOMEM;
    int rc = 0;
    if (tjDecompress2(tj, whole, (unsigned long)len + 2, dst, width, 0, height, pixel_format,
                      TJFLAG_LIMITSCANS | TJFLAG_STOPONWARNING) != 0)
        rc = base_error_set(BASE_ERR_FORMAT,
                            "jpeg: truncated data (%zu bytes): the image data is cut short: %s",
                            len, tjGetErrorStr2(tj));
    else
        LOG_DEBUG("jpeg: %zu bytes without an EOI marker: the image data is whole", len);
    free(whole);
    return rc;
}

/*
 * libjpeg's error manager for the decode of a file that warns: libjpeg reports only the first
 * warning of a decode (TurboJPEG keeps only that one's text), so a later one that says the image
 * data stopped early (JWRN_HIT_MARKER: a marker, e.g. an EOI, came before the scan was
 * complete; JWRN_JPEG_EOF: the bytes ran out) would be hidden behind an earlier, recoverable
 * one, and the rest of the image painted grey. This one sees every warning's code.
 */
typedef struct jpeg_checked_errors {
    struct jpeg_error_mgr pub;
    jmp_buf fatal;
    int truncated;                 /* a warning said the image data stopped early */
    char message[JMSG_LENGTH_MAX]; /* that warning's text, or the fatal error's */
} jpeg_checked_errors;

static void checked_error_exit(j_common_ptr c)
{
    jpeg_checked_errors *e = (jpeg_checked_errors *)c->err;
    c->err->format_message(c, e->message);
    longjmp(e->fatal, 1);
}

static void checked_emit_message(j_common_ptr c, int level)
{
    jpeg_checked_errors *e = (jpeg_checked_errors *)c->err;
    if (level >= 0) return; /* trace messages */
    c->err->num_warnings++;
    const int code = c->err->msg_code;
    if ((code == JWRN_HIT_MARKER || code == JWRN_JPEG_EOF) && !e->truncated) {
        e->truncated = 1;
        c->err->format_message(c, e->message);
    }
}

/* TJFLAG_LIMITSCANS's bound, which TurboJPEG sets through a progress monitor too: a
 * progressive file of thousands of tiny scans costs a full pass over the image each. */
enum { JPEG_MAX_SCANS = 500 };

static void checked_progress(j_common_ptr c)
{
    j_decompress_ptr d = (j_decompress_ptr)c;
    if (d->is_decompressor && d->progressive_mode && d->input_scan_number > JPEG_MAX_SCANS) {
        jpeg_checked_errors *e = (jpeg_checked_errors *)c->err;
        snprintf(e->message, sizeof e->message, "Progressive JPEG image has more than %d scans",
                 JPEG_MAX_SCANS);
        longjmp(e->fatal, 1);
    }
}

/*
 * Decodes a file that warns, as TurboJPEG's tjDecompress2 does (the same settings: integer DCT,
 * fancy upsampling, DCT scaling 1/denom, RGB or CMYK out), to the same pixels, but refusing it
 * when any warning says the image data stopped early, or when its scans do not complete the
 * image (`scans_complete`, from the caller's jpeg_walk: a progressive file cut between scans and
 * closed with an EOI decodes blurred, without a warning). `first` is the warning TurboJPEG
 * stopped at.
 */
static int jpeg_decode_checked(const uint8_t *data, size_t len, int scans_complete, int denom,
                               int cmyk, uint8_t *dst, int width, int height, const char *first)
{
    struct jpeg_decompress_struct d;
    jpeg_checked_errors e = {0};
    struct jpeg_progress_mgr progress = {.progress_monitor = checked_progress};
    d.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = checked_error_exit;
    e.pub.emit_message = checked_emit_message;
    jpeg_create_decompress(&d);
    if (setjmp(e.fatal)) {
        jpeg_destroy_decompress(&d);
        return base_error_set(BASE_ERR_FORMAT, "jpeg: corrupt data: %s", e.message);
    }
    d.progress = &progress;
    jpeg_mem_src(&d, data, (unsigned long)len);
    jpeg_read_header(&d, TRUE);
    d.scale_num = 1;
    d.scale_denom = (unsigned)denom;
    d.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    d.dct_method = JDCT_ISLOW;
    d.do_fancy_upsampling = TRUE;
    jpeg_start_decompress(&d);
    if ((int)d.output_width != width || (int)d.output_height != height) {
        snprintf(e.message, sizeof e.message, "decodes to %ux%u, its header says %dx%d",
                 d.output_width, d.output_height, width, height);
        longjmp(e.fatal, 1);
    }
    const size_t stride = (size_t)width * (cmyk ? 4 : 3);
    while (d.output_scanline < d.output_height) {
        JSAMPROW row = dst + stride * d.output_scanline;
        jpeg_read_scanlines(&d, &row, 1);
    }
    if (!e.truncated) jpeg_finish_decompress(&d);
    jpeg_destroy_decompress(&d);
    if (e.truncated)
        return base_error_set(BASE_ERR_FORMAT,
                              "jpeg: truncated data (%zu bytes): %s, after a warning (%s)", len,
                              e.message, first);
    if (!scans_complete)
        return base_error_set(BASE_ERR_FORMAT,
                              "jpeg: truncated data (%zu bytes): its scans do not complete the "
                              "image, after a warning (%s)",
                              len, first);
    LOG_DEBUG("jpeg: %dx%d decoded with %ld warnings, the first: %s", width, height,
              e.pub.num_warnings, first);
    return 0;
}

static int decode_jpeg(const uint8_t *data, size_t len, const img_limits *lim, int min_side,
                       img_image *out, img_decode_info *info)
{
    int rc, w = 0, h = 0, subsamp = 0, colorspace = 0;
    uint8_t *cmyk = NULL;
    tjhandle tj = tjInitDecompress();
    if (!tj) return base_error_set(BASE_ERR_NOMEM, "jpeg: %s", tjGetErrorStr2(NULL));
    /* A file cut in its headers: TurboJPEG answers 0x0 (its source reads a fake EOI where the
     * data ends, before any frame header) or whatever the cut segment looks like ("Bogus DQT
     * index"); say what is wrong. */
    int header_failed =
        tjDecompressHeader3(tj, data, (unsigned long)len, &w, &h, &subsamp, &colorspace) != 0;
    /* A warning in the headers (bytes before a marker, which libjpeg skips) fails the call all
     * the same, though the headers were read whole; the decode below tolerates such a warning
     * as it does one in the image data. The sizes and types are set only once the headers are
     * read, and a fatal error after a warning reads as TJERR_WARNING too. */
    if (header_failed && tjGetErrorCode(tj) == TJERR_WARNING && w > 0 && h > 0 && subsamp >= 0 &&
        colorspace >= 0 && !jpeg_is_truncation(tjGetErrorStr2(tj)))
        header_failed = 0;
    /* The marker segments up to the first scan: a few of them, read in microseconds. */
    jpeg_layout headers;
    jpeg_walk(data, len, 1, &headers);
    if ((header_failed || w == 0 || h == 0) && headers.ends_in_headers) {
        rc = base_error_set(BASE_ERR_FORMAT,
                            "jpeg: truncated data (%zu bytes): it ends in the headers, before "
                            "the image data",
                            len);
        goto fail;
    }
    if (header_failed) {
        rc = jpeg_header_error(tjGetErrorStr2(tj));
        goto fail;
    }
    rc = check_size(IMG_FORMAT_JPEG, w, h, lim);
    if (rc) goto fail;
    info->orig_width = w;
    info->orig_height = h;
    const int denom = jpeg_scale_denom(w, h, min_side);
    const tjscalingfactor f = {1, denom};
    const int sw = TJSCALED(w, f), sh = TJSCALED(h, f);
    info->scale_denom = denom;

    /* libjpeg converts every colour space to RGB except CMYK and YCCK, which come out as
     * CMYK for us to convert (inverted or not: Adobe's marker says). */
    const int is_cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK;
    rc = img_alloc(out, sw, sh, 3);
    if (rc) goto fail;
    uint8_t *dst = out->data;
    if (is_cmyk) {
        cmyk = malloc((size_t)sw * sh * 4);
        if (!cmyk) {
            rc = base_error_set(BASE_ERR_NOMEM, "jpeg: %dx%d CMYK buffer", sw, sh);
            goto fail;
        }
        dst = cmyk;
    }
    const int pf = is_cmyk ? TJPF_CMYK : TJPF_RGB;
    /* First pass stops at the first warning, so truncated data fails as soon as it runs out
     * (instead of decoding megapixels of grey), unless all that is missing is the EOI marker.
     * A warning that is not truncation is decoded again without stopping, to tolerate the
     * recoverable damage real files carry. */
    const int flags = TJFLAG_LIMITSCANS | TJFLAG_STOPONWARNING;
    if (tjDecompress2(tj, data, (unsigned long)len, dst, sw, 0, sh, pf, flags) != 0) {
        const char *msg = tjGetErrorStr2(tj);
        if (tjGetErrorCode(tj) == TJERR_FATAL) {
            rc = base_error_set(BASE_ERR_FORMAT, "jpeg: corrupt data: %s", msg);
            goto fail;
        }
        if (jpeg_ran_out(msg)) {
            rc = jpeg_decode_without_eoi(tj, data, len, dst, sw, sh, pf);
            if (rc) goto fail;
        } else if (jpeg_is_truncation(msg)) {
            rc = base_error_set(BASE_ERR_FORMAT, "jpeg: truncated data (%zu bytes): %s", len, msg);
            goto fail;
        } else {
            /* libjpeg reports only the first warning of a decode, so what follows this one is
             * hidden from TurboJPEG: decoded again with libjpeg's own API, which sees each.
             * Data that runs out inside its last scan is decoded with an EOI appended, as
             * jpeg_decode_without_eoi does: whole when no bit it needs is missing. */
            char first[256];
            snprintf(first, sizeof first, "%s", msg);
            jpeg_layout layout;
            jpeg_walk(data, len, 0, &layout);
            if (layout.ran_out && !(layout.ends_in_scan && layout.huffman)) {
                rc = base_error_set(BASE_ERR_FORMAT,
                                    "jpeg: truncated data (%zu bytes): Premature end of JPEG file, "
                                    "after a warning (%s)",
                                    len, first);
                goto fail;
            }
            uint8_t *whole = NULL;
            if (layout.ran_out && !(whole = jpeg_append_eoi(data, len))) {
                rc = BASE_ERR_NOMEM;
                goto fail;
            }
            rc = jpeg_decode_checked(whole ? whole : data, whole ? len + 2 : len,
                                     layout.scans_complete, denom, is_cmyk, dst, sw, sh, first);
            free(whole);
            if (rc) goto fail;
        }
    }
    if (is_cmyk) cmyk_to_rgb(cmyk, out->data, (size_t)sw * sh, headers.adobe);
    free(cmyk);
    tjDestroy(tj);
    return 0;
fail:
    free(cmyk);
    img_free(out);
    tjDestroy(tj);
    return rc;
}

/* ---- PNG ---- */

static int png_error(int err, const char *what)
{
    switch (err) {
    case SPNG_EUSER_WIDTH:
    case SPNG_EUSER_HEIGHT:
    case SPNG_ECHUNK_LIMITS:
        return base_error_set(BASE_ERR_LIMIT, "png: %s: %s", what, spng_strerror(err));
    case SPNG_EMEM: return base_error_set(BASE_ERR_NOMEM, "png: %s: %s", what, spng_strerror(err));
    case SPNG_IO_EOF:
        return base_error_set(BASE_ERR_FORMAT, "png: %s: truncated data: %s", what,
                              spng_strerror(err));
    default: return base_error_set(BASE_ERR_FORMAT, "png: %s: %s", what, spng_strerror(err));
    }
}

static int decode_png(const uint8_t *data, size_t len, const img_limits *lim, int no_exif,
                      img_image *out, img_decode_info *info)
{
    int rc, err;
    spng_ctx *ctx = spng_ctx_new(0);
    if (!ctx) return base_error_set(BASE_ERR_NOMEM, "png: spng_ctx_new");
    /* What spng keeps of the ancillary chunks (text, ICC, EXIF...) has a fixed bound, not one
     * of the file's size: a compressed iTXt XMP packet or iCCP profile inflates to many times
     * its bytes (a 557-byte PNG with 30 KB of XMP was refused), spng holds the inflated chunk
     * to the chunk size limit too, and counts each chunk's struct. 8 MB is libpng's default
     * bound for an inflated ancillary chunk, so what TensorFlow's and browsers' libpng read,
     * we read. No chunk in the file can be larger than the file. */
    const size_t cache = (size_t)8 << 20, chunk = len > cache ? len : cache;
    if ((err = spng_set_image_limits(ctx, (uint32_t)lim->max_dimension,
                                     (uint32_t)lim->max_dimension)) ||
        (err = spng_set_chunk_limits(ctx, chunk, cache)) ||
        (err = spng_set_png_buffer(ctx, data, len))) {
        rc = png_error(err, "setup");
        goto fail;
    }
    /* A zero side is a malformed header to spng, which may first report it against the
     * image limits; read IHDR's size ourselves to say what is wrong. */
    if (len >= 24 && memcmp(data + 12, "IHDR", 4) == 0) {
        uint32_t w = (uint32_t)data[16] << 24 | (uint32_t)data[17] << 16 | data[18] << 8 | data[19];
        uint32_t h = (uint32_t)data[20] << 24 | (uint32_t)data[21] << 16 | data[22] << 8 | data[23];
        if (w == 0 || h == 0) {
            rc = check_size(IMG_FORMAT_PNG, w, h, lim);
            goto fail;
        }
    }
    struct spng_ihdr ihdr;
    if ((err = spng_get_ihdr(ctx, &ihdr))) {
        if (err == SPNG_EUSER_WIDTH || err == SPNG_EUSER_HEIGHT) {
            rc = base_error_set(BASE_ERR_LIMIT, "png: header: %s (the side limit is %d)",
                                spng_strerror(err), lim->max_dimension);
            goto fail;
        }
        rc = png_error(err, "header");
        goto fail;
    }
    rc = check_size(IMG_FORMAT_PNG, ihdr.width, ihdr.height, lim);
    if (rc) goto fail;
    info->orig_width = (int)ihdr.width;
    info->orig_height = (int)ihdr.height;
    size_t size = 0;
    if ((err = spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &size))) {
        rc = png_error(err, "size");
        goto fail;
    }
    rc = img_alloc(out, (int)ihdr.width, (int)ihdr.height, 3);
    if (rc) goto fail;
    if (size != (size_t)out->width * out->height * 3) {
        rc = base_error_set(BASE_ERR_FORMAT, "png: decoded size %zu for %ux%u", size, ihdr.width,
                            ihdr.height);
        goto fail;
    }
    if ((err = spng_decode_image(ctx, out->data, size, SPNG_FMT_RGB8, 0))) {
        rc = png_error(err, "data");
        goto fail;
    }
    if (!no_exif) {
        struct spng_exif exif;
        if (spng_get_exif(ctx, &exif) == 0)
            info->orientation = img_exif_orientation_tiff((const uint8_t *)exif.data, exif.length);
        else /* spng refuses an eXIf chunk that keeps the JPEG "Exif\0\0" prefix */
            info->orientation = img_exif_orientation_png(data, len);
    }
    spng_ctx_free(ctx);
    return 0;
fail:
    img_free(out);
    spng_ctx_free(ctx);
    return rc;
}

/* ---- WebP ---- */

static const char *webp_status(VP8StatusCode s)
{
    switch (s) {
    case VP8_STATUS_OK: return "ok";
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "truncated data";
    }
    return "unknown status";
}

static int decode_webp(const uint8_t *data, size_t len, const img_limits *lim, img_image *out,
                       img_decode_info *info)
{
    WebPBitstreamFeatures feat;
    VP8StatusCode st = WebPGetFeatures(data, len, &feat);
    if (st != VP8_STATUS_OK)
        return base_error_set(BASE_ERR_FORMAT, "webp: bad header: %s", webp_status(st));
    if (feat.has_animation)
        return base_error_set(BASE_ERR_UNSUPPORTED, "webp: animated images are not supported");
    int rc = check_size(IMG_FORMAT_WEBP, feat.width, feat.height, lim);
    if (rc) return rc;
    info->orig_width = feat.width;
    info->orig_height = feat.height;
    rc = img_alloc(out, feat.width, feat.height, 3);
    if (rc) return rc;
    /* WebPDecode into our buffer (what WebPDecodeRGBInto does) to learn why it failed. */
    WebPDecoderConfig config;
    if (!WebPInitDecoderConfig(&config)) {
        img_free(out);
        return base_error_set(BASE_ERR_BACKEND, "webp: library version mismatch");
    }
    config.output.colorspace = MODE_RGB;
    config.output.is_external_memory = 1;
    config.output.u.RGBA.rgba = out->data;
    config.output.u.RGBA.stride = out->width * 3;
    config.output.u.RGBA.size = (size_t)out->width * out->height * 3;
    st = WebPDecode(data, len, &config);
    WebPFreeDecBuffer(&config.output); /* frees nothing of ours: the memory is external */
    if (st != VP8_STATUS_OK) {
        img_free(out);
        return base_error_set(BASE_ERR_FORMAT, "webp: %dx%d: %s", feat.width, feat.height,
                              webp_status(st));
    }
    return 0;
}

/* Whether `data` is too short to identify but starts like a JPEG, PNG or WebP signature. */
static int is_signature_prefix(const uint8_t *data, size_t len)
{
    static const uint8_t jpeg[3] = {0xFF, 0xD8, 0xFF}, png[8] = "\x89PNG\r\n\x1a\n";
    if (len < sizeof jpeg && memcmp(data, jpeg, len) == 0) return 1;
    if (len < sizeof png && memcmp(data, png, len) == 0) return 1;
    if (len < 12 && memcmp(data, "RIFF", len < 4 ? len : 4) == 0)
        return len <= 8 || memcmp(data + 8, "WEBP", len - 8) == 0;
    return 0;
}

/*
 * The name of an image format we do not decode but that users send, from its signature, or
 * NULL: HEIC is what iPhones save by default, AVIF what some Android phones and browsers save.
 * ISO media files ("ftyp" box) are told apart by their major and compatible brands.
 */
static const char *other_format_name(const uint8_t *data, size_t len)
{
    if (len >= 12 && memcmp(data + 4, "ftyp", 4) == 0) {
        size_t box = (size_t)data[0] << 24 | (size_t)data[1] << 16 | (size_t)data[2] << 8 | data[3];
        /* the brands are in the first bytes; a box size from the file bounds the walk */
        if (box < 16 || box > len) box = len;
        if (box > 256) box = 256;
        int heif = 0;
        /* the major brand at 8, then compatible brands from 16 (12..15: minor version) */
        for (size_t i = 8; i + 4 <= box; i += i == 8 ? 8 : 4) {
            const uint8_t *b = data + i;
            if (!memcmp(b, "avif", 4) || !memcmp(b, "avis", 4)) return "AVIF";
            if (!memcmp(b, "heic", 4) || !memcmp(b, "heix", 4) || !memcmp(b, "heim", 4) ||
                !memcmp(b, "heis", 4) || !memcmp(b, "hevc", 4) || !memcmp(b, "hevx", 4) ||
                !memcmp(b, "mif1", 4) || !memcmp(b, "msf1", 4))
                heif = 1;
        }
        return heif ? "HEIC/HEIF" : NULL;
    }
    if (len >= 6 && (!memcmp(data, "GIF87a", 6) || !memcmp(data, "GIF89a", 6))) return "GIF";
    if (len >= 4 && (!memcmp(data, "II*\0", 4) || !memcmp(data, "MM\0*", 4)))
        return "TIFF (or a camera raw file such as DNG)";
    if (len >= 12 && !memcmp(data, "\0\0\0\x0cjP  \r\n\x87\n", 12)) return "JPEG 2000";
    if ((len >= 2 && data[0] == 0xFF && data[1] == 0x0A) ||
        (len >= 12 && !memcmp(data, "\0\0\0\x0cJXL \r\n\x87\n", 12)))
        return "JPEG XL";
    if (len >= 14 && data[0] == 'B' && data[1] == 'M') return "BMP";
    return NULL;
}

int img_decode(const uint8_t *data, size_t len, const img_decode_options *opts, img_image *out,
               img_decode_info *info)
{
    if (!out) return base_error_set(BASE_ERR_INVALID, "img_decode: no output image");
    *out = (img_image){0};
    img_decode_info local;
    if (!info) info = &local;
    *info = (img_decode_info){.format = IMG_FORMAT_UNKNOWN, .orientation = 1, .scale_denom = 1};
    const img_decode_options defaults = {0};
    if (!opts) opts = &defaults;
    const img_limits lim = img_limits_resolve(&opts->limits);

    if (!data || len == 0) return base_error_set(BASE_ERR_FORMAT, "image: no data (0 bytes)");
    if (len > lim.max_bytes)
        return base_error_set(BASE_ERR_LIMIT, "image: %zu bytes exceeds the limit of %zu", len,
                              lim.max_bytes);
    const img_format f = img_detect_format(data, len);
    info->format = f;
    int rc;
    switch (f) {
    case IMG_FORMAT_JPEG:
        rc = decode_jpeg(data, len, &lim, opts->min_side, out, info);
        if (!rc && !opts->no_exif) info->orientation = img_exif_orientation_jpeg(data, len);
        break;
    case IMG_FORMAT_PNG: rc = decode_png(data, len, &lim, opts->no_exif, out, info); break;
    case IMG_FORMAT_WEBP:
        rc = decode_webp(data, len, &lim, out, info);
        if (!rc && !opts->no_exif) info->orientation = img_exif_orientation_webp(data, len);
        break;
    default: {
        if (is_signature_prefix(data, len))
            return base_error_set(BASE_ERR_FORMAT, "image: truncated data (%zu bytes)", len);
        char hex[3 * 8 + 1] = "";
        for (size_t i = 0, n = 0; i < len && i < 8; i++)
            n += (size_t)snprintf(hex + n, sizeof hex - n, "%s%02x", i ? " " : "", data[i]);
        const char *other = other_format_name(data, len);
        if (other)
            return base_error_set(BASE_ERR_UNSUPPORTED,
                                  "image: %s is not supported (JPEG, PNG and WebP are; starts %s)",
                                  other, hex);
        return base_error_set(BASE_ERR_UNSUPPORTED,
                              "image: unknown format (not JPEG, PNG or WebP; starts %s)", hex);
    }
    }
    if (rc) return rc;
    if (info->orientation != 1) {
        img_image upright;
        rc = img_apply_orientation(out, info->orientation, &upright);
        img_free(out);
        if (rc) return rc;
        *out = upright;
    }
    return 0;
}

int img_load_file(const char *path, const img_decode_options *opts, img_image *out,
                  img_decode_info *info)
{
    if (!out) return base_error_set(BASE_ERR_INVALID, "img_load_file: no output image");
    *out = (img_image){0};
    const img_limits lim = img_limits_resolve(opts ? &opts->limits : NULL);
    char *data = NULL;
    size_t len = 0;
    int rc = base_file_read(path, lim.max_bytes, &data, &len);
    if (rc) return rc;
    rc = img_decode((const uint8_t *)data, len, opts, out, info);
    free(data);
    return rc;
}
