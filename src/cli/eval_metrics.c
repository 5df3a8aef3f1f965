/*
 * The arithmetic of the accuracy harness; see eval_metrics.h for the definitions. No I/O:
 * everything here works on arrays and text in memory, so tests can check it on hand-made
 * cases.
 */
#include "cli/eval_metrics.h"

#include "base/base.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- verification ------------------------------------------------------------------------ */

double eval_accuracy(const double *scores, const int *same, size_t n, double threshold)
{
    if (n == 0) return 0.0;
    size_t correct = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(scores[i])) continue; /* no face: always an error */
        int accept = scores[i] >= threshold;
        correct += accept == (same[i] != 0);
    }
    return (double)correct / (double)n;
}

typedef struct scored {
    double score;
    int same;
} scored;

static int compare_scored_ascending(const void *a, const void *b)
{
    double x = ((const scored *)a)->score, y = ((const scored *)b)->score;
    return (x > y) - (x < y);
}

/*
 * Sweep: start with the threshold below every score (all finite pairs accepted: the same
 * ones are right), then raise it past one distinct score at a time; pairs at that score
 * become rejected, so the different ones among them turn right and the same ones wrong.
 * Counts are integers, so comparing accuracies is exact.
 */
int eval_best_threshold(const double *scores, const int *same, size_t n, double *threshold,
                        double *accuracy)
{
    if (n == 0) return base_error_set(BASE_ERR_INVALID, "best threshold: no pairs");
    scored *v = malloc(n * sizeof *v);
    if (!v) return base_error_set(BASE_ERR_NOMEM, "best threshold: %zu pairs", n);
    size_t m = 0;
    long correct = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(scores[i])) continue;
        v[m].score = scores[i];
        v[m].same = same[i] != 0;
        correct += v[m].same;
        m++;
    }
    if (m == 0) { /* every pair lacks a face: every threshold is as bad */
        free(v);
        *threshold = 0.0;
        *accuracy = 0.0;
        return 0;
    }
    qsort(v, m, sizeof *v, compare_scored_ascending);

    /* Candidate c: c == 0 below the lowest score; c in 1..d-1 between distinct scores c-1
     * and c; c == d above the highest (d distinct scores). Track the first run of best ones.
     * The distinct scores are compacted into `distinct` (in place over the sorted scores'
     * storage would lose `same`, so a second array). */
    double *distinct = malloc(m * sizeof *distinct);
    if (!distinct) {
        free(v);
        return base_error_set(BASE_ERR_NOMEM, "best threshold: %zu pairs", n);
    }
    long best = correct;
    size_t run_start = 0, run_end = 0, d = 0;
    int in_run = 1;
    for (size_t i = 0; i < m;) {
        size_t j = i;
        while (j < m && v[j].score == v[i].score) {
            correct += v[j].same ? -1 : 1;
            j++;
        }
        distinct[d++] = v[i].score;
        /* candidate d now: above distinct score d-1 */
        if (correct > best) {
            best = correct;
            run_start = run_end = d;
            in_run = 1;
        } else if (correct == best && in_run && run_end == d - 1) {
            run_end = d;
        } else {
            in_run = 0;
        }
        i = j;
    }
    size_t pick = run_start + (run_end - run_start) / 2;
    if (pick == 0)
        *threshold = distinct[0] - 1e-6;
    else if (pick == d)
        *threshold = distinct[d - 1] + 1e-6;
    else
        *threshold = 0.5 * (distinct[pick - 1] + distinct[pick]);
    *accuracy = (double)best / (double)n;
    free(distinct);
    free(v);
    return 0;
}

