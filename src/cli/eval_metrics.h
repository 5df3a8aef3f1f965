/*
 * eval_metrics — the arithmetic of the accuracy harness (`vultus eval ...`), kept apart from
 * any I/O so that tests can check it on hand-made cases:
 *   - face verification: accuracy at a threshold, the best threshold on a training set,
 *     k-fold cross-validation, the ROC and TAR at a given FAR;
 *   - face detection, WIDER FACE style: average precision per setting (easy, medium, hard)
 *     computed as the official evaluation code does, recall at a fixed number of false
 *     positives;
 *   - age and gender: mean absolute error and accuracy.
 * The parsers of the evaluation sets' text formats are in eval_input.h.
 *
 * Conventions. A verification score is a similarity (higher = more alike); a pair is
 * predicted "same" when score >= threshold. A score that is NaN marks a pair where no face
 * was found in one of the images: it is never accepted and it always counts as an error,
 * whatever the threshold and whatever the truth (so a "different" pair without a face is an
 * error too: the system could not decide it).
 *
 * Errors: 0 or a negative BASE_ERR_* code (BASE_ERR_INVALID for bad arguments,
 * BASE_ERR_NOMEM, BASE_ERR_FORMAT for malformed text, with base_error_message() naming the
 * line). Every function is reentrant; nothing is shared.
 */
#ifndef VULTUS_CLI_EVAL_METRICS_H
#define VULTUS_CLI_EVAL_METRICS_H

#include <stddef.h>

/* --- verification ------------------------------------------------------------------------ */

/* Fraction of the n pairs decided correctly at `threshold` (NaN scores are errors). 0 if n=0. */
double eval_accuracy(const double *scores, const int *same, size_t n, double threshold);

/*
 * The threshold that maximises accuracy on the n pairs. Candidates are every midpoint between
 * two consecutive distinct finite scores, plus one below the lowest and one above the highest
 * (so "accept all" and "reject all" are possible); each is evaluated by one sweep over the
 * sorted scores. Among candidates with the same best accuracy the middle candidate of the
 * first run of consecutive best candidates is taken (the lower middle when the run is even):
 * a threshold in the middle of a plateau rather than at its edge. The candidate below the
 * lowest score is that score - 1e-6, the one above the highest that score + 1e-6.
 * Fails with BASE_ERR_INVALID when n is 0.
 */
int eval_best_threshold(const double *scores, const int *same, size_t n, double *threshold,
                        double *accuracy);

#define EVAL_MAX_FOLDS 64

typedef struct eval_kfold_result {
    int k;                            /* folds that held pairs */
    double mean, std;                 /* of the per-fold accuracies; std with k - 1 (LFW) */
    double accuracy[EVAL_MAX_FOLDS];  /* per fold: tested with the threshold of the others */
    double threshold[EVAL_MAX_FOLDS]; /* chosen on the other folds */
} eval_kfold_result;

/*
 * k-fold cross-validation: for each fold f in 0..k-1 the threshold is chosen with
 * eval_best_threshold() on the pairs of every other fold and tested on fold f. fold[i] is in
 * 0..k-1. The LFW protocol's standard deviation divides by k - 1 (LFW README, View 2);
 * the standard error is std / sqrt(k). Every fold must hold at least one pair.
 */
int eval_kfold(const double *scores, const int *same, const int *fold, size_t n, int k,
               eval_kfold_result *out);

/*
 * Folds assigned "View 2 style" to a list that is not split into folds (LFW development
 * lists): the same pairs are dealt into folds round-robin in list order (the i-th same pair
 * goes to fold i % k), and so are the different pairs, so every fold holds the same mix of
 * same and different pairs, in the order of the lists. Fills fold[0..n).
 */
void eval_interleave_folds(const int *same, size_t n, int k, int *fold);

typedef struct eval_roc_point {
    double far;       /* false accept rate: different pairs accepted / different pairs */
    double tar;       /* true accept rate: same pairs accepted / same pairs (no-face pairs count) */
    double threshold; /* accept when score >= threshold */
} eval_roc_point;

/*
 * The ROC: one point per distinct finite score used as a threshold (from the highest down),
 * preceded by (0, 0) at threshold +inf. FAR and TAR both grow along the array. NaN scores are
 * never accepted but stay in the denominators: a same pair without a face caps TAR below 1.
 * *points is malloc'd (free it); *n_points >= 1. Needs at least one same and one different
 * pair (BASE_ERR_INVALID otherwise).
 */
int eval_roc(const double *scores, const int *same, size_t n, eval_roc_point **points,
             size_t *n_points);

