/*
 * Graph construction and shape inference for the engine's IR (see graph.h).
 */
#include "nn/graph.h"

#include "base/base.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* No dimension of any tensor may exceed this; it keeps every size product far from overflow. */
#define NN_MAX_DIM_SIZE (1 << 24)
#define NN_MAX_ELEMENTS ((int64_t)1 << 31)

nn_graph *nn_graph_new(void)
{
    return calloc(1, sizeof(nn_graph));
}

void nn_graph_free(nn_graph *g)
{
    if (!g) return;
    for (int i = 0; i < g->n_tensors; i++) {
        free(g->tensors[i].name);
        base_aligned_free(g->tensors[i].data);
    }
    for (int i = 0; i < g->n_nodes; i++) {
        free(g->nodes[i].name);
        base_aligned_free(g->nodes[i].packed);
        base_aligned_free(g->nodes[i].wino);
    }
    free(g->tensors);
    free(g->nodes);
    free(g);
}

int64_t nn_shape_numel(const nn_shape *s, int64_t batch)
{
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++)
        n *= s->dim[i] == NN_BATCH ? batch : s->dim[i];
    return n;
}

int nn_shape_equal(const nn_shape *a, const nn_shape *b)
{
    if (a->rank != b->rank) return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->dim[i] != b->dim[i]) return 0;
    return 1;
}

const char *nn_shape_str(const nn_shape *s, char *buf, size_t len)
{
    size_t off = 0;
    off += (size_t)snprintf(buf + off, len - off, "[");
    for (int i = 0; i < s->rank && off < len; i++) {
        if (s->dim[i] == NN_BATCH)
            off += (size_t)snprintf(buf + off, len - off, "%sN", i ? "," : "");
        else
            off += (size_t)snprintf(buf + off, len - off, "%s%" PRId64, i ? "," : "", s->dim[i]);
    }
    if (off < len) snprintf(buf + off, len - off, "]");
    return buf;
}

static int check_shape(const char *name, const nn_shape *s, int allow_batch)
{
    char buf[128];
    if (s->rank < 0 || s->rank > NN_MAX_DIMS)
        return base_error_set(BASE_ERR_UNSUPPORTED, "tensor %s: rank %d (at most %d)", name,
                              s->rank, NN_MAX_DIMS);
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++) {
        int64_t d = s->dim[i];
        if (d == NN_BATCH && i == 0 && allow_batch) continue;
        if (d < 0 || d > NN_MAX_DIM_SIZE)
            return base_error_set(BASE_ERR_LIMIT, "tensor %s: dimension %d of %s is out of range",
                                  name, i, nn_shape_str(s, buf, sizeof buf));
        n *= d;
        if (n > NN_MAX_ELEMENTS)
            return base_error_set(BASE_ERR_LIMIT, "tensor %s: %s has too many elements", name,
                                  nn_shape_str(s, buf, sizeof buf));
    }
    return 0;
}

static char *dup_name(const char *s)
{
    return strdup(s ? s : "");
}