int eval_kfold(const double *scores, const int *same, const int *fold, size_t n, int k,
               eval_kfold_result *out)
{
    memset(out, 0, sizeof *out);
    if (k < 2 || k > EVAL_MAX_FOLDS)
        return base_error_set(BASE_ERR_INVALID, "k-fold: k = %d, expected 2..%d", k,
                              EVAL_MAX_FOLDS);
    size_t count[EVAL_MAX_FOLDS] = {0};
    for (size_t i = 0; i < n; i++) {
        if (fold[i] < 0 || fold[i] >= k)
            return base_error_set(BASE_ERR_INVALID, "k-fold: pair %zu in fold %d of %d", i, fold[i],
                                  k);
        count[fold[i]]++;
    }
    for (int f = 0; f < k; f++)
        if (count[f] == 0) return base_error_set(BASE_ERR_INVALID, "k-fold: fold %d is empty", f);

    double *s = malloc(n * sizeof *s);
    int *y = malloc(n * sizeof *y);
    if (!s || !y) {
        free(s);
        free(y);
        return base_error_set(BASE_ERR_NOMEM, "k-fold: %zu pairs", n);
    }
    int rc = 0;
    double sum = 0.0;
    for (int f = 0; f < k; f++) {
        /* Train on every other fold. */
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            if (fold[i] == f) continue;
            s[m] = scores[i];
            y[m] = same[i];
            m++;
        }
        double t = 0.0, train_acc = 0.0;
        rc = eval_best_threshold(s, y, m, &t, &train_acc);
        if (rc != 0) break;
        /* Test on fold f. */
        m = 0;
        for (size_t i = 0; i < n; i++) {
            if (fold[i] != f) continue;
            s[m] = scores[i];
            y[m] = same[i];
            m++;
        }
        out->threshold[f] = t;
        out->accuracy[f] = eval_accuracy(s, y, m, t);
        sum += out->accuracy[f];
    }
    free(s);
    free(y);
    if (rc != 0) return rc;
    out->k = k;
    out->mean = sum / k;
    double ss = 0.0;
    for (int f = 0; f < k; f++)
        ss += (out->accuracy[f] - out->mean) * (out->accuracy[f] - out->mean);
    out->std = sqrt(ss / (k - 1));
    return 0;
}

void eval_interleave_folds(const int *same, size_t n, int k, int *fold)
{
    size_t n_same = 0, n_diff = 0;
    for (size_t i = 0; i < n; i++) {
        if (same[i])
            fold[i] = (int)(n_same++ % (size_t)k);
        else
            fold[i] = (int)(n_diff++ % (size_t)k);
    }
}

static int compare_scored_descending(const void *a, const void *b)
{
    return compare_scored_ascending(b, a);
}

int eval_roc(const double *scores, const int *same, size_t n, eval_roc_point **points,
             size_t *n_points)
{
    *points = NULL;
    *n_points = 0;
    size_t n_same = 0, n_diff = 0;
    for (size_t i = 0; i < n; i++) {
        if (same[i])
            n_same++;
        else
            n_diff++;
    }
    if (n_same == 0 || n_diff == 0)
        return base_error_set(BASE_ERR_INVALID, "ROC: %zu same and %zu different pairs", n_same,
                              n_diff);
    scored *v = malloc(n * sizeof *v);
    eval_roc_point *p = malloc((n + 1) * sizeof *p);
    if (!v || !p) {
        free(v);
        free(p);
        return base_error_set(BASE_ERR_NOMEM, "ROC: %zu pairs", n);
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(scores[i])) continue;
        v[m].score = scores[i];
        v[m].same = same[i] != 0;
        m++;
    }
    qsort(v, m, sizeof *v, compare_scored_descending);
    size_t np = 0;
    p[np++] = (eval_roc_point){.far = 0.0, .tar = 0.0, .threshold = INFINITY};
    size_t acc_same = 0, acc_diff = 0;
    for (size_t i = 0; i < m;) {
        size_t j = i;
        while (j < m && v[j].score == v[i].score) {
            if (v[j].same)
                acc_same++;
            else
                acc_diff++;
            j++;
        }
        p[np++] = (eval_roc_point){.far = (double)acc_diff / (double)n_diff,
                                   .tar = (double)acc_same / (double)n_same,
                                   .threshold = v[i].score};
        i = j;
    }
    free(v);
    *points = p;
    *n_points = np;
    return 0;
}

double eval_tar_at_far(const eval_roc_point *points, size_t n_points, double far)
{
    if (n_points == 0) return 0.0;
    /* FAR and TAR never decrease along the array, so the last point with FAR <= target also
     * has the highest TAR among the points at its FAR. */
    size_t i = 0;
    while (i + 1 < n_points && points[i + 1].far <= far)
        i++;
    if (points[i].far > far) return 0.0; /* cannot happen: points[0] is (0, 0) */
    if (i + 1 >= n_points) return points[i].tar;
    const eval_roc_point *a = &points[i], *b = &points[i + 1];
    return a->tar + (far - a->far) / (b->far - a->far) * (b->tar - a->tar);
}

