/*
 * One machine with systemd (README, "One machine with systemd"; deploy/systemd/):
 *   - the readiness messages (src/http/notify.c) and $NOTIFY_SOCKET's two address forms;
 *   - `make install DESTDIR=D PREFIX=/usr`: every file where the README says, with its mode,
 *     the model pack whole, the environment file never overwritten once edited, and
 *     `make uninstall` leaving no file behind (an edited environment file excepted);
 *   - `systemd-analyze verify` on the installed units, with nothing to say (skipped when
 *     systemd-analyze is absent);
 *   - vultus.service's ExecStart and Environment=, read from the installed unit, start the
 *     installed binary on the installed models and serve /readyz 200;
 *   - the protocol against the real server: READY=1 only when /readyz answers 200, with the
 *     store's counts in STATUS=; SIGTERM -> STOPPING=1 and exit 0; an abstract socket; a
 *     NOTIFY_SOCKET that does not exist changes nothing;
 *   - vultus-backup.service's ExecStart: a backup with a time-stamped name, the newest
 *     BACKUP_KEEP of its own backups kept, nothing else removed; a failed backup exits non-zero
 *     and removes nothing.
 * A real systemd (PID 1) is not run here: the container has none.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "http/client.h"
#include "http/notify.h"

#include <dirent.h>

/* The install all tests but the layout's read (group set-up): DESTDIR=dest, PREFIX=/usr. */
static char root[256], dest[300];
static int installed;

/* Runs argv (PATH looked up) with its output in out[cap] (stdout and stderr together), make's
 * own variables removed from the environment (make test runs this under make: its jobserver
 * and flags must not reach the inner make). `env`: NULL or NAME=VALUE strings to add. Returns
 * the exit status, or -1. */
