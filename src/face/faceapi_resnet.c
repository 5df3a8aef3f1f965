/*
 * face-api's face recognition network (a port of dlib's dlib_face_recognition_resnet_model_v1:
 * a 29-layer ResNet, 150x150 RGB in, 128-d out), built with the nn builder from the weights
 * manifest, which ships without a graph. The layer structure follows face-api.js's
 * FaceRecognitionNet: every convolution is conv + bias, then a per-channel scale layer
 * (x * weights + biases, dlib's affine layer); the optimiser folds both into the convolution.
 *
 *   150x150x3 -> conv 7x7/2 valid (32) -> max pool 3/2 valid -> 35x35x32
 *   3 residual blocks (32) -> residual down (64) 17x17 -> 3 residual (64)
 *   -> residual down (128) 8x8 -> 2 residual (128) -> residual down (256) 4x4 -> 2 residual
 *   -> residual down (256) 2x2 -> mean over H, W -> fully connected 256 -> 128
 *
 * A "residual down" block is conv 3x3/2 valid + relu, conv 3x3/1 same, plus the input average-
 * pooled 2x2/2 with its channels zero-padded; where the valid convolution comes out one
 * pixel smaller than the pooled input (8 -> 3 vs 4, 4 -> 1 vs 2) face-api pads it with a zero
 * row and column at the bottom and right. Here that is a SAME convolution (which, with no
 * padding at the top and left, computes the same values) with the extra row and column
 * multiplied by zero.
 */
#include "face/face_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct net {
    nn_builder *b;
    const nn_weights *w;
    int counter;
} net;

static int weight(net *n, const char *prefix, const char *suffix)
{
    char name[128];
    snprintf(name, sizeof name, "%s/%s", prefix, suffix);
    return nn_builder_weight(n->b, n->w, name);
}

/* conv + bias, scale layer, optional relu. */
static int conv_layer(net *n, const char *prefix, int x, int stride, nn_padding pad, int relu)
{
    int y = nn_builder_conv2d(n->b, x, weight(n, prefix, "conv/filters"),
                              weight(n, prefix, "conv/bias"), stride, pad, NN_ACTIVATION_NONE);
    y = nn_builder_mul(n->b, y, weight(n, prefix, "scale/weights"));
    y = nn_builder_add(n->b, y, weight(n, prefix, "scale/biases"));
    return relu ? nn_builder_activation(n->b, y, NN_ACTIVATION_RELU) : y;
}

static int residual(net *n, const char *name, int x)
{
    char p1[64], p2[64];
    snprintf(p1, sizeof p1, "%s/conv1", name);
    snprintf(p2, sizeof p2, "%s/conv2", name);
    int y = conv_layer(n, p1, x, 1, NN_PADDING_SAME, 1);
    y = conv_layer(n, p2, y, 1, NN_PADDING_SAME, 0);
    return nn_builder_activation(n->b, nn_builder_add(n->b, y, x), NN_ACTIVATION_RELU);
}

/* A [hw, hw, 1] mask: 1 in the top-left valid x valid square, 0 in the padded row/column. */
static int pad_mask(net *n, int hw, int valid)
{
    float *m = calloc((size_t)hw * hw, sizeof *m);
    if (!m) return base_error_set(BASE_ERR_NOMEM, "mask");
    for (int y = 0; y < valid; y++)
        for (int x = 0; x < valid; x++)
            m[y * hw + x] = 1;
    char name[32];
    snprintf(name, sizeof name, "pad_mask_%d", n->counter++);
    int64_t dims[3] = {hw, hw, 1};
    int t = nn_builder_constant(n->b, name, 3, dims, m);
    free(m);
    return t;
}

