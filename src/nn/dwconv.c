/*
 * Own depthwise convolution kernel (NHWC, multiplier 1) with fused bias and activation.
 *
 * Why: this XNNPACK's depthwise kernels reach 25-45 GFLOP/s on the face models' shapes
 * (e.g. 128x128x24, 3x3 or 5x5), where the work is a few FMAs per loaded vector; profiles
 * showed them as most of BlazeFace's time. Here the weights of a 16-channel block stay in
 * registers for a whole pass over the image, and every output vector costs KH*KW loads and
 * FMAs from L1.
 *
 * Layout: x [N,H,W,C], filter [KH,KW,C,1], out [N,OH,OW,C]. Channels are processed in blocks
 * of 16 (the tail block masked). Taps that fall in the padding are skipped, so padding is zero
 * as TensorFlow defines it.
 */
#include "base/base.h"
#include "nn/graph.h"

#include <immintrin.h>
#include <math.h>
#include <pthreadpool.h>
#include <stdint.h>
#include <string.h>

#define DW_MAX_TAPS 49 /* up to 7x7 */

int nn_dwconv_supports(const nn_graph *g, const nn_node *n)
{
    if (n->op != NN_OP_CONV2D || !n->p.conv.depthwise) return 0;
    if (!__builtin_cpu_supports("avx512f")) return 0;
    const nn_conv_params *p = &n->p.conv;
    const nn_shape *w = &g->tensors[n->inputs[1]].shape;
    if (w->dim[3] != 1 || p->kernel_h * p->kernel_w > DW_MAX_TAPS) return 0;
    if (p->act.kind == NN_ACT_LEAKY) return 0;
    if (n->n_inputs > 2 && n->inputs[2] >= 0 && !nn_tensor_is_const(g, n->inputs[2])) return 0;
    return 1;
}

/*
 * Interior rows and columns (every tap in bounds) for a K x K kernel known at compile time:
 * the K*K weight vectors live in registers and four output pixels are computed together, so
 * each weight load is amortised and four FMA chains run in parallel.
 */
#define DW_INTERIOR(K)                                                                             \
    __attribute__((target("avx512f"))) static void dw_interior_##K(                                \
        const float *x, const __m512 *wv, __m512 b, float *y, int64_t W, int64_t C, int64_t OW,    \
        int64_t oy, int64_t ox0, int64_t ox1, const nn_conv_params *p, __mmask16 mask, int clamp,  \
        __m512 lo, __m512 hi)                                                                      \
    {                                                                                              \
        __m512 w[K * K];                                                                           \
        for (int t = 0; t < K * K; t++)                                                            \
            w[t] = wv[t];                                                                          \
        const int64_t sx = (int64_t)p->stride_w * C, dx = (int64_t)p->dilation_w * C;              \
        const int64_t iy0 = oy * p->stride_h - p->pad_top;                                         \
        int64_t ox = ox0;                                                                          \
        for (; ox + 4 <= ox1; ox += 4) {                                                           \
            __m512 a0 = b, a1 = b, a2 = b, a3 = b;                                                 \
            for (int ky = 0; ky < K; ky++) {                                                       \
                const float *r = x + ((iy0 + (int64_t)ky * p->dilation_h) * W + ox * p->stride_w - \
                                      p->pad_left) *                                               \
                                         C;                                                        \
                for (int kx = 0; kx < K; kx++) {                                                   \
                    const float *q = r + kx * dx;                                                  \
                    __m512 wk = w[ky * K + kx];                                                    \
                    a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, q), wk, a0);                  \
                    a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, q + sx), wk, a1);             \
                    a2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, q + 2 * sx), wk, a2);         \
                    a3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, q + 3 * sx), wk, a3);         \
                }                                                                                  \
            }                                                                                      \
            if (clamp) {                                                                           \
                a0 = _mm512_min_ps(_mm512_max_ps(a0, lo), hi);                                     \
                a1 = _mm512_min_ps(_mm512_max_ps(a1, lo), hi);                                     \
                a2 = _mm512_min_ps(_mm512_max_ps(a2, lo), hi);                                     \
                a3 = _mm512_min_ps(_mm512_max_ps(a3, lo), hi);                                     \
            }                                                                                      \
            float *o = y + (oy * OW + ox) * C;                                                     \
            _mm512_mask_storeu_ps(o, mask, a0);                                                    \
            _mm512_mask_storeu_ps(o + C, mask, a1);                                                \
            _mm512_mask_storeu_ps(o + 2 * C, mask, a2);                                            \
            _mm512_mask_storeu_ps(o + 3 * C, mask, a3);                                            \
        }                                                                                          \
        for (; ox < ox1; ox++) {                                                                   \
            __m512 a0 = b;                                                                         \
            for (int ky = 0; ky < K; ky++) {                                                       \
                const float *r = x + ((iy0 + (int64_t)ky * p->dilation_h) * W + ox * p->stride_w - \
                                      p->pad_left) *                                               \
                                         C;                                                        \
                for (int kx = 0; kx < K; kx++)                                                     \
                    a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, r + kx * dx), w[ky * K + kx], \
                                         a0);                                                      \
            }                                                                                      \
            if (clamp) a0 = _mm512_min_ps(_mm512_max_ps(a0, lo), hi);                              \
            _mm512_mask_storeu_ps(y + (oy * OW + ox) * C, mask, a0);                               \
        }                                                                                          \
    }
DW_INTERIOR(3)
DW_INTERIOR(5)

