/*
 * libFuzzer target for the gallery's import parser (src/gallery/export.c): an export file is
 * whatever a user hands to `vultus gallery import`. The input is written to a file and
 * imported into a SQLite gallery in a temporary folder; an import that succeeds must have
 * created the collection, which is then deleted again so every input starts from the same
 * gallery. Inputs that end like a file ('E' and four bytes) get their CRC-32 fixed first, so
 * the fuzzer reaches the structure behind the checksum instead of failing on it.
 * Build and run: make fuzz; seeds in tests/fuzz/corpus/gallery_import/: two exports written to
 * the format (random unit embeddings, no thumbnails; imported by vultus gallery import).
 */
#include "base/base.h"
#include "gallery/gallery.h"
#include "gallery/internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct gal *gallery;
static char dir[64], file[96];

static void cleanup(void)
{
    gal_close(gallery);
    char path[128];
    snprintf(path, sizeof path, "%s/vultus.db", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/vultus.db-wal", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/vultus.db-shm", dir);
    unlink(path);
    unlink(file);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    base_log_level = BASE_LOG_OFF;
    snprintf(dir, sizeof dir, "/tmp/vultus-fuzz-import-XXXXXX");
    if (!mkdtemp(dir)) abort();
    snprintf(file, sizeof file, "%s/input.vgal", dir);
    char db[128];
    snprintf(db, sizeof db, "%s/vultus.db", dir);
    struct gal_options options = {.durability = GAL_DURABLE_PROCESS};
    if (gal_open(db, &options, &gallery) != 0) abort();
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    if (size >= 5 && copy[size - 5] == 'E') {
        uint32_t crc = gal_crc32(0, copy, size - 4);
        for (int i = 0; i < 4; i++)
            copy[size - 4 + i] = (uint8_t)(crc >> (8 * i));
    }
    FILE *f = fopen(file, "wb");
    if (!f) abort();
    if (size && fwrite(copy, 1, size, f) != size) abort();
    fclose(f);
    free(copy);

    int rc = gal_import(gallery, file, "imported");
    if (rc == 0) {
        /* It must be there, then it goes so the next input starts from the same gallery. */
        if (gal_collection_delete(gallery, "imported") != 0) abort();
    } else if (rc > 0 || base_error_message()[0] == '\0') {
        abort(); /* failures are negative codes with a message */
    }
    return 0;
}
