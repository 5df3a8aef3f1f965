/*
 * The XNNPACK backend against the reference backend, op by op.
 *
 * Each case builds a one-node graph with random (seeded) inputs and weights, runs the node with
 * nn_ref_run() and with nn_xnn_create/setup/run, and compares: max |xnn - ref| must stay within
 * 1e-4 * (1 + max |ref|). One XNNPACK operator is set up and run for batches 1, 5 and 2 in
 * turn (new buffers each time, batch 5 on a two-thread pool), as a context does when the batch
 * changes. Shapes cover the edges: odd sizes, strides 1 and 2, SAME and VALID padding,
 * kernels 1x1/3x3/5x5, dilation 2, depth multipliers 1 and 2, channel counts 1 to 64.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "base/base.h"
#include "helpers.h"
#include "nn/graph.h"

#include <math.h>
#include <pthreadpool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- random inputs (the generator and buffers are in helpers.h) ---------------------------- */

/* Value domains for the computed inputs of a case. */
enum domain {
    DOMAIN_ANY,      /* [-2, 2] */
    DOMAIN_POSITIVE, /* [0.1, 2] (sqrt) */
    DOMAIN_NONZERO,  /* +-[0.5, 2] (divisors) */
};

static float rng_value(enum domain d)
{
    switch (d) {
    case DOMAIN_POSITIVE: return rng_range(0.1f, 2.0f);
    case DOMAIN_NONZERO: return (rng_unit() < 0.5f ? -1.0f : 1.0f) * rng_range(0.5f, 2.0f);
    default: return rng_range(-2.0f, 2.0f);
    }
}

/* --- graph building ------------------------------------------------------------------------ */

static nn_shape shape_of(int rank, const int64_t *dims)
{
    nn_shape s = {.rank = rank};
    for (int i = 0; i < rank; i++)
        s.dim[i] = dims[i];
    return s;
}

#define SHAPE(...)                                                                                 \
    shape_of((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})
#define N NN_BATCH

static int add_input(nn_graph *g, nn_shape s)
{
    char name[32];
    snprintf(name, sizeof name, "in%d", g->n_tensors);
    int t = nn_graph_add_input(g, name, &s);
    assert_true(t >= 0);
    return t;
}

static nn_node node_proto(nn_op op, int n_inputs, const int *inputs)
{
    nn_node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    n.name = "op_under_test";
    n.n_inputs = n_inputs;
    for (int i = 0; i < NN_MAX_NODE_INPUTS; i++)
        n.inputs[i] = i < n_inputs ? inputs[i] : -1;
    return n;
}

/* --- the comparison ------------------------------------------------------------------------ */

static pthreadpool_t thread_pool;
/* Compare the own GEMM kernel (gemm.c) instead of XNNPACK with the reference. */
static int use_gemm;
static int cases_run;
static double worst_ratio; /* max over cases of err / (1e-4 * (1 + max|ref|)) */

static nn_shape with_batch(const nn_shape *s, int64_t batch)
{
    nn_shape r = *s;
    if (r.rank > 0 && r.dim[0] == NN_BATCH) r.dim[0] = batch;
    return r;
}

/* Runs node `ni` of g on both backends for several batch sizes and compares. */
static void compare_node(const nn_graph *g, int ni, enum domain dom, const char *label)
{
    const nn_node *node = &g->nodes[ni];
    assert_int_equal(nn_xnn_init(), 0);
    nn_xnn_op *op = NULL;
    int rc;
    if (use_gemm) {
        /* Packing writes node->packed: the graph is this test's own. */
        rc = nn_gemm_pack((nn_graph *)g, (nn_node *)node);
        if (rc) fail_msg("%s: pack: %s", label, base_error_message());
    } else {
        if (!nn_xnn_supports(g, node)) fail_msg("%s: not supported by XNNPACK", label);
        rc = nn_xnn_create(g, node, &op);
        if (rc) fail_msg("%s: create: %s", label, base_error_message());
    }

    static const int64_t batches[] = {1, 5, 2};
    for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
        int64_t batch = batches[b];
        pthreadpool_t pool = batch == 5 ? thread_pool : NULL;
        nn_view in[NN_MAX_NODE_INPUTS];
        float *owned[NN_MAX_NODE_INPUTS] = {0};
        memset(in, 0, sizeof in);
        for (int i = 0; i < node->n_inputs; i++) {
            int t = node->inputs[i];
            if (t < 0) continue;
            const nn_tensor *tensor = &g->tensors[t];
            in[i].shape = with_batch(&tensor->shape, batch);
            if (tensor->data) {
                in[i].data = tensor->data;
                continue;
            }
            size_t n = (size_t)nn_shape_numel(&in[i].shape, 1);
            owned[i] = buffer_new(n);
            for (size_t k = 0; k < n; k++)
                owned[i][k] = rng_value(dom);
            in[i].data = owned[i];
        }
        nn_shape os = with_batch(&g->tensors[node->output].shape, batch);
        size_t on = (size_t)nn_shape_numel(&os, 1);
        nn_view ref = {os, buffer_new(on)};
        nn_view got = {os, buffer_new(on)};
        for (size_t k = 0; k < on; k++)
            got.data[k] = NAN; /* every element must be written */

        rc = nn_ref_run(g, node, in, &ref);
        if (rc) fail_msg("%s: reference: %s", label, base_error_message());
        if (use_gemm) {
            rc = nn_gemm_run(g, node, in, &got, pool);
            if (rc) fail_msg("%s batch %d: gemm: %s", label, (int)batch, base_error_message());
        } else {
            rc = nn_xnn_setup(op, g, node, in, &got, pool);
            if (rc) fail_msg("%s batch %d: setup: %s", label, (int)batch, base_error_message());
            rc = nn_xnn_run(op, pool);
            if (rc) fail_msg("%s batch %d: run: %s", label, (int)batch, base_error_message());
        }

        double max_ref = 0, max_err = 0;
        size_t worst = 0;
        for (size_t k = 0; k < on; k++) {
            double r = ref.data[k], x = got.data[k];
            if (fabs(r) > max_ref) max_ref = fabs(r);
            double e = isnan(r) && isnan(x) ? 0 : fabs(x - r);
            if (isnan(e)) e = INFINITY;
            if (e > max_err) {
                max_err = e;
                worst = k;
            }
        }
        double tol = 1e-4 * (1 + max_ref);
        if (max_err / tol > worst_ratio) worst_ratio = max_err / tol;
        if (!(max_err <= tol))
            fail_msg("%s batch %d: element %zu: xnnpack %.9g, reference %.9g (max error %.3g, "
                     "tolerance %.3g)",
                     label, (int)batch, worst, (double)got.data[worst], (double)ref.data[worst],
                     max_err, tol);
        base_aligned_free(ref.data);
        base_aligned_free(got.data);
        for (int i = 0; i < NN_MAX_NODE_INPUTS; i++)
            base_aligned_free(owned[i]);
    }
    nn_xnn_destroy(op);
    cases_run++;
}

/* Adds proto (with an explicit output shape for reshape and slice) and compares. Returns 0, or
 * -1 when the graph rejects the node (a window that does not fit: the caller skips it). */
static int check(nn_graph *g, const nn_node *proto, const nn_shape *out_shape, enum domain dom,
                 const char *label)
{
    int t = out_shape ? nn_graph_add_node_shaped(g, proto, out_shape) : nn_graph_add_node(g, proto);
    if (t < 0) return -1;
    compare_node(g, g->tensors[t].producer, dom, label);
    return 0;
}

/* A node the backend must refuse (the engine then runs it with the reference backend). */
static void check_refused(nn_graph *g, const nn_node *proto, const nn_shape *out_shape,
                          const char *label)
{
    int t = out_shape ? nn_graph_add_node_shaped(g, proto, out_shape) : nn_graph_add_node(g, proto);
    if (t < 0) fail_msg("%s: graph rejects the node: %s", label, base_error_message());
    if (nn_xnn_supports(g, &g->nodes[g->tensors[t].producer]))
        fail_msg("%s: XNNPACK claims support", label);
}

static uint64_t report_start_ns;

