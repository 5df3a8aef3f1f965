/*
 * XNNPACK backend: runs the ops that XNNPACK implements with exactly the semantics of the
 * reference backend (graph.h), through XNNPACK's operator API.
 *
 * One nn_xnn_op holds up to NN_XNN_MAX_OPS XNNPACK operators that run in sequence: a
 * convolution followed by its fused Leaky ReLU or PReLU (applied in place on the output), a
 * binary op followed by its clamp, or one copy per input of a concatenation. Operators are
 * created once (weights packed into XNNPACK's own buffers, so our repacked copies are freed at
 * once), set up whenever the batch size or the buffers change, and run many times.
 *
 * Anything whose semantics XNNPACK does not reproduce exactly is refused by nn_xnn_supports()
 * and left to the reference backend.
 */
#include "nn/graph.h"

#include "base/base.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xnnpack.h>

#if NN_MAX_DIMS > XNN_MAX_TENSOR_DIMS
#error "XNNPACK cannot take tensors of rank NN_MAX_DIMS"
#endif
#if NN_XNN_EXTRA_BYTES < XNN_EXTRA_BYTES
#error "NN_XNN_EXTRA_BYTES must cover XNN_EXTRA_BYTES"
#endif

/* Room for one operator per weight slice (see slice_width) plus the fused activation. */
#define NN_XNN_MAX_SLICES 32
#define NN_XNN_MAX_OPS (NN_XNN_MAX_SLICES + NN_MAX_NODE_INPUTS)

/* What runs after the main operator, in place on the output. */
typedef enum xnn_post {
    XNN_POST_NONE,
    XNN_POST_LEAKY, /* leaky_relu_nc_f32, channels 1 */
    XNN_POST_PRELU, /* prelu_nc_f32, channels = last dim */
    XNN_POST_CLAMP, /* clamp_nc_f32, channels 1 */
} xnn_post;

struct nn_xnn_op {
    char *name; /* the node's name, for errors at run time */
    nn_op kind;
    int n_ops;
    xnn_operator_t ops[NN_XNN_MAX_OPS];
    xnn_post post;
    size_t post_channels;
    /* A convolution or fully connected op split by output channels: n_slices operators, slice
     * j writing channels [j * slice, ...) of every output pixel. */
    int n_slices;
    size_t slice;
    /* Copies of constant data inputs with NN_XNN_EXTRA_BYTES of slack (graph constants have
     * none, and XNNPACK reads past the end of its inputs). */
    float *const_in[NN_MAX_NODE_INPUTS];
};

/* --- helpers -------------------------------------------------------------------------------- */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static enum xnn_status init_status = xnn_status_uninitialized;

static void init_xnnpack(void)
{
    init_status = xnn_initialize(NULL);
}

int nn_xnn_init(void)
{
    pthread_once(&init_once, init_xnnpack);
    if (init_status != xnn_status_success)
        return base_error_set(BASE_ERR_BACKEND, "xnnpack initialize failed: status %d",
                              (int)init_status);
    return 0;
}

static int xnn_fail(const char *what, const char *node, enum xnn_status st)
{
    return base_error_set(BASE_ERR_BACKEND, "xnnpack %s failed for node %s: status %d", what, node,
                          (int)st);
}

static const nn_shape *tshape(const nn_graph *g, int t)
{
    return &g->tensors[t].shape;
}

/* Whether node input i is present. */
static int has_input(const nn_node *n, int i)
{
    return i < n->n_inputs && n->inputs[i] >= 0;
}

/* Product of dims [from, to) of a shape whose batch (if any) counts as `batch`. */
static size_t dims_product(const nn_shape *s, int from, int to, int64_t batch)
{
    size_t p = 1;
    for (int i = from; i < to; i++)
        p *= (size_t)(s->dim[i] == NN_BATCH ? batch : s->dim[i]);
    return p;
}

/* Every non-batch dim of the tensor is at least 1 (XNNPACK rejects empty channels). */
static int nonempty(const nn_graph *g, int t)
{
    const nn_shape *s = tshape(g, t);
    for (int i = 0; i < s->rank; i++)
        if (s->dim[i] != NN_BATCH && s->dim[i] < 1) return 0;
    return 1;
}

static int is_const(const nn_graph *g, const nn_node *n, int i)
{
    return has_input(n, i) && nn_tensor_is_const(g, n->inputs[i]);
}

/* A fused activation XNNPACK reproduces: clamp with a proper range, finite leaky slope,
 * constant PReLU slope with one value per channel (graph.c checks the count). */
static int act_supported(const nn_graph *g, const nn_node *n, const nn_act *act, int64_t channels)
{
    switch (act->kind) {
    case NN_ACT_NONE: return 1;
    case NN_ACT_CLAMP: return !isnan(act->lo) && !isnan(act->hi) && act->lo < act->hi;
    case NN_ACT_LEAKY: return isfinite(act->alpha);
    case NN_ACT_PRELU: {
        if (!is_const(g, n, 3) || n->n_inputs != 4) return 0;
        const nn_shape *s = tshape(g, n->inputs[3]);
        int64_t cnt = nn_shape_numel(s, 1);
        return cnt == 1 || (cnt == channels && s->rank >= 1 && s->dim[s->rank - 1] == cnt);
    }
    }
    return 0;
}

/* PReLU slope for an x of `channels` in its last dim: a constant whose non-trailing dims are 1
 * and whose last dim is `channels` (or a single value, broadcast). */
static int prelu_slope_ok(const nn_graph *g, int t, int x_rank, int64_t channels)
{
    if (!nn_tensor_is_const(g, t)) return 0;
    const nn_shape *s = tshape(g, t);
    if (s->rank > x_rank) return 0;
    int64_t numel = nn_shape_numel(s, 1);
    if (numel == 1) return 1;
    if (s->rank < 1 || s->dim[s->rank - 1] != channels) return 0;
    return numel == channels;
}

/* The axes a strided slice actually restricts; -1 when it is not a contiguous block per outer
 * index (more than one restricted axis, a non-unit stride, or an empty result). */
static int slice_axis(const nn_shape *x, const nn_slice_params *p, int *axis)
{
    *axis = -1;
    if (p->rank != x->rank) return -1;
    for (int i = 1; i < p->rank; i++) {
        int64_t d = x->dim[i];
        if (p->size[i] < 1) return -1;
        int identity = p->begin[i] == 0 && p->size[i] == d && (p->stride[i] == 1 || d == 1);
        if (identity) continue;
        if (p->stride[i] != 1 && p->size[i] != 1) return -1;
        if (*axis >= 0) return -1;
        *axis = i;
    }
    return 0;
}

/* --- supports ------------------------------------------------------------------------------- */

