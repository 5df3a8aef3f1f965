/*
 * The scale-out topology of DESIGN 7 on one machine: three `vultus serve` replicas of this
 * build on one PostgreSQL database (tools/pg-temp), behind nginx (Debian's package) as the
 * load balancer, configured as a Kubernetes ingress would be for this service: retry another
 * replica when one refuses the connection, drops it, or answers 503. Clients send analyses
 * and enrolments (each with its own Idempotency-Key, retried on 409, 502, 503 and connection
 * errors, as a client should) through nginx while, in turn:
 *
 *   - one replica crashes (SIGKILL) with requests in flight;
 *   - a rolling update: a new replica starts, nginx is reloaded with it in place of the
 *     crashed one, then another old replica gets SIGTERM and drains.
 *
 * Checked: no analysis fails (nginx's retries and the drain cover every one); every
 * enrolment ends acknowledged, each exactly once in the shared store, and every face a
 * replica acknowledged is there afterwards; the drained replica exits 0.
 *
 * Skips when the model pack, nginx (package nginx) or the PostgreSQL server binaries
 * (package postgresql) are absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "client.h"

#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>

#define NGINX "/usr/sbin/nginx"
#define REPLICAS 4 /* three at first, the fourth replaces the crashed one */
#define ANALYSTS 2
#define ENROLLERS 2
#define KEYS_PER_ENROLLER 64

static char pg_dir[128];
static char url[300];
static char work[256]; /* nginx's prefix: its configuration, logs and pid */
static int lb_port;
static pid_t nginx_pid;
static tc_server replica[REPLICAS];

static const char *const serve_args[] = {
    "--store",       url,     "--workers",         "1",     "--grace-ms", "300",
    "--deadline-ms", "30000", "--max-deadline-ms", "30000", NULL};

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

/*
 * nginx.conf with the replicas whose bit is set in `members`. Bodies and responses stay in
 * memory (no temporary files); the retry rules are those of a production ingress for this
 * service: another replica on a refused or dropped connection and on 503 (overloaded or
 * draining), also for POST (non_idempotent): analyses are pure, and enrolments carry an
 * Idempotency-Key.
 */
static int write_conf(unsigned members)
{
    char path[300];
    snprintf(path, sizeof path, "%s/nginx.conf", work);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f,
            "%s"
            "worker_processes 1;\n"
            "pid %s/nginx.pid;\n"
            "error_log %s/error.log info;\n"
            "events { worker_connections 512; }\n"
            "http {\n"
            "  access_log %s/access.log;\n"
            "  client_body_temp_path %s/body; proxy_temp_path %s/proxy;\n"
            "  fastcgi_temp_path %s/fastcgi; uwsgi_temp_path %s/uwsgi; scgi_temp_path %s/scgi;\n"
            "  client_max_body_size 16m; client_body_buffer_size 16m;\n"
            "  proxy_buffer_size 64k; proxy_buffers 8 64k;\n"
            "  upstream vultus {\n",
            geteuid() == 0 ? "user root;\n" : "", work, work, work, work, work, work, work, work);
    for (int i = 0; i < REPLICAS; i++)
        if (members & (1u << i)) fprintf(f, "    server 127.0.0.1:%d;\n", replica[i].port);
    fprintf(f,
            "    keepalive 16;\n"
            "  }\n"
            "  server {\n"
            "    listen 127.0.0.1:%d;\n"
            "    location / {\n"
            "      proxy_pass http://vultus;\n"
            /* The client's Host (127.0.0.1), not the upstream's name "vultus", which the
             * replicas (no API key) refuse as DNS rebinding would use it. */
            "      proxy_set_header Host $host;\n"
            "      proxy_http_version 1.1;\n"
            "      proxy_set_header Connection \"\";\n"
            "      proxy_next_upstream error timeout http_503 non_idempotent;\n"
            "      proxy_next_upstream_tries 4;\n"
            "      proxy_read_timeout 60s;\n"
            "    }\n"
            "  }\n"
            "}\n",
            lb_port);
    return fclose(f) == 0 ? 0 : -1;
}

static int nginx_start(void)
{
    char conf[300], err[300];
    snprintf(conf, sizeof conf, "%s/nginx.conf", work);
    snprintf(err, sizeof err, "%s/error.log", work);
    nginx_pid = fork();
    if (nginx_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) dup2(null, 0), dup2(null, 1), dup2(null, 2);
        execl(NGINX, NGINX, "-p", work, "-e", err, "-c", conf, "-g", "daemon off;", (char *)NULL);
        _exit(127);
    }
    if (nginx_pid < 0) return -1;
    for (int tries = 0; tries < 500; tries++) { /* up to 5 s */
        int fd = tc_connect(lb_port);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        if (waitpid(nginx_pid, NULL, WNOHANG) == nginx_pid) break;
        tc_sleep_ms(10);
    }
    fprintf(stderr, "nginx did not start; see %s\n", err);
    return -1;
}