__attribute__((target("avx512f"))) static void
dw_block(const float *x, const float *w, const float *bias, const float *slope, float *y,
         const nn_conv_params *p, int64_t H, int64_t W, int64_t C, int64_t OH, int64_t OW,
         int64_t c0, __mmask16 mask, int64_t oy_begin, int64_t oy_end, int64_t flat_end)
{
    const int KH = p->kernel_h, KW = p->kernel_w;
    __m512 wv[DW_MAX_TAPS];
    for (int t = 0; t < KH * KW; t++)
        wv[t] = _mm512_maskz_loadu_ps(mask, w + (int64_t)t * C + c0);
    const __m512 b = bias ? _mm512_maskz_loadu_ps(mask, bias + c0) : _mm512_setzero_ps();
    const int clamp = p->act.kind == NN_ACT_CLAMP, prelu = p->act.kind == NN_ACT_PRELU;
    const __m512 lo = _mm512_set1_ps(clamp ? p->act.lo : 0),
                 hi = _mm512_set1_ps(clamp ? p->act.hi : 0);
    const __m512 sv = prelu ? _mm512_maskz_loadu_ps(mask, slope + c0) : _mm512_setzero_ps();
    /* Output columns whose taps are all inside the image: [ox_lo, ox_hi). */
    int64_t ox_lo = (p->pad_left + p->stride_w - 1) / p->stride_w;
    int64_t ox_hi = (W + p->pad_left - (int64_t)(KW - 1) * p->dilation_w - 1) / p->stride_w + 1;
    if (ox_hi > OW) ox_hi = OW;
    if (ox_hi < ox_lo) ox_hi = ox_lo;
    const int special = !prelu && KH == KW && (KH == 3 || KH == 5);
    (void)OH;
    for (int64_t oy = oy_begin; oy < oy_end; oy++) {
        int64_t iy0 = oy * p->stride_h - p->pad_top;
        int ky0 = 0, ky1 = KH;
        while (ky0 < KH && iy0 + (int64_t)ky0 * p->dilation_h < 0)
            ky0++;
        while (ky1 > ky0 && iy0 + (int64_t)(ky1 - 1) * p->dilation_h >= H)
            ky1--;
        int row_inside = ky0 == 0 && ky1 == KH;
        for (int64_t ox = 0; ox < OW; ox++) {
            if (row_inside && ox == ox_lo && flat_end > ox_lo) {
                ox = flat_end - 1; /* done by dw_flat */
                continue;
            }
            if (special && row_inside && ox == ox_lo && ox_hi > ox_lo) {
                if (KH == 3)
                    dw_interior_3(x + c0, wv, b, y + c0, W, C, OW, oy, ox_lo, ox_hi, p, mask, clamp,
                                  lo, hi);
                else
                    dw_interior_5(x + c0, wv, b, y + c0, W, C, OW, oy, ox_lo, ox_hi, p, mask, clamp,
                                  lo, hi);
                ox = ox_hi - 1;
                continue;
            }
            int64_t ix0 = ox * p->stride_w - p->pad_left;
            int kx0 = 0, kx1 = KW;
            while (kx0 < KW && ix0 + (int64_t)kx0 * p->dilation_w < 0)
                kx0++;
            while (kx1 > kx0 && ix0 + (int64_t)(kx1 - 1) * p->dilation_w >= W)
                kx1--;
            __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
            for (int ky = ky0; ky < ky1; ky++) {
                const float *row = x + ((iy0 + (int64_t)ky * p->dilation_h) * W + ix0) * C + c0;
                int kx = kx0;
                /* Two accumulators halve the FMA dependency chain. */
                for (; kx + 1 < kx1; kx += 2) {
                    acc0 = _mm512_fmadd_ps(
                        _mm512_maskz_loadu_ps(mask, row + (int64_t)kx * p->dilation_w * C),
                        wv[ky * KW + kx], acc0);
                    acc1 = _mm512_fmadd_ps(
                        _mm512_maskz_loadu_ps(mask, row + (int64_t)(kx + 1) * p->dilation_w * C),
                        wv[ky * KW + kx + 1], acc1);
                }
                if (kx < kx1)
                    acc0 = _mm512_fmadd_ps(
                        _mm512_maskz_loadu_ps(mask, row + (int64_t)kx * p->dilation_w * C),
                        wv[ky * KW + kx], acc0);
            }
            __m512 v = _mm512_add_ps(_mm512_add_ps(acc0, acc1), b);
            if (clamp) v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
            if (prelu) {
                __mmask16 neg = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ);
                v = _mm512_mask_mul_ps(v, neg, v, sv);
            }
            _mm512_mask_storeu_ps(y + (oy * OW + ox) * C + c0, mask, v);
        }
    }
}

/*
 * Square 3x3 and 5x5 kernels with stride 1 or 2 and no dilation (nearly every depthwise layer
 * of the face models) whose channels fill 16-lane blocks: G output pixels of a row at a time,
 * sliding over the input columns they read, so each input vector is loaded once per kernel
 * row and meets every weight it pairs with in the group (3x3, stride 1, G = 8: 30 loads per
 * 72 FMAs, against 72 when every tap loads its own; the kernel is load-bound otherwise, and
 * its 72 addresses had spilled). Rows outside the image are zero-masked loads from a valid
 * address, so edge rows take the same path (they had cost a third of the time through the
 * per-pixel loop). G = 8 for 3x3 (9 weights and 8 accumulators in registers), 4 for 5x5 (25
 * weights).
 *
 * 3x3 kernels compute R = 2 output rows per pass (16 accumulators): the input rows the two
 * share are loaded once (stride 1: 4 rows per 2 output rows instead of 6), which matters most
 * where the channels are many: a channel block's pixels lie C * 4 bytes apart (2 KB at 512
 * channels), all in a few L1 sets, so the input rows a pass read were evicted before the next
 * output row read them again. Groups of G = 7 where a row is a multiple of 7 but not of 8 (14
 * and 28 pixels: faceres's 14x14 and 28x28 maps) compute no pixel twice.
 *
 * Columns outside the image are known per group before it runs (LO on the left, HI on the
 * right) and are compile-time constants of the group's variant, which leaves their loads and
 * FMAs out; checking each column at run time (a compare, a select and an address per load)
 * had made groups at the edges (all of them on a 14-pixel row) about half as fast.
 */
typedef struct dw_epi {
    int act; /* 0 none, 1 clamp, 2 PReLU */
    __m512 lo, hi, slope;
} dw_epi;

/* One group: G output pixels of R rows (row r at o + r * orow), from the (R - 1) * S + K input
 * rows `rows` (rmask: the channel mask, or 0 for a row outside the image), the first column
 * ix0 (columns [ix0, ix0 + LO) and the last HI of the (G - 1) * S + K lie outside the image). */
__attribute__((target("avx512f"), always_inline)) static inline void
dw_tile(const float *const *rows, const __mmask16 *rmask, int64_t c0, int64_t ix0, int64_t C,
        const __m512 *wv, const float *wt, __m512 b, float *o, int64_t orow, __mmask16 mask,
        const dw_epi *e, __m512 slope, const int K, const int S, const int G, const int R,
        const int LO, const int HI, const int ACT_ONCE)
{
    /* The weights from registers (wv) or straight from the filter (wt at channel c0): copied
     * through the stack per group and block they had cost a fifth of a 14x14x512 layer. */
    __m512 w[K * K];
#pragma GCC unroll 25
    for (int t = 0; t < K * K; t++)
        w[t] = wv ? wv[t] : _mm512_maskz_loadu_ps(mask, wt + t * C);
    __m512 a[2][8];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int i = 0; i < G; i++)
            a[r][i] = b;
    const int ncols = (G - 1) * S + K;
