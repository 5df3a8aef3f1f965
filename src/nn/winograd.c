/*
 * 3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3).
 *
 * Why: the GEMM kernel (gemm.c) runs the face models' 3x3 layers at 245-260 GFLOP/s, about
 * this CPU's FP32 peak, so only fewer operations make them faster. F(2x2, 3x3) computes a
 * 2x2 block of outputs from a 4x4 block of inputs with 16 multiplies per input and output
 * channel instead of 36 (2.25x fewer), at the cost of a transform of the inputs and of the
 * outputs (additions only) and of weights 16/9 as large.
 *
 * The algorithm (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):
 * the weights of every (Cin, Cout) pair are transformed once at load, U = G g G^T (4x4), and
 * stored as 16 matrices U[e] of [Cin, Cout]. Per run, the output is cut into 2x2 tiles; each
 * tile's 4x4 input patch d (zeros outside the image) becomes V = B^T d B, the 16 positions
 * e of all tiles make 16 independent GEMMs M[e] = V[e] U[e] ([tiles, Cin] x [Cin, Cout]), and
 * each tile's output is A^T m A (2x2) plus the same epilogue as the GEMM path: bias, residual,
 * activation, scale and shift, and a fused 2x2 pooling, which for F(2x2) is exactly the
 * tile's four outputs (a tile per pooled pixel; the odd last row or column is never computed).
 *
 * Loop order: tiles in blocks sized so a block's transformed inputs (16 x tiles x Cin) and
 * one panel's products (16 x tiles x 32) stay in L2; per block, the input transform, then per
 * panel of 32 output channels the 16 GEMMs (a 14x32 register tile as in gemm.c: 28
 * accumulators, two weight vectors, one broadcast) and the output transform of that panel.
 * A panel's U[e] (Cin x 32) is met by every 14-tile row block of the block from L1.
 * Intra-op threads each take a slice of the per-context scratch (nn_wino_scratch_floats
 * floats per worker) and claim blocks from a shared counter.
 *
 * Numerics: the transforms add and subtract (B, A have entries 0 and +-1; G has halves,
 * applied in double at load), so the result differs from the direct sum by a few units of
 * rounding of the largest products: tests/nn/test_winograd.c and test_golden bound it.
 */
#include "base/base.h"
#include "nn/graph.h"

#include <immintrin.h>
#include <math.h>
#include <pthreadpool.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MR 14 /* tiles per register tile */
#define NR 32 /* output channels per panel (16 for layers with at most 16) */
#define NPOS 16 /* transformed positions of a 4x4 tile */
/* Most input channels taken: a block's transformed inputs (16 x 14 x Cin floats at least)
 * must stay a fraction of L2. */
#define MAX_CIN 4096

static size_t panel_width(int64_t cout)
{
    return cout <= 16 ? 16 : NR;
}

/* Floats per transformed input row: Cin rounded up to whole vectors (the transform stores
 * full vectors; the GEMM reads the first Cin). */
static size_t row_floats(int64_t cin)
{
    return ((size_t)cin + 15) / 16 * 16;
}

/* Tiles per block. Where the transformed weights (16 x Cin x Cout) stay in half of a 1 MB L2,
 * one register tile's worth: its V, and one panel's M (16 x 14 x 32 floats, 28 KB), stay near
 * L1 between the transforms and the GEMMs (faceapi-resnet's 17x17 64 -> 64 layers: 0.066 ->
 * 0.053 ms against blocks of 84 tiles; neutral on gear and emotion). Otherwise as many tiles
 * as keep the block's V (16 x tb x ldv) and one panel's M (16 x tb x nr) within half of L2,
 * so each pass over the weights serves more tiles; a whole number of register tiles, at most
 * 168. */
static size_t block_tiles(int64_t cin, int64_t cout)
{
    if ((size_t)(NPOS * cin * cout) * sizeof(float) <= ((size_t)512 << 10)) return MR;
    size_t per_tile = NPOS * (row_floats(cin) + panel_width(cout)) * sizeof(float);
    size_t tb = ((size_t)512 << 10) / per_tile / MR * MR;
    if (tb < MR) tb = MR;
    if (tb > 12 * MR) tb = 12 * MR;
    return tb;
}

