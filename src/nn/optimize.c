/*
 * Graph optimisation. Every rewrite keeps the graph's meaning exactly (up to float rounding):
 *
 *   conv/fc (no activation) -> Add/Sub of a per-channel constant   => bias
 *   conv/fc (no activation) -> Mul of a per-channel constant       => scaled weights and bias
 *   conv/fc/binary          -> Relu, Relu6, Minimum/Maximum(scalar) => fused clamp
 *   conv/fc                 -> PReLU, LeakyRelu                     => fused activation
 *   Relu(x) + c * (x - |x|)                                         => PReLU(x, 2c)
 *   identities and reshapes to the same shape                       => removed
 *   nodes whose result nobody reads                                 => removed
 *
 * Constant arithmetic is folded at import (see import_tfjs.c). A rewrite is applied only when
 * the intermediate tensor has a single reader and is not a graph output, so nothing observable
 * changes.
 */
#include "base/base.h"
#include "nn/graph.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct opt {
    nn_graph *g;
    int *readers; /* per tensor: number of node inputs reading it, +1000 per graph output use */
    int cap_readers;
    char *dead; /* per node */
} opt;

/* Rewrites add constants, so the table grows with the graph. */
static int count_readers(opt *o)
{
    nn_graph *g = o->g;
    if (g->n_tensors > o->cap_readers) {
        int *r = realloc(o->readers, (size_t)g->n_tensors * 2 * sizeof *r);
        if (!r) return base_error_set(BASE_ERR_NOMEM, "optimise");
        o->readers = r;
        o->cap_readers = g->n_tensors * 2;
    }
    memset(o->readers, 0, (size_t)g->n_tensors * sizeof *o->readers);
    for (int i = 0; i < g->n_nodes; i++) {
        if (o->dead[i]) continue;
        for (int k = 0; k < g->nodes[i].n_inputs; k++)
            if (g->nodes[i].inputs[k] >= 0) o->readers[g->nodes[i].inputs[k]]++;
    }
    for (int k = 0; k < g->n_outputs; k++)
        o->readers[g->outputs[k]] += 1000;
    return 0;
}

/* The single live node reading tensor t, or -1. */
static int sole_reader(const opt *o, int t)
{
    if (o->readers[t] != 1) return -1;
    const nn_graph *g = o->g;
    for (int i = 0; i < g->n_nodes; i++) {
        if (o->dead[i]) continue;
        for (int k = 0; k < g->nodes[i].n_inputs; k++)
            if (g->nodes[i].inputs[k] == t) return i;
    }
    return -1;
}

/* Node `keep` takes over node `gone`'s output tensor; `gone` dies. */
static void absorb(opt *o, int keep, int gone)
{
    nn_graph *g = o->g;
    int t = g->nodes[gone].output;
    g->nodes[keep].output = t;
    g->tensors[t].producer = keep;
    o->dead[gone] = 1;
}

/* A constant that is one value per channel of an output with `channels` channels, shaped so
 * that broadcasting it changes nothing: [C], [1,C], [1,1,1,C], ... */
static const float *per_channel_const(const nn_graph *g, int t, int64_t channels)
{
    if (!nn_tensor_is_const(g, t) || g->tensors[t].dtype != NN_DTYPE_F32) return NULL;
    const nn_shape *s = &g->tensors[t].shape;
    if (s->rank < 1 || s->dim[s->rank - 1] != channels || nn_shape_numel(s, 1) != channels)
        return NULL;
    return g->tensors[t].data;
}

static const float *scalar_const(const nn_graph *g, int t)
{
    if (!nn_tensor_is_const(g, t) || g->tensors[t].dtype != NN_DTYPE_F32) return NULL;
    return nn_shape_numel(&g->tensors[t].shape, 1) == 1 ? g->tensors[t].data : NULL;
}

static int64_t out_channels(const nn_graph *g, const nn_node *n)
{
    const nn_shape *s = &g->tensors[n->output].shape;
    return s->dim[s->rank - 1];
}

/* Adds a new constant [count] with the given data; returns its index. */
static int new_const(nn_graph *g, const char *base, const char *suffix, const float *data,
                     int64_t count)
{
    char name[600];
    snprintf(name, sizeof name, "%s/%s", base, suffix);
    nn_shape s = {1, {count}};
    return nn_graph_add_const(g, name, NN_DTYPE_F32, &s, data);
}

