/*
 * The service's parsers of untrusted input and its small parts, without a server: SHA-256
 * (NIST vectors), base64, percent-decoding and query strings, multipart/form-data (valid
 * bodies, every truncation, limits), the token bucket of the rate limit, and the
 * configuration table (flags and VULTUS_* variables).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "http/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- SHA-256 ---------------------------------------------------------------------------- */

static void hex_of(const void *data, size_t len, char out[65])
{
    uint8_t d[32];
    http_sha256_digest(data, len, d);
    http_hex(d, 32, out);
}

static void test_sha256_vectors(void **state)
{
    (void)state;
    char hex[65];
    hex_of("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    hex_of("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hex_of(m448, strlen(m448), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* One million 'a', fed in uneven pieces to exercise the block buffering. */
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    http_sha256 s;
    http_sha256_init(&s);
    size_t off = 0, step = 1;
    while (off < 1000000) {
        size_t n = step < 1000000 - off ? step : 1000000 - off;
        http_sha256_update(&s, a + off, n);
        off += n;
        step = step * 7 % 997 + 1;
    }
    uint8_t d[32];
    http_sha256_final(&s, d);
    http_hex(d, 32, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}

/* ---- base64, percent-decoding, query strings -------------------------------------------- */

static void expect_b64(const char *in, const char *out)
{
    uint8_t *bytes = NULL;
    size_t n = 0;
    int rc = http_base64_decode(in, strlen(in), 1 << 20, &bytes, &n);
    if (rc) fail_msg("base64 '%s': %s", in, base_error_message());
    assert_int_equal(n, strlen(out));
    assert_memory_equal(bytes, out, n);
    free(bytes);
}

static void expect_b64_error(const char *in, int code)
{
    uint8_t *bytes = (uint8_t *)1;
    size_t n = 1;
    assert_int_equal(http_base64_decode(in, strlen(in), 16, &bytes, &n), code);
    assert_null(bytes);
    assert_int_equal(n, 0);
}

static void test_base64(void **state)
{
    (void)state;
    expect_b64("", "");
    expect_b64("Zg==", "f");
    expect_b64("Zm8=", "fo");
    expect_b64("Zm9v", "foo");
    expect_b64("Zm9vYg==", "foob");
    expect_b64("Zm9vYg", "foob");
    expect_b64("Zm9vYmE=", "fooba");
    expect_b64("Zm9vYmFy", "foobar");
    expect_b64("Zm9v\r\nYmFy\n", "foobar");
    expect_b64("data:image/jpeg;base64,Zm9vYmFy", "foobar");
    expect_b64("-_8=", "\xfb\xff");
    expect_b64("+/8=", "\xfb\xff");
    expect_b64_error("Z", BASE_ERR_FORMAT);
    expect_b64_error("Zm9v!", BASE_ERR_FORMAT);
    expect_b64_error("Zg=a", BASE_ERR_FORMAT);
    expect_b64_error("Zg===", BASE_ERR_FORMAT);
    expect_b64_error("Zm9=v", BASE_ERR_FORMAT);
    expect_b64_error("data:image/png,Zm9v", BASE_ERR_FORMAT);
    expect_b64_error("Zm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFy", BASE_ERR_LIMIT); /* 24 bytes > 16 */

    /* Round trips through the URL-safe encoder, every length up to 100. */
    uint8_t raw[100];
    for (int i = 0; i < 100; i++)
        raw[i] = (uint8_t)(i * 37 + 11);
    for (size_t len = 0; len <= 100; len++) {
        char text[200];
        size_t n = http_base64url_encode(raw, len, text);
        assert_int_equal(n, strlen(text));
        uint8_t *back = NULL;
        size_t back_len = 0;
        assert_int_equal(http_base64_decode(text, n, 100, &back, &back_len), 0);
        assert_int_equal(back_len, len);
        if (len) assert_memory_equal(back, raw, len);
        free(back);
    }
}

static void test_percent_and_query(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(http_percent_decode("a%20b%2Fc", 9, 0, out, sizeof out), 0);
    assert_string_equal(out, "a b/c");
    assert_int_equal(http_percent_decode("a+b", 3, 1, out, sizeof out), 0);
    assert_string_equal(out, "a b");
    assert_int_equal(http_percent_decode("a+b", 3, 0, out, sizeof out), 0);
    assert_string_equal(out, "a+b");
    assert_int_equal(http_percent_decode("%zz", 3, 0, out, sizeof out), BASE_ERR_FORMAT);
    assert_int_equal(http_percent_decode("%2", 2, 0, out, sizeof out), BASE_ERR_FORMAT);
    assert_int_equal(http_percent_decode("%", 1, 0, out, sizeof out), BASE_ERR_FORMAT);
    assert_int_equal(http_percent_decode("a%00", 4, 0, out, sizeof out), BASE_ERR_FORMAT);
    assert_int_equal(http_percent_decode("0123456789abcdef", 16, 0, out, sizeof out),
                     BASE_ERR_LIMIT);

    assert_int_equal(http_query_get("k=5&embedding=true&x=a%20b", "embedding", out, sizeof out), 1);
    assert_string_equal(out, "true");
    assert_int_equal(http_query_get("k=5&embedding=true&x=a%20b", "x", out, sizeof out), 1);
    assert_string_equal(out, "a b");
    assert_int_equal(http_query_get("k=5&kk=6", "k", out, sizeof out), 1);
    assert_string_equal(out, "5");
    assert_int_equal(http_query_get("flag&k=1", "flag", out, sizeof out), 1);
    assert_string_equal(out, "");
    assert_int_equal(http_query_get("k=5", "missing", out, sizeof out), 0);
    assert_int_equal(http_query_get("", "k", out, sizeof out), 0);
    assert_true(http_query_get("k=%zz", "k", out, sizeof out) < 0);
}

/* ---- multipart -------------------------------------------------------------------------- */

#define B "XyZ-boundary"
static const char form[] =
    "preamble to ignore\r\n"
    "--" B "\r\n"
    "Content-Disposition: form-data; name=\"subject\"\r\n"
    "\r\n"
    "alice\r\n"
    "--" B "\r\n"
    "Content-Disposition: form-data; name=\"image\"; filename=\"a;b.jpg\"\r\n"
    "Content-Type: image/jpeg\r\n"
    "\r\n"
    "\xff\xd8\xff\r\n--not-the-boundary\r\n\x00\x01"
    "\r\n"
    "--" B "--\r\n"
    "epilogue";

static void test_multipart_valid(void **state)
{
    (void)state;
    char boundary[HTTP_BOUNDARY_MAX + 1];
    assert_int_equal(http_multipart_boundary("multipart/form-data; boundary=" B, boundary), 0);
    assert_string_equal(boundary, B);
    assert_int_equal(
        http_multipart_boundary("multipart/form-data; charset=utf-8; boundary=\"" B "\"", boundary),
        0);
    assert_string_equal(boundary, B);
    assert_int_equal(http_multipart_boundary("multipart/form-data", boundary), BASE_ERR_FORMAT);
    assert_int_equal(http_multipart_boundary("multipart/form-data; boundary=", boundary),
                     BASE_ERR_FORMAT);
    assert_int_equal(http_multipart_boundary("multipart/form-data; boundary=a\x01", boundary),
                     BASE_ERR_FORMAT);

    http_part parts[HTTP_MULTIPART_MAX_PARTS];
    int n = 0;
    size_t len = sizeof form - 1;
    assert_int_equal(http_multipart_parse((const uint8_t *)form, len, B, parts, 16, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(parts[0].name.n, 7);
    assert_memory_equal(parts[0].name.p, "subject", 7);
    assert_int_equal(parts[0].len, 5);
    assert_memory_equal(parts[0].data, "alice", 5);
    assert_memory_equal(parts[1].name.p, "image", 5);
    assert_int_equal(parts[1].filename.n, 7);
    assert_memory_equal(parts[1].filename.p, "a;b.jpg", 7);
    assert_memory_equal(parts[1].content_type.p, "image/jpeg", 10);
    const char data[] = "\xff\xd8\xff\r\n--not-the-boundary\r\n\x00\x01";
    assert_int_equal(parts[1].len, sizeof data - 1);
    assert_memory_equal(parts[1].data, data, sizeof data - 1);

    /* No preamble, and an empty form. */
    const char *tight =
        "--" B "\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--" B "--";
    assert_int_equal(http_multipart_parse((const uint8_t *)tight, strlen(tight), B, parts, 16, &n),
                     0);
    assert_int_equal(n, 1);
    const char *empty = "--" B "--\r\n";
    assert_int_equal(http_multipart_parse((const uint8_t *)empty, strlen(empty), B, parts, 16, &n),
                     0);
    assert_int_equal(n, 0);
}

static void test_multipart_malformed(void **state)
{
    (void)state;
    http_part parts[HTTP_MULTIPART_MAX_PARTS];
    int n = 0;
    /* Every truncation of a valid body fails cleanly (the closing delimiter is missing), and
     * none reads past its end (ASan checks: each truncation is its own allocation). */
    size_t full = sizeof form - 1;
    const char *close = memmem(form, full, "--" B "--", strlen("--" B "--"));
    assert_non_null(close);
    size_t closing = (size_t)(close - form) + strlen("--" B "--");
    for (size_t len = 0; len < closing; len++) {
        uint8_t *copy = malloc(len ? len : 1);
        memcpy(copy, form, len);
        int rc = http_multipart_parse(copy, len, B, parts, 16, &n);
        if (rc == 0) fail_msg("truncation at %zu of %zu parsed", len, full);
        free(copy);
    }
    const char *no_name = "--" B "\r\nContent-Disposition: form-data\r\n\r\nx\r\n--" B "--";
    assert_int_equal(
        http_multipart_parse((const uint8_t *)no_name, strlen(no_name), B, parts, 16, &n),
        BASE_ERR_FORMAT);
    const char *no_headers = "--" B "\r\n\r\nx\r\n--" B "--";
    assert_int_equal(
        http_multipart_parse((const uint8_t *)no_headers, strlen(no_headers), B, parts, 16, &n),
        BASE_ERR_FORMAT);
    const char *not_form =
        "--" B "\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--" B "--";
    assert_int_equal(
        http_multipart_parse((const uint8_t *)not_form, strlen(not_form), B, parts, 16, &n),
        BASE_ERR_FORMAT);
    const char *no_colon = "--" B "\r\nContent-Disposition form-data; name=a\r\n\r\nx\r\n--" B "--";
    assert_int_equal(
        http_multipart_parse((const uint8_t *)no_colon, strlen(no_colon), B, parts, 16, &n),
        BASE_ERR_FORMAT);
    const char *garbage = "no boundary anywhere";
    assert_int_equal(
        http_multipart_parse((const uint8_t *)garbage, strlen(garbage), B, parts, 16, &n),
        BASE_ERR_FORMAT);

    /* Too many parts. */
    char *many = malloc(65536);
    size_t len = 0;
    for (int i = 0; i < 17; i++)
        len += (size_t)sprintf(
            many + len, "--" B "\r\nContent-Disposition: form-data; name=\"f%d\"\r\n\r\nv\r\n", i);
    len += (size_t)sprintf(many + len, "--" B "--\r\n");
    assert_int_equal(http_multipart_parse((uint8_t *)many, len, B, parts, 16, &n), BASE_ERR_LIMIT);
    assert_int_equal(http_multipart_parse((uint8_t *)many, len, B, parts, 3, &n), BASE_ERR_LIMIT);

    /* Part headers over 8 KiB. */
    len = (size_t)sprintf(many, "--" B "\r\nContent-Disposition: form-data; name=\"a\"\r\nX-Pad: ");
    memset(many + len, 'p', 9000);
    len += 9000;
    len += (size_t)sprintf(many + len, "\r\n\r\nv\r\n--" B "--\r\n");
    assert_int_equal(http_multipart_parse((uint8_t *)many, len, B, parts, 16, &n), BASE_ERR_FORMAT);
    free(many);
}

/* ---- token bucket ----------------------------------------------------------------------- */

static void test_bucket(void **state)
{
    (void)state;
    http_bucket b = {0};
    uint64_t t = 1000000000ull;
    assert_true(http_bucket_take(&b, 2, 2, t) == 0);
    assert_true(http_bucket_take(&b, 2, 2, t) == 0);
    double wait = http_bucket_take(&b, 2, 2, t);
    assert_true(wait > 0.49 && wait < 0.51);
    assert_true(http_bucket_take(&b, 2, 2, t + 250000000ull) > 0); /* half a token */
    assert_true(http_bucket_take(&b, 2, 2, t + 500000000ull) == 0);
    /* Refills up to the burst only. */
    assert_true(http_bucket_take(&b, 2, 2, t + 100000000000ull) == 0);
    assert_true(http_bucket_take(&b, 2, 2, t + 100000000000ull) == 0);
    assert_true(http_bucket_take(&b, 2, 2, t + 100000000000ull) > 0);
    /* Rate 0: unlimited. */
    http_bucket u = {0};
    for (int i = 0; i < 100; i++)
        assert_true(http_bucket_take(&u, 0, 0, t) == 0);
}

/* ---- configuration ---------------------------------------------------------------------- */

static void test_config(void **state)
{
    (void)state;
    http_config c;
    http_config_defaults(&c);
    assert_string_equal(c.listen, ":7860");
    assert_string_equal(c.data_dir, "data");
    assert_string_equal(c.models_dir, "models");
    assert_int_equal(c.deadline_ms, 5000);
    assert_int_equal(c.queue, 64);
    assert_int_equal(c.workers, 0);
    assert_int_equal(http_config_set(&c, "queue", "3"), 0);
    assert_int_equal(c.queue, 3);
    assert_int_equal(http_config_set(&c, "queue", "-1"), BASE_ERR_INVALID);
    assert_int_equal(http_config_set(&c, "queue", "3x"), BASE_ERR_INVALID);
    assert_int_equal(http_config_set(&c, "listen", "127.0.0.1:0"), 0);
    assert_int_equal(http_config_set(&c, "listen", "[::1]:8080"), 0);
    assert_int_equal(http_config_set(&c, "listen", "nowhere"), BASE_ERR_INVALID);
    assert_int_equal(http_config_set(&c, "listen", ":70000"), BASE_ERR_INVALID);
    assert_int_equal(http_config_set(&c, "rate-limit", "2.5"), 0);
    assert_true(c.rate_limit == 2.5);
    assert_int_equal(http_config_set(&c, "rate-limit", "nan"), BASE_ERR_INVALID);
    assert_int_equal(http_config_set(&c, "no-such-option", "1"), BASE_ERR_INVALID);
    /* Every option of the table is settable from its default and named VULTUS_<NAME>. */
    for (int i = 0; i < http_option_count; i++) {
        assert_int_equal(http_config_set(&c, http_options[i].name, http_options[i].default_text),
                         0);
        char env[64] = "VULTUS_";
        for (const char *p = http_options[i].name; *p; p++) {
            size_t l = strlen(env);
            env[l] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
            env[l + 1] = '\0';
        }
        assert_string_equal(env, http_options[i].env);
    }
    setenv("VULTUS_QUEUE", "7", 1);
    setenv("VULTUS_DEADLINE_MS", "250", 1);
    http_config_defaults(&c);
    assert_int_equal(http_config_from_env(&c), 0);
    assert_int_equal(c.queue, 7);
    assert_int_equal(c.deadline_ms, 250);
    setenv("VULTUS_WORKERS", "many", 1);
    assert_int_equal(http_config_from_env(&c), BASE_ERR_INVALID);
    assert_non_null(strstr(base_error_message(), "VULTUS_WORKERS=many"));
    unsetenv("VULTUS_QUEUE");
    unsetenv("VULTUS_DEADLINE_MS");
    unsetenv("VULTUS_WORKERS");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_percent_and_query),
        cmocka_unit_test(test_multipart_valid),
        cmocka_unit_test(test_multipart_malformed),
        cmocka_unit_test(test_bucket),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
