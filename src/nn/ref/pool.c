/*
 * Pooling and reductions.
 */
#include "nn/ref/ref.h"

#include <math.h>
#include <string.h>

/* x: [N,H,W,C] -> y: [N,OH,OW,C]. Max pooling ignores the padding; average pooling divides
 * by the number of in-bounds elements of each window (TensorFlow). A window that lies wholly
 * in the padding (only possible when a pad is at least the kernel size) gives 0. */
int nn_ref_pool(const nn_node *node, const nn_view *in, nn_view *out)
{
    const nn_pool_params *p = &node->p.pool;
    int rc = nn_ref_check_inputs(node, in, 1);
    if (rc < 0) return rc;
    const nn_view *x = &in[0];
    int ok = x->shape.rank == 4 && out->shape.rank == 4 && p->kernel_h >= 1 && p->kernel_w >= 1 &&
             p->stride_h >= 1 && p->stride_w >= 1 && p->pad_top >= 0 && p->pad_bottom >= 0 &&
             p->pad_left >= 0 && p->pad_right >= 0 &&
             (p->kind == NN_POOL_MAX || p->kind == NN_POOL_AVG);
    int64_t N = 0, H = 0, W = 0, C = 0, OH = 0, OW = 0;
    if (ok) {
        N = x->shape.dim[0], H = x->shape.dim[1], W = x->shape.dim[2], C = x->shape.dim[3];
        const int64_t ph = H + p->pad_top + p->pad_bottom, pw = W + p->pad_left + p->pad_right;
        ok = ph >= p->kernel_h && pw >= p->kernel_w;
        if (ok) {
            OH = (ph - p->kernel_h) / p->stride_h + 1;
            OW = (pw - p->kernel_w) / p->stride_w + 1;
            ok = out->shape.dim[0] == N && out->shape.dim[1] == OH && out->shape.dim[2] == OW &&
                 out->shape.dim[3] == C;
        }
    }
    if (!ok)
        return base_error_set(
            BASE_ERR_INVALID,
            "node %s: %s: %s -> %s (kernel %dx%d stride %d,%d pad t%d b%d l%d "
            "r%d)",
            nn_ref_node_name(node), p->kind == NN_POOL_MAX ? "max_pool" : "avg_pool",
            NN_REF_SHAPE(&x->shape), NN_REF_SHAPE(&out->shape), p->kernel_h, p->kernel_w,
            p->stride_h, p->stride_w, p->pad_top, p->pad_bottom, p->pad_left, p->pad_right);

    for (int64_t n = 0; n < N; n++) {
        for (int64_t oy = 0; oy < OH; oy++) {
            const int64_t y0 = oy * p->stride_h - p->pad_top;
            const int64_t ya = y0 < 0 ? 0 : y0;
            const int64_t yb = y0 + p->kernel_h < H ? y0 + p->kernel_h : H;
            for (int64_t ox = 0; ox < OW; ox++) {
                const int64_t x0 = ox * p->stride_w - p->pad_left;
                const int64_t xa = x0 < 0 ? 0 : x0;
                const int64_t xb = x0 + p->kernel_w < W ? x0 + p->kernel_w : W;
                float *restrict o = out->data + ((n * OH + oy) * OW + ox) * C;
                const int64_t count = (yb > ya ? yb - ya : 0) * (xb > xa ? xb - xa : 0);
                if (count == 0) {
                    memset(o, 0, (size_t)C * sizeof *o);
                    continue;
                }
                for (int64_t c = 0; c < C; c++)
                    o[c] = p->kind == NN_POOL_MAX ? -INFINITY : 0.0f;
                for (int64_t iy = ya; iy < yb; iy++) {
                    for (int64_t ix = xa; ix < xb; ix++) {
                        const float *restrict xr = x->data + ((n * H + iy) * W + ix) * C;
                        if (p->kind == NN_POOL_MAX) {
                            for (int64_t c = 0; c < C; c++)
                                o[c] = xr[c] > o[c] ? xr[c] : o[c];
                        } else {
                            for (int64_t c = 0; c < C; c++)
                                o[c] += xr[c];
                        }
                    }
                }
                if (p->kind == NN_POOL_AVG)
                    for (int64_t c = 0; c < C; c++)
                        o[c] /= (float)count;
            }
        }
    }
    return 0;
}

