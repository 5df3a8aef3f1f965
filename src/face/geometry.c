/*
 * Geometry shared by the stages: the least-squares similarity transform used for alignment,
 * box overlap and MediaPipe's weighted non-maximum suppression, and the crop matrices.
 */
#include "face/face_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The InsightFace / ArcFace 5-point template for 112x112 crops (eyes, nose tip, mouth corners
 * as seen in the image). */
const face_point face_arcface_template[5] = {
    {38.2946f, 51.6963f}, {73.5318f, 51.5014f}, {56.0252f, 71.7366f},
    {41.5493f, 92.3655f}, {70.7299f, 92.2041f},
};

/*
 * Least squares over similarity transforms q = s R p + t. With centred points the optimum is
 * closed form: s cos(a) = sum(p.q) / sum(|p|^2), s sin(a) = sum(p x q) / sum(|p|^2). This is
 * Umeyama's solution restricted to proper rotations (no reflection), which is what a face
 * alignment wants: a mirrored face is a different face.
 */
int face_similarity_transform(const face_point *src, const face_point *dst, int n, float m[6])
{
    if (n < 2) return base_error_set(BASE_ERR_INVALID, "similarity transform: %d points", n);
    double mpx = 0, mpy = 0, mqx = 0, mqy = 0;
    for (int i = 0; i < n; i++) {
        mpx += src[i].x, mpy += src[i].y;
        mqx += dst[i].x, mqy += dst[i].y;
    }
    mpx /= n, mpy /= n, mqx /= n, mqy /= n;
    double dot = 0, cross = 0, var = 0;
    for (int i = 0; i < n; i++) {
        double px = src[i].x - mpx, py = src[i].y - mpy;
        double qx = dst[i].x - mqx, qy = dst[i].y - mqy;
        dot += px * qx + py * qy;
        cross += px * qy - py * qx;
        var += px * px + py * py;
    }
    if (!(var > 1e-9) || !(dot * dot + cross * cross > 1e-18))
        return base_error_set(BASE_ERR_INVALID, "similarity transform: degenerate points");
    double a = dot / var, b = cross / var;
    m[0] = (float)a, m[1] = (float)-b, m[2] = (float)(mqx - (a * mpx - b * mpy));
    m[3] = (float)b, m[4] = (float)a, m[5] = (float)(mqy - (b * mpx + a * mpy));
    return 0;
}

/* Inverts a 2x3 affine matrix. */
static int affine_invert(const float m[6], float inv[6])
{
    double det = (double)m[0] * m[4] - (double)m[1] * m[3];
    if (fabs(det) < 1e-12) return base_error_set(BASE_ERR_INVALID, "singular affine matrix");
    double a = m[4] / det, b = -m[1] / det, c = -m[3] / det, d = m[0] / det;
    inv[0] = (float)a, inv[1] = (float)b, inv[2] = (float)-(a * m[2] + b * m[5]);
    inv[3] = (float)c, inv[4] = (float)d, inv[5] = (float)-(c * m[2] + d * m[5]);
    return 0;
}

int face_crop_matrix(const face_point pts[5], const face_crop_spec *spec, float m[6])
{
    face_point dst[5];
    float k = spec->zoom * (float)spec->size / 112.0f;
    for (int i = 0; i < 5; i++) {
        dst[i].x = (face_arcface_template[i].x - 56.0f) * k + 0.5f * (float)spec->size;
        dst[i].y =
            (face_arcface_template[i].y - 56.0f) * k + (0.5f + spec->shift_y) * (float)spec->size;
    }
    float fwd[6];
    int rc = face_similarity_transform(pts, dst, 5, fwd);
    if (rc) return rc;
    return affine_invert(fwd, m);
}

float face_iou(const face_box *a, const face_box *b)
{
    float x0 = fmaxf(a->x, b->x), y0 = fmaxf(a->y, b->y);
    float x1 = fminf(a->x + a->w, b->x + b->w), y1 = fminf(a->y + a->h, b->y + b->h);
    if (x1 <= x0 || y1 <= y0) return 0;
    float inter = (x1 - x0) * (y1 - y0);
    float uni = a->w * a->h + b->w * b->h - inter;
    return uni > 0 ? inter / uni : 0;
}

