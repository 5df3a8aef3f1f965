/*
 * A full disk under the real `vultus serve`: its store (DATA/vultus.db, a symbolic link into a
 * small tmpfs, so the server's log beside it still has room) on a disk that a filler file has
 * filled up, as a disk fills in production (other files, logs, the store itself).
 *
 *   - an enrolment answers 507 store_full with its JSON error body, and nothing is stored: no
 *     subject, no face, the counts unchanged; with an Idempotency-Key too (its claim, in the
 *     same file, is the first write: it used to answer 500 internal);
 *   - the disk given room one page at a time: every enrolment that does not fit stores nothing
 *     (it used to store its new subject, committed on its own, whenever the subject fitted and
 *     its face did not), and the first that fits stores both;
 *   - meanwhile the service answers reads: search, GET of the collection and its subjects,
 *     /readyz;
 *   - restarted on the full disk it starts and serves reads (a write still 507), also after a
 *     clean stop, then the disk filled up;
 *   - `vultus enroll` likewise: a run that cannot store the face stores no subject;
 *   - a check-in (POST …/checkins) that must write, a new arrival or a stranger to count,
 *     answers 507 store_full and records nothing (the list and the not-recognised count as
 *     they were); one that writes nothing, a same_arrival (the subject's last arrival within
 *     10 s), answers 200 as on any disk, and so does a stranger trying again within 10 s of
 *     the try that was counted; with room again the refused arrivals check in;
 *   - once there is room again (the filler removed, a restart) the same enrolment with the
 *     same Idempotency-Key succeeds, and a retry replays it.
 *
 * Mounting the tmpfs needs root, or an unprivileged user namespace of our own (entered at the
 * start of main, before any thread): the test skips when neither is possible. Real photos:
 * ../shared/data/fixtures (skips without them) and the model pack (models/).
 */
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <sys/mount.h>

#include "client.h"
#include "gallery/helpers.h"

#define OBAMA_1 "../shared/data/fixtures/id-obama-1.jpg"
#define BIDEN_1 "../shared/data/fixtures/id-biden-1.jpg"
#define STRANGER "../shared/data/fixtures/identities/penny/penny5.png" /* not enrolled here */
#define TMPFS_SIZE "4m"

static char disk[256];     /* the small tmpfs ("" when none could be mounted) */
static char data[256];     /* the server's data folder, vultus.db a link into `disk` */
static char filler[300];   /* the file that fills the disk */
static off_t filler_full;  /* its size when the disk was full */
static const char *no_disk_why = "";
static tc_server srv;
static char *obama1, *biden1, *stranger;
static size_t obama1_len, biden1_len, stranger_len;

static int write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0) return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* As an unprivileged user: a user namespace in which we are root, and a mount namespace of its
 * own, where a tmpfs may be mounted. The server, a child, inherits both. */
static int enter_user_namespace(void)
{
    uid_t uid = geteuid();
    gid_t gid = getegid();
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) return -1;
    char map[64];
    snprintf(map, sizeof map, "0 %u 1\n", (unsigned)uid);
    if (write_text("/proc/self/uid_map", map) != 0) return -1;
    if (write_text("/proc/self/setgroups", "deny") != 0) return -1;
    snprintf(map, sizeof map, "0 %u 1\n", (unsigned)gid);
    if (write_text("/proc/self/gid_map", map) != 0) return -1;
    return mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
}

/* Mounts the small disk and makes the data folder; leaves `disk` empty when it cannot. */
static void make_disk(void)
{
    if (tc_temp_dir(disk) != 0 || tc_temp_dir(data) != 0) {
        disk[0] = '\0';
        no_disk_why = "no temporary folder";
        return;
    }
    if (geteuid() != 0 && enter_user_namespace() != 0) {
        no_disk_why = "not root, and no user namespace to mount a tmpfs in";
    } else if (mount("tmpfs", disk, "tmpfs", MS_NOSUID | MS_NODEV, "size=" TMPFS_SIZE) != 0) {
        no_disk_why = "cannot mount a tmpfs";
    } else {
        char link_path[300], target[300];
        snprintf(link_path, sizeof link_path, "%s/vultus.db", data);
        snprintf(target, sizeof target, "%s/vultus.db", disk);
        snprintf(filler, sizeof filler, "%s/filler", disk);
        if (symlink(target, link_path) == 0) return;
        umount2(disk, MNT_DETACH);
        no_disk_why = "cannot link the store into the tmpfs";
    }
    rmdir(disk);
    disk[0] = '\0';
}

