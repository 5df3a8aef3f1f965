/*
 * `vultus backup` and `vultus restore` against the real `vultus serve` on loopback, with real
 * photos (models/samples) and the model pack, in temporary data folders:
 *
 *   - a backup taken while another thread enrols without pause holds every enrolment
 *     acknowledged before it started (count and face ids), passes integrity_check, and its JSON
 *     line's counts are what a server started on a fresh folder holding it reports; that
 *     server is ready and a search gives the same similarity as the original server did;
 *   - OUT existing is refused and left as it was; a read-only folder and a full disk give a
 *     clear error and leave no file; a PostgreSQL URL is refused naming pg_dump (exit 3);
 *   - restore is refused while `vultus serve` has the store open (exit 4), the files untouched;
 *   - restore with the server stopped keeps the old files aside and the restored store serves;
 *     a server killed (SIGKILL) with writes made after the backup still in vultus.db-wal: the
 *     restored store is the backup, byte for byte and as served, not the backup plus that WAL;
 *   - a truncated, a corrupted, a non-vultus SQLite file and a text file are refused before
 *     anything is moved.
 *
 * Skips without models/.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <dirent.h>
#include <linux/fs.h>
#include <sqlite3.h>
#include <sys/ioctl.h>
#include <sys/mount.h>

#include "http/client.h"

#define N_PHOTOS 6

static char *photo[N_PHOTOS];
static size_t photo_len[N_PHOTOS];
static char auth[256]; /* "Authorization: Bearer KEY\r\n" of the server being tested */

static void load_photos(void)
{
    for (int i = 0; i < N_PHOTOS; i++) {
        if (photo[i]) continue;
        char path[64];
        snprintf(path, sizeof path, "models/samples/sample%d.jpg", i + 1);
        photo[i] = tc_load(path, &photo_len[i]);
    }
}

/* `vultus ARGS...` run once: its exit status, stdout into out and stderr into err (NULL: the
 * test's own stderr). */
static int run_vultus(const char *const *args, char *out, size_t out_cap, char *err, size_t err_cap)
{
    int rc = tc_run_vultus_io(args, out, out_cap, err, err_cap);
    if (rc < 0) fail_msg("cannot run vultus: %s", strerror(errno));
    return rc;
}

/* Entries of a folder, . and .. aside. */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *de; d && (de = readdir(d));)
        n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    if (d) closedir(d);
    return n;
}

/* A key made with `vultus keys create` (so the store has one to count), into auth. */
static void make_key(const char *dir)
{
    const char *args[] = {"keys", "create", "--scope", "admin", "--data", dir, NULL};
    char error[512] = "";
    if (tc_key_header(args, auth, sizeof auth, error, sizeof error) != 0)
        fail_msg("keys create: %s", error);
}

static int enrol(int port, const char *subject, int i, long long *face_id)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/collections/c/faces?subject=%s", subject);
    tc_response r;
    tc_post_jpeg(port, path, auth, photo[i % N_PHOTOS], photo_len[i % N_PHOTOS], &r);
    int status = r.status;
    *face_id = 0;
    if (status == 200 || status == 201) {
        json_t *j = tc_json(&r);
        *face_id = (long long)json_integer_value(json_object_get(j, "face_id"));
        json_decref(j);
    }
    tc_response_free(&r);
    return status;
}

/* The similarity of `subject` to the first face of photo i, as the server at port says
 * (-2 when it is not among the matches). */
static double similarity_of(int port, int i, const char *subject)
{
    tc_response r;
    tc_post_jpeg(port, "/v1/collections/c/search?k=100", auth, photo[i], photo_len[i], &r);
    json_t *j = tc_expect_json(&r, 200);
    tc_response_free(&r);
    json_t *matches = json_object_get(json_array_get(json_object_get(j, "faces"), 0), "matches");
    double s = -2;
    for (size_t k = 0; k < json_array_size(matches); k++) {
        json_t *m = json_array_get(matches, k);
        if (strcmp(json_string_value(json_object_get(m, "subject")), subject) == 0)
            s = json_number_value(json_object_get(m, "similarity"));
    }
    json_decref(j);
    return s;
}

