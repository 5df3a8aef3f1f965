/*
 * `vultus gallery ...`, `vultus enroll ...`, `vultus search ...` — the gallery from the
 * command line. The store is DATA/vultus.db (DATA from --data, else $VULTUS_DATA, else
 * "data"), the same file `vultus serve` opens, so the CLI and the service share one store;
 * or the PostgreSQL database of --store URL (else $VULTUS_STORE), as `vultus serve --store`.
 *
 *   gallery create NAME [--embedder E] [--dtype int8|f16|f32] [--threshold X]
 *   gallery list | show NAME | delete NAME | export NAME FILE | import FILE [--as NAME]
 *   gallery delete-face COLLECTION ID | delete-subject COLLECTION SUBJECT
 *   enroll --collection C (--subject S IMAGE... | --dir DIR)
 *   search --collection C [--top K] IMAGE...
 *
 * Results are JSON lines on stdout; progress and diagnostics go to stderr.
 */
#include "base/base.h"
#include "cli/cli.h"
#include "face/face.h"
#include "gallery/gallery.h"
#include "img/img.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* SHA-256 of the source image, as the service computes it (src/http/sha256.c). */
void http_sha256_digest(const void *data, size_t len, uint8_t digest[32]);
void http_hex(const uint8_t *bytes, size_t len, char *out);

#define MAX_IMAGE_BYTES (64u << 20)

/*
 * The decision threshold a new collection gets: face_threshold_at_far() at FACE_DECISION_FAR
 * (1e-3), the same threshold the service gives a new collection and uses for /v1/verify, so
 * the command line and the API decide alike. For faceapi-resnet-v1 (the default embedder)
 * that is 0.930, calibrated on ../shared/data/lfw-dev (every different-person pair of its
 * images); --far 1e-4 gives 0.944. See docs/gallery.md, "Default thresholds". Embedders not
 * calibrated at a FAR get face_default_threshold() (the accuracy-maximising one on LFW).
 */
static float default_threshold(face_embedder e, int far4)
{
    return face_threshold_at_far(e, far4 ? 1e-4 : FACE_DECISION_FAR);
}

/* ---- shared helpers ------------------------------------------------------------------- */

/* The data folder, or a PostgreSQL URL ($VULTUS_STORE wins: it names the shared store);
 * --data DIR and --store URL both set it, the last one given wins. */
static const char *data_dir_default(void)
{
    const char *store = getenv("VULTUS_STORE");
    if (store && *store) return store;
    const char *env = getenv("VULTUS_DATA");
    return env && *env ? env : "data";
}

/* `--data "$DIR"` with DIR unset: "" would name /vultus.db ("no gallery at /vultus.db"). */
static int empty_location(const char *cmd, const char *data_dir, const char *models_dir)
{
    if (*data_dir && (!models_dir || *models_dir)) return 0;
    fprintf(stderr, "vultus %s: %s: empty value\n", cmd, *data_dir ? "--models" : "--data/--store");
    return -1;
}

static int fail(const char *cmd, int rc)
{
    fprintf(stderr, "vultus %s: %s\n", cmd, base_error_text(rc));
    return CLI_EXIT_FAILURE;
}

/* Opens DATA/vultus.db with `options`; `create` makes the data folder when missing, else it
 * must exist. A PostgreSQL URL in place of DATA opens that database. */
static int open_gallery_with(const char *cmd, const char *data_dir, int create,
                             const struct gal_options *options, struct gal **g)
{
    if (gal_location_is_url(data_dir)) {
        base_error_clear();
        int rc = gal_open(data_dir, options, g);
        if (rc) fail(cmd, rc);
        return rc ? -1 : 0;
    }
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/vultus.db", data_dir);
    if (n < 0 || (size_t)n >= sizeof path) {
        fprintf(stderr, "vultus %s: data folder path too long\n", cmd);
        return -1;
    }
    struct stat st;
    if (!create && stat(path, &st) != 0) {
        fprintf(stderr, "vultus %s: no gallery at %s (create a collection first, or pass --data)\n",
                cmd, path);
        return -1;
    }
    /* The folder holds faces (thumbnails, embeddings): its owner's only, as serve makes it. */
    if (create && mkdir(data_dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "vultus %s: data folder %s: %s\n", cmd, data_dir, strerror(errno));
        return -1;
    }
    base_error_clear();
    int rc = gal_open(path, options, g);
    if (rc) {
        fail(cmd, rc);
        return -1;
    }
    return 0;
}

/* open_gallery_with; `store_only` opens the store without loading any collection's faces
 * (gal_options.store_only): for commands that only read what the store says of collections,
 * which would otherwise pay for the whole gallery in time and memory. */
static int open_gallery(const char *cmd, const char *data_dir, int create, int store_only,
                        struct gal **g)
{
    const struct gal_options options = {.store_only = store_only};
    return open_gallery_with(cmd, data_dir, create, &options, g);
}

/* A number option's value: the whole text, not empty (strtof reads "" as 0 and stops at
 * "0.5x"). Returns 0, or -1 when it is not a number. */
static int parse_float(const char *text, float *out)
{
    char *end = NULL;
    *out = strtof(text, &end);
    return end == text || *end ? -1 : 0;
}

static json_t *num(double v)
{
    if (!isfinite(v)) return json_null();
    return json_real(round(v * 10000.0) / 10000.0);
}

