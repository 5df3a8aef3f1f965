/*
 * Attributes: age and gender (faceres, GEAR or the SSR-Net pair), emotion, a quality score, and
 * liveness (the antispoof and liveness models). Each model sees all faces of the image in
 * batches of up to max_batch crops.
 */
#include "face/face_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Called per face with the model's outputs for that face (out[i] points at its row). */
typedef void (*decode_fn)(face_info *f, const float *const *out, const int *len);

#define MAX_OUTPUTS 4

/*
 * Crops every face for model `id`, runs it in batches and hands each face's outputs to fn.
 * With ATTRIBUTE_FLIP each face also runs mirrored and the two outputs are averaged (age,
 * gender and emotion are symmetric; measured on UTKFace it lowers the age error).
 */
#define ATTRIBUTE_FLIP 1
#define MAX_OUTPUT_LEN 128

static int run_model(face_context *ctx, face_model_id id, const img_image *image, face_info *faces,
                     int n, decode_fn fn)
{
    nn_context *nc = ctx->ctx[id];
    const nn_model *model = ctx->models->model[id];
    if (!nc) return base_error_set(BASE_ERR_INVALID, "attribute model %d not loaded", (int)id);
    const face_crop_spec *spec = face_crop_spec_for(id);
    const size_t per = (size_t)spec->size * spec->size * (spec->grey ? 1 : 3);
    int n_out = nn_model_output_count(model);
    if (n_out > MAX_OUTPUTS) n_out = MAX_OUTPUTS;
    const int copies = ATTRIBUTE_FLIP ? 2 : 1;
    float *in = nn_context_input(nc, 0);
    float avg[MAX_OUTPUTS][MAX_OUTPUT_LEN];
    for (int first = 0; first < n; first += ctx->max_batch) {
        int batch = n - first < ctx->max_batch ? n - first : ctx->max_batch;
        /* the mirrored crops run after the others (see face_embed); outputs are kept per face */
        float(*acc)[MAX_OUTPUTS][MAX_OUTPUT_LEN] = calloc((size_t)batch, sizeof *acc);
        if (!acc) return base_error_set(BASE_ERR_NOMEM, "attributes");
        int lens[MAX_OUTPUTS] = {0};
        int rc = 0;
        for (int c = 0; c < copies && !rc; c++) {
            for (int b = 0; b < batch && !rc; b++)
                rc = face_crop_to_input_flip(image, faces[first + b].landmarks5, spec, c,
                                             in + per * (size_t)b, NULL);
            if (!rc) rc = nn_context_run(nc, batch);
            for (int o = 0; o < n_out && !rc; o++) {
                nn_io_info info;
                const float *out = nn_context_output(nc, o, &info);
                lens[o] = 1;
                for (int d = 1; d < info.rank; d++) lens[o] *= (int)info.dim[d];
                if (lens[o] > MAX_OUTPUT_LEN) continue; /* faceres' embedding: not an attribute */
                for (int b = 0; b < batch; b++)
                    for (int k = 0; k < lens[o]; k++)
                        acc[b][o][k] += out[(size_t)b * lens[o] + k] / (float)copies;
            }
        }
        for (int b = 0; b < batch && !rc; b++) {
            const float *rows[MAX_OUTPUTS] = {0};
            for (int o = 0; o < n_out; o++) {
                if (lens[o] > MAX_OUTPUT_LEN) continue;
                memcpy(avg[o], acc[b][o], (size_t)lens[o] * sizeof(float));
                rows[o] = avg[o];
            }
            fn(&faces[first + b], rows, lens);
        }
        free(acc);
        if (rc) return rc;
    }
    return 0;
}

/* Output rows are matched by length (the models' output names are generic "Identity_N"). */
static const float *row_of_len(const float *const *out, const int *len, int want)
{
    for (int o = 0; o < MAX_OUTPUTS; o++)
        if (out[o] && len[o] == want) return out[o];
    return NULL;
}

/* faceres: gender_pred/Sigmoid (1, male probability), age_pred/Softmax (100 bins of a year):
 * age is the expectation over the bins. */
static void decode_faceres(face_info *f, const float *const *out, const int *len)
{
    const float *g = row_of_len(out, len, 1), *a = row_of_len(out, len, 100);
    if (g) f->attributes.gender_male = g[0];
    if (a) {
        double e = 0, s = 0;
        for (int i = 0; i < 100; i++) e += (double)a[i] * i, s += a[i];
        f->attributes.age = s > 0 ? (float)(e / s) : 0;
    }
}

/* GEAR: age over 7 bins (below 20, 21-25, 26-30, 31-40, 41-50, 51-60, above 60), gender
 * [male, female], race (5). Age is the expectation over bin centres. */
static void decode_gear(face_info *f, const float *const *out, const int *len)
{
    static const float centre[7] = {15, 23, 28, 35.5f, 45.5f, 55.5f, 65};
    const float *a = row_of_len(out, len, 7), *g = row_of_len(out, len, 2);
    if (g) f->attributes.gender_male = g[0] / (g[0] + g[1] + 1e-9f);
    if (a) {
        double e = 0, s = 0;
        for (int i = 0; i < 7; i++) e += (double)a[i] * centre[i], s += a[i];
        f->attributes.age = s > 0 ? (float)(e / s) : 0;
    }
}