static void expect_face(int port, long long id, int status)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/collections/c/faces/%lld", id);
    tc_response r;
    tc_get(port, path, auth, &r);
    if (r.status != status)
        fail_msg("GET %s: %d, expected %d: %.200s", path, r.status, status, r.body ? r.body : "");
    tc_response_free(&r);
}

static long long collection_faces(int port)
{
    tc_response r;
    tc_get(port, "/v1/collections/c", auth, &r);
    json_t *j = tc_expect_json(&r, 200);
    long long n = (long long)json_integer_value(json_object_get(j, "faces"));
    json_decref(j);
    tc_response_free(&r);
    return n;
}

/* Every member of a command's JSON line is named in its --help (scripts read both): as a word
 * of its own, "KEY," "KEY." or "KEY (". */
static void expect_members_in_help(const char *cmd, json_t *j)
{
    char help[8192], err[256];
    const char *args[] = {cmd, "--help", NULL};
    assert_int_equal(run_vultus(args, help, sizeof help, err, sizeof err), 0);
    const char *key;
    json_t *value;
    json_object_foreach(j, key, value)
    {
        size_t n = strlen(key);
        int named = 0;
        for (const char *at = strstr(help, key); at && !named; at = strstr(at + 1, key))
            named = (at[-1] == ' ' || at[-1] == '\n') && strchr(",. ", at[n]);
        if (!named) fail_msg("vultus %s --help does not name \"%s\"", cmd, key);
    }
}

static json_t *parse_line(const char *out)
{
    json_t *j = json_loads(out, JSON_DISABLE_EOF_CHECK, NULL);
    if (!j) fail_msg("not one JSON line: %.300s", out);
    return j;
}

static long long jint(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    if (!json_is_integer(v)) fail_msg("no integer \"%s\" in the JSON line", key);
    return (long long)json_integer_value(v);
}

/* Starts a server on dir and creates collection c with a key. */
static void start_with_collection(tc_server *s, const char *dir)
{
    make_key(dir);
    static const char *const args[] = {"--workers", "2", "--deadline-ms", "60000", NULL};
    assert_int_equal(tc_server_start(s, dir, args, 1), 0);
    char h[400];
    snprintf(h, sizeof h, "%sContent-Type: application/json\r\n", auth);
    tc_response r;
    tc_request(s->port, "POST", "/v1/collections", h, "{\"name\":\"c\"}", 12, &r);
    assert_int_equal(r.status, 201);
    tc_response_free(&r);
}

/* ---- a backup under continuous enrolment ------------------------------------------------- */

#define MAX_ENROLS 4096
#define ENROLLERS 2 /* two at once: an enrolment is in flight whenever the backup starts */
typedef struct enroller {
    int port;
    atomic_int stop;
    atomic_int next;     /* the next enrolment's index */
    atomic_int answered; /* enrolments answered so far */
    long long face_id[MAX_ENROLS];
    int status[MAX_ENROLS];
    _Atomic double acked_ms[MAX_ENROLS]; /* when the answer was read; 0 until then */
} enroller;

static void *enroll_main(void *arg)
{
    enroller *e = arg;
    while (!atomic_load(&e->stop)) {
        int i = atomic_fetch_add(&e->next, 1);
        if (i >= MAX_ENROLS) break;
        char subject[32];
        snprintf(subject, sizeof subject, "p%d", i);
        e->status[i] = enrol(e->port, subject, i, &e->face_id[i]);
        atomic_store(&e->acked_ms[i], tc_now_ms());
        atomic_fetch_add(&e->answered, 1);
    }
    return NULL;
}

