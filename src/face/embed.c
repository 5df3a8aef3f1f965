/*
 * Identity embeddings: which output of each embedder holds the vector, and the decision
 * thresholds. The embedders run in face_analyze_finish() (batch.c) with the other per-face
 * models: each face as itself and mirrored, the two unit vectors summed and normalised.
 */
#include "face/face_internal.h"

#include <string.h>

const char *face_embedding_output(face_model_id id)
{
    switch (id) {
    case FM_FACERES: return "global_pooling/Mean";
    case FM_MOBILEFACENET: return "embeddings";
    case FM_MOBILEFACE: return "batchnorm0/add_1";
    case FM_FACEAPI_RESNET: return "descriptor";
    default: return NULL;
    }
}

/*
 * Thresholds at a false-accept rate, calibrated for faceapi-resnet-v1 on every
 * different-person pair of the 4,992 lfw-dev images (docs/gallery.md, "Default thresholds"):
 * 0.930 at FAR 1e-3 (TAR 0.944), 0.944 at 1e-4 (TAR 0.824). The other embedders are not
 * calibrated at a FAR: they get the accuracy-maximising threshold.
 */
static const struct {
    face_embedder embedder;
    double far;
    float threshold;
} calibrated[] = {
    {FACE_EMBEDDER_FACEAPI_RESNET, 1e-3, 0.930f},
    {FACE_EMBEDDER_FACEAPI_RESNET, 1e-4, 0.944f},
};

float face_threshold_at_far(face_embedder e, double far)
{
    const char *id = face_embedder_id(e);
    float best = 0;
    double best_far = 0;
    int found = 0;
    /* the least strict calibrated threshold whose rate is at most `far` */
    for (size_t i = 0; i < sizeof calibrated / sizeof calibrated[0]; i++) {
        if (strcmp(face_embedder_id(calibrated[i].embedder), id) != 0) continue;
        if (calibrated[i].far > far * (1 + 1e-9)) continue;
        if (!found || calibrated[i].far > best_far) {
            best = calibrated[i].threshold;
            best_far = calibrated[i].far;
            found = 1;
        }
    }
    if (found) return best;
    /* stricter than any calibrated rate: the strictest one there is */
    for (size_t i = 0; i < sizeof calibrated / sizeof calibrated[0]; i++) {
        if (strcmp(face_embedder_id(calibrated[i].embedder), id) != 0) continue;
        if (!found || calibrated[i].far < best_far) {
            best = calibrated[i].threshold;
            best_far = calibrated[i].far;
            found = 1;
        }
    }
    return found ? best : face_default_threshold(e);
}
