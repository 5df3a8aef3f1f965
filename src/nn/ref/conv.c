/*
 * Convolutions and fully connected layers, with the bias and activation fused.
 *
 * The weights keep TensorFlow's layouts ([KH,KW,Cin,Cout], [KH,KW,C,M], [K,M]), whose last dim
 * is the output channel, so the innermost loop runs over output channels: one input value
 * times a contiguous weight row added into a contiguous output row. Sums start at zero and
 * run over (ky, kx, ci) in order, in float like TensorFlow; the bias is added at the end, as
 * TensorFlow's separate BiasAdd does.
 */
#include "nn/ref/ref.h"

#include <math.h>
#include <string.h>

static int conv_fail(const nn_node *node, const char *why, const nn_view *in, const nn_view *out)
{
    const nn_conv_params *p = &node->p.conv;
    return base_error_set(
        BASE_ERR_INVALID,
        "node %s: %s: %s x %s filter %s -> %s (kernel %dx%d stride %d,%d dilation %d,%d "
        "pad t%d b%d l%d r%d)",
        nn_ref_node_name(node), p->depthwise ? "depthwise_conv2d" : "conv2d", why,
        NN_REF_SHAPE(&in[0].shape), NN_REF_SHAPE(&in[1].shape), NN_REF_SHAPE(&out->shape),
        p->kernel_h, p->kernel_w, p->stride_h, p->stride_w, p->dilation_h, p->dilation_w,
        p->pad_top, p->pad_bottom, p->pad_left, p->pad_right);
}

/* A convolution with a fused 2x2 stride-2 pooling (p->pool, never depthwise): each pooled
 * pixel's four convolution outputs are computed in turn, in chunks of channels on the stack,
 * each exactly as the unfused loop below computes it (sums over (ky, kx, ci) in order, then
 * the bias, then the activation), and pooled as nn_ref_pool does: the maximum (NaNs skipped)
 * or the sum in window order divided by 4. */
static void conv_pooled(const nn_conv_params *p, const nn_ref_act *act, const float *xd,
                        const float *wd, const float *bd, const float *ps, const float *pt,
                        int64_t N, int64_t H, int64_t W, int64_t C, int64_t CO, int64_t PH,
                        int64_t PW, float *out)
{
    enum { CHUNK = 256 };
    float v[CHUNK];
    const int64_t KH = p->kernel_h, KW = p->kernel_w;
    for (int64_t n = 0; n < N; n++)
        for (int64_t py = 0; py < PH; py++)
            for (int64_t px = 0; px < PW; px++) {
                float *restrict o = out + ((n * PH + py) * PW + px) * CO;
                for (int64_t m0 = 0; m0 < CO; m0 += CHUNK) {
                    const int64_t cnt = CO - m0 < CHUNK ? CO - m0 : CHUNK;
                    for (int e = 0; e < 4; e++) {
                        const int64_t oy = 2 * py + e / 2, ox = 2 * px + e % 2;
                        memset(v, 0, (size_t)cnt * sizeof *v);
                        for (int64_t ky = 0; ky < KH; ky++) {
                            const int64_t iy = oy * p->stride_h - p->pad_top + ky * p->dilation_h;
                            if (iy < 0 || iy >= H) continue;
                            for (int64_t kx = 0; kx < KW; kx++) {
                                const int64_t ix =
                                    ox * p->stride_w - p->pad_left + kx * p->dilation_w;
                                if (ix < 0 || ix >= W) continue;
                                const float *xr = xd + ((n * H + iy) * W + ix) * C;
                                const float *wk = wd + (ky * KW + kx) * C * CO + m0;
                                for (int64_t c = 0; c < C; c++) {
                                    const float xv = xr[c];
                                    const float *restrict wr = wk + c * CO;
                                    for (int64_t m = 0; m < cnt; m++)
                                        v[m] += xv * wr[m];
                                }
                            }
                        }
                        if (bd)
                            for (int64_t m = 0; m < cnt; m++)
                                v[m] += bd[m0 + m];
                        nn_ref_act a = *act;
                        if (a.slope && a.slope_n > 1) a.slope += m0;
                        nn_ref_act_row(&a, v, cnt);
                        if (ps)
                            for (int64_t m = 0; m < cnt; m++) {
                                const float sv = v[m] * ps[m0 + m]; /* not contracted into an FMA */
                                v[m] = sv + pt[m0 + m];
                            }
                        float *restrict oc = o + m0;
                        if (p->pool_kind == NN_POOL_MAX) {
                            for (int64_t m = 0; m < cnt; m++)
                                oc[m] = e == 0 ? (v[m] > -INFINITY ? v[m] : -INFINITY)
                                               : (v[m] > oc[m] ? v[m] : oc[m]);
                        } else {
                            for (int64_t m = 0; m < cnt; m++)
                                oc[m] = (e == 0 ? 0.0f : oc[m]) + v[m];
                        }
                    }
                    if (p->pool_kind == NN_POOL_AVG)
                        for (int64_t m = 0; m < cnt; m++)
                            o[m0 + m] /= 4.0f;
                }
            }
}

