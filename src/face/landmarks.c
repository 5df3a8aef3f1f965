/*
 * Landmarks with FaceMesh (MediaPipe's 468-point face landmark model, 192x192): a square
 * region around each detection, 1.5x the box, rotated so the eyes are level (as MediaPipe
 * crops it), then the 5 alignment points and the head pose from the mesh.
 */
#include "face/face_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Region of interest: side = ROI_SCALE * the box's longer side, centred on the box. */
#define ROI_SCALE 1.5f

/* The eye contours (MediaPipe's rightEyeUpper0/Lower0 and leftEyeUpper0/Lower0): their mean
 * is the eye centre. "Right" is the subject's right eye, on the left of the image. */
static const int right_eye[16] = {33,  7,   163, 144, 145, 153, 154, 155,
                                  133, 246, 161, 160, 159, 158, 157, 173};
static const int left_eye[16] = {263, 249, 390, 373, 374, 380, 381, 382,
                                 362, 466, 388, 387, 386, 385, 384, 398};
#define MESH_NOSE_TIP 1
#define MESH_MOUTH_RIGHT 61 /* subject's right corner: image left */
#define MESH_MOUTH_LEFT 291
#define MESH_FOREHEAD 10
#define MESH_CHIN 152
#define MESH_CHEEK_RIGHT 234
#define MESH_CHEEK_LEFT 454

/*
 * The output->source matrix of a square crop of `out_size` pixels centred on (cx, cy), `side`
 * image pixels wide, rotated by `angle` (radians, the image angle of the eye line).
 */
static void roi_matrix(float cx, float cy, float side, float angle, int out_size, float m[6])
{
    float d = side / (float)out_size, c = cosf(angle) * d, s = sinf(angle) * d;
    float h = 0.5f * (float)out_size;
    m[0] = c, m[1] = -s, m[2] = cx - h * c + h * s;
    m[3] = s, m[4] = c, m[5] = cy - h * s - h * c;
}

/* The face region from a detection: centre of the box, eye-line rotation from keypoints. */
static void box_roi(const face_box *b, float m[6])
{
    const face_point *kp = b->keypoints; /* 0: right eye (image left), 1: left eye */
    float angle = atan2f(kp[1].y - kp[0].y, kp[1].x - kp[0].x);
    float side = ROI_SCALE * fmaxf(b->w, b->h);
    roi_matrix(b->x + 0.5f * b->w, b->y + 0.5f * b->h, side, angle, FACE_MESH_SIZE, m);
}

int face_landmarks(face_context *ctx, const img_image *image, const face_box *boxes, int n,
                   face_mesh *meshes)
{
    nn_context *nc = ctx->ctx[FM_FACEMESH];
    const nn_model *model = ctx->models->model[FM_FACEMESH];
    if (!nc) return base_error_set(BASE_ERR_INVALID, "landmark model not loaded");
    int i_coords = nn_model_output_index(model, "Identity_2");
    int i_flag = nn_model_output_index(model, "Identity_1");
    if (i_coords < 0 || i_flag < 0)
        return base_error_set(BASE_ERR_FORMAT, "facemesh: outputs missing");
    const size_t per = (size_t)FACE_MESH_SIZE * FACE_MESH_SIZE * 3;
    float *in = nn_context_input(nc, 0);
    float(*mats)[6] = malloc((size_t)ctx->max_batch * sizeof *mats);
    if (!mats) return base_error_set(BASE_ERR_NOMEM, "landmarks");
    int rc = 0;
    for (int first = 0; first < n && !rc; first += ctx->max_batch) {
        int batch = n - first < ctx->max_batch ? n - first : ctx->max_batch;
        for (int b = 0; b < batch && !rc; b++) {
            box_roi(&boxes[first + b], mats[b]);
            img_image crop = {0};
            rc = img_warp_affine(image, mats[b], FACE_MESH_SIZE, FACE_MESH_SIZE, 0, &crop);
            if (rc) break;
            img_to_float(&crop, 1.0f / 255.0f, 0.0f, in + per * (size_t)b);
            img_free(&crop);
        }
        if (rc) break;
        rc = nn_context_run(nc, batch);
        if (rc) break;
        const float *coords = nn_context_output(nc, i_coords, NULL);
        const float *flag = nn_context_output(nc, i_flag, NULL);
        for (int b = 0; b < batch; b++) {
            face_mesh *mesh = &meshes[first + b];
            const float *m = mats[b];
            float scale = sqrtf(m[0] * m[0] + m[3] * m[3]);
            const float *p = coords + (size_t)b * FACE_MESH_POINTS * 3;
            for (int k = 0; k < FACE_MESH_POINTS; k++) {
                float x = p[3 * k], y = p[3 * k + 1];
                mesh->points[k][0] = m[0] * x + m[1] * y + m[2];
                mesh->points[k][1] = m[3] * x + m[4] * y + m[5];
                mesh->points[k][2] = p[3 * k + 2] * scale;
            }
            mesh->confidence = flag[b];
        }
    }
    free(mats);
    return rc;
}

static face_point mean_of(const face_mesh *mesh, const int *idx, int n)
{
    float x = 0, y = 0;
    for (int i = 0; i < n; i++)
        x += mesh->points[idx[i]][0], y += mesh->points[idx[i]][1];
    return (face_point){x / (float)n, y / (float)n};
}

