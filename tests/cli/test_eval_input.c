/*
 * Tests of what `vultus eval` reads (src/cli/eval_input.c): the evaluation sets' text files
 * and the option values, on hand-made texts. Each case that once failed names the defect it
 * found (tests/fuzz/fuzz_eval_input.c or a reading of the parser). The parsers' ordinary
 * cases (LFW development and View 2 lists, CRLF, comments, UTKFace names) are in
 * test_eval_metrics.c, from before the parsers had a file of their own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cli/eval_input.h"

/* A refusal: BASE_ERR_FORMAT, a message holding `words`, nothing left allocated. */
static void assert_gt_refused(const char *text, const char *words)
{
    eval_gt_set s;
    base_error_clear();
    int rc = eval_parse_wider_gt(text, &s);
    if (rc != BASE_ERR_FORMAT)
        fail_msg("accepted (rc %d, %zu images, first with %d faces, w %g): %.60s", rc, s.n,
                 s.n ? s.images[0].n_faces : -1,
                 s.n && s.images[0].n_faces ? s.images[0].faces[0].w : 0.0, text);
    if (!strstr(base_error_message(), words))
        fail_msg("message '%s' does not say '%s'", base_error_message(), words);
    assert_int_equal(s.n, 0);
    assert_null(s.images);
}

/* A face with a negative width or height is no face: the file is wrong, and the evaluation
 * would count a positive no detection can match. Found by fuzz_eval_input: '1.5 2.5 -10 12 ...'
 * was accepted with w = -10. A width or height of 0 stays accepted (the official
 * wider_face_val_bbx_gt.txt has such faces, marked invalid). */
static void test_wider_gt_refuses_negative_size(void **state)
{
    (void)state;
    assert_gt_refused("a.jpg\n1\n1.5 2.5 -10 12 0 0 0 0 0 0 2\n", "line 3");
    assert_gt_refused("a.jpg\n1\n1.5 2.5 10 -0.5 0 0 0 0 0 0 2\n", "line 3");
    assert_gt_refused("a.jpg\n2\n1 2 3 4 0 0 0 0 0 0 0\n1 2 3 -4 0 0 0 0 0 0 0\n", "line 4");

    eval_gt_set s;
    assert_int_equal(eval_parse_wider_gt("a.jpg\n2\n706 94 0 1 2 0 0 0 1 0 3\n0 0 0 0 0 0 0 0 0 "
                                         "0 3\n",
                                         &s),
                     0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.images[0].n_faces, 2);
    assert_true(s.images[0].faces[0].w == 0.0f && s.images[0].faces[0].h == 1.0f);
    eval_gt_set_free(&s);
}

/* A field over EVAL_MAX_FIELD bytes was cut there and the rest read as the value: a face count
 * of 1,100 zeros and a 5 was read as 0, and the face line after it skipped as the placeholder
 * of an image without faces (the face silently lost). Such a field is refused, as the pair
 * lists and the path line already did. Found reading the parser for the fuzz target. */
static void test_wider_gt_refuses_overlong_field(void **state)
{
    (void)state;
    size_t n = 1100;
    char *text = malloc(n + 64);
    assert_non_null(text);
    char *p = text + sprintf(text, "a.jpg\n");
    memset(p, '0', n);
    p += n;
    sprintf(p, "5\n1 2 3 4 0 0 0 0 0 0 0\n");
    assert_gt_refused(text, "line 2");

    /* The same on a face line: x of 1,100 characters. */
    p = text + sprintf(text, "a.jpg\n1\n0.");
    memset(p, '0', n);
    p += n;
    sprintf(p, "1e1100 2 3 4 0 0 0 0 0 0 0\n");
    assert_gt_refused(text, "line 3");
    free(text);
}

/* --limit keeps the first (N+1)/2 same and N/2 different pairs, in order. */
static void test_limit_pairs(void **state)
{
    (void)state;
    eval_pair_list l;
    assert_int_equal(eval_parse_pair_list("a b 1\nc d 1\ne f 0\ng h 1\ni j 0\nk l 0\n", &l), 0);
    eval_limit_pairs(&l, 3);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.pairs[0].path1, "a");
    assert_string_equal(l.pairs[1].path1, "c");
    assert_string_equal(l.pairs[2].path1, "e");
    eval_limit_pairs(&l, 0); /* no limit */
    assert_int_equal(l.n, 3);
    eval_pair_list_free(&l);

    eval_gt_set s;
    assert_int_equal(eval_parse_wider_gt("a.jpg\n0\nb.jpg\n1\n1 2 3 4 0 0 0 0 0 0 1\n", &s), 0);
    assert_int_equal(s.n, 2);
    eval_limit_gt(&s, 1);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.images[0].path, "a.jpg");
    eval_gt_set_free(&s);
}