#pragma GCC unroll 6
    for (int ir = 0; ir < (R - 1) * S + K; ir++) {
        const __mmask16 rm = rmask[ir] & mask;
        const float *q = rows[ir] + c0 + (ix0 + LO) * C;
#pragma GCC unroll 20
        for (int jc = LO; jc < ncols - HI; jc++) {
            /* q is opaque to the optimiser, as in flat_group. */
            __asm__("" : "+r"(q));
            __m512 v = _mm512_maskz_loadu_ps(rm, q);
            q += C;
#pragma GCC unroll 2
            for (int r = 0; r < R; r++) {
                int ky = ir - r * S;
                if (ky < 0 || ky >= K) continue;
#pragma GCC unroll 8
                for (int i = 0; i < G; i++) {
                    int kx = jc - i * S;
                    if (kx >= 0 && kx < K) a[r][i] = _mm512_fmadd_ps(v, w[ky * K + kx], a[r][i]);
                }
            }
        }
    }
    /* One-block groups choose the activation once per group: tested per output vector, gcc
     * had kept two compares and branches (one taken, to an out-of-line clamp) per vector there
     * (112x112x64 s2 0.047 -> 0.044 ms, 112x112x32 0.055 -> 0.051); in the every-block groups
     * choosing once measured no faster (28x28x256 5% slower). */
    if (!ACT_ONCE) {
#pragma GCC unroll 2
        for (int r = 0; r < R; r++)
#pragma GCC unroll 8
            for (int i = 0; i < G; i++) {
                __m512 v = a[r][i];
                if (e->act == 1)
                    v = _mm512_min_ps(_mm512_max_ps(v, e->lo), e->hi);
                else if (e->act == 2)
                    v = _mm512_mask_mul_ps(
                        v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), v, slope);
                _mm512_mask_storeu_ps(o + c0 + r * orow + i * C, mask, v);
            }
    } else if (e->act == 1) {
#pragma GCC unroll 2
        for (int r = 0; r < R; r++)
#pragma GCC unroll 8
            for (int i = 0; i < G; i++)
                _mm512_mask_storeu_ps(o + c0 + r * orow + i * C, mask,
                                      _mm512_min_ps(_mm512_max_ps(a[r][i], e->lo), e->hi));
    } else if (e->act == 2) {
#pragma GCC unroll 2
        for (int r = 0; r < R; r++)
#pragma GCC unroll 8
            for (int i = 0; i < G; i++) {
                __m512 v = a[r][i];
                v = _mm512_mask_mul_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), v,
                                       slope);
                _mm512_mask_storeu_ps(o + c0 + r * orow + i * C, mask, v);
            }
    } else {
#pragma GCC unroll 2
        for (int r = 0; r < R; r++)
#pragma GCC unroll 8
            for (int i = 0; i < G; i++)
                _mm512_mask_storeu_ps(o + c0 + r * orow + i * C, mask, a[r][i]);
    }
}

/* A group whose columns outside the image are more than its variants cover (a padding wider
 * than the kernel's reach, from a folded Pad op): each column checked, row by row. */
__attribute__((target("avx512f"))) static void
dw_tile_checked(const float *const *rows, const __mmask16 *rmask, int64_t ix0, int64_t W, int64_t C,
                const __m512 *w, __m512 b, float *o, __mmask16 mask, const dw_epi *e, int K, int S,
                int G)
{
    for (int i = 0; i < G; i++) {
        __m512 a = b;
        for (int ky = 0; ky < K; ky++)
            for (int kx = 0; kx < K; kx++) {
                int64_t ix = ix0 + (int64_t)i * S + kx;
                if (ix < 0 || ix >= W) continue;
                a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(rmask[ky], rows[ky] + ix * C),
                                    w[ky * K + kx], a);
            }
        if (e->act == 1)
            a = _mm512_min_ps(_mm512_max_ps(a, e->lo), e->hi);
        else if (e->act == 2)
            a = _mm512_mask_mul_ps(a, _mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_LT_OQ), a,
                                   e->slope);
        _mm512_mask_storeu_ps(o + i * C, mask, a);
    }
}

/* dw_tile_checked for channel block c0 of every block's mode. */
__attribute__((target("avx512f"))) static void
dw_tile_checked_blocks(const float *const *rows, const __mmask16 *rmask, int64_t c0, int64_t ix0,
                       int64_t W, int64_t C, const float *wt, __m512 b, float *o, int64_t orow,
                       __mmask16 mask, const dw_epi *e, __m512 slope, int K, int S, int G, int R)
{
    __m512 w[25];
    for (int t = 0; t < K * K; t++)
        w[t] = _mm512_maskz_loadu_ps(mask, wt + t * C);
    dw_epi ec = *e;
    ec.slope = slope;
    for (int r = 0; r < R; r++) {
        const float *rc[5];
        __mmask16 rm[5];
        for (int ky = 0; ky < K; ky++) {
            rc[ky] = rows[r * S + ky] + c0;
            rm[ky] = rmask[r * S + ky] & mask;
        }
        dw_tile_checked(rc, rm, ix0, W, C, w, b, o + c0 + r * orow, mask, &ec, K, S, G);
    }
}

/* The channels a group covers: one block whose weights are already in registers (wv: the
 * flat path's edges, channel block by channel block), or every block of the layer in turn
 * (wv NULL), their weights loaded from the filter per group. */
typedef struct dw_blocks {
    const __m512 *wv; /* one block: its K*K weight vectors, b, mask */
    __m512 b;
    __mmask16 mask;
    const float *w, *bias, *slope; /* every block: filter [K*K][C], bias and slope [C] or NULL */
} dw_blocks;

/* A group's variant by the columns it leaves out (LO, HI up to 1 for 3x3 and 2 for 5x5: the
 * paddings of SAME), one function per kernel, stride, G and R. Where it covers every channel
 * block, the blocks run innermost: the group's stores to one block are then followed by loads
 * from the next block, 64 bytes further on. With the blocks outermost, a block's stores were
 * followed by loads of the same block, whose addresses agree with the stores' in their low 12
 * bits whenever the input and output lie a multiple of 4 KB apart in the arena (at 512
 * channels, every other pixel) and the loads waited on them: 14x14x512 0.018 -> 0.024 ms with
 * the tensors 4 KB apart against 64 bytes apart. The weights are reloaded per group and block
 * (9 or 25 loads per 72-144 FMAs). */