static face_point mesh_point(const face_mesh *mesh, int i)
{
    return (face_point){mesh->points[i][0], mesh->points[i][1]};
}

void face_mesh_points5(const face_mesh *mesh, face_point out[5])
{
    out[0] = mean_of(mesh, right_eye, 16);
    out[1] = mean_of(mesh, left_eye, 16);
    out[2] = mesh_point(mesh, MESH_NOSE_TIP);
    out[3] = mesh_point(mesh, MESH_MOUTH_RIGHT);
    out[4] = mesh_point(mesh, MESH_MOUTH_LEFT);
}

/*
 * BlazeFace gives the eyes, the nose tip and the mouth centre. The mouth corners are placed
 * on either side of the mouth centre, parallel to the eye line, at the template's ratio of
 * mouth width to eye distance (29.2 / 35.2 in the ArcFace template).
 */
void face_keypoints_points5(const face_box *box, face_point out[5])
{
    const face_point *kp = box->keypoints;
    float ex = kp[1].x - kp[0].x, ey = kp[1].y - kp[0].y;
    float half = 0.5f * (29.18f / 35.24f);
    out[0] = kp[0];
    out[1] = kp[1];
    out[2] = kp[2];
    out[3] = (face_point){kp[3].x - half * ex, kp[3].y - half * ey};
    out[4] = (face_point){kp[3].x + half * ex, kp[3].y + half * ey};
}

static void normalize3(float v[3])
{
    float n = sqrtf(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    if (n > 0) v[0] /= n, v[1] /= n, v[2] /= n;
}

/*
 * Head pose from the mesh. Camera axes: x right, y down, z away from the camera (the mesh's
 * z grows away from the camera too). The face's x axis runs from its right cheek to its left
 * (image left to right when frontal), its y axis from forehead to chin, made orthogonal to x;
 * the nose points along -(x cross y). Angles, in degrees:
 *   yaw   > 0 when the face turns towards the image's right (nose to the right),
 *   pitch > 0 when the face looks up,
 *   roll  > 0 when the eye line turns clockwise in the image (head tilted to the image right).
 */
void face_mesh_pose(const face_mesh *mesh, float *yaw, float *pitch, float *roll)
{
    const float(*p)[3] = mesh->points;
    float x[3], y[3], z[3];
    for (int i = 0; i < 3; i++) {
        x[i] = p[MESH_CHEEK_LEFT][i] - p[MESH_CHEEK_RIGHT][i];
        y[i] = p[MESH_CHIN][i] - p[MESH_FOREHEAD][i];
    }
    normalize3(x);
    float d = x[0] * y[0] + x[1] * y[1] + x[2] * y[2];
    for (int i = 0; i < 3; i++)
        y[i] -= d * x[i];
    normalize3(y);
    z[0] = x[1] * y[2] - x[2] * y[1];
    z[1] = x[2] * y[0] - x[0] * y[2];
    z[2] = x[0] * y[1] - x[1] * y[0];
    /* nose direction n = -z; frontal: n = (0, 0, -1) */
    const float deg = 180.0f / 3.14159265f;
    *yaw = atan2f(-z[0], z[2]) * deg;
    *pitch = asinf(fmaxf(-1.0f, fminf(1.0f, z[1]))) * deg;
    *roll = atan2f(x[1], x[0]) * deg;
}

/*
 * Without a mesh: roll from the eye line; yaw from where the nose tip sits between the eyes
 * (0 centred, +-1 at an eye ~ 90 degrees), pitch from the nose's height between the eye line
 * and the mouth relative to a frontal face's. Rough (+-15 degrees), enough for quality.
 */
void face_points5_pose(const face_point p[5], float *yaw, float *pitch, float *roll)
{
    const float deg = 180.0f / 3.14159265f;
    float ex = p[1].x - p[0].x, ey = p[1].y - p[0].y;
    float eye = sqrtf(ex * ex + ey * ey);
    *roll = atan2f(ey, ex) * deg;
    if (eye <= 0) {
        *yaw = *pitch = 0;
        return;
    }
    float ux = ex / eye, uy = ey / eye; /* along the eyes; (-uy, ux) points down the face */
    face_point mid = {0.5f * (p[0].x + p[1].x), 0.5f * (p[0].y + p[1].y)};
    face_point mouth = {0.5f * (p[3].x + p[4].x), 0.5f * (p[3].y + p[4].y)};
    float nose_along = ((p[2].x - mid.x) * ux + (p[2].y - mid.y) * uy) / (0.5f * eye);
    float nose_down = (p[2].x - mid.x) * -uy + (p[2].y - mid.y) * ux;
    float mouth_down = (mouth.x - mid.x) * -uy + (mouth.y - mid.y) * ux;
    *yaw = asinf(fmaxf(-1.0f, fminf(1.0f, nose_along))) * deg;
    /* frontal ArcFace template: nose at 0.51 of the eye-to-mouth distance */
    float r = mouth_down > 0 ? nose_down / mouth_down : 0.51f;
    *pitch = asinf(fmaxf(-1.0f, fminf(1.0f, (0.51f - r) * 2.5f))) * deg;
}
