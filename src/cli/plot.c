/*
 * Line charts for the accuracy harness. The lines are drawn here (img.h has rectangles, dots
 * and text, not lines): Bresenham's algorithm stamping a small square for thickness, clipped
 * to the plot area. Text uses img_draw_text's 5x7 font, which advances 6 pixels per
 * character at scale 1.
 */
#include "cli/plot.h"

#include "base/base.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FONT_ADVANCE 6 /* img_draw_text: 5 pixels of glyph and 1 of spacing, times scale */
#define FONT_HEIGHT 7
#define TEXT_SCALE 2
#define MAX_TICKS 32
#define MAX_SIDE 8192

static const uint8_t black[3] = {0, 0, 0};
static const uint8_t grid[3] = {225, 225, 225};
static const uint8_t dark[3] = {60, 60, 60};

typedef struct frame {
    int left, top, right, bottom; /* plot area in pixels, inclusive */
    double x_min, x_max, y_min, y_max;
    int x_log;
} frame;

static void put_pixel(img_image *img, int x, int y, const uint8_t rgb[3])
{
    if (x < 0 || y < 0 || x >= img->width || y >= img->height) return;
    uint8_t *p = img->data + ((size_t)y * (size_t)img->width + (size_t)x) * 3;
    p[0] = rgb[0];
    p[1] = rgb[1];
    p[2] = rgb[2];
}

/* A square of side `thickness` centred on (x, y), clipped to the rectangle `clip`. */
static void stamp(img_image *img, int x, int y, int thickness, const uint8_t rgb[3],
                  const frame *clip)
{
    int r0 = -(thickness - 1) / 2, r1 = thickness / 2;
    for (int dy = r0; dy <= r1; dy++) {
        for (int dx = r0; dx <= r1; dx++) {
            int px = x + dx, py = y + dy;
            if (clip &&
                (px < clip->left || px > clip->right || py < clip->top || py > clip->bottom))
                continue;
            put_pixel(img, px, py, rgb);
        }
    }
}

static void draw_line(img_image *img, int x0, int y0, int x1, int y1, int thickness,
                      const uint8_t rgb[3], const frame *clip)
{
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
    int dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
        stamp(img, x0, y0, thickness, rgb, clip);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) {
            err += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            err += dx;
            y0 += sy;
        }
    }
}

static int text_width(const char *s, int scale)
{
    int n = (int)strlen(s);
    return n > 0 ? n * FONT_ADVANCE * scale - scale : 0;
}

/* Maps a data x to a pixel column; values outside the range land just outside the area and
 * are clipped when drawn. */
static double map_x(const frame *f, double x)
{
    double t;
    if (f->x_log) {
        if (!(x > 0)) return f->left;
        t = (log10(x) - log10(f->x_min)) / (log10(f->x_max) - log10(f->x_min));
    } else {
        t = (x - f->x_min) / (f->x_max - f->x_min);
    }
    if (t < -1.0) t = -1.0; /* keep far-away points representable as int */
    if (t > 2.0) t = 2.0;
    return f->left + t * (f->right - f->left);
}

static double map_y(const frame *f, double y)
{
    double t = (y - f->y_min) / (f->y_max - f->y_min);
    if (t < -1.0) t = -1.0;
    if (t > 2.0) t = 2.0;
    return f->bottom - t * (f->bottom - f->top);
}

int plot_linear_ticks(double lo, double hi, int target, double *ticks, int cap)
{
    if (!(hi > lo) || target < 1 || cap < 1) return 0;
    double raw = (hi - lo) / target;
    double mag = pow(10.0, floor(log10(raw)));
    double step = mag;
    if (raw / mag > 5.0)
        step = 10.0 * mag;
    else if (raw / mag > 2.0)
        step = 5.0 * mag;
    else if (raw / mag > 1.0)
        step = 2.0 * mag;
    int n = 0;
    double first = ceil(lo / step - 1e-9) * step;
    for (double v = first; v <= hi + step * 1e-9 && n < cap; v += step) {
        double r = fabs(v) < step * 1e-9 ? 0.0 : v; /* no "-0" */
        ticks[n++] = r;
    }
    return n;
}

