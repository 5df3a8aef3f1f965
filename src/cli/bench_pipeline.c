/*
 * `vultus bench pipeline IMAGE...` — times the whole face pipeline (face_analyze_bytes: decode,
 * detect, landmarks, align, embed, attributes, liveness) per image and per stage, on 1 and 2
 * worker threads, as JSON lines. bench/pipeline/run runs it and, in the same run, the same
 * photos through Human (@vladmandic/human, TF.js WASM backend, node), then prints the ratios.
 *
 * Threads: "threads": N means N workers, each with its own face_context (one shared
 * face_models), all analysing the same image at the same time after a common start. Every
 * worker's runs are pooled: the stage figures are medians over N x runs calls (the latency
 * one call sees when N run at once), and images_per_s is N x runs over the wall time from the
 * common start to the last worker's end (the throughput of the machine).
 *
 * Stages: the per-stage figures come from face_result.timing. Two sums are derived per call:
 * "total", the wall time of face_analyze_bytes; and "analysis", total minus decode and
 * liveness: detection, landmarks, alignment, embedding and attributes, which are the stages
 * Human runs in its matching configuration. Decoding is kept out of "analysis" because Human
 * in node is handed pixels decoded by a JavaScript decoder (jpeg-js), which is not what a
 * browser would do; it is reported apart.
 *
 * What is matched with Human (bench/pipeline/human-time.mjs), and what is not:
 *   - detection: the same BlazeFace (back camera) model file; Human runs it once at 256x256
 *     with rotation off; vultus runs its default detector, which may add passes (tiles or a
 *     padded pass for small images): more work on our side, counted.
 *   - landmarks: the same FaceMesh model (468 points) in both; Human's iris and attention
 *     models are off.
 *   - embedding and age/gender: Human's "description" is faceres, one model giving a 1024-d
 *     descriptor, age and gender. vultus's default configuration runs its default embedder
 *     and its default age/gender model (chosen by the LFW and UTKFace numbers, different
 *     models); `--embedder faceres --age-model faceres --label faceres` runs the same model as
 *     Human (bench/pipeline/run times both configurations). vultus averages embeddings over
 *     the face and its mirror image where the face module does so: more work, counted.
 *   - emotion: the same model in both.
 *   - vultus also computes head pose and a quality score (cheap, counted); its liveness and
 *     antispoof models run in the "liveness" stage, which "analysis" leaves out (Human's are
 *     off).
 */
#include "base/base.h"
#include "cli/cli.h"
#include "face/face.h"
#include "img/img.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IMAGE_BYTES (64u << 20)
#define MAX_WORKERS 64
#define MAX_THREAD_LIST 8
#define PREPARED_QUALITY 90

enum {
    STAGE_DECODE,
    STAGE_DETECT,
    STAGE_LANDMARKS,
    STAGE_ALIGN,
    STAGE_EMBED,
    STAGE_ATTRIBUTES,
    STAGE_LIVENESS,
    STAGE_ANALYSIS,
    STAGE_TOTAL,
    N_STAGES
};
static const char *const stage_names[N_STAGES] = {"decode",   "detect",   "landmarks",
                                                  "align",    "embed",    "attributes",
                                                  "liveness", "analysis", "total"};

