/*
 * The face routes: POST /v1/detect, /v1/analyze, /v1/embed, /v1/verify, and the pipeline
 * helper the gallery routes share (enrol and search decode and embed the same way).
 */
#include "http/internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Verify's stages for the photo of the person present (image, image_a): the embedding, and
 * what a desk needs to judge the face: its quality (no model: pose and sharpness from the
 * aligned crop) and liveness (two small models, on 128 px and 32 px crops). */
#define VERIFY_STAGES (FACE_STAGE_EMBED | FACE_STAGE_QUALITY | FACE_STAGE_LIVENESS)
/* ...and for the reference (image_b, the scan of an ID photo): no liveness unless the request
 * asks for it (liveness_b). A document's photo is a photo of a photo by nature: its liveness
 * says nothing and decides nothing (min_liveness checks image_a), and its two models cost
 * half of verify's liveness stage: 4.0-4.3 ms per two-image verify of 43-45 ms before, 2.5-3.2
 * after (/metrics' stage sums over 30-40 verifies of the fixtures' ID photos, --workers 1, the
 * quieter runs on a shared 2-core machine). Chosen per image, so the models never run for it,
 * rather than run and their result dropped. */
#define VERIFY_REFERENCE_STAGES (FACE_STAGE_EMBED | FACE_STAGE_QUALITY)

/* The stages image_b runs with: the prepare step asks for what the handler will (a value
 * liveness_b refuses was answered by the precheck already). */
static unsigned verify_stages_b(http_request *r, http_input *in)
{
    int liveness_b = 0;
    if (http_input_bool(r, in, "liveness_b", 0, &liveness_b)) return VERIFY_REFERENCE_STAGES;
    return liveness_b ? VERIFY_STAGES : VERIFY_REFERENCE_STAGES;
}

static const char *const emotion_names[FACE_EMOTIONS] = {"angry", "disgust",  "fear",   "happy",
                                                         "sad",   "surprise", "neutral"};

/* Floats as JSON with 6 decimals at most: coordinates and scores need no more, and the
 * responses stay short. Non-finite values (never expected) become null. */
static json_t *num(double v)
{
    if (!isfinite(v)) return json_null();
    return json_real(round(v * 1e6) / 1e6);
}

static json_t *point(face_point p)
{
    return json_pack("[o,o]", num(p.x), num(p.y));
}

json_t *http_box_json(const face_info *f)
{
    return json_pack("{s:o,s:o,s:o,s:o}", "x", num(f->x), "y", num(f->y), "width", num(f->w),
                     "height", num(f->h));
}

json_t *http_face_json(const face_info *f, int with_embedding)
{
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, "box", http_box_json(f));
    json_object_set_new(o, "score", num(f->score));
    static const char *kp[6] = {"right_eye", "left_eye", "nose", "mouth", "right_ear", "left_ear"};
    json_t *k = json_object();
    for (int i = 0; i < 6; i++)
        json_object_set_new(k, kp[i], point(f->keypoints[i]));
    json_object_set_new(o, "keypoints", k);
    if (f->has_landmarks) {
        static const char *lm[5] = {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"};
        json_t *l = json_object();
        for (int i = 0; i < 5; i++)
            json_object_set_new(l, lm[i], point(f->landmarks5[i]));
        json_object_set_new(o, "landmarks", l);
    }
    if (f->has_attributes) {
        const face_attributes *a = &f->attributes;
        json_t *em = json_object();
        int best = 0;
        for (int i = 0; i < FACE_EMOTIONS; i++) {
            json_object_set_new(em, emotion_names[i], num(a->emotion[i]));
            if (a->emotion[i] > a->emotion[best]) best = i;
        }
        int male = a->gender_male >= 0.5f;
        json_object_set_new(o, "attributes",
                            json_pack("{s:o,s:s,s:o,s:o,s:s,s:{s:o,s:o,s:o},s:o,s:o}", "age",
                                      num(a->age), "gender", male ? "male" : "female",
                                      "gender_confidence",
                                      num(male ? a->gender_male : 1 - a->gender_male), "emotion",
                                      em, "dominant_emotion", emotion_names[best], "pose", "yaw",
                                      num(a->yaw), "pitch", num(a->pitch), "roll", num(a->roll),
                                      "quality", num(a->quality), "sharpness", num(a->sharpness)));
    }
    if (f->has_liveness)
        json_object_set_new(o, "liveness",
                            json_pack("{s:o,s:o,s:o}", "score", num(f->liveness.score), "antispoof",
                                      num(f->liveness.antispoof), "liveness",
                                      num(f->liveness.liveness)));
    if (with_embedding && f->embedding_dim > 0) {
        json_t *e = json_array();
        for (int i = 0; i < f->embedding_dim; i++)
            json_array_append_new(e, json_real(round((double)f->embedding[i] * 1e7) / 1e7));
        json_object_set_new(o, "embedding", e);
        json_object_set_new(o, "embedding_model",
                            json_string(f->embedding_model ? f->embedding_model : ""));
    }
    return o;
}

