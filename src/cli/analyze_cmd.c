/*
 * `vultus analyze IMAGE...` — runs the face pipeline on image files and prints one JSON line
 * per image: its size, the faces (box, score, keypoints, alignment landmarks, attributes,
 * quality, liveness, and the embedding on request) and the time of each stage. --draw writes
 * the image annotated with boxes, keypoints and a label per face. An image that cannot be
 * read or decoded gives a line with "error" (and a line on stderr); the others are still
 * processed, and the exit status is 1 at the end.
 */
#include "base/base.h"
#include "cli/cli.h"
#include "face/face.h"
#include "img/img.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IMAGE_BYTES (64u << 20)

static const char *const emotion_names[FACE_EMOTIONS] = {
    "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral",
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vultus analyze [options] IMAGE...\n"
            "\n"
            "Finds the faces in each image and prints one JSON line per image.\n"
            "\n"
            "options:\n"
            "  --stages LIST    detect,landmarks,embed,attributes,liveness,quality or all\n"
            "                   (default all; quality: pose, sharpness and quality alone)\n"
            "  --embedding      include each face's embedding vector\n"
            "  --embedder NAME  faceapi (default), faceres, mobileface, mobilefacenet\n"
            "  --detector NAME  blazeface-adaptive (the default: one pass, then the tiled\n"
            "                   pyramid unless a face fills the photo), blazeface (one pass),\n"
            "                   blazeface-tiled, or ssd-mobilenet (face-api's SSD); short\n"
            "                   forms adaptive, tiled, ssd\n"
            "  --min-score X    detection score threshold (default: the detector's)\n"
            "  --min-face N     smallest face side in pixels of the photo (default: 20\n"
            "                   pixels of the image the detector sees: a large JPEG is\n"
            "                   decoded reduced for it, so then more of the photo's);\n"
            "                   also --min-face-size N, as for vultus eval\n"
            "  --max-faces N    keep the N largest faces (default 100)\n"
            "  --draw OUT       write the annotated image to OUT (.png or .jpg); with several\n"
            "                   images, OUT-1.png, OUT-2.png, ...\n"
            "  --models DIR     the model folder (default models)\n");
}

static int parse_stages(const char *text, unsigned *out)
{
    static const struct {
        const char *name;
        unsigned bits;
    } names[] = {
        {"detect", FACE_STAGE_DETECT},
        {"landmarks", FACE_STAGE_LANDMARKS},
        {"embed", FACE_STAGE_EMBED},
        {"embedding", FACE_STAGE_EMBED},
        {"attributes", FACE_STAGE_ATTRIBUTES},
        {"liveness", FACE_STAGE_LIVENESS},
        {"quality", FACE_STAGE_QUALITY},
        {"all", FACE_STAGE_ALL},
    };
    /* strtok_r skips empty items: "" or "detect," would silently run fewer stages. */
    size_t len = strlen(text);
    if (len == 0 || text[0] == ',' || text[len - 1] == ',' || strstr(text, ",,")) return -1;
    unsigned bits = 0;
    char *copy = strdup(text), *save = NULL;
    if (!copy) return -1;
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        size_t i;
        for (i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strcmp(tok, names[i].name) == 0) break;
        if (i == sizeof names / sizeof names[0]) {
            rc = -1;
            break;
        }
        bits |= names[i].bits;
    }
    free(copy);
    *out = bits;
    return rc;
}

/* Rounds to 2 decimals so coordinates print compactly. */
static json_t *num(double v)
{
    if (!isfinite(v)) return json_null();
    return json_real(round(v * 100.0) / 100.0);
}

static json_t *point(face_point p)
{
    json_t *a = json_array();
    json_array_append_new(a, num(p.x));
    json_array_append_new(a, num(p.y));
    return a;
}

