/*
 * libFuzzer target for what `vultus eval` reads (src/cli/eval_input.c): the generic pair list
 * (`eval pairs --list`), LFW pair files (`eval lfw --pairs`, `--train-pairs`), the WIDER FACE
 * ground truth (`eval wider --gt`), UTKFace file names (`eval age`), and the option values
 * (--limit, --threads, --max-fp, --min-score ...). These are files an operator downloads or
 * edits by hand, and a malformed one must give a clear error naming the line.
 *
 * Input: the text (up to the first NUL), given to every parser in turn; its first line is
 * also the file name and the option value. What must hold besides "no crash": a refusal is a
 * negative code with a message and leaves nothing allocated; an accepted pair list has at most
 * one pair per line, paths of 1..EVAL_MAX_FIELD-1 bytes without a blank, same 0 or 1, folds on
 * every pair or on none, each fold below n_folds <= EVAL_MAX_FOLDS holding a pair; an LFW list's
 * paths are Name/Name_NNNN.jpg (the same name twice for a same pair), its pairs per fold same
 * first; an accepted ground truth has 0..EVAL_MAX_GT_FACES faces per image with finite coordinates
 * of at most 1e9, w and h >= 0, difficulty 0..3; --limit keeps at most its share of same and
 * different pairs, in order; an accepted UTKFace name has age 0..150 and gender 0 or 1; an
 * accepted option integer is the text's number within its range, a score within (0, 1].
 * Build and run: make fuzz; seeds in tests/fuzz/corpus/eval_input/.
 */
#include "base/base.h"
#include "cli/eval_input.h"
#include "cli/eval_metrics.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_eval_input: %s:%d: %s\n", __FILE__, __LINE__, #cond);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static size_t count_lines(const char *text)
{
    size_t n = 1;
    for (const char *c = text; *c; c++)
        n += *c == '\n';
    return n;
}

/* A refusal: a negative code, a message, nothing left in *out (all zero). */
static void check_refusal(int rc, const void *out, size_t size)
{
    CHECK(rc < 0);
    CHECK(base_error_message()[0] != '\0');
    const unsigned char *b = out;
    for (size_t i = 0; i < size; i++)
        CHECK(b[i] == 0);
}

static void check_path(const char *p)
{
    CHECK(p != NULL);
    size_t n = strlen(p);
    CHECK(n >= 1 && n < EVAL_MAX_FIELD * 2 + 32);
    CHECK(strpbrk(p, " \t\n") == NULL);
}

/* --limit on a copy of the list's same/different sequence: at most (L+1)/2 same and L/2
 * different pairs, the first ones of each, in order. */
static void check_limit(eval_pair_list *l, size_t limit)
{
    size_t n = l->n;
    int *same = malloc((n ? n : 1) * sizeof *same);
    char **path1 = malloc((n ? n : 1) * sizeof *path1);
    if (!same || !path1) abort();
    for (size_t i = 0; i < n; i++) {
        same[i] = l->pairs[i].same;
        path1[i] = strdup(l->pairs[i].path1);
        if (!path1[i]) abort();
    }
    eval_limit_pairs(l, limit);
    size_t n_same = 0, n_diff = 0;
    for (size_t i = 0; i < l->n; i++)
        *(l->pairs[i].same ? &n_same : &n_diff) += 1;
    CHECK(l->n <= n);
    CHECK(limit == 0 || n <= limit || (n_same <= (limit + 1) / 2 && n_diff <= limit / 2));
    if (limit == 0 || n <= limit) CHECK(l->n == n);
    /* The kept pairs are the first of their kind, in order. */
    size_t seen_same = 0, seen_diff = 0, k = 0;
    for (size_t i = 0; i < n && k < l->n; i++) {
        int keep = same[i] ? seen_same < n_same : seen_diff < n_diff;
        if (same[i])
            seen_same++;
        else
            seen_diff++;
        if (!keep) continue;
        CHECK(l->pairs[k].same == same[i] && strcmp(l->pairs[k].path1, path1[i]) == 0);
        k++;
    }
    CHECK(k == l->n);
    for (size_t i = 0; i < n; i++)
        free(path1[i]);
    free(path1);
    free(same);
}

