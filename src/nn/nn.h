/*
 * nn — the inference engine: loads TF.js graph models (or graphs built in C), optimises them
 * once, and runs them with XNNPACK for the heavy ops and a plain-C reference backend for the
 * rest.
 *
 * Ownership and threads:
 *   - nn_model is immutable after loading and may be shared by any number of threads.
 *   - nn_context belongs to one thread at a time; it owns the scratch memory planned for its
 *     maximum batch and the backend operators, so nn_context_run() does not allocate
 *     (XNNPACK may allocate once when the batch size changes).
 *   - nn_builder is single-threaded; nn_model_from_builder() consumes it.
 *
 * Errors are negative BASE_ERR_* codes; base_error_message() names the problem.
 */
#ifndef VULTUS_NN_H
#define VULTUS_NN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct nn_model nn_model;
typedef struct nn_context nn_context;
typedef struct nn_builder nn_builder;
typedef struct nn_weights nn_weights;

#define NN_IO_MAX_DIMS 6

/* A model input or output as callers see it: dim[0] is -1 (the batch chosen per run). */
typedef struct nn_io_info {
    const char *name;
    int rank;
    int64_t dim[NN_IO_MAX_DIMS];
} nn_io_info;

typedef enum nn_backend {
    NN_BACKEND_AUTO = 0,  /* XNNPACK where it implements the op, the reference backend elsewhere */
    NN_BACKEND_REFERENCE, /* plain C loops only: the test oracle */
} nn_backend;

typedef struct nn_load_options {
    size_t max_file_bytes; /* limit for model.json and each shard; 0: 256 MiB */
    int no_optimize;       /* keep the graph as imported (for tests of the optimiser) */
} nn_load_options;

/* Loads a TF.js graph model (model.json with its weight shards beside it). opts may be NULL. */
int nn_model_load_tfjs(const char *model_json_path, const nn_load_options *opts, nn_model **out);
/* Same, from memory: json is the model.json text, shards are looked up by `read_shard`. */
typedef int (*nn_shard_reader)(void *user, const char *path, size_t max_bytes, char **data,
                               size_t *len);
int nn_model_load_tfjs_mem(const char *json, size_t json_len, nn_shard_reader read_shard,
                           void *user, const nn_load_options *opts, nn_model **out);
void nn_model_destroy(nn_model *model);

int nn_model_input_count(const nn_model *model);
int nn_model_output_count(const nn_model *model);
int nn_model_input_info(const nn_model *model, int index, nn_io_info *info);
int nn_model_output_info(const nn_model *model, int index, nn_io_info *info);
/* Index of the output named `name`, or -1. */
int nn_model_output_index(const nn_model *model, const char *name);

/* Summary for `vultus nn info`. */
typedef struct nn_model_stats {
    int64_t params; /* constant f32 elements */
    int64_t macs;   /* multiply-adds per batch element */
    int n_nodes;    /* after optimisation */
    int n_nodes_imported;
    int op_counts[48]; /* by internal op kind, names from nn_model_op_name() */
    int n_op_kinds;
    int n_xnnpack_nodes; /* nodes the AUTO backend runs with XNNPACK */
} nn_model_stats;
void nn_model_get_stats(const nn_model *model, nn_model_stats *stats);
const char *nn_model_op_name(int kind);

/* How a context runs a batch of more than one image. */
typedef enum nn_schedule {
    /* Per layer, chosen when the context is planned: early layers (large activations, small
     * weights) image by image through a batch-1 plan, so each image's activations stay in cache
     * from layer to layer; late layers (small maps, large weights) as one batch, so one pass
     * over their weights serves every image. */
    NN_SCHEDULE_AUTO = 0,
    NN_SCHEDULE_PER_IMAGE,  /* every layer image by image */
    NN_SCHEDULE_WHOLE_BATCH /* every layer as one batch */
} nn_schedule;

typedef struct nn_context_options {
    int max_batch; /* largest batch this context will run; 0: 1 */
    int threads;   /* intra-op threads, at most the cores online; 0 or 1: the calling thread */
    nn_backend backend;
    int whole_batch; /* same as schedule = NN_SCHEDULE_WHOLE_BATCH (kept for callers) */
    nn_schedule schedule;
} nn_context_options;

int nn_context_create(const nn_model *model, const nn_context_options *opts, nn_context **out);
void nn_context_destroy(nn_context *ctx);