#define DW_TILE_CASE(K, S, G, R, L, H)                                                             \
    case (L)*4 + (H):                                                                              \
        dw_tile(rows, rmask, c0, ix0, C, wv, wt, b, o, orow, mask, e, slope, K, S, G, R, L, H,     \
                act_once);                                                                         \
        break;
/* The one block of cb->wv, and every channel block of the layer (cb->w): two functions, as
 * one they had made the one-block groups 5-7% slower. */
#define DW_TILE_FN(K, S, G, R, CASES)                                                              \
    __attribute__((target("avx512f"))) static void dw_tile_##K##_##S##_##G##_##R(                  \
        const float *const *rows, const __mmask16 *rmask, int64_t ix0, int64_t W, int64_t C,       \
        const dw_blocks *cb, float *o, int64_t orow, const dw_epi *e)                              \
    {                                                                                              \
        int64_t lo = ix0 < 0 ? -ix0 : 0, hi = ix0 + ((G)-1) * (S) + (K)-W;                         \
        if (hi < 0) hi = 0;                                                                        \
        const int var = lo < 4 && hi < 4 ? (int)(lo * 4 + hi) : -1;                                \
        const __m512 *wv = cb->wv, b = cb->b, slope = e->slope;                                    \
        const float *wt = NULL;                                                                    \
        const int act_once = 1;                                                                    \
        const __mmask16 mask = cb->mask;                                                           \
        const int64_t c0 = 0;                                                                      \
        switch (var) {                                                                             \
            CASES(K, S, G, R)                                                                      \
        default:                                                                                   \
            for (int r = 0; r < (R); r++)                                                          \
                dw_tile_checked(rows + r * (S), rmask + r * (S), ix0, W, C, wv, b, o + r * orow,   \
                                mask, e, K, S, G);                                                 \
        }                                                                                          \
    }                                                                                              \
    __attribute__((target("avx512f"))) static void dw_tilea_##K##_##S##_##G##_##R(                 \
        const float *const *rows, const __mmask16 *rmask, int64_t ix0, int64_t W, int64_t C,       \
        const dw_blocks *cb, float *o, int64_t orow, const dw_epi *e)                              \
    {                                                                                              \
        int64_t lo = ix0 < 0 ? -ix0 : 0, hi = ix0 + ((G)-1) * (S) + (K)-W;                         \
        if (hi < 0) hi = 0;                                                                        \
        const int var = lo < 4 && hi < 4 ? (int)(lo * 4 + hi) : -1;                                \
        const __m512 *wv = NULL;                                                                   \
        const int act_once = 0;                                                                    \
        for (int64_t c0 = 0; c0 < C; c0 += 16) {                                                   \
            const __mmask16 mask =                                                                 \
                C - c0 >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (C - c0)) - 1);              \
            const float *wt = cb->w + c0;                                                          \
            const __m512 b =                                                                       \
                cb->bias ? _mm512_maskz_loadu_ps(mask, cb->bias + c0) : _mm512_setzero_ps();       \
            const __m512 slope =                                                                   \
                e->act == 2 ? _mm512_maskz_loadu_ps(mask, cb->slope + c0) : _mm512_setzero_ps();   \
            switch (var) {                                                                         \
                CASES(K, S, G, R)                                                                  \
            default:                                                                               \
                dw_tile_checked_blocks(rows, rmask, c0, ix0, W, C, wt, b, o, orow, mask, e, slope, \
                                       K, S, G, R);                                                \
            }                                                                                      \
        }                                                                                          \
    }
#define DW_CASES_3(K, S, G, R)                                                                     \
    DW_TILE_CASE(K, S, G, R, 0, 0)                                                                 \
    DW_TILE_CASE(K, S, G, R, 1, 0) DW_TILE_CASE(K, S, G, R, 0, 1) DW_TILE_CASE(K, S, G, R, 1, 1)
#define DW_CASES_5(K, S, G, R)                                                                     \
    DW_CASES_3(K, S, G, R)                                                                         \
    DW_TILE_CASE(K, S, G, R, 2, 0)                                                                 \
    DW_TILE_CASE(K, S, G, R, 0, 2) DW_TILE_CASE(K, S, G, R, 2, 2) DW_TILE_CASE(K, S, G, R, 2, 1)   \
        DW_TILE_CASE(K, S, G, R, 1, 2)
DW_TILE_FN(3, 1, 8, 2, DW_CASES_3)
DW_TILE_FN(3, 1, 7, 2, DW_CASES_3)
DW_TILE_FN(3, 1, 4, 2, DW_CASES_3)
DW_TILE_FN(3, 1, 1, 2, DW_CASES_3)
DW_TILE_FN(3, 1, 8, 1, DW_CASES_3)
DW_TILE_FN(3, 1, 7, 1, DW_CASES_3)
DW_TILE_FN(3, 1, 4, 1, DW_CASES_3)
DW_TILE_FN(3, 1, 1, 1, DW_CASES_3)
DW_TILE_FN(3, 2, 8, 2, DW_CASES_3)
DW_TILE_FN(3, 2, 7, 2, DW_CASES_3)
DW_TILE_FN(3, 2, 4, 2, DW_CASES_3)
DW_TILE_FN(3, 2, 1, 2, DW_CASES_3)
DW_TILE_FN(3, 2, 8, 1, DW_CASES_3)
DW_TILE_FN(3, 2, 7, 1, DW_CASES_3)
DW_TILE_FN(3, 2, 4, 1, DW_CASES_3)
DW_TILE_FN(3, 2, 1, 1, DW_CASES_3)
DW_TILE_FN(5, 1, 4, 1, DW_CASES_5)
DW_TILE_FN(5, 1, 1, 1, DW_CASES_5)
DW_TILE_FN(5, 2, 4, 1, DW_CASES_5)
DW_TILE_FN(5, 2, 1, 1, DW_CASES_5)

typedef void dw_tile_fn(const float *const *rows, const __mmask16 *rmask, int64_t ix0, int64_t W,
                        int64_t C, const dw_blocks *cb, float *o, int64_t orow, const dw_epi *e);

/* The variants of one kernel and stride: [G index][R - 1], G index 0: the wide group (8 or 7
 * for 3x3, 4 for 5x5), 1: 4 pixels, 2: one. */
typedef struct dw_tiles {
    dw_tile_fn *fn[3][2], *fa[3][2]; /* one block, every block */
    int g[3];
} dw_tiles;

/* Single output pixels [oa, ob) of one row, each column checked at run time: the few pixels at
 * either end of a row whose interior the flat path takes, inlined in the row loop with the
 * weights in registers (a call per pixel, or per range, had made blazeface's 24-channel layers
 * 6-15% slower). */
