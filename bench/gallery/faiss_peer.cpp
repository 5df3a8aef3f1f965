// faiss_peer — the FAISS side of bench_gallery (benchmark code, not product code).
//
// Reads the same vectors bench_gallery stored (the embeddings of the gallery's SQLite file,
// in face-id order) and the same queries with their exact top-10, then measures Debian's
// FAISS on one thread: IndexFlatIP (exact inner product; the vectors are unit vectors, so
// this is cosine similarity) and, with --hnsw, IndexHNSWFlat (M = 32, inner product) with
// its build time. Prints one JSON line per measurement, like bench_gallery.
//
// usage: faiss_peer --db FILE --queries FILE --n N --dim D [--seconds S] [--hnsw]
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <omp.h>
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using idx_t = faiss::Index::idx_t;
static const int K = 10;

static double now_s()
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

static void die(const std::string &what)
{
    std::fprintf(stderr, "faiss_peer: %s\n", what.c_str());
    std::exit(1);
}

static std::vector<float> load_vectors(const char *db, size_t n, size_t dim)
{
    sqlite3 *h = nullptr;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) die("open " + std::string(db));
    sqlite3_stmt *st = nullptr;
    if (sqlite3_prepare_v2(h, "SELECT embedding FROM faces ORDER BY id", -1, &st, nullptr) != SQLITE_OK)
        die(sqlite3_errmsg(h));
    std::vector<float> x;
    x.reserve(n * dim);
    while (sqlite3_step(st) == SQLITE_ROW) {
        if ((size_t)sqlite3_column_bytes(st, 0) != dim * sizeof(float)) die("embedding size");
        const float *e = static_cast<const float *>(sqlite3_column_blob(st, 0));
        x.insert(x.end(), e, e + dim);
    }
    sqlite3_finalize(st);
    sqlite3_close(h);
    if (x.size() != n * dim) die("the gallery does not hold n faces");
    return x;
}

struct Queries {
    size_t nq = 0;
    std::vector<float> q;
    std::vector<int32_t> gt;
};

static Queries load_queries(const char *path, size_t dim)
{
    Queries out;
    FILE *f = std::fopen(path, "rb");
    if (!f) die(std::string("open ") + path);
    char magic[4];
    uint32_t h[3];
    if (std::fread(magic, 1, 4, f) != 4 || std::memcmp(magic, "VGQ1", 4) != 0 ||
        std::fread(h, 4, 3, f) != 3 || h[1] != dim || h[2] != (uint32_t)K)
        die("bad queries file");
    out.nq = h[0];
    out.q.resize(out.nq * dim);
    out.gt.resize(out.nq * K);
    if (std::fread(out.q.data(), 4, out.q.size(), f) != out.q.size() ||
        std::fread(out.gt.data(), 4, out.gt.size(), f) != out.gt.size())
        die("short queries file");
    std::fclose(f);
    return out;
}

static double percentile(std::vector<double> v, double p)
{
    std::sort(v.begin(), v.end());
    size_t i = (size_t)std::ceil(p * (double)v.size()) - 1;
    return v[std::min(i, v.size() - 1)];
}

