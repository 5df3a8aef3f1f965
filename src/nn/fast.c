/*
 * Own kernels for element-wise ops XNNPACK (this version) lacks: tanh, exp, rsqrt. The
 * reference backend computes them with libm one element at a time, which made tanh 30% of
 * the age model's time. These loops are branch-free so the compiler vectorises them, and
 * target_clones builds AVX-512 and AVX2 variants chosen at load time.
 *
 * Accuracy: exp has a relative error below 2e-7 (degree-6 Taylor polynomial on [-ln2/2,
 * ln2/2] after Cody-Waite reduction); tanh's absolute error is below 3e-7. The golden tests
 * compare these against TF.js like every other path.
 */
#include "base/base.h"
#include "nn/graph.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* -O2's cheap vectoriser cost model refuses these loops; ask for the full one. Each loop is
 * compiled three times (AVX-512, AVX2+FMA, baseline) and picked per call from the CPU's
 * features; not target_clones, whose ifunc resolvers run before sanitizers start. */
#if defined(__clang__)
#define OPT_O3 /* clang's -O2 vectoriser takes these loops as they are */
#else
#define OPT_O3 optimize("O3")
#endif
#define VARIANTS(name, body)                                                                       \
    __attribute__((target("avx512f"), OPT_O3)) static void name##_avx512(                  \
        const float *x, float *y, size_t n) body                                                   \
    __attribute__((target("avx2,fma"), OPT_O3)) static void name##_avx2(                   \
        const float *x, float *y, size_t n) body                                                   \
    __attribute__((OPT_O3)) static void name##_base(const float *x, float *y, size_t n)    \
        body                                                                                       \
    static void name(const float *x, float *y, size_t n)                                           \
    {                                                                                              \
        if (__builtin_cpu_supports("avx512f")) name##_avx512(x, y, n);                             \
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) name##_avx2(x, y, n); \
        else name##_base(x, y, n);                                                                 \
    }

/* e^y for y in [-87, 88]: y = n ln2 + r, e^y = 2^n e^r. */
__attribute__((always_inline)) static inline float exp_approx(float y)
{
    y = y < -87.0f ? -87.0f : y > 88.0f ? 88.0f : y;
    /* Round to nearest by adding and subtracting 1.5 * 2^23 (vectorises, unlike roundf). */
    float n = (y * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = y - n * 0.693145751953125f;          /* ln2, high bits (exact product) */
    r = r - n * 1.428606765330187045e-06f;          /* ln2, low bits */
    float p = 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

VARIANTS(tanh_f32, {
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        float t = exp_approx(-2.0f * a);
        float r = (1.0f - t) / (1.0f + t);
        y[i] = copysignf(r, x[i]);
    }
})

VARIANTS(exp_f32, {
    for (size_t i = 0; i < n; i++) y[i] = exp_approx(x[i]);
})

VARIANTS(rsqrt_f32, {
    for (size_t i = 0; i < n; i++) y[i] = 1.0f / sqrtf(x[i]);
})

int nn_fast_supports(const nn_graph *g, const nn_node *node)
{
    if (nn_dwconv_supports(g, node) || nn_gemm_supports(g, node)) return 1;
    if (node->op != NN_OP_UNARY) return 0;
    switch (node->p.unary.kind) {
    case NN_UNARY_TANH:
    case NN_UNARY_EXP:
    case NN_UNARY_RSQRT: return 1;
    default: return 0;
    }
}

int nn_fast_run(const nn_graph *g, const nn_node *node, const nn_view *in, nn_view *out,
                struct pthreadpool *pool)
{
    if (node->op == NN_OP_CONV2D && node->p.conv.depthwise) return nn_dwconv_run(g, node, in, out, pool);
    if (node->op == NN_OP_CONV2D || node->op == NN_OP_FULLY_CONNECTED) return nn_gemm_run(g, node, in, out, pool);
    size_t n = (size_t)nn_shape_numel(&out->shape, 1);
    if ((size_t)nn_shape_numel(&in[0].shape, 1) != n)
        return base_error_set(BASE_ERR_INVALID, "node %s: element counts differ", node->name);
    switch (node->p.unary.kind) {
    case NN_UNARY_TANH: tanh_f32(in[0].data, out->data, n); return 0;
    case NN_UNARY_EXP: exp_f32(in[0].data, out->data, n); return 0;
    case NN_UNARY_RSQRT: rsqrt_f32(in[0].data, out->data, n); return 0;
    default: return base_error_set(BASE_ERR_UNSUPPORTED, "node %s: no fast kernel", node->name);
    }
}
