/*
 * The arithmetic of the accuracy harness; see eval_metrics.h for the definitions (the parsers
 * of its input files are in eval_input.c). No I/O:
 * everything here works on arrays and text in memory, so tests can check it on hand-made
 * cases.
 */
#include "cli/eval_metrics.h"

#include "base/base.h"

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