static void check_pair_list(const char *text, size_t limit)
{
    eval_pair_list l;
    memset(&l, 0xA5, sizeof l);
    base_error_clear();
    int rc = eval_parse_pair_list(text, &l);
    if (rc != 0) {
        check_refusal(rc, &l, sizeof l);
        return;
    }
    CHECK(l.n <= count_lines(text));
    CHECK(l.n_folds >= 0 && l.n_folds <= EVAL_MAX_FOLDS);
    for (size_t i = 0; i < l.n; i++) {
        const eval_pair *p = &l.pairs[i];
        check_path(p->path1);
        check_path(p->path2);
        CHECK(strlen(p->path1) < EVAL_MAX_FIELD && strlen(p->path2) < EVAL_MAX_FIELD);
        CHECK(p->path1[0] != '#');
        CHECK(strstr(text, p->path1) && strstr(text, p->path2));
        CHECK(p->same == 0 || p->same == 1);
        if (l.n_folds == 0)
            CHECK(p->fold == -1);
        else
            CHECK(p->fold >= 0 && p->fold < l.n_folds);
    }
    /* Every fold below n_folds holds a pair (k-fold needs them all). */
    for (int f = 0; f < l.n_folds; f++) {
        size_t i = 0;
        while (i < l.n && l.pairs[i].fold != f)
            i++;
        CHECK(i < l.n);
    }
    check_limit(&l, limit);
    eval_pair_list_free(&l);
    CHECK(l.n == 0 && l.pairs == NULL);
}

/* "Name/Name_NNNN.jpg": NNNN four or five digits, 1..99999; returns the name's length. */
static size_t check_lfw_path(const char *p)
{
    check_path(p);
    size_t len = strlen(p);
    CHECK(len > 4 && strcmp(p + len - 4, ".jpg") == 0);
    size_t nd = 0;
    while (nd < len - 4 && isdigit((unsigned char)p[len - 5 - nd]))
        nd++;
    CHECK(nd >= 4 && nd <= 5);
    long index = strtol(p + len - 4 - nd, NULL, 10);
    CHECK(index >= 1 && index <= 99999);
    size_t head = len - 4 - nd - 1; /* "Name/Name" */
    CHECK(p[head] == '_' && head % 2 == 1);
    size_t name = head / 2;
    CHECK(name >= 1 && name < EVAL_MAX_FIELD && p[name] == '/');
    CHECK(strncmp(p, p + name + 1, name) == 0);
    return name;
}

static void check_lfw(const char *text, size_t limit)
{
    eval_pair_list l;
    memset(&l, 0xA5, sizeof l);
    base_error_clear();
    int rc = eval_parse_lfw_pairs(text, &l);
    if (rc != 0) {
        check_refusal(rc, &l, sizeof l);
        return;
    }
    CHECK(l.n >= 2 && l.n % 2 == 0 && l.n <= count_lines(text));
    CHECK(l.n_folds >= 0 && l.n_folds <= EVAL_MAX_FOLDS);
    size_t folds = l.n_folds ? (size_t)l.n_folds : 1;
    CHECK(l.n % (2 * folds) == 0);
    size_t per = l.n / folds / 2;
    for (size_t i = 0; i < l.n; i++) {
        const eval_pair *p = &l.pairs[i];
        size_t n1 = check_lfw_path(p->path1), n2 = check_lfw_path(p->path2);
        CHECK(p->same == ((i % (2 * per)) < per));
        if (p->same) CHECK(n1 == n2 && strncmp(p->path1, p->path2, n1) == 0);
        CHECK(p->fold == (l.n_folds ? (int)(i / (2 * per)) : -1));
    }
    check_limit(&l, limit);
    eval_pair_list_free(&l);
}