static void test_backup_while_enrolling(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    load_photos();
    char dir[256], fresh[256], out[400], line[4096];
    assert_int_equal(tc_temp_dir(dir), 0);
    assert_int_equal(tc_temp_dir(fresh), 0);
    snprintf(out, sizeof out, "%s/backup.db", fresh);
    tc_server s;
    start_with_collection(&s, dir);

    static enroller e;
    memset(&e, 0, sizeof e);
    e.port = s.port;
    pthread_t t[ENROLLERS];
    for (int k = 0; k < ENROLLERS; k++)
        assert_int_equal(pthread_create(&t[k], NULL, enroll_main, &e), 0);
    while (atomic_load(&e.answered) < 8)
        tc_sleep_ms(10);
    double started = tc_now_ms();
    /* The enrolments answered before the backup started, by index. */
    static char acked_before_start[MAX_ENROLS];
    int acked_before = 0, claimed = atomic_load(&e.next);
    for (int i = 0; i < claimed && i < MAX_ENROLS; i++) {
        double at = atomic_load(&e.acked_ms[i]);
        acked_before_start[i] = at > 0 && at < started;
        acked_before += acked_before_start[i];
    }
    const char *args[] = {"backup", "--data", dir, out, NULL};
    int rc = run_vultus(args, line, sizeof line, NULL, 0);
    int during = atomic_load(&e.answered) - acked_before;
    /* A few more after it, then stop. */
    int target = atomic_load(&e.answered) + 2;
    while (atomic_load(&e.answered) < target)
        tc_sleep_ms(10);
    atomic_store(&e.stop, 1);
    for (int k = 0; k < ENROLLERS; k++)
        pthread_join(t[k], NULL);
    assert_int_equal(rc, 0);
    int total = atomic_load(&e.answered);
    assert_int_equal(total, atomic_load(&e.next));
    for (int i = 0; i < total; i++)
        if (e.status[i] != 201) fail_msg("enrolment %d: status %d", i, e.status[i]);
    print_message("backup: %s (%d enrolments acknowledged before it, %d during, %d in all)\n", line,
                  acked_before, during, total);

    json_t *j = parse_line(line);
    assert_string_equal(json_string_value(json_object_get(j, "integrity")), "ok");
    assert_int_equal(jint(j, "collections"), 1);
    assert_int_equal(jint(j, "keys"), 1);
    long long faces = jint(j, "faces");
    assert_int_equal(jint(j, "subjects"), faces); /* one face per subject */
    assert_true(faces >= acked_before);
    assert_true(faces <= total);
    struct stat st;
    assert_int_equal(stat(out, &st), 0);
    assert_int_equal(jint(j, "bytes"), (long long)st.st_size);
    json_decref(j);
    /* One self-contained file: no -wal or -shm beside it, no temporary file left. */
    char path[600];
    snprintf(path, sizeof path, "%s-wal", out);
    assert_false(tc_exists(path));
    int entries = count_entries(fresh);
    assert_int_equal(entries, 1);

    double original = similarity_of(s.port, 0, "p0");
    assert_true(original > 0.9);
    assert_int_equal(tc_server_stop(&s), 0);
    tc_rm_rf(dir);

    /* The backup served from a fresh folder, as its vultus.db. */
    snprintf(path, sizeof path, "%s/vultus.db", fresh);
    assert_int_equal(rename(out, path), 0);
    static const char *const args2[] = {"--workers", "2", "--deadline-ms", "60000", NULL};
    assert_int_equal(tc_server_start(&s, fresh, args2, 1), 0);
    tc_response r;
    tc_get(s.port, "/readyz", NULL, &r);
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
    assert_int_equal(collection_faces(s.port), faces);
    for (int i = 0; i < claimed; i++)
        if (acked_before_start[i]) expect_face(s.port, e.face_id[i], 200);
    assert_true(similarity_of(s.port, 0, "p0") == original);
    assert_int_equal(tc_server_stop(&s), 0);
    tc_rm_rf(fresh);
}

/* ---- refusals --------------------------------------------------------------------------- */

static char *slurp(const char *path, size_t *len)
{
    char *data = NULL;
    if (tc_read_file(path, &data, len) != 0) return NULL;
    return data;
}

/* A store with one face, made by a server that is then stopped. */
static void make_store(char *dir)
{
    load_photos();
    assert_int_equal(tc_temp_dir(dir), 0);
    tc_server s;
    start_with_collection(&s, dir);
    long long id;
    assert_int_equal(enrol(s.port, "p0", 0, &id), 201);
    assert_int_equal(tc_server_stop(&s), 0);
}

