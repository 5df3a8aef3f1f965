/*
 * The engine's intermediate representation (private to src/nn).
 *
 * A graph is a list of tensors and a list of nodes in topological order. Every node has
 * exactly one output tensor. Tensors are NHWC f32 (int32 only for constants that describe
 * shapes). Only the batch dimension is dynamic:
 *
 *   - a constant tensor has fully known dims and owns its data;
 *   - every other tensor is "batched": rank >= 1 and dim[0] == NN_BATCH, the batch size chosen
 *     per run; all its other dims are known when the node is added.
 *
 * The importer and the builder API add nodes with nn_graph_add_node(), which infers the output
 * shape (and rejects inconsistent shapes with a clear error). The optimiser rewrites the graph
 * in place (fusion, folding, dead-node removal); the planner turns it into an immutable model.
 *
 * Weight layouts follow TensorFlow, so imported weights are used as they are:
 *   conv2d filter      [KH, KW, Cin, Cout]
 *   depthwise filter   [KH, KW, C, M]        (output channels C*M, channel c*M+m)
 *   fully connected    [K, N]                (y = x . W + b)
 */
#ifndef VULTUS_NN_GRAPH_H
#define VULTUS_NN_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#define NN_MAX_DIMS 6
#define NN_MAX_NODE_INPUTS 8
/* dim[0] of a batched tensor. */
#define NN_BATCH (-1)

typedef enum nn_dtype { NN_DTYPE_F32 = 0, NN_DTYPE_I32 = 1 } nn_dtype;

typedef struct nn_shape {
    int rank;
    int64_t dim[NN_MAX_DIMS];
} nn_shape;

typedef struct nn_tensor {
    char *name; /* owned; unique in the graph */
    nn_dtype dtype;
    nn_shape shape; /* dim[0] == NN_BATCH unless constant */
    void *data;     /* constant data (owned, 64-byte aligned) or NULL for computed tensors */
    int producer;   /* index of the node that writes it, or -1 (graph input or constant) */
} nn_tensor;

typedef enum nn_op {
    NN_OP_CONV2D, /* x, filter, [bias], [prelu slope], [residual], [scale, shift] -> [N,OH,OW,Cout]
                   */
    NN_OP_FULLY_CONNECTED, /* x [N,K], w [K,M], [bias [M]], [prelu slope] -> [N,M] */
    NN_OP_BINARY,          /* a, b (numpy broadcasting)                    -> broadcast shape */
    NN_OP_UNARY,           /* x                                            -> same shape */
    NN_OP_PRELU,           /* x [...,C], slope broadcastable to x          -> same shape */
    NN_OP_POOL,            /* x [N,H,W,C]                                  -> [N,OH,OW,C] */
    NN_OP_REDUCE,          /* x, over axes                                 -> reduced shape */
    NN_OP_PAD,             /* x                                            -> padded shape */
    NN_OP_RESHAPE,         /* x                                            -> same elements */
    NN_OP_CONCAT,          /* x0..xn-1 along axis                          -> concatenated */
    NN_OP_SLICE,           /* x, strided slice with resolved bounds        -> sliced */
    NN_OP_RESIZE_BILINEAR, /* x [N,H,W,C]                                  -> [N,OH,OW,C] */
    NN_OP_DEPTH_TO_SPACE,  /* x [N,H,W,C*b*b]                              -> [N,H*b,W*b,C] */
    NN_OP_SOFTMAX,         /* x, over the last axis                        -> same shape */
    NN_OP_COUNT
} nn_op;

/* An activation fused into the op that precedes it. */
typedef enum nn_act_kind {
    NN_ACT_NONE = 0,
    NN_ACT_CLAMP, /* min(max(x, lo), hi): Relu is [0, inf], Relu6 [0, 6] */
    NN_ACT_LEAKY, /* x >= 0 ? x : alpha * x */
    NN_ACT_PRELU, /* x >= 0 ? x : slope[c] * x, slope is the op's last input */
} nn_act_kind;

typedef struct nn_act {
    nn_act_kind kind;
    float lo, hi; /* NN_ACT_CLAMP */
    float alpha;  /* NN_ACT_LEAKY */
} nn_act;

typedef enum nn_pool_kind { NN_POOL_MAX, NN_POOL_AVG } nn_pool_kind;

