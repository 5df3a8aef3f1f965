/*
 * Private to src/face: the loaded models, a worker's engine contexts, and the stages of the
 * pipeline as separate functions (detect.c, landmarks.c, align.c, embed.c, attributes.c,
 * analyze.c) so each can be tested and timed on its own.
 */
#ifndef VULTUS_FACE_INTERNAL_H
#define VULTUS_FACE_INTERNAL_H

#include "base/base.h"
#include "face/face.h"
#include "nn/nn.h"

/* Every model the pipeline may use; a face_models holds the ones a deployment asked for. */
typedef enum face_model_id {
    FM_BLAZEFACE,         /* human/blazeface-back: 256x256 RGB in [-1,1] */
    FM_FACEMESH,          /* human/facemesh: 192x192 RGB in [0,1], 468 landmarks */
    FM_MOBILEFACENET,     /* human/mobilefacenet: 112x112 ArcFace-aligned, (p-127.5)/128, 192-d */
    FM_FACERES,           /* human/faceres: 224x224, 1024-d + gender + age (100 bins) */
    FM_MOBILEFACE,        /* human/mobileface: 112x112, 256-d */
    FM_GEAR,              /* human/gear: 198x198 RGB, age (7 bins), gender (2), race (5) */
    FM_AGE,               /* human/age (SSR-Net): 64x64 RGB in [0,255], age in years */
    FM_GENDER,            /* human/gender (SSR-Net): 64x64 grey in [-1,1], [female, male] */
    FM_EMOTION,           /* human/emotion: 64x64 grey in [-1,1], 7 classes */
    FM_ANTISPOOF,         /* human/antispoof: 128x128 RGB in [0,1], real-face probability */
    FM_LIVENESS,          /* human/liveness: 32x32 RGB in [0,1], [live, not live] */
    FM_FACEAPI_RESNET,    /* faceapi/face_recognition_model: dlib's ResNet, 150x150, 128-d */
    FM_FACEAPI_AGEGENDER, /* faceapi/age_gender_model: TinyXception, 112x112, age + gender */
    FM_SSD_MOBILENET,     /* faceapi/ssd_mobilenetv1_model: 512x512 face detector, built in C */
    FM_COUNT
} face_model_id;

/*
 * How a model wants its face crop: the 5-point ArcFace template (defined at 112x112) mapped
 * into a size x size crop, zoomed out by `zoom` around the template's centre (zoom < 1 leaves
 * more context around the face), shifted down by `shift_y` (fraction of the crop), and the
 * pixels turned into floats as p * scale + offset[channel] (grey: one channel, offset[0]).
 */
typedef struct face_crop_spec {
    int size;
    float zoom, shift_y;
    float scale, offset[3];
    int grey;
} face_crop_spec;

struct face_models {
    nn_model *model[FM_COUNT]; /* NULL when not loaded */
    face_embedder embedder;    /* the default embedder, resolved (never DEFAULT) */
    face_age_model age_model;  /* resolved */
    float anchors[896][2];     /* BlazeFace anchor centres in input pixels */
    float (*ssd_anchors)[4];   /* FM_SSD_MOBILENET's anchors (malloc'd); NULL when not loaded */
};

/*
 * Test-time augmentation: each face runs through every per-face model as itself and mirrored
 * and the outputs are averaged (embeddings: the two unit vectors; +0.1-0.3% on LFW; age: lower
 * error on UTKFace). Both copies of a face go in the same engine run (batch.c), so the
 * contexts of the per-face models hold FACE_TTA_COPIES images per face (models.c).
 */
#define FACE_TTA_COPIES 2

struct face_context {
    const face_models *models;
    int max_batch; /* faces per engine run; per-face models run FACE_TTA_COPIES images each */
    nn_context *ctx[FM_COUNT];
};

/* The crop each model wants (see face_crop_spec); NULL for the detector and the mesh. */
const face_crop_spec *face_crop_spec_for(face_model_id id);
face_model_id face_embedder_model(face_embedder e);
/* For measurement loops only: replaces model id's crop (NULL restores the default). It is
 * configuration: call it before any context runs, never while other threads analyse. */
void face_crop_spec_override(face_model_id id, const face_crop_spec *spec);

/* --- detection (detect.c) ------------------------------------------------------------------ */

#define FACE_BLAZEFACE_SIZE 256
#define FACE_BLAZEFACE_ANCHORS 896

void face_blazeface_anchors(float anchors[896][2]);
/* DEFAULT -> the detector it stands for; others unchanged. */
face_detector face_detector_resolve(face_detector d);
/* The shorter side a JPEG may be decoded down to for detector d when the later stages want
 * `side` (0: full size); see detect.c. */
int face_detect_decode_side(face_detector d, int side);
/* The smallest face face_detect() looks for in a w x h image with these options, in pixels
 * of that image (face_result.min_face_size before any rescaling). */
int face_detect_min_size(const face_options *opts, int w, int h);

/* face-api's SSD-MobileNetV1 (ssd.c): 512x512 RGB in [-1, 1]; outputs "boxes" [B,5118,4]
 * (box encodings) and "classes" [B,5118,3] (logits; 1 is the face). The anchors (ymin, xmin,
 * ymax, xmax in [0, 1]) come with the weights; *anchors is malloc'd. */
#define FACE_SSD_SIZE 512
#define FACE_SSD_ANCHORS 5118
int face_ssd_load(const char *manifest_path, nn_model **out, float (**anchors)[4]);
/* One box (ymin, xmin, ymax, xmax) from its anchor and encoding, as TF's box coder does. */
void face_ssd_decode_box(const float anchor[4], const float enc[4], float box[4]);