static json_t *face_json(const face_info *f, int with_embedding)
{
    json_t *o = json_object();
    json_t *box = json_array();
    json_array_append_new(box, num(f->x));
    json_array_append_new(box, num(f->y));
    json_array_append_new(box, num(f->w));
    json_array_append_new(box, num(f->h));
    json_object_set_new(o, "box", box);
    json_object_set_new(o, "score", num(f->score));
    json_t *kp = json_array();
    for (int i = 0; i < 6; i++)
        json_array_append_new(kp, point(f->keypoints[i]));
    json_object_set_new(o, "keypoints", kp);
    if (f->has_landmarks) {
        json_t *lm = json_array();
        for (int i = 0; i < 5; i++)
            json_array_append_new(lm, point(f->landmarks5[i]));
        json_object_set_new(o, "landmarks", lm);
    }
    const face_attributes *a = &f->attributes;
    if (f->has_attributes) {
        json_object_set_new(o, "age", num(a->age));
        int male = a->gender_male >= 0.5f;
        json_object_set_new(o, "gender", json_string(male ? "male" : "female"));
        json_object_set_new(o, "gender_confidence",
                            num(male ? a->gender_male : 1 - a->gender_male));
        json_t *em = json_object();
        int best = 0;
        for (int i = 0; i < FACE_EMOTIONS; i++) {
            json_object_set_new(em, emotion_names[i], num(a->emotion[i]));
            if (a->emotion[i] > a->emotion[best]) best = i;
        }
        json_object_set_new(o, "emotion", em);
        json_object_set_new(o, "dominant_emotion", json_string(emotion_names[best]));
    }
    if (f->has_quality) { /* with the attributes, or alone (--stages quality) */
        json_t *pose = json_object();
        json_object_set_new(pose, "yaw", num(a->yaw));
        json_object_set_new(pose, "pitch", num(a->pitch));
        json_object_set_new(pose, "roll", num(a->roll));
        json_object_set_new(o, "pose", pose);
        json_object_set_new(o, "quality", num(a->quality));
        json_object_set_new(o, "sharpness", num(a->sharpness));
    }
    if (f->has_liveness) {
        json_t *l = json_object();
        json_object_set_new(l, "score", num(f->liveness.score));
        json_object_set_new(l, "antispoof", num(f->liveness.antispoof));
        json_object_set_new(l, "liveness", num(f->liveness.liveness));
        json_object_set_new(o, "liveness", l);
    }
    if (f->embedding_dim > 0) {
        json_object_set_new(o, "embedding_model", json_string(f->embedding_model));
        if (with_embedding) {
            json_t *e = json_array();
            for (int i = 0; i < f->embedding_dim; i++)
                json_array_append_new(e, json_real(round(f->embedding[i] * 1e6) / 1e6));
            json_object_set_new(o, "embedding", e);
        }
    }
    return o;
}

static void print_error(const char *path, const char *what, int rc)
{
    json_t *o = json_object();
    json_object_set_new(o, "image", json_string(path));
    char msg[512];
    snprintf(msg, sizeof msg, "%s: %s", what, base_error_text(rc));
    json_object_set_new(o, "error", json_string(msg));
    cli_print_json_line(o, 8);
    /* Also for the person at the terminal, whose stdout may go to a file. */
    fprintf(stderr, "vultus analyze: %s: %s\n", path, msg);
}

