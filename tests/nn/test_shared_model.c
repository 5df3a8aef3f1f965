/*
 * One model, many threads: each thread has its own context on the same immutable model and
 * gets exactly the single-threaded result, while the others run. (Also run under
 * ThreadSanitizer: make tsan-nn.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "base/base.h"
#include "nn/nn.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define THREADS 3
#define ROUNDS 20

typedef struct job {
    const nn_model *m;
    const float *input;
    size_t in_count;
    const float *expect;
    size_t out_count;
    int mismatches;
    int errors;
} job;

static void *worker(void *arg)
{
    job *j = arg;
    nn_context *ctx = NULL;
    if (nn_context_create(j->m, NULL, &ctx)) {
        j->errors++;
        return NULL;
    }
    for (int r = 0; r < ROUNDS; r++) {
        memcpy(nn_context_input(ctx, 0), j->input, j->in_count * sizeof(float));
        if (nn_context_run(ctx, 1)) {
            j->errors++;
            break;
        }
        if (memcmp(nn_context_output(ctx, 0, NULL), j->expect, j->out_count * sizeof(float)) != 0)
            j->mismatches++;
    }
    nn_context_destroy(ctx);
    return NULL;
}

static void test_threads_share_a_model(void **state)
{
    (void)state;
    if (access("models/human/mobilefacenet.json", R_OK) != 0) skip();
    nn_model *m = NULL;
    if (nn_model_load_tfjs("models/human/mobilefacenet.json", NULL, &m))
        fail_msg("%s", base_error_message());
    static float input[112 * 112 * 3], expect[192];
    for (size_t i = 0; i < sizeof input / sizeof input[0]; i++)
        input[i] = (float)((i * 7919) % 255) / 255.0f;
    nn_context *ctx = NULL;
    assert_int_equal(nn_context_create(m, NULL, &ctx), 0);
    memcpy(nn_context_input(ctx, 0), input, sizeof input);
    assert_int_equal(nn_context_run(ctx, 1), 0);
    memcpy(expect, nn_context_output(ctx, 0, NULL), sizeof expect);
    nn_context_destroy(ctx);
    pthread_t th[THREADS];
    job jobs[THREADS];
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (job){m, input, sizeof input / sizeof input[0], expect, 192, 0, 0};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &jobs[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(jobs[i].errors, 0);
        assert_int_equal(jobs[i].mismatches, 0);
    }
    nn_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_threads_share_a_model)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
