/*
 * The builder API: networks defined in C (the face-api models ship weights without a graph)
 * on top of the same IR as imported models, so they get the same optimiser and backends.
 */
#include "base/base.h"
#include "nn/graph.h"
#include "nn/model.h"
#include "nn/nn.h"
#include "nn/weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct nn_builder {
    nn_graph *g;
    int error; /* first failure; later calls return it */
    int counter;
    float leaky_alpha;
};

nn_builder *nn_builder_create(void)
{
    nn_builder *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->g = nn_graph_new();
    if (!b->g) {
        free(b);
        return NULL;
    }
    b->leaky_alpha = 0.1f;
    return b;
}

void nn_builder_destroy(nn_builder *b)
{
    if (!b) return;
    nn_graph_free(b->g);
    free(b);
}

static int fail(nn_builder *b, int rc)
{
    if (rc < 0 && !b->error) b->error = rc;
    return rc;
}

/* Checks handles; returns the first error among them (or the builder's). */
static int check(nn_builder *b, const int *ts, int n)
{
    if (b->error) return b->error;
    for (int i = 0; i < n; i++) {
        if (ts[i] < -1) return fail(b, ts[i]);
        if (ts[i] >= b->g->n_tensors)
            return fail(b, base_error_set(BASE_ERR_INVALID, "builder: no tensor %d", ts[i]));
    }
    return 0;
}

static const char *auto_name(nn_builder *b, const char *kind, char *buf, size_t len)
{
    snprintf(buf, len, "%s_%d", kind, b->counter++);
    return buf;
}

static int add_node(nn_builder *b, nn_node *p, const char *kind)
{
    char name[64];
    p->name = (char *)auto_name(b, kind, name, sizeof name);
    return fail(b, nn_graph_add_node(b->g, p));
}

int nn_builder_input(nn_builder *b, const char *name, int height, int width, int channels)
{
    if (b->error) return b->error;
    nn_shape s = {4, {NN_BATCH, height, width, channels}};
    return fail(b, nn_graph_add_input(b->g, name, &s));
}

int nn_builder_constant(nn_builder *b, const char *name, int rank, const int64_t *dims,
                        const float *data)
{
    if (b->error) return b->error;
    if (rank < 0 || rank > NN_MAX_DIMS)
        return fail(
            b, base_error_set(BASE_ERR_INVALID, "builder: constant %s of rank %d", name, rank));
    nn_shape s = {rank, {0}};
    for (int i = 0; i < rank; i++)
        s.dim[i] = dims[i];
    return fail(b, nn_graph_add_const(b->g, name, NN_DTYPE_F32, &s, data));
}

int nn_builder_weight(nn_builder *b, const nn_weights *w, const char *name)
{
    if (b->error) return b->error;
    const nn_weight *it = nn_weights_find(w, name);
    if (!it || it->dtype != NN_DTYPE_F32)
        return fail(b, base_error_set(BASE_ERR_NOT_FOUND,
                                      "builder: weight %s is not in the manifest", name));
    return nn_builder_constant(b, name, it->rank, it->dims, it->data);
}

static nn_act make_act(const nn_builder *b, nn_activation a)
{
    switch (a) {
    case NN_ACTIVATION_RELU: return (nn_act){NN_ACT_CLAMP, 0.0f, INFINITY, 0};
    case NN_ACTIVATION_RELU6: return (nn_act){NN_ACT_CLAMP, 0.0f, 6.0f, 0};
    case NN_ACTIVATION_LEAKY_RELU: return (nn_act){NN_ACT_LEAKY, 0, 0, b->leaky_alpha};
    default: return (nn_act){NN_ACT_NONE, 0, 0, 0};
    }
}

static void same_pad(int64_t in, int64_t k, int stride, int *before, int *after)
{
    int64_t out = (in + stride - 1) / stride;
    int64_t total = (out - 1) * stride + k - in;
    if (total < 0) total = 0;
    *before = (int)(total / 2);
    *after = (int)(total - total / 2);
}

