/*
 * The Winograd F(2x2, 3x3) convolution (src/nn/winograd.c) against the reference backend.
 *
 * Each case builds a one-node 3x3 stride-1 convolution with seeded random inputs in [-2, 2]
 * and weights in [-1, 1], runs it with nn_ref_run() and with nn_wino_run() at batch 1 (one
 * thread), batch 5 (two threads) and batch 2 (the portable C code), with output tiles of 2x2
 * and of 4x4, and compares. Shapes
 * cover the edges: maps of 1x1 to 31x31 with odd sizes (a last tile half outside the output),
 * VALID, SAME and asymmetric explicit padding (tiles reading only zeros), channel counts that
 * are not multiples of 16 (3, 7, 24, 33; a partial 16- or 32-wide panel, a partial input
 * vector), every fused activation (Relu, Relu6, leaky, PReLU with slopes [C] and
 * [1,1,1,C]), the residual, the post-activation scale and shift, and the fused 2x2 max and
 * average pools.
 *
 * Tolerance: max |wino - ref| <= 1e-4 * (1 + max |ref|), the golden tests' and the GEMM
 * tests' bound. F(2x2, 3x3) only adds and subtracts in its input and output transforms (B
 * and A hold 0 and +-1) and its weight transform is exact but for one rounding (G holds
 * halves; it runs in double), so its error is a few units of rounding of the partial sums
 * (each output sums 9 of the 16 products; each product's input sums up to 4 inputs): about
 * 0.02 of the bound here. F(4x4, 3x3)'s transforms multiply by up to 8 (outputs) and 5
 * (inputs) and its products are larger than the terms they stand for, so its error is about
 * ten times larger (about 0.23 of the bound), still well inside it; a wrong coefficient or
 * a misplaced tile is off by O(1) (a test of this file with one sign flipped fails by 4
 * orders of magnitude). The worst ratio per tile size is printed so a drift shows.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "base/base.h"
#include "helpers.h"
#include "nn/graph.h"
#include "nn/model.h"
#include "nn/nn.h"

#include <math.h>
#include <pthreadpool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N NN_BATCH

static nn_shape shape4(int64_t a, int64_t b, int64_t c, int64_t d)
{
    return (nn_shape){.rank = 4, .dim = {a, b, c, d}};
}

static nn_shape shape1(int64_t a)
{
    return (nn_shape){.rank = 1, .dim = {a}};
}

static pthreadpool_t thread_pool;
static int cases_run;
static double worst_ratio;
static double worst_by_tile[5]; /* per output tile size (2, 4) */
static int current_tile;

/* The case's epilogue. */
enum epilogue {
    EPI_PLAIN,
    EPI_RESIDUAL,
    EPI_AFFINE,
    EPI_POOL_MAX,
    EPI_POOL_AVG,
    EPI_AFFINE_POOL,
    EPI_COUNT
};

static nn_act act_of(int i, int *prelu)
{
    *prelu = 0;
    switch (i % 6) {
    case 1: return (nn_act){.kind = NN_ACT_CLAMP, .lo = 0, .hi = INFINITY};
    case 2: return (nn_act){.kind = NN_ACT_CLAMP, .lo = 0, .hi = 6};
    case 3: return (nn_act){.kind = NN_ACT_LEAKY, .alpha = 0.2f};
    case 4:
    case 5: *prelu = i % 6 == 4 ? 1 : 2; return (nn_act){.kind = NN_ACT_PRELU};
    default: return (nn_act){.kind = NN_ACT_NONE};
    }
}

/* Runs node ni of g with the reference and with Winograd (batch, threads, portable) and
 * compares; returns 0, or fails the test. */