static void test_backup_refusals(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    char dir[256], out[400], err[2048] = "", line[2048];
    make_store(dir);

    /* OUT exists: refused, untouched. */
    snprintf(out, sizeof out, "%s/existing.db", dir);
    FILE *f = fopen(out, "w");
    fputs("keep me", f);
    fclose(f);
    const char *args[] = {"backup", "--data", dir, out, NULL};
    assert_int_equal(run_vultus(args, line, sizeof line, err, sizeof err), 1);
    assert_non_null(strstr(err, "exists: pass --force"));
    size_t len;
    char *kept = slurp(out, &len);
    assert_string_equal(kept, "keep me");
    free(kept);
    /* --force replaces it. */
    const char *forced[] = {"backup", "--force", "--data", dir, out, NULL};
    assert_int_equal(run_vultus(forced, line, sizeof line, NULL, 0), 0);
    json_t *j = parse_line(line);
    assert_int_equal(jint(j, "faces"), 1);
    expect_members_in_help("backup", j);
    json_decref(j);

    /* A PostgreSQL store: pg_dump's job (exit 3), the password never shown, nothing written. */
    snprintf(out, sizeof out, "%s/pg.db", dir);
    const char *pg[] = {"backup", "--store", "postgres://u:secret@127.0.0.1:1/db", out, NULL};
    assert_int_equal(run_vultus(pg, line, sizeof line, err, sizeof err), 3);
    assert_non_null(strstr(err, "pg_dump"));
    assert_null(strstr(err, "secret"));
    assert_false(tc_exists(out));
    const char *pgr[] = {"restore", "--store", "postgres://u:secret@127.0.0.1:1/db", out, NULL};
    assert_int_equal(run_vultus(pgr, line, sizeof line, err, sizeof err), 3);
    assert_non_null(strstr(err, "pg_restore"));

    /* A folder that cannot be written: read-only (a read-only mount, as root; else the
     * folder's mode), and full (a tmpfs smaller than the backup, as root). */
    char ro[256];
    assert_int_equal(tc_temp_dir(ro), 0);
    int mounted = 0;
    if (geteuid() == 0)
        mounted = mount("tmpfs", ro, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=64k") == 0;
    else
        chmod(ro, 0555);
    if (geteuid() != 0 || mounted) {
        snprintf(out, sizeof out, "%s/backup.db", ro);
        const char *a2[] = {"backup", "--data", dir, out, NULL};
        assert_int_equal(run_vultus(a2, line, sizeof line, err, sizeof err), 1);
        print_message("read-only folder: %s", err);
        assert_non_null(strstr(err, "not written"));
        assert_true(strstr(err, "Read-only file system") || strstr(err, "Permission denied"));
        int entries = count_entries(ro);
        assert_int_equal(entries, 0);
    }
    if (mounted) umount2(ro, MNT_DETACH);
    chmod(ro, 0755);
    if (geteuid() == 0 && mount("tmpfs", ro, "tmpfs", MS_NOSUID | MS_NODEV, "size=16k") == 0) {
        snprintf(out, sizeof out, "%s/backup.db", ro);
        const char *a3[] = {"backup", "--data", dir, out, NULL};
        assert_int_equal(run_vultus(a3, line, sizeof line, err, sizeof err), 1);
        print_message("full disk: %s", err);
        assert_non_null(strstr(err, "not written"));
        int entries = count_entries(ro);
        assert_int_equal(entries, 0);
        umount2(ro, MNT_DETACH);
    }
    rmdir(ro);
    tc_rm_rf(dir);
}

/* A name in `dir` containing `part`, into found (0), or -1. */
static int find_entry(const char *dir, const char *part, char *found, size_t cap)
{
    DIR *d = opendir(dir);
    int rc = -1;
    for (struct dirent *de; d && (de = readdir(d));)
        if (strstr(de->d_name, part)) {
            snprintf(found, cap, "%s", de->d_name);
            rc = 0;
            break;
        }
    if (d) closedir(d);
    return rc;
}

/* Ctrl-C while a large store is being copied: exit 130 and nothing left in OUT's folder - the
 * temporary copy and the rollback journal SQLite keeps beside it while it writes (left behind
 * as .OUT.tmp-PID-journal before). The signal goes once that journal is seen, so it lands
 * during the copy whatever the machine's speed; a backup that finished first is fine too. */
static void test_backup_interrupted(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    char dir[256], outdir[256], out[400], db[300], bin[PATH_MAX];
    make_store(dir);
    snprintf(db, sizeof db, "%s/vultus.db", dir);
    sqlite3 *s3 = NULL;
    assert_int_equal(sqlite3_open(db, &s3), SQLITE_OK);
    assert_int_equal(sqlite3_exec(s3,
                                  "CREATE TABLE pad(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION "
                                  "ALL SELECT i + 1 FROM n WHERE i < 96) INSERT INTO pad "
                                  "SELECT randomblob(1000000) FROM n",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(s3);
    assert_int_equal(tc_temp_dir(outdir), 0);
    snprintf(out, sizeof out, "%s/backup.db", outdir);
    assert_int_equal(tc_vultus_path(bin, sizeof bin), 0);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGINT, SIG_DFL);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        execl(bin, bin, "backup", "--data", dir, out, (char *)NULL);
        _exit(127);
    }
    char name[256] = "";
    int status = 0, seen = 0;
    for (int i = 0; i < 60000 && !seen; i++) {
        seen = find_entry(outdir, "-journal", name, sizeof name) == 0;
        if (!seen && waitpid(pid, &status, WNOHANG) == pid) break;
        if (!seen) usleep(500);
    }
    if (seen) {
        print_message("interrupted while %s was there\n", name);
        kill(pid, SIGINT);
        waitpid(pid, &status, 0);
    }
    assert_true(WIFEXITED(status));
    int code = WEXITSTATUS(status);
    print_message("exit %d, left in OUT's folder: %d\n", code, count_entries(outdir));
    if (code == 0) {
        assert_int_equal(count_entries(outdir), 1);
        assert_true(tc_exists(out));
    } else {
        assert_int_equal(code, 130);
        if (find_entry(outdir, "tmp-", name, sizeof name) == 0) print_message("left: %s\n", name);
        assert_int_equal(count_entries(outdir), 0);
    }
    tc_rm_rf(outdir);
    tc_rm_rf(dir);
}

/* ---- restore ---------------------------------------------------------------------------- */

static int count_aside(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *de; d && (de = readdir(d));)
        n += strstr(de->d_name, "before-restore") != NULL || strstr(de->d_name, ".tmp-") != NULL;
    if (d) closedir(d);
    return n;
}

