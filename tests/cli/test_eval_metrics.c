/*
 * Tests of the accuracy harness arithmetic (src/cli/eval_metrics.c) on small cases whose
 * answers were worked out by hand; the working is in the comments next to each case.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cli/eval_input.h"
#include "cli/eval_metrics.h"

#define EPS 1e-9

static void assert_close(double got, double want, double eps)
{
    if (!(fabs(got - want) <= eps)) fail_msg("got %.12g, want %.12g", got, want);
}

/* --- verification ------------------------------------------------------------------------ */

static void test_accuracy_counts_nan_as_error(void **state)
{
    (void)state;
    /* At 0.5: 0.9 same accepted (right), 0.8 different accepted (wrong), 0.3 same rejected
     * (wrong), 0.2 different rejected (right), NaN (no face) wrong although "different". */
    const double s[] = {0.9, 0.8, 0.3, 0.2, NAN};
    const int same[] = {1, 0, 1, 0, 0};
    assert_close(eval_accuracy(s, same, 5, 0.5), 2.0 / 5.0, EPS);
    /* score == threshold is accepted. */
    assert_close(eval_accuracy(s, same, 2, 0.9), 1.0, EPS);
    assert_close(eval_accuracy(s, same, 0, 0.5), 0.0, EPS);
}

static void test_best_threshold_first_best_run(void **state)
{
    (void)state;
    /* Sorted: 0.1 d, 0.2 d, 0.3 s, 0.4 d, 0.5 s, 0.6 s. Candidates and accuracy:
     * below 0.1: 3/6, 0.15: 4/6, 0.25: 5/6, 0.35: 4/6, 0.45: 5/6, 0.55: 4/6, above: 3/6.
     * Two separate best runs; the first one is {0.25}. Input order shuffled on purpose. */
    const double s[] = {0.5, 0.1, 0.4, 0.3, 0.6, 0.2};
    const int same[] = {1, 0, 0, 1, 1, 0};
    double t = 0, acc = 0;
    assert_int_equal(eval_best_threshold(s, same, 6, &t, &acc), 0);
    assert_close(t, 0.25, 1e-12);
    assert_close(acc, 5.0 / 6.0, EPS);
}

static void test_best_threshold_plateau_middle(void **state)
{
    (void)state;
    /* Sorted 0.1 d, 0.2 d, 0.8 s, 0.85 d, 0.86 d, 0.9 s. Candidates and accuracy:
     * below 2/6, 0.15 3/6, 0.5 4/6, 0.825 3/6, 0.855 4/6, 0.88 5/6, above 4/6: 0.88. */
    const double s[] = {0.1, 0.2, 0.8, 0.85, 0.86, 0.9};
    const int same[] = {0, 0, 1, 0, 0, 1};
    double t = 0, acc = 0;
    assert_int_equal(eval_best_threshold(s, same, 6, &t, &acc), 0);
    assert_close(t, 0.88, 1e-12);
    assert_close(acc, 5.0 / 6.0, EPS);

    /* Sorted 0.1 d, 0.2 d, 0.25 s, 0.3 d, 0.7 s, 0.75 d, 0.8 s, 0.9 s: below 4/8, 0.15 5/8,
     * 0.225 6/8, 0.275 5/8, 0.5 6/8, 0.725 5/8, 0.775 6/8, 0.85 5/8, above 4/8. Three best
     * candidates, none adjacent: the first, 0.225. */
    const double s2[] = {0.1, 0.2, 0.25, 0.3, 0.7, 0.75, 0.8, 0.9};
    const int same2[] = {0, 0, 1, 0, 1, 0, 1, 1};
    assert_int_equal(eval_best_threshold(s2, same2, 8, &t, &acc), 0);
    assert_close(t, 0.225, 1e-12);
    assert_close(acc, 6.0 / 8.0, EPS);

    /* A plateau: a score shared by one same and one different pair changes nothing when the
     * threshold crosses it. 0.1 d, 0.4 s, 0.4 d, 0.6 s, 0.6 d, 0.9 s: below 3/6, 0.25 4/6,
     * 0.5 4/6, 0.75 4/6, above 3/6. The run {0.25, 0.5, 0.75}: its middle, 0.5. */
    const double s3[] = {0.4, 0.1, 0.6, 0.4, 0.9, 0.6};
    const int same3[] = {1, 0, 0, 0, 1, 1};
    assert_int_equal(eval_best_threshold(s3, same3, 6, &t, &acc), 0);
    assert_close(t, 0.5, 1e-12);
    assert_close(acc, 4.0 / 6.0, EPS);

    /* Even run: 0.5 s, 0.5 d, 0.7 s: below 2/3, 0.6 2/3, above 1/3. The run {below, 0.6}
     * has two middles; the lower is taken: just below 0.5, every pair accepted. */
    const double s4[] = {0.5, 0.5, 0.7};
    const int same4[] = {1, 0, 1};
    assert_int_equal(eval_best_threshold(s4, same4, 3, &t, &acc), 0);
    assert_true(t < 0.5 && t > 0.49);
    assert_close(acc, 2.0 / 3.0, EPS);

    /* Only same pairs: accept all. */
    const double s5[] = {0.2, 0.4, 0.6};
    const int same5[] = {1, 1, 1};
    assert_int_equal(eval_best_threshold(s5, same5, 3, &t, &acc), 0);
    assert_true(t < 0.2);
    assert_close(acc, 1.0, EPS);

    assert_int_equal(eval_best_threshold(s5, same5, 0, &t, &acc), BASE_ERR_INVALID);
}