static const nn_act *conv_act(const nn_node *n)
{
    return &n->p.conv.act;
}

int nn_wino_supports(const nn_graph *g, const nn_node *n)
{
    if (n->op != NN_OP_CONV2D || n->n_inputs < 2 || n->inputs[0] < 0) return 0;
    const nn_conv_params *p = &n->p.conv;
    if (p->depthwise || p->kernel_h != 3 || p->kernel_w != 3 || p->stride_h != 1 || p->stride_w != 1 ||
        p->dilation_h != 1 || p->dilation_w != 1)
        return 0;
    if (p->pad_top < 0 || p->pad_bottom < 0 || p->pad_left < 0 || p->pad_right < 0) return 0;
    if (!nn_tensor_is_const(g, n->inputs[1])) return 0;
    for (int i = 0; i < n->n_inputs; i++)
        if (n->inputs[i] >= 0 && g->tensors[n->inputs[i]].dtype != NN_DTYPE_F32) return 0;
    const nn_shape *x = &g->tensors[n->inputs[0]].shape, *w = &g->tensors[n->inputs[1]].shape;
    if (x->rank != 4 || w->rank != 4 || w->dim[0] != 3 || w->dim[1] != 3 || x->dim[3] != w->dim[2]) return 0;
    int64_t cin = w->dim[2], cout = w->dim[3];
    if (cin < 1 || cin > MAX_CIN || cout < 1) return 0;
    int64_t oh = nn_window_out(x->dim[1], 3, 1, 1, p->pad_top, p->pad_bottom);
    int64_t ow = nn_window_out(x->dim[2], 3, 1, 1, p->pad_left, p->pad_right);
    if (oh < 1 || ow < 1) return 0;
    if (n->n_inputs > 2 && n->inputs[2] >= 0 &&
        (!nn_tensor_is_const(g, n->inputs[2]) || nn_shape_numel(&g->tensors[n->inputs[2]].shape, 1) != cout))
        return 0;
    const nn_act *act = conv_act(n);
    if (act->kind == NN_ACT_PRELU) {
        if (n->n_inputs < 4 || !nn_tensor_is_const(g, n->inputs[3])) return 0;
        const nn_shape *s = &g->tensors[n->inputs[3]].shape;
        int64_t cnt = nn_shape_numel(s, 1);
        if (cnt != 1 && !(cnt == cout && s->rank >= 1 && s->dim[s->rank - 1] == cnt)) return 0;
    } else if (n->n_inputs > 3 && n->inputs[3] >= 0) {
        return 0;
    }
    if (p->residual) {
        if (p->pool || p->post_affine || n->n_inputs != 5 || n->inputs[4] < 0 ||
            nn_tensor_is_const(g, n->inputs[4]))
            return 0;
    } else if (n->n_inputs > 4 && n->inputs[4] >= 0) {
        return 0;
    }
    if (p->post_affine) {
        if (n->n_inputs != 7) return 0;
        for (int i = 5; i < 7; i++)
            if (n->inputs[i] < 0 || !nn_tensor_is_const(g, n->inputs[i]) ||
                nn_shape_numel(&g->tensors[n->inputs[i]].shape, 1) != cout)
                return 0;
    } else if (n->n_inputs > 5) {
        return 0;
    }
    if (p->pool && (p->pool != 2 || oh < 2 || ow < 2)) return 0;
    return 1;
}

int nn_wino_preferred(const nn_graph *g, const nn_node *n)
{
    if (!__builtin_cpu_supports("avx512f") || !nn_wino_supports(g, n)) return 0;
    const nn_shape *x = &g->tensors[n->inputs[0]].shape, *w = &g->tensors[n->inputs[1]].shape;
    const nn_conv_params *p = &n->p.conv;
    int64_t cin = w->dim[2], cout = w->dim[3];
    int64_t oh = nn_window_out(x->dim[1], 3, 1, 1, p->pad_top, p->pad_bottom);
    int64_t ow = nn_window_out(x->dim[2], 3, 1, 1, p->pad_left, p->pad_right);
    int64_t tiles = p->pool ? (oh / 2) * (ow / 2) : ((oh + 1) / 2) * ((ow + 1) / 2);
    /* Measured (bench nn --profile, fastest of 20 runs, both ways): 16 output channels (a
     * 16-wide panel) lost 6-7% on age's and liveness's 3x3 16 -> 16 layers and gained 9% on
     * antispoof's 32 -> 16; every layer with 32 or more inputs and outputs gained 20-80%. */
    return cin >= 16 && cout > 16 && tiles >= 9;
}