typedef struct bench_options {
    int runs, warmup;
    int threads[MAX_THREAD_LIST], n_threads;
    face_options face;
    const char *models_dir;
    int width, height; /* --size: prepare the image at this size first; 0: as is */
    const char *save_dir;
    face_age_model age_model;
    const char *label; /* "config" of every line: names a model configuration */
    int batch;         /* --batch: the face context's max_batch (serve's --batch-max) */
} bench_options;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vultus bench pipeline [options] IMAGE...\n"
            "\n"
            "Times face_analyze_bytes per image and stage on 1 and 2 worker threads; one JSON\n"
            "line per image, thread count and stage:\n"
            "  {\"bench\":\"pipeline\",\"engine\":\"vultus\",\"image\":...,\"threads\":N,"
            "\"stage\":...,\"ms\":...}\n"
            "ms is the median over every worker's timed runs. Stages: decode, detect,\n"
            "landmarks, align, embed, attributes, liveness (from face_result.timing), analysis\n"
            "(detect to attributes: what Human's matching configuration runs) and total (the\n"
            "whole call); analysis and total carry images_per_s, the throughput of N workers\n"
            "analysing the image at the same time.\n"
            "  --runs N          timed runs per worker (default 20)\n"
            "  --warmup N        untimed runs per worker first (default 3)\n"
            "  --threads LIST    worker counts (default 1,2)\n"
            "  --stages LIST     detect, embed, attributes, liveness, all (default all)\n"
            "  --models DIR      model folder (default models)\n"
            "  --detector NAME   " FACE_DETECTOR_NAMES "\n"
            "  --embedder NAME   default, mobilefacenet, faceres, faceapi, mobileface\n"
            "  --age-model NAME  default, faceres, gear, ssrnet, faceapi\n"
            "  --label NAME      the \"config\" field of every line (default \"default\")\n"
            "  --size WxH        first scale each image to cover WxH, crop it (centre; top of\n"
            "                    a portrait) and re-encode it as JPEG (quality %d): 1920x1080\n"
            "  --save DIR        with --size: write the prepared JPEGs there (for the peer)\n"
            "  --batch N         faces per engine run of each per-face model (default 8, as\n"
            "                    serve's --batch-max; 1: every face in its own run)\n",
            PREPARED_QUALITY);
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median as bench nn takes it: the element at n/2 of the sorted values. */
static double median(double *v, size_t n)
{
    if (n == 0) return NAN;
    qsort(v, n, sizeof *v, compare_double);
    return v[n / 2];
}

/*
 * The common start: workers warm up, then wait until the main thread opens the gate, so the
 * timed runs of all workers overlap. `lock` guards `ready`, `open` and `cancel`.
 */
typedef struct start_gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int ready;  /* workers done warming up */
    int open;   /* the main thread let them go */
    int cancel; /* a thread could not be started: skip the timed runs */
} start_gate;

typedef struct worker {
    const face_models *models;
    const bench_options *opts;
    const uint8_t *data;
    size_t len;
    face_context *ctx;
    start_gate *gate;
    double *samples; /* [runs][N_STAGES] */
    uint64_t t_start, t_end;
    int faces;
    int rc;
} worker;

static void record(double *row, const face_timing *t, double wall_ms)
{
    row[STAGE_DECODE] = t->decode_ms;
    row[STAGE_DETECT] = t->detect_ms;
    row[STAGE_LANDMARKS] = t->landmarks_ms;
    row[STAGE_ALIGN] = t->align_ms;
    row[STAGE_EMBED] = t->embed_ms;
    row[STAGE_ATTRIBUTES] = t->attributes_ms;
    row[STAGE_LIVENESS] = t->liveness_ms;
    row[STAGE_ANALYSIS] = wall_ms - t->decode_ms - t->liveness_ms;
    row[STAGE_TOTAL] = wall_ms;
}

static int analyze_once(worker *w, double *row)
{
    face_result r;
    memset(&r, 0, sizeof r);
    base_error_clear();
    uint64_t t0 = base_now_ns();
    int rc = face_analyze_bytes(w->ctx, w->data, w->len, &w->opts->face, &r);
    double ms = (double)(base_now_ns() - t0) / 1e6;
    if (rc == 0) {
        w->faces = r.n_faces;
        if (row) record(row, &r.timing, ms);
    } else {
        fprintf(stderr, "vultus bench pipeline: analyse: %s\n", base_error_text(rc));
    }
    face_result_free(&r);
    return rc;
}

/* Warm-up, the common start, the timed runs. A worker that failed still reports ready so
 * the main thread is not left waiting. */
static void *worker_main(void *arg)
{
    worker *w = arg;
    start_gate *g = w->gate;
    for (int i = 0; i < w->opts->warmup && w->rc == 0; i++)
        w->rc = analyze_once(w, NULL);
    pthread_mutex_lock(&g->lock);
    g->ready++;
    pthread_cond_broadcast(&g->cond);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->lock);
    int cancel = g->cancel;
    pthread_mutex_unlock(&g->lock);
    if (cancel && w->rc == 0) w->rc = BASE_ERR_BACKEND;
    w->t_start = base_now_ns();
    for (int i = 0; i < w->opts->runs && w->rc == 0; i++)
        w->rc = analyze_once(w, w->samples + (size_t)i * N_STAGES);
    w->t_end = base_now_ns();
    return NULL;
}

