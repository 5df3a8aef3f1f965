/*
 * Face detection with BlazeFace (MediaPipe's back-camera model, 256x256): anchors, box and
 * keypoint decoding, sigmoid scores and weighted NMS as MediaPipe does it; once over the whole
 * image letterboxed into 256x256 (single), then over overlapping 256x256 tiles of a pyramid
 * of scales for photos with many small faces (tiled), or the pyramid only when the single
 * pass did not find a portrait (adaptive, the default). And face-api's SSD-MobileNetV1 once
 * over the whole image (ssd.c builds the network).
 */
#include "face/face_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The default detector, chosen by the WIDER numbers within the latency budget (README). */
#define DEFAULT_DETECTOR FACE_DETECTOR_BLAZEFACE_ADAPTIVE

face_detector face_detector_resolve(face_detector d)
{
    return d == FACE_DETECTOR_DEFAULT ? DEFAULT_DETECTOR : d;
}

/*
 * The shorter side face_analyze_bytes() may decode a JPEG down to for detector d, given the
 * side the later stages want (`side`; 0: full size). The tiled detector looks at the image at
 * full resolution; the adaptive one at up to ADAPTIVE_MIN_SIDE pixels on the shorter side,
 * which keeps photos of up to 1080 lines whole (WIDER's are 1024 px) and bounds the pyramid's
 * cost on larger ones: there the default minimum face size counts pixels of the reduced image
 * (20 px of a 4000x3000 photo decoded at 1/4 are 80 px of the original). A min_face_size the
 * caller sets counts full-size pixels on every path: face_analyze_prepare_bytes scales it to
 * the reduced image and filters the boxes again at full size.
 */
#define ADAPTIVE_MIN_SIDE 540

int face_detect_decode_side(face_detector d, int side)
{
    switch (face_detector_resolve(d)) {
    case FACE_DETECTOR_BLAZEFACE_TILED: return 0;
    case FACE_DETECTOR_BLAZEFACE_ADAPTIVE:
        return side == 0 || side >= ADAPTIVE_MIN_SIDE ? side : ADAPTIVE_MIN_SIDE;
    /* the SSD's 512-px input, not enlarged */
    case FACE_DETECTOR_SSD_MOBILENET:
        return side == 0 || side >= FACE_SSD_SIZE ? side : FACE_SSD_SIZE;
    default: return side;
    }
}

/* MediaPipe's face detection graph: IoU above which detections are merged. */
#define NMS_IOU 0.3f
/* Default score threshold: MediaPipe's 0.5. On the WIDER subset (easy faces, single pass)
 * 0.5 keeps 0.65 recall at 0.71 precision, 0.6 0.59 at 0.83 and 0.4 0.69 at 0.57; on the
 * group fixtures every face scoring 0.4-0.6 is a real (turned or half-hidden) face. */
#define DEFAULT_MIN_SCORE 0.5f
/* Default minimum face size (face_options.min_face_size 0), pixels of the detector's image. */
#define DEFAULT_MIN_FACE FACE_MIN_FACE_DEFAULT
/* Input padding outside the image (in the model's [-1, 1] range). */
#define PAD_VALUE 0.0f

/*
 * SSD anchors of the 256x256 model: a 16x16 grid (stride 16) with 2 anchors per cell, then an
 * 8x8 grid (stride 32) with 6 per cell: 512 + 384 = 896. All anchors have unit size (MediaPipe's
 * fixed_anchor_size), so only the centres matter; in input pixels.
 */
void face_blazeface_anchors(float anchors[896][2])
{
    static const int strides[2] = {16, 32}, per_cell[2] = {2, 6};
    int k = 0;
    for (int level = 0; level < 2; level++) {
        int grid = FACE_BLAZEFACE_SIZE / strides[level];
        for (int y = 0; y < grid; y++)
            for (int x = 0; x < grid; x++)
                for (int a = 0; a < per_cell[level]; a++) {
                    anchors[k][0] = ((float)x + 0.5f) * (float)strides[level];
                    anchors[k][1] = ((float)y + 0.5f) * (float)strides[level];
                    k++;
                }
    }
}