typedef struct nn_conv_params {
    int kernel_h, kernel_w;
    int stride_h, stride_w;
    int dilation_h, dilation_w;
    int pad_top, pad_bottom, pad_left, pad_right; /* explicit, resolved from SAME/VALID */
    int depthwise;                                /* filter is [KH,KW,C,M] */
    nn_act act;
    /* Input 4 (same shape as the output) is added before the activation: act(conv + bias + r).
     * Set by the optimiser for a convolution followed by an Add (never depthwise). */
    int residual;
    /* pool == 2: a 2x2 stride-2 unpadded pooling (pool_kind) of the activated output, fused by
     * the optimiser where the own GEMM kernel takes it (the pooled map never goes through
     * memory at full size). The node's output is then the pooled tensor
     * [N, OH / 2, OW / 2, Cout] (rounded down, as a VALID pool); never with residual or
     * depthwise. 0: no pooling. */
    int pool;
    nn_pool_kind pool_kind;
    /* Inputs 5 and 6 (constants of Cout values) scale and shift the activated output,
     * act(...) * scale + shift (a batch norm after the Relu, liveness's conv -> Relu -> Mul ->
     * Add), before a fused pooling; fused by the optimiser where the own GEMM kernel takes it.
     * Never with residual or depthwise. */
    int post_affine;
} nn_conv_params;

typedef struct nn_fc_params {
    nn_act act;
} nn_fc_params;

typedef enum nn_binary_kind {
    NN_BINARY_ADD,
    NN_BINARY_SUB,
    NN_BINARY_MUL,
    NN_BINARY_DIV,
    NN_BINARY_MIN,
    NN_BINARY_MAX,
    NN_BINARY_SQUARED_DIFFERENCE,
} nn_binary_kind;

typedef struct nn_binary_params {
    nn_binary_kind kind;
    nn_act act; /* NONE or CLAMP */
} nn_binary_params;

typedef enum nn_unary_kind {
    NN_UNARY_IDENTITY,
    NN_UNARY_ABS,
    NN_UNARY_NEG,
    NN_UNARY_SQUARE,
    NN_UNARY_SQRT,
    NN_UNARY_RSQRT,
    NN_UNARY_EXP,
    NN_UNARY_LOG,
    NN_UNARY_SIGMOID,
    NN_UNARY_TANH,
    NN_UNARY_CLAMP, /* lo, hi (Relu, Relu6) */
    NN_UNARY_LEAKY, /* alpha */
    NN_UNARY_ELU,
} nn_unary_kind;

typedef struct nn_unary_params {
    nn_unary_kind kind;
    float lo, hi, alpha;
} nn_unary_params;

typedef struct nn_pool_params {
    nn_pool_kind kind;
    int kernel_h, kernel_w;
    int stride_h, stride_w;
    int pad_top, pad_bottom, pad_left, pad_right;
    /* Average pooling divides by the number of in-bounds elements (TensorFlow's rule). */
} nn_pool_params;

typedef enum nn_reduce_kind {
    NN_REDUCE_MEAN,
    NN_REDUCE_SUM,
    NN_REDUCE_MAX,
    NN_REDUCE_MIN
} nn_reduce_kind;

typedef struct nn_reduce_params {
    nn_reduce_kind kind;
    uint32_t axes; /* bit i set: reduce axis i (never axis 0, the batch) */
    int keep_dims;
} nn_reduce_params;

typedef struct nn_pad_params {
    int64_t before[NN_MAX_DIMS], after[NN_MAX_DIMS]; /* >= 0; before[0] == after[0] == 0 */
    float value;
} nn_pad_params;

typedef struct nn_concat_params {
    int axis; /* >= 1 */
} nn_concat_params;

typedef struct nn_slice_params {
    /* Resolved TensorFlow strided slice over the input's dims (masks already applied):
     * output dim i takes begin[i], begin[i]+stride[i], ... for size[i] elements. The output
     * tensor's shape may drop (shrink) or add size-1 dims; elements are in the same order.
     * Axis 0 (batch) is never sliced: begin[0] = 0, stride[0] = 1, size[0] = NN_BATCH. */
    int rank;
    int64_t begin[NN_MAX_DIMS], stride[NN_MAX_DIMS], size[NN_MAX_DIMS];
} nn_slice_params;

typedef struct nn_resize_params {
    int out_h, out_w;
    int align_corners;
    int half_pixel_centers;
} nn_resize_params;

typedef struct nn_depth_to_space_params {
    int block;
} nn_depth_to_space_params;