__attribute__((target("avx512f"), always_inline)) static inline void
dw_singles(const float *const *rows, const __mmask16 *rmask, int64_t pad, int64_t W, int64_t C,
           const __m512 *w, __m512 b, float *yr, __mmask16 mask, const dw_epi *e, int64_t oa,
           int64_t ob, const int K, const int S)
{
    for (int64_t ox = oa; ox < ob; ox++) {
        const int64_t ix0 = ox * S - pad;
        __m512 a = b;
#pragma GCC unroll 5
        for (int ky = 0; ky < K; ky++) {
            const __mmask16 rm = rmask[ky];
#pragma GCC unroll 5
            for (int kx = 0; kx < K; kx++) {
                const int64_t ix = ix0 + kx;
                const int in = ix >= 0 && ix < W;
                a = _mm512_fmadd_ps(
                    _mm512_maskz_loadu_ps(in ? rm : 0, rows[ky] + (in ? ix : 0) * C),
                    w[ky * K + kx], a);
            }
        }
        if (e->act == 1)
            a = _mm512_min_ps(_mm512_max_ps(a, e->lo), e->hi);
        else if (e->act == 2)
            a = _mm512_mask_mul_ps(a, _mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_LT_OQ), a,
                                   e->slope);
        _mm512_mask_storeu_ps(yr + ox * C, mask, a);
    }
}

/* Output pixels [oa, ob) of R rows (row 0 at yr) in groups: of the wide G, the last group
 * shifted left to end at ob (those outputs are written twice, with the same values), or of 4
 * or one on ranges narrower than G. */
__attribute__((target("avx512f"))) static void
dw_range(const dw_tiles *t, int R, const float *const *rows, const __mmask16 *rmask, int64_t pad,
         int S, int64_t W, int64_t C, const dw_blocks *cb, float *yr, int64_t orow, const dw_epi *e,
         int64_t oa, int64_t ob)
{
    for (int gi = 0; gi < 3; gi++) {
        const int64_t G = t->g[gi];
        dw_tile_fn *fn = cb->wv ? t->fn[gi][R - 1] : t->fa[gi][R - 1];
        if (ob - oa < G) continue;
        int64_t ox = oa;
        for (; ox + G <= ob; ox += G)
            fn(rows, rmask, ox * S - pad, W, C, cb, yr + ox * C, orow, e);
        if (ox < ob) {
            ox = ob - G;
            fn(rows, rmask, ox * S - pad, W, C, cb, yr + ox * C, orow, e);
        }
        return;
    }
}

/* Rows [oy_begin, oy_end) of one image (x, y at the first channel cb covers), two at a time
 * for 3x3 kernels; on rows whose every kernel row is inside the image, the pixels
 * [flat_lo, flat_end) were done by dw_flat and are left out (the flat path's layers: one
 * channel block at a time, one row at a time). */
