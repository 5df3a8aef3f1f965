/*
 * The contract: every response the real `vultus serve` sends matches /openapi.json, the
 * document client generators and users build on. For each response of a request driven
 * through every route (happy paths and the main errors, with real photos):
 *
 *   - its status is documented for that route and method (or by a `default` response);
 *   - its Content-Type is the documented one, and a response documented without content has
 *     no body;
 *   - a JSON body validates against the documented schema for that status, with properties
 *     closed: a field the server sends that the document does not name is a mismatch (a
 *     generated client silently drops it), unless the schema says additionalProperties (an
 *     object schema without properties is not a licence to send anything: it must say so);
 *   - an error's code is in the documented enum, with the status the enum's description
 *     gives it;
 *   - the service's own headers (X-Request-Id, Location, Retry-After, ...) are documented for
 *     the response that carries them.
 *
 * And the request side of every request the server accepted: its query parameters, body type
 * and body fields are documented for the operation, so a generated client can send them. The
 * document itself is checked too: every error code has a status, and some operation lists it.
 *
 * The validator is a small JSON-Schema subset, the one the document uses (type and nullable,
 * properties, required, additionalProperties, items, enum, $ref, allOf/anyOf/oneOf, minimum,
 * maximum, min/maxLength, min/maxItems, pattern; format is ignored), itself checked first on
 * hand-made wrong bodies so it cannot pass everything. Every documented operation must have
 * been exercised. Skips when the model pack (models/) is absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "client.h"
#include "http/internal.h"
#include "img/img.h"

#include <ctype.h>
#include <regex.h>

#define FIXTURES "../shared/data/fixtures"
#define SAMPLE(n) "models/samples/sample" #n ".jpg"

/* ---- the schema validator ---------------------------------------------------------------- */

static json_t *doc;         /* src/http/openapi.json */
static json_t *code_status; /* error code -> its status, from the enum's description */

/* Mismatches found so far, one per line; a test fails at its end when there are any, so one
 * run reports all of them. */
typedef struct problems {
    int n;
    size_t len;
    char text[32768];
} problems;

static void problem(problems *p, const char *fmt, ...)
{
    p->n++;
    if (p->len + 2 >= sizeof p->text) return;
    size_t room = sizeof p->text - p->len - 1;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(p->text + p->len, room, fmt, ap);
    va_end(ap);
    if (k > 0) p->len += (size_t)k < room ? (size_t)k : room - 1;
    p->text[p->len++] = '\n';
    p->text[p->len] = '\0';
}

/* Follows $ref (a JSON pointer into this document) until a schema without one. */
static json_t *resolve(json_t *s)
{
    for (int hops = 0; s && json_object_get(s, "$ref") && hops < 16; hops++) {
        const char *ref = json_string_value(json_object_get(s, "$ref"));
        if (!ref || strncmp(ref, "#/", 2) != 0) return NULL;
        s = doc;
        for (const char *p = ref + 2; s && *p;) {
            size_t n = strcspn(p, "/");
            char key[128];
            snprintf(key, sizeof key, "%.*s", (int)n, p);
            s = json_object_get(s, key);
            p += n + (p[n] == '/');
        }
    }
    return s;
}

static int type_matches(const char *type, const json_t *v)
{
    if (!strcmp(type, "object")) return json_is_object(v);
    if (!strcmp(type, "array")) return json_is_array(v);
    if (!strcmp(type, "string")) return json_is_string(v);
    if (!strcmp(type, "integer")) return json_is_integer(v);
    if (!strcmp(type, "number")) return json_is_number(v);
    if (!strcmp(type, "boolean")) return json_is_boolean(v);
    return 0;
}

static size_t utf8_length(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static void validate(json_t *schema, json_t *v, const char *at, problems *p);

/* How many of a list of schemas (allOf, anyOf, oneOf) v satisfies. */
static size_t count_valid(json_t *list, json_t *v, const char *at)
{
    size_t i, ok = 0;
    json_t *sub;
    json_array_foreach(list, i, sub)
    {
        problems *scratch = calloc(1, sizeof *scratch);
        validate(sub, v, at, scratch);
        ok += scratch->n == 0;
        free(scratch);
    }
    return ok;
}

static void validate_object(json_t *schema, json_t *v, const char *at, problems *p)
{
    json_t *props = json_object_get(schema, "properties");
    json_t *extra = json_object_get(schema, "additionalProperties");
    size_t i;
    json_t *name;
    json_array_foreach(json_object_get(schema, "required"), i, name)
    {
        if (!json_object_get(v, json_string_value(name)))
            problem(p, "%s: required property '%s' is missing", at, json_string_value(name));
    }
    const char *key;
    json_t *value;
    json_object_foreach(v, key, value)
    {
        char sub[512];
        snprintf(sub, sizeof sub, "%s.%s", at, key);
        json_t *prop = json_object_get(props, key);
        if (prop)
            validate(prop, value, sub, p);
        else if (json_is_object(extra))
            validate(extra, value, sub, p);
        else if (!json_is_true(extra) && (extra || props || json_object_get(schema, "type")))
            problem(p, "%s: property not in the document", sub);
    }
}

static void validate(json_t *schema, json_t *v, const char *at, problems *p)
{
    schema = resolve(schema);
    if (!schema) {
        problem(p, "%s: the schema's $ref does not resolve", at);
        return;
    }
    json_t *list;
    if ((list = json_object_get(schema, "allOf")) &&
        count_valid(list, v, at) != json_array_size(list))
        problem(p, "%s: does not match every schema of allOf", at);
    if ((list = json_object_get(schema, "anyOf")) && count_valid(list, v, at) == 0)
        problem(p, "%s: matches no schema of anyOf", at);
    if ((list = json_object_get(schema, "oneOf")) && count_valid(list, v, at) != 1)
        problem(p, "%s: does not match exactly one schema of oneOf", at);
    const char *type = json_string_value(json_object_get(schema, "type"));
    if (json_is_null(v)) {
        if (type && !json_is_true(json_object_get(schema, "nullable")))
            problem(p, "%s: null where the document says %s (not nullable)", at, type);
        return;
    }
    if (type && !type_matches(type, v)) {
        char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        problem(p, "%s: %.60s is not of type %s", at, text ? text : "?", type);
        free(text);
        return;
    }
    json_t *options = json_object_get(schema, "enum");
    if (options) {
        size_t i, found = 0;
        json_t *o;
        json_array_foreach(options, i, o) found |= json_equal(o, v);
        if (!found) {
            char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            problem(p, "%s: %.60s is not in the documented enum", at, text ? text : "?");
            free(text);
        }
    }
    json_t *limit;
    if (json_is_number(v)) {
        double x = json_number_value(v);
        if ((limit = json_object_get(schema, "minimum")) && x < json_number_value(limit))
            problem(p, "%s: %g is below the minimum %g", at, x, json_number_value(limit));
        if ((limit = json_object_get(schema, "maximum")) && x > json_number_value(limit))
            problem(p, "%s: %g is above the maximum %g", at, x, json_number_value(limit));
    }
    if (json_is_string(v)) {
        size_t n = utf8_length(json_string_value(v));
        if ((limit = json_object_get(schema, "minLength")) && n < (size_t)json_integer_value(limit))
            problem(p, "%s: shorter than %lld", at, (long long)json_integer_value(limit));
        if ((limit = json_object_get(schema, "maxLength")) && n > (size_t)json_integer_value(limit))
            problem(p, "%s: longer than %lld", at, (long long)json_integer_value(limit));
        const char *pattern = json_string_value(json_object_get(schema, "pattern"));
        regex_t re;
        if (pattern && regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) == 0) {
            if (regexec(&re, json_string_value(v), 0, NULL, 0) != 0)
                problem(p, "%s: '%s' does not match %s", at, json_string_value(v), pattern);
            regfree(&re);
        }
    }
    if (json_is_array(v)) {
        size_t n = json_array_size(v), i;
        if ((limit = json_object_get(schema, "minItems")) && n < (size_t)json_integer_value(limit))
            problem(p, "%s: fewer than %lld items", at, (long long)json_integer_value(limit));
        if ((limit = json_object_get(schema, "maxItems")) && n > (size_t)json_integer_value(limit))
            problem(p, "%s: more than %lld items", at, (long long)json_integer_value(limit));
        json_t *items = json_object_get(schema, "items"), *item;
        json_array_foreach(v, i, item)
        {
            char sub[512];
            snprintf(sub, sizeof sub, "%s[%zu]", at, i);
            if (items) validate(items, item, sub, p);
        }
    }
    if (json_is_object(v)) validate_object(schema, v, at, p);
}

