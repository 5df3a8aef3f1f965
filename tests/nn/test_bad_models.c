/*
 * Bad model files: each malformation must give an error that names the problem, never a crash.
 * The models are small TF.js graph models written here, plus corrupted copies of a real one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "base/base.h"
#include "nn/nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static void write_file(const char *name, const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* A valid tiny model: input [N,4,4,2] -> conv 1x1 (2->3, bias, relu) -> output. Weights are 6
 * floats of filter and 3 of bias: 36 bytes. */
static const char *node_list =
    "{\"name\":\"x\",\"op\":\"Placeholder\",\"attr\":{\"shape\":{\"shape\":{\"dim\":[{\"size\":\"-"
    "1\"},"
    "{\"size\":\"4\"},{\"size\":\"4\"},{\"size\":\"2\"}]}}}},"
    "{\"name\":\"w\",\"op\":\"Const\"},{\"name\":\"b\",\"op\":\"Const\"},"
    "{\"name\":\"y\",\"op\":\"%s\",\"input\":[\"%s\",\"w\",\"b\"],\"attr\":{\"padding\":{\"s\":"
    "\"VkFMSUQ=\"},"
    "\"strides\":{\"list\":{\"i\":[\"1\",\"1\",\"1\",\"1\"]}},\"fused_ops\":{\"list\":{\"s\":["
    "\"Qmlhc0FkZA==\",\"UmVsdQ==\"]}},"
    "\"num_args\":{\"i\":\"1\"}}}%s";

static void write_model(const char *op, const char *conv_input, const char *extra_nodes,
                        const char *wshape, size_t shard_bytes)
{
    char nodes[4096], json[8192];
    snprintf(nodes, sizeof nodes, node_list, op, conv_input, extra_nodes);
    snprintf(json, sizeof json,
             "{\"format\":\"graph-model\",\"modelTopology\":{\"node\":[%s]},\"weightsManifest\":[{"
             "\"paths\":"
             "[\"w.shard\"],\"weights\":[{\"name\":\"w\",\"shape\":%s,\"dtype\":\"float32\"},{"
             "\"name\":\"b\","
             "\"shape\":[3],\"dtype\":\"float32\"}]}]}",
             nodes, wshape);
    write_file("model.json", json, strlen(json));
    float shard[64];
    for (int i = 0; i < 64; i++)
        shard[i] = (float)i / 8;
    write_file("w.shard", shard, shard_bytes);
}

static void expect_error(int want_code, const char *needle)
{
    char path[512];
    snprintf(path, sizeof path, "%s/model.json", dir);
    nn_model *m = (nn_model *)1;
    base_error_clear();
    int rc = nn_model_load_tfjs(path, NULL, &m);
    const char *msg = base_error_message();
    printf("  -> %d %s: %s\n", rc, base_strerror(rc), msg);
    assert_null(m);
    if (want_code)
        assert_int_equal(rc, want_code);
    else
        assert_true(rc < 0);
    if (!strstr(msg, needle)) fail_msg("error message '%s' does not mention '%s'", msg, needle);
}

static void test_valid_tiny_model_runs(void **state)
{
    (void)state;
    write_model("_FusedConv2D", "x", "", "[1,1,2,3]", 36);
    char path[512];
    snprintf(path, sizeof path, "%s/model.json", dir);
    nn_model *m = NULL;
    int rc = nn_model_load_tfjs(path, NULL, &m);
    if (rc) fail_msg("%s", base_error_message());
    nn_context *ctx = NULL;
    assert_int_equal(nn_context_create(m, NULL, &ctx), 0);
    float *x = nn_context_input(ctx, 0);
    for (int i = 0; i < 32; i++)
        x[i] = (i % 2) ? 1.0f : -1.0f;
    assert_int_equal(nn_context_run(ctx, 1), 0);
    nn_io_info info;
    const float *y = nn_context_output(ctx, 0, &info);
    /* w = [[0,.125,.25],[.375,.5,.625]], b = [.75,.875,1]; x = (-1, 1): y = relu(-w0 + w1 + b). */
    assert_float_equal(y[0], 0.375f + 0.75f, 1e-6);
    assert_float_equal(y[1], 0.375f + 0.875f, 1e-6);
    assert_float_equal(y[2], 0.375f + 1.0f, 1e-6);
    assert_int_equal(info.rank, 4);
    assert_int_equal(info.dim[3], 3);
    nn_context_destroy(ctx);
    nn_model_destroy(m);
}

static void test_truncated_shard(void **state)
{
    (void)state;
    write_model("_FusedConv2D", "x", "", "[1,1,2,3]", 20);
    expect_error(BASE_ERR_FORMAT, "bytes");
}

static void test_shard_longer_than_manifest(void **state)
{
    (void)state;
    write_model("_FusedConv2D", "x", "", "[1,1,2,3]", 40);
    expect_error(BASE_ERR_FORMAT, "the manifest describes 36 bytes but the shards hold 40");
}