static int conv(nn_builder *b, int x, int filter, int bias, int stride, nn_padding pad,
                nn_activation act, int depthwise)
{
    int ts[3] = {x, filter, bias};
    int rc = check(b, ts, 3);
    if (rc) return rc;
    if (x < 0 || filter < 0)
        return fail(b, base_error_set(BASE_ERR_INVALID, "builder: conv needs x and a filter"));
    const nn_shape *xs = &b->g->tensors[x].shape, *ws = &b->g->tensors[filter].shape;
    if (xs->rank != 4 || ws->rank != 4 || stride < 1)
        return fail(b, base_error_set(BASE_ERR_INVALID, "builder: conv of rank %d by rank %d",
                                      xs->rank, ws->rank));
    nn_node p = {.op = NN_OP_CONV2D, .n_inputs = 3, .inputs = {x, filter, bias}};
    nn_conv_params *c = &p.p.conv;
    c->kernel_h = (int)ws->dim[0], c->kernel_w = (int)ws->dim[1];
    c->stride_h = c->stride_w = stride;
    c->dilation_h = c->dilation_w = 1;
    c->depthwise = depthwise;
    if (pad == NN_PADDING_SAME) {
        same_pad(xs->dim[1], ws->dim[0], stride, &c->pad_top, &c->pad_bottom);
        same_pad(xs->dim[2], ws->dim[1], stride, &c->pad_left, &c->pad_right);
    }
    int sigmoid = act == NN_ACTIVATION_SIGMOID;
    c->act = make_act(b, act);
    int y = add_node(b, &p, depthwise ? "depthwise_conv2d" : "conv2d");
    return sigmoid ? nn_builder_activation(b, y, act) : y;
}

int nn_builder_conv2d(nn_builder *b, int x, int filter, int bias, int stride, nn_padding pad,
                      nn_activation act)
{
    return conv(b, x, filter, bias, stride, pad, act, 0);
}

int nn_builder_depthwise_conv2d(nn_builder *b, int x, int filter, int bias, int stride,
                                nn_padding pad, nn_activation act)
{
    return conv(b, x, filter, bias, stride, pad, act, 1);
}

int nn_builder_fully_connected(nn_builder *b, int x, int weights, int bias, nn_activation act)
{
    int ts[3] = {x, weights, bias};
    int rc = check(b, ts, 3);
    if (rc) return rc;
    nn_node p = {.op = NN_OP_FULLY_CONNECTED, .n_inputs = 3, .inputs = {x, weights, bias}};
    p.p.fc.act = make_act(b, act);
    int y = add_node(b, &p, "fully_connected");
    return act == NN_ACTIVATION_SIGMOID ? nn_builder_activation(b, y, act) : y;
}

static int binary(nn_builder *b, int x, int y, nn_binary_kind kind, const char *name)
{
    int ts[2] = {x, y};
    int rc = check(b, ts, 2);
    if (rc) return rc;
    nn_node p = {.op = NN_OP_BINARY, .n_inputs = 2, .inputs = {x, y}};
    p.p.binary.kind = kind;
    return add_node(b, &p, name);
}

int nn_builder_add(nn_builder *b, int x, int y)
{
    return binary(b, x, y, NN_BINARY_ADD, "add");
}
int nn_builder_sub(nn_builder *b, int x, int y)
{
    return binary(b, x, y, NN_BINARY_SUB, "sub");
}
int nn_builder_mul(nn_builder *b, int x, int y)
{
    return binary(b, x, y, NN_BINARY_MUL, "mul");
}
int nn_builder_div(nn_builder *b, int x, int y)
{
    return binary(b, x, y, NN_BINARY_DIV, "div");
}
int nn_builder_maximum(nn_builder *b, int x, int y)
{
    return binary(b, x, y, NN_BINARY_MAX, "maximum");
}

int nn_builder_activation(nn_builder *b, int x, nn_activation act)
{
    int rc = check(b, &x, 1);
    if (rc) return rc;
    nn_node p = {.op = NN_OP_UNARY, .n_inputs = 1, .inputs = {x}};
    switch (act) {
    case NN_ACTIVATION_NONE: p.p.unary.kind = NN_UNARY_IDENTITY; break;
    case NN_ACTIVATION_RELU:
        p.p.unary = (nn_unary_params){NN_UNARY_CLAMP, 0.0f, INFINITY, 0};
        break;
    case NN_ACTIVATION_RELU6: p.p.unary = (nn_unary_params){NN_UNARY_CLAMP, 0.0f, 6.0f, 0}; break;
    case NN_ACTIVATION_SIGMOID: p.p.unary.kind = NN_UNARY_SIGMOID; break;
    case NN_ACTIVATION_LEAKY_RELU:
        p.p.unary = (nn_unary_params){NN_UNARY_LEAKY, 0, 0, b->leaky_alpha};
        break;
    }
    return add_node(b, &p, "activation");
}

