/*
 * Models and execution contexts.
 *
 * A model is an optimised graph plus what every context needs to plan from it (tensor
 * lifetimes). It never changes after loading, so threads share it freely.
 *
 * A context plans memory once for its maximum batch: every computed tensor gets an offset in
 * one arena, reusing space whose tensor is dead (greedy best fit in execution order, as
 * ggml-alloc does); a reshape shares its input's buffer. Backend operators (XNNPACK) are
 * created per context because they hold per-shape state; the reference backend runs the rest.
 */
#include "nn/model.h"

#include "base/base.h"
#include "nn/import.h"
#include "nn/weights.h"

#include <pthreadpool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NN_DEFAULT_MAX_FILE_BYTES ((size_t)256 << 20)
#define ARENA_ALIGN 64

static const char *const op_names[] = {
    "conv2d", "depthwise_conv2d", "fully_connected", "add", "sub", "mul", "div", "minimum",
    "maximum", "squared_difference", "identity", "abs", "neg", "square", "sqrt", "rsqrt", "exp",
    "log", "sigmoid", "tanh", "clamp", "leaky_relu", "elu", "prelu", "max_pool", "avg_pool",
    "mean", "sum", "reduce_max", "reduce_min", "pad", "reshape", "concat", "slice",
    "resize_bilinear", "depth_to_space", "softmax",
};
#define N_OP_NAMES ((int)(sizeof op_names / sizeof op_names[0]))

const char *nn_model_op_name(int kind) { return kind >= 0 && kind < N_OP_NAMES ? op_names[kind] : "?"; }

static int op_name_index(const char *name)
{
    for (int i = 0; i < N_OP_NAMES; i++)
        if (!strcmp(op_names[i], name)) return i;
    return -1;
}

void nn_model_destroy(nn_model *m)
{
    if (!m) return;
    nn_graph_free(m->g);
    free(m->last_use);
    free(m->buffer_of);
    free(m->on_xnnpack);
    free(m->on_fast);
    free(m);
}

/* Fills lifetimes and aliasing, and checks that the graph is runnable. */
static int model_finish(nn_graph *g, int n_imported, nn_model **out)
{
    *out = NULL;
    nn_model *m = calloc(1, sizeof *m);
    if (!m) return base_error_set(BASE_ERR_NOMEM, "model");
    m->g = g;
    m->n_nodes_imported = n_imported;
    int rc = nn_xnn_init();
    if (rc) goto fail;
    m->last_use = malloc((size_t)g->n_tensors * sizeof *m->last_use);
    m->buffer_of = malloc((size_t)g->n_tensors * sizeof *m->buffer_of);
    m->on_xnnpack = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), 1);
    m->on_fast = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), 1);
    if (!m->last_use || !m->buffer_of || !m->on_xnnpack || !m->on_fast) {
        rc = base_error_set(BASE_ERR_NOMEM, "model");
        goto fail;
    }
    for (int t = 0; t < g->n_tensors; t++) {
        m->last_use[t] = -1;
        m->buffer_of[t] = t;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const nn_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++) {
            int t = n->inputs[k];
            if (t < 0) continue;
            if (g->tensors[t].producer >= i) {
                rc = base_error_set(BASE_ERR_FORMAT, "node %s reads %s before it is computed", n->name,
                                    g->tensors[t].name);
                goto fail;
            }
        }
        /* A reshape of a computed tensor is a view of its buffer. */
        if (n->op == NN_OP_RESHAPE && !nn_tensor_is_const(g, n->inputs[0]))
            m->buffer_of[n->output] = m->buffer_of[n->inputs[0]];
        /* Own kernels exist only where they beat XNNPACK (or XNNPACK lacks the op). */
        m->on_fast[i] = n->op != NN_OP_RESHAPE && nn_fast_supports(g, n);
        m->on_xnnpack[i] = !m->on_fast[i] && n->op != NN_OP_RESHAPE && nn_xnn_supports(g, n);
    }
    /* A buffer lives until the last reader of any tensor that views it. */
    for (int i = 0; i < g->n_nodes; i++) {
        const nn_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] >= 0) m->last_use[m->buffer_of[n->inputs[k]]] = i;
    }
    for (int k = 0; k < g->n_outputs; k++) m->last_use[m->buffer_of[g->outputs[k]]] = g->n_nodes;
    for (int k = 0; k < g->n_inputs; k++) {
        m->inputs[k].name = g->tensors[g->inputs[k]].name;
        m->inputs[k].rank = g->tensors[g->inputs[k]].shape.rank;
        memcpy(m->inputs[k].dim, g->tensors[g->inputs[k]].shape.dim, sizeof m->inputs[k].dim);
    }
    for (int k = 0; k < g->n_outputs; k++) {
        m->outputs[k].name = g->tensors[g->outputs[k]].name;
        m->outputs[k].rank = g->tensors[g->outputs[k]].shape.rank;
        memcpy(m->outputs[k].dim, g->tensors[g->outputs[k]].shape.dim, sizeof m->outputs[k].dim);
    }
    *out = m;
    return 0;
