/*
 * bench_gallery — the gallery's 1:N search against FAISS on the same data, in the same run:
 * the exact scan, the HNSW graph that serves large collections, and FAISS's flat and HNSW
 * indexes.
 *
 * Data, dim 192 and 512, N = 20k, 100k and 1M, each face in one of N/4 subjects:
 *   random     random unit vectors (Gaussian, normalised); queries are independent random
 *              unit vectors (the hard case for ranking, whose best matches are separated by
 *              small gaps, and the worst case for a graph index: no neighbourhoods).
 *   clustered  like face embeddings: each subject has a random unit centre and each of its
 *              faces is normalise(centre + 0.73 x a random unit vector), so two faces of one
 *              subject have cosine ~0.65 (0.6-0.7, as two photos of one person); queries are
 *              fresh samples of random enrolled subjects drawn the same way.
 * Each (data, N, dim) gallery is built once into build/bench-gallery/ and reused; so is its
 * ground truth (the exact top-10 by f64 brute force over the f32 vectors). Everything is
 * seeded: the same files every time.
 *
 * Per gallery: for the random data each storage type f32, f16, int8 (the collection's type is
 * switched, then the gallery is reopened), for the clustered data int8 (the default): start-up
 * load time from SQLite (page cache warm), index bytes per face, search latency p50/p99 with 1
 * query and with 16 queries per call on one thread (k = 10, results re-scored exactly as the
 * product does), recall@1 and recall@10 against the ground truth. Then, at N >= 100k (or every
 * size given with --sizes), the same with the HNSW graph ("vultus-hnsw": int8, opened with
 * ann_min_faces = 1, timed once the graph is built, at each efSearch of --ef set on the live
 * graph): its build time and bytes per face (built once per thread count of --build-threads,
 * default 1: the build's insertion threads). Insert throughput is measured on a fresh gallery
 * per dimension. Then the FAISS peer (faiss_peer.cpp: IndexFlatIP at every N, HNSW32 at N <=
 * --faiss-hnsw-max) runs on the same vectors, read from the same SQLite file, and the same
 * queries.
 *
 * --ann-only runs just the HNSW comparison (int8 exact scan, vultus-hnsw, FAISS) without the
 * f32/f16 runs and the inserts, by default at N = 100k and 1M, dim 192.
 *
 * Output: one JSON line per measurement (also appended to results.jsonl), then a table with
 * the ratio FAISS flat p50 / this engine's p50, then a table of the graph indexes against
 * the exact scan.
 *
 * usage: bench_gallery [--data DIR] [--peer PATH] [--sizes 20000,100000,1000000]
 *                      [--dims 192,512] [--seconds S] [--datasets random,clustered]
 *                      [--ef 64,128,256] [--faiss-hnsw-max N] [--build-timeout S] [--ann-only]
 *                      [--build-threads 1,2]
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "gallery/gallery.h"

#define K 10
#define MAX_LINES 512
#define MAX_LIST 8
#define EF_MAX 100000 /* beyond this a graph search is a slow exact scan */
/* Clustered data: the length of a face's noise against its subject's unit centre. Two faces
 * of one subject then have cosine about 1 / (1 + 0.73^2) = 0.65. */
#define NOISE_RADIUS 0.73

static const char *data_dir = "build/bench-gallery";
static const char *peer_path = NULL;
static double seconds = 2.0;
static double build_timeout = 3600;
static FILE *results;

/* The data sets; the prefixes name their files (the random set's are those of earlier runs). */
enum data_kind { DATA_RANDOM, DATA_CLUSTERED };
struct dataset {
    enum data_kind kind;
    const char *name;
    const char *model;
    const char *db_prefix, *query_prefix;
};
static const struct dataset datasets_known[] = {
    {DATA_RANDOM, "random", "bench-random", "g", "q"},
    {DATA_CLUSTERED, "clustered", "bench-clustered", "c", "qc"},
};

/* Lines kept for the tables. ef: 0 for the exact engines; build_s, load_s, ann_bytes: NAN
 * where they do not apply. */
struct line {
    char data[12];
    char engine[16];
    char dtype[8];
    size_t n;
    unsigned dim, ef;
    int queries;
    double p50, p99, recall1, recall10, bytes, load_s, build_s, ann_bytes;
};
static struct line lines[MAX_LINES];
static size_t line_count;

/* ---- data ------------------------------------------------------------------------------ */

struct rng {
    uint64_t state;
};

