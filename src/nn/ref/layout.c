/*
 * Ops that move data without arithmetic (pad, reshape, concat, slice, depth_to_space) and
 * bilinear resizing.
 */
#include "nn/ref/ref.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* x: [d0..dr-1] -> [d0+before0+after0, ...], new elements set to `value`. */
int nn_ref_pad(const nn_node *node, const nn_view *in, nn_view *out)
{
    const nn_pad_params *p = &node->p.pad;
    int rc = nn_ref_check_inputs(node, in, 1);
    if (rc < 0) return rc;
    const nn_shape *xs = &in[0].shape, *os = &out->shape;
    int ok = xs->rank == os->rank;
    for (int i = 0; ok && i < xs->rank; i++)
        ok = p->before[i] >= 0 && p->after[i] >= 0 &&
             os->dim[i] == xs->dim[i] + p->before[i] + p->after[i];
    if (!ok)
        return base_error_set(BASE_ERR_INVALID, "node %s: pad: %s -> %s", nn_ref_node_name(node),
                              NN_REF_SHAPE(xs), NN_REF_SHAPE(os));
    const int64_t on = nn_ref_numel(os), xn = nn_ref_numel(xs);
    for (int64_t i = 0; i < on; i++)
        out->data[i] = p->value;
    if (xn == 0) return 0;
    if (xs->rank == 0) {
        out->data[0] = in[0].data[0];
        return 0;
    }
    int64_t ost[NN_MAX_DIMS];
    nn_ref_strides(os, ost);
    const int last = xs->rank - 1;
    const int64_t inner = xs->dim[last], rows = xn / inner;
    for (int64_t r = 0; r < rows; r++) {
        int64_t rem = r, oo = p->before[last];
        for (int i = last - 1; i >= 0; i--) {
            oo += (rem % xs->dim[i] + p->before[i]) * ost[i];
            rem /= xs->dim[i];
        }
        memcpy(out->data + oo, in[0].data + r * inner, (size_t)inner * sizeof(float));
    }
    return 0;
}

/* x: any shape -> same elements in a new shape; nothing to do when run in place. */
int nn_ref_reshape(const nn_node *node, const nn_view *in, nn_view *out)
{
    int rc = nn_ref_check_inputs(node, in, 1);
    if (rc < 0) return rc;
    const int64_t n = nn_ref_numel(&in[0].shape);
    if (n != nn_ref_numel(&out->shape))
        return base_error_set(BASE_ERR_INVALID, "node %s: reshape: %s -> %s",
                              nn_ref_node_name(node), NN_REF_SHAPE(&in[0].shape),
                              NN_REF_SHAPE(&out->shape));
    if (out->data != in[0].data && n > 0) memmove(out->data, in[0].data, (size_t)n * sizeof(float));
    return 0;
}

/* x0..xn-1: equal shapes but along `axis` -> concatenated along `axis`. */
int nn_ref_concat(const nn_node *node, const nn_view *in, nn_view *out)
{
    const int axis = node->p.concat.axis;
    int rc = nn_ref_check_inputs(node, in, node->n_inputs > 0 ? node->n_inputs : 1);
    if (rc < 0) return rc;
    const nn_shape *os = &out->shape;
    int ok = axis >= 0 && axis < os->rank;
    int64_t total = 0;
    for (int k = 0; ok && k < node->n_inputs; k++) {
        const nn_shape *s = &in[k].shape;
        ok = s->rank == os->rank;
        for (int i = 0; ok && i < s->rank; i++)
            ok = i == axis || s->dim[i] == os->dim[i];
        if (ok) total += s->dim[axis];
    }
    if (!ok || total != os->dim[axis]) {
        char list[256] = "";
        size_t used = 0;
        for (int k = 0; k < node->n_inputs && used < sizeof list; k++) {
            int n = snprintf(list + used, sizeof list - used, "%s%s", k ? " " : "",
                             NN_REF_SHAPE(&in[k].shape));
            if (n < 0) break;
            used += (size_t)n;
        }
        return base_error_set(BASE_ERR_INVALID, "node %s: concat axis %d: %s -> %s",
                              nn_ref_node_name(node), axis, list, NN_REF_SHAPE(os));
    }
    int64_t outer = 1, after = 1;
    for (int i = 0; i < axis; i++)
        outer *= os->dim[i];
    for (int i = axis + 1; i < os->rank; i++)
        after *= os->dim[i];
    const int64_t orow = os->dim[axis] * after;
    int64_t at = 0;
    for (int k = 0; k < node->n_inputs; k++) {
        const int64_t row = in[k].shape.dim[axis] * after;
        for (int64_t o = 0; o < outer && row > 0; o++)
            memcpy(out->data + o * orow + at, in[k].data + o * row, (size_t)row * sizeof(float));
        at += row;
    }
    return 0;
}