/* --- detection --------------------------------------------------------------------------- */

double eval_wider_iou(float ax, float ay, float aw, float ah, float bx, float by, float bw,
                      float bh)
{
    /* Corners as the official code makes them: x2 = x + w, then +1 in the overlap. */
    double ax2 = (double)ax + aw, ay2 = (double)ay + ah;
    double bx2 = (double)bx + bw, by2 = (double)by + bh;
    double iw = fmin(ax2, bx2) - fmax(ax, bx) + 1.0;
    double ih = fmin(ay2, by2) - fmax(ay, by) + 1.0;
    if (iw <= 0.0 || ih <= 0.0) return 0.0;
    double inter = iw * ih;
    double area_a = (ax2 - ax + 1.0) * (ay2 - ay + 1.0);
    double area_b = (bx2 - bx + 1.0) * (by2 - by + 1.0);
    return inter / (area_a + area_b - inter);
}

void eval_wider_result_free(eval_wider_result *r)
{
    if (!r) return;
    free(r->precision);
    free(r->recall_curve);
    r->precision = r->recall_curve = NULL;
}

/* One detection after matching: its normalised score and what it counted as. */
enum { DET_TP = 1, DET_FP = 2, DET_IGNORED = 3 };
typedef struct matched {
    double score; /* normalised */
    int kind;
    size_t order; /* position in the dataset (image, then score order): a stable tie-break */
} matched;

static int compare_matched(const void *a, const void *b)
{
    const matched *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return (x->order > y->order) - (x->order < y->order);
}

typedef struct det_order {
    double score; /* normalised */
    int index;
} det_order;

static int compare_det_order(const void *a, const void *b)
{
    const det_order *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return (x->index > y->index) - (x->index < y->index);
}