static void format_tick(double v, int log_axis, char *buf, size_t len)
{
    if (log_axis) {
        int e = (int)lround(log10(v));
        if (e == 0)
            snprintf(buf, len, "1");
        else
            snprintf(buf, len, "1e%d", e);
    } else {
        snprintf(buf, len, "%g", v);
    }
}

static int check_options(const plot_options *o, int w, int h)
{
    if (w < 200 || h < 150 || w > MAX_SIDE || h > MAX_SIDE)
        return base_error_set(BASE_ERR_INVALID, "plot: size %dx%d, expected 200x150..%dx%d", w, h,
                              MAX_SIDE, MAX_SIDE);
    if (!(o->x_max > o->x_min) || !(o->y_max > o->y_min) || !isfinite(o->x_min) ||
        !isfinite(o->x_max) || !isfinite(o->y_min) || !isfinite(o->y_max))
        return base_error_set(BASE_ERR_INVALID, "plot: empty range x [%g, %g] y [%g, %g]", o->x_min,
                              o->x_max, o->y_min, o->y_max);
    if (o->x_log && !(o->x_min > 0))
        return base_error_set(BASE_ERR_INVALID, "plot: log x axis from %g", o->x_min);
    return 0;
}

static void draw_legend(img_image *img, const frame *f, const plot_options *o,
                        const plot_series *series, int n_series)
{
    int rows = 0, widest = 0;
    for (int s = 0; s < n_series; s++) {
        if (!series[s].label) continue;
        rows++;
        int w = text_width(series[s].label, TEXT_SCALE);
        if (w > widest) widest = w;
    }
    if (rows == 0 || o->legend == PLOT_LEGEND_NONE) return;
    int row_h = FONT_HEIGHT * TEXT_SCALE + 8, swatch = 28, pad = 8;
    int box_w = pad + swatch + 8 + widest + pad, box_h = pad + rows * row_h - 8 + pad;
    int x0 = o->legend == PLOT_LEGEND_BOTTOM_LEFT ? f->left + 12 : f->right - 12 - box_w;
    int y0 = o->legend == PLOT_LEGEND_TOP_RIGHT ? f->top + 12 : f->bottom - 12 - box_h;
    static const uint8_t white[3] = {255, 255, 255};
    for (int y = y0; y <= y0 + box_h; y++)
        for (int x = x0; x <= x0 + box_w; x++)
            put_pixel(img, x, y, white);
    img_draw_rect(img, x0, y0, x0 + box_w, y0 + box_h, 1, dark);
    int y = y0 + pad;
    for (int s = 0; s < n_series; s++) {
        if (!series[s].label) continue;
        int mid = y + FONT_HEIGHT * TEXT_SCALE / 2;
        draw_line(img, x0 + pad, mid, x0 + pad + swatch, mid, 3, series[s].rgb, NULL);
        img_draw_text(img, x0 + pad + swatch + 8, y, series[s].label, TEXT_SCALE, black);
        y += row_h;
    }
}