/* ---- checking a response against its operation ---------------------------------------- */

static json_t *covered; /* "METHOD /pattern" -> responses checked */
static int n_responses;
static problems found;

/* The media type of a Content-Type, lower-cased, parameters removed. */
static void media_type(const char *content_type, char *out, size_t cap)
{
    size_t n = strcspn(content_type, ";");
    while (n && content_type[n - 1] == ' ')
        n--;
    if (n >= cap) n = cap - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)content_type[i]);
    out[n] = '\0';
}

/* A JSON error body: its code is documented, with the status the document gives it. */
static void check_error_code(json_t *body, int status, const char *at)
{
    const char *code = json_string_value(json_object_get(json_object_get(body, "error"), "code"));
    if (!code) return; /* the schema check reports the shape */
    json_t *documented = json_object_get(code_status, code);
    if (!documented)
        problem(&found, "%s: error code '%s' is not in the documented enum", at, code);
    else if (json_integer_value(documented) != status)
        problem(&found, "%s: error code '%s' is documented with status %lld", at, code,
                (long long)json_integer_value(documented));
}

/* The service's own response headers (not HTTP's: Content-Length, Cache-Control, ...) are
 * documented for the response that carries them, and Retry-After is an integer. */
static void check_headers(json_t *documented, const tc_response *r, const char *at)
{
    static const char *const names[] = {"X-Request-Id",     "Location", "Retry-After",
                                        "WWW-Authenticate", "ETag",     "Idempotency-Replayed",
                                        "Allow"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char value[256];
        if (!tc_header(r, names[i], value, sizeof value)) continue;
        json_t *h = NULL;
        const char *name;
        json_t *entry;
        json_object_foreach(documented, name, entry)
        {
            if (strcasecmp(name, names[i]) == 0) h = resolve(entry);
        }
        if (!h) {
            problem(&found, "%s: header %s is sent but not documented", at, names[i]);
            continue;
        }
        const char *type = json_string_value(json_object_get(json_object_get(h, "schema"), "type"));
        char *end = NULL;
        if (type && !strcmp(type, "integer") && (strtol(value, &end, 10), !value[0] || *end))
            problem(&found, "%s: header %s: '%s' is not an integer", at, names[i], value);
    }
}

/*
 * Checks one response of METHOD PATTERN (the route as the document names it). A response
 * to a request that matches no documented operation (an unknown path, a method the path does
 * not have) is checked against the Error schema alone: the document cannot name it.
 */
static void check(const char *method, const char *pattern, const tc_response *r)
{
    n_responses++;
    char at[400];
    snprintf(at, sizeof at, "%s %s -> %d", method, pattern, r->status);
    if (r->status == 0) {
        problem(&found, "%s: no response", at);
        return;
    }
    char lower[16];
    media_type(method, lower, sizeof lower); /* lower-cased: the document's method keys */
    json_t *op = json_object_get(json_object_get(json_object_get(doc, "paths"), pattern), lower);
    json_t *schema = NULL;
    char ct[128] = "";
    if (tc_header(r, "Content-Type", ct, sizeof ct)) media_type(ct, ct, sizeof ct);
    if (op) {
        char key[160];
        snprintf(key, sizeof key, "%s %s", method, pattern);
        json_object_set_new(covered, key,
                            json_integer(json_integer_value(json_object_get(covered, key)) + 1));
        json_t *responses = json_object_get(op, "responses");
        snprintf(key, sizeof key, "%d", r->status);
        json_t *resp = json_object_get(responses, key);
        if (!resp) resp = json_object_get(responses, "default");
        if (!resp) {
            problem(&found, "%s: status not documented for this operation: %.200s", at,
                    r->body ? r->body : "");
            return;
        }
        check_headers(json_object_get(resolve(resp), "headers"), r, at);
        json_t *content = json_object_get(resolve(resp), "content");
        if (json_object_size(content) == 0) {
            if (r->body_len) problem(&found, "%s: a body, documented without one", at);
            return;
        }
        json_t *media = json_object_get(content, ct);
        if (!media) {
            problem(&found, "%s: Content-Type '%s' is not the documented one", at, ct);
            return;
        }
        schema = json_object_get(media, "schema");
    } else {
        if (strcmp(ct, "application/json") != 0)
            problem(&found, "%s: an error not in application/json: '%s'", at, ct);
        schema = json_object_get(json_object_get(json_object_get(doc, "components"), "schemas"),
                                 "Error");
    }
    if (strcmp(ct, "application/json") != 0) return; /* text, HTML, images: no schema */
    json_error_t err;
    json_t *body = json_loadb(r->body ? r->body : "", r->body_len, JSON_DECODE_ANY, &err);
    if (!body) {
        problem(&found, "%s: the body is not JSON: %s", at, err.text);
        return;
    }
    validate(schema, body, at, &found);
    if (r->status >= 400) check_error_code(body, r->status, at);
    json_decref(body);
}

/* A parameter of the operation (or of its path) with this name and place. */
static int has_parameter(json_t *op, json_t *path_item, const char *name, const char *in)
{
    json_t *lists[2] = {json_object_get(op, "parameters"),
                        json_object_get(path_item, "parameters")};
    for (int l = 0; l < 2; l++) {
        size_t i;
        json_t *prm;
        json_array_foreach(lists[l], i, prm)
        {
            prm = resolve(prm);
            const char *n = json_string_value(json_object_get(prm, "name"));
            const char *where = json_string_value(json_object_get(prm, "in"));
            if (n && where && !strcmp(n, name) && !strcmp(where, in)) return 1;
        }
    }
    return 0;
}

/*
 * The request side, for requests the server accepted: what a client had to send is what the
 * document describes, so a generated client can send it too. Every query parameter is a
 * documented one; the body's media type is documented; a JSON body validates against the
 * documented schema; a multipart body's parts are properties of the documented schema.
 */
static void check_request(const char *method, const char *pattern, const char *path,
                          const char *headers, const char *body, size_t len)
{
    char lower[16], at[400];
    media_type(method, lower, sizeof lower);
    snprintf(at, sizeof at, "request %s %s", method, path);
    at[sizeof at - 1] = '\0';
    json_t *item = json_object_get(json_object_get(doc, "paths"), pattern);
    json_t *op = json_object_get(item, lower);
    if (!op) return;
    for (const char *q = strchr(path, '?'); q && q[1]; q = strchr(q + 1, '&')) {
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(q + 1, "=&"), q + 1);
        if (!has_parameter(op, item, name, "query"))
            problem(&found, "%s: query parameter '%s' is not documented", at, name);
    }
    const char *ct_line = headers ? strcasestr(headers, "Content-Type:") : NULL;
    if (!ct_line || !len) return;
    char ct[128];
    const char *v = ct_line + 13;
    while (*v == ' ')
        v++;
    snprintf(ct, sizeof ct, "%.*s", (int)strcspn(v, "\r"), v);
    media_type(ct, ct, sizeof ct);
    json_t *media =
        json_object_get(json_object_get(json_object_get(op, "requestBody"), "content"), ct);
    if (!media) {
        problem(&found, "%s: body type '%s' is not documented", at, ct);
        return;
    }
    json_t *schema = json_object_get(media, "schema");
    if (!strcmp(ct, "application/json")) {
        json_t *j = json_loadb(body, len, 0, NULL);
        if (j) validate(schema, j, at, &found);
        json_decref(j);
    } else if (!strcmp(ct, "multipart/form-data")) {
        json_t *obj = json_object();
        static const char mark[] = "Content-Disposition: form-data; name=\"";
        for (const char *p = memmem(body, len, mark, sizeof mark - 1); p;
             p = memmem(p + 1, len - (size_t)(p + 1 - body), mark, sizeof mark - 1)) {
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)strcspn(p + sizeof mark - 1, "\""),
                     p + sizeof mark - 1);
            json_object_set_new(obj, name, json_string("part"));
        }
        /* Only the names are checked: a part's bytes are text or an image. */
        json_t *props = json_object_get(resolve(schema), "properties");
        json_t *extra = json_object_get(resolve(schema), "additionalProperties");
        const char *name;
        json_t *unused;
        json_object_foreach(obj, name, unused)
        {
            if (!json_object_get(props, name) && !json_is_true(extra))
                problem(&found, "%s: multipart part '%s' is not documented", at, name);
        }
        json_decref(obj);
    }
}

