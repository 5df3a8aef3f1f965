/*
 * Identity embeddings: the aligned crops of all faces go through the embedder in batches of
 * up to max_batch per engine run; vectors are L2-normalised and tagged with the model's id.
 */
#include "face/face_internal.h"

#include <math.h>
#include <string.h>

/* Whether to add the mirrored face's embedding (see face_embed). */
#define EMBED_FLIP 1

/* 1 / |v| (0 for a zero vector). */
static float unit_scale(const float *v, int dim)
{
    double norm = 0;
    for (int k = 0; k < dim; k++) norm += (double)v[k] * v[k];
    return norm > 0 ? (float)(1.0 / sqrt(norm)) : 0.0f;
}

static const char *embedding_output(face_model_id id)
{
    switch (id) {
    case FM_FACERES: return "global_pooling/Mean";
    case FM_MOBILEFACENET: return "embeddings";
    case FM_MOBILEFACE: return "batchnorm0/add_1";
    case FM_FACEAPI_RESNET: return "descriptor";
    default: return NULL;
    }
}

int face_embed(face_context *ctx, const img_image *image, face_embedder e, face_info *faces, int n)
{
    if (e == FACE_EMBEDDER_DEFAULT) e = ctx->models->embedder;
    face_model_id id = face_embedder_model(e);
    if (id == FM_COUNT) return base_error_set(BASE_ERR_UNSUPPORTED, "embedder %s is not available", face_embedder_id(e));
    nn_context *nc = ctx->ctx[id];
    if (!nc) return base_error_set(BASE_ERR_INVALID, "embedder %s not loaded", face_embedder_id(e));
    const nn_model *model = ctx->models->model[id];
    int out_index = nn_model_output_index(model, embedding_output(id));
    if (out_index < 0) return base_error_set(BASE_ERR_FORMAT, "%s: no output %s", face_embedder_id(e), embedding_output(id));
    const face_crop_spec *spec = face_crop_spec_for(id);
    const int dim = face_embedding_dim(e);
    const size_t per = (size_t)spec->size * spec->size * 3;
    float *in = nn_context_input(nc, 0);
    /* Test-time augmentation: each face is embedded as itself and mirrored and the two unit
     * vectors are summed (+0.1-0.3% on LFW). The mirrored crops go in a second run rather
     * than the same batch: measured, a batch of 2 costs more than 2 batches of 1 on the
     * ResNet (activations no longer fit in cache). */
    const int copies = EMBED_FLIP ? 2 : 1;
    for (int first = 0; first < n; first += ctx->max_batch) {
        int batch = n - first < ctx->max_batch ? n - first : ctx->max_batch;
        for (int b = 0; b < batch; b++)
            for (int k = 0; k < dim; k++) faces[first + b].embedding[k] = 0;
        for (int c = 0; c < copies; c++) {
            for (int b = 0; b < batch; b++) {
                face_info *f = &faces[first + b];
                /* keep the 112x112 ArcFace crop for thumbnails and sharpness */
                img_image *keep = c || f->aligned.data || spec->size != 112 ? NULL : &f->aligned;
                int rc = face_crop_to_input_flip(image, f->landmarks5, spec, c, in + per * (size_t)b, keep);
                if (rc) return rc;
            }
            int rc = nn_context_run(nc, batch);
            if (rc) return rc;
            nn_io_info info;
            const float *out = nn_context_output(nc, out_index, &info);
            if (info.rank < 2 || info.dim[info.rank - 1] != dim)
                return base_error_set(BASE_ERR_FORMAT, "%s: embedding is not %d-d", face_embedder_id(e), dim);
            for (int b = 0; b < batch; b++) {
                const float *u = out + (size_t)b * dim;
                float inv = unit_scale(u, dim);
                for (int k = 0; k < dim; k++) faces[first + b].embedding[k] += u[k] * inv;
            }
        }
        for (int b = 0; b < batch; b++) {
            face_info *f = &faces[first + b];
            float inv = unit_scale(f->embedding, dim);
            for (int k = 0; k < dim; k++) f->embedding[k] *= inv;
            f->embedding_dim = dim;
            f->embedding_model = face_embedder_id(e);
        }
    }
    return 0;
}
