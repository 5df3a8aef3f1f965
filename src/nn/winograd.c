/*
 * 3x3 stride-1 convolutions by Winograd's minimal filtering, F(2x2, 3x3) and F(4x4, 3x3).
 *
 * Why: the GEMM kernel (gemm.c) runs the face models' 3x3 layers at 245-260 GFLOP/s, about
 * this CPU's FP32 peak, so only fewer operations make them faster. F(m x m, 3x3) computes an
 * m x m block of outputs from an (m+2) x (m+2) block of inputs with (m+2)^2 multiplies per
 * input and output channel instead of 9 m^2: F(2x2) 16 instead of 36 (2.25x fewer), F(4x4)
 * 36 instead of 144 (4x fewer), at the cost of a transform of the inputs and of the outputs
 * and of weights (m+2)^2 / 9 as large.
 *
 * The algorithm (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):
 * the weights of every (Cin, Cout) pair are transformed once at load, U = G g G^T, and stored
 * as (m+2)^2 matrices U[e] of [Cin, Cout]. Per run, the output is cut into m x m tiles; each
 * tile's input patch d (zeros outside the image) becomes V = B^T d B, the positions e of all
 * tiles make (m+2)^2 independent GEMMs M[e] = V[e] U[e] ([tiles, Cin] x [Cin, Cout]), and
 * each tile's output is A^T m A plus the same epilogue as the GEMM path: bias, residual,
 * activation, scale and shift, and a fused 2x2 pooling, which pools within a tile (a tile
 * covers (m/2)^2 pooled pixels; the odd last row or column is never stored).
 *
 * Loop order: tiles in blocks sized so a block's transformed inputs ((m+2)^2 x tiles x Cin)
 * and one panel's products ((m+2)^2 x tiles x 32) stay in L2; per block, the input
 * transform, then per panel of 32 output channels the GEMMs (a 14x32 register tile as in
 * gemm.c: 28 accumulators, two weight vectors, one broadcast) and the output transform of
 * that panel. A panel's U[e] (Cin x 32) is met by every 14-tile row block of the block from
 * L1. Intra-op threads each take a slice of the per-context scratch (nn_wino_scratch_floats
 * floats per worker) and claim blocks from a shared counter.
 *
 * Numerics: F(2x2)'s transforms only add and subtract (B and A hold 0 and +-1; G halves);
 * F(4x4)'s hold 2, 4, 5 and 8 and G sixths and 24ths (applied in double at load), so its
 * rounding error is about ten times F(2x2)'s (tests/nn/test_winograd.c: 0.23 against 0.02 of
 * the 1e-4 (1 + max |ref|) bound on random data; test_golden: at most 6.6e-7 against TF.js,
 * 0.4% of the bound).
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

#define MR 14      /* tiles per register tile */
#define NR 32      /* output channels per panel (16 for layers with at most 16) */
#define MAX_POS 36 /* transformed positions of a 6x6 input tile, F(4x4, 3x3) */
/* The transformed weights start after a header of 16 floats: [0] the output tile size. */
#define HEADER 16
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

/* Tiles per block (npos = (m+2)^2 positions per tile). Where the transformed weights (npos x
 * Cin x Cout) stay in half of a 1 MB L2, one register tile's worth: its V and one panel's M
 * (npos x 14 x 32 floats) stay near L1 between the transforms and the GEMMs (F(2x2) on
 * faceapi-resnet's 17x17 64 -> 64 layers: 0.066 -> 0.053 ms against blocks of 84 tiles;
 * neutral on gear and emotion). Otherwise as many tiles as keep the block's V (npos x tb x
 * ldv) and one panel's M (npos x tb x nr) within half of L2, so each pass over the weights
 * serves more tiles; a whole number of register tiles, at most 168. */