/* Sends, checks, and returns the response (the caller frees it). */
static tc_response *call(tc_response *r, int port, const char *method, const char *pattern,
                         const char *path, const char *headers, const void *body, size_t len)
{
    tc_request(port, method, path, headers, body, len, r);
    check(method, pattern, r);
    if (r->status > 0 && r->status < 400) check_request(method, pattern, path, headers, body, len);
    return r;
}

/* Like call(), and asserts the status: the scenario depends on it (an id, a next page). */
static json_t *call_json(int port, const char *method, const char *pattern, const char *path,
                         const char *headers, const void *body, size_t len, int status)
{
    tc_response r;
    call(&r, port, method, pattern, path, headers, body, len);
    if (r.status != status)
        fail_msg("%s %s: expected %d, got %d: %.300s", method, path, status, r.status,
                 r.body ? r.body : "");
    json_t *j = tc_json(&r);
    tc_response_free(&r);
    return j;
}

/* Asserts a status (and error code, when code is not NULL) and checks the response. */
static void expect(int port, const char *method, const char *pattern, const char *path,
                   const char *headers, const void *body, size_t len, int status, const char *code)
{
    tc_response r;
    call(&r, port, method, pattern, path, headers, body, len);
    char got[64] = "";
    tc_error_code(&r, got, sizeof got);
    if (r.status != status || (code && strcmp(got, code) != 0))
        fail_msg("%s %s: expected %d %s, got %d: %.300s", method, path, status, code ? code : "",
                 r.status, r.body ? r.body : "");
    tc_response_free(&r);
}

/* A string literal body and its length. */
#define LIT(s) s, strlen(s)
#define JSON_CT "Content-Type: application/json\r\n"
#define JPEG_CT "Content-Type: image/jpeg\r\n"
#define FORM_CT "Content-Type: multipart/form-data; boundary=" TC_BOUNDARY "\r\n"

/* {"image": base64, EXTRA} */
static char *json_image(const char *data, size_t len, const char *extra)
{
    char *b64 = malloc(len / 3 * 4 + 8);
    http_base64url_encode((const uint8_t *)data, len, b64);
    size_t n = strlen(b64) + 256 + (extra ? strlen(extra) : 0);
    char *body = malloc(n);
    snprintf(body, n, "{\"image\":\"%s\"%s%s}", b64, extra ? "," : "", extra ? extra : "");
    free(b64);
    return body;
}

/* A white 200x200 JPEG: a real image with no face. */
static char *blank_jpeg(size_t *len)
{
    img_image img = {0};
    assert_int_equal(img_alloc(&img, 200, 200, 3), 0);
    memset(img.data, 255, 200 * 200 * 3);
    uint8_t *out = NULL;
    assert_int_equal(img_encode_jpeg(&img, 90, &out, len), 0);
    img_free(&img);
    return (char *)out;
}

/* ---- set-up ------------------------------------------------------------------------------- */

/* Reads the document and the code -> status table from the lines "- code: NNN..." of the
 * Error code's description (every code of the enum must have one). */
static int load_doc(void **state)
{
    (void)state;
    json_error_t err;
    doc = json_load_file("src/http/openapi.json", 0, &err);
    if (!doc) {
        fprintf(stderr, "src/http/openapi.json: %s (line %d)\n", err.text, err.line);
        return -1;
    }
    json_t *ref = json_pack("{s:s}", "$ref", "#/components/schemas/ErrorDetail");
    json_t *code = json_object_get(json_object_get(resolve(ref), "properties"), "code");
    json_decref(ref);
    code_status = json_object();
    covered = json_object();
    const char *text = json_string_value(json_object_get(code, "description"));
    for (const char *line = text; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : "") {
        char name[64];
        int status;
        if (sscanf(line, "- %63[a-z0-9_]: %d", name, &status) == 2)
            json_object_set_new(code_status, name, json_integer(status));
    }
    return 0;
}

static int free_doc(void **state)
{
    (void)state;
    json_decref(doc);
    json_decref(code_status);
    json_decref(covered);
    return 0;
}

/* ---- the validator on hand-made bodies ---------------------------------------------------- */

static int errors_of(const char *schema_ref, const char *body_text)
{
    json_t *ref = json_pack("{s:s}", "$ref", schema_ref);
    json_t *body = json_loads(body_text, JSON_DECODE_ANY, NULL);
    assert_non_null(body);
    problems *p = calloc(1, sizeof *p);
    validate(ref, body, schema_ref, p);
    int n = p->n;
    if (n) print_message("(expected) %s", p->text);
    free(p);
    json_decref(body);
    json_decref(ref);
    return n;
}

static void test_validator_rejects_wrong_bodies(void **state)
{
    (void)state;
    const char *box = "#/components/schemas/Box", *err = "#/components/schemas/Error";
    const char *verify = "#/components/schemas/Verify";
    /* Right bodies pass... */
    assert_int_equal(errors_of(box, "{\"x\":1,\"y\":2.5,\"width\":3,\"height\":4}"), 0);
    assert_int_equal(errors_of(err, "{\"error\":{\"code\":\"no_face\",\"message\":\"m\"}}"), 0);
    assert_int_equal(errors_of("#/components/schemas/CollectionList",
                               "{\"collections\":[],\"next_after\":null}"),
                     0);
    /* ...and wrong ones do not: a missing required field, a wrong type, an integer that is a
     * real, a code outside the enum, a property the document does not name, null where it is
     * not nullable, a wrong item count, a string off its pattern, a number over its maximum. */
    assert_int_equal(errors_of(box, "{\"x\":1,\"y\":2,\"width\":3}"), 1);
    assert_int_equal(errors_of(box, "{\"x\":\"1\",\"y\":2,\"width\":3,\"height\":4}"), 1);
    assert_int_equal(errors_of("#/components/schemas/FacesResult",
                               "{\"width\":1.5,\"height\":2,\"min_face_size\":20,\"faces\":[],"
                               "\"timing_ms\":{\"decode\":1,\"detect\":2}}"),
                     1);
    assert_int_equal(errors_of(err, "{\"error\":{\"code\":\"nope\",\"message\":\"m\"}}"), 1);
    assert_int_equal(errors_of(box, "{\"x\":1,\"y\":2,\"width\":3,\"height\":4,\"z\":0}"), 1);
    assert_int_equal(errors_of(err, "{\"error\":{\"code\":\"no_face\",\"message\":null}}"), 1);
    assert_int_equal(
        errors_of(verify, "{\"similarity\":0.5,\"threshold\":0.9,\"match\":false,\"model\":\"m\","
                          "\"face_a\":{\"box\":{\"x\":1,\"y\":2,\"width\":3,\"height\":4},"
                          "\"score\":0.9,\"faces_in_image\":1}}"),
        1);
    assert_int_equal(errors_of("#/components/schemas/Face/properties/keypoints",
                               "{\"right_eye\":[1,2],\"left_eye\":[1,2],\"nose\":[1,2,3],"
                               "\"mouth\":[1,2],\"right_ear\":[1,2],\"left_ear\":[1,2]}"),
                     1);
    assert_int_equal(errors_of("#/components/schemas/CollectionCreate", "{\"name\":\"a b\"}"), 1);
    assert_int_equal(
        errors_of("#/components/schemas/CollectionCreate", "{\"name\":\"a\",\"threshold\":1.5}"),
        1);
    /* additionalProperties: false, a schema, and allOf/anyOf/oneOf, on inline schemas. */
    json_t *saved = doc;
    doc = json_pack("{s:{s:s,s:{s:{s:s}},s:b},s:{s:s,s:{s:s}},s:{s:[{s:s},{s:s}]},s:{s:[{s:s},{"
                    "s:s}]}}",
                    "closed", "type", "object", "properties", "a", "type", "integer",
                    "additionalProperties", 0, "open", "type", "object", "additionalProperties",
                    "type", "number", "one", "oneOf", "type", "number", "type", "integer", "any",
                    "anyOf", "type", "string", "type", "boolean");
    assert_int_equal(errors_of("#/closed", "{\"a\":1}"), 0);
    assert_int_equal(errors_of("#/closed", "{\"a\":1,\"b\":2}"), 1);
    assert_int_equal(errors_of("#/open", "{\"b\":2}"), 0);
    assert_int_equal(errors_of("#/open", "{\"b\":\"x\"}"), 1);
    assert_int_equal(errors_of("#/one", "0.5"), 0);
    assert_int_equal(errors_of("#/one", "2"), 1); /* an integer is a number too: both match */
    assert_int_equal(errors_of("#/any", "true"), 0);
    assert_int_equal(errors_of("#/any", "1"), 1);
    assert_int_equal(errors_of("#/missing", "1"), 1);
    json_decref(doc);
    doc = saved;
}

