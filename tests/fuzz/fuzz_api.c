/*
 * libFuzzer target for the gallery routes' handlers (src/http/api_gallery.c, api_face.c's
 * prechecks) over a real SQLite gallery: what they read from a request (percent-decoded path
 * captures, query strings, JSON and multipart bodies, the Idempotency-Key) reaches the store
 * and comes back in responses and Location headers. fuzz_request covers the parsers below
 * them; this one covers what the handlers make of the values.
 *
 * Input: "METHOD TARGET [COLLECTION]" (with a third word, the request carries an API key
 * limited to that collection), a newline, the Content-Type, a newline, the Idempotency-Key, a
 * newline, then the body. Routes without images run their handler (no worker: none of them
 * uses one); image routes are parsed and run their precheck, as the prepare step does, up to
 * the face pipeline. Every answer must be a 2xx or a 4xx (a 5xx from a client's bytes is a
 * bug), a JSON answer must parse, an error must carry its code, and a Location header must be
 * printable ASCII; an enrolment that claims its Idempotency-Key keeps the same request, run
 * again meanwhile, from claiming it too. The gallery holds collection "people" (subjects alice,
 * with face 1 and a check-in record, and bob, without faces) and "other" (another embedder);
 * it is made again from scratch after every request that may have changed it, so every input
 * meets the same store. Build and run: make fuzz; seeds in tests/fuzz/corpus/api/.
 */
#include "base/base.h"
#include "http/internal.h"

#include "fuzz_lines.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EMBEDDER "fuzz-embedder"
#define DIM 4

static http_server *srv;
static char dir[64], db[96], keys_db[96];