static int run(const char *const *argv, const char *const *env, char *out, size_t cap)
{
    int pipefd[2];
    if (pipe(pipefd) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        unsetenv("MAKEFLAGS");
        unsetenv("MFLAGS");
        unsetenv("MAKELEVEL");
        for (int i = 0; env && env[i]; i++)
            putenv((char *)env[i]);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    size_t len = 0;
    ssize_t n;
    while ((n = read(pipefd[0], out + len, cap - 1 - len)) > 0)
        if ((len += (size_t)n) >= cap - 1) break;
    out[len] = '\0';
    char sink[4096];
    while (read(pipefd[0], sink, sizeof sink) > 0) {
    }
    close(pipefd[0]);
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* BUILD= for make: the folder of the vultus binary beside this test. */
static void build_dir(char *out, size_t cap)
{
    char bin[PATH_MAX];
    assert_int_equal(tc_vultus_path(bin, sizeof bin), 0);
    *strrchr(bin, '/') = '\0';
    snprintf(out, cap, "%s", bin);
}

/* `make TARGET VAR=VALUE...` from the repository root; output in out. */
static int make(const char *target, const char *const *vars, char *out, size_t cap)
{
    char build[PATH_MAX + 8], dir[PATH_MAX];
    build_dir(dir, sizeof dir);
    snprintf(build, sizeof build, "BUILD=%s", dir);
    const char *argv[16] = {"make", "--no-print-directory", target, build};
    int n = 4;
    for (int i = 0; vars[i] && n < 15; i++)
        argv[n++] = vars[i];
    argv[n] = NULL;
    return run(argv, NULL, out, cap);
}

static int group_setup(void **state)
{
    (void)state;
    if (tc_temp_dir(root) != 0) return -1;
    snprintf(dest, sizeof dest, "%s/dest", root);
    if (!tc_have_models()) return 0; /* install refuses; the tests say so and skip */
    char var[400];
    snprintf(var, sizeof var, "DESTDIR=%s", dest);
    static char out[1 << 16];
    const char *vars[] = {var, "PREFIX=/usr", NULL};
    int rc = make("install", vars, out, sizeof out);
    if (rc != 0) fprintf(stderr, "make install: exit %d\n%s\n", rc, out);
    installed = rc == 0;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (root[0]) tc_rm_rf(root);
    return 0;
}

#define NEED_INSTALL()                                                                             \
    do {                                                                                           \
        TC_NEED_MODELS();                                                                          \
        assert_true(installed);                                                                    \
    } while (0)

/* ---- the messages ------------------------------------------------------------------------- */

static void test_notify_messages(void **state)
{
    (void)state;
    char buf[128];
    size_t n = http_notify_ready_message(buf, sizeof buf, 3, 1);
    assert_string_equal(buf, "READY=1\nSTATUS=ready: 3 faces in 1 collection");
    assert_int_equal(n, strlen(buf));
    http_notify_ready_message(buf, sizeof buf, 1, 2);
    assert_string_equal(buf, "READY=1\nSTATUS=ready: 1 face in 2 collections");
    http_notify_ready_message(buf, sizeof buf, 0, 0);
    assert_string_equal(buf, "READY=1\nSTATUS=ready: 0 faces in 0 collections");
    http_notify_stopping_message(buf, sizeof buf, 2);
    assert_string_equal(buf, "STOPPING=1\nSTATUS=draining: 2 requests in flight");
    http_notify_stopping_message(buf, sizeof buf, 1);
    assert_string_equal(buf, "STOPPING=1\nSTATUS=draining: 1 request in flight");
    /* Too small a buffer: cut, terminated, the length what is there. */
    n = http_notify_stopping_message(buf, 11, 0);
    assert_string_equal(buf, "STOPPING=1");
    assert_int_equal(n, 10);

    struct sockaddr_un a;
    socklen_t len;
    assert_int_equal(http_notify_address("/run/systemd/notify", &a, &len), 0);
    assert_string_equal(a.sun_path, "/run/systemd/notify");
    assert_int_equal(len,
                     offsetof(struct sockaddr_un, sun_path) + strlen("/run/systemd/notify") + 1);
    assert_int_equal(http_notify_address("@vultus/x", &a, &len), 0);
    assert_int_equal(a.sun_path[0], '\0');
    assert_memory_equal(a.sun_path + 1, "vultus/x", 8);
    assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + 9); /* no trailing NUL */
    char long_name[200];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[0] = '/';
    long_name[sizeof long_name - 1] = '\0';
    const char *bad[] = {"", "@", "relative/path", long_name};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(http_notify_address(bad[i], &a, &len), BASE_ERR_INVALID);

    /* Unset: nothing to do, success. Gone: an error for the caller to ignore, no crash. */
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(http_notify_send("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "/nonexistent/vultus-notify", 1);
    assert_true(http_notify_send("READY=1") < 0);
    unsetenv("NOTIFY_SOCKET");
}

/* ---- the install -------------------------------------------------------------------------- */

/* Counts the regular files under dir (links and folders not). */
static int count_files(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) != 0) continue;
        if (S_ISDIR(st.st_mode))
            n += count_files(path);
        else
            n++;
    }
    closedir(d);
    return n;
}

static void expect_file(const char *base, const char *rel, int mode)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s%s", base, rel);
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) fail_msg("%s: not installed", rel);
    if ((int)(st.st_mode & 07777) != mode)
        fail_msg("%s: mode %04o, expected %04o", rel, st.st_mode & 07777, mode);
}

/* Every file of models/DIR is at base/usr/share/vultus/models/DIR with the same size, 0644. */
static int expect_models(const char *from, const char *to)
{
    int n = 0;
    DIR *d = opendir(from);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char a[PATH_MAX], b[PATH_MAX];
        snprintf(a, sizeof a, "%s/%s", from, e->d_name);
        snprintf(b, sizeof b, "%s/%s", to, e->d_name);
        struct stat sa, sb;
        assert_int_equal(stat(a, &sa), 0);
        if (lstat(b, &sb) != 0) fail_msg("%s: not installed", b);
        if (S_ISDIR(sa.st_mode)) {
            assert_true(S_ISDIR(sb.st_mode));
            n += expect_models(a, b);
            continue;
        }
        if (!S_ISREG(sb.st_mode) || sb.st_size != sa.st_size || (sb.st_mode & 07777) != 0644)
            fail_msg("%s: %lld bytes mode %04o, expected %lld bytes 0644", b, (long long)sb.st_size,
                     sb.st_mode & 07777, (long long)sa.st_size);
        n++;
    }
    closedir(d);
    return n;
}

