/*
 * Convolutions and fully connected ops as one GEMM with an own AVX-512 kernel.
 *
 * Why: XNNPACK's f32 kernels for this CPU (Debian's 2022 build: 7x16 AVX-512 tiles) reach
 * about 75% of the FP32 peak on the 1x1 convolutions that dominate the face models; a 14x32
 * tile (28 accumulators, 2 weight vectors, 1 broadcast: 31 of the 32 zmm registers) does 28
 * FMAs per 2 weight loads and 14 broadcasts and reaches about 90-95% (a 196x512x512 GEMM:
 * 270 GFLOP/s against XNNPACK's 205 on the same core).
 *
 * Layout: C[M, N] = A[M, K] * B[K, N] + bias, then the fused activation, where M is the output
 * pixels of the whole batch (NHWC rows), N the output channels and K = KH * KW * Cin in TF's
 * filter order. B is packed once at load (nn_gemm_pack) into panels of 32 output channels,
 * [panel][K][32], zero-padded (16 or 8 for layers with few channels: panel_width,
 * pair_segment); the model owns it (node->packed). A is the input itself when every output
 * pixel reads one contiguous row (1x1, stride 1, no padding; fully connected); a convolution's
 * block of output pixels within one row reads each kernel row's inputs in place (at the
 * image's edges from a zero-padded copy of that span); otherwise (maps narrower than a tile,
 * spans too long for the stack, dilated rows of 8-wide panels) each block gathers its K-long
 * rows (im2col of one block, on the stack, zeros for padding) before it meets every panel.
 *
 * Loop order: panels in groups (at most two 32-wide panels, and no more than half of L2), then
 * blocks of 14 rows, then the panels of the group: a group's weights are read from memory once
 * (prefetched into L2 while the group before runs) and then from L2 for every row block.
 * Intra-op threads split the (group, row block) tasks. A convolution with a fused 2x2 pooling
 * runs a task per pooled row: its two output rows into the stack, then the pooled row.
 */
#include "base/base.h"
#include "nn/graph.h"

#include <immintrin.h>
#include <math.h>
#include <pthreadpool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MR 14
#define NR 32
/* Largest K gathered into a row block on the stack: MR * 2304 floats = 129 KB (3x3x256; the
 * service runs inferences on threads with the default stack). */
#define MAX_GATHER_K 2304
#define MAX_TAPS 64
/* Floats of a fused pooling's two output rows (2 * OW * N), on the stack beside the gathered
 * rows: 64 KB (antispoof's 126-wide 64-channel stem: 16128). */
#define POOL_SCRATCH 16384

/* Output channels per packed panel: 32 (the 14x32 tile), or 16 (one zmm) or 8 (one ymm) for
 * layers with few output channels, whose 32-wide panels would be mostly padding. On this CPU
 * (AMD Zen 4) a 512-bit FMA takes both 256-bit pipes, so an 8-wide ymm tile issues as many
 * useful FLOPs per cycle as a full zmm one. */
static size_t panel_width(size_t nc)
{
    return nc <= 8 ? 8 : nc <= 16 ? 16 : NR;
}

/* 8-wide panels fill a zmm with two K steps: lanes 2c and 2c+1 hold output channel c's
 * weights for K indices q and q+1, met by a 64-bit broadcast of the inputs q, q+1; the two
 * lanes are summed in the epilogue. Pairs never straddle a segment (a kernel row, KW * Cin,
 * which the taps read in place; the whole K of a fully connected op), so an odd segment ends
 * with a half-empty pair. seg: K indices per segment; the packed panel holds
 * K / seg segments of (seg + 1) / 2 pairs of 16 floats. */
static size_t pair_segment(const nn_graph *g, const nn_node *n)
{
    if (n->op == NN_OP_FULLY_CONNECTED) return (size_t)g->tensors[n->inputs[1]].shape.dim[0];
    const nn_shape *w = &g->tensors[n->inputs[1]].shape;
    return (size_t)(w->dim[1] * w->dim[2]);
}

/* Floats of one packed panel. */
static size_t panel_floats(const nn_graph *g, const nn_node *n, size_t k, size_t nr)
{
    if (nr != 8) return k * nr;
    size_t seg = pair_segment(g, n);
    return k / seg * ((seg + 1) / 2) * 16;
}

/* Whether the node's output pixels each read one contiguous row of K inputs. */
static int direct_rows(const nn_node *n)
{
    if (n->op == NN_OP_FULLY_CONNECTED) return 1;
    const nn_conv_params *p = &n->p.conv;
    return p->kernel_h == 1 && p->kernel_w == 1 && p->stride_h == 1 && p->stride_w == 1 &&
           p->pad_top == 0 && p->pad_bottom == 0 && p->pad_left == 0 && p->pad_right == 0 &&
           !p->pool;
}

/* K and N of the node's GEMM. */
static void gemm_dims(const nn_graph *g, const nn_node *n, size_t *k, size_t *nc)
{
    const nn_shape *w = &g->tensors[n->inputs[1]].shape;
    if (n->op == NN_OP_FULLY_CONNECTED) {
        *k = (size_t)w->dim[0];
        *nc = (size_t)w->dim[1];
    } else {
        *k = (size_t)(w->dim[0] * w->dim[1] * w->dim[2]);
        *nc = (size_t)w->dim[3];
    }
}

static const nn_act *node_act(const nn_node *n)
{
    return n->op == NN_OP_FULLY_CONNECTED ? &n->p.fc.act : &n->p.conv.act;
}

