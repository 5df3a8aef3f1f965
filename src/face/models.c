/*
 * Loading the model pack, per-worker contexts, and the per-model facts the stages share: file
 * names, crop geometry and input normalisation, embedder ids and thresholds.
 */
#include "face/face_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const model_files[FM_COUNT] = {
    [FM_BLAZEFACE] = "human/blazeface-back.json",
    [FM_FACEMESH] = "human/facemesh.json",
    [FM_MOBILEFACENET] = "human/mobilefacenet.json",
    [FM_FACERES] = "human/faceres.json",
    [FM_MOBILEFACE] = "human/mobileface.json",
    [FM_GEAR] = "human/gear.json",
    [FM_AGE] = "human/age.json",
    [FM_GENDER] = "human/gender.json",
    [FM_EMOTION] = "human/emotion.json",
    [FM_ANTISPOOF] = "human/antispoof.json",
    [FM_LIVENESS] = "human/liveness.json",
    [FM_FACEAPI_RESNET] = "faceapi/face_recognition_model-weights_manifest.json",
    [FM_FACEAPI_AGEGENDER] = "faceapi/age_gender_model-weights_manifest.json",
    [FM_SSD_MOBILENET] = "faceapi/ssd_mobilenetv1_model-weights_manifest.json",
};

/*
 * Crops and normalisation per model. The ArcFace template is what MobileFaceNet (sirius-ai,
 * trained on InsightFace's aligned MS1M) was trained on; the other models were trained on
 * looser crops, so their zoom (< 1) was chosen by measurement (LFW for the embedders, UTKFace
 * for age and gender); see the report in the README.
 */
#define OFF3(v)                                                                                    \
    {                                                                                              \
        (v), (v), (v)                                                                              \
    }
static const face_crop_spec crop_specs[FM_COUNT] = {
    /* (p - 127.5) / 128, what MobileFaceNet_TF was trained with, gives this graph a constant
     * embedding (LFW 50%); raw pixels are the least bad (61-64%): the converted model is
     * broken, see the README */
    [FM_MOBILEFACENET] = {112, 1.25f, 0.0f, 1.0f, OFF3(0.0f), 0},
    [FM_MOBILEFACE] = {112, 1.0f, 0.0f, 1.0f, OFF3(0.0f), 0},
    [FM_FACERES] = {224, 0.8f, 0.0f, 1.0f, OFF3(0.0f), 0},
    /* (p - mean) / 255 as face-api's forwardInput (dlib trained the ResNet with / 256: LFW
     * 0.991 then, 0.990 with / 255, one pair; test_faceapi_golden checks against face-api) */
    [FM_FACEAPI_RESNET] = {150,
                           1.25f,
                           -0.15f,
                           1.0f / 255.0f,
                           {-122.782f / 255.0f, -117.001f / 255.0f, -104.298f / 255.0f},
                           0},
    [FM_FACEAPI_AGEGENDER] = {112,
                              1.05f,
                              -0.03f,
                              1.0f / 255.0f,
                              {-122.782f / 255.0f, -117.001f / 255.0f, -104.298f / 255.0f},
                              0},
    [FM_GEAR] = {198, 0.75f, 0.0f, 1.0f / 255.0f, OFF3(0.0f), 0},
    [FM_AGE] = {64, 0.75f, 0.0f, 1.0f, OFF3(0.0f), 0},
    [FM_GENDER] = {64, 0.75f, 0.0f, 2.0f / 255.0f, OFF3(-1.0f), 1},
    [FM_EMOTION] = {64, 0.85f, 0.0f, 2.0f / 255.0f, OFF3(-1.0f), 1},
    [FM_ANTISPOOF] = {128, 0.75f, 0.0f, 1.0f / 255.0f, OFF3(0.0f), 0},
    [FM_LIVENESS] = {32, 0.75f, 0.0f, 1.0f / 255.0f, OFF3(0.0f), 0},
};

