/*
 * face — the face pipeline: detect faces in an image, find landmarks, align, embed, and
 * estimate attributes (age, gender, emotion, head pose, quality, liveness).
 *
 * Objects and threads:
 *   - face_models holds every loaded model (immutable after face_models_load); share it.
 *   - face_context is one worker's state (engine contexts with planned scratch memory);
 *     use it from one thread at a time. Create one per worker thread.
 *   - face_result is filled by face_analyze() and owned by the caller (face_result_free).
 *
 * Coordinates are in pixels of the image passed in (x right, y down), floats.
 * Errors: negative BASE_ERR_* codes; base_error_message() names the problem.
 */
#ifndef VULTUS_FACE_H
#define VULTUS_FACE_H

#include "img/img.h"

#include <stddef.h>
#include <stdint.h>

#define FACE_MAX_EMBEDDING 1024
#define FACE_EMOTIONS 7
/* The smallest face looked for by default, in pixels of the image the detector sees: the
 * smallest face_result.min_face_size, which a large image raises. */
#define FACE_MIN_FACE_DEFAULT 20
/* The least quality (face_attributes.quality, 0..1) a face needs to be enrolled by default, by
 * `vultus enroll --min-quality` and POST /v1/collections/{c}/faces' min_quality alike: below it
 * the face is small, blurred or turned away enough that its embedding misleads 1:N search (a
 * face 29 px wide scores ~0.06; the fixtures' ID photos and portraits 0.5-0.9). */
#define FACE_MIN_QUALITY_DEFAULT 0.1

typedef struct face_models face_models;
typedef struct face_context face_context;

/* Which embedder; a gallery pins one. face_embedder_id() names it ("mobilefacenet-v1"...). */
typedef enum face_embedder {
    FACE_EMBEDDER_DEFAULT = 0, /* FACEAPI_RESNET: the best on LFW (99.0% DevTest); see README */
    FACE_EMBEDDER_MOBILEFACENET,
    FACE_EMBEDDER_FACERES,
    FACE_EMBEDDER_FACEAPI_RESNET, /* face-api's port of dlib's ResNet, 128-d, built in C */
    FACE_EMBEDDER_MOBILEFACE,
} face_embedder;

typedef enum face_detector {
    FACE_DETECTOR_DEFAULT = 0, /* BLAZEFACE_ADAPTIVE: TILED's WIDER accuracy, one pass's cost on
                                  portraits; see README */
    FACE_DETECTOR_BLAZEFACE,   /* blazeface-back, 256x256, one pass (two for images <= 400 px) */
    FACE_DETECTOR_BLAZEFACE_TILED, /* blazeface-back over 256x256 tiles of a pyramid of scales, for
                                      photos with many small faces; 0.1-1 s per photo */
    FACE_DETECTOR_SSD_MOBILENET,   /* face-api SSD-MobileNetV1 (512x512, built in C); needs
                                      face_models_options.detector; see README */
    FACE_DETECTOR_BLAZEFACE_ADAPTIVE, /* one pass, then TILED's finer levels unless it found one
                                         face spanning 0.2 of the shorter side (a portrait);
                                         JPEGs decoded to >= 540 px on the shorter side */
} face_detector;

/* Stages of face_analyze(); OR them. Detection always runs. */
enum face_stage {
    FACE_STAGE_DETECT = 0,
    FACE_STAGE_LANDMARKS = 1 << 0, /* implied by EMBED, ATTRIBUTES, LIVENESS and QUALITY */
    FACE_STAGE_EMBED = 1 << 1,
    FACE_STAGE_ATTRIBUTES = 1 << 2, /* age, gender, emotion, and QUALITY's */
    FACE_STAGE_LIVENESS = 1 << 3,
    FACE_STAGE_QUALITY = 1 << 4, /* pose, sharpness and quality alone: no model runs for them
                                    (what enrolment records and filters on) */
    FACE_STAGE_ALL = 0x1f,
};

typedef struct face_options {
    unsigned stages; /* enum face_stage bits */
    face_detector detector;
    face_embedder embedder;
    float min_score;   /* detection score threshold; 0: the detector's default (0.5) */
    int min_face_size; /* pixels of the full-size upright image (shorter side of the
                          detector's box); 0: 20 pixels of the image the detector sees
                          (face_analyze_bytes may decode a JPEG reduced for it). A larger
                          value filters the default search's faces (the same boxes), it does
                          not make the search cheaper */
    int max_faces;     /* 0: 100; the largest faces are kept */
    img_limits limits; /* face_analyze_bytes: checked against the stored image size (and
                          the byte count) before anything is decoded; a zero field: the
                          decoder's default (img.h) */
} face_options;

typedef struct face_point {
    float x, y;
} face_point;

/* The four factors whose product is face_attributes.quality, each 0..1 (attributes.c says how
 * each is computed): kept so that a refusal can say which of them pulled the quality down. */
typedef struct face_quality_factors {
    float size;      /* min(1, eye distance / 40 px) */
    float sharpness; /* s / (s + 100), s the variance of the Laplacian of the aligned crop */
    float pose;      /* cos(yaw) * cos(pitch) */
    float detector;  /* the detection score */
} face_quality_factors;

