/*
 * libFuzzer target for the TF.js model importer: model.json text, weights manifest, shards,
 * graph translation, optimisation and planning. Input layout: a 4-byte little-endian length L,
 * then L bytes of model.json, then the bytes every shard path reads. A refusal is a negative
 * code with a message and no model; a model that loads has an input and plans and runs.
 * Build and run: make fuzz (see the Makefile).
 */
#include "base/base.h"
#include "nn/nn.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct blob {
    const uint8_t *data;
    size_t len;
} blob;

static int read_shard(void *user, const char *path, size_t max_bytes, char **data, size_t *len)
{
    const blob *b = user;
    (void)path;
    if (b->len > max_bytes) return base_error_set(BASE_ERR_LIMIT, "shard too large");
    *data = malloc(b->len + 1);
    if (!*data) return BASE_ERR_NOMEM;
    if (b->len) memcpy(*data, b->data, b->len);
    *len = b->len;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4) return 0;
    uint32_t jlen = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                    (uint32_t)data[3] << 24;
    if (jlen > size - 4) jlen = (uint32_t)(size - 4);
    blob shard = {data + 4 + jlen, size - 4 - jlen};
    nn_load_options opts = {.max_file_bytes = 1 << 20};
    nn_model *m = NULL;
    base_log_level = BASE_LOG_OFF;
    base_error_clear();
    int rc = nn_model_load_tfjs_mem((const char *)data + 4, jlen, read_shard, &shard, &opts, &m);
    if (rc != 0 && (rc > 0 || m || !base_error_message()[0])) abort();
    if (rc == 0) {
        if (!m) abort();
        /* A model that loads must also plan and run without faults. */
        nn_context *ctx = NULL;
        nn_io_info in;
        nn_model_input_info(m, 0, &in);
        int64_t per = 1;
        for (int i = 1; i < in.rank; i++)
            per *= in.dim[i];
        if (per <= (1 << 16) && nn_context_create(m, NULL, &ctx) == 0) {
            memset(nn_context_input(ctx, 0), 0, (size_t)per * sizeof(float));
            nn_context_run(ctx, 1);
            nn_context_destroy(ctx);
        }
        nn_model_destroy(m);
    }
    return 0;
}