static nn_act *node_act(nn_node *n)
{
    if (n->op == NN_OP_CONV2D) return &n->p.conv.act;
    if (n->op == NN_OP_FULLY_CONNECTED) return &n->p.fc.act;
    if (n->op == NN_OP_BINARY) return &n->p.binary.act;
    return NULL;
}

/* conv/fc followed by a per-channel Add, Sub or Mul: fold it into the weights. */
static int fold_affine(opt *o, int i, int *changed)
{
    nn_graph *g = o->g;
    nn_node *n = &g->nodes[i];
    if ((n->op != NN_OP_CONV2D && n->op != NN_OP_FULLY_CONNECTED) ||
        node_act(n)->kind != NN_ACT_NONE)
        return 0;
    if (n->op == NN_OP_CONV2D && n->p.conv.residual) return 0; /* the residual is not scaled */
    int r = sole_reader(o, n->output);
    if (r < 0) return 0;
    nn_node *c = &g->nodes[r];
    if (c->op != NN_OP_BINARY || c->p.binary.act.kind != NN_ACT_NONE) return 0;
    nn_binary_kind kind = c->p.binary.kind;
    if (kind != NN_BINARY_ADD && kind != NN_BINARY_SUB && kind != NN_BINARY_MUL) return 0;
    int other = c->inputs[0] == n->output ? c->inputs[1] : c->inputs[0];
    if (kind == NN_BINARY_SUB && c->inputs[0] != n->output) return 0; /* c - x is not a bias */
    int64_t C = out_channels(g, n);
    const float *k = per_channel_const(g, other, C);
    if (!k || !nn_shape_equal(&g->tensors[c->output].shape, &g->tensors[n->output].shape)) return 0;

    float *bias = malloc((size_t)C * sizeof *bias);
    if (!bias) return base_error_set(BASE_ERR_NOMEM, "optimise");
    if (n->inputs[2] >= 0)
        memcpy(bias, g->tensors[n->inputs[2]].data, (size_t)C * sizeof *bias);
    else
        memset(bias, 0, (size_t)C * sizeof *bias);
    int rc = 0;
    if (kind == NN_BINARY_MUL) {
        const nn_tensor *wt = &g->tensors[n->inputs[1]];
        int64_t count = nn_shape_numel(&wt->shape, 1);
        float *w = base_aligned_alloc(64, (size_t)count * sizeof *w);
        if (!w) {
            free(bias);
            return base_error_set(BASE_ERR_NOMEM, "optimise");
        }
        /* The output channel is the fastest-varying index of all three filter layouts. */
        const float *src = wt->data;
        for (int64_t j = 0; j < count; j++)
            w[j] = src[j] * k[j % C];
        for (int64_t j = 0; j < C; j++)
            bias[j] *= k[j];
        char name[600];
        snprintf(name, sizeof name, "%s/scaled", n->name);
        nn_shape ws = wt->shape;
        int wi = nn_graph_add_const(g, name, NN_DTYPE_F32, &ws, w);
        base_aligned_free(w);
        if (wi < 0)
            rc = wi;
        else
            g->nodes[i].inputs[1] = wi;
    } else {
        for (int64_t j = 0; j < C; j++)
            bias[j] += kind == NN_BINARY_ADD ? k[j] : -k[j];
    }
    if (!rc) {
        int bi = new_const(g, g->nodes[i].name, "bias", bias, C);
        if (bi < 0)
            rc = bi;
        else
            g->nodes[i].inputs[2] = bi;
    }
    free(bias);
    if (rc) return rc;
    if (g->nodes[i].n_inputs < 3) g->nodes[i].n_inputs = 3;
    absorb(o, i, r);
    (*changed)++;
    return 0;
}