/* The transformed weights: per panel of nr output channels, per position e, [Cin][nr]
 * (zeros past Cout). U = G g G^T with G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1], in
 * double so each U is the correctly rounded value. */
int nn_wino_pack(nn_graph *g, nn_node *n)
{
    const nn_shape *ws = &g->tensors[n->inputs[1]].shape;
    const int64_t cin = ws->dim[2], cout = ws->dim[3];
    const size_t nr = panel_width(cout), panels = ((size_t)cout + nr - 1) / nr;
    size_t count = panels * NPOS * (size_t)cin * nr;
    float *u = base_aligned_alloc(64, count * sizeof *u);
    if (!u) return base_error_set(BASE_ERR_NOMEM, "node %s: cannot transform weights", n->name);
    memset(u, 0, count * sizeof *u);
    static const double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    const float *w = g->tensors[n->inputs[1]].data; /* [3][3][Cin][Cout] */
    for (int64_t k = 0; k < cin; k++)
        for (int64_t c = 0; c < cout; c++) {
            double gk[3][3], gg[4][3];
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++) gk[ky][kx] = w[((ky * 3 + kx) * cin + k) * cout + c];
            for (int i = 0; i < 4; i++)
                for (int kx = 0; kx < 3; kx++)
                    gg[i][kx] = G[i][0] * gk[0][kx] + G[i][1] * gk[1][kx] + G[i][2] * gk[2][kx];
            size_t p = (size_t)c / nr, col = (size_t)c % nr;
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) {
                    double v = gg[i][0] * G[j][0] + gg[i][1] * G[j][1] + gg[i][2] * G[j][2];
                    u[((p * NPOS + (size_t)(i * 4 + j)) * (size_t)cin + (size_t)k) * nr + col] = (float)v;
                }
        }
    base_aligned_free(n->wino);
    n->wino = u;
    return 0;
}

size_t nn_wino_scratch_floats(const nn_graph *g, const nn_node *n)
{
    const nn_shape *ws = &g->tensors[n->inputs[1]].shape;
    size_t tb = block_tiles(ws->dim[2], ws->dim[3]);
    return NPOS * tb * (row_floats(ws->dim[2]) + panel_width(ws->dim[3]));
}

/* What every worker of one run needs. */
typedef struct wino_job {
    const nn_node *n;
    const float *x;                 /* [N,H,W,Cin] */
    float *y;                       /* [N,OH,OW,Cout], or pooled [N,OH/2,OW/2,Cout] */
    const float *u;                 /* transformed weights */
    const float *bias, *slope, *res, *post_s, *post_t;
    int slope_scalar;
    int64_t h, w, cin, cout, oh, ow; /* oh, ow: the convolution's output */
    int64_t th, tw;                 /* tiles per image: rows, columns */
    int64_t yh, yw;                 /* the output tensor's rows and columns */
    size_t tiles, tb, ldv, nr, panels, blocks;
    float *scratch;
    size_t per_worker;
    atomic_size_t next;
} wino_job;

/* --- AVX-512 ----------------------------------------------------------------------------- */

