/*
 * Importer for TF.js graph models: model.json holds a TensorFlow GraphDef as JSON
 * ("modelTopology": {"node": [...]}) and a weights manifest. Each TF node is translated into
 * the engine's IR; constants come from the manifest.
 *
 * Shapes: only the batch is dynamic. Integer tensors that describe shapes (Shape, and the
 * StridedSlice/Pack/ConcatV2 arithmetic on them) are evaluated here, at import, with the
 * batch kept as a symbol, so a Reshape whose target is computed from Shape(x) resolves to a
 * static shape with a batch dimension.
 */
#include "nn/import.h"

#include "base/base.h"
#include "nn/weights.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define I32_BATCH INT32_MIN /* the batch symbol inside integer shape values */
#define MAX_TF_NODES 100000
#define MAX_GRAPH_DEPTH 20000 /* visit() recurses once per level */

/* What a TF node evaluates to during import. */
typedef enum { VAL_NONE, VAL_TENSOR, VAL_WEIGHT, VAL_I32 } val_kind;

typedef struct tf_value {
    val_kind kind;
    int tensor;                 /* VAL_TENSOR, or a VAL_WEIGHT once materialised (else -1) */
    const nn_weight *weight;    /* VAL_WEIGHT */
    int rank;                   /* VAL_I32: rank 0 or 1 */
    int n;                      /* VAL_I32: element count */
    int32_t v[NN_MAX_DIMS * 2]; /* VAL_I32 values; I32_BATCH for the batch symbol */
} tf_value;

typedef struct tf_node {
    json_t *json;
    const char *name;
    const char *op;
    json_t *attr;
    int inputs[NN_MAX_NODE_INPUTS + 2]; /* indices into nodes; control inputs dropped */
    int n_inputs;
    int state; /* topological sort: 0 unvisited, 1 on stack, 2 done */
    int needed;
    tf_value val;
} tf_node;

typedef struct importer {
    tf_node *nodes;
    int n;
    /* open-addressing map from node name to index */
    int *slots;
    size_t n_slots;
    const nn_weights *weights;
    nn_graph *g;
} importer;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s)
        h = (h ^ (uint8_t)*s++) * 1099511628211ull;
    return h;
}

static int map_find(const importer *im, const char *name, size_t len)
{
    char tmp[1024];
    if (len >= sizeof tmp) return -1;
    memcpy(tmp, name, len);
    tmp[len] = '\0';
    for (size_t i = hash_str(tmp) & (im->n_slots - 1);; i = (i + 1) & (im->n_slots - 1)) {
        int k = im->slots[i];
        if (k < 0) return -1;
        if (strcmp(im->nodes[k].name, tmp) == 0) return k;
    }
}

static int map_insert(importer *im, int k)
{
    for (size_t i = hash_str(im->nodes[k].name) & (im->n_slots - 1);;
         i = (i + 1) & (im->n_slots - 1)) {
        if (im->slots[i] < 0) {
            im->slots[i] = k;
            return 0;
        }
        if (strcmp(im->nodes[im->slots[i]].name, im->nodes[k].name) == 0)
            return base_error_set(BASE_ERR_FORMAT, "graph: two nodes are named %s",
                                  im->nodes[k].name);
    }
}

/* --- attributes ---------------------------------------------------------------------------- */

static json_t *attr(const tf_node *n, const char *key)
{
    return json_object_get(n->attr, key);
}

static long long attr_int(const tf_node *n, const char *key, long long def)
{
    json_t *a = attr(n, key);
    json_t *i = a ? json_object_get(a, "i") : NULL;
    if (!i) return def;
    if (json_is_string(i)) return atoll(json_string_value(i));
    if (json_is_integer(i)) return json_integer_value(i);
    return def;
}

static double attr_float(const tf_node *n, const char *key, double def)
{
    json_t *a = attr(n, key);
    json_t *f = a ? json_object_get(a, "f") : NULL;
    return json_is_number(f) ? json_number_value(f) : def;
}

static int attr_bool(const tf_node *n, const char *key, int def)
{
    json_t *a = attr(n, key);
    json_t *b = a ? json_object_get(a, "b") : NULL;
    return json_is_boolean(b) ? json_is_true(b) : def;
}

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

/* GraphDef JSON stores string attributes base64-encoded. */
static void b64_decode(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (; *in && *in != '='; in++) {
        int v = b64val(*in);
        if (v < 0) break;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o + 1 < cap) out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[o] = '\0';
}

static void attr_str(const tf_node *n, const char *key, char *out, size_t cap)
{
    json_t *a = attr(n, key);
    const char *s = a ? json_string_value(json_object_get(a, "s")) : NULL;
    out[0] = '\0';
    if (s) b64_decode(s, out, cap);
}

/* attr {"list": {"i": [...]}} into out; returns the count or -1. */
static int attr_int_list(const tf_node *n, const char *key, long long *out, int cap)
{
    json_t *a = attr(n, key);
    json_t *list = a ? json_object_get(a, "list") : NULL;
    if (!list) return -1;
    json_t *arr = json_object_get(list, "i");
    if (!arr) return 0;
    if (!json_is_array(arr) || (int)json_array_size(arr) > cap) return -1;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *v = json_array_get(arr, i);
        out[i] = json_is_string(v) ? atoll(json_string_value(v)) : json_integer_value(v);
    }
    return (int)json_array_size(arr);
}

static int attr_str_list(const tf_node *n, const char *key, char out[][32], int cap)
{
    json_t *a = attr(n, key);
    json_t *list = a ? json_object_get(a, "list") : NULL;
    json_t *arr = list ? json_object_get(list, "s") : NULL;
    if (!json_is_array(arr)) return 0;
    int k = 0;
    for (size_t i = 0; i < json_array_size(arr) && k < cap; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (s) b64_decode(s, out[k++], 32);
    }
    return k;
}

/* --- values -------------------------------------------------------------------------------- */

static tf_value *input_val(importer *im, const tf_node *n, int i)
{
    return &im->nodes[n->inputs[i]].val;
}

/* The graph tensor of input i, materialising constants on first use. */
static int input_tensor(importer *im, const tf_node *n, int i)
{
    if (i >= n->n_inputs)
        return base_error_set(BASE_ERR_FORMAT, "node %s (%s): missing input %d", n->name, n->op, i);
    tf_node *src = &im->nodes[n->inputs[i]];
    tf_value *v = &src->val;
    if (v->kind == VAL_TENSOR) return v->tensor;
    if (v->kind == VAL_WEIGHT) {
        if (v->tensor >= 0) return v->tensor;
        const nn_weight *w = v->weight;
        if (w->dtype != NN_DTYPE_F32)
            return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: integer constant %s used as data",
                                  n->name, src->name);
        nn_shape s = {w->rank, {0}};
        for (int d = 0; d < w->rank; d++)
            s.dim[d] = w->dims[d];
        int t = nn_graph_add_const(im->g, src->name, NN_DTYPE_F32, &s, w->data);
        if (t < 0) return t;
        v->tensor = t;
        return t;
    }
    if (v->kind == VAL_I32)
        return base_error_set(BASE_ERR_UNSUPPORTED, "node %s (%s): integer input %s used as data",
                              n->name, n->op, src->name);
    return base_error_set(BASE_ERR_FORMAT, "node %s (%s): input %s has no value", n->name, n->op,
                          src->name);
}