/* The model's four outputs, found by shape: scores and regressors for each anchor level. */
typedef struct blazeface_outputs {
    const float *score[2]; /* [B, 512 | 384, 1] logits */
    const float *reg[2];   /* [B, 512 | 384, 16]: dx, dy, w, h, then 6 keypoints (dx, dy) */
} blazeface_outputs;

static int find_outputs(const nn_context *nc, const nn_model *m, blazeface_outputs *o)
{
    memset(o, 0, sizeof *o);
    int n = nn_model_output_count(m);
    for (int i = 0; i < n; i++) {
        nn_io_info info;
        const float *data = nn_context_output(nc, i, &info);
        if (info.rank != 3) continue;
        int level = info.dim[1] == 512 ? 0 : info.dim[1] == 384 ? 1 : -1;
        if (level < 0) continue;
        if (info.dim[2] == 1) o->score[level] = data;
        if (info.dim[2] == 16) o->reg[level] = data;
    }
    if (!o->score[0] || !o->score[1] || !o->reg[0] || !o->reg[1])
        return base_error_set(BASE_ERR_FORMAT, "blazeface: unexpected output shapes");
    return 0;
}

/* A growing array of boxes. */
typedef struct box_list {
    face_box *v;
    int n, cap;
} box_list;

static int box_push(box_list *l, const face_box *b)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        if (cap > 1 << 20) return base_error_set(BASE_ERR_LIMIT, "too many detections");
        face_box *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return base_error_set(BASE_ERR_NOMEM, "detections");
        l->v = v, l->cap = cap;
    }
    l->v[l->n++] = *b;
    return 0;
}

/*
 * A tile: the 256x256 window at (tx, ty) of a scaled copy of the image (`level`, whose pixel
 * (u, v) is image pixel (u * sx, v * sy)). `edges` marks the tile sides that are inside the
 * image (1 left, 2 top, 4 right, 8 bottom): detections touching them are cut faces that a
 * neighbouring tile sees whole, so they are dropped; `max_size` drops faces too big for the
 * level (a coarser level finds them).
 */
typedef struct tile {
    int tx, ty;
    unsigned edges;
    float max_size;
    float min_score; /* 0: the caller's */
} tile;

static void fill_tile(const img_image *level, const tile *t, float *dst)
{
    const int S = FACE_BLAZEFACE_SIZE;
    for (int v = 0; v < S; v++) {
        int y = t->ty + v;
        float *row = dst + (size_t)v * S * 3;
        if (y < 0 || y >= level->height) {
            for (int i = 0; i < S * 3; i++)
                row[i] = PAD_VALUE;
            continue;
        }
        const uint8_t *src = level->data + (size_t)y * level->width * 3;
        for (int u = 0; u < S; u++) {
            int x = t->tx + u;
            if (x < 0 || x >= level->width) {
                row[3 * u] = row[3 * u + 1] = row[3 * u + 2] = PAD_VALUE;
            } else {
                /* [0, 255] -> [-1, 1] as MediaPipe feeds it */
                row[3 * u] = (float)src[3 * x] * (2.0f / 255.0f) - 1.0f;
                row[3 * u + 1] = (float)src[3 * x + 1] * (2.0f / 255.0f) - 1.0f;
                row[3 * u + 2] = (float)src[3 * x + 2] * (2.0f / 255.0f) - 1.0f;
            }
        }
    }
}