static int new_tensor(nn_graph *g, const char *name, nn_dtype dtype, const nn_shape *shape)
{
    if (g->n_tensors == g->cap_tensors) {
        int cap = g->cap_tensors ? g->cap_tensors * 2 : 64;
        nn_tensor *t = realloc(g->tensors, (size_t)cap * sizeof *t);
        if (!t) return base_error_set(BASE_ERR_NOMEM, "graph: cannot grow to %d tensors", cap);
        g->tensors = t;
        g->cap_tensors = cap;
    }
    nn_tensor *t = &g->tensors[g->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = dup_name(name);
    if (!t->name) return base_error_set(BASE_ERR_NOMEM, "graph: out of memory");
    t->dtype = dtype;
    t->shape = *shape;
    t->producer = -1;
    return g->n_tensors++;
}

int nn_graph_add_input(nn_graph *g, const char *name, const nn_shape *shape)
{
    if (shape->rank < 1 || shape->dim[0] != NN_BATCH)
        return base_error_set(BASE_ERR_UNSUPPORTED,
                              "input %s: the first dimension must be the batch", name);
    if (g->n_inputs >= (int)(sizeof g->inputs / sizeof g->inputs[0]))
        return base_error_set(BASE_ERR_LIMIT, "input %s: too many graph inputs", name);
    int rc = check_shape(name, shape, 1);
    if (rc) return rc;
    int t = new_tensor(g, name, NN_DTYPE_F32, shape);
    if (t < 0) return t;
    g->inputs[g->n_inputs++] = t;
    return t;
}

int nn_graph_add_const(nn_graph *g, const char *name, nn_dtype dtype, const nn_shape *shape,
                       const void *data)
{
    int rc = check_shape(name, shape, 0);
    if (rc) return rc;
    size_t bytes = (size_t)nn_shape_numel(shape, 1) * 4;
    void *copy = base_aligned_alloc(64, bytes ? bytes : 4);
    if (!copy)
        return base_error_set(BASE_ERR_NOMEM, "constant %s: cannot allocate %zu bytes", name,
                              bytes);
    if (bytes) memcpy(copy, data, bytes);
    int t = new_tensor(g, name, dtype, shape);
    if (t < 0) {
        base_aligned_free(copy);
        return t;
    }
    g->tensors[t].data = copy;
    return t;
}

int nn_graph_mark_output(nn_graph *g, int t)
{
    if (t < 0 || t >= g->n_tensors)
        return base_error_set(BASE_ERR_INVALID, "output: bad tensor %d", t);
    if (g->n_outputs >= (int)(sizeof g->outputs / sizeof g->outputs[0]))
        return base_error_set(BASE_ERR_LIMIT, "output %s: too many graph outputs",
                              g->tensors[t].name);
    g->outputs[g->n_outputs++] = t;
    return 0;
}

/* --- shape inference ----------------------------------------------------------------------- */

static const nn_shape *in_shape(const nn_graph *g, const nn_node *n, int i)
{
    return &g->tensors[n->inputs[i]].shape;
}

int64_t nn_window_out(int64_t in, int k, int stride, int dil, int pad0, int pad1)
{
    int64_t eff = (int64_t)(k - 1) * dil + 1;
    int64_t span = in + pad0 + pad1 - eff;
    if (span < 0 || stride < 1) return -1;
    return span / stride + 1;
}

int nn_shape_broadcast(const nn_shape *a, const nn_shape *b, nn_shape *out)
{
    int r = a->rank > b->rank ? a->rank : b->rank;
    out->rank = r;
    for (int i = 0; i < r; i++) {
        int ia = i - (r - a->rank), ib = i - (r - b->rank);
        int64_t da = ia >= 0 ? a->dim[ia] : 1, db = ib >= 0 ? b->dim[ib] : 1;
        if (da == db)
            out->dim[i] = da;
        else if (da == 1)
            out->dim[i] = db;
        else if (db == 1)
            out->dim[i] = da;
        else
            return -1;
    }
    return 0;
}

static int check_act_slope(const nn_graph *g, const nn_node *n, const nn_act *act, int64_t channels)
{
    if (act->kind != NN_ACT_PRELU) return 0;
    char b[64];
    if (n->n_inputs < 4 || !nn_tensor_is_const(g, n->inputs[3]))
        return base_error_set(BASE_ERR_FORMAT, "node %s: PReLU slope must be a constant", n->name);
    const nn_shape *s = in_shape(g, n, 3);
    if (nn_shape_numel(s, 1) != channels)
        return base_error_set(BASE_ERR_FORMAT, "node %s: PReLU slope %s for %" PRId64 " channels",
                              n->name, nn_shape_str(s, b, sizeof b), channels);
    return 0;
}

int nn_infer_shape(const nn_graph *g, const nn_node *n, nn_shape *out)
{
    char b1[128], b2[128];
    memset(out, 0, sizeof *out);
    if (n->n_inputs < 1 || n->n_inputs > NN_MAX_NODE_INPUTS)
        return base_error_set(BASE_ERR_FORMAT, "node %s: %d inputs", n->name, n->n_inputs);
    for (int i = 0; i < n->n_inputs; i++) {
        int t = n->inputs[i];
        if (t == -1 && i > 0) continue;
        if (t < 0 || t >= g->n_tensors)
            return base_error_set(BASE_ERR_FORMAT, "node %s: input %d refers to no tensor", n->name,
                                  i);
    }
    const nn_shape *x = in_shape(g, n, 0);
    switch (n->op) {
    case NN_OP_CONV2D: {
        const nn_conv_params *p = &n->p.conv;
        if (n->n_inputs < 2 || !nn_tensor_is_const(g, n->inputs[1]))
            return base_error_set(BASE_ERR_UNSUPPORTED,
                                  "node %s: convolution filter must be constant", n->name);
        const nn_shape *w = in_shape(g, n, 1);
        if (x->rank != 4 || w->rank != 4)
            return base_error_set(BASE_ERR_FORMAT, "node %s: convolution of %s with filter %s",
                                  n->name, nn_shape_str(x, b1, sizeof b1),
                                  nn_shape_str(w, b2, sizeof b2));
        if (w->dim[0] != p->kernel_h || w->dim[1] != p->kernel_w || w->dim[2] != x->dim[3])
            return base_error_set(BASE_ERR_FORMAT, "node %s: filter %s does not fit input %s",
                                  n->name, nn_shape_str(w, b2, sizeof b2),
                                  nn_shape_str(x, b1, sizeof b1));
        int64_t cout = p->depthwise ? w->dim[2] * w->dim[3] : w->dim[3];
        int64_t oh = nn_window_out(x->dim[1], p->kernel_h, p->stride_h, p->dilation_h, p->pad_top,
                                   p->pad_bottom);
        int64_t ow = nn_window_out(x->dim[2], p->kernel_w, p->stride_w, p->dilation_w, p->pad_left,
                                   p->pad_right);
        if (oh < 1 || ow < 1 || p->pad_top < 0 || p->pad_bottom < 0 || p->pad_left < 0 ||
            p->pad_right < 0)
            return base_error_set(BASE_ERR_FORMAT, "node %s: %dx%d window does not fit input %s",
                                  n->name, p->kernel_h, p->kernel_w,
                                  nn_shape_str(x, b1, sizeof b1));
        if (n->n_inputs > 2 && n->inputs[2] >= 0 && nn_shape_numel(in_shape(g, n, 2), 1) != cout)
            return base_error_set(BASE_ERR_FORMAT, "node %s: bias %s for %" PRId64 " channels",
                                  n->name, nn_shape_str(in_shape(g, n, 2), b1, sizeof b1), cout);
        int rc = check_act_slope(g, n, &p->act, cout);
        if (rc) return rc;
        if (p->pool && (p->pool != 2 || p->depthwise || p->residual || oh < 2 || ow < 2 ||
                        (p->pool_kind != NN_POOL_MAX && p->pool_kind != NN_POOL_AVG)))
            return base_error_set(BASE_ERR_FORMAT,
                                  "node %s: fused pooling %d of a %" PRId64 "x%" PRId64 " map",
                                  n->name, p->pool, oh, ow);
        if (p->pool) oh /= 2, ow /= 2;
        *out = (nn_shape){4, {x->dim[0], oh, ow, cout}};
        if (p->residual && (p->depthwise || n->n_inputs != 5 || n->inputs[4] < 0 ||
                            !nn_shape_equal(in_shape(g, n, 4), out)))
            return base_error_set(BASE_ERR_FORMAT,
                                  "node %s: residual input must have the output's shape", n->name);
        if (p->post_affine &&
            (p->residual || p->depthwise || n->n_inputs != 7 ||
             !nn_tensor_is_const(g, n->inputs[5]) || !nn_tensor_is_const(g, n->inputs[6]) ||
             nn_shape_numel(in_shape(g, n, 5), 1) != cout ||
             nn_shape_numel(in_shape(g, n, 6), 1) != cout))
            return base_error_set(BASE_ERR_FORMAT,
                                  "node %s: scale and shift must be %" PRId64 " constants", n->name,
                                  cout);
        if (!p->residual && !p->post_affine && n->n_inputs > 4)
            return base_error_set(BASE_ERR_FORMAT, "node %s: %d inputs", n->name, n->n_inputs);
        break;
    }
    case NN_OP_FULLY_CONNECTED: {
        if (n->n_inputs < 2 || !nn_tensor_is_const(g, n->inputs[1]))
            return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: matmul weights must be constant",
                                  n->name);
        const nn_shape *w = in_shape(g, n, 1);
        if (x->rank != 2 || w->rank != 2 || w->dim[0] != x->dim[1])
            return base_error_set(BASE_ERR_FORMAT, "node %s: matmul of %s by %s", n->name,
                                  nn_shape_str(x, b1, sizeof b1), nn_shape_str(w, b2, sizeof b2));
        if (n->n_inputs > 2 && n->inputs[2] >= 0 &&
            nn_shape_numel(in_shape(g, n, 2), 1) != w->dim[1])
            return base_error_set(BASE_ERR_FORMAT, "node %s: bias %s for %" PRId64 " outputs",
                                  n->name, nn_shape_str(in_shape(g, n, 2), b1, sizeof b1),
                                  w->dim[1]);
        int rc = check_act_slope(g, n, &n->p.fc.act, w->dim[1]);
        if (rc) return rc;
        *out = (nn_shape){2, {x->dim[0], w->dim[1]}};
        break;
    }
    case NN_OP_BINARY:
    case NN_OP_PRELU: {
        if (n->n_inputs != 2)
            return base_error_set(BASE_ERR_FORMAT, "node %s: needs 2 inputs, has %d", n->name,
                                  n->n_inputs);
        const nn_shape *y = in_shape(g, n, 1);
        if (nn_shape_broadcast(x, y, out) != 0)
            return base_error_set(BASE_ERR_FORMAT, "node %s: shapes %s and %s do not broadcast",
                                  n->name, nn_shape_str(x, b1, sizeof b1),
                                  nn_shape_str(y, b2, sizeof b2));
        /* The batch symbol broadcasts only against itself or 1. */
        break;
    }
    case NN_OP_UNARY:
    case NN_OP_SOFTMAX: *out = *x; break;
    case NN_OP_POOL: {
        const nn_pool_params *p = &n->p.pool;
        if (x->rank != 4)
            return base_error_set(BASE_ERR_FORMAT, "node %s: pooling needs rank 4", n->name);
        int64_t oh =
            nn_window_out(x->dim[1], p->kernel_h, p->stride_h, 1, p->pad_top, p->pad_bottom);
        int64_t ow =
            nn_window_out(x->dim[2], p->kernel_w, p->stride_w, 1, p->pad_left, p->pad_right);
        if (oh < 1 || ow < 1)
            return base_error_set(BASE_ERR_FORMAT, "node %s: %dx%d pool does not fit %s", n->name,
                                  p->kernel_h, p->kernel_w, nn_shape_str(x, b1, sizeof b1));
        *out = (nn_shape){4, {x->dim[0], oh, ow, x->dim[3]}};
        break;
    }
    case NN_OP_REDUCE: {
        const nn_reduce_params *p = &n->p.reduce;
        if ((p->axes >> x->rank) != 0 || p->axes == 0)
            return base_error_set(BASE_ERR_FORMAT, "node %s: reduction axes 0x%x for rank %d",
                                  n->name, p->axes, x->rank);
        if ((p->axes & 1) && x->dim[0] == NN_BATCH)
            return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: reduction over the batch",
                                  n->name);
        out->rank = 0;
        for (int i = 0; i < x->rank; i++) {
            if (p->axes & (1u << i)) {
                if (p->keep_dims) out->dim[out->rank++] = 1;
            } else {
                out->dim[out->rank++] = x->dim[i];
            }
        }
        break;
    }
    case NN_OP_PAD: {
        const nn_pad_params *p = &n->p.pad;
        *out = *x;
        for (int i = 0; i < x->rank; i++) {
            if (p->before[i] < 0 || p->after[i] < 0 || p->before[i] > NN_MAX_DIM_SIZE ||
                p->after[i] > NN_MAX_DIM_SIZE ||
                (i == 0 && x->dim[0] == NN_BATCH && (p->before[0] || p->after[0])))
                return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: padding of axis %d", n->name,
                                      i);
            if (x->dim[i] != NN_BATCH) out->dim[i] = x->dim[i] + p->before[i] + p->after[i];
        }
        break;
    }
    case NN_OP_RESHAPE:
        /* The output shape is set by the caller in the output tensor; checked in add_node. */
        return base_error_set(BASE_ERR_INVALID, "node %s: reshape shape comes from its output",
                              n->name);
    case NN_OP_CONCAT: {
        int axis = n->p.concat.axis;
        if (axis < 0 || axis >= x->rank || (axis == 0 && x->dim[0] == NN_BATCH))
            return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: concat axis %d of rank %d",
                                  n->name, axis, x->rank);
        *out = *x;
        for (int i = 1; i < n->n_inputs; i++) {
            const nn_shape *y = in_shape(g, n, i);
            int ok = y->rank == x->rank;
            for (int d = 0; ok && d < x->rank; d++)
                if (d != axis && y->dim[d] != x->dim[d]) ok = 0;
            if (!ok)
                return base_error_set(
                    BASE_ERR_FORMAT, "node %s: cannot concatenate %s and %s on axis %d", n->name,
                    nn_shape_str(x, b1, sizeof b1), nn_shape_str(y, b2, sizeof b2), axis);
            out->dim[axis] += y->dim[axis];
        }
        break;
    }
    case NN_OP_SLICE:
        return base_error_set(BASE_ERR_INVALID, "node %s: slice shape comes from its output",
                              n->name);
    case NN_OP_RESIZE_BILINEAR: {
        const nn_resize_params *p = &n->p.resize;
        if (x->rank != 4 || p->out_h < 1 || p->out_w < 1 || p->out_h > NN_MAX_DIM_SIZE ||
            p->out_w > NN_MAX_DIM_SIZE)
            return base_error_set(BASE_ERR_FORMAT, "node %s: resize %s to %dx%d", n->name,
                                  nn_shape_str(x, b1, sizeof b1), p->out_h, p->out_w);
        *out = (nn_shape){4, {x->dim[0], p->out_h, p->out_w, x->dim[3]}};
        break;
    }
    case NN_OP_DEPTH_TO_SPACE: {
        int bs = n->p.d2s.block;
        if (x->rank != 4 || bs < 1 || x->dim[3] % ((int64_t)bs * bs) != 0)
            return base_error_set(BASE_ERR_FORMAT, "node %s: depth_to_space %d of %s", n->name, bs,
                                  nn_shape_str(x, b1, sizeof b1));
        *out = (nn_shape){
            4, {x->dim[0], x->dim[1] * bs, x->dim[2] * bs, x->dim[3] / ((int64_t)bs * bs)}};
        break;
    }
    default:
        return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: unknown op %d", n->name, (int)n->op);
    }
    return 0;
}