/* An op with a fusable activation slot followed by Relu/Relu6/Min/Max(scalar)/PReLU/Leaky. */
static int fold_activation(opt *o, int i, int *changed)
{
    nn_graph *g = o->g;
    nn_node *n = &g->nodes[i];
    nn_act *act = node_act(n);
    int is_clamp_unary = n->op == NN_OP_UNARY && n->p.unary.kind == NN_UNARY_CLAMP;
    if (!act && !is_clamp_unary) return 0;
    int r = sole_reader(o, n->output);
    if (r < 0) return 0;
    nn_node *c = &g->nodes[r];
    nn_act cur = act ? *act : (nn_act){NN_ACT_CLAMP, n->p.unary.lo, n->p.unary.hi, 0};
    if (cur.kind != NN_ACT_NONE && cur.kind != NN_ACT_CLAMP) return 0;
    if (cur.kind == NN_ACT_NONE) cur = (nn_act){NN_ACT_CLAMP, -INFINITY, INFINITY, 0};
    int is_prelu = 0, prelu_slope = -1;
    if (c->op == NN_OP_UNARY && c->p.unary.kind == NN_UNARY_CLAMP) {
        cur.lo = fmaxf(cur.lo, c->p.unary.lo);
        cur.hi = fminf(cur.hi, c->p.unary.hi);
    } else if (c->op == NN_OP_BINARY && c->p.binary.act.kind == NN_ACT_NONE &&
               (c->p.binary.kind == NN_BINARY_MIN || c->p.binary.kind == NN_BINARY_MAX) &&
               nn_shape_equal(&g->tensors[c->output].shape, &g->tensors[n->output].shape)) {
        int other = c->inputs[0] == n->output ? c->inputs[1] : c->inputs[0];
        const float *k = scalar_const(g, other);
        if (!k) return 0;
        if (c->p.binary.kind == NN_BINARY_MIN)
            cur.hi = fminf(cur.hi, *k);
        else
            cur.lo = fmaxf(cur.lo, *k);
    } else if (act && act->kind == NN_ACT_NONE && n->op != NN_OP_BINARY && c->op == NN_OP_PRELU &&
               c->inputs[0] == n->output &&
               per_channel_const(g, c->inputs[1], out_channels(g, n))) {
        is_prelu = 1;
        prelu_slope = c->inputs[1];
    } else if (act && act->kind == NN_ACT_NONE && c->op == NN_OP_UNARY &&
               c->p.unary.kind == NN_UNARY_LEAKY && n->op != NN_OP_BINARY) {
        act->kind = NN_ACT_LEAKY;
        act->alpha = c->p.unary.alpha;
        absorb(o, i, r);
        (*changed)++;
        return 0;
    } else {
        return 0;
    }
    if (is_prelu) {
        act->kind = NN_ACT_PRELU;
        n->inputs[3] = prelu_slope;
        n->n_inputs = 4;
        if (n->inputs[2] < -1) n->inputs[2] = -1;
    } else if (act) {
        *act = cur;
    } else {
        n->p.unary.lo = cur.lo;
        n->p.unary.hi = cur.hi;
    }
    absorb(o, i, r);
    (*changed)++;
    return 0;
}