/* Decodes batch element b of the last run for tile t into image coordinates. */
static int decode_tile(const face_models *m, const blazeface_outputs *o, int b, const tile *t,
                       float sx, float sy, float min_score, box_list *out)
{
    const int S = FACE_BLAZEFACE_SIZE;
    float min_logit = logf(min_score / (1.0f - min_score));
    int base = 0;
    for (int level = 0; level < 2; level++) {
        int count = level == 0 ? 512 : 384;
        const float *score = o->score[level] + (size_t)b * count;
        const float *reg = o->reg[level] + (size_t)b * count * 16;
        for (int i = 0; i < count; i++) {
            float logit = score[i];
            if (!(logit >= min_logit)) continue;
            if (t->min_score > 0 && 1.0f / (1.0f + expf(-logit)) < t->min_score) continue;
            const float *r = reg + (size_t)i * 16;
            const float *a = m->anchors[base + i];
            float cx = a[0] + r[0], cy = a[1] + r[1], w = r[2], h = r[3];
            if (!(w > 0 && h > 0)) continue;
            float x0 = cx - 0.5f * w, y0 = cy - 0.5f * h, x1 = cx + 0.5f * w, y1 = cy + 0.5f * h;
            /* cut by a tile side inside the image, or too big for this level */
            const float margin = 2.0f;
            if (((t->edges & 1) && x0 < margin) || ((t->edges & 2) && y0 < margin) ||
                ((t->edges & 4) && x1 > S - margin) || ((t->edges & 8) && y1 > S - margin))
                continue;
            if (t->max_size > 0 && fmaxf(w, h) > t->max_size) continue;
            if (logit > 80) logit = 80;
            face_box box;
            box.score = 1.0f / (1.0f + expf(-logit));
            box.x = (x0 + (float)t->tx) * sx;
            box.y = (y0 + (float)t->ty) * sy;
            box.w = w * sx;
            box.h = h * sy;
            for (int k = 0; k < 6; k++) {
                box.keypoints[k].x = (a[0] + r[4 + 2 * k] + (float)t->tx) * sx;
                box.keypoints[k].y = (a[1] + r[5 + 2 * k] + (float)t->ty) * sy;
            }
            int rc = box_push(out, &box);
            if (rc) return rc;
        }
        base += count;
    }
    return 0;
}

/* Runs the tiles of one level in batches and collects their detections. */
static int run_tiles(face_context *ctx, const img_image *level, float sx, float sy,
                     const tile *tiles, int n_tiles, float min_score, box_list *out)
{
    nn_context *nc = ctx->ctx[FM_BLAZEFACE];
    const nn_model *m = ctx->models->model[FM_BLAZEFACE];
    const size_t per = (size_t)FACE_BLAZEFACE_SIZE * FACE_BLAZEFACE_SIZE * 3;
    float *in = nn_context_input(nc, 0);
    for (int first = 0; first < n_tiles; first += 4) {
        int batch = n_tiles - first < 4 ? n_tiles - first : 4;
        for (int b = 0; b < batch; b++)
            fill_tile(level, &tiles[first + b], in + per * (size_t)b);
        int rc = nn_context_run(nc, batch);
        if (rc) return rc;
        blazeface_outputs o;
        rc = find_outputs(nc, m, &o);
        if (rc) return rc;
        for (int b = 0; b < batch; b++) {
            rc = decode_tile(ctx->models, &o, b, &tiles[first + b], sx, sy, min_score, out);
            if (rc) return rc;
        }
    }
    return 0;
}

/* Resizes the image so its longer side is `side` pixels (never enlarging past 2x). */
static int make_level(const img_image *image, float scale, img_image *level, float *sx, float *sy)
{
    int w = (int)lroundf((float)image->width * scale),
        h = (int)lroundf((float)image->height * scale);
    if (w < 1) w = 1;
    if (h < 1) h = 1;
    int rc = img_resize(image, w, h, level);
    if (rc) return rc;
    *sx = (float)image->width / (float)w;
    *sy = (float)image->height / (float)h;
    return 0;
}

/*
 * The whole image letterboxed (centred, aspect kept) into one 256x256 input. A small image
 * (at most SMALL_IMAGE pixels) may be a face crop whose face overflows the frame, which
 * BlazeFace misses (it was trained on faces inside the picture); for those a second pass
 * sees the image at half size in the middle of a padded input, and NMS merges the two.
 */
#define SMALL_IMAGE 400

