/*
 * The gallery routes: collections, subjects and faces (CRUD, paginated lists), enrolment (an
 * image in, its most prominent face's embedding stored, safe to retry with Idempotency-Key)
 * and 1:N search. Collections are pinned to the embedder this server runs.
 */
#include "http/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE_DEFAULT 100
#define PAGE_MAX 1000

static json_t *num(double v)
{
    if (!isfinite(v)) return json_null();
    return json_real(round(v * 1e6) / 1e6);
}

static void gallery_time(http_request *r, uint64_t t0)
{
    http_histogram_observe_seconds(&r->srv->metrics.stage[HTTP_STAGE_GALLERY],
                                   (double)(base_now_ns() - t0) * 1e-9);
}

static json_t *collection_json(const struct gal_collection_info *c)
{
    return json_pack("{s:s,s:s,s:i,s:s,s:o,s:I,s:I,s:I}", "name", c->name, "model", c->model_id,
                     "dim", (int)c->dim, "dtype", gal_dtype_name(c->dtype), "threshold",
                     num(c->threshold), "created_ms", (json_int_t)c->created_ms, "subjects",
                     (json_int_t)c->subject_count, "faces", (json_int_t)c->face_count);
}

static json_t *subject_json(const struct gal_subject_info *s)
{
    json_t *meta = s->metadata ? json_loads(s->metadata, JSON_DECODE_ANY, NULL) : NULL;
    return json_pack("{s:s,s:o,s:I,s:I}", "id", s->id, "metadata", meta ? meta : json_object(),
                     "created_ms", (json_int_t)s->created_ms, "faces", (json_int_t)s->face_count);
}

static json_t *face_record_json(const char *collection, const struct gal_face_record *f,
                                int with_embedding)
{
    json_t *o =
        json_pack("{s:I,s:s,s:s,s:{s:o,s:o,s:o,s:o},s:o,s:I,s:b}", "face_id",
                  (json_int_t)f->face_id, "collection", collection, "subject", f->subject_id, "box",
                  "x", num(f->box[0]), "y", num(f->box[1]), "width", num(f->box[2]), "height",
                  num(f->box[3]), "quality", num(f->quality), "created_ms",
                  (json_int_t)f->created_ms, "has_thumbnail", f->thumbnail != NULL);
    if (o && f->image_hash[0]) json_object_set_new(o, "image_hash", json_string(f->image_hash));
    if (o && with_embedding) {
        json_t *e = json_array();
        for (uint32_t i = 0; i < f->dim; i++)
            json_array_append_new(e, json_real(round((double)f->embedding[i] * 1e7) / 1e7));
        json_object_set_new(o, "embedding", e);
    }
    return o;
}

/* A pagination cursor: the id after which the next page starts. */
static int page_params(http_request *r, http_input *in, long *limit, char *after, size_t cap)
{
    if (http_input_int(r, in, "limit", PAGE_DEFAULT, 1, PAGE_MAX, limit)) return -1;
    int rc = http_input_param(r, in, "after", after, cap);
    if (rc < 0) return rc;
    if (rc == 0) after[0] = '\0';
    return 0;
}

/* Parses a body that may be empty or JSON (routes without images). */
static int json_input(http_request *r, http_input *in)
{
    return http_input_parse(r, 0, in);
}

/* ---- collections ------------------------------------------------------------------------ */

void http_api_collections_list(http_request *r, http_worker *w)
{
    (void)w;
    http_input in;
    if (json_input(r, &in)) return;
    long limit;
    char after[GAL_NAME_MAX + 2];
    if (page_params(r, &in, &limit, after, sizeof after)) goto out;
    struct gal_collection_info *list = NULL;
    size_t count = 0;
    uint64_t t0 = base_now_ns();
    int rc = gal_collection_list(r->srv->gal, &list, &count);
    gallery_time(r, t0);
    if (rc) {
        http_respond_base_error(r, rc, "collection");
        goto out;
    }
    json_t *items = json_array();
    const char *last = NULL, *next = NULL;
    for (size_t i = 0; i < count; i++) {
        if (after[0] && strcmp(list[i].name, after) <= 0) continue;
        if (r->key.collection[0] && strcmp(list[i].name, r->key.collection) != 0) continue;
        if ((long)json_array_size(items) == limit) {
            next = last;
            break;
        }
        json_array_append_new(items, collection_json(&list[i]));
        last = list[i].name;
    }
    http_respond_json(r, 200,
                      json_pack("{s:o,s:o}", "collections", items, "next_after",
                                next ? json_string(next) : json_null()));
    free(list);
out:
    http_input_free(&in);
}

void http_api_collection_create(http_request *r, http_worker *w)
{
    (void)w;
    http_server *s = r->srv;
    http_input in;
    if (json_input(r, &in)) return;
    struct gal_collection_info info;
    memset(&info, 0, sizeof info);
    char dtype[16];
    double threshold;
    int rc = http_input_param(r, &in, "name", info.name, sizeof info.name);
    if (rc == 0) http_respond_error(r, 422, "invalid_parameter", "name is required");
    if (rc <= 0) goto out;
    if (http_input_float(r, &in, "threshold", s->default_threshold, -1, 1, &threshold)) goto out;
    rc = http_input_param(r, &in, "dtype", dtype, sizeof dtype);
    if (rc < 0) goto out;
    /* int8 by default, as `vultus gallery create`: a quarter of f32's memory and scan time,
     * and the same answers (candidates are re-scored from the stored f32 embeddings) */
    if (rc == 0) snprintf(dtype, sizeof dtype, "int8");
    if (gal_dtype_parse(dtype, &info.dtype)) {
        http_respond_error(r, 422, "invalid_parameter", "dtype must be f32, f16 or int8");
        goto out;
    }
    snprintf(info.model_id, sizeof info.model_id, "%s", s->embedder_id);
    info.dim = (uint32_t)s->embedding_dim;
    info.threshold = (float)threshold;
    uint64_t t0 = base_now_ns();
    rc = gal_collection_create(s->gal, &info);
    if (!rc) rc = gal_collection_get(s->gal, info.name, &info);
    gallery_time(r, t0);
    if (rc == BASE_ERR_EXISTS) {
        http_respond_error(r, 409, "collection_exists",
                           "collection \"%s\" already exists: enrol into it, or choose another name",
                           info.name);
        goto out;
    }
    if (rc) {
        http_respond_base_error(r, rc, "collection");
        goto out;
    }
    snprintf(r->location, sizeof r->location, "/v1/collections/%s", info.name);
    http_respond_json(r, 201, collection_json(&info));
out:
    http_input_free(&in);
}

void http_api_collection_get(http_request *r, http_worker *w)
{
    (void)w;
    struct gal_collection_info info;
    uint64_t t0 = base_now_ns();
    int rc = gal_collection_get(r->srv->gal, r->caps[0], &info);
    gallery_time(r, t0);
    if (rc) {
        http_respond_base_error(r, rc, "collection");
        return;
    }
    http_respond_json(r, 200, collection_json(&info));
}