int nn_gemm_supports(const nn_graph *g, const nn_node *n)
{
    /* AVX-512VL: the 8-wide tiles' masks (every AVX-512 CPU since Skylake-SP has it). */
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512vl")) return 0;
    if (n->op != NN_OP_CONV2D && n->op != NN_OP_FULLY_CONNECTED) return 0;
    if (n->n_inputs < 2 || n->inputs[0] < 0 || !nn_tensor_is_const(g, n->inputs[1])) return 0;
    if (n->n_inputs > 2 && n->inputs[2] >= 0 && !nn_tensor_is_const(g, n->inputs[2])) return 0;
    for (int i = 0; i < n->n_inputs; i++)
        if (n->inputs[i] >= 0 && g->tensors[n->inputs[i]].dtype != NN_DTYPE_F32) return 0;
    const nn_shape *x = &g->tensors[n->inputs[0]].shape, *w = &g->tensors[n->inputs[1]].shape;
    size_t k, nc;
    if (n->op == NN_OP_FULLY_CONNECTED) {
        if (x->rank != 2 || w->rank != 2 || x->dim[1] != w->dim[0]) return 0;
    } else {
        const nn_conv_params *p = &n->p.conv;
        if (p->depthwise || x->rank != 4 || w->rank != 4 || x->dim[3] != w->dim[2]) return 0;
        if (p->kernel_h != w->dim[0] || p->kernel_w != w->dim[1]) return 0;
        if (p->stride_h < 1 || p->stride_w < 1 || p->dilation_h < 1 || p->dilation_w < 1) return 0;
        if (p->pad_top < 0 || p->pad_bottom < 0 || p->pad_left < 0 || p->pad_right < 0) return 0;
        if (w->dim[0] * w->dim[1] > MAX_TAPS) return 0;
    }
    gemm_dims(g, n, &k, &nc);
    if (k < 1 || nc < 1 || (!direct_rows(n) && k > MAX_GATHER_K)) return 0;
    /* Where XNNPACK measured faster (bench nn --profile, both ways): more than a quarter of
     * the last panel unused (the tile computes the whole panel regardless), and the cases
     * below. */
    size_t nr = panel_width(nc);
    size_t padded = (nc + nr - 1) / nr * nr;
    /* 8-wide panels also take 1-5 channels when K is long (gender's 3x3x128 -> 2 head: XNNPACK
     * ran it at 18 GFLOP/s). */
    if ((nc < 6 || 4 * (padded - nc) > padded) && !(nr == 8 && k >= 256)) return 0;
    /* Narrow panels: XNNPACK stays faster on 1x1 layers with fewer than 32 inputs (a tile's
     * epilogue outweighs its few FMAs) and on maps narrower than a tile (gathered rows) unless
     * K is long enough to pay for the gathering (emotion's 3x3x256 -> 7 head: 2x faster). */
    const nn_conv_params *cp = n->op == NN_OP_CONV2D ? &n->p.conv : NULL;
    /* The convolution's own output width (before a fused pooling). */
    int64_t ow = n->op == NN_OP_CONV2D ? nn_window_out(x->dim[2], cp->kernel_w, cp->stride_w,
                                                       cp->dilation_w, cp->pad_left, cp->pad_right)
                                       : 1;
    if (cp && cp->pool) {
        /* Spans of two output rows are pooled from the stack (POOL_SCRATCH: 2 columns at least). */
        if (cp->pool != 2 || cp->residual || ow < 2 || 4 * nc > POOL_SCRATCH) return 0;
    }
    if (nr < NR && (direct_rows(n) ? k < 32 : ow < MR && k < 256)) return 0;
    /* 32-wide panels with fewer than 32 inputs per tap: only on maps wide enough that most
     * blocks read in place (a stem convolution from RGB: 23% faster than XNNPACK at
     * 126x126x64; blazeface's 5x5 s2 3->24 stem 0.49 -> 0.35 ms once edge blocks copied
     * spans instead of gathering every tap). */
    if (nr == NR && !direct_rows(n) && w->dim[2] < 32 && ow < 3 * MR) return 0;
    if (n->n_inputs > 2 && n->inputs[2] >= 0 &&
        nn_shape_numel(&g->tensors[n->inputs[2]].shape, 1) != (int64_t)nc)
        return 0;
    const nn_act *act = node_act(n);
    int residual = n->op == NN_OP_CONV2D && n->p.conv.residual;
    if (residual && (n->n_inputs != 5 || n->inputs[4] < 0 || nn_tensor_is_const(g, n->inputs[4]) ||
                     g->tensors[n->inputs[4]].dtype != NN_DTYPE_F32))
        return 0;
    if (act->kind == NN_ACT_PRELU) {
        if (n->n_inputs < 4 || !nn_tensor_is_const(g, n->inputs[3])) return 0;
        const nn_shape *s = &g->tensors[n->inputs[3]].shape;
        int64_t cnt = nn_shape_numel(s, 1);
        if (cnt != 1 && !(cnt == (int64_t)nc && s->rank >= 1 && s->dim[s->rank - 1] == cnt))
            return 0;
    } else if (n->n_inputs > 3 && !(residual && n->inputs[3] < 0) &&
               !(cp && cp->post_affine && n->inputs[3] < 0)) {
        return 0;
    }
    if (cp && cp->post_affine) {
        if (residual || n->n_inputs != 7 || n->inputs[4] >= 0) return 0;
        for (int i = 5; i < 7; i++)
            if (n->inputs[i] < 0 || !nn_tensor_is_const(g, n->inputs[i]) ||
                nn_shape_numel(&g->tensors[n->inputs[i]].shape, 1) != (int64_t)nc)
                return 0;
    }
    return 1;
}