typedef struct face_attributes {
    float age;                    /* years */
    float gender_male;            /* probability 0..1 that the face is male */
    float emotion[FACE_EMOTIONS]; /* probabilities: angry, disgust, fear, happy, sad, surprise,
                                     neutral */
    float yaw, pitch, roll;       /* degrees; 0 is frontal, upright */
    float quality;                /* 0..1: size * sharpness * pose * detector score, each 0..1
                                     (formula in attributes.c and the README) */
    float sharpness;              /* variance of the Laplacian of the 112x112 aligned face (raw) */
    face_quality_factors quality_factors; /* quality's factors, each 0..1 */
} face_attributes;

typedef struct face_liveness {
    float score;     /* 0..1, sqrt(antispoof * liveness); higher = more likely live. Weak:
                        see README for what it catches and misses */
    float antispoof; /* the antispoof model's real-face probability */
    float liveness;  /* the liveness model's live probability */
} face_liveness;

typedef struct face_timing {
    double decode_ms, detect_ms, landmarks_ms, align_ms, embed_ms, attributes_ms, liveness_ms;
} face_timing;

typedef struct face_info {
    float x, y, w, h;         /* box, forehead to chin (WIDER FACE's convention); not clipped:
                                 a face cut by the image's border has a box, keypoints and
                                 landmarks reaching past it */
    float score;              /* detector confidence 0..1 */
    face_point keypoints[6];  /* detector keypoints: right eye, left eye, nose, mouth, right ear,
                                 left ear (subject's) */
    face_point landmarks5[5]; /* alignment points: left eye, right eye, nose, left mouth corner,
                                 right mouth corner (as seen in the image) */
    int has_landmarks;
    float embedding[FACE_MAX_EMBEDDING]; /* L2-normalised */
    int embedding_dim;                   /* 0 when not computed */
    const char *embedding_model; /* static string: face_embedder_id() of the model that made it */
    face_attributes attributes;
    int has_attributes; /* age, gender, emotion (and the quality fields) */
    int has_quality;    /* yaw, pitch, roll, sharpness and quality */
    face_liveness liveness;
    int has_liveness;
    img_image aligned; /* the 112x112 ArcFace-aligned crop (embedding or attributes stage),
                          for thumbnails and sharpness; owned */
} face_info;

struct face_pending;

typedef struct face_result {
    int width, height; /* of the analysed image */
    int min_face_size; /* the smallest face the detector looked for, in pixels of the analysed
                          image (shorter side of the box): none smaller is reported. The
                          default 20 counts pixels of the image the detector sees, so it grows
                          with a JPEG decoded reduced and, for the adaptive detector, with an
                          image over 1080 lines (detect.c): 160 on a 6000x6000 JPEG. Set so
                          that callers can say why a large photo of small faces gave none */
    int n_faces;
    face_info *faces; /* sorted by box area, largest first; owned */
    face_timing timing;
    struct face_pending *pending; /* private: the per-face model work still to run after
                                     face_analyze_prepare*(); NULL when complete */
} face_result;

/* Which model estimates age and gender; DEFAULT is chosen by measurement on UTKFace (README). */
typedef enum face_age_model {
    FACE_AGE_MODEL_DEFAULT = 0,
    FACE_AGE_MODEL_FACERES, /* faceres' age (100 bins) and gender heads */
    FACE_AGE_MODEL_GEAR,    /* GEAR: age (7 bins), gender, race */
    FACE_AGE_MODEL_SSRNET,  /* the separate SSR-Net age and gender models */
    FACE_AGE_MODEL_FACEAPI, /* face-api's age/gender network (TinyXception), built in C */
} face_age_model;

typedef struct face_models_options {
    const char
        *models_dir; /* folder with human/ and faceapi/ from tools/fetch-models; NULL: "models" */
    unsigned load;   /* which stages to load models for (enum face_stage bits); 0: all */
    face_embedder embedder;   /* which embedder(s) to load; DEFAULT: the default one only */
    int all_embedders;        /* load every embedder (for evaluation) */
    face_age_model age_model; /* which age/gender model to load and use; DEFAULT: see README */
    face_detector detector;   /* SSD_MOBILENET: also load face-api's SSD (BlazeFace is always
                                 loaded); other values load BlazeFace only */
} face_models_options;

int face_models_load(const face_models_options *opts, face_models **out);
void face_models_destroy(face_models *m);

/* max_batch: the most faces per engine run (crops of one image); more faces run in several
 * batches. It also sizes each model's scratch memory; 8 is a good default. */
int face_context_create(const face_models *m, int max_batch, face_context **out);
void face_context_destroy(face_context *ctx);

/* Runs the pipeline on an upright RGB image; coordinates are in its pixels. */
int face_analyze(face_context *ctx, const img_image *image, const face_options *opts,
                 face_result *out);
void face_result_free(face_result *r);

/* Decodes (EXIF applied) then analyses; fills timing.decode_ms. A JPEG is decoded once at a
 * reduced DCT scale when that keeps what the stages need (see analyze.c), so coordinates,
 * width and height are always those of the full-size upright image. */