/* M[e] rows [0, mr) = V[e] rows [0, mr) times U[e] (cin x nv*16) into m (row stride nr). */
__attribute__((target("avx512f"), always_inline)) static inline void kern(int mr, int nv, const float *a,
                                                                          size_t lda, const float *b, size_t k,
                                                                          float *m, size_t nr)
{
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++)
        if (i < mr) {
            c0[i] = _mm512_setzero_ps();
            c1[i] = _mm512_setzero_ps();
        }
    for (size_t q = 0; q < k; q++) {
        __m512 b0 = _mm512_load_ps(b + q * nr);
        __m512 b1 = nv == 2 ? _mm512_load_ps(b + q * nr + 16) : b0;
#pragma GCC unroll 14
        for (int i = 0; i < MR; i++)
            if (i < mr) {
                __m512 av = _mm512_set1_ps(a[(size_t)i * lda + q]);
                c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
                if (nv == 2) c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
            }
    }
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++)
        if (i < mr) {
            _mm512_store_ps(m + (size_t)i * nr, c0[i]);
            if (nv == 2) _mm512_store_ps(m + (size_t)i * nr + 16, c1[i]);
        }
}

__attribute__((target("avx512f"))) static void gemm_rows(int mr, const float *a, size_t lda, const float *b,
                                                         size_t k, float *m, size_t nr)
{
    switch (mr) {
#define KERN(r)                                                                                    \
    case r:                                                                                        \
        if (nr == NR) kern(r, 2, a, lda, b, k, m, nr);                                             \
        else kern(r, 1, a, lda, b, k, m, nr);                                                      \
        break;
        KERN(1) KERN(2) KERN(3) KERN(4) KERN(5) KERN(6) KERN(7)
        KERN(8) KERN(9) KERN(10) KERN(11) KERN(12) KERN(13) KERN(14)
#undef KERN
    default: break;
    }
}

/* Image, tile row and tile column of tile t. */
static void tile_pos(const wino_job *j, size_t t, int64_t *b, int64_t *ty, int64_t *tx)
{
    int64_t per = j->th * j->tw, q = (int64_t)t;
    *b = q / per;
    *ty = q % per / j->tw;
    *tx = q % j->tw;
}

/* The 16 input pixels of tile t (row-major 4x4), NULL where outside the image. */
static void tile_inputs(const wino_job *j, size_t t, const float *px[16])
{
    int64_t b, ty, tx;
    tile_pos(j, t, &b, &ty, &tx);
    const nn_conv_params *p = &j->n->p.conv;
    int64_t iy0 = 2 * ty - p->pad_top, ix0 = 2 * tx - p->pad_left;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) {
            int64_t iy = iy0 + r, ix = ix0 + c;
            px[r * 4 + c] = iy < 0 || iy >= j->h || ix < 0 || ix >= j->w
                                ? NULL
                                : j->x + (size_t)((b * j->h + iy) * j->w + ix) * (size_t)j->cin;
        }
}

/* V = B^T d B for tiles [t0, t0 + nt) into v ([16][tb][ldv]). With
 * B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]. */
__attribute__((target("avx512f"))) static void input_transform(const wino_job *j, size_t t0, size_t nt, float *v)
{
    const size_t cin = (size_t)j->cin, plane = j->tb * j->ldv;
    for (size_t i = 0; i < nt; i++) {
        const float *px[16];
        tile_inputs(j, t0 + i, px);
        float *vt = v + i * j->ldv;
        for (size_t c = 0; c < cin; c += 16) {
            __mmask16 mk = cin - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (cin - c)) - 1);
            __m512 d[16], t[16];
            for (int q = 0; q < 16; q++) d[q] = px[q] ? _mm512_maskz_loadu_ps(mk, px[q] + c) : _mm512_setzero_ps();
            for (int col = 0; col < 4; col++) {
                t[0 + col] = _mm512_sub_ps(d[0 + col], d[8 + col]);
                t[4 + col] = _mm512_add_ps(d[4 + col], d[8 + col]);
                t[8 + col] = _mm512_sub_ps(d[8 + col], d[4 + col]);
                t[12 + col] = _mm512_sub_ps(d[4 + col], d[12 + col]);
            }
            for (int r = 0; r < 4; r++) {
                const __m512 *tr = t + 4 * r;
                _mm512_store_ps(vt + (size_t)(4 * r + 0) * plane + c, _mm512_sub_ps(tr[0], tr[2]));
                _mm512_store_ps(vt + (size_t)(4 * r + 1) * plane + c, _mm512_add_ps(tr[1], tr[2]));
                _mm512_store_ps(vt + (size_t)(4 * r + 2) * plane + c, _mm512_sub_ps(tr[2], tr[1]));
                _mm512_store_ps(vt + (size_t)(4 * r + 3) * plane + c, _mm512_sub_ps(tr[1], tr[3]));
            }
        }
    }
}

