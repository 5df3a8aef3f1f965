/*
 * face_analyze's detection against a reference written here in plain C: the BlazeFace model
 * is run directly through the engine on the letterboxed photo, and everything after it is
 * recomputed by other means than src/face/detect.c and geometry.c: the 896 anchors from
 * MediaPipe's SSD anchor rule (layer by layer, strides 16, 32, 32, 32 with two anchors each,
 * anchors of equal strides sharing a grid), box and keypoint decoding, the sigmoid and score
 * threshold, weighted NMS with "taken" flags, the minimum size, the half-face rule, the order
 * by area and the WIDER-style box. Then both must give the same faces on the model pack's
 * group photos. Skips when models/ is absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "base/base.h"
#include "face/face.h"
#include "img/img.h"
#include "nn/nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MODEL "models/human/blazeface-back.json"
#define S 256
#define MAX_BOXES 4096

typedef struct ref_box {
    double x0, y0, x1, y1, score;
    double kp[6][2];
} ref_box;

/*
 * MediaPipe's ssd_anchors_calculator for the back model: 4 layers with strides 16, 32, 32, 32;
 * consecutive layers of equal stride share one grid; each layer adds 2 anchors per cell
 * (aspect ratio 1 and the interpolated scale), fixed size: only centres, in [0, 1].
 */
static int reference_anchors(double anchors[][2])
{
    static const int strides[4] = {16, 32, 32, 32};
    int n = 0, layer = 0;
    while (layer < 4) {
        int last = layer, per_cell = 0;
        while (last < 4 && strides[last] == strides[layer])
            per_cell += 2, last++;
        int grid = (int)ceil((double)S / strides[layer]);
        for (int y = 0; y < grid; y++)
            for (int x = 0; x < grid; x++)
                for (int a = 0; a < per_cell; a++) {
                    anchors[n][0] = (x + 0.5) / grid;
                    anchors[n][1] = (y + 0.5) / grid;
                    n++;
                }
        layer = last;
    }
    return n;
}

static double iou(const ref_box *a, const ref_box *b)
{
    double w = fmin(a->x1, b->x1) - fmax(a->x0, b->x0), h = fmin(a->y1, b->y1) - fmax(a->y0, b->y0);
    if (w <= 0 || h <= 0) return 0;
    double i = w * h;
    return i / ((a->x1 - a->x0) * (a->y1 - a->y0) + (b->x1 - b->x0) * (b->y1 - b->y0) - i);
}

static int by_score(const void *pa, const void *pb)
{
    const ref_box *a = pa, *b = pb;
    return (a->score < b->score) - (a->score > b->score);
}

static int by_area(const void *pa, const void *pb)
{
    const ref_box *a = pa, *b = pb;
    double x = (a->x1 - a->x0) * (a->y1 - a->y0), y = (b->x1 - b->x0) * (b->y1 - b->y0);
    return (x < y) - (x > y);
}