int nn_xnn_supports(const nn_graph *g, const nn_node *n)
{
    if (n->n_inputs < 1 || n->inputs[0] < 0) return 0;
    for (int i = 0; i < n->n_inputs; i++) {
        if (n->inputs[i] < 0) continue;
        if (g->tensors[n->inputs[i]].dtype != NN_DTYPE_F32 || !nonempty(g, n->inputs[i])) return 0;
    }
    if (!nonempty(g, n->output)) return 0;
    const nn_shape *x = tshape(g, n->inputs[0]);
    const nn_shape *y = tshape(g, n->output);
    if (x->rank > XNN_MAX_TENSOR_DIMS || y->rank > XNN_MAX_TENSOR_DIMS) return 0;

    switch (n->op) {
    case NN_OP_CONV2D: {
        const nn_conv_params *p = &n->p.conv;
        if (x->rank != 4 || !is_const(g, n, 1) || p->residual || p->pool || p->post_affine)
            return 0;
        if (has_input(n, 2) && !is_const(g, n, 2)) return 0;
        if (p->kernel_h < 1 || p->kernel_w < 1 || p->stride_h < 1 || p->stride_w < 1 ||
            p->dilation_h < 1 || p->dilation_w < 1)
            return 0;
        if (p->pad_top < 0 || p->pad_bottom < 0 || p->pad_left < 0 || p->pad_right < 0) return 0;
        if (p->act.kind != NN_ACT_PRELU && n->n_inputs > 3) return 0;
        const nn_shape *w = tshape(g, n->inputs[1]);
        return act_supported(g, n, &p->act, p->depthwise ? w->dim[2] * w->dim[3] : w->dim[3]);
    }
    case NN_OP_FULLY_CONNECTED:
        if (x->rank != 2 || !is_const(g, n, 1)) return 0;
        if (has_input(n, 2) && !is_const(g, n, 2)) return 0;
        if (n->p.fc.act.kind != NN_ACT_PRELU && n->n_inputs > 3) return 0;
        return act_supported(g, n, &n->p.fc.act, tshape(g, n->inputs[1])->dim[1]);
    case NN_OP_BINARY: {
        const nn_binary_params *p = &n->p.binary;
        if (n->n_inputs != 2 || tshape(g, n->inputs[1])->rank > XNN_MAX_TENSOR_DIMS) return 0;
        if (p->kind > NN_BINARY_SQUARED_DIFFERENCE) return 0;
        /* The reference backend also takes a fused LEAKY here; PRELU has no slope input. */
        if (p->act.kind == NN_ACT_PRELU) return 0;
        return act_supported(g, n, &p->act, 0);
    }
    case NN_OP_UNARY: {
        const nn_unary_params *p = &n->p.unary;
        switch (p->kind) {
        case NN_UNARY_IDENTITY:
        case NN_UNARY_ABS:
        case NN_UNARY_NEG:
        case NN_UNARY_SQUARE:
        case NN_UNARY_SQRT:
        case NN_UNARY_SIGMOID: return 1;
        case NN_UNARY_CLAMP: return !isnan(p->lo) && !isnan(p->hi) && p->lo < p->hi;
        case NN_UNARY_LEAKY: return isfinite(p->alpha);
        case NN_UNARY_ELU: return 1;
        /* No f32 tanh, exp, log or rsqrt operator in this XNNPACK. */
        default: return 0;
        }
    }
    case NN_OP_PRELU:
        if (n->n_inputs != 2 || x->rank < 2 || !nn_shape_equal(x, y)) return 0;
        return prelu_slope_ok(g, n->inputs[1], x->rank, x->dim[x->rank - 1]);
    case NN_OP_POOL: {
        const nn_pool_params *p = &n->p.pool;
        if (x->rank != 4 || p->kind > NN_POOL_AVG) return 0;
        /* XNNPACK refuses 1x1 pooling ("meaningless"); the reference backend runs it. */
        if (p->kernel_h < 1 || p->kernel_w < 1 || p->kernel_h * p->kernel_w < 2) return 0;
        if (p->stride_h < 1 || p->stride_w < 1) return 0;
        /* Every window must hold at least one input pixel (TF never pads more than that). */
        if (p->pad_top < 0 || p->pad_bottom < 0 || p->pad_left < 0 || p->pad_right < 0 ||
            p->pad_top >= p->kernel_h || p->pad_bottom >= p->kernel_h ||
            p->pad_left >= p->kernel_w || p->pad_right >= p->kernel_w)
            return 0;
        return 1;
    }
    case NN_OP_REDUCE: {
        /* Mean over one run of consecutive axes: [outer, width, inner] pooled over width. */
        const nn_reduce_params *p = &n->p.reduce;
        if (p->kind != NN_REDUCE_MEAN || x->rank < 2 || x->rank > 31 || (p->axes & 1)) return 0;
        if (p->axes == 0 || (p->axes >> x->rank) != 0) return 0;
        uint32_t run = p->axes + (p->axes & -p->axes); /* adding the lowest bit clears a run */
        return (run & p->axes) == 0;
    }
    case NN_OP_PAD: return n->n_inputs == 1 && x->rank >= 1;
    case NN_OP_RESHAPE: return n->n_inputs == 1;
    case NN_OP_CONCAT: {
        int axis = n->p.concat.axis;
        if (axis < 1 || axis >= x->rank || n->n_inputs > NN_XNN_MAX_OPS) return 0;
        for (int i = 0; i < n->n_inputs; i++)
            if (n->inputs[i] < 0 || tshape(g, n->inputs[i])->rank != x->rank) return 0;
        return 1;
    }
    case NN_OP_SLICE: {
        int axis;
        if (n->n_inputs != 1 || slice_axis(x, &n->p.slice, &axis) != 0) return 0;
        return n->p.slice.begin[0] == 0 && n->p.slice.stride[0] == 1;
    }
    case NN_OP_RESIZE_BILINEAR: {
        const nn_resize_params *p = &n->p.resize;
        if (x->rank != 4 || (p->align_corners && p->half_pixel_centers)) return 0;
        return 1;
    }
    case NN_OP_DEPTH_TO_SPACE: return x->rank == 4 && n->p.d2s.block >= 2;
    case NN_OP_SOFTMAX: return x->rank >= 2;
    default: return 0;
    }
}

/* --- create --------------------------------------------------------------------------------- */

/* XNNPACK's PReLU takes one slope per channel: expand a single broadcast value. The result is
 * malloc'd (XNNPACK packs its own copy, so the caller frees it after create). */