/* Bias (already in), residual, activation, scale and shift of one output vector. */
__attribute__((target("avx512f"), always_inline)) static inline __m512 epilogue(const wino_job *j, __m512 y,
                                                                                __mmask16 mk, size_t c,
                                                                                const float *r)
{
    if (r) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(mk, r));
    const nn_act *act = conv_act(j->n);
    if (act->kind == NN_ACT_CLAMP) {
        y = _mm512_max_ps(y, _mm512_set1_ps(act->lo));
        if (act->hi < HUGE_VALF) y = _mm512_min_ps(y, _mm512_set1_ps(act->hi));
    } else if (act->kind == NN_ACT_LEAKY || act->kind == NN_ACT_PRELU) {
        __m512 s = act->kind == NN_ACT_LEAKY ? _mm512_set1_ps(act->alpha)
                   : j->slope_scalar         ? _mm512_set1_ps(j->slope[0])
                                             : _mm512_maskz_loadu_ps(mk, j->slope + c);
        y = _mm512_mask_mul_ps(y, _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_LT_OQ), y, s);
    }
    if (j->post_s) {
        /* Mul then Add (not an FMA), as the two TensorFlow ops round. */
        y = _mm512_add_ps(_mm512_mul_ps(y, _mm512_maskz_loadu_ps(mk, j->post_s + c)),
                          _mm512_maskz_loadu_ps(mk, j->post_t + c));
    }
    return y;
}

/* Y = A^T m A for tiles [t0, t0 + nt) and panel p, from m ([16][tb][nr]), with the epilogue;
 * A^T = [1 1 1 0; 0 1 -1 -1]. */
__attribute__((target("avx512f"))) static void output_transform(const wino_job *j, size_t t0, size_t nt, size_t p,
                                                                 const float *m)
{
    const size_t plane = j->tb * j->nr, nc = (size_t)j->cout;
    const size_t c_end = (p + 1) * j->nr < nc ? (p + 1) * j->nr : nc;
    const int pool = j->n->p.conv.pool, avg = j->n->p.conv.pool_kind == NN_POOL_AVG;
    for (size_t i = 0; i < nt; i++) {
        int64_t b, ty, tx;
        tile_pos(j, t0 + i, &b, &ty, &tx);
        const float *mt = m + i * j->nr;
        for (size_t c = p * j->nr; c < c_end; c += 16) {
            __mmask16 mk = c_end - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (c_end - c)) - 1);
            const size_t lc = c - p * j->nr;
            __m512 s[8];
            for (int col = 0; col < 4; col++) {
                __m512 m0 = _mm512_load_ps(mt + (size_t)(0 + col) * plane + lc);
                __m512 m1 = _mm512_load_ps(mt + (size_t)(4 + col) * plane + lc);
                __m512 m2 = _mm512_load_ps(mt + (size_t)(8 + col) * plane + lc);
                __m512 m3 = _mm512_load_ps(mt + (size_t)(12 + col) * plane + lc);
                s[col] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
                s[4 + col] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
            }
            __m512 bias = j->bias ? _mm512_maskz_loadu_ps(mk, j->bias + c) : _mm512_setzero_ps();
            __m512 y[4];
            for (int r = 0; r < 2; r++) {
                const __m512 *sr = s + 4 * r;
                y[2 * r] = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(sr[0], sr[1]), sr[2]), bias);
                y[2 * r + 1] = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(sr[1], sr[2]), sr[3]), bias);
            }
            if (pool) {
                for (int q = 0; q < 4; q++) y[q] = epilogue(j, y[q], mk, c, NULL);
                __m512 v;
                if (avg) {
                    v = _mm512_mul_ps(_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(y[0], y[1]), y[2]), y[3]),
                                      _mm512_set1_ps(0.25f));
                } else {
                    /* max(x, o) as x > o ? x : o, from -inf: a NaN never wins (as the reference). */
                    v = _mm512_set1_ps(-HUGE_VALF);
                    for (int q = 0; q < 4; q++) v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(y[q], v, _CMP_GT_OQ), y[q]);
                }
                _mm512_mask_storeu_ps(j->y + (size_t)((b * j->yh + ty) * j->yw + tx) * nc + c, mk, v);
                continue;
            }
            for (int q = 0; q < 4; q++) {
                int64_t oy = 2 * ty + q / 2, ox = 2 * tx + q % 2;
                if (oy >= j->oh || ox >= j->ow) continue;
                size_t at = (size_t)((b * j->oh + oy) * j->ow + ox) * nc + c;
                __m512 v = epilogue(j, y[q], mk, c, j->res ? j->res + at : NULL);
                _mm512_mask_storeu_ps(j->y + at, mk, v);
            }
        }
    }
}

