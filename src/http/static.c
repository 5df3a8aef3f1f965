/*
 * The web page (web/): its files are embedded into the binary by the assembler's .incbin at
 * build time, like the OpenAPI document, so `vultus serve` needs no files beside it and the
 * page is always the one this binary was built with. The Makefile makes static.o depend on
 * every file in web/. Paths are relative to the repository root, where the compiler runs.
 *
 * Each file has its own route in routes.c (open, answered on the event loop); the handler
 * finds the file by the route's pattern. Each response carries an ETag (a hash of the file's
 * bytes, so a new binary with a changed page gets new tags) and "Cache-Control: no-cache":
 * browsers keep the files but revalidate them, and an unchanged file costs a 304 without a body.
 */
#include "http/internal.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Embeds `file` between the symbols vultus_web_<sym>_start and _end, NUL-terminated. */
#define WEB_EMBED(sym, file)                                                                       \
    __asm__(".pushsection .rodata\n"                                                               \
            ".balign 16\n"                                                                         \
            ".globl vultus_web_" #sym "_start\n"                                                   \
            ".hidden vultus_web_" #sym "_start\n"                                                  \
            "vultus_web_" #sym "_start:\n"                                                         \
            ".incbin \"" file "\"\n"                                                               \
            ".globl vultus_web_" #sym "_end\n"                                                     \
            ".hidden vultus_web_" #sym "_end\n"                                                    \
            "vultus_web_" #sym "_end:\n"                                                           \
            ".byte 0\n"                                                                            \
            ".popsection\n");                                                                      \
    extern const char vultus_web_##sym##_start[];                                                  \
    extern const char vultus_web_##sym##_end[];

WEB_EMBED(index_html, "web/index.html")
WEB_EMBED(app_css, "web/app.css")
WEB_EMBED(app_js, "web/app.js")
WEB_EMBED(favicon_svg, "web/favicon.svg")

typedef struct web_file {
    const char *path; /* the route pattern that serves it */
    const char *type;
    const char *start, *end;
} web_file;

static const web_file web_files[] = {
    {"/", "text/html; charset=utf-8", vultus_web_index_html_start, vultus_web_index_html_end},
    {"/app.css", "text/css; charset=utf-8", vultus_web_app_css_start, vultus_web_app_css_end},
    {"/app.js", "text/javascript; charset=utf-8", vultus_web_app_js_start, vultus_web_app_js_end},
    {"/favicon.svg", "image/svg+xml", vultus_web_favicon_svg_start, vultus_web_favicon_svg_end},
};

#define N_WEB_FILES (sizeof web_files / sizeof web_files[0])

/* Each file's entity tag: FNV-1a over its bytes, so a binary with a changed page gets new tags.
 * The files never change while the process runs, so the tags are computed once. */
static char web_etags[N_WEB_FILES][24];
static pthread_once_t web_etags_once = PTHREAD_ONCE_INIT;

static void web_etags_compute(void)
{
    for (size_t i = 0; i < N_WEB_FILES; i++) {
        uint64_t h = 0xcbf29ce484222325ull;
        for (const char *c = web_files[i].start; c < web_files[i].end; c++)
            h = (h ^ (uint8_t)*c) * 0x100000001b3ull;
        snprintf(web_etags[i], sizeof web_etags[i], "\"%016llx\"", (unsigned long long)h);
    }
}

static int web_file_find(const char *path)
{
    for (size_t i = 0; i < N_WEB_FILES; i++)
        if (strcmp(web_files[i].path, path) == 0) return (int)i;
    return -1;
}

const char *http_web_file(const char *path, size_t *len, const char **type)
{
    int i = web_file_find(path);
    if (i < 0) return NULL;
    *len = (size_t)(web_files[i].end - web_files[i].start);
    *type = web_files[i].type;
    return web_files[i].start;
}

void http_api_static(http_request *r, http_worker *w)
{
    (void)w;
    int i = web_file_find(http_routes[r->route].pattern);
    if (i < 0) {
        /* A route in the table without a file here: a bug in routes.c, reported, not fatal. */
        http_respond_error(r, 500, "internal", "no embedded file for %s",
                           http_routes[r->route].pattern);
        return;
    }
    const char *data = web_files[i].start;
    size_t len = (size_t)(web_files[i].end - data);
    pthread_once(&web_etags_once, web_etags_compute);
    memcpy(r->etag, web_etags[i], sizeof r->etag);
    r->cache_control = "no-cache";
    const char *match = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "If-None-Match");
    if (match && (strstr(match, r->etag) || strcmp(match, "*") == 0)) {
        r->status = 304; /* no body: the browser's copy is current */
        return;
    }
    /* The response owns its body (the server frees it), so the file is copied. */
    char *copy = malloc(len + 1);
    if (!copy) {
        http_respond_error(r, 503, "overloaded", "out of memory");
        r->retry_after_s = 1;
        return;
    }
    memcpy(copy, data, len + 1);
    http_respond_text(r, 200, web_files[i].type, copy, len);
}