static int same_file(const char *a, const char *b)
{
    size_t la, lb;
    char *da = slurp(a, &la), *db = slurp(b, &lb);
    int same = da && db && la == lb && memcmp(da, db, la) == 0;
    free(da);
    free(db);
    return same;
}

/* OUT naming the store itself, with --force (the message for an existing OUT suggests it):
 * renamed over the store a server has open, the copy would sit beside the server's live -wal
 * and be mixed with it at the next open. Refused as a usage error, the store untouched: by its
 * name, by another path to the same file, and its -wal. */
static void test_backup_refuses_the_store(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    char dir[256], db[300], link[400], wal[300], line[2048], err[2048];
    make_store(dir);
    snprintf(db, sizeof db, "%s/vultus.db", dir);
    snprintf(wal, sizeof wal, "%s/vultus.db-wal", dir);
    snprintf(link, sizeof link, "%s.link", dir);
    assert_int_equal(symlink(db, link), 0);
    struct stat before_st;
    assert_int_equal(stat(db, &before_st), 0);
    size_t before_len;
    char *before = slurp(db, &before_len);
    const char *outs[] = {db, link, wal};
    for (int i = 0; i < 3; i++) {
        const char *args[] = {"backup", "--force", "--data", dir, outs[i], NULL};
        int rc = run_vultus(args, line, sizeof line, err, sizeof err);
        print_message("OUT %s: exit %d: %s", outs[i], rc, err);
        assert_int_equal(rc, 2);
        assert_non_null(strstr(err, "is the store itself"));
        assert_string_equal(line, "");
        struct stat now_st;
        assert_int_equal(stat(db, &now_st), 0);
        assert_int_equal(now_st.st_ino, before_st.st_ino);
        assert_int_equal(now_st.st_mode, before_st.st_mode);
        assert_true(same_file(db, link));
        size_t now_len;
        char *now = slurp(db, &now_len);
        assert_true(now_len == before_len && memcmp(now, before, now_len) == 0);
        free(now);
    }
    free(before);
    unlink(link);
    tc_rm_rf(dir);
}

