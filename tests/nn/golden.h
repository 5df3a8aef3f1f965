/* golden.h - header-only reader for the NN golden outputs in tests/nn/golden/.
 *
 * The goldens are produced by tools/golden/make-golden.mjs with the TF.js
 * pure-JS CPU backend (see tools/golden/README.md and golden/index.json).
 * C17, libc (and access(2)) only. Every function is `static inline` so that a test that uses
 * only some of them compiles warning-free under -Wall -Wextra.
 *
 * File format of NAME.INPUT.gold (all integers little-endian):
 *   char     magic[8] = "VTGOLD1\0"
 *   uint32   n_outputs                        (1..GOLDEN_MAX_OUTPUTS)
 *   n_outputs times:
 *     uint32 name_len                         (1..GOLDEN_NAME_MAX-1)
 *     char   name[name_len]                   (no NUL; TF.js output node name)
 *     uint32 rank                             (0..GOLDEN_MAX_RANK)
 *     int64  dim[rank]                        (each >= 0)
 *     float  data[prod(dim)]                  (IEEE-754 binary32, row-major)
 *   nothing after the last output.
 *
 * Inputs (golden_input() reproduces them bit-exactly; batch N = 1 per call):
 *   "random": uint32 s = 937; for each element i in NHWC order:
 *               s = s * 1103515245 + 12345   (mod 2^32)
 *               dst[i] = (float)(s >> 8) / 16777216   (exact in float32)
 *   "face":   face256.rgb is 256x256 RGB u8, row-major (196608 bytes). For a
 *             model input of H x W x C, destination pixel (y, x) reads source
 *             pixel (sy, sx) with integer nearest neighbour
 *               sy = ((2*y + 1) * 256) / (2*H)     (integer division = floor)
 *               sx = ((2*x + 1) * 256) / (2*W)
 *             C == 3: dst = (float)((double)u8 / 255.0) for r, g, b
 *             C == 1: gray = (299*r + 587*g + 114*b + 500) / 1000 (integer
 *                     division), dst = (float)((double)gray / 255.0)
 *   "batch2" golden (blazeface-back only, when present): batch of 2 =
 *             element 0 "random" (seed restarted at 937), element 1 "face";
 *             fill with two golden_input() calls at dst and dst + H*W*C.
 */
#ifndef VULTUS_TESTS_NN_GOLDEN_H
#define VULTUS_TESTS_NN_GOLDEN_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GOLDEN_MAX_OUTPUTS 16
#define GOLDEN_MAX_RANK 6
#define GOLDEN_NAME_MAX 128
#define GOLDEN_FACE_SIZE 256
#define GOLDEN_RANDOM_SEED 937u
#define GOLDEN_MAX_FILE_BYTES ((long)1 << 30)

typedef struct {
    char name[GOLDEN_NAME_MAX];
    int rank;
    int64_t dim[GOLDEN_MAX_RANK];
    float *data;
    size_t count; /* number of floats = prod(dim), 1 for rank 0 */
} golden_output;

typedef struct {
    int n;
    golden_output out[GOLDEN_MAX_OUTPUTS];
} golden_file;

/* ---- internal helpers ---------------------------------------------------- */

typedef struct {
    const unsigned char *p;
    size_t len, pos;
} golden__cursor;

static inline int golden__u32(golden__cursor *c, uint32_t *v)
{
    if (c->len - c->pos < 4) return -1;
    const unsigned char *b = c->p + c->pos;
    *v = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
    c->pos += 4;
    return 0;
}

static inline int golden__i64(golden__cursor *c, int64_t *v)
{
    uint32_t lo, hi;
    if (golden__u32(c, &lo) || golden__u32(c, &hi)) return -1;
    uint64_t u = ((uint64_t)hi << 32) | lo;
    if (u > (uint64_t)INT64_MAX) return -1; /* negative dims are malformed */
    *v = (int64_t)u;
    return 0;
}

/* Reads a whole file; returns malloc'd buffer (caller frees) or NULL. */
static inline unsigned char *golden__slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *buf = NULL;
    long sz = -1;
    if (fseek(f, 0, SEEK_END) == 0) sz = ftell(f);
    if (sz < 0 || sz > GOLDEN_MAX_FILE_BYTES || fseek(f, 0, SEEK_SET) != 0) goto fail;
    buf = (unsigned char *)malloc(sz > 0 ? (size_t)sz : 1);
    if (!buf) goto fail;
    if (sz > 0 && fread(buf, 1, (size_t)sz, f) != (size_t)sz) goto fail;
    if (fgetc(f) != EOF) goto fail; /* file grew or size lied */
    fclose(f);
    *len = (size_t)sz;
    return buf;