/* Input i as a small integer vector (from an int32 constant or a shape computation). */
static int input_ints(importer *im, const tf_node *n, int i, int32_t *out, int cap, int *count)
{
    if (i >= n->n_inputs)
        return base_error_set(BASE_ERR_FORMAT, "node %s (%s): missing input %d", n->name, n->op, i);
    tf_node *src = &im->nodes[n->inputs[i]];
    tf_value *v = &src->val;
    if (v->kind == VAL_I32) {
        if (v->n > cap)
            return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: %d integers", n->name, v->n);
        memcpy(out, v->v, (size_t)v->n * sizeof *out);
        *count = v->n;
        return 0;
    }
    if (v->kind == VAL_WEIGHT && v->weight->dtype == NN_DTYPE_I32) {
        if ((int)v->weight->count > cap)
            return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: constant %s has %zu integers",
                                  n->name, src->name, v->weight->count);
        memcpy(out, v->weight->data, v->weight->count * sizeof *out);
        *count = (int)v->weight->count;
        return 0;
    }
    return base_error_set(BASE_ERR_UNSUPPORTED,
                          "node %s (%s): input %s must be a constant integer tensor", n->name,
                          n->op, src->name);
}

static const nn_shape *tensor_shape(importer *im, int t)
{
    return &im->g->tensors[t].shape;
}

static int set_tensor(tf_node *n, int t)
{
    if (t < 0) return t;
    n->val.kind = VAL_TENSOR;
    n->val.tensor = t;
    return 0;
}

static int add(importer *im, tf_node *n, nn_node *proto)
{
    proto->name = (char *)n->name;
    return set_tensor(n, nn_graph_add_node(im->g, proto));
}

static int add_shaped(importer *im, tf_node *n, nn_node *proto, const nn_shape *s)
{
    proto->name = (char *)n->name;
    return set_tensor(n, nn_graph_add_node_shaped(im->g, proto, s));
}

/* TF's SAME padding: the output is ceil(in / stride); extra padding goes after. */
static void same_pad(int64_t in, int k, int stride, int dil, int *before, int *after)
{
    int64_t out = (in + stride - 1) / stride;
    int64_t eff = (int64_t)(k - 1) * dil + 1;
    int64_t total = (out - 1) * stride + eff - in;
    if (total < 0) total = 0;
    *before = (int)(total / 2);
    *after = (int)(total - total / 2);
}

static int resolve_padding(const tf_node *n, int64_t h, int64_t w, int kh, int kw, int sh, int sw,
                           int dh, int dw, int pads[4])
{
    char pad[32];
    attr_str(n, "padding", pad, sizeof pad);
    if (!strcmp(pad, "VALID")) {
        pads[0] = pads[1] = pads[2] = pads[3] = 0;
    } else if (!strcmp(pad, "SAME")) {
        same_pad(h, kh, sh, dh, &pads[0], &pads[1]);
        same_pad(w, kw, sw, dw, &pads[2], &pads[3]);
    } else if (!strcmp(pad, "EXPLICIT")) {
        long long e[8];
        if (attr_int_list(n, "explicit_paddings", e, 8) != 8)
            return base_error_set(BASE_ERR_FORMAT, "node %s: explicit_paddings", n->name);
        pads[0] = (int)e[2], pads[1] = (int)e[3], pads[2] = (int)e[4], pads[3] = (int)e[5];
    } else {
        return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: padding '%s'", n->name, pad);
    }
    return 0;
}

static int check_nhwc(const tf_node *n)
{
    char fmt[16];
    attr_str(n, "data_format", fmt, sizeof fmt);
    if (fmt[0] && strcmp(fmt, "NHWC") != 0)
        return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: data_format %s (only NHWC)", n->name,
                              fmt);
    return 0;
}

/* strides/ksize/dilations lists are [1, h, w, 1]. */
static int hw_list(const tf_node *n, const char *key, int def, int *h, int *w)
{
    long long v[4];
    int k = attr_int_list(n, key, v, 4);
    if (k <= 0) {
        *h = *w = def;
        return 0;
    }
    if (k != 4 || v[0] != 1 || v[3] != 1 || v[1] < 1 || v[2] < 1 || v[1] > 4096 || v[2] > 4096)
        return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: %s must be [1,h,w,1]", n->name, key);
    *h = (int)v[1];
    *w = (int)v[2];
    return 0;
}

/* Parses fused_ops after the op itself: BiasAdd and one activation. */
static int fused_activation(importer *im, const tf_node *n, int first_extra, nn_node *p,
                            nn_act *act, int *bias_out, int *slope_out)
{
    char ops[4][32];
    int k = attr_str_list(n, "fused_ops", ops, 4);
    int arg = first_extra;
    *bias_out = -1;
    *slope_out = -1;
    act->kind = NN_ACT_NONE;
    for (int i = 0; i < k; i++) {
        if (!strcmp(ops[i], "BiasAdd")) {
            int t = input_tensor(im, n, arg++);
            if (t < 0) return t;
            *bias_out = t;
        } else if (!strcmp(ops[i], "Relu")) {
            *act = (nn_act){NN_ACT_CLAMP, 0.0f, INFINITY, 0};
        } else if (!strcmp(ops[i], "Relu6")) {
            *act = (nn_act){NN_ACT_CLAMP, 0.0f, 6.0f, 0};
        } else if (!strcmp(ops[i], "Prelu")) {
            int t = input_tensor(im, n, arg++);
            if (t < 0) return t;
            *slope_out = t;
            act->kind = NN_ACT_PRELU;
        } else if (!strcmp(ops[i], "LeakyRelu")) {
            act->kind = NN_ACT_LEAKY;
            act->alpha = (float)attr_float(n, "leakyrelu_alpha", 0.2);
        } else {
            return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: fused op %s", n->name, ops[i]);
        }
    }
    (void)p;
    return 0;
}

