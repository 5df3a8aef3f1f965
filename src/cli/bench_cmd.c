/*
 * `vultus bench nn` times models the way the peer benchmarks do (bench/nn/tfjs-time.mjs for
 * TF.js, ../shared/anchors/ort-time.mjs for ONNX Runtime): same input data, warm-up runs,
 * then the median of timed runs, one JSON line per model, batch and thread count.
 * `vultus bench peak` measures the FP32 peak of one core, to put the figures in proportion.
 */
#include "base/base.h"
#include "cli/cli.h"
/* The face-api networks exist only as graphs built in C by the face module; the benchmark
 * times them like any other model, so it reaches for the builders there. */
#include "face/face_internal.h"
#include "nn/nn.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_LIST 16

/* The face models of the default pack, in the order bench/nn/run reports them. */
static const char *const default_models[] = {
    "mobilefacenet",
    "faceres",
    "blazeface-back",
    "blazeface-front",
    "facemesh-detection-full",
    "facemesh",
    "mobileface",
    "gear",
    "age",
    "gender",
    "emotion",
    "antispoof",
    "liveness",
};
#define N_DEFAULT_MODELS (int)(sizeof default_models / sizeof default_models[0])

static void bench_usage(FILE *out)
{
    fprintf(
        out,
        "usage: vultus bench nn [options] [MODEL...]\n"
        "       vultus bench peak\n"
        "       vultus bench load [--models DIR]\n"
        "       vultus bench pipeline [options] IMAGE...  (see vultus bench pipeline --help)\n"
        "\n"
        "bench nn: times each model and prints one JSON line per batch size and thread\n"
        "count: {\"bench\":\"nn\",\"model\":...,\"engine\":\"vultus\",\"ms\":...}, where ms is\n"
        "the median time of one call for the whole batch.\n"
        "  --models DIR     where NAME.json models are (default models/human)\n"
        "  --batch LIST     batch sizes, e.g. 1,8 (default 1)\n"
        "  --threads LIST   intra-op thread counts, e.g. 1,2 (default 1)\n"
        "  --runs N         timed runs (default 20)\n"
        "  --warmup N       untimed runs first (default 5)\n"
        "  --reference      use the plain-C reference backend only\n"
        "  --schedule S     how a batch runs: auto (default: per layer, chosen at plan time),\n"
        "                   image (every layer image by image) or batch (as one batch)\n"
        "  --profile        print each node's time per run (stderr) after the timed runs\n"
        "MODEL is a name (DIR/NAME.json), a path ending in .json, or faceapi-resnet /\n"
        "faceapi-agegender (face-api's networks built in C from models/faceapi); default:\n"
        "the %d face models of the pack.\n"
        "\n"
        "bench peak: the FP32 peak of one core with an FMA loop, as\n"
        "{\"bench\":\"nn-peak\",\"gflops\":...}.\n",
        N_DEFAULT_MODELS);
}

int cli_parse_int_list(const char *text, int min, int max, int *out, int cap)
{
    int n = 0;
    const char *p = text;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < min || v > max || n >= cap) return -1;
        out[n++] = (int)v;
        if (*end == ',') {
            p = end + 1;
            if (!*p) return -1;
        } else if (*end) {
            return -1;
        } else {
            p = end;
        }
    }
    return n > 0 ? n : -1;
}

/*
 * The peer scripts compute `s = (s * 1103515245 + 12345) >>> 0` in JavaScript numbers:
 * the product can exceed 2^53, so it is rounded to a double before the sum (rounded again)
 * is taken modulo 2^32. Reproduce exactly that, not the exact 32-bit LCG, so all engines see
 * the same floats. `volatile` keeps the compiler from fusing the two roundings into an FMA.
 */
static uint32_t js_lcg_next(uint32_t s)
{
    volatile double product = (double)s * 1103515245.0;
    double sum = product + 12345.0;
    return (uint32_t)fmod(sum, 4294967296.0);
}