static void report(const char *what)
{
    print_message("%s: %d cases, worst error %.3f of tolerance, %.1f s\n", what, cases_run,
                  worst_ratio, (double)(base_now_ns() - report_start_ns) * 1e-9);
    cases_run = 0;
    worst_ratio = 0;
    report_start_ns = base_now_ns();
}

/* TensorFlow's SAME padding along one axis. */
static void same_pads(int in, int k, int stride, int dil, int *before, int *after)
{
    int out = (in + stride - 1) / stride;
    int total = (out - 1) * stride + (k - 1) * dil + 1 - in;
    if (total < 0) total = 0;
    *before = total / 2;
    *after = total - *before;
}

static nn_act act_cycle(int i, int *prelu)
{
    nn_act a = {.kind = NN_ACT_NONE};
    *prelu = 0;
    switch (i % 5) {
    case 1: a = (nn_act){.kind = NN_ACT_CLAMP, .lo = 0, .hi = INFINITY}; break;
    case 2: a = (nn_act){.kind = NN_ACT_CLAMP, .lo = 0, .hi = 6}; break;
    case 3: a = (nn_act){.kind = NN_ACT_LEAKY, .alpha = 0.2f}; break;
    case 4:
        a = (nn_act){.kind = NN_ACT_PRELU};
        *prelu = 1;
        break;
    }
    return a;
}

/* --- convolutions -------------------------------------------------------------------------- */

static void conv_case(int h, int w, int cin, int cout_or_m, int k, int stride, int dil, int same,
                      int depthwise, int variant)
{
    char label[160];
    nn_graph *g = nn_graph_new();
    assert_non_null(g);
    rng_seed((uint64_t)variant * 7919 + (uint64_t)(h * 31 + w) * 131 + (uint64_t)cin * 17);
    int64_t cout = depthwise ? (int64_t)cin * cout_or_m : cout_or_m;
    int x = add_input(g, SHAPE(N, h, w, cin));
    int wt = add_const(g, SHAPE(k, k, cin, cout_or_m), -1, 1);
    int with_bias = variant % 3 != 0;
    int prelu;
    nn_act act = act_cycle(variant, &prelu);
    int inputs[4] = {x, wt, with_bias ? add_const(g, SHAPE(cout), -1, 1) : -1, -1};
    if (prelu)
        inputs[3] = add_const(g, variant % 2 ? SHAPE(cout) : SHAPE(1, 1, 1, cout), -0.5f, 0.5f);
    nn_node n = node_proto(NN_OP_CONV2D, prelu ? 4 : (with_bias ? 3 : 2), inputs);
    nn_conv_params *p = &n.p.conv;
    *p = (nn_conv_params){.kernel_h = k,
                          .kernel_w = k,
                          .stride_h = stride,
                          .stride_w = stride,
                          .dilation_h = dil,
                          .dilation_w = dil,
                          .depthwise = depthwise,
                          .act = act};
    if (same) {
        same_pads(h, k, stride, dil, &p->pad_top, &p->pad_bottom);
        same_pads(w, k, stride, dil, &p->pad_left, &p->pad_right);
    }
    snprintf(label, sizeof label, "%s %dx%dx%d k%d s%d d%d %s %s%d bias %d act %d",
             depthwise ? "dwconv" : "conv", h, w, cin, k, stride, dil, same ? "SAME" : "VALID",
             depthwise ? "M" : "cout", cout_or_m, with_bias, (int)act.kind);
    check(g, &n, NULL, DOMAIN_ANY, label);
    nn_graph_free(g);
}

static const int sizes[][2] = {{7, 9}, {13, 13}, {1, 1}, {4, 6}};

static void test_conv2d(void **state)
{
    (void)state;
    static const int chans[][2] = {{1, 8}, {3, 17}, {8, 1}, {17, 64}, {64, 3}, {3, 3}, {64, 64}};
    static const int ks[] = {1, 3, 5};
    int variant = 0;
    for (size_t s = 0; s < 4; s++)
        for (size_t c = 0; c < 7; c++)
            for (size_t ki = 0; ki < 3; ki++)
                for (int stride = 1; stride <= 2; stride++)
                    for (int same = 0; same <= 1; same++)
                        for (int dil = 1; dil <= 2; dil++) {
                            if (ks[ki] == 1 && dil == 2) continue;
                            conv_case(sizes[s][0], sizes[s][1], chans[c][0], chans[c][1], ks[ki],
                                      stride, dil, same, 0, variant++);
                        }
    report("conv2d");
}

static void test_depthwise_conv2d(void **state)
{
    (void)state;
    static const int chans[] = {1, 3, 8, 17, 64};
    static const int ks[] = {1, 3, 5};
    int variant = 0;
    for (size_t s = 0; s < 4; s++)
        for (size_t c = 0; c < 5; c++)
            for (int m = 1; m <= 2; m++)
                for (size_t ki = 0; ki < 3; ki++)
                    for (int stride = 1; stride <= 2; stride++)
                        for (int same = 0; same <= 1; same++)
                            for (int dil = 1; dil <= 2; dil++) {
                                if (ks[ki] == 1 && dil == 2) continue;
                                conv_case(sizes[s][0], sizes[s][1], chans[c], m, ks[ki], stride,
                                          dil, same, 1, variant++);
                            }
    report("depthwise_conv2d");
}

static void test_conv2d_asymmetric(void **state)
{
    (void)state;
    /* Non-square kernels, strides and explicit pads as an importer may produce them. */
    nn_graph *g = nn_graph_new();
    rng_seed(42);
    int x = add_input(g, SHAPE(N, 11, 8, 5));
    int inputs[3] = {x, add_const(g, SHAPE(3, 1, 5, 7), -1, 1), add_const(g, SHAPE(7), -1, 1)};
    nn_node n = node_proto(NN_OP_CONV2D, 3, inputs);
    n.p.conv = (nn_conv_params){.kernel_h = 3,
                                .kernel_w = 1,
                                .stride_h = 2,
                                .stride_w = 1,
                                .dilation_h = 1,
                                .dilation_w = 3,
                                .pad_top = 0,
                                .pad_bottom = 2,
                                .pad_left = 1,
                                .pad_right = 0};
    check(g, &n, NULL, DOMAIN_ANY, "conv 3x1 s2,1 pads 0,2,1,0");
    int dw[2] = {x, add_const(g, SHAPE(1, 5, 5, 2), -1, 1)};
    n = node_proto(NN_OP_CONV2D, 2, dw);
    n.p.conv = (nn_conv_params){.kernel_h = 1,
                                .kernel_w = 5,
                                .stride_h = 1,
                                .stride_w = 2,
                                .dilation_h = 2,
                                .dilation_w = 1,
                                .pad_left = 2,
                                .pad_right = 2,
                                .depthwise = 1};
    check(g, &n, NULL, DOMAIN_ANY, "dwconv 1x5 s1,2 M2");
    nn_graph_free(g);
    report("conv2d asymmetric");
}

/* Weights beyond half of L2 run as several XNNPACK operators, each writing a slice of the
 * output channels (xnn.c, slice_width): uneven last slices, bias and activations per slice,
 * PReLU after all of them. */
static void test_conv2d_sliced(void **state)
{
    (void)state;
    conv_case(5, 5, 200, 300, 3, 1, 1, 1, 0, 1); /* 2.2 MB: 5 slices, the last of 44 */
    conv_case(9, 7, 200, 300, 3, 2, 1, 0, 0, 4); /* VALID, stride 2, PReLU */
    conv_case(4, 4, 256, 256, 3, 1, 1, 1, 0, 2); /* faceapi-resnet's 4x4 layers, Relu6 */
    conv_case(3, 5, 700, 333, 1, 1, 1, 0, 0, 3); /* 1x1, 0.9 MB: 2 slices, leaky */
    static const int ks[] = {3000, 1024};
    static const int ms[] = {257, 1000};
    for (int v = 0; v < 2; v++) {
        nn_graph *g = nn_graph_new();
        rng_seed((uint64_t)v + 77);
        int x = add_input(g, SHAPE(N, ks[v]));
        int prelu;
        nn_act act = act_cycle(v ? 4 : 1, &prelu);
        int inputs[4] = {x, add_const(g, SHAPE(ks[v], ms[v]), -1, 1),
                         add_const(g, SHAPE(ms[v]), -1, 1), -1};
        if (prelu) inputs[3] = add_const(g, SHAPE(ms[v]), -0.5f, 0.5f);
        nn_node n = node_proto(NN_OP_FULLY_CONNECTED, prelu ? 4 : 3, inputs);
        n.p.fc.act = act;
        char label[96];
        snprintf(label, sizeof label, "fc %dx%d sliced act %d", ks[v], ms[v], (int)act.kind);
        check(g, &n, NULL, DOMAIN_ANY, label);
        nn_graph_free(g);
    }
    report("conv2d and fc with sliced weights");
}