static float *slope_per_channel(const nn_tensor *s, size_t channels)
{
    float *slope = malloc(channels * sizeof *slope);
    if (!slope) return NULL;
    const float *src = s->data;
    int scalar = nn_shape_numel(&s->shape, 1) == 1;
    for (size_t i = 0; i < channels; i++)
        slope[i] = scalar ? src[0] : src[i];
    return slope;
}

/* Creates the in-place activation that follows a conv or fully connected op. */
static int create_post(nn_xnn_op *op, const nn_graph *g, const nn_node *n, const nn_act *act,
                       size_t channels)
{
    enum xnn_status st = xnn_status_success;
    const char *what = "";
    switch (act->kind) {
    case NN_ACT_LEAKY:
        op->post = XNN_POST_LEAKY;
        op->post_channels = 1;
        what = "create_leaky_relu_nc_f32";
        st = xnn_create_leaky_relu_nc_f32(1, 1, 1, act->alpha, 0, &op->ops[op->n_ops]);
        break;
    case NN_ACT_PRELU: {
        op->post = XNN_POST_PRELU;
        op->post_channels = channels;
        what = "create_prelu_nc_f32";
        float *slope = slope_per_channel(&g->tensors[n->inputs[3]], channels);
        if (!slope) return base_error_set(BASE_ERR_NOMEM, "node %s: out of memory", n->name);
        st = xnn_create_prelu_nc_f32(channels, channels, channels, slope, 0, &op->ops[op->n_ops]);
        free(slope);
        break;
    }
    default: return 0;
    }
    if (st != xnn_status_success) return xnn_fail(what, n->name, st);
    op->n_ops++;
    return 0;
}

static void act_range(const nn_act *act, float *lo, float *hi)
{
    *lo = -INFINITY;
    *hi = INFINITY;
    if (act->kind == NN_ACT_CLAMP) {
        *lo = act->lo;
        *hi = act->hi;
    }
}

/*
 * Output channels per slice of a GEMM whose packed weights (k inputs per output channel) are
 * larger than half of L2. XNNPACK's GEMM walks all output channels for every block of 7 rows,
 * streaming the whole weight matrix from L3 once per block when it does not fit in L2: a 3x3
 * 256->256 convolution (2.4 MB) on a 4x4 map of 8 images reads 45 MB. Split into slices of at
 * most half of L2, each slice's weights are read from L3 once and then stay in L2 for every
 * row block. Returns `channels` (no split) when the weights are small enough.
 */
static size_t slice_width(size_t k, size_t channels)
{
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    size_t budget = (l2 >= (256 << 10) && l2 <= (64 << 20) ? (size_t)l2 : (size_t)1 << 20) / 2;
    if (k * channels * sizeof(float) <= budget) return channels;
    size_t w = budget / (k * sizeof(float)) / 16 * 16; /* whole 16-channel strips of the kernel */
    if (w < 16) w = 16;
    while ((channels + w - 1) / w > NN_XNN_MAX_SLICES)
        w += 16;
    return w < channels ? w : channels;
}

/* conv: x [N,H,W,Cin], filter [KH,KW,Cin,Cout] or depthwise [KH,KW,C,M] -> [N,OH,OW,Cout] */
static int create_conv(nn_xnn_op *op, const nn_graph *g, const nn_node *n)
{
    const nn_conv_params *p = &n->p.conv;
    const nn_shape *w = tshape(g, n->inputs[1]);
    const float *filter = g->tensors[n->inputs[1]].data;
    const float *bias = has_input(n, 2) ? g->tensors[n->inputs[2]].data : NULL;
    float lo, hi;
    act_range(&p->act, &lo, &hi);
    size_t kh = (size_t)w->dim[0], kw = (size_t)w->dim[1], cin = (size_t)w->dim[2];
    enum xnn_status st;
    size_t cout;
    if (p->depthwise) {
        /* TF's [KH,KW,C,M] is XNNPACK's depthwise HWGo layout with G = C, o = M. */
        size_t m = (size_t)w->dim[3];
        cout = cin * m;
        st = xnn_create_convolution2d_nhwc_f32(
            (uint32_t)p->pad_top, (uint32_t)p->pad_right, (uint32_t)p->pad_bottom,
            (uint32_t)p->pad_left, (uint32_t)kh, (uint32_t)kw, (uint32_t)p->stride_h,
            (uint32_t)p->stride_w, (uint32_t)p->dilation_h, (uint32_t)p->dilation_w, (uint32_t)cin,
            1, m, cin, cout, filter, bias, lo, hi, XNN_FLAG_DEPTHWISE_CONVOLUTION, &op->ops[0]);
    } else {
        /* XNNPACK wants [Cout,KH,KW,Cin]; it packs a copy, so ours is freed right after. */
        cout = (size_t)w->dim[3];
        size_t taps = kh * kw;
        float *ohwi = malloc(taps * cin * cout * sizeof *ohwi);
        if (!ohwi) return base_error_set(BASE_ERR_NOMEM, "node %s: cannot repack filter", n->name);
        for (size_t t = 0; t < taps; t++)
            for (size_t i = 0; i < cin; i++)
                for (size_t o = 0; o < cout; o++)
                    ohwi[(o * taps + t) * cin + i] = filter[(t * cin + i) * cout + o];
        /* Output channels in slices whose weights fit in L2 (one slice: the whole layer). */
        op->slice = slice_width(taps * cin, cout);
        st = xnn_status_success;
        for (size_t o = 0; o < cout && st == xnn_status_success; o += op->slice) {
            size_t nc = cout - o < op->slice ? cout - o : op->slice;
            st = xnn_create_convolution2d_nhwc_f32(
                (uint32_t)p->pad_top, (uint32_t)p->pad_right, (uint32_t)p->pad_bottom,
                (uint32_t)p->pad_left, (uint32_t)kh, (uint32_t)kw, (uint32_t)p->stride_h,
                (uint32_t)p->stride_w, (uint32_t)p->dilation_h, (uint32_t)p->dilation_w, 1, cin, nc,
                cin, cout, ohwi + o * taps * cin, bias ? bias + o : NULL, lo, hi, 0,
                &op->ops[op->n_ops]);
            if (st == xnn_status_success) op->n_ops++;
        }
        free(ohwi);
        if (st != xnn_status_success) return xnn_fail("create_convolution2d_nhwc_f32", n->name, st);
        op->n_slices = op->n_ops;
        return create_post(op, g, n, &p->act, cout);
    }
    if (st != xnn_status_success) return xnn_fail("create_convolution2d_nhwc_f32", n->name, st);
    op->n_ops = 1;
    op->n_slices = 1;
    op->slice = cout;
    return create_post(op, g, n, &p->act, cout);
}

