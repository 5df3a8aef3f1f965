/*
 * face-api's age and gender network, built with the nn builder from its weights manifest:
 * a TinyXception feature extractor (2 middle blocks) and two fully connected heads, as in
 * face-api.js's AgeGenderNet. 112x112 RGB in, (p - mean) / 255 with the VGG-Face means (the
 * crop spec in models.c; face-api's TinyXception.forwardInput normalises so).
 *
 *   112x112x3 -> conv 3x3/2 + relu (32) 56x56 -> reduction block (64) 28x28
 *   -> reduction block (128) 14x14 -> 2 main blocks (128) -> reduction block (256) 7x7
 *   -> separable conv (512) + relu -> average pool 7x7 -> age (1, years), gender (2, softmax:
 *   [male, female])
 *
 * A separable convolution is depthwise 3x3 (same) then pointwise 1x1 with the bias. A reduction
 * block is [relu] sep, relu, sep, max pool 3x3/2 (same), plus a 1x1/2 "expansion" convolution
 * of its input; a main block is three (relu, sep) plus its input.
 */
#include "face/face_internal.h"

#include <stdio.h>

typedef struct net {
    nn_builder *b;
    const nn_weights *w;
} net;

static int weight(net *n, const char *prefix, const char *suffix)
{
    char name[160];
    snprintf(name, sizeof name, "%s/%s", prefix, suffix);
    return nn_builder_weight(n->b, n->w, name);
}

static int relu(net *n, int x)
{
    return nn_builder_activation(n->b, x, NN_ACTIVATION_RELU);
}

static int separable(net *n, const char *prefix, int x)
{
    int y = nn_builder_depthwise_conv2d(n->b, x, weight(n, prefix, "depthwise_filter"), -1, 1,
                                        NN_PADDING_SAME, NN_ACTIVATION_NONE);
    return nn_builder_conv2d(n->b, y, weight(n, prefix, "pointwise_filter"),
                             weight(n, prefix, "bias"), 1, NN_PADDING_SAME, NN_ACTIVATION_NONE);
}

static int reduction_block(net *n, const char *prefix, int x, int activate_input)
{
    char p[128];
    snprintf(p, sizeof p, "%s/separable_conv0", prefix);
    int y = separable(n, p, activate_input ? relu(n, x) : x);
    snprintf(p, sizeof p, "%s/separable_conv1", prefix);
    y = separable(n, p, relu(n, y));
    y = nn_builder_max_pool(n->b, y, 3, 2, NN_PADDING_SAME);
    snprintf(p, sizeof p, "%s/expansion_conv", prefix);
    int e = nn_builder_conv2d(n->b, x, weight(n, p, "filters"), weight(n, p, "bias"), 2,
                              NN_PADDING_SAME, NN_ACTIVATION_NONE);
    return nn_builder_add(n->b, y, e);
}

static int main_block(net *n, const char *prefix, int x)
{
    char p[128];
    int y = x;
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/separable_conv%d", prefix, i);
        y = separable(n, p, relu(n, y));
    }
    return nn_builder_add(n->b, y, x);
}

int face_faceapi_agegender_load(const char *manifest_path, nn_model **out)
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
    int x = nn_builder_input(n.b, "input", 112, 112, 3);
    x = nn_builder_conv2d(n.b, x, weight(&n, "entry_flow/conv_in", "filters"),
                          weight(&n, "entry_flow/conv_in", "bias"), 2, NN_PADDING_SAME,
                          NN_ACTIVATION_RELU);                     /* 56x56x32 */
    x = reduction_block(&n, "entry_flow/reduction_block_0", x, 0); /* 28x28x64 */
    x = reduction_block(&n, "entry_flow/reduction_block_1", x, 1); /* 14x14x128 */
    x = main_block(&n, "middle_flow/main_block_0", x);
    x = main_block(&n, "middle_flow/main_block_1", x);
    x = reduction_block(&n, "exit_flow/reduction_block", x, 1); /* 7x7x256 */
    x = relu(&n, separable(&n, "exit_flow/separable_conv", x)); /* 7x7x512 */
    x = nn_builder_avg_pool(n.b, x, 7, 2, NN_PADDING_VALID);    /* 1x1x512 */
    int64_t flat[1] = {512};
    x = nn_builder_reshape(n.b, x, 1, flat);
    int age =
        nn_builder_fully_connected(n.b, x, nn_builder_weight(n.b, w, "fc/age/weights"),
                                   nn_builder_weight(n.b, w, "fc/age/bias"), NN_ACTIVATION_NONE);
    int gender =
        nn_builder_fully_connected(n.b, x, nn_builder_weight(n.b, w, "fc/gender/weights"),
                                   nn_builder_weight(n.b, w, "fc/gender/bias"), NN_ACTIVATION_NONE);
    gender = nn_builder_softmax(n.b, gender);
    nn_builder_output(n.b, age, "age");
    rc = nn_builder_output(n.b, gender, "gender");
    if (rc < 0) {
        nn_builder_destroy(n.b);
        nn_weights_destroy(w);
        return rc;
    }
    rc = nn_model_from_builder(n.b, NULL, out);
    nn_weights_destroy(w);
    return rc;
}