// Latency with `per_call` queries per search call, cycling through the query set for at
// least `seconds` (and at least 5 calls); recall over the queries that were run.
static void measure(faiss::Index &index, const char *engine, const Queries &qs, size_t n,
                    size_t dim, int per_call, double seconds, double bytes_per_face,
                    double build_s, int ef_search = 0)
{
    std::vector<double> times;
    std::vector<float> D(per_call * K);
    std::vector<idx_t> I(per_call * K);
    double recall1 = 0, recall10 = 0;
    size_t judged = 0, calls_per_pass = qs.nq / per_call;
    index.search(per_call, qs.q.data(), K, D.data(), I.data()); // warm-up
    double start = now_s();
    for (size_t c = 0;; c++) {
        size_t first = (c % calls_per_pass) * per_call;
        double t = now_s();
        index.search(per_call, qs.q.data() + first * dim, K, D.data(), I.data());
        times.push_back((now_s() - t) * 1e3);
        if (c < calls_per_pass) {
            for (int i = 0; i < per_call; i++) {
                const int32_t *want = qs.gt.data() + (first + i) * K;
                recall1 += I[i * K] == want[0];
                for (int a = 0; a < K; a++)
                    for (int b = 0; b < K; b++) recall10 += I[i * K + b] == want[a];
                judged++;
            }
        }
        double elapsed = now_s() - start;
        if ((times.size() >= 5 && elapsed > seconds) || times.size() >= 2000) break;
    }
    char build[64] = "";
    if (build_s >= 0)
        std::snprintf(build, sizeof build, ",\"build_s\":%.3f,\"ef_search\":%d", build_s,
                      ef_search);
    std::printf("{\"bench\":\"gallery\",\"engine\":\"%s\",\"n\":%zu,\"dim\":%zu,\"dtype\":\"f32\","
                "\"queries\":%d,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"recall1\":%.4f,\"recall10\":%.4f,"
                "\"bytes_per_face\":%.1f,\"samples\":%zu,\"recall_queries\":%zu,\"k\":%d%s}\n",
                engine, n, dim, per_call, percentile(times, 0.5), percentile(times, 0.99),
                recall1 / (double)judged, recall10 / (double)(judged * K), bytes_per_face,
                times.size(), judged, K, build);
    std::fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *db = nullptr, *queries = nullptr;
    size_t n = 0, dim = 0;
    double seconds = 2.0;
    bool hnsw = false;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--db" && i + 1 < argc) db = argv[++i];
        else if (a == "--queries" && i + 1 < argc) queries = argv[++i];
        else if (a == "--n" && i + 1 < argc) n = std::strtoull(argv[++i], nullptr, 10);
        else if (a == "--dim" && i + 1 < argc) dim = std::strtoull(argv[++i], nullptr, 10);
        else if (a == "--seconds" && i + 1 < argc) seconds = std::atof(argv[++i]);
        else if (a == "--hnsw") hnsw = true;
        else die("usage: faiss_peer --db FILE --queries FILE --n N --dim D [--seconds S] [--hnsw]");
    }
    if (!db || !queries || !n || !dim) die("missing arguments");
    omp_set_num_threads(1); // one thread, like the gallery's search

    std::vector<float> x = load_vectors(db, n, dim);
    Queries qs = load_queries(queries, dim);
    {
        faiss::IndexFlatIP flat(dim);
        flat.add(n, x.data());
        double bytes = (double)flat.codes.size() / (double)n;
        measure(flat, "faiss-flat", qs, n, dim, 1, seconds, bytes, -1);
        measure(flat, "faiss-flat", qs, n, dim, 16, seconds, bytes, -1);
    }
    if (hnsw) {
        faiss::IndexHNSWFlat index(dim, 32, faiss::METRIC_INNER_PRODUCT);
        double t = now_s();
        index.add(n, x.data());
        double build_s = now_s() - t;
        auto *storage = dynamic_cast<faiss::IndexFlat *>(index.storage);
        double bytes = (double)(index.hnsw.neighbors.size() * sizeof(faiss::HNSW::storage_idx_t) +
                                index.hnsw.offsets.size() * sizeof(size_t) +
                                index.hnsw.levels.size() * sizeof(int) +
                                (storage ? storage->codes.size() : 0)) /
                       (double)n;
        // efSearch: FAISS's default (16) and two wider searches trading speed for recall.
        for (int ef : {16, 64, 256}) {
            index.hnsw.efSearch = ef;
            measure(index, "faiss-hnsw", qs, n, dim, 1, seconds, bytes, build_s, ef);
            measure(index, "faiss-hnsw", qs, n, dim, 16, seconds, bytes, build_s, ef);
        }
    }
    return 0;
}