void http_api_collection_update(http_request *r, http_worker *w)
{
    (void)w;
    http_server *s = r->srv;
    const char *name = r->caps[0];
    http_input in;
    if (json_input(r, &in)) return;
    struct gal_collection_info info;
    int rc = gal_collection_get(s->gal, name, &info);
    if (rc) {
        http_respond_base_error(r, rc, "collection");
        goto out;
    }
    double threshold;
    if (http_input_float(r, &in, "threshold", NAN, -1, 1, &threshold)) goto out;
    char dtype_text[16];
    enum gal_dtype dtype = info.dtype;
    rc = http_input_param(r, &in, "dtype", dtype_text, sizeof dtype_text);
    if (rc < 0) goto out;
    if (rc == 1 && gal_dtype_parse(dtype_text, &dtype)) {
        http_respond_error(r, 422, "invalid_parameter", "dtype must be f32, f16 or int8");
        goto out;
    }
    /* A body with neither (a rename, {"name": ...}, is the usual one) would change nothing and
     * answer 200 as if it had: say so, as a subject's PATCH without metadata does. */
    if (isnan(threshold) && rc == 0) {
        http_respond_error(r, 422, "invalid_parameter",
                           "nothing to change: send threshold and/or dtype (a collection "
                           "cannot be renamed)");
        goto out;
    }
    uint64_t t0 = base_now_ns();
    rc = 0;
    if (!isnan(threshold)) rc = gal_collection_set_threshold(s->gal, name, (float)threshold);
    if (!rc && dtype != info.dtype) rc = gal_collection_set_dtype(s->gal, name, dtype);
    if (!rc) rc = gal_collection_get(s->gal, name, &info);
    gallery_time(r, t0);
    if (rc) {
        http_respond_base_error(r, rc, "collection");
        goto out;
    }
    http_respond_json(r, 200, collection_json(&info));
out:
    http_input_free(&in);
}

void http_api_collection_delete(http_request *r, http_worker *w)
{
    (void)w;
    uint64_t t0 = base_now_ns();
    int rc = gal_collection_delete(r->srv->gal, r->caps[0]);
    gallery_time(r, t0);
    if (rc) {
        http_respond_base_error(r, rc, "collection");
        return;
    }
    http_respond_text(r, 204, NULL, NULL, 0);
}

/* ---- subjects --------------------------------------------------------------------------- */

void http_api_subjects_list(http_request *r, http_worker *w)
{
    (void)w;
    http_input in;
    if (json_input(r, &in)) return;
    long limit;
    char after[GAL_ID_MAX + 2];
    if (page_params(r, &in, &limit, after, sizeof after)) goto out;
    struct gal_subject_info *list = NULL;
    size_t count = 0;
    uint64_t t0 = base_now_ns();
    int rc = gal_subject_list(r->srv->gal, r->caps[0], after, (size_t)limit + 1, &list, &count);
    gallery_time(r, t0);
    if (rc) {
        http_respond_base_error(r, rc, "collection");
        goto out;
    }
    json_t *items = json_array();
    size_t shown = count > (size_t)limit ? (size_t)limit : count;
    for (size_t i = 0; i < shown; i++)
        json_array_append_new(items, subject_json(&list[i]));
    json_t *next = count > (size_t)limit ? json_string(list[shown - 1].id) : json_null();
    http_respond_json(r, 200, json_pack("{s:o,s:o}", "subjects", items, "next_after", next));
    gal_subject_list_free(list, count);
out:
    http_input_free(&in);
}

/* Metadata as JSON text for the gallery: a JSON value, NULL when absent. */
static int metadata_text(http_request *r, http_input *in, char **text)
{
    *text = NULL;
    int rc = 0;
    json_t *meta = http_input_json_value(r, in, "metadata", &rc);
    if (rc) return rc;
    if (!meta) return 0;
    *text = json_dumps(meta, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(meta);
    if (!*text) {
        http_respond_error(r, 422, "invalid_parameter", "metadata cannot be encoded");
        return BASE_ERR_INVALID;
    }
    if (strlen(*text) > GAL_METADATA_MAX) {
        free(*text);
        *text = NULL;
        http_respond_error(r, 413, "too_large", "metadata is over %d bytes", GAL_METADATA_MAX);
        return BASE_ERR_LIMIT;
    }
    return 0;
}

static void respond_subject(http_request *r, int status, const char *collection, const char *id)
{
    struct gal_subject_info info;
    int rc = gal_subject_get(r->srv->gal, collection, id, &info);
    if (rc) {
        http_respond_base_error(r, rc, "subject");
        return;
    }
    http_respond_json(r, status, subject_json(&info));
    gal_subject_info_deinit(&info);
}

void http_api_subject_create(http_request *r, http_worker *w)
{
    (void)w;
    http_input in;
    if (json_input(r, &in)) return;
    char id[GAL_ID_MAX + 2];
    char *meta = NULL;
    int rc = http_input_param(r, &in, "id", id, sizeof id);
    if (rc == 0) http_respond_error(r, 422, "invalid_parameter", "id is required");
    if (rc <= 0) goto out;
    if (metadata_text(r, &in, &meta)) goto out;
    uint64_t t0 = base_now_ns();
    rc = gal_subject_add(r->srv->gal, r->caps[0], id, meta);
    gallery_time(r, t0);
    if (rc == BASE_ERR_EXISTS) {
        http_respond_error(r, 409, "subject_exists",
                           "subject \"%s\" already exists in collection \"%s\"", id, r->caps[0]);
        goto out;
    }
    if (rc) {
        http_respond_base_error(
            r, rc, strstr(base_error_message(), "collection") ? "collection" : "subject");
        goto out;
    }
    /* The id is any text: percent-encode it for the Location header. */
    char enc[3 * GAL_ID_MAX + 1];
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        if ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~')
            enc[n++] = (char)*p;
        else
            n += (size_t)snprintf(enc + n, 4, "%%%02X", *p);
    }
    enc[n] = '\0';
    snprintf(r->location, sizeof r->location, "/v1/collections/%s/subjects/%s", r->caps[0], enc);
    respond_subject(r, 201, r->caps[0], id);
out:
    free(meta);
    http_input_free(&in);
}

void http_api_subject_get(http_request *r, http_worker *w)
{
    (void)w;
    uint64_t t0 = base_now_ns();
    respond_subject(r, 200, r->caps[0], r->caps[1]);
    gallery_time(r, t0);
}

void http_api_subject_update(http_request *r, http_worker *w)
{
    (void)w;
    http_input in;
    if (json_input(r, &in)) return;
    char *meta = NULL;
    if (metadata_text(r, &in, &meta)) goto out;
    if (!meta) {
        http_respond_error(r, 422, "invalid_parameter", "metadata is required");
        goto out;
    }
    uint64_t t0 = base_now_ns();
    int rc = gal_subject_set_metadata(r->srv->gal, r->caps[0], r->caps[1], meta);
    gallery_time(r, t0);
    if (rc) {
        http_respond_base_error(r, rc, "subject");
        goto out;
    }
    respond_subject(r, 200, r->caps[0], r->caps[1]);
out:
    free(meta);
    http_input_free(&in);
}