static uint64_t rng_u64(struct rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_uniform(struct rng *r)
{
    return ((rng_u64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static void normalise(float *x, size_t dim)
{
    double s = 0;
    for (size_t i = 0; i < dim; i++)
        s += (double)x[i] * x[i];
    s = 1.0 / sqrt(s);
    for (size_t i = 0; i < dim; i++)
        x[i] = (float)(x[i] * s);
}

static void random_unit(struct rng *r, float *x, size_t dim)
{
    for (size_t i = 0; i < dim; i += 2) {
        double u = rng_uniform(r), v = rng_uniform(r), m = sqrt(-2.0 * log(u));
        x[i] = (float)(m * cos(2.0 * M_PI * v));
        if (i + 1 < dim) x[i + 1] = (float)(m * sin(2.0 * M_PI * v));
    }
    normalise(x, dim);
}

static float *alloc_floats(size_t n, size_t dim)
{
    float *x = malloc(n * dim * sizeof *x);
    if (!x) {
        fprintf(stderr, "bench: cannot allocate %zu x %zu floats\n", n, dim);
        exit(1);
    }
    return x;
}

static float *make_vectors(uint64_t seed, size_t n, size_t dim)
{
    float *x = alloc_floats(n, dim);
    struct rng r = {seed};
    for (size_t i = 0; i < n; i++)
        random_unit(&r, x + i * dim, dim);
    return x;
}

static uint64_t data_seed(size_t n, size_t dim)
{
    return 1000003ull * n + dim;
}

static uint64_t query_seed(size_t n, size_t dim)
{
    return 7777777ull * n + dim + 1;
}

static size_t subject_count(size_t n)
{
    return n / 4 ? n / 4 : 1;
}

/* A subject's centre from its own generator, so that queries can draw any subject again
 * without the others (the mixing step starts each subject's stream at an unrelated state). */
static void subject_centre(size_t n, size_t dim, size_t subject, float *centre)
{
    struct rng mix = {data_seed(n, dim) ^ (0x632be59bd9b4e019ull * (subject + 1))};
    struct rng r = {rng_u64(&mix)};
    random_unit(&r, centre, dim);
}

/* x = normalise(centre + NOISE_RADIUS * a random unit vector) */
static void noisy_sample(struct rng *r, const float *centre, float *x, size_t dim)
{
    random_unit(r, x, dim);
    for (size_t i = 0; i < dim; i++)
        x[i] = (float)(centre[i] + NOISE_RADIUS * x[i]);
    normalise(x, dim);
}

/* The gallery's n vectors in insertion order; face i belongs to subject i % (n / 4). */
static float *make_data(const struct dataset *ds, size_t n, size_t dim)
{
    if (ds->kind == DATA_RANDOM) return make_vectors(data_seed(n, dim), n, dim);
    float *x = alloc_floats(n, dim), *centre = alloc_floats(1, dim);
    struct rng r = {~data_seed(n, dim)};
    size_t subjects = subject_count(n);
    for (size_t s = 0; s < subjects; s++) {
        subject_centre(n, dim, s, centre);
        for (size_t i = s; i < n; i += subjects)
            noisy_sample(&r, centre, x + i * dim, dim);
    }
    free(centre);
    return x;
}

static float *make_queries(const struct dataset *ds, size_t n, size_t dim, size_t nq)
{
    if (ds->kind == DATA_RANDOM) return make_vectors(query_seed(n, dim), nq, dim);
    float *q = alloc_floats(nq, dim), *centre = alloc_floats(1, dim);
    struct rng r = {query_seed(n, dim)};
    for (size_t i = 0; i < nq; i++) {
        subject_centre(n, dim, (size_t)(rng_u64(&r) % subject_count(n)), centre);
        noisy_sample(&r, centre, q + i * dim, dim);
    }
    free(centre);
    return q;
}

/* ---- helpers --------------------------------------------------------------------------- */

static double now_s(void)
{
    return (double)base_now_ns() / 1e9;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double percentile(double *v, size_t n, double p)
{
    qsort(v, n, sizeof *v, compare_double);
    size_t i = (size_t)ceil(p * (double)n) - 1;
    return v[i < n ? i : n - 1];
}

static void die(const char *what)
{
    fprintf(stderr, "bench: %s: %s\n", what, base_error_message());
    exit(1);
}

static void emit(const char *json)
{
    printf("%s\n", json);
    fflush(stdout);
    if (results) {
        fprintf(results, "%s\n", json);
        fflush(results);
    }
}

static void keep(const struct line *l)
{
    if (line_count < MAX_LINES) lines[line_count++] = *l;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- building a gallery once ------------------------------------------------------------ */

static void remove_db(const char *db)
{
    char p[700];
    unlink(db);
    snprintf(p, sizeof p, "%s-wal", db);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", db);
    unlink(p);
}

/* Fills a gallery with n faces in n/4 subjects (face i in subject i % (n/4)); returns faces
 * per second of the build. */
static double fill(struct gal *g, const char *collection, const char *model, const float *x,
                   size_t n, size_t dim, size_t batch, int64_t *first_id)
{
    size_t subjects = subject_count(n);
    char(*ids)[24] = malloc(subjects * sizeof *ids);
    const char **id_ptrs = malloc(subjects * sizeof *id_ptrs);
    for (size_t s = 0; s < subjects; s++) {
        snprintf(ids[s], sizeof ids[s], "s%08zu", s);
        id_ptrs[s] = ids[s];
    }
    for (size_t s = 0; s < subjects; s += 50000) {
        size_t m = subjects - s < 50000 ? subjects - s : 50000;
        if (gal_subjects_add(g, collection, id_ptrs + s, NULL, m) != 0) die("add subjects");
    }
    struct gal_face_input *in = calloc(batch, sizeof *in);
    int64_t *face_ids = malloc(batch * sizeof *face_ids);
    double t0 = now_s();
    for (size_t i = 0; i < n; i += batch) {
        size_t m = n - i < batch ? n - i : batch;
        for (size_t j = 0; j < m; j++) {
            in[j].subject_id = ids[(i + j) % subjects];
            in[j].model_id = model;
            in[j].dim = (uint32_t)dim;
            in[j].embedding = x + (i + j) * dim;
            in[j].box[2] = in[j].box[3] = 112;
            in[j].quality = 1;
        }
        if (gal_faces_add(g, collection, in, m, face_ids) != 0) die("add faces");
        if (i == 0) *first_id = face_ids[0];
        if (n >= 200000 && (i / batch) % 20 == 0)
            fprintf(stderr, "\rbench: building %zu x %zu: %zu%%", n, dim, i * 100 / n);
    }
    double rate = (double)n / (now_s() - t0);
    if (n >= 200000) fprintf(stderr, "\rbench: building %zu x %zu: done     \n", n, dim);
    free(in);
    free(face_ids);
    free(ids);
    free(id_ptrs);
    return rate;
}

struct built {
    char db[600];
    int64_t first_id;
    double build_rate;
};

static void build_gallery(const struct dataset *ds, size_t n, size_t dim, struct built *b)
{
    char marker[640];
    snprintf(b->db, sizeof b->db, "%s/%s%zu_%zu.db", data_dir, ds->db_prefix, dim, n);
    snprintf(marker, sizeof marker, "%s.ok", b->db);
    FILE *f = fopen(marker, "r");
    if (f) {
        int ok = fscanf(f, "%lld %lf", (long long *)&b->first_id, &b->build_rate) == 2;
        fclose(f);
        if (ok && file_exists(b->db)) return;
    }
    remove_db(b->db);
    float *x = make_data(ds, n, dim);
    struct gal *g;
    /* Built once, as set-up: commits need not reach the disk one by one. */
    struct gal_options opts = {.durability = GAL_DURABLE_PROCESS};
    if (gal_open(b->db, &opts, &g) != 0) die(b->db);
    struct gal_collection_info info;
    memset(&info, 0, sizeof info);
    snprintf(info.name, sizeof info.name, "bench");
    snprintf(info.model_id, sizeof info.model_id, "%s", ds->model);
    info.dim = (uint32_t)dim;
    info.dtype = GAL_DTYPE_INT8;
    info.threshold = 0.5f;
    if (gal_collection_create(g, &info) != 0) die("create");
    b->build_rate = fill(g, "bench", ds->model, x, n, dim, 10000, &b->first_id);
    gal_close(g);
    free(x);
    f = fopen(marker, "w");
    if (!f) {
        fprintf(stderr, "bench: cannot write %s: %s\n", marker, strerror(errno));
        exit(1);
    }
    fprintf(f, "%lld %.1f\n", (long long)b->first_id, b->build_rate);
    fclose(f);
}

/* ---- ground truth ---------------------------------------------------------------------- */

struct gt_job {
    const float *x, *q;
    size_t n, dim, q_from, q_to;
    int32_t *gt; /* nq x K positions */
};

static void *gt_worker(void *arg)
{
    struct gt_job *j = arg;
    size_t nq = j->q_to - j->q_from;
    double *best = malloc(nq * K * sizeof *best);
    int32_t *pos = malloc(nq * K * sizeof *pos);
    for (size_t i = 0; i < nq * K; i++) {
        best[i] = -INFINITY;
        pos[i] = -1;
    }
    for (size_t start = 0; start < j->n; start += 256) {
        size_t end = start + 256 < j->n ? start + 256 : j->n;
        for (size_t qi = 0; qi < nq; qi++) {
            const float *q = j->q + (j->q_from + qi) * j->dim;
            double *b = best + qi * K;
            int32_t *p = pos + qi * K;
            for (size_t v = start; v < end; v++) {
                const float *x = j->x + v * j->dim;
                double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                size_t d = 0;
                for (; d + 4 <= j->dim; d += 4) {
                    s0 += (double)q[d] * x[d];
                    s1 += (double)q[d + 1] * x[d + 1];
                    s2 += (double)q[d + 2] * x[d + 2];
                    s3 += (double)q[d + 3] * x[d + 3];
                }
                for (; d < j->dim; d++)
                    s0 += (double)q[d] * x[d];
                double s = (s0 + s1) + (s2 + s3);
                if (s <= b[K - 1]) continue; /* ties keep the lower position, as the index */
                int t = K - 1;
                while (t > 0 && s > b[t - 1]) {
                    b[t] = b[t - 1];
                    p[t] = p[t - 1];
                    t--;
                }
                b[t] = s;
                p[t] = (int32_t)v;
            }
        }
    }
    memcpy(j->gt + j->q_from * K, pos, nq * K * sizeof *pos);
    free(best);
    free(pos);
    return NULL;
}

/* Queries and their exact top-10 (positions in insertion order), cached in a file:
 * "VGQ1", u32 nq, u32 dim, u32 k, f32 queries[nq][dim], i32 gt[nq][k]. */
static void queries_for(const struct dataset *ds, size_t n, size_t dim, char *path,
                        size_t path_size, float **queries, int32_t **gt, size_t *nq)
{
    snprintf(path, path_size, "%s/%s%zu_%zu.bin", data_dir, ds->query_prefix, dim, n);
    FILE *f = fopen(path, "rb");
    if (f) {
        char magic[4];
        uint32_t h[3];
        if (fread(magic, 1, 4, f) == 4 && memcmp(magic, "VGQ1", 4) == 0 && fread(h, 4, 3, f) == 3 &&
            h[1] == dim && h[2] == K) {
            *nq = h[0];
            *queries = malloc(*nq * dim * sizeof **queries);
            *gt = malloc(*nq * K * sizeof **gt);
            if (fread(*queries, sizeof **queries, *nq * dim, f) == *nq * dim &&
                fread(*gt, sizeof **gt, *nq * K, f) == *nq * K) {
                fclose(f);
                return;
            }
            free(*queries);
            free(*gt);
        }
        fclose(f);
    }
    *nq = n >= 1000000 ? 320 : 1008; /* multiples of 16 */
    fprintf(stderr, "bench: exact top-%d of %zu %s queries over %zu x %zu (once)...\n", K, *nq,
            ds->name, n, dim);
    *queries = make_queries(ds, n, dim, *nq);
    *gt = malloc(*nq * K * sizeof **gt);
    float *x = make_data(ds, n, dim);
    struct gt_job jobs[2];
    pthread_t threads[2];
    for (int t = 0; t < 2; t++) {
        jobs[t] = (struct gt_job){
            x, *queries, n, dim, *nq * (size_t)t / 2, *nq * (size_t)(t + 1) / 2, *gt};
        pthread_create(&threads[t], NULL, gt_worker, &jobs[t]);
    }
    for (int t = 0; t < 2; t++)
        pthread_join(threads[t], NULL);
    free(x);
    f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "bench: cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
    uint32_t h[3] = {(uint32_t)*nq, (uint32_t)dim, K};
    fwrite("VGQ1", 1, 4, f);
    fwrite(h, 4, 3, f);
    fwrite(*queries, sizeof **queries, *nq * dim, f);
    fwrite(*gt, sizeof **gt, *nq * K, f);
    fclose(f);
}

/* ---- measurements ---------------------------------------------------------------------- */

struct timing {
    double p50[2], p99[2]; /* [0]: 1 query per call, [1]: 16 */
    size_t samples[2];
    double recall1, recall10;
    size_t judged;
};

/* Keeps one row of the table: timing `tm`, with 1 (i = 0) or 16 (i = 1) queries per call. */
static void keep_timing(const char *data, const char *engine, const char *dtype, size_t n,
                        size_t dim, unsigned ef, const struct timing *tm, int i, double bytes,
                        double load_s, double build_s, double ann_bytes)
{
    struct line l = {.n = n,
                     .dim = (unsigned)dim,
                     .ef = ef,
                     .queries = i ? 16 : 1,
                     .p50 = tm->p50[i],
                     .p99 = tm->p99[i],
                     .recall1 = tm->recall1,
                     .recall10 = tm->recall10,
                     .bytes = bytes,
                     .load_s = load_s,
                     .build_s = build_s,
                     .ann_bytes = ann_bytes};
    snprintf(l.data, sizeof l.data, "%s", data);
    snprintf(l.engine, sizeof l.engine, "%s", engine);
    snprintf(l.dtype, sizeof l.dtype, "%s", dtype);
    keep(&l);
}

/* Latency with 1 and 16 queries per call on this thread, and recall over every query. */
static void time_searches(struct gal *g, const struct built *b, const char *model, size_t dim,
                          const float *queries, const int32_t *gt, size_t nq, struct timing *out)
{
    /* 16 queries per call: every query once (for recall), then more rounds for timing. */
    size_t cap = 4096, ns16 = 0, ns1 = 0;
    double *t16 = malloc(cap * sizeof *t16), *t1 = malloc(cap * sizeof *t1);
    double recall1 = 0, recall10 = 0;
    struct gal_search_request req = {
        .model_id = model, .dim = (uint32_t)dim, .embeddings = queries, .query_count = 16, .k = K};
    struct gal_results *res;
    if (gal_search(g, "bench", &req, &res) != 0) die("search"); /* warm-up */
    gal_results_destroy(res);
    double start = now_s();
    size_t batches = nq / 16;
    for (size_t r = 0; ns16 < cap; r++) {
        size_t s = (r % batches) * 16;
        req.embeddings = queries + s * dim;
        req.query_count = 16;
        double t = now_s();
        if (gal_search(g, "bench", &req, &res) != 0) die("search");
        t16[ns16++] = (now_s() - t) * 1e3;
        for (size_t i = 0; r < batches && i < 16; i++) {
            const struct gal_query_result *qr = &res->queries[i];
            const int32_t *want = gt + (s + i) * K;
            recall1 += qr->face_count && qr->faces[0].face_id == b->first_id + want[0];
            for (size_t a = 0; a < K; a++)
                for (size_t c = 0; c < qr->face_count; c++)
                    recall10 += qr->faces[c].face_id == b->first_id + want[a];
        }
        gal_results_destroy(res);
        if (r + 1 >= batches && ns16 >= 20 && now_s() - start > seconds) break;
    }
    out->judged = nq / 16 * 16;
    out->recall1 = recall1 / (double)out->judged;
    out->recall10 = recall10 / (double)(out->judged * K);
    /* 1 query per call. */
    start = now_s();
    for (size_t i = 0; ns1 < cap; i++) {
        req.embeddings = queries + (i % nq) * dim;
        req.query_count = 1;
        double t = now_s();
        if (gal_search(g, "bench", &req, &res) != 0) die("search");
        t1[ns1++] = (now_s() - t) * 1e3;
        gal_results_destroy(res);
        if (ns1 >= 30 && now_s() - start > seconds) break;
    }
    out->p50[0] = percentile(t1, ns1, 0.5);
    out->p99[0] = percentile(t1, ns1, 0.99);
    out->p50[1] = percentile(t16, ns16, 0.5);
    out->p99[1] = percentile(t16, ns16, 0.99);
    out->samples[0] = ns1;
    out->samples[1] = ns16;
    free(t1);
    free(t16);
}

/* The exact scan with the collection's storage switched to `dtype`. */
static void measure(const struct dataset *ds, const struct built *b, size_t n, size_t dim,
                    enum gal_dtype dtype, const float *queries, const int32_t *gt, size_t nq)
{
    struct gal *g;
    /* never a graph (the default, said explicitly): this is the exact scan */
    struct gal_options opts = {.ann_min_faces = 0};
    if (gal_open(b->db, &opts, &g) != 0) die(b->db);
    if (gal_collection_set_dtype(g, "bench", dtype) != 0) die("set dtype");
    gal_close(g);
    double t0 = now_s();
    if (gal_open(b->db, &opts, &g) != 0) die(b->db);
    double load_s = now_s() - t0;
    struct gal_index_stats st = {0};
    if (gal_index_stats(g, "bench", &st) != 0) die("stats");
    double bytes = (double)st.bytes / (double)st.faces;
    struct timing tm;
    time_searches(g, b, ds->model, dim, queries, gt, nq, &tm);
    gal_close(g);

    const char *dt = gal_dtype_name(dtype);
    char json[1024];
    for (int i = 0; i < 2; i++) {
        int qn = i ? 16 : 1;
        snprintf(json, sizeof json,
                 "{\"bench\":\"gallery\",\"data\":\"%s\",\"engine\":\"vultus\",\"n\":%zu,"
                 "\"dim\":%zu,\"dtype\":\"%s\",\"queries\":%d,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
                 "\"recall1\":%.4f,\"recall10\":%.4f,\"bytes_per_face\":%.1f,\"load_s\":%.3f,"
                 "\"samples\":%zu,\"recall_queries\":%zu,\"kernels\":\"%s\",\"search\":\"%s\","
                 "\"k\":%d}",
                 ds->name, n, dim, dt, qn, tm.p50[i], tm.p99[i], tm.recall1, tm.recall10, bytes,
                 load_s, tm.samples[i], tm.judged, st.kernels, st.search ? st.search : "", K);
        emit(json);
        keep_timing(ds->name, "vultus", dt, n, dim, 0, &tm, i, bytes, load_s, NAN, NAN);
    }
}

/*
 * The HNSW graph: the gallery opened with ann_min_faces = 1, so that it builds the graph at
 * once (in the background; the exact scan serves meanwhile), and searched once the graph
 * serves, at each efSearch in turn (gal_set_ann_ef_search: one build for all of them). The
 * collection must already be int8 (measure() with int8 runs first).
 */
static void measure_hnsw(const struct dataset *ds, const struct built *b, size_t n, size_t dim,
                         const size_t *efs, size_t nefs, unsigned threads, const float *queries,
                         const int32_t *gt, size_t nq)
{
    struct gal *g;
    struct gal_options opts = {
        .ann_min_faces = 1, .ann_ef_search = (unsigned)efs[0], .ann_build_threads = threads};
    double t0 = now_s();
    if (gal_open(b->db, &opts, &g) != 0) die(b->db);
    double load_s = now_s() - t0;
    struct gal_collection_info info;
    if (gal_collection_get(g, "bench", &info) != 0) die("collection");
    if (info.dtype != GAL_DTYPE_INT8) {
        fprintf(stderr, "bench: %s is %s, not int8: the graph is measured on int8\n", b->db,
                gal_dtype_name(info.dtype));
        exit(1);
    }
    struct gal_index_stats st = {0};
    double last_note = t0;
    for (;;) {
        if (gal_index_stats(g, "bench", &st) != 0) die("stats");
        if (st.search && strcmp(st.search, "hnsw") == 0) break;
        double t = now_s();
        if (t - t0 > build_timeout) {
            fprintf(stderr,
                    "bench: the HNSW graph of %s %zu x %zu did not serve within %g s (search: "
                    "%s, %llu faces in the graph); skipped\n",
                    ds->name, n, dim, build_timeout, st.search ? st.search : "?",
                    (unsigned long long)st.ann_faces);
            gal_close(g);
            return;
        }
        if (t - last_note >= 30) {
            fprintf(stderr, "bench: HNSW graph of %s %zu x %zu: building for %.0f s (%s)\n",
                    ds->name, n, dim, t - t0, st.search ? st.search : "?");
            last_note = t;
        }
        usleep(20000);
    }
    double ready_s = now_s() - t0;
    double bytes = (double)st.bytes / (double)st.faces;
    double ann_bytes = st.ann_faces ? (double)st.ann_bytes / (double)st.ann_faces : NAN;
    for (size_t e = 0; e < nefs; e++) {
        unsigned ef = (unsigned)efs[e];
        gal_set_ann_ef_search(g, ef);
        struct timing tm;
        time_searches(g, b, ds->model, dim, queries, gt, nq, &tm);
        char json[1024];
        for (int i = 0; i < 2; i++) {
            int qn = i ? 16 : 1;
            snprintf(json, sizeof json,
                     "{\"bench\":\"gallery\",\"data\":\"%s\",\"engine\":\"vultus-hnsw\","
                     "\"n\":%zu,\"dim\":%zu,\"dtype\":\"int8\",\"queries\":%d,\"p50_ms\":%.3f,"
                     "\"p99_ms\":%.3f,\"recall1\":%.4f,\"recall10\":%.4f,\"bytes_per_face\":%.1f,"
                     "\"ann_bytes_per_face\":%.1f,\"ef\":%u,\"build_s\":%.3f,\"ready_s\":%.3f,"
                     "\"load_s\":%.3f,\"build_threads\":%u,\"ann_faces\":%llu,\"samples\":%zu,"
                     "\"recall_queries\":%zu,\"kernels\":\"%s\",\"search\":\"%s\",\"k\":%d}",
                     ds->name, n, dim, qn, tm.p50[i], tm.p99[i], tm.recall1, tm.recall10, bytes,
                     ann_bytes, ef, st.ann_build_s, ready_s, load_s, threads,
                     (unsigned long long)st.ann_faces, tm.samples[i], tm.judged, st.kernels,
                     st.search, K);
            emit(json);
            keep_timing(ds->name, "vultus-hnsw", "int8", n, dim, ef, &tm, i, bytes, NAN,
                        st.ann_build_s, ann_bytes);
        }
    }
    gal_close(g);
}

/* Enrolment rate on a fresh gallery: batched, and one face per call (each one durable). */
static void measure_inserts(size_t dim)
{
    char db[600];
    snprintf(db, sizeof db, "%s/insert_%zu.db", data_dir, dim);
    const struct {
        size_t faces, batch;
        enum gal_durability durability;
        const char *name;
    } runs[] = {{20000, 1000, GAL_DURABLE_POWER, "full"},
                {300, 1, GAL_DURABLE_POWER, "full"},
                {2000, 1, GAL_DURABLE_PROCESS, "normal"}};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        remove_db(db);
        float *x = make_vectors(42 + r, runs[r].faces, dim);
        struct gal *g;
        struct gal_options opts = {.durability = runs[r].durability};
        if (gal_open(db, &opts, &g) != 0) die(db);
        struct gal_collection_info info;
        memset(&info, 0, sizeof info);
        snprintf(info.name, sizeof info.name, "ins");
        snprintf(info.model_id, sizeof info.model_id, "bench-random");
        info.dim = (uint32_t)dim;
        info.dtype = GAL_DTYPE_INT8;
        info.threshold = 0.5f;
        if (gal_collection_create(g, &info) != 0) die("create");
        int64_t first;
        double rate = fill(g, "ins", "bench-random", x, runs[r].faces, dim, runs[r].batch, &first);
        gal_close(g);
        free(x);
        char json[512];
        snprintf(json, sizeof json,
                 "{\"bench\":\"gallery\",\"engine\":\"vultus\",\"op\":\"insert\",\"dim\":%zu,"
                 "\"dtype\":\"int8\",\"faces\":%zu,\"batch\":%zu,\"synchronous\":\"%s\","
                 "\"faces_per_s\":%.0f}",
                 dim, runs[r].faces, runs[r].batch, runs[r].name, rate);
        emit(json);
    }
    remove_db(db);
}

/* ---- the FAISS peer --------------------------------------------------------------------- */

static double json_number(const char *line, const char *key)
{
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *p = strstr(line, pattern);
    return p ? strtod(p + strlen(pattern), NULL) : NAN;
}

static void json_string(const char *line, const char *key, char *out, size_t size)
{
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":\"", key);
    const char *p = strstr(line, pattern);
    out[0] = '\0';
    if (!p) return;
    p += strlen(pattern);
    size_t i = 0;
    while (p[i] && p[i] != '"' && i + 1 < size) {
        out[i] = p[i];
        i++;
    }
    out[i] = '\0';
}

static void run_peer(const struct dataset *ds, const struct built *b, size_t n, size_t dim,
                     const char *queries_path, int hnsw)
{
    if (!peer_path) return;
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 %s --db %s --queries %s --n %zu --dim %zu "
             "--seconds %.1f%s",
             peer_path, b->db, queries_path, n, dim, seconds, hnsw ? " --hnsw" : "");
    FILE *p = popen(cmd, "r");
    if (!p) {
        fprintf(stderr, "bench: cannot run %s: %s\n", peer_path, strerror(errno));
        return;
    }
    char line[2048], json[2200];
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] != '{') {
            fprintf(stderr, "%s\n", line);
            continue;
        }
        /* the peer does not know the data set's name: it goes in after "bench" as in ours */
        const char *prefix = "{\"bench\":\"gallery\",";
        size_t skip = strncmp(line, prefix, strlen(prefix)) == 0 ? strlen(prefix) : 1;
        snprintf(json, sizeof json, "{\"bench\":\"gallery\",\"data\":\"%s\",%s", ds->name,
                 line + skip);
        emit(json);
        struct line l = {.n = (size_t)json_number(line, "n"),
                         .dim = (unsigned)json_number(line, "dim"),
                         .queries = (int)json_number(line, "queries"),
                         .p50 = json_number(line, "p50_ms"),
                         .p99 = json_number(line, "p99_ms"),
                         .recall1 = json_number(line, "recall1"),
                         .recall10 = json_number(line, "recall10"),
                         .bytes = json_number(line, "bytes_per_face"),
                         .load_s = NAN,
                         .build_s = json_number(line, "build_s"),
                         .ann_bytes = NAN};
        double ef = json_number(line, "ef_search");
        l.ef = isnan(ef) ? 0 : (unsigned)ef;
        snprintf(l.data, sizeof l.data, "%s", ds->name);
        json_string(line, "engine", l.engine, sizeof l.engine);
        json_string(line, "dtype", l.dtype, sizeof l.dtype);
        keep(&l);
    }
    int status = pclose(p);
    if (status != 0) fprintf(stderr, "bench: the FAISS peer exited with status %d\n", status);
}

