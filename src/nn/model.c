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

#include <limits.h>
#include <pthreadpool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NN_DEFAULT_MAX_FILE_BYTES ((size_t)256 << 20)
#define ARENA_ALIGN 64
#define ARENA_MAX_PER_IMAGE ((size_t)256 << 20) /* activation bytes per image of a batch */

static const char *const op_names[] = {
    "conv2d",
    "depthwise_conv2d",
    "fully_connected",
    "add",
    "sub",
    "mul",
    "div",
    "minimum",
    "maximum",
    "squared_difference",
    "identity",
    "abs",
    "neg",
    "square",
    "sqrt",
    "rsqrt",
    "exp",
    "log",
    "sigmoid",
    "tanh",
    "clamp",
    "leaky_relu",
    "elu",
    "prelu",
    "max_pool",
    "avg_pool",
    "mean",
    "sum",
    "reduce_max",
    "reduce_min",
    "pad",
    "reshape",
    "concat",
    "slice",
    "resize_bilinear",
    "depth_to_space",
    "softmax",
};
#define N_OP_NAMES ((int)(sizeof op_names / sizeof op_names[0]))

const char *nn_model_op_name(int kind)
{
    return kind >= 0 && kind < N_OP_NAMES ? op_names[kind] : "?";
}

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
                rc = base_error_set(BASE_ERR_FORMAT, "node %s reads %s before it is computed",
                                    n->name, g->tensors[t].name);
                goto fail;
            }
        }
        /* A reshape of a computed tensor is a view of its buffer. */
        if (n->op == NN_OP_RESHAPE && !nn_tensor_is_const(g, n->inputs[0]))
            m->buffer_of[n->output] = m->buffer_of[n->inputs[0]];
        /* Own kernels exist only where they beat XNNPACK (or XNNPACK lacks the op). */
        m->on_fast[i] = n->op != NN_OP_RESHAPE && nn_fast_supports(g, n);
        /* A 3x3 stride-1 convolution the GEMM would run goes to Winograd where it measured
         * faster (winograd.c); its weights are then transformed instead of packed. */
        if (m->on_fast[i] && nn_gemm_supports(g, n) && nn_wino_preferred(g, n)) {
            if ((rc = nn_wino_pack(g, &g->nodes[i], 0))) goto fail;
        } else if (m->on_fast[i] && nn_gemm_supports(g, n) &&
                   (rc = nn_gemm_pack(g, &g->nodes[i]))) {
            goto fail;
        }
        m->on_xnnpack[i] = !m->on_fast[i] && n->op != NN_OP_RESHAPE && nn_xnn_supports(g, n);
    }
    /* A buffer lives until the last reader of any tensor that views it. */
    for (int i = 0; i < g->n_nodes; i++) {
        const nn_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] >= 0) m->last_use[m->buffer_of[n->inputs[k]]] = i;
    }
    for (int k = 0; k < g->n_outputs; k++)
        m->last_use[m->buffer_of[g->outputs[k]]] = g->n_nodes;
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