static int append_node(nn_graph *g, const nn_node *proto, const nn_shape *shape)
{
    int rc = check_shape(proto->name, shape, 1);
    if (rc) return rc;
    /* Invariant: a computed tensor carries the batch in dim 0. */
    if (shape->rank < 1 || shape->dim[0] != NN_BATCH) {
        char b[128];
        return base_error_set(BASE_ERR_UNSUPPORTED,
                              "node %s: output %s does not keep the batch as its first dimension",
                              proto->name, nn_shape_str(shape, b, sizeof b));
    }
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? g->cap_nodes * 2 : 64;
        nn_node *nodes = realloc(g->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) return base_error_set(BASE_ERR_NOMEM, "graph: cannot grow to %d nodes", cap);
        g->nodes = nodes;
        g->cap_nodes = cap;
    }
    int t = new_tensor(g, proto->name, NN_DTYPE_F32, shape);
    if (t < 0) return t;
    nn_node *n = &g->nodes[g->n_nodes];
    *n = *proto;
    n->packed = NULL; /* packed at load, per node; never copied from a prototype */
    n->wino = NULL;
    n->name = dup_name(proto->name);
    if (!n->name) return base_error_set(BASE_ERR_NOMEM, "graph: out of memory");
    for (int i = n->n_inputs; i < NN_MAX_NODE_INPUTS; i++)
        n->inputs[i] = -1;
    n->output = t;
    g->tensors[t].producer = g->n_nodes;
    g->n_nodes++;
    return t;
}

