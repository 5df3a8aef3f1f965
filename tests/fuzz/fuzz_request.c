/*
 * libFuzzer target for what the service reads from a request besides images: the route match
 * of a raw path (percent-decoded captures), the query string, and the body parsed by its
 * Content-Type (JSON, multipart/form-data, raw), then every kind of parameter and image lookup
 * the handlers make (src/http/routes.c, codec.c, input.c, multipart.c).
 *
 * Input: the request target (path and query), a newline, the Content-Type, a newline, then the
 * body. Every refusal must leave an error response with a 4xx status; every image found must
 * lie inside the body or be a buffer the input owns; values read must be in their ranges. Build and
 * run: make fuzz; seeds in tests/fuzz/corpus/request/.
 */
#include "base/base.h"
#include "http/internal.h"

#include "fuzz_lines.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The parameter names the handlers look up, and image part names. */
static const char *const params[] = {"limit", "after", "k",       "threshold", "embedding", "name",
                                     "dtype", "id",    "subject", "metadata",  "collection"};
static const char *const images[] = {"image", "image_a", "image_b"};

static void check_refusal(const http_request *r)
{
    if (r->status < 400 || r->status > 499 || !r->resp || !r->resp_len) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    char target[2048], content_type[256];
    take_line(&p, end, target, sizeof target);
    take_line(&p, end, content_type, sizeof content_type);

    /* The handlers read the server's limits (max body bytes for decoded base64). */
    static http_server *srv;
    if (!srv) {
        srv = calloc(1, sizeof *srv);
        if (!srv) return 0;
        http_config_defaults(&srv->cfg);
        srv->cfg.max_body_bytes = 1 << 20;
    }
    http_request *r = calloc(1, sizeof *r);
    if (!r) return 0;
    r->srv = srv;
    r->uri = target;
    char *q = strchr(target, '?');
    r->path_len = q ? (size_t)(q - target) : strlen(target);
    r->query = q ? q + 1 : "";
    memcpy(r->content_type, content_type, sizeof content_type);

    /* The route, for each method the API uses. */
    static const char *const methods[] = {"GET", "POST", "PATCH", "DELETE"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        r->route = http_route_match(methods[i], target, r->path_len, r->caps, &r->n_caps);
        if (r->route >= http_route_count || r->n_caps < 0 || r->n_caps > HTTP_CAPTURES) abort();
        for (int c = 0; c < r->n_caps; c++)
            if (memchr(r->caps[c], '\0', HTTP_CAPTURE_MAX) == NULL) abort();
    }

    r->body = take_body(p, end, &r->body_len);
    if (!r->body) {
        free(r);
        return 0;
    }

    http_input in;
    if (http_input_parse(r, 1, &in) != 0) {
        check_refusal(r);
    } else {
        for (size_t i = 0; i < sizeof images / sizeof images[0]; i++) {
            if (!http_input_has_image(&in, images[i])) continue;
            const uint8_t *img = NULL;
            size_t len = 0;
            int rc = http_input_image(r, &in, images[i], &img, &len);
            if (rc < 0) {
                check_refusal(r);
                continue;
            }
            if (!img) continue;
            /* In the body, or at the start of a decoded base64 buffer (whose end ASan checks
             * when the last byte is read below). */
            int inside = img >= r->body && img + len <= r->body + r->body_len;
            for (int d = 0; d < in.n_decoded && !inside; d++)
                inside = img == in.decoded[d];
            if (!inside) abort();
            if (len) (void)*(volatile const uint8_t *)(img + len - 1);
        }
        for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
            char text[HTTP_CAPTURE_MAX] = {0};
            long l;
            double d;
            int b, rc;
            if (http_input_param(r, &in, params[i], text, sizeof text) < 0)
                check_refusal(r);
            else if (memchr(text, '\0', sizeof text) == NULL)
                abort();
            if (http_input_int(r, &in, params[i], 5, 1, 100, &l) != 0)
                check_refusal(r);
            else if (l < 1 || l > 100)
                abort();
            if (http_input_float(r, &in, params[i], 0.5, 0, 1, &d) != 0)
                check_refusal(r);
            else if (!(d >= 0 && d <= 1))
                abort();
            if (http_input_bool(r, &in, params[i], 0, &b) != 0)
                check_refusal(r);
            else if (b != 0 && b != 1)
                abort();
            json_t *v = http_input_json_value(r, &in, params[i], &rc);
            if (rc) check_refusal(r);
            json_decref(v);
        }
        http_input_free(&in);
    }
    free(r->resp);
    free(r->body);
    free(r);
    return 0;
}