/* x: [N,H,W,Cin] f32, w: [KH,KW,Cin,Cout] or depthwise [KH,KW,C,M] (Cout = C*M, channel
 * c*M+m), b: [Cout] optional, slope (input 3, PRELU): [Cout] -> y: [N,OH,OW,Cout], or the
 * pooled [N,OH/2,OW/2,Cout] with p->pool */
int nn_ref_conv2d(const nn_node *node, const nn_view *in, nn_view *out)
{
    const nn_conv_params *p = &node->p.conv;
    int rc = nn_ref_check_inputs(node, in, 2);
    if (rc < 0) return rc;
    const nn_view *x = &in[0], *w = &in[1];
    const nn_view *b = nn_ref_optional_input(node, in, 2);
    if (x->shape.rank != 4 || w->shape.rank != 4 || out->shape.rank != 4)
        return conv_fail(node, "ranks must be 4", in, out);
    if (p->kernel_h < 1 || p->kernel_w < 1 || p->stride_h < 1 || p->stride_w < 1 ||
        p->dilation_h < 1 || p->dilation_w < 1 || p->pad_top < 0 || p->pad_bottom < 0 ||
        p->pad_left < 0 || p->pad_right < 0)
        return conv_fail(node, "bad params", in, out);

    const int64_t N = x->shape.dim[0], H = x->shape.dim[1], W = x->shape.dim[2];
    const int64_t C = x->shape.dim[3];
    const int64_t KH = w->shape.dim[0], KW = w->shape.dim[1];
    if (KH != p->kernel_h || KW != p->kernel_w)
        return conv_fail(node, "filter does not match the kernel size", in, out);
    if (w->shape.dim[2] != C) return conv_fail(node, "filter input channels differ", in, out);
    const int64_t M = w->shape.dim[3]; /* output channels, or the depth multiplier */
    const int64_t CO = p->depthwise ? C * M : M;

    const int64_t ekh = (KH - 1) * p->dilation_h + 1, ekw = (KW - 1) * p->dilation_w + 1;
    const int64_t ph = H + p->pad_top + p->pad_bottom, pw = W + p->pad_left + p->pad_right;
    if (ph < ekh || pw < ekw) return conv_fail(node, "kernel larger than padded input", in, out);
    const int64_t OH = (ph - ekh) / p->stride_h + 1, OW = (pw - ekw) / p->stride_w + 1;
    if (p->pool && (p->pool != 2 || p->depthwise || p->residual || OH < 2 || OW < 2))
        return conv_fail(node, "bad fused pooling", in, out);
    const int64_t YH = p->pool ? OH / 2 : OH, YW = p->pool ? OW / 2 : OW;
    if (out->shape.dim[0] != N || out->shape.dim[1] != YH || out->shape.dim[2] != YW ||
        out->shape.dim[3] != CO)
        return conv_fail(node, "output shape differs from the computed one", in, out);
    if (b) {
        if ((rc = nn_ref_check_view(node, b, "bias")) < 0) return rc;
        if (nn_ref_numel(&b->shape) != CO) return conv_fail(node, "bias size", in, out);
    }
    nn_ref_act act;
    if ((rc = nn_ref_act_resolve(node, &p->act, in, 3, 1, CO, &act)) < 0) return rc;
    const float *rd = NULL;
    if (p->residual) {
        if (node->n_inputs != 5 || !in[4].data || !nn_shape_equal(&in[4].shape, &out->shape))
            return conv_fail(node, "residual input must have the output's shape", in, out);
        rd = in[4].data;
    }

    const float *xd = x->data, *wd = w->data;
    const float *bd = b ? b->data : NULL;
    /* A post-activation scale and shift: Mul then Add, two roundings, as TensorFlow runs them. */
    const float *ps = NULL, *pt = NULL;
    if (p->post_affine) {
        if (node->n_inputs != 7 || !in[5].data || !in[6].data || nn_ref_numel(&in[5].shape) != CO ||
            nn_ref_numel(&in[6].shape) != CO)
            return conv_fail(node, "scale and shift must have one value per output channel", in,
                             out);
        ps = in[5].data;
        pt = in[6].data;
    }
    if (p->pool) {
        conv_pooled(p, &act, xd, wd, bd, ps, pt, N, H, W, C, CO, YH, YW, out->data);
        return 0;
    }
    for (int64_t n = 0; n < N; n++) {
        for (int64_t oy = 0; oy < OH; oy++) {
            for (int64_t ox = 0; ox < OW; ox++) {
                float *restrict o = out->data + ((n * OH + oy) * OW + ox) * CO;
                memset(o, 0, (size_t)CO * sizeof *o);
                for (int64_t ky = 0; ky < KH; ky++) {
                    const int64_t iy = oy * p->stride_h - p->pad_top + ky * p->dilation_h;
                    if (iy < 0 || iy >= H) continue;
                    for (int64_t kx = 0; kx < KW; kx++) {
                        const int64_t ix = ox * p->stride_w - p->pad_left + kx * p->dilation_w;
                        if (ix < 0 || ix >= W) continue;
                        const float *xr = xd + ((n * H + iy) * W + ix) * C;
                        const float *wk = wd + (ky * KW + kx) * C * M;
                        if (p->depthwise) {
                            for (int64_t c = 0; c < C; c++) {
                                const float xv = xr[c];
                                const float *restrict wr = wk + c * M;
                                float *restrict oc = o + c * M;
                                for (int64_t m = 0; m < M; m++)
                                    oc[m] += xv * wr[m];
                            }
                        } else {
                            for (int64_t c = 0; c < C; c++) {
                                const float xv = xr[c];
                                const float *restrict wr = wk + c * M;
                                for (int64_t m = 0; m < M; m++)
                                    o[m] += xv * wr[m];
                            }
                        }
                    }
                }
                if (bd)
                    for (int64_t m = 0; m < CO; m++)
                        o[m] += bd[m];
                if (rd) {
                    const float *r = rd + ((n * OH + oy) * OW + ox) * CO;
                    for (int64_t m = 0; m < CO; m++)
                        o[m] += r[m];
                }
                nn_ref_act_row(&act, o, CO);
                if (ps)
                    for (int64_t m = 0; m < CO; m++) {
                        const float sv = o[m] * ps[m]; /* not contracted into an FMA */
                        o[m] = sv + pt[m];
                    }
            }
        }
    }
    return 0;
}