fail:
    m->g = NULL; /* the caller frees the graph */
    nn_model_destroy(m);
    return rc;
}

int nn_model_from_graph(nn_graph *g, const nn_load_options *opts, nn_model **out)
{
    *out = NULL;
    int n_imported = g->n_nodes;
    int rc = 0;
    if (!(opts && opts->no_optimize)) rc = nn_graph_optimize(g);
    if (!rc) rc = model_finish(g, n_imported, out);
    if (rc) nn_graph_free(g);
    return rc;
}

int nn_model_load_tfjs_mem(const char *json, size_t json_len, nn_shard_reader read_shard, void *user,
                           const nn_load_options *opts, nn_model **out)
{
    *out = NULL;
    size_t max = opts && opts->max_file_bytes ? opts->max_file_bytes : NN_DEFAULT_MAX_FILE_BYTES;
    json_error_t jerr;
    /* Deeply nested JSON is refused by jansson's own depth limit (2048). */
    json_t *root = json_loadb(json, json_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return base_error_set(BASE_ERR_FORMAT, "model.json is not valid JSON (line %d: %s)", jerr.line,
                              jerr.text);
    int rc;
    nn_weights *w = NULL;
    nn_graph *g = NULL;
    if (!json_is_object(root)) {
        rc = base_error_set(BASE_ERR_FORMAT, "model.json is not a JSON object");
        goto done;
    }
    json_t *manifest = json_object_get(root, "weightsManifest");
    if (!manifest) {
        rc = base_error_set(BASE_ERR_FORMAT, "model.json has no weightsManifest");
        goto done;
    }
    if ((rc = nn_weights_from_manifest(manifest, read_shard, user, max, &w))) goto done;
    if ((rc = nn_import_tfjs(root, w, &g))) goto done;
    rc = nn_model_from_graph(g, opts, out);
done:
    nn_weights_destroy(w);
    json_decref(root);
    return rc;
}

int nn_model_load_tfjs(const char *path, const nn_load_options *opts, nn_model **out)
{
    *out = NULL;
    size_t max = opts && opts->max_file_bytes ? opts->max_file_bytes : NN_DEFAULT_MAX_FILE_BYTES;
    char *text = NULL;
    size_t len = 0;
    int rc = base_file_read(path, max, &text, &len);
    if (rc) return rc;
    void *reader = nn_dir_reader_new(path);
    if (!reader) {
        free(text);
        return base_error_set(BASE_ERR_NOMEM, "model");
    }
    rc = nn_model_load_tfjs_mem(text, len, nn_read_shard_from_dir, reader, opts, out);
    if (rc) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", base_error_message());
        base_error_set(rc, "%s: %s", path, msg);
    }
    free(reader);
    free(text);
    return rc;
}

int nn_model_input_count(const nn_model *m) { return m->g->n_inputs; }
int nn_model_output_count(const nn_model *m) { return m->g->n_outputs; }

int nn_model_input_info(const nn_model *m, int i, nn_io_info *info)
{
    if (i < 0 || i >= m->g->n_inputs) return base_error_set(BASE_ERR_INVALID, "no input %d", i);
    *info = m->inputs[i];
    return 0;
}

int nn_model_output_info(const nn_model *m, int i, nn_io_info *info)
{
    if (i < 0 || i >= m->g->n_outputs) return base_error_set(BASE_ERR_INVALID, "no output %d", i);
    *info = m->outputs[i];
    return 0;
}

int nn_model_output_index(const nn_model *m, const char *name)
{
    for (int i = 0; i < m->g->n_outputs; i++)
        if (!strcmp(m->outputs[i].name, name)) return i;
    return -1;
}