__attribute__((target("avx512f"))) static void block_avx512(const wino_job *j, size_t blk, float *v, float *m)
{
    const size_t t0 = blk * j->tb, nt = j->tiles - t0 < j->tb ? j->tiles - t0 : j->tb;
    const size_t cin = (size_t)j->cin;
    input_transform(j, t0, nt, v);
    for (size_t p = 0; p < j->panels; p++) {
        const float *up = j->u + p * NPOS * cin * j->nr;
        for (int e = 0; e < NPOS; e++) {
            const float *ue = up + (size_t)e * cin * j->nr;
            const float *ve = v + (size_t)e * j->tb * j->ldv;
            float *me = m + (size_t)e * j->tb * j->nr;
            for (size_t i0 = 0; i0 < nt; i0 += MR) {
                int mr = nt - i0 < MR ? (int)(nt - i0) : MR;
                gemm_rows(mr, ve + i0 * j->ldv, j->ldv, ue, cin, me + i0 * j->nr, j->nr);
            }
        }
        output_transform(j, t0, nt, p, m);
    }
}

/* --- portable C (CPUs without AVX-512) -------------------------------------------------- */

static float epilogue_scalar(const wino_job *j, float y, size_t c, const float *r)
{
    if (r) y += *r;
    const nn_act *act = conv_act(j->n);
    if (act->kind == NN_ACT_CLAMP) {
        y = y > act->lo ? y : act->lo;
        if (act->hi < HUGE_VALF) y = y < act->hi ? y : act->hi;
    } else if (act->kind == NN_ACT_LEAKY || act->kind == NN_ACT_PRELU) {
        float s = act->kind == NN_ACT_LEAKY ? act->alpha : j->slope_scalar ? j->slope[0] : j->slope[c];
        if (y < 0) y *= s;
    }
    if (j->post_s) {
        const float sv = y * j->post_s[c]; /* not contracted into an FMA (C17: no contraction) */
        y = sv + j->post_t[c];
    }
    return y;
}