static int import_conv(importer *im, tf_node *n, int depthwise, int fused)
{
    int rc = check_nhwc(n);
    if (rc) return rc;
    int x = input_tensor(im, n, 0);
    if (x < 0) return x;
    int w = input_tensor(im, n, 1);
    if (w < 0) return w;
    const nn_shape *xs = tensor_shape(im, x), *ws = tensor_shape(im, w);
    if (xs->rank != 4 || ws->rank != 4)
        return base_error_set(BASE_ERR_FORMAT, "node %s: convolution needs rank-4 input and filter",
                              n->name);
    nn_node p = {.op = NN_OP_CONV2D, .n_inputs = 4};
    nn_conv_params *c = &p.p.conv;
    c->depthwise = depthwise;
    c->kernel_h = (int)ws->dim[0];
    c->kernel_w = (int)ws->dim[1];
    if ((rc = hw_list(n, "strides", 1, &c->stride_h, &c->stride_w)) ||
        (rc = hw_list(n, "dilations", 1, &c->dilation_h, &c->dilation_w)))
        return rc;
    int pads[4];
    rc = resolve_padding(n, xs->dim[1], xs->dim[2], c->kernel_h, c->kernel_w, c->stride_h,
                         c->stride_w, c->dilation_h, c->dilation_w, pads);
    if (rc) return rc;
    c->pad_top = pads[0], c->pad_bottom = pads[1], c->pad_left = pads[2], c->pad_right = pads[3];
    int bias = -1, slope = -1;
    if (fused && (rc = fused_activation(im, n, 2, &p, &c->act, &bias, &slope))) return rc;
    p.inputs[0] = x, p.inputs[1] = w, p.inputs[2] = bias, p.inputs[3] = slope;
    p.n_inputs = slope >= 0 ? 4 : 3;
    return add(im, n, &p);
}

static int import_matmul(importer *im, tf_node *n, int fused)
{
    if (attr_bool(n, "transpose_a", 0))
        return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: MatMul with transpose_a", n->name);
    int x = input_tensor(im, n, 0);
    if (x < 0) return x;
    int w = input_tensor(im, n, 1);
    if (w < 0) return w;
    if (!nn_tensor_is_const(im->g, w))
        return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: MatMul of two computed tensors",
                              n->name);
    if (attr_bool(n, "transpose_b", 0)) {
        /* Store [K,M]: transpose the [M,K] constant once at import. */
        const nn_tensor *wt = &im->g->tensors[w];
        if (wt->shape.rank != 2)
            return base_error_set(BASE_ERR_FORMAT, "node %s: weights rank", n->name);
        int64_t m = wt->shape.dim[0], k = wt->shape.dim[1];
        float *tr = malloc((size_t)(m * k) * sizeof *tr);
        if (!tr) return base_error_set(BASE_ERR_NOMEM, "node %s", n->name);
        const float *src = wt->data;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < k; j++)
                tr[j * m + i] = src[i * k + j];
        char name[600];
        snprintf(name, sizeof name, "%s/transposed_weights", n->name);
        nn_shape s = {2, {k, m}};
        w = nn_graph_add_const(im->g, name, NN_DTYPE_F32, &s, tr);
        free(tr);
        if (w < 0) return w;
    }
    nn_node p = {.op = NN_OP_FULLY_CONNECTED, .n_inputs = 4};
    int bias = -1, slope = -1, rc;
    if (fused && (rc = fused_activation(im, n, 2, &p, &p.p.fc.act, &bias, &slope))) return rc;
    p.inputs[0] = x, p.inputs[1] = w, p.inputs[2] = bias, p.inputs[3] = slope;
    p.n_inputs = slope >= 0 ? 4 : 3;
    return add(im, n, &p);
}

/* Constant folding: a node whose inputs are all constants is computed now, with the reference
 * backend, and becomes a constant itself. */
static int fold_constant(importer *im, tf_node *n, const nn_node *proto)
{
    nn_shape s;
    int rc = nn_infer_shape(im->g, proto, &s);
    if (rc) return rc;
    int64_t count = nn_shape_numel(&s, 1);
    float *data = base_aligned_alloc(64, (size_t)count * sizeof *data + 64);
    if (!data) return base_error_set(BASE_ERR_NOMEM, "node %s: folding", n->name);
    nn_view in[NN_MAX_NODE_INPUTS], out = {s, data};
    for (int i = 0; i < proto->n_inputs; i++) {
        in[i].shape = im->g->tensors[proto->inputs[i]].shape;
        in[i].data = im->g->tensors[proto->inputs[i]].data;
    }
    rc = nn_ref_run(im->g, proto, in, &out);
    if (!rc) rc = nn_graph_add_const(im->g, n->name, NN_DTYPE_F32, &s, data);
    base_aligned_free(data);
    return set_tensor(n, rc);
}

static int import_binary(importer *im, tf_node *n, nn_binary_kind kind)
{
    int a = input_tensor(im, n, 0);
    if (a < 0) return a;
    int b = input_tensor(im, n, 1);
    if (b < 0) return b;
    nn_node p = {.op = NN_OP_BINARY, .n_inputs = 2, .inputs = {a, b}};
    p.p.binary.kind = kind;
    p.name = (char *)n->name;
    if (nn_tensor_is_const(im->g, a) && nn_tensor_is_const(im->g, b))
        return fold_constant(im, n, &p);
    return add(im, n, &p);
}

static int import_unary(importer *im, tf_node *n, nn_unary_kind kind, float lo, float hi,
                        float alpha)
{
    int x = input_tensor(im, n, 0);
    if (x < 0) return x;
    nn_node p = {.op = NN_OP_UNARY, .n_inputs = 1, .inputs = {x}};
    p.p.unary = (nn_unary_params){kind, lo, hi, alpha};
    p.name = (char *)n->name;
    if (nn_tensor_is_const(im->g, x)) return fold_constant(im, n, &p);
    return add(im, n, &p);
}

static int import_pool(importer *im, tf_node *n, nn_pool_kind kind)
{
    int rc = check_nhwc(n);
    if (rc) return rc;
    int x = input_tensor(im, n, 0);
    if (x < 0) return x;
    const nn_shape *xs = tensor_shape(im, x);
    if (xs->rank != 4)
        return base_error_set(BASE_ERR_FORMAT, "node %s: pooling needs rank 4", n->name);
    nn_node p = {.op = NN_OP_POOL, .n_inputs = 1, .inputs = {x}};
    nn_pool_params *q = &p.p.pool;
    q->kind = kind;
    if ((rc = hw_list(n, "ksize", 1, &q->kernel_h, &q->kernel_w)) ||
        (rc = hw_list(n, "strides", 1, &q->stride_h, &q->stride_w)))
        return rc;
    int pads[4];
    rc = resolve_padding(n, xs->dim[1], xs->dim[2], q->kernel_h, q->kernel_w, q->stride_h,
                         q->stride_w, 1, 1, pads);
    if (rc) return rc;
    q->pad_top = pads[0], q->pad_bottom = pads[1], q->pad_left = pads[2], q->pad_right = pads[3];
    return add(im, n, &p);
}