/* ---- tables ---------------------------------------------------------------------------- */

static const struct line *find_line(const char *data, const char *engine, const char *dtype,
                                    unsigned ef, size_t n, unsigned dim, int queries)
{
    for (size_t i = 0; i < line_count; i++) {
        const struct line *l = &lines[i];
        if (strcmp(l->data, data) == 0 && strcmp(l->engine, engine) == 0 &&
            (!dtype || strcmp(l->dtype, dtype) == 0) && l->ef == ef && l->n == n && l->dim == dim &&
            l->queries == queries)
            return l;
    }
    return NULL;
}

static void format_or_blank(char *out, size_t size, const char *format, double value)
{
    if (isnan(value))
        out[0] = '\0';
    else
        snprintf(out, size, format, value);
}

static void print_table(void)
{
    printf("\n%-9s %-11s %3s %8s %4s %5s %3s %9s %9s %7s %7s %8s %7s %8s %10s %8s\n", "data",
           "engine", "ef", "n", "dim", "dtype", "q", "p50 ms", "p99 ms", "rec@1", "rec@10",
           "B/face", "load s", "build s", "faiss-flat", "speedup");
    for (size_t i = 0; i < line_count; i++) {
        const struct line *l = &lines[i];
        const struct line *flat =
            find_line(l->data, "faiss-flat", NULL, 0, l->n, l->dim, l->queries);
        char ratio[32] = "", peer[32] = "", ef[16] = "", load[16], build[16];
        if (flat && strcmp(l->engine, "faiss-flat") != 0) {
            snprintf(peer, sizeof peer, "%.3f", flat->p50);
            snprintf(ratio, sizeof ratio, "%.1fx", flat->p50 / l->p50);
        }
        if (l->ef) snprintf(ef, sizeof ef, "%u", l->ef);
        format_or_blank(load, sizeof load, "%.3f", l->load_s);
        format_or_blank(build, sizeof build, "%.1f", l->build_s);
        printf("%-9s %-11s %3s %8zu %4u %5s %3d %9.3f %9.3f %7.4f %7.4f %8.1f %7s %8s %10s %8s\n",
               l->data, l->engine, ef, l->n, l->dim, l->dtype, l->queries, l->p50, l->p99,
               l->recall1, l->recall10, l->bytes, load, build, peer, ratio);
    }
    printf("speedup = FAISS IndexFlatIP p50 / this engine's p50, same data, same queries, same "
           "run, 1 thread.\n");
}