__attribute__((target("avx512f"), always_inline)) static inline void
dw_slide_rows(const float *x, const dw_blocks *cb, float *y, const nn_conv_params *p, int64_t H,
              int64_t W, int64_t C, int64_t OW, int64_t oy_begin, int64_t oy_end, int64_t flat_lo,
              int64_t flat_end, const dw_epi *e, const int K, const int S)
{
#define DW_TILES(K, S, G)                                                                          \
    {                                                                                              \
        {{dw_tile_##K##_##S##_##G##_1, dw_tile_##K##_##S##_##G##_2},                               \
         {dw_tile_##K##_##S##_4_1, dw_tile_##K##_##S##_4_2},                                       \
         {dw_tile_##K##_##S##_1_1, dw_tile_##K##_##S##_1_2}},                                      \
            {{dw_tilea_##K##_##S##_##G##_1, dw_tilea_##K##_##S##_##G##_2},                         \
             {dw_tilea_##K##_##S##_4_1, dw_tilea_##K##_##S##_4_2},                                 \
             {dw_tilea_##K##_##S##_1_1, dw_tilea_##K##_##S##_1_2}},                                \
        {                                                                                          \
            G, 4, 1                                                                                \
        }                                                                                          \
    }
#define DW_TILES5(S)                                                                               \
    {                                                                                              \
        {{dw_tile_5_##S##_4_1, NULL}, {dw_tile_5_##S##_4_1, NULL}, {dw_tile_5_##S##_1_1, NULL}},   \
            {{dw_tilea_5_##S##_4_1, NULL},                                                         \
             {dw_tilea_5_##S##_4_1, NULL},                                                         \
             {dw_tilea_5_##S##_1_1, NULL}},                                                        \
        {                                                                                          \
            4, 4, 1                                                                                \
        }                                                                                          \
    }
    static const dw_tiles t31 = DW_TILES(3, 1, 8), t31_7 = DW_TILES(3, 1, 7),
                          t32 = DW_TILES(3, 2, 8), t32_7 = DW_TILES(3, 2, 7), t51 = DW_TILES5(1),
                          t52 = DW_TILES5(2);
#undef DW_TILES
#undef DW_TILES5
    const int seven = OW % 8 != 0 && OW % 7 == 0;
    const dw_tiles *t = K == 5   ? (S == 1 ? &t51 : &t52)
                        : S == 1 ? (seven ? &t31_7 : &t31)
                                 : (seven ? &t32_7 : &t32);
    const int64_t pad = p->pad_left;
    const __mmask16 mask = cb->wv ? cb->mask : (__mmask16)0xffff;
    __m512 w[25];
    if (cb->wv)
        for (int k = 0; k < K * K; k++)
            w[k] = cb->wv[k];
    for (int64_t oy = oy_begin; oy < oy_end;) {
        const int64_t iy0 = oy * p->stride_h - p->pad_top;
        const int flat_row = flat_end > flat_lo && iy0 >= 0 && iy0 + K - 1 < H;
        const int R = K == 3 && oy + 1 < oy_end && flat_end <= flat_lo ? 2 : 1;
        const float *rows[6];
        __mmask16 rmask[6];
        for (int ir = 0; ir < (R - 1) * S + K; ir++) {
            int64_t iy = iy0 + ir;
            int in = iy >= 0 && iy < H;
            rows[ir] = x + (in ? iy : 0) * W * C;
            rmask[ir] = in ? mask : 0;
        }
        float *yr = y + oy * OW * C;
        if (flat_row) {
            const int64_t ranges[2][2] = {{0, flat_lo}, {flat_end, OW}};
            for (int ri = 0; ri < 2; ri++) {
                const int64_t oa = ranges[ri][0], ob = ranges[ri][1];
                if (ob - oa >= 4)
                    dw_range(t, 1, rows, rmask, pad, S, W, C, cb, yr, 0, e, oa, ob);
                else
                    dw_singles(rows, rmask, pad, W, C, w, cb->b, yr, mask, e, oa, ob, K, S);
            }
        } else {
            dw_range(t, R, rows, rmask, pad, S, W, C, cb, yr, OW * C, e, 0, OW);
        }
        oy += R;
    }
}

#define DW_SLIDE_ROWS(K, S)                                                                        \
    __attribute__((target("avx512f"))) static void dw_slide_rows_##K##_##S(                        \
        const float *x, const dw_blocks *cb, float *y, const nn_conv_params *p, int64_t H,         \
        int64_t W, int64_t C, int64_t OW, int64_t oy_begin, int64_t oy_end, int64_t flat_lo,       \
        int64_t flat_end, const dw_epi *e)                                                         \
    {                                                                                              \
        dw_slide_rows(x, cb, y, p, H, W, C, OW, oy_begin, oy_end, flat_lo, flat_end, e, K, S);     \
    }
DW_SLIDE_ROWS(3, 1)
DW_SLIDE_ROWS(3, 2)
DW_SLIDE_ROWS(5, 1)
DW_SLIDE_ROWS(5, 2)
typedef void dw_slide_rows_fn(const float *x, const dw_blocks *cb, float *y,
                              const nn_conv_params *p, int64_t H, int64_t W, int64_t C, int64_t OW,
                              int64_t oy_begin, int64_t oy_end, int64_t flat_lo, int64_t flat_end,
                              const dw_epi *e);

/* Whether dw_slide takes the layer: everything but its channel count, which only matters where
 * the flat path does not take the interior (fewer than 16 channels leave lanes empty). */
static int slide_applies(const nn_conv_params *p)
{
    return (p->kernel_h == 3 || p->kernel_h == 5) && p->kernel_w == p->kernel_h &&
           (p->stride_w == 1 || p->stride_w == 2) && p->dilation_h == 1 && p->dilation_w == 1 &&
           p->act.kind != NN_ACT_LEAKY;
}

/* Rows [oy_begin, oy_end) of one image, every channel block; on rows whose every kernel row is
 * inside the image, the pixels [flat_lo, flat_end) were done by dw_flat and are left out. */
__attribute__((target("avx512f"))) static void
dw_slide(const float *x, const float *w, const float *bias, const float *slope, float *y,
         const nn_conv_params *p, int64_t H, int64_t W, int64_t C, int64_t OW, int64_t oy_begin,
         int64_t oy_end, int64_t flat_lo, int64_t flat_end)
{
    const int K = p->kernel_h;
    dw_slide_rows_fn *fn = K == 3 ? (p->stride_w == 1 ? dw_slide_rows_3_1 : dw_slide_rows_3_2)
                                  : (p->stride_w == 1 ? dw_slide_rows_5_1 : dw_slide_rows_5_2);
    dw_epi e = {.act = p->act.kind == NN_ACT_CLAMP ? 1 : p->act.kind == NN_ACT_PRELU ? 2 : 0};
    e.lo = _mm512_set1_ps(e.act == 1 ? p->act.lo : 0);
    e.hi = _mm512_set1_ps(e.act == 1 ? p->act.hi : 0);
    e.slope = _mm512_setzero_ps();
    if (flat_end <= flat_lo && C >= 128) {
        /* Every channel block inside each group, where the blocks of a pixel lie 512 bytes
         * apart or more (with fewer channels the aliasing stores and loads are 32 pixels or more
         * apart, and block by block measured faster: 112x112x32 0.060 against 0.066 ms). */
        const dw_blocks cb = {.w = w, .bias = bias, .slope = slope};
        fn(x, &cb, y, p, H, W, C, OW, oy_begin, oy_end, flat_lo, flat_end, &e);
        return;
    }
    /* Block by block, the weights in registers across the rows (and the flat path's few edge
     * pixels). */
    for (int64_t c0 = 0; c0 < C; c0 += 16) {
        int64_t left = C - c0;
        __mmask16 mask = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        __m512 wv[25];
        for (int t = 0; t < K * K; t++)
            wv[t] = _mm512_maskz_loadu_ps(mask, w + (int64_t)t * C + c0);
        dw_blocks cb = {.wv = wv, .mask = mask};
        cb.b = bias ? _mm512_maskz_loadu_ps(mask, bias + c0) : _mm512_setzero_ps();
        e.slope = e.act == 2 ? _mm512_maskz_loadu_ps(mask, slope + c0) : _mm512_setzero_ps();
        fn(x + c0, &cb, y + c0, p, H, W, C, OW, oy_begin, oy_end, flat_lo, flat_end, &e);
    }
}

/*
 * Channel counts that leave the 16-lane blocks partly empty (8, 24, 12, 4, ...) with stride 1:
 * an output row's interior is one flat array of floats, and for every tap its inputs are the
 * flat array shifted by whole pixels, so full vectors run across pixel boundaries. A vector at
 * flat offset 16v meets the channels from (16v mod C) on, so the weights come in P phases,
 * P = lcm(C, 16) / 16 (24 channels: 3 phases per 2 pixels); each phase's K*K weight vectors
 * stay in registers for a pass over the row. blazeface's 24-channel layers: 24 lanes of work
 * per 24 computed, not per 32.
 */
#define DW_FLAT_MAX_PHASES 3
#define DW_FLAT_MAX_C 24
#define DW_FLAT_MAX_TAPS 25

typedef struct dw_wrap {
    float v[DW_FLAT_MAX_TAPS + 1][DW_FLAT_MAX_C + 16];
} dw_wrap;

static int64_t gcd64(int64_t a, int64_t b)
{
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Phases for C channels, or 0 where the flat path does not apply. */
static int flat_phases(const nn_conv_params *p, int64_t C)
{
    if (C % 16 == 0 || C > DW_FLAT_MAX_C || p->stride_w != 1 || p->act.kind == NN_ACT_PRELU ||
        p->kernel_h * p->kernel_w > DW_FLAT_MAX_TAPS)
        return 0;
    int64_t phases = C / gcd64(C, 16);
    return phases <= DW_FLAT_MAX_PHASES ? (int)phases : 0;
}

/* G units of the flat path for a K x K kernel (dilation 1) with U pixels per unit, known at
 * compile time: unit i's tap kx reads the flat row shifted by U * i + kx pixels, so with
 * U < K units share input vectors (24 or 8 channels, U = 2: tap 2 of unit i is tap 0 of unit
 * i + 1) and each distinct shift is loaded once per kernel row. G = 8 units for 3x3, 4 for 5x5,
 * as in dw_group; the weights of the phase stay in registers. */
__attribute__((target("avx512f"), always_inline)) static inline void
flat_group(const float *xr, int64_t rstep, int64_t C, const __m512 *w, __m512 b, float *o,
           int64_t vstep, int clamp, __m512 lo, __m512 hi, const int K, const int U, const int G)
{
    __m512 a[8];
#pragma GCC unroll 8
    for (int i = 0; i < G; i++)
        a[i] = b;
#pragma GCC unroll 5
    for (int ky = 0; ky < K; ky++) {
        const float *r = xr + ky * rstep;
#pragma GCC unroll 40
        for (int sh = 0; sh < U * (G - 1) + K; sh++, r += C) {
            /* r is opaque to the optimiser: otherwise it hoists every r + sh * C out of the
             * caller's loop and spills them (a load from the stack per input load). */
            __asm__("" : "+r"(r));
            int used = 0;
#pragma GCC unroll 8
            for (int i = 0; i < G; i++)
                used |= sh - U * i >= 0 && sh - U * i < K;
            if (!used) continue;
            __m512 v = _mm512_loadu_ps(r);
#pragma GCC unroll 8
            for (int i = 0; i < G; i++) {
                int kx = sh - U * i;
                if (kx >= 0 && kx < K) a[i] = _mm512_fmadd_ps(v, w[ky * K + kx], a[i]);
            }
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < G; i++) {
        if (clamp) a[i] = _mm512_min_ps(_mm512_max_ps(a[i], lo), hi);
        _mm512_storeu_ps(o + i * vstep, a[i]);
    }
}

/* `units` units of one row and phase in groups of G, the last group shifted left to end at
 * the last unit (as in DW_SLIDE). */
#define DW_FLAT_ROW(K, U, G)                                                                       \
    __attribute__((target("avx512f"))) static void dw_flat_row_##K##_##U(                          \
        const float *xr, int64_t rstep, int64_t C, const __m512 *wv, __m512 b, float *yr,          \
        int64_t vstep, int64_t units, int clamp, __m512 lo, __m512 hi)                             \
    {                                                                                              \
        __m512 w[K * K];                                                                           \
        for (int t = 0; t < K * K; t++)                                                            \
            w[t] = wv[t];                                                                          \
        int64_t u = 0;                                                                             \
        if (units >= (G)) {                                                                        \
            for (; u + (G) <= units; u += (G))                                                     \
                flat_group(xr + u * vstep, rstep, C, w, b, yr + u * vstep, vstep, clamp, lo, hi,   \
                           K, U, G);                                                               \
            if (u < units) {                                                                       \
                u = units - (G);                                                                   \
                flat_group(xr + u * vstep, rstep, C, w, b, yr + u * vstep, vstep, clamp, lo, hi,   \
                           K, U, G);                                                               \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        if ((G) > 4 && units >= 4) {                                                               \
            for (; u + 4 <= units; u += 4)                                                         \
                flat_group(xr + u * vstep, rstep, C, w, b, yr + u * vstep, vstep, clamp, lo, hi,   \
                           K, U, 4);                                                               \
            if (u < units) {                                                                       \
                u = units - 4;                                                                     \
                flat_group(xr + u * vstep, rstep, C, w, b, yr + u * vstep, vstep, clamp, lo, hi,   \
                           K, U, 4);                                                               \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        for (; u < units; u++)                                                                     \
            flat_group(xr + u * vstep, rstep, C, w, b, yr + u * vstep, vstep, clamp, lo, hi, K, U, \
                       1);                                                                         \
    }
DW_FLAT_ROW(3, 2, 8)
DW_FLAT_ROW(3, 4, 8)
DW_FLAT_ROW(5, 2, 4)
DW_FLAT_ROW(5, 4, 4)

/* Rows [oy_begin, oy_end) of one image, interior pixels from ox_lo in whole units of
 * lcm(C, 16) / C pixels; returns where it stopped (the same for every row). */
__attribute__((target("avx512f"), always_inline)) static inline int64_t
dw_flat_k(const float *x, const dw_wrap *wrap, float *y, const nn_conv_params *p, int64_t H,
          int64_t W, int64_t C, int64_t OW, int phases, int64_t oy_begin, int64_t oy_end,
          const int KH, const int KW)
{
    const int taps = KH * KW;
    int64_t ox_lo = p->pad_left, ox_hi = W + p->pad_left - (int64_t)(KW - 1) * p->dilation_w;
    if (ox_hi > OW) ox_hi = OW;
    int64_t unit = 16 * phases / C; /* pixels per unit */
    int64_t units = ox_hi > ox_lo ? (ox_hi - ox_lo) / unit : 0;
    if (units == 0) return ox_lo;
    const int clamp = p->act.kind == NN_ACT_CLAMP;
    const __m512 lo = _mm512_set1_ps(clamp ? p->act.lo : 0),
                 hi = _mm512_set1_ps(clamp ? p->act.hi : 0);
    const int64_t dx = (int64_t)p->dilation_w * C, vstep = 16 * phases; /* floats per unit */
    for (int ph = 0; ph < phases; ph++) {
        int64_t off = (16 * ph) % C;
        __m512 wv[DW_FLAT_MAX_TAPS];
        for (int t = 0; t < taps; t++)
            wv[t] = _mm512_loadu_ps(&wrap->v[t][off]);
        const __m512 b = _mm512_loadu_ps(&wrap->v[taps][off]);
        for (int64_t oy = oy_begin; oy < oy_end; oy++) {
            int64_t iy0 = oy * p->stride_h - p->pad_top;
            if (iy0 < 0 || iy0 + (int64_t)(KH - 1) * p->dilation_h >= H)
                continue; /* not an inside row */
            const float *xr = x + (iy0 * W + ox_lo - p->pad_left) * C + 16 * ph;
            float *yr = y + (oy * OW + ox_lo) * C + 16 * ph;
            if (KH == KW && (KH == 3 || KH == 5) && p->dilation_h == 1 && p->dilation_w == 1 &&
                (unit == 2 || unit == 4)) {
                int64_t rstep = W * C;
                if (KH == 3 && unit == 2)
                    dw_flat_row_3_2(xr, rstep, C, wv, b, yr, vstep, units, clamp, lo, hi);
                else if (KH == 3)
                    dw_flat_row_3_4(xr, rstep, C, wv, b, yr, vstep, units, clamp, lo, hi);
                else if (unit == 2)
                    dw_flat_row_5_2(xr, rstep, C, wv, b, yr, vstep, units, clamp, lo, hi);
                else
                    dw_flat_row_5_4(xr, rstep, C, wv, b, yr, vstep, units, clamp, lo, hi);
                continue;
            }
            int64_t u = 0;
            for (; u + 4 <= units; u += 4) {
                __m512 a0 = b, a1 = b, a2 = b, a3 = b;
                for (int ky = 0; ky < KH; ky++) {
                    const float *r = xr + (int64_t)ky * p->dilation_h * W * C + u * vstep;
                    for (int kx = 0; kx < KW; kx++) {
                        const float *q = r + kx * dx;
                        __m512 wk = wv[ky * KW + kx];
                        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q), wk, a0);
                        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + vstep), wk, a1);
                        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(q + 2 * vstep), wk, a2);
                        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(q + 3 * vstep), wk, a3);
                    }
                }
                if (clamp) {
                    a0 = _mm512_min_ps(_mm512_max_ps(a0, lo), hi);
                    a1 = _mm512_min_ps(_mm512_max_ps(a1, lo), hi);
                    a2 = _mm512_min_ps(_mm512_max_ps(a2, lo), hi);
                    a3 = _mm512_min_ps(_mm512_max_ps(a3, lo), hi);
                }
                float *o = yr + u * vstep;
                _mm512_storeu_ps(o, a0);
                _mm512_storeu_ps(o + vstep, a1);
                _mm512_storeu_ps(o + 2 * vstep, a2);
                _mm512_storeu_ps(o + 3 * vstep, a3);
            }
            for (; u < units; u++) {
                __m512 a0 = b;
                for (int ky = 0; ky < KH; ky++) {
                    const float *r = xr + (int64_t)ky * p->dilation_h * W * C + u * vstep;
                    for (int kx = 0; kx < KW; kx++)
                        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(r + kx * dx), wv[ky * KW + kx], a0);
                }
                if (clamp) a0 = _mm512_min_ps(_mm512_max_ps(a0, lo), hi);
                _mm512_storeu_ps(yr + u * vstep, a0);
            }
        }
    }
    return ox_lo + units * unit;
}

__attribute__((target("avx512f"))) static int64_t
dw_flat(const float *x, const dw_wrap *wrap, float *y, const nn_conv_params *p, int64_t H,
        int64_t W, int64_t C, int64_t OW, int phases, int64_t oy_begin, int64_t oy_end)
{
    return dw_flat_k(x, wrap, y, p, H, W, C, OW, phases, oy_begin, oy_end, p->kernel_h,
                     p->kernel_w);
}

/* Each tap's weights (and the bias, last) repeated so any phase's 16 lanes are one unaligned
 * load; built once per run (per task it had been 15% of the flat path's time). */
static void dw_wrap_build(dw_wrap *wrap, const float *w, const float *bias, int taps, int64_t C)
{
    for (int t = 0; t <= taps; t++) {
        const float *src = t < taps ? w + (int64_t)t * C : bias;
        for (int64_t i = 0, ci = 0; i < C + 16; i++, ci = ci + 1 == C ? 0 : ci + 1)
            wrap->v[t][i] = src ? src[ci] : 0;
    }
}

typedef struct dw_job {
    const nn_node *n;
    const nn_view *in;
    nn_view *out;
    const float *bias, *slope;
    int64_t row_chunks;  /* per batch element */
    int phases;          /* of the flat path, or 0 */
    const dw_wrap *wrap; /* the flat path's weights */
} dw_job;

/* One task: a few output rows of one batch element, for every channel block. A few rows at a
 * time keep the input rows they read in L2 across the channel blocks, so the tensor streams
 * from memory once (the op is bandwidth-bound at these sizes). */
#define DW_ROWS 4
static void dw_task(void *arg, size_t task)
{
    const dw_job *j = arg;
    const nn_conv_params *p = &j->n->p.conv;
    const nn_shape *xs = &j->in[0].shape, *os = &j->out->shape;
    int64_t H = xs->dim[1], W = xs->dim[2], C = xs->dim[3], OH = os->dim[1], OW = os->dim[2];
    int64_t b = (int64_t)task / j->row_chunks, oy = ((int64_t)task % j->row_chunks) * DW_ROWS;
    int64_t oy_end = oy + DW_ROWS < OH ? oy + DW_ROWS : OH;
    const float *x = j->in[0].data + b * H * W * C;
    float *y = j->out->data + b * OH * OW * C;
    /* Interior pixels of inside rows by dw_flat where it applies, the rest per channel block. */
    int phases = j->phases;
    int64_t flat_end = phases ? dw_flat(x, j->wrap, y, p, H, W, C, OW, phases, oy, oy_end) : 0;
    if (slide_applies(p) && (phases || C >= 16)) {
        dw_slide(x, j->in[1].data, j->bias, j->slope, y, p, H, W, C, OW, oy, oy_end, p->pad_left,
                 flat_end);
        return;
    }
    for (int64_t c0 = 0; c0 < C; c0 += 16) {
        int64_t left = C - c0;
        __mmask16 mask = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        dw_block(x, j->in[1].data, j->bias, j->slope, y, p, H, W, C, OH, OW, c0, mask, oy, oy_end,
                 flat_end);
    }
}

int nn_dwconv_run(const nn_graph *g, const nn_node *n, const nn_view *in, nn_view *out,
                  struct pthreadpool *pool)
{
    (void)g;
    const nn_conv_params *p = &n->p.conv;
    const nn_shape *xs = &in[0].shape, *os = &out->shape;
    if (os->dim[3] != xs->dim[3] || in[1].shape.dim[2] != xs->dim[3])
        return base_error_set(BASE_ERR_INVALID, "node %s: depthwise channels differ", n->name);
    dw_job j = {.n = n,
                .in = in,
                .out = out,
                .bias = n->n_inputs > 2 && in[2].data ? in[2].data : NULL,
                .slope = p->act.kind == NN_ACT_PRELU ? in[3].data : NULL,
                .row_chunks = (os->dim[1] + DW_ROWS - 1) / DW_ROWS};
    dw_wrap wrap;
    j.phases = flat_phases(p, xs->dim[3]);
    if (j.phases) {
        dw_wrap_build(&wrap, in[1].data, j.bias, p->kernel_h * p->kernel_w, xs->dim[3]);
        j.wrap = &wrap;
    }
    size_t tasks = (size_t)(xs->dim[0] * j.row_chunks);
    if (pool) {
        pthreadpool_parallelize_1d(pool, dw_task, &j, tasks, 0);
    } else {
        for (size_t t = 0; t < tasks; t++)
            dw_task(&j, t);
    }
    return 0;
}