/*
 * Detects faces with BlazeFace on the whole image (letterboxed into 256x256) or over tiles at
 * several scales (tiled). Boxes are in image pixels, weighted-NMS'd, filtered by score and
 * size, sorted by score. *boxes is malloc'd (free it); *n its length.
 */
int face_detect(face_context *ctx, const img_image *image, const face_options *opts,
                face_box **boxes, int *n);

/* --- landmarks and alignment (landmarks.c, align.c) ---------------------------------------- */

#define FACE_MESH_POINTS 468
#define FACE_MESH_SIZE 192

/* Per face: the 468 mesh points (x, y, z) in image pixels and the mesh's face probability. */
typedef struct face_mesh {
    float points[FACE_MESH_POINTS][3];
    float confidence;
} face_mesh;

/* Runs the mesh on each face (boxes[i] with its keypoints); fills meshes[0..n). */
int face_landmarks(face_context *ctx, const img_image *image, const face_box *boxes, int n,
                   face_mesh *meshes);
/* The 5 alignment points (left eye, right eye, nose tip, left and right mouth corner, as seen
 * in the image) from a mesh. */
void face_mesh_points5(const face_mesh *mesh, face_point out[5]);
/* The same from BlazeFace's 6 keypoints (the mouth corners estimated from the mouth centre). */
void face_keypoints_points5(const face_box *box, face_point out[5]);
/* Head pose in degrees from the 3-D mesh (see landmarks.c for the axes). */
void face_mesh_pose(const face_mesh *mesh, float *yaw, float *pitch, float *roll);
/* A rougher pose from the 5 points when there is no mesh. */
void face_points5_pose(const face_point p[5], float *yaw, float *pitch, float *roll);

/* The ArcFace 112x112 template. */
extern const face_point face_arcface_template[5];

/* The output->source matrix (for img_warp_affine) of the crop `spec` for landmarks pts. */
int face_crop_matrix(const face_point pts[5], const face_crop_spec *spec, float m[6]);
/* Warps the crop and writes it as floats (spec->scale, offset, grey) to dst. If keep is not
 * NULL, the 8-bit crop is returned there (owned by the caller). */
int face_crop_to_input(const img_image *image, const face_point pts[5], const face_crop_spec *spec,
                       float *dst, img_image *keep);

/* The same, mirrored left to right when flip is set. */
int face_crop_to_input_flip(const img_image *image, const face_point pts[5],
                            const face_crop_spec *spec, int flip, float *dst, img_image *keep);

/* The 8-bit RGB crop `spec` for landmarks pts (spec->size square). */
int face_crop_make(const img_image *image, const face_point pts[5], const face_crop_spec *spec,
                   img_image *crop);
/* A crop from face_crop_make as the model's floats (spec->scale, offset, grey), mirrored left
 * to right when flip is set: exactly the floats face_crop_to_input_flip() writes, up to the
 * rounding of the mirrored warp's coordinates. */
void face_crop_fill(const img_image *crop, const face_crop_spec *spec, int flip, float *dst);

/* --- the per-face models after prepare (batch.c, embed.c, attributes.c) -------------------- */

/* What face_analyze_prepare*() leaves for face_analyze_finish(), per face: the 8-bit crop of
 * each per-face model that runs on it (crop[id].data is NULL for the others). */
typedef struct face_pending_face {
    img_image crop[FM_COUNT];
    float eye_distance; /* between the alignment eyes, in the analysed image's pixels */
    int done;
} face_pending_face;

struct face_pending {
    unsigned stages;        /* effective enum face_stage bits */
    face_embedder embedder; /* resolved */
    int n;                  /* faces (== the result's n_faces) */
    face_pending_face *faces;
};

/* The stage whose outputs model id gives with m's age model, besides any embedding:
 * FACE_STAGE_ATTRIBUTES, FACE_STAGE_LIVENESS or 0. */
unsigned face_model_stage(const face_models *m, face_model_id id);

/* Called per face with the model's outputs for that face, averaged over the copies (the
 * mirrored crop); rows of embedding models are each scaled to unit length first. */
typedef void (*face_decode_fn)(face_info *f, const float *const *out, const int *len);
/* Which stages model id serves for the faces of pending p: FACE_STAGE_EMBED and/or its
 * attribute or liveness stage; prepare makes a crop for model id exactly when this is not 0
 * (batch.c). */
unsigned face_model_roles(const face_models *m, face_model_id id, const struct face_pending *p);
/* The decoder of a per-face model's outputs; NULL when id is not one. */
face_decode_fn face_model_decoder(face_model_id id);
/* Embedders: the output that holds the embedding (embed.c). */
const char *face_embedding_output(face_model_id id);
/* After the models: sharpness, quality, liveness score, flags (attributes.c). */
void face_attributes_finish(face_info *f, const face_pending_face *p, unsigned stages);
/* The crop kept in face_info.aligned when the embedder's is not 112x112 (attributes.c). */
extern const face_crop_spec face_arcface_crop;

/* Builds face-api's 128-d ResNet (dlib's face recognition network) from its weights manifest
 * with the nn builder. */
int face_faceapi_resnet_load(const char *manifest_path, nn_model **out);
/* Builds face-api's age and gender network (TinyXception + two heads). */
int face_faceapi_agegender_load(const char *manifest_path, nn_model **out);

/* Variance of the Laplacian of a grey version of img (sharpness). */
float face_sharpness(const img_image *img);

static inline double face_ms_since(uint64_t t0_ns)
{
    return (double)(base_now_ns() - t0_ns) / 1e6;
}

#endif