static int is_graph(const struct line *l)
{
    return strcmp(l->engine, "vultus-hnsw") == 0 || strcmp(l->engine, "faiss-hnsw") == 0;
}

/* One row of the graph table: an engine at one ef, 1 and 16 queries per call. */
static void print_graph_row(const struct line *one, const struct line *exact1,
                            const struct line *exact16)
{
    /* its 16-query line is kept right after it (measure_hnsw, measure): the same build's,
     * when one graph is built several times (--build-threads 1,2,1,2) */
    const struct line *next = one + 1 < lines + line_count ? one + 1 : NULL;
    const struct line *sixteen =
        next && next->queries == 16 && strcmp(next->engine, one->engine) == 0 &&
                next->ef == one->ef && next->n == one->n && next->dim == one->dim
            ? next
            : find_line(one->data, one->engine, one->dtype, one->ef, one->n, one->dim, 16);
    char ef[16] = "", build[16], ann[16], p16[16] = "", x1[16] = "", x16[16] = "";
    if (one->ef) snprintf(ef, sizeof ef, "%u", one->ef);
    format_or_blank(build, sizeof build, "%.1f", one->build_s);
    /* FAISS's HNSW holds its own f32 vectors: its whole index is the graph's cost */
    format_or_blank(ann, sizeof ann, "%.1f",
                    strcmp(one->engine, "faiss-hnsw") == 0 ? one->bytes : one->ann_bytes);
    if (sixteen) snprintf(p16, sizeof p16, "%.3f", sixteen->p50);
    if (exact1) snprintf(x1, sizeof x1, "%.2fx", exact1->p50 / one->p50);
    if (exact16 && sixteen) snprintf(x16, sizeof x16, "%.2fx", exact16->p50 / sixteen->p50);
    printf("%-9s %8zu %4u %-11s %4s %8s %10s %9.3f %9s %7.4f %7.4f %8s %8s\n", one->data, one->n,
           one->dim, one->engine, ef, build, ann, one->p50, p16, one->recall1, one->recall10, x1,
           x16);
}