int nn_gemm_pack(nn_graph *g, nn_node *n)
{
    size_t k, nc;
    gemm_dims(g, n, &k, &nc);
    size_t nr = panel_width(nc), panels = (nc + nr - 1) / nr, pf = panel_floats(g, n, k, nr);
    float *b = base_aligned_alloc(64, panels * pf * sizeof *b);
    if (!b) return base_error_set(BASE_ERR_NOMEM, "node %s: cannot pack weights", n->name);
    memset(b, 0, panels * pf * sizeof *b);
    /* TF's filter [KH,KW,Cin,Cout] and a fully connected [K,N] are both row-major K x N. */
    const float *w = g->tensors[n->inputs[1]].data;
    if (nr == 8) {
        size_t seg = pair_segment(g, n), segp = (seg + 1) / 2;
        for (size_t i = 0; i < k; i++) {
            size_t sg = i / seg, q = i % seg;
            float *dst = b + (sg * segp + q / 2) * 16 + q % 2;
            for (size_t c = 0; c < nc; c++)
                dst[2 * c] = w[i * nc + c];
        }
        base_aligned_free(n->packed);
        n->packed = b;
        return 0;
    }
    for (size_t p = 0; p < panels; p++) {
        size_t cols = nc - p * nr < nr ? nc - p * nr : nr;
        for (size_t i = 0; i < k; i++)
            memcpy(b + (p * k + i) * nr, w + i * nc + p * nr, cols * sizeof *b);
    }
    base_aligned_free(n->packed);
    n->packed = b;
    return 0;
}

/* What every task of one run needs. */
typedef struct gemm_job {
    const nn_graph *g;
    const nn_node *n;
    const float *x;               /* input [N,H,W,Cin] or [M,K] */
    float *y;                     /* output [M, N] */
    const float *bias;            /* N values or NULL */
    const float *slope;           /* PReLU: 1 or N values */
    const float *res;             /* residual [M, N] added before the activation, or NULL */
    const float *post_s, *post_t; /* N values each: act(...) * post_s + post_t, or NULL */
    int slope_scalar;
    size_t m, k, nc, nr, panels, group; /* nr: panel width; group: panels per group */
    size_t panel_floats, seg;           /* seg: K per segment of an 8-wide panel */
    int64_t h, w, cin, oh, ow;          /* convolution geometry (gathered rows) */
    size_t blocks_per_row;              /* convolution: row blocks per output row; 0: blocks of any
                                           14 output pixels, gathered (maps narrower than a tile) */
    size_t block_width;                 /* output pixels per row block: the row split evenly */
} gemm_job;

/* Where a tile's rows come from: `n` taps, tap t's row i at a[t] + i * rs with its K indices
 * [t * kt, (t + 1) * kt) of the panel (boff[t] = that offset times the panel width). One tap covers
 * a contiguous or gathered row block (kt = K); a convolution's interior block has one entry per tap
 * whose input row lies inside the image (kt = Cin, rows stride * Cin apart). */
typedef struct tap_list {
    int n;
    size_t kt, rs;
    const float *a[MAX_TAPS];
    size_t boff[MAX_TAPS];
} tap_list;

/* One tile: rows [0, mr) times panel `b` into C columns [n0, n0+32). */
__attribute__((target("avx512f"), always_inline)) static inline void
tile(int mr, const tap_list *tl, const float *b, float *c, size_t ldc, const float *r,
     const gemm_job *j, size_t n0, const float *pf)
{
    size_t rem = j->nc - n0;
    __mmask16 m0 = rem >= 16 ? 0xffff : (__mmask16)((1u << rem) - 1);
    __mmask16 m1 = rem >= 32 ? 0xffff : rem <= 16 ? 0 : (__mmask16)((1u << (rem - 16)) - 1);
    __m512 c0[MR], c1[MR];
    __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps();
    if (j->bias) {
        bias0 = _mm512_maskz_loadu_ps(m0, j->bias + n0);
        bias1 = _mm512_maskz_loadu_ps(m1, j->bias + n0 + 16);
    }
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++)
        if (i < mr) {
            c0[i] = bias0;
            c1[i] = bias1;
        }
    const size_t rs = tl->rs, kt = tl->kt;
    for (int t = 0; t < tl->n; t++) {
        const float *a = tl->a[t], *bt = b + tl->boff[t], *pt = pf ? pf + tl->boff[t] : NULL;
        for (size_t q = 0; q < kt; q++) {
            if (pt) _mm_prefetch((const char *)(pt + q * NR), _MM_HINT_T1);
            __m512 b0 = _mm512_load_ps(bt + q * NR), b1 = _mm512_load_ps(bt + q * NR + 16);
#pragma GCC unroll 14
            for (int i = 0; i < MR; i++)
                if (i < mr) {
                    __m512 av = _mm512_set1_ps(a[(size_t)i * rs + q]);
                    c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
                    c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
                }
        }
    }
    if (r) {
#pragma GCC unroll 14
        for (int i = 0; i < MR; i++)
            if (i < mr) {
                c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, r + (size_t)i * ldc));
                c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(m1, r + (size_t)i * ldc + 16));
            }
    }
    const nn_act *act = node_act(j->n);
    __m512 zero = _mm512_setzero_ps();
    if (act->kind == NN_ACT_CLAMP) {
        __m512 lo = _mm512_set1_ps(act->lo), hi = _mm512_set1_ps(act->hi);
        /* Relu's upper bound is infinite: the max alone (28 fewer FP operations per tile; the
         * epilogue is a third of a tile's time when K is 24). */
        if (act->hi >= HUGE_VALF) {
#pragma GCC unroll 14
            for (int i = 0; i < MR; i++)
                if (i < mr) {
                    c0[i] = _mm512_max_ps(c0[i], lo);
                    c1[i] = _mm512_max_ps(c1[i], lo);
                }
        } else {
#pragma GCC unroll 14
            for (int i = 0; i < MR; i++)
                if (i < mr) {
                    c0[i] = _mm512_min_ps(_mm512_max_ps(c0[i], lo), hi);
                    c1[i] = _mm512_min_ps(_mm512_max_ps(c1[i], lo), hi);
                }
        }
    } else if (act->kind == NN_ACT_LEAKY || act->kind == NN_ACT_PRELU) {
        __m512 s0, s1;
        if (act->kind == NN_ACT_LEAKY) {
            s0 = s1 = _mm512_set1_ps(act->alpha);
        } else if (j->slope_scalar) {
            s0 = s1 = _mm512_set1_ps(j->slope[0]);
        } else {
            s0 = _mm512_maskz_loadu_ps(m0, j->slope + n0);
            s1 = _mm512_maskz_loadu_ps(m1, j->slope + n0 + 16);
        }
#pragma GCC unroll 14
        for (int i = 0; i < MR; i++)
            if (i < mr) {
                c0[i] = _mm512_mask_mul_ps(c0[i], _mm512_cmp_ps_mask(c0[i], zero, _CMP_LT_OQ),
                                           c0[i], s0);
                c1[i] = _mm512_mask_mul_ps(c1[i], _mm512_cmp_ps_mask(c1[i], zero, _CMP_LT_OQ),
                                           c1[i], s1);
            }
    }
    if (j->post_s) {
        /* Mul then Add (not an FMA), as the two TensorFlow ops round. */
        __m512 s0 = _mm512_maskz_loadu_ps(m0, j->post_s + n0),
               s1 = _mm512_maskz_loadu_ps(m1, j->post_s + n0 + 16);
        __m512 t0 = _mm512_maskz_loadu_ps(m0, j->post_t + n0),
               t1 = _mm512_maskz_loadu_ps(m1, j->post_t + n0 + 16);
#pragma GCC unroll 14
        for (int i = 0; i < MR; i++)
            if (i < mr) {
                c0[i] = _mm512_add_ps(_mm512_mul_ps(c0[i], s0), t0);
                c1[i] = _mm512_add_ps(_mm512_mul_ps(c1[i], s1), t1);
            }
    }
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++)
        if (i < mr) {
            _mm512_mask_storeu_ps(c + (size_t)i * ldc, m0, c0[i]);
            _mm512_mask_storeu_ps(c + (size_t)i * ldc + 16, m1, c1[i]);
        }
}