/* Every error code of the enum has its status in the description, and the document's own
 * structure holds: every response $ref resolves. */
static void test_document_is_consistent(void **state)
{
    (void)state;
    json_t *ref = json_pack("{s:s}", "$ref", "#/components/schemas/ErrorDetail");
    json_t *codes = json_object_get(json_object_get(resolve(ref), "properties"), "code");
    json_decref(ref);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(codes, "enum"), i, c)
    {
        if (!json_object_get(code_status, json_string_value(c)))
            fail_msg("error code %s has no '- code: status' line", json_string_value(c));
    }
    assert_int_equal(json_object_size(code_status),
                     json_array_size(json_object_get(codes, "enum")));
    /* ...and some operation documents that status: a code no response can carry is a code a
     * client generator gives no type to. */
    const char *code, *path, *method;
    json_t *status, *ops, *op;
    json_object_foreach(code_status, code, status)
    {
        char key[16];
        snprintf(key, sizeof key, "%lld", (long long)json_integer_value(status));
        int documented = 0;
        json_object_foreach(json_object_get(doc, "paths"), path, ops)
        {
            json_object_foreach(ops, method, op)
            {
                documented |= json_object_get(json_object_get(op, "responses"), key) != NULL;
            }
        }
        if (!documented) fail_msg("error code %s: no operation documents status %s", code, key);
    }
}

/* ---- driving the service ------------------------------------------------------------------ */

static tc_server open_srv; /* no API keys */

static int start_open(void **state)
{
    if (load_doc(state) != 0) return -1;
    if (!tc_have_models()) return 0;
    /* 2.9 Mpx: sample6 (1920x1537) is over it (image_too_large), samples 1 and 5 under. */
    static const char *const args[] = {
        "--workers", "2", "--max-body-bytes", "2097152", "--max-pixels", "2900000", "--grace-ms",
        "1000",      NULL};
    return tc_server_start(&open_srv, NULL, args, 1);
}

static int stop_open(void **state)
{
    int rc = open_srv.pid > 0 ? tc_server_stop(&open_srv) : 0;
    free_doc(state);
    return rc != 0;
}

#define NEED_SERVER(srv) TC_NEED_SERVER(*(srv), 1, "models/")

/* The face pipeline: detect, analyze, embed, verify, through the three ways to send an
 * image, and their errors. */
static void drive_face_routes(int port)
{
    size_t len1, len5, len6, blank_len;
    char *s1 = tc_load(SAMPLE(1), &len1), *s5 = tc_load(SAMPLE(5), &len5),
         *s6 = tc_load(SAMPLE(6), &len6);
    char *blank = blank_jpeg(&blank_len);
    const char *routes[] = {"/v1/detect", "/v1/analyze", "/v1/embed"};
    for (int i = 0; i < 3; i++) {
        const char *route = routes[i];
        tc_form f = {0};
        tc_form_file(&f, "image", s1, len1);
        tc_form_end(&f);
        json_decref(call_json(port, "POST", route, route, FORM_CT, f.data, f.len, 200));
        free(f.data);
        json_decref(call_json(port, "POST", route, route, JPEG_CT, s5, len5, 200));
        char *js = json_image(s1, len1, NULL);
        json_decref(call_json(port, "POST", route, route, JSON_CT, js, strlen(js), 200));
        free(js);
        /* Errors: no image, not an image, a truncated JPEG, a bad base64, an image over
         * --max-pixels, a body over --max-body-bytes, a media type the route does not take,
         * malformed JSON and multipart, and no face. */
        expect(port, "POST", route, route, JSON_CT, LIT("{}"), 400, "missing_image");
        expect(port, "POST", route, route, "Content-Type: application/octet-stream\r\n",
               LIT("hello, not an image"), 415, "unsupported_image");
        expect(port, "POST", route, route, JPEG_CT, s1, 2000, 400, "invalid_image");
        expect(port, "POST", route, route, JSON_CT, LIT("{\"image\":\"@@@\"}"), 400,
               "invalid_base64");
        expect(port, "POST", route, route, JPEG_CT, s6, len6, 413, "image_too_large");
        expect(port, "POST", route, route, "Content-Type: text/plain\r\n", LIT("x"), 415,
               "unsupported_media_type");
        expect(port, "POST", route, route, JSON_CT, LIT("{\"image\":"), 400, "invalid_json");
        expect(port, "POST", route, route, FORM_CT, LIT("--" TC_BOUNDARY "\r\nbroken"), 400,
               "invalid_multipart");
        expect(port, "POST", route, route, JPEG_CT, blank, blank_len, 200, NULL);
    }
    /* A body over --max-body-bytes is refused from its Content-Length, before it is read: only
     * the head is sent (sending the body would race the server closing the connection). */
    tc_response r = {0};
    int fd = tc_connect(port);
    const char *head =
        "POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" JPEG_CT
        "Content-Length: 2200000\r\n\r\n";
    assert_int_equal(tc_send_all(fd, head, strlen(head)), 0);
    tc_read_response(fd, &r, 10000);
    close(fd);
    check("POST", "/v1/detect", &r);
    char code[64];
    assert_int_equal(r.status, 413);
    assert_string_equal(tc_error_code(&r, code, sizeof code), "body_too_large");
    tc_response_free(&r);
    json_t *j = call_json(port, "POST", "/v1/analyze", "/v1/analyze?embedding=true", JPEG_CT, s1,
                          len1, 200);
    assert_non_null(json_object_get(json_array_get(json_object_get(j, "faces"), 0), "embedding"));
    json_decref(j);
    tc_form fe = {0};
    tc_form_field(&fe, "embedding", "true");
    tc_form_file(&fe, "image", s5, len5);
    tc_form_end(&fe);
    json_decref(
        call_json(port, "POST", "/v1/analyze", "/v1/analyze", FORM_CT, fe.data, fe.len, 200));
    free(fe.data);
    char *je = json_image(s5, len5, "\"embedding\":true");
    json_decref(
        call_json(port, "POST", "/v1/analyze", "/v1/analyze", JSON_CT, je, strlen(je), 200));
    free(je);
    expect(port, "POST", "/v1/analyze", "/v1/analyze?embedding=maybe", JPEG_CT, s1, len1, 422,
           "invalid_parameter");

    /* verify: two images (multipart and JSON), then its errors. */
    tc_form f = {0};
    tc_form_file(&f, "image_a", s1, len1);
    tc_form_file(&f, "image_b", s5, len5);
    tc_form_end(&f);
    json_decref(call_json(port, "POST", "/v1/verify", "/v1/verify", FORM_CT, f.data, f.len, 200));
    free(f.data);
    f = (tc_form){0};
    tc_form_file(&f, "image_a", s1, len1);
    tc_form_end(&f);
    expect(port, "POST", "/v1/verify", "/v1/verify", FORM_CT, f.data, f.len, 400, "missing_image");
    free(f.data);
    f = (tc_form){0};
    tc_form_file(&f, "image_a", s1, len1);
    tc_form_file(&f, "image_b", blank, blank_len);
    tc_form_end(&f);
    expect(port, "POST", "/v1/verify", "/v1/verify", FORM_CT, f.data, f.len, 422, "no_face");
    free(f.data);
    free(s1);
    free(s5);
    free(s6);
    free(blank);
}

