/*
 * The reference backend's private interface: one kernel per op, and the helpers they share
 * (shape checks, error messages, fused activations).
 *
 * Every kernel takes the node (for its params and name) and concrete views; none reads the
 * graph, allocates or starts threads. Each validates the shapes it is given against its params
 * and fails with base_error_set() naming the node and the shapes, so a planner bug shows up as
 * a clear error rather than as an out-of-bounds read.
 */
#ifndef VULTUS_NN_REF_H
#define VULTUS_NN_REF_H

#include "base/base.h"
#include "nn/graph.h"

#include <stddef.h>
#include <stdint.h>

int nn_ref_conv2d(const nn_node *node, const nn_view *in, nn_view *out);
int nn_ref_fully_connected(const nn_node *node, const nn_view *in, nn_view *out);
int nn_ref_binary(const nn_node *node, const nn_view *in, nn_view *out);
int nn_ref_unary(const nn_node *node, const nn_view *in, nn_view *out);
int nn_ref_prelu(const nn_node *node, const nn_view *in, nn_view *out);
int nn_ref_softmax(const nn_node *node, const nn_view *in, nn_view *out);
int nn_ref_pool(const nn_node *node, const nn_view *in, nn_view *out);
int nn_ref_reduce(const nn_node *node, const nn_view *in, nn_view *out);
int nn_ref_pad(const nn_node *node, const nn_view *in, nn_view *out);
int nn_ref_reshape(const nn_node *node, const nn_view *in, nn_view *out);
int nn_ref_concat(const nn_node *node, const nn_view *in, nn_view *out);
int nn_ref_slice(const nn_node *node, const nn_view *in, nn_view *out);
int nn_ref_resize_bilinear(const nn_node *node, const nn_view *in, nn_view *out);
int nn_ref_depth_to_space(const nn_node *node, const nn_view *in, nn_view *out);

/* The node's name for messages ("?" when it has none, as in unit tests). */
const char *nn_ref_node_name(const nn_node *node);

/* Writes "[1,112,112,3]" into buf (truncated to len). */
const char *nn_ref_shape_str(const nn_shape *s, char *buf, size_t len);
/* A shape string in a temporary that lives until the end of the enclosing block, so that
 * several can be passed to one base_error_set() call. */
#define NN_REF_SHAPE(s) nn_ref_shape_str((s), (char[96]){0}, 96)

/* Number of elements (1 for rank 0). */
int64_t nn_ref_numel(const nn_shape *s);
/* Row-major strides in elements. */
void nn_ref_strides(const nn_shape *s, int64_t stride[NN_MAX_DIMS]);
int nn_ref_shape_equal(const nn_shape *a, const nn_shape *b);

/* Checks that a view has a valid rank, non-negative dims and data when it has elements. */
int nn_ref_check_view(const nn_node *node, const nn_view *v, const char *what);
/* Checks that the node has at least `n` inputs and that inputs 0..n-1 are valid views. */
int nn_ref_check_inputs(const nn_node *node, const nn_view *in, int n);
/* Input i when present (data not NULL), else NULL. */
const nn_view *nn_ref_optional_input(const nn_node *node, const nn_view *in, int i);

/* A fused activation resolved for a kernel: for PRELU, `slope` points at `slope_n` values
 * (1: the same slope for every channel, else one per output channel). */
typedef struct nn_ref_act {
    nn_act act;
    const float *slope;
    int64_t slope_n;
} nn_ref_act;

/* Validates `act` for a kernel whose output has `channels` channels in its last dim. PRELU
 * takes its slope from input `slope_input` when allow_prelu is set; otherwise PRELU fails. */
int nn_ref_act_resolve(const nn_node *node, const nn_act *act, const nn_view *in, int slope_input,
                       int allow_prelu, int64_t channels, nn_ref_act *out);

/* Applies a resolved activation to one row of `n` channels. Comparisons rather than
 * fminf/fmaxf so that a NaN stays visible in the output. */
static inline void nn_ref_act_row(const nn_ref_act *a, float *row, int64_t n)
{
    switch (a->act.kind) {
    case NN_ACT_NONE: break;
    case NN_ACT_CLAMP: {
        const float lo = a->act.lo, hi = a->act.hi;
        for (int64_t i = 0; i < n; i++) {
            float v = row[i];
            row[i] = v < lo ? lo : (v > hi ? hi : v);
        }
        break;
    }
    case NN_ACT_LEAKY: {
        const float alpha = a->act.alpha;
        for (int64_t i = 0; i < n; i++)
            row[i] = row[i] >= 0.0f ? row[i] : alpha * row[i];
        break;
    }
    case NN_ACT_PRELU:
        for (int64_t i = 0; i < n; i++) {
            float s = a->slope_n == 1 ? a->slope[0] : a->slope[i];
            row[i] = row[i] >= 0.0f ? row[i] : s * row[i];
        }
        break;
    }
}

#endif