void nn_model_get_stats(const nn_model *m, nn_model_stats *s)
{
    memset(s, 0, sizeof *s);
    const nn_graph *g = m->g;
    s->n_nodes = g->n_nodes;
    s->n_nodes_imported = m->n_nodes_imported;
    s->n_op_kinds = N_OP_NAMES;
    char *counted = calloc((size_t)g->n_tensors, 1);
    for (int i = 0; i < g->n_nodes; i++) {
        const nn_node *n = &g->nodes[i];
        s->macs += nn_node_macs(g, n);
        int k = op_name_index(nn_node_kind_name(n));
        if (k >= 0 && k < (int)(sizeof s->op_counts / sizeof s->op_counts[0])) s->op_counts[k]++;
        s->n_xnnpack_nodes += m->on_xnnpack[i];
        for (int j = 0; j < n->n_inputs; j++) {
            int t = n->inputs[j];
            if (t >= 0 && nn_tensor_is_const(g, t) && counted && !counted[t]) {
                counted[t] = 1;
                s->params += nn_shape_numel(&g->tensors[t].shape, 1);
            }
        }
    }
    free(counted);
}

const nn_graph *nn_model_graph(const nn_model *m) { return m->g; }

/* --- contexts ------------------------------------------------------------------------------ */

struct nn_context {
    const nn_model *m;
    int max_batch;
    nn_backend backend;
    pthreadpool_t pool;
    uint8_t *arena;
    size_t arena_size;
    float **data;       /* per tensor: its buffer (arena, constant data or input buffer) */
    float **inputs;     /* per graph input, max_batch elements */
    nn_xnn_op **xops;   /* per node: the XNNPACK operator, or NULL for the reference backend */
    int setup_batch;    /* batch the XNNPACK operators are set up for; 0 for none */
    int last_batch;
    /* Image-by-image schedule (the default): a batch runs as `batch` runs of one image through
     * a batch-1 plan; inputs are copied into staging buffers and outputs gathered. */
    int per_image;
    int plan_batch;     /* the batch the arena is planned for: 1 per image, else max_batch */
    float **staging;    /* per graph input: one image */
    float **gathered;   /* per graph output: max_batch results */
    uint64_t *profile_ns; /* per node, accumulated over runs while profiling; NULL when off */
    int profile_runs;
};

typedef struct free_block {
    size_t off, size;
} free_block;

/* Greedy best-fit allocator over an arena that grows at its end. */
typedef struct planner {
    free_block *blocks;
    int n, cap;
    size_t end;
} planner;

static size_t plan_alloc(planner *p, size_t size)
{
    int best = -1;
    for (int i = 0; i < p->n; i++)
        if (p->blocks[i].size >= size && (best < 0 || p->blocks[i].size < p->blocks[best].size)) best = i;
    if (best >= 0) {
        size_t off = p->blocks[best].off;
        p->blocks[best].off += size;
        p->blocks[best].size -= size;
        if (p->blocks[best].size == 0) p->blocks[best] = p->blocks[--p->n];
        return off;
    }
    /* Extend the arena, absorbing a free block at its end. */
    for (int i = 0; i < p->n; i++) {
        if (p->blocks[i].off + p->blocks[i].size == p->end) {
            size_t off = p->blocks[i].off;
            p->blocks[i] = p->blocks[--p->n];
            p->end = off + size;
            return off;
        }
    }
    size_t off = p->end;
    p->end += size;
    return off;
}

static int plan_free(planner *p, size_t off, size_t size)
{
    /* Merge with neighbours so large tensors find room later. */
    for (int i = 0; i < p->n; i++) {
        if (p->blocks[i].off + p->blocks[i].size == off) {
            off = p->blocks[i].off;
            size += p->blocks[i].size;
            p->blocks[i--] = p->blocks[--p->n];
        } else if (off + size == p->blocks[i].off) {
            size += p->blocks[i].size;
            p->blocks[i--] = p->blocks[--p->n];
        }
    }
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 32;
        free_block *b = realloc(p->blocks, (size_t)cap * sizeof *b);
        if (!b) return base_error_set(BASE_ERR_NOMEM, "planner");
        p->blocks = b;
        p->cap = cap;
    }
    p->blocks[p->n++] = (free_block){off, size};
    return 0;
}