void cli_bench_fill(float *data, int64_t n, uint32_t *state)
{
    uint32_t s = *state;
    for (int64_t i = 0; i < n; i++) {
        s = js_lcg_next(s);
        data[i] = (float)((double)(s >> 8) / 16777216.0);
    }
    *state = s;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Elements per batch element of input `index` (product of the dims after the batch). */
static int64_t input_elements(const nn_model *model, int index)
{
    nn_io_info io;
    if (nn_model_input_info(model, index, &io) != 0) return -1;
    int64_t n = 1;
    for (int d = 1; d < io.rank; d++) {
        if (io.dim[d] <= 0) return -1;
        n *= io.dim[d];
    }
    return n;
}

typedef struct bench_config {
    int batches[MAX_LIST], n_batches;
    int threads[MAX_LIST], n_threads;
    int runs, warmup;
    nn_backend backend;
    nn_schedule schedule;
    int profile;
} bench_config;

/* Times one model at one batch size and thread count; prints the JSON line. */
static int bench_one(const char *name, const nn_model *model, int64_t macs, int batch, int threads,
                     const bench_config *cfg, double *times)
{
    nn_context_options copts = {
        .max_batch = batch, .threads = threads, .backend = cfg->backend, .schedule = cfg->schedule};
    nn_context *ctx = NULL;
    base_error_clear();
    int rc = nn_context_create(model, &copts, &ctx);
    if (rc != 0) {
        fprintf(stderr, "vultus bench nn: %s batch %d threads %d: context: %s\n", name, batch,
                threads, base_error_text(rc));
        return rc;
    }
    /* The peers seed once and fill the whole batch; inputs after the first continue. */
    uint32_t state = CLI_BENCH_SEED;
    for (int i = 0; i < nn_model_input_count(model); i++) {
        int64_t per = input_elements(model, i);
        float *in = nn_context_input(ctx, i);
        if (per < 0 || !in) {
            fprintf(stderr, "vultus bench nn: %s: input %d has no usable shape or buffer\n", name,
                    i);
            nn_context_destroy(ctx);
            return BASE_ERR_INVALID;
        }
        cli_bench_fill(in, per * batch, &state);
    }
    for (int r = 0; r < cfg->warmup + cfg->runs; r++) {
        uint64_t t0 = base_now_ns();
        rc = nn_context_run(ctx, batch);
        uint64_t t1 = base_now_ns();
        if (rc != 0) {
            fprintf(stderr, "vultus bench nn: %s batch %d threads %d: run: %s\n", name, batch,
                    threads, base_error_text(rc));
            nn_context_destroy(ctx);
            return rc;
        }
        if (r >= cfg->warmup) times[r - cfg->warmup] = (double)(t1 - t0) / 1e6;
        /* Profile the timed runs only, apart from the timing (profiling adds clock reads). */
        if (cfg->profile && r == cfg->warmup + cfg->runs - 1) {
            nn_context_set_profiling(ctx, 1);
            for (int p = 0; p < cfg->runs && !rc; p++)
                rc = nn_context_run(ctx, batch);
            fprintf(stderr, "profile: %s batch %d threads %d\n", name, batch, threads);
            nn_context_print_profile(ctx, stderr);
        }
    }
    nn_context_destroy(ctx);

    /* The median as the peers take it: the element at n/2 of the sorted times. */
    qsort(times, (size_t)cfg->runs, sizeof *times, compare_double);
    double ms = times[cfg->runs / 2];
    double gflops = ms > 0 ? 2.0 * (double)macs * batch / (ms / 1e3) / 1e9 : 0.0;
    json_t *line = json_pack("{s:s, s:s, s:s, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:i}", "bench",
                             "nn", "model", name, "engine", "vultus", "batch", batch, "threads",
                             threads, "ms", ms, "ms_per_image", ms / batch, "ms_min", times[0],
                             "gmacs", (double)macs / 1e9, "gflops", gflops, "runs", cfg->runs);
    if (line && cfg->backend == NN_BACKEND_REFERENCE)
        json_object_set_new(line, "backend", json_string("reference"));
    if (line && cfg->schedule != NN_SCHEDULE_AUTO)
        json_object_set_new(
            line, "schedule",
            json_string(cfg->schedule == NN_SCHEDULE_PER_IMAGE ? "image" : "batch"));
    cli_print_json_line(line, 6);
    return 0;
}

static int bench_nn(int argc, char **argv)
{
    static const struct option options[] = {
        {"models", required_argument, NULL, 'm'},   {"batch", required_argument, NULL, 'b'},
        {"threads", required_argument, NULL, 't'},  {"runs", required_argument, NULL, 'r'},
        {"warmup", required_argument, NULL, 'w'},   {"reference", no_argument, NULL, 'R'},
        {"schedule", required_argument, NULL, 'S'}, {"profile", no_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    bench_config cfg = {.batches = {1},
                        .n_batches = 1,
                        .threads = {1},
                        .n_threads = 1,
                        .runs = 20,
                        .warmup = 5,
                        .backend = NN_BACKEND_AUTO};
    const char *dir = "models/human";
    int c, one;
    optind = 0; /* GNU: restart getopt for this argv */
    while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        switch (c) {
        case 'm': dir = optarg; break;
        case 'b':
            cfg.n_batches = cli_parse_int_list(optarg, 1, 4096, cfg.batches, MAX_LIST);
            if (cfg.n_batches < 0) goto bad_list;
            break;
        case 't':
            cfg.n_threads = cli_parse_int_list(optarg, 1, 1024, cfg.threads, MAX_LIST);
            if (cfg.n_threads < 0) goto bad_list;
            break;
        case 'r':
            if (cli_parse_int_list(optarg, 1, 1000000, &cfg.runs, 1) != 1) goto bad_list;
            break;
        case 'w':
            if (cli_parse_int_list(optarg, 0, 1000000, &one, 1) != 1) goto bad_list;
            cfg.warmup = one;
            break;
        case 'R': cfg.backend = NN_BACKEND_REFERENCE; break;
        case 'S':
            if (strcmp(optarg, "auto") == 0)
                cfg.schedule = NN_SCHEDULE_AUTO;
            else if (strcmp(optarg, "image") == 0)
                cfg.schedule = NN_SCHEDULE_PER_IMAGE;
            else if (strcmp(optarg, "batch") == 0)
                cfg.schedule = NN_SCHEDULE_WHOLE_BATCH;
            else
                goto bad_list;
            break;
        case 'P': cfg.profile = 1; break;
        case 'h': bench_usage(stdout); return CLI_EXIT_OK;
        default: bench_usage(stderr); return CLI_EXIT_USAGE;
        }
    }

    double *times = malloc((size_t)cfg.runs * sizeof *times);
    if (!times) {
        fprintf(stderr, "vultus bench nn: out of memory\n");
        return CLI_EXIT_FAILURE;
    }
    int n_models = optind < argc ? argc - optind : N_DEFAULT_MODELS;
    int status = CLI_EXIT_OK;
    for (int m = 0; m < n_models; m++) {
        const char *arg = optind < argc ? argv[optind + m] : default_models[m];
        char path[4096], name[256];
        size_t len = strlen(arg);
        if (len > 5 && strcmp(arg + len - 5, ".json") == 0) {
            snprintf(path, sizeof path, "%s", arg);
            cli_model_name(arg, name, sizeof name);
        } else {
            snprintf(path, sizeof path, "%s/%s.json", dir, arg);
            snprintf(name, sizeof name, "%s", arg);
        }

        nn_model *model = NULL;
        base_error_clear();
        int rc;
        if (strcmp(arg, "faceapi-resnet") == 0) {
            snprintf(path, sizeof path,
                     "%s/../faceapi/face_recognition_model-weights_manifest.json", dir);
            rc = face_faceapi_resnet_load(path, &model);
        } else if (strcmp(arg, "faceapi-agegender") == 0) {
            snprintf(path, sizeof path, "%s/../faceapi/age_gender_model-weights_manifest.json",
                     dir);
            rc = face_faceapi_agegender_load(path, &model);
        } else {
            rc = nn_model_load_tfjs(path, NULL, &model);
        }
        if (rc != 0) {
            fprintf(stderr, "vultus bench nn: %s: %s\n", path, base_error_text(rc));
            status = CLI_EXIT_FAILURE;
            continue;
        }
        nn_model_stats st;
        nn_model_get_stats(model, &st);
        for (int b = 0; b < cfg.n_batches; b++)
            for (int t = 0; t < cfg.n_threads; t++)
                if (bench_one(name, model, st.macs, cfg.batches[b], cfg.threads[t], &cfg, times))
                    status = CLI_EXIT_FAILURE;
        nn_model_destroy(model);
    }
    free(times);
    return status;

bad_list:
    fprintf(stderr, "vultus bench nn: bad value '%s' for --%s\n", optarg,
            c == 'b'   ? "batch"
            : c == 't' ? "threads"
            : c == 'r' ? "runs"
            : c == 'S' ? "schedule"
                       : "warmup");
    return CLI_EXIT_USAGE;
}

static int bench_peak(int argc, char **argv)
{
    if (argc > 1) {
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
            bench_usage(stdout);
            return CLI_EXIT_OK;
        }
        fprintf(stderr, "vultus bench peak: unexpected argument '%s'\n\n", argv[1]);
        bench_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *isa = "";
    double gflops = cli_peak_gflops(&isa);
    cli_print_json_line(json_pack("{s:s, s:f, s:s, s:i}", "bench", "nn-peak", "gflops", gflops,
                                  "isa", isa, "threads", 1),
                        6);
    return CLI_EXIT_OK;
}

/* Resident set size of this process in MiB, from /proc/self/statm. */
static double rss_mib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
    fclose(f);
    return resident < 0 ? -1 : (double)resident * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

/* vultus bench load: start-up cost of the model pack, cold process: wall time to load every
 * default model and the RSS afterwards (and once one context per model exists). */
static int bench_load(int argc, char **argv)
{
    static const struct option options[] = {
        {"models", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = "models/human";
    int c;
    optind = 0; /* GNU: restart getopt for this argv */
    while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        switch (c) {
        case 'm': dir = optarg; break;
        case 'h': bench_usage(stdout); return CLI_EXIT_OK;
        default: bench_usage(stderr); return CLI_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vultus bench load: unexpected argument '%s'\n\n", argv[optind]);
        bench_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    nn_model *models[N_DEFAULT_MODELS] = {0};
    double rss0 = rss_mib();
    uint64_t t0 = base_now_ns();
    int rc = 0;
    for (int i = 0; i < N_DEFAULT_MODELS && !rc; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.json", dir, default_models[i]);
        rc = nn_model_load_tfjs(path, NULL, &models[i]);
        if (rc) fprintf(stderr, "vultus bench load: %s\n", base_error_message());
    }
    double ms = (double)(base_now_ns() - t0) / 1e6;
    double rss_loaded = rss_mib();
    nn_context *ctx[N_DEFAULT_MODELS] = {0};
    for (int i = 0; i < N_DEFAULT_MODELS && !rc; i++)
        rc = nn_context_create(models[i], NULL, &ctx[i]);
    double rss_contexts = rss_mib();
    if (!rc)
        cli_print_json_line(json_pack("{s:s, s:i, s:f, s:f, s:f, s:f}", "bench", "nn-load",
                                      "models", N_DEFAULT_MODELS, "ms", ms, "rss_start_mb", rss0,
                                      "rss_mb", rss_loaded, "rss_with_contexts_mb", rss_contexts),
                            6);
    for (int i = 0; i < N_DEFAULT_MODELS; i++) {
        nn_context_destroy(ctx[i]);
        nn_model_destroy(models[i]);
    }
    return rc ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
}

int cli_bench_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        bench_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "nn") == 0) return bench_nn(argc - 1, argv + 1);
    if (strcmp(argv[1], "peak") == 0) return bench_peak(argc - 1, argv + 1);
    if (strcmp(argv[1], "load") == 0) return bench_load(argc - 1, argv + 1);
    if (strcmp(argv[1], "pipeline") == 0) return cli_bench_pipeline_main(argc - 1, argv + 1);
    fprintf(stderr, "vultus bench: unknown benchmark '%s'\n", argv[1]);
    bench_usage(stderr);
    return CLI_EXIT_USAGE;
}
