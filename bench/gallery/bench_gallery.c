/*
 * bench_gallery — the gallery's 1:N search against FAISS on the same data, in the same run.
 *
 * Data: random unit vectors (Gaussian, normalised), dim 192 and 512, N = 20k, 100k and 1M,
 * each face in one of N/4 subjects; queries are independent random unit vectors (the hard
 * case for ranking: their best matches are separated by small gaps). Each (N, dim) gallery
 * is built once into build/bench-gallery/ and reused; so is its ground truth (the exact
 * top-10 by f64 brute force over the f32 vectors).
 *
 * For each gallery and storage type f32, f16, int8 (the collection's type is switched, then
 * the gallery is reopened): start-up load time from SQLite (page cache warm), index bytes
 * per face, search latency p50/p99 with 1 query and with 16 queries per call on one thread
 * (k = 10, results re-scored exactly as the product does), recall@1 and recall@10 against
 * the ground truth. Insert throughput is measured on a fresh gallery per dimension. Then the
 * FAISS peer (faiss_peer.cpp: IndexFlatIP at every N, HNSW32 at N = 20k) runs on the same
 * vectors, read from the same SQLite file, and the same queries.
 *
 * Output: one JSON line per measurement (also appended to results.jsonl), then a table
 * with the ratio FAISS p50 / vultus p50.
 *
 * usage: bench_gallery [--data DIR] [--peer PATH] [--sizes 20000,100000,1000000]
 *                      [--dims 192,512] [--seconds S]
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

#define MODEL "bench-random"
#define K 10
#define MAX_LINES 256

static const char *data_dir = "build/bench-gallery";
static const char *peer_path = NULL;
static double seconds = 2.0;
static FILE *results;

/* Lines kept for the table. */
struct line {
    char engine[16];
    char dtype[8];
    size_t n;
    unsigned dim;
    int queries;
    double p50, p99, recall1, recall10, bytes, load_s;
};
static struct line lines[MAX_LINES];
static size_t line_count;

/* ---- random data ---------------------------------------------------------------------- */

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

static void random_unit(struct rng *r, float *x, size_t dim)
{
    double s = 0;
    for (size_t i = 0; i < dim; i += 2) {
        double u = rng_uniform(r), v = rng_uniform(r), m = sqrt(-2.0 * log(u));
        x[i] = (float)(m * cos(2.0 * M_PI * v));
        if (i + 1 < dim) x[i + 1] = (float)(m * sin(2.0 * M_PI * v));
    }
    for (size_t i = 0; i < dim; i++)
        s += (double)x[i] * x[i];
    s = 1.0 / sqrt(s);
    for (size_t i = 0; i < dim; i++)
        x[i] = (float)(x[i] * s);
}