typedef struct nn_node {
    nn_op op;
    char *name; /* owned; the TF node name or the builder's name, for errors and nn info */
    int n_inputs;
    int inputs[NN_MAX_NODE_INPUTS]; /* tensor indices; -1 for an absent optional input */
    int output;                     /* tensor index */
    float *packed; /* owned: weights packed for an own kernel at load (gemm.c), or NULL */
    float *wino;   /* owned: Winograd-transformed weights (winograd.c), or NULL; when set, the
                      node runs by nn_wino_run() */
    union {
        nn_conv_params conv;
        nn_fc_params fc;
        nn_binary_params binary;
        nn_unary_params unary;
        nn_pool_params pool;
        nn_reduce_params reduce;
        nn_pad_params pad;
        nn_concat_params concat;
        nn_slice_params slice;
        nn_resize_params resize;
        nn_depth_to_space_params d2s;
    } p;
} nn_node;

typedef struct nn_graph {
    nn_tensor *tensors;
    int n_tensors, cap_tensors;
    nn_node *nodes;
    int n_nodes, cap_nodes;
    int inputs[8], n_inputs;   /* graph inputs (tensors with producer -1 and no data) */
    int outputs[8], n_outputs; /* graph outputs */
} nn_graph;

/* A tensor with concrete dims (batch resolved) and a data pointer, as kernels see it. */
typedef struct nn_view {
    nn_shape shape;
    float *data; /* f32 always at run time */
} nn_view;

/* --- graph construction (graph.c) --------------------------------------------------------- */

nn_graph *nn_graph_new(void);
void nn_graph_free(nn_graph *g);

/* Adds a graph input named `name` of shape `shape` (dim[0] must be NN_BATCH). Returns the
 * tensor index or a negative BASE_ERR_* code. */
int nn_graph_add_input(nn_graph *g, const char *name, const nn_shape *shape);

/* Adds a constant; copies `data` (count from shape; f32 or i32). Returns the tensor index. */
int nn_graph_add_const(nn_graph *g, const char *name, nn_dtype dtype, const nn_shape *shape,
                       const void *data);

/* Adds a node whose op, params and inputs are filled in `proto` (name copied, output ignored),
 * infers its output shape, and returns the new output tensor's index or a negative code with
 * base_error_set() naming the node and the shapes. */
int nn_graph_add_node(nn_graph *g, const nn_node *proto);

/* For NN_OP_RESHAPE and NN_OP_SLICE, whose output shape is not implied by their params: adds
 * the node with output shape `shape` (dim[0] NN_BATCH), checking that the element counts agree.
 * Other ops are passed on to nn_graph_add_node(). */
int nn_graph_add_node_shaped(nn_graph *g, const nn_node *proto, const nn_shape *shape);

/* Marks tensor `t` as a graph output. */
int nn_graph_mark_output(nn_graph *g, int t);

/* Computes node->output's shape from its inputs and params (used by add_node and by passes
 * that change params). Returns 0 or a negative code. */
int nn_infer_shape(const nn_graph *g, const nn_node *node, nn_shape *out);

/* numpy broadcasting of a and b into out; -1 when they do not broadcast. */
int nn_shape_broadcast(const nn_shape *a, const nn_shape *b, nn_shape *out);
/* Output size of a windowed op (conv, pool) along one axis; -1 when the window does not fit. */
int64_t nn_window_out(int64_t in, int kernel, int stride, int dilation, int pad_before,
                      int pad_after);

/* Number of elements of `s` with NN_BATCH taken as `batch`. */
int64_t nn_shape_numel(const nn_shape *s, int64_t batch);
/* Same dims? */
int nn_shape_equal(const nn_shape *a, const nn_shape *b);
/* Writes "[N,112,112,3]" into buf. */
const char *nn_shape_str(const nn_shape *s, char *buf, size_t len);

static inline int nn_tensor_is_const(const nn_graph *g, int t)
{
    return t >= 0 && g->tensors[t].data != NULL;
}

/* Multiply-adds of one node for one batch element (conv, fc; 0 for cheap ops). */
int64_t nn_node_macs(const nn_graph *g, const nn_node *node);

/* Human-readable op name ("conv2d", "depthwise_conv2d", "add", ...). */
const char *nn_node_kind_name(const nn_node *node);

/* --- optimisation (optimize.c) ------------------------------------------------------------ */