static void check_wider(const char *text, size_t limit)
{
    eval_gt_set s;
    memset(&s, 0xA5, sizeof s);
    base_error_clear();
    int rc = eval_parse_wider_gt(text, &s);
    if (rc != 0) {
        check_refusal(rc, &s, sizeof s);
        return;
    }
    size_t faces = 0;
    for (size_t i = 0; i < s.n; i++) {
        const eval_gt_image *im = &s.images[i];
        check_path(im->path);
        CHECK(strlen(im->path) < EVAL_MAX_FIELD && im->path[0] != '#');
        CHECK(im->n_faces >= 0 && im->n_faces <= EVAL_MAX_GT_FACES);
        CHECK(im->n_faces == 0 || im->faces != NULL);
        for (int f = 0; f < im->n_faces; f++) {
            const eval_gt_face *g = &im->faces[f];
            const float v[4] = {g->x, g->y, g->w, g->h};
            for (int k = 0; k < 4; k++)
                CHECK(isfinite(v[k]) && fabsf(v[k]) <= 1e9f);
            CHECK(g->w >= 0 && g->h >= 0);
            CHECK(g->difficulty >= 0 && g->difficulty <= 3);
        }
        faces += (size_t)im->n_faces;
    }
    CHECK(s.n + faces <= count_lines(text));
    size_t n = s.n;
    eval_limit_gt(&s, limit);
    CHECK(s.n == (limit && n > limit ? limit : n));
    eval_gt_set_free(&s);
    CHECK(s.n == 0 && s.images == NULL);
}

static void check_utk(const char *name)
{
    int age = -1, female = -1;
    base_error_clear();
    int rc = eval_parse_utk_name(name, &age, &female);
    if (rc != 0) {
        CHECK(rc < 0 && base_error_message()[0]);
        CHECK(age == -1 && female == -1);
        return;
    }
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    CHECK(age >= 0 && age <= 150 && (female == 0 || female == 1));
    CHECK(isdigit((unsigned char)base[0]) && strtol(base, NULL, 10) == age);
    (void)eval_is_image_name(name);
}

static void check_options(const char *value)
{
    static const long ranges[][2] = {{1, 100000}, {0, 1L << 40}, {1, 64}, {1, 1L << 40}};
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
        long v = -7;
        base_error_clear();
        int rc = eval_parse_long_option(value, ranges[r][0], ranges[r][1], &v);
        if (rc != 0) {
            CHECK(rc < 0 && base_error_message()[0] && v == -7);
            continue;
        }
        CHECK(v >= ranges[r][0] && v <= ranges[r][1]);
        errno = 0;
        CHECK(strtol(value, NULL, 10) == v && errno == 0);
    }
    float score = -7.0f;
    base_error_clear();
    int rc = eval_parse_score_option(value, &score);
    if (rc != 0)
        CHECK(rc < 0 && base_error_message()[0] && score == -7.0f);
    else
        CHECK(isfinite(score) && score > 0 && score <= 1);

    char *joined = eval_join_path("images", value);
    if (!joined) abort();
    if (value[0] == '/')
        CHECK(strcmp(joined, value) == 0);
    else
        CHECK(strncmp(joined, "images/", 7) == 0 && strcmp(joined + 7, value) == 0);
    free(joined);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    base_log_level = BASE_LOG_OFF;
    /* The text as the command has it after reading the file: NUL-terminated, in its own
     * allocation so a read past its end is caught. */
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    size_t limit = size % 7; /* 0: no limit */

    check_pair_list(text, limit);
    check_lfw(text, limit);
    check_wider(text, limit);

    char first[256];
    size_t n = strcspn(text, "\n");
    if (n >= sizeof first) n = sizeof first - 1;
    memcpy(first, text, n);
    first[n] = '\0';
    check_utk(first);
    check_options(first);
    free(text);
    return 0;
}