static void remove_store(const char *path)
{
    char p[128];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

static void cleanup(void)
{
    if (!srv) return;
    gal_close(srv->gal);
    http_keystore_close(srv->keys);
    remove_store(db);
    remove_store(keys_db);
    rmdir(dir);
}

/* The gallery every input starts from, in a new file (so face ids start at 1 again). */
static void make_gallery(void)
{
    gal_close(srv->gal);
    srv->gal = NULL;
    remove_store(db);
    struct gal_options options = {.durability = GAL_DURABLE_PROCESS};
    if (gal_open(db, &options, &srv->gal) != 0) abort();
    struct gal_collection_info people = {.name = "people",
                                         .model_id = EMBEDDER,
                                         .dim = DIM,
                                         .dtype = GAL_DTYPE_F32,
                                         .threshold = 0.5f};
    struct gal_collection_info other = {.name = "other",
                                        .model_id = "another-embedder",
                                        .dim = 8,
                                        .dtype = GAL_DTYPE_INT8,
                                        .threshold = 0.3f};
    static const uint8_t thumbnail[] = {0xFF, 0xD8, 0xFF, 0xE0, 0,    0x10, 'J',
                                        'F',  'I',  'F',  0,    0xFF, 0xD9};
    const float embedding[DIM] = {0.5f, -0.25f, 0.75f, 0.1f};
    struct gal_face_input face = {.subject_id = "alice",
                                  .model_id = EMBEDDER,
                                  .dim = DIM,
                                  .embedding = embedding,
                                  .image_hash = "sha256:00",
                                  .box = {10, 20, 30, 40},
                                  .quality = 0.9f,
                                  .thumbnail = thumbnail,
                                  .thumbnail_len = sizeof thumbnail};
    int64_t id = 0;
    if (gal_collection_create(srv->gal, &people) || gal_collection_create(srv->gal, &other) ||
        gal_subject_add(srv->gal, "people", "alice", "{\"team\":\"a\"}") ||
        gal_subject_add(srv->gal, "people", "bob", NULL) ||
        gal_subject_add(srv->gal, "other", "carol", NULL) ||
        gal_face_add(srv->gal, "people", &face, &id) || id != 1)
        abort();
    /* A check-in record to list (alice arrived; a stranger was counted), at a fixed time. */
    const struct gal_checkin_face arriving[2] = {{"alice", 0.8f, NULL}, {NULL, 0.1f, NULL}};
    struct gal_checkin arrived[2];
    struct gal_checkin_summary summary;
    if (gal_checkin(srv->gal, "people", arriving, 2, 1700000000000, arrived, &summary) ||
        summary.checked_in != 1)
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    base_log_level = BASE_LOG_OFF;
    snprintf(dir, sizeof dir, "/tmp/vultus-fuzz-api-XXXXXX");
    if (!mkdtemp(dir)) abort();
    snprintf(db, sizeof db, "%s/vultus.db", dir);
    snprintf(keys_db, sizeof keys_db, "%s/keys.db", dir);
    srv = calloc(1, sizeof *srv);
    if (!srv) abort();
    http_config_defaults(&srv->cfg);
    srv->cfg.max_body_bytes = 1 << 20;
    srv->embedder_id = EMBEDDER;
    srv->embedding_dim = DIM;
    srv->default_threshold = 0.5f;
    if (http_keystore_open(keys_db, &srv->keys) != 0) abort();
    make_gallery();
    atexit(cleanup);
    return 0;
}

/* What every answer promises; status 0 (none set) only where allowed. */
static void check_response(const http_request *r, int may_be_unset)
{
    if (r->status == 0 && may_be_unset) return;
    if (r->status < 200 || r->status > 499) abort();
    if (r->status == 204) {
        if (r->resp && r->resp_len) abort();
    } else if (!r->resp || !r->resp_len || !r->resp_type) {
        abort();
    }
    if (r->resp && r->resp_type && strcmp(r->resp_type, "application/json") == 0) {
        json_t *j = json_loadb(r->resp, r->resp_len, 0, NULL);
        if (!json_is_object(j)) abort();
        if (r->status >= 400 &&
            !json_is_string(json_object_get(json_object_get(j, "error"), "code")))
            abort();
        json_decref(j);
    }
    for (const char *c = r->location; *c; c++)
        if (*c <= ' ' || *c > '~') abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    char line[2048], target[2048];
    take_line(&p, end, line, sizeof line);
    char *space = strchr(line, ' ');
    if (!space || space - line >= 16) return 0;
    *space = '\0';
    /* A third word: the request comes with an API key limited to that collection. */
    char *limit = strchr(space + 1, ' ');
    if (limit) *limit++ = '\0';
    snprintf(target, sizeof target, "%s", space + 1);

    http_request *r = calloc(1, sizeof *r);
    if (!r) return 0;
    r->srv = srv;
    snprintf(r->method, sizeof r->method, "%s", line);
    take_line(&p, end, r->content_type, sizeof r->content_type);
    take_line(&p, end, r->idempotency_key, sizeof r->idempotency_key);
    snprintf(r->id, sizeof r->id, "fuzz-1");
    if (limit) {
        r->authenticated = 1;
        snprintf(r->key.id, sizeof r->key.id, "0123456789ab");
        r->key.scope = HTTP_SCOPE_ADMIN;
        snprintf(r->key.collection, sizeof r->key.collection, "%s", limit);
    }
    r->uri = target;
    char *q = strchr(target, '?');
    r->path_len = q ? (size_t)(q - target) : strlen(target);
    r->query = q ? q + 1 : "";
    r->faces = -1;
    r->route = http_route_match(r->method, target, r->path_len, r->caps, &r->n_caps);
    const http_route *route = r->route >= 0 ? &http_routes[r->route] : NULL;
    if (!route || !route->queued) {
        /* Unrouted (the route matcher is fuzz_request's) or an operations route, which reads
         * nothing of the request. */
        free(r);
        return 0;
    }

    r->body = take_body(p, end, &r->body_len);
    if (!r->body) {
        free(r);
        return 0;
    }

    int changed = 0;
    if (!route->image) {
        route->handler(r, NULL);
        check_response(r, 0);
        changed = strcmp(route->method, "GET") != 0;
    } else {
        http_input in;
        if (http_input_parse(r, 1, &in) != 0) {
            check_response(r, 0);
        } else {
            http_precheck precheck = http_precheck_of(route->handler);
            /* A precheck that stops the request may leave the answer to the handler (an
             * Idempotency-Key replay) and set none. */
            if (precheck) {
                precheck(r, &in);
                check_response(r, 1);
            }
            if (r->idem_claimed) {
                /* The same request again while the first holds its Idempotency-Key (a retry
                 * that races it): stopped for the handler's 409, never claimed twice. */
                http_request *again = malloc(sizeof *again);
                if (!again) abort();
                memcpy(again, r, sizeof *again);
                again->status = 0;
                again->resp = NULL;
                again->resp_len = 0;
                again->idem_claimed = again->idem_taken_over = 0;
                if (precheck(again, &in) == 0 || again->idem_claimed) abort();
                check_response(again, 1);
                free(again->resp);
                free(again);
            }
            if (r->idem_claimed) {
                /* The handler would finish or release the claim: release it, under the scope
                 * api_gallery.c's idem_scope gives it. */
                char scope[HTTP_CAPTURE_MAX + 512];
                snprintf(scope, sizeof scope, "%s\n%s\n%s", r->authenticated ? r->key.id : "-",
                         r->caps[0], r->idempotency_key);
                http_idem_release(srv->keys, scope);
            }
            http_input_free(&in);
        }
    }
    free(r->resp);
    free(r->body);
    free(r);
    if (changed) make_gallery();
    return 0;
}