/* One tile of a 16-wide panel: rows [0, mr) into C columns [n0, n0+16), one zmm accumulator per
 * row. Loads per FMA: one broadcast (an FMA memory operand) plus 1/mr of a weight vector. */
__attribute__((target("avx512f"), always_inline)) static inline void
tile16(int mr, const tap_list *tl, const float *b, float *c, size_t ldc, const float *r,
       const gemm_job *j, size_t n0)
{
    size_t rem = j->nc - n0;
    __mmask16 m0 = rem >= 16 ? 0xffff : (__mmask16)((1u << rem) - 1);
    __m512 c0[MR];
    __m512 bias0 = j->bias ? _mm512_maskz_loadu_ps(m0, j->bias + n0) : _mm512_setzero_ps();
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++)
        if (i < mr) c0[i] = bias0;
    const size_t rs = tl->rs, kt = tl->kt;
    for (int t = 0; t < tl->n; t++) {
        const float *a = tl->a[t], *bt = b + tl->boff[t];
        for (size_t q = 0; q < kt; q++) {
            __m512 b0 = _mm512_load_ps(bt + q * 16);
#pragma GCC unroll 14
            for (int i = 0; i < MR; i++)
                if (i < mr)
                    c0[i] = _mm512_fmadd_ps(_mm512_set1_ps(a[(size_t)i * rs + q]), b0, c0[i]);
        }
    }
    if (r) {
#pragma GCC unroll 14
        for (int i = 0; i < MR; i++)
            if (i < mr)
                c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, r + (size_t)i * ldc));
    }
    const nn_act *act = node_act(j->n);
    if (act->kind == NN_ACT_CLAMP) {
        __m512 lo = _mm512_set1_ps(act->lo), hi = _mm512_set1_ps(act->hi);
        int relu = act->hi >= HUGE_VALF;
#pragma GCC unroll 14
        for (int i = 0; i < MR; i++)
            if (i < mr)
                c0[i] =
                    relu ? _mm512_max_ps(c0[i], lo) : _mm512_min_ps(_mm512_max_ps(c0[i], lo), hi);
    } else if (act->kind == NN_ACT_LEAKY || act->kind == NN_ACT_PRELU) {
        __m512 s0 = act->kind == NN_ACT_LEAKY ? _mm512_set1_ps(act->alpha)
                    : j->slope_scalar         ? _mm512_set1_ps(j->slope[0])
                                              : _mm512_maskz_loadu_ps(m0, j->slope + n0);
        __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 14
        for (int i = 0; i < MR; i++)
            if (i < mr)
                c0[i] = _mm512_mask_mul_ps(c0[i], _mm512_cmp_ps_mask(c0[i], zero, _CMP_LT_OQ),
                                           c0[i], s0);
    }
    if (j->post_s) {
        __m512 s0 = _mm512_maskz_loadu_ps(m0, j->post_s + n0),
               t0 = _mm512_maskz_loadu_ps(m0, j->post_t + n0);
#pragma GCC unroll 14
        for (int i = 0; i < MR; i++)
            if (i < mr) c0[i] = _mm512_add_ps(_mm512_mul_ps(c0[i], s0), t0);
    }
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++)
        if (i < mr) _mm512_mask_storeu_ps(c + (size_t)i * ldc, m0, c0[i]);
}

/* One tile of an 8-wide panel (see pair_segment): one zmm accumulator per row, two K steps
 * per FMA; the epilogue sums lane pairs into 8 channels and works in ymm (AVX-512VL masks). */
