/*
 * `vultus eval ...` — the accuracy harness: runs the face pipeline over an evaluation set and
 * prints its configuration and progress on stderr and one JSON summary line per result on stdout.
 *
 *   eval pairs --list FILE      verification over lines `path1 path2 same(1|0) [fold]`
 *   eval lfw --images DIR --pairs FILE [--train-pairs FILE]
 *                               verification over LFW pair files (development lists or the
 *                               official 10-fold pairs.txt)
 *   eval wider --images DIR --gt FILE
 *                               detection AP (easy, medium, hard), WIDER FACE protocol
 *   eval age --images DIR       age MAE and gender accuracy from UTKFace file names
 *
 * Work is shared by worker threads (default 2), each with its own face_context, taking the
 * next image from an atomic index; face_models is loaded once and shared. Each distinct image
 * is analysed once per embedder and its embedding cached in memory, then the pairs are scored
 * from the cache (LFW's 1,000 development test pairs use 1,549 distinct images). The
 * arithmetic is in eval_metrics.c; --plot draws with plot.c.
 *
 * Decisions worth knowing when reading the figures (also in `vultus eval --help`):
 *   - An image where no face is found (or that cannot be read) has no embedding; every pair
 *     that uses it is an error at any threshold, same or different, and is counted in
 *     "no_face_pairs".
 *   - When several faces are found in a verification or age image, the one whose box centre
 *     is closest to the image centre is used: LFW images and UTKFace crops are centred on
 *     the subject, and other faces in the background are bystanders.
 *   - Accuracy: with --train-pairs the threshold is chosen on the training list and applied
 *     to the test list; otherwise it is the k-fold cross-validated accuracy (folds from the
 *     list, or dealt round-robin when the list has none: eval_interleave_folds).
 *   - accuracy_10fold for the LFW development split is computed over DevTrain + DevTest
 *     together (3,200 pairs), the same pairs dealt into 10 folds round-robin in list order
 *     and the different pairs likewise, so each fold holds 160 + 160 pairs like View 2's
 *     300 + 300; the official View 2 split (pairs.txt) keeps its own folds.
 *   - TAR at FAR 1e-3 is read off the test list's ROC with linear interpolation; with fewer
 *     than 1,000 different pairs the lowest FAR step is 1 / n_different (reported as
 *     "far_resolution"), so the figure interpolates between FAR 0 and that step.
 */
#include "base/base.h"
#include "cli/cli.h"
#include "cli/eval_input.h"
#include "cli/eval_metrics.h"
#include "cli/plot.h"
#include "face/face.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IMAGE_BYTES (64u << 20)
#define MAX_LIST_BYTES (256u << 20)
#define MAX_THREADS 64
#define N_EMBEDDERS 4
#define CONTEXT_BATCH 8

static const face_embedder all_embedders[N_EMBEDDERS] = {
    FACE_EMBEDDER_MOBILEFACENET,
    FACE_EMBEDDER_FACERES,
    FACE_EMBEDDER_FACEAPI_RESNET,
    FACE_EMBEDDER_MOBILEFACE,
};

/* Age and gender models for --age-model; `all` runs each in turn. */
static const struct {
    const char *name;
    face_age_model m;
} age_models[] = {
    {"faceres", FACE_AGE_MODEL_FACERES},
    {"gear", FACE_AGE_MODEL_GEAR},
    {"ssrnet", FACE_AGE_MODEL_SSRNET},
    {"faceapi", FACE_AGE_MODEL_FACEAPI},
};
#define N_AGE_MODELS (int)(sizeof age_models / sizeof age_models[0])

/* The detectors `--detector all` runs, in this order. */
static const struct {
    const char *name;
    face_detector d;
} every_detector[] = {
    {"blazeface", FACE_DETECTOR_BLAZEFACE},
    {"blazeface-tiled", FACE_DETECTOR_BLAZEFACE_TILED},
    {"blazeface-adaptive", FACE_DETECTOR_BLAZEFACE_ADAPTIVE},
    {"ssd-mobilenet", FACE_DETECTOR_SSD_MOBILENET},
};
#define N_DETECTORS (int)(sizeof every_detector / sizeof every_detector[0])

/* Options shared by the subcommands. */
typedef struct eval_config {
    const char *what; /* "lfw", "pairs", "wider", "age" */
    const char *models_dir;
    const char *images_dir;
    const char *plot;
    int threads;
    size_t limit; /* 0: all */
    face_options face;
    face_embedder embedders[N_EMBEDDERS];
    int n_embedders;
    int all_embedders;
    int all_detectors;
    const char *detector_name;
    face_age_model age_model;
    int all_age_models;
    const char *age_model_name;
    long max_fp;                 /* wider: -1 = one per image */
    const char *detections_path; /* wider: write every detection there */
} eval_config;

static void eval_usage(FILE *out)
{
    fprintf(
        out,
        "usage: vultus eval pairs --list FILE [--images DIR] [options]\n"
        "       vultus eval lfw --images DIR --pairs FILE [--train-pairs FILE] [options]\n"
        "       vultus eval wider --images DIR --gt FILE [options]\n"
        "       vultus eval age --images DIR [options]\n"
        "\n"
        "Runs the face pipeline over an evaluation set; prints its configuration and progress\n"
        "on stderr and a JSON summary line on stdout (one per embedder with --embedder all).\n"
        "Fractions, not percents.\n"
        "\n"
        "pairs: lines `path1 path2 same(1|0) [fold]`, paths relative to --images (or as\n"
        "  written). Accuracy is k-fold cross-validated (folds from the list, numbered from 0\n"
        "  without gaps, or dealt round-robin into 10); TAR at FAR 1e-3 from the ROC.\n"
        "lfw: LFW pair files, development format (N, then N `Name i j` and N `Name1 i Name2 j`)\n"
        "  or the official pairs.txt (`10 300` then 10 folds). With --train-pairs the threshold\n"
        "  is chosen on that list and tested on --pairs, and accuracy_10fold covers both lists\n"
        "  together (same and different pairs each dealt round-robin into 10 folds).\n"
        "wider: gt.txt in the official layout plus a difficulty column (0 easy .. 3 none; a\n"
        "  face's w and h >= 0); AP per setting as the official evaluation computes it, over\n"
        "  every detection down to --min-score (default 0.05, the same for every detector);\n"
        "  recall over them and with at most --max-fp false positives; recall and false\n"
        "  positives at the default threshold 0.5 (*_at_op); ms per image.\n"
        "age: UTKFace names age_gender_race_*.jpg (gender 0 male, 1 female): age MAE over the\n"
        "  images with a face, gender accuracy counting images without a face as errors.\n"
        "\n"
        "A pair (or image) where no face is found counts as an error and is reported. When an\n"
        "image holds several faces, the one closest to the image centre is used (LFW and\n"
        "UTKFace are centred on their subject).\n"
        "\n"
        "options:\n"
        "  --models DIR         model folder (default models)\n"
        "  --embedder NAME      default, mobilefacenet, faceres, faceapi, mobileface, or all\n"
        "  --age-model NAME     age: default, faceres, gear, ssrnet, faceapi, or all (a line\n"
        "                       each)\n"
        "  --detector NAME      default, blazeface, blazeface-tiled, blazeface-adaptive,\n"
        "                       ssd-mobilenet, or all\n"
        "                       (wider: one summary line and plot FILE-NAME.png each)\n"
        "  --min-score X        detection score threshold, 0 < X <= 1 (default: the\n"
        "                       detector's; wider: 0.05)\n"
        "  --min-face-size N    pixels of the photo (default: the library's, 20 pixels of\n"
        "                       the image the detector sees, a large JPEG decoded reduced)\n"
        "  --max-faces N        (default: the library's; wider: 1000)\n"
        "  --max-fp N           wider: false positives allowed for recall_*_at_fp\n"
        "                       (default: one per image)\n"
        "  --threads N          worker threads, each with its own context (default 2)\n"
        "  --limit N            only the first N images (age, wider) or pairs (lfw, pairs)\n"
        "  --plot FILE.png      draw the ROC (verification) or precision-recall curves\n"
        "  --detections FILE    wider: write every detection as `path x y w h score` lines\n"
        "                       (full-size pixels; with --detector all, FILE-NAME each)\n");
}