/* Relu(x) + c * (x - |x|)  ==  x >= 0 ? x : 2c * x  (the "abs form" of PReLU). */
static int fold_abs_prelu(opt *o, int i, int *changed)
{
    nn_graph *g = o->g;
    nn_node *add = &g->nodes[i];
    if (add->op != NN_OP_BINARY || add->p.binary.kind != NN_BINARY_ADD ||
        add->p.binary.act.kind != NN_ACT_NONE)
        return 0;
    for (int side = 0; side < 2; side++) {
        int tr = add->inputs[side], tm = add->inputs[1 - side];
        int pr = g->tensors[tr].producer, pm = g->tensors[tm].producer;
        if (pr < 0 || pm < 0 || o->dead[pr] || o->dead[pm]) continue;
        nn_node *relu = &g->nodes[pr], *mul = &g->nodes[pm];
        if (mul->op != NN_OP_BINARY || mul->p.binary.kind != NN_BINARY_MUL ||
            mul->p.binary.act.kind)
            continue;
        int x;
        /* The TF.js converter sometimes fuses the Relu into the convolution that feeds the whole
         * pattern: then x >= 0, x - |x| == 0, and the pattern is x itself. */
        const nn_act *xact = node_act(relu);
        int nonneg = xact && xact->kind == NN_ACT_CLAMP && xact->lo >= 0.0f;
        if (relu->op == NN_OP_UNARY && relu->p.unary.kind == NN_UNARY_CLAMP &&
            relu->p.unary.lo == 0.0f && isinf(relu->p.unary.hi))
            x = relu->inputs[0];
        else if (nonneg)
            x = tr;
        else
            continue;
        int64_t C = g->tensors[x].shape.dim[g->tensors[x].shape.rank - 1];
        int ts = -1;
        const float *k = NULL;
        for (int s = 0; s < 2; s++) {
            const float *kk = per_channel_const(g, mul->inputs[1 - s], C);
            if (!kk) kk = scalar_const(g, mul->inputs[1 - s]);
            if (kk) {
                k = kk;
                ts = mul->inputs[s];
            }
        }
        if (!k || g->tensors[ts].producer < 0) continue;
        int psub = g->tensors[ts].producer;
        nn_node *sub = &g->nodes[psub];
        if (sub->op != NN_OP_BINARY || sub->p.binary.kind != NN_BINARY_SUB || sub->inputs[0] != x)
            continue;
        int pabs = g->tensors[sub->inputs[1]].producer;
        if (pabs < 0) continue;
        nn_node *ab = &g->nodes[pabs];
        if (ab->op != NN_OP_UNARY || ab->p.unary.kind != NN_UNARY_ABS || ab->inputs[0] != x)
            continue;
        if (x == tr) {
            /* Identity: readers of the sum read x; the pattern dies. */
            if (o->readers[tm] != 1 || o->readers[ts] != 1 || o->readers[ab->output] != 1) continue;
            add->op = NN_OP_UNARY;
            add->p.unary = (nn_unary_params){NN_UNARY_IDENTITY, 0, 0, 0};
            add->inputs[0] = x;
            add->n_inputs = 1;
            o->dead[pm] = o->dead[psub] = o->dead[pabs] = 1;
            (*changed)++;
            return 0;
        }
        if (o->readers[tr] != 1 || o->readers[tm] != 1 || o->readers[ts] != 1 ||
            o->readers[ab->output] != 1)
            continue;
        if (!nn_shape_equal(&g->tensors[add->output].shape, &g->tensors[x].shape)) continue;
        int scalar =
            nn_shape_numel(
                &g->tensors[mul->inputs[0] == ts ? mul->inputs[1] : mul->inputs[0]].shape, 1) == 1;
        float *slope = malloc((size_t)C * sizeof *slope);
        if (!slope) return base_error_set(BASE_ERR_NOMEM, "optimise");
        for (int64_t j = 0; j < C; j++)
            slope[j] = 2.0f * k[scalar ? 0 : j];
        int si = new_const(g, add->name, "prelu_slope", slope, C);
        free(slope);
        if (si < 0) return si;
        add = &g->nodes[i]; /* the node array is stable, but re-read after adding tensors */
        add->op = NN_OP_PRELU;
        add->inputs[0] = x;
        add->inputs[1] = si;
        add->n_inputs = 2;
        o->dead[pr] = o->dead[pm] = o->dead[psub] = o->dead[pabs] = 1;
        (*changed)++;
        return 0;
    }
    return 0;
}

/* Zero padding of H and W in front of a convolution becomes the convolution's own padding
 * (Keras ZeroPadding2D + VALID conv, as in the facemesh detector). */
static int fold_pad(opt *o, int i, int *changed)
{
    nn_graph *g = o->g;
    nn_node *n = &g->nodes[i];
    if (n->op != NN_OP_PAD || n->p.pad.value != 0.0f) return 0;
    const nn_shape *xs = &g->tensors[n->inputs[0]].shape;
    if (xs->rank != 4 || n->p.pad.before[3] || n->p.pad.after[3] ||
        nn_tensor_is_const(g, n->inputs[0]))
        return 0;
    int r = sole_reader(o, n->output);
    if (r < 0 || g->nodes[r].op != NN_OP_CONV2D || g->nodes[r].inputs[0] != n->output) return 0;
    nn_conv_params *c = &g->nodes[r].p.conv;
    if (n->p.pad.before[1] > 1024 || n->p.pad.after[1] > 1024 || n->p.pad.before[2] > 1024 ||
        n->p.pad.after[2] > 1024)
        return 0;
    c->pad_top += (int)n->p.pad.before[1];
    c->pad_bottom += (int)n->p.pad.after[1];
    c->pad_left += (int)n->p.pad.before[2];
    c->pad_right += (int)n->p.pad.after[2];
    g->nodes[r].inputs[0] = n->inputs[0];
    o->dead[i] = 1;
    (*changed)++;
    return 0;
}

/* max(clamp(x)) == clamp(max(x)): a Relu after a max pool moves before it, where it fuses into
 * the op that feeds the pool (Keras' Conv -> MaxPool -> Activation). */
