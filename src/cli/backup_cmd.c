/*
 * `vultus backup` and `vultus restore`: a consistent copy of the SQLite store (every enrolled
 * face, the API keys and the check-in record: DATA/vultus.db), taken while `vultus serve` runs,
 * and the way back. See README.md "Backing up and restoring".
 *
 * Both write a temporary file beside the target, fsync it, rename it into place and fsync the
 * folder, so a target is either the old file or the whole new one, never a partial file (a
 * full disk, a crash, Ctrl-C). The SQLite parts (the copy, the checks, the lock attempt) are
 * the gallery's (src/gallery/backup.c); the files around them are here.
 */
#include "base/base.h"
#include "cli/cli.h"
#include "gallery/gallery.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Exit statuses beyond cli.h's 0, 1 and 2, for scripts (documented in both usages). */
enum {
    BACKUP_EXIT_POSTGRES = 3, /* the store is PostgreSQL: pg_dump / pg_restore do it */
    BACKUP_EXIT_IN_USE = 4,   /* restore: another process has the store open */
};

/* The backup's CPU priority (nice), as the HNSW graph's build threads run at. */
#define BACKUP_NICE 10

/* The table of API keys (src/http/keys.c) in the same file, counted as "keys". */
#define KEYS_TABLE "api_keys"

/*
 * The temporary file of the command in progress, removed by the handler of SIGINT and SIGTERM
 * (unlink is async-signal-safe), which then exits as the signal would (130, 143). Set once
 * before the file is made; cleared when it is renamed into place.
 */
static char temp_path[PATH_MAX];
static volatile sig_atomic_t temp_armed;

/* The files SQLite keeps beside the temporary one while it writes it: its rollback journal
 * during the copy, and a -wal and -shm while the copy (whose pages say WAL mode) is switched
 * to rollback mode. Named before the handler may need them (snprintf is not signal-safe). */
static char temp_side[3][PATH_MAX + 16];

/* The temporary file and its side files: made ready to be removed from here on. */
static void arm_temp(void)
{
    static const char *const suffix[3] = {"-journal", "-wal", "-shm"};
    for (int k = 0; k < 3; k++)
        snprintf(temp_side[k], sizeof temp_side[k], "%s%s", temp_path, suffix[k]);
    temp_armed = 1;
}

/* Removes what arm_temp named (async-signal-safe: unlink only). */
static void remove_temp(void)
{
    if (!temp_armed) return;
    unlink(temp_path);
    for (int k = 0; k < 3; k++)
        unlink(temp_side[k]);
}

static void on_signal(int sig)
{
    remove_temp();
    _exit(128 + sig);
}

static void catch_signals(void)
{
    struct sigaction sa = {.sa_handler = on_signal};
    for (int k = 0; k < 2; k++) {
        int sig = k ? SIGTERM : SIGINT;
        struct sigaction old;
        if (sigaction(sig, NULL, &old) == 0 && old.sa_handler != SIG_IGN) sigaction(sig, &sa, NULL);
    }
}

/* While files are moved aside and the new one renamed in, a signal waits: the folder is never
 * left half-way by Ctrl-C. */
static void block_signals(int block)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

static double now_ms(void)
{
    return (double)base_now_ns() / 1e6;
}