/* x: [...] -> x with the axes in the bitmask reduced: kept as 1s (keep_dims) or dropped.
 * The element order is the same either way, so either output shape is accepted. Sums run in
 * float, in the input's memory order; the mean is the sum divided by the count. */
int nn_ref_reduce(const nn_node *node, const nn_view *in, nn_view *out)
{
    const nn_reduce_params *p = &node->p.reduce;
    int rc = nn_ref_check_inputs(node, in, 1);
    if (rc < 0) return rc;
    const nn_shape *xs = &in[0].shape;
    nn_shape keep = *xs, drop = {.rank = 0};
    int64_t count = 1;
    for (int i = 0; i < xs->rank; i++) {
        if (p->axes & (1u << i)) {
            keep.dim[i] = 1;
            count *= xs->dim[i];
        } else {
            drop.dim[drop.rank++] = xs->dim[i];
        }
    }
    const int bad_axes = xs->rank < 32 && (p->axes >> xs->rank) != 0;
    if (bad_axes || (unsigned)p->kind > NN_REDUCE_MIN ||
        (!nn_ref_shape_equal(&out->shape, &keep) && !nn_ref_shape_equal(&out->shape, &drop)))
        return base_error_set(BASE_ERR_INVALID,
                              "node %s: reduce kind %d axes 0x%x keep_dims %d: %s -> %s",
                              nn_ref_node_name(node), (int)p->kind, (unsigned)p->axes, p->keep_dims,
                              NN_REF_SHAPE(xs), NN_REF_SHAPE(&out->shape));

    /* Strides into the output (keep_dims layout) for each input axis: 0 along reduced axes. */
    int64_t ost[NN_MAX_DIMS];
    nn_ref_strides(&keep, ost);
    for (int i = 0; i < xs->rank; i++)
        if (p->axes & (1u << i)) ost[i] = 0;

    const int64_t on = nn_ref_numel(&keep), xn = nn_ref_numel(xs);
    const float init = p->kind == NN_REDUCE_MAX   ? -INFINITY
                       : p->kind == NN_REDUCE_MIN ? INFINITY
                                                  : 0.0f;
    for (int64_t i = 0; i < on; i++)
        out->data[i] = init;
    if (xn == 0) return 0;

    const int last = xs->rank - 1;
    const int64_t inner = xs->rank ? xs->dim[last] : 1;
    const int64_t inner_st = xs->rank ? ost[last] : 0;
    const int64_t rows = xn / inner;
    for (int64_t r = 0; r < rows; r++) {
        int64_t rem = r, oo = 0;
        for (int i = last - 1; i >= 0; i--) {
            oo += (rem % xs->dim[i]) * ost[i];
            rem /= xs->dim[i];
        }
        const float *xr = in[0].data + r * inner;
        float *o = out->data + oo;
        switch (p->kind) {
        case NN_REDUCE_MEAN:
        case NN_REDUCE_SUM:
            for (int64_t k = 0; k < inner; k++)
                o[k * inner_st] += xr[k];
            break;
        case NN_REDUCE_MAX:
            for (int64_t k = 0; k < inner; k++)
                if (xr[k] > o[k * inner_st] || isnan(xr[k])) o[k * inner_st] = xr[k];
            break;
        case NN_REDUCE_MIN:
            for (int64_t k = 0; k < inner; k++)
                if (xr[k] < o[k * inner_st] || isnan(xr[k])) o[k * inner_st] = xr[k];
            break;
        }
    }
    if (p->kind == NN_REDUCE_MEAN)
        for (int64_t i = 0; i < on; i++)
            out->data[i] /= (float)count;
    return 0;
}