/* in_hw x in_hw x in_c -> in_hw/2 x in_hw/2 x out_c */
static int residual_down(net *n, const char *name, int x, int in_hw, int in_c, int out_c)
{
    char p1[64], p2[64];
    snprintf(p1, sizeof p1, "%s/conv1", name);
    snprintf(p2, sizeof p2, "%s/conv2", name);
    int pooled_hw = in_hw / 2, valid_hw = (in_hw - 3) / 2 + 1;
    int y;
    if (valid_hw == pooled_hw) {
        y = conv_layer(n, p1, x, 2, NN_PADDING_VALID, 1);
        y = conv_layer(n, p2, y, 1, NN_PADDING_SAME, 0);
    } else {
        int mask = pad_mask(n, pooled_hw, valid_hw);
        y = nn_builder_mul(n->b, conv_layer(n, p1, x, 2, NN_PADDING_SAME, 1), mask);
        y = nn_builder_mul(n->b, conv_layer(n, p2, y, 1, NN_PADDING_SAME, 0), mask);
    }
    int pooled = nn_builder_avg_pool(n->b, x, 2, 2, NN_PADDING_VALID);
    if (in_c != out_c) {
        /* zero-pad the channels: a 1x1 convolution with an identity block */
        float *eye = calloc((size_t)in_c * out_c, sizeof *eye);
        if (!eye) return base_error_set(BASE_ERR_NOMEM, "identity");
        for (int c = 0; c < in_c; c++)
            eye[c * out_c + c] = 1;
        char cname[64];
        snprintf(cname, sizeof cname, "%s/shortcut", name);
        int64_t dims[4] = {1, 1, in_c, out_c};
        int k = nn_builder_constant(n->b, cname, 4, dims, eye);
        free(eye);
        pooled = nn_builder_conv2d(n->b, pooled, k, -1, 1, NN_PADDING_VALID, NN_ACTIVATION_NONE);
    }
    return nn_builder_activation(n->b, nn_builder_add(n->b, y, pooled), NN_ACTIVATION_RELU);
}

int face_faceapi_resnet_load(const char *manifest_path, nn_model **out)
{
    *out = NULL;
    nn_weights *w = NULL;
    int rc = nn_weights_load_tfjs(manifest_path, NULL, &w);
    if (rc) return rc;
    net n = {.b = nn_builder_create(), .w = w};
    if (!n.b) {
        nn_weights_destroy(w);
        return base_error_set(BASE_ERR_NOMEM, "builder");
    }
    int x = nn_builder_input(n.b, "input", 150, 150, 3);          /* 150x150x3 */
    x = conv_layer(&n, "conv32_down", x, 2, NN_PADDING_VALID, 1); /* 72x72x32 */
    x = nn_builder_max_pool(n.b, x, 3, 2, NN_PADDING_VALID);      /* 35x35x32 */
    x = residual(&n, "conv32_1", x);
    x = residual(&n, "conv32_2", x);
    x = residual(&n, "conv32_3", x);
    x = residual_down(&n, "conv64_down", x, 35, 32, 64); /* 17x17x64 */
    x = residual(&n, "conv64_1", x);
    x = residual(&n, "conv64_2", x);
    x = residual(&n, "conv64_3", x);
    x = residual_down(&n, "conv128_down", x, 17, 64, 128); /* 8x8x128 */
    x = residual(&n, "conv128_1", x);
    x = residual(&n, "conv128_2", x);
    x = residual_down(&n, "conv256_down", x, 8, 128, 256); /* 4x4x256 */
    x = residual(&n, "conv256_1", x);
    x = residual(&n, "conv256_2", x);
    x = residual_down(&n, "conv256_down_out", x, 4, 256, 256); /* 2x2x256 */
    x = nn_builder_mean(n.b, x, (1 << 1) | (1 << 2), 0);       /* 256 */
    x = nn_builder_fully_connected(n.b, x, nn_builder_weight(n.b, w, "fc"), -1, NN_ACTIVATION_NONE);
    rc = nn_builder_output(n.b, x, "descriptor"); /* 128 */
    if (rc < 0) {
        nn_builder_destroy(n.b);
        nn_weights_destroy(w);
        return rc;
    }
    rc = nn_model_from_builder(n.b, NULL, out);
    nn_weights_destroy(w);
    return rc;
}