/* Rewrites the graph: constant folding, fusion of bias/activations/per-channel Mul and Add into
 * convolutions and fully connected ops, PReLU pattern recognition, identity removal,
 * dead-node removal. Keeps the graph's semantics exactly (up to float rounding). */
int nn_graph_optimize(nn_graph *g);

/* --- reference backend (ref/) ------------------------------------------------------------- */

/* Runs `node` on concrete views. in[i] corresponds to node->inputs[i] (data NULL when the
 * input is absent); constant inputs are passed as views of their data. Plain C loops,
 * no allocation, no threads: the oracle for every other backend. */
int nn_ref_run(const nn_graph *g, const nn_node *node, const nn_view *in, nn_view *out);

struct pthreadpool;

/* --- own kernels for ops XNNPACK lacks (fast.c) ----------------------------------------- */

int nn_fast_supports(const nn_graph *g, const nn_node *node);
/* pool: intra-op threads (NULL: the calling thread). */
int nn_fast_run(const nn_graph *g, const nn_node *node, const nn_view *in, nn_view *out,
                struct pthreadpool *pool);
/* Depthwise convolution, multiplier 1, AVX-512 (dwconv.c); preferred over XNNPACK's. */
int nn_dwconv_supports(const nn_graph *g, const nn_node *node);
int nn_dwconv_run(const nn_graph *g, const nn_node *node, const nn_view *in, nn_view *out,
                  struct pthreadpool *pool);

/* Convolutions (not depthwise) and fully connected ops as one GEMM with an own AVX-512 kernel
 * (gemm.c); preferred over XNNPACK's. nn_gemm_pack() packs the weights into node->packed
 * (once, at load); nn_gemm_run() needs them. */
int nn_gemm_supports(const nn_graph *g, const nn_node *node);
int nn_gemm_pack(nn_graph *g, nn_node *node);
int nn_gemm_run(const nn_graph *g, const nn_node *node, const nn_view *in, nn_view *out,
                struct pthreadpool *pool);

/* 3x3 stride-1 convolutions by Winograd F(2x2, 3x3) or F(4x4, 3x3) (winograd.c).
 * nn_wino_supports(): the kernel can run the node (any padding, every fused epilogue of the
 * GEMM path); nn_wino_preferred(): it also measured faster than the GEMM there (the rule
 * applied at load). nn_wino_pack() transforms the weights into node->wino (once, at load) for
 * output tiles of `tile` x `tile` (2 or 4; 0: the size the rule chooses). nn_wino_run() needs
 * nn_wino_scratch_floats() (after the pack) floats of 64-byte aligned scratch per intra-op
 * thread (fewer threads work when the scratch holds fewer slices). */
int nn_wino_supports(const nn_graph *g, const nn_node *node);
int nn_wino_preferred(const nn_graph *g, const nn_node *node);
int nn_wino_pack(nn_graph *g, nn_node *node, int tile);
size_t nn_wino_scratch_floats(const nn_graph *g, const nn_node *node);
int nn_wino_run(const nn_graph *g, const nn_node *node, const nn_view *in, nn_view *out,
                struct pthreadpool *pool, float *scratch, size_t scratch_floats);
/* Tests only: run the portable C code even where the CPU has AVX-512 (nonzero), or not. */
void nn_wino_force_portable(int on);

/* --- XNNPACK backend (xnn.c) -------------------------------------------------------------- */

typedef struct nn_xnn_op nn_xnn_op;

/* Initialises XNNPACK once per process (thread-safe). */
int nn_xnn_init(void);
/* Whether this backend can run `node` (op kind, params, constness of inputs). */
int nn_xnn_supports(const nn_graph *g, const nn_node *node);
/* Creates the XNNPACK operator for `node`, packing its constant weights. */
int nn_xnn_create(const nn_graph *g, const nn_node *node, nn_xnn_op **out);
/* Binds shapes (batch resolved) and data pointers; called when the batch size or buffers
 * change. Input and output buffers must have NN_XNN_EXTRA_BYTES readable past their end. */
int nn_xnn_setup(nn_xnn_op *op, const nn_graph *g, const nn_node *node, const nn_view *in,
                 nn_view *out, struct pthreadpool *pool);
int nn_xnn_run(nn_xnn_op *op, struct pthreadpool *pool);
void nn_xnn_destroy(nn_xnn_op *op);
#define NN_XNN_EXTRA_BYTES 64

#endif