static void test_best_threshold_ignores_nan_in_candidates(void **state)
{
    (void)state;
    /* 0.2 d, 0.8 s, NaN s: the NaN pair is wrong at any threshold. Best: 0.5, accuracy 2/3. */
    const double s[] = {0.2, NAN, 0.8};
    const int same[] = {0, 1, 1};
    double t = 0, acc = 0;
    assert_int_equal(eval_best_threshold(s, same, 3, &t, &acc), 0);
    assert_close(t, 0.5, 1e-12);
    assert_close(acc, 2.0 / 3.0, EPS);
}

static void test_kfold_two_folds(void **state)
{
    (void)state;
    /* Fold 0: 0.2 d, 0.6 s, 0.45 d. Fold 1: 0.3 d, 0.5 s, 0.7 s, 0.55 d.
     * Test fold 0, train on fold 1 (sorted 0.3 d, 0.5 s, 0.55 d, 0.7 s): candidates below 2/4,
     * 0.4 3/4, 0.525 2/4, 0.625 3/4, above 2/4 -> 0.4. On fold 0: 0.2 rejected (right),
     * 0.6 accepted (right), 0.45 accepted (wrong): 2/3.
     * Test fold 1, train on fold 0 (0.2 d, 0.45 d, 0.6 s): below 1/3, 0.325 2/3, 0.525 3/3,
     * above 2/3 -> 0.525. On fold 1: 0.3 right, 0.5 s rejected wrong, 0.55 d accepted wrong,
     * 0.7 right: 2/4.
     * Mean (2/3 + 1/2) / 2 = 7/12; std with k - 1: |2/3 - 7/12| = 1/12, sqrt(2 / 144) =
     * 0.11785113019775793. */
    const double s[] = {0.2, 0.3, 0.6, 0.5, 0.45, 0.7, 0.55};
    const int same[] = {0, 0, 1, 1, 0, 1, 0};
    const int fold[] = {0, 1, 0, 1, 0, 1, 1};
    eval_kfold_result r;
    assert_int_equal(eval_kfold(s, same, fold, 7, 2, &r), 0);
    assert_int_equal(r.k, 2);
    assert_close(r.threshold[0], 0.4, 1e-12);
    assert_close(r.threshold[1], 0.525, 1e-12);
    assert_close(r.accuracy[0], 2.0 / 3.0, EPS);
    assert_close(r.accuracy[1], 0.5, EPS);
    assert_close(r.mean, 7.0 / 12.0, EPS);
    assert_close(r.std, 0.11785113019775793, 1e-12);

    /* A fold without pairs and a fold index out of range are errors. */
    const int bad_fold[] = {0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(eval_kfold(s, same, bad_fold, 7, 2, &r), BASE_ERR_INVALID);
    const int out_of_range[] = {0, 1, 0, 1, 0, 1, 2};
    assert_int_equal(eval_kfold(s, same, out_of_range, 7, 2, &r), BASE_ERR_INVALID);
}

static void test_interleave_folds(void **state)
{
    (void)state;
    /* Same pairs at 0, 1, 2, 5 go to folds 0 1 0 1; different pairs at 3, 4, 6 to 0 1 0. */
    const int same[] = {1, 1, 1, 0, 0, 1, 0};
    int fold[7];
    eval_interleave_folds(same, 7, 2, fold);
    const int want[] = {0, 1, 0, 0, 1, 1, 0};
    for (int i = 0; i < 7; i++)
        assert_int_equal(fold[i], want[i]);
}

static void test_roc_points(void **state)
{
    (void)state;
    /* Same: 0.9, 0.7, 0.4, NaN; different: 0.8, 0.3, 0.2, 0.1 (4 and 4).
     * Thresholds from the top: +inf (0, 0); 0.9 (0, 1/4); 0.8 (1/4, 1/4); 0.7 (1/4, 2/4);
     * 0.4 (1/4, 3/4); 0.3 (2/4, 3/4); 0.2 (3/4, 3/4); 0.1 (1, 3/4): the NaN same pair
     * keeps TAR at 3/4. */
    const double s[] = {0.9, 0.8, 0.7, 0.3, 0.4, 0.2, NAN, 0.1};
    const int same[] = {1, 0, 1, 0, 1, 0, 1, 0};
    eval_roc_point *p = NULL;
    size_t n = 0;
    assert_int_equal(eval_roc(s, same, 8, &p, &n), 0);
    assert_int_equal(n, 8);
    const double far[] = {0, 0, .25, .25, .25, .5, .75, 1};
    const double tar[] = {0, .25, .25, .5, .75, .75, .75, .75};
    const double thr[] = {INFINITY, .9, .8, .7, .4, .3, .2, .1};
    for (size_t i = 0; i < n; i++) {
        assert_close(p[i].far, far[i], EPS);
        assert_close(p[i].tar, tar[i], EPS);
        if (i == 0)
            assert_true(isinf(p[i].threshold));
        else
            assert_close(p[i].threshold, thr[i], EPS);
    }
    /* FAR 0.1 lies between (0, 1/4) and (1/4, 1/4): 1/4. At exactly 1/4: the highest TAR at
     * that FAR, 3/4. Past the end: the last TAR. */
    assert_close(eval_tar_at_far(p, n, 0.1), 0.25, EPS);
    assert_close(eval_tar_at_far(p, n, 0.25), 0.75, EPS);
    assert_close(eval_tar_at_far(p, n, 2.0), 0.75, EPS);
    free(p);

    /* A diagonal segment through ties: same 0.9, 0.5; different 0.5, 0.2.
     * Points (0,0), 0.9 (0, 1/2), 0.5 (1/2, 1), 0.2 (1, 1). At FAR 1/4: halfway between
     * (0, 1/2) and (1/2, 1) -> 3/4. At FAR 1e-3: 0.5 + 0.5 * 0.002 = 0.501. */
    const double s2[] = {0.9, 0.5, 0.5, 0.2};
    const int same2[] = {1, 1, 0, 0};
    assert_int_equal(eval_roc(s2, same2, 4, &p, &n), 0);
    assert_int_equal(n, 4);
    assert_close(eval_tar_at_far(p, n, 0.25), 0.75, EPS);
    assert_close(eval_tar_at_far(p, n, 1e-3), 0.501, EPS);
    assert_close(eval_tar_at_far(p, n, 0.0), 0.5, EPS);
    free(p);

    const int all_same[] = {1, 1, 1, 1};
    assert_int_equal(eval_roc(s2, all_same, 4, &p, &n), BASE_ERR_INVALID);
}

/* --- detection --------------------------------------------------------------------------- */

static void test_wider_iou_pixel_convention(void **state)
{
    (void)state;
    /* (0,0,10,10) covers x 0..10 inclusive: 11 x 11 = 121. Shifted by (1,1): intersection
     * 10 x 10 = 100, union 242 - 100 = 142. */
    assert_close(eval_wider_iou(0, 0, 10, 10, 1, 1, 10, 10), 100.0 / 142.0, 1e-12);
    assert_close(eval_wider_iou(0, 0, 10, 10, 0, 0, 10, 10), 1.0, 1e-12);
    assert_close(eval_wider_iou(0, 0, 10, 10, 50, 50, 10, 10), 0.0, 1e-12);
}

/*
 * Image A: faces F0 (0,0,10,10) difficulty 0, F1 (100,0,10,10) difficulty 2, F2 (200,0,10,10)
 * difficulty 3. Detections D0 on F0 (0.9), D1 on F1 (0.8), D2 on nothing (0.7), D3 on F2
 * (0.6), D4 (1,1,10,10) on F0 again (0.5, IoU 0.70).
 * Image B: face G0 (0,0,20,20) difficulty 1; detection E0 on it (0.3).
 * Normalised scores (s - 0.3) / 0.6: D0 1, D1 .833, D2 .667, D3 .5, D4 .333, E0 0.
 */
static const eval_gt_face faces_a[] = {{0, 0, 10, 10, 0}, {100, 0, 10, 10, 2}, {200, 0, 10, 10, 3}};
static const eval_detection dets_a[] = {{300, 0, 10, 10, 0.7f},
                                        {0, 0, 10, 10, 0.9f},
                                        {1, 1, 10, 10, 0.5f},
                                        {200, 0, 10, 10, 0.6f},
                                        {100, 0, 10, 10, 0.8f}};
static const eval_gt_face faces_b[] = {{0, 0, 20, 20, 1}};
static const eval_detection dets_b[] = {{0, 0, 20, 20, 0.3f}};

static void wider_case(int setting, long max_fp, eval_wider_result *r)
{
    const eval_det_image images[] = {{dets_a, 5, faces_a, 3}, {dets_b, 1, faces_b, 1}};
    eval_wider_options o = {.setting = setting, .max_fp = max_fp};
    assert_int_equal(eval_wider(images, 2, &o, r), 0);
    assert_int_equal(r->n_points, 1000);
}

static void test_wider_easy(void **state)
{
    (void)state;
    /* Easy: positives F0 only. D0 TP; D1, D3 (ignored faces) and E0 (G0 is medium) are not
     * proposals; D2 and D4 (second hit on F0) are false positives. Recall reaches 1 at the
     * first threshold with precision 1: AP = 1. */
    eval_wider_result r;
    wider_case(EVAL_WIDER_EASY, 0, &r);
    assert_int_equal(r.positives, 1);
    assert_int_equal(r.true_positives, 1);
    assert_int_equal(r.false_positives, 2);
    assert_int_equal(r.ignored, 3);
    assert_close(r.recall, 1.0, EPS);
    assert_close(r.ap, 1.0, 1e-12);
    assert_close(r.recall_at_fp, 1.0, EPS);
    assert_int_equal(r.fp_at_fp, 0);
    eval_wider_result_free(&r);
}

static void test_wider_medium(void **state)
{
    (void)state;
    /* Medium: positives F0, G0. By falling threshold: D0 (P 1, R 1/2), D2 (P 1/2), D4 (P 1/3),
     * E0 at normalised 0, taken at the last threshold 0 (P 2/4, R 1).
     * AP = 1/2 * 1 + 1/2 * 1/2 = 0.75. */
    eval_wider_result r;
    wider_case(EVAL_WIDER_MEDIUM, 1, &r);
    assert_int_equal(r.positives, 2);
    assert_int_equal(r.true_positives, 2);
    assert_int_equal(r.false_positives, 2);
    assert_int_equal(r.ignored, 2);
    assert_close(r.ap, 0.75, 1e-12);
    /* The PR curve: first threshold 0.999 holds D0 only; the last (0) everything. */
    assert_close(r.precision[0], 1.0, EPS);
    assert_close(r.recall_curve[0], 0.5, EPS);
    assert_close(r.precision[999], 0.5, EPS);
    assert_close(r.recall_curve[999], 1.0, EPS);
    /* With one false positive allowed: D0, D1 (ignored), D2 (FP 1), D3 (ignored); D4 would be
     * the second: recall 1/2. */
    assert_close(r.recall_at_fp, 0.5, EPS);
    assert_int_equal(r.fp_at_fp, 1);
    eval_wider_result_free(&r);
}

static void test_wider_hard(void **state)
{
    (void)state;
    /* Hard: positives F0, F1, G0. D0 (P 1, R 1/3), D1 (P 1, R 2/3), D2 (P 2/3), D4 (P 2/4),
     * E0 (P 3/5, R 1). Envelope: 1 up to recall 2/3, then 0.6.
     * AP = 1/3 + 1/3 + 0.6 / 3 = 2.6 / 3. */
    eval_wider_result r;
    wider_case(EVAL_WIDER_HARD, 1, &r);
    assert_int_equal(r.positives, 3);
    assert_int_equal(r.true_positives, 3);
    assert_int_equal(r.false_positives, 2);
    assert_int_equal(r.ignored, 1);
    assert_close(r.ap, 2.6 / 3.0, 1e-12);
    assert_close(r.recall_at_fp, 2.0 / 3.0, EPS);
    assert_int_equal(r.fp_at_fp, 1);
    eval_wider_result_free(&r);

    wider_case(EVAL_WIDER_HARD, 2, &r);
    assert_close(r.recall_at_fp, 1.0, EPS);
    assert_int_equal(r.fp_at_fp, 2);
    eval_wider_result_free(&r);
}

static void test_wider_best_overlap_only(void **state)
{
    (void)state;
    /* The official code looks only at the face a detection overlaps most: a detection whose
     * best face is an ignored one is not a proposal, even when it also overlaps a positive
     * face above the IoU threshold. Faces: K (0,0,10,10) difficulty 0 and I (0,1,10,10)
     * difficulty 3; detection (0,1,10,10) overlaps I fully and K with IoU 110/132. In easy
     * it is ignored: no proposal, K not recalled, AP 0 (no recall at any threshold). */
    const eval_gt_face faces[] = {{0, 0, 10, 10, 0}, {0, 1, 10, 10, 3}};
    const eval_detection dets[] = {{0, 1, 10, 10, 0.9f}};
    const eval_det_image images[] = {{dets, 1, faces, 2}};
    eval_wider_options o = {.setting = EVAL_WIDER_EASY, .max_fp = -1};
    eval_wider_result r;
    assert_int_equal(eval_wider(images, 1, &o, &r), 0);
    assert_int_equal(r.positives, 1);
    assert_int_equal(r.true_positives, 0);
    assert_int_equal(r.false_positives, 0);
    assert_int_equal(r.ignored, 1);
    assert_close(r.ap, 0.0, EPS);
    eval_wider_result_free(&r);
}

static void test_wider_no_detections(void **state)
{
    (void)state;
    const eval_gt_face faces[] = {{0, 0, 10, 10, 0}};
    const eval_det_image images[] = {{NULL, 0, faces, 1}};
    eval_wider_options o = {.setting = EVAL_WIDER_HARD, .max_fp = 10};
    eval_wider_result r;
    assert_int_equal(eval_wider(images, 1, &o, &r), 0);
    assert_int_equal(r.positives, 1);
    assert_close(r.ap, 0.0, EPS);
    assert_close(r.recall, 0.0, EPS);
    eval_wider_result_free(&r);
    o.setting = 7;
    assert_int_equal(eval_wider(images, 1, &o, &r), BASE_ERR_INVALID);
}

/* --- age and gender ---------------------------------------------------------------------- */

static void test_age_gender(void **state)
{
    (void)state;
    /* Errors 3, 5, 0 over the three found: MAE 8/3. Gender: female predicted (0.2) right,
     * male (0.7) right, male (0.9) for a woman wrong, not found wrong: 2/4. */
    const eval_age_sample s[] = {
        {30, 1, 1, 33, 0.2}, {50, 0, 1, 45, 0.7}, {20, 1, 1, 20, 0.9}, {40, 0, 0, 0, 0}};
    eval_age_result r;
    eval_age_gender(s, 4, &r);
    assert_int_equal(r.n, 4);
    assert_int_equal(r.found, 3);
    assert_close(r.age_mae, 8.0 / 3.0, EPS);
    assert_close(r.gender_accuracy, 0.5, EPS);
    assert_close(r.gender_accuracy_found, 2.0 / 3.0, EPS);
    eval_age_gender(s + 3, 1, &r);
    assert_true(isnan(r.age_mae));
    assert_close(r.gender_accuracy, 0.0, EPS);
}

/* --- parsers ----------------------------------------------------------------------------- */

static void test_parse_lfw_dev(void **state)
{
    (void)state;
    eval_pair_list l;
    assert_int_equal(
        eval_parse_lfw_pairs("2\r\nA_B 1 2\r\nC\t3\t4\r\nA_B 1 D 2\r\nE 10 F 100\r\n", &l), 0);
    assert_int_equal(l.n, 4);
    assert_int_equal(l.n_folds, 0);
    assert_string_equal(l.pairs[0].path1, "A_B/A_B_0001.jpg");
    assert_string_equal(l.pairs[0].path2, "A_B/A_B_0002.jpg");
    assert_int_equal(l.pairs[0].same, 1);
    assert_int_equal(l.pairs[0].fold, -1);
    assert_string_equal(l.pairs[1].path1, "C/C_0003.jpg");
    assert_string_equal(l.pairs[2].path2, "D/D_0002.jpg");
    assert_int_equal(l.pairs[2].same, 0);
    assert_string_equal(l.pairs[3].path1, "E/E_0010.jpg");
    assert_string_equal(l.pairs[3].path2, "F/F_0100.jpg");
    eval_pair_list_free(&l);
}

static void test_parse_lfw_view2(void **state)
{
    (void)state;
    eval_pair_list l;
    assert_int_equal(eval_parse_lfw_pairs("2 1\nA 1 2\nB 1 C 1\nD 1 2\nE 1 F 2", &l), 0);
    assert_int_equal(l.n, 4);
    assert_int_equal(l.n_folds, 2);
    const int fold[] = {0, 0, 1, 1}, same[] = {1, 0, 1, 0};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(l.pairs[i].fold, fold[i]);
        assert_int_equal(l.pairs[i].same, same[i]);
    }
    assert_string_equal(l.pairs[3].path2, "F/F_0002.jpg");
    eval_pair_list_free(&l);
}