fail:
    free(buf);
    fclose(f);
    return NULL;
}

/* ---- public API ---------------------------------------------------------- */

/* Frees the data of every output and zeroes *g. Safe on a zeroed struct. */
static inline void golden_free(golden_file *g)
{
    if (!g) return;
    for (int i = 0; i < GOLDEN_MAX_OUTPUTS; i++)
        free(g->out[i].data);
    memset(g, 0, sizeof *g);
}

/* Reads and validates a .gold file. Returns 0 on success; -1 on any I/O error
 * or malformation (bad magic, counts out of range, empty or NUL-containing
 * name, negative or overflowing dims, truncated data, trailing bytes), in
 * which case *g is left zeroed. Free with golden_free(). */
static inline int golden_read(const char *path, golden_file *g)
{
    if (!g) return -1;
    memset(g, 0, sizeof *g);
    if (!path) return -1;
    size_t len = 0;
    unsigned char *buf = golden__slurp(path, &len);
    if (!buf) return -1;
    golden__cursor c = {buf, len, 0};
    uint32_t n;
    if (len < 8 || memcmp(buf, "VTGOLD1\0", 8) != 0) goto fail;
    c.pos = 8;
    if (golden__u32(&c, &n) || n < 1 || n > GOLDEN_MAX_OUTPUTS) goto fail;
    for (uint32_t k = 0; k < n; k++) {
        golden_output *o = &g->out[k];
        uint32_t name_len, rank;
        if (golden__u32(&c, &name_len) || name_len < 1 || name_len >= GOLDEN_NAME_MAX) goto fail;
        if (c.len - c.pos < name_len) goto fail;
        if (memchr(c.p + c.pos, '\0', name_len)) goto fail;
        memcpy(o->name, c.p + c.pos, name_len);
        o->name[name_len] = '\0';
        c.pos += name_len;
        if (golden__u32(&c, &rank) || rank > GOLDEN_MAX_RANK) goto fail;
        o->rank = (int)rank;
        size_t count = 1;
        for (uint32_t d = 0; d < rank; d++) {
            if (golden__i64(&c, &o->dim[d])) goto fail;
            uint64_t dv = (uint64_t)o->dim[d];
            if (dv != 0 && count > (SIZE_MAX / sizeof(float)) / dv) goto fail;
            count *= (size_t)dv;
        }
        if ((c.len - c.pos) / sizeof(float) < count) goto fail;
        o->count = count;
        o->data = (float *)malloc(count ? count * sizeof(float) : 1);
        if (!o->data) goto fail;
        for (size_t i = 0; i < count; i++) {
            uint32_t bits = 0;
            if (golden__u32(&c, &bits)) goto fail; /* cannot happen: length checked above */
            memcpy(&o->data[i], &bits, sizeof bits);
        }
        g->n = (int)(k + 1);
    }
    if (c.pos != c.len) goto fail;
    free(buf);
    return 0;
fail:
    free(buf);
    golden_free(g);
    return -1;
}

/* Returns the output called `name`, or NULL. */
static inline const golden_output *golden_find(const golden_file *g, const char *name)
{
    if (!g || !name) return NULL;
    for (int i = 0; i < g->n && i < GOLDEN_MAX_OUTPUTS; i++)
        if (strcmp(g->out[i].name, name) == 0) return &g->out[i];
    return NULL;
}

/* Fills dst[h*w*c] (one batch element, NHWC) with the input `kind` ("random"
 * or "face") exactly as make-golden.mjs did; see the top of this file.
 * face_rgb_path (path of golden/face256.rgb) is only used for "face" and may
 * be NULL for "random". "face" requires c == 1 or c == 3. Returns 0, or -1 on
 * bad arguments or when face256.rgb cannot be read or is not 196608 bytes. */
