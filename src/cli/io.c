/*
 * The commands' input and output. Reading an input file named on the command line:
 * base_file_read takes regular files only (it sizes the buffer from fstat), so `vultus analyze
 * /dev/stdin` fed by a pipe, or `vultus analyze <(curl -s URL)`, was refused with "not a
 * regular file", and a FIFO without a writer made fopen wait forever. Here a pipe, FIFO or
 * character device is read to its end, up to the same limit. Writing: a command's exit status
 * says whether its results reached stdout. Reading arguments: a negative number among the
 * operands ("gallery set-threshold C -0.5") is an operand, not a cluster of short options.
 */
#include "base/base.h"
#include "cli/cli.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cli_read_file(const char *path, size_t max_bytes, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return base_error_set(BASE_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return base_error_set(BASE_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (S_ISREG(st.st_mode)) {
        close(fd);
        return base_file_read(path, max_bytes, data, len);
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return base_error_set(BASE_ERR_IO, "%s: is a directory", path);
    }
    /* A pipe, FIFO or device: blocking reads from here on (a FIFO without a writer reads as
     * empty), to the end or one byte past the limit. */
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    int rc = buf ? 0 : base_error_set(BASE_ERR_NOMEM, "%s: cannot allocate a buffer", path);
    while (!rc) {
        if (n == cap) {
            size_t grown = cap * 2;
            char *p = realloc(buf, grown + 1);
            if (!p) {
                rc = base_error_set(BASE_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, grown);
                break;
            }
            buf = p;
            cap = grown;
        }
        ssize_t k = read(fd, buf + n, cap - n);
        if (k == 0) break;
        if (k < 0) {
            if (errno == EINTR) continue;
            rc = base_error_set(BASE_ERR_IO, "%s: read error after %zu bytes: %s", path, n,
                                strerror(errno));
            break;
        }
        n += (size_t)k;
        if (n > max_bytes)
            rc = base_error_set(BASE_ERR_LIMIT, "%s: more than the limit of %zu bytes", path,
                                max_bytes);
    }
    close(fd);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}

/* printf to a full disk or a closed stdout fails quietly, and nothing checked it: `vultus
 * analyze ... > out.jsonl` on a full disk exited 0 with the results lost. */
int cli_finish(int status)
{
    int err = fflush(stdout) != 0 ? errno : 0;
    if (!err && !ferror(stdout)) return status;
    fprintf(stderr, "vultus: cannot write the results to stdout: %s\n",
            err ? strerror(err) : "write error");
    return status == CLI_EXIT_OK ? CLI_EXIT_FAILURE : status;
}

/* ---- negative numbers among the operands ------------------------------------------------- */

/* "-0.5", "-1", "-1e-3": a '-', then a digit or '.', and the whole text a number. */
static int is_negative_number(const char *arg)
{
    if (arg[0] != '-' || !(isdigit((unsigned char)arg[1]) || arg[1] == '.')) return 0;
    char *end = NULL;
    strtod(arg, &end);
    return end != arg && !*end;
}

/*
 * Whether getopt_long reads the argument after `arg` as arg's value: a long option that
 * requires one given without '=' (by its name or, as getopt_long allows, by a prefix every
 * match of which requires one), or a cluster of short options ending in one that does.
 */
static int takes_next_argument(const char *arg, const char *shortopts,
                               const struct option *longopts)
{
    if (arg[0] != '-' || !arg[1]) return 0;
    if (arg[1] == '-') {
        const char *name = arg + 2;
        if (!*name || strchr(name, '=')) return 0;
        size_t len = strlen(name);
        int matches = 0, all_require = 1;
        for (const struct option *o = longopts; o && o->name; o++) {
            if (strncmp(o->name, name, len) != 0) continue;
            if (strlen(o->name) == len) return o->has_arg == required_argument;
            matches++;
            all_require &= o->has_arg == required_argument;
        }
        return matches > 0 && all_require;
    }
    for (const char *c = arg + 1; *c; c++) {
        const char *spec = strchr(shortopts, *c);
        if (!spec || *c == ':' || spec[1] != ':') continue;
        /* "x:" takes the rest of the cluster, or the next argument when nothing is left;
         * "x::" takes only the rest. */
        return spec[2] != ':' && !c[1];
    }
    return 0;
}

void cli_operands_protect(int argc, char **argv, const char *shortopts,
                          const struct option *longopts, struct cli_operands *saved)
{
    saved->n = 0;
    for (int i = 1; i < argc && saved->n < CLI_OPERANDS_MAX; i++) {
        if (strcmp(argv[i], "--") == 0) break; /* operands from here on already */
        if (takes_next_argument(argv[i], shortopts, longopts)) {
            i++; /* an option's value, "-0.5" included, is getopt's to hand over whole */
            continue;
        }
        /* a short option named by a digit would make "-1" ambiguous: getopt's reading wins */
        if (!is_negative_number(argv[i]) || strchr(shortopts, argv[i][1])) continue;
        saved->arg[saved->n++] = argv[i];
        argv[i]++; /* "0.5": not an option, and getopt_long permutes it with the operands */
    }
}

void cli_operands_restore(int argc, char **argv, const struct cli_operands *saved)
{
    for (int i = 0; i < argc; i++)
        for (int k = 0; k < saved->n; k++)
            if (argv[i] == saved->arg[k] + 1) argv[i] = saved->arg[k];
}