/* OUT for one image; OUT-N.ext with several. */
static void draw_path(const char *out, int index, int count, char *buf, size_t len)
{
    if (count == 1) {
        snprintf(buf, len, "%s", out);
        return;
    }
    const char *dot = strrchr(out, '.');
    const char *slash = strrchr(out, '/');
    if (!dot || (slash && dot < slash)) dot = out + strlen(out);
    snprintf(buf, len, "%.*s-%d%s", (int)(dot - out), out, index + 1, dot);
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

/* Boxes in green, keypoints in red, and "age gender emotion" above each box. */
static int draw(const uint8_t *data, size_t len, const face_result *r, const char *path)
{
    static const uint8_t green[3] = {0, 220, 0}, red[3] = {230, 30, 30}, blue[3] = {40, 120, 255};
    img_image im = {0};
    int rc = img_decode(data, len, NULL, &im, NULL);
    if (rc) return rc;
    int side = im.width > im.height ? im.width : im.height;
    int thick = side / 500 + 1, dot = side / 400 + 2, text = side / 600 + 1;
    for (int i = 0; i < r->n_faces; i++) {
        const face_info *f = &r->faces[i];
        img_draw_rect(&im, (int)f->x, (int)f->y, (int)(f->x + f->w), (int)(f->y + f->h), thick,
                      green);
        for (int k = 0; k < 6; k++)
            img_draw_dot(&im, (int)f->keypoints[k].x, (int)f->keypoints[k].y, dot, red);
        if (f->has_landmarks)
            for (int k = 0; k < 5; k++)
                img_draw_dot(&im, (int)f->landmarks5[k].x, (int)f->landmarks5[k].y, dot / 2 + 1,
                             blue);
        char label[96];
        if (f->has_attributes) {
            int best = 0;
            for (int e = 1; e < FACE_EMOTIONS; e++)
                if (f->attributes.emotion[e] > f->attributes.emotion[best]) best = e;
            snprintf(label, sizeof label, "%.0f %s %s", f->attributes.age,
                     f->attributes.gender_male >= 0.5f ? "male" : "female", emotion_names[best]);
        } else {
            snprintf(label, sizeof label, "%.2f", f->score);
        }
        int ty = (int)f->y - 8 * text - thick;
        img_draw_text(&im, (int)f->x, ty < 0 ? (int)(f->y + f->h) + thick + 1 : ty, label, text,
                      green);
    }
    uint8_t *buf = NULL;
    size_t n = 0;
    rc = has_suffix(path, ".jpg") || has_suffix(path, ".jpeg") ? img_encode_jpeg(&im, 90, &buf, &n)
                                                               : img_encode_png(&im, &buf, &n);
    img_free(&im);
    if (rc) return rc;
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        free(buf);
        return base_error_set(BASE_ERR_IO, "cannot write %s", path);
    }
    size_t w = fwrite(buf, 1, n, fp);
    free(buf);
    if (fclose(fp) != 0 || w != n) return base_error_set(BASE_ERR_IO, "cannot write %s", path);
    return 0;
}

