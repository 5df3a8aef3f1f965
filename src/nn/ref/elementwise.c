/*
 * Element-wise ops: binary ops with numpy broadcasting, unary ops, PReLU and softmax.
 * All may run in place (out->data == in[0].data) when the output has the first input's shape.
 */
#include "nn/ref/ref.h"

#include <math.h>

/* PReLU runs through the binary broadcasting loop as one more kind. */
enum { KIND_PRELU = 100 };

/* Right-aligns `s` against `out` (numpy broadcasting) and returns its strides in out's
 * coordinates: 0 along dims it broadcasts. */
static void broadcast_strides(const nn_shape *s, const nn_shape *out, int64_t st[NN_MAX_DIMS])
{
    int64_t own[NN_MAX_DIMS];
    nn_ref_strides(s, own);
    const int lead = out->rank - s->rank;
    for (int i = 0; i < out->rank; i++) {
        const int j = i - lead;
        st[i] = j < 0 || s->dim[j] == 1 ? 0 : own[j];
    }
}

/* Whether `out` is exactly the numpy broadcast of a and b. */
static int broadcast_ok(const nn_shape *a, const nn_shape *b, const nn_shape *out)
{
    const int rank = a->rank > b->rank ? a->rank : b->rank;
    if (out->rank != rank) return 0;
    for (int i = 0; i < rank; i++) {
        const int ia = i - (rank - a->rank), ib = i - (rank - b->rank);
        const int64_t da = ia < 0 ? 1 : a->dim[ia], db = ib < 0 ? 1 : b->dim[ib];
        if (da != db && da != 1 && db != 1) return 0;
        if (out->dim[i] != (da == 1 ? db : da)) return 0;
    }
    return 1;
}

/* One output row of `n` elements from a (stride sa) and b (stride sb). */
static void binary_row(int kind, const float *a, int64_t sa, const float *b, int64_t sb, float *o,
                       int64_t n)
{
#define ROW(expr)                                                                                  \
    for (int64_t i = 0; i < n; i++) {                                                              \
        const float x = a[i * sa], y = b[i * sb];                                                  \
        o[i] = (expr);                                                                             \
    }                                                                                              \
    break
    switch (kind) {
    case NN_BINARY_ADD: ROW(x + y);
    case NN_BINARY_SUB: ROW(x - y);
    case NN_BINARY_MUL: ROW(x * y);
    case NN_BINARY_DIV: ROW(x / y);
    /* TF's Minimum/Maximum: a plain comparison, y when they compare equal or unordered. */
    case NN_BINARY_MIN: ROW(x < y ? x : y);
    case NN_BINARY_MAX: ROW(x > y ? x : y);
    case NN_BINARY_SQUARED_DIFFERENCE: ROW((x - y) * (x - y));
    case KIND_PRELU: ROW(x >= 0.0f ? x : y * x);
    }
#undef ROW
}

static void broadcast_run(int kind, const nn_view *a, const nn_view *b, nn_view *out,
                          const nn_ref_act *act)
{
    const nn_shape *os = &out->shape;
    if (os->rank == 0) {
        binary_row(kind, a->data, 0, b->data, 0, out->data, 1);
        if (act) nn_ref_act_row(act, out->data, 1);
        return;
    }
    int64_t sa[NN_MAX_DIMS], sb[NN_MAX_DIMS];
    broadcast_strides(&a->shape, os, sa);
    broadcast_strides(&b->shape, os, sb);
    const int last = os->rank - 1;
    const int64_t inner = os->dim[last];
    const int64_t rows = inner ? nn_ref_numel(os) / inner : 0;
    for (int64_t r = 0; r < rows; r++) {
        /* Decompose the row index over the outer dims. */
        int64_t rem = r, oa = 0, ob = 0;
        for (int i = last - 1; i >= 0; i--) {
            const int64_t idx = rem % os->dim[i];
            rem /= os->dim[i];
            oa += idx * sa[i];
            ob += idx * sb[i];
        }
        float *o = out->data + r * inner;
        binary_row(kind, a->data + oa, sa[last], b->data + ob, sb[last], o, inner);
        if (act) nn_ref_act_row(act, o, inner);
    }
}

/* a, b: any shapes that broadcast (numpy rules, up to 6 dims) -> broadcast shape;
 * then the optional fused CLAMP (or LEAKY). */
int nn_ref_binary(const nn_node *node, const nn_view *in, nn_view *out)
{
    const nn_binary_params *p = &node->p.binary;
    int rc = nn_ref_check_inputs(node, in, 2);
    if (rc < 0) return rc;
    if ((unsigned)p->kind > NN_BINARY_SQUARED_DIFFERENCE)
        return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: unknown binary kind %d",
                              nn_ref_node_name(node), (int)p->kind);
    if (!broadcast_ok(&in[0].shape, &in[1].shape, &out->shape))
        return base_error_set(BASE_ERR_INVALID, "node %s: binary: %s and %s do not broadcast to %s",
                              nn_ref_node_name(node), NN_REF_SHAPE(&in[0].shape),
                              NN_REF_SHAPE(&in[1].shape), NN_REF_SHAPE(&out->shape));
    nn_ref_act act;
    if ((rc = nn_ref_act_resolve(node, &p->act, in, 2, 0, 0, &act)) < 0) return rc;
    broadcast_run((int)p->kind, &in[0], &in[1], out, p->act.kind == NN_ACT_NONE ? NULL : &act);
    return 0;
}