static float *make_vectors(uint64_t seed, size_t n, size_t dim)
{
    float *x = malloc(n * dim * sizeof *x);
    if (!x) {
        fprintf(stderr, "bench: cannot allocate %zu x %zu floats\n", n, dim);
        exit(1);
    }
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

static void keep(const char *engine, const char *dtype, size_t n, unsigned dim, int queries,
                 double p50, double p99, double r1, double r10, double bytes, double load_s)
{
    if (line_count == MAX_LINES) return;
    struct line *l = &lines[line_count++];
    snprintf(l->engine, sizeof l->engine, "%s", engine);
    snprintf(l->dtype, sizeof l->dtype, "%s", dtype);
    l->n = n;
    l->dim = dim;
    l->queries = queries;
    l->p50 = p50;
    l->p99 = p99;
    l->recall1 = r1;
    l->recall10 = r10;
    l->bytes = bytes;
    l->load_s = load_s;
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

/* Fills a gallery with n faces in n/4 subjects; returns faces per second of the build. */
static double fill(struct gal *g, const char *collection, const float *x, size_t n, size_t dim,
                   size_t batch, int64_t *first_id)
{
    size_t subjects = n / 4 ? n / 4 : 1;
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
            in[j].model_id = MODEL;
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

static void build_gallery(size_t n, size_t dim, struct built *b)
{
    char marker[640];
    snprintf(b->db, sizeof b->db, "%s/g%zu_%zu.db", data_dir, dim, n);
    snprintf(marker, sizeof marker, "%s.ok", b->db);
    FILE *f = fopen(marker, "r");
    if (f) {
        int ok = fscanf(f, "%lld %lf", (long long *)&b->first_id, &b->build_rate) == 2;
        fclose(f);
        if (ok && file_exists(b->db)) return;
    }
    remove_db(b->db);
    float *x = make_vectors(data_seed(n, dim), n, dim);
    struct gal *g;
    /* Built once, as set-up: commits need not reach the disk one by one. */
    struct gal_options opts = {.durability = GAL_DURABLE_PROCESS};
    if (gal_open(b->db, &opts, &g) != 0) die(b->db);
    struct gal_collection_info info;
    memset(&info, 0, sizeof info);
    snprintf(info.name, sizeof info.name, "bench");
    snprintf(info.model_id, sizeof info.model_id, MODEL);
    info.dim = (uint32_t)dim;
    info.dtype = GAL_DTYPE_INT8;
    info.threshold = 0.5f;
    if (gal_collection_create(g, &info) != 0) die("create");
    b->build_rate = fill(g, "bench", x, n, dim, 10000, &b->first_id);
    gal_close(g);
    free(x);
    f = fopen(marker, "w");
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
static void queries_for(size_t n, size_t dim, char *path, size_t path_size, float **queries,
                        int32_t **gt, size_t *nq)
{
    snprintf(path, path_size, "%s/q%zu_%zu.bin", data_dir, dim, n);
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
    fprintf(stderr, "bench: exact top-%d of %zu queries over %zu x %zu (once)...\n", K, *nq, n,
            dim);
    *queries = make_vectors(query_seed(n, dim), *nq, dim);
    *gt = malloc(*nq * K * sizeof **gt);
    float *x = make_vectors(data_seed(n, dim), n, dim);
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
    uint32_t h[3] = {(uint32_t)*nq, (uint32_t)dim, K};
    fwrite("VGQ1", 1, 4, f);
    fwrite(h, 4, 3, f);
    fwrite(*queries, sizeof **queries, *nq * dim, f);
    fwrite(*gt, sizeof **gt, *nq * K, f);
    fclose(f);
}

/* ---- measurements ---------------------------------------------------------------------- */

static void measure(const struct built *b, size_t n, size_t dim, enum gal_dtype dtype,
                    const float *queries, const int32_t *gt, size_t nq)
{
    struct gal *g;
    if (gal_open(b->db, NULL, &g) != 0) die(b->db);
    if (gal_collection_set_dtype(g, "bench", dtype) != 0) die("set dtype");
    gal_close(g);
    double t0 = now_s();
    if (gal_open(b->db, NULL, &g) != 0) die(b->db);
    double load_s = now_s() - t0;
    struct gal_index_stats st;
    if (gal_index_stats(g, "bench", &st) != 0) die("stats");
    double bytes = (double)st.bytes / (double)st.faces;

    /* 16 queries per call: every query once (for recall), then more rounds for timing. */
    size_t cap = 4096, ns16 = 0, ns1 = 0;
    double *t16 = malloc(cap * sizeof *t16), *t1 = malloc(cap * sizeof *t1);
    double recall1 = 0, recall10 = 0;
    struct gal_search_request req = {MODEL, (uint32_t)dim, queries, 16, K};
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
    recall1 /= (double)(nq / 16 * 16);
    recall10 /= (double)(nq / 16 * 16 * K);
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
    gal_close(g);

    const char *dt = gal_dtype_name(dtype);
    double p50_1 = percentile(t1, ns1, 0.5), p99_1 = percentile(t1, ns1, 0.99);
    double p50_16 = percentile(t16, ns16, 0.5), p99_16 = percentile(t16, ns16, 0.99);
    char json[1024];
    for (int qn = 1; qn <= 16; qn += 15) {
        snprintf(
            json, sizeof json,
            "{\"bench\":\"gallery\",\"engine\":\"vultus\",\"n\":%zu,\"dim\":%zu,\"dtype\":\"%s\","
            "\"queries\":%d,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"recall1\":%.4f,\"recall10\":%.4f,"
            "\"bytes_per_face\":%.1f,\"load_s\":%.3f,\"samples\":%zu,\"recall_queries\":%zu,"
            "\"kernels\":\"%s\",\"k\":%d}",
            n, dim, dt, qn, qn == 1 ? p50_1 : p50_16, qn == 1 ? p99_1 : p99_16, recall1, recall10,
            bytes, load_s, qn == 1 ? ns1 : ns16, nq / 16 * 16, st.kernels, K);
        emit(json);
        keep("vultus", dt, n, (unsigned)dim, qn, qn == 1 ? p50_1 : p50_16, qn == 1 ? p99_1 : p99_16,
             recall1, recall10, bytes, load_s);
    }
    free(t1);
    free(t16);
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
        snprintf(info.model_id, sizeof info.model_id, MODEL);
        info.dim = (uint32_t)dim;
        info.dtype = GAL_DTYPE_INT8;
        info.threshold = 0.5f;
        if (gal_collection_create(g, &info) != 0) die("create");
        int64_t first;
        double rate = fill(g, "ins", x, runs[r].faces, dim, runs[r].batch, &first);
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

static void run_peer(const struct built *b, size_t n, size_t dim, const char *queries_path)
{
    if (!peer_path) return;
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 %s --db %s --queries %s --n %zu --dim %zu "
             "--seconds %.1f%s",
             peer_path, b->db, queries_path, n, dim, seconds, n <= 20000 ? " --hnsw" : "");
    FILE *p = popen(cmd, "r");
    if (!p) {
        fprintf(stderr, "bench: cannot run %s: %s\n", peer_path, strerror(errno));
        return;
    }
    char line[2048];
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] != '{') {
            fprintf(stderr, "%s\n", line);
            continue;
        }
        emit(line);
        char engine[16], dtype[8];
        json_string(line, "engine", engine, sizeof engine);
        double ef = json_number(line, "ef_search");
        if (!isnan(ef)) snprintf(engine, sizeof engine, "hnsw ef=%d", (int)ef);
        json_string(line, "dtype", dtype, sizeof dtype);
        keep(engine, dtype, (size_t)json_number(line, "n"), (unsigned)json_number(line, "dim"),
             (int)json_number(line, "queries"), json_number(line, "p50_ms"),
             json_number(line, "p99_ms"), json_number(line, "recall1"),
             json_number(line, "recall10"), json_number(line, "bytes_per_face"), NAN);
    }
    int status = pclose(p);
    if (status != 0) fprintf(stderr, "bench: the FAISS peer exited with status %d\n", status);
}

/* ---- table ----------------------------------------------------------------------------- */

static const struct line *find_line(const char *engine, size_t n, unsigned dim, int queries)
{
    for (size_t i = 0; i < line_count; i++)
        if (strcmp(lines[i].engine, engine) == 0 && lines[i].n == n && lines[i].dim == dim &&
            lines[i].queries == queries)
            return &lines[i];
    return NULL;
}

static void print_table(void)
{
    printf("\n%-12s %8s %4s %5s %3s %9s %9s %7s %7s %8s %7s %12s %8s\n", "engine", "n", "dim",
           "dtype", "q", "p50 ms", "p99 ms", "rec@1", "rec@10", "B/face", "load s", "faiss-flat",
           "speedup");
    for (size_t i = 0; i < line_count; i++) {
        const struct line *l = &lines[i];
        const struct line *flat = find_line("faiss-flat", l->n, l->dim, l->queries);
        char ratio[32] = "", peer[32] = "";
        if (flat && strcmp(l->engine, "faiss-flat") != 0) {
            snprintf(peer, sizeof peer, "%.3f", flat->p50);
            snprintf(ratio, sizeof ratio, "%.1fx", flat->p50 / l->p50);
        }
        char load[16] = "";
        if (!isnan(l->load_s)) snprintf(load, sizeof load, "%.3f", l->load_s);
        printf("%-12s %8zu %4u %5s %3d %9.3f %9.3f %7.4f %7.4f %8.1f %7s %12s %8s\n", l->engine,
               l->n, l->dim, l->dtype, l->queries, l->p50, l->p99, l->recall1, l->recall10,
               l->bytes, load, peer, ratio);
    }
    printf("speedup = FAISS IndexFlatIP p50 / this engine's p50, same data, same queries, same "
           "run, 1 thread.\n");
}

/* ---- main ------------------------------------------------------------------------------- */

static size_t parse_list(const char *text, size_t *out, size_t max)
{
    size_t n = 0;
    while (text && *text && n < max) {
        char *end;
        out[n++] = strtoull(text, &end, 10);
        text = *end == ',' ? end + 1 : end;
        if (end == text && *end != '\0') break;
    }
    return n;
}

int main(int argc, char **argv)
{
    size_t sizes[8] = {20000, 100000, 1000000}, dims[8] = {192, 512};
    size_t nsizes = 3, ndims = 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc)
            data_dir = argv[++i];
        else if (strcmp(argv[i], "--peer") == 0 && i + 1 < argc)
            peer_path = argv[++i];
        else if (strcmp(argv[i], "--sizes") == 0 && i + 1 < argc)
            nsizes = parse_list(argv[++i], sizes, 8);
        else if (strcmp(argv[i], "--dims") == 0 && i + 1 < argc)
            ndims = parse_list(argv[++i], dims, 8);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else {
            fprintf(stderr,
                    "usage: %s [--data DIR] [--peer PATH] [--sizes N,...] [--dims D,...] "
                    "[--seconds S]\n",
                    argv[0]);
            return 2;
        }
    }
    base_log_level = BASE_LOG_WARN;
    mkdir(data_dir, 0755);
    char path[600];
    snprintf(path, sizeof path, "%s/results.jsonl", data_dir);
    results = fopen(path, "a");
    for (size_t d = 0; d < ndims; d++) {
        measure_inserts(dims[d]);
        for (size_t s = 0; s < nsizes; s++) {
            size_t n = sizes[s], dim = dims[d];
            struct built b;
            build_gallery(n, dim, &b);
            float *queries;
            int32_t *gt;
            size_t nq;
            char qpath[600];
            queries_for(n, dim, qpath, sizeof qpath, &queries, &gt, &nq);
            const enum gal_dtype dtypes[] = {GAL_DTYPE_F32, GAL_DTYPE_F16, GAL_DTYPE_INT8};
            for (int t = 0; t < 3; t++)
                measure(&b, n, dim, dtypes[t], queries, gt, nq);
            run_peer(&b, n, dim, qpath);
            free(queries);
            free(gt);
        }
    }
    print_table();
    if (results) fclose(results);
    return 0;
}