__attribute__((target("avx512f,avx512vl,fma"), always_inline)) static inline void
tile8(int mr, const tap_list *tl, const float *b, float *c, size_t ldc, const float *r,
      const gemm_job *j, size_t n0)
{
    size_t rem = j->nc - n0;
    __mmask8 m0 = rem >= 8 ? 0xff : (__mmask8)((1u << rem) - 1);
    __m512 acc[MR];
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++)
        if (i < mr) acc[i] = _mm512_setzero_ps();
    const size_t rs = tl->rs, kt = tl->kt, pairs = kt / 2;
    for (int t = 0; t < tl->n; t++) {
        const float *a = tl->a[t], *bt = b + tl->boff[t];
        for (size_t q = 0; q < pairs; q++) {
            __m512 b0 = _mm512_load_ps(bt + q * 16);
#pragma GCC unroll 14
            for (int i = 0; i < MR; i++)
                if (i < mr) {
                    double d;
                    memcpy(&d, a + (size_t)i * rs + 2 * q, sizeof d);
                    acc[i] = _mm512_fmadd_ps(_mm512_castpd_ps(_mm512_set1_pd(d)), b0, acc[i]);
                }
        }
        if (kt % 2) {
            /* The half-empty last pair: only the even lanes (its odd weights are padding, and
             * the input after the segment is not this pixel's). */
            __m512 b0 = _mm512_load_ps(bt + pairs * 16);
#pragma GCC unroll 14
            for (int i = 0; i < MR; i++)
                if (i < mr)
                    acc[i] = _mm512_mask3_fmadd_ps(_mm512_set1_ps(a[(size_t)i * rs + kt - 1]), b0,
                                                   acc[i], 0x5555);
        }
    }
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14);
    __m256 c0[MR];
    __m256 bias0 = j->bias ? _mm256_maskz_loadu_ps(m0, j->bias + n0) : _mm256_setzero_ps();
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++)
        if (i < mr) {
            __m512 sum = _mm512_add_ps(acc[i], _mm512_permute_ps(acc[i], 0xb1));
            c0[i] = _mm256_add_ps(_mm512_castps512_ps256(_mm512_permutexvar_ps(even, sum)), bias0);
        }
    if (r) {
#pragma GCC unroll 14
        for (int i = 0; i < MR; i++)
            if (i < mr)
                c0[i] = _mm256_add_ps(c0[i], _mm256_maskz_loadu_ps(m0, r + (size_t)i * ldc));
    }
    const nn_act *act = node_act(j->n);
    if (act->kind == NN_ACT_CLAMP) {
        __m256 lo = _mm256_set1_ps(act->lo), hi = _mm256_set1_ps(act->hi);
#pragma GCC unroll 14
        for (int i = 0; i < MR; i++)
            if (i < mr) c0[i] = _mm256_min_ps(_mm256_max_ps(c0[i], lo), hi);
    } else if (act->kind == NN_ACT_LEAKY || act->kind == NN_ACT_PRELU) {
        __m256 s0 = act->kind == NN_ACT_LEAKY ? _mm256_set1_ps(act->alpha)
                    : j->slope_scalar         ? _mm256_set1_ps(j->slope[0])
                                              : _mm256_maskz_loadu_ps(m0, j->slope + n0);
        __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 14
        for (int i = 0; i < MR; i++)
            if (i < mr)
                c0[i] = _mm256_mask_mul_ps(c0[i], _mm256_cmp_ps_mask(c0[i], zero, _CMP_LT_OQ),
                                           c0[i], s0);
    }
    if (j->post_s) {
        __m256 s0 = _mm256_maskz_loadu_ps(m0, j->post_s + n0),
               t0 = _mm256_maskz_loadu_ps(m0, j->post_t + n0);
#pragma GCC unroll 14
        for (int i = 0; i < MR; i++)
            if (i < mr) c0[i] = _mm256_add_ps(_mm256_mul_ps(c0[i], s0), t0);
    }
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++)
        if (i < mr) _mm256_mask_storeu_ps(c + (size_t)i * ldc, m0, c0[i]);
}

/* Every panel of group `grp` for the row block `blk` of mr rows whose output starts at row m0.
 * The first two row blocks of a group prefetch the next group's weights into L2 (one cache
 * line of each 32-wide row per block: the two halves), so the next group does not wait for
 * them from L3 or memory: where the rows are few (faceres's 7x7x1024 1x1 layer: 4 MB of
 * weights, 4 row blocks) that first read had been a third of the layer's time. */
__attribute__((target("avx512f,avx512vl,fma"))) static void
block(const gemm_job *j, int mr, size_t grp, size_t blk, size_t m0, const tap_list *tl, float *yb)
{
    size_t p1 = (grp + 1) * j->group < j->panels ? (grp + 1) * j->group : j->panels;
    const size_t nr = j->nr;
    for (size_t p = grp * j->group; p < p1; p++) {
        const float *b = j->n->packed + p * j->panel_floats;
        const float *pf = nr == NR && blk < 2 && p + j->group < j->panels
                              ? j->n->packed + (p + j->group) * j->panel_floats + 16 * blk
                              : NULL;
        float *c = yb + m0 * j->nc + p * nr;
        const float *res = j->res ? j->res + m0 * j->nc + p * nr : NULL;
        switch (mr) {
#define TILE(r)                                                                                    \
    case r:                                                                                        \
        if (nr == 8)                                                                               \
            tile8(r, tl, b, c, j->nc, res, j, p *nr);                                              \
        else if (nr == 16)                                                                         \
            tile16(r, tl, b, c, j->nc, res, j, p *nr);                                             \
        else                                                                                       \
            tile(r, tl, b, c, j->nc, res, j, p *nr, pf);                                           \
        break;
            TILE(1)
            TILE(2) TILE(3) TILE(4) TILE(5) TILE(6) TILE(7) TILE(8) TILE(9) TILE(10) TILE(11)
                TILE(12) TILE(13) TILE(14)
#undef TILE
                    default : break;
        }
    }
}

/* The taps of gathered rows (K floats per output pixel from `rows`): one, or one per kernel
 * row for 8-wide panels (their pairs stop at each kernel row's end). */
static void gathered_taps(const gemm_job *j, const float *rows, tap_list *tl)
{
    tl->n = 1;
    tl->kt = tl->rs = j->k;
    tl->a[0] = rows;
    tl->boff[0] = 0;
    if (j->nr != 8) return;
    tl->n = (int)(j->k / j->seg);
    tl->kt = j->seg;
    for (int t = 0; t < tl->n; t++) {
        tl->a[t] = rows + (size_t)t * j->seg;
        tl->boff[t] = (size_t)t * ((j->seg + 1) / 2) * 16;
    }
}

static void row_block(const gemm_job *j, size_t grp, size_t blk, int64_t b, int64_t oy, int64_t ox0,
                      int mr, float *yb, size_t m0, float *rows);
