/*
 * face_analyze_finish: the per-face models (embedder, age/gender, emotion, antispoof,
 * liveness) over faces gathered from any number of prepared results. Each model sees every
 * face that needs it, in engine runs of up to max_batch crops: the service batches the faces
 * of concurrent requests this way (src/http/server.c).
 *
 * A face's outputs do not depend on what it is batched with: the crops were made by prepare,
 * each face's rows of a run are its own (the engine has no cross-batch op), and the
 * accumulation per face is the same whatever the batch (tests/face/test_batch.c).
 */
#include "face/face_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OUTPUTS 4
/* Outputs longer than this are not attributes (faceres' 1024-d embedding). */
#define ATTRIBUTE_MAX_LEN 128
/*
 * Test-time augmentation (FACE_TTA_COPIES, face_internal.h): a run of `batch` faces is one
 * engine run of COPIES * batch images, the copy c of face b at image c * batch + b. One run
 * rather than one per copy: the engine's late layers (small maps, large weights: the ResNet's
 * 3x3x256x256 on 4x4 and 2x2, the fully connected heads) then see twice the rows per pass
 * over their weights, and a face alone is a batch of 2 (measured with callgrind in the commit
 * that made this change; an earlier measurement that favoured two runs predates the engine's
 * per-layer schedule, which keeps the early layers image by image).
 */
#define COPIES FACE_TTA_COPIES

/* A face to finish: slice->result->faces[index]. */
typedef struct finish_item {
    face_batch_slice *slice;
    int index;
} finish_item;

/* 1 / |v| (0 for a zero vector). */
static float unit_scale(const float *v, int dim)
{
    double norm = 0;
    for (int k = 0; k < dim; k++)
        norm += (double)v[k] * v[k];
    return norm > 0 ? (float)(1.0 / sqrt(norm)) : 0.0f;
}

unsigned face_model_roles(const face_models *m, face_model_id id, const struct face_pending *p)
{
    unsigned roles = 0;
    if ((p->stages & FACE_STAGE_EMBED) && face_embedder_model(p->embedder) == id)
        roles |= FACE_STAGE_EMBED;
    unsigned stage = face_model_stage(m, id);
    if (stage && (p->stages & stage)) roles |= stage;
    return roles;
}

/* Runs model id over the faces sel[0..n), max_batch at a time, and decodes their outputs. */
static int run_model(face_context *ctx, face_model_id id, const finish_item *sel, int n, float *acc)
{
    nn_context *nc = ctx->ctx[id];
    const nn_model *model = ctx->models->model[id];
    if (!nc || !model) return base_error_set(BASE_ERR_INVALID, "face model %d not loaded", (int)id);
    const face_crop_spec *spec = face_crop_spec_for(id);
    const size_t per = (size_t)spec->size * spec->size * (spec->grey ? 1 : 3);
    int n_out = nn_model_output_count(model);
    if (n_out > MAX_OUTPUTS) n_out = MAX_OUTPUTS;
    const char *embed_name = face_embedding_output(id);
    int embed_out = embed_name ? nn_model_output_index(model, embed_name) : -1;
    if (embed_name && embed_out < 0)
        return base_error_set(BASE_ERR_FORMAT, "face model %d: no output %s", (int)id, embed_name);
    face_decode_fn decode = face_model_decoder(id);
    float *in = nn_context_input(nc, 0);
    const size_t slot = (size_t)MAX_OUTPUTS * FACE_MAX_EMBEDDING; /* floats per face in acc */

    for (int first = 0; first < n; first += ctx->max_batch) {
        const int batch = n - first < ctx->max_batch ? n - first : ctx->max_batch;
        const uint64_t t0 = base_now_ns();
        int lens[MAX_OUTPUTS] = {0};
        for (int b = 0; b < batch; b++)
            memset(acc + slot * (size_t)b, 0, slot * sizeof *acc);
        for (int c = 0; c < COPIES; c++) {
            for (int b = 0; b < batch; b++) {
                const finish_item *it = &sel[first + b];
                const face_pending_face *pf = &it->slice->result->pending->faces[it->index];
                face_crop_fill(&pf->crop[id], spec, c, in + per * ((size_t)c * batch + b));
            }
        }
        int rc = nn_context_run(nc, COPIES * batch);
        if (rc) return rc;
        for (int o = 0; o < n_out; o++) {
            nn_io_info info;
            const float *out = nn_context_output(nc, o, &info);
            int len = 1;
            for (int d = 1; d < info.rank; d++)
                len *= (int)info.dim[d];
            lens[o] = len;
            if (o == embed_out) {
                if (len > FACE_MAX_EMBEDDING)
                    return base_error_set(BASE_ERR_FORMAT, "embedding of %d values", len);
            } else if (len > ATTRIBUTE_MAX_LEN) {
                continue;
            }
            /* copy 0 of every face first, then copy 1: each face's sum in the same order */
            for (int c = 0; c < COPIES; c++) {
                for (int b = 0; b < batch; b++) {
                    const float *row = out + ((size_t)c * batch + b) * len;
                    float *a = acc + slot * (size_t)b + (size_t)o * FACE_MAX_EMBEDDING;
                    /* embedding rows are averaged as unit vectors */
                    float scale = (o == embed_out ? unit_scale(row, len) : 1.0f) / (float)COPIES;
                    for (int k = 0; k < len; k++)
                        a[k] += row[k] * scale;
                }
            }
        }
        const double share = (double)(base_now_ns() - t0) / 1e6 / batch;
        for (int b = 0; b < batch; b++) {
            const finish_item *it = &sel[first + b];
            face_result *res = it->slice->result;
            face_info *f = &res->faces[it->index];
            const unsigned roles = face_model_roles(ctx->models, id, res->pending);
            const float *a = acc + slot * (size_t)b;
            if (roles & FACE_STAGE_EMBED) {
                const int dim = face_embedding_dim(res->pending->embedder);
                if (dim != lens[embed_out])
                    return base_error_set(BASE_ERR_FORMAT, "%s: embedding is not %d-d",
                                          face_embedder_id(res->pending->embedder), dim);
                const float *e = a + (size_t)embed_out * FACE_MAX_EMBEDDING;
                float inv = unit_scale(e, dim);
                for (int k = 0; k < dim; k++)
                    f->embedding[k] = e[k] * inv;
                f->embedding_dim = dim;
                f->embedding_model = face_embedder_id(res->pending->embedder);
            }
            if ((roles & ~(unsigned)FACE_STAGE_EMBED) && decode) {
                const float *rows[MAX_OUTPUTS] = {0};
                for (int o = 0; o < n_out; o++)
                    if (o != embed_out && lens[o] <= ATTRIBUTE_MAX_LEN)
                        rows[o] = a + (size_t)o * FACE_MAX_EMBEDDING;
                decode(f, rows, lens);
            }
            face_timing *t = &it->slice->timing;
            if (roles & FACE_STAGE_EMBED)
                t->embed_ms += share;
            else if (roles & FACE_STAGE_ATTRIBUTES)
                t->attributes_ms += share;
            else
                t->liveness_ms += share;
        }
    }
    return 0;
}

