/*
 * EXIF orientation: a small reader for tag 0x0112 in IFD0 of the TIFF structure that EXIF
 * carries, and the walks that find that structure in JPEG (APP1), PNG (eXIf chunk) and WebP
 * (EXIF chunk) files.
 * Everything here reads untrusted bytes: every offset is checked against the length before
 * it is used, and anything unexpected means "no orientation" (1), never an error, because a
 * broken EXIF block must not make an otherwise good image undecodable.
 */
#include "img/img_private.h"

#include <string.h>

static uint32_t read_u16(const uint8_t *p, int little_endian)
{
    return little_endian ? (uint32_t)p[0] | (uint32_t)p[1] << 8 : (uint32_t)p[0] << 8 | p[1];
}

static uint32_t read_u32(const uint8_t *p, int little_endian)
{
    if (little_endian)
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* The orientation tag's value 1..8 in IFD0, or 0 when there is none (or the block is
 * malformed, or the value is out of range). */
static int tiff_orientation(const uint8_t *data, size_t len)
{
    enum { TAG_ORIENTATION = 0x0112, TYPE_SHORT = 3, TYPE_LONG = 4, ENTRY_BYTES = 12 };
    if (!data) return 0;
    /* Some writers (WebP, PNG eXIf from some tools) keep the JPEG APP1 prefix. */
    if (len >= 6 && memcmp(data, "Exif\0\0", 6) == 0) {
        data += 6;
        len -= 6;
    }
    if (len < 8) return 0;
    int le;
    if (data[0] == 'I' && data[1] == 'I')
        le = 1;
    else if (data[0] == 'M' && data[1] == 'M')
        le = 0;
    else
        return 0;
    if (read_u16(data + 2, le) != 42) return 0;
    uint32_t ifd = read_u32(data + 4, le);
    if (ifd < 8 || ifd > len || len - ifd < 2) return 0;
    size_t count = read_u16(data + ifd, le);
    size_t fit = (len - ifd - 2) / ENTRY_BYTES;
    if (count > fit) count = fit; /* a truncated IFD: read the entries that are there */
    for (size_t i = 0; i < count; i++) {
        const uint8_t *e = data + ifd + 2 + i * ENTRY_BYTES;
        if (read_u16(e, le) != TAG_ORIENTATION) continue;
        uint32_t type = read_u16(e + 2, le), n = read_u32(e + 4, le);
        if (n < 1) return 0;
        /* The value (one SHORT, by the standard; a LONG from a few writers) fits in the
         * entry's 4-byte value field, left-justified. */
        uint32_t v;
        if (type == TYPE_SHORT)
            v = read_u16(e + 8, le);
        else if (type == TYPE_LONG)
            v = read_u32(e + 8, le);
        else
            return 0;
        return v >= 1 && v <= 8 ? (int)v : 0;
    }
    return 0;
}

int img_exif_orientation_tiff(const uint8_t *data, size_t len)
{
    int o = tiff_orientation(data, len);
    return o ? o : 1;
}

int img_exif_orientation_jpeg(const uint8_t *data, size_t len)
{
    if (!data || len < 4 || data[0] != 0xFF || data[1] != 0xD8) return 1;
    size_t i = 2;
    while (i + 4 <= len) {
        if (data[i] != 0xFF) return 1; /* not at a marker: the segment chain is broken */
        uint8_t marker = data[i + 1];
        if (marker == 0xFF) { /* fill byte before a marker */
            i++;
            continue;
        }
        i += 2;
        /* Markers without a length: SOI, TEM, RSTn. */
        if (marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) continue;
        /* Metadata precedes the first scan; nothing after SOS or EOI is a header segment. */
        if (marker == 0xDA || marker == 0xD9 || marker == 0x00) return 1;
        if (len - i < 2) return 1;
        size_t seg = (size_t)data[i] << 8 | data[i + 1];
        if (seg < 2 || seg > len - i) return 1;
        /* Editors leave several APP1 segments (XMP, an Exif block they could not parse, their
         * own): the first Exif block that holds a valid orientation is the one, so a broken
         * block before the real one is skipped instead of hiding it. */
        if (marker == 0xE1 && seg >= 2 + 6 && memcmp(data + i + 2, "Exif\0\0", 6) == 0) {
            int o = tiff_orientation(data + i + 8, seg - 8);
            if (o) return o;
        }
        i += seg;
    }
    return 1;
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

int img_exif_orientation_png(const uint8_t *data, size_t len)
{
    /* signature, then chunks: <u32 length> <fourcc> <data> <u32 CRC of fourcc and data> */
    if (!data || len < 8 || memcmp(data, "\x89PNG\r\n\x1a\n", 8) != 0) return 1;
    size_t i = 8;
    while (len - i >= 12) {
        size_t size = read_u32(data + i, 0);
        if (size > len - i - 12) return 1;
        const uint8_t *type = data + i + 4;
        if (memcmp(type, "IEND", 4) == 0) return 1;
        if (memcmp(type, "eXIf", 4) == 0 &&
            read_u32(type + 4 + size, 0) == crc32_png(type, 4 + size))
            return img_exif_orientation_tiff(type + 4, size);
        i += 12 + size;
    }
    return 1;
}

int img_exif_orientation_webp(const uint8_t *data, size_t len)
{
    /* RIFF header: "RIFF" <u32 size> "WEBP", then chunks: <fourcc> <u32 size> <data, padded
     * to even>. Only the extended format (first chunk VP8X) carries EXIF. */
    if (!data || len < 12 + 8 || memcmp(data, "RIFF", 4) != 0 || memcmp(data + 8, "WEBP", 4) != 0)
        return 1;
    if (memcmp(data + 12, "VP8X", 4) != 0) return 1;
    /* The RIFF size bounds the chunks; one past the file is clamped to it. */
    size_t riff_end = (size_t)read_u32(data + 4, 1);
    riff_end = riff_end > len - 8 ? len : riff_end + 8;
    size_t i = 12;
    while (i <= riff_end && riff_end - i >= 8) {
        size_t size = read_u32(data + i + 4, 1);
        const uint8_t *payload = data + i + 8;
        size_t room = riff_end - i - 8;
        if (size > room) return 1;
        if (memcmp(data + i, "EXIF", 4) == 0) return img_exif_orientation_tiff(payload, size);
        size += size & 1;
        if (size > room) return 1;
        i += 8 + size;
    }
    return 1;
}