static void pooled_task(const gemm_job *j, size_t grp, size_t blk, float *rows);

/* One task: panel group `grp`, row block `blk`. A convolution's blocks lie within one output
 * row (blocks_per_row of them), so an interior block reads each tap's inputs in place. */
static void task(void *arg, size_t grp, size_t blk)
{
    const gemm_job *j = arg;
    tap_list tl;
    if (direct_rows(j->n)) {
        size_t m0 = blk * MR;
        int mr = j->m - m0 < MR ? (int)(j->m - m0) : MR;
        /* Field by field: a compound literal zeroes the whole list (1 KB, a `rep stos`), which
         * had been 4% of a 1x1 layer with 32 inputs. */
        tl.n = 1;
        tl.kt = tl.rs = j->k;
        tl.a[0] = j->x + m0 * j->k;
        tl.boff[0] = 0;
        block(j, mr, grp, blk, m0, &tl, j->y);
        return;
    }
    const nn_conv_params *p = &j->n->p.conv;
    size_t cin = (size_t)j->cin;
    _Alignas(64) float rows[MR * MAX_GATHER_K];
    if (j->n->p.conv.pool) {
        pooled_task(j, grp, blk, rows);
        return;
    }
    if (!j->blocks_per_row) {
        /* A map narrower than a tile: blocks run across output rows (and images), so a tile's
         * weights meet 14 rows; gathered. */
        size_t m0 = blk * MR;
        int mr = j->m - m0 < MR ? (int)(j->m - m0) : MR;
        for (int i = 0; i < mr; i++) {
            int64_t q = (int64_t)(m0 + (size_t)i), per = j->oh * j->ow;
            int64_t b = q / per, r = q % per, oy = r / j->ow, ox = r % j->ow;
            float *dst = rows + (size_t)i * j->k;
            for (int ky = 0; ky < p->kernel_h; ky++) {
                int64_t iy = oy * p->stride_h - p->pad_top + (int64_t)ky * p->dilation_h;
                for (int kx = 0; kx < p->kernel_w; kx++, dst += cin) {
                    int64_t ix = ox * p->stride_w - p->pad_left + (int64_t)kx * p->dilation_w;
                    if (iy < 0 || iy >= j->h || ix < 0 || ix >= j->w)
                        memset(dst, 0, cin * sizeof *dst);
                    else
                        memcpy(dst, j->x + (size_t)(((b * j->h + iy) * j->w + ix)) * cin,
                               cin * sizeof *dst);
                }
            }
        }
        gathered_taps(j, rows, &tl);
        block(j, mr, grp, blk, m0, &tl, j->y);
        return;
    }
    int64_t row = (int64_t)(blk / j->blocks_per_row),
            ox0 = (int64_t)((blk % j->blocks_per_row) * j->block_width);
    int64_t b = row / j->oh, oy = row % j->oh;
    int mr = j->ow - ox0 < (int64_t)j->block_width ? (int)(j->ow - ox0) : (int)j->block_width;
    row_block(j, grp, blk, b, oy, ox0, mr, j->y, (size_t)(row * j->ow + ox0), rows);
}

/* The row block of output row oy of image b, mr (<= MR) columns from ox0, for panel group grp,
 * into yb from row m0 (rows: MR * MAX_GATHER_K floats of scratch). blk: the task's block index
 * (the next group's prefetch). */
static void row_block(const gemm_job *j, size_t grp, size_t blk, int64_t b, int64_t oy, int64_t ox0,
                      int mr, float *yb, size_t m0, float *rows)
{
    const nn_conv_params *p = &j->n->p.conv;
    size_t cin = (size_t)j->cin;
    tap_list tl;
    int64_t ix_first = ox0 * p->stride_w - p->pad_left;
    int64_t ix_last =
        (ox0 + mr - 1) * p->stride_w - p->pad_left + (int64_t)(p->kernel_w - 1) * p->dilation_w;
    /* At the image's left or right edge, the span of inputs each kernel row reads
     * ([ix_first, ix_last], zeros outside the image) is copied into `rows` first, so the taps
     * read it in place like an interior block's: a copy of (block + kernel) pixels per kernel
     * row instead of every tap of every pixel (K floats per pixel; for few channels the copy
     * cost as much as the FMAs). Spans too long for the buffer fall back to that gather. */
    int inside = ix_first >= 0 && ix_last < j->w;
    size_t span = (size_t)(ix_last - ix_first + 1) * cin;
    if ((inside || span * (size_t)p->kernel_h <= (size_t)MR * MAX_GATHER_K) &&
        (j->nr != 8 || p->dilation_w == 1)) {
        /* Every tap's inputs lie stride * Cin apart; taps whose row is outside the image add
         * zeros and are left out. Without dilation a kernel row's taps read KW * Cin
         * consecutive inputs against consecutive K: one tap. */
        int merge = p->dilation_w == 1;
        int kw = merge ? 1 : p->kernel_w;
        tl.n = 0;
        tl.kt = merge ? (size_t)p->kernel_w * cin : cin;
        tl.rs = (size_t)p->stride_w * cin;
        float *buf = rows;
        for (int ky = 0; ky < p->kernel_h; ky++) {
            int64_t iy = oy * p->stride_h - p->pad_top + (int64_t)ky * p->dilation_h;
            if (iy < 0 || iy >= j->h) continue;
            const float *line = j->x + (size_t)((b * j->h + iy) * j->w) * cin;
            const float *base;
            if (inside) {
                base = line + (size_t)ix_first * cin;
            } else {
                /* lo pixels left of the image, n_in inside it, the rest right of it. */
                int64_t total = ix_last - ix_first + 1;
                int64_t lo = ix_first < 0 ? (-ix_first < total ? -ix_first : total) : 0;
                int64_t n_in = (ix_last < j->w ? ix_last + 1 : j->w) - (ix_first + lo);
                if (n_in < 0) n_in = 0;
                memset(buf, 0, (size_t)lo * cin * sizeof *buf);
                if (n_in > 0)
                    memcpy(buf + (size_t)lo * cin, line + (size_t)(ix_first + lo) * cin,
                           (size_t)n_in * cin * sizeof *buf);
                memset(buf + (size_t)(lo + n_in) * cin, 0,
                       (span - (size_t)(lo + n_in) * cin) * sizeof *buf);
                base = buf;
                buf += span;
            }
            for (int kx = 0; kx < kw; kx++) {
                tl.a[tl.n] = base + (size_t)((int64_t)kx * p->dilation_w) * cin;
                tl.boff[tl.n] = j->nr == 8 ? (size_t)ky * ((j->seg + 1) / 2) * 16
                                           : (size_t)(ky * p->kernel_w + kx) * cin * j->nr;
                tl.n++;
            }
        }
        block(j, mr, grp, blk, m0, &tl, yb);
        return;
    }
    /* An edge block whose spans do not fit: gather the rows, zeros outside the image. */
    for (int i = 0; i < mr; i++) {
        int64_t ox = ox0 + i;
        float *dst = rows + (size_t)i * j->k;
        for (int ky = 0; ky < p->kernel_h; ky++) {
            int64_t iy = oy * p->stride_h - p->pad_top + (int64_t)ky * p->dilation_h;
            for (int kx = 0; kx < p->kernel_w; kx++, dst += cin) {
                int64_t ix = ox * p->stride_w - p->pad_left + (int64_t)kx * p->dilation_w;
                if (iy < 0 || iy >= j->h || ix < 0 || ix >= j->w)
                    memset(dst, 0, cin * sizeof *dst);
                else
                    memcpy(dst, j->x + (size_t)(((b * j->h + iy) * j->w + ix)) * cin,
                           cin * sizeof *dst);
            }
        }
    }
    gathered_taps(j, rows, &tl);
    block(j, mr, grp, blk, m0, &tl, yb);
}

