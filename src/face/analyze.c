/*
 * face_analyze: the stages in order (decode, detect, landmarks, align, then the per-face
 * models), each over all faces of the image at once, with the time of each stage. It is
 * prepare (this file: everything that needs the image) followed by finish (batch.c: the
 * per-face models, which need only the crops prepare made), so the service can batch the
 * second half across requests.
 */
#include "face/face_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Below this FaceMesh face probability the mesh is not trusted for alignment; BlazeFace's
 * keypoints are used instead. */
#define MESH_MIN_CONFIDENCE 0.5f

static void pending_free(struct face_pending *p)
{
    if (!p) return;
    for (int i = 0; i < p->n; i++)
        for (int k = 0; k < FM_COUNT; k++)
            img_free(&p->faces[i].crop[k]);
    free(p->faces);
    free(p);
}

void face_result_free(face_result *r)
{
    if (!r) return;
    for (int i = 0; i < r->n_faces; i++)
        img_free(&r->faces[i].aligned);
    free(r->faces);
    r->faces = NULL;
    r->n_faces = 0;
    pending_free(r->pending);
    r->pending = NULL;
}

int face_result_pending(const face_result *r)
{
    if (!r || !r->pending) return 0;
    int n = 0;
    for (int i = 0; i < r->pending->n; i++)
        n += !r->pending->faces[i].done;
    return n;
}

/*
 * The alignment crops of every face for the per-face models `stages` needs, made once per
 * model (the mirrored copy is read from the same crop) and kept for face_analyze_finish().
 * face_info.aligned keeps the 112x112 crop for thumbnails and sharpness: the embedder's own when
 * it is 112x112, otherwise the ArcFace crop when attributes are asked for.
 */
static int make_crops(face_context *ctx, const img_image *image, unsigned stages,
                      face_embedder embedder, face_result *out)
{
    const int n = out->n_faces;
    struct face_pending *p = calloc(1, sizeof *p);
    if (!p) return base_error_set(BASE_ERR_NOMEM, "analyze: crops");
    p->faces = calloc((size_t)n, sizeof *p->faces);
    if (!p->faces) {
        free(p);
        return base_error_set(BASE_ERR_NOMEM, "analyze: crops of %d faces", n);
    }
    p->stages = stages;
    p->embedder = embedder == FACE_EMBEDDER_DEFAULT ? ctx->models->embedder : embedder;
    p->n = n;
    out->pending = p;
    if (stages & FACE_STAGE_EMBED) {
        face_model_id id = face_embedder_model(p->embedder);
        if (id == FM_COUNT)
            return base_error_set(BASE_ERR_UNSUPPORTED, "embedder %s is not available",
                                  face_embedder_id(p->embedder));
        if (!ctx->ctx[id])
            return base_error_set(BASE_ERR_INVALID, "embedder %s not loaded",
                                  face_embedder_id(p->embedder));
    }
    for (int i = 0; i < n; i++) {
        face_info *f = &out->faces[i];
        face_pending_face *pf = &p->faces[i];
        /* a copy: gcc's -Wstringop-overread (at -O1 with the sanitizers) loses the size of the
         * array inside the calloc'd face_info and warns on passing it as face_point[5] */
        face_point pts[5];
        memcpy(pts, f->landmarks5, sizeof pts);
        float ex = pts[1].x - pts[0].x, ey = pts[1].y - pts[0].y;
        pf->eye_distance = sqrtf(ex * ex + ey * ey);
        for (int id = 0; id < FM_COUNT; id++) {
            if (!face_model_roles(ctx->models, (face_model_id)id, p)) continue;
            const face_crop_spec *spec = face_crop_spec_for((face_model_id)id);
            if (!spec || !ctx->ctx[id])
                return base_error_set(BASE_ERR_INVALID, "face model %d not loaded", id);
            int rc = face_crop_make(image, pts, spec, &pf->crop[id]);
            if (rc) return rc;
            if (id == (int)face_embedder_model(p->embedder) && (stages & FACE_STAGE_EMBED) &&
                spec->size == 112 && !f->aligned.data) {
                rc = img_alloc(&f->aligned, 112, 112, 3);
                if (rc) return rc;
                memcpy(f->aligned.data, pf->crop[id].data, (size_t)112 * 112 * 3);
            }
        }
        if ((stages & FACE_STAGE_QUALITY) && !f->aligned.data) {
            int rc = face_crop_make(image, pts, &face_arcface_crop, &f->aligned);
            if (rc) return rc;
        }
    }
    return 0;
}