static size_t tensor_bytes(const nn_graph *g, int t, int batch)
{
    size_t b = (size_t)nn_shape_numel(&g->tensors[t].shape, batch) * sizeof(float) + NN_XNN_EXTRA_BYTES;
    return (b + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
}

void nn_context_destroy(nn_context *c)
{
    if (!c) return;
    if (c->xops)
        for (int i = 0; i < c->m->g->n_nodes; i++) nn_xnn_destroy(c->xops[i]);
    if (c->inputs)
        for (int i = 0; i < c->m->g->n_inputs; i++) base_aligned_free(c->inputs[i]);
    if (c->staging)
        for (int i = 0; i < c->m->g->n_inputs; i++) base_aligned_free(c->staging[i]);
    if (c->gathered)
        for (int i = 0; i < c->m->g->n_outputs; i++) base_aligned_free(c->gathered[i]);
    free(c->staging);
    free(c->gathered);
    if (c->pool) pthreadpool_destroy(c->pool);
    free(c->xops);
    free(c->profile_ns);
    free(c->inputs);
    free(c->data);
    base_aligned_free(c->arena);
    free(c);
}

int nn_context_create(const nn_model *m, const nn_context_options *opts, nn_context **out)
{
    *out = NULL;
    const nn_graph *g = m->g;
    nn_context *c = calloc(1, sizeof *c);
    if (!c) return base_error_set(BASE_ERR_NOMEM, "context");
    c->m = m;
    c->max_batch = opts && opts->max_batch > 0 ? opts->max_batch : 1;
    c->backend = opts ? opts->backend : NN_BACKEND_AUTO;
    c->per_image = !(opts && opts->whole_batch) && c->max_batch > 1;
    c->plan_batch = c->per_image ? 1 : c->max_batch;
    int rc = 0;
    size_t *offset = NULL;
    planner p = {0};
    if (c->max_batch > 4096) {
        rc = base_error_set(BASE_ERR_LIMIT, "context: max_batch %d is more than 4096", c->max_batch);
        goto fail;
    }
    /* pthreadpool's workers spin while waiting: more threads than cores only slows a run. */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = opts ? opts->threads : 1;
    if (cores > 0 && threads > cores) threads = (int)cores;
    if (threads > 1) {
        c->pool = pthreadpool_create((size_t)threads);
        if (!c->pool) {
            rc = base_error_set(BASE_ERR_BACKEND, "context: cannot start %d threads", threads);
            goto fail;
        }
    }
    c->data = calloc((size_t)g->n_tensors, sizeof *c->data);
    c->inputs = calloc((size_t)g->n_inputs, sizeof *c->inputs);
    c->xops = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *c->xops);
    offset = calloc((size_t)g->n_tensors, sizeof *offset);
    if (!c->data || !c->inputs || !c->xops || !offset) {
        rc = base_error_set(BASE_ERR_NOMEM, "context");
        goto fail;
    }
    for (int i = 0; i < g->n_inputs; i++) {
        int t = g->inputs[i];
        c->inputs[i] = base_aligned_alloc(ARENA_ALIGN, tensor_bytes(g, t, c->max_batch));
        if (!c->inputs[i]) {
            rc = base_error_set(BASE_ERR_NOMEM, "context: input %s", g->tensors[t].name);
            goto fail;
        }
        memset(c->inputs[i], 0, tensor_bytes(g, t, c->max_batch));
        c->data[t] = c->inputs[i];
    }
    if (c->per_image) {
        c->staging = calloc((size_t)g->n_inputs, sizeof *c->staging);
        c->gathered = calloc((size_t)g->n_outputs, sizeof *c->gathered);
        if (!c->staging || !c->gathered) {
            rc = base_error_set(BASE_ERR_NOMEM, "context");
            goto fail;
        }
        for (int i = 0; i < g->n_inputs; i++) {
            int t = g->inputs[i];
            c->staging[i] = base_aligned_alloc(ARENA_ALIGN, tensor_bytes(g, t, 1));
            if (!c->staging[i]) {
                rc = base_error_set(BASE_ERR_NOMEM, "context: staging for %s", g->tensors[t].name);
                goto fail;
            }
            memset(c->staging[i], 0, tensor_bytes(g, t, 1));
            c->data[t] = c->staging[i];
        }
        for (int i = 0; i < g->n_outputs; i++) {
            c->gathered[i] = base_aligned_alloc(ARENA_ALIGN, tensor_bytes(g, g->outputs[i], c->max_batch));
            if (!c->gathered[i]) {
                rc = base_error_set(BASE_ERR_NOMEM, "context: outputs");
                goto fail;
            }
        }
    }
    /* Plan: walk the nodes in order; allocate each output buffer, free dead ones. */
    for (int i = 0; i < g->n_nodes; i++) {
        const nn_node *n = &g->nodes[i];
        int t = n->output;
        if (m->buffer_of[t] == t) offset[t] = plan_alloc(&p, tensor_bytes(g, t, c->plan_batch));
        for (int k = 0; k < n->n_inputs; k++) {
            int in = n->inputs[k];
            if (in < 0 || g->tensors[in].producer < 0) continue;
            int buf = m->buffer_of[in];
            if (m->last_use[buf] == i && g->tensors[buf].producer >= 0) {
                /* Free once even if the node reads the same buffer twice. */
                int seen = 0;
                for (int j = 0; j < k; j++)
                    if (n->inputs[j] >= 0 && m->buffer_of[n->inputs[j]] == buf) seen = 1;
                if (!seen && (rc = plan_free(&p, offset[buf], tensor_bytes(g, buf, c->plan_batch)))) goto fail;
            }
        }
        /* An output nobody reads is dead at once (unless it is a graph output). */
        if (m->buffer_of[t] == t && m->last_use[t] < 0 &&
            (rc = plan_free(&p, offset[t], tensor_bytes(g, t, c->plan_batch))))
            goto fail;
    }
    c->arena_size = p.end;
    c->arena = base_aligned_alloc(ARENA_ALIGN, p.end ? p.end : ARENA_ALIGN);
    if (!c->arena) {
        rc = base_error_set(BASE_ERR_NOMEM, "context: arena of %zu bytes", p.end);
        goto fail;
    }
    memset(c->arena, 0, p.end);
    for (int t = 0; t < g->n_tensors; t++) {
        const nn_tensor *ten = &g->tensors[t];
        if (ten->data) c->data[t] = ten->data;
        else if (ten->producer >= 0) {
            int buf = m->buffer_of[t];
            c->data[t] = g->tensors[buf].producer >= 0 ? (float *)(c->arena + offset[buf]) : c->data[buf];
        }
    }
    for (int i = 0; i < g->n_nodes; i++) {
        if (c->backend == NN_BACKEND_REFERENCE || !m->on_xnnpack[i]) continue;
        if ((rc = nn_xnn_create(g, &g->nodes[i], &c->xops[i]))) goto fail;
    }
    free(offset);
    free(p.blocks);
    *out = c;
    return 0;
fail:
    free(offset);
    free(p.blocks);
    nn_context_destroy(c);
    return rc;
}