static int norm_axis(const tf_node *n, int32_t a, int rank, int *out)
{
    if (a < 0) a += rank;
    if (a < 0 || a >= rank)
        return base_error_set(BASE_ERR_FORMAT, "node %s: axis out of range for rank %d", n->name,
                              rank);
    *out = a;
    return 0;
}

static int import_reduce(importer *im, tf_node *n, nn_reduce_kind kind)
{
    int x = input_tensor(im, n, 0);
    if (x < 0) return x;
    int32_t axes[NN_MAX_DIMS];
    int k, rc = input_ints(im, n, 1, axes, NN_MAX_DIMS, &k);
    if (rc) return rc;
    int rank = tensor_shape(im, x)->rank;
    nn_node p = {.op = NN_OP_REDUCE, .n_inputs = 1, .inputs = {x}};
    p.p.reduce.kind = kind;
    p.p.reduce.keep_dims = attr_bool(n, "keep_dims", 0);
    for (int i = 0; i < k; i++) {
        int a = 0;
        if ((rc = norm_axis(n, axes[i], rank, &a))) return rc;
        p.p.reduce.axes |= 1u << a;
    }
    return add(im, n, &p);
}

static int import_pad(importer *im, tf_node *n, int has_value)
{
    int x = input_tensor(im, n, 0);
    if (x < 0) return x;
    int32_t pads[NN_MAX_DIMS * 2];
    int k, rc = input_ints(im, n, 1, pads, NN_MAX_DIMS * 2, &k);
    if (rc) return rc;
    int rank = tensor_shape(im, x)->rank;
    if (k != rank * 2)
        return base_error_set(BASE_ERR_FORMAT, "node %s: paddings for rank %d", n->name, rank);
    nn_node p = {.op = NN_OP_PAD, .n_inputs = 1, .inputs = {x}};
    for (int i = 0; i < rank; i++)
        p.p.pad.before[i] = pads[2 * i], p.p.pad.after[i] = pads[2 * i + 1];
    if (has_value) {
        tf_value *v = input_val(im, n, 2);
        if (v->kind != VAL_WEIGHT || v->weight->count != 1 || v->weight->dtype != NN_DTYPE_F32)
            return base_error_set(BASE_ERR_UNSUPPORTED,
                                  "node %s: pad value must be a scalar constant", n->name);
        p.p.pad.value = *(const float *)v->weight->data;
    }
    return add(im, n, &p);
}

/* Reshape to `dims` (TF semantics: one -1 inferred; the batch symbol or a leading 1/-1 stands
 * for the batch). */
static int reshape_to(importer *im, tf_node *n, int x, const int32_t *dims, int k)
{
    const nn_shape *xs = tensor_shape(im, x);
    int64_t per = nn_shape_numel(xs, 1); /* elements per batch item */
    nn_shape s = {k, {0}};
    if (k < 1 || k > NN_MAX_DIMS)
        return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: reshape to rank %d", n->name, k);
    /* The batch must stay in front: a batch symbol, -1 or 1 there means "the batch". */
    if (dims[0] != I32_BATCH && dims[0] != -1 && dims[0] != 1)
        return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: reshape that moves the batch",
                              n->name);
    s.dim[0] = NN_BATCH;
    int64_t known = 1;
    int infer = -1;
    for (int i = 1; i < k; i++) {
        if (dims[i] == -1) {
            if (infer >= 0)
                return base_error_set(BASE_ERR_FORMAT, "node %s: two -1 in reshape", n->name);
            infer = i;
        } else if (dims[i] < 0) {
            return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: reshape dimension %d", n->name,
                                  dims[i]);
        } else {
            s.dim[i] = dims[i];
            known *= dims[i];
        }
    }
    if (infer >= 0) {
        if (known == 0 || per % known)
            return base_error_set(BASE_ERR_FORMAT, "node %s: cannot infer reshape", n->name);
        s.dim[infer] = per / known;
    }
    nn_node p = {.op = NN_OP_RESHAPE, .n_inputs = 1, .inputs = {x}};
    return add_shaped(im, n, &p, &s);
}

static int import_reshape(importer *im, tf_node *n)
{
    int x = input_tensor(im, n, 0);
    if (x < 0) return x;
    int32_t dims[NN_MAX_DIMS];
    int k, rc = input_ints(im, n, 1, dims, NN_MAX_DIMS, &k);
    if (rc) return rc;
    return reshape_to(im, n, x, dims, k);
}

static int import_squeeze(importer *im, tf_node *n)
{
    int x = input_tensor(im, n, 0);
    if (x < 0) return x;
    const nn_shape *xs = tensor_shape(im, x);
    long long sq[NN_MAX_DIMS];
    int k = attr_int_list(n, "squeeze_dims", sq, NN_MAX_DIMS);
    uint32_t mask = 0;
    for (int i = 0; i < k; i++) {
        int a = 0, rc = norm_axis(n, (int32_t)sq[i], xs->rank, &a);
        if (rc) return rc;
        mask |= 1u << a;
    }
    int32_t dims[NN_MAX_DIMS];
    int r = 0;
    for (int i = 0; i < xs->rank; i++) {
        int drop = k > 0 ? (int)((mask >> i) & 1) : (i > 0 && xs->dim[i] == 1);
        if (drop && (i == 0 || xs->dim[i] != 1))
            return base_error_set(BASE_ERR_FORMAT, "node %s: cannot squeeze axis %d", n->name, i);
        if (!drop) dims[r++] = i == 0 ? I32_BATCH : (int32_t)xs->dim[i];
    }
    return reshape_to(im, n, x, dims, r);
}

static int import_expand_dims(importer *im, tf_node *n)
{
    int x = input_tensor(im, n, 0);
    if (x < 0) return x;
    const nn_shape *xs = tensor_shape(im, x);
    int32_t ax[1];
    int k, rc = input_ints(im, n, 1, ax, 1, &k);
    if (rc) return rc;
    int a = ax[0] < 0 ? ax[0] + xs->rank + 1 : ax[0];
    if (k != 1 || a < 1 || a > xs->rank || xs->rank >= NN_MAX_DIMS)
        return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: expand_dims at axis %d", n->name,
                              ax[0]);
    int32_t dims[NN_MAX_DIMS];
    int r = 0;
    for (int i = 0; i < xs->rank; i++) {
        if (i == a) dims[r++] = 1;
        dims[r++] = i == 0 ? I32_BATCH : (int32_t)xs->dim[i];
    }
    if (a == xs->rank) dims[r++] = 1;
    return reshape_to(im, n, x, dims, r);
}