static void add_timing(http_request *r, const face_timing *t)
{
    r->timing.decode_ms += t->decode_ms;
    r->timing.detect_ms += t->detect_ms;
    r->timing.landmarks_ms += t->landmarks_ms;
    r->timing.align_ms += t->align_ms;
    r->timing.embed_ms += t->embed_ms;
    r->timing.attributes_ms += t->attributes_ms;
    r->timing.liveness_ms += t->liveness_ms;
    r->has_timing = 1;
}

int http_run_face(http_request *r, http_worker *w, const uint8_t *data, size_t len, unsigned stages,
                  face_result *out)
{
    return http_run_face_keep(r, w, data, len, stages, out, NULL);
}

void http_respond_no_face(http_request *r, const char *what, const face_result *res)
{
    if (res->min_face_size > FACE_MIN_FACE_DEFAULT)
        http_respond_error(r, 422, "no_face",
                           "no face found in %s: in a %dx%d image faces smaller than %d px are "
                           "not looked for; crop it around the faces (a smaller image is searched "
                           "for smaller faces, down to %d px)",
                           what, res->width, res->height, res->min_face_size,
                           FACE_MIN_FACE_DEFAULT);
    else
        http_respond_error(r, 422, "no_face",
                           "no face found in %s (faces smaller than %d px are not looked for)",
                           what, res->min_face_size);
}

/* Verify against a subject that has no face yet: names both (quoted: ids may hold spaces) and
 * says what to do, since an empty subject is usually one created before its photo. */
static void respond_no_enrolled_face(http_request *r, const char *collection, const char *subject)
{
    http_respond_error(r, 422, "no_enrolled_face",
                       "subject \"%s\" of collection \"%s\" has no enrolled face: enrol a photo "
                       "of them first (POST /v1/collections/{collection}/faces)",
                       subject, collection);
}

static void respond_decode_error(http_request *r, int rc)
{
    switch (rc) {
    case BASE_ERR_UNSUPPORTED:
        /* The decoder's message names the format (and says JPEG, PNG and WebP are supported);
         * what the user can do about it is ours to say: a phone's HEIC photo re-saves as JPEG. */
        http_respond_error(r, 415, "unsupported_image", "%s: re-save it as JPEG (or PNG, WebP)",
                           base_error_message());
        break;
    case BASE_ERR_LIMIT:
        http_respond_error(r, 413, "image_too_large", "%s", base_error_message());
        break;
    case BASE_ERR_FORMAT:
        http_respond_error(r, 400, "invalid_image", "%s", base_error_message());
        break;
    default: http_respond_base_error(r, rc, "image"); break;
    }
}

/* The pipeline's options for a request: --max-faces, and --max-body-bytes and --max-pixels
 * checked by the decoder against the image's stored size before anything is decoded. */
static face_options face_options_for(const http_config *c, unsigned stages)
{
    return (face_options){
        .stages = stages,
        .max_faces = c->max_faces,
        .limits = {.max_bytes = (size_t)c->max_body_bytes, .max_pixels = c->max_pixels}};
}