static void test_parse_lfw_errors(void **state)
{
    (void)state;
    eval_pair_list l;
    assert_int_equal(eval_parse_lfw_pairs("2\nA 1 2\nB 1 C 2\n", &l), BASE_ERR_FORMAT);
    assert_int_equal(eval_parse_lfw_pairs("1\nA 1 C 2\nB 1 2\n", &l), BASE_ERR_FORMAT);
    assert_int_equal(eval_parse_lfw_pairs("1\nA x 2\nB 1 C 2\n", &l), BASE_ERR_FORMAT);
    assert_int_equal(eval_parse_lfw_pairs("1\nA 1 2\nB 1 C 2\nextra 1 2\n", &l), BASE_ERR_FORMAT);
    assert_int_equal(eval_parse_lfw_pairs("", &l), BASE_ERR_FORMAT);
    assert_int_equal(eval_parse_lfw_pairs("-1\n", &l), BASE_ERR_FORMAT);
    assert_int_equal(eval_parse_lfw_pairs("1\nA 0 2\nB 1 C 2\n", &l), BASE_ERR_FORMAT);
}

static void test_parse_pair_list(void **state)
{
    (void)state;
    eval_pair_list l;
    /* Folds 0..3 each hold a pair (a skipped number is refused: test_eval_input.c). */
    assert_int_equal(eval_parse_pair_list("# comment\n\na.jpg b.jpg 1 0\nc/d.png e.jpg 0 3\n"
                                          "f g 1 1\nh i 0 2\n",
                                          &l),
                     0);
    assert_int_equal(l.n, 4);
    assert_int_equal(l.n_folds, 4);
    assert_string_equal(l.pairs[1].path1, "c/d.png");
    assert_int_equal(l.pairs[1].same, 0);
    assert_int_equal(l.pairs[1].fold, 3);
    eval_pair_list_free(&l);

    assert_int_equal(eval_parse_pair_list("a b 1\nc d 0\n", &l), 0);
    assert_int_equal(l.n_folds, 0);
    assert_int_equal(l.pairs[1].fold, -1);
    eval_pair_list_free(&l);

    assert_int_equal(eval_parse_pair_list("a b 1 0\nc d 0\n", &l), BASE_ERR_FORMAT);
    assert_int_equal(eval_parse_pair_list("a b 2\n", &l), BASE_ERR_FORMAT);
    assert_int_equal(eval_parse_pair_list("a b\n", &l), BASE_ERR_FORMAT);
    assert_int_equal(eval_parse_pair_list("a b 1 0 9\n", &l), BASE_ERR_FORMAT);
}