int eval_wider(const eval_det_image *images, size_t n_images, const eval_wider_options *opts,
               eval_wider_result *out)
{
    memset(out, 0, sizeof *out);
    if (opts->setting < EVAL_WIDER_EASY || opts->setting > EVAL_WIDER_HARD)
        return base_error_set(BASE_ERR_INVALID, "WIDER: setting %d, expected 0..2", opts->setting);
    double iou_threshold = opts->iou_threshold > 0 ? opts->iou_threshold : 0.5;
    int T = opts->thresh_num > 0 ? opts->thresh_num : 1000;
    if (T > 1000000) return base_error_set(BASE_ERR_INVALID, "WIDER: %d thresholds", T);

    /* 1. Min-max normalisation over every detection; the official code starts from min 1 and
     * max 0, so scores inside [0, 1] are stretched to fill it. */
    double lo = 1.0, hi = 0.0;
    size_t n_det = 0, max_det = 0, max_faces = 0;
    for (size_t i = 0; i < n_images; i++) {
        const eval_det_image *im = &images[i];
        if (im->n_detections < 0 || im->n_faces < 0 || (im->n_detections && !im->detections) ||
            (im->n_faces && !im->faces))
            return base_error_set(BASE_ERR_INVALID, "WIDER: image %zu: bad arrays", i);
        for (int d = 0; d < im->n_detections; d++) {
            lo = fmin(lo, im->detections[d].score);
            hi = fmax(hi, im->detections[d].score);
        }
        n_det += (size_t)im->n_detections;
        if ((size_t)im->n_detections > max_det) max_det = (size_t)im->n_detections;
        if ((size_t)im->n_faces > max_faces) max_faces = (size_t)im->n_faces;
    }
    double range = hi - lo;

    int rc = 0;
    double *proposals = calloc((size_t)T, sizeof *proposals); /* summed over images */
    double *recalled = calloc((size_t)T, sizeof *recalled);
    double *mrec = malloc(((size_t)T + 2) * sizeof *mrec);
    double *mpre = malloc(((size_t)T + 2) * sizeof *mpre);
    matched *all = malloc((n_det ? n_det : 1) * sizeof *all);
    det_order *ord = malloc((max_det ? max_det : 1) * sizeof *ord);
    int *kind = malloc((max_det ? max_det : 1) * sizeof *kind);
    long *pred_recall = malloc((max_det ? max_det : 1) * sizeof *pred_recall);
    int *recall_list = malloc((max_faces ? max_faces : 1) * sizeof *recall_list);
    out->precision = malloc((size_t)T * sizeof *out->precision);
    out->recall_curve = malloc((size_t)T * sizeof *out->recall_curve);
    if (!proposals || !recalled || !mrec || !mpre || !all || !ord || !kind || !pred_recall ||
        !recall_list || !out->precision || !out->recall_curve) {
        rc = base_error_set(BASE_ERR_NOMEM, "WIDER: %zu detections", n_det);
        eval_wider_result_free(out);
        goto done;
    }

    size_t n_all = 0;
    for (size_t i = 0; i < n_images; i++) {
        const eval_det_image *im = &images[i];
        for (int f = 0; f < im->n_faces; f++)
            if (im->faces[f].difficulty <= opts->setting) out->positives++;
        if (im->n_faces == 0 || im->n_detections == 0) continue; /* as the official loop */

        /* 2. Match in descending score order, each detection against its best face only. */
        for (int d = 0; d < im->n_detections; d++) {
            double s = im->detections[d].score;
            ord[d].score = range > 0 ? (s - lo) / range : 1.0;
            ord[d].index = d;
        }
        qsort(ord, (size_t)im->n_detections, sizeof *ord, compare_det_order);
        for (int f = 0; f < im->n_faces; f++)
            recall_list[f] = 0;
        long n_recalled = 0;
        for (int h = 0; h < im->n_detections; h++) {
            const eval_detection *det = &im->detections[ord[h].index];
            double best = -1.0;
            int best_face = 0;
            for (int f = 0; f < im->n_faces; f++) {
                const eval_gt_face *g = &im->faces[f];
                double iou = eval_wider_iou(det->x, det->y, det->w, det->h, g->x, g->y, g->w, g->h);
                if (iou > best) { /* first maximum, as numpy's argmax */
                    best = iou;
                    best_face = f;
                }
            }
            kind[h] = DET_FP;
            if (best >= iou_threshold) {
                if (im->faces[best_face].difficulty > opts->setting) {
                    recall_list[best_face] = -1;
                    kind[h] = DET_IGNORED;
                } else if (recall_list[best_face] == 0) {
                    recall_list[best_face] = 1;
                    n_recalled++;
                    kind[h] = DET_TP;
                }
            }
            pred_recall[h] = n_recalled;
            all[n_all] = (matched){.score = ord[h].score, .kind = kind[h], .order = n_all};
            n_all++;
            if (kind[h] == DET_TP) out->true_positives++;
            if (kind[h] == DET_FP) out->false_positives++;
            if (kind[h] == DET_IGNORED) out->ignored++;
        }

        /* 3. Per threshold, the proposals and recalled faces among detections scoring at or
         * above it (thresholds fall as t rises, so the prefix only grows). */
        int r = -1;      /* last detection index with score >= threshold */
        long n_prop = 0; /* proposals among 0..r */
        for (int t = 0; t < T; t++) {
            double thresh = 1.0 - (double)(t + 1) / (double)T;
            while (r + 1 < im->n_detections && ord[r + 1].score >= thresh) {
                r++;
                if (kind[r] != DET_IGNORED) n_prop++;
            }
            if (r < 0) continue;
            proposals[t] += (double)n_prop;
            recalled[t] += (double)pred_recall[r];
        }
    }

    /* 4. The curve and VOC's continuous AP. */
    for (int t = 0; t < T; t++) {
        out->precision[t] = proposals[t] > 0 ? recalled[t] / proposals[t] : 0.0;
        out->recall_curve[t] = out->positives > 0 ? recalled[t] / (double)out->positives : 0.0;
    }
    out->n_points = T;

    /* mrec = [0, recall..., 1], mpre = [0, precision..., 0]; the precision envelope from the
     * right; the area summed where recall changes. */
    size_t len = (size_t)T + 2;
    mrec[0] = 0.0;
    mpre[0] = 0.0;
    for (int t = 0; t < T; t++) {
        mrec[t + 1] = out->recall_curve[t];
        mpre[t + 1] = out->precision[t];
    }
    mrec[len - 1] = 1.0;
    mpre[len - 1] = 0.0;
    for (size_t i = len - 1; i > 0; i--)
        mpre[i - 1] = fmax(mpre[i - 1], mpre[i]);
    double ap = 0.0;
    for (size_t i = 0; i + 1 < len; i++)
        if (mrec[i + 1] != mrec[i]) ap += (mrec[i + 1] - mrec[i]) * mpre[i + 1];
    out->ap = ap;
    out->recall = out->positives > 0 ? (double)out->true_positives / (double)out->positives : 0.0;

    /* Recall at a false-positive budget: every detection in one score order. */
    qsort(all, n_all, sizeof *all, compare_matched);
    long tp = 0, fp = 0;
    for (size_t i = 0; i < n_all; i++) {
        if (all[i].kind == DET_FP) {
            if (opts->max_fp >= 0 && fp >= opts->max_fp) break;
            fp++;
        } else if (all[i].kind == DET_TP) {
            tp++;
        }
    }
    out->recall_at_fp = out->positives > 0 ? (double)tp / (double)out->positives : 0.0;
    out->fp_at_fp = fp;

done:
    free(proposals);
    free(recalled);
    free(mrec);
    free(mpre);
    free(all);
    free(ord);
    free(kind);
    free(pred_recall);
    free(recall_list);
    return rc;
}