/*
 * Prepares one image into `job`. Without keep, the pipeline's own decode (face_analyze_bytes'
 * first half: one JPEG decode at the reduced DCT scale the detector needs, a second at the
 * scale the crops need): the fast path. With keep (enrolment, which wants the image for a
 * thumbnail) the image is decoded here at full size and kept.
 */
static void prepare_job(http_request *r, http_worker *w, http_face_job *job)
{
    face_options fo = face_options_for(&r->srv->cfg, job->stages);
    int rc;
    if (!job->keep) {
        rc = face_analyze_prepare_bytes(w->face, job->data, job->len, &fo, &job->result);
        /* the size is set once the image decoded: without it the bytes were at fault */
        job->decoded = job->result.width != 0;
    } else {
        img_decode_options dopts = {.limits = fo.limits};
        uint64_t t0 = base_now_ns();
        rc = img_decode(job->data, job->len, &dopts, &job->image, NULL);
        double decode_ms = (double)(base_now_ns() - t0) / 1e6;
        job->decoded = rc == 0;
        if (!rc) rc = face_analyze_prepare(w->face, &job->image, &fo, &job->result);
        job->result.timing.decode_ms = decode_ms;
    }
    if (rc) {
        job->rc = rc;
        snprintf(job->message, sizeof job->message, "%s", base_error_message());
    }
}

/* Clears a response the prepare step's parsing set: the handler parses again and answers. */
static void clear_response(http_request *r)
{
    free(r->resp);
    r->resp = NULL;
    r->status = 0;
    r->resp_type = NULL;
    r->retry_after_s = 0;
    r->error[0] = '\0';
}

/*
 * What each image route's handler will ask http_run_face_keep for: which images, with which
 * stages, kept or not. A guess that misses (a parameter the handler reads differently) costs
 * only speed: the handler then runs the pipeline itself.
 */
http_precheck http_precheck_of(http_handler handler)
{
    if (handler == http_api_face_enrol) return http_enrol_precheck;
    if (handler == http_api_search) return http_search_precheck;
    if (handler == http_api_checkin) return http_checkin_precheck;
    if (handler == http_api_verify) return http_verify_precheck;
    return NULL;
}

int http_face_prefetch(http_request *r, http_worker *w)
{
    const http_route *route = &http_routes[r->route];
    if (!route->image || !w->face) return 0;
    http_input *in = calloc(1, sizeof *in);
    if (!in) return 0;
    if (http_input_parse(r, 1, in)) {
        free(in);
        clear_response(r);
        return 0;
    }
    r->prefetch = in;
    http_precheck precheck = http_precheck_of(route->handler);
    if (precheck && precheck(r, in)) {
        /* The handler answers without the image: nothing to prepare. A store found unavailable
         * is answered now: the handler would ask it again, and wait again - another limit on a
         * database that does not answer, and another place in line behind the calls waiting
         * on it. */
        if (r->status != 503 || strcmp(r->error, "store_unavailable") != 0) clear_response(r);
        return 0;
    }
    const char *names[HTTP_FACE_JOBS] = {"image", NULL};
    unsigned stages = FACE_STAGE_EMBED, stages_b = 0; /* stages_b: image_b's, when not stages */
    int keep = 0;
    if (route->handler == http_api_detect) {
        stages = FACE_STAGE_DETECT;
    } else if (route->handler == http_api_analyze) {
        stages = FACE_STAGE_LANDMARKS | FACE_STAGE_ATTRIBUTES | FACE_STAGE_LIVENESS;
        int embedding = 0;
        if (http_input_bool(r, in, "embedding", 0, &embedding) == 0 && embedding)
            stages |= FACE_STAGE_EMBED;
    } else if (route->handler == http_api_verify) {
        stages = VERIFY_STAGES;
        names[0] = http_input_has_image(in, "image_a") ? "image_a" : "image";
        names[1] = "image_b";
        stages_b = verify_stages_b(r, in);
    } else if (route->handler == http_api_face_enrol) {
        stages = HTTP_ENROL_STAGES;
        keep = 1;
    } else if (route->handler == http_api_search || route->handler == http_api_checkin) {
        stages = HTTP_SEARCH_STAGES;
    } else if (route->handler != http_api_embed) {
        return 0;
    }
    int crops = 0;
    for (int i = 0; i < HTTP_FACE_JOBS && names[i]; i++) {
        const uint8_t *data;
        size_t len;
        if (http_input_image(r, in, names[i], &data, &len) <= 0) continue;
        http_face_job *job = &r->jobs[r->n_jobs++];
        *job = (http_face_job){
            .data = data, .len = len, .stages = i && stages_b ? stages_b : stages, .keep = keep};
        prepare_job(r, w, job);
        crops += face_result_pending(&job->result);
    }
    clear_response(r);
    return crops;
}

