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

#include <immintrin.h>
#include <math.h>
#include <pthreadpool.h>
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
    __attribute__((target("avx512f"), OPT_O3)) static void name##_avx512(const float *x, float *y, \
                                                                         size_t n) body            \
        __attribute__((target("avx2,fma"), OPT_O3)) static void name##_avx2(                       \
            const float *x, float *y, size_t n) body                                               \
        __attribute__((OPT_O3)) static void name##_base(const float *x, float *y, size_t n)        \
            body static void                                                                       \
            name(const float *x, float *y, size_t n)                                               \
    {                                                                                              \
        if (__builtin_cpu_supports("avx512f"))                                                     \
            name##_avx512(x, y, n);                                                                \
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))                  \
            name##_avx2(x, y, n);                                                                  \
        else                                                                                       \
            name##_base(x, y, n);                                                                  \
    }

/* e^y for y in [-87, 88]: y = n ln2 + r, e^y = 2^n e^r. NaN in, NaN out. */
__attribute__((always_inline)) static inline float exp_approx(float y)
{
    const float in = y;
    /* written so that NaN becomes -87: n's conversion to int below needs a number (NaN there
     * is undefined behaviour; a model file's weights can make one, found by fuzz_model) */
    y = y > -87.0f ? y : -87.0f;
    y = y < 88.0f ? y : 88.0f;
    /* Round to nearest by adding and subtracting 1.5 * 2^23 (vectorises, unlike roundf). */
    float n = (y * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = y - n * 0.693145751953125f;  /* ln2, high bits (exact product) */
    r = r - n * 1.428606765330187045e-06f; /* ln2, low bits */
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
    return in == in ? p * scale : in;
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
    for (size_t i = 0; i < n; i++)
        y[i] = exp_approx(x[i]);
})

VARIANTS(rsqrt_f32, {
    for (size_t i = 0; i < n; i++)
        y[i] = 1.0f / sqrtf(x[i]);
})

/* Max and average pooling with windows up to 3x3 (every pool of the small face models: 2x2 and
 * 3x3, stride 2, VALID or SAME): XNNPACK's pooling ran at about 50 GB/s on them (bench nn
 * --profile: 10% of the age and gender models' time); this reads each window's vectors from L1,
 * 16 channels per vector. Average pooling divides by the in-bounds count (TensorFlow's rule, as
 * the reference). A task is one output row. */
#define POOL_MAX_WINDOW 3
typedef struct pool_job {
    const float *x;
    float *y;
    const nn_pool_params *p;
    int64_t h, w, c, oh, ow;
} pool_job;

__attribute__((target("avx512f"))) static void pool_row(void *arg, size_t row)
{
    const pool_job *j = arg;
    const nn_pool_params *p = j->p;
    int64_t b = (int64_t)row / j->oh, oy = (int64_t)row % j->oh;
    int64_t iy0 = oy * p->stride_h - p->pad_top, iy1 = iy0 + p->kernel_h;
    if (iy0 < 0) iy0 = 0;
    if (iy1 > j->h) iy1 = j->h;
    const float *img = j->x + (size_t)(b * j->h * j->w * j->c);
    float *out = j->y + (size_t)row * (size_t)(j->ow * j->c);
    size_t c = (size_t)j->c;
    for (int64_t ox = 0; ox < j->ow; ox++, out += c) {
        int64_t ix0 = ox * p->stride_w - p->pad_left, ix1 = ix0 + p->kernel_w;
        if (ix0 < 0) ix0 = 0;
        if (ix1 > j->w) ix1 = j->w;
        /* The window's in-bounds pixels, found once for all channel blocks. */
        const float *src[POOL_MAX_WINDOW * POOL_MAX_WINDOW];
        int n = 0;
        for (int64_t iy = iy0; iy < iy1; iy++)
            for (int64_t ix = ix0; ix < ix1; ix++)
                src[n++] = img + (size_t)(iy * j->w + ix) * c;
        if (p->kind == NN_POOL_AVG) {
            __m512 scale = _mm512_set1_ps(1.0f / (float)n);
            for (size_t k = 0; k < c; k += 16) {
                __mmask16 m = c - k >= 16 ? 0xffff : (__mmask16)((1u << (c - k)) - 1);
                __m512 v = _mm512_setzero_ps();
                for (int t = 0; t < n; t++)
                    v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, src[t] + k));
                _mm512_mask_storeu_ps(out + k, m, _mm512_mul_ps(v, scale));
            }
        } else if (n == 9) {
            for (size_t k = 0; k < c; k += 16) {
                __mmask16 m = c - k >= 16 ? 0xffff : (__mmask16)((1u << (c - k)) - 1);
                __m512 v0 =
                    _mm512_max_ps(_mm512_maskz_loadu_ps(m, src[0] + k), _mm512_set1_ps(-INFINITY));
                __m512 v1 =
                    _mm512_max_ps(_mm512_maskz_loadu_ps(m, src[1] + k), _mm512_set1_ps(-INFINITY));
                __m512 v2 =
                    _mm512_max_ps(_mm512_maskz_loadu_ps(m, src[2] + k), _mm512_set1_ps(-INFINITY));
                v0 = _mm512_max_ps(_mm512_maskz_loadu_ps(m, src[3] + k), v0);
                v1 = _mm512_max_ps(_mm512_maskz_loadu_ps(m, src[4] + k), v1);
                v2 = _mm512_max_ps(_mm512_maskz_loadu_ps(m, src[5] + k), v2);
                v0 = _mm512_max_ps(_mm512_maskz_loadu_ps(m, src[6] + k), v0);
                v1 = _mm512_max_ps(_mm512_maskz_loadu_ps(m, src[7] + k), v1);
                v2 = _mm512_max_ps(_mm512_maskz_loadu_ps(m, src[8] + k), v2);
                /* Combining partial maxima: a NaN-free partial wins over -inf, as in one chain. */
                _mm512_mask_storeu_ps(out + k, m, _mm512_max_ps(v0, _mm512_max_ps(v1, v2)));
            }
        } else {
            for (size_t k = 0; k < c; k += 16) {
                __mmask16 m = c - k >= 16 ? 0xffff : (__mmask16)((1u << (c - k)) - 1);
                __m512 v = _mm512_set1_ps(-INFINITY);
                for (int t = 0; t < n; t++)
                    v = _mm512_max_ps(_mm512_maskz_loadu_ps(m, src[t] + k), v);
                _mm512_mask_storeu_ps(out + k, m, v);
            }
        }
    }
}

