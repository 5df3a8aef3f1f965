/*
 * `vultus serve [--OPTION VALUE]...`: the HTTP service (src/http). Options come from the
 * table in src/http/config.c; each is also a VULTUS_* environment variable. Flags win over the
 * environment, which wins over the defaults.
 */
#include "base/base.h"
#include "cli/cli.h"
#include "http/http.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: vultus serve [--OPTION VALUE]...\n"
                 "\n"
                 "Runs the HTTP API (see README, \"The HTTP API\"; the OpenAPI document is served\n"
                 "at /openapi.json). Every option is also an environment variable; flags win.\n"
                 "\n");
    http_config_print_table(out);
    fprintf(out,
            "\n"
            "Start-up: the port opens first (/healthz 200); the models and the gallery (every\n"
            "face read from the store) load in parallel. Until both are in, /readyz says 503\n"
            "and what is still loading, and /v1 requests get 503 not_ready (Retry-After 1).\n"
            "A store that cannot be opened ends the process (exit 1).\n"
            "\n"
            "Signals: SIGTERM or SIGINT drains (readiness 503, stop accepting after\n"
            "--grace-ms, finish requests in flight, exit 0); a second one, or the end of\n"
            "--drain-timeout-ms, cuts off what is left (exit 0 too, and a warning).\n"
            "\n"
            "Logs: JSON lines on stderr, one per request and per event. VULTUS_LOG_LEVEL=\n"
            "debug|info|warn|error|off (default info; warn and above leave out the request\n"
            "lines) sets the level.\n"
            "\n"
            "Store: VULTUS_STORE_TIMEOUT_MS is the longest wait for a PostgreSQL\n"
            "statement's answer (default 10000; 0: no limit): past it the request gets 503\n"
            "store_unavailable and the connection is opened again (README, \"PostgreSQL\").\n");
}

int cli_serve_main(int argc, char **argv)
{
    http_config config;
    http_config_defaults(&config);
    if (http_config_from_env(&config) != 0) {
        fprintf(stderr, "vultus serve: %s\n", base_error_message());
        return CLI_EXIT_USAGE;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        /* "--" and "--=X" are not options either (they read as '-- needs a value' and
         * 'unknown option --'). */
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0' || arg[2] == '=') {
            fprintf(stderr, "vultus serve: unexpected argument '%s'\n\n", arg);
            usage(stderr);
            return CLI_EXIT_USAGE;
        }
        char name[64];
        const char *value;
        const char *eq = strchr(arg, '=');
        if (eq) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - arg - 2), arg + 2);
            value = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", arg + 2);
            if (i + 1 >= argc) {
                fprintf(stderr, "vultus serve: %s needs a value\n", arg);
                return CLI_EXIT_USAGE;
            }
            value = argv[++i];
        }
        if (http_config_set(&config, name, value) != 0) {
            fprintf(stderr, "vultus serve: %s\n\n", base_error_message());
            usage(stderr);
            return CLI_EXIT_USAGE;
        }
    }

    /* From here on every line the service writes is JSON (its own and the modules'), for
     * log collectors; a usage error above is for the person typing. */
    base_log_json = 1;
    http_server *server = NULL;
    if (http_server_create(&config, &server) != 0) {
        LOG_ERROR("vultus serve: %s", base_error_message());
        return CLI_EXIT_FAILURE;
    }
    int rc = http_server_run(server); /* logs its errors itself, each once */
    http_server_destroy(server);
    if (rc == BASE_ERR_LIMIT) return CLI_EXIT_OK; /* a cut-off drain still ends the process */
    return rc ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
}
