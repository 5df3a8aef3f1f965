/*
 * The pure geometry of src/face against references written here in plain C, by other means:
 * the similarity transform against a closed-form 2-point solution (complex division) and a
 * normal-equations least-squares solve, IoU against hand-computed values, and weighted NMS
 * against a second implementation with "taken" flags and against hand-blended boxes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "face/face.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* dst = s R src + t with s = 1.7, rotation 30 degrees, t = (12, -5). */
static face_point apply(const double m[6], face_point p)
{
    return (face_point){(float)(m[0] * p.x + m[1] * p.y + m[2]),
                        (float)(m[3] * p.x + m[4] * p.y + m[5])};
}

/* Two points determine a similarity: z = (q1 - q0) / (p1 - p0) as complex numbers. */
static void two_point_reference(const face_point p[2], const face_point q[2], double m[6])
{
    double px = p[1].x - p[0].x, py = p[1].y - p[0].y, qx = q[1].x - q[0].x, qy = q[1].y - q[0].y;
    double d = px * px + py * py;
    double a = (qx * px + qy * py) / d, b = (qy * px - qx * py) / d; /* z = a + ib */
    m[0] = a, m[1] = -b, m[2] = q[0].x - (a * p[0].x - b * p[0].y);
    m[3] = b, m[4] = a, m[5] = q[0].y - (b * p[0].x + a * p[0].y);
}

/* Least squares for (a, b, tx, ty) in qx = a px - b py + tx, qy = b px + a py + ty by the
 * normal equations, solved with Gaussian elimination (partial pivoting). */
static void normal_equations_reference(const face_point *p, const face_point *q, int n, double m[6])
{
    double A[4][5] = {{0}};
    for (int i = 0; i < n; i++) {
        double rows[2][5] = {{p[i].x, -p[i].y, 1, 0, q[i].x}, {p[i].y, p[i].x, 0, 1, q[i].y}};
        for (int r = 0; r < 2; r++)
            for (int j = 0; j < 4; j++)
                for (int k = 0; k < 5; k++)
                    A[j][k] += rows[r][j] * rows[r][k];
    }
    for (int c = 0; c < 4; c++) {
        int piv = c;
        for (int r = c + 1; r < 4; r++)
            if (fabs(A[r][c]) > fabs(A[piv][c])) piv = r;
        for (int k = 0; k < 5; k++) {
            double t = A[c][k];
            A[c][k] = A[piv][k];
            A[piv][k] = t;
        }
        for (int r = 0; r < 4; r++) {
            if (r == c) continue;
            double f = A[r][c] / A[c][c];
            for (int k = c; k < 5; k++)
                A[r][k] -= f * A[c][k];
        }
    }
    double a = A[0][4] / A[0][0], b = A[1][4] / A[1][1], tx = A[2][4] / A[2][2],
           ty = A[3][4] / A[3][3];
    m[0] = a, m[1] = -b, m[2] = tx, m[3] = b, m[4] = a, m[5] = ty;
}

static void assert_matrix_near(const float got[6], const double want[6], double tol)
{
    for (int i = 0; i < 6; i++) {
        if (fabs(got[i] - want[i]) > tol * (1 + fabs(want[i])))
            fail_msg("m[%d] = %.6f, reference %.6f", i, got[i], want[i]);
    }
}

static void test_similarity_two_points(void **state)
{
    (void)state;
    const face_point p[2] = {{38.3f, 51.7f}, {73.5f, 51.5f}};
    const face_point q[2] = {{410.0f, 220.0f}, {505.0f, 262.0f}};
    double want[6];
    two_point_reference(p, q, want);
    float m[6];
    assert_int_equal(face_similarity_transform(p, q, 2, m), 0);
    assert_matrix_near(m, want, 1e-5);
}

