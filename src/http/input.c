/*
 * Request input: the body parsed by its Content-Type (JSON, multipart/form-data, or a raw
 * image), images found by name in it (base64 in JSON), and parameters looked up in the query
 * string, then the JSON body, then multipart fields. Every failure sets the error response.
 */
#include "http/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The media type of a Content-Type, lower-cased, parameters removed. */
static void media_type(const char *content_type, char *out, size_t cap)
{
    size_t n = 0;
    const char *p = content_type;
    while (*p == ' ')
        p++;
    for (; *p && *p != ';' && *p != ' ' && n + 1 < cap; p++)
        out[n++] = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    out[n] = '\0';
}

int http_input_parse(http_request *r, int images, http_input *in)
{
    memset(in, 0, sizeof *in);
    char type[128];
    media_type(r->content_type, type, sizeof type);
    const int raw_image = images && (strncmp(type, "image/", 6) == 0 ||
                                     strcmp(type, "application/octet-stream") == 0);
    /* An empty body that says it is an image is an empty image (400 invalid_image, as an empty
     * multipart part), not a request that sent no image at all. */
    if (r->body_len == 0) {
        in->kind = raw_image ? HTTP_INPUT_RAW : HTTP_INPUT_NONE;
        return 0;
    }
    size_t tl = strlen(type);
    if (strcmp(type, "application/json") == 0 || (tl > 5 && strcmp(type + tl - 5, "+json") == 0)) {
        json_error_t err;
        json_t *j = json_loadb((const char *)r->body, r->body_len, 0, &err);
        if (!j) {
            http_respond_error(r, 400, "invalid_json",
                               "the JSON body does not parse: %s "
                               "(line %d, column %d)",
                               err.text, err.line, err.column);
            return BASE_ERR_FORMAT;
        }
        if (!json_is_object(j)) {
            json_decref(j);
            http_respond_error(r, 400, "invalid_json", "the JSON body must be an object");
            return BASE_ERR_FORMAT;
        }
        in->kind = HTTP_INPUT_JSON;
        in->json = j;
        return 0;
    }
    if (images && strcmp(type, "multipart/form-data") == 0) {
        char boundary[HTTP_BOUNDARY_MAX + 1];
        int rc = http_multipart_boundary(r->content_type, boundary);
        if (!rc)
            rc = http_multipart_parse(r->body, r->body_len, boundary, in->parts,
                                      HTTP_MULTIPART_MAX_PARTS, &in->n_parts);
        if (rc) {
            http_respond_error(r, 400, "invalid_multipart", "%s", base_error_message());
            return rc;
        }
        in->kind = HTTP_INPUT_MULTIPART;
        return 0;
    }
    if (raw_image) {
        in->kind = HTTP_INPUT_RAW;
        return 0;
    }
    http_respond_error(r, 415, "unsupported_media_type",
                       images ? "send the image as multipart/form-data, a raw image/* body, or "
                                "base64 in application/json (got Content-Type '%s')"
                              : "send application/json (got Content-Type '%s')",
                       r->content_type[0] ? r->content_type : "none");
    return BASE_ERR_UNSUPPORTED;
}

void http_input_free(http_input *in)
{
    json_decref(in->json);
    for (int i = 0; i < in->n_decoded; i++)
        free(in->decoded[i]);
    memset(in, 0, sizeof *in);
}

static const http_part *find_part(const http_input *in, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < in->n_parts; i++)
        if (in->parts[i].name.n == n && memcmp(in->parts[i].name.p, name, n) == 0)
            return &in->parts[i];
    return NULL;
}

int http_input_has_image(const http_input *in, const char *name)
{
    switch (in->kind) {
    case HTTP_INPUT_RAW: return strcmp(name, "image") == 0 || strcmp(name, "image_a") == 0;
    case HTTP_INPUT_MULTIPART: return find_part(in, name) != NULL;
    case HTTP_INPUT_JSON: {
        json_t *v = json_object_get(in->json, name);
        return v && !json_is_null(v);
    }
    default: return 0;
    }
}