void http_api_subject_delete(http_request *r, http_worker *w)
{
    (void)w;
    uint64_t t0 = base_now_ns();
    int rc = gal_subject_delete(r->srv->gal, r->caps[0], r->caps[1]);
    gallery_time(r, t0);
    if (rc) {
        http_respond_base_error(r, rc, "subject");
        return;
    }
    http_respond_text(r, 204, NULL, NULL, 0);
}

/* ---- faces ------------------------------------------------------------------------------ */

/*
 * A face id from the path. Face ids are positive integers (enrolment's face_id): anything
 * else is a malformed parameter, 422 invalid_parameter as a malformed collection name in the
 * path is, not a 404 "no face abc" that reads as if such a face could exist. A well-formed
 * id that no face has is 404 face_not_found.
 */
static int parse_face_id(http_request *r, const char *text, int64_t *id)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v <= 0 || !(*text >= '0' && *text <= '9')) {
        http_respond_error(r, 422, "invalid_parameter",
                           "face id \"%.40s%s\" is not a face id: face ids are positive integers "
                           "(the face_id enrolment answered)",
                           text, strlen(text) > 40 ? "..." : "");
        return BASE_ERR_INVALID;
    }
    *id = v;
    return 0;
}

/* A page of faces being filled: the items, and the last face put in (the next cursor). */
struct face_page {
    json_t *items;
    long limit;
    int full; /* a face was left out for want of room: there is a next page */
    int64_t last_id;
    char last_subject[GAL_ID_MAX + 1];
};

/* Adds subject's faces with ids above after_id to the page until it is full. A subject or
 * face deleted meanwhile is skipped. */
static int page_subject_faces(http_request *r, struct face_page *page, const char *subject,
                              int64_t after_id)
{
    int64_t *ids = NULL;
    size_t count = 0;
    int rc = gal_face_list(r->srv->gal, r->caps[0], subject, &ids, &count);
    /* the subject deleted meanwhile ("subject ... does not exist"; a subject's id may hold
     * the word collection, so the message's start tells) */
    if (rc == BASE_ERR_NOT_FOUND && strncmp(base_error_message(), "collection", 10) != 0) return 0;
    for (size_t i = 0; rc == 0 && i < count; i++) {
        if (ids[i] <= after_id) continue;
        if ((long)json_array_size(page->items) == page->limit) {
            page->full = 1;
            break;
        }
        struct gal_face_record rec;
        rc = gal_face_get(r->srv->gal, r->caps[0], ids[i], &rec);
        if (rc == BASE_ERR_NOT_FOUND) {
            rc = 0; /* deleted meanwhile */
            continue;
        }
        if (rc) break;
        json_array_append_new(page->items, face_record_json(r->caps[0], &rec, 0));
        gal_face_record_deinit(&rec);
        page->last_id = ids[i];
        snprintf(page->last_subject, sizeof page->last_subject, "%s", subject);
    }
    free(ids);
    return rc;
}

/*
 * GET .../faces without subject: every face of the collection, subject by subject in the
 * subjects' id order (as their list pages), each subject's faces by id. The gallery lists
 * faces per subject only, so a page walks the subjects from the cursor's; it reads what a
 * page of the subject list and the faces it shows cost, plus the subjects without a face it
 * passes. The cursor is the last face shown and its subject, "FACE_ID:SUBJECT": a face or
 * subject deleted meanwhile does not lose the place, and items created or deleted while a
 * client pages neither repeat nor hide the others (the subject-list guarantee).
 */
static void faces_of_collection(http_request *r, long limit, const char *after)
{
    struct face_page page = {.items = json_array(), .limit = limit};
    char from[GAL_ID_MAX + 1] = "";
    int64_t from_id = 0;
    int rc = 0;
    if (after[0]) {
        char *end = NULL;
        errno = 0;
        from_id = strtoll(after, &end, 10);
        if (errno || end == after || *end != ':' || from_id < 0 || !end[1] ||
            strlen(end + 1) > GAL_ID_MAX) {
            json_decref(page.items);
            http_respond_error(r, 422, "invalid_parameter",
                               "after must be the next_after of the previous page (FACE_ID:SUBJECT "
                               "when the list is not for one subject)");
            return;
        }
        snprintf(from, sizeof from, "%s", end + 1);
    }
    uint64_t t0 = base_now_ns();
    if (from[0]) rc = page_subject_faces(r, &page, from, from_id);
    /* Subjects in batches of the page's size: a page shows at most that many subjects' faces
     * (fewer when a subject has several), so one batch is usually enough. */
    size_t batch = limit < 16 ? 16 : (size_t)limit;
    while (rc == 0 && !page.full) {
        struct gal_subject_info *list = NULL;
        size_t n = 0;
        rc = gal_subject_list(r->srv->gal, r->caps[0], from, batch, &list, &n);
        if (rc) break;
        for (size_t i = 0; rc == 0 && i < n && !page.full; i++)
            if (list[i].face_count > 0) rc = page_subject_faces(r, &page, list[i].id, 0);
        if (n > 0) snprintf(from, sizeof from, "%s", list[n - 1].id);
        gal_subject_list_free(list, n);
        if (n < batch) break;
    }
    gallery_time(r, t0);
    if (rc) {
        json_decref(page.items);
        http_respond_base_error(
            r, rc, strncmp(base_error_message(), "collection", 10) == 0 ? "collection" : "face");
        return;
    }
    json_t *next = page.full ? json_sprintf("%" PRId64 ":%s", page.last_id, page.last_subject)
                             : json_null();
    http_respond_json(r, 200, json_pack("{s:o,s:o}", "faces", page.items, "next_after", next));
}

void http_api_faces_list(http_request *r, http_worker *w)
{
    (void)w;
    http_server *s = r->srv;
    http_input in;
    if (json_input(r, &in)) return;
    long limit;
    char after[GAL_ID_MAX + 40], subject[GAL_ID_MAX + 2];
    if (page_params(r, &in, &limit, after, sizeof after)) goto out;
    int rc = http_input_param(r, &in, "subject", subject, sizeof subject);
    if (rc == 0) faces_of_collection(r, limit, after);
    if (rc <= 0) goto out;
    int64_t after_id = 0;
    if (after[0]) {
        char *end = NULL;
        after_id = strtoll(after, &end, 10);
        if (*end || after_id < 0) {
            http_respond_error(r, 422, "invalid_parameter", "after must be a face id");
            goto out;
        }
    }
    int64_t *ids = NULL;
    size_t count = 0;
    uint64_t t0 = base_now_ns();
    rc = gal_face_list(s->gal, r->caps[0], subject, &ids, &count);
    if (rc) {
        gallery_time(r, t0);
        http_respond_base_error(
            r, rc, strstr(base_error_message(), "collection") ? "collection" : "subject");
        goto out;
    }
    json_t *items = json_array();
    json_t *next = json_null();
    int64_t last = 0;
    for (size_t i = 0; i < count; i++) {
        if (ids[i] <= after_id) continue;
        if ((long)json_array_size(items) == limit) {
            json_decref(next);
            next = json_sprintf("%" PRId64, last);
            break;
        }
        struct gal_face_record rec;
        rc = gal_face_get(s->gal, r->caps[0], ids[i], &rec);
        if (rc == BASE_ERR_NOT_FOUND) continue; /* deleted meanwhile */
        if (rc) break;
        json_array_append_new(items, face_record_json(r->caps[0], &rec, 0));
        gal_face_record_deinit(&rec);
        last = ids[i];
    }
    gallery_time(r, t0);
    free(ids);
    if (rc && rc != BASE_ERR_NOT_FOUND) {
        json_decref(items);
        json_decref(next);
        http_respond_base_error(r, rc, "face");
        goto out;
    }
    http_respond_json(r, 200, json_pack("{s:o,s:o}", "faces", items, "next_after", next));
out:
    http_input_free(&in);
}