/* Per (data, n, dim) with a graph measured: the int8 exact scan, then each graph per ef. */
static void print_graph_table(void)
{
    int header = 0;
    for (size_t i = 0; i < line_count; i++) {
        const struct line *g = &lines[i];
        if (!is_graph(g) || g->queries != 1) continue;
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = is_graph(&lines[j]) && strcmp(lines[j].data, g->data) == 0 &&
                   lines[j].n == g->n && lines[j].dim == g->dim;
        if (seen) continue;
        if (!header) {
            printf("\n%-9s %8s %4s %-11s %4s %8s %10s %9s %9s %7s %7s %8s %8s\n", "data", "n",
                   "dim", "engine", "ef", "build s", "ann B/face", "p50 q1", "p50 q16", "rec@1",
                   "rec@10", "x q1", "x q16");
            header = 1;
        }
        const struct line *exact1 = find_line(g->data, "vultus", "int8", 0, g->n, g->dim, 1);
        const struct line *exact16 = find_line(g->data, "vultus", "int8", 0, g->n, g->dim, 16);
        if (exact1) print_graph_row(exact1, exact1, exact16);
        for (int pass = 0; pass < 2; pass++)
            for (size_t j = i; j < line_count; j++) {
                const struct line *l = &lines[j];
                if (l->queries == 1 && strcmp(l->data, g->data) == 0 && l->n == g->n &&
                    l->dim == g->dim && strcmp(l->engine, pass ? "faiss-hnsw" : "vultus-hnsw") == 0)
                    print_graph_row(l, exact1, exact16);
            }
    }
    if (header)
        printf("p50 in ms; x q1 / x q16 = the int8 exact scan's p50 / this engine's p50 with 1 / "
               "16 queries per call (same data, queries and run, 1 thread); ann B/face = the "
               "graph's own bytes, on top of the index's (FAISS: its whole index).\n");
}