/* StridedSlice with TF's mask semantics, resolved against a known shape. */
typedef struct slice_plan {
    int in_rank, out_rank;
    int64_t begin[NN_MAX_DIMS], stride[NN_MAX_DIMS], size[NN_MAX_DIMS];
    int64_t out_dims[NN_MAX_DIMS];
} slice_plan;

static int plan_slice(importer *im, tf_node *n, const int64_t *dims, int rank, slice_plan *sp)
{
    int32_t b[NN_MAX_DIMS], e[NN_MAX_DIMS], s[NN_MAX_DIMS];
    int kb, ke, ks, rc;
    if ((rc = input_ints(im, n, 1, b, NN_MAX_DIMS, &kb)) ||
        (rc = input_ints(im, n, 2, e, NN_MAX_DIMS, &ke)) ||
        (rc = input_ints(im, n, 3, s, NN_MAX_DIMS, &ks)))
        return rc;
    if (kb != ke || kb != ks || kb > rank)
        return base_error_set(BASE_ERR_FORMAT,
                              "node %s: strided slice specs of %d/%d/%d for rank %d", n->name, kb,
                              ke, ks, rank);
    long long bm = attr_int(n, "begin_mask", 0), em = attr_int(n, "end_mask", 0);
    long long sm = attr_int(n, "shrink_axis_mask", 0);
    if (attr_int(n, "ellipsis_mask", 0) || attr_int(n, "new_axis_mask", 0))
        return base_error_set(BASE_ERR_UNSUPPORTED,
                              "node %s: strided slice with ellipsis or new axes", n->name);
    sp->in_rank = rank;
    sp->out_rank = 0;
    for (int i = 0; i < rank; i++) {
        int64_t d = dims[i], st = 1, lo = 0, hi = d, size;
        if (i < kb) {
            st = s[i];
            if (st == 0) return base_error_set(BASE_ERR_FORMAT, "node %s: slice stride 0", n->name);
            if (d == NN_BATCH) {
                /* The batch axis may only be taken whole. */
                if (!((bm >> i) & 1 && (em >> i) & 1 && st == 1) &&
                    !(b[i] == 0 && e[i] == 0 && (em >> i) & 1))
                    return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: slice of the batch",
                                          n->name);
                sp->begin[i] = 0, sp->stride[i] = 1, sp->size[i] = NN_BATCH;
                sp->out_dims[sp->out_rank++] = NN_BATCH;
                continue;
            }
            if ((sm >> i) & 1) {
                int64_t at = b[i] < 0 ? b[i] + d : b[i];
                if (at < 0 || at >= d)
                    return base_error_set(BASE_ERR_FORMAT, "node %s: slice index %d out of range",
                                          n->name, b[i]);
                sp->begin[i] = at, sp->stride[i] = 1, sp->size[i] = 1;
                continue; /* dropped from the output */
            }
            if (st > 0) {
                lo = (bm >> i) & 1 ? 0 : (b[i] < 0 ? b[i] + d : b[i]);
                hi = (em >> i) & 1 ? d : (e[i] < 0 ? e[i] + d : e[i]);
                lo = lo < 0 ? 0 : lo > d ? d : lo;
                hi = hi < 0 ? 0 : hi > d ? d : hi;
                size = hi > lo ? (hi - lo + st - 1) / st : 0;
            } else {
                lo = (bm >> i) & 1 ? d - 1 : (b[i] < 0 ? b[i] + d : b[i]);
                hi = (em >> i) & 1 ? -1 : (e[i] < 0 ? e[i] + d : e[i]);
                lo = lo < -1 ? -1 : lo > d - 1 ? d - 1 : lo;
                hi = hi < -1 ? -1 : hi > d - 1 ? d - 1 : hi;
                size = lo > hi ? (lo - hi + (-st) - 1) / (-st) : 0;
            }
        } else {
            if (d == NN_BATCH) {
                sp->begin[i] = 0, sp->stride[i] = 1, sp->size[i] = NN_BATCH;
                sp->out_dims[sp->out_rank++] = NN_BATCH;
                continue;
            }
            size = d;
        }
        if (size == 0) return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: empty slice", n->name);
        sp->begin[i] = lo, sp->stride[i] = st, sp->size[i] = size;
        sp->out_dims[sp->out_rank++] = size;
    }
    return 0;
}

static int import_strided_slice(importer *im, tf_node *n)
{
    tf_value *v = input_val(im, n, 0);
    slice_plan sp;
    int rc;
    if (v->kind == VAL_I32 || (v->kind == VAL_WEIGHT && v->weight->dtype == NN_DTYPE_I32)) {
        /* Shape arithmetic: slice a small integer vector now. */
        int32_t vals[NN_MAX_DIMS * 2];
        int k;
        if ((rc = input_ints(im, n, 0, vals, NN_MAX_DIMS * 2, &k))) return rc;
        int64_t d = k;
        if ((rc = plan_slice(im, n, &d, 1, &sp))) return rc;
        n->val.kind = VAL_I32;
        n->val.n = 0;
        n->val.rank = sp.out_rank;
        int64_t cnt = sp.out_rank ? sp.out_dims[0] : 1;
        for (int64_t i = 0; i < cnt; i++)
            n->val.v[n->val.n++] = vals[sp.begin[0] + i * sp.stride[0]];
        return 0;
    }
    int x = input_tensor(im, n, 0);
    if (x < 0) return x;
    const nn_shape *xs = tensor_shape(im, x);
    if ((rc = plan_slice(im, n, xs->dim, xs->rank, &sp))) return rc;
    nn_node p = {.op = NN_OP_SLICE, .n_inputs = 1, .inputs = {x}};
    p.p.slice.rank = xs->rank;
    for (int i = 0; i < xs->rank; i++)
        p.p.slice.begin[i] = sp.begin[i], p.p.slice.stride[i] = sp.stride[i],
        p.p.slice.size[i] = sp.size[i];
    nn_shape s = {sp.out_rank, {0}};
    for (int i = 0; i < sp.out_rank; i++)
        s.dim[i] = sp.out_dims[i];
    if (s.rank < 1 || s.dim[0] != NN_BATCH)
        return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: slice drops the batch", n->name);
    return add_shaped(im, n, &p, &s);
}

