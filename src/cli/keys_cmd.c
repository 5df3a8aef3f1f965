/*
 * `vultus keys create|list|revoke`: API keys of the service, stored hashed in DATA/vultus.db
 * (see src/http/keys.c). A key is printed once, at creation; only its SHA-256 is kept.
 */
#include "base/base.h"
#include "cli/cli.h"
#include "gallery/gallery.h"
#include "http/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Only `create` makes the store: for list and revoke, opening a folder without one would
 * create an empty DATA/vultus.db, and a mistyped --data would list no keys instead of saying
 * so. Returns 0 when the store is there (or is a PostgreSQL URL). */
static int store_exists(const char *verb, const char *data)
{
    if (gal_location_is_url(data)) return 0;
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/vultus.db", data);
    if (stat(path, &st) == 0) return 0;
    fprintf(stderr, "vultus keys %s: no store at %s (create a key first, or pass --data)\n", verb,
            path);
    return -1;
}

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: vultus keys create --scope read|write|admin [--collection C] [--name LABEL]\n"
        "                          [--data DIR | --store URL]\n"
        "       vultus keys list [--data DIR | --store URL]\n"
        "       vultus keys revoke ID|KEY [--data DIR | --store URL]\n"
        "\n"
        "API keys for `vultus serve`, kept hashed in DATA/vultus.db (default DATA: the\n"
        "VULTUS_DATA environment variable, else \"data\"). `create` prints the new key once on\n"
        "stdout. Scopes: read (GET, detect, analyze, embed, verify, search), write (also\n"
        "subjects, faces, enrolment), admin (also collections). --collection limits a key to\n"
        "one collection. While any key exists, every /v1 request needs\n"
        "`Authorization: Bearer KEY`; a running server notices new keys within a second.\n"
        "--store URL (default: the VULTUS_STORE environment variable): the keys of replicas\n"
        "sharing a PostgreSQL store (postgres://USER:PASSWORD@HOST:5432/DB), as for\n"
        "`vultus serve --store`.\n");
}

int cli_keys_main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *data = getenv("VULTUS_DATA");
    if (!data || !*data) data = "data";
    const char *store = getenv("VULTUS_STORE");
    const char *verb = NULL, *scope_text = NULL, *collection = NULL, *name = NULL, *id = NULL;
    /* The verb is the first argument that is not an option ("keys --data D list" too), so
     * `keys create --help` finds --help wherever it is. */
    static const char *const flags[] = {"--scope", "--collection", "--name", "--data", "--store"};
    const char **slots[] = {&scope_text, &collection, &name, &data, &store};
    int given[5] = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        int f = 0;
        while (f < 5 && strcmp(a, flags[f]) != 0)
            f++;
        if (f < 5) {
            if (i + 1 >= argc) {
                fprintf(stderr, "vultus keys: %s needs a value\n", a);
                return CLI_EXIT_USAGE;
            }
            /* Not the last one wins: "--scope read --scope admin" would make an admin key
             * out of a command that also says read. */
            if (given[f]++) {
                fprintf(stderr, "vultus keys: %s given twice\n", a);
                return CLI_EXIT_USAGE;
            }
            *slots[f] = argv[++i];
            /* --data "$DIR" with DIR unset; --collection "" would make an unlimited key */
            if (f != 2 && !**slots[f]) {
                fprintf(stderr, "vultus keys: %s: empty value\n", a);
                return CLI_EXIT_USAGE;
            }
        } else if (!verb && a[0] != '-') {
            verb = a;
        } else if (verb && strcmp(verb, "revoke") == 0 && !id && a[0] != '-') {
            id = a;
        } else {
            fprintf(stderr, "vultus keys: unexpected argument '%s'\n\n", a);
            usage(stderr);
            return CLI_EXIT_USAGE;
        }
    }
    if (!verb) {
        fprintf(stderr, "vultus keys: which command? create, list or revoke\n\n");
        usage(stderr);
        return CLI_EXIT_USAGE;
    }

    /* A PostgreSQL URL takes the place of the data folder (http_store_path). */
    if (store && *store) {
        if (!gal_location_is_url(store)) {
            fprintf(stderr, "vultus keys: --store: expected a postgres:// or postgresql:// URL\n");
            return CLI_EXIT_USAGE;
        }
        data = store;
    }

    if (strcmp(verb, "create") == 0) {
        enum http_scope scope;
        if (!scope_text) {
            fprintf(stderr, "vultus keys create: --scope read|write|admin is required\n");
            return CLI_EXIT_USAGE;
        }
        if (http_scope_parse(scope_text, &scope) != 0) {
            fprintf(stderr, "vultus keys create: %s\n", base_error_message());
            return CLI_EXIT_USAGE;
        }
        char key[HTTP_KEY_MAX];
        http_key_info info;
        int rc = http_keys_create(data, scope, collection, name, key, &info);
        if (rc != 0) {
            fprintf(stderr, "vultus keys create: %s\n", base_error_message());
            return rc == BASE_ERR_INVALID ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
        }
        printf("%s\n", key);
        char where[512];
        if (gal_location_is_url(data))
            gal_location_redact(data, where, sizeof where); /* never the password */
        else
            snprintf(where, sizeof where, "%s/vultus.db", data);
        fprintf(stderr,
                "vultus keys: created key %s (scope %s%s%s) in %s; it is shown only this once\n",
                info.id, http_scope_name(info.scope), info.collection[0] ? ", collection " : "",
                info.collection, where);
        memset(key, 0, sizeof key);
        return CLI_EXIT_OK;
    }
    if (strcmp(verb, "list") == 0) {
        http_key_info *keys = NULL;
        size_t n = 0;
        if (store_exists(verb, data) != 0) return CLI_EXIT_FAILURE;
        if (http_keys_list(data, &keys, &n) != 0) {
            fprintf(stderr, "vultus keys list: %s\n", base_error_message());
            return CLI_EXIT_FAILURE;
        }
        printf("%-14s %-6s %-20s %-20s %s\n", "id", "scope", "collection", "created (UTC)", "name");
        for (size_t i = 0; i < n; i++) {
            time_t t = (time_t)(keys[i].created_ms / 1000);
            struct tm tm;
            char when[32];
            gmtime_r(&t, &tm);
            strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
            printf("%-14s %-6s %-20s %-20s %s\n", keys[i].id, http_scope_name(keys[i].scope),
                   keys[i].collection[0] ? keys[i].collection : "*", when, keys[i].name);
        }
        free(keys);
        return CLI_EXIT_OK;
    }
    if (strcmp(verb, "revoke") == 0) {
        if (!id) {
            fprintf(stderr, "vultus keys revoke: which key? (an id from `vultus keys list`)\n");
            return CLI_EXIT_USAGE;
        }
        /* the id, or the key text (never echoed: it is a secret) */
        char key_id[HTTP_KEY_ID_LEN + 1];
        if (http_key_id_parse(id, key_id) != 0) {
            fprintf(stderr, "vultus keys revoke: %s\n", base_error_message());
            return CLI_EXIT_USAGE;
        }
        id = key_id;
        if (store_exists(verb, data) != 0) return CLI_EXIT_FAILURE;
        if (http_keys_revoke(data, id) != 0) {
            fprintf(stderr, "vultus keys revoke: %s\n", base_error_message());
            return CLI_EXIT_FAILURE;
        }
        fprintf(stderr, "vultus keys: revoked %s\n", id);
        return CLI_EXIT_OK;
    }
    fprintf(stderr, "vultus keys: unknown command '%s'\n\n", verb);
    usage(stderr);
    return CLI_EXIT_USAGE;
}