static int check_inputs_f32(const nn_graph *g, const nn_node *proto)
{
    for (int i = 0; i < proto->n_inputs; i++) {
        int t = proto->inputs[i];
        if (t == -1 && i > 0) continue;
        if (t < 0 || t >= g->n_tensors)
            return base_error_set(BASE_ERR_FORMAT, "node %s: input %d refers to no tensor",
                                  proto->name, i);
        if (g->tensors[t].dtype != NN_DTYPE_F32)
            return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: input %s is not float32",
                                  proto->name, g->tensors[t].name);
    }
    return 0;
}

int nn_graph_add_node(nn_graph *g, const nn_node *proto)
{
    if (proto->n_inputs < 1 || proto->n_inputs > NN_MAX_NODE_INPUTS)
        return base_error_set(BASE_ERR_FORMAT, "node %s: %d inputs", proto->name, proto->n_inputs);
    int rc = check_inputs_f32(g, proto);
    if (rc) return rc;
    nn_shape shape;
    rc = nn_infer_shape(g, proto, &shape);
    if (rc) return rc;
    return append_node(g, proto, &shape);
}

int nn_graph_add_node_shaped(nn_graph *g, const nn_node *proto, const nn_shape *shape)
{
    char b1[128], b2[128];
    int rc = check_inputs_f32(g, proto);
    if (rc) return rc;
    if (proto->op != NN_OP_RESHAPE && proto->op != NN_OP_SLICE) return nn_graph_add_node(g, proto);
    const nn_shape *x = &g->tensors[proto->inputs[0]].shape;
    rc = check_shape(proto->name, shape, 1);
    if (rc) return rc;
    int64_t want;
    if (proto->op == NN_OP_SLICE) {
        const nn_slice_params *p = &proto->p.slice;
        if (p->rank != x->rank)
            return base_error_set(BASE_ERR_FORMAT, "node %s: slice of rank %d on %s", proto->name,
                                  p->rank, nn_shape_str(x, b1, sizeof b1));
        want = 1;
        for (int i = 0; i < p->rank; i++) {
            if (x->dim[i] == NN_BATCH) {
                if (i != 0 || p->begin[0] != 0 || p->stride[0] != 1)
                    return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: slice of the batch",
                                          proto->name);
                continue;
            }
            int64_t last = p->begin[i] + (p->size[i] - 1) * p->stride[i];
            if (p->size[i] < 0 || p->stride[i] == 0 || p->begin[i] < 0 ||
                p->begin[i] >= x->dim[i] || (p->size[i] > 0 && (last < 0 || last >= x->dim[i])))
                return base_error_set(BASE_ERR_FORMAT,
                                      "node %s: slice out of bounds on axis %d of %s", proto->name,
                                      i, nn_shape_str(x, b1, sizeof b1));
            want *= p->size[i];
        }
    } else {
        want = nn_shape_numel(x, 1);
    }
    if (nn_shape_numel(shape, 1) != want || (x->dim[0] == NN_BATCH) != (shape->dim[0] == NN_BATCH))
        return base_error_set(BASE_ERR_FORMAT, "node %s: cannot turn %s into %s", proto->name,
                              nn_shape_str(x, b1, sizeof b1), nn_shape_str(shape, b2, sizeof b2));
    return append_node(g, proto, shape);
}