static void compare(nn_graph *g, int ni, int64_t batch, pthreadpool_t pool, int portable,
                    const char *label)
{
    const nn_node *node = &g->nodes[ni];
    nn_view in[NN_MAX_NODE_INPUTS];
    float *owned[NN_MAX_NODE_INPUTS] = {0};
    memset(in, 0, sizeof in);
    for (int i = 0; i < node->n_inputs; i++) {
        int t = node->inputs[i];
        if (t < 0) continue;
        in[i].shape = g->tensors[t].shape;
        if (g->tensors[t].data) {
            in[i].data = g->tensors[t].data;
            continue;
        }
        in[i].shape.dim[0] = batch;
        size_t n = (size_t)nn_shape_numel(&in[i].shape, 1);
        owned[i] = buffer_new(n);
        for (size_t k = 0; k < n; k++)
            owned[i][k] = rng_range(-2, 2);
        in[i].data = owned[i];
    }
    nn_shape os = g->tensors[node->output].shape;
    os.dim[0] = batch;
    size_t on = (size_t)nn_shape_numel(&os, 1);
    nn_view ref = {os, buffer_new(on)}, got = {os, buffer_new(on)};
    for (size_t k = 0; k < on; k++)
        got.data[k] = NAN; /* every element must be written */
    if (nn_ref_run(g, node, in, &ref)) fail_msg("%s: reference: %s", label, base_error_message());
    size_t threads = pool ? pthreadpool_get_threads_count(pool) : 1;
    size_t sf = nn_wino_scratch_floats(g, node) * threads;
    float *scratch = buffer_new(sf);
    nn_wino_force_portable(portable);
    int rc = nn_wino_run(g, node, in, &got, pool, scratch, sf);
    nn_wino_force_portable(0);
    if (rc) fail_msg("%s batch %d: %s", label, (int)batch, base_error_message());
    double max_ref = 0, max_err = 0;
    size_t worst = 0;
    for (size_t k = 0; k < on; k++) {
        double r = ref.data[k], x = got.data[k];
        if (fabs(r) > max_ref) max_ref = fabs(r);
        double e = fabs(x - r);
        if (isnan(e)) e = INFINITY;
        if (e > max_err) {
            max_err = e;
            worst = k;
        }
    }
    double tol = 1e-4 * (1 + max_ref);
    if (max_err / tol > worst_ratio) worst_ratio = max_err / tol;
    if (max_err / tol > worst_by_tile[current_tile]) worst_by_tile[current_tile] = max_err / tol;
    if (!(max_err <= tol))
        fail_msg("%s batch %d%s: element %zu: winograd %.9g, reference %.9g (max error %.3g, "
                 "tolerance %.3g)",
                 label, (int)batch, portable ? " portable" : "", worst, (double)got.data[worst],
                 (double)ref.data[worst], max_err, tol);
    base_aligned_free(scratch);
    base_aligned_free(ref.data);
    base_aligned_free(got.data);
    for (int i = 0; i < NN_MAX_NODE_INPUTS; i++)
        base_aligned_free(owned[i]);
}

/* One convolution: h x w x cin -> cout, pads (t, b, l, r), the epilogue and activation of
 * `variant`. Returns 0, or -1 when the window does not fit (no output). */