/* Faces of `image` (RGB, longer side > 400 so the detector makes one pass) by the reference. */
static int reference_detect(const img_image *image, ref_box *out)
{
    /* letterbox: the image scaled so its longer side is 256, centred */
    int side = image->width > image->height ? image->width : image->height;
    int w = (int)lround(image->width * (double)S / side),
        h = (int)lround(image->height * (double)S / side);
    img_image scaled = {0};
    assert_int_equal(img_resize(image, w, h, &scaled), 0);
    int ox = (S - w) / 2, oy = (S - h) / 2;
    nn_model *m = NULL;
    nn_context *c = NULL;
    assert_int_equal(nn_model_load_tfjs(MODEL, NULL, &m), 0);
    nn_context_options co = {.max_batch = 1};
    assert_int_equal(nn_context_create(m, &co, &c), 0);
    float *in = nn_context_input(c, 0);
    for (int v = 0; v < S; v++)
        for (int u = 0; u < S; u++)
            for (int ch = 0; ch < 3; ch++) {
                int x = u - ox, y = v - oy;
                float p = 0.0f; /* padding: 0 in the model's [-1, 1] */
                if (x >= 0 && x < w && y >= 0 && y < h)
                    p = scaled.data[((size_t)y * w + x) * 3 + ch] / 127.5f - 1.0f;
                in[((size_t)v * S + u) * 3 + ch] = p;
            }
    assert_int_equal(nn_context_run(c, 1), 0);
    /* outputs by shape: [1, 512 | 384, 1 | 16] */
    const float *score[2] = {0}, *reg[2] = {0};
    for (int i = 0; i < nn_model_output_count(m); i++) {
        nn_io_info info;
        const float *d = nn_context_output(c, i, &info);
        int level = info.dim[1] == 512 ? 0 : 1;
        if (info.dim[2] == 1)
            score[level] = d;
        else
            reg[level] = d;
    }
    assert_non_null(score[0]);
    assert_non_null(score[1]);
    static double anchors[896][2];
    assert_int_equal(reference_anchors(anchors), 896);

    static ref_box raw[MAX_BOXES];
    int n = 0;
    const double fx = (double)image->width / w, fy = (double)image->height / h;
    for (int i = 0; i < 896; i++) {
        int level = i < 512 ? 0 : 1, k = level ? i - 512 : i;
        double p = 1.0 / (1.0 + exp(-(double)score[level][k]));
        if (p < 0.5) continue;
        const float *r = reg[level] + (size_t)k * 16;
        double cx = anchors[i][0] * S + r[0], cy = anchors[i][1] * S + r[1];
        if (!(r[2] > 0 && r[3] > 0)) continue;
        ref_box *b = &raw[n++];
        b->x0 = (cx - r[2] / 2 - ox) * fx, b->x1 = (cx + r[2] / 2 - ox) * fx;
        b->y0 = (cy - r[3] / 2 - oy) * fy, b->y1 = (cy + r[3] / 2 - oy) * fy;
        b->score = p;
        for (int q = 0; q < 6; q++) {
            b->kp[q][0] = (anchors[i][0] * S + r[4 + 2 * q] - ox) * fx;
            b->kp[q][1] = (anchors[i][1] * S + r[5 + 2 * q] - oy) * fy;
        }
    }
    nn_context_destroy(c);
    nn_model_destroy(m);
    img_free(&scaled);

    /* weighted NMS (IoU > 0.3 blends, weighted by score), with taken flags */
    qsort(raw, (size_t)n, sizeof *raw, by_score);
    static char taken[MAX_BOXES];
    memset(taken, 0, sizeof taken);
    ref_box merged[MAX_BOXES];
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (taken[i]) continue;
        ref_box sum = {0};
        double wsum = 0;
        for (int j = i; j < n; j++) {
            if (taken[j] || (j != i && iou(&raw[i], &raw[j]) <= 0.3)) continue;
            taken[j] = 1;
            double wt = raw[j].score;
            wsum += wt;
            sum.x0 += wt * raw[j].x0, sum.y0 += wt * raw[j].y0;
            sum.x1 += wt * raw[j].x1, sum.y1 += wt * raw[j].y1;
            for (int q = 0; q < 6; q++)
                sum.kp[q][0] += wt * raw[j].kp[q][0], sum.kp[q][1] += wt * raw[j].kp[q][1];
        }
        ref_box b = {sum.x0 / wsum, sum.y0 / wsum, sum.x1 / wsum,
                     sum.y1 / wsum, raw[i].score,  {{0}}};
        for (int q = 0; q < 6; q++)
            b.kp[q][0] = sum.kp[q][0] / wsum, b.kp[q][1] = sum.kp[q][1] / wsum;
        merged[k++] = b;
    }
    /* at least 20 px, and not mostly (> 60% of its area) inside a better face kept before */
    int kept = 0;
    for (int i = 0; i < k; i++) {
        ref_box *b = &merged[i];
        if (fmin(b->x1 - b->x0, b->y1 - b->y0) < 20) continue;
        int inside = 0;
        for (int j = 0; j < kept && !inside; j++) {
            double iw = fmin(out[j].x1, b->x1) - fmax(out[j].x0, b->x0);
            double ih = fmin(out[j].y1, b->y1) - fmax(out[j].y0, b->y0);
            inside = iw > 0 && ih > 0 && iw * ih > 0.6 * (b->x1 - b->x0) * (b->y1 - b->y0);
        }
        if (!inside) out[kept++] = *b;
    }
    qsort(out, (size_t)kept, sizeof *out, by_area);
    return kept;
}

static void test_detection_matches_reference(void **state)
{
    (void)state;
    if (access(MODEL, R_OK) != 0) {
        printf("skip: models/ not present (make models)\n");
        skip();
    }
    face_models_options mo = {.load = FACE_STAGE_DETECT};
    face_models *models = NULL;
    face_context *ctx = NULL;
    assert_int_equal(face_models_load(&mo, &models), 0);
    assert_int_equal(face_context_create(models, 1, &ctx), 0);
    int total = 0;
    for (int s = 1; s <= 6; s++) {
        char path[64];
        snprintf(path, sizeof path, "models/samples/sample%d.jpg", s);
        img_image im = {0};
        assert_int_equal(img_load_file(path, NULL, &im, NULL), 0);
        assert_true(im.width > 400 || im.height > 400);
        static ref_box want[MAX_BOXES];
        int n = reference_detect(&im, want);
        face_options o = {.detector = FACE_DETECTOR_BLAZEFACE};
        face_result r;
        assert_int_equal(face_analyze(ctx, &im, &o, &r), 0);
        printf("%s: %d faces, reference %d\n", path, r.n_faces, n);
        assert_int_equal(r.n_faces, n);
        for (int i = 0; i < n; i++) {
            const ref_box *b = &want[i];
            const face_info *f = &r.faces[i];
            /* the reported box: 0.9x as wide, 1.2x as tall, centred 0.06 heights higher */
            double bw = b->x1 - b->x0, bh = b->y1 - b->y0;
            double x = b->x0 + 0.05 * bw, y = b->y0 + 0.5 * bh - 0.06 * bh - 0.6 * bh;
            double tol = 0.002 * fmax(bw, bh) + 0.05;
            if (fabs(f->x - x) > tol || fabs(f->y - y) > tol || fabs(f->w - 0.9 * bw) > tol ||
                fabs(f->h - 1.2 * bh) > tol)
                fail_msg("%s face %d: box %.2f %.2f %.2f %.2f, reference %.2f %.2f %.2f %.2f", path,
                         i, f->x, f->y, f->w, f->h, x, y, 0.9 * bw, 1.2 * bh);
            assert_true(fabs(f->score - b->score) < 1e-4);
            for (int q = 0; q < 6; q++)
                if (fabs(f->keypoints[q].x - b->kp[q][0]) > tol ||
                    fabs(f->keypoints[q].y - b->kp[q][1]) > tol)
                    fail_msg("%s face %d keypoint %d: %.2f %.2f, reference %.2f %.2f", path, i, q,
                             f->keypoints[q].x, f->keypoints[q].y, b->kp[q][0], b->kp[q][1]);
        }
        total += n;
        face_result_free(&r);
        img_free(&im);
    }
    assert_int_equal(total, 3 + 3 + 3 + 4 + 5 + 4);
    face_context_destroy(ctx);
    face_models_destroy(models);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detection_matches_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
