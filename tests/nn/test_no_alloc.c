/*
 * A run never allocates: after the first run at a batch size (which sets XNNPACK's operators
 * up), nn_context_run() must not call malloc, calloc or realloc. This program interposes the
 * allocator (its malloc wins over libc's for every library in the process) and counts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "base/base.h"
#include "nn/nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Sanitizers bring their own allocator and interpose malloc themselves; counting by
 * interposition only works in a plain build (make check skips this test). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define VULTUS_NO_INTERPOSE 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define VULTUS_NO_INTERPOSE 1
#endif
#endif

#ifndef VULTUS_NO_INTERPOSE
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static volatile int counting;
static volatile long allocations;

void *malloc(size_t n)
{
    if (counting) allocations++;
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    if (counting) allocations++;
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    if (counting) allocations++;
    return __libc_realloc(p, n);
}

int posix_memalign(void **p, size_t align, size_t n)
{
    if (counting) allocations++;
    *p = __libc_memalign(align, n);
    return *p ? 0 : 12;
}
#else
static volatile int counting;
static volatile long allocations;
#endif

static void check_model(const char *name, int threads)
{
    char path[256];
    snprintf(path, sizeof path, "models/human/%s.json", name);
    nn_model *m = NULL;
    if (nn_model_load_tfjs(path, NULL, &m)) fail_msg("%s", base_error_message());
    nn_context *ctx = NULL;
    nn_context_options co = {.max_batch = 4, .threads = threads};
    assert_int_equal(nn_context_create(m, &co, &ctx), 0);
    for (int batch = 1; batch <= 4; batch += 3) {
        assert_int_equal(nn_context_run(ctx, batch), 0); /* sets the operators up for this batch */
        allocations = 0;
        counting = 1;
        for (int i = 0; i < 3; i++)
            nn_context_run(ctx, batch);
        counting = 0;
        printf("  %s batch %d threads %d: %ld allocations in 3 runs\n", name, batch, threads,
               allocations);
        assert_int_equal(allocations, 0);
    }
    nn_context_destroy(ctx);
    nn_model_destroy(m);
}

static void test_runs_do_not_allocate(void **state)
{
    (void)state;
    if (access("models/human/mobilefacenet.json", R_OK) != 0) skip();
    /* Every kind of op the pack uses appears in one of these. */
    const char *models[] = {"mobilefacenet", "blazeface-back", "facemesh-detection-full",
                            "age",           "gear",           "faceres"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
        check_model(models[i], 1);
    check_model("mobilefacenet", 2);
}

int main(void)
{
#ifdef VULTUS_NO_INTERPOSE
    if (1) {
#else
    if (getenv("VULTUS_SANITIZED")) {
#endif
        printf("[  SKIPPED ] allocation counting under sanitizers\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_runs_do_not_allocate)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