/* The gallery: collections, subjects, enrolment (three ways, Idempotency-Key), faces,
 * search, verify against a subject, pagination, and their errors. */
static void drive_gallery_routes(int port)
{
    const char *C = "/v1/collections", *CN = "/v1/collections/{collection}";
    const char *S = "/v1/collections/{collection}/subjects";
    const char *SN = "/v1/collections/{collection}/subjects/{subject}";
    const char *F = "/v1/collections/{collection}/faces";
    const char *FN = "/v1/collections/{collection}/faces/{face_id}";
    const char *FT = "/v1/collections/{collection}/faces/{face_id}/thumbnail";
    const char *Q = "/v1/collections/{collection}/search";

    json_decref(call_json(port, "POST", C, C, JSON_CT, LIT("{\"name\":\"staff\"}"), 201));
    json_decref(call_json(port, "POST", C, C, JSON_CT,
                          LIT("{\"name\":\"f32s\",\"dtype\":\"f32\",\"threshold\":0.5}"), 201));
    expect(port, "POST", C, C, JSON_CT, LIT("{\"name\":\"staff\"}"), 409, "collection_exists");
    expect(port, "POST", C, C, JSON_CT, LIT("{\"name\":\"a b\"}"), 422, "invalid_parameter");
    expect(port, "POST", C, C, JSON_CT, LIT("{}"), 422, "invalid_parameter");
    expect(port, "POST", C, C, JSON_CT, LIT("[1]"), 400, "invalid_json");
    expect(port, "POST", C, C, "Content-Type: text/plain\r\n", LIT("x"), 415,
           "unsupported_media_type");
    json_t *list = call_json(port, "GET", C, "/v1/collections?limit=1", NULL, NULL, 0, 200);
    const char *next = json_string_value(json_object_get(list, "next_after"));
    assert_non_null(next);
    char path[512];
    snprintf(path, sizeof path, "/v1/collections?limit=1&after=%s", next);
    json_decref(list);
    json_decref(call_json(port, "GET", C, path, NULL, NULL, 0, 200)); /* the second page */
    expect(port, "GET", C, "/v1/collections?limit=0", NULL, NULL, 0, 422, "invalid_parameter");
    /* A list takes its parameters from a JSON body too: another body type is refused. */
    expect(port, "GET", C, C, "Content-Type: text/plain\r\n", LIT("x"), 415,
           "unsupported_media_type");
    json_decref(call_json(port, "GET", CN, "/v1/collections/staff", NULL, NULL, 0, 200));
    expect(port, "GET", CN, "/v1/collections/nope", NULL, NULL, 0, 404, "collection_not_found");
    json_decref(call_json(port, "PATCH", CN, "/v1/collections/f32s", JSON_CT,
                          LIT("{\"threshold\":0.6}"), 200));
    expect(port, "PATCH", CN, "/v1/collections/f32s", JSON_CT, LIT("{\"dtype\":\"f64\"}"), 422,
           "invalid_parameter");
    expect(port, "PATCH", CN, "/v1/collections/nope", JSON_CT, LIT("{\"threshold\":0.6}"), 404,
           "collection_not_found");

    /* subjects */
    json_decref(call_json(port, "POST", S, "/v1/collections/staff/subjects", JSON_CT,
                          LIT("{\"id\":\"alice\",\"metadata\":{\"team\":\"a\"}}"), 201));
    json_decref(call_json(port, "POST", S, "/v1/collections/staff/subjects", JSON_CT,
                          LIT("{\"id\":\"empty one\"}"), 201));
    expect(port, "POST", S, "/v1/collections/staff/subjects", JSON_CT, LIT("{\"id\":\"alice\"}"),
           409, "subject_exists");
    expect(port, "POST", S, "/v1/collections/staff/subjects", JSON_CT, LIT("{}"), 422,
           "invalid_parameter");
    expect(port, "POST", S, "/v1/collections/nope/subjects", JSON_CT, LIT("{\"id\":\"x\"}"), 404,
           "collection_not_found");
    json_t *subjects =
        call_json(port, "GET", S, "/v1/collections/staff/subjects?limit=1", NULL, NULL, 0, 200);
    next = json_string_value(json_object_get(subjects, "next_after"));
    assert_non_null(next);
    snprintf(path, sizeof path, "/v1/collections/staff/subjects?limit=1&after=%s", next);
    json_decref(subjects);
    json_decref(call_json(port, "GET", S, path, NULL, NULL, 0, 200));
    expect(port, "GET", S, "/v1/collections/staff/subjects?limit=1001", NULL, NULL, 0, 422,
           "invalid_parameter");
    expect(port, "GET", S, "/v1/collections/staff/subjects", "Content-Type: text/plain\r\n",
           LIT("x"), 415, "unsupported_media_type");
    expect(port, "GET", S, "/v1/collections/nope/subjects", NULL, NULL, 0, 404,
           "collection_not_found");
    json_decref(
        call_json(port, "GET", SN, "/v1/collections/staff/subjects/alice", NULL, NULL, 0, 200));
    expect(port, "GET", SN, "/v1/collections/staff/subjects/bob", NULL, NULL, 0, 404,
           "subject_not_found");
    json_decref(call_json(port, "GET", SN, "/v1/collections/staff/subjects/empty%20one", NULL, NULL,
                          0, 200));
    size_t big_len = 70000;
    char *big_meta = malloc(big_len + 32);
    int n = snprintf(big_meta, 32, "{\"metadata\":\"");
    memset(big_meta + n, 'm', big_len);
    snprintf(big_meta + n + big_len, 32, "\"}");
    expect(port, "PATCH", SN, "/v1/collections/staff/subjects/alice", JSON_CT, big_meta,
           strlen(big_meta), 413, "too_large");
    free(big_meta);
    expect(port, "GET", SN, "/v1/collections/staff/subjects/alice",
           "X-Request-Deadline-Ms: soon\r\n", NULL, 0, 400, "bad_request");
    json_decref(call_json(port, "PATCH", SN, "/v1/collections/staff/subjects/alice", JSON_CT,
                          LIT("{\"metadata\":[1,2]}"), 200));
    expect(port, "PATCH", SN, "/v1/collections/staff/subjects/alice", JSON_CT, LIT("{}"), 422,
           "invalid_parameter");

    /* enrolment: multipart, raw body (parameters in the query) and base64 JSON */
    size_t len1, len2, len3, len5, blank_len;
    char *s1 = tc_load(SAMPLE(1), &len1), *s2 = tc_load(SAMPLE(2), &len2);
    char *s3 = tc_load(SAMPLE(3), &len3), *s5 = tc_load(SAMPLE(5), &len5);
    char *blank = blank_jpeg(&blank_len);
    tc_form f = {0};
    tc_form_field(&f, "subject", "alice");
    tc_form_file(&f, "image", s1, len1);
    tc_form_end(&f);
    json_t *enrolled = call_json(port, "POST", F, "/v1/collections/staff/faces",
                                 FORM_CT "Idempotency-Key: enrol-1\r\n", f.data, f.len, 201);
    json_int_t face_id = json_integer_value(json_object_get(enrolled, "face_id"));
    json_decref(enrolled);
    /* The replay: the first answer again, checked like any other. */
    tc_response r;
    call(&r, port, "POST", F, "/v1/collections/staff/faces", FORM_CT "Idempotency-Key: enrol-1\r\n",
         f.data, f.len);
    char v[32];
    assert_int_equal(r.status, 201);
    assert_string_equal(tc_header(&r, "Idempotency-Replayed", v, sizeof v), "true");
    tc_response_free(&r);
    free(f.data);
    json_decref(call_json(port, "POST", F, "/v1/collections/staff/faces?subject=bob", JPEG_CT, s2,
                          len2, 201));
    json_decref(call_json(port, "POST", F,
                          "/v1/collections/staff/faces?subject=carl&create_subject=true"
                          "&metadata=%7B%22team%22%3A%22b%22%7D",
                          JPEG_CT, s5, len5, 201));
    char *js = json_image(s3, len3, "\"subject\":\"alice\",\"create_subject\":false");
    json_decref(
        call_json(port, "POST", F, "/v1/collections/staff/faces", JSON_CT, js, strlen(js), 201));
    free(js);
    /* ...and its errors */
    expect(port, "POST", F, "/v1/collections/staff/faces?subject=bob",
           JPEG_CT "Idempotency-Key: enrol-1\r\n", s2, len2, 422, "idempotency_key_reused");
    expect(port, "POST", F, "/v1/collections/staff/faces", JPEG_CT, s2, len2, 422,
           "invalid_parameter");
    expect(port, "POST", F, "/v1/collections/staff/faces?subject=dave&create_subject=false",
           JPEG_CT, s2, len2, 404, "subject_not_found");
    expect(port, "POST", F, "/v1/collections/staff/faces?subject=bob", JPEG_CT, blank, blank_len,
           422, "no_face");
    expect(port, "POST", F, "/v1/collections/nope/faces?subject=bob", JPEG_CT, s2, len2, 404,
           "collection_not_found");
    char long_key[300];
    snprintf(long_key, sizeof long_key, JPEG_CT "Idempotency-Key: %0201d\r\n", 7);
    expect(port, "POST", F, "/v1/collections/staff/faces?subject=bob", long_key, s2, len2, 400,
           "bad_request");

    /* faces */
    json_decref(
        call_json(port, "GET", F, "/v1/collections/staff/faces?subject=alice", NULL, NULL, 0, 200));
    json_t *faces = call_json(port, "GET", F, "/v1/collections/staff/faces?subject=alice&limit=1",
                              NULL, NULL, 0, 200);
    next = json_string_value(json_object_get(faces, "next_after"));
    assert_non_null(next);
    snprintf(path, sizeof path, "/v1/collections/staff/faces?subject=alice&limit=1&after=%s", next);
    json_decref(faces);
    json_decref(call_json(port, "GET", F, path, NULL, NULL, 0, 200));
    /* without subject: the collection's faces (validated against FaceList) */
    json_decref(call_json(port, "GET", F, "/v1/collections/staff/faces", NULL, NULL, 0, 200));
    expect(port, "GET", F, "/v1/collections/staff/faces?after=12", NULL, NULL, 0, 422,
           "invalid_parameter");
    expect(port, "GET", F, "/v1/collections/staff/faces?subject=alice&after=x", NULL, NULL, 0, 422,
           "invalid_parameter");
    expect(port, "GET", F, "/v1/collections/staff/faces?subject=zed", NULL, NULL, 0, 404,
           "subject_not_found");
    expect(port, "GET", F, "/v1/collections/staff/faces?subject=alice",
           "Content-Type: text/plain\r\n", LIT("x"), 415, "unsupported_media_type");
    snprintf(path, sizeof path, "/v1/collections/staff/faces/%lld", (long long)face_id);
    json_decref(call_json(port, "GET", FN, path, NULL, NULL, 0, 200));
    snprintf(path, sizeof path, "/v1/collections/staff/faces/%lld?embedding=true",
             (long long)face_id);
    json_decref(call_json(port, "GET", FN, path, NULL, NULL, 0, 200));
    snprintf(path, sizeof path, "/v1/collections/staff/faces/%lld?embedding=maybe",
             (long long)face_id);
    expect(port, "GET", FN, path, NULL, NULL, 0, 422, "invalid_parameter");
    expect(port, "GET", FN, "/v1/collections/staff/faces/999999", NULL, NULL, 0, 404,
           "face_not_found");
    expect(port, "GET", FN, "/v1/collections/staff/faces/abc", NULL, NULL, 0, 422,
           "invalid_parameter");
    snprintf(path, sizeof path, "/v1/collections/staff/faces/%lld/thumbnail", (long long)face_id);
    call(&r, port, "GET", FT, path, NULL, NULL, 0);
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
    expect(port, "GET", FT, "/v1/collections/staff/faces/999999/thumbnail", NULL, NULL, 0, 404,
           "face_not_found");

    /* search and verify against a subject */
    f = (tc_form){0};
    tc_form_field(&f, "k", "3");
    tc_form_file(&f, "image", s5, len5);
    tc_form_end(&f);
    json_decref(
        call_json(port, "POST", Q, "/v1/collections/staff/search", FORM_CT, f.data, f.len, 200));
    free(f.data);
    js = json_image(s5, len5, "\"k\":2");
    json_decref(
        call_json(port, "POST", Q, "/v1/collections/staff/search", JSON_CT, js, strlen(js), 200));
    free(js);
    json_t *found_faces =
        call_json(port, "POST", Q, "/v1/collections/staff/search?k=2", JPEG_CT, s1, len1, 200);
    /* the face alice was enrolled with (sample 1's most prominent) is found as alice */
    int alice_found = 0;
    json_t *hits = json_object_get(found_faces, "faces");
    for (size_t i = 0; i < json_array_size(hits); i++) {
        const char *id = json_string_value(json_object_get(json_array_get(hits, i), "identity"));
        if (id && strcmp(id, "alice") == 0) alice_found++;
    }
    assert_true(alice_found >= 1);
    json_decref(found_faces);
    json_decref(call_json(port, "POST", Q, "/v1/collections/staff/search", JPEG_CT, s5, len5, 200));
    json_decref(call_json(port, "POST", Q, "/v1/collections/f32s/search", JPEG_CT, s5, len5, 200));
    expect(port, "POST", Q, "/v1/collections/staff/search?k=0", JPEG_CT, s1, len1, 422,
           "invalid_parameter");
    expect(port, "POST", Q, "/v1/collections/staff/search", JPEG_CT, blank, blank_len, 422,
           "no_face");
    expect(port, "POST", Q, "/v1/collections/nope/search", JPEG_CT, s1, len1, 404,
           "collection_not_found");
    expect(port, "POST", Q, "/v1/collections/staff/search", JSON_CT, LIT("{}"), 400,
           "missing_image");
    js = json_image(s1, len1, "\"collection\":\"staff\",\"subject\":\"alice\"");
    json_decref(call_json(port, "POST", "/v1/verify", "/v1/verify", JSON_CT, js, strlen(js), 200));
    free(js);
    json_decref(call_json(port, "POST", "/v1/verify", "/v1/verify?collection=staff&subject=alice",
                          JPEG_CT, s1, len1, 200));
    f = (tc_form){0};
    tc_form_field(&f, "collection", "staff");
    tc_form_field(&f, "subject", "alice");
    tc_form_file(&f, "image", s5, len5);
    tc_form_end(&f);
    json_decref(call_json(port, "POST", "/v1/verify", "/v1/verify", FORM_CT, f.data, f.len, 200));
    free(f.data);
    js = json_image(s1, len1, "\"collection\":\"staff\",\"subject\":\"empty one\"");
    expect(port, "POST", "/v1/verify", "/v1/verify", JSON_CT, js, strlen(js), 422,
           "no_enrolled_face");
    free(js);
    js = json_image(s1, len1, "\"collection\":\"staff\",\"subject\":\"zed\"");
    expect(port, "POST", "/v1/verify", "/v1/verify", JSON_CT, js, strlen(js), 404,
           "subject_not_found");
    free(js);
    js = json_image(s1, len1, "\"collection\":\"nope\",\"subject\":\"zed\"");
    expect(port, "POST", "/v1/verify", "/v1/verify", JSON_CT, js, strlen(js), 404,
           "collection_not_found");
    free(js);

    /* deletions, then the same again: gone */
    snprintf(path, sizeof path, "/v1/collections/staff/faces/%lld", (long long)face_id);
    expect(port, "DELETE", FN, path, NULL, NULL, 0, 204, NULL);
    expect(port, "DELETE", FN, path, NULL, NULL, 0, 404, "face_not_found");
    expect(port, "DELETE", SN, "/v1/collections/staff/subjects/bob", NULL, NULL, 0, 204, NULL);
    expect(port, "DELETE", SN, "/v1/collections/staff/subjects/bob", NULL, NULL, 0, 404,
           "subject_not_found");
    expect(port, "DELETE", CN, "/v1/collections/f32s", NULL, NULL, 0, 204, NULL);
    expect(port, "DELETE", CN, "/v1/collections/f32s", NULL, NULL, 0, 404, "collection_not_found");
    free(s1);
    free(s2);
    free(s3);
    free(s5);
    free(blank);
}

