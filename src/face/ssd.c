/*
 * face-api's face detector: SSD with a MobileNetV1 backbone (TensorFlow's object detection API,
 * trained on WIDER FACE), 512x512 RGB in [-1, 1], built with the nn builder from the weights
 * manifest, which ships without a graph. The layers follow face-api.js's SsdMobilenetv1:
 *
 *   512x512x3 -> conv 3x3/2 (32) -> 13 pairs (depthwise 3x3 + batch norm + relu6, pointwise
 *   1x1 + offset + relu6; stride 2 at pairs 2, 4, 6, 12) -> 16x16x1024, with pair 11's output
 *   (32x32x512) kept for the first box predictor
 *   -> extra layers: 1x1 (256), 3x3/2 (512) 8x8, 1x1 (128), 3x3/2 (256) 4x4, 1x1 (128),
 *      3x3/2 (256) 2x2, 1x1 (64), 3x3/2 (128) 1x1, each + offset + relu6
 *   -> 6 box predictors (1x1 convolutions with bias) on 32x32 (3 anchors per cell), 16x16,
 *      8x8, 4x4, 2x2 and 1x1 (6 per cell): 3072 + 1536 + 384 + 96 + 24 + 6 = 5118 anchors,
 *      each with a box encoding (dy, dx, dh, dw) and 3 class logits (background, face, unused).
 *
 * The anchors themselves are a weight of the manifest (Output/extra_dim: ymin, xmin, ymax, xmax
 * in [0, 1] of the input); face_ssd_decode() turns encodings into boxes as TF's box coder does
 * (scales 10, 10, 5, 5).
 */
#include "face/face_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* face-api's batch-norm epsilon (float32 of 0.001). */
#define BN_EPSILON 0.0010000000474974513f

typedef struct net {
    nn_builder *b;
    const nn_weights *w;
} net;

static int weight(net *n, const char *fmt, int index, const char *suffix)
{
    char name[160];
    char prefix[96];
    snprintf(prefix, sizeof prefix, fmt, index);
    snprintf(name, sizeof name, "%s/%s", prefix, suffix);
    return nn_builder_weight(n->b, n->w, name);
}

/* conv (no bias) + per-channel offset + relu6: face-api's pointwiseConvLayer (any kernel). */
static int pointwise(net *n, const char *fmt, int index, int x, int stride)
{
    return nn_builder_conv2d(n->b, x, weight(n, fmt, index, "weights"),
                             weight(n, fmt, index, "convolution_bn_offset"), stride,
                             NN_PADDING_SAME, NN_ACTIVATION_RELU6);
}

/*
 * Depthwise 3x3 + batch norm + relu6. The batch norm is folded here into the filter and a
 * bias: y = (conv(x) - mean) * gamma / sqrt(var + eps) + beta.
 */
static int depthwise(net *n, int index, int x, int stride)
{
    char prefix[64], name[128];
    snprintf(prefix, sizeof prefix, "MobilenetV1/Conv2d_%d_depthwise", index);
    int rank_f, rank;
    int64_t dims_f[4], dims[4];
    snprintf(name, sizeof name, "%s/depthwise_weights", prefix);
    const float *filter = nn_weights_get(n->w, name, &rank_f, dims_f);
    static const char *const parts[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
    const float *bn[4];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s/BatchNorm/%s", prefix, parts[i]);
        bn[i] = nn_weights_get(n->w, name, &rank, dims);
        if (!bn[i]) return base_error_set(BASE_ERR_FORMAT, "ssd: weight %s missing", name);
    }
    if (!filter || rank_f != 4 || dims_f[3] != 1 || rank != 1 || dims[0] != dims_f[2])
        return base_error_set(BASE_ERR_FORMAT, "ssd: %s: unexpected weights", prefix);
    const int64_t channels = dims_f[2], taps = dims_f[0] * dims_f[1];
    float *f = malloc((size_t)(taps * channels) * sizeof *f);
    float *bias = malloc((size_t)channels * sizeof *bias);
    if (!f || !bias) {
        free(f);
        free(bias);
        return base_error_set(BASE_ERR_NOMEM, "ssd weights");
    }
    for (int64_t c = 0; c < channels; c++) {
        float a = bn[0][c] / sqrtf(bn[3][c] + BN_EPSILON);
        bias[c] = bn[1][c] - bn[2][c] * a;
        for (int64_t t = 0; t < taps; t++)
            f[t * channels + c] = filter[t * channels + c] * a;
    }
    snprintf(name, sizeof name, "%s/folded_filter", prefix);
    int tf = nn_builder_constant(n->b, name, 4, dims_f, f);
    snprintf(name, sizeof name, "%s/folded_bias", prefix);
    int tb = nn_builder_constant(n->b, name, 1, dims, bias);
    free(f);
    free(bias);
    return nn_builder_depthwise_conv2d(n->b, x, tf, tb, stride, NN_PADDING_SAME,
                                       NN_ACTIVATION_RELU6);
}

/* One box predictor on a hw x hw feature map with `anchors` per cell: encodings [hw*hw*a, 4]
 * and class logits [hw*hw*a, 3]. */