static int pool(nn_builder *b, int x, int size, int stride, nn_padding pad, nn_pool_kind kind)
{
    int rc = check(b, &x, 1);
    if (rc) return rc;
    const nn_shape *xs = &b->g->tensors[x].shape;
    if (xs->rank != 4 || size < 1 || stride < 1)
        return fail(b, base_error_set(BASE_ERR_INVALID, "builder: pool %d/%d on rank %d", size,
                                      stride, xs->rank));
    nn_node p = {.op = NN_OP_POOL, .n_inputs = 1, .inputs = {x}};
    nn_pool_params *q = &p.p.pool;
    q->kind = kind;
    q->kernel_h = q->kernel_w = size;
    q->stride_h = q->stride_w = stride;
    if (pad == NN_PADDING_SAME) {
        same_pad(xs->dim[1], size, stride, &q->pad_top, &q->pad_bottom);
        same_pad(xs->dim[2], size, stride, &q->pad_left, &q->pad_right);
    }
    return add_node(b, &p, kind == NN_POOL_MAX ? "max_pool" : "avg_pool");
}

int nn_builder_max_pool(nn_builder *b, int x, int size, int stride, nn_padding pad)
{
    return pool(b, x, size, stride, pad, NN_POOL_MAX);
}

int nn_builder_avg_pool(nn_builder *b, int x, int size, int stride, nn_padding pad)
{
    return pool(b, x, size, stride, pad, NN_POOL_AVG);
}

int nn_builder_mean(nn_builder *b, int x, int axis_mask, int keep_dims)
{
    int rc = check(b, &x, 1);
    if (rc) return rc;
    nn_node p = {.op = NN_OP_REDUCE, .n_inputs = 1, .inputs = {x}};
    p.p.reduce = (nn_reduce_params){NN_REDUCE_MEAN, (uint32_t)axis_mask, keep_dims};
    return add_node(b, &p, "mean");
}

int nn_builder_reshape(nn_builder *b, int x, int rank, const int64_t *dims)
{
    int rc = check(b, &x, 1);
    if (rc) return rc;
    if (rank < 0 || rank + 1 > NN_MAX_DIMS)
        return fail(b, base_error_set(BASE_ERR_INVALID, "builder: reshape to rank %d", rank + 1));
    nn_shape s = {rank + 1, {NN_BATCH}};
    for (int i = 0; i < rank; i++)
        s.dim[i + 1] = dims[i];
    nn_node p = {.op = NN_OP_RESHAPE, .n_inputs = 1, .inputs = {x}};
    char name[64];
    p.name = (char *)auto_name(b, "reshape", name, sizeof name);
    return fail(b, nn_graph_add_node_shaped(b->g, &p, &s));
}

int nn_builder_concat(nn_builder *b, const int *xs, int n, int axis)
{
    if (n < 1 || n > NN_MAX_NODE_INPUTS)
        return fail(b, base_error_set(BASE_ERR_INVALID, "builder: concat of %d tensors", n));
    int rc = check(b, xs, n);
    if (rc) return rc;
    nn_node p = {.op = NN_OP_CONCAT, .n_inputs = n};
    for (int i = 0; i < n; i++)
        p.inputs[i] = xs[i];
    p.p.concat.axis = axis;
    return add_node(b, &p, "concat");
}

int nn_builder_softmax(nn_builder *b, int x)
{
    int rc = check(b, &x, 1);
    if (rc) return rc;
    nn_node p = {.op = NN_OP_SOFTMAX, .n_inputs = 1, .inputs = {x}};
    return add_node(b, &p, "softmax");
}

int nn_builder_output(nn_builder *b, int x, const char *name)
{
    int rc = check(b, &x, 1);
    if (rc) return rc;
    if (x < 0 || nn_tensor_is_const(b->g, x))
        return fail(b,
                    base_error_set(BASE_ERR_INVALID, "builder: output %s is not computed", name));
    char *nm = strdup(name);
    if (!nm) return fail(b, base_error_set(BASE_ERR_NOMEM, "builder"));
    free(b->g->tensors[x].name);
    b->g->tensors[x].name = nm;
    rc = nn_graph_mark_output(b->g, x);
    return rc ? fail(b, rc) : x;
}

int nn_model_from_builder(nn_builder *b, const nn_load_options *opts, nn_model **out)
{
    *out = NULL;
    int rc = b->error;
    if (!rc && (b->g->n_inputs == 0 || b->g->n_outputs == 0))
        rc = base_error_set(BASE_ERR_INVALID, "builder: the network needs an input and an output");
    if (rc) {
        nn_builder_destroy(b);
        return rc;
    }
    nn_graph *g = b->g;
    b->g = NULL;
    nn_builder_destroy(b);
    return nn_model_from_graph(g, opts, out);
}