/* fully connected: x [N,K], w [K,M] -> [N,M] */
static int create_fc(nn_xnn_op *op, const nn_graph *g, const nn_node *n)
{
    const nn_shape *w = tshape(g, n->inputs[1]);
    size_t k = (size_t)w->dim[0], m = (size_t)w->dim[1];
    const float *bias = has_input(n, 2) ? g->tensors[n->inputs[2]].data : NULL;
    float lo, hi;
    act_range(&n->p.fc.act, &lo, &hi);
    const float *kernel = g->tensors[n->inputs[1]].data;
    /* Output channels in slices whose weights fit in L2 (see slice_width); a slice of TF's
     * [K, M] kernel is copied out ([K, slice]; XNNPACK packs its own copy). */
    op->slice = slice_width(k, m);
    float *part = op->slice < m ? malloc(k * op->slice * sizeof *part) : NULL;
    if (op->slice < m && !part)
        return base_error_set(BASE_ERR_NOMEM, "node %s: out of memory", n->name);
    enum xnn_status st = xnn_status_success;
    for (size_t o = 0; o < m && st == xnn_status_success; o += op->slice) {
        size_t nc = m - o < op->slice ? m - o : op->slice;
        const float *kern = kernel;
        if (part) {
            for (size_t i = 0; i < k; i++)
                memcpy(part + i * nc, kernel + i * m + o, nc * sizeof *part);
            kern = part;
        }
        /* XNN_FLAG_TRANSPOSE_WEIGHTS: the kernel is [input channels, output channels], TF's layout.
         */
        st = xnn_create_fully_connected_nc_f32(k, nc, k, m, kern, bias ? bias + o : NULL, lo, hi,
                                               XNN_FLAG_TRANSPOSE_WEIGHTS, &op->ops[op->n_ops]);
        if (st == xnn_status_success) op->n_ops++;
    }
    free(part);
    if (st != xnn_status_success) return xnn_fail("create_fully_connected_nc_f32", n->name, st);
    op->n_slices = op->n_ops;
    return create_post(op, g, n, &n->p.fc.act, m);
}

static int create_binary(nn_xnn_op *op, const nn_node *n)
{
    const nn_binary_params *p = &n->p.binary;
    float lo, hi;
    act_range(&p->act, &lo, &hi); /* -inf, inf unless CLAMP */
    int fused = p->act.kind != NN_ACT_LEAKY;
    enum xnn_status st;
    const char *what;
    switch (p->kind) {
    case NN_BINARY_ADD:
        what = "create_add_nd_f32";
        st = xnn_create_add_nd_f32(lo, hi, 0, &op->ops[0]);
        break;
    case NN_BINARY_SUB:
        what = "create_subtract_nd_f32";
        st = xnn_create_subtract_nd_f32(lo, hi, 0, &op->ops[0]);
        break;
    case NN_BINARY_MUL:
        what = "create_multiply_nd_f32";
        st = xnn_create_multiply_nd_f32(lo, hi, 0, &op->ops[0]);
        break;
    case NN_BINARY_DIV:
        what = "create_divide_nd_f32";
        st = xnn_create_divide_nd_f32(lo, hi, 0, &op->ops[0]);
        break;
    case NN_BINARY_MIN:
        what = "create_minimum_nd_f32";
        st = xnn_create_minimum_nd_f32(0, &op->ops[0]);
        fused = 0;
        break;
    case NN_BINARY_MAX:
        what = "create_maximum_nd_f32";
        st = xnn_create_maximum_nd_f32(0, &op->ops[0]);
        fused = 0;
        break;
    case NN_BINARY_SQUARED_DIFFERENCE:
        what = "create_squared_difference_nd_f32";
        st = xnn_create_squared_difference_nd_f32(0, &op->ops[0]);
        fused = 0;
        break;
    default:
        return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: binary kind %d", n->name, p->kind);
    }
    if (st != xnn_status_success) return xnn_fail(what, n->name, st);
    op->n_ops = 1;
    if (p->act.kind == NN_ACT_LEAKY) {
        st = xnn_create_leaky_relu_nc_f32(1, 1, 1, p->act.alpha, 0, &op->ops[1]);
        if (st != xnn_status_success) return xnn_fail("create_leaky_relu_nc_f32", n->name, st);
        op->post = XNN_POST_LEAKY;
    } else if (!fused && p->act.kind == NN_ACT_CLAMP) {
        st = xnn_create_clamp_nc_f32(1, 1, 1, lo, hi, 0, &op->ops[1]);
        if (st != xnn_status_success) return xnn_fail("create_clamp_nc_f32", n->name, st);
        op->post = XNN_POST_CLAMP;
    } else {
        return 0;
    }
    op->n_ops = 2;
    op->post_channels = 1;
    return 0;
}

/* Elementwise ops see the tensor as [numel, 1]: XNNPACK then runs it as one flat vector. */
static int create_unary(nn_xnn_op *op, const nn_node *n)
{
    const nn_unary_params *p = &n->p.unary;
    enum xnn_status st;
    const char *what;
    switch (p->kind) {
    case NN_UNARY_IDENTITY:
        what = "create_copy_nc_x32";
        st = xnn_create_copy_nc_x32(1, 1, 1, 0, &op->ops[0]);
        break;
    case NN_UNARY_ABS:
        what = "create_abs_nc_f32";
        st = xnn_create_abs_nc_f32(1, 1, 1, 0, &op->ops[0]);
        break;
    case NN_UNARY_NEG:
        what = "create_negate_nc_f32";
        st = xnn_create_negate_nc_f32(1, 1, 1, 0, &op->ops[0]);
        break;
    case NN_UNARY_SQUARE:
        what = "create_square_nc_f32";
        st = xnn_create_square_nc_f32(1, 1, 1, 0, &op->ops[0]);
        break;
    case NN_UNARY_SQRT:
        what = "create_square_root_nc_f32";
        st = xnn_create_square_root_nc_f32(1, 1, 1, 0, &op->ops[0]);
        break;
    case NN_UNARY_SIGMOID:
        what = "create_sigmoid_nc_f32";
        st = xnn_create_sigmoid_nc_f32(1, 1, 1, 0, &op->ops[0]);
        break;
    case NN_UNARY_CLAMP:
        what = "create_clamp_nc_f32";
        st = xnn_create_clamp_nc_f32(1, 1, 1, p->lo, p->hi, 0, &op->ops[0]);
        break;
    case NN_UNARY_LEAKY:
        what = "create_leaky_relu_nc_f32";
        st = xnn_create_leaky_relu_nc_f32(1, 1, 1, p->alpha, 0, &op->ops[0]);
        break;
    case NN_UNARY_ELU:
        /* TF's Elu: alpha is 1. */
        what = "create_elu_nc_f32";
        st = xnn_create_elu_nc_f32(1, 1, 1, 1.0f, 0, &op->ops[0]);
        break;
    default:
        return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: unary kind %d", n->name, p->kind);
    }
    if (st != xnn_status_success) return xnn_fail(what, n->name, st);
    op->n_ops = 1;
    return 0;
}

