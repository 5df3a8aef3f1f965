/*
 * The OpenAPI document (src/http/openapi.json), embedded in the binary by the assembler's
 * .incbin at build time, so the served document is always the one in the source tree. The
 * Makefile makes openapi.o depend on openapi.json. The path is relative to the repository
 * root, where every build rule runs the compiler.
 */
#include "http/internal.h"

__asm__(".pushsection .rodata\n"
        ".balign 16\n"
        ".globl vultus_openapi_json_start\n"
        ".hidden vultus_openapi_json_start\n"
        "vultus_openapi_json_start:\n"
        ".incbin \"src/http/openapi.json\"\n"
        ".globl vultus_openapi_json_end\n"
        ".hidden vultus_openapi_json_end\n"
        "vultus_openapi_json_end:\n"
        ".byte 0\n"
        ".popsection\n");

extern const char vultus_openapi_json_start[];
extern const char vultus_openapi_json_end[];

const char *http_openapi_json(size_t *len)
{
    *len = (size_t)(vultus_openapi_json_end - vultus_openapi_json_start);
    return vultus_openapi_json_start;
}