static int pool_supports(const nn_graph *g, const nn_node *node)
{
    if (node->op != NN_OP_POOL || !__builtin_cpu_supports("avx512f")) return 0;
    const nn_pool_params *p = &node->p.pool;
    if (p->kind != NN_POOL_MAX && p->kind != NN_POOL_AVG) return 0;
    if (p->kernel_h < 1 || p->kernel_w < 1 || p->kernel_h > POOL_MAX_WINDOW ||
        p->kernel_w > POOL_MAX_WINDOW || p->stride_h < 1 || p->stride_w < 1 || p->pad_top < 0 ||
        p->pad_bottom < 0 || p->pad_left < 0 || p->pad_right < 0 || p->pad_top >= p->kernel_h ||
        p->pad_bottom >= p->kernel_h || p->pad_left >= p->kernel_w || p->pad_right >= p->kernel_w)
        return 0;
    /* NaN inputs are skipped, as in the reference: vmaxps(e, v) returns v when e is NaN. */
    return !g || (node->inputs[0] >= 0 && g->tensors[node->inputs[0]].dtype == NN_DTYPE_F32 &&
                  g->tensors[node->inputs[0]].shape.rank == 4);
}

static int pool_run(const nn_node *node, const nn_view *in, nn_view *out, struct pthreadpool *pool)
{
    const nn_pool_params *p = &node->p.pool;
    const nn_shape *xs = &in[0].shape, *ys = &out->shape;
    int ok = xs->rank == 4 && ys->rank == 4 && ys->dim[0] == xs->dim[0] && ys->dim[3] == xs->dim[3];
    if (ok) {
        int64_t ph = xs->dim[1] + p->pad_top + p->pad_bottom,
                pw = xs->dim[2] + p->pad_left + p->pad_right;
        ok = ph >= p->kernel_h && pw >= p->kernel_w &&
             ys->dim[1] == (ph - p->kernel_h) / p->stride_h + 1 &&
             ys->dim[2] == (pw - p->kernel_w) / p->stride_w + 1;
    }
    if (!ok) return base_error_set(BASE_ERR_INVALID, "node %s: bad views", node->name);
    pool_job j = {.x = in[0].data,
                  .y = out->data,
                  .p = p,
                  .h = xs->dim[1],
                  .w = xs->dim[2],
                  .c = xs->dim[3],
                  .oh = ys->dim[1],
                  .ow = ys->dim[2]};
    size_t rows = (size_t)(ys->dim[0] * ys->dim[1]);
    if (pool && pthreadpool_get_threads_count(pool) > 1)
        pthreadpool_parallelize_1d(pool, pool_row, &j, rows, 0);
    else
        for (size_t r = 0; r < rows; r++)
            pool_row(&j, r);
    return 0;
}

int nn_fast_supports(const nn_graph *g, const nn_node *node)
{
    if (nn_dwconv_supports(g, node) || nn_gemm_supports(g, node) || pool_supports(g, node))
        return 1;
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
    if (node->op == NN_OP_CONV2D && node->p.conv.depthwise)
        return nn_dwconv_run(g, node, in, out, pool);
    if (node->op == NN_OP_CONV2D || node->op == NN_OP_FULLY_CONNECTED)
        return nn_gemm_run(g, node, in, out, pool);
    if (node->op == NN_OP_POOL) return pool_run(node, in, out, pool);
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