int face_analyze_bytes(face_context *ctx, const uint8_t *data, size_t len, const face_options *opts,
                       face_result *out);

/*
 * The pipeline in two halves, so that the per-face models (embedder, age/gender, emotion,
 * antispoof, liveness) can run over the faces of several images in one engine run:
 *
 *   face_analyze_prepare() / face_analyze_prepare_bytes(): the per-image part: decode, detect,
 *     landmarks, pose, and the aligned crops of every face for each per-face model its stages
 *     need (timing.align_ms). The result has boxes, keypoints and landmarks; the embeddings,
 *     attributes and liveness come from face_analyze_finish(). face_result_pending() counts
 *     the faces still waiting for it.
 *   face_analyze_finish(): the per-face models over any faces of any prepared results (slices),
 *     in engine runs of up to the context's max_batch crops per model. A face gets the same
 *     outputs whatever it is batched with (tests/face/test_batch.c).
 *
 * face_analyze() and face_analyze_bytes() are prepare followed by finish on the same result.
 * Threads: different slices of one result (disjoint faces) may be finished at the same time on
 * different contexts; each slice's timing is written to the slice, not to the result, for
 * that reason. face_result_free() releases what prepare kept (the crops).
 */
int face_analyze_prepare(face_context *ctx, const img_image *image, const face_options *opts,
                         face_result *out);
int face_analyze_prepare_bytes(face_context *ctx, const uint8_t *data, size_t len,
                               const face_options *opts, face_result *out);
/* Faces of a prepared result that still need face_analyze_finish() (0 when complete). */
int face_result_pending(const face_result *r);

typedef struct face_batch_slice {
    face_result *result; /* prepared */
    int first, count;    /* its faces [first, first + count) */
    face_timing timing;  /* out: the slice's share (by face count) of embed, attributes and
                            liveness time of the runs it took part in */
} face_batch_slice;

/* Runs the per-face models for every face of the slices (each face once: a face finished
 * before is skipped). Returns 0 or the first error; on error the faces are left incomplete. */
int face_analyze_finish(face_context *ctx, face_batch_slice *slices, int n);

/* Parses a detector's command-line name (FACE_DETECTOR_NAMES; the short forms adaptive, tiled
 * and ssd too). Returns 0, or -1 when unknown. */
int face_detector_parse(const char *text, face_detector *out);
#define FACE_DETECTOR_NAMES "default, blazeface-adaptive, blazeface, blazeface-tiled, ssd-mobilenet"
/* The canonical name of a detector ("default" for FACE_DETECTOR_DEFAULT). */
const char *face_detector_name(face_detector d);

const char *face_embedder_id(face_embedder e);
/* Parses a command-line or API name: "default", "faceapi" (or "faceapi-resnet"), "faceres",
 * "mobileface", "mobilefacenet", or an id from face_embedder_id() (which never parses to
 * FACE_EMBEDDER_DEFAULT). Returns 0, or -1 when unknown. */
int face_embedder_parse(const char *text, face_embedder *out);
int face_embedding_dim(face_embedder e);
/* Cosine similarity of two L2-normalised embeddings. */
float face_similarity(const float *a, const float *b, int dim);
/*
 * The face an image is "of", where one face is wanted (enrol, verify): the most prominent, the
 * largest area in view (its box clipped to the image) weighed by nearness to the centre (1 at
 * the centre, 0 at a corner). Its index in res->faces (0 when there is none). See geometry.c.
 */
int face_most_prominent(const face_result *res);
/* The accuracy-maximising threshold on similarity for an embedder (LFW pairsDevTrain, see
 * README): for evaluation. Decisions use face_threshold_at_far(). */
float face_default_threshold(face_embedder e);
/*
 * The decision threshold for a false-accept rate `far`: where the embedder is calibrated at
 * that rate (faceapi-resnet-v1 at 1e-3 and 1e-4, on every different-person pair of lfw-dev,
 * docs/gallery.md), the calibrated similarity; a rate between two calibrated ones gets the
 * stricter; elsewhere face_default_threshold(). FACE_DECISION_FAR is what `vultus gallery`,
 * `vultus verify` and the service use unless told otherwise, so they give the same decision.
 */
#define FACE_DECISION_FAR 1e-3
float face_threshold_at_far(face_embedder e, double far);

/* --- pure helpers, exported for tests ---------------------------------------------------- */

/* Least-squares similarity transform (Umeyama, no reflection) mapping src[i] to dst[i];
 * m is 2x3 row-major: dst = m * (src, 1). Returns 0 or an error when degenerate. */
int face_similarity_transform(const face_point *src, const face_point *dst, int n, float m[6]);

typedef struct face_box {
    float x, y, w, h, score;
    face_point keypoints[6];
} face_box;
/* Weighted non-maximum suppression as MediaPipe does it (boxes with IoU > iou_threshold are
 * blended, weighted by score). In place; returns the number kept, sorted by score. */
int face_weighted_nms(face_box *boxes, int n, float iou_threshold);
float face_iou(const face_box *a, const face_box *b);

#endif