/* Fills the output from the detections and runs landmarks, pose and the crops on `image`, in
 * whose pixel coordinates the boxes are. */
static int prepare_boxes(face_context *ctx, const img_image *image, face_box *boxes, int n,
                         unsigned stages, const face_options *opts, face_result *out)
{
    int rc = 0;
    face_mesh *meshes = NULL;
    if (n > 0) {
        out->faces = calloc((size_t)n, sizeof *out->faces);
        if (!out->faces) return base_error_set(BASE_ERR_NOMEM, "analyze: %d faces", n);
    }
    out->n_faces = n;
    for (int i = 0; i < n; i++) {
        face_info *f = &out->faces[i];
        const face_box *b = &boxes[i];
        /* BlazeFace's square box runs from the eyebrows to the chin; the box reported is
         * the usual forehead-to-chin face box (WIDER FACE's convention): measured on the
         * WIDER subset, the matched annotation is 0.9x as wide, 1.2x as tall and centred
         * 0.06 box heights higher (median over 1,268 matches). */
        f->w = b->w * 0.9f;
        f->h = b->h * 1.2f;
        f->x = b->x + 0.5f * (b->w - f->w);
        f->y = b->y + 0.5f * b->h - 0.06f * b->h - 0.5f * f->h;
        f->score = b->score;
        memcpy(f->keypoints, b->keypoints, sizeof f->keypoints);
    }
    if (n == 0) return 0;

    uint64_t t;
    if (stages & FACE_STAGE_LANDMARKS) {
        t = base_now_ns();
        if (ctx->ctx[FM_FACEMESH]) {
            meshes = malloc((size_t)n * sizeof *meshes);
            if (!meshes) return base_error_set(BASE_ERR_NOMEM, "analyze: meshes");
            rc = face_landmarks(ctx, image, boxes, n, meshes);
            if (rc) goto done;
        }
        for (int i = 0; i < n; i++) {
            face_info *f = &out->faces[i];
            if (meshes && meshes[i].confidence >= MESH_MIN_CONFIDENCE)
                face_mesh_points5(&meshes[i], f->landmarks5);
            else
                face_keypoints_points5(&boxes[i], f->landmarks5);
            f->has_landmarks = 1;
        }
        out->timing.landmarks_ms = face_ms_since(t);
    }
    if (stages & FACE_STAGE_QUALITY) {
        for (int i = 0; i < n; i++) {
            face_attributes *a = &out->faces[i].attributes;
            if (meshes && meshes[i].confidence >= MESH_MIN_CONFIDENCE)
                face_mesh_pose(&meshes[i], &a->yaw, &a->pitch, &a->roll);
            else
                face_points5_pose(out->faces[i].landmarks5, &a->yaw, &a->pitch, &a->roll);
        }
    }
    if (stages & (FACE_STAGE_EMBED | FACE_STAGE_QUALITY | FACE_STAGE_LIVENESS)) {
        t = base_now_ns();
        rc = make_crops(ctx, image, stages, opts->embedder, out);
        out->timing.align_ms = face_ms_since(t);
    }
done:
    free(meshes);
    return rc;
}

static unsigned effective_stages(const face_options *opts)
{
    unsigned stages = opts->stages;
    if (stages & FACE_STAGE_ATTRIBUTES) stages |= FACE_STAGE_QUALITY;
    if (stages & (FACE_STAGE_EMBED | FACE_STAGE_QUALITY | FACE_STAGE_LIVENESS))
        stages |= FACE_STAGE_LANDMARKS;
    return stages;
}

int face_analyze_prepare(face_context *ctx, const img_image *image, const face_options *opts_in,
                         face_result *out)
{
    memset(out, 0, sizeof *out);
    face_options opts = {0};
    if (opts_in) opts = *opts_in;
    if (!ctx || !image || !image->data || image->channels != 3)
        return base_error_set(BASE_ERR_INVALID, "analyze: need a context and an RGB image");
    out->width = image->width;
    out->height = image->height;
    out->min_face_size = face_detect_min_size(&opts, image->width, image->height);
    uint64_t t = base_now_ns();
    face_box *boxes = NULL;
    int n = 0;
    int rc = face_detect(ctx, image, &opts, &boxes, &n);
    out->timing.detect_ms = face_ms_since(t);
    if (!rc) rc = prepare_boxes(ctx, image, boxes, n, effective_stages(&opts), &opts, out);
    free(boxes);
    if (rc) face_result_free(out);
    return rc;
}

