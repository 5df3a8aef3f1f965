/*
 * Shared by the engine's tests that build graphs of random weights: a seeded xorshift
 * generator, aligned buffers and random constants. Header-only (static inline functions) so
 * each test stays one program. Include after <cmocka.h>.
 */
#ifndef VULTUS_TESTS_NN_HELPERS_H
#define VULTUS_TESTS_NN_HELPERS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/base.h"
#include "nn/graph.h"

static uint64_t rng_state;

static inline void rng_seed(uint64_t seed)
{
    rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
}

/* Uniform in [0, 1). */
static inline float rng_unit(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)(rng_state >> 40) / (float)(1ull << 24);
}

static inline float rng_range(float lo, float hi)
{
    return lo + (hi - lo) * rng_unit();
}

/* n floats, 64-byte aligned, with the slack XNNPACK may read past the end. */
static inline float *buffer_new(size_t n)
{
    float *p = base_aligned_alloc(64, (n ? n : 1) * sizeof(float) + NN_XNN_EXTRA_BYTES);
    assert_non_null(p);
    return p;
}

/* A constant of random values in [lo, hi]. */
static inline int add_const(nn_graph *g, nn_shape s, float lo, float hi)
{
    char name[32];
    snprintf(name, sizeof name, "const%d", g->n_tensors);
    size_t n = (size_t)nn_shape_numel(&s, 1);
    float *v = malloc((n ? n : 1) * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = rng_range(lo, hi);
    int t = nn_graph_add_const(g, name, NN_DTYPE_F32, &s, v);
    free(v);
    assert_true(t >= 0);
    return t;
}

#endif