void http_face_prefetch_free(http_request *r)
{
    for (int i = 0; i < r->n_jobs; i++) {
        if (!r->jobs[i].taken && r->jobs[i].decoded) add_timing(r, &r->jobs[i].result.timing);
        face_result_free(&r->jobs[i].result);
        img_free(&r->jobs[i].image);
    }
    r->n_jobs = 0;
    if (r->prefetch) {
        http_input_free(r->prefetch);
        free(r->prefetch);
        r->prefetch = NULL;
    }
}

/* The prepared job for these bytes and stages, not yet taken; NULL when none. */
static http_face_job *find_job(http_request *r, const uint8_t *data, size_t len, unsigned stages,
                               int keep)
{
    for (int i = 0; i < r->n_jobs; i++) {
        http_face_job *job = &r->jobs[i];
        if (job->taken || job->stages != stages || job->keep != keep || job->len != len) continue;
        if (job->data == data || memcmp(job->data, data, len) == 0) return job;
    }
    return NULL;
}

/*
 * The image's prepared job when the prepare step made one (its faces finished in batches),
 * otherwise the whole pipeline here on w's context. With `keep` the image is decoded at full
 * size and handed to the caller (enrolment's thumbnail).
 */
int http_run_face_keep(http_request *r, http_worker *w, const uint8_t *data, size_t len,
                       unsigned stages, face_result *out, img_image *keep)
{
    memset(out, 0, sizeof *out);
    if (keep) memset(keep, 0, sizeof *keep);
    http_face_job local = {.data = data, .len = len, .stages = stages, .keep = keep != NULL};
    http_face_job *job = find_job(r, data, len, stages, keep != NULL);
    if (job) {
        job->taken = 1;
    } else {
        /* not prepared ahead: the whole pipeline, here */
        job = &local;
        prepare_job(r, w, job);
        if (!job->rc && job->result.pending) {
            if (job->result.n_faces > 0)
                http_histogram_observe_count(&r->srv->metrics.batch, (unsigned)job->result.n_faces);
            face_batch_slice slice = {.result = &job->result, .count = job->result.n_faces};
            job->rc = face_analyze_finish(w->face, &slice, 1);
            if (job->rc) snprintf(job->message, sizeof job->message, "%s", base_error_message());
            job->result.timing.embed_ms += slice.timing.embed_ms;
            job->result.timing.attributes_ms += slice.timing.attributes_ms;
            job->result.timing.liveness_ms += slice.timing.liveness_ms;
        }
    }
    if (job->rc) {
        base_error_set(job->rc, "%s", job->message);
        if (!job->decoded)
            respond_decode_error(r, job->rc);
        else
            http_respond_base_error(r, job->rc, "face");
        face_result_free(&job->result);
        img_free(&job->image);
        return job->rc;
    }
    *out = job->result;
    memset(&job->result, 0, sizeof job->result);
    if (keep) {
        *keep = job->image;
    } else {
        img_free(&job->image);
    }
    memset(&job->image, 0, sizeof job->image);
    add_timing(r, &out->timing);
    return 0;
}