void http_input_image_bytes(const http_request *r, const http_input *in, const char *name,
                            const uint8_t **data, size_t *len, uint8_t **owned)
{
    *data = (const uint8_t *)"";
    *len = 0;
    *owned = NULL;
    if (!http_input_has_image(in, name)) return;
    if (in->kind == HTTP_INPUT_RAW) {
        if (r->body) {
            *data = r->body;
            *len = r->body_len;
        }
    } else if (in->kind == HTTP_INPUT_MULTIPART) {
        const http_part *p = find_part(in, name);
        *data = p->data;
        *len = p->len;
    } else if (in->kind == HTTP_INPUT_JSON) {
        json_t *v = json_object_get(in->json, name);
        if (!json_is_string(v)) return;
        *data = (const uint8_t *)json_string_value(v);
        *len = json_string_length(v);
        /* the bytes base64 (either alphabet, or a data: URL) decodes to; text that does not
         * decode stays as it is (the request fails on it anyway) */
        size_t n = 0;
        if (*len > 0 && http_base64_decode(json_string_value(v), *len,
                                           (size_t)r->srv->cfg.max_body_bytes, owned, &n) == 0) {
            *data = *owned;
            *len = n;
        }
    }
}

int http_input_image(http_request *r, http_input *in, const char *name, const uint8_t **data,
                     size_t *len)
{
    *data = NULL;
    *len = 0;
    switch (in->kind) {
    case HTTP_INPUT_RAW:
        if (strcmp(name, "image") != 0 && strcmp(name, "image_a") != 0) return 0;
        if (r->body_len == 0) {
            http_respond_error(r, 400, "invalid_image",
                               "the request body is empty (Content-Type %s)", r->content_type);
            return BASE_ERR_FORMAT;
        }
        *data = r->body;
        *len = r->body_len;
        return 1;
    case HTTP_INPUT_MULTIPART: {
        const http_part *p = find_part(in, name);
        if (!p) return 0;
        if (p->len == 0) {
            http_respond_error(r, 400, "invalid_image", "the %s part is empty", name);
            return BASE_ERR_FORMAT;
        }
        *data = p->data;
        *len = p->len;
        return 1;
    }
    case HTTP_INPUT_JSON: {
        json_t *v = json_object_get(in->json, name);
        if (!v || json_is_null(v)) return 0;
        if (!json_is_string(v)) {
            http_respond_error(r, 400, "invalid_base64", "%s must be a base64 string", name);
            return BASE_ERR_FORMAT;
        }
        if (in->n_decoded == (int)(sizeof in->decoded / sizeof in->decoded[0])) {
            http_respond_error(r, 400, "bad_request", "too many images");
            return BASE_ERR_LIMIT;
        }
        uint8_t *bytes = NULL;
        size_t n = 0;
        int rc = http_base64_decode(json_string_value(v), json_string_length(v),
                                    (size_t)r->srv->cfg.max_body_bytes, &bytes, &n);
        if (rc == BASE_ERR_LIMIT) {
            http_respond_error(r, 413, "body_too_large", "%s: %s", name, base_error_message());
            return rc;
        }
        if (rc) {
            http_respond_error(r, 400, "invalid_base64", "%s: %s", name, base_error_message());
            return rc;
        }
        if (n == 0) {
            free(bytes);
            http_respond_error(r, 400, "invalid_image", "%s is empty", name);
            return BASE_ERR_FORMAT;
        }
        in->decoded[in->n_decoded++] = bytes;
        *data = bytes;
        *len = n;
        return 1;
    }
    default: return 0;
    }
}