/* Pooled columns [p0, p1) of a span of two output rows (row 1 `up` floats after row 0; the
 * span starts at output column s0), channels [c0, c1), into y. */
__attribute__((target("avx512f"))) static void pool_span(const float *two, float *y, int64_t p0,
                                                         int64_t p1, size_t nc, size_t up,
                                                         size_t c0, size_t c1, int avg,
                                                         __m512 quarter, int64_t s0)
{
    for (int64_t px = p0; px < p1; px++) {
        const float *t = two + (size_t)(2 * px - s0) * nc;
        for (size_t c = c0; c < c1; c += 16) {
            __mmask16 m = c1 - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (c1 - c)) - 1);
            __m512 a = _mm512_maskz_loadu_ps(m, t + c), bb = _mm512_maskz_loadu_ps(m, t + nc + c);
            __m512 cc = _mm512_maskz_loadu_ps(m, t + up + c),
                   d = _mm512_maskz_loadu_ps(m, t + up + nc + c);
            __m512 v;
            if (avg) {
                /* (a + b + c + d) / 4 in that order; a quarter is exact. */
                v = _mm512_mul_ps(_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a, bb), cc), d),
                                  quarter);
            } else {
                /* max(x, o) as x > o ? x : o, from -inf: a NaN never wins. */
                v = _mm512_set1_ps(-__builtin_inff());
                v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(a, v, _CMP_GT_OQ), a);
                v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(bb, v, _CMP_GT_OQ), bb);
                v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(cc, v, _CMP_GT_OQ), cc);
                v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(d, v, _CMP_GT_OQ), d);
            }
            _mm512_mask_storeu_ps(y + (size_t)px * nc + c, m, v);
        }
    }
}

/* One task of a convolution with a fused 2x2 pooling: pooled row `blk` (of the whole batch)
 * for panel group grp. Its two output rows go to the stack in spans of columns (as many as
 * POOL_SCRATCH holds, a whole number of row blocks where it can: gear's 194-wide 64-channel
 * rows take two), each span pooled into the output as the reference pools (NaNs skipped by
 * the maximum; the average sums in window order). The odd last column is not computed. */
__attribute__((target("avx512f"))) static void pooled_task(const gemm_job *j, size_t grp,
                                                           size_t blk, float *rows)
{
    _Alignas(64) float two[POOL_SCRATCH];
    int64_t ph = j->oh / 2, pw = j->ow / 2, b = (int64_t)blk / ph, py = (int64_t)blk % ph;
    const int64_t bw = (int64_t)j->block_width, used = 2 * pw;
    int64_t span = (int64_t)(POOL_SCRATCH / (2 * j->nc)); /* columns per span */
    if (span >= bw) span = span / bw * bw;
    span &= ~(int64_t)1;
    size_t c0 = grp * j->group * j->nr, c1 = (grp + 1) * j->group * j->nr;
    if (c1 > j->nc) c1 = j->nc;
    const size_t nc = j->nc, up = (size_t)span * nc;
    float *y = j->y + (size_t)((b * ph + py) * pw) * nc;
    int avg = j->n->p.conv.pool_kind == NN_POOL_AVG;
    const __m512 quarter = _mm512_set1_ps(0.25f);
    for (int64_t s0 = 0; s0 < used; s0 += span) {
        int64_t s1 = s0 + span < used ? s0 + span : used;
        for (int r = 0; r < 2; r++)
            for (int64_t ox0 = s0; ox0 < s1; ox0 += bw) {
                int mr = s1 - ox0 < bw ? (int)(s1 - ox0) : (int)bw;
                row_block(j, grp, blk, b, 2 * py + r, ox0, mr, two, (size_t)(r * span + ox0 - s0),
                          rows);
            }
        pool_span(two, y, s0 / 2, s1 / 2, nc, up, c0, c1, avg, quarter, s0);
    }
}