static int detect_single(face_context *ctx, const img_image *image, float min_score, box_list *out)
{
    const int S = FACE_BLAZEFACE_SIZE;
    int side = image->width > image->height ? image->width : image->height;
    int passes = side <= SMALL_IMAGE ? 2 : 1;
    int rc = 0;
    for (int pass = 0; pass < passes && !rc; pass++) {
        float scale = (float)S / (float)side * (pass ? 0.5f : 1.0f);
        img_image level = {0};
        float sx, sy;
        rc = make_level(image, scale, &level, &sx, &sy);
        if (rc) return rc;
        tile t = {.tx = -(S - level.width) / 2, .ty = -(S - level.height) / 2};
        rc = run_tiles(ctx, &level, sx, sy, &t, 1, min_score, out);
        img_free(&level);
    }
    return rc;
}

/* Tiles of one pyramid level: side 256, overlapping by TILE_OVERLAP, covering the image. */
#define TILE_OVERLAP 96
#define MAX_TILES 4096

static int level_tiles(int w, int h, float max_size, float min_score, tile **tiles, int *n)
{
    const int S = FACE_BLAZEFACE_SIZE, stride = S - TILE_OVERLAP;
    int nx = w <= S ? 1 : (w - S + stride - 1) / stride + 1;
    int ny = h <= S ? 1 : (h - S + stride - 1) / stride + 1;
    if ((long)nx * ny > MAX_TILES)
        return base_error_set(BASE_ERR_LIMIT, "tiled detector: %d x %d tiles", nx, ny);
    tile *t = malloc((size_t)nx * ny * sizeof *t);
    if (!t) return base_error_set(BASE_ERR_NOMEM, "tiles");
    int k = 0;
    for (int j = 0; j < ny; j++) {
        for (int i = 0; i < nx; i++) {
            tile *c = &t[k++];
            /* spread the tiles evenly so the last one ends at the image edge */
            c->tx =
                nx == 1 ? -(S - w) / 2 : (int)lroundf((float)i * (float)(w - S) / (float)(nx - 1));
            c->ty =
                ny == 1 ? -(S - h) / 2 : (int)lroundf((float)j * (float)(h - S) / (float)(ny - 1));
            c->edges = (i > 0 ? 1u : 0u) | (j > 0 ? 2u : 0u) | (i < nx - 1 ? 4u : 0u) |
                       (j < ny - 1 ? 8u : 0u);
            c->max_size = max_size;
            c->min_score = min_score;
        }
    }
    *tiles = t;
    *n = k;
    return 0;
}

/*
 * The pyramid: the coarsest level is the letterboxed image (finds the big faces); the finest
 * level is the scale where a face of min_face_size pixels is TILED_MIN_FACE input pixels, at
 * most TILED_MAX_SCALE; the levels in between are TILED_STEP apart, down to 1.5x the coarsest.
 * Levels other than the coarsest keep only faces smaller than the tile overlap (bigger ones
 * are found whole one level up), and only those scoring TILE_SCORE_MARGIN above the
 * threshold: enlarged backgrounds give BlazeFace false faces scoring 0.5-0.7 (1 to 9 per
 * photo on the fixtures at 0.5).
 *
 * Chosen on the WIDER subset (eval wider: detections down to 0.05; AP easy / medium, and
 * BlazeFace runs per image): the cheapest configuration tried that meets the targets (0.80 /
 * 0.70) on the first 150 images of gt.txt, checked on the other 150. Finest face 12 px, steps
 * of 1.5 (levels 0.6 and 0.4 of a 1024-px photo for 20-px faces): 0.801 / 0.718 on the first
 * half, 0.806 / 0.731 on the second, 18.2 runs. Tried: 16 px and steps of 2 (the previous
 * configuration; 0.8 and 0.4) 0.800 / 0.725 at 26.4 runs; 12 px and 1.41 0.803 / 0.723 at
 * 21.4; 11.3 px and 2 0.796 / 0.714 at 13.5; 10 px and 1.5 (0.5 only) 0.800 / 0.699 at 10.0;
 * 12 px and 1.5 with an overlap of 64 0.796 / 0.709 at 14.2 (first half each). Whole subset:
 * 0.803 / 0.724 / 0.461 (hard); with fit_scale() below 0.805 / 0.727 / 0.463 at 17.1 runs.
 * Without the score margin AP rises by 0.003 to 0.01 (tile detections scoring 0.05 to 0.25);
 * it stays, for the default threshold's sake.
 */