/* A convolution with a fused 2x2 stride-2 pooling (the optimiser's conv + pool): the GEMM
 * kernel against the reference's fused path (compare_node, batches 1, 5 with threads, 2), and
 * the reference's fused path against its own unfused convolution then pooling, which must
 * agree exactly (the same sums in the same order). */
static void pooled_case(int h, int w, int cin, int cout, int k, int stride, int dil, int same,
                        nn_pool_kind kind, int variant)
{
    char label[160];
    nn_graph *g = nn_graph_new();
    assert_non_null(g);
    rng_seed((uint64_t)variant * 4111 + (uint64_t)(h * 37 + w) * 53 + (uint64_t)cin);
    int x = add_input(g, SHAPE(N, h, w, cin));
    int with_bias = variant % 3 != 2;
    int prelu;
    nn_act act = act_cycle(variant, &prelu);
    int inputs[4] = {x, add_const(g, SHAPE(k, k, cin, cout), -1, 1),
                     with_bias ? add_const(g, SHAPE(cout), -1, 1) : -1, -1};
    if (prelu)
        inputs[3] = add_const(g, variant % 2 ? SHAPE(cout) : SHAPE(1, 1, 1, cout), -0.5f, 0.5f);
    nn_node n = node_proto(NN_OP_CONV2D, prelu ? 4 : (with_bias ? 3 : 2), inputs);
    n.p.conv = (nn_conv_params){.kernel_h = k,
                                .kernel_w = k,
                                .stride_h = stride,
                                .stride_w = stride,
                                .dilation_h = dil,
                                .dilation_w = dil,
                                .act = act};
    if (same) {
        same_pads(h, k, stride, dil, &n.p.conv.pad_top, &n.p.conv.pad_bottom);
        same_pads(w, k, stride, dil, &n.p.conv.pad_left, &n.p.conv.pad_right);
    }
    /* The unfused pair first: convolution, then a 2x2 stride-2 VALID pool. */
    int conv_t = nn_graph_add_node(g, &n);
    if (conv_t < 0)
        fail_msg("pooled case: graph rejects the convolution: %s", base_error_message());
    nn_node pn = node_proto(NN_OP_POOL, 1, (int[]){conv_t});
    pn.p.pool =
        (nn_pool_params){.kind = kind, .kernel_h = 2, .kernel_w = 2, .stride_h = 2, .stride_w = 2};
    int pool_t = nn_graph_add_node(g, &pn);
    assert_true(pool_t >= 0);
    nn_node fused = n;
    fused.p.conv.pool = 2;
    fused.p.conv.pool_kind = kind;
    snprintf(label, sizeof label, "gemm conv %dx%dx%d->%d k%d s%d d%d %s + %s pool, bias %d act %d",
             h, w, cin, cout, k, stride, dil, same ? "SAME" : "VALID",
             kind == NN_POOL_MAX ? "max" : "avg", with_bias, (int)act.kind);
    int fused_t = nn_graph_add_node(g, &fused);
    if (fused_t < 0) fail_msg("%s: graph rejects the node: %s", label, base_error_message());
    if (!nn_shape_equal(&g->tensors[fused_t].shape, &g->tensors[pool_t].shape))
        fail_msg("%s: fused shape differs from conv + pool", label);
    const nn_node *fn = &g->nodes[g->tensors[fused_t].producer];
    if (!nn_gemm_supports(g, fn)) fail_msg("%s: the GEMM kernel refuses it", label);

    /* Reference: fused == conv then pool, exactly, at batch 2. */
    int64_t batch = 2;
    nn_view in[NN_MAX_NODE_INPUTS];
    memset(in, 0, sizeof in);
    float *xd = NULL;
    for (int i = 0; i < fn->n_inputs; i++) {
        int t = fn->inputs[i];
        if (t < 0) continue;
        in[i].shape = with_batch(&g->tensors[t].shape, batch);
        if (g->tensors[t].data) {
            in[i].data = g->tensors[t].data;
            continue;
        }
        size_t cnt = (size_t)nn_shape_numel(&in[i].shape, 1);
        xd = buffer_new(cnt);
        for (size_t q = 0; q < cnt; q++)
            xd[q] = rng_value(DOMAIN_ANY);
        in[i].data = xd;
    }
    nn_shape cs = with_batch(&g->tensors[conv_t].shape, batch),
             ps = with_batch(&g->tensors[pool_t].shape, batch);
    size_t cn = (size_t)nn_shape_numel(&cs, 1), pnum = (size_t)nn_shape_numel(&ps, 1);
    nn_view full = {cs, buffer_new(cn)}, pooled = {ps, buffer_new(pnum)},
            direct = {ps, buffer_new(pnum)};
    assert_int_equal(nn_ref_run(g, &g->nodes[g->tensors[conv_t].producer], in, &full), 0);
    assert_int_equal(
        nn_ref_run(g, &g->nodes[g->tensors[pool_t].producer], (nn_view[]){full}, &pooled), 0);
    assert_int_equal(nn_ref_run(g, fn, in, &direct), 0);
    for (size_t q = 0; q < pnum; q++)
        if (memcmp(&pooled.data[q], &direct.data[q], sizeof(float)) != 0)
            fail_msg("%s: reference fused %.9g, conv + pool %.9g at %zu", label,
                     (double)direct.data[q], (double)pooled.data[q], q);
    base_aligned_free(full.data);
    base_aligned_free(pooled.data);
    base_aligned_free(direct.data);
    base_aligned_free(xd);

    compare_node(g, g->tensors[fused_t].producer, DOMAIN_ANY, label);
    nn_graph_free(g);
}

/* A convolution whose activated output is scaled and shifted per channel (post_affine: the
 * optimiser's conv -> Mul -> Add), with or without a fused 2x2 pooling (pool < 0: none). The
 * reference's fused node must equal its conv, Mul, Add (and pool) bit for bit; the GEMM kernel
 * is compared with it (compare_node); and the optimiser, given the unfused chain as a graph,
 * must leave one convolution carrying both. */