/* A temporary name beside `target`, hidden: DIR/.NAME.tmp-PID. */
static int temp_beside(const char *target, char *out, size_t cap)
{
    char dir[PATH_MAX];
    base_path_dir(target, dir, sizeof dir);
    const char *slash = strrchr(target, '/');
    const char *name = slash ? slash + 1 : target;
    int n = snprintf(out, cap, "%s/.%s.tmp-%ld", dir, name, (long)getpid());
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

/*
 * Whether `out` is the store or one of the files SQLite keeps beside it: by its name in the
 * data folder (`vultus backup --force --data data data/vultus.db`, or a -wal that does not
 * exist yet), or as the same file by another path (a link). A backup renamed over the store
 * that a server has open would leave it writing to the old, unlinked file, and its live -wal
 * beside the new one: replayed onto it at the next open, a mixed store.
 */
static int is_store_file(const char *data, const char *store, const char *out)
{
    static const char *const suffix[4] = {"", "-wal", "-shm", "-journal"};
    char out_dir[PATH_MAX], real_out_dir[PATH_MAX], real_data[PATH_MAX];
    base_path_dir(out, out_dir, sizeof out_dir);
    const char *slash = strrchr(out, '/');
    const char *name = slash ? slash + 1 : out;
    int same_dir = realpath(out_dir, real_out_dir) && realpath(data, real_data) &&
                   strcmp(real_out_dir, real_data) == 0;
    struct stat o, f;
    int out_exists = stat(out, &o) == 0;
    for (int k = 0; k < 4; k++) {
        char file[PATH_MAX + 16];
        snprintf(file, sizeof file, "%s%s", store, suffix[k]);
        if (same_dir && strcmp(name, strrchr(file, '/') + 1) == 0) return 1;
        if (out_exists && stat(file, &f) == 0 && f.st_dev == o.st_dev && f.st_ino == o.st_ino)
            return 1;
    }
    return 0;
}

/* The message for a PostgreSQL store: its own tools do this, consistently and online. */
static int refuse_postgres(const char *cmd, const char *url)
{
    char shown[512];
    gal_location_redact(url, shown, sizeof shown);
    fprintf(stderr,
            "vultus %s: the store is PostgreSQL (%s): back it up with pg_dump and restore it "
            "with pg_restore, e.g. pg_dump --format=custom --file=vultus.dump \"$URL\", then "
            "pg_restore --clean --if-exists --dbname=\"$URL\" vultus.dump (README.md: "
            "\"Backing up and restoring\"); vultus %s is for the SQLite store (--data DIR)\n",
            cmd, shown, cmd);
    return BACKUP_EXIT_POSTGRES;
}

/*
 * The options both commands take: --data DIR, --store URL, --force (backup), --help, and one
 * operand. The store: --store, else --data, else VULTUS_STORE, else VULTUS_DATA, else "data"
 * (an explicit --data is not overridden by the environment's PostgreSQL URL). Returns -1 to
 * go on, else the exit status.
 */
struct args {
    const char *data, *url, *operand;
    int force;
};

static int parse_args(const char *cmd, int argc, char **argv, int allow_force,
                      void (*usage)(FILE *), struct args *a)
{
    memset(a, 0, sizeof *a);
    const char *data = NULL, *url = NULL;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        if (allow_force && strcmp(s, "--force") == 0) {
            a->force = 1;
        } else if (strcmp(s, "--data") == 0 || strcmp(s, "--store") == 0) {
            const char **slot = s[2] == 'd' ? &data : &url;
            if (i + 1 >= argc || !argv[i + 1][0]) {
                fprintf(stderr, "vultus %s: %s needs a value\n", cmd, s);
                return CLI_EXIT_USAGE;
            }
            if (*slot) {
                fprintf(stderr, "vultus %s: %s given twice\n", cmd, s);
                return CLI_EXIT_USAGE;
            }
            *slot = argv[++i];
        } else if (s[0] == '-' && s[1]) {
            fprintf(stderr, "vultus %s: unknown option '%s'\n\n", cmd, s);
            usage(stderr);
            return CLI_EXIT_USAGE;
        } else if (a->operand) {
            fprintf(stderr, "vultus %s: unexpected argument '%s'\n\n", cmd, s);
            usage(stderr);
            return CLI_EXIT_USAGE;
        } else {
            a->operand = s;
        }
    }
    if (data && url) {
        fprintf(stderr, "vultus %s: --data and --store: give one\n", cmd);
        return CLI_EXIT_USAGE;
    }
    if (!a->operand) {
        fprintf(stderr, "vultus %s: which file?\n\n", cmd);
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (url && !gal_location_is_url(url)) {
        fprintf(stderr, "vultus %s: --store: expected a postgres:// or postgresql:// URL\n", cmd);
        return CLI_EXIT_USAGE;
    }
    if (!data && !url) {
        const char *env = getenv("VULTUS_STORE");
        if (env && *env) url = env;
    }
    if (!data && !url) {
        data = getenv("VULTUS_DATA");
        if (!data || !*data) data = "data";
    }
    a->data = data;
    a->url = url;
    return -1;
}

static void backup_usage(FILE *out)
{
    fprintf(out,
            "usage: vultus backup [--data DIR | --store URL] [--force] OUT\n"
            "\n"
            "Writes a consistent copy of the store DIR/vultus.db (every collection, subject,\n"
            "face, API key and the check-in record) to the file OUT, while `vultus serve` runs\n"
            "and writes: it reads one snapshot and never stops the server's writers. OUT is\n"
            "one self-contained SQLite file (no -wal beside it): a folder holding it as\n"
            "vultus.db serves it (`vultus restore` puts it there). It is written to a\n"
            "temporary name beside OUT, fsynced and renamed, so OUT is never partial; it is\n"
            "checked (PRAGMA integrity_check) before. Prints one JSON line: backup, store,\n"
            "collections, subjects, faces, keys (API key rows), bytes, integrity, copy_ms, ms.\n"
            "  --data DIR   the data folder (default: VULTUS_DATA, else \"data\")\n"
            "  --store URL  a PostgreSQL store (default: VULTUS_STORE): refused, use pg_dump\n"
            "  --force      replace OUT when it exists (refused otherwise; never the store\n"
            "               itself, DIR/vultus.db or its -wal, -shm, -journal: exit 2)\n"
            "Do not copy vultus.db with cp while the server runs: the last writes are in\n"
            "vultus.db-wal.\n"
            "Exit status: 0 done, 1 failed (OUT unchanged), 2 usage error, 3 the store is\n"
            "PostgreSQL (use pg_dump), 130/143 Ctrl-C/SIGTERM (OUT unchanged).\n");
}

int cli_backup_main(int argc, char **argv)
{
    struct args a;
    int rc = parse_args("backup", argc, argv, 1, backup_usage, &a);
    if (rc >= 0) return rc;
    if (a.url) return refuse_postgres("backup", a.url);
    const char *out = a.operand;
    double t0 = now_ms();

    char store[PATH_MAX];
    if (snprintf(store, sizeof store, "%s/vultus.db", a.data) >= (int)sizeof store) {
        fprintf(stderr, "vultus backup: --data: path too long\n");
        return CLI_EXIT_USAGE;
    }
    struct stat st;
    if (stat(store, &st) != 0) {
        fprintf(stderr, "vultus backup: no store at %s (%s): pass --data DIR\n", store,
                strerror(errno));
        return CLI_EXIT_FAILURE;
    }
    if (is_store_file(a.data, store, out)) {
        fprintf(stderr,
                "vultus backup: %s is the store itself (or its -wal, -shm or -journal): name a "
                "file outside the store, e.g. backups/vultus-DATE.db (nothing written)\n",
                out);
        return CLI_EXIT_USAGE;
    }
    if (lstat(out, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            fprintf(stderr, "vultus backup: %s is a folder: name the backup file\n", out);
            return CLI_EXIT_FAILURE;
        }
        if (!a.force) {
            fprintf(stderr, "vultus backup: %s exists: pass --force to replace it\n", out);
            return CLI_EXIT_FAILURE;
        }
    }
    if (temp_beside(out, temp_path, sizeof temp_path) != 0) {
        fprintf(stderr, "vultus backup: %s: path too long\n", out);
        return CLI_EXIT_USAGE;
    }
    /* The service comes first: the copy and its check take the CPU that inference leaves
     * idle. Enrolments on 2 shared cores during back-to-back backups of 100k faces: p50 538 ms
     * without it, 344-381 ms with it, 200 ms with no backup (README, "Backing up and
     * restoring"). */
    if (setpriority(PRIO_PROCESS, 0, BACKUP_NICE) != 0)
        LOG_DEBUG("backup: setpriority: %s", strerror(errno));
    catch_signals();
    arm_temp();
    remove_temp(); /* ours: a run of this very pid cannot be in progress */
    uint64_t bytes = 0;
    struct gal_backup_counts counts;
    rc = gal_backup_copy(store, temp_path, &bytes);
    double copied = now_ms();
    /* Checked before it takes OUT's name: a copy that fails it never replaces anything. */
    if (!rc) rc = gal_backup_inspect(temp_path, KEYS_TABLE, &counts);
    if (rc) {
        fprintf(stderr, "vultus backup: %s (%s not written)\n", base_error_message(), out);
        goto fail;
    }
    block_signals(1);
    if (rename(temp_path, out) != 0) {
        fprintf(stderr, "vultus backup: %s: %s (not written)\n", out, strerror(errno));
        block_signals(0);
        goto fail;
    }
    temp_armed = 0;
    char dir[PATH_MAX];
    base_path_dir(out, dir, sizeof dir);
    if (base_fsync_dir(dir) != 0) {
        fprintf(stderr, "vultus backup: %s: fsync of the folder: %s\n", dir, strerror(errno));
        block_signals(0);
        return CLI_EXIT_FAILURE;
    }
    block_signals(0);
    json_t *line = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:s,s:f,s:f}", "backup", out, "store",
                             store, "collections", (json_int_t)counts.collections, "subjects",
                             (json_int_t)counts.subjects, "faces", (json_int_t)counts.faces, "keys",
                             (json_int_t)counts.extra_rows, "bytes", (json_int_t)bytes, "integrity",
                             "ok", "copy_ms", copied - t0, "ms", now_ms() - t0);
    return cli_print_json_line(line, 6) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
