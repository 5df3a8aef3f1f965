/*
 * Attributes: how the outputs of age and gender (faceres, GEAR, the SSR-Net pair or face-api's
 * network), emotion and liveness (the antispoof and liveness models) become face_info fields,
 * and the quality score. The models themselves run in face_analyze_finish() (batch.c), every
 * face as itself and mirrored with the two outputs averaged (age, gender and emotion are
 * symmetric; measured on UTKFace it lowers the age error).
 */
#include "face/face_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OUTPUTS 4

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
        for (int i = 0; i < 100; i++)
            e += (double)a[i] * i, s += a[i];
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
        for (int i = 0; i < 7; i++)
            e += (double)a[i] * centre[i], s += a[i];
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
static face_quality_factors quality_factors(const face_info *f, float eye_distance)
{
    const face_attributes *a = &f->attributes;
    const float rad = 3.14159265f / 180.0f;
    return (face_quality_factors){
        .size = fminf(1.0f, eye_distance / 40.0f),
        .sharpness = a->sharpness / (a->sharpness + 100.0f),
        .pose = cosf(fminf(90.0f, fabsf(a->yaw)) * rad) * cosf(fminf(90.0f, fabsf(a->pitch)) * rad),
        .detector = f->score,
    };
}

static void decode_antispoof(face_info *f, const float *const *out, const int *len)
{
    f->liveness.antispoof = out[0][0];
}

static void decode_liveness(face_info *f, const float *const *out, const int *len)
{
    f->liveness.liveness = out[0][0];
}

face_decode_fn face_model_decoder(face_model_id id)
{
    switch (id) {
    case FM_FACERES: return decode_faceres;
    case FM_GEAR: return decode_gear;
    case FM_FACEAPI_AGEGENDER: return decode_faceapi;
    case FM_AGE: return decode_ssr_age;
    case FM_GENDER: return decode_ssr_gender;
    case FM_EMOTION: return decode_emotion;
    case FM_ANTISPOOF: return decode_antispoof;
    case FM_LIVENESS: return decode_liveness;
    default: return NULL;
    }
}

unsigned face_model_stage(const face_models *m, face_model_id id)
{
    switch (id) {
    case FM_ANTISPOOF:
    case FM_LIVENESS: return FACE_STAGE_LIVENESS;
    case FM_EMOTION: return FACE_STAGE_ATTRIBUTES;
    case FM_FACERES: return m->age_model == FACE_AGE_MODEL_FACERES ? FACE_STAGE_ATTRIBUTES : 0;
    case FM_GEAR: return m->age_model == FACE_AGE_MODEL_GEAR ? FACE_STAGE_ATTRIBUTES : 0;
    case FM_FACEAPI_AGEGENDER:
        return m->age_model == FACE_AGE_MODEL_FACEAPI ? FACE_STAGE_ATTRIBUTES : 0;
    case FM_AGE:
    case FM_GENDER: return m->age_model == FACE_AGE_MODEL_SSRNET ? FACE_STAGE_ATTRIBUTES : 0;
    default: return 0;
    }
}

const face_crop_spec face_arcface_crop = {112, 1.0f, 0.0f, 1.0f, {0, 0, 0}, 0};

void face_attributes_finish(face_info *f, const face_pending_face *p, unsigned stages)
{
    if (stages & (FACE_STAGE_QUALITY | FACE_STAGE_ATTRIBUTES)) {
        f->attributes.sharpness = f->aligned.data ? face_sharpness(&f->aligned) : 0;
        face_quality_factors q = quality_factors(f, p->eye_distance);
        f->attributes.quality_factors = q;
        f->attributes.quality = q.size * q.sharpness * q.pose * q.detector;
        f->has_quality = 1;
    }
    if (stages & FACE_STAGE_ATTRIBUTES) f->has_attributes = 1;
    if (stages & FACE_STAGE_LIVENESS) {
        face_liveness *l = &f->liveness;
        l->score = sqrtf(fmaxf(0.0f, l->antispoof) * fmaxf(0.0f, l->liveness));
        f->has_liveness = 1;
    }
}
