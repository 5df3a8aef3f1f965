/* The model object (private to src/nn): an optimised graph and its lifetimes. */
#ifndef VULTUS_NN_MODEL_H
#define VULTUS_NN_MODEL_H

#include "nn/graph.h"
#include "nn/nn.h"

struct nn_model {
    nn_graph *g; /* optimised; immutable after load */
    int n_nodes_imported;
    int *last_use;    /* per tensor buffer: index of the last node reading it (n_nodes: output) */
    int *buffer_of;   /* per tensor: the tensor whose buffer it uses (itself unless a view) */
    char *on_xnnpack; /* per node: the AUTO backend runs it with XNNPACK */
    char *on_fast;    /* per node: else with an own kernel of fast.c (else the reference) */
    nn_io_info inputs[8], outputs[8];
};

/* Takes ownership of g: optimises it (unless opts->no_optimize) and finishes the model. */
int nn_model_from_graph(nn_graph *g, const nn_load_options *opts, nn_model **out);
const nn_graph *nn_model_graph(const nn_model *m);
/* Bytes of the context's activation arena (for tests and nn info). */
size_t nn_context_arena_bytes(const nn_context *c);
/* A context whose nodes run in the spaces given (per node: nonzero = image by image), for
 * tests of the schedules; nn_context_create() chooses them itself. */
int nn_context_create_scheduled(const nn_model *m, const nn_context_options *opts,
                                const char *per_image, nn_context **out);
/* Whether node `node` runs image by image in this context (-1: no such node). */
int nn_context_node_per_image(const nn_context *c, int node);

#endif