/* ---- main ------------------------------------------------------------------------------- */

/* Parses a number list of at most MAX_LIST positive values; exits with a message otherwise. */
static size_t parse_positive_list(const char *flag, const char *text, size_t *out)
{
    size_t n = 0;
    const char *p = text;
    while (*p) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p || errno || v == 0 || n == MAX_LIST || (*end != ',' && *end != '\0')) {
            fprintf(stderr,
                    "bench: %s wants up to %d positive numbers separated by commas, not "
                    "'%s'\n",
                    flag, MAX_LIST, text);
            exit(2);
        }
        out[n++] = (size_t)v;
        p = *end == ',' ? end + 1 : end;
    }
    if (n == 0) {
        fprintf(stderr, "bench: %s wants a list of numbers\n", flag);
        exit(2);
    }
    return n;
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--data DIR] [--peer PATH] [--sizes N,...] [--dims D,...] [--seconds S]\n"
            "          [--datasets random,clustered] [--ef EF,...] [--faiss-hnsw-max N]\n"
            "          [--build-timeout S] [--ann-only] [--build-threads T,...]\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    size_t sizes[MAX_LIST] = {20000, 100000, 1000000}, dims[MAX_LIST] = {192, 512};
    size_t efs[MAX_LIST] = {64, 128, 256}, build_threads[MAX_LIST] = {1};
    size_t nsizes = 3, ndims = 2, nefs = 3, nthreads = 1, faiss_hnsw_max = 100000;
    int sizes_given = 0, dims_given = 0, ann_only = 0;
    const struct dataset *sets[2] = {&datasets_known[0], &datasets_known[1]};
    size_t nsets = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (strcmp(a, "--data") == 0 && more)
            data_dir = argv[++i];
        else if (strcmp(a, "--peer") == 0 && more)
            peer_path = argv[++i];
        else if (strcmp(a, "--sizes") == 0 && more) {
            nsizes = parse_positive_list(a, argv[++i], sizes);
            sizes_given = 1;
        } else if (strcmp(a, "--dims") == 0 && more) {
            ndims = parse_positive_list(a, argv[++i], dims);
            dims_given = 1;
        } else if (strcmp(a, "--ef") == 0 && more)
            nefs = parse_positive_list(a, argv[++i], efs);
        else if (strcmp(a, "--build-threads") == 0 && more)
            nthreads = parse_positive_list(a, argv[++i], build_threads);
        else if (strcmp(a, "--faiss-hnsw-max") == 0 && more) {
            char *end;
            errno = 0;
            faiss_hnsw_max = strtoull(argv[++i], &end, 10);
            if (end == argv[i] || *end || errno || argv[i][0] == '-') usage(argv[0]);
        } else if (strcmp(a, "--seconds") == 0 && more)
            seconds = atof(argv[++i]);
        else if (strcmp(a, "--build-timeout") == 0 && more)
            build_timeout = atof(argv[++i]);
        else if (strcmp(a, "--ann-only") == 0)
            ann_only = 1;
        else if (strcmp(a, "--datasets") == 0 && more) {
            nsets = 0;
            char names[128];
            snprintf(names, sizeof names, "%s", argv[++i]);
            for (char *save, *name = strtok_r(names, ",", &save); name;
                 name = strtok_r(NULL, ",", &save)) {
                size_t k = 0;
                while (k < 2 && strcmp(name, datasets_known[k].name) != 0)
                    k++;
                if (k == 2 || nsets == 2) {
                    fprintf(stderr, "bench: --datasets takes random and/or clustered, not '%s'\n",
                            name);
                    return 2;
                }
                sets[nsets++] = &datasets_known[k];
            }
            if (nsets == 0) usage(argv[0]);
        } else
            usage(argv[0]);
    }
    for (size_t e = 0; e < nefs; e++)
        if (efs[e] > EF_MAX) {
            fprintf(stderr, "bench: --ef %zu: at most %d\n", efs[e], EF_MAX);
            return 2;
        }
    if (!(seconds > 0) || !(build_timeout > 0)) usage(argv[0]);
    /* the graph part alone: the sizes and the dimension it was asked for */
    if (ann_only && !sizes_given) {
        sizes[0] = 100000;
        sizes[1] = 1000000;
        nsizes = 2;
    }
    if (ann_only && !dims_given) ndims = 1;
    base_log_level = BASE_LOG_WARN;
    mkdir(data_dir, 0755);
    char path[600];
    snprintf(path, sizeof path, "%s/results.jsonl", data_dir);
    results = fopen(path, "a");
    for (size_t d = 0; d < ndims; d++) {
        if (!ann_only) measure_inserts(dims[d]);
        for (size_t s = 0; s < nsizes; s++) {
            for (size_t t = 0; t < nsets; t++) {
                const struct dataset *ds = sets[t];
                size_t n = sizes[s], dim = dims[d];
                struct built b;
                build_gallery(ds, n, dim, &b);
                float *queries;
                int32_t *gt;
                size_t nq;
                char qpath[600];
                queries_for(ds, n, dim, qpath, sizeof qpath, &queries, &gt, &nq);
                /* storage types on the random data; int8 last: the graph is built on it */
                if (!ann_only && ds->kind == DATA_RANDOM) {
                    measure(ds, &b, n, dim, GAL_DTYPE_F32, queries, gt, nq);
                    measure(ds, &b, n, dim, GAL_DTYPE_F16, queries, gt, nq);
                }
                measure(ds, &b, n, dim, GAL_DTYPE_INT8, queries, gt, nq);
                if (sizes_given || n >= 100000)
                    for (size_t th = 0; th < nthreads; th++)
                        measure_hnsw(ds, &b, n, dim, efs, nefs, (unsigned)build_threads[th],
                                     queries, gt, nq);
                run_peer(ds, &b, n, dim, qpath, n <= faiss_hnsw_max);
                free(queries);
                free(gt);
            }
        }
    }
    print_table();
    print_graph_table();
    if (results) fclose(results);
    return 0;
}