int http_face_from_input(http_request *r, http_worker *w, http_input *in, const char *name,
                         unsigned stages, face_result *out)
{
    const uint8_t *data;
    size_t len;
    int rc = http_input_image(r, in, name, &data, &len);
    if (rc <= 0) return rc;
    rc = http_run_face(r, w, data, len, stages, out);
    return rc ? rc : 1;
}

/* The body of detect, analyze and embed: one image, every face. */
static void faces_route(http_request *r, http_worker *w, unsigned stages, int with_embedding)
{
    http_input in;
    if (http_input_parse(r, 1, &in)) return;
    int embedding = with_embedding;
    if (!with_embedding && (stages & FACE_STAGE_ATTRIBUTES)) {
        if (http_input_bool(r, &in, "embedding", 0, &embedding)) goto out;
        if (embedding) stages |= FACE_STAGE_EMBED;
    }
    face_result res;
    int rc = http_face_from_input(r, w, &in, "image", stages, &res);
    if (rc < 0) goto out;
    if (rc == 0) {
        http_respond_error(r, 400, "missing_image",
                           "send an image: a multipart part named "
                           "image, a raw image/* body, or {\"image\": "
                           "base64} in JSON");
        goto out;
    }
    json_t *faces = json_array();
    for (int i = 0; i < res.n_faces; i++)
        json_array_append_new(faces, http_face_json(&res.faces[i], embedding));
    r->faces = res.n_faces;
    const face_timing *t = &res.timing;
    json_t *timing =
        json_pack("{s:o,s:o}", "decode", num(t->decode_ms), "detect", num(t->detect_ms));
    if (t->landmarks_ms > 0) json_object_set_new(timing, "landmarks", num(t->landmarks_ms));
    if (t->embed_ms > 0) json_object_set_new(timing, "embed", num(t->embed_ms));
    if (t->attributes_ms > 0) json_object_set_new(timing, "attributes", num(t->attributes_ms));
    if (t->liveness_ms > 0) json_object_set_new(timing, "liveness", num(t->liveness_ms));
    http_respond_json(r, 200,
                      json_pack("{s:i,s:i,s:i,s:o,s:o}", "width", res.width, "height",
                                res.height, "min_face_size", res.min_face_size, "faces", faces,
                                "timing_ms", timing));
    face_result_free(&res);
out:
    http_input_free(&in);
}

void http_api_detect(http_request *r, http_worker *w)
{
    faces_route(r, w, FACE_STAGE_DETECT, 0);
}

void http_api_analyze(http_request *r, http_worker *w)
{
    faces_route(r, w, FACE_STAGE_LANDMARKS | FACE_STAGE_ATTRIBUTES | FACE_STAGE_LIVENESS, 0);
}

void http_api_embed(http_request *r, http_worker *w)
{
    faces_route(r, w, FACE_STAGE_EMBED, 1);
}

/* The best similarity between `e` and a subject's enrolled faces. */
static int subject_similarity(http_request *r, const char *collection, const char *subject,
                              const face_info *f, float *best, int64_t *best_face, float *threshold)
{
    http_server *s = r->srv;
    struct gal_collection_info ci; /* settings only: the counts would scan the collection */
    int rc = gal_collection_settings(s->gal, collection, &ci);
    if (rc) {
        http_respond_base_error(r, rc, "collection");
        return rc;
    }
    if (strcmp(ci.model_id, f->embedding_model ? f->embedding_model : "") != 0 ||
        (int)ci.dim != f->embedding_dim) {
        http_respond_error(r, 409, "model_mismatch",
                           "collection %s holds %s embeddings (%u-d); this server makes %s",
                           collection, ci.model_id, ci.dim,
                           f->embedding_model ? f->embedding_model : "none");
        return BASE_ERR_INVALID;
    }
    int64_t *ids = NULL;
    size_t n = 0;
    if ((rc = gal_face_list(s->gal, collection, subject, &ids, &n))) {
        http_respond_base_error(r, rc, "subject");
        return rc;
    }
    if (n == 0) {
        free(ids);
        respond_no_enrolled_face(r, collection, subject);
        return BASE_ERR_INVALID;
    }
    *best = -2;
    for (size_t i = 0; i < n; i++) {
        struct gal_face_record rec;
        if ((rc = gal_face_get(s->gal, collection, ids[i], &rec))) {
            if (rc == BASE_ERR_NOT_FOUND) continue; /* deleted meanwhile */
            free(ids);
            http_respond_base_error(r, rc, "face");
            return rc;
        }
        float sim = face_similarity(f->embedding, rec.embedding, f->embedding_dim);
        if (sim > *best) {
            *best = sim;
            *best_face = rec.face_id;
        }
        gal_face_record_deinit(&rec);
    }
    free(ids);
    if (*best < -1) {
        respond_no_enrolled_face(r, collection, subject);
        return BASE_ERR_INVALID;
    }
    *threshold = ci.threshold;
    return 0;
}