/* --- age and gender ---------------------------------------------------------------------- */

void eval_age_gender(const eval_age_sample *samples, size_t n, eval_age_result *out)
{
    memset(out, 0, sizeof *out);
    out->n = n;
    double abs_sum = 0.0;
    size_t correct = 0;
    for (size_t i = 0; i < n; i++) {
        const eval_age_sample *s = &samples[i];
        if (!s->found) continue;
        out->found++;
        abs_sum += fabs(s->age_pred - s->age);
        int female_pred = s->male_prob < 0.5;
        correct += female_pred == (s->female != 0);
    }
    out->age_mae = out->found > 0 ? abs_sum / (double)out->found : NAN;
    out->gender_accuracy = n > 0 ? (double)correct / (double)n : 0.0;
    out->gender_accuracy_found = out->found > 0 ? (double)correct / (double)out->found : NAN;
}

/* --- parsers ----------------------------------------------------------------------------- */

#define MAX_FIELDS 16
#define MAX_FIELD_LEN 1024

/* One line split into fields (copied, NUL-terminated, bounded). */
typedef struct line_fields {
    int n; /* fields found; MAX_FIELDS + 1 when there were more */
    char field[MAX_FIELDS][MAX_FIELD_LEN];
    int too_long;
} line_fields;

/* Reads the line at *p (up to LF), advances *p past it. Returns 0 at the end of the text. */
static int next_line(const char **p, const char **start, size_t *len)
{
    if (!**p) return 0;
    const char *s = *p;
    const char *e = strchr(s, '\n');
    size_t l = e ? (size_t)(e - s) : strlen(s);
    *p = e ? e + 1 : s + l;
    if (l > 0 && s[l - 1] == '\r') l--;
    *start = s;
    *len = l;
    return 1;
}

static void split_fields(const char *s, size_t len, line_fields *lf)
{
    lf->n = 0;
    lf->too_long = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i >= len) break;
        size_t b = i;
        while (i < len && s[i] != ' ' && s[i] != '\t')
            i++;
        if (lf->n >= MAX_FIELDS) {
            lf->n = MAX_FIELDS + 1;
            return;
        }
        size_t fl = i - b;
        if (fl >= MAX_FIELD_LEN) {
            lf->too_long = 1;
            fl = MAX_FIELD_LEN - 1;
        }
        memcpy(lf->field[lf->n], s + b, fl);
        lf->field[lf->n][fl] = '\0';
        lf->n++;
    }
}

/* A whole field as a long in [min, max]. */
static int parse_long(const char *f, long min, long max, long *out)
{
    if (!*f) return -1;
    for (const char *c = f; *c; c++)
        if (!(isdigit((unsigned char)*c) || (c == f && (*c == '-' || *c == '+')))) return -1;
    errno = 0;
    char *end;
    long v = strtol(f, &end, 10);
    if (errno || *end || v < min || v > max) return -1;
    *out = v;
    return 0;
}

static int parse_float(const char *f, float *out)
{
    errno = 0;
    char *end;
    double v = strtod(f, &end);
    if (end == f || *end || errno || !isfinite(v) || fabs(v) > 1e9) return -1;
    *out = (float)v;
    return 0;
}