static int start(void **state)
{
    (void)state;
    if (!tc_have_models() || access(NGINX, X_OK) != 0) return 0;
    int rc = tc_pg_start(pg_dir, sizeof pg_dir, url, sizeof url);
    if (rc == 77) return 0; /* url empty: the test skips */
    if (rc) return -1;
    for (int i = 0; i < 3; i++)
        if (tc_server_start(&replica[i], NULL, serve_args, 1) != 0) return -1;
    if (tc_temp_dir(work) != 0) return -1;
    lb_port = free_port();
    if (lb_port <= 0 || write_conf(0x7) != 0 || nginx_start() != 0) return -1;
    return 0;
}

static int stop(void **state)
{
    (void)state;
    int rc = 0;
    if (nginx_pid > 0) {
        kill(nginx_pid, SIGQUIT);
        waitpid(nginx_pid, NULL, 0);
    }
    for (int i = 0; i < REPLICAS; i++)
        if (replica[i].pid > 0 && tc_server_stop(&replica[i]) != 0) rc = -1;
    if (work[0]) tc_rm_rf(work);
    if (tc_pg_stop(pg_dir) != 0) rc = -1;
    return rc;
}

static char *sample(int i, size_t *len)
{
    char path[64], *data = NULL;
    snprintf(path, sizeof path, "models/samples/sample%d.jpg", 1 + i % 6);
    if (tc_read_file(path, &data, len) != 0) fail_msg("cannot read %s", path);
    return data;
}

static atomic_int stopping;

struct analyst {
    int id;
    int ok;
    int failed;
    char failure[300]; /* the first failure */
};

static void *analyst_main(void *arg)
{
    struct analyst *a = arg;
    for (int i = 0; !atomic_load(&stopping); i++) {
        size_t len;
        char *img = sample(a->id + i, &len);
        tc_response r;
        int rc = tc_request(lb_port, "POST", "/v1/analyze", "Content-Type: image/jpeg\r\n", img,
                            len, &r);
        if (rc == 0 && r.status == 200) {
            a->ok++;
        } else {
            if (!a->failed++)
                snprintf(a->failure, sizeof a->failure, "rc %d, status %d: %.200s", rc,
                         rc == 0 ? r.status : 0, rc == 0 && r.body ? r.body : "");
        }
        if (rc == 0) tc_response_free(&r);
        free(img);
    }
    return NULL;
}

struct enroller {
    int id;
    int sent;                         /* keys used */
    long long ids[KEYS_PER_ENROLLER]; /* the face id acknowledged for each, or 0 */
    int retries;                      /* answers other than 201 that were retried */
    char failure[300];                /* a key that never got its 201 */
};

static void *enroller_main(void *arg)
{
    struct enroller *e = arg;
    for (int i = 0; i < KEYS_PER_ENROLLER && !atomic_load(&stopping); i++) {
        char subject[32], headers[96];
        snprintf(subject, sizeof subject, "e%d-%d", e->id, i);
        snprintf(headers, sizeof headers, "Idempotency-Key: scale-%d-%d\r\n", e->id, i);
        size_t len;
        char *img = sample(e->id * 3 + i, &len);
        tc_form f = {0};
        tc_form_field(&f, "subject", subject);
        tc_form_file(&f, "image", img, len);
        tc_form_end(&f);
        e->sent = i + 1;
        double t0 = tc_now_ms();
        for (;;) {
            tc_response r;
            int rc = tc_post_form(lb_port, "/v1/collections/people/faces", headers, &f, &r);
            int status = rc == 0 ? r.status : 0;
            if (status == 201) {
                json_t *j = tc_json(&r);
                e->ids[i] = j ? json_integer_value(json_object_get(j, "face_id")) : -1;
                json_decref(j);
            }
            if (rc == 0) tc_response_free(&r);
            if (status == 201) break;
            /* 409: another replica still holds (or held, and died with) the claim; 502/503
             * or no connection: retry as a client should. Anything else is a failure. */
            if ((status != 0 && status != 409 && status != 502 && status != 503) ||
                tc_now_ms() - t0 > 55000) {
                snprintf(e->failure, sizeof e->failure, "%s: status %d after %.1f s", subject,
                         status, (tc_now_ms() - t0) / 1000);
                break;
            }
            e->retries++;
            tc_sleep_ms(200);
        }
        free(f.data);
        free(img);
        if (e->failure[0]) break;
    }
    return NULL;
}

static long long subject_faces(const char *subject)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/collections/people/subjects/%s", subject);
    tc_response r;
    assert_int_equal(tc_get(lb_port, path, NULL, &r), 0);
    if (r.status != 200) fail_msg("GET %s: %d %.200s", path, r.status, r.body ? r.body : "");
    json_t *j = tc_json(&r);
    long long n = json_integer_value(json_object_get(j, "faces"));
    json_decref(j);
    tc_response_free(&r);
    return n;
}