/* prelu: x [...,C], slope [C] (or one value) */
static int create_prelu(nn_xnn_op *op, const nn_graph *g, const nn_node *n)
{
    const nn_shape *x = tshape(g, n->inputs[0]);
    size_t c = (size_t)x->dim[x->rank - 1];
    float *slope = slope_per_channel(&g->tensors[n->inputs[1]], c);
    if (!slope) return base_error_set(BASE_ERR_NOMEM, "node %s: out of memory", n->name);
    enum xnn_status st = xnn_create_prelu_nc_f32(c, c, c, slope, 0, &op->ops[0]);
    free(slope); /* packed by XNNPACK */
    if (st != xnn_status_success) return xnn_fail("create_prelu_nc_f32", n->name, st);
    op->n_ops = 1;
    op->post_channels = c;
    return 0;
}

/* pool: x [N,H,W,C] -> [N,OH,OW,C]. XNNPACK's max pooling ignores padding and its average
 * pooling divides by the in-bounds count whenever there is padding, as TF does. */
static int create_pool(nn_xnn_op *op, const nn_graph *g, const nn_node *n)
{
    const nn_pool_params *p = &n->p.pool;
    size_t c = (size_t)tshape(g, n->inputs[0])->dim[3];
    enum xnn_status st;
    const char *what;
    if (p->kind == NN_POOL_MAX) {
        what = "create_max_pooling2d_nhwc_f32";
        st = xnn_create_max_pooling2d_nhwc_f32((uint32_t)p->pad_top, (uint32_t)p->pad_right,
                                               (uint32_t)p->pad_bottom, (uint32_t)p->pad_left,
                                               (uint32_t)p->kernel_h, (uint32_t)p->kernel_w,
                                               (uint32_t)p->stride_h, (uint32_t)p->stride_w, 1, 1,
                                               c, c, c, -INFINITY, INFINITY, 0, &op->ops[0]);
    } else {
        what = "create_average_pooling2d_nhwc_f32";
        st = xnn_create_average_pooling2d_nhwc_f32((uint32_t)p->pad_top, (uint32_t)p->pad_right,
                                                   (uint32_t)p->pad_bottom, (uint32_t)p->pad_left,
                                                   (uint32_t)p->kernel_h, (uint32_t)p->kernel_w,
                                                   (uint32_t)p->stride_h, (uint32_t)p->stride_w, c,
                                                   c, c, -INFINITY, INFINITY, 0, &op->ops[0]);
    }
    if (st != xnn_status_success) return xnn_fail(what, n->name, st);
    op->n_ops = 1;
    return 0;
}

/* Copies of a concatenation: input i is [outer, inner_i] rows written at column offset_i of
 * the [outer, inner_out] output. */
static int create_concat(nn_xnn_op *op, const nn_graph *g, const nn_node *n)
{
    int axis = n->p.concat.axis;
    const nn_shape *y = tshape(g, n->output);
    size_t inner_out = dims_product(y, axis, y->rank, 1);
    for (int i = 0; i < n->n_inputs; i++) {
        const nn_shape *x = tshape(g, n->inputs[i]);
        size_t inner = dims_product(x, axis, x->rank, 1);
        enum xnn_status st = xnn_create_copy_nc_x32(inner, inner, inner_out, 0, &op->ops[i]);
        if (st != xnn_status_success) return xnn_fail("create_copy_nc_x32", n->name, st);
        op->n_ops++;
    }
    return 0;
}

/* A slice restricting one axis a with stride 1 is, per outer index, one contiguous run of
 * size[a]*inner elements out of dim[a]*inner. */
static int create_slice(nn_xnn_op *op, const nn_graph *g, const nn_node *n)
{
    const nn_shape *x = tshape(g, n->inputs[0]);
    const nn_slice_params *p = &n->p.slice;
    int axis;
    slice_axis(x, p, &axis);
    size_t channels = 1, stride = 1;
    if (axis >= 0) {
        size_t inner = dims_product(x, axis + 1, x->rank, 1);
        channels = (size_t)p->size[axis] * inner;
        stride = (size_t)x->dim[axis] * inner;
    }
    enum xnn_status st = xnn_create_copy_nc_x32(channels, stride, channels, 0, &op->ops[0]);
    if (st != xnn_status_success) return xnn_fail("create_copy_nc_x32", n->name, st);
    op->n_ops = 1;
    return 0;
}

static int create_ops(nn_xnn_op *op, const nn_graph *g, const nn_node *n)
{
    const nn_shape *x = tshape(g, n->inputs[0]);
    /* the first input's channels; a scalar first input (rank 0: Maximum(const, x) in
     * age.json and mobileface.json) has no last dimension to read */
    size_t c = x->rank > 0 ? (size_t)x->dim[x->rank - 1] : 1;
    enum xnn_status st;
    switch (n->op) {
    case NN_OP_CONV2D: return create_conv(op, g, n);
    case NN_OP_FULLY_CONNECTED: return create_fc(op, g, n);
    case NN_OP_BINARY: return create_binary(op, n);
    case NN_OP_UNARY: return create_unary(op, n);
    case NN_OP_PRELU: return create_prelu(op, g, n);
    case NN_OP_POOL: return create_pool(op, g, n);
    case NN_OP_REDUCE: {
        /* The "channels" are all the dims after the reduced run (1 when it ends the shape). */
        int after = 32 - __builtin_clz(n->p.reduce.axes);
        size_t inner = dims_product(x, after, x->rank, 1);
        st = xnn_create_global_average_pooling_nwc_f32(inner, inner, inner, -INFINITY, INFINITY, 0,
                                                       &op->ops[0]);
        if (st != xnn_status_success)
            return xnn_fail("create_global_average_pooling_nwc_f32", n->name, st);
        break;
    }
    case NN_OP_PAD: {
        uint32_t bits;
        memcpy(&bits, &n->p.pad.value, sizeof bits);
        st = xnn_create_constant_pad_nd_x32(&bits, 0, &op->ops[0]);
        if (st != xnn_status_success) return xnn_fail("create_constant_pad_nd_x32", n->name, st);
        break;
    }
    case NN_OP_RESHAPE:
        st = xnn_create_copy_nc_x32(1, 1, 1, 0, &op->ops[0]);
        if (st != xnn_status_success) return xnn_fail("create_copy_nc_x32", n->name, st);
        break;
    case NN_OP_CONCAT: return create_concat(op, g, n);
    case NN_OP_SLICE: return create_slice(op, g, n);
    case NN_OP_RESIZE_BILINEAR: {
        const nn_resize_params *p = &n->p.resize;
        uint32_t flags = 0; /* half-pixel centers */
        if (p->align_corners)
            flags = XNN_FLAG_ALIGN_CORNERS;
        else if (!p->half_pixel_centers)
            flags = XNN_FLAG_TENSORFLOW_LEGACY_MODE;
        st = xnn_create_resize_bilinear2d_nhwc_f32(c, c, c, flags, &op->ops[0]);
        if (st != xnn_status_success)
            return xnn_fail("create_resize_bilinear2d_nhwc_f32", n->name, st);
        break;
    }
    case NN_OP_DEPTH_TO_SPACE: {
        uint32_t b = (uint32_t)n->p.d2s.block;
        st = xnn_create_depth_to_space_nhwc_x32(c / (b * b), c, c / (b * b), b, 0, &op->ops[0]);
        if (st != xnn_status_success)
            return xnn_fail("create_depth_to_space_nhwc_x32", n->name, st);
        break;
    }
    case NN_OP_SOFTMAX:
        st = xnn_create_softmax_nc_f32(c, c, c, 0, &op->ops[0]);
        if (st != xnn_status_success) return xnn_fail("create_softmax_nc_f32", n->name, st);
        break;
    default:
        return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: %s is not an XNNPACK op", n->name,
                              nn_node_kind_name(n));
    }
    op->n_ops = 1;
    return 0;
}