static void remove_disk(void)
{
    if (!disk[0]) return;
    umount2(disk, MNT_DETACH);
    rmdir(disk);
    tc_rm_rf(data);
}

/* Fills the disk to its last byte; the filler's size in filler_full. */
static void fill_disk(void)
{
    int fd = open(filler, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) fail_msg("cannot create %s: %s", filler, strerror(errno));
    static char block[65536];
    for (size_t chunk = sizeof block; chunk >= 1; chunk /= 16)
        while (write(fd, block, chunk) == (ssize_t)chunk) {
        }
    struct stat st;
    fstat(fd, &st);
    close(fd);
    filler_full = st.st_size;
}

/* Room for `bytes` more than when fill_disk() left the disk full. */
static void make_room(off_t bytes)
{
    if (truncate(filler, filler_full > bytes ? filler_full - bytes : 0) != 0)
        fail_msg("cannot truncate %s: %s", filler, strerror(errno));
}

#define NEED_DISK()                                                                                \
    do {                                                                                           \
        TC_NEED_MODELS();                                                                          \
        if (!obama1) {                                                                             \
            print_message("../shared/data/fixtures is absent: skipped\n");                         \
            skip();                                                                                \
        }                                                                                          \
        if (!disk[0]) {                                                                            \
            print_message("%s: skipped\n", no_disk_why);                                          \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static void start(void)
{
    static const char *const args[] = {"--workers", "2", "--deadline-ms", "60000", NULL};
    if (tc_server_start(&srv, data, args, 1) != 0) fail_msg("the server did not start");
}

/* A server on an empty store: the previous test's store and filler removed first. */
static void start_empty(void)
{
    const char *const files[] = {"vultus.db", "vultus.db-wal", "vultus.db-shm", "filler"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[320];
        snprintf(path, sizeof path, "%s/%s", disk, files[i]);
        unlink(path);
    }
    start();
}

static void stop(void)
{
    assert_int_equal(tc_server_stop(&srv), 0);
}

/* POSTs a photo for `subject` (multipart), with an Idempotency-Key when key is not NULL. */
static void enrol(const char *subject, const char *key, const char *photo, size_t len,
                  tc_response *r)
{
    char path[128], headers[128] = "";
    snprintf(path, sizeof path, "/v1/collections/c/faces?subject=%s", subject);
    if (key) snprintf(headers, sizeof headers, "Idempotency-Key: %s\r\n", key);
    tc_form f = {0};
    tc_form_file(&f, "image", photo, len);
    tc_form_end(&f);
    tc_post_form(srv.port, path, headers, &f, r);
    free(f.data);
}

/* 507 store_full: exactly {"error": {"code", "message"}}, the message saying nothing was
 * stored. */
static void expect_store_full(const tc_response *r)
{
    tc_expect_error(r, 507, "store_full");
    json_t *body = tc_json(r);
    assert_int_equal(json_object_size(body), 1);
    json_t *error = json_object_get(body, "error");
    assert_int_equal(json_object_size(error), 2);
    assert_non_null(strstr(json_string_value(json_object_get(error, "message")),
                           "nothing was stored"));
    json_decref(body);
}

/* The reads a full disk must leave working: search (finds `a`), GETs, /readyz. */
static void expect_reads(long long subjects, long long faces)
{
    tc_expect_counts(srv.port, "c", subjects, faces);
    json_decref(tc_call(srv.port, "GET", "/v1/collections/c/subjects/a", NULL, 200));
    json_t *list = tc_call(srv.port, "GET", "/v1/collections/c/subjects?limit=50", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(list, "subjects")), subjects);
    json_decref(list);
    tc_response r;
    tc_post_jpeg(srv.port, "/v1/collections/c/search", NULL, obama1, obama1_len, &r);
    json_t *found = tc_expect_json(&r, 200);
    json_t *face = json_array_get(json_object_get(found, "faces"), 0);
    assert_string_equal(json_string_value(json_object_get(face, "identity")), "a");
    json_decref(found);
    tc_response_free(&r);
    tc_get(srv.port, "/readyz", "", &r);
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
}

static void test_enrol_on_full_disk(void **state)
{
    (void)state;
    NEED_DISK();
    start();
    tc_create_collection(srv.port, "c");
    tc_response r;
    enrol("a", NULL, obama1, obama1_len, &r);
    json_decref(tc_expect_json(&r, 201));
    tc_response_free(&r);

    fill_disk();
    enrol("b", NULL, biden1, biden1_len, &r);
    expect_store_full(&r);
    tc_response_free(&r);
    enrol("kept", "full-1", biden1, biden1_len, &r);
    expect_store_full(&r);
    tc_response_free(&r);
    tc_expect_no_subject(srv.port, "c", "b");
    tc_expect_no_subject(srv.port, "c", "kept");
    expect_reads(1, 1);

    /* Room one page at a time: an enrolment either stores its subject and its face, or
     * nothing; the first whose transaction fits stores both. */
    int stored = 0;
    for (int pages = 1; pages <= 64 && !stored; pages++) {
        make_room((off_t)pages * 4096);
        enrol("b", NULL, biden1, biden1_len, &r);
        if (r.status == 507) {
            tc_expect_no_subject(srv.port, "c", "b");
            tc_expect_counts(srv.port, "c", 1, 1);
        } else {
            json_t *j = tc_expect_json(&r, 201);
            assert_true(json_is_true(json_object_get(j, "subject_created")));
            json_decref(j);
            tc_expect_counts(srv.port, "c", 2, 2);
            print_message("# the enrolment fitted with %d pages of room\n", pages);
            stored = 1;
        }
        tc_response_free(&r);
    }
    assert_true(stored);

    /* Restarted on the full disk: it starts and serves reads; writes are refused. */
    unlink(filler);
    fill_disk();
    stop();
    start();
    expect_reads(2, 2);
    enrol("kept", "full-1", biden1, biden1_len, &r);
    expect_store_full(&r);
    tc_response_free(&r);

    /* Room again: the enrolment refused with its key succeeds when sent again, and is then
     * replayed. */
    stop();
    unlink(filler);
    start();
    enrol("kept", "full-1", biden1, biden1_len, &r);
    json_t *first = tc_expect_json(&r, 201);
    assert_true(json_is_true(json_object_get(first, "subject_created")));
    tc_response_free(&r);
    enrol("kept", "full-1", biden1, biden1_len, &r);
    json_t *again = tc_expect_json(&r, 201);
    assert_int_equal(json_integer_value(json_object_get(again, "face_id")),
                     json_integer_value(json_object_get(first, "face_id")));
    json_decref(first);
    json_decref(again);
    tc_response_free(&r);
    expect_reads(3, 3);
    stop();
}

/*
 * A server stopped cleanly, then its disk filled up (by anything), then started: it starts and
 * serves reads. It used not to: a clean stop removed vultus.db-wal and vultus.db-shm, and
 * opening the store needs the 32 KiB -shm file back, which a full disk refuses:
 *   {"msg":"cannot open the store", ..., "detail":"...vultus.db: disk I/O error"}
 * and the process exited.
 */
static void test_start_on_full_disk(void **state)
{
    (void)state;
    NEED_DISK();
    start_empty();
    tc_create_collection(srv.port, "c");
    tc_response r;
    enrol("a", NULL, obama1, obama1_len, &r);
    json_decref(tc_expect_json(&r, 201));
    tc_response_free(&r);
    stop();
    fill_disk();
    start();
    expect_reads(1, 1);
    enrol("b", NULL, biden1, biden1_len, &r);
    expect_store_full(&r);
    tc_response_free(&r);
    tc_expect_no_subject(srv.port, "c", "b");
    stop();
    unlink(filler);
}

/*
 * `vultus enroll` on a full disk, given room a page at a time as above: each run that cannot
 * store the face stores no subject either (it used to create the subject in a transaction of
 * its own first), exits 1 with the image "failed"; the first that fits enrols subject and face.
 */
static void test_cli_enroll_on_full_disk(void **state)
{
    (void)state;
    NEED_DISK();
    start();
    tc_create_collection(srv.port, "cli");
    stop();
    char store[320];
    snprintf(store, sizeof store, "%s/vultus.db", data);
    unlink(filler);
    fill_disk();
    int stored = 0;
    for (int pages = 0; pages <= 64 && !stored; pages++) {
        make_room((off_t)pages * 4096);
        static char out[8192];
        const char *const args[] = {"enroll", "--collection", "cli",  "--subject", "b",
                                    "--data", data,           "--models", "models", BIDEN_1,
                                    NULL};
        int status = tc_run_vultus(out, sizeof out, args);
        uint64_t subjects = 99, faces = 99;
        assert_int_equal(store_counts(store, "cli", &subjects, &faces), 0);
        if (status == 1) {
            assert_non_null(strstr(out, "\"status\":\"failed\""));
            assert_null(strstr(out, "\"face_id\"")); /* no face was stored */
            if (subjects != 0 || faces != 0)
                fail_msg("with %d pages of room: %llu subjects, %llu faces; %s", pages,
                         (unsigned long long)subjects, (unsigned long long)faces, out);
        } else {
            assert_int_equal(status, 0);
            assert_non_null(strstr(out, "\"status\":\"enrolled\""));
            assert_int_equal(subjects, 1);
            assert_int_equal(faces, 1);
            stored = 1;
        }
    }
    assert_true(stored);
    unlink(filler);
}

/* POST …/c/checkins of a photo (raw body). */
static void checkin(const char *photo, size_t len, tc_response *r)
{
    const char *type = memcmp(photo, "\x89PNG", 4) == 0 ? "image/png" : "image/jpeg";
    char headers[64];
    snprintf(headers, sizeof headers, "Content-Type: %s\r\n", type);
    tc_request(srv.port, "POST", "/v1/collections/c/checkins", headers, photo, len, r);
}

/* A 200 check-in answer's one face's status (the answer freed). */
static void expect_checkin(tc_response *r, const char *status, const char *subject)
{
    json_t *j = tc_expect_json(r, 200);
    json_t *c = json_object_get(json_array_get(json_object_get(j, "faces"), 0), "checkin");
    assert_string_equal(tc_json_str(c, "status"), status);
    if (subject) assert_string_equal(tc_json_str(c, "subject_id"), subject);
    json_decref(j);
    tc_response_free(r);
}

/* GET …/c/checkins: the subjects recorded, newest first, joined by ','; and the counts. */
static void expect_record(const char *subjects, long long checked_in, long long not_recognised)
{
    json_t *l = tc_call(srv.port, "GET", "/v1/collections/c/checkins", NULL, 200);
    json_t *items = json_object_get(l, "checkins");
    char ids[256] = "";
    for (size_t i = 0; i < json_array_size(items); i++) {
        size_t n = strlen(ids);
        snprintf(ids + n, sizeof ids - n, "%s%s", i ? "," : "",
                 tc_json_str(json_array_get(items, i), "subject_id"));
        assert_int_equal(json_integer_value(json_object_get(json_array_get(items, i), "arrivals")),
                         1);
    }
    assert_string_equal(ids, subjects);
    assert_int_equal(json_integer_value(json_object_get(l, "checked_in")), checked_in);
    assert_int_equal(json_integer_value(json_object_get(l, "not_recognised")), not_recognised);
    json_decref(l);
}

/*
 * The check-in record on a full disk. An arrival that must be written (a subject's first, a
 * stranger counted) is refused whole with 507 and leaves the record as it was; a same_arrival
 * writes nothing (the record and the event's row unchanged: an empty write transaction,
 * which SQLite commits without touching the disk), so it answers 200, as it would on any disk:
 * the person at the door is already checked in, and refusing would tell the door otherwise.
 * Once there is room, the refused arrivals check in.
 */
static void test_checkin_on_full_disk(void **state)
{
    (void)state;
    NEED_DISK();
    if (!stranger) {
        print_message(STRANGER " is absent: skipped\n");
        skip();
    }
    start_empty();
    tc_create_collection(srv.port, "c");
    tc_response r;
    enrol("a", NULL, obama1, obama1_len, &r);
    json_decref(tc_expect_json(&r, 201));
    tc_response_free(&r);
    enrol("b", NULL, biden1, biden1_len, &r);
    json_decref(tc_expect_json(&r, 201));
    tc_response_free(&r);
    double sent = tc_now_ms();
    checkin(obama1, obama1_len, &r);
    expect_checkin(&r, "checked_in", "a");

    fill_disk();
    /* a again at once: the same arrival, nothing to write. Were 10 s to pass between the
     * first check-in's request and this answer (a machine stalled), the server would count a
     * return, which must be written: then 507 is right, and what this step checks cannot be
     * checked. */
    checkin(obama1, obama1_len, &r);
    double elapsed = tc_now_ms() - sent;
    if (elapsed < GAL_CHECKIN_SAME_MS) {
        expect_checkin(&r, "same_arrival", "a");
    } else {
        print_message("# %.0f ms between the two check-ins of a: the same_arrival step is not "
                      "checked\n",
                      elapsed);
        if (r.status == 507)
            expect_store_full(&r);
        else
            json_decref(tc_expect_json(&r, 200));
        tc_response_free(&r);
    }

    /* A new arrival, a stranger: each must write, each is refused and records nothing. */
    checkin(biden1, biden1_len, &r);
    expect_store_full(&r);
    tc_response_free(&r);
    checkin(stranger, stranger_len, &r);
    expect_store_full(&r);
    tc_response_free(&r);
    expect_record("a", 1, 0);
    expect_reads(2, 2);

    /* Room again: both check in. */
    unlink(filler);
    checkin(biden1, biden1_len, &r);
    expect_checkin(&r, "checked_in", "b");
    sent = tc_now_ms();
    checkin(stranger, stranger_len, &r);
    expect_checkin(&r, "not_recognised", NULL);
    expect_record("b,a", 2, 1);

    /* The stranger trying again at once on a full disk: the same stranger, nothing counted and
     * nothing to write, so 200 as for a same_arrival (it used to write the window's time
     * again each time and answer 507). Past 10 s it is counted, must write: 507 is right. */
    fill_disk();
    checkin(stranger, stranger_len, &r);
    elapsed = tc_now_ms() - sent;
    if (elapsed < GAL_CHECKIN_SAME_MS) {
        expect_checkin(&r, "not_recognised", NULL);
        expect_record("b,a", 2, 1);
    } else {
        print_message("# %.0f ms between the two tries of the stranger: the retry step is not "
                      "checked\n",
                      elapsed);
        tc_response_free(&r);
    }
    unlink(filler);
    stop();
}

static int setup(void **state)
{
    (void)state;
    if (!tc_exists(OBAMA_1) || !tc_exists(BIDEN_1)) return 0;
    obama1 = tc_load(OBAMA_1, &obama1_len);
    biden1 = tc_load(BIDEN_1, &biden1_len);
    if (tc_exists(STRANGER)) stranger = tc_load(STRANGER, &stranger_len);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (srv.pid > 0) tc_server_stop(&srv);
    free(obama1);
    free(biden1);
    free(stranger);
    return 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    make_disk(); /* before any thread: unshare refuses a multithreaded process */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enrol_on_full_disk),
        cmocka_unit_test(test_start_on_full_disk),
        cmocka_unit_test(test_cli_enroll_on_full_disk),
        cmocka_unit_test(test_checkin_on_full_disk),
    };
    int failed = cmocka_run_group_tests_name("store full", tests, setup, teardown);
    remove_disk();
    return failed;
}