/* x: [d0..dr-1] -> the elements begin[i] + k*stride[i], k < size[i], in order, written densely
 * (the output shape may add or drop size-1 dims). size[0] < 0 stands for the whole batch. */
int nn_ref_slice(const nn_node *node, const nn_view *in, nn_view *out)
{
    const nn_slice_params *p = &node->p.slice;
    int rc = nn_ref_check_inputs(node, in, 1);
    if (rc < 0) return rc;
    const nn_shape *xs = &in[0].shape;
    int64_t size[NN_MAX_DIMS];
    int64_t count = 1;
    int ok = p->rank == xs->rank;
    for (int i = 0; ok && i < xs->rank; i++) {
        size[i] = i == 0 && p->size[0] < 0 ? xs->dim[0] : p->size[i];
        count *= size[i];
        if (size[i] < 0 || (size[i] > 1 && p->stride[i] == 0)) ok = 0;
        if (ok && size[i] > 0) {
            const int64_t first = p->begin[i], lastx = p->begin[i] + (size[i] - 1) * p->stride[i];
            ok = first >= 0 && first < xs->dim[i] && lastx >= 0 && lastx < xs->dim[i];
        }
    }
    if (!ok || count != nn_ref_numel(&out->shape)) {
        char b[128] = "", s[128] = "", z[128] = "";
        size_t ub = 0, us = 0, uz = 0;
        for (int i = 0; i < p->rank && i < NN_MAX_DIMS; i++) {
            ub += (size_t)snprintf(b + ub, sizeof b - ub, "%s%lld", i ? "," : "",
                                   (long long)p->begin[i]);
            us += (size_t)snprintf(s + us, sizeof s - us, "%s%lld", i ? "," : "",
                                   (long long)p->stride[i]);
            uz += (size_t)snprintf(z + uz, sizeof z - uz, "%s%lld", i ? "," : "",
                                   (long long)p->size[i]);
        }
        return base_error_set(
            BASE_ERR_INVALID, "node %s: slice rank %d begin [%s] stride [%s] size [%s]: %s -> %s",
            nn_ref_node_name(node), p->rank, b, s, z, NN_REF_SHAPE(xs), NN_REF_SHAPE(&out->shape));
    }
    if (count == 0) return 0;
    if (xs->rank == 0) {
        out->data[0] = in[0].data[0];
        return 0;
    }
    int64_t xst[NN_MAX_DIMS];
    nn_ref_strides(xs, xst);
    const int last = xs->rank - 1;
    const int64_t inner = size[last], step = p->stride[last] * xst[last];
    const int64_t rows = count / inner;
    float *o = out->data;
    for (int64_t r = 0; r < rows; r++) {
        int64_t rem = r, xo = p->begin[last] * xst[last];
        for (int i = last - 1; i >= 0; i--) {
            xo += (p->begin[i] + (rem % size[i]) * p->stride[i]) * xst[i];
            rem /= size[i];
        }
        const float *xr = in[0].data + xo;
        for (int64_t k = 0; k < inner; k++)
            *o++ = xr[k * step];
    }
    return 0;
}

/* TensorFlow's source coordinate for output index `i` along one axis: the two neighbours and
 * the weight of the upper one (compute_interpolation_weights in resize_bilinear_op.cc). */
typedef struct resize_tap {
    int64_t lo, hi;
    float frac;
} resize_tap;

static resize_tap resize_tap_at(int64_t i, float scale, int64_t in_size, int half_pixel)
{
    const float src = half_pixel ? ((float)i + 0.5f) * scale - 0.5f : (float)i * scale;
    const float fl = floorf(src);
    resize_tap t;
    t.lo = fl > 0.0f ? (int64_t)fl : 0;
    t.hi = (int64_t)ceilf(src);
    if (t.hi > in_size - 1) t.hi = in_size - 1;
    if (t.hi < 0) t.hi = 0;
    if (t.lo > in_size - 1) t.lo = in_size - 1;
    t.frac = src - fl;
    return t;
}