/* The embedder whose id a collection is pinned to. */
static int embedder_for_model(const char *model_id, face_embedder *out)
{
    static const face_embedder all[] = {FACE_EMBEDDER_FACEAPI_RESNET, FACE_EMBEDDER_MOBILEFACENET,
                                        FACE_EMBEDDER_FACERES, FACE_EMBEDDER_MOBILEFACE};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(model_id, face_embedder_id(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    }
    return -1;
}

static json_t *collection_json(const struct gal_collection_info *c)
{
    return json_pack("{s:s,s:s,s:i,s:s,s:o,s:I,s:I,s:I}", "name", c->name, "model", c->model_id,
                     "dim", (int)c->dim, "dtype", gal_dtype_name(c->dtype), "threshold",
                     num(c->threshold), "subjects", (json_int_t)c->subject_count, "faces",
                     (json_int_t)c->face_count, "created_ms", (json_int_t)c->created_ms);
}

static json_t *box_json(float x, float y, float w, float h)
{
    json_t *a = json_array();
    json_array_append_new(a, json_real(round(x * 100.0) / 100.0));
    json_array_append_new(a, json_real(round(y * 100.0) / 100.0));
    json_array_append_new(a, json_real(round(w * 100.0) / 100.0));
    json_array_append_new(a, json_real(round(h * 100.0) / 100.0));
    return a;
}

/* Loads the models and one context for the collection's embedder. */
static int load_pipeline(const char *cmd, const char *models_dir,
                         const struct gal_collection_info *c, unsigned stages, face_options *opts,
                         face_models **models, face_context **ctx)
{
    face_embedder e;
    if (embedder_for_model(c->model_id, &e) != 0) {
        fprintf(stderr,
                "vultus %s: collection %s is pinned to model %s, which this build does not have\n",
                cmd, c->name, c->model_id);
        return -1;
    }
    if ((uint32_t)face_embedding_dim(e) != c->dim) {
        fprintf(stderr, "vultus %s: collection %s has dimension %u, model %s gives %d\n", cmd,
                c->name, (unsigned)c->dim, c->model_id, face_embedding_dim(e));
        return -1;
    }
    face_models_options mopts = {.models_dir = models_dir, .load = stages, .embedder = e};
    *opts = (face_options){.stages = stages, .embedder = e};
    base_error_clear();
    int rc = face_models_load(&mopts, models);
    if (!rc) rc = face_context_create(*models, 8, ctx);
    if (rc) {
        fail(cmd, rc);
        face_models_destroy(*models);
        *models = NULL;
        return -1;
    }
    return 0;
}

/* ---- gallery subcommands -------------------------------------------------------------- */

/*
 * The gallery subcommands and how many arguments each takes: the dispatch below and the
 * `vultus --help` line (cli_gallery_commands) both read this table, so the top-level help
 * cannot leave one out again (it once omitted delete-face and delete-subject).
 */
static const struct gallery_command {
    const char *name;
    int args;
} gallery_commands[] = {
    {"create", 1}, {"list", 0},   {"show", 1},        {"delete", 1},
    {"export", 2}, {"import", 1}, {"delete-face", 2}, {"delete-subject", 2},
    {"set-threshold", 2},
};
#define N_GALLERY_COMMANDS (sizeof gallery_commands / sizeof gallery_commands[0])

const char *cli_gallery_commands(void)
{
    /* built once, from the main thread (cli.h) */
    static char text[256];
    if (!text[0]) {
        size_t used = 0;
        for (size_t i = 0; i < N_GALLERY_COMMANDS && used < sizeof text; i++)
            used += (size_t)snprintf(text + used, sizeof text - used, "%s%s", i ? "|" : "",
                                     gallery_commands[i].name);
    }
    return text;
}

/*
 * Ctrl-C (SIGINT) or SIGTERM during `gallery export`: the export stops at the next record and
 * its temporary file FILE.tmp.* is removed (gal_export_stoppable), where the default action
 * ended the process with the half-written file left beside FILE. Every such signal only asks
 * (there is nothing to finish: the export is abandoned); SIGQUIT or SIGKILL still end it at
 * once. *sig: the signal that stopped it, or 0.
 */
static volatile sig_atomic_t export_stop;

static void export_on_signal(int sig)
{
    export_stop = sig;
}

static int export_interruptible(struct gal *g, const char *collection, const char *path,
                                int *sig)
{
    struct sigaction sa = {.sa_handler = export_on_signal, .sa_flags = SA_RESTART}, old[2];
    sigemptyset(&sa.sa_mask);
    int installed[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        /* A signal the caller ignores (nohup, a background job) stays ignored. */
        int s = k ? SIGTERM : SIGINT;
        if (sigaction(s, NULL, &old[k]) == 0 && old[k].sa_handler != SIG_IGN)
            installed[k] = sigaction(s, &sa, NULL) == 0;
    }
    int rc = gal_export_stoppable(g, collection, path, &export_stop);
    for (int k = 0; k < 2; k++)
        if (installed[k]) sigaction(k ? SIGTERM : SIGINT, &old[k], NULL);
    *sig = export_stop;
    return rc;
}

static void gallery_usage(FILE *out)
{
    fprintf(
        out,
        "usage: vultus gallery COMMAND [--data DIR] ...\n"
        "\n"
        "  create NAME [--embedder E] [--dtype int8|f16|f32] [--threshold X | --far 1e-3|1e-4]\n"
        "                  a collection pinned to embedder E (default, faceapi, faceres,\n"
        "                  mobileface, mobilefacenet); dtype default int8; threshold\n"
        "                  default: the embedder's at FAR 1e-3 on LFW (faceapi: 0.930;\n"
        "                  --far 1e-4: 0.944), see docs/gallery.md\n"
        "  list            the collections, one JSON line each\n"
        "  show NAME       a collection and its subjects with their face ids\n"
        "  delete NAME     a collection with its subjects and faces\n"
        "  export NAME FILE [--force]  write a collection to FILE (docs/gallery.md format);\n"
        "                  a FILE that exists is replaced only with --force; Ctrl-C or\n"
        "                  SIGTERM stops it, leaving no partial file (status 130, 143)\n"
        "  import FILE [--as NAME]  create a collection from an export file\n"
        "  delete-face COLLECTION FACE_ID\n"
        "  delete-subject COLLECTION SUBJECT\n"
        "  set-threshold COLLECTION T  the collection's decision threshold (cosine, in\n"
        "                  [-1, 1]) from now on, for the CLI and `vultus serve` alike\n"
        "\n"
        "--data DIR: the data folder, store DIR/vultus.db, shared with `vultus serve`\n"
        "(default $VULTUS_DATA or data). --store URL: a PostgreSQL store instead\n"
        "(postgres://USER:PASSWORD@HOST:5432/DB; default $VULTUS_STORE), as `vultus serve\n"
        "--store`. $VULTUS_STORE_TIMEOUT_MS: the longest wait for a PostgreSQL statement's\n"
        "answer, here and in `vultus serve` (default 10000; 0: no limit).\n");
}

int cli_gallery_main(int argc, char **argv)
{
    if (argc < 2) {
        gallery_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    static const struct option long_opts[] = {
        {"data", required_argument, NULL, 'D'},
        {"store", required_argument, NULL, 'D'},
        {"embedder", required_argument, NULL, 'E'},
        {"dtype", required_argument, NULL, 't'},
        {"threshold", required_argument, NULL, 'T'},
        {"as", required_argument, NULL, 'a'},
        {"far", required_argument, NULL, 'F'},
        {"force", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *data_dir = data_dir_default(), *as_name = NULL;
    int force = 0;
    face_embedder embedder = FACE_EMBEDDER_DEFAULT;
    enum gal_dtype dtype = GAL_DTYPE_INT8;
    float threshold = NAN;
    int far4 = 0, far_given = 0;
    /* Options may come before the command too ("gallery --data D list"): the command is the
     * first argument that is not an option. A negative number is an operand (set-threshold's
     * "-0.5"), not an option. */
    struct cli_operands numbers;
    cli_operands_protect(argc, argv, "h", long_opts, &numbers);
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (c) {
        case 'D': data_dir = optarg; break;
        case 'E':
            if (face_embedder_parse(optarg, &embedder) != 0) {
                fprintf(stderr, "vultus gallery: --embedder %s: unknown embedder\n", optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 't':
            if (gal_dtype_parse(optarg, &dtype) != 0) {
                fprintf(stderr, "vultus gallery: --dtype %s: expected int8, f16 or f32\n", optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'T':
            if (parse_float(optarg, &threshold) != 0 ||
                !(threshold >= -1.0f && threshold <= 1.0f)) {
                fprintf(stderr, "vultus gallery: --threshold %s: expected a number in [-1, 1]\n",
                        optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'a': as_name = optarg; break;
        case 'f': force = 1; break;
        case 'F':
            if (strcmp(optarg, "1e-3") == 0 || strcmp(optarg, "0.001") == 0) {
                far4 = 0;
            } else if (strcmp(optarg, "1e-4") == 0 || strcmp(optarg, "0.0001") == 0) {
                far4 = 1;
            } else {
                fprintf(stderr, "vultus gallery: --far %s: expected 1e-3 or 1e-4\n", optarg);
                return CLI_EXIT_USAGE;
            }
            far_given = 1;
            break;
        case 'h': gallery_usage(stdout); return CLI_EXIT_OK;
        default: gallery_usage(stderr); return CLI_EXIT_USAGE;
        }
    }
    cli_operands_restore(argc, argv, &numbers);
    if (empty_location("gallery", data_dir, NULL) != 0) return CLI_EXIT_USAGE;
    if (far_given && !isnan(threshold)) {
        /* two ways to set one number: which one was meant is not ours to guess */
        fprintf(stderr, "vultus gallery: give --threshold or --far, not both\n");
        return CLI_EXIT_USAGE;
    }
    if (optind >= argc) {
        fprintf(stderr, "vultus gallery: which command?\n\n");
        gallery_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *sub = argv[optind];
    int npos = argc - optind - 1;
    char **pos = argv + optind + 1;
    size_t si;
    for (si = 0; si < N_GALLERY_COMMANDS; si++)
        if (strcmp(sub, gallery_commands[si].name) == 0) break;
    if (si == N_GALLERY_COMMANDS) {
        fprintf(stderr, "vultus gallery: unknown command '%s'\n\n", sub);
        gallery_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (npos != gallery_commands[si].args) {
        fprintf(stderr, "vultus gallery %s: expected %d argument(s), got %d\n\n", sub,
                gallery_commands[si].args, npos);
        gallery_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (force && strcmp(sub, "export") != 0) {
        fprintf(stderr, "vultus gallery %s: --force applies to export only\n", sub);
        return CLI_EXIT_USAGE;
    }
    /* An export onto a file that exists (an earlier export, or anything else by that name)
     * replaces it only when asked: a slip of the name must not cost a file. Checked before
     * the store opens; the export itself is written beside FILE and renamed (gal_export), so
     * an interrupted one never leaves FILE half-written. */
    struct stat st;
    if (strcmp(sub, "export") == 0 && !force && lstat(pos[1], &st) == 0) {
        fprintf(stderr, "vultus gallery export: %s exists%s; give --force to replace it\n", pos[1],
                S_ISDIR(st.st_mode) ? " (a folder)" : "");
        return CLI_EXIT_FAILURE;
    }
    int64_t face_id = 0;
    if (strcmp(sub, "delete-face") == 0) {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(pos[1], &end, 10);
        if (end == pos[1] || *end || v <= 0 || errno == ERANGE) {
            fprintf(stderr, "vultus gallery delete-face: %s: expected a face id\n", pos[1]);
            return CLI_EXIT_USAGE;
        }
        face_id = v;
    }
    float new_threshold = NAN;
    if (strcmp(sub, "set-threshold") == 0 &&
        (parse_float(pos[1], &new_threshold) != 0 ||
         !(new_threshold >= -1.0f && new_threshold <= 1.0f))) {
        fprintf(stderr, "vultus gallery set-threshold: %s: expected a number in [-1, 1]\n",
                pos[1]);
        return CLI_EXIT_USAGE;
    }
    int create = strcmp(sub, "create") == 0 || strcmp(sub, "import") == 0;
    struct gal *g = NULL;
    /* Every gallery subcommand reads or writes what the store has (rows, counts, subjects,
     * face ids, an export's records) and none searches: none loads the faces (store_only). */
    if (open_gallery("gallery", data_dir, create, 1, &g) != 0) return CLI_EXIT_FAILURE;

    int rc = 0, status = CLI_EXIT_OK;
    base_error_clear();
    if (strcmp(sub, "create") == 0) {
        struct gal_collection_info info = {0};
        snprintf(info.name, sizeof info.name, "%s", pos[0]);
        if (strlen(pos[0]) > GAL_NAME_MAX) {
            rc = base_error_set(BASE_ERR_INVALID, "collection name longer than %d", GAL_NAME_MAX);
        } else {
            snprintf(info.model_id, sizeof info.model_id, "%s", face_embedder_id(embedder));
            info.dim = (uint32_t)face_embedding_dim(embedder);
            info.dtype = dtype;
            info.threshold = isnan(threshold) ? default_threshold(embedder, far4) : threshold;
            rc = gal_collection_create(g, &info);
            if (!rc) rc = gal_collection_get(g, pos[0], &info);
            if (!rc) cli_print_json_line(collection_json(&info), 8);
        }
    } else if (strcmp(sub, "list") == 0) {
        struct gal_collection_info *list = NULL;
        size_t n = 0;
        rc = gal_collection_list(g, &list, &n);
        for (size_t i = 0; !rc && i < n; i++)
            cli_print_json_line(collection_json(&list[i]), 8);
        free(list);
    } else if (strcmp(sub, "show") == 0) {
        struct gal_collection_info info;
        rc = gal_collection_get(g, pos[0], &info);
        if (!rc) {
            json_t *o = collection_json(&info);
            json_t *subjects = json_array();
            char after[GAL_ID_MAX + 1] = "";
            for (;;) {
                struct gal_subject_info *page = NULL;
                size_t n = 0;
                rc = gal_subject_list(g, pos[0], after, 1000, &page, &n);
                if (rc) break;
                for (size_t i = 0; i < n; i++) {
                    int64_t *ids = NULL;
                    size_t nf = 0;
                    json_t *s = json_pack("{s:s,s:I}", "subject", page[i].id, "faces",
                                          (json_int_t)page[i].face_count);
                    if (gal_face_list(g, pos[0], page[i].id, &ids, &nf) == 0) {
                        json_t *a = json_array();
                        for (size_t k = 0; k < nf; k++)
                            json_array_append_new(a, json_integer(ids[k]));
                        json_object_set_new(s, "face_ids", a);
                        free(ids);
                    }
                    json_error_t jerr;
                    json_t *meta = page[i].metadata ? json_loads(page[i].metadata, 0, &jerr) : NULL;
                    if (meta) json_object_set_new(s, "metadata", meta);
                    json_array_append_new(subjects, s);
                }
                if (n) snprintf(after, sizeof after, "%s", page[n - 1].id);
                gal_subject_list_free(page, n);
                if (n < 1000) break;
            }
            json_object_set_new(o, "subject_list", subjects);
            if (!rc)
                cli_print_json_line(o, 8);
            else
                json_decref(o);
        }
    } else if (strcmp(sub, "delete") == 0) {
        rc = gal_collection_delete(g, pos[0]);
        if (!rc) cli_print_json_line(json_pack("{s:s}", "deleted", pos[0]), 8);
    } else if (strcmp(sub, "export") == 0) {
        int sig = 0;
        rc = export_interruptible(g, pos[0], pos[1], &sig);
        if (!rc) cli_print_json_line(json_pack("{s:s,s:s}", "exported", pos[0], "file", pos[1]), 8);
        if (rc && sig) {
            fprintf(stderr, "vultus gallery export: interrupted (%s); %s not written\n",
                    sig == SIGINT ? "SIGINT" : "SIGTERM", pos[1]);
            gal_close(g);
            return 128 + sig; /* as the shell reports a process the signal ended */
        }
    } else if (strcmp(sub, "import") == 0) {
        /* Without --as the collection is named in the file; report the one that was not there
         * before. Not "the newest": an import keeps the exported collection's created_ms. */
        struct gal_collection_info *before = NULL;
        size_t n_before = 0;
        rc = as_name ? 0 : gal_collection_list(g, &before, &n_before);
        if (!rc) rc = gal_import(g, pos[0], as_name);
        struct gal_collection_info *list = NULL;
        size_t n = 0;
        if (!rc && gal_collection_list(g, &list, &n) == 0) {
            const struct gal_collection_info *found = NULL;
            for (size_t i = 0; i < n && !found; i++) {
                int known = 0;
                for (size_t k = 0; !as_name && k < n_before && !known; k++)
                    known = strcmp(list[i].name, before[k].name) == 0;
                if (as_name ? strcmp(list[i].name, as_name) == 0 : !known) found = &list[i];
            }
            if (found) {
                json_t *o = collection_json(found);
                json_object_set_new(o, "imported", json_string(pos[0]));
                cli_print_json_line(o, 8);
            }
        }
        free(list);
        free(before);
    } else if (strcmp(sub, "delete-face") == 0) {
        rc = gal_face_delete(g, pos[0], face_id);
        if (!rc)
            cli_print_json_line(
                json_pack("{s:s,s:I}", "collection", pos[0], "deleted_face", (json_int_t)face_id),
                8);
    } else if (strcmp(sub, "set-threshold") == 0) {
        struct gal_collection_info info;
        rc = gal_collection_set_threshold(g, pos[0], new_threshold);
        if (!rc) rc = gal_collection_get(g, pos[0], &info);
        if (!rc) cli_print_json_line(collection_json(&info), 8);
    } else if (strcmp(sub, "delete-subject") == 0) {
        rc = gal_subject_delete(g, pos[0], pos[1]);
        if (!rc)
            cli_print_json_line(
                json_pack("{s:s,s:s}", "collection", pos[0], "deleted_subject", pos[1]), 8);
    }
    if (rc) {
        char cmd[64], quoted[GAL_NAME_MAX + 3];
        snprintf(cmd, sizeof cmd, "gallery %s", sub);
        snprintf(quoted, sizeof quoted, "\"%s\"", pos[0]);
        /* The store says what is missing by its own name only ('subject "x" does not exist':
         * it holds the collection's row id, not its name); for a command given a collection,
         * say which one, unless the message names it already (the collection is missing). */
        const char *msg = base_error_message();
        if (rc == BASE_ERR_NOT_FOUND && npos > 0 && strcmp(sub, "import") != 0 && *msg &&
            !strstr(msg, quoted)) {
            fprintf(stderr, "vultus %s: %s in collection %s\n", cmd, base_error_text(rc), quoted);
            status = CLI_EXIT_FAILURE;
        } else {
            status = fail(cmd, rc);
        }
    }
    gal_close(g);
    return status;
}

/* ---- enroll --------------------------------------------------------------------------- */

static void enroll_usage(FILE *out)
{
    fprintf(out,
            "usage: vultus enroll --collection C --subject S [options] IMAGE...\n"
            "       vultus enroll --collection C --dir DIR [options]\n"
            "\n"
            "Enrols the most prominent face of each image (the largest area in view, nearest\n"
            "the centre: the face /v1/verify compares). With --dir: DIR/SUBJECT/IMAGE, one\n"
            "subject per sub-folder, named after it; images directly in DIR have no subject\n"
            "and are not enrolled, which stderr says. Subjects are created when missing. An\n"
            "image the subject already has (the same file bytes, SHA-256) is skipped as\n"
            "already_enrolled, so running the same command again, or again after Ctrl-C,\n"
            "enrols only what is missing. A face that matches another subject of the\n"
            "collection (at or above its threshold) is stored and its line names them in\n"
            "also_matches; with --on-match refuse it is skipped as matches_other_subject.\n"
            "This checks what the collection holds when the image is enrolled, not a\n"
            "uniqueness rule: a concurrent enrolment elsewhere is not seen. Prints a JSON\n"
            "line per image and a summary line; progress on stderr. Ctrl-C (or SIGTERM)\n"
            "finishes the image in hand, prints the summary (\"interrupted\":true) and\n"
            "exits 130 (143); a second one stops at once.\n"
            "Exit status 0 when no image failed (skipped ones included), 1 when one could not\n"
            "be read, analysed or stored, 2 for a usage error.\n"
            "\n"
            "options:\n"
            "  --min-quality Q  skip faces whose quality (0..1) is below Q (default %g)\n"
            "  --on-match M     store (default) or refuse a face that matches another subject\n"
            "  --data DIR       data folder (default $VULTUS_DATA or data)\n"
            "  --store URL      a PostgreSQL store instead (default $VULTUS_STORE)\n"
            "  --models DIR     model folder (default models)\n",
            FACE_MIN_QUALITY_DEFAULT);
}

typedef struct enrol_item {
    char *subject;
    char *path;
} enrol_item;

typedef struct enrol_list {
    enrol_item *items;
    size_t n, cap;
} enrol_list;

static int list_push(enrol_list *l, const char *subject, const char *path)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        enrol_item *p = realloc(l->items, cap * sizeof *p);
        if (!p) return -1;
        l->items = p;
        l->cap = cap;
    }
    l->items[l->n].subject = strdup(subject);
    l->items[l->n].path = strdup(path);
    if (!l->items[l->n].subject || !l->items[l->n].path) {
        free(l->items[l->n].subject);
        free(l->items[l->n].path);
        return -1;
    }
    l->n++;
    return 0;
}

static void list_free(enrol_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].subject);
        free(l->items[i].path);
    }
    free(l->items);
}

static int is_image_name(const char *name)
{
    static const char *ext[] = {".jpg", ".jpeg", ".png", ".webp"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        size_t m = strlen(ext[i]);
        if (n > m && strcasecmp(name + n - m, ext[i]) == 0) return 1;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of a folder's entries that are folders (dirs=1) or image files (dirs=0). */
static int scan_dir(const char *dir, int dirs, char ***names, size_t *count)
{
    *names = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) return base_error_set(BASE_ERR_IO, "%s: %s", dir, strerror(errno));
    size_t cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0) continue;
        if (dirs ? !S_ISDIR(st.st_mode) : !(S_ISREG(st.st_mode) && is_image_name(e->d_name)))
            continue;
        if (*count == cap) {
            cap = cap ? cap * 2 : 32;
            char **p = realloc(*names, cap * sizeof *p);
            if (!p) {
                rc = BASE_ERR_NOMEM;
                break;
            }
            *names = p;
        }
        if (!((*names)[*count] = strdup(e->d_name))) {
            rc = BASE_ERR_NOMEM;
            break;
        }
        (*count)++;
    }
    closedir(d);
    if (*count) qsort(*names, *count, sizeof **names, cmp_str);
    return rc;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/*
 * Every image under `dir` into `l` (subject ""): the folder's own images in name order, then
 * each sub-folder's the same way, so a run's lines come in a stable order. Depth is bounded:
 * a symbolic link back up the tree must not recurse for ever.
 */
#define IMAGE_TREE_DEPTH_MAX 16

static int collect_images(const char *dir, int depth, enrol_list *l)
{
    if (depth > IMAGE_TREE_DEPTH_MAX)
        return base_error_set(BASE_ERR_INVALID, "%s: more than %d folders deep (a link loop?)",
                              dir, IMAGE_TREE_DEPTH_MAX);
    char **names = NULL;
    size_t n = 0;
    int rc = scan_dir(dir, 0, &names, &n);
    for (size_t i = 0; i < n && !rc; i++) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        rc = list_push(l, "", path) ? BASE_ERR_NOMEM : 0;
    }
    free_names(names, n);
    if (rc) return rc;
    rc = scan_dir(dir, 1, &names, &n);
    for (size_t i = 0; i < n && !rc; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        rc = collect_images(path, depth + 1, l);
    }
    free_names(names, n);
    return rc;
}

/*
 * The image hashes of one subject's faces, so that enrolling the same file for the same
 * subject again (a re-run, or a run resumed after Ctrl-C) skips it instead of storing a
 * second copy of the face. Items come grouped by subject (one --subject, or --dir's
 * sub-folders in order), so one subject's hashes are held at a time and read from the store
 * when the subject changes: one face_list and one face_get per face already enrolled.
 */
typedef struct known_hashes {
    char subject[GAL_ID_MAX + 1];
    int loaded;
    char (*hash)[GAL_HASH_MAX + 1];
    int64_t *face_id;
    size_t n, cap;
} known_hashes;

static int known_push(known_hashes *k, const char *hash, int64_t face_id)
{
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 16;
        char(*h)[GAL_HASH_MAX + 1] = realloc(k->hash, cap * sizeof *h);
        if (!h) return BASE_ERR_NOMEM;
        k->hash = h;
        int64_t *ids = realloc(k->face_id, cap * sizeof *ids);
        if (!ids) return BASE_ERR_NOMEM;
        k->face_id = ids;
        k->cap = cap;
    }
    snprintf(k->hash[k->n], sizeof k->hash[k->n], "%s", hash);
    k->face_id[k->n++] = face_id;
    return 0;
}

/* Makes `k` hold `subject`'s hashes; a subject not yet in the collection has none. */
static int known_load(known_hashes *k, struct gal *g, const char *collection, const char *subject)
{
    if (k->loaded && strcmp(k->subject, subject) == 0) return 0;
    k->n = 0;
    k->loaded = 0;
    snprintf(k->subject, sizeof k->subject, "%s", subject);
    int64_t *ids = NULL;
    size_t n = 0;
    base_error_clear();
    int rc = gal_face_list(g, collection, subject, &ids, &n);
    if (rc == BASE_ERR_NOT_FOUND) rc = 0, n = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        struct gal_face_record rec;
        rc = gal_face_get(g, collection, ids[i], &rec);
        if (rc == BASE_ERR_NOT_FOUND) { /* deleted meanwhile */
            rc = 0;
            continue;
        }
        if (!rc) rc = known_push(k, rec.image_hash, rec.face_id);
        gal_face_record_deinit(&rec);
    }
    free(ids);
    if (!rc) k->loaded = 1;
    return rc;
}

static int64_t known_find(const known_hashes *k, const char *hash)
{
    for (size_t i = 0; i < k->n; i++)
        if (strcmp(k->hash[i], hash) == 0) return k->face_id[i];
    return 0;
}

static void progress(size_t done, size_t total, uint64_t t0, const char *label)
{
    double secs = (double)(base_now_ns() - t0) / 1e9;
    double rate = secs > 0 ? (double)done / secs : 0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0;
    int width = 30, fill = total ? (int)((double)width * (double)done / (double)total) : width;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r[%s] %zu/%zu %.1f img/s ETA %d:%02d %-30.30s", bar, done, total, rate,
            (int)eta / 60, (int)eta % 60, label);
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

/* also_matches: the other subjects face `f` matches (gal_search_others, as the HTTP route),
 * into a new JSON array in *out. */
static int enroll_other_matches(struct gal *g, const struct gal_collection_info *info,
                                const char *subject, const face_info *f, json_t **out)
{
    *out = NULL;
    const struct gal_search_request req = {
        .model_id = f->embedding_model ? f->embedding_model : info->model_id,
        .dim = (uint32_t)f->embedding_dim,
        .embeddings = f->embedding,
    };
    struct gal_hit hits[GAL_OTHER_MATCHES_MAX];
    size_t n = 0;
    float threshold;
    base_error_clear();
    int rc = gal_search_others(g, info->name, &req, subject, hits, GAL_OTHER_MATCHES_MAX, &n,
                               &threshold);
    if (rc) return rc;
    json_t *list = json_array();
    if (!list) return base_error_set(BASE_ERR_NOMEM, "cannot allocate also_matches");
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, json_pack("{s:s,s:o,s:I}", "subject", hits[i].subject_id,
                                              "similarity", num(hits[i].similarity), "face_id",
                                              (json_int_t)hits[i].face_id));
    *out = list;
    return 0;
}

/*
 * Ctrl-C (SIGINT) or SIGTERM during `enroll`: the image in hand is finished (its face stored or
 * not, never half), then the run stops with its summary and status 130, and the same command
 * run again goes on (already_enrolled). A second signal ends the process at once (the handler
 * is reset), which leaves the store as consistent: each face is its own transaction.
 */
static volatile sig_atomic_t enroll_stop;

static void enroll_on_signal(int sig)
{
    enroll_stop = sig;
}

int cli_enroll_main(int argc, char **argv)
{
    static const struct option long_opts[] = {
        {"collection", required_argument, NULL, 'c'},
        {"subject", required_argument, NULL, 's'},
        {"dir", required_argument, NULL, 'd'},
        {"data", required_argument, NULL, 'D'},
        {"store", required_argument, NULL, 'D'},
        {"models", required_argument, NULL, 'm'},
        {"min-quality", required_argument, NULL, 'q'},
        {"on-match", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *collection = NULL, *subject = NULL, *dir = NULL, *models_dir = NULL;
    const char *data_dir = data_dir_default();
    float min_quality = (float)FACE_MIN_QUALITY_DEFAULT;
    int refuse_match = 0; /* --on-match refuse */
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (c) {
        case 'c': collection = optarg; break;
        case 's': subject = optarg; break;
        case 'd': dir = optarg; break;
        case 'D': data_dir = optarg; break;
        case 'm': models_dir = optarg; break;
        case 'q':
            if (parse_float(optarg, &min_quality) != 0 || !(min_quality >= 0 && min_quality <= 1)) {
                fprintf(stderr, "vultus enroll: --min-quality %s: expected a number in [0, 1]\n",
                        optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'o':
            refuse_match = strcmp(optarg, "refuse") == 0;
            if (!refuse_match && strcmp(optarg, "store") != 0) {
                fprintf(stderr, "vultus enroll: --on-match %s: expected store or refuse\n", optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'h': enroll_usage(stdout); return CLI_EXIT_OK;
        default: enroll_usage(stderr); return CLI_EXIT_USAGE;
        }
    }
    if (empty_location("enroll", data_dir, models_dir) != 0) return CLI_EXIT_USAGE;
    if (!collection || (!subject == !dir) || (subject && optind >= argc) ||
        (dir && optind < argc)) {
        fprintf(stderr,
                "vultus enroll: give --collection and either --subject with images or --dir\n\n");
        enroll_usage(stderr);
        return CLI_EXIT_USAGE;
    }

    enrol_list items = {0};
    int rc = 0;
    if (subject) {
        for (int i = optind; i < argc && !rc; i++)
            rc = list_push(&items, subject, argv[i]);
    } else {
        char **subs = NULL;
        size_t ns = 0;
        rc = scan_dir(dir, 1, &subs, &ns);
        for (size_t i = 0; i < ns && !rc; i++) {
            char sdir[4096];
            snprintf(sdir, sizeof sdir, "%s/%s", dir, subs[i]);
            char **files = NULL;
            size_t nf = 0;
            rc = scan_dir(sdir, 0, &files, &nf);
            for (size_t k = 0; k < nf && !rc; k++) {
                char path[8192];
                snprintf(path, sizeof path, "%s/%s", sdir, files[k]);
                rc = list_push(&items, subs[i], path) ? BASE_ERR_NOMEM : 0;
            }
            free_names(files, nf);
        }
        free_names(subs, ns);
        /* Images directly in DIR have no sub-folder to name their subject after, and a file
         * name (IMG_0042.jpg) is not a person's name: they are not enrolled, with or without
         * sub-folders beside them, and stderr says which and why rather than nothing. */
        char **loose = NULL;
        size_t nl = 0;
        if (!rc) rc = scan_dir(dir, 0, &loose, &nl);
        if (!rc && nl) {
            fprintf(stderr,
                    "vultus enroll: %zu image%s directly in %s not enrolled (%s%s%s): --dir "
                    "enrols DIR/SUBJECT/IMAGE, one subject per sub-folder; move them into a "
                    "sub-folder or enrol them with --subject S IMAGE...\n",
                    nl, nl == 1 ? "" : "s", dir, loose[0], nl > 1 ? ", " : "",
                    nl > 2 ? "..." : nl > 1 ? loose[1] : "");
        }
        free_names(loose, nl);
        if (!rc && items.n == 0)
            rc = base_error_set(BASE_ERR_NOT_FOUND, "no images in sub-folders of %s", dir);
    }
    if (rc) {
        list_free(&items);
        return fail("enroll", rc < 0 ? rc : BASE_ERR_NOMEM);
    }

    /* Enrolling writes to the store, reads a subject's faces from it, and searches this one
     * collection for other subjects each face matches: its faces alone are loaded into
     * memory (only_collection), so the other collections of a large gallery cost nothing. */
    struct gal *g = NULL;
    const struct gal_options gal_opts = {.only_collection = collection};
    if (open_gallery_with("enroll", data_dir, 0, &gal_opts, &g) != 0) {
        list_free(&items);
        return CLI_EXIT_FAILURE;
    }
    struct gal_collection_info info;
    base_error_clear();
    if ((rc = gal_collection_get(g, collection, &info))) {
        gal_close(g);
        list_free(&items);
        return fail("enroll", rc);
    }
    face_models *models = NULL;
    face_context *ctx = NULL;
    face_options opts;
    if (load_pipeline("enroll", models_dir, &info, FACE_STAGE_EMBED | FACE_STAGE_QUALITY, &opts,
                      &models, &ctx) != 0) {
        gal_close(g);
        list_free(&items);
        return CLI_EXIT_FAILURE;
    }

    /* SA_RESTART: a read of a pipe or a model call is not cut short; SA_RESETHAND: the second
     * Ctrl-C ends the process. */
    enroll_stop = 0;
    struct sigaction sa = {.sa_handler = enroll_on_signal, .sa_flags = SA_RESTART | SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    for (int k = 0; k < 2; k++) {
        /* A signal the caller ignores (nohup, a background job) stays ignored. */
        int sig = k ? SIGTERM : SIGINT;
        struct sigaction old;
        if (sigaction(sig, NULL, &old) == 0 && old.sa_handler != SIG_IGN) sigaction(sig, &sa, NULL);
    }
    size_t done_items = 0;
    int tty = isatty(STDERR_FILENO);
    size_t enrolled = 0, several = 0, already = 0, no_face = 0, low_quality = 0, failed = 0;
    size_t matched = 0, also_matching = 0; /* refused by --on-match refuse; stored anyway */
    known_hashes known = {0};
    json_t *failures = json_array();
    uint64_t t0 = base_now_ns();
    for (size_t i = 0; i < items.n && !enroll_stop; i++, done_items++) {
        const enrol_item *it = &items.items[i];
        char *data = NULL;
        size_t len = 0;
        face_result res = {0};
        int have_res = 0;
        uint8_t *thumb = NULL;
        size_t thumb_len = 0;
        const char *status = NULL;
        char reason[512] = "";
        int64_t face_id = 0;
        float quality = 0;
        int chosen = 0;      /* the face enrolled: face_most_prominent, as the HTTP route */
        json_t *also = NULL; /* the other subjects the face matches, once searched */
        base_error_clear();
        rc = cli_read_file(it->path, MAX_IMAGE_BYTES, &data, &len);
        if (rc) {
            snprintf(reason, sizeof reason, "cannot read: %s", base_error_text(rc));
            status = "failed";
            goto done;
        }
        /* The hash first: an image this subject already has is skipped before any model
         * runs, so a re-run or a resumed run costs one read per image already done. */
        uint8_t digest[32];
        char hash[8 + 65];
        http_sha256_digest(data, len, digest);
        memcpy(hash, "sha256:", 7);
        http_hex(digest, 32, hash + 7);
        rc = known_load(&known, g, collection, it->subject);
        if (rc) {
            snprintf(reason, sizeof reason, "subject %s: %s", it->subject, base_error_text(rc));
            status = "failed";
            goto done;
        }
        if ((face_id = known_find(&known, hash))) {
            status = "already_enrolled";
            snprintf(reason, sizeof reason, "this image is already face %lld of %s",
                     (long long)face_id, it->subject);
            goto done;
        }
        rc = face_analyze_bytes(ctx, (const uint8_t *)data, len, &opts, &res);
        if (rc) {
            snprintf(reason, sizeof reason, "cannot analyse: %s", base_error_text(rc));
            status = "failed";
            goto done;
        }
        have_res = 1;
        if (res.n_faces == 0) {
            status = "no_face";
            snprintf(reason, sizeof reason, "no face found");
            goto done;
        }
        chosen = face_most_prominent(&res);
        const face_info *f = &res.faces[chosen];
        quality = f->has_quality ? f->attributes.quality : f->score;
        if (quality < min_quality) {
            status = "low_quality";
            snprintf(reason, sizeof reason, "quality %.3f below %.3f", quality, min_quality);
            goto done;
        }
        if (f->embedding_dim <= 0) {
            status = "failed";
            snprintf(reason, sizeof reason, "no embedding computed");
            goto done;
        }
        /* Before anything is stored, as the HTTP route does (api_gallery.c), so the face
         * never matches itself and a refusal leaves no subject behind. */
        rc = enroll_other_matches(g, &info, it->subject, f, &also);
        if (rc) {
            status = "failed";
            snprintf(reason, sizeof reason, "search: %s", base_error_text(rc));
            goto done;
        }
        if (refuse_match && json_array_size(also) > 0) {
            json_t *best = json_array_get(also, 0);
            status = "matches_other_subject";
            snprintf(reason, sizeof reason, "matches subject %s, similarity %.3f",
                     json_string_value(json_object_get(best, "subject")),
                     json_number_value(json_object_get(best, "similarity")));
            goto done;
        }
        if (f->aligned.data && img_encode_jpeg(&f->aligned, 85, &thumb, &thumb_len) != 0) {
            thumb = NULL;
            thumb_len = 0;
        }
        if (thumb_len > GAL_THUMBNAIL_MAX) {
            free(thumb);
            thumb = NULL;
            thumb_len = 0;
        }
        struct gal_face_input fi = {
            .subject_id = it->subject,
            .model_id = f->embedding_model ? f->embedding_model : info.model_id,
            .dim = (uint32_t)f->embedding_dim,
            .embedding = f->embedding,
            .image_hash = hash,
            .box = {f->x, f->y, f->w, f->h},
            .quality = quality,
            .thumbnail = thumb,
            .thumbnail_len = thumb_len,
        };
        base_error_clear();
        /* The subject, when new, and its face in one transaction: a face that cannot be
         * stored (a full disk) leaves no subject without a face behind. */
        rc = gal_face_enrol(g, collection, &fi, 1, NULL, &face_id, NULL);
        if (rc) {
            status = "failed";
            snprintf(reason, sizeof reason, "%s", base_error_text(rc));
            goto done;
        }
        status = "enrolled";
        /* Which face of a group photo became the subject is worth a look: say so. */
        if (res.n_faces > 1) {
            several++;
            snprintf(reason, sizeof reason, "the most prominent of %d faces", res.n_faces);
        }
        if (known_push(&known, hash, face_id) != 0) known.loaded = 0; /* re-read next time */
    done:;
        json_t *o =
            json_pack("{s:s,s:s,s:s}", "image", it->path, "subject", it->subject, "status", status);
        if (face_id) json_object_set_new(o, "face_id", json_integer(face_id));
        if (have_res && res.n_faces > 0) {
            json_object_set_new(
                o, "box",
                box_json(res.faces[chosen].x, res.faces[chosen].y, res.faces[chosen].w,
                         res.faces[chosen].h));
            json_object_set_new(o, "quality", num(quality));
            json_object_set_new(o, "faces_in_image", json_integer(res.n_faces));
        }
        if (also) json_object_set(o, "also_matches", also);
        if (*reason && strcmp(status, "enrolled") != 0)
            json_object_set_new(o, "reason", json_string(reason));
        cli_print_json_line(o, 8);
        if (strcmp(status, "enrolled") == 0) {
            enrolled++;
            if (json_array_size(also) > 0) {
                also_matching++;
                /* stderr says it where the line would not: one is a fraud signal to some */
                json_t *best = json_array_get(also, 0);
                snprintf(reason + strlen(reason), sizeof reason - strlen(reason),
                         "%salso matches subject %s, similarity %.3f", *reason ? "; " : "",
                         json_string_value(json_object_get(best, "subject")),
                         json_number_value(json_object_get(best, "similarity")));
            }
        } else if (strcmp(status, "already_enrolled") == 0) {
            already++; /* done by an earlier run: neither a skip to look at nor a failure */
        } else {
            if (strcmp(status, "no_face") == 0)
                no_face++;
            else if (strcmp(status, "low_quality") == 0)
                low_quality++;
            else if (strcmp(status, "matches_other_subject") == 0)
                matched++;
            else
                failed++;
            json_array_append_new(failures, json_pack("{s:s,s:s,s:s}", "image", it->path, "status",
                                                      status, "reason", reason));
        }
        if (tty) {
            progress(i + 1, items.n, t0, it->path);
        } else {
            fprintf(stderr, "vultus enroll: %zu/%zu %s %s: %s%s%s%s\n", i + 1, items.n, it->subject,
                    it->path, status, *reason ? " (" : "", reason, *reason ? ")" : "");
        }
        if (have_res) face_result_free(&res);
        json_decref(also);
        free(thumb);
        free(data);
    }
    double secs = (double)(base_now_ns() - t0) / 1e9;
    int stopped = enroll_stop;
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (int k = 0; k < 2; k++) {
        int sig = k ? SIGTERM : SIGINT;
        struct sigaction now;
        if (sigaction(sig, NULL, &now) == 0 && now.sa_handler == enroll_on_signal)
            sigaction(sig, &dfl, NULL);
    }
    if (stopped) {
        if (tty && done_items < items.n) fputc('\n', stderr); /* after the progress bar */
        fprintf(stderr,
                "vultus enroll: interrupted (%s) after %zu of %zu images; the same command run "
                "again enrols the rest\n",
                stopped == SIGINT ? "SIGINT" : "SIGTERM", done_items, items.n);
    }
    fprintf(stderr,
            "vultus enroll: %zu enrolled (%zu the most prominent face of a photo with several, %zu "
            "also matching another subject), %zu already enrolled, %zu skipped (no face %zu, "
            "low quality %zu, matches another subject %zu), %zu failed, in %.1f s\n",
            enrolled, several, also_matching, already, no_face + low_quality + matched, no_face,
            low_quality, matched, failed, secs);
    for (size_t i = 0; i < json_array_size(failures); i++) {
        json_t *f = json_array_get(failures, i);
        fprintf(stderr, "  %s: %s: %s\n", json_string_value(json_object_get(f, "image")),
                json_string_value(json_object_get(f, "status")),
                json_string_value(json_object_get(f, "reason")));
    }
    json_t *summary = json_pack(
        "{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:o}", "collection", collection, "enrolled",
        (json_int_t)enrolled, "enrolled_one_of_several", (json_int_t)several,
        "enrolled_also_matching", (json_int_t)also_matching, "already_enrolled",
        (json_int_t)already, "skipped_no_face", (json_int_t)no_face, "skipped_low_quality",
        (json_int_t)low_quality, "skipped_matches_other_subject", (json_int_t)matched, "failed",
        (json_int_t)failed, "seconds", num(secs), "not_enrolled", failures);
    if (stopped) {
        json_object_set_new(summary, "interrupted", json_true());
        json_object_set_new(summary, "not_started", json_integer((json_int_t)(items.n - done_items)));
    }
    json_t *wrap = json_pack("{s:o}", "summary", summary);
    cli_print_json_line(wrap, 8);
    face_context_destroy(ctx);
    face_models_destroy(models);
    gal_close(g);
    list_free(&items);
    free(known.hash);
    free(known.face_id);
    if (stopped) return 128 + stopped; /* as the shell reports a process the signal ended */
    return failed ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
}

/* ---- search --------------------------------------------------------------------------- */

static void search_usage(FILE *out)
{
    fprintf(out,
            "usage: vultus search --collection C [options] IMAGE...\n"
            "       vultus search --collection C --dir DIR [options]\n"
            "\n"
            "Searches the collection with every face of each image; prints one JSON line per\n"
            "image: per face the top-K subjects with similarity and decision (match when the\n"
            "similarity is at least the collection's threshold). An image without a face gives\n"
            "\"result\":\"no face\". --dir DIR: every image (.jpg, .jpeg, .png, .webp) under\n"
            "DIR, its sub-folders included, in name order.\n"
            "\n"
            "options:\n"
            "  --top K          subjects per face (default 5)\n"
            "  --threshold T    decide at T (cosine, in [-1, 1]) for this run instead of the\n"
            "                   collection's (`vultus gallery set-threshold` changes that)\n"
            "  --data DIR       data folder (default $VULTUS_DATA or data)\n"
            "  --store URL      a PostgreSQL store instead (default $VULTUS_STORE)\n"
            "  --models DIR     model folder (default models)\n");
}

int cli_search_main(int argc, char **argv)
{
    static const struct option long_opts[] = {
        {"collection", required_argument, NULL, 'c'},
        {"top", required_argument, NULL, 'k'},
        {"threshold", required_argument, NULL, 'T'},
        {"dir", required_argument, NULL, 'd'},
        {"data", required_argument, NULL, 'D'},
        {"store", required_argument, NULL, 'D'},
        {"models", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *collection = NULL, *models_dir = NULL, *data_dir = data_dir_default();
    const char *dir = NULL;
    long k = 5;
    float threshold = NAN; /* NAN: the collection's */
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'c': collection = optarg; break;
        case 'k':
            k = strtol(optarg, &end, 10);
            if (*end || k < 1 || k > GAL_K_MAX) {
                fprintf(stderr, "vultus search: --top %s: expected 1..%d\n", optarg, GAL_K_MAX);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'T':
            if (parse_float(optarg, &threshold) != 0 ||
                !(threshold >= -1.0f && threshold <= 1.0f)) {
                fprintf(stderr, "vultus search: --threshold %s: expected a number in [-1, 1]\n",
                        optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'd': dir = optarg; break;
        case 'D': data_dir = optarg; break;
        case 'm': models_dir = optarg; break;
        case 'h': search_usage(stdout); return CLI_EXIT_OK;
        default: search_usage(stderr); return CLI_EXIT_USAGE;
        }
    }
    if (empty_location("search", data_dir, models_dir) != 0) return CLI_EXIT_USAGE;
    if (dir && !*dir) {
        fprintf(stderr, "vultus search: --dir is empty\n");
        return CLI_EXIT_USAGE;
    }
    if (!collection || (!dir == (optind >= argc))) {
        fprintf(stderr, "vultus search: give --collection and either images or --dir\n\n");
        search_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    /* The images: the arguments, or every image under --dir (found before any model loads,
     * so a wrong folder costs nothing). */
    enrol_list images = {0};
    int rc = 0;
    for (int i = optind; i < argc && !rc; i++)
        rc = list_push(&images, "", argv[i]) ? BASE_ERR_NOMEM : 0;
    if (dir) {
        base_error_clear();
        rc = collect_images(dir, 0, &images);
        if (!rc && images.n == 0)
            rc = base_error_set(BASE_ERR_NOT_FOUND, "no images under %s", dir);
    }
    if (rc) {
        list_free(&images);
        return fail("search", rc);
    }
    struct gal *g = NULL;
    if (open_gallery("search", data_dir, 0, 0, &g) != 0) {
        list_free(&images);
        return CLI_EXIT_FAILURE;
    }
    struct gal_collection_info info;
    base_error_clear();
    rc = gal_collection_get(g, collection, &info);
    if (rc) {
        gal_close(g);
        list_free(&images);
        return fail("search", rc);
    }
    face_models *models = NULL;
    face_context *ctx = NULL;
    face_options opts;
    if (load_pipeline("search", models_dir, &info, FACE_STAGE_EMBED, &opts, &models, &ctx) != 0) {
        gal_close(g);
        list_free(&images);
        return CLI_EXIT_FAILURE;
    }
    int failures = 0;
    float *q = NULL;
    for (size_t i = 0; i < images.n; i++) {
        const char *path = images.items[i].path;
        char *data = NULL;
        size_t len = 0;
        face_result res = {0};
        json_t *o = json_pack("{s:s}", "image", path);
        base_error_clear();
        rc = cli_read_file(path, MAX_IMAGE_BYTES, &data, &len);
        int read = rc == 0; /* the error, if any, is the analysis's: said as enroll says it */
        if (!rc) rc = face_analyze_bytes(ctx, (const uint8_t *)data, len, &opts, &res);
        free(data);
        if (rc) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s: %s", read ? "cannot analyse" : "cannot read",
                     base_error_text(rc));
            json_object_set_new(o, "error", json_string(msg));
            cli_print_json_line(o, 8);
            fprintf(stderr, "vultus search: %s: %s\n", path, msg);
            failures++;
            continue;
        }
        int nq = 0;
        for (int f = 0; f < res.n_faces && nq < GAL_QUERIES_MAX; f++)
            if (res.faces[f].embedding_dim == (int)info.dim) nq++;
        if (nq == 0) {
            json_object_set_new(o, "result", json_string("no face"));
            json_object_set_new(o, "faces", json_array());
            cli_print_json_line(o, 8);
            face_result_free(&res);
            continue;
        }
        float *nqv = realloc(q, (size_t)nq * info.dim * sizeof *q);
        if (!nqv) {
            fprintf(stderr, "vultus search: %s: out of memory\n", path);
            json_decref(o);
            face_result_free(&res);
            failures++;
            break;
        }
        q = nqv;
        int faces_idx[GAL_QUERIES_MAX];
        int j = 0;
        for (int f = 0; f < res.n_faces && j < nq; f++) {
            if (res.faces[f].embedding_dim != (int)info.dim) continue;
            memcpy(q + (size_t)j * info.dim, res.faces[f].embedding, info.dim * sizeof *q);
            faces_idx[j++] = f;
        }
        struct gal_search_request req = {
            .model_id = res.faces[faces_idx[0]].embedding_model
                            ? res.faces[faces_idx[0]].embedding_model
                            : info.model_id,
            .dim = info.dim,
            .embeddings = q,
            .query_count = (size_t)nq,
            .k = (size_t)k,
            .has_threshold = !isnan(threshold), /* --threshold decides instead */
            .threshold = threshold,
        };
        struct gal_results *results = NULL;
        base_error_clear();
        rc = gal_search(g, collection, &req, &results);
        if (rc) {
            char msg[512];
            snprintf(msg, sizeof msg, "search: %s", base_error_text(rc));
            json_object_set_new(o, "error", json_string(msg));
            cli_print_json_line(o, 8);
            fprintf(stderr, "vultus search: %s: %s\n", path, msg);
            face_result_free(&res);
            failures++;
            continue;
        }
        int any_match = 0;
        json_t *faces = json_array();
        for (int qi = 0; qi < nq; qi++) {
            const face_info *f = &res.faces[faces_idx[qi]];
            const struct gal_query_result *qr = &results->queries[qi];
            json_t *fo = json_object();
            json_object_set_new(fo, "box", box_json(f->x, f->y, f->w, f->h));
            json_object_set_new(fo, "score", num(f->score));
            json_t *subs = json_array();
            for (size_t s = 0; s < qr->subject_count; s++) {
                const struct gal_hit *h = &qr->subjects[s];
                int match = h->decision == GAL_MATCH;
                if (match) any_match = 1;
                json_array_append_new(subs,
                                      json_pack("{s:s,s:o,s:s,s:I}", "subject", h->subject_id,
                                                "similarity", num(h->similarity), "decision",
                                                match ? "match" : "no_match", "face_id",
                                                (json_int_t)h->face_id));
            }
            json_object_set_new(fo, "subjects", subs);
            json_array_append_new(faces, fo);
        }
        json_object_set_new(o, "result", json_string(any_match ? "match" : "no match"));
        json_object_set_new(o, "threshold", num(results->threshold));
        json_object_set_new(o, "faces", faces);
        cli_print_json_line(o, 8);
        gal_results_destroy(results);
        face_result_free(&res);
    }
    free(q);
    face_context_destroy(ctx);
    face_models_destroy(models);
    gal_close(g);
    list_free(&images);
    return failures ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
}