static int import_concat(importer *im, tf_node *n)
{
    int k = (int)attr_int(n, "N", n->n_inputs - 1);
    if (k < 1 || k + 1 != n->n_inputs || k > NN_MAX_NODE_INPUTS)
        return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: concat of %d inputs", n->name, k);
    int32_t ax[1];
    int c, rc = input_ints(im, n, k, ax, 1, &c);
    if (rc) return rc;
    tf_value *v0 = input_val(im, n, 0);
    if (v0->kind == VAL_I32 || (v0->kind == VAL_WEIGHT && v0->weight->dtype == NN_DTYPE_I32)) {
        n->val.kind = VAL_I32;
        n->val.rank = 1;
        n->val.n = 0;
        for (int i = 0; i < k; i++) {
            int32_t vals[NN_MAX_DIMS * 2];
            int cnt;
            if ((rc = input_ints(im, n, i, vals, NN_MAX_DIMS * 2, &cnt))) return rc;
            if (n->val.n + cnt > NN_MAX_DIMS * 2)
                return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: integer concat too long",
                                      n->name);
            memcpy(n->val.v + n->val.n, vals, (size_t)cnt * sizeof *vals);
            n->val.n += cnt;
        }
        return 0;
    }
    nn_node p = {.op = NN_OP_CONCAT, .n_inputs = k};
    for (int i = 0; i < k; i++) {
        int t = input_tensor(im, n, i);
        if (t < 0) return t;
        p.inputs[i] = t;
    }
    int a = 0;
    if ((rc = norm_axis(n, ax[0], tensor_shape(im, p.inputs[0])->rank, &a))) return rc;
    p.p.concat.axis = a;
    return add(im, n, &p);
}

static int import_pack(importer *im, tf_node *n)
{
    /* Only integer packing (building a shape from scalars) is needed by the models. */
    if (attr_int(n, "axis", 0) != 0)
        return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: Pack on axis %lld", n->name,
                              attr_int(n, "axis", 0));
    n->val.kind = VAL_I32;
    n->val.rank = 1;
    n->val.n = 0;
    for (int i = 0; i < n->n_inputs; i++) {
        int32_t v[2];
        int cnt, rc = input_ints(im, n, i, v, 1, &cnt);
        if (rc)
            return base_error_set(BASE_ERR_UNSUPPORTED,
                                  "node %s: Pack of non-scalar or non-integer inputs", n->name);
        if (cnt != 1 || n->val.n >= NN_MAX_DIMS * 2)
            return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: Pack of non-scalars", n->name);
        n->val.v[n->val.n++] = v[0];
    }
    return 0;
}

static int import_shape(importer *im, tf_node *n)
{
    int x = input_tensor(im, n, 0);
    if (x < 0) return x;
    const nn_shape *xs = tensor_shape(im, x);
    n->val.kind = VAL_I32;
    n->val.rank = 1;
    n->val.n = xs->rank;
    for (int i = 0; i < xs->rank; i++)
        n->val.v[i] = xs->dim[i] == NN_BATCH ? I32_BATCH : (int32_t)xs->dim[i];
    return 0;
}

static int import_resize(importer *im, tf_node *n)
{
    int x = input_tensor(im, n, 0);
    if (x < 0) return x;
    int32_t size[2];
    int k, rc = input_ints(im, n, 1, size, 2, &k);
    if (rc) return rc;
    if (k != 2)
        return base_error_set(BASE_ERR_FORMAT, "node %s: resize size needs 2 values", n->name);
    nn_node p = {.op = NN_OP_RESIZE_BILINEAR, .n_inputs = 1, .inputs = {x}};
    p.p.resize.out_h = size[0];
    p.p.resize.out_w = size[1];
    p.p.resize.align_corners = attr_bool(n, "align_corners", 0);
    p.p.resize.half_pixel_centers = attr_bool(n, "half_pixel_centers", 0);
    return add(im, n, &p);
}