#define TILE_SCORE_MARGIN 0.2f
#define TILED_MIN_FACE 12.0f
#define TILED_MAX_SCALE 1.0f
#define TILED_STEP 1.5f

/* Tiles level_tiles() lays over a w x h level. */
static int count_tiles(int w, int h)
{
    const int S = FACE_BLAZEFACE_SIZE, stride = S - TILE_OVERLAP;
    int nx = w <= S ? 1 : (w - S + stride - 1) / stride + 1;
    int ny = h <= S ? 1 : (h - S + stride - 1) / stride + 1;
    return nx * ny;
}

/*
 * A level's scale fitted to the tile grid: the largest scale in [s / LEVEL_FIT, s] that needs
 * the fewest tiles (a 1024x683 photo's 0.4 level is 410x273, two rows of tiles for 17 lines;
 * at 0.375 it is one row). Not for the finest level, whose scale sets the smallest face found:
 * fitted too (14.8 -> 10.8 runs per WIDER image) it cost 0.007 AP easy on the first half;
 * the others alone (13.9 runs) 0.001, and gained 0.005 on the second half.
 */
#define LEVEL_FIT 1.1f

static float fit_scale(const img_image *image, float s)
{
    float best_s = s, lo = s / LEVEL_FIT;
    int best =
        count_tiles((int)lroundf((float)image->width * s), (int)lroundf((float)image->height * s));
    for (int i = 1; i <= 40; i++) {
        float t = s - (s - lo) * (float)i / 40.0f;
        int n = count_tiles((int)lroundf((float)image->width * t),
                            (int)lroundf((float)image->height * t));
        if (n < best) best = n, best_s = t;
    }
    return best_s;
}

/* The pyramid's levels below the coarsest (detect_single does that one). */
static int detect_levels(face_context *ctx, const img_image *image, float min_score,
                         int min_face_size, box_list *out)
{
    const int S = FACE_BLAZEFACE_SIZE;
    float tile_score = fminf(0.9f, min_score + TILE_SCORE_MARGIN);
    float coarse = (float)S / (float)(image->width > image->height ? image->width : image->height);
    float finest = TILED_MIN_FACE / (float)(min_face_size > 0 ? min_face_size : 20);
    if (finest > TILED_MAX_SCALE) finest = TILED_MAX_SCALE;
    /* no face of the minimum size fits (a 1x4000 strip): nothing to search */
    if ((image->width < image->height ? image->width : image->height) < min_face_size) return 0;
    for (float s = finest; s > coarse * 1.5f; s /= TILED_STEP) {
        img_image level = {0};
        float sx, sy;
        int rc = make_level(image, s < finest ? fit_scale(image, s) : s, &level, &sx, &sy);
        if (rc) return rc;
        tile *tiles = NULL;
        int n_tiles = 0;
        rc = level_tiles(level.width, level.height, (float)TILE_OVERLAP, tile_score, &tiles,
                         &n_tiles);
        if (!rc) rc = run_tiles(ctx, &level, sx, sy, tiles, n_tiles, min_score, out);
        free(tiles);
        img_free(&level);
        if (rc) return rc;
    }
    return 0;
}

static int detect_tiled(face_context *ctx, const img_image *image, float min_score,
                        int min_face_size, box_list *out)
{
    int rc = detect_single(ctx, image, min_score, out);
    return rc ? rc : detect_levels(ctx, image, min_score, min_face_size, out);
}