/* --- small helpers ----------------------------------------------------------------------- */

static double elapsed_s(uint64_t t0)
{
    return (double)(base_now_ns() - t0) / 1e9;
}

/* A real number for JSON, or null when it is not finite (jansson refuses NaN). */
static json_t *json_number(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

/*
 * Describes a failure on one image on stderr; only the first few of a run are shown (a model
 * that fails on every image would otherwise print thousands of lines). `shown` counts them
 * for the run; the figures count every failure.
 */
#define MAX_ERRORS_SHOWN 10
static void image_error(atomic_int *shown, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void image_error(atomic_int *shown, const char *fmt, ...)
{
    int n = atomic_fetch_add(shown, 1);
    if (n > MAX_ERRORS_SHOWN) return;
    if (n == MAX_ERRORS_SHOWN) {
        fprintf(stderr, "vultus eval: further image errors are not shown\n");
        return;
    }
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "vultus eval: %s\n", line);
}

static const char *detector_label(const eval_config *c)
{
    if (c->all_detectors) return "all";
    return c->detector_name ? c->detector_name : "default";
}

/* The face whose box centre is closest to the image centre, among those `usable`. */
static const face_info *central_face(const face_result *r, int need_embedding, int need_attributes)
{
    const face_info *best = NULL;
    double best_d = INFINITY;
    double cx = r->width * 0.5, cy = r->height * 0.5;
    for (int i = 0; i < r->n_faces; i++) {
        const face_info *f = &r->faces[i];
        if (need_embedding && f->embedding_dim <= 0) continue;
        if (need_attributes && !f->has_attributes) continue;
        double dx = f->x + f->w * 0.5 - cx, dy = f->y + f->h * 0.5 - cy;
        double d = dx * dx + dy * dy;
        if (d < best_d) {
            best_d = d;
            best = f;
        }
    }
    return best;
}

/* --- the worker pool --------------------------------------------------------------------- */

/*
 * Runs fn(ctx, index, user) for index 0..n-1 on `threads` workers. Each worker owns a
 * face_context; the shared state is the atomic `next` (the next index to take) and `done`
 * (for progress). fn writes its results into per-index slots, so nothing else is shared.
 * fn returns 0, or a negative code for a failure that should stop everything (a failure
 * of one image is recorded by fn itself and returns 0).
 */
typedef int (*pool_fn)(face_context *ctx, size_t index, void *user);

typedef struct pool {
    const face_models *models;
    size_t n;
    pool_fn fn;
    void *user;
    const char *label; /* for progress lines */
    uint64_t t0;
    atomic_size_t next, done;
    atomic_int stop;
    int rc; /* first fatal error; written under `lock` */
    pthread_mutex_t lock;
} pool;

static void *pool_worker(void *arg)
{
    pool *p = arg;
    face_context *ctx = NULL;
    base_error_clear();
    int rc = face_context_create(p->models, CONTEXT_BATCH, &ctx);
    if (rc != 0) {
        fprintf(stderr, "vultus eval: face context: %s\n", base_error_text(rc));
    }
    size_t step = p->n >= 20 ? p->n / 20 : 1;
    while (rc == 0 && !atomic_load(&p->stop)) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n) break;
        rc = p->fn(ctx, i, p->user);
        size_t d = atomic_fetch_add(&p->done, 1) + 1;
        if (d % step == 0 || d == p->n)
            fprintf(stderr, "eval %s: %zu/%zu images, %.1f s\n", p->label, d, p->n,
                    elapsed_s(p->t0));
    }
    if (rc != 0) {
        atomic_store(&p->stop, 1);
        pthread_mutex_lock(&p->lock);
        if (p->rc == 0) p->rc = rc;
        pthread_mutex_unlock(&p->lock);
    }
    face_context_destroy(ctx);
    return NULL;
}