static void test_restore_refused_while_serving(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    char dir[256], bk[400], line[2048], err[2048];
    make_store(dir);
    snprintf(bk, sizeof bk, "%s.backup", dir);
    const char *b[] = {"backup", "--data", dir, bk, NULL};
    assert_int_equal(run_vultus(b, line, sizeof line, NULL, 0), 0);

    tc_server s;
    static const char *const args[] = {"--workers", "2", "--deadline-ms", "60000", NULL};
    assert_int_equal(tc_server_start(&s, dir, args, 1), 0);
    char db[300], copy[400];
    snprintf(db, sizeof db, "%s/vultus.db", dir);
    snprintf(copy, sizeof copy, "%s.before", dir);
    size_t len;
    char *before = slurp(db, &len);
    const char *r[] = {"restore", "--data", dir, bk, NULL};
    assert_int_equal(run_vultus(r, line, sizeof line, err, sizeof err), 4);
    print_message("refused: %s", err);
    assert_non_null(strstr(err, "open by another process"));
    assert_int_equal(count_aside(dir), 0);
    /* Said before BACKUP is copied and checked (seconds for a large store), whatever BACKUP is:
     * stopping the server comes first either way. Before: exit 1, BACKUP's own fault. */
    char junk[400];
    snprintf(junk, sizeof junk, "%s.junk", dir);
    FILE *f = fopen(junk, "w");
    assert_non_null(f);
    fputs("not a store\n", f);
    fclose(f);
    const char *rj[] = {"restore", "--data", dir, junk, NULL};
    int code = run_vultus(rj, line, sizeof line, err, sizeof err);
    if (code != 4) fail_msg("a bad BACKUP while serving: exit %d, %s", code, err);
    assert_non_null(strstr(err, "open by another process"));
    unlink(junk);
    assert_int_equal(count_aside(dir), 0);
    size_t len2;
    char *after = slurp(db, &len2);
    assert_true(len == len2 && memcmp(before, after, len) == 0);
    free(before);
    free(after);
    /* The server still serves its store. */
    assert_int_equal(collection_faces(s.port), 1);
    assert_int_equal(tc_server_stop(&s), 0);
    (void)copy;
    unlink(bk);
    tc_rm_rf(dir);
}

static void test_restore_over_stale_wal(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    load_photos();
    char dir[256], bk[400], line[4096], db[300], wal[300];
    assert_int_equal(tc_temp_dir(dir), 0);
    snprintf(bk, sizeof bk, "%s.backup", dir);
    snprintf(db, sizeof db, "%s/vultus.db", dir);
    snprintf(wal, sizeof wal, "%s/vultus.db-wal", dir);
    tc_server s;
    start_with_collection(&s, dir);
    long long kept[2], later[3];
    for (int i = 0; i < 2; i++)
        assert_int_equal(enrol(s.port, i ? "p1" : "p0", i, &kept[i]), 201);
    const char *b[] = {"backup", "--data", dir, bk, NULL};
    assert_int_equal(run_vultus(b, line, sizeof line, NULL, 0), 0);
    /* Writes after the backup, then the server killed: they stay in vultus.db-wal. */
    for (int i = 0; i < 3; i++) {
        char subject[16];
        snprintf(subject, sizeof subject, "q%d", i);
        assert_int_equal(enrol(s.port, subject, i + 2, &later[i]), 201);
    }
    assert_int_equal(collection_faces(s.port), 5);
    kill(s.pid, SIGKILL);
    waitpid(s.pid, NULL, 0);
    s.pid = 0;
    struct stat st;
    assert_int_equal(stat(wal, &st), 0);
    assert_true(st.st_size > 0);
    off_t wal_size = st.st_size;

    const char *r[] = {"restore", "--data", dir, bk, NULL};
    assert_int_equal(run_vultus(r, line, sizeof line, NULL, 0), 0);
    print_message("restore: %s", line);
    json_t *j = parse_line(line);
    assert_int_equal(jint(j, "faces"), 2);
    assert_int_equal(jint(j, "keys"), 1);
    expect_members_in_help("restore", j);
    json_t *aside = json_object_get(j, "moved_aside");
    assert_int_equal(json_array_size(aside), 3);
    /* The old WAL kept aside, whole. */
    const char *old_wal = json_string_value(json_array_get(aside, 1));
    assert_non_null(strstr(old_wal, "-wal"));
    assert_int_equal(stat(old_wal, &st), 0);
    assert_int_equal(st.st_size, wal_size);
    char old_db[400];
    snprintf(old_db, sizeof old_db, "%s", json_string_value(json_array_get(aside, 0)));
    json_decref(j);
    assert_false(tc_exists(wal));
    assert_true(same_file(db, bk));

    /* Served: the backup's two faces, none of the three written after it. */
    static const char *const args[] = {"--workers", "2", "--deadline-ms", "60000", NULL};
    assert_int_equal(tc_server_start(&s, dir, args, 1), 0);
    assert_int_equal(collection_faces(s.port), 2);
    for (int i = 0; i < 2; i++)
        expect_face(s.port, kept[i], 200);
    for (int i = 0; i < 3; i++)
        expect_face(s.port, later[i], 404);
    /* And it takes writes again. */
    long long id;
    assert_int_equal(enrol(s.port, "r0", 5, &id), 201);
    assert_int_equal(tc_server_stop(&s), 0);

    /* And back to the store as it was: restored from the file moved aside, whose last three
     * faces are in its -wal beside it (read with it; a copy of the file alone had 2 faces). */
    const char *back[] = {"restore", "--data", dir, old_db, NULL};
    assert_int_equal(run_vultus(back, line, sizeof line, NULL, 0), 0);
    print_message("back: %s", line);
    j = parse_line(line);
    assert_int_equal(jint(j, "faces"), 5);
    json_decref(j);
    assert_int_equal(tc_server_start(&s, dir, args, 1), 0);
    assert_int_equal(collection_faces(s.port), 5);
    for (int i = 0; i < 3; i++)
        expect_face(s.port, later[i], 200);
    assert_int_equal(tc_server_stop(&s), 0);
    unlink(bk);
    tc_rm_rf(dir);
}