/* TensorFlow's CalculateResizeScale. */
static float resize_scale(int64_t in_size, int64_t out_size, int align_corners)
{
    return align_corners && out_size > 1 ? (float)(in_size - 1) / (float)(out_size - 1)
                                         : (float)in_size / (float)out_size;
}

/* x: [N,H,W,C] -> [N,OH,OW,C], TensorFlow's ResizeBilinear (align_corners, half_pixel_centers;
 * TF rejects both set, here the formulas simply combine). */
int nn_ref_resize_bilinear(const nn_node *node, const nn_view *in, nn_view *out)
{
    const nn_resize_params *p = &node->p.resize;
    int rc = nn_ref_check_inputs(node, in, 1);
    if (rc < 0) return rc;
    const nn_shape *xs = &in[0].shape, *os = &out->shape;
    if (xs->rank != 4 || os->rank != 4 || os->dim[0] != xs->dim[0] || os->dim[3] != xs->dim[3] ||
        os->dim[1] != p->out_h || os->dim[2] != p->out_w || p->out_h < 1 || p->out_w < 1 ||
        xs->dim[1] < 1 || xs->dim[2] < 1)
        return base_error_set(BASE_ERR_INVALID, "node %s: resize_bilinear to %dx%d: %s -> %s",
                              nn_ref_node_name(node), p->out_h, p->out_w, NN_REF_SHAPE(xs),
                              NN_REF_SHAPE(os));
    const int64_t N = xs->dim[0], H = xs->dim[1], W = xs->dim[2], C = xs->dim[3];
    const int64_t OH = p->out_h, OW = p->out_w;
    const float sh = resize_scale(H, OH, p->align_corners);
    const float sw = resize_scale(W, OW, p->align_corners);
    for (int64_t n = 0; n < N; n++) {
        for (int64_t oy = 0; oy < OH; oy++) {
            const resize_tap ty = resize_tap_at(oy, sh, H, p->half_pixel_centers);
            const float *top = in[0].data + (n * H + ty.lo) * W * C;
            const float *bot = in[0].data + (n * H + ty.hi) * W * C;
            for (int64_t ox = 0; ox < OW; ox++) {
                const resize_tap tx = resize_tap_at(ox, sw, W, p->half_pixel_centers);
                const float *tl = top + tx.lo * C, *tr = top + tx.hi * C;
                const float *bl = bot + tx.lo * C, *br = bot + tx.hi * C;
                float *o = out->data + ((n * OH + oy) * OW + ox) * C;
                for (int64_t c = 0; c < C; c++) {
                    const float t = tl[c] + (tr[c] - tl[c]) * tx.frac;
                    const float b = bl[c] + (br[c] - bl[c]) * tx.frac;
                    o[c] = t + (b - t) * ty.frac;
                }
            }
        }
    }
    return 0;
}

/* x: [N,H,W,C*b*b] -> [N,H*b,W*b,C], TensorFlow's DCR order:
 * out[n, h*b+i, w*b+j, c] = in[n, h, w, (i*b+j)*C + c]. */
int nn_ref_depth_to_space(const nn_node *node, const nn_view *in, nn_view *out)
{
    const int64_t bs = node->p.d2s.block;
    int rc = nn_ref_check_inputs(node, in, 1);
    if (rc < 0) return rc;
    const nn_shape *xs = &in[0].shape, *os = &out->shape;
    if (bs < 1 || xs->rank != 4 || os->rank != 4 || xs->dim[3] % (bs * bs) != 0 ||
        os->dim[0] != xs->dim[0] || os->dim[1] != xs->dim[1] * bs ||
        os->dim[2] != xs->dim[2] * bs || os->dim[3] != xs->dim[3] / (bs * bs))
        return base_error_set(BASE_ERR_INVALID, "node %s: depth_to_space block %lld: %s -> %s",
                              nn_ref_node_name(node), (long long)bs, NN_REF_SHAPE(xs),
                              NN_REF_SHAPE(os));
    const int64_t N = xs->dim[0], H = xs->dim[1], W = xs->dim[2], C = os->dim[3];
    float *o = out->data;
    for (int64_t n = 0; n < N; n++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < bs; i++)
                for (int64_t w = 0; w < W; w++)
                    for (int64_t j = 0; j < bs; j++) {
                        const float *x =
                            in[0].data + ((n * H + h) * W + w) * xs->dim[3] + (i * bs + j) * C;
                        memcpy(o, x, (size_t)C * sizeof *o);
                        o += C;
                    }
    return 0;
}