static int by_score_desc(const void *pa, const void *pb)
{
    const face_box *a = pa, *b = pb;
    return (a->score < b->score) - (a->score > b->score);
}

/*
 * MediaPipe's WEIGHTED overlap type: take the best remaining box, gather every remaining box
 * that overlaps it by more than the threshold (itself included), and replace the cluster by
 * the score-weighted mean of its boxes and keypoints, keeping the best score. The rest stay in
 * score order behind it, so the array is processed front to back without extra memory.
 */
int face_weighted_nms(face_box *boxes, int n, float iou_threshold)
{
    if (n <= 0) return 0;
    qsort(boxes, (size_t)n, sizeof *boxes, by_score_desc);
    int kept = 0, end = n;
    while (kept < end) {
        face_box top = boxes[kept];
        double wsum = 0, x0 = 0, y0 = 0, x1 = 0, y1 = 0, kp[6][2] = {{0}};
        int rest = kept + 1;
        for (int i = kept; i < end; i++) {
            const face_box *b = &boxes[i];
            if (i == kept || face_iou(&top, b) > iou_threshold) {
                double w = b->score;
                wsum += w;
                x0 += w * b->x, y0 += w * b->y;
                x1 += w * (b->x + b->w), y1 += w * (b->y + b->h);
                for (int k = 0; k < 6; k++) {
                    kp[k][0] += w * b->keypoints[k].x;
                    kp[k][1] += w * b->keypoints[k].y;
                }
            } else {
                boxes[rest++] = *b;
            }
        }
        if (wsum > 0) {
            top.x = (float)(x0 / wsum), top.y = (float)(y0 / wsum);
            top.w = (float)(x1 / wsum) - top.x, top.h = (float)(y1 / wsum) - top.y;
            for (int k = 0; k < 6; k++) {
                top.keypoints[k].x = (float)(kp[k][0] / wsum);
                top.keypoints[k].y = (float)(kp[k][1] / wsum);
            }
        }
        boxes[kept++] = top;
        end = rest;
    }
    return kept;
}

float face_similarity(const float *a, const float *b, int dim)
{
    double s = 0;
    for (int i = 0; i < dim; i++)
        s += (double)a[i] * b[i];
    return (float)s;
}

/*
 * The most prominent face: the largest area in view weighed by nearness to the centre. The
 * largest box alone is not always the person photographed: a face cut by the border has a box
 * reaching past it, and in LFW's pairs (250x250 crops centred on the subject) a bystander at
 * the edge had the larger box. With the largest box, DevTest's 1,000 pairs through
 * /v1/verify scored 0.984 at `vultus eval`'s threshold (0.912), where eval, which takes the
 * face nearest the centre, has 0.990; with this rule 19 pairs compare another face and verify
 * has 0.990 too. No parameter of it was fitted. Enrolment uses the same rule, so a photo
 * enrolled and then verified or searched compares the same face.
 */
int face_most_prominent(const face_result *res)
{
    int best = 0;
    double best_weight = -1;
    double cx = res->width / 2.0, cy = res->height / 2.0, half_diagonal = hypot(cx, cy);
    for (int i = 0; i < res->n_faces; i++) {
        const face_info *f = &res->faces[i];
        double w = fmin(f->x + f->w, res->width) - fmax(f->x, 0);
        double h = fmin(f->y + f->h, res->height) - fmax(f->y, 0);
        double area = w > 0 && h > 0 ? w * h : 0;
        double off = half_diagonal > 0 ? hypot(f->x + f->w / 2 - cx, f->y + f->h / 2 - cy) /
                                             half_diagonal
                                       : 0;
        double weight = area * fmax(0, 1 - off);
        if (weight > best_weight) {
            best = i;
            best_weight = weight;
        }
    }
    return best;
}