static int is_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t') return 0;
    return 1;
}

void eval_pair_list_free(eval_pair_list *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->pairs[i].path1);
        free(l->pairs[i].path2);
    }
    free(l->pairs);
    memset(l, 0, sizeof *l);
}

static char *lfw_path(const char *name, long index)
{
    size_t len = strlen(name) * 2 + 32;
    char *p = malloc(len);
    if (p) snprintf(p, len, "%s/%s_%04ld.jpg", name, name, index);
    return p;
}

static size_t count_lines(const char *text)
{
    size_t n = 1;
    for (const char *c = text; *c; c++)
        n += *c == '\n';
    return n;
}

#define LFW_MAX_INDEX 99999

int eval_parse_lfw_pairs(const char *text, eval_pair_list *out)
{
    memset(out, 0, sizeof *out);
    line_fields *lf = malloc(sizeof *lf);
    if (!lf) return base_error_set(BASE_ERR_NOMEM, "LFW pairs: out of memory");
    const char *p = text, *s;
    size_t len, line_no = 0;
    int rc = 0;
    long folds = 1, per = 0;

    /* Header: "N" (development lists) or "F P" (View 2). */
    do {
        if (!next_line(&p, &s, &len)) {
            rc = base_error_set(BASE_ERR_FORMAT, "LFW pairs: empty file");
            goto done;
        }
        line_no++;
    } while (is_blank(s, len));
    split_fields(s, len, lf);
    size_t max_pairs = count_lines(text);
    if (lf->n == 1 && parse_long(lf->field[0], 1, LONG_MAX / 4, &per) == 0) {
        out->n_folds = 0;
    } else if (lf->n == 2 && parse_long(lf->field[0], 1, EVAL_MAX_FOLDS, &folds) == 0 &&
               parse_long(lf->field[1], 1, LONG_MAX / 4 / EVAL_MAX_FOLDS, &per) == 0) {
        out->n_folds = (int)folds;
    } else {
        rc = base_error_set(BASE_ERR_FORMAT,
                            "LFW pairs: line 1: expected a pair count N or \"FOLDS N\"");
        goto done;
    }
    /* Check the declared count against the text before allocating for it. */
    if ((size_t)(folds * per * 2) > max_pairs) {
        rc = base_error_set(BASE_ERR_FORMAT,
                            "LFW pairs: header promises %ld pairs, the file has %zu lines",
                            folds * per * 2, max_pairs);
        goto done;
    }
    size_t total = (size_t)(folds * per * 2);
    out->pairs = calloc(total, sizeof *out->pairs);
    if (!out->pairs) {
        rc = base_error_set(BASE_ERR_NOMEM, "LFW pairs: %zu pairs", total);
        goto done;
    }
    for (long f = 0; f < folds; f++) {
        for (long k = 0; k < 2 * per; k++) {
            int same = k < per;
            if (!next_line(&p, &s, &len)) {
                rc = base_error_set(BASE_ERR_FORMAT,
                                    "LFW pairs: the file ends after line %zu, "
                                    "%zu of %zu pairs read",
                                    line_no, out->n, total);
                goto done;
            }
            line_no++;
            split_fields(s, len, lf);
            long i1, i2;
            const char *n1 = lf->field[0], *n2;
            int ok;
            if (same) {
                n2 = n1;
                ok = lf->n == 3 && parse_long(lf->field[1], 1, LFW_MAX_INDEX, &i1) == 0 &&
                     parse_long(lf->field[2], 1, LFW_MAX_INDEX, &i2) == 0;
            } else {
                n2 = lf->field[2];
                ok = lf->n == 4 && parse_long(lf->field[1], 1, LFW_MAX_INDEX, &i1) == 0 &&
                     parse_long(lf->field[3], 1, LFW_MAX_INDEX, &i2) == 0;
            }
            if (!ok || lf->too_long) {
                rc = base_error_set(
                    BASE_ERR_FORMAT, "LFW pairs: line %zu: expected a %s pair \"%s\"", line_no,
                    same ? "same" : "different", same ? "Name i j" : "Name1 i Name2 j");
                goto done;
            }
            eval_pair *pair = &out->pairs[out->n];
            pair->path1 = lfw_path(n1, i1);
            pair->path2 = lfw_path(n2, i2);
            pair->same = same;
            pair->fold = out->n_folds ? (int)f : -1;
            out->n++;
            if (!pair->path1 || !pair->path2) {
                rc = base_error_set(BASE_ERR_NOMEM, "LFW pairs: out of memory");
                goto done;
            }
        }
    }
    while (next_line(&p, &s, &len)) {
        line_no++;
        if (!is_blank(s, len)) {
            rc = base_error_set(BASE_ERR_FORMAT,
                                "LFW pairs: line %zu: more lines than the %zu "
                                "pairs the header announces",
                                line_no, total);
            goto done;
        }
    }
done:
    free(lf);
    if (rc != 0) eval_pair_list_free(out);
    return rc;
}