static void affine_case(int h, int w, int cin, int cout, int k, int stride, int same, int pool,
                        int variant)
{
    char label[160];
    nn_graph *g = nn_graph_new();
    assert_non_null(g);
    rng_seed((uint64_t)variant * 613 + (uint64_t)(h * 41 + w) * 7 + (uint64_t)cout);
    int x = add_input(g, SHAPE(N, h, w, cin));
    int prelu;
    nn_act act = act_cycle(variant, &prelu);
    int inputs[4] = {x, add_const(g, SHAPE(k, k, cin, cout), -1, 1),
                     add_const(g, SHAPE(cout), -1, 1), -1};
    if (prelu) inputs[3] = add_const(g, SHAPE(cout), -0.5f, 0.5f);
    nn_node n = node_proto(NN_OP_CONV2D, prelu ? 4 : 3, inputs);
    n.p.conv = (nn_conv_params){.kernel_h = k,
                                .kernel_w = k,
                                .stride_h = stride,
                                .stride_w = stride,
                                .dilation_h = 1,
                                .dilation_w = 1,
                                .act = act};
    if (same) {
        same_pads(h, k, stride, 1, &n.p.conv.pad_top, &n.p.conv.pad_bottom);
        same_pads(w, k, stride, 1, &n.p.conv.pad_left, &n.p.conv.pad_right);
    }
    int conv_t = nn_graph_add_node(g, &n);
    if (conv_t < 0)
        fail_msg("affine case: graph rejects the convolution: %s", base_error_message());
    int scale = add_const(g, variant % 2 ? SHAPE(cout) : SHAPE(1, 1, 1, cout), -2, 2);
    int shift = add_const(g, SHAPE(cout), -1, 1);
    nn_node mn =
        node_proto(NN_OP_BINARY, 2, variant % 3 ? (int[]){conv_t, scale} : (int[]){scale, conv_t});
    mn.p.binary.kind = NN_BINARY_MUL;
    int mul_t = nn_graph_add_node(g, &mn);
    nn_node an = node_proto(NN_OP_BINARY, 2, (int[]){mul_t, shift});
    an.p.binary.kind = NN_BINARY_ADD;
    int add_t = nn_graph_add_node(g, &an);
    assert_true(mul_t >= 0 && add_t >= 0);
    int last = add_t;
    nn_pool_kind kind = pool == 1 ? NN_POOL_AVG : NN_POOL_MAX;
    if (pool >= 0) {
        nn_node pn = node_proto(NN_OP_POOL, 1, (int[]){add_t});
        pn.p.pool = (nn_pool_params){
            .kind = kind, .kernel_h = 2, .kernel_w = 2, .stride_h = 2, .stride_w = 2};
        last = nn_graph_add_node(g, &pn);
        assert_true(last >= 0);
    }
    nn_node fused = n;
    fused.inputs[3] = prelu ? inputs[3] : -1;
    fused.inputs[4] = -1;
    fused.inputs[5] = scale;
    fused.inputs[6] = shift;
    fused.n_inputs = 7;
    fused.p.conv.post_affine = 1;
    fused.p.conv.pool = pool >= 0 ? 2 : 0;
    fused.p.conv.pool_kind = kind;
    snprintf(label, sizeof label, "gemm conv %dx%dx%d->%d k%d s%d %s + scale, shift%s, act %d", h,
             w, cin, cout, k, stride, same ? "SAME" : "VALID",
             pool < 0 ? ""
             : pool   ? " + avg pool"
                      : " + max pool",
             (int)act.kind);
    int fused_t = nn_graph_add_node(g, &fused);
    if (fused_t < 0) fail_msg("%s: graph rejects the node: %s", label, base_error_message());
    const nn_node *fn = &g->nodes[g->tensors[fused_t].producer];
    if (!nn_gemm_supports(g, fn)) fail_msg("%s: the GEMM kernel refuses it", label);

    /* Reference: the fused node == the chain, exactly, at batch 2. */
    int64_t batch = 2;
    nn_view in[NN_MAX_NODE_INPUTS];
    memset(in, 0, sizeof in);
    float *xd = NULL;
    for (int i = 0; i < fn->n_inputs; i++) {
        int t = fn->inputs[i];
        if (t < 0) continue;
        in[i].shape = with_batch(&g->tensors[t].shape, batch);
        if (g->tensors[t].data) {
            in[i].data = g->tensors[t].data;
            continue;
        }
        size_t cnt = (size_t)nn_shape_numel(&in[i].shape, 1);
        xd = buffer_new(cnt);
        for (size_t q = 0; q < cnt; q++)
            xd[q] = rng_value(DOMAIN_ANY);
        in[i].data = xd;
    }
    int chain[4] = {conv_t, mul_t, add_t, last};
    nn_view v[4];
    for (int c = 0; c < 4; c++) {
        nn_shape sh = with_batch(&g->tensors[chain[c]].shape, batch);
        v[c] = (nn_view){sh, buffer_new((size_t)nn_shape_numel(&sh, 1))};
    }
    assert_int_equal(nn_ref_run(g, &g->nodes[g->tensors[conv_t].producer], in, &v[0]), 0);
    nn_view sc = {g->tensors[scale].shape, g->tensors[scale].data},
            sf = {g->tensors[shift].shape, g->tensors[shift].data};
    assert_int_equal(nn_ref_run(g, &g->nodes[g->tensors[mul_t].producer],
                                variant % 3 ? (nn_view[]){v[0], sc} : (nn_view[]){sc, v[0]}, &v[1]),
                     0);
    assert_int_equal(
        nn_ref_run(g, &g->nodes[g->tensors[add_t].producer], (nn_view[]){v[1], sf}, &v[2]), 0);
    nn_view *want = &v[2];
    if (pool >= 0) {
        assert_int_equal(
            nn_ref_run(g, &g->nodes[g->tensors[last].producer], (nn_view[]){v[2]}, &v[3]), 0);
        want = &v[3];
    }
    nn_view got = {want->shape, buffer_new((size_t)nn_shape_numel(&want->shape, 1))};
    assert_int_equal(nn_ref_run(g, fn, in, &got), 0);
    for (int64_t q = 0; q < nn_shape_numel(&want->shape, 1); q++)
        if (memcmp(&got.data[q], &want->data[q], sizeof(float)) != 0)
            fail_msg("%s: reference fused %.9g, chain %.9g at %lld", label, (double)got.data[q],
                     (double)want->data[q], (long long)q);
    for (int c = 0; c < 4; c++)
        base_aligned_free(v[c].data);
    base_aligned_free(got.data);
    base_aligned_free(xd);
    compare_node(g, g->tensors[fused_t].producer, DOMAIN_ANY, label);
    nn_graph_free(g);

    /* The optimiser fuses the same chain into one convolution. */
    g = nn_graph_new();
    rng_seed((uint64_t)variant * 613 + (uint64_t)(h * 41 + w) * 7 + (uint64_t)cout);
    x = add_input(g, SHAPE(N, h, w, cin));
    int in2[4] = {x, add_const(g, SHAPE(k, k, cin, cout), -1, 1), add_const(g, SHAPE(cout), -1, 1),
                  -1};
    if (prelu) in2[3] = add_const(g, SHAPE(cout), -0.5f, 0.5f);
    memcpy(n.inputs, in2, sizeof in2);
    conv_t = nn_graph_add_node(g, &n);
    scale = add_const(g, SHAPE(cout), -2, 2);
    shift = add_const(g, SHAPE(cout), -1, 1);
    mn = node_proto(NN_OP_BINARY, 2, (int[]){conv_t, scale});
    mn.p.binary.kind = NN_BINARY_MUL;
    mul_t = nn_graph_add_node(g, &mn);
    an = node_proto(NN_OP_BINARY, 2, (int[]){mul_t, shift});
    an.p.binary.kind = NN_BINARY_ADD;
    last = nn_graph_add_node(g, &an);
    if (pool >= 0) {
        nn_node pn = node_proto(NN_OP_POOL, 1, (int[]){last});
        pn.p.pool = (nn_pool_params){
            .kind = kind, .kernel_h = 2, .kernel_w = 2, .stride_h = 2, .stride_w = 2};
        last = nn_graph_add_node(g, &pn);
    }
    assert_true(conv_t >= 0 && mul_t >= 0 && last >= 0);
    assert_int_equal(nn_graph_mark_output(g, last), 0);
    assert_int_equal(nn_graph_optimize(g), 0);
    /* Without an activation the scale and shift fold into the weights and bias instead. */
    if (g->n_nodes != 1 || g->nodes[0].op != NN_OP_CONV2D ||
        g->nodes[0].p.conv.post_affine != (act.kind != NN_ACT_NONE) ||
        g->nodes[0].p.conv.pool != (pool >= 0 ? 2 : 0))
        fail_msg("%s: the optimiser left %d nodes (post_affine %d, pool %d)", label, g->n_nodes,
                 g->nodes[0].p.conv.post_affine, g->nodes[0].p.conv.pool);
    nn_graph_free(g);
}

/* The own GEMM kernel (gemm.c) over edge shapes: row counts that leave every remainder of the
 * 14-row tile (batches 1, 5, 2 of odd maps), output channels that leave partial 16- and
 * 32-column panels, 1x1 direct rows and gathered rows with padding, stride and dilation, every
 * fused activation, with and without bias, one and two threads. */