/* Tuning hook (configuration: set before any context runs, see face_internal.h). */
static face_crop_spec crop_overrides[FM_COUNT];
static int crop_overridden[FM_COUNT];

const face_crop_spec *face_crop_spec_for(face_model_id id)
{
    if (id < 0 || id >= FM_COUNT || crop_specs[id].size == 0) return NULL;
    return crop_overridden[id] ? &crop_overrides[id] : &crop_specs[id];
}

void face_crop_spec_override(face_model_id id, const face_crop_spec *spec)
{
    if (id < 0 || id >= FM_COUNT) return;
    if (spec) crop_overrides[id] = *spec;
    crop_overridden[id] = spec != NULL;
}

/* The default embedder and age model, by measurement (README). */
#define DEFAULT_EMBEDDER FACE_EMBEDDER_FACEAPI_RESNET
#define DEFAULT_AGE_MODEL FACE_AGE_MODEL_FACEAPI

face_model_id face_embedder_model(face_embedder e)
{
    switch (e == FACE_EMBEDDER_DEFAULT ? DEFAULT_EMBEDDER : e) {
    case FACE_EMBEDDER_MOBILEFACENET: return FM_MOBILEFACENET;
    case FACE_EMBEDDER_FACERES: return FM_FACERES;
    case FACE_EMBEDDER_MOBILEFACE: return FM_MOBILEFACE;
    case FACE_EMBEDDER_FACEAPI_RESNET: return FM_FACEAPI_RESNET;
    default: return FM_COUNT;
    }
}

/* Detector names, the canonical one (face_detector_name) first for each detector. */
static const struct {
    const char *name;
    face_detector d;
} detector_names[] = {
    {"default", FACE_DETECTOR_DEFAULT},
    {"blazeface-adaptive", FACE_DETECTOR_BLAZEFACE_ADAPTIVE},
    {"adaptive", FACE_DETECTOR_BLAZEFACE_ADAPTIVE},
    {"blazeface", FACE_DETECTOR_BLAZEFACE},
    {"blazeface-tiled", FACE_DETECTOR_BLAZEFACE_TILED},
    {"tiled", FACE_DETECTOR_BLAZEFACE_TILED},
    {"ssd-mobilenet", FACE_DETECTOR_SSD_MOBILENET},
    {"ssd", FACE_DETECTOR_SSD_MOBILENET},
};

int face_detector_parse(const char *text, face_detector *out)
{
    for (size_t i = 0; i < sizeof detector_names / sizeof detector_names[0]; i++) {
        if (strcmp(text, detector_names[i].name) == 0) {
            *out = detector_names[i].d;
            return 0;
        }
    }
    return -1;
}

const char *face_detector_name(face_detector d)
{
    for (size_t i = 0; i < sizeof detector_names / sizeof detector_names[0]; i++)
        if (detector_names[i].d == d) return detector_names[i].name;
    return "unknown";
}

int face_embedder_parse(const char *text, face_embedder *out)
{
    static const struct {
        const char *name;
        face_embedder e;
    } names[] = {
        {"default", FACE_EMBEDDER_DEFAULT},
        {"faceapi", FACE_EMBEDDER_FACEAPI_RESNET},
        {"faceapi-resnet", FACE_EMBEDDER_FACEAPI_RESNET},
        {"faceres", FACE_EMBEDDER_FACERES},
        {"mobileface", FACE_EMBEDDER_MOBILEFACE},
        {"mobilefacenet", FACE_EMBEDDER_MOBILEFACENET},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        /* an id names one embedder, never "the default" (which a later release may change:
         * a gallery pinned to an id must keep its model) */
        if (strcmp(text, names[i].name) == 0 ||
            (names[i].e != FACE_EMBEDDER_DEFAULT &&
             strcmp(text, face_embedder_id(names[i].e)) == 0)) {
            *out = names[i].e;
            return 0;
        }
    }
    return -1;
}