void http_api_face_get(http_request *r, http_worker *w)
{
    (void)w;
    int64_t id;
    if (parse_face_id(r, r->caps[1], &id)) return;
    int with_embedding = 0;
    if (http_input_bool(r, NULL, "embedding", 0, &with_embedding)) return;
    struct gal_face_record rec;
    uint64_t t0 = base_now_ns();
    int rc = gal_face_get(r->srv->gal, r->caps[0], id, &rec);
    gallery_time(r, t0);
    if (rc) {
        http_respond_base_error(r, rc, "face");
        return;
    }
    http_respond_json(r, 200, face_record_json(r->caps[0], &rec, with_embedding));
    gal_face_record_deinit(&rec);
}

void http_api_face_thumbnail(http_request *r, http_worker *w)
{
    (void)w;
    int64_t id;
    if (parse_face_id(r, r->caps[1], &id)) return;
    struct gal_face_record rec;
    int rc = gal_face_get(r->srv->gal, r->caps[0], id, &rec);
    if (rc) {
        http_respond_base_error(r, rc, "face");
        return;
    }
    if (!rec.thumbnail) {
        http_respond_error(r, 404, "thumbnail_not_found", "face %lld has no thumbnail",
                           (long long)id);
    } else {
        http_respond_text(r, 200, "image/jpeg", (char *)rec.thumbnail, rec.thumbnail_len);
        rec.thumbnail = NULL; /* the response owns it now */
    }
    gal_face_record_deinit(&rec);
}

void http_api_face_delete(http_request *r, http_worker *w)
{
    (void)w;
    int64_t id;
    if (parse_face_id(r, r->caps[1], &id)) return;
    uint64_t t0 = base_now_ns();
    int rc = gal_face_delete(r->srv->gal, r->caps[0], id);
    gallery_time(r, t0);
    if (rc) {
        http_respond_base_error(r, rc, "face");
        return;
    }
    http_respond_text(r, 204, NULL, NULL, 0);
}

/* The collection's settings, checked against the embedder this server runs. Before every
 * search and enrolment (twice: the precheck and the handler), so from memory and without the
 * counts, which it does not need. */
static int collection_for_embedding(http_request *r, const char *name,
                                    struct gal_collection_info *info)
{
    int rc = gal_collection_settings(r->srv->gal, name, info);
    if (rc) {
        http_respond_base_error(r, rc, "collection");
        return rc;
    }
    if (strcmp(info->model_id, r->srv->embedder_id) != 0 ||
        (int)info->dim != r->srv->embedding_dim) {
        http_respond_error(r, 409, "model_mismatch",
                           "collection %s holds %s embeddings (%u-d); this server makes %s (%d-d)",
                           name, info->model_id, info->dim, r->srv->embedder_id,
                           r->srv->embedding_dim);
        return BASE_ERR_INVALID;
    }
    return 0;
}

/* A small JPEG of the face: the pipeline's aligned crop when it kept one, otherwise a square
 * around the box (half a box of margin), 112 x 112 either way. */
static int make_thumbnail(const img_image *image, const face_info *f, uint8_t **jpeg, size_t *len)
{
    *jpeg = NULL;
    *len = 0;
    if (f->aligned.data) return img_encode_jpeg(&f->aligned, 85, jpeg, len);
    float side = 1.5f * (f->w > f->h ? f->w : f->h);
    if (!(side >= 1)) return BASE_ERR_INVALID;
    float cx = f->x + f->w / 2, cy = f->y + f->h / 2;
    img_image crop = {0}, small = {0};
    int rc =
        img_crop(image, (int)(cx - side / 2), (int)(cy - side / 2), (int)side, (int)side, &crop);
    if (!rc) rc = img_resize(&crop, 112, 112, &small);
    if (!rc) rc = img_encode_jpeg(&small, 85, jpeg, len);
    img_free(&crop);
    img_free(&small);
    return rc;
}

/* An enrolment's parameters besides the image, parsed once per request. */
struct enrol_args {
    char subject[GAL_ID_MAX + 2];
    int create_subject;
    char *meta;         /* compact JSON, or NULL; the caller's to free either way */
    double min_quality; /* a face below it is refused (422 low_quality), nothing stored */
    int refuse_match;   /* on_match=refuse: a face matching another subject is refused (409) */
};

/* Enrolment's checks before the image, shared with its precheck: nonzero with the response
 * set when one fails. */
static int enrol_params(http_request *r, http_input *in, struct enrol_args *a)
{
    a->meta = NULL;
    int rc = http_input_param(r, in, "subject", a->subject, sizeof a->subject);
    if (rc == 0) http_respond_error(r, 422, "invalid_parameter", "subject is required");
    if (rc <= 0) return -1;
    if (http_input_bool(r, in, "create_subject", 1, &a->create_subject)) return -1;
    if (metadata_text(r, in, &a->meta)) return -1;
    if (http_input_float(r, in, "min_quality", FACE_MIN_QUALITY_DEFAULT, 0, 1, &a->min_quality))
        return -1;
    char on_match[16];
    rc = http_input_param(r, in, "on_match", on_match, sizeof on_match);
    if (rc < 0) return -1;
    a->refuse_match = rc > 0 && strcmp(on_match, "refuse") == 0;
    if (rc > 0 && !a->refuse_match && strcmp(on_match, "store") != 0) {
        http_respond_error(r, 422, "invalid_parameter",
                           "on_match must be store (the default: store the face and name the "
                           "other subjects it matches in also_matches) or refuse");
        return -1;
    }
    struct gal_collection_info info;
    return collection_for_embedding(r, r->caps[0], &info);
}

/* also_matches: the other subjects the new face matches (gal_search_others), into a new JSON
 * array in *out, with the collection's threshold. */