static void print_line(const bench_options *o, const char *image, int width, int height,
                       int threads, int stage, double ms, double images_per_s, int faces)
{
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:f}", "bench", "pipeline", "engine",
                          "vultus", "config", o->label, "image", image, "threads", threads, "stage",
                          stage_names[stage], "ms", isfinite(ms) ? ms : 0.0);
    if (!j) return;
    if (stage == STAGE_ANALYSIS || stage == STAGE_TOTAL) {
        json_object_set_new(j, "images_per_s", json_real(images_per_s));
        json_object_set_new(j, "faces", json_integer(faces));
        json_object_set_new(j, "width", json_integer(width));
        json_object_set_new(j, "height", json_integer(height));
        json_object_set_new(j, "runs", json_integer(o->runs));
    }
    cli_print_json_line(j, 6);
}

/* Times one image with `n` workers; prints its lines. */
static int bench_image(const face_models *models, const bench_options *o, const char *name,
                       const uint8_t *data, size_t len, int width, int height, int n)
{
    worker w[MAX_WORKERS];
    pthread_t tid[MAX_WORKERS];
    start_gate gate = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    double *samples = calloc((size_t)n * (size_t)o->runs * N_STAGES, sizeof *samples);
    double *column = malloc((size_t)n * (size_t)o->runs * sizeof *column);
    if (!samples || !column) {
        free(samples);
        free(column);
        fprintf(stderr, "vultus bench pipeline: out of memory\n");
        return BASE_ERR_NOMEM;
    }
    int rc = 0, created = 0, started = 0;
    memset(w, 0, sizeof w);
    for (int i = 0; i < n; i++) {
        w[i] = (worker){.models = models,
                        .opts = o,
                        .data = data,
                        .len = len,
                        .gate = &gate,
                        .samples = samples + (size_t)i * (size_t)o->runs * N_STAGES};
        base_error_clear();
        rc = face_context_create(models, o->batch, &w[i].ctx);
        if (rc != 0) {
            fprintf(stderr, "vultus bench pipeline: face context: %s\n", base_error_text(rc));
            goto done;
        }
        created++;
    }
    for (int i = 0; i < n; i++) {
        if (pthread_create(&tid[i], NULL, worker_main, &w[i]) != 0) {
            fprintf(stderr, "vultus bench pipeline: could not start worker thread %d\n", i);
            rc = BASE_ERR_BACKEND;
            break;
        }
        started++;
    }
    pthread_mutex_lock(&gate.lock);
    while (gate.ready < started)
        pthread_cond_wait(&gate.cond, &gate.lock);
    gate.cancel = started < n;
    gate.open = 1;
    pthread_cond_broadcast(&gate.cond);
    pthread_mutex_unlock(&gate.lock);
    for (int i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    for (int i = 0; i < started; i++)
        if (w[i].rc != 0 && rc == 0) rc = w[i].rc;
    if (rc != 0) goto done;

    uint64_t t_start = w[0].t_start, t_end = w[0].t_end;
    for (int i = 1; i < n; i++) {
        if (w[i].t_start < t_start) t_start = w[i].t_start;
        if (w[i].t_end > t_end) t_end = w[i].t_end;
    }
    size_t total = (size_t)n * (size_t)o->runs;
    double seconds = (double)(t_end - t_start) / 1e9;
    double images_per_s = seconds > 0 ? (double)total / seconds : 0.0;
    for (int s = 0; s < N_STAGES; s++) {
        for (size_t k = 0; k < total; k++)
            column[k] = samples[k * N_STAGES + s];
        print_line(o, name, width, height, n, s, median(column, total), images_per_s, w[0].faces);
    }
done:
    for (int i = 0; i < created; i++)
        face_context_destroy(w[i].ctx);
    free(samples);
    free(column);
    return rc;
}

/*
 * --size: scales the image so it covers width x height, crops it (the centre; the top of a
 * portrait that is taller than the target, where the face is) and encodes it as JPEG: a photo
 * of a chosen size from any sample, decoded and re-encoded once before timing.
 */
static int prepare_image(const uint8_t *data, size_t len, int width, int height, uint8_t **out,
                         size_t *out_len)
{
    img_image src = {0}, scaled = {0}, cropped = {0};
    base_error_clear();
    int rc = img_decode(data, len, NULL, &src, NULL);
    if (rc != 0) return rc;
    double s = fmax((double)width / src.width, (double)height / src.height);
    int sw = (int)ceil(src.width * s), sh = (int)ceil(src.height * s);
    if (sw < width) sw = width;
    if (sh < height) sh = height;
    rc = img_resize(&src, sw, sh, &scaled);
    /* Portraits keep their top (where the face is), landscapes their centre. */
    int top = src.height * width > src.width * height ? 0 : (sh - height) / 2;
    if (rc == 0) rc = img_crop(&scaled, (sw - width) / 2, top, width, height, &cropped);
    if (rc == 0) rc = img_encode_jpeg(&cropped, PREPARED_QUALITY, out, out_len);
    img_free(&src);
    img_free(&scaled);
    img_free(&cropped);
    return rc;
}

static int write_file(const char *path, const uint8_t *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return base_error_set(BASE_ERR_IO, "cannot create %s", path);
    size_t w = fwrite(data, 1, len, f);
    int c = fclose(f);
    if (w != len || c != 0) return base_error_set(BASE_ERR_IO, "writing %s failed", path);
    return 0;
}

/* "sample1.jpg" with --size 1920x1080 -> "sample1-1920x1080.jpg". */
static void prepared_name(const char *path, int width, int height, char *out, size_t cap)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    int stem = dot ? (int)(dot - base) : (int)strlen(base);
    snprintf(out, cap, "%.*s-%dx%d.jpg", stem, base, width, height);
}

