/*
 * The set-up that `make run` and `make test` do on a fresh or half-broken machine, one cmocka
 * test per case of tests/setup/cases.sh (the checks are there, in shell, beside the scripts
 * they drive): tools/fetch-models against a tampered tarball, a killed extraction, a damaged
 * models/, no registry, no npm; tools/bootstrap when everything is installed, when apt-get
 * fails or is interrupted, and README's package lists; `make run` on a machine without
 * pkg-config yet; `vultus serve` on a port in use or an unwritable data folder; tests/ui/run
 * with a half-installed node_modules or without chromium. No case touches models/, data/,
 * apt or the network; each works on copies in a temporary folder and takes well under a
 * second or two.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* cases.sh's exit status for a case that cannot run here (the line before says why). */
#define CASE_SKIPPED 77

/* Runs `tests/setup/cases.sh NAME`, shows its output, and returns its exit status (-1 when
 * it did not exit normally). */
static int run_case_script(const char *name)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "tests/setup/cases.sh %s 2>&1 </dev/null", name);
    FILE *out = popen(cmd, "r");
    assert_non_null(out);
    char line[4096];
    while (fgets(line, sizeof(line), out))
        fputs(line, stdout);
    fflush(stdout);
    int status = pclose(out);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void run_case(void **state)
{
    const char *name = *state;
    int rc = run_case_script(name);
    if (rc == CASE_SKIPPED)
        skip();
    if (rc != 0)
        fail_msg("tests/setup/cases.sh %s: exit status %d (its output above)", name, rc);
}

/* The port-in-use case needs a port that is certainly taken: this process listens on one
 * (any free loopback port) while the case runs. */
static void run_case_busy_port(void **state)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(fd, 1), 0);
    socklen_t len = sizeof(addr);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    char port[16];
    snprintf(port, sizeof(port), "%u", (unsigned)ntohs(addr.sin_port));
    setenv("SETUP_BUSY_PORT", port, 1);
    run_case(state);
    unsetenv("SETUP_BUSY_PORT");
    close(fd);
}

#define CASE(name) {#name, run_case, NULL, NULL, (void *)#name}

int main(int argc, char **argv)
{
    /* The build folder is where this program is: BUILD/tests/setup/test_setup. */
    const char *suffix = "/tests/setup/test_setup";
    char build[1024] = "build";
    size_t n = strlen(argv[0]), ns = strlen(suffix);
    if (argc > 0 && n > ns && n - ns < sizeof(build) && strcmp(argv[0] + n - ns, suffix) == 0)
        snprintf(build, sizeof(build), "%.*s", (int)(n - ns), argv[0]);
    setenv("SETUP_BUILD", build, 0);

    const struct CMUnitTest tests[] = {
        CASE(fetch_fresh_then_quick),
        CASE(fetch_relative_models_dir),
        CASE(fetch_tampered_download),
        CASE(fetch_tampered_cache),
        CASE(fetch_from_cache_without_npm),
        CASE(fetch_registry_unreachable),
        CASE(fetch_killed_during_extraction),
        CASE(fetch_killed_during_swap),
        CASE(fetch_damaged_file),
        CASE(fetch_missing_checksum),
        CASE(fetch_pins_documented),
        CASE(bootstrap_installed),
        CASE(bootstrap_missing),
        CASE(bootstrap_apt_fails),
        CASE(bootstrap_interrupted),
        CASE(bootstrap_readme_lists),
        CASE(make_run_fresh_machine),
        {"serve_port_in_use", run_case_busy_port, NULL, NULL, (void *)"serve_port_in_use"},
        CASE(serve_data_unwritable),
        CASE(ui_half_installed),
        CASE(ui_no_chromium),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