int64_t nn_node_macs(const nn_graph *g, const nn_node *n)
{
    const nn_shape *o = &g->tensors[n->output].shape;
    if (n->op == NN_OP_CONV2D) {
        const nn_shape *w = &g->tensors[n->inputs[1]].shape;
        int64_t per_out =
            n->p.conv.depthwise ? w->dim[0] * w->dim[1] : w->dim[0] * w->dim[1] * w->dim[2];
        int64_t pooled = n->p.conv.pool ? (int64_t)n->p.conv.pool * n->p.conv.pool
                                        : 1; /* outputs per pooled one */
        return o->dim[1] * o->dim[2] * o->dim[3] * per_out * pooled;
    }
    if (n->op == NN_OP_FULLY_CONNECTED) {
        const nn_shape *w = &g->tensors[n->inputs[1]].shape;
        return w->dim[0] * w->dim[1];
    }
    return 0;
}

const char *nn_node_kind_name(const nn_node *n)
{
    switch (n->op) {
    case NN_OP_CONV2D: return n->p.conv.depthwise ? "depthwise_conv2d" : "conv2d";
    case NN_OP_FULLY_CONNECTED: return "fully_connected";
    case NN_OP_BINARY: {
        static const char *k[] = {
            "add", "sub", "mul", "div", "minimum", "maximum", "squared_difference"};
        return n->p.binary.kind <= NN_BINARY_SQUARED_DIFFERENCE ? k[n->p.binary.kind] : "binary";
    }
    case NN_OP_UNARY: {
        static const char *k[] = {"identity", "abs",        "neg", "square",  "sqrt",
                                  "rsqrt",    "exp",        "log", "sigmoid", "tanh",
                                  "clamp",    "leaky_relu", "elu"};
        return n->p.unary.kind <= NN_UNARY_ELU ? k[n->p.unary.kind] : "unary";
    }
    case NN_OP_PRELU: return "prelu";
    case NN_OP_POOL: return n->p.pool.kind == NN_POOL_MAX ? "max_pool" : "avg_pool";
    case NN_OP_REDUCE: {
        static const char *k[] = {"mean", "sum", "reduce_max", "reduce_min"};
        return n->p.reduce.kind <= NN_REDUCE_MIN ? k[n->p.reduce.kind] : "reduce";
    }
    case NN_OP_PAD: return "pad";
    case NN_OP_RESHAPE: return "reshape";
    case NN_OP_CONCAT: return "concat";
    case NN_OP_SLICE: return "slice";
    case NN_OP_RESIZE_BILINEAR: return "resize_bilinear";
    case NN_OP_DEPTH_TO_SPACE: return "depth_to_space";
    case NN_OP_SOFTMAX: return "softmax";
    default: return "unknown";
    }
}
