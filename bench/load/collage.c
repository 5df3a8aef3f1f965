/*
 * collage — makes the group photo of `make bench-load`: a WxH JPEG with the given photos laid
 * out on a grid (as many columns as keep the cells closest to square), each scaled to fit
 * its cell with a margin, on a grey background. The load benchmark needs a photo with a known
 * number of faces (six) and none of the fixtures has exactly that; a collage of one-face
 * photos is deterministic and made from data that is already here.
 *
 *   collage --out FILE [--size 1920x1080] [--fill 0.6] [--quality 90] IMAGE...
 *
 * --fill is the share of the cell's shorter side that the photo's longer fitting side takes.
 * Exit 0, or 1 with a message naming the file that could not be read or written.
 */
#include "base/base.h"
#include "img/img.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INPUTS 64
#define BACKGROUND 128

static void usage(FILE *out)
{
    fputs("usage: collage --out FILE [--size WxH] [--fill F] [--quality Q] IMAGE...\n", out);
}

/* Copies src into dst with its top-left corner at (x, y); both RGB; clipped. */
static void paste(img_image *dst, const img_image *src, int x, int y)
{
    for (int row = 0; row < src->height; row++) {
        int dy = y + row;
        if (dy < 0 || dy >= dst->height) continue;
        for (int col = 0; col < src->width; col++) {
            int dx = x + col;
            if (dx < 0 || dx >= dst->width) continue;
            memcpy(dst->data + ((size_t)dy * (size_t)dst->width + (size_t)dx) * 3,
                   src->data + ((size_t)row * (size_t)src->width + (size_t)col) * 3, 3);
        }
    }
}

int main(int argc, char **argv)
{
    const char *out_path = NULL;
    const char *inputs[MAX_INPUTS];
    int n = 0, width = 1920, height = 1080, quality = 90;
    double fill = 0.6;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--out") && has_value) {
            out_path = argv[++i];
        } else if (!strcmp(a, "--size") && has_value) {
            if (sscanf(argv[++i], "%dx%d", &width, &height) != 2 || width < 16 || height < 16 ||
                width > 8000 || height > 8000) {
                fprintf(stderr, "collage: --size %s: expected WxH, 16..8000 each\n", argv[i]);
                return 1;
            }
        } else if (!strcmp(a, "--fill") && has_value) {
            fill = atof(argv[++i]);
            if (!(fill > 0.05 && fill <= 1.0)) {
                fprintf(stderr, "collage: --fill %s: expected a share in (0.05, 1]\n", argv[i]);
                return 1;
            }
        } else if (!strcmp(a, "--quality") && has_value) {
            quality = atoi(argv[++i]);
            if (quality < 1 || quality > 100) {
                fprintf(stderr, "collage: --quality %s: expected 1..100\n", argv[i]);
                return 1;
            }
        } else if (a[0] == '-') {
            usage(stderr);
            return 1;
        } else if (n < MAX_INPUTS) {
            inputs[n++] = a;
        } else {
            fprintf(stderr, "collage: at most %d images\n", MAX_INPUTS);
            return 1;
        }
    }
    if (!out_path || n == 0) {
        usage(stderr);
        return 1;
    }

    /* The grid with the fewest empty cells, and of those the one whose cells are closest to
     * square (six photos at 16:9: 3 x 2). */
    int cols = 1, best_empty = n;
    double best = INFINITY;
    for (int c = 1; c <= n; c++) {
        int r = (n + c - 1) / c, empty = r * c - n;
        double off = fabs(log(((double)width / c) / ((double)height / r)));
        if (empty < best_empty || (empty == best_empty && off < best)) {
            best_empty = empty;
            best = off;
            cols = c;
        }
    }
    int rows = (n + cols - 1) / cols;
    int cell_w = width / cols, cell_h = height / rows;

    img_image canvas = {0};
    if (img_alloc(&canvas, width, height, 3) != 0) {
        fprintf(stderr, "collage: %s\n", base_error_message());
        return 1;
    }
    memset(canvas.data, BACKGROUND, (size_t)width * (size_t)height * 3);
    int rc = 1;
    for (int i = 0; i < n; i++) {
        img_image photo = {0}, scaled = {0};
        if (img_load_file(inputs[i], NULL, &photo, NULL) != 0) {
            fprintf(stderr, "collage: %s: %s\n", inputs[i], base_error_message());
            goto done;
        }
        double box_w = cell_w * fill, box_h = cell_h * fill;
        double scale = fmin(box_w / photo.width, box_h / photo.height);
        int w = (int)lround(photo.width * scale), h = (int)lround(photo.height * scale);
        if (w < 1) w = 1;
        if (h < 1) h = 1;
        if (img_resize(&photo, w, h, &scaled) != 0) {
            fprintf(stderr, "collage: %s: %s\n", inputs[i], base_error_message());
            img_free(&photo);
            goto done;
        }
        int col = i % cols, row = i / cols;
        paste(&canvas, &scaled, col * cell_w + (cell_w - w) / 2, row * cell_h + (cell_h - h) / 2);
        img_free(&photo);
        img_free(&scaled);
    }
    uint8_t *jpeg = NULL;
    size_t len = 0;
    if (img_encode_jpeg(&canvas, quality, &jpeg, &len) != 0) {
        fprintf(stderr, "collage: encode: %s\n", base_error_message());
        goto done;
    }
    FILE *f = fopen(out_path, "wb");
    int written = f && fwrite(jpeg, 1, len, f) == len;
    if (f && fclose(f) != 0) written = 0;
    free(jpeg);
    if (!written) {
        fprintf(stderr, "collage: cannot write %s\n", out_path);
        goto done;
    }
    rc = 0;
done:
    img_free(&canvas);
    return rc;
}
