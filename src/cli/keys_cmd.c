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

/*
 * `create --collection C`: a key for a collection that does not exist is most often a typo,
 * and gives a key that answers 404 (or 403) to every call, found out only by its user. So C
 * must exist in the store unless --allow-missing-collection says it will be created later.
 * (A collection deleted after its key was made is the server's business: the key stays.)
 * A malformed name is left to http_keys_create, which says why as a usage error. The store
 * is opened store-only: checking one name never loads the gallery's faces. Returns
 * CLI_EXIT_OK when C exists, else the exit status after saying why on stderr.
 */
static int check_collection_exists(const char *data, const char *collection)
{
    if (gal_check_collection_name(collection) != 0) return CLI_EXIT_OK;
    int url = gal_location_is_url(data);
    char path[4096], where[4096], how[4200];
    snprintf(path, sizeof path, url ? "%s" : "%s/vultus.db", data);
    if (url) {
        gal_location_redact(data, where, sizeof where); /* never the password */
        snprintf(how, sizeof how, "`vultus gallery list --store URL`");
    } else {
        snprintf(where, sizeof where, "%s", path);
        snprintf(how, sizeof how, "`vultus gallery list --data %s`", data);
    }
    struct stat st;
    if (!url && stat(path, &st) != 0) {
        /* No store, no collection; and no store created for a refused key. */
        fprintf(stderr,
                "vultus keys create: collection \"%s\" does not exist: no store at %s. Create "
                "the collection first, or pass --allow-missing-collection if it will be "
                "created later\n",
                collection, where);
        return CLI_EXIT_FAILURE;
    }
    struct gal *g = NULL;
    struct gal_collection_info info;
    int rc = gal_open(path, &(struct gal_options){.store_only = 1}, &g);
    if (!rc) rc = gal_collection_settings(g, collection, &info);
    if (rc != BASE_ERR_NOT_FOUND) {
        if (rc) fprintf(stderr, "vultus keys create: %s\n", base_error_message());
        gal_close(g);
        return rc == 0 ? CLI_EXIT_OK : rc == BASE_ERR_INVALID ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
    }
    /* Name the ones there are (ten at most), so that the typo shows at once. */
    struct gal_collection_info *list = NULL;
    size_t n = 0;
    char names[10 * (GAL_NAME_MAX + 2) + 64] = "";
    if (gal_collection_list(g, &list, &n) == 0) {
        size_t used =
            (size_t)snprintf(names, sizeof names, "%s", n ? "there are " : "there are none yet");
        for (size_t i = 0; i < n && i <= 10; i++) /* all fit */
            used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
                                     i < 10 ? list[i].name : "...");
        used += (size_t)snprintf(names + used, sizeof names - used, "; ");
    }
    free(list);
    gal_close(g);
    fprintf(stderr,
            "vultus keys create: collection \"%s\" does not exist in %s (%s%s lists them). "
            "Create it first, or pass --allow-missing-collection if it will be created later\n",
            collection, where, names, how);
    return CLI_EXIT_FAILURE;
}

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: vultus keys create --scope read|checkin|write|admin [--collection C]\n"
        "                          [--allow-missing-collection] [--name LABEL]\n"
        "                          [--data DIR | --store URL]\n"
        "       vultus keys list [--data DIR | --store URL]\n"
        "       vultus keys revoke ID|KEY [--data DIR | --store URL]\n"
        "\n"
        "API keys for `vultus serve`, kept hashed in DATA/vultus.db (default DATA: the\n"
        "VULTUS_DATA environment variable, else \"data\"). `create` prints the new key once on\n"
        "stdout. Scopes: read (GET, detect, analyze, embed, verify, search), checkin (also\n"
        "recording arrivals: POST .../checkins; for a check-in door's device), write (also\n"
        "subjects, faces, enrolment, starting a new event), admin (also collections).\n"
        "--collection limits a key to one collection, which must exist (`vultus gallery\n"
        "list`) unless --allow-missing-collection says it will be created later. A door\n"
        "device: --scope checkin --collection EVENT. While any key exists,\n"
        "every /v1 request needs `Authorization: Bearer KEY`; a running server notices new\n"
        "keys within a second.\n"
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
    int allow_missing = 0;
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
        if (strcmp(a, "--allow-missing-collection") == 0) {
            allow_missing = 1;
            continue;
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

    if (allow_missing && strcmp(verb, "create") != 0) {
        fprintf(stderr, "vultus keys %s: --allow-missing-collection is for create only\n", verb);
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
            fprintf(stderr, "vultus keys create: --scope read|checkin|write|admin is required\n");
            return CLI_EXIT_USAGE;
        }
        if (http_scope_parse(scope_text, &scope) != 0) {
            fprintf(stderr, "vultus keys create: %s\n", base_error_message());
            return CLI_EXIT_USAGE;
        }
        if (allow_missing && !collection) {
            fprintf(stderr, "vultus keys create: --allow-missing-collection needs --collection\n");
            return CLI_EXIT_USAGE;
        }
        int exists =
            collection && !allow_missing ? check_collection_exists(data, collection) : CLI_EXIT_OK;
        if (exists != CLI_EXIT_OK) return exists;
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
        printf("%-14s %-7s %-20s %-20s %s\n", "id", "scope", "collection", "created (UTC)", "name");
        for (size_t i = 0; i < n; i++) {
            time_t t = (time_t)(keys[i].created_ms / 1000);
            struct tm tm;
            char when[32];
            gmtime_r(&t, &tm);
            strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
            printf("%-14s %-7s %-20s %-20s %s\n", keys[i].id, http_scope_name(keys[i].scope),
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