static int hoist_clamp_over_pool(opt *o, int i, int *changed)
{
    nn_graph *g = o->g;
    nn_node *pool = &g->nodes[i];
    if (pool->op != NN_OP_POOL || pool->p.pool.kind != NN_POOL_MAX) return 0;
    int src = g->tensors[pool->inputs[0]].producer;
    if (src < 0 || o->dead[src] || o->readers[pool->inputs[0]] != 1) return 0;
    nn_act *act = node_act(&g->nodes[src]);
    if (!act || act->kind != NN_ACT_NONE) return 0;
    int r = sole_reader(o, pool->output);
    if (r < 0) return 0;
    nn_node *c = &g->nodes[r];
    if (c->op != NN_OP_UNARY || c->p.unary.kind != NN_UNARY_CLAMP) return 0;
    *act = (nn_act){NN_ACT_CLAMP, c->p.unary.lo, c->p.unary.hi, 0};
    absorb(o, i, r);
    (*changed)++;
    return 0;
}

/*
 * A per-channel affine map (BatchNorm after an activation: x * a + b) in front of a
 * convolution without padding folds into that convolution's weights and bias:
 *   W' = W * a (per input channel),  bias' = bias + sum over the window of W * b.
 * A max pool in between commutes with the map when every a > 0; an average pool always does.
 * Zero padding would be mapped too (0 -> b), so only unpadded convolutions qualify.
 */
static int fold_affine_forward(opt *o, int i, int *changed)
{
    nn_graph *g = o->g;
    nn_node *n = &g->nodes[i];
    if (n->op != NN_OP_BINARY || n->p.binary.act.kind != NN_ACT_NONE) return 0;
    if (n->p.binary.kind != NN_BINARY_MUL && n->p.binary.kind != NN_BINARY_ADD) return 0;
    int x = n->inputs[0];
    if (nn_tensor_is_const(g, x)) x = n->inputs[1];
    int kc = x == n->inputs[0] ? n->inputs[1] : n->inputs[0];
    const nn_shape *xs = &g->tensors[x].shape;
    if (xs->rank != 4 || !nn_shape_equal(xs, &g->tensors[n->output].shape)) return 0;
    int64_t C = xs->dim[3];
    const float *k = per_channel_const(g, kc, C);
    if (!k) return 0;
    int mul_node = n->p.binary.kind == NN_BINARY_MUL ? i : -1, add_node = -1;
    const float *a = mul_node >= 0 ? k : NULL, *b = mul_node >= 0 ? NULL : k;
    int last = i;
    int r = sole_reader(o, n->output);
    if (r < 0) return 0;
    if (mul_node >= 0 && g->nodes[r].op == NN_OP_BINARY &&
        g->nodes[r].p.binary.kind == NN_BINARY_ADD &&
        g->nodes[r].p.binary.act.kind == NN_ACT_NONE) {
        nn_node *an = &g->nodes[r];
        int other = an->inputs[0] == n->output ? an->inputs[1] : an->inputs[0];
        const float *bb = per_channel_const(g, other, C);
        if (bb && nn_shape_equal(&g->tensors[an->output].shape, xs)) {
            b = bb;
            add_node = r;
            last = r;
            r = sole_reader(o, an->output);
            if (r < 0) return 0;
        }
    }
    if (mul_node < 0) add_node = i;
    int pool = -1;
    if (g->nodes[r].op == NN_OP_POOL) {
        if (g->nodes[r].p.pool.kind == NN_POOL_MAX && a)
            for (int64_t c = 0; c < C; c++)
                if (!(a[c] > 0)) return 0;
        pool = r;
        r = sole_reader(o, g->nodes[pool].output);
        if (r < 0) return 0;
    }
    nn_node *conv = &g->nodes[r];
    int feed = pool >= 0 ? g->nodes[pool].output : g->nodes[last].output;
    if (conv->op != NN_OP_CONV2D || conv->inputs[0] != feed) return 0;
    const nn_conv_params *p = &conv->p.conv;
    if (p->pad_top || p->pad_bottom || p->pad_left || p->pad_right) return 0;
    const nn_tensor *wt = &g->tensors[conv->inputs[1]];
    int64_t KH = wt->shape.dim[0], KW = wt->shape.dim[1], CI = wt->shape.dim[2],
            M = wt->shape.dim[3];
    if (CI != C) return 0;
    int64_t cout = p->depthwise ? C * M : M, count = KH * KW * CI * M;
    float *w = base_aligned_alloc(64, (size_t)count * sizeof *w);
    float *bias = malloc((size_t)cout * sizeof *bias);
    if (!w || !bias) {
        base_aligned_free(w);
        free(bias);
        return base_error_set(BASE_ERR_NOMEM, "optimise");
    }
    const float *src = wt->data;
    if (conv->inputs[2] >= 0)
        memcpy(bias, g->tensors[conv->inputs[2]].data, (size_t)cout * sizeof *bias);
    else
        memset(bias, 0, (size_t)cout * sizeof *bias);
    for (int64_t j = 0; j < count; j++) {
        int64_t ci = (j / M) % CI, m = j % M;
        int64_t co = p->depthwise ? ci * M + m : m;
        w[j] = src[j] * (a ? a[ci] : 1.0f);
        if (b) bias[co] += src[j] * b[ci];
    }
    char name[600];
    snprintf(name, sizeof name, "%s/input_affine", conv->name);
    nn_shape ws = wt->shape;
    int wi = nn_graph_add_const(g, name, NN_DTYPE_F32, &ws, w);
    base_aligned_free(w);
    int bi = wi < 0 ? wi : new_const(g, g->nodes[r].name, "bias_input_affine", bias, cout);
    free(bias);
    if (bi < 0) return bi;
    conv = &g->nodes[r];
    conv->inputs[1] = wi;
    conv->inputs[2] = bi;
    if (conv->n_inputs < 3) conv->n_inputs = 3;
    if (pool >= 0)
        g->nodes[pool].inputs[0] = x;
    else
        conv->inputs[0] = x;
    if (mul_node >= 0) o->dead[mul_node] = 1;
    if (add_node >= 0) o->dead[add_node] = 1;
    (*changed)++;
    return 0;
}