/* The buffer for input `index` holding `max_batch` elements, NHWC f32. Fill the first
 * `batch` of them before nn_context_run(). Stable for the context's life. */
float *nn_context_input(nn_context *ctx, int index);
/* Runs the model on the first `batch` elements (1 <= batch <= max_batch). */
int nn_context_run(nn_context *ctx, int batch);
/* Output `index` of the last run: its data and, if info is not NULL, its shape (dim[0] is the
 * batch of that run). Valid until the next run. */
const float *nn_context_output(const nn_context *ctx, int index, nn_io_info *info);

/* Per-node timing for finding slow ops: while enabled, every run adds each node's time.
 * Enabling resets the counts. The printout lists node, op, backend, shape, ms per run, share. */
int nn_context_set_profiling(nn_context *ctx, int enable);
void nn_context_print_profile(const nn_context *ctx, FILE *f);

/* --- weights manifests and the builder (for models shipped without a graph) ------------- */

/* Loads a TF.js weights manifest (`*-weights_manifest.json`, or a model.json's
 * "weightsManifest") and its shards, dequantising to f32 as TF.js does. */
int nn_weights_load_tfjs(const char *manifest_path, const nn_load_options *opts, nn_weights **out);
void nn_weights_destroy(nn_weights *w);
/* The weight named `name`: its f32 data (owned by w) and shape; NULL if absent. */
const float *nn_weights_get(const nn_weights *w, const char *name, int *rank, int64_t *dims);

/*
 * The builder defines a network in C. Every function returns a tensor handle (>= 0) or a
 * negative error code; a failed call leaves the builder usable only for nn_builder_destroy().
 * Handles passed in may be negative (a previous failure), in which case the call fails with
 * the same code, so a network can be written as a chain and checked once at the end.
 */
typedef enum nn_activation {
    NN_ACTIVATION_NONE,
    NN_ACTIVATION_RELU,
    NN_ACTIVATION_RELU6,
    NN_ACTIVATION_SIGMOID,
    NN_ACTIVATION_LEAKY_RELU, /* slope 0.1 unless set with nn_builder_leaky_alpha() */
} nn_activation;

typedef enum nn_padding { NN_PADDING_SAME, NN_PADDING_VALID } nn_padding;

nn_builder *nn_builder_create(void);
void nn_builder_destroy(nn_builder *b);
int nn_builder_input(nn_builder *b, const char *name, int height, int width, int channels);
/* A constant from data (copied). */
int nn_builder_constant(nn_builder *b, const char *name, int rank, const int64_t *dims,
                        const float *data);
/* A constant from a weights manifest entry (copied). */
int nn_builder_weight(nn_builder *b, const nn_weights *w, const char *name);
/* Convolution with TF layouts: filter [KH,KW,Cin,Cout], or [KH,KW,C,1] for depthwise. */
int nn_builder_conv2d(nn_builder *b, int x, int filter, int bias, int stride, nn_padding pad,
                      nn_activation act);
int nn_builder_depthwise_conv2d(nn_builder *b, int x, int filter, int bias, int stride,
                                nn_padding pad, nn_activation act);
int nn_builder_fully_connected(nn_builder *b, int x, int weights, int bias, nn_activation act);
int nn_builder_add(nn_builder *b, int x, int y);
int nn_builder_sub(nn_builder *b, int x, int y);
int nn_builder_mul(nn_builder *b, int x, int y);
int nn_builder_div(nn_builder *b, int x, int y);
int nn_builder_maximum(nn_builder *b, int x, int y);
int nn_builder_activation(nn_builder *b, int x, nn_activation act);
int nn_builder_max_pool(nn_builder *b, int x, int size, int stride, nn_padding pad);
int nn_builder_avg_pool(nn_builder *b, int x, int size, int stride, nn_padding pad);
int nn_builder_mean(nn_builder *b, int x, int axis_mask, int keep_dims);
int nn_builder_reshape(nn_builder *b, int x, int rank, const int64_t *dims_without_batch);
int nn_builder_concat(nn_builder *b, const int *xs, int n, int axis);
int nn_builder_softmax(nn_builder *b, int x);
int nn_builder_output(nn_builder *b, int x, const char *name);
/* Finishes the network: optimises and plans it. Consumes b (destroyed on success and on
 * failure). */
int nn_model_from_builder(nn_builder *b, const nn_load_options *opts, nn_model **out);

#endif