static size_t block_tiles(int npos, int64_t cin, int64_t cout)
{
    if ((size_t)(npos * cin * cout) * sizeof(float) <= ((size_t)512 << 10)) return MR;
    size_t per_tile = (size_t)npos * (row_floats(cin) + panel_width(cout)) * sizeof(float);
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
    if (p->depthwise || p->kernel_h != 3 || p->kernel_w != 3 || p->stride_h != 1 ||
        p->stride_w != 1 || p->dilation_h != 1 || p->dilation_w != 1)
        return 0;
    if (p->pad_top < 0 || p->pad_bottom < 0 || p->pad_left < 0 || p->pad_right < 0) return 0;
    if (!nn_tensor_is_const(g, n->inputs[1])) return 0;
    for (int i = 0; i < n->n_inputs; i++)
        if (n->inputs[i] >= 0 && g->tensors[n->inputs[i]].dtype != NN_DTYPE_F32) return 0;
    const nn_shape *x = &g->tensors[n->inputs[0]].shape, *w = &g->tensors[n->inputs[1]].shape;
    if (x->rank != 4 || w->rank != 4 || w->dim[0] != 3 || w->dim[1] != 3 || x->dim[3] != w->dim[2])
        return 0;
    int64_t cin = w->dim[2], cout = w->dim[3];
    if (cin < 1 || cin > MAX_CIN || cout < 1) return 0;
    int64_t oh = nn_window_out(x->dim[1], 3, 1, 1, p->pad_top, p->pad_bottom);
    int64_t ow = nn_window_out(x->dim[2], 3, 1, 1, p->pad_left, p->pad_right);
    if (oh < 1 || ow < 1) return 0;
    if (n->n_inputs > 2 && n->inputs[2] >= 0 &&
        (!nn_tensor_is_const(g, n->inputs[2]) ||
         nn_shape_numel(&g->tensors[n->inputs[2]].shape, 1) != cout))
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

/* Output tiles per image for tile size m (pooled: the pooled map in tiles of m/2). */
static int64_t tiles_per_image(const nn_graph *g, const nn_node *n, int m)
{
    const nn_shape *x = &g->tensors[n->inputs[0]].shape;
    const nn_conv_params *p = &n->p.conv;
    int64_t oh = nn_window_out(x->dim[1], 3, 1, 1, p->pad_top, p->pad_bottom);
    int64_t ow = nn_window_out(x->dim[2], 3, 1, 1, p->pad_left, p->pad_right);
    if (p->pool) {
        int64_t q = m / 2;
        return (oh / 2 + q - 1) / q * ((ow / 2 + q - 1) / q);
    }
    return (oh + m - 1) / m * ((ow + m - 1) / m);
}

/* The output tile size chosen at load. F(4x4, 3x3) does 36 products per 16 outputs where
 * F(2x2, 3x3) does 16 per 4, but on a map that is not a multiple of 4 its last tiles are
 * partly wasted: F(4x4) where its products (36 per tile) are at most 0.65 of F(2x2)'s (16
 * per tile). Measured (bench nn --profile, fastest of 2 x 15 runs, batch 1): F(4x4) 1.33-1.64x
 * faster than F(2x2) on gear's, emotion's, antispoof's, age's and liveness's layers and
 * faceapi-resnet's 35x35 and 8x8 ones (ratios 0.56-0.64), 0.90-0.99x on faceapi-resnet's
 * 17x17 64 -> 64 (25 tiles of 4x4 for 17x17 outputs: ratio 0.69). */
static int choose_tile(const nn_graph *g, const nn_node *n)
{
    return 36 * tiles_per_image(g, n, 4) <= 0.65 * 16 * tiles_per_image(g, n, 2) ? 4 : 2;
}

int nn_wino_preferred(const nn_graph *g, const nn_node *n)
{
    if (!__builtin_cpu_supports("avx512f") || !nn_wino_supports(g, n)) return 0;
    const nn_shape *w = &g->tensors[n->inputs[1]].shape;
    int64_t cin = w->dim[2], cout = w->dim[3], tiles = tiles_per_image(g, n, 2);
    /* Measured against the GEMM (bench nn --profile, fastest of 2 x 15 runs): every layer
     * with 16 or more inputs and outputs on maps of 3x3 tiles or more gained, 1.3-2.9x with
     * F(4x4), 1.2-1.7x with F(2x2), but 16 outputs with F(2x2) (a 16-wide panel: age's and
     * liveness's 16 -> 16 lost 6-7%); lost: gender's 8 -> 8 on 60x60 (0.48x: the transforms
     * cost more than 8 x 8 products save), emotion's 256 -> 7 head on 8x8 (0.75x), age's
     * 32 -> 32 on 4x4 (4 tiles: 0.94x). */
    if (cin < 16 || cout < 16 || tiles < 9) return 0;
    return choose_tile(g, n) == 4 || cout > 16;
}

/* The transform matrices (Lavin and Gray): F(2x2, 3x3) interpolates at 0, 1, -1 and
 * infinity, F(4x4, 3x3) at 0, 1, -1, 2, -2 and infinity. */
static const double G2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
static const double G4[6][3] = {{1.0 / 4, 0, 0},
                                {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                {0, 0, 1}};
static const float BT2[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
static const float BT4[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
static const float AT2[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
static const float AT4[4][6] = {
    {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};

/* The transformed weights (after HEADER floats): per panel of nr output channels, per
 * position e of the n x n tile (n = m + 2), [Cin][nr] (zeros past Cout). U = G g G^T in
 * double, so each U is the correctly rounded value. tile: 2 or 4, 0 to choose. */
int nn_wino_pack(nn_graph *g, nn_node *n, int tile)
{
    const nn_shape *ws = &g->tensors[n->inputs[1]].shape;
    const int64_t cin = ws->dim[2], cout = ws->dim[3];
    const int m = tile ? tile : choose_tile(g, n), np = m + 2, npos = np * np;
    if (m != 2 && m != 4)
        return base_error_set(BASE_ERR_INVALID, "node %s: Winograd tile %d", n->name, m);
    const size_t nr = panel_width(cout), panels = ((size_t)cout + nr - 1) / nr;
    size_t count = HEADER + panels * (size_t)npos * (size_t)cin * nr;
    float *u = base_aligned_alloc(64, count * sizeof *u);
    if (!u) return base_error_set(BASE_ERR_NOMEM, "node %s: cannot transform weights", n->name);
    memset(u, 0, count * sizeof *u);
    u[0] = (float)m;
    const double(*G)[3] = m == 2 ? G2 : G4;
    const float *w = g->tensors[n->inputs[1]].data; /* [3][3][Cin][Cout] */
    for (int64_t k = 0; k < cin; k++)
        for (int64_t c = 0; c < cout; c++) {
            double gk[3][3], gg[6][3];
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++)
                    gk[ky][kx] = w[((ky * 3 + kx) * cin + k) * cout + c];
            for (int i = 0; i < np; i++)
                for (int kx = 0; kx < 3; kx++)
                    gg[i][kx] = G[i][0] * gk[0][kx] + G[i][1] * gk[1][kx] + G[i][2] * gk[2][kx];
            size_t p = (size_t)c / nr, col = (size_t)c % nr;
            for (int i = 0; i < np; i++)
                for (int j = 0; j < np; j++) {
                    double v = gg[i][0] * G[j][0] + gg[i][1] * G[j][1] + gg[i][2] * G[j][2];
                    u[HEADER +
                      ((p * (size_t)npos + (size_t)(i * np + j)) * (size_t)cin + (size_t)k) * nr +
                      col] = (float)v;
                }
        }
    base_aligned_free(n->wino);
    n->wino = u;
    return 0;
}

static int packed_tile(const nn_node *n)
{
    return n->wino ? (int)n->wino[0] : 0;
}

size_t nn_wino_scratch_floats(const nn_graph *g, const nn_node *n)
{
    const nn_shape *ws = &g->tensors[n->inputs[1]].shape;
    int m = packed_tile(n), npos = (m + 2) * (m + 2);
    if (!m) return 0;
    size_t tb = block_tiles(npos, ws->dim[2], ws->dim[3]);
    return (size_t)npos * tb * (row_floats(ws->dim[2]) + panel_width(ws->dim[3]));
}

/* What every worker of one run needs. */
typedef struct wino_job {
    const nn_node *n;
    const float *x; /* [N,H,W,Cin] */
    float *y;       /* [N,OH,OW,Cout], or pooled [N,OH/2,OW/2,Cout] */
    const float *u; /* transformed weights */
    const float *bias, *slope, *res, *post_s, *post_t;
    int slope_scalar;
    int64_t h, w, cin, cout, oh, ow; /* oh, ow: the convolution's output */
    int m, np, npos;                 /* output tile m x m, input tile np x np, np^2 positions */
    int64_t th, tw;                  /* tiles per image: rows, columns */
    int64_t yh, yw;                  /* the output tensor's rows and columns */
    size_t tiles, tb, ldv, nr, panels, blocks;
    /* Scratch layout: V[tile][e][ldv] and M[tile][e][nr], as strides in floats. */
    size_t v_pos, v_tile, m_pos, m_tile;
    float *scratch;
    size_t per_worker;
    atomic_size_t next;
} wino_job;

/* --- AVX-512 ----------------------------------------------------------------------------- */

/* M[e] rows [0, mr) = V[e] rows [0, mr) times U[e] (cin x nv*16) into m (row stride nr). */
__attribute__((target("avx512f"), always_inline)) static inline void
kern(int mr, int nv, const float *a, size_t lda, const float *b, size_t k, float *m, size_t nr,
     size_t ldm)
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
            _mm512_store_ps(m + (size_t)i * ldm, c0[i]);
            if (nv == 2) _mm512_store_ps(m + (size_t)i * ldm + 16, c1[i]);
        }
}

__attribute__((target("avx512f"))) static void gemm_rows(int mr, const float *a, size_t lda,
                                                         const float *b, size_t k, float *m,
                                                         size_t nr, size_t ldm)
{
    switch (mr) {
#define KERN(r)                                                                                    \
    case r:                                                                                        \
        if (nr == NR)                                                                              \
            kern(r, 2, a, lda, b, k, m, nr, ldm);                                                  \
        else                                                                                       \
            kern(r, 1, a, lda, b, k, m, nr, ldm);                                                  \
        break;
        KERN(1)
        KERN(2) KERN(3) KERN(4) KERN(5) KERN(6) KERN(7) KERN(8) KERN(9) KERN(10) KERN(11) KERN(12)
            KERN(13) KERN(14)
#undef KERN
                default : break;
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

/* The np x np input pixels of tile t (row-major), NULL where outside the image. */
static void tile_inputs(const wino_job *j, size_t t, const float *px[MAX_POS])
{
    int64_t b, ty, tx;
    tile_pos(j, t, &b, &ty, &tx);
    const nn_conv_params *p = &j->n->p.conv;
    int64_t iy0 = j->m * ty - p->pad_top, ix0 = j->m * tx - p->pad_left;
    for (int r = 0; r < j->np; r++)
        for (int c = 0; c < j->np; c++) {
            int64_t iy = iy0 + r, ix = ix0 + c;
            px[r * j->np + c] = iy < 0 || iy >= j->h || ix < 0 || ix >= j->w
                                    ? NULL
                                    : j->x + (size_t)((b * j->h + iy) * j->w + ix) * (size_t)j->cin;
        }
}

/* V = B^T d B for tiles [t0, t0 + nt) into v (V[tile][e][ldv]), F(2x2, 3x3):
 * B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]. */
__attribute__((target("avx512f"))) static void input_transform2(const wino_job *j, size_t t0,
                                                                size_t nt, float *v)
{
    const size_t cin = (size_t)j->cin, plane = j->v_pos;
    for (size_t i = 0; i < nt; i++) {
        const float *px[MAX_POS];
        tile_inputs(j, t0 + i, px);
        float *vt = v + i * j->v_tile;
        for (size_t c = 0; c < cin; c += 16) {
            __mmask16 mk = cin - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (cin - c)) - 1);
            __m512 d[16], t[16];
            for (int q = 0; q < 16; q++)
                d[q] = px[q] ? _mm512_maskz_loadu_ps(mk, px[q] + c) : _mm512_setzero_ps();
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

/* One 6-point input transform of F(4x4, 3x3) (a row of B^T applied to d0..d5). */
__attribute__((target("avx512f"), always_inline)) static inline void bt4(const __m512 d[6],
                                                                         __m512 t[6])
{
    const __m512 four = _mm512_set1_ps(4), five = _mm512_set1_ps(5), two = _mm512_set1_ps(2);
    t[0] = _mm512_fmadd_ps(four, d[0], _mm512_fnmadd_ps(five, d[2], d[4]));
    t[1] = _mm512_fnmadd_ps(four, _mm512_add_ps(d[1], d[2]), _mm512_add_ps(d[3], d[4]));
    t[2] = _mm512_fmadd_ps(four, _mm512_sub_ps(d[1], d[2]), _mm512_sub_ps(d[4], d[3]));
    t[3] = _mm512_fmadd_ps(two, _mm512_sub_ps(d[3], d[1]), _mm512_sub_ps(d[4], d[2]));
    t[4] = _mm512_fmadd_ps(two, _mm512_sub_ps(d[1], d[3]), _mm512_sub_ps(d[4], d[2]));
    t[5] = _mm512_fmadd_ps(four, d[1], _mm512_fnmadd_ps(five, d[3], d[5]));
}

/* V = B^T d B for F(4x4, 3x3): columns first into a 6x6 block on the stack, then rows. */
__attribute__((target("avx512f"))) static void input_transform4(const wino_job *j, size_t t0,
                                                                size_t nt, float *v)
{
    const size_t cin = (size_t)j->cin, plane = j->v_pos;
    for (size_t i = 0; i < nt; i++) {
        const float *px[MAX_POS];
        tile_inputs(j, t0 + i, px);
        float *vt = v + i * j->v_tile;
        for (size_t c = 0; c < cin; c += 16) {
            __mmask16 mk = cin - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (cin - c)) - 1);
            __m512 t[6][6]; /* t[r][col] */
            for (int col = 0; col < 6; col++) {
                __m512 d[6], o[6];
                for (int r = 0; r < 6; r++) {
                    const float *q = px[r * 6 + col];
                    d[r] = q ? _mm512_maskz_loadu_ps(mk, q + c) : _mm512_setzero_ps();
                }
                bt4(d, o);
                for (int r = 0; r < 6; r++)
                    t[r][col] = o[r];
            }
            for (int r = 0; r < 6; r++) {
                __m512 o[6];
                bt4(t[r], o);
                for (int k = 0; k < 6; k++)
                    _mm512_store_ps(vt + (size_t)(6 * r + k) * plane + c, o[k]);
            }
        }
    }
}

/* Bias (already in), residual, activation, scale and shift of one output vector. */
__attribute__((target("avx512f"), always_inline)) static inline __m512
epilogue(const wino_job *j, __m512 y, __mmask16 mk, size_t c, const float *r)
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

/* A tile's m x m outputs y (bias added) for channels [c, c+16) of image b from output row
 * oy0, column ox0: the epilogue, then stored, or pooled 2x2 (the max skips NaNs as the
 * reference does; the average sums in window order). Outputs past the map are dropped. */
__attribute__((target("avx512f"), always_inline)) static inline void
store_tile(const wino_job *j, __m512 *y, __mmask16 mk, size_t c, int64_t b, int64_t oy0,
           int64_t ox0)
{
    const int m = j->m;
    const size_t nc = (size_t)j->cout;
    if (j->n->p.conv.pool) {
        const int avg = j->n->p.conv.pool_kind == NN_POOL_AVG;
        for (int q = 0; q < m * m; q++)
            y[q] = epilogue(j, y[q], mk, c, NULL);
        for (int a = 0; a < m / 2; a++)
            for (int e = 0; e < m / 2; e++) {
                int64_t py = oy0 / 2 + a, px = ox0 / 2 + e;
                if (py >= j->yh || px >= j->yw) continue;
                const __m512 *w = y + 2 * a * m + 2 * e;
                __m512 v;
                if (avg) {
                    v = _mm512_mul_ps(
                        _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(w[0], w[1]), w[m]), w[m + 1]),
                        _mm512_set1_ps(0.25f));
                } else {
                    v = _mm512_set1_ps(-HUGE_VALF);
                    v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(w[0], v, _CMP_GT_OQ), w[0]);
                    v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(w[1], v, _CMP_GT_OQ), w[1]);
                    v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(w[m], v, _CMP_GT_OQ), w[m]);
                    v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(w[m + 1], v, _CMP_GT_OQ),
                                           w[m + 1]);
                }
                _mm512_mask_storeu_ps(j->y + (size_t)((b * j->yh + py) * j->yw + px) * nc + c, mk,
                                      v);
            }
        return;
    }
    for (int q = 0; q < m * m; q++) {
        int64_t oy = oy0 + q / m, ox = ox0 + q % m;
        if (oy >= j->oh || ox >= j->ow) continue;
        size_t at = (size_t)((b * j->oh + oy) * j->ow + ox) * nc + c;
        _mm512_mask_storeu_ps(j->y + at, mk, epilogue(j, y[q], mk, c, j->res ? j->res + at : NULL));
    }
}

