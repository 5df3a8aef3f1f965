/*
 * vultus — the program: `vultus COMMAND [ARGS...]`. This file only sets up logging from the
 * environment and hands the arguments to the command's entry point in src/cli/.
 */
#include "base/base.h"
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct command {
    const char *name;
    int (*main)(int argc, char **argv);
    const char *summary;
    /* the subcommands, printed after summary, from the command's own dispatch table */
    const char *(*subcommands)(void);
} command;

static const command commands[] = {
    {"nn", cli_nn_main, "inspect a model: vultus nn info MODEL.json", NULL},
    {"bench", cli_bench_main,
     "benchmarks: vultus bench nn|peak|load|pipeline (see vultus bench --help)", NULL},
    {"analyze", cli_analyze_main,
     "faces in images as JSON: vultus analyze [--draw OUT] IMAGE...", NULL},
    {"eval", cli_eval_main, "accuracy on data sets: vultus eval pairs|lfw|wider|age ...", NULL},
    {"gallery", cli_gallery_main, "collections: vultus gallery ", cli_gallery_commands},
    {"enroll", cli_enroll_main,
     "enrol faces: vultus enroll --collection C --subject S IMAGE...", NULL},
    {"search", cli_search_main,
     "1:N search: vultus search --collection C [--top K] [--threshold T] IMAGE...|--dir DIR",
     NULL},
    {"serve", cli_serve_main, "the HTTP API: vultus serve [--listen :7860] [--data DIR] ...", NULL},
    {"keys", cli_keys_main, "API keys: vultus keys create --scope read|checkin|write|admin", NULL},
    {"backup", cli_backup_main,
     "a consistent copy of the store while serving: vultus backup [--data DIR] OUT", NULL},
    {"restore", cli_restore_main,
     "put a backup in place (server stopped): vultus restore [--data DIR] BACKUP", NULL},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *out)
{
    fprintf(out, "usage: vultus COMMAND [ARGS...]\n"
                 "\n"
                 "commands:\n");
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-8s %s%s\n", commands[i].name, commands[i].summary,
                commands[i].subcommands ? commands[i].subcommands() : "");
    fprintf(out, "\n"
                 "`vultus COMMAND --help` describes a command.\n"
                 "Environment: VULTUS_LOG_LEVEL=debug|info|warn|error|off (default info).\n");
}

/* The log level is configuration: set once here, before any thread starts. */
static int set_log_level(const char *text)
{
    static const char *names[] = {"debug", "info", "warn", "error", "off"};
    for (int i = 0; i < 5; i++) {
        if (strcasecmp(text, names[i]) == 0) {
            base_log_level = BASE_LOG_DEBUG + i;
            return 0;
        }
    }
    return -1;
}

int main(int argc, char **argv)
{
    const char *level = getenv("VULTUS_LOG_LEVEL");
    if (level && *level && set_log_level(level) != 0) {
        fprintf(stderr, "vultus: VULTUS_LOG_LEVEL=%s: expected debug, info, warn, error or off\n",
                level);
        return CLI_EXIT_USAGE;
    }
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return cli_finish(CLI_EXIT_OK); /* 1 when stdout could not take it */
    }
    for (int i = 0; i < N_COMMANDS; i++) {
        /* every command's status says whether its results reached stdout (cli_finish) */
        if (strcmp(name, commands[i].name) == 0)
            return cli_finish(commands[i].main(argc - 1, argv + 1));
    }
    fprintf(stderr, "vultus: unknown command '%s'\n\n", name);
    usage(stderr);
    return CLI_EXIT_USAGE;
}