/* x: [...], slope: broadcastable to x (numpy rules) -> [...] */
int nn_ref_prelu(const nn_node *node, const nn_view *in, nn_view *out)
{
    int rc = nn_ref_check_inputs(node, in, 2);
    if (rc < 0) return rc;
    if (!nn_ref_shape_equal(&in[0].shape, &out->shape) ||
        !broadcast_ok(&in[0].shape, &in[1].shape, &out->shape))
        return base_error_set(BASE_ERR_INVALID, "node %s: prelu: x %s slope %s -> %s",
                              nn_ref_node_name(node), NN_REF_SHAPE(&in[0].shape),
                              NN_REF_SHAPE(&in[1].shape), NN_REF_SHAPE(&out->shape));
    broadcast_run(KIND_PRELU, &in[0], &in[1], out, NULL);
    return 0;
}

/* x: [...] -> same shape. TensorFlow's definitions: Sigmoid 1/(1+exp(-x)), Rsqrt 1/sqrt(x),
 * Elu x < 0 ? exp(x)-1 : x, LeakyRelu (as graph.h) x >= 0 ? x : alpha*x. */
int nn_ref_unary(const nn_node *node, const nn_view *in, nn_view *out)
{
    const nn_unary_params *p = &node->p.unary;
    int rc = nn_ref_check_inputs(node, in, 1);
    if (rc < 0) return rc;
    const int64_t n = nn_ref_numel(&in[0].shape);
    if (nn_ref_numel(&out->shape) != n)
        return base_error_set(BASE_ERR_INVALID, "node %s: unary: %s -> %s", nn_ref_node_name(node),
                              NN_REF_SHAPE(&in[0].shape), NN_REF_SHAPE(&out->shape));
    const float *x = in[0].data;
    float *y = out->data;
    const float lo = p->lo, hi = p->hi, alpha = p->alpha;
#define MAP(expr)                                                                                  \
    for (int64_t i = 0; i < n; i++) {                                                              \
        const float v = x[i];                                                                      \
        y[i] = (expr);                                                                             \
    }                                                                                              \
    return 0
    switch (p->kind) {
    case NN_UNARY_IDENTITY: MAP(v);
    case NN_UNARY_ABS: MAP(fabsf(v));
    case NN_UNARY_NEG: MAP(-v);
    case NN_UNARY_SQUARE: MAP(v * v);
    case NN_UNARY_SQRT: MAP(sqrtf(v));
    case NN_UNARY_RSQRT: MAP(1.0f / sqrtf(v));
    case NN_UNARY_EXP: MAP(expf(v));
    case NN_UNARY_LOG: MAP(logf(v));
    case NN_UNARY_SIGMOID: MAP(1.0f / (1.0f + expf(-v)));
    case NN_UNARY_TANH: MAP(tanhf(v));
    case NN_UNARY_CLAMP: MAP(v < lo ? lo : (v > hi ? hi : v));
    case NN_UNARY_LEAKY: MAP(v >= 0.0f ? v : alpha * v);
    case NN_UNARY_ELU: MAP(v < 0.0f ? expf(v) - 1.0f : v);
    }
#undef MAP
    return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: unknown unary kind %d",
                          nn_ref_node_name(node), (int)p->kind);
}

/* x: [..., C] -> same shape, softmax over the last axis: exp(x - max) / sum. */
int nn_ref_softmax(const nn_node *node, const nn_view *in, nn_view *out)
{
    int rc = nn_ref_check_inputs(node, in, 1);
    if (rc < 0) return rc;
    if (in[0].shape.rank < 1 || !nn_ref_shape_equal(&in[0].shape, &out->shape))
        return base_error_set(BASE_ERR_INVALID, "node %s: softmax: %s -> %s",
                              nn_ref_node_name(node), NN_REF_SHAPE(&in[0].shape),
                              NN_REF_SHAPE(&out->shape));
    const int64_t C = in[0].shape.dim[in[0].shape.rank - 1];
    const int64_t rows = C ? nn_ref_numel(&in[0].shape) / C : 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *x = in[0].data + r * C;
        float *y = out->data + r * C;
        float max = x[0];
        for (int64_t c = 1; c < C; c++)
            if (x[c] > max) max = x[c];
        float sum = 0.0f;
        for (int64_t c = 0; c < C; c++) {
            y[c] = expf(x[c] - max);
            sum += y[c];
        }
        for (int64_t c = 0; c < C; c++)
            y[c] /= sum;
    }
    return 0;
}
