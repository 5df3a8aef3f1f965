/*
 * base_log_write's JSON lines (base_log_json, what `vultus serve` writes): whatever a message
 * holds (quotes, backslashes, newlines and other control characters, UTF-8, bytes that are
 * not UTF-8, more than fits), each call is one line that parses as a JSON object whose "msg"
 * is the message (invalid bytes as U+FFFD, a long one cut short at a character boundary).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_json_lines(void **state)
{
    (void)state;
    char path[] = "/tmp/vultus-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    assert_int_equal(dup2(fd, 2), 2);

    char long_msg[2000];
    memset(long_msg, 'x', sizeof long_msg - 1);
    long_msg[sizeof long_msg - 1] = '\0';
    memcpy(long_msg + 1000, "\xc3\xa9", 2); /* a two-byte character in the middle */
    static const struct {
        const char *msg, *expect; /* expect NULL: the message itself */
    } cases[] = {
        {"plain", NULL},
        {"a \"quoted\" path C:\\dir\\file", NULL},
        {"two\nlines\tand a bell \x07", NULL},
        {"caf\xc3\xa9 \xf0\x9f\x99\x82 \xe2\x82\xac", NULL}, /* é, an emoji, € */
        {"bad \xff byte, cut \xc3 and overlong \xc0\xaf",
         "bad \xef\xbf\xbd byte, cut \xef\xbf\xbd and overlong \xef\xbf\xbd\xef\xbf\xbd"},
        {"surrogate \xed\xa0\x80.", "surrogate \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd."},
    };
    base_log_json = 1;
    const int saved_level = base_log_level;
    base_log_level = BASE_LOG_DEBUG;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        LOG_WARN("%s", cases[i].msg);
    LOG_INFO("%s", long_msg);
    base_log_json = 0;
    base_log_level = saved_level;
    fflush(stderr);
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
    close(fd);

    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[8192];
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        if (!o) fail_msg("line %zu is not JSON: %s: %s", n + 1, err.text, line);
        const char *msg = json_string_value(json_object_get(o, "msg"));
        assert_non_null(msg);
        assert_non_null(strstr(json_string_value(json_object_get(o, "src")), "test_log.c:"));
        assert_non_null(json_string_value(json_object_get(o, "ts")));
        if (n < sizeof cases / sizeof cases[0]) {
            assert_string_equal(json_string_value(json_object_get(o, "level")), "warn");
            assert_string_equal(msg, cases[n].expect ? cases[n].expect : cases[n].msg);
        } else {
            /* base_log_write keeps 1023 bytes of a message: all of it that fits, and the
             * character across byte 1000 whole */
            assert_string_equal(json_string_value(json_object_get(o, "level")), "info");
            assert_int_equal(strlen(msg), 1023);
            assert_memory_equal(msg + 1000, "\xc3\xa9", 2);
        }
        json_decref(o);
        n++;
    }
    fclose(f);
    unlink(path);
    assert_int_equal(n, sizeof cases / sizeof cases[0] + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