static void test_install_layout_and_uninstall(void **state)
{
    (void)state;
    char base[300], var[400];
    snprintf(base, sizeof base, "%s/layout", root);
    snprintf(var, sizeof var, "DESTDIR=%s", base);
    static char out[1 << 16];
    const char *vars[] = {var, "PREFIX=/usr", NULL};
    if (!tc_have_models()) {
        /* Checked, not fetched: a clear message, nothing installed. */
        assert_int_not_equal(make("install", vars, out, sizeof out), 0);
        assert_non_null(strstr(out, "run make setup (or tools/fetch-models) first"));
        print_message("models/ is absent (run tools/fetch-models): the rest skipped\n");
        skip();
    }
    if (make("install", vars, out, sizeof out) != 0) fail_msg("make install:\n%s", out);
    expect_file(base, "/usr/bin/vultus", 0755);
    expect_file(base, "/usr/lib/vultus/vultus-backup", 0755);
    expect_file(base, "/usr/lib/systemd/system/vultus.service", 0644);
    expect_file(base, "/usr/lib/systemd/system/vultus-backup.service", 0644);
    expect_file(base, "/usr/lib/systemd/system/vultus-backup.timer", 0644);
    expect_file(base, "/etc/vultus/vultus.env", 0600);
    int models = 0;
    const char *dirs[] = {"faceapi", "human", "licenses"};
    for (int i = 0; i < 3; i++) {
        char from[64], to[PATH_MAX];
        snprintf(from, sizeof from, "models/%s", dirs[i]);
        snprintf(to, sizeof to, "%s/usr/share/vultus/models/%s", base, dirs[i]);
        models += expect_models(from, to);
    }
    /* Nothing else: 6 files and the model pack. */
    assert_int_equal(count_files(base), 6 + models);
    print_message("installed: 6 files and %d of the model pack\n", models);

    /* The units name the PREFIX's paths, not /usr/local's. */
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/usr/lib/systemd/system/vultus.service", base);
    char *unit = tc_slurp(path);
    assert_non_null(strstr(unit, "\nExecStart=/usr/bin/vultus serve\n"));
    assert_null(strstr(unit, "/usr/local"));
    free(unit);

    /* An edited environment file survives install and uninstall. */
    char env[PATH_MAX];
    snprintf(env, sizeof env, "%s/etc/vultus/vultus.env", base);
    char *example = tc_slurp(env);
    FILE *f = fopen(env, "a");
    assert_non_null(f);
    fputs("VULTUS_WORKERS=3\n", f);
    fclose(f);
    if (make("install", vars, out, sizeof out) != 0) fail_msg("make install again:\n%s", out);
    char *now = tc_slurp(env);
    assert_non_null(strstr(now, "\nVULTUS_WORKERS=3\n"));
    free(now);
    if (make("uninstall", vars, out, sizeof out) != 0) fail_msg("make uninstall:\n%s", out);
    assert_non_null(strstr(out, "was edited: kept"));
    assert_int_equal(count_files(base), 1);
    /* As installed, it goes with the rest: nothing is left. */
    f = fopen(env, "w");
    assert_non_null(f);
    fputs(example, f);
    fclose(f);
    free(example);
    if (make("install", vars, out, sizeof out) != 0) fail_msg("make install:\n%s", out);
    if (make("uninstall", vars, out, sizeof out) != 0) fail_msg("make uninstall:\n%s", out);
    assert_int_equal(count_files(base), 0);
}

/* ---- the units ---------------------------------------------------------------------------- */

static int have_program(const char *name)
{
    char out[256];
    const char *argv[] = {"sh", "-c", "command -v \"$0\"", name, NULL};
    return run(argv, NULL, out, sizeof out) == 0;
}