static void block_scalar(const wino_job *j, size_t blk, float *v, float *m)
{
    const size_t t0 = blk * j->tb, nt = j->tiles - t0 < j->tb ? j->tiles - t0 : j->tb;
    const size_t cin = (size_t)j->cin, nc = (size_t)j->cout;
    const size_t vplane = j->tb * j->ldv, mplane = j->tb * j->nr;
    for (size_t i = 0; i < nt; i++) {
        const float *px[16];
        tile_inputs(j, t0 + i, px);
        for (size_t c = 0; c < cin; c++) {
            float d[16], t[16];
            for (int q = 0; q < 16; q++) d[q] = px[q] ? px[q][c] : 0.0f;
            for (int col = 0; col < 4; col++) {
                t[col] = d[col] - d[8 + col];
                t[4 + col] = d[4 + col] + d[8 + col];
                t[8 + col] = d[8 + col] - d[4 + col];
                t[12 + col] = d[4 + col] - d[12 + col];
            }
            float *vt = v + i * j->ldv + c;
            for (int r = 0; r < 4; r++) {
                const float *tr = t + 4 * r;
                vt[(size_t)(4 * r + 0) * vplane] = tr[0] - tr[2];
                vt[(size_t)(4 * r + 1) * vplane] = tr[1] + tr[2];
                vt[(size_t)(4 * r + 2) * vplane] = tr[2] - tr[1];
                vt[(size_t)(4 * r + 3) * vplane] = tr[1] - tr[3];
            }
        }
    }
    const int pool = j->n->p.conv.pool, avg = j->n->p.conv.pool_kind == NN_POOL_AVG;
    for (size_t p = 0; p < j->panels; p++) {
        const size_t c_end = (p + 1) * j->nr < nc ? (p + 1) * j->nr : nc;
        for (int e = 0; e < NPOS; e++) {
            const float *ue = j->u + (p * NPOS + (size_t)e) * cin * j->nr;
            for (size_t i = 0; i < nt; i++) {
                const float *a = v + (size_t)e * vplane + i * j->ldv;
                float *mo = m + (size_t)e * mplane + i * j->nr;
                for (size_t c = 0; c < j->nr; c++) mo[c] = 0.0f;
                for (size_t q = 0; q < cin; q++)
                    for (size_t c = 0; c < j->nr; c++) mo[c] += a[q] * ue[q * j->nr + c];
            }
        }
        for (size_t i = 0; i < nt; i++) {
            int64_t b, ty, tx;
            tile_pos(j, t0 + i, &b, &ty, &tx);
            for (size_t c = p * j->nr; c < c_end; c++) {
                const float *mt = m + i * j->nr + (c - p * j->nr);
                float s[8], y[4];
                for (int col = 0; col < 4; col++) {
                    float m0 = mt[(size_t)col * mplane], m1 = mt[(size_t)(4 + col) * mplane];
                    float m2 = mt[(size_t)(8 + col) * mplane], m3 = mt[(size_t)(12 + col) * mplane];
                    s[col] = m0 + m1 + m2;
                    s[4 + col] = m1 - m2 - m3;
                }
                float bias = j->bias ? j->bias[c] : 0.0f;
                for (int r = 0; r < 2; r++) {
                    y[2 * r] = s[4 * r] + s[4 * r + 1] + s[4 * r + 2] + bias;
                    y[2 * r + 1] = s[4 * r + 1] - s[4 * r + 2] - s[4 * r + 3] + bias;
                }
                if (pool) {
                    float o = avg ? 0.0f : -HUGE_VALF;
                    for (int q = 0; q < 4; q++) {
                        float e = epilogue_scalar(j, y[q], c, NULL);
                        if (avg) o += e;
                        else if (e > o) o = e;
                    }
                    j->y[(size_t)((b * j->yh + ty) * j->yw + tx) * nc + c] = avg ? o * 0.25f : o;
                    continue;
                }
                for (int q = 0; q < 4; q++) {
                    int64_t oy = 2 * ty + q / 2, ox = 2 * tx + q % 2;
                    if (oy >= j->oh || ox >= j->ow) continue;
                    size_t at = (size_t)((b * j->oh + oy) * j->ow + ox) * nc + c;
                    j->y[at] = epilogue_scalar(j, y[q], c, j->res ? j->res + at : NULL);
                }
            }
        }
    }
}

/* --- driver ---------------------------------------------------------------------------------- */

/* The CPU-feature dispatch: AVX-512 where the CPU has it, unless a test asks for the portable
 * code (set before any run; see nn_wino_force_portable). */
static atomic_int force_portable;

void nn_wino_force_portable(int on)
{
    atomic_store(&force_portable, on != 0);
}

/* Worker `wk`: its slice of the scratch, blocks from the shared counter. */
static void worker(void *arg, size_t wk)
{
    wino_job *j = arg;
    float *v = j->scratch + wk * j->per_worker;
    float *m = v + NPOS * j->tb * j->ldv;
    const int avx512 = __builtin_cpu_supports("avx512f") && !atomic_load_explicit(&force_portable, memory_order_relaxed);
    for (;;) {
        size_t blk = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (blk >= j->blocks) break;
        if (avx512) block_avx512(j, blk, v, m);
        else block_scalar(j, blk, v, m);
    }
}