const char *face_embedder_id(face_embedder e)
{
    switch (e == FACE_EMBEDDER_DEFAULT ? DEFAULT_EMBEDDER : e) {
    case FACE_EMBEDDER_MOBILEFACENET: return "mobilefacenet-v1";
    case FACE_EMBEDDER_FACERES: return "faceres-v1";
    case FACE_EMBEDDER_FACEAPI_RESNET: return "faceapi-resnet-v1";
    case FACE_EMBEDDER_MOBILEFACE: return "mobileface-v1";
    default: return "unknown";
    }
}

int face_embedding_dim(face_embedder e)
{
    switch (e == FACE_EMBEDDER_DEFAULT ? DEFAULT_EMBEDDER : e) {
    case FACE_EMBEDDER_MOBILEFACENET: return 192;
    case FACE_EMBEDDER_FACERES: return 1024;
    case FACE_EMBEDDER_FACEAPI_RESNET: return 128;
    case FACE_EMBEDDER_MOBILEFACE: return 256;
    default: return 0;
    }
}

/* Thresholds on cosine similarity: the accuracy-maximising threshold on LFW pairsDevTrain
 * with this pipeline's alignment and flip averaging (README), giving on pairsDevTest:
 * faceapi-resnet 99.0%, faceres 96.2%, mobileface 95.8%, mobilefacenet 65.4%. */
float face_default_threshold(face_embedder e)
{
    switch (e == FACE_EMBEDDER_DEFAULT ? DEFAULT_EMBEDDER : e) {
    case FACE_EMBEDDER_MOBILEFACENET: return 0.992f;
    case FACE_EMBEDDER_FACERES: return 0.537f;
    case FACE_EMBEDDER_MOBILEFACE: return 0.195f;
    case FACE_EMBEDDER_FACEAPI_RESNET: return 0.912f;
    default: return 0.5f;
    }
}

static int load_one(const char *dir, face_model_id id, nn_model **out, face_models *m)
{
    char path[4096];
    int len = snprintf(path, sizeof path, "%s/%s", dir, model_files[id]);
    if (len < 0 || (size_t)len >= sizeof path)
        return base_error_set(BASE_ERR_LIMIT, "models folder path too long: %s", dir);
    int rc = id == FM_FACEAPI_RESNET      ? face_faceapi_resnet_load(path, out)
             : id == FM_FACEAPI_AGEGENDER ? face_faceapi_agegender_load(path, out)
             : id == FM_SSD_MOBILENET     ? face_ssd_load(path, out, &m->ssd_anchors)
                                          : nn_model_load_tfjs(path, NULL, out);
    /* Not logged here: the message names the file, and every caller reports it once (vultus
     * serve's log line, a command's stderr); logging it here too made two lines of one. */
    return rc;
}