/* x: [N,K] (leading dims flattened: [...,K]), w: [K,M], b: [M] optional,
 * slope (input 3, PRELU): [M] -> y: [N,M] */
int nn_ref_fully_connected(const nn_node *node, const nn_view *in, nn_view *out)
{
    int rc = nn_ref_check_inputs(node, in, 2);
    if (rc < 0) return rc;
    const nn_view *x = &in[0], *w = &in[1];
    const nn_view *b = nn_ref_optional_input(node, in, 2);
    if (b && (rc = nn_ref_check_view(node, b, "bias")) < 0) return rc;
    const int64_t K = w->shape.rank == 2 ? w->shape.dim[0] : -1;
    const int64_t M = w->shape.rank == 2 ? w->shape.dim[1] : -1;
    const int64_t rows = x->shape.rank >= 1 && K > 0 ? nn_ref_numel(&x->shape) / K : -1;
    if (K < 0 || x->shape.rank < 1 || x->shape.dim[x->shape.rank - 1] != K || out->shape.rank < 1 ||
        out->shape.dim[out->shape.rank - 1] != M || nn_ref_numel(&out->shape) != rows * M ||
        (b && nn_ref_numel(&b->shape) != M))
        return base_error_set(BASE_ERR_INVALID, "node %s: fully_connected: x %s w %s bias %s -> %s",
                              nn_ref_node_name(node), NN_REF_SHAPE(&x->shape),
                              NN_REF_SHAPE(&w->shape), b ? NN_REF_SHAPE(&b->shape) : "none",
                              NN_REF_SHAPE(&out->shape));
    nn_ref_act act;
    if ((rc = nn_ref_act_resolve(node, &node->p.fc.act, in, 3, 1, M, &act)) < 0) return rc;

    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x->data + r * K;
        float *restrict o = out->data + r * M;
        memset(o, 0, (size_t)M * sizeof *o);
        for (int64_t k = 0; k < K; k++) {
            const float xv = xr[k];
            const float *restrict wr = w->data + k * M;
            for (int64_t m = 0; m < M; m++)
                o[m] += xv * wr[m];
        }
        if (b)
            for (int64_t m = 0; m < M; m++)
                o[m] += b->data[m];
        nn_ref_act_row(&act, o, M);
    }
    return 0;
}