float *nn_context_input(nn_context *c, int index)
{
    if (index < 0 || index >= c->m->g->n_inputs) return NULL;
    return c->inputs[index];
}

size_t nn_context_arena_bytes(const nn_context *c) { return c->arena_size; }

static void make_view(const nn_context *c, int t, int batch, nn_view *v)
{
    const nn_graph *g = c->m->g;
    if (t < 0) {
        memset(v, 0, sizeof *v);
        return;
    }
    v->shape = g->tensors[t].shape;
    if (v->shape.rank > 0 && v->shape.dim[0] == NN_BATCH) v->shape.dim[0] = batch;
    v->data = c->data[t];
}

/* One pass over the graph at `batch` (the plan's batch, or less in whole-batch mode). */
static int run_graph(nn_context *c, int batch)
{
    const nn_graph *g = c->m->g;
    nn_view in[NN_MAX_NODE_INPUTS], out;
    int rc;
    if (c->setup_batch != batch) {
        c->setup_batch = 0;
        for (int i = 0; i < g->n_nodes; i++) {
            if (!c->xops[i]) continue;
            const nn_node *n = &g->nodes[i];
            for (int k = 0; k < n->n_inputs; k++) make_view(c, n->inputs[k], batch, &in[k]);
            make_view(c, n->output, batch, &out);
            if ((rc = nn_xnn_setup(c->xops[i], g, n, in, &out, c->pool))) return rc;
        }
        c->setup_batch = batch;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const nn_node *n = &g->nodes[i];
        if (n->op == NN_OP_RESHAPE && c->data[n->output] == c->data[n->inputs[0]]) continue;
        uint64_t t0 = c->profile_ns ? base_now_ns() : 0;
        if (c->xops[i]) {
            rc = nn_xnn_run(c->xops[i], c->pool);
        } else {
            for (int k = 0; k < n->n_inputs; k++) make_view(c, n->inputs[k], batch, &in[k]);
            make_view(c, n->output, batch, &out);
            if (c->m->on_fast[i] && c->backend != NN_BACKEND_REFERENCE) rc = nn_fast_run(g, n, in, &out, c->pool);
            else rc = nn_ref_run(g, n, in, &out);
        }
        if (rc) return rc;
        if (c->profile_ns) c->profile_ns[i] += base_now_ns() - t0;
    }
    if (c->profile_ns) c->profile_runs++;
    return 0;
}