/* Which inputs are data (as opposed to weights XNNPACK packs at create time). */
static int is_data_input(const nn_node *n, int i)
{
    switch (n->op) {
    case NN_OP_CONV2D:
    case NN_OP_FULLY_CONNECTED:
    case NN_OP_PRELU: return i == 0;
    default: return 1;
    }
}

int nn_xnn_create(const nn_graph *g, const nn_node *n, nn_xnn_op **out)
{
    *out = NULL;
    int rc = nn_xnn_init();
    if (rc) return rc;
    if (!nn_xnn_supports(g, n))
        return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: %s is not supported by XNNPACK",
                              n->name, nn_node_kind_name(n));
    nn_xnn_op *op = calloc(1, sizeof *op);
    if (!op) return base_error_set(BASE_ERR_NOMEM, "node %s: out of memory", n->name);
    op->kind = n->op;
    op->name = strdup(n->name ? n->name : "");
    if (!op->name) {
        rc = base_error_set(BASE_ERR_NOMEM, "node %s: out of memory", n->name);
        goto fail;
    }
    for (int i = 0; i < n->n_inputs; i++) {
        if (!is_data_input(n, i) || !is_const(g, n, i)) continue;
        const nn_tensor *t = &g->tensors[n->inputs[i]];
        size_t bytes = (size_t)nn_shape_numel(&t->shape, 1) * sizeof(float);
        op->const_in[i] = base_aligned_alloc(64, bytes + NN_XNN_EXTRA_BYTES);
        if (!op->const_in[i]) {
            rc = base_error_set(BASE_ERR_NOMEM, "node %s: out of memory", n->name);
            goto fail;
        }
        memcpy(op->const_in[i], t->data, bytes);
        memset((char *)op->const_in[i] + bytes, 0, NN_XNN_EXTRA_BYTES);
    }
    rc = create_ops(op, g, n);
    if (rc) goto fail;
    *out = op;
    return 0;
fail:
    nn_xnn_destroy(op);
    return rc;
}

/* --- setup ---------------------------------------------------------------------------------- */

static size_t view_numel(const nn_view *v)
{
    return dims_product(&v->shape, 0, v->shape.rank, 1);
}

static int check_out(const nn_node *n, const nn_view *out, const nn_shape *want)
{
    if (nn_shape_equal(&out->shape, want)) return 0;
    char b1[128], b2[128];
    return base_error_set(BASE_ERR_INVALID, "node %s: output view %s, expected %s", n->name,
                          nn_shape_str(&out->shape, b1, sizeof b1),
                          nn_shape_str(want, b2, sizeof b2));
}

static enum xnn_status setup_post(nn_xnn_op *op, float *y, size_t numel, pthreadpool_t pool,
                                  const char **what)
{
    xnn_operator_t post = op->ops[op->n_ops - 1];
    switch (op->post) {
    case XNN_POST_LEAKY:
        *what = "setup_leaky_relu_nc_f32";
        return xnn_setup_leaky_relu_nc_f32(post, numel, y, y, pool);
    case XNN_POST_PRELU:
        *what = "setup_prelu_nc_f32";
        return xnn_setup_prelu_nc_f32(post, numel / op->post_channels, y, y, pool);
    case XNN_POST_CLAMP:
        *what = "setup_clamp_nc_f32";
        return xnn_setup_clamp_nc_f32(post, numel, y, y, pool);
    case XNN_POST_NONE: break;
    }
    return xnn_status_success;
}

static enum xnn_status setup_unary(const nn_node *n, xnn_operator_t xop, size_t numel,
                                   const float *x, float *y, pthreadpool_t pool, const char **what)
{
    switch (n->p.unary.kind) {
    case NN_UNARY_IDENTITY:
        *what = "setup_copy_nc_x32";
        return xnn_setup_copy_nc_x32(xop, numel, x, y, pool);
    case NN_UNARY_ABS:
        *what = "setup_abs_nc_f32";
        return xnn_setup_abs_nc_f32(xop, numel, x, y, pool);
    case NN_UNARY_NEG:
        *what = "setup_negate_nc_f32";
        return xnn_setup_negate_nc_f32(xop, numel, x, y, pool);
    case NN_UNARY_SQUARE:
        *what = "setup_square_nc_f32";
        return xnn_setup_square_nc_f32(xop, numel, x, y, pool);
    case NN_UNARY_SQRT:
        *what = "setup_square_root_nc_f32";
        return xnn_setup_square_root_nc_f32(xop, numel, x, y, pool);
    case NN_UNARY_SIGMOID:
        *what = "setup_sigmoid_nc_f32";
        return xnn_setup_sigmoid_nc_f32(xop, numel, x, y, pool);
    case NN_UNARY_CLAMP:
        *what = "setup_clamp_nc_f32";
        return xnn_setup_clamp_nc_f32(xop, numel, x, y, pool);
    case NN_UNARY_LEAKY:
        *what = "setup_leaky_relu_nc_f32";
        return xnn_setup_leaky_relu_nc_f32(xop, numel, x, y, pool);
    case NN_UNARY_ELU:
        *what = "setup_elu_nc_f32";
        return xnn_setup_elu_nc_f32(xop, numel, x, y, pool);
    default: *what = "setup (unary)"; return xnn_status_unsupported_parameter;
    }
}