static void test_units_verify(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    if (!have_program("systemd-analyze")) {
        print_message("systemd-analyze is absent (Debian package systemd): skipped\n");
        skip();
    }
    /* verify checks that ExecStart's program exists, so the units are installed for a PREFIX
     * that is real here (DESTDIR=/: no user created, no daemon-reload). */
    char prefix[400], sysconf[400], units[PATH_MAX];
    snprintf(prefix, sizeof prefix, "PREFIX=%s/verify/usr", root);
    snprintf(sysconf, sizeof sysconf, "SYSCONFDIR=%s/verify/etc", root);
    static char out[1 << 16];
    const char *vars[] = {"DESTDIR=/", prefix, sysconf, NULL};
    if (make("install", vars, out, sizeof out) != 0) fail_msg("make install:\n%s", out);
    snprintf(units, sizeof units, "%s/verify/usr/lib/systemd/system", root);
    const char *names[] = {"vultus.service", "vultus-backup.service", "vultus-backup.timer"};
    for (int i = 0; i < 3; i++) {
        char unit[PATH_MAX + 64];
        snprintf(unit, sizeof unit, "%s/%s", units, names[i]);
        const char *argv[] = {"systemd-analyze", "verify", unit, NULL};
        int rc = run(argv, NULL, out, sizeof out);
        /* It exits 0 after warnings (an unknown key, a bad value): any output is a failure. */
        if (rc != 0 || out[0])
            fail_msg("systemd-analyze verify %s: exit %d\n%s", names[i], rc, out);
    }
    print_message("systemd-analyze verify: 3 units, nothing to say\n");
}

/* The value of the first `Key=` line of a unit (text), into out; NULL when absent. */
static const char *unit_value(const char *text, const char *key, char *out, size_t cap)
{
    size_t k = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, key, k) == 0 && p[k] == '=') {
            size_t n = strcspn(p + k + 1, "\n");
            snprintf(out, cap, "%.*s", (int)n, p + k + 1);
            return out;
        }
    }
    return NULL;
}

/* Splits s at spaces into words (in place); returns their number. */
static int split(char *s, char **words, int max)
{
    int n = 0;
    for (char *w = strtok(s, " "); w && n < max; w = strtok(NULL, " "))
        words[n++] = w;
    return n;
}

/* A server started from a unit's lines: pid, port, log. */
typedef struct unit_run {
    pid_t pid;
    int port;
    char log[PATH_MAX];
} unit_run;

/*
 * Starts the installed vultus.service as systemd would, by hand: ExecStart's words with its
 * program under DESTDIR, the Environment= and EnvironmentFile= settings (paths under /usr
 * moved under DESTDIR), then what an environment file would set here: VULTUS_DATA=data (for
 * /var/lib/vultus), VULTUS_LISTEN on a free loopback port. notify: NOTIFY_SOCKET or NULL.
 */