/* Lines of nginx's error log that contain `what`. */
static int log_lines(const char *what)
{
    char path[300], *log;
    size_t len;
    snprintf(path, sizeof path, "%s/error.log", work);
    if (tc_read_file(path, &log, &len) != 0) return 0;
    int n = 0;
    for (char *p = log; (p = strstr(p, what)); p += strlen(what))
        n++;
    free(log);
    return n;
}

static void test_crash_and_rolling_update(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    if (access(NGINX, X_OK) != 0) {
        print_message("no " NGINX " (package nginx): skipped\n");
        skip();
    }
    if (!url[0]) {
        print_message("no PostgreSQL server binaries (package postgresql): skipped\n");
        skip();
    }
    tc_response r;
    assert_int_equal(tc_post_json(lb_port, "/v1/collections", NULL, "{\"name\":\"people\"}", &r),
                     0);
    assert_int_equal(r.status, 201);
    tc_response_free(&r);

    struct analyst a[ANALYSTS] = {0};
    struct enroller e[ENROLLERS] = {0};
    pthread_t ta[ANALYSTS], te[ENROLLERS];
    for (int i = 0; i < ANALYSTS; i++) {
        a[i].id = i;
        pthread_create(&ta[i], NULL, analyst_main, &a[i]);
    }
    for (int i = 0; i < ENROLLERS; i++) {
        e[i].id = i;
        pthread_create(&te[i], NULL, enroller_main, &e[i]);
    }
    /* Under sanitizers each request takes ~10x longer: stretch the schedule. */
    int slow = getenv("VULTUS_SANITIZED") ? 4 : 1;
    tc_sleep_ms(1500 * slow);

    /* A crash, with requests in flight. */
    kill(replica[0].pid, SIGKILL);
    waitpid(replica[0].pid, NULL, 0);
    replica[0].pid = 0;
    tc_sleep_ms(1000 * slow);

    /* A rolling update: the new replica first, in nginx in place of the crashed one ... */
    assert_int_equal(tc_server_start(&replica[3], NULL, serve_args, 1), 0);
    assert_int_equal(write_conf(0xE), 0);
    kill(nginx_pid, SIGHUP);
    tc_sleep_ms(1000 * slow);
    /* ... then an old one drains and goes; nginx still lists it and finds it refusing. */
    kill(replica[1].pid, SIGTERM);
    int drained = tc_server_wait(&replica[1], 60000);
    tc_sleep_ms(1500 * slow);

    atomic_store(&stopping, 1);
    int analysed = 0, acked = 0, retries = 0;
    for (int i = 0; i < ANALYSTS; i++) {
        pthread_join(ta[i], NULL);
        analysed += a[i].ok;
        if (a[i].failed)
            fail_msg("analyst %d: %d of %d failed; first: %s", i, a[i].failed,
                     a[i].failed + a[i].ok, a[i].failure);
    }
    for (int i = 0; i < ENROLLERS; i++) {
        pthread_join(te[i], NULL);
        if (e[i].failure[0]) fail_msg("enroller %d: %s", i, e[i].failure);
        retries += e[i].retries;
        for (int k = 0; k < e[i].sent; k++)
            acked += e[i].ids[k] > 0;
    }
    print_message("%d analyses, all answered 200; %d enrolments acknowledged (%d retried "
                  "answers on the way); the drained replica exited %d\n",
                  analysed, acked, retries, drained);
    /* What nginx saw and retried on another replica (for the reader: which of these happen
     * depends on what was in flight at the kill). */
    print_message("nginx: %d connections refused, %d dropped mid-request, %d times a replica "
                  "marked unavailable\n",
                  log_lines("Connection refused) while connecting to upstream"),
                  log_lines("upstream prematurely closed"),
                  log_lines("upstream server temporarily disabled"));
    assert_int_equal(drained, 0);
    /* The load ran all along (under sanitizers ~10 analyses, ~7 enrolments; 20-40 without). */
    assert_true(analysed >= 2 * ANALYSTS);
    assert_true(acked >= 2 * ENROLLERS);

    /* Each enrolment once, each acknowledged face there, seen through the new topology. */
    for (int i = 0; i < ENROLLERS; i++) {
        for (int k = 0; k < e[i].sent; k++) {
            char subject[32], path[96];
            snprintf(subject, sizeof subject, "e%d-%d", i, k);
            assert_true(e[i].ids[k] > 0);
            assert_int_equal(subject_faces(subject), 1);
            snprintf(path, sizeof path, "/v1/collections/people/faces/%lld", e[i].ids[k]);
            assert_int_equal(tc_get(lb_port, path, NULL, &r), 0);
            assert_int_equal(r.status, 200);
            tc_response_free(&r);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_and_rolling_update),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