fail:
    remove_temp();
    temp_armed = 0;
    return CLI_EXIT_FAILURE;
}

static void restore_usage(FILE *out)
{
    fprintf(out,
            "usage: vultus restore [--data DIR] BACKUP\n"
            "\n"
            "Makes the file BACKUP (from `vultus backup`; /dev/stdin too) the store\n"
            "DIR/vultus.db. Stop `vultus serve` first: refused while any process has the\n"
            "store open. BACKUP is checked first (a SQLite file, PRAGMA integrity_check ok,\n"
            "a vultus store of a schema this build reads); then the current vultus.db and\n"
            "its -wal and -shm files are moved aside, kept as vultus.db.before-restore-TIME\n"
            "(printed), so that no old WAL is ever replayed onto the backup; then the copy\n"
            "is put in place (written beside it, fsynced, renamed). A BACKUP with a -wal\n"
            "beside it (one of those moved aside: the way back) is read with its -wal.\n"
            "A missing DIR is created (mode 0700). Prints one JSON line: restored, from,\n"
            "moved_aside, collections, subjects, faces, keys (API key rows), bytes,\n"
            "integrity, ms.\n"
            "  --data DIR   the data folder (default: VULTUS_DATA, else \"data\")\n"
            "  --store URL  a PostgreSQL store (default: VULTUS_STORE): refused, use pg_restore\n"
            "Exit status: 0 done, 1 failed (nothing changed), 2 usage error, 3 the store is\n"
            "PostgreSQL (use pg_restore), 4 the store is in use (stop the server), 130/143\n"
            "Ctrl-C/SIGTERM (nothing changed).\n");
}