/* The second half on the whole result, its timing added to the result's. */
static int finish_all(face_context *ctx, face_result *out)
{
    if (!out->pending) return 0;
    face_batch_slice slice = {.result = out, .first = 0, .count = out->n_faces};
    int rc = face_analyze_finish(ctx, &slice, 1);
    out->timing.embed_ms += slice.timing.embed_ms;
    out->timing.attributes_ms += slice.timing.attributes_ms;
    out->timing.liveness_ms += slice.timing.liveness_ms;
    if (!rc) {
        /* complete: nothing left to keep */
        pending_free(out->pending);
        out->pending = NULL;
    }
    return rc;
}

int face_analyze(face_context *ctx, const img_image *image, const face_options *opts,
                 face_result *out)
{
    int rc = face_analyze_prepare(ctx, image, opts, out);
    if (!rc) rc = finish_all(ctx, out);
    if (rc) face_result_free(out);
    return rc;
}

/* Scales a box and its keypoints by (sx, sy). */
static void scale_box(face_box *b, float sx, float sy)
{
    b->x *= sx, b->w *= sx, b->y *= sy, b->h *= sy;
    for (int k = 0; k < 6; k++)
        b->keypoints[k].x *= sx, b->keypoints[k].y *= sy;
}

static void scale_point(face_point *p, float sx, float sy)
{
    p->x *= sx, p->y *= sy;
}

/*
 * Decoding. Huffman decoding of the whole file is a fixed cost (3 ms of the 9 ms of a 1080p
 * JPEG at quality 90, measured), so the image is decoded once when possible, at the largest
 * DCT reduction (1/2, 1/4, 1/8) that keeps what the stages need:
 *   - detection only: the shorter side >= DETECT_MIN_SIDE (the detector sees 256 pixels; at
 *     1/8 of a 1920x1280 photo, 240x160, BlazeFace loses a face it finds at 1/4 and 1/2);
 *   - the tiled detector looks at the image up to full resolution: full size;
 *   - face crops: the shorter side >= CROP_MIN_SIDE, which keeps the faces of an ordinary
 *     photo above the crops' resolution (1080p: 960x540 in 8 ms instead of 9 ms, and a
 *     4x smaller image to resize for the detector); when a face kept is smaller than
 *     CROP_MIN_EYE pixels between the eyes at that scale (the ArcFace crop has 35), the
 *     image is decoded again at the scale that gives it CROP_MIN_EYE, or in full.
 * Other formats are decoded in full.
 */
#define DETECT_MIN_SIDE 256
#define CROP_MIN_SIDE 540
#define CROP_MIN_EYE 40.0f