static int pool_run(const face_models *models, size_t n, int threads, pool_fn fn, void *user,
                    const char *label)
{
    pool p = {
        .models = models, .n = n, .fn = fn, .user = user, .label = label, .t0 = base_now_ns()};
    atomic_init(&p.next, 0);
    atomic_init(&p.done, 0);
    atomic_init(&p.stop, 0);
    pthread_mutex_init(&p.lock, NULL);
    if (threads < 1) threads = 1;
    if ((size_t)threads > n && n > 0) threads = (int)n;
    pthread_t tid[MAX_THREADS];
    int started = 0;
    for (int t = 0; t < threads; t++) {
        if (pthread_create(&tid[t], NULL, pool_worker, &p) != 0) {
            fprintf(stderr, "vultus eval: could not start worker thread %d\n", t);
            break;
        }
        started++;
    }
    for (int t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
    pthread_mutex_destroy(&p.lock);
    if (started == 0) return BASE_ERR_BACKEND;
    return p.rc;
}

static int load_models(const eval_config *c, unsigned stages, face_models **models)
{
    face_models_options mo = {
        .models_dir = c->models_dir,
        .load = stages,
        .embedder = c->n_embedders == 1 ? c->embedders[0] : FACE_EMBEDDER_DEFAULT,
        .all_embedders = c->all_embedders || c->n_embedders > 1,
        .age_model = c->age_model,
        .detector = c->all_detectors ? FACE_DETECTOR_SSD_MOBILENET : c->face.detector};
    base_error_clear();
    uint64_t t0 = base_now_ns();
    int rc = face_models_load(&mo, models);
    if (rc != 0) {
        fprintf(stderr, "vultus eval: loading models from %s: %s\n", c->models_dir,
                base_error_text(rc));
        return rc;
    }
    fprintf(stderr, "eval %s: models loaded in %.2f s\n", c->what, elapsed_s(t0));
    return 0;
}

static int read_text(const char *path, const char *what, char **text)
{
    size_t len;
    base_error_clear();
    int rc = base_file_read(path, MAX_LIST_BYTES, text, &len);
    if (rc != 0)
        fprintf(stderr, "vultus eval: %s %s: %s\n", what, path, base_error_text(rc));
    return rc;
}

static void print_face_options(const eval_config *c)
{
    fprintf(stderr, "  detector:      %s\n", detector_label(c));
    fprintf(stderr, "  min score:     %g%s\n", c->face.min_score,
            c->face.min_score > 0 ? "" : " (the detector's default)");
    fprintf(stderr, "  min face size: %d%s\n", c->face.min_face_size,
            c->face.min_face_size > 0 ? "" : " (the library's default)");
    fprintf(stderr, "  max faces:     %d%s\n", c->face.max_faces,
            c->face.max_faces > 0 ? "" : " (the library's default)");
    fprintf(stderr, "  models:        %s\n", c->models_dir);
    fprintf(stderr, "  threads:       %d\n", c->threads);
}

/* --- verification: pairs and lfw --------------------------------------------------------- */

typedef struct verify_job {
    const eval_config *cfg;
    char **paths; /* distinct images, sorted; full paths */
    size_t n_images;
    int dims[N_EMBEDDERS];
    float *embeddings[N_EMBEDDERS];     /* [n_images * dims[e]] */
    unsigned char *found[N_EMBEDDERS];  /* per image: an embedding is there */
    unsigned char *failed[N_EMBEDDERS]; /* per image: the analysis failed with this embedder */
    unsigned char *unreadable;          /* per image: the file could not be read */
    atomic_int errors_shown;
} verify_job;

static int verify_image(face_context *ctx, size_t index, void *user)
{
    verify_job *job = user;
    const eval_config *c = job->cfg;
    char *data = NULL;
    size_t len = 0;
    base_error_clear();
    int rc = base_file_read(job->paths[index], MAX_IMAGE_BYTES, &data, &len);
    if (rc != 0) {
        image_error(&job->errors_shown, "%s: %s", job->paths[index], base_error_text(rc));
        job->unreadable[index] = 1;
        return 0;
    }
    for (int e = 0; e < c->n_embedders; e++) {
        face_options o = c->face;
        o.stages = FACE_STAGE_EMBED;
        o.embedder = c->embedders[e];
        face_result r;
        memset(&r, 0, sizeof r);
        base_error_clear();
        rc = face_analyze_bytes(ctx, (const uint8_t *)data, len, &o, &r);
        if (rc != 0) {
            image_error(&job->errors_shown, "%s: %s: %s", job->paths[index],
                        face_embedder_id(c->embedders[e]), base_error_text(rc));
            face_result_free(&r);
            if (rc == BASE_ERR_NOMEM) {
                free(data);
                return rc;
            }
            job->failed[e][index] = 1;
            continue;
        }
        const face_info *f = central_face(&r, 1, 0);
        if (f && f->embedding_dim == job->dims[e]) {
            memcpy(job->embeddings[e] + index * (size_t)job->dims[e], f->embedding,
                   (size_t)f->embedding_dim * sizeof(float));
            job->found[e][index] = 1;
        } else if (f) {
            image_error(&job->errors_shown, "%s: %s embedding has %d values, expected %d",
                        job->paths[index], face_embedder_id(c->embedders[e]), f->embedding_dim,
                        job->dims[e]);
            job->failed[e][index] = 1;
        }
        face_result_free(&r);
    }
    free(data);
    return 0;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The distinct full paths of every pair's images, sorted (for bsearch). */
static int distinct_images(const eval_pair_list *const *lists, int n_lists, const char *dir,
                           char ***out, size_t *n_out)
{
    size_t total = 0;
    for (int l = 0; l < n_lists; l++)
        total += lists[l] ? 2 * lists[l]->n : 0;
    char **all = calloc(total ? total : 1, sizeof *all);
    if (!all) return BASE_ERR_NOMEM;
    size_t n = 0;
    int rc = 0;
    for (int l = 0; l < n_lists && rc == 0; l++) {
        if (!lists[l]) continue;
        for (size_t i = 0; i < lists[l]->n; i++) {
            all[n] = eval_join_path(dir, lists[l]->pairs[i].path1);
            all[n + 1] = eval_join_path(dir, lists[l]->pairs[i].path2);
            if (!all[n] || !all[n + 1]) rc = BASE_ERR_NOMEM;
            n += 2;
        }
    }
    if (rc == 0) qsort(all, n, sizeof *all, compare_strings);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (rc == 0 && all[i] && (m == 0 || strcmp(all[m - 1], all[i]) != 0))
            all[m++] = all[i];
        else
            free(all[i]);
    }
    if (rc != 0) {
        for (size_t i = 0; i < m; i++)
            free(all[i]);
        free(all);
        return rc;
    }
    *out = all;
    *n_out = m;
    return 0;
}

static size_t image_index(const verify_job *job, const char *dir, const char *rel)
{
    char *full = eval_join_path(dir, rel);
    if (!full) return (size_t)-1;
    char **hit = bsearch(&full, job->paths, job->n_images, sizeof *job->paths, compare_strings);
    free(full);
    return hit ? (size_t)(hit - job->paths) : (size_t)-1;
}

/* Scores of one list for embedder e: NaN where either image has no embedding. */
static int score_list(const verify_job *job, int e, const eval_pair_list *l, const char *dir,
                      double *scores, int *same, size_t *no_face)
{
    *no_face = 0;
    for (size_t i = 0; i < l->n; i++) {
        size_t a = image_index(job, dir, l->pairs[i].path1);
        size_t b = image_index(job, dir, l->pairs[i].path2);
        if (a == (size_t)-1 || b == (size_t)-1) return BASE_ERR_NOMEM;
        same[i] = l->pairs[i].same;
        if (!job->found[e][a] || !job->found[e][b]) {
            scores[i] = NAN;
            (*no_face)++;
            continue;
        }
        int d = job->dims[e];
        scores[i] = face_similarity(job->embeddings[e] + a * (size_t)d,
                                    job->embeddings[e] + b * (size_t)d, d);
    }
    return 0;
}

static void count_same(const eval_pair_list *l, size_t *n_same, size_t *n_diff)
{
    *n_same = *n_diff = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (l->pairs[i].same)
            (*n_same)++;
        else
            (*n_diff)++;
    }
}

static const uint8_t palette[][3] = {
    {31, 119, 180}, {214, 39, 40}, {44, 160, 44}, {255, 127, 14}, {148, 103, 189}};

/* The ROC of each embedder, FAR on a log axis down to the list's resolution. */
static int plot_roc(const char *path, const char *title, eval_roc_point **roc, const size_t *n_roc,
                    char labels[][96], int n_series, size_t n_diff)
{
    plot_series series[N_EMBEDDERS];
    double *xs[N_EMBEDDERS] = {0}, *ys[N_EMBEDDERS] = {0};
    double far_min = pow(10.0, floor(log10(1.0 / (double)(n_diff ? n_diff : 1))));
    if (far_min > 1e-3) far_min = 1e-3;
    double y_min = 1.0;
    int rc = 0;
    for (int s = 0; s < n_series; s++) {
        xs[s] = malloc(n_roc[s] * sizeof(double));
        ys[s] = malloc(n_roc[s] * sizeof(double));
        if (!xs[s] || !ys[s]) {
            rc = BASE_ERR_NOMEM;
            goto done;
        }
        for (size_t i = 0; i < n_roc[s]; i++) {
            xs[s][i] = roc[s][i].far;
            ys[s][i] = roc[s][i].tar;
        }
        double t = eval_tar_at_far(roc[s], n_roc[s], far_min);
        if (t < y_min) y_min = t;
        series[s] = (plot_series){.x = xs[s], .y = ys[s], .n = (int)n_roc[s], .label = labels[s]};
        memcpy(series[s].rgb, palette[s % 5], 3);
    }
    y_min = floor(y_min * 10.0 - 1e-9) / 10.0;
    if (y_min > 0.9) y_min = 0.9;
    if (y_min < 0.0) y_min = 0.0;
    plot_options o = {.title = title,
                      .x_label = "false accept rate (log)",
                      .y_label = "true accept rate",
                      .x_min = far_min,
                      .x_max = 1.0,
                      .y_min = y_min,
                      .y_max = 1.0,
                      .x_log = 1,
                      .legend = PLOT_LEGEND_BOTTOM_RIGHT};
    base_error_clear();
    rc = plot_write_png(&o, series, n_series, path);
    if (rc != 0)
        fprintf(stderr, "vultus eval: plot %s: %s\n", path, base_error_text(rc));
    else
        fprintf(stderr, "eval: ROC written to %s\n", path);
done:
    for (int s = 0; s < n_series; s++) {
        free(xs[s]);
        free(ys[s]);
    }
    return rc;
}

/*
 * The verification run shared by `eval pairs` and `eval lfw`: analyse every distinct image
 * once per embedder, score the pairs, print one summary line per embedder.
 */