static void test_gemm(void **state)
{
    (void)state;
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512vl")) skip();
    use_gemm = 1;
    /* Output channels up to 8 and up to 16 take the 8- and 16-wide panels (odd kernel rows:
     * the 8-wide panels' half-empty last pair). */
    static const int chans[][2] = {{3, 1}, {17, 33}, {64, 32}, {32, 100}, {40, 17}, {8, 64},
                                   {1, 8}, {8, 8},   {5, 6},   {16, 16},  {3, 12}};
    static const int ks[] = {1, 3, 5};
    int variant = 0;
    for (size_t s = 0; s < 4; s++)
        for (size_t c = 0; c < sizeof chans / sizeof chans[0]; c++)
            for (size_t ki = 0; ki < 3; ki++)
                for (int stride = 1; stride <= 2; stride++)
                    for (int same = 0; same <= 1; same++)
                        for (int dil = 1; dil <= 2; dil++) {
                            if (ks[ki] == 1 && dil == 2) continue;
                            conv_case(sizes[s][0], sizes[s][1], chans[c][0], chans[c][1], ks[ki],
                                      stride, dil, same, 0, variant++);
                        }
    /* A residual input added before the activation (the optimiser's conv + Add). */
    for (int v = 0; v < 12; v++) {
        static const int shapes[][5] = {{9, 7, 24, 24, 1},  {13, 13, 32, 48, 3},
                                        {5, 6, 64, 100, 1}, {1, 1, 40, 64, 3},
                                        {15, 17, 8, 8, 3},  {16, 20, 16, 16, 3}};
        const int *sh = shapes[v % 6];
        nn_graph *g = nn_graph_new();
        rng_seed((uint64_t)v + 9000);
        int x = add_input(g, SHAPE(N, sh[0], sh[1], sh[2]));
        int res = add_input(g, SHAPE(N, sh[0], sh[1], sh[3]));
        int prelu;
        nn_act act = act_cycle(v, &prelu);
        int inputs[5] = {x, add_const(g, SHAPE(sh[4], sh[4], sh[2], sh[3]), -1, 1),
                         v % 3 ? add_const(g, SHAPE(sh[3]), -1, 1) : -1, -1, res};
        if (prelu) inputs[3] = add_const(g, SHAPE(sh[3]), -0.5f, 0.5f);
        nn_node n = node_proto(NN_OP_CONV2D, 5, inputs);
        n.p.conv = (nn_conv_params){.kernel_h = sh[4],
                                    .kernel_w = sh[4],
                                    .stride_h = 1,
                                    .stride_w = 1,
                                    .dilation_h = 1,
                                    .dilation_w = 1,
                                    .act = act,
                                    .residual = 1};
        if (sh[4] == 3)
            n.p.conv.pad_top = n.p.conv.pad_bottom = n.p.conv.pad_left = n.p.conv.pad_right = 1;
        char label[96];
        snprintf(label, sizeof label, "gemm conv %dx%dx%d->%d k%d + residual, act %d", sh[0], sh[1],
                 sh[2], sh[3], sh[4], (int)act.kind);
        if (check(g, &n, NULL, DOMAIN_ANY, label))
            fail_msg("%s: graph rejects the node: %s", label, base_error_message());
        nn_graph_free(g);
    }
    conv_case(14, 15, 256, 96, 1, 1, 1, 0, 0, 1); /* 210 rows: 15 full tiles */
    /* Wide maps: blocks inside a row read taps in place, blocks at either edge gather. */
    conv_case(5, 45, 32, 64, 3, 1, 1, 1, 0, 0);
    conv_case(4, 61, 40, 32, 3, 2, 1, 1, 0, 1);
    conv_case(6, 50, 32, 48, 3, 1, 2, 1, 0, 2);
    conv_case(3, 47, 33, 96, 5, 1, 1, 1, 0, 3);
    conv_case(5, 44, 8, 24, 3, 1, 1, 0, 0, 4);
    conv_case(7, 33, 16, 40, 3, 2, 1, 0, 0, 5);
    conv_case(4, 60, 3, 32, 3, 2, 1, 1, 0, 6); /* stems from RGB */
    conv_case(5, 50, 3, 64, 5, 1, 1, 1, 0, 7);
    conv_case(5, 5, 200, 300, 3, 1, 1, 1, 0, 4); /* K 1800: weights in several panel groups */
    /* Few output channels on wide maps (8- and 16-wide panels, in-place and edge rows). */
    conv_case(5, 62, 8, 8, 3, 1, 1, 0, 0, 0);
    conv_case(4, 64, 1, 8, 3, 1, 1, 1, 0, 1);
    conv_case(4, 33, 16, 16, 3, 1, 1, 1, 0, 2);
    conv_case(3, 45, 3, 16, 3, 2, 1, 1, 0, 3);
    conv_case(3, 40, 7, 5, 5, 1, 2, 1, 0, 4);
    conv_case(6, 31, 10, 12, 3, 1, 1, 1, 0, 5);
    /* 8-wide panels with long K on maps narrower than a tile: whole rows as blocks (taps in
     * place or from copied spans), gathered when dilated. */
    conv_case(8, 8, 256, 7, 3, 1, 1, 1, 0, 1);
    conv_case(5, 9, 128, 2, 3, 1, 1, 0, 0, 2);
    conv_case(6, 7, 96, 5, 3, 2, 1, 1, 0, 3);
    conv_case(7, 6, 64, 8, 5, 1, 1, 1, 0, 4);
    conv_case(9, 9, 128, 3, 3, 1, 2, 1, 0, 0);
    /* A fused 2x2 pooling: odd and even maps, narrower and wider than a tile, stems from RGB,
     * 8-, 16- and 32-wide panels, several panel groups, stride 2, dilation, rows pooled in
     * spans, both kinds. */
    static const struct {
        int h, w, cin, cout, k, stride, dil, same;
    } pc[] = {{9, 45, 3, 32, 3, 1, 1, 1},
              {12, 90, 3, 64, 3, 2, 1, 1},
              {7, 9, 32, 48, 3, 1, 1, 1},
              {13, 13, 64, 64, 1, 1, 1, 0},
              {9, 31, 16, 16, 3, 1, 1, 1},
              {10, 30, 8, 8, 3, 1, 1, 0},
              {6, 27, 200, 300, 3, 1, 1, 1},
              {5, 50, 32, 64, 5, 1, 2, 1},
              {11, 17, 40, 100, 3, 2, 1, 0},
              {2, 2, 32, 32, 1, 1, 1, 0},
              {4, 5, 256, 7, 3, 1, 1, 1},
              {15, 47, 16, 24, 3, 1, 1, 1},
              /* rows longer than the stack's span: 56 + 14 columns; 38 + 22 (odd 13-wide blocks) */
              {4, 70, 16, 128, 3, 1, 1, 1},
              {3, 61, 8, 160, 3, 1, 1, 1}};
    for (size_t c = 0; c < sizeof pc / sizeof pc[0]; c++)
        for (int kind = 0; kind < 2; kind++, variant++)
            pooled_case(pc[c].h, pc[c].w, pc[c].cin, pc[c].cout, pc[c].k, pc[c].stride, pc[c].dil,
                        pc[c].same, kind ? NN_POOL_AVG : NN_POOL_MAX, variant);
    /* A per-channel scale and shift after the activation, alone and before a pooling. */
    static const struct {
        int h, w, cin, cout, k, stride, same, pool;
    } ac[] = {{9, 33, 16, 16, 3, 1, 1, -1}, {8, 34, 16, 16, 3, 1, 1, 0},
              {5, 17, 32, 64, 3, 1, 1, 1},  {6, 16, 32, 48, 1, 1, 0, -1},
              {7, 9, 64, 8, 3, 1, 1, 0},    {4, 90, 3, 32, 3, 2, 1, -1},
              {10, 46, 8, 24, 3, 1, 0, 1},  {3, 13, 40, 100, 3, 1, 1, -1}};
    for (size_t c = 0; c < sizeof ac / sizeof ac[0]; c++)
        for (int v = 0; v < 5; v++, variant++)
            affine_case(ac[c].h, ac[c].w, ac[c].cin, ac[c].cout, ac[c].k, ac[c].stride, ac[c].same,
                        ac[c].pool, variant);
    static const int fks[] = {1, 17, 200, 1024};
    static const int fms[] = {1, 31, 64, 257, 8, 13};
    for (size_t a = 0; a < 4; a++)
        for (size_t b = 0; b < 6; b++, variant++) {
            nn_graph *g = nn_graph_new();
            rng_seed((uint64_t)variant + 5000);
            int x = add_input(g, SHAPE(N, fks[a]));
            int prelu, with_bias = variant % 3 != 1;
            nn_act act = act_cycle(variant, &prelu);
            int inputs[4] = {x, add_const(g, SHAPE(fks[a], fms[b]), -1, 1),
                             with_bias ? add_const(g, SHAPE(fms[b]), -1, 1) : -1, -1};
            if (prelu)
                inputs[3] = add_const(g, variant % 2 ? SHAPE(fms[b]) : SHAPE(1), -0.5f, 0.5f);
            nn_node n = node_proto(NN_OP_FULLY_CONNECTED, prelu ? 4 : (with_bias ? 3 : 2), inputs);
            n.p.fc.act = act;
            char label[96];
            snprintf(label, sizeof label, "gemm fc %dx%d bias %d act %d", fks[a], fms[b], with_bias,
                     (int)act.kind);
            check(g, &n, NULL, DOMAIN_ANY, label);
            nn_graph_free(g);
        }
    use_gemm = 0;
    report("own gemm kernel (conv2d, fully_connected)");
}