/* Copies src to the new file dst (fsynced, mode `mode`). 0, or -1 with errno's message in err. */
static int copy_file(const char *src, const char *dst, mode_t mode, char *err, size_t cap)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        snprintf(err, cap, "%s: %s", src, strerror(errno));
        return -1;
    }
    int outfd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (outfd < 0) {
        snprintf(err, cap, "%s: %s", dst, strerror(errno));
        close(in);
        return -1;
    }
    fchmod(outfd, mode); /* the umask does not narrow what the server needs */
    static char buf[1 << 20];
    int rc = 0;
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n == 0) break;
        if (n < 0) {
            if (errno == EINTR) continue;
            snprintf(err, cap, "%s: %s", src, strerror(errno));
            rc = -1;
            break;
        }
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(outfd, buf + done, (size_t)(n - done));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                snprintf(err, cap, "%s: %s", dst, w < 0 ? strerror(errno) : "short write");
                rc = -1;
                break;
            }
            done += w;
        }
        if (rc) break;
    }
    if (!rc && fsync(outfd) != 0) {
        snprintf(err, cap, "%s: fsync: %s", dst, strerror(errno));
        rc = -1;
    }
    if (close(outfd) != 0 && !rc) {
        snprintf(err, cap, "%s: %s", dst, strerror(errno));
        rc = -1;
    }
    close(in);
    return rc;
}

/* 0 when no other process has `store` open; else BACKUP_EXIT_IN_USE or CLI_EXIT_FAILURE, said. */
static int refuse_in_use(const char *store)
{
    int in_use = 0;
    if (gal_store_in_use(store, &in_use) != 0) {
        fprintf(stderr, "vultus restore: %s (nothing changed)\n", base_error_message());
        return CLI_EXIT_FAILURE;
    }
    if (!in_use) return 0;
    fprintf(stderr,
            "vultus restore: %s is open by another process (a running `vultus serve`?): stop it "
            "first (nothing changed)\n",
            store);
    return BACKUP_EXIT_IN_USE;
}

