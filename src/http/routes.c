/*
 * The route table: every route of the service once, with the scope an API key needs, whether
 * it runs on a worker, and its handler. /openapi.json documents exactly these (a test checks
 * both ways), and /metrics labels requests by these patterns.
 */
#include "http/internal.h"

#include <string.h>

#define R HTTP_SCOPE_READ
#define C HTTP_SCOPE_CHECKIN
#define W HTTP_SCOPE_WRITE
#define A HTTP_SCOPE_ADMIN

const http_route http_routes[] = {
    /* operations: open, answered on the event loop */
    {"GET", "/healthz", 0, 0, 0, http_api_healthz},
    {"GET", "/readyz", 0, 0, 0, http_api_readyz},
    {"GET", "/metrics", 0, 0, 0, http_api_metrics},
    {"GET", "/openapi.json", 0, 0, 0, http_api_openapi},
    /* the web page (web/, embedded): open, answered on the event loop */
    {"GET", "/", 0, 0, 0, http_api_static},
    {"GET", "/app.css", 0, 0, 0, http_api_static},
    {"GET", "/app.js", 0, 0, 0, http_api_static},
    {"GET", "/favicon.svg", 0, 0, 0, http_api_static},
    /* the face pipeline */
    {"POST", "/v1/detect", R, 1, 1, http_api_detect},
    {"POST", "/v1/analyze", R, 1, 1, http_api_analyze},
    {"POST", "/v1/embed", R, 1, 1, http_api_embed},
    {"POST", "/v1/verify", R, 1, 1, http_api_verify},
    /* the gallery */
    {"GET", "/v1/collections", R, 1, 0, http_api_collections_list},
    {"POST", "/v1/collections", A, 1, 0, http_api_collection_create},
    {"GET", "/v1/collections/{collection}", R, 1, 0, http_api_collection_get},
    {"PATCH", "/v1/collections/{collection}", A, 1, 0, http_api_collection_update},
    {"DELETE", "/v1/collections/{collection}", A, 1, 0, http_api_collection_delete},
    {"GET", "/v1/collections/{collection}/subjects", R, 1, 0, http_api_subjects_list},
    {"POST", "/v1/collections/{collection}/subjects", W, 1, 0, http_api_subject_create},
    {"GET", "/v1/collections/{collection}/subjects/{subject}", R, 1, 0, http_api_subject_get},
    {"PATCH", "/v1/collections/{collection}/subjects/{subject}", W, 1, 0, http_api_subject_update},
    {"DELETE", "/v1/collections/{collection}/subjects/{subject}", W, 1, 0, http_api_subject_delete},
    {"GET", "/v1/collections/{collection}/faces", R, 1, 0, http_api_faces_list},
    {"POST", "/v1/collections/{collection}/faces", W, 1, 1, http_api_face_enrol},
    {"GET", "/v1/collections/{collection}/faces/{face_id}", R, 1, 0, http_api_face_get},
    {"GET", "/v1/collections/{collection}/faces/{face_id}/thumbnail", R, 1, 0,
     http_api_face_thumbnail},
    {"DELETE", "/v1/collections/{collection}/faces/{face_id}", W, 1, 0, http_api_face_delete},
    {"POST", "/v1/collections/{collection}/search", R, 1, 1, http_api_search},
    /* the check-in record: a search that records who arrived (checkin: what a door device's key
     * may do beyond read), its list, a new event (write: it erases the record of every door) */
    {"POST", "/v1/collections/{collection}/checkins", C, 1, 1, http_api_checkin},
    {"GET", "/v1/collections/{collection}/checkins", R, 1, 0, http_api_checkins_list},
    {"DELETE", "/v1/collections/{collection}/checkins", W, 1, 0, http_api_checkins_clear},
};
const int http_route_count = (int)(sizeof http_routes / sizeof http_routes[0]);

_Static_assert(sizeof http_routes / sizeof http_routes[0] <= HTTP_MAX_ROUTES,
               "raise HTTP_MAX_ROUTES");

/* Matches one route pattern against a raw path; captures are percent-decoded. Returns 1 on a
 * match, 0 on none, -3 when a captured segment is malformed. */
static int match_pattern(const char *pattern, const char *path, size_t path_len,
                         char caps[HTTP_CAPTURES][HTTP_CAPTURE_MAX], int *n_caps)
{
    const char *p = pattern, *s = path, *s_end = path + path_len;
    *n_caps = 0;
    while (*p && s < s_end) {
        if (*p != '/' || *s != '/') return 0;
        p++;
        s++;
        const char *p_seg_end = strchr(p, '/');
        if (!p_seg_end) p_seg_end = p + strlen(p);
        const char *s_seg_end = memchr(s, '/', (size_t)(s_end - s));
        if (!s_seg_end) s_seg_end = s_end;
        size_t p_len = (size_t)(p_seg_end - p), s_len = (size_t)(s_seg_end - s);
        if (p_len > 2 && p[0] == '{') {
            if (s_len == 0) return 0;
            if (*n_caps == HTTP_CAPTURES) return 0;
            int rc = http_percent_decode(s, s_len, 0, caps[*n_caps], HTTP_CAPTURE_MAX);
            if (rc == BASE_ERR_LIMIT) return 0; /* longer than any id: cannot exist */
            if (rc) return -3;
            (*n_caps)++;
        } else if (p_len != s_len || memcmp(p, s, p_len) != 0) {
            return 0;
        }
        p = p_seg_end;
        s = s_seg_end;
    }
    return *p == '\0' && s == s_end;
}

int http_route_match(const char *method, const char *path, size_t path_len,
                     char caps[HTTP_CAPTURES][HTTP_CAPTURE_MAX], int *n_caps)
{
    int path_found = 0;
    for (int i = 0; i < http_route_count; i++) {
        int m = match_pattern(http_routes[i].pattern, path, path_len, caps, n_caps);
        if (m < 0) return -3;
        if (m == 0) continue;
        if (strcmp(http_routes[i].method, method) == 0) return i;
        path_found = 1;
    }
    *n_caps = 0;
    return path_found ? -2 : -1;
}

int http_route_methods(const char *path, size_t path_len, char *out, size_t cap)
{
    char caps[HTTP_CAPTURES][HTTP_CAPTURE_MAX];
    int n_caps, n = 0;
    size_t used = 0;
    if (cap) out[0] = '\0';
    for (int i = 0; i < http_route_count; i++) {
        if (match_pattern(http_routes[i].pattern, path, path_len, caps, &n_caps) != 1) continue;
        /* HEAD is answered wherever GET is (server.c routes it as GET). */
        const char *extra = strcmp(http_routes[i].method, "GET") == 0 ? ", HEAD" : "";
        int w = snprintf(out + used, cap - used, "%s%s%s", n ? ", " : "", http_routes[i].method,
                         extra);
        if (w < 0 || (size_t)w >= cap - used) return -1;
        used += (size_t)w;
        n++;
    }
    return n;
}