static int import_node(importer *im, tf_node *n)
{
    const char *op = n->op;
    if (!strcmp(op, "Const")) {
        const nn_weight *w = nn_weights_find(im->weights, n->name);
        if (!w)
            return base_error_set(BASE_ERR_FORMAT,
                                  "constant %s is missing from the weights manifest", n->name);
        n->val.kind = VAL_WEIGHT;
        n->val.weight = w;
        n->val.tensor = -1;
        return 0;
    }
    if (!strcmp(op, "Placeholder")) {
        json_t *arr = json_object_get(json_object_get(attr(n, "shape"), "shape"), "dim");
        if (!json_is_array(arr) || json_array_size(arr) < 1 || json_array_size(arr) > NN_MAX_DIMS)
            return base_error_set(BASE_ERR_UNSUPPORTED,
                                  "input %s: needs a known shape of rank 1..%d", n->name,
                                  NN_MAX_DIMS);
        nn_shape s = {(int)json_array_size(arr), {0}};
        for (int i = 0; i < s.rank; i++) {
            json_t *sz = json_object_get(json_array_get(arr, (size_t)i), "size");
            long long v =
                json_is_string(sz) ? atoll(json_string_value(sz)) : json_integer_value(sz);
            if (i > 0 && v <= 0)
                return base_error_set(BASE_ERR_UNSUPPORTED, "input %s: dimension %d is not fixed",
                                      n->name, i);
            s.dim[i] = i == 0 ? NN_BATCH : v;
        }
        return set_tensor(n, nn_graph_add_input(im->g, n->name, &s));
    }
    if (!strcmp(op, "Identity") || !strcmp(op, "StopGradient") || !strcmp(op, "NoOp")) {
        if (n->n_inputs < 1)
            return base_error_set(BASE_ERR_FORMAT, "node %s: Identity without input", n->name);
        n->val = *input_val(im, n, 0);
        return 0;
    }
    if (!strcmp(op, "_FusedConv2D")) return import_conv(im, n, 0, 1);
    if (!strcmp(op, "Conv2D")) return import_conv(im, n, 0, 0);
    if (!strcmp(op, "DepthwiseConv2dNative")) return import_conv(im, n, 1, 0);
    if (!strcmp(op, "FusedDepthwiseConv2dNative")) return import_conv(im, n, 1, 1);
    if (!strcmp(op, "MatMul")) return import_matmul(im, n, 0);
    if (!strcmp(op, "_FusedMatMul")) return import_matmul(im, n, 1);
    if (!strcmp(op, "Add") || !strcmp(op, "AddV2") || !strcmp(op, "BiasAdd"))
        return import_binary(im, n, NN_BINARY_ADD);
    if (!strcmp(op, "Sub")) return import_binary(im, n, NN_BINARY_SUB);
    if (!strcmp(op, "Mul")) return import_binary(im, n, NN_BINARY_MUL);
    if (!strcmp(op, "RealDiv") || !strcmp(op, "Div")) return import_binary(im, n, NN_BINARY_DIV);
    if (!strcmp(op, "Minimum")) return import_binary(im, n, NN_BINARY_MIN);
    if (!strcmp(op, "Maximum")) return import_binary(im, n, NN_BINARY_MAX);
    if (!strcmp(op, "SquaredDifference")) return import_binary(im, n, NN_BINARY_SQUARED_DIFFERENCE);
    if (!strcmp(op, "Relu")) return import_unary(im, n, NN_UNARY_CLAMP, 0.0f, INFINITY, 0);
    if (!strcmp(op, "Relu6")) return import_unary(im, n, NN_UNARY_CLAMP, 0.0f, 6.0f, 0);
    if (!strcmp(op, "LeakyRelu"))
        return import_unary(im, n, NN_UNARY_LEAKY, 0, 0, (float)attr_float(n, "alpha", 0.2));
    if (!strcmp(op, "Elu")) return import_unary(im, n, NN_UNARY_ELU, 0, 0, 0);
    if (!strcmp(op, "Sigmoid")) return import_unary(im, n, NN_UNARY_SIGMOID, 0, 0, 0);
    if (!strcmp(op, "Tanh")) return import_unary(im, n, NN_UNARY_TANH, 0, 0, 0);
    if (!strcmp(op, "Rsqrt")) return import_unary(im, n, NN_UNARY_RSQRT, 0, 0, 0);
    if (!strcmp(op, "Sqrt")) return import_unary(im, n, NN_UNARY_SQRT, 0, 0, 0);
    if (!strcmp(op, "Abs")) return import_unary(im, n, NN_UNARY_ABS, 0, 0, 0);
    if (!strcmp(op, "Neg")) return import_unary(im, n, NN_UNARY_NEG, 0, 0, 0);
    if (!strcmp(op, "Square")) return import_unary(im, n, NN_UNARY_SQUARE, 0, 0, 0);
    if (!strcmp(op, "Exp")) return import_unary(im, n, NN_UNARY_EXP, 0, 0, 0);
    if (!strcmp(op, "Log")) return import_unary(im, n, NN_UNARY_LOG, 0, 0, 0);
    if (!strcmp(op, "Prelu")) {
        int x = input_tensor(im, n, 0), s = x < 0 ? x : input_tensor(im, n, 1);
        if (x < 0 || s < 0) return x < 0 ? x : s;
        nn_node p = {.op = NN_OP_PRELU, .n_inputs = 2, .inputs = {x, s}};
        return add(im, n, &p);
    }
    if (!strcmp(op, "MaxPool")) return import_pool(im, n, NN_POOL_MAX);
    if (!strcmp(op, "AvgPool")) return import_pool(im, n, NN_POOL_AVG);
    if (!strcmp(op, "Mean")) return import_reduce(im, n, NN_REDUCE_MEAN);
    if (!strcmp(op, "Sum")) return import_reduce(im, n, NN_REDUCE_SUM);
    if (!strcmp(op, "Max")) return import_reduce(im, n, NN_REDUCE_MAX);
    if (!strcmp(op, "Min")) return import_reduce(im, n, NN_REDUCE_MIN);
    if (!strcmp(op, "Pad")) return import_pad(im, n, 0);
    if (!strcmp(op, "PadV2")) return import_pad(im, n, 1);
    if (!strcmp(op, "Reshape")) return import_reshape(im, n);
    if (!strcmp(op, "Squeeze")) return import_squeeze(im, n);
    if (!strcmp(op, "ExpandDims")) return import_expand_dims(im, n);
    if (!strcmp(op, "ConcatV2")) return import_concat(im, n);
    if (!strcmp(op, "StridedSlice")) return import_strided_slice(im, n);
    if (!strcmp(op, "Pack")) return import_pack(im, n);
    if (!strcmp(op, "Shape")) return import_shape(im, n);
    if (!strcmp(op, "ResizeBilinear")) return import_resize(im, n);
    if (!strcmp(op, "DepthToSpace")) {
        int x = input_tensor(im, n, 0);
        if (x < 0) return x;
        int rc = check_nhwc(n);
        if (rc) return rc;
        nn_node p = {.op = NN_OP_DEPTH_TO_SPACE, .n_inputs = 1, .inputs = {x}};
        p.p.d2s.block = (int)attr_int(n, "block_size", 0);
        return add(im, n, &p);
    }
    if (!strcmp(op, "Softmax")) {
        int x = input_tensor(im, n, 0);
        if (x < 0) return x;
        nn_node p = {.op = NN_OP_SOFTMAX, .n_inputs = 1, .inputs = {x}};
        return add(im, n, &p);
    }
    return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: unknown op %s", n->name, op);
}

/* Depth-first post-order from the outputs; a node met again while on the stack is a cycle. */
static int visit(importer *im, int k, int *order, int *n_order, int depth)
{
    tf_node *n = &im->nodes[k];
    if (n->state == 2) return 0;
    if (n->state == 1)
        return base_error_set(BASE_ERR_FORMAT, "graph has a cycle through node %s", n->name);
    if (depth > MAX_GRAPH_DEPTH)
        return base_error_set(BASE_ERR_LIMIT, "graph deeper than %d at node %s", MAX_GRAPH_DEPTH,
                              n->name);
    n->state = 1;
    for (int i = 0; i < n->n_inputs; i++) {
        int rc = visit(im, n->inputs[i], order, n_order, depth + 1);
        if (rc) return rc;
    }
    n->state = 2;
    order[(*n_order)++] = k;
    return 0;
}

static int parse_nodes(importer *im, json_t *nodes)
{
    size_t count = json_array_size(nodes);
    if (count == 0) return base_error_set(BASE_ERR_FORMAT, "model has no nodes");
    if (count > MAX_TF_NODES)
        return base_error_set(BASE_ERR_LIMIT, "model has %zu nodes (limit %d)", count,
                              MAX_TF_NODES);
    im->nodes = calloc(count, sizeof *im->nodes);
    im->n_slots = 16;
    while (im->n_slots < count * 2)
        im->n_slots *= 2;
    im->slots = malloc(im->n_slots * sizeof *im->slots);
    if (!im->nodes || !im->slots) return base_error_set(BASE_ERR_NOMEM, "model: %zu nodes", count);
    for (size_t i = 0; i < im->n_slots; i++)
        im->slots[i] = -1;
    for (size_t i = 0; i < count; i++) {
        json_t *j = json_array_get(nodes, i);
        tf_node *n = &im->nodes[i];
        n->json = j;
        n->name = json_string_value(json_object_get(j, "name"));
        n->op = json_string_value(json_object_get(j, "op"));
        n->attr = json_object_get(j, "attr");
        n->val.tensor = -1;
        if (!n->name || !n->op || strlen(n->name) >= 512)
            return base_error_set(BASE_ERR_FORMAT, "node %zu has no name or op", i);
        im->n++;
        int rc = map_insert(im, (int)i);
        if (rc) return rc;
    }
    for (int i = 0; i < im->n; i++) {
        tf_node *n = &im->nodes[i];
        json_t *ins = json_object_get(n->json, "input");
        if (ins && !json_is_array(ins))
            return base_error_set(BASE_ERR_FORMAT, "node %s: input is not a list", n->name);
        for (size_t k = 0; k < json_array_size(ins); k++) {
            const char *s = json_string_value(json_array_get(ins, k));
            if (!s)
                return base_error_set(BASE_ERR_FORMAT, "node %s: input %zu is not a name", n->name,
                                      k);
            if (s[0] == '^') continue; /* control dependency */
            size_t len = strlen(s);
            const char *colon = strrchr(s, ':');
            if (colon) {
                if (strcmp(colon, ":0") != 0)
                    return base_error_set(BASE_ERR_UNSUPPORTED,
                                          "node %s: uses output %s of a multi-output op", n->name,
                                          s);
                len = (size_t)(colon - s);
            }
            int src = map_find(im, s, len);
            if (src < 0)
                return base_error_set(BASE_ERR_FORMAT, "node %s: input %s does not exist", n->name,
                                      s);
            if (n->n_inputs >= NN_MAX_NODE_INPUTS + 2)
                return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: more than %d inputs", n->name,
                                      NN_MAX_NODE_INPUTS + 1);
            n->inputs[n->n_inputs++] = src;
        }
    }
    return 0;
}