static void test_missing_shard(void **state)
{
    (void)state;
    write_model("_FusedConv2D", "x", "", "[1,1,2,3]", 36);
    char path[512];
    snprintf(path, sizeof path, "%s/w.shard", dir);
    unlink(path);
    expect_error(BASE_ERR_IO, "w.shard");
}

static void test_missing_model_file(void **state)
{
    (void)state;
    nn_model *m = NULL;
    int rc = nn_model_load_tfjs("/nonexistent/vultus/model.json", NULL, &m);
    assert_int_equal(rc, BASE_ERR_IO);
    assert_non_null(strstr(base_error_message(), "/nonexistent/vultus/model.json"));
}

static void test_unknown_op(void **state)
{
    (void)state;
    write_model("FancyConv3000", "x", "", "[1,1,2,3]", 36);
    expect_error(BASE_ERR_UNSUPPORTED, "unknown op FancyConv3000");
}

static void test_cycle(void **state)
{
    (void)state;
    /* y reads z, z reads y. */
    write_model("_FusedConv2D", "z", ",{\"name\":\"z\",\"op\":\"Relu\",\"input\":[\"y\"]}",
                "[1,1,2,3]", 36);
    expect_error(BASE_ERR_FORMAT, "cycle");
}

static void test_absurd_dimensions(void **state)
{
    (void)state;
    write_model("_FusedConv2D", "x", "", "[100000,100000,2,3]", 36);
    expect_error(0, "weight w");
}

static void test_filter_does_not_fit(void **state)
{
    (void)state;
    write_model("_FusedConv2D", "x", "", "[1,1,3,2]", 36);
    expect_error(BASE_ERR_FORMAT, "does not fit");
}

static void test_dangling_input(void **state)
{
    (void)state;
    write_model("_FusedConv2D", "nothere", "", "[1,1,2,3]", 36);
    expect_error(BASE_ERR_FORMAT, "input nothere does not exist");
}

static void test_invalid_json(void **state)
{
    (void)state;
    const char *bad = "{\"modelTopology\": {\"node\": [ {\"name\": \"x\", ";
    write_file("model.json", bad, strlen(bad));
    expect_error(BASE_ERR_FORMAT, "not valid JSON");
    const char *deep = NULL;
    char *buf = malloc(200001);
    assert_non_null(buf);
    memset(buf, '[', 100000);
    memset(buf + 100000, ']', 100000);
    buf[200000] = '\0';
    deep = buf;
    write_file("model.json", deep, strlen(deep));
    expect_error(BASE_ERR_FORMAT, "JSON");
    free(buf);
}

static void test_shard_path_escape(void **state)
{
    (void)state;
    const char *json =
        "{\"modelTopology\":{\"node\":[]},\"weightsManifest\":[{\"paths\":[\"../../etc/passwd\"],"
        "\"weights\":[]}]}";
    write_file("model.json", json, strlen(json));
    expect_error(BASE_ERR_FORMAT, "not a plain file name");
}

static void test_truncated_real_model(void **state)
{
    (void)state;
    if (access("models/human/blazeface-front.json", R_OK) != 0) skip();
    char *text = NULL, *bin = NULL;
    size_t tlen, blen;
    assert_int_equal(base_file_read("models/human/blazeface-front.json", 1 << 24, &text, &tlen), 0);
    assert_int_equal(base_file_read("models/human/blazeface-front.bin", 1 << 24, &bin, &blen), 0);
    write_file("model.json", text, tlen);
    write_file("blazeface-front.bin", bin, blen / 2);
    expect_error(BASE_ERR_FORMAT, "shards have only");
    /* Cut the JSON at many points: every prefix is an error, none a crash. */
    write_file("blazeface-front.bin", bin, blen);
    for (size_t cut = 1; cut < tlen; cut += tlen / 97 + 1) {
        write_file("model.json", text, cut);
        char path[512];
        snprintf(path, sizeof path, "%s/model.json", dir);
        nn_model *m = NULL;
        assert_true(nn_model_load_tfjs(path, NULL, &m) < 0);
        assert_null(m);
    }
    free(text);
    free(bin);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/vultus-badmodel-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_tiny_model_runs),
        cmocka_unit_test(test_truncated_shard),
        cmocka_unit_test(test_shard_longer_than_manifest),
        cmocka_unit_test(test_missing_shard),
        cmocka_unit_test(test_missing_model_file),
        cmocka_unit_test(test_unknown_op),
        cmocka_unit_test(test_cycle),
        cmocka_unit_test(test_absurd_dimensions),
        cmocka_unit_test(test_filter_does_not_fit),
        cmocka_unit_test(test_dangling_input),
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_shard_path_escape),
        cmocka_unit_test(test_truncated_real_model),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