static inline int golden_input(const char *kind, const char *face_rgb_path, int h, int w, int c,
                               float *dst)
{
    if (!kind || !dst || h <= 0 || w <= 0 || c <= 0) return -1;
    if ((size_t)h > SIZE_MAX / (size_t)w ||
        (size_t)h * (size_t)w > SIZE_MAX / sizeof(float) / (size_t)c)
        return -1;
    size_t count = (size_t)h * (size_t)w * (size_t)c;
    if (strcmp(kind, "random") == 0) {
        uint32_t s = GOLDEN_RANDOM_SEED;
        for (size_t i = 0; i < count; i++) {
            s = s * 1103515245u + 12345u;
            dst[i] = (float)((double)(s >> 8) / 16777216.0);
        }
        return 0;
    }
    if (strcmp(kind, "face") != 0 || !face_rgb_path || (c != 1 && c != 3)) return -1;
    if (h > 1000000 || w > 1000000) return -1; /* keeps (2*y+1)*256 in range */
    size_t len = 0;
    unsigned char *rgb = golden__slurp(face_rgb_path, &len);
    if (!rgb) return -1;
    if (len != (size_t)GOLDEN_FACE_SIZE * GOLDEN_FACE_SIZE * 3) {
        free(rgb);
        return -1;
    }
    size_t k = 0;
    for (int64_t y = 0; y < h; y++) {
        int64_t sy = ((2 * y + 1) * GOLDEN_FACE_SIZE) / (2 * (int64_t)h);
        for (int64_t x = 0; x < w; x++) {
            int64_t sx = ((2 * x + 1) * GOLDEN_FACE_SIZE) / (2 * (int64_t)w);
            const unsigned char *p = rgb + (sy * GOLDEN_FACE_SIZE + sx) * 3;
            if (c == 3) {
                dst[k++] = (float)((double)p[0] / 255.0);
                dst[k++] = (float)((double)p[1] / 255.0);
                dst[k++] = (float)((double)p[2] / 255.0);
            } else {
                int gray = (299 * p[0] + 587 * p[1] + 114 * p[2] + 500) / 1000;
                dst[k++] = (float)((double)gray / 255.0);
            }
        }
    }
    free(rgb);
    return 0;
}

/* Compares got[n] against ref[n] in double precision. Outputs (each may be
 * NULL): max |got - ref|, max |ref|, and cosine similarity (1 when both are
 * all-zero, 0 when exactly one is). Returns 0, or -1 when n == 0, a pointer is
 * NULL, or any value in got or ref is NaN/Inf (the outputs are still written;
 * max_abs_err is then +Inf). */
static inline int golden_compare(const float *got, const float *ref, size_t n, double *max_abs_err,
                                 double *max_abs_ref, double *cosine)
{
    double err = 0.0, mref = 0.0, dot = 0.0, ng = 0.0, nr = 0.0;
    int bad = (!got || !ref || n == 0);
    for (size_t i = 0; !bad && i < n; i++) {
        double a = got[i], b = ref[i];
        if (!isfinite(a) || !isfinite(b)) {
            bad = 1;
            break;
        }
        double d = fabs(a - b);
        if (d > err) err = d;
        if (fabs(b) > mref) mref = fabs(b);
        dot += a * b;
        ng += a * a;
        nr += b * b;
    }
    double cs;
    if (ng == 0.0 && nr == 0.0)
        cs = 1.0;
    else if (ng == 0.0 || nr == 0.0)
        cs = 0.0;
    else
        cs = dot / (sqrt(ng) * sqrt(nr));
    if (bad) {
        err = INFINITY;
        cs = 0.0;
    }
    if (max_abs_err) *max_abs_err = err;
    if (max_abs_ref) *max_abs_ref = mref;
    if (cosine) *cosine = cs;
    return bad ? -1 : 0;
}

/* The graph models of the pack that have goldens here, the list the tests going over every
 * model share (face-api's, built in C, are checked through the pipeline; iris has no golden). */
static const char *const golden_models[] = {
    "blazeface-back",
    "blazeface-front",
    "facemesh-detection-full",
    "facemesh",
    "faceres",
    "mobilefacenet",
    "mobileface",
    "gear",
    "age",
    "gender",
    "emotion",
    "antispoof",
    "liveness",
};
#define GOLDEN_N_MODELS (sizeof golden_models / sizeof golden_models[0])

/* Whether the model pack is there (tools/fetch-models; make test fetches it). */
static inline int golden_models_present(void)
{
    return access("models/human/mobilefacenet.json", R_OK) == 0;
}

#endif /* VULTUS_TESTS_NN_GOLDEN_H */