int nn_wino_run(const nn_graph *g, const nn_node *n, const nn_view *in, nn_view *out, struct pthreadpool *pool,
                float *scratch, size_t scratch_floats)
{
    if (!n->wino) return base_error_set(BASE_ERR_INVALID, "node %s: Winograd weights not transformed", n->name);
    const nn_conv_params *p = &n->p.conv;
    const nn_shape *xs = &in[0].shape, *ys = &out->shape, *ws = &g->tensors[n->inputs[1]].shape;
    wino_job j = {.n = n, .x = in[0].data, .y = out->data, .u = n->wino};
    j.cin = ws->dim[2];
    j.cout = ws->dim[3];
    int64_t oh = nn_window_out(xs->dim[1], 3, 1, 1, p->pad_top, p->pad_bottom);
    int64_t ow = nn_window_out(xs->dim[2], 3, 1, 1, p->pad_left, p->pad_right);
    int sc = p->pool ? 2 : 1;
    if (xs->rank != 4 || ys->rank != 4 || xs->dim[3] != j.cin || ys->dim[0] != xs->dim[0] || ys->dim[3] != j.cout ||
        oh < 1 || ow < 1 || ys->dim[1] != oh / sc || ys->dim[2] != ow / sc)
        return base_error_set(BASE_ERR_INVALID, "node %s: bad views", n->name);
    j.h = xs->dim[1];
    j.w = xs->dim[2];
    j.oh = oh;
    j.ow = ow;
    j.yh = ys->dim[1];
    j.yw = ys->dim[2];
    j.th = p->pool ? oh / 2 : (oh + 1) / 2;
    j.tw = p->pool ? ow / 2 : (ow + 1) / 2;
    if (n->n_inputs > 2 && n->inputs[2] >= 0) j.bias = in[2].data;
    if (p->residual) {
        if (n->n_inputs != 5 || !in[4].data || !nn_shape_equal(&in[4].shape, ys))
            return base_error_set(BASE_ERR_INVALID, "node %s: bad residual view", n->name);
        j.res = in[4].data;
    }
    if (p->post_affine) {
        if (n->n_inputs != 7 || !in[5].data || !in[6].data || nn_shape_numel(&in[5].shape, 1) != j.cout ||
            nn_shape_numel(&in[6].shape, 1) != j.cout)
            return base_error_set(BASE_ERR_INVALID, "node %s: bad scale and shift views", n->name);
        j.post_s = in[5].data;
        j.post_t = in[6].data;
    }
    if (conv_act(n)->kind == NN_ACT_PRELU) {
        j.slope = in[3].data;
        j.slope_scalar = nn_shape_numel(&in[3].shape, 1) == 1;
    }
    j.tiles = (size_t)(xs->dim[0] * j.th * j.tw);
    if (j.tiles == 0) return 0;
    j.nr = panel_width(j.cout);
    j.panels = ((size_t)j.cout + j.nr - 1) / j.nr;
    j.ldv = row_floats(j.cin);
    j.tb = block_tiles(j.cin, j.cout);
    j.per_worker = nn_wino_scratch_floats(g, n);
    size_t workers = pool ? pthreadpool_get_threads_count(pool) : 1;
    if (workers > scratch_floats / j.per_worker) workers = scratch_floats / j.per_worker;
    if (workers < 1 || !scratch || ((uintptr_t)scratch & 63))
        return base_error_set(BASE_ERR_INVALID, "node %s: Winograd scratch of %zu floats, %zu needed", n->name,
                              scratch_floats, j.per_worker);
    /* With several workers, blocks small enough that each gets two at least. */
    if (workers > 1) {
        size_t share = (j.tiles + 2 * workers - 1) / (2 * workers);
        share = (share + MR - 1) / MR * MR;
        if (share < j.tb) j.tb = share;
    }
    j.blocks = (j.tiles + j.tb - 1) / j.tb;
    if (workers > j.blocks) workers = j.blocks;
    j.scratch = scratch;
    atomic_init(&j.next, 0);
    if (workers > 1) pthreadpool_parallelize_1d(pool, worker, &j, workers, 0);
    else worker(&j, 0);
    return 0;
}