int nn_gemm_run(const nn_graph *g, const nn_node *n, const nn_view *in, nn_view *out,
                struct pthreadpool *pool)
{
    if (!n->packed) return base_error_set(BASE_ERR_INVALID, "node %s: weights not packed", n->name);
    gemm_job j = {.g = g, .n = n, .x = in[0].data, .y = out->data};
    gemm_dims(g, n, &j.k, &j.nc);
    const nn_shape *xs = &in[0].shape, *ys = &out->shape;
    if (n->op == NN_OP_FULLY_CONNECTED) {
        if (xs->rank != 2 || xs->dim[1] != (int64_t)j.k || ys->rank != 2 ||
            ys->dim[0] != xs->dim[0] || ys->dim[1] != (int64_t)j.nc)
            return base_error_set(BASE_ERR_INVALID, "node %s: bad views", n->name);
        j.m = (size_t)xs->dim[0];
    } else {
        const nn_conv_params *p = &n->p.conv;
        /* The convolution's output; a fused pooling's output is half of it (rounded down). */
        int64_t oh = nn_window_out(xs->dim[1], p->kernel_h, p->stride_h, p->dilation_h, p->pad_top,
                                   p->pad_bottom);
        int64_t ow = nn_window_out(xs->dim[2], p->kernel_w, p->stride_w, p->dilation_w, p->pad_left,
                                   p->pad_right);
        int sc = p->pool ? 2 : 1;
        if (xs->rank != 4 || ys->rank != 4 || ys->dim[0] != xs->dim[0] ||
            ys->dim[3] != (int64_t)j.nc || ys->dim[1] != oh / sc || ys->dim[2] != ow / sc ||
            xs->dim[3] * p->kernel_h * p->kernel_w != (int64_t)j.k ||
            (p->pool &&
             (p->pool != 2 || p->residual || ow < 2 || oh < 2 || 4 * j.nc > POOL_SCRATCH)))
            return base_error_set(BASE_ERR_INVALID, "node %s: bad views", n->name);
        if (!direct_rows(n) && j.k > MAX_GATHER_K)
            return base_error_set(BASE_ERR_UNSUPPORTED,
                                  "node %s: %zu inputs per pixel is more than the GEMM gathers",
                                  n->name, j.k);
        j.h = xs->dim[1];
        j.w = xs->dim[2];
        j.cin = xs->dim[3];
        j.oh = oh;
        j.ow = ow;
        j.m = (size_t)(ys->dim[0] * oh * ow);
    }
    if (n->n_inputs > 2 && n->inputs[2] >= 0) j.bias = in[2].data;
    if (n->op == NN_OP_CONV2D && n->p.conv.residual) {
        if (n->n_inputs != 5 || !in[4].data || !nn_shape_equal(&in[4].shape, ys))
            return base_error_set(BASE_ERR_INVALID, "node %s: bad residual view", n->name);
        j.res = in[4].data;
    }
    if (n->op == NN_OP_CONV2D && n->p.conv.post_affine) {
        if (n->n_inputs != 7 || !in[5].data || !in[6].data ||
            nn_shape_numel(&in[5].shape, 1) != (int64_t)j.nc ||
            nn_shape_numel(&in[6].shape, 1) != (int64_t)j.nc)
            return base_error_set(BASE_ERR_INVALID, "node %s: bad scale and shift views", n->name);
        j.post_s = in[5].data;
        j.post_t = in[6].data;
    }
    if (node_act(n)->kind == NN_ACT_PRELU) {
        j.slope = in[3].data;
        j.slope_scalar = nn_shape_numel(&in[3].shape, 1) == 1;
    }
    if (j.m == 0) return 0;
    j.nr = panel_width(j.nc);
    j.panels = (j.nc + j.nr - 1) / j.nr;
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    size_t budget = (l2 >= (256 << 10) && l2 <= (64 << 20) ? (size_t)l2 : (size_t)1 << 20) / 2;
    j.panel_floats = panel_floats(g, n, j.k, j.nr);
    j.seg = pair_segment(g, n);
    j.group = budget / (j.panel_floats * sizeof(float));
    /* At most two 32-wide panels per group: with the next group prefetched into L2 during
     * this one, larger groups (half of L2 each) had filled L2 and evicted each other; groups of
     * two measured 3-5% faster on faceres's and gear's 1x1 layers, neutral to better elsewhere. */
    if (j.nr == NR && j.group > 2) j.group = 2;
    if (j.group < 1) j.group = 1;
    if (j.group > j.panels) j.group = j.panels;
    size_t groups = (j.panels + j.group - 1) / j.group, blocks = (j.m + MR - 1) / MR;
    /* 8-wide panels on maps narrower than a tile (K >= 256: emotion's 3x3x256 -> 7 head on
     * 8x8) also take whole output rows as blocks, reading taps in place or from a copied span,
     * instead of gathering K inputs per pixel across rows (a third of the copying). */
    if (!direct_rows(n) && (j.ow >= MR || (j.nr == 8 && (n->p.conv.dilation_w == 1)))) {
        /* Even blocks: a 16-wide row as 8 + 8, not 14 + 2 (a 2-row tile runs at a fraction of
         * the speed: its weights meet 2 rows). */
        size_t n_blocks = (size_t)(j.ow + MR - 1) / MR;
        j.block_width = ((size_t)j.ow + n_blocks - 1) / n_blocks;
        j.blocks_per_row = ((size_t)j.ow + j.block_width - 1) / j.block_width;
        blocks = (size_t)(xs->dim[0] * j.oh) * j.blocks_per_row;
    }
    if (n->op == NN_OP_CONV2D && n->p.conv.pool) {
        /* A task per pooled row; its two output rows in blocks as above, or whole on maps
         * narrower than a tile. */
        if (j.ow < MR) j.block_width = (size_t)j.ow;
        blocks = (size_t)(xs->dim[0] * (j.oh / 2));
    }
    if (pool && pthreadpool_get_threads_count(pool) > 1) {
        pthreadpool_parallelize_2d(pool, task, &j, groups, blocks, 0);
    } else {
        for (size_t gi = 0; gi < groups; gi++)
            for (size_t b = 0; b < blocks; b++)
                task(&j, gi, b);
    }
    return 0;
}