/* Identities and same-shape reshapes: readers use the input directly. */
static int drop_identity(opt *o, int i, int *changed)
{
    nn_graph *g = o->g;
    nn_node *n = &g->nodes[i];
    int x = n->inputs[0];
    int ident = (n->op == NN_OP_UNARY && n->p.unary.kind == NN_UNARY_IDENTITY) ||
                (n->op == NN_OP_RESHAPE &&
                 nn_shape_equal(&g->tensors[x].shape, &g->tensors[n->output].shape));
    if (!ident || nn_tensor_is_const(g, x)) return 0;
    int t = n->output;
    for (int k = 0; k < g->n_outputs; k++)
        if (g->outputs[k] == t) return 0; /* keep the output's name and buffer */
    for (int j = 0; j < g->n_nodes; j++)
        for (int k = 0; k < g->nodes[j].n_inputs; k++)
            if (g->nodes[j].inputs[k] == t) g->nodes[j].inputs[k] = x;
    o->dead[i] = 1;
    (*changed)++;
    return 0;
}

/* Removes dead nodes and nodes nobody reads, renumbers, and frees unreferenced constants. */
static void compact(opt *o)
{
    nn_graph *g = o->g;
    /* Backwards: a node is live if a graph output or a live node reads its output. */
    char *live_t = calloc((size_t)g->n_tensors, 1);
    if (!live_t) return; /* leaving dead nodes marked is safe: they are skipped below */
    for (int k = 0; k < g->n_outputs; k++)
        live_t[g->outputs[k]] = 1;
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        if (o->dead[i] || !live_t[g->nodes[i].output]) {
            o->dead[i] = 1;
            continue;
        }
        for (int k = 0; k < g->nodes[i].n_inputs; k++)
            if (g->nodes[i].inputs[k] >= 0) live_t[g->nodes[i].inputs[k]] = 1;
    }
    /* Tensors of removed nodes become orphans (producer -1, no data, read by nobody). */
    for (int t = 0; t < g->n_tensors; t++)
        g->tensors[t].producer = -1;
    int w = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (o->dead[i]) {
            free(g->nodes[i].name);
            continue;
        }
        g->nodes[w] = g->nodes[i];
        g->tensors[g->nodes[w].output].producer = w;
        w++;
    }
    g->n_nodes = w;
    for (int t = 0; t < g->n_tensors; t++) {
        if (!live_t[t] && g->tensors[t].data) {
            /* Keep the slot (indices stay valid) but release the memory. */
            base_aligned_free(g->tensors[t].data);
            g->tensors[t].data = NULL;
            g->tensors[t].shape.rank = 0;
        }
    }
    free(live_t);
    memset(o->dead, 0, (size_t)g->n_nodes);
}

/*
 * A convolution (no activation of its own) whose sole reader adds a tensor of the same shape
 * computed before it: the own GEMM kernel adds that tensor in its epilogue, then the Add's
 * activation, act(conv + bias + r), saving a pass over both tensors (a residual block's Add).
 * Only where the GEMM kernel takes the fused node; the other backends would not.
 */