/* The immutable flag on a file (chattr +i), which even root cannot rename past: 0, or -1 where
 * that cannot be set (not root, a file system without it). */
static int set_immutable(const char *path, int on)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int flags = 0, rc = ioctl(fd, FS_IOC_GETFLAGS, &flags);
    if (rc == 0) {
        flags = on ? flags | FS_IMMUTABLE_FL : flags & ~FS_IMMUTABLE_FL;
        rc = ioctl(fd, FS_IOC_SETFLAGS, &flags);
    }
    close(fd);
    return rc;
}

/* A move aside that fails half-way (the -shm cannot be renamed: immutable, as root) puts back
 * what was moved: vultus.db and its -wal (a killed server's writes in it) at their own names,
 * byte for byte, nothing left aside or temporary, exit 1 with the last line saying so; then,
 * the flag cleared, the same restore goes in. Skips where the flag cannot be set. */
static void test_restore_puts_back(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    load_photos();
    char dir[256], bk[400], line[4096], err[4096], path[3][320];
    static const char *const suffix[3] = {"", "-wal", "-shm"};
    assert_int_equal(tc_temp_dir(dir), 0);
    snprintf(bk, sizeof bk, "%s.backup", dir);
    for (int f = 0; f < 3; f++)
        snprintf(path[f], sizeof path[f], "%s/vultus.db%s", dir, suffix[f]);
    tc_server s;
    start_with_collection(&s, dir);
    long long id;
    assert_int_equal(enrol(s.port, "p0", 0, &id), 201);
    const char *b[] = {"backup", "--data", dir, bk, NULL};
    assert_int_equal(run_vultus(b, line, sizeof line, NULL, 0), 0);
    assert_int_equal(enrol(s.port, "p1", 1, &id), 201);
    kill(s.pid, SIGKILL);
    waitpid(s.pid, NULL, 0);
    s.pid = 0;
    for (int f = 0; f < 3; f++)
        assert_true(tc_exists(path[f]));
    if (set_immutable(path[2], 1) != 0) {
        print_message("skipped: cannot set the immutable flag here (%s)\n", strerror(errno));
        unlink(bk);
        tc_rm_rf(dir);
        skip();
    }
    char *before[3];
    size_t before_len[3];
    for (int f = 0; f < 3; f++)
        before[f] = slurp(path[f], &before_len[f]);

    const char *r[] = {"restore", "--data", dir, bk, NULL};
    int rc = run_vultus(r, line, sizeof line, err, sizeof err);
    set_immutable(path[2], 0);
    print_message("exit %d: %s", rc, err);
    assert_int_equal(rc, 1);
    assert_string_equal(line, "");
    assert_non_null(strstr(err, "cannot move"));
    assert_non_null(strstr(err, "are back: nothing changed"));
    assert_int_equal(count_aside(dir), 0);
    for (int f = 0; f < 3; f++) {
        size_t len;
        char *now = slurp(path[f], &len);
        assert_non_null(now);
        if (f < 2) assert_true(len == before_len[f] && memcmp(now, before[f], len) == 0);
        free(now);
        free(before[f]);
    }
    /* The flag cleared: the same restore goes in (the backup's one face). */
    assert_int_equal(run_vultus(r, line, sizeof line, NULL, 0), 0);
    json_t *j = parse_line(line);
    assert_int_equal(jint(j, "faces"), 1);
    json_decref(j);
    unlink(bk);
    tc_rm_rf(dir);
}