static void test_similarity_exact_and_noisy(void **state)
{
    (void)state;
    const double c = cos(30 * M_PI / 180) * 1.7, s = sin(30 * M_PI / 180) * 1.7;
    const double truth[6] = {c, -s, 12, s, c, -5};
    face_point p[5] = {
        {38.29f, 51.70f}, {73.53f, 51.50f}, {56.03f, 71.74f}, {41.55f, 92.37f}, {70.73f, 92.20f}};
    face_point q[5];
    for (int i = 0; i < 5; i++)
        q[i] = apply(truth, p[i]);
    float m[6];
    assert_int_equal(face_similarity_transform(p, q, 5, m), 0);
    assert_matrix_near(m, truth, 1e-5);

    /* with noise the answer is the least-squares one */
    const float noise[5][2] = {
        {1.5f, -0.7f}, {-2.1f, 0.4f}, {0.3f, 1.9f}, {-0.8f, -1.2f}, {1.1f, 0.6f}};
    for (int i = 0; i < 5; i++)
        q[i].x += noise[i][0], q[i].y += noise[i][1];
    double want[6];
    normal_equations_reference(p, q, 5, want);
    assert_int_equal(face_similarity_transform(p, q, 5, m), 0);
    assert_matrix_near(m, want, 1e-4);
}

/* A reflection is not a similarity here: the best proper rotation is returned, whose
 * residual is larger than the reflection's would be, but the scale stays positive. */
static void test_similarity_no_reflection(void **state)
{
    (void)state;
    face_point p[3] = {{0, 0}, {10, 0}, {0, 10}};
    face_point q[3] = {{0, 0}, {-10, 0}, {0, 10}}; /* mirrored in x */
    float m[6];
    assert_int_equal(face_similarity_transform(p, q, 3, m), 0);
    double det = (double)m[0] * m[4] - (double)m[1] * m[3];
    assert_true(det >= 0);
    double want[6];
    normal_equations_reference(p, q, 3, want);
    assert_matrix_near(m, want, 1e-4);
}

static void test_similarity_degenerate(void **state)
{
    (void)state;
    face_point p[3] = {{5, 5}, {5, 5}, {5, 5}}, q[3] = {{1, 2}, {3, 4}, {5, 6}};
    float m[6];
    assert_true(face_similarity_transform(p, q, 3, m) < 0);
    assert_true(face_similarity_transform(p, q, 1, m) < 0);
}

static face_box box(float x, float y, float w, float h, float score)
{
    face_box b;
    memset(&b, 0, sizeof b);
    b.x = x, b.y = y, b.w = w, b.h = h, b.score = score;
    for (int k = 0; k < 6; k++)
        b.keypoints[k] = (face_point){x + (float)k, y + 2.0f * (float)k};
    return b;
}

static void test_iou(void **state)
{
    (void)state;
    face_box a = box(0, 0, 10, 10, 1), b = box(5, 0, 10, 10, 1), c = box(20, 20, 5, 5, 1);
    assert_float_equal(face_iou(&a, &a), 1.0f, 1e-6);
    assert_float_equal(face_iou(&a, &b), 50.0f / 150.0f, 1e-6);
    assert_float_equal(face_iou(&a, &c), 0.0f, 1e-6);
    face_box inner = box(2, 2, 5, 5, 1);
    assert_float_equal(face_iou(&a, &inner), 25.0f / 100.0f, 1e-6);
}

/* A second weighted NMS: indices sorted by score, "taken" flags, clusters blended. */
#define MAX_BOXES 60

static int nms_reference(const face_box *in, int n, float thr, face_box *out)
{
    int order[MAX_BOXES];
    char taken[MAX_BOXES] = {0};
    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (in[order[j]].score > in[order[i]].score) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    int k = 0;
    for (int i = 0; i < n; i++) {
        const face_box *top = &in[order[i]];
        if (taken[order[i]]) continue;
        double w = 0, x0 = 0, y0 = 0, x1 = 0, y1 = 0, kp[6][2] = {{0}};
        for (int j = i; j < n; j++) {
            const face_box *b = &in[order[j]];
            if (taken[order[j]]) continue;
            if (j != i && face_iou(top, b) <= thr) continue;
            taken[order[j]] = 1;
            w += b->score;
            x0 += b->score * b->x, y0 += b->score * b->y;
            x1 += b->score * (b->x + b->w), y1 += b->score * (b->y + b->h);
            for (int q = 0; q < 6; q++)
                kp[q][0] += b->score * b->keypoints[q].x, kp[q][1] += b->score * b->keypoints[q].y;
        }
        face_box r = *top;
        r.x = (float)(x0 / w), r.y = (float)(y0 / w);
        r.w = (float)(x1 / w) - r.x, r.h = (float)(y1 / w) - r.y;
        for (int q = 0; q < 6; q++)
            r.keypoints[q] = (face_point){(float)(kp[q][0] / w), (float)(kp[q][1] / w)};
        out[k++] = r;
    }
    return k;
}

