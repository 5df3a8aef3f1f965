/*
 * plot — line charts drawn into an img_image and written as PNG, for the accuracy harness's
 * --plot option (ROC curves, precision-recall curves): axes with ticks and tick labels, a
 * grid, a title, axis labels and a legend, in the built-in 5x7 font of img.h.
 *
 * Thread-safety: reentrant; nothing is shared.
 * Errors: 0 or a negative BASE_ERR_* code with base_error_message().
 */
#ifndef VULTUS_CLI_PLOT_H
#define VULTUS_CLI_PLOT_H

#include "img/img.h"

#include <stdint.h>

typedef struct plot_series {
    const double *x, *y; /* n points, drawn joined in order */
    int n;
    const char *label; /* in the legend; NULL: not listed */
    uint8_t rgb[3];
} plot_series;

enum plot_legend {
    PLOT_LEGEND_BOTTOM_RIGHT = 0, /* where a ROC curve leaves room */
    PLOT_LEGEND_BOTTOM_LEFT,      /* where a precision-recall curve leaves room */
    PLOT_LEGEND_TOP_RIGHT,
    PLOT_LEGEND_NONE,
};

typedef struct plot_options {
    const char *title, *x_label, *y_label; /* NULL: none */
    double x_min, x_max, y_min, y_max;     /* the axes' ranges; points outside are clipped */
    int x_log;                             /* log10 x axis: x_min must be > 0; x <= 0 is drawn
                                              at the left edge */
    int width, height;                     /* pixels; 0: 800 x 600 */
    int legend;                            /* enum plot_legend */
} plot_options;

/* Draws the chart into a new image (RGB, owned by the caller: img_free). */
int plot_draw(const plot_options *opts, const plot_series *series, int n_series, img_image *out);

/* Draws the chart and writes it as a PNG file at `path`. */
int plot_write_png(const plot_options *opts, const plot_series *series, int n_series,
                   const char *path);

/* The tick values of a linear axis over [lo, hi] with a step of 1, 2 or 5 times a power of
 * ten giving about `target` ticks; returns how many were written to ticks (capacity cap). */
int plot_linear_ticks(double lo, double hi, int target, double *ticks, int cap);

#endif
