/*
 * The C bridge to hnswlib (see ann.h): the one C++ file of vultus, because hnswlib is a
 * header-only C++ library (DESIGN §5). No hnswlib SIMD code runs: the graph's distance is a
 * function of ours calling the gallery's dot-product kernels (chosen at run time from the
 * CPU), so this file is compiled with the library's flags, no -march, like the rest.
 *
 * Every exception hnswlib throws (out of memory, a full graph) is caught here and becomes a
 * base error; none crosses into C.
 */
#include <hnswlib/hnswlib.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

extern "C" {
#include "base/base.h"
}
#include "gallery/ann.h"

namespace
{

/* Seeds hnswlib's level generator: a fixed seed makes a graph, and so its answers, the same
 * for the same insertion order (tests and benchmarks repeat). */
constexpr size_t LEVEL_SEED = 100;

struct space_param {
    uint32_t dim;
    const gal_kernels *kernels;
};

/* int8 entry: [f32 scale][dim codes], padded to 4 bytes. Score = dot * (scale_a * scale_b),
 * the same float operations as the exact scan's select kernel. */
float score_i8(const void *a, const void *b, const space_param *p)
{
    float sa, sb;
    std::memcpy(&sa, a, sizeof sa);
    std::memcpy(&sb, b, sizeof sb);
    int32_t dot;
    p->kernels->dot_i8(static_cast<const int8_t *>(a) + sizeof(float),
                       static_cast<const int8_t *>(b) + sizeof(float), p->dim, 0, 1, &dot, 0);
    return static_cast<float>(dot) * (sa * sb);
}

/* f32 entry: dim floats. */
float score_f32(const void *a, const void *b, const space_param *p)
{
    float dot;
    p->kernels->dot_f32(static_cast<const float *>(a), static_cast<const float *>(b), p->dim, 0, 1,
                        &dot, 0);
    return dot;
}

/* hnswlib's distances: smaller is nearer. */
float distance_i8(const void *a, const void *b, const void *param)
{
    return 1.0f - score_i8(a, b, static_cast<const space_param *>(param));
}

float distance_f32(const void *a, const void *b, const void *param)
{
    return 1.0f - score_f32(a, b, static_cast<const space_param *>(param));
}

class dot_space : public hnswlib::SpaceInterface<float>
{
  public:
    dot_space(uint32_t dim, gal_ann_encoding encoding, const gal_kernels *kernels)
        : bytes_(gal_ann_entry_bytes(dim, encoding)),
          func_(encoding == GAL_ANN_I8 ? distance_i8 : distance_f32), param_{dim, kernels}
    {
    }
    size_t get_data_size() override
    {
        return bytes_;
    }
    hnswlib::DISTFUNC<float> get_dist_func() override
    {
        return func_;
    }
    void *get_dist_func_param() override
    {
        return &param_;
    }

  private:
    size_t bytes_;
    hnswlib::DISTFUNC<float> func_;
    space_param param_;
};

} // namespace

struct gal_ann {
    dot_space space;
    hnswlib::HierarchicalNSW<float> graph;
    /*
     * The level of the first face: above any hnswlib will draw (-ln u * mult_, u at least
     * ~2^-62 from its generator: 44 * mult_), so it is the entry point for good. hnswlib's
     * concurrent insertion reads the entry point without its lock; that is safe only if no
     * insertion ever moves it. Costs a few empty upper levels on the first face's links
     * (1.7 KB at M 32) and as many trivial steps per search.
     */
    int top_level;

    gal_ann(uint32_t dim, gal_ann_encoding encoding, const gal_kernels *kernels,
            const gal_ann_params *p, size_t capacity)
        : space(dim, encoding, kernels),
          graph(&space, capacity, p->m, p->ef_construction, LEVEL_SEED),
          top_level(static_cast<int>(std::ceil(44.0 * graph.mult_)))
    {
        graph.setEf(p->ef_search);
    }
};

size_t gal_ann_entry_bytes(uint32_t dim, enum gal_ann_encoding encoding)
{
    /* 4-byte multiples keep every entry's floats aligned inside hnswlib's element records */
    if (encoding == GAL_ANN_I8) return sizeof(float) + ((dim + 3u) & ~3u);
    return sizeof(float) * dim;
}