static int wino_case(int h, int w, int cin, int cout, const int pad[4], int variant, int tile)
{
    enum epilogue epi = (enum epilogue)(variant % EPI_COUNT);
    int prelu;
    nn_act act = act_of(variant / EPI_COUNT + variant, &prelu);
    int64_t oh = nn_window_out(h, 3, 1, 1, pad[0], pad[1]),
            ow = nn_window_out(w, 3, 1, 1, pad[2], pad[3]);
    if (oh < 1 || ow < 1) return -1;
    int pooled = epi == EPI_POOL_MAX || epi == EPI_POOL_AVG || epi == EPI_AFFINE_POOL;
    if (pooled && (oh < 2 || ow < 2)) epi = EPI_PLAIN, pooled = 0;
    nn_graph *g = nn_graph_new();
    assert_non_null(g);
    rng_seed((uint64_t)variant * 7919 + (uint64_t)(h * 31 + w) * 131 + (uint64_t)cin * 17 +
             (uint64_t)cout);
    nn_shape xs = shape4(N, h, w, cin);
    int x = nn_graph_add_input(g, "x", &xs);
    assert_true(x >= 0);
    int inputs[7] = {x,
                     add_const(g, shape4(3, 3, cin, cout), -1, 1),
                     variant % 4 ? add_const(g, shape1(cout), -1, 1) : -1,
                     -1,
                     -1,
                     -1,
                     -1};
    int n_inputs = inputs[2] >= 0 ? 3 : 2;
    if (prelu) {
        inputs[3] = add_const(g, prelu == 1 ? shape1(cout) : shape4(1, 1, 1, cout), -0.5f, 0.5f);
        n_inputs = 4;
    }
    if (epi == EPI_RESIDUAL) {
        nn_shape rs = shape4(N, oh, ow, cout);
        inputs[4] = nn_graph_add_input(g, "r", &rs);
        assert_true(inputs[4] >= 0);
        n_inputs = 5;
    }
    if (epi == EPI_AFFINE || epi == EPI_AFFINE_POOL) {
        inputs[5] = add_const(g, shape1(cout), -1.5f, 1.5f);
        inputs[6] = add_const(g, shape1(cout), -1, 1);
        n_inputs = 7;
    }
    nn_node n;
    memset(&n, 0, sizeof n);
    n.op = NN_OP_CONV2D;
    n.name = "wino_under_test";
    n.n_inputs = n_inputs;
    for (int i = 0; i < NN_MAX_NODE_INPUTS; i++)
        n.inputs[i] = i < n_inputs ? inputs[i] : -1;
    n.p.conv = (nn_conv_params){.kernel_h = 3,
                                .kernel_w = 3,
                                .stride_h = 1,
                                .stride_w = 1,
                                .dilation_h = 1,
                                .dilation_w = 1,
                                .pad_top = pad[0],
                                .pad_bottom = pad[1],
                                .pad_left = pad[2],
                                .pad_right = pad[3],
                                .act = act,
                                .residual = epi == EPI_RESIDUAL,
                                .post_affine = epi == EPI_AFFINE || epi == EPI_AFFINE_POOL,
                                .pool = pooled ? 2 : 0,
                                .pool_kind = epi == EPI_POOL_AVG ? NN_POOL_AVG : NN_POOL_MAX};
    char label[200];
    snprintf(label, sizeof label,
             "F(%dx%d) %dx%dx%d -> %d pad t%d b%d l%d r%d epilogue %d act %d%s bias %d", tile, tile,
             h, w, cin, cout, pad[0], pad[1], pad[2], pad[3], (int)epi, (int)act.kind,
             prelu == 2 ? " (slope [1,1,1,C])" : "", inputs[2] >= 0);
    int t = nn_graph_add_node(g, &n);
    if (t < 0) fail_msg("%s: graph rejects the node: %s", label, base_error_message());
    int ni = g->tensors[t].producer;
    if (!nn_wino_supports(g, &g->nodes[ni])) fail_msg("%s: Winograd refuses it", label);
    if (nn_wino_pack(g, &g->nodes[ni], tile)) fail_msg("%s: pack: %s", label, base_error_message());
    current_tile = tile;
    compare(g, ni, 1, NULL, 0, label);
    compare(g, ni, 5, thread_pool, 0, label);
    compare(g, ni, 2, NULL, 1, label);
    nn_graph_free(g);
    cases_run++;
    return 0;
}