static int other_subjects_matching(http_request *r, const char *collection, const char *subject,
                                   const face_info *f, json_t **out, float *threshold)
{
    http_server *s = r->srv;
    *out = NULL;
    const struct gal_search_request req = {
        .model_id = f->embedding_model ? f->embedding_model : s->embedder_id,
        .dim = (uint32_t)f->embedding_dim,
        .embeddings = f->embedding,
    };
    struct gal_hit hits[GAL_OTHER_MATCHES_MAX];
    size_t n = 0;
    uint64_t t0 = base_now_ns();
    int rc = gal_search_others(s->gal, collection, &req, subject, hits, GAL_OTHER_MATCHES_MAX,
                               &n, threshold);
    gallery_time(r, t0);
    if (rc) return rc;
    json_t *list = json_array();
    if (!list) return base_error_set(BASE_ERR_NOMEM, "cannot allocate also_matches");
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, json_pack("{s:s,s:o,s:I}", "subject", hits[i].subject_id,
                                              "similarity", num(hits[i].similarity), "face_id",
                                              (json_int_t)hits[i].face_id));
    *out = list;
    return 0;
}

/* 409 matches_other_subject for on_match=refuse: the best other subject, its similarity and
 * the threshold, and the two ways on. */
static void respond_matches_other(http_request *r, const char *subject, json_t *also,
                                  float threshold)
{
    json_t *best = json_array_get(also, 0);
    const char *other = json_string_value(json_object_get(best, "subject"));
    double similarity = json_number_value(json_object_get(best, "similarity"));
    size_t more = json_array_size(also) - 1;
    char others[64] = "";
    if (more)
        snprintf(others, sizeof others, " (and %zu other subject%s)", more, more > 1 ? "s" : "");
    http_respond_error(r, 409, "matches_other_subject",
                       "the face matches subject %s%s of collection %s with similarity %.3f (the "
                       "collection's threshold is %.3g), so nothing was stored for %s "
                       "(on_match=refuse): it may be one person enrolled twice. Check who the "
                       "photo shows: if it is %s, enrol it for %s; if %s and %s are two people, "
                       "send the request again without on_match=refuse to store it anyway",
                       other, others, r->caps[0], similarity, (double)threshold, subject, other,
                       other, subject, other);
}

/*
 * 422 low_quality for a face whose quality is below the enrolment's min_quality: its figure,
 * the limit, what pulled it down (http_quality_why, as verify's low_quality warning says it)
 * and what to do.
 */
static void respond_low_quality(http_request *r, const face_info *f, float quality,
                                double min_quality)
{
    char why[256];
    http_quality_why(f, why, sizeof why);
    /* the figure cut, not rounded, to 3 decimals, so it never reads as the limit itself */
    http_respond_error(r, 422, "low_quality",
                       "the face's quality is %.3f, below the %g this enrolment needs "
                       "(min_quality)%s%s: its embedding would make searches of this collection "
                       "unreliable, so nothing was stored. Send a sharper, frontal, well-lit "
                       "photo in which the face is larger, or send min_quality=0 to store it "
                       "anyway",
                       floor((double)quality * 1000) / 1000, min_quality,
                       why[0] ? "; the face is " : "", why);
}

/* The first face of `subject` stored from an image with this hash, in *face_id (0: none). */
static int face_from_same_image(http_server *s, const char *collection, const char *subject,
                                const char *hash, int64_t *face_id)
{
    *face_id = 0;
    int64_t *ids = NULL;
    size_t n = 0;
    int rc = gal_face_list(s->gal, collection, subject, &ids, &n);
    if (rc == BASE_ERR_NOT_FOUND) return 0; /* no such subject (yet) */
    for (size_t i = 0; rc == 0 && i < n && *face_id == 0; i++) {
        struct gal_face_record rec = {0};
        rc = gal_face_get(s->gal, collection, ids[i], &rec);
        if (rc == BASE_ERR_NOT_FOUND) {
            rc = 0; /* deleted meanwhile */
            continue;
        }
        if (rc == 0 && strcmp(rec.image_hash, hash) == 0) *face_id = ids[i];
        gal_face_record_deinit(&rec);
    }
    free(ids);
    return rc;
}

/* Enrols the image's most prominent face (face_most_prominent: the face verify compares); the
 * response is set either way. */
static void enrol(http_request *r, http_worker *w, http_input *in, const struct enrol_args *a)
{
    http_server *s = r->srv;
    const char *collection = r->caps[0];
    const char *subject = a->subject;
    face_result res = {0};
    uint8_t *thumb = NULL;
    size_t thumb_len = 0;
    img_image image = {0};
    json_t *also = NULL;
    int rc;
    const uint8_t *data;
    size_t len;
    rc = http_input_image(r, in, "image", &data, &len);
    if (rc < 0) goto out;
    if (rc == 0) {
        http_respond_error(r, 400, "missing_image", "send the face image (image)");
        goto out;
    }
    if (http_run_face_keep(r, w, data, len, HTTP_ENROL_STAGES, &res, &image)) goto out;
    r->faces = res.n_faces;
    if (res.n_faces == 0) {
        http_respond_no_face(r, "the image", &res);
        goto out;
    }
    const face_info *f = &res.faces[face_most_prominent(&res)];
    const float quality = f->has_quality ? f->attributes.quality : f->score;
    /* Before anything is stored, the subject included: a refused enrolment leaves no trace. In
     * float, as `vultus enroll --min-quality` compares, so both refuse the same faces. */
    if (quality < (float)a->min_quality) {
        respond_low_quality(r, f, quality, a->min_quality);
        goto out;
    }
    /* Who else this face looks like, before anything is stored (so a refusal leaves no trace,
     * and the face never matches itself). Against the collection as it is now: two concurrent
     * enrolments of one face for two subjects can both pass (docs/gallery.md). */
    float threshold = 0;
    rc = other_subjects_matching(r, collection, subject, f, &also, &threshold);
    if (rc) {
        http_respond_base_error(r, rc, "collection");
        goto out;
    }
    if (a->refuse_match && json_array_size(also) > 0) {
        respond_matches_other(r, subject, also, threshold);
        goto out;
    }
    if (make_thumbnail(&image, f, &thumb, &thumb_len) != 0) {
        thumb = NULL; /* a face without a thumbnail is still a face */
        thumb_len = 0;
    }
    if (thumb_len > GAL_THUMBNAIL_MAX) {
        free(thumb);
        thumb = NULL;
        thumb_len = 0;
    }
    uint8_t digest[32];
    http_sha256_digest(data, len, digest);
    char hash[8 + 65];
    memcpy(hash, "sha256:", 7);
    http_hex(digest, 32, hash + 7);

    uint64_t t0 = base_now_ns();
    int created = 0;
    struct gal_face_input fi = {
        .subject_id = subject,
        .model_id = f->embedding_model ? f->embedding_model : s->embedder_id,
        .dim = (uint32_t)f->embedding_dim,
        .embedding = f->embedding,
        .image_hash = hash,
        .box = {f->x, f->y, f->w, f->h},
        .quality = quality,
        .thumbnail = thumb,
        .thumbnail_len = thumb_len,
    };
    int64_t face_id = 0;
    /* A retry that took over the claim of a process that died: that process may have stored
     * this very face and died before recording its answer. The subject already having a face
     * from these exact bytes means it did; answer with that face instead of a second copy. */
    rc = r->idem_taken_over ? face_from_same_image(s, collection, subject, hash, &face_id) : 0;
    /* The subject (when missing) and the face in one transaction: an enrolment that fails,
     * for a full disk or a lost connection, leaves no subject behind either. */
    if (rc == 0 && face_id == 0)
        rc = gal_face_enrol(s->gal, collection, &fi, a->create_subject, a->meta, &face_id,
                            &created);
    gallery_time(r, t0);
    if (rc) {
        http_respond_base_error(r, rc,
                                strstr(base_error_message(), "subject") ? "subject" : "collection");
        goto out;
    }
    snprintf(r->location, sizeof r->location, "/v1/collections/%s/faces/%lld", collection,
             (long long)face_id);
    http_respond_json(r, 201,
                      json_pack("{s:I,s:s,s:s,s:b,s:o,s:o,s:o,s:i,s:s,s:O}", "face_id",
                                (json_int_t)face_id, "collection", collection, "subject", subject,
                                "subject_created", created, "box", http_box_json(f), "score",
                                num(f->score), "quality", num(fi.quality), "faces_in_image",
                                res.n_faces, "image_hash", hash, "also_matches", also));
out:
    json_decref(also);
    img_free(&image);
    free(thumb);
    face_result_free(&res);
}