static int fold_residual(opt *o, int i, int *changed)
{
    nn_graph *g = o->g;
    nn_node *n = &g->nodes[i];
    if (n->op != NN_OP_CONV2D || n->p.conv.depthwise || n->p.conv.residual ||
        n->p.conv.act.kind != NN_ACT_NONE || n->n_inputs > 3)
        return 0;
    int r = sole_reader(o, n->output);
    if (r < 0) return 0;
    const nn_node *c = &g->nodes[r];
    if (c->op != NN_OP_BINARY || c->p.binary.kind != NN_BINARY_ADD || c->n_inputs != 2) return 0;
    if (c->p.binary.act.kind != NN_ACT_NONE && c->p.binary.act.kind != NN_ACT_CLAMP) return 0;
    int other = c->inputs[0] == n->output ? c->inputs[1] : c->inputs[0];
    if (other < 0 || other == n->output || nn_tensor_is_const(g, other)) return 0;
    int prod = g->tensors[other].producer;
    if (prod >= i) return 0; /* not yet computed when the convolution runs */
    const nn_shape *y = &g->tensors[n->output].shape;
    if (!nn_shape_equal(&g->tensors[other].shape, y) ||
        !nn_shape_equal(&g->tensors[c->output].shape, y))
        return 0;
    nn_node cand = *n;
    cand.p.conv.residual = 1;
    cand.p.conv.act = c->p.binary.act;
    if (cand.n_inputs < 3) cand.inputs[2] = -1;
    cand.inputs[3] = -1;
    cand.inputs[4] = other;
    cand.n_inputs = 5;
    if (!nn_gemm_supports(g, &cand)) return 0;
    cand.packed = NULL;
    *n = cand;
    absorb(o, i, r);
    (*changed)++;
    return 0;
}

/*
 * A convolution whose sole reader multiplies it by one constant per channel, and whose sole
 * reader adds one per channel: a batch norm after the activation (liveness: conv -> Relu ->
 * Mul -> Add), which cannot fold into the weights. The GEMM kernel scales and shifts in its
 * epilogue (post_affine) instead of two passes over the tensor. Only where it takes the node.
 */
static int fold_post_affine(opt *o, int i, int *changed)
{
    nn_graph *g = o->g;
    nn_node *n = &g->nodes[i];
    if (n->op != NN_OP_CONV2D || n->p.conv.depthwise || n->p.conv.residual || n->p.conv.pool ||
        n->p.conv.post_affine || n->n_inputs > 4)
        return 0;
    int64_t C = out_channels(g, n);
    const nn_shape *y = &g->tensors[n->output].shape;
    int r1 = sole_reader(o, n->output);
    if (r1 < 0) return 0;
    const nn_node *m = &g->nodes[r1];
    if (m->op != NN_OP_BINARY || m->p.binary.kind != NN_BINARY_MUL ||
        m->p.binary.act.kind != NN_ACT_NONE || m->n_inputs != 2)
        return 0;
    int ks = m->inputs[0] == n->output ? m->inputs[1] : m->inputs[0];
    if (ks == n->output || !per_channel_const(g, ks, C) ||
        !nn_shape_equal(&g->tensors[m->output].shape, y))
        return 0;
    int r2 = sole_reader(o, m->output);
    if (r2 < 0) return 0;
    const nn_node *a = &g->nodes[r2];
    if (a->op != NN_OP_BINARY || a->p.binary.kind != NN_BINARY_ADD ||
        a->p.binary.act.kind != NN_ACT_NONE || a->n_inputs != 2)
        return 0;
    int kt = a->inputs[0] == m->output ? a->inputs[1] : a->inputs[0];
    if (kt == m->output || !per_channel_const(g, kt, C) ||
        !nn_shape_equal(&g->tensors[a->output].shape, y))
        return 0;
    nn_node cand = *n;
    for (int k = cand.n_inputs; k < 5; k++)
        cand.inputs[k] = -1;
    cand.inputs[5] = ks;
    cand.inputs[6] = kt;
    cand.n_inputs = 7;
    cand.p.conv.post_affine = 1;
    if (!nn_gemm_supports(g, &cand)) return 0;
    *n = cand;
    absorb(o, i, r1);
    absorb(o, i, r2);
    (*changed)++;
    return 0;
}