int eval_parse_pair_list(const char *text, eval_pair_list *out)
{
    memset(out, 0, sizeof *out);
    line_fields *lf = malloc(sizeof *lf);
    size_t cap = count_lines(text);
    out->pairs = calloc(cap, sizeof *out->pairs);
    if (!lf || !out->pairs) {
        free(lf);
        free(out->pairs);
        out->pairs = NULL;
        return base_error_set(BASE_ERR_NOMEM, "pair list: %zu lines", cap);
    }
    const char *p = text, *s;
    size_t len, line_no = 0;
    int rc = 0, with_fold = -1;
    while (next_line(&p, &s, &len)) {
        line_no++;
        if (is_blank(s, len)) continue;
        split_fields(s, len, lf);
        if (lf->n >= 1 && lf->field[0][0] == '#') continue;
        long same, fold = -1;
        int ok = (lf->n == 3 || lf->n == 4) && !lf->too_long &&
                 parse_long(lf->field[2], 0, 1, &same) == 0 &&
                 (lf->n == 3 || parse_long(lf->field[3], 0, EVAL_MAX_FOLDS - 1, &fold) == 0);
        if (!ok) {
            rc = base_error_set(BASE_ERR_FORMAT,
                                "pair list: line %zu: expected \"path1 path2 same(1|0) [fold "
                                "0..%d]\"",
                                line_no, EVAL_MAX_FOLDS - 1);
            goto done;
        }
        int has_fold = lf->n == 4;
        if (with_fold >= 0 && has_fold != with_fold) {
            rc = base_error_set(BASE_ERR_FORMAT,
                                "pair list: line %zu: a fold on some lines and not on others",
                                line_no);
            goto done;
        }
        with_fold = has_fold;
        eval_pair *pair = &out->pairs[out->n++];
        pair->path1 = strdup(lf->field[0]);
        pair->path2 = strdup(lf->field[1]);
        pair->same = (int)same;
        pair->fold = (int)fold;
        if (!pair->path1 || !pair->path2) {
            rc = base_error_set(BASE_ERR_NOMEM, "pair list: out of memory");
            goto done;
        }
        if (fold + 1 > out->n_folds) out->n_folds = (int)fold + 1;
    }
done:
    free(lf);
    if (rc != 0) eval_pair_list_free(out);
    return rc;
}

void eval_gt_set_free(eval_gt_set *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->images[i].path);
        free(s->images[i].faces);
    }
    free(s->images);
    memset(s, 0, sizeof *s);
}

#define WIDER_MAX_FACES 100000

/* A line made only of numbers (the placeholder after a count of 0). */
static int all_numeric(const line_fields *lf)
{
    if (lf->n < 1 || lf->n > MAX_FIELDS) return 0;
    for (int i = 0; i < lf->n; i++) {
        float v;
        if (parse_float(lf->field[i], &v) != 0) return 0;
    }
    return 1;
}

/* Next line that is neither blank nor a comment; 0 at the end. */
static int next_content_line(const char **p, const char **s, size_t *len, size_t *line_no)
{
    while (next_line(p, s, len)) {
        (*line_no)++;
        if (is_blank(*s, *len)) continue;
        size_t i = 0;
        while (i < *len && ((*s)[i] == ' ' || (*s)[i] == '\t'))
            i++;
        if ((*s)[i] == '#') continue;
        return 1;
    }
    return 0;
}