#define IDEM_SCOPE_MAX (HTTP_KEY_ID_LEN + HTTP_CAPTURE_MAX + 256 + 8)

/*
 * The idempotency record of an enrolment: per (API key, collection, Idempotency-Key). Its
 * fingerprint is what the enrolment asks for, not how the body spells it: the method and
 * path, the subject (from the query string or the body), create_subject, the metadata as
 * parsed, and the image's bytes (base64 in JSON decoded). So a retry whose multipart boundary
 * or field order differs (every curl -F run picks a new boundary), or that sends the image
 * another way, is the same request and is replayed, and the same key with another subject is
 * refused, wherever the subject was given.
 */
static void idem_scope(const http_request *r, const http_input *in, const struct enrol_args *a,
                       char scope[IDEM_SCOPE_MAX], uint8_t fp[32])
{
    snprintf(scope, IDEM_SCOPE_MAX, "%s\n%s\n%s", r->authenticated ? r->key.id : "-", r->caps[0],
             r->idempotency_key);
    const uint8_t *image;
    size_t image_len;
    uint8_t *decoded = NULL;
    http_input_image_bytes(r, in, "image", &image, &image_len, &decoded);
    const char flag = a->create_subject ? '1' : '0';
    http_sha256 h;
    http_sha256_init(&h);
    /* each text with its terminating NUL, so no two fields can run into each other */
    http_sha256_update(&h, r->method, strlen(r->method) + 1);
    http_sha256_update(&h, r->uri, r->path_len);
    http_sha256_update(&h, "", 1);
    http_sha256_update(&h, a->subject, strlen(a->subject) + 1);
    http_sha256_update(&h, &flag, 1);
    http_sha256_update(&h, a->meta ? a->meta : "", a->meta ? strlen(a->meta) + 1 : 1);
    /* min_quality only when it is not the default: a retry that lowers it to store a refused
     * face is another request (a new key), and the fingerprints of requests without it stay
     * those of servers from before it existed, so a rolling update does not turn their
     * retries into idempotency_key_reused. */
    if (a->min_quality != FACE_MIN_QUALITY_DEFAULT) {
        char text[32];
        const int n = snprintf(text, sizeof text, "min_quality=%.17g", a->min_quality);
        http_sha256_update(&h, text, (size_t)n + 1);
    }
    /* on_match likewise only when it refuses: the same key with and without it are two
     * requests, and the fingerprints of the default stay what they were. */
    if (a->refuse_match) http_sha256_update(&h, "on_match=refuse", sizeof "on_match=refuse");
    http_sha256_update(&h, image, image_len);
    http_sha256_final(&h, fp);
    free(decoded);
}

/* An Idempotency-Key header holds 1..200 characters: an empty one (a client's unset
 * variable) is refused rather than taken as no key, which would store every retry again. */
static int idem_key_ok(const http_request *r)
{
    const size_t n = strlen(r->idempotency_key);
    return n >= 1 && n <= 200;
}

/*
 * Before the pipeline: a replayed, busy or reused Idempotency-Key, or a failing parameter or
 * collection check, is answered by the handler without the image. A new key is claimed here
 * and stays claimed while the image is prepared (the handler finishes or releases it), so a
 * concurrent retry is told 409 at once instead of preparing the image too.
 */
int http_enrol_precheck(http_request *r, http_input *in)
{
    if (r->idempotency_key_sent && !idem_key_ok(r)) return 1;
    struct enrol_args a;
    int rc = enrol_params(r, in, &a);
    if (rc == 0 && r->idempotency_key[0]) {
        char scope[IDEM_SCOPE_MAX];
        uint8_t fp[32];
        idem_scope(r, in, &a, scope, fp);
        enum http_idem_state state;
        int status = 0;
        char *body = NULL;
        rc = http_idem_begin(r->srv->keys, scope, fp, &state, &status, &body, &r->idem_taken_over);
        free(body);
        /* the handler's answer, which a store found unavailable keeps (http_face_prefetch) */
        if (rc) http_respond_base_error(r, rc, "idempotency");
        if (rc == 0 && state != HTTP_IDEM_NEW) rc = 1;
        if (rc == 0) r->idem_claimed = 1;
    }
    free(a.meta);
    return rc != 0;
}

void http_api_face_enrol(http_request *r, http_worker *w)
{
    http_server *s = r->srv;
    http_input in;
    if (http_input_parse(r, 1, &in)) return;
    struct enrol_args a = {.meta = NULL};
    if (r->idempotency_key_sent && !idem_key_ok(r)) {
        http_respond_error(r, 400, "bad_request", "Idempotency-Key must be 1..200 characters");
    } else if (enrol_params(r, &in, &a)) {
        /* a bad parameter: answered, and nothing to record */
    } else if (!r->idempotency_key[0]) {
        enrol(r, w, &in, &a);
    } else {
        char scope[IDEM_SCOPE_MAX];
        uint8_t fp[32];
        idem_scope(r, &in, &a, scope, fp);
        enum http_idem_state state = HTTP_IDEM_NEW;
        int status = 0;
        char *body = NULL;
        int rc = 0;
        if (r->idem_claimed)
            r->idem_claimed = 0; /* the prepare step claimed it for this request */
        else
            rc = http_idem_begin(s->keys, scope, fp, &state, &status, &body, &r->idem_taken_over);
        if (rc) {
            http_respond_base_error(r, rc, "idempotency");
        } else if (state == HTTP_IDEM_REPLAY) {
            r->replayed = 1;
            /* The record keeps the body only: a created face's Location is made again from
             * it, so the retry of a request whose answer was lost can follow it too. */
            json_t *first = status == 201 ? json_loads(body, 0, NULL) : NULL;
            json_int_t face_id = json_integer_value(json_object_get(first, "face_id"));
            if (face_id > 0)
                snprintf(r->location, sizeof r->location, "/v1/collections/%s/faces/%lld",
                         r->caps[0], (long long)face_id);
            json_decref(first);
            http_respond_text(r, status, "application/json", body, strlen(body));
            body = NULL;
        } else if (state == HTTP_IDEM_BUSY) {
            http_respond_error(r, 409, "idempotency_in_progress",
                               "a request with this Idempotency-Key is still running");
            r->retry_after_s = 1;
        } else if (state == HTTP_IDEM_MISMATCH) {
            http_respond_error(r, 422, "idempotency_key_reused",
                               "this Idempotency-Key was used for a different request");
        } else {
            enrol(r, w, &in, &a);
            /* Successes and client errors are final and replayed; a 5xx is not: the claim is
             * released so a retry runs again. */
            if (!(r->status < 500 && r->resp &&
                  http_idem_finish(s->keys, scope, r->status, r->resp) == 0))
                http_idem_release(s->keys, scope);
        }
        free(body);
    }
    free(a.meta);
    http_input_free(&in);
}