static void test_edge_shapes(void **state)
{
    (void)state;
    static const int sizes[][2] = {{1, 1}, {2, 3}, {5, 7}, {31, 31},
                                   {4, 4}, {3, 3}, {6, 9}, {8, 2}};
    /* VALID, SAME, asymmetric, and padding wider than the kernel's reach on one side (whole
     * tiles of zeros at the top and right). */
    static const int pads[][4] = {{0, 0, 0, 0}, {1, 1, 1, 1}, {0, 2, 2, 1}, {3, 0, 0, 3}};
    static const int chans[][2] = {{3, 7}, {7, 24}, {24, 33}, {33, 16}, {16, 3}, {1, 1}, {40, 64}};
    int variant = 0, skipped = 0;
    uint64_t t0 = base_now_ns();
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (size_t p = 0; p < sizeof pads / sizeof pads[0]; p++)
            for (size_t c = 0; c < sizeof chans / sizeof chans[0]; c++) {
                /* The 31x31 map with the widest channels only once per padding: the reference is
                 * slow. */
                if (sizes[s][0] == 31 && chans[c][0] == 40 && p > 1) continue;
                for (int tile = 2; tile <= 4; tile += 2)
                    if (wino_case(sizes[s][0], sizes[s][1], chans[c][0], chans[c][1], pads[p],
                                  variant++, tile))
                        skipped++;
            }
    print_message("winograd: %d cases (%d without output skipped), 3 runs each, worst error %.3f "
                  "of tolerance "
                  "(F(2x2) %.3f, F(4x4) %.3f), %.1f s\n",
                  cases_run, skipped, worst_ratio, worst_by_tile[2], worst_by_tile[4],
                  (double)(base_now_ns() - t0) * 1e-9);
    assert_true(cases_run > 150);
}

/* Every epilogue with every activation on one shape with several panels and blocks. */
static void test_epilogues(void **state)
{
    (void)state;
    static const int pad[4] = {1, 1, 1, 1};
    int before = cases_run;
    for (int v = 0; v < EPI_COUNT * 6; v++) {
        wino_case(17, 30, 20, 70, pad, v, 2);
        wino_case(17, 30, 20, 70, pad, v, 4);
    }
    assert_int_equal(cases_run - before, 2 * EPI_COUNT * 6);
}

/* Bad calls get an error, never a crash: weights not transformed, a scratch too small or
 * missing, views that do not match the node. */
static void test_bad_calls(void **state)
{
    (void)state;
    nn_graph *g = nn_graph_new();
    nn_shape xs = shape4(N, 9, 9, 8);
    int x = nn_graph_add_input(g, "x", &xs);
    int w = add_const(g, shape4(3, 3, 8, 16), -1, 1);
    nn_node n;
    memset(&n, 0, sizeof n);
    n.op = NN_OP_CONV2D;
    n.name = "bad";
    n.n_inputs = 2;
    for (int i = 0; i < NN_MAX_NODE_INPUTS; i++)
        n.inputs[i] = i == 0 ? x : i == 1 ? w : -1;
    n.p.conv = (nn_conv_params){.kernel_h = 3,
                                .kernel_w = 3,
                                .stride_h = 1,
                                .stride_w = 1,
                                .dilation_h = 1,
                                .dilation_w = 1};
    int t = nn_graph_add_node(g, &n);
    assert_true(t >= 0);
    nn_node *node = &g->nodes[g->tensors[t].producer];
    float *xd = buffer_new(81 * 8), *yd = buffer_new(49 * 16);
    memset(xd, 0, 81 * 8 * sizeof *xd);
    nn_view in[2] = {{shape4(1, 9, 9, 8), xd}, {g->tensors[w].shape, g->tensors[w].data}};
    nn_view out = {shape4(1, 7, 7, 16), yd};
    float *scratch = buffer_new(64);
    assert_int_not_equal(nn_wino_run(g, node, in, &out, NULL, scratch, 64), 0); /* not packed */
    base_aligned_free(scratch);
    assert_int_not_equal(nn_wino_pack(g, node, 3), 0);
    assert_int_equal(nn_wino_pack(g, node, 2), 0);
    size_t sf = nn_wino_scratch_floats(g, node);
    scratch = buffer_new(sf);
    assert_int_equal(nn_wino_run(g, node, in, &out, NULL, scratch, sf), 0);
    assert_int_not_equal(nn_wino_run(g, node, in, &out, NULL, scratch, sf - 1), 0);
    assert_int_not_equal(nn_wino_run(g, node, in, &out, NULL, NULL, 0), 0);
    nn_view bad = {shape4(1, 9, 9, 16), yd};
    assert_int_not_equal(nn_wino_run(g, node, in, &bad, NULL, scratch, sf), 0);
    /* Other kernels are refused. */
    n.p.conv.stride_h = n.p.conv.stride_w = 2;
    int t2 = nn_graph_add_node(g, &n);
    assert_true(t2 >= 0);
    assert_false(nn_wino_supports(g, &g->nodes[g->tensors[t2].producer]));
    base_aligned_free(scratch);
    base_aligned_free(xd);
    base_aligned_free(yd);
    nn_graph_free(g);
}