int eval_parse_wider_gt(const char *text, eval_gt_set *out)
{
    memset(out, 0, sizeof *out);
    line_fields *lf = malloc(sizeof *lf);
    if (!lf) return base_error_set(BASE_ERR_NOMEM, "WIDER gt: out of memory");
    const char *p = text, *s;
    size_t len, line_no = 0, cap = 0;
    int rc = 0;
    while (next_content_line(&p, &s, &len, &line_no)) {
        split_fields(s, len, lf);
        if (lf->n != 1 || lf->too_long) {
            rc = base_error_set(BASE_ERR_FORMAT, "WIDER gt: line %zu: expected an image path",
                                line_no);
            goto done;
        }
        if (out->n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            eval_gt_image *g = realloc(out->images, ncap * sizeof *g);
            if (!g) {
                rc = base_error_set(BASE_ERR_NOMEM, "WIDER gt: %zu images", ncap);
                goto done;
            }
            out->images = g;
            cap = ncap;
        }
        eval_gt_image *im = &out->images[out->n++];
        memset(im, 0, sizeof *im);
        im->path = strdup(lf->field[0]);
        if (!im->path) {
            rc = base_error_set(BASE_ERR_NOMEM, "WIDER gt: out of memory");
            goto done;
        }
        long count;
        if (!next_content_line(&p, &s, &len, &line_no)) {
            rc = base_error_set(BASE_ERR_FORMAT, "WIDER gt: the file ends after the path of %s",
                                im->path);
            goto done;
        }
        split_fields(s, len, lf);
        if (lf->n != 1 || parse_long(lf->field[0], 0, WIDER_MAX_FACES, &count) != 0) {
            rc = base_error_set(BASE_ERR_FORMAT,
                                "WIDER gt: line %zu: expected a face count 0..%d for %s", line_no,
                                WIDER_MAX_FACES, im->path);
            goto done;
        }
        if (count == 0) {
            /* The official file follows a count of 0 with one line of zeros. */
            const char *save = p;
            size_t save_no = line_no;
            if (next_content_line(&p, &s, &len, &line_no)) {
                split_fields(s, len, lf);
                if (!all_numeric(lf) || lf->n < 10) {
                    p = save;
                    line_no = save_no;
                }
            }
            continue;
        }
        im->faces = calloc((size_t)count, sizeof *im->faces);
        if (!im->faces) {
            rc = base_error_set(BASE_ERR_NOMEM, "WIDER gt: %ld faces", count);
            goto done;
        }
        for (long f = 0; f < count; f++) {
            if (!next_content_line(&p, &s, &len, &line_no)) {
                rc = base_error_set(BASE_ERR_FORMAT,
                                    "WIDER gt: the file ends at face %ld of %ld of %s", f, count,
                                    im->path);
                goto done;
            }
            split_fields(s, len, lf);
            eval_gt_face *g = &im->faces[f];
            long difficulty;
            if (lf->n != 11 || parse_float(lf->field[0], &g->x) != 0 ||
                parse_float(lf->field[1], &g->y) != 0 || parse_float(lf->field[2], &g->w) != 0 ||
                parse_float(lf->field[3], &g->h) != 0 ||
                parse_long(lf->field[10], 0, 3, &difficulty) != 0) {
                rc = base_error_set(BASE_ERR_FORMAT,
                                    "WIDER gt: line %zu: expected \"x y w h blur expression "
                                    "illumination invalid occlusion pose difficulty(0..3)\"",
                                    line_no);
                goto done;
            }
            g->difficulty = (int)difficulty;
            im->n_faces++;
        }
    }
done:
    free(lf);
    if (rc != 0) eval_gt_set_free(out);
    return rc;
}

int eval_parse_utk_name(const char *name, int *age, int *female)
{
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    const char *c = base;
    long a = 0;
    int digits = 0;
    while (isdigit((unsigned char)*c) && digits < 4) {
        a = a * 10 + (*c - '0');
        c++;
        digits++;
    }
    if (digits == 0 || *c != '_' || a > 150)
        return base_error_set(BASE_ERR_FORMAT, "UTKFace name %s: expected age_gender_...", base);
    c++;
    if ((c[0] != '0' && c[0] != '1') || c[1] != '_')
        return base_error_set(BASE_ERR_FORMAT, "UTKFace name %s: gender is not 0 or 1", base);
    *age = (int)a;
    *female = c[0] == '1';
    return 0;
}