int http_input_param(http_request *r, http_input *in, const char *name, char *out, size_t cap)
{
    int rc = http_query_get(r->query, name, out, cap);
    if (rc < 0) {
        http_respond_error(r, 422, "invalid_parameter", "query parameter %s: %s", name,
                           base_error_message());
        return rc;
    }
    if (rc == 1) return 1;
    if (in && in->kind == HTTP_INPUT_JSON) {
        json_t *v = json_object_get(in->json, name);
        if (!v || json_is_null(v)) return 0;
        int n;
        if (json_is_string(v)) {
            if (json_string_length(v) >= cap ||
                memchr(json_string_value(v), 0, json_string_length(v))) {
                http_respond_error(r, 422, "invalid_parameter", "%s is too long or holds a NUL",
                                   name);
                return BASE_ERR_INVALID;
            }
            memcpy(out, json_string_value(v), json_string_length(v) + 1);
            return 1;
        }
        if (json_is_integer(v))
            n = snprintf(out, cap, "%lld", (long long)json_integer_value(v));
        else if (json_is_real(v))
            n = snprintf(out, cap, "%.17g", json_real_value(v));
        else if (json_is_boolean(v))
            n = snprintf(out, cap, "%s", json_is_true(v) ? "true" : "false");
        else
            n = -1;
        if (n < 0 || (size_t)n >= cap) {
            http_respond_error(r, 422, "invalid_parameter",
                               "%s must be a string, number or "
                               "boolean",
                               name);
            return BASE_ERR_INVALID;
        }
        return 1;
    }
    if (in && in->kind == HTTP_INPUT_MULTIPART) {
        const http_part *p = find_part(in, name);
        if (!p) return 0;
        if (p->len >= cap || memchr(p->data, 0, p->len)) {
            http_respond_error(r, 422, "invalid_parameter", "%s is too long or holds a NUL", name);
            return BASE_ERR_INVALID;
        }
        memcpy(out, p->data, p->len);
        out[p->len] = '\0';
        return 1;
    }
    return 0;
}

int http_input_int(http_request *r, http_input *in, const char *name, long def, long min, long max,
                   long *out)
{
    char text[64];
    int rc = http_input_param(r, in, name, text, sizeof text);
    if (rc < 0) return rc;
    *out = def;
    if (rc == 0) return 0;
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max) {
        http_respond_error(r, 422, "invalid_parameter", "%s must be an integer in [%ld, %ld]", name,
                           min, max);
        return BASE_ERR_INVALID;
    }
    *out = v;
    return 0;
}

int http_input_float(http_request *r, http_input *in, const char *name, double def, double min,
                     double max, double *out)
{
    char text[64];
    int rc = http_input_param(r, in, name, text, sizeof text);
    if (rc < 0) return rc;
    *out = def;
    if (rc == 0) return 0;
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !(v >= min && v <= max)) {
        http_respond_error(r, 422, "invalid_parameter", "%s must be a number in [%g, %g]", name,
                           min, max);
        return BASE_ERR_INVALID;
    }
    *out = v;
    return 0;
}

int http_input_bool(http_request *r, http_input *in, const char *name, int def, int *out)
{
    char text[16];
    int rc = http_input_param(r, in, name, text, sizeof text);
    if (rc < 0) return rc;
    *out = def;
    if (rc == 0) return 0;
    if (strcasecmp(text, "true") == 0 || strcmp(text, "1") == 0 || strcasecmp(text, "yes") == 0) {
        *out = 1;
    } else if (strcasecmp(text, "false") == 0 || strcmp(text, "0") == 0 ||
               strcasecmp(text, "no") == 0) {
        *out = 0;
    } else {
        http_respond_error(r, 422, "invalid_parameter", "%s must be true or false", name);
        return BASE_ERR_INVALID;
    }
    return 0;
}

json_t *http_input_json_value(http_request *r, http_input *in, const char *name, int *rc)
{
    *rc = 0;
    if (in->kind == HTTP_INPUT_JSON) {
        json_t *v = json_object_get(in->json, name);
        if (!v) return NULL;
        return json_incref(v);
    }
    if (in->kind == HTTP_INPUT_MULTIPART) {
        const http_part *p = find_part(in, name);
        if (!p) return NULL;
        json_error_t err;
        json_t *v = json_loadb((const char *)p->data, p->len, JSON_DECODE_ANY, &err);
        if (!v) {
            http_respond_error(r, 400, "invalid_json", "%s is not JSON: %s", name, err.text);
            *rc = BASE_ERR_FORMAT;
        }
        return v;
    }
    return NULL;
}