/* ---- search ----------------------------------------------------------------------------- */

/* Search's checks before the image, shared with its precheck. *threshold: the request's own
 * (NAN when not sent: the collection's decides), in verify's range and with verify's words
 * (the same http_input_float), so a door that is stricter for one entrance or looser for a
 * poor camera asks for it as a desk does, and a bad one is refused before any image is
 * decoded. */
static int search_params(http_request *r, http_input *in, long *k, double *threshold)
{
    if (http_input_int(r, in, "k", 5, 1, 100, k)) return -1;
    if (http_input_float(r, in, "threshold", NAN, -1, 1, threshold)) return -1;
    struct gal_collection_info info;
    return collection_for_embedding(r, r->caps[0], &info);
}

int http_search_precheck(http_request *r, http_input *in)
{
    long k;
    double threshold;
    return search_params(r, in, &k, &threshold) != 0;
}

/* Room for a door name sent too long, so that it is refused with the gallery's words (a
 * longer one still is refused by the query or body reader, with 422 too). */
#define DOOR_TEXT_MAX 256

/* The door a check-in names, taken as k and threshold are (the query, a JSON body's field or
 * a multipart field), into `door` ("" when none: the record keeps no door). 0, or -1 when a
 * name that is not a door (gal_check_door) was answered with 422 invalid_parameter. */
static int checkin_door(http_request *r, http_input *in, char door[DOOR_TEXT_MAX])
{
    door[0] = '\0';
    int rc = http_input_param(r, in, "door", door, DOOR_TEXT_MAX);
    if (rc < 0) return -1;
    if (rc == 0) return 0;
    if (gal_check_door(door)) {
        http_respond_error(r, 422, "invalid_parameter", "%s", base_error_message());
        door[0] = '\0';
        return -1;
    }
    return 0;
}

/* A check-in's checks before the image: search's, then the door's, in the handler's order. */
int http_checkin_precheck(http_request *r, http_input *in)
{
    char door[DOOR_TEXT_MAX];
    return http_search_precheck(r, in) || checkin_door(r, in, door) != 0;
}

/* The check-in record's summary, as POST and GET …/checkins answer it at the top level. */
static json_t *checkin_summary_json(const struct gal_checkin_summary *sum)
{
    return json_pack("{s:I,s:I,s:I,s:o}", "checked_in", (json_int_t)sum->checked_in, "subjects",
                     (json_int_t)sum->subjects, "not_recognised", (json_int_t)sum->not_recognised,
                     "since_ms", sum->since_ms ? json_integer(sum->since_ms) : json_null());
}

/* A recorded door: null when the arrival named none (or a build before doors recorded it). */
static json_t *door_json(const char *door)
{
    return door[0] ? json_string(door) : json_null();
}

/* What one face's arrival did: the subject fields only for a face recognised. */
static json_t *checkin_json(const struct gal_checkin *c)
{
    if (c->status == GAL_CHECKIN_NOT_RECOGNISED)
        return json_pack("{s:s}", "status", gal_checkin_status_name(c->status));
    return json_pack("{s:s,s:s,s:I,s:I,s:I,s:o,s:o,s:o}", "status",
                     gal_checkin_status_name(c->status), "subject_id", c->subject_id,
                     "first_seen_ms", (json_int_t)c->first_seen_ms, "last_arrival_ms",
                     (json_int_t)c->last_arrival_ms, "arrivals", (json_int_t)c->arrivals,
                     "similarity", num(c->similarity), "first_door", door_json(c->first_door),
                     "last_door", door_json(c->last_door));
}

/*
 * Search, and for POST …/checkins the same search recorded as arrivals: each face decided by
 * the search's own rule (the collection's threshold or the request's) is checked in (a match)
 * or counted as not recognised, in one store transaction, and the answer is search's with a
 * "checkin" per face and the record's "checkins" summary.
 */