static enum xnn_status setup_binary(const nn_node *n, xnn_operator_t xop, const nn_shape *sa,
                                    const nn_shape *sb, const float *a, const float *b, float *y,
                                    pthreadpool_t pool, const char **what)
{
    size_t da[XNN_MAX_TENSOR_DIMS], db[XNN_MAX_TENSOR_DIMS];
    for (int i = 0; i < sa->rank; i++)
        da[i] = (size_t)sa->dim[i];
    for (int i = 0; i < sb->rank; i++)
        db[i] = (size_t)sb->dim[i];
    size_t ra = (size_t)sa->rank, rb = (size_t)sb->rank;
    switch (n->p.binary.kind) {
    case NN_BINARY_ADD:
        *what = "setup_add_nd_f32";
        return xnn_setup_add_nd_f32(xop, ra, da, rb, db, a, b, y, pool);
    case NN_BINARY_SUB:
        *what = "setup_subtract_nd_f32";
        return xnn_setup_subtract_nd_f32(xop, ra, da, rb, db, a, b, y, pool);
    case NN_BINARY_MUL:
        *what = "setup_multiply_nd_f32";
        return xnn_setup_multiply_nd_f32(xop, ra, da, rb, db, a, b, y, pool);
    case NN_BINARY_DIV:
        *what = "setup_divide_nd_f32";
        return xnn_setup_divide_nd_f32(xop, ra, da, rb, db, a, b, y, pool);
    case NN_BINARY_MIN:
        *what = "setup_minimum_nd_f32";
        return xnn_setup_minimum_nd_f32(xop, ra, da, rb, db, a, b, y, pool);
    case NN_BINARY_MAX:
        *what = "setup_maximum_nd_f32";
        return xnn_setup_maximum_nd_f32(xop, ra, da, rb, db, a, b, y, pool);
    case NN_BINARY_SQUARED_DIFFERENCE:
        *what = "setup_squared_difference_nd_f32";
        return xnn_setup_squared_difference_nd_f32(xop, ra, da, rb, db, a, b, y, pool);
    default: *what = "setup (binary)"; return xnn_status_unsupported_parameter;
    }
}