int face_analyze_finish(face_context *ctx, face_batch_slice *slices, int n)
{
    if (!ctx || (n > 0 && !slices))
        return base_error_set(BASE_ERR_INVALID, "face_analyze_finish: no context or slices");
    int total = 0;
    for (int s = 0; s < n; s++) {
        face_batch_slice *sl = &slices[s];
        memset(&sl->timing, 0, sizeof sl->timing);
        if (!sl->result || sl->first < 0 || sl->count < 0 ||
            sl->first + sl->count > sl->result->n_faces)
            return base_error_set(BASE_ERR_INVALID, "face_analyze_finish: slice %d out of range",
                                  s);
        if (sl->result->pending) total += sl->count;
    }
    if (total == 0) return 0;
    finish_item *items = malloc((size_t)total * 2 * sizeof *items);
    float *acc = malloc((size_t)ctx->max_batch * MAX_OUTPUTS * FACE_MAX_EMBEDDING * sizeof *acc);
    if (!items || !acc) {
        free(items);
        free(acc);
        return base_error_set(BASE_ERR_NOMEM, "face_analyze_finish: %d faces", total);
    }
    finish_item *todo = items, *sel = items + total;
    int n_todo = 0;
    for (int s = 0; s < n; s++) {
        struct face_pending *p = slices[s].result->pending;
        if (!p) continue;
        for (int i = slices[s].first; i < slices[s].first + slices[s].count; i++)
            if (!p->faces[i].done) todo[n_todo++] = (finish_item){&slices[s], i};
    }
    int rc = 0;
    for (int id = 0; id < FM_COUNT && !rc; id++) {
        int n_sel = 0;
        for (int i = 0; i < n_todo; i++) {
            const face_pending_face *pf = &todo[i].slice->result->pending->faces[todo[i].index];
            if (pf->crop[id].data) sel[n_sel++] = todo[i];
        }
        if (n_sel) rc = run_model(ctx, (face_model_id)id, sel, n_sel, acc);
    }
    for (int i = 0; i < n_todo && !rc; i++) {
        face_result *res = todo[i].slice->result;
        face_pending_face *pf = &res->pending->faces[todo[i].index];
        uint64_t t0 = base_now_ns();
        face_attributes_finish(&res->faces[todo[i].index], pf, res->pending->stages);
        for (int k = 0; k < FM_COUNT; k++)
            img_free(&pf->crop[k]);
        pf->done = 1;
        todo[i].slice->timing.attributes_ms +=
            res->pending->stages & (FACE_STAGE_ATTRIBUTES | FACE_STAGE_QUALITY) ? face_ms_since(t0)
                                                                                : 0;
    }
    free(items);
    free(acc);
    return rc;
}