static int run_verification(const eval_config *c, const eval_pair_list *test,
                            const eval_pair_list *train, const char *list_dir)
{
    const eval_pair_list *lists[2] = {test, train};
    verify_job job = {.cfg = c};
    atomic_init(&job.errors_shown, 0);
    int status = CLI_EXIT_FAILURE;
    face_models *models = NULL;
    double *scores = NULL, *train_scores = NULL, *all_scores = NULL;
    int *same = NULL, *train_same = NULL, *all_same = NULL, *folds = NULL;
    eval_roc_point *roc[N_EMBEDDERS] = {0};
    size_t n_roc[N_EMBEDDERS] = {0};
    char labels[N_EMBEDDERS][96];

    if (distinct_images(lists, train ? 2 : 1, list_dir, &job.paths, &job.n_images) != 0) {
        fprintf(stderr, "vultus eval: out of memory\n");
        return CLI_EXIT_FAILURE;
    }
    size_t n_same, n_diff, test_images = 0;
    count_same(test, &n_same, &n_diff);
    if (train) { /* how many of them the test list uses */
        char **test_paths = NULL;
        if (distinct_images(lists, 1, list_dir, &test_paths, &test_images) == 0) {
            for (size_t i = 0; i < test_images; i++)
                free(test_paths[i]);
            free(test_paths);
        }
    } else {
        test_images = job.n_images;
    }
    fprintf(stderr, "  distinct images: %zu (%zu in the test list)\n", job.n_images, test_images);
    fflush(stderr);

    if (load_models(c, FACE_STAGE_EMBED, &models) != 0) goto done;
    for (int e = 0; e < c->n_embedders; e++) {
        int d = face_embedding_dim(c->embedders[e]);
        job.dims[e] = d > 0 && d <= FACE_MAX_EMBEDDING ? d : FACE_MAX_EMBEDDING;
        job.embeddings[e] = malloc(job.n_images * (size_t)job.dims[e] * sizeof(float));
        job.found[e] = calloc(job.n_images ? job.n_images : 1, 1);
        job.failed[e] = calloc(job.n_images ? job.n_images : 1, 1);
        if (!job.embeddings[e] || !job.found[e] || !job.failed[e]) {
            fprintf(stderr, "vultus eval: out of memory for %zu embeddings\n", job.n_images);
            goto done;
        }
    }
    job.unreadable = calloc(job.n_images ? job.n_images : 1, 1);
    size_t n_all = test->n + (train ? train->n : 0);
    scores = malloc((test->n + 1) * sizeof *scores);
    same = malloc((test->n + 1) * sizeof *same);
    all_scores = malloc((n_all + 1) * sizeof *all_scores);
    all_same = malloc((n_all + 1) * sizeof *all_same);
    folds = malloc((n_all + 1) * sizeof *folds);
    if (train) {
        train_scores = malloc((train->n + 1) * sizeof *train_scores);
        train_same = malloc((train->n + 1) * sizeof *train_same);
    }
    if (!job.unreadable || !scores || !same || !all_scores || !all_same || !folds ||
        (train && (!train_scores || !train_same))) {
        fprintf(stderr, "vultus eval: out of memory\n");
        goto done;
    }

    uint64_t t0 = base_now_ns();
    int rc = pool_run(models, job.n_images, c->threads, verify_image, &job, c->what);
    double seconds = elapsed_s(t0);
    if (rc != 0) {
        fprintf(stderr, "vultus eval: stopped: %s\n", base_strerror(rc));
        goto done;
    }
    size_t unreadable = 0;
    for (size_t i = 0; i < job.n_images; i++)
        unreadable += job.unreadable[i];

    for (int e = 0; e < c->n_embedders; e++) {
        const char *id = face_embedder_id(c->embedders[e]);
        size_t no_face_images = 0, failed = 0;
        for (size_t i = 0; i < job.n_images; i++) {
            no_face_images += !job.found[e][i];
            failed += job.failed[e][i];
        }
        size_t no_face = 0, train_no_face = 0;
        if (score_list(&job, e, test, list_dir, scores, same, &no_face) != 0 ||
            (train &&
             score_list(&job, e, train, list_dir, train_scores, train_same, &train_no_face) != 0)) {
            fprintf(stderr, "vultus eval: out of memory\n");
            goto done;
        }

        /* k-fold: the list's own folds; or, for a development split, both lists together
         * dealt round-robin; or the single list dealt round-robin. */
        size_t n_k = 0;
        int k = 10;
        const char *fold_source;
        if (test->n_folds > 1 && !train) {
            k = test->n_folds;
            for (size_t i = 0; i < test->n; i++) {
                all_scores[n_k] = scores[i];
                all_same[n_k] = same[i];
                folds[n_k++] = test->pairs[i].fold;
            }
            fold_source = "list";
        } else {
            if (train) {
                for (size_t i = 0; i < train->n; i++) {
                    all_scores[n_k] = train_scores[i];
                    all_same[n_k++] = train_same[i];
                }
            }
            for (size_t i = 0; i < test->n; i++) {
                all_scores[n_k] = scores[i];
                all_same[n_k++] = same[i];
            }
            eval_interleave_folds(all_same, n_k, k, folds);
            fold_source = train ? "train+test interleaved" : "interleaved";
        }
        eval_kfold_result kf;
        base_error_clear();
        int kf_rc = eval_kfold(all_scores, all_same, folds, n_k, k, &kf);
        if (kf_rc != 0)
            fprintf(stderr, "eval %s: %s: no k-fold figure: %s\n", c->what, id,
                    base_error_message());

        double threshold, accuracy, train_accuracy = NAN;
        const char *threshold_from;
        if (train) {
            if (eval_best_threshold(train_scores, train_same, train->n, &threshold,
                                    &train_accuracy) != 0) {
                fprintf(stderr, "vultus eval: %s\n", base_error_message());
                goto done;
            }
            accuracy = eval_accuracy(scores, same, test->n, threshold);
            threshold_from = "train";
        } else if (kf_rc == 0) {
            accuracy = kf.mean;
            threshold = 0.0;
            for (int f = 0; f < kf.k; f++)
                threshold += kf.threshold[f] / kf.k;
            threshold_from = "k-fold mean";
        } else {
            threshold = face_default_threshold(c->embedders[e]);
            accuracy = eval_accuracy(scores, same, test->n, threshold);
            threshold_from = "default";
        }
        double default_threshold = face_default_threshold(c->embedders[e]);
        double accuracy_default = eval_accuracy(scores, same, test->n, default_threshold);

        double tar = NAN;
        if (eval_roc(scores, same, test->n, &roc[e], &n_roc[e]) == 0)
            tar = eval_tar_at_far(roc[e], n_roc[e], 1e-3);
        snprintf(labels[e], sizeof labels[e], "%s acc %.4f", id, accuracy);

        json_t *j = json_object();
        json_object_set_new(j, "eval", json_string(c->what));
        json_object_set_new(j, "embedder", json_string(id));
        json_object_set_new(j, "detector", json_string(detector_label(c)));
        json_object_set_new(j, "accuracy", json_number(accuracy));
        json_object_set_new(j, "threshold", json_number(threshold));
        json_object_set_new(j, "threshold_from", json_string(threshold_from));
        if (train) json_object_set_new(j, "train_accuracy", json_number(train_accuracy));
        if (kf_rc == 0) {
            json_object_set_new(j, "accuracy_10fold", json_number(kf.mean));
            json_object_set_new(j, "accuracy_10fold_std", json_number(kf.std));
            json_object_set_new(j, "folds", json_integer(kf.k));
            json_object_set_new(j, "fold_pairs", json_integer((json_int_t)n_k));
            json_object_set_new(j, "fold_assignment", json_string(fold_source));
        }
        json_object_set_new(j, "tar_at_far_1e-3", json_number(tar));
        json_object_set_new(j, "far_resolution", json_number(n_diff ? 1.0 / (double)n_diff : NAN));
        json_object_set_new(j, "accuracy_at_default_threshold", json_number(accuracy_default));
        json_object_set_new(j, "default_threshold", json_number(default_threshold));
        json_object_set_new(j, "pairs", json_integer((json_int_t)test->n));
        json_object_set_new(j, "same_pairs", json_integer((json_int_t)n_same));
        json_object_set_new(j, "no_face_pairs", json_integer((json_int_t)no_face));
        if (train)
            json_object_set_new(j, "train_no_face_pairs", json_integer((json_int_t)train_no_face));
        json_object_set_new(j, "images", json_integer((json_int_t)job.n_images));
        json_object_set_new(j, "test_images", json_integer((json_int_t)test_images));
        json_object_set_new(j, "no_face_images", json_integer((json_int_t)no_face_images));
        json_object_set_new(j, "unreadable_images", json_integer((json_int_t)unreadable));
        json_object_set_new(j, "failed_images", json_integer((json_int_t)failed));
        json_object_set_new(j, "seconds", json_number(seconds));
        cli_print_json_line(j, 6);
    }
    if (c->plot) {
        char title[160];
        snprintf(title, sizeof title, "ROC, %s: %zu same, %zu different pairs", c->what, n_same,
                 n_diff);
        plot_roc(c->plot, title, roc, n_roc, labels, c->n_embedders, n_diff);
    }
    status = CLI_EXIT_OK;
done:
    for (int e = 0; e < N_EMBEDDERS; e++) {
        free(job.embeddings[e]);
        free(job.found[e]);
        free(job.failed[e]);
        free(roc[e]);
    }
    for (size_t i = 0; i < job.n_images; i++)
        free(job.paths[i]);
    free(job.paths);
    free(job.unreadable);
    free(scores);
    free(same);
    free(train_scores);
    free(train_same);
    free(all_scores);
    free(all_same);
    free(folds);
    face_models_destroy(models);
    return status;
}