static void drive_ops_routes(int port)
{
    const char *const pages[] = {"/", "/app.css", "/app.js", "/favicon.svg"};
    for (int i = 0; i < 4; i++) {
        tc_response r;
        call(&r, port, "GET", pages[i], pages[i], NULL, NULL, 0);
        char etag[80], cond[128];
        assert_int_equal(r.status, 200);
        assert_non_null(tc_header(&r, "ETag", etag, sizeof etag));
        tc_response_free(&r);
        snprintf(cond, sizeof cond, "If-None-Match: %s\r\n", etag);
        expect(port, "GET", pages[i], pages[i], cond, NULL, 0, 304, NULL);
    }
    const char *const ops[] = {"/healthz", "/readyz", "/metrics", "/openapi.json"};
    for (int i = 0; i < 4; i++)
        expect(port, "GET", ops[i], ops[i], NULL, NULL, 0, 200, NULL);
    /* No documented operation: the Error schema alone. */
    tc_response r;
    call(&r, port, "GET", "/v1/nope", "/v1/nope", NULL, NULL, 0);
    assert_int_equal(r.status, 404);
    tc_response_free(&r);
    call(&r, port, "PUT", "/v1/detect", "/v1/detect", NULL, NULL, 0);
    assert_int_equal(r.status, 405);
    tc_response_free(&r);
    call(&r, port, "POST", "/healthz", "/healthz", NULL, NULL, 0);
    assert_int_equal(r.status, 405);
    tc_response_free(&r);
    call(&r, port, "GET", "/v1/collections/{collection}", "/v1/collections/a%ZZ", NULL, NULL, 0);
    assert_int_equal(r.status, 400);
    tc_response_free(&r);
}

