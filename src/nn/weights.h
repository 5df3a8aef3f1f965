/* TF.js weights manifests (private to src/nn). */
#ifndef VULTUS_NN_WEIGHTS_H
#define VULTUS_NN_WEIGHTS_H

#include "nn/graph.h"
#include "nn/nn.h"

#include <jansson.h>

typedef struct nn_weight {
    char *name;
    nn_dtype dtype; /* f32, or i32 for shape constants */
    int rank;
    int64_t dims[NN_MAX_DIMS];
    void *data; /* 64-byte aligned, count elements */
    size_t count;
} nn_weight;

struct nn_weights {
    nn_weight *items;
    int n;
};

/* Decodes a parsed "weightsManifest" array, reading shards through read_shard. */
int nn_weights_from_manifest(json_t *manifest, nn_shard_reader read_shard, void *user,
                             size_t max_bytes, nn_weights **out);
const nn_weight *nn_weights_find(const nn_weights *w, const char *name);

/* A shard reader that looks beside a file: user is from nn_dir_reader_new(path), free()d. */
void *nn_dir_reader_new(const char *file_path);
int nn_read_shard_from_dir(void *user, const char *path, size_t max_bytes, char **data,
                           size_t *len);

#endif