int cli_restore_main(int argc, char **argv)
{
    struct args a;
    int rc = parse_args("restore", argc, argv, 0, restore_usage, &a);
    if (rc >= 0) return rc;
    if (a.url) return refuse_postgres("restore", a.url);
    const char *backup = a.operand;
    double t0 = now_ms();

    struct stat st;
    if (stat(backup, &st) != 0) {
        fprintf(stderr, "vultus restore: %s: %s (nothing changed)\n", backup, strerror(errno));
        return CLI_EXIT_FAILURE;
    }
    /* A pipe too (/dev/stdin: `kubectl run -i ... restore /dev/stdin < backup.db`): it is
     * copied beside the store before anything is checked. */
    if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode)) {
        fprintf(stderr, "vultus restore: %s: not a file (nothing changed)\n", backup);
        return CLI_EXIT_FAILURE;
    }
    if (mkdir(a.data, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "vultus restore: cannot create the data folder %s: %s\n", a.data,
                strerror(errno));
        return CLI_EXIT_FAILURE;
    }
    char store[PATH_MAX];
    if (snprintf(store, sizeof store, "%s/vultus.db", a.data) >= (int)sizeof store - 64 ||
        temp_beside(store, temp_path, sizeof temp_path) != 0) {
        fprintf(stderr, "vultus restore: --data: path too long\n");
        return CLI_EXIT_USAGE;
    }
    /* The restored file keeps the mode of the one it replaces (the server's user reads it). */
    struct stat old;
    int have_old = stat(store, &old) == 0;
    mode_t mode = have_old ? (old.st_mode & 0777) : 0600;

    /* A running server is said before BACKUP is copied and checked, which takes seconds for
     * a large store, and whatever BACKUP is: stopping the server comes first either way. */
    if (have_old && (rc = refuse_in_use(store)) != 0) return rc;

    /* 1. The copy, beside the store, checked: a bad BACKUP stops here, nothing moved. */
    catch_signals();
    arm_temp();
    remove_temp();
    char err[PATH_MAX + 256];
    struct gal_backup_counts counts;
    /* A store with its -wal beside it (the files a restore moved aside, vultus.db.before-
     * restore-TIME and its -wal, after a server was killed) has its latest commits in that
     * -wal: a copy of the file alone would drop them, without a word. It is read through
     * SQLite instead, WAL included, as `vultus backup` reads a store. */
    char wal[PATH_MAX + 16];
    snprintf(wal, sizeof wal, "%s-wal", backup);
    struct stat wal_st;
    if (S_ISREG(st.st_mode) && lstat(wal, &wal_st) == 0) {
        if (gal_backup_copy(backup, temp_path, NULL) != 0) {
            fprintf(stderr, "vultus restore: %s (nothing changed)\n", base_error_message());
            goto fail;
        }
        if (chmod(temp_path, mode) != 0) {
            fprintf(stderr, "vultus restore: %s: %s (nothing changed)\n", temp_path,
                    strerror(errno));
            goto fail;
        }
    } else if (copy_file(backup, temp_path, mode, err, sizeof err) != 0) {
        fprintf(stderr, "vultus restore: %s (nothing changed)\n", err);
        goto fail;
    }
    if (gal_backup_inspect(temp_path, KEYS_TABLE, &counts) != 0) {
        /* Name the file the user gave, not our temporary copy of it. */
        const char *m = base_error_message();
        const char *at = strstr(m, temp_path);
        if (at)
            fprintf(stderr, "vultus restore: %.*s%s%s (nothing changed)\n", (int)(at - m), m,
                    backup, at + strlen(temp_path));
        else
            fprintf(stderr, "vultus restore: %s: %s (nothing changed)\n", backup, m);
        goto fail;
    }

    /* 2. Nobody else may have the store open: a running server would go on with its own.
     * Asked again here (the answer before the copy is a courtesy: a server may have started
     * while BACKUP was copied and checked). */
    if (have_old && (rc = refuse_in_use(store)) != 0) {
        if (rc == BACKUP_EXIT_IN_USE) {
            remove_temp();
            temp_armed = 0;
            return rc;
        }
        goto fail;
    }

    /*
     * 3. The current files aside, under one new name with the time: vultus.db.before-restore-
     * TIME and its -wal and -shm, still a pair SQLite opens together, so nothing of the old
     * store is lost. The -wal goes with them: a vultus.db-wal left beside the restored file
     * (a server killed with writes in it) would be replayed onto it at the next open.
     */
    static const char *const suffix[3] = {"", "-wal", "-shm"};
    block_signals(1);
    json_t *aside = json_array();
    char stamp[32], base[PATH_MAX + 256];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    for (int k = 0;; k++) {
        char probe[PATH_MAX + 300];
        if (k == 0)
            snprintf(base, sizeof base, "%s.before-restore-%s", store, stamp);
        else
            snprintf(base, sizeof base, "%s.before-restore-%s-%d", store, stamp, k);
        int taken = 0;
        for (int f = 0; f < 3; f++) {
            snprintf(probe, sizeof probe, "%s%s", base, suffix[f]);
            taken |= lstat(probe, &st) == 0;
        }
        if (!taken) break;
    }
    int moved[3] = {0};
    int failed = 0;
    for (int f = 0; f < 3 && !failed; f++) {
        char from[PATH_MAX + 300], to[PATH_MAX + 300];
        snprintf(from, sizeof from, "%s%s", store, suffix[f]);
        snprintf(to, sizeof to, "%s%s", base, suffix[f]);
        if (lstat(from, &st) != 0) continue;
        if (rename(from, to) != 0) {
            fprintf(stderr, "vultus restore: cannot move %s aside to %s: %s\n", from, to,
                    strerror(errno));
            failed = 1;
            break;
        }
        moved[f] = 1;
        json_array_append_new(aside, json_string(to));
    }
    char dir[PATH_MAX];
    base_path_dir(store, dir, sizeof dir);
    /* The moves on disk before the new file appears: never the new file beside an old WAL. */
    if (!failed) base_fsync_dir(dir);

    /* 4. The backup in place. */
    if (!failed && rename(temp_path, store) != 0) {
        fprintf(stderr, "vultus restore: %s: %s\n", store, strerror(errno));
        failed = 1;
    }
    if (failed) {
        /* What was moved goes back (the store first, its -wal last: never a WAL without its
         * database), so that a failed restore changes nothing. */
        int stuck = 0, back = 0;
        for (int f = 0; f < 3; f++) {
            if (!moved[f]) continue;
            char from[PATH_MAX + 300], to[PATH_MAX + 300];
            snprintf(from, sizeof from, "%s%s", store, suffix[f]);
            snprintf(to, sizeof to, "%s%s", base, suffix[f]);
            if (rename(to, from) != 0) {
                fprintf(stderr, "vultus restore: cannot move %s back to %s: %s\n", to, from,
                        strerror(errno));
                stuck++;
            } else {
                back++;
            }
        }
        base_fsync_dir(dir);
        /* The last line says where the store stands: as it was, or what to move by hand. */
        if (stuck)
            fprintf(stderr,
                    "vultus restore: the store is NOT as it was: move the files named above back "
                    "by hand before starting the server\n");
        else
            fprintf(stderr,
                    "vultus restore: %s (the %d file(s) moved aside are back: nothing "
                    "changed)\n",
                    store, back);
        json_decref(aside);
        block_signals(0);
        goto fail;
    }
    temp_armed = 0;
    rc = base_fsync_dir(dir);
    block_signals(0);
    if (rc != 0) {
        fprintf(stderr, "vultus restore: %s: fsync of the folder: %s\n", dir, strerror(errno));
        json_decref(aside);
        return CLI_EXIT_FAILURE;
    }
    json_t *line =
        json_pack("{s:s,s:s,s:o,s:I,s:I,s:I,s:I,s:I,s:s,s:f}", "restored", store, "from", backup,
                  "moved_aside", aside, "collections", (json_int_t)counts.collections, "subjects",
                  (json_int_t)counts.subjects, "faces", (json_int_t)counts.faces, "keys",
                  (json_int_t)counts.extra_rows, "bytes", (json_int_t)counts.bytes, "integrity",
                  "ok", "ms", now_ms() - t0);
    return cli_print_json_line(line, 6) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
fail:
    remove_temp();
    temp_armed = 0;
    return CLI_EXIT_FAILURE;
}