int cli_analyze_main(int argc, char **argv)
{
    static const struct option long_opts[] = {
        {"stages", required_argument, NULL, 's'},
        {"embedding", no_argument, NULL, 'e'},
        {"embedder", required_argument, NULL, 'E'},
        {"detector", required_argument, NULL, 'd'},
        {"min-score", required_argument, NULL, 'S'},
        {"min-face", required_argument, NULL, 'f'},
        {"min-face-size", required_argument, NULL, 'f'}, /* eval's name for it */
        {"max-faces", required_argument, NULL, 'n'},
        {"draw", required_argument, NULL, 'o'},
        {"models", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    face_options opts = {.stages = FACE_STAGE_ALL};
    face_models_options mopts = {0};
    int with_embedding = 0;
    const char *draw_out = NULL;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 's':
            if (parse_stages(optarg, &opts.stages) != 0) {
                fprintf(stderr,
                        "vultus analyze: --stages '%s': expected a comma-separated list of "
                        "detect, landmarks, embed, attributes, liveness, quality or all\n",
                        optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'e': with_embedding = 1; break;
        case 'E':
            if (face_embedder_parse(optarg, &opts.embedder) != 0) {
                fprintf(stderr, "vultus analyze: --embedder %s: unknown embedder\n", optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'd':
            if (face_detector_parse(optarg, &opts.detector) != 0) {
                fprintf(stderr, "vultus analyze: --detector %s: expected " FACE_DETECTOR_NAMES "\n",
                        optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'S':
            opts.min_score = strtof(optarg, &end);
            if (*end || !(opts.min_score > 0 && opts.min_score < 1)) {
                fprintf(stderr, "vultus analyze: --min-score %s: expected a number in (0, 1)\n",
                        optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'f':
        case 'n': {
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 100000) {
                fprintf(stderr, "vultus analyze: %s %s: expected a positive integer\n",
                        c == 'f' ? "--min-face" : "--max-faces", optarg);
                return CLI_EXIT_USAGE;
            }
            if (c == 'f')
                opts.min_face_size = (int)v;
            else
                opts.max_faces = (int)v;
            break;
        }
        case 'o':
            /* The format follows the name: anything else got PNG bytes under its name. */
            if (!has_suffix(optarg, ".png") && !has_suffix(optarg, ".jpg") &&
                !has_suffix(optarg, ".jpeg")) {
                fprintf(stderr, "vultus analyze: --draw %s: expected a .png or .jpg file name\n",
                        optarg);
                return CLI_EXIT_USAGE;
            }
            draw_out = optarg;
            break;
        case 'm':
            if (!*optarg) {
                fprintf(stderr, "vultus analyze: --models: empty value\n");
                return CLI_EXIT_USAGE;
            }
            mopts.models_dir = optarg;
            break;
        case 'h': usage(stdout); return CLI_EXIT_OK;
        default: usage(stderr); return CLI_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (with_embedding) opts.stages |= FACE_STAGE_EMBED;
    mopts.load = opts.stages ? opts.stages : FACE_STAGE_DETECT;
    mopts.embedder = opts.embedder;
    mopts.detector = opts.detector; /* SSD's weights are loaded only when asked for */

    face_models *models = NULL;
    face_context *ctx = NULL;
    int rc = face_models_load(&mopts, &models);
    if (!rc) rc = face_context_create(models, 8, &ctx);
    if (rc) {
        fprintf(stderr, "vultus analyze: %s\n", base_error_text(rc));
        face_models_destroy(models);
        return CLI_EXIT_FAILURE;
    }
    int failures = 0, n_images = argc - optind;
    for (int i = optind; i < argc; i++) {
        const char *path = argv[i];
        char *data = NULL;
        size_t len = 0;
        base_error_clear();
        rc = cli_read_file(path, MAX_IMAGE_BYTES, &data, &len);
        if (rc) {
            print_error(path, "cannot read the file", rc);
            failures++;
            continue;
        }
        face_result r;
        rc = face_analyze_bytes(ctx, (const uint8_t *)data, len, &opts, &r);
        if (rc) {
            print_error(path, "cannot analyse the image", rc);
            failures++;
            free(data);
            continue;
        }
        json_t *o = json_object();
        json_object_set_new(o, "image", json_string(path));
        json_object_set_new(o, "width", json_integer(r.width));
        json_object_set_new(o, "height", json_integer(r.height));
        json_t *faces = json_array();
        for (int k = 0; k < r.n_faces; k++)
            json_array_append_new(faces, face_json(&r.faces[k], with_embedding));
        json_object_set_new(o, "faces", faces);
        json_t *t = json_object();
        const face_timing *tm = &r.timing;
        json_object_set_new(t, "decode", num(tm->decode_ms));
        json_object_set_new(t, "detect", num(tm->detect_ms));
        json_object_set_new(t, "landmarks", num(tm->landmarks_ms));
        json_object_set_new(t, "align", num(tm->align_ms));
        json_object_set_new(t, "embed", num(tm->embed_ms));
        json_object_set_new(t, "attributes", num(tm->attributes_ms));
        json_object_set_new(t, "liveness", num(tm->liveness_ms));
        json_object_set_new(t, "total",
                            num(tm->decode_ms + tm->detect_ms + tm->landmarks_ms + tm->align_ms +
                                tm->embed_ms + tm->attributes_ms + tm->liveness_ms));
        json_object_set_new(o, "timing_ms", t);
        cli_print_json_line(o, 8);
        if (draw_out) {
            char out[4096];
            draw_path(draw_out, i - optind, n_images, out, sizeof out);
            rc = draw((const uint8_t *)data, len, &r, out);
            if (rc) {
                fprintf(stderr, "vultus analyze: --draw %s: %s\n", out, base_error_text(rc));
                failures++;
            }
        }
        face_result_free(&r);
        free(data);
    }
    face_context_destroy(ctx);
    face_models_destroy(models);
    return failures ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
}