static int parse_stages(const char *text, unsigned *stages)
{
    /* strtok_r skips empty items: "" or "detect," would silently time fewer stages. */
    size_t len = strlen(text);
    if (len == 0 || len >= 256 || text[0] == ',' || text[len - 1] == ',' || strstr(text, ",,"))
        return -1;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", text);
    unsigned s = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (strcmp(t, "detect") == 0)
            s |= FACE_STAGE_DETECT;
        else if (strcmp(t, "landmarks") == 0)
            s |= FACE_STAGE_LANDMARKS;
        else if (strcmp(t, "embed") == 0)
            s |= FACE_STAGE_EMBED;
        else if (strcmp(t, "attributes") == 0)
            s |= FACE_STAGE_ATTRIBUTES;
        else if (strcmp(t, "liveness") == 0)
            s |= FACE_STAGE_LIVENESS;
        else if (strcmp(t, "all") == 0)
            s |= FACE_STAGE_ALL;
        else
            return -1;
    }
    *stages = s;
    return 0;
}

static int parse_choice(const char *name, const char *const *names, const int *values, int n,
                        int *out)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = values[i];
            return 0;
        }
    }
    return -1;
}

int cli_bench_pipeline_main(int argc, char **argv)
{
    static const struct option options[] = {
        {"runs", required_argument, NULL, 'r'},
        {"warmup", required_argument, NULL, 'w'},
        {"threads", required_argument, NULL, 't'},
        {"stages", required_argument, NULL, 's'},
        {"models", required_argument, NULL, 'm'},
        {"detector", required_argument, NULL, 'd'},
        {"embedder", required_argument, NULL, 'e'},
        {"size", required_argument, NULL, 'z'},
        {"save", required_argument, NULL, 'S'},
        {"age-model", required_argument, NULL, 'a'},
        {"label", required_argument, NULL, 'L'},
        {"batch", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const char *const age_names[] = {"default", "faceres", "gear", "ssrnet", "faceapi"};
    static const int age_values[] = {FACE_AGE_MODEL_DEFAULT, FACE_AGE_MODEL_FACERES,
                                     FACE_AGE_MODEL_GEAR, FACE_AGE_MODEL_SSRNET,
                                     FACE_AGE_MODEL_FACEAPI};
    bench_options o = {.label = "default",
                       .runs = 20,
                       .warmup = 3,
                       .threads = {1, 2},
                       .n_threads = 2,
                       .face = {.stages = FACE_STAGE_ALL},
                       .models_dir = "models",
                       .batch = 8};
    int c, longindex = 0, v;
    optind = 0;
    while ((c = getopt_long(argc, argv, "h", options, &longindex)) != -1) {
        switch (c) {
        case 'r':
            if (cli_parse_int_list(optarg, 1, 100000, &o.runs, 1) != 1) goto bad_value;
            break;
        case 'w':
            if (cli_parse_int_list(optarg, 0, 100000, &o.warmup, 1) != 1) goto bad_value;
            break;
        case 't':
            o.n_threads = cli_parse_int_list(optarg, 1, MAX_WORKERS, o.threads, MAX_THREAD_LIST);
            if (o.n_threads < 0) goto bad_value;
            break;
        case 's':
            if (parse_stages(optarg, &o.face.stages) != 0) goto bad_value;
            break;
        case 'm': o.models_dir = optarg; break;
        case 'd':
            if (face_detector_parse(optarg, &o.face.detector) != 0) goto bad_value;
            break;
        case 'e':
            if (face_embedder_parse(optarg, &o.face.embedder) != 0) goto bad_value;
            break;
        case 'z':
            if (sscanf(optarg, "%dx%d", &o.width, &o.height) != 2 || o.width < 16 ||
                o.height < 16 || o.width > 16384 || o.height > 16384)
                goto bad_value;
            break;
        case 'S': o.save_dir = optarg; break;
        case 'L': o.label = optarg; break;
        case 'b':
            if (cli_parse_int_list(optarg, 1, 256, &o.batch, 1) != 1) goto bad_value;
            break;
        case 'a':
            if (parse_choice(optarg, age_names, age_values, 5, &v) != 0) goto bad_value;
            o.age_model = (face_age_model)v;
            break;
        case 'h': usage(stdout); return CLI_EXIT_OK;
        default: usage(stderr); return CLI_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }

    face_models_options mo = {.models_dir = o.models_dir,
                              .load = o.face.stages ? o.face.stages : FACE_STAGE_DETECT,
                              .embedder = o.face.embedder,
                              .detector = o.face.detector,
                              .age_model = o.age_model};
    face_models *models = NULL;
    base_error_clear();
    int rc = face_models_load(&mo, &models);
    if (rc != 0) {
        fprintf(stderr, "vultus bench pipeline: models from %s: %s\n", o.models_dir,
                base_error_text(rc));
        return CLI_EXIT_FAILURE;
    }
    fprintf(stderr,
            "bench pipeline: config %s: stages 0x%x, embedder %s, age model %d, %d warm-up + %d "
            "timed runs per worker\n",
            o.label, o.face.stages, face_embedder_id(o.face.embedder), (int)o.age_model, o.warmup,
            o.runs);

    int status = CLI_EXIT_OK;
    for (int i = optind; i < argc; i++) {
        const char *path = argv[i];
        char *data = NULL;
        size_t len = 0;
        base_error_clear();
        rc = base_file_read(path, MAX_IMAGE_BYTES, &data, &len);
        if (rc != 0) {
            fprintf(stderr, "vultus bench pipeline: %s: %s\n", path, base_error_text(rc));
            status = CLI_EXIT_FAILURE;
            continue;
        }
        const uint8_t *bytes = (const uint8_t *)data;
        uint8_t *prepared = NULL;
        char name[512];
        const char *base = strrchr(path, '/');
        snprintf(name, sizeof name, "%s", base ? base + 1 : path);
        int width = 0, height = 0;
        if (o.width > 0) {
            rc = prepare_image(bytes, len, o.width, o.height, &prepared, &len);
            if (rc != 0) {
                fprintf(stderr, "vultus bench pipeline: %s: preparing %dx%d: %s\n", path,
                        o.width, o.height, base_error_text(rc));
                free(data);
                status = CLI_EXIT_FAILURE;
                continue;
            }
            bytes = prepared;
            prepared_name(path, o.width, o.height, name, sizeof name);
            width = o.width;
            height = o.height;
            if (o.save_dir) {
                char out[4096];
                snprintf(out, sizeof out, "%s/%s", o.save_dir, name);
                if (write_file(out, prepared, len) != 0) {
                    fprintf(stderr, "vultus bench pipeline: %s\n", base_error_message());
                    status = CLI_EXIT_FAILURE;
                } else {
                    fprintf(stderr, "bench pipeline: wrote %s\n", out);
                }
            }
        } else {
            img_image probe = {0};
            img_decode_info info;
            if (img_decode(bytes, len, NULL, &probe, &info) == 0) {
                width = probe.width;
                height = probe.height;
            }
            img_free(&probe);
        }
        for (int t = 0; t < o.n_threads; t++) {
            fprintf(stderr, "bench pipeline: %s, %d thread%s\n", name, o.threads[t],
                    o.threads[t] > 1 ? "s" : "");
            if (bench_image(models, &o, name, bytes, len, width, height, o.threads[t]) != 0)
                status = CLI_EXIT_FAILURE;
        }
        free(prepared);
        free(data);
    }
    face_models_destroy(models);
    return status;

bad_value:
    fprintf(stderr, "vultus bench pipeline: bad value '%s' for --%s\n", optarg,
            options[longindex].name);
    return CLI_EXIT_USAGE;
}