/* Output node names: the signature's outputs when present, else every node nobody consumes. */
static int find_outputs(importer *im, json_t *root, int *outs, int *n_outs)
{
    *n_outs = 0;
    json_t *sig = json_object_get(json_object_get(root, "signature"), "outputs");
    if (json_is_object(sig) && json_object_size(sig) > 0) {
        const char *key;
        json_t *v;
        json_object_foreach(sig, key, v)
        {
            const char *nm = json_string_value(json_object_get(v, "name"));
            if (!nm) nm = key;
            size_t len = strlen(nm);
            const char *colon = strrchr(nm, ':');
            if (colon) len = (size_t)(colon - nm);
            int k = map_find(im, nm, len);
            if (k < 0)
                return base_error_set(BASE_ERR_FORMAT, "signature output %s is not a node", nm);
            if (*n_outs >= 8) return base_error_set(BASE_ERR_LIMIT, "more than 8 outputs");
            outs[(*n_outs)++] = k;
        }
        return 0;
    }
    char *used = calloc((size_t)im->n, 1);
    if (!used) return base_error_set(BASE_ERR_NOMEM, "model");
    for (int i = 0; i < im->n; i++)
        for (int k = 0; k < im->nodes[i].n_inputs; k++)
            used[im->nodes[i].inputs[k]] = 1;
    for (int i = 0; i < im->n; i++) {
        const char *op = im->nodes[i].op;
        if (used[i] || !strcmp(op, "Const") || !strcmp(op, "Placeholder") || !strcmp(op, "NoOp"))
            continue;
        if (*n_outs >= 8) {
            free(used);
            return base_error_set(BASE_ERR_LIMIT, "more than 8 outputs");
        }
        outs[(*n_outs)++] = i;
    }
    free(used);
    if (*n_outs == 0) return base_error_set(BASE_ERR_FORMAT, "model has no outputs");
    return 0;
}

int nn_import_tfjs(json_t *root, const nn_weights *weights, nn_graph **out)
{
    *out = NULL;
    importer im = {0};
    im.weights = weights;
    int rc, *order = NULL;
    json_t *topo = json_object_get(root, "modelTopology");
    json_t *nodes = json_object_get(topo, "node");
    if (!json_is_array(nodes))
        return base_error_set(BASE_ERR_FORMAT, "model.json has no modelTopology.node list");
    im.g = nn_graph_new();
    if (!im.g) return base_error_set(BASE_ERR_NOMEM, "model");
    if ((rc = parse_nodes(&im, nodes))) goto done;
    order = malloc((size_t)im.n * sizeof *order);
    if (!order) {
        rc = base_error_set(BASE_ERR_NOMEM, "model");
        goto done;
    }
    /* A cycle anywhere makes the file invalid, even off the path to the outputs (and a cycle
     * through every sink would otherwise read as "no outputs"). */
    int n_order = 0;
    for (int i = 0; i < im.n; i++)
        if ((rc = visit(&im, i, order, &n_order, 0))) goto done;
    for (int i = 0; i < im.n; i++)
        im.nodes[i].state = 0;
    n_order = 0;
    int outs[8], n_outs;
    if ((rc = find_outputs(&im, root, outs, &n_outs))) goto done;
    for (int i = 0; i < n_outs; i++)
        if ((rc = visit(&im, outs[i], order, &n_order, 0))) goto done;
    /* Inputs are added in graph order so they are numbered as the model file lists them. */
    for (int i = 0; i < im.n; i++) {
        if (strcmp(im.nodes[i].op, "Placeholder") == 0 && im.nodes[i].state == 2)
            if ((rc = import_node(&im, &im.nodes[i]))) goto done;
    }
    for (int i = 0; i < n_order; i++) {
        tf_node *n = &im.nodes[order[i]];
        if (!strcmp(n->op, "Placeholder")) continue;
        if ((rc = import_node(&im, n))) goto done;
    }
    for (int i = 0; i < n_outs; i++) {
        tf_node *n = &im.nodes[outs[i]];
        if (n->val.kind != VAL_TENSOR || im.g->tensors[n->val.tensor].data) {
            rc = base_error_set(BASE_ERR_UNSUPPORTED, "output %s is not computed from the input",
                                n->name);
            goto done;
        }
        int t = n->val.tensor;
        /* Name the output tensor after the output node (an Identity may alias another tensor). */
        for (int k = 0; k < im.g->n_outputs; k++) {
            if (im.g->outputs[k] == t) {
                rc = base_error_set(BASE_ERR_UNSUPPORTED, "outputs %s and %s are the same tensor",
                                    n->name, im.g->tensors[t].name);
                goto done;
            }
        }
        char *nm = strdup(n->name);
        if (!nm) {
            rc = base_error_set(BASE_ERR_NOMEM, "model");
            goto done;
        }
        free(im.g->tensors[t].name);
        im.g->tensors[t].name = nm;
        if ((rc = nn_graph_mark_output(im.g, t))) goto done;
    }
    if (im.g->n_inputs == 0) {
        rc = base_error_set(BASE_ERR_FORMAT, "model has no input (Placeholder)");
        goto done;
    }
    *out = im.g;
    im.g = NULL;
    rc = 0;
done:
    free(order);
    free(im.nodes);
    free(im.slots);
    nn_graph_free(im.g);
    return rc;
}
