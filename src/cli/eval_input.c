/*
 * What `vultus eval` reads that someone else wrote; see eval_input.h. No I/O: text and names
 * in memory, so the tests and the fuzz target call what the command calls.
 */
#include "cli/eval_input.h"

#include "base/base.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- the evaluation sets' text formats --------------------------------------------------- */

#define MAX_FIELDS 16
#define MAX_FIELD_LEN EVAL_MAX_FIELD

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
    /* k-fold cross-validation needs a pair in every fold: a number the list skips is refused
     * now rather than after every image has been analysed. */
    for (int f = 0; f < out->n_folds && rc == 0; f++) {
        size_t i = 0;
        while (i < out->n && out->pairs[i].fold != f)
            i++;
        if (i == out->n)
            rc = base_error_set(BASE_ERR_FORMAT,
                                "pair list: fold %d holds no pair (the folds are numbered from 0 "
                                "to %d without gaps)",
                                f, out->n_folds - 1);
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

#define WIDER_MAX_FACES EVAL_MAX_GT_FACES

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
        if (lf->n != 1 || lf->too_long ||
            parse_long(lf->field[0], 0, WIDER_MAX_FACES, &count) != 0) {
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
            if (lf->n != 11 || lf->too_long || parse_float(lf->field[0], &g->x) != 0 ||
                parse_float(lf->field[1], &g->y) != 0 || parse_float(lf->field[2], &g->w) != 0 ||
                parse_float(lf->field[3], &g->h) != 0 ||
                parse_long(lf->field[10], 0, 3, &difficulty) != 0) {
                rc = base_error_set(BASE_ERR_FORMAT,
                                    "WIDER gt: line %zu: expected \"x y w h blur expression "
                                    "illumination invalid occlusion pose difficulty(0..3)\"",
                                    line_no);
                goto done;
            }
            /* A negative width or height is no box; 0 is (the official file marks such faces
             * invalid, and no detection matches them). */
            if (g->w < 0 || g->h < 0) {
                rc = base_error_set(BASE_ERR_FORMAT,
                                    "WIDER gt: line %zu: a face's width and height cannot be "
                                    "negative (w %g, h %g)",
                                    line_no, (double)g->w, (double)g->h);
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

/* --- what the command does with them ----------------------------------------------------- */

void eval_limit_pairs(eval_pair_list *l, size_t limit)
{
    if (limit == 0 || l->n <= limit) return;
    size_t want_same = (limit + 1) / 2, want_diff = limit / 2, n_same = 0, n_diff = 0, m = 0;
    for (size_t i = 0; i < l->n; i++) {
        eval_pair *p = &l->pairs[i];
        int keep = p->same ? n_same < want_same : n_diff < want_diff;
        if (keep) {
            if (p->same)
                n_same++;
            else
                n_diff++;
            l->pairs[m++] = *p;
        } else {
            free(p->path1);
            free(p->path2);
        }
    }
    l->n = m;
}

void eval_limit_gt(eval_gt_set *s, size_t limit)
{
    if (limit == 0 || s->n <= limit) return;
    for (size_t i = limit; i < s->n; i++) {
        free(s->images[i].path);
        free(s->images[i].faces);
    }
    s->n = limit;
}

char *eval_join_path(const char *dir, const char *name)
{
    if (!dir || !*dir || name[0] == '/') return strdup(name);
    size_t len = strlen(dir) + strlen(name) + 2;
    char *p = malloc(len);
    if (p) snprintf(p, len, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", name);
    return p;
}

int eval_is_image_name(const char *name)
{
    size_t n = strlen(name);
    static const char *suffixes[] = {".jpg", ".jpeg", ".png", ".webp", ".JPG", ".JPEG", ".PNG"};
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        size_t l = strlen(suffixes[i]);
        if (n > l && strcmp(name + n - l, suffixes[i]) == 0) return 1;
    }
    return 0;
}

int eval_parse_long_option(const char *text, long min, long max, long *out)
{
    char *end;
    long v = strtol(text, &end, 10);
    if (end == text || *end || v < min || v > max)
        return base_error_set(BASE_ERR_INVALID, "expected an integer in %ld..%ld", min, max);
    *out = v;
    return 0;
}

int eval_parse_score_option(const char *text, float *out)
{
    char *end;
    float v = strtof(text, &end);
    if (end == text || *end || !(v >= 0 && v <= 1))
        return base_error_set(BASE_ERR_INVALID, "expected a number above 0, at most 1");
    /* 0 is how face_options says "the detector's default": it cannot ask for every detection. */
    if (v == 0)
        return base_error_set(BASE_ERR_INVALID,
                              "0 would mean the detector's default; for every detection give a "
                              "small score such as 0.001");
    *out = v;
    return 0;
}