int plot_draw(const plot_options *o, const plot_series *series, int n_series, img_image *out)
{
    memset(out, 0, sizeof *out);
    int w = o->width > 0 ? o->width : 800, h = o->height > 0 ? o->height : 600;
    int rc = check_options(o, w, h);
    if (rc != 0) return rc;
    rc = img_alloc(out, w, h, 3);
    if (rc != 0) return rc;
    memset(out->data, 255, (size_t)w * (size_t)h * 3);

    int ch = FONT_HEIGHT * TEXT_SCALE;
    frame f = {.left = 90,
               .top = 30 + (o->title ? ch + 12 : 0) + (o->y_label ? ch + 8 : 0),
               .right = w - 30,
               .bottom = h - (30 + ch + 12 + (o->x_label ? ch + 10 : 0)),
               .x_min = o->x_min,
               .x_max = o->x_max,
               .y_min = o->y_min,
               .y_max = o->y_max,
               .x_log = o->x_log};
    if (f.bottom - f.top < 40 || f.right - f.left < 40) {
        img_free(out);
        return base_error_set(BASE_ERR_INVALID, "plot: %dx%d leaves no room to plot", w, h);
    }

    /* Grid and tick labels. */
    double ticks[MAX_TICKS];
    char label[64];
    int n_x;
    if (o->x_log) {
        n_x = 0;
        for (int e = (int)ceil(log10(o->x_min) - 1e-9);
             e <= (int)floor(log10(o->x_max) + 1e-9) && n_x < MAX_TICKS; e++)
            ticks[n_x++] = pow(10.0, e);
    } else {
        n_x = plot_linear_ticks(o->x_min, o->x_max, 8, ticks, MAX_TICKS);
    }
    for (int i = 0; i < n_x; i++) {
        int x = (int)lround(map_x(&f, ticks[i]));
        draw_line(out, x, f.top, x, f.bottom, 1, grid, NULL);
        draw_line(out, x, f.bottom, x, f.bottom + 6, 1, black, NULL);
        format_tick(ticks[i], o->x_log, label, sizeof label);
        img_draw_text(out, x - text_width(label, TEXT_SCALE) / 2, f.bottom + 12, label, TEXT_SCALE,
                      black);
    }
    int n_y = plot_linear_ticks(o->y_min, o->y_max, 8, ticks, MAX_TICKS);
    for (int i = 0; i < n_y; i++) {
        int y = (int)lround(map_y(&f, ticks[i]));
        draw_line(out, f.left, y, f.right, y, 1, grid, NULL);
        draw_line(out, f.left - 6, y, f.left, y, 1, black, NULL);
        format_tick(ticks[i], 0, label, sizeof label);
        img_draw_text(out, f.left - 12 - text_width(label, TEXT_SCALE), y - ch / 2, label,
                      TEXT_SCALE, black);
    }

    /* The series, clipped to the plot area. */
    for (int s = 0; s < n_series; s++) {
        const plot_series *p = &series[s];
        for (int i = 0; i < p->n; i++) {
            if (!isfinite(p->x[i]) || !isfinite(p->y[i])) continue;
            int x1 = (int)lround(map_x(&f, p->x[i])), y1 = (int)lround(map_y(&f, p->y[i]));
            if (i == 0 || !isfinite(p->x[i - 1]) || !isfinite(p->y[i - 1])) {
                stamp(out, x1, y1, 3, p->rgb, &f);
                continue;
            }
            int x0 = (int)lround(map_x(&f, p->x[i - 1])), y0 = (int)lround(map_y(&f, p->y[i - 1]));
            draw_line(out, x0, y0, x1, y1, 3, p->rgb, &f);
        }
    }

    /* Frame, titles, legend on top. */
    img_draw_rect(out, f.left, f.top, f.right, f.bottom, 1, black);
    if (o->title)
        img_draw_text(out, (w - text_width(o->title, TEXT_SCALE)) / 2, 14, o->title, TEXT_SCALE,
                      black);
    if (o->x_label)
        img_draw_text(out, (f.left + f.right - text_width(o->x_label, TEXT_SCALE)) / 2,
                      f.bottom + 12 + ch + 10, o->x_label, TEXT_SCALE, black);
    if (o->y_label) img_draw_text(out, 12, f.top - ch - 8, o->y_label, TEXT_SCALE, black);
    draw_legend(out, &f, o, series, n_series);
    return 0;
}

int plot_write_png(const plot_options *opts, const plot_series *series, int n_series,
                   const char *path)
{
    img_image img;
    int rc = plot_draw(opts, series, n_series, &img);
    if (rc != 0) return rc;
    uint8_t *png = NULL;
    size_t len = 0;
    rc = img_encode_png(&img, &png, &len);
    img_free(&img);
    if (rc != 0) return rc;
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        free(png);
        return base_error_set(BASE_ERR_IO, "plot: cannot create %s", path);
    }
    size_t written = fwrite(png, 1, len, fp);
    int closed = fclose(fp);
    free(png);
    if (written != len || closed != 0)
        return base_error_set(BASE_ERR_IO, "plot: writing %zu bytes to %s failed", len, path);
    return 0;
}