static void box_predictor(net *n, int index, int x, int hw, int anchors, int *boxes, int *classes)
{
    int e = nn_builder_conv2d(
        n->b, x, weight(n, "Prediction/BoxPredictor_%d/BoxEncodingPredictor", index, "weights"),
        weight(n, "Prediction/BoxPredictor_%d/BoxEncodingPredictor", index, "biases"), 1,
        NN_PADDING_SAME, NN_ACTIVATION_NONE);
    int c = nn_builder_conv2d(
        n->b, x, weight(n, "Prediction/BoxPredictor_%d/ClassPredictor", index, "weights"),
        weight(n, "Prediction/BoxPredictor_%d/ClassPredictor", index, "biases"), 1, NN_PADDING_SAME,
        NN_ACTIVATION_NONE);
    int64_t de[2] = {(int64_t)hw * hw * anchors, 4}, dc[2] = {(int64_t)hw * hw * anchors, 3};
    *boxes = nn_builder_reshape(n->b, e, 2, de);
    *classes = nn_builder_reshape(n->b, c, 2, dc);
}

int face_ssd_load(const char *manifest_path, nn_model **out, float (**anchors)[4])
{
    *out = NULL;
    *anchors = NULL;
    nn_weights *w = NULL;
    int rc = nn_weights_load_tfjs(manifest_path, NULL, &w);
    if (rc) return rc;
    int rank;
    int64_t dims[3];
    const float *a = nn_weights_get(w, "Output/extra_dim", &rank, dims);
    if (!a || rank != 3 || dims[0] != 1 || dims[1] != FACE_SSD_ANCHORS || dims[2] != 4) {
        nn_weights_destroy(w);
        return base_error_set(BASE_ERR_FORMAT, "ssd: %s: Output/extra_dim is not [1,%d,4]",
                              manifest_path, FACE_SSD_ANCHORS);
    }
    float(*anc)[4] = malloc(FACE_SSD_ANCHORS * sizeof *anc);
    if (!anc) {
        nn_weights_destroy(w);
        return base_error_set(BASE_ERR_NOMEM, "ssd anchors");
    }
    memcpy(anc, a, FACE_SSD_ANCHORS * sizeof *anc);

    net n = {.b = nn_builder_create(), .w = w};
    if (!n.b) {
        free(anc);
        nn_weights_destroy(w);
        return base_error_set(BASE_ERR_NOMEM, "builder");
    }
    const char *mb = "MobilenetV1/Conv2d_%d_pointwise", *pred = "Prediction/Conv2d_%d_pointwise";
    int x = nn_builder_input(n.b, "input", FACE_SSD_SIZE, FACE_SSD_SIZE, 3); /* 512x512x3 */
    x = pointwise(&n, mb, 0, x, 2);                                          /* 256x256x32 */
    int conv11 = -1;
    for (int i = 1; i <= 13; i++) {
        int stride = i == 2 || i == 4 || i == 6 || i == 12 ? 2 : 1;
        x = depthwise(&n, i, x, stride);
        x = pointwise(&n, mb, i, x, 1);
        if (i == 11) conv11 = x;            /* 32x32x512 */
    }                                       /* x: 16x16x1024 */
    int p0 = pointwise(&n, pred, 0, x, 1);  /* 16x16x256 */
    int p1 = pointwise(&n, pred, 1, p0, 2); /* 8x8x512 */
    int p2 = pointwise(&n, pred, 2, p1, 1); /* 8x8x128 */
    int p3 = pointwise(&n, pred, 3, p2, 2); /* 4x4x256 */
    int p4 = pointwise(&n, pred, 4, p3, 1); /* 4x4x128 */
    int p5 = pointwise(&n, pred, 5, p4, 2); /* 2x2x256 */
    int p6 = pointwise(&n, pred, 6, p5, 1); /* 2x2x64 */
    int p7 = pointwise(&n, pred, 7, p6, 2); /* 1x1x128 */
    const int feats[6] = {conv11, x, p1, p3, p5, p7}, hw[6] = {32, 16, 8, 4, 2, 1};
    int boxes[6], classes[6];
    for (int i = 0; i < 6; i++)
        box_predictor(&n, i, feats[i], hw[i], i == 0 ? 3 : 6, &boxes[i], &classes[i]);
    int all_boxes = nn_builder_concat(n.b, boxes, 6, 1);     /* [5118, 4] */
    int all_classes = nn_builder_concat(n.b, classes, 6, 1); /* [5118, 3] */
    rc = nn_builder_output(n.b, all_boxes, "boxes");
    if (rc >= 0) rc = nn_builder_output(n.b, all_classes, "classes");
    if (rc < 0) {
        nn_builder_destroy(n.b);
        nn_weights_destroy(w);
        free(anc);
        return rc;
    }
    rc = nn_model_from_builder(n.b, NULL, out);
    nn_weights_destroy(w);
    if (rc) {
        free(anc);
        return rc;
    }
    *anchors = anc;
    return 0;
}

void face_ssd_decode_box(const float anchor[4], const float enc[4], float box[4])
{
    /* anchor and box: ymin, xmin, ymax, xmax; enc: dy, dx, dh, dw (TF's box coder, scales
     * 10, 10, 5, 5) */
    float ah = anchor[2] - anchor[0], aw = anchor[3] - anchor[1];
    float acy = anchor[0] + 0.5f * ah, acx = anchor[1] + 0.5f * aw;
    float cy = enc[0] / 10.0f * ah + acy, cx = enc[1] / 10.0f * aw + acx;
    float h = expf(enc[2] / 5.0f) * ah, w = expf(enc[3] / 5.0f) * aw;
    box[0] = cy - 0.5f * h;
    box[1] = cx - 0.5f * w;
    box[2] = cy + 0.5f * h;
    box[3] = cx + 0.5f * w;
}