int nn_context_run(nn_context *c, int batch)
{
    const nn_graph *g = c->m->g;
    if (batch < 1 || batch > c->max_batch)
        return base_error_set(BASE_ERR_INVALID, "run: batch %d outside 1..%d", batch, c->max_batch);
    if (!c->per_image) {
        int rc = run_graph(c, batch);
        if (!rc) c->last_batch = batch;
        return rc;
    }
    /* Image by image: each image's activations stay in cache from layer to layer, which
     * measured faster per image than whole batches on every model of the pack. */
    for (int b = 0; b < batch; b++) {
        for (int i = 0; i < g->n_inputs; i++) {
            size_t n = (size_t)nn_shape_numel(&g->tensors[g->inputs[i]].shape, 1);
            memcpy(c->staging[i], c->inputs[i] + (size_t)b * n, n * sizeof(float));
        }
        int rc = run_graph(c, 1);
        if (rc) return rc;
        for (int i = 0; i < g->n_outputs; i++) {
            int t = g->outputs[i];
            size_t n = (size_t)nn_shape_numel(&g->tensors[t].shape, 1);
            memcpy(c->gathered[i] + (size_t)b * n, c->data[t], n * sizeof(float));
        }
    }
    c->last_batch = batch;
    return 0;
}

const float *nn_context_output(const nn_context *c, int index, nn_io_info *info)
{
    const nn_graph *g = c->m->g;
    if (index < 0 || index >= g->n_outputs) return NULL;
    int t = g->outputs[index];
    if (info) {
        *info = c->m->outputs[index];
        if (info->rank > 0 && info->dim[0] == NN_BATCH) info->dim[0] = c->last_batch ? c->last_batch : 1;
    }
    return c->per_image ? c->gathered[index] : c->data[t];
}

int nn_context_set_profiling(nn_context *c, int enable)
{
    free(c->profile_ns);
    c->profile_ns = NULL;
    c->profile_runs = 0;
    if (!enable) return 0;
    c->profile_ns = calloc((size_t)(c->m->g->n_nodes ? c->m->g->n_nodes : 1), sizeof *c->profile_ns);
    return c->profile_ns ? 0 : base_error_set(BASE_ERR_NOMEM, "profile");
}

void nn_context_print_profile(const nn_context *c, FILE *f)
{
    const nn_graph *g = c->m->g;
    if (!c->profile_ns || c->profile_runs == 0) return;
    uint64_t total = 0;
    for (int i = 0; i < g->n_nodes; i++) total += c->profile_ns[i];
    fprintf(f, "%-4s %-18s %-7s %-20s %9s %6s %8s  %s\n", "node", "op", "backend", "output", "ms/run", "share",
            "GFLOP/s", "name");
    for (int i = 0; i < g->n_nodes; i++) {
        const nn_node *n = &g->nodes[i];
        double ms = (double)c->profile_ns[i] / 1e6 / c->profile_runs;
        char shape[64];
        nn_shape s = g->tensors[n->output].shape;
        if (s.dim[0] == NN_BATCH) s.dim[0] = c->last_batch;
        double gflops = ms > 0 ? 2.0 * (double)nn_node_macs(g, n) * c->last_batch / (ms * 1e6) : 0;
        fprintf(f, "%-4d %-18s %-7s %-20s %9.4f %5.1f%% %8.1f  %s\n", i, nn_node_kind_name(n),
                c->xops[i] ? "xnnpack" : c->m->on_fast[i] && c->backend != NN_BACKEND_REFERENCE ? "fast" : "ref", nn_shape_str(&s, shape, sizeof shape), ms,
                total ? 100.0 * (double)c->profile_ns[i] / (double)total : 0.0, gflops, n->name);
    }
    fprintf(f, "total %.3f ms per run over %d runs\n", (double)total / 1e6 / c->profile_runs, c->profile_runs);
}