/* Y = A^T m A for tiles [t0, t0 + nt) and panel p, from m (M[tile][e][nr]), with the
 * epilogue. F(2x2): A^T = [1 1 1 0; 0 1 -1 -1]; F(4x4): A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0;
 * 0 1 1 4 4 0; 0 1 -1 8 -8 1]. */
__attribute__((target("avx512f"))) static void output_transform(const wino_job *j, size_t t0,
                                                                size_t nt, size_t p, const float *m)
{
    const size_t plane = j->m_pos, nc = (size_t)j->cout;
    const size_t c_end = (p + 1) * j->nr < nc ? (p + 1) * j->nr : nc;
    const int np = j->np;
    const __m512 two = _mm512_set1_ps(2), four = _mm512_set1_ps(4), eight = _mm512_set1_ps(8);
    for (size_t i = 0; i < nt; i++) {
        int64_t b, ty, tx;
        tile_pos(j, t0 + i, &b, &ty, &tx);
        const float *mt = m + i * j->m_tile;
        for (size_t c = p * j->nr; c < c_end; c += 16) {
            __mmask16 mk =
                c_end - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (c_end - c)) - 1);
            const size_t lc = c - p * j->nr;
            __m512 bias = j->bias ? _mm512_maskz_loadu_ps(mk, j->bias + c) : _mm512_setzero_ps();
            __m512 y[16];
            if (j->m == 2) {
                __m512 s[8];
                for (int col = 0; col < 4; col++) {
                    __m512 m0 = _mm512_load_ps(mt + (size_t)(0 + col) * plane + lc);
                    __m512 m1 = _mm512_load_ps(mt + (size_t)(4 + col) * plane + lc);
                    __m512 m2 = _mm512_load_ps(mt + (size_t)(8 + col) * plane + lc);
                    __m512 m3 = _mm512_load_ps(mt + (size_t)(12 + col) * plane + lc);
                    s[col] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
                    s[4 + col] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
                }
                for (int r = 0; r < 2; r++) {
                    const __m512 *sr = s + 4 * r;
                    y[2 * r] =
                        _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(sr[0], sr[1]), sr[2]), bias);
                    y[2 * r + 1] =
                        _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(sr[1], sr[2]), sr[3]), bias);
                }
            } else {
                __m512 s[4][6]; /* A^T m: s[row][col] */
                for (int col = 0; col < np; col++) {
                    __m512 mm[6];
                    for (int r = 0; r < 6; r++)
                        mm[r] = _mm512_load_ps(mt + (size_t)(r * 6 + col) * plane + lc);
                    __m512 a = _mm512_add_ps(mm[1], mm[2]), d = _mm512_sub_ps(mm[1], mm[2]);
                    __m512 e = _mm512_add_ps(mm[3], mm[4]), f = _mm512_sub_ps(mm[3], mm[4]);
                    s[0][col] = _mm512_add_ps(_mm512_add_ps(mm[0], a), e);
                    s[1][col] = _mm512_fmadd_ps(two, f, d);
                    s[2][col] = _mm512_fmadd_ps(four, e, a);
                    s[3][col] = _mm512_add_ps(_mm512_fmadd_ps(eight, f, d), mm[5]);
                }
                for (int r = 0; r < 4; r++) {
                    const __m512 *mm = s[r];
                    __m512 a = _mm512_add_ps(mm[1], mm[2]), d = _mm512_sub_ps(mm[1], mm[2]);
                    __m512 e = _mm512_add_ps(mm[3], mm[4]), f = _mm512_sub_ps(mm[3], mm[4]);
                    y[4 * r + 0] = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(mm[0], a), e), bias);
                    y[4 * r + 1] = _mm512_add_ps(_mm512_fmadd_ps(two, f, d), bias);
                    y[4 * r + 2] = _mm512_add_ps(_mm512_fmadd_ps(four, e, a), bias);
                    y[4 * r + 3] =
                        _mm512_add_ps(_mm512_add_ps(_mm512_fmadd_ps(eight, f, d), mm[5]), bias);
                }
            }
            store_tile(j, y, mk, c, b, j->m * ty, j->m * tx);
        }
    }
}