/*
 * A convolution whose sole reader is a 2x2 stride-2 unpadded pooling: the own GEMM kernel
 * computes two output rows at a time and writes only the pooled map (antispoof's 126x126x64
 * stem and its max pool, SSR-Net's conv + average pools): the full-size map had gone through
 * memory twice, as the convolution's output and the pool's input. Last, after every activation
 * has settled into the convolution; only where the GEMM kernel takes the fused node.
 */
static int fold_pool(opt *o, int i, int *changed)
{
    nn_graph *g = o->g;
    nn_node *n = &g->nodes[i];
    if (n->op != NN_OP_CONV2D || n->p.conv.depthwise || n->p.conv.residual || n->p.conv.pool)
        return 0;
    int r = sole_reader(o, n->output);
    if (r < 0) return 0;
    const nn_node *c = &g->nodes[r];
    if (c->op != NN_OP_POOL || c->n_inputs != 1) return 0;
    const nn_pool_params *pp = &c->p.pool;
    if (pp->kernel_h != 2 || pp->kernel_w != 2 || pp->stride_h != 2 || pp->stride_w != 2 ||
        pp->pad_top || pp->pad_bottom || pp->pad_left || pp->pad_right)
        return 0;
    nn_node cand = *n;
    cand.p.conv.pool = 2;
    cand.p.conv.pool_kind = pp->kind;
    cand.output = c->output; /* the pooled shape, for the GEMM kernel's checks */
    if (!nn_gemm_supports(g, &cand)) return 0;
    n->p.conv.pool = 2;
    n->p.conv.pool_kind = pp->kind;
    absorb(o, i, r);
    (*changed)++;
    return 0;
}

int nn_graph_optimize(nn_graph *g)
{
    opt o = {g, NULL, 0, NULL};
    int rc = 0;
    for (int round = 0; round < 16; round++) {
        free(o.dead);
        o.dead = calloc((size_t)g->n_nodes + 1, 1);
        if (!o.dead || count_readers(&o)) {
            rc = base_error_set(BASE_ERR_NOMEM, "optimise");
            break;
        }
        int changed = 0;
        for (int i = 0; i < g->n_nodes && !rc; i++) {
            if (o.dead[i]) continue;
            int before = changed;
            rc = fold_abs_prelu(&o, i, &changed);
            if (!rc && changed == before) rc = drop_identity(&o, i, &changed);
            if (!rc && changed == before) rc = fold_pad(&o, i, &changed);
            if (!rc && changed == before) rc = hoist_clamp_over_pool(&o, i, &changed);
            if (!rc && changed == before) rc = fold_affine_forward(&o, i, &changed);
            if (changed != before) rc = count_readers(&o);
        }
        for (int i = 0; i < g->n_nodes && !rc; i++) {
            if (o.dead[i]) continue;
            int before = changed;
            /* Fold repeatedly into the same node: conv -> mul -> add -> relu -> min -> max. */
            do {
                before = changed;
                rc = fold_affine(&o, i, &changed);
                if (!rc) rc = count_readers(&o);
                if (!rc) rc = fold_activation(&o, i, &changed);
                if (!rc) rc = count_readers(&o);
            } while (!rc && changed != before);
        }
        compact(&o);
        if (rc || !changed) break;
    }
    /* Last, once the folds above have settled every activation into its Add. */
    free(o.dead);
    o.dead = calloc((size_t)g->n_nodes + 1, 1);
    if (!rc && (!o.dead || count_readers(&o))) rc = base_error_set(BASE_ERR_NOMEM, "optimise");
    int fused = 0;
    for (int i = 0; i < g->n_nodes && !rc; i++) {
        if (o.dead[i]) continue;
        int before = fused;
        rc = fold_residual(&o, i, &fused);
        if (!rc && fused != before) rc = count_readers(&o);
    }
    for (int i = 0; i < g->n_nodes && !rc; i++) {
        if (o.dead[i]) continue;
        int before = fused;
        rc = fold_post_affine(&o, i, &fused);
        if (!rc && fused != before) rc = count_readers(&o);
    }
    for (int i = 0; i < g->n_nodes && !rc; i++) {
        if (o.dead[i]) continue;
        int before = fused;
        rc = fold_pool(&o, i, &fused);
        if (!rc && fused != before) rc = count_readers(&o);
    }
    if (!rc && fused) compact(&o);
    free(o.readers);
    free(o.dead);
    return rc;
}