static void unit_start(unit_run *u, const char *data, const char *notify)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/usr/lib/systemd/system/vultus.service", dest);
    char *unit = tc_slurp(path);
    static char exec[1024], environment[1024], file[1024];
    assert_non_null(unit_value(unit, "ExecStart", exec, sizeof exec));
    assert_non_null(unit_value(unit, "Environment", environment, sizeof environment));
    assert_non_null(unit_value(unit, "EnvironmentFile", file, sizeof file));
    assert_string_equal(unit_value(unit, "WorkingDirectory", path, sizeof path), "/var/lib/vultus");
    free(unit);
    char *argv[16], *env[16];
    int argc = split(exec, argv, 15), envc = split(environment, env, 15);
    argv[argc] = NULL;
    static char program[PATH_MAX], env_path[PATH_MAX];
    snprintf(program, sizeof program, "%s%s", dest, argv[0]);
    argv[0] = program;
    snprintf(env_path, sizeof env_path, "%s%s", dest, file + (file[0] == '-'));
    char *env_file = tc_slurp(env_path); /* the example: comments only */
    snprintf(u->log, sizeof u->log, "%s/serve.log", data);
    unlink(u->log);
    u->pid = fork();
    if (u->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (int i = 0; i < envc; i++) {
            char *eq = strchr(env[i], '=');
            *eq = '\0';
            char value[PATH_MAX];
            snprintf(value, sizeof value, "%s%s", strncmp(eq + 1, "/usr/", 5) ? "" : dest, eq + 1);
            setenv(env[i], value, 1);
        }
        for (char *line = strtok(env_file, "\n"); line; line = strtok(NULL, "\n")) {
            char *eq = strchr(line, '=');
            if (line[0] == '#' || !eq) continue;
            *eq = '\0';
            setenv(line, eq + 1, 1);
        }
        setenv("VULTUS_DATA", data, 1);
        setenv("VULTUS_LISTEN", "127.0.0.1:0", 1);
        if (notify)
            setenv("NOTIFY_SOCKET", notify, 1);
        else
            unsetenv("NOTIFY_SOCKET");
        if (chdir(data) != 0) _exit(126);
        int fd = open(u->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    free(env_file);
    assert_true(u->pid > 0);
    /* The port, from the "listening" line (the port answers before the models are loaded). */
    u->port = 0;
    for (double end = tc_now_ms() + 60000; tc_now_ms() < end && !u->port; tc_sleep_ms(5)) {
        char *log;
        size_t len;
        if (tc_read_file(u->log, &log, &len) != 0) continue;
        const char *p = strstr(log, "\"msg\":\"listening\"");
        p = p ? strstr(p, "\"port\":") : NULL;
        if (p) u->port = atoi(p + 7);
        free(log);
        int status;
        if (waitpid(u->pid, &status, WNOHANG) == u->pid) fail_msg("vultus serve exited early");
    }
    assert_true(u->port > 0);
}

static int readyz(int port)
{
    tc_response r = {0};
    int status = tc_get(port, "/readyz", NULL, &r) == 0 ? r.status : -1;
    tc_response_free(&r);
    return status;
}

/* SIGTERM, then the exit status (within a minute). */
static int unit_stop(unit_run *u)
{
    kill(u->pid, SIGTERM);
    for (double end = tc_now_ms() + 60000; tc_now_ms() < end; tc_sleep_ms(10)) {
        int status;
        if (waitpid(u->pid, &status, WNOHANG) == u->pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    kill(u->pid, SIGKILL);
    waitpid(u->pid, NULL, 0);
    return -1;
}

static void test_execstart_serves(void **state)
{
    (void)state;
    NEED_INSTALL();
    char data[256];
    assert_int_equal(tc_temp_dir(data), 0);
    unit_run u;
    unit_start(&u, data, NULL);
    int status = -1;
    for (double end = tc_now_ms() + 60000; tc_now_ms() < end && status != 200; tc_sleep_ms(10))
        status = readyz(u.port);
    assert_int_equal(status, 200);
    char *log = tc_slurp(u.log); /* the installed models, not the checkout's */
    assert_non_null(strstr(log, dest));
    free(log);
    assert_int_equal(unit_stop(&u), 0);
    tc_rm_rf(data);
}

/* A datagram socket bound at name (a path, or "@abstract"); returns its descriptor. */
static int notify_bind(const char *name)
{
    struct sockaddr_un a;
    socklen_t len;
    assert_int_equal(http_notify_address(name, &a, &len), 0);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, len), 0);
    return fd;
}

/* The next datagram within timeout_ms into buf (NUL-terminated); its length or -1. */
static int notify_recv(int fd, char *buf, size_t cap, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) != 1) return -1;
    ssize_t n = recv(fd, buf, cap - 1, 0);
    if (n < 0) return -1;
    buf[n] = '\0';
    return (int)n;
}

/* The protocol against the real server, at a path or an abstract name. */
static void notify_protocol(const char *name, const char *data)
{
    int fd = notify_bind(name);
    unit_run u;
    unit_start(&u, data, name);
    char msg[512];
    int seen_503 = 0;
    /* Poll /readyz until READY=1 arrives: it must be 200 from then on, never before READY.
     * (READY may come up to one main-loop tick, 50 ms, after /readyz turned 200.) */
    for (double end = tc_now_ms() + 60000;; tc_sleep_ms(2)) {
        assert_true(tc_now_ms() < end);
        if (notify_recv(fd, msg, sizeof msg, 0) > 0) break;
        if (readyz(u.port) == 503) seen_503++;
    }
    assert_non_null(strstr(msg, "READY=1"));
    assert_int_equal(readyz(u.port), 200);
    assert_non_null(strstr(msg, "\nSTATUS=ready: 0 faces in 1 collection"));
    print_message("%s: READY after %d readyz 503s: %s\n", name, seen_503, strchr(msg, '\n') + 1);
    /* Nothing else until SIGTERM: then STOPPING=1, and exit 0. */
    assert_int_equal(notify_recv(fd, msg, sizeof msg, 100), -1);
    kill(u.pid, SIGTERM);
    assert_true(notify_recv(fd, msg, sizeof msg, 10000) > 0);
    assert_non_null(strstr(msg, "STOPPING=1\nSTATUS=draining: "));
    assert_int_equal(unit_stop(&u), 0);
    close(fd);
}