static void test_restore_refuses_bad_backups(void **state)
{
    (void)state;
    TC_NEED_MODELS();
    char dir[256], bk[400], bad[400], line[2048], err[2048], db[300];
    make_store(dir);
    snprintf(db, sizeof db, "%s/vultus.db", dir);
    snprintf(bk, sizeof bk, "%s.backup", dir);
    snprintf(bad, sizeof bad, "%s.bad", dir);
    const char *b[] = {"backup", "--data", dir, bk, NULL};
    assert_int_equal(run_vultus(b, line, sizeof line, NULL, 0), 0);
    size_t len;
    char *good = slurp(bk, &len);
    assert_true(len > 8192);
    char *before = slurp(db, &(size_t){0});
    size_t before_len;
    free(before);
    before = slurp(db, &before_len);

    struct {
        const char *what, *message;
    } cases[] = {
        {"truncated", NULL},
        {"corrupted", NULL},
        {"not vultus", "not a vultus store"},
        {"text", "not a sound SQLite database"},
        {"empty", "not a vultus store"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        unlink(bad);
        if (c == 0 || c == 1 || c == 3 || c == 4) {
            FILE *f = fopen(bad, "wb");
            if (c == 0) fwrite(good, 1, len / 2, f);
            if (c == 1) {
                /* The second page (a table's b-tree) overwritten. */
                char *copy = malloc(len);
                memcpy(copy, good, len);
                memset(copy + 4096, 0x5a, 4096);
                fwrite(copy, 1, len, f);
                free(copy);
            }
            if (c == 3) fputs("these are not the faces you are looking for\n", f);
            fclose(f);
        } else {
            sqlite3 *s3 = NULL;
            assert_int_equal(sqlite3_open(bad, &s3), SQLITE_OK);
            assert_int_equal(
                sqlite3_exec(s3, "CREATE TABLE t(x); INSERT INTO t VALUES (1)", NULL, NULL, NULL),
                SQLITE_OK);
            sqlite3_close(s3);
        }
        const char *r[] = {"restore", "--data", dir, bad, NULL};
        int rc = run_vultus(r, line, sizeof line, err, sizeof err);
        print_message("%s: exit %d: %s", cases[c].what, rc, err);
        assert_int_equal(rc, 1);
        assert_non_null(strstr(err, "nothing changed"));
        assert_non_null(strstr(err, bad));
        if (cases[c].message) assert_non_null(strstr(err, cases[c].message));
        assert_int_equal(count_aside(dir), 0);
        size_t now_len;
        char *now = slurp(db, &now_len);
        assert_true(now_len == before_len && memcmp(now, before, now_len) == 0);
        free(now);
    }
    /* The good one goes in. */
    const char *r[] = {"restore", "--data", dir, bk, NULL};
    assert_int_equal(run_vultus(r, line, sizeof line, NULL, 0), 0);
    free(good);
    free(before);
    unlink(bad);
    unlink(bk);
    tc_rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backup_while_enrolling),
        cmocka_unit_test(test_backup_refusals),
        cmocka_unit_test(test_backup_refuses_the_store),
        cmocka_unit_test(test_backup_interrupted),
        cmocka_unit_test(test_restore_refused_while_serving),
        cmocka_unit_test(test_restore_over_stale_wal),
        cmocka_unit_test(test_restore_puts_back),
        cmocka_unit_test(test_restore_refuses_bad_backups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