/*
 * The adaptive detector (the default): the single pass, then the rest of the pyramid unless
 * the photo is a portrait: the single pass found exactly one face scoring at least
 * PORTRAIT_MIN_SCORE (after NMS and the size and half-face filters), and its box spans
 * PORTRAIT_FRACTION of the image's shorter side. A portrait's background rarely holds faces
 * worth the pyramid's cost (the 1080p one-face photo of the pipeline benchmark: 1 BlazeFace
 * run instead of about 20). Chosen as the tiled detector was (the smallest fraction whose
 * early stops cost at most 0.001 AP on the first 150 WIDER images, checked on the other 150;
 * simulated from the single pass's and the pyramid's detections): one face and 0.2: AP easy /
 * medium 0.802 / 0.720 on the first half (the pyramid everywhere: 0.801 / 0.718), 0.804 /
 * 0.730 on the second (0.806 / 0.731), 48 of the 300 photos stop early. One face and 0.15
 * lost 0.003 on the first half; any face of at least 0.4 (the previous rule) stops only 21.
 * The score is the default threshold's: what stops the search is a face shown by default.
 */
#define PORTRAIT_FRACTION 0.2f
#define PORTRAIT_MIN_SCORE DEFAULT_MIN_SCORE

static int inside_better(const face_box *kept, int n, const face_box *b);

static int is_portrait(const img_image *image, const box_list *found, int min_face_size)
{
    face_box *v = malloc((size_t)(found->n ? found->n : 1) * sizeof *v);
    if (!v) return 0; /* not a portrait: the pyramid runs, nothing is lost */
    int n = 0;
    for (int i = 0; i < found->n; i++)
        if (found->v[i].score >= PORTRAIT_MIN_SCORE) v[n++] = found->v[i];
    int kept = face_weighted_nms(v, n, NMS_IOU), faces = 0;
    face_box face = {0};
    for (int i = 0; i < kept; i++) {
        if (fminf(v[i].w, v[i].h) < (float)min_face_size || inside_better(v, faces, &v[i]))
            continue;
        v[faces++] = v[i];
        face = v[i];
    }
    free(v);
    int short_side = image->width < image->height ? image->width : image->height;
    return faces == 1 && fminf(face.w, face.h) >= PORTRAIT_FRACTION * (float)short_side;
}

/*
 * The adaptive detector's pyramid costs what a photo of ADAPTIVE_MAX_SIDE lines costs at most
 * (about 45 BlazeFace runs): on a larger image min_face_size grows in proportion, as it does
 * for a JPEG that face_analyze_bytes decodes at a reduced scale (face_detect_decode_side), so
 * a 40 MP PNG is not searched for 20-px faces at 1.5 s a megapixel.
 */
#define ADAPTIVE_MAX_SIDE 1080

/* The adaptive pyramid's smallest face on a w x h image for a search down to min_face_size. */
static int adaptive_min_size(int w, int h, int min_face_size)
{
    int short_side = w < h ? w : h;
    if (short_side > ADAPTIVE_MAX_SIDE)
        min_face_size = (int)ceilf((float)min_face_size * (float)short_side / ADAPTIVE_MAX_SIDE);
    return min_face_size;
}

static int detect_adaptive(face_context *ctx, const img_image *image, float min_score,
                           int min_face_size, box_list *out)
{
    int rc = detect_single(ctx, image, min_score, out);
    if (rc || is_portrait(image, out, min_face_size)) return rc;
    min_face_size = adaptive_min_size(image->width, image->height, min_face_size);
    return detect_levels(ctx, image, min_score, min_face_size, out);
}

/*
 * face-api's SSD-MobileNetV1 on the whole image, as face-api feeds it: padded at the right or
 * bottom to a square (black), resized to 512x512, pixels to [-1, 1]. Its boxes follow WIDER
 * FACE's annotation (it was trained on it); they are turned into BlazeFace's convention (the
 * inverse of what analyze.c does to BlazeFace boxes), so every detector's boxes come out of
 * face_analyze the same way. It has no keypoints: they are placed where BlazeFace puts them
 * on an upright frontal face (SSD_KEYPOINTS), which the landmark stage refines.
 */
static const float SSD_KEYPOINTS[6][2] = {{0.31f, 0.33f}, {0.69f, 0.33f}, {0.50f, 0.55f},
                                          {0.50f, 0.76f}, {0.08f, 0.40f}, {0.92f, 0.40f}};