static void test_notify_protocol(void **state)
{
    (void)state;
    NEED_INSTALL();
    char data[256];
    assert_int_equal(tc_temp_dir(data), 0);
    /* One collection in the store, so STATUS= has a count to show. */
    char out[4096];
    const char *args[] = {"gallery", "--data", data, "create", "desk", NULL};
    assert_int_equal(tc_run_vultus(out, sizeof out, args), 0);
    char path[300], abstract[64];
    snprintf(path, sizeof path, "%s/notify.sock", root);
    notify_protocol(path, data);
    snprintf(abstract, sizeof abstract, "@vultus-test-notify-%d", (int)getpid());
    notify_protocol(abstract, data);

    /* A socket that is gone (the manager restarted, a stale variable): serves as usual. */
    unit_run u;
    unit_start(&u, data, "/nonexistent/vultus-notify.sock");
    int status = -1;
    for (double end = tc_now_ms() + 60000; tc_now_ms() < end && status != 200; tc_sleep_ms(10))
        status = readyz(u.port);
    assert_int_equal(status, 200);
    tc_response r = {0};
    assert_int_equal(tc_get(u.port, "/v1/collections", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
    assert_int_equal(unit_stop(&u), 0);
    tc_rm_rf(data);
}

/* ---- the backup --------------------------------------------------------------------------- */

static void touch(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* The names in dir, sorted, one per line, into out. */
static void listing(const char *dir, char *out, size_t cap)
{
    char cmd[PATH_MAX];
    snprintf(cmd, sizeof cmd, "ls -A '%s'", dir);
    const char *argv[] = {"sh", "-c", cmd, NULL};
    assert_int_equal(run(argv, NULL, out, cap), 0);
}

/* vultus-backup.service's ExecStart under DESTDIR, with VULTUS_DATA, BACKUP_DIR and
 * BACKUP_KEEP; output in out. */
static int backup_run(const char *data, const char *dir, const char *keep, char *out, size_t cap)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/usr/lib/systemd/system/vultus-backup.service", dest);
    char *unit = tc_slurp(path);
    char exec[512], program[PATH_MAX];
    assert_non_null(unit_value(unit, "ExecStart", exec, sizeof exec));
    assert_non_null(strstr(unit, "BACKUP_KEEP=7")); /* the default the README states */
    free(unit);
    snprintf(program, sizeof program, "%s%s", dest, exec);
    static char e_data[PATH_MAX], e_dir[PATH_MAX], e_keep[64];
    snprintf(e_data, sizeof e_data, "VULTUS_DATA=%s", data);
    snprintf(e_dir, sizeof e_dir, "BACKUP_DIR=%s", dir);
    snprintf(e_keep, sizeof e_keep, "BACKUP_KEEP=%s", keep);
    const char *env[] = {e_data, e_dir, e_keep, NULL};
    const char *argv[] = {program, NULL};
    return run(argv, env, out, cap);
}

static void test_backup_keeps_newest_and_nothing_else(void **state)
{
    (void)state;
    NEED_INSTALL();
    char data[256], dir[300];
    assert_int_equal(tc_temp_dir(data), 0);
    char out[8192];
    const char *args[] = {"gallery", "--data", data, "create", "desk", NULL};
    assert_int_equal(tc_run_vultus(out, sizeof out, args), 0);
    snprintf(dir, sizeof dir, "%s/backups", data);
    assert_int_equal(mkdir(dir, 0750), 0);
    /* Five of its old backups, and what it must leave alone: other names, a folder and a link
     * of its names' form. */
    const char *old[] = {"vultus-20260101T030000Z.db", "vultus-20260102T030000Z.db",
                         "vultus-20260103T030000Z.db", "vultus-20260104T030000Z.db",
                         "vultus-20260105T030000Z.db"};
    for (int i = 0; i < 5; i++)
        touch(dir, old[i], "an old backup");
    touch(dir, "notes.txt", "mine");
    touch(dir, "vultus-before-upgrade.db", "a copy by hand");
    touch(dir, "vultus-20260101T030000Z.db.bak", "a copy by hand");
    char sub[PATH_MAX], link[PATH_MAX];
    snprintf(sub, sizeof sub, "%s/vultus-20250101T030000Z.db", dir);
    assert_int_equal(mkdir(sub, 0750), 0);
    snprintf(link, sizeof link, "%s/vultus-20240101T030000Z.db", dir);
    assert_int_equal(symlink("notes.txt", link), 0);

    /* A failed backup (BACKUP_KEEP invalid; then a data folder without a store): non-zero,
     * nothing removed. */
    char before[4096], after[4096];
    listing(dir, before, sizeof before);
    assert_int_equal(backup_run(data, dir, "0", out, sizeof out), 2);
    listing(dir, after, sizeof after);
    assert_string_equal(before, after);
    char empty[300];
    snprintf(empty, sizeof empty, "%s/no-store", data);
    assert_int_equal(mkdir(empty, 0750), 0);
    int rc = backup_run(empty, dir, "1", out, sizeof out);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "nothing removed"));
    listing(dir, after, sizeof after);
    assert_string_equal(before, after);

    /* A good one with BACKUP_KEEP=3: it and the two newest old ones stay. */
    rc = backup_run(data, dir, "3", out, sizeof out);
    if (rc != 0) fail_msg("vultus-backup: exit %d\n%s", rc, out);
    assert_non_null(strstr(out, "\"integrity\":\"ok\""));
    listing(dir, after, sizeof after);
    /* The new one's name, from the script's last line: "DIR/NAME written; ...". */
    const char *written = strstr(out, " written;");
    assert_non_null(written);
    const char *start = written;
    while (start > out && start[-1] != '/')
        start--;
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)(written - start), start);
    assert_int_equal(strlen(name), strlen("vultus-20260101T030000Z.db"));
    assert_true(strcmp(name, "vultus-20260105T030000Z.db") > 0); /* today's, after the old */
    assert_non_null(strstr(out, "3 kept, 3 removed"));
    char expect[4096];
    snprintf(expect, sizeof expect,
             "notes.txt\nvultus-20240101T030000Z.db\nvultus-20250101T030000Z.db\n"
             "vultus-20260101T030000Z.db.bak\nvultus-20260104T030000Z.db\n"
             "vultus-20260105T030000Z.db\n%s\nvultus-before-upgrade.db\n",
             name);
    assert_string_equal(after, expect);
    /* The backup is a store vultus reads: the collection is in it. */
    char copy[PATH_MAX], restored[300];
    snprintf(restored, sizeof restored, "%s/restored", data);
    assert_int_equal(mkdir(restored, 0750), 0);
    snprintf(copy, sizeof copy, "cp '%s/%s' '%s/vultus.db'", dir, name, restored);
    const char *cp[] = {"sh", "-c", copy, NULL};
    assert_int_equal(run(cp, NULL, out, sizeof out), 0);
    const char *list[] = {"gallery", "--data", restored, "list", NULL};
    assert_int_equal(tc_run_vultus(out, sizeof out, list), 0);
    assert_non_null(strstr(out, "\"desk\""));
    tc_rm_rf(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_notify_messages),
        cmocka_unit_test(test_install_layout_and_uninstall),
        cmocka_unit_test(test_units_verify),
        cmocka_unit_test(test_execstart_serves),
        cmocka_unit_test(test_notify_protocol),
        cmocka_unit_test(test_backup_keeps_newest_and_nothing_else),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