/* --- fully connected ----------------------------------------------------------------------- */

static void test_fully_connected(void **state)
{
    (void)state;
    static const int ks[] = {1, 3, 17, 64, 200};
    static const int ms[] = {1, 8, 17, 64};
    int variant = 0;
    for (size_t a = 0; a < 5; a++)
        for (size_t b = 0; b < 4; b++) {
            nn_graph *g = nn_graph_new();
            rng_seed((uint64_t)variant + 1000);
            int x = add_input(g, SHAPE(N, ks[a]));
            int with_bias = variant % 3 != 1;
            int prelu;
            nn_act act = act_cycle(variant, &prelu);
            int inputs[4] = {x, add_const(g, SHAPE(ks[a], ms[b]), -1, 1),
                             with_bias ? add_const(g, SHAPE(ms[b]), -1, 1) : -1, -1};
            if (prelu) inputs[3] = add_const(g, SHAPE(ms[b]), -0.5f, 0.5f);
            nn_node n = node_proto(NN_OP_FULLY_CONNECTED, prelu ? 4 : (with_bias ? 3 : 2), inputs);
            n.p.fc.act = act;
            char label[96];
            snprintf(label, sizeof label, "fc %dx%d bias %d act %d", ks[a], ms[b], with_bias,
                     (int)act.kind);
            check(g, &n, NULL, DOMAIN_ANY, label);
            nn_graph_free(g);
            variant++;
        }
    report("fully_connected");
}

/* --- element-wise -------------------------------------------------------------------------- */

/* Binary operand shapes: a is batched; b is batched or a constant. */
struct binary_shapes {
    nn_shape a, b;
    int b_const;
};

static void test_binary(void **state)
{
    (void)state;
    const struct binary_shapes shapes[] = {
        {SHAPE(N, 7, 9, 3), SHAPE(N, 7, 9, 3), 0},
        {SHAPE(N, 7, 9, 3), SHAPE(3), 1},
        {SHAPE(N, 13, 13, 17), SHAPE(N, 1, 1, 17), 0},
        {SHAPE(N, 1, 9, 1), SHAPE(N, 7, 1, 3), 0},
        {SHAPE(N, 5), SHAPE(1), 1},
        {SHAPE(N, 17), SHAPE(1, 17), 1},
        {SHAPE(N, 7, 9, 64), SHAPE(7, 9, 64), 1},
        {SHAPE(N, 2, 3, 1, 5, 2), SHAPE(1, 1, 3, 4, 1, 2), 1},
        {SHAPE(N, 1, 1, 8), SHAPE(N, 13, 13, 8), 0},
    };
    const nn_act acts[] = {{.kind = NN_ACT_NONE},
                           {.kind = NN_ACT_CLAMP, .lo = -0.5f, .hi = 0.75f},
                           {.kind = NN_ACT_CLAMP, .lo = 0, .hi = INFINITY},
                           {.kind = NN_ACT_LEAKY, .alpha = 0.1f}};
    int variant = 0;
    for (int kind = NN_BINARY_ADD; kind <= NN_BINARY_SQUARED_DIFFERENCE; kind++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (size_t a = 0; a < 4; a++) {
                if ((s + a) % 2 && s != 0) continue;
                nn_graph *g = nn_graph_new();
                rng_seed((uint64_t)variant++ + 2000);
                int inputs[2] = {add_input(g, shapes[s].a),
                                 shapes[s].b_const ? add_const(g, shapes[s].b, 0.5f, 2.0f)
                                                   : add_input(g, shapes[s].b)};
                nn_node n = node_proto(NN_OP_BINARY, 2, inputs);
                n.p.binary = (nn_binary_params){.kind = (nn_binary_kind)kind, .act = acts[a]};
                char label[96];
                snprintf(label, sizeof label, "binary kind %d shapes %zu act %zu", kind, s, a);
                check(g, &n, NULL, kind == NN_BINARY_DIV ? DOMAIN_NONZERO : DOMAIN_ANY, label);
                nn_graph_free(g);
            }
    report("binary");
}

static void test_unary(void **state)
{
    (void)state;
    const nn_unary_kind kinds[] = {NN_UNARY_IDENTITY, NN_UNARY_ABS,   NN_UNARY_NEG,
                                   NN_UNARY_SQUARE,   NN_UNARY_SQRT,  NN_UNARY_SIGMOID,
                                   NN_UNARY_CLAMP,    NN_UNARY_LEAKY, NN_UNARY_ELU};
    const nn_shape shapes[] = {SHAPE(N, 13, 13, 17), SHAPE(N, 5), SHAPE(N, 7, 9, 3), SHAPE(N, 1)};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            nn_graph *g = nn_graph_new();
            rng_seed(k * 10 + s + 3000);
            int x = add_input(g, shapes[s]);
            nn_node n = node_proto(NN_OP_UNARY, 1, &x);
            n.p.unary = (nn_unary_params){.kind = kinds[k], .lo = -1, .hi = 6, .alpha = 0.3f};
            if (s == 2) n.p.unary.lo = 0;
            char label[64];
            snprintf(label, sizeof label, "unary kind %d shape %zu", (int)kinds[k], s);
            check(g, &n, NULL, kinds[k] == NN_UNARY_SQRT ? DOMAIN_POSITIVE : DOMAIN_ANY, label);
            nn_graph_free(g);
        }
    /* Wider range for the transcendental ones. */
    const nn_unary_kind wide[] = {NN_UNARY_SIGMOID, NN_UNARY_ELU};
    for (size_t k = 0; k < 2; k++) {
        nn_graph *g = nn_graph_new();
        rng_seed(k + 3100);
        int x = add_input(g, SHAPE(N, 1000));
        int m = add_const(g, SHAPE(1000), -10, 10);
        int mi[2] = {x, m};
        nn_node mul = node_proto(NN_OP_BINARY, 2, mi);
        mul.p.binary.kind = NN_BINARY_MUL;
        int y = nn_graph_add_node(g, &mul);
        assert_true(y >= 0);
        nn_node n = node_proto(NN_OP_UNARY, 1, &y);
        n.p.unary.kind = wide[k];
        check(g, &n, NULL, DOMAIN_ANY, "unary wide range");
        nn_graph_free(g);
    }
    report("unary");
}

static void test_prelu(void **state)
{
    (void)state;
    const nn_shape xs[] = {SHAPE(N, 7, 9, 17), SHAPE(N, 7, 9, 17), SHAPE(N, 13, 13, 64),
                           SHAPE(N, 5), SHAPE(N, 7, 9, 3)};
    const nn_shape ss[] = {SHAPE(17), SHAPE(1, 1, 17), SHAPE(64), SHAPE(5), SHAPE(1)};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        nn_graph *g = nn_graph_new();
        rng_seed(i + 4000);
        int inputs[2] = {add_input(g, xs[i]), add_const(g, ss[i], -0.5f, 0.5f)};
        nn_node n = node_proto(NN_OP_PRELU, 2, inputs);
        char label[32];
        snprintf(label, sizeof label, "prelu %zu", i);
        check(g, &n, NULL, DOMAIN_ANY, label);
        nn_graph_free(g);
    }
    report("prelu");
}