static void search_faces(http_request *r, http_worker *w, int checkin)
{
    http_server *s = r->srv;
    const char *collection = r->caps[0];
    http_input in;
    if (http_input_parse(r, 1, &in)) return;
    face_result res = {0};
    struct gal_results *results = NULL;
    struct gal_checkin *arrived = NULL;
    float *queries = NULL;
    long k;
    double asked;
    char door[DOOR_TEXT_MAX] = "";
    if (search_params(r, &in, &k, &asked)) goto out;
    if (checkin && checkin_door(r, &in, door)) goto out;
    int rc = http_face_from_input(r, w, &in, "image", HTTP_SEARCH_STAGES, &res);
    if (rc < 0) goto out;
    if (rc == 0) {
        http_respond_error(r, 400, "missing_image", "send the image to search with (image)");
        goto out;
    }
    r->faces = res.n_faces;
    if (res.n_faces == 0) {
        http_respond_no_face(r, "the image", &res);
        goto out;
    }
    int n = res.n_faces > GAL_QUERIES_MAX ? GAL_QUERIES_MAX : res.n_faces;
    int dim = res.faces[0].embedding_dim;
    queries = malloc((size_t)n * (size_t)dim * sizeof *queries);
    if (!queries) {
        http_respond_error(r, 503, "overloaded", "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++)
        memcpy(queries + (size_t)i * (size_t)dim, res.faces[i].embedding,
               (size_t)dim * sizeof *queries);
    struct gal_search_request req = {
        .model_id = res.faces[0].embedding_model ? res.faces[0].embedding_model : s->embedder_id,
        .dim = (uint32_t)dim,
        .embeddings = queries,
        .query_count = (size_t)n,
        .k = (size_t)k,
        /* The request's own decides every hit as the collection's would (similarity >=
         * threshold) and as verify decides with a request's: the same photo against the same
         * subject at the same threshold gets the same decision. */
        .has_threshold = !isnan(asked),
        .threshold = (float)asked,
    };
    uint64_t t0 = base_now_ns();
    rc = gal_search(s->gal, collection, &req, &results);
    gallery_time(r, t0);
    if (rc) {
        http_respond_base_error(r, rc, "collection");
        goto out;
    }
    struct gal_checkin_summary summary;
    if (checkin) {
        arrived = calloc(results->query_count, sizeof *arrived);
        struct gal_checkin_face *arriving = calloc(results->query_count, sizeof *arriving);
        if (!arrived || !arriving) {
            free(arriving);
            http_respond_error(r, 503, "overloaded", "out of memory");
            goto out;
        }
        for (size_t i = 0; i < results->query_count; i++) {
            const struct gal_query_result *q = &results->queries[i];
            const struct gal_hit *best = q->subject_count ? &q->subjects[0] : NULL;
            arriving[i].subject_id = best && best->decision == GAL_MATCH ? best->subject_id : NULL;
            arriving[i].similarity = best ? best->similarity : 0;
            arriving[i].door = door[0] ? door : NULL;
        }
        t0 = base_now_ns();
        rc = gal_checkin(s->gal, collection, arriving, results->query_count, 0 /* now */, arrived,
                         &summary);
        gallery_time(r, t0);
        free(arriving);
        if (rc) {
            http_respond_base_error(r, rc, "collection");
            goto out;
        }
        /* Counted once the record has it (committed): a refused check-in counts nothing. */
        for (size_t i = 0; i < results->query_count; i++)
            atomic_fetch_add_explicit(&s->metrics.checkins[arrived[i].status], 1,
                                      memory_order_relaxed);
    }
    json_t *faces = json_array();
    for (size_t i = 0; i < results->query_count; i++) {
        const struct gal_query_result *q = &results->queries[i];
        /* Who this face is, for clients that want the answer and not the ranking: the best
         * subject when it is a match (subjects come best first), else unknown. With its
         * metadata (a badge number, a display name), which a check-in desk shows next: one
         * store read per recognised face instead of a GET per face from the client. */
        const struct gal_hit *best = q->subject_count ? &q->subjects[0] : NULL;
        int known = best && best->decision == GAL_MATCH;
        json_t *identity_metadata = NULL;
        if (known) {
            struct gal_subject_info si;
            t0 = base_now_ns();
            rc = gal_subject_get(s->gal, collection, best->subject_id, &si);
            gallery_time(r, t0);
            if (rc == 0) {
                identity_metadata =
                    si.metadata ? json_loads(si.metadata, JSON_DECODE_ANY, NULL) : NULL;
                if (!identity_metadata) identity_metadata = json_object(); /* as GET shows it */
            }
            gal_subject_info_deinit(&si);
            /* A subject deleted since the search keeps its null; a store that fails, fails. */
            if (rc && rc != BASE_ERR_NOT_FOUND) {
                json_decref(faces);
                http_respond_base_error(r, rc, "subject");
                goto out;
            }
        }
        json_t *matches = json_array();
        for (size_t j = 0; j < q->subject_count; j++) {
            const struct gal_hit *h = &q->subjects[j];
            json_array_append_new(
                matches, json_pack("{s:s,s:o,s:b,s:s,s:I}", "subject", h->subject_id, "similarity",
                                   num(h->similarity), "match", h->decision == GAL_MATCH,
                                   "decision", h->decision == GAL_MATCH ? "match" : "no_match",
                                   "face_id", (json_int_t)h->face_id));
        }
        const face_info *f = &res.faces[i];
        /* The figure enrolment stores and compares with min_quality, named as it names it. */
        const float quality = f->has_quality ? f->attributes.quality : f->score;
        json_t *face = json_pack(
            "{s:o,s:o,s:o,s:s,s:o,s:o,s:o}", "box", http_box_json(f), "score", num(f->score),
            "quality", num(quality), "decision", known ? "match" : "unknown", "identity",
            known ? json_string(best->subject_id) : json_null(), "identity_metadata",
            identity_metadata ? identity_metadata : json_null(), "matches", matches);
        if (face && checkin) json_object_set_new(face, "checkin", checkin_json(&arrived[i]));
        json_array_append_new(faces, face);
    }
    json_t *answer = json_pack("{s:s,s:o,s:s,s:o}", "collection", collection, "threshold",
                               num(results->threshold), "threshold_source",
                               req.has_threshold ? "request" : "collection", "faces", faces);
    if (answer && checkin) json_object_set_new(answer, "checkins", checkin_summary_json(&summary));
    http_respond_json(r, 200, answer);
out:
    free(arrived);
    gal_results_destroy(results);
    free(queries);
    face_result_free(&res);
    http_input_free(&in);
}

void http_api_search(http_request *r, http_worker *w)
{
    search_faces(r, w, 0);
}

/* ---- the check-in record ---------------------------------------------------------------- */

void http_api_checkin(http_request *r, http_worker *w)
{
    search_faces(r, w, 1);
}

void http_api_checkins_list(http_request *r, http_worker *w)
{
    (void)w;
    http_input in;
    if (json_input(r, &in)) return;
    long limit;
    char after[GAL_CHECKIN_CURSOR_MAX + 1];
    if (page_params(r, &in, &limit, after, sizeof after)) goto out;
    struct gal_checkin *list = NULL;
    size_t count = 0;
    char next[GAL_CHECKIN_CURSOR_MAX];
    struct gal_checkin_summary summary;
    uint64_t t0 = base_now_ns();
    int rc = gal_checkin_list(r->srv->gal, r->caps[0], after, (size_t)limit, &list, &count, next,
                              &summary);
    gallery_time(r, t0);
    if (rc) {
        http_respond_base_error(r, rc, "collection");
        goto out;
    }
    json_t *items = json_array();
    for (size_t i = 0; i < count; i++) {
        const struct gal_checkin *c = &list[i];
        json_t *meta = c->metadata ? json_loads(c->metadata, JSON_DECODE_ANY, NULL) : NULL;
        json_array_append_new(
            items, json_pack("{s:s,s:o,s:I,s:I,s:I,s:o,s:o,s:o}", "subject_id", c->subject_id,
                             "metadata", meta ? meta : json_object(), "first_seen_ms",
                             (json_int_t)c->first_seen_ms, "last_arrival_ms",
                             (json_int_t)c->last_arrival_ms, "arrivals", (json_int_t)c->arrivals,
                             "similarity", num(c->similarity), "first_door",
                             door_json(c->first_door), "last_door", door_json(c->last_door)));
    }
    json_t *answer = checkin_summary_json(&summary);
    if (answer) {
        json_object_set_new(answer, "checkins", items);
        json_object_set_new(answer, "next_after", next[0] ? json_string(next) : json_null());
    } else {
        json_decref(items);
    }
    http_respond_json(r, 200, answer);
    gal_checkin_list_free(list, count);
out:
    http_input_free(&in);
}

void http_api_checkins_clear(http_request *r, http_worker *w)
{
    (void)w;
    uint64_t cleared = 0;
    uint64_t t0 = base_now_ns();
    int rc = gal_checkin_clear(r->srv->gal, r->caps[0], &cleared);
    gallery_time(r, t0);
    if (rc) {
        http_respond_base_error(r, rc, "collection");
        return;
    }
    http_respond_json(r, 200, json_pack("{s:I}", "cleared", (json_int_t)cleared));
}
