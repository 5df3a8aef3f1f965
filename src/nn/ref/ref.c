/*
 * The reference backend: dispatch and the helpers its kernels share.
 */
#include "nn/ref/ref.h"

#include <stdio.h>

int nn_ref_run(const nn_graph *g, const nn_node *node, const nn_view *in, nn_view *out)
{
    (void)g; /* every kernel works from the views alone */
    if (!node || !out || (node->n_inputs > 0 && !in))
        return base_error_set(BASE_ERR_INVALID, "nn_ref_run: NULL node, inputs or output");
    if (node->n_inputs < 0 || node->n_inputs > NN_MAX_NODE_INPUTS)
        return base_error_set(BASE_ERR_INVALID, "node %s: %d inputs", nn_ref_node_name(node),
                              node->n_inputs);
    int rc = nn_ref_check_view(node, out, "output");
    if (rc < 0) return rc;

    switch (node->op) {
    case NN_OP_CONV2D: return nn_ref_conv2d(node, in, out);
    case NN_OP_FULLY_CONNECTED: return nn_ref_fully_connected(node, in, out);
    case NN_OP_BINARY: return nn_ref_binary(node, in, out);
    case NN_OP_UNARY: return nn_ref_unary(node, in, out);
    case NN_OP_PRELU: return nn_ref_prelu(node, in, out);
    case NN_OP_POOL: return nn_ref_pool(node, in, out);
    case NN_OP_REDUCE: return nn_ref_reduce(node, in, out);
    case NN_OP_PAD: return nn_ref_pad(node, in, out);
    case NN_OP_RESHAPE: return nn_ref_reshape(node, in, out);
    case NN_OP_CONCAT: return nn_ref_concat(node, in, out);
    case NN_OP_SLICE: return nn_ref_slice(node, in, out);
    case NN_OP_RESIZE_BILINEAR: return nn_ref_resize_bilinear(node, in, out);
    case NN_OP_DEPTH_TO_SPACE: return nn_ref_depth_to_space(node, in, out);
    case NN_OP_SOFTMAX: return nn_ref_softmax(node, in, out);
    case NN_OP_COUNT: break;
    }
    return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: unknown op %d", nn_ref_node_name(node),
                          (int)node->op);
}

const char *nn_ref_node_name(const nn_node *node)
{
    return node->name && node->name[0] ? node->name : "?";
}

const char *nn_ref_shape_str(const nn_shape *s, char *buf, size_t len)
{
    if (len == 0) return buf;
    if (s->rank < 0 || s->rank > NN_MAX_DIMS) {
        snprintf(buf, len, "[rank %d]", s->rank);
        return buf;
    }
    size_t used = 0;
    buf[0] = '\0';
    int n = snprintf(buf, len, "[");
    used = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < s->rank && used < len; i++) {
        n = snprintf(buf + used, len - used, "%s%lld", i ? "," : "", (long long)s->dim[i]);
        if (n < 0) break;
        used += (size_t)n;
    }
    if (used < len) snprintf(buf + used, len - used, "]");
    return buf;
}

int64_t nn_ref_numel(const nn_shape *s)
{
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++)
        n *= s->dim[i];
    return n;
}

void nn_ref_strides(const nn_shape *s, int64_t stride[NN_MAX_DIMS])
{
    int64_t st = 1;
    for (int i = s->rank - 1; i >= 0; i--) {
        stride[i] = st;
        st *= s->dim[i];
    }
}

int nn_ref_shape_equal(const nn_shape *a, const nn_shape *b)
{
    if (a->rank != b->rank) return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->dim[i] != b->dim[i]) return 0;
    return 1;
}

int nn_ref_check_view(const nn_node *node, const nn_view *v, const char *what)
{
    if (v->shape.rank < 0 || v->shape.rank > NN_MAX_DIMS)
        return base_error_set(BASE_ERR_INVALID, "node %s: %s has rank %d", nn_ref_node_name(node),
                              what, v->shape.rank);
    for (int i = 0; i < v->shape.rank; i++)
        if (v->shape.dim[i] < 0)
            return base_error_set(BASE_ERR_INVALID, "node %s: %s has unresolved shape %s",
                                  nn_ref_node_name(node), what, NN_REF_SHAPE(&v->shape));
    if (!v->data && nn_ref_numel(&v->shape) > 0)
        return base_error_set(BASE_ERR_INVALID, "node %s: %s %s has no data",
                              nn_ref_node_name(node), what, NN_REF_SHAPE(&v->shape));
    return 0;
}

int nn_ref_check_inputs(const nn_node *node, const nn_view *in, int n)
{
    if (node->n_inputs < n)
        return base_error_set(BASE_ERR_INVALID, "node %s: %d inputs, needs at least %d",
                              nn_ref_node_name(node), node->n_inputs, n);
    for (int i = 0; i < n; i++) {
        char what[24];
        snprintf(what, sizeof what, "input %d", i);
        int rc = nn_ref_check_view(node, &in[i], what);
        if (rc < 0) return rc;
    }
    return 0;
}

const nn_view *nn_ref_optional_input(const nn_node *node, const nn_view *in, int i)
{
    return i < node->n_inputs && in[i].data ? &in[i] : NULL;
}

int nn_ref_act_resolve(const nn_node *node, const nn_act *act, const nn_view *in, int slope_input,
                       int allow_prelu, int64_t channels, nn_ref_act *out)
{
    out->act = *act;
    out->slope = NULL;
    out->slope_n = 0;
    switch (act->kind) {
    case NN_ACT_NONE:
    case NN_ACT_CLAMP:
    case NN_ACT_LEAKY: return 0;
    case NN_ACT_PRELU: break;
    default:
        return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: unknown activation %d",
                              nn_ref_node_name(node), (int)act->kind);
    }
    if (!allow_prelu)
        return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: fused PReLU not supported here",
                              nn_ref_node_name(node));
    const nn_view *s = nn_ref_optional_input(node, in, slope_input);
    if (!s)
        return base_error_set(BASE_ERR_INVALID, "node %s: fused PReLU without slope (input %d)",
                              nn_ref_node_name(node), slope_input);
    int rc = nn_ref_check_view(node, s, "prelu slope");
    if (rc < 0) return rc;
    /* The slope is one value per output channel, whatever leading 1s its shape has ([C],
     * [1,1,C], [1,1,1,C]), or a single value for all channels. */
    int64_t n = nn_ref_numel(&s->shape);
    int per_channel = n == channels && s->shape.rank >= 1 && s->shape.dim[s->shape.rank - 1] == n;
    if (n != 1 && !per_channel)
        return base_error_set(BASE_ERR_INVALID, "node %s: PReLU slope %s for %lld channels",
                              nn_ref_node_name(node), NN_REF_SHAPE(&s->shape), (long long)channels);
    out->slope = s->data;
    out->slope_n = n;
    return 0;
}