__attribute__((target("avx512f"))) static void block_avx512(const wino_job *j, size_t blk, float *v,
                                                            float *m)
{
    const size_t t0 = blk * j->tb, nt = j->tiles - t0 < j->tb ? j->tiles - t0 : j->tb;
    const size_t cin = (size_t)j->cin;
    if (j->m == 2)
        input_transform2(j, t0, nt, v);
    else
        input_transform4(j, t0, nt, v);
    for (size_t p = 0; p < j->panels; p++) {
        const float *up = j->u + p * (size_t)j->npos * cin * j->nr;
        for (int e = 0; e < j->npos; e++) {
            const float *ue = up + (size_t)e * cin * j->nr;
            const float *ve = v + (size_t)e * j->v_pos;
            float *me = m + (size_t)e * j->m_pos;
            for (size_t i0 = 0; i0 < nt; i0 += MR) {
                int mr = nt - i0 < MR ? (int)(nt - i0) : MR;
                gemm_rows(mr, ve + i0 * j->v_tile, j->v_tile, ue, cin, me + i0 * j->m_tile, j->nr,
                          j->m_tile);
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
        float s = act->kind == NN_ACT_LEAKY ? act->alpha
                  : j->slope_scalar         ? j->slope[0]
                                            : j->slope[c];
        if (y < 0) y *= s;
    }
    if (j->post_s) {
        const float sv = y * j->post_s[c]; /* not contracted into an FMA (C17: no contraction) */
        y = sv + j->post_t[c];
    }
    return y;
}

/* The same block with the transforms as plain matrix products (B^T, A^T above). */
static void block_scalar(const wino_job *j, size_t blk, float *v, float *m)
{
    const size_t t0 = blk * j->tb, nt = j->tiles - t0 < j->tb ? j->tiles - t0 : j->tb;
    const size_t cin = (size_t)j->cin, nc = (size_t)j->cout;
    const size_t vplane = j->v_pos, mplane = j->m_pos;
    const int n = j->np, mo = j->m;
    const float *bt = j->m == 2 ? &BT2[0][0] : &BT4[0][0],
                *at = j->m == 2 ? &AT2[0][0] : &AT4[0][0];
    for (size_t i = 0; i < nt; i++) {
        const float *px[MAX_POS];
        tile_inputs(j, t0 + i, px);
        for (size_t c = 0; c < cin; c++) {
            float d[MAX_POS], t[MAX_POS];
            for (int q = 0; q < n * n; q++)
                d[q] = px[q] ? px[q][c] : 0.0f;
            for (int r = 0; r < n; r++) /* t = B^T d */
                for (int col = 0; col < n; col++) {
                    float acc = 0;
                    for (int k = 0; k < n; k++)
                        acc += bt[r * n + k] * d[k * n + col];
                    t[r * n + col] = acc;
                }
            for (int r = 0; r < n; r++) /* V = t B */
                for (int col = 0; col < n; col++) {
                    float acc = 0;
                    for (int k = 0; k < n; k++)
                        acc += t[r * n + k] * bt[col * n + k];
                    v[(size_t)(r * n + col) * vplane + i * j->v_tile + c] = acc;
                }
        }
    }
    const int pool = j->n->p.conv.pool, avg = j->n->p.conv.pool_kind == NN_POOL_AVG;
    for (size_t p = 0; p < j->panels; p++) {
        const size_t c_end = (p + 1) * j->nr < nc ? (p + 1) * j->nr : nc;
        for (int e = 0; e < j->npos; e++) {
            const float *ue = j->u + (p * (size_t)j->npos + (size_t)e) * cin * j->nr;
            for (size_t i = 0; i < nt; i++) {
                const float *a = v + (size_t)e * vplane + i * j->v_tile;
                float *mrow = m + (size_t)e * mplane + i * j->m_tile;
                for (size_t c = 0; c < j->nr; c++)
                    mrow[c] = 0.0f;
                for (size_t q = 0; q < cin; q++)
                    for (size_t c = 0; c < j->nr; c++)
                        mrow[c] += a[q] * ue[q * j->nr + c];
            }
        }
        for (size_t i = 0; i < nt; i++) {
            int64_t b, ty, tx;
            tile_pos(j, t0 + i, &b, &ty, &tx);
            for (size_t c = p * j->nr; c < c_end; c++) {
                const float *mt = m + i * j->m_tile + (c - p * j->nr);
                float s[4 * 6], y[16];
                for (int r = 0; r < mo; r++) /* s = A^T m */
                    for (int col = 0; col < n; col++) {
                        float acc = 0;
                        for (int k = 0; k < n; k++)
                            acc += at[r * n + k] * mt[(size_t)(k * n + col) * mplane];
                        s[r * n + col] = acc;
                    }
                float bias = j->bias ? j->bias[c] : 0.0f;
                for (int r = 0; r < mo; r++) /* y = s A */
                    for (int col = 0; col < mo; col++) {
                        float acc = 0;
                        for (int k = 0; k < n; k++)
                            acc += s[r * n + k] * at[col * n + k];
                        y[r * mo + col] = acc + bias;
                    }
                if (pool) {
                    for (int q = 0; q < mo * mo; q++)
                        y[q] = epilogue_scalar(j, y[q], c, NULL);
                    for (int a = 0; a < mo / 2; a++)
                        for (int e = 0; e < mo / 2; e++) {
                            int64_t py = mo * ty / 2 + a, pxx = mo * tx / 2 + e;
                            if (py >= j->yh || pxx >= j->yw) continue;
                            const float *w = y + 2 * a * mo + 2 * e;
                            float o;
                            if (avg) {
                                o = (((w[0] + w[1]) + w[mo]) + w[mo + 1]) * 0.25f;
                            } else {
                                o = -HUGE_VALF;
                                if (w[0] > o) o = w[0];
                                if (w[1] > o) o = w[1];
                                if (w[mo] > o) o = w[mo];
                                if (w[mo + 1] > o) o = w[mo + 1];
                            }
                            j->y[(size_t)((b * j->yh + py) * j->yw + pxx) * nc + c] = o;
                        }
                    continue;
                }
                for (int q = 0; q < mo * mo; q++) {
                    int64_t oy = mo * ty + q / mo, ox = mo * tx + q % mo;
                    if (oy >= j->oh || ox >= j->ow) continue;
                    size_t at_ = (size_t)((b * j->oh + oy) * j->ow + ox) * nc + c;
                    j->y[at_] = epilogue_scalar(j, y[q], c, j->res ? j->res + at_ : NULL);
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
    float *m = v + (size_t)j->npos * j->tb * j->ldv;
    const int avx512 = __builtin_cpu_supports("avx512f") &&
                       !atomic_load_explicit(&force_portable, memory_order_relaxed);
    for (;;) {
        size_t blk = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (blk >= j->blocks) break;
        if (avx512)
            block_avx512(j, blk, v, m);
        else
            block_scalar(j, blk, v, m);
    }
}

int nn_wino_run(const nn_graph *g, const nn_node *n, const nn_view *in, nn_view *out,
                struct pthreadpool *pool, float *scratch, size_t scratch_floats)
{
    if (!n->wino)
        return base_error_set(BASE_ERR_INVALID, "node %s: Winograd weights not transformed",
                              n->name);
    const nn_conv_params *p = &n->p.conv;
    const nn_shape *xs = &in[0].shape, *ys = &out->shape, *ws = &g->tensors[n->inputs[1]].shape;
    wino_job j = {.n = n, .x = in[0].data, .y = out->data, .u = n->wino + HEADER};
    j.m = packed_tile(n);
    j.np = j.m + 2;
    j.npos = j.np * j.np;
    j.cin = ws->dim[2];
    j.cout = ws->dim[3];
    int64_t oh = nn_window_out(xs->dim[1], 3, 1, 1, p->pad_top, p->pad_bottom);
    int64_t ow = nn_window_out(xs->dim[2], 3, 1, 1, p->pad_left, p->pad_right);
    int sc = p->pool ? 2 : 1;
    if (xs->rank != 4 || ys->rank != 4 || xs->dim[3] != j.cin || ys->dim[0] != xs->dim[0] ||
        ys->dim[3] != j.cout || oh < 1 || ow < 1 || ys->dim[1] != oh / sc || ys->dim[2] != ow / sc)
        return base_error_set(BASE_ERR_INVALID, "node %s: bad views", n->name);
    j.h = xs->dim[1];
    j.w = xs->dim[2];
    j.oh = oh;
    j.ow = ow;
    j.yh = ys->dim[1];
    j.yw = ys->dim[2];
    /* Tiles cover the output (pooled: the pooled map, m / 2 pooled pixels per tile side). */
    int64_t span = p->pool ? j.m / 2 : j.m;
    j.th = (j.yh + span - 1) / span;
    j.tw = (j.yw + span - 1) / span;
    if (n->n_inputs > 2 && n->inputs[2] >= 0) j.bias = in[2].data;
    if (p->residual) {
        if (n->n_inputs != 5 || !in[4].data || !nn_shape_equal(&in[4].shape, ys))
            return base_error_set(BASE_ERR_INVALID, "node %s: bad residual view", n->name);
        j.res = in[4].data;
    }
    if (p->post_affine) {
        if (n->n_inputs != 7 || !in[5].data || !in[6].data ||
            nn_shape_numel(&in[5].shape, 1) != j.cout || nn_shape_numel(&in[6].shape, 1) != j.cout)
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
    j.tb = block_tiles(j.npos, j.cin, j.cout);
    j.per_worker = nn_wino_scratch_floats(g, n);
    size_t workers = pool ? pthreadpool_get_threads_count(pool) : 1;
    if (workers > scratch_floats / j.per_worker) workers = scratch_floats / j.per_worker;
    if (workers < 1 || !scratch || ((uintptr_t)scratch & 63))
        return base_error_set(BASE_ERR_INVALID,
                              "node %s: Winograd scratch of %zu floats, %zu needed", n->name,
                              scratch_floats, j.per_worker);
    /* With several workers, blocks small enough that each gets two at least. */
    if (workers > 1) {
        size_t share = (j.tiles + 2 * workers - 1) / (2 * workers);
        share = (share + MR - 1) / MR * MR;
        if (share < j.tb) j.tb = share;
    }
    j.blocks = (j.tiles + j.tb - 1) / j.tb;
    /* Tile-major scratch: a tile's transformed inputs and its products lie together, so each
     * transform reads or writes one contiguous (m+2)^2 x 16-float span per tile instead of
     * (m+2)^2 lines a block apart (gear's layers 5-10% faster at batch 1 than position-major;
     * the GEMM reads rows npos x ldv apart either way). */
    j.v_pos = j.ldv;
    j.v_tile = (size_t)j.npos * j.ldv;
    j.m_pos = j.nr;
    j.m_tile = (size_t)j.npos * j.nr;
    if (workers > j.blocks) workers = j.blocks;
    j.scratch = scratch;
    atomic_init(&j.next, 0);
    if (workers > 1)
        pthreadpool_parallelize_1d(pool, worker, &j, workers, 0);
    else
        worker(&j, 0);
    return 0;
}