static void test_weighted_nms_hand(void **state)
{
    (void)state;
    face_box b[3] = {box(0, 0, 10, 10, 0.6f), box(100, 100, 20, 20, 0.5f), box(1, 1, 10, 10, 0.9f)};
    int n = face_weighted_nms(b, 3, 0.3f);
    assert_int_equal(n, 2);
    /* the 0.9 and 0.6 boxes blend: x = (0.9 * 1 + 0.6 * 0) / 1.5 */
    assert_float_equal(b[0].score, 0.9f, 1e-6);
    assert_float_equal(b[0].x, 0.6f, 1e-5);
    assert_float_equal(b[0].y, 0.6f, 1e-5);
    assert_float_equal(b[0].w, 10.0f, 1e-5);
    assert_float_equal(b[0].keypoints[3].x, 0.6f + 3.0f, 1e-5);
    assert_float_equal(b[1].x, 100.0f, 1e-6);
    assert_float_equal(b[1].score, 0.5f, 1e-6);
}

static void test_weighted_nms_random(void **state)
{
    (void)state;
    srand(937);
    for (int round = 0; round < 50; round++) {
        int n = 1 + rand() % MAX_BOXES;
        face_box in[MAX_BOXES], got[MAX_BOXES], want[MAX_BOXES];
        for (int i = 0; i < n; i++) {
            float x = (float)(rand() % 200), y = (float)(rand() % 200),
                  s = 10.0f + (float)(rand() % 40);
            in[i] = box(x, y, s, s * (0.8f + 0.4f * (float)rand() / (float)RAND_MAX),
                        0.01f + 0.98f * (float)rand() / (float)RAND_MAX);
        }
        memcpy(got, in, sizeof(face_box) * (size_t)n);
        int k = face_weighted_nms(got, n, 0.3f);
        int kw = nms_reference(in, n, 0.3f, want);
        assert_int_equal(k, kw);
        for (int i = 0; i < k; i++) {
            assert_float_equal(got[i].score, want[i].score, 1e-6);
            assert_float_equal(got[i].x, want[i].x, 1e-3);
            assert_float_equal(got[i].y, want[i].y, 1e-3);
            assert_float_equal(got[i].w, want[i].w, 1e-3);
            assert_float_equal(got[i].h, want[i].h, 1e-3);
            for (int q = 0; q < 6; q++)
                assert_float_equal(got[i].keypoints[q].x, want[i].keypoints[q].x, 1e-3);
            if (i > 0) assert_true(got[i - 1].score >= got[i].score);
        }
    }
    assert_int_equal(face_weighted_nms(NULL, 0, 0.3f), 0);
}

static void test_similarity_of_unit_vectors(void **state)
{
    (void)state;
    float a[4] = {0.5f, 0.5f, 0.5f, 0.5f}, b[4] = {0.5f, -0.5f, 0.5f, -0.5f};
    assert_float_equal(face_similarity(a, a, 4), 1.0f, 1e-6);
    assert_float_equal(face_similarity(a, b, 4), 0.0f, 1e-6);
    assert_string_equal(face_embedder_id(FACE_EMBEDDER_MOBILEFACENET), "mobilefacenet-v1");
    assert_int_equal(face_embedding_dim(FACE_EMBEDDER_FACERES), 1024);
    assert_int_equal(face_embedding_dim(FACE_EMBEDDER_FACEAPI_RESNET), 128);
    assert_string_equal(face_embedder_id(FACE_EMBEDDER_DEFAULT),
                        face_embedder_id(FACE_EMBEDDER_FACEAPI_RESNET));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_similarity_two_points),
        cmocka_unit_test(test_similarity_exact_and_noisy),
        cmocka_unit_test(test_similarity_no_reflection),
        cmocka_unit_test(test_similarity_degenerate),
        cmocka_unit_test(test_iou),
        cmocka_unit_test(test_weighted_nms_hand),
        cmocka_unit_test(test_weighted_nms_random),
        cmocka_unit_test(test_similarity_of_unit_vectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
