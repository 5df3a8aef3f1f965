/*
 * eval_input — what `vultus eval` reads that someone else wrote: the evaluation sets' text
 * files (LFW pair lists, generic pair lists, the WIDER FACE ground truth), UTKFace file names,
 * and the command's option values. Kept apart from the command (eval_cmd.c) so that tests and
 * the fuzz target (tests/fuzz/fuzz_eval_input.c) call exactly what the command calls.
 *
 * Limits: a field (path, name, number) is shorter than EVAL_MAX_FIELD bytes; a pair list
 * holds at most one pair per line of its text; folds are 0..EVAL_MAX_FOLDS-1; an image of the
 * ground truth has at most EVAL_MAX_GT_FACES faces, whose coordinates are finite and at
 * most 1e9 in magnitude, with w and h >= 0. Paths hold no space or tab. A longer field, or a
 * negative width or height, is refused (never cut or taken as it is).
 *
 * Errors: 0 or a negative BASE_ERR_* code: BASE_ERR_FORMAT for malformed text (the message
 * names the line), BASE_ERR_NOMEM, BASE_ERR_INVALID for a bad option value; every failure sets
 * base_error_message(). Every function is reentrant; nothing is shared.
 */
#ifndef VULTUS_CLI_EVAL_INPUT_H
#define VULTUS_CLI_EVAL_INPUT_H

#include "cli/eval_metrics.h"

#include <stddef.h>

#define EVAL_MAX_FIELD 1024
#define EVAL_MAX_GT_FACES 100000

/* --- the evaluation sets' text formats --------------------------------------------------- */

typedef struct eval_pair {
    char *path1, *path2; /* LFW: "Name/Name_0001.jpg", relative to the images folder */
    int same;
    int fold; /* -1 when the list has none */
} eval_pair;

typedef struct eval_pair_list {
    eval_pair *pairs;
    size_t n;
    int n_folds; /* 0 when the list has no folds */
} eval_pair_list;

/*
 * Parses LFW pair files: the development format (first line N, then N same lines
 * `Name i j` and N different lines `Name1 i Name2 j`) and the official View 2 pairs.txt
 * (first line `F P`, then F folds of P same lines followed by P different lines; fold f is
 * recorded). Image k of Name is Name/Name_%04d.jpg. Lines are separated by LF or CRLF;
 * fields by spaces or tabs. Fails with BASE_ERR_FORMAT naming the line on anything else.
 */
int eval_parse_lfw_pairs(const char *text, eval_pair_list *out);

/*
 * Parses a generic pair list: lines `path1 path2 same [fold]` (same is 1 or 0; fold an
 * integer >= 0, on every line or on none); blank lines and lines starting with # are skipped.
 * Paths hold no spaces. n_folds is the largest fold + 1, and every fold below it must hold a
 * pair (k-fold cross-validation needs them all).
 */
int eval_parse_pair_list(const char *text, eval_pair_list *out);
void eval_pair_list_free(eval_pair_list *l);

typedef struct eval_gt_image {
    char *path; /* relative to the images folder */
    eval_gt_face *faces;
    int n_faces;
} eval_gt_image;

typedef struct eval_gt_set {
    eval_gt_image *images;
    size_t n;
} eval_gt_set;

/*
 * Parses a WIDER FACE ground truth in the official wider_face_val_bbx_gt.txt layout with one
 * extra last column per face, the difficulty (0..3): a path line, a face count, then one line
 * per face `x y w h blur expression illumination invalid occlusion pose difficulty`. Lines
 * starting with # are comments. As in the official file, an image with 0 faces is followed
 * by one placeholder line of zeros, which is skipped. Face lines without the 11th column are
 * rejected (difficulty is needed), and so are faces of negative width or height (0 is
 * accepted: the official file has such faces). Sizes are checked: at most 100 000 faces per
 * image.
 */
int eval_parse_wider_gt(const char *text, eval_gt_set *out);
void eval_gt_set_free(eval_gt_set *s);

/*
 * Reads UTKFace labels from a file name `age_gender_race_date.jpg[.chip.jpg]` (a path is
 * allowed: the last component is used): age 0..150, gender 0 (male) or 1 (female). Returns 0,
 * or BASE_ERR_FORMAT when the name does not follow the pattern (some UTKFace files lack a
 * field: they are skipped by the caller).
 */
int eval_parse_utk_name(const char *name, int *age, int *female);

/* --- what the command does with them ----------------------------------------------------- */

/*
 * --limit N on a pair list: keeps the first (N+1)/2 same pairs and the first N/2 different
 * pairs, in order (LFW lists put all same pairs first, so a plain head would hold no
 * different pair). 0 keeps every pair.
 */
void eval_limit_pairs(eval_pair_list *l, size_t limit);

/* --limit N on a ground truth: keeps its first N images. 0 keeps every image. */
void eval_limit_gt(eval_gt_set *s, size_t limit);

/* dir/name (name as is when dir is NULL or empty, or name is absolute); malloc'd, NULL when
 * out of memory. */
char *eval_join_path(const char *dir, const char *name);

/* Whether a file name ends like an image eval age reads (.jpg, .jpeg, .png, .webp and the
 * upper-case .JPG, .JPEG, .PNG) with something before the suffix. */
int eval_is_image_name(const char *name);

/*
 * An option's integer: the whole text a decimal integer in [min, max]. Fails with
 * BASE_ERR_INVALID (message set) otherwise; *out is unchanged then.
 */
int eval_parse_long_option(const char *text, long min, long max, long *out);

/* --min-score: the whole text a number in (0, 1] (0 is face_options' "the detector's default",
 * so it is refused rather than taken). BASE_ERR_INVALID otherwise. */
int eval_parse_score_option(const char *text, float *out);

#endif