/* With the evaluation fixtures: group photos and a crowd (many faces per answer), two photos
 * of one person, and the small gallery of aligned crops (PNG) enrolled then searched. */
static void drive_fixtures(int port)
{
    const char *const photos[] = {FIXTURES "/group-bbt1.jpg", FIXTURES "/crowd-largest-selfie.jpg",
                                  FIXTURES "/noface-white.png"};
    for (int i = 0; i < 3; i++) {
        size_t len;
        char *data = tc_load(photos[i], &len);
        const char *type = strstr(photos[i], ".png") ? "Content-Type: image/png\r\n" : JPEG_CT;
        json_decref(call_json(port, "POST", "/v1/analyze", "/v1/analyze?embedding=true", type, data,
                              len, 200));
        json_decref(call_json(port, "POST", "/v1/detect", "/v1/detect", type, data, len, 200));
        free(data);
    }
    size_t la, lb;
    char *a = tc_load(FIXTURES "/id-obama-1.jpg", &la),
         *b = tc_load(FIXTURES "/id-obama-2.jpg", &lb);
    tc_form f = {0};
    tc_form_file(&f, "image_a", a, la);
    tc_form_file(&f, "image_b", b, lb);
    tc_form_end(&f);
    json_t *v = call_json(port, "POST", "/v1/verify", "/v1/verify", FORM_CT, f.data, f.len, 200);
    assert_true(json_is_true(json_object_get(v, "match")));
    json_decref(v);
    free(f.data);
    free(a);
    free(b);
    const char *C = "/v1/collections", *F = "/v1/collections/{collection}/faces";
    json_decref(call_json(port, "POST", C, C, JSON_CT, LIT("{\"name\":\"cast\"}"), 201));
    const char *const people[] = {"amy", "howard", "penny"};
    for (int i = 0; i < 3; i++) {
        for (int k = 1; k <= 2; k++) {
            char file[300], path[200];
            snprintf(file, sizeof file, FIXTURES "/identities/%s/%s%d.png", people[i], people[i],
                     k);
            snprintf(path, sizeof path, "/v1/collections/cast/faces?subject=%s", people[i]);
            size_t len;
            char *data = tc_load(file, &len);
            json_decref(
                call_json(port, "POST", F, path, "Content-Type: image/png\r\n", data, len, 201));
            free(data);
        }
    }
    size_t len;
    char *probe = tc_load(FIXTURES "/identities/penny/penny5.png", &len);
    json_t *res = call_json(port, "POST", "/v1/collections/{collection}/search",
                            "/v1/collections/cast/search?k=3", "Content-Type: image/png\r\n", probe,
                            len, 200);
    json_t *face = json_array_get(json_object_get(res, "faces"), 0);
    assert_string_equal(json_string_value(json_object_get(face, "identity")), "penny");
    json_decref(res);
    /* The check-in record: penny checked in, then a group photo (strangers among them), the
     * record listed in pages, cleared; and 404s. */
    const char *K = "/v1/collections/{collection}/checkins";
    res = call_json(port, "POST", K, "/v1/collections/cast/checkins?k=3",
                    "Content-Type: image/png\r\n", probe, len, 200);
    face = json_array_get(json_object_get(res, "faces"), 0);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(face, "checkin"), "status")),
        "checked_in");
    json_decref(res);
    size_t glen;
    char *group = tc_load(FIXTURES "/group-bbt1.jpg", &glen);
    json_decref(call_json(port, "POST", K, "/v1/collections/cast/checkins", JPEG_CT, group, glen,
                          200));
    free(group);
    json_decref(call_json(port, "GET", K, "/v1/collections/cast/checkins?limit=1", NULL, NULL, 0,
                          200));
    expect(port, "GET", K, "/v1/collections/cast/checkins?after=x", NULL, NULL, 0, 422,
           "invalid_parameter");
    json_decref(call_json(port, "DELETE", K, "/v1/collections/cast/checkins", NULL, NULL, 0, 200));
    expect(port, "GET", K, "/v1/collections/none/checkins", NULL, NULL, 0, 404,
           "collection_not_found");
    expect(port, "DELETE", K, "/v1/collections/none/checkins", NULL, NULL, 0, 404,
           "collection_not_found");
    free(probe);
}