/* The int8 layout, here only: [f32 scale][dim codes][zeros to a multiple of 4 bytes]. */
void gal_ann_entry_i8(uint32_t dim, float scale, const int8_t *codes, void *entry)
{
    unsigned char *e = static_cast<unsigned char *>(entry);
    std::memcpy(e, &scale, sizeof scale);
    std::memmove(e + sizeof scale, codes, dim); /* codes may already be in place */
    std::memset(e + sizeof scale + dim, 0,
                gal_ann_entry_bytes(dim, GAL_ANN_I8) - sizeof scale - dim);
}

void gal_ann_encode(uint32_t dim, enum gal_ann_encoding encoding, const struct gal_kernels *kernels,
                    const float *vector, void *entry)
{
    if (encoding == GAL_ANN_I8) {
        /* quantised in place, where gal_ann_entry_i8 puts the codes */
        int8_t *codes =
            reinterpret_cast<int8_t *>(static_cast<unsigned char *>(entry) + sizeof(float));
        float scale = kernels->quantize_i8(vector, dim, codes);
        gal_ann_entry_i8(dim, scale, codes, entry);
    } else {
        std::memcpy(entry, vector, sizeof(float) * dim);
    }
}

int gal_ann_create(uint32_t dim, enum gal_ann_encoding encoding, const struct gal_kernels *kernels,
                   const struct gal_ann_params *params, size_t capacity, struct gal_ann **out)
{
    *out = nullptr;
    if (!kernels || !params || dim == 0 || params->m < 2)
        return base_error_set(BASE_ERR_INVALID, "hnsw: bad parameters");
    try {
        *out = new gal_ann(dim, encoding, kernels, params, capacity ? capacity : 1);
        return 0;
    } catch (const std::bad_alloc &) {
        return base_error_set(BASE_ERR_NOMEM, "hnsw: cannot allocate a graph of %zu faces",
                              capacity);
    } catch (const std::exception &e) {
        return base_error_set(BASE_ERR_NOMEM, "hnsw: %s (%zu faces)", e.what(), capacity);
    }
}

void gal_ann_destroy(struct gal_ann *ann)
{
    delete ann;
}

void gal_ann_set_ef_search(struct gal_ann *ann, unsigned ef_search)
{
    ann->graph.setEf(ef_search);
}

int gal_ann_reserve(struct gal_ann *ann, size_t capacity)
{
    if (capacity <= ann->graph.max_elements_) return 0;
    try {
        ann->graph.resizeIndex(capacity);
        return 0;
    } catch (const std::exception &e) {
        return base_error_set(BASE_ERR_NOMEM, "hnsw: cannot grow to %zu faces: %s", capacity,
                              e.what());
    }
}

int gal_ann_add(struct gal_ann *ann, int64_t face_id, const void *entry)
{
    if (ann->graph.cur_element_count >= ann->graph.max_elements_)
        return base_error_set(BASE_ERR_LIMIT, "hnsw: graph full (%zu faces)",
                              ann->graph.max_elements_);
    try {
        /* -1: a random level, except for the first face (see top_level) */
        const int level = ann->graph.cur_element_count == 0 ? ann->top_level : -1;
        ann->graph.addPoint(entry, static_cast<hnswlib::labeltype>(face_id), level);
        return 0;
    } catch (const std::bad_alloc &) {
        return base_error_set(BASE_ERR_NOMEM, "hnsw: out of memory adding face %lld",
                              static_cast<long long>(face_id));
    } catch (const std::exception &e) {
        return base_error_set(BASE_ERR_BACKEND, "hnsw: adding face %lld: %s",
                              static_cast<long long>(face_id), e.what());
    }
}

namespace
{

/*
 * What gal_ann_add_many's threads share: the next face to insert, and the first failure
 * (base errors are per thread, so its message is carried back to the caller's). The threads
 * call hnswlib's addPoint at once, which its authors support for distinct new labels; its
 * one unlocked shared write is the level generator's state (two threads may draw the same
 * level: harmless, and suppressed by name for ThreadSanitizer in tests/gallery).
 */
struct add_many_job {
    gal_ann *ann;
    const int64_t *face_ids;
    const unsigned char *entries;
    size_t n, entry_bytes;
    std::atomic<size_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex error_mutex;
    int error_code = 0;
    std::string error;

    void fail(int code, const char *what, int64_t face_id) noexcept
    {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error_code) {
            error_code = code;
            try {
                error = std::string(what) + " (face " + std::to_string(face_id) + ")";
            } catch (...) {
                /* no memory for the message either: the code alone says enough */
            }
        }
        failed.store(true);
    }