/* face-api: age in years (1), gender softmax [male, female] (2). */
static void decode_faceapi(face_info *f, const float *const *out, const int *len)
{
    const float *a = row_of_len(out, len, 1), *g = row_of_len(out, len, 2);
    if (a) f->attributes.age = a[0];
    if (g) f->attributes.gender_male = g[0];
}

/* SSR-Net age: one value, years. */
static void decode_ssr_age(face_info *f, const float *const *out, const int *len)
{
    f->attributes.age = out[0][0];
}

/* SSR-Net gender: [female, male]. */
static void decode_ssr_gender(face_info *f, const float *const *out, const int *len)
{
    const float *g = out[0];
    f->attributes.gender_male = g[1] / (g[0] + g[1] + 1e-9f);
}

/* Emotion: softmax over angry, disgust, fear, happy, sad, surprise, neutral. */
static void decode_emotion(face_info *f, const float *const *out, const int *len)
{
    const float *e = row_of_len(out, len, FACE_EMOTIONS);
    if (e) memcpy(f->attributes.emotion, e, sizeof f->attributes.emotion);
}

/*
 * Quality in [0, 1]: the product of four factors, each in [0, 1]:
 *   size      = min(1, eye distance in pixels / 40)   (40 px between the eyes ~ a 112 px face)
 *   sharpness = s / (s + 100), s the variance of the Laplacian of the 112x112 aligned crop
 *               (sharp photos give s >= 300, i.e. >= 0.75; s = 100 is 0.5)
 *   pose      = cos(yaw) * cos(pitch), with yaw and pitch clamped to 90 degrees
 *   detector  = the detection score
 * A frontal, sharp, large face scores ~0.7-0.9; below ~0.3 embeddings become unreliable.
 */
static float quality(const face_info *f)
{
    const face_attributes *a = &f->attributes;
    float ex = f->landmarks5[1].x - f->landmarks5[0].x, ey = f->landmarks5[1].y - f->landmarks5[0].y;
    float size = fminf(1.0f, sqrtf(ex * ex + ey * ey) / 40.0f);
    float sharp = a->sharpness / (a->sharpness + 100.0f);
    const float rad = 3.14159265f / 180.0f;
    float pose = cosf(fminf(90.0f, fabsf(a->yaw)) * rad) * cosf(fminf(90.0f, fabsf(a->pitch)) * rad);
    return size * sharp * pose * f->score;
}

int face_attributes_run(face_context *ctx, const img_image *image, face_info *faces, int n)
{
    int rc = 0;
    switch (ctx->models->age_model) {
    case FACE_AGE_MODEL_FACERES: rc = run_model(ctx, FM_FACERES, image, faces, n, decode_faceres); break;
    case FACE_AGE_MODEL_GEAR: rc = run_model(ctx, FM_GEAR, image, faces, n, decode_gear); break;
    case FACE_AGE_MODEL_FACEAPI:
        rc = run_model(ctx, FM_FACEAPI_AGEGENDER, image, faces, n, decode_faceapi);
        break;
    default:
        rc = run_model(ctx, FM_AGE, image, faces, n, decode_ssr_age);
        if (!rc) rc = run_model(ctx, FM_GENDER, image, faces, n, decode_ssr_gender);
        break;
    }
    if (!rc) rc = run_model(ctx, FM_EMOTION, image, faces, n, decode_emotion);
    if (rc) return rc;
    static const face_crop_spec arcface = {112, 1.0f, 0.0f, 1.0f, {0, 0, 0}, 0};
    for (int i = 0; i < n; i++) {
        face_info *f = &faces[i];
        if (!f->aligned.data) {
            rc = face_crop_to_input(image, f->landmarks5, &arcface, NULL, &f->aligned);
            if (rc) return rc;
        }
        f->attributes.sharpness = face_sharpness(&f->aligned);
        f->attributes.quality = quality(f);
        f->has_attributes = 1;
    }
    return 0;
}

static void decode_antispoof(face_info *f, const float *const *out, const int *len)
{
    f->liveness.antispoof = out[0][0];
}

static void decode_liveness(face_info *f, const float *const *out, const int *len)
{
    f->liveness.liveness = out[0][0];
}

int face_liveness_run(face_context *ctx, const img_image *image, face_info *faces, int n)
{
    int rc = run_model(ctx, FM_ANTISPOOF, image, faces, n, decode_antispoof);
    if (!rc) rc = run_model(ctx, FM_LIVENESS, image, faces, n, decode_liveness);
    if (rc) return rc;
    for (int i = 0; i < n; i++) {
        face_liveness *l = &faces[i].liveness;
        l->score = sqrtf(fmaxf(0.0f, l->antispoof) * fmaxf(0.0f, l->liveness));
        faces[i].has_liveness = 1;
    }
    return 0;
}