static int detect_ssd(face_context *ctx, const img_image *image, float min_score, box_list *out)
{
    const int S = FACE_SSD_SIZE;
    nn_context *nc = ctx->ctx[FM_SSD_MOBILENET];
    const nn_model *m = ctx->models->model[FM_SSD_MOBILENET];
    const float(*anchors)[4] = (const float(*)[4])ctx->models->ssd_anchors;
    if (!nc || !anchors)
        return base_error_set(BASE_ERR_INVALID, "the SSD-MobileNet detector is not loaded");
    int side = image->width > image->height ? image->width : image->height;
    img_image level = {0};
    float sx, sy;
    int rc = make_level(image, (float)S / (float)side, &level, &sx, &sy);
    if (rc) return rc;
    float *in = nn_context_input(nc, 0);
    for (int v = 0; v < S; v++) {
        float *row = in + (size_t)v * S * 3;
        for (int u = 0; u < S; u++) {
            float *px = row + 3 * u;
            if (v >= level.height || u >= level.width) {
                px[0] = px[1] = px[2] = -1.0f; /* black */
                continue;
            }
            const uint8_t *src = level.data + ((size_t)v * level.width + u) * 3;
            for (int c = 0; c < 3; c++)
                px[c] = (float)src[c] / 127.5f - 1.0f;
        }
    }
    img_free(&level);
    rc = nn_context_run(nc, 1);
    if (rc) return rc;
    int i_boxes = nn_model_output_index(m, "boxes"),
        i_classes = nn_model_output_index(m, "classes");
    if (i_boxes < 0 || i_classes < 0)
        return base_error_set(BASE_ERR_FORMAT, "ssd: outputs missing");
    const float *enc = nn_context_output(nc, i_boxes, NULL);
    const float *cls = nn_context_output(nc, i_classes, NULL);
    float min_logit = logf(min_score / (1.0f - min_score));
    for (int i = 0; i < FACE_SSD_ANCHORS; i++) {
        float logit = cls[3 * i + 1];
        if (!(logit >= min_logit)) continue;
        float r[4];
        face_ssd_decode_box(anchors[i], enc + 4 * i, r);
        /* to input pixels, clipped to the square as face-api does, then to image pixels */
        float y0 = fmaxf(r[0], 0.0f) * (float)S * sy, x0 = fmaxf(r[1], 0.0f) * (float)S * sx;
        float y1 = fminf(r[2], 1.0f) * (float)S * sy, x1 = fminf(r[3], 1.0f) * (float)S * sx;
        if (!(x1 > x0 && y1 > y0)) continue;
        float w = x1 - x0, h = y1 - y0;
        face_box b;
        b.score = 1.0f / (1.0f + expf(-fminf(logit, 80.0f)));
        b.w = w / 0.9f;
        b.h = h / 1.2f;
        b.x = x0 + 0.5f * w - 0.5f * b.w;
        b.y = y0 + 0.5f * h + 0.06f * b.h - 0.5f * b.h;
        for (int k = 0; k < 6; k++) {
            b.keypoints[k].x = b.x + SSD_KEYPOINTS[k][0] * b.w;
            b.keypoints[k].y = b.y + SSD_KEYPOINTS[k][1] * b.h;
        }
        rc = box_push(out, &b);
        if (rc) return rc;
    }
    return 0;
}

/*
 * Whether most of b (more than INSIDE_FRACTION of its area) lies inside one of the better-
 * scored boxes kept so far. On photos filled by one face, BlazeFace also reports half faces
 * (an eye and the nose) that overlap the whole face by less than the NMS threshold; two real
 * faces are never that much inside one another.
 */
#define INSIDE_FRACTION 0.6f

