/* The own element-wise kernels (fast.c) against the reference backend (libm). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "nn/graph.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define N 20011 /* odd, so vector tails are exercised */

static void compare(nn_unary_kind kind, float lo, float hi, double abs_tol, double rel_tol)
{
    static float x[N], got[N], want[N];
    for (int i = 0; i < N; i++) x[i] = lo + (hi - lo) * (float)i / (N - 1);
    x[7] = 0.0f;
    x[8] = -0.0f;
    nn_node node = {.op = NN_OP_UNARY, .name = "t", .n_inputs = 1};
    node.p.unary.kind = kind;
    nn_view in = {{1, {N}}, x}, a = {{1, {N}}, got}, b = {{1, {N}}, want};
    assert_true(nn_fast_supports(NULL, &node));
    assert_int_equal(nn_fast_run(NULL, &node, &in, &a), 0);
    assert_int_equal(nn_ref_run(NULL, &node, &in, &b), 0);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double err = fabs((double)got[i] - want[i]);
        double allowed = abs_tol + rel_tol * fabs(want[i]);
        if (err / allowed > worst) worst = err / allowed;
        if (err > allowed) fail_msg("kind %d x=%g: fast %.9g ref %.9g", kind, x[i], got[i], want[i]);
    }
    printf("  kind %d over [%g, %g]: worst error %.2f of the allowance\n", kind, lo, hi, worst);
}

static void test_tanh(void **state)
{
    (void)state;
    compare(NN_UNARY_TANH, -12, 12, 3e-7, 0);
    compare(NN_UNARY_TANH, -0.01f, 0.01f, 3e-7, 0);
}

static void test_exp(void **state)
{
    (void)state;
    compare(NN_UNARY_EXP, -80, 80, 0, 3e-7);
}

static void test_rsqrt(void **state)
{
    (void)state;
    compare(NN_UNARY_RSQRT, 1e-6f, 1e6f, 0, 2e-7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_tanh), cmocka_unit_test(test_exp), cmocka_unit_test(test_rsqrt)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