static void describe_list(const char *label, const char *path, const eval_pair_list *l)
{
    size_t s, d;
    count_same(l, &s, &d);
    fprintf(stderr, "  %-14s %s (%zu same, %zu different", label, path, s, d);
    if (l->n_folds) fprintf(stderr, ", %d folds", l->n_folds);
    fprintf(stderr, ")\n");
}

static void print_embedders(const eval_config *c)
{
    fprintf(stderr, "  embedders:     ");
    for (int e = 0; e < c->n_embedders; e++)
        fprintf(stderr, "%s%s", e ? ", " : "", face_embedder_id(c->embedders[e]));
    fprintf(stderr, "\n");
}

static int eval_lfw(const eval_config *c, const char *pairs_path, const char *train_path,
                    const char *list_path)
{
    int status = CLI_EXIT_FAILURE;
    char *text = NULL, *train_text = NULL;
    eval_pair_list test = {0}, train = {0};
    int is_lfw = strcmp(c->what, "lfw") == 0;
    const char *path = is_lfw ? pairs_path : list_path;
    if (read_text(path, "pair list", &text) != 0) goto done;
    base_error_clear();
    int rc = is_lfw ? eval_parse_lfw_pairs(text, &test) : eval_parse_pair_list(text, &test);
    if (rc != 0) {
        fprintf(stderr, "vultus eval: %s: %s\n", path, base_error_message());
        goto done;
    }
    if (train_path) {
        if (read_text(train_path, "pair list", &train_text) != 0) goto done;
        base_error_clear();
        rc = is_lfw ? eval_parse_lfw_pairs(train_text, &train)
                    : eval_parse_pair_list(train_text, &train);
        if (rc != 0) {
            fprintf(stderr, "vultus eval: %s: %s\n", train_path, base_error_message());
            goto done;
        }
    }
    eval_limit_pairs(&test, c->limit);
    eval_limit_pairs(&train, c->limit);
    if (test.n == 0) {
        fprintf(stderr, "vultus eval: %s holds no pairs\n", path);
        goto done;
    }
    fprintf(stderr, "eval %s\n", c->what);
    fprintf(stderr, "  images:        %s\n", c->images_dir ? c->images_dir : "(paths as listed)");
    describe_list("pairs:", path, &test);
    if (train_path) describe_list("train pairs:", train_path, &train);
    print_embedders(c);
    print_face_options(c);
    fprintf(stderr, "  face choice:   the face closest to the image centre\n");
    fflush(stderr);
    status = run_verification(c, &test, train_path ? &train : NULL, c->images_dir);
done:
    eval_pair_list_free(&test);
    eval_pair_list_free(&train);
    free(text);
    free(train_text);
    return status;
}

/* --- detection: wider -------------------------------------------------------------------- */

/*
 * AP is a measure over a detector's whole ranked list (the official evaluation sweeps 1000
 * score thresholds over every detection submitted), so eval wider asks every detector for its
 * detections down to WIDER_SCORE_FLOOR unless --min-score says otherwise: the same floor for
 * every detector, fixed before any measurement, as detection benchmarks commonly use (0.01 to
 * 0.05). A detector's default threshold (face.h: 0.5) is its operating point: recall and false
 * positives there are reported too, from the same list (*_at_op).
 */
#define WIDER_SCORE_FLOOR 0.05f
#define WIDER_OPERATING_SCORE 0.5f

typedef struct wider_job {
    const eval_config *cfg;
    const eval_gt_set *gt;
    eval_detection **detections; /* per image, malloc'd */
    int *n_detections;
    double *ms;        /* per image: wall time of face_analyze_bytes */
    double *detect_ms; /* per image: timing.detect_ms */
    unsigned char *failed;
    atomic_int errors_shown;
} wider_job;

static int wider_image(face_context *ctx, size_t index, void *user)
{
    wider_job *job = user;
    const eval_config *c = job->cfg;
    char *path = eval_join_path(c->images_dir, job->gt->images[index].path);
    if (!path) return BASE_ERR_NOMEM;
    char *data = NULL;
    size_t len = 0;
    base_error_clear();
    int rc = base_file_read(path, MAX_IMAGE_BYTES, &data, &len);
    if (rc != 0) {
        image_error(&job->errors_shown, "%s: %s", path, base_error_text(rc));
        job->failed[index] = 1;
        free(path);
        return 0;
    }
    face_options o = c->face;
    o.stages = FACE_STAGE_DETECT;
    face_result r;
    memset(&r, 0, sizeof r);
    base_error_clear();
    uint64_t t0 = base_now_ns();
    rc = face_analyze_bytes(ctx, (const uint8_t *)data, len, &o, &r);
    job->ms[index] = (double)(base_now_ns() - t0) / 1e6;
    free(data);
    if (rc != 0) {
        image_error(&job->errors_shown, "%s: %s", path, base_error_text(rc));
        job->failed[index] = 1;
        face_result_free(&r);
        free(path);
        return rc == BASE_ERR_NOMEM ? rc : 0;
    }
    free(path);
    job->detect_ms[index] = r.timing.detect_ms;
    /* Boxes are in pixels of the full-size upright image (face.h), as WIDER's are: its images
     * carry no EXIF orientation (none of the 300 of wider-dev), so upright is as stored. */
    if (r.n_faces > 0) {
        eval_detection *d = malloc((size_t)r.n_faces * sizeof *d);
        if (!d) {
            face_result_free(&r);
            return BASE_ERR_NOMEM;
        }
        for (int i = 0; i < r.n_faces; i++) {
            const face_info *f = &r.faces[i];
            d[i] = (eval_detection){f->x, f->y, f->w, f->h, f->score};
        }
        job->detections[index] = d;
        job->n_detections[index] = r.n_faces;
    }
    face_result_free(&r);
    return 0;
}