static int inside_better(const face_box *kept, int n, const face_box *b)
{
    float area = b->w * b->h;
    if (!(area > 0)) return 1;
    for (int i = 0; i < n; i++) {
        const face_box *a = &kept[i];
        float x0 = fmaxf(a->x, b->x), y0 = fmaxf(a->y, b->y);
        float x1 = fminf(a->x + a->w, b->x + b->w), y1 = fminf(a->y + a->h, b->y + b->h);
        if (x1 > x0 && y1 > y0 && (x1 - x0) * (y1 - y0) > INSIDE_FRACTION * area) return 1;
    }
    return 0;
}

static int by_area_desc(const void *pa, const void *pb)
{
    const face_box *a = pa, *b = pb;
    float aa = a->w * a->h, ab = b->w * b->h;
    return (aa < ab) - (aa > ab);
}

/*
 * What face_detect() below searches down to, then filters at: the larger of the two. The
 * single-pass detectors (one BlazeFace pass, the SSD) have no finer level; for them it is the
 * filter, and faces some way above it may already be too small for their one look.
 */
int face_detect_min_size(const face_options *opts, int w, int h)
{
    int min_size = opts->min_face_size > 0 ? opts->min_face_size : DEFAULT_MIN_FACE;
    int search_size = min_size < DEFAULT_MIN_FACE ? min_size : DEFAULT_MIN_FACE;
    if (face_detector_resolve(opts->detector) == FACE_DETECTOR_BLAZEFACE_ADAPTIVE)
        search_size = adaptive_min_size(w, h, search_size);
    return search_size > min_size ? search_size : min_size;
}

int face_detect(face_context *ctx, const img_image *image, const face_options *opts,
                face_box **boxes, int *n)
{
    *boxes = NULL;
    *n = 0;
    if (!ctx->ctx[FM_BLAZEFACE] && opts->detector != FACE_DETECTOR_SSD_MOBILENET)
        return base_error_set(BASE_ERR_INVALID, "detector not loaded");
    if (image->channels != 3 || image->width < 1 || image->height < 1)
        return base_error_set(BASE_ERR_INVALID, "detect: need an RGB image, got %dx%dx%d",
                              image->width, image->height, image->channels);
    float min_score = opts->min_score > 0 ? opts->min_score : DEFAULT_MIN_SCORE;
    if (min_score >= 1) min_score = 0.999f;
    int min_size = opts->min_face_size > 0 ? opts->min_face_size : DEFAULT_MIN_FACE;
    int max_faces = opts->max_faces > 0 ? opts->max_faces : 100;
    /* The pyramid searches down to min_size only when that is below the default; a larger
     * min_size filters the default search's faces. A face's box is the blend of what the single
     * pass and the levels that see it measure (the single pass alone measured sample5.jpg's
     * faces 9% smaller), so pruning the levels for a larger min_size dropped faces the default
     * run reports above it (min_face_size 219 found none of its faces of 234 and 220 px). */
    int search_size = min_size < DEFAULT_MIN_FACE ? min_size : DEFAULT_MIN_FACE;

    box_list l = {0};
    int rc;
    switch (face_detector_resolve(opts->detector)) {
    case FACE_DETECTOR_BLAZEFACE_TILED:
        rc = detect_tiled(ctx, image, min_score, search_size, &l);
        break;
    case FACE_DETECTOR_SSD_MOBILENET: rc = detect_ssd(ctx, image, min_score, &l); break;
    case FACE_DETECTOR_BLAZEFACE_ADAPTIVE:
        rc = detect_adaptive(ctx, image, min_score, search_size, &l);
        break;
    default: rc = detect_single(ctx, image, min_score, &l); break;
    }
    if (rc) {
        free(l.v);
        return rc;
    }
    int kept = face_weighted_nms(l.v, l.n, NMS_IOU);
    int k = 0;
    for (int i = 0; i < kept; i++) {
        face_box b = l.v[i];
        if (fminf(b.w, b.h) < (float)min_size) continue;
        if (inside_better(l.v, k, &b)) continue;
        l.v[k++] = b;
    }
    if (k > 1)
        qsort(l.v, (size_t)k, sizeof *l.v, by_area_desc); /* l.v is NULL when nothing was found */
    if (k > max_faces) k = max_faces;
    *boxes = l.v;
    *n = k;
    return 0;
}