static void test_softmax(void **state)
{
    (void)state;
    const nn_shape shapes[] = {SHAPE(N, 17), SHAPE(N, 7, 9, 3), SHAPE(N, 1000), SHAPE(N, 1),
                               SHAPE(N, 2)};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        nn_graph *g = nn_graph_new();
        rng_seed(s + 5000);
        int x = add_input(g, shapes[s]);
        nn_node n = node_proto(NN_OP_SOFTMAX, 1, &x);
        check(g, &n, NULL, DOMAIN_ANY, "softmax");
        nn_graph_free(g);
    }
    report("softmax");
}

/* --- pooling and reductions ---------------------------------------------------------------- */

static void test_pool(void **state)
{
    (void)state;
    static const int ks[][2] = {{2, 2}, {3, 3}, {5, 5}, {1, 3}, {3, 2}};
    static const int chans[] = {1, 3, 17, 64};
    int variant = 0;
    for (int kind = NN_POOL_MAX; kind <= NN_POOL_AVG; kind++)
        for (size_t s = 0; s < 4; s++)
            for (size_t k = 0; k < 5; k++)
                for (int stride = 1; stride <= 3; stride++)
                    for (int same = 0; same <= 1; same++) {
                        int c = chans[variant % 4];
                        int h = sizes[s][0], w = sizes[s][1];
                        nn_graph *g = nn_graph_new();
                        rng_seed((uint64_t)variant++ + 6000);
                        int x = add_input(g, SHAPE(N, h, w, c));
                        nn_node n = node_proto(NN_OP_POOL, 1, &x);
                        nn_pool_params *p = &n.p.pool;
                        *p = (nn_pool_params){.kind = (nn_pool_kind)kind,
                                              .kernel_h = ks[k][0],
                                              .kernel_w = ks[k][1],
                                              .stride_h = stride,
                                              .stride_w = stride};
                        if (same) {
                            same_pads(h, ks[k][0], stride, 1, &p->pad_top, &p->pad_bottom);
                            same_pads(w, ks[k][1], stride, 1, &p->pad_left, &p->pad_right);
                        }
                        char label[96];
                        snprintf(label, sizeof label, "%s %dx%dx%d k%dx%d s%d %s",
                                 kind == NN_POOL_MAX ? "max_pool" : "avg_pool", h, w, c, ks[k][0],
                                 ks[k][1], stride, same ? "SAME" : "VALID");
                        check(g, &n, NULL, DOMAIN_ANY, label);
                        nn_graph_free(g);
                    }
    report("pool");
}

static void test_reduce_mean(void **state)
{
    (void)state;
    const struct {
        nn_shape x;
        uint32_t axes;
    } cases[] = {
        {SHAPE(N, 7, 9, 17), 0x6},   {SHAPE(N, 13, 13, 64), 0x6}, {SHAPE(N, 1, 1, 3), 0x6},
        {SHAPE(N, 9, 5), 0x2},       {SHAPE(N, 3, 4, 5, 6), 0xe}, {SHAPE(N, 3, 4, 5, 6), 0x4},
        {SHAPE(N, 3, 4, 5, 6), 0x8}, {SHAPE(N, 7, 9, 17), 0x8},   {SHAPE(N, 3, 4, 5, 6), 0x1e},
        {SHAPE(N, 1000), 0x2},       {SHAPE(N, 7, 9, 17), 0xc},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int keep = 0; keep <= 1; keep++) {
            nn_graph *g = nn_graph_new();
            rng_seed(i + 7000);
            int x = add_input(g, cases[i].x);
            nn_node n = node_proto(NN_OP_REDUCE, 1, &x);
            n.p.reduce = (nn_reduce_params){
                .kind = NN_REDUCE_MEAN, .axes = cases[i].axes, .keep_dims = keep};
            check(g, &n, NULL, DOMAIN_ANY, "mean");
            nn_graph_free(g);
        }
    report("reduce mean");
}

/* --- data movement ------------------------------------------------------------------------- */

static void test_pad(void **state)
{
    (void)state;
    const struct {
        nn_shape x;
        int64_t before[NN_MAX_DIMS], after[NN_MAX_DIMS];
        float value;
    } cases[] = {
        {SHAPE(N, 7, 9, 3), {0, 1, 2, 0}, {0, 2, 1, 0}, 0},
        {SHAPE(N, 13, 13, 17), {0, 0, 0, 3}, {0, 0, 0, 4}, -1.5f},
        {SHAPE(N, 5), {0, 2}, {0, 0}, 7},
        {SHAPE(N, 1, 1, 1), {0, 3, 3, 3}, {0, 3, 3, 3}, 0.25f},
        {SHAPE(N, 2, 3, 4, 5, 6), {0, 1, 0, 1, 0, 1}, {0, 0, 1, 0, 1, 0}, -INFINITY},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nn_graph *g = nn_graph_new();
        rng_seed(i + 8000);
        int x = add_input(g, cases[i].x);
        nn_node n = node_proto(NN_OP_PAD, 1, &x);
        memcpy(n.p.pad.before, cases[i].before, sizeof n.p.pad.before);
        memcpy(n.p.pad.after, cases[i].after, sizeof n.p.pad.after);
        n.p.pad.value = cases[i].value;
        char label[32];
        snprintf(label, sizeof label, "pad %zu", i);
        check(g, &n, NULL, DOMAIN_ANY, label);
        nn_graph_free(g);
    }
    report("pad");
}

static void test_resize_bilinear(void **state)
{
    (void)state;
    static const int io[][4] = {{7, 9, 13, 13}, {13, 13, 7, 9}, {4, 4, 8, 8}, {1, 1, 3, 5},
                                {5, 3, 1, 1},   {6, 6, 6, 6},   {3, 8, 17, 2}};
    static const int chans[] = {3, 17, 1, 64};
    int variant = 0;
    for (size_t i = 0; i < sizeof io / sizeof io[0]; i++)
        for (int mode = 0; mode < 3; mode++) {
            nn_graph *g = nn_graph_new();
            rng_seed((uint64_t)variant + 9000);
            int c = chans[variant++ % 4];
            int x = add_input(g, SHAPE(N, io[i][0], io[i][1], c));
            nn_node n = node_proto(NN_OP_RESIZE_BILINEAR, 1, &x);
            n.p.resize = (nn_resize_params){.out_h = io[i][2],
                                            .out_w = io[i][3],
                                            .align_corners = mode == 1,
                                            .half_pixel_centers = mode == 0};
            char label[96];
            snprintf(label, sizeof label, "resize %dx%d -> %dx%d c%d %s", io[i][0], io[i][1],
                     io[i][2], io[i][3], c,
                     mode == 0   ? "half_pixel"
                     : mode == 1 ? "align_corners"
                                 : "legacy");
            check(g, &n, NULL, DOMAIN_ANY, label);
            nn_graph_free(g);
        }
    report("resize_bilinear");
}

static void test_depth_to_space(void **state)
{
    (void)state;
    static const int cases[][4] = {
        {7, 9, 12, 2}, {13, 13, 4, 2}, {3, 5, 18, 3}, {4, 4, 68, 2}, {1, 1, 64, 4}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nn_graph *g = nn_graph_new();
        rng_seed(i + 10000);
        int x = add_input(g, SHAPE(N, cases[i][0], cases[i][1], cases[i][2]));
        nn_node n = node_proto(NN_OP_DEPTH_TO_SPACE, 1, &x);
        n.p.d2s.block = cases[i][3];
        check(g, &n, NULL, DOMAIN_ANY, "depth_to_space");
        nn_graph_free(g);
    }
    report("depth_to_space");
}