static void report(void)
{
    problems now = found;
    memset(&found, 0, sizeof found);
    if (now.n) {
        fprintf(stderr, "%d mismatches with /openapi.json:\n%s", now.n, now.text);
        fail();
    }
}

static void test_open_service(void **state)
{
    (void)state;
    NEED_SERVER(&open_srv);
    drive_ops_routes(open_srv.port);
    drive_face_routes(open_srv.port);
    drive_gallery_routes(open_srv.port);
    if (tc_exists(FIXTURES))
        drive_fixtures(open_srv.port);
    else
        print_message(FIXTURES " is absent: the fixtures' part skipped\n");
    report();
}

/* Draining: /readyz answers 503 with its documented body while the grace period lasts. */
static void test_draining(void **state)
{
    (void)state;
    NEED_SERVER(&open_srv);
    kill(open_srv.pid, SIGTERM);
    tc_response r;
    for (int i = 0; i < 100; i++) {
        tc_get(open_srv.port, "/readyz", NULL, &r);
        if (r.status == 503) break;
        tc_response_free(&r);
        tc_sleep_ms(10);
    }
    check("GET", "/readyz", &r);
    assert_int_equal(r.status, 503);
    tc_response_free(&r);
    report();
}

/* ---- API keys: 401, 403, 429 -------------------------------------------------------------- */

static void make_key(const char *dir, const char *scope, const char *collection, char *header,
                     size_t cap)
{
    /* made before its collection, which the test creates through the API */
    const char *args[] = {"keys", "create", "--scope", scope, "--data", dir,
                          collection ? "--collection" : NULL, collection,
                          "--allow-missing-collection", NULL};
    assert_int_equal(tc_key_header(args, header, cap, NULL, 0), 0);
}

static void test_keys(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    char dir[256], admin[200], reader[200], limited[200];
    assert_int_equal(tc_temp_dir(dir), 0);
    make_key(dir, "admin", NULL, admin, sizeof admin);
    make_key(dir, "read", NULL, reader, sizeof reader);
    make_key(dir, "write", "a", limited, sizeof limited);
    /* A collection pinned to another embedder than the server's: 409 model_mismatch. */
    const char *create[] = {"gallery",    "create", "other", "--embedder",
                            "mobileface", "--data", dir,     NULL};
    char out[512];
    assert_int_equal(tc_run_vultus(out, sizeof out, create), 0);
    tc_server s;
    /* One worker and no queue: a request that arrives while another runs is refused (503). */
    static const char *const args[] = {
        "--rate-limit", "2", "--rate-burst", "30", "--workers", "1", "--queue", "0", NULL};
    assert_int_equal(tc_server_start(&s, dir, args, 1), 0);
    int port = s.port;
    const char *C = "/v1/collections", *CN = "/v1/collections/{collection}";
    expect(port, "GET", C, C, NULL, NULL, 0, 401, "unauthorized");
    expect(port, "GET", C, C, "Authorization: Bearer vk_nope\r\n", NULL, 0, 401, "unauthorized");
    expect(port, "GET", "/metrics", "/metrics", NULL, NULL, 0, 200, NULL);
    char h_admin[300], h_reader[300];
    snprintf(h_admin, sizeof h_admin, "%s" JSON_CT, admin);
    snprintf(h_reader, sizeof h_reader, "%s" JSON_CT, reader);
    json_decref(call_json(port, "POST", C, C, h_admin, LIT("{\"name\":\"a\"}"), 201));
    json_decref(call_json(port, "POST", C, C, h_admin, LIT("{\"name\":\"b\"}"), 201));
    expect(port, "POST", C, C, h_reader, LIT("{\"name\":\"c\"}"), 403, "forbidden");
    expect(port, "GET", CN, "/v1/collections/b", limited, NULL, 0, 403, "forbidden");
    json_decref(call_json(port, "GET", CN, "/v1/collections/a", limited, NULL, 0, 200));
    json_decref(call_json(port, "GET", C, C, limited, NULL, 0, 200));
    size_t len;
    char *s1 = tc_load(SAMPLE(1), &len);
    char h_admin_jpeg[300], path[] = "/v1/collections/other/faces?subject=x";
    snprintf(h_admin_jpeg, sizeof h_admin_jpeg, "%s" JPEG_CT, admin);
    expect(port, "POST", "/v1/collections/{collection}/faces", path, h_admin_jpeg, s1, len, 409,
           "model_mismatch");
    expect(port, "POST", "/v1/collections/{collection}/search", "/v1/collections/other/search",
           h_admin_jpeg, s1, len, 409, "model_mismatch");
    json_decref(call_json(port, "POST", "/v1/collections/{collection}/subjects",
                          "/v1/collections/other/subjects", h_admin, LIT("{\"id\":\"x\"}"), 201));
    expect(port, "POST", "/v1/verify", "/v1/verify?collection=other&subject=x", h_admin_jpeg, s1,
           len, 422, "no_enrolled_face");
    /* Overload: analyze sent on one connection, detect on another while it runs. */
    int refused = 0;
    for (int attempt = 0; attempt < 5 && !refused; attempt++) {
        char head[600];
        int n = snprintf(head, sizeof head,
                         "POST /v1/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                         "%sContent-Length: %zu\r\n\r\n",
                         h_admin_jpeg, len);
        int fd = tc_connect(port);
        assert_int_equal(tc_send_all(fd, head, (size_t)n), 0);
        assert_int_equal(tc_send_all(fd, s1, len), 0);
        tc_sleep_ms(20);
        tc_response second, first = {0};
        call(&second, port, "POST", "/v1/detect", "/v1/detect", h_admin_jpeg, s1, len);
        tc_read_response(fd, &first, 60000);
        close(fd);
        check("POST", "/v1/analyze", &first);
        /* On a loaded machine the first may be admitted late and be the one refused. */
        tc_response *answers[2] = {&first, &second};
        for (int i = 0; i < 2; i++) {
            char code[64];
            assert_true(answers[i]->status == 200 || answers[i]->status == 503);
            if (answers[i]->status == 503) {
                assert_string_equal(tc_error_code(answers[i], code, sizeof code), "overloaded");
                refused = 1;
            }
            tc_response_free(answers[i]);
        }
    }
    assert_true(refused);
    free(s1);
    /* The reader's bucket runs dry. */
    int limited_seen = 0;
    for (int i = 0; i < 100 && !limited_seen; i++) {
        tc_response r;
        call(&r, port, "GET", C, C, reader, NULL, 0);
        limited_seen = r.status == 429;
        tc_response_free(&r);
    }
    assert_true(limited_seen);
    assert_int_equal(tc_server_stop(&s), 0);
    tc_rm_rf(dir);
    report();
}

/* Every documented operation was exercised; the one-line summary. */
static void test_every_operation_checked(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    const char *path;
    json_t *ops;
    int n_ops = 0, n_covered = 0;
    json_object_foreach(json_object_get(doc, "paths"), path, ops)
    {
        const char *method;
        json_t *op;
        json_object_foreach(ops, method, op)
        {
            if (!strcmp(method, "parameters")) continue;
            char key[300], upper[16];
            size_t i = 0;
            for (; method[i] && i < sizeof upper - 1; i++)
                upper[i] = (char)toupper((unsigned char)method[i]);
            upper[i] = '\0';
            snprintf(key, sizeof key, "%s %s", upper, path);
            n_ops++;
            if (json_object_get(covered, key))
                n_covered++;
            else
                problem(&found, "%s: documented, never exercised by this test", key);
        }
    }
    printf("contract: %d responses checked against %d of %d documented operations\n", n_responses,
           n_covered, n_ops);
    report();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validator_rejects_wrong_bodies),
        cmocka_unit_test(test_document_is_consistent),
        cmocka_unit_test(test_open_service),
        cmocka_unit_test(test_draining),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_every_operation_checked),
    };
    return cmocka_run_group_tests(tests, start_open, stop_open);
}