int face_analyze_prepare_bytes(face_context *ctx, const uint8_t *data, size_t len,
                               const face_options *opts_in, face_result *out)
{
    memset(out, 0, sizeof *out);
    face_options opts = {0};
    if (opts_in) opts = *opts_in;
    if (!ctx) return base_error_set(BASE_ERR_INVALID, "analyze: no context");
    const unsigned stages = effective_stages(&opts);
    const int jpeg = img_detect_format(data, len) == IMG_FORMAT_JPEG;

    uint64_t t = base_now_ns();
    img_image small = {0}, crop = {0};
    img_decode_info info = {0};
    int first_side = stages & ~(unsigned)FACE_STAGE_DETECT ? CROP_MIN_SIDE : DETECT_MIN_SIDE;
    first_side = face_detect_decode_side(opts.detector, first_side);
    img_decode_options dopts = {.limits = opts.limits, .min_side = jpeg ? first_side : 0};
    int rc = img_decode(data, len, &dopts, &small, &info);
    out->timing.decode_ms = face_ms_since(t);
    if (rc) return rc;
    /* the full-size upright image's dimensions */
    int swap = info.orientation >= 5 && info.orientation <= 8;
    int full_w = swap ? info.orig_height : info.orig_width;
    int full_h = swap ? info.orig_width : info.orig_height;
    if (full_w <= 0 || full_h <= 0) full_w = small.width, full_h = small.height;
    out->width = full_w;
    out->height = full_h;

    t = base_now_ns();
    face_box *boxes = NULL;
    int n = 0;
    /* A min_face_size the caller set counts full-size pixels (face.h): the detector, which sees
     * the reduced image, searches down to that size in its pixels (rounded down, so it keeps
     * at least what it should) and the boxes are filtered again at full size below. The
     * default (0: 20) stays 20 of the detector's pixels, which is what the WIDER numbers and
     * the benchmarks were measured with. */
    const float fx = (float)full_w / (float)small.width, fy = (float)full_h / (float)small.height;
    const float shrink = fx > fy ? fx : fy;
    const int min_full = opts.min_face_size;
    face_options detect_opts = opts;
    if (min_full > 0 && shrink > 1) {
        int reduced = (int)floorf((float)min_full / shrink);
        detect_opts.min_face_size = reduced > 1 ? reduced : 1;
    }
    /* the smallest face looked for, in full-size pixels: the detector's, scaled up (less a
     * hair, so that 20 x 2.0000002 stays 40), or the caller's full-size filter when larger */
    const int min_small = face_detect_min_size(&detect_opts, small.width, small.height);
    int min_seen = (int)ceilf((float)min_small * (shrink > 1 ? shrink : 1) - 0.01f);
    out->min_face_size = min_full > min_seen ? min_full : min_seen;
    rc = face_detect(ctx, &small, &detect_opts, &boxes, &n);
    out->timing.detect_ms = face_ms_since(t);
    if (rc) goto done;
    /* boxes to full-size coordinates */
    int kept = 0;
    for (int i = 0; i < n; i++) {
        scale_box(&boxes[i], fx, fy);
        if (min_full > 0 && fminf(boxes[i].w, boxes[i].h) < (float)min_full) continue;
        boxes[kept++] = boxes[i];
    }
    n = kept;

    const img_image *work = &small;
    int denom = info.scale_denom > 0 ? info.scale_denom : 1;
    if (n > 0 && (stages & ~(unsigned)FACE_STAGE_DETECT) && denom > 1) {
        float min_eye = 1e30f;
        for (int i = 0; i < n; i++) {
            float ex = boxes[i].keypoints[1].x - boxes[i].keypoints[0].x;
            float ey = boxes[i].keypoints[1].y - boxes[i].keypoints[0].y;
            float e = sqrtf(ex * ex + ey * ey);
            if (e < min_eye) min_eye = e;
        }
        /* min_eye is in full-size pixels; keep the current scale when it is enough */
        int want = denom;
        while (want > 1 && min_eye / (float)want < CROP_MIN_EYE)
            want /= 2;
        if (want < denom) {
            t = base_now_ns();
            int short_side = full_w < full_h ? full_w : full_h;
            img_decode_options d2 = {.limits = opts.limits,
                                     .min_side = want == 1 ? 0 : (short_side + want - 1) / want};
            rc = img_decode(data, len, &d2, &crop, NULL);
            out->timing.decode_ms += face_ms_since(t);
            if (rc) goto done;
            work = &crop;
        }
    }
    /* boxes to the working image's coordinates, the stages, and everything back */
    const float wx = (float)work->width / (float)full_w, wy = (float)work->height / (float)full_h;
    for (int i = 0; i < n; i++)
        scale_box(&boxes[i], wx, wy);
    rc = prepare_boxes(ctx, work, boxes, n, stages, &opts, out);
    if (rc) goto done;
    for (int i = 0; i < out->n_faces; i++) {
        face_info *f = &out->faces[i];
        f->x /= wx, f->w /= wx, f->y /= wy, f->h /= wy;
        for (int k = 0; k < 6; k++)
            scale_point(&f->keypoints[k], 1 / wx, 1 / wy);
        for (int k = 0; k < 5; k++)
            scale_point(&f->landmarks5[k], 1 / wx, 1 / wy);
    }
done:
    free(boxes);
    img_free(&small);
    img_free(&crop);
    if (rc) face_result_free(out);
    return rc;
}

int face_analyze_bytes(face_context *ctx, const uint8_t *data, size_t len, const face_options *opts,
                       face_result *out)
{
    int rc = face_analyze_prepare_bytes(ctx, data, len, opts, out);
    if (!rc) rc = finish_all(ctx, out);
    if (rc) face_result_free(out);
    return rc;
}