/*
 * TAR at a target FAR, read off the ROC by linear interpolation: between the last point with
 * FAR <= target and the next point (FAR > target), TAR is interpolated linearly in FAR. When
 * several points share a FAR the highest TAR at that FAR is used at the lower end. With fewer
 * than 1/target different pairs the ROC has no point between FAR 0 and FAR 1/n_different, so
 * the figure is an interpolation between those two points (state the number of different
 * pairs next to it). Past the last point the last TAR is returned.
 */
double eval_tar_at_far(const eval_roc_point *points, size_t n_points, double far);

/* --- detection, WIDER FACE style --------------------------------------------------------- */

typedef struct eval_detection {
    float x, y, w, h; /* box, pixels */
    float score;
} eval_detection;

typedef struct eval_gt_face {
    float x, y, w, h;
    int difficulty; /* 0 easy, 1 medium, 2 hard, 3 in no setting */
} eval_gt_face;

typedef struct eval_det_image {
    const eval_detection *detections; /* any order */
    int n_detections;
    const eval_gt_face *faces;
    int n_faces;
} eval_det_image;

enum { EVAL_WIDER_EASY = 0, EVAL_WIDER_MEDIUM = 1, EVAL_WIDER_HARD = 2 };

typedef struct eval_wider_options {
    int setting;          /* EVAL_WIDER_EASY..HARD: faces of difficulty <= setting are positives */
    double iou_threshold; /* 0: 0.5 */
    int thresh_num;       /* score thresholds of the PR curve; 0: 1000 as the official code */
    long max_fp;          /* for recall_at_fp: the most false positives allowed; < 0: none */
} eval_wider_options;

typedef struct eval_wider_result {
    double ap;            /* area under the PR curve, official WIDER computation */
    long positives;       /* faces of difficulty <= setting, over all images */
    long true_positives;  /* at the detector's own operating point (all detections) */
    long false_positives; /* same */
    long ignored;         /* detections that matched an ignored face */
    double recall;        /* true_positives / positives */
    double recall_at_fp;  /* recall with at most max_fp false positives (by score, overall) */
    long fp_at_fp;        /* false positives actually taken for recall_at_fp (<= max_fp) */
    int n_points;         /* thresh_num */
    double *precision;    /* [n_points], malloc'd: the PR curve from the highest threshold */
    double *recall_curve; /* [n_points] */
} eval_wider_result;

/*
 * Intersection over union with the official WIDER / VOC pixel convention: a box (x, y, w, h)
 * covers x .. x + w inclusive, so widths and heights are (x2 - x1 + 1). Exported for tests.
 */
double eval_wider_iou(float ax, float ay, float aw, float ah, float bx, float by, float bw,
                      float bh);

/*
 * WIDER FACE evaluation, reproducing the official code (eval_tools/evaluation.m and its
 * Python port):
 *   1. Scores are min-max normalised over every detection of every image.
 *   2. Per image, detections in descending score order; each is compared with every face
 *      and considers only the face it overlaps most. If that IoU >= iou_threshold: when the
 *      face is ignored (difficulty > setting) the detection is not a proposal (neither TP nor
 *      FP); otherwise the face becomes recalled if it was not already (a second detection on
 *      a recalled face stays a proposal: a false positive).
 *   3. For t = 1..thresh_num, threshold 1 - t/thresh_num: per image, the proposals and the
 *      recalled faces among detections with normalised score >= threshold are summed over
 *      images; precision = recalled / proposals (0 when there are none, where the official
 *      code has 0/0; the envelope below makes the two equal), recall = recalled / positives.
 *   4. AP as VOC's continuous AP: recall padded with 0 and 1, precision with 0 and 0, the
 *      precision made monotone (running maximum from the right), then the sum of
 *      (delta recall) * precision where recall changes. Not the 11-point AP.
 * Images without faces or without detections add their positives and nothing else (as the
 * official code, whose loop skips them). recall_at_fp is this project's addition: every
 * detection of the dataset in one descending score order, recall when the false positives
 * reach max_fp. out->precision/recall_curve are malloc'd: eval_wider_result_free().
 */
int eval_wider(const eval_det_image *images, size_t n_images, const eval_wider_options *opts,
               eval_wider_result *out);
void eval_wider_result_free(eval_wider_result *r);

/* --- age and gender ---------------------------------------------------------------------- */

typedef struct eval_age_sample {
    double age;       /* truth, years */
    int female;       /* truth: 0 male, 1 female (UTKFace) */
    int found;        /* a face was found */
    double age_pred;  /* when found */
    double male_prob; /* when found: predicted probability of male; female when < 0.5 */
} eval_age_sample;

typedef struct eval_age_result {
    size_t n, found;
    double age_mae;               /* over the samples with a face; NaN when none */
    double gender_accuracy;       /* correct / n: a sample without a face counts as an error */
    double gender_accuracy_found; /* correct / found: NaN when none */
} eval_age_result;

void eval_age_gender(const eval_age_sample *samples, size_t n, eval_age_result *out);

#endif