int nn_xnn_setup(nn_xnn_op *op, const nn_graph *g, const nn_node *n, const nn_view *in,
                 nn_view *out, struct pthreadpool *pool)
{
    const float *xin[NN_MAX_NODE_INPUTS];
    for (int i = 0; i < n->n_inputs; i++)
        xin[i] = op->const_in[i] ? op->const_in[i] : in[i].data;
    const nn_shape *xs = &in[0].shape;
    float *y = out->data;
    size_t numel = view_numel(out);
    size_t batch = xs->rank > 0 ? (size_t)xs->dim[0] : 1;
    enum xnn_status st = xnn_status_success;
    const char *what = "setup";
    int rc;

    switch (n->op) {
    case NN_OP_CONV2D: {
        const nn_conv_params *p = &n->p.conv;
        const nn_shape *w = tshape(g, n->inputs[1]);
        int64_t cout = p->depthwise ? w->dim[2] * w->dim[3] : w->dim[3];
        nn_shape want = {4,
                         {xs->dim[0],
                          nn_window_out(xs->dim[1], p->kernel_h, p->stride_h, p->dilation_h,
                                        p->pad_top, p->pad_bottom),
                          nn_window_out(xs->dim[2], p->kernel_w, p->stride_w, p->dilation_w,
                                        p->pad_left, p->pad_right),
                          cout}};
        if (xs->rank != 4 || xs->dim[3] != w->dim[2])
            return base_error_set(BASE_ERR_INVALID, "node %s: bad input view", n->name);
        if ((rc = check_out(n, out, &want))) return rc;
        what = "setup_convolution2d_nhwc_f32";
        for (int j = 0; j < op->n_slices && st == xnn_status_success; j++)
            st = xnn_setup_convolution2d_nhwc_f32(op->ops[j], batch, (size_t)xs->dim[1],
                                                  (size_t)xs->dim[2], xin[0],
                                                  y + (size_t)j * op->slice, pool);
        if (st == xnn_status_success) st = setup_post(op, y, numel, pool, &what);
        break;
    }
    case NN_OP_FULLY_CONNECTED: {
        const nn_shape *w = tshape(g, n->inputs[1]);
        nn_shape want = {2, {xs->dim[0], w->dim[1]}};
        if ((rc = check_out(n, out, &want))) return rc;
        what = "setup_fully_connected_nc_f32";
        for (int j = 0; j < op->n_slices && st == xnn_status_success; j++)
            st = xnn_setup_fully_connected_nc_f32(op->ops[j], batch, xin[0],
                                                  y + (size_t)j * op->slice, pool);
        if (st == xnn_status_success) st = setup_post(op, y, numel, pool, &what);
        break;
    }
    case NN_OP_BINARY: {
        nn_shape want;
        if (nn_shape_broadcast(&in[0].shape, &in[1].shape, &want) != 0)
            return base_error_set(BASE_ERR_INVALID, "node %s: inputs do not broadcast", n->name);
        if ((rc = check_out(n, out, &want))) return rc;
        st =
            setup_binary(n, op->ops[0], &in[0].shape, &in[1].shape, xin[0], xin[1], y, pool, &what);
        if (st == xnn_status_success) st = setup_post(op, y, numel, pool, &what);
        break;
    }
    case NN_OP_UNARY:
        if ((rc = check_out(n, out, xs))) return rc;
        st = setup_unary(n, op->ops[0], numel, xin[0], y, pool, &what);
        break;
    case NN_OP_PRELU:
        if ((rc = check_out(n, out, xs))) return rc;
        what = "setup_prelu_nc_f32";
        st = xnn_setup_prelu_nc_f32(op->ops[0], numel / op->post_channels, xin[0], y, pool);
        break;
    case NN_OP_POOL: {
        const nn_pool_params *p = &n->p.pool;
        nn_shape want = {
            4,
            {xs->dim[0],
             nn_window_out(xs->dim[1], p->kernel_h, p->stride_h, 1, p->pad_top, p->pad_bottom),
             nn_window_out(xs->dim[2], p->kernel_w, p->stride_w, 1, p->pad_left, p->pad_right),
             xs->dim[3]}};
        if ((rc = check_out(n, out, &want))) return rc;
        if (p->kind == NN_POOL_MAX) {
            what = "setup_max_pooling2d_nhwc_f32";
            st = xnn_setup_max_pooling2d_nhwc_f32(op->ops[0], batch, (size_t)xs->dim[1],
                                                  (size_t)xs->dim[2], xin[0], y, pool);
        } else {
            what = "setup_average_pooling2d_nhwc_f32";
            st = xnn_setup_average_pooling2d_nhwc_f32(op->ops[0], batch, (size_t)xs->dim[1],
                                                      (size_t)xs->dim[2], xin[0], y, pool);
        }
        break;
    }
    case NN_OP_REDUCE: {
        /* [outer, width, inner] with width the product of the reduced run of axes. */
        uint32_t axes = n->p.reduce.axes;
        int first = __builtin_ctz(axes), after = 32 - __builtin_clz(axes);
        size_t outer = dims_product(xs, 0, first, 1);
        size_t width = dims_product(xs, first, after, 1);
        if (after > xs->rank || outer * dims_product(xs, after, xs->rank, 1) != numel)
            return base_error_set(BASE_ERR_INVALID, "node %s: bad output view", n->name);
        what = "setup_global_average_pooling_nwc_f32";
        st = xnn_setup_global_average_pooling_nwc_f32(op->ops[0], outer, width, xin[0], y, pool);
        break;
    }
    case NN_OP_PAD: {
        const nn_pad_params *p = &n->p.pad;
        size_t shape[XNN_MAX_TENSOR_DIMS], pre[XNN_MAX_TENSOR_DIMS], post[XNN_MAX_TENSOR_DIMS];
        nn_shape want = *xs;
        for (int i = 0; i < xs->rank; i++) {
            shape[i] = (size_t)xs->dim[i];
            pre[i] = (size_t)p->before[i];
            post[i] = (size_t)p->after[i];
            want.dim[i] += p->before[i] + p->after[i];
        }
        if ((rc = check_out(n, out, &want))) return rc;
        what = "setup_constant_pad_nd_x32";
        st = xnn_setup_constant_pad_nd_x32(op->ops[0], (size_t)xs->rank, shape, pre, post, xin[0],
                                           y, pool);
        break;
    }
    case NN_OP_RESHAPE:
        if (view_numel(&in[0]) != numel)
            return base_error_set(BASE_ERR_INVALID, "node %s: reshape changes the size", n->name);
        what = "setup_copy_nc_x32";
        st = xnn_setup_copy_nc_x32(op->ops[0], numel, xin[0], y, pool);
        break;
    case NN_OP_CONCAT: {
        int axis = n->p.concat.axis;
        size_t outer = dims_product(xs, 0, axis, 1), offset = 0;
        size_t inner_out = dims_product(&out->shape, axis, out->shape.rank, 1);
        what = "setup_copy_nc_x32";
        for (int i = 0; i < n->n_inputs && st == xnn_status_success; i++) {
            size_t inner = dims_product(&in[i].shape, axis, in[i].shape.rank, 1);
            if (dims_product(&in[i].shape, 0, axis, 1) != outer || offset + inner > inner_out)
                return base_error_set(BASE_ERR_INVALID, "node %s: bad concat views", n->name);
            st = xnn_setup_copy_nc_x32(op->ops[i], outer, xin[i], y + offset, pool);
            offset += inner;
        }
        if (offset != inner_out || outer * inner_out != numel)
            return base_error_set(BASE_ERR_INVALID, "node %s: bad concat views", n->name);
        break;
    }
    case NN_OP_SLICE: {
        /* [outer, stride] rows of which [begin*inner, +channels) are kept; see create_slice. */
        const nn_slice_params *p = &n->p.slice;
        int axis;
        if (slice_axis(xs, p, &axis) != 0)
            return base_error_set(BASE_ERR_INVALID, "node %s: bad slice view", n->name);
        size_t rows = numel, offset = 0;
        if (axis >= 0) {
            size_t inner = dims_product(xs, axis + 1, xs->rank, 1);
            rows = dims_product(xs, 0, axis, 1);
            offset = (size_t)p->begin[axis] * inner;
            if (rows * (size_t)p->size[axis] * inner != numel)
                return base_error_set(BASE_ERR_INVALID, "node %s: bad slice view", n->name);
        } else if (view_numel(&in[0]) != numel) {
            return base_error_set(BASE_ERR_INVALID, "node %s: bad slice view", n->name);
        }
        what = "setup_copy_nc_x32";
        st = xnn_setup_copy_nc_x32(op->ops[0], rows, xin[0] + offset, y, pool);
        break;
    }
    case NN_OP_RESIZE_BILINEAR: {
        const nn_resize_params *p = &n->p.resize;
        nn_shape want = {4, {xs->dim[0], p->out_h, p->out_w, xs->dim[3]}};
        if ((rc = check_out(n, out, &want))) return rc;
        what = "setup_resize_bilinear2d_nhwc_f32";
        st = xnn_setup_resize_bilinear2d_nhwc_f32(op->ops[0], batch, (size_t)xs->dim[1],
                                                  (size_t)xs->dim[2], (size_t)p->out_h,
                                                  (size_t)p->out_w, xin[0], y, pool);
        break;
    }
    case NN_OP_DEPTH_TO_SPACE: {
        int64_t b = n->p.d2s.block;
        nn_shape want = {4, {xs->dim[0], xs->dim[1] * b, xs->dim[2] * b, xs->dim[3] / (b * b)}};
        if ((rc = check_out(n, out, &want))) return rc;
        what = "setup_depth_to_space_nhwc_x32";
        st = xnn_setup_depth_to_space_nhwc_x32(op->ops[0], batch, (size_t)xs->dim[1],
                                               (size_t)xs->dim[2], xin[0], y, pool);
        break;
    }
    case NN_OP_SOFTMAX: {
        if ((rc = check_out(n, out, xs))) return rc;
        size_t c = (size_t)xs->dim[xs->rank - 1];
        what = "setup_softmax_nc_f32";
        st = xnn_setup_softmax_nc_f32(op->ops[0], numel / c, xin[0], y, pool);
        break;
    }
    default:
        return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: %s is not an XNNPACK op", n->name,
                              nn_node_kind_name(n));
    }
    if (st != xnn_status_success) return xnn_fail(what, n->name, st);
    return 0;
}

/* --- run, destroy --------------------------------------------------------------------------- */

int nn_xnn_run(nn_xnn_op *op, struct pthreadpool *pool)
{
    for (int i = 0; i < op->n_ops; i++) {
        enum xnn_status st = xnn_run_operator(op->ops[i], pool);
        if (st != xnn_status_success) return xnn_fail("run_operator", op->name, st);
    }
    return 0;
}

void nn_xnn_destroy(nn_xnn_op *op)
{
    if (!op) return;
    for (int i = 0; i < op->n_ops; i++)
        xnn_delete_operator(op->ops[i]);
    for (int i = 0; i < NN_MAX_NODE_INPUTS; i++)
        base_aligned_free(op->const_in[i]);
    free(op->name);
    free(op);
}
