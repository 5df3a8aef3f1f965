/*
 * face_analyze: the stages in order (detect, landmarks, embed, attributes, liveness), each
 * over all faces of the image at once, with the time of each stage.
 */
#include "face/face_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Below this FaceMesh face probability the mesh is not trusted for alignment; BlazeFace's
 * keypoints are used instead. */
#define MESH_MIN_CONFIDENCE 0.5f

void face_result_free(face_result *r)
{
    if (!r) return;
    for (int i = 0; i < r->n_faces; i++) img_free(&r->faces[i].aligned);
    free(r->faces);
    r->faces = NULL;
    r->n_faces = 0;
}

int face_analyze(face_context *ctx, const img_image *image, const face_options *opts_in,
                 face_result *out)
{
    memset(out, 0, sizeof *out);
    face_options opts = {0};
    if (opts_in) opts = *opts_in;
    if (!image || !image->data || image->channels != 3)
        return base_error_set(BASE_ERR_INVALID, "analyze: need an RGB image");
    out->width = image->width;
    out->height = image->height;
    unsigned stages = opts.stages;
    if (stages & (FACE_STAGE_EMBED | FACE_STAGE_ATTRIBUTES | FACE_STAGE_LIVENESS))
        stages |= FACE_STAGE_LANDMARKS;

    uint64_t t = base_now_ns();
    face_box *boxes = NULL;
    int n = 0;
    int rc = face_detect(ctx, image, &opts, &boxes, &n);
    out->timing.detect_ms = face_ms_since(t);
    if (rc) return rc;
    face_mesh *meshes = NULL;
    if (n > 0) {
        out->faces = calloc((size_t)n, sizeof *out->faces);
        if (!out->faces) {
            free(boxes);
            return base_error_set(BASE_ERR_NOMEM, "analyze: %d faces", n);
        }
    }
    out->n_faces = n;
    for (int i = 0; i < n; i++) {
        face_info *f = &out->faces[i];
        const face_box *b = &boxes[i];
        f->x = b->x, f->y = b->y, f->w = b->w, f->h = b->h;
        f->score = b->score;
        memcpy(f->keypoints, b->keypoints, sizeof f->keypoints);
    }
    if (n == 0) goto done;

    if (stages & FACE_STAGE_LANDMARKS) {
        t = base_now_ns();
        if (ctx->ctx[FM_FACEMESH]) {
            meshes = malloc((size_t)n * sizeof *meshes);
            if (!meshes) {
                rc = base_error_set(BASE_ERR_NOMEM, "analyze: meshes");
                goto done;
            }
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
    if (stages & FACE_STAGE_EMBED) {
        t = base_now_ns();
        rc = face_embed(ctx, image, opts.embedder, out->faces, n);
        out->timing.embed_ms = face_ms_since(t);
        if (rc) goto done;
    }
    if (stages & FACE_STAGE_ATTRIBUTES) {
        t = base_now_ns();
        for (int i = 0; i < n; i++) {
            face_attributes *a = &out->faces[i].attributes;
            if (meshes && meshes[i].confidence >= MESH_MIN_CONFIDENCE)
                face_mesh_pose(&meshes[i], &a->yaw, &a->pitch, &a->roll);
            else
                face_points5_pose(out->faces[i].landmarks5, &a->yaw, &a->pitch, &a->roll);
        }
        rc = face_attributes_run(ctx, image, out->faces, n);
        out->timing.attributes_ms = face_ms_since(t);
        if (rc) goto done;
    }
    if (stages & FACE_STAGE_LIVENESS) {
        t = base_now_ns();
        rc = face_liveness_run(ctx, image, out->faces, n);
        out->timing.liveness_ms = face_ms_since(t);
        if (rc) goto done;
    }
done:
    free(meshes);
    free(boxes);
    if (rc) face_result_free(out);
    return rc;
}

int face_analyze_bytes(face_context *ctx, const uint8_t *data, size_t len, const face_options *opts,
                       face_result *out)
{
    memset(out, 0, sizeof *out);
    uint64_t t = base_now_ns();
    img_image image = {0};
    int rc = img_decode(data, len, NULL, &image, NULL);
    double decode_ms = face_ms_since(t);
    if (rc) return rc;
    rc = face_analyze(ctx, &image, opts, out);
    out->timing.decode_ms = decode_ms;
    img_free(&image);
    return rc;
}