/* The option values: the whole text a number in range, or a refusal with a message. */
static void test_option_values(void **state)
{
    (void)state;
    long v = -1;
    assert_int_equal(eval_parse_long_option("64", 1, 64, &v), 0);
    assert_int_equal(v, 64);
    static const char *const bad[] = {"", "65", "0", "-1", "8x", "1e3", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = -1;
        base_error_clear();
        if (eval_parse_long_option(bad[i], 1, 64, &v) != BASE_ERR_INVALID)
            fail_msg("'%s' accepted as %ld", bad[i], v);
        assert_int_equal(v, -1);
        assert_true(base_error_message()[0] != '\0');
    }
    float score = -1;
    assert_int_equal(eval_parse_score_option("0.05", &score), 0);
    assert_true(score > 0.049f && score < 0.051f);
    static const char *const bad_scores[] = {"", "1.5", "-0.1", "nan", "inf", "0.5x"};
    for (size_t i = 0; i < sizeof bad_scores / sizeof bad_scores[0]; i++)
        assert_int_equal(eval_parse_score_option(bad_scores[i], &score), BASE_ERR_INVALID);

    char *p = eval_join_path("images", "a/b.jpg");
    assert_string_equal(p, "images/a/b.jpg");
    free(p);
    p = eval_join_path("images/", "/abs.jpg");
    assert_string_equal(p, "/abs.jpg");
    free(p);
    assert_true(eval_is_image_name("1_0_0_x.jpg.chip.jpg"));
    assert_false(eval_is_image_name(".jpg"));
    assert_false(eval_is_image_name("notes.txt"));
}

/* A fold number the list skips left that fold empty, and the k-fold figure failed only after
 * every image had been analysed ("no k-fold figure: k-fold: fold 1 is empty"), the accuracy
 * then taken at the default threshold instead. The list is refused when it is read, naming
 * the fold. Found reading the parser for the fuzz target. */
static void test_pair_list_refuses_fold_gap(void **state)
{
    (void)state;
    eval_pair_list l;
    base_error_clear();
    int rc = eval_parse_pair_list("a b 1 0\nc d 0 0\ne f 1 2\ng h 0 2\n", &l);
    if (rc == 0) {
        int n_folds = l.n_folds;
        eval_pair_list_free(&l);
        fail_msg("accepted with n_folds %d and fold 1 empty", n_folds);
    }
    assert_int_equal(rc, BASE_ERR_FORMAT);
    assert_non_null(strstr(base_error_message(), "fold 1"));
    assert_null(l.pairs);
    /* Folds in any order, none missing, are fine. */
    assert_int_equal(eval_parse_pair_list("a b 1 1\nc d 0 0\ne f 1 0\ng h 0 1\n", &l), 0);
    assert_int_equal(l.n_folds, 2);
    eval_pair_list_free(&l);
}

/* --min-score 0 was accepted, and 0 is how face_options says "the detector's default", so
 * `eval wider --min-score 0` ran at 0.05 and the others at 0.5 when every detection was asked
 * for. 0 is refused with a message saying so. Found reading the option parser. */
static void test_min_score_zero_refused(void **state)
{
    (void)state;
    float score = -1;
    base_error_clear();
    int rc = eval_parse_score_option("0", &score);
    if (rc == 0) fail_msg("--min-score 0 accepted as %g", (double)score);
    assert_int_equal(rc, BASE_ERR_INVALID);
    assert_non_null(strstr(base_error_message(), "default"));
    assert_int_equal(eval_parse_score_option("0.001", &score), 0);
    assert_int_equal(eval_parse_score_option("1", &score), 0);
}

int main(void)
{
    base_log_level = BASE_LOG_OFF;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wider_gt_refuses_negative_size),
        cmocka_unit_test(test_wider_gt_refuses_overlong_field),
        cmocka_unit_test(test_limit_pairs),
        cmocka_unit_test(test_option_values),
        cmocka_unit_test(test_pair_list_refuses_fold_gap),
        cmocka_unit_test(test_min_score_zero_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