/* Every detection of a run as `path x y w h score` lines, for analyses outside vultus. */
static int write_detections(const char *path, const eval_gt_set *gt, const wider_job *job)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "vultus eval: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < gt->n; i++)
        for (int k = 0; k < job->n_detections[i]; k++) {
            const eval_detection *d = &job->detections[i][k];
            fprintf(f, "%s %.2f %.2f %.2f %.2f %.5f\n", gt->images[i].path, d->x, d->y, d->w, d->h,
                    d->score);
        }
    if (fclose(f) != 0) {
        fprintf(stderr, "vultus eval: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(stderr, "eval: detections written to %s\n", path);
    return 0;
}

/* FILE.png -> FILE-NAME.png when several runs each draw a plot. */
static void plot_path_for(const char *plot, const char *name, char *out, size_t cap)
{
    const char *dot = strrchr(plot, '.');
    const char *slash = strrchr(plot, '/');
    if (!name) {
        snprintf(out, cap, "%s", plot);
    } else if (dot && (!slash || dot > slash)) {
        snprintf(out, cap, "%.*s-%s%s", (int)(dot - plot), plot, name, dot);
    } else {
        snprintf(out, cap, "%s-%s", plot, name);
    }
}

static int plot_pr(const char *path, const char *detector, const eval_wider_result *res,
                   size_t n_images)
{
    static const char *names[3] = {"easy", "medium", "hard"};
    plot_series series[3];
    char labels[3][64];
    for (int s = 0; s < 3; s++) {
        snprintf(labels[s], sizeof labels[s], "%s AP %.3f", names[s], res[s].ap);
        series[s] = (plot_series){.x = res[s].recall_curve,
                                  .y = res[s].precision,
                                  .n = res[s].n_points,
                                  .label = labels[s]};
        memcpy(series[s].rgb, palette[s], 3);
    }
    char title[128];
    snprintf(title, sizeof title, "WIDER FACE, %zu images: %s", n_images, detector);
    plot_options o = {.title = title,
                      .x_label = "recall",
                      .y_label = "precision",
                      .x_min = 0.0,
                      .x_max = 1.0,
                      .y_min = 0.0,
                      .y_max = 1.0,
                      .legend = PLOT_LEGEND_BOTTOM_LEFT};
    base_error_clear();
    int rc = plot_write_png(&o, series, 3, path);
    if (rc != 0)
        fprintf(stderr, "vultus eval: plot %s: %s\n", path, base_error_text(rc));
    else
        fprintf(stderr, "eval: precision-recall curves written to %s\n", path);
    return rc;
}

static int eval_wider_cmd(const eval_config *c, const char *gt_path)
{
    int status = CLI_EXIT_FAILURE;
    char *text = NULL;
    eval_gt_set gt = {0};
    face_models *models = NULL;
    wider_job job = {.cfg = c, .gt = &gt};
    atomic_init(&job.errors_shown, 0);
    eval_det_image *images = NULL;
    eval_wider_result res[3];
    memset(res, 0, sizeof res);

    if (read_text(gt_path, "ground truth", &text) != 0) goto done;
    base_error_clear();
    if (eval_parse_wider_gt(text, &gt) != 0) {
        fprintf(stderr, "vultus eval: %s: %s\n", gt_path, base_error_message());
        goto done;
    }
    eval_limit_gt(&gt, c->limit);
    size_t n = gt.n, faces = 0, by_difficulty[4] = {0};
    for (size_t i = 0; i < n; i++) {
        faces += (size_t)gt.images[i].n_faces;
        for (int f = 0; f < gt.images[i].n_faces; f++)
            by_difficulty[gt.images[i].faces[f].difficulty]++;
    }
    long max_fp = c->max_fp >= 0 ? c->max_fp : (long)n;
    fprintf(stderr, "eval wider\n");
    fprintf(stderr, "  images:        %s\n", c->images_dir);
    fprintf(stderr,
            "  ground truth:  %s (%zu images, %zu faces: %zu easy, %zu medium, %zu hard, %zu in "
            "no setting)\n",
            gt_path, n, faces, by_difficulty[0], by_difficulty[1], by_difficulty[2],
            by_difficulty[3]);
    fprintf(stderr,
            "  protocol:      IoU 0.5; faces above the setting's difficulty ignored; AP over "
            "1000 normalised score thresholds (official evaluation)\n");
    fprintf(stderr, "  recall at fp:  at most %ld false positives over the set\n", max_fp);
    print_face_options(c);
    fflush(stderr);
    if (n == 0) {
        fprintf(stderr, "vultus eval: %s holds no images\n", gt_path);
        goto done;
    }

    job.detections = calloc(n, sizeof *job.detections);
    job.n_detections = calloc(n, sizeof *job.n_detections);
    job.ms = calloc(n, sizeof *job.ms);
    job.detect_ms = calloc(n, sizeof *job.detect_ms);
    job.failed = calloc(n, 1);
    images = calloc(n, sizeof *images);
    if (!job.detections || !job.n_detections || !job.ms || !job.detect_ms || !job.failed ||
        !images) {
        fprintf(stderr, "vultus eval: out of memory\n");
        goto done;
    }
    if (load_models(c, FACE_STAGE_DETECT, &models) != 0) goto done;

    /* One run per detector (several with --detector all), one summary line each. */
    face_detector detectors[N_DETECTORS];
    const char *names[N_DETECTORS];
    int n_detectors = 0;
    if (c->all_detectors) {
        for (int d = 0; d < N_DETECTORS; d++) {
            detectors[n_detectors] = every_detector[d].d;
            names[n_detectors++] = every_detector[d].name;
        }
    } else {
        detectors[0] = c->face.detector;
        names[0] = detector_label(c);
        n_detectors = 1;
    }
    for (int d = 0; d < n_detectors; d++) {
        eval_config cd = *c;
        cd.face.detector = detectors[d];
        cd.detector_name = names[d];
        job.cfg = &cd;
        for (size_t i = 0; i < n; i++) {
            free(job.detections[i]);
            job.detections[i] = NULL;
            job.n_detections[i] = 0;
            job.ms[i] = job.detect_ms[i] = 0.0;
            job.failed[i] = 0;
        }
        for (int s = 0; s < 3; s++)
            eval_wider_result_free(&res[s]);
        atomic_store(&job.errors_shown, 0);
        fprintf(stderr, "eval wider: detector %s\n", names[d]);
        uint64_t t0 = base_now_ns();
        int rc = pool_run(models, n, c->threads, wider_image, &job, "wider");
        double seconds = elapsed_s(t0);
        if (rc != 0) {
            fprintf(stderr, "vultus eval: stopped: %s\n", base_strerror(rc));
            goto done;
        }
        size_t failed = 0, detections = 0;
        double ms_sum = 0.0, detect_sum = 0.0;
        for (size_t i = 0; i < n; i++) {
            images[i] = (eval_det_image){job.detections[i], job.n_detections[i], gt.images[i].faces,
                                         gt.images[i].n_faces};
            failed += job.failed[i];
            detections += (size_t)job.n_detections[i];
            ms_sum += job.ms[i];
            detect_sum += job.detect_ms[i];
        }
        for (int s = 0; s < 3; s++) {
            eval_wider_options o = {
                .setting = s, .iou_threshold = 0.5, .thresh_num = 1000, .max_fp = max_fp};
            base_error_clear();
            if (eval_wider(images, n, &o, &res[s]) != 0) {
                fprintf(stderr, "vultus eval: %s\n", base_error_message());
                goto done;
            }
        }
        /* the operating point: the same detections at the default threshold */
        float op = fmaxf(c->face.min_score, WIDER_OPERATING_SCORE);
        eval_wider_result at_op[3];
        memset(at_op, 0, sizeof at_op);
        eval_detection *op_dets = malloc((detections ? detections : 1) * sizeof *op_dets);
        eval_det_image *op_images = malloc(n * sizeof *op_images);
        int op_rc = op_dets && op_images ? 0 : base_error_set(BASE_ERR_NOMEM, "out of memory");
        for (size_t i = 0, k = 0; i < n && !op_rc; i++) {
            op_images[i] = images[i];
            op_images[i].detections = op_dets + k;
            op_images[i].n_detections = 0;
            for (int m = 0; m < job.n_detections[i]; m++)
                if (job.detections[i][m].score >= op) {
                    op_dets[k++] = job.detections[i][m];
                    op_images[i].n_detections++;
                }
        }
        for (int s = 0; s < 3 && !op_rc; s++) {
            eval_wider_options o = {
                .setting = s, .iou_threshold = 0.5, .thresh_num = 1000, .max_fp = max_fp};
            op_rc = eval_wider(op_images, n, &o, &at_op[s]);
        }
        free(op_dets);
        free(op_images);
        if (op_rc != 0) {
            fprintf(stderr, "vultus eval: %s\n", base_error_message());
            for (int s = 0; s < 3; s++)
                eval_wider_result_free(&at_op[s]);
            goto done;
        }
        json_t *j = json_object();
        json_object_set_new(j, "eval", json_string("wider"));
        json_object_set_new(j, "detector", json_string(names[d]));
        json_object_set_new(j, "ap_easy", json_number(res[0].ap));
        json_object_set_new(j, "ap_medium", json_number(res[1].ap));
        json_object_set_new(j, "ap_hard", json_number(res[2].ap));
        json_object_set_new(j, "recall_easy", json_number(res[0].recall));
        json_object_set_new(j, "recall_medium", json_number(res[1].recall));
        json_object_set_new(j, "recall_hard", json_number(res[2].recall));
        json_object_set_new(j, "max_fp", json_integer(max_fp));
        json_object_set_new(j, "recall_easy_at_fp", json_number(res[0].recall_at_fp));
        json_object_set_new(j, "recall_medium_at_fp", json_number(res[1].recall_at_fp));
        json_object_set_new(j, "recall_hard_at_fp", json_number(res[2].recall_at_fp));
        json_object_set_new(j, "fp_per_image", json_number((double)res[2].false_positives / n));
        json_object_set_new(j, "score_floor", json_number(c->face.min_score));
        json_object_set_new(j, "op_threshold", json_number(op));
        json_object_set_new(j, "recall_easy_at_op", json_number(at_op[0].recall));
        json_object_set_new(j, "recall_medium_at_op", json_number(at_op[1].recall));
        json_object_set_new(j, "recall_hard_at_op", json_number(at_op[2].recall));
        json_object_set_new(j, "fp_per_image_at_op",
                            json_number((double)at_op[2].false_positives / n));
        for (int s = 0; s < 3; s++)
            eval_wider_result_free(&at_op[s]);
        json_object_set_new(j, "detections_per_image", json_number((double)detections / n));
        json_object_set_new(j, "ms_per_image", json_number(ms_sum / n));
        json_object_set_new(j, "detect_ms_per_image", json_number(detect_sum / n));
        json_object_set_new(j, "images", json_integer((json_int_t)n));
        json_object_set_new(j, "faces", json_integer((json_int_t)faces));
        json_object_set_new(j, "failed_images", json_integer((json_int_t)failed));
        json_object_set_new(j, "threads", json_integer(c->threads));
        json_object_set_new(j, "seconds", json_number(seconds));
        cli_print_json_line(j, 6);
        if (c->plot) {
            char path[4096];
            plot_path_for(c->plot, n_detectors > 1 ? names[d] : NULL, path, sizeof path);
            plot_pr(path, names[d], res, n);
        }
        if (c->detections_path) {
            char path[4096];
            plot_path_for(c->detections_path, n_detectors > 1 ? names[d] : NULL, path, sizeof path);
            if (write_detections(path, &gt, &job) != 0) goto done;
        }
    }
    status = CLI_EXIT_OK;
done:
    for (int s = 0; s < 3; s++)
        eval_wider_result_free(&res[s]);
    if (job.detections)
        for (size_t i = 0; i < gt.n; i++)
            free(job.detections[i]);
    free(job.detections);
    free(job.n_detections);
    free(job.ms);
    free(job.detect_ms);
    free(job.failed);
    free(images);
    eval_gt_set_free(&gt);
    free(text);
    face_models_destroy(models);
    return status;
}

/* --- age and gender ---------------------------------------------------------------------- */

typedef struct age_job {
    const eval_config *cfg;
    char **paths;
    eval_age_sample *samples;
    unsigned char *failed;
    atomic_int errors_shown;
} age_job;

static int age_image(face_context *ctx, size_t index, void *user)
{
    age_job *job = user;
    const eval_config *c = job->cfg;
    char *data = NULL;
    size_t len = 0;
    base_error_clear();
    int rc = base_file_read(job->paths[index], MAX_IMAGE_BYTES, &data, &len);
    if (rc != 0) {
        image_error(&job->errors_shown, "%s: %s", job->paths[index], base_error_text(rc));
        job->failed[index] = 1;
        return 0;
    }
    face_options o = c->face;
    o.stages = FACE_STAGE_ATTRIBUTES;
    face_result r;
    memset(&r, 0, sizeof r);
    base_error_clear();
    rc = face_analyze_bytes(ctx, (const uint8_t *)data, len, &o, &r);
    free(data);
    if (rc != 0) {
        image_error(&job->errors_shown, "%s: %s", job->paths[index], base_error_text(rc));
        job->failed[index] = 1;
        face_result_free(&r);
        return rc == BASE_ERR_NOMEM ? rc : 0;
    }
    const face_info *f = central_face(&r, 0, 1);
    if (f) {
        eval_age_sample *s = &job->samples[index];
        s->found = 1;
        s->age_pred = f->attributes.age;
        s->male_prob = f->attributes.gender_male;
    }
    face_result_free(&r);
    return 0;
}

static int eval_age_cmd(const eval_config *c)
{
    int status = CLI_EXIT_FAILURE;
    face_models *models = NULL;
    age_job job = {.cfg = c};
    atomic_init(&job.errors_shown, 0);
    size_t n = 0, cap = 0, skipped = 0;
    char **names = NULL;

    DIR *dir = opendir(c->images_dir);
    if (!dir) {
        fprintf(stderr, "vultus eval: cannot open the folder %s\n", c->images_dir);
        return CLI_EXIT_FAILURE;
    }
    struct dirent *ent;
    while ((ent = readdir(dir)) != NULL) {
        if (ent->d_name[0] == '.' || !eval_is_image_name(ent->d_name)) continue;
        int age, female;
        if (eval_parse_utk_name(ent->d_name, &age, &female) != 0) {
            skipped++;
            continue;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            char **g = realloc(names, ncap * sizeof *g);
            if (!g) break;
            names = g;
            cap = ncap;
        }
        names[n] = strdup(ent->d_name);
        if (names[n]) n++;
    }
    closedir(dir);
    if (n) qsort(names, n, sizeof *names, compare_strings);
    if (c->limit && n > c->limit) {
        for (size_t i = c->limit; i < n; i++)
            free(names[i]);
        n = c->limit;
    }
    fprintf(stderr, "eval age\n");
    fprintf(stderr, "  images:        %s (%zu with UTKFace labels, %zu names without)\n",
            c->images_dir, n, skipped);
    fprintf(stderr,
            "  labels:        age_gender_race_*.jpg, gender 0 male 1 female; predicted female "
            "when P(male) < 0.5\n");
    fprintf(stderr, "  age model:     %s\n",
            c->all_age_models   ? "all"
            : c->age_model_name ? c->age_model_name
                                : "default");
    print_face_options(c);
    fprintf(stderr, "  face choice:   the face closest to the image centre\n");
    fflush(stderr);
    if (n == 0) {
        fprintf(stderr, "vultus eval: no UTKFace-named images in %s\n", c->images_dir);
        goto done;
    }
    job.paths = calloc(n, sizeof *job.paths);
    job.samples = calloc(n, sizeof *job.samples);
    job.failed = calloc(n, 1);
    if (!job.paths || !job.samples || !job.failed) {
        fprintf(stderr, "vultus eval: out of memory\n");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        int age = 0, female = 0;
        eval_parse_utk_name(names[i], &age, &female);
        job.samples[i].age = age;
        job.samples[i].female = female;
        job.paths[i] = eval_join_path(c->images_dir, names[i]);
        if (!job.paths[i]) {
            fprintf(stderr, "vultus eval: out of memory\n");
            goto done;
        }
    }
    /* One run per age model (each with --age-model all), one summary line each. */
    int first = c->all_age_models ? 0 : -1, last = c->all_age_models ? N_AGE_MODELS - 1 : -1;
    for (int a = first; a <= last; a++) {
        eval_config ca = *c;
        if (a >= 0) {
            ca.age_model = age_models[a].m;
            ca.age_model_name = age_models[a].name;
        }
        job.cfg = &ca;
        memset(job.failed, 0, n);
        for (size_t i = 0; i < n; i++)
            job.samples[i].found = 0;
        atomic_store(&job.errors_shown, 0);
        face_models_destroy(models);
        models = NULL;
        fprintf(stderr, "eval age: age model %s\n",
                ca.age_model_name ? ca.age_model_name : "default");
        if (load_models(&ca, FACE_STAGE_ATTRIBUTES, &models) != 0) {
            if (a >= 0) continue; /* the others may still load */
            goto done;
        }
        uint64_t t0 = base_now_ns();
        int rc = pool_run(models, n, c->threads, age_image, &job, "age");
        double seconds = elapsed_s(t0);
        if (rc != 0) {
            fprintf(stderr, "vultus eval: stopped: %s\n", base_strerror(rc));
            goto done;
        }
        eval_age_result r;
        eval_age_gender(job.samples, n, &r);
        size_t failed = 0;
        for (size_t i = 0; i < n; i++)
            failed += job.failed[i];
        json_t *j = json_object();
        json_object_set_new(j, "eval", json_string("age"));
        json_object_set_new(j, "age_mae", json_number(r.age_mae));
        json_object_set_new(j, "gender_accuracy", json_number(r.gender_accuracy));
        json_object_set_new(j, "gender_accuracy_found", json_number(r.gender_accuracy_found));
        json_object_set_new(j, "no_face", json_integer((json_int_t)(r.n - r.found)));
        json_object_set_new(j, "age_model",
                            json_string(ca.age_model_name ? ca.age_model_name : "default"));
        json_object_set_new(j, "images", json_integer((json_int_t)n));
        json_object_set_new(j, "failed_images", json_integer((json_int_t)failed));
        json_object_set_new(j, "detector", json_string(detector_label(c)));
        json_object_set_new(j, "seconds", json_number(seconds));
        cli_print_json_line(j, 6);
    }
    status = CLI_EXIT_OK;
done:
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
        if (job.paths) free(job.paths[i]);
    }
    free(names);
    free(job.paths);
    free(job.samples);
    free(job.failed);
    face_models_destroy(models);
    return status;
}