static void test_concat(void **state)
{
    (void)state;
    const struct {
        int axis, n;
        nn_shape s[4];
    } cases[] = {
        {3, 2, {SHAPE(N, 7, 9, 3), SHAPE(N, 7, 9, 17)}},
        {3,
         4,
         {SHAPE(N, 13, 13, 1), SHAPE(N, 13, 13, 64), SHAPE(N, 13, 13, 8), SHAPE(N, 13, 13, 3)}},
        {1, 3, {SHAPE(N, 1, 9, 3), SHAPE(N, 6, 9, 3), SHAPE(N, 2, 9, 3)}},
        {2, 2, {SHAPE(N, 7, 4, 5), SHAPE(N, 7, 5, 5)}},
        {1, 2, {SHAPE(N, 17), SHAPE(N, 1)}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nn_graph *g = nn_graph_new();
        rng_seed(i + 11000);
        int inputs[4];
        for (int k = 0; k < cases[i].n; k++)
            inputs[k] = add_input(g, cases[i].s[k]);
        nn_node n = node_proto(NN_OP_CONCAT, cases[i].n, inputs);
        n.p.concat.axis = cases[i].axis;
        check(g, &n, NULL, DOMAIN_ANY, "concat");
        nn_graph_free(g);
    }
    report("concat");
}

static nn_slice_params slice_params(int rank, const int64_t *begin, const int64_t *size)
{
    nn_slice_params p = {.rank = rank};
    for (int i = 0; i < rank; i++) {
        p.begin[i] = begin[i];
        p.size[i] = size[i];
        p.stride[i] = 1;
    }
    return p;
}

static void test_slice_reshape(void **state)
{
    (void)state;
    const struct {
        nn_shape x, y;
        int64_t begin[NN_MAX_DIMS], size[NN_MAX_DIMS];
    } cases[] = {
        {SHAPE(N, 7, 9, 17), SHAPE(N, 7, 9, 5), {0, 0, 0, 3}, {-1, 7, 9, 5}},
        {SHAPE(N, 7, 9, 17), SHAPE(N, 2, 9, 17), {0, 4, 0, 0}, {-1, 2, 9, 17}},
        {SHAPE(N, 7, 9, 17), SHAPE(N, 7, 17), {0, 0, 8, 0}, {-1, 7, 1, 17}},
        {SHAPE(N, 7, 9, 17), SHAPE(N, 7, 9, 17), {0, 0, 0, 0}, {-1, 7, 9, 17}},
        {SHAPE(N, 13, 13, 64), SHAPE(N, 13, 13, 1), {0, 0, 0, 63}, {-1, 13, 13, 1}},
        {SHAPE(N, 10), SHAPE(N, 4), {0, 6}, {-1, 4}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nn_graph *g = nn_graph_new();
        rng_seed(i + 12000);
        int x = add_input(g, cases[i].x);
        nn_node n = node_proto(NN_OP_SLICE, 1, &x);
        n.p.slice = slice_params(cases[i].x.rank, cases[i].begin, cases[i].size);
        char label[32];
        snprintf(label, sizeof label, "slice %zu", i);
        if (check(g, &n, &cases[i].y, DOMAIN_ANY, label))
            fail_msg("%s: graph rejects the node: %s", label, base_error_message());
        nn_graph_free(g);
    }
    nn_graph *g = nn_graph_new();
    int x = add_input(g, SHAPE(N, 7, 9, 3));
    nn_node n = node_proto(NN_OP_RESHAPE, 1, &x);
    nn_shape y = SHAPE(N, 189);
    if (check(g, &n, &y, DOMAIN_ANY, "reshape")) fail_msg("reshape: %s", base_error_message());
    nn_graph_free(g);
    report("slice and reshape");
}

/* --- what the backend must refuse ---------------------------------------------------------- */

static void test_refused(void **state)
{
    (void)state;
    nn_graph *g = nn_graph_new();
    int x = add_input(g, SHAPE(N, 8, 8, 4));
    const nn_unary_kind kinds[] = {NN_UNARY_TANH, NN_UNARY_EXP, NN_UNARY_LOG, NN_UNARY_RSQRT};
    for (size_t k = 0; k < 4; k++) {
        nn_node n = node_proto(NN_OP_UNARY, 1, &x);
        n.p.unary.kind = kinds[k];
        check_refused(g, &n, NULL, "unary without an XNNPACK operator");
    }
    nn_node n = node_proto(NN_OP_POOL, 1, &x);
    n.p.pool = (nn_pool_params){
        .kind = NN_POOL_MAX, .kernel_h = 1, .kernel_w = 1, .stride_h = 2, .stride_w = 2};
    check_refused(g, &n, NULL, "1x1 pooling");
    n.p.pool = (nn_pool_params){.kind = NN_POOL_AVG,
                                .kernel_h = 2,
                                .kernel_w = 2,
                                .stride_h = 1,
                                .stride_w = 1,
                                .pad_top = 2,
                                .pad_bottom = 2};
    check_refused(g, &n, NULL, "pooling window wholly in the padding");
    n = node_proto(NN_OP_REDUCE, 1, &x);
    n.p.reduce = (nn_reduce_params){.kind = NN_REDUCE_SUM, .axes = 0x6};
    check_refused(g, &n, NULL, "reduce sum");
    n.p.reduce = (nn_reduce_params){.kind = NN_REDUCE_MEAN, .axes = 0xa};
    check_refused(g, &n, NULL, "mean over a broken run of axes");
    n = node_proto(NN_OP_RESIZE_BILINEAR, 1, &x);
    n.p.resize =
        (nn_resize_params){.out_h = 4, .out_w = 4, .align_corners = 1, .half_pixel_centers = 1};
    check_refused(g, &n, NULL, "resize with align_corners and half_pixel_centers");
    n = node_proto(NN_OP_SLICE, 1, &x);
    n.p.slice = (nn_slice_params){
        .rank = 4, .begin = {0, 0, 0, 0}, .stride = {1, 2, 1, 1}, .size = {-1, 4, 8, 4}};
    nn_shape y = SHAPE(N, 4, 8, 4);
    check_refused(g, &n, &y, "strided slice");
    n.p.slice = (nn_slice_params){
        .rank = 4, .begin = {0, 1, 1, 0}, .stride = {1, 1, 1, 1}, .size = {-1, 4, 4, 4}};
    y = SHAPE(N, 4, 4, 4);
    check_refused(g, &n, &y, "slice of two axes");
    int s[2] = {x, add_input(g, SHAPE(N, 8, 8, 4))};
    n = node_proto(NN_OP_PRELU, 2, s);
    check_refused(g, &n, NULL, "prelu with a computed slope");
    nn_graph_free(g);
}

/* A view that does not match the node's shapes is an error, not an out-of-bounds access. */
static void test_setup_checks_views(void **state)
{
    (void)state;
    nn_graph *g = nn_graph_new();
    rng_seed(1);
    int x = add_input(g, SHAPE(N, 8, 8, 4));
    int inputs[2] = {x, add_const(g, SHAPE(3, 3, 4, 8), -1, 1)};
    nn_node proto = node_proto(NN_OP_CONV2D, 2, inputs);
    proto.p.conv = (nn_conv_params){.kernel_h = 3,
                                    .kernel_w = 3,
                                    .stride_h = 1,
                                    .stride_w = 1,
                                    .dilation_h = 1,
                                    .dilation_w = 1};
    int t = nn_graph_add_node(g, &proto);
    assert_true(t >= 0);
    const nn_node *n = &g->nodes[g->tensors[t].producer];
    nn_xnn_op *op;
    assert_int_equal(nn_xnn_create(g, n, &op), 0);
    float *buf = buffer_new(2 * 8 * 8 * 8);
    nn_view in[2] = {{SHAPE(1, 8, 8, 4), buf},
                     {g->tensors[inputs[1]].shape, g->tensors[inputs[1]].data}};
    nn_view out = {SHAPE(1, 8, 8, 8), buf};
    assert_int_equal(nn_xnn_setup(op, g, n, in, &out, NULL), BASE_ERR_INVALID);
    assert_non_null(strstr(base_error_message(), "op_under_test"));
    nn_xnn_destroy(op);
    nn_xnn_destroy(NULL);
    base_aligned_free(buf);
    nn_graph_free(g);
}

static int group_setup(void **state)
{
    (void)state;
    report_start_ns = base_now_ns();
    thread_pool = pthreadpool_create(2);
    return thread_pool ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    pthreadpool_destroy(thread_pool);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_depthwise_conv2d),
        cmocka_unit_test(test_conv2d_asymmetric),
        cmocka_unit_test(test_conv2d_sliced),
        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_fully_connected),
        cmocka_unit_test(test_binary),
        cmocka_unit_test(test_unary),
        cmocka_unit_test(test_prelu),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_reduce_mean),
        cmocka_unit_test(test_pad),
        cmocka_unit_test(test_resize_bilinear),
        cmocka_unit_test(test_depth_to_space),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_slice_reshape),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_setup_checks_views),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