    void run()
    {
        while (!failed.load(std::memory_order_relaxed)) {
            const size_t i = next.fetch_add(1);
            if (i >= n) break;
            try {
                ann->graph.addPoint(entries + i * entry_bytes,
                                    static_cast<hnswlib::labeltype>(face_ids[i]));
            } catch (const std::bad_alloc &) {
                fail(BASE_ERR_NOMEM, "out of memory", face_ids[i]);
            } catch (const std::exception &e) {
                fail(BASE_ERR_BACKEND, e.what(), face_ids[i]);
            }
        }
    }
};

/* Below this many faces a call inserts on the caller's thread only: starting threads would
 * cost more than it saves, and a small graph stays the same from one run to the next. */
constexpr size_t PARALLEL_MIN_FACES = 256;

} // namespace

int gal_ann_add_many(struct gal_ann *ann, size_t n, const int64_t *face_ids, const void *entries,
                     unsigned threads)
{
    auto &g = ann->graph;
    if (n == 0) return 0;
    if (g.cur_element_count + n > g.max_elements_)
        return base_error_set(BASE_ERR_LIMIT, "hnsw: no room for %zu more faces (%zu of %zu)", n,
                              static_cast<size_t>(g.cur_element_count), g.max_elements_);
    const size_t bytes = ann->space.get_data_size();
    const unsigned char *e = static_cast<const unsigned char *>(entries);
    size_t first = 0;
    /* hnswlib's concurrent insertion needs an entry point that stays: the first face goes
     * in alone, at the top level */
    if (g.cur_element_count == 0) {
        int rc = gal_ann_add(ann, face_ids[0], e);
        if (rc) return rc;
        first = 1;
    }
    add_many_job job;
    job.ann = ann;
    job.face_ids = face_ids + first;
    job.entries = e + first * bytes;
    job.n = n - first;
    job.entry_bytes = bytes;
    if (threads < 1 || job.n < PARALLEL_MIN_FACES) threads = 1;
    std::vector<std::thread> helpers;
    try {
        /* new threads inherit the caller's scheduling priority (the build's nice value) */
        for (unsigned t = 1; t < threads; t++)
            helpers.emplace_back([&job] { job.run(); });
    } catch (const std::exception &) {
        /* fewer threads than asked (none could start): the caller's does the rest */
    }
    job.run();
    for (auto &t : helpers)
        t.join();
    if (job.error_code) return base_error_set(job.error_code, "hnsw: %s", job.error.c_str());
    return 0;
}

int gal_ann_contains(const struct gal_ann *ann, int64_t face_id)
{
    const auto &lookup = ann->graph.label_lookup_;
    return lookup.find(static_cast<hnswlib::labeltype>(face_id)) != lookup.end();
}

size_t gal_ann_count(const struct gal_ann *ann)
{
    return ann->graph.cur_element_count;
}

size_t gal_ann_capacity(const struct gal_ann *ann)
{
    return ann->graph.max_elements_;
}

size_t gal_ann_bytes(const struct gal_ann *ann)
{
    const auto &g = ann->graph;
    /* level 0 records, a lock and a level per slot; upper levels for about 1 / M of the
     * faces; the label table's nodes (key, value, next pointer, hash: about 32 bytes) */
    size_t per_slot = g.size_data_per_element_ + sizeof(std::mutex) + sizeof(int) + sizeof(char *);
    size_t upper = g.M_ ? g.cur_element_count / g.M_ * g.size_links_per_element_ : 0;
    return g.max_elements_ * per_slot + upper + g.cur_element_count * 32 +
           hnswlib::HierarchicalNSW<float>::max_update_element_locks * sizeof(std::mutex);
}

int gal_ann_search(const struct gal_ann *ann, const void *query, size_t k, int64_t *face_ids,
                   float *scores, size_t *found_count)
{
    *found_count = 0;
    if (k == 0 || ann->graph.cur_element_count == 0) return 0;
    try {
        /* a max-heap on distance: worst first, so it fills the arrays from the back */
        auto found = ann->graph.searchKnn(query, k);
        size_t n = found.size() < k ? found.size() : k;
        for (size_t i = n; i-- > 0; found.pop()) {
            scores[i] = 1.0f - found.top().first;
            face_ids[i] = static_cast<int64_t>(found.top().second);
        }
        *found_count = n;
        return 0;
    } catch (const std::exception &e) {
        return base_error_set(BASE_ERR_NOMEM, "hnsw search: %s", e.what());
    }
}