/* --- argument parsing -------------------------------------------------------------------- */

static int parse_embedder(const char *name, eval_config *c)
{
    if (strcmp(name, "all") == 0) {
        memcpy(c->embedders, all_embedders, sizeof all_embedders);
        c->n_embedders = N_EMBEDDERS;
        c->all_embedders = 1;
        return 0;
    }
    if (face_embedder_parse(name, &c->embedders[0]) != 0) return -1;
    c->n_embedders = 1;
    return 0;
}

static int parse_age_model(const char *name, eval_config *c)
{
    if (strcmp(name, "all") == 0) {
        c->all_age_models = 1;
        return 0;
    }
    if (strcmp(name, "default") == 0) {
        c->age_model = FACE_AGE_MODEL_DEFAULT;
        c->age_model_name = NULL;
        return 0;
    }
    for (int i = 0; i < N_AGE_MODELS; i++) {
        if (strcmp(name, age_models[i].name) == 0) {
            c->age_model = age_models[i].m;
            c->age_model_name = age_models[i].name;
            return 0;
        }
    }
    return -1;
}

static int parse_detector(const char *name, eval_config *c)
{
    if (strcmp(name, "all") == 0) {
        c->all_detectors = 1;
        return 0;
    }
    if (face_detector_parse(name, &c->face.detector) != 0) return -1;
    c->detector_name = face_detector_name(c->face.detector);
    return 0;
}