int nn_model_load_tfjs_mem(const char *json, size_t json_len, nn_shard_reader read_shard,
                           void *user, const nn_load_options *opts, nn_model **out)
{
    *out = NULL;
    size_t max = opts && opts->max_file_bytes ? opts->max_file_bytes : NN_DEFAULT_MAX_FILE_BYTES;
    json_error_t jerr;
    /* Deeply nested JSON is refused by jansson's own depth limit (2048). */
    json_t *root = json_loadb(json, json_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return base_error_set(BASE_ERR_FORMAT, "model.json is not valid JSON (line %d: %s)",
                              jerr.line, jerr.text);
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

int nn_model_input_count(const nn_model *m)
{
    return m->g->n_inputs;
}
int nn_model_output_count(const nn_model *m)
{
    return m->g->n_outputs;
}

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

const nn_graph *nn_model_graph(const nn_model *m)
{
    return m->g;
}

/* --- contexts ------------------------------------------------------------------------------ */

/*
 * Schedules. A context runs each node in one of two spaces:
 *   - batch space: the node runs once over the whole batch (batch-sized buffers);
 *   - image space: the node runs once per image through a batch-1 plan.
 * Consecutive nodes of one space form a segment; an image-space segment runs all its nodes for
 * image 0, then for image 1, and so on, so each image's activations stay in cache from layer to
 * layer. A tensor that crosses between spaces (or between two image-space segments) has a
 * buffer in each space: before each image of a segment its inputs from outside are copied in
 * (slice b of the batch buffer), after it its results needed outside are copied out.
 *
 * The automatic schedule gives early layers (large activations, small weights) to image space
 * and late layers (small maps, large weights, e.g. 3x3x256x256 on 4x4) to batch space, where
 * one pass over the weights serves every image; see choose_schedule().
 */
enum { SPACE_BATCH = 0, SPACE_IMAGE = 1 };

typedef struct segment {
    int first, end; /* nodes [first, end) */
    int per_image;
    int copy_first, n_in; /* copy_roots[copy_first ..]: n_in roots copied in, then */
    int n_out;            /* n_out roots copied out */
} segment;

struct nn_context {
    const nn_model *m;
    int max_batch;
    nn_backend backend;
    pthreadpool_t pool;
    uint8_t *arena;
    size_t arena_size;
    float **data[2];  /* per space, per tensor: its buffer (arena, constant data or input) */
    float **inputs;   /* per graph input, max_batch elements */
    nn_xnn_op **xops; /* per node: the XNNPACK operator, or NULL for the reference backend */
    char *per_image;  /* per node: runs in image space */
    segment *segs;
    int n_segs;
    int *copy_roots; /* per segment: roots copied in, then roots copied out */
    int setup_batch; /* batch the batch-space XNNPACK operators are set up for; 0 for none */
    int image_setup; /* the image-space XNNPACK operators are set up */
    int last_batch;
    float *scratch; /* Winograd nodes' per-thread scratch (winograd.c), or NULL */
    size_t scratch_floats;
    uint64_t *profile_ns;     /* per node, accumulated over runs while profiling; NULL when off */
    uint64_t *profile_run_ns; /* per node, this run (image-space nodes run once per image) */
    uint64_t *profile_min_ns; /* per node, the fastest run (robust on a shared machine) */
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
        if (p->blocks[i].size >= size && (best < 0 || p->blocks[i].size < p->blocks[best].size))
            best = i;
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
    size_t b =
        (size_t)nn_shape_numel(&g->tensors[t].shape, batch) * sizeof(float) + NN_XNN_EXTRA_BYTES;
    return (b + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
}

/* A reshape that only renames its input's buffer: nothing runs. */
static int is_view_node(const nn_model *m, int i)
{
    const nn_node *n = &m->g->nodes[i];
    return n->op == NN_OP_RESHAPE && m->buffer_of[n->output] != n->output;
}

/* A tensor computed at run time or fed by the caller (not a constant). */
static int is_runtime(const nn_graph *g, int t)
{
    return t >= 0 && g->tensors[t].data == NULL;
}

static int has_batch_dim(const nn_graph *g, int t)
{
    const nn_shape *s = &g->tensors[t].shape;
    return s->rank > 0 && s->dim[0] == NN_BATCH;
}

static size_t l2_bytes(void)
{
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (l2 < (256 << 10) || l2 > (64 << 20)) l2 = 1 << 20;
    return (size_t)l2;
}

/*
 * The automatic schedule: per node, an estimate in bytes of memory traffic of what batch space
 * saves over image space,
 *     gain = W - (A * max_batch > L2 ? A : 0),
 * where W is the node's constant (weight) bytes, streamed again for every image in image space
 * but once per batch in batch space, and A its activation bytes per image (inputs and output),
 * which in batch space no longer stay in L2 from one layer to the next once the batch's
 * activations outgrow it. Switching spaces costs a copy of the tensors live across the
 * boundary. A dynamic program over the nodes in order minimises the sum; inputs arrive and
 * outputs leave in batch space. Measured on the face models (bench nn --profile in both
 * schedules, docs/engine.md): depthwise and 1x1 layers on large maps are faster image by image,
 * 3x3 and 1x1 layers with large weights on maps of 7x7 or less and fully connected layers
 * faster as one batch.
 */
static int choose_schedule(const nn_model *m, int max_batch, char *per_image)
{
    const nn_graph *g = m->g;
    int n = g->n_nodes;
    memset(per_image, 0, (size_t)(n ? n : 1));
    if (max_batch <= 1 || n == 0) return 0;
    double *gain = calloc((size_t)n, sizeof *gain), *cross = calloc((size_t)n + 1, sizeof *cross);
    double(*dp)[2] = calloc((size_t)n, sizeof *dp);
    char(*from)[2] = calloc((size_t)n, sizeof *from);
    if (!gain || !cross || !dp || !from) {
        free(gain), free(cross), free(dp), free(from);
        return base_error_set(BASE_ERR_NOMEM, "schedule");
    }
    double l2 = (double)l2_bytes();
    for (int i = 0; i < n; i++) {
        const nn_node *nd = &g->nodes[i];
        if (is_view_node(m, i)) continue;
        double w = 0, a = 4.0 * (double)nn_shape_numel(&g->tensors[nd->output].shape, 1);
        for (int k = 0; k < nd->n_inputs; k++) {
            int t = nd->inputs[k];
            if (t < 0) continue;
            double bytes = 4.0 * (double)nn_shape_numel(&g->tensors[t].shape, 1);
            if (nn_tensor_is_const(g, t))
                w += bytes;
            else
                a += bytes;
        }
        gain[i] = w - (a * max_batch > l2 ? a : 0);
    }
    /* Bytes per image live across the boundary before node i (inputs produced "at -1"). */
    for (int t = 0; t < g->n_tensors; t++) {
        if (!is_runtime(g, t) || m->buffer_of[t] != t) continue;
        int last = m->last_use[t];
        if (last < 0) continue;
        double bytes = 4.0 * (double)nn_shape_numel(&g->tensors[t].shape, 1);
        for (int i = g->tensors[t].producer + 1; i <= last && i <= n; i++)
            cross[i] += bytes;
    }
    /* dp[i][s]: least cost of nodes 0..i with node i in space s (image space pays -gain). */
    for (int i = 0; i < n; i++) {
        for (int s = 0; s < 2; s++) {
            double own = s == SPACE_IMAGE ? gain[i] : 0;
            double stay = i ? dp[i - 1][s] : (s == SPACE_IMAGE ? cross[0] : 0);
            double sw = i ? dp[i - 1][!s] + cross[i] : stay + 1; /* no switch before node 0 */
            dp[i][s] = own + (stay <= sw ? stay : sw);
            from[i][s] = (char)(stay <= sw ? s : !s);
        }
    }
    int s = dp[n - 1][SPACE_BATCH] <= dp[n - 1][SPACE_IMAGE] + cross[n] ? SPACE_BATCH : SPACE_IMAGE;
    for (int i = n - 1; i >= 0; i--) {
        per_image[i] = (char)(s == SPACE_IMAGE);
        s = from[i][s];
    }
    free(gain), free(cross), free(dp), free(from);
    return 0;
}

void nn_context_destroy(nn_context *c)
{
    if (!c) return;
    if (c->xops)
        for (int i = 0; i < c->m->g->n_nodes; i++)
            nn_xnn_destroy(c->xops[i]);
    if (c->inputs)
        for (int i = 0; i < c->m->g->n_inputs; i++)
            base_aligned_free(c->inputs[i]);
    if (c->pool) pthreadpool_destroy(c->pool);
    free(c->xops);
    free(c->profile_ns);
    free(c->profile_run_ns);
    free(c->profile_min_ns);
    free(c->inputs);
    free(c->data[0]);
    free(c->data[1]);
    free(c->per_image);
    free(c->segs);
    free(c->copy_roots);
    base_aligned_free(c->arena);
    base_aligned_free(c->scratch);
    free(c);
}

/* A buffer's life in node positions: allocated before node `first` runs, free after `last`. */
typedef struct interval {
    int first, last;
    int root, space;
} interval;

/*
 * Plans the arena for the schedule in c->per_image: segments, copies, and one interval per
 * buffer (a root tensor may have one in each space), then a sweep over node positions that
 * allocates at `first` and frees after `last` (greedy best fit, as ggml-alloc does).
 */
static int plan_context(nn_context *c)
{
    const nn_model *m = c->m;
    const nn_graph *g = m->g;
    int n = g->n_nodes, nt = g->n_tensors;
    int rc = 0;
    int *seg_of = malloc((size_t)(n ? n : 1) * sizeof *seg_of);
    /* per root: [0] first/last in batch space, [1] in image space; INT_MAX/-1 when unused */
    int(*first)[2] = malloc((size_t)nt * sizeof *first),
    (*last)[2] = malloc((size_t)nt * sizeof *last);
    size_t(*offset)[2] = calloc((size_t)nt, sizeof *offset);
    interval *iv = malloc((size_t)nt * 2 * sizeof *iv);
    planner p = {0};
    c->segs = calloc((size_t)(n ? n : 1), sizeof *c->segs);
    if (!seg_of || !first || !last || !offset || !iv || !c->segs) {
        rc = base_error_set(BASE_ERR_NOMEM, "context plan");
        goto done;
    }
    /* Segments: maximal runs of one space. */
    c->n_segs = 0;
    for (int i = 0; i < n; i++) {
        if (i == 0 || c->per_image[i] != c->per_image[i - 1]) {
            c->segs[c->n_segs] = (segment){.first = i, .end = i, .per_image = c->per_image[i]};
            c->n_segs++;
        }
        c->segs[c->n_segs - 1].end = i + 1;
        seg_of[i] = c->n_segs - 1;
    }
    for (int t = 0; t < nt; t++) {
        first[t][0] = first[t][1] = INT_MAX;
        last[t][0] = last[t][1] = -1;
    }
#define USE(t, s, a, b)                                                                            \
    do {                                                                                           \
        if ((a) < first[t][s]) first[t][s] = (a);                                                  \
        if ((b) > last[t][s]) last[t][s] = (b);                                                    \
    } while (0)
    /* Producers. An image-space result needed outside its segment is copied out after each
     * image, so its batch buffer is in use from the segment's start. */
    for (int i = 0; i < n; i++) {
        int t = g->nodes[i].output;
        if (is_view_node(m, i)) continue;
        USE(t, (int)c->per_image[i], i, i);
    }
    for (int k = 0; k < g->n_inputs; k++)
        USE(g->inputs[k], SPACE_BATCH, -1, -1);
    /* Readers. */
    for (int i = 0; i < n; i++) {
        const nn_node *nd = &g->nodes[i];
        if (is_view_node(m, i)) continue;
        int s = c->per_image[i];
        for (int k = 0; k < nd->n_inputs; k++) {
            if (!is_runtime(g, nd->inputs[k])) continue;
            int r = m->buffer_of[nd->inputs[k]];
            int prod = g->tensors[r].producer;
            if (s == SPACE_BATCH) {
                USE(r, SPACE_BATCH, i, i);
                if (prod >= 0 && c->per_image[prod])
                    USE(r, SPACE_BATCH, c->segs[seg_of[prod]].first, i);
                continue;
            }
            const segment *sg = &c->segs[seg_of[i]];
            if (prod >= sg->first) {
                USE(r, SPACE_IMAGE, i, i); /* made in this segment */
                continue;
            }
            /* From outside the segment: copied in from the batch buffer before each image. */
            USE(r, SPACE_IMAGE, sg->first, i);
            USE(r, SPACE_BATCH, sg->first, sg->end - 1);
            if (prod >= 0 && c->per_image[prod]) {
                const segment *ps = &c->segs[seg_of[prod]];
                USE(r, SPACE_BATCH, ps->first, ps->end - 1);
            }
        }
    }
    for (int k = 0; k < g->n_outputs; k++) {
        int r = m->buffer_of[g->outputs[k]];
        if (!is_runtime(g, r)) continue;
        int prod = g->tensors[r].producer;
        USE(r, SPACE_BATCH, prod >= 0 && c->per_image[prod] ? c->segs[seg_of[prod]].first : prod,
            n);
    }
    /* Copies: an image-space root whose batch buffer is used is copied out at the end of each
     * image of its segment (so its image buffer lives until then). */
    c->copy_roots = malloc((size_t)(nt * 2 + 1) * sizeof *c->copy_roots);
    if (!c->copy_roots) {
        rc = base_error_set(BASE_ERR_NOMEM, "context plan");
        goto done;
    }
    int nc = 0;
    for (int sgi = 0; sgi < c->n_segs; sgi++) {
        segment *sg = &c->segs[sgi];
        sg->copy_first = nc;
        if (!sg->per_image) continue;
        for (int r = 0; r < nt; r++) {
            if (!is_runtime(g, r) || m->buffer_of[r] != r || last[r][SPACE_IMAGE] < sg->first)
                continue;
            int prod = g->tensors[r].producer;
            if (prod >= sg->first) continue;
            /* read in this segment? (its image buffer is in use here and it comes from outside) */
            int read = 0;
            for (int i = sg->first; i < sg->end && !read; i++) {
                const nn_node *nd = &g->nodes[i];
                if (is_view_node(m, i)) continue;
                for (int k = 0; k < nd->n_inputs; k++)
                    if (is_runtime(g, nd->inputs[k]) && m->buffer_of[nd->inputs[k]] == r) read = 1;
            }
            if (read) c->copy_roots[nc++] = r;
        }
        sg->n_in = nc - sg->copy_first;
        for (int r = 0; r < nt; r++) {
            int prod = g->tensors[r].producer;
            if (prod < sg->first || prod >= sg->end || m->buffer_of[r] != r ||
                is_view_node(m, prod))
                continue;
            if (last[r][SPACE_BATCH] < 0) continue;
            c->copy_roots[nc++] = r;
            if (last[r][SPACE_IMAGE] < sg->end - 1) last[r][SPACE_IMAGE] = sg->end - 1;
        }
        sg->n_out = nc - sg->copy_first - sg->n_in;
    }
#undef USE
    /* Intervals, then the sweep. Graph inputs' batch buffers are the caller-visible inputs. */
    int ni = 0;
    for (int t = 0; t < nt; t++) {
        if (!is_runtime(g, t) || m->buffer_of[t] != t) continue;
        for (int s = 0; s < 2; s++) {
            if (last[t][s] < 0 && first[t][s] == INT_MAX) continue;
            if (s == SPACE_BATCH && g->tensors[t].producer < 0) continue;
            int f = first[t][s] < 0 ? 0 : first[t][s];
            int l = last[t][s] < f ? f : last[t][s];
            iv[ni++] = (interval){f, l, t, s};
        }
    }
    for (int pos = 0; pos < n && !rc; pos++) {
        for (int k = 0; k < ni; k++)
            if (iv[k].first == pos)
                offset[iv[k].root][iv[k].space] = plan_alloc(
                    &p, tensor_bytes(g, iv[k].root, iv[k].space == SPACE_IMAGE ? 1 : c->max_batch));
        for (int k = 0; k < ni && !rc; k++)
            if (iv[k].last == pos)
                rc = plan_free(
                    &p, offset[iv[k].root][iv[k].space],
                    tensor_bytes(g, iv[k].root, iv[k].space == SPACE_IMAGE ? 1 : c->max_batch));
    }
    if (rc) goto done;
    /* Every tensor of a model file may hold up to NN_MAX_ELEMENTS (graph.c), so a few hundred
     * bytes of model.json can ask for gigabytes here: a 2x2 input resized to 30000x30000 plans
     * a 3.6 GB arena (tests/fuzz/corpus/model/resize-3.6gb-arena). Refuse a plan over
     * ARENA_MAX_PER_IMAGE per image of the batch: over 30 times what the largest model of the
     * pack needs (gear: 7.3 MB). */
    if (p.end / (size_t)c->max_batch > ARENA_MAX_PER_IMAGE) {
        rc = base_error_set(BASE_ERR_LIMIT,
                            "context: the model's activations need %zu bytes for a batch of %d, "
                            "more than the limit of %zu per image",
                            p.end, c->max_batch, (size_t)ARENA_MAX_PER_IMAGE);
        goto done;
    }
    c->arena_size = p.end;
    c->arena = base_aligned_alloc(ARENA_ALIGN, p.end ? p.end : ARENA_ALIGN);
    if (!c->arena) {
        rc = base_error_set(BASE_ERR_NOMEM, "context: arena of %zu bytes", p.end);
        goto done;
    }
    memset(c->arena, 0, p.end);
    /* Pointers: constants are the same in both spaces; a view uses its root's buffers. */
    for (int t = 0; t < nt; t++) {
        const nn_tensor *ten = &g->tensors[t];
        if (ten->data) {
            c->data[0][t] = c->data[1][t] = ten->data;
            continue;
        }
        int r = m->buffer_of[t];
        for (int k = 0; k < ni; k++)
            if (iv[k].root == r)
                c->data[iv[k].space][t] = (float *)(c->arena + offset[r][iv[k].space]);
        if (g->tensors[r].producer < 0)
            for (int k = 0; k < g->n_inputs; k++)
                if (g->inputs[k] == r) c->data[SPACE_BATCH][t] = c->inputs[k];
    }
done:
    free(p.blocks);
    free(seg_of);
    free(first);
    free(last);
    free(offset);
    free(iv);
    return rc;
}

static int context_create(const nn_model *m, const nn_context_options *opts, const char *modes,
                          nn_context **out)
{
    *out = NULL;
    const nn_graph *g = m->g;
    nn_context *c = calloc(1, sizeof *c);
    if (!c) return base_error_set(BASE_ERR_NOMEM, "context");
    c->m = m;
    c->max_batch = opts && opts->max_batch > 0 ? opts->max_batch : 1;
    c->backend = opts ? opts->backend : NN_BACKEND_AUTO;
    int rc = 0;
    if (c->max_batch > 4096) {
        rc =
            base_error_set(BASE_ERR_LIMIT, "context: max_batch %d is more than 4096", c->max_batch);
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
    size_t nn1 = (size_t)(g->n_nodes ? g->n_nodes : 1);
    c->data[0] = calloc((size_t)g->n_tensors, sizeof *c->data[0]);
    c->data[1] = calloc((size_t)g->n_tensors, sizeof *c->data[1]);
    c->inputs = calloc((size_t)g->n_inputs, sizeof *c->inputs);
    c->xops = calloc(nn1, sizeof *c->xops);
    c->per_image = calloc(nn1, 1);
    if (!c->data[0] || !c->data[1] || !c->inputs || !c->xops || !c->per_image) {
        rc = base_error_set(BASE_ERR_NOMEM, "context");
        goto fail;
    }
    for (int i = 0; i < g->n_inputs; i++) {
        int t = g->inputs[i];
        /* The same bound as the arena's (plan_context): a model file sets the input's size. */
        if (tensor_bytes(g, t, 1) > ARENA_MAX_PER_IMAGE) {
            rc = base_error_set(BASE_ERR_LIMIT,
                                "context: input %s of %zu bytes per image, more "
                                "than the limit of %zu",
                                g->tensors[t].name, tensor_bytes(g, t, 1),
                                (size_t)ARENA_MAX_PER_IMAGE);
            goto fail;
        }
        c->inputs[i] = base_aligned_alloc(ARENA_ALIGN, tensor_bytes(g, t, c->max_batch));
        if (!c->inputs[i]) {
            rc = base_error_set(BASE_ERR_NOMEM, "context: input %s", g->tensors[t].name);
            goto fail;
        }
        memset(c->inputs[i], 0, tensor_bytes(g, t, c->max_batch));
    }
    nn_schedule sched = opts ? opts->schedule : NN_SCHEDULE_AUTO;
    if (opts && opts->whole_batch) sched = NN_SCHEDULE_WHOLE_BATCH;
    if (modes) {
        for (int i = 0; i < g->n_nodes; i++)
            c->per_image[i] = modes[i] != 0;
    } else if (c->max_batch > 1 && sched == NN_SCHEDULE_PER_IMAGE) {
        memset(c->per_image, 1, nn1);
    } else if (sched == NN_SCHEDULE_AUTO && (rc = choose_schedule(m, c->max_batch, c->per_image))) {
        goto fail;
    }
    /* Nodes without a batch dimension (constant-shaped results) run once, in batch space. */
    for (int i = 0; i < g->n_nodes; i++)
        if (!has_batch_dim(g, g->nodes[i].output)) c->per_image[i] = 0;
    if ((rc = plan_context(c))) goto fail;
    /* Winograd nodes share one scratch buffer: a slice per intra-op thread, sized for the
     * largest of them (it does not depend on the batch). */
    for (int i = 0; i < g->n_nodes; i++) {
        if (!g->nodes[i].wino) continue;
        size_t need = nn_wino_scratch_floats(g, &g->nodes[i]) * (size_t)(threads > 1 ? threads : 1);
        if (need > c->scratch_floats) c->scratch_floats = need;
    }
    if (c->scratch_floats &&
        !(c->scratch = base_aligned_alloc(ARENA_ALIGN, c->scratch_floats * sizeof(float)))) {
        rc = base_error_set(BASE_ERR_NOMEM, "context: scratch of %zu floats", c->scratch_floats);
        goto fail;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        if (c->backend == NN_BACKEND_REFERENCE || !m->on_xnnpack[i]) continue;
        if ((rc = nn_xnn_create(g, &g->nodes[i], &c->xops[i]))) goto fail;
    }
    *out = c;
    return 0;
fail:
    nn_context_destroy(c);
    return rc;
}

int nn_context_create(const nn_model *m, const nn_context_options *opts, nn_context **out)
{
    return context_create(m, opts, NULL, out);
}

int nn_context_create_scheduled(const nn_model *m, const nn_context_options *opts,
                                const char *per_image, nn_context **out)
{
    return context_create(m, opts, per_image, out);
}

int nn_context_node_per_image(const nn_context *c, int node)
{
    return node >= 0 && node < c->m->g->n_nodes ? c->per_image[node] : -1;
}

float *nn_context_input(nn_context *c, int index)
{
    if (index < 0 || index >= c->m->g->n_inputs) return NULL;
    return c->inputs[index];
}

size_t nn_context_arena_bytes(const nn_context *c)
{
    return c->arena_size;
}

static void make_view(const nn_context *c, int t, int batch, int space, nn_view *v)
{
    const nn_graph *g = c->m->g;
    if (t < 0) {
        memset(v, 0, sizeof *v);
        return;
    }
    v->shape = g->tensors[t].shape;
    if (v->shape.rank > 0 && v->shape.dim[0] == NN_BATCH)
        v->shape.dim[0] = space == SPACE_IMAGE ? 1 : batch;
    v->data = c->data[space][t];
}

/* Sets up the XNNPACK operators of one space (image space: batch 1, once). */
static int setup_ops(nn_context *c, int space, int batch)
{
    const nn_graph *g = c->m->g;
    nn_view in[NN_MAX_NODE_INPUTS], out;
    for (int i = 0; i < g->n_nodes; i++) {
        if (!c->xops[i] || c->per_image[i] != space) continue;
        const nn_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++)
            make_view(c, n->inputs[k], batch, space, &in[k]);
        make_view(c, n->output, batch, space, &out);
        int rc = nn_xnn_setup(c->xops[i], g, n, in, &out, c->pool);
        if (rc) return rc;
    }
    return 0;
}

/* Nodes [first, end) in one space; `batch` is the run's batch (image space: 1). */
static int run_nodes(nn_context *c, int first, int end, int batch, int space)
{
    const nn_graph *g = c->m->g;
    nn_view in[NN_MAX_NODE_INPUTS], out;
    for (int i = first; i < end; i++) {
        const nn_node *n = &g->nodes[i];
        if (is_view_node(c->m, i)) continue;
        uint64_t t0 = c->profile_ns ? base_now_ns() : 0;
        int rc;
        if (c->xops[i]) {
            rc = nn_xnn_run(c->xops[i], c->pool);
        } else {
            for (int k = 0; k < n->n_inputs; k++)
                make_view(c, n->inputs[k], batch, space, &in[k]);
            make_view(c, n->output, batch, space, &out);
            if (n->wino && c->backend != NN_BACKEND_REFERENCE)
                rc = nn_wino_run(g, n, in, &out, c->pool, c->scratch, c->scratch_floats);
            else if (c->m->on_fast[i] && c->backend != NN_BACKEND_REFERENCE)
                rc = nn_fast_run(g, n, in, &out, c->pool);
            else
                rc = nn_ref_run(g, n, in, &out);
        }
        if (rc) return rc;
        if (c->profile_ns) c->profile_run_ns[i] += base_now_ns() - t0;
    }
    return 0;
}

/* Copies image b of root r between its buffers (to_image: batch -> image). A tensor without a
 * batch dimension is the same for every image. */
static void copy_image(const nn_context *c, int r, int b, int to_image)
{
    const nn_graph *g = c->m->g;
    size_t per = (size_t)nn_shape_numel(&g->tensors[r].shape, 1);
    float *batch_buf = c->data[SPACE_BATCH][r] + (has_batch_dim(g, r) ? (size_t)b * per : 0);
    if (to_image)
        memcpy(c->data[SPACE_IMAGE][r], batch_buf, per * sizeof(float));
    else
        memcpy(batch_buf, c->data[SPACE_IMAGE][r], per * sizeof(float));
}

int nn_context_run(nn_context *c, int batch)
{
    if (batch < 1 || batch > c->max_batch)
        return base_error_set(BASE_ERR_INVALID, "run: batch %d outside 1..%d", batch, c->max_batch);
    int rc;
    if (!c->image_setup) {
        if ((rc = setup_ops(c, SPACE_IMAGE, 1))) return rc;
        c->image_setup = 1;
    }
    if (c->setup_batch != batch) {
        c->setup_batch = 0;
        if ((rc = setup_ops(c, SPACE_BATCH, batch))) return rc;
        c->setup_batch = batch;
    }
    for (int s = 0; s < c->n_segs; s++) {
        const segment *sg = &c->segs[s];
        if (!sg->per_image) {
            if ((rc = run_nodes(c, sg->first, sg->end, batch, SPACE_BATCH))) return rc;
            continue;
        }
        const int *in = c->copy_roots + sg->copy_first, *out = in + sg->n_in;
        for (int b = 0; b < batch; b++) {
            for (int k = 0; k < sg->n_in; k++)
                copy_image(c, in[k], b, 1);
            if ((rc = run_nodes(c, sg->first, sg->end, 1, SPACE_IMAGE))) return rc;
            for (int k = 0; k < sg->n_out; k++)
                copy_image(c, out[k], b, 0);
        }
    }
    if (c->profile_ns) {
        for (int i = 0; i < c->m->g->n_nodes; i++) {
            c->profile_ns[i] += c->profile_run_ns[i];
            if (!c->profile_runs || c->profile_run_ns[i] < c->profile_min_ns[i])
                c->profile_min_ns[i] = c->profile_run_ns[i];
            c->profile_run_ns[i] = 0;
        }
        c->profile_runs++;
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
        if (info->rank > 0 && info->dim[0] == NN_BATCH)
            info->dim[0] = c->last_batch ? c->last_batch : 1;
    }
    return c->data[SPACE_BATCH][t];
}

int nn_context_set_profiling(nn_context *c, int enable)
{
    free(c->profile_ns);
    free(c->profile_run_ns);
    free(c->profile_min_ns);
    c->profile_ns = c->profile_run_ns = c->profile_min_ns = NULL;
    c->profile_runs = 0;
    if (!enable) return 0;
    size_t n = (size_t)(c->m->g->n_nodes ? c->m->g->n_nodes : 1);
    c->profile_ns = calloc(n, sizeof *c->profile_ns);
    c->profile_run_ns = calloc(n, sizeof *c->profile_run_ns);
    c->profile_min_ns = calloc(n, sizeof *c->profile_min_ns);
    if (c->profile_ns && c->profile_run_ns && c->profile_min_ns) return 0;
    nn_context_set_profiling(c, 0);
    return base_error_set(BASE_ERR_NOMEM, "profile");
}

void nn_context_print_profile(const nn_context *c, FILE *f)
{
    const nn_graph *g = c->m->g;
    if (!c->profile_ns || c->profile_runs == 0) return;
    uint64_t total = 0;
    for (int i = 0; i < g->n_nodes; i++)
        total += c->profile_ns[i];
    fprintf(f, "%-4s %-18s %-7s %-5s %-20s %9s %6s %8s %9s  %s\n", "node", "op", "backend", "space",
            "output", "ms/run", "share", "GFLOP/s", "min ms", "name");
    for (int i = 0; i < g->n_nodes; i++) {
        const nn_node *n = &g->nodes[i];
        double ms = (double)c->profile_ns[i] / 1e6 / c->profile_runs;
        char shape[64];
        nn_shape s = g->tensors[n->output].shape;
        if (s.dim[0] == NN_BATCH) s.dim[0] = c->last_batch;
        double gflops = ms > 0 ? 2.0 * (double)nn_node_macs(g, n) * c->last_batch / (ms * 1e6) : 0;
        const char *backend = c->xops[i]                                               ? "xnnpack"
                              : n->wino && c->backend != NN_BACKEND_REFERENCE          ? "wino"
                              : c->m->on_fast[i] && c->backend != NN_BACKEND_REFERENCE ? "fast"
                                                                                       : "ref";
        fprintf(f, "%-4d %-18s %-7s %-5s %-20s %9.4f %5.1f%% %8.1f %9.4f  %s\n", i,
                nn_node_kind_name(n), backend, c->per_image[i] ? "image" : "batch",
                nn_shape_str(&s, shape, sizeof shape), ms,
                total ? 100.0 * (double)c->profile_ns[i] / (double)total : 0.0, gflops,
                (double)c->profile_min_ns[i] / 1e6, n->name);
    }
    fprintf(f, "total %.3f ms per run over %d runs\n", (double)total / 1e6 / c->profile_runs,
            c->profile_runs);
}