int face_models_load(const face_models_options *opts, face_models **out)
{
    *out = NULL;
    face_models_options o = {0};
    if (opts) o = *opts;
    const char *dir = o.models_dir ? o.models_dir : "models";
    unsigned load = o.load ? o.load : FACE_STAGE_ALL;
    if (load & (FACE_STAGE_EMBED | FACE_STAGE_ATTRIBUTES | FACE_STAGE_LIVENESS | FACE_STAGE_QUALITY))
        load |= FACE_STAGE_LANDMARKS;
    /* No folder at all is a set-up step not done, not a broken model: say what to do rather
     * than which of its 13 files was looked for first. */
    struct stat st;
    int missing = stat(dir, &st) != 0 ? errno : !S_ISDIR(st.st_mode) ? ENOTDIR : 0;
    if (missing)
        return base_error_set(BASE_ERR_IO,
                              "models folder %s: %s: fetch the model pack (make models, or "
                              "tools/fetch-models) or point --models at it",
                              dir, strerror(missing));

    face_models *m = calloc(1, sizeof *m);
    if (!m) return base_error_set(BASE_ERR_NOMEM, "face models");
    m->embedder = o.embedder == FACE_EMBEDDER_DEFAULT ? DEFAULT_EMBEDDER : o.embedder;
    m->age_model = o.age_model == FACE_AGE_MODEL_DEFAULT ? DEFAULT_AGE_MODEL : o.age_model;
    face_blazeface_anchors(m->anchors);

    char want[FM_COUNT] = {0};
    want[FM_BLAZEFACE] = 1;
    if (o.detector == FACE_DETECTOR_SSD_MOBILENET) want[FM_SSD_MOBILENET] = 1;
    if (load & FACE_STAGE_LANDMARKS) want[FM_FACEMESH] = 1;
    if (load & FACE_STAGE_EMBED) {
        if (o.all_embedders) {
            want[FM_MOBILEFACENET] = want[FM_FACERES] = want[FM_MOBILEFACE] = 1;
            want[FM_FACEAPI_RESNET] = 1;
        } else {
            want[face_embedder_model(m->embedder)] = 1;
        }
    }
    if (load & FACE_STAGE_ATTRIBUTES) {
        want[FM_EMOTION] = 1;
        switch (m->age_model) {
        case FACE_AGE_MODEL_FACERES: want[FM_FACERES] = 1; break;
        case FACE_AGE_MODEL_GEAR: want[FM_GEAR] = 1; break;
        case FACE_AGE_MODEL_FACEAPI: want[FM_FACEAPI_AGEGENDER] = 1; break;
        default: want[FM_AGE] = want[FM_GENDER] = 1; break;
        }
    }
    if (load & FACE_STAGE_LIVENESS) want[FM_ANTISPOOF] = want[FM_LIVENESS] = 1;

    for (int i = 0; i < FM_COUNT; i++) {
        if (!want[i]) continue;
        int rc = load_one(dir, (face_model_id)i, &m->model[i], m);
        if (rc) {
            face_models_destroy(m);
            return rc;
        }
    }
    *out = m;
    return 0;
}

void face_models_destroy(face_models *m)
{
    if (!m) return;
    for (int i = 0; i < FM_COUNT; i++)
        nn_model_destroy(m->model[i]);
    free(m->ssd_anchors);
    free(m);
}

/* Tiles of the tiled detector run in batches of this many. */
#define DETECT_BATCH 4

int face_context_create(const face_models *m, int max_batch, face_context **out)
{
    *out = NULL;
    if (!m) return base_error_set(BASE_ERR_INVALID, "face context: no models");
    if (max_batch <= 0) max_batch = 8;
    if (max_batch > 256)
        return base_error_set(BASE_ERR_LIMIT, "face context: max_batch %d > 256", max_batch);
    face_context *c = calloc(1, sizeof *c);
    if (!c) return base_error_set(BASE_ERR_NOMEM, "face context");
    c->models = m;
    c->max_batch = max_batch;
    for (int i = 0; i < FM_COUNT; i++) {
        if (!m->model[i]) continue;
        int detector = i == FM_BLAZEFACE || i == FM_SSD_MOBILENET;
        /* the models with a crop run per face, each face as FACE_TTA_COPIES images (batch.c) */
        int per_face = face_crop_spec_for((face_model_id)i) != NULL;
        nn_context_options co = {.max_batch = detector   ? DETECT_BATCH
                                              : per_face ? FACE_TTA_COPIES * max_batch
                                                         : max_batch,
                                 .threads = 1};
        int rc = nn_context_create(m->model[i], &co, &c->ctx[i]);
        if (rc) {
            face_context_destroy(c);
            return rc;
        }
    }
    *out = c;
    return 0;
}

void face_context_destroy(face_context *c)
{
    if (!c) return;
    for (int i = 0; i < FM_COUNT; i++)
        nn_context_destroy(c->ctx[i]);
    free(c);
}