int cli_eval_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        eval_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "pairs") != 0 && strcmp(sub, "lfw") != 0 && strcmp(sub, "wider") != 0 &&
        strcmp(sub, "age") != 0) {
        fprintf(stderr, "vultus eval: unknown evaluation '%s'\n\n", sub);
        eval_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    static const struct option options[] = {
        {"models", required_argument, NULL, 'm'},
        {"images", required_argument, NULL, 'i'},
        {"list", required_argument, NULL, 'l'},
        {"pairs", required_argument, NULL, 'p'},
        {"train-pairs", required_argument, NULL, 'T'},
        {"gt", required_argument, NULL, 'g'},
        {"embedder", required_argument, NULL, 'e'},
        {"detector", required_argument, NULL, 'd'},
        {"min-score", required_argument, NULL, 's'},
        {"min-face-size", required_argument, NULL, 'z'},
        {"max-faces", required_argument, NULL, 'x'},
        {"max-fp", required_argument, NULL, 'f'},
        {"threads", required_argument, NULL, 't'},
        {"limit", required_argument, NULL, 'n'},
        {"plot", required_argument, NULL, 'P'},
        {"age-model", required_argument, NULL, 'a'},
        {"detections", required_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    eval_config c = {.what = sub,
                     .models_dir = "models",
                     .threads = 2,
                     .embedders = {FACE_EMBEDDER_DEFAULT},
                     .n_embedders = 1,
                     .max_fp = -1};
    const char *list = NULL, *pairs = NULL, *train = NULL, *gt = NULL;
    long v;
    int opt, longindex = 0;
    optind = 0;
    argc--;
    argv++;
    base_error_clear();
    while ((opt = getopt_long(argc, argv, "h", options, &longindex)) != -1) {
        switch (opt) {
        case 'm': c.models_dir = optarg; break;
        case 'i': c.images_dir = optarg; break;
        case 'l': list = optarg; break;
        case 'p': pairs = optarg; break;
        case 'T': train = optarg; break;
        case 'g': gt = optarg; break;
        case 'P': c.plot = optarg; break;
        case 'D': c.detections_path = optarg; break;
        case 'e':
            if (parse_embedder(optarg, &c) != 0) goto bad_value;
            break;
        case 'd':
            if (parse_detector(optarg, &c) != 0) goto bad_value;
            break;
        case 'a':
            if (parse_age_model(optarg, &c) != 0) goto bad_value;
            break;
        case 's':
            if (eval_parse_score_option(optarg, &c.face.min_score) != 0) goto bad_value;
            break;
        case 'z':
            if (eval_parse_long_option(optarg, 1, 100000, &v) != 0) goto bad_value;
            c.face.min_face_size = (int)v;
            break;
        case 'x':
            if (eval_parse_long_option(optarg, 1, 100000, &v) != 0) goto bad_value;
            c.face.max_faces = (int)v;
            break;
        case 'f':
            if (eval_parse_long_option(optarg, 0, 1L << 40, &v) != 0) goto bad_value;
            c.max_fp = v;
            break;
        case 't':
            if (eval_parse_long_option(optarg, 1, MAX_THREADS, &v) != 0) goto bad_value;
            c.threads = (int)v;
            break;
        case 'n':
            if (eval_parse_long_option(optarg, 1, 1L << 40, &v) != 0) goto bad_value;
            c.limit = (size_t)v;
            break;
        case 'h': eval_usage(stdout); return CLI_EXIT_OK;
        default: eval_usage(stderr); return CLI_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vultus eval %s: unexpected argument '%s'\n", sub, argv[optind]);
        return CLI_EXIT_USAGE;
    }
    if (c.all_age_models && strcmp(sub, "age") != 0) {
        fprintf(stderr, "vultus eval %s: --age-model all is for eval age\n", sub);
        return CLI_EXIT_USAGE;
    }
    if (c.all_detectors && strcmp(sub, "wider") != 0) {
        fprintf(stderr, "vultus eval %s: --detector all is for eval wider\n", sub);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(sub, "pairs") == 0) {
        if (!list) {
            fprintf(stderr, "vultus eval pairs: --list FILE is required\n");
            return CLI_EXIT_USAGE;
        }
        return eval_lfw(&c, NULL, train, list);
    }
    if (strcmp(sub, "lfw") == 0) {
        if (!pairs || !c.images_dir) {
            fprintf(stderr, "vultus eval lfw: --images DIR and --pairs FILE are required\n");
            return CLI_EXIT_USAGE;
        }
        return eval_lfw(&c, pairs, train, NULL);
    }
    if (strcmp(sub, "wider") == 0) {
        if (!gt || !c.images_dir) {
            fprintf(stderr, "vultus eval wider: --images DIR and --gt FILE are required\n");
            return CLI_EXIT_USAGE;
        }
        if (c.face.max_faces == 0) c.face.max_faces = 1000; /* crowds: keep every face */
        if (c.face.min_score == 0) c.face.min_score = WIDER_SCORE_FLOOR;
        return eval_wider_cmd(&c, gt);
    }
    if (!c.images_dir) {
        fprintf(stderr, "vultus eval age: --images DIR is required\n");
        return CLI_EXIT_USAGE;
    }
    return eval_age_cmd(&c);

bad_value:
    fprintf(stderr, "vultus eval %s: bad value '%s' for --%s%s%s\n", sub, optarg,
            options[longindex].name, base_error_message()[0] ? ": " : "", base_error_message());
    return CLI_EXIT_USAGE;
}
