/*
 * libFuzzer target for the server's front door (src/http/server.c, as libmicrohttpd hands it
 * the request): the request line and headers, X-Request-Id, Content-Type, Idempotency-Key,
 * Content-Length, Authorization (API key tokens, scopes, a key limited to one collection, the
 * rate limit), X-Request-Deadline-Ms, the body read and its limit, the operations routes and
 * the web page, and every error answer on the way. The input is sent as is over one loopback
 * connection to a real server in this process (a keep-alive connection may carry several
 * requests), after "@R@" and "@A@" are replaced by two real API keys (read, limited to
 * collection "people"; admin), so the fuzzer reaches past authentication.
 *
 * The server has no models (an empty model folder), so it never becomes ready: routes under
 * /v1 stop at 503 once authenticated, which keeps workers out of it; fuzz_api and
 * fuzz_request cover what the handlers make of a request. No answer of the service may be a
 * 5xx other than that 503 (a 500 from a client's bytes is a bug).
 * Build and run: make fuzz; seeds in tests/fuzz/corpus/server/.
 */
#include "base/base.h"
#include "http/http.h"
#include "http/internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* How long an answer may pause before it counts as ended (see LLVMFuzzerTestOneInput). */
#define IDLE_MS 250

static http_server *server;
static int port;
static char dir[64], read_key[HTTP_KEY_MAX], admin_key[HTTP_KEY_MAX];

static void remove_file(const char *name)
{
    char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    unlink(p);
}

static void cleanup(void)
{
    http_server_destroy(server);
    remove_file("data/vultus.db");
    remove_file("data/vultus.db-wal");
    remove_file("data/vultus.db-shm");
    char p[128];
    snprintf(p, sizeof p, "%s/data", dir);
    rmdir(p);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    base_log_level = BASE_LOG_OFF;
    snprintf(dir, sizeof dir, "/tmp/vultus-fuzz-server-XXXXXX");
    if (!mkdtemp(dir)) abort();
    char data[96], models[96];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(models, sizeof models, "%s/no-models", dir);
    http_key_info info;
    if (http_keys_create(data, HTTP_SCOPE_READ, "people", "r", read_key, &info) != 0 ||
        http_keys_create(data, HTTP_SCOPE_ADMIN, NULL, "a", admin_key, &info) != 0)
        abort();
    http_config cfg;
    http_config_defaults(&cfg);
    if (http_config_set(&cfg, "listen", "127.0.0.1:0") || http_config_set(&cfg, "data", data) ||
        http_config_set(&cfg, "models", models) || http_config_set(&cfg, "workers", "1") ||
        http_config_set(&cfg, "max-body-bytes", "4096") ||
        http_config_set(&cfg, "rate-limit", "1000") || http_config_set(&cfg, "rate-burst", "50"))
        abort();
    if (http_server_create(&cfg, &server) != 0) abort();
    port = http_server_port(server);
    /* The store (with the API keys) loads in the background: until it is in, every /v1 request
     * stops at 503 before authentication, so the first inputs would reach less than later
     * ones. The models never load (none given). */
    for (int waited_ms = 0; !atomic_load(&server->gallery_loaded); waited_ms += 5) {
        if (waited_ms > 30000) abort();
        usleep(5000);
    }
    atexit(cleanup);
    return 0;
}

/* The input with the key placeholders replaced, in a new buffer. */
static char *with_keys(const uint8_t *data, size_t size, size_t *len)
{
    size_t cap = size + 1, n = 0;
    for (size_t i = 0; i + 3 <= size; i++)
        if (data[i] == '@' && data[i + 2] == '@' && (data[i + 1] == 'R' || data[i + 1] == 'A'))
            cap += HTTP_KEY_MAX;
    char *out = malloc(cap);
    if (!out) return NULL;
    for (size_t i = 0; i < size; i++) {
        if (i + 3 <= size && data[i] == '@' && data[i + 2] == '@' &&
            (data[i + 1] == 'R' || data[i + 1] == 'A')) {
            const char *key = data[i + 1] == 'R' ? read_key : admin_key;
            memcpy(out + n, key, strlen(key));
            n += strlen(key);
            i += 2;
        } else {
            out[n++] = (char)data[i];
        }
    }
    *len = n;
    return out;
}

/* Aborts on an answer of the service (its headers carry X-Request-Id) with a 5xx status other
 * than 503. libmicrohttpd answers some requests itself (505 for HTTP/0.9, 431 for huge
 * headers, ...): those have no X-Request-Id and are its business. */
static void check_statuses(const char *resp, size_t len)
{
    for (size_t i = 0; i + 12 <= len; i++) {
        if ((i > 0 && resp[i - 1] != '\n') || memcmp(resp + i, "HTTP/1.", 7) != 0 ||
            resp[i + 8] != ' ')
            continue;
        const char *code = resp + i + 9;
        if (code[0] != '5' || memcmp(code, "503", 3) == 0) continue;
        const char *head_end = memmem(resp + i, len - i, "\r\n\r\n", 4);
        size_t head_len = head_end ? (size_t)(head_end - (resp + i)) : len - i;
        if (!memmem(resp + i, head_len, "\r\nX-Request-Id:", 15)) continue;
        fprintf(stderr, "fuzz_server: answer %.*s\n", (int)(len - i < 400 ? len - i : 400),
                resp + i);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len = 0;
    char *req = with_keys(data, size, &len);
    if (!req) return 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) abort();
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) abort();
    /* The whole input, then one more request that asks the server to close the connection:
     * libmicrohttpd keeps an idle keep-alive connection open after the client's half-close,
     * so the end of input alone does not end the answer. Where the input leaves a request
     * unfinished (a body shorter than its Content-Length), that request swallows this one and
     * the server waits for more: the answer then ends after IDLE_MS without a byte. The
     * server may close early (an error answered before the body), so a failed send is fine. */
    static const char last[] = "GET /healthz HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n";
    for (size_t off = 0; off < len;) {
        ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (w <= 0) break;
        off += (size_t)w;
    }
    (void)!send(fd, last, sizeof last - 1, MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    free(req);

    size_t cap = 1 << 16, got = 0;
    char *resp = malloc(cap);
    if (!resp) abort();
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, IDLE_MS) == 0) break;
        if (got == cap) {
            char *grown = realloc(resp, 2 * cap);
            if (!grown) abort();
            resp = grown;
            cap *= 2;
        }
        ssize_t r = recv(fd, resp + got, cap - got, 0);
        if (r <= 0) break;
        got += (size_t)r;
    }
    check_statuses(resp, got);
    /* A reset, not a close: a connection still waiting for a body then ends on the server
     * too, instead of holding one of its connections until the timeout. */
    struct linger reset = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    close(fd);
    free(resp);
    return 0;
}
