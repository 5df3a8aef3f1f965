/*
 * `vultus nn info MODEL.json...`: loads TF.js graph models and describes them: inputs,
 * outputs, op counts after optimisation, parameters, multiply-adds, how many nodes run on
 * XNNPACK, and how long loading took. --json prints one JSON object per model per line.
 */
#include "base/base.h"
#include "cli/cli.h"
#include "nn/nn.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void nn_usage(FILE *out)
{
    fprintf(out, "usage: vultus nn info [--json] MODEL.json...\n"
                 "\n"
                 "Loads each TF.js graph model (model.json with its weight shards beside it) and\n"
                 "prints its inputs, outputs, op counts, parameters, multiply-adds per image,\n"
                 "node counts (imported, after optimisation, on XNNPACK) and load time.\n"
                 "  --json   one JSON object per model, one per line\n");
}

/* "[-1,224,224,3]" */
static void format_shape(const nn_io_info *io, char *buf, size_t cap)
{
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int d = 0; d < io->rank && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", d ? "," : "", (long long)io->dim[d]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

static json_t *io_json(const nn_io_info *io)
{
    json_t *shape = json_array();
    for (int d = 0; d < io->rank; d++)
        json_array_append_new(shape, json_integer(io->dim[d]));
    return json_pack("{s:s, s:o}", "name", io->name ? io->name : "", "shape", shape);
}

int cli_print_json_line(json_t *root, int precision)
{
    char *text =
        root ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(precision))
             : NULL;
    if (text) printf("%s\n", text);
    fflush(stdout);
    free(text);
    json_decref(root);
    return text ? 0 : -1;
}

void cli_model_name(const char *path, char *buf, size_t cap)
{
    const char *slash = strrchr(path, '/');
    snprintf(buf, cap, "%s", slash ? slash + 1 : path);
    size_t len = strlen(buf);
    if (len > 5 && strcmp(buf + len - 5, ".json") == 0) buf[len - 5] = '\0';
}

static int print_json(const char *path, const nn_model *model, double load_ms)
{
    nn_model_stats st;
    nn_model_get_stats(model, &st);
    char name[256];
    cli_model_name(path, name, sizeof name);

    json_t *inputs = json_array(), *outputs = json_array(), *ops = json_object();
    nn_io_info io;
    for (int i = 0; i < nn_model_input_count(model); i++)
        if (nn_model_input_info(model, i, &io) == 0) json_array_append_new(inputs, io_json(&io));
    for (int i = 0; i < nn_model_output_count(model); i++)
        if (nn_model_output_info(model, i, &io) == 0) json_array_append_new(outputs, io_json(&io));
    for (int k = 0; k < st.n_op_kinds && k < 32; k++)
        if (st.op_counts[k] > 0)
            json_object_set_new(ops, nn_model_op_name(k), json_integer(st.op_counts[k]));

    json_t *root = json_pack(
        "{s:s, s:s, s:o, s:o, s:o, s:I, s:I, s:f, s:i, s:i, s:i, s:f}", "model", name, "path", path,
        "inputs", inputs, "outputs", outputs, "ops", ops, "params", (json_int_t)st.params, "macs",
        (json_int_t)st.macs, "gmacs", (double)st.macs / 1e9, "nodes_imported", st.n_nodes_imported,
        "nodes", st.n_nodes, "nodes_xnnpack", st.n_xnnpack_nodes, "load_ms", load_ms);
    if (!root) {
        fprintf(stderr, "vultus nn info: %s: cannot build the JSON summary\n", path);
        return CLI_EXIT_FAILURE;
    }
    return cli_print_json_line(root, 6) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}

static int print_text(const char *path, const nn_model *model, double load_ms)
{
    nn_model_stats st;
    nn_model_get_stats(model, &st);
    char shape[128];
    nn_io_info io;

    printf("model       %s\n", path);
    for (int i = 0; i < nn_model_input_count(model); i++) {
        if (nn_model_input_info(model, i, &io) != 0) continue;
        format_shape(&io, shape, sizeof shape);
        printf("%-11s %s %s\n", i == 0 ? "inputs" : "", io.name ? io.name : "?", shape);
    }
    for (int i = 0; i < nn_model_output_count(model); i++) {
        if (nn_model_output_info(model, i, &io) != 0) continue;
        format_shape(&io, shape, sizeof shape);
        printf("%-11s %s %s\n", i == 0 ? "outputs" : "", io.name ? io.name : "?", shape);
    }
    printf("ops        ");
    for (int k = 0, first = 1; k < st.n_op_kinds && k < 32; k++) {
        if (st.op_counts[k] <= 0) continue;
        printf("%s%s %d", first ? " " : ", ", nn_model_op_name(k), st.op_counts[k]);
        first = 0;
    }
    printf("\n");
    printf("params      %lld (%.2f MiB as f32)\n", (long long)st.params,
           (double)st.params * 4.0 / (1024.0 * 1024.0));
    printf("macs        %lld per image (%.4f GMACs)\n", (long long)st.macs, (double)st.macs / 1e9);
    printf("nodes       %d imported, %d after optimisation, %d on XNNPACK\n", st.n_nodes_imported,
           st.n_nodes, st.n_xnnpack_nodes);
    printf("load        %.1f ms\n", load_ms);
    return CLI_EXIT_OK;
}

static int nn_info(int argc, char **argv)
{
    static const struct option options[] = {
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int json = 0, c;
    optind = 0; /* GNU: restart getopt for this argv */
    while ((c = getopt_long(argc, argv, "jh", options, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'h': nn_usage(stdout); return CLI_EXIT_OK;
        default: nn_usage(stderr); return CLI_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "vultus nn info: no model given\n");
        nn_usage(stderr);
        return CLI_EXIT_USAGE;
    }

    int status = CLI_EXIT_OK;
    for (int i = optind; i < argc; i++) {
        const char *path = argv[i];
        nn_model *model = NULL;
        base_error_clear();
        uint64_t t0 = base_now_ns();
        int rc = nn_model_load_tfjs(path, NULL, &model);
        double load_ms = (double)(base_now_ns() - t0) / 1e6;
        if (rc != 0) {
            fprintf(stderr, "vultus nn info: %s: %s\n", path, base_error_text(rc));
            status = CLI_EXIT_FAILURE;
            continue;
        }
        if (!json && i > optind) printf("\n");
        int r = json ? print_json(path, model, load_ms) : print_text(path, model, load_ms);
        if (r != CLI_EXIT_OK) status = r;
        nn_model_destroy(model);
    }
    fflush(stdout);
    return status;
}

int cli_nn_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        nn_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "info") == 0) return nn_info(argc - 1, argv + 1);
    fprintf(stderr, "vultus nn: unknown subcommand '%s'\n", argv[1]);
    nn_usage(stderr);
    return CLI_EXIT_USAGE;
}