static void test_parse_wider_gt(void **state)
{
    (void)state;
    const char *text = "# comment line\n"
                       "0--Parade/a.jpg\n"
                       "2\n"
                       "1 2 3 4 0 0 0 0 0 0 0\n"
                       "5 6 7 8 2 0 0 0 1 0 3\n"
                       "1--X/b.jpg\n"
                       "0\n"
                       "0 0 0 0 0 0 0 0 0 0\n"
                       "2--Y/c.jpg\n"
                       "1\n"
                       "10 20 30 40 1 0 0 0 0 0 2\n";
    eval_gt_set s;
    assert_int_equal(eval_parse_wider_gt(text, &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.images[0].path, "0--Parade/a.jpg");
    assert_int_equal(s.images[0].n_faces, 2);
    assert_close(s.images[0].faces[1].x, 5, EPS);
    assert_close(s.images[0].faces[1].h, 8, EPS);
    assert_int_equal(s.images[0].faces[1].difficulty, 3);
    assert_int_equal(s.images[1].n_faces, 0);
    assert_string_equal(s.images[2].path, "2--Y/c.jpg");
    assert_int_equal(s.images[2].faces[0].difficulty, 2);
    eval_gt_set_free(&s);

    /* Missing difficulty column, a count larger than the lines, a bad difficulty. */
    assert_int_equal(eval_parse_wider_gt("a.jpg\n1\n1 2 3 4 0 0 0 0 0 0\n", &s), BASE_ERR_FORMAT);
    assert_int_equal(eval_parse_wider_gt("a.jpg\n2\n1 2 3 4 0 0 0 0 0 0 0\n", &s), BASE_ERR_FORMAT);
    assert_int_equal(eval_parse_wider_gt("a.jpg\n1\n1 2 3 4 0 0 0 0 0 0 4\n", &s), BASE_ERR_FORMAT);
    assert_int_equal(eval_parse_wider_gt("a.jpg\nx\n", &s), BASE_ERR_FORMAT);
    assert_int_equal(eval_parse_wider_gt("a.jpg\n-1\n", &s), BASE_ERR_FORMAT);
}

static void test_parse_utk_name(void **state)
{
    (void)state;
    int age = -1, female = -1;
    assert_int_equal(eval_parse_utk_name("25_1_0_20170116174525125.jpg.chip.jpg", &age, &female),
                     0);
    assert_int_equal(age, 25);
    assert_int_equal(female, 1);
    assert_int_equal(eval_parse_utk_name("dir/sub/100_0_2_20170112213303693.jpg", &age, &female),
                     0);
    assert_int_equal(age, 100);
    assert_int_equal(female, 0);
    /* UTKFace has a few names without the race field: age and gender are still there. */
    assert_int_equal(eval_parse_utk_name("39_1_20170116174525125.jpg.chip.jpg", &age, &female), 0);
    assert_int_equal(age, 39);
    assert_int_equal(eval_parse_utk_name("61_3_20170109150557335.jpg", &age, &female),
                     BASE_ERR_FORMAT);
    assert_int_equal(eval_parse_utk_name("x_1_0_2017.jpg", &age, &female), BASE_ERR_FORMAT);
    assert_int_equal(eval_parse_utk_name("999_1_0_2017.jpg", &age, &female), BASE_ERR_FORMAT);
    assert_int_equal(eval_parse_utk_name("25.jpg", &age, &female), BASE_ERR_FORMAT);
}

int main(void)
{
    base_log_level = BASE_LOG_OFF;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accuracy_counts_nan_as_error),
        cmocka_unit_test(test_best_threshold_first_best_run),
        cmocka_unit_test(test_best_threshold_plateau_middle),
        cmocka_unit_test(test_best_threshold_ignores_nan_in_candidates),
        cmocka_unit_test(test_kfold_two_folds),
        cmocka_unit_test(test_interleave_folds),
        cmocka_unit_test(test_roc_points),
        cmocka_unit_test(test_wider_iou_pixel_convention),
        cmocka_unit_test(test_wider_easy),
        cmocka_unit_test(test_wider_medium),
        cmocka_unit_test(test_wider_hard),
        cmocka_unit_test(test_wider_best_overlap_only),
        cmocka_unit_test(test_wider_no_detections),
        cmocka_unit_test(test_age_gender),
        cmocka_unit_test(test_parse_lfw_dev),
        cmocka_unit_test(test_parse_lfw_view2),
        cmocka_unit_test(test_parse_lfw_errors),
        cmocka_unit_test(test_parse_pair_list),
        cmocka_unit_test(test_parse_wider_gt),
        cmocka_unit_test(test_parse_utk_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