/*
 * What pulled a face's quality down, in words ("small (24 px wide), blurred"), into why[cap];
 * "" when nothing stands out: each of the quality's four factors (face_quality_factors) under
 * 0.6 is named.
 */
void http_quality_why(const face_info *f, char *why, size_t cap)
{
    size_t n = 0;
    why[0] = '\0';
    if (!f->has_quality) return;
    const face_attributes *at = &f->attributes;
    const face_quality_factors *q = &at->quality_factors;
    if (q->size < 0.6f && n < cap)
        n += (size_t)snprintf(why + n, cap - n, "%ssmall (%.0f px wide)", n ? ", " : "", f->w);
    if (q->sharpness < 0.6f && n < cap)
        n += (size_t)snprintf(why + n, cap - n, "%sblurred", n ? ", " : "");
    if (q->pose < 0.6f && n < cap)
        n += (size_t)snprintf(why + n, cap - n, "%sturned away (yaw %.0f, pitch %.0f degrees)",
                              n ? ", " : "", at->yaw, at->pitch);
    if (q->detector < 0.6f && n < cap)
        snprintf(why + n, cap - n, "%sbarely recognisable as a face", n ? ", " : "");
}

/* Appends {"code","message"} to warnings. */
static void warn(json_t *warnings, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void warn(json_t *warnings, const char *code, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    json_array_append_new(warnings, json_pack("{s:s,s:s}", "code", code, "message", message));
}

/*
 * One compared face as verify reports it (box, score, faces_in_image, quality, liveness), and
 * the warnings a clerk should see about it: several faces in its image (the most prominent was
 * compared: is it the person at the desk?) and a quality too low for the similarity to be
 * trusted (a small or poor scan of an ID photo scores low for the right person too).
 */
static json_t *verify_face_json(const face_result *res, const char *image, json_t *warnings)
{
    const face_info *f = &res->faces[face_most_prominent(res)];
    json_t *o = json_pack("{s:o,s:o,s:i}", "box", http_box_json(f), "score", num(f->score),
                          "faces_in_image", res->n_faces);
    if (f->has_quality) json_object_set_new(o, "quality", num(f->attributes.quality));
    if (f->has_liveness)
        json_object_set_new(o, "liveness",
                            json_pack("{s:o,s:o,s:o}", "score", num(f->liveness.score), "antispoof",
                                      num(f->liveness.antispoof), "liveness",
                                      num(f->liveness.liveness)));
    if (res->n_faces > 1)
        warn(warnings, "multiple_faces",
             "%s shows %d faces; the most prominent (%.0f px wide, at x %.0f, y %.0f) was "
             "compared: "
             "check that it is the right person, or crop the photo around them",
             image, res->n_faces, f->w, f->x, f->y);
    if (f->has_quality && f->attributes.quality < FACE_MIN_QUALITY_DEFAULT) {
        char why[256];
        http_quality_why(f, why, sizeof why);
        warn(warnings, "low_quality",
             "the face in %s has quality %.3f, below %g%s%s: its similarity is unreliable (the "
             "same person may score below the threshold); use a sharper, frontal photo in which "
             "the face is larger",
             image, floor((double)f->attributes.quality * 1000) / 1000, FACE_MIN_QUALITY_DEFAULT,
             why[0] ? "; the face is " : "", why);
    }
    return o;
}

/* What a verify request asks, read by verify_params. */
typedef struct verify_args {
    char collection[GAL_NAME_MAX + 2];
    char subject[GAL_ID_MAX + 2];
    int by_subject;
    double threshold;    /* NAN: not sent (the collection's or the server's default decides) */
    double min_liveness; /* NAN: not sent (liveness is reported, never decides) */
    int liveness_b;      /* image_b's liveness too (VERIFY_REFERENCE_STAGES) */
} verify_args;

/*
 * Verify's checks before the image, shared with its precheck: the parameters, and for a
 * verification against a subject, that the collection and the subject exist and the subject
 * has a face (checked again with the embedding by subject_similarity). Nonzero with the
 * response set when one fails.
 */
static int verify_params(http_request *r, http_input *in, verify_args *v)
{
    memset(v, 0, sizeof *v);
    int rc = http_input_param(r, in, "collection", v->collection, sizeof v->collection);
    if (rc >= 0) rc = http_input_param(r, in, "subject", v->subject, sizeof v->subject);
    if (rc < 0) return rc;
    /* A desk's own threshold for this request (stricter for a high-value transaction): the
     * same range as a collection's, refused before any image is decoded. */
    if (http_input_float(r, in, "threshold", NAN, -1, 1, &v->threshold)) return -1;
    if (http_input_float(r, in, "min_liveness", NAN, 0, 1, &v->min_liveness)) return -1;
    if (http_input_bool(r, in, "liveness_b", 0, &v->liveness_b)) return -1;
    v->by_subject = v->collection[0] || v->subject[0];
    if (!v->by_subject) return 0;
    if (!v->collection[0] || !v->subject[0]) {
        http_respond_error(r, 422, "invalid_parameter",
                           "verify against a subject needs both collection and subject");
        return BASE_ERR_INVALID;
    }
    if (r->key.collection[0] && strcmp(r->key.collection, v->collection) != 0) {
        http_respond_error(r, 403, "forbidden", "this key is limited to collection %s",
                           r->key.collection);
        return BASE_ERR_INVALID;
    }
    http_server *s = r->srv;
    struct gal_collection_info ci;
    if ((rc = gal_collection_settings(s->gal, v->collection, &ci))) {
        http_respond_base_error(r, rc, "collection");
        return rc;
    }
    int64_t *ids = NULL;
    size_t n = 0;
    if ((rc = gal_face_list(s->gal, v->collection, v->subject, &ids, &n))) {
        http_respond_base_error(r, rc, "subject");
        return rc;
    }
    free(ids);
    if (n == 0) {
        respond_no_enrolled_face(r, v->collection, v->subject);
        return BASE_ERR_INVALID;
    }
    return 0;
}

int http_verify_precheck(http_request *r, http_input *in)
{
    verify_args v;
    return verify_params(r, in, &v) != 0;
}

void http_api_verify(http_request *r, http_worker *w)
{
    http_input in;
    if (http_input_parse(r, 1, &in)) return;
    face_result a = {0}, b = {0};
    verify_args v;
    int rc;
    if (verify_params(r, &in, &v)) goto out;
    const int by_subject = v.by_subject;
    /* The audit trail (one log line per request, README "Verify at a desk"): who was verified
     * against what, and the result; the key id, time and request id are the line's own. Set
     * here so that a refusal (no face, no enrolled face) names the subject too. */
    json_decref(r->log_fields);
    r->log_fields = json_object();
    if (by_subject) {
        json_object_set_new(r->log_fields, "collection", json_string(v.collection));
        json_object_set_new(r->log_fields, "subject", json_string(v.subject));
    }
    const char *first = http_input_has_image(&in, "image_a") ? "image_a" : "image";
    rc = http_face_from_input(r, w, &in, first, VERIFY_STAGES, &a);
    if (rc < 0) goto out;
    if (rc == 0) {
        http_respond_error(r, 400, "missing_image",
                           by_subject ? "send the image to verify (image)"
                                      : "send two images: image_a and image_b");
        goto out;
    }
    if (a.n_faces == 0) {
        http_respond_no_face(r, first, &a);
        goto out;
    }
    r->faces = a.n_faces;
    const face_info *fa = &a.faces[face_most_prominent(&a)];
    float sim = 0, threshold = r->srv->default_threshold;
    const char *threshold_source = "default";
    json_t *other = NULL, *warnings = json_array();
    if (by_subject) {
        int64_t face_id = 0;
        uint64_t t0 = base_now_ns();
        if (subject_similarity(r, v.collection, v.subject, fa, &sim, &face_id, &threshold)) {
            json_decref(warnings);
            goto out;
        }
        threshold_source = "collection";
        http_histogram_observe_seconds(&r->srv->metrics.stage[HTTP_STAGE_GALLERY],
                                       (double)(base_now_ns() - t0) * 1e-9);
        other = json_pack("{s:s,s:s,s:I}", "collection", v.collection, "subject", v.subject,
                          "face_id", (json_int_t)face_id);
    } else {
        rc = http_face_from_input(r, w, &in, "image_b",
                                  v.liveness_b ? VERIFY_STAGES : VERIFY_REFERENCE_STAGES, &b);
        if (rc <= 0 || b.n_faces == 0) {
            json_decref(warnings);
            if (rc == 0)
                http_respond_error(r, 400, "missing_image",
                                   "send two images: image_a and image_b "
                                   "(or image with collection and subject)");
            else if (rc > 0)
                http_respond_no_face(r, "image_b", &b);
            goto out;
        }
        sim = face_similarity(fa->embedding, b.faces[face_most_prominent(&b)].embedding, fa->embedding_dim);
    }
    json_t *face_a = verify_face_json(&a, first, warnings);
    if (!by_subject) other = verify_face_json(&b, "image_b", warnings);
    if (!isnan(v.threshold)) {
        threshold = (float)v.threshold;
        threshold_source = "request";
    }
    int match = sim >= threshold;
    const char *decision = match ? "match" : "no_match";
    /* Asked for, liveness decides too: the face at the desk (face_a) must look live, or the
     * answer is no match whatever the similarity (a printed photo or a phone's screen of the
     * right person is the attack this guards against). Without min_liveness it is reported
     * only: the models are weak (README, "Verify at a desk"). */
    if (!isnan(v.min_liveness) && !(fa->has_liveness && fa->liveness.score >= v.min_liveness)) {
        match = 0;
        decision = "not_live";
        warn(warnings, "not_live",
             "the face in %s has liveness %.3f, below the %g this request asked for "
             "(min_liveness): it may be a photo of a photo or of a screen; take a new photo of "
             "the person at the desk",
             first, floor((double)fa->liveness.score * 1000) / 1000, v.min_liveness);
    }
    json_t *answer =
        json_pack("{s:o,s:o,s:s,s:b,s:s,s:s,s:o,s:o}", "similarity", num(sim), "threshold",
                  num(threshold), "threshold_source", threshold_source, "match", match, "decision",
                  decision, "model", fa->embedding_model ? fa->embedding_model : "", "face_a",
                  face_a, by_subject ? "subject" : "face_b", other);
    if (!isnan(v.min_liveness)) json_object_set_new(answer, "min_liveness", num(v.min_liveness));
    json_object_set_new(answer, "warnings", warnings);
    json_object_set_new(r->log_fields, "decision", json_string(decision));
    json_object_set_new(r->log_fields, "similarity", num(sim));
    json_object_set_new(r->log_fields, "threshold", num(threshold));
    if (json_array_size(warnings)) {
        json_t *codes = json_array();
        size_t i;
        json_t *item;
        json_array_foreach(warnings, i, item)
            json_array_append(codes, json_object_get(item, "code"));
        json_object_set_new(r->log_fields, "warnings", codes);
    }
    http_respond_json(r, 200, answer);
out:
    face_result_free(&a);
    face_result_free(&b);
    http_input_free(&in);
}