/* The rule applied at load: emotion's 3x3 32 -> 64 layer (its slowest) runs by Winograd, the
 * stems from 1 or 3 channels do not, and the whole model still equals the reference backend
 * at batch 3 with two threads. */
static void test_model_rule(void **state)
{
    (void)state;
    if (access("models/human/emotion.json", R_OK) != 0) skip();
    nn_model *m = NULL;
    if (nn_model_load_tfjs("models/human/emotion.json", NULL, &m))
        fail_msg("%s", base_error_message());
    const nn_graph *g = nn_model_graph(m);
    int wino = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const nn_node *n = &g->nodes[i];
        if (n->op != NN_OP_CONV2D || n->p.conv.depthwise || n->p.conv.kernel_h != 3) continue;
        const nn_shape *w = &g->tensors[n->inputs[1]].shape;
        if (w->dim[2] == 32 && w->dim[3] == 64) assert_non_null(n->wino);
        if (w->dim[2] < 8) assert_null(n->wino);
        wino += n->wino != NULL;
    }
    if (__builtin_cpu_supports("avx512f")) assert_true(wino >= 1);
    nn_context *ctx[2] = {0};
    for (int k = 0; k < 2; k++) {
        nn_context_options o = {
            .max_batch = 3, .threads = 2, .backend = k ? NN_BACKEND_REFERENCE : NN_BACKEND_AUTO};
        if (nn_context_create(m, &o, &ctx[k])) fail_msg("%s", base_error_message());
        nn_io_info info;
        nn_model_input_info(m, 0, &info);
        size_t n = 3;
        for (int d = 1; d < info.rank; d++)
            n *= (size_t)info.dim[d];
        float *xin = nn_context_input(ctx[k], 0);
        rng_seed(42);
        for (size_t q = 0; q < n; q++)
            xin[q] = rng_range(0, 1);
        if (nn_context_run(ctx[k], 3)) fail_msg("%s", base_error_message());
    }
    nn_io_info oi;
    const float *a = nn_context_output(ctx[0], 0, &oi), *b = nn_context_output(ctx[1], 0, NULL);
    size_t n = 1;
    for (int d = 0; d < oi.rank; d++)
        n *= (size_t)oi.dim[d];
    double max_ref = 0, max_err = 0;
    for (size_t q = 0; q < n; q++) {
        if (fabs(b[q]) > max_ref) max_ref = fabs(b[q]);
        if (fabs(a[q] - b[q]) > max_err) max_err = fabs(a[q] - b[q]);
    }
    print_message("emotion, %d Winograd layers: max error %.3g against the reference backend\n",
                  wino, max_err);
    assert_true(max_err <= 1e-4 * (1 + max_ref));
    nn_context_destroy(ctx[0]);
    nn_context_destroy(ctx[1]);
    nn_model_destroy(m);
}

static int group_setup(void **state)
{
    (void)state;
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
        cmocka_unit_test(test_edge_shapes),
        cmocka_unit_test(test_epilogues),
        cmocka_unit_test(test_bad_calls),
        cmocka_unit_test(test_model_rule),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
